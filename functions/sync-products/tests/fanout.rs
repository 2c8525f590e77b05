//! The fan-out of the scheduled sync on real parts: the emulator's SQS (moto) through the
//! standard SDK, FerretDB, the token server and emulated banks over HTTP. Messages go through
//! `poll_once`, which hands the worker the SQS event Lambda would and then deletes or releases
//! the messages as the event source mapping does.

use std::collections::{HashMap, HashSet};

use futures_util::TryStreamExt;
use mongodb::bson::{DateTime, Document, doc, oid::ObjectId};

use shared::budget::{self, Claim};
use shared::fanout::{self, SYNC_RUN_OUTCOMES};
use shared::queue::{SyncMessage, SyncQueue};
use shared::sync::{self, Access, SYNC_RUNS};
use testkit::{FRIDA, Stack};

const ALL: &[&str] = &["ReadAccountsDetail", "ReadBalances", "ReadProducts"];

async fn stack() -> Stack {
    Stack::with(|state, gateway| sync_products::router(state, gateway, testkit::sync_options()))
        .await
}

/// Polls until the queue is empty; returns how many messages each poll handed over and how
/// many of them failed. Bounded: a message is delivered at most `max_receive` times.
async fn drain(s: &Stack, queue: &SyncQueue, max_receive: u32) -> Vec<(usize, usize)> {
    let mut polls = Vec::new();
    for _ in 0..200 {
        let (handled, failed) = sync_products::poll_once(
            &s.ctx.state,
            &s.gateway,
            &testkit::sync_options(),
            queue,
            max_receive,
            0,
        )
        .await
        .unwrap();
        if handled == 0 {
            return polls;
        }
        polls.push((handled, failed));
    }
    panic!("the queue did not drain: {polls:?}");
}

async fn docs(s: &Stack, collection: &str, filter: Document) -> Vec<Document> {
    s.ctx
        .state
        .db
        .open_finance
        .collection::<Document>(collection)
        .find(filter)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

async fn dead_letters(queue: &SyncQueue, dlq: &str) -> Vec<String> {
    let dead = SyncQueue {
        client: queue.client.clone(),
        url: dlq.to_string(),
    };
    let mut bodies = Vec::new();
    loop {
        let got = dead.receive(0).await.unwrap();
        if got.is_empty() {
            return bodies;
        }
        dead.delete(
            &got.iter()
                .map(|r| r.receipt_handle.clone())
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
        bodies.extend(got.into_iter().map(|r| r.body));
    }
}

#[tokio::test]
async fn each_due_consent_is_sent_once_and_synced_once_even_when_delivered_twice() {
    let s = stack().await;
    let ids = s.consents_for_everyone(ALL).await;
    let (queue, dlq) = testkit::sync_queue(3).await;
    let options = testkit::sync_options();

    let report = fanout::dispatch(&s.ctx.state, &queue, &options)
        .await
        .unwrap();
    assert_eq!(
        (report.considered, report.dispatched, report.not_sent),
        (8, 8, 0)
    );
    assert_eq!(
        SyncQueue::depth(&queue.client, &queue.url).await.unwrap(),
        8
    );

    // Every message once (each stays invisible once received), then the first of them sent
    // again: a duplicate delivery.
    let mut received = Vec::new();
    loop {
        let got = queue.receive(0).await.unwrap();
        if got.is_empty() {
            break;
        }
        received.extend(got);
    }
    let handles: Vec<String> = received.iter().map(|r| r.receipt_handle.clone()).collect();
    queue.release(&handles).await.unwrap();
    let bodies: Vec<String> = received.into_iter().map(|r| r.body).collect();
    assert_eq!(bodies.len(), 8);
    let sent: HashSet<String> = bodies
        .iter()
        .map(|b| SyncMessage::parse(b).unwrap().consent_id.to_hex())
        .collect();
    assert_eq!(sent, ids.iter().cloned().collect::<HashSet<_>>());
    let first = SyncMessage::parse(&bodies[0]).unwrap();
    assert!(queue.send_all(&[first], 1).await.unwrap().is_empty());

    drain(&s, &queue, 3).await;
    assert!(dead_letters(&queue, &dlq).await.is_empty());

    let outcomes = docs(&s, SYNC_RUN_OUTCOMES, doc! {"RunId": report.run_id}).await;
    assert_eq!(
        outcomes.len(),
        8,
        "one outcome per consent, the duplicate included"
    );
    assert!(
        outcomes.iter().all(|o| o.get_str("Status") == Ok("Synced")),
        "{outcomes:?}"
    );
    // One refresh of the budget each: the duplicate did not take a second slot.
    let slots = docs(&s, budget::REFRESH_BUDGET, doc! {}).await;
    assert_eq!(slots.len(), 8, "{slots:?}");
    // No account twice: one document per (institution, external id).
    let accounts = docs(&s, shared::db::EXTERNAL_ACCOUNTS, doc! {}).await;
    let keys: HashSet<String> = accounts
        .iter()
        .map(|a| format!("{:?}", a.get_document("Provenance").unwrap()))
        .collect();
    assert_eq!(keys.len(), accounts.len());
    assert!(!accounts.is_empty());

    // The run is finished from its outcomes.
    assert!(
        fanout::finish_run(&s.ctx.state, report.run_id)
            .await
            .unwrap()
    );
    let run = &docs(&s, SYNC_RUNS, doc! {"_id": report.run_id}).await[0];
    assert_eq!(run.get_str("Status").unwrap(), "Succeeded");
    assert_eq!(run.get_str("Mode").unwrap(), "FanOut");
    assert_eq!(
        run.get_document("Counts")
            .unwrap()
            .get_i64("Synced")
            .unwrap_or_else(|_| run
                .get_document("Counts")
                .unwrap()
                .get_i32("Synced")
                .unwrap()
                .into()),
        8
    );

    // Just refreshed: nothing is due at the next dispatch.
    let again = fanout::dispatch(&s.ctx.state, &queue, &options)
        .await
        .unwrap();
    assert_eq!((again.considered, again.dispatched), (8, 0));
    assert!(
        fanout::finish_run(&s.ctx.state, again.run_id)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_failing_bank_fails_only_its_consents_and_a_poison_message_is_dead_lettered() {
    let s = stack().await;
    let ids = s.consents_for_everyone(ALL).await;
    let (queue, dlq) = testkit::sync_queue(2).await;
    s.set_fault("mongodb-bank", doc! {"Status": 503}).await;
    let poison = queue
        .client
        .send_message()
        .queue_url(&queue.url)
        .message_body("{\"runId\": \"not an id\"}")
        .send()
        .await
        .unwrap();
    let report = fanout::dispatch(&s.ctx.state, &queue, &testkit::sync_options())
        .await
        .unwrap();
    assert_eq!(report.dispatched, 8);

    let polls = drain(&s, &queue, 2).await;
    // Every delivery of the four MongoDB Bank consents and of the poison message failed,
    // twice each; the Green Bank ones succeeded the first time.
    let failures: usize = polls.iter().map(|(_, f)| f).sum();
    let handled: usize = polls.iter().map(|(h, _)| h).sum();
    assert_eq!((handled, failures), (4 + 5 * 2, 5 * 2), "{polls:?}");

    let dead = dead_letters(&queue, &dlq).await;
    assert_eq!(dead.len(), 5, "{dead:?}");
    assert!(dead.contains(&"{\"runId\": \"not an id\"}".to_string()));
    assert!(poison.message_id().is_some());

    let outcomes = docs(&s, SYNC_RUN_OUTCOMES, doc! {"RunId": report.run_id}).await;
    let by_consent: HashMap<String, &Document> = outcomes
        .iter()
        .map(|o| (o.get_object_id("ConsentId").unwrap().to_hex(), o))
        .collect();
    assert_eq!(by_consent.len(), 8);
    for id in &ids {
        let o = by_consent[id];
        match o.get_str("Institution").unwrap() {
            "mongodb-bank" => {
                assert_eq!(o.get_str("Status").unwrap(), "Failed");
                assert!(
                    o.get_str("Error")
                        .unwrap()
                        .contains("gave up after 2 deliveries"),
                    "{o}"
                );
            }
            _ => assert_eq!(o.get_str("Status").unwrap(), "Synced"),
        }
    }
    assert!(
        fanout::finish_run(&s.ctx.state, report.run_id)
            .await
            .unwrap()
    );
    let run = &docs(&s, SYNC_RUNS, doc! {"_id": report.run_id}).await[0];
    assert_eq!(run.get_str("Status").unwrap(), "PartiallySucceeded");
}

#[tokio::test]
async fn the_daily_budget_stops_a_fifth_unattended_refresh_but_not_an_attended_one() {
    let s = stack().await;
    let id = s.authorised_consent(FRIDA, "green-bank", ALL).await;
    let consent = shared::consents::get_any(&s.ctx.state.db, ObjectId::parse_str(&id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let options = testkit::sync_options();
    let unattended = |run_id| Access::Unattended { run_id };
    for refresh in 1..=5 {
        let outcome = sync::sync_consent(
            &s.ctx.state,
            &s.gateway,
            &consent,
            &options,
            None,
            unattended(ObjectId::new()),
        )
        .await;
        if refresh <= 4 {
            assert_eq!(outcome.status, "Synced", "refresh {refresh}: {outcome:?}");
        } else {
            assert_eq!(outcome.status, "Skipped", "{outcome:?}");
            assert!(outcome.error.unwrap().contains("4 unattended refreshes"));
            assert!(
                !outcome.retry_later,
                "an exhausted budget is final for the day"
            );
        }
    }
    // The customer is present: no budget is spent or needed.
    let attended = sync::sync_consent(
        &s.ctx.state,
        &s.gateway,
        &consent,
        &options,
        None,
        Access::Attended,
    )
    .await;
    assert_eq!(attended.status, "Synced");
    assert_eq!(docs(&s, budget::REFRESH_BUDGET, doc! {}).await.len(), 4);

    // A run holding a slot keeps it on redelivery; another run finds the day full.
    let other = s.authorised_consent(FRIDA, "mongodb-bank", ALL).await;
    let other = ObjectId::parse_str(&other).unwrap();
    let run = ObjectId::new();
    let now = DateTime::now();
    let db = &s.ctx.state.db;
    assert_eq!(
        budget::claim(db, other, run, 1, now).await.unwrap(),
        Claim::Granted(1)
    );
    assert_eq!(
        budget::claim(db, other, run, 1, now).await.unwrap(),
        Claim::AlreadyHeld(1)
    );
    assert_eq!(
        budget::claim(db, other, ObjectId::new(), 1, now)
            .await
            .unwrap(),
        Claim::Exhausted
    );
}

#[tokio::test]
async fn releasing_a_message_another_poller_has_handled_since_is_not_an_error() {
    let (queue, _) = testkit::sync_queue(3).await;
    let message = SyncMessage {
        run_id: ObjectId::new(),
        consent_id: ObjectId::new(),
    };
    assert!(queue.send_all(&[message], 1).await.unwrap().is_empty());
    let first = queue.receive(0).await.unwrap();
    assert_eq!(first.len(), 1);
    queue
        .release(&[first[0].receipt_handle.clone()])
        .await
        .unwrap();
    let second = queue.receive(0).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].receive_count, 2);

    // The second poller handles it; the first one's failure report comes too late (its
    // visibility timeout had run out), and there is nothing left to release.
    queue
        .delete(&[second[0].receipt_handle.clone()])
        .await
        .unwrap();
    queue
        .release(&[first[0].receipt_handle.clone()])
        .await
        .unwrap();
    assert_eq!(
        SyncQueue::depth(&queue.client, &queue.url).await.unwrap(),
        0
    );
    // Any other refusal is still an error.
    let gone = SyncQueue {
        client: queue.client.clone(),
        url: format!("{}-deleted", queue.url),
    };
    assert!(
        gone.release(&[second[0].receipt_handle.clone()])
            .await
            .is_err()
    );
}
