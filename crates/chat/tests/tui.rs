//! The terminal UI, driven by scripted keys and engine events and drawn on ratatui's
//! test backend.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;
use voidmesh_chat::command::HELP;
use voidmesh_chat::tui::{Action, App, Status};
use voidmesh_chat::{Command, Event, Handle, Target};

fn alice() -> Handle {
    "alice#bcdefghijk".parse().unwrap()
}

fn bob() -> Handle {
    "bob#abcdefghij".parse().unwrap()
}

/// 12:34:56 UTC.
const AT: u64 = (12 * 3600 + 34 * 60 + 56) * 1000;

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// Types `text` and presses Enter; returns what the app asks for.
fn enter(app: &mut App, text: &str) -> Option<Action> {
    for c in text.chars() {
        assert_eq!(app.on_key(key(KeyCode::Char(c))), None);
    }
    app.on_key(key(KeyCode::Enter))
}

fn ready(app: &mut App) {
    app.on_event(Event::Ready {
        me: alice(),
        addr: "127.0.0.1:4001".parse().unwrap(),
    });
}

fn draw(app: &App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| app.render(frame)).unwrap();
    terminal
}

fn screen(terminal: &Terminal<TestBackend>) -> Vec<String> {
    let buffer = terminal.backend().buffer();
    (0..buffer.area.height)
        .map(|y| {
            (0..buffer.area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

/// The exchange of the issue: start, `/chat bob`, a line out (delivered), a line in,
/// bob ends the session.
fn scripted_exchange() -> App {
    let mut app = App::new(alice());
    assert_eq!(app.status(), Status::Starting);
    ready(&mut app);
    assert_eq!(app.status(), Status::Ready);

    let open = enter(&mut app, "/chat bob#abcdefghij");
    assert_eq!(open, Some(Action::Command(Command::Open(bob()))));
    assert_eq!(app.current(), Some(&Target::User(bob())));
    app.on_event(Event::SessionOpened {
        peer: bob(),
        by_peer: false,
    });

    let send = enter(&mut app, "hello");
    assert_eq!(
        send,
        Some(Action::Command(Command::Send {
            to: Target::User(bob()),
            text: "hello".into()
        }))
    );
    assert_eq!(app.input(), "");
    app.on_event(Event::Sent {
        to: Target::User(bob()),
        seq: 1,
        text: "hello".into(),
    });
    app.on_event(Event::Delivered {
        to: Target::User(bob()),
        seq: 1,
    });
    app.on_event(Event::Received {
        from: bob(),
        sent_at_ms: AT,
        text: "hi alice".into(),
    });
    app
}

#[test]
fn scripted_exchange_renders_as_expected() {
    let mut app = scripted_exchange();

    // Mid-way: the session is listed and marked current, the input box says where lines go.
    let terminal = draw(&app, 80, 20);
    let mid = screen(&terminal);
    assert_eq!(
        mid[3],
        "│session-opened bob#abcdefghij by=me                 ││▸ bob#abcdefghij        │"
    );
    assert_eq!(
        mid[4],
        "│you → bob#abcdefghij: hello ✓                       ││Rooms                   │"
    );
    assert_eq!(
        mid[17],
        "┌ to bob#abcdefghij ───────────────────────────────────────────────────────────┐"
    );

    app.on_event(Event::SessionEnded {
        peer: bob(),
        by_peer: true,
    });
    assert_eq!(app.current(), None);
    let terminal = draw(&app, 80, 20);
    let expected = [
        " voidmesh chat — alice#bcdefghijk                                         ready ",
        "┌ log ───────────────────────────────────────────────┐┌ chats ─────────────────┐",
        "│ready alice#bcdefghijk chat=127.0.0.1:4001          ││Sessions                │",
        "│session-opened bob#abcdefghij by=me                 ││  (none)                │",
        "│you → bob#abcdefghij: hello ✓                       ││Rooms                   │",
        "│12:34:56 bob#abcdefghij: hi alice                   ││  (none)                │",
        "│session-ended bob#abcdefghij by=peer                ││                        │",
        "│                                                    ││                        │",
        "│                                                    ││                        │",
        "│                                                    ││                        │",
        "│                                                    ││                        │",
        "│                                                    ││                        │",
        "│                                                    ││                        │",
        "│                                                    ││                        │",
        "│                                                    ││                        │",
        "│                                                    ││                        │",
        "└────────────────────────────────────────────────────┘└────────────────────────┘",
        "┌ type /help ──────────────────────────────────────────────────────────────────┐",
        "│                                                                              │",
        "└──────────────────────────────────────────────────────────────────────────────┘",
    ];
    assert_eq!(screen(&terminal), expected);

    // Styles: the sender of a received line is bold, the delivery mark green.
    let buffer = terminal.backend().buffer();
    assert!(
        buffer[(10, 5)].modifier.contains(Modifier::BOLD),
        "sender bold"
    );
    assert_eq!(buffer[(10, 5)].symbol(), "b");
    assert!(
        !buffer[(26, 5)].modifier.contains(Modifier::BOLD),
        "text plain"
    );
    assert_eq!(buffer[(29, 4)].symbol(), "✓");
    assert_eq!(buffer[(29, 4)].fg, Color::Green);
    // The cursor sits at the start of the (empty) input line.
    let mut terminal = terminal;
    assert_eq!(
        terminal.get_cursor_position().unwrap(),
        ratatui::layout::Position::new(1, 18)
    );
}

#[test]
fn help_shows_every_help_line() {
    let mut app = App::new(alice());
    assert_eq!(enter(&mut app, "/help"), None);
    let help: Vec<&str> = HELP.lines().collect();
    assert_eq!(app.log_text(), help);
    let shown = screen(&draw(&app, 100, 20));
    for (row, line) in shown[2..].iter().zip(&help) {
        assert!(row.starts_with(&format!("│{line} ")), "{row}");
    }
}

#[test]
fn mistakes_are_shown_in_red() {
    let mut app = App::new(alice());
    ready(&mut app);
    assert_eq!(enter(&mut app, "/frobnicate"), None);
    assert_eq!(enter(&mut app, "hello"), None, "no current target");
    let log = app.log_text();
    assert_eq!(log[1], "error unknown command /frobnicate (try /help)");
    assert!(
        log[2].starts_with("error no open session or room"),
        "{log:?}"
    );
    let terminal = draw(&app, 80, 20);
    let shown = screen(&terminal);
    assert!(shown[3].starts_with("│error unknown command /frobnicate (try /help)"));
    assert_eq!(terminal.backend().buffer()[(1, 3)].fg, Color::Red);
    // An engine error looks the same.
    app.on_event(Event::Error("no session with bob#abcdefghij".into()));
    assert_eq!(app.log_text()[3], "error no session with bob#abcdefghij");
}

fn sidebar(app: &App) -> Vec<String> {
    screen(&draw(app, 80, 20))[2..8]
        .iter()
        .map(|row| row.chars().skip(55).take(23).collect::<String>())
        .map(|s| s.trim_end().to_owned())
        .collect()
}

#[test]
fn sidebar_follows_sessions_and_rooms() {
    let mut app = App::new(alice());
    ready(&mut app);
    let carol: Handle = "carol#cdefghijkl".parse().unwrap();
    // Someone opens a session: it becomes current, as nothing was.
    app.on_event(Event::SessionOpened {
        peer: bob(),
        by_peer: true,
    });
    assert_eq!(app.current(), Some(&Target::User(bob())));
    app.on_event(Event::SessionOpened {
        peer: carol.clone(),
        by_peer: true,
    });
    assert_eq!(app.current(), Some(&Target::User(bob())));
    assert_eq!(app.sessions(), [bob(), carol.clone()]);
    assert_eq!(
        sidebar(&app),
        [
            "Sessions",
            "▸ bob#abcdefghij",
            "  carol#cdefghijkl",
            "Rooms",
            "  (none)",
            ""
        ]
    );

    assert_eq!(
        enter(&mut app, "/join #rust"),
        Some(Action::Command(Command::Join("rust".into())))
    );
    app.on_event(Event::Joined("rust".into()));
    assert_eq!(app.current(), Some(&Target::Room("rust".into())));
    assert_eq!(
        sidebar(&app),
        [
            "Sessions",
            "  bob#abcdefghij",
            "  carol#cdefghijkl",
            "Rooms",
            "▸ #rust",
            ""
        ]
    );

    app.on_event(Event::SessionEnded {
        peer: bob(),
        by_peer: false,
    });
    app.on_event(Event::Left("rust".into()));
    assert_eq!(app.current(), None);
    assert_eq!(app.sessions(), std::slice::from_ref(&carol));
    assert!(app.rooms().is_empty());
    assert_eq!(
        sidebar(&app),
        [
            "Sessions",
            "  carol#cdefghijkl",
            "Rooms",
            "  (none)",
            "",
            ""
        ]
    );

    // `/sessions` answers are taken as they are.
    app.on_event(Event::Sessions {
        sessions: vec![bob()],
        rooms: vec!["go".into()],
    });
    assert_eq!(app.sessions(), [bob()]);
    assert_eq!(app.rooms(), ["go".to_owned()]);
}

#[test]
fn room_lines_and_failures_are_shown() {
    let mut app = App::new(alice());
    ready(&mut app);
    enter(&mut app, "/join #rust");
    app.on_event(Event::Joined("rust".into()));
    let send = enter(&mut app, "hi all");
    assert_eq!(
        send,
        Some(Action::Command(Command::Send {
            to: Target::Room("rust".into()),
            text: "hi all".into()
        }))
    );
    app.on_event(Event::Sent {
        to: Target::Room("rust".into()),
        seq: 1,
        text: "hi all".into(),
    });
    assert_eq!(app.log_text()[2], "you → #rust: hi all …");
    app.on_event(Event::Failed {
        to: Target::Room("rust".into()),
        seq: 1,
        reason: "gossip stopped".into(),
    });
    assert_eq!(app.log_text()[2], "you → #rust: hi all ✗ gossip stopped");
    // A failure with no line of its own (too long to be sent) is shown by itself.
    app.on_event(Event::Failed {
        to: Target::Room("rust".into()),
        seq: 0,
        reason: "message too long".into(),
    });
    assert_eq!(app.log_text()[3], "failed #rust #0: message too long");
    app.on_event(Event::RoomMessage {
        room: "rust".into(),
        from: bob(),
        sent_at_ms: AT,
        text: "evil\x1b[2J\nline".into(),
    });
    assert_eq!(
        app.log_text()[4],
        "12:34:56 #rust bob#abcdefghij: evil�[2J↵line"
    );
}

#[test]
fn ctrl_c_quits_and_a_second_one_leaves_at_once() {
    let mut app = App::new(alice());
    ready(&mut app);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(app.on_key(ctrl_c), Some(Action::Command(Command::Quit)));
    assert_eq!(app.status(), Status::Quitting);
    let shown = screen(&draw(&app, 80, 20));
    assert!(shown[0].ends_with("quitting "));
    assert!(shown[17].starts_with("┌ quitting… (Ctrl-C: leave now) "));
    assert_eq!(app.on_key(ctrl_c), Some(Action::Quit));
    app.on_event(Event::Stopped);
    assert_eq!(app.status(), Status::Stopped);

    let mut app = App::new(alice());
    assert_eq!(
        enter(&mut app, "/quit"),
        Some(Action::Command(Command::Quit))
    );
    assert_eq!(app.status(), Status::Quitting);
}

#[test]
fn the_input_line_edits_and_remembers() {
    let mut app = App::new(alice());
    for c in "helo".chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
    app.on_key(key(KeyCode::Left));
    app.on_key(key(KeyCode::Char('l')));
    assert_eq!(app.input(), "hello");
    app.on_key(key(KeyCode::Home));
    app.on_key(key(KeyCode::Char('>')));
    app.on_key(key(KeyCode::End));
    app.on_key(key(KeyCode::Backspace));
    assert_eq!(app.input(), ">hell");
    app.on_key(key(KeyCode::Esc));
    assert_eq!(app.input(), "");

    enter(&mut app, "/find bob#abcdefghij");
    enter(&mut app, "/sessions");
    for c in "draft".chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
    app.on_key(key(KeyCode::Up));
    assert_eq!(app.input(), "/sessions");
    app.on_key(key(KeyCode::Up));
    assert_eq!(app.input(), "/find bob#abcdefghij");
    app.on_key(key(KeyCode::Up));
    assert_eq!(app.input(), "/find bob#abcdefghij");
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Down));
    assert_eq!(app.input(), "draft");
}

#[test]
fn long_input_scrolls_sideways_with_the_cursor_in_view() {
    let mut app = App::new(alice());
    let long: String = ('a'..='z').cycle().take(100).collect();
    for c in long.chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
    let mut terminal = draw(&app, 40, 10);
    let shown = screen(&terminal);
    // 38 columns inside the box: the last 37 characters, then the cursor.
    let tail: String = long.chars().skip(100 - 37).collect();
    assert_eq!(shown[8], format!("│{tail} │"));
    assert_eq!(
        terminal.get_cursor_position().unwrap(),
        ratatui::layout::Position::new(38, 8)
    );
}

#[test]
fn page_up_and_down_scroll_the_log() {
    let mut app = App::new(alice());
    for i in 0..40 {
        app.on_event(Event::Info(format!("line {i}")));
    }
    let shown = screen(&draw(&app, 80, 20));
    assert!(shown[15].starts_with("│info line 39 "));
    app.on_key(key(KeyCode::PageUp));
    let shown = screen(&draw(&app, 80, 20));
    assert!(shown[15].starts_with("│info line 26 "), "{shown:#?}");
    assert!(shown[1].starts_with("┌ log (scrolled up 13 — PgDn) "));
    for _ in 0..10 {
        app.on_key(key(KeyCode::PageUp));
    }
    let shown = screen(&draw(&app, 80, 20));
    assert!(shown[2].starts_with("│info line 0 "), "stops at the top");
    // New lines do not move a scrolled view.
    app.on_event(Event::Info("line 40".into()));
    assert_eq!(screen(&draw(&app, 80, 20))[2..16], shown[2..16]);
    for _ in 0..10 {
        app.on_key(key(KeyCode::PageDown));
    }
    let shown = screen(&draw(&app, 80, 20));
    assert!(shown[15].starts_with("│info line 40 "));
}

#[test]
fn long_lines_wrap_and_small_terminals_drop_the_sidebar() {
    let mut app = App::new(alice());
    app.on_event(Event::Received {
        from: bob(),
        sent_at_ms: AT,
        text: "a fairly long line that cannot fit on one row of the log".into(),
    });
    let shown = screen(&draw(&app, 50, 10));
    assert_eq!(shown[1], format!("┌ log {}┐", "─".repeat(43)));
    assert_eq!(
        shown[2],
        format!(
            "│{:<48}│",
            "12:34:56 bob#abcdefghij: a fairly long line that"
        )
    );
    assert_eq!(
        shown[3],
        format!("│{:<48}│", "cannot fit on one row of the log")
    );
    // Tiny screens draw without panicking.
    for (w, h) in [(1, 1), (5, 3), (20, 4), (0, 0)] {
        draw(&app, w, h);
    }
}
