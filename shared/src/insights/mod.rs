//! Insights: one financial view of a customer across Leafy Bank and the institutions they
//! connected, computed by aggregation pipelines the database runs ([`pipelines`]), folded and
//! derived in Rust ([`summary`]), and the recommendation rules on top ([`rules`]).
//!
//! Database round trips (authentication is one more, done by `crate::auth`):
//! - summary: 3 aggregations (Leafy Bank accounts, external accounts, external products), sent
//!   concurrently;
//! - recommendations: those 3 plus the authorised consents, 4, concurrently;
//! - legacy total balance: 1 (internal) plus 1 when external ids are listed (another
//!   database), concurrently; legacy total debt: 1, or none when no ids are listed.
//!
//! A result set larger than [`BATCH_SIZE`] rows (far more than any customer holds) would need
//! a `getMore` per further batch: the figures stay exact, the round trips grow.

pub mod pipelines;
pub mod rules;
pub mod summary;

use std::collections::BTreeMap;

use futures_util::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};
use mongodb::options::IndexOptions;
use mongodb::{Collection, IndexModel};

use crate::db::{ACCOUNTS, CONSENTS, Db, EXTERNAL_ACCOUNTS, EXTERNAL_PRODUCTS, OWNER};
use crate::error::AppError;
use rules::{Recommendation, RuleInput};
use summary::{AccountRow, ConsentRow, ProductRow, Summary};

/// Rows asked for in the first reply of each aggregation, so one reply holds them all.
pub const BATCH_SIZE: u32 = 1000;

async fn aggregate(
    collection: Collection<Document>,
    pipeline: Vec<Document>,
) -> Result<Vec<Document>, AppError> {
    Ok(collection
        .aggregate(pipeline)
        .batch_size(BATCH_SIZE)
        .await?
        .try_collect()
        .await?)
}

/// The user's Leafy Bank accounts (`leafy_bank.accounts`). One round trip.
pub async fn internal_accounts(db: &Db, user_id: ObjectId) -> Result<Vec<AccountRow>, AppError> {
    let rows = aggregate(
        db.leafy_bank.collection(ACCOUNTS),
        pipelines::internal_accounts(user_id),
    )
    .await?;
    Ok(rows.iter().map(AccountRow::internal).collect())
}

/// The user's connected external accounts. One round trip.
pub async fn external_accounts(db: &Db, user_id: ObjectId) -> Result<Vec<AccountRow>, AppError> {
    let rows = aggregate(
        db.open_finance.collection(EXTERNAL_ACCOUNTS),
        pipelines::external_accounts(user_id),
    )
    .await?;
    Ok(rows.iter().map(AccountRow::external).collect())
}

/// The user's connected, open external products. One round trip.
pub async fn external_products(db: &Db, user_id: ObjectId) -> Result<Vec<ProductRow>, AppError> {
    let rows = aggregate(
        db.open_finance.collection(EXTERNAL_PRODUCTS),
        pipelines::external_products(user_id),
    )
    .await?;
    Ok(rows.iter().map(ProductRow::from_row).collect())
}

/// The user's authorised consents by institution and expiry. One round trip.
pub async fn authorised_consents(db: &Db, user_id: ObjectId) -> Result<Vec<ConsentRow>, AppError> {
    let rows = aggregate(
        db.open_finance.collection(CONSENTS),
        pipelines::authorised_consents(user_id),
    )
    .await?;
    Ok(rows.iter().map(ConsentRow::from_row).collect())
}

/// What the customer holds, as the three pipelines return it.
#[derive(Debug, Clone, Default)]
pub struct Holdings {
    pub internal: Vec<AccountRow>,
    pub external: Vec<AccountRow>,
    pub products: Vec<ProductRow>,
}

impl Holdings {
    pub fn summary(&self) -> Summary {
        summary::fold(&self.internal, &self.external, &self.products)
    }
}

/// The three pipelines of the summary, sent concurrently: 3 round trips, one's latency.
pub async fn holdings(db: &Db, user_id: ObjectId) -> Result<Holdings, AppError> {
    let (internal, external, products) = tokio::try_join!(
        internal_accounts(db, user_id),
        external_accounts(db, user_id),
        external_products(db, user_id),
    )?;
    Ok(Holdings {
        internal,
        external,
        products,
    })
}

/// `GET /insights/summary`: 3 round trips.
pub async fn summary_for(db: &Db, user_id: ObjectId) -> Result<Summary, AppError> {
    Ok(holdings(db, user_id).await?.summary())
}

/// `GET /insights/recommendations`: the summary's 3 round trips and the consents', at once.
pub async fn recommendations_for(
    db: &Db,
    user_id: ObjectId,
    now: DateTime,
) -> Result<(Summary, Vec<Recommendation>), AppError> {
    let (held, consents) =
        tokio::try_join!(holdings(db, user_id), authorised_consents(db, user_id))?;
    let summary = held.summary();
    let found = rules::recommend(&RuleInput {
        summary: &summary,
        products: &held.products,
        consents: &consents,
        now,
    });
    Ok((summary, found))
}

/// Amounts per currency.
pub type PerCurrency = BTreeMap<String, f64>;

/// Legacy total balance: the user's Leafy Bank balances plus the listed external accounts
/// that are the user's and connected, per currency. 1 round trip, 2 (concurrent) with ids.
pub async fn legacy_total_balance(
    db: &Db,
    user_id: ObjectId,
    account_ids: &[ObjectId],
) -> Result<PerCurrency, AppError> {
    let internal = aggregate(
        db.leafy_bank.collection(ACCOUNTS),
        pipelines::legacy_internal_balance(user_id),
    );
    let (internal, external) = if account_ids.is_empty() {
        (internal.await?, Vec::new())
    } else {
        let external = aggregate(
            db.open_finance.collection(EXTERNAL_ACCOUNTS),
            pipelines::legacy_external_balance(user_id, account_ids),
        );
        tokio::try_join!(internal, external)?
    };
    let mut totals = summary::per_currency(&internal);
    for (currency, amount) in summary::per_currency(&external) {
        *totals.entry(currency).or_insert(0.0) += amount;
    }
    Ok(totals)
}

/// Legacy total debt: the listed loans and mortgages that are the user's, per currency.
/// 1 round trip; none when nothing is listed (the answer is 0).
pub async fn legacy_total_debt(
    db: &Db,
    user_id: ObjectId,
    product_ids: &[ObjectId],
) -> Result<PerCurrency, AppError> {
    if product_ids.is_empty() {
        return Ok(PerCurrency::new());
    }
    let rows = aggregate(
        db.open_finance.collection(EXTERNAL_PRODUCTS),
        pipelines::legacy_debt(user_id, product_ids),
    )
    .await?;
    Ok(summary::per_currency(&rows))
}

/// The one number a legacy total answers. Amounts in different currencies are never added:
/// such a total is refused (409) and `GET /insights/summary` gives them per currency.
pub fn single_currency_total(totals: &PerCurrency, what: &str) -> Result<f64, AppError> {
    match totals.len() {
        0 => Ok(0.0),
        1 => Ok(totals.values().sum()),
        _ => {
            let names: Vec<&str> = totals.keys().map(String::as_str).collect();
            Err(AppError::Conflict(format!(
                "the {what} spans several currencies ({}) and cannot be one number; \
                 GET /insights/summary gives a total per currency",
                names.join(", ")
            )))
        }
    }
}

/// Indexes the insights pipelines rely on beyond the owner indexes `Db::ensure_indexes`
/// creates (on external accounts and products, whose first key is the owner the pipelines
/// match on; `leafy_bank.accounts` `by_owner`): the consents by user, status and expiry.
/// Idempotent.
pub async fn ensure_insights_indexes(db: &Db) -> Result<(), AppError> {
    let consents: Collection<Document> = db.open_finance.collection(CONSENTS);
    let model = IndexModel::builder()
        .keys(doc! {OWNER: 1, "Status": 1, "ExpiresAt": 1})
        .options(
            IndexOptions::builder()
                .name("insights_by_user_status_expiry".to_string())
                .build(),
        )
        .build();
    consents.create_index(model).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_currency_is_one_number_and_several_are_refused() {
        assert_eq!(
            single_currency_total(&PerCurrency::new(), "total debt").unwrap(),
            0.0
        );
        let one = PerCurrency::from([("USD".to_string(), 54_200.0)]);
        assert_eq!(single_currency_total(&one, "total debt").unwrap(), 54_200.0);
        let two = PerCurrency::from([("USD".to_string(), 1.0), ("EUR".to_string(), 2.0)]);
        let e = single_currency_total(&two, "total balance").unwrap_err();
        assert_eq!(e.status().as_u16(), 409);
        assert!(e.to_string().contains("EUR, USD"), "{e}");
    }
}
