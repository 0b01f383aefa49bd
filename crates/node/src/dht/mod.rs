//! The DHT module as a running service: a QUIC endpoint, the Kademlia driver task, and a
//! cloneable [`DhtHandle`] through which the API server (and the chat) use it.

mod driver;
mod reads;
mod transport;

use crate::socket::{P2pSocket, P2pSockets};
use crate::storage::{unix_ms, Loaded, Storage};
use crate::NodeError;
use bytes::Bytes;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use voidmesh_kad::Kademlia;
use voidmesh_net::overlay::OverlayConfig;
use voidmesh_net::{EndpointConfig, Identity};
use voidmesh_proto::dht_api::PutSignedStatus;
use voidmesh_proto::frame::MAX_PEER_MESSAGE;
use voidmesh_proto::signed::SignedRecord;
use voidmesh_proto::{Contact, Key, NodeId, Version};

/// ALPN protocol name of the DHT overlay.
pub const DHT_ALPN: &[u8] = b"voidmesh-kad/1";

use reads::{Copy, LocalReads, Rank};

/// Commands the driver task accepts.
pub(crate) enum Command {
    Get {
        key: Key,
        reply: oneshot::Sender<Option<(Bytes, Rank)>>,
    },
    Put {
        key: Key,
        value: Bytes,
        ttl: Duration,
        replication: u8,
        version: Version,
        reply: Option<oneshot::Sender<PutReport>>,
    },
    FindNode {
        target: Key,
        reply: oneshot::Sender<Vec<Contact>>,
    },
    Bootstrap {
        addrs: Vec<SocketAddr>,
        reply: oneshot::Sender<Result<usize, BootstrapError>>,
    },
    Contacts {
        reply: oneshot::Sender<Vec<Contact>>,
    },
    GetSigned {
        key: Key,
        reply: oneshot::Sender<Option<SignedRecord>>,
    },
    PutSigned {
        record: SignedRecord,
        replication: u8,
        reply: oneshot::Sender<PutSignedStatus>,
    },
}

/// Where a PUT ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutReport {
    /// Remote nodes that confirmed they hold the record.
    pub stored_remote: usize,
    /// Whether this node keeps a copy.
    pub stored_local: bool,
}

/// Why joining the network failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum BootstrapError {
    /// None of the bootstrap peers answered.
    #[error("no bootstrap peer answered")]
    NoPeerAnswered,
    /// The node stopped while joining.
    #[error("the node stopped")]
    Stopped,
}

/// The DHT service stopped before answering.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
#[error("the DHT service has stopped")]
pub struct Stopped;

/// A cloneable handle to a running DHT: commands go to the driver task; GETs that the
/// node answers alone are read from the driver's published read path.
#[derive(Clone)]
pub struct DhtHandle {
    commands: mpsc::Sender<Command>,
    reads: Arc<LocalReads>,
}

impl DhtHandle {
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Searches the network for `key`; `None` after a bounded search found nothing.
    /// A PUT this node accepted before the call is seen (or a newer value).
    ///
    /// # Errors
    /// [`Stopped`] if the service is shutting down.
    pub async fn get(&self, key: Key) -> Result<Option<Bytes>, Stopped> {
        let before = self.reads.read(std::time::Instant::now(), &key);
        if let (true, Some(copy)) = (before.final_answer, &before.copy) {
            return Ok(Some(copy.value.clone()));
        }
        let found = self.call(|reply| Command::Get { key, reply }).await?;
        let found = found.map(|(value, rank)| Copy {
            value,
            rank,
            expires: std::time::Instant::now(),
        });
        // A PUT read on another connection while the GET ran counts too: its connection
        // may have been scheduled after this one although its client wrote first.
        let after = self.reads.read(std::time::Instant::now(), &key);
        let local = reads::newest(before.copy, after.copy);
        Ok(reads::newest(local, found).map(|c| c.value))
    }

    /// The value of `key` when this node answers a GET for it alone, at once: it holds a
    /// copy and knows no other node (or `read_quorum` is 1). `None` when the GET must go
    /// through [`get`](Self::get), as does every miss.
    pub fn get_now(&self, key: &Key) -> Option<Bytes> {
        let local = self.reads.read(std::time::Instant::now(), key);
        local.final_answer.then_some(local.copy?.value)
    }

    /// Stores `value` under `key` and waits until the STOREs were answered.
    ///
    /// # Errors
    /// [`Stopped`] if the service is shutting down.
    pub async fn put(
        &self,
        key: Key,
        value: Bytes,
        ttl: Duration,
        replication: u8,
    ) -> Result<PutReport, Stopped> {
        let version = new_version();
        self.reads.note_put(key, &value, ttl, version);
        self.call(|reply| Command::Put {
            key,
            value,
            ttl,
            replication,
            version,
            reply: Some(reply),
        })
        .await
    }

    /// Stores `value` under `key` without waiting for the outcome (the API's PUT). From
    /// the moment this is called, a GET at this node on any connection sees the value (or
    /// a newer one) for as long as `ttl` lasts (capped at the configured `max_ttl`).
    ///
    /// # Errors
    /// [`Stopped`] if the service is shutting down.
    pub async fn put_detached(
        &self,
        key: Key,
        value: Bytes,
        ttl: Duration,
        replication: u8,
    ) -> Result<(), Stopped> {
        let version = new_version();
        self.reads.note_put(key, &value, ttl, version);
        self.commands
            .send(Command::Put {
                key,
                value,
                ttl,
                replication,
                version,
                reply: None,
            })
            .await
            .map_err(|_| Stopped)
    }

    /// The k closest nodes to `target` found by an iterative lookup.
    ///
    /// # Errors
    /// [`Stopped`] if the service is shutting down.
    pub async fn find_node(&self, target: Key) -> Result<Vec<Contact>, Stopped> {
        self.call(|reply| Command::FindNode { target, reply }).await
    }

    /// Joins the network through `addrs` (ids learned from the handshakes); returns the
    /// number of contacts known afterwards.
    ///
    /// # Errors
    /// [`BootstrapError`] when no peer answered or the service stopped.
    pub async fn bootstrap(&self, addrs: Vec<SocketAddr>) -> Result<usize, BootstrapError> {
        self.call(|reply| Command::Bootstrap { addrs, reply })
            .await
            .map_err(|_| BootstrapError::Stopped)?
    }

    /// Finds the verified signed record with the highest sequence number under `key`.
    ///
    /// # Errors
    /// [`Stopped`] if the service is shutting down.
    pub async fn get_signed(&self, key: Key) -> Result<Option<SignedRecord>, Stopped> {
        self.call(|reply| Command::GetSigned { key, reply }).await
    }

    /// Stores a signed record under `record.key()` on the `replication` closest nodes;
    /// waits until the STOREs were answered.
    ///
    /// # Errors
    /// [`Stopped`] if the service is shutting down.
    pub async fn put_signed(
        &self,
        record: SignedRecord,
        replication: u8,
    ) -> Result<PutSignedStatus, Stopped> {
        self.call(|reply| Command::PutSigned {
            record,
            replication,
            reply,
        })
        .await
    }

    /// The routing table's contacts.
    ///
    /// # Errors
    /// [`Stopped`] if the service is shutting down.
    pub async fn contacts(&self) -> Result<Vec<Contact>, Stopped> {
        self.call(|reply| Command::Contacts { reply }).await
    }
}

/// A version for a record put now: wall-clock milliseconds plus a random tie-break.
fn new_version() -> Version {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Version::new(millis, rand::random())
}

/// A running DHT node (overlay endpoint + driver task), without its API server.
pub struct DhtNode {
    handle: DhtHandle,
    node_id: NodeId,
    p2p_addr: SocketAddr,
    remembered: Vec<Contact>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

/// File name of the record store inside `data_dir`.
pub const RECORD_STORE: &str = "dht.redb";

/// Puts records read from disk back into the state machine, and deletes from disk those
/// it does not keep (e.g. beyond a bound lowered since the last run); returns how many
/// it kept.
fn restore_records(
    kad: &mut Kademlia,
    now: std::time::Instant,
    loaded: Loaded,
    storage: Option<&Storage>,
) -> usize {
    let now_ms = unix_ms();
    let mut kept = 0;
    let mut refused = Vec::new();
    for r in loaded.records {
        let left = Duration::from_millis(r.expires_unix_ms.saturating_sub(now_ms));
        let record = voidmesh_kad::Record {
            value: r.value,
            version: r.version,
            expires: now + left,
            replication: r.replication,
            publisher: r.publisher,
        };
        if kad.restore_record(now, r.key, record).is_held() {
            kept += 1;
        } else {
            refused.push(r.key);
        }
    }
    for s in loaded.signed {
        let key = s.record.key();
        if kad
            .restore_signed(now, s.record, s.replication, s.publisher)
            .is_held()
        {
            kept += 1;
        } else {
            refused.push(key);
        }
    }
    // What was restored is on disk already; what a later restore evicted is not held.
    while let Some(change) = kad.poll_store_change() {
        if let voidmesh_kad::StoreChange::Removed(key, _) = change {
            refused.push(key);
        }
    }
    if let Some(storage) = storage {
        for key in refused {
            if kad.held(&key).is_none() {
                storage.remove(key);
            }
        }
    }
    kept
}

impl DhtNode {
    /// Binds the overlay endpoint at `p2p_address` and starts the driver. The node is
    /// alone until [`DhtHandle::bootstrap`] is called.
    ///
    /// With `data_dir`, records and contacts are kept in `data_dir/dht.redb`: the records
    /// found there are served again, and the remembered contacts are returned by
    /// [`DhtNode::remembered_contacts`] so the caller can rejoin through them.
    ///
    /// # Errors
    /// When the endpoint cannot be bound or the record store cannot be opened.
    pub fn start(
        identity: &Identity,
        p2p_address: SocketAddr,
        kad: voidmesh_kad::Config,
        data_dir: Option<&Path>,
    ) -> Result<DhtNode, NodeError> {
        let socket = P2pSockets::new().bind(
            "DHT overlay",
            identity,
            p2p_address,
            Self::overlay_config(&kad),
        )?;
        Self::start_on(identity, &socket, kad, data_dir)
    }

    /// The overlay settings the DHT asks for when it binds the socket.
    pub fn overlay_config(kad: &voidmesh_kad::Config) -> OverlayConfig {
        OverlayConfig {
            request_timeout: kad.request_timeout * 2,
            ..OverlayConfig::default()
        }
    }

    /// Like [`start`](Self::start), on a socket that other modules may share (the DHT
    /// takes the overlay requests of its own message types and speaks its own ALPN).
    ///
    /// # Errors
    /// As [`start`](Self::start).
    pub fn start_on(
        identity: &Identity,
        socket: &P2pSocket,
        kad: voidmesh_kad::Config,
        data_dir: Option<&Path>,
    ) -> Result<DhtNode, NodeError> {
        let p2p_address = socket.local_addr();
        let net_config = EndpointConfig {
            alpn: DHT_ALPN.to_vec(),
            // The lookup gives up on a peer after `request_timeout` but still uses a late
            // answer; the transport's hard limit is therefore a little longer.
            request_timeout: kad.request_timeout * 2,
            max_message_size: MAX_PEER_MESSAGE,
            idle_timeout: Duration::from_secs(120),
        };
        let (storage, mut loaded) = match data_dir {
            Some(dir) => {
                crate::private::private_dir(dir).map_err(|e| {
                    NodeError::Storage(format!("cannot create {}: {e}", dir.display()))
                })?;
                let (storage, loaded) =
                    Storage::open(&dir.join(RECORD_STORE), kad.max_record_bytes)
                        .map_err(|e| NodeError::Storage(e.to_string()))?;
                (Some(storage), loaded)
            }
            None => (None, Loaded::default()),
        };
        let bind_error = |reason: String| NodeError::Bind {
            what: "DHT overlay",
            addr: p2p_address,
            reason,
        };
        let (overlay, datagrams) = socket.overlay(voidmesh_proto::kad_msg::is_kad_frame);
        let (streams, inbound) = socket
            .streams(net_config)
            .map_err(|e| bind_error(e.to_string()))?;
        let p2p_addr = overlay.local_addr();
        let transport = transport::Transport {
            overlay,
            streams,
            k: kad.k,
        };
        let node_id = identity.node_id();
        let now = tokio::time::Instant::now().into_std();
        let mut state = Kademlia::new(node_id, kad, now);
        // Signed records' expiry is checked against Unix time; the driver refreshes it.
        state.set_unix_time_ms(now, unix_ms());
        let remembered = std::mem::take(&mut loaded.contacts);
        let restored = restore_records(&mut state, now, loaded, storage.as_ref());
        if restored > 0 {
            tracing::info!(records = restored, "records restored from disk");
        }
        let (commands_tx, commands_rx) = mpsc::channel(4096);
        let shutdown = CancellationToken::new();
        let reads = Arc::new(LocalReads::new(state.config().max_ttl));
        let (driver, answers) = driver::Driver::new(state, transport, storage, reads.clone());
        let task =
            tokio::spawn(driver.run(commands_rx, answers, datagrams, inbound, shutdown.clone()));
        Ok(DhtNode {
            handle: DhtHandle {
                commands: commands_tx,
                reads,
            },
            node_id,
            p2p_addr,
            remembered,
            shutdown,
            task,
        })
    }

    /// Contacts remembered from the last run (empty without a data_dir).
    pub fn remembered_contacts(&self) -> &[Contact] {
        &self.remembered
    }

    /// A handle for issuing requests.
    pub fn handle(&self) -> DhtHandle {
        self.handle.clone()
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The bound overlay address.
    pub fn p2p_addr(&self) -> SocketAddr {
        self.p2p_addr
    }

    /// Stops the driver and closes the endpoint; waits until they are gone.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}
