//! Consents, authorisation and account connection over real HTTP: the token server, both
//! emulated banks and connect-accounts served on an ephemeral local port, Leafy Bank calling
//! the banks through that port, against FerretDB and the Secrets Manager emulator.

use futures_util::TryStreamExt;
use mongodb::bson::{Document, doc, oid::ObjectId};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use shared::consents;
use shared::institutions::Institution;
use shared::oauth::{self, Grant};
use testkit::{FRIDA, FRIDA_ID, GRACE, Reply, Stack, bank_data};

#[tokio::test]
async fn consent_authorise_connect_list_end_to_end_at_green_bank() {
    let s = Stack::start().await;
    let id = s
        .new_consent(FRIDA, "green-bank", &["ReadAccountsDetail", "ReadBalances"])
        .await;
    let early = s.connect(FRIDA, &id).await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.body);

    let authorised = s
        .call(
            Method::POST,
            &format!("/consents/{id}/authorise"),
            Some(FRIDA),
            None,
        )
        .await;
    assert_eq!(authorised.status, StatusCode::OK, "{}", authorised.body);
    let history: Vec<&str> = authorised.body["statusHistory"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["AwaitingAuthorisation", "Authorised"]);
    let again = s
        .call(
            Method::POST,
            &format!("/consents/{id}/authorise"),
            Some(FRIDA),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);

    // Stored credentials are sealed; the token server keeps digests only.
    let stored = s
        .ctx
        .state
        .db
        .open_finance
        .collection::<Document>("consents")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    let sealed = stored.get_document("Credentials").unwrap();
    assert!(sealed.get_str("RefreshToken").unwrap().starts_with("v1."));
    let access = s.stored_access_token(&id).await;
    assert!(!stored.to_string().contains(&access));

    let connected = s.connect(FRIDA, &id).await;
    assert_eq!(connected.status, StatusCode::OK, "{}", connected.body);
    let accounts = connected.body["accounts"].as_array().unwrap();
    let frida_at_green = bank_data("green-bank")["customers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["customerId"] == FRIDA_ID)
        .unwrap()
        .clone();
    assert_eq!(
        accounts.len(),
        frida_at_green["accounts"].as_array().unwrap().len()
    );
    for account in accounts {
        assert_eq!(account["AccountBank"], "Green Bank");
        assert_eq!(account["AccountUser"]["UserId"], FRIDA_ID);
        assert_eq!(account["Provenance"]["ConsentId"], id.as_str());
        assert_eq!(account["Provenance"]["Institution"], "green-bank");
        assert!(account["Provenance"]["LastSyncedAt"].is_string());
        assert!(account["GreenAccountNarrative"].is_string());
    }
    let overdrawn = accounts
        .iter()
        .find(|a| a["AccountNumber"] == "400118822")
        .expect("overdrawn account");
    assert_eq!(overdrawn["AccountBalance"], -312.45);
    assert_eq!(overdrawn["AccountType"], "Checking");
    // The seeded reference document was updated in place (same _id), not duplicated.
    let reference = accounts
        .iter()
        .find(|a| a["AccountNumber"] == "204515807")
        .unwrap();
    assert_eq!(reference["_id"], "678a48b4a9711d00a3aa06dc");
    assert_eq!(reference["AccountBalance"], 7825.0);

    let before = s.snapshot("external_accounts").await;
    let twice = s.connect(FRIDA, &id).await;
    assert_eq!(twice.status, StatusCode::OK);
    assert_eq!(
        s.snapshot("external_accounts").await,
        before,
        "connecting twice changed the documents"
    );

    let listed = s
        .call(
            Method::GET,
            "/accounts?institution=green-bank",
            Some(FRIDA),
            None,
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(
        listed.body["accounts"].as_array().unwrap().len(),
        accounts.len()
    );
    let all = s.call(Method::GET, "/accounts", Some(FRIDA), None).await;
    assert!(all.body["accounts"].as_array().unwrap().len() > accounts.len());

    // Legacy listing of the same data.
    let legacy = s.call(Method::GET, "/api/v1/openfinance/secure/fetch-external-accounts-for-user-and-institution/?user_identifier=fridaklo&institution_name=Green%20Bank", Some(FRIDA), None).await;
    assert_eq!(legacy.status, StatusCode::OK, "{}", legacy.body);
    assert_eq!(
        legacy.body["accounts"].as_array().unwrap().len(),
        accounts.len()
    );
}

#[tokio::test]
async fn mongodb_bank_connects_in_its_own_style_and_legacy_retrieve_uses_the_consent() {
    let s = Stack::start().await;
    let none = s
        .call(Method::POST, "/api/v1/openfinance/secure/retrieve-external-account-for-user", Some(FRIDA),
            Some(json!({"account_bank": "MongoDB Bank", "user_name": "fridaklo", "user_id": FRIDA_ID})))
        .await;
    assert_eq!(none.status, StatusCode::CONFLICT, "{}", none.body);
    assert!(none.body["detail"].is_string());

    let id = s
        .authorised_consent(
            FRIDA,
            "mongodb-bank",
            &["ReadAccountsBasic", "ReadBalances"],
        )
        .await;
    let connected = s.connect(FRIDA, &id).await;
    assert_eq!(connected.status, StatusCode::OK, "{}", connected.body);
    let accounts = connected.body["accounts"].as_array().unwrap();
    let euro = accounts
        .iter()
        .find(|a| a["AccountCurrency"] == "EUR")
        .expect("EUR account");
    assert_eq!(euro["AccountBalance"], 3200.5);
    assert_eq!(euro["AccountType"], "Savings");
    assert_eq!(
        euro["MDBAccountNarrative"],
        "Euro savings account at MongoDB Bank"
    );
    assert_eq!(
        euro["Provenance"]["Standard"],
        Institution::MongoDbBank.standard()
    );

    let retrieved = s
        .call(Method::POST, "/api/v1/openfinance/secure/retrieve-external-account-for-user", Some(FRIDA),
            Some(json!({"account_bank": "MongoDB Bank", "user_name": "fridaklo", "user_id": FRIDA_ID})))
        .await;
    assert_eq!(retrieved.status, StatusCode::OK, "{}", retrieved.body);
    assert!(
        accounts
            .iter()
            .any(|a| a["_id"] == retrieved.body["account_id"])
    );
}

#[tokio::test]
async fn a_balance_not_read_again_is_removed_not_left_looking_fresh() {
    let s = Stack::start().await;
    let euro_balance = |reply: &Reply| {
        reply.body["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["AccountCurrency"] == "EUR")
            .expect("EUR account")
            .get("AccountBalance")
            .cloned()
    };
    let broad = s
        .authorised_consent(
            FRIDA,
            "mongodb-bank",
            &["ReadAccountsBasic", "ReadBalances"],
        )
        .await;
    let first = s.connect(FRIDA, &broad).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(euro_balance(&first), Some(json!(3200.5)));

    // The same accounts under a consent without `ReadBalances`: same documents, no balance.
    let narrow = s
        .authorised_consent(FRIDA, "mongodb-bank", &["ReadAccountsBasic"])
        .await;
    let second = s.connect(FRIDA, &narrow).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(euro_balance(&second), None, "{}", second.body);
    assert_eq!(
        first.body["accounts"].as_array().unwrap().len(),
        second.body["accounts"].as_array().unwrap().len()
    );

    // At Green Bank, without `ReadAccountsDetail` the identification goes too.
    let broad = s
        .authorised_consent(GRACE, "green-bank", &["ReadAccountsDetail", "ReadBalances"])
        .await;
    let first = s.connect(GRACE, &broad).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let detailed = first.body["accounts"].as_array().unwrap();
    assert!(!detailed.is_empty());
    assert!(detailed.iter().all(|a| a["AccountNumber"].is_string()
        && a["Account"].is_array()
        && a["AccountBalance"].is_number()));
    let narrow = s
        .authorised_consent(GRACE, "green-bank", &["ReadAccountsBasic"])
        .await;
    let second = s.connect(GRACE, &narrow).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let basic = second.body["accounts"].as_array().unwrap();
    assert_eq!(basic.len(), detailed.len());
    for a in basic {
        for field in ["AccountNumber", "Account", "AccountBalance"] {
            assert!(a.get(field).is_none(), "{field} kept: {a}");
        }
    }
}

#[tokio::test]
async fn another_users_consents_and_accounts_are_out_of_reach() {
    let s = Stack::start().await;
    let id = s
        .authorised_consent(FRIDA, "green-bank", &["ReadAccountsDetail", "ReadBalances"])
        .await;
    assert_eq!(s.connect(FRIDA, &id).await.status, StatusCode::OK);

    for (method, path, body) in [
        (Method::GET, format!("/consents/{id}"), None),
        (Method::DELETE, format!("/consents/{id}"), None),
        (Method::POST, format!("/consents/{id}/authorise"), None),
        (
            Method::POST,
            "/accounts/connect".to_string(),
            Some(json!({"consentId": id})),
        ),
    ] {
        let reply = s.call(method.clone(), &path, Some(GRACE), body).await;
        assert_eq!(
            reply.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            reply.body
        );
    }
    let listed = s.call(Method::GET, "/consents", Some(GRACE), None).await;
    assert_eq!(listed.body["consents"].as_array().unwrap().len(), 0);
    let accounts = s.call(Method::GET, "/accounts", Some(GRACE), None).await;
    assert!(
        accounts.body["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["AccountUser"]["UserName"] == "gracehop")
    );
    for path in [
        "/api/v1/openfinance/secure/fetch-external-accounts-for-user/?user_identifier=fridaklo",
        "/api/v1/openfinance/secure/fetch-external-accounts-for-user-and-institution/?user_identifier=fridaklo&institution_name=Green%20Bank",
    ] {
        assert_eq!(
            s.call(Method::GET, path, Some(GRACE), None).await.status,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    let retrieve = s
        .call(
            Method::POST,
            "/api/v1/openfinance/secure/retrieve-external-account-for-user",
            Some(GRACE),
            Some(
                json!({"account_bank": "Green Bank", "user_name": "fridaklo", "user_id": FRIDA_ID}),
            ),
        )
        .await;
    assert_eq!(retrieve.status, StatusCode::FORBIDDEN);
    // Still Frida's and untouched.
    assert_eq!(
        s.call(Method::GET, &format!("/consents/{id}"), Some(FRIDA), None)
            .await
            .body["status"],
        "Authorised"
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx() {
    let s = Stack::start().await;
    let ok =
        json!({"institution": "green-bank", "permissions": ["ReadBalances"], "expiresInDays": 30});
    let mut cases: Vec<(&str, Value)> = vec![
        (
            "unknown institution",
            json!({"institution": "Leafy Bank", "permissions": ["ReadBalances"], "expiresInDays": 30}),
        ),
        (
            "unknown permission",
            json!({"institution": "green-bank", "permissions": ["WriteEverything"], "expiresInDays": 30}),
        ),
        (
            "no permissions",
            json!({"institution": "green-bank", "permissions": [], "expiresInDays": 30}),
        ),
        (
            "too long",
            json!({"institution": "green-bank", "permissions": ["ReadBalances"], "expiresInDays": 181}),
        ),
        (
            "zero days",
            json!({"institution": "green-bank", "permissions": ["ReadBalances"], "expiresInDays": 0}),
        ),
        (
            "days as text",
            json!({"institution": "green-bank", "permissions": ["ReadBalances"], "expiresInDays": "30"}),
        ),
        (
            "missing field",
            json!({"institution": "green-bank", "permissions": ["ReadBalances"]}),
        ),
        (
            "operator",
            json!({"institution": {"$ne": null}, "permissions": ["ReadBalances"], "expiresInDays": 30}),
        ),
        (
            "extra field",
            json!({"institution": "green-bank", "permissions": ["ReadBalances"], "expiresInDays": 30, "status": "Authorised"}),
        ),
    ];
    cases.push(("not an object", json!([ok.clone()])));
    for (what, body) in cases {
        let reply = s
            .call(Method::POST, "/consents", Some(FRIDA), Some(body))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            reply.body
        );
        assert!(reply.body["detail"].is_string(), "{what}");
    }
    assert_eq!(
        s.raw("/consents", FRIDA, Some("application/json"), "{not json")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.raw("/consents", FRIDA, None, &ok.to_string())
            .await
            .status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let huge = json!({"institution": "green-bank", "permissions": vec!["ReadBalances"; 3000], "expiresInDays": 30});
    assert_eq!(
        s.raw(
            "/consents",
            FRIDA,
            Some("application/json"),
            &huge.to_string()
        )
        .await
        .status,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    for path in ["/consents/not-an-id", "/consents/123"] {
        assert_eq!(
            s.call(Method::GET, path, Some(FRIDA), None).await.status,
            StatusCode::BAD_REQUEST,
            "{path}"
        );
    }
    assert_eq!(
        s.call(
            Method::GET,
            &format!("/consents/{}", ObjectId::new()),
            Some(FRIDA),
            None
        )
        .await
        .status,
        StatusCode::NOT_FOUND
    );
    for body in [
        json!({"consentId": "nope"}),
        json!({"consentId": 5}),
        json!({}),
        json!({"consentId": {"$gt": ""}}),
    ] {
        let reply = s
            .call(
                Method::POST,
                "/accounts/connect",
                Some(FRIDA),
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            reply.body
        );
    }
    assert_eq!(
        s.call(
            Method::GET,
            "/accounts?institution=nowhere",
            Some(FRIDA),
            None
        )
        .await
        .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        s.call(Method::GET, "/accounts?user=x", Some(FRIDA), None)
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    // No token, an unknown token, a forged JWT.
    assert_eq!(
        s.call(Method::GET, "/consents", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.call(Method::GET, "/consents", Some("nope"), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.call(Method::GET, "/consents", Some("a.b.c"), None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Legacy: the token is checked before the request, so a missing parameter with no token
    // (or a token not recognised) is answered as an authentication failure first.
    let path = "/api/v1/openfinance/secure/fetch-external-accounts-for-user/";
    assert_eq!(
        s.call(Method::GET, path, None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.call(Method::GET, path, Some("nope"), None).await.status,
        StatusCode::FORBIDDEN
    );
    // Legacy: missing parameters.
    let legacy = s
        .call(
            Method::GET,
            "/api/v1/openfinance/secure/fetch-external-accounts-for-user/",
            Some(FRIDA),
            None,
        )
        .await;
    assert_eq!(legacy.status, StatusCode::BAD_REQUEST);
    let legacy = s.call(Method::GET, "/api/v1/openfinance/secure/fetch-external-accounts-for-user-and-institution/?user_identifier=fridaklo", Some(FRIDA), None).await;
    assert_eq!(legacy.status, StatusCode::BAD_REQUEST);
    let legacy = s
        .call(
            Method::POST,
            "/api/v1/openfinance/secure/retrieve-external-account-for-user",
            Some(FRIDA),
            Some(json!({"account_bank": "Green Bank", "user_name": "fridaklo", "user_id": "zzz"})),
        )
        .await;
    assert_eq!(legacy.status, StatusCode::BAD_REQUEST);
    // Nothing was created by any of it.
    assert_eq!(
        s.call(Method::GET, "/consents", Some(FRIDA), None)
            .await
            .body["consents"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test]
async fn bank_faults_are_502_or_504_and_write_nothing() {
    let s = Stack::start().await;
    let id = s
        .authorised_consent(FRIDA, "green-bank", &["ReadAccountsDetail", "ReadBalances"])
        .await;
    let before = s.snapshot("external_accounts").await;
    for (fault, status) in [
        (doc! {"Status": 503}, StatusCode::BAD_GATEWAY),
        (doc! {"Status": 500}, StatusCode::BAD_GATEWAY),
        (doc! {"Malformed": true}, StatusCode::BAD_GATEWAY),
        (doc! {"LatencyMs": 3000}, StatusCode::GATEWAY_TIMEOUT),
    ] {
        s.set_fault("green-bank", fault.clone()).await;
        let reply = s.connect(FRIDA, &id).await;
        assert_eq!(reply.status, status, "{fault}: {}", reply.body);
        assert!(
            reply.body["detail"]
                .as_str()
                .unwrap()
                .contains("Green Bank"),
            "{}",
            reply.body
        );
        assert_eq!(
            s.snapshot("external_accounts").await,
            before,
            "{fault} changed the data"
        );
    }
    // The fault gone, the same consent connects (its lease was released each time).
    s.set_fault("mongodb-bank", doc! {"Status": 503}).await;
    assert_eq!(s.connect(FRIDA, &id).await.status, StatusCode::OK);
}

#[tokio::test]
async fn revocation_disconnects_and_tokens_are_bound_to_bank_and_consent() {
    let s = Stack::start().await;
    let green = s
        .authorised_consent(FRIDA, "green-bank", &["ReadAccountsDetail", "ReadBalances"])
        .await;
    assert_eq!(s.connect(FRIDA, &green).await.status, StatusCode::OK);
    let green_token = s.stored_access_token(&green).await;

    // A Green Bank token is refused by MongoDB Bank, even with the right Consent-ID.
    let at_mdb = s
        .http
        .get(format!("{}/banks/mongodb-bank/v1/accounts", s.base))
        .bearer_auth(&green_token)
        .header("Consent-ID", &green)
        .send()
        .await
        .unwrap();
    assert_eq!(at_mdb.status(), StatusCode::UNAUTHORIZED);
    let body: Value = at_mdb.json().await.unwrap();
    assert_eq!(body["tppMessages"][0]["code"], "TOKEN_INVALID");
    // A permission the consent lacks is refused by Green Bank in its own format.
    let products = s
        .http
        .get(format!(
            "{}/banks/green-bank/open-banking/v3.1/aisp/products",
            s.base
        ))
        .bearer_auth(&green_token)
        .send()
        .await
        .unwrap();
    assert_eq!(products.status(), StatusCode::FORBIDDEN);
    let body: Value = products.json().await.unwrap();
    assert!(body["Errors"][0]["ErrorCode"].is_string());
    // Green Bank pages its lists (UK Open Banking `Links.Next`); connecting followed them.
    let page = |n: &str| {
        s.http
            .get(format!(
                "{}/banks/green-bank/open-banking/v3.1/aisp/accounts?page={n}",
                s.base
            ))
            .bearer_auth(&green_token)
            .send()
    };
    let first: Value = page("1").await.unwrap().json().await.unwrap();
    let next = first["Links"]["Next"].as_str().expect("a next page");
    assert!(next.ends_with("accounts?page=2"), "{next}");
    let second: Value = page("2").await.unwrap().json().await.unwrap();
    assert!(second["Links"].get("Next").is_none());
    let on_pages = first["Data"]["Account"].as_array().unwrap().len()
        + second["Data"]["Account"].as_array().unwrap().len();
    assert_eq!(on_pages, 3, "fridaklo's three Green Bank accounts");
    assert_eq!(page("0").await.unwrap().status(), StatusCode::BAD_REQUEST);

    let revoked = s
        .call(
            Method::DELETE,
            &format!("/consents/{green}"),
            Some(FRIDA),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(revoked.body["status"], "Revoked");
    let accounts: Vec<Document> = s
        .ctx
        .state
        .db
        .open_finance
        .collection::<Document>("external_accounts")
        .find(doc! {"Provenance.ConsentId": ObjectId::parse_str(&green).unwrap()})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert!(!accounts.is_empty());
    assert!(accounts.iter().all(|a| {
        a.get_document("Provenance")
            .unwrap()
            .get_str("ConnectionStatus")
            == Ok("Disconnected")
    }));
    let legacy = s.call(Method::GET, "/api/v1/openfinance/secure/fetch-external-accounts-for-user-and-institution/?user_identifier=fridaklo&institution_name=green-bank", Some(FRIDA), None).await;
    assert_eq!(
        legacy.body["accounts"].as_array().unwrap().len(),
        0,
        "disconnected accounts listed as connected"
    );
    // A connect or sync that read the bank before the revocation and writes after it: its
    // check after writing puts the data back to disconnected.
    let consent_id = ObjectId::parse_str(&green).unwrap();
    let external = s
        .ctx
        .state
        .db
        .open_finance
        .collection::<Document>("external_accounts");
    external
        .update_many(
            doc! {"Provenance.ConsentId": consent_id},
            doc! {"$set": {"Provenance.ConnectionStatus": "Connected"}},
        )
        .await
        .unwrap();
    let revoked = consents::get_any(&s.ctx.state.db, consent_id)
        .await
        .unwrap()
        .unwrap();
    assert!(
        consents::disconnect_if_ended(&s.ctx.state.db, &revoked)
            .await
            .unwrap()
    );
    assert_eq!(
        external
            .count_documents(doc! {"Provenance.ConsentId": consent_id, "Provenance.ConnectionStatus": "Connected"})
            .await
            .unwrap(),
        0
    );

    let after = s
        .http
        .get(format!(
            "{}/banks/green-bank/open-banking/v3.1/aisp/accounts",
            s.base
        ))
        .bearer_auth(&green_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        StatusCode::UNAUTHORIZED,
        "a token of a revoked consent was accepted"
    );
    assert_eq!(s.connect(FRIDA, &green).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        s.call(
            Method::POST,
            &format!("/consents/{green}/authorise"),
            Some(FRIDA),
            None
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    // Revoking again is harmless.
    assert_eq!(
        s.call(
            Method::DELETE,
            &format!("/consents/{green}"),
            Some(FRIDA),
            None
        )
        .await
        .body["status"],
        "Revoked"
    );
}

#[tokio::test]
async fn an_expired_consent_is_refused() {
    let s = Stack::start().await;
    let id = s
        .authorised_consent(FRIDA, "green-bank", &["ReadAccountsBasic"])
        .await;
    let past = mongodb::bson::DateTime::from_millis(
        mongodb::bson::DateTime::now().timestamp_millis() - 1000,
    );
    s.ctx
        .state
        .db
        .open_finance
        .collection::<Document>("consents")
        .update_one(
            doc! {"_id": ObjectId::parse_str(&id).unwrap()},
            doc! {"$set": {"ExpiresAt": past}},
        )
        .await
        .unwrap();
    let reply = s.connect(FRIDA, &id).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    assert_eq!(
        s.call(Method::GET, &format!("/consents/{id}"), Some(FRIDA), None)
            .await
            .body["status"],
        "Expired"
    );
}

async fn token_call(s: &Stack, form: &[(&str, &str)]) -> Reply {
    let secret = s.ctx.state.secrets.current().await.unwrap();
    let client = secret.institution_client().unwrap();
    let response = s
        .http
        .post(format!("{}/oauth/token", s.base))
        .basic_auth(&client.client_id, Some(&client.client_secret))
        .form(form)
        .send()
        .await
        .unwrap();
    Reply {
        status: response.status(),
        body: response.json().await.unwrap(),
    }
}

#[tokio::test]
async fn pkce_single_use_codes_and_refresh_rotation_with_replay_detection() {
    let s = Stack::start().await;
    let db = &s.ctx.state.db;
    let frida = ObjectId::parse_str(FRIDA_ID).unwrap();
    let consent = consents::create(
        db,
        frida,
        "fridaklo",
        Institution::GreenBank,
        vec!["ReadBalances".into()],
        30,
    )
    .await
    .unwrap();
    let client_id = s
        .ctx
        .state
        .secrets
        .current()
        .await
        .unwrap()
        .institution_client()
        .unwrap()
        .client_id
        .clone();
    let grant = Grant {
        consent_id: consent.id,
        user_id: frida,
        client_id,
    };
    let verifier = oauth::pkce_verifier();

    // Wrong verifier: refused, and the code is spent.
    let code = oauth::issue_code(db, &grant, &oauth::pkce_challenge(&verifier))
        .await
        .unwrap();
    let wrong = token_call(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &oauth::pkce_verifier()),
        ],
    )
    .await;
    assert_eq!(
        (wrong.status, wrong.body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let missing = token_call(&s, &[("grant_type", "authorization_code"), ("code", &code)]).await;
    assert_eq!(missing.body["error"], "invalid_request");

    // Right verifier: tokens; the same code again: refused, and what it issued is revoked.
    let code = oauth::issue_code(db, &grant, &oauth::pkce_challenge(&verifier))
        .await
        .unwrap();
    let first = token_call(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["scope"], "ReadBalances");
    let refresh_1 = first.body["refresh_token"].as_str().unwrap().to_string();
    let reused = token_call(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(reused.body["error"], "invalid_grant");
    let after_reuse = token_call(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_1),
        ],
    )
    .await;
    assert_eq!(
        after_reuse.body["error"], "invalid_grant",
        "tokens of a replayed code stay valid"
    );

    // A fresh family: rotation issues a new refresh token; replaying the old one revokes all.
    consents::revoke(db, frida, consent.id).await.unwrap();
    let consent = consents::create(
        db,
        frida,
        "fridaklo",
        Institution::GreenBank,
        vec!["ReadBalances".into()],
        30,
    )
    .await
    .unwrap();
    let grant = Grant {
        consent_id: consent.id,
        ..grant
    };
    let code = oauth::issue_code(db, &grant, &oauth::pkce_challenge(&verifier))
        .await
        .unwrap();
    let issued = token_call(
        &s,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    let r1 = issued.body["refresh_token"].as_str().unwrap().to_string();
    consents::transition(
        db,
        consent.id,
        consents::AWAITING,
        consents::AUTHORISED,
        doc! {},
    )
    .await
    .unwrap();
    let rotated = token_call(
        &s,
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let r2 = rotated.body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2);
    let access = rotated.body["access_token"].as_str().unwrap().to_string();

    // Presented again within the grace period (a retry after a lost answer): rotates again.
    let retried = token_call(
        &s,
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    let r3 = retried.body["refresh_token"].as_str().unwrap().to_string();
    // One branch stays live: the earlier rotation's refresh token is revoked by the retry.
    let earlier = token_call(
        &s,
        &[("grant_type", "refresh_token"), ("refresh_token", &r2)],
    )
    .await;
    assert_eq!(earlier.body["error"], "invalid_grant", "{}", earlier.body);

    // The same reuse after the grace period is a replay: refused, and the family revoked.
    let long_ago = mongodb::bson::DateTime::from_millis(
        mongodb::bson::DateTime::now().timestamp_millis()
            - (oauth::REFRESH_REUSE_GRACE_SECONDS + 1) * 1000,
    );
    let spent_marker = format!("spent:{}", shared::auth::hash::sha256_hex(&r1));
    db.tokens()
        .update_one(
            doc! {"_id": spent_marker},
            doc! {"$set": {"TokenDates.CreationDate": long_ago}},
        )
        .await
        .unwrap();
    let replay = token_call(
        &s,
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(replay.body["error"], "invalid_grant");
    let r3_after = token_call(
        &s,
        &[("grant_type", "refresh_token"), ("refresh_token", &r3)],
    )
    .await;
    assert_eq!(
        r3_after.body["error"], "invalid_grant",
        "the family survived a replay"
    );
    let bank = s
        .http
        .get(format!(
            "{}/banks/green-bank/open-banking/v3.1/aisp/balances",
            s.base
        ))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(
        bank.status(),
        StatusCode::UNAUTHORIZED,
        "an access token of a revoked family was accepted"
    );
}
