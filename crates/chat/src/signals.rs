//! The signals that end the chat (SIGINT, SIGTERM, SIGHUP), as a channel, so that the
//! UIs leave the way `/quit` does: sessions ended, presence withdrawn, history closed.

use crate::ChatError;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// A signal asking the chat to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGINT (Ctrl-C in the line mode; the terminal UI reads Ctrl-C as a key).
    Interrupt,
    /// SIGTERM (`kill`, a service manager).
    Terminate,
    /// SIGHUP: the terminal went away (its window was closed).
    Hangup,
}

/// Starts listening; from now on these signals no longer kill the process but arrive on
/// the returned channel. Must be called inside a tokio runtime.
///
/// # Errors
/// [`ChatError::Start`] when a handler cannot be installed.
pub fn listen() -> Result<mpsc::Receiver<Signal>, ChatError> {
    let install = |kind: SignalKind| {
        signal(kind).map_err(|e| ChatError::Start(format!("installing a signal handler: {e}")))
    };
    let mut interrupt = install(SignalKind::interrupt())?;
    let mut terminate = install(SignalKind::terminate())?;
    let mut hangup = install(SignalKind::hangup())?;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let got = tokio::select! {
                Some(()) = interrupt.recv() => Signal::Interrupt,
                Some(()) = terminate.recv() => Signal::Terminate,
                Some(()) = hangup.recv() => Signal::Hangup,
                else => return,
            };
            if tx.send(got).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
