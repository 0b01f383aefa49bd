//! What a user can ask for, and how a typed line becomes a request. Shared by the plain
//! line mode and the terminal UI.

use crate::user::{check_name, Handle};
use std::fmt;

/// Where a line of text goes: a user (in a session) or a public room.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A user, by handle.
    User(Handle),
    /// A room, by name (without `#`).
    Room(String),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::User(handle) => write!(f, "{handle}"),
            Target::Room(room) => write!(f, "#{room}"),
        }
    }
}

/// A request to the chat engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/find name#id`: look the user up.
    Find(Handle),
    /// `/chat name#id`: open a session.
    Open(Handle),
    /// A typed line (to the current target) or `/msg TARGET text`.
    Send {
        /// Where it goes.
        to: Target,
        /// The text.
        text: String,
    },
    /// `/end name#id` (or `/end` for the current session).
    End(Handle),
    /// `/sessions`: list open sessions and joined rooms.
    Sessions,
    /// `/history name#id` or `/history #room`.
    History(Target),
    /// `/join #room`.
    Join(String),
    /// `/leave #room`.
    Leave(String),
    /// `/quit`: end sessions, withdraw presence, stop.
    Quit,
}

/// What `/help` prints.
pub const HELP: &str = "\
/find name#id       look a user up
/chat name#id       open a session (typed lines then go there)
/msg TARGET text    send one line to name#id or #room
/end [name#id]      end a session (default: the current one)
/sessions           list open sessions and joined rooms
/history TARGET     show past messages with name#id or #room
/join #room         join a public room (typed lines then go there)
/leave #room        leave a room
/help               this list
/quit               end everything and withdraw presence";

/// The outcome of reading one typed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Something for the engine.
    Command(Command),
    /// `/help`: show [`HELP`].
    Help,
    /// An empty line: nothing to do.
    Nothing,
}

/// Reads one typed line. A line not starting with `/` is text for `current`.
///
/// # Errors
/// A message for the user: unknown command, missing or malformed argument, text with no
/// current session or room.
pub fn parse_line(line: &str, current: Option<&Target>) -> Result<Input, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(Input::Nothing);
    }
    let Some(rest) = line.strip_prefix('/') else {
        let to = current
            .cloned()
            .ok_or("no open session or room: use /chat name#id or /join #room first")?;
        return Ok(Input::Command(Command::Send {
            to,
            text: line.to_owned(),
        }));
    };
    let (verb, args) = rest.split_once(' ').unwrap_or((rest, ""));
    let args = args.trim();
    let command = match verb {
        "help" => return Ok(Input::Help),
        "find" => Command::Find(handle_arg(args)?),
        "chat" => Command::Open(handle_arg(args)?),
        "end" => match (args, current) {
            ("", Some(Target::User(handle))) => Command::End(handle.clone()),
            ("", _) => return Err("/end needs name#id (no current session)".into()),
            (arg, _) => Command::End(handle_arg(arg)?),
        },
        "sessions" => Command::Sessions,
        "history" => Command::History(target_arg(args)?),
        "join" => Command::Join(room_arg(args)?),
        "leave" => Command::Leave(room_arg(args)?),
        "msg" => {
            let (to, text) = args
                .split_once(' ')
                .ok_or("usage: /msg name#id|#room text")?;
            Command::Send {
                to: target_arg(to)?,
                text: text.to_owned(),
            }
        }
        "quit" | "exit" => Command::Quit,
        other => return Err(format!("unknown command /{other} (try /help)")),
    };
    Ok(Input::Command(command))
}

fn handle_arg(arg: &str) -> Result<Handle, String> {
    if arg.is_empty() {
        return Err("this command needs name#id".into());
    }
    arg.parse().map_err(|e: crate::ChatError| e.to_string())
}

fn room_arg(arg: &str) -> Result<String, String> {
    let room = arg.strip_prefix('#').unwrap_or(arg);
    check_name(room).map_err(|e| e.to_string())?;
    Ok(room.to_owned())
}

fn target_arg(arg: &str) -> Result<Target, String> {
    if arg.starts_with('#') {
        Ok(Target::Room(room_arg(arg)?))
    } else {
        Ok(Target::User(handle_arg(arg)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bob() -> Handle {
        "bob#abcdefghij".parse().unwrap()
    }

    #[test]
    fn commands_parse() {
        assert_eq!(
            parse_line("/find bob#abcdefghij", None),
            Ok(Input::Command(Command::Find(bob())))
        );
        assert_eq!(
            parse_line("/chat bob#ABCDEFGHIJ", None),
            Ok(Input::Command(Command::Open(bob())))
        );
        assert_eq!(
            parse_line("/join #rust", None),
            Ok(Input::Command(Command::Join("rust".into())))
        );
        assert_eq!(
            parse_line("/msg #rust hi there", None),
            Ok(Input::Command(Command::Send {
                to: Target::Room("rust".into()),
                text: "hi there".into()
            }))
        );
        assert_eq!(parse_line("/help", None), Ok(Input::Help));
        assert_eq!(parse_line("   ", None), Ok(Input::Nothing));
    }

    #[test]
    fn text_goes_to_the_current_target() {
        let current = Target::User(bob());
        assert_eq!(
            parse_line("hello", Some(&current)),
            Ok(Input::Command(Command::Send {
                to: current.clone(),
                text: "hello".into()
            }))
        );
        assert_eq!(
            parse_line("/end", Some(&current)),
            Ok(Input::Command(Command::End(bob())))
        );
        assert!(parse_line("hello", None).is_err());
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(parse_line("/find bob", None)
            .unwrap_err()
            .contains("name#id"));
        assert!(parse_line("/frobnicate", None)
            .unwrap_err()
            .contains("unknown command"));
        assert!(parse_line("/join #no spaces", None).is_err());
        assert!(parse_line("/msg bob#abcdefghij", None).is_err());
    }
}
