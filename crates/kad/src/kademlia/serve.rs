//! Answering peers' requests (the server side of the protocol).

use super::Kademlia;
use crate::store::Record;
use crate::timers::after;
use std::time::{Duration, Instant};
use voidmesh_proto::kad_msg::MAX_CONTACTS;
use voidmesh_proto::{Contact, KadMessage};

/// ERROR code for a message that is not a request.
pub(crate) const ERROR_NOT_A_REQUEST: u16 = 1;

/// Whole seconds left until `expires` (rounded down, so a copy never outlives the original).
pub(crate) fn remaining_secs(now: Instant, expires: Instant) -> u32 {
    u32::try_from(expires.saturating_duration_since(now).as_secs()).unwrap_or(u32::MAX)
}

impl Kademlia {
    /// Builds the reply to `request` and offers `from` to the routing table.
    pub(super) fn serve(&mut self, now: Instant, from: Contact, request: KadMessage) -> KadMessage {
        let count = self.config.k.min(MAX_CONTACTS);
        let reply = match request {
            KadMessage::Ping => KadMessage::Pong,
            KadMessage::Store {
                key,
                value,
                ttl_secs,
                replication,
                version,
            } => {
                let ttl = Duration::from_secs(u64::from(ttl_secs)).min(self.config.max_ttl);
                let record = Record {
                    value,
                    version,
                    expires: after(now, ttl),
                    replication: self.clamp_replication(replication),
                    publisher: false,
                };
                let outcome = self.store.put(now, key, record, true);
                tracing::trace!(?key, from = ?from.id, ?outcome, "STORE");
                KadMessage::StoreReply {
                    key,
                    stored: outcome.is_held(),
                }
            }
            KadMessage::FindNode { target } => KadMessage::FindNodeReply {
                contacts: self.table.closest(&target, count, Some(&from.id)),
            },
            KadMessage::FindValue { key } => match self.store.get(now, &key) {
                Some(record) => KadMessage::FoundValue {
                    value: record.value.clone(),
                    ttl_secs: remaining_secs(now, record.expires),
                    version: record.version,
                },
                None => KadMessage::ValueNotFound {
                    contacts: self.table.closest(&key, count, Some(&from.id)),
                },
            },
            other => {
                tracing::debug!(from = ?from.id, got = other.msg_type(), "a reply sent as a request");
                return KadMessage::Error {
                    code: ERROR_NOT_A_REQUEST,
                    message: format!("message type {} is not a request", other.msg_type()),
                };
            }
        };
        if from.id != self.local_id {
            self.heard_from(now, from);
        }
        reply
    }
}
