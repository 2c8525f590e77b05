//! Transactions benchmark: N generated customers (default 1,000), each with a consent at both
//! banks covering accounts and transactions, so about 1,000,000 transactions in all. Prints:
//! - the first connection's history import per consent (time, bank pages, database round
//!   trips), measured one consent at a time on a sample, then the rest imported concurrently
//!   for throughput;
//! - the incremental sync per consent on a sample;
//! - `GET /transactions` (first and a later page), `/insights/cashflow` (12 months) and
//!   `/insights/recurring` through the routers in process (JWT authentication included):
//!   p50/p95, database round trips, and the time outside database calls (wall time minus the
//!   union of the commands' start-to-reply intervals) and the request thread's CPU time.
//!
//! Run with `scripts/bench.sh transactions`. `BENCH_CUSTOMERS`, `BENCH_REQUESTS` (per route,
//! default 50) and `BENCH_CONCURRENCY` (the bulk import's, default 4) tune it. Everything — the
//! token server, the emulated banks (which generate each page's ledger on the fly), the
//! functions and the database — shares this machine's cores. It asserts no timings.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures_util::{StreamExt, stream};
use http_body_util::BodyExt;
use mongodb::bson::{Document, oid::ObjectId};
use tower::ServiceExt;

use shared::AppState;
use shared::auth::jwt::{self, Claims};
use shared::auth::tokens;
use shared::consents::{self, Consent};
use shared::db::{Db, EXTERNAL_TRANSACTIONS};
use shared::institutions::Institution;
use shared::measure::{Recorder, Sample, ms, percentile, report, thread_cpu_time};
use shared::secrets::{SecretNeeds, SecretStore};
use shared::sync::SyncOptions;
use shared::testing::mongodb_uri;
use testkit::Stack;

const PERMISSIONS: [&str; 5] = [
    "ReadAccountsDetail",
    "ReadBalances",
    "ReadTransactionsDetail",
    "ReadTransactionsCredits",
    "ReadTransactionsDebits",
];
/// Consents imported one at a time, each measured on its own.
const MEASURED_IMPORTS: usize = 20;
const MEASURED_SYNCS: usize = 40;
const SAMPLE_CUSTOMERS: usize = 100;

/// The request path for the i-th sampled customer.
type PathOf<'a> = Box<dyn Fn(usize) -> String + 'a>;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

/// p50 / p95 of `values`.
fn spread(mut values: Vec<Duration>) -> String {
    values.sort();
    format!(
        "p50 {:.1} ms, p95 {:.1} ms",
        ms(percentile(&values, 0.5)),
        ms(percentile(&values, 0.95))
    )
}

#[tokio::main]
async fn main() {
    let customers = env("BENCH_CUSTOMERS", 1000);
    let requests = env("BENCH_REQUESTS", 50);
    let concurrency = env("BENCH_CONCURRENCY", 4);
    let s = Stack::with(|state, gateway| {
        sync_products::router(state.clone(), gateway, SyncOptions::default())
            .merge(insights::router(state))
    })
    .await;
    let (state, gateway, db) = (&s.ctx.state, &s.gateway, &s.ctx.state.db);

    let setup = Instant::now();
    let users: Vec<ObjectId> = (0..customers).map(|_| ObjectId::new()).collect();
    let pairs: Vec<(ObjectId, Institution)> = users
        .iter()
        .flat_map(|user| Institution::ALL.map(|bank| (*user, bank)))
        .collect();
    let authorised: Vec<Consent> = stream::iter(pairs)
        .map(|(user, bank)| async move {
            let consent =
                testkit::new_authorised_consent(state, gateway, user, bank, &PERMISSIONS).await;
            consents::get_any(db, consent.id).await.unwrap().unwrap()
        })
        .buffer_unordered(2)
        .collect()
        .await;
    println!(
        "setup: {customers} customers, {} authorised consents in {:.1} s",
        authorised.len(),
        setup.elapsed().as_secs_f64()
    );

    // First connection, one consent at a time: each one's time, bank pages and round trips.
    let (counting, commands) = s.ctx.counting_state().await;
    let (mut times, mut pages, mut trips, mut added) = (vec![], 0u64, 0usize, 0u64);
    for consent in authorised.iter().take(MEASURED_IMPORTS) {
        commands.take();
        let before = s.bank_transaction_pages.load(Ordering::Relaxed);
        let t0 = Instant::now();
        let connected = shared::connect::connect_accounts(&counting, gateway, consent)
            .await
            .expect("connect");
        times.push(t0.elapsed());
        pages += s.bank_transaction_pages.load(Ordering::Relaxed) - before;
        trips += commands.take();
        added += connected.transactions.added;
    }
    let n = MEASURED_IMPORTS.min(authorised.len()) as f64;
    println!(
        "\nfirst connection (history import), {} consents one at a time: {}; per consent {:.0} \
         transactions, {:.1} bank pages, {:.1} database round trips",
        n,
        spread(times),
        added as f64 / n,
        pages as f64 / n,
        trips as f64 / n,
    );

    // The rest, concurrently: throughput.
    let t0 = Instant::now();
    let rest = &authorised[MEASURED_IMPORTS.min(authorised.len())..];
    let results: Vec<u64> = stream::iter(rest)
        .map(|consent| async move {
            shared::connect::connect_accounts(state, gateway, consent)
                .await
                .map(|c| c.transactions.added)
                .unwrap_or_else(|e| panic!("connect {}: {e}", consent.id))
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let seconds = t0.elapsed().as_secs_f64();
    let imported: u64 = results.iter().sum();
    println!(
        "bulk import, {} consents at concurrency {concurrency}: {seconds:.1} s, {:.1} consents/s, \
         {:.0} transactions/s",
        rest.len(),
        rest.len() as f64 / seconds,
        imported as f64 / seconds,
    );
    let stored = db
        .open_finance
        .collection::<Document>(EXTERNAL_TRANSACTIONS)
        .estimated_document_count()
        .await
        .unwrap();
    println!("stored: {stored} transactions for {customers} customers");

    // Incremental sync per consent (nothing new at the bank since the import: the overlap
    // is re-read and compared).
    let (mut times, mut pages, mut trips) = (vec![], 0u64, 0usize);
    for consent in authorised
        .iter()
        .skip(MEASURED_IMPORTS)
        .take(MEASURED_SYNCS)
    {
        commands.take();
        let before = s.bank_transaction_pages.load(Ordering::Relaxed);
        let t0 = Instant::now();
        let outcome = shared::sync::sync_consent(
            &counting,
            gateway,
            consent,
            &SyncOptions::default(),
            None,
            shared::sync::Access::Attended,
        )
        .await;
        times.push(t0.elapsed());
        assert_eq!(outcome.status, "Synced", "{outcome:?}");
        pages += s.bank_transaction_pages.load(Ordering::Relaxed) - before;
        trips += commands.take();
    }
    let n = MEASURED_SYNCS.min(authorised.len().saturating_sub(MEASURED_IMPORTS)) as f64;
    println!(
        "incremental sync (accounts, balances and transactions), {n} consents one at a time: {}; \
         per consent {:.1} bank pages, {:.1} database round trips",
        spread(times),
        pages as f64 / n,
        trips as f64 / n,
    );

    // The routes, in process, on a client whose command monitor times each command.
    let secret = state.secrets.current().await.unwrap();
    let settings = &state.settings;
    let mut sample = Vec::new();
    for user in users.iter().step_by((customers / SAMPLE_CUSTOMERS).max(1)) {
        let mut claims = Claims::new(
            &settings.issuer,
            &user.to_hex(),
            &settings.api_audience,
            Duration::from_secs(3600),
            "openfinance",
            "bench",
        );
        claims.user_name = Some(format!("bench_{}", user.to_hex()));
        let token = jwt::issue(&secret.keys, &claims).unwrap();
        tokens::record_issued(db, &token, &claims, Some(*user))
            .await
            .unwrap();
        sample.push(token);
    }
    let recorder = Recorder::default();
    let mut options = Db::options(&mongodb_uri()).await.unwrap();
    options.command_event_handler = Some(recorder.handler());
    let recorded = Db::from_options(options, &s.ctx.open_finance_db, &s.ctx.leafy_bank_db).unwrap();
    let store = SecretStore::new(
        s.ctx.sm.clone(),
        s.ctx.secret_id.clone(),
        Duration::from_secs(300),
        SecretNeeds::All,
    );
    store.current().await.unwrap();
    let mut production = settings.clone();
    production.revocation_refresh = Duration::from_secs(5);
    let app_state = AppState::from_parts(production, store, recorded);
    let app: Router = shared::http::finish(
        sync_products::router(app_state.clone(), gateway.clone(), SyncOptions::default())
            .merge(insights::router(app_state)),
    );
    let get = |path: String, token: &str| {
        Request::get(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    // Each sampled customer's second page starts at their first page's cursor.
    let mut cursors = Vec::new();
    for token in &sample {
        let response = app
            .clone()
            .oneshot(get("/transactions?limit=100".into(), token))
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        cursors.push(body["next"].as_str().unwrap_or_default().to_string());
    }
    let routes: [(&str, PathOf); 4] = [
        (
            "GET /transactions?limit=100 (first page)",
            Box::new(|_| "/transactions?limit=100".to_string()),
        ),
        (
            "GET /transactions?limit=100&next=… (page 2)",
            Box::new(|i| format!("/transactions?limit=100&next={}", cursors[i])),
        ),
        (
            "GET /insights/cashflow?months=12",
            Box::new(|_| "/insights/cashflow?months=12".to_string()),
        ),
        (
            "GET /insights/recurring",
            Box::new(|_| "/insights/recurring".to_string()),
        ),
    ];
    println!(
        "\n{:<42} {:>4} {:>9} {:>9} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "route (in process)",
        "n",
        "p50 ms",
        "p95 ms",
        "db cmds",
        "out p50",
        "out p95",
        "cpu p50",
        "cpu p95",
    );
    for (route, path) in &routes {
        for (i, token) in sample.iter().enumerate().take(2) {
            let response = app.clone().oneshot(get(path(i), token)).await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{route}");
            let _ = response.into_body().collect().await.unwrap();
        }
        recorder.take();
        let mut samples = Vec::with_capacity(requests);
        for r in 0..requests {
            let i = r % sample.len();
            let request = get(path(i), &sample[i]);
            let (t0, cpu0) = (Instant::now(), thread_cpu_time());
            let response = app.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let _ = response.into_body().collect().await.unwrap();
            let (wall, cpu) = (t0.elapsed(), thread_cpu_time() - cpu0);
            let (commands, in_db) = recorder.take();
            assert_eq!(status, StatusCode::OK, "{route}");
            samples.push(Sample {
                wall,
                outside_db: wall.saturating_sub(in_db),
                cpu,
                commands,
            });
        }
        report(route, &samples);
    }
    println!(
        "\n(cpu: the request thread's CPU time; the driver's connection tasks run on the \
         runtime's other threads)"
    );
}
