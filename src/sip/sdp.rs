//! SDP offer/answer for one audio stream (RFC 3264), G.711 (and G.722 with the `g722` feature:
//! `a=rtpmap:9 G722/8000`, its RTP clock being 8 kHz per RFC 3551) plus telephone-event.
//!
//! Sans-IO: builds our offer or answer as text and reads the peer's SDP into a
//! [`RemoteMedia`] (where to send, which codec, which direction). Parsing is done
//! by the `sdp` crate; this module only applies offer/answer rules. It never
//! touches sockets and never panics on what a peer sends: bad SDP is an error.

use std::io::Cursor;
use std::net::{IpAddr, SocketAddr};

use crate::media::g711::Codec;

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
}

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
}

impl LocalMedia {
    pub fn new(addr: IpAddr, port: u16) -> LocalMedia {
        let session_id = u64::from(rand::random::<u32>());
        LocalMedia {
            addr,
            port,
            session_id,
            version: session_id,
        }
    }

    /// An offer listing `formats` in order.
    pub fn offer(&mut self, formats: &[Format], direction: Direction) -> String {
        self.write(formats, direction)
    }

    /// Our answer to a peer's offer: the chosen codec, and telephone-event if
    /// both sides take it, with the peer's payload type.
    pub fn answer(&mut self, remote: &RemoteMedia, ours: &[Format]) -> String {
        let mut formats = vec![Format::Audio(remote.codec)];
        let we_take_dtmf = ours.iter().any(|f| matches!(f, Format::TelephoneEvent(_)));
        if let (Some(pt), true) = (remote.dtmf_pt, we_take_dtmf) {
            formats.push(Format::TelephoneEvent(pt));
        }
        self.write(&formats, Direction::answer_to(remote.direction))
    }

    fn write(&mut self, formats: &[Format], direction: Direction) -> String {
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
            "m=audio {} RTP/AVP {}\r\n",
            self.port,
            pts.join(" ")
        ));
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
    Ok(RemoteMedia {
        addr,
        codec,
        dtmf_pt,
        direction,
    })
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
        };
        let mut local = LocalMedia::new("127.0.0.1".parse().unwrap(), 4000);
        let a = local.answer(&remote, &OURS);
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
        let answer = local.answer(&r, &ours);
        assert!(
            answer.contains("m=audio 20000 RTP/AVP 9 101\r\n"),
            "{answer}"
        );
        assert!(answer.contains("a=rtpmap:9 G722/8000\r\n"), "{answer}");
    }
}
