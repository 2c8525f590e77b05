//! Acting for a consent at its institution: a valid access token (refreshed with the stored,
//! encrypted refresh token when needed), the institution's accounts fetched and normalised,
//! and idempotent upserts keyed by (institution, external id). Used by account connection and
//! by the sync.

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};

use crate::banks::normalise::{self, SyncContext, as_set};
use crate::banks::{BankGateway, TokenSet};
use crate::consents::{self, Consent, SealedCredentials};
use crate::db::EXTERNAL_ACCOUNTS;
use crate::error::AppError;
use crate::institutions::Institution;
use crate::state::AppState;

/// An access token is refreshed when it has less than this left.
const ACCESS_TOKEN_MARGIN_MS: i64 = 30_000;

/// Seals a token set for a consent (the refresh token is kept from `previous` if the
/// institution did not rotate it).
pub fn seal(
    state_key: &crate::crypto::DataKey,
    consent: &Consent,
    tokens: &TokenSet,
) -> Result<SealedCredentials, AppError> {
    let refresh = tokens
        .refresh_token
        .as_deref()
        .ok_or_else(|| AppError::BadGateway("the token endpoint issued no refresh token".into()))?;
    let context = consent.id.to_hex();
    Ok(SealedCredentials {
        access_token: state_key.seal(&tokens.access_token, &context)?,
        access_token_expires_at: DateTime::from_millis(
            DateTime::now().timestamp_millis() + tokens.expires_in * 1000,
        ),
        refresh_token: state_key.seal(refresh, &context)?,
    })
}

/// A usable access token for the consent. A refresh rotates the refresh token, and the new one
/// is stored before anything else happens, so a later failure cannot lose it.
pub async fn access_token(
    state: &AppState,
    gateway: &BankGateway,
    consent: &Consent,
) -> Result<String, AppError> {
    let credentials = consent.credentials.as_ref().ok_or_else(|| {
        AppError::Conflict("the consent holds no tokens; authorise it first".into())
    })?;
    let secret = state.secrets.current().await?;
    let key = secret.data_key()?;
    let context = consent.id.to_hex();
    if credentials.access_token_expires_at.timestamp_millis()
        > DateTime::now().timestamp_millis() + ACCESS_TOKEN_MARGIN_MS
    {
        return key.open(&credentials.access_token, &context);
    }
    let refresh = key.open(&credentials.refresh_token, &context)?;
    let tokens = gateway
        .refresh(secret.institution_client()?, &refresh)
        .await?;
    consents::store_credentials(&state.db, consent.id, &seal(key, consent, &tokens)?).await?;
    Ok(tokens.access_token)
}

/// The consent's accounts at its institution, normalised. Nothing is written here.
pub async fn fetch_accounts(
    state: &AppState,
    gateway: &BankGateway,
    consent: &Consent,
) -> Result<Vec<Document>, AppError> {
    let token = access_token(state, gateway, consent).await?;
    let consent_id = consent.id.to_hex();
    let ctx = SyncContext {
        institution: consent.institution,
        user_id: consent.user_id,
        user_name: consent.user_name.clone(),
        consent_id: consent.id,
        synced_at: DateTime::now(),
    };
    let with_balances = consent.allows("ReadBalances");
    match consent.institution {
        Institution::GreenBank => {
            let accounts = gateway
                .get_json(
                    Institution::GreenBank,
                    "/open-banking/v3.1/aisp/accounts",
                    &token,
                    &consent_id,
                )
                .await?;
            let balances = if with_balances {
                Some(
                    gateway
                        .get_json(
                            Institution::GreenBank,
                            "/open-banking/v3.1/aisp/balances",
                            &token,
                            &consent_id,
                        )
                        .await?,
                )
            } else {
                None
            };
            normalise::green_accounts(&accounts, balances.as_ref(), &ctx)
        }
        Institution::MongoDbBank => {
            let path = format!("/v1/accounts?withBalance={with_balances}");
            let body = gateway
                .get_json(Institution::MongoDbBank, &path, &token, &consent_id)
                .await?;
            normalise::mdb_accounts(&body, &ctx)
        }
    }
}

/// Upserts normalised accounts keyed by (institution, external id, owner) and returns them as
/// stored. Re-running with the same data leaves the same documents (only `LastSyncedAt` moves).
pub async fn upsert_accounts(
    state: &AppState,
    consent: &Consent,
    accounts: &[Document],
) -> Result<Vec<Document>, AppError> {
    let collection = state
        .db
        .open_finance
        .collection::<Document>(EXTERNAL_ACCOUNTS);
    let mut external_ids = Vec::with_capacity(accounts.len());
    for account in accounts {
        let external_id = account
            .get_document("Provenance")
            .and_then(|p| p.get_str("ExternalId"))
            .map_err(|_| AppError::Internal("a normalised account has no external id".into()))?;
        external_ids.push(Bson::String(external_id.to_string()));
        let filter = doc! {
            "Provenance.Institution": consent.institution.id(),
            "Provenance.ExternalId": external_id,
            "AccountUser.UserId": consent.user_id,
        };
        collection
            .update_one(filter, doc! {"$set": as_set(account)})
            .upsert(true)
            .await
            .map_err(|e| match *e.kind {
                mongodb::error::ErrorKind::Write(_) if e.to_string().contains("E11000") => {
                    AppError::Conflict(
                        "an account from this institution is linked to another customer".into(),
                    )
                }
                _ => e.into(),
            })?;
    }
    Ok(collection
        .find(doc! {
            "AccountUser.UserId": consent.user_id,
            "Provenance.Institution": consent.institution.id(),
            "Provenance.ExternalId": {"$in": external_ids},
        })
        .sort(doc! {"Provenance.ExternalId": 1})
        .await?
        .try_collect()
        .await?)
}

/// Connects a consent's accounts: under the consent's lease (one worker at a time, so its
/// refresh token is never used twice), fetch everything first, then write.
pub async fn connect_accounts(
    state: &AppState,
    gateway: &BankGateway,
    consent: &Consent,
) -> Result<Vec<Document>, AppError> {
    match consent.status.as_str() {
        consents::AUTHORISED => {}
        consents::AWAITING => {
            return Err(AppError::Conflict(
                "the consent is not authorised yet".into(),
            ));
        }
        other => return Err(AppError::Forbidden(format!("the consent is {other}"))),
    }
    if !consents::acquire_lease(&state.db, consent.id, 60).await? {
        return Err(AppError::Conflict(
            "this consent is being synchronised already; try again shortly".into(),
        ));
    }
    let result = async {
        let accounts = fetch_accounts(state, gateway, consent).await?;
        upsert_accounts(state, consent, &accounts).await
    }
    .await;
    consents::release_lease(&state.db, consent.id).await?;
    result
}
