//! Cash flow per calendar month and currency: income, spending (net of refunds) and net, and
//! spending per category, from one aggregation the database runs (a `$match` on the owner and
//! the months, a `$group` by month, currency and category with one `$sum` of the exact minor
//! units), folded in Rust (FerretDB 1.24 has one accumulator per `$group` and no date
//! operators, so the month is a stored field, `BookingMonth`: DESIGN §8).
//!
//! Definitions, as an aggregator's customer reads them:
//! - only booked items of connected accounts count; transfers between the customer's own
//!   accounts are left out (they are neither income nor spending);
//! - income is what is categorised `income` or `salary`;
//! - spending is every other category, debits minus refunds (a refunded purchase is not spent);
//! - net is income minus spending; the savings rate is net over income.

use std::collections::BTreeMap;

use chrono::{Datelike, Months, NaiveDate};
use futures_util::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use serde_json::{Value, json};

use super::categorise::{INCOME_CATEGORIES, TRANSFERS};
use super::normalise::{BOOKED, major_units, utc};
use crate::db::{Db, EXTERNAL_TRANSACTIONS, OWNER};
use crate::error::AppError;

/// Months `GET /insights/cashflow` answers for when `months` is not given.
pub const DEFAULT_MONTHS: u32 = 6;
/// The most months one request may ask for (the history kept is 13 months and more).
pub const MAX_MONTHS: u32 = 24;

/// One row of the pipeline: a month's sum for one currency and category.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRow {
    pub month: String,
    pub currency: String,
    pub category: String,
    pub amount_minor: i64,
}

/// One calendar month in one currency, in minor units.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MonthFlow {
    pub month: String,
    pub currency: String,
    /// False for the month in progress.
    pub complete: bool,
    pub income_minor: i64,
    /// Money out, net of refunds (positive when more went out than came back).
    pub spending_minor: i64,
    /// Spending per category (positive is money out).
    pub by_category: BTreeMap<String, i64>,
}

impl MonthFlow {
    pub fn net_minor(&self) -> i64 {
        self.income_minor - self.spending_minor
    }

    /// Net over income, to four decimals; none without income.
    pub fn savings_rate(&self) -> Option<f64> {
        (self.income_minor > 0).then(|| {
            (self.net_minor() as f64 / self.income_minor as f64 * 10_000.0).round() / 10_000.0
        })
    }

    /// The public shape.
    pub fn to_json(&self) -> Value {
        let c = self.currency.as_str();
        json!({
            "month": self.month,
            "currency": self.currency,
            "complete": self.complete,
            "income": major_units(self.income_minor, c),
            "spending": major_units(self.spending_minor, c),
            "net": major_units(self.net_minor(), c),
            "savingsRate": self.savings_rate(),
            "spendingByCategory": self
                .by_category
                .iter()
                .filter(|(_, v)| **v != 0)
                .map(|(k, v)| (k.clone(), json!(major_units(*v, c))))
                .collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// The months asked for, oldest first, and their cash flow per currency.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CashFlow {
    /// `"2026-07"` … the month in progress.
    pub months: Vec<String>,
    /// Every currency seen, each with one entry per month (zero where nothing moved), by
    /// currency then month.
    pub flows: Vec<MonthFlow>,
}

impl CashFlow {
    /// The flows of `currency`, oldest month first.
    pub fn of_currency<'a>(&'a self, currency: &'a str) -> impl Iterator<Item = &'a MonthFlow> {
        self.flows.iter().filter(move |f| f.currency == currency)
    }

    pub fn currencies(&self) -> Vec<&str> {
        let mut seen: Vec<&str> = self.flows.iter().map(|f| f.currency.as_str()).collect();
        seen.dedup();
        seen
    }

    /// The newest complete month's flows, one per currency.
    pub fn last_complete_month(&self) -> Vec<&MonthFlow> {
        let Some(month) = self.months.iter().rev().nth(1) else {
            return Vec::new();
        };
        self.flows.iter().filter(|f| &f.month == month).collect()
    }
}

/// The first day of the month `back` months before `today`'s.
fn month_start(today: NaiveDate, back: u32) -> NaiveDate {
    let first = today.with_day(1).unwrap_or(today);
    first.checked_sub_months(Months::new(back)).unwrap_or(first)
}

fn midnight(day: NaiveDate) -> DateTime {
    DateTime::from_millis(
        day.and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis(),
    )
}

/// The `months` calendar months ending with `today`'s (UTC), oldest first, and the date range
/// they cover: [first day of the oldest, first day of the next month).
pub fn window(today: NaiveDate, months: u32) -> (Vec<String>, DateTime, DateTime) {
    let months = months.max(1);
    let labels = (0..months)
        .rev()
        .map(|back| month_start(today, back).format("%Y-%m").to_string())
        .collect();
    let from = month_start(today, months - 1);
    let until = month_start(today, 0)
        .checked_add_months(Months::new(1))
        .unwrap_or(today);
    (labels, midnight(from), midnight(until))
}

/// The pipeline: the owner's booked, connected, non-transfer items in [from, until), summed
/// per (month, currency, category). One `$group`, one `$sum`.
pub fn pipeline(owner: ObjectId, from: DateTime, until: DateTime) -> Vec<Document> {
    vec![
        doc! {"$match": {
            OWNER: owner,
            "Status": BOOKED,
            "BookingDate": {"$gte": from, "$lt": until},
            "Category": {"$ne": TRANSFERS},
            "Provenance.ConnectionStatus": {"$ne": "Disconnected"},
        }},
        doc! {"$group": {
            "_id": {"month": "$BookingMonth", "currency": "$Currency", "category": "$Category"},
            "amount": {"$sum": "$AmountMinor"},
        }},
    ]
}

/// A pipeline row as a [`FlowRow`]; rows of another shape are skipped.
pub fn row(document: &Document) -> Option<FlowRow> {
    let key = document.get_document("_id").ok()?;
    let amount_minor = match document.get("amount")? {
        Bson::Int64(n) => *n,
        Bson::Int32(n) => i64::from(*n),
        _ => return None,
    };
    Some(FlowRow {
        month: key.get_str("month").ok()?.to_string(),
        currency: key.get_str("currency").ok()?.to_string(),
        category: key.get_str("category").unwrap_or("other").to_string(),
        amount_minor,
    })
}

/// Folds the rows into one entry per currency and month of `months` (the last one is the
/// month in progress).
pub fn fold(rows: &[FlowRow], months: &[String]) -> CashFlow {
    let mut flows: BTreeMap<(String, String), MonthFlow> = BTreeMap::new();
    let currencies: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r.currency.as_str()).collect();
    for currency in currencies {
        for (i, month) in months.iter().enumerate() {
            flows.insert(
                (currency.to_string(), month.clone()),
                MonthFlow {
                    month: month.clone(),
                    currency: currency.to_string(),
                    complete: i + 1 < months.len(),
                    ..MonthFlow::default()
                },
            );
        }
    }
    for r in rows {
        let Some(flow) = flows.get_mut(&(r.currency.clone(), r.month.clone())) else {
            continue;
        };
        if INCOME_CATEGORIES.contains(&r.category.as_str()) {
            flow.income_minor += r.amount_minor;
        } else {
            flow.spending_minor -= r.amount_minor;
            *flow.by_category.entry(r.category.clone()).or_default() -= r.amount_minor;
        }
    }
    CashFlow {
        months: months.to_vec(),
        flows: flows.into_values().collect(),
    }
}

/// The owner's cash flow for the `months` calendar months up to `now`'s: one aggregation.
pub async fn cashflow_for(
    db: &Db,
    owner: ObjectId,
    now: DateTime,
    months: u32,
) -> Result<CashFlow, AppError> {
    let (labels, from, until) = window(utc(now).date_naive(), months);
    let rows: Vec<Document> = db
        .open_finance
        .collection::<Document>(EXTERNAL_TRANSACTIONS)
        .aggregate(pipeline(owner, from, until))
        .batch_size(crate::insights::BATCH_SIZE)
        .await?
        .try_collect()
        .await?;
    let rows: Vec<FlowRow> = rows.iter().filter_map(row).collect();
    Ok(fold(&rows, &labels))
}

/// `months` as a request gives it: 1 to [`MAX_MONTHS`], [`DEFAULT_MONTHS`] when absent.
pub fn parse_months(value: Option<&str>) -> Result<u32, AppError> {
    let Some(value) = value else {
        return Ok(DEFAULT_MONTHS);
    };
    value
        .parse::<u32>()
        .ok()
        .filter(|m| (1..=MAX_MONTHS).contains(m))
        .ok_or_else(|| {
            AppError::BadRequest(format!(
                "months must be a whole number from 1 to {MAX_MONTHS}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn r(month: &str, currency: &str, category: &str, amount: i64) -> FlowRow {
        FlowRow {
            month: month.into(),
            currency: currency.into(),
            category: category.into(),
            amount_minor: amount,
        }
    }

    #[test]
    fn the_window_is_whole_calendar_months_ending_with_the_current_one() {
        let (months, from, until) = window(day("2026-12-03"), 3);
        assert_eq!(months, ["2026-10", "2026-11", "2026-12"]);
        assert_eq!(from, midnight(day("2026-10-01")));
        assert_eq!(until, midnight(day("2027-01-01")));
        let (months, from, _) = window(day("2026-01-31"), 2);
        assert_eq!(months, ["2025-12", "2026-01"]);
        assert_eq!(from, midnight(day("2025-12-01")));
    }

    #[test]
    fn income_spending_net_and_categories_per_month_and_currency() {
        let months: Vec<String> = ["2026-10", "2026-11", "2026-12"].map(String::from).to_vec();
        let rows = vec![
            r("2026-10", "GBP", "salary", 300_000),
            r("2026-10", "GBP", "rent", -120_000),
            r("2026-10", "GBP", "groceries", -30_050),
            // A refund in shopping: spending net of it.
            r("2026-10", "GBP", "shopping", 2_000),
            r("2026-11", "GBP", "salary", 300_000),
            r("2026-11", "GBP", "shopping", -10_000),
            r("2026-11", "EUR", "income", 5_000),
            // Outside the window: ignored.
            r("2026-06", "GBP", "salary", 1),
        ];
        let flow = fold(&rows, &months);
        assert_eq!(flow.currencies(), ["EUR", "GBP"]);
        assert_eq!(flow.flows.len(), 6, "every month of every currency");
        let gbp: Vec<&MonthFlow> = flow.of_currency("GBP").collect();
        assert_eq!(gbp[0].income_minor, 300_000);
        assert_eq!(gbp[0].spending_minor, 148_050);
        assert_eq!(gbp[0].net_minor(), 151_950);
        assert_eq!(gbp[0].by_category["shopping"], -2_000);
        assert_eq!(gbp[0].savings_rate(), Some(0.5065));
        assert!(gbp[0].complete && gbp[1].complete && !gbp[2].complete);
        assert_eq!(gbp[2].income_minor, 0);
        assert_eq!(gbp[2].savings_rate(), None);
        let last = flow.last_complete_month();
        assert_eq!(last.len(), 2);
        assert!(last.iter().all(|f| f.month == "2026-11"));
        let json = gbp[0].to_json();
        assert_eq!(json["spending"], 1480.5);
        assert_eq!(json["spendingByCategory"]["groceries"], 300.5);
    }

    #[test]
    fn months_is_validated() {
        assert_eq!(parse_months(None).unwrap(), DEFAULT_MONTHS);
        assert_eq!(parse_months(Some("12")).unwrap(), 12);
        for bad in ["0", "25", "-1", "abc", "1.5", ""] {
            assert!(parse_months(Some(bad)).is_err(), "{bad}");
        }
    }
}
