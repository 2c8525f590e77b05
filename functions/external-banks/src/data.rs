//! Each bank's per-customer data, compiled into the binary from `sample_data/banks`.

use std::collections::HashMap;

use serde_json::Value;

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

    /// A customer's records of one kind at Green Bank; none for an unknown customer.
    pub fn green(&self, customer_id: &str, kind: &str) -> Vec<Value> {
        records(&self.green, customer_id, kind)
    }

    pub fn mdb(&self, customer_id: &str, kind: &str) -> Vec<Value> {
        records(&self.mdb, customer_id, kind)
    }
}

fn records(customers: &HashMap<String, Value>, customer_id: &str, kind: &str) -> Vec<Value> {
    customers
        .get(customer_id)
        .and_then(|c| c[kind].as_array())
        .cloned()
        .unwrap_or_default()
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
        assert!(data.green("nobody", "accounts").is_empty());
    }
}
