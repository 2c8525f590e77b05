//! `application/x-www-form-urlencoded` request parameters, as RFC 6749 requires them: the
//! right media type, UTF-8, and no parameter twice.

use std::collections::HashMap;

use axum::http::HeaderMap;
use shared::AppError;
use shared::error::OAuthError;
use shared::http::media_type;

pub struct FormParams(HashMap<String, String>);

impl FormParams {
    pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Self, AppError> {
        if media_type(headers).as_deref() != Some("application/x-www-form-urlencoded") {
            return Err(OAuthError::invalid_request(
                "the request body must be application/x-www-form-urlencoded",
            ));
        }
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|_| OAuthError::invalid_request("the request body is not a valid form"))?;
        let mut params = HashMap::new();
        for (key, value) in pairs {
            // The decoder replaces invalid UTF-8 instead of failing; such input is refused.
            if key.contains(char::REPLACEMENT_CHARACTER)
                || value.contains(char::REPLACEMENT_CHARACTER)
            {
                return Err(OAuthError::invalid_request(
                    "the request body is not valid UTF-8",
                ));
            }
            if params.contains_key(&key) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter '{}' is repeated",
                    key.chars().take(32).collect::<String>()
                )));
            }
            params.insert(key, value);
        }
        Ok(FormParams(params))
    }

    /// A parameter's value; an empty value counts as absent (RFC 6749 §3.1).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderValue, header};

    fn form_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded; charset=UTF-8"),
        );
        h
    }

    #[test]
    fn parses_and_decodes() {
        let f = FormParams::parse(
            &form_headers(),
            b"grant_type=client_credentials&scope=a+b&x=",
        )
        .unwrap();
        assert_eq!(f.get("grant_type"), Some("client_credentials"));
        assert_eq!(f.get("scope"), Some("a b"));
        assert_eq!(f.get("x"), None);
    }

    #[test]
    fn refuses_repeats_other_media_types_and_bad_bytes() {
        assert!(FormParams::parse(&form_headers(), b"a=1&a=2").is_err());
        assert!(FormParams::parse(&HeaderMap::new(), b"a=1").is_err());
        assert!(FormParams::parse(&form_headers(), b"a=%FF").is_err());
    }
}
