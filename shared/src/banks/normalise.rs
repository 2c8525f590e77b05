//! Each institution's account JSON, in its own standard's shape, mapped onto the reference
//! field names (`AccountBank`, `AccountNumber`, `AccountType`, `AccountStatus`,
//! `AccountBalance`, `AccountCurrency`, `AccountDate.OpeningDate`, `AccountUser`), keeping the
//! source fields that do not map, plus `Provenance`. Anything unusable is a malformed payload
//! (502), so nothing half-understood is stored.

use std::str::FromStr;

use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Map, Value};

use crate::db::OWNER;
use crate::error::AppError;
use crate::institutions::Institution;

/// Whose data this is and where it came from.
#[derive(Debug, Clone)]
pub struct SyncContext {
    pub institution: Institution,
    pub user_id: ObjectId,
    pub user_name: String,
    pub consent_id: ObjectId,
    pub synced_at: DateTime,
}

pub(crate) fn malformed(ctx: &SyncContext, what: &str) -> AppError {
    AppError::BadGateway(format!(
        "{} answered a malformed payload: {what}",
        ctx.institution.display_name()
    ))
}

/// A decimal string (`"-312.45"`), parsed exactly: no exponents, no spaces, no NaN.
pub fn parse_amount(value: &str) -> Option<f64> {
    let digits = value.strip_prefix('-').unwrap_or(value);
    let well_formed = !digits.is_empty()
        && digits.split('.').count() <= 2
        && digits
            .split('.')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if !well_formed {
        return None;
    }
    Decimal::from_str(value).ok()?.to_f64()
}

/// UK Open Banking amounts are unsigned (the credit/debit indicator carries the sign), so a
/// minus sign there is a malformed payload, not a second negation.
pub fn parse_unsigned_amount(value: &str) -> Option<f64> {
    if value.starts_with('-') {
        return None;
    }
    parse_amount(value)
}

pub(crate) fn date(value: &str) -> Option<DateTime> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Some(DateTime::from_millis(t.timestamp_millis()));
    }
    let day = chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
    Some(DateTime::from_millis(
        day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis(),
    ))
}

pub(crate) fn str_field<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub(crate) fn currency(ctx: &SyncContext, value: Option<&str>) -> Result<String, AppError> {
    match value {
        Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => Ok(c.to_string()),
        _ => Err(malformed(ctx, "a currency is not an ISO 4217 code")),
    }
}

fn opening_date(ctx: &SyncContext, value: Option<&str>) -> Result<Option<DateTime>, AppError> {
    value
        .map(|v| date(v).ok_or_else(|| malformed(ctx, "an opening date is not a date")))
        .transpose()
}

/// Source fields not consumed by the mapping, kept under their own names; a name the
/// reference uses for something else is prefixed with `Source`. A bank's field names reach an
/// update, so any that MongoDB would read as a path or an operator (`.` inside, `$` or `_` in
/// front), at any depth, are dropped: a bank cannot rewrite the owner or the provenance.
pub(crate) fn keep_unmapped(target: &mut Document, source: &Map<String, Value>, consumed: &[&str]) {
    for (key, value) in source {
        if consumed.contains(&key.as_str()) || !plain_field_name(key) {
            continue;
        }
        let name = if target.contains_key(key) || key == "AccountType" {
            format!("Source{key}")
        } else {
            key.clone()
        };
        target.insert(name, plain_bson(value));
    }
}

fn plain_field_name(key: &str) -> bool {
    !key.is_empty() && !key.starts_with('$') && !key.starts_with('_') && !key.contains('.')
}

/// JSON as BSON without Extended JSON's reading (`{"$oid": …}` never becomes an ObjectId; its
/// `$` name is dropped like any other); whole numbers become Int32 where they fit, like the
/// reference data's.
pub(crate) fn plain_bson(value: &Value) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i32::try_from(i).map_or(Bson::Int64(i), Bson::Int32),
            (None, Some(f)) => Bson::Double(f),
            (None, None) => Bson::Null,
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(plain_bson).collect()),
        Value::Object(fields) => Bson::Document(
            fields
                .iter()
                .filter(|(k, _)| plain_field_name(k))
                .map(|(k, v)| (k.clone(), plain_bson(v)))
                .collect(),
        ),
    }
}

/// The reference fields of one account, as a normaliser read them.
struct AccountFields<'a> {
    external_id: &'a str,
    number: Option<&'a str>,
    identification_type: &'a str,
    account_type: &'a str,
    status: &'a str,
    balance: Option<f64>,
    currency: String,
    opened: Option<DateTime>,
}

fn account_document(ctx: &SyncContext, f: AccountFields<'_>) -> Document {
    let mut d = doc! {};
    if let Some(n) = f.number {
        d.insert("AccountNumber", n);
    }
    d.insert("AccountBank", ctx.institution.display_name());
    d.insert("AccountStatus", f.status);
    d.insert("AccountIdentificationType", f.identification_type);
    if let Some(at) = f.opened {
        d.insert("AccountDate", doc! {"OpeningDate": at});
    }
    d.insert("AccountType", f.account_type);
    if let Some(b) = f.balance {
        d.insert("AccountBalance", b);
    }
    d.insert("AccountCurrency", f.currency);
    d.insert(
        "AccountUser",
        doc! {"UserName": &ctx.user_name, "UserId": ctx.user_id},
    );
    d.insert(OWNER, ctx.user_id);
    d.insert("Provenance", provenance(ctx, f.external_id));
    d
}

pub fn provenance(ctx: &SyncContext, external_id: &str) -> Document {
    doc! {
        "Institution": ctx.institution.id(),
        "Standard": ctx.institution.standard(),
        "ExternalId": external_id,
        "ConsentId": ctx.consent_id,
        "LastSyncedAt": ctx.synced_at,
        "ConnectionStatus": "Connected",
    }
}

/// Green Bank (UK Open Banking): `Data.Account[]` plus, when the consent allows balances,
/// `Data.Balance[]` with decimal-string amounts and a credit/debit indicator.
pub fn green_accounts(
    accounts: &Value,
    balances: Option<&Value>,
    ctx: &SyncContext,
) -> Result<Vec<Document>, AppError> {
    let list = accounts
        .pointer("/Data/Account")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(ctx, "Data.Account is missing"))?;
    let mut balance_of = std::collections::HashMap::new();
    if let Some(body) = balances {
        let entries = body
            .pointer("/Data/Balance")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed(ctx, "Data.Balance is missing"))?;
        for entry in entries {
            let id = entry["AccountId"]
                .as_str()
                .ok_or_else(|| malformed(ctx, "a balance has no AccountId"))?;
            let amount = entry
                .pointer("/Amount/Amount")
                .and_then(Value::as_str)
                .and_then(parse_unsigned_amount)
                .ok_or_else(|| malformed(ctx, "a balance amount is not a decimal string"))?;
            let signed = match entry["CreditDebitIndicator"].as_str() {
                Some("Credit") => amount,
                Some("Debit") => -amount,
                _ => return Err(malformed(ctx, "a balance has no credit/debit indicator")),
            };
            let currency = currency(
                ctx,
                entry.pointer("/Amount/Currency").and_then(Value::as_str),
            )?;
            let rank = match entry["Type"].as_str() {
                Some("InterimAvailable") => 0,
                Some("InterimBooked") => 1,
                Some("ClosingBooked") => 2,
                Some("Expected") => 3,
                _ => 4,
            };
            let best = balance_of
                .entry(id.to_string())
                .or_insert((rank, signed, currency.clone()));
            if rank < best.0 {
                *best = (rank, signed, currency);
            }
        }
    }
    list.iter()
        .map(|value| {
            let a = value
                .as_object()
                .ok_or_else(|| malformed(ctx, "an account is not an object"))?;
            let id = str_field(a, "AccountId")
                .ok_or_else(|| malformed(ctx, "an account has no AccountId"))?;
            let account_currency = currency(ctx, str_field(a, "Currency"))?;
            let balance = match balance_of.get(id) {
                Some((_, amount, c)) if *c == account_currency => Some(*amount),
                Some(_) => {
                    return Err(malformed(
                        ctx,
                        "a balance is in another currency than its account",
                    ));
                }
                None => None,
            };
            let account_type = match str_field(a, "AccountSubType") {
                Some("CurrentAccount") | Some("ChargeCard") => "Checking",
                Some("Savings") => "Savings",
                Some("CreditCard") => "CreditCard",
                Some(other) => other,
                None => return Err(malformed(ctx, "an account has no AccountSubType")),
            };
            let status = match str_field(a, "Status") {
                Some("Enabled") | None => "Active",
                Some("Disabled") => "Inactive",
                Some("Deleted") => "Closed",
                Some(_) => "Pending",
            };
            let number = a
                .get("Account")
                .and_then(Value::as_array)
                .and_then(|ids| ids.first())
                .and_then(|first| first["Identification"].as_str());
            let mut d = account_document(
                ctx,
                AccountFields {
                    external_id: id,
                    number,
                    identification_type: "AccountNumber",
                    account_type,
                    status,
                    balance,
                    currency: account_currency,
                    opened: opening_date(ctx, str_field(a, "OpeningDate"))?,
                },
            );
            keep_unmapped(
                &mut d,
                a,
                &[
                    "AccountId",
                    "Currency",
                    "AccountSubType",
                    "Status",
                    "OpeningDate",
                ],
            );
            Ok(d)
        })
        .collect()
}

/// MongoDB Bank (Berlin Group NextGenPSD2): `accounts[]` with `resourceId`, `iban`/`bban`,
/// `cashAccountType` and, with `withBalance`, `balances[]` of signed decimal strings.
pub fn mdb_accounts(body: &Value, ctx: &SyncContext) -> Result<Vec<Document>, AppError> {
    let list = body["accounts"]
        .as_array()
        .ok_or_else(|| malformed(ctx, "accounts is missing"))?;
    list.iter()
        .map(|value| {
            let a = value
                .as_object()
                .ok_or_else(|| malformed(ctx, "an account is not an object"))?;
            let id = str_field(a, "resourceId")
                .ok_or_else(|| malformed(ctx, "an account has no resourceId"))?;
            let account_currency = currency(ctx, str_field(a, "currency"))?;
            let mut balance = None;
            if let Some(balances) = a.get("balances") {
                let balances = balances
                    .as_array()
                    .ok_or_else(|| malformed(ctx, "balances is not a list"))?;
                let mut best: Option<(u8, f64)> = None;
                for b in balances {
                    let amount = b
                        .pointer("/balanceAmount/amount")
                        .and_then(Value::as_str)
                        .and_then(parse_amount)
                        .ok_or_else(|| {
                            malformed(ctx, "a balance amount is not a decimal string")
                        })?;
                    if currency(
                        ctx,
                        b.pointer("/balanceAmount/currency").and_then(Value::as_str),
                    )? != account_currency
                    {
                        return Err(malformed(
                            ctx,
                            "a balance is in another currency than its account",
                        ));
                    }
                    let rank = match b["balanceType"].as_str() {
                        Some("interimAvailable") => 0,
                        Some("closingBooked") => 1,
                        Some("expected") => 2,
                        Some("interimBooked") => 3,
                        _ => 4,
                    };
                    if best.is_none_or(|(r, _)| rank < r) {
                        best = Some((rank, amount));
                    }
                }
                balance = best.map(|(_, amount)| amount);
            }
            let account_type = match str_field(a, "cashAccountType") {
                Some("CACC") | Some("TRAN") => "Checking",
                Some("SVGS") => "Savings",
                Some("CARD") => "CreditCard",
                Some("LOAN") => "Loan",
                Some(other) => other,
                None => return Err(malformed(ctx, "an account has no cashAccountType")),
            };
            let status = match str_field(a, "status") {
                Some("enabled") | None => "Active",
                Some("deleted") => "Closed",
                Some("blocked") => "Blocked",
                Some(_) => "Pending",
            };
            let (number, identification) = match (str_field(a, "bban"), str_field(a, "iban")) {
                (Some(bban), _) => (Some(bban), "AccountNumber"),
                (None, Some(iban)) => (Some(iban), "IBAN"),
                (None, None) => (None, "ResourceId"),
            };
            let mut d = account_document(
                ctx,
                AccountFields {
                    external_id: id,
                    number,
                    identification_type: identification,
                    account_type,
                    status,
                    balance,
                    currency: account_currency,
                    opened: opening_date(ctx, str_field(a, "openingDate"))?,
                },
            );
            if let Some(details) = str_field(a, "details") {
                d.insert("MDBAccountNarrative", details);
            }
            keep_unmapped(
                &mut d,
                a,
                &[
                    "resourceId",
                    "currency",
                    "cashAccountType",
                    "status",
                    "openingDate",
                    "balances",
                    "details",
                    "bban",
                ],
            );
            Ok(d)
        })
        .collect()
}

/// The reference fields of one product.
struct ProductFields<'a> {
    external_id: &'a str,
    product_type: &'a str,
    status: &'a str,
    amount: f64,
    currency: String,
    interest_rate: Option<f64>,
    opened: Option<DateTime>,
}

fn product_document(ctx: &SyncContext, f: ProductFields<'_>) -> Document {
    // The reference's ProductId is the bank's id without the institution prefix.
    let prefix = ctx.institution.product_external_id("");
    let product_id = f.external_id.strip_prefix(&prefix).unwrap_or(f.external_id);
    let mut d = doc! {
        "ProductId": product_id,
        "ProductBank": ctx.institution.display_name(),
        "ProductStatus": f.status,
        "ProductType": f.product_type,
        "ProductAmount": f.amount,
        "ProductCurrency": f.currency,
    };
    if let Some(rate) = f.interest_rate {
        d.insert("ProductInterestRate", rate);
    }
    if let Some(at) = f.opened {
        d.insert("ProductDate", doc! {"OpeningDate": at});
    }
    d.insert(
        "ProductCustomer",
        doc! {"UserName": &ctx.user_name, "UserId": ctx.user_id},
    );
    d.insert(OWNER, ctx.user_id);
    d.insert("Provenance", provenance(ctx, f.external_id));
    d
}

fn rate(ctx: &SyncContext, value: Option<&Value>) -> Result<Option<f64>, AppError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => parse_amount(s)
            .map(Some)
            .ok_or_else(|| malformed(ctx, "an interest rate is not a decimal string")),
        Some(_) => Err(malformed(ctx, "an interest rate is not a decimal string")),
    }
}

/// Green Bank (UK Open Banking style): `Data.Product[]` with an outstanding balance.
pub fn green_products(body: &Value, ctx: &SyncContext) -> Result<Vec<Document>, AppError> {
    let list = body
        .pointer("/Data/Product")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(ctx, "Data.Product is missing"))?;
    list.iter()
        .map(|value| {
            let p = value
                .as_object()
                .ok_or_else(|| malformed(ctx, "a product is not an object"))?;
            let id = str_field(p, "ProductId")
                .ok_or_else(|| malformed(ctx, "a product has no ProductId"))?;
            let product_type = match str_field(p, "ProductType") {
                Some("PersonalLoan") | Some("BusinessLoan") => "Loan",
                Some("Mortgage") => "Mortgage",
                Some("CreditCard") => "CreditCard",
                Some(other) => other,
                None => return Err(malformed(ctx, "a product has no ProductType")),
            };
            let amount = p
                .get("OutstandingBalance")
                .and_then(|b| b["Amount"].as_str())
                .and_then(parse_unsigned_amount)
                .ok_or_else(|| malformed(ctx, "an outstanding balance is not a decimal string"))?;
            let currency = currency(
                ctx,
                p.get("OutstandingBalance")
                    .and_then(|b| b["Currency"].as_str()),
            )?;
            let status = match str_field(p, "Status") {
                Some("Active") | None => "Active",
                Some("Closed") => "Closed",
                Some(_) => "Pending",
            };
            let mut d = product_document(
                ctx,
                ProductFields {
                    external_id: id,
                    product_type,
                    status,
                    amount,
                    currency,
                    interest_rate: rate(ctx, p.get("InterestRate"))?,
                    opened: opening_date(ctx, str_field(p, "OpeningDate"))?,
                },
            );
            keep_unmapped(
                &mut d,
                p,
                &[
                    "ProductId",
                    "ProductType",
                    "OutstandingBalance",
                    "InterestRate",
                    "Status",
                    "OpeningDate",
                ],
            );
            Ok(d)
        })
        .collect()
}

/// MongoDB Bank (Berlin Group style): `loans[]` (consumer loans and mortgages).
pub fn mdb_loans(body: &Value, ctx: &SyncContext) -> Result<Vec<Document>, AppError> {
    let list = body["loans"]
        .as_array()
        .ok_or_else(|| malformed(ctx, "loans is missing"))?;
    list.iter()
        .map(|value| {
            let p = value
                .as_object()
                .ok_or_else(|| malformed(ctx, "a loan is not an object"))?;
            let id = str_field(p, "resourceId")
                .ok_or_else(|| malformed(ctx, "a loan has no resourceId"))?;
            let product_type = match str_field(p, "productType") {
                Some("consumerLoan") => "Loan",
                Some("mortgage") => "Mortgage",
                Some("creditCard") => "CreditCard",
                Some(other) => other,
                None => return Err(malformed(ctx, "a loan has no productType")),
            };
            let outstanding = p.get("outstandingAmount");
            let amount = outstanding
                .and_then(|o| o["amount"].as_str())
                .and_then(parse_amount)
                .ok_or_else(|| malformed(ctx, "an outstanding amount is not a decimal string"))?;
            let currency = currency(ctx, outstanding.and_then(|o| o["currency"].as_str()))?;
            let status = match str_field(p, "status") {
                Some("active") | None => "Active",
                Some("closed") => "Closed",
                Some(_) => "Pending",
            };
            let mut d = product_document(
                ctx,
                ProductFields {
                    external_id: id,
                    product_type,
                    status,
                    amount,
                    currency,
                    interest_rate: rate(ctx, p.get("interestRate"))?,
                    opened: opening_date(ctx, str_field(p, "startDate"))?,
                },
            );
            if let Some(details) = str_field(p, "details") {
                d.insert("MDBProductNarrative", details);
            }
            let whole = |key: &str| {
                p.get(key)
                    .and_then(Value::as_i64)
                    .and_then(|n| i32::try_from(n).ok())
            };
            if let Some(months) = whole("repaymentPeriodMonths") {
                d.insert("RepaymentPeriod", months);
            }
            if let Some(years) = whole("amortizationPeriodYears") {
                d.insert("AmortizationPeriod", years);
            }
            if let Some(collateral) = str_field(p, "collateral") {
                d.insert("LoanCollateral", collateral);
            }
            if let Some(property) = p.get("property") {
                let value = property
                    .pointer("/value/amount")
                    .and_then(Value::as_str)
                    .and_then(parse_amount)
                    .ok_or_else(|| malformed(ctx, "a property value is not a decimal string"))?;
                let address = property["address"].as_str().unwrap_or_default();
                d.insert(
                    "PropertyDetails",
                    doc! {"Address": address, "PropertyValue": value},
                );
            }
            keep_unmapped(
                &mut d,
                p,
                &[
                    "resourceId",
                    "productType",
                    "outstandingAmount",
                    "interestRate",
                    "status",
                    "startDate",
                    "details",
                    "repaymentPeriodMonths",
                    "amortizationPeriodYears",
                    "collateral",
                    "property",
                ],
            );
            Ok(d)
        })
        .collect()
}

/// MongoDB Bank (Berlin Group style): `cardAccounts[]`, each with signed `balances[]` (a debit
/// balance is what the customer owes). Normalised as `CreditCard` products whose amount is the
/// outstanding debt (nothing owed when the balance is in credit).
pub fn mdb_cards(body: &Value, ctx: &SyncContext) -> Result<Vec<Document>, AppError> {
    let list = body["cardAccounts"]
        .as_array()
        .ok_or_else(|| malformed(ctx, "cardAccounts is missing"))?;
    list.iter()
        .map(|value| {
            let card = value
                .as_object()
                .ok_or_else(|| malformed(ctx, "a card account is not an object"))?;
            let id = str_field(card, "resourceId")
                .ok_or_else(|| malformed(ctx, "a card account has no resourceId"))?;
            let card_currency = currency(ctx, str_field(card, "currency"))?;
            let balances = card
                .get("balances")
                .and_then(Value::as_array)
                .ok_or_else(|| malformed(ctx, "a card account has no balances"))?;
            let mut best: Option<(u8, f64)> = None;
            for b in balances {
                let amount = b
                    .pointer("/balanceAmount/amount")
                    .and_then(Value::as_str)
                    .and_then(parse_amount)
                    .ok_or_else(|| malformed(ctx, "a card balance is not a decimal string"))?;
                if currency(
                    ctx,
                    b.pointer("/balanceAmount/currency").and_then(Value::as_str),
                )? != card_currency
                {
                    return Err(malformed(ctx, "a card balance is in another currency"));
                }
                let rank = match b["balanceType"].as_str() {
                    Some("interimBooked") => 0,
                    Some("closingBooked") => 1,
                    Some("expected") => 2,
                    _ => 3,
                };
                if best.is_none_or(|(r, _)| rank < r) {
                    best = Some((rank, amount));
                }
            }
            let (_, balance) =
                best.ok_or_else(|| malformed(ctx, "a card account has no balance"))?;
            let status = match str_field(card, "status") {
                Some("enabled") | None => "Active",
                Some("deleted") => "Closed",
                Some("blocked") => "Inactive",
                Some(_) => "Pending",
            };
            let mut d = product_document(
                ctx,
                ProductFields {
                    external_id: id,
                    product_type: "CreditCard",
                    status,
                    // Owed is positive, like every other debt; -0.0 would print as "-0".
                    amount: if balance < 0.0 { -balance } else { 0.0 },
                    currency: card_currency,
                    interest_rate: rate(ctx, card.get("interestRate"))?,
                    opened: opening_date(ctx, str_field(card, "openingDate"))?,
                },
            );
            if let Some(limit) = card.get("creditLimit") {
                let amount = limit["amount"]
                    .as_str()
                    .and_then(parse_amount)
                    .ok_or_else(|| malformed(ctx, "a credit limit is not a decimal string"))?;
                d.insert("CreditLimit", amount);
            }
            keep_unmapped(
                &mut d,
                card,
                &[
                    "resourceId",
                    "currency",
                    "balances",
                    "status",
                    "interestRate",
                    "openingDate",
                    "creditLimit",
                ],
            );
            Ok(d)
        })
        .collect()
}

/// The `$set` for an upsert: sub-documents as dotted paths, so the filter's dotted keys and
/// the update never touch the same path twice.
pub fn as_set(document: &Document) -> Document {
    let mut set = doc! {};
    for (key, value) in document {
        match value {
            Bson::Document(inner)
                if key == "Provenance" || key == "AccountUser" || key == "ProductCustomer" =>
            {
                for (k, v) in inner {
                    set.insert(format!("{key}.{k}"), v.clone());
                }
            }
            other => {
                set.insert(key.clone(), other.clone());
            }
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx(institution: Institution) -> SyncContext {
        SyncContext {
            institution,
            user_id: ObjectId::new(),
            user_name: "fridaklo".into(),
            consent_id: ObjectId::new(),
            synced_at: DateTime::now(),
        }
    }

    #[test]
    fn amounts_parse_exactly_or_not_at_all() {
        assert_eq!(parse_amount("7825.00"), Some(7825.0));
        assert_eq!(parse_amount("-312.45"), Some(-312.45));
        assert_eq!(parse_amount("0.1"), Some(0.1));
        for bad in [
            "", "-", "1e3", "12.", ".5", "1,000.00", " 1", "NaN", "inf", "1.2.3", "abc",
        ] {
            assert_eq!(parse_amount(bad), None, "{bad}");
        }
    }

    fn green_payload(indicator: &str, amount: &str) -> (Value, Value) {
        (
            json!({"Data": {"Account": [{
                "AccountId": "GB-ACC-1", "Status": "Enabled", "Currency": "USD", "AccountType": "Personal",
                "AccountSubType": "CurrentAccount", "OpeningDate": "2023-05-02T10:00:00.000Z",
                "Account": [{"SchemeName": "UK.OBIE.SortCodeAccountNumber", "Identification": "400118822"}],
                "GreenAccountNarrative": "Everyday account"
            }]}, "Links": {}, "Meta": {}}),
            json!({"Data": {"Balance": [
                {"AccountId": "GB-ACC-1", "Amount": {"Amount": "1.00", "Currency": "USD"}, "CreditDebitIndicator": "Credit", "Type": "ClosingBooked"},
                {"AccountId": "GB-ACC-1", "Amount": {"Amount": amount, "Currency": "USD"}, "CreditDebitIndicator": indicator, "Type": "InterimAvailable"}
            ]}}),
        )
    }

    #[test]
    fn green_bank_maps_to_reference_fields() {
        let c = ctx(Institution::GreenBank);
        let (accounts, balances) = green_payload("Debit", "312.45");
        let docs = green_accounts(&accounts, Some(&balances), &c).unwrap();
        let d = &docs[0];
        assert_eq!(d.get_str("AccountBank").unwrap(), "Green Bank");
        assert_eq!(d.get_str("AccountNumber").unwrap(), "400118822");
        assert_eq!(d.get_str("AccountType").unwrap(), "Checking");
        assert_eq!(d.get_str("AccountStatus").unwrap(), "Active");
        assert_eq!(d.get_f64("AccountBalance").unwrap(), -312.45);
        assert_eq!(d.get_str("AccountCurrency").unwrap(), "USD");
        assert_eq!(
            d.get_str("GreenAccountNarrative").unwrap(),
            "Everyday account"
        );
        assert_eq!(d.get_str("SourceAccountType").unwrap(), "Personal");
        assert!(
            d.get_document("AccountDate")
                .unwrap()
                .get_datetime("OpeningDate")
                .is_ok()
        );
        let p = d.get_document("Provenance").unwrap();
        assert_eq!(p.get_str("ExternalId").unwrap(), "GB-ACC-1");
        assert_eq!(p.get_object_id("ConsentId").unwrap(), c.consent_id);
        assert_eq!(
            d.get_document("AccountUser")
                .unwrap()
                .get_object_id("UserId")
                .unwrap(),
            c.user_id
        );
    }

    #[test]
    fn mongodb_bank_cards_are_credit_card_products_owing_the_debit_balance() {
        let c = ctx(Institution::MongoDbBank);
        let body = json!({"cardAccounts": [{
            "resourceId": "mdb-card-1", "maskedPan": "525412******3241", "currency": "USD",
            "name": "Everyday card", "status": "enabled", "interestRate": "19.90",
            "creditLimit": {"currency": "USD", "amount": "3000.00"},
            "balances": [
                {"balanceType": "closingBooked", "balanceAmount": {"currency": "USD", "amount": "-100.00"}},
                {"balanceType": "interimBooked", "balanceAmount": {"currency": "USD", "amount": "-412.30"}}
            ]
        }, {
            "resourceId": "mdb-card-2", "currency": "USD", "status": "deleted",
            "balances": [{"balanceType": "interimBooked", "balanceAmount": {"currency": "USD", "amount": "5.00"}}]
        }]});
        let docs = mdb_cards(&body, &c).unwrap();
        let d = &docs[0];
        assert_eq!(d.get_str("ProductType").unwrap(), "CreditCard");
        assert_eq!(d.get_f64("ProductAmount").unwrap(), 412.3);
        assert_eq!(d.get_f64("ProductInterestRate").unwrap(), 19.9);
        assert_eq!(d.get_f64("CreditLimit").unwrap(), 3000.0);
        assert_eq!(d.get_str("maskedPan").unwrap(), "525412******3241");
        assert_eq!(
            d.get_document("Provenance")
                .unwrap()
                .get_str("ExternalId")
                .unwrap(),
            "mdb-card-1"
        );
        assert_eq!(docs[1].get_f64("ProductAmount").unwrap(), 0.0);
        assert_eq!(docs[1].get_str("ProductStatus").unwrap(), "Closed");
        for bad in [
            json!({}),
            json!({"cardAccounts": [{"resourceId": "x", "currency": "USD", "balances": []}]}),
            json!({"cardAccounts": [{"resourceId": "x", "currency": "USD", "balances": [
                {"balanceType": "interimBooked", "balanceAmount": {"currency": "EUR", "amount": "1.00"}}]}]}),
            json!({"cardAccounts": [{"resourceId": "x", "currency": "USD", "balances": [
                {"balanceType": "interimBooked", "balanceAmount": {"currency": "USD", "amount": "1e3"}}]}]}),
        ] {
            assert!(
                matches!(mdb_cards(&bad, &c), Err(AppError::BadGateway(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn green_bank_amounts_carry_no_sign_of_their_own() {
        let c = ctx(Institution::GreenBank);
        let (accounts, balances) = green_payload("Debit", "-312.45");
        assert!(matches!(
            green_accounts(&accounts, Some(&balances), &c),
            Err(AppError::BadGateway(_))
        ));
        assert_eq!(parse_unsigned_amount("312.45"), Some(312.45));
    }

    #[test]
    fn a_banks_field_names_cannot_reach_the_owner_or_become_operators() {
        let c = ctx(Institution::GreenBank);
        let intruder = ObjectId::new();
        let (mut accounts, balances) = green_payload("Credit", "10.00");
        let account = accounts.pointer_mut("/Data/Account/0").unwrap();
        account["AccountUser.UserId"] = json!({"$oid": intruder.to_hex()});
        account["Provenance.ConsentId"] = json!({"$oid": intruder.to_hex()});
        account["$set"] = json!({"x": 1});
        account["Provenance"] = json!("theirs");
        account["UserId"] = json!("theirs too");
        account["Extra"] = json!({"id": {"$oid": intruder.to_hex()}, "a.b": 1, "$x": 2, "n": 5});
        let d = &green_accounts(&accounts, Some(&balances), &c).unwrap()[0];
        let set = as_set(d);
        assert_eq!(set.get_object_id("AccountUser.UserId").unwrap(), c.user_id);
        assert_eq!(
            set.get_object_id("Provenance.ConsentId").unwrap(),
            c.consent_id
        );
        assert!(set.keys().all(|k| !k.starts_with('$')));
        assert_eq!(set.get_str("SourceProvenance").unwrap(), "theirs");
        assert_eq!(set.get_object_id(OWNER).unwrap(), c.user_id);
        assert_eq!(set.get_str("SourceUserId").unwrap(), "theirs too");
        // Nested: `$` and dotted names dropped, `{"$oid": …}` kept as plain data.
        let extra = set.get_document("Extra").unwrap();
        assert_eq!(extra.get_i32("n").unwrap(), 5);
        assert!(extra.get("a.b").is_none() && extra.get("$x").is_none());
        assert_eq!(
            extra.get_document("id").unwrap().len(),
            0,
            "the $oid key is an operator-like name and is dropped"
        );
    }

    #[test]
    fn green_bank_without_balances_has_no_balance() {
        let (accounts, _) = green_payload("Credit", "1");
        let docs = green_accounts(&accounts, None, &ctx(Institution::GreenBank)).unwrap();
        assert!(docs[0].get("AccountBalance").is_none());
    }

    #[test]
    fn green_bank_malformed_payloads_are_refused() {
        let c = ctx(Institution::GreenBank);
        let (accounts, balances) = green_payload("Credit", "12,00");
        assert!(matches!(
            green_accounts(&accounts, Some(&balances), &c),
            Err(AppError::BadGateway(_))
        ));
        let (accounts, balances) = green_payload("Sideways", "12.00");
        assert!(green_accounts(&accounts, Some(&balances), &c).is_err());
        assert!(green_accounts(&json!({"Data": {}}), None, &c).is_err());
        assert!(
            green_accounts(
                &json!({"Data": {"Account": [{"Currency": "USD"}]}}),
                None,
                &c
            )
            .is_err()
        );
    }

    #[test]
    fn mongodb_bank_maps_to_reference_fields() {
        let c = ctx(Institution::MongoDbBank);
        let body = json!({"accounts": [{
            "resourceId": "mdb-acc-7", "iban": "DE89370400440770051234", "bban": "770051234", "currency": "EUR",
            "cashAccountType": "SVGS", "status": "enabled", "openingDate": "2021-02-11", "details": "Euro savings",
            "name": "Savings account",
            "balances": [
                {"balanceAmount": {"currency": "EUR", "amount": "3000.00"}, "balanceType": "closingBooked"},
                {"balanceAmount": {"currency": "EUR", "amount": "3200.50"}, "balanceType": "interimAvailable"}
            ]
        }]});
        let d = &mdb_accounts(&body, &c).unwrap()[0];
        assert_eq!(d.get_str("AccountBank").unwrap(), "MongoDB Bank");
        assert_eq!(d.get_str("AccountNumber").unwrap(), "770051234");
        assert_eq!(d.get_str("AccountType").unwrap(), "Savings");
        assert_eq!(d.get_f64("AccountBalance").unwrap(), 3200.5);
        assert_eq!(d.get_str("AccountCurrency").unwrap(), "EUR");
        assert_eq!(d.get_str("MDBAccountNarrative").unwrap(), "Euro savings");
        assert_eq!(d.get_str("iban").unwrap(), "DE89370400440770051234");
        assert_eq!(
            d.get_document("Provenance")
                .unwrap()
                .get_str("ExternalId")
                .unwrap(),
            "mdb-acc-7"
        );
    }

    #[test]
    fn mongodb_bank_malformed_payloads_are_refused() {
        let c = ctx(Institution::MongoDbBank);
        assert!(mdb_accounts(&json!({"account": []}), &c).is_err());
        let bad_amount = json!({"accounts": [{"resourceId": "x", "currency": "EUR", "cashAccountType": "SVGS",
            "balances": [{"balanceAmount": {"currency": "EUR", "amount": "lots"}, "balanceType": "expected"}]}]});
        assert!(mdb_accounts(&bad_amount, &c).is_err());
        let bad_currency = json!({"accounts": [{"resourceId": "x", "currency": "euro", "cashAccountType": "SVGS"}]});
        assert!(mdb_accounts(&bad_currency, &c).is_err());
    }

    #[test]
    fn green_bank_products_map_to_reference_fields() {
        let c = ctx(Institution::GreenBank);
        let body = json!({"Data": {"Product": [{
            "ProductId": "GB-PRD-3359", "ProductType": "Mortgage", "Status": "Active",
            "OpeningDate": "2020-01-01T00:00:00Z", "InterestRate": "3.78",
            "OutstandingBalance": {"Amount": "14500.00", "Currency": "USD"},
            "AmortizationPeriod": 30, "PropertyDetails": {"Address": "1 Road", "PropertyValue": 200000},
            "GreenProductNarrative": "Mortgage"
        }]}});
        let d = &green_products(&body, &c).unwrap()[0];
        assert_eq!(d.get_str("ProductId").unwrap(), "3359");
        assert_eq!(d.get_str("ProductType").unwrap(), "Mortgage");
        assert_eq!(d.get_f64("ProductAmount").unwrap(), 14500.0);
        assert_eq!(d.get_f64("ProductInterestRate").unwrap(), 3.78);
        assert_eq!(d.get_i32("AmortizationPeriod").unwrap(), 30);
        assert_eq!(
            d.get_document("PropertyDetails")
                .unwrap()
                .get_i32("PropertyValue")
                .unwrap(),
            200000
        );
        assert_eq!(
            d.get_document("Provenance")
                .unwrap()
                .get_str("ExternalId")
                .unwrap(),
            "GB-PRD-3359"
        );
        let bad = json!({"Data": {"Product": [{"ProductId": "x", "ProductType": "Mortgage", "OutstandingBalance": {"Amount": "1e5", "Currency": "USD"}}]}});
        assert!(green_products(&bad, &c).is_err());
    }

    #[test]
    fn mongodb_bank_loans_map_to_reference_fields() {
        let c = ctx(Institution::MongoDbBank);
        let body = json!({"loans": [{
            "resourceId": "mdb-prd-3463", "productType": "mortgage", "status": "active", "startDate": "2020-10-23",
            "outstandingAmount": {"currency": "USD", "amount": "43500.00"}, "interestRate": "2.62",
            "amortizationPeriodYears": 20, "details": "Mortgage at MongoDB Bank",
            "property": {"address": "123 Main St", "value": {"currency": "USD", "amount": "91719.00"}}
        }]});
        let d = &mdb_loans(&body, &c).unwrap()[0];
        assert_eq!(d.get_str("ProductId").unwrap(), "3463");
        assert_eq!(d.get_str("ProductType").unwrap(), "Mortgage");
        assert_eq!(d.get_f64("ProductAmount").unwrap(), 43500.0);
        assert_eq!(d.get_i32("AmortizationPeriod").unwrap(), 20);
        assert_eq!(
            d.get_document("PropertyDetails")
                .unwrap()
                .get_f64("PropertyValue")
                .unwrap(),
            91719.0
        );
        assert_eq!(
            d.get_str("MDBProductNarrative").unwrap(),
            "Mortgage at MongoDB Bank"
        );
        assert!(
            mdb_loans(
                &json!({"loans": [{"resourceId": "x", "productType": "mortgage"}]}),
                &c
            )
            .is_err()
        );
    }

    #[test]
    fn set_uses_dotted_paths_for_subdocuments() {
        let set = as_set(&doc! {"A": 1, "Provenance": {"X": 1}, "AccountDate": {"OpeningDate": 1}});
        assert!(
            set.contains_key("Provenance.X")
                && set.contains_key("AccountDate")
                && set.contains_key("A")
        );
    }
}
