use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use spenza::config::{ApiKeysCommand, Cli, Command, UsersCommand};
use spenza::startup::Application;
use spenza::{admin, db, shutdown, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(settings) => {
            let log = telemetry::logger(settings.log_format, settings.log_level);
            let app = Application::build(*settings, log.clone()).await?;
            tokio::spawn(shutdown::cancel_on_signal(app.shutdown_token(), log));
            app.run_until_stopped().await
        }
        Command::Migrate(database) => {
            let applied = db::migrations::run(database.url.expose()).await?;
            println!("applied {applied} migration(s)");
            Ok(())
        }
        Command::Users(UsersCommand::Create {
            email,
            password,
            database,
        }) => {
            let id = admin::create_user(&database, &email, &password).await?;
            println!("created user {id}");
            Ok(())
        }
        Command::ApiKeys(ApiKeysCommand::Create {
            email,
            name,
            database,
        }) => {
            let key = admin::create_api_key(&database, &email, &name).await?;
            println!("created API key {name:?} for {email}; it is shown once:");
            println!("{}", key.expose());
            Ok(())
        }
        Command::Listen(args) => spenza::listen::cli::run(args).await,
        Command::Healthcheck(settings) => {
            let url = settings.url();
            let answer = reqwest::Client::builder()
                .timeout(settings.timeout)
                .build()?
                .get(&url)
                .send()
                .await
                .with_context(|| format!("asking {url}"))?;
            anyhow::ensure!(
                answer.status().is_success(),
                "{url} answered {}",
                answer.status()
            );
            println!("{url}: {}", answer.status());
            Ok(())
        }
    }
}
