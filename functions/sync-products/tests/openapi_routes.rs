//! No route without its description: every operation of `openapi/openapi.json` (served at
//! `GET /openapi.json`) reaches a handler of the functions' routers, not the fallback's
//! "no such route" nor a 405. `scripts/check_openapi.py` checks the document against
//! `template.yaml` in the other direction (every deployed route is described).

use reqwest::{Method, StatusCode};
use serde_json::Value;
use testkit::Stack;

const FALLBACK: &str = "no such route";

async fn stack() -> Stack {
    Stack::with(|state, gateway| {
        sync_products::router(state.clone(), gateway, testkit::sync_options())
            .merge(insights::router(state))
    })
    .await
}

/// The path with every `{parameter}` filled with a well-formed id.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("unclosed path parameter") + open;
        out.push_str(&rest[..open]);
        out.push_str("000000000000000000000000");
        rest = &rest[close + 1..];
    }
    out + rest
}

fn is_fallback(status: StatusCode, body: &Value) -> bool {
    status == StatusCode::METHOD_NOT_ALLOWED
        || (status == StatusCode::NOT_FOUND && body["detail"] == FALLBACK)
}

#[tokio::test]
async fn every_described_operation_is_routed_and_the_document_is_served() {
    let s = stack().await;
    let served = s.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(served.status, StatusCode::OK);
    let shipped: Value = serde_json::from_str(include_str!("../../../openapi/openapi.json"))
        .expect("openapi.json is JSON");
    assert_eq!(
        served.body, shipped,
        "GET /openapi.json serves the shipped file"
    );

    // The check can fail: an undescribed path and a wrong method do reach the fallback.
    let unknown = s.call(Method::GET, "/no-such-route", None, None).await;
    assert!(
        is_fallback(unknown.status, &unknown.body),
        "{}",
        unknown.body
    );
    let wrong = s.call(Method::DELETE, "/oauth/token", None, None).await;
    assert!(is_fallback(wrong.status, &wrong.body), "{}", wrong.body);

    let mut checked = 0;
    for (path, item) in shipped["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            let Ok(method) = Method::from_bytes(method.to_ascii_uppercase().as_bytes()) else {
                continue;
            };
            if !["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&method.as_str()) {
                continue;
            }
            let reply = s.call(method.clone(), &concrete(path), None, None).await;
            assert!(
                !is_fallback(reply.status, &reply.body),
                "{method} {path} is described but not routed: {} {}",
                reply.status,
                reply.body
            );
            checked += 1;
        }
    }
    assert!(checked >= 40, "only {checked} operations in the document");
}
