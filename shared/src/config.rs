//! Process settings from environment variables (non-secret). Secrets live in Secrets Manager.

use std::time::Duration;

use crate::error::AppError;

/// Audience of tokens accepted by Leafy Bank's own API.
pub const DEFAULT_API_AUDIENCE: &str = "leafy-bank-api";
pub const DEFAULT_ISSUER: &str = "leafy-bank-token-service";

#[derive(Debug, Clone)]
pub struct Settings {
    /// Name or ARN of the Secrets Manager secret (`SECRET_ID`).
    pub secret_id: String,
    /// How long a fetched secret is trusted before it is fetched again (`SECRET_TTL_SECONDS`).
    pub secret_ttl: Duration,
    /// `iss` of every token this service issues and accepts (`TOKEN_ISSUER`).
    pub issuer: String,
    /// `aud` of tokens for Leafy Bank's own API (`API_AUDIENCE`).
    pub api_audience: String,
    /// Lifetime of issued access tokens (`ACCESS_TOKEN_TTL_SECONDS`).
    pub access_token_ttl: Duration,
    /// Whether the legacy demo login (`get-authorization`) is served (`DEMO_LOGIN_ENABLED`).
    pub demo_login_enabled: bool,
    /// How often the list of revoked access tokens is read again (`REVOCATION_REFRESH_SECONDS`,
    /// default 5): the most a revocation waits to take effect in a warm function.
    pub revocation_refresh: Duration,
    /// The currency totals across currencies are given in when the customer's Leafy Bank
    /// accounts do not name one (`REPORTING_CURRENCY`, default USD).
    pub reporting_currency: String,
    /// How often the reference exchange rates are read again (`EXCHANGE_RATES_REFRESH_SECONDS`,
    /// default 300): the most a replaced rate table waits to take effect in a warm function.
    pub exchange_rates_refresh: Duration,
    /// How far back a first transaction sync reads and how much later ones re-read
    /// (`TRANSACTION_HISTORY_DAYS`, default 365; `TRANSACTION_OVERLAP_DAYS`, default 5).
    pub transaction_window: crate::transactions::SyncWindow,
}

impl Settings {
    pub fn from_env() -> Result<Self, AppError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, AppError> {
        let secret_id = lookup("SECRET_ID")
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| AppError::Config("environment variable SECRET_ID is not set".into()))?;
        Ok(Settings {
            secret_id,
            secret_ttl: Duration::from_secs(parse_u64(&lookup, "SECRET_TTL_SECONDS", 300)?),
            issuer: lookup("TOKEN_ISSUER").unwrap_or_else(|| DEFAULT_ISSUER.into()),
            api_audience: lookup("API_AUDIENCE").unwrap_or_else(|| DEFAULT_API_AUDIENCE.into()),
            access_token_ttl: Duration::from_secs(parse_u64(
                &lookup,
                "ACCESS_TOKEN_TTL_SECONDS",
                900,
            )?),
            demo_login_enabled: parse_bool(&lookup, "DEMO_LOGIN_ENABLED", false)?,
            revocation_refresh: Duration::from_secs(parse_u64(
                &lookup,
                "REVOCATION_REFRESH_SECONDS",
                5,
            )?),
            reporting_currency: {
                let code = lookup("REPORTING_CURRENCY").unwrap_or_else(|| "USD".into());
                if !crate::fx::is_currency_code(code.trim()) {
                    return Err(AppError::Config(
                        "environment variable REPORTING_CURRENCY must be a currency code like USD"
                            .into(),
                    ));
                }
                code.trim().to_string()
            },
            exchange_rates_refresh: Duration::from_secs(parse_u64(
                &lookup,
                "EXCHANGE_RATES_REFRESH_SECONDS",
                300,
            )?),
            transaction_window: crate::transactions::SyncWindow {
                history_days: parse_u64(&lookup, "TRANSACTION_HISTORY_DAYS", 365)?.min(5 * 365)
                    as i64,
                overlap_days: parse_u64(&lookup, "TRANSACTION_OVERLAP_DAYS", 5)?.min(90) as i64,
            },
        })
    }
}

fn parse_u64(
    lookup: &impl Fn(&str) -> Option<String>,
    key: &str,
    default: u64,
) -> Result<u64, AppError> {
    match lookup(key) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| {
            AppError::Config(format!(
                "environment variable {key} must be a whole number of seconds"
            ))
        }),
    }
}

fn parse_bool(
    lookup: &impl Fn(&str) -> Option<String>,
    key: &str,
    default: bool,
) -> Result<bool, AppError> {
    match lookup(key).as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some("1" | "true" | "TRUE" | "True" | "yes") => Ok(true),
        Some("0" | "false" | "FALSE" | "False" | "no") => Ok(false),
        Some(_) => Err(AppError::Config(format!(
            "environment variable {key} must be true or false"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Settings, AppError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn secret_id_is_required() {
        let err = settings(&[]).unwrap_err().to_string();
        assert!(err.contains("SECRET_ID"), "{err}");
    }

    #[test]
    fn defaults_apply() {
        let s = settings(&[("SECRET_ID", "x")]).unwrap();
        assert_eq!(s.access_token_ttl, Duration::from_secs(900));
        assert!(!s.demo_login_enabled);
        assert_eq!(s.api_audience, DEFAULT_API_AUDIENCE);
        assert_eq!(s.reporting_currency, "USD");
        assert_eq!(s.exchange_rates_refresh, Duration::from_secs(300));
    }

    #[test]
    fn malformed_values_name_the_variable() {
        let err = settings(&[("SECRET_ID", "x"), ("DEMO_LOGIN_ENABLED", "maybe")]).unwrap_err();
        assert!(err.to_string().contains("DEMO_LOGIN_ENABLED"));
        let err = settings(&[("SECRET_ID", "x"), ("SECRET_TTL_SECONDS", "-1")]).unwrap_err();
        assert!(err.to_string().contains("SECRET_TTL_SECONDS"));
        let err = settings(&[("SECRET_ID", "x"), ("REPORTING_CURRENCY", "dollars")]).unwrap_err();
        assert!(err.to_string().contains("REPORTING_CURRENCY"));
    }
}
