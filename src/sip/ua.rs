//! The SIP user agent: transports, the endpoint loop, trunk registrations and
//! the answers to requests that belong to no call.
//!
//! One `UserAgent` per process. It owns rsipstack's endpoint and dialog layer;
//! calls (`crate::call`) borrow it to send INVITEs. Requests inside a call's
//! dialog are handed to that dialog, whose state changes reach the call's own
//! task; nothing here holds per-call state. Out-of-dialog OPTIONS get 200,
//! unknown dialogs 481, methods we do not serve 405 (501 for unknown ones,
//! answered by the UDP socket guard and the TCP listener's, [`super::tcp_guard`]); an INVITE from any address but a carrier's 403
//! ([`super::inbound`]); a carrier's goes to the inbound router when one is installed
//! ([`UserAgent::route_inbound`]), else 480 (503 while the router is full). It
//! also keeps each trunk's health (OPTIONS pings), limits and the one DNS resolver.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::registration::{RefreshOutcome, Registration};
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Method, StatusCode};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::{Transaction, TransactionReceiver};
use rsipstack::transport::tcp_listener::TcpListenerConnection;
use rsipstack::transport::udp::{UdpConnection, UdpInner};
use rsipstack::transport::{SipAddr, TransportLayer};
use rsipstack::EndpointBuilder;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::dns::{DnsResolver, Request, Target};
use super::guard::GuardedUdpSocket;
use super::inbound::{source_of, InboundGate, IncomingCall};
use super::limits::TrunkLimit;
use super::trunks::{Health, HealthState};
use super::SipError;
use crate::config::{Config, HostPort, Profile, Transport, Trunk};
use crate::media::ports::PortPool;

/// What a trunk's registration looks like now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationState {
    /// The trunk does not register (IP-authenticated), or has not tried yet.
    Idle,
    Registering,
    /// The registrar accepted us for `expires` seconds.
    Registered {
        expires: u32,
    },
    /// The last attempt failed; the next one follows after a backoff.
    Failed {
        code: Option<u16>,
        reason: String,
    },
}

/// Receive buffer for the SIP UDP socket: the default 208 KiB drops packets
/// under load long before the CPU is busy.
const SIP_SOCKET_BUFFER: usize = 4 * 1024 * 1024;

pub struct UserAgent {
    endpoint: rsipstack::transaction::endpoint::Endpoint,
    pub(crate) dialog_layer: Arc<DialogLayer>,
    cancel: CancellationToken,
    /// Ends the trunk tasks (registration, OPTIONS pings) before the endpoint,
    /// so their last requests (unregister) still get out.
    trunks_cancel: CancellationToken,
    trunk_tasks: parking_lot::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    udp: Option<SocketAddr>,
    tcp: Option<SocketAddr>,
    external_sip: Option<IpAddr>,
    rtp_external: Option<IpAddr>,
    rtp_bind: IpAddr,
    pub(crate) ports: PortPool,
    registrations: parking_lot::Mutex<HashMap<String, watch::Receiver<RegistrationState>>>,
    /// Channel and pace limits: a profile's (by its name) and each trunk's (by
    /// [`trunk_key`]), shared by every call on them.
    limits: parking_lot::Mutex<HashMap<String, Arc<TrunkLimit>>>,
    /// Each trunk's health from its OPTIONS pings, by [`trunk_key`].
    health: parking_lot::Mutex<HashMap<String, TrunkHealth>>,
    /// The process's one DNS resolver (RFC 3263, with its TTL cache): every trunk host,
    /// outbound proxy and `sip:` destination is resolved through it.
    dns: DnsResolver,
    /// The addresses carriers' inbound INVITEs may come from (anything else gets 403).
    inbound: Arc<InboundGate>,
    /// Where admitted inbound INVITEs go (set once by whoever routes them).
    router: Arc<std::sync::OnceLock<tokio::sync::mpsc::Sender<IncomingCall>>>,
}

/// One trunk's health as `GET /v1/trunks` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrunkHealth {
    pub health: Health,
    /// The last ping's final response code; `None` when it went unanswered (or none yet).
    pub last_code: Option<u16>,
    /// When the last ping ended (Unix ms); `None` before the first.
    pub last_ping_ms: Option<i64>,
}

/// The key of one trunk of one profile in the user agent's maps: `profile/trunk`.
pub fn trunk_key(profile: &Profile, trunk: &Trunk) -> String {
    format!("{}/{}", profile.name, trunk.name)
}

impl UserAgent {
    /// Binds the SIP transports and starts the endpoint and its request loop.
    pub async fn start(config: &Config) -> Result<Arc<UserAgent>, SipError> {
        let cancel = CancellationToken::new();
        let transport_layer = TransportLayer::new(cancel.child_token());
        if let Some(tls) = tls_config(&config.profiles)? {
            transport_layer.set_tls_config(tls);
        }
        let external = config.sip.external_addr;
        let user_agent = config.sip.user_agent.clone();

        let mut udp = None;
        if let Some(addr) = config.sip.listen_udp {
            let socket = bind_udp(addr).map_err(|e| SipError::Bind {
                transport: "UDP",
                addr,
                reason: e.to_string(),
            })?;
            let local = socket.local_addr()?;
            let guarded = GuardedUdpSocket::new(socket, user_agent.clone());
            let conn = UdpConnection::attach(
                UdpInner {
                    conn: Arc::new(guarded),
                    addr: SipAddr {
                        r#type: Some(rsipstack::sip::Transport::Udp),
                        addr: advertised(local, None).into(),
                    },
                },
                external.map(|ip| SocketAddr::new(ip, local.port())),
                Some(cancel.child_token()),
            )
            .await;
            transport_layer.add_transport(conn.into());
            udp = Some(local);
        }
        let mut tcp = None;
        // With a UDP listener beside it, TCP is accepted by our own guard (malformed messages
        // answered 400 there, see `tcp_guard`), bound now and served once the endpoint is up;
        // our Via for TCP then names the UDP listener's address with the TCP token (the same
        // port by default). TCP alone stays rsipstack's listener: the Via needs a listener.
        let mut guarded_tcp = None;
        if let (Some(addr), Some(_)) = (config.sip.listen_tcp, udp) {
            let listener = bind_tcp(addr).map_err(|e| SipError::Bind {
                transport: "TCP",
                addr,
                reason: e.to_string(),
            })?;
            let local = listener.local_addr()?;
            tcp = Some(local);
            guarded_tcp = Some((listener, advertised(local, None)));
        } else if let Some(mut addr) = config.sip.listen_tcp {
            if addr.port() == 0 {
                // rsipstack binds the listener later, with the port it is
                // given: choose the port now so Via and Contact are right.
                let probe = std::net::TcpListener::bind(SocketAddr::new(addr.ip(), 0))?;
                addr.set_port(probe.local_addr()?.port());
            }
            let conn = TcpListenerConnection::new(
                addr,
                external.map(|ip| SocketAddr::new(ip, addr.port())),
            )
            .await
            .map_err(|e| SipError::Bind {
                transport: "TCP",
                addr,
                reason: e.to_string(),
            })?;
            transport_layer.add_transport(conn.into());
            tcp = Some(addr);
        }
        if udp.is_none() && tcp.is_none() {
            return Err(SipError::NoTransport);
        }
        let dns = DnsResolver::new(&config.sip.dns_servers)?;

        let option = rsipstack::transaction::endpoint::EndpointOption {
            callid_suffix: Some("outdial".into()),
            ..Default::default()
        };
        let endpoint = EndpointBuilder::new()
            .with_option(option)
            .with_inspector(Box::new(super::interop::DigestAlgorithmNames))
            .with_cancel_token(cancel.clone())
            .with_transport_layer(transport_layer)
            .with_user_agent(&user_agent)
            .with_allows(vec![
                Method::Invite,
                Method::Ack,
                Method::Cancel,
                Method::Bye,
                Method::Options,
                Method::Info,
                Method::Update,
            ])
            .build();
        let incoming = endpoint
            .incoming_transactions()
            .map_err(|e| SipError::Stack(e.to_string()))?;
        let dialog_layer = Arc::new(DialogLayer::new(endpoint.inner.clone()));

        let inner = endpoint.inner.clone();
        tokio::spawn(async move {
            if let Err(e) = inner.serve().await {
                warn!(error = %e, "SIP endpoint stopped");
            }
        });
        if let Some((listener, local)) = guarded_tcp {
            super::tcp_guard::serve(
                listener,
                local,
                endpoint.inner.clone(),
                user_agent.clone(),
                cancel.child_token(),
            );
        }
        let inbound = Arc::new(InboundGate::new(&config.profiles));
        let router = Arc::new(std::sync::OnceLock::new());
        tokio::spawn(serve_requests(
            incoming,
            dialog_layer.clone(),
            user_agent.clone(),
            inbound.clone(),
            router.clone(),
        ));

        let ports = PortPool::new(
            config.rtp.bind_addr,
            config.rtp.port_min,
            config.rtp.port_max,
        );
        info!(?udp, ?tcp, "SIP user agent listening");
        Ok(Arc::new(UserAgent {
            endpoint,
            dialog_layer,
            cancel,
            trunks_cancel: CancellationToken::new(),
            trunk_tasks: parking_lot::Mutex::new(Vec::new()),
            udp,
            tcp,
            external_sip: external,
            rtp_external: config.rtp.external_addr,
            rtp_bind: config.rtp.bind_addr,
            ports,
            registrations: parking_lot::Mutex::new(HashMap::new()),
            limits: parking_lot::Mutex::new(HashMap::new()),
            health: parking_lot::Mutex::new(HashMap::new()),
            dns,
            inbound,
            router,
        }))
    }

    /// Sends every admitted inbound INVITE to `router` from now on (once per process; a
    /// second router is refused: `false`). Whoever receives them answers them.
    pub fn route_inbound(&self, router: tokio::sync::mpsc::Sender<IncomingCall>) -> bool {
        self.router.set(router).is_ok()
    }

    pub fn endpoint(&self) -> EndpointInnerRef {
        self.endpoint.inner.clone()
    }

    /// The local address SIP listens on for a transport.
    pub fn local_addr(&self, transport: Transport) -> Option<SocketAddr> {
        match transport {
            Transport::Udp => self.udp,
            Transport::Tcp => self.tcp,
            Transport::Tls => None,
        }
    }

    /// The transports we can send requests on, UDP first: what DNS may choose from when a
    /// trunk does not name its transport.
    pub fn transports(&self) -> Vec<Transport> {
        let mut t = Vec::with_capacity(2);
        if self.udp.is_some() {
            t.push(Transport::Udp);
        }
        if self.tcp.is_some() {
            t.push(Transport::Tcp);
        }
        t
    }

    /// Where to send requests for `host` (RFC 3263, see [`super::dns`]), in the order to
    /// try them. `port`/`transport` are what was written, if anything.
    pub async fn resolve(
        &self,
        host: &str,
        port: Option<u16>,
        transport: Option<Transport>,
    ) -> Result<Vec<Target>, SipError> {
        let request = Request {
            host: host.to_string(),
            port,
            transport,
        };
        self.dns.resolve(&request, &self.transports()).await
    }

    /// The targets of a trunk's first hop (its outbound proxy, else its proxy), in the order
    /// to try them.
    pub async fn trunk_targets(&self, t: &Trunk) -> Result<Vec<Target>, SipError> {
        self.resolve_host_port(t.hop(), t.transport_explicit.then_some(t.transport))
            .await
    }

    /// [`UserAgent::trunk_targets`], also telling the inbound gate where this carrier's
    /// calls may come from.
    pub async fn learn_trunk_addresses(
        &self,
        p: &Profile,
        t: &Trunk,
    ) -> Result<Vec<Target>, SipError> {
        let targets = self.trunk_targets(t).await?;
        let addrs = targets.iter().map(|target| target.addr.ip()).collect();
        self.inbound.note_resolved(&p.name, &trunk_key(p, t), addrs);
        Ok(targets)
    }

    /// [`UserAgent::resolve`] for a configured host (its port only when it was written).
    pub async fn resolve_host_port(
        &self,
        hp: &HostPort,
        transport: Option<Transport>,
    ) -> Result<Vec<Target>, SipError> {
        self.resolve(&hp.host, hp.explicit_port.then_some(hp.port), transport)
            .await
    }

    /// The address we put in Contact for `transport`, toward `peer`.
    pub fn contact_addr(
        &self,
        transport: Transport,
        peer: Option<SocketAddr>,
    ) -> Option<SocketAddr> {
        let local = self.local_addr(transport)?;
        Some(SocketAddr::new(
            self.external_sip
                .unwrap_or_else(|| advertised(local, peer).ip()),
            local.port(),
        ))
    }

    /// The address we write into SDP for media toward `peer`.
    pub fn media_addr(&self, peer: Option<SocketAddr>) -> IpAddr {
        if let Some(ip) = self.rtp_external.or(self.external_sip) {
            return ip;
        }
        advertised(SocketAddr::new(self.rtp_bind, 0), peer).ip()
    }

    /// Starts registering (and refreshing) every trunk that asks for it, and
    /// OPTIONS keep-alives for trunks with a ping interval.
    pub fn start_trunks(self: &Arc<Self>, profiles: &[Profile]) {
        for p in profiles {
            // What the trunks resolve to is where their inbound calls may come from.
            for t in &p.trunks {
                let (ua, p, t) = (self.clone(), p.clone(), t.clone());
                let task = tokio::spawn(async move {
                    if let Err(e) = ua.learn_trunk_addresses(&p, &t).await {
                        warn!(profile = %p.name, trunk = %t.name, error = %e, "trunk does not resolve");
                    }
                });
                self.trunk_tasks.lock().push(task);
            }
            if p.register {
                let (tx, rx) = watch::channel(RegistrationState::Registering);
                self.registrations.lock().insert(p.name.clone(), rx);
                let task = tokio::spawn(keep_registered(self.clone(), p.clone(), tx));
                self.trunk_tasks.lock().push(task);
            }
            if let Some(secs) = p.ping_interval.filter(|s| *s > 0) {
                let every = Duration::from_secs(u64::from(secs));
                for t in &p.trunks {
                    let task =
                        tokio::spawn(keep_pinging(self.clone(), p.clone(), t.clone(), every));
                    self.trunk_tasks.lock().push(task);
                }
            }
        }
    }

    /// The registration state of a trunk; `Idle` for trunks that don't register.
    pub fn registration(&self, profile: &str) -> RegistrationState {
        self.registrations
            .lock()
            .get(profile)
            .map(|rx| rx.borrow().clone())
            .unwrap_or(RegistrationState::Idle)
    }

    /// Waits until the trunk's first registration attempt has an answer
    /// (registered or failed), at most `limit`.
    pub async fn wait_registration(&self, profile: &str, limit: Duration) -> RegistrationState {
        let rx = self.registrations.lock().get(profile).cloned();
        let Some(mut rx) = rx else {
            return RegistrationState::Idle;
        };
        let settled = async {
            loop {
                let state = rx.borrow_and_update().clone();
                if !matches!(state, RegistrationState::Registering) {
                    return state;
                }
                if rx.changed().await.is_err() {
                    return rx.borrow().clone();
                }
            }
        };
        match tokio::time::timeout(limit, settled).await {
            Ok(state) => state,
            Err(_) => self.registration(profile),
        }
    }

    /// The channel and pace limits of a profile (all its trunks together), shared by every
    /// call on it.
    pub fn trunk_limit(&self, p: &Profile) -> Arc<TrunkLimit> {
        self.limits
            .lock()
            .entry(p.name.clone())
            .or_insert_with(|| Arc::new(TrunkLimit::new(&p.name, p.max_channels, p.max_cps)))
            .clone()
    }

    /// The channel and pace limits of one trunk of a profile.
    pub fn one_trunk_limit(&self, p: &Profile, t: &Trunk) -> Arc<TrunkLimit> {
        let key = trunk_key(p, t);
        self.limits
            .lock()
            .entry(key.clone())
            .or_insert_with(|| Arc::new(TrunkLimit::new(&key, t.max_channels, t.max_cps)))
            .clone()
    }

    /// A trunk's health (unknown until its first ping; pings off: always unknown).
    pub fn trunk_health(&self, p: &Profile, t: &Trunk) -> TrunkHealth {
        self.health
            .lock()
            .get(&trunk_key(p, t))
            .copied()
            .unwrap_or(TrunkHealth {
                health: Health::default(),
                last_code: None,
                last_ping_ms: None,
            })
    }

    /// The order a call on `p` tries its trunks in (indexes into `p.trunks`): see
    /// [`super::trunks::order`].
    pub fn trunk_order(&self, p: &Profile) -> Vec<usize> {
        let health = self.health.lock();
        super::trunks::order(
            &p.trunks,
            |t| {
                health
                    .get(&trunk_key(p, t))
                    .is_none_or(|h| h.health.is_up())
            },
            |total| rand::random_range(0..=total),
        )
    }

    /// Counts one ping of a trunk; returns the new state when it changed.
    fn record_ping(&self, p: &Profile, t: &Trunk, code: Option<u16>) -> Option<HealthState> {
        let mut map = self.health.lock();
        let entry = map.entry(trunk_key(p, t)).or_insert(TrunkHealth {
            health: Health::default(),
            last_code: None,
            last_ping_ms: None,
        });
        entry.last_code = code;
        entry.last_ping_ms = Some(chrono::Utc::now().timestamp_millis());
        entry
            .health
            .record(code.is_some(), p.ping_down_after, p.ping_up_after)
    }

    /// Unregisters trunks (best effort, at most a few seconds) and stops the
    /// endpoint.
    pub async fn shutdown(&self) {
        self.trunks_cancel.cancel();
        let tasks: Vec<_> = std::mem::take(&mut *self.trunk_tasks.lock());
        let all = futures_join_all(tasks);
        if tokio::time::timeout(Duration::from_secs(3), all)
            .await
            .is_err()
        {
            warn!("trunks did not unregister in time");
        }
        self.cancel.cancel();
    }
}

impl Drop for UserAgent {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The digest credential of a trunk, if it has one.
pub fn credential(p: &Profile) -> Option<Credential> {
    let username = p.username.clone()?;
    let password = p.password.as_ref()?.expose().to_string();
    Some(Credential {
        username,
        password,
        realm: p.realm.clone(),
        auth_username: None,
    })
}

/// `sip:host[:port]` of the trunk's proxy (the port only when the profile wrote one, so the
/// next hop may resolve the domain by SRV too), with the transport parameter when the
/// profile named a transport other than UDP.
pub fn trunk_uri(p: &Trunk, user: Option<&str>) -> Result<rsipstack::sip::Uri, SipError> {
    trunk_uri_over(p, user, p.transport)
}

/// [`trunk_uri`] for a request sent over `transport` (DNS may choose it when the profile
/// does not name one).
pub fn trunk_uri_over(
    p: &Trunk,
    user: Option<&str>,
    transport: Transport,
) -> Result<rsipstack::sip::Uri, SipError> {
    let user = user.map(|u| format!("{u}@")).unwrap_or_default();
    let scheme = if transport == Transport::Tls {
        "sips"
    } else {
        "sip"
    };
    let text = format!(
        "{scheme}:{user}{}{}",
        host_port(&p.proxy),
        transport_param(transport)
    );
    rsipstack::sip::Uri::try_from(text.as_str()).map_err(|e| SipError::BadUri {
        uri: text,
        reason: e.to_string(),
    })
}

fn transport_param(transport: Transport) -> &'static str {
    match transport {
        Transport::Udp => "",
        Transport::Tcp => ";transport=tcp",
        Transport::Tls => ";transport=tls",
    }
}

/// `host:port`, or `host` when the port was not written ([`HostPort::explicit_port`]);
/// IPv6 in brackets.
pub fn host_port(hp: &HostPort) -> String {
    let host = if hp.host.contains(':') && !hp.host.starts_with('[') {
        format!("[{}]", hp.host)
    } else {
        hp.host.clone()
    };
    if hp.explicit_port {
        format!("{host}:{}", hp.port)
    } else {
        host
    }
}

/// rsipstack's address for a target: where a request goes and over what.
pub fn sip_addr(target: &Target) -> SipAddr {
    SipAddr {
        r#type: Some(sip_transport(target.transport)),
        addr: target.addr.into(),
    }
}

pub fn sip_transport(t: Transport) -> rsipstack::sip::Transport {
    match t {
        Transport::Udp => rsipstack::sip::Transport::Udp,
        Transport::Tcp => rsipstack::sip::Transport::Tcp,
        Transport::Tls => rsipstack::sip::Transport::Tls,
    }
}

async fn keep_registered(ua: Arc<UserAgent>, p: Profile, state: watch::Sender<RegistrationState>) {
    let mut reg = Registration::new(ua.endpoint(), credential(&p));
    let token = ua.trunks_cancel.child_token();
    // The REGISTER names the trunk's domain but travels to the first target of its proxy
    // (or outbound proxy), resolved here (RFC 3263): the domain need not resolve at all.
    let mut failures = 0;
    let target = loop {
        match ua.trunk_targets(p.primary()).await {
            Ok(targets) if !targets.is_empty() => break targets[0].clone(),
            Ok(_) => {}
            Err(e) => {
                warn!(trunk = %p.name, error = %e, "trunk proxy does not resolve; retrying");
                state.send_replace(RegistrationState::Failed {
                    code: None,
                    reason: e.to_string(),
                });
            }
        }
        let wait = rsipstack::dialog::registration::backoff_interval(failures);
        failures += 1;
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    };
    reg.outbound_proxy = Some(target.addr);
    // The registrar URI carries the transport the target is reached over (rsipstack sends
    // to the outbound proxy over the URI's transport).
    let server = match registrar_uri(&p, target.transport) {
        Ok(u) => u,
        Err(e) => {
            state.send_replace(RegistrationState::Failed {
                code: None,
                reason: e.to_string(),
            });
            return;
        }
    };
    let name = p.name.clone();
    info!(trunk = %name, registrar = %server, "registering");
    reg.keep_alive(server.clone(), p.register_expires, token, |outcome| {
        let next = match outcome {
            RefreshOutcome::Registered(resp) => {
                let expires = resp
                    .expires_header()
                    .and_then(|e| e.value().trim().parse::<u32>().ok())
                    .unwrap_or(p.register_expires);
                info!(trunk = %name, expires, "registered");
                RegistrationState::Registered { expires }
            }
            RefreshOutcome::Rejected(resp) => {
                let code = u16::from(resp.status_code.clone());
                let reason = super::reason_phrase(resp);
                warn!(trunk = %name, code, %reason, "registration rejected; retrying with backoff");
                RegistrationState::Failed {
                    code: Some(code),
                    reason,
                }
            }
            RefreshOutcome::Failed(e) => {
                warn!(trunk = %name, error = %e, "registration failed; retrying with backoff");
                RegistrationState::Failed {
                    code: None,
                    reason: e.to_string(),
                }
            }
        };
        state.send_replace(next);
    })
    .await;
    // Shutting down: remove the binding we hold (none after a failure),
    // bounded so exit is never held up.
    if !matches!(*state.borrow(), RegistrationState::Registered { .. }) {
        return;
    }
    let unregister = reg.register(server, Some(0));
    if tokio::time::timeout(Duration::from_secs(2), unregister)
        .await
        .is_ok()
    {
        debug!(trunk = %p.name, "unregistered");
    }
}

fn registrar_uri(p: &Profile, transport: Transport) -> Result<rsipstack::sip::Uri, SipError> {
    match &p.from_domain {
        Some(domain) => {
            let scheme = if transport == Transport::Tls {
                "sips"
            } else {
                "sip"
            };
            let text = format!("{scheme}:{domain}{}", transport_param(transport));
            rsipstack::sip::Uri::try_from(text.as_str()).map_err(|e| SipError::BadUri {
                uri: text,
                reason: e.to_string(),
            })
        }
        None => trunk_uri_over(p.primary(), None, transport),
    }
}

/// OPTIONS to one trunk every `every`: keeps NAT bindings open and tells the trunk's
/// health (down after the profile's `ping_down_after` unanswered pings in a row, up after
/// `ping_up_after` answered ones; logged when it changes).
async fn keep_pinging(ua: Arc<UserAgent>, p: Profile, t: Trunk, every: Duration) {
    let mut tick = tokio::time::interval(every);
    let mut seq = 0u32;
    loop {
        tokio::select! {
            _ = ua.trunks_cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        seq += 1;
        // An answer of any kind (even 404 or 503) shows the server is there to take calls
        // or refuse them fast; only silence is down.
        // A ping is unanswered once the next is due (at most 10 s): timer F's 32 s would
        // hold the health back for half a minute.
        let wait = every.clamp(Duration::from_millis(500), Duration::from_secs(10));
        let ping = tokio::time::timeout(wait, options_ping(&ua, &p, &t, seq));
        let code = match ping
            .await
            .unwrap_or_else(|_| Err(SipError::Stack(format!("no answer within {wait:?}"))))
        {
            Ok(code) => {
                debug!(profile = %p.name, trunk = %t.name, code, "OPTIONS answered");
                Some(code)
            }
            Err(e) => {
                debug!(profile = %p.name, trunk = %t.name, error = %e, "OPTIONS not answered");
                None
            }
        };
        match ua.record_ping(&p, &t, code) {
            Some(HealthState::Up) => {
                info!(profile = %p.name, trunk = %t.name, "trunk up: answers OPTIONS")
            }
            Some(HealthState::Down) => warn!(
                profile = %p.name,
                trunk = %t.name,
                failures = p.ping_down_after,
                "trunk down: OPTIONS unanswered; calls try its other trunks first"
            ),
            _ => {}
        }
    }
}

async fn options_ping(ua: &UserAgent, p: &Profile, t: &Trunk, seq: u32) -> Result<u16, SipError> {
    use rsipstack::transaction::key::{TransactionKey, TransactionRole};
    let target = ua
        .learn_trunk_addresses(p, t)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| SipError::Resolve {
            host: t.proxy.to_string(),
            reason: "no address".into(),
        })?;
    let uri = trunk_uri_over(t, None, target.transport)?;
    let endpoint = ua.endpoint();
    let via = endpoint
        .get_via(None, None)
        .map_err(|e| SipError::Stack(e.to_string()))?;
    let user = p.from_user.clone().unwrap_or_else(|| "outdial".into());
    let domain = p
        .from_domain
        .clone()
        .unwrap_or_else(|| t.proxy.host.clone());
    let from_uri = rsipstack::sip::Uri::try_from(format!("sip:{user}@{domain}").as_str())
        .map_err(|e| SipError::Stack(e.to_string()))?;
    let from = rsipstack::sip::typed::From {
        display_name: None,
        uri: from_uri,
        params: vec![],
    }
    .with_tag(rsipstack::transaction::make_tag());
    let to = rsipstack::sip::typed::To {
        display_name: None,
        uri: uri.clone(),
        params: vec![],
    };
    let req = endpoint.make_request(Method::Options, uri, via, from, to, seq, None);
    let key = TransactionKey::from_request(&req, TransactionRole::Client)
        .map_err(|e| SipError::Stack(e.to_string()))?;
    let mut tx = Transaction::new_client(key, req, endpoint.clone(), None);
    tx.destination = Some(sip_addr(&target));
    tx.send()
        .await
        .map_err(|e| SipError::Stack(e.to_string()))?;
    while let Some(msg) = tx.receive().await {
        if let rsipstack::sip::SipMessage::Response(resp) = msg {
            let code = u16::from(resp.status_code.clone());
            if code >= 200 {
                return Ok(code);
            }
        }
    }
    Err(SipError::Stack("no response".into()))
}

/// Where Debian (and most Linux systems) keep the public CA bundle TLS trunks are verified
/// against, besides the profiles' own `tls_ca_file`s.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The TLS client configuration of every TLS trunk: one trust store (the system bundle plus
/// every profile's `tls_ca_file`) and at most one client certificate (rsipstack keeps one TLS
/// configuration per process); `None` when no profile uses TLS.
fn tls_config(
    profiles: &[Profile],
) -> Result<Option<rsipstack::transport::tls::TlsConfig>, SipError> {
    let uses_tls = profiles.iter().any(|p| {
        p.tls_ca_file.is_some()
            || p.tls_client.is_some()
            || p.trunks.iter().any(|t| t.transport == Transport::Tls)
    });
    if !uses_tls {
        return Ok(None);
    }
    let read = |path: &std::path::Path| {
        std::fs::read(path)
            .map_err(|e| SipError::Tls(format!("cannot read {}: {e}", path.display())))
    };
    let mut ca = std::fs::read(SYSTEM_CA_BUNDLE).unwrap_or_default();
    for p in profiles {
        if let Some(path) = &p.tls_ca_file {
            let pem = read(path)?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(SipError::Tls(format!(
                    "profile {}: tls_ca_file {} holds no PEM certificate",
                    p.name,
                    path.display()
                )));
            }
            ca.push(b'\n');
            ca.extend(pem);
        }
    }
    let clients: Vec<(&Profile, &(std::path::PathBuf, std::path::PathBuf))> = profiles
        .iter()
        .filter_map(|p| p.tls_client.as_ref().map(|c| (p, c)))
        .collect();
    if let Some((other, _)) = clients.iter().find(|(_, c)| *c != clients[0].1) {
        return Err(SipError::Tls(format!(
            "profiles {} and {} name different client certificates; one per process is supported",
            clients[0].0.name, other.name
        )));
    }
    let (client_cert, client_key) = match clients.first() {
        Some((_, (cert, key))) => (Some(read(cert)?), Some(read(key)?)),
        None => (None, None),
    };
    Ok(Some(rsipstack::transport::tls::TlsConfig {
        ca_certs: (!ca.is_empty()).then_some(ca),
        client_cert,
        client_key,
        ..Default::default()
    }))
}

/// Answers every request rsipstack hands us: in-dialog ones go to their
/// dialog, the rest are answered here.
async fn serve_requests(
    mut incoming: TransactionReceiver,
    dialogs: Arc<DialogLayer>,
    server: String,
    inbound: Arc<InboundGate>,
    router: Arc<std::sync::OnceLock<tokio::sync::mpsc::Sender<IncomingCall>>>,
) {
    while let Some(mut tx) = incoming.recv().await {
        let has_to_tag = tx
            .original
            .to_header()
            .ok()
            .and_then(|t| t.tag().ok().flatten())
            .is_some();
        let method = tx.original.method;
        if has_to_tag || matches!(method, Method::Cancel | Method::Ack) {
            if let Some(mut dialog) = dialogs.match_dialog(&tx) {
                tokio::spawn(async move {
                    if let Err(e) = dialog.handle(&mut tx).await {
                        debug!(error = %e, "in-dialog request ended with an error");
                    }
                });
                continue;
            }
        }
        let reply = match method {
            Method::Ack => continue,
            Method::Options => StatusCode::OK,
            _ if has_to_tag => StatusCode::CallTransactionDoesNotExist,
            Method::Bye | Method::Cancel | Method::Info | Method::Update | Method::PRack => {
                StatusCode::CallTransactionDoesNotExist
            }
            Method::Invite => match source_of(&tx.original) {
                Some(ip) => match inbound.profile_for(ip) {
                    // A carrier's call: the router answers it.
                    Some(profile) => match router.get() {
                        Some(route) => {
                            let call = IncomingCall {
                                tx,
                                profile,
                                source: ip,
                            };
                            match route.try_send(call) {
                                Ok(()) => continue,
                                Err(e) => {
                                    warn!("inbound call refused: the router is busy");
                                    let call = match e {
                                        tokio::sync::mpsc::error::TrySendError::Full(c)
                                        | tokio::sync::mpsc::error::TrySendError::Closed(c) => c,
                                    };
                                    tokio::spawn(call.refuse(StatusCode::ServiceUnavailable));
                                    continue;
                                }
                            }
                        }
                        None => StatusCode::TemporarilyUnavailable,
                    },
                    None => {
                        debug!(source = %ip, "INVITE from an address of no trunk");
                        StatusCode::Forbidden
                    }
                },
                // Not from a configured trunk: refused before any dialog exists.
                None => {
                    debug!("INVITE whose source is not an address");
                    StatusCode::Forbidden
                }
            },
            _ => StatusCode::MethodNotAllowed,
        };
        let headers = vec![
            Header::Allow("INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE".into()),
            Header::Accept("application/sdp".into()),
            Header::Server(server.clone().into()),
        ];
        debug!(%method, code = %reply, "answering out-of-dialog request");
        tokio::spawn(async move {
            if let Err(e) = tx.reply_with(reply, headers, None).await {
                debug!(error = %e, "could not answer request");
            }
        });
    }
}

async fn futures_join_all(tasks: Vec<tokio::task::JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

fn bind_udp(addr: SocketAddr) -> std::io::Result<tokio::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(SIP_SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SIP_SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    tokio::net::UdpSocket::from_std(socket.into())
}

/// The SIP TCP listener the guard accepts on (`tcp_guard`).
fn bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// The address a peer can reach us at: the bound address, or for a wildcard
/// bind the local address of the route toward `peer` (or any non-loopback
/// interface when the peer is unknown).
fn advertised(local: SocketAddr, peer: Option<SocketAddr>) -> SocketAddr {
    if !local.ip().is_unspecified() {
        return local;
    }
    let probe_target = peer.unwrap_or_else(|| SocketAddr::from(([192, 0, 2, 1], 9)));
    let unspecified: SocketAddr = if probe_target.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    };
    let ip = std::net::UdpSocket::bind(unspecified)
        .and_then(|s| {
            s.connect(probe_target)?;
            s.local_addr()
        })
        .map(|a| a.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    SocketAddr::new(ip, local.port())
}
