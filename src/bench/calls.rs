//! outdial's side of `outdial bench media`: the server's own media engine
//! ([`crate::media::engine`]) and [`MediaSession`]s, exactly as calls use them, on 127.0.0.1.
//!
//! * [`Linked`]: one stream = one bridged call, two sessions (legs A and B) linked with
//!   [`MediaSession::link`]. The generator sends to leg A; each packet leaves leg B at once,
//!   rewritten into B's stream by the relay path, towards the generator's sink. B's stream is
//!   set to start where the generator's stream starts (its SSRC, sequence number and
//!   timestamp), so the rewritten packets carry what the generator sent and it can match them:
//!   the rewriting code runs all the same.
//! * [`Calls`]: one stream = one live call, one session: what the generator sends goes through
//!   the session's jitter buffer, is decoded and handed to the call as 20 ms frames (a thread
//!   here drains every call's event channel, as calls do), while the session sends its own
//!   paced 20 ms stream back to where the packets come from (silence, as a call that is
//!   listening). The generator cannot match those packets: this mode reports CPU only.
//!
//! RTCP is off in both (the generator's sinks have no RTCP port to report to). Measuring tool
//! only: it must NOT be used by the server.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc;

use super::gen;
use crate::media::engine::{Engine, EngineConfig};
use crate::media::jitter::JitterConfig;
use crate::media::{Codec, MediaEvent, MediaLink, MediaOptions, MediaSession, PortPool};

/// The ports the bench's sessions take (RTP/RTCP pairs).
const PORT_MIN: u16 = 20_000;
const PORT_MAX: u16 = 60_999;
/// The telephone-event payload type both legs negotiate (so no in-band DTMF detection runs:
/// the relay path alone).
const DTMF_PT: u8 = 101;

/// The jitter buffer settings of a real call ([`MediaOptions::default`]).
pub fn call_jitter_config() -> JitterConfig {
    let o = MediaOptions::default();
    JitterConfig::from_ms(o.jitter_min_ms, o.jitter_max_ms, o.jitter_initial_ms)
}

fn options() -> MediaOptions {
    MediaOptions {
        rtcp: false,
        ..MediaOptions::default()
    }
}

fn pool(sessions: usize) -> Result<PortPool, String> {
    let pool = PortPool::new(IpAddr::V4(Ipv4Addr::LOCALHOST), PORT_MIN, PORT_MAX);
    if pool.capacity() < sessions {
        return Err(format!(
            "{sessions} media sessions need more than the {} port pairs of {PORT_MIN}-{PORT_MAX}",
            pool.capacity()
        ));
    }
    Ok(pool)
}

fn v4(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
}

/// Bridged calls: leg A receives, leg B sends; see the module documentation.
pub struct Linked {
    engine: Engine,
    // Declared before the sessions: the links end first.
    _links: Vec<MediaLink>,
    _sessions: Vec<MediaSession>,
    a_addrs: Vec<SocketAddrV4>,
}

impl Linked {
    /// `sinks[i]`: where stream `i` must arrive; `source`: where the generator sends from;
    /// `ssrc_base`: the generator's SSRC of stream 0 in the measured run.
    pub fn start(
        config: EngineConfig,
        source: SocketAddrV4,
        sinks: &[SocketAddrV4],
        ssrc_base: u32,
    ) -> Result<Linked, String> {
        let engine =
            Engine::start(config).map_err(|e| format!("cannot start the media engine: {e}"))?;
        let pool = pool(2 * sinks.len())?;
        let mut sessions = Vec::with_capacity(2 * sinks.len());
        let mut links = Vec::with_capacity(sinks.len());
        let mut a_addrs = Vec::with_capacity(sinks.len());
        for (i, sink) in sinks.iter().enumerate() {
            let bind = || pool.bind().map_err(|e| e.to_string());
            let start = |remote: SocketAddrV4| {
                MediaSession::start_on(
                    &engine,
                    bind()?,
                    Codec::Pcmu,
                    Some(SocketAddr::V4(remote)),
                    options(),
                )
                .map_err(|e| e.to_string())
            };
            let (a, _) = start(source)?;
            let (b, _) = start(*sink)?;
            for leg in [&a, &b] {
                leg.set_dtmf_pt(Some(DTMF_PT));
            }
            let (seq, ts) = gen::stream_start(i);
            b.set_rtp_stream(ssrc_base.wrapping_add(i as u32), seq, ts);
            links.push(a.link(&b).map_err(|e| e.to_string())?);
            a_addrs.push(v4(a.local_port()));
            sessions.push(a);
            sessions.push(b);
        }
        Ok(Linked {
            engine,
            _links: links,
            _sessions: sessions,
            a_addrs,
        })
    }

    /// Where the generator sends stream `i`.
    pub fn a_addrs(&self) -> &[SocketAddrV4] {
        &self.a_addrs
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Live calls: one session per stream; see the module documentation.
pub struct Calls {
    engine: Engine,
    sessions: Vec<MediaSession>,
    addrs: Vec<SocketAddrV4>,
    stop: Arc<AtomicBool>,
    frames: Arc<AtomicU64>,
    drain: Option<JoinHandle<()>>,
}

impl Calls {
    /// `streams` calls whose far end is `source` (the generator).
    pub fn start(
        config: EngineConfig,
        source: SocketAddrV4,
        streams: usize,
    ) -> Result<Calls, String> {
        let engine =
            Engine::start(config).map_err(|e| format!("cannot start the media engine: {e}"))?;
        let pool = pool(streams)?;
        let mut sessions = Vec::with_capacity(streams);
        let mut events: Vec<mpsc::Receiver<MediaEvent>> = Vec::with_capacity(streams);
        let mut addrs = Vec::with_capacity(streams);
        for _ in 0..streams {
            let socket = pool.bind().map_err(|e| e.to_string())?;
            let (s, rx) = MediaSession::start_on(
                &engine,
                socket,
                Codec::Pcmu,
                Some(SocketAddr::V4(source)),
                options(),
            )
            .map_err(|e| e.to_string())?;
            s.set_dtmf_pt(Some(DTMF_PT));
            addrs.push(v4(s.local_port()));
            sessions.push(s);
            events.push(rx);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(AtomicU64::new(0));
        let (stop_flag, frame_count) = (Arc::clone(&stop), Arc::clone(&frames));
        // The calls' side: take every frame off the channels every 20 ms.
        let drain = std::thread::Builder::new()
            .name("bench-calls".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Relaxed) {
                    let mut n = 0;
                    for rx in &mut events {
                        while let Ok(ev) = rx.try_recv() {
                            if matches!(ev, MediaEvent::Frame(_)) {
                                n += 1;
                            }
                        }
                    }
                    frame_count.fetch_add(n, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
            .map_err(|e| format!("cannot start the frame consumer: {e}"))?;
        Ok(Calls {
            engine,
            sessions,
            addrs,
            stop,
            frames,
            drain: Some(drain),
        })
    }

    /// Where the generator sends stream `i`.
    pub fn addrs(&self) -> &[SocketAddrV4] {
        &self.addrs
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Frames the calls have taken off their channels so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// The jitter buffers' frames played, concealed, packets late and duplicates so far,
    /// summed over calls.
    pub fn jitter_totals(&self) -> [u64; 4] {
        let mut t = [0u64; 4];
        for s in &self.sessions {
            let j = s.stats().jitter_buffer;
            for (a, v) in t
                .iter_mut()
                .zip([j.played, j.concealed, j.late, j.duplicates])
            {
                *a += v;
            }
        }
        t
    }
}

impl Drop for Calls {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.drain.take() {
            let _ = t.join();
        }
    }
}
