//! Acting for a consent at its institution: a valid access token (refreshed with the stored,
//! encrypted refresh token when needed), the institution's accounts fetched and normalised,
//! and idempotent upserts keyed by (institution, external id). Used by account connection and
//! by the sync.

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};

use crate::banks::normalise::{self, SyncContext, as_set};
use crate::banks::{BankGateway, TokenSet};
use crate::consents::{self, Consent, SealedCredentials};
use crate::db::{EXTERNAL_ACCOUNTS, EXTERNAL_PRODUCTS, OWNER};
use crate::error::AppError;
use crate::institutions::Institution;
use crate::oauth::{self, Grant};
use crate::state::AppState;
use crate::transactions;

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

/// The emulated customer approval (SCA) at the institution: its authorisation server issues a
/// code bound to Leafy Bank's client, the consent and a PKCE challenge; Leafy Bank exchanges it
/// at the token endpoint and keeps the tokens sealed on the consent, now `Authorised`.
pub async fn authorise(
    state: &AppState,
    gateway: &BankGateway,
    consent: &Consent,
) -> Result<Consent, AppError> {
    match consent.status.as_str() {
        consents::AWAITING => {}
        consents::AUTHORISED => {
            return Err(AppError::Conflict(
                "the consent is already authorised".into(),
            ));
        }
        other => return Err(AppError::Forbidden(format!("the consent is {other}"))),
    }
    let secret = state.secrets.current().await?;
    let client = secret.institution_client()?;
    let verifier = oauth::pkce_verifier();
    let grant = Grant {
        consent_id: consent.id,
        user_id: consent.user_id,
        client_id: client.client_id.clone(),
    };
    let code = oauth::issue_code(&state.db, &grant, &oauth::pkce_challenge(&verifier)).await?;
    let tokens = gateway.exchange_code(client, &code, &verifier).await?;
    let sealed = seal(secret.data_key()?, consent, &tokens)?;
    consents::mark_authorised(&state.db, consent.id, &sealed)
        .await?
        .ok_or_else(|| {
            AppError::Conflict("the consent changed while it was being authorised".into())
        })
}

fn context(consent: &Consent) -> SyncContext {
    SyncContext {
        institution: consent.institution,
        user_id: consent.user_id,
        user_name: consent.user_name.clone(),
        consent_id: consent.id,
        synced_at: DateTime::now(),
    }
}

/// The consent's products (loans, mortgages, cards) at its institution, normalised, read with
/// `token` (from [`access_token`], obtained once per unit of work: a second refresh with the
/// same, now spent, refresh token would be a replay and revoke the consent's tokens).
pub async fn fetch_products(
    gateway: &BankGateway,
    consent: &Consent,
    token: &str,
) -> Result<Vec<Document>, AppError> {
    let consent_id = consent.id.to_hex();
    let ctx = context(consent);
    match consent.institution {
        Institution::GreenBank => {
            let body = gateway
                .get_all_pages(
                    Institution::GreenBank,
                    "/open-banking/v3.1/aisp/products",
                    "/Data/Product",
                    token,
                    &consent_id,
                )
                .await?;
            normalise::green_products(&body, &ctx)
        }
        Institution::MongoDbBank => {
            // Loans and mortgages, and cards: each under its own resource, as the Berlin Group
            // API has them.
            let loans = gateway
                .get_json(Institution::MongoDbBank, "/v1/loans", token, &consent_id)
                .await?;
            let cards = gateway
                .get_json(
                    Institution::MongoDbBank,
                    "/v1/card-accounts",
                    token,
                    &consent_id,
                )
                .await?;
            let mut products = normalise::mdb_loans(&loans, &ctx)?;
            products.extend(normalise::mdb_cards(&cards, &ctx)?);
            Ok(products)
        }
    }
}

/// Upserts normalised products like [`upsert_accounts`], then marks `Closed` (never deletes)
/// the consent owner's products at this institution that the institution no longer returns.
/// Returns the products as stored and how many were closed.
pub async fn upsert_products(
    state: &AppState,
    consent: &Consent,
    products: &[Document],
) -> Result<(Vec<Document>, u64), AppError> {
    let stored = upsert(state, consent, products, EXTERNAL_PRODUCTS, &[]).await?;
    let closed = close_missing(state, consent, &stored, EXTERNAL_PRODUCTS, "ProductStatus").await?;
    Ok((stored, closed))
}

/// What the institution no longer returns for this customer is marked `Closed` (with
/// `Provenance.ClosedAt`), never deleted. Returns how many were closed now.
async fn close_missing(
    state: &AppState,
    consent: &Consent,
    returned: &[Document],
    collection: &str,
    status_field: &str,
) -> Result<u64, AppError> {
    let returned: Vec<Bson> = returned
        .iter()
        .filter_map(|d| {
            d.get_document("Provenance")
                .ok()?
                .get_str("ExternalId")
                .ok()
        })
        .map(|id| Bson::String(id.to_string()))
        .collect();
    let closed = state
        .db
        .open_finance
        .collection::<Document>(collection)
        .update_many(
            doc! {
                OWNER: consent.user_id,
                "Provenance.Institution": consent.institution.id(),
                "Provenance.ExternalId": {"$nin": returned},
                status_field: {"$ne": "Closed"},
            },
            doc! {"$set": {status_field: "Closed", "Provenance.ClosedAt": DateTime::now()}},
        )
        .await?;
    Ok(closed.modified_count)
}

/// The consent's accounts at its institution, normalised, read with `token` (see
/// [`fetch_products`]). Nothing is written here.
pub async fn fetch_accounts(
    gateway: &BankGateway,
    consent: &Consent,
    token: &str,
) -> Result<Vec<Document>, AppError> {
    let consent_id = consent.id.to_hex();
    let ctx = context(consent);
    let with_balances = consent.allows("ReadBalances");
    match consent.institution {
        Institution::GreenBank => {
            let accounts = gateway
                .get_all_pages(
                    Institution::GreenBank,
                    "/open-banking/v3.1/aisp/accounts",
                    "/Data/Account",
                    token,
                    &consent_id,
                )
                .await?;
            let balances = if with_balances {
                Some(
                    gateway
                        .get_all_pages(
                            Institution::GreenBank,
                            "/open-banking/v3.1/aisp/balances",
                            "/Data/Balance",
                            token,
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
                .get_json(Institution::MongoDbBank, &path, token, &consent_id)
                .await?;
            normalise::mdb_accounts(&body, &ctx)
        }
    }
}

/// Account fields that a narrower consent does not read (balances without `ReadBalances`,
/// identification without `ReadAccountsDetail`; `Account` is Green Bank's identification,
/// kept as a source field). Absent from a read, they are removed from the stored account
/// rather than left from an earlier, broader consent under a fresh `LastSyncedAt`.
const PERMISSION_DEPENDENT_ACCOUNT_FIELDS: &[&str] =
    &["AccountBalance", "AccountNumber", "Account"];

/// Upserts normalised accounts keyed by (institution, external id, owner) and returns them as
/// stored. Re-running with the same data leaves the same documents (only `LastSyncedAt` moves).
/// An account the institution no longer returns becomes `AccountStatus: "Closed"`.
pub async fn upsert_accounts(
    state: &AppState,
    consent: &Consent,
    accounts: &[Document],
) -> Result<Vec<Document>, AppError> {
    let stored = upsert(
        state,
        consent,
        accounts,
        EXTERNAL_ACCOUNTS,
        PERMISSION_DEPENDENT_ACCOUNT_FIELDS,
    )
    .await?;
    close_missing(state, consent, &stored, EXTERNAL_ACCOUNTS, "AccountStatus").await?;
    Ok(stored)
}

async fn upsert(
    state: &AppState,
    consent: &Consent,
    documents: &[Document],
    collection: &str,
    removed_when_absent: &[&str],
) -> Result<Vec<Document>, AppError> {
    let collection = state.db.open_finance.collection::<Document>(collection);
    let mut external_ids = Vec::with_capacity(documents.len());
    for document in documents {
        let external_id = document
            .get_document("Provenance")
            .and_then(|p| p.get_str("ExternalId"))
            .map_err(|_| AppError::Internal("a normalised document has no external id".into()))?;
        external_ids.push(Bson::String(external_id.to_string()));
        let filter = doc! {
            OWNER: consent.user_id,
            "Provenance.Institution": consent.institution.id(),
            "Provenance.ExternalId": external_id,
        };
        let mut update = doc! {"$set": as_set(document)};
        let absent: Document = removed_when_absent
            .iter()
            .filter(|field| !document.contains_key(**field))
            .map(|field| (field.to_string(), Bson::String(String::new())))
            .collect();
        if !absent.is_empty() {
            update.insert("$unset", absent);
        }
        collection
            .update_one(filter, update)
            .upsert(true)
            .await
            .map_err(|e| {
                if consents::is_duplicate_key(&e) {
                    AppError::Conflict(
                        "a record from this institution is linked to another customer".into(),
                    )
                } else {
                    e.into()
                }
            })?;
    }
    Ok(collection
        .find(doc! {
            OWNER: consent.user_id,
            "Provenance.Institution": consent.institution.id(),
            "Provenance.ExternalId": {"$in": external_ids},
        })
        .sort(doc! {"Provenance.ExternalId": 1})
        .await?
        .try_collect()
        .await?)
}

/// What connecting a consent stored: its accounts, and what happened to their transactions.
pub struct Connected {
    pub accounts: Vec<Document>,
    pub transactions: transactions::TransactionCounts,
}

/// Connects a consent's accounts: under the consent's lease (one worker at a time, so its
/// refresh token is never used twice), fetch the accounts, write them, then read their
/// transactions.
pub async fn connect_accounts(
    state: &AppState,
    gateway: &BankGateway,
    consent: &Consent,
) -> Result<Connected, AppError> {
    match consent.status.as_str() {
        consents::AUTHORISED => {}
        consents::AWAITING => {
            return Err(AppError::Conflict(
                "the consent is not authorised yet".into(),
            ));
        }
        other => return Err(AppError::Forbidden(format!("the consent is {other}"))),
    }
    let Some(lease) = consents::acquire_lease(&state.db, consent.id, 60).await? else {
        return Err(AppError::Conflict(
            "this consent is being synchronised already; try again shortly".into(),
        ));
    };
    let result = async {
        // Re-read under the lease: the credentials may have been rotated since `consent` was.
        let consent = consents::get_any(&state.db, consent.id)
            .await?
            .ok_or_else(|| AppError::NotFound("no such consent".into()))?;
        if consent.status != consents::AUTHORISED {
            return Err(AppError::Forbidden(format!(
                "the consent is {}",
                consent.status
            )));
        }
        let token = access_token(state, gateway, &consent).await?;
        let accounts = fetch_accounts(gateway, &consent, &token).await?;
        let stored = upsert_accounts(state, &consent, &accounts).await?;
        // The first connection also reads the transaction history inside the consent's window.
        let refs = transactions::accounts_to_read(&consent, &stored, &[]);
        let counts =
            transactions::sync_transactions(state, gateway, &consent, &token, &refs).await?;
        if consents::disconnect_if_ended(&state.db, &consent).await? {
            return Err(AppError::Forbidden(
                "the consent ended while its accounts were being read".into(),
            ));
        }
        Ok(Connected {
            accounts: stored,
            transactions: counts,
        })
    }
    .await;
    consents::release_lease(&state.db, lease).await?;
    result
}
