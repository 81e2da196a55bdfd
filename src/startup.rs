//! Wiring: `Application::build` starts every component of a process and binds its listener;
//! `run_until_stopped` serves until the shutdown token fires, then stops them in order.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::{Server, ServerHandle, Service};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use slog::{Logger, info, warn};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::SessionPolicy;
use crate::config::{Role, Settings};
use crate::db::{self, Commits, Database, Plans};
use crate::delivery::{Deliverer, DeliveryPolicy, HttpClient, Reaper, TargetPolicy};
use crate::ingest::{IngestState, Intake, Refusals, Routes};
use crate::issues::notify::{Messenger, Notifier};
use crate::issues::{Watch, WatchSettings};
use crate::listen::ListenConfig;
use crate::live::LiveThread;
use crate::mail::Mailer;
use crate::queue::{Consumed, Consumer, Publisher, PublisherThread, Topology};
use crate::retention::{Retention, RetentionPolicy};
use crate::state::AppState;
use crate::{api, dashboard, health, ingest, metrics, request_id};

/// How much longer a delivery holds its event than its attempt and record can take.
const LEASE_MARGIN: std::time::Duration = std::time::Duration::from_secs(10);

/// How a process divides its connection budget (`SPENZA_DATABASE_POOL_SIZE`, the most
/// connections it opens in all) between its HTTP workers, each with pools of its own, and the
/// background. The batch statements of ingest and delivery run on pools of their own, with
/// generic plans ([`Plans::Generic`]); everything else on pools that plan each run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PoolSizes {
    /// HTTP workers to run: fewer than asked for when the budget cannot give each its minimum.
    http_workers: usize,
    /// Each HTTP worker's connections for its ingest batches (none for a role that does not
    /// ingest).
    intake_per_worker: usize,
    /// Each HTTP worker's connections for its other requests.
    requests_per_worker: usize,
    /// The delivery workers' connections (none for a role that does not deliver).
    delivery: usize,
    /// The reaper's, the issue scanner's, the notifier's, retention's and the gauges'.
    upkeep: usize,
}

impl PoolSizes {
    /// An `all` process gives HTTP half; an `api` process keeps two for its reaper; a `worker`
    /// serves only the probes, from one HTTP worker with one connection. A worker that serves
    /// ingest and the dashboard needs two connections: one for its ingest batches, one for its
    /// other requests (half go to ingest when it has more, up to [`ingest::intake::SLOTS`]).
    /// The background keeps one for upkeep, or two from eight up, and delivers through the
    /// rest.
    fn split(total: usize, wanted_workers: usize, role: Role) -> anyhow::Result<Self> {
        let (http_share, minimum, background) = match role {
            Role::All => (total / 2, 2, total - total / 2),
            Role::Api => (total.saturating_sub(2), 2, 2.min(total)),
            Role::Worker => (1, 1, total.saturating_sub(1)),
        };
        let upkeep = (background / 4).clamp(1, 2);
        let delivery = if role.delivers() {
            background.saturating_sub(upkeep)
        } else {
            0
        };
        let http_workers = wanted_workers.max(1).min(http_share / minimum);
        anyhow::ensure!(
            http_workers >= 1 && background >= upkeep && (delivery >= 1 || !role.delivers()),
            "SPENZA_DATABASE_POOL_SIZE={total} is too small for the {role:?} role: it needs at \
             least {}",
            minimum + 2
        );
        let per_worker = http_share / http_workers;
        let intake_per_worker = if role.serves_http() {
            ingest::intake::SLOTS.min(per_worker / 2).max(1)
        } else {
            0
        };
        Ok(PoolSizes {
            http_workers,
            intake_per_worker,
            requests_per_worker: per_worker - intake_per_worker,
            delivery,
            upkeep: background - delivery,
        })
    }
}

/// A running relay process.
pub struct Application {
    port: u16,
    server: Server,
    /// The server of `GET /metrics` alone, when it has an address of its own.
    metrics_server: Option<Server>,
    db: Database,
    publisher_thread: PublisherThread,
    live_thread: LiveThread,
    delivery: Option<Delivery>,
    reaper: Reaper,
    gauges: metrics::Gauges,
    retention: Retention,
    /// Looks for issues, and their notifications to send.
    watch: Watch,
    notifier: Notifier,
    shutdown: CancellationToken,
    settings: Settings,
    log: Logger,
}

struct Delivery {
    consumer: Consumer,
    dispatcher: tokio::task::JoinHandle<()>,
    tasks: TaskTracker,
    db: Database,
}

impl Application {
    /// Applies migrations, connects, starts the publisher (and, for delivering roles, the
    /// consumer and delivery pool) and binds the HTTP listener. Must run inside the main tokio
    /// runtime.
    pub async fn build(settings: Settings, log: Logger) -> anyhow::Result<Self> {
        if !metrics::init(settings.metrics_per_subscription) {
            warn!(log, "this process counted its metrics before it was set up: they are not by subscription as asked";
                "per_subscription" => settings.metrics_per_subscription);
        }
        let applied = db::migrations::run(settings.database.url.expose()).await?;
        info!(log, "database migrated"; "applied" => applied);
        let http_workers = settings.http_workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let pools = PoolSizes::split(settings.database.pool_size, http_workers, settings.role)?;
        let db = Database::new(
            db::build_pool(
                &settings.database,
                pools.upkeep,
                Commits::Asynchronous,
                Plans::Custom,
            )?,
            settings.database.timeout,
        );
        let topology = Topology::new(
            &settings.amqp_prefix,
            settings.queue_kind,
            settings.retry_schedule.delays(),
        );
        let (publisher, publisher_thread) = Publisher::start(
            &settings.amqp_urls(),
            topology.clone(),
            settings.publish_window,
            log.new(slog::o!("component" => "publisher")),
        )
        .context("starting the publisher thread")?;

        let (live, live_thread) = LiveThread::start(
            &settings.amqp_urls(),
            topology.clone(),
            settings.role.serves_http(),
            log.new(slog::o!("component" => "live")),
        )
        .context("starting the live updates thread")?;
        let gauges = metrics::Gauges {
            db: db.clone(),
            amqp_urls: settings.amqp_urls(),
            topology: topology.clone(),
            every: settings.gauge_interval,
            log: log.new(slog::o!("component" => "metrics")),
        };
        let retention_policy = RetentionPolicy {
            completed: settings.retention,
            failed: settings.failed_retention,
            audit: settings.audit_retention,
            issues: settings.issue_retention,
        };
        let retention = Retention {
            db: db.clone(),
            policy: retention_policy,
            log: log.new(slog::o!("component" => "retention")),
        };
        let target_policy = Arc::new(TargetPolicy::new(settings.allowed_target_nets.to_vec()));
        // One client for deliveries and notifications: both go where the SSRF guard allows.
        let http = HttpClient::new(settings.delivery_timeout, target_policy.clone())
            .context("building the HTTP client")?;
        // An attempt, its record (which waits for a connection at most this long), and room to
        // spare: a lease never runs out under a delivery still at work.
        let lease = settings.delivery_timeout + settings.database.timeout * 2 + LEASE_MARGIN;
        let delivery = if settings.role.delivers() {
            let (consumer, jobs) = Consumer::start(
                &settings.amqp_urls(),
                topology.clone(),
                Consumed::Deliver,
                settings.delivery_concurrency,
                settings.shutdown_timeout,
                log.new(slog::o!("component" => "consumer")),
            )
            .context("starting the consumer thread")?;
            let http = http.clone();
            let policy = DeliveryPolicy {
                schedule: settings.retry_schedule.clone(),
                breaker_threshold: settings.breaker_threshold,
                lease,
                per_subscription: usize::from(settings.subscription_concurrency),
            };
            let tasks = TaskTracker::new();
            let delivery_db = Database::new(
                db::build_pool(
                    &settings.database,
                    pools.delivery,
                    Commits::Asynchronous,
                    Plans::Generic,
                )?,
                settings.database.timeout,
            );
            let deliverer = Arc::new(Deliverer::new(
                delivery_db.clone(),
                http,
                publisher.clone(),
                policy,
                live.clone(),
                tasks.clone(),
                log.new(slog::o!("component" => "delivery")),
            ));
            let dispatcher = tokio::spawn(deliverer.dispatch(jobs));
            Some(Delivery {
                consumer,
                dispatcher,
                tasks,
                db: delivery_db,
            })
        } else {
            None
        };

        let listen = Arc::new(ListenConfig {
            amqp_urls: settings.amqp_urls(),
            topology,
            schedule: settings.retry_schedule.clone(),
            lease,
            timeout: settings.delivery_timeout,
            in_flight: settings.listen_in_flight,
            sessions_per_holder: settings.listen_sessions,
            replica: format!(
                "{} (pid {})",
                hostname::get()
                    .map_or_else(|_| "?".into(), |name| name.to_string_lossy().into_owned()),
                std::process::id()
            ),
        });
        let reaper_wake = Arc::new(tokio::sync::Notify::new());
        let reaper = Reaper {
            db: db.clone(),
            wake: reaper_wake.clone(),
            publisher: publisher.clone(),
            interval: settings.reaper_interval,
            grace: settings.reaper_grace,
            batch: settings.reaper_batch.max(1),
            log: log.new(slog::o!("component" => "reaper")),
        };

        let shutdown = CancellationToken::new();
        let listener = TcpListener::bind(settings.bind)
            .with_context(|| format!("binding {}", settings.bind))?;
        let address = listener.local_addr()?;
        let database = settings.database.clone();
        // Validated here, so that building each worker's own pools below cannot fail.
        db::build_pool(
            &database,
            pools.requests_per_worker,
            Commits::Durable,
            Plans::Custom,
        )?;
        let max_body_bytes = settings.max_body_bytes;
        let secret_rotation_overlap = settings.secret_rotation_overlap;
        let delivery_timeout = settings.delivery_timeout;
        let public_base = settings.public_base(address);
        let signup = settings.signup;
        let mailer = match (&settings.smtp_url, &settings.smtp_from) {
            (Some(url), Some(from)) => Some(Arc::new(Mailer::new(url, from)?)),
            (Some(_), None) => anyhow::bail!("SPENZA_SMTP_URL needs SPENZA_SMTP_FROM, the sender"),
            (None, _) => None,
        };
        let messenger = Arc::new(Messenger::new(
            http.client().clone(),
            mailer.clone(),
            public_base.clone(),
        ));
        let watch = Watch {
            db: db.clone(),
            live: live.clone(),
            settings: WatchSettings {
                every: settings.issue_scan_interval,
                refusal_threshold: settings.source_refusal_threshold,
                refusal_window: settings.source_refusal_window,
                lag_threshold: settings.lag_threshold,
                quiet: settings.notification_quiet,
            },
            log: log.new(slog::o!("component" => "issues")),
        };
        let notifier = Notifier {
            db: db.clone(),
            messenger: messenger.clone(),
            log: log.new(slog::o!("component" => "notifications")),
        };
        let notification_quiet = settings.notification_quiet;
        let sessions = SessionPolicy {
            idle: settings.session_idle,
            lifetime: settings.session_lifetime,
            secure_cookie: settings.serves_https(),
        };
        let consumer = delivery.as_ref().map(|delivery| delivery.consumer.status());
        let http_log = log.clone();
        let http_shutdown = shutdown.clone();
        let routes = Arc::new(Routes::default());
        let refusals = Arc::new(Refusals::default());
        let serves_http = settings.role.serves_http();
        let metrics_apart = settings.metrics_bind.is_some();
        let metrics_server = match settings.metrics_bind {
            Some(bind) => {
                let listener =
                    TcpListener::bind(bind).with_context(|| format!("binding {bind}"))?;
                info!(log, "serving metrics"; "address" => %listener.local_addr()?);
                let server = HttpServer::new(|| App::new().configure(metrics::routes))
                    .workers(1)
                    .disable_signals()
                    .listen(listener)?
                    .run();
                Some(server)
            }
            None => None,
        };
        let server = HttpServer::new(move || {
            let pool = |size, plans| {
                let pool = db::build_pool(&database, size, Commits::Durable, plans)
                    .expect("pool settings were validated at start-up");
                Database::new(pool, database.timeout)
            };
            let db = pool(pools.requests_per_worker, Plans::Custom);
            let intake = Intake::start(
                pool(pools.intake_per_worker, Plans::Generic),
                pools.intake_per_worker,
                publisher.clone(),
                live.clone(),
                http_log.new(slog::o!("component" => "intake")),
            );
            let ingest_state = web::Data::new(IngestState {
                db: db.clone(),
                intake: intake.clone(),
                routes: routes.clone(),
                max_body_bytes,
                public_base: public_base.clone(),
                refusals: refusals.clone(),
                log: http_log.clone(),
            });
            let state = web::Data::new(AppState {
                intake,
                db,
                publisher: publisher.clone(),
                consumer: consumer.clone(),
                public_base: public_base.clone(),
                target_policy: target_policy.clone(),
                secret_rotation_overlap,
                delivery_timeout,
                live: live.clone(),
                reaper: reaper_wake.clone(),
                shutdown: http_shutdown.clone(),
                // Half the worker's connections at most, so other requests always find one.
                live_renders: tokio::sync::Semaphore::new((pools.requests_per_worker / 2).max(1)),
                signup,
                sessions,
                mailer: mailer.clone(),
                messenger: messenger.clone(),
                notification_quiet,
                retention: retention_policy,
                listen: listen.clone(),
                log: http_log.clone(),
            });
            let errors_log = http_log.clone();
            let app = App::new()
                .app_data(state)
                .app_data(ingest_state)
                // Server errors answer clients with a short problem; the cause goes to the log.
                .wrap_fn(move |request, service| {
                    let log = errors_log.clone();
                    let response = service.call(request);
                    async move {
                        let response = response.await?;
                        if let Some(error) = response.response().error()
                            && response.status().is_server_error()
                        {
                            // The route's pattern, never the path: an ingest path holds its
                            // subscription's token.
                            let route = response.request().match_pattern();
                            warn!(log, "request failed";
                                "route" => route.as_deref().unwrap_or("(no route)"),
                                "request_id" => %request_id::of(response.request()),
                                "error" => ?error);
                        }
                        Ok(response)
                    }
                })
                // Outermost: every response has its id, and the log line above can name it.
                .wrap(from_fn(request_id::assign))
                .configure(health::routes)
                .configure(|config| {
                    if !metrics_apart {
                        metrics::routes(config);
                    }
                });
            if serves_http {
                app.configure(ingest::routes)
                    .configure(api::routes)
                    .configure(dashboard::routes)
            } else {
                app
            }
        })
        .workers(pools.http_workers)
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout.as_secs().max(1))
        .listen(listener)?;
        info!(log, "listening"; "address" => %address, "role" => ?settings.role);
        Ok(Application {
            port: address.port(),
            server: server.run(),
            metrics_server,
            db,
            publisher_thread,
            live_thread,
            delivery,
            reaper,
            gauges,
            retention,
            watch,
            notifier,
            shutdown,
            settings,
            log,
        })
    }

    /// The port the HTTP server listens on (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cancelling this token stops the application gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then: stops accepting HTTP requests and
    /// finishes those in flight; stops consuming and lets deliveries in flight finish (bounded),
    /// leaving the rest unacked for redelivery; waits for outstanding publisher confirms;
    /// closes the broker connections and the pool.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application {
            server,
            metrics_server,
            db,
            publisher_thread,
            live_thread,
            delivery,
            reaper,
            gauges,
            retention,
            watch,
            notifier,
            shutdown,
            settings,
            log,
            ..
        } = self;
        let handle: ServerHandle = server.handle();
        let mut server = tokio::spawn(server);
        let reaper = tokio::spawn(reaper.run(shutdown.clone()));
        let gauges = tokio::spawn(gauges.run(shutdown.clone()));
        let retention = tokio::spawn(retention.run(shutdown.clone()));
        let watch = tokio::spawn(watch.run(shutdown.clone()));
        let notifier = tokio::spawn(notifier.run(shutdown.clone()));
        let metrics_server = metrics_server.map(|server| {
            let handle = server.handle();
            tokio::spawn(server);
            handle
        });
        // A failed server still gets the orderly stop below; its error is returned after it.
        let served = tokio::select! {
            () = shutdown.cancelled() => Ok(()),
            result = &mut server => result
                .context("the HTTP server task failed")
                .and_then(|served| served.context("the HTTP server failed")),
        };
        info!(log, "shutting down");
        shutdown.cancel();
        // Consumption stops while HTTP requests drain, so the two waits overlap.
        let mut delivery = delivery;
        if let Some(delivery) = delivery.as_mut() {
            delivery.consumer.begin_stop();
        }
        handle.stop(true).await;
        if let Some(metrics_server) = metrics_server {
            metrics_server.stop(true).await;
        }
        if let Err(error) = reaper.await {
            warn!(log, "the reaper task failed"; "error" => %error);
        }
        let _ = gauges.await;
        let _ = retention.await;
        let _ = watch.await;
        let _ = notifier.await;
        if let Some(Delivery {
            consumer,
            dispatcher,
            tasks,
            db,
        }) = delivery
        {
            let _ = dispatcher.await;
            tasks.close();
            if tokio::time::timeout(settings.shutdown_timeout, tasks.wait())
                .await
                .is_err()
            {
                info!(
                    log,
                    "deliveries still in flight at the deadline are left for redelivery"
                );
            }
            tokio::task::spawn_blocking(move || consumer.join())
                .await
                .context("stopping the consumer")?;
            db.close();
        }
        tokio::task::spawn_blocking(move || publisher_thread.stop())
            .await
            .context("stopping the publisher")?;
        tokio::task::spawn_blocking(move || live_thread.stop())
            .await
            .context("stopping the live updates")?;
        db.close();
        info!(log, "stopped");
        served
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_budget_is_shared_between_http_workers_and_the_background() {
        assert_eq!(
            PoolSizes::split(16, 2, Role::All).unwrap(),
            PoolSizes {
                http_workers: 2,
                intake_per_worker: 2,
                requests_per_worker: 2,
                delivery: 6,
                upkeep: 2,
            }
        );
        assert_eq!(
            PoolSizes::split(16, 32, Role::All).unwrap(),
            PoolSizes {
                http_workers: 4,
                intake_per_worker: 1,
                requests_per_worker: 1,
                delivery: 6,
                upkeep: 2,
            },
            "32 cores run as many HTTP workers as the budget gives two connections each"
        );
        assert_eq!(
            PoolSizes::split(4, 2, Role::All).unwrap(),
            PoolSizes {
                http_workers: 1,
                intake_per_worker: 1,
                requests_per_worker: 1,
                delivery: 1,
                upkeep: 1,
            }
        );
        assert_eq!(
            PoolSizes::split(16, 4, Role::Api).unwrap(),
            PoolSizes {
                http_workers: 4,
                intake_per_worker: 1,
                requests_per_worker: 2,
                delivery: 0,
                upkeep: 2,
            }
        );
        assert_eq!(
            PoolSizes::split(16, 8, Role::Worker).unwrap(),
            PoolSizes {
                http_workers: 1,
                intake_per_worker: 0,
                requests_per_worker: 1,
                delivery: 13,
                upkeep: 2,
            }
        );
        assert!(PoolSizes::split(3, 2, Role::All).is_err());
        assert!(PoolSizes::split(3, 2, Role::Api).is_err());
        assert!(PoolSizes::split(2, 2, Role::Worker).is_err());
        assert!(PoolSizes::split(3, 2, Role::Worker).is_ok());
    }

    #[test]
    fn no_split_opens_more_connections_than_the_budget() {
        for role in [Role::All, Role::Api, Role::Worker] {
            for total in 1..=64 {
                for workers in 1..=64 {
                    if let Ok(pools) = PoolSizes::split(total, workers, role) {
                        let opened = pools.http_workers
                            * (pools.intake_per_worker + pools.requests_per_worker)
                            + pools.delivery
                            + pools.upkeep;
                        assert!(opened <= total, "{role:?} {total} {workers}: {pools:?}");
                        assert!(pools.http_workers >= 1 && pools.requests_per_worker >= 1);
                        assert!(pools.upkeep >= 1);
                        assert_eq!(pools.intake_per_worker >= 1, role.serves_http());
                        assert_eq!(pools.delivery >= 1, role.delivers());
                    }
                }
            }
        }
    }
}
