//! The consent grants of the token server: single-use authorisation codes bound to a client,
//! a consent and a PKCE S256 challenge; rotating refresh tokens whose reuse revokes every token
//! of the consent (the family). Codes and refresh tokens are stored as SHA-256 digests only.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::auth::hash::{random_secret, sha256_hex};
use crate::db::Db;
use crate::error::{AppError, OAuthError};

pub const AUTHORIZATION_CODE: &str = "authorization_code";
pub const REFRESH_TOKEN: &str = "refresh_token";
/// The record that a code or refresh token has been redeemed.
const SPENT: &str = "spent_grant";
/// A refresh token presented again this soon after its rotation, by the same client, is a
/// retry whose answer was lost (a timeout after the server rotated), not a replay: it rotates
/// again, revoking the earlier rotation's refresh token, instead of revoking the family.
/// Codes get no such grace.
pub const REFRESH_REUSE_GRACE_SECONDS: i64 = 30;
/// Codes are exchanged straight after approval; a minute is plenty.
pub const CODE_TTL_SECONDS: i64 = 60;

/// What a redeemed code or refresh token vouches for.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub consent_id: ObjectId,
    pub user_id: ObjectId,
    pub client_id: String,
}

/// The S256 challenge of a PKCE verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// A fresh PKCE verifier: 43 characters of the unreserved set.
pub fn pkce_verifier() -> String {
    random_secret(32)
}

fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fn record(kind: &str, raw: &str, grant: &Grant, expires: DateTime) -> Document {
    doc! {
        "_id": uuid::Uuid::new_v4().to_string(),
        "TokenHash": sha256_hex(raw),
        "TokenType": kind,
        "ClientId": &grant.client_id,
        "ConsentId": grant.consent_id,
        "UserId": grant.user_id,
        "TokenDates": {"CreationDate": DateTime::now(), "ExpiryDate": expires},
        "Used": false,
        "Revoked": false,
    }
}

/// Issues an authorisation code for an approved consent.
pub async fn issue_code(db: &Db, grant: &Grant, code_challenge: &str) -> Result<String, AppError> {
    let code = random_secret(32);
    let expires =
        DateTime::from_millis(DateTime::now().timestamp_millis() + CODE_TTL_SECONDS * 1000);
    let mut rec = record(AUTHORIZATION_CODE, &code, grant, expires);
    rec.insert("CodeChallenge", code_challenge);
    rec.insert("CodeChallengeMethod", "S256");
    db.tokens().insert_one(rec).await?;
    Ok(code)
}

/// Issues a refresh token for a consent, valid until `expires` (the consent's expiry).
/// `rotated_from` is the digest of the refresh token it replaces, if any.
pub async fn issue_refresh_token(
    db: &Db,
    grant: &Grant,
    expires: DateTime,
    rotated_from: Option<&str>,
) -> Result<String, AppError> {
    let token = random_secret(32);
    let mut rec = record(REFRESH_TOKEN, &token, grant, expires);
    if let Some(parent) = rotated_from {
        rec.insert("RotatedFrom", parent);
    }
    db.tokens().insert_one(rec).await?;
    Ok(token)
}

/// Redeems a code or refresh token once. The single use is decided by inserting a "spent"
/// marker under a unique key: atomic on MongoDB and on FerretDB alike (a conditional update
/// is not atomic on FerretDB 1.24). A second presentation of a spent one is a replay, and
/// every token of that consent is revoked.
async fn spend(db: &Db, kind: &str, raw: &str, client_id: &str) -> Result<Document, AppError> {
    let invalid = || {
        OAuthError::invalid_grant(format!(
            "the {} is invalid, used, expired or revoked",
            label(kind)
        ))
    };
    let hash = sha256_hex(raw);
    let rec = db
        .tokens()
        .find_one(doc! {"TokenHash": &hash, "TokenType": kind})
        .await?
        .ok_or_else(invalid)?;
    if rec.get_bool("Revoked").unwrap_or(true) {
        return Err(invalid());
    }
    if rec.get_str("ClientId").ok() != Some(client_id) {
        return Err(OAuthError::invalid_grant(format!(
            "the {} was issued to another client",
            label(kind)
        )));
    }
    let expiry = rec
        .get_document("TokenDates")
        .and_then(|d| d.get_datetime("ExpiryDate"))
        .ok()
        .copied();
    if expiry.is_none_or(|e| e.timestamp_millis() <= DateTime::now().timestamp_millis()) {
        return Err(OAuthError::invalid_grant(format!(
            "the {} has expired",
            label(kind)
        )));
    }
    let consent_id = rec.get_object_id("ConsentId").ok();
    let marker = doc! {
        "_id": format!("spent:{hash}"),
        "TokenHash": format!("spent:{hash}"),
        "TokenType": SPENT,
        "ConsentId": consent_id,
        "ClientId": client_id,
        "TokenDates": {"CreationDate": DateTime::now(), "ExpiryDate": expiry},
        // A marker is never a credential.
        "Revoked": true,
    };
    if let Err(e) = db.tokens().insert_one(marker).await {
        if !crate::consents::is_duplicate_key(&e) {
            return Err(e.into());
        }
        if kind == REFRESH_TOKEN && within_reuse_grace(db, &hash, client_id).await? {
            // The earlier rotation's refresh token (whose answer was presumably lost) is
            // revoked, so one branch of the family stays live, never two.
            tracing::info!(
                kind,
                "refresh token reused within the grace period: rotating again"
            );
            db.tokens()
                .update_many(
                    doc! {"RotatedFrom": &hash, "TokenType": REFRESH_TOKEN, "Revoked": false},
                    doc! {"$set": {"Revoked": true, "TokenDates.RevocationDate": DateTime::now()}},
                )
                .await?;
            return Ok(rec);
        }
        if let Some(consent_id) = consent_id {
            tracing::warn!(consent_id = %consent_id, kind, "replayed grant: revoking the consent's tokens");
            revoke_family(db, consent_id).await?;
        }
        return Err(invalid());
    }
    db.tokens()
        .update_one(
            doc! {"_id": rec.get("_id").cloned()},
            doc! {"$set": {"Used": true, "TokenDates.LastUseDate": DateTime::now()}},
        )
        .await?;
    Ok(rec)
}

/// Whether the token with digest `hash` was spent by `client_id` less than the grace period ago.
async fn within_reuse_grace(db: &Db, hash: &str, client_id: &str) -> Result<bool, AppError> {
    let Some(marker) = db
        .tokens()
        .find_one(doc! {"_id": format!("spent:{hash}")})
        .await?
    else {
        return Ok(false);
    };
    let spent_at = marker
        .get_document("TokenDates")
        .and_then(|d| d.get_datetime("CreationDate"))
        .map(|d| d.timestamp_millis())
        .unwrap_or(0);
    let recent = DateTime::now().timestamp_millis() - spent_at < REFRESH_REUSE_GRACE_SECONDS * 1000;
    Ok(recent && marker.get_str("ClientId").ok() == Some(client_id))
}

fn label(kind: &str) -> &'static str {
    if kind == AUTHORIZATION_CODE {
        "authorization code"
    } else {
        "refresh token"
    }
}

fn grant_of(rec: &Document) -> Result<Grant, AppError> {
    let bad = || AppError::Internal("a grant record is incomplete".into());
    Ok(Grant {
        consent_id: rec.get_object_id("ConsentId").map_err(|_| bad())?,
        user_id: rec.get_object_id("UserId").map_err(|_| bad())?,
        client_id: rec.get_str("ClientId").map_err(|_| bad())?.to_string(),
    })
}

/// Redeems a code: single use, same client, unexpired, and the PKCE verifier must match.
pub async fn redeem_code(
    db: &Db,
    code: &str,
    client_id: &str,
    verifier: &str,
) -> Result<Grant, AppError> {
    if !valid_verifier(verifier) {
        return Err(OAuthError::invalid_request(
            "code_verifier must be 43 to 128 unreserved characters",
        ));
    }
    let rec = spend(db, AUTHORIZATION_CODE, code, client_id).await?;
    let challenge = rec.get_str("CodeChallenge").unwrap_or_default();
    if !bool::from(
        pkce_challenge(verifier)
            .as_bytes()
            .ct_eq(challenge.as_bytes()),
    ) {
        return Err(OAuthError::invalid_grant(
            "code_verifier does not match the code challenge",
        ));
    }
    grant_of(&rec)
}

/// Redeems a refresh token (rotation: it can be used once). Returns the grant and the token's
/// digest, which the replacement records as `RotatedFrom`.
pub async fn redeem_refresh_token(
    db: &Db,
    token: &str,
    client_id: &str,
) -> Result<(Grant, String), AppError> {
    let rec = spend(db, REFRESH_TOKEN, token, client_id).await?;
    Ok((grant_of(&rec)?, sha256_hex(token)))
}

/// Revokes every token of a consent: access tokens, refresh tokens, unused codes.
pub async fn revoke_family(db: &Db, consent_id: ObjectId) -> Result<(), AppError> {
    db.tokens()
        .update_many(
            doc! {"ConsentId": consent_id, "Revoked": false},
            doc! {"$set": {"Revoked": true, "TokenDates.RevocationDate": DateTime::now()}},
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_7636_appendix_b_vector() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifiers_are_well_formed() {
        assert!(valid_verifier(&pkce_verifier()));
        assert!(!valid_verifier("short"));
        assert!(!valid_verifier(&"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}!", "a".repeat(50))));
    }
}
