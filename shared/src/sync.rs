//! The product and balance sync: every authorised consent's accounts and products fetched
//! again and upserted, on demand for one customer or on a schedule for everyone.
//!
//! - Bounded concurrency; a failing institution or consent is recorded and the others go on.
//! - Bounded retries with exponential backoff and jitter on timeouts and 5xx, none on 4xx.
//! - Deadline aware: no consent is started when the remaining time is under a margin; the run
//!   records the last consent it started and the next scheduled run resumes after it. A run
//!   killed before it could record that (timeout, crash) is resumed after its last checkpoint.
//! - Idempotent: unique (institution, external id) keys and upserts; a lease on each consent
//!   keeps two runs from working on (and refreshing the tokens of) the same consent at once.
//! - Every run writes a `sync_runs` document with its outcome per consent.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt, stream};
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::banks::BankGateway;
use crate::budget::{self, Claim};
use crate::connect::{
    access_token, fetch_accounts, fetch_products, upsert_accounts, upsert_products,
};
use crate::consents::{self, Consent};
use crate::error::AppError;
use crate::state::AppState;
use crate::transactions::{self, TransactionCounts};

pub const SYNC_RUNS: &str = "sync_runs";

#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Consents synced at once (`SYNC_CONCURRENCY`, default 8).
    pub concurrency: usize,
    /// Retries after the first attempt on timeouts and 5xx (`SYNC_MAX_RETRIES`, default 2).
    pub retries: u32,
    /// First backoff; doubles per retry, plus up to as much again of jitter.
    pub backoff: Duration,
    /// No consent is started with less than this left before the deadline
    /// (`SYNC_STOP_MARGIN_MS`, default 10000).
    pub stop_margin: Duration,
    /// How long a consent's lease lasts; longer than one consent's work with its retries.
    pub lease_seconds: i64,
    /// A scheduled run records its progress (`Progress`: the last consent before which every
    /// consent has finished) each time it has moved on by this many consents, so that a run
    /// killed before it could record where it stopped is resumed there, not repeated.
    pub checkpoint_every: usize,
    /// Unattended (scheduled) refreshes per consent and UTC day (`SYNC_DAILY_REFRESHES`,
    /// default 4); on-demand syncs do not count.
    pub daily_refreshes: u32,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            concurrency: 8,
            retries: 2,
            backoff: Duration::from_millis(200),
            stop_margin: Duration::from_secs(10),
            lease_seconds: 120,
            checkpoint_every: 10,
            daily_refreshes: crate::budget::DEFAULT_DAILY_REFRESHES,
        }
    }
}

impl SyncOptions {
    pub fn from_env() -> Result<Self, AppError> {
        let mut options = SyncOptions::default();
        let number = |key: &str| -> Result<Option<u64>, AppError> {
            std::env::var(key)
                .ok()
                .map(|v| {
                    v.trim().parse().map_err(|_| {
                        AppError::Config(format!(
                            "environment variable {key} must be a whole number"
                        ))
                    })
                })
                .transpose()
        };
        if let Some(n) = number("SYNC_CONCURRENCY")? {
            options.concurrency = (n as usize).clamp(1, 64);
        }
        if let Some(n) = number("SYNC_MAX_RETRIES")? {
            options.retries = n.min(5) as u32;
        }
        if let Some(n) = number("SYNC_STOP_MARGIN_MS")? {
            options.stop_margin = Duration::from_millis(n);
        }
        if let Some(n) = number("SYNC_DAILY_REFRESHES")? {
            options.daily_refreshes = (n as u32).clamp(1, 96);
        }
        Ok(options)
    }
}

/// Whether the customer is present: an unattended (scheduled) sync spends the consent's daily
/// refresh budget under its run, an attended one (on demand) does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Attended,
    Unattended { run_id: ObjectId },
}

/// Written on the consent when an unattended sync of it succeeds: the dispatcher's "due" test.
pub const LAST_UNATTENDED_SYNC: &str = "LastUnattendedSyncAt";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Every authorised consent, resuming where an interrupted scheduled run stopped.
    Scheduled,
    /// One customer's authorised consents, now.
    OnDemand(ObjectId),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConsentOutcome {
    #[serde(rename = "ConsentId")]
    pub consent_id: ObjectId,
    #[serde(rename = "Institution")]
    pub institution: String,
    #[serde(rename = "UserId")]
    pub user_id: ObjectId,
    /// `Synced`, `Failed`, `Expired` or `Skipped`.
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "Accounts")]
    pub accounts: usize,
    #[serde(rename = "Products")]
    pub products: usize,
    #[serde(rename = "ClosedProducts")]
    pub closed_products: u64,
    #[serde(rename = "Transactions")]
    pub transactions: TransactionCounts,
    #[serde(rename = "Attempts")]
    pub attempts: u32,
    #[serde(rename = "Error", skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether trying again later may succeed (a failure, or another run holding the consent),
    /// as opposed to a final outcome: synced, expired, revoked, out of budget.
    #[serde(skip)]
    pub retry_later: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Counts {
    #[serde(rename = "Consents")]
    pub consents: usize,
    #[serde(rename = "Synced")]
    pub synced: usize,
    #[serde(rename = "Failed")]
    pub failed: usize,
    #[serde(rename = "Expired")]
    pub expired: usize,
    #[serde(rename = "Skipped")]
    pub skipped: usize,
    #[serde(rename = "Accounts")]
    pub accounts: usize,
    #[serde(rename = "Products")]
    pub products: usize,
    #[serde(rename = "ClosedProducts")]
    pub closed_products: u64,
    #[serde(rename = "Transactions")]
    pub transactions: TransactionCounts,
}

impl Counts {
    /// A run's counts from its consents' outcomes.
    pub fn of(outcomes: &[ConsentOutcome]) -> Counts {
        let mut counts = Counts {
            consents: outcomes.len(),
            ..Counts::default()
        };
        for o in outcomes {
            match o.status.as_str() {
                "Synced" => counts.synced += 1,
                "Failed" => counts.failed += 1,
                "Expired" => counts.expired += 1,
                _ => counts.skipped += 1,
            }
            counts.accounts += o.accounts;
            counts.products += o.products;
            counts.closed_products += o.closed_products;
            counts.transactions.add(o.transactions);
        }
        counts
    }
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: ObjectId,
    /// `Succeeded`, `PartiallySucceeded` or `Failed`.
    pub status: String,
    /// Whether every selected consent was started (false when the deadline stopped the run).
    pub complete: bool,
    /// The last consent started, when the run stopped early: the next run resumes after it.
    pub resume_after: Option<ObjectId>,
    pub counts: Counts,
    pub outcomes: Vec<ConsentOutcome>,
    pub peak_concurrency: usize,
}

impl RunReport {
    /// The run as the API shows it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "runId": self.run_id.to_hex(),
            "status": self.status,
            "complete": self.complete,
            "counts": self.counts,
            "consents": self.outcomes.iter().map(|o| serde_json::json!({
                "consentId": o.consent_id.to_hex(),
                "institution": o.institution,
                "status": o.status,
                "accounts": o.accounts,
                "products": o.products,
                "closedProducts": o.closed_products,
                "transactions": o.transactions.to_json(),
                "attempts": o.attempts,
                "error": o.error,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The overall status from the outcomes: any failure makes it partial, all failures failed.
pub fn run_status(counts: &Counts) -> &'static str {
    match (counts.failed, counts.consents - counts.failed) {
        (0, _) => "Succeeded",
        (_, 0) => "Failed",
        _ => "PartiallySucceeded",
    }
}

/// Exponential backoff with jitter before retry `attempt` (1-based).
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exponential = base.saturating_mul(1 << attempt.saturating_sub(1).min(6));
    let jitter = rand::thread_rng().gen_range(0..=exponential.as_millis() as u64);
    exponential + Duration::from_millis(jitter)
}

async fn select_consents(
    state: &AppState,
    trigger: Trigger,
) -> Result<(Vec<Consent>, Option<ObjectId>), AppError> {
    let mut filter = doc! {"Status": consents::AUTHORISED};
    let mut resumed = None;
    match trigger {
        Trigger::OnDemand(user) => {
            filter.insert(crate::db::OWNER, user);
        }
        Trigger::Scheduled => {
            let last = state
                .db
                .open_finance
                .collection::<Document>(SYNC_RUNS)
                .find_one(doc! {"Trigger": "Scheduled"})
                .sort(doc! {"StartedAt": -1})
                .await?;
            if let Some(after) = last.as_ref().and_then(resume_point) {
                filter.insert("_id", doc! {"$gt": after});
                resumed = Some(after);
            }
        }
    }
    let list = consents::collection(&state.db)
        .find(filter)
        .sort(doc! {"_id": 1})
        .await?
        .try_collect()
        .await?;
    Ok((list, resumed))
}

/// Where the run after `last` starts: after `ResumeAfter` if `last` finished incomplete (from
/// the beginning if it finished complete); if it never finished (killed at its deadline),
/// after its last checkpoint, or where it had itself started.
fn resume_point(last: &Document) -> Option<ObjectId> {
    if last.contains_key("FinishedAt") {
        return last.get_object_id("ResumeAfter").ok();
    }
    last.get_object_id("Progress")
        .or_else(|_| last.get_object_id("ResumedAfter"))
        .ok()
}

/// Runs one sync. `deadline` is when the Lambda invocation ends (none on demand locally).
pub async fn run(
    state: &AppState,
    gateway: &BankGateway,
    trigger: Trigger,
    deadline: Option<Instant>,
    options: &SyncOptions,
) -> Result<RunReport, AppError> {
    let runs = state.db.open_finance.collection::<Document>(SYNC_RUNS);
    let run_id = ObjectId::new();
    // Selected before this run's own record exists, which must not be its own resume point.
    let (selected, resumed_after) = select_consents(state, trigger).await?;
    let mut record = doc! {"_id": run_id, "Trigger": match trigger { Trigger::Scheduled => "Scheduled", Trigger::OnDemand(_) => "OnDemand" }, "StartedAt": DateTime::now(), "Status": "Running"};
    if let Trigger::OnDemand(user) = trigger {
        record.insert("UserId", user);
    }
    if let Some(after) = resumed_after {
        record.insert("ResumedAfter", after);
    }
    runs.insert_one(record).await?;
    // Checkpoints are computed and written under this one lock, so they reach the database in
    // order (an update operator such as `$max` is not atomic on FerretDB).
    let progress = Arc::new(tokio::sync::Mutex::new(Progress::new(selected.len())));
    let ids: Arc<Vec<ObjectId>> = Arc::new(selected.iter().map(|c| c.id).collect());
    let checkpoint_every = match trigger {
        Trigger::Scheduled => options.checkpoint_every.max(1),
        Trigger::OnDemand(_) => usize::MAX,
    };

    let in_flight = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let total = selected.len();
    // Owned items and explicit types: borrowed ones make the future too general to be `Send`.
    let outcomes: Vec<ConsentOutcome> = stream::iter(selected.clone().into_iter().enumerate())
        // Checked as each consent is about to start, so the deadline stops new work only.
        .take_while(|_: &(usize, Consent)| {
            let go = deadline
                .is_none_or(|d| d.saturating_duration_since(Instant::now()) > options.stop_margin);
            if go {
                started.fetch_add(1, Ordering::SeqCst);
            }
            std::future::ready(go)
        })
        .map(|(index, consent): (usize, Consent)| {
            let (in_flight, peak, runs) = (in_flight.clone(), peak.clone(), runs.clone());
            let (progress, ids) = (progress.clone(), ids.clone());
            async move {
                let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let access = match trigger {
                    Trigger::Scheduled => Access::Unattended { run_id },
                    Trigger::OnDemand(_) => Access::Attended,
                };
                let outcome =
                    sync_consent(state, gateway, &consent, options, deadline, access).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                let mut progress = progress.lock().await;
                if let Some(done) = progress.finish(index, checkpoint_every) {
                    let written = runs
                        .update_one(
                            doc! {"_id": run_id},
                            doc! {"$set": {"Progress": ids[done - 1]}},
                        )
                        .await;
                    if let Err(e) = written {
                        tracing::warn!(run_id = %run_id, error = %e, "could not record progress");
                    }
                }
                drop(progress);
                outcome
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;

    let started = started.load(Ordering::SeqCst);
    let complete = started == total;
    let resume_after = if complete {
        None
    } else {
        started
            .checked_sub(1)
            .map(|i| selected[i].id)
            .or(resumed_after)
    };
    let counts = Counts::of(&outcomes);
    let status = run_status(&counts).to_string();
    // The finished record states the final progress too: the last consent before which every
    // consent has finished (all of them when the run is complete), whatever checkpoints the
    // order of completion allowed on the way.
    let low_water = progress.lock().await.low_water;
    let mut update = doc! {
        "FinishedAt": DateTime::now(),
        "Status": &status,
        "Complete": complete,
        "Counts": to_bson(&counts)?,
        "Outcomes": to_bson(&outcomes)?,
        "PeakConcurrency": peak.load(Ordering::SeqCst) as i64,
    };
    if let Some(after) = resume_after {
        update.insert("ResumeAfter", after);
    }
    if let Some(last) = low_water.checked_sub(1) {
        update.insert("Progress", ids[last]);
    }
    runs.update_one(doc! {"_id": run_id}, doc! {"$set": update})
        .await?;
    tracing::info!(run_id = %run_id, status = %status, complete, consents = counts.consents, failed = counts.failed, "sync run finished");
    Ok(RunReport {
        run_id,
        status,
        complete,
        resume_after,
        counts,
        outcomes,
        peak_concurrency: peak.load(Ordering::SeqCst),
    })
}

/// Which of a run's consents have finished, and the low-water mark: how many at the front of
/// the list have all finished. Only that prefix may be skipped by a resuming run; consents
/// finished out of order beyond it are synced again, which is harmless (upserts).
struct Progress {
    finished: Vec<bool>,
    low_water: usize,
    checkpointed: usize,
}

impl Progress {
    fn new(consents: usize) -> Self {
        Progress {
            finished: vec![false; consents],
            low_water: 0,
            checkpointed: 0,
        }
    }

    /// Marks consent `index` finished; returns the new low-water mark when it has moved on by
    /// at least `every` since the last checkpoint, which the caller then records.
    fn finish(&mut self, index: usize, every: usize) -> Option<usize> {
        self.finished[index] = true;
        while self.finished.get(self.low_water) == Some(&true) {
            self.low_water += 1;
        }
        if self.low_water - self.checkpointed >= every {
            self.checkpointed = self.low_water;
            Some(self.low_water)
        } else {
            None
        }
    }
}

fn to_bson<T: Serialize>(value: &T) -> Result<mongodb::bson::Bson, AppError> {
    mongodb::bson::to_bson(value)
        .map_err(|e| AppError::Internal(format!("cannot encode a sync record: {e}")))
}

/// Syncs one consent: re-read (it may have changed since selection), expired ones marked so,
/// revoked ones skipped, then under its lease (unattended: within its daily refresh budget)
/// with bounded retries. A retry is not started when, after its backoff, less than the stop
/// margin would be left before `deadline`.
pub async fn sync_consent(
    state: &AppState,
    gateway: &BankGateway,
    selected: &Consent,
    options: &SyncOptions,
    deadline: Option<Instant>,
    access: Access,
) -> ConsentOutcome {
    let mut outcome = ConsentOutcome {
        consent_id: selected.id,
        institution: selected.institution.id().to_string(),
        user_id: selected.user_id,
        status: "Skipped".into(),
        accounts: 0,
        products: 0,
        closed_products: 0,
        transactions: TransactionCounts::default(),
        attempts: 0,
        error: None,
        retry_later: false,
    };
    let consent = match consents::get_any(&state.db, selected.id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            outcome.error = Some("the consent no longer exists".into());
            return outcome;
        }
        Err(e) => return failed(outcome, &e),
    };
    match consent.status.as_str() {
        consents::AUTHORISED => {}
        consents::EXPIRED => {
            outcome.status = "Expired".into();
            return outcome;
        }
        other => {
            outcome.error = Some(format!("the consent is {other}"));
            return outcome;
        }
    }
    let lease = match consents::acquire_lease(&state.db, consent.id, options.lease_seconds).await {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            outcome.error = Some("another run is syncing this consent".into());
            outcome.retry_later = true;
            return outcome;
        }
        Err(e) => return failed(outcome, &e),
    };
    if let Access::Unattended { run_id } = access {
        let claim = budget::claim(
            &state.db,
            consent.id,
            run_id,
            options.daily_refreshes,
            DateTime::now(),
        )
        .await;
        let refused = match claim {
            Ok(Claim::Granted(_) | Claim::AlreadyHeld(_)) => None,
            Ok(Claim::Exhausted) => {
                outcome.error = Some(format!(
                    "today's {} unattended refreshes are used",
                    options.daily_refreshes
                ));
                Some(outcome.clone())
            }
            Err(e) => Some(failed(outcome.clone(), &e)),
        };
        if let Some(refused) = refused {
            release(state, lease).await;
            return refused;
        }
    }
    let mut result = Err(AppError::Internal("not attempted".into()));
    for attempt in 1..=options.retries + 1 {
        outcome.attempts = attempt;
        result = sync_once(state, gateway, consent.id).await;
        match &result {
            Err(e) if e.is_transient() && attempt <= options.retries => {
                let wait = backoff(options.backoff, attempt);
                let time_left = deadline.is_none_or(|d| {
                    d.saturating_duration_since(Instant::now()) > wait + options.stop_margin
                });
                if !time_left {
                    break;
                }
                tokio::time::sleep(wait).await;
            }
            _ => break,
        }
    }
    // Under the lease: nothing else writes the consent meanwhile (FerretDB's updates of one
    // document are not atomic with each other).
    if result.is_ok() && matches!(access, Access::Unattended { .. }) {
        let marked = consents::collection(&state.db)
            .update_one(
                doc! {"_id": consent.id},
                doc! {"$set": {LAST_UNATTENDED_SYNC: DateTime::now()}},
            )
            .await;
        if let Err(e) = marked {
            tracing::warn!(consent_id = %consent.id, error = %e, "could not record the unattended sync");
        }
    }
    release(state, lease).await;
    match result {
        Ok(synced) => {
            outcome.status = "Synced".into();
            outcome.accounts = synced.accounts;
            outcome.products = synced.products;
            outcome.closed_products = synced.closed_products;
            outcome.transactions = synced.transactions;
            outcome
        }
        Err(e) => failed(outcome, &e),
    }
}

fn failed(mut outcome: ConsentOutcome, e: &AppError) -> ConsentOutcome {
    tracing::warn!(consent_id = %outcome.consent_id, error = %e, "consent sync failed");
    outcome.status = "Failed".into();
    outcome.error = Some(e.public_message());
    outcome.retry_later = true;
    outcome
}

async fn release(state: &AppState, lease: consents::Lease) {
    if let Err(e) = consents::release_lease(&state.db, lease).await {
        tracing::warn!(consent_id = %lease.consent_id, error = %e, "could not release a lease; it will lapse");
    }
}

/// What one attempt stored.
struct Synced {
    accounts: usize,
    products: usize,
    closed_products: u64,
    transactions: TransactionCounts,
}

/// One attempt: the consent read fresh (its credentials may have rotated), one access token,
/// accounts and products fetched and written, then each account's transactions.
async fn sync_once(
    state: &AppState,
    gateway: &BankGateway,
    id: ObjectId,
) -> Result<Synced, AppError> {
    let consent = consents::get_any(&state.db, id)
        .await?
        .ok_or_else(|| AppError::NotFound("the consent no longer exists".into()))?;
    if consent.status != consents::AUTHORISED {
        return Err(AppError::Forbidden(format!(
            "the consent is {}",
            consent.status
        )));
    }
    let token = access_token(state, gateway, &consent).await?;
    let accounts = fetch_accounts(gateway, &consent, &token).await?;
    let products = if consent.allows("ReadProducts") {
        Some(fetch_products(gateway, &consent, &token).await?)
    } else {
        None
    };
    let stored_accounts = upsert_accounts(state, &consent, &accounts).await?;
    let (stored_products, closed) = match products {
        Some(p) => upsert_products(state, &consent, &p).await?,
        None => (Vec::new(), 0),
    };
    let refs = transactions::accounts_to_read(&consent, &stored_accounts, &stored_products);
    let transactions =
        transactions::sync_transactions(state, gateway, &consent, &token, &refs).await?;
    if consents::disconnect_if_ended(&state.db, &consent).await? {
        return Err(AppError::Forbidden(
            "the consent ended while it was being synced".into(),
        ));
    }
    Ok(Synced {
        accounts: stored_accounts.len(),
        products: stored_products.len(),
        closed_products: closed,
        transactions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson;

    #[test]
    fn status_follows_failures() {
        let c = |consents, failed| Counts {
            consents,
            failed,
            ..Counts::default()
        };
        assert_eq!(run_status(&c(0, 0)), "Succeeded");
        assert_eq!(run_status(&c(3, 0)), "Succeeded");
        assert_eq!(run_status(&c(3, 1)), "PartiallySucceeded");
        assert_eq!(run_status(&c(3, 3)), "Failed");
    }

    #[test]
    fn progress_checkpoints_only_a_finished_prefix() {
        let mut p = Progress::new(6);
        // Out of order: 1 and 2 finish first, nothing before them has, so nothing to record.
        assert_eq!(p.finish(1, 2), None);
        assert_eq!(p.finish(2, 2), None);
        // 0 finishes: the first three are done.
        assert_eq!(p.finish(0, 2), Some(3));
        // One more is not yet `every` past the last checkpoint.
        assert_eq!(p.finish(3, 2), None);
        assert_eq!(p.finish(5, 2), None);
        assert_eq!(p.finish(4, 2), Some(6));
    }

    #[test]
    fn resume_point_follows_how_the_last_run_ended() {
        let (a, b) = (ObjectId::new(), ObjectId::new());
        let finished = |extra: Document| {
            let mut d = doc! {"FinishedAt": DateTime::now(), "Progress": b};
            d.extend(extra);
            d
        };
        assert_eq!(resume_point(&finished(doc! {})), None);
        assert_eq!(resume_point(&finished(doc! {"ResumeAfter": a})), Some(a));
        assert_eq!(
            resume_point(&doc! {"Progress": b, "ResumedAfter": a}),
            Some(b)
        );
        assert_eq!(resume_point(&doc! {"ResumedAfter": a}), Some(a));
        assert_eq!(resume_point(&doc! {}), None);
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        let base = Duration::from_millis(100);
        for attempt in 1..=3 {
            let exp = base * (1 << (attempt - 1));
            let d = backoff(base, attempt);
            assert!(d >= exp && d <= exp * 2, "{attempt}: {d:?}");
        }
        assert!(backoff(base, 30) <= base * 64 * 2);
    }

    #[test]
    fn counts_encode_for_the_run_record() {
        let counts = Counts {
            consents: 2,
            synced: 1,
            failed: 1,
            ..Counts::default()
        };
        let b = bson::to_document(&counts).unwrap();
        assert_eq!(
            b.get_i64("Consents")
                .or(b.get_i32("Consents").map(i64::from))
                .unwrap(),
            2
        );
    }
}
