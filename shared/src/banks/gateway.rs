//! Outbound HTTP to the institutions' token endpoint and APIs. Base URLs come only from
//! configuration (never from a request: no SSRF). Every call has a timeout and a response size
//! limit; failures map to 502/504, a refusal of the consent to 403.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::Value;

use crate::error::AppError;
use crate::institutions::Institution;
use crate::secrets::ClientCredentials;

/// Largest response body accepted from an institution.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The institutions' OAuth token endpoint (`TOKEN_ENDPOINT_URL`).
    pub token_endpoint: Option<String>,
    /// Per institution, its API base URL (`GREEN_BANK_BASE_URL`, `MONGODB_BANK_BASE_URL`).
    pub base_urls: HashMap<Institution, String>,
    /// Per-call timeout (`BANK_TIMEOUT_MS`, default 5000).
    pub timeout: Duration,
    /// Most API calls per second this process makes to each institution
    /// (`BANK_CALLS_PER_SECOND`; unset: no limit). Across instances the total is at most this
    /// times the number of instances (the sync worker's maximum concurrency bounds that).
    pub calls_per_second: Option<NonZeroU32>,
}

impl GatewayConfig {
    /// Reads the URLs from the environment. An unset or empty one is allowed (a first deploy
    /// does not know its own API's URL yet): the routes that need it answer 500 and log which
    /// variable is missing, while every other route works. A malformed one is a start-up error.
    pub fn from_env() -> Result<Self, AppError> {
        let url = |key: &str| -> Result<Option<String>, AppError> {
            match std::env::var(key).ok().filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(v) => match reqwest::Url::parse(v.trim()) {
                    Ok(u) if u.scheme() == "https" || u.scheme() == "http" => {
                        Ok(Some(v.trim().trim_end_matches('/').to_string()))
                    }
                    _ => Err(AppError::Config(format!(
                        "environment variable {key} is not an http(s) URL"
                    ))),
                },
            }
        };
        let timeout_ms = match std::env::var("BANK_TIMEOUT_MS") {
            Ok(v) => v.trim().parse().map_err(|_| {
                AppError::Config(
                    "environment variable BANK_TIMEOUT_MS must be a whole number".into(),
                )
            })?,
            Err(_) => 5000,
        };
        let calls_per_second = match std::env::var("BANK_CALLS_PER_SECOND") {
            Ok(v) if !v.trim().is_empty() => {
                Some(v.trim().parse::<NonZeroU32>().map_err(|_| {
                    AppError::Config(
                        "environment variable BANK_CALLS_PER_SECOND must be a whole number above 0"
                            .into(),
                    )
                })?)
            }
            _ => None,
        };
        let mut base_urls = HashMap::new();
        for (institution, key) in [
            (Institution::GreenBank, "GREEN_BANK_BASE_URL"),
            (Institution::MongoDbBank, "MONGODB_BANK_BASE_URL"),
        ] {
            if let Some(base) = url(key)? {
                base_urls.insert(institution, base);
            }
        }
        Ok(GatewayConfig {
            token_endpoint: url("TOKEN_ENDPOINT_URL")?,
            base_urls,
            timeout: Duration::from_millis(timeout_ms),
            calls_per_second,
        })
    }

    /// Every institution under one base URL, as the local API server and the tests serve them.
    pub fn single_host(base: &str, timeout: Duration) -> Self {
        let base = base.trim_end_matches('/');
        GatewayConfig {
            token_endpoint: Some(format!("{base}/oauth/token")),
            base_urls: Institution::ALL
                .into_iter()
                .map(|i| (i, format!("{base}/banks/{}", i.id())))
                .collect(),
            timeout,
            calls_per_second: None,
        }
    }
}

/// Tokens from the institutions' token endpoint.
#[derive(Debug, Clone, Deserialize)]
pub struct TokenSet {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: Option<String>,
}

pub struct BankGateway {
    http: reqwest::Client,
    config: GatewayConfig,
    /// One limiter per institution, when `calls_per_second` is set.
    limits: HashMap<Institution, DefaultDirectRateLimiter>,
}

impl BankGateway {
    pub fn new(config: GatewayConfig) -> Result<Self, AppError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AppError::Config(format!("cannot build the HTTP client: {e}")))?;
        let limits = match config.calls_per_second {
            Some(n) => Institution::ALL
                .into_iter()
                .map(|i| (i, RateLimiter::direct(Quota::per_second(n))))
                .collect(),
            None => HashMap::new(),
        };
        Ok(BankGateway {
            http,
            config,
            limits,
        })
    }

    /// Waits for the institution's rate limit, if one is set.
    async fn pace(&self, institution: Institution) {
        if let Some(limit) = self.limits.get(&institution) {
            limit.until_ready().await;
        }
    }

    pub async fn exchange_code(
        &self,
        client: &ClientCredentials,
        code: &str,
        verifier: &str,
    ) -> Result<TokenSet, AppError> {
        self.token_request(
            client,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", verifier),
            ],
        )
        .await
    }

    pub async fn refresh(
        &self,
        client: &ClientCredentials,
        refresh_token: &str,
    ) -> Result<TokenSet, AppError> {
        self.token_request(
            client,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ],
        )
        .await
    }

    async fn token_request(
        &self,
        client: &ClientCredentials,
        form: &[(&str, &str)],
    ) -> Result<TokenSet, AppError> {
        let endpoint = self.config.token_endpoint.as_deref().ok_or_else(|| {
            AppError::Config("environment variable TOKEN_ENDPOINT_URL is not set".into())
        })?;
        let response = self
            .http
            .post(endpoint)
            .basic_auth(&client.client_id, Some(&client.client_secret))
            .form(form)
            .send()
            .await
            .map_err(|e| transport_error("the token endpoint", &e))?;
        let status = response.status();
        let body = read_limited(response, "the token endpoint").await?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|_| {
                AppError::BadGateway(
                    "the token endpoint answered a malformed token response".into(),
                )
            });
        }
        let error = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or_default();
        if error == "invalid_grant" {
            return Err(AppError::Forbidden(
                "the institution no longer accepts this consent's tokens; authorise a new consent"
                    .into(),
            ));
        }
        let message = format!("the token endpoint answered {}", status.as_u16());
        if status.is_server_error() {
            Err(AppError::UpstreamUnavailable(message))
        } else {
            Err(AppError::BadGateway(message))
        }
    }

    fn base_url(&self, institution: Institution) -> Result<&str, AppError> {
        self.config
            .base_urls
            .get(&institution)
            .map(String::as_str)
            .ok_or_else(|| {
                AppError::Config(format!(
                    "no base URL for {} (GREEN_BANK_BASE_URL / MONGODB_BANK_BASE_URL)",
                    institution.id()
                ))
            })
    }

    /// GETs `path` (with query) from the institution's API with the consent's access token.
    pub async fn get_json(
        &self,
        institution: Institution,
        path: &str,
        access_token: &str,
        consent_id: &str,
    ) -> Result<Value, AppError> {
        let url = format!("{}{path}", self.base_url(institution)?);
        self.get_url(institution, &url, access_token, consent_id)
            .await
    }

    /// GETs every page of a UK Open Banking list (`Links.Next`), the items under `items` (a
    /// JSON pointer such as `/Data/Account`) gathered into the first page's body. A next link
    /// is followed only inside the institution's configured base URL, and at most
    /// [`MAX_PAGES`] pages; anything else is a malformed payload.
    pub async fn get_all_pages(
        &self,
        institution: Institution,
        path: &str,
        items: &str,
        access_token: &str,
        consent_id: &str,
    ) -> Result<Value, AppError> {
        self.get_paged(
            institution,
            path,
            &[items],
            "/Links/Next",
            access_token,
            consent_id,
        )
        .await
    }

    /// GETs every page of a list whose next page is linked at `next` (a JSON pointer to a
    /// link: `/Links/Next` in UK Open Banking, `/transactions/_links/next/href` in the Berlin
    /// Group's), gathering the lists at `items` into the first page's body. The first list
    /// must be on every page; the others (Berlin Group's pending items, on the first page
    /// only) may be absent from later ones.
    pub async fn get_paged(
        &self,
        institution: Institution,
        path: &str,
        items: &[&str],
        next: &str,
        access_token: &str,
        consent_id: &str,
    ) -> Result<Value, AppError> {
        let base = self.base_url(institution)?;
        let name = institution.display_name();
        let malformed = |what: &str| AppError::BadGateway(format!("{name} answered {what}"));
        let mut url = reqwest::Url::parse(&format!("{base}{path}"))
            .map_err(|_| AppError::Config(format!("the base URL of {name} is not a URL")))?;
        let mut first: Option<Value> = None;
        for _ in 0..MAX_PAGES {
            let mut page = self
                .get_url(institution, url.as_str(), access_token, consent_id)
                .await?;
            let next_link = page.pointer(next).and_then(Value::as_str).map(String::from);
            match first.as_mut() {
                None => {
                    if page.pointer(items[0]).and_then(Value::as_array).is_none() {
                        return Err(malformed("a malformed payload: a page without its list"));
                    }
                    first = Some(page)
                }
                Some(body) => {
                    for (i, pointer) in items.iter().enumerate() {
                        let more = match page.pointer_mut(pointer).and_then(Value::as_array_mut) {
                            Some(list) => std::mem::take(list),
                            None if i > 0 => continue,
                            None => {
                                return Err(malformed(
                                    "a malformed payload: a page without its list",
                                ));
                            }
                        };
                        match body.pointer_mut(pointer).and_then(Value::as_array_mut) {
                            Some(list) => list.extend(more),
                            None if more.is_empty() => {}
                            None => {
                                return Err(malformed(
                                    "a malformed payload: a page without its list",
                                ));
                            }
                        }
                    }
                }
            }
            let Some(next_link) = next_link.filter(|n| !n.is_empty()) else {
                return first.ok_or_else(|| malformed("nothing"));
            };
            url = url
                .join(&next_link)
                .ok()
                .filter(|u| within(u.as_str(), base))
                .ok_or_else(|| malformed("a next-page link outside its API"))?;
        }
        Err(malformed(&format!("more than {MAX_PAGES} pages")))
    }

    async fn get_url(
        &self,
        institution: Institution,
        url: &str,
        access_token: &str,
        consent_id: &str,
    ) -> Result<Value, AppError> {
        let name = institution.display_name();
        self.pace(institution).await;
        let response = self
            .http
            .get(url)
            .bearer_auth(access_token)
            // Berlin Group APIs name the consent in a header; others ignore it.
            .header("Consent-ID", consent_id)
            .header("X-Request-ID", uuid::Uuid::new_v4().to_string())
            .send()
            .await
            .map_err(|e| transport_error(name, &e))?;
        let status = response.status();
        let body = read_limited(response, name).await?;
        match status.as_u16() {
            200..=299 => serde_json::from_slice(&body)
                .map_err(|_| AppError::BadGateway(format!("{name} answered a malformed payload"))),
            401 | 403 => Err(AppError::Forbidden(format!(
                "{name} refused access under this consent"
            ))),
            s if s >= 500 => Err(AppError::UpstreamUnavailable(format!(
                "{name} answered {s}"
            ))),
            s => Err(AppError::BadGateway(format!("{name} answered {s}"))),
        }
    }
}

/// Most pages of one list followed before the answer is refused as malformed.
pub const MAX_PAGES: usize = 50;

/// Whether `url` lies inside the API at `base` (same scheme, host, port and path prefix).
fn within(url: &str, base: &str) -> bool {
    let base = base.trim_end_matches('/');
    url.strip_prefix(base)
        .is_some_and(|rest| rest.starts_with('/') || rest.starts_with('?'))
}

fn transport_error(name: &str, e: &reqwest::Error) -> AppError {
    if e.is_timeout() {
        AppError::GatewayTimeout(format!("{name} did not answer in time"))
    } else {
        AppError::UpstreamUnavailable(format!("{name} could not be reached"))
    }
}

async fn read_limited(mut response: reqwest::Response, name: &str) -> Result<Vec<u8>, AppError> {
    if response
        .content_length()
        .is_some_and(|n| n as usize > MAX_RESPONSE_BYTES)
    {
        return Err(AppError::BadGateway(format!(
            "{name} answered a response that is too large"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(name, &e))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_RESPONSE_BYTES {
            return Err(AppError::BadGateway(format!(
                "{name} answered a response that is too large"
            )));
        }
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links_stay_inside_the_api() {
        let base = "https://bank.example/banks/green-bank";
        assert!(within(
            "https://bank.example/banks/green-bank/aisp/accounts?page=2",
            base
        ));
        assert!(within("https://bank.example/banks/green-bank?page=2", base));
        for outside in [
            "https://bank.example/banks/green-bank-evil/aisp",
            "https://bank.example/banks/mongodb-bank/v1/accounts",
            "https://evil.example/banks/green-bank/aisp",
            "http://bank.example/banks/green-bank/aisp",
            "https://bank.example.evil.example/banks/green-bank/aisp",
        ] {
            assert!(!within(outside, base), "{outside}");
        }
    }

    #[test]
    fn each_institution_gets_its_own_limit_of_calls_per_second() {
        let mut config = GatewayConfig::single_host("http://127.0.0.1:1", Duration::from_secs(1));
        assert!(BankGateway::new(config.clone()).unwrap().limits.is_empty());
        config.calls_per_second = NonZeroU32::new(3);
        let gateway = BankGateway::new(config).unwrap();
        for institution in Institution::ALL {
            let limit = &gateway.limits[&institution];
            // More than a second's allowance at once can never pass; the allowance can.
            assert!(limit.check_n(NonZeroU32::new(4).unwrap()).is_err());
            assert!(limit.check_n(NonZeroU32::new(3).unwrap()).is_ok());
        }
    }

    #[tokio::test]
    async fn an_unconfigured_institution_is_a_configuration_error_at_call_time() {
        let gateway = BankGateway::new(GatewayConfig {
            token_endpoint: None,
            base_urls: HashMap::new(),
            timeout: Duration::from_millis(100),
            calls_per_second: None,
        })
        .unwrap();
        let client = ClientCredentials {
            client_id: "c".into(),
            client_secret: "s".into(),
        };
        let refresh = gateway.refresh(&client, "r").await.unwrap_err();
        assert!(matches!(&refresh, AppError::Config(m) if m.contains("TOKEN_ENDPOINT_URL")));
        let fetch = gateway
            .get_json(Institution::GreenBank, "/accounts", "t", "c")
            .await
            .unwrap_err();
        assert!(matches!(&fetch, AppError::Config(m) if m.contains("GREEN_BANK_BASE_URL")));
    }
}
