//! Which local API client registered which data types (GOSSIP NOTIFY).

use std::collections::{BTreeMap, BTreeSet};

/// Names one local API connection. Chosen by the driver; opaque to the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(pub u64);

/// Registrations, indexed both ways so that delivery and disconnection are cheap.
#[derive(Debug, Default)]
pub(crate) struct Subscriptions {
    /// Data type → the clients that registered it.
    by_type: BTreeMap<u16, BTreeSet<ClientId>>,
    /// Client → the data types it registered (to drop them when it disconnects).
    by_client: BTreeMap<ClientId, BTreeSet<u16>>,
}

impl Subscriptions {
    /// Registers `client` for `data_type`; registering twice changes nothing.
    pub(crate) fn add(&mut self, client: ClientId, data_type: u16) {
        self.by_type.entry(data_type).or_default().insert(client);
        self.by_client.entry(client).or_default().insert(data_type);
    }

    /// Drops every registration of `client`.
    pub(crate) fn remove_client(&mut self, client: ClientId) {
        let Some(types) = self.by_client.remove(&client) else {
            return;
        };
        for t in types {
            if let Some(clients) = self.by_type.get_mut(&t) {
                clients.remove(&client);
                if clients.is_empty() {
                    self.by_type.remove(&t);
                }
            }
        }
    }

    /// The clients registered for `data_type`, in id order.
    pub(crate) fn subscribers(&self, data_type: u16) -> BTreeSet<ClientId> {
        self.by_type.get(&data_type).cloned().unwrap_or_default()
    }

    /// Number of clients with at least one registration.
    #[cfg(test)]
    pub(crate) fn client_count(&self) -> usize {
        self.by_client.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registering_twice_delivers_once() {
        let mut s = Subscriptions::default();
        s.add(ClientId(1), 7);
        s.add(ClientId(1), 7);
        assert_eq!(s.subscribers(7).len(), 1);
    }

    #[test]
    fn removing_a_client_drops_only_its_registrations() {
        let mut s = Subscriptions::default();
        s.add(ClientId(1), 7);
        s.add(ClientId(1), 8);
        s.add(ClientId(2), 7);
        s.remove_client(ClientId(1));
        assert_eq!(s.subscribers(7), BTreeSet::from([ClientId(2)]));
        assert!(s.subscribers(8).is_empty());
        assert_eq!(s.client_count(), 1);
    }
}
