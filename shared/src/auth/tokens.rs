//! The `tokens` collection: a record of every issued token and the legacy opaque tokens, kept
//! as SHA-256 digests only, with last use and revocation.

use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};

use super::hash::sha256_hex;
use super::jwt::Claims;
use crate::db::Db;
use crate::error::AppError;

pub const ACCESS_TOKEN: &str = "access_token";
pub const LEGACY_BEARER: &str = "legacy_bearer";

/// Records an issued JWT. The raw token is never stored: only its digest and its claims.
pub async fn record_issued(
    db: &Db,
    raw_token: &str,
    claims: &Claims,
    user_id: Option<ObjectId>,
) -> Result<(), AppError> {
    let mut record = doc! {
        "_id": &claims.jti,
        "TokenHash": sha256_hex(raw_token),
        "TokenType": ACCESS_TOKEN,
        "ClientId": &claims.client_id,
        "Scope": &claims.scope,
        "Audience": &claims.aud,
        "TokenDates": {
            "CreationDate": DateTime::from_millis(claims.iat * 1000),
            "ExpiryDate": DateTime::from_millis(claims.exp * 1000),
        },
        "Revoked": false,
    };
    if let Some(id) = user_id {
        record.insert("UserId", id);
    }
    if let Some(name) = &claims.user_name {
        record.insert("UserName", name);
    }
    // Tokens acting for a consent are found (and revoked) by it.
    if let Some(consent) = claims
        .consent_id
        .as_deref()
        .and_then(|c| ObjectId::parse_str(c).ok())
    {
        record.insert("ConsentId", consent);
    }
    db.tokens().insert_one(record).await?;
    Ok(())
}

/// Marks a still-active token record used now and returns it, in one round trip; `None` when
/// the record is unknown or revoked.
pub async fn touch_active(db: &Db, filter: Document) -> Result<Option<Document>, AppError> {
    let mut filter = filter;
    filter.insert("Revoked", false);
    Ok(db
        .tokens()
        .find_one_and_update(
            filter,
            doc! {"$set": {"TokenDates.LastUseDate": DateTime::now()}},
        )
        .await?)
}

/// RFC 7009: revokes `raw_token` if it was issued to `client_id`. Unknown tokens are not an
/// error (the client's goal, an unusable token, is met either way).
pub async fn revoke(db: &Db, raw_token: &str, client_id: &str) -> Result<bool, AppError> {
    let result = db
        .tokens()
        .update_one(
            doc! {"TokenHash": sha256_hex(raw_token), "ClientId": client_id, "Revoked": false},
            doc! {"$set": {"Revoked": true, "TokenDates.RevocationDate": DateTime::now()}},
        )
        .await?;
    Ok(result.modified_count > 0)
}
