//! One error type for the whole service, rendered at the edge in the shape each API family
//! promises: RFC 9457 problem+json ([`Problem`]), RFC 6749 §5.2 ([`OAuthFailure`]) and the
//! reference backend's `{"detail": …}` ([`Legacy`]). Internals are logged, never returned.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    OAuth(OAuthError),
    /// Start-up and configuration problems. The message names the missing or malformed key,
    /// never a value.
    #[error("configuration error: {0}")]
    Config(String),
    #[error("database error: {0}")]
    Database(#[from] mongodb::error::Error),
    #[error("secrets manager error: {0}")]
    Secrets(String),
    /// The sync queue (SQS) refused or could not be reached.
    #[error("queue error: {0}")]
    Queue(String),
    #[error("internal error: {0}")]
    Internal(String),
    /// An institution's API answered something unusable (retrying will not help).
    #[error("{0}")]
    BadGateway(String),
    /// An institution's API failed (5xx) or could not be reached: worth a bounded retry.
    #[error("{0}")]
    UpstreamUnavailable(String),
    /// An institution's API did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
}

/// An RFC 6749 §5.2 error response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub code: &'static str,
    pub description: String,
    pub status: StatusCode,
}

impl std::fmt::Display for OAuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl OAuthError {
    fn with(code: &'static str, status: StatusCode, description: impl Into<String>) -> AppError {
        AppError::OAuth(OAuthError {
            code,
            description: description.into(),
            status,
        })
    }
    pub fn invalid_request(description: impl Into<String>) -> AppError {
        Self::with("invalid_request", StatusCode::BAD_REQUEST, description)
    }
    pub fn invalid_client(description: impl Into<String>) -> AppError {
        Self::with("invalid_client", StatusCode::UNAUTHORIZED, description)
    }
    pub fn invalid_grant(description: impl Into<String>) -> AppError {
        Self::with("invalid_grant", StatusCode::BAD_REQUEST, description)
    }
    pub fn unauthorized_client(description: impl Into<String>) -> AppError {
        Self::with("unauthorized_client", StatusCode::BAD_REQUEST, description)
    }
    pub fn unsupported_grant_type(description: impl Into<String>) -> AppError {
        Self::with(
            "unsupported_grant_type",
            StatusCode::BAD_REQUEST,
            description,
        )
    }
    pub fn invalid_scope(description: impl Into<String>) -> AppError {
        Self::with("invalid_scope", StatusCode::BAD_REQUEST, description)
    }
}

impl AppError {
    /// Whether a retry may succeed: an institution timing out, failing or unreachable.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AppError::UpstreamUnavailable(_) | AppError::GatewayTimeout(_)
        )
    }

    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            AppError::OAuth(e) => e.status,
            AppError::BadGateway(_) | AppError::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
            AppError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            AppError::Database(e) if is_unavailable(e) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Config(_)
            | AppError::Database(_)
            | AppError::Secrets(_)
            | AppError::Queue(_)
            | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What a client may be told. Server-side failures get a generic sentence; the detail goes
    /// to the log only.
    pub fn public_message(&self) -> String {
        if let AppError::BadGateway(m)
        | AppError::UpstreamUnavailable(m)
        | AppError::GatewayTimeout(m) = self
        {
            // Composed by the gateway from the institution's status only: safe to show.
            return m.clone();
        }
        match self.status() {
            StatusCode::SERVICE_UNAVAILABLE => "the service is temporarily unavailable".into(),
            s if s.is_server_error() => "internal server error".into(),
            _ => match self {
                AppError::OAuth(e) => e.description.clone(),
                other => other.to_string(),
            },
        }
    }

    fn log(&self) {
        if self.status().is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::info!(status = self.status().as_u16(), error = %self, "request refused");
        }
    }
}

fn is_unavailable(e: &mongodb::error::Error) -> bool {
    matches!(
        *e.kind,
        mongodb::error::ErrorKind::ServerSelection { .. } | mongodb::error::ErrorKind::Io(_)
    )
}

fn with_challenge(mut response: Response, status: StatusCode, scheme: &'static str) -> Response {
    if status == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(scheme));
    }
    response
}

/// RFC 9457 rendering for the new JSON API.
#[derive(Debug)]
pub struct Problem(pub AppError);

impl<E: Into<AppError>> From<E> for Problem {
    fn from(e: E) -> Self {
        Problem(e.into())
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        self.0.log();
        let status = self.0.status();
        let body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": self.0.public_message(),
        });
        let mut response = (status, Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        with_challenge(response, status, "Bearer")
    }
}

/// RFC 6749 §5.2 rendering for the token and revocation endpoints.
#[derive(Debug)]
pub struct OAuthFailure(pub AppError);

impl<E: Into<AppError>> From<E> for OAuthFailure {
    fn from(e: E) -> Self {
        OAuthFailure(e.into())
    }
}

impl IntoResponse for OAuthFailure {
    fn into_response(self) -> Response {
        self.0.log();
        let status = self.0.status();
        let code = match &self.0 {
            AppError::OAuth(e) => e.code,
            AppError::Unauthorized(_) => "invalid_client",
            _ if status.is_server_error() => "server_error",
            _ => "invalid_request",
        };
        let body = json!({ "error": code, "error_description": self.0.public_message() });
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        with_challenge(response, status, "Basic realm=\"leafy-bank\"")
    }
}

/// The reference backend's `{"detail": "…"}` rendering for the legacy routes.
#[derive(Debug)]
pub struct Legacy(pub AppError);

impl<E: Into<AppError>> From<E> for Legacy {
    fn from(e: E) -> Self {
        Legacy(e.into())
    }
}

impl IntoResponse for Legacy {
    fn into_response(self) -> Response {
        self.0.log();
        let status = self.0.status();
        let response = (status, Json(json!({ "detail": self.0.public_message() }))).into_response();
        with_challenge(response, status, "Bearer")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_errors_do_not_leak_details() {
        let e = AppError::Internal("mongodb://user:pw@host".into());
        assert_eq!(e.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(e.public_message(), "internal server error");
    }

    #[test]
    fn oauth_errors_keep_their_code_and_status() {
        let e = OAuthError::invalid_client("unknown client");
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
        let response = OAuthFailure(e).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
    }

    #[test]
    fn client_mistakes_are_4xx() {
        for e in [
            AppError::BadRequest("x".into()),
            AppError::PayloadTooLarge(10),
            AppError::UnsupportedMediaType("x".into()),
            AppError::NotFound("x".into()),
        ] {
            assert!(e.status().is_client_error(), "{e:?}");
        }
    }
}
