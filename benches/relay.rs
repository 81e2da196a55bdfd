//! Load benchmark: starts the release `spenza` binary against a fresh database and queue prefix,
//! runs a local sink, and measures ingest and end-to-end latency open-loop at a fixed rate (then
//! again with ten more subscriptions on the source whose filters match nothing), then open-loop
//! again at a high rate (2,000 events/s by default, where the relay's throughput limits show),
//! then throughput at full speed, then fan-out: one source with five subscriptions whose filters
//! match every event, open-loop at 200 events/s (1,000 deliveries/s); plus the relay's peak
//! memory. Loopback only; every loop is bounded in count and in time.
//!
//! For every phase it also reports what a delivered event costs the whole stack: CPU time
//! (utime + stime from `/proc`) per 1,000 delivered events of the relay, of PostgreSQL (all the
//! server's processes, and what its exited backends used), of RabbitMQ (the Erlang VM and its
//! helpers), of everything else (the load, the sink, the benchmark's own readings) and of the
//! machine (`/proc/stat`); PostgreSQL commits, WAL bytes and rows inserted and updated (and
//! how many updates were HOT) per delivered event in the bench's database (`pg_stat_database`,
//! `pg_current_wal_lsn`, `pg_stat_user_tables`), plus statements when the server has
//! `pg_stat_statements` preloaded (otherwise it says so; the server's configuration is never
//! changed); and the broker's publishes, deliveries and acknowledgements per delivered event
//! (its global counters, read with `rabbitmqctl eval`).
//!
//! `cargo bench --bench relay` (settings: BENCH_RATE, BENCH_HIGH_RATE, BENCH_SECONDS,
//! BENCH_EVENTS, BENCH_CONCURRENCY, BENCH_FANOUT_RATE, and BENCH_LIVE=1 to keep the
//! subscription's dashboard page open on the live WebSocket throughout; see `Plan::from_env`;
//! BENCH_RELAY_LOG=<file> keeps the relay's log; BENCH_SPENZA=<binary> runs another build of
//! the relay, such as an older commit's: see `scripts/bench-compare.sh`).

mod common;

use std::collections::HashMap;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures_util::StreamExt;

use common::{
    OpenLoop, POSTGRES, REQUEST_TIMEOUT, Relay, Sent, dashboard_session, ms, open_loop, percentile,
    report_sender, send, subscribe,
};

/// What to run, from the environment.
struct Plan {
    rate: u64,
    /// The second open-loop phase's rate, at which the relay is expected to fall behind.
    high_rate: u64,
    seconds: u64,
    events: usize,
    concurrency: usize,
    /// The fan-out phase's rate, in events (each delivered to [`FAN_OUT`] endpoints).
    fanout_rate: u64,
    /// Whether a dashboard page follows the subscription live while the load runs.
    live: bool,
}

/// The subscriptions of the fan-out phase's source, each with a filter every event passes.
const FAN_OUT: usize = 5;
/// The subscriptions with a filter no event passes that the second phase adds to the source.
const NOT_MATCHING: usize = 10;

impl Plan {
    fn from_env() -> Self {
        let get = common::setting;
        Plan {
            rate: get("BENCH_RATE", 500),
            high_rate: get("BENCH_HIGH_RATE", 2000),
            seconds: get("BENCH_SECONDS", 30),
            events: get("BENCH_EVENTS", 30_000) as usize,
            concurrency: get("BENCH_CONCURRENCY", 64) as usize,
            fanout_rate: get("BENCH_FANOUT_RATE", 200),
            live: get("BENCH_LIVE", 0) == 1,
        }
    }
}

/// Arrival time of each delivery at the sink, by event id and the path it was delivered to
/// (see [`delivery_key`]).
#[derive(Default)]
struct Arrivals {
    at: Mutex<HashMap<String, Instant>>,
    requests: AtomicUsize,
}

/// Reads the body, as a real endpoint does: actix closes a connection whose request body was
/// left unread, and every delivery would then pay for a new TCP connection.
async fn sink(
    request: HttpRequest,
    _body: web::Bytes,
    arrivals: web::Data<Arrivals>,
) -> HttpResponse {
    let now = Instant::now();
    arrivals.requests.fetch_add(1, Ordering::Relaxed);
    if let Some(id) = request
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
    {
        arrivals
            .at
            .lock()
            .unwrap()
            .entry(delivery_key(id, request.path()))
            .or_insert(now);
    }
    HttpResponse::NoContent().finish()
}

/// An event's delivery to one of the sink's paths.
fn delivery_key(event: &str, path: &str) -> String {
    format!("{event} {path}")
}

/// The sink's path for the bench's own subscription.
const HOOK: &str = "/hook";

/// Peak and current resident memory of a process, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Waits (bounded) until every accepted event has reached the sink at each of `paths`; returns
/// the last arrival.
async fn wait_for_deliveries(
    arrivals: &Arrivals,
    sent: &[Sent],
    paths: &[String],
) -> Option<Instant> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (missing, last) = {
            let at = arrivals.at.lock().unwrap();
            let mut missing = 0;
            let mut last: Option<Instant> = None;
            for id in sent.iter().filter_map(|s| s.event_id.as_ref()) {
                for path in paths {
                    match at.get(&delivery_key(id, path)) {
                        Some(t) => last = Some(last.map_or(*t, |l| l.max(*t))),
                        None => missing += 1,
                    }
                }
            }
            (missing, last)
        };
        if missing == 0 {
            return last;
        }
        if Instant::now() > deadline {
            println!("  !! {missing} deliveries of accepted events not made within 120 s");
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prints what a phase measured; returns how many deliveries of its accepted events were made
/// (one per event and path).
fn report(
    name: &str,
    started: Instant,
    sent: &[Sent],
    arrivals: &Arrivals,
    paths: &[String],
    finished: Option<Instant>,
) -> usize {
    let accepted: Vec<&Sent> = sent.iter().filter(|s| s.event_id.is_some()).collect();
    let ingest_done = sent
        .iter()
        .map(|s| s.due + s.latency)
        .max()
        .unwrap_or(started);
    let ingest_secs = ingest_done.duration_since(started).as_secs_f64();
    let mut ingest: Vec<Duration> = accepted.iter().map(|s| s.latency).collect();
    ingest.sort();
    let at = arrivals.at.lock().unwrap();
    let mut e2e: Vec<Duration> = accepted
        .iter()
        .flat_map(|s| paths.iter().map(move |path| (s, path)))
        .filter_map(|(s, path)| {
            at.get(&delivery_key(s.event_id.as_ref()?, path))
                .map(|t| t.duration_since(s.due))
        })
        .collect();
    e2e.sort();
    let delivered = e2e.len();
    let delivery_secs = finished.map_or(f64::NAN, |f| f.duration_since(started).as_secs_f64());
    println!("{name}");
    println!(
        "  sent {} / accepted {} / delivered {delivered} / missing {}",
        sent.len(),
        accepted.len(),
        accepted.len() * paths.len() - delivered
    );
    println!(
        "  ingest throughput   {:.0} events/s",
        accepted.len() as f64 / ingest_secs
    );
    println!(
        "  ingest latency      p50 {}  p99 {}",
        ms(percentile(&ingest, 50.0)),
        ms(percentile(&ingest, 99.0))
    );
    println!(
        "  end-to-end latency  p50 {}  p99 {}",
        ms(percentile(&e2e, 50.0)),
        ms(percentile(&e2e, 99.0))
    );
    println!(
        "  deliveries          {:.0}/s (first ingest to last delivery)",
        delivered as f64 / delivery_secs
    );
    delivered
}

/// Prints the relay's peak and current resident memory, as `memory_kib` read them.
fn report_memory(peak: u64, rss: u64) {
    println!(
        "  relay memory        peak {:.1} MiB, now {:.1} MiB",
        peak as f64 / 1024.0,
        rss as f64 / 1024.0
    );
}

/// utime + stime of a process (fields 14 and 15 of `/proc/<pid>/stat`), in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Field 2, the command name, is in parentheses and may hold spaces: count from after it,
    // where field 3 comes first, so field n is at n - 3.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// Context switches of all of a process's threads so far (voluntary and not, from
/// `/proc/<pid>/task/*/status`): each is a thread that went to sleep or was put aside, so per
/// event they count the hand-offs between threads that made a thread wait.
fn context_switches(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let status = std::fs::read_to_string(task.ok()?.path().join("status")).ok()?;
        total += status
            .lines()
            .filter(|line| line.contains("ctxt_switches:"))
            .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    Some(total)
}

/// Clock ticks per second, the unit of `/proc` CPU times, and whether `getconf` told it (when
/// not, 100 is assumed: the value on every common Linux build).
fn clock_ticks() -> (u64, bool) {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .filter(|&ticks| ticks > 0)
        .map_or((100, false), |ticks| (ticks, true))
}

/// PostgreSQL counts a backend's activity into its statistics views at most once a second (and
/// within a second of the backend going idle; PostgreSQL 15), so counters read sooner after a
/// phase miss its last transactions. Every reading waits this long first.
const STATS_DELAY: Duration = Duration::from_millis(1500);

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Row counters of a database's tables, summed (see `PgCounters::read_rows`).
#[derive(diesel::QueryableByName, Clone, Copy)]
struct Rows {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    inserted: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    updated: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    hot: i64,
}

/// Where PostgreSQL's counters for the bench's database are read.
struct PgCounters {
    database: String,
    /// On the `postgres` database, so that reading `pg_stat_database` adds no commits to the
    /// database being measured.
    admin: Option<AsyncPgConnection>,
    /// On the bench's database, to read its tables' row counters.
    tables: Option<AsyncPgConnection>,
    /// On the bench's database with `pg_stat_statements` created and answering, or why not.
    /// Its one reading per phase edge is itself a commit in the measured database: negligible
    /// against thousands of events.
    statements: Result<AsyncPgConnection, String>,
}

impl PgCounters {
    async fn connect(database: &str) -> PgCounters {
        let admin = AsyncPgConnection::establish(&format!("{POSTGRES}/postgres"))
            .await
            .ok();
        PgCounters {
            database: database.to_owned(),
            admin,
            tables: AsyncPgConnection::establish(&format!("{POSTGRES}/{database}"))
                .await
                .ok(),
            statements: Self::connect_statements(database).await,
        }
    }

    /// A connection on which `pg_stat_statements` answers: the extension must be available,
    /// creatable in the (throwaway) bench database, and loaded by the server at start, which
    /// only the view answering shows.
    async fn connect_statements(database: &str) -> Result<AsyncPgConnection, String> {
        use diesel_async::RunQueryDsl;
        let mut connection = AsyncPgConnection::establish(&format!("{POSTGRES}/{database}"))
            .await
            .map_err(|e| e.to_string())?;
        let available = diesel::sql_query(
            "SELECT 1::bigint AS n FROM pg_available_extensions WHERE name = 'pg_stat_statements'",
        )
        .load::<Count>(&mut connection)
        .await
        .map_err(|e| e.to_string())?;
        if available.is_empty() {
            return Err("the extension is not installed on the server".to_owned());
        }
        diesel::sql_query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        Self::read_statements(&mut connection)
            .await
            .map_err(|e| e.to_string())?;
        Ok(connection)
    }

    /// Statements run in the connection's database so far, leaving out the bench's own.
    async fn read_statements(connection: &mut AsyncPgConnection) -> diesel::QueryResult<i64> {
        use diesel_async::RunQueryDsl;
        diesel::sql_query(
            "SELECT coalesce(sum(calls), 0)::bigint AS n FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             AND query NOT LIKE '%pg_stat_statements%'",
        )
        .get_result::<Count>(connection)
        .await
        .map(|count| count.n)
    }

    /// WAL the server has written so far, in bytes (the whole server's: the bench's database is
    /// the only busy one).
    async fn read_wal_bytes(&mut self) -> Option<i64> {
        use diesel_async::RunQueryDsl;
        let admin = self.admin.as_mut()?;
        diesel::sql_query("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS n")
            .get_result::<Count>(admin)
            .await
            .ok()
            .map(|count| count.n)
    }

    /// Rows inserted, updated and updated in place (HOT: no index touched, the new version on
    /// the old one's page) in the bench's database's tables so far.
    async fn read_rows(&mut self) -> Option<Rows> {
        use diesel_async::RunQueryDsl;
        let tables = self.tables.as_mut()?;
        diesel::sql_query("SELECT pg_stat_clear_snapshot()")
            .execute(tables)
            .await
            .ok()?;
        diesel::sql_query(
            "SELECT coalesce(sum(n_tup_ins), 0)::bigint AS inserted, \
                 coalesce(sum(n_tup_upd), 0)::bigint AS updated, \
                 coalesce(sum(n_tup_hot_upd), 0)::bigint AS hot \
             FROM pg_stat_user_tables",
        )
        .get_result::<Rows>(tables)
        .await
        .ok()
    }

    /// Transactions committed in the bench's database so far.
    async fn read_commits(&mut self) -> Option<i64> {
        use diesel_async::RunQueryDsl;
        let admin = self.admin.as_mut()?;
        // With the default `stats_fetch_consistency = cache`, a backend keeps the counters it
        // first read until told otherwise: drop them so this reading is current.
        diesel::sql_query("SELECT pg_stat_clear_snapshot()")
            .execute(admin)
            .await
            .ok()?;
        diesel::sql_query("SELECT xact_commit AS n FROM pg_stat_database WHERE datname = $1")
            .bind::<diesel::sql_types::Text, _>(&self.database)
            .get_result::<Count>(admin)
            .await
            .ok()
            .map(|count| count.n)
    }
}

/// What the stack has used so far, read at a phase's edges.
struct Usage {
    /// The relay's utime + stime in clock ticks.
    cpu_ticks: Option<u64>,
    /// PostgreSQL's, RabbitMQ's and the whole machine's busy time, in clock ticks.
    postgres_ticks: Option<u64>,
    rabbitmq_ticks: Option<u64>,
    machine_ticks: Option<u64>,
    /// The machine time the reading itself took after its CPU snapshot (`rabbitmqctl` starts an
    /// Erlang VM): it falls in the next phase, which leaves it out.
    reading_ticks: u64,
    /// WAL written by the server so far, in bytes.
    wal_bytes: Option<i64>,
    /// The broker's messages received (published), delivered and acknowledged so far.
    broker: Option<BrokerCounters>,
    /// Context switches of the relay's threads (of threads still running).
    switches: Option<u64>,
    /// Transactions committed in the bench's database.
    commits: Option<i64>,
    /// Rows written in the bench's database.
    rows: Option<Rows>,
    /// Statements run in the bench's database, when `pg_stat_statements` answers.
    statements: Option<i64>,
}

/// Reads the relay's usage after `STATS_DELAY`, so that PostgreSQL's counters include what the
/// relay did up to now. Read at the end of a phase, it includes the relay's work after the last
/// delivery arrived (recording the attempts) and a little idle time.
async fn usage(pid: u32, counters: &mut PgCounters) -> Usage {
    tokio::time::sleep(STATS_DELAY).await;
    let (cpu_ticks, postgres_ticks, rabbitmq_ticks, machine_ticks) = (
        cpu_ticks(pid),
        processes_ticks(&POSTGRES_PROCESSES),
        processes_ticks(&RABBITMQ_PROCESSES),
        machine_busy_ticks(),
    );
    let statements = match counters.statements.as_mut() {
        Ok(connection) => PgCounters::read_statements(connection).await.ok(),
        Err(_) => None,
    };
    let broker = broker_counters();
    Usage {
        cpu_ticks,
        postgres_ticks,
        rabbitmq_ticks,
        reading_ticks: machine_busy_ticks()
            .zip(machine_ticks)
            .map_or(0, |(now, then)| now.saturating_sub(then)),
        machine_ticks,
        switches: context_switches(pid),
        commits: counters.read_commits().await,
        rows: counters.read_rows().await,
        wal_bytes: counters.read_wal_bytes().await,
        statements,
        broker,
    }
}

/// The command names of PostgreSQL's processes: the postmaster and every backend and worker.
const POSTGRES_PROCESSES: [&str; 1] = ["postgres"];
/// The command names of RabbitMQ's processes: the Erlang VM and its helpers.
const RABBITMQ_PROCESSES: [&str; 4] = ["beam.smp", "epmd", "erl_child_setup", "inet_gethost"];

/// utime + stime of every process whose command name is one of `names`, plus what their exited
/// children used (cutime + cstime of the ones whose parent is not one of them: PostgreSQL's
/// postmaster holds its exited backends' time), in clock ticks.
fn processes_ticks(names: &[&str]) -> Option<u64> {
    let mut seen = HashMap::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("", |(_, name)| name);
        if !names.contains(&name) {
            continue;
        }
        // Field n is at n - 3 after the command name (see `cpu_ticks`).
        let fields: Vec<u64> = tail
            .split_whitespace()
            .skip(1)
            .map(|field| field.parse().unwrap_or(0))
            .collect();
        let field = |n: usize| fields.get(n - 4).copied().unwrap_or(0);
        seen.insert(
            pid,
            (field(4), field(14) + field(15), field(16) + field(17)),
        );
    }
    let total = seen
        .values()
        .map(|&(parent, own, children)| {
            own + if seen.contains_key(&(parent as u32)) {
                0
            } else {
                children
            }
        })
        .sum();
    Some(total)
}

/// The whole machine's busy time so far, in ticks: `/proc/stat`'s user, nice, system, irq and
/// softirq. Idle and I/O wait are not work; steal is time the hypervisor gave to another guest.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let times: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().unwrap_or(0))
        .collect();
    let busy = [0, 1, 2, 5, 6].iter().map(|&at| times.get(at).copied());
    busy.sum()
}

/// The broker's global message counters, summed over protocols and queue types.
#[derive(Debug, Clone, Copy, Default)]
struct BrokerCounters {
    received: u64,
    delivered: u64,
    acknowledged: u64,
}

/// Reads the broker's counters with `rabbitmqctl eval`; `None` when it cannot.
fn broker_counters() -> Option<BrokerCounters> {
    let output = Command::new("rabbitmqctl")
        .args(["eval", "rabbit_global_counters:overview()."])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    let text = String::from_utf8(output.stdout).ok()?;
    let sum = |key: &str| -> u64 {
        let mut total = 0;
        let mut rest = text.as_str();
        while let Some(at) = rest.find(key) {
            rest = &rest[at + key.len()..];
            if let Some(value) = rest.strip_prefix(" => ") {
                let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
                total += digits.parse::<u64>().unwrap_or(0);
            }
        }
        total
    };
    Some(BrokerCounters {
        received: sum("messages_received_total"),
        delivered: sum("messages_delivered_total"),
        acknowledged: sum("messages_acknowledged_total"),
    })
}

/// Prints what each delivered event of a phase cost the relay and PostgreSQL.
fn report_costs(before: &Usage, after: &Usage, delivered: usize, ticks_per_second: u64) {
    if delivered == 0 {
        println!("  relay cpu           n/a (nothing delivered)");
        return;
    }
    let per_event = |before: Option<i64>, after: Option<i64>| {
        Some((after? - before?) as f64 / delivered as f64)
    };
    match before.cpu_ticks.zip(after.cpu_ticks) {
        Some((before, after)) => {
            let seconds = after.saturating_sub(before) as f64 / ticks_per_second as f64;
            println!(
                "  relay cpu           {:.0} ms per 1000 delivered ({seconds:.2} s for {delivered})",
                seconds * 1000.0 * 1000.0 / delivered as f64
            );
        }
        None => println!("  relay cpu           n/a (/proc/<pid>/stat unreadable)"),
    }
    if let Some((before, after)) = before.switches.zip(after.switches) {
        println!(
            "  relay threads       {:.1} context switches per delivered event",
            after.saturating_sub(before) as f64 / delivered as f64
        );
    }
    let ms_per_1000 = |before: Option<u64>, after: Option<u64>, less: u64| {
        let ticks = after?.saturating_sub(before?).saturating_sub(less);
        Some(ticks as f64 / ticks_per_second as f64 * 1000.0 * 1000.0 / delivered as f64)
    };
    let relay = ms_per_1000(before.cpu_ticks, after.cpu_ticks, 0);
    let postgres = ms_per_1000(before.postgres_ticks, after.postgres_ticks, 0);
    let rabbitmq = ms_per_1000(before.rabbitmq_ticks, after.rabbitmq_ticks, 0);
    let machine = ms_per_1000(
        before.machine_ticks,
        after.machine_ticks,
        before.reading_ticks,
    );
    let shown = |ms: Option<f64>| ms.map_or("n/a".to_owned(), |ms| format!("{ms:.0}"));
    let others = machine.zip(relay).zip(postgres.zip(rabbitmq)).map(
        |((machine, relay), (postgres, rabbitmq))| (machine - relay - postgres - rabbitmq).max(0.0),
    );
    println!(
        "  stack cpu           ms per 1000 delivered: relay {}, postgres {}, rabbitmq {}, others {}, machine {}",
        shown(relay),
        shown(postgres),
        shown(rabbitmq),
        shown(others),
        shown(machine)
    );
    if let Some(wal) = per_event(before.wal_bytes, after.wal_bytes) {
        println!("  postgres wal        {wal:.0} bytes per delivered event");
    }
    if let Some((before, after)) = before.rows.zip(after.rows) {
        let updated = after.updated - before.updated;
        println!(
            "  postgres rows       {:.2} inserted, {:.2} updated per delivered event ({:.0} % of updates HOT)",
            (after.inserted - before.inserted) as f64 / delivered as f64,
            updated as f64 / delivered as f64,
            (after.hot - before.hot) as f64 * 100.0 / updated.max(1) as f64
        );
    }
    if let Some((before, after)) = before.broker.zip(after.broker) {
        let per = |then: u64, now: u64| now.saturating_sub(then) as f64 / delivered as f64;
        println!(
            "  rabbitmq            {:.2} published, {:.2} delivered, {:.2} acknowledged per delivered event",
            per(before.received, after.received),
            per(before.delivered, after.delivered),
            per(before.acknowledged, after.acknowledged)
        );
    }
    let commits =
        per_event(before.commits, after.commits).map_or("n/a".to_owned(), |c| format!("{c:.2}"));
    match per_event(before.statements, after.statements) {
        Some(statements) => println!(
            "  postgres            {commits} commits, {statements:.2} statements per delivered event"
        ),
        None => {
            println!("  postgres            {commits} commits per delivered event (statements n/a)")
        }
    }
}

/// A dashboard page following a subscription live: what it has read so far.
struct LivePage {
    reader: tokio::task::JoinHandle<()>,
    messages: std::sync::Arc<AtomicUsize>,
    bytes: std::sync::Arc<AtomicUsize>,
}

/// Logs in as the benchmark's user and opens the subscription's page's WebSocket, reading every
/// message as a browser would.
async fn open_live_page(address: &str, subscription: &str) -> LivePage {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let (_, cookie) = dashboard_session(address).await;
    let url = format!(
        "{}/ws?subscription={subscription}",
        address.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    request
        .headers_mut()
        .insert("origin", address.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let messages = std::sync::Arc::new(AtomicUsize::new(0));
    let bytes = std::sync::Arc::new(AtomicUsize::new(0));
    let (seen, read) = (messages.clone(), bytes.clone());
    let reader = tokio::spawn(async move {
        while let Some(Ok(message)) = socket.next().await {
            seen.fetch_add(1, Ordering::Relaxed);
            read.fetch_add(message.len(), Ordering::Relaxed);
        }
    });
    LivePage {
        reader,
        messages,
        bytes,
    }
}

/// What every phase reads and reports with, and the reading its costs start from.
struct Bench {
    client: reqwest::Client,
    arrivals: web::Data<Arrivals>,
    pid: u32,
    counters: PgCounters,
    ticks_per_second: u64,
    seconds: u64,
    mark: Usage,
}

impl Bench {
    /// An open-loop phase at `rate` events/s to `url`, each event to be delivered at each of
    /// the sink's `paths`; `what` is added to its name.
    async fn open_phase(&mut self, what: &str, url: &str, rate: u64, paths: &[String]) {
        let run = open_loop(&self.client, url, rate, self.seconds).await;
        let name = format!("open loop, {rate} events/s for {} s{what}", self.seconds);
        self.finish_phase(&name, run.started, &run.sent, paths, Some(&run))
            .await;
    }

    /// Waits for a phase's deliveries and reports it, its sender's schedule when it was an
    /// open loop, the relay's memory and what each delivery cost.
    async fn finish_phase(
        &mut self,
        name: &str,
        started: Instant,
        sent: &[Sent],
        paths: &[String],
        open_loop: Option<&OpenLoop>,
    ) {
        let finished = wait_for_deliveries(&self.arrivals, sent, paths).await;
        let (peak, rss) = memory_kib(self.pid);
        let now = usage(self.pid, &mut self.counters).await;
        let delivered = report(name, started, sent, &self.arrivals, paths, finished);
        if let Some(run) = open_loop {
            report_sender(run);
        }
        report_memory(peak, rss);
        report_costs(&self.mark, &now, delivered, self.ticks_per_second);
        self.mark = now;
    }
}

/// The relay's JSON API, as the benchmark's user.
struct Api {
    client: reqwest::Client,
    address: String,
    key: String,
}

impl Api {
    async fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let response = self
            .client
            .post(format!("{}{path}", self.address))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        assert_eq!(status, 201, "POST {path} {body}: {answer}");
        answer
    }

    /// A subscription on `source` delivering to `target` through `filter`.
    async fn subscribe(
        &self,
        source: &str,
        target: &str,
        filter: serde_json::Value,
    ) -> serde_json::Value {
        self.post(
            "/api/v1/subscriptions",
            serde_json::json!({
                "name": target, "target_url": target, "source_id": source, "filter": filter,
            }),
        )
        .await
    }

    async fn delete(&self, path: &str) {
        let response = self
            .client
            .delete(format!("{}{path}", self.address))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204, "DELETE {path}");
    }
}

#[tokio::main]
async fn main() {
    let plan = Plan::from_env();
    let relay = Relay::start(&[]).await;
    let address = relay.address.clone();
    let pid = relay.child.id();
    let key = relay.user_and_key();

    let arrivals = web::Data::new(Arrivals::default());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let sink_base = format!("http://{}", listener.local_addr().unwrap());
    let sink_url = format!("{sink_base}{HOOK}");
    let shared = arrivals.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .default_service(web::to(sink))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let sink_handle = server.handle();
    tokio::spawn(server);

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(plan.concurrency)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap();
    let subscription = subscribe(&client, &address, &key, "bench", &sink_url).await;
    let ingest_url = subscription["ingest_url"].as_str().unwrap().to_owned();
    let live_page = if plan.live {
        let id = subscription["id"].as_str().unwrap();
        Some(open_live_page(&address, id).await)
    } else {
        None
    };
    println!(
        "relay pid {pid}; machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let (ticks_per_second, told) = clock_ticks();
    if told {
        println!("relay cpu from /proc/{pid}/stat, {ticks_per_second} clock ticks/s (getconf)");
    } else {
        println!(
            "relay cpu from /proc/{pid}/stat, 100 clock ticks/s ASSUMED (getconf CLK_TCK failed)"
        );
    }
    let mut counters = PgCounters::connect(&relay.database).await;
    if counters.admin.is_none() {
        println!("postgres commits: unavailable (no connection to read pg_stat_database)");
    }
    match &counters.statements {
        Ok(_) => println!("postgres statements: from pg_stat_statements"),
        Err(why) => {
            println!("postgres statements: pg_stat_statements unavailable ({why}); commits only")
        }
    }

    // Warm-up: connections, caches, queue; not reported.
    let hook = [HOOK.to_owned()];
    let warm: Vec<Sent> = futures_util::stream::iter(0..500)
        .map(|_| send(&client, &ingest_url, Instant::now()))
        .buffer_unordered(16)
        .collect()
        .await;
    wait_for_deliveries(&arrivals, &warm, &hook).await;

    // Each phase's costs run from the reading before it to the reading after it, so the
    // readings between phases are shared and no work of the relay falls between two phases.
    let mut bench = Bench {
        mark: usage(pid, &mut counters).await,
        client: client.clone(),
        arrivals: arrivals.clone(),
        pid,
        counters,
        ticks_per_second,
        seconds: plan.seconds,
    };
    bench.open_phase("", &ingest_url, plan.rate, &hook).await;

    // The same, with subscriptions on the source whose filters no event passes: what
    // evaluating them costs ingest. They go again before the next phase.
    let api = Api {
        client: client.clone(),
        address: address.clone(),
        key: key.clone(),
    };
    // A build from before routing has no sources: the phases that need them are skipped.
    let source = subscription["source_id"].as_str().map(str::to_owned);
    match &source {
        Some(source) => {
            let mut not_matching = Vec::new();
            for n in 0..NOT_MATCHING {
                let created = api
                    .subscribe(
                        source,
                        &format!("{sink_base}/never/{n}"),
                        serde_json::json!({"body": {"type": format!("never.sent.{n}")}}),
                    )
                    .await;
                not_matching.push(created["id"].as_str().unwrap().to_owned());
            }
            bench
                .open_phase(
                    &format!(", {NOT_MATCHING} more subscriptions whose filters match nothing"),
                    &ingest_url,
                    plan.rate,
                    &hook,
                )
                .await;
            for id in &not_matching {
                api.delete(&format!("/api/v1/subscriptions/{id}")).await;
            }
        }
        None => println!("skipped: the phases with filters (this build has no sources)"),
    }

    bench
        .open_phase("", &ingest_url, plan.high_rate, &hook)
        .await;

    // Full speed: a fixed number of events, `concurrency` in flight, bounded in time.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120);
    let sent: Vec<Sent> = futures_util::stream::iter(0..plan.events)
        .take_while(|_| std::future::ready(Instant::now() < deadline))
        .map(|_| send(&client, &ingest_url, Instant::now()))
        .buffer_unordered(plan.concurrency)
        .collect()
        .await;
    bench
        .finish_phase(
            &format!(
                "full speed, {} events, {} in flight",
                plan.events, plan.concurrency
            ),
            started,
            &sent,
            &hook,
            None,
        )
        .await;

    if source.is_some() {
        // Fan-out: a source of its own, with subscriptions whose filters every event passes, each
        // delivering to its own path of the sink.
        let fanned: serde_json::Value = api
            .post("/api/v1/sources", serde_json::json!({"name": "fan-out"}))
            .await;
        let fan_paths: Vec<String> = (0..FAN_OUT).map(|n| format!("/fan/{n}")).collect();
        for path in &fan_paths {
            api.subscribe(
                fanned["id"].as_str().unwrap(),
                &format!("{sink_base}{path}"),
                serde_json::json!({"body": {"object": "event"}}),
            )
            .await;
        }
        bench
            .open_phase(
                &format!(", fanned out to {FAN_OUT} subscriptions"),
                fanned["ingest_url"].as_str().unwrap(),
                plan.fanout_rate,
                &fan_paths,
            )
            .await;
    }

    let duplicates = arrivals.requests.load(Ordering::Relaxed) - arrivals.at.lock().unwrap().len();
    println!("duplicate deliveries: {duplicates}");
    if let Some(page) = live_page {
        page.reader.abort();
        println!(
            "live page: {} messages, {:.1} KiB received",
            page.messages.load(Ordering::Relaxed),
            page.bytes.load(Ordering::Relaxed) as f64 / 1024.0
        );
    }

    // Its connection to the bench's database would otherwise only end when that is dropped.
    drop(bench);
    sink_handle.stop(false).await;
    relay.stop().await;
}
