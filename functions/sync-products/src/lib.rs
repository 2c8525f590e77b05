//! Product, balance and transaction sync: `POST /products/sync` for the caller's consents now,
//! the scheduled run for every authorised consent, `GET /products`, `GET /transactions`, and
//! the legacy product routes.

mod legacy;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc, oid::ObjectId};
use serde::Deserialize;
use serde_json::{Value, json};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use shared::auth::{authenticate, bearer_token};
use shared::banks::BankGateway;
use shared::db::{EXTERNAL_ACCOUNTS, EXTERNAL_PRODUCTS, OWNER};
use shared::fanout;
use shared::http::{MAX_BODY_BYTES, plain_json};
use shared::institutions::Institution;
use shared::queue::SyncQueue;
use shared::sync::{self, SyncOptions, Trigger};
use shared::transactions::{self, query::ListQuery};
use shared::{AppError, AppState, Problem};

/// The product types the reference data and the normalisers know.
pub const PRODUCT_TYPES: [&str; 3] = ["Loan", "Mortgage", "CreditCard"];

#[derive(Clone)]
pub struct Sync {
    pub state: AppState,
    pub gateway: Arc<BankGateway>,
    pub options: Arc<SyncOptions>,
}

pub fn router(state: AppState, gateway: Arc<BankGateway>, options: SyncOptions) -> Router {
    Router::new()
        .route("/products/sync", post(sync_now))
        .route("/products", get(list_products))
        .route("/transactions", get(list_transactions))
        .merge(legacy::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Sync {
            state,
            gateway,
            options: Arc::new(options),
        })
}

/// Per-consent outcomes returned by a scheduled invocation (about 200 bytes each).
const MAX_REPORTED_CONSENTS: usize = 1000;

fn scheduled_event(event: &Value) -> Result<(), AppError> {
    if event["detail-type"] != "Scheduled Event" || event["source"] != "aws.events" {
        return Err(AppError::BadRequest(
            "not an EventBridge scheduled event".into(),
        ));
    }
    Ok(())
}

/// The scheduled run when the sync queue is configured (`SYNC_QUEUE_URL`): every due consent
/// sent to the queue for the workers, nothing synced here.
pub async fn handle_scheduled_dispatch(
    state: &AppState,
    queue: &SyncQueue,
    options: &SyncOptions,
    event: &Value,
) -> Result<Value, AppError> {
    scheduled_event(event)?;
    Ok(fanout::dispatch(state, queue, options).await?.to_json())
}

/// The sync worker, for an SQS event from the sync queue: each message's consent synced, and
/// the messages to redeliver reported as batch item failures (`ReportBatchItemFailures`).
pub async fn handle_sync_messages(
    state: &AppState,
    gateway: &BankGateway,
    options: &SyncOptions,
    event: SqsEvent,
    max_receive_count: u32,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    let deliveries = event
        .records
        .into_iter()
        .map(|m| fanout::Delivery {
            message_id: m.message_id.unwrap_or_default(),
            body: m.body.unwrap_or_default(),
            receive_count: m
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|c| c.parse().ok())
                .unwrap_or(1),
        })
        .collect();
    let failed = fanout::work(
        state,
        gateway,
        options,
        deliveries,
        max_receive_count,
        deadline,
    )
    .await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

/// What Lambda's event source mapping does, once, for the local poller and the tests: up to
/// ten messages from the queue (waiting up to `wait_seconds`), handed to the worker as the
/// same SQS event, then the handled ones deleted and the failures made visible again at once
/// (on AWS they wait out the visibility timeout). Returns (messages, failures).
pub async fn poll_once(
    state: &AppState,
    gateway: &BankGateway,
    options: &SyncOptions,
    queue: &SyncQueue,
    max_receive_count: u32,
    wait_seconds: i32,
) -> Result<(usize, usize), AppError> {
    let received = queue.receive(wait_seconds).await?;
    if received.is_empty() {
        return Ok((0, 0));
    }
    let name = queue.url.rsplit('/').next().unwrap_or_default();
    let event = shared::queue::lambda_event(
        &format!("arn:aws:sqs:us-east-1:000000000000:{name}"),
        &received,
    );
    let response =
        handle_sync_messages(state, gateway, options, event, max_receive_count, None).await;
    let failed: std::collections::HashSet<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let (retry, done): (Vec<_>, Vec<_>) = received
        .iter()
        .partition(|r| failed.contains(r.message_id.as_str()));
    let handles = |list: &[&shared::queue::Received]| -> Vec<String> {
        list.iter().map(|r| r.receipt_handle.clone()).collect()
    };
    queue.delete(&handles(&done)).await?;
    queue.release(&handles(&retry)).await?;
    Ok((received.len(), retry.len()))
}

/// `SYNC_MAX_RECEIVE_COUNT` (default 3): the sync queue's `maxReceiveCount`, so the worker
/// knows a delivery is the last and records its failure before the message is dead-lettered.
pub fn max_receive_count_from_env() -> Result<u32, AppError> {
    match std::env::var("SYNC_MAX_RECEIVE_COUNT") {
        Ok(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                AppError::Config(
                    "environment variable SYNC_MAX_RECEIVE_COUNT must be a whole number above 0"
                        .into(),
                )
            }),
        Err(_) => Ok(3),
    }
}

/// The scheduled run, for an EventBridge scheduled event (anything else is refused, so a
/// misrouted invocation does not start a sync).
pub async fn handle_scheduled(
    state: &AppState,
    gateway: &BankGateway,
    options: &SyncOptions,
    event: &Value,
    deadline: Option<Instant>,
) -> Result<Value, AppError> {
    scheduled_event(event)?;
    let report = sync::run(state, gateway, Trigger::Scheduled, deadline, options).await?;
    // A run in which every consent failed is an invocation error: the function's error alarm
    // fires and the event goes to the dead-letter queue. Partial failures are in `sync_runs`.
    if report.status == "Failed" {
        return Err(AppError::UpstreamUnavailable(format!(
            "sync run {} failed for all {} consents",
            report.run_id.to_hex(),
            report.counts.consents
        )));
    }
    // Lambda caps a response at 6 MB; every outcome is in `sync_runs` anyway.
    let mut body = report.to_json();
    if let Some(consents) = body["consents"].as_array_mut()
        && consents.len() > MAX_REPORTED_CONSENTS
    {
        consents.truncate(MAX_REPORTED_CONSENTS);
        body["consentsTruncated"] = Value::Bool(true);
    }
    Ok(body)
}

async fn user(state: &AppState, headers: &HeaderMap) -> Result<ObjectId, AppError> {
    authenticate(state, bearer_token(headers))
        .await?
        .user_id
        .ok_or_else(|| AppError::Forbidden("this token does not act for a customer".into()))
}

/// `POST /products/sync`: the caller's authorised consents, synced now.
async fn sync_now(State(s): State<Sync>, headers: HeaderMap) -> Result<Json<Value>, Problem> {
    let user_id = user(&s.state, &headers).await?;
    let report = sync::run(
        &s.state,
        &s.gateway,
        Trigger::OnDemand(user_id),
        None,
        &s.options,
    )
    .await?;
    Ok(Json(report.to_json()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductsQuery {
    institution: Option<String>,
    #[serde(rename = "type")]
    product_type: Option<String>,
}

async fn list_products(
    State(s): State<Sync>,
    headers: HeaderMap,
    query: Result<Query<ProductsQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let user_id = user(&s.state, &headers).await?;
    let Query(query) = query.map_err(|_| {
        AppError::BadRequest("the query parameters are institution and type".into())
    })?;
    let institution = query
        .institution
        .as_deref()
        .map(|i| {
            Institution::parse(i).ok_or_else(|| AppError::BadRequest("unknown institution".into()))
        })
        .transpose()?;
    let product_type = query
        .product_type
        .as_deref()
        .map(|t| {
            PRODUCT_TYPES.contains(&t).then_some(t).ok_or_else(|| {
                AppError::BadRequest(format!("type must be one of {}", PRODUCT_TYPES.join(", ")))
            })
        })
        .transpose()?;
    Ok(Json(
        json!({"products": products_of(&s.state, user_id, institution, product_type, true).await?}),
    ))
}

/// `GET /transactions`: the caller's transactions, filtered, newest first, a page at a time.
async fn list_transactions(
    State(s): State<Sync>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let user_id = user(&s.state, &headers).await?;
    let Query(query) = query.map_err(|_| {
        AppError::BadRequest(
            "the query parameters are accountId, institution, from, to, category, status, limit and next, each at most once".into(),
        )
    })?;
    let filters = query.filters()?;
    if let Some(account) = filters.account {
        owned_account(&s.state, user_id, account).await?;
    }
    Ok(Json(
        transactions::query::list(&s.state.db, user_id, &filters).await?,
    ))
}

/// A 404 unless `account` is one of the user's external accounts or card accounts: another
/// customer's id is not found, exactly like an id that does not exist.
async fn owned_account(
    state: &AppState,
    user_id: ObjectId,
    account: ObjectId,
) -> Result<(), AppError> {
    for name in [EXTERNAL_ACCOUNTS, EXTERNAL_PRODUCTS] {
        let found = state
            .db
            .open_finance
            .collection::<Document>(name)
            .find_one(doc! {OWNER: user_id, "_id": account})
            .projection(doc! {"_id": 1})
            .await?;
        if found.is_some() {
            return Ok(());
        }
    }
    Err(AppError::NotFound("no such account".into()))
}

/// The user's external products, optionally filtered.
pub(crate) async fn products_of(
    state: &AppState,
    user_id: ObjectId,
    institution: Option<Institution>,
    product_type: Option<&str>,
    include_closed: bool,
) -> Result<Vec<Value>, AppError> {
    let mut filter = doc! {OWNER: user_id};
    if let Some(i) = institution {
        filter.insert("ProductBank", i.display_name());
    }
    if let Some(t) = product_type {
        filter.insert("ProductType", t);
    }
    if !include_closed {
        filter.insert("ProductStatus", doc! {"$ne": "Closed"});
        filter.insert("Provenance.ConnectionStatus", doc! {"$ne": "Disconnected"});
    }
    let docs: Vec<Document> = state
        .db
        .open_finance
        .collection::<Document>(EXTERNAL_PRODUCTS)
        .find(filter)
        .sort(doc! {"_id": 1})
        .await?
        .try_collect()
        .await?;
    Ok(docs.into_iter().map(|d| plain_json(&d.into())).collect())
}

/// What each of the sync function's entry points starts from: the bank gateway, the sync
/// options and the state (with the connect secrets). A failure is logged, then returned for the
/// runtime to report.
pub async fn start_up() -> Result<(AppState, BankGateway, SyncOptions), AppError> {
    let start = async {
        let gateway = BankGateway::new(shared::banks::GatewayConfig::from_env()?)?;
        let options = SyncOptions::from_env()?;
        let state = AppState::from_env(shared::secrets::SecretNeeds::Connect).await?;
        Ok((state, gateway, options))
    };
    start
        .await
        .inspect_err(|e: &AppError| tracing::error!(error = %e, "start-up failed"))
}

/// The invocation's deadline as an `Instant`. Lambda sends epoch milliseconds; the
/// `cargo lambda` emulator sends the function's timeout in milliseconds instead, and no real
/// deadline is that small (it would be in 2001), so such a value is read as time left.
pub fn deadline_of(deadline_ms: u64) -> Instant {
    const EPOCH_2001_MS: u64 = 1_000_000_000_000;
    if deadline_ms < EPOCH_2001_MS {
        return Instant::now() + Duration::from_millis(deadline_ms);
    }
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_in_both_forms() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let left = |d: Instant| d.saturating_duration_since(Instant::now()).as_secs();
        assert!((58..=60).contains(&left(deadline_of(now_ms + 60_000))));
        assert!((58..=60).contains(&left(deadline_of(60_000))));
        assert_eq!(left(deadline_of(now_ms - 5_000)), 0);
    }
}
