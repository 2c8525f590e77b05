//! Two emulated institutions with the API styles of two real open-banking standards, so that
//! Leafy Bank's normalisation is real work:
//! - Green Bank, UK Open Banking Read/Write API (account information): `Data`/`Links`/`Meta`
//!   envelopes, decimal-string amounts, credit/debit indicators, balance types.
//! - MongoDB Bank, Berlin Group NextGenPSD2 XS2A: `accounts[]` with `withBalance`,
//!   `balances[]`, loans and mortgages under their own resource, the `Consent-ID` header.
//!
//! Each serves its own deterministic per-customer data (compiled in from `sample_data/banks`)
//! only to tokens addressed to it whose consent is authorised, unexpired and covers the call.
//! Faults (latency, a 5xx, a malformed body) can be injected for tests when configuration
//! allows it, per institution, through the `bank_faults` collection.

mod data;
mod guard;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mongodb::bson::{Document, doc};
use serde::Deserialize;
use serde_json::{Value, json};

use shared::institutions::Institution;
use shared::{AppError, AppState};

use data::BankData;
use guard::{BankError, authorise};

/// The collection a test writes to make an institution misbehave.
pub const FAULTS: &str = "bank_faults";

#[derive(Clone)]
struct Banks {
    state: AppState,
    data: Arc<BankData>,
    faults_enabled: bool,
}

/// `BANK_FAULT_INJECTION=true` enables fault injection (never in production).
pub fn faults_enabled_from_env() -> Result<bool, AppError> {
    match std::env::var("BANK_FAULT_INJECTION").as_deref() {
        Err(_) | Ok("") | Ok("false") => Ok(false),
        Ok("true") => Ok(true),
        Ok(_) => Err(AppError::Config(
            "environment variable BANK_FAULT_INJECTION must be true or false".into(),
        )),
    }
}

pub fn router(state: AppState, faults_enabled: bool) -> Router {
    let banks = Banks {
        state,
        data: Arc::new(BankData::load()),
        faults_enabled,
    };
    Router::new()
        .route(
            "/banks/green-bank/open-banking/v3.1/aisp/accounts",
            get(green_accounts),
        )
        .route(
            "/banks/green-bank/open-banking/v3.1/aisp/balances",
            get(green_balances),
        )
        .route(
            "/banks/green-bank/open-banking/v3.1/aisp/products",
            get(green_products),
        )
        .route("/banks/mongodb-bank/v1/accounts", get(mdb_accounts))
        .route("/banks/mongodb-bank/v1/loans", get(mdb_loans))
        .route("/banks/mongodb-bank/v1/card-accounts", get(mdb_cards))
        .with_state(banks)
}

/// An injected fault, if configuration allows them and one is set for `institution`.
async fn injected_fault(
    banks: &Banks,
    institution: Institution,
) -> Result<Option<Response>, BankError> {
    if !banks.faults_enabled {
        return Ok(None);
    }
    let fault = banks
        .state
        .db
        .open_finance
        .collection::<Document>(FAULTS)
        .find_one(doc! {"_id": institution.id()})
        .await
        .map_err(|e| BankError::internal(institution, e.into()))?;
    let Some(fault) = fault else { return Ok(None) };
    if let Ok(ms) = fault
        .get_i64("LatencyMs")
        .or_else(|_| fault.get_i32("LatencyMs").map(i64::from))
    {
        tokio::time::sleep(Duration::from_millis(ms.clamp(0, 30_000) as u64)).await;
    }
    if let Ok(status) = fault.get_i32("Status") {
        let status =
            StatusCode::from_u16(status as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Ok(Some((status, "injected fault").into_response()));
    }
    if fault.get_bool("Malformed").unwrap_or(false) {
        return Ok(Some(
            (
                [(header::CONTENT_TYPE, "application/json")],
                "{\"Data\": {\"Account\": [",
            )
                .into_response(),
        ));
    }
    Ok(None)
}

/// Items per page of a Green Bank list: small, so the sample customers' lists span pages and
/// every client follows `Links.Next`.
const GREEN_PAGE_SIZE: usize = 2;

#[derive(Deserialize)]
struct PageQuery {
    page: Option<usize>,
}

fn page_number(
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<usize, BankError> {
    match query {
        Ok(Query(PageQuery { page: None })) => Ok(1),
        Ok(Query(PageQuery { page: Some(n) })) if n >= 1 => Ok(n),
        _ => Err(BankError::format(
            Institution::GreenBank,
            "page must be a whole number from 1",
        )),
    }
}

/// One page of a UK Open Banking list: `Data`, `Links` (`Self`, and `Next` while more pages
/// follow, as a path-absolute link inside this API) and `Meta.TotalPages`.
fn ob_envelope(self_path: &str, key: &str, items: Vec<Value>, page: usize) -> Json<Value> {
    let link = |n: usize| format!("/banks/green-bank/open-banking/v3.1/aisp/{self_path}?page={n}");
    let total_pages = items.len().div_ceil(GREEN_PAGE_SIZE).max(1);
    let on_page: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(GREEN_PAGE_SIZE))
        .take(GREEN_PAGE_SIZE)
        .collect();
    let mut links = json!({ "Self": link(page) });
    if page < total_pages {
        links["Next"] = link(page + 1).into();
    }
    Json(json!({
        "Data": { key: on_page },
        "Links": links,
        "Meta": { "TotalPages": total_pages },
    }))
}

async fn green_accounts(
    State(banks): State<Banks>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, BankError> {
    let bank = Institution::GreenBank;
    let page = page_number(query)?;
    if let Some(fault) = injected_fault(&banks, bank).await? {
        return Ok(fault);
    }
    let access = authorise(
        &banks.state,
        &headers,
        bank,
        &["ReadAccountsBasic", "ReadAccountsDetail"],
    )
    .await?;
    let detail = access.consent.allows("ReadAccountsDetail");
    let accounts = banks
        .data
        .green(&access.customer_id, "accounts")
        .into_iter()
        .map(|mut account| {
            // Account identification (scheme, number) is detail, not basic information.
            if !detail && let Some(a) = account.as_object_mut() {
                a.remove("Account");
            }
            account
        })
        .collect();
    Ok(ob_envelope("accounts", "Account", accounts, page).into_response())
}

async fn green_balances(
    State(banks): State<Banks>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, BankError> {
    let bank = Institution::GreenBank;
    let page = page_number(query)?;
    if let Some(fault) = injected_fault(&banks, bank).await? {
        return Ok(fault);
    }
    let access = authorise(&banks.state, &headers, bank, &["ReadBalances"]).await?;
    let balances = banks.data.green(&access.customer_id, "balances");
    Ok(ob_envelope("balances", "Balance", balances, page).into_response())
}

async fn green_products(
    State(banks): State<Banks>,
    headers: HeaderMap,
    query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, BankError> {
    let bank = Institution::GreenBank;
    let page = page_number(query)?;
    if let Some(fault) = injected_fault(&banks, bank).await? {
        return Ok(fault);
    }
    let access = authorise(&banks.state, &headers, bank, &["ReadProducts"]).await?;
    let products = banks.data.green(&access.customer_id, "products");
    Ok(ob_envelope("products", "Product", products, page).into_response())
}

#[derive(Deserialize)]
struct AccountsQuery {
    #[serde(rename = "withBalance")]
    with_balance: Option<bool>,
}

async fn mdb_accounts(
    State(banks): State<Banks>,
    headers: HeaderMap,
    query: Result<Query<AccountsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, BankError> {
    let bank = Institution::MongoDbBank;
    let Query(query) =
        query.map_err(|_| BankError::format(bank, "withBalance must be true or false"))?;
    if let Some(fault) = injected_fault(&banks, bank).await? {
        return Ok(fault);
    }
    let access = authorise(
        &banks.state,
        &headers,
        bank,
        &["ReadAccountsBasic", "ReadAccountsDetail"],
    )
    .await?;
    let with_balance = query.with_balance.unwrap_or(false);
    if with_balance && !access.consent.allows("ReadBalances") {
        return Err(BankError::consent_invalid(
            bank,
            "the consent does not cover balances",
        ));
    }
    let accounts: Vec<Value> = banks
        .data
        .mdb(&access.customer_id, "accounts")
        .into_iter()
        .map(|mut account| {
            if let Some(a) = account.as_object_mut() {
                let id = a.get("resourceId").and_then(Value::as_str).unwrap_or_default().to_string();
                if !with_balance {
                    a.remove("balances");
                }
                a.insert("_links".into(), json!({"balances": {"href": format!("/banks/mongodb-bank/v1/accounts/{id}/balances")}}));
            }
            account
        })
        .collect();
    Ok(Json(json!({ "accounts": accounts })).into_response())
}

async fn mdb_loans(State(banks): State<Banks>, headers: HeaderMap) -> Result<Response, BankError> {
    let bank = Institution::MongoDbBank;
    if let Some(fault) = injected_fault(&banks, bank).await? {
        return Ok(fault);
    }
    let access = authorise(&banks.state, &headers, bank, &["ReadProducts"]).await?;
    let loans = banks.data.mdb(&access.customer_id, "loans");
    Ok(Json(json!({ "loans": loans })).into_response())
}

/// Berlin Group card accounts (`/v1/card-accounts`), balances included; a product read.
async fn mdb_cards(State(banks): State<Banks>, headers: HeaderMap) -> Result<Response, BankError> {
    let bank = Institution::MongoDbBank;
    if let Some(fault) = injected_fault(&banks, bank).await? {
        return Ok(fault);
    }
    let access = authorise(&banks.state, &headers, bank, &["ReadProducts"]).await?;
    let cards = banks.data.mdb(&access.customer_id, "cardAccounts");
    Ok(Json(json!({ "cardAccounts": cards })).into_response())
}
