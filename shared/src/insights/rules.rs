//! Recommendation rules: pure functions of the folded position, the product rows and the
//! authorised consents. Each result carries a stable id (rule plus subject, so the same
//! situation always has the same id), a severity, a title, a message and the figures that
//! triggered it.

use std::collections::BTreeMap;

use mongodb::bson::DateTime;
use serde::Serialize;
use serde_json::{Value, json};

use super::history_rules::{self, History};
use super::summary::{ConsentRow, ProductRow, Summary, round, round2};

pub const HIGH_INTEREST_IDLE_SAVINGS: &str = "high-interest-debt-idle-savings";
pub const CONSENT_EXPIRING: &str = "consent-expiring";
pub const STALE_DATA: &str = "stale-data";
pub const ASSET_CONCENTRATION: &str = "asset-concentration";
pub const OVERDRAWN_ACCOUNT: &str = "overdrawn-account";
pub const HIGH_LOAN_TO_VALUE: &str = "high-loan-to-value";
pub use super::history_rules::{
    BALANCE_FORECAST_NEGATIVE, CATEGORY_SPIKE, INCOME_DROPPED, SUBSCRIPTIONS_GREW,
};

/// Every rule, in the order they are evaluated.
pub const RULES: [&str; 10] = [
    HIGH_INTEREST_IDLE_SAVINGS,
    CONSENT_EXPIRING,
    STALE_DATA,
    ASSET_CONCENTRATION,
    OVERDRAWN_ACCOUNT,
    HIGH_LOAN_TO_VALUE,
    CATEGORY_SPIKE,
    SUBSCRIPTIONS_GREW,
    INCOME_DROPPED,
    BALANCE_FORECAST_NEGATIVE,
];

/// Debt at or above this annual rate (percent) is worth paying down from savings.
pub const HIGH_INTEREST_RATE: f64 = 4.0;
/// Savings below this (per currency) are a buffer, not idle money.
pub const IDLE_SAVINGS_MIN: f64 = 1000.0;
pub const CONSENT_WARNING_DAYS: i64 = 14;
pub const STALE_AFTER_HOURS: i64 = 24;
/// Share of a currency's assets held at one institution above which the rule fires.
pub const CONCENTRATION_SHARE: f64 = 0.80;
/// Below this total (per currency) concentration does not matter.
pub const CONCENTRATION_MIN_ASSETS: f64 = 1000.0;
pub const HIGH_LTV: f64 = 0.80;

/// The account type whose balances count as savings.
const SAVINGS: &str = "Savings";
const MORTGAGE: &str = "Mortgage";
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
const HOUR_MS: i64 = 60 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    pub id: String,
    pub rule: &'static str,
    pub severity: Severity,
    pub title: String,
    pub message: String,
    pub evidence: Value,
}

/// What the rules look at.
pub struct RuleInput<'a> {
    pub summary: &'a Summary,
    pub products: &'a [ProductRow],
    pub consents: &'a [ConsentRow],
    pub now: DateTime,
    /// The transaction history's cash flow, recurring series and connected accounts.
    pub history: &'a History,
}

/// Every rule's findings, most severe first, then by id.
pub fn recommend(input: &RuleInput<'_>) -> Vec<Recommendation> {
    let mut found = Vec::new();
    found.extend(high_interest_debt_idle_savings(input));
    found.extend(consent_expiring(input));
    found.extend(stale_data(input));
    found.extend(asset_concentration(input));
    found.extend(overdrawn_accounts(input));
    found.extend(high_loan_to_value(input));
    found.extend(history_rules::category_spike(input));
    found.extend(history_rules::subscriptions_grew(input));
    found.extend(history_rules::income_dropped(input));
    found.extend(history_rules::balance_forecast_negative(input));
    found.sort_by(|a, b| (a.severity, &a.id).cmp(&(b.severity, &b.id)));
    found
}

fn money(amount: f64, currency: &str) -> String {
    format!("{:.2} {currency}", round2(amount))
}

/// Non-mortgage debt at a high rate while savings in the same currency could pay it down.
/// The evidence estimates the interest a year that paying the dearest debt first would save.
pub fn high_interest_debt_idle_savings(input: &RuleInput<'_>) -> Vec<Recommendation> {
    let mut dear: BTreeMap<&str, Vec<&ProductRow>> = BTreeMap::new();
    for p in input.products {
        let high = p.rate.is_some_and(|r| r >= HIGH_INTEREST_RATE);
        if high && p.product_type != MORTGAGE && p.amount > 0.0 {
            dear.entry(p.currency.as_str()).or_default().push(p);
        }
    }
    let mut found = Vec::new();
    for (currency, mut debts) in dear {
        let savings: f64 = input
            .summary
            .by_account_type
            .iter()
            .filter(|l| l.account_type == SAVINGS && l.currency == currency)
            .map(|l| l.balance.max(0.0))
            .sum();
        if savings < IDLE_SAVINGS_MIN {
            continue;
        }
        debts.sort_by(|a, b| {
            b.rate
                .partial_cmp(&a.rate)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let debt: f64 = debts.iter().map(|d| d.amount).sum();
        let highest_rate = debts[0].rate.unwrap_or_default();
        let (mut left, mut saved) = (savings, 0.0);
        for d in &debts {
            let paid = left.min(d.amount);
            saved += paid * d.rate.unwrap_or_default() / 100.0;
            left -= paid;
        }
        let payable = savings.min(debt);
        found.push(Recommendation {
            id: format!("{HIGH_INTEREST_IDLE_SAVINGS}:{currency}"),
            rule: HIGH_INTEREST_IDLE_SAVINGS,
            severity: Severity::Warning,
            title: "High-interest debt while savings sit idle".into(),
            message: format!(
                "You owe {} at up to {highest_rate:.2}% while {} sits in savings. Paying down {} \
                 would save about {} in interest a year.",
                money(debt, currency),
                money(savings, currency),
                money(payable, currency),
                money(saved, currency),
            ),
            evidence: json!({
                "currency": currency,
                "highInterestDebt": round2(debt),
                "highestInterestRate": round2(highest_rate),
                "rateThreshold": HIGH_INTEREST_RATE,
                "savingsBalance": round2(savings),
                "payableFromSavings": round2(payable),
                "estimatedAnnualInterestSaved": round2(saved),
            }),
        });
    }
    found
}

/// An authorised consent that ends within 14 days (or already has): the data stops flowing.
pub fn consent_expiring(input: &RuleInput<'_>) -> Vec<Recommendation> {
    let horizon = input.now.timestamp_millis() + CONSENT_WARNING_DAYS * DAY_MS;
    // The earliest expiry per institution.
    let mut earliest: BTreeMap<&str, DateTime> = BTreeMap::new();
    for c in input.consents {
        let Some(at) = c.expires_at else { continue };
        if at.timestamp_millis() <= horizon {
            let e = earliest.entry(c.institution.as_str()).or_insert(at);
            *e = (*e).min(at);
        }
    }
    earliest
        .into_iter()
        .map(|(institution, at)| {
            let left_ms = at.timestamp_millis() - input.now.timestamp_millis();
            // Whole days, rounded up: 2 hours left is "1 day", past expiry is 0.
            let days_left = (left_ms.max(0) + DAY_MS - 1) / DAY_MS;
            let message = if left_ms <= 0 {
                format!(
                    "Your consent for {institution} has expired: renew it to keep seeing that data."
                )
            } else {
                format!(
                    "Your consent for {institution} expires in {days_left} day(s): renew it to \
                     keep seeing that data."
                )
            };
            Recommendation {
                id: format!("{CONSENT_EXPIRING}:{institution}"),
                rule: CONSENT_EXPIRING,
                severity: Severity::Warning,
                title: "A consent is about to expire".into(),
                message,
                evidence: json!({
                    "institution": institution,
                    "expiresAt": crate::consents::iso(at),
                    "daysLeft": days_left,
                    "warningDays": CONSENT_WARNING_DAYS,
                }),
            }
        })
        .collect()
}

/// Institution data last synced more than 24 hours ago. Items without a sync date (freshness
/// unknown, such as the reference data) do not fire it.
pub fn stale_data(input: &RuleInput<'_>) -> Vec<Recommendation> {
    let Some(oldest) = input.summary.freshness.oldest_synced_at else {
        return Vec::new();
    };
    let age_ms = input.now.timestamp_millis() - oldest.timestamp_millis();
    if age_ms <= STALE_AFTER_HOURS * HOUR_MS {
        return Vec::new();
    }
    let hours = age_ms / HOUR_MS;
    vec![Recommendation {
        id: STALE_DATA.into(),
        rule: STALE_DATA,
        severity: Severity::Info,
        title: "Some figures are out of date".into(),
        message: format!(
            "Some of your connected data was last updated {hours} hours ago: sync to see \
             current balances."
        ),
        evidence: json!({
            "oldestSyncedAt": crate::consents::iso(oldest),
            "newestSyncedAt": input.summary.freshness.newest_synced_at.map(crate::consents::iso),
            "hoursSinceOldestSync": hours,
            "thresholdHours": STALE_AFTER_HOURS,
        }),
    }]
}

/// Over 80 % of a currency's assets (positive balances) at one institution.
pub fn asset_concentration(input: &RuleInput<'_>) -> Vec<Recommendation> {
    let mut by_currency: BTreeMap<&str, Vec<(&str, f64)>> = BTreeMap::new();
    for l in &input.summary.by_institution {
        if l.balance > 0.0 {
            by_currency
                .entry(l.currency.as_str())
                .or_default()
                .push((l.institution.as_str(), l.balance));
        }
    }
    let mut found = Vec::new();
    for (currency, holdings) in by_currency {
        let total: f64 = holdings.iter().map(|(_, b)| b).sum();
        if total < CONCENTRATION_MIN_ASSETS {
            continue;
        }
        let Some(&(institution, amount)) = holdings
            .iter()
            .max_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal))
        else {
            continue;
        };
        let share = amount / total;
        if share <= CONCENTRATION_SHARE {
            continue;
        }
        found.push(Recommendation {
            id: format!("{ASSET_CONCENTRATION}:{currency}"),
            rule: ASSET_CONCENTRATION,
            severity: Severity::Info,
            title: "Most of your money is at one institution".into(),
            message: format!(
                "{:.0}% of your {currency} balances ({}) are at {institution}. Spreading them \
                 reduces the risk of one institution's outage or failure.",
                share * 100.0,
                money(amount, currency),
            ),
            evidence: json!({
                "currency": currency,
                "institution": institution,
                "institutionBalance": round2(amount),
                "totalAssets": round2(total),
                "share": round(share, 4),
                "threshold": CONCENTRATION_SHARE,
            }),
        });
    }
    found
}

/// Every account with a negative balance.
pub fn overdrawn_accounts(input: &RuleInput<'_>) -> Vec<Recommendation> {
    input
        .summary
        .overdrawn_accounts
        .iter()
        .map(|o| Recommendation {
            id: format!(
                "{OVERDRAWN_ACCOUNT}:{}:{}:{}:{}",
                slug(&o.institution),
                slug(&o.account_type),
                o.currency,
                round2(o.balance)
            ),
            rule: OVERDRAWN_ACCOUNT,
            severity: Severity::Critical,
            title: "An account is overdrawn".into(),
            message: format!(
                "Your {} account at {} is overdrawn by {}.",
                o.account_type,
                o.institution,
                money(-o.balance, &o.currency)
            ),
            evidence: json!({
                "institution": o.institution,
                "accountType": o.account_type,
                "currency": o.currency,
                "balance": round2(o.balance),
                "accounts": o.accounts,
            }),
        })
        .collect()
}

/// A mortgage (or several on the same property) above 80 % of the property's value.
pub fn high_loan_to_value(input: &RuleInput<'_>) -> Vec<Recommendation> {
    // Mortgages on one property (same value and address at one institution) add up.
    let mut properties: BTreeMap<(&str, &str, u64, &str), f64> = BTreeMap::new();
    for p in input.products {
        let Some(property) = p.property.as_ref().filter(|_| p.product_type == MORTGAGE) else {
            continue;
        };
        if property.value <= 0.0 {
            continue;
        }
        let key = (
            p.institution.as_str(),
            p.currency.as_str(),
            property.value.to_bits(),
            property.address.as_deref().unwrap_or(""),
        );
        *properties.entry(key).or_default() += p.amount;
    }
    let mut found = Vec::new();
    for ((institution, currency, value_bits, address), outstanding) in properties {
        let value = f64::from_bits(value_bits);
        let ltv = outstanding / value;
        if ltv <= HIGH_LTV {
            continue;
        }
        found.push(Recommendation {
            id: format!(
                "{HIGH_LOAN_TO_VALUE}:{}:{currency}:{}",
                slug(institution),
                round2(value)
            ),
            rule: HIGH_LOAN_TO_VALUE,
            severity: Severity::Warning,
            title: "High loan-to-value on a mortgage".into(),
            message: format!(
                "Your mortgage at {institution} is {:.0}% of the property's value ({} of {}). \
                 Above 80% you carry more risk if prices fall and may pay a higher rate.",
                ltv * 100.0,
                money(outstanding, currency),
                money(value, currency),
            ),
            evidence: json!({
                "institution": institution,
                "currency": currency,
                "outstanding": round2(outstanding),
                "propertyValue": round2(value),
                "propertyAddress": (!address.is_empty()).then_some(address),
                "loanToValue": round(ltv, 4),
                "threshold": HIGH_LTV,
            }),
        });
    }
    found
}

/// `Green Bank` → `green-bank`, for ids.
fn slug(value: &str) -> String {
    value
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insights::summary::{AccountRow, LEAFY_BANK, Property, fold};

    const NOW_MS: i64 = 1_750_000_000_000;

    fn now() -> DateTime {
        DateTime::from_millis(NOW_MS)
    }

    fn account(institution: &str, kind: &str, balance: f64) -> AccountRow {
        AccountRow {
            institution: institution.into(),
            account_type: kind.into(),
            currency: "USD".into(),
            balance: Some(balance),
            synced_at: None,
            accounts: 1,
        }
    }

    fn debt(kind: &str, rate: f64, amount: f64) -> ProductRow {
        ProductRow {
            institution: "Green Bank".into(),
            product_type: kind.into(),
            currency: "USD".into(),
            rate: Some(rate),
            property: None,
            synced_at: None,
            amount,
        }
    }

    fn mortgage(amount: f64, value: f64) -> ProductRow {
        ProductRow {
            property: Some(Property {
                value,
                address: Some("1 High St".into()),
            }),
            ..debt(MORTGAGE, 3.0, amount)
        }
    }

    fn consent(institution: &str, expires_in_ms: i64) -> ConsentRow {
        ConsentRow {
            institution: institution.into(),
            expires_at: Some(DateTime::from_millis(NOW_MS + expires_in_ms)),
            consents: 1,
        }
    }

    /// The rules' findings for this data, by rule.
    fn run(
        accounts: &[AccountRow],
        products: &[ProductRow],
        consents: &[ConsentRow],
    ) -> Vec<Recommendation> {
        let summary = fold(&[], accounts, products);
        recommend(&RuleInput {
            summary: &summary,
            products,
            consents,
            now: now(),
            history: &History::default(),
        })
    }

    fn fired<'a>(found: &'a [Recommendation], rule: &str) -> Vec<&'a Recommendation> {
        found.iter().filter(|r| r.rule == rule).collect()
    }

    /// Two institutions, balanced, synced now, nothing dear, nothing expiring.
    fn healthy_accounts() -> Vec<AccountRow> {
        vec![
            account("Green Bank", SAVINGS, 5000.0),
            account("MongoDB Bank", "Checking", 5000.0),
        ]
    }

    #[test]
    fn a_healthy_position_fires_nothing() {
        let found = run(
            &healthy_accounts(),
            &[debt("Loan", 3.0, 1000.0), mortgage(50_000.0, 100_000.0)],
            &[consent("green-bank", 30 * DAY_MS)],
        );
        assert_eq!(found, []);
    }

    #[test]
    fn high_interest_debt_with_idle_savings() {
        let found = run(
            &healthy_accounts(),
            &[
                debt("Loan", 4.63, 10_000.0),
                debt("CreditCard", 19.9, 2000.0),
            ],
            &[],
        );
        let hits = fired(&found, HIGH_INTEREST_IDLE_SAVINGS);
        assert_eq!(hits.len(), 1);
        let r = hits[0];
        assert_eq!(r.id, "high-interest-debt-idle-savings:USD");
        assert_eq!(r.severity, Severity::Warning);
        assert_eq!(r.evidence["highInterestDebt"], 12_000.0);
        assert_eq!(r.evidence["highestInterestRate"], 19.9);
        assert_eq!(r.evidence["savingsBalance"], 5000.0);
        assert_eq!(r.evidence["payableFromSavings"], 5000.0);
        // The card first (2000 × 19.9 %), then 3000 of the loan at 4.63 %.
        assert_eq!(
            r.evidence["estimatedAnnualInterestSaved"],
            round2(2000.0 * 0.199 + 3000.0 * 0.0463)
        );
        assert!(r.message.contains("19.90%"), "{}", r.message);

        // Cheap debt, mortgages, or savings too small to matter: nothing.
        for (accounts, products) in [
            (healthy_accounts(), vec![debt("Loan", 3.99, 10_000.0)]),
            (healthy_accounts(), vec![debt(MORTGAGE, 6.0, 10_000.0)]),
            (
                vec![account("Green Bank", SAVINGS, 999.0)],
                vec![debt("Loan", 9.0, 10_000.0)],
            ),
            (
                vec![account("Green Bank", "Checking", 50_000.0)],
                vec![debt("Loan", 9.0, 10_000.0)],
            ),
        ] {
            let found = run(&accounts, &products, &[]);
            assert!(
                fired(&found, HIGH_INTEREST_IDLE_SAVINGS).is_empty(),
                "{found:?}"
            );
        }
    }

    #[test]
    fn savings_in_another_currency_do_not_pay_a_debt() {
        let mut eur = debt("Loan", 9.0, 10_000.0);
        eur.currency = "EUR".into();
        let found = run(&healthy_accounts(), &[eur], &[]);
        assert!(fired(&found, HIGH_INTEREST_IDLE_SAVINGS).is_empty());
    }

    #[test]
    fn consent_expiring_within_fourteen_days() {
        let found = run(
            &healthy_accounts(),
            &[],
            &[
                consent("green-bank", 3 * DAY_MS + HOUR_MS),
                consent("green-bank", 10 * DAY_MS),
                consent("mongodb-bank", 15 * DAY_MS),
            ],
        );
        let hits = fired(&found, CONSENT_EXPIRING);
        assert_eq!(hits.len(), 1, "{found:?}");
        assert_eq!(hits[0].id, "consent-expiring:green-bank");
        assert_eq!(hits[0].evidence["daysLeft"], 4);
        assert!(hits[0].message.contains("in 4 day"), "{}", hits[0].message);

        let found = run(&healthy_accounts(), &[], &[consent("green-bank", -HOUR_MS)]);
        let hits = fired(&found, CONSENT_EXPIRING);
        assert_eq!(hits[0].evidence["daysLeft"], 0);
        assert!(hits[0].message.contains("has expired"));

        let found = run(
            &healthy_accounts(),
            &[],
            &[consent("green-bank", 14 * DAY_MS + 1)],
        );
        assert!(fired(&found, CONSENT_EXPIRING).is_empty());
    }

    #[test]
    fn data_older_than_a_day() {
        let mut accounts = healthy_accounts();
        accounts[0].synced_at = Some(DateTime::from_millis(NOW_MS - 30 * HOUR_MS));
        accounts[1].synced_at = Some(DateTime::from_millis(NOW_MS - HOUR_MS));
        let found = run(&accounts, &[], &[]);
        let hits = fired(&found, STALE_DATA);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].id, "stale-data");
        assert_eq!(hits[0].evidence["hoursSinceOldestSync"], 30);

        accounts[0].synced_at = Some(DateTime::from_millis(NOW_MS - 23 * HOUR_MS));
        assert!(fired(&run(&accounts, &[], &[]), STALE_DATA).is_empty());
        // No sync dates at all (the reference data): freshness unknown, not stale.
        assert!(fired(&run(&healthy_accounts(), &[], &[]), STALE_DATA).is_empty());
    }

    #[test]
    fn most_assets_at_one_institution() {
        let accounts = [
            account("Green Bank", SAVINGS, 8100.0),
            account("MongoDB Bank", "Checking", 1900.0),
            // An overdraft elsewhere is not an asset.
            account(LEAFY_BANK, "Checking", -50.0),
        ];
        let found = run(&accounts, &[], &[]);
        let hits = fired(&found, ASSET_CONCENTRATION);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].id, "asset-concentration:USD");
        assert_eq!(hits[0].evidence["institution"], "Green Bank");
        assert_eq!(hits[0].evidence["share"], 0.81);
        assert_eq!(hits[0].evidence["totalAssets"], 10_000.0);

        let balanced = [
            account("Green Bank", SAVINGS, 8000.0),
            account("MongoDB Bank", "Checking", 2000.0),
        ];
        assert!(fired(&run(&balanced, &[], &[]), ASSET_CONCENTRATION).is_empty());
        let small = [account("Green Bank", SAVINGS, 900.0)];
        assert!(fired(&run(&small, &[], &[]), ASSET_CONCENTRATION).is_empty());
    }

    #[test]
    fn overdrawn_accounts_are_critical() {
        let mut accounts = healthy_accounts();
        accounts.push(account("MongoDB Bank", "Checking", -120.5));
        let found = run(&accounts, &[], &[]);
        let hits = fired(&found, OVERDRAWN_ACCOUNT);
        assert_eq!(hits.len(), 1);
        assert_eq!(
            hits[0].id,
            "overdrawn-account:mongodb-bank:checking:USD:-120.5"
        );
        assert_eq!(hits[0].severity, Severity::Critical);
        assert_eq!(hits[0].evidence["balance"], -120.5);
        assert!(hits[0].message.contains("120.50 USD"));
        // Most severe first.
        assert_eq!(found[0].rule, OVERDRAWN_ACCOUNT);
        assert!(fired(&run(&healthy_accounts(), &[], &[]), OVERDRAWN_ACCOUNT).is_empty());
    }

    #[test]
    fn loan_to_value_above_eighty_percent() {
        let found = run(&healthy_accounts(), &[mortgage(85_000.0, 100_000.0)], &[]);
        let hits = fired(&found, HIGH_LOAN_TO_VALUE);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].id, "high-loan-to-value:green-bank:USD:100000");
        assert_eq!(hits[0].evidence["loanToValue"], 0.85);
        assert_eq!(hits[0].evidence["propertyAddress"], "1 High St");

        // Two mortgages on the same property add up.
        let two = [mortgage(50_000.0, 100_000.0), mortgage(35_000.0, 100_000.0)];
        assert_eq!(fired(&run(&[], &two, &[]), HIGH_LOAN_TO_VALUE).len(), 1);
        let low = [mortgage(80_000.0, 100_000.0)];
        assert!(fired(&run(&[], &low, &[]), HIGH_LOAN_TO_VALUE).is_empty());
        // A loan with property details is not a mortgage; a zero value is no evidence.
        let mut loan = mortgage(90_000.0, 100_000.0);
        loan.product_type = "Loan".into();
        let zero = mortgage(90_000.0, 0.0);
        assert!(fired(&run(&[], &[loan, zero], &[]), HIGH_LOAN_TO_VALUE).is_empty());
    }

    #[test]
    fn ids_are_stable_across_runs() {
        let accounts = [
            account("Green Bank", SAVINGS, 9000.0),
            account("MongoDB Bank", "Checking", -10.0),
        ];
        let products = [debt("Loan", 8.0, 1000.0), mortgage(90_000.0, 100_000.0)];
        let consents = [consent("green-bank", DAY_MS)];
        let a = run(&accounts, &products, &consents);
        let b = run(&accounts, &products, &consents);
        assert_eq!(a, b);
        let rules: std::collections::BTreeSet<_> = a.iter().map(|r| r.rule).collect();
        assert_eq!(rules.len(), 5, "{a:#?}");
        for r in &a {
            assert!(RULES.contains(&r.rule));
            assert!(r.id.starts_with(r.rule));
            assert!(!r.title.is_empty() && !r.message.is_empty());
            assert!(r.evidence.is_object());
        }
    }
}
