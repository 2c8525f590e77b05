//! Each bank's per-customer data, compiled into the binary from `sample_data/banks`. A customer
//! not in those files gets a small deterministic portfolio derived from their id (two accounts
//! and a loan or mortgage), so that any customer — like the generated ones of the benchmarks —
//! has something to connect and sync.

use std::collections::HashMap;

use serde_json::{Value, json};

pub struct BankData {
    green: HashMap<String, Value>,
    mdb: HashMap<String, Value>,
}

fn by_customer(text: &str) -> HashMap<String, Value> {
    let file: Value =
        serde_json::from_str(text).expect("bank data is valid JSON (checked by tests)");
    file["customers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["customerId"].as_str()?.to_string(), c.clone())))
        .collect()
}

impl BankData {
    pub fn load() -> Self {
        BankData {
            green: by_customer(include_str!("../../../sample_data/banks/green-bank.json")),
            mdb: by_customer(include_str!("../../../sample_data/banks/mongodb-bank.json")),
        }
    }

    /// A customer's records of one kind at Green Bank.
    pub fn green(&self, customer_id: &str, kind: &str) -> Vec<Value> {
        match self.green.get(customer_id) {
            Some(c) => c[kind].as_array().cloned().unwrap_or_default(),
            None => synthetic_green(customer_id, kind),
        }
    }

    /// A customer's records of one kind at MongoDB Bank.
    pub fn mdb(&self, customer_id: &str, kind: &str) -> Vec<Value> {
        match self.mdb.get(customer_id) {
            Some(c) => c[kind].as_array().cloned().unwrap_or_default(),
            None => synthetic_mdb(customer_id, kind),
        }
    }
}

/// A stable number from the customer id (FNV-1a), so synthetic data never changes.
fn seed(customer_id: &str, salt: u64) -> u64 {
    customer_id
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325 ^ salt, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

fn synthetic_green(customer_id: &str, kind: &str) -> Vec<Value> {
    let n = seed(customer_id, 1);
    let number = |i: u64| format!("9{:08}", (n >> (i * 8)) % 100_000_000);
    let accounts = [
        (0, "CurrentAccount", (n % 5000) as f64 + 0.25),
        (1, "Savings", (n % 20000) as f64 + 100.5),
    ];
    match kind {
        "accounts" => accounts
            .iter()
            .map(|(i, subtype, _)| json!({
                "AccountId": format!("GB-ACC-{}", number(*i)), "Status": "Enabled", "Currency": "USD",
                "AccountType": "Personal", "AccountSubType": subtype, "OpeningDate": "2022-01-15T09:00:00.000Z",
                "Account": [{"SchemeName": "UK.OBIE.SortCodeAccountNumber", "Identification": number(*i)}],
            }))
            .collect(),
        "balances" => accounts
            .iter()
            .map(|(i, _, amount)| json!({
                "AccountId": format!("GB-ACC-{}", number(*i)), "Type": "InterimAvailable",
                "Amount": {"Amount": format!("{amount:.2}"), "Currency": "USD"}, "CreditDebitIndicator": "Credit",
            }))
            .collect(),
        "products" => vec![json!({
            "ProductId": format!("GB-PRD-S{}", n % 1_000_000), "ProductType": "PersonalLoan", "Status": "Active",
            "ProductName": "Green personal loan", "OpeningDate": "2023-03-01T00:00:00.000Z",
            "OutstandingBalance": {"Amount": format!("{}.00", 1000 + n % 30000), "Currency": "USD"},
            "InterestRate": format!("{}.{:02}", 3 + n % 6, n % 100), "RepaymentPeriod": 24,
        })],
        _ => Vec::new(),
    }
}

fn synthetic_mdb(customer_id: &str, kind: &str) -> Vec<Value> {
    let n = seed(customer_id, 2);
    match kind {
        "accounts" => [(0u64, "CACC"), (1, "SVGS")]
            .iter()
            .map(|(i, cash)| {
                let bban = format!("8{:08}", (n >> (i * 8)) % 100_000_000);
                let amount = format!("{}.{:02}", (n >> (i * 4)) % 15000, n % 100);
                json!({
                    "resourceId": format!("mdb-acc-{bban}"), "bban": bban, "currency": "USD",
                    "cashAccountType": cash, "status": "enabled", "openingDate": "2021-06-01",
                    "balances": [{"balanceAmount": {"currency": "USD", "amount": amount}, "balanceType": "interimAvailable"}],
                })
            })
            .collect(),
        "loans" => vec![json!({
            "resourceId": format!("mdb-prd-S{}", n % 1_000_000), "productType": "mortgage", "status": "active",
            "startDate": "2019-09-01", "interestRate": format!("{}.{:02}", 2 + n % 4, n % 100),
            "outstandingAmount": {"currency": "USD", "amount": format!("{}.00", 50_000 + n % 200_000)},
            "amortizationPeriodYears": 25,
            "property": {"address": "1 Synthetic Way", "value": {"currency": "USD", "amount": format!("{}.00", 300_000 + n % 200_000)}},
        })],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_banks_have_data_for_the_demo_user() {
        let data = BankData::load();
        let frida = "65a546ae4a8f64e8f88fb89e";
        assert!(!data.green(frida, "accounts").is_empty());
        assert!(!data.green(frida, "balances").is_empty());
        assert!(!data.mdb(frida, "accounts").is_empty());
        // Anyone else gets a stable synthetic portfolio.
        assert_eq!(data.green("nobody", "accounts").len(), 2);
        assert_eq!(
            data.green("nobody", "accounts"),
            data.green("nobody", "accounts")
        );
        assert_ne!(
            data.mdb("nobody", "accounts"),
            data.mdb("somebody", "accounts")
        );
        assert_eq!(data.mdb("nobody", "loans").len(), 1);
    }
}
