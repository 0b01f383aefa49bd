//! Helpers shared by the tests that run the real `voidmesh` binary.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{channel, Receiver};

/// The lines of `output` (a child's stdout or stderr), read on a thread of their own so
/// that a test can wait for one with a deadline (`recv_timeout`) and the child never
/// blocks on a full pipe.
pub fn lines_of(output: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    lines
}

pub mod chat;
