//! HTTP plumbing shared by every function: the two transports for one router, the request-id
//! middleware, and body parsing that turns every client mistake into a clear 4xx.

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::MethodRouter;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::Instrument;

use crate::error::AppError;

/// Largest request body any route accepts. API Gateway allows far more; nothing here needs it.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Runs `router` on Lambda when the runtime API is present, else as a local server on
/// `127.0.0.1:$PORT` (default 3000). Same router, two transports.
pub async fn serve(router: Router) -> Result<(), lambda_http::Error> {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        lambda_http::run(router).await
    } else {
        let port: u16 = std::env::var("PORT")
            .ok()
            .and_then(|p| p.parse().ok())
            .unwrap_or(3000);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        tracing::info!(port, "listening");
        axum::serve(listener, router).await?;
        Ok(())
    }
}

/// What every function's router gets once, at the outermost level (also when several routers
/// are merged into the local API server): a problem+json 404 for unknown paths, and the
/// request-id middleware.
pub fn finish(router: Router) -> Router {
    router
        .fallback(|| async { crate::error::Problem(AppError::NotFound("no such route".into())) })
        .layer(axum::middleware::from_fn(request_context))
}

/// Wraps each request in a span with its request id (the Lambda request id, a sane incoming
/// `x-request-id`, or a fresh one), echoes the id, and logs one line per request.
pub async fn request_context(request: Request, next: Next) -> Response {
    let request_id = request
        .extensions()
        .get::<lambda_http::Context>()
        .map(|c| c.request_id.clone())
        .or_else(|| {
            request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .filter(|v| {
                    v.len() <= 64 && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
                .map(String::from)
        })
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let span = tracing::info_span!("request", request_id = %request_id);
    let method = request.method().clone();
    // The path only: query strings may carry user identifiers.
    let path = request.uri().path().to_string();
    async move {
        let started = std::time::Instant::now();
        let mut response = next.run(request).await;
        tracing::info!(
            method = %method,
            path = %path,
            status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "handled"
        );
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", v);
        }
        response
    }
    .instrument(span)
    .await
}

/// A legacy route the reference serves with a trailing slash (`…/calculate-total-debt-for-user/`).
/// An API Gateway HTTP API route cannot end in `/`, so the template routes both `/x` and
/// `/x/{proxy+}` to the function, and the router answers both spellings with one handler.
pub fn with_or_without_slash<S>(
    router: Router<S>,
    path: &str,
    handler: MethodRouter<S>,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let bare = path.trim_end_matches('/');
    router
        .route(&format!("{bare}/"), handler.clone())
        .route(bare, handler)
}

/// Maps axum's body rejection (size limit, read failure) to a client error.
pub fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, AppError> {
    body.map_err(|e| match e.status().as_u16() {
        413 => AppError::PayloadTooLarge(MAX_BODY_BYTES),
        _ => AppError::BadRequest("the request body could not be read".into()),
    })
}

/// The media type of a request, lower-cased and without parameters.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// Parses a JSON body into `T`. Refuses other media types, malformed JSON, and any object key
/// starting with `$` (so a body can never smuggle a query operator), each with a clear message.
pub fn json_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, AppError> {
    match media_type(headers).as_deref() {
        Some("application/json") => {}
        Some(_) | None => {
            return Err(AppError::UnsupportedMediaType(
                "the request body must be application/json".into(),
            ));
        }
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| AppError::BadRequest(format!("the request body is not valid JSON: {e}")))?;
    reject_operator_keys(&value)?;
    serde_json::from_value(value)
        .map_err(|e| AppError::BadRequest(format!("invalid request body: {e}")))
}

/// Refuses JSON containing an object key that starts with `$`.
pub fn reject_operator_keys(value: &Value) -> Result<(), AppError> {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k.starts_with('$') {
                    return Err(AppError::BadRequest(format!(
                        "keys starting with '$' are not allowed (found '{k}')"
                    )));
                }
                reject_operator_keys(v)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(reject_operator_keys),
        _ => Ok(()),
    }
}

/// A stored document as the JSON the API promises: ObjectIds as hex strings, dates as
/// ISO-8601 strings, numbers as numbers.
pub fn plain_json(value: &mongodb::bson::Bson) -> Value {
    use mongodb::bson::Bson;
    match value {
        Bson::ObjectId(id) => Value::String(id.to_hex()),
        Bson::DateTime(at) => Value::String(at.try_to_rfc3339_string().unwrap_or_default()),
        Bson::Document(d) => {
            Value::Object(d.iter().map(|(k, v)| (k.clone(), plain_json(v))).collect())
        }
        Bson::Array(items) => Value::Array(items.iter().map(plain_json).collect()),
        other => other.clone().into_relaxed_extjson(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        user_id: String,
    }

    fn json_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        h
    }

    #[test]
    fn operator_keys_are_refused_at_any_depth() {
        assert!(reject_operator_keys(&json!({"a": [{"b": {"$ne": 1}}]})).is_err());
        assert!(reject_operator_keys(&json!({"a": "$ne"})).is_ok());
    }

    #[test]
    fn json_body_errors_are_client_errors() {
        let h = json_headers();
        assert!(json_body::<Body>(&h, br#"{"user_id": "x"}"#).is_ok());
        for bad in [
            &b"{"[..],
            br#"{"user_id": 5}"#,
            br#"{}"#,
            br#"{"user_id": {"$gt": ""}}"#,
        ] {
            let e = json_body::<Body>(&h, bad).unwrap_err();
            assert_eq!(e.status().as_u16(), 400, "{e}");
        }
        let e = json_body::<Body>(&HeaderMap::new(), br#"{"user_id": "x"}"#).unwrap_err();
        assert_eq!(e.status().as_u16(), 415);
    }
}
