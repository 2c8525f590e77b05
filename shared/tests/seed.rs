//! The seed step against the real local database: idempotent, and faithful to the fixtures.

use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};
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
async fn seeded_documents_match_the_fixtures_except_for_hashed_tokens() {
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
