//! The sync against the real stack: token server and emulated banks over HTTP on a local port,
//! FerretDB, the Secrets Manager emulator. The scheduled entry point is fed the EventBridge
//! event of `events/sync-scheduled.json`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use shared::sync::{self, SyncOptions, Trigger};
use testkit::{CLAU, FRIDA, FRIDA_ID, GRACE, Stack};

const ALL: &[&str] = &["ReadAccountsDetail", "ReadBalances", "ReadProducts"];

fn options() -> SyncOptions {
    testkit::sync_options()
}

async fn stack() -> Stack {
    Stack::with(|state, gateway| sync_products::router(state, gateway, options())).await
}

fn scheduled_event() -> Value {
    let path = shared::testing::sample_data_dir().join("../events/sync-scheduled.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

async fn scheduled(s: &Stack, deadline: Option<Instant>) -> Value {
    sync_products::handle_scheduled(
        &s.ctx.state,
        &s.gateway,
        &options(),
        &scheduled_event(),
        deadline,
    )
    .await
    .unwrap()
}

async fn run_record(s: &Stack, id: &str) -> Document {
    s.ctx
        .state
        .db
        .open_finance
        .collection::<Document>("sync_runs")
        .find_one(doc! {"_id": ObjectId::parse_str(id).unwrap()})
        .await
        .unwrap()
        .expect("sync_runs document")
}

/// The consents a run's report lists, in the order it lists them.
fn consent_ids(report: &Value) -> Vec<&str> {
    report["consents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["consentId"].as_str().unwrap())
        .collect()
}

fn keys(docs: &[Document]) -> HashSet<(String, String)> {
    docs.iter()
        .map(|d| {
            let p = d.get_document("Provenance").unwrap();
            (
                p.get_str("Institution").unwrap().to_string(),
                p.get_str("ExternalId").unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn scheduled_run_isolates_a_failing_bank_and_reruns_create_no_duplicates() {
    let s = stack().await;
    let ids = s.consents_for_everyone(ALL).await;
    s.set_fault("mongodb-bank", doc! {"Status": 503}).await;

    let report = scheduled(&s, None).await;
    assert_eq!(report["status"], "PartiallySucceeded", "{report}");
    assert_eq!(report["counts"]["Consents"], ids.len());
    for outcome in report["consents"].as_array().unwrap() {
        if outcome["institution"] == "mongodb-bank" {
            assert_eq!(outcome["status"], "Failed");
            assert_eq!(outcome["attempts"], 2, "a 5xx is retried once");
            assert!(outcome["error"].as_str().unwrap().contains("503"));
        } else {
            assert_eq!(outcome["status"], "Synced", "{outcome}");
            assert!(outcome["accounts"].as_u64().unwrap() > 0);
        }
    }
    let record = run_record(&s, report["runId"].as_str().unwrap()).await;
    assert_eq!(record.get_str("Trigger").unwrap(), "Scheduled");
    assert_eq!(record.get_str("Status").unwrap(), "PartiallySucceeded");
    assert!(record.get_datetime("FinishedAt").is_ok());
    assert_eq!(record.get_array("Outcomes").unwrap().len(), ids.len());

    // A client error is not retried.
    s.set_fault("mongodb-bank", doc! {"Status": 404}).await;
    let report = scheduled(&s, None).await;
    let failed: Vec<&Value> = report["consents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["status"] == "Failed")
        .collect();
    assert!(
        !failed.is_empty() && failed.iter().all(|o| o["attempts"] == 1),
        "{report}"
    );

    s.clear_faults().await;
    assert_eq!(scheduled(&s, None).await["status"], "Succeeded");
    let (accounts, products) = (
        s.snapshot("external_accounts").await,
        s.snapshot("external_products").await,
    );
    assert_eq!(keys(&accounts).len(), accounts.len(), "duplicate accounts");
    assert_eq!(keys(&products).len(), products.len(), "duplicate products");
    assert_eq!(scheduled(&s, None).await["status"], "Succeeded");
    assert_eq!(s.snapshot("external_accounts").await, accounts);
    assert_eq!(s.snapshot("external_products").await, products);

    let not_scheduled = serde_json::json!({"detail-type": "Something", "source": "aws.s3"});
    let refused =
        sync_products::handle_scheduled(&s.ctx.state, &s.gateway, &options(), &not_scheduled, None)
            .await;
    assert!(refused.is_err());
}

#[tokio::test]
async fn a_tiny_deadline_stops_cleanly_and_the_next_run_resumes() {
    let s = stack().await;
    let ids = s.consents_for_everyone(ALL).await;
    // Each bank call takes 400 ms, so the first consent outlives the one-second deadline and
    // no second one may start. One at a time, to make that exact.
    s.set_fault("green-bank", doc! {"LatencyMs": 400}).await;
    let mut one_at_a_time = options();
    one_at_a_time.concurrency = 1;
    let deadline = Instant::now() + Duration::from_secs(1);
    let first = sync::run(
        &s.ctx.state,
        &s.gateway,
        Trigger::Scheduled,
        Some(deadline),
        &one_at_a_time,
    )
    .await
    .unwrap();
    assert!(!first.complete);
    assert_eq!(first.outcomes.len(), 1);
    assert_eq!(first.outcomes[0].status, "Synced");
    assert_eq!(
        first.resume_after.map(|id| id.to_hex()),
        Some(ids[0].clone())
    );
    let record = run_record(&s, &first.run_id.to_hex()).await;
    assert!(!record.get_bool("Complete").unwrap());
    assert_eq!(
        record.get_object_id("ResumeAfter").unwrap().to_hex(),
        ids[0]
    );

    s.clear_faults().await;
    let second = scheduled(&s, None).await;
    assert_eq!(second["complete"], true);
    let resumed = consent_ids(&second);
    assert_eq!(resumed.len(), ids.len() - 1);
    assert!(
        !resumed.contains(&ids[0].as_str()),
        "the resumed run started over"
    );
    // The cycle complete, the next run covers everyone again.
    assert_eq!(
        scheduled(&s, None).await["consents"]
            .as_array()
            .unwrap()
            .len(),
        ids.len()
    );
}

#[tokio::test]
async fn a_run_killed_before_it_finished_is_resumed_after_its_last_checkpoint() {
    let s = stack().await;
    let ids = s.consents_for_everyone(ALL).await;
    let mut checkpointing = options();
    checkpointing.checkpoint_every = 2;
    let full = sync::run(
        &s.ctx.state,
        &s.gateway,
        Trigger::Scheduled,
        None,
        &checkpointing,
    )
    .await
    .unwrap();
    assert!(full.complete);
    // Checkpoints as it went; the finished record says every consent finished, whatever
    // order they finished in.
    let record = run_record(&s, &full.run_id.to_hex()).await;
    assert_eq!(record.get_object_id("Progress").unwrap().to_hex(), ids[7]);

    // A later run killed (Lambda timeout) after its checkpoint at the third consent: no
    // `FinishedAt`, no `ResumeAfter`, only its progress.
    let runs = s
        .ctx
        .state
        .db
        .open_finance
        .collection::<Document>("sync_runs");
    runs.insert_one(doc! {
        "Trigger": "Scheduled", "StartedAt": DateTime::now(), "Status": "Running",
        "Progress": ObjectId::parse_str(&ids[2]).unwrap(),
    })
    .await
    .unwrap();
    let next = scheduled(&s, None).await;
    assert_eq!(next["complete"], true, "{next}");
    let mut synced = consent_ids(&next);
    let mut expected: Vec<&str> = ids[3..].iter().map(String::as_str).collect();
    synced.sort();
    expected.sort();
    assert_eq!(synced, expected, "resumed after the checkpoint");
    let record = run_record(&s, next["runId"].as_str().unwrap()).await;
    assert_eq!(
        record.get_object_id("ResumedAfter").unwrap().to_hex(),
        ids[2]
    );
}

#[tokio::test]
async fn a_product_the_bank_no_longer_returns_is_closed_not_deleted() {
    let s = stack().await;
    s.authorised_consent(FRIDA, "green-bank", ALL).await;
    let frida = ObjectId::parse_str(FRIDA_ID).unwrap();
    let products = s
        .ctx
        .state
        .db
        .open_finance
        .collection::<Document>("external_products");
    products.insert_one(doc! {
        "ProductId": "5555", "ProductBank": "Green Bank", "ProductStatus": "Active", "ProductType": "Loan",
        "ProductAmount": 1000.0, "ProductCurrency": "USD",
        "ProductCustomer": {"UserName": "fridaklo", "UserId": frida}, "UserId": frida,
        "Provenance": {"Institution": "green-bank", "ExternalId": "GB-PRD-5555", "ConnectionStatus": "Connected"},
    }).await.unwrap();
    // An account the bank no longer returns, likewise.
    let accounts = s
        .ctx
        .state
        .db
        .open_finance
        .collection::<Document>("external_accounts");
    accounts.insert_one(doc! {
        "AccountNumber": "999", "AccountBank": "Green Bank", "AccountStatus": "Active", "AccountType": "Savings",
        "AccountBalance": 10.0, "AccountCurrency": "USD",
        "AccountUser": {"UserName": "fridaklo", "UserId": frida}, "UserId": frida,
        "Provenance": {"Institution": "green-bank", "ExternalId": "GB-ACC-9999", "ConnectionStatus": "Connected"},
    }).await.unwrap();
    let reply = s
        .call(Method::POST, "/products/sync", Some(FRIDA), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["counts"]["ClosedProducts"], 1, "{}", reply.body);
    let closed_account = accounts
        .find_one(doc! {"Provenance.ExternalId": "GB-ACC-9999"})
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(closed_account.get_str("AccountStatus").unwrap(), "Closed");
    let open_accounts = accounts
        .count_documents(doc! {"AccountUser.UserId": frida, "Provenance.Institution": "green-bank", "AccountStatus": {"$ne": "Closed"}})
        .await
        .unwrap();
    assert!(open_accounts > 0, "the accounts the bank returns stay open");
    let gone = products
        .find_one(doc! {"Provenance.ExternalId": "GB-PRD-5555"})
        .await
        .unwrap()
        .expect("kept");
    assert_eq!(gone.get_str("ProductStatus").unwrap(), "Closed");
    let card = products
        .find_one(doc! {"Provenance.ExternalId": "GB-PRD-7001"})
        .await
        .unwrap()
        .expect("credit card synced");
    assert_eq!(card.get_str("ProductType").unwrap(), "CreditCard");
    assert_eq!(card.get_f64("ProductAmount").unwrap(), 1250.4);
}

#[tokio::test]
async fn an_expired_consent_becomes_expired_and_is_skipped() {
    let s = stack().await;
    let ids = s.consents_for_everyone(ALL).await;
    // Synced once while live, so there is data under the consent that then expires.
    assert_eq!(scheduled(&s, None).await["status"], "Succeeded");
    let past = DateTime::from_millis(DateTime::now().timestamp_millis() - 1000);
    let consents = s
        .ctx
        .state
        .db
        .open_finance
        .collection::<Document>("consents");
    consents
        .update_one(
            doc! {"_id": ObjectId::parse_str(&ids[3]).unwrap()},
            doc! {"$set": {"ExpiresAt": past}},
        )
        .await
        .unwrap();
    let report = scheduled(&s, None).await;
    assert_eq!(report["status"], "Succeeded");
    let outcome = report["consents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["consentId"] == ids[3].as_str())
        .unwrap();
    assert_eq!(outcome["status"], "Expired");
    assert_eq!(outcome["accounts"], 0);
    let stored = consents
        .find_one(doc! {"_id": ObjectId::parse_str(&ids[3]).unwrap()})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.get_str("Status").unwrap(), "Expired");
    // What was fetched under it is kept but disconnected, so insights no longer count it.
    let expired_id = ObjectId::parse_str(&ids[3]).unwrap();
    for name in ["external_accounts", "external_products"] {
        let docs: Vec<Document> = s
            .ctx
            .state
            .db
            .open_finance
            .collection::<Document>(name)
            .find(doc! {"Provenance.ConsentId": expired_id})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert!(
            !docs.is_empty(),
            "{name}: nothing was synced under the consent"
        );
        for d in &docs {
            assert_eq!(
                d.get_document("Provenance")
                    .unwrap()
                    .get_str("ConnectionStatus")
                    .unwrap(),
                "Disconnected",
                "{name}"
            );
        }
    }
}

#[tokio::test]
async fn concurrent_runs_neither_duplicate_nor_replay_refresh_tokens() {
    let s = stack().await;
    let ids = s.consents_for_everyone(ALL).await;
    // Every access token expired: each sync must refresh, which only one worker may do.
    s.ctx
        .state
        .db
        .open_finance
        .collection::<Document>("consents")
        .update_many(
            doc! {},
            doc! {"$set": {"Credentials.AccessTokenExpiresAt": DateTime::from_millis(0)}},
        )
        .await
        .unwrap();
    let opts = options();
    let (a, b) = tokio::join!(
        sync::run(&s.ctx.state, &s.gateway, Trigger::Scheduled, None, &opts),
        sync::run(&s.ctx.state, &s.gateway, Trigger::Scheduled, None, &opts),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.counts.failed + b.counts.failed,
        0,
        "{:?} {:?}",
        a.outcomes,
        b.outcomes
    );
    assert!(
        a.counts.synced + b.counts.synced >= ids.len(),
        "every consent synced by one of the runs"
    );
    let (accounts, products) = (
        s.snapshot("external_accounts").await,
        s.snapshot("external_products").await,
    );
    assert_eq!(keys(&accounts).len(), accounts.len());
    assert_eq!(keys(&products).len(), products.len());
    // No refresh token was replayed: every consent still refreshes and syncs.
    s.ctx
        .state
        .db
        .open_finance
        .collection::<Document>("consents")
        .update_many(
            doc! {},
            doc! {"$set": {"Credentials.AccessTokenExpiresAt": DateTime::from_millis(0)}},
        )
        .await
        .unwrap();
    let after = sync::run(&s.ctx.state, &s.gateway, Trigger::Scheduled, None, &opts)
        .await
        .unwrap();
    assert_eq!(
        (after.status.as_str(), after.counts.synced),
        ("Succeeded", ids.len()),
        "{:?}",
        after.outcomes
    );
}

#[tokio::test]
async fn on_demand_sync_and_products_are_the_callers_only() {
    let s = stack().await;
    let frida_green = s.authorised_consent(FRIDA, "green-bank", ALL).await;
    s.authorised_consent(FRIDA, "mongodb-bank", ALL).await;
    let grace = s.authorised_consent(GRACE, "green-bank", ALL).await;

    let mine = s
        .call(Method::POST, "/products/sync", Some(GRACE), None)
        .await;
    assert_eq!(mine.status, StatusCode::OK);
    let synced: Vec<&str> = mine.body["consents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["consentId"].as_str().unwrap())
        .collect();
    assert_eq!(
        synced,
        [grace.as_str()],
        "grace's sync touched someone else's consent"
    );

    assert_eq!(
        s.call(Method::POST, "/products/sync", Some(FRIDA), None)
            .await
            .body["status"],
        "Succeeded"
    );
    let all = s.call(Method::GET, "/products", Some(FRIDA), None).await;
    let products = all.body["products"].as_array().unwrap();
    assert!(
        products
            .iter()
            .all(|p| p["ProductCustomer"]["UserName"] == "fridaklo")
    );
    let mortgages = s
        .call(
            Method::GET,
            "/products?type=Mortgage&institution=mongodb-bank",
            Some(FRIDA),
            None,
        )
        .await;
    let mortgages = mortgages.body["products"].as_array().unwrap();
    assert!(!mortgages.is_empty());
    assert!(
        mortgages
            .iter()
            .all(|p| p["ProductType"] == "Mortgage" && p["ProductBank"] == "MongoDB Bank")
    );
    let graces = s.call(Method::GET, "/products", Some(GRACE), None).await;
    assert!(
        graces.body["products"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["ProductCustomer"]["UserName"] == "gracehop")
    );

    for bad in [
        "/products?type=Car",
        "/products?institution=nowhere",
        "/products?user=65a546ae4a8f64e8f88fb89e",
        "/products?type=",
    ] {
        let reply = s.call(Method::GET, bad, Some(FRIDA), None).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{bad}: {}",
            reply.body
        );
    }
    assert_eq!(
        s.call(Method::POST, "/products/sync", None, None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );

    // Legacy routes: the caller's own products only.
    let legacy = s.call(Method::GET, "/api/v1/openfinance/secure/fetch-external-products-for-user-and-institution/?user_identifier=fridaklo&institution_name=MongoDB%20Bank", Some(FRIDA), None).await;
    assert_eq!(legacy.status, StatusCode::OK, "{}", legacy.body);
    assert!(!legacy.body["products"].as_array().unwrap().is_empty());
    let other = s
        .call(
            Method::GET,
            "/api/v1/openfinance/secure/fetch-external-products-for-user/?user_identifier=fridaklo",
            Some(GRACE),
            None,
        )
        .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    let retrieved = s
        .call(Method::POST, "/api/v1/openfinance/secure/retrieve-external-product-for-user", Some(FRIDA),
            Some(serde_json::json!({"product_bank": "Green Bank", "user_name": "fridaklo", "user_id": FRIDA_ID})))
        .await;
    assert_eq!(retrieved.status, StatusCode::OK, "{}", retrieved.body);
    assert!(
        products
            .iter()
            .any(|p| p["_id"] == retrieved.body["product_id"])
    );
    let bad = s
        .call(Method::POST, "/api/v1/openfinance/secure/retrieve-external-product-for-user", Some(GRACE),
            Some(serde_json::json!({"product_bank": "Green Bank", "user_name": "fridaklo", "user_id": FRIDA_ID})))
        .await;
    assert_eq!(bad.status, StatusCode::FORBIDDEN);
    let _ = frida_green;
    let runs: Vec<Document> = s
        .ctx
        .state
        .db
        .open_finance
        .collection::<Document>("sync_runs")
        .find(doc! {"Trigger": "OnDemand"})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(runs.len() >= 2);
}

#[tokio::test]
async fn a_mongodb_bank_card_account_is_synced_as_a_credit_card() {
    let s = stack().await;
    s.authorised_consent(CLAU, "mongodb-bank", ALL).await;
    let reply = s
        .call(Method::POST, "/products/sync", Some(CLAU), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let cards = s
        .call(
            Method::GET,
            "/products?type=CreditCard&institution=mongodb-bank",
            Some(CLAU),
            None,
        )
        .await;
    assert_eq!(cards.status, StatusCode::OK, "{}", cards.body);
    let list = cards.body["products"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{}", cards.body);
    let card = &list[0];
    // The interim booked balance, -612.75, is what is owed.
    assert_eq!(card["ProductAmount"], 612.75);
    assert_eq!(card["ProductInterestRate"], 19.9);
    assert_eq!(card["Provenance"]["ExternalId"], "mdb-card-4417");
    assert_eq!(card["ProductCustomer"]["UserName"], "claumon");
}
