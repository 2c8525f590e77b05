//! The reference backend's totals, unchanged for the existing Leafy Bank UI: `{"detail": …}`
//! errors, 403 when the token's user is not the `user_id` of the body. Semantics (DESIGN §6):
//! total balance = the user's Leafy Bank accounts + the listed external accounts; total debt =
//! the listed loans and mortgages. Listed ids of another user are simply not counted; items of
//! a revoked consent (disconnected) and closed products are not counted either, as the legacy
//! account listing no longer shows them. Each total is one number in the customer's reporting
//! currency, other currencies converted at the reference rates (`shared::fx`).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use mongodb::bson::oid::ObjectId;
use serde::Deserialize;
use serde_json::{Value, json};

use shared::auth::{Principal, authenticate_legacy};
use shared::http::{body_bytes, json_body, with_or_without_slash};
use shared::insights::summary::round2;
use shared::insights::{legacy_total_balance, legacy_total_debt};
use shared::{AppError, AppState, Legacy};

const PREFIX: &str = "/api/v1/openfinance/secure";
/// More ids than anyone connects; the body limit would stop a list far longer anyway.
pub const MAX_LISTED_IDS: usize = 500;

pub fn routes() -> Router<AppState> {
    let router = with_or_without_slash(
        Router::new(),
        &format!("{PREFIX}/calculate-total-balance-for-user/"),
        post(total_balance),
    );
    with_or_without_slash(
        router,
        &format!("{PREFIX}/calculate-total-debt-for-user/"),
        post(total_debt),
    )
}

/// Other fields (the reference's clients also send `consent_id`) are ignored.
#[derive(Deserialize)]
struct BalanceRequest {
    user_id: String,
    #[serde(default)]
    connected_external_accounts: Option<Value>,
}

#[derive(Deserialize)]
struct DebtRequest {
    user_id: String,
    #[serde(default)]
    connected_external_products: Option<Value>,
}

/// The token's user, who must be the `user_id` of the body.
fn same_user(principal: &Principal, user_id: &str) -> Result<ObjectId, AppError> {
    let claimed = ObjectId::parse_str(user_id.trim())
        .map_err(|_| AppError::BadRequest("user_id is not a valid id".into()))?;
    match principal.user_id {
        Some(id) if id == claimed => Ok(id),
        _ => Err(AppError::Forbidden(
            "the token does not belong to this user".into(),
        )),
    }
}

/// A required list of ObjectId strings (`[]` for none), deduplicated.
fn listed_ids(value: Option<&Value>, field: &str) -> Result<Vec<ObjectId>, AppError> {
    let value = value.ok_or_else(|| {
        AppError::BadRequest(format!("{field} is required: a list of ids ([] for none)"))
    })?;
    let items = value
        .as_array()
        .ok_or_else(|| AppError::BadRequest(format!("{field} must be a list of ids")))?;
    if items.len() > MAX_LISTED_IDS {
        return Err(AppError::BadRequest(format!(
            "{field} lists more than {MAX_LISTED_IDS} ids"
        )));
    }
    let mut ids = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_str()
                .and_then(|s| ObjectId::parse_str(s).ok())
                .ok_or_else(|| {
                    AppError::BadRequest(format!(
                        "{field}[{i}] is not a valid id (24 hexadecimal characters)"
                    ))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// The reference answers integral sums as integers; other amounts have 2 decimals.
pub fn legacy_amount(value: f64) -> Value {
    let value = round2(value);
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

/// `POST …/calculate-total-balance-for-user/`: authentication plus 1 round trip, 2 (sent
/// concurrently, one per database) when external accounts are listed.
async fn total_balance(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Legacy> {
    let principal = authenticate_legacy(&state, &headers).await?;
    let body = body_bytes(body)?;
    let request: BalanceRequest = json_body(&headers, &body)?;
    let user_id = same_user(&principal, &request.user_id)?;
    let ids = listed_ids(
        request.connected_external_accounts.as_ref(),
        "connected_external_accounts",
    )?;
    let total = legacy_total_balance(&state, user_id, &ids).await?;
    Ok(Json(json!({"total_balance": legacy_amount(total.total)})))
}

/// `POST …/calculate-total-debt-for-user/`: authentication plus 2 concurrent round trips (none
/// when no products are listed).
async fn total_debt(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, Legacy> {
    let principal = authenticate_legacy(&state, &headers).await?;
    let body = body_bytes(body)?;
    let request: DebtRequest = json_body(&headers, &body)?;
    let user_id = same_user(&principal, &request.user_id)?;
    let ids = listed_ids(
        request.connected_external_products.as_ref(),
        "connected_external_products",
    )?;
    let total = legacy_total_debt(&state, user_id, &ids).await?;
    Ok(Json(json!({"total_debt": legacy_amount(total.total)})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_ids_are_required_lists_of_object_ids() {
        let field = "connected_external_accounts";
        let id = "678a48b4a9711d00a3aa06dc";
        let ids = listed_ids(Some(&json!([id, id])), field).unwrap();
        assert_eq!(ids, [ObjectId::parse_str(id).unwrap()]);
        assert_eq!(listed_ids(Some(&json!([])), field).unwrap(), []);
        for bad in [
            None,
            Some(json!(null)),
            Some(json!(id)),
            Some(json!({"id": id})),
            Some(json!([id, "abc"])),
            Some(json!([5])),
            Some(json!([{"$oid": id}])),
            Some(json!(vec![id; MAX_LISTED_IDS + 1])),
        ] {
            let e = listed_ids(bad.as_ref(), field).unwrap_err();
            assert_eq!(e.status().as_u16(), 400, "{bad:?}");
            assert!(e.to_string().contains(field), "{e}");
        }
        let e = listed_ids(Some(&json!([id, "nope"])), field).unwrap_err();
        assert!(e.to_string().contains("[1]"), "{e}");
    }

    #[test]
    fn amounts_look_like_the_references() {
        assert_eq!(legacy_amount(29_797.0), json!(29_797));
        assert_eq!(legacy_amount(0.0), json!(0));
        assert_eq!(legacy_amount(10.005_1), json!(10.01));
        assert_eq!(legacy_amount(-12.5), json!(-12.5));
    }
}
