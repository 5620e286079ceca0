//! RFC 3263 §4 as a sans-IO state machine: which DNS questions to ask for a SIP host, and the
//! ordered list of targets (address, port, transport) its answers make.
//!
//! [`Resolution::poll`] returns the next [`Question`] or, once nothing is left to ask, the
//! targets; [`Resolution::answer`] takes the answer to the question just asked. The rules:
//! an IP address, or a host with an explicit port, is used as it is (A/AAAA only); a host
//! whose transport was given gets the SRV records of that transport (`_sip._udp`,
//! `_sip._tcp`, `_sips._tcp`); otherwise NAPTR first (order, then preference; only the
//! services of transports we can use), then SRV of each supported transport when there is
//! no NAPTR; and the host's own A/AAAA records on the transport's default port when there
//! is no SRV either. SRV records are ordered by priority, and within a priority by RFC 2782's
//! weighted random draw (the draw is a function given to [`Resolution::new`], so tests pick
//! it); each SRV target's addresses follow in their order.
//!
//! What it must not do: touch the network, read the clock, cache, or draw randomness of its
//! own. The driver ([`super::DnsResolver`]) asks the questions and caches the answers.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use crate::config::Transport;

/// Most questions one resolution asks (NAPTR, a few SRV names, an A/AAAA per SRV target).
pub const MAX_QUESTIONS: usize = 32;

/// Where one attempt may send its request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    pub transport: Transport,
    /// The host name this address came from (the SRV target, or the host itself), for logs.
    pub host: String,
}

/// What to resolve: a SIP host, the port if one was written, the transport if one was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub host: String,
    pub port: Option<u16>,
    pub transport: Option<Transport>,
}

/// The kind of record a [`Question`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Naptr,
    Srv,
    /// A, then AAAA when there is no A record.
    Address,
}

/// One DNS question for the driver to ask (names are fully qualified, with the final dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    pub name: String,
    pub kind: RecordKind,
}

/// A NAPTR record, its text fields as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Naptr {
    pub order: u16,
    pub preference: u16,
    pub flags: String,
    pub services: String,
    pub replacement: String,
}

/// An SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// The answer to the last [`Question`]. An empty list is "no such records" (NXDOMAIN or no
/// data); `Failed` is a lookup that got no usable answer (timeout, refused, server failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Naptr(Vec<Naptr>),
    Srv(Vec<Srv>),
    Address(Vec<IpAddr>),
    Failed(String),
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    Ask(Question),
    /// Nothing left to ask: the targets in the order to try them, or why there are none.
    Done(Result<Vec<Target>, String>),
}

/// Where the resolution stands (each step's data travels in the fields below).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// NAPTR of the host, then SRV of what it points at.
    Naptr,
    /// SRV names queued in `srv`, one at a time.
    Srv,
    /// Host names queued in `hosts`, one at a time.
    Hosts,
    Done,
}

/// One resolution of one [`Request`]. `draw(total)` returns a number in `0..=total` for the
/// weighted SRV order (uniformly at random in production).
pub struct Resolution<D: FnMut(u32) -> u32> {
    request: Request,
    /// Transports we can send on, in the order we prefer them when DNS does not say.
    supported: Vec<Transport>,
    draw: D,
    step: Step,
    /// SRV names still to ask, with the transport each stands for.
    srv: VecDeque<(String, Transport)>,
    /// Host names still to ask A/AAAA for, with the port and transport they serve.
    hosts: VecDeque<(String, u16, Transport)>,
    /// The host's own A/AAAA on the transport's default port, used when no SRV record
    /// answers; dropped once one does (even a lone ".", "no service here").
    fallback: Option<(String, u16, Transport)>,
    asked: Option<Question>,
    targets: Vec<Target>,
    /// Lookups that failed, for the error when no target is found.
    failures: Vec<String>,
    /// Questions asked so far, at most [`MAX_QUESTIONS`].
    questions: usize,
}

impl<D: FnMut(u32) -> u32> Resolution<D> {
    pub fn new(request: Request, supported: &[Transport], draw: D) -> Self {
        let mut r = Resolution {
            request,
            supported: supported.to_vec(),
            draw,
            step: Step::Done,
            srv: VecDeque::new(),
            hosts: VecDeque::new(),
            fallback: None,
            asked: None,
            targets: Vec::new(),
            failures: Vec::new(),
            questions: 0,
        };
        r.start();
        r
    }

    fn start(&mut self) {
        let host = self.request.host.trim_end_matches('.').to_string();
        let given = self.request.transport;
        // An IP address: no DNS at all (RFC 3263 §4.1 and §4.2).
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            let transport = given.unwrap_or_else(|| self.first_supported());
            let port = self.request.port.unwrap_or(transport.default_port());
            self.targets.push(Target {
                addr: SocketAddr::new(ip, port),
                transport,
                host,
            });
            self.step = Step::Done;
            return;
        }
        // An explicit port: A/AAAA only.
        if let Some(port) = self.request.port {
            let transport = given.unwrap_or_else(|| self.first_supported());
            self.hosts.push_back((host, port, transport));
            self.step = Step::Hosts;
            return;
        }
        // A transport but no port: SRV of that transport, else A/AAAA.
        if let Some(t) = given {
            self.srv.push_back((srv_name(&host, t), t));
            self.fallback = Some((host, t.default_port(), t));
            self.step = Step::Srv;
            return;
        }
        self.step = Step::Naptr;
    }

    fn first_supported(&self) -> Transport {
        self.supported.first().copied().unwrap_or(Transport::Udp)
    }

    /// The next question to ask, or the result.
    pub fn poll(&mut self) -> Poll {
        loop {
            if let Some(q) = &self.asked {
                return Poll::Ask(q.clone());
            }
            let question = match self.step {
                Step::Naptr => Question {
                    name: fqdn(&self.request.host),
                    kind: RecordKind::Naptr,
                },
                Step::Srv => match self.srv.front() {
                    Some((name, _)) => Question {
                        name: fqdn(name),
                        kind: RecordKind::Srv,
                    },
                    None => {
                        // No SRV answered: the host itself on its transport's default port.
                        if let Some(f) = self.fallback.take() {
                            self.hosts.push_back(f);
                        }
                        self.step = Step::Hosts;
                        continue;
                    }
                },
                Step::Hosts => match self.hosts.front() {
                    Some((name, _, _)) => Question {
                        name: fqdn(name),
                        kind: RecordKind::Address,
                    },
                    None => {
                        self.step = Step::Done;
                        continue;
                    }
                },
                Step::Done => return Poll::Done(self.result()),
            };
            if self.questions >= MAX_QUESTIONS {
                // A zone with hundreds of SRV targets: what was found so far is plenty.
                self.failures
                    .push(format!("stopped after {MAX_QUESTIONS} DNS questions"));
                self.step = Step::Done;
                continue;
            }
            self.questions += 1;
            self.asked = Some(question);
        }
    }

    fn result(&self) -> Result<Vec<Target>, String> {
        if !self.targets.is_empty() {
            return Ok(self.targets.clone());
        }
        if self.failures.is_empty() {
            Err("no DNS record gives an address for it".to_string())
        } else {
            Err(self.failures.join("; "))
        }
    }

    /// The answer to the question [`Resolution::poll`] returned last. An answer when nothing
    /// was asked, or of another kind than asked, counts as a failed lookup.
    pub fn answer(&mut self, answer: Answer) {
        let Some(asked) = self.asked.take() else {
            return;
        };
        let answer = match (&asked.kind, answer) {
            (_, Answer::Failed(reason)) => {
                self.failures.push(format!(
                    "{} {}: {reason}",
                    kind_name(asked.kind),
                    asked.name
                ));
                None
            }
            (RecordKind::Naptr, a @ Answer::Naptr(_))
            | (RecordKind::Srv, a @ Answer::Srv(_))
            | (RecordKind::Address, a @ Answer::Address(_)) => Some(a),
            (kind, _) => {
                self.failures.push(format!(
                    "{} {}: answered with other records",
                    kind_name(*kind),
                    asked.name
                ));
                None
            }
        };
        match self.step {
            Step::Naptr => self.take_naptr(answer),
            Step::Srv => self.take_srv(answer),
            Step::Hosts => self.take_address(answer),
            Step::Done => {}
        }
    }

    /// RFC 3263 §4.1: the NAPTR records of transports we support with the "s" flag, by order
    /// then preference, each pointing at an SRV name. None: SRV of every supported transport.
    fn take_naptr(&mut self, answer: Option<Answer>) {
        let mut records = match answer {
            Some(Answer::Naptr(r)) => r,
            _ => Vec::new(),
        };
        records.sort_by_key(|r| (r.order, r.preference));
        let host = self.request.host.trim_end_matches('.').to_string();
        let mut usable = Vec::new();
        for r in records {
            let Some(t) = naptr_transport(&r.services) else {
                continue;
            };
            if !self.supported.contains(&t) || !r.flags.eq_ignore_ascii_case("s") {
                continue;
            }
            let name = r.replacement.trim_end_matches('.').to_string();
            if name.is_empty() || usable.iter().any(|(n, _)| *n == name) {
                continue;
            }
            usable.push((name, t));
        }
        // §4.2: when no SRV answers, A/AAAA of the host on the default port of the
        // transport NAPTR chose first (or, without NAPTR, the first one we support).
        let t = usable
            .first()
            .map_or_else(|| self.first_supported(), |(_, t)| *t);
        if usable.is_empty() {
            // §4.1: no (usable) NAPTR: SRV of each transport we support, in our order.
            for t in self.supported.clone() {
                self.srv.push_back((srv_name(&host, t), t));
            }
        }
        self.fallback = Some((host, t.default_port(), t));
        self.srv.extend(usable);
        self.step = Step::Srv;
    }

    fn take_srv(&mut self, answer: Option<Answer>) {
        let Some((_, transport)) = self.srv.pop_front() else {
            return;
        };
        let records = match answer {
            Some(Answer::Srv(r)) => r,
            _ => return,
        };
        if records.is_empty() {
            return;
        }
        // Any SRV answer means the domain published its servers: no A/AAAA fallback, even
        // when the only record is "." (RFC 2782: the service is decidedly not available).
        self.fallback = None;
        for r in order_srv(records, &mut self.draw) {
            self.hosts.push_back((r.target, r.port, transport));
        }
    }

    fn take_address(&mut self, answer: Option<Answer>) {
        let Some((host, port, transport)) = self.hosts.pop_front() else {
            return;
        };
        let Some(Answer::Address(ips)) = answer else {
            return;
        };
        for ip in ips {
            let target = Target {
                addr: SocketAddr::new(ip, port),
                transport,
                host: host.clone(),
            };
            if !self.targets.contains(&target) {
                self.targets.push(target);
            }
        }
    }
}

/// RFC 2782's order: lowest priority first; within a priority, repeatedly draw a number in
/// `0..=sum of the remaining weights` and take the first record whose running sum of weights
/// reaches it (records of weight 0 first in the list, so they are picked only on a draw of 0,
/// or when nothing else is left). Records whose target is "." are dropped.
pub fn order_srv(mut records: Vec<Srv>, draw: &mut impl FnMut(u32) -> u32) -> Vec<Srv> {
    records.retain(|r| !r.target.trim_end_matches('.').is_empty());
    for r in &mut records {
        r.target = r.target.trim_end_matches('.').to_string();
    }
    weighted_order(
        records,
        |r| u32::from(r.priority),
        |r| u32::from(r.weight),
        draw,
    )
}

/// RFC 2782's selection, for anything with a priority and a weight (SRV records, a profile's
/// trunks): lowest priority first; within a priority, repeatedly draw a number in
/// `0..=sum of the remaining weights` and take the first item whose running sum of weights
/// reaches it (items of weight 0 first, so they are picked only on a draw of 0, or when
/// nothing else is left). Stable: within a weight class the given order is kept.
pub fn weighted_order<T>(
    mut items: Vec<T>,
    priority: impl Fn(&T) -> u32,
    weight: impl Fn(&T) -> u32,
    draw: &mut impl FnMut(u32) -> u32,
) -> Vec<T> {
    items.sort_by_key(|r| (priority(r), weight(r) != 0));
    let mut out = Vec::with_capacity(items.len());
    let mut rest: VecDeque<T> = items.into();
    while let Some(first) = rest.front() {
        let p = priority(first);
        let mut group: Vec<T> = Vec::new();
        while rest.front().is_some_and(|r| priority(r) == p) {
            if let Some(r) = rest.pop_front() {
                group.push(r);
            }
        }
        while !group.is_empty() {
            let total: u32 = group.iter().map(&weight).sum();
            let pick = draw(total).min(total);
            let mut running = 0u32;
            let mut chosen = group.len() - 1;
            for (i, r) in group.iter().enumerate() {
                running += weight(r);
                if running >= pick {
                    chosen = i;
                    break;
                }
            }
            out.push(group.remove(chosen));
        }
    }
    out
}

/// The transport a NAPTR service field names (RFC 3263 §4.1), if it is one we know.
fn naptr_transport(services: &str) -> Option<Transport> {
    match services.to_ascii_uppercase().as_str() {
        "SIP+D2U" => Some(Transport::Udp),
        "SIP+D2T" => Some(Transport::Tcp),
        "SIPS+D2T" => Some(Transport::Tls),
        _ => None,
    }
}

fn srv_name(host: &str, transport: Transport) -> String {
    let prefix = match transport {
        Transport::Udp => "_sip._udp",
        Transport::Tcp => "_sip._tcp",
        Transport::Tls => "_sips._tcp",
    };
    format!("{prefix}.{host}")
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}

fn kind_name(kind: RecordKind) -> &'static str {
    match kind {
        RecordKind::Naptr => "NAPTR",
        RecordKind::Srv => "SRV",
        RecordKind::Address => "A/AAAA",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const BOTH: &[Transport] = &[Transport::Udp, Transport::Tcp];

    /// A zone to answer from; names without the final dot. Every question is recorded.
    #[derive(Default)]
    struct Zone {
        naptr: HashMap<&'static str, Vec<Naptr>>,
        srv: HashMap<&'static str, Vec<Srv>>,
        a: HashMap<&'static str, Vec<IpAddr>>,
        failing: Vec<&'static str>,
    }

    impl Zone {
        fn run(
            &self,
            request: Request,
            supported: &[Transport],
            draw: impl FnMut(u32) -> u32,
        ) -> (Result<Vec<Target>, String>, Vec<Question>) {
            let mut r = Resolution::new(request, supported, draw);
            let mut asked = Vec::new();
            for _ in 0..100 {
                match r.poll() {
                    Poll::Done(result) => return (result, asked),
                    Poll::Ask(q) => {
                        let name = q.name.trim_end_matches('.');
                        let answer = if self.failing.contains(&name) {
                            Answer::Failed("timed out".into())
                        } else {
                            match q.kind {
                                RecordKind::Naptr => {
                                    Answer::Naptr(self.naptr.get(name).cloned().unwrap_or_default())
                                }
                                RecordKind::Srv => {
                                    Answer::Srv(self.srv.get(name).cloned().unwrap_or_default())
                                }
                                RecordKind::Address => {
                                    Answer::Address(self.a.get(name).cloned().unwrap_or_default())
                                }
                            }
                        };
                        asked.push(q);
                        r.answer(answer);
                    }
                }
            }
            panic!("resolution did not finish: {asked:?}");
        }
    }

    fn naptr(order: u16, preference: u16, services: &str, replacement: &str) -> Naptr {
        Naptr {
            order,
            preference,
            flags: "s".into(),
            services: services.into(),
            replacement: replacement.into(),
        }
    }

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn req(host: &str, port: Option<u16>, transport: Option<Transport>) -> Request {
        Request {
            host: host.into(),
            port,
            transport,
        }
    }

    fn addrs(targets: &[Target]) -> Vec<(SocketAddr, Transport)> {
        targets.iter().map(|t| (t.addr, t.transport)).collect()
    }

    fn sa(last: u8, port: u16) -> SocketAddr {
        SocketAddr::new(ip(last), port)
    }

    /// A carrier that publishes everything: NAPTR for UDP and TCP, two SRV priorities.
    fn carrier() -> Zone {
        let mut z = Zone::default();
        z.naptr.insert(
            "trunk.example",
            vec![
                naptr(20, 10, "SIP+D2T", "_sip._tcp.trunk.example."),
                naptr(10, 10, "SIP+D2U", "_sip._udp.trunk.example."),
            ],
        );
        z.srv.insert(
            "_sip._udp.trunk.example",
            vec![
                srv(20, 60, 5080, "b1.trunk.example."),
                srv(10, 0, 5070, "a.trunk.example."),
                srv(20, 40, 5090, "b2.trunk.example."),
            ],
        );
        z.srv.insert(
            "_sip._tcp.trunk.example",
            vec![srv(10, 0, 5071, "a.trunk.example.")],
        );
        z.a.insert("a.trunk.example", vec![ip(1)]);
        z.a.insert("b1.trunk.example", vec![ip(2), ip(3)]);
        z.a.insert("b2.trunk.example", vec![ip(4)]);
        z.a.insert("trunk.example", vec![ip(9)]);
        z
    }

    #[test]
    fn an_ip_address_asks_nothing() {
        let z = Zone::default();
        let (r, asked) = z.run(req("192.0.2.7", None, None), BOTH, |_| 0);
        assert!(asked.is_empty());
        assert_eq!(addrs(&r.unwrap()), [(sa(7, 5060), Transport::Udp)]);
        let (r, _) = z.run(
            req("[2001:db8::1]", Some(5070), Some(Transport::Tcp)),
            BOTH,
            |_| 0,
        );
        assert_eq!(
            addrs(&r.unwrap()),
            [(
                SocketAddr::new("2001:db8::1".parse().unwrap(), 5070),
                Transport::Tcp
            )]
        );
        let (r, _) = z.run(req("192.0.2.7", None, Some(Transport::Tls)), BOTH, |_| 0);
        assert_eq!(addrs(&r.unwrap()), [(sa(7, 5061), Transport::Tls)]);
    }

    #[test]
    fn an_explicit_port_skips_naptr_and_srv() {
        let (r, asked) = carrier().run(req("trunk.example", Some(5099), None), BOTH, |_| 0);
        assert_eq!(
            asked,
            [Question {
                name: "trunk.example.".into(),
                kind: RecordKind::Address
            }]
        );
        assert_eq!(addrs(&r.unwrap()), [(sa(9, 5099), Transport::Udp)]);
    }

    #[test]
    fn naptr_order_then_srv_priority_then_weight() {
        // Draws: 0 for the weight-0 group of priority 10, then 50 of 100 (b1: 60 reaches it),
        // then 40 of 40 for b2.
        let mut draws = vec![0, 50, 40, 0].into_iter();
        let (r, asked) = carrier().run(req("trunk.example", None, None), BOTH, move |_| {
            draws.next().unwrap_or(0)
        });
        let kinds: Vec<_> = asked.iter().map(|q| (q.kind, q.name.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (RecordKind::Naptr, "trunk.example."),
                (RecordKind::Srv, "_sip._udp.trunk.example."),
                (RecordKind::Srv, "_sip._tcp.trunk.example."),
                (RecordKind::Address, "a.trunk.example."),
                (RecordKind::Address, "b1.trunk.example."),
                (RecordKind::Address, "b2.trunk.example."),
                (RecordKind::Address, "a.trunk.example."),
            ]
        );
        let targets = r.unwrap();
        assert_eq!(
            addrs(&targets),
            [
                (sa(1, 5070), Transport::Udp),
                (sa(2, 5080), Transport::Udp),
                (sa(3, 5080), Transport::Udp),
                (sa(4, 5090), Transport::Udp),
                (sa(1, 5071), Transport::Tcp),
            ]
        );
        assert_eq!(targets[1].host, "b1.trunk.example");
    }

    #[test]
    fn a_low_draw_puts_the_lighter_target_first() {
        // Within priority 20 (b1 weight 60, b2 weight 40, server order b1, b2): a draw of 61
        // passes b1's running sum (60) and lands on b2.
        let mut draws = vec![0, 61, 0].into_iter();
        let (r, _) = carrier().run(
            req("trunk.example", None, Some(Transport::Udp)),
            BOTH,
            move |_| draws.next().unwrap_or(0),
        );
        assert_eq!(
            addrs(&r.unwrap()),
            [
                (sa(1, 5070), Transport::Udp),
                (sa(4, 5090), Transport::Udp),
                (sa(2, 5080), Transport::Udp),
                (sa(3, 5080), Transport::Udp),
            ]
        );
    }

    #[test]
    fn weights_share_first_places_in_proportion() {
        let records = vec![srv(1, 30, 1, "x"), srv(1, 70, 2, "y"), srv(1, 0, 3, "z")];
        let mut first = HashMap::new();
        // Every draw from 0 to 100 once: a uniform draw in miniature.
        for d in 0..=100u32 {
            let mut once = Some(d);
            let order = order_srv(records.clone(), &mut |_| once.take().unwrap_or(0));
            *first.entry(order[0].target.clone()).or_insert(0) += 1;
        }
        assert_eq!(first.get("z"), Some(&1), "weight 0 only on a draw of 0");
        assert_eq!(first.get("x"), Some(&30));
        assert_eq!(first.get("y"), Some(&70));
    }

    #[test]
    fn a_given_transport_asks_its_srv_only() {
        let (r, asked) = carrier().run(
            req("trunk.example", None, Some(Transport::Tcp)),
            BOTH,
            |_| 0,
        );
        assert_eq!(asked[0].name, "_sip._tcp.trunk.example.");
        assert!(asked.iter().all(|q| q.kind != RecordKind::Naptr));
        assert_eq!(addrs(&r.unwrap()), [(sa(1, 5071), Transport::Tcp)]);

        let (_, asked) = carrier().run(
            req("trunk.example", None, Some(Transport::Tls)),
            BOTH,
            |_| 0,
        );
        assert_eq!(asked[0].name, "_sips._tcp.trunk.example.");
    }

    #[test]
    fn no_srv_for_a_given_transport_falls_back_to_the_host() {
        let mut z = Zone::default();
        z.a.insert("pbx.example", vec![ip(5)]);
        let (r, _) = z.run(req("pbx.example", None, Some(Transport::Tls)), BOTH, |_| 0);
        assert_eq!(addrs(&r.unwrap()), [(sa(5, 5061), Transport::Tls)]);
    }

    #[test]
    fn no_naptr_tries_srv_of_each_supported_transport_then_a() {
        let mut z = Zone::default();
        z.srv.insert(
            "_sip._tcp.pbx.example",
            vec![srv(0, 0, 5072, "pbx.example.")],
        );
        z.a.insert("pbx.example", vec![ip(5)]);
        let (r, asked) = z.run(req("pbx.example", None, None), BOTH, |_| 0);
        let names: Vec<_> = asked.iter().map(|q| q.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "pbx.example.",
                "_sip._udp.pbx.example.",
                "_sip._tcp.pbx.example.",
                "pbx.example."
            ]
        );
        assert_eq!(addrs(&r.unwrap()), [(sa(5, 5072), Transport::Tcp)]);

        // Nothing but an A record: the host on 5060 over the first transport we support.
        let mut z = Zone::default();
        z.a.insert("pbx.example", vec![ip(5)]);
        let (r, _) = z.run(req("pbx.example", None, None), &[Transport::Tcp], |_| 0);
        assert_eq!(addrs(&r.unwrap()), [(sa(5, 5060), Transport::Tcp)]);
    }

    #[test]
    fn naptr_for_transports_we_cannot_use_are_skipped() {
        let mut z = carrier();
        z.naptr.insert(
            "trunk.example",
            vec![
                naptr(5, 10, "SIPS+D2T", "_sips._tcp.trunk.example."),
                naptr(6, 10, "E2U+sip", "!^.*$!sip:x@y!"),
                naptr(20, 10, "SIP+D2T", "_sip._tcp.trunk.example."),
            ],
        );
        let (r, asked) = z.run(req("trunk.example", None, None), BOTH, |_| 0);
        assert!(asked.iter().all(|q| !q.name.starts_with("_sips")));
        assert_eq!(addrs(&r.unwrap()), [(sa(1, 5071), Transport::Tcp)]);
    }

    #[test]
    fn a_dot_srv_means_no_service_and_no_fallback() {
        let mut z = Zone::default();
        z.srv
            .insert("_sip._udp.pbx.example", vec![srv(0, 0, 0, ".")]);
        z.a.insert("pbx.example", vec![ip(5)]);
        let (r, _) = z.run(req("pbx.example", None, Some(Transport::Udp)), BOTH, |_| 0);
        assert!(r.is_err(), "{r:?}");
    }

    #[test]
    fn a_failing_srv_target_is_skipped_and_failures_are_named() {
        let mut z = carrier();
        z.failing.push("a.trunk.example");
        let (r, _) = z.run(
            req("trunk.example", None, Some(Transport::Udp)),
            BOTH,
            |_| 0,
        );
        let r = r.unwrap();
        assert_eq!(r[0].host, "b1.trunk.example");

        let mut z = Zone::default();
        z.failing.push("pbx.example");
        let (r, _) = z.run(req("pbx.example", Some(5060), None), BOTH, |_| 0);
        assert_eq!(r.unwrap_err(), "A/AAAA pbx.example.: timed out");
        let (r, _) = Zone::default().run(req("none.example", None, None), BOTH, |_| 0);
        assert_eq!(r.unwrap_err(), "no DNS record gives an address for it");
    }

    #[test]
    fn a_huge_srv_set_stops_at_the_question_limit() {
        let mut z = Zone::default();
        let many: Vec<Srv> = (0..200).map(|i| srv(i, 0, 5060, "x.example.")).collect();
        z.srv.insert("_sip._udp.pbx.example", many);
        z.a.insert("x.example", vec![ip(1)]);
        let (r, asked) = z.run(req("pbx.example", None, Some(Transport::Udp)), BOTH, |_| 0);
        assert_eq!(asked.len(), MAX_QUESTIONS);
        assert_eq!(
            addrs(&r.unwrap()),
            [(sa(1, 5060), Transport::Udp)],
            "duplicates dropped"
        );
    }

    #[test]
    fn out_of_turn_answers_do_not_panic() {
        let mut r = Resolution::new(req("pbx.example", None, None), BOTH, |_| 0);
        r.answer(Answer::Address(vec![ip(1)]));
        assert!(matches!(
            r.poll(),
            Poll::Ask(Question {
                kind: RecordKind::Naptr,
                ..
            })
        ));
        r.answer(Answer::Address(vec![ip(1)]));
        // The wrong kind counted as a failed NAPTR lookup: on to SRV.
        assert!(matches!(
            r.poll(),
            Poll::Ask(Question {
                kind: RecordKind::Srv,
                ..
            })
        ));
    }
}
