//! Structured logging: terminal lines in development, JSON lines in production.

use slog::{Drain, Level, LevelFilter, Logger, o};

use crate::config::{LogFormat, LogLevel};

/// Builds the root logger; every component takes a child of it. Lines below `level` are
/// dropped before they reach the writer's queue.
pub fn logger(format: LogFormat, level: LogLevel) -> Logger {
    let level = match level {
        LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warning => Level::Warning,
        LogLevel::Error => Level::Error,
    };
    let drain = match format {
        LogFormat::Term => {
            let decorator = slog_term::TermDecorator::new().stderr().build();
            slog_async::Async::new(slog_term::FullFormat::new(decorator).build().fuse())
                .chan_size(4096)
                .build()
                .fuse()
        }
        LogFormat::Json => slog_async::Async::new(
            slog_json::Json::new(std::io::stdout())
                .add_default_keys()
                .build()
                .fuse(),
        )
        .chan_size(4096)
        .build()
        .fuse(),
    };
    Logger::root(
        LevelFilter::new(drain, level).fuse(),
        o!("version" => env!("CARGO_PKG_VERSION")),
    )
}

/// A logger that drops everything, for tests that do not look at logs.
pub fn discard() -> Logger {
    Logger::root(slog::Discard, o!())
}
