//! The reference backend's product routes, unchanged for the existing Leafy Bank UI.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use mongodb::bson::oid::ObjectId;
use serde::Deserialize;
use serde_json::{Value, json};

use shared::auth::{authenticate_legacy, legacy_same_user};
use shared::consents;
use shared::http::{body_bytes, json_body, with_or_without_slash};
use shared::institutions::Institution;
use shared::sync::sync_consent;
use shared::{AppError, Legacy};

use crate::{Sync, products_of};

const PREFIX: &str = "/api/v1/openfinance/secure";

pub fn routes() -> Router<Sync> {
    let router = with_or_without_slash(
        Router::new(),
        &format!("{PREFIX}/fetch-external-products-for-user/"),
        get(fetch_for_user),
    );
    let router = with_or_without_slash(
        router,
        &format!("{PREFIX}/fetch-external-products-for-user-and-institution/"),
        get(fetch_for_user_and_institution),
    );
    router.route(
        &format!("{PREFIX}/retrieve-external-product-for-user"),
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
    State(s): State<Sync>,
    headers: HeaderMap,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> Result<Json<Value>, Legacy> {
    let principal = authenticate_legacy(&s.state, &headers).await?;
    let Query(query) =
        query.map_err(|_| AppError::BadRequest("invalid query parameters".into()))?;
    let user_id = legacy_same_user(
        &principal,
        required(&query.user_identifier, "user_identifier")?,
    )?;
    Ok(Json(
        json!({"products": products_of(&s.state, user_id, None, None, false).await?}),
    ))
}

async fn fetch_for_user_and_institution(
    State(s): State<Sync>,
    headers: HeaderMap,
    query: Result<Query<UserQuery>, QueryRejection>,
) -> Result<Json<Value>, Legacy> {
    let principal = authenticate_legacy(&s.state, &headers).await?;
    let Query(query) =
        query.map_err(|_| AppError::BadRequest("invalid query parameters".into()))?;
    let user_id = legacy_same_user(
        &principal,
        required(&query.user_identifier, "user_identifier")?,
    )?;
    let institution = Institution::parse(required(&query.institution_name, "institution_name")?)
        .ok_or_else(|| AppError::BadRequest("unknown institution_name".into()))?;
    Ok(Json(
        json!({"products": products_of(&s.state, user_id, Some(institution), None, false).await?}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetrieveRequest {
    product_bank: String,
    user_name: String,
    user_id: String,
}

/// Syncs the named bank's products for the user under their authorised consent for that bank
/// (one that covers products), and answers the first product's id.
async fn retrieve_for_user(
    State(s): State<Sync>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Legacy> {
    let principal = authenticate_legacy(&s.state, &headers).await?;
    let request: RetrieveRequest = json_body(&headers, &body_bytes(body)?)?;
    let user_id = ObjectId::parse_str(&request.user_id)
        .map_err(|_| AppError::BadRequest("user_id is not a valid id".into()))?;
    if legacy_same_user(&principal, &request.user_name)? != user_id {
        return Err(AppError::Forbidden("the token does not belong to this user".into()).into());
    }
    let institution = Institution::parse(&request.product_bank)
        .ok_or_else(|| AppError::BadRequest("unknown product_bank".into()))?;
    let consent = consents::list(&s.state.db, user_id)
        .await?
        .into_iter()
        .find(|c| c.institution == institution && c.status == consents::AUTHORISED && c.allows("ReadProducts"))
        .ok_or_else(|| {
            AppError::Conflict(format!(
                "no authorised consent covering products at {}: create and authorise one first (POST /consents)",
                institution.display_name()
            ))
        })?;
    let outcome = sync_consent(
        &s.state,
        &s.gateway,
        &consent,
        &s.options,
        None,
        shared::sync::Access::Attended,
    )
    .await;
    let reason = || {
        outcome
            .error
            .clone()
            .unwrap_or_else(|| "the sync did not complete".into())
    };
    match outcome.status.as_str() {
        "Synced" => {}
        // Another run holds the consent's lease: try again shortly.
        "Skipped" => return Err(AppError::Conflict(reason()).into()),
        "Expired" => {
            return Err(AppError::Forbidden("the consent has expired".into()).into());
        }
        _ => return Err(AppError::BadGateway(reason()).into()),
    }
    let first = products_of(&s.state, user_id, Some(institution), None, false)
        .await?
        .into_iter()
        .next()
        .and_then(|p| p["_id"].as_str().map(String::from))
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "{} holds no products for this user",
                institution.display_name()
            ))
        })?;
    Ok(Json(json!({
        "message": format!("Product retrieved from {}", institution.display_name()),
        "product_id": first,
    })))
}
