//! Talking to the institutions: the HTTP gateway (token exchange and API calls, with
//! timeouts and size limits) and one normaliser per institution's API style.

pub mod gateway;
pub mod normalise;

pub use gateway::{BankGateway, GatewayConfig, TokenSet};
