//! The reference backend's account routes, unchanged for the existing Leafy Bank UI:
//! `{"detail": …}` errors, 403 when the token's user is not the user named in the request.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};

use serde::Deserialize;
use serde_json::{Value, json};

use shared::auth::{authenticate_legacy, legacy_same_user};
use shared::connect::connect_accounts;
use shared::consents;
use shared::http::{body_bytes, json_body, with_or_without_slash};
use shared::institutions::Institution;
use shared::{AppError, Legacy};

use crate::{Connect, accounts_of, parse_id};

const PREFIX: &str = "/api/v1/openfinance/secure";

pub fn routes() -> Router<Connect> {
    let router = with_or_without_slash(
        Router::new(),
        &format!("{PREFIX}/fetch-external-accounts-for-user/"),
        get(fetch_for_user),
    );
    let router = with_or_without_slash(
        router,
        &format!("{PREFIX}/fetch-external-accounts-for-user-and-institution/"),
        get(fetch_for_user_and_institution),
    );
    router.route(
        &format!("{PREFIX}/retrieve-external-account-for-user"),
        post(retrieve_for_user),
    )
}

#[derive(Deserialize)]
struct UserQuery {
    user_identifier: Option<String>,
    institution_name: Option<String>,
}

fn required<'a>(value: &'a Option<String>, name: &str) -> Result<&'a str, AppError> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| AppError::BadRequest(format!("{name} is required")))
}

async fn fetch_for_user(
    State(c): State<Connect>,
    headers: HeaderMap,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> Result<Json<Value>, Legacy> {
    let principal = authenticate_legacy(&c.state, &headers).await?;
    let Query(query) =
        query.map_err(|_| AppError::BadRequest("invalid query parameters".into()))?;
    let user_id = legacy_same_user(
        &principal,
        required(&query.user_identifier, "user_identifier")?,
    )?;
    let accounts = accounts_of(&c.state, user_id, None, false).await?;
    Ok(Json(json!({"accounts": accounts})))
}

async fn fetch_for_user_and_institution(
    State(c): State<Connect>,
    headers: HeaderMap,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> Result<Json<Value>, Legacy> {
    let principal = authenticate_legacy(&c.state, &headers).await?;
    let Query(query) =
        query.map_err(|_| AppError::BadRequest("invalid query parameters".into()))?;
    let user_id = legacy_same_user(
        &principal,
        required(&query.user_identifier, "user_identifier")?,
    )?;
    let name = required(&query.institution_name, "institution_name")?;
    let institution = Institution::parse(name)
        .ok_or_else(|| AppError::BadRequest("unknown institution_name".into()))?;
    let accounts = accounts_of(&c.state, user_id, Some(institution), false).await?;
    Ok(Json(json!({"accounts": accounts})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetrieveRequest {
    account_bank: String,
    user_name: String,
    user_id: String,
}

/// Retrieves the user's accounts from the named bank's API under the user's authorised
/// consent for that bank, stores them, and answers the first one's id. Without such a consent
/// nothing is fetched: consent comes first.
async fn retrieve_for_user(
    State(c): State<Connect>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Legacy> {
    let principal = authenticate_legacy(&c.state, &headers).await?;
    let request: RetrieveRequest = json_body(&headers, &body_bytes(body)?)?;
    let user_id = parse_id(&request.user_id, "user_id")?;
    if legacy_same_user(&principal, &request.user_name)? != user_id {
        return Err(AppError::Forbidden("the token does not belong to this user".into()).into());
    }
    let institution = Institution::parse(&request.account_bank)
        .ok_or_else(|| AppError::BadRequest("unknown account_bank".into()))?;
    let consent = consents::list(&c.state.db, user_id)
        .await?
        .into_iter()
        .find(|c| c.institution == institution && c.status == consents::AUTHORISED)
        .ok_or_else(|| {
            AppError::Conflict(format!(
                "no authorised consent for {}: create and authorise one first (POST /consents)",
                institution.display_name()
            ))
        })?;
    let connected = connect_accounts(&c.state, &c.gateway, &consent).await?;
    let first = connected
        .accounts
        .first()
        .and_then(|a| a.get_object_id("_id").ok())
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "{} holds no accounts for this user",
                institution.display_name()
            ))
        })?;
    Ok(Json(json!({
        "message": format!("Account retrieved from {}", institution.display_name()),
        "account_id": first.to_hex(),
    })))
}
