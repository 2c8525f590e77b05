//! A real HTTP stack for integration tests: the token server, both emulated banks (with fault
//! injection on), connect-accounts and whatever router a test adds, served on an ephemeral
//! local port; Leafy Bank reaches the token endpoint and the banks through that port. Data and
//! secret come from a fresh [`TestContext`] (FerretDB and the Secrets Manager emulator).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc, oid::ObjectId};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use shared::AppState;
use shared::banks::{BankGateway, GatewayConfig};
use shared::consents;
pub use shared::testing::TestContext;

/// Legacy opaque tokens of the sample data's users.
pub const FRIDA: &str = "f4f4184e9669f8a4008243ee00a04482349d462c69ad1d2b4ac0814923eddab0";
pub const GRACE: &str = "9dda0b5e262cd9bf68018c1dbed82cbac882e2aeead1712fe9b913ffca91f435";
pub const ADA: &str = "1ed80e0f57a82d4b545e4122d56f68fcdf99b29e9932fa3677dd105691027d15";
pub const CLAU: &str = "cfd099861c25f5d1d1d959b93a7a4bec0daa3a40978b67d44da31d9ce3cd1032";
pub const FRIDA_ID: &str = "65a546ae4a8f64e8f88fb89e";

pub struct Stack {
    pub ctx: TestContext,
    pub base: String,
    pub http: reqwest::Client,
    pub gateway: Arc<BankGateway>,
    /// Requests the emulated banks have answered on a transactions resource (pages read).
    pub bank_transaction_pages: Arc<AtomicU64>,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl Stack {
    pub async fn start() -> Stack {
        Self::with(|_, _| axum::Router::new()).await
    }

    /// Starts the stack with `extra(state, gateway)` merged in.
    pub async fn with(extra: impl FnOnce(AppState, Arc<BankGateway>) -> axum::Router) -> Stack {
        let ctx = TestContext::new().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let gateway = Arc::new(
            BankGateway::new(GatewayConfig::single_host(
                &base,
                Duration::from_millis(1500),
            ))
            .unwrap(),
        );
        let s = ctx.state.clone();
        let pages = Arc::new(AtomicU64::new(0));
        let counted = pages.clone();
        let app = shared::http::finish(
            axum::Router::new()
                .merge(token::router(s.clone()))
                .merge(external_banks::router(s.clone(), true))
                .merge(connect_accounts::router(s.clone(), gateway.clone()))
                .merge(extra(s, gateway.clone()))
                .layer(axum::middleware::from_fn(
                    move |request: axum::extract::Request, next: axum::middleware::Next| {
                        let path = request.uri().path();
                        if path.starts_with("/banks/") && path.ends_with("/transactions") {
                            counted.fetch_add(1, Ordering::Relaxed);
                        }
                        next.run(request)
                    },
                )),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Stack {
            ctx,
            base,
            http: reqwest::Client::new(),
            gateway,
            bank_transaction_pages: pages,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        Reply {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    /// A POST with a raw body and content type, for malformed-input tests.
    pub async fn raw(
        &self,
        path: &str,
        token: &str,
        content_type: Option<&str>,
        body: &str,
    ) -> Reply {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .body(body.to_string());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        Reply {
            status,
            body: response.json().await.unwrap_or(Value::Null),
        }
    }

    pub async fn new_consent(
        &self,
        token: &str,
        institution: &str,
        permissions: &[&str],
    ) -> String {
        let body =
            json!({"institution": institution, "permissions": permissions, "expiresInDays": 90});
        let reply = self
            .call(Method::POST, "/consents", Some(token), Some(body))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
        assert_eq!(reply.body["status"], "AwaitingAuthorisation");
        reply.body["consentId"].as_str().unwrap().to_string()
    }

    pub async fn authorised_consent(
        &self,
        token: &str,
        institution: &str,
        permissions: &[&str],
    ) -> String {
        let id = self.new_consent(token, institution, permissions).await;
        let reply = self
            .call(
                Method::POST,
                &format!("/consents/{id}/authorise"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        assert_eq!(reply.body["status"], "Authorised");
        id
    }

    /// Consents at both banks for the four sample customers, authorised: eight in all.
    pub async fn consents_for_everyone(&self, permissions: &[&str]) -> Vec<String> {
        let mut ids = Vec::new();
        for token in [FRIDA, GRACE, ADA, CLAU] {
            for bank in ["green-bank", "mongodb-bank"] {
                ids.push(self.authorised_consent(token, bank, permissions).await);
            }
        }
        ids
    }

    pub async fn connect(&self, token: &str, consent: &str) -> Reply {
        self.call(
            Method::POST,
            "/accounts/connect",
            Some(token),
            Some(json!({"consentId": consent})),
        )
        .await
    }

    /// Every document of `collection`, by `_id`, without sync times (which move on every run).
    pub async fn snapshot(&self, collection: &str) -> Vec<Document> {
        let docs: Vec<Document> = self
            .ctx
            .state
            .db
            .open_finance
            .collection::<Document>(collection)
            .find(doc! {})
            .sort(doc! {"_id": 1})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        docs.into_iter()
            .map(|mut d| {
                if let Ok(p) = d.get_document_mut("Provenance") {
                    p.remove("LastSyncedAt");
                }
                d
            })
            .collect()
    }

    /// Makes `institution` misbehave (and clears any other fault).
    pub async fn set_fault(&self, institution: &str, fault: Document) {
        let faults = self
            .ctx
            .state
            .db
            .open_finance
            .collection::<Document>(external_banks::FAULTS);
        faults.delete_many(doc! {}).await.unwrap();
        let mut fault = fault;
        fault.insert("_id", institution);
        faults.insert_one(fault).await.unwrap();
    }

    pub async fn clear_faults(&self) {
        let faults = self
            .ctx
            .state
            .db
            .open_finance
            .collection::<Document>(external_banks::FAULTS);
        faults.delete_many(doc! {}).await.unwrap();
    }

    /// The consent's current access token, decrypted as Leafy Bank would.
    pub async fn stored_access_token(&self, consent: &str) -> String {
        let c = consents::get_any(&self.ctx.state.db, ObjectId::parse_str(consent).unwrap())
            .await
            .unwrap()
            .unwrap();
        let secret = self.ctx.state.secrets.current().await.unwrap();
        secret
            .data_key()
            .unwrap()
            .open(&c.credentials.unwrap().access_token, consent)
            .unwrap()
    }
}

/// A fresh sync queue and its dead-letter queue (redrive after `max_receive_count`
/// deliveries) on the local emulator's SQS (`AWS_ENDPOINT_URL_SQS`).
pub async fn sync_queue(max_receive_count: u32) -> (shared::queue::SyncQueue, String) {
    let config = aws_config::load_from_env().await;
    shared::queue::SyncQueue::create_with_dead_letter_queue(
        aws_sdk_sqs::Client::new(&config),
        &format!("sync-{}", ObjectId::new().to_hex()),
        max_receive_count,
        30,
    )
    .await
    .expect("the emulator's SQS (is AWS_ENDPOINT_URL_SQS set?)")
}

/// A benchmark customer's consent at `bank`, created and authorised there directly (no HTTP,
/// no JWT): for loading thousands.
pub async fn new_authorised_consent(
    state: &AppState,
    gateway: &BankGateway,
    user: ObjectId,
    bank: shared::institutions::Institution,
    permissions: &[&str],
) -> consents::Consent {
    let consent = consents::create(
        &state.db,
        user,
        &format!("bench_{}", user.to_hex()),
        bank,
        permissions.iter().map(|p| p.to_string()).collect(),
        90,
    )
    .await
    .expect("consent");
    shared::connect::authorise(state, gateway, &consent)
        .await
        .expect("authorise")
}

/// Sync options for tests: some concurrency, one quick retry, no stop margin.
pub fn sync_options() -> shared::sync::SyncOptions {
    shared::sync::SyncOptions {
        concurrency: 4,
        retries: 1,
        backoff: Duration::from_millis(10),
        stop_margin: Duration::ZERO,
        lease_seconds: 60,
        checkpoint_every: 10,
        daily_refreshes: shared::budget::DEFAULT_DAILY_REFRESHES,
    }
}

/// The `_id`s of the documents a listing answered under `field` (`{"accounts": [...]}`).
pub fn ids_in(body: &Value, field: &str) -> Vec<String> {
    body[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {body}"))
        .iter()
        .map(|d| d["_id"].as_str().unwrap().to_string())
        .collect()
}

/// The emulated bank's data file, as the bank serves it.
pub fn bank_data(institution: &str) -> Value {
    let path = shared::testing::sample_data_dir().join(format!("banks/{institution}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
