//! Recurring payments (and recurring income) detected from the booked history: the same
//! counterparty, a similar amount, at a roughly weekly or monthly interval, still going.

use std::collections::BTreeMap;

use chrono::{Duration, NaiveDate};

/// One booked day of money to or from one counterparty (the pipeline sums a day's items).
#[derive(Debug, Clone, PartialEq)]
pub struct Occurrence {
    pub counterparty: String,
    pub currency: String,
    pub category: String,
    pub date: NaiveDate,
    pub amount_minor: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frequency {
    Weekly,
    Monthly,
}

impl Frequency {
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Weekly => "weekly",
            Frequency::Monthly => "monthly",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Recurring {
    pub counterparty: String,
    pub currency: String,
    pub category: String,
    pub frequency: Frequency,
    /// Negative for payments, positive for income.
    pub last_amount_minor: i64,
    /// The amount at the first occurrence seen, to tell a price rise.
    pub first_amount_minor: i64,
    pub last_date: NaiveDate,
    pub next_expected: NaiveDate,
    pub occurrences: usize,
    /// What it costs (or brings) per month, from the latest amount.
    pub monthly_minor: i64,
}

/// Fewest occurrences that make a pattern.
const MIN_OCCURRENCES: usize = 3;

/// The recurring series in `history` as of `today`, largest monthly amount first. A series
/// whose next expected date is more than half an interval behind `today` has stopped and is
/// not reported.
pub fn detect(history: &[Occurrence], today: NaiveDate) -> Vec<Recurring> {
    let mut groups: BTreeMap<(String, String, bool), Vec<&Occurrence>> = BTreeMap::new();
    for o in history.iter().filter(|o| o.amount_minor != 0) {
        let key = (
            o.counterparty.trim().to_lowercase(),
            o.currency.clone(),
            o.amount_minor > 0,
        );
        groups.entry(key).or_default().push(o);
    }
    let mut found: Vec<Recurring> = groups
        .into_values()
        .filter_map(|mut items| {
            items.sort_by_key(|o| o.date);
            series(&items, today)
        })
        .collect();
    found.sort_by(|a, b| {
        b.monthly_minor
            .abs()
            .cmp(&a.monthly_minor.abs())
            .then_with(|| a.counterparty.cmp(&b.counterparty))
    });
    found
}

fn median(mut values: Vec<i64>) -> i64 {
    values.sort_unstable();
    values[values.len() / 2]
}

fn series(items: &[&Occurrence], today: NaiveDate) -> Option<Recurring> {
    if items.len() < MIN_OCCURRENCES {
        return None;
    }
    let gaps: Vec<i64> = items
        .windows(2)
        .map(|w| (w[1].date - w[0].date).num_days())
        .collect();
    let gap = median(gaps.clone());
    let (frequency, tolerance) = match gap {
        6..=8 => (Frequency::Weekly, 1),
        26..=35 => (Frequency::Monthly, 4),
        _ => return None,
    };
    // Most gaps near the median: a pattern, not a coincidence of dates.
    let regular = gaps
        .iter()
        .filter(|g| (*g - gap).abs() <= tolerance)
        .count();
    if regular * 4 < gaps.len() * 3 {
        return None;
    }
    // Similar amounts: each within a fifth of the median (a price rise of a subscription
    // stays in the series).
    let typical = median(items.iter().map(|o| o.amount_minor.abs()).collect());
    if items
        .iter()
        .any(|o| (o.amount_minor.abs() - typical).abs() * 5 > typical)
    {
        return None;
    }
    let last = items.last()?;
    let interval = match frequency {
        Frequency::Weekly => Duration::days(7),
        Frequency::Monthly => Duration::days(gap.clamp(28, 31)),
    };
    let next_expected = match frequency {
        Frequency::Weekly => last.date + interval,
        Frequency::Monthly => last
            .date
            .checked_add_months(chrono::Months::new(1))
            .unwrap_or(last.date + interval),
    };
    // Stopped: more than half an interval overdue.
    if (today - next_expected).num_days() * 2 > interval.num_days() {
        return None;
    }
    let monthly_minor = match frequency {
        Frequency::Monthly => last.amount_minor,
        Frequency::Weekly => last.amount_minor * 52 / 12,
    };
    let category = {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for o in items {
            *counts.entry(o.category.as_str()).or_default() += 1;
        }
        counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(c, _)| c.to_string())
            .unwrap_or_default()
    };
    Some(Recurring {
        counterparty: last.counterparty.clone(),
        currency: last.currency.clone(),
        category,
        frequency,
        last_amount_minor: last.amount_minor,
        first_amount_minor: items[0].amount_minor,
        last_date: last.date,
        next_expected,
        occurrences: items.len(),
        monthly_minor,
    })
}

/// Days of booked history the detection reads.
pub const LOOKBACK_DAYS: i64 = 200;

/// The pipeline behind [`recurring_for`]: the owner's booked, connected, non-transfer items
/// of the lookback, summed per (counterparty, currency, category, day). One `$group` with one
/// `$sum`, as FerretDB computes it (DESIGN §8).
pub fn pipeline(
    owner: mongodb::bson::oid::ObjectId,
    since: mongodb::bson::DateTime,
) -> Vec<mongodb::bson::Document> {
    use mongodb::bson::doc;
    vec![
        doc! {"$match": {
            crate::db::OWNER: owner,
            "Status": super::normalise::BOOKED,
            "BookingDate": {"$gte": since},
            "Category": {"$ne": super::categorise::TRANSFERS},
            "Provenance.ConnectionStatus": {"$ne": "Disconnected"},
        }},
        doc! {"$group": {
            "_id": {"counterparty": "$Counterparty", "currency": "$Currency", "category": "$Category", "date": "$BookingDate"},
            "amount": {"$sum": "$AmountMinor"},
        }},
    ]
}

/// The owner's recurring payments and income as of `now`: one aggregation, then detection.
pub async fn recurring_for(
    db: &crate::db::Db,
    owner: mongodb::bson::oid::ObjectId,
    now: mongodb::bson::DateTime,
) -> Result<Vec<Recurring>, crate::AppError> {
    use futures_util::TryStreamExt;
    let since =
        mongodb::bson::DateTime::from_millis(now.timestamp_millis() - LOOKBACK_DAYS * 86_400_000);
    let rows: Vec<mongodb::bson::Document> = db
        .open_finance
        .collection::<mongodb::bson::Document>(crate::db::EXTERNAL_TRANSACTIONS)
        .aggregate(pipeline(owner, since))
        .batch_size(crate::insights::BATCH_SIZE)
        .await?
        .try_collect()
        .await?;
    let history: Vec<Occurrence> = rows
        .iter()
        .filter_map(|row| {
            let key = row.get_document("_id").ok()?;
            let amount = match row.get("amount")? {
                mongodb::bson::Bson::Int64(n) => *n,
                mongodb::bson::Bson::Int32(n) => i64::from(*n),
                _ => return None,
            };
            Some(Occurrence {
                counterparty: key.get_str("counterparty").ok()?.to_string(),
                currency: key.get_str("currency").ok()?.to_string(),
                category: key.get_str("category").unwrap_or("other").to_string(),
                date: super::normalise::utc(*key.get_datetime("date").ok()?).date_naive(),
                amount_minor: amount,
            })
        })
        .collect();
    Ok(detect(&history, super::normalise::utc(now).date_naive()))
}

impl Recurring {
    /// The public shape.
    pub fn to_json(&self) -> serde_json::Value {
        use super::normalise::major_units;
        serde_json::json!({
            "counterparty": self.counterparty,
            "category": self.category,
            "currency": self.currency,
            "direction": if self.last_amount_minor > 0 { "income" } else { "payment" },
            "frequency": self.frequency.as_str(),
            "lastAmount": major_units(self.last_amount_minor, &self.currency),
            "firstAmountSeen": major_units(self.first_amount_minor, &self.currency),
            "monthlyAmount": major_units(self.monthly_minor, &self.currency),
            "lastDate": self.last_date.format("%Y-%m-%d").to_string(),
            "nextExpectedDate": self.next_expected.format("%Y-%m-%d").to_string(),
            "occurrences": self.occurrences,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn occ(cp: &str, date: NaiveDate, amount: i64) -> Occurrence {
        Occurrence {
            counterparty: cp.into(),
            currency: "USD".into(),
            category: "subscriptions".into(),
            date,
            amount_minor: amount,
        }
    }

    fn monthly(cp: &str, from: &str, months: u32, amount: impl Fn(u32) -> i64) -> Vec<Occurrence> {
        (0..months)
            .map(|m| {
                occ(
                    cp,
                    day(from)
                        .checked_add_months(chrono::Months::new(m))
                        .unwrap(),
                    amount(m),
                )
            })
            .collect()
    }

    #[test]
    fn monthly_and_weekly_series_are_found_with_their_next_date_and_cost() {
        let mut history = monthly("Netflix", "2026-05-03", 7, |m| {
            if m < 3 { -1599 } else { -1799 }
        });
        history
            .extend((0..10).map(|w| occ("Gym", day("2026-09-07") + Duration::days(7 * w), -1000)));
        // Groceries: same merchant, irregular days and amounts: not recurring.
        for (d, a) in [
            ("2026-10-01", -4210),
            ("2026-10-04", -1290),
            ("2026-10-19", -8800),
            ("2026-11-02", -2300),
        ] {
            history.push(occ("Tesco", day(d), a));
        }
        let found = detect(&history, day("2026-11-15"));
        assert_eq!(found.len(), 2, "{found:?}");
        let netflix = found.iter().find(|r| r.counterparty == "Netflix").unwrap();
        assert_eq!(netflix.frequency, Frequency::Monthly);
        assert_eq!(netflix.next_expected, day("2026-12-03"));
        assert_eq!(netflix.monthly_minor, -1799);
        assert_eq!(netflix.first_amount_minor, -1599);
        let gym = found.iter().find(|r| r.counterparty == "Gym").unwrap();
        assert_eq!(gym.frequency, Frequency::Weekly);
        assert_eq!(gym.monthly_minor, -1000 * 52 / 12);
        assert_eq!(gym.next_expected, day("2026-11-16"));
    }

    #[test]
    fn stopped_short_or_erratic_series_are_not_reported() {
        let stopped = monthly("Old Gym", "2026-01-10", 5, |_| -2500);
        assert!(detect(&stopped, day("2026-11-15")).is_empty());
        let short = monthly("New", "2026-09-10", 2, |_| -2500);
        assert!(detect(&short, day("2026-11-15")).is_empty());
        let erratic = monthly("Shop", "2026-05-10", 7, |m| -1000 * i64::from(m + 1));
        assert!(detect(&erratic, day("2026-11-15")).is_empty());
    }

    #[test]
    fn income_is_its_own_series() {
        let mut history = monthly("Acme Corp", "2026-05-25", 6, |_| 450_000);
        history.extend(monthly("Acme Corp", "2026-05-26", 6, |_| -1_000));
        let found = detect(&history, day("2026-11-01"));
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].last_amount_minor, 450_000);
    }
}
