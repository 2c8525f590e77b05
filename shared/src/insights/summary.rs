//! Folding the `$group` rows into one financial position, and the figures derived from it.
//! Pure: rows in, [`Summary`] out. Amounts stay unrounded here; they are rounded (2 decimals)
//! only when serialised. Different currencies are never added together.

use std::collections::BTreeMap;

use mongodb::bson::{Bson, DateTime, Document};
use serde::{Serialize, Serializer};

use crate::fx::{self, RateTable};

/// How Leafy Bank's own accounts are labelled among the institutions.
pub const LEAFY_BANK: &str = "Leafy Bank";
/// Label for a grouping field a document lacks (`_id` fields of missing paths are absent or
/// null, depending on the server).
pub const UNKNOWN: &str = "Unknown";

/// One `$group` row of accounts: the accounts sharing these fields, and how many there are.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountRow {
    pub institution: String,
    pub account_type: String,
    pub currency: String,
    /// `None` when the stored balance is missing or not a number (counted, not summed).
    pub balance: Option<f64>,
    pub synced_at: Option<DateTime>,
    pub accounts: u64,
}

impl AccountRow {
    /// A row of `pipelines::internal_accounts`.
    pub fn internal(row: &Document) -> Self {
        let id = group_id(row);
        AccountRow {
            institution: LEAFY_BANK.into(),
            account_type: label(id.get("type")),
            currency: label(id.get("currency")),
            balance: number(id.get("balance")),
            synced_at: None,
            accounts: count(row.get("accounts")),
        }
    }

    /// A row of `pipelines::external_accounts`.
    pub fn external(row: &Document) -> Self {
        let id = group_id(row);
        AccountRow {
            institution: label(id.get("institution")),
            account_type: label(id.get("type")),
            currency: label(id.get("currency")),
            balance: number(id.get("balance")),
            synced_at: date(id.get("syncedAt")),
            accounts: count(row.get("accounts")),
        }
    }

    /// Balance × number of accounts (the accounts of a row share one balance).
    pub fn total(&self) -> f64 {
        self.balance.unwrap_or(0.0) * self.accounts as f64
    }
}

/// The property a mortgage is secured on.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub value: f64,
    pub address: Option<String>,
}

/// One `$group` row of products: the outstanding amount of the products sharing these fields.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductRow {
    pub institution: String,
    pub product_type: String,
    pub currency: String,
    /// Annual interest rate in percent, when the institution reports one.
    pub rate: Option<f64>,
    pub property: Option<Property>,
    pub synced_at: Option<DateTime>,
    pub amount: f64,
}

impl ProductRow {
    /// A row of `pipelines::external_products`.
    pub fn from_row(row: &Document) -> Self {
        let id = group_id(row);
        let property = number(id.get("propertyValue")).map(|value| Property {
            value,
            address: id.get_str("propertyAddress").ok().map(String::from),
        });
        ProductRow {
            institution: label(id.get("institution")),
            product_type: label(id.get("type")),
            currency: label(id.get("currency")),
            rate: number(id.get("rate")),
            property,
            synced_at: date(id.get("syncedAt")),
            amount: number(row.get("amount")).unwrap_or(0.0),
        }
    }
}

/// One `$group` row of authorised consents.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsentRow {
    pub institution: String,
    pub expires_at: Option<DateTime>,
    pub consents: u64,
}

impl ConsentRow {
    pub fn from_row(row: &Document) -> Self {
        let id = group_id(row);
        ConsentRow {
            institution: label(id.get("institution")),
            expires_at: date(id.get("expiresAt")),
            consents: count(row.get("consents")),
        }
    }
}

/// A legacy total's rows (`_id` = currency, `total` = sum) as amounts per currency.
pub fn per_currency(rows: &[Document]) -> BTreeMap<String, f64> {
    let mut totals = BTreeMap::new();
    for row in rows {
        let currency = label(row.get("_id"));
        *totals.entry(currency).or_insert(0.0) += number(row.get("total")).unwrap_or(0.0);
    }
    totals
}

fn group_id(row: &Document) -> Document {
    row.get_document("_id").cloned().unwrap_or_default()
}

fn label(value: Option<&Bson>) -> String {
    match value {
        Some(Bson::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => UNKNOWN.into(),
    }
}

/// A stored amount as f64: doubles, integers and decimals; anything else (missing, null, text,
/// NaN) is no number.
pub fn number(value: Option<&Bson>) -> Option<f64> {
    let n = match value? {
        Bson::Double(x) => *x,
        Bson::Int32(x) => f64::from(*x),
        Bson::Int64(x) => *x as f64,
        Bson::Decimal128(d) => d.to_string().parse().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

fn count(value: Option<&Bson>) -> u64 {
    number(value).map(|n| n.max(0.0) as u64).unwrap_or(0)
}

fn date(value: Option<&Bson>) -> Option<DateTime> {
    match value {
        Some(Bson::DateTime(at)) => Some(*at),
        _ => None,
    }
}

/// The customer's position in one currency.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrencyPosition {
    pub currency: String,
    #[serde(serialize_with = "money")]
    pub leafy_bank_balance: f64,
    #[serde(serialize_with = "money")]
    pub external_balance: f64,
    /// Leafy Bank's accounts plus the connected external accounts (overdrafts count negative).
    #[serde(serialize_with = "money")]
    pub total_balance: f64,
    /// Outstanding amounts of the connected, open products: loans, mortgages, credit cards…
    #[serde(serialize_with = "money")]
    pub total_debt: f64,
    /// Total balance minus total debt. Property values are not counted as assets.
    #[serde(serialize_with = "money")]
    pub net_worth: f64,
    /// Total debt / total balance; `None` when the balance is not positive.
    #[serde(serialize_with = "ratio")]
    pub debt_to_asset_ratio: Option<f64>,
    /// Balance-weighted average annual rate (percent) of the debt whose rate is known.
    #[serde(serialize_with = "percent")]
    pub average_debt_interest_rate: Option<f64>,
    /// One year of interest at today's amounts and rates (simple, not compounded).
    #[serde(serialize_with = "money")]
    pub estimated_annual_interest: f64,
    /// Debt whose institution reports no rate: in the total, not in the average.
    #[serde(serialize_with = "money")]
    pub debt_without_rate: f64,
    pub accounts: u64,
}

impl CurrencyPosition {
    fn derive(&mut self, rated_debt: f64, rate_weighted: f64) {
        self.total_balance = self.leafy_bank_balance + self.external_balance;
        self.net_worth = self.total_balance - self.total_debt;
        self.debt_to_asset_ratio =
            (self.total_balance > 0.0).then(|| self.total_debt / self.total_balance);
        self.average_debt_interest_rate = weighted_rate(rated_debt, rate_weighted);
        self.estimated_annual_interest = rate_weighted / 100.0;
    }
}

fn weighted_rate(rated_amount: f64, amount_times_rate: f64) -> Option<f64> {
    (rated_amount > 0.0).then(|| amount_times_rate / rated_amount)
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstitutionLine {
    pub institution: String,
    pub currency: String,
    #[serde(serialize_with = "money")]
    pub balance: f64,
    #[serde(serialize_with = "money")]
    pub debt: f64,
    pub accounts: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountTypeLine {
    pub account_type: String,
    pub currency: String,
    #[serde(serialize_with = "money")]
    pub balance: f64,
    pub accounts: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductTypeLine {
    pub product_type: String,
    pub currency: String,
    #[serde(serialize_with = "money")]
    pub amount: f64,
    #[serde(serialize_with = "percent")]
    pub average_interest_rate: Option<f64>,
    #[serde(serialize_with = "money")]
    pub estimated_annual_interest: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OverdrawnLine {
    pub institution: String,
    pub account_type: String,
    pub currency: String,
    /// The balance of each of these accounts (negative).
    #[serde(serialize_with = "money")]
    pub balance: f64,
    pub accounts: u64,
}

/// How current the institution data is.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Freshness {
    #[serde(serialize_with = "iso")]
    pub oldest_synced_at: Option<DateTime>,
    #[serde(serialize_with = "iso")]
    pub newest_synced_at: Option<DateTime>,
    /// Some connected accounts or products carry no sync date (connected, freshness unknown).
    pub unknown: bool,
}

impl Freshness {
    fn see(&mut self, synced_at: Option<DateTime>) {
        let Some(at) = synced_at else {
            self.unknown = true;
            return;
        };
        if self.oldest_synced_at.is_none_or(|o| at < o) {
            self.oldest_synced_at = Some(at);
        }
        if self.newest_synced_at.is_none_or(|n| at > n) {
            self.newest_synced_at = Some(at);
        }
    }
}

/// The whole position, per currency, with its breakdowns. Lines are sorted by their keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub currencies: Vec<CurrencyPosition>,
    pub by_institution: Vec<InstitutionLine>,
    pub by_account_type: Vec<AccountTypeLine>,
    pub by_product_type: Vec<ProductTypeLine>,
    pub overdrawn_accounts: Vec<OverdrawnLine>,
    pub freshness: Freshness,
    /// The per-currency figures as one, in the customer's reporting currency (set by
    /// `insights::summary_for`, which holds the rate table; [`fold`] leaves it `None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub converted: Option<ConvertedPosition>,
    /// Last calendar month's income, spending and savings rate per currency, from the
    /// transactions (set by `insights::summary_for`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_month: Option<LastMonth>,
}

/// The newest complete month of the cash flow, per currency.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LastMonth {
    pub month: String,
    pub currencies: Vec<serde_json::Value>,
}

impl LastMonth {
    pub fn of(flow: &crate::transactions::cashflow::CashFlow) -> Self {
        LastMonth {
            month: flow.months.iter().rev().nth(1).cloned().unwrap_or_default(),
            currencies: flow
                .last_complete_month()
                .iter()
                .map(|m| {
                    let mut v = m.to_json();
                    if let Some(o) = v.as_object_mut() {
                        o.remove("month");
                        o.remove("complete");
                    }
                    v
                })
                .collect(),
        }
    }
}

/// The position in one currency: every other currency converted at the reference rates.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConvertedPosition {
    pub currency: String,
    #[serde(serialize_with = "money")]
    pub total_balance: f64,
    #[serde(serialize_with = "money")]
    pub total_debt: f64,
    #[serde(serialize_with = "money")]
    pub net_worth: f64,
    /// Units of `currency` per unit of each other currency held.
    pub rates: BTreeMap<String, f64>,
    #[serde(serialize_with = "iso")]
    pub rates_as_of: Option<DateTime>,
    pub rate_source: Option<String>,
    /// Currencies held without a reference rate: left out of these figures (they are in
    /// `currencies`).
    pub excluded_currencies: Vec<String>,
}

impl ConvertedPosition {
    /// The summary's balances and debts converted into `currency` with `table`.
    pub fn of(summary: &Summary, currency: &str, table: Option<&RateTable>) -> Self {
        let (balances, debts) = summary.balances_and_debts();
        let balance = fx::convert(&balances, currency, table);
        let debt = fx::convert(&debts, currency, table);
        let mut excluded = balance.missing.clone();
        excluded.extend(debt.missing.iter().cloned());
        excluded.sort();
        excluded.dedup();
        let mut rates = balance.rates.clone();
        rates.extend(debt.rates.clone());
        let used = !rates.is_empty();
        ConvertedPosition {
            currency: currency.to_string(),
            total_balance: balance.total,
            total_debt: debt.total,
            net_worth: balance.total - debt.total,
            rates,
            rates_as_of: table.filter(|_| used).map(|t| t.as_of),
            rate_source: table.filter(|_| used).map(|t| t.source.clone()),
            excluded_currencies: excluded,
        }
    }
}

impl Summary {
    pub fn currency(&self, currency: &str) -> Option<&CurrencyPosition> {
        self.currencies.iter().find(|c| c.currency == currency)
    }

    /// Total balance and total debt per currency.
    pub fn balances_and_debts(&self) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
        let of = |f: fn(&CurrencyPosition) -> f64| {
            self.currencies
                .iter()
                .map(|c| (c.currency.clone(), f(c)))
                .collect()
        };
        (of(|c| c.total_balance), of(|c| c.total_debt))
    }
}

/// Sums per key; `rated` and `weighted` carry Σ amount and Σ amount × rate of rated debt.
#[derive(Default)]
struct DebtAcc {
    amount: f64,
    rated: f64,
    weighted: f64,
}

impl DebtAcc {
    fn add(&mut self, row: &ProductRow) {
        self.amount += row.amount;
        if let Some(rate) = row.rate {
            self.rated += row.amount;
            self.weighted += row.amount * rate;
        }
    }
}

/// Folds the three account and product pipelines' rows into the summary.
pub fn fold(internal: &[AccountRow], external: &[AccountRow], products: &[ProductRow]) -> Summary {
    let mut currencies: BTreeMap<String, CurrencyPosition> = BTreeMap::new();
    let mut debt_by_currency: BTreeMap<String, DebtAcc> = BTreeMap::new();
    let mut institutions: BTreeMap<(String, String), InstitutionLine> = BTreeMap::new();
    let mut account_types: BTreeMap<(String, String), AccountTypeLine> = BTreeMap::new();
    let mut product_types: BTreeMap<(String, String), DebtAcc> = BTreeMap::new();
    let mut overdrawn: BTreeMap<(String, String, String, u64), OverdrawnLine> = BTreeMap::new();
    let mut freshness = Freshness::default();

    for (is_internal, row) in internal
        .iter()
        .map(|r| (true, r))
        .chain(external.iter().map(|r| (false, r)))
    {
        let p = position(&mut currencies, &row.currency);
        if is_internal {
            p.leafy_bank_balance += row.total();
        } else {
            p.external_balance += row.total();
            freshness.see(row.synced_at);
        }
        p.accounts += row.accounts;

        let line = institutions
            .entry((row.institution.clone(), row.currency.clone()))
            .or_insert_with(|| InstitutionLine {
                institution: row.institution.clone(),
                currency: row.currency.clone(),
                ..Default::default()
            });
        line.balance += row.total();
        line.accounts += row.accounts;

        let line = account_types
            .entry((row.account_type.clone(), row.currency.clone()))
            .or_insert_with(|| AccountTypeLine {
                account_type: row.account_type.clone(),
                currency: row.currency.clone(),
                ..Default::default()
            });
        line.balance += row.total();
        line.accounts += row.accounts;

        if let Some(balance) = row.balance.filter(|b| *b < 0.0) {
            let key = (
                row.institution.clone(),
                row.account_type.clone(),
                row.currency.clone(),
                balance.to_bits(),
            );
            overdrawn
                .entry(key)
                .or_insert_with(|| OverdrawnLine {
                    institution: row.institution.clone(),
                    account_type: row.account_type.clone(),
                    currency: row.currency.clone(),
                    balance,
                    accounts: 0,
                })
                .accounts += row.accounts;
        }
    }

    for row in products {
        position(&mut currencies, &row.currency);
        freshness.see(row.synced_at);
        debt_by_currency
            .entry(row.currency.clone())
            .or_default()
            .add(row);
        institutions
            .entry((row.institution.clone(), row.currency.clone()))
            .or_insert_with(|| InstitutionLine {
                institution: row.institution.clone(),
                currency: row.currency.clone(),
                ..Default::default()
            })
            .debt += row.amount;
        product_types
            .entry((row.product_type.clone(), row.currency.clone()))
            .or_default()
            .add(row);
    }

    for (currency, p) in currencies.iter_mut() {
        let debt = debt_by_currency.remove(currency).unwrap_or_default();
        p.total_debt = debt.amount;
        p.debt_without_rate = debt.amount - debt.rated;
        p.derive(debt.rated, debt.weighted);
    }

    Summary {
        currencies: currencies.into_values().collect(),
        by_institution: institutions.into_values().collect(),
        by_account_type: account_types.into_values().collect(),
        by_product_type: product_types
            .into_iter()
            .map(|((product_type, currency), acc)| ProductTypeLine {
                product_type,
                currency,
                amount: acc.amount,
                average_interest_rate: weighted_rate(acc.rated, acc.weighted),
                estimated_annual_interest: acc.weighted / 100.0,
            })
            .collect(),
        overdrawn_accounts: overdrawn.into_values().collect(),
        freshness,
        converted: None,
        last_month: None,
    }
}

fn position<'m>(
    map: &'m mut BTreeMap<String, CurrencyPosition>,
    currency: &str,
) -> &'m mut CurrencyPosition {
    map.entry(currency.to_string())
        .or_insert_with(|| CurrencyPosition {
            currency: currency.to_string(),
            ..Default::default()
        })
}

/// Rounds to `decimals` places for display, without a negative zero.
pub fn round(value: f64, decimals: i32) -> f64 {
    let factor = 10f64.powi(decimals);
    let rounded = (value * factor).round() / factor;
    if rounded == 0.0 { 0.0 } else { rounded }
}

/// Money: 2 decimals.
pub fn round2(value: f64) -> f64 {
    round(value, 2)
}

fn money<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round2(*value))
}

fn percent<S: Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_some(&round2(*v)),
        None => s.serialize_none(),
    }
}

/// Ratios keep 4 decimals (a ratio of 0.0123 is 1.23 %).
fn ratio<S: Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => s.serialize_some(&round(*v, 4)),
        None => s.serialize_none(),
    }
}

fn iso<S: Serializer>(value: &Option<DateTime>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(at) => s.serialize_some(&crate::consents::iso(*at)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::doc;

    fn account(institution: &str, kind: &str, currency: &str, balance: f64, n: u64) -> AccountRow {
        AccountRow {
            institution: institution.into(),
            account_type: kind.into(),
            currency: currency.into(),
            balance: Some(balance),
            synced_at: None,
            accounts: n,
        }
    }

    fn product(kind: &str, currency: &str, rate: Option<f64>, amount: f64) -> ProductRow {
        ProductRow {
            institution: "Green Bank".into(),
            product_type: kind.into(),
            currency: currency.into(),
            rate,
            property: None,
            synced_at: None,
            amount,
        }
    }

    #[test]
    fn rows_parse_from_group_output_with_missing_or_null_fields() {
        let at = DateTime::from_millis(1_700_000_000_000);
        let row = doc! {
            "_id": {"institution": "Green Bank", "type": "Savings", "currency": "USD",
                    "balance": 7825_i32, "syncedAt": at},
            "accounts": 2_i64,
        };
        let parsed = AccountRow::external(&row);
        assert_eq!(
            parsed,
            account("Green Bank", "Savings", "USD", 7825.0, 2).with_sync(at)
        );
        assert_eq!(parsed.total(), 15650.0);

        // MongoDB leaves missing paths out of the `_id` document; FerretDB may write null.
        for row in [
            doc! {"_id": {}, "accounts": 1},
            doc! {"_id": {"institution": null, "type": null, "currency": null,
            "balance": null, "syncedAt": null}, "accounts": 1.0},
        ] {
            let parsed = AccountRow::external(&row);
            assert_eq!(parsed.institution, UNKNOWN);
            assert_eq!(parsed.currency, UNKNOWN);
            assert_eq!(parsed.balance, None);
            assert_eq!(parsed.synced_at, None);
            assert_eq!(parsed.accounts, 1);
            assert_eq!(parsed.total(), 0.0);
        }

        let row = doc! {
            "_id": {"institution": "MongoDB Bank", "type": "Mortgage", "currency": "USD",
                    "rate": 2.62, "propertyValue": 91719, "propertyAddress": "123 Main St"},
            "amount": 43500,
        };
        let parsed = ProductRow::from_row(&row);
        assert_eq!(parsed.rate, Some(2.62));
        assert_eq!(parsed.amount, 43500.0);
        assert_eq!(
            parsed.property,
            Some(Property {
                value: 91719.0,
                address: Some("123 Main St".into())
            })
        );
        assert_eq!(parsed.synced_at, None);
    }

    impl AccountRow {
        fn with_sync(mut self, at: DateTime) -> Self {
            self.synced_at = Some(at);
            self
        }
    }

    #[test]
    fn numbers_of_every_numeric_type_and_nothing_else() {
        assert_eq!(number(Some(&Bson::Int32(3))), Some(3.0));
        assert_eq!(number(Some(&Bson::Int64(3))), Some(3.0));
        assert_eq!(number(Some(&Bson::Double(-2.5))), Some(-2.5));
        let d: mongodb::bson::Decimal128 = "12.75".parse().unwrap();
        assert_eq!(number(Some(&Bson::Decimal128(d))), Some(12.75));
        assert_eq!(number(Some(&Bson::String("12".into()))), None);
        assert_eq!(number(Some(&Bson::Double(f64::NAN))), None);
        assert_eq!(number(Some(&Bson::Null)), None);
        assert_eq!(number(None), None);
    }

    #[test]
    fn totals_breakdowns_and_derived_figures() {
        let internal = [
            account(LEAFY_BANK, "Savings", "USD", 1100.0, 1),
            account(LEAFY_BANK, "Checking", "USD", 2975.0, 1),
        ];
        let external = [
            account("Green Bank", "Savings", "USD", 7825.0, 2),
            account("MongoDB Bank", "Checking", "USD", -200.0, 1),
        ];
        let products = [
            product("Loan", "USD", Some(4.0), 10_000.0),
            product("Mortgage", "USD", Some(2.0), 30_000.0),
            product("CreditCard", "USD", None, 500.0),
        ];
        let s = fold(&internal, &external, &products);
        assert_eq!(s.currencies.len(), 1);
        let usd = s.currency("USD").unwrap();
        assert_eq!(usd.leafy_bank_balance, 4075.0);
        assert_eq!(usd.external_balance, 15_450.0);
        assert_eq!(usd.total_balance, 19_525.0);
        assert_eq!(usd.total_debt, 40_500.0);
        assert_eq!(usd.net_worth, 19_525.0 - 40_500.0);
        assert_eq!(usd.debt_to_asset_ratio, Some(40_500.0 / 19_525.0));
        // (10000 × 4 + 30000 × 2) / 40000; the card without a rate is left out.
        assert_eq!(usd.average_debt_interest_rate, Some(2.5));
        assert_eq!(usd.estimated_annual_interest, 1000.0);
        assert_eq!(usd.debt_without_rate, 500.0);
        assert_eq!(usd.accounts, 5);

        let institutions: Vec<_> = s
            .by_institution
            .iter()
            .map(|l| (l.institution.as_str(), l.balance, l.debt, l.accounts))
            .collect();
        assert_eq!(
            institutions,
            [
                ("Green Bank", 15_650.0, 40_500.0, 2),
                (LEAFY_BANK, 4075.0, 0.0, 2),
                ("MongoDB Bank", -200.0, 0.0, 1),
            ]
        );
        let types: Vec<_> = s
            .by_account_type
            .iter()
            .map(|l| (l.account_type.as_str(), l.balance, l.accounts))
            .collect();
        assert_eq!(types, [("Checking", 2775.0, 2), ("Savings", 16_750.0, 3)]);
        let products: Vec<_> = s
            .by_product_type
            .iter()
            .map(|l| {
                (
                    l.product_type.as_str(),
                    l.amount,
                    l.average_interest_rate,
                    l.estimated_annual_interest,
                )
            })
            .collect();
        assert_eq!(
            products,
            [
                ("CreditCard", 500.0, None, 0.0),
                ("Loan", 10_000.0, Some(4.0), 400.0),
                ("Mortgage", 30_000.0, Some(2.0), 600.0),
            ]
        );
        assert_eq!(
            s.overdrawn_accounts,
            [OverdrawnLine {
                institution: "MongoDB Bank".into(),
                account_type: "Checking".into(),
                currency: "USD".into(),
                balance: -200.0,
                accounts: 1,
            }]
        );
    }

    #[test]
    fn currencies_are_never_added_together() {
        let internal = [account(LEAFY_BANK, "Checking", "USD", 100.0, 1)];
        let external = [
            account("Green Bank", "Savings", "EUR", 200.0, 1),
            account("Green Bank", "Savings", "USD", 50.0, 1),
        ];
        let products = [product("Loan", "GBP", Some(5.0), 1000.0)];
        let s = fold(&internal, &external, &products);
        let currencies: Vec<_> = s
            .currencies
            .iter()
            .map(|c| (c.currency.as_str(), c.total_balance, c.total_debt))
            .collect();
        assert_eq!(
            currencies,
            [
                ("EUR", 200.0, 0.0),
                ("GBP", 0.0, 1000.0),
                ("USD", 150.0, 0.0)
            ]
        );
        // No balance in GBP: no ratio rather than a division by zero.
        assert_eq!(s.currency("GBP").unwrap().debt_to_asset_ratio, None);
        assert_eq!(s.currency("GBP").unwrap().net_worth, -1000.0);
        assert_eq!(s.currency("EUR").unwrap().average_debt_interest_rate, None);
        let green: Vec<_> = s
            .by_institution
            .iter()
            .filter(|l| l.institution == "Green Bank")
            .map(|l| (l.currency.as_str(), l.balance, l.debt))
            .collect();
        assert_eq!(
            green,
            [
                ("EUR", 200.0, 0.0),
                ("GBP", 0.0, 1000.0),
                ("USD", 50.0, 0.0)
            ]
        );
    }

    #[test]
    fn nothing_connected_is_an_empty_position() {
        let s = fold(&[], &[], &[]);
        assert_eq!(s, Summary::default());
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["currencies"], serde_json::json!([]));
        assert_eq!(json["freshness"]["oldestSyncedAt"], serde_json::Value::Null);
        assert_eq!(json["freshness"]["unknown"], false);
    }

    #[test]
    fn freshness_is_the_oldest_and_newest_sync_and_flags_unknown_dates() {
        let old = DateTime::from_millis(1_000);
        let new = DateTime::from_millis(9_000);
        let external = [
            account("Green Bank", "Savings", "USD", 1.0, 1).with_sync(new),
            account("Green Bank", "Savings", "USD", 2.0, 1).with_sync(old),
        ];
        let s = fold(&[], &external, &[]);
        assert_eq!(s.freshness.oldest_synced_at, Some(old));
        assert_eq!(s.freshness.newest_synced_at, Some(new));
        assert!(!s.freshness.unknown);
        let s = fold(&[], &external, &[product("Loan", "USD", None, 1.0)]);
        assert!(s.freshness.unknown);
        // Leafy Bank's own accounts are live data: they never make freshness unknown.
        let s = fold(&[account(LEAFY_BANK, "Savings", "USD", 1.0, 1)], &[], &[]);
        assert!(!s.freshness.unknown);
    }

    #[test]
    fn serialised_figures_are_rounded_and_camel_case() {
        let internal = [account(LEAFY_BANK, "Checking", "USD", 0.1, 1)];
        let external = [account("Green Bank", "Savings", "USD", 0.2, 1)];
        let products = [product("Loan", "USD", Some(3.333_333), 1.0)];
        let s = fold(&internal, &external, &products);
        let json = serde_json::to_value(&s).unwrap();
        let usd = &json["currencies"][0];
        assert_eq!(usd["totalBalance"], 0.3);
        assert_eq!(usd["netWorth"], -0.7);
        assert_eq!(usd["averageDebtInterestRate"], 3.33);
        assert_eq!(usd["estimatedAnnualInterest"], 0.03);
        assert_eq!(usd["debtToAssetRatio"], 3.3333);
        assert_eq!(round2(-0.001), 0.0);
        assert!(round2(-0.001).is_sign_positive());
    }

    #[test]
    fn legacy_rows_become_amounts_per_currency() {
        let rows = [
            doc! {"_id": "USD", "total": 4625},
            doc! {"_id": "EUR", "total": 10.5},
            doc! {"_id": null, "total": 1},
        ];
        let totals = per_currency(&rows);
        assert_eq!(totals.get("USD"), Some(&4625.0));
        assert_eq!(totals.get("EUR"), Some(&10.5));
        assert_eq!(totals.get(UNKNOWN), Some(&1.0));
    }
}
