//! PSD2-style consents: what a customer allowed Leafy Bank to read at one institution, for how
//! long, and the (encrypted) tokens that let Leafy Bank act on it. Every read and write is
//! scoped to the owning user, so another user's consent is simply not found.

use chrono::Utc;
use mongodb::Collection;
use mongodb::bson::{self, DateTime, Document, doc, oid::ObjectId};
use mongodb::options::ReturnDocument;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use crate::db::{CONSENTS, LEASES};
use crate::db::{Db, EXTERNAL_ACCOUNTS, EXTERNAL_PRODUCTS, EXTERNAL_TRANSACTIONS, OWNER};
use crate::error::AppError;
use crate::institutions::Institution;

pub const MAX_EXPIRY_DAYS: i64 = 180;

pub const AWAITING: &str = "AwaitingAuthorisation";
pub const AUTHORISED: &str = "Authorised";
pub const REJECTED: &str = "Rejected";
pub const REVOKED: &str = "Revoked";
pub const EXPIRED: &str = "Expired";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatusChange {
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "At")]
    pub at: DateTime,
}

/// Leafy Bank's credentials for a consent, sealed with the data key (see `crate::crypto`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SealedCredentials {
    #[serde(rename = "AccessToken")]
    pub access_token: String,
    #[serde(rename = "AccessTokenExpiresAt")]
    pub access_token_expires_at: DateTime,
    #[serde(rename = "RefreshToken")]
    pub refresh_token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Consent {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    #[serde(rename = "UserId")]
    pub user_id: ObjectId,
    #[serde(rename = "UserName")]
    pub user_name: String,
    #[serde(rename = "Institution")]
    pub institution: Institution,
    #[serde(rename = "Permissions")]
    pub permissions: Vec<String>,
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "CreatedAt")]
    pub created_at: DateTime,
    #[serde(rename = "ExpiresAt")]
    pub expires_at: DateTime,
    #[serde(
        rename = "AuthorisedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub authorised_at: Option<DateTime>,
    #[serde(rename = "StatusHistory")]
    pub status_history: Vec<StatusChange>,
    /// The window of transactions the institution may return (UK Open Banking's
    /// `TransactionFromDateTime` / `TransactionToDateTime`); open-ended where absent.
    #[serde(
        rename = "TransactionFromDate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub transaction_from: Option<DateTime>,
    #[serde(
        rename = "TransactionToDate",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub transaction_to: Option<DateTime>,
    #[serde(
        rename = "Credentials",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub credentials: Option<SealedCredentials>,
}

impl Consent {
    pub fn is_past_expiry(&self) -> bool {
        self.expires_at.timestamp_millis() <= Utc::now().timestamp_millis()
    }

    pub fn allows(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }

    /// Whether the consent reads transactions at all: a level and a direction.
    pub fn reads_transactions(&self) -> bool {
        crate::institutions::TRANSACTION_LEVELS
            .iter()
            .any(|p| self.allows(p))
            && crate::institutions::TRANSACTION_DIRECTIONS
                .iter()
                .any(|p| self.allows(p))
    }

    /// The public JSON shape (no credentials).
    pub fn to_json(&self) -> Value {
        json!({
            "consentId": self.id.to_hex(),
            "institution": self.institution.id(),
            "institutionName": self.institution.display_name(),
            "permissions": self.permissions,
            "status": self.status,
            "createdAt": iso(self.created_at),
            "expiresAt": iso(self.expires_at),
            "authorisedAt": self.authorised_at.map(iso),
            "transactionFromDate": self.transaction_from.map(iso),
            "transactionToDate": self.transaction_to.map(iso),
            "statusHistory": self.status_history.iter()
                .map(|c| json!({"status": c.status, "at": iso(c.at)}))
                .collect::<Vec<_>>(),
        })
    }
}

pub fn iso(at: DateTime) -> String {
    at.try_to_rfc3339_string().unwrap_or_default()
}

pub fn collection(db: &Db) -> Collection<Consent> {
    db.open_finance.collection(CONSENTS)
}

pub async fn create(
    db: &Db,
    user_id: ObjectId,
    user_name: &str,
    institution: Institution,
    permissions: Vec<String>,
    expires_in_days: i64,
) -> Result<Consent, AppError> {
    create_with_window(
        db,
        user_id,
        user_name,
        institution,
        permissions,
        expires_in_days,
        TransactionWindow::default(),
    )
    .await
}

/// The optional bounds of the transactions a consent covers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TransactionWindow {
    pub from: Option<DateTime>,
    pub to: Option<DateTime>,
}

pub async fn create_with_window(
    db: &Db,
    user_id: ObjectId,
    user_name: &str,
    institution: Institution,
    permissions: Vec<String>,
    expires_in_days: i64,
    window: TransactionWindow,
) -> Result<Consent, AppError> {
    let now = DateTime::now();
    let consent = Consent {
        id: ObjectId::new(),
        user_id,
        user_name: user_name.into(),
        institution,
        permissions,
        status: AWAITING.into(),
        created_at: now,
        expires_at: DateTime::from_millis(now.timestamp_millis() + expires_in_days * 86_400_000),
        authorised_at: None,
        status_history: vec![StatusChange {
            status: AWAITING.into(),
            at: now,
        }],
        transaction_from: window.from,
        transaction_to: window.to,
        credentials: None,
    };
    collection(db).insert_one(&consent).await?;
    Ok(consent)
}

/// The user's consents, newest first, expired ones marked so.
pub async fn list(db: &Db, user_id: ObjectId) -> Result<Vec<Consent>, AppError> {
    use futures_util::TryStreamExt;
    let consents: Vec<Consent> = collection(db)
        .find(doc! {OWNER: user_id})
        .sort(doc! {"CreatedAt": -1})
        .await?
        .try_collect()
        .await?;
    let mut out = Vec::with_capacity(consents.len());
    for consent in consents {
        out.push(expire_if_due(db, consent).await?);
    }
    Ok(out)
}

/// The user's consent `id`, or `None` (also when it belongs to someone else).
pub async fn get(db: &Db, user_id: ObjectId, id: ObjectId) -> Result<Option<Consent>, AppError> {
    match collection(db)
        .find_one(doc! {"_id": id, OWNER: user_id})
        .await?
    {
        Some(c) => Ok(Some(expire_if_due(db, c).await?)),
        None => Ok(None),
    }
}

/// Any consent by id, for the token server and the institutions (which are not the user).
pub async fn get_any(db: &Db, id: ObjectId) -> Result<Option<Consent>, AppError> {
    match collection(db).find_one(doc! {"_id": id}).await? {
        Some(c) => Ok(Some(expire_if_due(db, c).await?)),
        None => Ok(None),
    }
}

/// A live consent past its expiry becomes `Expired` (lazily, on first sight), and what was
/// fetched under it is marked disconnected: no longer kept fresh, so no longer counted.
async fn expire_if_due(db: &Db, consent: Consent) -> Result<Consent, AppError> {
    if (consent.status == AUTHORISED || consent.status == AWAITING) && consent.is_past_expiry() {
        let from = consent.status.clone();
        let expired = transition(db, consent.id, &from, EXPIRED, doc! {}).await?;
        disconnect_data(db, &consent).await?;
        return Ok(expired.unwrap_or(consent));
    }
    Ok(consent)
}

/// After writing what was fetched under a consent: if the consent ended meanwhile (revoked or
/// expired while the bank was being read), its data is marked disconnected again, because the
/// revocation's own disconnect may have run before the write. Returns whether it had ended.
pub async fn disconnect_if_ended(db: &Db, consent: &Consent) -> Result<bool, AppError> {
    match get_any(db, consent.id).await? {
        Some(c) if c.status == AUTHORISED => Ok(false),
        _ => {
            disconnect_data(db, consent).await?;
            Ok(true)
        }
    }
}

/// Marks the accounts, products and transactions fetched under a consent disconnected (kept, not deleted).
async fn disconnect_data(db: &Db, consent: &Consent) -> Result<(), AppError> {
    let disconnect = doc! {"$set": {
        "Provenance.ConnectionStatus": "Disconnected",
        "Provenance.DisconnectedAt": DateTime::now(),
    }};
    // The owner leads the filter: the consent's data is found among its owner's, not in a scan.
    let filter = doc! {
        OWNER: consent.user_id,
        "Provenance.ConsentId": consent.id,
        "Provenance.ConnectionStatus": {"$ne": "Disconnected"},
    };
    for name in [EXTERNAL_ACCOUNTS, EXTERNAL_PRODUCTS, EXTERNAL_TRANSACTIONS] {
        db.open_finance
            .collection::<Document>(name)
            .update_many(filter.clone(), disconnect.clone())
            .await?;
    }
    Ok(())
}

/// Moves a consent from `from` to `to` (if it is still in `from`), recording the change.
pub async fn transition(
    db: &Db,
    id: ObjectId,
    from: &str,
    to: &str,
    extra_set: Document,
) -> Result<Option<Consent>, AppError> {
    let now = DateTime::now();
    let mut set = doc! {"Status": to};
    set.extend(extra_set);
    Ok(collection(db)
        .find_one_and_update(
            doc! {"_id": id, "Status": from},
            doc! {"$set": set, "$push": {"StatusHistory": {"Status": to, "At": now}}},
        )
        .return_document(ReturnDocument::After)
        .await?)
}

/// Records the customer's approval and the sealed tokens obtained for it.
pub async fn mark_authorised(
    db: &Db,
    id: ObjectId,
    credentials: &SealedCredentials,
) -> Result<Option<Consent>, AppError> {
    let credentials = bson::to_bson(credentials).map_err(|e| AppError::Internal(e.to_string()))?;
    transition(
        db,
        id,
        AWAITING,
        AUTHORISED,
        doc! {"AuthorisedAt": DateTime::now(), "Credentials": credentials},
    )
    .await
}

/// Replaces the sealed tokens after a refresh (the old refresh token is spent).
pub async fn store_credentials(
    db: &Db,
    id: ObjectId,
    credentials: &SealedCredentials,
) -> Result<(), AppError> {
    let credentials = bson::to_bson(credentials).map_err(|e| AppError::Internal(e.to_string()))?;
    collection(db)
        .update_one(
            doc! {"_id": id},
            doc! {"$set": {"Credentials": credentials}},
        )
        .await?;
    Ok(())
}

/// Revokes the user's consent: status `Revoked`, its tokens revoked, its stored credentials
/// dropped, its accounts and products marked disconnected (kept, not deleted). Revoking a
/// consent that is already ended changes nothing.
pub async fn revoke(db: &Db, user_id: ObjectId, id: ObjectId) -> Result<Option<Consent>, AppError> {
    let Some(consent) = get(db, user_id, id).await? else {
        return Ok(None);
    };
    if consent.status == EXPIRED {
        // Already ended; its data is disconnected as a revocation's would be.
        disconnect_data(db, &consent).await?;
        return Ok(Some(consent));
    }
    if consent.status != AWAITING && consent.status != AUTHORISED {
        return Ok(Some(consent));
    }
    let now = DateTime::now();
    let revoked = collection(db)
        .find_one_and_update(
            doc! {"_id": id, OWNER: user_id, "Status": &consent.status},
            doc! {
                "$set": {"Status": REVOKED, "RevokedAt": now},
                "$unset": {"Credentials": ""},
                "$push": {"StatusHistory": {"Status": REVOKED, "At": now}},
            },
        )
        .return_document(ReturnDocument::After)
        .await?;
    db.tokens()
        .update_many(
            doc! {"ConsentId": id, "Revoked": false},
            doc! {"$set": {"Revoked": true, "TokenDates.RevocationDate": now}},
        )
        .await?;
    disconnect_data(db, &consent).await?;
    // Lost a race with another transition: report what is there now.
    match revoked {
        Some(c) => Ok(Some(c)),
        None => get(db, user_id, id).await,
    }
}

/// A worker's exclusive hold on a consent (connect or sync), so its tokens are never
/// refreshed twice at once: a rotated refresh token presented twice revokes the family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub consent_id: ObjectId,
    pub generation: i64,
}

/// Takes the consent's lease for `seconds`, or `None` while someone else holds it. The winner
/// is decided by inserting the next generation under a unique `_id` — atomic on MongoDB and on
/// FerretDB alike, where a conditional update is not (FerretDB 1.24 lets concurrent
/// conditional updates of one document all succeed).
pub async fn acquire_lease(
    db: &Db,
    consent_id: ObjectId,
    seconds: i64,
) -> Result<Option<Lease>, AppError> {
    let leases = db.open_finance.collection::<Document>(LEASES);
    let now = DateTime::now();
    let latest = leases
        .find_one(doc! {"ConsentId": consent_id})
        .sort(doc! {"Generation": -1})
        .await?;
    let generation = match latest {
        Some(held)
            if held
                .get_datetime("Until")
                .is_ok_and(|until| until.timestamp_millis() > now.timestamp_millis()) =>
        {
            return Ok(None);
        }
        Some(stale) => stale.get_i64("Generation").unwrap_or(0) + 1,
        None => 1,
    };
    let lease = doc! {
        "_id": format!("{}:{generation}", consent_id.to_hex()),
        "ConsentId": consent_id,
        "Generation": generation,
        "Until": DateTime::from_millis(now.timestamp_millis() + seconds * 1000),
    };
    match leases.insert_one(lease).await {
        Ok(_) => Ok(Some(Lease {
            consent_id,
            generation,
        })),
        Err(e) if is_duplicate_key(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Gives the lease back (and clears any stale earlier generation).
pub async fn release_lease(db: &Db, lease: Lease) -> Result<(), AppError> {
    db.open_finance
        .collection::<Document>(LEASES)
        .delete_many(doc! {"ConsentId": lease.consent_id, "Generation": {"$lte": lease.generation}})
        .await?;
    Ok(())
}

/// Whether a write failed on a unique index (E11000).
pub fn is_duplicate_key(e: &mongodb::error::Error) -> bool {
    match &*e.kind {
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => {
            w.code == 11000
        }
        mongodb::error::ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .is_some_and(|w| w.iter().any(|w| w.code == 11000)),
        _ => e.to_string().contains("E11000"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_json_hides_credentials() {
        let now = DateTime::now();
        let consent = Consent {
            id: ObjectId::new(),
            user_id: ObjectId::new(),
            user_name: "u".into(),
            institution: Institution::GreenBank,
            permissions: vec!["ReadBalances".into()],
            status: AUTHORISED.into(),
            created_at: now,
            expires_at: now,
            authorised_at: Some(now),
            status_history: vec![],
            transaction_from: None,
            transaction_to: None,
            credentials: Some(SealedCredentials {
                access_token: "sealed-a".into(),
                access_token_expires_at: now,
                refresh_token: "sealed-r".into(),
            }),
        };
        let text = consent.to_json().to_string();
        assert!(!text.contains("sealed"), "{text}");
        assert!(consent.allows("ReadBalances") && !consent.allows("ReadProducts"));
        assert!(consent.is_past_expiry());
    }
}
