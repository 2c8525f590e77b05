//! The library every Leafy Bank Open Finance function shares: configuration, the Secrets
//! Manager secret, the MongoDB client, authentication, the error type and HTTP plumbing.

pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod http;
pub mod logging;
pub mod provision;
pub mod secrets;
pub mod seed;
pub mod state;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{AppError, Legacy, OAuthFailure, Problem};
pub use state::AppState;
