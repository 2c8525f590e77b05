//! Fan-out benchmark on FerretDB:
//!
//! 1. Dispatch: 10,000 and 100,000 authorised consents (`BENCH_DISPATCH_CONSENTS`, written
//!    straight into the database; the dispatcher reads only their status, expiry and last
//!    unattended sync), each count dispatched to an SQS stand-in that answers every request after
//!    0 ms and after `BENCH_SQS_LATENCY_MS` (20). Prints the read and dispatch times and
//!    messages per second. Then `BENCH_DISPATCH_MOTO` (1,000) consents dispatched to moto's SQS,
//!    which slows with its queue's depth (see `SqsSink`).
//! 2. End to end: `BENCH_FANOUT_CONSENTS` (default 1,000) consents authorised at the emulated
//!    banks, dispatched to moto, then drained by 1, 4 and 8 concurrent local workers (each polls
//!    ten messages and hands them to the worker, as Lambda's event source mapping would). Prints
//!    consents per second and the worker's database round trips per consent.
//!
//! Run with `scripts/bench.sh fanout`. Everything — moto, FerretDB and PostgreSQL, the token
//! server, the emulated banks, the dispatcher and the workers — shares this machine's 2 cores,
//! so these are figures for the whole system on one small machine, not for SQS or Lambda.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};
use serde_json::json;
use shared::budget::REFRESH_BUDGET;
use shared::consents;
use shared::fanout::{self, SYNC_RUN_OUTCOMES};
use shared::institutions::Institution;
use shared::queue::SyncQueue;
use shared::sync::{LAST_UNATTENDED_SYNC, SyncOptions};
use testkit::Stack;

const PERMISSIONS: [&str; 3] = ["ReadAccountsDetail", "ReadBalances", "ReadProducts"];

#[tokio::main]
async fn main() {
    let s =
        Stack::with(|state, gateway| sync_products::router(state, gateway, SyncOptions::default()))
            .await;
    let options = SyncOptions {
        stop_margin: Duration::ZERO,
        ..SyncOptions::default()
    };
    dispatch_only(&s, &options).await;
    end_to_end(&s, &options).await;
}

async fn dispatch_only(s: &Stack, options: &SyncOptions) {
    let db = &s.ctx.state.db;
    let consents = db.open_finance.collection::<Document>(consents::CONSENTS);
    let latency = Duration::from_millis(env_number("BENCH_SQS_LATENCY_MS", 20) as u64);
    let sinks = [
        SqsSink::start(Duration::ZERO).await,
        SqsSink::start(latency).await,
    ];
    println!(
        "dispatch (sink: an SQS JSON-protocol endpoint that accepts every batch after 0 ms or {} ms)",
        latency.as_millis()
    );
    println!(
        "{:>9} {:>9} {:>7} {:>11} {:>11} {:>12} {:>11}",
        "consents",
        "insert s",
        "read s",
        "0 ms: total",
        "messages/s",
        format!("{} ms: total", latency.as_millis()),
        "messages/s"
    );
    let mut written = 0;
    for target in env_list("BENCH_DISPATCH_CONSENTS", &[10_000, 100_000]) {
        let started = Instant::now();
        insert_authorised(&consents, target - written).await;
        written = target;
        let inserted = started.elapsed().as_secs_f64();
        let mut cells = Vec::new();
        let mut read = 0.0;
        for sink in &sinks {
            let queue = sink.queue().await;
            let report = fanout::dispatch(&s.ctx.state, &queue, options)
                .await
                .unwrap();
            assert_eq!((report.dispatched, report.not_sent), (target, 0));
            assert_eq!(sink.received(), target);
            let seconds = report.millis as f64 / 1000.0;
            read = report.read_millis as f64 / 1000.0;
            cells.push(format!("{seconds:>11.2} {:>11.0}", target as f64 / seconds));
        }
        println!(
            "{target:>9} {inserted:>9.1} {read:>7.2} {} {}",
            cells[0], cells[1]
        );
    }
    // FerretDB deletes at most 65,535 documents per command: drop, and index again.
    consents.drop().await.unwrap();
    db.ensure_indexes().await.unwrap();

    // The same dispatcher against moto's SQS, which computes every queue attribute (its depth
    // among them, by walking every message) on each message it accepts: quadratic in the depth,
    // so only a small count is measured there.
    let n = env_number("BENCH_DISPATCH_MOTO", 1000);
    insert_authorised(&consents, n).await;
    let (queue, _) = testkit::sync_queue(3).await;
    let report = fanout::dispatch(&s.ctx.state, &queue, options)
        .await
        .unwrap();
    assert_eq!(report.dispatched, n);
    let depth = shared::queue::SyncQueue::depth(&queue.client, &queue.url)
        .await
        .unwrap();
    let seconds = report.millis as f64 / 1000.0;
    println!(
        "moto SQS: {n} consents dispatched in {seconds:.2} s ({:.0} messages/s), queue depth {depth}",
        n as f64 / seconds
    );
    consents.delete_many(doc! {}).await.unwrap();
    db.open_finance
        .collection::<Document>(shared::sync::SYNC_RUNS)
        .delete_many(doc! {})
        .await
        .unwrap();
}

/// `n` authorised consents written straight into the database: the dispatcher reads only their
/// status, expiry and last unattended sync.
async fn insert_authorised(consents: &mongodb::Collection<Document>, n: usize) {
    let expires = DateTime::from_millis(DateTime::now().timestamp_millis() + 86_400_000);
    let mut left = n;
    while left > 0 {
        let batch: Vec<Document> = (0..left.min(1000))
            .map(|_| {
                doc! {
                    "_id": ObjectId::new(), "UserId": ObjectId::new(), "UserName": "bench",
                    "Institution": "green-bank", "Permissions": ["ReadAccountsDetail"],
                    "Status": consents::AUTHORISED, "CreatedAt": DateTime::now(),
                    "ExpiresAt": expires, "StatusHistory": [],
                }
            })
            .collect();
        left -= batch.len();
        consents.insert_many(batch).await.unwrap();
    }
}

/// A stand-in for SQS's `SendMessageBatch` (AWS JSON 1.0 protocol) that accepts every entry
/// after a fixed delay and only counts them: it measures the dispatcher and the database, with
/// the delay standing for SQS's latency. moto cannot: it counts its queue's depth by walking
/// every message each time it accepts one. The tests use moto's real SQS API.
struct SqsSink {
    url: String,
    received: Arc<AtomicUsize>,
}

impl SqsSink {
    async fn start(latency: Duration) -> SqsSink {
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        let app = axum::Router::new().route(
            "/",
            axum::routing::post(move |body: axum::body::Bytes| {
                let counter = counter.clone();
                async move {
                    tokio::time::sleep(latency).await;
                    let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let successful: Vec<serde_json::Value> = request["Entries"]
                        .as_array()
                        .expect("a SendMessageBatch request")
                        .iter()
                        .map(|e| json!({"Id": e["Id"], "MessageId": ObjectId::new().to_hex()}))
                        .collect();
                    counter.fetch_add(successful.len(), Ordering::Relaxed);
                    (
                        [("content-type", "application/x-amz-json-1.0")],
                        json!({"Successful": successful, "Failed": []}).to_string(),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        SqsSink { url, received }
    }

    async fn queue(&self) -> SyncQueue {
        self.received.store(0, Ordering::Relaxed);
        let config = aws_config::load_from_env().await;
        let sqs = aws_sdk_sqs::config::Builder::from(&config)
            .endpoint_url(&self.url)
            .build();
        SyncQueue {
            client: aws_sdk_sqs::Client::from_conf(sqs),
            url: format!("{}/000000000000/bench", self.url),
        }
    }

    fn received(&self) -> usize {
        self.received.load(Ordering::Relaxed)
    }
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn env_list(name: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(name)
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

async fn end_to_end(s: &Stack, options: &SyncOptions) {
    let n = env_number("BENCH_FANOUT_CONSENTS", 1000);
    let (state, gateway, db) = (&s.ctx.state, &s.gateway, &s.ctx.state.db);
    let setup = Instant::now();
    let authorised = stream::iter(0..n)
        .map(|i| async move {
            testkit::new_authorised_consent(
                state,
                gateway,
                ObjectId::new(),
                Institution::ALL[i % 2],
                &PERMISSIONS,
            )
            .await
        })
        .buffer_unordered(2)
        .count()
        .await;
    println!(
        "\nsetup: {authorised} consents authorised at the emulated banks in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    let (counting, commands) = s.ctx.counting_state().await;
    println!(
        "\n{:>7} {:>9} {:>10} {:>11} {:>15} {:>7}",
        "workers", "consents", "seconds", "consents/s", "round trips/c", "failed"
    );
    for workers in [1usize, 4, 8] {
        // Every consent due again and its budget unspent, as on the next day.
        db.open_finance
            .collection::<Document>(consents::CONSENTS)
            .update_many(doc! {}, doc! {"$unset": {LAST_UNATTENDED_SYNC: ""}})
            .await
            .unwrap();
        for c in [REFRESH_BUDGET, SYNC_RUN_OUTCOMES] {
            db.open_finance
                .collection::<Document>(c)
                .delete_many(doc! {})
                .await
                .unwrap();
        }
        // The template's visibility timeout: eight workers on two cores take longer than the
        // tests' 30 s over a batch of ten.
        let (queue, _) = SyncQueue::create_with_dead_letter_queue(
            aws_sdk_sqs::Client::new(&aws_config::load_from_env().await),
            &format!("bench-{}", ObjectId::new().to_hex()),
            3,
            720,
        )
        .await
        .unwrap();
        let report = fanout::dispatch(state, &queue, options).await.unwrap();
        commands.take();
        let started = Instant::now();
        let failed: usize = stream::iter(0..workers)
            .map(|_| drain(&counting, gateway, options, &queue))
            .buffer_unordered(workers)
            .collect::<Vec<usize>>()
            .await
            .into_iter()
            .sum();
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{workers:>7} {:>9} {seconds:>10.2} {:>11.1} {:>15.1} {failed:>7}",
            report.dispatched,
            report.dispatched as f64 / seconds,
            commands.take() as f64 / report.dispatched as f64,
        );
        fanout::finish_run(state, report.run_id).await.unwrap();
    }
    println!(
        "\n(round trips: the worker's own database commands per consent, polling included; the token server's and the emulated banks' are not counted)"
    );
}

/// One local worker: polls until the queue is empty; returns the failed deliveries.
async fn drain(
    state: &shared::AppState,
    gateway: &shared::banks::BankGateway,
    options: &SyncOptions,
    queue: &SyncQueue,
) -> usize {
    let mut failed = 0;
    loop {
        let (handled, f) = sync_products::poll_once(state, gateway, options, queue, 3, 0)
            .await
            .unwrap();
        failed += f;
        if handled == 0 {
            return failed;
        }
    }
}
