//! Inbound calls: callbacks from contacts, matched to the campaign and contact that called
//! them, and put through like an answered outbound call.
//!
//! `outdial serve` installs this router in the user agent, which hands it every INVITE its
//! gate admitted (a carrier's address). Matching follows itellico's guide: the called number
//! (the DID, read where the profile's `inbound_number` says) names the campaign that owns it
//! ([`Store::campaign_for_number`]); the caller is that campaign's contact with the caller's
//! number, else the contact of the most recent outbound call to the caller's number from the
//! called number within [`CALLBACK_WINDOW_MS`] ([`Store::last_call_to`]). A matched contact in
//! `retry`, `completed` or `no_conversation` moves to `called`; a `callback` event is kept.
//! The call then runs the campaign's connect plan (its AI agent, agent pool or `connect_to`)
//! through the same attempt runner as an outbound call, without detection or message, and is
//! recorded as an attempt with `direction = inbound`. A caller that matches no contact (or a
//! campaign with nowhere to connect) goes to the profile's `inbound_route`, else gets 480; a
//! store that does not answer gives 503 (the carrier may route the call elsewhere).
//!
//! Must not: answer a call before it knows where the call goes, dial anyone itself (the bridge
//! does), or change a contact's retries — a callback is not an attempt of ours.

use std::sync::Arc;
use std::time::Duration;

use rsipstack::sip::StatusCode;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn, Instrument};

use super::attempt::{run_attempt, AttemptPlan, MAX_CALL};
use super::engine::{connect_plan, fill_record, now_ms, EngineOptions, StoreAgents};
use crate::campaign::model::{Campaign, Contact, ContactStatus, Millis};
use crate::config::{Config, Profile};
use crate::sip::inbound::{called_number, caller_number, IncomingCall};
use crate::sip::UserAgent;
use crate::store::attempts::{AttemptRecord, CallDirection};
use crate::store::contacts::ContactTransition;
use crate::store::{Store, StoreError};

/// How far back an outbound call links a callback to its contact (the guide's 30 days).
pub const CALLBACK_WINDOW_MS: Millis = 30 * 24 * 3600 * 1000;

/// Inbound INVITEs waiting for the router; more get 503 from the user agent.
const QUEUE: usize = 256;

/// How long a shutdown waits for callbacks in progress to hang up and be recorded.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(40);

/// How long an unknown caller's default route may ring.
const ROUTE_RING: Duration = Duration::from_secs(30);

/// Statuses a callback moves to `called` (the guide's list).
const CALLED_FROM: [ContactStatus; 3] = [
    ContactStatus::Retry,
    ContactStatus::Completed,
    ContactStatus::NoConversation,
];

/// Starts routing the user agent's inbound calls; `None` when another router has them. The
/// task ends once `cancel` fires and the calls in progress ended (at most [`SHUTDOWN_WAIT`]).
pub fn spawn(
    store: Store,
    ua: Arc<UserAgent>,
    config: Arc<Config>,
    options: EngineOptions,
    cancel: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    if !ua.route_inbound(tx) {
        warn!("inbound calls are routed elsewhere already");
        return None;
    }
    let router = Arc::new(Router {
        store,
        ua,
        config,
        options,
    });
    Some(tokio::spawn(router.run(rx, cancel)))
}

struct Router {
    store: Store,
    ua: Arc<UserAgent>,
    config: Arc<Config>,
    options: EngineOptions,
}

/// A caller matched to a contact.
struct Match {
    campaign: Campaign,
    contact: Contact,
    account: Option<i64>,
    /// `did` (the number's campaign has the caller) or `last_call` (the last call from the
    /// number called).
    by: &'static str,
}

impl Router {
    async fn run(
        self: Arc<Self>,
        mut incoming: mpsc::Receiver<IncomingCall>,
        cancel: CancellationToken,
    ) {
        let (stop_tx, stop) = watch::channel(false);
        let mut calls = JoinSet::new();
        loop {
            tokio::select! {
                call = incoming.recv() => match call {
                    Some(call) => {
                        let router = self.clone();
                        let stop = stop.clone();
                        calls.spawn(async move { router.take(call, stop).await });
                    }
                    None => break,
                },
                Some(_) = calls.join_next(), if !calls.is_empty() => {}
                _ = cancel.cancelled() => break,
            }
        }
        // Shutting down: calls in progress hang up; new ones are refused.
        let _ = stop_tx.send(true);
        incoming.close();
        while let Ok(call) = incoming.try_recv() {
            call.refuse(StatusCode::ServiceUnavailable).await;
        }
        let drained = tokio::time::timeout(SHUTDOWN_WAIT, async {
            while calls.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                left = calls.len(),
                "inbound calls still running at shutdown"
            );
        }
    }

    /// Decides where one inbound call goes, answers it there, and records it.
    async fn take(&self, call: IncomingCall, stop: watch::Receiver<bool>) {
        let Ok(profile) = self.config.profile(&call.profile).cloned() else {
            call.refuse(StatusCode::TemporarilyUnavailable).await;
            return;
        };
        let did = called_number(call.request(), profile.inbound_number);
        let caller = caller_number(call.request());
        let span = info_span!("inbound", to = ?did, from = ?caller, profile = %profile.name);
        async move {
            let now = now_ms();
            let matched = match self
                .match_caller(did.as_deref(), caller.as_deref(), now)
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    error!("matching an inbound call: {e}");
                    call.refuse(StatusCode::ServiceUnavailable).await;
                    return;
                }
            };
            let did = did.unwrap_or_default();
            let caller = caller.unwrap_or_default();
            match matched {
                Some(m) => self.callback(call, profile, m, &did, &caller, stop).await,
                None => {
                    info!("no contact matches the caller");
                    self.default_route(call, profile, &did, &caller, stop).await
                }
            }
        }
        .instrument(span)
        .await
    }

    /// The campaign and contact a callback belongs to, if any (see the module header).
    async fn match_caller(
        &self,
        did: Option<&str>,
        caller: Option<&str>,
        now: Millis,
    ) -> Result<Option<Match>, StoreError> {
        let (Some(did), Some(caller)) = (did, caller) else {
            return Ok(None);
        };
        let owner = self.store.campaign_for_number(did).await?;
        if let Some((account, campaign_id)) = owner {
            if let Some(contact) = self.store.contact_by_phone(campaign_id, caller).await? {
                let campaign = self.store.get_campaign(campaign_id).await?;
                return Ok(Some(Match {
                    campaign,
                    contact,
                    account: Some(account),
                    by: "did",
                }));
            }
        }
        let account = owner.map(|(a, _)| a);
        let since = now - CALLBACK_WINDOW_MS;
        let Some((campaign_id, contact_id)) =
            self.store.last_call_to(caller, did, account, since).await?
        else {
            return Ok(None);
        };
        let campaign = self.store.get_campaign(campaign_id).await?;
        let contact = self.store.get_contact(contact_id).await?;
        let account = self.store.campaign_owner(campaign_id).await?;
        Ok(Some(Match {
            campaign,
            contact,
            account,
            by: "last_call",
        }))
    }

    /// A matched callback: the contact to `called`, the campaign's connect plan, the record.
    async fn callback(
        &self,
        call: IncomingCall,
        profile: Profile,
        m: Match,
        did: &str,
        caller: &str,
        stop: watch::Receiver<bool>,
    ) {
        let now = now_ms();
        let Match {
            campaign,
            contact,
            account,
            by,
        } = m;
        let moved = self
            .store
            .transition_contact(
                contact.id,
                &CALLED_FROM,
                &ContactTransition {
                    status: ContactStatus::Called,
                    next_attempt_at: None,
                    last_outcome: None,
                },
                now,
            )
            .await;
        let status_after = match &moved {
            Ok(Some(c)) => c.status,
            Ok(None) => contact.status,
            Err(e) => {
                error!(
                    contact = contact.id,
                    "moving a callback's contact to called: {e}"
                );
                contact.status
            }
        };
        info!(
            campaign = campaign.id,
            contact = contact.id,
            by,
            from = %contact.status,
            to = %status_after,
            "callback matched"
        );
        let _ = self
            .store
            .append_event(
                Some(campaign.id),
                Some(contact.id),
                "callback",
                &serde_json::json!({
                    "from": caller,
                    "to": did,
                    "matched_by": by,
                    "status_before": contact.status,
                    "status": status_after,
                }),
                now,
            )
            .await;

        let settings = &campaign.settings;
        // The agent leg goes out through the campaign's trunk (the inbound one without).
        let bridge_profile = match settings.sip_profile.trim() {
            "" => profile.clone(),
            name => self
                .config
                .profile(name)
                .cloned()
                .unwrap_or_else(|_| profile.clone()),
        };
        let agents: Arc<dyn crate::bridge::AgentSource> = Arc::new(StoreAgents {
            store: self.store.clone(),
            campaign_id: campaign.id,
            node: self.options.node.clone(),
            config: self.config.clone(),
        });
        let ai_agent = match self.store.campaign_ai_agent(campaign.id).await {
            Ok(Some(spec)) => match spec.resolve_env() {
                Ok(target) => Some(target),
                Err(e) => {
                    error!(campaign = campaign.id, "AI agent not usable: {e}");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                error!(campaign = campaign.id, "AI agent not read: {e}");
                None
            }
        };
        let Some(connect) = connect_plan(
            settings,
            Some(&bridge_profile),
            campaign.id,
            &contact,
            &agents,
            ai_agent,
        ) else {
            info!(
                campaign = campaign.id,
                "the campaign connects people nowhere"
            );
            return self.default_route(call, profile, did, caller, stop).await;
        };
        let abandon_message = settings
            .abandon_message
            .as_deref()
            .filter(|n| !n.is_empty())
            .and_then(|name| match self.media(account, name) {
                Ok(samples) => Some(samples),
                Err(e) => {
                    error!(campaign = campaign.id, "abandon_message {name}: {e}");
                    None
                }
            });
        let record_to = settings.recording.then(|| {
            let _ = std::fs::create_dir_all(&self.options.recordings_dir);
            self.options.recordings_dir.join(format!(
                "c{}-contact{}-in{}.wav",
                campaign.id, contact.id, now
            ))
        });
        let record = AttemptRecord {
            campaign_id: Some(campaign.id),
            contact_id: Some(contact.id),
            attempt_number: contact.attempts,
            sip_profile: profile.name.clone(),
            caller_id: caller.to_string(),
            billable_account: settings.billable_account.clone(),
            destination: did.to_string(),
            direction: CallDirection::Inbound,
            ..AttemptRecord::default()
        };
        self.put_through(
            call,
            profile,
            Some(connect),
            abandon_message,
            record_to,
            account,
            record,
            stop,
        )
        .await;
    }

    /// A caller no contact matches: the profile's `inbound_route`, else 480.
    async fn default_route(
        &self,
        call: IncomingCall,
        profile: Profile,
        did: &str,
        caller: &str,
        stop: watch::Receiver<bool>,
    ) {
        let Some(route) = profile.inbound_route.clone() else {
            call.refuse(StatusCode::TemporarilyUnavailable).await;
            return;
        };
        info!(route = %route, "to the profile's inbound route");
        let connect = crate::flow::Connect {
            target: crate::bridge::BridgeTarget::Sip {
                destination: route,
                profile: Some(Box::new(profile.clone())),
            },
            queue_timeout: ROUTE_RING,
            ring_timeout: ROUTE_RING,
            campaign_id: None,
            contact_id: None,
            custom: Default::default(),
        };
        let record = AttemptRecord {
            sip_profile: profile.name.clone(),
            caller_id: caller.to_string(),
            destination: did.to_string(),
            direction: CallDirection::Inbound,
            ..AttemptRecord::default()
        };
        self.put_through(call, profile, Some(connect), None, None, None, record, stop)
            .await;
    }

    /// Answers the call, runs the connect plan until it ends, and records it.
    #[allow(clippy::too_many_arguments)]
    async fn put_through(
        &self,
        call: IncomingCall,
        profile: Profile,
        connect: Option<crate::flow::Connect>,
        abandon_message: Option<Arc<Vec<i16>>>,
        record_to: Option<std::path::PathBuf>,
        account: Option<i64>,
        mut record: AttemptRecord,
        stop: watch::Receiver<bool>,
    ) {
        use crate::bridge::agent::twilio;
        let call_sid = twilio::random_sid("CA");
        let stream = crate::bridge::agent::StreamInfo {
            ids: twilio::StreamIds {
                account_sid: twilio::account_sid(account.unwrap_or(0)),
                call_sid: call_sid.clone(),
                stream_sid: twilio::random_sid("MZ"),
            },
            from: record.caller_id.clone(),
            to: record.destination.clone(),
        };
        // Transfers through the API: a SIP URI or a number through the profile's trunks.
        let resolve: crate::flow::control::Resolver = {
            let profile = profile.clone();
            Arc::new(move |t: &str| {
                let t = t.trim();
                let lower = t.to_ascii_lowercase();
                if lower.starts_with("sip:")
                    || lower.starts_with("sips:")
                    || crate::call::is_phone_number(t)
                {
                    Ok(crate::bridge::BridgeTarget::Sip {
                        destination: t.to_string(),
                        profile: Some(Box::new(profile.clone())),
                    })
                } else {
                    Err(format!("{t:?} is not a number or a sip: URI"))
                }
            })
        };
        let registration = self.options.live.register(
            &call_sid,
            account,
            &record.caller_id,
            &record.destination,
            resolve,
        );
        let plan = AttemptPlan {
            destination: record.caller_id.clone(),
            profile: Some(profile),
            caller_id: Some(record.destination.clone()),
            ring_timeout: Duration::ZERO,
            max_duration: MAX_CALL,
            steps: Vec::new(),
            prompts: Default::default(),
            reply_to: None,
            record_to,
            amd: None,
            machine_action: crate::campaign::model::MachineAction::Hangup,
            voicemail: None,
            connect,
            abandon_message,
            stream: Some(stream),
            registration: Some(registration),
            on_answer: None,
            incoming: Some(call),
            events: self.options.events.as_ref().map(|bus| {
                bus.sink(crate::observe::events::CallIds {
                    account_id: account,
                    campaign_id: record.campaign_id,
                    contact_id: record.contact_id,
                    attempt: Some(record.attempt_number),
                })
            }),
        };
        record.started_at = now_ms();
        let report = run_attempt(self.ua.clone(), plan, stop).await;
        record.ended_at = Some(now_ms());
        match &report {
            Ok(r) => {
                fill_record(&mut record, r);
            }
            Err(e) => {
                record.outcome = "failed".into();
                record.reason = e.to_string();
            }
        }
        self.keep(&record).await;
    }

    /// Writes the callback's record, retrying a store that does not answer for a while.
    async fn keep(&self, record: &AttemptRecord) {
        let mut delay = Duration::from_millis(200);
        for _ in 0..8 {
            match self.store.insert_attempt(record).await {
                Ok(id) => {
                    info!(attempt = id, outcome = %record.outcome, "inbound call recorded");
                    return;
                }
                Err(e) => {
                    warn!("recording an inbound call: {e}; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        error!(call_id = %record.call_id, "an inbound call's record was lost: the store did not answer");
    }

    /// A campaign's WAV by file name, from the media directory (the owner's folder first).
    fn media(&self, account: Option<i64>, name: &str) -> Result<Arc<Vec<i16>>, String> {
        let path = crate::config::media::resolve_media(&self.options.media_dir, account, name)
            .map_err(|e| e.to_string())?;
        crate::media::wav::load_wav_8k_mono(&path)
            .map(Arc::new)
            .map_err(|e| e.to_string())
    }
}
