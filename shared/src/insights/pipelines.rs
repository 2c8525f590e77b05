//! The aggregation pipelines, built as data. Each stays inside what FerretDB 1.24 runs
//! (DESIGN §8): a `$match` led by the indexed top-level owner field ([`OWNER`], which
//! FerretDB pushes down into PostgreSQL), then one `$group` whose `_id` is a
//! document of field paths and whose only accumulator is one `$sum`. Everything else is folded
//! and derived in Rust (see `super::summary`).

use mongodb::bson::{Document, doc, oid::ObjectId};

use crate::db::OWNER;

/// Accounts and products of a revoked consent are kept but marked so (`$ne` also matches
/// documents without provenance, such as the seeded reference data: connected, freshness
/// unknown).
pub const DISCONNECTED: &str = "Disconnected";
/// Products (and accounts) the institution no longer reports are marked closed, never deleted.
pub const CLOSED: &str = "Closed";
/// The product types the legacy total debt counts (the reference's definition).
pub const LEGACY_DEBT_TYPES: [&str; 2] = ["Loan", "Mortgage"];
/// The consent status whose expiry the recommendations watch.
pub const AUTHORISED: &str = "Authorised";

/// `leafy_bank.accounts` of one user, one row per (type, currency, balance) with the number of
/// accounts. The balance is part of the key so that an overdrawn account is never hidden inside
/// a group's sum; the row total is balance × count.
pub fn internal_accounts(user_id: ObjectId) -> Vec<Document> {
    vec![
        doc! {"$match": {OWNER: user_id}},
        doc! {"$group": {
            "_id": {
                "type": "$AccountType",
                "currency": "$AccountCurrency",
                "balance": "$AccountBalance",
            },
            "accounts": {"$sum": 1},
        }},
    ]
}

/// The user's connected, open external accounts, one row per (institution, type, currency,
/// balance, last sync) with the number of accounts: breakdowns, overdrafts and freshness from
/// one `$group`.
pub fn external_accounts(user_id: ObjectId) -> Vec<Document> {
    vec![
        doc! {"$match": {
            OWNER: user_id,
            "AccountStatus": {"$ne": CLOSED},
            "Provenance.ConnectionStatus": {"$ne": DISCONNECTED},
        }},
        doc! {"$group": {
            "_id": {
                "institution": "$AccountBank",
                "type": "$AccountType",
                "currency": "$AccountCurrency",
                "balance": "$AccountBalance",
                "syncedAt": "$Provenance.LastSyncedAt",
            },
            "accounts": {"$sum": 1},
        }},
    ]
}

/// The user's connected, not closed external products, the outstanding amounts summed per
/// (institution, type, currency, interest rate, property, last sync). The rate in the key gives
/// the balance-weighted average rate; the property gives each mortgage's loan-to-value.
pub fn external_products(user_id: ObjectId) -> Vec<Document> {
    vec![
        doc! {"$match": {
            OWNER: user_id,
            "ProductStatus": {"$ne": CLOSED},
            "Provenance.ConnectionStatus": {"$ne": DISCONNECTED},
        }},
        doc! {"$group": {
            "_id": {
                "institution": "$ProductBank",
                "type": "$ProductType",
                "currency": "$ProductCurrency",
                "rate": "$ProductInterestRate",
                "propertyValue": "$PropertyDetails.PropertyValue",
                "propertyAddress": "$PropertyDetails.Address",
                "syncedAt": "$Provenance.LastSyncedAt",
            },
            "amount": {"$sum": "$ProductAmount"},
        }},
    ]
}

/// The user's authorised consents, one row per (institution, expiry) with their number.
pub fn authorised_consents(user_id: ObjectId) -> Vec<Document> {
    vec![
        doc! {"$match": {OWNER: user_id, "Status": AUTHORISED}},
        doc! {"$group": {
            "_id": {"institution": "$Institution", "expiresAt": "$ExpiresAt"},
            "consents": {"$sum": 1},
        }},
    ]
}

/// Legacy total balance, internal part: the user's Leafy Bank balances per currency.
pub fn legacy_internal_balance(user_id: ObjectId) -> Vec<Document> {
    vec![
        doc! {"$match": {OWNER: user_id}},
        doc! {"$group": {"_id": "$AccountCurrency", "total": {"$sum": "$AccountBalance"}}},
    ]
}

/// Legacy total balance, external part: the listed accounts that are the user's (another
/// user's ids simply do not match) and still connected, per currency.
pub fn legacy_external_balance(user_id: ObjectId, account_ids: &[ObjectId]) -> Vec<Document> {
    vec![
        doc! {"$match": {
            OWNER: user_id,
            "_id": {"$in": account_ids},
            "Provenance.ConnectionStatus": {"$ne": DISCONNECTED},
        }},
        doc! {"$group": {"_id": "$AccountCurrency", "total": {"$sum": "$AccountBalance"}}},
    ]
}

/// Legacy total debt: the listed loans and mortgages that are the user's, connected and not
/// closed, per currency.
pub fn legacy_debt(user_id: ObjectId, product_ids: &[ObjectId]) -> Vec<Document> {
    vec![
        doc! {"$match": {
            OWNER: user_id,
            "_id": {"$in": product_ids},
            "ProductType": {"$in": LEGACY_DEBT_TYPES.to_vec()},
            "ProductStatus": {"$ne": CLOSED},
            "Provenance.ConnectionStatus": {"$ne": DISCONNECTED},
        }},
        doc! {"$group": {"_id": "$ProductCurrency", "total": {"$sum": "$ProductAmount"}}},
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::Bson;

    /// The stages and accumulators FerretDB 1.24 computes correctly (DESIGN §8).
    fn assert_ferretdb_safe(pipeline: &[Document]) {
        let allowed = [
            "$match", "$group", "$sort", "$limit", "$skip", "$project", "$unwind", "$unset",
            "$count",
        ];
        let mut groups = 0;
        for stage in pipeline {
            assert_eq!(stage.len(), 1, "one operator per stage: {stage}");
            let (name, body) = stage.iter().next().unwrap();
            assert!(allowed.contains(&name.as_str()), "stage {name}");
            if name == "$group" {
                groups += 1;
                let body = body.as_document().unwrap();
                let accumulators: Vec<_> = body.iter().filter(|(k, _)| *k != "_id").collect();
                assert_eq!(accumulators.len(), 1, "exactly one accumulator: {body}");
                let (_, acc) = accumulators[0];
                let acc = acc.as_document().unwrap();
                assert_eq!(acc.keys().collect::<Vec<_>>(), ["$sum"], "{acc}");
                // `_id`: one field path, or a document of field paths (no expressions).
                match body.get("_id").unwrap() {
                    Bson::String(path) => assert!(path.starts_with('$')),
                    Bson::Document(id) => {
                        for (_, v) in id {
                            let path = v.as_str().expect("field path");
                            assert!(path.starts_with('$') && !path.starts_with("$$"));
                        }
                    }
                    other => panic!("unexpected _id {other}"),
                }
            }
        }
        assert_eq!(groups, 1, "one $group per pipeline");
        assert!(
            pipeline[0].contains_key("$match"),
            "a $match on indexed fields comes first"
        );
    }

    #[test]
    fn every_pipeline_is_one_match_and_one_group_with_one_sum() {
        let user = ObjectId::new();
        let ids = [ObjectId::new()];
        for pipeline in [
            internal_accounts(user),
            external_accounts(user),
            external_products(user),
            authorised_consents(user),
            legacy_internal_balance(user),
            legacy_external_balance(user, &ids),
            legacy_debt(user, &ids),
        ] {
            assert_ferretdb_safe(&pipeline);
            assert_eq!(pipeline.len(), 2);
        }
    }

    #[test]
    fn every_pipeline_is_scoped_to_its_user() {
        let user = ObjectId::new();
        let owner_of = |p: &[Document]| -> Option<ObjectId> {
            let m = p[0].get_document("$match").unwrap();
            // The owner comes first: FerretDB pushes it down, the rest it filters itself.
            assert_eq!(m.keys().next().map(String::as_str), Some(OWNER), "{m}");
            m.get_object_id(OWNER).ok()
        };
        for pipeline in [
            internal_accounts(user),
            external_accounts(user),
            external_products(user),
            authorised_consents(user),
            legacy_internal_balance(user),
            legacy_external_balance(user, &[]),
            legacy_debt(user, &[]),
        ] {
            assert_eq!(owner_of(&pipeline), Some(user), "{pipeline:?}");
        }
    }

    #[test]
    fn disconnected_and_closed_items_are_filtered_out() {
        let user = ObjectId::new();
        let accounts = external_accounts(user);
        let m = accounts[0].get_document("$match").unwrap();
        assert_eq!(
            m.get_document("Provenance.ConnectionStatus").unwrap(),
            &doc! {"$ne": "Disconnected"}
        );
        assert_eq!(
            m.get_document("AccountStatus").unwrap(),
            &doc! {"$ne": "Closed"}
        );
        let products = external_products(user);
        let m = products[0].get_document("$match").unwrap();
        assert_eq!(
            m.get_document("ProductStatus").unwrap(),
            &doc! {"$ne": "Closed"}
        );
        assert_eq!(
            m.get_document("Provenance.ConnectionStatus").unwrap(),
            &doc! {"$ne": "Disconnected"}
        );
    }

    #[test]
    fn legacy_pipelines_take_only_the_listed_ids_and_the_reference_debt_types() {
        let user = ObjectId::new();
        let ids = [ObjectId::new(), ObjectId::new()];
        let debt = legacy_debt(user, &ids);
        let m = debt[0].get_document("$match").unwrap();
        assert_eq!(
            m.get_document("_id").unwrap(),
            &doc! {"$in": [ids[0], ids[1]]}
        );
        assert_eq!(
            m.get_document("ProductType").unwrap(),
            &doc! {"$in": ["Loan", "Mortgage"]}
        );
        assert_eq!(
            debt[1].get_document("$group").unwrap(),
            &doc! {"_id": "$ProductCurrency", "total": {"$sum": "$ProductAmount"}}
        );
        let balance = legacy_external_balance(user, &ids);
        let m = balance[0].get_document("$match").unwrap();
        assert_eq!(
            m.get_document("_id").unwrap(),
            &doc! {"$in": [ids[0], ids[1]]}
        );
        assert_eq!(
            legacy_internal_balance(user)[1],
            doc! {"$group": {"_id": "$AccountCurrency", "total": {"$sum": "$AccountBalance"}}}
        );
    }

    #[test]
    fn breakdown_keys_are_the_fields_the_fold_reads() {
        let user = ObjectId::new();
        let keys = |p: Vec<Document>| -> Vec<String> {
            p[1].get_document("$group")
                .unwrap()
                .get_document("_id")
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(
            keys(external_accounts(user)),
            ["institution", "type", "currency", "balance", "syncedAt"]
        );
        assert_eq!(
            keys(external_products(user)),
            [
                "institution",
                "type",
                "currency",
                "rate",
                "propertyValue",
                "propertyAddress",
                "syncedAt"
            ]
        );
        assert_eq!(
            keys(internal_accounts(user)),
            ["type", "currency", "balance"]
        );
        assert_eq!(
            keys(authorised_consents(user)),
            ["institution", "expiresAt"]
        );
    }
}
