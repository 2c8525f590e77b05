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
mod ledger;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
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
use ledger::LedgerAccount;
use shared::institutions::TRANSACTION_LEVELS;
use shared::transactions::encode;

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
        .route(
            "/banks/green-bank/open-banking/v3.1/aisp/accounts/{account_id}/transactions",
            get(green_transactions),
        )
        .route("/banks/mongodb-bank/v1/accounts", get(mdb_accounts))
        .route(
            "/banks/mongodb-bank/v1/accounts/{resource_id}/transactions",
            get(mdb_transactions),
        )
        .route(
            "/banks/mongodb-bank/v1/card-accounts/{resource_id}/transactions",
            get(mdb_card_transactions),
        )
        .route("/banks/mongodb-bank/v1/loans", get(mdb_loans))
        .route("/banks/mongodb-bank/v1/card-accounts", get(mdb_cards))
        .with_state(banks)
}

/// An injected fault, if configuration allows them and one is set for `institution`.
async fn injected_fault(
    banks: &Banks,
    institution: Institution,
) -> Result<Option<Response>, BankError> {
    match fault_settings(banks, institution).await? {
        Some(settings) => Ok(apply_fault(&settings).await),
        None => Ok(None),
    }
}

/// The institution's fault settings (`FAULTS`, by institution id), when faults are enabled.
async fn fault_settings(
    banks: &Banks,
    institution: Institution,
) -> Result<Option<Document>, BankError> {
    if !banks.faults_enabled {
        return Ok(None);
    }
    banks
        .state
        .db
        .open_finance
        .collection::<Document>(FAULTS)
        .find_one(doc! {"_id": institution.id()})
        .await
        .map_err(|e| BankError::internal(institution, e.into()))
}

/// The latency, status or malformed body the settings ask for.
async fn apply_fault(fault: &Document) -> Option<Response> {
    if let Ok(ms) = fault
        .get_i64("LatencyMs")
        .or_else(|_| fault.get_i32("LatencyMs").map(i64::from))
    {
        tokio::time::sleep(Duration::from_millis(ms.clamp(0, 30_000) as u64)).await;
    }
    if let Ok(status) = fault.get_i32("Status") {
        let status =
            StatusCode::from_u16(status as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Some((status, "injected fault").into_response());
    }
    if fault.get_bool("Malformed").unwrap_or(false) {
        return Some(
            (
                [(header::CONTENT_TYPE, "application/json")],
                "{\"Data\": {\"Account\": [",
            )
                .into_response(),
        );
    }
    None
}

/// The bank's calendar day: today (UTC), or the settings' `Today` (`YYYY-MM-DD`) where faults
/// are enabled, so tests can move the ledger on (pending items booking, new days arriving).
fn bank_today(settings: Option<&Document>) -> chrono::NaiveDate {
    settings
        .and_then(|s| s.get_str("Today").ok())
        .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .unwrap_or_else(|| chrono::Utc::now().date_naive())
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

/// Transactions per page of either bank's transaction list.
const TRANSACTION_PAGE_SIZE: usize = 100;

/// The customer's whole portfolio at both banks, as the ledger generator sees it (transfers
/// between own accounts cross banks).
fn portfolio(data: &BankData, customer: &str) -> Vec<LedgerAccount> {
    let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let mut accounts: Vec<LedgerAccount> = data
        .green(customer, "accounts")
        .iter()
        .map(|a| LedgerAccount {
            external_id: text(a, "AccountId"),
            number: a
                .pointer("/Account/0/Identification")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            checking: a["AccountSubType"] == "CurrentAccount",
            savings: a["AccountSubType"] == "Savings",
            card: false,
            currency: text(a, "Currency"),
        })
        .collect();
    accounts.extend(
        data.mdb(customer, "accounts")
            .iter()
            .map(|a| LedgerAccount {
                external_id: text(a, "resourceId"),
                number: text(a, "bban"),
                checking: a["cashAccountType"] == "CACC",
                savings: a["cashAccountType"] == "SVGS",
                card: false,
                currency: text(a, "currency"),
            }),
    );
    accounts.extend(
        data.mdb(customer, "cardAccounts")
            .iter()
            .map(|a| LedgerAccount {
                external_id: text(a, "resourceId"),
                number: text(a, "maskedPan"),
                checking: false,
                savings: false,
                card: true,
                currency: text(a, "currency"),
            }),
    );
    accounts
}

/// The window a request may see: its own bounds within the consent's and the bank's horizon.
fn visible(
    access: &guard::Access,
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
    today: chrono::NaiveDate,
) -> (chrono::NaiveDate, chrono::NaiveDate) {
    let day = |at: mongodb::bson::DateTime| {
        chrono::DateTime::from_timestamp_millis(at.timestamp_millis()).map(|t| t.date_naive())
    };
    let mut start = today - chrono::Duration::days(ledger::HORIZON_DAYS);
    let mut end = today;
    for bound in [from, access.consent.transaction_from.and_then(day)]
        .into_iter()
        .flatten()
    {
        start = start.max(bound);
    }
    for bound in [to, access.consent.transaction_to.and_then(day)]
        .into_iter()
        .flatten()
    {
        end = end.min(bound);
    }
    (start, end)
}

/// The account's entries the consent may see: inside the window, of the directions it covers.
fn visible_entries(
    data: &BankData,
    access: &guard::Access,
    account: &LedgerAccount,
    window: (chrono::NaiveDate, chrono::NaiveDate),
    today: chrono::NaiveDate,
) -> Vec<ledger::Entry> {
    let customer = &access.customer_id;
    let credits = access.consent.allows("ReadTransactionsCredits");
    let debits = access.consent.allows("ReadTransactionsDebits");
    ledger::entries(customer, &portfolio(data, customer), account, today)
        .into_iter()
        .filter(|e| e.date >= window.0 && e.date <= window.1)
        .filter(|e| if e.amount_minor > 0 { credits } else { debits })
        .collect()
}

fn decimal(minor: i64) -> String {
    format!("{}.{:02}", minor.abs() / 100, minor.abs() % 100)
}

fn transactions_access(bank: Institution, access: &guard::Access) -> Result<(), BankError> {
    if access.consent.reads_transactions() {
        Ok(())
    } else {
        Err(BankError::consent_invalid(
            bank,
            "the consent does not cover transactions",
        ))
    }
}

#[derive(Deserialize)]
struct GreenTransactionsQuery {
    #[serde(rename = "fromBookingDateTime")]
    from: Option<String>,
    #[serde(rename = "toBookingDateTime")]
    to: Option<String>,
    page: Option<usize>,
}

/// An ISODateTime bound (RFC 3339, or without an offset as UTC), as a calendar day.
fn ob_day(value: &str) -> Option<chrono::NaiveDate> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Some(t.with_timezone(&chrono::Utc).date_naive());
    }
    chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S")
        .ok()
        .map(|t| t.date())
}

/// UK Open Banking `GET /accounts/{AccountId}/transactions`.
async fn green_transactions(
    State(banks): State<Banks>,
    headers: HeaderMap,
    Path(account_id): Path<String>,
    query: Result<Query<GreenTransactionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, BankError> {
    let bank = Institution::GreenBank;
    let Query(query) = query.map_err(|_| BankError::format(bank, "malformed query parameters"))?;
    let page = query.page.unwrap_or(1);
    let bound = |v: &Option<String>, name: &str| {
        v.as_deref()
            .map(|s| {
                ob_day(s)
                    .ok_or_else(|| BankError::format(bank, format!("{name} is not an ISODateTime")))
            })
            .transpose()
    };
    let (from, to) = (
        bound(&query.from, "fromBookingDateTime")?,
        bound(&query.to, "toBookingDateTime")?,
    );
    if page == 0 || from.zip(to).is_some_and(|(f, t)| f > t) {
        return Err(BankError::format(
            bank,
            "page must be from 1 and from not after to",
        ));
    }
    let settings = fault_settings(&banks, bank).await?;
    if let Some(settings) = &settings
        && let Some(fault) = apply_fault(settings).await
    {
        return Ok(fault);
    }
    let access = authorise(&banks.state, &headers, bank, &TRANSACTION_LEVELS).await?;
    transactions_access(bank, &access)?;
    let accounts = portfolio(&banks.data, &access.customer_id);
    let account = accounts
        .iter()
        .find(|a| a.external_id == account_id && account_id.starts_with("GB-") && !a.card)
        .ok_or_else(|| BankError::not_found(bank, "no such account"))?;
    let today = bank_today(settings.as_ref());
    let window = visible(&access, from, to, today);
    let detail = access.consent.allows("ReadTransactionsDetail");
    let entries = visible_entries(&banks.data, &access, account, window, today);
    let total_pages = entries.len().div_ceil(TRANSACTION_PAGE_SIZE).max(1);
    let items: Vec<Value> = entries
        .iter()
        .skip((page - 1).saturating_mul(TRANSACTION_PAGE_SIZE))
        .take(TRANSACTION_PAGE_SIZE)
        .map(|e| {
            let (code, sub) = e.kind.ob_code();
            let at = format!("{}T00:00:00+00:00", e.date.format("%Y-%m-%d"));
            let mut t = json!({
                "AccountId": account.external_id,
                "TransactionId": if e.pending { &e.pending_id } else { &e.booked_id },
                "Status": if e.pending { "Pending" } else { "Booked" },
                "BookingDateTime": at, "ValueDateTime": at,
                "CreditDebitIndicator": if e.amount_minor > 0 { "Credit" } else { "Debit" },
                "Amount": {"Amount": decimal(e.amount_minor), "Currency": account.currency},
                "BankTransactionCode": {"Code": code, "SubCode": sub},
            });
            if detail {
                t["TransactionInformation"] = e.description.clone().into();
                if let Some(mcc) = e.merchant_category_code {
                    t["MerchantDetails"] =
                        json!({"MerchantName": e.counterparty, "MerchantCategoryCode": mcc});
                }
                let side = if e.amount_minor > 0 {
                    "DebtorAccount"
                } else {
                    "CreditorAccount"
                };
                t[side] =
                    json!({"SchemeName": "UK.OBIE.SortCodeAccountNumber", "Name": e.counterparty});
                if let Some(number) = &e.counterparty_account {
                    t[side]["Identification"] = number.clone().into();
                }
            }
            t
        })
        .collect();
    let link = |n: usize| {
        let mut l = format!(
            "/banks/green-bank/open-banking/v3.1/aisp/accounts/{}/transactions?page={n}",
            encode(&account.external_id)
        );
        for (k, v) in [
            ("fromBookingDateTime", &query.from),
            ("toBookingDateTime", &query.to),
        ] {
            if let Some(v) = v {
                l.push_str(&format!("&{k}={}", encode(v)));
            }
        }
        l
    };
    let mut links = json!({"Self": link(page)});
    if page < total_pages {
        links["Next"] = link(page + 1).into();
    }
    Ok(Json(json!({
        "Data": {"Transaction": items},
        "Links": links,
        "Meta": {"TotalPages": total_pages,
                 "FirstAvailableDateTime": format!("{}T00:00:00+00:00", window.0),
                 "LastAvailableDateTime": format!("{}T00:00:00+00:00", window.1)},
    }))
    .into_response())
}

#[derive(Deserialize)]
struct MdbTransactionsQuery {
    #[serde(rename = "bookingStatus")]
    booking_status: Option<String>,
    #[serde(rename = "dateFrom")]
    date_from: Option<String>,
    #[serde(rename = "dateTo")]
    date_to: Option<String>,
    page: Option<usize>,
}

type MdbQuery = Result<Query<MdbTransactionsQuery>, axum::extract::rejection::QueryRejection>;

/// Berlin Group `GET /v1/accounts/{resourceId}/transactions`.
async fn mdb_transactions(
    State(banks): State<Banks>,
    headers: HeaderMap,
    Path(resource_id): Path<String>,
    query: MdbQuery,
) -> Result<Response, BankError> {
    mdb_transaction_list(&banks, &headers, &resource_id, query, false).await
}

/// Berlin Group `GET /v1/card-accounts/{resourceId}/transactions` (`cardTransactions`). Card
/// accounts are read under `ReadProducts` here, so their transactions need it too.
async fn mdb_card_transactions(
    State(banks): State<Banks>,
    headers: HeaderMap,
    Path(resource_id): Path<String>,
    query: MdbQuery,
) -> Result<Response, BankError> {
    mdb_transaction_list(&banks, &headers, &resource_id, query, true).await
}

async fn mdb_transaction_list(
    banks: &Banks,
    headers: &HeaderMap,
    resource_id: &str,
    query: MdbQuery,
    card: bool,
) -> Result<Response, BankError> {
    let bank = Institution::MongoDbBank;
    let Query(query) = query.map_err(|_| BankError::format(bank, "malformed query parameters"))?;
    let (booked, pending) = match query.booking_status.as_deref() {
        Some("booked") => (true, false),
        Some("pending") => (false, true),
        Some("both") => (true, true),
        _ => {
            return Err(BankError::format(
                bank,
                "bookingStatus must be booked, pending or both",
            ));
        }
    };
    let day = |v: &Option<String>, name: &str| {
        v.as_deref()
            .map(|s| {
                chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|_| BankError::format(bank, format!("{name} is not an ISODate")))
            })
            .transpose()
    };
    let (from, to) = (
        day(&query.date_from, "dateFrom")?,
        day(&query.date_to, "dateTo")?,
    );
    let page = query.page.unwrap_or(1);
    if page == 0 || from.zip(to).is_some_and(|(f, t)| f > t) {
        return Err(BankError::format(
            bank,
            "page must be from 1 and dateFrom not after dateTo",
        ));
    }
    let settings = fault_settings(banks, bank).await?;
    if let Some(settings) = &settings
        && let Some(fault) = apply_fault(settings).await
    {
        return Ok(fault);
    }
    let access = authorise(&banks.state, headers, bank, &TRANSACTION_LEVELS).await?;
    transactions_access(bank, &access)?;
    if card && !access.consent.allows("ReadProducts") {
        return Err(BankError::consent_invalid(
            bank,
            "card accounts are read under ReadProducts",
        ));
    }
    let accounts = portfolio(&banks.data, &access.customer_id);
    let account = accounts
        .iter()
        .find(|a| a.external_id == resource_id && resource_id.starts_with("mdb-") && a.card == card)
        .ok_or_else(|| BankError::not_found(bank, "no such account"))?;
    let today = bank_today(settings.as_ref());
    let window = visible(&access, from, to, today);
    let detail = access.consent.allows("ReadTransactionsDetail");
    let entries = visible_entries(&banks.data, &access, account, window, today);
    let render = |e: &ledger::Entry| {
        if card {
            return card_transaction(e, account, detail);
        }
        let mut t = json!({
            "transactionId": if e.pending { &e.pending_id } else { &e.booked_id },
            "entryReference": e.booked_id,
            "valueDate": e.date.format("%Y-%m-%d").to_string(),
            "transactionAmount": {"amount": format!("{}{}", if e.amount_minor < 0 { "-" } else { "" }, decimal(e.amount_minor)), "currency": account.currency},
            "bankTransactionCode": e.kind.iso_code(),
        });
        if !e.pending {
            t["bookingDate"] = e.date.format("%Y-%m-%d").to_string().into();
        }
        if detail {
            t["remittanceInformationUnstructured"] = e.description.clone().into();
            let (name, side) = if e.amount_minor > 0 {
                ("debtorName", "debtorAccount")
            } else {
                ("creditorName", "creditorAccount")
            };
            t[name] = e.counterparty.clone().into();
            if let Some(number) = &e.counterparty_account {
                t[side] = json!({"bban": number});
            }
            if let Some(mcc) = e.merchant_category_code {
                t["merchantCategoryCode"] = mcc.into();
            }
        }
        t
    };
    let booked_items: Vec<&ledger::Entry> = entries.iter().filter(|e| !e.pending).collect();
    let total_pages = booked_items.len().div_ceil(TRANSACTION_PAGE_SIZE).max(1);
    let resource = if card { "card-accounts" } else { "accounts" };
    let mut transactions = json!({
        "_links": {"account": {"href": format!("/banks/mongodb-bank/v1/{resource}/{}", encode(&account.external_id))}},
    });
    if booked {
        transactions["booked"] = booked_items
            .iter()
            .skip((page - 1).saturating_mul(TRANSACTION_PAGE_SIZE))
            .take(TRANSACTION_PAGE_SIZE)
            .map(|e| render(e))
            .collect::<Vec<_>>()
            .into();
    }
    if pending {
        transactions["pending"] = if page == 1 {
            entries
                .iter()
                .filter(|e| e.pending)
                .map(render)
                .collect::<Vec<_>>()
        } else {
            Vec::new()
        }
        .into();
    }
    if booked && page < total_pages {
        let mut next = format!(
            "/banks/mongodb-bank/v1/{resource}/{}/transactions?bookingStatus={}&page={}",
            encode(&account.external_id),
            query.booking_status.as_deref().unwrap_or("both"),
            page + 1
        );
        for (k, v) in [("dateFrom", &query.date_from), ("dateTo", &query.date_to)] {
            if let Some(v) = v {
                next.push_str(&format!("&{k}={}", encode(v)));
            }
        }
        transactions["_links"]["next"] = json!({"href": next});
    }
    Ok(Json(if card {
        json!({
            "cardAccount": {"maskedPan": account.number, "currency": account.currency},
            "cardTransactions": transactions,
        })
    } else {
        json!({
            "account": {"bban": account.number, "currency": account.currency},
            "transactions": transactions,
        })
    })
    .into_response())
}

/// One Berlin Group `cardTransaction`: the merchant in `transactionDetails`.
fn card_transaction(e: &ledger::Entry, account: &LedgerAccount, detail: bool) -> Value {
    let mut t = json!({
        "cardTransactionId": if e.pending { &e.pending_id } else { &e.booked_id },
        "transactionDate": e.date.format("%Y-%m-%d").to_string(),
        "transactionAmount": {"amount": format!("{}{}", if e.amount_minor < 0 { "-" } else { "" }, decimal(e.amount_minor)), "currency": account.currency},
        "maskedPAN": account.number,
    });
    if !e.pending {
        t["bookingDate"] = e.date.format("%Y-%m-%d").to_string().into();
    }
    if detail {
        t["transactionDetails"] = e.counterparty.clone().into();
        if let Some(mcc) = e.merchant_category_code {
            t["merchantCategoryCode"] = mcc.into();
        }
    }
    t
}
