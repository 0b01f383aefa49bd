//! The terminal UI (`voidmesh chat` without `--plain`): a header, the log of everything the
//! engine reports, a sidebar of open sessions and joined rooms, and an input line.
//!
//! The state lives in [`App`], which is pure: [`App::on_event`] takes engine events,
//! [`App::on_key`] takes key presses and returns what to do ([`Action`]), and
//! [`App::render`] draws a frame. [`run`] is a thin loop around it that owns the terminal.
//!
//! Keys: typing edits the input line (Left/Right, Home/End, Backspace/Delete, Ctrl-A/E,
//! Ctrl-U/W, Esc clears); Enter sends it; Up/Down walk the input history; PageUp/PageDown
//! scroll the log; Ctrl-C is `/quit` (twice: leave at once).

use crate::command::{parse_line, Command, Input, Target, HELP};
use crate::engine::ChatUi;
use crate::event::{clock, Event};
use crate::plain::CurrentTarget;
use crate::user::Handle;
use crate::ChatError;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};
use ratatui::{DefaultTerminal, Frame};
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::sync::mpsc;

/// Log entries kept; older ones are dropped.
pub const LOG_LIMIT: usize = 5000;
/// Typed lines remembered for Up/Down.
const INPUT_HISTORY_LIMIT: usize = 500;
/// Width of the sidebar, borders included.
const SIDEBAR_WIDTH: u16 = 26;
/// Below this terminal width the sidebar is not shown.
const SIDEBAR_MIN_TERMINAL_WIDTH: u16 = 60;

/// What the caller of [`App::on_key`] should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this command to the engine (its answer comes back as events).
    Command(Command),
    /// Leave at once, without waiting for the engine to stop (Ctrl-C while quitting).
    Quit,
}

/// Where the engine is in its life, as the header shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Before [`Event::Ready`].
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
    Failed(String),
}

/// One entry of the log (it may take several rows on screen).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A remark, in one style (most events, help, errors).
    Plain { text: String, style: Style },
    /// A line someone sent us, in a session (`room: None`) or a room.
    Message {
        room: Option<String>,
        from: Handle,
        at_ms: u64,
        text: String,
    },
    /// A line we sent, with what became of it.
    Own {
        to: Target,
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

impl Entry {
    fn plain(text: impl Into<String>, style: Style) -> Entry {
        Entry::Plain {
            text: text.into(),
            style,
        }
    }

    /// The entry as styled pieces; `\n` in a piece starts a new row.
    fn spans(&self) -> Vec<Span<'static>> {
        match self {
            Entry::Plain { text, style } => vec![Span::styled(clean(text, true), *style)],
            Entry::Message {
                room,
                from,
                at_ms,
                text,
            } => {
                let mut spans = vec![Span::styled(format!("{} ", clock(*at_ms)), INFO)];
                if let Some(room) = room {
                    spans.push(Span::styled(format!("#{room} "), ROOM));
                }
                spans.push(Span::styled(from.to_string(), SENDER));
                spans.push(Span::raw(": "));
                spans.push(Span::raw(clean(text, false)));
                spans
            }
            Entry::Own { to, text, delivery } => {
                let to_style = match to {
                    Target::User(_) => Style::new().add_modifier(Modifier::BOLD),
                    Target::Room(_) => ROOM,
                };
                let mut spans = vec![
                    Span::styled("you", ME),
                    Span::raw(" → "),
                    Span::styled(to.to_string(), to_style),
                    Span::raw(": "),
                    Span::raw(clean(text, false)),
                    Span::raw(" "),
                ];
                spans.push(match delivery {
                    Delivery::Pending => Span::styled("…", WARN),
                    Delivery::Delivered => Span::styled("✓", GOOD),
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
/// lines go. Pure: no terminal, no channels.
pub struct App {
    me: Handle,
    status: Status,
    /// Log entries, oldest first; `log[0]` is entry number `dropped`.
    log: VecDeque<Entry>,
    dropped: usize,
    /// Entry numbers of sent lines waiting for [`Event::Delivered`] / [`Event::Failed`].
    pending: HashMap<(Target, u64), usize>,
    sessions: Vec<Handle>,
    rooms: Vec<String>,
    current: CurrentTarget,
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
    /// A fresh UI for user `me` (the engine has not reported [`Event::Ready`] yet).
    pub fn new(me: Handle) -> App {
        App {
            me,
            status: Status::Starting,
            log: VecDeque::new(),
            dropped: 0,
            pending: HashMap::new(),
            sessions: Vec::new(),
            rooms: Vec::new(),
            current: CurrentTarget::default(),
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

    /// Where typed lines go now.
    pub fn current(&self) -> Option<&Target> {
        self.current.get()
    }

    /// The engine's state as the header shows it.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Open sessions, in the order they opened (as the sidebar lists them).
    pub fn sessions(&self) -> &[Handle] {
        &self.sessions
    }

    /// Joined rooms, in the order they were joined (as the sidebar lists them).
    pub fn rooms(&self) -> &[String] {
        &self.rooms
    }

    /// The input line as typed so far.
    pub fn input(&self) -> String {
        self.input.iter().collect()
    }

    /// The log as plain text, one string per entry (an entry may hold `\n`).
    pub fn log_text(&self) -> Vec<String> {
        self.log
            .iter()
            .map(|entry| entry.spans().iter().map(|s| s.content.as_ref()).collect())
            .collect()
    }

    /// Takes an event from the engine: logs it and follows it in the sidebar, the
    /// current target and the header.
    pub fn on_event(&mut self, event: Event) {
        self.current.on_event(&event);
        match event {
            Event::Ready { ref me, .. } => {
                self.me = me.clone();
                if self.status == Status::Starting {
                    self.status = Status::Ready;
                }
                self.push(Entry::plain(event.to_string(), GOOD));
            }
            Event::Info(_) => self.push(Entry::plain(event.to_string(), INFO)),
            Event::Found { .. } => self.push(Entry::plain(event.to_string(), GOOD)),
            Event::NotFound { .. } => self.push(Entry::plain(event.to_string(), WARN)),
            Event::SessionOpened { ref peer, .. } => {
                if !self.sessions.contains(peer) {
                    self.sessions.push(peer.clone());
                }
                self.push(Entry::plain(event.to_string(), GOOD));
            }
            Event::SessionEnded { ref peer, .. } => {
                self.sessions.retain(|s| s != peer);
                self.push(Entry::plain(event.to_string(), WARN));
            }
            Event::Joined(ref room) => {
                if !self.rooms.contains(room) {
                    self.rooms.push(room.clone());
                }
                self.push(Entry::plain(event.to_string(), GOOD));
            }
            Event::Left(ref room) => {
                self.rooms.retain(|r| r != room);
                self.push(Entry::plain(event.to_string(), WARN));
            }
            Event::Sessions {
                ref sessions,
                ref rooms,
            } => {
                // The engine's word is final: the sidebar follows it.
                self.sessions.clone_from(sessions);
                self.rooms.clone_from(rooms);
                self.push(Entry::plain(event.to_string(), Style::new()));
            }
            Event::Sent { to, seq, text } => {
                self.push(Entry::Own {
                    to: to.clone(),
                    text,
                    delivery: Delivery::Pending,
                });
                self.pending.insert((to, seq), self.newest());
            }
            Event::Delivered { ref to, seq } => {
                if !self.settle(to, seq, Delivery::Delivered) {
                    self.push(Entry::plain(event.to_string(), INFO));
                }
            }
            Event::Failed {
                ref to,
                seq,
                ref reason,
            } => {
                if !self.settle(to, seq, Delivery::Failed(reason.clone())) {
                    self.push(Entry::plain(event.to_string(), BAD));
                }
            }
            Event::Received {
                from,
                sent_at_ms,
                text,
            } => {
                self.push(Entry::Message {
                    room: None,
                    from,
                    at_ms: sent_at_ms,
                    text,
                });
            }
            Event::RoomMessage {
                room,
                from,
                sent_at_ms,
                text,
            } => {
                self.push(Entry::Message {
                    room: Some(room),
                    from,
                    at_ms: sent_at_ms,
                    text,
                });
            }
            Event::History { .. } => self.push(Entry::plain(event.to_string(), Style::new())),
            Event::Error(_) => self.push(Entry::plain(event.to_string(), BAD)),
            Event::Stopped => {
                self.status = Status::Stopped;
                self.push(Entry::plain(event.to_string(), WARN));
            }
        }
    }

    /// Takes a key press: edits the input line, scrolls, or (Enter, Ctrl-C) returns what
    /// to send. Commands that change the current target (`/chat`, `/join`) change it at
    /// once; `/help` and mistakes are answered in the log.
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
        let status = Line::from(Span::styled(
            format!("{} ", self.status.label()),
            bar.patch(self.status.style()),
        ))
        .right_aligned();
        frame.render_widget(Paragraph::new(status), area);
    }

    fn render_log(&self, frame: &mut Frame, area: Rect) {
        let title = if self.scroll > 0 {
            format!(" log (scrolled up {} — PgDn) ", self.scroll)
        } else {
            " log ".to_owned()
        };
        let block = Block::bordered().title(title);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        let width = usize::from(inner.width);
        let height = usize::from(inner.height);
        self.log_width.set(width);
        self.log_height.set(height);
        // Wrap from the newest entry back, as far as the view needs plus one page (so
        // that PageUp knows it may go on) rather than the whole log on every frame.
        let need = self.scroll + 2 * height;
        let mut rows_back: Vec<Line<'static>> = Vec::new();
        for entry in self.log.iter().rev() {
            if rows_back.len() >= need {
                break;
            }
            rows_back.extend(wrap(&entry.spans(), width).into_iter().rev());
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
        let current = self.current.get();
        let marked = |is_current: bool, text: String, style: Style| {
            if is_current {
                Line::from(vec![
                    Span::styled("▸ ", GOOD),
                    Span::styled(text, style.add_modifier(Modifier::BOLD)),
                ])
            } else {
                Line::from(vec![Span::raw("  "), Span::styled(text, style)])
            }
        };
        let heading = Style::new().add_modifier(Modifier::UNDERLINED);
        let mut lines = vec![Line::styled("Sessions", heading)];
        if self.sessions.is_empty() {
            lines.push(Line::styled("  (none)", INFO));
        }
        for handle in &self.sessions {
            let is_current = matches!(current, Some(Target::User(h)) if h == handle);
            lines.push(marked(is_current, handle.to_string(), Style::new()));
        }
        lines.push(Line::styled("Rooms", heading));
        if self.rooms.is_empty() {
            lines.push(Line::styled("  (none)", INFO));
        }
        for room in &self.rooms {
            let is_current = matches!(current, Some(Target::Room(r)) if r == room);
            lines.push(marked(is_current, format!("#{room}"), ROOM));
        }
        frame.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(" chats ")),
            area,
        );
    }

    fn render_input(&self, frame: &mut Frame, area: Rect) {
        let title = match self.current.get() {
            _ if self.status == Status::Quitting => " quitting… (Ctrl-C: leave now) ".to_owned(),
            Some(target) => format!(" to {target} "),
            None => " type /help ".to_owned(),
        };
        let block = Block::bordered().title(title);
        let inner = block.inner(area);
        frame.render_widget(block, area);
        if inner.width == 0 || inner.height == 0 {
            return;
        }
        // Scroll sideways so that the cursor stays in view.
        let room = usize::from(inner.width) - 1;
        let mut start = self.cursor;
        let mut before = 0;
        while start > 0 && before + char_width(self.input[start - 1]) <= room {
            start -= 1;
            before += char_width(self.input[start]);
        }
        let shown: String = self.input[start..].iter().collect();
        frame.render_widget(Paragraph::new(shown), inner);
        let x = inner.x + u16::try_from(before).unwrap_or(inner.width - 1);
        frame.set_cursor_position(Position::new(x, inner.y));
    }

    /// Adds an entry to the log.
    fn push(&mut self, entry: Entry) {
        if self.scroll > 0 {
            // Scrolled back: keep the view where it is.
            self.scroll += wrap(&entry.spans(), self.log_width.get()).len();
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

    fn submit(&mut self) -> Option<Action> {
        let line: String = self.input.drain(..).collect();
        self.cursor = 0;
        self.browsing = None;
        if !line.trim().is_empty() && self.input_history.last() != Some(&line) {
            self.input_history.push(line.clone());
            if self.input_history.len() > INPUT_HISTORY_LIMIT {
                self.input_history.remove(0);
            }
        }
        self.scroll = 0;
        match parse_line(&line, self.current.get()) {
            Ok(Input::Command(Command::Quit)) => self.quit(),
            Ok(Input::Command(command)) => {
                if matches!(self.status, Status::Quitting | Status::Stopped) {
                    self.push(Entry::plain("error quitting: nothing more is sent", BAD));
                    return None;
                }
                self.current.on_command(&command);
                Some(Action::Command(command))
            }
            Ok(Input::Help) => {
                for line in HELP.lines() {
                    self.push(Entry::plain(line, HELP_STYLE));
                }
                None
            }
            Ok(Input::Nothing) => None,
            Err(message) => {
                self.push(Entry::plain(format!("error {message}"), BAD));
                None
            }
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
    /// Raw mode and the alternate screen.
    fn enter() -> Result<TerminalGuard, ChatError> {
        match ratatui::try_init() {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
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
        let _ = ratatui::try_restore();
        let _ = self.terminal.show_cursor();
    }
}

fn terminal_error(e: std::io::Error) -> ChatError {
    ChatError::Terminal(e.to_string())
}

/// How often the key reader looks whether the UI is still there.
const KEY_POLL: Duration = Duration::from_millis(100);

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

/// Runs the terminal UI until the engine stops: after `/quit` (or Ctrl-C) once
/// [`Event::Stopped`] comes or the event channel closes, or at once on a second Ctrl-C.
/// The terminal is restored on every way out.
///
/// # Errors
/// [`ChatError::Terminal`] when the terminal cannot be set up, drawn on or read.
pub async fn run(mut ui: ChatUi, me: Handle) -> Result<(), ChatError> {
    let mut guard = TerminalGuard::enter()?;
    let mut keys = spawn_key_reader();
    let mut app = App::new(me);
    loop {
        guard
            .terminal
            .draw(|frame| app.render(frame))
            .map_err(terminal_error)?;
        tokio::select! {
            key = keys.recv() => {
                let key = match key {
                    Some(Ok(crossterm::event::Event::Key(key))) => key,
                    Some(Ok(_)) => continue, // resize and the like: just redraw
                    Some(Err(e)) => return Err(terminal_error(e)),
                    None => return Err(ChatError::Terminal("the key reader stopped".into())),
                };
                match app.on_key(key) {
                    Some(Action::Command(command)) => {
                        let engine_gone = ui.commands.send(command).await.is_err();
                        if engine_gone {
                            return Ok(());
                        }
                    }
                    Some(Action::Quit) => return Ok(()),
                    None => {}
                }
            }
            event = ui.events.recv() => {
                let Some(event) = event else { return Ok(()) };
                let stopped = event == Event::Stopped;
                app.on_event(event);
                if stopped {
                    return Ok(());
                }
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
