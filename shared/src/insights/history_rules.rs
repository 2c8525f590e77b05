//! The recommendation rules that only transactions make possible: a category's spending well
//! above its 3-month average, subscriptions whose monthly total grew, income that stopped or
//! dropped, and a balance forecast below zero before the next expected income. Pure functions
//! of the cash flow, the recurring series and the connected accounts, like the rules in
//! [`super::rules`], with the same stable ids and evidence.

use std::collections::BTreeMap;

use chrono::{Duration, Months, NaiveDate};
use serde_json::json;

use super::rules::{Recommendation, RuleInput, Severity};
use super::summary::AccountRow;
use crate::transactions::cashflow::{CashFlow, MonthFlow};
use crate::transactions::normalise::{major_units, utc};
use crate::transactions::recurring::{Frequency, Recurring};

pub const CATEGORY_SPIKE: &str = "category-spending-spike";
pub const SUBSCRIPTIONS_GREW: &str = "subscriptions-grew";
pub const INCOME_DROPPED: &str = "income-stopped-or-dropped";
pub const BALANCE_FORECAST_NEGATIVE: &str = "balance-forecast-negative";

/// A category's spending last month at or above this multiple of its 3-month average fires…
pub const SPIKE_RATIO: f64 = 1.5;
/// …when it is also this much above it (major units), so small categories stay quiet.
pub const SPIKE_MIN_EXCESS: f64 = 100.0;
/// Complete months before the last one that make the average.
pub const AVERAGE_MONTHS: usize = 3;
/// Income last month below this share of its 3-month average is a drop.
pub const INCOME_DROP_SHARE: f64 = 0.75;
/// An average income below this (major units) is too small to watch.
pub const INCOME_MIN: f64 = 100.0;
/// How far the forecast looks when no income is expected.
pub const FORECAST_DAYS_WITHOUT_INCOME: i64 = 31;
/// The category whose recurring payments are subscriptions.
const SUBSCRIPTIONS: &str = "subscriptions";
/// Account types whose balances recurring payments are paid from (not savings).
const SAVINGS: &str = "Savings";

/// What these rules read besides the holdings: filled by `insights::recommendations_for`.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// At least [`AVERAGE_MONTHS`] + 2 months (the month in progress last).
    pub cashflow: CashFlow,
    pub recurring: Vec<Recurring>,
    /// The connected external accounts (where the transactions are seen).
    pub accounts: Vec<AccountRow>,
}

/// Months of cash flow the rules need: the average's, the last complete one, the current one.
pub const CASHFLOW_MONTHS: u32 = AVERAGE_MONTHS as u32 + 2;

fn money(minor: i64, currency: &str) -> String {
    format!("{:.2} {currency}", major_units(minor, currency))
}

/// The last complete month's flow of each currency and the [`AVERAGE_MONTHS`] before it,
/// when the cash flow covers them.
fn last_and_before(cashflow: &CashFlow) -> Vec<(&MonthFlow, Vec<&MonthFlow>)> {
    cashflow
        .currencies()
        .into_iter()
        .filter_map(|currency| {
            let months: Vec<&MonthFlow> = cashflow.of_currency(currency).collect();
            // [… before (3) …, last complete, in progress]
            if months.len() < AVERAGE_MONTHS + 2 {
                return None;
            }
            let last = months[months.len() - 2];
            let before = months[months.len() - 2 - AVERAGE_MONTHS..months.len() - 2].to_vec();
            Some((last, before))
        })
        .collect()
}

fn average(values: impl Iterator<Item = i64>) -> i64 {
    let values: Vec<i64> = values.collect();
    if values.is_empty() {
        0
    } else {
        values.iter().sum::<i64>() / values.len() as i64
    }
}

/// Spending in one category last month well above its average over the 3 months before.
pub fn category_spike(input: &RuleInput<'_>) -> Vec<Recommendation> {
    let mut found = Vec::new();
    for (last, before) in last_and_before(&input.history.cashflow) {
        let c = last.currency.as_str();
        for (category, &spent) in &last.by_category {
            let previous: Vec<i64> = before
                .iter()
                .map(|m| m.by_category.get(category).copied().unwrap_or(0).max(0))
                .collect();
            let avg = average(previous.iter().copied());
            let excess = major_units(spent - avg, c);
            if spent <= 0 || (spent as f64) < avg as f64 * SPIKE_RATIO || excess < SPIKE_MIN_EXCESS
            {
                continue;
            }
            found.push(Recommendation {
                id: format!("{CATEGORY_SPIKE}:{c}:{category}:{}", last.month),
                rule: CATEGORY_SPIKE,
                severity: Severity::Info,
                title: format!("Spending on {category} is up"),
                message: format!(
                    "In {} you spent {} on {category}, against an average of {} over the 3 \
                     months before.",
                    last.month,
                    money(spent, c),
                    money(avg, c),
                ),
                evidence: json!({
                    "currency": c,
                    "category": category,
                    "month": last.month,
                    "spending": major_units(spent, c),
                    "averageOfPreviousMonths": major_units(avg, c),
                    "previousMonths": before.iter().zip(&previous)
                        .map(|(m, v)| (m.month.clone(), json!(major_units(*v, c))))
                        .collect::<serde_json::Map<_, _>>(),
                    "ratioThreshold": SPIKE_RATIO,
                    "minimumExcess": SPIKE_MIN_EXCESS,
                }),
            });
        }
    }
    found
}

/// What a series costs a month at `amount_minor` an occurrence.
fn monthly(frequency: Frequency, amount_minor: i64) -> i64 {
    match frequency {
        Frequency::Monthly => amount_minor,
        Frequency::Weekly => amount_minor * 52 / 12,
    }
}

/// Recurring subscription payments whose monthly total is higher now than when first seen.
pub fn subscriptions_grew(input: &RuleInput<'_>) -> Vec<Recommendation> {
    let mut by_currency: BTreeMap<&str, Vec<&Recurring>> = BTreeMap::new();
    for r in &input.history.recurring {
        if r.category == SUBSCRIPTIONS && r.last_amount_minor < 0 {
            by_currency.entry(r.currency.as_str()).or_default().push(r);
        }
    }
    let mut found = Vec::new();
    for (c, series) in by_currency {
        let now: i64 = series.iter().map(|r| -r.monthly_minor).sum();
        let before: i64 = series
            .iter()
            .map(|r| -monthly(r.frequency, r.first_amount_minor))
            .sum();
        if now <= before {
            continue;
        }
        let risen: Vec<_> = series
            .iter()
            .filter(|r| r.last_amount_minor < r.first_amount_minor)
            .map(|r| {
                json!({
                    "counterparty": r.counterparty,
                    "from": major_units(-r.first_amount_minor, c),
                    "to": major_units(-r.last_amount_minor, c),
                })
            })
            .collect();
        found.push(Recommendation {
            id: format!("{SUBSCRIPTIONS_GREW}:{c}"),
            rule: SUBSCRIPTIONS_GREW,
            severity: Severity::Info,
            title: "Your subscriptions cost more".into(),
            message: format!(
                "Your subscriptions now cost {} a month, up from {}: {} of them rose in price.",
                money(now, c),
                money(before, c),
                risen.len(),
            ),
            evidence: json!({
                "currency": c,
                "monthlyTotal": major_units(now, c),
                "monthlyTotalWhenFirstSeen": major_units(before, c),
                "subscriptions": series.len(),
                "priceRises": risen,
            }),
        });
    }
    found
}

/// Income last month that stopped, or fell below 75 % of its average over the 3 months before.
pub fn income_dropped(input: &RuleInput<'_>) -> Vec<Recommendation> {
    let mut found = Vec::new();
    for (last, before) in last_and_before(&input.history.cashflow) {
        let c = last.currency.as_str();
        let avg = average(before.iter().map(|m| m.income_minor.max(0)));
        if major_units(avg, c) < INCOME_MIN {
            continue;
        }
        let income = last.income_minor.max(0);
        if income as f64 >= avg as f64 * INCOME_DROP_SHARE {
            continue;
        }
        let stopped = income == 0;
        found.push(Recommendation {
            id: format!("{INCOME_DROPPED}:{c}:{}", last.month),
            rule: INCOME_DROPPED,
            severity: if stopped {
                Severity::Critical
            } else {
                Severity::Warning
            },
            title: if stopped {
                "No income last month".into()
            } else {
                "Your income dropped".into()
            },
            message: format!(
                "In {} your {c} income was {}, against an average of {} over the 3 months \
                 before.",
                last.month,
                money(income, c),
                money(avg, c),
            ),
            evidence: json!({
                "currency": c,
                "month": last.month,
                "income": major_units(income, c),
                "averageOfPreviousMonths": major_units(avg, c),
                "previousMonths": before.iter()
                    .map(|m| (m.month.clone(), json!(major_units(m.income_minor, c))))
                    .collect::<serde_json::Map<_, _>>(),
                "dropThreshold": INCOME_DROP_SHARE,
            }),
        });
    }
    found
}

/// The dates from `first` (or `today` when overdue) on which a series falls due before `until`.
fn due_dates(r: &Recurring, today: NaiveDate, until: NaiveDate) -> Vec<NaiveDate> {
    let mut dates = Vec::new();
    let mut next = r.next_expected;
    let mut step = 0u32;
    while next < until && dates.len() < 60 {
        dates.push(next.max(today));
        step += 1;
        next = match r.frequency {
            Frequency::Weekly => r.next_expected + Duration::weeks(i64::from(step)),
            Frequency::Monthly => r
                .next_expected
                .checked_add_months(Months::new(step))
                .unwrap_or(until),
        };
    }
    dates
}

/// The connected current accounts' balance in a currency, less the recurring payments due
/// before the next expected income, below zero. Only recurring payments are forecast (not
/// day-to-day spending), so the forecast errs on the kind side.
pub fn balance_forecast_negative(input: &RuleInput<'_>) -> Vec<Recommendation> {
    let today = utc(input.now).date_naive();
    let mut balances: BTreeMap<&str, f64> = BTreeMap::new();
    for a in &input.history.accounts {
        if a.account_type != SAVINGS && a.balance.is_some() {
            *balances.entry(a.currency.as_str()).or_default() += a.total();
        }
    }
    let mut found = Vec::new();
    for (c, balance) in balances {
        let series: Vec<&Recurring> = input
            .history
            .recurring
            .iter()
            .filter(|r| r.currency == c)
            .collect();
        let next_income = series
            .iter()
            .filter(|r| r.last_amount_minor > 0)
            .map(|r| r.next_expected.max(today))
            .min();
        let until = next_income.unwrap_or(today + Duration::days(FORECAST_DAYS_WITHOUT_INCOME));
        let mut due: Vec<(NaiveDate, &Recurring)> = series
            .iter()
            .filter(|r| r.last_amount_minor < 0)
            .flat_map(|r| due_dates(r, today, until).into_iter().map(move |d| (d, *r)))
            .collect();
        due.sort_by(|a, b| (a.0, &a.1.counterparty).cmp(&(b.0, &b.1.counterparty)));
        let payments: i64 = due.iter().map(|(_, r)| r.last_amount_minor).sum();
        let projected = balance + major_units(payments, c);
        if projected >= 0.0 || due.is_empty() {
            continue;
        }
        // The first payment that takes the balance below zero.
        let mut running = balance;
        let mut below_on = until;
        for (d, r) in &due {
            running += major_units(r.last_amount_minor, c);
            if running < 0.0 {
                below_on = *d;
                break;
            }
        }
        let horizon = match next_income {
            Some(d) => format!("your next expected income on {d}"),
            None => format!("the next {FORECAST_DAYS_WITHOUT_INCOME} days (no income expected)"),
        };
        found.push(Recommendation {
            id: format!("{BALANCE_FORECAST_NEGATIVE}:{c}"),
            rule: BALANCE_FORECAST_NEGATIVE,
            severity: Severity::Warning,
            title: "Your balance may go below zero".into(),
            message: format!(
                "Your recurring payments before {horizon} come to {}, more than the {:.2} {c} \
                 in your current accounts: the balance would go below zero around {below_on}.",
                money(-payments, c),
                balance,
            ),
            evidence: json!({
                "currency": c,
                "currentBalance": (balance * 100.0).round() / 100.0,
                "nextExpectedIncome": next_income.map(|d| d.to_string()),
                "forecastUntil": until.to_string(),
                "recurringPaymentsDue": due.iter().map(|(d, r)| json!({
                    "date": d.to_string(),
                    "counterparty": r.counterparty,
                    "amount": major_units(r.last_amount_minor, c),
                })).collect::<Vec<_>>(),
                "projectedBalance": (projected * 100.0).round() / 100.0,
                "belowZeroFrom": below_on.to_string(),
            }),
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insights::summary::fold;
    use crate::transactions::cashflow::{self, FlowRow};
    use mongodb::bson::DateTime;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn at(s: &str) -> DateTime {
        DateTime::from_millis(
            day(s)
                .and_hms_opt(12, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp_millis(),
        )
    }

    const TODAY: &str = "2026-12-03";

    fn run(
        history: &History,
        rule: fn(&RuleInput<'_>) -> Vec<Recommendation>,
    ) -> Vec<Recommendation> {
        let summary = fold(&[], &[], &[]);
        rule(&RuleInput {
            summary: &summary,
            products: &[],
            consents: &[],
            now: at(TODAY),
            history,
        })
    }

    /// Cash flow of five months to December 2026 from (month index, category, amount) rows.
    fn flow(rows: &[(usize, &str, i64)]) -> CashFlow {
        let (months, _, _) = cashflow::window(day(TODAY), CASHFLOW_MONTHS);
        let rows: Vec<FlowRow> = rows
            .iter()
            .map(|(m, category, amount)| FlowRow {
                month: months[*m].clone(),
                currency: "GBP".into(),
                category: category.to_string(),
                amount_minor: *amount,
            })
            .collect();
        cashflow::fold(&rows, &months)
    }

    fn steady(extra: &[(usize, &str, i64)]) -> CashFlow {
        let mut rows = Vec::new();
        for m in 0..4 {
            rows.push((m, "salary", 300_000));
            rows.push((m, "groceries", -40_000));
        }
        rows.extend_from_slice(extra);
        flow(&rows)
    }

    fn series(cp: &str, category: &str, first: i64, last: i64, next: &str) -> Recurring {
        Recurring {
            counterparty: cp.into(),
            currency: "GBP".into(),
            category: category.into(),
            frequency: Frequency::Monthly,
            last_amount_minor: last,
            first_amount_minor: first,
            last_date: day(next) - Duration::days(30),
            next_expected: day(next),
            occurrences: 6,
            monthly_minor: last,
        }
    }

    fn current(balance: f64) -> AccountRow {
        AccountRow {
            institution: "Green Bank".into(),
            account_type: "Checking".into(),
            currency: "GBP".into(),
            balance: Some(balance),
            synced_at: None,
            accounts: 1,
        }
    }

    #[test]
    fn a_steady_history_fires_nothing() {
        let history = History {
            cashflow: steady(&[]),
            recurring: vec![
                series("Landlord", "rent", -100_000, -100_000, "2026-12-28"),
                series("Acme", "salary", 300_000, 300_000, "2026-12-25"),
            ],
            accounts: vec![current(2_000.0)],
        };
        for rule in [
            category_spike,
            subscriptions_grew,
            income_dropped,
            balance_forecast_negative,
        ] {
            assert!(run(&history, rule).is_empty());
        }
        // Too little history: no month to compare with.
        let short = History {
            cashflow: flow(&[(3, "groceries", -900_000)]),
            ..History::default()
        };
        let short = History {
            cashflow: CashFlow {
                months: short.cashflow.months[2..].to_vec(),
                flows: short.cashflow.flows[2..].to_vec(),
            },
            ..History::default()
        };
        assert!(run(&short, category_spike).is_empty());
    }

    #[test]
    fn a_category_well_above_its_average_fires_with_its_figures() {
        // November (index 3): travel 600 against 0, 0, 300 (average 100); dining a little up.
        let history = History {
            cashflow: steady(&[
                (2, "travel", -30_000),
                (3, "travel", -60_000),
                (3, "dining", -1_000),
            ]),
            ..History::default()
        };
        let found = run(&history, category_spike);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].id, "category-spending-spike:GBP:travel:2026-11");
        assert_eq!(found[0].evidence["spending"], 600.0);
        assert_eq!(found[0].evidence["averageOfPreviousMonths"], 100.0);
    }

    #[test]
    fn subscriptions_that_rose_fire_and_name_the_rise() {
        let history = History {
            recurring: vec![
                series("Netflix", "subscriptions", -1599, -1799, "2026-12-08"),
                series("Spotify", "subscriptions", -1099, -1099, "2026-12-12"),
                series("Landlord", "rent", -100_000, -110_000, "2026-12-28"),
            ],
            ..History::default()
        };
        let found = run(&history, subscriptions_grew);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].evidence["monthlyTotal"], 28.98);
        assert_eq!(found[0].evidence["monthlyTotalWhenFirstSeen"], 26.98);
        assert_eq!(
            found[0].evidence["priceRises"][0]["counterparty"],
            "Netflix"
        );
    }

    #[test]
    fn income_that_dropped_or_stopped_fires() {
        // November's salary 40 % down.
        let mut dropped = steady(&[]);
        let nov = dropped
            .flows
            .iter_mut()
            .find(|f| f.month == "2026-11")
            .unwrap();
        nov.income_minor = 180_000;
        let found = run(
            &History {
                cashflow: dropped,
                ..History::default()
            },
            income_dropped,
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Warning);
        assert_eq!(found[0].evidence["income"], 1800.0);
        assert_eq!(found[0].evidence["averageOfPreviousMonths"], 3000.0);
        let mut stopped = steady(&[]);
        stopped
            .flows
            .iter_mut()
            .find(|f| f.month == "2026-11")
            .unwrap()
            .income_minor = 0;
        let found = run(
            &History {
                cashflow: stopped,
                ..History::default()
            },
            income_dropped,
        );
        assert_eq!(found[0].severity, Severity::Critical);
    }

    #[test]
    fn payments_due_before_the_next_income_beyond_the_balance_fire() {
        let history = History {
            recurring: vec![
                series("Landlord", "rent", -100_000, -100_000, "2026-12-10"),
                series("Gym", "subscriptions", -5_000, -5_000, "2026-12-05"),
                // Due after the income: not counted.
                series("Council", "utilities", -20_000, -20_000, "2026-12-28"),
                series("Acme", "salary", 300_000, 300_000, "2026-12-25"),
            ],
            accounts: vec![
                current(900.0),
                AccountRow {
                    account_type: "Savings".into(),
                    ..current(50_000.0)
                },
            ],
            ..History::default()
        };
        let found = run(&history, balance_forecast_negative);
        assert_eq!(found.len(), 1, "{found:?}");
        let e = &found[0].evidence;
        assert_eq!(e["currentBalance"], 900.0);
        assert_eq!(e["nextExpectedIncome"], "2026-12-25");
        assert_eq!(e["projectedBalance"], -150.0);
        assert_eq!(e["belowZeroFrom"], "2026-12-10");
        assert_eq!(e["recurringPaymentsDue"].as_array().unwrap().len(), 2);
        // Enough money: quiet.
        let rich = History {
            accounts: vec![current(1_100.0)],
            ..history
        };
        assert!(run(&rich, balance_forecast_negative).is_empty());
    }

    #[test]
    fn without_income_the_forecast_covers_a_month_of_weekly_and_monthly_payments() {
        let mut gym = series("Gym", "subscriptions", -5_000, -5_000, "2026-12-04");
        gym.frequency = Frequency::Weekly;
        let history = History {
            recurring: vec![gym],
            accounts: vec![current(100.0)],
            ..History::default()
        };
        let found = run(&history, balance_forecast_negative);
        assert_eq!(found.len(), 1);
        // 4, 11, 18, 25 December and 1 January: 5 × 50 within 31 days.
        assert_eq!(
            found[0].evidence["recurringPaymentsDue"]
                .as_array()
                .unwrap()
                .len(),
            5
        );
        assert_eq!(
            found[0].evidence["nextExpectedIncome"],
            serde_json::Value::Null
        );
    }
}
