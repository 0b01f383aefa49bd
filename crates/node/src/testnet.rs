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
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let settings = |seed: u64| DhtConfig {
            p2p_address: loopback,
            api_address: loopback,
            bootstrappers: Vec::new(),
            kad: voidmesh_kad::Config {
                rng_seed: seed,
                ..kad.clone()
            },
            max_api_connections: 1024,
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
