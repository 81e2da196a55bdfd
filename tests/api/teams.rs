//! Teams: workspaces shared by members with roles, invitations, keys with roles, and the audit
//! log; checked through both doors, the JSON API and the dashboard.

use std::net::TcpListener;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{
    Dashboard, OWNER_EMAIL, PASSWORD, Script, Sink, TestApp, spawn_app, spawn_app_with, wait_until,
};
use crate::live::{closed, open_as};
use crate::smtp::MailServer;

/// Sends a JSON body (or none) to an API path with `key`.
async fn call(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let request = app
        .api
        .request(method, format!("{}{path}", app.address))
        .bearer_auth(key);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    request.send().await.expect("the API answered")
}

/// Invites `email` with `role` using the test's (admin) key; answers the link.
async fn invite(app: &TestApp, email: &str, role: &str) -> String {
    invite_with(app, &app.api_key, email, role).await
}

/// Invites `email` with `role` using `key`; answers the link.
async fn invite_with(app: &TestApp, key: &str, email: &str, role: &str) -> String {
    let response = call(
        app,
        key,
        Method::POST,
        "/api/v1/invitations",
        Some(json!({"email": email, "role": role})),
    )
    .await;
    assert_eq!(response.status(), 201, "inviting {email}");
    let invited: Value = response.json().await.unwrap();
    assert!(invited["id"].is_string());
    invited["url"].as_str().expect("a link").to_owned()
}

/// The path of an invitation link, on the app's own address.
fn path_of(url: &str) -> String {
    url[url.find("/invitations/").expect("an invitation link")..].to_owned()
}

/// A new person opens the link, signs up through it and joins; their dashboard.
async fn join_as(app: &TestApp, email: &str, role: &str) -> Dashboard {
    join_through(app, &invite(app, email, role).await, email).await
}

/// A new person opens `link`, signs up through it and joins; their dashboard.
async fn join_through(app: &TestApp, link: &str, email: &str) -> Dashboard {
    let link = path_of(link);
    let page = app
        .api
        .get(format!("{}{link}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let joined = app
        .api
        .post(format!("{}{link}", app.address))
        .form(&[("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(joined.status(), 303, "signing up through the invitation");
    app.dashboard_login(email, PASSWORD).await
}

/// A key of `role` made by the owner's dashboard (an owner may make keys of any role).
async fn key_of(owner: &Dashboard, role: &str) -> String {
    let page = owner
        .post("/api-keys", &[("name", role), ("role", role)])
        .await;
    assert_eq!(page.status(), 200, "creating a {role} key");
    let html = page.text().await.unwrap();
    let marker = "data-new-api-key=\"";
    let start = html.find(marker).expect("the new key is shown") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// A member's user id, as the member list shows it.
async fn member_id(app: &TestApp, email: &str) -> String {
    let members: Value = call(app, &app.api_key, Method::GET, "/api/v1/members", None)
        .await
        .json()
        .await
        .unwrap();
    members["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|member| member["email"] == email)
        .unwrap_or_else(|| panic!("{email} is a member: {members}"))["user_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The audit log as the owner's key reads it.
async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    let response = call(
        app,
        &app.api_key,
        Method::GET,
        &format!("/api/v1/audit-log{query}"),
        None,
    )
    .await;
    assert_eq!(response.status(), 200);
    let log: Value = response.json().await.unwrap();
    log["items"].as_array().expect("items").clone()
}

fn actions_in(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|line| line["action"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invited_person_signs_up_through_the_link_even_with_sign_up_closed_and_joins_with_its_role()
 {
    let app =
        spawn_app_with(|settings| settings.signup = spenza::config::SignupPolicy::Closed).await;
    let sink = Sink::start(Script::Ok).await;
    let subscription = app.create_subscription(&sink.url).await;
    let viewer = join_as(&app, "viewer@example.com", "viewer").await;
    // The member list names both, with their roles.
    let members: Value = call(&app, &app.api_key, Method::GET, "/api/v1/members", None)
        .await
        .json()
        .await
        .unwrap();
    let roles: Vec<(String, String)> = members["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["email"].as_str().unwrap().to_owned(),
                m["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        roles,
        vec![
            (OWNER_EMAIL.to_owned(), "owner".to_owned()),
            ("viewer@example.com".to_owned(), "viewer".to_owned()),
        ]
    );
    // The viewer is in the owner's workspace: its subscription is theirs to read, the top bar
    // names the workspace and their role, and no secret is on the page.
    let page = viewer
        .page(&format!(
            "/subscriptions/{}",
            subscription["id"].as_str().unwrap()
        ))
        .await;
    assert!(page.contains("data-role=\"viewer\""), "{page}");
    assert!(page.contains("data-secret-hidden"));
    // The ingest URL lets anyone who has it send events: hidden too.
    assert!(page.contains("data-ingest-hidden"));
    assert!(!page.contains(subscription["ingest_url"].as_str().unwrap()));
    assert!(!page.contains(subscription["signing_secret"].as_str().unwrap()));
    assert!(!page.contains("data-action=\"reveal-secret\""));
    // The sign-up made no workspace of their own: the owner's is their only one.
    let workspaces = viewer.page("/workspaces").await;
    assert_eq!(
        workspaces.matches("data-workspace-id=").count(),
        2,
        "the badge and one row"
    );
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_works_once_for_its_address_until_it_expires_or_is_revoked() {
    let app = spawn_app().await;
    // Used once: a second use is refused.
    let link = path_of(&invite(&app, "once@example.com", "developer").await);
    let join = |password: &'static str| {
        let (client, url) = (app.api.clone(), format!("{}{link}", app.address));
        async move {
            client
                .post(url)
                .form(&[("password", password)])
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(join(PASSWORD).await.status(), 303);
    assert_eq!(join(PASSWORD).await.status(), 409);
    let page = app
        .api
        .get(format!("{}{link}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 410);
    assert!(page.text().await.unwrap().contains("has been used"));

    // Revoked: the link stops working.
    let response = call(
        &app,
        &app.api_key,
        Method::POST,
        "/api/v1/invitations",
        Some(json!({"email": "revoked@example.com", "role": "viewer"})),
    )
    .await;
    let invited: Value = response.json().await.unwrap();
    let revoked = call(
        &app,
        &app.api_key,
        Method::DELETE,
        &format!("/api/v1/invitations/{}", invited["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(revoked.status(), 204);
    let link = path_of(invited["url"].as_str().unwrap());
    let refused = app
        .api
        .post(format!("{}{link}", app.address))
        .form(&[("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    assert!(refused.text().await.unwrap().contains("revoked"));

    // Expired: seven days later it no longer works.
    let link = path_of(&invite(&app, "late@example.com", "viewer").await);
    {
        use diesel_async::RunQueryDsl;
        let mut conn = app.db().await;
        diesel::sql_query(
            "UPDATE invitations SET expires_at = now() - interval '1 second' \
             WHERE email = 'late@example.com'",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let refused = app
        .api
        .post(format!("{}{link}", app.address))
        .form(&[("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    assert!(refused.text().await.unwrap().contains("expired"));

    // Someone with an account joins while signed in, and their session moves to the workspace.
    let link = path_of(&invite(&app, "known@example.com", "developer").await);
    app.another_user("known@example.com").await;
    let known = app.dashboard_login("known@example.com", PASSWORD).await;
    let invitation_page = known.page(&link).await;
    assert!(invitation_page.contains("data-action=\"join\""));
    let joined = known.post(&link, &[]).await;
    assert_eq!(joined.status(), 303);
    let sources = known.page("/sources").await;
    assert!(
        sources.contains(&format!("class=\"workspace-name\">{OWNER_EMAIL}<")),
        "{sources}"
    );
    assert!(sources.contains("data-role=\"developer\""));

    // A member is not invited again.
    let again = call(
        &app,
        &app.api_key,
        Method::POST,
        "/api/v1/invitations",
        Some(json!({"email": "Once@Example.com", "role": "admin"})),
    )
    .await;
    assert_eq!(again.status(), 422);

    // Another address's session cannot use it.
    let link = path_of(&invite(&app, "someone@example.com", "admin").await);
    let other = app.another_user("other@example.com").await;
    assert!(!other.is_empty());
    let intruder = app.dashboard_login("other@example.com", PASSWORD).await;
    let refused = intruder.post(&link, &[]).await;
    assert_eq!(refused.status(), 403);
    let members = app.get_json("/api/v1/members").await;
    let emails: Vec<&str> = members["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["email"].as_str().unwrap())
        .collect();
    assert_eq!(
        emails,
        [OWNER_EMAIL, "once@example.com", "known@example.com"]
    );
    app.shutdown().await;
}

/// How many attempts the event's only delivery has made.
async fn attempts_of(app: &TestApp, event: &str) -> i64 {
    app.event(event).await["deliveries"][0]["attempts"]
        .as_i64()
        .expect("attempts")
}

/// Waits until the event's only delivery has made another attempt, and completed.
async fn delivered_again(app: &TestApp, event: &str, attempts: i64) {
    wait_until(Duration::from_secs(30), "a replay's attempt", || async {
        let found = app.event(event).await;
        let delivery = &found["deliveries"][0];
        if delivery["attempts"].as_i64() > Some(attempts) && delivery["status"] == "completed" {
            Ok(())
        } else {
            Err(found.to_string())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_is_mailed_through_the_smtp_server_and_shown_all_the_same_when_it_is_down() {
    let mail = MailServer::start();
    let url = mail.url();
    let app = spawn_app_with(|settings| {
        settings.smtp_url = Some(url.into());
        settings.smtp_from = Some("Spenza <relay@example.com>".to_owned());
    })
    .await;
    let response = call(
        &app,
        &app.api_key,
        Method::POST,
        "/api/v1/invitations",
        Some(json!({"email": "mailed@example.com", "role": "developer"})),
    )
    .await;
    assert_eq!(response.status(), 201);
    let invited: Value = response.json().await.unwrap();
    assert_eq!(invited["emailed"], true);
    let link = invited["url"].as_str().unwrap();
    let message = mail.message_to("mailed@example.com").await;
    assert_eq!(message.from, "relay@example.com");
    assert_eq!(message.header("From"), Some("Spenza <relay@example.com>"));
    assert_eq!(message.header("To"), Some("mailed@example.com"));
    assert_eq!(
        message.header("Subject"),
        Some("An API key (test) invited you to owner@example.com on Spenza")
    );
    let body = message.body();
    assert!(body.contains("as a developer"), "{body}");
    assert!(body.contains(link), "the mail carries the link: {body}");
    // The mailed link is the one that works.
    drop(join_through(&app, link, "mailed@example.com").await);
    app.shutdown().await;

    // With the SMTP server down, the invitation is made all the same, and says it was not
    // mailed: the link is there to copy.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!("smtp://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let app = spawn_app_with(|settings| {
        settings.smtp_url = Some(nobody.into());
        settings.smtp_from = Some("relay@example.com".to_owned());
    })
    .await;
    let owner = app.owner_dashboard().await;
    let page = owner
        .post(
            "/members/invite",
            &[("email", "unmailed@example.com"), ("role", "viewer")],
        )
        .await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("data-invitation-url"));
    assert!(!page.contains("data-emailed"));
    app.shutdown().await;
}

/// What each API action needs, and how to tell that a refused one changed nothing.
struct Fixture {
    source: String,
    subscription: String,
    event: String,
    delivery: String,
    secret: String,
}

async fn fixture(app: &TestApp, sink: &Sink) -> Fixture {
    let subscription = app.create_subscription(&sink.url).await;
    let event = app
        .accept(subscription["ingest_url"].as_str().unwrap(), r#"{"n": 1}"#)
        .await;
    app.wait_for_status(&event, "completed").await;
    let delivery = app.delivery_of(&event).await;
    Fixture {
        source: subscription["source_id"].as_str().unwrap().to_owned(),
        subscription: subscription["id"].as_str().unwrap().to_owned(),
        secret: subscription["signing_secret"].as_str().unwrap().to_owned(),
        event,
        delivery,
    }
}

/// What an API action acts on: made afresh for each try when the action consumes it (its id
/// replaces `{target}` in the path).
#[derive(Debug, Clone, Copy)]
enum Fresh {
    Nothing,
    Subscription,
    Source,
    Member,
    Invitation,
    Key,
    Channel,
}

/// Makes what an action consumes, with the test's (admin) key; answers its id.
async fn fresh(app: &TestApp, sink: &Sink, what: Fresh, n: usize) -> String {
    let made = |method, path: &'static str, body| async move {
        let response = call(app, &app.api_key, method, path, Some(body)).await;
        assert!(response.status().is_success(), "{path}");
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    match what {
        Fresh::Nothing => String::new(),
        Fresh::Subscription => app.create_subscription(&sink.url).await["id"]
            .as_str()
            .unwrap()
            .to_owned(),
        Fresh::Source => made(Method::POST, "/api/v1/sources", json!({"name": "doomed"})).await,
        Fresh::Invitation => {
            let email = format!("invitee{n}@example.com");
            made(
                Method::POST,
                "/api/v1/invitations",
                json!({"email": email, "role": "viewer"}),
            )
            .await
        }
        Fresh::Key => {
            made(
                Method::POST,
                "/api/v1/api-keys",
                json!({"name": "doomed", "role": "viewer"}),
            )
            .await
        }
        Fresh::Channel => {
            made(
                Method::POST,
                "/api/v1/notification-channels",
                json!({"kind": "webhook", "url": sink.url}),
            )
            .await
        }
        Fresh::Member => {
            let email = format!("member{n}@example.com");
            drop(join_as(app, &email, "viewer").await);
            member_id(app, &email).await
        }
    }
}

/// Opens an issue about `source` as the relay would (a source refusing requests); its id.
async fn open_issue(app: &TestApp, source: &str) -> String {
    use diesel_async::RunQueryDsl;
    let id = uuid::Uuid::now_v7();
    diesel::sql_query(
        "INSERT INTO issues (id, workspace_id, kind, source_id, state, count, first_seen, \
             last_seen, opened_at) \
         SELECT $1, workspace_id, 'source_rejecting', id, 'open', 1, now(), now(), now() \
         FROM sources WHERE id = $2",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<diesel::sql_types::Uuid, _>(uuid::Uuid::parse_str(source).unwrap())
    .execute(&mut app.db().await)
    .await
    .unwrap();
    id.to_string()
}

/// An API action: method, path, body, the least role that may take it, and what it consumes.
type ApiAction = (Method, String, Option<Value>, &'static str, Fresh);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_may_do_exactly_its_actions_through_the_api_and_a_refusal_changes_nothing() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let fixture = fixture(&app, &sink).await;
    let owner = app.owner_dashboard().await;
    drop(join_as(&app, "dev@example.com", "developer").await);
    let developer_id = member_id(&app, "dev@example.com").await;
    let owner_id = member_id(&app, OWNER_EMAIL).await;
    let subscription = format!("/api/v1/subscriptions/{}", fixture.subscription);
    let source = format!("/api/v1/sources/{}", fixture.source);
    let channel = format!(
        "/api/v1/notification-channels/{}",
        fresh(&app, &sink, Fresh::Channel, 0).await
    );
    let issue = format!("/api/v1/issues/{}", open_issue(&app, &fixture.source).await);
    let (post, patch, delete) = (Method::POST, Method::PATCH, Method::DELETE);
    // Every state change of the API (and the audit log, which only admins read).
    let actions: Vec<ApiAction> = vec![
        (
            post.clone(),
            "/api/v1/sources".into(),
            Some(json!({"name": "new"})),
            "developer",
            Fresh::Nothing,
        ),
        (
            patch.clone(),
            source.clone(),
            Some(json!({"name": "renamed"})),
            "developer",
            Fresh::Nothing,
        ),
        (
            delete.clone(),
            "/api/v1/sources/{target}".into(),
            None,
            "developer",
            Fresh::Source,
        ),
        (
            post.clone(),
            "/api/v1/subscriptions".into(),
            Some(json!({"name": "s", "target_url": sink.url})),
            "developer",
            Fresh::Nothing,
        ),
        (
            patch.clone(),
            subscription.clone(),
            Some(json!({"is_active": false})),
            "developer",
            Fresh::Nothing,
        ),
        (
            patch.clone(),
            subscription.clone(),
            Some(json!({"is_active": true})),
            "developer",
            Fresh::Nothing,
        ),
        (
            post.clone(),
            format!("{subscription}/rotate-secret"),
            None,
            "developer",
            Fresh::Nothing,
        ),
        (
            post.clone(),
            format!("{subscription}/replay"),
            Some(json!({"status": "completed"})),
            "developer",
            Fresh::Nothing,
        ),
        (
            delete.clone(),
            "/api/v1/subscriptions/{target}".into(),
            None,
            "developer",
            Fresh::Subscription,
        ),
        (
            post.clone(),
            format!("/api/v1/events/{}/replay", fixture.event),
            None,
            "developer",
            Fresh::Nothing,
        ),
        (
            post.clone(),
            format!("/api/v1/deliveries/{}/replay", fixture.delivery),
            None,
            "developer",
            Fresh::Nothing,
        ),
        (
            post.clone(),
            "/api/v1/invitations".into(),
            Some(json!({"email": "x@example.com", "role": "viewer"})),
            "admin",
            Fresh::Nothing,
        ),
        (
            delete.clone(),
            "/api/v1/invitations/{target}".into(),
            None,
            "admin",
            Fresh::Invitation,
        ),
        (
            patch.clone(),
            format!("/api/v1/members/{developer_id}"),
            Some(json!({"role": "viewer"})),
            "admin",
            Fresh::Nothing,
        ),
        (
            patch.clone(),
            format!("/api/v1/members/{developer_id}"),
            Some(json!({"role": "developer"})),
            "admin",
            Fresh::Nothing,
        ),
        (
            delete.clone(),
            "/api/v1/members/{target}".into(),
            None,
            "admin",
            Fresh::Member,
        ),
        (
            post.clone(),
            "/api/v1/api-keys".into(),
            Some(json!({"name": "k", "role": "viewer"})),
            "admin",
            Fresh::Nothing,
        ),
        (
            delete.clone(),
            "/api/v1/api-keys/{target}".into(),
            None,
            "admin",
            Fresh::Key,
        ),
        (
            Method::GET,
            "/api/v1/audit-log".into(),
            None,
            "admin",
            Fresh::Nothing,
        ),
        (
            post.clone(),
            "/api/v1/invitations".into(),
            Some(json!({"email": "o@example.com", "role": "owner"})),
            "owner",
            Fresh::Nothing,
        ),
        (
            patch.clone(),
            format!("/api/v1/members/{developer_id}"),
            Some(json!({"role": "owner"})),
            "owner",
            Fresh::Nothing,
        ),
        (
            patch.clone(),
            format!("/api/v1/members/{developer_id}"),
            Some(json!({"role": "developer"})),
            // Back from owner (an owner's to do), or left as it was (an admin may).
            "admin",
            Fresh::Nothing,
        ),
        (
            delete.clone(),
            format!("/api/v1/members/{owner_id}"),
            None,
            "never",
            Fresh::Nothing,
        ),
        (
            post.clone(),
            "/api/v1/notification-channels".into(),
            Some(json!({"kind": "slack", "url": "https://hooks.slack.com/services/T0/B0/x"})),
            "developer",
            Fresh::Nothing,
        ),
        (
            patch.clone(),
            channel.clone(),
            Some(json!({"name": "renamed"})),
            "developer",
            Fresh::Nothing,
        ),
        (
            post.clone(),
            format!("{channel}/test"),
            None,
            "developer",
            Fresh::Nothing,
        ),
        (
            delete.clone(),
            "/api/v1/notification-channels/{target}".into(),
            None,
            "developer",
            Fresh::Channel,
        ),
        (
            patch.clone(),
            issue.clone(),
            Some(json!({"state": "resolved"})),
            "developer",
            Fresh::Nothing,
        ),
    ];
    let rank = |role: &str| {
        ["viewer", "developer", "admin", "owner", "never"]
            .iter()
            .position(|r| *r == role)
            .unwrap()
    };
    let mut made = 0;
    for role in ["viewer", "developer", "admin", "owner"] {
        let key = key_of(&owner, role).await;
        for (method, path, body, least, consumes) in &actions {
            made += 1;
            let path = path.replace("{target}", &fresh(&app, &sink, *consumes, made).await);
            let before = audit(&app, "?limit=1").await;
            let attempts = attempts_of(&app, &fixture.event).await;
            let response = call(&app, &key, method.clone(), &path, body.clone()).await;
            if rank(role) >= rank(least) {
                assert!(
                    response.status().is_success(),
                    "{role} may {method} {path}: {}",
                    response.status()
                );
                if path.ends_with("/replay") {
                    // The next replay waits for this one's attempt (a bulk replay is made in
                    // the background, after its answer).
                    delivered_again(&app, &fixture.event, attempts).await;
                }
            } else {
                // The last owner may not be removed, even by an owner: 409.
                let expected = if *least == "never" && role == "owner" {
                    409
                } else {
                    403
                };
                assert_eq!(
                    response.status(),
                    expected,
                    "{role} may not {method} {path}"
                );
                // Nothing was recorded, so nothing changed.
                assert_eq!(
                    audit(&app, "?limit=1").await,
                    before,
                    "{role} {method} {path}"
                );
            }
        }
        // A viewer key reads, without the signing secret; any other sees it.
        let read = call(&app, &key, Method::GET, &subscription, None).await;
        assert_eq!(read.status(), 200);
        let read: Value = read.json().await.unwrap();
        assert_eq!(
            read["signing_secret"].is_null(),
            role == "viewer",
            "{role}: {read}"
        );
        assert_eq!(
            read["ingest_url"].is_null(),
            role == "viewer",
            "{role}: {read}"
        );
        let source_read: Value = call(&app, &key, Method::GET, &source, None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(source_read["ingest_url"].is_null(), role == "viewer");
        let channel_read: Value = call(&app, &key, Method::GET, &channel, None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(
            channel_read["signing_secret"].is_null(),
            role == "viewer",
            "a webhook channel's secret is a secret: {channel_read}"
        );
        assert_eq!(
            channel_read["url"].is_null(),
            role == "viewer",
            "so is its URL: whoever has it can post there"
        );
        let issue_read = call(&app, &key, Method::GET, &issue, None).await;
        assert_eq!(issue_read.status(), 200, "every role reads issues");
    }
    // The secret never reached the log, whatever was revealed and rotated.
    let lines = audit(&app, "?limit=200").await;
    assert!(
        !lines
            .iter()
            .any(|line| line.to_string().contains(&fixture.secret))
    );
    assert!(!lines.iter().any(|line| line.to_string().contains("whsec_")));
    // The key list names who made each key.
    let keys = owner.page("/api-keys").await;
    assert!(keys.contains(&format!("by {OWNER_EMAIL}")), "{keys}");
    sink.stop().await;
    app.shutdown().await;
}

/// A dashboard action: its path, its form's fields, and the least role that may take it.
type FormAction = (String, Vec<(&'static str, String)>, &'static str);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_is_held_to_its_actions_on_the_dashboard_with_a_403_page() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let fixture = fixture(&app, &sink).await;
    let viewer = join_as(&app, "viewer@example.com", "viewer").await;
    let developer = join_as(&app, "dev@example.com", "developer").await;
    let admin = join_as(&app, "admin@example.com", "admin").await;
    let viewer_id = member_id(&app, "viewer@example.com").await;
    let admin_id = member_id(&app, "admin@example.com").await;
    let owner_id = member_id(&app, OWNER_EMAIL).await;
    let key_id = fresh(&app, &sink, Fresh::Key, 0).await;
    let invitation_id = fresh(&app, &sink, Fresh::Invitation, 0).await;
    let issue = open_issue(&app, &fixture.source).await;
    let channel = fresh(&app, &sink, Fresh::Channel, 0).await;
    let subscription = format!("/subscriptions/{}", fixture.subscription);
    // (path, form, least role)
    let actions: Vec<FormAction> = vec![
        (
            "/sources".into(),
            vec![("name", "n".into()), ("provider_kind", "none".into())],
            "developer",
        ),
        (format!("{subscription}/pause"), vec![], "developer"),
        (format!("{subscription}/resume"), vec![], "developer"),
        (format!("{subscription}/rotate-secret"), vec![], "developer"),
        (format!("{subscription}/secret"), vec![], "developer"),
        (
            format!("/events/{}/replay", fixture.event),
            vec![],
            "developer",
        ),
        (
            format!("/deliveries/{}/replay", fixture.delivery),
            vec![],
            "developer",
        ),
        (
            format!("/deliveries/{}/retry", fixture.delivery),
            vec![],
            "developer",
        ),
        (
            "/members/invite".into(),
            vec![("email", "x@example.com".into()), ("role", "viewer".into())],
            "admin",
        ),
        (
            format!("/members/{viewer_id}/role"),
            vec![("role", "viewer".into())],
            "admin",
        ),
        (
            "/api-keys".into(),
            vec![("name", "k".into()), ("role", "viewer".into())],
            "admin",
        ),
        (
            format!("/members/{owner_id}/role"),
            vec![("role", "admin".into())],
            "owner",
        ),
        ("/workspace/delete".into(), vec![], "owner"),
        (
            "/subscriptions".into(),
            vec![
                ("name", "n".into()),
                ("target_url", sink.url.clone()),
                ("provider_kind", "none".into()),
            ],
            "developer",
        ),
        (
            format!("{subscription}/edit"),
            vec![
                ("name", "n".into()),
                ("target_url", sink.url.clone()),
                ("provider_kind", "none".into()),
            ],
            "developer",
        ),
        (format!("{subscription}/test-event"), vec![], "developer"),
        (format!("{subscription}/delete"), vec![], "developer"),
        (
            format!("/sources/{}", fixture.source),
            vec![("name", "n".into()), ("provider_kind", "none".into())],
            "developer",
        ),
        (
            format!("/sources/{}/delete", fixture.source),
            vec![],
            "developer",
        ),
        (
            "/events/replay".into(),
            vec![("all", "1".into())],
            "developer",
        ),
        (format!("/api-keys/{key_id}/revoke"), vec![], "admin"),
        (format!("/members/{admin_id}/remove"), vec![], "admin"),
        (
            format!("/invitations/{invitation_id}/revoke"),
            vec![],
            "admin",
        ),
        (
            "/workspace/rename".into(),
            vec![("name", "renamed".into())],
            "admin",
        ),
        (format!("/members/{owner_id}/remove"), vec![], "owner"),
        (format!("/issues/{issue}/acknowledge"), vec![], "developer"),
        (format!("/issues/{issue}/resolve"), vec![], "developer"),
        (format!("/issues/{issue}/reenable"), vec![], "developer"),
        (format!("/issues/{issue}/replay"), vec![], "developer"),
        (
            "/notifications".into(),
            vec![("kind", "webhook".into()), ("target", sink.url.clone())],
            "developer",
        ),
        (
            format!("/notifications/{channel}"),
            vec![("target", sink.url.clone()), ("name", "renamed".into())],
            "developer",
        ),
        (
            format!("/notifications/{channel}/test"),
            vec![],
            "developer",
        ),
        (
            format!("/notifications/{channel}/delete"),
            vec![],
            "developer",
        ),
    ];
    let members = [
        ("viewer", &viewer),
        ("developer", &developer),
        ("admin", &admin),
    ];
    let rank = |role: &str| {
        ["viewer", "developer", "admin", "owner"]
            .iter()
            .position(|r| *r == role)
            .unwrap()
    };
    for (role, dashboard) in members {
        for (path, form, least) in &actions {
            if rank(role) >= rank(least) {
                continue;
            }
            let before = audit(&app, "?limit=1").await;
            let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let response = dashboard.post(path, &fields).await;
            assert_eq!(response.status(), 403, "{role} may not POST {path}");
            let page = response.text().await.unwrap();
            assert!(page.contains("403"), "{page}");
            assert_eq!(
                audit(&app, "?limit=1").await,
                before,
                "{role} POST {path} changed nothing"
            );
        }
        // Pages an admin alone sees answer 403 too.
        let keys = dashboard.get("/audit-log").await;
        assert_eq!(
            keys.status(),
            if rank(role) >= rank("admin") {
                200
            } else {
                403
            }
        );
    }
    // What a developer may do, they do.
    let revealed = developer.post(&format!("{subscription}/secret"), &[]).await;
    assert_eq!(revealed.status(), 200);
    assert!(revealed.text().await.unwrap().contains(&fixture.secret));
    assert!(
        actions_in(&audit(&app, "?limit=1").await)
            .contains(&"subscription.secret_revealed".to_owned())
    );
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_keeps_an_owner_and_only_an_owner_makes_or_unmakes_one() {
    let app = spawn_app().await;
    let owner = app.owner_dashboard().await;
    let owner_id = member_id(&app, OWNER_EMAIL).await;
    // The only owner may not step down nor leave.
    let owner_key = key_of(&owner, "owner").await;
    let demoted = call(
        &app,
        &owner_key,
        Method::PATCH,
        &format!("/api/v1/members/{owner_id}"),
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(demoted.status(), 409);
    let left = call(
        &app,
        &owner_key,
        Method::DELETE,
        &format!("/api/v1/members/{owner_id}"),
        None,
    )
    .await;
    assert_eq!(left.status(), 409);
    // An admin key may not touch the owner.
    let admin_key = key_of(&owner, "admin").await;
    let refused = call(
        &app,
        &admin_key,
        Method::DELETE,
        &format!("/api/v1/members/{owner_id}"),
        None,
    )
    .await;
    assert_eq!(refused.status(), 403);
    // With a second owner, the first may step down.
    // An admin key may not invite an owner; an owner's may.
    let refused = call(
        &app,
        &admin_key,
        Method::POST,
        "/api/v1/invitations",
        Some(json!({"email": "second@example.com", "role": "owner"})),
    )
    .await;
    assert_eq!(refused.status(), 403);
    // Nor make a key above its own role.
    let refused = call(
        &app,
        &admin_key,
        Method::POST,
        "/api/v1/api-keys",
        Some(json!({"name": "too strong", "role": "owner"})),
    )
    .await;
    assert_eq!(refused.status(), 403);
    let link = invite_with(&app, &owner_key, "second@example.com", "owner").await;
    drop(join_through(&app, &link, "second@example.com").await);
    let demoted = call(
        &app,
        &owner_key,
        Method::PATCH,
        &format!("/api/v1/members/{owner_id}"),
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(demoted.status(), 200);
    let member: Value = demoted.json().await.unwrap();
    assert_eq!(member["role"], "admin");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_loses_the_workspace_at_once_and_so_does_their_live_page() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let fixture = fixture(&app, &sink).await;
    let member = join_as(&app, "gone@example.com", "developer").await;
    let event_page = format!("/events/{}", fixture.event);
    assert_eq!(member.get(&event_page).await.status(), 200);
    let mut socket = open_as(&member, "").await;
    let removed = call(
        &app,
        &app.api_key,
        Method::DELETE,
        &format!(
            "/api/v1/members/{}",
            member_id(&app, "gone@example.com").await
        ),
        None,
    )
    .await;
    assert_eq!(removed.status(), 204);
    // Their page's feed ends at once with a policy close (the ping's own check is 10 s away).
    assert_eq!(
        closed(&mut socket, Duration::from_secs(5)).await,
        Some(1008)
    );
    // Their session belongs to no workspace now: every page sends them to the workspaces page,
    // and what they saw is gone.
    let page = member.get(&event_page).await;
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/workspaces");
    let actions = actions_in(&audit(&app, "?object_type=member").await);
    assert!(
        actions.contains(&"member.removed".to_owned()),
        "{actions:?}"
    );
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_in_the_audit_log_with_who_what_which_and_where_from() {
    let app = spawn_app().await;
    let sink = Sink::start(Script::Ok).await;
    let fixture = fixture(&app, &sink).await;
    let owner = app.owner_dashboard().await;
    let key = app.api_key.clone();
    let subscription = format!("/api/v1/subscriptions/{}", fixture.subscription);
    let ok = |response: reqwest::Response| {
        assert!(response.status().is_success(), "{}", response.status());
    };
    ok(call(&app, &key, Method::GET, &subscription, None).await);
    ok(call(
        &app,
        &key,
        Method::PATCH,
        &subscription,
        Some(json!({"name": "renamed"})),
    )
    .await);
    ok(call(
        &app,
        &key,
        Method::PATCH,
        &subscription,
        Some(json!({"is_active": false})),
    )
    .await);
    ok(call(
        &app,
        &key,
        Method::PATCH,
        &subscription,
        Some(json!({"is_active": true})),
    )
    .await);
    ok(call(
        &app,
        &key,
        Method::POST,
        &format!("{subscription}/rotate-secret"),
        None,
    )
    .await);
    for replay in [
        format!("{subscription}/replay"),
        format!("/api/v1/events/{}/replay", fixture.event),
    ] {
        let attempts = attempts_of(&app, &fixture.event).await;
        ok(call(
            &app,
            &key,
            Method::POST,
            &replay,
            Some(json!({"status": "completed"})).filter(|_| replay.contains("subscriptions")),
        )
        .await);
        delivered_again(&app, &fixture.event, attempts).await;
    }
    ok(call(
        &app,
        &key,
        Method::POST,
        &format!("/api/v1/deliveries/{}/replay", fixture.delivery),
        None,
    )
    .await);
    let source: Value = call(
        &app,
        &key,
        Method::POST,
        "/api/v1/sources",
        Some(json!({"name": "audited"})),
    )
    .await
    .json()
    .await
    .unwrap();
    let source_path = format!("/api/v1/sources/{}", source["id"].as_str().unwrap());
    ok(call(
        &app,
        &key,
        Method::PATCH,
        &source_path,
        Some(json!({"name": "audited again"})),
    )
    .await);
    ok(call(&app, &key, Method::DELETE, &source_path, None).await);
    let invited: Value = call(
        &app,
        &key,
        Method::POST,
        "/api/v1/invitations",
        Some(json!({"email": "later@example.com", "role": "viewer"})),
    )
    .await
    .json()
    .await
    .unwrap();
    ok(call(
        &app,
        &key,
        Method::DELETE,
        &format!("/api/v1/invitations/{}", invited["id"].as_str().unwrap()),
        None,
    )
    .await);
    drop(join_as(&app, "member@example.com", "viewer").await);
    let member = member_id(&app, "member@example.com").await;
    ok(call(
        &app,
        &key,
        Method::PATCH,
        &format!("/api/v1/members/{member}"),
        Some(json!({"role": "developer"})),
    )
    .await);
    ok(call(
        &app,
        &key,
        Method::DELETE,
        &format!("/api/v1/members/{member}"),
        None,
    )
    .await);
    let made: Value = call(
        &app,
        &key,
        Method::POST,
        "/api/v1/api-keys",
        Some(json!({"name": "ci", "role": "viewer"})),
    )
    .await
    .json()
    .await
    .unwrap();
    let made_key = made["key"].as_str().unwrap().to_owned();
    ok(call(
        &app,
        &key,
        Method::DELETE,
        &format!("/api/v1/api-keys/{}", made["id"].as_str().unwrap()),
        None,
    )
    .await);
    assert_eq!(
        owner
            .post(
                &format!("/subscriptions/{}/secret", fixture.subscription),
                &[]
            )
            .await
            .status(),
        200
    );
    let sent = owner
        .post(
            &format!("/subscriptions/{}/test-event", fixture.subscription),
            &[],
        )
        .await;
    assert_eq!(sent.status(), 303);
    let failed = app
        .api
        .post(format!("{}/login", app.address))
        .form(&[
            ("email", OWNER_EMAIL),
            ("password", "not the password at all"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);
    ok(call(&app, &key, Method::DELETE, &subscription, None).await);

    let lines = audit(&app, "?limit=200").await;
    let done = actions_in(&lines);
    for expected in [
        "subscription.created",
        "subscription.secret_revealed",
        "subscription.updated",
        "subscription.paused",
        "subscription.resumed",
        "subscription.secret_rotated",
        "event.bulk_replayed",
        "event.replayed",
        "delivery.replayed",
        "source.created",
        "source.updated",
        "source.deleted",
        "member.invited",
        "invitation.revoked",
        "member.joined",
        "member.role_changed",
        "member.removed",
        "api_key.created",
        "api_key.revoked",
        "user.signed_in",
        "user.sign_in_failed",
        "subscription.deleted",
        "subscription.test_event_sent",
    ] {
        assert!(
            done.contains(&expected.to_owned()),
            "{expected} missing from {done:?}"
        );
    }
    // Who, what, which and from where: the rename was the owner's key, from loopback.
    let renamed = lines
        .iter()
        .find(|line| line["action"] == "subscription.updated")
        .unwrap();
    assert_eq!(renamed["actor"], "test");
    assert_eq!(renamed["actor_type"], "key");
    assert_eq!(renamed["object_type"], "subscription");
    assert_eq!(renamed["object_id"], fixture.subscription.as_str());
    assert_eq!(renamed["ip"], "127.0.0.1");
    // Filters: by object, and by actor.
    let about = audit(&app, &format!("?object_id={}", fixture.subscription)).await;
    assert!(
        about
            .iter()
            .all(|line| line["object_id"] == fixture.subscription.as_str())
    );
    assert!(about.len() >= 8);
    let by_owner = audit(&app, &format!("?actor={OWNER_EMAIL}")).await;
    assert!(!by_owner.is_empty());
    assert!(by_owner.iter().all(|line| line["actor"] == OWNER_EMAIL));
    // No secret appears: no signing secret and no key.
    for line in &lines {
        let text = line.to_string();
        assert!(
            !text.contains("whsec_") && !text.contains(&made_key),
            "{text}"
        );
    }
    // The log is append-only.
    {
        use diesel_async::RunQueryDsl;
        let mut conn = app.db().await;
        let changed = diesel::sql_query("UPDATE audit_log SET actor = 'someone else'")
            .execute(&mut conn)
            .await;
        assert!(changed.is_err());
    }
    sink.stop().await;
    app.shutdown().await;
}

/// The previous version's last migration: the database the migration test starts from.
const BEFORE_TEAMS: &str = "20261203000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_migration_gives_each_user_a_workspace_of_their_own_and_nothing_changes_for_them() {
    use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
    let resources =
        crate::helpers::TestResources::new(spenza::config::DEFAULT_RETRY_SCHEDULE).await;
    let url = resources.database.url.clone();
    crate::helpers::migrate_up_to(&url, BEFORE_TEAMS);
    let sink = Sink::start(Script::Ok).await;
    // The previous version's rows: two users, each with a source, a subscription, an API key
    // and a live session.
    let key = spenza::domain::ApiKey::generate();
    let other_key = spenza::domain::ApiKey::generate();
    let session = spenza::auth::SessionToken::generate();
    let (user, other, source, subscription) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    let other_source = uuid::Uuid::new_v4();
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    conn.batch_execute(&format!(
        "INSERT INTO users (id, email, password_hash) VALUES \
             ('{user}', '{OWNER_EMAIL}', 'x'), ('{other}', 'other@example.com', 'x'); \
         INSERT INTO sources (id, user_id, name, ingest_token) VALUES \
             ('{source}', '{user}', 'stripe', '{token}'), \
             ('{other_source}', '{other}', 'theirs', '{other_token}'); \
         INSERT INTO subscriptions (id, user_id, source_id, name, target_url, signing_secret) \
             VALUES ('{subscription}', '{user}', '{source}', 'billing', '{target}', \
             'whsec_bWlncmF0ZWQtc2VjcmV0LWZvci10ZXN0'); \
         INSERT INTO api_keys (id, user_id, name, prefix, key_hash) VALUES \
             ('{k1}', '{user}', 'ci', 'spz_x', '\\x{hash}'), \
             ('{k2}', '{other}', 'theirs', 'spz_y', '\\x{other_hash}'); \
         INSERT INTO sessions (id, user_id, token_hash, expires_at) VALUES \
             ('{s1}', '{user}', '\\x{session_hash}', now() + interval '1 day');",
        token = "t".repeat(43),
        other_token = "o".repeat(43),
        target = sink.url,
        k1 = uuid::Uuid::new_v4(),
        k2 = uuid::Uuid::new_v4(),
        s1 = uuid::Uuid::new_v4(),
        hash = hex::encode(key.hash()),
        other_hash = hex::encode(other_key.hash()),
        session_hash = hex::encode(session.hash()),
    ))
    .await
    .unwrap();
    drop(conn);

    let mut app = crate::helpers::spawn_app_in(resources, |_| {}).await;
    app.api_key = key.expose().to_owned();
    // The key works as before, on what its user owned, secret included: it became an admin key
    // of the user's own workspace.
    let subscriptions = app.get_json("/api/v1/subscriptions").await;
    let data = subscriptions["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{subscriptions}");
    assert_eq!(data[0]["id"], subscription.to_string());
    assert_eq!(
        data[0]["signing_secret"],
        "whsec_bWlncmF0ZWQtc2VjcmV0LWZvci10ZXN0"
    );
    let ingest_url = data[0]["ingest_url"].as_str().unwrap().to_owned();
    assert!(ingest_url.ends_with(&"t".repeat(43)));
    // The user is the only member, and its owner; the other user's things stay theirs.
    let members = app.get_json("/api/v1/members").await;
    assert_eq!(members["data"].as_array().unwrap().len(), 1);
    assert_eq!(members["data"][0]["user_id"], user.to_string());
    assert_eq!(members["data"][0]["role"], "owner");
    let sources = app.get_json("/api/v1/sources").await;
    assert_eq!(sources["data"].as_array().unwrap().len(), 1, "{sources}");
    let theirs = call(
        &app,
        other_key.expose(),
        Method::GET,
        &format!("/api/v1/subscriptions/{subscription}"),
        None,
    )
    .await;
    assert_eq!(theirs.status(), 404);
    // The old ingest URL still delivers.
    let event = app.accept(&ingest_url, r#"{"after": "migration"}"#).await;
    app.wait_for_status(&event, "completed").await;
    // The session still works, in the user's workspace, as its owner.
    let page = app
        .api
        .get(format!("{}/subscriptions", app.address))
        .header("cookie", format!("spenza_session={}", session.expose()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(
        page.contains("billing") && page.contains("data-role=\"owner\""),
        "{page}"
    );
    assert!(page.contains(&format!("data-workspace-id=\"{user}\"")));
    sink.stop().await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_creates_switches_renames_and_deletes_workspaces_from_the_navigation() {
    let app = spawn_app().await;
    let owner = app.owner_dashboard().await;
    let personal = member_id(&app, OWNER_EMAIL).await;
    let badge = |page: &str| {
        let marker = "class=\"workspace-name\">";
        let start = page.find(marker).expect("the header names the workspace") + marker.len();
        page[start..].split('<').next().unwrap().to_owned()
    };
    assert_eq!(badge(&owner.page("/sources").await), OWNER_EMAIL);
    // A new workspace: the session switches to it, and it is empty.
    let created = owner.post("/workspaces", &[("name", "Payments")]).await;
    assert_eq!(created.status(), 303);
    let sources = owner.page("/sources").await;
    assert_eq!(badge(&sources), "Payments");
    assert!(sources.contains("Give each provider an address"), "empty");
    // A page left open from another workspace cannot act in this one.
    let stale = app
        .api
        .post(format!("{}/sources", app.address))
        .header("cookie", format!("spenza_session={}", owner.session))
        .header("X-CSRF-Token", owner.csrf_token().await)
        .header("X-Spenza-Workspace", personal.as_str())
        .header("HX-Request", "true")
        .form(&[("name", "n"), ("provider_kind", "none")])
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 409);
    // A link from such a page just shows the page of the workspace the session is in.
    let followed = app
        .api
        .get(format!("{}/sources", app.address))
        .header("cookie", format!("spenza_session={}", owner.session))
        .header("X-Spenza-Workspace", personal.as_str())
        .header("HX-Request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(followed.status(), 200);
    assert_eq!(badge(&followed.text().await.unwrap()), "Payments");
    // Back to the first, from the workspaces page.
    let page = owner.page("/workspaces").await;
    assert_eq!(page.matches("data-action=\"switch\"").count(), 1);
    let switched = owner
        .post(&format!("/workspaces/{personal}/switch"), &[])
        .await;
    assert_eq!(switched.status(), 303);
    assert_eq!(badge(&owner.page("/sources").await), OWNER_EMAIL);
    // Someone else's workspace is no switch of theirs.
    let other = app.another_user("other@example.com").await;
    assert!(!other.is_empty());
    let theirs = user_id_of(&app, "other@example.com").await;
    let refused = owner
        .post(&format!("/workspaces/{theirs}/switch"), &[])
        .await;
    assert_eq!(refused.status(), 404);
    // Rename, then delete, the new one.
    let page = owner.page("/workspaces").await;
    let payments = page
        .split("data-workspace-id=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap().to_owned())
        .find(|id| *id != personal)
        .expect("the new workspace is listed");
    owner
        .post(&format!("/workspaces/{payments}/switch"), &[])
        .await;
    assert_eq!(
        owner
            .post("/workspace/rename", &[("name", "Billing")])
            .await
            .status(),
        303
    );
    assert_eq!(badge(&owner.page("/sources").await), "Billing");
    assert_eq!(owner.post("/workspace/delete", &[]).await.status(), 303);
    // Its audit log outlives it, with who deleted it.
    {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use spenza::db::schema::audit_log;
        let deleted: Vec<(String, Option<String>)> = audit_log::table
            .filter(audit_log::action.eq("workspace.deleted"))
            .select((audit_log::actor, audit_log::detail))
            .load(&mut app.db().await)
            .await
            .unwrap();
        assert_eq!(
            deleted,
            [(OWNER_EMAIL.to_owned(), Some("Billing".to_owned()))]
        );
    }
    let page = owner.page("/workspaces").await;
    assert!(!page.contains("Billing"), "{page}");
    assert_eq!(badge(&owner.page("/sources").await), OWNER_EMAIL);
    app.shutdown().await;
}

/// The id of a user (their own workspace has the same id), from the database.
async fn user_id_of(app: &TestApp, email: &str) -> String {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use spenza::db::schema::users;
    let id: uuid::Uuid = users::table
        .filter(users::email.eq(email))
        .select(users::id)
        .first(&mut app.db().await)
        .await
        .unwrap();
    id.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lines_are_kept_for_the_audit_retention_then_removed() {
    let app = spawn_app_with(|settings| settings.audit_retention = Duration::from_secs(2)).await;
    let made = call(
        &app,
        &app.api_key,
        Method::POST,
        "/api/v1/sources",
        Some(json!({"name": "short-lived line"})),
    )
    .await;
    assert_eq!(made.status(), 201);
    let id = made.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let about = format!("?object_id={id}");
    assert_eq!(actions_in(&audit(&app, &about).await), ["source.created"]);
    // Filtered by time: nothing of it before it was made.
    let until = format!("{about}&until=2000-01-01T00:00:00Z");
    assert!(audit(&app, &until).await.is_empty());
    wait_until(
        Duration::from_secs(15),
        "the line to be removed",
        || async {
            let left = audit(&app, &about).await;
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            }
        },
    )
    .await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_workspaces_members_invitations_keys_issues_channels_and_log_are_404_or_absent() {
    let app = spawn_app().await;
    let owner = app.owner_dashboard().await;
    let source: Value = call(
        &app,
        &app.api_key,
        Method::POST,
        "/api/v1/sources",
        Some(json!({"name": "mine"})),
    )
    .await
    .json()
    .await
    .unwrap();
    let issue = open_issue(&app, source["id"].as_str().unwrap()).await;
    let sink = Sink::start(Script::Ok).await;
    let channel = fresh(&app, &sink, Fresh::Channel, 0).await;
    let invited: Value = call(
        &app,
        &app.api_key,
        Method::POST,
        "/api/v1/invitations",
        Some(json!({"email": "mine@example.com", "role": "viewer"})),
    )
    .await
    .json()
    .await
    .unwrap();
    let owner_id = member_id(&app, OWNER_EMAIL).await;
    let key_page = owner.page("/api-keys").await;
    let marker = "data-api-key-id=\"";
    let start = key_page.find(marker).expect("the owner's key is listed") + marker.len();
    let key_id = key_page[start..].split('"').next().unwrap().to_owned();
    // An admin of another workspace.
    let stranger = app.another_user("stranger@example.com").await;
    for (method, path, body) in [
        (
            Method::DELETE,
            format!("/api/v1/invitations/{}", invited["id"].as_str().unwrap()),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/v1/members/{owner_id}"),
            Some(json!({"role": "viewer"})),
        ),
        (Method::DELETE, format!("/api/v1/members/{owner_id}"), None),
        (Method::DELETE, format!("/api/v1/api-keys/{key_id}"), None),
        (Method::GET, format!("/api/v1/issues/{issue}"), None),
        (
            Method::PATCH,
            format!("/api/v1/issues/{issue}"),
            Some(json!({"state": "resolved"})),
        ),
        (
            Method::GET,
            format!("/api/v1/notification-channels/{channel}"),
            None,
        ),
        (
            Method::PATCH,
            format!("/api/v1/notification-channels/{channel}"),
            Some(json!({"name": "theirs"})),
        ),
        (
            Method::POST,
            format!("/api/v1/notification-channels/{channel}/test"),
            None,
        ),
        (
            Method::DELETE,
            format!("/api/v1/notification-channels/{channel}"),
            None,
        ),
    ] {
        let response = call(&app, &stranger, method.clone(), &path, body).await;
        assert_eq!(response.status(), 404, "{method} {path}");
    }
    for list in ["/api/v1/issues", "/api/v1/notification-channels"] {
        let listed: Value = call(&app, &stranger, Method::GET, list, None)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(listed["items"], json!([]), "{list}");
    }
    assert!(
        sink.received().is_empty(),
        "no test message went to the owner's channel"
    );
    let members: Value = call(&app, &stranger, Method::GET, "/api/v1/members", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(members["data"].as_array().unwrap().len(), 1);
    assert_eq!(members["data"][0]["email"], "stranger@example.com");
    let log: Value = call(&app, &stranger, Method::GET, "/api/v1/audit-log", None)
        .await
        .json()
        .await
        .unwrap();
    let actors: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["actor"].as_str().unwrap())
        .collect();
    assert!(
        actors
            .iter()
            .all(|actor| *actor != OWNER_EMAIL && *actor != "test"),
        "{actors:?}"
    );
    // Nothing of the owner's changed.
    assert_eq!(
        app.get_json("/api/v1/members").await["data"][0]["role"],
        "owner"
    );
    sink.stop().await;
    app.shutdown().await;
}
