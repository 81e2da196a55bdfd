//! The bootstrap commands, run as the built binary.

use std::process::Command;

use crate::helpers::{create_database, spawn_app};

fn spenza(database_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_spenza"))
        .args(args)
        .env("SPENZA_DATABASE_URL", database_url)
        .output()
        .expect("spenza runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_create_then_api_keys_create_prints_a_working_key_on_its_last_line() {
    let app = spawn_app().await;

    let user = spenza(
        &app.database_url,
        &[
            "users",
            "create",
            "--email",
            "Grace@Example.com",
            "--password",
            "a long enough password",
        ],
    );
    assert!(
        user.status.success(),
        "{}",
        String::from_utf8_lossy(&user.stderr)
    );
    let key = spenza(
        &app.database_url,
        &[
            "api-keys",
            "create",
            "--email",
            "grace@example.com",
            "--name",
            "ci",
        ],
    );
    assert!(
        key.status.success(),
        "{}",
        String::from_utf8_lossy(&key.stderr)
    );
    let stdout = String::from_utf8(key.stdout).unwrap();
    let printed = stdout.lines().last().expect("a last line");
    assert!(printed.starts_with("spz_"), "{stdout}");

    let response = app
        .api
        .get(format!("{}/api/v1/subscriptions", app.address))
        .bearer_auth(printed)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let again = spenza(
        &app.database_url,
        &[
            "users",
            "create",
            "--email",
            "grace@EXAMPLE.com",
            "--password",
            "a long enough password",
        ],
    );
    assert!(
        !again.status.success(),
        "a second user with the same email (any case) is refused"
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_the_schema_to_an_empty_database_and_is_idempotent() {
    let database = create_database().await;
    let url = &database.url;
    let first = spenza(url, &["migrate"]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("the migrations folder")
        .filter(|entry| entry.as_ref().is_ok_and(|entry| entry.path().is_dir()))
        .count();
    assert_eq!(
        String::from_utf8_lossy(&first.stdout).trim(),
        format!("applied {migrations} migration(s)")
    );
    let second = spenza(url, &["migrate"]);
    assert_eq!(
        String::from_utf8_lossy(&second.stdout).trim(),
        "applied 0 migration(s)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_exits_0_for_a_live_relay_and_1_when_none_answers() {
    let app = spawn_app().await;
    let healthcheck = |bind: &str| {
        Command::new(env!("CARGO_BIN_EXE_spenza"))
            .args(["healthcheck", "--timeout", "2s"])
            .env("SPENZA_BIND", bind)
            .output()
            .expect("spenza runs")
    };
    let port = app.address.rsplit(':').next().unwrap();
    let live = tokio::task::spawn_blocking({
        let bind = format!("0.0.0.0:{port}");
        move || healthcheck(&bind)
    })
    .await
    .unwrap();
    assert!(
        live.status.success(),
        "{}",
        String::from_utf8_lossy(&live.stderr)
    );
    app.shutdown().await;

    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = nobody.local_addr().unwrap().to_string();
    drop(nobody);
    let dead = tokio::task::spawn_blocking(move || healthcheck(&closed))
        .await
        .unwrap();
    assert_eq!(dead.status.code(), Some(1));
}
