//! Compare-and-set properties the service relies on, under real concurrency against the real
//! database: exactly one worker gets a consent's lease, exactly one redemption of a code wins.

use futures_util::future::join_all;
use mongodb::bson::oid::ObjectId;
use shared::consents;
use shared::institutions::Institution;
use shared::oauth::{self, Grant};
use shared::testing::TestContext;

#[tokio::test]
async fn one_lease_holder_at_a_time() {
    let ctx = TestContext::new().await;
    let consent = ObjectId::new();
    for round in 0..5 {
        let attempts =
            join_all((0..10).map(|_| consents::acquire_lease(&ctx.state.db, consent, 60))).await;
        let winners: Vec<_> = attempts.into_iter().filter_map(Result::unwrap).collect();
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        assert!(
            consents::acquire_lease(&ctx.state.db, consent, 60)
                .await
                .unwrap()
                .is_none()
        );
        consents::release_lease(&ctx.state.db, winners[0])
            .await
            .unwrap();
    }
    // An expired lease is taken over.
    let stale = consents::acquire_lease(&ctx.state.db, consent, -1)
        .await
        .unwrap()
        .unwrap();
    let next = consents::acquire_lease(&ctx.state.db, consent, 60)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.generation, stale.generation + 1);
}

#[tokio::test]
async fn one_redemption_of_a_code_wins() {
    let ctx = TestContext::new().await;
    let user = ObjectId::new();
    let consent = consents::create(
        &ctx.state.db,
        user,
        "u",
        Institution::GreenBank,
        vec!["ReadBalances".into()],
        30,
    )
    .await
    .unwrap();
    let grant = Grant {
        consent_id: consent.id,
        user_id: user,
        client_id: "c".into(),
    };
    let verifier = oauth::pkce_verifier();
    let code = oauth::issue_code(&ctx.state.db, &grant, &oauth::pkce_challenge(&verifier))
        .await
        .unwrap();
    let results =
        join_all((0..10).map(|_| oauth::redeem_code(&ctx.state.db, &code, "c", &verifier))).await;
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
}
