//! Insights benchmark: loads N generated customers (default 10,000; each with 2 Leafy Bank
//! accounts, 5 external accounts, 3 products and 2 consents) into fresh databases, then sends
//! requests to `GET /insights/summary`, `GET /insights/recommendations` and the two legacy
//! totals through the insights router *in process* (no HTTP socket; JWT authentication
//! included) and prints, per route: p50/p95 latency, database round trips per request (commands
//! seen by the driver's command monitor) and the time spent outside database calls, twice: wall
//! time minus the union of the commands' start-to-reply intervals, and the process's CPU time
//! for the request (routing, token verification, driver encoding, folding, rules, JSON; the
//! benchmark runs on one thread so this is exact). It asserts no timings.
//!
//! Run: `scripts/bench.sh insights` (it starts a throw-away FerretDB and Secrets Manager
//! emulator), or against a running stack:
//! `TEST_MONGODB_URI=mongodb://127.0.0.1:PORT/ AWS_ENDPOINT_URL_SECRETS_MANAGER=http://127.0.0.1:PORT
//! AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
//! cargo run --release -p insights --example bench_insights`.
//! `BENCH_CUSTOMERS` (default 10000) and `BENCH_REQUESTS` (per route, default 10) tune it.
//!
//! On FerretDB 1.24's PostgreSQL backend (the default) each aggregation's first `$match` on the
//! top-level owner is pushed down into SQL, so PostgreSQL returns only the customer's
//! documents. On its SQLite backend (`LOCAL_DB_BACKEND=sqlite`) only a filter that is exactly
//! `{_id: value}` is pushed down: every aggregation reads and decodes the whole collection and
//! latency follows the collection's size (seconds per request at 10,000 customers; keep
//! `BENCH_REQUESTS` small there). On MongoDB the pipelines use the owner indexes.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};
use serde_json::json;
use tower::ServiceExt;

use shared::AppState;
use shared::auth::jwt::{self, Claims};
use shared::auth::tokens;
use shared::db::{ACCOUNTS, CONSENTS, Db, EXTERNAL_ACCOUNTS, EXTERNAL_PRODUCTS, OWNER, USERS};
use shared::measure::{Recorder, Sample, ms, percentile, report, thread_cpu_time};
use shared::secrets::{SecretNeeds, SecretStore};
use shared::testing::{TestContext, mongodb_uri};

const BATCH: usize = 1000;
const AUTHENTICATED_CUSTOMERS: usize = 200;
const WARM_UP: usize = 2;

/// A small deterministic generator (xorshift64*), so every run loads the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn amount(&mut self, low: u64, high: u64) -> f64 {
        (low + self.below(high - low)) as f64 + self.below(100) as f64 / 100.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

struct Customer {
    id: ObjectId,
    name: String,
    accounts: Vec<String>,
    products: Vec<String>,
}

/// One customer's documents, appended to the per-collection batches.
fn generate(rng: &mut Rng, n: usize, out: &mut HashMap<&'static str, Vec<Document>>) -> Customer {
    let id = ObjectId::new();
    let name = format!("bench{n:05}");
    let now = DateTime::now().timestamp_millis();
    out.entry(USERS)
        .or_default()
        .push(doc! {"_id": id, "UserName": &name});
    for kind in ["Checking", "Savings"] {
        out.entry(ACCOUNTS).or_default().push(doc! {
            "AccountBank": "LeafyBank", "AccountType": kind, "AccountStatus": "Active",
            "AccountBalance": rng.amount(0, 5000), "AccountCurrency": "USD",
            "AccountUser": {"UserId": id, "UserName": &name}, OWNER: id,
        });
    }
    let banks = [
        ("Green Bank", "green-bank"),
        ("MongoDB Bank", "mongodb-bank"),
    ];
    let provenance = |rng: &mut Rng, institution: &str| {
        doc! {
            "Institution": institution, "Standard": "bench",
            "ExternalId": ObjectId::new().to_hex(), "ConsentId": ObjectId::new(),
            "LastSyncedAt": DateTime::from_millis(now - rng.below(48) as i64 * 3_600_000),
            "ConnectionStatus": if rng.below(20) == 0 { "Disconnected" } else { "Connected" },
        }
    };
    let mut accounts = Vec::new();
    for _ in 0..5 {
        let (bank, institution) = banks[rng.below(2) as usize];
        let account_id = ObjectId::new();
        // Now and then an overdraft.
        let balance = if rng.below(15) == 0 {
            -rng.amount(1, 500)
        } else {
            rng.amount(0, 20_000)
        };
        let currency = if rng.below(10) == 0 { "EUR" } else { "USD" };
        out.entry(EXTERNAL_ACCOUNTS).or_default().push(doc! {
            "_id": account_id, "AccountBank": bank,
            "AccountType": rng.pick(&["Checking", "Savings"]), "AccountStatus": "Active",
            "AccountBalance": balance, "AccountCurrency": currency,
            "AccountUser": {"UserId": id, "UserName": &name}, OWNER: id,
            "Provenance": provenance(rng, institution),
        });
        // The legacy total is one number: list the accounts in the Leafy Bank currency.
        if currency == "USD" {
            accounts.push(account_id.to_hex());
        }
    }
    let mut products = Vec::new();
    for kind in ["Loan", "Mortgage", "CreditCard"] {
        let (bank, institution) = banks[rng.below(2) as usize];
        let product_id = ObjectId::new();
        let (amount, rate) = match kind {
            "Mortgage" => (
                rng.amount(50_000, 400_000),
                2.0 + rng.below(300) as f64 / 100.0,
            ),
            "Loan" => (
                rng.amount(1000, 30_000),
                3.0 + rng.below(400) as f64 / 100.0,
            ),
            _ => (rng.amount(0, 5000), 15.0 + rng.below(1000) as f64 / 100.0),
        };
        let mut product = doc! {
            "_id": product_id, "ProductBank": bank, "ProductType": kind,
            "ProductStatus": if rng.below(25) == 0 { "Closed" } else { "Active" },
            "ProductAmount": amount, "ProductCurrency": "USD", "ProductInterestRate": rate,
            "ProductCustomer": {"UserId": id, "UserName": &name}, OWNER: id,
            "Provenance": provenance(rng, institution),
        };
        if kind == "Mortgage" {
            product.insert(
                "PropertyDetails",
                doc! {"Address": format!("{n} Main St"), "PropertyValue": amount * (1.0 + rng.below(100) as f64 / 100.0)},
            );
        }
        out.entry(EXTERNAL_PRODUCTS).or_default().push(product);
        products.push(product_id.to_hex());
    }
    for (_, institution) in banks {
        out.entry(CONSENTS).or_default().push(doc! {
            "UserId": id, "UserName": &name, "Institution": institution,
            "Permissions": ["ReadAccountsDetail", "ReadBalances", "ReadProducts"],
            "Status": if rng.below(4) == 0 { "Revoked" } else { "Authorised" },
            "CreatedAt": DateTime::from_millis(now),
            "ExpiresAt": DateTime::from_millis(now + rng.below(90) as i64 * 86_400_000),
            "StatusHistory": [],
        });
    }
    Customer {
        id,
        name,
        accounts,
        products,
    }
}

async fn load(db: &Db, customers: usize) -> Vec<Customer> {
    let mut rng = Rng(0x5eed_1eaf_ba4c);
    let mut generated = Vec::with_capacity(customers);
    let mut pending: HashMap<&'static str, Vec<Document>> = HashMap::new();
    for n in 0..customers {
        generated.push(generate(&mut rng, n, &mut pending));
        if (n + 1) % BATCH == 0 || n + 1 == customers {
            for (collection, docs) in pending.drain() {
                let database = if collection == USERS || collection == ACCOUNTS {
                    &db.leafy_bank
                } else {
                    &db.open_finance
                };
                database
                    .collection::<Document>(collection)
                    .insert_many(docs)
                    .await
                    .expect("insert");
            }
        }
    }
    generated
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let customers: usize = std::env::var("BENCH_CUSTOMERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let requests: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10);

    let ctx = TestContext::new().await;
    let started = Instant::now();
    let generated = load(&ctx.state.db, customers).await;
    println!(
        "loaded {customers} customers ({} external accounts, {} products, {} consents) in {:.1} s",
        customers * 5,
        customers * 3,
        customers * 2,
        started.elapsed().as_secs_f64()
    );

    // Tokens for a sample of the customers, issued and recorded as the token function does.
    let secret = ctx.state.secrets.current().await.unwrap();
    let settings = &ctx.state.settings;
    let mut sample = Vec::new();
    for c in generated
        .iter()
        .step_by((customers / AUTHENTICATED_CUSTOMERS).max(1))
    {
        let mut claims = Claims::new(
            &settings.issuer,
            &c.id.to_hex(),
            &settings.api_audience,
            Duration::from_secs(3600),
            "openfinance",
            "bench",
        );
        claims.user_name = Some(c.name.clone());
        let token = jwt::issue(&secret.keys, &claims).unwrap();
        tokens::record_issued(&ctx.state.db, &token, &claims, Some(c.id))
            .await
            .unwrap();
        sample.push((c, token));
    }

    // The same application on a client whose command monitor records each command.
    let recorder = Recorder::default();
    let mut options = Db::options(&mongodb_uri()).await.unwrap();
    options.command_event_handler = Some(recorder.handler());
    let db = Db::from_options(options, &ctx.open_finance_db, &ctx.leafy_bank_db).unwrap();
    let store = SecretStore::new(
        ctx.sm.clone(),
        ctx.secret_id.clone(),
        Duration::from_secs(300),
        SecretNeeds::Verify,
    );
    store.current().await.unwrap();
    // The production revocation refresh (the tests' settings re-read the list every request).
    let mut production = settings.clone();
    production.revocation_refresh = Duration::from_secs(5);
    let state = AppState::from_parts(production, store, db);
    let app: Router = shared::http::finish(insights::router(state));

    let routes = [
        "GET /insights/summary",
        "GET /insights/recommendations",
        "POST …/calculate-total-balance-for-user/",
        "POST …/calculate-total-debt-for-user/",
    ];
    let request = |route: usize, customer: &Customer, token: &str| -> Request<Body> {
        let bearer = format!("Bearer {token}");
        let post = |path: &str, body: serde_json::Value| {
            Request::post(path)
                .header(header::AUTHORIZATION, &bearer)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap()
        };
        match route {
            0 | 1 => Request::get(if route == 0 {
                "/insights/summary"
            } else {
                "/insights/recommendations"
            })
            .header(header::AUTHORIZATION, &bearer)
            .body(Body::empty())
            .unwrap(),
            2 => post(
                "/api/v1/openfinance/secure/calculate-total-balance-for-user/",
                json!({"user_id": customer.id.to_hex(), "connected_external_accounts": customer.accounts}),
            ),
            _ => post(
                "/api/v1/openfinance/secure/calculate-total-debt-for-user/",
                json!({"user_id": customer.id.to_hex(), "connected_external_products": customer.products}),
            ),
        }
    };

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
    for (r, route) in routes.iter().enumerate() {
        // Warm-up: connections in the pool, code paths, caches.
        for (customer, token) in sample.iter().take(WARM_UP) {
            let response = app
                .clone()
                .oneshot(request(r, customer, token))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{route}");
            let _ = response.into_body().collect().await.unwrap();
        }
        recorder.take();
        let mut samples = Vec::with_capacity(requests);
        for i in 0..requests {
            let (customer, token) = &sample[i % sample.len()];
            let req = request(r, customer, token);
            let (t0, cpu0) = (Instant::now(), thread_cpu_time());
            let response = app.clone().oneshot(req).await.unwrap();
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

    // The pure part alone: folding a real customer's rows and running the rules.
    let (customer, _) = &sample[0];
    let held = shared::insights::holdings(&ctx.state.db, customer.id)
        .await
        .unwrap();
    let consents = shared::insights::authorised_consents(&ctx.state.db, customer.id)
        .await
        .unwrap();
    let rounds = 10_000;
    let t0 = Instant::now();
    for _ in 0..rounds {
        let summary = std::hint::black_box(&held).summary();
        let found = shared::insights::rules::recommend(&shared::insights::rules::RuleInput {
            summary: &summary,
            products: &held.products,
            consents: &consents,
            now: DateTime::now(),
            history: &Default::default(),
        });
        std::hint::black_box(found);
    }
    println!(
        "\nfold + derive + rules alone: {:.1} µs per customer ({} account rows, {} product rows)",
        t0.elapsed().as_secs_f64() * 1e6 / rounds as f64,
        held.internal.len() + held.external.len(),
        held.products.len(),
    );
    let mut by_name: Vec<_> = recorder.by_name.lock().unwrap().drain().collect();
    by_name.sort();
    println!("\ndatabase commands, whole run (warm-up included):");
    for (name, mut durations) in by_name {
        durations.sort();
        println!(
            "  {name:<16} {:>6} x  p50 {:>9.2} ms  p95 {:>9.2} ms",
            durations.len(),
            ms(percentile(&durations, 0.5)),
            ms(percentile(&durations, 0.95)),
        );
    }

    // Token verification alone (signature and claims; no database), part of every request.
    let token = &sample[0].1;
    let t0 = Instant::now();
    for _ in 0..1000 {
        std::hint::black_box(
            jwt::verify(
                &secret.keys,
                token,
                &settings.issuer,
                &settings.api_audience,
            )
            .unwrap(),
        );
    }
    println!(
        "JWT (ES256) verification alone: {:.1} µs per request",
        t0.elapsed().as_secs_f64() * 1e6 / 1000.0
    );
    println!(
        "db cmds: database commands per request (JWT authentication adds, at most every 5 s, \
         a read of the revocation list and a write of the token uses noted since the last \
         one; on a slow database most requests include them). \
         out: wall time \
         minus the time covered by database commands (ms; includes waiting for a CPU the \
         database server holds). cpu: this process's CPU time for the request (ms: routing, \
         JWT verification, driver encode/decode, folding, rules, JSON)."
    );
}
