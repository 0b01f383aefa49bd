//! Answering peers' requests (the server side of the protocol), and the checks a record
//! passes before this node keeps or believes it.

use super::Kademlia;
use crate::routing::subnet_of;
use crate::store::{Origin, Record};
use crate::timers::after;
use std::time::{Duration, Instant};
use voidmesh_proto::kad_msg::{
    ERROR_ID_PUZZLE, ERROR_NOT_A_REQUEST, ERROR_RATE_LIMITED, MAX_CONTACTS,
};
use voidmesh_proto::{Contact, KadMessage, Key, SignedRecord, SignedRecordError, Version};

/// Milliseconds left until `expires`, rounded up: a copy handed on lives as long as the
/// original (at most 1 ms longer), never shorter, however many hops it takes. Zero only
/// for a record already expired; saturates at `u32::MAX` (49.7 days).
pub(crate) fn remaining_ms(now: Instant, expires: Instant) -> u32 {
    let left = expires.saturating_duration_since(now);
    let ms = left.as_millis() + u128::from(!left.subsec_nanos().is_multiple_of(1_000_000));
    u32::try_from(ms).unwrap_or(u32::MAX)
}

/// Why a signed record is not kept or believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignedRejection {
    /// The record itself is invalid (signature, key, expiry, lengths).
    #[error("invalid signed record: {0}")]
    Invalid(#[from] SignedRecordError),
    /// The driver has not supplied the Unix time yet
    /// ([`Kademlia::set_unix_time`](crate::Kademlia::set_unix_time)), so the expiry cannot be
    /// checked.
    #[error("no Unix time supplied yet; cannot check the record's expiry")]
    NoUnixTime,
}

impl Kademlia {
    /// Builds the reply to `request` and offers `from` to the routing table.
    ///
    /// Before anything is served: the sender must be within its rate limit (else ERROR
    /// 429) and its id must solve the id puzzle (else ERROR 403); neither kind of sender
    /// is offered to the routing table.
    pub(super) fn serve(&mut self, now: Instant, from: Contact, request: KadMessage) -> KadMessage {
        if from.id != self.local_id {
            if !self.limiter.allow(now, &from.id) {
                self.stats.rate_limited += 1;
                tracing::debug!(from = ?from.id, "request over the peer's rate limit refused");
                return KadMessage::Error {
                    code: ERROR_RATE_LIMITED,
                    message: "request rate limit exceeded".into(),
                };
            }
            if !self.table.contains(&from.id) && !self.table.id_acceptable(&from.id) {
                self.stats.puzzle_refused += 1;
                tracing::debug!(from = ?from.id, "request from an id failing the id puzzle refused");
                return KadMessage::Error {
                    code: ERROR_ID_PUZZLE,
                    message: "node id does not solve the id puzzle".into(),
                };
            }
        }
        let count = self.config.k.min(MAX_CONTACTS);
        // What a STORE is charged to (see `store` "Fair shares").
        let origin = Origin::Peer(from.id, subnet_of(&from.addr));
        let reply = match request {
            KadMessage::Ping => KadMessage::Pong,
            KadMessage::Store {
                key,
                value,
                ttl_ms,
                replication,
                version,
            } => {
                let stored = if self.version_from_future(now, version) {
                    tracing::debug!(?key, from = ?from.id, ?version, "STORE with a version from the future refused");
                    false
                } else {
                    let ttl = Duration::from_millis(u64::from(ttl_ms)).min(self.config.max_ttl);
                    let record = Record {
                        value,
                        version,
                        expires: after(now, ttl),
                        replication: self.clamp_replication(replication),
                        publisher: false,
                    };
                    let outcome = self.store.put(now, key, record, origin);
                    tracing::trace!(?key, from = ?from.id, ?outcome, "STORE");
                    outcome.is_held()
                };
                KadMessage::StoreReply { key, stored }
            }
            KadMessage::StoreSigned {
                record,
                replication,
            } => {
                let key = record.key();
                let stored = match self.check_signed(now, &key, &record, replication, false) {
                    Ok(local) => {
                        let outcome = self.store.put_signed(now, record, local, origin);
                        tracing::trace!(?key, from = ?from.id, ?outcome, "STORE_SIGNED");
                        outcome.is_held()
                    }
                    Err(e) => {
                        tracing::debug!(?key, from = ?from.id, error = %e, "STORE_SIGNED refused");
                        false
                    }
                };
                KadMessage::StoreReply { key, stored }
            }
            KadMessage::FindNode { target } => KadMessage::FindNodeReply {
                contacts: self.table.closest(&target, count, Some(&from.id)),
            },
            KadMessage::FindValue { key } => match self.store.get_held(now, &key) {
                Some((_, Some(signed))) => KadMessage::FoundSigned {
                    record: signed.clone(),
                },
                Some((record, None)) => KadMessage::FoundValue {
                    value: record.value.clone(),
                    ttl_ms: remaining_ms(now, record.expires),
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

    /// True if `version` (its writer's clock in its upper 48 bits) lies more than
    /// `max_version_skew` after this node's Unix time. Always false before the driver
    /// supplied the Unix time.
    pub(super) fn version_from_future(&self, now: Instant, version: Version) -> bool {
        let Some(unix) = self.unix_time(now) else {
            return false;
        };
        let limit_ms = unix
            .saturating_add(self.config.max_version_skew.as_secs())
            .saturating_mul(1000);
        version.unix_millis() > limit_ms
    }

    /// Checks a signed record offered under `key` (signature, key, expiry against the Unix
    /// time) and returns its local form: the value, `Version(seq)`, an expiry at most
    /// `max_ttl` away, and the clamped replication hint.
    pub(super) fn check_signed(
        &self,
        now: Instant,
        key: &Key,
        record: &SignedRecord,
        replication: u8,
        publisher: bool,
    ) -> Result<Record, SignedRejection> {
        let unix = self.unix_time(now).ok_or(SignedRejection::NoUnixTime)?;
        record.validate(key, unix)?;
        let ttl = Duration::from_secs(record.expiry.saturating_sub(unix)).min(self.config.max_ttl);
        Ok(Record {
            value: record.value.clone(),
            version: Version(record.seq),
            expires: after(now, ttl),
            replication: self.clamp_replication(replication),
            publisher,
        })
    }
}
