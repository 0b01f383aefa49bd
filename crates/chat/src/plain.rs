//! The plain line mode (`voidmesh chat --plain`): commands and messages are read one per
//! line, events are written one per line (see [`crate::Event`]'s `Display`). Made for
//! scripts and tests. Commands other than `/help` and `/quit` are refused before `ready`;
//! the end of the input, SIGINT, SIGTERM and SIGHUP mean `/quit` (`stopped` is the last
//! line).

use crate::command::{parse_line, Command, Input, HELP};
use crate::conversations::Conversations;
use crate::engine::ChatUi;
use crate::event::Event;
use crate::signals::Signal;
use crate::ChatError;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// How long a signal waits for the engine to stop (it bounds each of its own steps).
const STOP_WAIT: Duration = Duration::from_secs(15);

/// Runs the line mode until the engine stops.
///
/// # Errors
/// [`ChatError::Terminal`] when the output cannot be written.
pub async fn run(
    mut ui: ChatUi,
    input: impl AsyncBufRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
    mut signals: mpsc::Receiver<Signal>,
) -> Result<(), ChatError> {
    let write_error = |e: std::io::Error| ChatError::Terminal(e.to_string());
    let mut lines = input.lines();
    let mut input_open = true;
    let mut ready = false;
    let mut conversations = Conversations::default();
    let mut stop_by: Option<tokio::time::Instant> = None;
    loop {
        let deadline =
            stop_by.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        let mut said = Vec::new();
        tokio::select! {
            line = lines.next_line(), if input_open => {
                let line = match line {
                    Ok(Some(line)) => line,
                    Ok(None) | Err(_) => {
                        input_open = false;
                        let _ = ui.commands.send(Command::Quit).await;
                        continue;
                    }
                };
                match parse_line(&line, conversations.current()) {
                    Ok(Input::Command(command)) => {
                        let quit = command == Command::Quit;
                        if !ready && !quit {
                            said.push("error not ready yet: wait for the `ready` line".to_owned());
                        } else {
                            conversations.on_command(&command);
                            if ui.commands.send(command).await.is_err() {
                                return Ok(());
                            }
                            if quit {
                                input_open = false;
                            }
                        }
                    }
                    Ok(Input::Help) => said.extend(HELP.lines().map(|l| format!("help {l}"))),
                    Ok(Input::Nothing) => {}
                    Err(message) => said.push(format!("error {message}")),
                }
            }
            event = ui.events.recv() => {
                let Some(event) = event else { return Ok(()) };
                conversations.on_event(&event);
                ready |= matches!(event, Event::Ready { .. });
                let stopped = event == Event::Stopped;
                said.push(event.to_string());
                if stopped {
                    write_lines(&mut output, &said).await.map_err(write_error)?;
                    return Ok(());
                }
            }
            Some(_) = signals.recv() => {
                input_open = false;
                stop_by.get_or_insert_with(|| tokio::time::Instant::now() + STOP_WAIT);
                let _ = ui.commands.send(Command::Quit).await;
            }
            _ = tokio::time::sleep_until(deadline), if stop_by.is_some() => {
                said.push("stopped".to_owned());
                write_lines(&mut output, &said).await.map_err(write_error)?;
                return Ok(());
            }
        }
        write_lines(&mut output, &said).await.map_err(write_error)?;
    }
}

async fn write_lines(
    output: &mut (impl AsyncWrite + Unpin),
    lines: &[String],
) -> std::io::Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    for line in lines {
        output.write_all(line.as_bytes()).await?;
        output.write_all(b"\n").await?;
    }
    output.flush().await
}
