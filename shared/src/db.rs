//! One MongoDB client per process, sized for Lambda, and the idempotent index setup.

use std::time::Duration;

use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, Database, IndexModel};

use crate::error::AppError;

pub const TOKENS: &str = "tokens";
pub const USERS: &str = "users";
pub const ACCOUNTS: &str = "accounts";
pub const EXTERNAL_ACCOUNTS: &str = "external_accounts";
pub const EXTERNAL_PRODUCTS: &str = "external_products";
pub const EXTERNAL_TRANSACTIONS: &str = "external_transactions";
pub const CONSENTS: &str = "consents";
pub const LEASES: &str = "consent_leases";

/// The top-level owner field (the customer's ObjectId) every per-customer collection carries,
/// next to the reference's nested `AccountUser.UserId` / `ProductCustomer.UserId`. Every
/// per-customer query and the first `$match` of every pipeline filter on it: on Atlas it leads
/// each per-customer index (and is the natural shard key); FerretDB pushes top-level equality
/// down into PostgreSQL, nested paths it does not.
pub const OWNER: &str = "UserId";

/// The per-customer collections whose reference documents name their owner only in a nested
/// field: (in `leafy_bank` rather than `open_finance`, collection, nested owner path). The seed
/// and [`Db::backfill_owner`] copy it to [`OWNER`].
pub const NESTED_OWNERS: [(bool, &str, &str); 3] = [
    (false, EXTERNAL_ACCOUNTS, "AccountUser.UserId"),
    (false, EXTERNAL_PRODUCTS, "ProductCustomer.UserId"),
    (true, ACCOUNTS, "AccountUser.UserId"),
];

#[derive(Clone)]
pub struct Db {
    pub client: Client,
    /// `open_finance`: tokens, consents, external accounts and products, sync runs.
    pub open_finance: Database,
    /// `leafy_bank`: the bank's own users and accounts (read-only for this service).
    pub leafy_bank: Database,
}

impl Db {
    /// Builds the client. No connection is made until the first operation, which keeps cold
    /// starts short; a server that cannot be selected fails that operation after a few seconds.
    pub async fn connect(
        uri: &str,
        open_finance: &str,
        leafy_bank: &str,
    ) -> Result<Self, AppError> {
        Self::from_options(Self::options(uri).await?, open_finance, leafy_bank)
    }

    /// The client options used in production for `uri`; tests add a command monitor to them.
    pub async fn options(uri: &str) -> Result<ClientOptions, AppError> {
        let mut options = ClientOptions::parse(uri).await.map_err(|_| {
            AppError::Config(
                "secret key 'mongodb_uri' is not a valid MongoDB connection string".into(),
            )
        })?;
        options
            .app_name
            .get_or_insert_with(|| "leafy-bank-open-finance".into());
        // One Lambda instance serves one request at a time: a small pool is plenty.
        options.max_pool_size.get_or_insert(4);
        options.min_pool_size.get_or_insert(0);
        options.max_idle_time.get_or_insert(Duration::from_secs(60));
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(5));
        options
            .connect_timeout
            .get_or_insert(Duration::from_secs(5));
        Ok(options)
    }

    pub fn from_options(
        options: ClientOptions,
        open_finance: &str,
        leafy_bank: &str,
    ) -> Result<Self, AppError> {
        let client = Client::with_options(options)?;
        Ok(Db {
            open_finance: client.database(open_finance),
            leafy_bank: client.database(leafy_bank),
            client,
        })
    }

    pub fn tokens(&self) -> Collection<Document> {
        self.open_finance.collection(TOKENS)
    }

    pub fn users(&self) -> Collection<Document> {
        self.leafy_bank.collection(USERS)
    }

    /// Creates the indexes the service relies on. Safe to run any number of times. Optional
    /// kinds (TTL) that a server does not support are logged and skipped (DESIGN §8).
    pub async fn ensure_indexes(&self) -> Result<(), AppError> {
        let tokens = self.tokens();
        create(
            &tokens,
            doc! {"TokenHash": 1},
            Some(unique("token_hash_unique")),
            true,
        )
        .await?;
        create(&tokens, doc! {OWNER: 1}, Some(named("by_user")), true).await?;
        // The revocation list's periodic read: what was revoked since.
        create(
            &tokens,
            doc! {"Revoked": 1, "TokenDates.RevocationDate": 1},
            Some(named("by_revocation")),
            true,
        )
        .await?;
        let ttl = IndexOptions::builder()
            .name("expired_tokens_ttl".to_string())
            .expire_after(Duration::from_secs(0))
            .build();
        create(&tokens, doc! {"TokenDates.ExpiryDate": 1}, Some(ttl), false).await?;
        create(
            &tokens,
            doc! {"ConsentId": 1},
            Some(named("by_consent")),
            true,
        )
        .await?;

        let consents: Collection<Document> = self.open_finance.collection(CONSENTS);
        let by_owner = doc! {OWNER: 1, "Institution": 1, "Status": 1};
        create(
            &consents,
            by_owner,
            Some(named("by_user_institution_status")),
            true,
        )
        .await?;
        create(
            &consents,
            doc! {"Status": 1, "ExpiresAt": 1},
            Some(named("by_status_expiry")),
            true,
        )
        .await?;

        // A consent's latest lease, and the last finished scheduled run (where the next resumes).
        create(
            &self.open_finance.collection::<Document>(LEASES),
            doc! {"ConsentId": 1, "Generation": -1},
            Some(named("by_consent_generation")),
            true,
        )
        .await?;
        create(
            &self
                .open_finance
                .collection::<Document>(crate::sync::SYNC_RUNS),
            doc! {"Trigger": 1, "StartedAt": -1},
            Some(named("by_trigger_start")),
            true,
        )
        .await?;

        // The fan-out: the dispatcher's walk of authorised consents in `_id` order, the open
        // runs it finishes, each run's outcomes, and a consent's refresh slots of a day (kept
        // two days).
        create(
            &consents,
            doc! {"Status": 1, "_id": 1},
            Some(named("by_status_id")),
            true,
        )
        .await?;
        let runs = self
            .open_finance
            .collection::<Document>(crate::sync::SYNC_RUNS);
        create(&runs, doc! {"Status": 1}, Some(named("by_status")), true).await?;
        create(
            &self
                .open_finance
                .collection::<Document>(crate::fanout::SYNC_RUN_OUTCOMES),
            doc! {"RunId": 1},
            Some(named("by_run")),
            true,
        )
        .await?;
        let slots = self
            .open_finance
            .collection::<Document>(crate::budget::REFRESH_BUDGET);
        create(
            &slots,
            doc! {"ConsentId": 1, "Day": 1},
            Some(named("by_consent_day")),
            true,
        )
        .await?;
        let slots_ttl = IndexOptions::builder()
            .name("expired_slots_ttl".to_string())
            .expire_after(Duration::from_secs(0))
            .build();
        create(&slots, doc! {"ExpiresAt": 1}, Some(slots_ttl), false).await?;

        // Institution data is keyed by (institution, external id): upserts never duplicate.
        for (name, kind, by_owner) in [
            (EXTERNAL_ACCOUNTS, "AccountBank", "by_owner_bank"),
            (EXTERNAL_PRODUCTS, "ProductType", "by_owner_type"),
        ] {
            let collection: Collection<Document> = self.open_finance.collection(name);
            let key = doc! {"Provenance.Institution": 1, "Provenance.ExternalId": 1};
            create(
                &collection,
                key,
                Some(unique("institution_external_id_unique")),
                true,
            )
            .await?;
            // The earlier owner index on the nested reference field gives way to this one.
            drop_index(&collection, "by_owner").await;
            create(
                &collection,
                doc! {OWNER: 1, kind: 1},
                Some(named(by_owner)),
                true,
            )
            .await?;
            create(
                &collection,
                doc! {"Provenance.ConsentId": 1},
                Some(named("by_consent")),
                true,
            )
            .await?;
        }
        crate::transactions::ensure_indexes(self).await?;
        // The indexes the insights pipelines need beyond these.
        crate::insights::ensure_insights_indexes(self).await?;
        Ok(())
    }

    /// Indexes on the bank's own collections, created where this service writes them (the
    /// local seed); in production `leafy_bank` belongs to the core bank and is read-only here.
    pub async fn ensure_leafy_bank_indexes(&self) -> Result<(), AppError> {
        create(
            &self.users(),
            doc! {"UserName": 1},
            Some(named("by_user_name")),
            true,
        )
        .await?;
        let accounts: Collection<Document> = self.leafy_bank.collection(ACCOUNTS);
        drop_index(&accounts, "by_user").await;
        create(&accounts, doc! {OWNER: 1}, Some(named("by_owner")), true).await?;
        Ok(())
    }

    /// Gives every document of the per-customer collections that lacks the top-level
    /// [`OWNER`] the one its reference field names (data written before the field existed).
    /// Idempotent; returns how many documents were updated. An admin step, so the scan for
    /// documents without the field is acceptable here and nowhere else.
    pub async fn backfill_owner(&self, leafy_bank_too: bool) -> Result<u64, AppError> {
        let mut updated = 0;
        for (in_leafy_bank, name, nested) in NESTED_OWNERS {
            if in_leafy_bank && !leafy_bank_too {
                continue;
            }
            let database = if in_leafy_bank {
                &self.leafy_bank
            } else {
                &self.open_finance
            };
            let collection: Collection<Document> = database.collection(name);
            let (parent, field) = nested.split_once('.').expect("a nested path");
            let mut missing = collection
                .find(doc! {OWNER: {"$exists": false}})
                .projection(doc! {nested: 1})
                .await?;
            while let Some(document) = missing.try_next().await? {
                let owner = document
                    .get_document(parent)
                    .and_then(|p| p.get_object_id(field));
                let (Some(id), Ok(owner)) = (document.get("_id"), owner) else {
                    tracing::warn!(
                        collection = name,
                        "a document has no owner to copy; left as it is"
                    );
                    continue;
                };
                collection
                    .update_one(doc! {"_id": id}, doc! {"$set": {OWNER: owner}})
                    .await?;
                updated += 1;
            }
        }
        Ok(updated)
    }
}

/// Drops an index by name if it exists (an absent one is not an error).
async fn drop_index(collection: &Collection<Document>, name: &str) {
    if let Err(e) = collection.drop_index(name).await {
        tracing::debug!(collection = collection.name(), index = name, error = %e, "index not dropped");
    }
}

/// Creates a required index named `name` on `keys`, unique or not.
pub(crate) async fn create_index(
    collection: &Collection<Document>,
    keys: Document,
    name: &str,
    is_unique: bool,
) -> Result<(), AppError> {
    let options = if is_unique { unique(name) } else { named(name) };
    create(collection, keys, Some(options), true).await
}

fn unique(name: &str) -> IndexOptions {
    IndexOptions::builder()
        .name(name.to_string())
        .unique(true)
        .build()
}

fn named(name: &str) -> IndexOptions {
    IndexOptions::builder().name(name.to_string()).build()
}

async fn create(
    collection: &Collection<Document>,
    keys: Document,
    options: Option<IndexOptions>,
    required: bool,
) -> Result<(), AppError> {
    let model = IndexModel::builder().keys(keys).options(options).build();
    match collection.create_index(model).await {
        Ok(_) => Ok(()),
        Err(e) if !required => {
            tracing::warn!(collection = collection.name(), error = %e, "optional index not supported here; skipped");
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
