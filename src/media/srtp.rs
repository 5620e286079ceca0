//! SDES-SRTP for one call (RFC 4568 keys exchanged in SDP `a=crypto` lines, RFC 3711
//! protection): the master key we send with, the suites we take, and [`SrtpStreams`], the pair
//! of one-way contexts that protect what we send and check and decrypt what we receive (RTP
//! and RTCP), built on `rtc-srtp` (the same crate the WebRTC legs use, with ring).
//!
//! Sans-IO: buffers in, buffers out. It never touches a socket, never logs or prints a key
//! (`Debug` shows none), and never panics on what the network sends: a packet that fails
//! authentication or replay checks is an error the caller counts and drops.

use std::fmt;

use base64::Engine as _;
use rtc::crypto::providers::RingCrypto;
use rtc::srtp::context::Context;
use rtc::srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use rtc::srtp::protection_profile::ProtectionProfile;

/// Length of an AES-128 master key plus its 112-bit salt (RFC 3711 §8.2, RFC 4568 §6.1).
pub const MASTER_LEN: usize = 30;
const KEY_LEN: usize = 16;
/// Packets a replay window remembers (RFC 3711 §3.3.2 asks for at least 64).
const REPLAY_WINDOW: usize = 128;

/// Whether a trunk profile's calls use SRTP (profile key `srtp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SrtpPolicy {
    /// Plain RTP offered; an offer that demands SRTP (`RTP/SAVP`) is still taken with it.
    #[default]
    Off,
    /// SRTP offered on `RTP/AVP` with an `a=crypto` line (best effort): used when the far end
    /// answers with a key, plain RTP otherwise; a far end's key on `RTP/AVP` is taken.
    Optional,
    /// Only SRTP: offered on `RTP/SAVP`; an answer or offer without a usable key ends the call
    /// (BYE after a 200, 488 to an offer).
    Required,
}

impl SrtpPolicy {
    /// The profile file's word: `off`, `optional` or `required`.
    pub fn parse(s: &str) -> Option<SrtpPolicy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "no" | "none" => Some(SrtpPolicy::Off),
            "optional" | "best_effort" => Some(SrtpPolicy::Optional),
            "required" | "mandatory" => Some(SrtpPolicy::Required),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SrtpPolicy::Off => "off",
            SrtpPolicy::Optional => "optional",
            SrtpPolicy::Required => "required",
        }
    }
}

/// The crypto suites we take (RFC 4568 §6.2); we offer the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    AesCm128HmacSha1_80,
    AesCm128HmacSha1_32,
}

impl Suite {
    pub fn name(self) -> &'static str {
        match self {
            Suite::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            Suite::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
        }
    }

    pub fn from_name(name: &str) -> Option<Suite> {
        [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32]
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    fn profile(self) -> ProtectionProfile {
        match self {
            Suite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
            Suite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
        }
    }
}

/// A master key and salt (30 bytes), as `inline:` carries it in base64.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey([u8; MASTER_LEN]);

impl MasterKey {
    /// A fresh random key (the operating system's generator).
    pub fn generate() -> MasterKey {
        MasterKey(rand::random())
    }

    /// The key from an `inline:` value's base64 (without `|lifetime|MKI`).
    pub fn from_base64(text: &str) -> Option<MasterKey> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()?;
        let key: [u8; MASTER_LEN] = bytes.try_into().ok()?;
        Some(MasterKey(key))
    }

    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }

    fn key(&self) -> &[u8] {
        &self.0[..KEY_LEN]
    }

    fn salt(&self) -> &[u8] {
        &self.0[KEY_LEN..]
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// What an offer/answer exchange settled on: the suite, our key (we send with it) and the far
/// end's (it sends with it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtpKeys {
    pub suite: Suite,
    pub local: MasterKey,
    pub remote: MasterKey,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SrtpError {
    #[error("SRTP context cannot be made: {0}")]
    Setup(String),
    #[error("SRTP packet rejected: {0}")]
    Rejected(String),
}

/// The two one-way contexts of a call: ours protects what we send, the far end's checks and
/// decrypts what it sends. Each keeps the per-SSRC rollover counters and replay windows.
pub struct SrtpStreams {
    keys: SrtpKeys,
    tx: Context,
    rx: Context,
}

impl fmt::Debug for SrtpStreams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpStreams")
            .field("suite", &self.keys.suite)
            .finish_non_exhaustive()
    }
}

impl SrtpStreams {
    pub fn new(keys: SrtpKeys) -> Result<SrtpStreams, SrtpError> {
        let profile = keys.suite.profile();
        let context = |key: &MasterKey, replay: bool| {
            let (rtp, rtcp) = if replay {
                (
                    Some(srtp_replay_protection(REPLAY_WINDOW)),
                    Some(srtcp_replay_protection(REPLAY_WINDOW)),
                )
            } else {
                (None, None)
            };
            Context::new(key.key(), key.salt(), profile, rtp, rtcp, &RingCrypto)
                .map_err(|e| SrtpError::Setup(e.to_string()))
        };
        Ok(SrtpStreams {
            tx: context(&keys.local, false)?,
            rx: context(&keys.remote, true)?,
            keys,
        })
    }

    /// The keys these contexts were made from.
    pub fn keys(&self) -> &SrtpKeys {
        &self.keys
    }

    /// Protects the RTP packet `plain` into `out` (cleared first).
    pub fn protect_rtp(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        rtp_header_fits(plain, 0)?;
        let sealed = self
            .tx
            .encrypt_rtp(plain)
            .map_err(|e| SrtpError::Rejected(e.to_string()))?;
        out.clear();
        out.extend_from_slice(&sealed);
        Ok(())
    }

    /// Checks and decrypts the SRTP packet `sealed` into `out` (cleared first).
    pub fn unprotect_rtp(&mut self, sealed: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        rtp_header_fits(sealed, self.keys.suite.profile().rtp_auth_tag_len())?;
        let plain = self
            .rx
            .decrypt_rtp(sealed)
            .map_err(|e| SrtpError::Rejected(e.to_string()))?;
        out.clear();
        out.extend_from_slice(&plain);
        Ok(())
    }

    /// Protects the RTCP compound packet `plain` into `out` (cleared first).
    pub fn protect_rtcp(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        let sealed = self
            .tx
            .encrypt_rtcp(plain)
            .map_err(|e| SrtpError::Rejected(e.to_string()))?;
        out.clear();
        out.extend_from_slice(&sealed);
        Ok(())
    }

    /// Checks and decrypts the SRTCP packet `sealed` into `out` (cleared first).
    pub fn unprotect_rtcp(&mut self, sealed: &[u8], out: &mut Vec<u8>) -> Result<(), SrtpError> {
        let plain = self
            .rx
            .decrypt_rtcp(sealed)
            .map_err(|e| SrtpError::Rejected(e.to_string()))?;
        out.clear();
        out.extend_from_slice(&plain);
        Ok(())
    }
}

/// The packet's RTP header, as the SRTP crate reads and re-writes it, fits in `packet` less
/// `tag` bytes: the crate slices the payload at the re-written header's length and would panic
/// on a header that claims more (a fuzzed packet found it).
fn rtp_header_fits(packet: &[u8], tag: usize) -> Result<(), SrtpError> {
    use rtc::shared::marshal::{MarshalSize, Unmarshal};
    let mut buf = packet;
    let header = rtc::rtp::header::Header::unmarshal(&mut buf)
        .map_err(|e| SrtpError::Rejected(e.to_string()))?;
    if header.marshal_size() + tag > packet.len() {
        return Err(SrtpError::Rejected(format!(
            "RTP header of {} bytes in a packet of {}",
            header.marshal_size(),
            packet.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp::RtpSender;

    fn pair(suite: Suite) -> (SrtpStreams, SrtpStreams) {
        let a = MasterKey::generate();
        let b = MasterKey::generate();
        let ours = SrtpStreams::new(SrtpKeys {
            suite,
            local: a.clone(),
            remote: b.clone(),
        })
        .unwrap();
        let theirs = SrtpStreams::new(SrtpKeys {
            suite,
            local: b,
            remote: a,
        })
        .unwrap();
        (ours, theirs)
    }

    fn rtp_packets(n: usize) -> Vec<Vec<u8>> {
        let mut tx = RtpSender::new(0x1234_5678, 65_530, 1000);
        (0..n)
            .map(|i| {
                let mut p = Vec::new();
                tx.packet(&mut p, 0, &[i as u8; 160], 160, i == 0);
                p
            })
            .collect()
    }

    #[test]
    fn both_suites_round_trip_rtp_across_a_sequence_wrap_and_hide_the_payload() {
        for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32] {
            let (mut ours, mut theirs) = pair(suite);
            let tag = if suite == Suite::AesCm128HmacSha1_80 {
                10
            } else {
                4
            };
            let (mut sealed, mut plain) = (Vec::new(), Vec::new());
            for p in rtp_packets(12) {
                ours.protect_rtp(&p, &mut sealed).unwrap();
                assert_eq!(sealed.len(), p.len() + tag, "{suite:?}");
                assert_eq!(sealed[..12], p[..12], "the header stays readable");
                assert_ne!(sealed[12..p.len()], p[12..], "the payload is encrypted");
                theirs.unprotect_rtp(&sealed, &mut plain).unwrap();
                assert_eq!(plain, p);
            }
        }
    }

    #[test]
    fn tampered_replayed_and_foreign_packets_are_rejected() {
        let (mut ours, mut theirs) = pair(Suite::AesCm128HmacSha1_80);
        let (mut sealed, mut plain) = (Vec::new(), Vec::new());
        let packets = rtp_packets(3);
        ours.protect_rtp(&packets[0], &mut sealed).unwrap();
        let mut bad = sealed.clone();
        bad[20] ^= 1;
        assert!(theirs.unprotect_rtp(&bad, &mut plain).is_err(), "tampered");
        theirs.unprotect_rtp(&sealed, &mut plain).unwrap();
        assert!(theirs.unprotect_rtp(&sealed, &mut plain).is_err(), "replay");
        assert!(
            theirs.unprotect_rtp(&packets[1], &mut plain).is_err(),
            "plain RTP"
        );
        let (mut stranger, _) = pair(Suite::AesCm128HmacSha1_80);
        stranger.protect_rtp(&packets[2], &mut sealed).unwrap();
        assert!(
            theirs.unprotect_rtp(&sealed, &mut plain).is_err(),
            "other key"
        );
        for junk in [
            &[][..],
            &[0x80][..],
            &[0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 9][..],
        ] {
            assert!(theirs.unprotect_rtp(junk, &mut plain).is_err());
            assert!(theirs.unprotect_rtcp(junk, &mut plain).is_err());
        }
    }

    #[test]
    fn a_header_claiming_more_than_the_packet_is_refused_not_a_panic() {
        // Found by the rtp_parse fuzz target: the crate sliced past the end.
        let hex = "7b000000626262626262226262626262626262000000000000004d626262626262626262\
                   6262626262626286626262626262000000000000100000011c0062010108";
        let crash: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        assert_eq!(crash.len(), 66);
        for suite in [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32] {
            let (mut ours, _) = pair(suite);
            let mut out = Vec::new();
            for len in 0..=crash.len() {
                let _ = ours.protect_rtp(&crash[..len], &mut out);
                let _ = ours.unprotect_rtp(&crash[..len], &mut out);
                let _ = ours.protect_rtcp(&crash[..len], &mut out);
                let _ = ours.unprotect_rtcp(&crash[..len], &mut out);
            }
        }
    }

    #[test]
    fn rtcp_round_trips() {
        let (mut ours, mut theirs) = pair(Suite::AesCm128HmacSha1_80);
        // An empty receiver report (RC 0) from SSRC 0x01020304.
        let rr = [0x80, 201, 0, 1, 1, 2, 3, 4];
        let (mut sealed, mut plain) = (Vec::new(), Vec::new());
        ours.protect_rtcp(&rr, &mut sealed).unwrap();
        assert_eq!(
            sealed.len(),
            rr.len() + 4 + 10,
            "E flag + index, then the tag"
        );
        theirs.unprotect_rtcp(&sealed, &mut plain).unwrap();
        assert_eq!(plain, rr);
    }

    #[test]
    fn keys_travel_as_base64_and_never_print() {
        let k = MasterKey::generate();
        let text = k.to_base64();
        assert_eq!(text.len(), 40);
        assert_eq!(MasterKey::from_base64(&text), Some(k.clone()));
        assert_eq!(MasterKey::from_base64("c2hvcnQ="), None);
        assert_eq!(MasterKey::from_base64("not base64!"), None);
        assert!(!format!("{k:?}").contains(&text[..8]));
        let keys = SrtpKeys {
            suite: Suite::AesCm128HmacSha1_80,
            local: k.clone(),
            remote: k,
        };
        assert!(!format!("{:?}", SrtpStreams::new(keys).unwrap()).contains(&text[..8]));
    }

    #[test]
    fn policy_words() {
        assert_eq!(SrtpPolicy::parse("Required"), Some(SrtpPolicy::Required));
        assert_eq!(SrtpPolicy::parse("optional"), Some(SrtpPolicy::Optional));
        assert_eq!(SrtpPolicy::parse("off"), Some(SrtpPolicy::Off));
        assert_eq!(SrtpPolicy::parse("sometimes"), None);
        assert_eq!(
            Suite::from_name("aes_cm_128_hmac_sha1_32"),
            Some(Suite::AesCm128HmacSha1_32)
        );
        assert_eq!(Suite::from_name("AEAD_AES_128_GCM"), None);
    }
}
