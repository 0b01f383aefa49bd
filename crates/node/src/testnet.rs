//! Many DHT modules in one process on 127.0.0.1, for demos, tests and benchmarks.

use crate::config::DhtConfig;
use crate::service::DhtService;
use crate::NodeError;
use std::net::SocketAddr;
use voidmesh_net::Identity;

/// N DHT modules on loopback; node 0 started the network, the others joined through it.
pub struct Testnet {
    /// The nodes, in start order.
    pub nodes: Vec<DhtService>,
}

impl Testnet {
    /// Starts `n` nodes with fresh hostkeys and the given Kademlia settings; returns once
    /// every join has finished (joins run concurrently, `concurrency` at a time).
    ///
    /// # Errors
    /// When a socket cannot be bound or a node cannot join.
    pub async fn start(
        n: usize,
        kad: voidmesh_kad::Config,
        concurrency: usize,
    ) -> Result<Testnet, NodeError> {
        Testnet::start_at(n, kad, concurrency, None).await
    }

    /// [`Testnet::start`] on fixed ports when `base_port` is given: node `i`'s API on
    /// `base_port + 2i`, its peer socket on `base_port + 2i + 1` (else any free ports).
    ///
    /// # Errors
    /// As [`Testnet::start`]; [`NodeError::Join`] when the ports would pass 65535.
    pub async fn start_at(
        n: usize,
        kad: voidmesh_kad::Config,
        concurrency: usize,
        base_port: Option<u16>,
    ) -> Result<Testnet, NodeError> {
        if let Some(base) = base_port {
            let last = u32::from(base) + 2 * n as u32;
            if last > u32::from(u16::MAX) + 1 {
                return Err(NodeError::Join(format!(
                    "--base-port {base} with {n} nodes needs ports up to {}, above 65535",
                    last - 1
                )));
            }
        }
        let port = |i: usize, offset: u16| -> u16 {
            base_port.map_or(0, |base| base + 2 * i as u16 + offset)
        };
        let loopback = |port: u16| -> SocketAddr { ([127, 0, 0, 1], port).into() };
        let settings = |seed: u64| DhtConfig {
            p2p_address: loopback(port(seed as usize, 1)),
            api_address: loopback(port(seed as usize, 0)),
            bootstrappers: Vec::new(),
            kad: voidmesh_kad::Config {
                rng_seed: seed,
                ..kad.clone()
            },
            max_api_connections: 1024,
            api_timeouts: Default::default(),
        };
        let mut nodes = Vec::with_capacity(n);
        if n == 0 {
            return Ok(Testnet { nodes });
        }
        nodes.push(DhtService::start(&Identity::generate(), &settings(0), None).await?);
        let seed = nodes[0].p2p_addr();
        for i in 1..n {
            nodes.push(DhtService::start(&Identity::generate(), &settings(i as u64), None).await?);
        }
        let handles: Vec<_> = nodes[1..].iter().map(|s| s.handle()).collect();
        for chunk in handles.chunks(concurrency.max(1)) {
            let joins = chunk.iter().map(|h| h.bootstrap(vec![seed]));
            for result in futures::future::join_all(joins).await {
                result.map_err(|e| NodeError::Join(e.to_string()))?;
            }
        }
        Ok(Testnet { nodes })
    }

    /// Stops every node.
    pub async fn shutdown(self) {
        for node in self.nodes {
            node.shutdown().await;
        }
    }
}
