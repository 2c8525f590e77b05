//! The external institutions Leafy Bank connects to, and the consent permissions they know.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Institution {
    #[serde(rename = "green-bank")]
    GreenBank,
    #[serde(rename = "mongodb-bank")]
    MongoDbBank,
}

impl Institution {
    pub const ALL: [Institution; 2] = [Institution::GreenBank, Institution::MongoDbBank];

    /// Identifier in URLs, tokens (`aud`) and stored provenance.
    pub fn id(self) -> &'static str {
        match self {
            Institution::GreenBank => "green-bank",
            Institution::MongoDbBank => "mongodb-bank",
        }
    }

    /// The display name, as the reference data's `AccountBank` / `ProductBank` spell it.
    pub fn display_name(self) -> &'static str {
        match self {
            Institution::GreenBank => "Green Bank",
            Institution::MongoDbBank => "MongoDB Bank",
        }
    }

    /// The open-banking standard the institution's API follows.
    pub fn standard(self) -> &'static str {
        match self {
            Institution::GreenBank => "UK Open Banking Read/Write API 3.1",
            Institution::MongoDbBank => "Berlin Group NextGenPSD2 XS2A 1.3",
        }
    }

    /// Accepts the identifier or the display name (the legacy routes use display names).
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|i| value == i.id() || value == i.display_name())
    }

    /// The external id a bank gives an account with this account number (the emulated banks'
    /// data and the seeded reference documents agree on it).
    pub fn account_external_id(self, account_number: &str) -> String {
        match self {
            Institution::GreenBank => format!("GB-ACC-{account_number}"),
            Institution::MongoDbBank => format!("mdb-acc-{account_number}"),
        }
    }

    /// The external id of a product with the reference's `ProductId`.
    pub fn product_external_id(self, product_id: &str) -> String {
        match self {
            Institution::GreenBank => format!("GB-PRD-{product_id}"),
            Institution::MongoDbBank => format!("mdb-prd-{product_id}"),
        }
    }
}

/// Consent permissions, named as in UK Open Banking and used for both institutions.
pub const PERMISSIONS: [&str; 8] = [
    "ReadAccountsBasic",
    "ReadAccountsDetail",
    "ReadBalances",
    "ReadProducts",
    "ReadTransactionsBasic",
    "ReadTransactionsDetail",
    "ReadTransactionsCredits",
    "ReadTransactionsDebits",
];

/// Transaction permissions come in pairs, as in UK Open Banking: a level (basic or detail)
/// and a direction (credits and/or debits); one without the other reads nothing.
pub const TRANSACTION_LEVELS: [&str; 2] = ["ReadTransactionsBasic", "ReadTransactionsDetail"];
pub const TRANSACTION_DIRECTIONS: [&str; 2] = ["ReadTransactionsCredits", "ReadTransactionsDebits"];

pub fn is_permission(value: &str) -> bool {
    PERMISSIONS.contains(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_display_names_only() {
        assert_eq!(
            Institution::parse("green-bank"),
            Some(Institution::GreenBank)
        );
        assert_eq!(
            Institution::parse("MongoDB Bank"),
            Some(Institution::MongoDbBank)
        );
        assert_eq!(Institution::parse("mongodb bank"), None);
        assert_eq!(Institution::parse("Leafy Bank"), None);
    }

    #[test]
    fn serde_uses_the_ids() {
        assert_eq!(
            serde_json::to_string(&Institution::GreenBank).unwrap(),
            "\"green-bank\""
        );
    }
}
