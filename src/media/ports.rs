//! The RTP port pool: leases pairs of UDP ports from the configured range, one pair per call leg:
//! an even port for RTP and the odd port after it for RTCP (RFC 3550 §11). Both are bound, so
//! the RTCP port cannot be taken by anyone else while the lease lasts; a pair whose RTCP port
//! would fall outside the range is not used.
//!
//! Each lease starts its search at a random pair of the range, so the port a call gets cannot be
//! guessed from the last one (an injector would have to sweep the whole range), and takes the
//! first pair that is free from there. Pairs this pool has leased are skipped, and so are pairs
//! where another process holds either port (its bind fails with "address in use"). The last
//! [`QUARANTINE`] pairs released are passed over while any other pair is free, so a port that
//! was just released is not reused at once (late packets of the old call would land in the new
//! one). After a full sweep with nothing free the pool answers [`MediaError::PortsExhausted`]. A lease goes back to the pool when its [`RtpSocket`]
//! (or the [`PortLease`] taken out of it) is dropped; the RTCP socket stays in the lease until a
//! driver takes it ([`PortLease::take_rtcp_socket`]). The pool never blocks on the network:
//! binding is the only I/O it does.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};

use socket2::{Domain, Protocol, Socket, Type};

use super::MediaError;

/// Socket buffer size asked for on every RTP socket: a burst of a few hundred packets must not
/// overflow the kernel's queue while a task is descheduled.
const SOCKET_BUFFER_BYTES: usize = 1 << 20;
/// RTCP carries a packet every few seconds: the kernel's default buffers are plenty.
const RTCP_BUFFER_BYTES: Option<usize> = None;
/// How many of the pairs released last are passed over while others are free (at most half
/// the range).
pub const QUARANTINE: usize = 32;

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
    /// `leased[i]` is true while the pair at port `first + 2 * i` is out.
    leased: Vec<bool>,
    /// The pairs released last, oldest first (at most [`QUARANTINE`], and half the range).
    released: VecDeque<usize>,
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
    /// A pool over the (even, odd) port pairs inside `min..=max`, bound on `bind_ip`.
    pub fn new(bind_ip: IpAddr, min: u16, max: u16) -> Self {
        let first = (min as u32 + 1) & !1;
        let count = if first < max as u32 {
            ((max as u32 - 1 - first) / 2 + 1) as usize
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
                    released: VecDeque::new(),
                }),
            }),
        }
    }

    /// How many RTP/RTCP port pairs the range holds.
    pub fn capacity(&self) -> usize {
        self.inner.lock().leased.len()
    }

    /// How many ports are leased right now.
    pub fn in_use(&self) -> usize {
        self.inner.lock().leased.iter().filter(|l| **l).count()
    }

    /// Binds a free pair, searched from a random one (see the module documentation): the even
    /// RTP port (non-blocking, 1 MiB send and receive buffers) and its RTCP port
    /// (non-blocking).
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
        let start = rand::random_range(0..count);
        // First the pairs not released lately, then (only if none is free) those too.
        let order = (0..count)
            .map(|step| (false, (start + step) % count))
            .chain((0..count).map(|step| (true, (start + step) % count)));
        for (second_pass, index) in order {
            let recent = state.released.contains(&index);
            if state.leased[index] || recent != second_pass {
                continue;
            }
            let port = inner.port(index);
            let addr = SocketAddr::new(inner.bind_ip, port);
            let rtcp_addr = SocketAddr::new(inner.bind_ip, port + 1);
            let bound = bind_udp(addr, Some(SOCKET_BUFFER_BYTES))
                .map_err(|e| (addr, e))
                .and_then(|rtp| {
                    let rtcp =
                        bind_udp(rtcp_addr, RTCP_BUFFER_BYTES).map_err(|e| (rtcp_addr, e))?;
                    Ok((rtp, rtcp))
                });
            match bound {
                Ok((socket, rtcp)) => {
                    state.leased[index] = true;
                    state.released.retain(|&i| i != index);
                    return Ok(RtpSocket {
                        socket,
                        port,
                        lease: PortLease {
                            rtcp: Some(rtcp),
                            pool: Arc::clone(inner),
                            index,
                            port,
                        },
                    });
                }
                Err((at, e)) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    tracing::debug!(port = at.port(), "port held by another process, skipping");
                }
                Err((addr, source)) => return Err(MediaError::Bind { addr, source }),
            }
        }
        Err(MediaError::PortsExhausted {
            min: inner.min,
            max: inner.max,
        })
    }
}

fn bind_udp(addr: SocketAddr, buffer_bytes: Option<usize>) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // The kernel may clamp the size (net.core.rmem_max); a smaller buffer still works.
    if let Some(bytes) = buffer_bytes {
        if let Err(e) = socket.set_recv_buffer_size(bytes) {
            tracing::debug!(error = %e, "cannot set SO_RCVBUF on RTP socket");
        }
        if let Err(e) = socket.set_send_buffer_size(bytes) {
            tracing::debug!(error = %e, "cannot set SO_SNDBUF on RTP socket");
        }
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
    /// must keep the ports reserved until that task has closed it. The RTCP socket stays in the
    /// lease ([`PortLease::take_rtcp_socket`]).
    pub fn into_parts(self) -> (UdpSocket, PortLease) {
        (self.socket, self.lease)
    }

    /// The RTCP port: the RTP port + 1.
    pub fn rtcp_port(&self) -> u16 {
        self.lease.rtcp_port()
    }

    /// The bound RTCP socket, unless it was taken out of the lease.
    pub fn rtcp_socket(&self) -> Option<&UdpSocket> {
        self.lease.rtcp.as_ref()
    }
}

/// Holds one port pair of a [`PortPool`] (and, until taken, the bound RTCP socket); dropping it
/// makes the pair available again.
#[derive(Debug)]
pub struct PortLease {
    rtcp: Option<UdpSocket>,
    pool: Arc<PoolInner>,
    index: usize,
    port: u16,
}

impl PortLease {
    /// The RTP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The RTCP port: the RTP port + 1.
    pub fn rtcp_port(&self) -> u16 {
        self.port + 1
    }

    /// Takes the bound RTCP socket out of the lease (once). The taker must close it before it
    /// drops the lease, so the pair is not handed out while the socket is still open.
    pub fn take_rtcp_socket(&mut self) -> Option<UdpSocket> {
        self.rtcp.take()
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        // Close the RTCP socket before the pair is marked free.
        drop(self.rtcp.take());
        let mut state = self.pool.lock();
        if let Some(flag) = state.leased.get_mut(self.index) {
            *flag = false;
            let keep = QUARANTINE.min(state.leased.len() / 2);
            state.released.retain(|&i| i != self.index);
            state.released.push_back(self.index);
            while state.released.len() > keep {
                state.released.pop_front();
            }
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
            let all_free = (0..2 * n).all(|i| UdpSocket::bind((LOCALHOST, base + i)).is_ok());
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
    fn a_released_port_waits_while_others_are_free() {
        let base = free_range(2);
        let pool = PortPool::new(LOCALHOST, base, base + 3);
        let a = pool.bind().expect("first");
        let b = pool.clone().bind().expect("second");
        let (pa, pb) = (a.port, b.port);
        let mut both = [pa, pb];
        both.sort_unstable();
        assert_eq!(both, [base, base + 2]);
        assert!(pool.bind().is_err());
        drop(a);
        assert_eq!(pool.in_use(), 1);
        let c = pool.bind().expect("released port is free again");
        assert_eq!(c.port, pa, "the only free pair");
        // Both released, c (a's pair) last: every next lease takes the other pair, whatever
        // the random start.
        drop(b);
        drop(c);
        let mut last = pa;
        for _ in 0..10 {
            let d = pool.bind().expect("free");
            assert_ne!(d.port, last, "the pair released last is passed over");
            last = d.port;
            drop(d);
        }
        let (socket, lease) = pool.bind().expect("free").into_parts();
        drop(socket);
        assert_eq!(pool.in_use(), 1);
        drop(lease);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn leases_start_at_random_pairs_inside_the_range() {
        let base = free_range(200);
        let (min, max) = (base, base + 399);
        let pool = PortPool::new(LOCALHOST, min, max);
        assert_eq!(pool.capacity(), 200);
        let held: Vec<RtpSocket> = (0..20).map(|_| pool.bind().expect("free")).collect();
        let ports: Vec<u16> = held.iter().map(|s| s.port).collect();
        for &p in &ports {
            assert!(
                (min..=max).contains(&p) && (min..=max).contains(&(p + 1)),
                "{p}"
            );
            assert_eq!(p % 2, 0);
        }
        let mut distinct = ports.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            ports.len(),
            "a port in use is never handed out"
        );
        // Sequential leases would step by 2; random ones do so rarely (1 in 200 each).
        let steps_of_two = ports.windows(2).filter(|w| w[1] == w[0] + 2).count();
        assert!(steps_of_two < 5, "{ports:?}");
        // Spread over the range, not bunched at its start.
        assert!(
            ports.iter().any(|&p| p >= min + 200),
            "all in the lower half: {ports:?}"
        );
    }

    #[test]
    fn port_held_elsewhere_is_skipped() {
        let base = free_range(3);
        let other = UdpSocket::bind((LOCALHOST, base + 2)).expect("someone else's socket");
        let pool = PortPool::new(LOCALHOST, base, base + 5);
        let a = pool.bind().expect("first");
        let b = pool.bind().expect("second");
        let mut ports = [a.port, b.port];
        ports.sort_unstable();
        assert_eq!(ports, [base, base + 4]);
        assert!(matches!(
            pool.bind(),
            Err(MediaError::PortsExhausted { .. })
        ));
        drop(other);
        assert_eq!(pool.bind().expect("now free").port, base + 2);
    }

    #[test]
    fn rtcp_port_is_bound_with_the_lease_and_released_with_it() {
        let base = free_range(2);
        let pool = PortPool::new(LOCALHOST, base, base + 3);
        let a = pool.bind().expect("first pair");
        let port = a.port;
        assert!(port == base || port == base + 2, "{port}");
        assert_eq!(a.rtcp_port(), port + 1);
        let rtcp = a.rtcp_socket().expect("bound RTCP socket");
        assert_eq!(rtcp.local_addr().expect("addr").port(), port + 1);
        assert!(
            UdpSocket::bind((LOCALHOST, port + 1)).is_err(),
            "RTCP port reserved"
        );
        let (socket, mut lease) = a.into_parts();
        let rtcp = lease.take_rtcp_socket().expect("taken once");
        assert!(lease.take_rtcp_socket().is_none());
        drop(rtcp);
        drop(socket);
        drop(lease);
        assert_eq!(pool.in_use(), 0);
        assert!(UdpSocket::bind((LOCALHOST, port + 1)).is_ok(), "released");
        // Dropping a whole RtpSocket closes both ports (the other pair: a's was released last).
        let b = pool.bind().expect("second pair");
        assert_eq!(b.port, if port == base { base + 2 } else { base });
        let other = b.port;
        drop(b);
        assert!(UdpSocket::bind((LOCALHOST, other + 1)).is_ok());
    }

    #[test]
    fn pair_with_its_rtcp_port_held_elsewhere_is_skipped() {
        let base = free_range(2);
        let other = UdpSocket::bind((LOCALHOST, base + 1)).expect("someone else's RTCP port");
        let pool = PortPool::new(LOCALHOST, base, base + 3);
        let a = pool.bind().expect("the second pair is free");
        assert_eq!(a.port, base + 2);
        assert!(matches!(
            pool.bind(),
            Err(MediaError::PortsExhausted { .. })
        ));
        drop(other);
        let b = pool.bind().expect("now free");
        assert_eq!(
            b.port, base,
            "the RTP port of the skipped pair was not left bound"
        );
        assert_eq!(pool.in_use(), 2);
        drop((a, b));
    }

    #[test]
    fn odd_bounds_and_empty_ranges() {
        let pool = PortPool::new(LOCALHOST, 10_001, 10_010);
        assert_eq!(pool.capacity(), 4); // 10002/3 ..= 10008/9; 10011 is outside the range
        assert_eq!(PortPool::new(LOCALHOST, 10_000, 10_001).capacity(), 1);
        assert_eq!(PortPool::new(LOCALHOST, 10_000, 10_000).capacity(), 0);
        assert_eq!(PortPool::new(LOCALHOST, 65_534, 65_535).capacity(), 1);
        let empty = PortPool::new(LOCALHOST, 10_001, 10_002);
        assert_eq!(empty.capacity(), 0);
        let empty = PortPool::new(LOCALHOST, 10_001, 10_001);
        assert_eq!(empty.capacity(), 0);
        let err = empty.bind().expect_err("no even port");
        assert_eq!(
            err.to_string(),
            "RTP port range 10001-10001 holds no even RTP port with its RTCP port after it"
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
        let text = err.to_string();
        let port: u16 = text
            .strip_prefix("cannot bind RTP socket to 192.0.2.1:")
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{text}"));
        assert!(
            (20_000..=20_010).contains(&port) && port.is_multiple_of(2),
            "{text}"
        );
    }
}
