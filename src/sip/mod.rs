//! SIP signalling: the user agent on rsipstack, SDP offer/answer, outcomes.
//!
//! `ua` owns the endpoint (transports, registrations, out-of-dialog requests) and the
//! process's `dns` resolver (RFC 3263: NAPTR, SRV, A/AAAA with a TTL cache) that turns every
//! trunk host into an ordered list of targets; `sdp` and `outcome` are sans-IO helpers; `guard` limits floods (with the sans-IO `flood`)
//! and filters malformed datagrams before rsipstack sees them; `orphan` ends a call whose
//! dialog another (dead) process held. A call's dialog is driven from `crate::call`.

#[cfg(test)]
mod digest_tests;
pub mod dns;
pub mod flood;
pub mod guard;
pub mod inbound;
pub mod interop;
pub mod limits;
pub mod orphan;
pub mod outcome;
pub mod sdp;
pub mod tcp_guard;
pub mod trunks;
pub mod ua;

pub use outcome::Outcome;
pub use ua::{RegistrationState, UserAgent};

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("cannot listen for SIP over {transport} on {addr}: {reason}")]
    Bind {
        transport: &'static str,
        addr: SocketAddr,
        reason: String,
    },
    #[error("no SIP transport configured: set sip.listen_udp or sip.listen_tcp")]
    NoTransport,
    #[error("invalid SIP URI {uri:?}: {reason}")]
    BadUri { uri: String, reason: String },
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("SIP stack error: {0}")]
    Stack(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The reason phrase the peer sent, or the standard one for the code.
pub fn reason_phrase(resp: &rsipstack::sip::Response) -> String {
    resp.wire_reason
        .clone()
        .unwrap_or_else(|| resp.status_code.text().to_string())
}
