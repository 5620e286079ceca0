//! Media: everything between a call's RTP socket and 20 ms PCM frames.
//!
//! The per-call interface is [`MediaSession`]: `call` hands it an [`RtpSocket`] leased from the
//! [`PortPool`] and the negotiated [`Codec`]; it gets back a channel of [`MediaEvent`]s.
//!
//! * **Frames** are 16-bit signed linear PCM, mono, 8 kHz ([`SAMPLE_RATE`]); one frame is 20 ms
//!   ([`FRAME_MS`]) = 160 samples ([`FRAME_SAMPLES`]). Received audio goes through an adaptive
//!   [`jitter`] buffer and arrives as one [`AudioFrame`] per 20 ms of playout (at the usual
//!   ptime), in order, tagged with the packet's RTP timestamp; a turn no packet filled in time
//!   comes as a concealed frame (`concealed: true`), so the timeline has no holes.
//! * **RTCP** ([`rtcp`]) runs on the port after the RTP port (or multiplexed on it): loss,
//!   jitter and round-trip time both ways end up in [`RtpStats`].
//! * **Outgoing audio** is queued PCM at the same rate ([`MediaSession::play`] for prompts,
//!   [`MediaSession::send_frame`] for bridged audio). The session paces one packet every 20 ms
//!   on a monotonic clock and sends G.711 silence when nothing is queued, so the far end always
//!   sees a continuous stream.
//!
//! * **Linked legs** (a bridge, [`MediaSession::link`]) forward each packet at once from one
//!   leg to the other, rewritten and transcoded by [`link`].
//! * **SRTP** (SDES keys from the SDP, [`srtp`]) protects a leg's RTP and RTCP both ways when
//!   its trunk profile asks for it or the far end offers it.
//!
//! Every call's RTP runs on the one [`engine`]: one or two worker threads with epoll and
//! batched `recvmmsg`/`sendmmsg`, the same code `outdial bench media` measures.
//! The protocol pieces ([`rtp`], [`rtcp`], [`jitter`], [`g711`], [`link`], [`srtp`]) are
//! sans-IO: they parse, build and convert buffers and never touch a socket or a clock. Only [`engine`] (with
//! [`session`]'s per-call state and [`sys`]'s system calls) and [`ports`] (binding) do I/O.
//! Nothing here may panic on bytes from the network or on a file's contents.

pub mod codec;
pub mod dtmf;
pub mod engine;
pub mod g711;
pub mod jitter;
pub mod link;
pub mod playback;
pub mod ports;
pub mod resample;
pub mod rtcp;
pub mod rtp;
pub mod session;
pub mod srtp;
pub mod sys;
pub mod tones;
pub mod wav;

use std::path::PathBuf;

pub use engine::{Engine, EngineConfig};
pub use g711::Codec;
pub use ports::{PortLease, PortPool, RtpSocket};
pub use rtp::{is_rtcp, write_rtp, RtpPacket, RtpSender};
pub use session::{
    AudioFrame, MediaEvent, MediaLink, MediaOptions, MediaSession, RtpLatching, RtpStats,
};
pub use wav::{load_wav_8k_mono, WavRecorder};

/// Sample rate of every PCM buffer the media layer takes or gives, in Hz.
pub const SAMPLE_RATE: u32 = 8000;
/// Samples in one 20 ms frame at [`SAMPLE_RATE`].
pub const FRAME_SAMPLES: usize = 160;
/// Length of one frame (and of one sent RTP packet), in milliseconds.
pub const FRAME_MS: u64 = 20;

/// Everything that can go wrong in the media layer; each reads as one line.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Every RTP/RTCP port pair of the configured range is leased or taken by another process.
    #[error("RTP port range {min}-{max} exhausted: every port is in use")]
    PortsExhausted { min: u16, max: u16 },
    /// The configured RTP range cannot hold a single RTP/RTCP port pair.
    #[error("RTP port range {min}-{max} holds no even RTP port with its RTCP port after it")]
    PortRange { min: u16, max: u16 },
    /// Binding failed for a reason other than the port being in use (wrong address, permissions).
    #[error("cannot bind RTP socket to {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// A WAV file could not be opened, parsed or converted.
    #[error("cannot read WAV file {}: {reason}", path.display())]
    Wav { path: PathBuf, reason: String },
    /// A WAV recording could not be created or written.
    #[error("cannot write WAV file {}: {reason}", path.display())]
    WavWrite { path: PathBuf, reason: String },
    #[error("media I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// SRTP contexts could not be made from the negotiated keys.
    #[error("SRTP cannot start: {0}")]
    Srtp(String),
    /// A sample-rate conversion that is not offered.
    #[error("{0}")]
    Resample(String),
    /// An RTP packet that does not follow RFC 3550, or a misuse of the RTP layer.
    #[error("invalid RTP packet: {0}")]
    Rtp(String),
    /// Two media sessions could not be linked (the reason names which and why).
    #[error("cannot link media sessions: {0}")]
    Link(String),
    /// [`MediaSession::start`] was called outside a tokio runtime.
    #[error("media session cannot start: not inside a tokio runtime")]
    NoRuntime,
}
