//! Command line and settings: every flag has a `SPENZA_*` environment variable behind it.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
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
}

/// `spenza users ...`
#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user who can sign in and own subscriptions.
    Create {
        #[arg(long)]
        email: String,
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

/// The kind of the delivery queue.
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
    /// Largest number of pooled connections this process opens.
    #[arg(
        long = "database-pool-size",
        env = "SPENZA_DATABASE_POOL_SIZE",
        default_value_t = 16
    )]
    pub pool_size: usize,
    /// Longest wait for a connection or a query before the caller gets an error (ingest: 503).
    #[arg(long = "database-timeout", env = "SPENZA_DATABASE_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Everything `spenza serve` needs.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    #[command(flatten)]
    pub database: DatabaseSettings,
    /// RabbitMQ connection URL.
    #[arg(
        long = "amqp-url",
        env = "SPENZA_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: SecretUrl,
    /// Prefix of every exchange and queue name, so several deployments can share a broker.
    #[arg(
        long = "amqp-prefix",
        env = "SPENZA_AMQP_PREFIX",
        default_value = "spenza"
    )]
    pub amqp_prefix: String,
    /// Kind of the delivery queue.
    #[arg(long = "queue-kind", env = "SPENZA_QUEUE_KIND", value_enum, default_value_t = QueueKind::Quorum)]
    pub queue_kind: QueueKind,
    /// Address the HTTP server listens on (port 0 picks a free port).
    #[arg(long, env = "SPENZA_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Public base URL of this relay, used to print ingest URLs (defaults to http://<bind>).
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
    /// Attempts under way at once at any one subscription's endpoint in this process: a slow
    /// endpoint never takes more of the delivery slots. A delivery over it waits a moment in a
    /// defer queue (no attempt made, no retry used).
    #[arg(
        long = "subscription-concurrency",
        env = "SPENZA_SUBSCRIPTION_CONCURRENCY",
        default_value_t = 32,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub subscription_concurrency: u16,
    /// Delays before each retry of a failed delivery, comma-separated (one attempt plus one per
    /// delay). Each delay has its own wait queue, named after it.
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
    /// Address ranges deliveries may reach although they are not public (CIDR list, e.g.
    /// `127.0.0.0/8` for local development). Everything else internal is refused.
    #[arg(
        long = "allowed-target-nets",
        env = "SPENZA_ALLOWED_TARGET_NETS",
        value_delimiter = ','
    )]
    pub allowed_target_nets: Vec<IpNet>,
    /// Publishes awaiting their broker confirm at once.
    #[arg(
        long = "publish-window",
        env = "SPENZA_PUBLISH_WINDOW",
        default_value_t = 256
    )]
    pub publish_window: usize,
    /// Who may sign up from the dashboard: `first` (only while no user exists), `open` or `closed`.
    #[arg(long, env = "SPENZA_SIGNUP", value_enum, default_value_t = SignupPolicy::First)]
    pub signup: SignupPolicy,
    /// A dashboard session unused for this long ends.
    #[arg(long = "session-idle", env = "SPENZA_SESSION_IDLE", default_value = "12h", value_parser = humantime::parse_duration)]
    pub session_idle: Duration,
    /// A dashboard session ends this long after log-in, however much it is used.
    #[arg(long = "session-lifetime", env = "SPENZA_SESSION_LIFETIME", default_value = "7d", value_parser = humantime::parse_duration)]
    pub session_lifetime: Duration,
    /// Which parts of the relay this process runs.
    #[arg(long, env = "SPENZA_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,
    /// Log line format.
    #[arg(long = "log-format", env = "SPENZA_LOG_FORMAT", value_enum, default_value_t = LogFormat::Term)]
    pub log_format: LogFormat,
    /// Longest time shutdown waits for in-flight deliveries.
    #[arg(long = "shutdown-timeout", env = "SPENZA_SHUTDOWN_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,
}

impl Settings {
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
}
