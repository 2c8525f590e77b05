//! Insights: the customer's financial summary across Leafy Bank and the connected institutions,
//! rule-based recommendations with their evidence, and the reference backend's legacy totals.
//! The pipelines, folding and rules live in `shared::insights`; this crate is the HTTP edge.

mod legacy;

use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use mongodb::bson::{DateTime, oid::ObjectId};
use serde::Serialize;

use shared::auth::{authenticate, bearer_token};
use shared::consents::iso;
use shared::http::MAX_BODY_BYTES;
use shared::insights::rules::{RULES, Recommendation};
use shared::insights::summary::Summary;
use shared::insights::{recommendations_for, summary_for};
use shared::transactions::cashflow;
use shared::{AppError, AppState, Problem};

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/insights/summary", get(summary))
        .route("/insights/recommendations", get(recommendations))
        .route("/insights/recurring", get(recurring))
        .route("/insights/cashflow", get(cashflow))
        .merge(legacy::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// The customer a request acts for. Tokens without a user (client tokens) have no insights.
async fn customer(state: &AppState, headers: &HeaderMap) -> Result<ObjectId, AppError> {
    let principal = authenticate(state, bearer_token(headers)).await?;
    principal
        .user_id
        .ok_or_else(|| AppError::Forbidden("this token does not act for a customer".into()))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SummaryResponse {
    user_id: String,
    as_of: String,
    #[serde(flatten)]
    summary: Summary,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RecommendationsResponse {
    user_id: String,
    as_of: String,
    rules_evaluated: [&'static str; RULES.len()],
    recommendations: Vec<Recommendation>,
}

/// Personal financial data: never stored by a cache on the way.
fn private<T: Serialize>(body: T) -> Response {
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /insights/summary`: authentication plus 3 database round trips.
async fn summary(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Problem> {
    let user_id = customer(&state, &headers).await?;
    let summary = summary_for(&state, user_id).await?;
    Ok(private(SummaryResponse {
        user_id: user_id.to_hex(),
        as_of: iso(DateTime::now()),
        summary,
    }))
}

/// `GET /insights/recommendations`: authentication plus 4 database round trips.
async fn recommendations(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let user_id = customer(&state, &headers).await?;
    let now = DateTime::now();
    let (_, recommendations) = recommendations_for(&state.db, user_id, now).await?;
    Ok(private(RecommendationsResponse {
        user_id: user_id.to_hex(),
        as_of: iso(now),
        rules_evaluated: RULES,
        recommendations,
    }))
}

/// `GET /insights/recurring`: recurring payments and income detected from the booked history
/// (authentication plus 1 aggregation).
async fn recurring(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Problem> {
    let user_id = customer(&state, &headers).await?;
    let now = DateTime::now();
    let found = shared::transactions::recurring::recurring_for(&state.db, user_id, now).await?;
    Ok(private(serde_json::json!({
        "userId": user_id.to_hex(),
        "asOf": iso(now),
        "lookbackDays": shared::transactions::recurring::LOOKBACK_DAYS,
        "recurring": found.iter().map(|r| r.to_json()).collect::<Vec<_>>(),
    })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CashflowQuery {
    months: Option<String>,
}

/// `GET /insights/cashflow?months=N`: income, spending and net per calendar month and
/// currency, and spending per category, for the N months up to the current one
/// (authentication plus 1 aggregation).
async fn cashflow(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<CashflowQuery>, QueryRejection>,
) -> Result<Response, Problem> {
    let user_id = customer(&state, &headers).await?;
    let Query(query) = query.map_err(|_| {
        AppError::BadRequest("the only query parameter is months, at most once".into())
    })?;
    let months = cashflow::parse_months(query.months.as_deref())?;
    let now = DateTime::now();
    let flow = cashflow::cashflow_for(&state.db, user_id, now, months).await?;
    Ok(private(serde_json::json!({
        "userId": user_id.to_hex(),
        "asOf": iso(now),
        "months": flow.months,
        "currencies": flow.currencies(),
        "cashflow": flow.flows.iter().map(|f| f.to_json()).collect::<Vec<_>>(),
    })))
}
