//! The plain line mode (`voidmesh chat --plain`): commands and messages are read one per
//! line, events are written one per line (see [`crate::Event`]'s `Display`). Made for
//! scripts and tests; the end of the input means `/quit`.

use crate::command::{parse_line, Command, Input, Target, HELP};
use crate::engine::ChatUi;
use crate::event::Event;
use crate::ChatError;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

/// Where typed lines go, following what the user and the peers do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CurrentTarget(Option<Target>);

impl CurrentTarget {
    /// The current target, if any.
    pub fn get(&self) -> Option<&Target> {
        self.0.as_ref()
    }

    /// Follows a command the user gave: `/chat` and `/join` switch to their target.
    pub fn on_command(&mut self, command: &Command) {
        match command {
            Command::Open(handle) => self.0 = Some(Target::User(handle.clone())),
            Command::Join(room) => self.0 = Some(Target::Room(room.clone())),
            _ => {}
        }
    }

    /// Follows an event: a session someone opens becomes current if nothing is; an
    /// ended session or a left room stops being current.
    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::SessionOpened {
                peer,
                by_peer: true,
            } if self.0.is_none() => {
                self.0 = Some(Target::User(peer.clone()));
            }
            Event::SessionEnded { peer, .. } if self.0 == Some(Target::User(peer.clone())) => {
                self.0 = None;
            }
            Event::Left(room) if self.0 == Some(Target::Room(room.clone())) => self.0 = None,
            _ => {}
        }
    }
}

/// Runs the line mode until the engine stops.
///
/// # Errors
/// [`ChatError::Terminal`] when the output cannot be written.
pub async fn run(
    mut ui: ChatUi,
    input: impl AsyncBufRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
) -> Result<(), ChatError> {
    let write_error = |e: std::io::Error| ChatError::Terminal(e.to_string());
    let mut lines = input.lines();
    let mut input_open = true;
    let mut current = CurrentTarget::default();
    loop {
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
                match parse_line(&line, current.get()) {
                    Ok(Input::Command(command)) => {
                        current.on_command(&command);
                        let quit = command == Command::Quit;
                        if ui.commands.send(command).await.is_err() {
                            return Ok(());
                        }
                        if quit {
                            input_open = false;
                        }
                    }
                    Ok(Input::Help) => {
                        for line in HELP.lines() {
                            output.write_all(format!("help {line}\n").as_bytes()).await.map_err(write_error)?;
                        }
                    }
                    Ok(Input::Nothing) => {}
                    Err(message) => {
                        output.write_all(format!("error {message}\n").as_bytes()).await.map_err(write_error)?;
                    }
                }
                output.flush().await.map_err(write_error)?;
            }
            event = ui.events.recv() => {
                let Some(event) = event else { return Ok(()) };
                current.on_event(&event);
                output.write_all(format!("{event}\n").as_bytes()).await.map_err(write_error)?;
                output.flush().await.map_err(write_error)?;
                if event == Event::Stopped {
                    return Ok(());
                }
            }
        }
    }
}
