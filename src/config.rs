//! Command line and settings: every flag has a `SPENZA_*` environment variable behind it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::ops::Deref;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use ipnet::IpNet;
use url::Url;

use crate::domain::{RetrySchedule, SecretUrl};

/// The first attempt, then retries after 30 s, 5 min, 30 min, 2 h and 8 h.
pub const DEFAULT_RETRY_SCHEDULE: &str = "30s,5m,30m,2h,8h";

/// The `spenza` command line.
#[derive(Debug, Parser)]
#[command(
    name = "spenza",
    version,
    about = "A webhook relay that never loses an event"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What `spenza` can be asked to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the relay: HTTP server, publisher, consumer and delivery pool.
    Serve(Box<Settings>),
    /// Apply pending database migrations and exit.
    Migrate(DatabaseSettings),
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage API keys.
    #[command(subcommand, name = "api-keys")]
    ApiKeys(ApiKeysCommand),
    /// Ask a relay running on this machine whether it is alive (its `/healthz`); exits 0 if it
    /// is. For a container's HEALTHCHECK, so the image needs no curl.
    Healthcheck(HealthcheckSettings),
    /// Forward a source's events to a local URL, as they arrive at the relay: for developing
    /// an endpoint on a machine the relay cannot reach.
    Listen(ListenArgs),
}

/// `spenza listen SOURCE --forward-to URL`
#[derive(Debug, Clone, Args)]
pub struct ListenArgs {
    /// The source whose events to receive: its id or its name.
    pub source: String,
    /// Where each event is sent on this machine, with the path it arrived with appended.
    #[arg(long = "forward-to", value_parser = parse_forward_to)]
    pub forward_to: url::Url,
    /// The relay's URL.
    #[arg(long, env = "SPENZA_URL")]
    pub url: url::Url,
    /// An API key of the workspace, of a developer or above.
    #[arg(long = "api-key", env = "SPENZA_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// Which of the source's events to receive, in the filter language of subscriptions
    /// (a JSON object); every event without it.
    #[arg(long)]
    pub filter: Option<String>,
    /// The listen subscription's name: a `listen` with the same name takes up where the last
    /// one left off. Default: this machine's hostname.
    #[arg(long)]
    pub name: Option<String>,
    /// Retry a failed local delivery on the subscription's schedule, as for an endpoint;
    /// without it, a failure is recorded once and the event goes to the graveyard.
    #[arg(long)]
    pub retry: bool,
    /// How each event is printed: a line of text, or a JSON object.
    #[arg(long, value_enum, default_value_t = ListenOutput::Text)]
    pub output: ListenOutput,
}

/// How `spenza listen` prints what it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListenOutput {
    Text,
    Json,
}

/// An `http` or `https` URL to forward to.
fn parse_forward_to(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|error| format!("{text:?} is not a URL: {error}"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!(
            "{other}: only http and https URLs can be forwarded to"
        )),
    }
}

/// Where `spenza healthcheck` finds the relay.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckSettings {
    /// Address the HTTP server listens on (port 0 picks a free port).
    #[arg(long, env = "SPENZA_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// How long the check waits for the answer.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

impl HealthcheckSettings {
    /// The URL of the relay's `/healthz`: a wildcard listen address is asked on loopback.
    pub fn url(&self) -> String {
        let mut address = self.bind;
        if address.ip().is_unspecified() {
            address.set_ip(match address {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        format!("http://{address}/healthz")
    }
}

/// `spenza users ...`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user who can sign in and own subscriptions.
    Create {
        /// The new user's email address.
        #[arg(long)]
        email: String,
        /// The new user's password, at least 12 characters; set it in the environment to keep
        /// it out of the shell's history.
        #[arg(long, env = "SPENZA_NEW_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[command(flatten)]
        database: DatabaseSettings,
    },
}

/// `spenza api-keys ...`
#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// Create an API key for a user; the key is printed once, alone on the last line.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        database: DatabaseSettings,
    },
}

/// A comma-separated list setting. Blanks around items are dropped, and so are empty items:
/// an empty string (`SPENZA_ALLOWED_TARGET_NETS=`) is the empty list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List<T>(Vec<T>);

impl<T> FromStr for List<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse()
                    .map_err(|error| format!("{item:?} in the list: {error}"))
            })
            .collect::<Result<_, _>>()
            .map(List)
    }
}

impl<T> Deref for List<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T> From<Vec<T>> for List<T> {
    fn from(items: Vec<T>) -> Self {
        List(items)
    }
}

/// Which parts of the relay a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// HTTP server, publisher and delivery workers.
    All,
    /// HTTP server (ingest, API, dashboard) and publisher only.
    Api,
    /// Delivery workers only.
    Worker,
}

impl Role {
    /// Whether this role serves HTTP.
    pub fn serves_http(self) -> bool {
        matches!(self, Role::All | Role::Api)
    }

    /// Whether this role consumes and delivers events.
    pub fn delivers(self) -> bool {
        matches!(self, Role::All | Role::Worker)
    }
}

/// Who may create an account from the sign-up page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignupPolicy {
    /// Only while no user exists, so a fresh install can be claimed from the browser.
    First,
    /// Anyone who reaches the page.
    Open,
    /// Nobody: an operator creates users with `spenza users create`.
    Closed,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines for a terminal.
    Term,
    /// One JSON object per line, for production log shipping.
    Json,
}

/// The least severe log lines written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Also one line per delivery attempt and per event stored.
    Debug,
    /// What an operator watches: start, stop, failed deliveries, refused requests.
    Info,
    /// Only what needs looking at.
    Warning,
    /// Only failures.
    Error,
}

/// The kind of the delivery queue and the wait queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueueKind {
    /// Replicated Raft queue: the durable default.
    Quorum,
    /// Classic single-node queue.
    Classic,
}

/// Where PostgreSQL is and how the pool treats it.
#[derive(Debug, Clone, Args)]
pub struct DatabaseSettings {
    /// PostgreSQL connection URL.
    #[arg(
        long = "database-url",
        env = "SPENZA_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/spenza",
        hide_env_values = true
    )]
    pub url: SecretUrl,
    /// Most database connections this process opens, in all (see "Sizing the pool").
    #[arg(
        long = "database-pool-size",
        env = "SPENZA_DATABASE_POOL_SIZE",
        default_value_t = 16
    )]
    pub pool_size: usize,
    /// Longest wait for a connection or a query before the caller gets an error (ingest: 503).
    #[arg(long = "database-timeout", env = "SPENZA_DATABASE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// How long a connection of the ingest and delivery pools keeps its statements' plans,
    /// made once for any values: after this it is replaced, and they are planned again for
    /// the tables as they have grown.
    #[arg(long = "database-replan-after", env = "SPENZA_DATABASE_REPLAN_AFTER", default_value = "5m", value_parser = humantime::parse_duration)]
    pub replan_after: Duration,
}

/// Everything `spenza serve` needs.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// RabbitMQ connection URL, or the URLs of a cluster's nodes, comma-separated: each
    /// connection, and each reconnection, takes the first that answers.
    #[arg(
        long = "amqp-url",
        env = "SPENZA_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: List<SecretUrl>,
    /// Prefix of every exchange and queue name, so several deployments can share a broker.
    #[arg(
        long = "amqp-prefix",
        env = "SPENZA_AMQP_PREFIX",
        default_value = "spenza"
    )]
    pub amqp_prefix: String,
    /// Kind of the delivery queue and of the wait queues.
    #[arg(long = "queue-kind", env = "SPENZA_QUEUE_KIND", value_enum, default_value_t = QueueKind::Quorum)]
    pub queue_kind: QueueKind,
    /// Address the HTTP server listens on (port 0 picks a free port).
    #[arg(long, env = "SPENZA_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Public base URL of this relay, used to print ingest URLs; without it, `http://` and the
    /// bound address.
    #[arg(long = "public-url", env = "SPENZA_PUBLIC_URL")]
    pub public_url: Option<Url>,
    /// Number of HTTP worker threads (defaults to the number of cores).
    #[arg(long = "http-workers", env = "SPENZA_HTTP_WORKERS")]
    pub http_workers: Option<usize>,
    /// Largest accepted ingest body, in bytes.
    #[arg(long = "max-body-bytes", env = "SPENZA_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Timeout of one delivery attempt.
    #[arg(long = "delivery-timeout", env = "SPENZA_DELIVERY_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    pub delivery_timeout: Duration,
    /// Deliveries in flight at once in this process (the consumer's prefetch).
    #[arg(
        long = "delivery-concurrency",
        env = "SPENZA_DELIVERY_CONCURRENCY",
        default_value_t = 128
    )]
    pub delivery_concurrency: u16,
    /// Attempts under way at once at any one subscription's endpoint in this process, so that a
    /// slow endpoint cannot take every delivery slot. A delivery over it waits up to a second
    /// for a place (not when the endpoint is slow), then a moment in a defer queue; it uses no
    /// attempt and no retry.
    #[arg(
        long = "subscription-concurrency",
        env = "SPENZA_SUBSCRIPTION_CONCURRENCY",
        default_value_t = 32,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub subscription_concurrency: u16,
    /// Delays before each retry of a failed delivery, comma-separated (one attempt plus one per
    /// delay; empty: no retries). Each delay has its own wait queue, named after it.
    #[arg(
        long = "retry-schedule",
        env = "SPENZA_RETRY_SCHEDULE",
        default_value = DEFAULT_RETRY_SCHEDULE
    )]
    pub retry_schedule: RetrySchedule,
    /// Consecutive failed attempts after which a subscription is disabled (circuit breaker).
    #[arg(long = "breaker-threshold", env = "SPENZA_BREAKER_THRESHOLD", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub breaker_threshold: u32,
    /// How often the reaper looks for events whose publish or retry went missing.
    #[arg(long = "reaper-interval", env = "SPENZA_REAPER_INTERVAL", default_value = "5s", value_parser = humantime::parse_duration)]
    pub reaper_interval: Duration,
    /// How long past its due time an event must be before the reaper publishes it again.
    #[arg(long = "reaper-grace", env = "SPENZA_REAPER_GRACE", default_value = "60s", value_parser = humantime::parse_duration)]
    pub reaper_grace: Duration,
    /// Most events the reaper claims at once.
    #[arg(
        long = "reaper-batch",
        env = "SPENZA_REAPER_BATCH",
        default_value_t = 500
    )]
    pub reaper_batch: u32,
    /// How long a rotated-out signing secret keeps signing deliveries beside the new one.
    #[arg(long = "secret-rotation-overlap", env = "SPENZA_SECRET_ROTATION_OVERLAP", default_value = "24h", value_parser = humantime::parse_duration)]
    pub secret_rotation_overlap: Duration,
    /// Internal address ranges deliveries may reach, comma-separated (e.g. `127.0.0.0/8` for
    /// local development); every other internal address is refused.
    #[arg(
        long = "allowed-target-nets",
        env = "SPENZA_ALLOWED_TARGET_NETS",
        default_value = ""
    )]
    pub allowed_target_nets: List<IpNet>,
    /// Publishes awaiting their broker confirm at once.
    #[arg(
        long = "publish-window",
        env = "SPENZA_PUBLISH_WINDOW",
        default_value_t = 256
    )]
    pub publish_window: usize,
    /// Who may create an account from the dashboard's sign-up page.
    #[arg(long, env = "SPENZA_SIGNUP", value_enum, default_value_t = SignupPolicy::First)]
    pub signup: SignupPolicy,
    /// A dashboard session unused for this long ends.
    #[arg(long = "session-idle", env = "SPENZA_SESSION_IDLE", default_value = "12h", value_parser = humantime::parse_duration)]
    pub session_idle: Duration,
    /// A dashboard session ends this long after log-in, however much it is used.
    #[arg(long = "session-lifetime", env = "SPENZA_SESSION_LIFETIME", default_value = "7d", value_parser = humantime::parse_duration)]
    pub session_lifetime: Duration,
    /// The SMTP server invitations and issue notifications are mailed through, as a URL with its credentials:
    /// `smtps://user:password@host:465` for TLS, `smtp://user:password@host:587` for STARTTLS as
    /// the server offers it, else plain (`?tls=required` insists on STARTTLS). Unset: nothing is
    /// mailed; invitation links are shown to copy all the same, and email channels cannot be
    /// added.
    #[arg(long = "smtp-url", env = "SPENZA_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<SecretUrl>,
    /// The sender of the mail the relay sends: an address, or a name with the address in angle
    /// brackets; needed with `SPENZA_SMTP_URL`.
    #[arg(long = "smtp-from", env = "SPENZA_SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// How often the relay looks for issues (a breaker that opened, deliveries in the
    /// graveyard, a source refusing requests, a subscription falling behind) and for issues
    /// whose condition cleared. One process looks at a time, whichever gets there first.
    #[arg(long = "issue-scan-interval", env = "SPENZA_ISSUE_SCAN_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub issue_scan_interval: Duration,
    /// Refused requests within `SPENZA_SOURCE_REFUSAL_WINDOW` that open a `source_rejecting`
    /// issue; it resolves once a whole window passes without one.
    #[arg(long = "source-refusal-threshold", env = "SPENZA_SOURCE_REFUSAL_THRESHOLD", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub source_refusal_threshold: u32,
    /// The window `SPENZA_SOURCE_REFUSAL_THRESHOLD` counts refusals in.
    #[arg(long = "source-refusal-window", env = "SPENZA_SOURCE_REFUSAL_WINDOW", default_value = "5m", value_parser = humantime::parse_duration)]
    pub source_refusal_window: Duration,
    /// How long a subscription's oldest undelivered event may wait before a
    /// `subscription_lagging` issue opens, unless the subscription sets its own.
    #[arg(long = "lag-threshold", env = "SPENZA_LAG_THRESHOLD", default_value = "15m", value_parser = humantime::parse_duration)]
    pub lag_threshold: Duration,
    /// The least time between two messages about one issue to one channel once it recurs: a
    /// reopening within it waits, and its message tells of every transition since the last.
    #[arg(long = "notification-quiet", env = "SPENZA_NOTIFICATION_QUIET", default_value = "1h", value_parser = humantime::parse_duration)]
    pub notification_quiet: Duration,
    /// How many `spenza listen` sessions one user (or one API key no user made) may have
    /// connected at once, on every replica together.
    #[arg(long = "listen-sessions", env = "SPENZA_LISTEN_SESSIONS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub listen_sessions: u32,
    /// How many events one `spenza listen` session has in flight at most: sent to the CLI, its
    /// outcome not yet reported.
    #[arg(long = "listen-in-flight", env = "SPENZA_LISTEN_IN_FLIGHT", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..))]
    pub listen_in_flight: u16,
    /// How long a resolved issue is kept; then it is removed.
    #[arg(long = "issue-retention", env = "SPENZA_ISSUE_RETENTION", default_value = "90d", value_parser = humantime::parse_duration)]
    pub issue_retention: Duration,
    /// Which parts of the relay this process runs.
    #[arg(long, env = "SPENZA_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,
    /// Log line format.
    #[arg(long = "log-format", env = "SPENZA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Term)]
    pub log_format: LogFormat,
    /// The least severe log lines written.
    #[arg(long = "log-level", env = "SPENZA_LOG_LEVEL", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    /// How long a delivered event and its attempts are kept after it arrived (and after its
    /// delivery, if that came later); then they are removed.
    #[arg(long, env = "SPENZA_RETENTION", default_value = "30d", value_parser = humantime::parse_duration)]
    pub retention: Duration,
    /// How long a failed event (the graveyard) and its attempts are kept after it arrived.
    #[arg(long = "failed-retention", env = "SPENZA_FAILED_RETENTION", default_value = "90d", value_parser = humantime::parse_duration)]
    pub failed_retention: Duration,
    /// How long a line of the audit log is kept; then it is removed.
    #[arg(long = "audit-retention", env = "SPENZA_AUDIT_RETENTION", default_value = "365d", value_parser = humantime::parse_duration)]
    pub audit_retention: Duration,
    /// Address to serve `GET /metrics` on instead of the HTTP listen address, to keep it off a
    /// public port.
    #[arg(long = "metrics-bind", env = "SPENZA_METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,
    /// Also count stored events and delivery attempts by subscription id (one series per
    /// subscription and outcome, kept until the process restarts): for tens of subscriptions,
    /// not thousands; served beside the API unless `SPENZA_METRICS_BIND` moves it.
    #[arg(long = "metrics-per-subscription", env = "SPENZA_METRICS_PER_SUBSCRIPTION", action = clap::ArgAction::Set, default_value_t = false)]
    pub metrics_per_subscription: bool,
    /// How often the metrics that are counted rather than kept (events by status, messages in
    /// each queue) are read again.
    #[arg(long = "gauge-interval", env = "SPENZA_GAUGE_INTERVAL", default_value = "15s", value_parser = humantime::parse_duration)]
    pub gauge_interval: Duration,
    /// Longest time shutdown waits for in-flight deliveries.
    #[arg(long = "shutdown-timeout", env = "SPENZA_SHUTDOWN_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

impl Settings {
    /// The broker's URLs, to connect with.
    pub fn amqp_urls(&self) -> Vec<String> {
        self.amqp_url
            .iter()
            .map(|url| url.expose().to_owned())
            .collect()
    }

    /// The base URL ingest URLs are printed under, given the address actually bound.
    pub fn public_base(&self, bound: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.as_str().trim_end_matches('/').to_owned(),
            None => format!("http://{bound}"),
        }
    }

    /// Whether the relay is reached over https, so cookies must say `Secure`.
    pub fn serves_https(&self) -> bool {
        self.public_url
            .as_ref()
            .is_some_and(|url| url.scheme() == "https")
    }
}

/// The configuration reference: every `SPENZA_*` variable any command reads, with its default,
/// the commands that read it and its meaning, as a Markdown table. Made from the clap
/// definitions above (a setting's meaning is its doc comment's first paragraph), so the README's
/// copy, which a test compares with this, cannot drift from the code.
pub fn reference() -> String {
    struct Row {
        default: String,
        commands: Vec<String>,
        meaning: String,
    }
    fn visit(command: &clap::Command, path: &str, rows: &mut Vec<(String, Row)>) {
        for arg in command.get_arguments() {
            let Some(env) = arg.get_env() else { continue };
            let env = env.to_string_lossy().into_owned();
            if let Some((_, row)) = rows.iter_mut().find(|(name, _)| *name == env) {
                row.commands.push(path.to_owned());
                continue;
            }
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|value| value.to_string_lossy().into_owned())
                .filter(|value| !value.is_empty())
                .collect();
            let default = match defaults.as_slice() {
                [] => "none".to_owned(),
                values => format!("`{}`", values.join(",")),
            };
            let mut meaning = arg.get_help().map(ToString::to_string).unwrap_or_default();
            if !meaning.is_empty() && !meaning.ends_with('.') {
                meaning.push('.');
            }
            let values: Vec<_> = arg
                .get_possible_values()
                .into_iter()
                .filter(|value| !value.is_hide_set())
                .collect();
            let choices: Vec<String> = values
                .iter()
                .map(|value| match value.get_help() {
                    Some(help) => {
                        let help = help.to_string();
                        let help = help.trim_end_matches('.');
                        // "Anyone ..." reads "anyone ..." after a colon; "HTTP ..." stays.
                        let acronym = help.chars().nth(1).is_some_and(char::is_uppercase);
                        let mut chars = help.chars();
                        let first = match chars.next() {
                            Some(first) if !acronym => first.to_lowercase().to_string(),
                            Some(first) => first.to_string(),
                            None => String::new(),
                        };
                        format!("`{}`: {first}{}", value.get_name(), chars.as_str())
                    }
                    None => format!("`{}`", value.get_name()),
                })
                .collect();
            match choices.as_slice() {
                [] => {}
                // Plain values, as a boolean's: "`true` or `false`".
                [others @ .., last]
                    if !others.is_empty()
                        && values.iter().all(|value| value.get_help().is_none()) =>
                {
                    write!(meaning, " {} or {last}.", others.join(", "))
                        .expect("writing to a String");
                }
                _ => {
                    write!(meaning, " One of {}.", choices.join("; ")).expect("writing to a String")
                }
            }
            let meaning = meaning
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .replace('|', "\\|")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            let row = Row {
                default,
                commands: vec![path.to_owned()],
                meaning,
            };
            rows.push((env, row));
        }
        for sub in command.get_subcommands() {
            let path = match path {
                "" => sub.get_name().to_owned(),
                _ => format!("{path} {}", sub.get_name()),
            };
            visit(sub, &path, rows);
        }
    }

    let mut rows = Vec::new();
    visit(&Cli::command(), "", &mut rows);
    let mut table = String::from("| variable | default | read by | meaning |\n|---|---|---|---|\n");
    for (env, row) in rows {
        let commands = row
            .commands
            .iter()
            .map(|command| format!("`{command}`"))
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            table,
            "| `{env}` | {} | {commands} | {} |",
            row.default, row.meaning
        )
        .expect("writing to a String");
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_settings(args: &[&str]) -> Settings {
        let mut argv = vec!["spenza", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).expect("arguments parse").command {
            Command::Serve(settings) => *settings,
            other => panic!("expected serve, got {other:?}"),
        }
    }

    #[test]
    fn settings_debug_masks_the_database_and_broker_passwords() {
        let settings = serve_settings(&[
            "--database-url",
            "postgres://spenza:db-password@db.internal/spenza",
            "--amqp-url",
            "amqp://spenza:broker-password@mq.internal:5672/%2f",
        ]);
        let shown = format!("{settings:?}");
        assert!(!shown.contains("db-password"), "{shown}");
        assert!(!shown.contains("broker-password"), "{shown}");
        assert!(
            shown.contains("db.internal"),
            "the rest of the URL is shown"
        );
    }

    #[test]
    fn serve_defaults_match_the_documented_ones() {
        let settings = serve_settings(&[]);
        assert_eq!(settings.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(settings.amqp_prefix, "spenza");
        assert_eq!(settings.max_body_bytes, 1024 * 1024);
        assert_eq!(settings.delivery_timeout, Duration::from_secs(10));
        assert_eq!(settings.retry_schedule.to_string(), "30s,5m,30m,2h,8h");
        assert_eq!(settings.breaker_threshold, 100);
        assert_eq!(settings.signup, SignupPolicy::First);
        assert_eq!(settings.session_idle, Duration::from_secs(12 * 3600));
        assert_eq!(
            settings.session_lifetime,
            Duration::from_secs(7 * 24 * 3600)
        );
        assert!(!settings.serves_https());
        let bound: SocketAddr = "127.0.0.1:41234".parse().unwrap();
        assert_eq!(settings.public_base(bound), "http://127.0.0.1:41234");
    }

    #[test]
    fn the_healthcheck_asks_a_wildcard_listen_address_on_loopback() {
        let url = |bind: &str| {
            let Command::Healthcheck(settings) =
                Cli::try_parse_from(["spenza", "healthcheck", "--bind", bind])
                    .unwrap()
                    .command
            else {
                panic!("healthcheck parses as healthcheck")
            };
            settings.url()
        };
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080/healthz");
        assert_eq!(url("[::]:8080"), "http://[::1]:8080/healthz");
        assert_eq!(url("10.1.2.3:9000"), "http://10.1.2.3:9000/healthz");
    }

    #[test]
    fn public_url_drops_its_trailing_slash() {
        let settings = serve_settings(&["--public-url", "https://relay.example.com/"]);
        let bound: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(settings.public_base(bound), "https://relay.example.com");
        assert!(settings.serves_https());
    }

    #[test]
    fn allowed_target_nets_are_a_cidr_list() {
        let settings = serve_settings(&["--allowed-target-nets", "127.0.0.0/8,::1/128"]);
        assert_eq!(settings.allowed_target_nets.len(), 2);
        assert!(serve_settings(&[]).allowed_target_nets.is_empty());
    }

    #[test]
    fn durations_are_human_readable() {
        let settings = serve_settings(&["--delivery-timeout", "250ms"]);
        assert_eq!(settings.delivery_timeout, Duration::from_millis(250));
    }

    #[test]
    fn an_empty_list_setting_is_the_empty_list() {
        // What `SPENZA_ALLOWED_TARGET_NETS=` hands the parser.
        let settings = serve_settings(&["--allowed-target-nets", ""]);
        assert!(settings.allowed_target_nets.is_empty());
        let settings = serve_settings(&["--allowed-target-nets", " 10.0.0.0/8 , ,::1/128,"]);
        assert_eq!(
            settings.allowed_target_nets.to_vec(),
            vec![
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "::1/128".parse().unwrap()
            ]
        );
        let refused = Cli::try_parse_from([
            "spenza",
            "serve",
            "--allowed-target-nets",
            "10.0.0.0/8,nope",
        ])
        .unwrap_err()
        .to_string();
        assert!(refused.contains("\"nope\""), "{refused}");
    }

    #[test]
    fn every_variable_has_a_meaning_and_the_readme_lists_them_as_the_code_defines_them() {
        let table = reference();
        for row in table.lines().skip(2) {
            let meaning = row.rsplit(" | ").next().unwrap();
            assert!(meaning.len() > 3, "a variable without a doc comment: {row}");
        }
        for env in [
            "SPENZA_DATABASE_URL",
            "SPENZA_HTTP_WORKERS",
            "SPENZA_NEW_USER_PASSWORD",
        ] {
            assert!(table.contains(&format!("`{env}`")), "{env} is missing");
        }
        let readme = include_str!("../README.md");
        let start = readme
            .find(README_TABLE_START)
            .expect("README.md marks where the configuration reference starts")
            + README_TABLE_START.len();
        let end = readme[start..]
            .find(README_TABLE_END)
            .expect("README.md marks where the configuration reference ends")
            + start;
        assert!(
            readme[start..end].trim() == table.trim(),
            "README.md's configuration reference differs from the code's; put this between \
             its markers:\n{table}"
        );
    }

    const README_TABLE_START: &str =
        "<!-- configuration reference: made by config::reference() -->";
    const README_TABLE_END: &str = "<!-- end of the configuration reference -->";
}
