//! The library every Leafy Bank Open Finance function shares: configuration, the Secrets
//! Manager secret, the MongoDB client, authentication, the error type and HTTP plumbing.

pub mod auth;
pub mod banks;
pub mod budget;
pub mod config;
pub mod connect;
pub mod consents;
pub mod crypto;
pub mod db;
pub mod error;
pub mod fanout;
pub mod fx;
pub mod http;
pub mod insights;
pub mod institutions;
pub mod logging;
#[cfg(feature = "testing")]
pub mod measure;
pub mod oauth;
pub mod provision;
pub mod queue;
pub mod secrets;
pub mod seed;
pub mod state;
pub mod sync;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transactions;

pub use error::{AppError, Legacy, OAuthFailure, Problem};
pub use state::AppState;
