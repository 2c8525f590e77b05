//! The seed step against the real local database: idempotent, and faithful to the fixtures.

use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc, oid::ObjectId};
use shared::seed::{read_extended_json, seed_dir};
use shared::testing::{TestContext, sample_data_dir};

/// Every collection the sample data fills, as (database handle name, collection).
const SEEDED: &[(&str, &str)] = &[
    ("leafy_bank", "accounts"),
    ("leafy_bank", "users"),
    ("open_finance", "external_accounts"),
    ("open_finance", "external_products"),
    ("open_finance", "tokens"),
];

async fn dump(ctx: &TestContext) -> Vec<(String, Vec<Document>)> {
    let mut all = Vec::new();
    for (database, collection) in SEEDED {
        let db = if *database == "leafy_bank" {
            &ctx.state.db.leafy_bank
        } else {
            &ctx.state.db.open_finance
        };
        let docs: Vec<Document> = db
            .collection::<Document>(collection)
            .find(doc! {})
            .sort(doc! {"_id": 1})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        all.push((format!("{database}.{collection}"), docs));
    }
    all
}

#[tokio::test]
async fn seeding_twice_leaves_the_same_data() {
    let ctx = TestContext::new().await; // seeded once
    let first = dump(&ctx).await;
    let report = seed_dir(&ctx.state.db, &sample_data_dir()).await.unwrap();
    let second = dump(&ctx).await;
    assert_eq!(first, second);

    for ((name, docs), (database, collection)) in second.iter().zip(SEEDED) {
        let fixture =
            read_extended_json(&sample_data_dir().join(format!("{database}.{collection}.json")))
                .unwrap();
        assert_eq!(docs.len(), fixture.len(), "{name}");
        assert!(
            report.values().any(|n| *n == fixture.len()),
            "{name} in {report:?}"
        );
    }
}

#[tokio::test]
async fn seeded_documents_match_the_fixtures_plus_provenance_and_owner_and_with_hashed_tokens() {
    let ctx = TestContext::new().await;
    let fixture =
        read_extended_json(&sample_data_dir().join("open_finance.external_products.json")).unwrap();
    for expected in &fixture {
        let mut stored = ctx
            .state
            .db
            .open_finance
            .collection::<Document>("external_products")
            .find_one(doc! {"_id": expected.get_object_id("_id").unwrap()})
            .await
            .unwrap()
            .expect("seeded");
        let provenance = stored.remove("Provenance").expect("provenance added");
        // The top-level owner is added, copied from the reference's nested one.
        let owner = stored.remove("UserId").expect("owner added");
        assert_eq!(
            Some(&owner),
            expected
                .get_document("ProductCustomer")
                .unwrap()
                .get("UserId")
        );
        assert_eq!(&stored, expected);
        let id = expected.get_str("ProductId").unwrap();
        assert!(
            provenance
                .as_document()
                .unwrap()
                .get_str("ExternalId")
                .unwrap()
                .ends_with(id)
        );
    }
    let tokens: Vec<Document> = ctx
        .state
        .db
        .tokens()
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(tokens.iter().all(|t| t.get("BearerToken").is_none()));
}

#[tokio::test]
async fn setup_adds_the_owner_to_documents_written_before_it_existed() {
    let ctx = TestContext::new().await;
    let db = &ctx.state.db;
    let user = ObjectId::new();
    let accounts = db.open_finance.collection::<Document>("external_accounts");
    let internal = db.leafy_bank.collection::<Document>("accounts");
    let old_account =
        doc! {"_id": ObjectId::new(), "AccountUser": {"UserName": "old", "UserId": user}};
    accounts.insert_one(old_account.clone()).await.unwrap();
    internal.insert_one(old_account.clone()).await.unwrap();
    // Without the bank's own collection, only open_finance is touched.
    assert_eq!(db.backfill_owner(false).await.unwrap(), 1);
    let owner_of = |d: Option<Document>| d.unwrap().get_object_id("UserId").ok();
    let by_id = doc! {"_id": old_account.get_object_id("_id").unwrap()};
    assert_eq!(
        owner_of(accounts.find_one(by_id.clone()).await.unwrap()),
        Some(user)
    );
    assert_eq!(
        owner_of(internal.find_one(by_id.clone()).await.unwrap()),
        None
    );
    assert_eq!(db.backfill_owner(true).await.unwrap(), 1);
    assert_eq!(
        owner_of(internal.find_one(by_id).await.unwrap()),
        Some(user)
    );
    // Idempotent: everything (the seeded reference data too) has its owner now.
    assert_eq!(db.backfill_owner(true).await.unwrap(), 0);
}
