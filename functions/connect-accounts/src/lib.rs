//! Consents (create, list, read, revoke, the emulated customer approval) and connecting the
//! accounts a consent covers, plus the legacy account routes of the reference backend.

mod legacy;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc, oid::ObjectId};
use serde::Deserialize;
use serde_json::{Value, json};

use shared::auth::{authenticate, bearer_token};
use shared::banks::BankGateway;
use shared::connect::connect_accounts;
use shared::consents::TransactionWindow;
use shared::consents::{self, Consent};
use shared::db::{EXTERNAL_ACCOUNTS, OWNER};
use shared::http::{MAX_BODY_BYTES, body_bytes, json_body, plain_json};
use shared::institutions::{
    Institution, PERMISSIONS, TRANSACTION_DIRECTIONS, TRANSACTION_LEVELS, is_permission,
};
use shared::transactions::query::parse_date;
use shared::{AppError, AppState, Problem};

#[derive(Clone)]
pub struct Connect {
    pub state: AppState,
    pub gateway: Arc<BankGateway>,
}

pub fn router(state: AppState, gateway: Arc<BankGateway>) -> Router {
    Router::new()
        .route("/consents", post(create_consent).get(list_consents))
        .route("/consents/{id}", get(get_consent).delete(revoke_consent))
        .route("/consents/{id}/authorise", post(authorise_consent))
        .route("/accounts/connect", post(connect))
        .route("/accounts", get(list_accounts))
        .merge(legacy::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Connect { state, gateway })
}

/// The user a request acts for. Tokens without a user (client tokens) may not act here.
pub(crate) async fn user(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(ObjectId, String), AppError> {
    let principal = authenticate(state, bearer_token(headers)).await?;
    match (principal.user_id, principal.user_name) {
        (Some(id), Some(name)) => Ok((id, name)),
        _ => Err(AppError::Forbidden(
            "this token does not act for a customer".into(),
        )),
    }
}

pub(crate) fn parse_id(value: &str, what: &str) -> Result<ObjectId, AppError> {
    ObjectId::parse_str(value)
        .map_err(|_| AppError::BadRequest(format!("{what} is not a valid id")))
}

fn institution(value: &str) -> Result<Institution, AppError> {
    Institution::parse(value).ok_or_else(|| {
        let known: Vec<&str> = Institution::ALL.iter().map(|i| i.id()).collect();
        AppError::BadRequest(format!(
            "unknown institution; expected one of {}",
            known.join(", ")
        ))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewConsent {
    institution: String,
    permissions: Vec<String>,
    expires_in_days: i64,
    transaction_from_date: Option<String>,
    transaction_to_date: Option<String>,
}

/// The consent's transaction window, if any: both bounds optional, `from` before `to`.
fn transaction_window(request: &NewConsent) -> Result<TransactionWindow, AppError> {
    let from = request
        .transaction_from_date
        .as_deref()
        .map(|v| parse_date(v, "transactionFromDate", false))
        .transpose()?;
    let to = request
        .transaction_to_date
        .as_deref()
        .map(|v| parse_date(v, "transactionToDate", true))
        .transpose()?;
    if let (Some(f), Some(t)) = (from, to)
        && f >= t
    {
        return Err(AppError::BadRequest(
            "transactionFromDate must be before transactionToDate".into(),
        ));
    }
    Ok(TransactionWindow { from, to })
}

/// The UK Open Banking pairing rules: transaction permissions need a level (basic or detail)
/// and a direction (credits and/or debits), and accounts to read them from.
fn check_transaction_permissions(permissions: &[String]) -> Result<(), AppError> {
    let has = |set: &[&str]| permissions.iter().any(|p| set.contains(&p.as_str()));
    let (level, direction) = (has(&TRANSACTION_LEVELS), has(&TRANSACTION_DIRECTIONS));
    if level != direction {
        return Err(AppError::BadRequest(
            "transaction permissions need both a level (ReadTransactionsBasic or ReadTransactionsDetail) and a direction (ReadTransactionsCredits and/or ReadTransactionsDebits)".into(),
        ));
    }
    if level && !has(&["ReadAccountsBasic", "ReadAccountsDetail"]) {
        return Err(AppError::BadRequest(
            "transaction permissions need ReadAccountsBasic or ReadAccountsDetail".into(),
        ));
    }
    Ok(())
}

async fn create_consent(
    State(c): State<Connect>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let (user_id, user_name) = user(&c.state, &headers).await?;
    let request: NewConsent = json_body(&headers, &body_bytes(body)?)?;
    let institution = institution(&request.institution)?;
    if request.permissions.is_empty() {
        return Err(
            AppError::BadRequest("permissions must name at least one permission".into()).into(),
        );
    }
    let mut permissions: Vec<String> = Vec::new();
    for p in request.permissions.iter().cloned() {
        if !is_permission(&p) {
            return Err(AppError::BadRequest(format!(
                "unknown permission; expected some of {}",
                PERMISSIONS.join(", ")
            ))
            .into());
        }
        if !permissions.contains(&p) {
            permissions.push(p);
        }
    }
    check_transaction_permissions(&permissions)?;
    let window = transaction_window(&request)?;
    if window != TransactionWindow::default() && !has_transactions(&permissions) {
        return Err(AppError::BadRequest(
            "a transaction window needs transaction permissions".into(),
        )
        .into());
    }
    if !(1..=consents::MAX_EXPIRY_DAYS).contains(&request.expires_in_days) {
        return Err(AppError::BadRequest(format!(
            "expiresInDays must be between 1 and {}",
            consents::MAX_EXPIRY_DAYS
        ))
        .into());
    }
    let consent = consents::create_with_window(
        &c.state.db,
        user_id,
        &user_name,
        institution,
        permissions,
        request.expires_in_days,
        window,
    )
    .await?;
    let mut response = (StatusCode::CREATED, Json(consent.to_json())).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/consents/{}", consent.id.to_hex())) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

fn has_transactions(permissions: &[String]) -> bool {
    permissions
        .iter()
        .any(|p| TRANSACTION_LEVELS.contains(&p.as_str()))
}

async fn list_consents(
    State(c): State<Connect>,
    headers: HeaderMap,
) -> Result<Json<Value>, Problem> {
    let (user_id, _) = user(&c.state, &headers).await?;
    let list = consents::list(&c.state.db, user_id).await?;
    Ok(Json(
        json!({"consents": list.iter().map(Consent::to_json).collect::<Vec<_>>()}),
    ))
}

async fn own_consent(c: &Connect, headers: &HeaderMap, id: &str) -> Result<Consent, AppError> {
    let (user_id, _) = user(&c.state, headers).await?;
    let id = parse_id(id, "the consent id")?;
    consents::get(&c.state.db, user_id, id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such consent".into()))
}

async fn get_consent(
    State(c): State<Connect>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    Ok(Json(own_consent(&c, &headers, &id).await?.to_json()))
}

async fn revoke_consent(
    State(c): State<Connect>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let consent = own_consent(&c, &headers, &id).await?;
    let revoked = consents::revoke(&c.state.db, consent.user_id, consent.id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such consent".into()))?;
    Ok(Json(revoked.to_json()))
}

/// The emulated customer approval (SCA) at the institution: the institution's authorisation
/// server issues a code bound to Leafy Bank's client, the consent and a PKCE challenge, and
/// Leafy Bank exchanges it at the token endpoint, keeping the tokens encrypted.
async fn authorise_consent(
    State(c): State<Connect>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let consent = own_consent(&c, &headers, &id).await?;
    Ok(Json(
        shared::connect::authorise(&c.state, &c.gateway, &consent)
            .await?
            .to_json(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ConnectRequest {
    consent_id: String,
}

async fn connect(
    State(c): State<Connect>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Problem> {
    let (user_id, _) = user(&c.state, &headers).await?;
    let request: ConnectRequest = json_body(&headers, &body_bytes(body)?)?;
    let consent_id = parse_id(&request.consent_id, "consentId")?;
    let consent = consents::get(&c.state.db, user_id, consent_id)
        .await?
        .ok_or_else(|| AppError::NotFound("no such consent".into()))?;
    let connected = connect_accounts(&c.state, &c.gateway, &consent).await?;
    Ok(Json(json!({
        "accounts": connected.accounts.iter().map(|d| plain_json(&d.clone().into())).collect::<Vec<_>>(),
        "transactions": connected.transactions.to_json(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsQuery {
    institution: Option<String>,
}

async fn list_accounts(
    State(c): State<Connect>,
    headers: HeaderMap,
    query: Result<Query<AccountsQuery>, QueryRejection>,
) -> Result<Json<Value>, Problem> {
    let (user_id, _) = user(&c.state, &headers).await?;
    let Query(query) = query
        .map_err(|_| AppError::BadRequest("the only query parameter is institution".into()))?;
    let institution = query.institution.as_deref().map(institution).transpose()?;
    let accounts = accounts_of(&c.state, user_id, institution, true).await?;
    Ok(Json(json!({"accounts": accounts})))
}

/// The user's external accounts (optionally at one institution), oldest first.
pub(crate) async fn accounts_of(
    state: &AppState,
    user_id: ObjectId,
    institution: Option<Institution>,
    include_disconnected: bool,
) -> Result<Vec<Value>, AppError> {
    let mut filter = doc! {OWNER: user_id};
    if let Some(i) = institution {
        filter.insert("AccountBank", i.display_name());
    }
    if !include_disconnected {
        filter.insert("Provenance.ConnectionStatus", doc! {"$ne": "Disconnected"});
    }
    let docs: Vec<Document> = state
        .db
        .open_finance
        .collection::<Document>(EXTERNAL_ACCOUNTS)
        .find(filter)
        .sort(doc! {"_id": 1})
        .await?
        .try_collect()
        .await?;
    Ok(docs.into_iter().map(|d| plain_json(&d.into())).collect())
}
