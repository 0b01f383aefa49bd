//! The terminal UI, driven by scripted keys and engine events and drawn on ratatui's
//! test backend.

use chrono::FixedOffset;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::style::{Color, Modifier};
use ratatui::Terminal;
use voidmesh_chat::command::HELP;
use voidmesh_chat::event::NetState;
use voidmesh_chat::tui::{Action, App, Status};
use voidmesh_chat::{Command, Event, Handle, Target};

fn alice() -> Handle {
    "alice#bcdefghijk".parse().unwrap()
}

fn bob() -> Handle {
    "bob#abcdefghij".parse().unwrap()
}

fn carol() -> Handle {
    "carol#cdefghijkm".parse().unwrap()
}

/// 2026-12-05 12:34:56 UTC.
const AT: u64 = 1_796_474_096_000;

fn utc() -> FixedOffset {
    FixedOffset::east_opt(0).unwrap()
}

/// A fresh app showing UTC times.
fn app() -> App {
    App::new(alice()).with_zone(utc())
}

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
    app.on_event(Event::Network {
        state: NetState::Joined,
        peers: 17,
    });
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

fn sent(to: Target, seq: u64, text: &str) -> Event {
    Event::Sent {
        to,
        seq,
        at_ms: AT,
        text: text.into(),
    }
}

/// Start, `/chat bob`, a line out (delivered), a line in.
fn scripted_exchange() -> App {
    let mut app = app();
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
    app.on_event(sent(Target::User(bob()), 1, "hello"));
    app.on_event(Event::Delivered {
        to: Target::User(bob()),
        seq: 1,
    });
    app.on_event(Event::Received {
        from: bob(),
        sent_at_ms: AT + 60_000,
        text: "hi alice".into(),
    });
    app
}

#[test]
fn scripted_exchange_renders_as_expected() {
    let mut app = scripted_exchange();
    let terminal = draw(&app, 80, 14);
    let expected = [
        " voidmesh chat — alice#bcdefghijk                        17 peers · UTC · ready ",
        "┌ bob#abcdefghij ──────────────────────────────────┐┌ chats (Tab) ─────────────┐",
        "│joined the network (17 peers)                     ││Sessions                  │",
        "│ready: others can find you as alice#bcdefghijk    ││▸ bob#abcdefghij          │",
        "│(chat on 127.0.0.1:4001)                          ││Rooms                     │",
        "│session with bob#abcdefghij open                  ││  (none)                  │",
        "│── Saturday 5 December 2026 ──                    ││                          │",
        "│12:34 you: hello ✓                                ││                          │",
        "│12:35 bob#abcdefghij: hi alice                    ││                          │",
        "│                                                  ││                          │",
        "└──────────────────────────────────────────────────┘└──────────────────────────┘",
        "┌ to bob#abcdefghij ───────────────────────────────────────────────────────────┐",
        "│                                                                              │",
        "└──────────────────────────────────────────────────────────────────────────────┘",
    ];
    assert_eq!(screen(&terminal), expected);
    // Styles: the sender of a received line is bold, the delivery mark green.
    let buffer = terminal.backend().buffer();
    assert!(
        buffer[(7, 8)].modifier.contains(Modifier::BOLD),
        "sender bold"
    );
    assert_eq!(buffer[(7, 8)].symbol(), "b");
    assert!(
        !buffer[(24, 8)].modifier.contains(Modifier::BOLD),
        "text plain"
    );
    assert_eq!(buffer[(18, 7)].symbol(), "✓");
    assert_eq!(buffer[(18, 7)].fg, Color::Green);
    let mut terminal = terminal;
    assert_eq!(
        terminal.get_cursor_position().unwrap(),
        ratatui::layout::Position::new(1, 12)
    );

    // Bob ends it: nothing is current any more, the log shows everything.
    app.on_event(Event::SessionEnded {
        peer: bob(),
        by_peer: true,
    });
    assert_eq!(app.current(), None);
    let shown = screen(&draw(&app, 80, 14));
    assert!(shown[1].starts_with("┌ all "), "{}", shown[1]);
    assert!(
        shown[7].starts_with("│12:34 you → bob#abcdefghij: hello ✓"),
        "{}",
        shown[7]
    );
    assert!(shown[9].starts_with("│bob#abcdefghij ended the session"));
    assert!(shown[11].starts_with("┌ type /help "));
}

/// The case, as the UI sees it: carol is in #trio; bob opens a session and
/// writes. His lines do not appear in #trio, the sidebar marks them unread, and what
/// carol types in #trio goes to #trio; Tab takes her to bob, where a reply goes to bob.
#[test]
fn a_private_line_is_marked_unread_and_the_reply_goes_where_it_is_typed() {
    let mut app = App::new(carol()).with_zone(utc());
    ready(&mut app);
    enter(&mut app, "/join #trio");
    app.on_event(Event::Joined("trio".into()));
    app.on_event(Event::RoomMessage {
        room: "trio".into(),
        from: alice(),
        sent_at_ms: AT,
        text: "morning all".into(),
    });
    app.on_event(Event::SessionOpened {
        peer: bob(),
        by_peer: true,
    });
    app.on_event(Event::Received {
        from: bob(),
        sent_at_ms: AT,
        text: "psst, carol: lunch?".into(),
    });
    assert_eq!(app.current(), Some(&Target::Room("trio".into())));
    assert_eq!(app.unread(&Target::User(bob())), 1);
    let shown = screen(&draw(&app, 80, 14));
    assert!(
        shown.iter().all(|row| !row.contains("lunch?")),
        "not in #trio"
    );
    assert!(shown[3].contains("bob#abcdefghij ●1"), "{}", shown[3]);
    assert!(shown[1].starts_with("┌ #trio "));
    assert!(shown[11].starts_with("┌ to #trio "));

    // Tab (from #trio, the last) wraps around to bob, the first.
    app.on_key(key(KeyCode::Tab));
    assert_eq!(app.current(), Some(&Target::User(bob())));
    assert_eq!(app.unread(&Target::User(bob())), 0);
    let shown = screen(&draw(&app, 80, 14));
    assert!(shown.iter().any(|row| row.contains("psst, carol: lunch?")));
    assert!(shown.iter().all(|row| !row.contains("morning all")));
    assert_eq!(
        enter(&mut app, "yes!"),
        Some(Action::Command(Command::Send {
            to: Target::User(bob()),
            text: "yes!".into()
        }))
    );
    app.on_key(KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT));
    assert_eq!(app.current(), Some(&Target::Room("trio".into())));
}

#[test]
fn the_header_says_joining_alone_and_the_peer_count() {
    let mut app = app();
    let header = |app: &App| screen(&draw(app, 80, 10))[0].clone();
    assert!(
        header(&app).ends_with("starting · UTC · starting "),
        "{}",
        header(&app)
    );
    app.on_event(Event::Network {
        state: NetState::Joining,
        peers: 0,
    });
    assert!(header(&app).ends_with("joining… · UTC · starting "));
    app.on_event(Event::Network {
        state: NetState::Alone,
        peers: 0,
    });
    assert!(header(&app).ends_with("alone (retrying) · UTC · starting "));
    assert!(app
        .log_text()
        .last()
        .unwrap()
        .starts_with("alone: no bootstrapper answered"));
    app.on_event(Event::Network {
        state: NetState::Joined,
        peers: 1,
    });
    assert!(header(&app).ends_with("1 peer · UTC · starting "));
    let kolkata = App::new(alice()).with_zone(FixedOffset::east_opt(19800).unwrap());
    assert!(header(&kolkata).contains(" · UTC+05:30 · "));
}

#[test]
fn a_gone_peer_is_shown_in_the_sidebar_and_the_input_title() {
    let mut app = app();
    ready(&mut app);
    enter(&mut app, "/chat bob#abcdefghij");
    app.on_event(Event::SessionOpened {
        peer: bob(),
        by_peer: false,
    });
    app.on_event(Event::PeerGone {
        peer: bob(),
        silent_ms: 3400,
    });
    let shown = screen(&draw(&app, 80, 14));
    assert!(shown[3].contains("▸ bob#abcdefghij ✗gone"), "{}", shown[3]);
    assert!(shown[11].starts_with("┌ to bob#abcdefghij (not answering) "));
    assert!(app
        .log_text()
        .last()
        .unwrap()
        .starts_with("bob#abcdefghij is not answering (nothing for 3 s)"));
    app.on_event(Event::PeerBack { peer: bob() });
    let shown = screen(&draw(&app, 80, 14));
    assert!(!shown[3].contains("gone"));
}

#[test]
fn help_shows_every_help_line() {
    let mut app = app();
    assert_eq!(enter(&mut app, "/help"), None);
    let help: Vec<&str> = HELP.lines().collect();
    assert_eq!(app.log_text(), help);
}

#[test]
fn mistakes_are_shown_in_red() {
    let mut app = app();
    ready(&mut app);
    assert_eq!(enter(&mut app, "/frobnicate"), None);
    assert_eq!(enter(&mut app, "hello"), None, "no current target");
    let log = app.log_text();
    assert_eq!(log[2], "error: unknown command /frobnicate (try /help)");
    assert!(
        log[3].starts_with("error: no open session or room"),
        "{log:?}"
    );
    let terminal = draw(&app, 100, 20);
    let shown = screen(&terminal);
    let row = shown
        .iter()
        .position(|r| r.starts_with("│error: unknown command"))
        .unwrap();
    assert_eq!(terminal.backend().buffer()[(1, row as u16)].fg, Color::Red);
}

#[test]
fn room_lines_spread_and_failures_are_shown() {
    let mut app = app();
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
    app.on_event(sent(Target::Room("rust".into()), 7, "hi all"));
    assert!(app
        .log_text()
        .last()
        .unwrap()
        .ends_with("you → #rust: hi all …"));
    // No ✓ for a room: whether anyone else is in it cannot be known.
    app.on_event(Event::Spread {
        room: "rust".into(),
        seq: 7,
        neighbours: 3,
    });
    assert!(app
        .log_text()
        .last()
        .unwrap()
        .ends_with("you → #rust: hi all ↗ 3 neighbours"));
    app.on_event(sent(Target::Room("rust".into()), 8, "again"));
    app.on_event(Event::Failed {
        to: Target::Room("rust".into()),
        seq: 8,
        reason: "nobody to pass it to".into(),
    });
    assert!(app
        .log_text()
        .last()
        .unwrap()
        .ends_with("you → #rust: again ✗ nobody to pass it to"));
    // A session that could not open: said in words, no counter.
    app.on_event(Event::Failed {
        to: Target::User(bob()),
        seq: 0,
        reason: "cannot open a session: not found".into(),
    });
    assert_eq!(
        app.log_text().last().unwrap(),
        "bob#abcdefghij: cannot open a session: not found"
    );
    app.on_event(Event::RoomMessage {
        room: "rust".into(),
        from: bob(),
        sent_at_ms: AT,
        text: "evil\x1b[2J\nline".into(),
    });
    assert_eq!(
        app.log_text().last().unwrap(),
        "12:34 #rust bob#abcdefghij: evil�[2J↵line"
    );
}

#[test]
fn times_are_local_and_a_date_line_marks_a_new_day() {
    let mut app = App::new(alice()).with_zone(FixedOffset::east_opt(19800).unwrap());
    // 12:34:56 UTC is 18:04 in Kolkata; 19:00 UTC the next day's 00:30.
    app.on_event(Event::Received {
        from: bob(),
        sent_at_ms: AT,
        text: "one".into(),
    });
    app.on_event(sent(Target::User(bob()), 1, "two"));
    app.on_event(Event::Received {
        from: bob(),
        sent_at_ms: AT + 23_104_000,
        text: "three".into(),
    });
    assert_eq!(
        app.log_text(),
        [
            "── Saturday 5 December 2026 ──",
            "18:04 bob#abcdefghij: one",
            "18:04 you → bob#abcdefghij: two …",
            "── Sunday 6 December 2026 ──",
            "00:30 bob#abcdefghij: three",
        ]
    );
}

#[test]
fn a_pasted_block_is_sent_one_message_per_line_on_enter() {
    let mut app = app();
    ready(&mut app);
    enter(&mut app, "/chat bob#abcdefghij");
    app.on_paste("first line\r\nsecond line\nthird line\n");
    // Nothing is sent by the paste itself; the box shows the breaks.
    assert_eq!(app.input(), "first line\nsecond line\nthird line");
    let shown = screen(&draw(&app, 80, 14));
    assert!(
        shown[12].starts_with("│first line↵second line↵third line"),
        "{}",
        shown[12]
    );
    let to = Target::User(bob());
    let line = |text: &str| Command::Send {
        to: to.clone(),
        text: text.into(),
    };
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        Some(Action::Commands(vec![
            line("first line"),
            line("second line"),
            line("third line")
        ]))
    );
    assert_eq!(app.input(), "");
}

#[test]
fn a_long_paste_keeps_its_enter_and_counts_bytes() {
    let mut app = app();
    ready(&mut app);
    app.set_max_message_bytes(100);
    enter(&mut app, "/chat bob#abcdefghij");
    // 60 characters, 120 bytes: too long, said in bytes, kept in the box.
    let long = "é".repeat(60);
    app.on_paste(&long);
    assert_eq!(app.on_key(key(KeyCode::Enter)), None);
    assert_eq!(
        app.log_text().last().unwrap(),
        "error: not sent: the line is 120 bytes, the limit is 100 (it stays in the input line)"
    );
    assert_eq!(app.input(), long);
    // Shortened to 50 characters (100 bytes), it goes.
    for _ in 0..10 {
        app.on_key(key(KeyCode::Backspace));
    }
    assert_eq!(
        app.on_key(key(KeyCode::Enter)),
        Some(Action::Command(Command::Send {
            to: Target::User(bob()),
            text: "é".repeat(50)
        }))
    );
}

#[test]
fn ctrl_c_quits_and_a_second_one_leaves_at_once() {
    let mut app = app();
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
}

#[test]
fn the_input_line_edits_and_remembers() {
    let mut app = app();
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
    app.on_key(key(KeyCode::Down));
    app.on_key(key(KeyCode::Down));
    assert_eq!(app.input(), "draft");
}

#[test]
fn long_input_scrolls_sideways_with_the_cursor_in_view() {
    let mut app = app();
    let long: String = ('a'..='z').cycle().take(100).collect();
    for c in long.chars() {
        app.on_key(key(KeyCode::Char(c)));
    }
    let mut terminal = draw(&app, 40, 10);
    let shown = screen(&terminal);
    let tail: String = long.chars().skip(100 - 37).collect();
    assert_eq!(shown[8], format!("│{tail} │"));
    assert_eq!(
        terminal.get_cursor_position().unwrap(),
        ratatui::layout::Position::new(38, 8)
    );
}

#[test]
fn page_up_and_down_scroll_the_log() {
    let mut app = app();
    for i in 0..40 {
        app.on_event(Event::Info(format!("line {i}")));
    }
    let shown = screen(&draw(&app, 80, 20));
    assert!(shown[15].starts_with("│line 39 "));
    app.on_key(key(KeyCode::PageUp));
    let shown = screen(&draw(&app, 80, 20));
    assert!(shown[15].starts_with("│line 26 "), "{shown:#?}");
    assert!(shown[1].starts_with("┌ all (scrolled up 13 — PgDn) "));
    for _ in 0..10 {
        app.on_key(key(KeyCode::PageUp));
    }
    let shown = screen(&draw(&app, 80, 20));
    assert!(shown[2].starts_with("│line 0 "), "stops at the top");
    app.on_event(Event::Info("line 40".into()));
    assert_eq!(screen(&draw(&app, 80, 20))[2..16], shown[2..16]);
    for _ in 0..10 {
        app.on_key(key(KeyCode::PageDown));
    }
    let shown = screen(&draw(&app, 80, 20));
    assert!(shown[15].starts_with("│line 40 "));
}

#[test]
fn long_lines_wrap_and_small_terminals_drop_the_sidebar() {
    let mut app = app();
    app.on_event(Event::Received {
        from: bob(),
        sent_at_ms: AT,
        text: "a fairly long line that cannot fit on one row of the log".into(),
    });
    let shown = screen(&draw(&app, 50, 10));
    assert_eq!(
        shown[3],
        format!("│{:<48}│", "12:34 bob#abcdefghij: a fairly long line that")
    );
    assert_eq!(
        shown[4],
        format!("│{:<48}│", "cannot fit on one row of the log")
    );
    for (w, h) in [(1, 1), (5, 3), (20, 4), (0, 0)] {
        draw(&app, w, h);
    }
}
