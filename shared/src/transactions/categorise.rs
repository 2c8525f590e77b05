//! Categorisation (enrichment): one category per transaction from a small fixed set, from the
//! merchant category code where present, then the bank's own transaction code, then words in
//! the merchant/counterparty name and description. The rules are data
//! (`categories.json`, compiled in); the reason is stored with the category.

use std::sync::OnceLock;

use serde::Deserialize;

/// Categories that count as income; `transfers` counts as neither income nor spending; every
/// other category is spending (a refund, a credit in a spending category, reduces it).
pub const INCOME_CATEGORIES: [&str; 2] = ["income", "salary"];
pub const TRANSFERS: &str = "transfers";

/// Why a transaction has its category (`CategorySource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CategorySource {
    MerchantCategoryCode,
    BankTransactionCode,
    Description,
    /// The counterparty is another of the customer's connected accounts.
    OwnAccount,
    /// Nothing matched: income for a credit, other for a debit.
    Default,
}

impl CategorySource {
    pub fn as_str(self) -> &'static str {
        match self {
            CategorySource::MerchantCategoryCode => "MerchantCategoryCode",
            CategorySource::BankTransactionCode => "BankTransactionCode",
            CategorySource::Description => "Description",
            CategorySource::OwnAccount => "OwnAccount",
            CategorySource::Default => "Default",
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rules {
    categories: Vec<String>,
    merchant_category_codes: Vec<(u16, u16, String)>,
    bank_transaction_codes: std::collections::HashMap<String, String>,
    keywords: Vec<(String, String)>,
}

fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| {
        serde_json::from_str(include_str!("categories.json"))
            .expect("categories.json is valid (checked by a unit test)")
    })
}

/// The fixed set of categories, in their documented order.
pub fn categories() -> &'static [String] {
    &rules().categories
}

pub fn is_category(value: &str) -> bool {
    categories().iter().any(|c| c == value)
}

/// What categorisation reads of one transaction.
#[derive(Debug, Default, Clone, Copy)]
pub struct Facts<'a> {
    pub credit: bool,
    pub merchant_category_code: Option<&'a str>,
    pub bank_transaction_code: Option<&'a str>,
    pub counterparty: Option<&'a str>,
    pub description: Option<&'a str>,
}

/// The category of a transaction and why. Salary is a credit's category only, and spending
/// categories found by words are not given to credits other than refunds of card purchases
/// (a credit from "Amazon" is a refund; an incoming transfer mentioning "rent" is income).
pub fn categorise(facts: &Facts<'_>) -> (&'static str, CategorySource) {
    let rules = rules();
    if let Some(code) = facts
        .merchant_category_code
        .and_then(|m| m.trim().parse::<u16>().ok())
        && let Some((_, _, category)) = rules
            .merchant_category_codes
            .iter()
            .find(|(from, to, _)| (*from..=*to).contains(&code))
    {
        return (intern(category), CategorySource::MerchantCategoryCode);
    }
    if let Some(category) = facts
        .bank_transaction_code
        .and_then(|c| rules.bank_transaction_codes.get(c))
    {
        return (intern(category), CategorySource::BankTransactionCode);
    }
    let text = [facts.counterparty, facts.description]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    for (word, category) in &rules.keywords {
        if !contains_word(&text, word) {
            continue;
        }
        let category = intern(category);
        let fits = if facts.credit {
            INCOME_CATEGORIES.contains(&category) || is_refund(facts)
        } else {
            category != "salary" && category != "income"
        };
        if fits {
            return (category, CategorySource::Description);
        }
    }
    (
        if facts.credit { "income" } else { "other" },
        CategorySource::Default,
    )
}

fn is_refund(facts: &Facts<'_>) -> bool {
    facts
        .bank_transaction_code
        .is_some_and(|c| c.ends_with("RFND") || c.ends_with("/Refund"))
}

/// Whether `word` occurs in `text` at word boundaries ("rent" is not in "current").
fn contains_word(text: &str, word: &str) -> bool {
    let boundary = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
    text.match_indices(word).any(|(at, _)| {
        boundary(text[..at].chars().next_back()) && boundary(text[at + word.len()..].chars().next())
    })
}

/// The rules' category names as `'static` strings from the fixed set.
fn intern(category: &str) -> &'static str {
    categories()
        .iter()
        .find(|c| c.as_str() == category)
        .map(String::as_str)
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debit<'a>(mcc: Option<&'a str>, code: Option<&'a str>, name: Option<&'a str>) -> Facts<'a> {
        Facts {
            credit: false,
            merchant_category_code: mcc,
            bank_transaction_code: code,
            counterparty: name,
            description: None,
        }
    }

    #[test]
    fn the_rules_are_valid_and_name_only_known_categories() {
        let rules = rules();
        assert_eq!(categories().len(), 15);
        for (from, to, c) in &rules.merchant_category_codes {
            assert!(from <= to && is_category(c), "{from}-{to} {c}");
        }
        for c in rules.bank_transaction_codes.values() {
            assert!(is_category(c), "{c}");
        }
        for (w, c) in &rules.keywords {
            assert!(is_category(c) && w == &w.to_lowercase(), "{w} {c}");
        }
    }

    #[test]
    fn merchant_code_comes_first_then_bank_code_then_words() {
        let mcc = debit(Some("5411"), Some("PMNT-CCRD-POSD"), Some("Spotify"));
        assert_eq!(
            categorise(&mcc),
            ("groceries", CategorySource::MerchantCategoryCode)
        );
        let code = debit(None, Some("PMNT-IDDT-PMDD"), Some("Netflix"));
        assert_eq!(
            categorise(&code),
            ("utilities", CategorySource::BankTransactionCode)
        );
        let words = debit(
            None,
            Some("PMNT-ICDT-STDO"),
            Some("Landlord Properties Ltd"),
        );
        assert_eq!(categorise(&words), ("rent", CategorySource::Description));
        assert_eq!(
            categorise(&debit(None, None, None)),
            ("other", CategorySource::Default)
        );
        assert_eq!(
            categorise(&debit(Some("6011"), None, None)).0,
            "cash",
            "ATM"
        );
        assert_eq!(categorise(&debit(Some("5732"), None, None)).0, "shopping");
        assert_eq!(categorise(&debit(Some("7011"), None, None)).0, "travel");
        assert_eq!(
            categorise(&debit(Some("4899"), None, None)).0,
            "subscriptions"
        );
    }

    #[test]
    fn credits_are_income_salary_or_refunds() {
        let salary = Facts {
            credit: true,
            bank_transaction_code: Some("ReceivedCreditTransfer/SalaryPayment"),
            ..Facts::default()
        };
        assert_eq!(categorise(&salary).0, "salary");
        let payroll = Facts {
            credit: true,
            description: Some("SALARY NOV 2026"),
            ..Facts::default()
        };
        assert_eq!(
            categorise(&payroll),
            ("salary", CategorySource::Description)
        );
        // A transfer from a person that mentions rent is income, not negative rent.
        let rent_share = Facts {
            credit: true,
            counterparty: Some("J. Smith"),
            description: Some("rent share"),
            ..Facts::default()
        };
        assert_eq!(categorise(&rent_share), ("income", CategorySource::Default));
        let refund = Facts {
            credit: true,
            bank_transaction_code: Some("PMNT-CCRD-RFND"),
            counterparty: Some("Amazon"),
            ..Facts::default()
        };
        assert_eq!(
            categorise(&refund),
            ("shopping", CategorySource::Description)
        );
        // A debit never becomes salary.
        assert_eq!(
            categorise(&debit(None, None, Some("salary advance repayment"))).0,
            "other"
        );
    }

    #[test]
    fn words_match_at_boundaries_only() {
        assert!(contains_word("landlord properties", "landlord"));
        assert!(contains_word("nando's", "nando"));
        assert!(!contains_word("current account", "rent"));
        assert!(!contains_word("coffee house", "fee"));
        assert!(contains_word("monthly account fee", "fee"));
        assert!(contains_word("booking.com", "booking.com"));
    }
}
