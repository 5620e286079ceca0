//! Who may call us: an INVITE that starts a dialog is taken only from an address of a
//! configured carrier — one its trunks' hosts resolved to (at start and at every OPTIONS ping),
//! or one inside its profile's `inbound_allow` networks. Anything else is answered 403 by the
//! request loop before any dialog state exists (`crate::sip::ua`).
//!
//! Must not: resolve names or do other I/O (the user agent tells it what the trunks resolved
//! to), or decide where an admitted call goes.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use rsipstack::sip::prelude::HeadersExt;

use crate::config::Profile;

/// The addresses each carrier's inbound INVITEs may come from.
#[derive(Debug, Default)]
pub struct InboundGate {
    /// `inbound_allow` networks, with their profile's name.
    allow: Vec<(IpNet, String)>,
    /// What each trunk's host resolved to last, by `profile/trunk`: (profile, addresses).
    resolved: parking_lot::RwLock<HashMap<String, (String, Vec<IpAddr>)>>,
}

impl InboundGate {
    pub fn new(profiles: &[Profile]) -> InboundGate {
        InboundGate {
            allow: profiles
                .iter()
                .flat_map(|p| p.inbound_allow.iter().map(|n| (*n, p.name.clone())))
                .collect(),
            resolved: Default::default(),
        }
    }

    /// What one trunk's host resolves to now (replaces what it resolved to before).
    pub fn note_resolved(&self, profile: &str, trunk_key: &str, addrs: Vec<IpAddr>) {
        let addrs = addrs.into_iter().map(|a| a.to_canonical()).collect();
        self.resolved
            .write()
            .insert(trunk_key.to_string(), (profile.to_string(), addrs));
    }

    /// The profile whose carrier `source` belongs to, if any.
    pub fn profile_for(&self, source: IpAddr) -> Option<String> {
        let source = source.to_canonical();
        if let Some((_, name)) = self.allow.iter().find(|(net, _)| net.contains(&source)) {
            return Some(name.clone());
        }
        self.resolved
            .read()
            .values()
            .find(|(_, addrs)| addrs.contains(&source))
            .map(|(name, _)| name.clone())
    }
}

/// The address a request came from, as the transport wrote it into the top Via: its
/// `received` parameter, else the sent-by host when that is an address (the transport adds
/// `received` whenever the sent-by differs from the source).
pub fn source_of(req: &rsipstack::sip::Request) -> Option<IpAddr> {
    use rsipstack::sip::headers::untyped::ToTypedHeader;
    let via = req.via_header().ok()?.typed().ok()?;
    if let Some(Ok(ip)) = via.received() {
        return Some(ip);
    }
    match &via.uri.host_with_port.host {
        rsipstack::sip::Host::IpAddr(ip) => Some(*ip),
        rsipstack::sip::Host::Domain(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostPort;

    fn profile(name: &str, allow: &[&str]) -> Profile {
        let mut p = Profile::new(name, HostPort::new("carrier.example", 5060));
        p.inbound_allow = allow.iter().map(|a| a.parse().unwrap()).collect();
        p
    }

    #[test]
    fn allowed_networks_and_resolved_trunk_addresses_let_a_carrier_in() {
        let gate = InboundGate::new(&[
            profile("acme", &["203.0.113.0/24"]),
            profile("beta", &["2001:db8::/32"]),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            gate.profile_for(ip("203.0.113.77")).as_deref(),
            Some("acme")
        );
        assert_eq!(gate.profile_for(ip("2001:db8::5")).as_deref(), Some("beta"));
        // An IPv4 peer seen on an IPv6 socket.
        assert_eq!(
            gate.profile_for(ip("::ffff:203.0.113.9")).as_deref(),
            Some("acme")
        );
        assert_eq!(gate.profile_for(ip("198.51.100.7")), None);
        gate.note_resolved("beta", "beta/beta", vec![ip("198.51.100.7")]);
        assert_eq!(
            gate.profile_for(ip("198.51.100.7")).as_deref(),
            Some("beta")
        );
        // A new resolution replaces the old addresses.
        gate.note_resolved("beta", "beta/beta", vec![ip("198.51.100.8")]);
        assert_eq!(gate.profile_for(ip("198.51.100.7")), None);
        assert_eq!(
            gate.profile_for(ip("127.0.0.1")),
            None,
            "loopback is not special"
        );
    }

    #[test]
    fn the_source_is_the_vias_received_else_its_sent_by_address() {
        let parse = |via: &str| {
            let text = format!(
                "INVITE sip:1@127.0.0.1 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@b>;tag=1\r\n\
                 To: <sip:1@127.0.0.1>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            );
            let msg = rsipstack::sip::SipMessage::try_from(text.as_str()).unwrap();
            match msg {
                rsipstack::sip::SipMessage::Request(r) => source_of(&r),
                _ => None,
            }
        };
        assert_eq!(
            parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;received=198.51.100.7"),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(
            parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1"),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(parse("SIP/2.0/UDP pbx.example:5060;branch=z9hG4bK1"), None);
    }
}
