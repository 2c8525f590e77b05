//! OAuth client authentication (RFC 6749 §2.3.1): HTTP Basic or form parameters, exactly one
//! of them, checked against the digests in the secret in constant time.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use percent_encoding::percent_decode_str;

use shared::auth::hash::matches_digest;
use shared::error::OAuthError;
use shared::secrets::ClientRecord;
use shared::{AppError, AppState};

use crate::form::FormParams;

/// Compared against when the client id is unknown, so both failures take the same time.
const UNKNOWN_CLIENT_DIGEST: &str =
    "0000000000000000000000000000000000000000000000000000000000000000";

pub async fn authenticate_client(
    state: &AppState,
    headers: &HeaderMap,
    form: &FormParams,
) -> Result<ClientRecord, AppError> {
    let basic = match headers.get(AUTHORIZATION) {
        None => None,
        Some(value) => Some(value.to_str().ok().and_then(parse_basic).ok_or_else(|| {
            OAuthError::invalid_client("the Authorization header is not valid HTTP Basic")
        })?),
    };
    let (client_id, client_secret) = match (basic, form.get("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not both HTTP Basic and client_secret",
            ));
        }
        (Some((id, secret)), None) => {
            if form.get("client_id").is_some_and(|form_id| form_id != id) {
                return Err(OAuthError::invalid_request(
                    "client_id does not match the Authorization header",
                ));
            }
            (id, secret)
        }
        (None, Some(secret)) => {
            let id = form.get("client_id").ok_or_else(|| {
                OAuthError::invalid_request("client_id is required with client_secret")
            })?;
            (id.to_string(), secret.to_string())
        }
        (None, None) => {
            return Err(OAuthError::invalid_client(
                "client authentication is required",
            ));
        }
    };
    let secret = state.secrets.current().await?;
    let client = secret
        .secret
        .clients
        .iter()
        .find(|c| c.client_id == client_id);
    let digest = client.map_or(UNKNOWN_CLIENT_DIGEST, |c| c.client_secret_sha256.as_str());
    match client {
        Some(c) if matches_digest(&client_secret, digest) => Ok(c.clone()),
        _ => Err(OAuthError::invalid_client("client authentication failed")),
    }
}

/// `Basic base64(urlencode(id):urlencode(secret))` → `(id, secret)`.
fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|c| c.into_owned())
    };
    let (id, secret) = (unescape(id)?, unescape(secret)?);
    (!id.is_empty() && !secret.is_empty()).then_some((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(s: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }

    #[test]
    fn parses_basic_credentials() {
        assert_eq!(
            parse_basic(&basic("id:sec:ret")),
            Some(("id".into(), "sec:ret".into()))
        );
        assert_eq!(
            parse_basic(&basic("a%3Ab:c%20d")),
            Some(("a:b".into(), "c d".into()))
        );
        assert_eq!(parse_basic(&basic("nocolon")), None);
        assert_eq!(parse_basic(&basic(":secret")), None);
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
    }
}
