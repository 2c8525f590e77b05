//! The per-consent daily budget of unattended refreshes (the Berlin Group's `frequencyPerDay`;
//! UK and EU institutions allow four a day without the customer present). A scheduled sync of
//! a consent claims one of the day's slots; an on-demand sync (the customer is present) claims
//! none. Slots are documents with unique `_id`s, so two runs can never take the same slot, and
//! a redelivery under the same run finds the slot its run already holds.

use futures_util::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};

use crate::consents::is_duplicate_key;
use crate::db::Db;
use crate::error::AppError;

pub const REFRESH_BUDGET: &str = "refresh_budget";
/// Unattended refreshes per consent and UTC day unless `SYNC_DAILY_REFRESHES` says otherwise.
pub const DEFAULT_DAILY_REFRESHES: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// A new slot was taken for this run.
    Granted(u32),
    /// This run already holds a slot today (a redelivered message): no new one is taken.
    AlreadyHeld(u32),
    /// Every slot of the day is taken.
    Exhausted,
}

/// The UTC day of `at`, as `YYYY-MM-DD`.
pub fn day_of(at: DateTime) -> String {
    chrono::DateTime::from_timestamp_millis(at.timestamp_millis())
        .unwrap_or_default()
        .format("%Y-%m-%d")
        .to_string()
}

/// Claims one of today's `limit` slots for `consent_id` under `run_id`.
pub async fn claim(
    db: &Db,
    consent_id: ObjectId,
    run_id: ObjectId,
    limit: u32,
    now: DateTime,
) -> Result<Claim, AppError> {
    let slots = db.open_finance.collection::<Document>(REFRESH_BUDGET);
    let day = day_of(now);
    let taken: Vec<Document> = slots
        .find(doc! {"ConsentId": consent_id, "Day": &day})
        .projection(doc! {"RunId": 1, "Slot": 1})
        .await?
        .try_collect()
        .await?;
    if let Some(held) = taken
        .iter()
        .find(|d| d.get_object_id("RunId").ok() == Some(run_id))
    {
        return Ok(Claim::AlreadyHeld(slot_number(held)));
    }
    // A slot another run takes meanwhile makes this insert fail; the next one is tried.
    for slot in (taken.len() as u32 + 1)..=limit {
        let record = doc! {
            "_id": format!("{}:{day}:{slot}", consent_id.to_hex()),
            "ConsentId": consent_id,
            "Day": &day,
            "Slot": slot as i64,
            "RunId": run_id,
            "At": now,
            // Kept two days, then removed by the TTL index (Atlas).
            "ExpiresAt": DateTime::from_millis(now.timestamp_millis() + 2 * 86_400_000),
        };
        match slots.insert_one(record).await {
            Ok(_) => return Ok(Claim::Granted(slot)),
            Err(e) if is_duplicate_key(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Claim::Exhausted)
}

fn slot_number(d: &Document) -> u32 {
    d.get_i64("Slot")
        .or_else(|_| d.get_i32("Slot").map(i64::from))
        .unwrap_or(0) as u32
}

/// The shortest time between two scheduled refreshes of one consent that spreads `limit`
/// refreshes over a day, less a tenth so that a schedule running every 24/`limit` hours is
/// not skipped for arriving a little early (the slots still stop a refresh over the limit).
pub fn min_interval_ms(limit: u32) -> i64 {
    86_400_000 / i64::from(limit.max(1)) * 9 / 10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_utc_calendar_days() {
        let at = |s: &str| {
            DateTime::from_millis(
                chrono::DateTime::parse_from_rfc3339(s)
                    .unwrap()
                    .timestamp_millis(),
            )
        };
        assert_eq!(day_of(at("2026-12-03T23:59:59Z")), "2026-12-03");
        assert_eq!(day_of(at("2026-12-04T00:00:00Z")), "2026-12-04");
        assert_eq!(day_of(at("2026-12-04T00:30:00+01:00")), "2026-12-03");
    }

    #[test]
    fn the_interval_spreads_the_budget_over_a_day() {
        assert_eq!(min_interval_ms(4), 6 * 3_600_000 * 9 / 10);
        assert_eq!(min_interval_ms(1), 24 * 3_600_000 * 9 / 10);
        assert_eq!(min_interval_ms(0), min_interval_ms(1));
    }
}
