//! Turns SIGINT and SIGTERM into a cancelled token: the one path every component stops by.

use slog::{Logger, info};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGINT or SIGTERM.
pub async fn cancel_on_signal(token: CancellationToken, log: Logger) -> std::io::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let name = tokio::select! {
        _ = terminate.recv() => "SIGTERM",
        _ = interrupt.recv() => "SIGINT",
        () = token.cancelled() => return Ok(()),
    };
    info!(log, "signal received; stopping"; "signal" => name);
    token.cancel();
    Ok(())
}
