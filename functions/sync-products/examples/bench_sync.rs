//! Sync benchmark: N generated customers with an authorised consent at each bank, their
//! access tokens expired (so every consent refreshes, as an hourly run would), then one
//! scheduled sync per concurrency level. Prints consents per second, database round trips per
//! consent (commands counted by the driver's command monitor) and the peak concurrency used.
//!
//! Run with `scripts/bench.sh sync` (it starts a throw-away FerretDB on PostgreSQL — or on
//! SQLite with `LOCAL_DB_BACKEND=sqlite`, or uses `MONGODB_URI` — and the Secrets Manager
//! emulator); `BENCH_CUSTOMERS` sets N (default 100). Everything — token server, emulated
//! banks, sync and database — shares this machine's cores, so the figures are for the whole
//! system here. FerretDB's SQLite backend reads the whole collection for every filter but
//! `{_id: …}`, so there the time grows with the data (1,000 customers do not finish setting up).

use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};
use shared::consents;
use shared::institutions::Institution;
use shared::sync::{self, SyncOptions, Trigger};
use testkit::Stack;

const PERMISSIONS: [&str; 3] = ["ReadAccountsDetail", "ReadBalances", "ReadProducts"];

#[tokio::main]
async fn main() {
    let customers: usize = std::env::var("BENCH_CUSTOMERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let s =
        Stack::with(|state, gateway| sync_products::router(state, gateway, SyncOptions::default()))
            .await;
    let (state, gateway, db) = (&s.ctx.state, &s.gateway, &s.ctx.state.db);

    let setup = Instant::now();
    let pairs: Vec<(ObjectId, Institution)> = (0..customers)
        .map(|_| ObjectId::new())
        .flat_map(|user| Institution::ALL.map(|bank| (user, bank)))
        .collect();
    let authorised = stream::iter(pairs)
        .map(|(user, bank)| async move {
            testkit::new_authorised_consent(state, gateway, user, bank, &PERMISSIONS).await
        })
        // Two at a time: FerretDB's SQLite backend serialises writes, and a deeper queue only
        // pushes the token endpoint past the test gateway's timeout.
        .buffer_unordered(2)
        .count()
        .await;
    println!(
        "setup: {customers} customers, {authorised} authorised consents in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    let (counting, commands) = s.ctx.counting_state().await;
    println!(
        "\n{:>11} {:>9} {:>10} {:>13} {:>15} {:>7} {:>7} {:>19}",
        "concurrency",
        "consents",
        "seconds",
        "consents/s",
        "round trips/c",
        "peak",
        "failed",
        "status"
    );
    for concurrency in [1, 8, 32] {
        // Every access token expired: each consent refreshes, as on an hourly schedule.
        db.open_finance
            .collection::<Document>(consents::CONSENTS)
            .update_many(
                doc! {},
                doc! {"$set": {"Credentials.AccessTokenExpiresAt": DateTime::from_millis(0)}},
            )
            .await
            .unwrap();
        // Resume from the beginning each time: forget earlier runs.
        db.open_finance
            .collection::<Document>(sync::SYNC_RUNS)
            .delete_many(doc! {})
            .await
            .unwrap();
        let options = SyncOptions {
            concurrency,
            stop_margin: Duration::ZERO,
            // Every round re-syncs the same consents on one day; the budget is not measured here.
            daily_refreshes: u32::MAX,
            ..SyncOptions::default()
        };
        commands.take();
        let started = Instant::now();
        let report = sync::run(&counting, &s.gateway, Trigger::Scheduled, None, &options)
            .await
            .unwrap();
        let seconds = started.elapsed().as_secs_f64();
        let n = report.outcomes.len();
        println!(
            "{concurrency:>11} {n:>9} {seconds:>10.2} {:>13.1} {:>15.1} {:>7} {:>7} {:>19}",
            n as f64 / seconds,
            commands.take() as f64 / n as f64,
            report.peak_concurrency,
            report.counts.failed,
            report.status,
        );
        // Failures by cause, most frequent first.
        let mut causes: Vec<(String, usize)> = Vec::new();
        for o in report.outcomes.iter().filter(|o| o.status == "Failed") {
            let cause = o.error.clone().unwrap_or_else(|| "?".into());
            match causes.iter_mut().find(|(c, _)| *c == cause) {
                Some((_, n)) => *n += 1,
                None => causes.push((cause, 1)),
            }
        }
        causes.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        for (cause, n) in causes {
            println!("{:>11} {n} failed: {cause}", "");
        }
    }
    println!(
        "\n(round trips: the sync's own database commands per consent; the token server's and the emulated banks' are not counted)"
    );
}
