//! Who may call us: an INVITE that starts a dialog is taken only from an address of a
//! configured carrier — one its trunks' hosts resolved to (at start and at every OPTIONS ping),
//! or one inside its profile's `inbound_allow` networks. Anything else is answered 403 by the
//! request loop before any dialog state exists (`crate::sip::ua`).
//!
//! An admitted INVITE becomes an [`IncomingCall`]: handed to whoever routes inbound calls
//! (`outdial serve`'s router, `crate::dialer::inbound`), or answered 480 when nothing routes
//! them. [`called_number`] and [`caller_number`] read the numbers it is routed by.
//!
//! Must not: resolve names or do other I/O (the user agent tells it what the trunks resolved
//! to, and the router answers the call), or decide where an admitted call goes.

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

/// An INVITE from a carrier, admitted by the gate, that no one has answered yet. Whoever
/// takes it must answer it: [`crate::call::Call::answer`], or [`IncomingCall::refuse`].
pub struct IncomingCall {
    /// The INVITE's server transaction.
    pub tx: rsipstack::transaction::Transaction,
    /// The profile of the carrier it came from.
    pub profile: String,
    /// Where it came from.
    pub source: IpAddr,
}

impl IncomingCall {
    pub fn request(&self) -> &rsipstack::sip::Request {
        &self.tx.original
    }

    /// Answers the INVITE with a final error (480 when nothing takes the call).
    pub async fn refuse(mut self, code: rsipstack::sip::StatusCode) {
        if let Err(e) = self.tx.reply(code).await {
            tracing::debug!(error = %e, "could not refuse an inbound INVITE");
        }
    }
}

impl std::fmt::Debug for IncomingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingCall")
            .field(
                "call_id",
                &self
                    .tx
                    .original
                    .call_id_header()
                    .map(|h| h.value().to_string())
                    .ok(),
            )
            .field("profile", &self.profile)
            .field("source", &self.source)
            .finish()
    }
}

/// The number an inbound INVITE called (the DID), in E.164 form, read where the carrier's
/// profile says: the Request-URI's user part or the To header's.
pub fn called_number(
    req: &rsipstack::sip::Request,
    from: crate::config::InboundNumber,
) -> Option<String> {
    use rsipstack::sip::headers::untyped::ToTypedHeader;
    let user = match from {
        crate::config::InboundNumber::RequestUri => req.uri.user().map(str::to_string),
        crate::config::InboundNumber::To => {
            let to = req.to_header().ok()?.typed().ok()?;
            to.uri.user().map(str::to_string)
        }
    }?;
    e164(&user)
}

/// The caller's number, in E.164 form: the P-Asserted-Identity a trusted carrier sets, else
/// the From header's user part; `None` for an anonymous or non-numeric caller.
pub fn caller_number(req: &rsipstack::sip::Request) -> Option<String> {
    use rsipstack::sip::headers::untyped::ToTypedHeader;
    let pai = req.headers.iter().find_map(|h| match h {
        rsipstack::sip::Header::PAssertedIdentity(value) => {
            let v = value.value().trim();
            let inner = v
                .find('<')
                .and_then(|a| v[a + 1..].find('>').map(|b| &v[a + 1..a + 1 + b]))
                .unwrap_or(v);
            let uri = rsipstack::sip::Uri::try_from(inner).ok()?;
            uri.user().and_then(e164)
        }
        _ => None,
    });
    pai.or_else(|| {
        let from = req.from_header().ok()?.typed().ok()?;
        from.uri.user().and_then(e164)
    })
}

/// A dialed or presented number in E.164 form: visual separators dropped; a number written
/// without `+` (or with the `00` international prefix) is taken as country code first, as
/// carriers send E.164 without the `+`. `None` when it is not such a number (a name,
/// `anonymous`, a service code, a national number starting with 0).
pub fn e164(user: &str) -> Option<String> {
    let trimmed = user.trim();
    let body = match trimmed.strip_prefix('+') {
        Some(rest) => rest,
        None => trimmed.strip_prefix("00").unwrap_or(trimmed),
    };
    let digits: String = body
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let valid = (2..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0');
    valid.then(|| format!("+{digits}"))
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

    fn invite(headers: &str) -> rsipstack::sip::Request {
        let text = format!(
            "INVITE sip:12025550100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1\r\n\
             {headers}Call-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        match rsipstack::sip::SipMessage::try_from(text.as_str()).unwrap() {
            rsipstack::sip::SipMessage::Request(r) => r,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_did_comes_from_the_request_uri_or_the_to_header() {
        use crate::config::InboundNumber;
        let req =
            invite("From: <sip:+1 202 555 0199@carrier>;tag=1\r\nTo: <sip:+442079460018@us>\r\n");
        assert_eq!(
            called_number(&req, InboundNumber::RequestUri).as_deref(),
            Some("+12025550100")
        );
        assert_eq!(
            called_number(&req, InboundNumber::To).as_deref(),
            Some("+442079460018")
        );
    }

    #[test]
    fn the_caller_is_the_asserted_identity_else_the_from_user() {
        let req = invite("From: <sip:0049301234@carrier>;tag=1\r\nTo: <sip:1@us>\r\n");
        assert_eq!(caller_number(&req).as_deref(), Some("+49301234"));
        let req = invite(
            "From: \"Anonymous\" <sip:anonymous@anonymous.invalid>;tag=1\r\nTo: <sip:1@us>\r\n\
             P-Asserted-Identity: <sip:+12025550142@carrier;user=phone>\r\n",
        );
        assert_eq!(caller_number(&req).as_deref(), Some("+12025550142"));
        let req = invite("From: <sip:anonymous@anonymous.invalid>;tag=1\r\nTo: <sip:1@us>\r\n");
        assert_eq!(caller_number(&req), None);
    }

    #[test]
    fn numbers_become_e164_or_nothing() {
        assert_eq!(e164("+1 (202) 555-0100").as_deref(), Some("+12025550100"));
        assert_eq!(e164("12025550100").as_deref(), Some("+12025550100"));
        assert_eq!(e164("0033142685300").as_deref(), Some("+33142685300"));
        for bad in [
            "",
            "+",
            "anonymous",
            "030123456",
            "*67",
            "1234567890123456",
            "12%2334",
        ] {
            assert_eq!(e164(bad), None, "{bad}");
        }
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
