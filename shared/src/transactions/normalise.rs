//! Each institution's transactions, in its own standard's shape, mapped onto one normalised
//! document: signed amount (exact, in minor units, plus a display value), currency, booking
//! and value dates as BSON dates, status, description, counterparty, MCC, bank code, category,
//! the account's `_id`, the owner, the institution's own fields that do not map, and
//! provenance. Anything unusable is a malformed payload (502): nothing half-understood is stored.

use std::collections::HashSet;
use std::str::FromStr;

use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Map, Value};

use super::categorise::{self, CategorySource, Facts};
use crate::banks::normalise::{SyncContext, currency, keep_unmapped, malformed, str_field};
use crate::db::OWNER;
use crate::error::AppError;

pub const BOOKED: &str = "Booked";
pub const PENDING: &str = "Pending";

/// The stored account (or card) transactions are read for.
#[derive(Debug, Clone)]
pub struct AccountRef {
    /// Its `_id` in `external_accounts` (or `external_products` for a card).
    pub id: ObjectId,
    /// The institution's id for it (`AccountId`, `resourceId`).
    pub external_id: String,
    pub is_card: bool,
}

/// What normalisation needs besides the payload: whose, from where, and which account numbers
/// are the customer's own (so transfers between them are marked).
pub struct TransactionContext<'a> {
    pub sync: &'a SyncContext,
    pub account: &'a AccountRef,
    pub own_account_numbers: &'a HashSet<String>,
}

/// Digits after the decimal point in a currency's minor unit (ISO 4217).
pub fn minor_digits(currency: &str) -> u32 {
    match currency {
        "JPY" | "KRW" | "ISK" | "CLP" | "VND" => 0,
        "BHD" | "KWD" | "OMR" | "JOD" | "TND" => 3,
        _ => 2,
    }
}

/// A decimal string as an exact integer number of minor units (`"-12.34"` USD → -1234), or
/// `None` when it is not a plain decimal or has more digits than the currency's minor unit.
pub fn minor_units(value: &str, currency: &str, signed: bool) -> Option<i64> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    if digits.len() != value.len() && !signed {
        return None;
    }
    let plain = !digits.is_empty()
        && digits.split('.').count() <= 2
        && digits
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if !plain {
        return None;
    }
    let amount = Decimal::from_str(value).ok()?;
    let scaled = amount.checked_mul(Decimal::from(10i64.pow(minor_digits(currency))))?;
    if scaled.fract() != Decimal::ZERO {
        return None;
    }
    scaled.to_i64()
}

/// The display amount of `minor` units (exact to the currency's precision).
pub fn major_units(minor: i64, currency: &str) -> f64 {
    Decimal::new(minor, minor_digits(currency))
        .to_f64()
        .unwrap_or(0.0)
}

/// An ISO date-time (RFC 3339, or UK Open Banking's form without an offset, read as UTC) or
/// an ISO date.
fn datetime(value: &str) -> Option<DateTime> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Some(DateTime::from_millis(t.timestamp_millis()));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(value, format) {
            return Some(DateTime::from_millis(t.and_utc().timestamp_millis()));
        }
    }
    let day = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
    Some(DateTime::from_millis(
        day.and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis(),
    ))
}

/// `"2026-11"`: the calendar month (UTC) a transaction is counted in, stored so that the
/// cash-flow pipeline can group by it (FerretDB has no date operators).
pub fn month_of(at: DateTime) -> String {
    utc(at).format("%Y-%m").to_string()
}

/// A BSON date as a chrono UTC date-time.
pub fn utc(at: DateTime) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or_default()
}

/// The fields of one transaction as a normaliser read them.
struct Fields<'a> {
    transaction_id: &'a str,
    status: &'static str,
    booking: DateTime,
    value: Option<DateTime>,
    amount_minor: i64,
    currency: String,
    description: Option<&'a str>,
    counterparty: Option<&'a str>,
    counterparty_account: Option<&'a str>,
    merchant_category_code: Option<&'a str>,
    bank_transaction_code: Option<String>,
}

fn transaction_document(ctx: &TransactionContext<'_>, f: Fields<'_>) -> Document {
    let credit = f.amount_minor > 0;
    let own = f
        .counterparty_account
        .is_some_and(|n| ctx.own_account_numbers.contains(n));
    let (category, source) = if own {
        (categorise::TRANSFERS, CategorySource::OwnAccount)
    } else {
        categorise::categorise(&Facts {
            credit,
            merchant_category_code: f.merchant_category_code,
            bank_transaction_code: f.bank_transaction_code.as_deref(),
            counterparty: f.counterparty,
            description: f.description,
        })
    };
    let mut d = doc! {
        OWNER: ctx.sync.user_id,
        "AccountRef": ctx.account.id,
        "Institution": ctx.sync.institution.id(),
        "TransactionId": f.transaction_id,
        "Status": f.status,
        "BookingDate": f.booking,
        "BookingMonth": month_of(f.booking),
    };
    if let Some(v) = f.value {
        d.insert("ValueDate", v);
    }
    d.insert("AmountMinor", f.amount_minor);
    d.insert("Amount", major_units(f.amount_minor, &f.currency));
    d.insert("Currency", f.currency);
    d.insert("CreditDebit", if credit { "Credit" } else { "Debit" });
    for (key, value) in [
        ("Description", f.description),
        ("Counterparty", f.counterparty),
        ("CounterpartyAccount", f.counterparty_account),
        ("MerchantCategoryCode", f.merchant_category_code),
        ("BankTransactionCode", f.bank_transaction_code.as_deref()),
    ] {
        if let Some(v) = value {
            d.insert(key, v);
        }
    }
    d.insert("Category", category);
    d.insert("CategorySource", source.as_str());
    d.insert("OwnTransfer", own);
    d
}

fn provenance(ctx: &TransactionContext<'_>, transaction_id: &str) -> Document {
    doc! {
        "Institution": ctx.sync.institution.id(),
        "Standard": ctx.sync.institution.standard(),
        "AccountExternalId": &ctx.account.external_id,
        "ExternalId": transaction_id,
        "ConsentId": ctx.sync.consent_id,
        "LastSyncedAt": ctx.sync.synced_at,
        "ConnectionStatus": "Connected",
    }
}

fn text<'a>(object: &'a Map<String, Value>, pointer: &str) -> Option<&'a str> {
    let mut parts = pointer.split('/');
    let mut value = object.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    value.as_str().filter(|s| !s.is_empty())
}

fn object<'a>(
    ctx: &TransactionContext<'_>,
    value: &'a Value,
) -> Result<&'a Map<String, Value>, AppError> {
    value
        .as_object()
        .ok_or_else(|| malformed(ctx.sync, "a transaction is not an object"))
}

/// Green Bank (UK Open Banking): `Data.Transaction[]`, unsigned amounts with a credit/debit
/// indicator, merchant details and counterparty accounts with the detail permission.
pub fn green_transactions(
    body: &Value,
    ctx: &TransactionContext<'_>,
) -> Result<Vec<Document>, AppError> {
    let list = body
        .pointer("/Data/Transaction")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(ctx.sync, "Data.Transaction is missing"))?;
    list.iter()
        .map(|value| {
            let t = object(ctx, value)?;
            let bad = |what: &str| malformed(ctx.sync, what);
            if str_field(t, "AccountId").is_some_and(|a| a != ctx.account.external_id) {
                return Err(bad("a transaction of another account"));
            }
            let id = str_field(t, "TransactionId")
                .ok_or_else(|| bad("a transaction has no TransactionId"))?;
            let status = match str_field(t, "Status") {
                Some("Booked") => BOOKED,
                Some("Pending") => PENDING,
                _ => return Err(bad("a transaction status is not Booked or Pending")),
            };
            let booking = str_field(t, "BookingDateTime")
                .and_then(datetime)
                .ok_or_else(|| bad("a BookingDateTime is not a date-time"))?;
            let value_date = str_field(t, "ValueDateTime")
                .map(|v| datetime(v).ok_or_else(|| bad("a ValueDateTime is not a date-time")))
                .transpose()?;
            let currency = currency(ctx.sync, text(t, "Amount/Currency"))?;
            let unsigned = text(t, "Amount/Amount")
                .and_then(|a| minor_units(a, &currency, false))
                .ok_or_else(|| bad("a transaction amount is not an unsigned decimal string"))?;
            let credit = match str_field(t, "CreditDebitIndicator") {
                Some("Credit") => true,
                Some("Debit") => false,
                _ => return Err(bad("a transaction has no credit/debit indicator")),
            };
            let (counterparty_name, counterparty_account) = if credit {
                (
                    text(t, "DebtorAccount/Name"),
                    text(t, "DebtorAccount/Identification"),
                )
            } else {
                (
                    text(t, "CreditorAccount/Name"),
                    text(t, "CreditorAccount/Identification"),
                )
            };
            let code = match (
                text(t, "BankTransactionCode/Code"),
                text(t, "BankTransactionCode/SubCode"),
            ) {
                (Some(c), Some(s)) => Some(format!("{c}/{s}")),
                (Some(c), None) => Some(c.to_string()),
                _ => None,
            };
            let mut d = transaction_document(
                ctx,
                Fields {
                    transaction_id: id,
                    status,
                    booking,
                    value: value_date,
                    amount_minor: if credit { unsigned } else { -unsigned },
                    currency,
                    description: str_field(t, "TransactionInformation"),
                    counterparty: text(t, "MerchantDetails/MerchantName").or(counterparty_name),
                    counterparty_account,
                    merchant_category_code: text(t, "MerchantDetails/MerchantCategoryCode"),
                    bank_transaction_code: code,
                },
            );
            keep_unmapped(
                &mut d,
                t,
                &[
                    "AccountId",
                    "TransactionId",
                    "Status",
                    "BookingDateTime",
                    "ValueDateTime",
                    "Amount",
                    "CreditDebitIndicator",
                    "TransactionInformation",
                ],
            );
            d.insert("Provenance", provenance(ctx, id));
            Ok(d)
        })
        .collect()
}

/// MongoDB Bank (Berlin Group NextGenPSD2): `transactions.booked[]` and `.pending[]` (or
/// `cardTransactions` for a card account) with signed amounts.
pub fn mdb_transactions(
    body: &Value,
    ctx: &TransactionContext<'_>,
) -> Result<Vec<Document>, AppError> {
    let key = if ctx.account.is_card {
        "cardTransactions"
    } else {
        "transactions"
    };
    let lists = body
        .get(key)
        .and_then(Value::as_object)
        .ok_or_else(|| malformed(ctx.sync, &format!("{key} is missing")))?;
    let mut out = Vec::new();
    for (list, status) in [("booked", BOOKED), ("pending", PENDING)] {
        let Some(items) = lists.get(list) else {
            continue;
        };
        let items = items
            .as_array()
            .ok_or_else(|| malformed(ctx.sync, &format!("{key}.{list} is not a list")))?;
        for value in items {
            out.push(mdb_transaction(value, status, ctx)?);
        }
    }
    Ok(out)
}

fn mdb_transaction(
    value: &Value,
    status: &'static str,
    ctx: &TransactionContext<'_>,
) -> Result<Document, AppError> {
    let t = object(ctx, value)?;
    let bad = |what: &str| malformed(ctx.sync, what);
    let card = ctx.account.is_card;
    let id = if card {
        str_field(t, "cardTransactionId")
    } else {
        str_field(t, "transactionId").or(str_field(t, "entryReference"))
    }
    .ok_or_else(|| bad("a transaction has no id"))?;
    let date_field = |key: &str| {
        str_field(t, key)
            .map(|v| datetime(v).ok_or_else(|| bad(&format!("{key} is not a date"))))
            .transpose()
    };
    let booking_date = date_field("bookingDate")?;
    let value_date = date_field("valueDate")?;
    let transaction_date = date_field("transactionDate")?;
    // A booked item has a booking date; a pending one is dated when it happened.
    let booking = match status {
        BOOKED => booking_date.ok_or_else(|| bad("a booked transaction has no bookingDate"))?,
        _ => transaction_date
            .or(value_date)
            .or(booking_date)
            .ok_or_else(|| bad("a pending transaction has no date"))?,
    };
    let currency = currency(ctx.sync, text(t, "transactionAmount/currency"))?;
    let amount = text(t, "transactionAmount/amount")
        .and_then(|a| minor_units(a, &currency, true))
        .ok_or_else(|| bad("a transaction amount is not a decimal string"))?;
    let credit = amount > 0;
    let account_number =
        |key: &str| text(t, &format!("{key}/bban")).or(text(t, &format!("{key}/iban")));
    let (counterparty, counterparty_account) = if card {
        (str_field(t, "transactionDetails"), None)
    } else if credit {
        (str_field(t, "debtorName"), account_number("debtorAccount"))
    } else {
        (
            str_field(t, "creditorName"),
            account_number("creditorAccount"),
        )
    };
    let mut d = transaction_document(
        ctx,
        Fields {
            transaction_id: id,
            status,
            booking,
            value: value_date.or(transaction_date),
            amount_minor: amount,
            currency,
            description: str_field(t, "remittanceInformationUnstructured")
                .or(str_field(t, "transactionDetails")),
            counterparty,
            counterparty_account,
            merchant_category_code: str_field(t, "merchantCategoryCode"),
            bank_transaction_code: str_field(t, "bankTransactionCode").map(String::from),
        },
    );
    keep_unmapped(
        &mut d,
        t,
        &[
            "transactionId",
            "cardTransactionId",
            "bookingDate",
            "valueDate",
            "transactionDate",
            "transactionAmount",
            "remittanceInformationUnstructured",
            "merchantCategoryCode",
            "bankTransactionCode",
        ],
    );
    d.insert("Provenance", provenance(ctx, id));
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::institutions::Institution;
    use serde_json::json;

    fn sync(institution: Institution) -> SyncContext {
        SyncContext {
            institution,
            user_id: ObjectId::new(),
            user_name: "u".into(),
            consent_id: ObjectId::new(),
            synced_at: DateTime::now(),
        }
    }

    fn account(external_id: &str, is_card: bool) -> AccountRef {
        AccountRef {
            id: ObjectId::new(),
            external_id: external_id.into(),
            is_card,
        }
    }

    #[test]
    fn amounts_are_exact_minor_units() {
        assert_eq!(minor_units("12.34", "USD", false), Some(1234));
        assert_eq!(minor_units("-12.3", "USD", true), Some(-1230));
        assert_eq!(minor_units("1200", "JPY", false), Some(1200));
        assert_eq!(minor_units("0.10", "USD", false), Some(10));
        for bad in ["-1.00", "1.234", "1e3", " 1", "", "1.", ".5", "NaN"] {
            assert_eq!(minor_units(bad, "USD", false), None, "{bad}");
        }
        assert_eq!(minor_units("12.5", "JPY", true), None);
        // Summing minor units is exact where summing floats drifts.
        let sum: i64 = std::iter::repeat_n(10, 10).sum();
        assert_eq!(major_units(sum, "USD"), 1.0);
        assert_eq!(major_units(-1234, "USD"), -12.34);
    }

    #[test]
    fn green_bank_transactions_are_normalised() {
        let s = sync(Institution::GreenBank);
        let a = account("GB-ACC-1", false);
        let own: HashSet<String> = ["770051234".to_string()].into();
        let ctx = TransactionContext {
            sync: &s,
            account: &a,
            own_account_numbers: &own,
        };
        let body = json!({"Data": {"Transaction": [
            {"AccountId": "GB-ACC-1", "TransactionId": "T1", "Status": "Booked",
             "BookingDateTime": "2026-11-03T10:00:00+00:00", "ValueDateTime": "2026-11-03T10:00:00",
             "CreditDebitIndicator": "Debit", "Amount": {"Amount": "42.10", "Currency": "USD"},
             "TransactionInformation": "Card purchase",
             "MerchantDetails": {"MerchantName": "Tesco", "MerchantCategoryCode": "5411"},
             "BankTransactionCode": {"Code": "CardTransaction", "SubCode": "PointOfSale"},
             "Balance": {"Amount": {"Amount": "100.00", "Currency": "USD"}, "CreditDebitIndicator": "Credit", "Type": "InterimBooked"}},
            {"AccountId": "GB-ACC-1", "TransactionId": "T2", "Status": "Pending",
             "BookingDateTime": "2026-11-04T00:00:00Z", "CreditDebitIndicator": "Debit",
             "Amount": {"Amount": "250.00", "Currency": "USD"},
             "CreditorAccount": {"SchemeName": "UK.OBIE.SortCodeAccountNumber", "Identification": "770051234", "Name": "Me"},
             "BankTransactionCode": {"Code": "IssuedCreditTransfer", "SubCode": "InternalTransfer"}},
        ]}});
        let docs = green_transactions(&body, &ctx).unwrap();
        assert_eq!(docs[0].get_i64("AmountMinor").unwrap(), -4210);
        assert_eq!(docs[0].get_f64("Amount").unwrap(), -42.10);
        assert_eq!(docs[0].get_str("Category").unwrap(), "groceries");
        assert_eq!(
            docs[0].get_str("CategorySource").unwrap(),
            "MerchantCategoryCode"
        );
        assert_eq!(docs[0].get_str("BookingMonth").unwrap(), "2026-11");
        assert_eq!(docs[0].get_str("Counterparty").unwrap(), "Tesco");
        assert!(
            docs[0].get_document("Balance").is_ok(),
            "source fields kept"
        );
        assert_eq!(docs[0].get_object_id("AccountRef").unwrap(), a.id);
        assert_eq!(
            docs[0]
                .get_document("Provenance")
                .unwrap()
                .get_str("AccountExternalId")
                .unwrap(),
            "GB-ACC-1"
        );
        assert_eq!(docs[1].get_str("Status").unwrap(), PENDING);
        assert_eq!(docs[1].get_str("Category").unwrap(), "transfers");
        assert!(docs[1].get_bool("OwnTransfer").unwrap());

        for broken in [
            json!({"Data": {}}),
            json!({"Data": {"Transaction": [{"TransactionId": "X", "Status": "Booked", "BookingDateTime": "2026-01-01T00:00:00Z", "CreditDebitIndicator": "Debit", "Amount": {"Amount": "-1.00", "Currency": "USD"}}]}}),
            json!({"Data": {"Transaction": [{"TransactionId": "X", "Status": "Done", "BookingDateTime": "2026-01-01T00:00:00Z", "CreditDebitIndicator": "Debit", "Amount": {"Amount": "1.00", "Currency": "USD"}}]}}),
            json!({"Data": {"Transaction": [{"TransactionId": "X", "Status": "Booked", "BookingDateTime": "yesterday", "CreditDebitIndicator": "Debit", "Amount": {"Amount": "1.00", "Currency": "USD"}}]}}),
            json!({"Data": {"Transaction": [{"AccountId": "GB-ACC-2", "TransactionId": "X", "Status": "Booked", "BookingDateTime": "2026-01-01T00:00:00Z", "CreditDebitIndicator": "Debit", "Amount": {"Amount": "1.00", "Currency": "USD"}}]}}),
        ] {
            assert!(
                matches!(
                    green_transactions(&broken, &ctx),
                    Err(AppError::BadGateway(_))
                ),
                "{broken}"
            );
        }
    }

    #[test]
    fn berlin_group_transactions_are_normalised() {
        let s = sync(Institution::MongoDbBank);
        let a = account("mdb-acc-1", false);
        let own = HashSet::new();
        let ctx = TransactionContext {
            sync: &s,
            account: &a,
            own_account_numbers: &own,
        };
        let body = json!({"account": {"bban": "1"}, "transactions": {
            "booked": [{"transactionId": "b1", "entryReference": "e1", "bookingDate": "2026-10-25",
                        "valueDate": "2026-10-25", "transactionAmount": {"amount": "3200.00", "currency": "EUR"},
                        "debtorName": "Acme Corp", "remittanceInformationUnstructured": "SALARY OCT 2026",
                        "bankTransactionCode": "PMNT-RCDT-SALA", "$where": "dropped", "_id": "dropped"}],
            "pending": [{"transactionId": "p1", "valueDate": "2026-11-30",
                         "transactionAmount": {"amount": "-9.99", "currency": "EUR"}, "creditorName": "Spotify",
                         "merchantCategoryCode": "5815"}],
            "_links": {}}});
        let docs = mdb_transactions(&body, &ctx).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].get_str("Category").unwrap(), "salary");
        assert_eq!(
            docs[0].get_str("CategorySource").unwrap(),
            "BankTransactionCode"
        );
        assert_eq!(docs[0].get_i64("AmountMinor").unwrap(), 320_000);
        assert!(!docs[0].contains_key("$where") && docs[0].get_object_id("_id").is_err());
        assert_eq!(docs[0].get_str("entryReference").unwrap(), "e1");
        assert_eq!(docs[1].get_str("Status").unwrap(), PENDING);
        assert_eq!(docs[1].get_str("Category").unwrap(), "subscriptions");
        assert_eq!(docs[1].get_str("BookingMonth").unwrap(), "2026-11");

        let card = account("mdb-card-1", true);
        let card_ctx = TransactionContext {
            sync: &s,
            account: &card,
            own_account_numbers: &own,
        };
        let cards = json!({"cardTransactions": {"booked": [{"cardTransactionId": "c1", "transactionDate": "2026-11-01",
            "bookingDate": "2026-11-02", "transactionAmount": {"amount": "-20.00", "currency": "USD"},
            "transactionDetails": "Pret A Manger", "merchantCategoryCode": "5814"}]}});
        let docs = mdb_transactions(&cards, &card_ctx).unwrap();
        assert_eq!(docs[0].get_str("Category").unwrap(), "dining");
        assert_eq!(docs[0].get_str("Counterparty").unwrap(), "Pret A Manger");

        for broken in [
            json!({"transactions": {"booked": [{"transactionId": "x", "transactionAmount": {"amount": "1.00", "currency": "EUR"}}]}}),
            json!({"transactions": {"booked": [{"bookingDate": "2026-01-01", "transactionAmount": {"amount": "1.00", "currency": "EUR"}}]}}),
            json!({"transactions": {"booked": [{"transactionId": "x", "bookingDate": "2026-01-01", "transactionAmount": {"amount": "1,00", "currency": "EUR"}}]}}),
            json!({"transactions": {"booked": "none"}}),
            json!({"accounts": []}),
        ] {
            assert!(
                matches!(
                    mdb_transactions(&broken, &ctx),
                    Err(AppError::BadGateway(_))
                ),
                "{broken}"
            );
        }
    }
}
