//! The insights function over HTTP (its router, in process, with the token router for logins)
//! against the real local stack: FerretDB and the moto Secrets Manager emulator, started by
//! scripts/test.sh. Expected figures are computed here from the fixture files, not typed in.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use http_body_util::BodyExt;
use mongodb::bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use serde_json::{Value, json};
use tower::ServiceExt;

use shared::AppState;
use shared::db::{
    ACCOUNTS, CONSENTS, EXTERNAL_ACCOUNTS, EXTERNAL_PRODUCTS, EXTERNAL_TRANSACTIONS, OWNER,
};
use shared::fx::RateTable;
use shared::seed::read_extended_json;
use shared::testing::{TestContext, sample_data_dir};

const FRIDA_ID: &str = "65a546ae4a8f64e8f88fb89e";
const GRACE_ID: &str = "66fe219d625d93a100528224";
const FRIDA_LEGACY_TOKEN: &str = "f4f4184e9669f8a4008243ee00a04482349d462c69ad1d2b4ac0814923eddab0";
const BALANCE: &str = "/api/v1/openfinance/secure/calculate-total-balance-for-user/";
const DEBT: &str = "/api/v1/openfinance/secure/calculate-total-debt-for-user/";
const SUMMARY: &str = "/insights/summary";
const RECOMMENDATIONS: &str = "/insights/recommendations";
const CASHFLOW: &str = "/insights/cashflow";
const RECURRING: &str = "/insights/recurring";
const HOUR_MS: i64 = 60 * 60 * 1000;
const DAY_MS: i64 = 24 * HOUR_MS;

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

/// The insights routes plus the token routes (for the demo login and client tokens).
fn app_on(state: &AppState) -> Router {
    shared::http::finish(insights::router(state.clone()).merge(token::router(state.clone())))
}

fn app(ctx: &TestContext) -> Router {
    app_on(&ctx.state)
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Reply {
        status,
        headers,
        body,
    }
}

async fn get(app: &Router, path: &str, bearer: Option<&str>) -> Reply {
    let mut req = Request::get(path);
    if let Some(t) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    send(app, req.body(Body::empty()).unwrap()).await
}

async fn post_json(app: &Router, path: &str, bearer: Option<&str>, body: &Value) -> Reply {
    post_raw(app, path, bearer, "application/json", body.to_string()).await
}

async fn post_raw(
    app: &Router,
    path: &str,
    bearer: Option<&str>,
    content_type: &str,
    body: String,
) -> Reply {
    let mut req = Request::post(path).header(header::CONTENT_TYPE, content_type);
    if let Some(t) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    send(app, req.body(Body::from(body)).unwrap()).await
}

/// A JWT for `user` from the demo login.
async fn login(app: &Router, user: &str) -> String {
    let reply = get(
        app,
        &format!("/api/v1/openfinance/public/get-authorization?user_identifier={user}"),
        None,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["BearerToken"].as_str().unwrap().to_string()
}

fn oid(hex: &str) -> ObjectId {
    ObjectId::parse_str(hex).unwrap()
}

fn fixture(name: &str) -> Vec<Document> {
    read_extended_json(&sample_data_dir().join(format!("{name}.json"))).unwrap()
}

fn num(d: &Document, key: &str) -> f64 {
    match d.get(key) {
        Some(Bson::Int32(x)) => f64::from(*x),
        Some(Bson::Int64(x)) => *x as f64,
        Some(Bson::Double(x)) => *x,
        other => panic!("{key} is not a number: {other:?}"),
    }
}

fn owner(d: &Document, field: &str) -> ObjectId {
    d.get_document(field)
        .unwrap()
        .get_object_id("UserId")
        .unwrap()
}

/// The fixture documents of one user.
struct Fixtures {
    internal: Vec<Document>,
    accounts: Vec<Document>,
    products: Vec<Document>,
}

fn fixtures_of(user: &str) -> Fixtures {
    let user = oid(user);
    Fixtures {
        internal: fixture("leafy_bank.accounts")
            .into_iter()
            .filter(|d| owner(d, "AccountUser") == user)
            .collect(),
        accounts: fixture("open_finance.external_accounts")
            .into_iter()
            .filter(|d| owner(d, "AccountUser") == user)
            .collect(),
        products: fixture("open_finance.external_products")
            .into_iter()
            .filter(|d| owner(d, "ProductCustomer") == user)
            .collect(),
    }
}

fn ids(docs: &[Document]) -> Vec<String> {
    docs.iter()
        .map(|d| d.get_object_id("_id").unwrap().to_hex())
        .collect()
}

fn sum(docs: &[Document], key: &str) -> f64 {
    docs.iter().map(|d| num(d, key)).sum()
}

fn assert_close(actual: &Value, expected: f64, what: &str) {
    let a = actual
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: {actual} is not a number"));
    assert!(
        (a - expected).abs() <= 0.005 + 1e-9,
        "{what}: got {a}, expected {expected}"
    );
}

async fn insert(ctx: &TestContext, db: &str, collection: &str, docs: Vec<Document>) {
    let database = if db == "leafy_bank" {
        &ctx.state.db.leafy_bank
    } else {
        &ctx.state.db.open_finance
    };
    database
        .collection::<Document>(collection)
        .insert_many(docs)
        .await
        .unwrap();
}

/// A new Leafy Bank customer (who can log in) with nothing anywhere yet.
async fn new_customer(ctx: &TestContext, name: &str) -> ObjectId {
    let id = ObjectId::new();
    insert(
        ctx,
        "leafy_bank",
        "users",
        vec![doc! {"_id": id, "UserName": name}],
    )
    .await;
    id
}

fn provenance(institution: &str, synced_ms_ago: Option<i64>, status: &str) -> Document {
    let mut p = doc! {
        "Institution": institution,
        "Standard": "test",
        "ExternalId": ObjectId::new().to_hex(),
        "ConsentId": ObjectId::new(),
        "ConnectionStatus": status,
    };
    if let Some(ago) = synced_ms_ago {
        p.insert(
            "LastSyncedAt",
            DateTime::from_millis(DateTime::now().timestamp_millis() - ago),
        );
    }
    p
}

fn bank_id(bank: &str) -> &'static str {
    if bank == "Green Bank" {
        "green-bank"
    } else {
        "mongodb-bank"
    }
}

fn external_account(
    user: ObjectId,
    bank: &str,
    kind: &str,
    balance: f64,
    currency: &str,
    synced_ms_ago: Option<i64>,
) -> Document {
    doc! {
        "_id": ObjectId::new(),
        "AccountBank": bank,
        "AccountType": kind,
        "AccountStatus": "Active",
        "AccountBalance": balance,
        "AccountCurrency": currency,
        "AccountUser": {"UserId": user, "UserName": "test"},
        OWNER: user,
        "Provenance": provenance(bank_id(bank), synced_ms_ago, "Connected"),
    }
}

fn product(
    user: ObjectId,
    bank: &str,
    kind: &str,
    amount: f64,
    currency: &str,
    rate: f64,
) -> Document {
    doc! {
        "_id": ObjectId::new(),
        "ProductBank": bank,
        "ProductType": kind,
        "ProductStatus": "Active",
        "ProductAmount": amount,
        "ProductCurrency": currency,
        "ProductInterestRate": rate,
        "ProductCustomer": {"UserId": user, "UserName": "test"},
        OWNER: user,
        "Provenance": provenance(bank_id(bank), Some(HOUR_MS), "Connected"),
    }
}

fn internal_account(user: ObjectId, kind: &str, balance: f64, currency: &str) -> Document {
    doc! {
        "_id": ObjectId::new(),
        "AccountBank": "LeafyBank",
        "AccountType": kind,
        "AccountStatus": "Active",
        "AccountBalance": balance,
        "AccountCurrency": currency,
        "AccountUser": {"UserId": user, "UserName": "test"},
        OWNER: user,
    }
}

/// A legacy total as a number (the response has exactly one field).
fn amount(reply: &Reply, field: &str) -> f64 {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body.as_object().unwrap().len(), 1, "{}", reply.body);
    reply.body[field]
        .as_f64()
        .unwrap_or_else(|| panic!("{field} missing: {}", reply.body))
}

fn hex(d: &Document) -> String {
    d.get_object_id("_id").unwrap().to_hex()
}

// ---------------------------------------------------------------------------------------------
// Legacy totals
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn legacy_total_balance_is_internal_plus_the_listed_accounts() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    let frida = fixtures_of(FRIDA_ID);
    let internal = sum(&frida.internal, "AccountBalance");
    assert!(internal > 0.0 && !frida.accounts.is_empty());

    // None listed: internal only.
    let reply = post_json(
        &app,
        BALANCE,
        Some(FRIDA_LEGACY_TOKEN),
        &json!({"user_id": FRIDA_ID, "connected_external_accounts": []}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(amount(&reply, "total_balance"), internal);

    // All of hers, and one of them only.
    let all = ids(&frida.accounts);
    let reply = post_json(
        &app,
        BALANCE,
        Some(FRIDA_LEGACY_TOKEN),
        &json!({"user_id": FRIDA_ID, "connected_external_accounts": all}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let everything = internal + sum(&frida.accounts, "AccountBalance");
    assert_eq!(amount(&reply, "total_balance"), everything);

    let one = &frida.accounts[1];
    let reply = post_json(
        &app,
        BALANCE,
        Some(FRIDA_LEGACY_TOKEN),
        &json!({"user_id": FRIDA_ID, "connected_external_accounts": [hex(one)]}),
    )
    .await;
    assert_eq!(
        amount(&reply, "total_balance"),
        internal + num(one, "AccountBalance")
    );

    // A JWT from the demo login works the same; extra reference fields are ignored.
    let jwt = login(&app, "fridaklo").await;
    let reply = post_json(
        &app,
        BALANCE,
        Some(&jwt),
        &json!({"user_id": FRIDA_ID, "connected_external_accounts": all, "consent_id": "x"}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(amount(&reply, "total_balance"), everything);

    // Without the trailing slash too: an HTTP API route cannot end in "/", so the template
    // routes both spellings here.
    let reply = post_json(
        &app,
        BALANCE.trim_end_matches('/'),
        Some(&jwt),
        &json!({"user_id": FRIDA_ID, "connected_external_accounts": all}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(amount(&reply, "total_balance"), everything);
}

#[tokio::test]
async fn legacy_total_debt_is_the_listed_loans_and_mortgages() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    let frida = fixtures_of(FRIDA_ID);
    let loans_and_mortgages: Vec<Document> = frida
        .products
        .iter()
        .filter(|p| matches!(p.get_str("ProductType"), Ok("Loan" | "Mortgage")))
        .cloned()
        .collect();
    assert!(loans_and_mortgages.len() >= 2);

    // A credit card of hers is debt in the summary but not in the reference's total debt.
    let card = product(
        oid(FRIDA_ID),
        "Green Bank",
        "CreditCard",
        750.0,
        "USD",
        19.9,
    );
    insert(&ctx, "open_finance", EXTERNAL_PRODUCTS, vec![card.clone()]).await;

    let reply = post_json(
        &app,
        DEBT,
        Some(FRIDA_LEGACY_TOKEN),
        &json!({"user_id": FRIDA_ID, "connected_external_products": []}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body, json!({"total_debt": 0}));

    let mut listed = ids(&frida.products);
    listed.push(hex(&card));
    let reply = post_json(
        &app,
        DEBT,
        Some(FRIDA_LEGACY_TOKEN),
        &json!({"user_id": FRIDA_ID, "connected_external_products": listed}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        amount(&reply, "total_debt"),
        sum(&loans_and_mortgages, "ProductAmount")
    );

    let first = &loans_and_mortgages[0];
    let reply = post_json(
        &app,
        DEBT,
        Some(FRIDA_LEGACY_TOKEN),
        &json!({"user_id": FRIDA_ID, "connected_external_products": [hex(first)]}),
    )
    .await;
    assert_eq!(amount(&reply, "total_debt"), num(first, "ProductAmount"));
}

#[tokio::test]
async fn another_users_ids_are_not_counted_and_another_user_id_is_403() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    let frida = fixtures_of(FRIDA_ID);
    let grace = fixtures_of(GRACE_ID);
    assert!(!grace.accounts.is_empty() && !grace.products.is_empty());

    // Grace's ids in Frida's lists: not counted.
    let mut accounts = ids(&frida.accounts);
    accounts.extend(ids(&grace.accounts));
    let reply = post_json(
        &app,
        BALANCE,
        Some(FRIDA_LEGACY_TOKEN),
        &json!({"user_id": FRIDA_ID, "connected_external_accounts": accounts}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        amount(&reply, "total_balance"),
        sum(&frida.internal, "AccountBalance") + sum(&frida.accounts, "AccountBalance")
    );
    let reply = post_json(
        &app,
        DEBT,
        Some(FRIDA_LEGACY_TOKEN),
        &json!({"user_id": FRIDA_ID, "connected_external_products": ids(&grace.products)}),
    )
    .await;
    assert_eq!(reply.body, json!({"total_debt": 0}));

    // Frida's token naming Grace: 403, on both routes, with either kind of token.
    let jwt = login(&app, "fridaklo").await;
    for token in [FRIDA_LEGACY_TOKEN, jwt.as_str()] {
        for (path, field) in [
            (BALANCE, "connected_external_accounts"),
            (DEBT, "connected_external_products"),
        ] {
            let reply = post_json(
                &app,
                path,
                Some(token),
                &json!({"user_id": GRACE_ID, field: []}),
            )
            .await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
            assert!(reply.body["detail"].is_string(), "{}", reply.body);
        }
    }

    // Grace's summary is Grace's: none of Frida's figures in it.
    let grace_jwt = login(&app, "gracehop").await;
    let reply = get(&app, SUMMARY, Some(&grace_jwt)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["userId"], GRACE_ID);
    let usd = &reply.body["currencies"][0];
    assert_close(
        &usd["totalBalance"],
        sum(&grace.internal, "AccountBalance") + sum(&grace.accounts, "AccountBalance"),
        "grace's balance",
    );
    assert_close(
        &usd["totalDebt"],
        sum(&grace.products, "ProductAmount"),
        "grace's debt",
    );
}

#[tokio::test]
async fn legacy_bad_input_is_a_clear_4xx() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    let t = Some(FRIDA_LEGACY_TOKEN);
    let account = "678a48b4a9711d00a3aa06dc";

    for (path, field) in [
        (BALANCE, "connected_external_accounts"),
        (DEBT, "connected_external_products"),
    ] {
        for body in [
            json!({"user_id": FRIDA_ID, field: ["not-an-id"]}),
            json!({"user_id": FRIDA_ID, field: [account, 42]}),
            json!({"user_id": FRIDA_ID, field: [{"$oid": account}]}),
            json!({"user_id": FRIDA_ID, field: {"$in": [account]}}),
            json!({"user_id": FRIDA_ID, field: account}),
            json!({"user_id": FRIDA_ID, field: null}),
            json!({"user_id": FRIDA_ID}),
            json!({"user_id": "fridaklo", field: []}),
            json!({"user_id": {"$ne": null}, field: []}),
            json!({"user_id": 5, field: []}),
            json!({field: []}),
            json!([]),
        ] {
            let reply = post_json(&app, path, t, &body).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path} {body}");
            assert!(reply.body["detail"].is_string(), "{}", reply.body);
        }
        let not_json = post_raw(&app, path, t, "application/json", "{".into()).await;
        assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
        let form = post_raw(
            &app,
            path,
            t,
            "application/x-www-form-urlencoded",
            "user_id=x".into(),
        )
        .await;
        assert_eq!(form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(form.body["detail"].is_string());
        let huge = json!({"user_id": FRIDA_ID, field: vec![account; 1000]});
        let reply = post_json(&app, path, t, &huge).await;
        assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(reply.body["detail"].is_string());

        // Missing or unknown tokens: 401 without one, 403 for one not recognised.
        let body = json!({"user_id": FRIDA_ID, field: []});
        let reply = post_json(&app, path, None, &body).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert!(reply.body["detail"].is_string());
        let reply = post_json(&app, path, Some(&"0".repeat(64)), &body).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN);
        // Both spellings are the route (see the balance test); anything below it is not.
        let reply = post_json(&app, &format!("{path}extra"), t, &body).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
    }
}

/// The reference rate table, replaced as an operator would (`leafy-admin set-exchange-rates`).
async fn set_rates(ctx: &TestContext, rates: &[(&str, f64)]) {
    let table = RateTable {
        base: "USD".into(),
        as_of: DateTime::parse_rfc3339_str("2026-12-01T12:00:00Z").unwrap(),
        source: "test".into(),
        rates: rates.iter().map(|(c, r)| (c.to_string(), *r)).collect(),
    };
    shared::fx::replace(&ctx.state.db, &table).await.unwrap();
}

#[tokio::test]
async fn legacy_totals_convert_other_currencies_at_the_reference_rates() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    let user = new_customer(&ctx, "euromix").await;
    let jwt = login(&app, "euromix").await;
    let usd_internal = internal_account(user, "Checking", 100.0, "USD");
    let eur = external_account(user, "Green Bank", "Savings", 200.0, "EUR", Some(HOUR_MS));
    let usd = external_account(user, "Green Bank", "Checking", 50.25, "USD", Some(HOUR_MS));
    let eur_loan = product(user, "Green Bank", "Loan", 1000.0, "EUR", 5.0);
    let usd_loan = product(user, "Green Bank", "Mortgage", 2000.0, "USD", 3.0);
    insert(&ctx, "leafy_bank", ACCOUNTS, vec![usd_internal]).await;
    insert(
        &ctx,
        "open_finance",
        EXTERNAL_ACCOUNTS,
        vec![eur.clone(), usd.clone()],
    )
    .await;
    insert(
        &ctx,
        "open_finance",
        EXTERNAL_PRODUCTS,
        vec![eur_loan.clone(), usd_loan.clone()],
    )
    .await;
    let u = user.to_hex();
    let balance = |ids: Vec<String>| {
        let body = json!({"user_id": u, "connected_external_accounts": ids});
        let (app, jwt) = (app.clone(), jwt.clone());
        async move {
            amount(
                &post_json(&app, BALANCE, Some(&jwt), &body).await,
                "total_balance",
            )
        }
    };
    let debt = || {
        let body =
            json!({"user_id": u, "connected_external_products": [hex(&eur_loan), hex(&usd_loan)]});
        let (app, jwt) = (app.clone(), jwt.clone());
        async move {
            amount(
                &post_json(&app, DEBT, Some(&jwt), &body).await,
                "total_debt",
            )
        }
    };

    // One currency: no rate needed.
    assert_eq!(balance(vec![hex(&usd)]).await, 150.25);
    // EUR in a USD customer's total: at the sample data's rate (1 EUR = 1.05 USD).
    assert_eq!(balance(vec![hex(&usd), hex(&eur)]).await, 150.25 + 210.0);
    assert_eq!(debt().await, 2000.0 + 1050.0);

    // The operator replaces the table: the next request uses it (tests re-read it every time).
    set_rates(&ctx, &[("EUR", 2.0)]).await;
    assert_eq!(balance(vec![hex(&usd), hex(&eur)]).await, 150.25 + 400.0);
    assert_eq!(debt().await, 2000.0 + 2000.0);

    // A currency without a rate is left out (and logged), never a 5xx or a guess.
    set_rates(&ctx, &[("GBP", 1.3)]).await;
    assert_eq!(balance(vec![hex(&usd), hex(&eur)]).await, 150.25);
    assert_eq!(debt().await, 2000.0);
}

#[tokio::test]
async fn a_customer_banking_in_euros_gets_totals_in_euros() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    let user = new_customer(&ctx, "eurobank").await;
    let jwt = login(&app, "eurobank").await;
    let usd = external_account(user, "Green Bank", "Checking", 105.0, "USD", Some(HOUR_MS));
    insert(
        &ctx,
        "leafy_bank",
        ACCOUNTS,
        vec![internal_account(user, "Checking", 100.0, "EUR")],
    )
    .await;
    insert(&ctx, "open_finance", EXTERNAL_ACCOUNTS, vec![usd.clone()]).await;
    let body = json!({"user_id": user.to_hex(), "connected_external_accounts": [hex(&usd)]});
    let reply = post_json(&app, BALANCE, Some(&jwt), &body).await;
    // 105 USD at 1 EUR = 1.05 USD is 100 EUR.
    assert_eq!(amount(&reply, "total_balance"), 200.0);
    let summary = get(&app, SUMMARY, Some(&jwt)).await;
    let converted = &summary.body["converted"];
    assert_eq!(converted["currency"], "EUR", "{}", summary.body);
    assert_eq!(converted["totalBalance"], 200.0);
}

// ---------------------------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn summary_of_the_sample_data_matches_the_fixtures() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    let jwt = login(&app, "fridaklo").await;
    let frida = fixtures_of(FRIDA_ID);

    let reply = get(&app, SUMMARY, Some(&jwt)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    let body = &reply.body;
    assert_eq!(body["userId"], FRIDA_ID);
    assert!(body["asOf"].is_string());

    let internal = sum(&frida.internal, "AccountBalance");
    let external = sum(&frida.accounts, "AccountBalance");
    let debt = sum(&frida.products, "ProductAmount");
    let weighted: f64 = frida
        .products
        .iter()
        .map(|p| num(p, "ProductAmount") * num(p, "ProductInterestRate"))
        .sum();
    let currencies = body["currencies"].as_array().unwrap();
    assert_eq!(currencies.len(), 1, "{body}");
    let usd = &currencies[0];
    assert_eq!(usd["currency"], "USD");
    assert_close(&usd["leafyBankBalance"], internal, "leafy bank balance");
    assert_close(&usd["externalBalance"], external, "external balance");
    assert_close(&usd["totalBalance"], internal + external, "total balance");
    assert_close(&usd["totalDebt"], debt, "total debt");
    assert_close(&usd["netWorth"], internal + external - debt, "net worth");
    let ratio = usd["debtToAssetRatio"].as_f64().unwrap();
    assert!(
        (ratio - debt / (internal + external)).abs() < 0.00005,
        "{ratio}"
    );
    assert_close(
        &usd["averageDebtInterestRate"],
        weighted / debt,
        "weighted rate",
    );
    assert_close(
        &usd["estimatedAnnualInterest"],
        weighted / 100.0,
        "annual interest",
    );
    assert_close(&usd["debtWithoutRate"], 0.0, "debt without rate");
    assert_eq!(
        usd["accounts"],
        json!(frida.internal.len() + frida.accounts.len())
    );

    // By institution: Leafy Bank plus each bank's accounts and products.
    let mut expected: Vec<(String, f64, f64, usize)> =
        vec![("Leafy Bank".into(), internal, 0.0, frida.internal.len())];
    for bank in ["Green Bank", "MongoDB Bank"] {
        let accounts: Vec<Document> = frida
            .accounts
            .iter()
            .filter(|a| a.get_str("AccountBank") == Ok(bank))
            .cloned()
            .collect();
        let products: Vec<Document> = frida
            .products
            .iter()
            .filter(|p| p.get_str("ProductBank") == Ok(bank))
            .cloned()
            .collect();
        expected.push((
            bank.into(),
            sum(&accounts, "AccountBalance"),
            sum(&products, "ProductAmount"),
            accounts.len(),
        ));
    }
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let lines = body["byInstitution"].as_array().unwrap();
    assert_eq!(lines.len(), expected.len(), "{body}");
    for (line, (name, balance, debt, accounts)) in lines.iter().zip(&expected) {
        assert_eq!(line["institution"], json!(name));
        assert_eq!(line["currency"], "USD");
        assert_close(&line["balance"], *balance, name);
        assert_close(&line["debt"], *debt, name);
        assert_eq!(line["accounts"], json!(accounts));
    }

    // By account type (Leafy Bank's and external together) and by product type.
    for line in body["byAccountType"].as_array().unwrap() {
        let kind = line["accountType"].as_str().unwrap();
        let of_kind = |docs: &[Document]| -> (f64, usize) {
            let matching: Vec<Document> = docs
                .iter()
                .filter(|d| d.get_str("AccountType") == Ok(kind))
                .cloned()
                .collect();
            (sum(&matching, "AccountBalance"), matching.len())
        };
        let (a, n) = of_kind(&frida.internal);
        let (b, m) = of_kind(&frida.accounts);
        assert_close(&line["balance"], a + b, kind);
        assert_eq!(line["accounts"], json!(n + m));
    }
    let product_lines = body["byProductType"].as_array().unwrap();
    assert_eq!(
        product_lines.len(),
        frida.products.len(),
        "one Loan, one Mortgage"
    );
    for line in product_lines {
        let kind = line["productType"].as_str().unwrap();
        let p = frida
            .products
            .iter()
            .find(|p| p.get_str("ProductType") == Ok(kind))
            .unwrap();
        assert_close(&line["amount"], num(p, "ProductAmount"), kind);
        assert_close(
            &line["averageInterestRate"],
            num(p, "ProductInterestRate"),
            kind,
        );
    }
    assert_eq!(body["overdrawnAccounts"], json!([]));
    // The seeded reference documents carry no sync date: connected, freshness unknown.
    assert_eq!(
        body["freshness"],
        json!({"oldestSyncedAt": null, "newestSyncedAt": null, "unknown": true})
    );

    // The legacy opaque token works on the new API too.
    let reply = get(&app, SUMMARY, Some(FRIDA_LEGACY_TOKEN)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["currencies"], body["currencies"]);
}

#[tokio::test]
async fn a_customer_with_nothing_connected_has_an_empty_position() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    new_customer(&ctx, "newbie").await;
    let jwt = login(&app, "newbie").await;

    let reply = get(&app, SUMMARY, Some(&jwt)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    for key in [
        "currencies",
        "byInstitution",
        "byAccountType",
        "byProductType",
        "overdrawnAccounts",
    ] {
        assert_eq!(reply.body[key], json!([]), "{key}");
    }
    assert_eq!(reply.body["freshness"]["unknown"], false);

    let reply = get(&app, RECOMMENDATIONS, Some(&jwt)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["recommendations"], json!([]));
}

#[tokio::test]
async fn a_multi_currency_customer_gets_totals_per_currency() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    let user = new_customer(&ctx, "multicur").await;
    let jwt = login(&app, "multicur").await;
    insert(
        &ctx,
        "leafy_bank",
        ACCOUNTS,
        vec![
            internal_account(user, "Checking", 1000.0, "USD"),
            internal_account(user, "Savings", 500.0, "EUR"),
        ],
    )
    .await;
    insert(
        &ctx,
        "open_finance",
        EXTERNAL_ACCOUNTS,
        vec![
            external_account(
                user,
                "Green Bank",
                "Savings",
                2000.0,
                "EUR",
                Some(2 * HOUR_MS),
            ),
            external_account(
                user,
                "MongoDB Bank",
                "Checking",
                300.0,
                "GBP",
                Some(HOUR_MS),
            ),
        ],
    )
    .await;
    insert(
        &ctx,
        "open_finance",
        EXTERNAL_PRODUCTS,
        vec![product(user, "Green Bank", "Loan", 1000.0, "EUR", 5.0)],
    )
    .await;

    let reply = get(&app, SUMMARY, Some(&jwt)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let by: Vec<(String, f64, f64, Value)> = reply.body["currencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["currency"].as_str().unwrap().to_string(),
                c["totalBalance"].as_f64().unwrap(),
                c["totalDebt"].as_f64().unwrap(),
                c["debtToAssetRatio"].clone(),
            )
        })
        .collect();
    assert_eq!(
        by,
        [
            ("EUR".to_string(), 2500.0, 1000.0, json!(0.4)),
            ("GBP".to_string(), 300.0, 0.0, json!(0.0)),
            ("USD".to_string(), 1000.0, 0.0, json!(0.0)),
        ]
    );
    // And as one figure: Leafy Bank accounts in two currencies, so the configured default
    // (USD) is the reporting currency; EUR and GBP converted at the sample data's rates.
    assert_eq!(
        reply.body["converted"],
        json!({
            "currency": "USD",
            // 1000 + 2500 × 1.05 + 300 × 1.27; debt 1000 × 1.05.
            "totalBalance": 4006.0,
            "totalDebt": 1050.0,
            "netWorth": 2956.0,
            "rates": {"EUR": 1.05, "GBP": 1.27},
            "ratesAsOf": "2026-11-30T16:00:00Z",
            "rateSource": "Leafy Bank reference rates (sample data: indicative, not market rates)",
            "excludedCurrencies": [],
        }),
        "{}",
        reply.body
    );
    // Without a GBP rate, GBP is named and left out of the one figure (not of `currencies`).
    set_rates(&ctx, &[("EUR", 1.05)]).await;
    let reply = get(&app, SUMMARY, Some(&jwt)).await;
    assert_eq!(
        reply.body["converted"]["excludedCurrencies"],
        json!(["GBP"])
    );
    assert_eq!(reply.body["converted"]["totalBalance"], 3625.0);
    let eur = &reply.body["currencies"][0];
    assert_eq!(eur["netWorth"], 1500.0);
    assert_eq!(eur["averageDebtInterestRate"], 5.0);
    assert_eq!(eur["estimatedAnnualInterest"], 50.0);
    // Every breakdown line has one currency; the Green Bank line in EUR has both sides.
    let green_eur: Vec<&Value> = reply.body["byInstitution"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["institution"] == "Green Bank")
        .collect();
    assert_eq!(
        green_eur,
        [
            &json!({"institution": "Green Bank", "currency": "EUR", "balance": 2000.0,
                  "debt": 1000.0, "accounts": 1})
        ]
    );
    let freshness = &reply.body["freshness"];
    assert_eq!(freshness["unknown"], false);
    assert!(
        freshness["oldestSyncedAt"].as_str().unwrap()
            < freshness["newestSyncedAt"].as_str().unwrap()
    );
}

#[tokio::test]
async fn closed_and_disconnected_items_are_not_counted() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    let jwt = login(&app, "fridaklo").await;
    let frida = oid(FRIDA_ID);
    let before = get(&app, SUMMARY, Some(&jwt)).await.body;

    let mut disconnected = external_account(frida, "Green Bank", "Savings", 5000.0, "USD", None);
    disconnected.insert(
        "Provenance",
        provenance("green-bank", Some(HOUR_MS), "Disconnected"),
    );
    let mut closed_account = external_account(frida, "Green Bank", "Checking", 70.0, "USD", None);
    closed_account.insert("AccountStatus", "Closed");
    let mut closed = product(frida, "Green Bank", "Loan", 9000.0, "USD", 7.0);
    closed.insert("ProductStatus", "Closed");
    let mut gone = product(frida, "MongoDB Bank", "Mortgage", 99_000.0, "USD", 3.0);
    gone.insert(
        "Provenance",
        provenance("mongodb-bank", Some(HOUR_MS), "Disconnected"),
    );
    insert(
        &ctx,
        "open_finance",
        EXTERNAL_ACCOUNTS,
        vec![disconnected.clone(), closed_account],
    )
    .await;
    insert(
        &ctx,
        "open_finance",
        EXTERNAL_PRODUCTS,
        vec![closed.clone(), gone.clone()],
    )
    .await;

    let after = get(&app, SUMMARY, Some(&jwt)).await.body;
    for key in [
        "currencies",
        "byInstitution",
        "byAccountType",
        "byProductType",
        "freshness",
    ] {
        assert_eq!(after[key], before[key], "{key}");
    }

    // Listed on the legacy routes: not counted either.
    let internal = sum(&fixtures_of(FRIDA_ID).internal, "AccountBalance");
    let reply = post_json(
        &app,
        BALANCE,
        Some(&jwt),
        &json!({"user_id": FRIDA_ID, "connected_external_accounts": [hex(&disconnected)]}),
    )
    .await;
    assert_eq!(amount(&reply, "total_balance"), internal);
    let reply = post_json(
        &app,
        DEBT,
        Some(&jwt),
        &json!({"user_id": FRIDA_ID, "connected_external_products": [hex(&closed), hex(&gone)]}),
    )
    .await;
    assert_eq!(reply.body, json!({"total_debt": 0}));
}

#[tokio::test]
async fn the_new_api_needs_a_customer_token() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    for path in [SUMMARY, RECOMMENDATIONS, CASHFLOW, RECURRING] {
        let reply = get(&app, path, None).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            reply.headers[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert!(reply.headers.contains_key(header::WWW_AUTHENTICATE));
        let reply = get(&app, path, Some("not-a-token")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }

    // A client's own token (no user) has no insights.
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", ctx.client_id, ctx.client_secret));
    let request = Request::post("/oauth/token")
        .header(header::AUTHORIZATION, format!("Basic {basic}"))
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("grant_type=client_credentials"))
        .unwrap();
    let reply = send(&app, request).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let client_token = reply.body["access_token"].as_str().unwrap().to_string();
    for path in [SUMMARY, RECOMMENDATIONS, CASHFLOW, RECURRING] {
        let reply = get(&app, path, Some(&client_token)).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
        assert_eq!(reply.body["status"], 403);
    }
    // Nor on the legacy routes.
    let reply = post_json(
        &app,
        DEBT,
        Some(&client_token),
        &json!({"user_id": FRIDA_ID, "connected_external_products": []}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
}

// ---------------------------------------------------------------------------------------------
// Recommendations
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_rule_fires_over_http_on_a_risky_position_and_none_on_the_sample() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);

    // Frida's sample position is healthy by every rule.
    let jwt = login(&app, "fridaklo").await;
    let reply = get(&app, RECOMMENDATIONS, Some(&jwt)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(reply.body["recommendations"], json!([]));
    assert_eq!(reply.body["rulesEvaluated"].as_array().unwrap().len(), 10);

    let user = new_customer(&ctx, "riskyrita").await;
    let now = DateTime::now().timestamp_millis();
    insert(
        &ctx,
        "open_finance",
        EXTERNAL_ACCOUNTS,
        vec![
            external_account(
                user,
                "Green Bank",
                "Savings",
                20_000.0,
                "USD",
                Some(48 * HOUR_MS),
            ),
            external_account(
                user,
                "MongoDB Bank",
                "Checking",
                -250.0,
                "USD",
                Some(HOUR_MS),
            ),
        ],
    )
    .await;
    let mut mortgage = product(user, "MongoDB Bank", "Mortgage", 180_000.0, "USD", 3.1);
    mortgage.insert(
        "PropertyDetails",
        doc! {"Address": "9 Elm St", "PropertyValue": 200_000},
    );
    insert(
        &ctx,
        "open_finance",
        EXTERNAL_PRODUCTS,
        vec![
            product(user, "Green Bank", "CreditCard", 3000.0, "USD", 19.9),
            mortgage,
        ],
    )
    .await;
    let consent = |institution: &str, status: &str, in_ms: i64| {
        doc! {
            "_id": ObjectId::new(), "UserId": user, "UserName": "riskyrita",
            "Institution": institution, "Status": status,
            "ExpiresAt": DateTime::from_millis(now + in_ms),
        }
    };
    insert(
        &ctx,
        "open_finance",
        CONSENTS,
        vec![
            consent("green-bank", "Authorised", 5 * DAY_MS),
            consent("mongodb-bank", "Authorised", 60 * DAY_MS),
            consent("mongodb-bank", "Revoked", 2 * DAY_MS),
        ],
    )
    .await;

    let jwt = login(&app, "riskyrita").await;
    let reply = get(&app, RECOMMENDATIONS, Some(&jwt)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let found = reply.body["recommendations"].as_array().unwrap();
    let ids: Vec<&str> = found.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "overdrawn-account:mongodb-bank:checking:USD:-250",
            "consent-expiring:green-bank",
            "high-interest-debt-idle-savings:USD",
            "high-loan-to-value:mongodb-bank:USD:200000",
            "asset-concentration:USD",
            "stale-data",
        ],
        "{}",
        reply.body
    );
    for r in found {
        for key in ["rule", "severity", "title", "message"] {
            assert!(r[key].is_string(), "{r}");
        }
        assert!(r["evidence"].is_object(), "{r}");
    }
    let by_rule = |rule: &str| found.iter().find(|r| r["rule"] == rule).unwrap();
    assert_eq!(by_rule("overdrawn-account")["severity"], "critical");
    assert_eq!(
        by_rule("high-loan-to-value")["evidence"]["loanToValue"],
        0.9
    );
    assert_eq!(
        by_rule("high-interest-debt-idle-savings")["evidence"]["highInterestDebt"],
        3000.0
    );
    assert_eq!(by_rule("consent-expiring")["evidence"]["daysLeft"], 5);
    assert_eq!(
        by_rule("stale-data")["evidence"]["hoursSinceOldestSync"],
        48
    );
    assert_eq!(by_rule("asset-concentration")["evidence"]["share"], 1.0);
}

// ---------------------------------------------------------------------------------------------
// The transaction history: cash flow, the summary's last month, the history rules
// ---------------------------------------------------------------------------------------------

/// A stored transaction of `user` as the sync writes it (the fields the pipelines read).
fn transaction(
    user: ObjectId,
    at: chrono::NaiveDate,
    minor: i64,
    category: &str,
    who: &str,
) -> Document {
    let booked = DateTime::from_millis(
        at.and_hms_opt(10, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis(),
    );
    doc! {
        "_id": ObjectId::new(),
        OWNER: user,
        "Institution": "green-bank",
        "Status": "Booked",
        "BookingDate": booked,
        "BookingMonth": at.format("%Y-%m").to_string(),
        "AmountMinor": minor,
        "Amount": minor as f64 / 100.0,
        "Currency": "GBP",
        "CreditDebit": if minor > 0 { "Credit" } else { "Debit" },
        "Counterparty": who,
        "Category": category,
        "Provenance": {
            "Institution": "green-bank", "AccountExternalId": "acc-1",
            "ExternalId": ObjectId::new().to_hex(), "ConnectionStatus": "Connected",
        },
    }
}

#[tokio::test]
async fn cashflow_summary_and_history_rules_over_a_stored_history() {
    use chrono::{Datelike, Duration, Months};
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    let user = new_customer(&ctx, "hanahist").await;
    let today = chrono::Utc::now().date_naive();
    let month_start = |back: u32| today.with_day(1).unwrap() - Months::new(back);
    let months_ago = |day: chrono::NaiveDate, k: u32| day - Months::new(k);
    let mut docs = Vec::new();
    // Salary every month, next due in 20 days; rent every month, next due in 5 (before it).
    for k in 1..=6 {
        docs.push(transaction(
            user,
            months_ago(today + Duration::days(20), k),
            300_000,
            "salary",
            "Acme Corp",
        ));
        docs.push(transaction(
            user,
            months_ago(today + Duration::days(5), k),
            -100_000,
            "rent",
            "Landlord Ltd",
        ));
    }
    // A subscription whose price rose three months ago.
    for k in 0..6 {
        let amount = if k < 3 { -1_799 } else { -1_599 };
        docs.push(transaction(
            user,
            months_ago(today - Duration::days(3), k),
            amount,
            "subscriptions",
            "StreamCo",
        ));
    }
    // Freelance income in the three months before last, none last month: income dropped.
    for back in 2..=4 {
        docs.push(transaction(
            user,
            month_start(back) + Duration::days(9),
            200_000,
            "income",
            "Client",
        ));
    }
    // Travel last month far above its average (300 once in the three months before).
    docs.push(transaction(
        user,
        month_start(1) + Duration::days(11),
        -90_000,
        "travel",
        "Airline",
    ));
    docs.push(transaction(
        user,
        month_start(3) + Duration::days(11),
        -30_000,
        "travel",
        "Airline",
    ));
    // A refund, counted against its category's spending.
    docs.push(transaction(
        user,
        month_start(1) + Duration::days(12),
        10_000,
        "travel",
        "Airline",
    ));
    let counted = docs.clone();
    // Not counted: an own transfer, a pending item, a disconnected account's item, another
    // customer's item.
    docs.push(transaction(
        user,
        month_start(1) + Duration::days(2),
        -50_000,
        "transfers",
        "Own savings",
    ));
    let mut pending = transaction(user, today, -7_000, "dining", "Cafe");
    pending.insert("Status", "Pending");
    let mut disconnected = transaction(
        user,
        month_start(1) + Duration::days(4),
        -9_000,
        "dining",
        "Cafe",
    );
    disconnected
        .get_document_mut("Provenance")
        .unwrap()
        .insert("ConnectionStatus", "Disconnected");
    let other = transaction(
        ObjectId::new(),
        month_start(1) + Duration::days(4),
        -9_000,
        "dining",
        "Cafe",
    );
    docs.extend([pending, disconnected, other]);
    insert(&ctx, "open_finance", EXTERNAL_TRANSACTIONS, docs).await;
    insert(
        &ctx,
        "open_finance",
        EXTERNAL_ACCOUNTS,
        vec![external_account(
            user,
            "Green Bank",
            "Checking",
            500.0,
            "GBP",
            Some(HOUR_MS),
        )],
    )
    .await;

    // The expected cash flow, from the counted documents.
    let expected = |month: &str| -> (i64, i64, BTreeMap<String, i64>) {
        let (mut income, mut spending, mut categories) = (0, 0, BTreeMap::new());
        for d in counted
            .iter()
            .filter(|d| d.get_str("BookingMonth").unwrap() == month)
        {
            let amount = d.get_i64("AmountMinor").unwrap();
            let category = d.get_str("Category").unwrap().to_string();
            if category == "salary" || category == "income" {
                income += amount;
            } else {
                spending -= amount;
                *categories.entry(category).or_insert(0) -= amount;
            }
        }
        (income, spending, categories)
    };
    let jwt = login(&app, "hanahist").await;
    let reply = get(&app, &format!("{CASHFLOW}?months=5"), Some(&jwt)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(reply.body["currencies"], json!(["GBP"]));
    let labels: Vec<String> = (0..5)
        .rev()
        .map(|b| month_start(b).format("%Y-%m").to_string())
        .collect();
    assert_eq!(reply.body["months"], json!(labels));
    let rows = reply.body["cashflow"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    for (row, label) in rows.iter().zip(&labels) {
        let (income, spending, categories) = expected(label);
        assert_eq!(row["month"], label.as_str());
        assert_eq!(row["complete"], json!(label != &labels[4]));
        assert_eq!(row["income"], json!(income as f64 / 100.0), "{row}");
        assert_eq!(row["spending"], json!(spending as f64 / 100.0), "{row}");
        assert_eq!(
            row["net"],
            json!((income - spending) as f64 / 100.0),
            "{row}"
        );
        for (category, minor) in categories.iter().filter(|(_, v)| **v != 0) {
            assert_eq!(
                row["spendingByCategory"][category],
                json!(*minor as f64 / 100.0),
                "{row}"
            );
        }
        assert!(row["spendingByCategory"].get("transfers").is_none());
    }
    // The default is 6 months.
    let reply = get(&app, CASHFLOW, Some(&jwt)).await;
    assert_eq!(reply.body["months"].as_array().unwrap().len(), 6);

    // The summary's last month.
    let reply = get(&app, SUMMARY, Some(&jwt)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let last = &reply.body["lastMonth"];
    assert_eq!(last["month"], labels[3].as_str());
    let (income, spending, _) = expected(&labels[3]);
    assert_eq!(last["currencies"][0]["currency"], "GBP");
    assert_eq!(
        last["currencies"][0]["income"],
        json!(income as f64 / 100.0)
    );
    assert_eq!(
        last["currencies"][0]["spending"],
        json!(spending as f64 / 100.0)
    );
    let rate = ((income - spending) as f64 / income as f64 * 10_000.0).round() / 10_000.0;
    assert_eq!(last["currencies"][0]["savingsRate"], json!(rate));

    // The four history rules fire, with their evidence.
    let reply = get(&app, RECOMMENDATIONS, Some(&jwt)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let found = reply.body["recommendations"].as_array().unwrap();
    let by_rule = |rule: &str| {
        found
            .iter()
            .find(|r| r["rule"] == rule)
            .unwrap_or_else(|| panic!("{rule} did not fire: {}", reply.body))
    };
    let spike = by_rule("category-spending-spike");
    assert_eq!(spike["evidence"]["category"], "travel");
    assert_eq!(spike["evidence"]["spending"], 800.0);
    assert_eq!(spike["evidence"]["averageOfPreviousMonths"], 100.0);
    let subscriptions = by_rule("subscriptions-grew");
    assert_eq!(subscriptions["evidence"]["monthlyTotal"], 17.99);
    assert_eq!(
        subscriptions["evidence"]["monthlyTotalWhenFirstSeen"],
        15.99
    );
    let income = by_rule("income-stopped-or-dropped");
    assert_eq!(income["severity"], "warning");
    assert_eq!(income["evidence"]["income"], 3000.0);
    assert_eq!(income["evidence"]["averageOfPreviousMonths"], 5000.0);
    let forecast = by_rule("balance-forecast-negative");
    let e = &forecast["evidence"];
    assert_eq!(e["currentBalance"], 500.0);
    assert_eq!(
        e["nextExpectedIncome"],
        (months_ago(today + Duration::days(20), 1) + Months::new(1)).to_string()
    );
    assert_eq!(
        e["belowZeroFrom"],
        (months_ago(today + Duration::days(5), 1) + Months::new(1)).to_string()
    );
    assert!(e["projectedBalance"].as_f64().unwrap() <= -500.0, "{e}");

    // Nobody else's history: another customer sees none of it.
    let frida = login(&app, "fridaklo").await;
    let reply = get(&app, CASHFLOW, Some(&frida)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["cashflow"], json!([]));
}

#[tokio::test]
async fn cashflow_bad_input_is_a_400() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    let jwt = login(&app, "fridaklo").await;
    for query in [
        "months=0",
        "months=25",
        "months=abc",
        "months=-3",
        "months=1.5",
        "months=%24gt",
        "months=3&months=4",
        "month=3",
        "userId=66fe219d625d93a100528224",
    ] {
        let reply = get(&app, &format!("{CASHFLOW}?{query}"), Some(&jwt)).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            reply.body
        );
        assert_eq!(
            reply.headers[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert!(reply.body["detail"].is_string(), "{}", reply.body);
    }
}

// ---------------------------------------------------------------------------------------------
// Round trips and indexes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn database_round_trips_per_request() {
    let ctx = TestContext::new().await;
    let (state, counter) = ctx.counting_state().await;
    let app = app_on(&state);
    let jwt = login(&app, "fridaklo").await;
    let frida = fixtures_of(FRIDA_ID);

    // Here the tests read the revocation list on every request: a JWT's authentication is
    // that read, plus the write of the uses noted since the last one (the previous JWT
    // request's) when there are any. A legacy opaque token is always one round trip: its
    // record is looked up by digest.
    counter.take();
    assert_eq!(get(&app, SUMMARY, Some(&jwt)).await.status, StatusCode::OK);
    assert_eq!(counter.take(), 1 + 4, "summary, no use noted before");
    assert_eq!(
        get(&app, SUMMARY, Some(FRIDA_LEGACY_TOKEN)).await.status,
        StatusCode::OK
    );
    assert_eq!(counter.take(), 1 + 4, "summary, legacy token");
    assert_eq!(
        get(&app, RECOMMENDATIONS, Some(&jwt)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        counter.take(),
        2 + 6,
        "recommendations, previous use written"
    );
    // From here on each JWT request writes the previous one's use.
    let auth = 2;
    for path in [CASHFLOW, RECURRING] {
        assert_eq!(get(&app, path, Some(&jwt)).await.status, StatusCode::OK);
        assert_eq!(counter.take(), auth + 1, "{path}: one aggregation");
    }

    let balance =
        |ids: Vec<String>| json!({"user_id": FRIDA_ID, "connected_external_accounts": ids});
    let debt = |ids: Vec<String>| json!({"user_id": FRIDA_ID, "connected_external_products": ids});
    let reply = post_json(&app, BALANCE, Some(&jwt), &balance(vec![])).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(counter.take(), auth + 1, "balance, none listed");
    let reply = post_json(&app, BALANCE, Some(&jwt), &balance(ids(&frida.accounts))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        counter.take(),
        auth + 2,
        "balance, listed: one per database"
    );
    let reply = post_json(&app, DEBT, Some(&jwt), &debt(ids(&frida.products))).await;
    assert_eq!(reply.status, StatusCode::OK);
    // The debt, and the Leafy Bank accounts that give the reporting currency (concurrently).
    assert_eq!(counter.take(), auth + 2, "debt");
    let reply = post_json(&app, DEBT, Some(&jwt), &debt(vec![])).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        counter.take(),
        auth,
        "debt, none listed: authentication only"
    );

    // A refused request stops at authentication.
    let reply = post_json(&app, DEBT, Some(&jwt), &debt(vec!["x".into()])).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(counter.take(), auth);

    // With a revocation refresh as in production, a JWT costs no round trip once the list has
    // been read: each route is its own aggregations alone.
    let mut settings = ctx.state.settings.clone();
    settings.revocation_refresh = std::time::Duration::from_secs(300);
    let (state, counter) = ctx.counting_state_with(settings).await;
    let app = app_on(&state);
    assert_eq!(get(&app, SUMMARY, Some(&jwt)).await.status, StatusCode::OK);
    counter.take();
    assert_eq!(get(&app, SUMMARY, Some(&jwt)).await.status, StatusCode::OK);
    assert_eq!(counter.take(), 4, "summary, JWT, revocation list read");
    let reply = post_json(&app, DEBT, Some(&jwt), &debt(ids(&frida.products))).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        counter.take(),
        2,
        "debt, JWT (and the reporting currency's accounts)"
    );
    let reply = post_json(&app, DEBT, Some(&jwt), &debt(vec![])).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        counter.take(),
        0,
        "debt, none listed, JWT: no round trip at all"
    );
}

#[tokio::test]
async fn indexes_serve_every_pipelines_match() {
    let ctx = TestContext::new().await;
    let db = &ctx.state.db;
    // Running the setup again is harmless.
    db.ensure_indexes().await.unwrap();

    let first_keys = |specs: Vec<mongodb::IndexModel>| -> Vec<Vec<String>> {
        specs
            .into_iter()
            .map(|m| m.keys.keys().cloned().collect())
            .collect()
    };
    let of = |database: &mongodb::Database, name: &str| database.collection::<Document>(name);
    use futures_util::TryStreamExt;
    for (database, collection, leading) in [
        (&db.open_finance, EXTERNAL_ACCOUNTS, vec![OWNER]),
        (&db.open_finance, EXTERNAL_PRODUCTS, vec![OWNER]),
        (
            &db.open_finance,
            CONSENTS,
            vec![OWNER, "Status", "ExpiresAt"],
        ),
        (&db.leafy_bank, ACCOUNTS, vec![OWNER]),
        // The cash-flow and recurring pipelines match the owner and a booking-date range.
        (
            &db.open_finance,
            EXTERNAL_TRANSACTIONS,
            vec![OWNER, "BookingDate"],
        ),
    ] {
        let specs: Vec<mongodb::IndexModel> = of(database, collection)
            .list_indexes()
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let keys = first_keys(specs);
        assert!(
            keys.iter()
                .any(|k| k.starts_with(&leading.iter().map(|s| s.to_string()).collect::<Vec<_>>())),
            "{collection}: no index led by {leading:?} in {keys:?}"
        );
    }
}
