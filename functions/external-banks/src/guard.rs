//! Access control of the emulated institutions, and their errors in each standard's format.

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use mongodb::bson::oid::ObjectId;
use serde_json::json;

use shared::AppError;
use shared::AppState;
use shared::auth::{bearer_token, jwt};
use shared::consents::{self, Consent};
use shared::institutions::Institution;

/// A caller the institution let in: the consent it acts under, and whose data it may read.
pub struct Access {
    pub consent: Consent,
    pub customer_id: String,
}

#[derive(Debug)]
pub struct BankError {
    institution: Institution,
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl BankError {
    fn new(
        institution: Institution,
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        BankError {
            institution,
            status,
            code,
            message: message.into(),
        }
    }
    pub fn token_invalid(i: Institution, message: impl Into<String>) -> Self {
        Self::new(i, StatusCode::UNAUTHORIZED, "TOKEN_INVALID", message)
    }
    pub fn consent_invalid(i: Institution, message: impl Into<String>) -> Self {
        Self::new(i, StatusCode::FORBIDDEN, "CONSENT_INVALID", message)
    }
    pub fn consent_expired(i: Institution, message: impl Into<String>) -> Self {
        Self::new(i, StatusCode::FORBIDDEN, "CONSENT_EXPIRED", message)
    }
    pub fn not_found(i: Institution, message: impl Into<String>) -> Self {
        Self::new(i, StatusCode::NOT_FOUND, "RESOURCE_UNKNOWN", message)
    }
    pub fn format(i: Institution, message: impl Into<String>) -> Self {
        Self::new(i, StatusCode::BAD_REQUEST, "FORMAT_ERROR", message)
    }
    pub fn internal(i: Institution, e: AppError) -> Self {
        tracing::error!(error = %e, "emulated bank failed");
        Self::new(
            i,
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_SERVER_ERROR",
            "internal error",
        )
    }
}

impl IntoResponse for BankError {
    fn into_response(self) -> Response {
        tracing::info!(
            institution = self.institution.id(),
            status = self.status.as_u16(),
            code = self.code,
            "bank refused"
        );
        let body = match self.institution {
            // UK Open Banking error response.
            Institution::GreenBank => {
                let error_code = match self.code {
                    "TOKEN_INVALID" => "UK.OBIE.Header.Invalid",
                    "CONSENT_INVALID" | "CONSENT_EXPIRED" => "UK.OBIE.Resource.ConsentMismatch",
                    "FORMAT_ERROR" => "UK.OBIE.Field.Invalid",
                    "RESOURCE_UNKNOWN" => "UK.OBIE.Resource.NotFound",
                    _ => "UK.OBIE.UnexpectedError",
                };
                json!({
                    "Code": format!("{} {}", self.status.as_u16(), self.status.canonical_reason().unwrap_or("")),
                    "Id": uuid::Uuid::new_v4().to_string(),
                    "Message": self.message,
                    "Errors": [{"ErrorCode": error_code, "Message": self.message}],
                })
            }
            // Berlin Group tppMessages.
            Institution::MongoDbBank => json!({
                "tppMessages": [{"category": "ERROR", "code": self.code, "text": self.message}],
            }),
        };
        (self.status, Json(body)).into_response()
    }
}

/// Lets a request in only with a token addressed to `institution`, still active, whose consent
/// is for this institution, authorised, unexpired and grants one of `permissions`.
pub async fn authorise(
    state: &AppState,
    headers: &HeaderMap,
    institution: Institution,
    permissions: &[&str],
) -> Result<Access, BankError> {
    let token = bearer_token(headers)
        .ok_or_else(|| BankError::token_invalid(institution, "a bearer token is required"))?;
    let secret = state
        .secrets
        .current()
        .await
        .map_err(|e| BankError::internal(institution, e))?;
    let claims = jwt::verify(
        &secret.keys,
        token,
        &state.settings.issuer,
        institution.id(),
    )
    .map_err(|e| BankError::token_invalid(institution, e.to_string()))?;
    let consent_id = claims
        .consent_id
        .as_deref()
        .and_then(|c| ObjectId::parse_str(c).ok())
        .ok_or_else(|| BankError::token_invalid(institution, "the token names no consent"))?;
    // Berlin Group: the consent is also named in a header, and both must agree.
    if institution == Institution::MongoDbBank {
        match headers.get("Consent-ID").and_then(|v| v.to_str().ok()) {
            None => {
                return Err(BankError::format(
                    institution,
                    "the Consent-ID header is required",
                ));
            }
            Some(header) if header != consent_id.to_hex() => {
                return Err(BankError::consent_invalid(
                    institution,
                    "Consent-ID does not match the token",
                ));
            }
            Some(_) => {}
        }
    }
    if state
        .revocations
        .is_revoked(&state.db, &claims.jti)
        .await
        .map_err(|e| BankError::internal(institution, e))?
    {
        return Err(BankError::token_invalid(
            institution,
            "the token has been revoked",
        ));
    }
    let consent = consents::get_any(&state.db, consent_id)
        .await
        .map_err(|e| BankError::internal(institution, e))?
        .ok_or_else(|| BankError::consent_invalid(institution, "the consent is unknown"))?;
    if consent.institution != institution || consent.user_id.to_hex() != claims.sub {
        return Err(BankError::consent_invalid(
            institution,
            "the consent does not match the token",
        ));
    }
    match consent.status.as_str() {
        consents::AUTHORISED => {}
        consents::EXPIRED => {
            return Err(BankError::consent_expired(
                institution,
                "the consent has expired",
            ));
        }
        other => {
            return Err(BankError::consent_invalid(
                institution,
                format!("the consent is {other}"),
            ));
        }
    }
    if !permissions.iter().any(|p| consent.allows(p)) {
        return Err(BankError::consent_invalid(
            institution,
            "the consent does not cover this resource",
        ));
    }
    Ok(Access {
        customer_id: consent.user_id.to_hex(),
        consent,
    })
}
