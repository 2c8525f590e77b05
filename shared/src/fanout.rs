//! The scheduled sync spread over many functions: a dispatcher sends every due consent to the
//! sync queue, one message each, and workers (SQS-triggered) sync them with `sync_consent`.
//!
//! - A fan-out run is a `sync_runs` document (`Mode: "FanOut"`) created by the dispatcher;
//!   each consent's outcome is its own document in `sync_run_outcomes`, keyed by run and
//!   consent, so a redelivered message rewrites its outcome instead of adding one, and no
//!   counter is updated concurrently (FerretDB's updates of one document are not atomic).
//! - The run is finished (status, counts) when every dispatched consent has an outcome:
//!   `finish_run` checks, and the next dispatcher (or the local poller, once the queue is
//!   empty) calls it for the runs still open.
//! - Only retryable outcomes (a failure, another run holding the consent) are reported as
//!   batch item failures, so SQS redelivers just those; at the last delivery the failure is
//!   recorded as final before the message goes to the dead-letter queue.

use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt, stream};
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};

use crate::banks::BankGateway;
use crate::budget;
use crate::consents;
use crate::error::AppError;
use crate::queue::{SyncMessage, SyncQueue};
use crate::state::AppState;
use crate::sync::{
    Access, ConsentOutcome, Counts, LAST_UNATTENDED_SYNC, SYNC_RUNS, SyncOptions, run_status,
    sync_consent,
};
use crate::transactions::TransactionCounts;

pub const SYNC_RUN_OUTCOMES: &str = "sync_run_outcomes";
/// Consents per batch of the dispatcher's cursor.
const READ_BATCH: usize = 1000;
/// `SendMessageBatch` requests in flight at once. Against a stand-in answering each request
/// after 20 ms, 100,000 consents took 34 s with 8 in flight and 13.6 s with 32, 6.5 s of it
/// reading them (scripts/bench.sh fanout).
const SEND_CONCURRENCY: usize = 32;

#[derive(Debug, Clone)]
pub struct DispatchReport {
    pub run_id: ObjectId,
    /// Authorised consents read.
    pub considered: usize,
    /// Of those, due and sent to the queue.
    pub dispatched: usize,
    /// Due, but refused by SQS twice: recorded as failed outcomes.
    pub not_sent: usize,
    /// Milliseconds until every due consent had been read, and until all had been sent.
    pub read_millis: u64,
    pub millis: u64,
    /// Earlier fan-out runs this dispatcher found complete and finished.
    pub finished_earlier: usize,
}

impl DispatchReport {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "runId": self.run_id.to_hex(),
            "mode": "FanOut",
            "considered": self.considered,
            "dispatched": self.dispatched,
            "notSent": self.not_sent,
            "readMillis": self.read_millis,
            "millis": self.millis,
            "finishedEarlierRuns": self.finished_earlier,
        })
    }
}

/// Whether a consent (as the dispatcher reads it) is due for an unattended refresh.
pub fn is_due(consent: &Document, now: DateTime, daily_refreshes: u32) -> bool {
    let now = now.timestamp_millis();
    let unexpired = consent
        .get_datetime("ExpiresAt")
        .is_ok_and(|at| at.timestamp_millis() > now);
    let rested = match consent.get_datetime(LAST_UNATTENDED_SYNC) {
        Ok(last) => now - last.timestamp_millis() >= budget::min_interval_ms(daily_refreshes),
        Err(_) => true,
    };
    unexpired && rested
}

/// The dispatcher: finishes earlier runs that are complete, then creates a run and sends
/// every due consent to the queue, in `_id` order.
pub async fn dispatch(
    state: &AppState,
    queue: &SyncQueue,
    options: &SyncOptions,
) -> Result<DispatchReport, AppError> {
    let started = Instant::now();
    let finished_earlier = finish_open_runs(state).await?;
    let runs = state.db.open_finance.collection::<Document>(SYNC_RUNS);
    let run_id = ObjectId::new();
    runs.insert_one(doc! {
        "_id": run_id, "Trigger": "Scheduled", "Mode": "FanOut",
        "StartedAt": DateTime::now(), "Status": "Dispatching",
    })
    .await?;

    // The due consents are read in full before anything is sent (12 bytes of id each, about
    // 1.2 MB for 100,000): a cursor left open while sending expires on the server
    // (CursorNotFound on FerretDB, measured with 10,000 consents).
    let now = DateTime::now();
    let mut cursor = consents::collection(&state.db)
        .clone_with_type::<Document>()
        .find(doc! {"Status": consents::AUTHORISED})
        .projection(doc! {"_id": 1, "ExpiresAt": 1, LAST_UNATTENDED_SYNC: 1})
        .sort(doc! {"_id": 1})
        .batch_size(READ_BATCH as u32)
        .await?;
    let mut considered = 0;
    let mut due = Vec::new();
    while let Some(consent) = cursor.try_next().await? {
        considered += 1;
        if is_due(&consent, now, options.daily_refreshes) {
            let consent_id = consent
                .get_object_id("_id")
                .map_err(|_| AppError::Internal("a consent without an ObjectId _id".into()))?;
            due.push(SyncMessage { run_id, consent_id });
        }
    }
    let dispatched = due.len();
    let read_millis = started.elapsed().as_millis() as u64;
    let refused = queue.send_all(&due, SEND_CONCURRENCY).await?;
    for m in &refused {
        record_outcome(state, m.run_id, &not_sent_outcome(m.consent_id)).await?;
    }
    let not_sent = refused.len();
    let millis = started.elapsed().as_millis() as u64;
    runs.update_one(
        doc! {"_id": run_id},
        doc! {"$set": {
            "Status": "Dispatched", "Dispatched": dispatched as i64, "NotSent": not_sent as i64,
            "Considered": considered as i64, "ReadMillis": read_millis as i64,
            "DispatchMillis": millis as i64,
        }},
    )
    .await?;
    tracing::info!(run_id = %run_id, considered, dispatched, not_sent, read_millis, millis, "sync run dispatched");
    finish_run(state, run_id).await?;
    Ok(DispatchReport {
        run_id,
        considered,
        dispatched,
        not_sent,
        read_millis,
        millis,
        finished_earlier,
    })
}

fn not_sent_outcome(consent_id: ObjectId) -> ConsentOutcome {
    ConsentOutcome {
        consent_id,
        institution: String::new(),
        user_id: ObjectId::from_bytes([0; 12]),
        status: "Failed".into(),
        accounts: 0,
        products: 0,
        closed_products: 0,
        transactions: TransactionCounts::default(),
        attempts: 0,
        error: Some("the sync queue refused the message".into()),
        retry_later: false,
    }
}

/// One message as the worker gets it from Lambda's SQS event (or the local poller).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message_id: String,
    pub body: String,
    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub receive_count: u32,
}

/// The worker: syncs each delivery's consent and returns the message ids to report as batch
/// item failures (SQS redelivers those, and after `max_receive_count` deliveries moves them to
/// the dead-letter queue).
pub async fn work(
    state: &AppState,
    gateway: &BankGateway,
    options: &SyncOptions,
    deliveries: Vec<Delivery>,
    max_receive_count: u32,
    deadline: Option<Instant>,
) -> Vec<String> {
    let results: Vec<Option<String>> = stream::iter(deliveries)
        .map(|d| async move {
            match work_one(state, gateway, options, &d, max_receive_count, deadline).await {
                Ok(true) => None,
                Ok(false) => Some(d.message_id),
                Err(e) => {
                    tracing::warn!(message_id = %d.message_id, error = %e, "sync message failed");
                    Some(d.message_id)
                }
            }
        })
        .buffer_unordered(options.concurrency.max(1))
        .collect()
        .await;
    results.into_iter().flatten().collect()
}

/// Whether the delivery is done with (true) or must be redelivered (false).
async fn work_one(
    state: &AppState,
    gateway: &BankGateway,
    options: &SyncOptions,
    delivery: &Delivery,
    max_receive_count: u32,
    deadline: Option<Instant>,
) -> Result<bool, AppError> {
    // A poison message is never acknowledged: it goes to the dead-letter queue, whose alarm
    // tells an operator. Its body is not logged (it is not ours to trust).
    let message = SyncMessage::parse(&delivery.body)?;
    if let Some(done) = final_outcome(state, &message).await? {
        tracing::info!(consent_id = %message.consent_id, status = %done, "already synced under this run");
        return Ok(true);
    }
    let outcome = match consents::get_any(&state.db, message.consent_id).await? {
        Some(consent) => {
            let access = Access::Unattended {
                run_id: message.run_id,
            };
            sync_consent(state, gateway, &consent, options, deadline, access).await
        }
        None => gone(message.consent_id),
    };
    let last_delivery = delivery.receive_count >= max_receive_count;
    if outcome.retry_later && !last_delivery {
        return Ok(false);
    }
    let mut outcome = outcome;
    if outcome.retry_later {
        outcome.error = Some(format!(
            "{} (gave up after {} deliveries)",
            outcome.error.as_deref().unwrap_or("failed"),
            delivery.receive_count
        ));
        outcome.status = "Failed".into();
    }
    record_outcome(state, message.run_id, &outcome).await?;
    // The last failed delivery is still reported, so the message lands in the dead-letter queue.
    Ok(!outcome.retry_later)
}

fn gone(consent_id: ObjectId) -> ConsentOutcome {
    ConsentOutcome {
        error: Some("the consent no longer exists".into()),
        status: "Skipped".into(),
        ..not_sent_outcome(consent_id)
    }
}

fn outcome_id(run_id: ObjectId, consent_id: ObjectId) -> String {
    format!("{}:{}", run_id.to_hex(), consent_id.to_hex())
}

/// The final outcome already recorded for this run and consent, if any.
async fn final_outcome(state: &AppState, m: &SyncMessage) -> Result<Option<String>, AppError> {
    let found = state
        .db
        .open_finance
        .collection::<Document>(SYNC_RUN_OUTCOMES)
        .find_one(doc! {"_id": outcome_id(m.run_id, m.consent_id)})
        .projection(doc! {"Status": 1})
        .await?;
    Ok(found.and_then(|d| d.get_str("Status").ok().map(String::from)))
}

async fn record_outcome(
    state: &AppState,
    run_id: ObjectId,
    outcome: &ConsentOutcome,
) -> Result<(), AppError> {
    let id = outcome_id(run_id, outcome.consent_id);
    let mut record = mongodb::bson::to_document(outcome)
        .map_err(|e| AppError::Internal(format!("cannot encode a sync outcome: {e}")))?;
    record.insert("_id", &id);
    record.insert("RunId", run_id);
    record.insert("At", DateTime::now());
    state
        .db
        .open_finance
        .collection::<Document>(SYNC_RUN_OUTCOMES)
        .replace_one(doc! {"_id": id}, record)
        .upsert(true)
        .await?;
    Ok(())
}

/// Finishes a dispatched fan-out run once every dispatched consent has an outcome: its status
/// and counts from the outcomes. Returns whether the run is finished.
pub async fn finish_run(state: &AppState, run_id: ObjectId) -> Result<bool, AppError> {
    let runs = state.db.open_finance.collection::<Document>(SYNC_RUNS);
    let Some(run) = runs.find_one(doc! {"_id": run_id}).await? else {
        return Ok(false);
    };
    match run.get_str("Status") {
        Ok("Dispatched") => {}
        Ok("Dispatching") => return Ok(false),
        _ => return Ok(true),
    }
    let dispatched = run.get_i64("Dispatched").unwrap_or(0) as usize;
    let outcomes: Vec<ConsentOutcome> = state
        .db
        .open_finance
        .collection::<ConsentOutcome>(SYNC_RUN_OUTCOMES)
        .find(doc! {"RunId": run_id})
        .await?
        .try_collect()
        .await?;
    if outcomes.len() < dispatched {
        return Ok(false);
    }
    let counts = Counts::of(&outcomes);
    let status = run_status(&counts);
    let counts = mongodb::bson::to_bson(&counts)
        .map_err(|e| AppError::Internal(format!("cannot encode run counts: {e}")))?;
    runs.update_one(
        doc! {"_id": run_id},
        doc! {"$set": {"Status": status, "Complete": true, "FinishedAt": DateTime::now(), "Counts": counts}},
    )
    .await?;
    tracing::info!(run_id = %run_id, status, "fan-out sync run finished");
    Ok(true)
}

/// Finishes every dispatched fan-out run that has become complete; returns how many.
pub async fn finish_open_runs(state: &AppState) -> Result<usize, AppError> {
    let open: Vec<Document> = state
        .db
        .open_finance
        .collection::<Document>(SYNC_RUNS)
        .find(doc! {"Status": "Dispatched"})
        .projection(doc! {"_id": 1})
        .await?
        .try_collect()
        .await?;
    let mut finished = 0;
    for run in open {
        if let Ok(id) = run.get_object_id("_id")
            && finish_run(state, id).await?
        {
            finished += 1;
        }
    }
    Ok(finished)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_means_unexpired_and_rested() {
        let now = DateTime::now();
        let at =
            |hours_ago: i64| DateTime::from_millis(now.timestamp_millis() - hours_ago * 3_600_000);
        let future = DateTime::from_millis(now.timestamp_millis() + 86_400_000);
        assert!(is_due(&doc! {"ExpiresAt": future}, now, 4));
        assert!(is_due(
            &doc! {"ExpiresAt": future, LAST_UNATTENDED_SYNC: at(6)},
            now,
            4
        ));
        assert!(!is_due(
            &doc! {"ExpiresAt": future, LAST_UNATTENDED_SYNC: at(2)},
            now,
            4
        ));
        assert!(is_due(
            &doc! {"ExpiresAt": future, LAST_UNATTENDED_SYNC: at(2)},
            now,
            24
        ));
        assert!(!is_due(&doc! {"ExpiresAt": at(1)}, now, 4));
        assert!(!is_due(&doc! {}, now, 4));
    }
}
