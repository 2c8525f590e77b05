//! Authentication: keys, JWTs, digests of stored secrets, token records, and the [`Principal`]
//! a protected route acts for.

pub mod hash;
pub mod jwt;
pub mod keys;
pub mod revocation;
pub mod tokens;

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use mongodb::bson::{Document, doc, oid::ObjectId};

use crate::error::AppError;
use crate::state::AppState;

/// Opaque legacy tokens are 64 hex characters; anything far longer is not worth a lookup.
const MAX_OPAQUE_TOKEN_LEN: usize = 512;

/// Who a request acts for.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    /// The Leafy Bank user, for user tokens; `None` for a client acting for itself.
    pub user_id: Option<ObjectId>,
    pub user_name: Option<String>,
    pub client_id: String,
    pub scopes: Vec<String>,
}

/// The credential of an `Authorization: Bearer …` header, if there is one.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Authenticates a bearer credential: a JWT (signature and claims checked, and revocation
/// looked up in this process's revocation list: no database round trip per request) or a
/// legacy opaque token (one round trip, by digest, which also records its last use).
pub async fn authenticate(state: &AppState, token: Option<&str>) -> Result<Principal, AppError> {
    let token = token.ok_or_else(|| AppError::Unauthorized("a bearer token is required".into()))?;
    if jwt::looks_like_jwt(token) {
        let secret = state.secrets.current().await?;
        let claims = jwt::verify(
            &secret.keys,
            token,
            &state.settings.issuer,
            &state.settings.api_audience,
        )?;
        if state.revocations.is_revoked(&state.db, &claims.jti).await? {
            return Err(AppError::Unauthorized("the token has been revoked".into()));
        }
        let user_id = claims
            .user_name
            .as_ref()
            .and_then(|_| ObjectId::parse_str(&claims.sub).ok());
        Ok(Principal {
            user_id,
            user_name: claims.user_name,
            client_id: claims.client_id,
            scopes: claims.scope.split_whitespace().map(String::from).collect(),
        })
    } else {
        if token.len() > MAX_OPAQUE_TOKEN_LEN {
            return Err(AppError::Unauthorized("the token is not recognised".into()));
        }
        let record = tokens::touch_active(
            &state.db,
            doc! {"TokenHash": hash::sha256_hex(token), "TokenType": tokens::LEGACY_BEARER},
        )
        .await?
        .ok_or_else(|| AppError::Unauthorized("the token is not recognised".into()))?;
        Ok(legacy_principal(&record))
    }
}

fn legacy_principal(record: &Document) -> Principal {
    Principal {
        user_id: record.get_object_id("UserId").ok(),
        user_name: record.get_str("UserName").ok().map(String::from),
        client_id: "leafy-bank-ui".into(),
        scopes: vec!["openfinance".into()],
    }
}

/// Authentication for the legacy routes, which answer 403 (not 401) for a token that was
/// presented but is not valid, as the reference backend does.
pub async fn authenticate_legacy(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Principal, AppError> {
    let token = bearer_token(headers);
    authenticate(state, token).await.map_err(|e| match e {
        AppError::Unauthorized(message) if token.is_some() => AppError::Forbidden(message),
        other => other,
    })
}

/// A legacy route names its user (by user name or ObjectId); the token must be that user's, or
/// the answer is 403, as the reference backend gives. Called after authentication, so a
/// missing or bad token is answered as such before anything about the request.
pub fn legacy_same_user(principal: &Principal, identifier: &str) -> Result<ObjectId, AppError> {
    let identifier = identifier.trim();
    let named = principal.user_name.as_deref() == Some(identifier)
        || principal
            .user_id
            .is_some_and(|id| ObjectId::parse_str(identifier).ok() == Some(id));
    match principal.user_id {
        Some(id) if named => Ok(id),
        _ => Err(AppError::Forbidden(
            "the token does not belong to this user".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn legacy_routes_name_the_tokens_user_by_name_or_id() {
        let id = ObjectId::new();
        let frida = Principal {
            user_id: Some(id),
            user_name: Some("fridaklo".into()),
            client_id: "ui".into(),
            scopes: vec![],
        };
        assert_eq!(legacy_same_user(&frida, "fridaklo").unwrap(), id);
        assert_eq!(legacy_same_user(&frida, &id.to_hex()).unwrap(), id);
        assert_eq!(
            legacy_same_user(&frida, &id.to_hex().to_uppercase()).unwrap(),
            id
        );
        for other in ["gracehop", &ObjectId::new().to_hex(), ""] {
            assert!(matches!(
                legacy_same_user(&frida, other),
                Err(AppError::Forbidden(_))
            ));
        }
        let client = Principal {
            user_id: None,
            ..frida
        };
        assert!(legacy_same_user(&client, "fridaklo").is_err());
    }

    #[test]
    fn bearer_parsing() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer_token(&h), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer  abc "));
        assert_eq!(bearer_token(&h), Some("abc"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&h), None);
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer_token(&h), None);
    }
}
