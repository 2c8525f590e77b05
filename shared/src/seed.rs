//! Loads the sample data (MongoDB Extended JSON arrays named `<database>.<collection>.json`)
//! into the configured databases. Idempotent: documents are upserted by `_id`, so seeding twice
//! leaves the same data. Legacy clear-text `BearerToken`s are stored as digests.

use std::collections::BTreeMap;
use std::path::Path;

use mongodb::bson::{Bson, Document, doc};

use crate::auth::hash::sha256_hex;
use crate::auth::tokens::LEGACY_BEARER;
use crate::db::{Db, EXTERNAL_ACCOUNTS, EXTERNAL_PRODUCTS, NESTED_OWNERS, OWNER, TOKENS};
use crate::error::AppError;
use crate::institutions::Institution;

/// Per `database.collection`: how many documents were written.
pub type SeedReport = BTreeMap<String, usize>;

/// Parses one Extended JSON array file into documents.
pub fn read_extended_json(path: &Path) -> Result<Vec<Document>, AppError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AppError::Config(format!("cannot read {}: {e}", path.display())))?;
    let values: Vec<serde_json::Value> = serde_json::from_str(&text)
        .map_err(|e| AppError::Config(format!("{} is not a JSON array: {e}", path.display())))?;
    values
        .into_iter()
        .map(|v| match Bson::try_from(v) {
            Ok(Bson::Document(d)) => Ok(d),
            Ok(_) => Err(AppError::Config(format!(
                "{} holds a non-document entry",
                path.display()
            ))),
            Err(e) => Err(AppError::Config(format!(
                "{}: invalid Extended JSON: {e}",
                path.display()
            ))),
        })
        .collect()
}

/// A legacy token document as stored: the clear `BearerToken` becomes `TokenHash`, and the
/// record says whose it is (in the reference data its `_id` is the user's id).
pub fn legacy_token_record(mut reference: Document) -> Result<Document, AppError> {
    let raw = match reference.remove("BearerToken") {
        Some(Bson::String(s)) => s,
        _ => {
            return Err(AppError::Config(
                "a token document has no BearerToken".into(),
            ));
        }
    };
    let user_id = reference
        .get_object_id("_id")
        .map_err(|_| AppError::Config("a token document has no ObjectId _id".into()))?;
    reference.insert("TokenHash", sha256_hex(&raw));
    reference.insert("TokenType", LEGACY_BEARER);
    reference.insert("UserId", user_id);
    reference.insert("ClientId", "leafy-bank-ui");
    reference.insert("Revoked", false);
    Ok(reference)
}

/// A reference external account or product with the `Provenance` a connection would give it
/// (institution, standard, external id), so that connecting later updates it in place rather
/// than adding a twin. The reference data has no consent behind it, hence no `ConsentId`.
pub fn with_provenance(mut reference: Document, collection: &str) -> Result<Document, AppError> {
    let (bank_field, id_field) = match collection {
        EXTERNAL_ACCOUNTS => ("AccountBank", "AccountNumber"),
        EXTERNAL_PRODUCTS => ("ProductBank", "ProductId"),
        _ => return Ok(reference),
    };
    let bank = reference.get_str(bank_field).unwrap_or_default();
    let institution = Institution::parse(bank)
        .ok_or_else(|| AppError::Config(format!("unknown institution '{bank}' in {collection}")))?;
    let id = reference
        .get_str(id_field)
        .map_err(|_| AppError::Config(format!("a document in {collection} has no {id_field}")))?;
    let external_id = if collection == EXTERNAL_ACCOUNTS {
        institution.account_external_id(id)
    } else {
        institution.product_external_id(id)
    };
    reference.insert(
        "Provenance",
        doc! {
            "Institution": institution.id(),
            "Standard": institution.standard(),
            "ExternalId": external_id,
            "ConnectionStatus": "Connected",
        },
    );
    Ok(reference)
}

/// A reference document of a per-customer collection with the top-level [`OWNER`] copied from
/// its nested reference field (`AccountUser.UserId`, `ProductCustomer.UserId`); documents of
/// other collections unchanged.
pub fn with_owner(
    mut reference: Document,
    in_leafy_bank: bool,
    collection: &str,
) -> Result<Document, AppError> {
    let Some((_, _, nested)) = NESTED_OWNERS
        .iter()
        .find(|(l, c, _)| *l == in_leafy_bank && *c == collection)
    else {
        return Ok(reference);
    };
    let (parent, field) = nested.split_once('.').expect("a nested path");
    let owner = reference
        .get_document(parent)
        .and_then(|p| p.get_object_id(field))
        .map_err(|_| AppError::Config(format!("a document in {collection} has no {nested}")))?;
    reference.insert(OWNER, owner);
    Ok(reference)
}

/// Seeds every `*.json` file in `dir`, creating the indexes first.
pub async fn seed_dir(db: &Db, dir: &Path) -> Result<SeedReport, AppError> {
    db.ensure_indexes().await?;
    db.ensure_leafy_bank_indexes().await?;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| AppError::Config(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut report = SeedReport::new();
    for path in files {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let Some((database, collection)) = stem.split_once('.') else {
            continue;
        };
        let target = match database {
            "open_finance" => &db.open_finance,
            "leafy_bank" => &db.leafy_bank,
            _ => continue,
        };
        let coll = target.collection::<Document>(collection);
        let mut written = 0;
        for document in read_extended_json(&path)? {
            let document = match (database, collection) {
                ("open_finance", TOKENS) => legacy_token_record(document)?,
                ("open_finance", c) => with_owner(with_provenance(document, c)?, false, c)?,
                (_, c) => with_owner(document, true, c)?,
            };
            let id = document.get("_id").cloned().ok_or_else(|| {
                AppError::Config(format!("{}: a document has no _id", path.display()))
            })?;
            coll.replace_one(doc! {"_id": id}, document)
                .upsert(true)
                .await?;
            written += 1;
        }
        report.insert(format!("{}.{collection}", target.name()), written);
    }
    // Documents written before the owner field existed (an older local database) get it too.
    db.backfill_owner(true).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::oid::ObjectId;

    #[test]
    fn legacy_tokens_are_stored_as_digests() {
        let id = ObjectId::new();
        let record =
            legacy_token_record(doc! {"_id": id, "UserName": "u", "BearerToken": "abc"}).unwrap();
        assert!(record.get("BearerToken").is_none());
        assert_eq!(record.get_str("TokenHash").unwrap(), sha256_hex("abc"));
        assert_eq!(record.get_object_id("UserId").unwrap(), id);
        assert!(legacy_token_record(doc! {"_id": id}).is_err());
    }

    #[test]
    fn per_customer_documents_get_the_top_level_owner() {
        let id = ObjectId::new();
        let account = doc! {"AccountUser": {"UserName": "u", "UserId": id}};
        let product = doc! {"ProductCustomer": {"UserName": "u", "UserId": id}};
        for (leafy, collection, d) in [
            (false, EXTERNAL_ACCOUNTS, &account),
            (false, EXTERNAL_PRODUCTS, &product),
            (true, "accounts", &account),
        ] {
            let owned = with_owner(d.clone(), leafy, collection).unwrap();
            assert_eq!(owned.get_object_id(OWNER).unwrap(), id, "{collection}");
        }
        // Without a nested owner a per-customer document is refused; others pass unchanged.
        assert!(with_owner(doc! {}, false, EXTERNAL_ACCOUNTS).is_err());
        assert_eq!(
            with_owner(doc! {"a": 1}, true, "users").unwrap(),
            doc! {"a": 1}
        );
    }

    #[test]
    fn reference_files_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sample_data");
        let users = read_extended_json(&dir.join("leafy_bank.users.json")).unwrap();
        assert!(
            users
                .iter()
                .any(|u| u.get_str("UserName") == Ok("fridaklo"))
        );
        let fridaklo = users
            .iter()
            .find(|u| u.get_str("UserName") == Ok("fridaklo"))
            .unwrap();
        assert!(matches!(fridaklo.get("BirthDate"), Some(Bson::DateTime(_))));
    }
}
