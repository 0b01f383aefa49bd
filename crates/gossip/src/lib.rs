//! Placeholder: gossip sans-IO state machine (issue 3).
