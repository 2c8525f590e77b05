//! `GET /transactions`: the caller's transactions, filtered, newest first, with an opaque
//! cursor. The order is (booking date, `_id`) descending, a total order, and the cursor is the
//! last item's position in it: a page after it holds exactly what sorts after it, however
//! many transactions arrived since (new ones sort before the cursor or take their place by
//! date, never repeating or skipping what the client has not seen yet).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use serde_json::{Value, json};

use super::categorise;
use super::normalise::{BOOKED, PENDING};
use crate::db::{Db, EXTERNAL_TRANSACTIONS, OWNER};
use crate::error::AppError;
use crate::institutions::Institution;

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 500;

/// The filters of a listing, as validated from the query string.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Filters {
    pub account: Option<ObjectId>,
    pub institution: Option<Institution>,
    pub from: Option<DateTime>,
    pub to: Option<DateTime>,
    pub category: Option<String>,
    pub status: Option<&'static str>,
    pub limit: i64,
    pub after: Option<Cursor>,
}

/// A position in the listing order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cursor {
    pub booking: DateTime,
    pub id: ObjectId,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "v1:{}:{}",
            self.booking.timestamp_millis(),
            self.id.to_hex()
        ))
    }

    pub fn decode(value: &str) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.split(':');
        let (Some("v1"), Some(ms), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        Some(Cursor {
            booking: DateTime::from_millis(ms.parse().ok()?),
            id: ObjectId::parse_str(id).ok()?,
        })
    }
}

/// A query-string date: a calendar date (`to` covers its whole day) or an RFC 3339 date-time.
pub fn parse_date(value: &str, field: &str, end_of_day: bool) -> Result<DateTime, AppError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(DateTime::from_millis(t.timestamp_millis()));
    }
    let day = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| {
        AppError::BadRequest(format!(
            "{field} must be a date (YYYY-MM-DD) or an RFC 3339 date-time"
        ))
    })?;
    let start = day
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_millis();
    Ok(DateTime::from_millis(if end_of_day {
        start + 86_400_000 - 1
    } else {
        start
    }))
}

/// The raw query parameters of `GET /transactions`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListQuery {
    pub account_id: Option<String>,
    pub institution: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub category: Option<String>,
    pub status: Option<String>,
    pub limit: Option<String>,
    pub next: Option<String>,
}

impl ListQuery {
    /// Validates every parameter; the first bad one is a 400 naming it.
    pub fn filters(&self) -> Result<Filters, AppError> {
        let bad = |m: &str| AppError::BadRequest(m.to_string());
        let account = self
            .account_id
            .as_deref()
            .map(|v| ObjectId::parse_str(v).map_err(|_| bad("accountId is not a valid id")))
            .transpose()?;
        let institution = self
            .institution
            .as_deref()
            .map(|v| {
                Institution::parse(v).ok_or_else(|| {
                    bad("unknown institution; expected one of green-bank, mongodb-bank")
                })
            })
            .transpose()?;
        let from = self
            .from
            .as_deref()
            .map(|v| parse_date(v, "from", false))
            .transpose()?;
        let to = self
            .to
            .as_deref()
            .map(|v| parse_date(v, "to", true))
            .transpose()?;
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(bad("from must not be after to"));
        }
        let category = match self.category.as_deref() {
            None => None,
            Some(c) if categorise::is_category(c) => Some(c.to_string()),
            Some(_) => {
                return Err(AppError::BadRequest(format!(
                    "unknown category; expected one of {}",
                    categorise::categories().join(", ")
                )));
            }
        };
        let status = match self.status.as_deref() {
            None => None,
            Some("booked") => Some(BOOKED),
            Some("pending") => Some(PENDING),
            Some(_) => return Err(bad("status must be booked or pending")),
        };
        let limit = match self.limit.as_deref() {
            None => DEFAULT_LIMIT,
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    AppError::BadRequest(format!(
                        "limit must be a whole number from 1 to {MAX_LIMIT}"
                    ))
                })?,
        };
        let after = self
            .next
            .as_deref()
            .map(|v| Cursor::decode(v).ok_or_else(|| bad("next is not a cursor from this API")))
            .transpose()?;
        Ok(Filters {
            account,
            institution,
            from,
            to,
            category,
            status,
            limit,
            after,
        })
    }
}

/// The filter document: the owner first (an index prefix on Atlas, pushed down by FerretDB),
/// then the caller's filters, then the cursor.
pub fn filter_document(owner: ObjectId, f: &Filters) -> Document {
    let mut filter = doc! {OWNER: owner};
    if let Some(a) = f.account {
        filter.insert("AccountRef", a);
    }
    if let Some(i) = f.institution {
        filter.insert("Institution", i.id());
    }
    if let Some(c) = &f.category {
        filter.insert("Category", c);
    }
    if let Some(s) = f.status {
        filter.insert("Status", s);
    }
    let mut range = doc! {};
    if let Some(from) = f.from {
        range.insert("$gte", from);
    }
    if let Some(to) = f.to {
        range.insert("$lte", to);
    }
    if !range.is_empty() {
        filter.insert("BookingDate", range);
    }
    if let Some(c) = f.after {
        filter.insert(
            "$or",
            vec![
                doc! {"BookingDate": {"$lt": c.booking}},
                doc! {"BookingDate": c.booking, "_id": {"$lt": c.id}},
            ],
        );
    }
    filter
}

/// One page of the owner's transactions and the cursor of the next page, if there is one.
pub async fn list(db: &Db, owner: ObjectId, f: &Filters) -> Result<Value, AppError> {
    let docs: Vec<Document> = db
        .open_finance
        .collection::<Document>(EXTERNAL_TRANSACTIONS)
        .find(filter_document(owner, f))
        .projection(public_fields())
        .sort(doc! {"BookingDate": -1, "_id": -1})
        .limit(f.limit + 1)
        .await?
        .try_collect()
        .await?;
    let more = docs.len() as i64 > f.limit;
    let page = &docs[..docs.len().min(f.limit as usize)];
    let next = if more {
        page.last().and_then(|d| {
            Some(
                Cursor {
                    booking: *d.get_datetime("BookingDate").ok()?,
                    id: d.get_object_id("_id").ok()?,
                }
                .encode(),
            )
        })
    } else {
        None
    };
    Ok(json!({
        "transactions": page.iter().map(public_json).collect::<Vec<_>>(),
        "next": next,
    }))
}

fn iso(d: &Document, key: &str) -> Value {
    d.get_datetime(key)
        .ok()
        .and_then(|t| t.try_to_rfc3339_string().ok())
        .map_or(Value::Null, Value::String)
}

fn text(d: &Document, key: &str) -> Value {
    d.get_str(key)
        .map_or(Value::Null, |s| Value::String(s.to_string()))
}

/// The stored fields [`public_json`] reads: the page carries only these, not the banks' own
/// fields kept beside them.
fn public_fields() -> Document {
    let mut fields = Document::new();
    for key in [
        "_id",
        "AccountRef",
        "Institution",
        "TransactionId",
        "Status",
        "BookingDate",
        "ValueDate",
        "Amount",
        "Currency",
        "CreditDebit",
        "Description",
        "Counterparty",
        "MerchantCategoryCode",
        "BankTransactionCode",
        "Category",
        "CategorySource",
        "OwnTransfer",
        "Provenance.ConnectionStatus",
    ] {
        fields.insert(key, 1);
    }
    fields
}

/// The public shape of a stored transaction.
pub fn public_json(d: &Document) -> Value {
    let provenance = d.get_document("Provenance").ok();
    let from_provenance = |key: &str| {
        provenance
            .and_then(|p| p.get_str(key).ok())
            .map_or(Value::Null, |s| Value::String(s.to_string()))
    };
    let amount = match d.get("Amount") {
        Some(Bson::Double(a)) => json!(a),
        _ => Value::Null,
    };
    json!({
        "id": d.get_object_id("_id").map(|i| i.to_hex()).ok(),
        "accountId": d.get_object_id("AccountRef").map(|i| i.to_hex()).ok(),
        "institution": text(d, "Institution"),
        "transactionId": text(d, "TransactionId"),
        "status": text(d, "Status"),
        "bookingDate": iso(d, "BookingDate"),
        "valueDate": iso(d, "ValueDate"),
        "amount": amount,
        "currency": text(d, "Currency"),
        "creditDebit": text(d, "CreditDebit"),
        "description": text(d, "Description"),
        "counterparty": text(d, "Counterparty"),
        "merchantCategoryCode": text(d, "MerchantCategoryCode"),
        "bankTransactionCode": text(d, "BankTransactionCode"),
        "category": text(d, "Category"),
        "categorySource": text(d, "CategorySource"),
        "ownTransfer": d.get_bool("OwnTransfer").unwrap_or(false),
        "connectionStatus": from_provenance("ConnectionStatus"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Result<Filters, AppError> {
        let q: ListQuery =
            serde_urlencoded::from_str(&serde_urlencoded::to_string(pairs).unwrap()).unwrap();
        q.filters()
    }

    #[test]
    fn cursors_round_trip_and_reject_anything_else() {
        let c = Cursor {
            booking: DateTime::from_millis(1_764_000_000_000),
            id: ObjectId::new(),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        for bad in [
            "",
            "x",
            "djE6MTox",
            &URL_SAFE_NO_PAD.encode("v2:1:abc"),
            &URL_SAFE_NO_PAD.encode(format!("v1:1:{}:x", c.id.to_hex())),
        ] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_parameter_is_validated() {
        let ok = query(&[
            ("from", "2026-01-01"),
            ("to", "2026-01-31"),
            ("limit", "500"),
            ("category", "groceries"),
            ("status", "booked"),
            ("institution", "green-bank"),
        ])
        .unwrap();
        assert_eq!(ok.limit, 500);
        assert_eq!(ok.status, Some(BOOKED));
        assert_eq!(
            ok.to.unwrap().timestamp_millis() - ok.from.unwrap().timestamp_millis(),
            31 * 86_400_000 - 1
        );
        assert_eq!(query(&[]).unwrap().limit, DEFAULT_LIMIT);
        for bad in [
            ("from", "2026-13-01"),
            ("to", "yesterday"),
            ("limit", "0"),
            ("limit", "501"),
            ("limit", "ten"),
            ("category", "gambling"),
            ("status", "Booked"),
            ("institution", "evil-bank"),
            ("accountId", "123"),
            ("next", "not-a-cursor"),
        ] {
            assert!(
                matches!(query(&[bad]), Err(AppError::BadRequest(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            query(&[("from", "2026-02-01"), ("to", "2026-01-01")]),
            Err(AppError::BadRequest(_))
        ));
    }

    #[test]
    fn the_filter_leads_with_the_owner_and_ends_with_the_cursor() {
        let owner = ObjectId::new();
        let c = Cursor {
            booking: DateTime::from_millis(5),
            id: ObjectId::new(),
        };
        let f = Filters {
            category: Some("dining".into()),
            after: Some(c),
            limit: 10,
            ..Filters::default()
        };
        let d = filter_document(owner, &f);
        assert_eq!(d.keys().next().map(String::as_str), Some(OWNER));
        assert_eq!(d.get_object_id(OWNER).unwrap(), owner);
        assert!(d.get_array("$or").is_ok());
    }
}
