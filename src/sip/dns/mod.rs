//! How trunk hosts become addresses: RFC 3263 (NAPTR → SRV → A/AAAA) through one resolver
//! per process, owned by the [`UserAgent`](super::UserAgent) and shared by every call,
//! registration, OPTIONS ping and recovery BYE.
//!
//! [`core`] decides which questions to ask and orders the answers (sans-IO); this driver
//! asks them with hickory-resolver and nothing more. Answers are cached by hickory's cache
//! for their TTL (so a second call within the TTL asks nothing, and a call after it asks
//! again); a "no such record" answer is cached for its SOA's negative TTL, held between
//! [`NEGATIVE_MIN_TTL`] and [`NEGATIVE_MAX_TTL`]; failed lookups are not cached. The name
//! servers are those of `sip.dns_servers`, or the system's (`/etc/resolv.conf`); the hosts
//! file answers A/AAAA first either way.
//!
//! What it must not do: order or filter records itself (that is the core's), pick a target for
//! a call (the caller walks the list), or block: every lookup is bounded by
//! [`LOOKUP_TIMEOUT`] per try.

pub mod core;

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::config::{
    LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use tracing::{debug, warn};

use self::core::{Answer, Naptr, Poll, Question, RecordKind, Resolution, Srv};
pub use self::core::{Request, Target};
use super::SipError;
use crate::config::Transport;

/// Shortest time a "no such record" answer is kept (also when it carries no SOA).
pub const NEGATIVE_MIN_TTL: Duration = Duration::from_secs(5);
/// Longest time a "no such record" answer is kept, whatever its SOA says.
pub const NEGATIVE_MAX_TTL: Duration = Duration::from_secs(30);
/// How long one try of one lookup may take (two tries per server).
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// The process's DNS resolver for SIP hosts.
pub struct DnsResolver {
    /// `None` when no name server is known (the system's settings could not be read): names
    /// then fail with `unavailable`, IP addresses still work.
    resolver: Option<TokioResolver>,
    /// Why `resolver` is `None`.
    unavailable: String,
}

impl DnsResolver {
    /// A resolver asking `servers` (IP:port), or the system's name servers when empty.
    pub fn new(servers: &[SocketAddr]) -> Result<DnsResolver, SipError> {
        let (config, mut opts) = if servers.is_empty() {
            match hickory_resolver::system_conf::read_system_conf() {
                Ok(system) => system,
                Err(e) => {
                    let unavailable = format!(
                        "no DNS server: cannot read the system's resolver settings ({e}); \
                         set sip.dns_servers"
                    );
                    warn!("{unavailable}");
                    return Ok(DnsResolver {
                        resolver: None,
                        unavailable,
                    });
                }
            }
        } else {
            let mut config = ResolverConfig::from_name_servers(Vec::new());
            for s in servers {
                let mut ns = NameServerConfig::udp_and_tcp(s.ip());
                for c in &mut ns.connections {
                    c.port = s.port();
                }
                config.add_name_server(ns);
            }
            (config, ResolverOpts::default())
        };
        opts.use_hosts_file = ResolveHosts::Always;
        opts.ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
        opts.negative_min_ttl = Some(NEGATIVE_MIN_TTL);
        opts.negative_max_ttl = Some(NEGATIVE_MAX_TTL);
        opts.timeout = LOOKUP_TIMEOUT;
        opts.attempts = 2;
        let resolver = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| SipError::Resolve {
                host: "trunk hosts".into(),
                reason: format!("cannot start the DNS resolver: {e}"),
            })?;
        Ok(DnsResolver {
            resolver: Some(resolver),
            unavailable: String::new(),
        })
    }

    /// The targets for `request`, in the order to try them; `supported` are the transports
    /// we can send on, preferred first (used when DNS chooses the transport).
    pub async fn resolve(
        &self,
        request: &Request,
        supported: &[Transport],
    ) -> Result<Vec<Target>, SipError> {
        let mut r = Resolution::new(request.clone(), supported, |total| {
            rand::random_range(0..=total)
        });
        loop {
            match r.poll() {
                Poll::Ask(q) => {
                    let answer = self.ask(&q).await;
                    r.answer(answer);
                }
                Poll::Done(Ok(targets)) => {
                    debug!(host = %request.host, ?targets, "resolved");
                    return Ok(targets);
                }
                Poll::Done(Err(reason)) => {
                    return Err(SipError::Resolve {
                        host: describe(request),
                        reason,
                    })
                }
            }
        }
    }

    async fn ask(&self, q: &Question) -> Answer {
        let Some(resolver) = &self.resolver else {
            return Answer::Failed(self.unavailable.clone());
        };
        let name = q.name.as_str();
        match q.kind {
            RecordKind::Naptr => match resolver.lookup(name, RecordType::NAPTR).await {
                Ok(lookup) => Answer::Naptr(
                    lookup
                        .answers()
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::NAPTR(n) => Some(Naptr {
                                order: n.order,
                                preference: n.preference,
                                flags: String::from_utf8_lossy(&n.flags).into_owned(),
                                services: String::from_utf8_lossy(&n.services).into_owned(),
                                replacement: n.replacement.to_ascii(),
                            }),
                            _ => None,
                        })
                        .collect(),
                ),
                Err(e) => negative(e, Answer::Naptr(Vec::new())),
            },
            RecordKind::Srv => match resolver.lookup(name, RecordType::SRV).await {
                Ok(lookup) => Answer::Srv(
                    lookup
                        .answers()
                        .iter()
                        .filter_map(|r| match &r.data {
                            RData::SRV(s) => Some(Srv {
                                priority: s.priority,
                                weight: s.weight,
                                port: s.port,
                                target: s.target.to_ascii(),
                            }),
                            _ => None,
                        })
                        .collect(),
                ),
                Err(e) => negative(e, Answer::Srv(Vec::new())),
            },
            RecordKind::Address => match resolver.lookup_ip(name).await {
                Ok(lookup) => Answer::Address(lookup.iter().collect()),
                Err(e) => negative(e, Answer::Address(Vec::new())),
            },
        }
    }
}

/// "No such name" and "no such record" are answers (empty); anything else failed.
fn negative(e: NetError, empty: Answer) -> Answer {
    if e.is_no_records_found() || e.is_nx_domain() {
        empty
    } else {
        Answer::Failed(e.to_string())
    }
}

/// `host`, `host:port`, with the transport when one was given: how errors name a request.
fn describe(r: &Request) -> String {
    let host = if r.host.contains(':') && !r.host.starts_with('[') {
        format!("[{}]", r.host)
    } else {
        r.host.clone()
    };
    let mut text = match r.port {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    if let Some(t) = r.transport {
        text.push_str(&format!(" ({t})"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_name_servers_addresses_work_and_names_fail_clearly() {
        let dns = DnsResolver {
            resolver: None,
            unavailable: "no DNS server: test".into(),
        };
        let request = |host: &str, port| Request {
            host: host.into(),
            port,
            transport: None,
        };
        let ip = dns
            .resolve(&request("192.0.2.9", None), &[Transport::Tcp])
            .await
            .expect("an IP address needs no DNS");
        assert_eq!(ip[0].addr, "192.0.2.9:5060".parse::<SocketAddr>().unwrap());
        assert_eq!(ip[0].transport, Transport::Tcp);
        let err = dns
            .resolve(&request("pbx.example", Some(5070)), &[Transport::Udp])
            .await
            .expect_err("a name needs a server");
        assert_eq!(
            err.to_string(),
            "cannot resolve pbx.example:5070: A/AAAA pbx.example.: no DNS server: test"
        );
    }
}
