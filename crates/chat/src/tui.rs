//! The terminal UI (`voidmesh chat` without `--plain`): a header (who you are, the network,
//! the time zone), the current conversation's lines, a sidebar of sessions and rooms with
//! unread counts, and an input line.
//!
//! The state lives in [`App`], which is pure: [`App::on_event`] takes engine events,
//! [`App::on_key`] and [`App::on_paste`] take input and return what to do ([`Action`]),
//! and [`App::render`] draws a frame. [`run`] is a thin loop around it that owns the
//! terminal; it draws before the peer has started, so Ctrl-C works from the first moment.
//!
//! Lines go where the user means: the log shows only the current conversation (and
//! remarks), so a reply is typed under the lines it answers; a line arriving elsewhere
//! marks its conversation unread in the sidebar, and Tab / Shift-Tab switch. See
//! [`crate::conversations`] for the rules.
//!
//! Keys: typing edits the input line (Left/Right, Home/End, Backspace/Delete, Ctrl-A/E,
//! Ctrl-U/W, Esc clears); Enter sends it (a pasted block: one message per line); Up/Down
//! walk the input history; PageUp/PageDown scroll the log; Tab switches conversations;
//! Ctrl-C is `/quit` (twice: leave at once).

use crate::clock;
use crate::command::{parse_line, Command, Input, Target, HELP};
use crate::conversations::Conversations;
use crate::engine::ChatUi;
use crate::event::{author, Absence, Event, NetState};
use crate::signals::Signal;
use crate::user::Handle;
use crate::ChatError;
use chrono::{DateTime, FixedOffset, NaiveDate};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::{DefaultTerminal, Frame};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;

/// Log entries kept; older ones are dropped.
pub const LOG_LIMIT: usize = 5000;
/// Typed lines remembered for Up/Down.
const INPUT_HISTORY_LIMIT: usize = 500;
/// Width of the sidebar, borders included.
const SIDEBAR_WIDTH: u16 = 28;
/// Below this terminal width the sidebar is not shown.
const SIDEBAR_MIN_TERMINAL_WIDTH: u16 = 60;

/// What the caller of [`App::on_key`] should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this command to the engine (its answer comes back as events).
    Command(Command),
    /// Send these commands, in order (a pasted block of several lines).
    Commands(Vec<Command>),
    /// Leave at once, without waiting for the engine to stop (Ctrl-C while quitting, or
    /// before the peer has started).
    Quit,
}

/// Where the engine is in its life, as the header shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Before [`Event::Ready`]: starting, joining.
    Starting,
    /// Presence published, running.
    Ready,
    /// `/quit` sent, waiting for [`Event::Stopped`].
    Quitting,
    /// [`Event::Stopped`] came.
    Stopped,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Starting => "starting",
            Status::Ready => "ready",
            Status::Quitting => "quitting",
            Status::Stopped => "stopped",
        }
    }

    fn style(self) -> Style {
        match self {
            Status::Starting | Status::Quitting => Style::new().fg(Color::Yellow),
            Status::Ready => Style::new().fg(Color::Green),
            Status::Stopped => Style::new().fg(Color::Red),
        }
    }
}

/// What became of a line we sent.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Delivery {
    Pending,
    Delivered,
    /// A room post went to this many gossip neighbours.
    Spread(usize),
    Failed(String),
}

/// One entry of the log (it may take several rows on screen).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A remark, in one style, shown in every conversation or only in `conv`.
    Plain {
        text: String,
        style: Style,
        conv: Option<Target>,
    },
    /// The date, when the day changes.
    Day(String),
    /// A line someone sent us, in a session (`room: None`) or a room.
    Message {
        room: Option<String>,
        from: Handle,
        at: DateTime<FixedOffset>,
        text: String,
    },
    /// A line we sent, with what became of it.
    Own {
        to: Target,
        at: DateTime<FixedOffset>,
        text: String,
        delivery: Delivery,
    },
}

const INFO: Style = Style::new().fg(Color::DarkGray);
const GOOD: Style = Style::new().fg(Color::Green);
const WARN: Style = Style::new().fg(Color::Yellow);
const BAD: Style = Style::new().fg(Color::Red);
const HELP_STYLE: Style = Style::new().fg(Color::Cyan);
const SENDER: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
const ME: Style = Style::new().fg(Color::Green).add_modifier(Modifier::BOLD);
const ROOM: Style = Style::new().fg(Color::Magenta);
const UNREAD: Style = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);

impl Entry {
    fn plain(text: impl Into<String>, style: Style) -> Entry {
        Entry::Plain {
            text: text.into(),
            style,
            conv: None,
        }
    }

    /// The conversation the entry belongs to (`None`: a remark shown everywhere).
    fn conv(&self) -> Option<Target> {
        match self {
            Entry::Plain { conv, .. } => conv.clone(),
            Entry::Day(_) => None,
            Entry::Message {
                room: Some(room), ..
            } => Some(Target::Room(room.clone())),
            Entry::Message { from, .. } => Some(Target::User(from.clone())),
            Entry::Own { to, .. } => Some(to.clone()),
        }
    }

    /// The entry as styled pieces; `\n` in a piece starts a new row. `all` is whether
    /// every conversation is shown (then each line names its own).
    fn spans(&self, all: bool) -> Vec<Span<'static>> {
        match self {
            Entry::Plain { text, style, .. } => vec![Span::styled(clean(text, true), *style)],
            Entry::Day(day) => vec![Span::styled(format!("── {day} ──"), INFO)],
            Entry::Message {
                room,
                from,
                at,
                text,
            } => {
                let mut spans = vec![Span::styled(format!("{} ", clock::time_of_day(at)), INFO)];
                if let (Some(room), true) = (room, all) {
                    spans.push(Span::styled(format!("#{room} "), ROOM));
                }
                spans.push(Span::styled(from.to_string(), SENDER));
                spans.push(Span::raw(": "));
                spans.push(Span::raw(clean(text, false)));
                spans
            }
            Entry::Own {
                to,
                at,
                text,
                delivery,
            } => {
                let mut spans = vec![
                    Span::styled(format!("{} ", clock::time_of_day(at)), INFO),
                    Span::styled("you", ME),
                ];
                if all {
                    let to_style = match to {
                        Target::User(_) => Style::new().add_modifier(Modifier::BOLD),
                        Target::Room(_) => ROOM,
                    };
                    spans.push(Span::raw(" → "));
                    spans.push(Span::styled(to.to_string(), to_style));
                }
                spans.push(Span::raw(": "));
                spans.push(Span::raw(clean(text, false)));
                spans.push(Span::raw(" "));
                spans.push(match delivery {
                    Delivery::Pending => Span::styled("…", WARN),
                    Delivery::Delivered => Span::styled("✓", GOOD),
                    Delivery::Spread(n) => Span::styled(
                        format!("↗ {n} neighbour{}", if *n == 1 { "" } else { "s" }),
                        INFO,
                    ),
                    Delivery::Failed(reason) => {
                        Span::styled(format!("✗ {}", clean(reason, false)), BAD)
                    }
                });
                spans
            }
        }
    }
}

/// `text` with control characters made harmless: tabs become spaces, line breaks are
/// kept only with `keep_newlines` (else shown as `↵`), the rest become `�`. Peers choose
/// their texts, so nothing they send may move the cursor or fake a row of its own.
fn clean(text: &str, keep_newlines: bool) -> String {
    text.chars()
        .map(|c| match c {
            '\n' if keep_newlines => '\n',
            '\n' => '↵',
            '\t' => ' ',
            c if c.is_control() => '�',
            c => c,
        })
        .collect()
}

/// Columns `c` takes on screen.
fn char_width(c: char) -> usize {
    let mut buf = [0u8; 4];
    Span::raw(&*c.encode_utf8(&mut buf)).width()
}

/// Breaks styled text into rows of at most `width` columns: after the last space that
/// fits, or inside a word longer than a row; `\n` always starts a new row.
fn wrap(spans: &[Span<'_>], width: usize) -> Vec<Line<'static>> {
    let width = width.max(1);
    let mut rows = Vec::new();
    let mut row: Vec<(char, Style)> = Vec::new();
    let mut row_width = 0;
    let mut last_space: Option<usize> = None;
    for span in spans {
        for c in span.content.chars() {
            if c == '\n' {
                rows.push(to_line(std::mem::take(&mut row)));
                row_width = 0;
                last_space = None;
                continue;
            }
            let w = char_width(c);
            if c == ' ' && row_width + w > width {
                // A space that does not fit is the break itself.
                rows.push(to_line(std::mem::take(&mut row)));
                row_width = 0;
                last_space = None;
                continue;
            }
            while w > 0 && row_width + w > width && !row.is_empty() {
                match last_space.take() {
                    Some(at) if at > 0 => {
                        let rest = row.split_off(at + 1);
                        row.pop(); // the space itself
                        rows.push(to_line(std::mem::replace(&mut row, rest)));
                        row_width = row.iter().map(|(c, _)| char_width(*c)).sum();
                    }
                    _ => {
                        rows.push(to_line(std::mem::take(&mut row)));
                        row_width = 0;
                    }
                }
            }
            row.push((c, span.style));
            row_width += w;
            if c == ' ' {
                last_space = Some(row.len() - 1);
            }
        }
    }
    rows.push(to_line(row));
    rows
}

/// Styled characters as a line, one span per run of one style.
fn to_line(chars: Vec<(char, Style)>) -> Line<'static> {
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut text = String::new();
    let mut style = None;
    for (c, s) in chars {
        if style.is_some_and(|st| st != s) {
            spans.push(Span::styled(
                std::mem::take(&mut text),
                style.unwrap_or_default(),
            ));
        }
        style = Some(s);
        text.push(c);
    }
    if !text.is_empty() {
        spans.push(Span::styled(text, style.unwrap_or_default()));
    }
    Line::from(spans)
}

/// The state of the terminal UI: everything shown, the input line, and where typed
/// lines go. Pure: no terminal, no channels, no clock (times come with the events).
pub struct App {
    me: Handle,
    status: Status,
    /// The network state and the number of peers, once reported.
    network: Option<(NetState, usize)>,
    /// The zone times are shown in (`None`: the local zone).
    zone: Option<FixedOffset>,
    /// Log entries, oldest first; `log[0]` is entry number `dropped`.
    log: VecDeque<Entry>,
    dropped: usize,
    /// The day of the last timed entry (a [`Entry::Day`] marks a change).
    last_day: Option<NaiveDate>,
    /// Entry numbers of sent lines waiting for [`Event::Delivered`] / [`Event::Failed`].
    pending: HashMap<(Target, u64), usize>,
    conversations: Conversations,
    /// Longest line sent, in bytes.
    max_message_bytes: usize,
    input: Vec<char>,
    cursor: usize,
    /// Lines entered, oldest first, and the place Up/Down are at (with the draft put aside).
    input_history: Vec<String>,
    browsing: Option<(usize, Vec<char>)>,
    /// Rows the log is scrolled up from its end.
    scroll: usize,
    /// Size of the log pane and how far it can scroll (at least), as of the last frame.
    log_width: Cell<usize>,
    log_height: Cell<usize>,
    max_scroll: Cell<usize>,
}

impl App {
    /// A fresh UI for user `me` (the engine has not reported [`Event::Ready`] yet), with
    /// times in the local zone.
    pub fn new(me: Handle) -> App {
        App {
            me,
            status: Status::Starting,
            network: None,
            zone: None,
            log: VecDeque::new(),
            dropped: 0,
            last_day: None,
            pending: HashMap::new(),
            conversations: Conversations::default(),
            max_message_bytes: crate::engine::ChatConfig::default().max_message_bytes,
            input: Vec::new(),
            cursor: 0,
            input_history: Vec::new(),
            browsing: None,
            scroll: 0,
            log_width: Cell::new(80),
            log_height: Cell::new(10),
            max_scroll: Cell::new(0),
        }
    }

    /// Shows times in `zone` instead of the local zone (for tests).
    pub fn with_zone(mut self, zone: FixedOffset) -> App {
        self.zone = Some(zone);
        self
    }

    /// Sets the longest line sent, in bytes (longer ones stay in the input line).
    pub fn set_max_message_bytes(&mut self, max: usize) {
        self.max_message_bytes = max;
    }

    /// Where typed lines go now.
    pub fn current(&self) -> Option<&Target> {
        self.conversations.current()
    }

    /// The engine's state as the header shows it.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Open sessions, in the order they opened (as the sidebar lists them).
    pub fn sessions(&self) -> &[Handle] {
        self.conversations.sessions()
    }

    /// Joined rooms, in the order they were joined (as the sidebar lists them).
    pub fn rooms(&self) -> &[String] {
        self.conversations.rooms()
    }

    /// Lines of `target` not seen yet.
    pub fn unread(&self, target: &Target) -> usize {
        self.conversations.unread(target)
    }

    /// The input line as typed so far.
    pub fn input(&self) -> String {
        self.input.iter().collect()
    }

    /// The log as plain text, one string per entry (an entry may hold `\n`), every
    /// conversation's included.
    pub fn log_text(&self) -> Vec<String> {
        self.log
            .iter()
            .map(|entry| {
                entry
                    .spans(true)
                    .iter()
                    .map(|s| s.content.as_ref())
                    .collect()
            })
            .collect()
    }

    fn at(&self, unix_ms: u64) -> DateTime<FixedOffset> {
        match self.zone {
            Some(zone) => clock::in_zone(unix_ms, zone),
            None => clock::local(unix_ms),
        }
    }

    /// Takes an event from the engine: logs it and follows it in the sidebar, the
    /// current target and the header.
    pub fn on_event(&mut self, event: Event) {
        self.conversations.on_event(&event);
        match event {
            Event::Ready { ref me, addr } => {
                self.me = me.clone();
                if self.status == Status::Starting {
                    self.status = Status::Ready;
                }
                self.push(Entry::plain(
                    format!("ready: others can find you as {me} (chat on {addr})"),
                    GOOD,
                ));
            }
            Event::Network { state, peers } => {
                let changed = self.network.map(|(s, _)| s) != Some(state);
                self.network = Some((state, peers));
                if changed {
                    let (text, style) = match state {
                        NetState::Joining => ("joining the network…".to_owned(), INFO),
                        NetState::Alone => (
                            "alone: no bootstrapper answered yet; retrying (others cannot find you until one does)"
                                .to_owned(),
                            WARN,
                        ),
                        NetState::First => (
                            "first peer of a new network: others join through you".to_owned(),
                            INFO,
                        ),
                        NetState::Joined => (format!("joined the network ({peers} peers)"), GOOD),
                    };
                    self.push(Entry::plain(text, style));
                }
            }
            Event::Info(text) => self.push(Entry::plain(text, INFO)),
            Event::Found { handle, addr } => {
                self.push(Entry::plain(format!("{handle} is online ({addr})"), GOOD))
            }
            Event::NotFound { handle, why } => {
                let text = match why {
                    Absence::NotFound => format!("{handle} not found"),
                    Absence::Gone => format!("{handle} has signed off"),
                    Absence::NotAuthentic(why) => {
                        format!("{handle}: what was found is not authentic ({why})")
                    }
                    Absence::NotAnswering(why) => format!("{handle} is not answering: {why}"),
                };
                self.push(Entry::plain(text, WARN));
            }
            Event::SessionOpened { peer, by_peer } => {
                let text = if by_peer {
                    let hint = if self.current() == Some(&Target::User(peer.clone())) {
                        ""
                    } else {
                        " (Tab to answer)"
                    };
                    format!("{peer} opened a session with you{hint}")
                } else {
                    format!("session with {peer} open")
                };
                self.push(Entry::plain(text, GOOD));
            }
            Event::SessionEnded { peer, by_peer } => {
                let text = if by_peer {
                    format!("{peer} ended the session")
                } else {
                    format!("session with {peer} ended")
                };
                self.push(Entry::plain(text, WARN));
            }
            Event::PeerGone { peer, silent_ms } => self.push(Entry::plain(
                format!(
                    "{peer} is not answering (nothing for {:.0} s): lines to them fail until they are back",
                    silent_ms as f64 / 1000.0
                ),
                BAD,
            )),
            Event::PeerBack { peer } => {
                self.push(Entry::plain(format!("{peer} answers again"), GOOD))
            }
            Event::Joined(room) => self.push(Entry::plain(format!("joined #{room}"), GOOD)),
            Event::Left(room) => self.push(Entry::plain(format!("left #{room}"), WARN)),
            Event::Sessions {
                sessions,
                gone,
                rooms,
            } => {
                let mut names: Vec<String> = sessions.iter().map(|s| s.to_string()).collect();
                names.extend(gone.iter().map(|s| format!("{s} (not answering)")));
                let list = |v: Vec<String>| {
                    if v.is_empty() {
                        "none".to_owned()
                    } else {
                        v.join(", ")
                    }
                };
                let rooms = rooms.iter().map(|r| format!("#{r}")).collect();
                self.push(Entry::plain(
                    format!("sessions: {}; rooms: {}", list(names), list(rooms)),
                    Style::new(),
                ));
            }
            Event::Sent {
                to,
                seq,
                at_ms,
                text,
            } => {
                let at = self.at(at_ms);
                self.push(Entry::Own {
                    to: to.clone(),
                    at,
                    text,
                    delivery: Delivery::Pending,
                });
                self.pending.insert((to, seq), self.newest());
            }
            Event::Delivered { to, seq } => {
                self.settle(&to, seq, Delivery::Delivered);
            }
            Event::Spread {
                room,
                seq,
                neighbours,
            } => {
                self.settle(&Target::Room(room), seq, Delivery::Spread(neighbours));
            }
            Event::Failed { to, seq, reason } => {
                if seq == 0 || !self.settle(&to, seq, Delivery::Failed(reason.clone())) {
                    self.push(Entry::plain(format!("{to}: {reason}"), BAD));
                }
            }
            Event::Received {
                from,
                sent_at_ms,
                text,
            } => {
                let at = self.at(sent_at_ms);
                self.push(Entry::Message {
                    room: None,
                    from,
                    at,
                    text,
                });
            }
            Event::RoomMessage {
                room,
                from,
                sent_at_ms,
                text,
            } => {
                let at = self.at(sent_at_ms);
                self.push(Entry::Message {
                    room: Some(room),
                    from,
                    at,
                    text,
                });
            }
            Event::History { target, entries } => {
                let mut text = format!("history with {target}: {} messages", entries.len());
                for e in &entries {
                    let at = self.at(e.at_ms);
                    text.push_str(&format!(
                        "\n  {} {}: {}",
                        at.format("%Y-%m-%d %H:%M"),
                        author(e),
                        clean(&e.text, false)
                    ));
                    if e.status == "failed" {
                        text.push_str(" ✗ not delivered");
                    }
                }
                self.push(Entry::plain(text, Style::new()));
            }
            Event::Error(text) => self.push(Entry::plain(format!("error: {text}"), BAD)),
            Event::Stopped => {
                self.status = Status::Stopped;
                self.push(Entry::plain("stopped", WARN));
            }
        }
    }

    /// Takes a key press: edits the input line, scrolls, switches conversations, or
    /// (Enter, Ctrl-C) returns what to send. Commands that change the current target
    /// (`/chat`, `/join`) change it at once; `/help` and mistakes are answered in the log.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        match key.code {
            KeyCode::Char('c') if ctrl => return self.quit(),
            KeyCode::Char('a') if ctrl => self.cursor = 0,
            KeyCode::Char('e') if ctrl => self.cursor = self.input.len(),
            KeyCode::Char('u') if ctrl => {
                self.input.drain(..self.cursor);
                self.cursor = 0;
            }
            KeyCode::Char('w') if ctrl => {
                let mut start = self.cursor;
                while start > 0 && self.input[start - 1] == ' ' {
                    start -= 1;
                }
                while start > 0 && self.input[start - 1] != ' ' {
                    start -= 1;
                }
                self.input.drain(start..self.cursor);
                self.cursor = start;
            }
            KeyCode::Char(c)
                if !ctrl && !key.modifiers.contains(KeyModifiers::ALT) && !c.is_control() =>
            {
                self.input.insert(self.cursor, c);
                self.cursor += 1;
            }
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                self.input.remove(self.cursor);
            }
            KeyCode::Delete if self.cursor < self.input.len() => {
                self.input.remove(self.cursor);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(self.input.len()),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.input.len(),
            KeyCode::Esc => {
                self.input.clear();
                self.cursor = 0;
                self.browsing = None;
            }
            KeyCode::Tab => {
                self.conversations.cycle(true);
                self.scroll = 0;
            }
            KeyCode::BackTab => {
                self.conversations.cycle(false);
                self.scroll = 0;
            }
            KeyCode::Up => self.history_back(),
            KeyCode::Down => self.history_forward(),
            KeyCode::PageUp => {
                let page = self.log_height.get().saturating_sub(1).max(1);
                self.scroll = (self.scroll + page).min(self.max_scroll.get());
            }
            KeyCode::PageDown => {
                let page = self.log_height.get().saturating_sub(1).max(1);
                self.scroll = self.scroll.saturating_sub(page);
            }
            KeyCode::Enter => return self.submit(),
            _ => {}
        }
        None
    }

    /// Takes pasted text (the terminal's bracketed paste): it goes into the input line as
    /// it is, line breaks included (shown as `↵`), and is sent only on Enter, one
    /// message per line. A single line break at the end is dropped.
    pub fn on_paste(&mut self, text: &str) {
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let text = text.strip_suffix('\n').unwrap_or(&text);
        for c in text.chars() {
            let c = match c {
                '\t' => ' ',
                '\n' => '\n',
                c if c.is_control() => continue,
                c => c,
            };
            self.input.insert(self.cursor, c);
            self.cursor += 1;
        }
    }

    /// Draws the whole screen into `frame`.
    pub fn render(&self, frame: &mut Frame) {
        let [header, body, input] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Min(3),
            Constraint::Length(3),
        ])
        .areas(frame.area());
        self.render_header(frame, header);
        if body.width >= SIDEBAR_MIN_TERMINAL_WIDTH {
            let [log, sidebar] =
                Layout::horizontal([Constraint::Min(20), Constraint::Length(SIDEBAR_WIDTH)])
                    .areas(body);
            self.render_log(frame, log);
            self.render_sidebar(frame, sidebar);
        } else {
            self.render_log(frame, body);
        }
        self.render_input(frame, input);
    }

    fn render_header(&self, frame: &mut Frame, area: Rect) {
        let bar = Style::new().add_modifier(Modifier::REVERSED);
        let title = Line::from(vec![
            Span::styled(" voidmesh chat — ", bar),
            Span::styled(self.me.to_string(), bar.add_modifier(Modifier::BOLD)),
        ]);
        frame.render_widget(Paragraph::new(title).style(bar), area);
        let (network, network_style) = match self.network {
            None => ("starting".to_owned(), WARN),
            Some((NetState::Joining, _)) => ("joining…".to_owned(), WARN),
            Some((NetState::Alone, _)) => ("alone (retrying)".to_owned(), BAD),
            Some((NetState::First, _)) => ("new network".to_owned(), INFO),
            Some((NetState::Joined, n)) => {
                (format!("{n} peer{}", if n == 1 { "" } else { "s" }), GOOD)
            }
        };
        let zone = clock::zone(&self.at(0));
        let status = Line::from(vec![
            Span::styled(network, bar.patch(network_style)),
            Span::styled(format!(" · {zone} · "), bar),
            Span::styled(
                format!("{} ", self.status.label()),
                bar.patch(self.status.style()),
            ),
        ])
        .right_aligned();
        frame.render_widget(Paragraph::new(status), area);
    }

    /// Whether `entry` is shown: with a current conversation, its entries and remarks.
    fn shows(&self, entry: &Entry) -> bool {
        match (self.current(), entry.conv()) {
            (None, _) | (_, None) => true,
            (Some(current), Some(conv)) => *current == conv,
        }
    }

    fn render_log(&self, frame: &mut Frame, area: Rect) {
        let what = match self.current() {
            Some(target) => format!(" {target} "),
            None => " all ".to_owned(),
        };
        let title = if self.scroll > 0 {
            format!("{what}(scrolled up {} — PgDn) ", self.scroll)
        } else {
            what
        };
        let block = Block::bordered().title(title);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let width = usize::from(inner.width);
        let height = usize::from(inner.height);
        self.log_width.set(width);
        self.log_height.set(height);
        let all = self.current().is_none();
        // Wrap from the newest entry back, as far as the view needs plus one page (so
        // that PageUp knows it may go on) rather than the whole log on every frame.
        let need = self.scroll + 2 * height;
        let mut rows_back: Vec<Line<'static>> = Vec::new();
        for entry in self.log.iter().rev().filter(|e| self.shows(e)) {
            if rows_back.len() >= need {
                break;
            }
            rows_back.extend(wrap(&entry.spans(all), width).into_iter().rev());
        }
        let max_scroll = rows_back.len().saturating_sub(height);
        self.max_scroll.set(max_scroll);
        let scroll = self.scroll.min(max_scroll);
        let mut visible: Vec<Line<'static>> =
            rows_back.into_iter().skip(scroll).take(height).collect();
        visible.reverse();
        frame.render_widget(Paragraph::new(visible), inner);
    }

    fn render_sidebar(&self, frame: &mut Frame, area: Rect) {
        let current = self.current();
        let line = |target: Target, text: String, style: Style, gone: bool| {
            let is_current = current == Some(&target);
            let mut spans = if is_current {
                vec![
                    Span::styled("▸ ", GOOD),
                    Span::styled(text, style.add_modifier(Modifier::BOLD)),
                ]
            } else {
                vec![Span::raw("  "), Span::styled(text, style)]
            };
            if gone {
                spans.push(Span::styled(" ✗gone", BAD));
            }
            let unread = self.unread(&target);
            if unread > 0 {
                spans.push(Span::styled(format!(" ●{unread}"), UNREAD));
            }
            Line::from(spans)
        };
        let heading = Style::new().add_modifier(Modifier::UNDERLINED);
        let mut lines = vec![Line::styled("Sessions", heading)];
        if self.sessions().is_empty() {
            lines.push(Line::styled("  (none)", INFO));
        }
        for handle in self.sessions() {
            let gone = self.conversations.is_gone(handle);
            let style = if gone { INFO } else { Style::new() };
            lines.push(line(
                Target::User(handle.clone()),
                handle.to_string(),
                style,
                gone,
            ));
        }
        lines.push(Line::styled("Rooms", heading));
        if self.rooms().is_empty() {
            lines.push(Line::styled("  (none)", INFO));
        }
        for room in self.rooms() {
            lines.push(line(
                Target::Room(room.clone()),
                format!("#{room}"),
                ROOM,
                false,
            ));
        }
        frame.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(" chats (Tab) ")),
            area,
        );
    }

    fn render_input(&self, frame: &mut Frame, area: Rect) {
        let title = match self.current() {
            _ if self.status == Status::Quitting => " quitting… (Ctrl-C: leave now) ".to_owned(),
            Some(Target::User(h)) if self.conversations.is_gone(h) => {
                format!(" to {h} (not answering) ")
            }
            Some(target) => format!(" to {target} "),
            None => " type /help ".to_owned(),
        };
        let block = Block::bordered().title(title);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        if inner.width == 0 || inner.height == 0 {
            return;
        }
        // Scroll sideways so that the cursor stays in view; pasted line breaks show as ↵.
        let shown_char = |c: char| if c == '\n' { '↵' } else { c };
        let room = usize::from(inner.width) - 1;
        let mut start = self.cursor;
        let mut before = 0;
        while start > 0 && before + char_width(shown_char(self.input[start - 1])) <= room {
            start -= 1;
            before += char_width(shown_char(self.input[start]));
        }
        let shown: String = self.input[start..].iter().map(|&c| shown_char(c)).collect();
        frame.render_widget(Paragraph::new(shown), inner);
        let x = inner.x + u16::try_from(before).unwrap_or(inner.width - 1);
        frame.set_cursor_position(Position::new(x, inner.y));
    }

    /// Adds an entry to the log (after a date line if its day is a new one).
    fn push(&mut self, entry: Entry) {
        let day = match &entry {
            Entry::Message { at, .. } | Entry::Own { at, .. } => Some(at.date_naive()),
            _ => None,
        };
        if let Some(day) = day {
            if self.last_day != Some(day) {
                self.last_day = Some(day);
                let at = match &entry {
                    Entry::Message { at, .. } | Entry::Own { at, .. } => *at,
                    _ => return,
                };
                self.push(Entry::Day(clock::day(&at)));
            }
        }
        if self.scroll > 0 && self.shows(&entry) {
            // Scrolled back: keep the view where it is.
            let all = self.current().is_none();
            self.scroll += wrap(&entry.spans(all), self.log_width.get()).len();
        }
        self.log.push_back(entry);
        if self.log.len() > LOG_LIMIT {
            self.log.pop_front();
            self.dropped += 1;
            let dropped = self.dropped;
            self.pending.retain(|_, number| *number >= dropped);
        }
    }

    /// The number of the newest log entry.
    fn newest(&self) -> usize {
        (self.dropped + self.log.len()).saturating_sub(1)
    }

    /// Marks the sent line `(to, seq)` delivered or failed; false if it is not in the log.
    fn settle(&mut self, to: &Target, seq: u64, outcome: Delivery) -> bool {
        let Some(number) = self.pending.remove(&(to.clone(), seq)) else {
            return false;
        };
        match number
            .checked_sub(self.dropped)
            .and_then(|i| self.log.get_mut(i))
        {
            Some(Entry::Own { delivery, .. }) => {
                *delivery = outcome;
                true
            }
            _ => false,
        }
    }

    fn quit(&mut self) -> Option<Action> {
        match self.status {
            Status::Quitting | Status::Stopped => Some(Action::Quit),
            Status::Starting | Status::Ready => {
                self.status = Status::Quitting;
                Some(Action::Command(Command::Quit))
            }
        }
    }

    /// Marks the UI as quitting (a signal asked for it).
    pub fn quitting(&mut self) {
        if self.status != Status::Stopped {
            self.status = Status::Quitting;
        }
    }

    fn submit(&mut self) -> Option<Action> {
        let line: String = self.input.iter().collect();
        let parts: Vec<&str> = line.split('\n').filter(|l| !l.trim().is_empty()).collect();
        if let Some((n, too_long)) = parts
            .iter()
            .enumerate()
            .find(|(_, p)| p.len() > self.max_message_bytes)
        {
            let which = if parts.len() > 1 {
                format!("line {} of the paste", n + 1)
            } else {
                "the line".to_owned()
            };
            self.push(Entry::plain(
                format!(
                    "error: not sent: {which} is {} bytes, the limit is {} (it stays in the input line)",
                    too_long.len(),
                    self.max_message_bytes
                ),
                BAD,
            ));
            return None;
        }
        self.input.clear();
        self.cursor = 0;
        self.browsing = None;
        if !line.trim().is_empty() && self.input_history.last() != Some(&line) {
            self.input_history.push(line.clone());
            if self.input_history.len() > INPUT_HISTORY_LIMIT {
                self.input_history.remove(0);
            }
        }
        self.scroll = 0;
        let mut commands = Vec::new();
        for part in parts {
            match parse_line(part, self.current()) {
                Ok(Input::Command(Command::Quit)) => return self.quit(),
                Ok(Input::Command(command)) => {
                    if matches!(self.status, Status::Quitting | Status::Stopped) {
                        self.push(Entry::plain("error: quitting: nothing more is sent", BAD));
                        return None;
                    }
                    self.conversations.on_command(&command);
                    commands.push(command);
                }
                Ok(Input::Help) => {
                    for line in HELP.lines() {
                        self.push(Entry::plain(line, HELP_STYLE));
                    }
                }
                Ok(Input::Nothing) => {}
                Err(message) => {
                    self.push(Entry::plain(format!("error: {message}"), BAD));
                    break;
                }
            }
        }
        match commands.len() {
            0 => None,
            1 => commands.pop().map(Action::Command),
            _ => Some(Action::Commands(commands)),
        }
    }

    fn history_back(&mut self) {
        let at = match &self.browsing {
            Some((0, _)) => return,
            Some((at, _)) => at - 1,
            None if self.input_history.is_empty() => return,
            None => {
                let draft = std::mem::take(&mut self.input);
                self.browsing = Some((self.input_history.len(), draft));
                self.input_history.len() - 1
            }
        };
        if let Some((place, _)) = &mut self.browsing {
            *place = at;
        }
        self.set_input(self.input_history[at].chars().collect());
    }

    fn history_forward(&mut self) {
        let Some((at, draft)) = &mut self.browsing else {
            return;
        };
        if *at + 1 < self.input_history.len() {
            *at += 1;
            let line = self.input_history[*at].chars().collect();
            self.set_input(line);
        } else {
            let draft = std::mem::take(draft);
            self.browsing = None;
            self.set_input(draft);
        }
    }

    fn set_input(&mut self, input: Vec<char>) {
        self.input = input;
        self.cursor = self.input.len();
    }
}

/// Restores the terminal when dropped, whichever way [`run`] ends (ratatui's panic hook
/// restores it before a panic message is printed, too).
struct TerminalGuard {
    terminal: DefaultTerminal,
}

impl TerminalGuard {
    /// Raw mode, the alternate screen and bracketed paste.
    fn enter() -> Result<TerminalGuard, ChatError> {
        match ratatui::try_init() {
            Ok(terminal) => {
                let _ =
                    crossterm::execute!(std::io::stdout(), crossterm::event::EnableBracketedPaste);
                Ok(TerminalGuard { terminal })
            }
            Err(e) => {
                // Raw mode may be on even though the alternate screen failed.
                let _ = ratatui::try_restore();
                Err(terminal_error(e))
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableBracketedPaste);
        let _ = ratatui::try_restore();
        let _ = self.terminal.show_cursor();
    }
}

fn terminal_error(e: std::io::Error) -> ChatError {
    ChatError::Terminal(e.to_string())
}

/// How often the key reader looks whether the UI is still there.
const KEY_POLL: Duration = Duration::from_millis(100);
/// How long a signal waits for the engine to stop (it bounds each of its own steps).
const STOP_WAIT: Duration = Duration::from_secs(15);

/// Reads terminal events on a thread of its own (crossterm's reads block) and forwards
/// them; it ends when the receiver is gone or the terminal fails.
fn spawn_key_reader() -> mpsc::Receiver<std::io::Result<crossterm::event::Event>> {
    let (tx, rx) = mpsc::channel(64);
    let spawned = std::thread::Builder::new()
        .name("chat-keys".into())
        .spawn(move || loop {
            if tx.is_closed() {
                return;
            }
            let event = match crossterm::event::poll(KEY_POLL) {
                Ok(false) => continue,
                Ok(true) => crossterm::event::read(),
                Err(e) => Err(e),
            };
            let failed = event.is_err();
            if tx.blocking_send(event).is_err() || failed {
                return;
            }
        });
    if let Err(e) = spawned {
        // No reader: `rx` reports the failure, then ends.
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(Err(e));
        return rx;
    }
    rx
}

/// Runs the terminal UI: draws at once, then starts the peer with `start` (which yields
/// something to keep, `T`, and the engine's side) while keys already work, and runs until
/// the engine stops: after `/quit`, Ctrl-C or a signal once [`Event::Stopped`] comes, or
/// at once on a second Ctrl-C (or Ctrl-C before the peer has started; then `None` is
/// returned). A signal quits like `/quit`; SIGHUP stops drawing (the terminal is gone).
/// The terminal is restored on every way out.
///
/// # Errors
/// [`ChatError::Terminal`] when the terminal cannot be set up or read; an error of
/// `start`.
pub async fn run<T>(
    me: Handle,
    start: impl Future<Output = Result<(T, ChatUi), ChatError>>,
    mut signals: mpsc::Receiver<Signal>,
) -> Result<Option<T>, ChatError> {
    let mut guard = TerminalGuard::enter()?;
    let mut keys = spawn_key_reader();
    let mut app = App::new(me);
    let mut start = std::pin::pin!(start);
    let mut started: Option<(T, ChatUi)> = None;
    // Commands given before the engine is up, sent once it is.
    let mut early: Vec<Command> = Vec::new();
    let mut headless = false;
    let mut stop_by: Option<tokio::time::Instant> = None;
    loop {
        if !headless && guard.terminal.draw(|frame| app.render(frame)).is_err() {
            // The terminal is gone (SIGHUP may be on its way): leave as `/quit` does.
            headless = true;
            stop_by.get_or_insert_with(|| tokio::time::Instant::now() + STOP_WAIT);
            early.push(Command::Quit);
        }
        if let Some((_, ui)) = &started {
            for command in early.drain(..) {
                let _ = ui.commands.send(command).await;
            }
        }
        let deadline =
            stop_by.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            outcome = &mut start, if started.is_none() => {
                let (kept, ui) = outcome?;
                app.set_max_message_bytes(ui.max_message_bytes);
                started = Some((kept, ui));
            }
            key = keys.recv(), if !headless => {
                let event = match key {
                    Some(Ok(event)) => event,
                    Some(Err(e)) => return Err(terminal_error(e)),
                    None => return Err(ChatError::Terminal("the key reader stopped".into())),
                };
                let action = match event {
                    crossterm::event::Event::Key(key) => app.on_key(key),
                    crossterm::event::Event::Paste(text) => {
                        app.on_paste(&text);
                        None
                    }
                    _ => None, // resize and the like: just redraw
                };
                let commands = match action {
                    Some(Action::Command(command)) => vec![command],
                    Some(Action::Commands(commands)) => commands,
                    Some(Action::Quit) => return Ok(started.map(|(kept, _)| kept)),
                    None => Vec::new(),
                };
                if started.is_none() && commands.contains(&Command::Quit) {
                    // Nothing has started that needs stopping.
                    return Ok(None);
                }
                early.extend(commands);
            }
            event = async { started.as_mut()?.1.events.recv().await }, if started.is_some() => {
                let Some(event) = event else { return Ok(started.map(|(kept, _)| kept)) };
                let stopped = event == Event::Stopped;
                app.on_event(event);
                if stopped {
                    if !headless {
                        let _ = guard.terminal.draw(|frame| app.render(frame));
                    }
                    return Ok(started.map(|(kept, _)| kept));
                }
            }
            Some(signal) = signals.recv() => {
                if started.is_none() {
                    return Ok(None);
                }
                app.quitting();
                if signal == Signal::Hangup {
                    headless = true;
                }
                stop_by.get_or_insert_with(|| tokio::time::Instant::now() + STOP_WAIT);
                early.push(Command::Quit);
            }
            _ = tokio::time::sleep_until(deadline), if stop_by.is_some() => {
                return Ok(started.map(|(kept, _)| kept));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(rows: &[Line<'_>]) -> Vec<String> {
        rows.iter()
            .map(|l| l.spans.iter().map(|s| s.content.as_ref()).collect())
            .collect()
    }

    #[test]
    fn wrap_breaks_at_spaces_and_inside_long_words() {
        let spans = [
            Span::raw("hello big world "),
            Span::styled("abcdefghijkl", BAD),
        ];
        assert_eq!(
            text(&wrap(&spans, 10)),
            ["hello big", "world", "abcdefghij", "kl"]
        );
        assert_eq!(text(&wrap(&[Span::raw("a\nb")], 10)), ["a", "b"]);
        assert_eq!(text(&wrap(&[Span::raw("")], 10)), [""]);
        let styled = wrap(&[Span::raw("ab "), Span::styled("cd", BAD)], 80);
        assert_eq!(styled[0].spans.len(), 2);
        assert_eq!(styled[0].spans[1].style, BAD);
    }

    #[test]
    fn peer_text_cannot_carry_control_characters() {
        assert_eq!(clean("a\x1b[2Jb\nc\td", false), "a�[2Jb↵c d");
        assert_eq!(clean("a\nb", true), "a\nb");
    }
}
