//! Fan-out benchmark, on the emulator's SQS (moto) and FerretDB:
//!
//! 1. Dispatch: 10,000 and 100,000 authorised consents (written straight into the database;
//!    the dispatcher reads only their status, expiry and last unattended sync) sent to a fresh
//!    queue. Prints the dispatch time and messages per second.
//! 2. End to end: `BENCH_FANOUT_CONSENTS` (default 1,000) consents authorised at the emulated
//!    banks, dispatched, then drained by 1, 4 and 8 concurrent local workers (each polls ten
//!    messages and hands them to the worker, as Lambda's event source mapping would). Prints
//!    consents per second and the worker's database round trips per consent.
//!
//! Run with `scripts/bench.sh fanout`. Everything — moto, FerretDB and PostgreSQL, the token
//! server, the emulated banks, the dispatcher and the workers — shares this machine's 2 cores,
//! so these are figures for the whole system on one small machine, not for SQS or Lambda.

use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};
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
    println!(
        "{:>9} {:>12} {:>10} {:>11}",
        "consents", "insert s", "dispatch s", "messages/s"
    );
    let mut written = 0;
    for target in [10_000usize, 100_000] {
        let started = Instant::now();
        let expires = DateTime::from_millis(DateTime::now().timestamp_millis() + 86_400_000);
        while written < target {
            let batch: Vec<Document> = (0..1000)
                .map(|_| {
                    doc! {
                        "_id": ObjectId::new(), "UserId": ObjectId::new(), "UserName": "bench",
                        "Institution": "green-bank", "Permissions": ["ReadAccountsDetail"],
                        "Status": consents::AUTHORISED, "CreatedAt": DateTime::now(),
                        "ExpiresAt": expires, "StatusHistory": [],
                    }
                })
                .collect();
            consents.insert_many(batch).await.unwrap();
            written += 1000;
        }
        let inserted = started.elapsed().as_secs_f64();
        let (queue, _) = testkit::sync_queue(3).await;
        let report = fanout::dispatch(&s.ctx.state, &queue, options)
            .await
            .unwrap();
        assert_eq!(report.dispatched, target);
        let seconds = report.millis as f64 / 1000.0;
        println!(
            "{target:>9} {inserted:>12.1} {seconds:>10.2} {:>11.0}",
            target as f64 / seconds
        );
    }
    consents.delete_many(doc! {}).await.unwrap();
    db.open_finance
        .collection::<Document>(shared::sync::SYNC_RUNS)
        .delete_many(doc! {})
        .await
        .unwrap();
}

async fn end_to_end(s: &Stack, options: &SyncOptions) {
    let n: usize = std::env::var("BENCH_FANOUT_CONSENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1000);
    let (state, gateway, db) = (&s.ctx.state, &s.gateway, &s.ctx.state.db);
    let setup = Instant::now();
    let authorised = stream::iter(0..n)
        .map(|i| async move {
            let bank = Institution::ALL[i % 2];
            let user = ObjectId::new();
            let consent = consents::create(
                db,
                user,
                &format!("bench_{}", user.to_hex()),
                bank,
                PERMISSIONS.map(String::from).to_vec(),
                90,
            )
            .await
            .expect("consent");
            shared::connect::authorise(state, gateway, &consent)
                .await
                .expect("authorise")
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
        let (queue, _) = testkit::sync_queue(3).await;
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
