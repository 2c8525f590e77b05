//! Test support for integration tests against the real local stack that `scripts/test.sh`
//! starts (FerretDB or `MONGODB_URI`, and the moto Secrets Manager emulator). Each call to
//! [`TestContext::new`] gets its own secret and its own databases, seeded with the sample data,
//! so tests run in parallel without seeing each other.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mongodb::bson::{Bson, Document, doc};
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;

use crate::config::Settings;
use crate::db::Db;
use crate::provision::{new_secret, put_secret};
use crate::secrets::{SecretNeeds, SecretStore};
use crate::state::AppState;

pub const TEST_CLIENT_ID: &str = "test-client";
pub const TEST_CLIENT_SCOPES: &[&str] = &["openfinance", "sync"];

pub struct TestContext {
    pub state: AppState,
    pub open_finance_db: String,
    pub leafy_bank_db: String,
    pub secret_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub sm: aws_sdk_secretsmanager::Client,
    /// Every command `state` has sent to the database (see [`CommandLog`]).
    pub commands: CommandLog,
}

/// The database server under test: `TEST_MONGODB_URI`, set by `scripts/test.sh`.
pub fn mongodb_uri() -> String {
    std::env::var("TEST_MONGODB_URI").expect(
        "TEST_MONGODB_URI is not set: run the integration tests through scripts/test.sh, \
         which starts FerretDB and the Secrets Manager emulator",
    )
}

/// A Secrets Manager client built the standard way (`AWS_ENDPOINT_URL_SECRETS_MANAGER` points
/// it at the emulator).
pub async fn secrets_client() -> aws_sdk_secretsmanager::Client {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL_SECRETS_MANAGER").is_some(),
        "AWS_ENDPOINT_URL_SECRETS_MANAGER is not set: run the tests through scripts/test.sh"
    );
    aws_sdk_secretsmanager::Client::new(&aws_config::load_from_env().await)
}

pub fn sample_data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sample_data")
}

/// A unique, short name for this test's resources.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub fn settings(secret_id: &str, demo_login: bool) -> Settings {
    Settings::from_lookup(|k| match k {
        "SECRET_ID" => Some(secret_id.to_string()),
        "DEMO_LOGIN_ENABLED" => Some(demo_login.to_string()),
        // Tests revoke and expect the very next request refused, and replace the exchange
        // rates and expect the very next request to use them.
        "REVOCATION_REFRESH_SECONDS" => Some("0".into()),
        "EXCHANGE_RATES_REFRESH_SECONDS" => Some("0".into()),
        _ => None,
    })
    .expect("test settings")
}

impl TestContext {
    /// A fresh secret and fresh, seeded databases.
    pub async fn new() -> Self {
        Self::with_demo_login(true).await
    }

    pub async fn with_demo_login(demo_login: bool) -> Self {
        let sm = secrets_client().await;
        let run = unique("t");
        let (open_finance_db, leafy_bank_db) = (format!("of_{run}"), format!("lb_{run}"));
        let new = new_secret(
            &mongodb_uri(),
            &open_finance_db,
            &leafy_bank_db,
            TEST_CLIENT_ID,
            TEST_CLIENT_SCOPES,
        )
        .expect("new secret");
        let secret_id = format!("leafy-test/{run}");
        put_secret(&sm, &secret_id, &new.document)
            .await
            .expect("create test secret");
        let store = SecretStore::new(
            sm.clone(),
            secret_id.clone(),
            Duration::from_secs(300),
            SecretNeeds::All,
        );
        let commands = CommandLog::default();
        let mut options = Db::options(&mongodb_uri()).await.expect("client options");
        let log = commands.clone();
        options.command_event_handler = Some(EventHandler::callback(move |event| {
            if let CommandEvent::Started(started) = event {
                log.record(&started.db, started.command);
            }
        }));
        let db = Db::from_options(options, &open_finance_db, &leafy_bank_db).expect("db");
        store.current().await.expect("secret");
        let state = AppState::from_parts(settings(&secret_id, demo_login), store, db);
        crate::seed::seed_dir(&state.db, &sample_data_dir())
            .await
            .expect("seed sample data");
        // The seed is set-up, not a request path.
        commands.take();
        TestContext {
            state,
            open_finance_db,
            leafy_bank_db,
            secret_id,
            client_id: new.client_id,
            client_secret: new.client_secret,
            sm,
            commands,
        }
    }

    /// The same application (same secret, same databases) on a database client that counts
    /// the commands it sends, so tests can assert database round trips per request.
    pub async fn counting_state(&self) -> (AppState, CommandCounter) {
        self.counting_state_with(self.state.settings.clone()).await
    }

    /// [`Self::counting_state`] with other settings (say, the production revocation refresh).
    pub async fn counting_state_with(&self, settings: Settings) -> (AppState, CommandCounter) {
        let counter = CommandCounter::default();
        let mut options = Db::options(&mongodb_uri()).await.expect("client options");
        let seen = counter.0.clone();
        options.command_event_handler = Some(EventHandler::callback(move |event| {
            if let CommandEvent::Started(_) = event {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }));
        let db = Db::from_options(options, &self.open_finance_db, &self.leafy_bank_db).expect("db");
        let store = SecretStore::new(
            self.sm.clone(),
            self.secret_id.clone(),
            Duration::from_secs(300),
            SecretNeeds::All,
        );
        store.current().await.expect("secret");
        (AppState::from_parts(settings, store, db), counter)
    }
}

/// Counts database commands sent (command monitoring's started events).
#[derive(Clone, Default)]
pub struct CommandCounter(Arc<AtomicUsize>);

impl CommandCounter {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    /// The count since the previous call, resetting it.
    pub fn take(&self) -> usize {
        self.0.swap(0, Ordering::SeqCst)
    }
}

/// The commands a client has sent, with their database, as command monitoring saw them.
#[derive(Clone, Default)]
pub struct CommandLog(Arc<Mutex<Vec<(String, Document)>>>);

impl CommandLog {
    /// Keeps the commands that select documents (see [`queries_of`]); inserts and the rest
    /// are left out, so loading much data through a test context stays cheap.
    fn record(&self, db: &str, command: Document) {
        const SELECTING: [&str; 6] = [
            "find",
            "aggregate",
            "count",
            "update",
            "delete",
            "findAndModify",
        ];
        if command
            .keys()
            .next()
            .is_some_and(|name| SELECTING.contains(&name.as_str()))
        {
            self.0.lock().unwrap().push((db.to_string(), command));
        }
    }

    /// The commands sent since the previous call, emptying the log.
    pub fn take(&self) -> Vec<(String, Document)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Each query a command runs, as an `explain`able command: a find's, an aggregation's, a
/// count's, and every statement's filter of an update, delete or findAndModify (explained as
/// a find with that filter: the server selects the documents to change the same way).
/// Commands that select nothing (insert, createIndexes, getMore, …) give none.
pub fn queries_of(command: &Document) -> Vec<Document> {
    let Some((name, target)) = command.iter().next() else {
        return Vec::new();
    };
    let Some(collection) = target.as_str() else {
        return Vec::new();
    };
    let filter = |key: &str, of: &Document| of.get_document(key).cloned().unwrap_or_default();
    let statements = |list: &str| -> Vec<Document> {
        command
            .get_array(list)
            .map(|a| a.iter().filter_map(Bson::as_document).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .map(|s| doc! {"find": collection, "filter": filter("q", s)})
            .collect()
    };
    match name.as_str() {
        "find" => vec![doc! {"find": collection, "filter": filter("filter", command)}],
        "count" => vec![doc! {"count": collection, "query": filter("query", command)}],
        "findAndModify" => vec![doc! {"find": collection, "filter": filter("query", command)}],
        "aggregate" => vec![doc! {
            "aggregate": collection,
            "pipeline": command.get_array("pipeline").cloned().unwrap_or_default(),
            "cursor": {},
        }],
        "update" => statements("updates"),
        "delete" => statements("deletes"),
        _ => Vec::new(),
    }
}

/// Whether the server answered `explain` for a query it narrows before reading documents:
/// FerretDB says `filterPushdown: true` (the filter went into its backend's SQL); MongoDB's
/// plan has no collection scan.
pub fn narrowed_by_server(explained: &Document) -> bool {
    let ferretdb = explained
        .get_document("serverInfo")
        .is_ok_and(|i| i.contains_key("ferretdbVersion"));
    if ferretdb {
        explained.get_bool("filterPushdown").unwrap_or(false)
    } else {
        !mentions(&Bson::Document(explained.clone()), "COLLSCAN")
    }
}

fn mentions(value: &Bson, word: &str) -> bool {
    match value {
        Bson::String(s) => s == word,
        Bson::Document(d) => d.values().any(|v| mentions(v, word)),
        Bson::Array(a) => a.iter().any(|v| mentions(v, word)),
        _ => false,
    }
}

impl TestContext {
    /// Explains every query in `commands` and returns the ones the server does not narrow
    /// (a full-collection read), each with its database; an empty list is what a request
    /// path must give.
    pub async fn queries_not_pushed_down(&self, commands: &[(String, Document)]) -> Vec<String> {
        let mut failures = Vec::new();
        for (database, command) in commands {
            // A query of a collection that does not exist reads nothing (and FerretDB, having
            // no table to push into, would say `filterPushdown: false`).
            let existing = self
                .state
                .db
                .client
                .database(database)
                .list_collection_names()
                .await
                .expect("list collections");
            for query in queries_of(command) {
                let collection = query.iter().next().and_then(|(_, v)| v.as_str());
                if !collection.is_some_and(|c| existing.iter().any(|e| e == c)) {
                    continue;
                }
                let explained = self
                    .state
                    .db
                    .client
                    .database(database)
                    .run_command(doc! {"explain": query.clone()})
                    .await
                    .expect("explain");
                if !narrowed_by_server(&explained) {
                    failures.push(format!("{database}: {query}"));
                }
            }
        }
        failures
    }
}
