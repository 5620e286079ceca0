//! The only unsafe code of the media engine and the benchmark: thin, safe wrappers over the
//! Linux calls that `std` does not offer — `recvmmsg`/`sendmmsg` (many datagrams per system call), `epoll`,
//! `SO_TIMESTAMPNS` (the kernel's receive time of each datagram), `getrusage`, `setrlimit`,
//! `clock_nanosleep`, `kill`, a thread's nice value (`getpriority`/`setpriority`) and its
//! real-time scheduling (`sched_setscheduler`).
//!
//! Every wrapper checks the call's return value and turns failure into `io::Error`; "would
//! block" and "interrupted" read as zero datagrams / zero events, never as an error. The batch
//! types own every buffer, header and address the kernel writes into, and point the kernel at
//! them afresh on each call, so no pointer can outlive or escape its buffer. Nothing here
//! allocates after construction. Linux only.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// `SO_TIMESTAMPNS` / `SCM_TIMESTAMPNS` (the "old" 64-bit-time_t value on every 64-bit Linux).
const SO_TIMESTAMPNS: libc::c_int = 35;
/// Room for one `SCM_TIMESTAMPNS` control message (a `timespec`), plus slack.
const CONTROL_LEN: usize = 64;

/// Nice steps the control plane's threads (async runtime, store, detection) yield to the
/// media engine's workers.
pub const CONTROL_NICE_STEPS: libc::c_int = 5;

/// Lowers the calling thread's priority by [`CONTROL_NICE_STEPS`] (a higher nice value, which
/// any thread may take; threads it starts inherit it). Call it on the control plane's
/// threads, so that when every core is busy the media engine's workers — started at the
/// process's own priority — run first and keep their 20 ms frames on time.
pub fn yield_to_media() -> io::Result<()> {
    // SAFETY: gettid has no arguments and cannot fail.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::id_t;
    // getpriority may return -1 as a value: errno tells an error apart.
    // SAFETY: errno is this thread's; getpriority/setpriority only read their arguments.
    unsafe {
        *libc::__errno_location() = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        if now == -1 && *libc::__errno_location() != 0 {
            return Err(last_error());
        }
        let to = (now + CONTROL_NICE_STEPS).min(19);
        if libc::setpriority(libc::PRIO_PROCESS, tid, to) != 0 {
            return Err(last_error());
        }
    }
    Ok(())
}

/// The real-time priority (`SCHED_RR`) the media engine's workers ask for: above every
/// ordinary thread, below the kernel's own real-time threads (50) and audio servers' usual
/// choices, so it preempts nothing that matters more. The kernel's real-time throttling
/// (`sched_rt_runtime_us`) still leaves ordinary threads their share if a worker ever spins.
pub const MEDIA_RT_PRIORITY: libc::c_int = 10;

/// Makes the calling thread `SCHED_RR` at [`MEDIA_RT_PRIORITY`]; `EPERM` when the process
/// may not (not root, no `CAP_SYS_NICE`, `RLIMIT_RTPRIO` below it).
pub fn realtime_for_media() -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: MEDIA_RT_PRIORITY,
    };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param that outlives the
    // call, which only reads it.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) } != 0 {
        return Err(last_error());
    }
    Ok(())
}

/// Whether `thread` runs with a real-time policy (`SCHED_RR` or `SCHED_FIFO`).
#[cfg(test)]
pub(crate) fn is_realtime<T>(thread: &std::thread::JoinHandle<T>) -> io::Result<bool> {
    use std::os::unix::thread::JoinHandleExt;
    let mut policy: libc::c_int = 0;
    // SAFETY: sched_param is plain old data; all-zero is a valid value.
    let mut param: libc::sched_param = unsafe { zeroed() };
    // SAFETY: the handle keeps the thread joinable (its pthread_t valid); both out-pointers
    // point at live locals.
    let rc = unsafe { libc::pthread_getschedparam(thread.as_pthread_t(), &mut policy, &mut param) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(policy == libc::SCHED_RR || policy == libc::SCHED_FIFO)
}

/// The calling thread's nice value.
pub fn thread_nice() -> io::Result<i32> {
    // SAFETY: as in yield_to_media.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        *libc::__errno_location() = 0;
        let now = libc::getpriority(libc::PRIO_PROCESS, tid);
        if now == -1 && *libc::__errno_location() != 0 {
            return Err(last_error());
        }
        Ok(now)
    }
}

fn last_error() -> io::Error {
    io::Error::last_os_error()
}

fn would_block_or_intr(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAGAIN) | Some(libc::EINTR) | Some(libc::ENOBUFS)
    )
}

fn to_sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = addr.port().to_be();
    sa.sin_addr.s_addr = u32::from(*addr.ip()).to_be();
    sa
}

/// `addr` as a `sockaddr_storage` and the length of the address in it.
fn to_storage(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    match addr {
        SocketAddr::V4(a) => {
            let sa = to_sockaddr(a);
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sa) };
            (ss, size_of::<libc::sockaddr_in>() as libc::socklen_t)
        }
        SocketAddr::V6(a) => {
            // SAFETY: plain old data; all-zero is valid.
            let mut sa: libc::sockaddr_in6 = unsafe { zeroed() };
            sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sa.sin6_port = a.port().to_be();
            sa.sin6_addr.s6_addr = a.ip().octets();
            sa.sin6_flowinfo = a.flowinfo();
            sa.sin6_scope_id = a.scope_id();
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sa) };
            (ss, size_of::<libc::sockaddr_in6>() as libc::socklen_t)
        }
    }
}

fn from_storage(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sa: libc::sockaddr_in =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(sa.sin_addr.s_addr)),
                u16::from_be(sa.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sa: libc::sockaddr_in6 =
                unsafe { std::ptr::read((ss as *const libc::sockaddr_storage).cast()) };
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(sa.sin6_addr.s6_addr),
                u16::from_be(sa.sin6_port),
                sa.sin6_flowinfo,
                sa.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Asks the kernel to stamp each received datagram with its arrival time (CLOCK_REALTIME).
pub fn enable_rx_timestamps(fd: &impl AsRawFd) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the option value points at a live c_int of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(last_error());
    }
    Ok(())
}

/// Reusable buffers for receiving up to `slots` datagrams with one `recvmmsg`.
pub struct RecvBatch {
    slot_len: usize,
    data: Vec<u8>,
    addrs: Vec<libc::sockaddr_storage>,
    control: Vec<[u8; CONTROL_LEN]>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    want_timestamps: bool,
    filled: usize,
}

impl RecvBatch {
    /// Room for `slots` datagrams of at most `slot_len` bytes each (longer ones are cut).
    pub fn new(slots: usize, slot_len: usize, want_timestamps: bool) -> Self {
        let slots = slots.max(1);
        // SAFETY: these C structs are plain old data; all-zero is valid (null pointers are
        // replaced before every call).
        let zero_addr: libc::sockaddr_storage = unsafe { zeroed() };
        let zero_iov: libc::iovec = unsafe { zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { zeroed() };
        RecvBatch {
            slot_len,
            data: vec![0; slots * slot_len],
            addrs: vec![zero_addr; slots],
            control: vec![[0; CONTROL_LEN]; slots],
            iovs: vec![zero_iov; slots],
            hdrs: vec![zero_hdr; slots],
            want_timestamps,
            filled: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Number of datagrams the last [`RecvBatch::recv`] returned.
    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Reads what is queued on `fd` without blocking, at most `capacity()` datagrams.
    /// `Ok(0)` when nothing is queued (or the call was interrupted).
    pub fn recv(&mut self, fd: &impl AsRawFd) -> io::Result<usize> {
        let n = self.hdrs.len();
        let base = self.data.as_mut_ptr();
        for i in 0..n {
            // SAFETY: i * slot_len + slot_len <= data.len(), so the pointer stays inside `data`.
            self.iovs[i].iov_base = unsafe { base.add(i * self.slot_len) }.cast();
            self.iovs[i].iov_len = self.slot_len;
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            if self.want_timestamps {
                h.msg_control = self.control[i].as_mut_ptr().cast();
                h.msg_controllen = CONTROL_LEN as _;
            } else {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        self.filled = 0;
        // SAFETY: every header points at buffers owned by `self` that live across the call and
        // whose lengths are the ones given; `n` is the length of `hdrs`.
        let rc = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = last_error();
            return if would_block_or_intr(&e) {
                Ok(0)
            } else {
                Err(e)
            };
        }
        self.filled = rc as usize;
        Ok(self.filled)
    }

    /// The `i`-th received datagram (empty when `i` is out of range).
    pub fn packet(&self, i: usize) -> &[u8] {
        if i >= self.filled {
            return &[];
        }
        let len = (self.hdrs[i].msg_len as usize).min(self.slot_len);
        &self.data[i * self.slot_len..i * self.slot_len + len]
    }

    /// True when the `i`-th datagram was longer than a slot and was cut.
    pub fn truncated(&self, i: usize) -> bool {
        i < self.filled && self.hdrs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0
    }

    /// Where the `i`-th datagram came from.
    pub fn source(&self, i: usize) -> Option<SocketAddrV4> {
        match self.source_addr(i)? {
            SocketAddr::V4(a) => Some(a),
            SocketAddr::V6(_) => None,
        }
    }

    /// Where the `i`-th datagram came from, IPv4 or IPv6.
    pub fn source_addr(&self, i: usize) -> Option<SocketAddr> {
        if i >= self.filled {
            return None;
        }
        from_storage(&self.addrs[i])
    }

    /// The kernel's arrival time of the `i`-th datagram, in ns of CLOCK_REALTIME, when the
    /// socket has [`enable_rx_timestamps`] and the batch was built to want them.
    pub fn timestamp_ns(&self, i: usize) -> Option<u64> {
        if i >= self.filled || !self.want_timestamps {
            return None;
        }
        let hdr = &self.hdrs[i].msg_hdr;
        #[allow(clippy::unnecessary_cast)] // size_t on glibc, socklen_t on musl
        let ctl_len = (hdr.msg_controllen as usize).min(CONTROL_LEN);
        let ctl = &self.control[i][..ctl_len];
        // Walk the control messages by hand over the byte slice (no raw pointer arithmetic):
        // each is a cmsghdr then its data, aligned to size_t.
        let hdr_len = size_of::<libc::cmsghdr>();
        let align = size_of::<usize>();
        let mut off = 0;
        while off + hdr_len <= ctl.len() {
            // SAFETY: the range holds hdr_len bytes; read_unaligned copes with any alignment.
            let cmsg: libc::cmsghdr =
                unsafe { std::ptr::read_unaligned(ctl[off..].as_ptr().cast()) };
            let clen = cmsg.cmsg_len as usize;
            if clen < hdr_len || off + clen > ctl.len() {
                return None;
            }
            if cmsg.cmsg_level == libc::SOL_SOCKET
                && cmsg.cmsg_type == SO_TIMESTAMPNS
                && clen >= hdr_len + size_of::<libc::timespec>()
            {
                // SAFETY: the data follows the header and holds a whole timespec (checked).
                let ts: libc::timespec =
                    unsafe { std::ptr::read_unaligned(ctl[off + hdr_len..].as_ptr().cast()) };
                return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            off += clen.div_ceil(align) * align;
        }
        None
    }
}

/// Reusable buffers for sending up to `slots` datagrams with one `sendmmsg`, each to its own
/// destination. Fill with [`SendBatch::push`], send with [`SendBatch::send`].
pub struct SendBatch {
    bufs: Vec<Vec<u8>>,
    dests: Vec<(libc::sockaddr_storage, libc::socklen_t)>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    len: usize,
}

impl SendBatch {
    pub fn new(slots: usize, slot_len: usize) -> Self {
        let slots = slots.max(1);
        // SAFETY: plain old data; all-zero is valid (pointers are set before every call).
        let zero_addr: libc::sockaddr_storage = unsafe { zeroed() };
        let zero_iov: libc::iovec = unsafe { zeroed() };
        let zero_hdr: libc::mmsghdr = unsafe { zeroed() };
        SendBatch {
            bufs: (0..slots).map(|_| Vec::with_capacity(slot_len)).collect(),
            dests: vec![(zero_addr, 0); slots],
            iovs: vec![zero_iov; slots],
            hdrs: vec![zero_hdr; slots],
            len: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.bufs.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn is_full(&self) -> bool {
        self.len == self.bufs.len()
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Queues one datagram to `dest`, written by `fill` into a cleared, reused buffer.
    /// Returns false (and queues nothing) when the batch is full.
    pub fn push(&mut self, dest: SocketAddrV4, fill: impl FnOnce(&mut Vec<u8>)) -> bool {
        self.push_to(SocketAddr::V4(dest), fill)
    }

    /// [`SendBatch::push`] to an IPv4 or IPv6 address.
    pub fn push_to(&mut self, dest: SocketAddr, fill: impl FnOnce(&mut Vec<u8>)) -> bool {
        if self.is_full() {
            return false;
        }
        let buf = &mut self.bufs[self.len];
        buf.clear();
        fill(buf);
        self.dests[self.len] = to_storage(dest);
        self.len += 1;
        true
    }

    /// The `i`-th queued datagram, writable (to rewrite it before sending).
    pub fn packet_mut(&mut self, i: usize) -> Option<&mut Vec<u8>> {
        if i < self.len {
            self.bufs.get_mut(i)
        } else {
            None
        }
    }

    /// Removes the last queued datagram (when one was queued and turned out not to be sent).
    pub fn pop(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    /// The `i`-th queued datagram.
    pub fn packet(&self, i: usize) -> &[u8] {
        if i < self.len {
            &self.bufs[i]
        } else {
            &[]
        }
    }

    /// Sends every queued datagram from `fd` without blocking, then clears the batch.
    /// Returns how many the kernel took; the rest (socket buffer full) are dropped.
    pub fn send(&mut self, fd: &impl AsRawFd) -> io::Result<usize> {
        let total = self.len;
        for i in 0..total {
            self.iovs[i].iov_base = self.bufs[i].as_mut_ptr().cast();
            self.iovs[i].iov_len = self.bufs[i].len();
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.dests[i].0 as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = self.dests[i].1;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
        }
        let mut sent = 0;
        let mut result = Ok(());
        while sent < total {
            // SAFETY: headers sent..total point at buffers owned by `self`, valid for the call.
            let rc = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    self.hdrs.as_mut_ptr().add(sent),
                    (total - sent) as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc < 0 {
                let e = last_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                if !would_block_or_intr(&e) {
                    result = Err(e);
                }
                break;
            }
            if rc == 0 {
                break;
            }
            sent += rc as usize;
        }
        self.len = 0;
        result.map(|()| sent)
    }
}

/// An epoll instance (level-triggered) whose events carry a caller-chosen `u64` token.
pub struct Epoll {
    fd: OwnedFd,
    events: Vec<libc::epoll_event>,
    ready: usize,
}

impl Epoll {
    /// `max_events`: how many ready descriptors one [`Epoll::wait`] can report.
    pub fn new(max_events: usize) -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(last_error());
        }
        // SAFETY: fd is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Epoll {
            fd,
            events: vec![libc::epoll_event { events: 0, u64: 0 }; max_events.max(1)],
            ready: 0,
        })
    }

    /// Watches `fd` for readability; `token` comes back with its events.
    pub fn add_readable(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: ev is a live epoll_event for the duration of the call.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc != 0 {
            return Err(last_error());
        }
        Ok(())
    }

    /// Stops watching `fd` (a descriptor that is already closed is no error).
    pub fn remove(&self, fd: RawFd) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: ev is a live epoll_event for the duration of the call.
        let rc = unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut ev) };
        if rc != 0 {
            let e = last_error();
            if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::EBADF)) {
                return Ok(());
            }
            return Err(e);
        }
        Ok(())
    }

    /// How many ready descriptors one [`Epoll::wait`] can report at most.
    pub fn capacity(&self) -> usize {
        self.events.len()
    }

    /// Waits up to `timeout` (None: forever; zero: just look) and returns how many descriptors
    /// are ready; read their tokens with [`Epoll::token`]. Interrupted waits return 0.
    pub fn wait(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let ms = match timeout {
            None => -1,
            Some(d) => d.as_millis().min(i32::MAX as u128) as libc::c_int,
        };
        // SAFETY: the buffer holds events.len() entries, the count we pass.
        let rc = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as libc::c_int,
                ms,
            )
        };
        if rc < 0 {
            self.ready = 0;
            let e = last_error();
            return if e.raw_os_error() == Some(libc::EINTR) {
                Ok(0)
            } else {
                Err(e)
            };
        }
        self.ready = rc as usize;
        Ok(self.ready)
    }

    /// The token of the `i`-th ready descriptor of the last wait.
    pub fn token(&self, i: usize) -> Option<u64> {
        if i < self.ready {
            Some(self.events[i].u64)
        } else {
            None
        }
    }
}

/// CPU time (user + system) used so far, in µs, by the whole process or the calling thread.
pub fn cpu_time_us(thread_only: bool) -> io::Result<u64> {
    // SAFETY: rusage is plain old data, filled by the kernel.
    let mut ru: libc::rusage = unsafe { zeroed() };
    let who = if thread_only {
        libc::RUSAGE_THREAD
    } else {
        libc::RUSAGE_SELF
    };
    // SAFETY: ru is a live rusage for the call.
    let rc = unsafe { libc::getrusage(who, &mut ru) };
    if rc != 0 {
        return Err(last_error());
    }
    let us = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    Ok(us(ru.ru_utime) + us(ru.ru_stime))
}

/// Raises the soft open-file limit to at least `want` (up to the hard limit) and returns the
/// soft limit now in force.
pub fn raise_nofile(want: u64) -> io::Result<u64> {
    // SAFETY: rlimit is plain old data, filled by the kernel.
    let mut lim: libc::rlimit = unsafe { zeroed() };
    // SAFETY: lim is live for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(last_error());
    }
    if lim.rlim_cur >= want as libc::rlim_t {
        return Ok(lim.rlim_cur as u64);
    }
    lim.rlim_cur = (want as libc::rlim_t).min(lim.rlim_max);
    // SAFETY: lim is live for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        return Err(last_error());
    }
    Ok(lim.rlim_cur as u64)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    // SAFETY: ts is live for the call; both clocks used here always exist on Linux, and a
    // failure would leave ts at zero, which callers treat as an ordinary (early) time.
    let mut ts: libc::timespec = unsafe { zeroed() };
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC in ns: what schedules packets.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// CLOCK_REALTIME in ns: the clock of the kernel's receive timestamps.
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// Sleeps until CLOCK_MONOTONIC reaches `deadline_ns` (returns at once when it has passed).
pub fn sleep_until_monotonic(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: ts is live; the remaining-time pointer may be null with TIMER_ABSTIME.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        if rc != libc::EINTR {
            return;
        }
    }
}

/// Sends SIGTERM to process `pid` (callers pass the pid of their own, un-reaped child).
pub fn terminate(pid: u32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(io::Error::other)?;
    // SAFETY: kill(2) touches no memory of ours.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        return Err(last_error());
    }
    Ok(())
}

/// The kernel's clock ticks per second (for /proc/PID/stat times).
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no memory effects.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if v > 0 {
        v as u64
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_yields_to_media_and_its_children_inherit_it() {
        std::thread::spawn(|| {
            let before = thread_nice().unwrap();
            yield_to_media().unwrap();
            let after = thread_nice().unwrap();
            assert_eq!(after, (before + CONTROL_NICE_STEPS).min(19));
            let child = std::thread::spawn(|| thread_nice().unwrap())
                .join()
                .unwrap();
            assert_eq!(child, after);
        })
        .join()
        .unwrap();
        // Other threads keep theirs.
        assert_eq!(
            thread_nice().unwrap(),
            std::thread::spawn(|| thread_nice().unwrap())
                .join()
                .unwrap()
        );
    }
    use std::net::UdpSocket;

    #[test]
    fn batch_roundtrip_with_timestamps() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        enable_rx_timestamps(&rx).unwrap();
        let dest = match rx.local_addr().unwrap() {
            std::net::SocketAddr::V4(a) => a,
            _ => unreachable!(),
        };
        let mut out = SendBatch::new(4, 64);
        for i in 0..3u8 {
            assert!(out.push(dest, |b| b.extend_from_slice(&[i; 10])));
        }
        let before = realtime_ns();
        assert_eq!(out.send(&tx).unwrap(), 3);
        assert!(out.is_empty());
        let mut inb = RecvBatch::new(8, 32, true);
        let mut got = 0;
        for _ in 0..100 {
            got += inb.recv(&rx).unwrap();
            if got > 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(got, 3);
        assert_eq!(inb.packet(2), &[2u8; 10]);
        assert_eq!(inb.packet(3), &[] as &[u8]);
        let ts = inb.timestamp_ns(0).expect("kernel timestamp");
        assert!(ts + 1_000_000 >= before && ts < before + 5_000_000_000);
        assert_eq!(
            inb.source(0).unwrap().port(),
            tx.local_addr().unwrap().port()
        );
        // Nothing left: a non-blocking read returns zero, not an error.
        assert_eq!(inb.recv(&rx).unwrap(), 0);
    }

    #[test]
    fn epoll_reports_ready_token() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_nonblocking(true).unwrap();
        let mut ep = Epoll::new(8).unwrap();
        ep.add_readable(rx.as_raw_fd(), 42).unwrap();
        assert_eq!(ep.wait(Some(Duration::ZERO)).unwrap(), 0);
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send_to(b"x", rx.local_addr().unwrap()).unwrap();
        assert_eq!(ep.wait(Some(Duration::from_secs(1))).unwrap(), 1);
        assert_eq!(ep.token(0), Some(42));
        assert_eq!(ep.token(1), None);
    }

    #[test]
    fn cpu_and_limits() {
        assert!(cpu_time_us(false).is_ok());
        assert!(cpu_time_us(true).is_ok());
        assert!(raise_nofile(256).unwrap() >= 256);
        let t = monotonic_ns();
        sleep_until_monotonic(t + 1_000_000);
        assert!(monotonic_ns() >= t + 1_000_000);
    }
}
