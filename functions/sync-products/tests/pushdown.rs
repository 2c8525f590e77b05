//! Every query a request path sends is narrowed by the database before it reads documents:
//! the whole HTTP surface (token endpoint, both banks' APIs, consents, connect, products,
//! sync on demand, scheduled and fanned out through the sync queue, insights, every legacy
//! route) is walked once on the real local stack, every command the service sent is recorded
//! by command monitoring, and each query in them is explained. FerretDB must say `filterPushdown: true` (the filter went
//! into PostgreSQL's SQL); MongoDB's plan must hold no collection scan.

use mongodb::bson::{Document, doc, oid::ObjectId};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use shared::sync::{SyncOptions, Trigger};
use shared::testing::{narrowed_by_server, queries_of};
use testkit::{FRIDA, FRIDA_ID, Stack, ids_in};

const ALL: &[&str] = &["ReadAccountsDetail", "ReadBalances", "ReadProducts"];
const LEGACY: &str = "/api/v1/openfinance/secure";

/// Checkpoints after every consent, so that the scheduled run's checkpoint writes are walked.
fn options() -> SyncOptions {
    SyncOptions {
        checkpoint_every: 1,
        ..testkit::sync_options()
    }
}

async fn stack() -> Stack {
    Stack::with(|state, gateway| {
        sync_products::router(state.clone(), gateway, options()).merge(insights::router(state))
    })
    .await
}

fn ok(reply: &testkit::Reply, what: &str) {
    assert!(
        reply.status.is_success(),
        "{what}: {} {}",
        reply.status,
        reply.body
    );
}

/// The requests of a customer's whole journey, and of the OAuth client.
async fn walk_every_route(s: &Stack) {
    // The OAuth client: client_credentials with HTTP Basic, then RFC 7009 revocation.
    let form = |body: &str| {
        s.http
            .post(format!("{}/oauth/token", s.base))
            .basic_auth(&s.ctx.client_id, Some(&s.ctx.client_secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_string())
    };
    let issued: Value = form("grant_type=client_credentials")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_token = issued["access_token"].as_str().expect("a client token");
    let revoked = s
        .http
        .post(format!("{}/oauth/revoke", s.base))
        .basic_auth(&s.ctx.client_id, Some(&s.ctx.client_secret))
        .form(&[("token", client_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::OK);
    ok(
        &s.call(Method::GET, "/.well-known/jwks.json", None, None)
            .await,
        "jwks",
    );

    // The demo login (a JWT) and the legacy opaque token of the sample data.
    let login = s
        .call(
            Method::GET,
            "/api/v1/openfinance/public/get-authorization?user_identifier=fridaklo",
            None,
            None,
        )
        .await;
    ok(&login, "login");
    let jwt = login.body["BearerToken"].as_str().unwrap().to_string();
    for token in [jwt.as_str(), FRIDA] {
        let reply = s
            .call(
                Method::POST,
                &format!("{LEGACY}/validate-token"),
                Some(token),
                None,
            )
            .await;
        ok(&reply, "validate-token");
    }

    // Consents (the banks' authorisation and APIs are called through the same stack),
    // connection, products, on-demand sync.
    let green = s.authorised_consent(&jwt, "green-bank", ALL).await;
    let mdb = s.authorised_consent(&jwt, "mongodb-bank", ALL).await;
    ok(&s.connect(&jwt, &green).await, "connect");
    ok(&s.connect(&jwt, &mdb).await, "connect");
    for path in [
        "/consents".to_string(),
        format!("/consents/{green}"),
        "/accounts".into(),
        "/accounts?institution=green-bank".into(),
        "/products".into(),
        "/products?institution=mongodb-bank&type=Mortgage".into(),
        "/insights/summary".into(),
        "/insights/recommendations".into(),
    ] {
        ok(&s.call(Method::GET, &path, Some(&jwt), None).await, &path);
    }
    ok(
        &s.call(Method::POST, "/products/sync", Some(&jwt), None)
            .await,
        "sync",
    );

    // The legacy routes, with the opaque token the Leafy Bank UI holds.
    let q = "user_identifier=fridaklo";
    for path in [
        format!("{LEGACY}/fetch-external-accounts-for-user/?{q}"),
        format!(
            "{LEGACY}/fetch-external-accounts-for-user-and-institution/?{q}&institution_name=Green%20Bank"
        ),
        format!("{LEGACY}/fetch-external-products-for-user/?{q}"),
        format!(
            "{LEGACY}/fetch-external-products-for-user-and-institution/?{q}&institution_name=MongoDB%20Bank"
        ),
    ] {
        ok(&s.call(Method::GET, &path, Some(FRIDA), None).await, &path);
    }
    let listed = |path: &'static str, field: &'static str| {
        let jwt = jwt.clone();
        async move {
            ids_in(
                &s.call(Method::GET, path, Some(&jwt), None).await.body,
                field,
            )
        }
    };
    let accounts = listed("/accounts", "accounts").await;
    let products = listed("/products", "products").await;
    assert!(!accounts.is_empty() && !products.is_empty());
    for (path, body) in [
        (
            "calculate-total-balance-for-user/",
            json!({"user_id": FRIDA_ID, "connected_external_accounts": accounts}),
        ),
        (
            "calculate-total-debt-for-user/",
            json!({"user_id": FRIDA_ID, "connected_external_products": products}),
        ),
        (
            "retrieve-external-account-for-user",
            json!({"account_bank": "Green Bank", "user_name": "fridaklo", "user_id": FRIDA_ID}),
        ),
        (
            "retrieve-external-product-for-user",
            json!({"product_bank": "MongoDB Bank", "user_name": "fridaklo", "user_id": FRIDA_ID}),
        ),
    ] {
        let reply = s
            .call(
                Method::POST,
                &format!("{LEGACY}/{path}"),
                Some(FRIDA),
                Some(body),
            )
            .await;
        ok(&reply, path);
    }

    // The fan-out: every due consent dispatched to a real queue, the worker's reads and writes
    // for each message, the run finished from its outcomes.
    let (queue, _dead_letters) = testkit::sync_queue(3).await;
    let report = shared::fanout::dispatch(&s.ctx.state, &queue, &options())
        .await
        .unwrap();
    assert!(report.dispatched > 0, "nothing was due");
    while sync_products::poll_once(&s.ctx.state, &s.gateway, &options(), &queue, 3, 0)
        .await
        .unwrap()
        .0
        > 0
    {}
    assert!(
        shared::fanout::finish_run(&s.ctx.state, report.run_id)
            .await
            .unwrap()
    );

    // The scheduled sync, then a revocation (which disconnects the consent's data).
    shared::sync::run(
        &s.ctx.state,
        &s.gateway,
        Trigger::Scheduled,
        None,
        &options(),
    )
    .await
    .unwrap();
    let reply = s
        .call(
            Method::DELETE,
            &format!("/consents/{green}"),
            Some(&jwt),
            None,
        )
        .await;
    ok(&reply, "revoke");
}

/// FerretDB's SQLite backend (`LOCAL_DB_BACKEND=sqlite`, an option of the scripts) pushes down
/// only `{_id: …}`: there this property does not hold, by design, and is not checked.
fn on_sqlite() -> bool {
    let sqlite = std::env::var("LOCAL_DB_BACKEND").is_ok_and(|b| b == "sqlite");
    if sqlite {
        eprintln!("not checked: FerretDB's SQLite backend pushes down only _id filters");
    }
    sqlite
}

#[tokio::test]
async fn every_query_on_a_request_path_is_pushed_down() {
    if on_sqlite() {
        return;
    }
    let s = stack().await;
    walk_every_route(&s).await;
    let commands = s.ctx.commands.take();
    let queries: usize = commands.iter().map(|(_, c)| queries_of(c).len()).sum();
    // The walk reads and writes a great deal: if this count collapsed, the log is not being
    // recorded and the assertion below would prove nothing.
    assert!(queries > 100, "only {queries} queries recorded");
    let failures = s.ctx.queries_not_pushed_down(&commands).await;
    assert!(
        failures.is_empty(),
        "{} of {queries} queries read the whole collection:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn a_query_on_a_nested_owner_is_reported() {
    // The check can fail: the same customer's accounts looked up by the nested reference
    // field, as the service did before it had a top-level owner.
    if on_sqlite() {
        return;
    }
    let s = stack().await;
    let frida = ObjectId::parse_str(FRIDA_ID).unwrap();
    let accounts = s
        .ctx
        .state
        .db
        .open_finance
        .collection::<Document>("external_accounts");
    s.ctx.commands.take();
    accounts
        .find_one(doc! {"AccountUser.UserId": frida})
        .await
        .unwrap();
    accounts
        .update_many(doc! {"UserId": frida}, doc! {"$set": {"Seen": true}})
        .await
        .unwrap();
    let commands = s.ctx.commands.take();
    let failures = s.ctx.queries_not_pushed_down(&commands).await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("AccountUser.UserId"), "{failures:?}");
}

#[test]
fn every_statement_of_a_write_is_a_query() {
    let update = doc! {"update": "c", "updates": [
        {"q": {"_id": 1}, "u": {"$set": {"a": 1}}},
        {"q": {"_id": 2}, "u": {"$set": {"a": 1}}},
    ]};
    assert_eq!(
        queries_of(&update),
        [
            doc! {"find": "c", "filter": {"_id": 1}},
            doc! {"find": "c", "filter": {"_id": 2}}
        ]
    );
    let delete = doc! {"delete": "c", "deletes": [{"q": {"a": 1}, "limit": 0}]};
    assert_eq!(
        queries_of(&delete),
        [doc! {"find": "c", "filter": {"a": 1}}]
    );
    let fam = doc! {"findAndModify": "c", "query": {"a": 1}, "update": {"$set": {"b": 1}}};
    assert_eq!(queries_of(&fam), [doc! {"find": "c", "filter": {"a": 1}}]);
    // A find without a filter is a query too (of everything); an insert is none.
    assert_eq!(
        queries_of(&doc! {"find": "c"}),
        [doc! {"find": "c", "filter": {}}]
    );
    assert!(queries_of(&doc! {"insert": "c", "documents": [{"a": 1}]}).is_empty());
}

#[test]
fn the_verdict_reads_each_servers_explain() {
    let ferret = |pushed: bool| {
        doc! {"serverInfo": {"ferretdbVersion": "v1.24.2"}, "filterPushdown": pushed}
    };
    assert!(narrowed_by_server(&ferret(true)));
    assert!(!narrowed_by_server(&ferret(false)));
    let mongo = |stage: &str| {
        doc! {"serverInfo": {"version": "8.0"}, "queryPlanner": {"winningPlan": {"stage": "FETCH", "inputStage": {"stage": stage}}}}
    };
    assert!(narrowed_by_server(&mongo("IXSCAN")));
    assert!(!narrowed_by_server(&mongo("COLLSCAN")));
}
