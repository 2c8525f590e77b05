//! Insights: one financial view of a customer across Leafy Bank and the institutions they
//! connected, computed by aggregation pipelines the database runs ([`pipelines`]), folded and
//! derived in Rust ([`summary`]), and the recommendation rules on top ([`rules`]).
//!
//! Database round trips (authentication is one more, done by `crate::auth`):
//! - summary: 4 aggregations (Leafy Bank accounts, external accounts, external products, last
//!   month's cash flow), sent concurrently;
//! - recommendations: the first 3 plus the authorised consents, the cash flow of 5 months and
//!   the recurring series, 6, concurrently;
//! - cash flow and recurring: 1 each;
//! - legacy total balance: 1 (internal) plus 1 when external ids are listed (another
//!   database), concurrently; legacy total debt: 2 concurrently (the debt, and the Leafy Bank
//!   accounts whose currency is the reporting one), or none when no ids are listed;
//! - and, where amounts in another currency are converted, the reference rate table's read
//!   when this process's copy is due (`crate::fx::RateCache`).
//!
//! A result set larger than [`BATCH_SIZE`] rows (far more than any customer holds) would need
//! a `getMore` per further batch: the figures stay exact, the round trips grow.

pub mod history_rules;
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
use crate::fx::{self, Conversion};
use crate::state::AppState;
use crate::transactions::{cashflow, recurring};
use rules::{Recommendation, RuleInput};
use summary::{AccountRow, ConsentRow, ConvertedPosition, ProductRow, Summary};

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

/// `GET /insights/summary`: 4 round trips at once (the holdings' 3 and last month's cash
/// flow), and the rate table's read when figures in other
/// currencies than the reporting one are converted and this process's copy is due (at most
/// every `EXCHANGE_RATES_REFRESH_SECONDS`).
pub async fn summary_for(state: &AppState, user_id: ObjectId) -> Result<Summary, AppError> {
    let (held, flow) = tokio::try_join!(
        holdings(&state.db, user_id),
        cashflow::cashflow_for(&state.db, user_id, DateTime::now(), 2),
    )?;
    let mut summary = held.summary();
    summary.last_month = Some(summary::LastMonth::of(&flow));
    let currency = fx::reporting_currency(
        held.internal.iter().map(|r| r.currency.as_str()),
        &state.settings.reporting_currency,
    );
    let (balances, debts) = summary.balances_and_debts();
    let table = if fx::needs_rates(&balances, &currency) || fx::needs_rates(&debts, &currency) {
        state.rates.current(&state.db).await?
    } else {
        None
    };
    let converted = ConvertedPosition::of(&summary, &currency, table.as_deref());
    if !converted.rates.is_empty() || !converted.excluded_currencies.is_empty() {
        tracing::info!(
            reporting_currency = %currency,
            rates = ?converted.rates,
            rates_as_of = %converted.rates_as_of.map(|d| d.to_string()).unwrap_or_default(),
            excluded = ?converted.excluded_currencies,
            "summary converted at reference rates"
        );
    }
    summary.converted = Some(converted);
    Ok(summary)
}

/// `GET /insights/recommendations`: the summary's 3 round trips, the consents', and the
/// transaction history's 2 (cash flow of [`history_rules::CASHFLOW_MONTHS`] months, recurring
/// series), all 6 at once.
pub async fn recommendations_for(
    db: &Db,
    user_id: ObjectId,
    now: DateTime,
) -> Result<(Summary, Vec<Recommendation>), AppError> {
    let (held, consents, cashflow, recurring) = tokio::try_join!(
        holdings(db, user_id),
        authorised_consents(db, user_id),
        cashflow::cashflow_for(db, user_id, now, history_rules::CASHFLOW_MONTHS),
        recurring::recurring_for(db, user_id, now),
    )?;
    let summary = held.summary();
    let history = history_rules::History {
        cashflow,
        recurring,
        accounts: held.external.clone(),
    };
    let found = rules::recommend(&RuleInput {
        summary: &summary,
        products: &held.products,
        consents: &consents,
        now,
        history: &history,
    });
    Ok((summary, found))
}

/// Amounts per currency.
pub type PerCurrency = BTreeMap<String, f64>;

/// `amounts` as one figure in `currency`, converted at the reference rates (read only when a
/// conversion is needed), with a log line naming the rates and their date, and each currency
/// left out for want of a rate.
async fn in_currency(
    state: &AppState,
    what: &str,
    amounts: &PerCurrency,
    currency: &str,
) -> Result<Conversion, AppError> {
    let table = if fx::needs_rates(amounts, currency) {
        state.rates.current(&state.db).await?
    } else {
        None
    };
    let conversion = fx::convert(amounts, currency, table.as_deref());
    fx::log_conversion(what, &conversion, table.as_deref());
    Ok(conversion)
}

/// The reporting currency of the customer whose Leafy Bank balances per currency are `internal`.
fn reporting_currency(state: &AppState, internal: &PerCurrency) -> String {
    fx::reporting_currency(
        internal.keys().map(String::as_str),
        &state.settings.reporting_currency,
    )
}

/// Legacy total balance: the user's Leafy Bank balances plus the listed external accounts
/// that are the user's and connected, in the user's reporting currency. 1 round trip, 2
/// (concurrent) with ids; plus the rate table's read when a conversion is due.
pub async fn legacy_total_balance(
    state: &AppState,
    user_id: ObjectId,
    account_ids: &[ObjectId],
) -> Result<Conversion, AppError> {
    let db = &state.db;
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
    let internal = summary::per_currency(&internal);
    let mut totals = internal.clone();
    for (currency, amount) in summary::per_currency(&external) {
        *totals.entry(currency).or_insert(0.0) += amount;
    }
    let currency = reporting_currency(state, &internal);
    in_currency(state, "total balance", &totals, &currency).await
}

/// Legacy total debt: the listed loans and mortgages that are the user's, in the user's
/// reporting currency. 2 round trips, concurrent (the debt, and the Leafy Bank accounts that
/// give the reporting currency); none when nothing is listed (the answer is 0).
pub async fn legacy_total_debt(
    state: &AppState,
    user_id: ObjectId,
    product_ids: &[ObjectId],
) -> Result<Conversion, AppError> {
    let db = &state.db;
    if product_ids.is_empty() {
        let none = PerCurrency::new();
        return Ok(fx::convert(&none, &state.settings.reporting_currency, None));
    }
    let (internal, debt) = tokio::try_join!(
        aggregate(
            db.leafy_bank.collection(ACCOUNTS),
            pipelines::legacy_internal_balance(user_id),
        ),
        aggregate(
            db.open_finance.collection(EXTERNAL_PRODUCTS),
            pipelines::legacy_debt(user_id, product_ids),
        ),
    )?;
    let currency = reporting_currency(state, &summary::per_currency(&internal));
    in_currency(
        state,
        "total debt",
        &summary::per_currency(&debt),
        &currency,
    )
    .await
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
