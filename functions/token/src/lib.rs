//! OAuth 2.0 token issuance (RFC 6749: `client_credentials`; `authorization_code` with PKCE
//! S256 and rotating `refresh_token` for consents), revocation (RFC 7009), the JWKS,
//! and the legacy demo login and token check of the reference backend.

mod client_auth;
mod form;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mongodb::bson::{doc, oid::ObjectId};
use serde::Deserialize;
use serde_json::json;

use shared::auth::jwt::{self, Claims};
use shared::auth::tokens;
use shared::error::OAuthError;
use shared::http::{MAX_BODY_BYTES, body_bytes};
use shared::secrets::ClientRecord;
use shared::{AppError, AppState, Legacy, OAuthFailure};
use shared::{consents, oauth};

use client_auth::authenticate_client;
use form::FormParams;

/// Client id recorded for tokens issued by the legacy demo login.
pub const DEMO_LOGIN_CLIENT: &str = "leafy-bank-demo-login";
/// Scope of user tokens for Leafy Bank's own API.
pub const USER_SCOPE: &str = "openfinance";
/// Lifetime of access tokens addressed to an institution: short, refreshed per sync.
pub const INSTITUTION_TOKEN_TTL: Duration = Duration::from_secs(300);

pub fn router(state: AppState) -> Router {
    let mut router = Router::new()
        .route("/oauth/token", post(token))
        .route("/oauth/revoke", post(revoke))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/openapi.json", get(openapi))
        .route(
            "/api/v1/openfinance/secure/validate-token",
            post(validate_token),
        );
    if state.settings.demo_login_enabled {
        router = router.route(
            "/api/v1/openfinance/public/get-authorization",
            get(get_authorization),
        );
    }
    router
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// `POST /oauth/token`.
async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthFailure> {
    let form = FormParams::parse(&headers, &body_bytes(body)?)?;
    let client = authenticate_client(&state, &headers, &form).await?;
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?;
    if !matches!(
        grant_type,
        "client_credentials" | "authorization_code" | "refresh_token"
    ) {
        return Err(OAuthError::unsupported_grant_type(format!(
            "grant_type '{}' is not supported",
            printable(grant_type)
        ))
        .into());
    }
    if !client.grant_types.iter().any(|g| g == grant_type) {
        return Err(
            OAuthError::unauthorized_client("this client may not use this grant type").into(),
        );
    }
    match grant_type {
        "client_credentials" => Ok(client_credentials(&state, &client, form.get("scope")).await?),
        "authorization_code" => {
            let code = form
                .get("code")
                .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
            let verifier = form
                .get("code_verifier")
                .ok_or_else(|| OAuthError::invalid_request("code_verifier is required (PKCE)"))?;
            let grant = oauth::redeem_code(&state.db, code, &client.client_id, verifier).await?;
            Ok(consent_tokens(&state, grant, false, None).await?)
        }
        _ => {
            let refresh = form
                .get("refresh_token")
                .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
            let (grant, spent) =
                oauth::redeem_refresh_token(&state.db, refresh, &client.client_id).await?;
            Ok(consent_tokens(&state, grant, true, Some(&spent)).await?)
        }
    }
}

async fn client_credentials(
    state: &AppState,
    client: &ClientRecord,
    requested_scope: Option<&str>,
) -> Result<Response, AppError> {
    let scope = grant_scope(requested_scope, &client.scopes)?;
    let ttl = state.settings.access_token_ttl;
    let claims = Claims::new(
        &state.settings.issuer,
        &client.client_id,
        &state.settings.api_audience,
        ttl,
        &scope,
        &client.client_id,
    );
    let secret = state.secrets.current().await?;
    let access_token = jwt::issue(&secret.keys, &claims)?;
    tokens::record_issued(&state.db, &access_token, &claims, None).await?;
    Ok(token_response(&access_token, ttl, &scope, None))
}

/// Tokens for an institution, acting under a consent: an access token whose audience is the
/// institution and whose scope is the consent's permissions, and a rotating refresh token that
/// lives as long as the consent.
async fn consent_tokens(
    state: &AppState,
    grant: oauth::Grant,
    require_authorised: bool,
    rotated_from: Option<&str>,
) -> Result<Response, AppError> {
    let consent = consents::get_any(&state.db, grant.consent_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the consent no longer exists"))?;
    let live = consent.status == consents::AUTHORISED
        || (!require_authorised && consent.status == consents::AWAITING);
    if !live || consent.is_past_expiry() || consent.user_id != grant.user_id {
        return Err(OAuthError::invalid_grant("the consent is not active"));
    }
    let scope = consent.permissions.join(" ");
    let mut claims = Claims::new(
        &state.settings.issuer,
        &consent.user_id.to_hex(),
        consent.institution.id(),
        INSTITUTION_TOKEN_TTL,
        &scope,
        &grant.client_id,
    );
    claims.user_name = Some(consent.user_name.clone());
    claims.consent_id = Some(consent.id.to_hex());
    let secret = state.secrets.current().await?;
    let access_token = jwt::issue(&secret.keys, &claims)?;
    tokens::record_issued(&state.db, &access_token, &claims, Some(consent.user_id)).await?;
    let refresh_token =
        oauth::issue_refresh_token(&state.db, &grant, consent.expires_at, rotated_from).await?;
    Ok(token_response(
        &access_token,
        INSTITUTION_TOKEN_TTL,
        &scope,
        Some(&refresh_token),
    ))
}

fn token_response(
    access_token: &str,
    ttl: Duration,
    scope: &str,
    refresh_token: Option<&str>,
) -> Response {
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": ttl.as_secs(),
        "scope": scope,
    });
    if let Some(refresh) = refresh_token {
        body["refresh_token"] = refresh.into();
    }
    no_store((StatusCode::OK, Json(body)).into_response())
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The scope granted: what was asked for, if every part is allowed, else the client's full
/// allowance when nothing was asked for (RFC 6749 §3.3).
fn grant_scope(requested: Option<&str>, allowed: &[String]) -> Result<String, AppError> {
    let Some(requested) = requested.filter(|s| !s.trim().is_empty()) else {
        return Ok(allowed.join(" "));
    };
    let mut granted: Vec<&str> = Vec::new();
    for part in requested.split(' ') {
        if part.is_empty() {
            return Err(OAuthError::invalid_scope(
                "scopes are separated by single spaces",
            ));
        }
        if !allowed.iter().any(|a| a == part) {
            return Err(OAuthError::invalid_scope(format!(
                "scope '{}' is not allowed for this client",
                printable(part)
            )));
        }
        if !granted.contains(&part) {
            granted.push(part);
        }
    }
    Ok(granted.join(" "))
}

/// Echoes client input in messages only in a short, printable form.
fn printable(value: &str) -> String {
    value.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// `POST /oauth/revoke` (RFC 7009): 200 whether or not the token was known.
async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, OAuthFailure> {
    let form = FormParams::parse(&headers, &body_bytes(body)?)?;
    let client = authenticate_client(&state, &headers, &form).await?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let revoked = tokens::revoke(&state.db, token, &client.client_id).await?;
    tracing::info!(client_id = %client.client_id, revoked, "revocation request");
    Ok(no_store(StatusCode::OK.into_response()))
}

/// `GET /.well-known/jwks.json`: the public keys that verify this service's tokens.
async fn jwks(State(state): State<AppState>) -> Result<Response, shared::Problem> {
    let secret = state.secrets.current().await?;
    let mut response = Json(secret.keys.jwks()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}

/// The OpenAPI description of every function's routes, shipped in the repo and compiled in:
/// `GET /openapi.json` (public). Tests check it against `template.yaml` and the routers.
pub const OPENAPI_JSON: &str = include_str!("../../../openapi/openapi.json");

/// `GET /openapi.json`.
async fn openapi() -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        OPENAPI_JSON,
    )
        .into_response()
}

#[derive(Deserialize)]
struct AuthorizationQuery {
    user_identifier: Option<String>,
}

/// Legacy `GET …/public/get-authorization?user_identifier=…`: the demo login, enabled only by
/// configuration. Finds the user by name or ObjectId and returns a JWT for them.
async fn get_authorization(
    State(state): State<AppState>,
    query: Result<Query<AuthorizationQuery>, QueryRejection>,
) -> Result<Json<serde_json::Value>, Legacy> {
    let Query(query) = query
        .map_err(|_| AppError::BadRequest("user_identifier must be given once, as text".into()))?;
    let identifier = query
        .user_identifier
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| AppError::BadRequest("user_identifier is required".into()))?;
    if identifier.len() > 128 {
        return Err(AppError::BadRequest("user_identifier is too long".into()).into());
    }
    // No user name holds one, and PostgreSQL (under FerretDB) cannot take a NUL in a query.
    if identifier.chars().any(char::is_control) {
        return Err(AppError::BadRequest(
            "user_identifier must not contain control characters".into(),
        )
        .into());
    }
    // The value is always a typed string or ObjectId, never a parsed document, so a value like
    // `{"$ne": null}` can only match a user literally named that.
    let filter = match ObjectId::parse_str(&identifier) {
        Ok(id) => doc! {"_id": id},
        Err(_) => doc! {"UserName": &identifier},
    };
    let user = state
        .db
        .users()
        .find_one(filter)
        .projection(doc! {"UserName": 1})
        .await?
        .ok_or_else(|| AppError::NotFound("User not found".into()))?;
    let user_id = user
        .get_object_id("_id")
        .map_err(|_| AppError::Internal("a user document has no ObjectId _id".into()))?;
    let user_name = user
        .get_str("UserName")
        .map_err(|_| AppError::Internal("a user document has no UserName".into()))?
        .to_string();

    let mut claims = Claims::new(
        &state.settings.issuer,
        &user_id.to_hex(),
        &state.settings.api_audience,
        state.settings.access_token_ttl,
        USER_SCOPE,
        DEMO_LOGIN_CLIENT,
    );
    claims.user_name = Some(user_name.clone());
    let secret = state.secrets.current().await?;
    let bearer = jwt::issue(&secret.keys, &claims)?;
    tokens::record_issued(&state.db, &bearer, &claims, Some(user_id)).await?;
    Ok(Json(json!({
        "message": "User authorized successfully",
        "UserName": user_name,
        "BearerToken": bearer,
    })))
}

/// Legacy `POST …/secure/validate-token`.
async fn validate_token(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, Legacy> {
    let principal = shared::auth::authenticate_legacy(&state, &headers).await?;
    let user_name = principal
        .user_name
        .ok_or_else(|| AppError::Forbidden("the token is not bound to a user".into()))?;
    Ok(Json(
        json!({ "message": format!("Bearer Token is valid for user: {user_name}") }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec!["openfinance".into(), "sync".into()]
    }

    #[test]
    fn scope_defaults_to_the_clients_allowance() {
        assert_eq!(grant_scope(None, &allowed()).unwrap(), "openfinance sync");
        assert_eq!(
            grant_scope(Some("  "), &allowed()).unwrap(),
            "openfinance sync"
        );
    }

    #[test]
    fn scope_is_narrowed_and_deduplicated() {
        assert_eq!(grant_scope(Some("sync sync"), &allowed()).unwrap(), "sync");
    }

    #[test]
    fn unknown_or_malformed_scopes_are_invalid_scope() {
        for bad in ["admin", "sync  openfinance", "sync admin"] {
            match grant_scope(Some(bad), &allowed()) {
                Err(AppError::OAuth(e)) => assert_eq!(e.code, "invalid_scope", "{bad}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
