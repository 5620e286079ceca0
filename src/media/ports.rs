//! The RTP port pool: leases even UDP ports from the configured range, one per call leg.
//!
//! Ports are handed out round-robin, starting after the last one leased, so a port that was just
//! released is not reused at once (late packets of the old call would land in the new one).
//! Ports this pool has leased are skipped, and so are ports another process holds (their bind
//! fails with "address in use"); after one full sweep with nothing free the pool answers
//! [`MediaError::PortsExhausted`]. Only the even RTP port is bound; RTCP (port + 1) is left
//! unbound for now. A lease goes back to the pool when its [`RtpSocket`] (or the
//! [`PortLease`] taken out of it) is dropped. The pool never blocks on the network: binding is the
//! only I/O it does.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};

use socket2::{Domain, Protocol, Socket, Type};

use super::MediaError;

/// Socket buffer size asked for on every RTP socket: a burst of a few hundred packets must not
/// overflow the kernel's queue while a task is descheduled.
const SOCKET_BUFFER_BYTES: usize = 1 << 20;

/// A shared pool of RTP ports; clones share the same leases.
#[derive(Debug, Clone)]
pub struct PortPool {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    bind_ip: IpAddr,
    min: u16,
    max: u16,
    /// First even port at or above `min`, as u32 so `65535` rounds up without overflow.
    first: u32,
    state: Mutex<PoolState>,
}

#[derive(Debug)]
struct PoolState {
    /// `leased[i]` is true while port `first + 2 * i` is out.
    leased: Vec<bool>,
    /// Index the next sweep starts at.
    next: usize,
}

impl PoolInner {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // A panic elsewhere while holding the lock leaves the state consistent (plain flags).
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn port(&self, index: usize) -> u16 {
        // In range by construction: `index < leased.len()` keeps the port at or below `max`.
        (self.first + 2 * index as u32) as u16
    }
}

impl PortPool {
    /// A pool over the even ports in `min..=max`, bound on `bind_ip`.
    pub fn new(bind_ip: IpAddr, min: u16, max: u16) -> Self {
        let first = (min as u32 + 1) & !1;
        let count = if first <= max as u32 {
            ((max as u32 - first) / 2 + 1) as usize
        } else {
            0
        };
        PortPool {
            inner: Arc::new(PoolInner {
                bind_ip,
                min,
                max,
                first,
                state: Mutex::new(PoolState {
                    leased: vec![false; count],
                    next: 0,
                }),
            }),
        }
    }

    /// How many RTP ports the range holds (even ports only).
    pub fn capacity(&self) -> usize {
        self.inner.lock().leased.len()
    }

    /// How many ports are leased right now.
    pub fn in_use(&self) -> usize {
        self.inner.lock().leased.iter().filter(|l| **l).count()
    }

    /// Binds the next free even port: non-blocking, 1 MiB send and receive buffers.
    pub fn bind(&self) -> Result<RtpSocket, MediaError> {
        let inner = &self.inner;
        let mut state = inner.lock();
        let count = state.leased.len();
        if count == 0 {
            return Err(MediaError::PortRange {
                min: inner.min,
                max: inner.max,
            });
        }
        for step in 0..count {
            let index = (state.next + step) % count;
            if state.leased[index] {
                continue;
            }
            let port = inner.port(index);
            let addr = SocketAddr::new(inner.bind_ip, port);
            match bind_udp(addr) {
                Ok(socket) => {
                    state.leased[index] = true;
                    state.next = (index + 1) % count;
                    return Ok(RtpSocket {
                        socket,
                        port,
                        lease: PortLease {
                            pool: Arc::clone(inner),
                            index,
                            port,
                        },
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    tracing::debug!(port, "RTP port held by another process, skipping");
                }
                Err(source) => return Err(MediaError::Bind { addr, source }),
            }
        }
        Err(MediaError::PortsExhausted {
            min: inner.min,
            max: inner.max,
        })
    }
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // The kernel may clamp the size (net.core.rmem_max); a smaller buffer still works.
    if let Err(e) = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::debug!(error = %e, "cannot set SO_RCVBUF on RTP socket");
    }
    if let Err(e) = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::debug!(error = %e, "cannot set SO_SNDBUF on RTP socket");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A bound, non-blocking RTP socket and the lease on its port.
#[derive(Debug)]
pub struct RtpSocket {
    pub socket: UdpSocket,
    pub port: u16,
    // Declared last: the socket closes before the port goes back to the pool.
    lease: PortLease,
}

impl RtpSocket {
    /// Splits the socket from its lease, for a driver that moves the socket into a task and
    /// must keep the port reserved until that task has closed it.
    pub fn into_parts(self) -> (UdpSocket, PortLease) {
        (self.socket, self.lease)
    }
}

/// Holds one port of a [`PortPool`]; dropping it makes the port available again.
#[derive(Debug)]
pub struct PortLease {
    pool: Arc<PoolInner>,
    index: usize,
    port: u16,
}

impl PortLease {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        let mut state = self.pool.lock();
        if let Some(flag) = state.leased.get_mut(self.index) {
            *flag = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// An even base port such that `base..base + 2 * n` are all free right now.
    fn free_range(n: u16) -> u16 {
        for _ in 0..200 {
            let base = rand::random_range(20_000u16..30_000) & !1;
            let all_free = (0..n).all(|i| UdpSocket::bind((LOCALHOST, base + 2 * i)).is_ok());
            if all_free {
                return base;
            }
        }
        panic!("no free port range found on 127.0.0.1");
    }

    #[test]
    fn exhaustion_gives_a_clear_error() {
        let base = free_range(4);
        let pool = PortPool::new(LOCALHOST, base, base + 7);
        assert_eq!(pool.capacity(), 4);
        let mut held = Vec::new();
        for _ in 0..4 {
            let s = pool.bind().expect("free port");
            assert_eq!(s.port % 2, 0);
            assert_eq!(s.socket.local_addr().expect("addr").port(), s.port);
            held.push(s);
        }
        let mut ports: Vec<u16> = held.iter().map(|s| s.port).collect();
        ports.sort_unstable();
        assert_eq!(ports, vec![base, base + 2, base + 4, base + 6]);
        assert_eq!(pool.in_use(), 4);
        let err = pool.bind().expect_err("range is full");
        assert!(matches!(err, MediaError::PortsExhausted { .. }));
        assert_eq!(
            err.to_string(),
            format!(
                "RTP port range {base}-{} exhausted: every port is in use",
                base + 7
            )
        );
    }

    #[test]
    fn released_port_is_reused_round_robin() {
        let base = free_range(2);
        let pool = PortPool::new(LOCALHOST, base, base + 3);
        let a = pool.bind().expect("first");
        assert_eq!(a.port, base);
        let b = pool.clone().bind().expect("second");
        assert_eq!(b.port, base + 2);
        assert!(pool.bind().is_err());
        drop(a);
        assert_eq!(pool.in_use(), 1);
        let c = pool.bind().expect("released port is free again");
        assert_eq!(c.port, base);
        // Round robin: after `b` is released, the next lease starts after the last one (c).
        drop(b);
        let d = pool.bind().expect("b's port");
        assert_eq!(d.port, base + 2);
        let (socket, lease) = c.into_parts();
        drop(socket);
        assert_eq!(lease.port(), base);
        assert_eq!(pool.in_use(), 2);
        drop(lease);
        assert_eq!(pool.in_use(), 1);
    }

    #[test]
    fn port_held_elsewhere_is_skipped() {
        let base = free_range(3);
        let other = UdpSocket::bind((LOCALHOST, base + 2)).expect("someone else's socket");
        let pool = PortPool::new(LOCALHOST, base, base + 5);
        let a = pool.bind().expect("first");
        let b = pool.bind().expect("second");
        assert_eq!((a.port, b.port), (base, base + 4));
        assert!(matches!(
            pool.bind(),
            Err(MediaError::PortsExhausted { .. })
        ));
        drop(other);
        assert_eq!(pool.bind().expect("now free").port, base + 2);
    }

    #[test]
    fn odd_bounds_and_empty_ranges() {
        let pool = PortPool::new(LOCALHOST, 10_001, 10_010);
        assert_eq!(pool.capacity(), 5); // 10002..=10010
        let empty = PortPool::new(LOCALHOST, 10_001, 10_001);
        assert_eq!(empty.capacity(), 0);
        let err = empty.bind().expect_err("no even port");
        assert_eq!(
            err.to_string(),
            "RTP port range 10001-10001 holds no even port to use for RTP"
        );
        assert_eq!(PortPool::new(LOCALHOST, 65_535, 65_535).capacity(), 0);
        assert_eq!(PortPool::new(LOCALHOST, 20_000, 10_000).capacity(), 0);
    }

    #[test]
    fn unusable_address_is_reported_not_swept() {
        // 192.0.2.1 (TEST-NET-1) is not an address of this machine.
        let pool = PortPool::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 20_000, 20_010);
        let err = pool.bind().expect_err("cannot bind a foreign address");
        assert!(matches!(err, MediaError::Bind { .. }), "{err}");
        assert!(err
            .to_string()
            .starts_with("cannot bind RTP socket to 192.0.2.1:20000"));
    }
}
