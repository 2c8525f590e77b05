//! The Leafy Bank UI's Global Position for its first demo customer, fridaklo, after she connects
//! both banks: MongoDB Bank holds a EUR savings account next to her USD accounts, and the
//! legacy totals the UI calls must still answer one number (her reporting currency, USD, with
//! EUR converted at the reference rates of the sample data). Expected figures are computed
//! here from what the legacy listings return, not typed in.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use testkit::{FRIDA, FRIDA_ID, Stack, ids_in};

const ALL: &[&str] = &["ReadAccountsDetail", "ReadBalances", "ReadProducts"];
const LEGACY: &str = "/api/v1/openfinance/secure";
/// The sample data's reference rate: 1 EUR = 1.05 USD.
const EUR_IN_USD: f64 = 1.05;
/// fridaklo's Leafy Bank accounts, all USD (`leafy_bank.accounts.json`).
const LEAFY_BANK_BALANCE: f64 = 4625.0;

fn in_usd(amount: f64, currency: &str) -> f64 {
    match currency {
        "USD" => amount,
        "EUR" => amount * EUR_IN_USD,
        other => panic!("no sample rate for {other}"),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[tokio::test]
async fn fridaklo_with_both_banks_connected_gets_both_totals() {
    let s = Stack::with(|state, gateway| {
        sync_products::router(state.clone(), gateway, testkit::sync_options())
            .merge(insights::router(state))
    })
    .await;
    for bank in ["green-bank", "mongodb-bank"] {
        let consent = s.authorised_consent(FRIDA, bank, ALL).await;
        assert_eq!(s.connect(FRIDA, &consent).await.status, StatusCode::OK);
    }
    let synced = s
        .call(Method::POST, "/products/sync", Some(FRIDA), None)
        .await;
    assert_eq!(synced.status, StatusCode::OK, "{}", synced.body);

    let s = &s;
    let list = |path: &'static str, field: &'static str| async move {
        let reply = s
            .call(
                Method::GET,
                &format!("{LEGACY}/{path}/?user_identifier=fridaklo"),
                Some(FRIDA),
                None,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        (
            ids_in(&reply.body, field),
            reply.body[field].as_array().unwrap().clone(),
        )
    };
    let (account_ids, accounts) = list("fetch-external-accounts-for-user", "accounts").await;
    let (product_ids, products) = list("fetch-external-products-for-user", "products").await;
    let currency = |d: &Value, f: &str| d[f].as_str().unwrap().to_string();
    assert!(
        accounts
            .iter()
            .any(|a| currency(a, "AccountCurrency") == "EUR"),
        "the sample data gives fridaklo a EUR account: {accounts:?}"
    );
    let expected_balance = LEAFY_BANK_BALANCE
        + accounts
            .iter()
            .map(|a| {
                in_usd(
                    a["AccountBalance"].as_f64().unwrap(),
                    &currency(a, "AccountCurrency"),
                )
            })
            .sum::<f64>();
    let expected_debt: f64 = products
        .iter()
        .filter(|p| ["Loan", "Mortgage"].contains(&p["ProductType"].as_str().unwrap()))
        .map(|p| {
            in_usd(
                p["ProductAmount"].as_f64().unwrap(),
                &currency(p, "ProductCurrency"),
            )
        })
        .sum();

    let balance = s
        .call(
            Method::POST,
            &format!("{LEGACY}/calculate-total-balance-for-user/"),
            Some(FRIDA),
            Some(json!({"user_id": FRIDA_ID, "connected_external_accounts": account_ids})),
        )
        .await;
    assert_eq!(balance.status, StatusCode::OK, "{}", balance.body);
    assert_eq!(
        balance.body["total_balance"].as_f64().unwrap(),
        round2(expected_balance)
    );
    let debt = s
        .call(
            Method::POST,
            &format!("{LEGACY}/calculate-total-debt-for-user/"),
            Some(FRIDA),
            Some(json!({"user_id": FRIDA_ID, "connected_external_products": product_ids})),
        )
        .await;
    assert_eq!(debt.status, StatusCode::OK, "{}", debt.body);
    assert!(expected_debt > 0.0);
    assert_eq!(
        debt.body["total_debt"].as_f64().unwrap(),
        round2(expected_debt)
    );

    // The new API says the same openly: one converted figure, with the rate and its date.
    let summary = s
        .call(Method::GET, "/insights/summary", Some(FRIDA), None)
        .await;
    let converted = &summary.body["converted"];
    assert_eq!(converted["currency"], "USD", "{}", summary.body);
    assert_eq!(
        converted["totalBalance"].as_f64().unwrap(),
        round2(expected_balance)
    );
    assert_eq!(converted["rates"], json!({"EUR": EUR_IN_USD}));
    assert_eq!(converted["ratesAsOf"], "2026-11-30T16:00:00Z");
}
