//! The link between the nodes (processes) of a data-parallel run: a star of TCP
//! connections around node 0, which sums every node's buffer in rank order and sends the
//! sum back, so every node gets the same bits.
//!
//! burn-collective 0.21 has a multi-node mode, but its nodes cannot run a second
//! collective operation: the barrier that ends each one (`SyncService::sync` in
//! `global/node/sync.rs`) clears a copy of its list of synced peers instead of the list,
//! so the next barrier never completes (two nodes hang in the second all-reduce). This
//! link replaces that level only; replicas inside a process still meet through
//! burn-collective's local server.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::Error;

/// Bytes every connection starts with, then the sender's rank and node count (u32 LE).
const HELLO: &[u8; 8] = b"dwconv1\0";

/// One node's end of the star.
pub(crate) struct NodeLink {
    /// Node 0: a connection to each other node, in rank order (1, 2, ...). Others: the
    /// connection to node 0.
    streams: Vec<TcpStream>,
    rank: u32,
}

impl NodeLink {
    /// Node 0 listens on `master` (`host:port`) until the other `nodes - 1` nodes have
    /// connected; the others connect to it, retrying until `timeout`.
    pub(crate) fn connect(
        master: &str,
        nodes: u32,
        rank: u32,
        timeout: Duration,
    ) -> crate::Result<Self> {
        let deadline = Instant::now() + timeout;
        let unreachable = |e: &dyn std::fmt::Display| {
            Error::Config(format!(
                "node {rank}: cannot reach node 0 at '{master}' within {timeout:?}: {e}"
            ))
        };
        if rank == 0 {
            let listener = TcpListener::bind(master)
                .map_err(|e| Error::Config(format!("node 0 cannot listen on '{master}': {e}")))?;
            listener
                .set_nonblocking(true)
                .map_err(|e| unreachable(&e))?;
            let mut streams: Vec<Option<TcpStream>> = (1..nodes).map(|_| None).collect();
            while streams.iter().any(Option::is_none) {
                match listener.accept() {
                    Ok((mut stream, _)) => {
                        stream.set_nonblocking(false).map_err(|e| unreachable(&e))?;
                        let (peer_rank, peer_nodes) = read_hello(&mut stream)?;
                        if peer_nodes != nodes || peer_rank == 0 || peer_rank >= nodes {
                            return Err(Error::Config(format!(
                                "node 0 of {nodes}: a node says it is node {peer_rank} of {peer_nodes}"
                            )));
                        }
                        let slot = &mut streams[peer_rank as usize - 1];
                        if slot.is_some() {
                            return Err(Error::Config(format!(
                                "node 0: two nodes say they are node {peer_rank}"
                            )));
                        }
                        write_hello(&mut stream, 0, nodes)?;
                        *slot = Some(stream);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            let missing: Vec<usize> = (1..nodes as usize)
                                .filter(|r| streams[r - 1].is_none())
                                .collect();
                            return Err(Error::Config(format!(
                                "node 0: nodes {missing:?} did not connect to '{master}' within {timeout:?}"
                            )));
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(unreachable(&e)),
                }
            }
            let streams = streams.into_iter().map(|s| s.expect("all connected"));
            return Self::ready(streams.collect(), rank);
        }
        let address = master
            .to_socket_addrs()
            .map_err(|e| unreachable(&e))?
            .next()
            .ok_or_else(|| unreachable(&"no address"))?;
        loop {
            match TcpStream::connect_timeout(&address, Duration::from_secs(1)) {
                Ok(mut stream) => {
                    write_hello(&mut stream, rank, nodes)?;
                    let (peer_rank, peer_nodes) = read_hello(&mut stream)?;
                    if (peer_rank, peer_nodes) != (0, nodes) {
                        return Err(Error::Config(format!(
                            "node {rank} of {nodes}: '{master}' says it is node {peer_rank} of {peer_nodes}"
                        )));
                    }
                    return Self::ready(vec![stream], rank);
                }
                Err(e) if Instant::now() > deadline => return Err(unreachable(&e)),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn ready(streams: Vec<TcpStream>, rank: u32) -> crate::Result<Self> {
        for stream in &streams {
            // Small buffers go out at once (one per step).
            stream
                .set_nodelay(true)
                .map_err(|e| Error::Config(format!("node {rank}: {e}")))?;
        }
        Ok(Self { streams, rank })
    }

    /// The element-wise sum of every node's `values` (node 0's, then node 1's, ...).
    ///
    /// # Panics
    /// When a node is lost or sends a buffer of another length: the replicas can no longer
    /// stay equal, and the run stops.
    pub(crate) fn sum(&mut self, mut values: Vec<f32>) -> Vec<f32> {
        let rank = self.rank;
        let lost = |e: std::io::Error| -> ! { panic!("node {rank}: lost a node: {e}") };
        if rank == 0 {
            let mut incoming = vec![0.0f32; values.len()];
            for (i, stream) in self.streams.iter_mut().enumerate() {
                read_values(stream, &mut incoming).unwrap_or_else(|e| lost(e));
                assert_eq!(
                    incoming.len(),
                    values.len(),
                    "node {} sent {} values, node 0 has {}",
                    i + 1,
                    incoming.len(),
                    values.len()
                );
                values.iter_mut().zip(&incoming).for_each(|(v, x)| *v += x);
            }
            for stream in &mut self.streams {
                write_values(stream, &values).unwrap_or_else(|e| lost(e));
            }
        } else {
            let stream = &mut self.streams[0];
            write_values(stream, &values).unwrap_or_else(|e| lost(e));
            let len = values.len();
            read_values(stream, &mut values).unwrap_or_else(|e| lost(e));
            assert_eq!(values.len(), len, "node 0 sent a sum of another length");
        }
        values
    }
}

fn write_hello(stream: &mut TcpStream, rank: u32, nodes: u32) -> crate::Result<()> {
    let mut bytes = HELLO.to_vec();
    bytes.extend(rank.to_le_bytes());
    bytes.extend(nodes.to_le_bytes());
    stream
        .write_all(&bytes)
        .map_err(|e| Error::Config(format!("node {rank}: cannot greet a node: {e}")))
}

fn read_hello(stream: &mut TcpStream) -> crate::Result<(u32, u32)> {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .and_then(|_| {
            let mut bytes = [0u8; 16];
            stream.read_exact(&mut bytes)?;
            stream.set_read_timeout(None)?;
            Ok(bytes)
        })
        .map_err(|e| Error::Config(format!("a node did not greet: {e}")))
        .and_then(|bytes| {
            if &bytes[..8] != HELLO {
                return Err(Error::Config(
                    "something that is not a dwconv node connected".into(),
                ));
            }
            let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
            Ok((word(8), word(12)))
        })
}

/// A length (u64 LE) and the values (f32 LE).
fn write_values(stream: &mut TcpStream, values: &[f32]) -> std::io::Result<()> {
    let mut bytes = Vec::with_capacity(8 + 4 * values.len());
    bytes.extend((values.len() as u64).to_le_bytes());
    values.iter().for_each(|v| bytes.extend(v.to_le_bytes()));
    stream.write_all(&bytes)
}

/// Reads what [`write_values`] wrote into `values`, resized to the length sent.
fn read_values(stream: &mut TcpStream, values: &mut Vec<f32>) -> std::io::Result<()> {
    let mut len = [0u8; 8];
    stream.read_exact(&mut len)?;
    let len = u64::from_le_bytes(len) as usize;
    let mut bytes = vec![0u8; 4 * len];
    stream.read_exact(&mut bytes)?;
    values.clear();
    values.extend(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))),
    );
    Ok(())
}
