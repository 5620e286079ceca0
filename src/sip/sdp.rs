//! SDP offer/answer for one audio stream (RFC 3264), G.711 (and G.722 with the `g722` feature:
//! `a=rtpmap:9 G722/8000`, its RTP clock being 8 kHz per RFC 3551) plus telephone-event, and
//! SDES-SRTP keys (RFC 4568 `a=crypto`) as the profile's [`SrtpPolicy`] asks: `RTP/SAVP` with
//! our key when required, `RTP/AVP` with our key when optional (best effort).
//!
//! Sans-IO: builds our offer or answer as text and reads the peer's SDP into a
//! [`RemoteMedia`] (where to send, which codec, which direction). Parsing is done
//! by the `sdp` crate; this module only applies offer/answer rules. It never
//! touches sockets and never panics on what a peer sends: bad SDP is an error.

use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use crate::media::g711::Codec;
use crate::media::srtp::{MasterKey, SrtpKeys, SrtpPolicy, Suite};

/// The media formats we can offer, in the order the trunk profile prefers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Audio(Codec),
    /// RFC 4733 DTMF events with their dynamic payload type.
    TelephoneEvent(u8),
}

/// Payload type we offer for telephone-event.
pub const TELEPHONE_EVENT_PT: u8 = 101;

/// Stream direction (RFC 3264 §5.1, §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    fn attr(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction our answer takes for a peer's offered direction.
    pub fn answer_to(offered: Direction) -> Direction {
        match offered {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }
}

/// What the peer's SDP tells us about its side of the audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMedia {
    /// Where to send RTP; `None` when the peer holds the call (port 0 or
    /// `c=0.0.0.0`).
    pub addr: Option<SocketAddr>,
    /// The audio codec both sides share, first in the peer's order.
    pub codec: Codec,
    /// The peer's telephone-event payload type, if it takes DTMF events.
    pub dtmf_pt: Option<u8>,
    /// The peer's direction as written in its SDP.
    pub direction: Direction,
    /// The stream's transport is `RTP/SAVP` (or `RTP/SAVPF`): SRTP or nothing.
    pub secure: bool,
    /// The first `a=crypto` line we can use (suite we take, one inline key, no MKI, no session
    /// parameter we do not know).
    pub crypto: Option<Crypto>,
}

/// One usable `a=crypto` line (RFC 4568 §9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crypto {
    pub tag: u32,
    pub suite: Suite,
    pub key: MasterKey,
}

/// The tag of the one crypto line our offers carry.
const OUR_CRYPTO_TAG: u32 = 1;

impl RemoteMedia {
    /// Whether we may send audio to the peer.
    pub fn peer_receives(&self) -> bool {
        self.addr.is_some() && matches!(self.direction, Direction::SendRecv | Direction::RecvOnly)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SdpError {
    #[error("SDP cannot be parsed: {0}")]
    Syntax(String),
    #[error("SDP has no audio stream")]
    NoAudio,
    #[error("SDP audio stream has no connection address")]
    NoConnection,
    #[error("SDP connection address {0:?} is not an IP address")]
    BadAddress(String),
    #[error("SDP offers no codec we support (formats: {0})")]
    NoCommonCodec(String),
    #[error(
        "SDP has no SRTP key we can use (a=crypto with AES_CM_128_HMAC_SHA1_80 or _32) and \
         the profile says srtp = \"required\""
    )]
    SrtpRequired,
    #[error("SDP asks for SRTP (RTP/SAVP) without a key we can use (a=crypto with AES_CM_128_HMAC_SHA1_80 or _32)")]
    SrtpUnusable,
}

/// Our side of a session: used to write offers and answers.
#[derive(Debug, Clone)]
pub struct LocalMedia {
    /// The address written into `o=` and `c=` (the external RTP address under NAT).
    pub addr: IpAddr,
    pub port: u16,
    /// Session id for `o=`; the version goes up with every new SDP we send.
    pub session_id: u64,
    pub version: u64,
    /// Whether our SDP offers SRTP (see [`SrtpPolicy`]).
    pub srtp: SrtpPolicy,
    /// The master key we send SRTP with (one per call; `None` with [`SrtpPolicy::Off`] until a
    /// peer's offer asks for SRTP).
    key: Option<MasterKey>,
}

impl LocalMedia {
    pub fn new(addr: IpAddr, port: u16) -> LocalMedia {
        let session_id = u64::from(rand::random::<u32>());
        LocalMedia {
            addr,
            port,
            session_id,
            version: session_id,
            srtp: SrtpPolicy::Off,
            key: None,
        }
    }

    /// The same, offering SRTP as `policy` says (a fresh master key unless it is off).
    pub fn with_srtp(mut self, policy: SrtpPolicy) -> LocalMedia {
        self.srtp = policy;
        self.key = (policy != SrtpPolicy::Off).then(MasterKey::generate);
        self
    }

    /// An offer listing `formats` in order.
    pub fn offer(&mut self, formats: &[Format], direction: Direction) -> String {
        let (proto, crypto) = match (self.srtp, &self.key) {
            (SrtpPolicy::Required, Some(_)) => (
                "RTP/SAVP",
                Some((OUR_CRYPTO_TAG, Suite::AesCm128HmacSha1_80)),
            ),
            (SrtpPolicy::Optional, Some(_)) => (
                "RTP/AVP",
                Some((OUR_CRYPTO_TAG, Suite::AesCm128HmacSha1_80)),
            ),
            _ => ("RTP/AVP", None),
        };
        self.write(formats, direction, proto, crypto)
    }

    /// Our answer to a peer's offer: the chosen codec, and telephone-event if both sides take
    /// it, with the peer's payload type; the peer's transport, and our key on its crypto line's
    /// tag and suite when [`LocalMedia::srtp_keys`] settled on SRTP (`keys`).
    pub fn answer(
        &mut self,
        remote: &RemoteMedia,
        ours: &[Format],
        keys: Option<&SrtpKeys>,
    ) -> String {
        let mut formats = vec![Format::Audio(remote.codec)];
        let we_take_dtmf = ours.iter().any(|f| matches!(f, Format::TelephoneEvent(_)));
        if let (Some(pt), true) = (remote.dtmf_pt, we_take_dtmf) {
            formats.push(Format::TelephoneEvent(pt));
        }
        let crypto = match (keys, &remote.crypto) {
            (Some(k), Some(c)) => Some((c.tag, k.suite)),
            _ => None,
        };
        let proto = if remote.secure { "RTP/SAVP" } else { "RTP/AVP" };
        self.write(
            &formats,
            Direction::answer_to(remote.direction),
            proto,
            crypto,
        )
    }

    /// What the peer's SDP means for SRTP under our policy: the keys to protect the media with,
    /// `None` for plain RTP, or an error when the two cannot agree. `peer_offered`: the SDP is
    /// the peer's offer (we answer it) rather than its answer to ours.
    ///
    /// * A peer's `RTP/SAVP` needs a usable key, whatever our policy (we can do SRTP).
    /// * `required`: no usable key is an error.
    /// * `optional`: a usable key is taken (best effort both ways).
    /// * `off`: a key on `RTP/AVP` is ignored; an answer's key to our plain offer too.
    pub fn srtp_keys(
        &mut self,
        remote: &RemoteMedia,
        peer_offered: bool,
    ) -> Result<Option<SrtpKeys>, SdpError> {
        let usable = match &remote.crypto {
            // An answer's line must be the one we offered (RFC 4568 §7.1.2).
            Some(c) if peer_offered || c.tag == OUR_CRYPTO_TAG => Some(c),
            _ => None,
        };
        let take = match self.srtp {
            SrtpPolicy::Off => peer_offered && remote.secure,
            SrtpPolicy::Optional | SrtpPolicy::Required => true,
        };
        match usable {
            Some(c) if take => {
                let local = self.key.get_or_insert_with(MasterKey::generate).clone();
                Ok(Some(SrtpKeys {
                    suite: c.suite,
                    local,
                    remote: c.key.clone(),
                }))
            }
            None if self.srtp == SrtpPolicy::Required => Err(SdpError::SrtpRequired),
            None if peer_offered && remote.secure => Err(SdpError::SrtpUnusable),
            _ => Ok(None),
        }
    }

    fn write(
        &mut self,
        formats: &[Format],
        direction: Direction,
        proto: &str,
        crypto: Option<(u32, Suite)>,
    ) -> String {
        self.version += 1;
        let ip_kind = if self.addr.is_ipv4() { "IP4" } else { "IP6" };
        let pts: Vec<String> = formats
            .iter()
            .map(|f| match f {
                Format::Audio(c) => c.payload_type().to_string(),
                Format::TelephoneEvent(pt) => pt.to_string(),
            })
            .collect();
        let mut s = String::with_capacity(320);
        s.push_str("v=0\r\n");
        s.push_str(&format!(
            "o=outdial {} {} IN {ip_kind} {}\r\n",
            self.session_id, self.version, self.addr
        ));
        s.push_str("s=outdial\r\n");
        s.push_str(&format!("c=IN {ip_kind} {}\r\n", self.addr));
        s.push_str("t=0 0\r\n");
        s.push_str(&format!(
            "m=audio {} {proto} {}\r\n",
            self.port,
            pts.join(" ")
        ));
        if let (Some((tag, suite)), Some(key)) = (crypto, &self.key) {
            s.push_str(&format!(
                "a=crypto:{tag} {} inline:{}\r\n",
                suite.name(),
                key.to_base64()
            ));
        }
        for f in formats {
            match f {
                Format::Audio(c) => s.push_str(&format!(
                    "a=rtpmap:{} {}/8000\r\n",
                    c.payload_type(),
                    c.name()
                )),
                Format::TelephoneEvent(pt) => {
                    s.push_str(&format!("a=rtpmap:{pt} telephone-event/8000\r\n"));
                    s.push_str(&format!("a=fmtp:{pt} 0-16\r\n"));
                }
            }
        }
        s.push_str("a=ptime:20\r\n");
        s.push_str(&format!("a={}\r\n", direction.attr()));
        s
    }
}

/// Reads the peer's SDP (an answer to our offer, or an offer of its own) and
/// picks the first audio codec in the peer's order that we also listed.
pub fn parse_remote(body: &[u8], ours: &[Format]) -> Result<RemoteMedia, SdpError> {
    let desc = sdp::SessionDescription::unmarshal(&mut Cursor::new(body))
        .map_err(|e| SdpError::Syntax(e.to_string()))?;
    let media = desc
        .media_descriptions
        .iter()
        .find(|m| m.media_name.media.eq_ignore_ascii_case("audio"))
        .ok_or(SdpError::NoAudio)?;

    let rtpmap = |pt: &str| -> Option<String> {
        media.attributes.iter().find_map(|a| {
            if a.key != "rtpmap" {
                return None;
            }
            let v = a.value.as_deref()?;
            let (p, name) = v.split_once(' ')?;
            (p.trim() == pt).then(|| name.trim().to_ascii_lowercase())
        })
    };
    let we_offer = |c: Codec| ours.contains(&Format::Audio(c));

    let mut codec = None;
    let mut dtmf_pt = None;
    for fmt in &media.media_name.formats {
        let Ok(pt) = fmt.parse::<u8>() else { continue };
        let name = rtpmap(fmt);
        let audio = match (pt, name.as_deref()) {
            (_, Some(n)) if n.starts_with("pcmu/8000") => Some(Codec::Pcmu),
            (_, Some(n)) if n.starts_with("pcma/8000") => Some(Codec::Pcma),
            (0, None) => Some(Codec::Pcmu),
            (8, None) => Some(Codec::Pcma),
            #[cfg(feature = "g722")]
            (_, Some(n)) if n.starts_with("g722/8000") => Some(Codec::G722),
            #[cfg(feature = "g722")]
            (9, None) => Some(Codec::G722),
            _ => None,
        };
        if let Some(c) = audio {
            if codec.is_none() && we_offer(c) {
                codec = Some(c);
            }
        } else if name
            .as_deref()
            .is_some_and(|n| n.starts_with("telephone-event/8000"))
        {
            dtmf_pt.get_or_insert(pt);
        }
    }
    let codec = codec.ok_or_else(|| SdpError::NoCommonCodec(media.media_name.formats.join(" ")))?;

    let direction = ["sendrecv", "sendonly", "recvonly", "inactive"]
        .iter()
        .find(|k| media.has_attribute(k) || desc.has_attribute(k))
        .map(|k| match *k {
            "sendonly" => Direction::SendOnly,
            "recvonly" => Direction::RecvOnly,
            "inactive" => Direction::Inactive,
            _ => Direction::SendRecv,
        })
        .unwrap_or(Direction::SendRecv);

    let conn = media
        .connection_information
        .as_ref()
        .or(desc.connection_information.as_ref())
        .and_then(|c| c.address.as_ref())
        .ok_or(SdpError::NoConnection)?;
    let ip: IpAddr = conn
        .address
        .parse()
        .map_err(|_| SdpError::BadAddress(conn.address.clone()))?;
    let port = media.media_name.port.value;
    let addr = if port <= 0 || port > i64::from(u16::MAX) as isize || ip.is_unspecified() {
        None
    } else {
        Some(SocketAddr::new(ip, port as u16))
    };
    let proto = media.media_name.protos.join("/").to_ascii_uppercase();
    let secure = proto.contains("SAVP");
    let crypto = media
        .attributes
        .iter()
        .filter(|a| a.key.eq_ignore_ascii_case("crypto"))
        .find_map(|a| parse_crypto(a.value.as_deref()?));
    Ok(RemoteMedia {
        addr,
        codec,
        dtmf_pt,
        direction,
        secure,
        crypto,
    })
}

/// One `a=crypto` value (`1 AES_CM_128_HMAC_SHA1_80 inline:KEY[|2^31][|1:4] [params]`), if we
/// can use it: a suite we take, exactly one inline key of the right length, no MKI (we send
/// none, so we could not read its packets), and no session parameter but a window size hint.
fn parse_crypto(value: &str) -> Option<Crypto> {
    let mut words = value.split_ascii_whitespace();
    let tag: u32 = words.next()?.parse().ok()?;
    let suite = Suite::from_name(words.next()?)?;
    let key_params = words.next()?;
    if words.any(|p| !p.to_ascii_uppercase().starts_with("WSH=")) {
        return None;
    }
    if key_params.contains(';') {
        return None;
    }
    let inline = key_params.strip_prefix("inline:")?;
    let mut parts = inline.split('|');
    let key = MasterKey::from_base64(parts.next()?)?;
    for part in parts {
        if part.contains(':') {
            return None; // MKI
        }
    }
    Some(Crypto { tag, suite, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: [Format; 3] = [
        Format::Audio(Codec::Pcmu),
        Format::Audio(Codec::Pcma),
        Format::TelephoneEvent(TELEPHONE_EVENT_PT),
    ];

    #[test]
    fn offer_lists_formats_in_profile_order_and_parses_back() {
        let mut local = LocalMedia::new("192.0.2.10".parse().unwrap(), 20000);
        let order = [
            Format::Audio(Codec::Pcma),
            Format::Audio(Codec::Pcmu),
            Format::TelephoneEvent(101),
        ];
        let offer = local.offer(&order, Direction::SendRecv);
        assert!(
            offer.contains("m=audio 20000 RTP/AVP 8 0 101\r\n"),
            "{offer}"
        );
        assert!(offer.contains("a=rtpmap:101 telephone-event/8000\r\n"));
        assert!(offer.contains("c=IN IP4 192.0.2.10\r\n"));
        let back = parse_remote(offer.as_bytes(), &OURS).unwrap();
        assert_eq!(back.codec, Codec::Pcma);
        assert_eq!(back.dtmf_pt, Some(101));
        assert_eq!(back.addr, Some("192.0.2.10:20000".parse().unwrap()));
        assert_eq!(back.direction, Direction::SendRecv);
    }

    #[test]
    fn every_new_sdp_bumps_the_origin_version() {
        let mut local = LocalMedia::new("127.0.0.1".parse().unwrap(), 4000);
        let a = local.offer(&OURS, Direction::SendRecv);
        let b = local.offer(&OURS, Direction::SendRecv);
        let version = |s: &str| {
            s.lines()
                .nth(1)
                .unwrap()
                .split(' ')
                .nth(2)
                .unwrap()
                .to_string()
        };
        assert_ne!(version(&a), version(&b));
    }

    #[test]
    fn answer_picks_the_first_common_codec_in_peer_order() {
        let answer = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n\
                      m=audio 30000 RTP/AVP 18 8 0 96\r\na=rtpmap:18 G729/8000\r\na=rtpmap:96 telephone-event/8000\r\n";
        let r = parse_remote(answer.as_bytes(), &OURS).unwrap();
        assert_eq!(r.codec, Codec::Pcma);
        assert_eq!(r.dtmf_pt, Some(96));
        assert_eq!(r.addr, Some("198.51.100.7:30000".parse().unwrap()));
    }

    #[test]
    fn codec_not_offered_by_us_is_not_chosen() {
        let answer = "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\nm=audio 30000 RTP/AVP 8\r\n";
        let only_ulaw = [Format::Audio(Codec::Pcmu)];
        assert_eq!(
            parse_remote(answer.as_bytes(), &only_ulaw),
            Err(SdpError::NoCommonCodec("8".into()))
        );
    }

    #[test]
    fn dynamic_payload_type_mapped_by_rtpmap() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 5004 RTP/AVP 97\r\nc=IN IP4 10.0.0.1\r\na=rtpmap:97 PCMU/8000\r\n";
        let r = parse_remote(sdp.as_bytes(), &OURS).unwrap();
        assert_eq!(r.codec, Codec::Pcmu);
    }

    #[test]
    fn hold_forms_are_recognised() {
        let base = "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
        let sendonly = format!("{base}a=sendonly\r\n");
        let r = parse_remote(sendonly.as_bytes(), &OURS).unwrap();
        assert_eq!(r.direction, Direction::SendOnly);
        assert!(!r.peer_receives());
        assert_eq!(Direction::answer_to(r.direction), Direction::RecvOnly);

        let zero = base.replace("c=IN IP4 10.0.0.1", "c=IN IP4 0.0.0.0");
        let r = parse_remote(zero.as_bytes(), &OURS).unwrap();
        assert_eq!(r.addr, None);
        assert!(!r.peer_receives());

        let port0 = base.replace("m=audio 5004", "m=audio 0");
        assert_eq!(parse_remote(port0.as_bytes(), &OURS).unwrap().addr, None);
    }

    #[test]
    fn answer_mirrors_direction_and_keeps_peer_dtmf_pt() {
        let remote = RemoteMedia {
            addr: Some("10.0.0.1:5004".parse().unwrap()),
            codec: Codec::Pcmu,
            dtmf_pt: Some(96),
            direction: Direction::SendOnly,
            secure: false,
            crypto: None,
        };
        let mut local = LocalMedia::new("127.0.0.1".parse().unwrap(), 4000);
        let a = local.answer(&remote, &OURS, None);
        assert!(a.contains("m=audio 4000 RTP/AVP 0 96\r\n"), "{a}");
        assert!(a.contains("a=recvonly\r\n"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for body in [
            &b""[..],
            b"hello",
            b"v=0\r\n",
            b"v=0\r\no=- 1 1 IN IP4 x\r\ns=-\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 not-an-ip\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n",
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\nm=video 5004 RTP/AVP 96\r\n",
            &[0xff, 0xfe, 0x00, 0x13][..],
        ] {
            assert!(parse_remote(body, &OURS).is_err());
        }
    }

    #[cfg(feature = "g722")]
    #[test]
    fn g722_is_offered_as_payload_type_9_and_negotiated() {
        let ours = [
            Format::Audio(Codec::Pcmu),
            Format::Audio(Codec::Pcma),
            Format::Audio(Codec::G722),
            Format::TelephoneEvent(TELEPHONE_EVENT_PT),
        ];
        let mut local = LocalMedia::new("192.0.2.10".parse().unwrap(), 20000);
        let offer = local.offer(&ours, Direction::SendRecv);
        assert!(
            offer.contains("m=audio 20000 RTP/AVP 0 8 9 101\r\n"),
            "{offer}"
        );
        assert!(offer.contains("a=rtpmap:9 G722/8000\r\n"), "{offer}");
        // A peer that prefers wideband answers with G.722 first (by name, or by static type).
        for answer in [
            "m=audio 30000 RTP/AVP 9 0\r\na=rtpmap:9 G722/8000\r\n",
            "m=audio 30000 RTP/AVP 9 0\r\n",
        ] {
            let sdp = format!(
                "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n{answer}"
            );
            let r = parse_remote(sdp.as_bytes(), &ours).unwrap();
            assert_eq!(r.codec, Codec::G722, "{answer}");
            assert_eq!(r.codec.payload_type(), 9);
        }
        // Not offered: not taken, even when the peer puts it first.
        let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
                   m=audio 30000 RTP/AVP 9 8\r\na=rtpmap:9 G722/8000\r\n";
        assert_eq!(
            parse_remote(sdp.as_bytes(), &OURS).unwrap().codec,
            Codec::Pcma
        );
        // Our answer to a G.722 offer names it.
        let r = parse_remote(
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
             m=audio 30000 RTP/AVP 9 101\r\na=rtpmap:101 telephone-event/8000\r\n"
                .as_bytes(),
            &ours,
        )
        .unwrap();
        let answer = local.answer(&r, &ours, None);
        assert!(
            answer.contains("m=audio 20000 RTP/AVP 9 101\r\n"),
            "{answer}"
        );
        assert!(answer.contains("a=rtpmap:9 G722/8000\r\n"), "{answer}");
    }

    fn peer_sdp(proto: &str, crypto: &str) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n\
             m=audio 30000 {proto} 0 101\r\na=rtpmap:101 telephone-event/8000\r\n{crypto}"
        )
    }

    fn crypto_line(tag: u32, suite: &str, key: &MasterKey, extra: &str) -> String {
        format!(
            "a=crypto:{tag} {suite} inline:{}{extra}\r\n",
            key.to_base64()
        )
    }

    #[test]
    fn srtp_offers_follow_the_policy() {
        let ip = "192.0.2.10".parse().unwrap();
        let mut off = LocalMedia::new(ip, 20000);
        let plain = off.offer(&OURS, Direction::SendRecv);
        assert!(
            plain.contains("RTP/AVP") && !plain.contains("a=crypto"),
            "{plain}"
        );
        let mut required = LocalMedia::new(ip, 20000).with_srtp(SrtpPolicy::Required);
        let offer = required.offer(&OURS, Direction::SendRecv);
        assert!(
            offer.contains("m=audio 20000 RTP/SAVP 0 8 101\r\n"),
            "{offer}"
        );
        let back = parse_remote(offer.as_bytes(), &OURS).unwrap();
        assert!(back.secure);
        let c = back.crypto.expect("our crypto line parses back");
        assert_eq!((c.tag, c.suite), (1, Suite::AesCm128HmacSha1_80));
        let mut optional = LocalMedia::new(ip, 20000).with_srtp(SrtpPolicy::Optional);
        let offer = optional.offer(&OURS, Direction::SendRecv);
        assert!(
            offer.contains("RTP/AVP")
                && offer.contains("a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:"),
            "{offer}"
        );
        // One key per call: a re-offer carries the same.
        assert_eq!(
            parse_remote(optional.offer(&OURS, Direction::SendOnly).as_bytes(), &OURS)
                .unwrap()
                .crypto,
            parse_remote(offer.as_bytes(), &OURS).unwrap().crypto
        );
    }

    #[test]
    fn answers_to_our_offer_settle_srtp_or_refuse_it() {
        let ip = "192.0.2.10".parse().unwrap();
        let theirs = MasterKey::generate();
        let with_key = peer_sdp(
            "RTP/SAVP",
            &crypto_line(1, "AES_CM_128_HMAC_SHA1_80", &theirs, ""),
        );
        let without = peer_sdp("RTP/AVP", "");
        let other_tag = peer_sdp(
            "RTP/SAVP",
            &crypto_line(7, "AES_CM_128_HMAC_SHA1_80", &theirs, ""),
        );

        let mut required = LocalMedia::new(ip, 20000).with_srtp(SrtpPolicy::Required);
        let offer = required.offer(&OURS, Direction::SendRecv);
        let ours = parse_remote(offer.as_bytes(), &OURS)
            .unwrap()
            .crypto
            .unwrap()
            .key;
        let keys = required
            .srtp_keys(&parse_remote(with_key.as_bytes(), &OURS).unwrap(), false)
            .unwrap()
            .expect("SRTP settled");
        assert_eq!((keys.local, keys.remote), (ours, theirs.clone()));
        for bad in [&without, &other_tag] {
            let remote = parse_remote(bad.as_bytes(), &OURS).unwrap();
            assert_eq!(
                required.srtp_keys(&remote, false),
                Err(SdpError::SrtpRequired)
            );
        }

        let mut optional = LocalMedia::new(ip, 20000).with_srtp(SrtpPolicy::Optional);
        optional.offer(&OURS, Direction::SendRecv);
        let plain = parse_remote(without.as_bytes(), &OURS).unwrap();
        assert_eq!(
            optional.srtp_keys(&plain, false),
            Ok(None),
            "best effort: plain RTP"
        );
        let keyed = parse_remote(with_key.as_bytes(), &OURS).unwrap();
        assert!(optional.srtp_keys(&keyed, false).unwrap().is_some());

        let mut off = LocalMedia::new(ip, 20000);
        off.offer(&OURS, Direction::SendRecv);
        assert_eq!(off.srtp_keys(&keyed, false), Ok(None), "we offered none");
    }

    #[test]
    fn peer_offers_are_answered_on_their_transport_with_our_key() {
        let ip = "192.0.2.10".parse().unwrap();
        let theirs = MasterKey::generate();
        // A suite we do not take first, then one we do, on the peer's tag 3.
        let lines = format!(
            "a=crypto:1 AEAD_AES_256_GCM inline:{}\r\n{}",
            theirs.to_base64(),
            crypto_line(3, "AES_CM_128_HMAC_SHA1_32", &theirs, "|2^31")
        );
        let savp = parse_remote(peer_sdp("RTP/SAVP", &lines).as_bytes(), &OURS).unwrap();
        for policy in [SrtpPolicy::Off, SrtpPolicy::Optional, SrtpPolicy::Required] {
            let mut local = LocalMedia::new(ip, 20000).with_srtp(policy);
            let keys = local
                .srtp_keys(&savp, true)
                .unwrap()
                .expect("SAVP is taken");
            assert_eq!(keys.suite, Suite::AesCm128HmacSha1_32);
            let answer = local.answer(&savp, &OURS, Some(&keys));
            assert!(
                answer.contains("m=audio 20000 RTP/SAVP 0 101\r\n"),
                "{answer}"
            );
            let line = format!(
                "a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:{}\r\n",
                keys.local.to_base64()
            );
            assert!(answer.contains(&line), "{policy:?}: {answer}");
        }
        // Best effort on RTP/AVP: taken unless off.
        let avp = parse_remote(peer_sdp("RTP/AVP", &lines).as_bytes(), &OURS).unwrap();
        let mut off = LocalMedia::new(ip, 20000);
        assert_eq!(off.srtp_keys(&avp, true), Ok(None));
        assert!(!off.answer(&avp, &OURS, None).contains("a=crypto"));
        let mut optional = LocalMedia::new(ip, 20000).with_srtp(SrtpPolicy::Optional);
        let keys = optional.srtp_keys(&avp, true).unwrap();
        let answer = optional.answer(&avp, &OURS, keys.as_ref());
        assert!(
            answer.contains("RTP/AVP") && answer.contains("a=crypto:3 "),
            "{answer}"
        );
        // Refusals: SAVP without a usable key; required without any key.
        let unusable = peer_sdp(
            "RTP/SAVP",
            &crypto_line(1, "AES_CM_128_HMAC_SHA1_80", &theirs, "|2^20|1:4"),
        );
        let remote = parse_remote(unusable.as_bytes(), &OURS).unwrap();
        assert_eq!(remote.crypto, None, "an MKI we would not send");
        assert_eq!(
            LocalMedia::new(ip, 1).srtp_keys(&remote, true),
            Err(SdpError::SrtpUnusable)
        );
        let plain = parse_remote(peer_sdp("RTP/AVP", "").as_bytes(), &OURS).unwrap();
        let mut required = LocalMedia::new(ip, 20000).with_srtp(SrtpPolicy::Required);
        assert_eq!(
            required.srtp_keys(&plain, true),
            Err(SdpError::SrtpRequired)
        );
    }

    #[test]
    fn crypto_lines_we_cannot_use_are_skipped_not_fatal() {
        let key = MasterKey::generate().to_base64();
        for line in [
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key} KDR=1"),
            format!("1 AES_CM_128_HMAC_SHA1_80 inline:{key};inline:{key}"),
            "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=".to_string(),
            format!("x AES_CM_128_HMAC_SHA1_80 inline:{key}"),
            "1 AES_CM_128_HMAC_SHA1_80".to_string(),
            "".to_string(),
            format!("1 F8_128_HMAC_SHA1_80 inline:{key}"),
        ] {
            assert_eq!(parse_crypto(&line), None, "{line}");
        }
        assert!(parse_crypto(&format!("2 AES_CM_128_HMAC_SHA1_80 inline:{key} WSH=64")).is_some());
    }
}
