//! Moving queries along: answers, failures, deadlines, and the periodic work (bucket
//! refresh, republish).
//!
//! A query is taken out of the map while it is worked on and put back unless it
//! finished, so the helpers below can borrow the node mutably without juggling.

use super::query::{
    FindPurpose, Found, GetJob, Purpose, PutJob, Query, QueryKind, Request, Storing,
};
use super::serve::remaining_ms;
use super::Kademlia;
use crate::lookup::{DisjointLookup, Step};
use crate::store::{Origin, Record};
use crate::timers::{after, Deadline};
use crate::{Event, QueryId, RequestId};
use rand::Rng;
use std::time::{Duration, Instant};
use voidmesh_proto::{Contact, KadMessage, Key, SignedRecord, SignedRecordError, Version};

/// Refreshes are never scheduled closer together than this, whatever the configuration.
const MIN_REFRESH_GAP: Duration = Duration::from_secs(1);

impl Kademlia {
    /// Sends what the query's lookup wants next; finishes the lookup phase when it is over.
    pub(super) fn advance(&mut self, now: Instant, id: QueryId) {
        let Some(mut query) = self.queries.remove(&id) else {
            return;
        };
        let finished = loop {
            let Some(lookup) = query.lookup.as_mut() else {
                break false;
            };
            match lookup.next_step() {
                Step::Contact(peer) => {
                    let message = query.kind.lookup_request(*lookup.target());
                    self.send(now, peer, message, Purpose::Lookup(id));
                }
                Step::Waiting => break false,
                Step::Finished => break true,
            }
        };
        if finished {
            self.lookup_finished(now, id, query);
        } else {
            self.queries.insert(id, query);
        }
    }

    /// A request got a reply of the type it expected. Returns false if the reply is
    /// invalid (a forged signed record, a version from the future): the caller then counts
    /// it as a failure. A valid reply marks the peer as heard from.
    pub(super) fn on_reply(&mut self, now: Instant, req: &Request, reply: KadMessage) -> bool {
        match (req.purpose, reply) {
            (
                Purpose::Lookup(id),
                KadMessage::FoundValue {
                    value,
                    ttl_ms,
                    version,
                },
            ) => {
                if self.version_from_future(now, version) {
                    self.stats.invalid_answers += 1;
                    tracing::debug!(peer = ?req.to.id, ?version, "value with a version from the future ignored");
                    return false;
                }
                self.heard_from(now, req.to);
                let ttl = Duration::from_millis(u64::from(ttl_ms)).min(self.config.max_ttl);
                let found = Found::Plain {
                    value,
                    version,
                    expires: after(now, ttl),
                };
                self.found(now, id, req.to, found);
            }
            (Purpose::Lookup(id), KadMessage::FoundSigned { record }) => {
                let key = match self.queries.get(&id) {
                    Some(Query {
                        kind: QueryKind::Get(job),
                        ..
                    }) => job.key,
                    // The GET is over: only the liveness counts.
                    _ => {
                        self.heard_from(now, req.to);
                        return true;
                    }
                };
                if let Err(e) = self.check_read_signed(now, &key, &record) {
                    self.stats.invalid_answers += 1;
                    tracing::debug!(peer = ?req.to.id, ?key, error = %e, "invalid signed record ignored");
                    return false;
                }
                self.heard_from(now, req.to);
                self.found(now, id, req.to, Found::Signed(record));
            }
            (
                Purpose::Lookup(id),
                KadMessage::FindNodeReply { contacts } | KadMessage::ValueNotFound { contacts },
            ) => {
                self.heard_from(now, req.to);
                // Ids failing the puzzle are neither asked nor remembered.
                let contacts: Vec<Contact> = contacts
                    .into_iter()
                    .take(self.config.k)
                    .filter(|c| self.table.id_acceptable(&c.id))
                    .collect();
                // Contacts named by a third party do not enter the routing table: a
                // contact gets in only once it answered this node itself
                // (`heard_from`), so a liar cannot fill buckets with made-up entries.
                let accepted = self
                    .queries
                    .get_mut(&id)
                    .and_then(|q| q.lookup.as_mut())
                    .is_some_and(|lookup| lookup.on_success(&req.to.id, &contacts));
                if accepted {
                    self.advance(now, id);
                }
            }
            (Purpose::PutStore(id), KadMessage::StoreReply { stored, .. }) => {
                self.heard_from(now, req.to);
                if !req.timed_out {
                    self.store_done(id, stored);
                }
            }
            // Pings: hearing from the peer was all that mattered. Replicas: nobody waits.
            _ => self.heard_from(now, req.to),
        }
        true
    }

    /// Checks a signed record a peer returned for `key`: signature and key always, expiry
    /// once the Unix time is known.
    fn check_read_signed(
        &self,
        now: Instant,
        key: &Key,
        record: &SignedRecord,
    ) -> Result<(), SignedRecordError> {
        match self.unix_time(now) {
            Some(unix) => record.validate(key, unix),
            None if record.key() != *key => Err(SignedRecordError::KeyMismatch),
            None => record.verify(),
        }
    }

    /// A GET's lookup heard a valid copy from `peer`: note it, and finish the GET once
    /// `read_quorum` holders answered.
    fn found(&mut self, now: Instant, id: QueryId, peer: Contact, found: Found) {
        let Some(Query {
            kind: QueryKind::Get(job),
            lookup: Some(lookup),
            ..
        }) = self.queries.get_mut(&id)
        else {
            return;
        };
        let rank = found.rank();
        job.answers.push((peer, rank));
        // A plain copy does not count for a get_signed (it is still a holder to repair).
        let counts = !job.signed_only || matches!(found, Found::Signed(_));
        if counts && job.best.as_ref().is_none_or(|best| rank > best.rank()) {
            job.best = Some(found);
        }
        let accepted = lookup.on_found(&peer.id);
        if job.quorum_count() >= self.config.read_quorum {
            if let Some(query) = self.queries.remove(&id) {
                self.lookup_finished(now, id, query);
            }
        } else if accepted {
            self.advance(now, id);
        }
    }

    /// A request failed: counted against its peer, then its query moves on.
    /// `deadline` is true when the failure is our own deadline passing (a lookup then
    /// still accepts a late answer).
    pub(super) fn on_failure(&mut self, now: Instant, req: &Request, deadline: bool) {
        let evicted = match req.purpose {
            Purpose::Ping => self.table.ping_failed(now, &req.to.id),
            _ => self.table.record_failure(now, &req.to.id),
        };
        if let Some(evicted) = evicted {
            tracing::debug!(removed = ?evicted.removed.id, promoted = ?evicted.promoted.map(|c| c.id), "contact evicted");
        }
        match req.purpose {
            Purpose::Lookup(id) => {
                let changed = self
                    .queries
                    .get_mut(&id)
                    .and_then(|q| q.lookup.as_mut())
                    .is_some_and(|lookup| {
                        if deadline {
                            lookup.on_timeout(&req.to.id)
                        } else {
                            lookup.on_failure(&req.to.id)
                        }
                    });
                if changed {
                    self.advance(now, id);
                }
            }
            Purpose::PutStore(id) => self.store_done(id, false),
            Purpose::Ping | Purpose::Replicate => {}
        }
    }

    /// A request's answer deadline passed: count the failure now, and keep the request a
    /// while longer so a late answer is still recognised.
    pub(super) fn request_deadline(&mut self, now: Instant, id: RequestId) {
        let forget_at = after(now, self.config.query_timeout);
        let Some(req) = self.requests.get_mut(&id) else {
            return;
        };
        req.timed_out = true;
        req.deadline = forget_at;
        let req = req.clone();
        self.deadlines.insert(forget_at, Deadline::Forget(id));
        tracing::trace!(request = ?id, peer = ?req.to.id, "request deadline passed");
        self.on_failure(now, &req, true);
    }

    /// A query's deadline passed: its lookup ends with what it has.
    pub(super) fn query_deadline(&mut self, now: Instant, id: QueryId) {
        let Some(mut query) = self.queries.remove(&id) else {
            return;
        };
        query.deadline = None;
        tracing::debug!(query = ?id, "query deadline passed");
        match query.lookup.as_mut() {
            Some(lookup) => {
                lookup.finish();
                self.lookup_finished(now, id, query);
            }
            // Later phases have no query deadline; nothing to do.
            None => {
                self.queries.insert(id, query);
            }
        }
    }

    /// Cancels the query's deadline, if it still has one.
    fn clear_deadline(&mut self, id: QueryId, query: &mut Query) {
        if let Some(at) = query.deadline.take() {
            self.deadlines.remove(at, Deadline::Query(id));
        }
    }

    /// The lookup phase of `query` is over (converged, exhausted or timed out).
    fn lookup_finished(&mut self, now: Instant, id: QueryId, mut query: Query) {
        self.clear_deadline(id, &mut query);
        let Some(lookup) = query.lookup.take() else {
            return;
        };
        self.stats.lookups += 1;
        self.stats.lookup_requests += lookup.requests() as u64;
        let closest = lookup.closest_succeeded(self.config.k);
        match query.kind {
            QueryKind::Get(job) => self.get_finished(now, id, job, Some(&lookup)),
            QueryKind::FindNode {
                purpose: FindPurpose::User,
            } => {
                self.events.push_back(Event::FindNodeFinished {
                    query: id,
                    target: *lookup.target(),
                    closest,
                });
            }
            QueryKind::FindNode {
                purpose: FindPurpose::Refresh { parent },
            } => {
                if let Some(parent) = parent {
                    self.refresh_done(parent);
                }
            }
            QueryKind::Bootstrap { .. } => self.start_bucket_refreshes(now, id),
            QueryKind::Put(job) => self.start_storing(now, id, job, &closest),
        }
    }

    /// A GET is over: report the newest copy seen, then repair the stale holders.
    ///
    /// The value is deliberately not cached at peers outside the replication set (the
    /// Kademlia paper's optional caching): a copy there would not be reached by a later
    /// PUT of a newer version. Repair only goes to holders that answered with an older
    /// copy and to queried nodes nearer the key than a holder (inside the replication set).
    pub(super) fn get_finished(
        &mut self,
        now: Instant,
        id: QueryId,
        job: GetJob,
        lookup: Option<&DisjointLookup>,
    ) {
        let (value, signed, version) = match &job.best {
            Some(Found::Signed(record)) => (
                Some(record.value.clone()),
                Some(record.clone()),
                Some(Version(record.seq)),
            ),
            Some(Found::Plain { value, version, .. }) if !job.signed_only => {
                (Some(value.clone()), None, Some(*version))
            }
            _ => (None, None, None),
        };
        tracing::debug!(query = ?id, key = ?job.key, found = value.is_some(), holders = job.answers.len(), "get finished");
        self.events.push_back(Event::GetFinished {
            query: id,
            key: job.key,
            value,
            signed,
            version,
        });
        if let Some(best) = &job.best {
            self.read_repair(now, &job, best, lookup);
        }
    }

    /// Sends the newest copy `best` to the GET's stale holders (see
    /// [`get_finished`](Self::get_finished)); updates this node's own stale copy.
    fn read_repair(
        &mut self,
        now: Instant,
        job: &GetJob,
        best: &Found,
        lookup: Option<&DisjointLookup>,
    ) {
        let key = job.key;
        let best_rank = best.rank();
        // Nodes nearer the key than a holder of any copy are in the replication set.
        let farthest_holder = job
            .answers
            .iter()
            .map(|(c, _)| key.distance(&c.id))
            .chain(job.local.map(|_| key.distance(&self.local_id)))
            .max();
        let mut targets: Vec<Contact> = job
            .answers
            .iter()
            .filter(|(_, rank)| *rank < best_rank)
            .map(|(c, _)| *c)
            .collect();
        if let (Some(lookup), Some(farthest)) = (lookup, farthest_holder) {
            for c in lookup.closest_succeeded(self.config.k) {
                let answered = job.answers.iter().any(|(a, _)| a.id == c.id);
                if !answered && key.distance(&c.id) < farthest {
                    targets.push(c);
                }
            }
        }
        targets.sort_by_key(|c| key.distance(&c.id));
        targets.truncate(usize::from(self.config.max_replication));
        let holders = job.answers.len() + usize::from(job.local.is_some());
        let replication = job.local_replication.unwrap_or_else(|| {
            u8::try_from(holders.max(self.config.read_quorum)).unwrap_or(u8::MAX)
        });
        let replication = self.clamp_replication(replication);
        let local_stale = job.local.is_some_and(|rank| rank < best_rank);
        let message = match best {
            Found::Plain {
                value,
                version,
                expires,
            } => {
                let ttl_ms = remaining_ms(now, *expires);
                if ttl_ms == 0 {
                    return;
                }
                if local_stale {
                    let record = Record {
                        value: value.clone(),
                        version: *version,
                        expires: *expires,
                        replication,
                        publisher: false,
                    };
                    let outcome = self.store.put(now, key, record, Origin::Network);
                    tracing::debug!(?key, ?outcome, "local copy repaired");
                }
                KadMessage::Store {
                    key,
                    value: value.clone(),
                    ttl_ms,
                    replication,
                    version: *version,
                }
            }
            Found::Signed(record) => {
                if local_stale {
                    if let Ok(local) = self.check_signed(now, &key, record, replication, false) {
                        let outcome =
                            self.store
                                .put_signed(now, record.clone(), local, Origin::Network);
                        tracing::debug!(?key, ?outcome, "local copy repaired");
                    }
                }
                KadMessage::StoreSigned {
                    record: record.clone(),
                    replication,
                }
            }
        };
        if !targets.is_empty() {
            tracing::debug!(?key, stale = targets.len(), "read repair");
        }
        self.stats.read_repairs += targets.len() as u64;
        for target in targets {
            self.send(now, target, message.clone(), Purpose::Replicate);
        }
    }

    /// Bootstrap phase two: one lookup of a random id in every bucket farther than the
    /// closest neighbour's. Finishes at once if there is none.
    fn start_bucket_refreshes(&mut self, now: Instant, id: QueryId) {
        let buckets: Vec<usize> = match self.table.nearest_bucket() {
            Some(nearest) => (nearest + 1..256).collect(),
            None => Vec::new(),
        };
        if buckets.is_empty() {
            self.events.push_back(Event::BootstrapFinished {
                query: id,
                contacts: self.table.len(),
            });
            return;
        }
        self.queries.insert(
            id,
            Query {
                kind: QueryKind::Bootstrap {
                    pending_refreshes: buckets.len(),
                },
                lookup: None,
                deadline: None,
            },
        );
        for bucket in buckets {
            self.refresh_bucket(now, bucket, Some(id));
        }
    }

    /// Starts a lookup of a random id in `bucket`'s range.
    fn refresh_bucket(&mut self, now: Instant, bucket: usize, parent: Option<QueryId>) {
        let target = self.table.id_in_bucket(bucket, self.rng.gen());
        let kind = QueryKind::FindNode {
            purpose: FindPurpose::Refresh { parent },
        };
        let _ = self.start_lookup(now, target, kind);
    }

    /// One of a bootstrap's refresh lookups ended.
    fn refresh_done(&mut self, parent: QueryId) {
        let Some(query) = self.queries.get_mut(&parent) else {
            return;
        };
        let QueryKind::Bootstrap { pending_refreshes } = &mut query.kind else {
            return;
        };
        *pending_refreshes = pending_refreshes.saturating_sub(1);
        if *pending_refreshes == 0 {
            self.queries.remove(&parent);
            self.events.push_back(Event::BootstrapFinished {
                query: parent,
                contacts: self.table.len(),
            });
        }
    }

    /// PUT phase two: STORE on the `replication` closest of the nodes that answered plus
    /// this node (which counts as one if it is among them or nobody answered). The local
    /// copy was kept when the PUT started; it is offered again here (a no-op unless it
    /// was evicted or replaced meanwhile).
    fn start_storing(&mut self, now: Instant, id: QueryId, job: PutJob, closest: &[Contact]) {
        let key = job.key;
        let replication = usize::from(job.record.replication);
        let local_distance = key.distance(&self.local_id);
        let nearer_than_local = closest
            .iter()
            .take_while(|c| key.distance(&c.id) < local_distance)
            .count();
        let local_is_replica = nearer_than_local < replication || closest.is_empty();
        let remote_count = replication - usize::from(local_is_replica && !closest.is_empty());
        let targets = &closest[..closest.len().min(remote_count)];
        let stored_local = local_is_replica
            && match &job.signed {
                Some(signed) => {
                    self.store
                        .put_signed(now, signed.clone(), job.record.clone(), Origin::Local)
                }
                None => self.store.put(now, key, job.record.clone(), Origin::Local),
            }
            .is_held();
        let storing = Storing {
            awaiting: targets.len(),
            stored_remote: 0,
            stored_local,
        };
        let ttl_ms = remaining_ms(now, job.record.expires);
        let store = store_message(key, &job.record, job.signed.as_ref(), ttl_ms);
        for target in targets {
            self.send(now, *target, store.clone(), Purpose::PutStore(id));
        }
        let job = PutJob {
            storing: Some(storing),
            ..job
        };
        if targets.is_empty() {
            self.put_finished(id, job);
        } else {
            let query = Query {
                kind: QueryKind::Put(job),
                lookup: None,
                deadline: None,
            };
            self.queries.insert(id, query);
        }
    }

    /// One STORE of a PUT has its outcome.
    fn store_done(&mut self, id: QueryId, stored: bool) {
        let Some(Query {
            kind: QueryKind::Put(job),
            ..
        }) = self.queries.get_mut(&id)
        else {
            return;
        };
        let Some(storing) = job.storing.as_mut() else {
            return;
        };
        storing.awaiting = storing.awaiting.saturating_sub(1);
        storing.stored_remote += usize::from(stored);
        if storing.awaiting == 0 {
            if let Some(Query {
                kind: QueryKind::Put(job),
                ..
            }) = self.queries.remove(&id)
            {
                self.put_finished(id, job);
            }
        }
    }

    fn put_finished(&mut self, id: QueryId, job: PutJob) {
        let storing = job.storing.unwrap_or(Storing {
            awaiting: 0,
            stored_remote: 0,
            stored_local: false,
        });
        tracing::debug!(query = ?id, key = ?job.key, remote = storing.stored_remote, local = storing.stored_local, "put finished");
        if job.report {
            self.events.push_back(Event::PutFinished {
                query: id,
                key: job.key,
                stored_remote: storing.stored_remote,
                stored_local: storing.stored_local,
            });
        }
    }

    /// [`Timer::Refresh`](crate::timers::Timer::Refresh): a lookup in every bucket with
    /// none for the refresh interval.
    pub(super) fn refresh_stale_buckets(&mut self, now: Instant) {
        let interval = self.config.refresh_interval;
        for bucket in self.table.stale_buckets(now, interval) {
            self.refresh_bucket(now, bucket, None);
        }
        let next = self
            .table
            .next_refresh(interval)
            .unwrap_or(after(now, interval));
        self.refresh_at = next.max(after(now, MIN_REFRESH_GAP));
    }

    /// [`Timer::Republish`](crate::timers::Timer::Republish): every due record goes out
    /// again with its remaining TTL.
    ///
    /// - A record this node published gets a full PUT again (a fresh FIND_NODE lookup), as
    ///   the closest nodes may have changed since, and the publisher may be far from its key.
    /// - A replica goes straight to the `replication` closest nodes of the routing table,
    ///   without a lookup: a replica holder is close to the key, and its table is most
    ///   complete near itself, so this costs no lookup per record per interval. A replica
    ///   that just received a copy from someone else is not due (see the store).
    pub(super) fn republish_due(&mut self, now: Instant) {
        for (key, record, signed) in self.store.take_due_republish(now) {
            if record.publisher {
                let job = PutJob {
                    key,
                    record,
                    signed,
                    report: false,
                    storing: None,
                };
                let _ = self.start_lookup(now, key, QueryKind::Put(job));
                continue;
            }
            let ttl_ms = remaining_ms(now, record.expires);
            if ttl_ms == 0 {
                continue;
            }
            let targets = self
                .table
                .closest(&key, usize::from(record.replication), None);
            let store = store_message(key, &record, signed.as_ref(), ttl_ms);
            for target in targets {
                self.send(now, target, store.clone(), Purpose::Replicate);
            }
        }
    }
}

/// The STORE (or STORE_SIGNED) that hands `record` on with `ttl_ms` left.
fn store_message(
    key: Key,
    record: &Record,
    signed: Option<&SignedRecord>,
    ttl_ms: u32,
) -> KadMessage {
    match signed {
        Some(signed) => KadMessage::StoreSigned {
            record: signed.clone(),
            replication: record.replication,
        },
        None => KadMessage::Store {
            key,
            value: record.value.clone(),
            ttl_ms,
            replication: record.replication,
            version: record.version,
        },
    }
}
