//! Transactions end to end against the real stack: consents with transaction permissions, the
//! emulated banks' transaction APIs in both standards over HTTP, FerretDB, and
//! `GET /transactions`.

use std::collections::HashSet;

use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use shared::db::EXTERNAL_TRANSACTIONS;
use shared::sync::{self, Trigger};
use testkit::{CLAU, FRIDA, FRIDA_ID, GRACE, Stack};

const DETAIL: &[&str] = &[
    "ReadAccountsDetail",
    "ReadBalances",
    "ReadTransactionsDetail",
    "ReadTransactionsCredits",
    "ReadTransactionsDebits",
];

async fn stack() -> Stack {
    Stack::with(|state, gateway| {
        sync_products::router(state.clone(), gateway, testkit::sync_options())
            .merge(insights::router(state))
    })
    .await
}

async fn stored(s: &Stack) -> Vec<Document> {
    s.ctx
        .state
        .db
        .open_finance
        .collection::<Document>(EXTERNAL_TRANSACTIONS)
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

/// Frida's on-demand sync, run directly (the report is what the route answers).
async fn sync_frida(s: &Stack) -> sync::RunReport {
    sync::run(
        &s.ctx.state,
        &s.gateway,
        Trigger::OnDemand(mongodb::bson::oid::ObjectId::parse_str(FRIDA_ID).unwrap()),
        None,
        &testkit::sync_options(),
    )
    .await
    .unwrap()
}

/// Every page of `GET /transactions?{query}`, following `next` to the end.
async fn all_pages(s: &Stack, token: &str, query: &str) -> (Vec<Value>, usize) {
    let mut items = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let cursor = next
            .as_deref()
            .map(|c| format!("&next={c}"))
            .unwrap_or_default();
        let r = s
            .call(
                Method::GET,
                &format!("/transactions?{query}{cursor}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        pages += 1;
        items.extend(r.body["transactions"].as_array().unwrap().iter().cloned());
        match r.body["next"].as_str() {
            Some(c) => next = Some(c.to_string()),
            None => return (items, pages),
        }
    }
}

#[tokio::test]
async fn connecting_imports_the_history_and_a_rerun_adds_nothing() {
    let s = stack().await;
    let green = s.authorised_consent(FRIDA, "green-bank", DETAIL).await;
    let mdb = s.authorised_consent(FRIDA, "mongodb-bank", DETAIL).await;
    let first = s.connect(FRIDA, &mdb).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let connected = s.connect(FRIDA, &green).await;
    assert_eq!(connected.status, StatusCode::OK, "{}", connected.body);
    let added = connected.body["transactions"]["added"].as_u64().unwrap();
    assert!(
        added > 300,
        "a year of history: {}",
        connected.body["transactions"]
    );

    let docs = stored(&s).await;
    // Unique by (institution, account, transaction id).
    let keys: HashSet<String> = docs
        .iter()
        .map(|d| {
            let p = d.get_document("Provenance").unwrap();
            format!(
                "{}/{}/{}",
                p.get_str("Institution").unwrap(),
                p.get_str("AccountExternalId").unwrap(),
                p.get_str("ExternalId").unwrap()
            )
        })
        .collect();
    assert_eq!(keys.len(), docs.len());
    for d in &docs {
        assert_eq!(d.get_object_id("UserId").unwrap().to_hex(), FRIDA_ID);
        assert!(d.get_i64("AmountMinor").is_ok() && d.get_str("Category").is_ok());
    }
    // Both standards, both statuses, and categories from each kind of rule.
    let has = |f: &dyn Fn(&Document) -> bool| docs.iter().any(f);
    assert!(has(&|d| d.get_str("Institution") == Ok("green-bank")));
    assert!(has(&|d| d.get_str("Institution") == Ok("mongodb-bank")));
    assert!(has(&|d| d.get_str("Status") == Ok("Pending")));
    assert!(has(&|d| d.get_str("Category") == Ok("salary")));
    assert!(has(&|d| d.get_str("Category") == Ok("groceries")
        && d.get_str("CategorySource") == Ok("MerchantCategoryCode")));
    assert!(has(&|d| d.get_str("Category") == Ok("rent")
        && d.get_str("CategorySource") == Ok("Description")));
    // Frida's MongoDB Bank checking account pays into her Green Bank savings every month:
    // connected first, those debits were marked once Green Bank's accounts were known.
    assert!(
        has(&|d| d.get_str("Institution") == Ok("mongodb-bank")
            && d.get_bool("OwnTransfer") == Ok(true)
            && d.get_str("Category") == Ok("transfers")),
        "own transfers across banks"
    );

    // Every query the connections and the listing below send is narrowed by the server
    // (FerretDB: `filterPushdown`; MongoDB: no collection scan).
    s.ctx.commands.take();
    let _ = all_pages(&s, FRIDA, "limit=200&category=groceries").await;
    let listed = s.ctx.commands.take();
    assert!(!listed.is_empty());
    let not_pushed = s.ctx.queries_not_pushed_down(&listed).await;
    assert!(not_pushed.is_empty(), "{not_pushed:?}");

    // A rerun (on demand sync) reads incrementally and adds or changes nothing.
    let report = sync_frida(&s).await;
    assert_eq!(report.status, "Succeeded");
    assert_eq!(report.counts.transactions.added, 0, "{:?}", report.counts);
    let not_pushed = s.ctx.queries_not_pushed_down(&s.ctx.commands.take()).await;
    assert!(
        not_pushed.is_empty(),
        "the incremental sync: {not_pushed:?}"
    );
    assert_eq!(stored(&s).await.len(), docs.len());

    // The listing: every stored transaction once, newest first, across pages.
    let (items, pages) = all_pages(&s, FRIDA, "limit=97").await;
    assert!(pages > 3);
    assert_eq!(items.len(), docs.len());
    let ids: HashSet<&str> = items.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), items.len(), "no item twice");
    // The page's fields, read through the projection.
    assert!(items.iter().all(|t| t["connectionStatus"] == "Connected"
        && t["amount"].is_number()
        && t["category"].is_string()
        && t["accountId"].is_string()));
    let dates: Vec<&str> = items
        .iter()
        .map(|t| t["bookingDate"].as_str().unwrap())
        .collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]), "newest first");

    // Filters.
    let (groceries, _) = all_pages(&s, FRIDA, "category=groceries&status=booked&limit=500").await;
    assert!(!groceries.is_empty());
    assert!(
        groceries
            .iter()
            .all(|t| t["category"] == "groceries" && t["status"] == "Booked")
    );
    let account = items[0]["accountId"].as_str().unwrap();
    let (one, _) = all_pages(
        &s,
        FRIDA,
        &format!("accountId={account}&from=2026-01-01&to=2026-06-30"),
    )
    .await;
    assert!(one.iter().all(|t| t["accountId"] == account
        && t["bookingDate"].as_str().unwrap() >= "2026-01-01"
        && t["bookingDate"].as_str().unwrap() < "2026-07-01"));

    // Another customer sees none of it, and cannot name Frida's account.
    let (none, _) = all_pages(&s, GRACE, "limit=500").await;
    assert!(none.is_empty());
    let foreign = s
        .call(
            Method::GET,
            &format!("/transactions?accountId={account}"),
            Some(GRACE),
            None,
        )
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND, "{}", foreign.body);
}

#[tokio::test]
async fn a_credits_only_basic_consent_reads_credits_without_details() {
    let s = stack().await;
    let consent = s
        .authorised_consent(
            FRIDA,
            "green-bank",
            &[
                "ReadAccountsBasic",
                "ReadTransactionsBasic",
                "ReadTransactionsCredits",
            ],
        )
        .await;
    let r = s.connect(FRIDA, &consent).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let docs = stored(&s).await;
    assert!(!docs.is_empty());
    for d in &docs {
        assert!(d.get_i64("AmountMinor").unwrap() > 0, "credits only");
        assert!(!d.contains_key("Description") && !d.contains_key("MerchantCategoryCode"));
    }
    // Salary still found, from the bank's transaction code.
    assert!(docs.iter().any(|d| d.get_str("Category") == Ok("salary")
        && d.get_str("CategorySource") == Ok("BankTransactionCode")));
}

#[tokio::test]
async fn consents_validate_transaction_permissions_and_windows() {
    let s = stack().await;
    let post = |body: Value| {
        let s = &s;
        async move {
            s.call(Method::POST, "/consents", Some(FRIDA), Some(body))
                .await
        }
    };
    for bad in [
        json!({"institution": "green-bank", "permissions": ["ReadAccountsBasic", "ReadTransactionsBasic"], "expiresInDays": 30}),
        json!({"institution": "green-bank", "permissions": ["ReadAccountsBasic", "ReadTransactionsDebits"], "expiresInDays": 30}),
        json!({"institution": "green-bank", "permissions": ["ReadTransactionsDetail", "ReadTransactionsDebits"], "expiresInDays": 30}),
        json!({"institution": "green-bank", "permissions": DETAIL, "expiresInDays": 30, "transactionFromDate": "last year"}),
        json!({"institution": "green-bank", "permissions": DETAIL, "expiresInDays": 30, "transactionFromDate": "2026-06-01", "transactionToDate": "2026-01-01"}),
        json!({"institution": "green-bank", "permissions": ["ReadAccountsBasic"], "expiresInDays": 30, "transactionFromDate": "2026-01-01"}),
        json!({"institution": "green-bank", "permissions": DETAIL, "expiresInDays": 30, "transactionFromDate": {"$gt": ""}}),
    ] {
        let r = post(bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad} -> {}", r.body);
    }
    let r = post(
        json!({"institution": "green-bank", "permissions": DETAIL, "expiresInDays": 30,
        "transactionFromDate": "2026-03-01", "transactionToDate": "2026-05-31"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["consentId"].as_str().unwrap().to_string();
    let authorised = s
        .call(
            Method::POST,
            &format!("/consents/{id}/authorise"),
            Some(FRIDA),
            None,
        )
        .await;
    assert_eq!(authorised.status, StatusCode::OK, "{}", authorised.body);
    let connected = s.connect(FRIDA, &id).await;
    assert_eq!(connected.status, StatusCode::OK, "{}", connected.body);
    // The institution returned nothing outside the window.
    let docs = stored(&s).await;
    assert!(!docs.is_empty());
    for d in &docs {
        let month = d.get_str("BookingMonth").unwrap();
        assert!(("2026-03".."2026-06").contains(&month), "{month}");
    }
}

#[tokio::test]
async fn bad_listing_input_is_a_400_and_no_token_a_401() {
    let s = stack().await;
    for query in [
        "limit=0",
        "limit=501",
        "from=2026-02-30",
        "to=soon",
        "category=gambling",
        "status=done",
        "accountId=nope",
        "next=garbage",
        "institution=evil-bank",
        "unknown=1",
        "limit=1&limit=2",
        "category[$ne]=x",
    ] {
        let r = s
            .call(
                Method::GET,
                &format!("/transactions?{query}"),
                Some(FRIDA),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.body);
    }
    let r = s.call(Method::GET, "/transactions", None, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = s
        .call(
            Method::GET,
            "/transactions",
            Some("forged.token.value"),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn concurrent_syncs_create_no_duplicates() {
    let s = stack().await;
    let consent = s.authorised_consent(FRIDA, "mongodb-bank", DETAIL).await;
    // Two connections at once: one wins the lease, the other is told to retry; then two
    // scheduled-style syncs race on the same data: the unique key keeps one copy of each.
    let (a, b) = tokio::join!(s.connect(FRIDA, &consent), s.connect(FRIDA, &consent));
    assert!(a.status == StatusCode::OK || b.status == StatusCode::OK);
    let user = mongodb::bson::oid::ObjectId::parse_str(FRIDA_ID).unwrap();
    let options = testkit::sync_options();
    let (x, y) = tokio::join!(
        sync::run(
            &s.ctx.state,
            &s.gateway,
            Trigger::OnDemand(user),
            None,
            &options
        ),
        sync::run(
            &s.ctx.state,
            &s.gateway,
            Trigger::OnDemand(user),
            None,
            &options
        ),
    );
    x.unwrap();
    y.unwrap();
    let docs = stored(&s).await;
    let keys: HashSet<String> = docs
        .iter()
        .map(|d| {
            d.get_document("Provenance")
                .unwrap()
                .get_str("ExternalId")
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(keys.len(), docs.len());
}

#[tokio::test]
async fn recurring_payments_and_income_are_detected_from_the_history() {
    let s = stack().await;
    let consent = s.authorised_consent(FRIDA, "green-bank", DETAIL).await;
    assert_eq!(s.connect(FRIDA, &consent).await.status, StatusCode::OK);
    let r = s
        .call(Method::GET, "/insights/recurring", Some(FRIDA), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let found = r.body["recurring"].as_array().unwrap();
    let named = |name: &str| found.iter().find(|x| x["counterparty"] == name);
    let rent = named("Landlord Properties Ltd").unwrap_or_else(|| panic!("rent: {}", r.body));
    assert_eq!(rent["frequency"], "monthly");
    assert_eq!(rent["direction"], "payment");
    assert!(rent["monthlyAmount"].as_f64().unwrap() < 0.0);
    assert!(rent["nextExpectedDate"].as_str().unwrap().ends_with("-01"));
    let salary = found
        .iter()
        .find(|x| x["category"] == "salary")
        .unwrap_or_else(|| panic!("salary: {}", r.body));
    assert_eq!(salary["direction"], "income");
    assert!(
        salary["nextExpectedDate"]
            .as_str()
            .unwrap()
            .ends_with("-25")
    );
    // Card purchases at varying merchants and amounts are not a series; own transfers are
    // excluded.
    assert!(named("Tesco").is_none() && named("Own savings").is_none());
    // Nobody else's history leaks in.
    let other = s
        .call(Method::GET, "/insights/recurring", Some(GRACE), None)
        .await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(other.body["recurring"], json!([]));
    let none = s.call(Method::GET, "/insights/recurring", None, None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn card_account_transactions_are_read_under_products_and_transactions() {
    let s = stack().await;
    let mut permissions = DETAIL.to_vec();
    permissions.push("ReadProducts");
    let consent = s
        .authorised_consent(CLAU, "mongodb-bank", &permissions)
        .await;
    let r = s
        .call(Method::POST, "/products/sync", Some(CLAU), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let card: Vec<Document> = stored(&s)
        .await
        .into_iter()
        .filter(|d| {
            d.get_document("Provenance")
                .unwrap()
                .get_str("AccountExternalId")
                == Ok("mdb-card-4417")
        })
        .collect();
    assert!(card.len() > 100, "{} card transactions", card.len());
    for d in &card {
        assert!(d.get_i64("AmountMinor").unwrap() < 0, "{d}");
        assert_eq!(
            d.get_str("CategorySource"),
            Ok("MerchantCategoryCode"),
            "{d}"
        );
        assert!(d.contains_key("Counterparty"), "{d}");
    }
    // The card is listed like an account, by its stored id.
    let card_ref = card[0].get_object_id("AccountRef").unwrap().to_hex();
    let (listed, _) = all_pages(&s, CLAU, &format!("accountId={card_ref}&limit=500")).await;
    assert_eq!(listed.len(), card.len());

    // At the bank: the card resource answers cardTransactions; the account resource does not
    // know the card, nor the card resource an account; without ReadProducts, 403.
    let token = s.stored_access_token(&consent).await;
    let bank = |path: &str, token: &str, consent: &str| {
        s.http
            .get(format!("{}/banks/mongodb-bank/v1/{path}", s.base))
            .bearer_auth(token)
            .header("Consent-ID", consent)
            .send()
    };
    let r = bank(
        "card-accounts/mdb-card-4417/transactions?bookingStatus=booked",
        &token,
        &consent,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let first = &body["cardTransactions"]["booked"][0];
    assert!(
        first["cardTransactionId"].is_string() && first["transactionDetails"].is_string(),
        "{body}"
    );
    assert_eq!(body["cardAccount"]["maskedPan"], "541275******4417");
    let r = bank(
        "accounts/mdb-card-4417/transactions?bookingStatus=booked",
        &token,
        &consent,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let accounts: Vec<Document> = s.snapshot("external_accounts").await;
    let account = accounts
        .iter()
        .filter_map(|a| {
            a.get_document("Provenance")
                .ok()?
                .get_str("ExternalId")
                .ok()
        })
        .find(|id| id.starts_with("mdb-") && !id.starts_with("mdb-card"))
        .unwrap()
        .to_string();
    let r = bank(
        &format!("card-accounts/{account}/transactions?bookingStatus=booked"),
        &token,
        &consent,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let narrow = s.authorised_consent(CLAU, "mongodb-bank", DETAIL).await;
    let narrow_token = s.stored_access_token(&narrow).await;
    let r = bank(
        "card-accounts/mdb-card-4417/transactions?bookingStatus=booked",
        &narrow_token,
        &narrow,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

/// (account, transaction id, status, booking day, amount) of each stored transaction at `bank`.
async fn ledger_of(s: &Stack, bank: &str) -> Vec<(String, String, String, String, i64)> {
    stored(s)
        .await
        .iter()
        .filter(|d| d.get_str("Institution") == Ok(bank))
        .map(|d| {
            let p = d.get_document("Provenance").unwrap();
            (
                p.get_str("AccountExternalId").unwrap().to_string(),
                p.get_str("ExternalId").unwrap().to_string(),
                d.get_str("Status").unwrap().to_string(),
                d.get_datetime("BookingDate")
                    .unwrap()
                    .try_to_rfc3339_string()
                    .unwrap()[..10]
                    .to_string(),
                d.get_i64("AmountMinor").unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn pending_items_that_book_later_are_counted_once_at_both_banks() {
    let s = stack().await;
    for bank in ["green-bank", "mongodb-bank"] {
        // The bank's clock on 10 November: the 9th and 10th are pending.
        s.set_fault(bank, doc! {"Today": "2026-11-10"}).await;
        let consent = s.authorised_consent(FRIDA, bank, DETAIL).await;
        assert_eq!(s.connect(FRIDA, &consent).await.status, StatusCode::OK);
        let before = ledger_of(&s, bank).await;
        let pending: Vec<_> = before.iter().filter(|t| t.2 == "Pending").collect();
        assert!(!pending.is_empty(), "{bank}: pending items");
        assert!(pending.iter().all(|t| t.3.as_str() >= "2026-11-09"));
        assert!(before.iter().all(|t| t.3.as_str() <= "2026-11-10"));

        // Five days on they have booked (under new ids) or, for pre-authorisations, gone.
        s.set_fault(bank, doc! {"Today": "2026-11-15"}).await;
        let report = sync_frida(&s).await;
        assert_eq!(report.status, "Succeeded", "{report:?}");
        let after = ledger_of(&s, bank).await;
        let ids: HashSet<&str> = after.iter().map(|t| t.1.as_str()).collect();
        for p in &pending {
            assert!(!ids.contains(p.1.as_str()), "{bank}: {p:?} still stored");
        }
        // Every booked item from before is kept.
        for b in before.iter().filter(|t| t.2 == "Booked") {
            assert!(after.contains(b), "{bank}: {b:?} lost");
        }
        // The two days now hold booked items only, no more of them than were pending (a
        // pending item books once, or never), and each matches a pending one's day and amount.
        let booked_then: Vec<_> = after
            .iter()
            .filter(|t| t.3.as_str() >= "2026-11-09" && t.3.as_str() <= "2026-11-10")
            .collect();
        assert!(booked_then.iter().all(|t| t.2 == "Booked"));
        assert!(!booked_then.is_empty() && booked_then.len() <= pending.len());
        for b in &booked_then {
            assert!(
                pending
                    .iter()
                    .any(|p| p.0 == b.0 && p.3 == b.3 && p.4 == b.4),
                "{bank}: {b:?} booked with no pending item"
            );
        }
        // New days arrived, the newest two pending.
        assert!(
            after
                .iter()
                .any(|t| t.3 == "2026-11-15" && t.2 == "Pending")
        );
        assert!(after.iter().any(|t| t.3 == "2026-11-12" && t.2 == "Booked"));
        assert!(report.counts.transactions.removed >= pending.len() as u64);
    }
}

#[tokio::test]
async fn the_cursor_is_stable_while_new_transactions_arrive() {
    let s = stack().await;
    s.set_fault("green-bank", doc! {"Today": "2026-11-10"})
        .await;
    let consent = s.authorised_consent(FRIDA, "green-bank", DETAIL).await;
    assert_eq!(s.connect(FRIDA, &consent).await.status, StatusCode::OK);
    let (everything, _) = all_pages(&s, FRIDA, "status=booked&limit=500").await;
    let first = s
        .call(
            Method::GET,
            "/transactions?status=booked&limit=50",
            Some(FRIDA),
            None,
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let mut seen: Vec<Value> = first.body["transactions"].as_array().unwrap().clone();
    let cursor = first.body["next"].as_str().unwrap().to_string();

    // Ten days on, new transactions are synced in: all newer than the first page.
    s.set_fault("green-bank", doc! {"Today": "2026-11-20"})
        .await;
    let report = sync_frida(&s).await;
    assert!(report.counts.transactions.added > 0, "{:?}", report.counts);
    let mut next = Some(cursor);
    while let Some(cursor) = next {
        let page = s
            .call(
                Method::GET,
                &format!("/transactions?status=booked&limit=50&next={cursor}"),
                Some(FRIDA),
                None,
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        seen.extend(
            page.body["transactions"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
        next = page.body["next"].as_str().map(String::from);
    }
    // The walk begun before they arrived sees exactly what was there: none twice, none
    // missed, none of the new ones.
    let ids = |items: &[Value]| -> Vec<String> {
        items
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&seen), ids(&everything));
}
