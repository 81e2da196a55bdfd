//! The dashboard over plain HTTP, as a browser without JavaScript uses it: accounts, sessions,
//! CSRF, subscription pages, API keys, tenant isolation.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use spenza::config::SignupPolicy;
use spenza::db::schema::{api_keys, sessions, sources, subscriptions, users};

use crate::helpers::{
    Dashboard, OWNER_EMAIL, PASSWORD, Script, Sink, TestApp, csrf_token_in, set_cookie, spawn_app,
    spawn_app_with, spawn_fresh_app_with,
};

async fn user_count(app: &TestApp) -> i64 {
    users::table
        .count()
        .get_result(&mut app.db().await)
        .await
        .unwrap()
}

async fn subscription_count(app: &TestApp) -> i64 {
    subscriptions::table
        .count()
        .get_result(&mut app.db().await)
        .await
        .unwrap()
}

async fn post_as_visitor(app: &TestApp, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
    app.api
        .post(format!("{}{path}", app.address))
        .form(fields)
        .send()
        .await
        .unwrap()
}

async fn get_as_visitor(app: &TestApp, path: &str) -> reqwest::Response {
    app.api
        .get(format!("{}{path}", app.address))
        .send()
        .await
        .unwrap()
}

fn location(response: &reqwest::Response) -> &str {
    response.headers()["location"].to_str().unwrap()
}

// ---- sign-up ----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_first_claims_a_fresh_install_and_then_closes() {
    let app = spawn_fresh_app_with(|_| {}).await;
    let root = get_as_visitor(&app, "/").await;
    assert_eq!(
        location(&root),
        "/signup",
        "a fresh install is claimed at /signup"
    );
    let form = get_as_visitor(&app, "/signup").await;
    assert_eq!(form.status(), 200);
    assert!(form.text().await.unwrap().contains("name=\"password\""));

    let first = post_as_visitor(
        &app,
        "/signup",
        &[("email", "first@example.com"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(first.status(), 303);
    assert_eq!(location(&first), "/subscriptions");
    assert!(
        set_cookie(&first, "spenza_session").is_some(),
        "signed in at once"
    );

    let second = post_as_visitor(
        &app,
        "/signup",
        &[("email", "second@example.com"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(second.status(), 403);
    let closed = second.text().await.unwrap();
    assert!(closed.contains("spenza users create"), "{closed}");
    assert_eq!(get_as_visitor(&app, "/signup").await.status(), 403);
    assert_eq!(user_count(&app).await, 1);
    assert_eq!(location(&get_as_visitor(&app, "/").await), "/login");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_open_takes_anyone_and_refuses_bad_input_field_by_field() {
    let app = spawn_app_with(|s| s.signup = SignupPolicy::Open).await;
    let short = post_as_visitor(
        &app,
        "/signup",
        &[("email", "not-an-address"), ("password", "short")],
    )
    .await;
    assert_eq!(short.status(), 422);
    let page = short.text().await.unwrap();
    assert!(page.contains("id=\"email-error\""), "{page}");
    assert!(page.contains("at least 12 characters"), "{page}");
    assert!(
        page.contains("value=\"not-an-address\""),
        "what was typed is kept"
    );

    let taken = post_as_visitor(
        &app,
        "/signup",
        &[("email", "OWNER@example.com"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(taken.status(), 422);
    assert!(taken.text().await.unwrap().contains("log in instead"));

    let new = post_as_visitor(
        &app,
        "/signup",
        &[("email", "new@example.com"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(new.status(), 303);
    assert_eq!(user_count(&app).await, 2);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_closed_creates_nobody_and_says_how_an_operator_does() {
    let app = spawn_fresh_app_with(|s| s.signup = SignupPolicy::Closed).await;
    let page = get_as_visitor(&app, "/signup").await;
    assert_eq!(page.status(), 403);
    assert!(page.text().await.unwrap().contains("spenza users create"));
    let refused = post_as_visitor(
        &app,
        "/signup",
        &[("email", "first@example.com"), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(refused.status(), 403);
    assert!(set_cookie(&refused, "spenza_session").is_none());
    assert_eq!(user_count(&app).await, 0);
    app.shutdown().await;
}

// ---- log-in, sessions ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_in_sets_a_hardened_cookie_and_stores_only_its_hash() {
    let app = spawn_app().await;
    let response = post_as_visitor(
        &app,
        "/login",
        &[("email", OWNER_EMAIL), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(response.status(), 303);
    let cookie = set_cookie(&response, "spenza_session").unwrap().to_owned();
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert!(!cookie.contains("Secure"), "plain http: no Secure flag");
    let token = cookie["spenza_session=".len()..].split(';').next().unwrap();
    assert_eq!(token.len(), 43, "256 random bits, base64url");
    let hashes: Vec<Vec<u8>> = sessions::table
        .select(sessions::token_hash)
        .load(&mut app.db().await)
        .await
        .unwrap();
    assert_eq!(hashes.len(), 1);
    assert_ne!(
        hashes[0],
        token.as_bytes(),
        "the token itself is not stored"
    );
    app.shutdown().await;

    let https =
        spawn_app_with(|s| s.public_url = Some("https://relay.example.com".parse().unwrap())).await;
    let response = post_as_visitor(
        &https,
        "/login",
        &[("email", OWNER_EMAIL), ("password", PASSWORD)],
    )
    .await;
    let cookie = set_cookie(&response, "spenza_session").unwrap();
    assert!(cookie.contains("Secure"), "{cookie}");
    https.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_and_an_unknown_address_get_the_same_answer() {
    let app = spawn_app().await;
    let wrong = post_as_visitor(
        &app,
        "/login",
        &[
            ("email", OWNER_EMAIL),
            ("password", "not the password at all"),
        ],
    )
    .await;
    let unknown = post_as_visitor(
        &app,
        "/login",
        &[
            ("email", "nobody@example.com"),
            ("password", "not the password at all"),
        ],
    )
    .await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    assert!(set_cookie(&wrong, "spenza_session").is_none());
    let (wrong, unknown) = (wrong.text().await.unwrap(), unknown.text().await.unwrap());
    assert!(wrong.contains("Wrong email address or password."));
    assert_eq!(
        wrong.replace(OWNER_EMAIL, "X"),
        unknown.replace("nobody@example.com", "X"),
        "the pages differ only in the address typed"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failed_log_ins_throttle_the_address_even_with_the_right_password() {
    let app = spawn_app().await;
    for address in [OWNER_EMAIL, "nobody@example.com"] {
        for attempt in 1..=5 {
            let response = post_as_visitor(
                &app,
                "/login",
                &[("email", address), ("password", "a wrong password, again")],
            )
            .await;
            assert_eq!(response.status(), 401, "{address} attempt {attempt}");
        }
    }
    for address in [OWNER_EMAIL, "nobody@example.com"] {
        let throttled = post_as_visitor(
            &app,
            "/login",
            &[("email", address), ("password", PASSWORD)],
        )
        .await;
        assert_eq!(throttled.status(), 429, "{address}");
        assert!(throttled.headers().contains_key("retry-after"));
        assert!(set_cookie(&throttled, "spenza_session").is_none());
        let page = throttled.text().await.unwrap();
        assert!(
            page.contains("Too many failed log-ins for this address"),
            "{page}"
        );
    }
    // Another address is not affected.
    app.another_user("other@example.com").await;
    app.dashboard_login("other@example.com", PASSWORD).await;
    // Once the window has passed (moved back in the database), the owner gets in.
    diesel::sql_query("UPDATE login_failures SET failed_at = failed_at - interval '16 minutes'")
        .execute(&mut app.db().await)
        .await
        .unwrap();
    app.owner_dashboard().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_needing_a_session_sends_the_browser_to_log_in_and_back() {
    let app = spawn_app().await;
    let response = get_as_visitor(&app, "/api-keys?x=1").await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/login?next=%2Fapi%2Dkeys%3Fx%3D1");
    let login = app
        .api
        .post(format!("{}/login", app.address))
        .form(&[
            ("email", OWNER_EMAIL),
            ("password", PASSWORD),
            ("next", "/api-keys?x=1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&login), "/api-keys?x=1");
    for outside in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
    ] {
        let login = app
            .api
            .post(format!("{}/login", app.address))
            .form(&[
                ("email", OWNER_EMAIL),
                ("password", PASSWORD),
                ("next", outside),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(
            location(&login),
            "/subscriptions",
            "{outside} is not followed"
        );
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_expired_and_logged_out_sessions_end() {
    let app = spawn_app().await;
    let idle = app.owner_dashboard().await;
    let expired = app.owner_dashboard().await;
    let logged_out = app.owner_dashboard().await;
    assert_eq!(idle.get("/subscriptions").await.status(), 200);

    let hash = |d: &Dashboard| {
        use sha2::Digest;
        sha2::Sha256::digest(d.session.as_bytes()).to_vec()
    };
    diesel::update(sessions::table.filter(sessions::token_hash.eq(hash(&idle))))
        .set(sessions::last_seen_at.eq(chrono::Utc::now() - chrono::TimeDelta::hours(13)))
        .execute(&mut app.db().await)
        .await
        .unwrap();
    diesel::update(sessions::table.filter(sessions::token_hash.eq(hash(&expired))))
        .set(sessions::expires_at.eq(chrono::Utc::now() - chrono::TimeDelta::seconds(1)))
        .execute(&mut app.db().await)
        .await
        .unwrap();
    let out = logged_out.post("/logout", &[]).await;
    assert_eq!(out.status(), 303);
    assert_eq!(location(&out), "/login");
    assert!(
        set_cookie(&out, "spenza_session")
            .unwrap()
            .contains("Max-Age=0")
    );
    let remaining: i64 = sessions::table
        .filter(sessions::token_hash.eq(hash(&logged_out)))
        .count()
        .get_result(&mut app.db().await)
        .await
        .unwrap();
    assert_eq!(remaining, 0, "log-out deletes the row");

    for (what, dashboard) in [
        ("idle", &idle),
        ("expired", &expired),
        ("logged out", &logged_out),
    ] {
        let page = dashboard.get("/subscriptions").await;
        assert_eq!(page.status(), 303, "{what}");
        assert!(location(&page).starts_with("/login?next="), "{what}");
        // An action with the dead session's (valid) CSRF token changes nothing either.
        let token = csrf_token_in(&app.owner_dashboard().await.page("/subscriptions/new").await);
        let action = dashboard
            .post_exactly(
                "/subscriptions",
                &[
                    ("csrf_token", &token),
                    ("name", "x"),
                    ("target_url", "http://127.0.0.1:9/"),
                ],
            )
            .await;
        assert!(
            [303, 403].contains(&action.status().as_u16()),
            "{what}: {}",
            action.status()
        );
    }
    assert_eq!(subscription_count(&app).await, 0);
    app.shutdown().await;
}

// ---- CSRF ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_without_the_sessions_csrf_token_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let dashboard = app.owner_dashboard().await;
    let other = app.owner_dashboard().await;
    let id = dashboard
        .create_subscription("payments", "http://127.0.0.1:9/hooks")
        .await;
    let other_token = other.csrf_token().await;
    let forged: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/subscriptions".into(),
            vec![("name", "forged"), ("target_url", "http://127.0.0.1:9/x")],
        ),
        (format!("/subscriptions/{id}/pause"), vec![]),
        (format!("/subscriptions/{id}/rotate-secret"), vec![]),
        (format!("/subscriptions/{id}/delete"), vec![]),
        (
            format!("/subscriptions/{id}/edit"),
            vec![("name", "renamed"), ("target_url", "http://127.0.0.1:9/y")],
        ),
        ("/api-keys".into(), vec![("name", "forged")]),
        ("/logout".into(), vec![]),
    ];
    let before = app.get_json(&format!("/api/v1/subscriptions/{id}")).await;
    for (path, fields) in &forged {
        let missing = dashboard.post_exactly(path, fields).await;
        assert_eq!(missing.status(), 403, "{path} without a token");
        let page = missing.text().await.unwrap();
        assert!(page.contains("<html"), "a page, not a bare body: {page}");
        let mut wrong = fields.clone();
        wrong.push(("csrf_token", &other_token));
        assert_eq!(
            dashboard.post_exactly(path, &wrong).await.status(),
            403,
            "{path} with another session's token"
        );
        let header = app
            .api
            .post(format!("{}{path}", app.address))
            .header("cookie", format!("spenza_session={}", dashboard.session))
            .header("x-csrf-token", "forged")
            .form(fields)
            .send()
            .await
            .unwrap();
        assert_eq!(header.status(), 403, "{path} with a forged header");
    }
    assert_eq!(
        app.get_json(&format!("/api/v1/subscriptions/{id}")).await,
        before
    );
    assert_eq!(subscription_count(&app).await, 1);
    let keys: i64 = api_keys::table
        .count()
        .get_result(&mut app.db().await)
        .await
        .unwrap();
    assert_eq!(keys, 1, "only the key spawn_app made");
    assert_eq!(
        dashboard.get("/subscriptions").await.status(),
        200,
        "still logged in"
    );

    // htmx sends the token as a header and is answered with HX-Location.
    let token = dashboard.csrf_token().await;
    let htmx = app
        .api
        .post(format!("{}/subscriptions/{id}/pause", app.address))
        .header("cookie", format!("spenza_session={}", dashboard.session))
        .header("x-csrf-token", token)
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(htmx.status(), 200);
    assert_eq!(
        htmx.headers()["hx-location"],
        format!("/subscriptions/{id}").as_str()
    );
    let paused = app.get_json(&format!("/api/v1/subscriptions/{id}")).await;
    assert_eq!(paused["is_active"], false);
    app.shutdown().await;
}

// ---- subscriptions ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriptions_page_starts_empty_and_tells_what_to_do() {
    let app = spawn_app().await;
    let page = app.owner_dashboard().await.page("/subscriptions").await;
    assert!(page.contains("Relay your first webhook"), "{page}");
    assert!(page.contains("href=\"/subscriptions/new\""));
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_create_form_shows_each_problem_beside_its_field_and_keeps_what_was_typed() {
    let app = spawn_app().await;
    let dashboard = app.owner_dashboard().await;
    // The fields posted, the fields that must show an error, a value that must be kept.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a str);
    let cases: [Case; 4] = [
        (
            &[
                ("name", ""),
                ("target_url", "ftp://example.com/x"),
                ("provider_kind", "none"),
            ],
            &["name-error", "target_url-error"],
            "ftp://example.com/x",
        ),
        (
            &[
                ("name", "internal"),
                ("target_url", "http://10.1.2.3/hook"),
                ("provider_kind", "none"),
            ],
            &["target_url-error"],
            "http://10.1.2.3/hook",
        ),
        (
            &[
                ("name", "stripe"),
                ("target_url", "not a url"),
                ("provider_kind", "stripe"),
            ],
            &["target_url-error", "provider_secret-error"],
            "not a url",
        ),
        (
            &[
                ("name", "custom"),
                ("target_url", "https://example.com/x"),
                ("provider_kind", "hmac"),
                ("provider_secret", "s3cret-value"),
                ("provider_header", "bad header"),
            ],
            &["provider_header-error"],
            "https://example.com/x",
        ),
    ];
    for (fields, errors, typed) in cases {
        let response = dashboard.post("/subscriptions", fields).await;
        assert_eq!(response.status(), 422, "{fields:?}");
        let page = response.text().await.unwrap();
        for error in errors {
            assert!(
                page.contains(&format!("id=\"{error}\"")),
                "{error} for {fields:?}:\n{page}"
            );
        }
        assert!(page.contains(&format!("value=\"{typed}\"")), "{typed} kept");
        assert!(
            !page.contains("s3cret-value"),
            "a provider secret is never rendered back"
        );
    }
    assert_eq!(subscription_count(&app).await, 0);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_is_managed_from_its_page() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let dashboard = app.owner_dashboard().await;
    let created = dashboard
        .post(
            "/subscriptions",
            &[
                ("name", "github"),
                ("target_url", &sink.url),
                ("provider_kind", "github"),
                ("provider_secret", "gh-webhook-secret"),
            ],
        )
        .await;
    assert_eq!(created.status(), 303);
    let id = location(&created).rsplit('/').next().unwrap().to_owned();
    let page = dashboard.page(&format!("/subscriptions/{id}")).await;
    let api = app.get_json(&format!("/api/v1/subscriptions/{id}")).await;
    let secret = api["signing_secret"].as_str().unwrap();
    // The secret is not on the page until it is revealed, which the audit log records.
    assert!(!page.contains(secret));
    assert!(page.contains("data-action=\"reveal-secret\""));
    let revealed = dashboard
        .post(&format!("/subscriptions/{id}/secret"), &[])
        .await;
    assert_eq!(revealed.status(), 200);
    assert!(
        revealed.text().await.unwrap().contains(secret),
        "revealed secret"
    );
    assert!(page.contains("curl -X POST"), "a ready-to-paste curl line");
    assert!(!page.contains("gh-webhook-secret"));
    assert_eq!(api["provider"]["kind"], "github");

    // Edit: the form never shows the provider secret, and a blank one keeps it.
    let edit = dashboard.page(&format!("/subscriptions/{id}/edit")).await;
    assert!(!edit.contains("gh-webhook-secret"));
    assert!(edit.contains("value=\"github\" selected"));
    let saved = dashboard
        .post(
            &format!("/subscriptions/{id}/edit"),
            &[
                ("name", "github main"),
                ("target_url", &sink.url),
                ("provider_kind", "github"),
            ],
        )
        .await;
    assert_eq!(saved.status(), 303);
    let provider: Option<serde_json::Value> = subscriptions::table
        .inner_join(sources::table)
        .select(sources::provider)
        .first(&mut app.db().await)
        .await
        .unwrap();
    assert_eq!(provider.unwrap()["secret"], "gh-webhook-secret");
    assert!(
        dashboard
            .page("/subscriptions")
            .await
            .contains("github main")
    );
    // Dropping the check.
    let saved = dashboard
        .post(
            &format!("/subscriptions/{id}/edit"),
            &[
                ("name", "github main"),
                ("target_url", &sink.url),
                ("provider_kind", "none"),
            ],
        )
        .await;
    assert_eq!(saved.status(), 303);
    assert!(app.get_json(&format!("/api/v1/subscriptions/{id}")).await["provider"].is_null());

    // Pause: events are stored and held; resume delivers them.
    let paused = dashboard
        .post(&format!("/subscriptions/{id}/pause"), &[])
        .await;
    assert_eq!(paused.status(), 303);
    assert!(
        set_cookie(&paused, "spenza_flash").is_some(),
        "a message after the action"
    );
    let page = dashboard.page(&format!("/subscriptions/{id}")).await;
    assert!(page.contains(">Paused<"), "{page}");
    assert!(page.contains("Resume"));
    let ingest_url = dashboard.ingest_url(&id).await;
    let held = app.accept(&ingest_url, r#"{"held": true}"#).await;
    let resumed = dashboard
        .post(&format!("/subscriptions/{id}/resume"), &[])
        .await;
    assert_eq!(resumed.status(), 303);
    app.wait_for_status(&held, "completed").await;

    // Test event, rotation.
    let sent = dashboard
        .post(&format!("/subscriptions/{id}/test-event"), &[])
        .await;
    assert_eq!(sent.status(), 303);
    let received = sink.wait_for_requests(2).await;
    assert!(
        received
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("spenza.test")),
        "the test event reached the endpoint"
    );
    let before = api["signing_secret"].clone();
    dashboard
        .post(&format!("/subscriptions/{id}/rotate-secret"), &[])
        .await;
    let after = app.get_json(&format!("/api/v1/subscriptions/{id}")).await;
    assert_ne!(after["signing_secret"], before);

    // The list shows the day's numbers.
    let list = dashboard.page("/subscriptions").await;
    assert!(list.contains("100.0%"), "{list}");

    // Delete asks first, then deletes.
    let confirm = dashboard.page(&format!("/subscriptions/{id}/delete")).await;
    assert!(confirm.contains("This cannot be undone"));
    assert_eq!(subscription_count(&app).await, 1);
    let deleted = dashboard
        .post(&format!("/subscriptions/{id}/delete"), &[])
        .await;
    assert_eq!(location(&deleted), "/subscriptions");
    assert_eq!(subscription_count(&app).await, 0);
    assert_eq!(
        dashboard
            .get(&format!("/subscriptions/{id}"))
            .await
            .status(),
        404
    );
    sink.stop().await;
    app.shutdown().await;
}

// ---- API keys --------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_is_shown_once_works_and_stops_working_when_revoked() {
    let app = spawn_app().await;
    let dashboard = app.owner_dashboard().await;
    let created = dashboard
        .post("/api-keys", &[("name", "ci"), ("role", "developer")])
        .await;
    assert_eq!(created.status(), 200);
    let page = created.text().await.unwrap();
    let marker = "data-new-api-key=\"";
    let start = page.find(marker).expect("the new key is shown") + marker.len();
    let key = page[start..].split('"').next().unwrap().to_owned();
    let use_key = |key: String| {
        let app = &app;
        async move {
            app.api
                .get(format!("{}/api/v1/subscriptions", app.address))
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(use_key(key.clone()).await, 200);
    let listed = dashboard.page("/api-keys").await;
    assert!(!listed.contains(&key), "never shown again");
    assert!(listed.contains(&key[..12]), "its prefix is");
    let last_used: Vec<Option<chrono::DateTime<chrono::Utc>>> = api_keys::table
        .filter(api_keys::name.eq("ci"))
        .select(api_keys::last_used_at)
        .load(&mut app.db().await)
        .await
        .unwrap();
    assert!(last_used[0].is_some(), "its use was noted");

    let empty = dashboard
        .post("/api-keys", &[("name", "  "), ("role", "developer")])
        .await;
    assert_eq!(empty.status(), 422);
    assert!(empty.text().await.unwrap().contains("id=\"name-error\""));

    let id: uuid::Uuid = api_keys::table
        .filter(api_keys::name.eq("ci"))
        .select(api_keys::id)
        .first(&mut app.db().await)
        .await
        .unwrap();
    let revoked = dashboard.post(&format!("/api-keys/{id}/revoke"), &[]).await;
    assert_eq!(revoked.status(), 303);
    assert_eq!(use_key(key).await, 401);
    app.shutdown().await;
}

// ---- tenants, errors -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_objects_are_404_everywhere_and_in_no_list() {
    let app = spawn_app().await;
    let owner = app.owner_dashboard().await;
    let id = owner
        .create_subscription("owners-only", "http://127.0.0.1:9/x")
        .await;
    owner
        .post("/api-keys", &[("name", "owners-key"), ("role", "admin")])
        .await;
    let key_id: uuid::Uuid = api_keys::table
        .filter(api_keys::name.eq("owners-key"))
        .select(api_keys::id)
        .first(&mut app.db().await)
        .await
        .unwrap();
    app.another_user("intruder@example.com").await;
    let intruder = app.dashboard_login("intruder@example.com", PASSWORD).await;
    for path in [
        format!("/subscriptions/{id}"),
        format!("/subscriptions/{id}/edit"),
        format!("/subscriptions/{id}/delete"),
    ] {
        let response = intruder.get(&path).await;
        assert_eq!(response.status(), 404, "GET {path}");
        assert!(response.text().await.unwrap().contains("<html"));
    }
    for (path, fields) in [
        (
            format!("/subscriptions/{id}/edit"),
            vec![
                ("name", "mine"),
                ("target_url", "http://127.0.0.1:9/y"),
                ("provider_kind", "none"),
            ],
        ),
        (format!("/subscriptions/{id}/pause"), vec![]),
        (format!("/subscriptions/{id}/resume"), vec![]),
        (format!("/subscriptions/{id}/rotate-secret"), vec![]),
        (format!("/subscriptions/{id}/test-event"), vec![]),
        (format!("/subscriptions/{id}/delete"), vec![]),
        (format!("/api-keys/{key_id}/revoke"), vec![]),
    ] {
        assert_eq!(
            intruder.post(&path, &fields).await.status(),
            404,
            "POST {path}"
        );
    }
    for page in ["/subscriptions", "/api-keys", "/events"] {
        let html = intruder.page(page).await;
        assert!(
            !html.contains("owners-only") && !html.contains("owners-key"),
            "{page}"
        );
    }
    let untouched = app.get_json(&format!("/api/v1/subscriptions/{id}")).await;
    assert_eq!(untouched["name"], "owners-only");
    assert_eq!(untouched["is_active"], true);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_pages_and_the_json_api_needs_no_csrf_token() {
    let app = spawn_app().await;
    let dashboard = app.owner_dashboard().await;
    for path in [
        "/no/such/page",
        "/subscriptions/not-a-uuid",
        "/subscriptions/00000000-0000-0000-0000-000000000000",
    ] {
        let response = dashboard.get(path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html"),
            "{path}"
        );
    }
    // A browser that holds a session cookie calls the API with a bearer key and no CSRF token:
    // the API is not behind the dashboard's CSRF check.
    let sink = Sink::start(Script::Ok).await;
    let created = app
        .api
        .post(format!("{}/api/v1/subscriptions", app.address))
        .bearer_auth(&app.api_key)
        .header("cookie", format!("spenza_session={}", dashboard.session))
        .json(&serde_json::json!({ "name": "test subscription", "target_url": sink.url }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // Pages carry the security headers.
    let page = dashboard.get("/subscriptions").await;
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(
        dashboard
            .page("/subscriptions")
            .await
            .contains("test subscription")
    );
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_site_cannot_post_to_the_dashboard_not_even_a_log_in() {
    let app = spawn_app().await;
    let own_origin = app.address.clone();
    let attempts = [
        ("origin", "https://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
        ("sec-fetch-site", "same-site"),
    ];
    for (header, value) in attempts {
        let response = app
            .api
            .post(format!("{}/login", app.address))
            .header(header, value)
            .form(&[("email", OWNER_EMAIL), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{header}: {value}");
        assert!(set_cookie(&response, "spenza_session").is_none());
    }
    for (header, value) in [
        ("origin", own_origin.as_str()),
        ("sec-fetch-site", "same-origin"),
    ] {
        let response = app
            .api
            .post(format!("{}/login", app.address))
            .header(header, value)
            .form(&[("email", OWNER_EMAIL), ("password", PASSWORD)])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{header}: {value}");
    }
    app.shutdown().await;
}
