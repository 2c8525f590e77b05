//! The revocation list against the real database: read once, then again only after its
//! refresh interval; expired tokens are not kept; a revocation is seen on the next read; the
//! uses noted in between are written at the next read.

use std::time::Duration;

use mongodb::bson::{DateTime, doc};
use shared::auth::revocation::RevocationList;
use shared::auth::tokens::ACCESS_TOKEN;
use shared::testing::TestContext;

fn in_ms(ms: i64) -> DateTime {
    DateTime::from_millis(DateTime::now().timestamp_millis() + ms)
}

/// An unrevoked access token record with id `jti`, expiring at `expires`.
async fn access_token(db: &shared::db::Db, jti: &str, expires: DateTime) {
    db.tokens()
        .insert_one(doc! {
            "_id": jti, "TokenHash": format!("h-{jti}"), "TokenType": ACCESS_TOKEN,
            "Revoked": false, "TokenDates": {"ExpiryDate": expires},
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn revocations_are_seen_on_the_next_read_and_not_before() {
    let ctx = TestContext::new().await;
    let db = &ctx.state.db;
    for (jti, expires) in [("live", in_ms(600_000)), ("long-expired", in_ms(-600_000))] {
        access_token(db, jti, expires).await;
    }
    let cached = RevocationList::new(Duration::from_secs(300));
    let eager = RevocationList::new(Duration::ZERO);
    assert!(!cached.is_revoked(db, "live").await.unwrap());
    assert!(!eager.is_revoked(db, "live").await.unwrap());

    db.tokens()
        .update_many(
            doc! {},
            doc! {"$set": {"Revoked": true, "TokenDates.RevocationDate": DateTime::now()}},
        )
        .await
        .unwrap();
    // Within its interval the cached list answers from memory; the next read sees it.
    assert!(!cached.is_revoked(db, "live").await.unwrap());
    assert!(eager.is_revoked(db, "live").await.unwrap());
    // An expired token is refused by its `exp` already; the list does not keep it.
    assert!(!eager.is_revoked(db, "long-expired").await.unwrap());
    assert!(
        RevocationList::new(Duration::from_secs(300))
            .is_revoked(db, "live")
            .await
            .unwrap(),
        "a fresh list reads everything still unexpired"
    );
}

#[tokio::test]
async fn uses_are_recorded_at_the_next_read() {
    let ctx = TestContext::new().await;
    let db = &ctx.state.db;
    for jti in ["a", "b", "untouched"] {
        access_token(db, jti, in_ms(600_000)).await;
    }
    let last_use = |jti: &'static str| async move {
        db.tokens()
            .find_one(doc! {"_id": jti})
            .await
            .unwrap()
            .unwrap()
            .get_document("TokenDates")
            .unwrap()
            .get_datetime("LastUseDate")
            .ok()
            .copied()
    };
    let list = RevocationList::new(Duration::from_millis(300));
    let before = DateTime::now();
    assert!(!list.is_revoked(db, "a").await.unwrap());
    assert!(!list.is_revoked(db, "b").await.unwrap());
    // Within the interval nothing is written.
    assert_eq!(last_use("a").await, None);
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(!list.is_revoked(db, "a").await.unwrap());
    for jti in ["a", "b"] {
        let at = last_use(jti).await.expect("use recorded");
        assert!(at >= before && at <= DateTime::now(), "{jti}: {at}");
    }
    assert_eq!(last_use("untouched").await, None);
}

#[tokio::test]
async fn many_uses_in_one_interval_are_all_recorded() {
    // More tokens than any connection pool holds: each is written by its own `_id` (one
    // `update` command with a statement per token deadlocks FerretDB 1.24 at this count).
    let ctx = TestContext::new().await;
    let db = &ctx.state.db;
    let jtis: Vec<String> = (0..60).map(|i| format!("t{i}")).collect();
    for jti in &jtis {
        access_token(db, jti, in_ms(600_000)).await;
    }
    let list = RevocationList::new(Duration::from_millis(200));
    for jti in &jtis {
        assert!(!list.is_revoked(db, jti).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    // The read that writes them; a deadlock would never return (guarded, generously).
    tokio::time::timeout(Duration::from_secs(60), list.is_revoked(db, "t0"))
        .await
        .expect("the uses were written")
        .unwrap();
    let recorded = db
        .tokens()
        .count_documents(
            doc! {"TokenType": ACCESS_TOKEN, "TokenDates.LastUseDate": {"$exists": true}},
        )
        .await
        .unwrap();
    assert_eq!(recorded, jtis.len() as u64);
}
