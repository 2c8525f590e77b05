//! Reference exchange rates: one dated table in the database (`exchange_rates`, document
//! `reference`), seeded with the sample data and replaced by an operator (`leafy-admin
//! set-exchange-rates`), read by each process at most every `EXCHANGE_RATES_REFRESH_SECONDS`.
//! They turn a customer's amounts in several currencies into one figure in the customer's
//! reporting currency; a currency without a rate is left out of that figure, never guessed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mongodb::bson::{self, DateTime, Document, doc};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::db::Db;
use crate::error::AppError;

pub const EXCHANGE_RATES: &str = "exchange_rates";
/// The `_id` of the one table in force.
pub const REFERENCE_TABLE: &str = "reference";

/// A dated table of reference rates: how many units of `base` one unit of each currency is
/// worth. Any currency converts to any other through the base.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateTable {
    #[serde(rename = "Base")]
    pub base: String,
    #[serde(rename = "AsOf")]
    pub as_of: DateTime,
    #[serde(rename = "Source")]
    pub source: String,
    #[serde(rename = "Rates")]
    pub rates: BTreeMap<String, f64>,
}

/// The file an operator gives `leafy-admin set-exchange-rates`:
/// `{"base": "USD", "asOf": "2026-11-30T16:00:00Z", "source": "…", "rates": {"EUR": 1.05}}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OperatorTable {
    base: String,
    as_of: String,
    source: String,
    rates: BTreeMap<String, f64>,
}

/// An ISO 4217-style code: three capital letters.
pub fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

impl RateTable {
    /// Refuses a table that could give a wrong figure: codes that are not currency codes,
    /// rates that are not positive finite numbers, a base whose own rate is not 1.
    pub fn validate(&self) -> Result<(), AppError> {
        let bad = |m: String| Err(AppError::BadRequest(format!("rate table: {m}")));
        if !is_currency_code(&self.base) {
            return bad(format!("base '{}' is not a currency code", self.base));
        }
        if self.rates.is_empty() {
            return bad("it holds no rates".into());
        }
        for (code, rate) in &self.rates {
            if !is_currency_code(code) {
                return bad(format!("'{code}' is not a currency code"));
            }
            if !(rate.is_finite() && *rate > 0.0) {
                return bad(format!("the rate of {code} must be a positive number"));
            }
            if *code == self.base && *rate != 1.0 {
                return bad(format!("the base {code} must have rate 1"));
            }
        }
        Ok(())
    }

    /// Reads and validates an operator's rate file (see [`OperatorTable`]'s format).
    pub fn from_operator_json(text: &str) -> Result<Self, AppError> {
        let bad = |m: String| AppError::BadRequest(format!("rate file: {m}"));
        let file: OperatorTable = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        let as_of = DateTime::parse_rfc3339_str(&file.as_of).map_err(|_| {
            bad(format!(
                "asOf '{}' is not an RFC 3339 date-time",
                file.as_of
            ))
        })?;
        let table = RateTable {
            base: file.base,
            as_of,
            source: file.source,
            rates: file.rates,
        };
        table.validate()?;
        Ok(table)
    }

    fn in_base(&self, currency: &str) -> Option<f64> {
        if currency == self.base {
            Some(1.0)
        } else {
            self.rates.get(currency).copied()
        }
    }

    /// Units of `to` one unit of `from` is worth, when both have a rate.
    pub fn rate(&self, from: &str, to: &str) -> Option<f64> {
        Some(self.in_base(from)? / self.in_base(to)?)
    }
}

/// Amounts in several currencies as one figure in `currency`.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    pub currency: String,
    pub total: f64,
    /// The rate used for each other currency (units of `currency` per unit).
    pub rates: BTreeMap<String, f64>,
    /// Currencies held but without a rate: left out of `total`.
    pub missing: Vec<String>,
}

/// Converts per-currency `amounts` into `to`. Amounts already in `to` need no rate; the others
/// use `table`, and those it has no rate for (or all of them, with no table) are left out and
/// named in `missing`.
pub fn convert(amounts: &BTreeMap<String, f64>, to: &str, table: Option<&RateTable>) -> Conversion {
    let mut conversion = Conversion {
        currency: to.to_string(),
        total: 0.0,
        rates: BTreeMap::new(),
        missing: Vec::new(),
    };
    for (currency, amount) in amounts {
        if currency == to {
            conversion.total += amount;
            continue;
        }
        match table.and_then(|t| t.rate(currency, to)) {
            Some(rate) => {
                conversion.total += amount * rate;
                conversion.rates.insert(currency.clone(), rate);
            }
            None => conversion.missing.push(currency.clone()),
        }
    }
    conversion
}

/// Whether converting `amounts` into `to` needs a rate table at all.
pub fn needs_rates(amounts: &BTreeMap<String, f64>, to: &str) -> bool {
    amounts.keys().any(|c| c != to)
}

/// Logs what a converted figure rests on: the rates and their date, and what was left out.
pub fn log_conversion(what: &str, conversion: &Conversion, table: Option<&RateTable>) {
    if !conversion.rates.is_empty() {
        let rates: Vec<String> = conversion
            .rates
            .iter()
            .map(|(c, r)| format!("{c}={r}"))
            .collect();
        tracing::info!(
            figure = what,
            reporting_currency = %conversion.currency,
            rates = %rates.join(","),
            rates_as_of = %table.map(|t| t.as_of.to_string()).unwrap_or_default(),
            rate_source = %table.map(|t| t.source.as_str()).unwrap_or_default(),
            "amounts converted at reference rates"
        );
    }
    for currency in &conversion.missing {
        tracing::warn!(
            figure = what,
            currency = %currency,
            reporting_currency = %conversion.currency,
            "no reference rate for this currency: its amounts are left out of the total"
        );
    }
}

/// The reporting currency of a customer: the one currency of their Leafy Bank accounts, else
/// (none, or several) the configured default.
pub fn reporting_currency<'a>(
    leafy_bank_currencies: impl IntoIterator<Item = &'a str>,
    default: &str,
) -> String {
    let mut currencies: Vec<&str> = leafy_bank_currencies
        .into_iter()
        .filter(|c| is_currency_code(c))
        .collect();
    currencies.sort_unstable();
    currencies.dedup();
    match currencies.as_slice() {
        [one] => one.to_string(),
        _ => default.to_string(),
    }
}

/// The table in force, as this process last read it: read again at most every `refresh`.
pub struct RateCache {
    refresh: Duration,
    held: Mutex<Option<(Instant, Option<Arc<RateTable>>)>>,
}

impl RateCache {
    pub fn new(refresh: Duration) -> Self {
        RateCache {
            refresh,
            held: Mutex::new(None),
        }
    }

    /// The table in force (`None` when there is none): one round trip when due, else none.
    pub async fn current(&self, db: &Db) -> Result<Option<Arc<RateTable>>, AppError> {
        let mut held = self.held.lock().await;
        if let Some((read_at, table)) = held.as_ref()
            && read_at.elapsed() < self.refresh
        {
            return Ok(table.clone());
        }
        let table = read(db).await?.map(Arc::new);
        *held = Some((Instant::now(), table.clone()));
        Ok(table)
    }
}

async fn read(db: &Db) -> Result<Option<RateTable>, AppError> {
    let Some(document) = db
        .open_finance
        .collection::<Document>(EXCHANGE_RATES)
        .find_one(doc! {"_id": REFERENCE_TABLE})
        .await?
    else {
        return Ok(None);
    };
    match bson::from_document::<RateTable>(document) {
        Ok(table) if table.validate().is_ok() => Ok(Some(table)),
        // A broken table converts nothing (every other currency is then left out, and logged)
        // rather than failing every request.
        _ => {
            tracing::error!("the stored rate table is malformed; no amounts are converted");
            Ok(None)
        }
    }
}

/// Replaces the table in force (an operator's step). Validated first.
pub async fn replace(db: &Db, table: &RateTable) -> Result<(), AppError> {
    table.validate()?;
    let mut document =
        bson::to_document(table).map_err(|e| AppError::Internal(format!("rate table: {e}")))?;
    document.insert("_id", REFERENCE_TABLE);
    db.open_finance
        .collection::<Document>(EXCHANGE_RATES)
        .replace_one(doc! {"_id": REFERENCE_TABLE}, document)
        .upsert(true)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RateTable {
        RateTable {
            base: "USD".into(),
            as_of: DateTime::from_millis(0),
            source: "test".into(),
            rates: BTreeMap::from([("EUR".into(), 1.1), ("GBP".into(), 1.25)]),
        }
    }

    fn amounts(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(c, a)| (c.to_string(), *a)).collect()
    }

    #[test]
    fn other_currencies_convert_through_the_base() {
        let t = table();
        assert_eq!(t.rate("EUR", "USD"), Some(1.1));
        assert_eq!(t.rate("USD", "USD"), Some(1.0));
        assert!((t.rate("GBP", "EUR").unwrap() - 1.25 / 1.1).abs() < 1e-12);
        assert_eq!(t.rate("JPY", "USD"), None);
        let c = convert(&amounts(&[("USD", 100.0), ("EUR", 10.0)]), "USD", Some(&t));
        assert!((c.total - 111.0).abs() < 1e-9, "{c:?}");
        assert_eq!(c.rates, BTreeMap::from([("EUR".into(), 1.1)]));
        assert!(c.missing.is_empty());
    }

    #[test]
    fn a_currency_without_a_rate_is_left_out_and_named() {
        let t = table();
        let c = convert(
            &amounts(&[("USD", 100.0), ("JPY", 5000.0)]),
            "USD",
            Some(&t),
        );
        assert_eq!(c.total, 100.0);
        assert_eq!(c.missing, ["JPY"]);
        // No table at all: only the reporting currency counts.
        let c = convert(&amounts(&[("USD", 100.0), ("EUR", 10.0)]), "USD", None);
        assert_eq!((c.total, c.missing), (100.0, vec!["EUR".to_string()]));
        assert!(!needs_rates(&amounts(&[("USD", 1.0)]), "USD"));
        assert!(needs_rates(&amounts(&[("USD", 1.0), ("EUR", 1.0)]), "USD"));
    }

    #[test]
    fn the_reporting_currency_is_the_customers_single_leafy_bank_currency() {
        assert_eq!(reporting_currency(["EUR", "EUR"], "USD"), "EUR");
        assert_eq!(reporting_currency(["EUR", "GBP"], "USD"), "USD");
        assert_eq!(reporting_currency([], "USD"), "USD");
        assert_eq!(reporting_currency(["Unknown"], "USD"), "USD");
    }

    #[test]
    fn an_operator_file_is_read_strictly() {
        let t = RateTable::from_operator_json(
            r#"{"base": "USD", "asOf": "2026-11-30T16:00:00Z", "source": "ECB", "rates": {"EUR": 1.05}}"#,
        )
        .unwrap();
        assert_eq!(t.rate("EUR", "USD"), Some(1.05));
        assert_eq!(
            t.as_of.try_to_rfc3339_string().unwrap(),
            "2026-11-30T16:00:00Z"
        );
        for bad in [
            r#"{"base": "USD", "asOf": "yesterday", "source": "x", "rates": {"EUR": 1.05}}"#,
            r#"{"base": "USD", "asOf": "2026-11-30T16:00:00Z", "source": "x", "rates": {"EUR": -1}}"#,
            r#"{"base": "USD", "asOf": "2026-11-30T16:00:00Z", "source": "x", "rates": {}, "extra": 1}"#,
            r#"{"base": "USD", "source": "x", "rates": {"EUR": 1.05}}"#,
        ] {
            assert!(RateTable::from_operator_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tables_that_could_mislead_are_refused() {
        assert!(table().validate().is_ok());
        let mut t = table();
        t.rates.insert("EUR".into(), 0.0);
        assert!(t.validate().is_err());
        let mut t = table();
        t.rates.insert("eur".into(), 1.0);
        assert!(t.validate().is_err());
        let mut t = table();
        t.rates.insert("USD".into(), 2.0);
        assert!(t.validate().is_err());
        let mut t = table();
        t.base = "Dollar".into();
        assert!(t.validate().is_err());
        let mut t = table();
        t.rates.clear();
        assert!(t.validate().is_err());
    }
}
