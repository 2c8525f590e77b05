//! Transactions: read from each connected account at its institution, stored normalised and
//! categorised in `external_transactions`, kept fresh incrementally.
//!
//! - First connection reads the consent's window (default [`SyncWindow::history_days`]); later
//!   syncs read from the newest booked date already stored minus an overlap, so late-booked
//!   items are caught and the whole history is never read again.
//! - Keyed by (institution, account, transaction id) with a unique index: reruns and concurrent
//!   runs create no duplicates. New items are inserted in one unordered batch (a duplicate from
//!   a concurrent run is skipped), changed ones replaced by `_id`, unchanged ones left alone
//!   (compared by a content hash).
//! - Pending items the institution no longer returns (booked since under another id, or
//!   dropped) are removed; booked items are never removed.
//! - Money is exact: `AmountMinor` (Int64 minor units) is what pipelines sum; `Amount` is for
//!   display only.

pub mod cashflow;
pub mod categorise;
pub mod normalise;
pub mod query;
pub mod recurring;

use std::collections::{HashMap, HashSet};

use futures_util::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::banks::BankGateway;
use crate::banks::normalise::SyncContext;
use crate::consents::Consent;
use crate::db::{EXTERNAL_ACCOUNTS, EXTERNAL_TRANSACTIONS, OWNER};
use crate::error::AppError;
use crate::institutions::Institution;
use crate::state::AppState;
use normalise::{AccountRef, BOOKED, PENDING, TransactionContext};

const DAY_MS: i64 = 86_400_000;

/// How far back a first sync reads, and how much later ones re-read before the newest booked
/// date already stored (settings `TRANSACTION_HISTORY_DAYS`, `TRANSACTION_OVERLAP_DAYS`).
#[derive(Debug, Clone, Copy)]
pub struct SyncWindow {
    pub history_days: i64,
    pub overlap_days: i64,
}

impl Default for SyncWindow {
    fn default() -> Self {
        SyncWindow {
            history_days: 365,
            overlap_days: 5,
        }
    }
}

/// What one sync did to a consent's transactions.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct TransactionCounts {
    #[serde(rename = "Added")]
    pub added: u64,
    #[serde(rename = "Updated")]
    pub updated: u64,
    #[serde(rename = "Removed")]
    pub removed: u64,
}

impl TransactionCounts {
    pub fn add(&mut self, other: TransactionCounts) {
        self.added += other.added;
        self.updated += other.updated;
        self.removed += other.removed;
    }

    pub fn to_json(self) -> serde_json::Value {
        serde_json::json!({"added": self.added, "updated": self.updated, "removed": self.removed})
    }
}

/// The accounts (and, at MongoDB Bank, card accounts) of a consent that transactions are read
/// for: those just stored under it and not closed.
pub fn accounts_to_read(
    consent: &Consent,
    accounts: &[Document],
    products: &[Document],
) -> Vec<AccountRef> {
    let open = |d: &Document, status: &str| d.get_str(status) != Ok("Closed");
    let reference = |d: &Document, is_card: bool| {
        Some(AccountRef {
            id: d.get_object_id("_id").ok()?,
            external_id: d
                .get_document("Provenance")
                .ok()?
                .get_str("ExternalId")
                .ok()?
                .to_string(),
            is_card,
        })
    };
    let mut refs: Vec<AccountRef> = accounts
        .iter()
        .filter(|d| open(d, "AccountStatus"))
        .filter_map(|d| reference(d, false))
        .collect();
    if consent.institution == Institution::MongoDbBank {
        refs.extend(
            products
                .iter()
                .filter(|d| {
                    open(d, "ProductStatus") && d.get_str("ProductType") == Ok("CreditCard")
                })
                .filter_map(|d| reference(d, true)),
        );
    }
    refs
}

/// Syncs the transactions of `accounts` under `consent` with `token` (see
/// [`crate::connect::access_token`]). Does nothing for a consent without transaction
/// permissions.
pub async fn sync_transactions(
    state: &AppState,
    gateway: &BankGateway,
    consent: &Consent,
    token: &str,
    accounts: &[AccountRef],
) -> Result<TransactionCounts, AppError> {
    let mut counts = TransactionCounts::default();
    if !consent.reads_transactions() || accounts.is_empty() {
        return Ok(counts);
    }
    let own = own_account_numbers(state, consent).await?;
    let sync = SyncContext {
        institution: consent.institution,
        user_id: consent.user_id,
        user_name: consent.user_name.clone(),
        consent_id: consent.id,
        synced_at: DateTime::now(),
    };
    for account in accounts {
        let ctx = TransactionContext {
            sync: &sync,
            account,
            own_account_numbers: &own,
        };
        counts.add(sync_account(state, gateway, consent, token, &ctx).await?);
    }
    mark_own_transfers(state, consent, &own).await?;
    Ok(counts)
}

/// The account numbers of the customer's connected accounts, at every institution.
async fn own_account_numbers(
    state: &AppState,
    consent: &Consent,
) -> Result<HashSet<String>, AppError> {
    let accounts: Vec<Document> = state
        .db
        .open_finance
        .collection::<Document>(EXTERNAL_ACCOUNTS)
        .find(doc! {OWNER: consent.user_id})
        .projection(doc! {"AccountNumber": 1})
        .await?
        .try_collect()
        .await?;
    Ok(accounts
        .iter()
        .filter_map(|a| a.get_str("AccountNumber").ok().map(String::from))
        .collect())
}

/// Transactions stored before the account at their other end was connected are marked as
/// transfers between own accounts now.
async fn mark_own_transfers(
    state: &AppState,
    consent: &Consent,
    own: &HashSet<String>,
) -> Result<(), AppError> {
    if own.is_empty() {
        return Ok(());
    }
    let numbers: Vec<Bson> = own.iter().map(|n| Bson::String(n.clone())).collect();
    state
        .db
        .open_finance
        .collection::<Document>(EXTERNAL_TRANSACTIONS)
        .update_many(
            doc! {
                OWNER: consent.user_id,
                "OwnTransfer": false,
                "CounterpartyAccount": {"$in": numbers},
            },
            doc! {"$set": {
                "OwnTransfer": true,
                "Category": categorise::TRANSFERS,
                "CategorySource": categorise::CategorySource::OwnAccount.as_str(),
                "ContentHash": "",
            }},
        )
        .await?;
    Ok(())
}

fn iso_day(at: DateTime) -> String {
    normalise::utc(at).format("%Y-%m-%d").to_string()
}

fn iso_datetime(at: DateTime) -> String {
    normalise::utc(at).format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Percent-encodes a value for a URL path segment or query value (RFC 3986 unreserved
/// characters kept).
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where this sync of an account starts: the newest booked date stored minus the overlap,
/// or, the first time, the consent's window start or the default history; never before the
/// consent's window.
pub fn read_from(
    newest_booked: Option<DateTime>,
    consent: &Consent,
    window: SyncWindow,
    now: DateTime,
) -> DateTime {
    let start = match newest_booked {
        Some(newest) => newest.timestamp_millis() - window.overlap_days * DAY_MS,
        None => consent
            .transaction_from
            .map_or(now.timestamp_millis() - window.history_days * DAY_MS, |f| {
                f.timestamp_millis()
            }),
    };
    let floor = consent
        .transaction_from
        .map_or(i64::MIN, |f| f.timestamp_millis());
    DateTime::from_millis(start.max(floor))
}

async fn sync_account(
    state: &AppState,
    gateway: &BankGateway,
    consent: &Consent,
    token: &str,
    ctx: &TransactionContext<'_>,
) -> Result<TransactionCounts, AppError> {
    let collection = state
        .db
        .open_finance
        .collection::<Document>(EXTERNAL_TRANSACTIONS);
    let account = ctx.account;
    let scope = doc! {OWNER: consent.user_id, "AccountRef": account.id};
    let mut newest_filter = scope.clone();
    newest_filter.insert("Status", BOOKED);
    let newest = collection
        .find_one(newest_filter)
        .sort(doc! {"BookingDate": -1})
        .projection(doc! {"BookingDate": 1})
        .await?
        .and_then(|d| d.get_datetime("BookingDate").ok().copied());
    let from = read_from(
        newest,
        consent,
        state.settings.transaction_window,
        DateTime::now(),
    );

    let fetched = fetch(gateway, consent, token, ctx, from).await?;
    let mut fetched_ids = HashSet::new();
    let mut incoming: Vec<Document> = Vec::with_capacity(fetched.len());
    for mut d in fetched {
        let id = d.get_str("TransactionId").unwrap_or_default().to_string();
        if !fetched_ids.insert(id) {
            // The same id twice in one answer: the first one stands.
            continue;
        }
        d.insert("ContentHash", content_hash(&d));
        incoming.push(d);
    }

    // What is stored from the same start, and every pending item (they may be older).
    let mut stored_filter = scope.clone();
    stored_filter.insert(
        "$or",
        vec![
            doc! {"BookingDate": {"$gte": from}},
            doc! {"Status": PENDING},
        ],
    );
    let stored: Vec<Document> = collection
        .find(stored_filter)
        .projection(doc! {"_id": 1, "TransactionId": 1, "Status": 1, "ContentHash": 1})
        .await?
        .try_collect()
        .await?;
    let stored_by_id: HashMap<&str, &Document> = stored
        .iter()
        .filter_map(|d| Some((d.get_str("TransactionId").ok()?, d)))
        .collect();

    let mut counts = TransactionCounts::default();
    let mut new = Vec::new();
    for d in incoming {
        let id = d.get_str("TransactionId").unwrap_or_default();
        match stored_by_id.get(id) {
            None => new.push(d),
            Some(existing) if existing.get_str("ContentHash") == d.get_str("ContentHash") => {}
            Some(existing) => {
                let Ok(oid) = existing.get_object_id("_id") else {
                    continue;
                };
                let mut replacement = d.clone();
                replacement.insert("_id", oid);
                collection
                    .replace_one(doc! {"_id": oid, OWNER: consent.user_id}, replacement)
                    .await?;
                counts.updated += 1;
            }
        }
    }
    counts.added = insert_new(&collection, new).await?;

    let gone: Vec<Bson> = stored
        .iter()
        .filter(|d| d.get_str("Status") == Ok(PENDING))
        .filter_map(|d| d.get_str("TransactionId").ok())
        .filter(|id| !fetched_ids.contains(*id))
        .map(|id| Bson::String(id.to_string()))
        .collect();
    if !gone.is_empty() {
        let mut filter = scope;
        filter.insert("Status", PENDING);
        filter.insert("TransactionId", doc! {"$in": gone});
        counts.removed = collection.delete_many(filter).await?.deleted_count;
    }
    Ok(counts)
}

/// Inserts new transactions in one unordered batch; those a concurrent run inserted first
/// (duplicate key) are skipped. Returns how many this call inserted.
async fn insert_new(
    collection: &mongodb::Collection<Document>,
    new: Vec<Document>,
) -> Result<u64, AppError> {
    if new.is_empty() {
        return Ok(0);
    }
    let attempted = new.len() as u64;
    match collection.insert_many(new).ordered(false).await {
        Ok(result) => Ok(result.inserted_ids.len() as u64),
        Err(e) => match *e.kind {
            mongodb::error::ErrorKind::InsertMany(ref failure)
                if failure
                    .write_errors
                    .as_ref()
                    .is_some_and(|w| w.iter().all(|w| w.code == 11000))
                    && failure.write_concern_error.is_none() =>
            {
                let duplicates = failure.write_errors.as_ref().map_or(0, Vec::len) as u64;
                Ok(attempted - duplicates)
            }
            _ => Err(e.into()),
        },
    }
}

/// A digest of what the institution said about a transaction (everything but the sync time),
/// so an unchanged item is not written again.
fn content_hash(d: &Document) -> String {
    let mut hashed = d.clone();
    if let Ok(p) = hashed.get_document_mut("Provenance") {
        p.remove("LastSyncedAt");
    }
    let bytes = mongodb::bson::to_vec(&hashed).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..12])
}

/// Reads every page of an account's transactions from `from` on, normalised.
async fn fetch(
    gateway: &BankGateway,
    consent: &Consent,
    token: &str,
    ctx: &TransactionContext<'_>,
    from: DateTime,
) -> Result<Vec<Document>, AppError> {
    let consent_id = consent.id.to_hex();
    let account = encode(&ctx.account.external_id);
    match consent.institution {
        Institution::GreenBank => {
            let mut path = format!(
                "/open-banking/v3.1/aisp/accounts/{account}/transactions?fromBookingDateTime={}",
                encode(&iso_datetime(from))
            );
            if let Some(to) = consent.transaction_to {
                path.push_str(&format!("&toBookingDateTime={}", encode(&iso_datetime(to))));
            }
            let body = gateway
                .get_paged(
                    Institution::GreenBank,
                    &path,
                    &["/Data/Transaction"],
                    "/Links/Next",
                    token,
                    &consent_id,
                )
                .await?;
            normalise::green_transactions(&body, ctx)
        }
        Institution::MongoDbBank => {
            let (resource, key) = if ctx.account.is_card {
                ("card-accounts", "cardTransactions")
            } else {
                ("accounts", "transactions")
            };
            let mut path = format!(
                "/v1/{resource}/{account}/transactions?bookingStatus=both&dateFrom={}",
                iso_day(from)
            );
            if let Some(to) = consent.transaction_to {
                path.push_str(&format!("&dateTo={}", iso_day(to)));
            }
            let body = gateway
                .get_paged(
                    Institution::MongoDbBank,
                    &path,
                    &[&format!("/{key}/booked"), &format!("/{key}/pending")],
                    &format!("/{key}/_links/next/href"),
                    token,
                    &consent_id,
                )
                .await?;
            normalise::mdb_transactions(&body, ctx)
        }
    }
}

/// Creates the indexes of `external_transactions`: the unique key, and the owner-led ones
/// every per-customer query uses.
pub async fn ensure_indexes(db: &crate::db::Db) -> Result<(), AppError> {
    let collection = db
        .open_finance
        .collection::<Document>(EXTERNAL_TRANSACTIONS);
    crate::db::create_index(
        &collection,
        doc! {"Provenance.Institution": 1, "Provenance.AccountExternalId": 1, "Provenance.ExternalId": 1},
        "institution_account_transaction_unique",
        true,
    )
    .await?;
    for (keys, name) in [
        // The list (newest first, cursor on date then _id) and the cash-flow range.
        (
            doc! {OWNER: 1, "BookingDate": -1, "_id": -1},
            "by_owner_date",
        ),
        // One account's newest booked item and its stored window (the incremental sync).
        (
            doc! {OWNER: 1, "AccountRef": 1, "Status": 1, "BookingDate": -1},
            "by_owner_account_status_date",
        ),
        // Marking transfers between own accounts.
        (
            doc! {OWNER: 1, "CounterpartyAccount": 1},
            "by_owner_counterparty_account",
        ),
        // A consent's transactions, disconnected when it ends.
        (
            doc! {OWNER: 1, "Provenance.ConsentId": 1},
            "by_owner_consent",
        ),
    ] {
        crate::db::create_index(&collection, keys, name, false).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consents::{AUTHORISED, Consent};
    use mongodb::bson::oid::ObjectId;

    fn consent(from: Option<i64>) -> Consent {
        let now = DateTime::now();
        Consent {
            id: ObjectId::new(),
            user_id: ObjectId::new(),
            user_name: "u".into(),
            institution: Institution::GreenBank,
            permissions: vec![],
            status: AUTHORISED.into(),
            created_at: now,
            expires_at: now,
            authorised_at: None,
            status_history: vec![],
            transaction_from: from.map(DateTime::from_millis),
            transaction_to: None,
            credentials: None,
        }
    }

    #[test]
    fn the_first_read_takes_the_history_and_later_ones_overlap() {
        let window = SyncWindow {
            history_days: 365,
            overlap_days: 5,
        };
        let now = DateTime::from_millis(1_000 * DAY_MS);
        assert_eq!(
            read_from(None, &consent(None), window, now).timestamp_millis(),
            635 * DAY_MS
        );
        let newest = DateTime::from_millis(990 * DAY_MS);
        assert_eq!(
            read_from(Some(newest), &consent(None), window, now).timestamp_millis(),
            985 * DAY_MS
        );
        // The consent's window bounds both.
        assert_eq!(
            read_from(None, &consent(Some(900 * DAY_MS)), window, now).timestamp_millis(),
            900 * DAY_MS
        );
        assert_eq!(
            read_from(Some(newest), &consent(Some(988 * DAY_MS)), window, now).timestamp_millis(),
            988 * DAY_MS
        );
    }

    #[test]
    fn the_content_hash_ignores_only_the_sync_time() {
        let a = doc! {"Amount": 1, "Provenance": {"ExternalId": "x", "LastSyncedAt": DateTime::from_millis(1)}};
        let b = doc! {"Amount": 1, "Provenance": {"ExternalId": "x", "LastSyncedAt": DateTime::from_millis(2)}};
        let c = doc! {"Amount": 2, "Provenance": {"ExternalId": "x", "LastSyncedAt": DateTime::from_millis(1)}};
        assert_eq!(content_hash(&a), content_hash(&b));
        assert_ne!(content_hash(&a), content_hash(&c));
    }

    #[test]
    fn ids_are_encoded_for_urls() {
        assert_eq!(encode("GB-ACC-1"), "GB-ACC-1");
        assert_eq!(encode("a/b?c"), "a%2Fb%3Fc");
        assert_eq!(encode("2026-01-01T00:00:00Z"), "2026-01-01T00%3A00%3A00Z");
    }
}
