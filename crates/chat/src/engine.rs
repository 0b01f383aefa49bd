//! The running chat engine.

use crate::command::Command;
use crate::event::Event;
use tokio::sync::mpsc;

/// The user interface's side of a running engine: requests go in, events come out.
pub struct ChatUi {
    /// Requests to the engine.
    pub commands: mpsc::Sender<Command>,
    /// Events from the engine; ends after [`Event::Stopped`].
    pub events: mpsc::Receiver<Event>,
}

/// Chat settings.
#[derive(Debug, Clone)]
pub struct ChatConfig {}
