//! The plan of one leg: who we call, as whom, through where, offering which codecs —
//! everything decided before the INVITE goes out.
//!
//! It reads the request, the profile and the trunk this try goes to, and resolves the first
//! hop (RFC 3263, through the user agent's resolver) into an ordered list of targets, aiming
//! at the first; a failed target moves on with [`Plan::next_target`], a failed trunk gets a
//! new plan for the next trunk. It must not send anything, hold call state, or decide what
//! happens once the call is up.

use std::net::SocketAddr;

use rsipstack::sip::uri::ParamsExt;
use rsipstack::sip::Header;
use rsipstack::transport::SipAddr;

use super::{CallError, CallRequest};
use crate::config::{CodecName, Transport, Trunk};
use crate::media::g711::Codec;
use crate::sip::dns::Target;
use crate::sip::sdp::{Format, TELEPHONE_EVENT_PT};
use crate::sip::ua::{credential, host_port, sip_addr, UserAgent};
use crate::sip::SipError;

/// Who we call, as whom, and through where: everything decided before the
/// INVITE goes out.
pub(super) struct Plan {
    pub(super) callee: rsipstack::sip::Uri,
    pub(super) caller: rsipstack::sip::Uri,
    pub(super) display_name: Option<String>,
    /// Our Contact, for the current target's transport.
    pub(super) contact: rsipstack::sip::Uri,
    /// Where the INVITE goes: the current target.
    pub(super) destination: Option<SipAddr>,
    /// The current target's address (chooses the local address we advertise).
    pub(super) peer: Option<SocketAddr>,
    /// Every address the first hop resolved to, in the order to try them (SRV priority, then
    /// weight); `destination`, `peer` and `contact` aim at `targets[current]`.
    pub(super) targets: Vec<Target>,
    current: usize,
    /// The user part of our Contact.
    contact_user: String,
    pub(super) credential: Option<rsipstack::dialog::authenticate::Credential>,
    pub(super) headers: Vec<Header>,
    pub(super) formats: Vec<Format>,
}

impl Plan {
    /// Whether `req` goes through its profile's trunks (a phone number with a profile), so
    /// that a plan is made per trunk; a SIP URI goes where it says.
    pub(super) fn uses_trunks(req: &CallRequest) -> bool {
        let dest = req.destination.trim();
        req.profile.is_some() && !(dest.starts_with("sip:") || dest.starts_with("sips:"))
    }

    /// The plan of `req` through `trunk` (one of its profile's trunks; `None` for a SIP URI).
    pub(super) async fn new(
        ua: &UserAgent,
        req: &CallRequest,
        trunk: Option<&Trunk>,
    ) -> Result<Plan, CallError> {
        let dest = req.destination.trim();
        let profile = req.profile.as_ref();
        let is_uri = dest.starts_with("sip:") || dest.starts_with("sips:");
        let trunk = trunk.or_else(|| profile.map(|p| p.primary()));
        let (callee, targets) = if is_uri {
            let uri = rsipstack::sip::Uri::try_from(dest)
                .map_err(|_| CallError::BadDestination(dest.to_string()))?;
            let transport = match uri.transport() {
                Some(rsipstack::sip::Transport::Udp) => Some(Transport::Udp),
                Some(rsipstack::sip::Transport::Tcp) => Some(Transport::Tcp),
                Some(rsipstack::sip::Transport::Tls) => Some(Transport::Tls),
                _ if dest.starts_with("sips:") => Some(Transport::Tls),
                _ => None,
            };
            let host = match &uri.host_with_port.host {
                rsipstack::sip::Host::IpAddr(ip) => ip.to_string(),
                rsipstack::sip::Host::Domain(d) => d.to_string(),
            };
            let port = uri.host_with_port.port.as_ref().map(|p| p.0);
            let targets = ua.resolve(&host, port, transport).await?;
            (uri, targets)
        } else {
            if !is_phone_number(dest) {
                return Err(CallError::BadDestination(dest.to_string()));
            }
            let p = trunk.ok_or_else(|| CallError::NoProfile(dest.to_string()))?;
            let number = dest.replace([' ', '-', '(', ')', '.'], "");
            let uri = crate::sip::ua::trunk_uri(p, Some(&number))?;
            (uri, ua.trunk_targets(p).await?)
        };
        let Some(first) = targets.first() else {
            return Err(SipError::Resolve {
                host: callee.to_string(),
                reason: "no address".into(),
            }
            .into());
        };

        let user = req
            .caller_id
            .clone()
            .or_else(|| profile.and_then(|p| p.caller_id.clone()))
            .or_else(|| profile.and_then(|p| p.from_user.clone()))
            .or_else(|| profile.and_then(|p| p.username.clone()))
            .unwrap_or_else(|| "outdial".to_string());
        let contact_user = uri_user(
            profile
                .and_then(|p| p.username.as_deref())
                .unwrap_or("outdial"),
        );
        let (contact, contact_addr) = contact_for(ua, &contact_user, first)?;
        let domain = profile
            .and_then(|p| p.from_domain.clone().or_else(|| p.realm.clone()))
            .or_else(|| trunk.map(|t| t.proxy.host.clone()))
            .unwrap_or_else(|| contact_addr.ip().to_string());
        let caller = parse_uri(&format!("sip:{}@{}", uri_user(&user), domain))?;
        let destination = Some(sip_addr(first));
        let peer = Some(first.addr);

        let mut headers = Vec::new();
        let id_domain = profile
            .and_then(|p| p.from_domain.clone())
            .or_else(|| trunk.map(|t| host_port(&t.proxy)))
            .unwrap_or_else(|| domain.clone());
        let pai = req
            .asserted_identity
            .as_ref()
            .or_else(|| profile.and_then(|p| p.pai.as_ref()));
        let ppi = profile.and_then(|p| p.ppi.as_ref());
        for (name, value) in [("P-Asserted-Identity", pai), ("P-Preferred-Identity", ppi)] {
            if let Some(v) = value {
                let v = if v.contains(':') {
                    format!("<{v}>")
                } else {
                    format!("<sip:{}@{id_domain}>", uri_user(v))
                };
                headers.push(Header::Other(name.into(), v));
            }
        }
        for (name, value) in &req.headers {
            headers.push(Header::Other(name.clone(), value.clone()));
        }
        let formats = profile_formats(profile);

        Ok(Plan {
            callee,
            caller,
            display_name: req
                .caller_id
                .clone()
                .or_else(|| profile.and_then(|p| p.caller_id.clone())),
            contact,
            destination,
            peer,
            targets,
            current: 0,
            contact_user,
            credential: profile.and_then(credential),
            headers,
            formats,
        })
    }

    /// Whether a target is left after the current one.
    pub(super) fn has_next_target(&self) -> bool {
        self.current + 1 < self.targets.len()
    }

    /// The target the plan aims at now.
    pub(super) fn target(&self) -> Option<&Target> {
        self.targets.get(self.current)
    }

    /// After a failure at the current target: aims at the next one (destination, peer and
    /// Contact follow it) and returns it, or `None` when every target was tried.
    pub(super) fn next_target(&mut self, ua: &UserAgent) -> Result<Option<&Target>, CallError> {
        let Some(next) = self.targets.get(self.current + 1) else {
            return Ok(None);
        };
        let (contact, _) = contact_for(ua, &self.contact_user, next)?;
        self.contact = contact;
        self.destination = Some(sip_addr(next));
        self.peer = Some(next.addr);
        self.current += 1;
        Ok(self.targets.get(self.current))
    }

    pub(super) fn preferred_codec(&self) -> Codec {
        self.formats
            .iter()
            .find_map(|f| match f {
                Format::Audio(c) => Some(*c),
                Format::TelephoneEvent(_) => None,
            })
            .unwrap_or(Codec::Pcmu)
    }
}

/// The formats a leg of `profile` offers (or takes from an offer): its codecs, else PCMU,
/// PCMA and telephone-event.
pub(super) fn profile_formats(profile: Option<&crate::config::Profile>) -> Vec<Format> {
    profile.map(|p| formats_of(&p.codecs)).unwrap_or_else(|| {
        formats_of(&[CodecName::Pcmu, CodecName::Pcma, CodecName::TelephoneEvent])
    })
}

/// Our Contact for a dialog the peer at `peer` started over `transport` (an inbound call).
pub(super) fn answer_contact(
    ua: &UserAgent,
    user: &str,
    transport: Transport,
    peer: SocketAddr,
) -> Result<rsipstack::sip::Uri, CallError> {
    let target = Target {
        addr: peer,
        transport,
        host: peer.ip().to_string(),
    };
    Ok(contact_for(ua, &uri_user(user), &target)?.0)
}

/// The formats a profile's codecs offer, in its order, except that G.722 (listed only) comes
/// right after the last G.711 codec: a peer that takes the first codec it knows of ours still
/// gets G.711, as from any G.711 trunk, and one that prefers wideband can pick G.722.
fn formats_of(codecs: &[CodecName]) -> Vec<Format> {
    let mut formats = Vec::with_capacity(codecs.len());
    for c in codecs {
        match c {
            CodecName::Pcmu => formats.push(Format::Audio(Codec::Pcmu)),
            CodecName::Pcma => formats.push(Format::Audio(Codec::Pcma)),
            CodecName::TelephoneEvent => formats.push(Format::TelephoneEvent(TELEPHONE_EVENT_PT)),
            #[cfg(feature = "g722")]
            CodecName::G722 => {}
        }
    }
    #[cfg(feature = "g722")]
    if codecs.contains(&CodecName::G722) {
        let after_g711 = formats
            .iter()
            .rposition(|f| matches!(f, Format::Audio(c) if c.is_g711()))
            .map_or(0, |i| i + 1);
        formats.insert(after_g711, Format::Audio(Codec::G722));
    }
    formats
}

/// Digits with an optional leading `+` (spaces, dashes, dots and brackets
/// allowed as separators), or `*`/`#` service codes.
pub fn is_phone_number(s: &str) -> bool {
    let body = s.strip_prefix('+').unwrap_or(s);
    let mut digits = 0;
    for c in body.chars() {
        match c {
            '0'..='9' | '*' | '#' => digits += 1,
            ' ' | '-' | '(' | ')' | '.' => {}
            _ => return false,
        }
    }
    (1..=32).contains(&digits)
}

/// Escapes what a SIP user part may not hold raw (`#` in service codes).
fn uri_user(user: &str) -> String {
    user.replace('#', "%23")
}

fn parse_uri(text: &str) -> Result<rsipstack::sip::Uri, SipError> {
    rsipstack::sip::Uri::try_from(text).map_err(|e| SipError::BadUri {
        uri: text.to_string(),
        reason: e.to_string(),
    })
}

/// Our Contact toward `target` (the address of its transport, else UDP's), and that address.
fn contact_for(
    ua: &UserAgent,
    user: &str,
    target: &Target,
) -> Result<(rsipstack::sip::Uri, SocketAddr), CallError> {
    let peer = Some(target.addr);
    let addr = ua
        .contact_addr(target.transport, peer)
        .or_else(|| ua.contact_addr(Transport::Udp, peer))
        .ok_or(SipError::NoTransport)?;
    Ok((parse_uri(&format!("sip:{user}@{addr}"))?, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_numbers() {
        for ok in [
            "12025550101",
            "+1 (202) 555-0101",
            "*67",
            "911",
            "+44.20.7946.0018",
            "#31#",
        ] {
            assert!(is_phone_number(ok), "{ok}");
        }
        for bad in [
            "",
            "+",
            "abc",
            "12a3",
            "sip:x@y",
            "1234567890123456789012345678901234",
        ] {
            assert!(!is_phone_number(bad), "{bad}");
        }
    }

    #[test]
    fn profile_codecs_become_offered_formats() {
        let f = formats_of(&[CodecName::Pcma, CodecName::TelephoneEvent, CodecName::Pcmu]);
        assert_eq!(
            f,
            [
                Format::Audio(Codec::Pcma),
                Format::TelephoneEvent(TELEPHONE_EVENT_PT),
                Format::Audio(Codec::Pcmu)
            ]
        );
    }

    #[cfg(feature = "g722")]
    #[test]
    fn g722_is_offered_after_g711_only_when_listed() {
        let f = formats_of(&[
            CodecName::G722,
            CodecName::Pcmu,
            CodecName::Pcma,
            CodecName::TelephoneEvent,
        ]);
        assert_eq!(
            f,
            [
                Format::Audio(Codec::Pcmu),
                Format::Audio(Codec::Pcma),
                Format::Audio(Codec::G722),
                Format::TelephoneEvent(TELEPHONE_EVENT_PT)
            ]
        );
        assert!(!formats_of(&CodecName::ALL).contains(&Format::Audio(Codec::G722)));
        assert_eq!(formats_of(&[CodecName::G722]), [Format::Audio(Codec::G722)]);
    }
}
