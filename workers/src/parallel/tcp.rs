//! The CPU communicator: ranks on one host joined in a star over loopback
//! TCP (`std::net`, no extra dependency), rank 0 at the hub.
//!
//! Rank 0 listens on the address of the communicator id
//! (`tcp://127.0.0.1:PORT`, chosen by the executor); every other rank
//! connects, says its rank, and waits for rank 0's go once all have
//! joined. A collective gathers every rank's tensor at rank 0, which
//! combines them in rank order (the sum is `((t0 + t1) + t2) ...`) and
//! sends the one result back, so every rank holds bit-identical values.
//! Two messages per peer per collective is the least a star can do; for a
//! handful of CPU ranks on one host the latency of a round trip, not
//! bandwidth, is what costs (a ring would need `2(n-1)` rounds).
//!
//! Every socket has read and write timeouts: a peer that exits closes its
//! sockets and the next read fails at once; one that hangs fails the
//! collective after [`TcpOptions::op_timeout`]. Nothing here waits forever.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tch::{Device, Tensor};

use super::wire::{self, Op, ReadError, WriteError};
use super::{CommError, Communicator};

/// First bytes a joining rank sends: "TPJ1".
const HELLO: u32 = 0x314A_5054;
/// How often a joining rank retries the connection, and rank 0 polls for
/// joiners.
const RETRY: Duration = Duration::from_millis(20);

/// Timeouts of a [`TcpCommunicator`].
#[derive(Debug, Clone, Copy)]
pub struct TcpOptions {
    /// How long ranks wait for each other to form the group.
    pub rendezvous_timeout: Duration,
    /// How long one read or write in a collective may block: longer than
    /// the slowest rank's compute between two collectives (a long prefill
    /// on a loaded CPU), short enough that a hung peer surfaces.
    pub op_timeout: Duration,
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self {
            rendezvous_timeout: Duration::from_secs(60),
            op_timeout: Duration::from_secs(120),
        }
    }
}

/// `tcp://host:port` -> the address rank 0 listens on.
pub fn parse_communicator_id(id: &str) -> Result<SocketAddr, CommError> {
    let bad = |reason: String| CommError::BadId {
        id: id.to_string(),
        reason,
    };
    let rest = id
        .strip_prefix("tcp://")
        .ok_or_else(|| bad("expected tcp://host:port".into()))?;
    rest.to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("resolves to no address".into()))
}

/// One rank's connections: rank 0 holds one stream per other rank (index
/// `peer - 1`), every other rank one stream to rank 0.
pub struct TcpCommunicator {
    rank: usize,
    world_size: usize,
    streams: Mutex<Vec<TcpStream>>,
}

impl TcpCommunicator {
    /// Joins the group of `world_size` whose rank 0 listens at `addr`.
    /// Blocks until all ranks joined, or errors after
    /// `options.rendezvous_timeout`.
    pub fn connect(
        rank: usize,
        world_size: usize,
        addr: SocketAddr,
        options: TcpOptions,
    ) -> Result<Self, CommError> {
        let fail = |reason: String| CommError::Rendezvous {
            rank,
            world_size,
            addr: addr.to_string(),
            reason,
        };
        if world_size == 0 || rank >= world_size {
            return Err(fail(format!("rank {rank} is outside the group")));
        }
        let deadline = Instant::now() + options.rendezvous_timeout;
        let streams = if rank == 0 {
            accept_peers(addr, world_size, deadline, options).map_err(fail)?
        } else {
            vec![join_hub(addr, rank, world_size, deadline, options).map_err(fail)?]
        };
        Ok(Self {
            rank,
            world_size,
            streams: Mutex::new(streams),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<TcpStream>> {
        // A panic while holding the lock leaves plain sockets behind; the
        // next collective reads or writes them and reports what it finds.
        self.streams
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn send(
        &self,
        stream: &mut TcpStream,
        peer: usize,
        op: Op,
        t: &Tensor,
    ) -> Result<(), CommError> {
        wire::write_tensor(stream, op, t).map_err(|e| match e {
            WriteError::Io(source) => CommError::Peer {
                rank: self.rank,
                peer,
                op: op.name(),
                source,
            },
            WriteError::Comm(c) => c,
        })
    }

    fn recv(&self, stream: &mut TcpStream, peer: usize, op: Op) -> Result<Tensor, CommError> {
        let got = wire::read_tensor(stream).map_err(|e| match e {
            ReadError::Io(source) => CommError::Peer {
                rank: self.rank,
                peer,
                op: op.name(),
                source,
            },
            ReadError::Invalid(reason) => self.mismatch(peer, op, reason),
            ReadError::Torch(t) => CommError::Torch(t),
        })?;
        if got.op != op {
            return Err(self.mismatch(
                peer,
                op,
                format!("it is in {} (ranks out of step)", got.op.name()),
            ));
        }
        Ok(got.tensor)
    }

    fn mismatch(&self, peer: usize, op: Op, reason: String) -> CommError {
        CommError::Mismatch {
            rank: self.rank,
            peer,
            op: op.name(),
            reason,
        }
    }

    /// The hub's half of a gather-combine-scatter collective: reads every
    /// peer's tensor in rank order, combines them with its own, sends the
    /// result back to all.
    fn hub_round(
        &self,
        op: Op,
        own: Tensor,
        combine: impl FnOnce(Vec<Tensor>) -> Result<Tensor, CommError>,
    ) -> Result<Tensor, CommError> {
        let mut streams = self.lock();
        let mut parts = Vec::with_capacity(self.world_size);
        parts.push(own);
        for (i, s) in streams.iter_mut().enumerate() {
            parts.push(self.recv(s, i + 1, op)?);
        }
        let out = combine(parts)?;
        for (i, s) in streams.iter_mut().enumerate() {
            self.send(s, i + 1, op, &out)?;
        }
        Ok(out)
    }

    /// A spoke's half: sends its tensor to the hub, reads the result.
    fn spoke_round(&self, op: Op, own: &Tensor) -> Result<Tensor, CommError> {
        let mut streams = self.lock();
        let hub = streams
            .first_mut()
            .ok_or_else(|| self.mismatch(0, op, "no connection to rank 0".into()))?;
        self.send(hub, 0, op, own)?;
        self.recv(hub, 0, op)
    }
}

impl Communicator for TcpCommunicator {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn all_reduce_sum(&self, t: &Tensor) -> Result<Tensor, CommError> {
        let device = t.device();
        let own = t.to_device(Device::Cpu);
        let op = Op::AllReduce;
        let out = if self.rank == 0 {
            self.hub_round(op, own.copy(), |parts| {
                let mut it = parts.into_iter().enumerate();
                let Some((_, mut acc)) = it.next() else {
                    return Err(self.mismatch(0, op, "nothing to reduce".into()));
                };
                for (peer, p) in it {
                    if p.size() != acc.size() || p.kind() != acc.kind() {
                        return Err(self.mismatch(
                            peer,
                            op,
                            format!(
                                "{:?} {:?} against {:?} {:?}",
                                p.kind(),
                                p.size(),
                                acc.kind(),
                                acc.size()
                            ),
                        ));
                    }
                    acc = acc.f_add_(&p)?;
                }
                Ok(acc)
            })?
        } else {
            let out = self.spoke_round(op, &own)?;
            if out.size() != own.size() || out.kind() != own.kind() {
                return Err(self.mismatch(0, op, format!("result shape {:?}", out.size())));
            }
            out
        };
        Ok(out.f_to_device(device)?)
    }

    fn all_gather(&self, t: &Tensor, dim: i64) -> Result<Tensor, CommError> {
        let device = t.device();
        let own = t.to_device(Device::Cpu);
        let out = if self.rank == 0 {
            self.hub_round(Op::AllGather, own, |parts| Ok(Tensor::f_cat(&parts, dim)?))?
        } else {
            self.spoke_round(Op::AllGather, &own)?
        };
        Ok(out.f_to_device(device)?)
    }

    fn broadcast(&self, t: &Tensor, root: usize) -> Result<Tensor, CommError> {
        let op = Op::Broadcast;
        if root >= self.world_size {
            return Err(self.mismatch(root, op, format!("root {root} is outside the group")));
        }
        let device = t.device();
        let mut streams = self.lock();
        let out = if self.rank == 0 {
            // The root's tensor reaches the hub first, then every other spoke.
            let value = if root == 0 {
                t.shallow_clone()
            } else {
                let s = streams
                    .get_mut(root - 1)
                    .ok_or_else(|| self.mismatch(root, op, "no such peer".into()))?;
                self.recv(s, root, op)?
            };
            for (i, s) in streams.iter_mut().enumerate() {
                if i + 1 != root {
                    self.send(s, i + 1, op, &value)?;
                }
            }
            value
        } else {
            let hub = streams
                .first_mut()
                .ok_or_else(|| self.mismatch(0, op, "no connection to rank 0".into()))?;
            if self.rank == root {
                self.send(hub, 0, op, t)?;
                t.shallow_clone()
            } else {
                self.recv(hub, 0, op)?
            }
        };
        Ok(out.f_to_device(device)?)
    }

    fn barrier(&self) -> Result<(), CommError> {
        let token = Tensor::zeros([0], tch::kind::FLOAT_CPU);
        if self.rank == 0 {
            let _ = self.hub_round(Op::Barrier, token, |mut parts| {
                parts
                    .pop()
                    .ok_or_else(|| self.mismatch(0, Op::Barrier, "no token".into()))
            })?;
        } else {
            let _ = self.spoke_round(Op::Barrier, &token)?;
        }
        Ok(())
    }
}

/// Sets what every collective socket needs: no Nagle delay (each message
/// is one write waiting for its answer), blocking reads and writes with
/// the op timeout.
fn configure(stream: &TcpStream, options: TcpOptions) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(options.op_timeout))?;
    stream.set_write_timeout(Some(options.op_timeout))
}

fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

/// Rank 0: accepts `world_size - 1` peers, each naming its rank, then
/// sends each the go byte. Streams in rank order. Runs on a blocking
/// thread (the runner's), never in async code; std's `accept` has no
/// timeout, so it polls a non-blocking listener with short sleeps.
#[allow(clippy::disallowed_methods)]
fn accept_peers(
    addr: SocketAddr,
    world_size: usize,
    deadline: Instant,
    options: TcpOptions,
) -> Result<Vec<TcpStream>, String> {
    let listener = TcpListener::bind(addr).map_err(|e| format!("listening: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    let mut slots: Vec<Option<TcpStream>> = (1..world_size).map(|_| None).collect();
    let mut joined = 0;
    while joined < world_size - 1 {
        let (mut stream, _) = match listener.accept() {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if remaining(deadline).is_none() {
                    return Err(format!(
                        "only {joined} of {} ranks joined in time",
                        world_size - 1
                    ));
                }
                std::thread::sleep(RETRY);
                continue;
            }
            Err(e) => return Err(format!("accepting: {e}")),
        };
        configure(&stream, options).map_err(|e| format!("socket: {e}"))?;
        let mut hello = [0u8; 12];
        if stream.read_exact(&mut hello).is_err() {
            // Not one of ours (or it gave up): ignore it.
            continue;
        }
        let word =
            |i: usize| u32::from_le_bytes([hello[i], hello[i + 1], hello[i + 2], hello[i + 3]]);
        let (magic, peer, size) = (word(0), word(4) as usize, word(8) as usize);
        if magic != HELLO {
            continue;
        }
        if size != world_size {
            return Err(format!(
                "rank {peer} thinks the group has {size} ranks, not {world_size}"
            ));
        }
        match slots.get_mut(peer.wrapping_sub(1)) {
            Some(slot @ None) => {
                *slot = Some(stream);
                joined += 1;
            }
            Some(Some(_)) => return Err(format!("rank {peer} joined twice")),
            None => return Err(format!("a peer claims rank {peer}")),
        }
    }
    let mut streams: Vec<TcpStream> = slots.into_iter().flatten().collect();
    for (i, s) in streams.iter_mut().enumerate() {
        s.write_all(&[1])
            .map_err(|e| format!("telling rank {} to go: {e}", i + 1))?;
    }
    Ok(streams)
}

/// Any other rank: connects to rank 0 (retrying while it starts), names
/// itself, waits for the go byte. Blocking thread only, as
/// [`accept_peers`].
#[allow(clippy::disallowed_methods)]
fn join_hub(
    addr: SocketAddr,
    rank: usize,
    world_size: usize,
    deadline: Instant,
    options: TcpOptions,
) -> Result<TcpStream, String> {
    let mut stream = loop {
        let Some(left) = remaining(deadline) else {
            return Err("rank 0 did not accept in time".into());
        };
        match TcpStream::connect_timeout(&addr, left.min(Duration::from_secs(1))) {
            Ok(s) => break s,
            Err(_) => std::thread::sleep(RETRY),
        }
    };
    configure(&stream, options).map_err(|e| format!("socket: {e}"))?;
    let mut hello = Vec::with_capacity(12);
    hello.extend_from_slice(&HELLO.to_le_bytes());
    hello.extend_from_slice(&(rank as u32).to_le_bytes());
    hello.extend_from_slice(&(world_size as u32).to_le_bytes());
    stream
        .write_all(&hello)
        .map_err(|e| format!("saying hello: {e}"))?;
    // Wait for the go until the rendezvous deadline, then go back to the
    // op timeout.
    let left = remaining(deadline).unwrap_or(Duration::from_millis(1));
    stream
        .set_read_timeout(Some(left))
        .map_err(|e| format!("socket: {e}"))?;
    let mut go = [0u8; 1];
    stream
        .read_exact(&mut go)
        .map_err(|e| format!("waiting for the other ranks: {e}"))?;
    stream
        .set_read_timeout(Some(options.op_timeout))
        .map_err(|e| format!("socket: {e}"))?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::disallowed_methods
    )]
    use super::*;
    use std::net::TcpListener;
    use tch::Kind;

    fn free_addr() -> SocketAddr {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    fn quick() -> TcpOptions {
        TcpOptions {
            rendezvous_timeout: Duration::from_secs(20),
            op_timeout: Duration::from_secs(20),
        }
    }

    /// Runs `f(rank, comm)` on `n` threads, one rank each; results in rank order.
    fn group<T: Send + 'static>(
        n: usize,
        options: TcpOptions,
        f: impl Fn(usize, TcpCommunicator) -> T + Send + Sync + Clone + 'static,
    ) -> Vec<T> {
        let addr = free_addr();
        let handles: Vec<_> = (0..n)
            .map(|rank| {
                let f = f.clone();
                std::thread::spawn(move || {
                    let comm = TcpCommunicator::connect(rank, n, addr, options).unwrap();
                    f(rank, comm)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    /// Rank r's test tensor: distinct, non-integer values.
    fn tensor_of(rank: usize) -> Tensor {
        (Tensor::arange(12, (Kind::Float, Device::Cpu)) * 0.1 + rank as f64 * 1.37).view([3, 4])
    }

    #[test]
    fn all_reduce_sums_in_rank_order_on_every_rank() {
        for n in [2, 3, 4] {
            let got = group(n, quick(), |rank, c| {
                Vec::<f32>::try_from(c.all_reduce_sum(&tensor_of(rank)).unwrap().flatten(0, -1))
                    .unwrap()
            });
            let mut want = tensor_of(0);
            for r in 1..n {
                want += tensor_of(r);
            }
            let want = Vec::<f32>::try_from(want.flatten(0, -1)).unwrap();
            for g in &got {
                // Bit-identical: the same additions in the same order.
                assert_eq!(g, &want, "world size {n}");
            }
        }
    }

    #[test]
    fn all_gather_concatenates_in_rank_order() {
        let got = group(3, quick(), |rank, c| {
            c.all_gather(&tensor_of(rank), -1).unwrap()
        });
        let want = Tensor::cat(&[tensor_of(0), tensor_of(1), tensor_of(2)], -1);
        for g in got {
            assert!(g.equal(&want));
        }
    }

    #[test]
    fn broadcast_from_any_root_and_barrier() {
        for root in 0..3 {
            let got = group(3, quick(), move |rank, c| {
                c.barrier().unwrap();
                let out = c.broadcast(&tensor_of(rank), root).unwrap();
                c.barrier().unwrap();
                out
            });
            for g in got {
                assert!(g.equal(&tensor_of(root)), "root {root}");
            }
        }
    }

    #[test]
    fn many_collectives_in_a_row_stay_in_step() {
        let got = group(4, quick(), |rank, c| {
            let mut x = tensor_of(rank).to_kind(Kind::BFloat16);
            for _ in 0..50 {
                x = c.all_reduce_sum(&x).unwrap() * 0.25;
            }
            c.all_gather(&x, 0).unwrap()
        });
        for g in &got[1..] {
            assert!(g.equal(&got[0]));
        }
    }

    #[test]
    fn a_dead_peer_is_an_error_not_a_hang() {
        let start = Instant::now();
        let got = group(3, quick(), |rank, c| {
            if rank == 2 {
                // Leaves the group: its sockets close.
                drop(c);
                return None;
            }
            Some(c.all_reduce_sum(&tensor_of(rank)))
        });
        assert!(matches!(got[0], Some(Err(CommError::Peer { peer: 2, .. }))));
        // Rank 1 hears nothing back from a hub that gave up.
        assert!(matches!(got[1], Some(Err(CommError::Peer { peer: 0, .. }))));
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_silent_peer_times_out() {
        let options = TcpOptions {
            rendezvous_timeout: Duration::from_secs(20),
            op_timeout: Duration::from_millis(300),
        };
        let got = group(2, options, |rank, c| {
            if rank == 1 {
                // Stays connected but never takes part.
                std::thread::sleep(Duration::from_secs(2));
                return None;
            }
            Some(c.all_reduce_sum(&tensor_of(rank)))
        });
        assert!(matches!(got[0], Some(Err(CommError::Peer { peer: 1, .. }))));
    }

    #[test]
    fn a_missing_rank_fails_the_rendezvous() {
        let addr = free_addr();
        let options = TcpOptions {
            rendezvous_timeout: Duration::from_millis(300),
            op_timeout: Duration::from_secs(1),
        };
        let err = TcpCommunicator::connect(0, 2, addr, options).err();
        assert!(matches!(err, Some(CommError::Rendezvous { .. })));
    }

    #[test]
    fn out_of_step_ranks_get_a_mismatch() {
        let got = group(2, quick(), |rank, c| {
            let t = tensor_of(rank);
            if rank == 0 {
                c.all_reduce_sum(&t).err()
            } else {
                c.all_gather(&t, 0).err()
            }
        });
        assert!(matches!(got[0], Some(CommError::Mismatch { .. })));
    }

    #[test]
    fn parses_ids() {
        assert_eq!(
            parse_communicator_id("tcp://127.0.0.1:5000").unwrap(),
            "127.0.0.1:5000".parse().unwrap()
        );
        assert!(parse_communicator_id("nccl:abc").is_err());
        assert!(parse_communicator_id("tcp://nohost").is_err());
    }
}
