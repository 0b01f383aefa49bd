//! Progress reporting, kept abstract so the simulation core needs no terminal: the CLI
//! plugs in indicatif bars, tests plug in nothing.

/// Receives a run's progress.
pub trait Progress {
    /// A phase starts; `total` is its length in its own unit (nodes, operations, ms).
    fn phase(&mut self, name: &'static str, total: u64);
    /// The current phase has reached `position`.
    fn update(&mut self, position: u64);
    /// The current phase is over.
    fn finish(&mut self);
}

/// Progress that goes nowhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&mut self, _name: &'static str, _total: u64) {}
    fn update(&mut self, _position: u64) {}
    fn finish(&mut self) {}
}
