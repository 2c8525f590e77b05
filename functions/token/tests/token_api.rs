//! The token function over HTTP (its router, in process) against the real local stack:
//! FerretDB and the moto Secrets Manager emulator, started by scripts/test.sh.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, jwk::JwkSet};
use mongodb::bson::{Document, doc};
use serde_json::{Value, json};
use tower::ServiceExt;

use shared::auth::hash::sha256_hex;
use shared::auth::jwt::Claims;
use shared::provision::{get_secret, put_secret};
use shared::secrets::{SecretNeeds, SecretStore};
use shared::testing::{TestContext, settings, unique};
use shared::{AppError, AppState};

const FRIDA_ID: &str = "65a546ae4a8f64e8f88fb89e";
const FRIDA_LEGACY_TOKEN: &str = "f4f4184e9669f8a4008243ee00a04482349d462c69ad1d2b4ac0814923eddab0";
const VALIDATE: &str = "/api/v1/openfinance/secure/validate-token";
const LOGIN: &str = "/api/v1/openfinance/public/get-authorization";

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
}

fn app(ctx: &TestContext) -> Router {
    shared::http::finish(token::router(ctx.state.clone()))
}

async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

fn form_post(path: &str, body: &str) -> axum::http::request::Builder {
    let _ = body;
    Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
}

async fn token_request(app: &Router, auth: Option<String>, body: &str) -> Reply {
    let mut req = form_post("/oauth/token", body);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    send(app, req.body(Body::from(body.to_string())).unwrap()).await
}

async fn client_token(ctx: &TestContext, app: &Router) -> String {
    let reply = token_request(
        app,
        Some(basic(&ctx.client_id, &ctx.client_secret)),
        "grant_type=client_credentials",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body["access_token"].as_str().unwrap().to_string()
}

async fn validate(app: &Router, bearer: Option<&str>) -> Reply {
    let mut req = Request::post(VALIDATE);
    if let Some(t) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    send(app, req.body(Body::empty()).unwrap()).await
}

async fn get(app: &Router, uri: &str) -> Reply {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

fn assert_oauth_error(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.body["error"], code, "{}", reply.body);
    assert!(reply.body["error_description"].is_string());
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
}

#[tokio::test]
async fn client_credentials_token_verifies_with_the_published_key_and_is_stored_hashed() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    let reply = token_request(
        &app,
        Some(basic(&ctx.client_id, &ctx.client_secret)),
        "grant_type=client_credentials&scope=sync",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 900);
    assert_eq!(reply.body["scope"], "sync");
    let token = reply.body["access_token"].as_str().unwrap();

    let jwks: JwkSet =
        serde_json::from_value(get(&app, "/.well-known/jwks.json").await.body).unwrap();
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let key = DecodingKey::from_jwk(jwks.find(&kid).expect("kid published")).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&["leafy-bank-api"]);
    validation.set_issuer(&["leafy-bank-token-service"]);
    let claims: Claims = jsonwebtoken::decode(token, &key, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims.sub, ctx.client_id);
    assert_eq!(claims.client_id, ctx.client_id);
    assert_eq!(claims.scope, "sync");
    assert_eq!(claims.exp - claims.iat, 900);
    assert_eq!(claims.user_name, None);

    let record = ctx
        .state
        .db
        .tokens()
        .find_one(doc! {"_id": &claims.jti})
        .await
        .unwrap()
        .expect("token recorded");
    assert_eq!(record.get_str("TokenHash").unwrap(), sha256_hex(token));
    assert_eq!(record.get_str("ClientId").unwrap(), ctx.client_id);
    assert_eq!(record.get_str("Scope").unwrap(), "sync");
    assert!(
        record
            .get_document("TokenDates")
            .unwrap()
            .get_datetime("ExpiryDate")
            .is_ok()
    );
    let stored = serde_json::to_string(&record).unwrap();
    assert!(!stored.contains(token) && !stored.contains(token.split('.').nth(2).unwrap()));
}

#[tokio::test]
async fn client_credentials_in_the_form_body_are_accepted() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    let body = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        ctx.client_id, ctx.client_secret
    );
    let reply = token_request(&app, None, &body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["scope"], "openfinance sync");
}

#[tokio::test]
async fn token_endpoint_errors_follow_rfc_6749() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    let good = || Some(basic(&ctx.client_id, &ctx.client_secret));

    assert_oauth_error(
        &token_request(&app, good(), "scope=sync").await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    assert_oauth_error(
        &token_request(&app, good(), "grant_type=password&username=a&password=b").await,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
    );
    assert_oauth_error(
        &token_request(&app, good(), "grant_type=client_credentials&scope=admin").await,
        StatusCode::BAD_REQUEST,
        "invalid_scope",
    );
    assert_oauth_error(
        &token_request(
            &app,
            good(),
            "grant_type=client_credentials&grant_type=client_credentials",
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );

    let wrong_secret = token_request(
        &app,
        Some(basic(&ctx.client_id, "wrong")),
        "grant_type=client_credentials",
    )
    .await;
    assert_oauth_error(&wrong_secret, StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(
        wrong_secret.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_oauth_error(
        &token_request(
            &app,
            Some(basic("nobody", &ctx.client_secret)),
            "grant_type=client_credentials",
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    assert_oauth_error(
        &token_request(&app, None, "grant_type=client_credentials").await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    assert_oauth_error(
        &token_request(
            &app,
            Some("Basic %%%".into()),
            "grant_type=client_credentials",
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    let both = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        ctx.client_id, ctx.client_secret
    );
    assert_oauth_error(
        &token_request(&app, good(), &both).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );

    // JSON instead of a form, and no content type at all.
    let json_body = Request::post("/oauth/token")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::AUTHORIZATION, good().unwrap())
        .body(Body::from(r#"{"grant_type":"client_credentials"}"#))
        .unwrap();
    assert_oauth_error(
        &send(&app, json_body).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    let untyped = Request::post("/oauth/token")
        .header(header::AUTHORIZATION, good().unwrap())
        .body(Body::from("grant_type=client_credentials"))
        .unwrap();
    assert_oauth_error(
        &send(&app, untyped).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );

    let huge = format!("grant_type=client_credentials&scope={}", "a".repeat(20_000));
    let reply = token_request(&app, good(), &huge).await;
    assert_eq!(
        reply.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        reply.body
    );
    assert_eq!(reply.body["error"], "invalid_request");
}

#[tokio::test]
async fn a_client_not_allowed_the_grant_is_unauthorized_client() {
    let ctx = TestContext::new().await;
    let mut document = get_secret(&ctx.sm, &ctx.secret_id).await.unwrap().unwrap();
    document["clients"][0]["grant_types"] = json!([]);
    let secret_id = unique("leafy-test/restricted");
    put_secret(&ctx.sm, &secret_id, &document).await.unwrap();
    let store = SecretStore::new(
        ctx.sm.clone(),
        secret_id.clone(),
        std::time::Duration::from_secs(60),
        SecretNeeds::Issue,
    );
    let state = AppState::build(settings(&secret_id, true), store)
        .await
        .unwrap();
    let app = shared::http::finish(token::router(state));
    let reply = token_request(
        &app,
        Some(basic(&ctx.client_id, &ctx.client_secret)),
        "grant_type=client_credentials",
    )
    .await;
    assert_oauth_error(&reply, StatusCode::BAD_REQUEST, "unauthorized_client");
}

/// Signs `claims` with the service's real private key, under `kid`.
async fn sign_with_service_key(ctx: &TestContext, claims: &Value, kid: &str) -> String {
    let document = get_secret(&ctx.sm, &ctx.secret_id).await.unwrap().unwrap();
    let pem = document["signing_key"]["private_key_pem"].as_str().unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn verification_refuses_forged_expired_and_misaddressed_tokens() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    let login = get(&app, &format!("{LOGIN}?user_identifier=fridaklo")).await;
    let good = login.body["BearerToken"].as_str().unwrap().to_string();
    assert_eq!(validate(&app, Some(&good)).await.status, StatusCode::OK);

    let document = get_secret(&ctx.sm, &ctx.secret_id).await.unwrap().unwrap();
    let kid = document["signing_key"]["kid"].as_str().unwrap().to_string();
    let parts: Vec<&str> = good.split('.').collect();
    let payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();

    let mut refused = Vec::new();
    // alg none.
    refused.push((
        "alg none",
        format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        ),
    ));
    // Algorithm confusion: HS256 keyed with the public key.
    let public_pem = {
        use p256::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
        let sk = p256::SecretKey::from_pkcs8_pem(
            document["signing_key"]["private_key_pem"].as_str().unwrap(),
        )
        .unwrap();
        sk.public_key().to_public_key_pem(LineEnding::LF).unwrap()
    };
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(kid.clone());
    refused.push((
        "HS256 with the public key",
        jsonwebtoken::encode(
            &hs,
            &payload,
            &EncodingKey::from_secret(public_pem.as_bytes()),
        )
        .unwrap(),
    ));
    refused.push((
        "unknown kid",
        sign_with_service_key(&ctx, &payload, "no-such-key").await,
    ));
    let now = chrono::Utc::now().timestamp();
    for (what, patch) in [
        (
            "expired",
            json!({"exp": now - 3600, "nbf": now - 7200, "iat": now - 7200}),
        ),
        (
            "not yet valid",
            json!({"nbf": now + 3600, "exp": now + 7200}),
        ),
        ("wrong audience", json!({"aud": "green-bank"})),
        ("wrong issuer", json!({"iss": "someone-else"})),
    ] {
        let mut claims = payload.clone();
        for (k, v) in patch.as_object().unwrap() {
            claims[k] = v.clone();
        }
        refused.push((what, sign_with_service_key(&ctx, &claims, &kid).await));
    }
    let mut tampered = payload.clone();
    tampered["user_name"] = "gracehop".into();
    refused.push((
        "tampered payload",
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(tampered.to_string()),
            parts[2]
        ),
    ));
    refused.push(("garbage", "garbage.garbage.garbage".into()));

    for (what, token) in refused {
        let reply = validate(&app, Some(&token)).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{what}: {}",
            reply.body
        );
        assert!(reply.body["detail"].is_string(), "{what}");
        assert!(
            matches!(
                shared::auth::authenticate(&ctx.state, Some(&token)).await,
                Err(AppError::Unauthorized(_))
            ),
            "{what}"
        );
    }
}

#[tokio::test]
async fn a_revoked_token_is_refused_afterwards() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    let token = client_token(&ctx, &app).await;
    let principal = shared::auth::authenticate(&ctx.state, Some(&token))
        .await
        .unwrap();
    assert_eq!(principal.client_id, ctx.client_id);
    assert_eq!(principal.user_id, None);
    // A client token is valid but names no user.
    assert_eq!(
        validate(&app, Some(&token)).await.status,
        StatusCode::FORBIDDEN
    );

    // Revocation needs client authentication, and an unknown token is still a 200.
    let body = format!("token={token}");
    let unauthenticated = send(
        &app,
        form_post("/oauth/revoke", &body)
            .body(Body::from(body.clone()))
            .unwrap(),
    )
    .await;
    assert_oauth_error(&unauthenticated, StatusCode::UNAUTHORIZED, "invalid_client");
    let missing = send(
        &app,
        form_post("/oauth/revoke", "")
            .header(
                header::AUTHORIZATION,
                basic(&ctx.client_id, &ctx.client_secret),
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_oauth_error(&missing, StatusCode::BAD_REQUEST, "invalid_request");
    let unknown = send(
        &app,
        form_post("/oauth/revoke", "")
            .header(
                header::AUTHORIZATION,
                basic(&ctx.client_id, &ctx.client_secret),
            )
            .body(Body::from("token=unknown"))
            .unwrap(),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::OK);

    let revoked = send(
        &app,
        form_post("/oauth/revoke", &body)
            .header(
                header::AUTHORIZATION,
                basic(&ctx.client_id, &ctx.client_secret),
            )
            .body(Body::from(body.clone()))
            .unwrap(),
    )
    .await;
    assert_eq!(revoked.status, StatusCode::OK);
    match shared::auth::authenticate(&ctx.state, Some(&token)).await {
        Err(AppError::Unauthorized(m)) => assert!(m.contains("revoked"), "{m}"),
        other => panic!("revoked token accepted: {other:?}"),
    }
}

#[tokio::test]
async fn demo_login_finds_users_by_name_or_id_and_never_by_operator() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    let by_name = get(&app, &format!("{LOGIN}?user_identifier=fridaklo")).await;
    assert_eq!(by_name.status, StatusCode::OK, "{}", by_name.body);
    assert_eq!(by_name.body["UserName"], "fridaklo");
    assert!(by_name.body["message"].is_string());
    let token = by_name.body["BearerToken"].as_str().unwrap();
    let ok = validate(&app, Some(token)).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        ok.body["message"],
        "Bearer Token is valid for user: fridaklo"
    );
    let principal = shared::auth::authenticate(&ctx.state, Some(token))
        .await
        .unwrap();
    assert_eq!(principal.user_id.unwrap().to_hex(), FRIDA_ID);

    let by_id = get(&app, &format!("{LOGIN}?user_identifier={FRIDA_ID}")).await;
    assert_eq!(by_id.body["UserName"], "fridaklo");

    let unknown = get(&app, &format!("{LOGIN}?user_identifier=nobody")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["detail"], "User not found");
    let operator = get(
        &app,
        &format!("{LOGIN}?user_identifier=%7B%22%24ne%22%3A%20null%7D"),
    )
    .await;
    assert_eq!(operator.status, StatusCode::NOT_FOUND, "{}", operator.body);
    for missing in [
        LOGIN.to_string(),
        format!("{LOGIN}?user_identifier="),
        format!("{LOGIN}?user_identifier=a&user_identifier=b"),
        // Found by the fuzzer: a NUL reached PostgreSQL and came back as a 500.
        format!("{LOGIN}?user_identifier=frida%00klo"),
        format!("{LOGIN}?user_identifier=frida%1Bklo"),
    ] {
        let reply = get(&app, &missing).await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{missing}: {}",
            reply.body
        );
        assert!(reply.body["detail"].is_string());
    }
}

#[tokio::test]
async fn demo_login_is_off_unless_configured() {
    let ctx = TestContext::with_demo_login(false).await;
    let reply = get(&app(&ctx), &format!("{LOGIN}?user_identifier=fridaklo")).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn legacy_opaque_tokens_keep_working_and_are_stored_hashed() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    let reply = validate(&app, Some(FRIDA_LEGACY_TOKEN)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body["message"],
        "Bearer Token is valid for user: fridaklo"
    );
    assert_eq!(
        validate(&app, Some(&"0".repeat(64))).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        validate(&app, Some(&"x".repeat(5000))).await.status,
        StatusCode::FORBIDDEN
    );
    let none = validate(&app, None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert!(none.body["detail"].is_string());

    let stored: Vec<Document> = {
        use futures_util::TryStreamExt;
        ctx.state
            .db
            .tokens()
            .find(doc! {"TokenType": "legacy_bearer"})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    };
    let reference = shared::seed::read_extended_json(
        &shared::testing::sample_data_dir().join("open_finance.tokens.json"),
    )
    .unwrap();
    assert_eq!(stored.len(), reference.len());
    for record in &stored {
        assert!(record.get("BearerToken").is_none());
        assert_eq!(record.get_str("TokenHash").unwrap().len(), 64);
    }
    let frida = stored
        .iter()
        .find(|r| r.get_str("UserName") == Ok("fridaklo"))
        .unwrap();
    assert_eq!(
        frida.get_str("TokenHash").unwrap(),
        sha256_hex(FRIDA_LEGACY_TOKEN)
    );
    assert!(
        frida
            .get_document("TokenDates")
            .unwrap()
            .get_datetime("LastUseDate")
            .is_ok()
    );
}

#[tokio::test]
async fn the_secret_is_fetched_once_across_many_requests() {
    let ctx = TestContext::new().await;
    let app = app(&ctx);
    assert_eq!(ctx.state.secrets.fetch_count(), 1);
    for _ in 0..10 {
        client_token(&ctx, &app).await;
        assert_eq!(
            get(&app, "/.well-known/jwks.json").await.status,
            StatusCode::OK
        );
        assert_eq!(
            validate(&app, Some(FRIDA_LEGACY_TOKEN)).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(ctx.state.secrets.fetch_count(), 1);
}

#[tokio::test]
async fn a_secret_missing_a_key_is_a_clear_start_up_error() {
    let ctx = TestContext::new().await;
    let mut document = get_secret(&ctx.sm, &ctx.secret_id).await.unwrap().unwrap();
    let pem = document["signing_key"]["private_key_pem"]
        .as_str()
        .unwrap()
        .to_string();
    document.as_object_mut().unwrap().remove("signing_key");
    let secret_id = unique("leafy-test/incomplete");
    put_secret(&ctx.sm, &secret_id, &document).await.unwrap();
    let store = SecretStore::new(
        ctx.sm.clone(),
        secret_id.clone(),
        std::time::Duration::from_secs(60),
        SecretNeeds::Issue,
    );
    let err = AppState::build(settings(&secret_id, false), store)
        .await
        .err()
        .expect("start-up must fail")
        .to_string();
    assert!(err.contains("'signing_key'"), "{err}");
    assert!(!err.contains(&pem) && !err.contains("mongodb://"), "{err}");

    let store = SecretStore::new(
        ctx.sm.clone(),
        "leafy-test/absent".into(),
        std::time::Duration::from_secs(60),
        SecretNeeds::Issue,
    );
    let err = AppState::build(settings("leafy-test/absent", false), store)
        .await
        .err()
        .expect("must fail")
        .to_string();
    assert!(err.contains("leafy-test/absent"), "{err}");
}

#[tokio::test]
async fn unknown_routes_are_problem_json_404() {
    let ctx = TestContext::new().await;
    let reply = get(&app(&ctx), "/nope").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert_eq!(reply.body["status"], 404);
}
