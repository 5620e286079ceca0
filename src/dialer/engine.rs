//! The campaign engine: the tokio driver around the sans-IO [`Scheduler`].
//!
//! Ticks come at most a second apart, sooner when the scheduler asks, when a call ends or
//! when the API wakes it through the shared `Notify` — but at least [`MIN_TICK_GAP`] apart, so
//! a burst of call ends is one tick. Once a second it says this node is alive (its
//! heartbeat), hangs up its own calls another node took over while this one was away and
//! reconciles the calls of nodes that died ([`recovery`](super::recovery)). Every tick it
//! writes results waiting in the journal, reads the campaigns that may dial from the store,
//! holds a lease on each (renewed when half of it is left; so several nodes sharing a
//! PostgreSQL store split the campaigns instead of doubling their pace), asks the scheduler
//! what to do, and acts: stores status changes, checks the tick's group of contacts against
//! the DNC list, claims them together with their calls' rows in one transaction (so no two
//! nodes dial one contact, and trunk channels, trunk CPS and campaign concurrency are
//! counted over every node) and spawns one task per attempt. An attempt task places the
//! call ([`run_attempt`]), keeps the dialog's facts in the call's row at answer, and writes
//! its end — attempt record (CDR), the contact moved on ([`after_attempt`]), the event — in
//! one transaction through the [`Recorder`] (grouped with the other ends waiting at that
//! moment; the journal while the store is unreachable).
//! While results wait in the journal, nothing is dialed.
//!
//! Settings are re-read every tick, so edits apply to queued calls at once; pause stops
//! new dials at the next tick; stop (canceled) also hangs up the campaign's live calls.
//! Shutdown hangs up every live call (BYE, or CANCEL while ringing), waits up to the grace
//! period for their transactions and records: a ringing call cancelled by the shutdown ends
//! `interrupted` and keeps its retry.
//! The engine never decides anything itself: pacing, hours, windows, retries and
//! lifecycle are the scheduler's and the retry rules'.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::attempt::{run_attempt, AttemptPlan, AttemptReport, MAX_CALL};
use super::recovery::{reconcile_node, Recorder};
use crate::campaign::agents::{ConnectTarget, Pool};
use crate::campaign::contact_tz::zones_for_contact;
use crate::campaign::hours::CompiledHours;
use crate::campaign::model::{AmdMode, MachineAction, Transfer};
use crate::campaign::pacing::{handle_ms, AbandonWindow, MeasuredRates, PacingInput};
use crate::campaign::retry::{after_attempt, after_shutdown, AttemptResult};
use crate::campaign::scheduler::{CampaignView, Candidate, Scheduler};
use crate::campaign::{
    BusinessHoursSpec, Campaign, CampaignSettings, CampaignStatus, Contact, ContactStatus, Millis,
};
use crate::config::{Config, Profile};
use crate::media::wav::load_wav_8k_mono;
use crate::sip::UserAgent;
use crate::store::attempts::AttemptRecord;
use crate::store::contacts::ContactTransition;
use crate::store::inflight::{AttemptEnd, CallAnswered, Claim, NewCall};
use crate::store::{Store, StoreError};

/// How long an attempt's end waits for its dialog's facts to be written.
const FACTS_WAIT: Duration = Duration::from_secs(6);
/// Longest sleep between two ticks.
const MAX_TICK: Duration = Duration::from_secs(1);
/// How long a campaign lease lasts; renewed once less than half of it is left.
const LEASE_MS: Millis = 5_000;
/// How often the heartbeat is written and taken-over calls and dead nodes are looked for.
const UPKEEP_MS: Millis = 1_000;
/// The least time between two ticks: call ends and API wake-ups that come sooner are
/// handled together (the pacer's grain, so a high pace still starts its groups on time).
const MIN_TICK_GAP: Duration =
    Duration::from_millis(crate::campaign::scheduler::PACE_QUANTUM_MS as u64);
/// Contacts read per campaign per tick at most (candidates for the starts its pace allows,
/// or for its free slots when it has a contact window).
const CANDIDATES: i64 = 200;
/// The attempts the pacer's answer rate, person rate and handle time are measured over.
const RATE_WINDOW_MS: Millis = 3600 * 1000;

/// The current time as the store and the scheduler count it.
pub fn now_ms() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// What the engine needs besides the store and the user agent.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// This node's id in campaign leases, call rows and heartbeats (unique per node, the
    /// same across restarts: [`super::recovery::node_id`]).
    pub node: String,
    /// Where call recordings and recorded replies go.
    pub recordings_dir: PathBuf,
    /// The media directory campaigns' WAV file names are found in (per account, then shared).
    pub media_dir: PathBuf,
    /// Calls in progress, shared with the admin API (transfers, Twilio-style hang-ups).
    pub live: crate::flow::control::LiveCalls,
    /// Where calls' events go (`None`: not recorded).
    pub events: Option<crate::observe::events::EventBus>,
}

struct Live {
    campaign_id: i64,
    contact_id: i64,
    stop: watch::Sender<bool>,
}

struct Finished {
    /// The attempt's serial (the key of [`Engine::live`]).
    serial: u64,
}

/// The running engine's handle: wake it after a change, stop it on shutdown.
#[derive(Clone)]
pub struct EngineHandle {
    pub wake: Arc<Notify>,
    cancel: CancellationToken,
}

impl EngineHandle {
    /// Asks for a tick now (after an API change).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops dialing and hangs up every live call; the engine task then ends.
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

/// Starts the engine on its own task. `wake` is shared with the API.
pub fn spawn(
    store: Store,
    ua: Arc<UserAgent>,
    config: Arc<Config>,
    options: EngineOptions,
    recorder: Recorder,
    wake: Arc<Notify>,
) -> (EngineHandle, tokio::task::JoinHandle<()>) {
    let cancel = CancellationToken::new();
    let handle = EngineHandle {
        wake: wake.clone(),
        cancel: cancel.clone(),
    };
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let engine = Engine {
        store,
        ua,
        config,
        options,
        wake,
        cancel,
        scheduler: Scheduler::new(),
        live: HashMap::new(),
        next_serial: 0,
        hours: HashMap::new(),
        messages: HashMap::new(),
        owners: HashMap::new(),
        done_tx,
        done_rx,
        recorder,
        recovered: false,
        store_ok_since: None,
        upkeep_at: 0,
        leases: HashMap::new(),
        current: HashMap::new(),
    };
    let task = tokio::spawn(engine.run());
    (handle, task)
}

struct Engine {
    store: Store,
    ua: Arc<UserAgent>,
    config: Arc<Config>,
    options: EngineOptions,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    scheduler: Scheduler,
    /// Live attempts by serial. Not by contact id: a contact whose call ended (its record
    /// written, so it may be dialed again) can be claimed anew before its old attempt's
    /// [`Finished`] is read here, and that must not remove the new attempt's entry.
    live: HashMap<u64, Live>,
    /// The serial the next attempt gets.
    next_serial: u64,
    /// Compiled business hours by schedule id (with the spec they came from).
    hours: HashMap<i64, (BusinessHoursSpec, Arc<CompiledHours>)>,
    /// Loaded WAV messages by path.
    /// Loaded WAVs by (owner account, file name).
    messages: HashMap<(Option<i64>, String), Arc<Vec<i16>>>,
    /// Campaign → owner account, for media lookups.
    owners: HashMap<i64, Option<i64>>,
    done_tx: mpsc::UnboundedSender<Finished>,
    done_rx: mpsc::UnboundedReceiver<Finished>,
    /// Writes attempts' ends (store, or journal while it is unreachable); replayed here.
    recorder: Recorder,
    /// Whether this node's own leftovers (journal, calls of its previous life) are done.
    recovered: bool,
    /// Since when the store has answered without a break: other nodes are judged dead only
    /// after a whole node lease of it, so that after an outage everyone may beat again first.
    store_ok_since: Option<Millis>,
    /// When the heartbeat and the look at taken-over calls and dead nodes are next due.
    upkeep_at: Millis,
    /// Campaign → until when this node's lease on it holds (as last written).
    leases: HashMap<i64, Millis>,
    /// Campaign → the campaign as the last tick read it: an attempt's end reads its
    /// settings here (the retry rules of the settings current when the call ends).
    current: HashMap<i64, watch::Sender<Arc<Campaign>>>,
}

impl Engine {
    async fn run(mut self) {
        loop {
            let began = tokio::time::Instant::now();
            let now = now_ms();
            let wake_at = match self.tick(now).await {
                Ok(wake_at) => wake_at,
                Err(e) => {
                    tracing::error!("campaign engine: {e}");
                    None
                }
            };
            let sleep = wake_at
                .map(|at| Duration::from_millis(u64::try_from(at - now).unwrap_or(0)))
                .unwrap_or(MAX_TICK)
                .min(MAX_TICK);
            tokio::select! {
                _ = self.cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                Some(done) = self.done_rx.recv() => { self.live.remove(&done.serial); }
                _ = tokio::time::sleep(sleep) => {}
            }
            if let Some(gap) = MIN_TICK_GAP.checked_sub(began.elapsed()) {
                tokio::select! {
                    _ = self.cancel.cancelled() => break,
                    _ = tokio::time::sleep(gap) => {}
                }
            }
            while let Ok(done) = self.done_rx.try_recv() {
                self.live.remove(&done.serial);
            }
        }
        // Shutdown: hang up what is live (BYE, or CANCEL while ringing) and wait, up to the
        // grace period, for the attempts to end and write their records.
        let live = self.live.len();
        for live in self.live.values() {
            let _ = live.stop.send(true);
        }
        let grace = Duration::from_secs(self.config.engine.shutdown_grace_secs);
        tracing::info!(
            live,
            ?grace,
            "campaign engine stopping: hanging up live calls"
        );
        let deadline = tokio::time::Instant::now() + grace;
        while !self.live.is_empty() {
            match tokio::time::timeout_at(deadline, self.done_rx.recv()).await {
                Ok(Some(done)) => {
                    self.live.remove(&done.serial);
                }
                _ => break,
            }
        }
        if !self.live.is_empty() {
            tracing::warn!(
                left = self.live.len(),
                "grace period over with calls still ending: the next start (or another node) reconciles them"
            );
        }
        let _ = self.store.release_campaign_leases(&self.options.node).await;
        if self.live.is_empty() && self.recorder.waiting() == 0 {
            if let Ok(calls) = self.store.calls_of_node(&self.options.node).await {
                if calls.is_empty() {
                    let _ = self.store.node_stopped(&self.options.node).await;
                }
            }
        }
    }

    /// This node's leftovers from before a restart: agents it held busy are free again,
    /// results in the journal are written, and the calls its previous life left in flight
    /// are ended and recorded `interrupted`.
    async fn recover(&mut self, now: Millis) -> Result<(), StoreError> {
        let freed = self
            .store
            .release_node_agents(&self.options.node, now)
            .await?;
        if freed > 0 {
            tracing::warn!("campaign engine: {freed} agents left busy by this node are free again");
        }
        self.recorder.replay().await?;
        self.store.node_started(&self.options.node, now).await?;
        let n = reconcile_node(
            &self.store,
            &self.ua,
            &self.config,
            &self.options.node,
            &self.options.node,
            now_ms(),
        )
        .await?;
        if n > 0 {
            tracing::warn!("campaign engine: {n} calls left in flight by this node's previous run recorded as interrupted");
        }
        self.recovered = true;
        Ok(())
    }

    /// The heartbeat, the journal and other nodes' leftovers; `false` when nothing may be
    /// dialed this tick (results still wait for the store).
    async fn keep_whole(&mut self, now: Millis) -> Result<bool, StoreError> {
        let upkeep = now >= self.upkeep_at || !self.recovered || self.store_ok_since.is_none();
        if upkeep {
            if let Err(e) = self.store.heartbeat(&self.options.node, now).await {
                self.store_ok_since = None;
                return Err(e);
            }
            self.upkeep_at = now + UPKEEP_MS;
        }
        let ok_since = *self.store_ok_since.get_or_insert(now);
        if !self.recovered {
            self.recover(now).await?;
        }
        if upkeep {
            self.hang_up_taken_over().await?;
        }
        if self.recorder.waiting() > 0 {
            self.recorder.replay().await?;
            if self.recorder.waiting() > 0 {
                return Ok(false);
            }
        }
        if !upkeep {
            return Ok(true);
        }
        let lease = (self.config.engine.node_lease_secs as Millis) * 1000;
        if now - ok_since >= lease {
            for node in self.store.dead_nodes(now - lease).await? {
                if node == self.options.node {
                    continue;
                }
                reconcile_node(
                    &self.store,
                    &self.ua,
                    &self.config,
                    &node,
                    &self.options.node,
                    now_ms(),
                )
                .await?;
                // Its export jobs died with it.
                self.store
                    .fail_exports_of_node(
                        &node,
                        false,
                        crate::store::exports::INTERRUPTED_EXPORT,
                        now_ms(),
                    )
                    .await?;
            }
            self.store.forget_dead_nodes(now - 10 * lease).await?;
        }
        Ok(true)
    }

    /// Live calls whose row is gone were taken over by another node while this one could
    /// not beat (stopped, starved, cut off from the store): that node has recorded them and
    /// sent a BYE where it could; the call must not go on here (its contact may be dialed
    /// again), so it is hung up now. Its end is then fenced: nothing is written twice. A call
    /// that finished a moment ago (row deleted, its task not yet reported) gets a stop it
    /// ignores.
    async fn hang_up_taken_over(&mut self) -> Result<(), StoreError> {
        if self.live.is_empty() {
            return Ok(());
        }
        let rows: std::collections::HashSet<i64> = self
            .store
            .calls_of_node(&self.options.node)
            .await?
            .iter()
            .map(|c| c.contact_id)
            .collect();
        for live in self.live.values() {
            if !rows.contains(&live.contact_id) && !*live.stop.borrow() {
                tracing::debug!(
                    campaign = live.campaign_id,
                    contact = live.contact_id,
                    "call row gone (taken over by another node, or just ended): hanging up"
                );
                let _ = live.stop.send(true);
            }
        }
        Ok(())
    }

    /// One pass over every campaign that may dial; returns when to come back.
    async fn tick(&mut self, now: Millis) -> Result<Option<Millis>, StoreError> {
        if !self.keep_whole(now).await? {
            return Ok(None);
        }
        let campaigns = self
            .store
            .campaigns_in_status(&[
                CampaignStatus::Scheduled,
                CampaignStatus::Processing,
                CampaignStatus::Paused,
                CampaignStatus::Canceled,
                CampaignStatus::Overdue,
            ])
            .await?;
        self.hang_up_canceled(&campaigns);
        self.keep_current(&campaigns);
        let mut wake_at: Option<Millis> = None;
        for campaign in &campaigns {
            if !matches!(
                campaign.status,
                CampaignStatus::Scheduled | CampaignStatus::Processing
            ) {
                continue;
            }
            let held = self
                .leases
                .get(&campaign.id)
                .is_some_and(|&until| now < until - LEASE_MS / 2);
            if !held {
                if !self
                    .store
                    .take_campaign_lease(campaign.id, &self.options.node, now, now + LEASE_MS)
                    .await?
                {
                    self.leases.remove(&campaign.id);
                    continue;
                }
                self.leases.insert(campaign.id, now + LEASE_MS);
            }
            let started = std::time::Instant::now();
            let ticked = self.tick_campaign(campaign, now).await;
            metrics::histogram!("outdial_engine_tick_seconds")
                .record(started.elapsed().as_secs_f64());
            match ticked {
                Ok(Some(at)) => wake_at = Some(wake_at.map_or(at, |w: Millis| w.min(at))),
                Ok(None) => {}
                Err(e) => tracing::error!(campaign = campaign.id, "campaign engine: {e}"),
            }
        }
        Ok(wake_at)
    }

    /// The campaigns as read this tick, for the attempts that end before the next one.
    fn keep_current(&mut self, campaigns: &[Campaign]) {
        for campaign in campaigns {
            match self.current.get(&campaign.id) {
                Some(current) => {
                    current.send_if_modified(|c| {
                        let changed = **c != *campaign;
                        if changed {
                            *c = Arc::new(campaign.clone());
                        }
                        changed
                    });
                }
                None => {
                    self.current
                        .insert(campaign.id, watch::channel(Arc::new(campaign.clone())).0);
                }
            }
        }
        // Campaigns no attempt reads any more (finished, deleted).
        self.current
            .retain(|id, c| c.receiver_count() > 0 || campaigns.iter().any(|k| k.id == *id));
    }

    /// Stop means stop: calls of canceled campaigns are hung up.
    fn hang_up_canceled(&mut self, campaigns: &[Campaign]) {
        for campaign in campaigns
            .iter()
            .filter(|c| c.status == CampaignStatus::Canceled)
        {
            for live in self.live.values().filter(|l| l.campaign_id == campaign.id) {
                let _ = live.stop.send(true);
            }
            self.scheduler.forget(campaign.id);
        }
    }

    async fn tick_campaign(
        &mut self,
        campaign: &Campaign,
        now: Millis,
    ) -> Result<Option<Millis>, StoreError> {
        let settings = &campaign.settings;
        if settings.completion_timeout.as_millis() > 0 {
            self.store
                .complete_called_contacts(
                    campaign.id,
                    now - settings.completion_timeout.as_millis(),
                    now,
                )
                .await?;
        }
        let hours = match settings.business_hours_id {
            Some(id) => Some(self.compiled_hours(id).await?),
            None => None,
        };
        // Counted over every node: the store's call rows.
        let live_calls = self
            .store
            .campaign_calls(campaign.id)
            .await?
            .clamp(0, i64::from(u32::MAX)) as u32;
        let profile = self.profile_for(campaign);
        let trunk_free_channels = match &profile {
            Some(p) => {
                let local = self.ua.trunk_limit(p).free_channels();
                match p.max_channels {
                    Some(max) => {
                        let used = self.store.trunk_calls(&p.name).await?.max(0);
                        let free = i64::from(max).saturating_sub(used).max(0) as u32;
                        Some(local.map_or(free, |l| l.min(free)))
                    }
                    None => local,
                }
            }
            None => None,
        };
        let free = (settings.max_concurrent.max(0) as u32).saturating_sub(live_calls);
        let due = if free > 0 && campaign.status == CampaignStatus::Processing {
            // Four candidates per call that may start, and one at least, so a tick held back
            // by its pace still sees a contact waiting; with a contact window, four per free
            // slot whatever the pace (the window passes some over, and the ones it passes
            // over come first again on the next tick).
            let starts = match settings.contact_window {
                Some(_) => u64::from(free),
                None => self
                    .scheduler
                    .starts_allowed(now, campaign)
                    .map_or(u64::from(free), |s| s.min(u64::from(free)).max(1)),
            };
            let ask = i64::try_from(starts.saturating_mul(4)).unwrap_or(CANDIDATES);
            self.store
                .due_contacts(campaign.id, now, ask.min(CANDIDATES))
                .await?
        } else {
            Vec::new()
        };
        let candidates: Vec<Candidate> = due
            .iter()
            .map(|c| Candidate {
                id: c.id,
                zones: zones_for_contact(c, &settings.default_country),
            })
            .collect();
        let has_unfinished = self.store.has_non_final(campaign.id).await?;
        let next_due_at = self.store.next_due_at(campaign.id, now).await?;
        let pool = self.pool_view(campaign, live_calls, now).await?;
        let view = CampaignView {
            campaign,
            hours: hours.as_deref(),
            live_calls,
            trunk_free_channels,
            trunk_cps_allowance: None,
            candidates: &candidates,
            next_due_at,
            has_unfinished: has_unfinished || live_calls > 0,
            pool,
        };
        let tick = self.scheduler.tick(now, &view);
        if let Some(to) = tick.status_change {
            match self
                .store
                .set_campaign_status(campaign.id, campaign.status, to, now)
                .await
            {
                Ok(_) => {
                    tracing::info!(campaign = campaign.id, from = %campaign.status, %to, "campaign status");
                    let _ = self
                        .store
                        .append_event(
                            Some(campaign.id),
                            None,
                            "campaign_status",
                            &serde_json::json!({"from": campaign.status, "to": to, "by": "engine"}),
                            now,
                        )
                        .await;
                }
                // Someone (an admin) changed it meanwhile: their word wins; next tick.
                Err(StoreError::Conflict(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
            if to != CampaignStatus::Processing {
                return Ok(tick.wake_at);
            }
        }
        let group: Vec<&Contact> = tick
            .dials
            .iter()
            .filter_map(|id| due.iter().find(|c| c.id == *id))
            .collect();
        self.dial(campaign, &group, profile, now).await?;
        Ok(tick.wake_at)
    }

    /// The pacer's view of the campaign's agent pool, when `connect_to` names one (a
    /// pool that does not exist, or is empty, has no free agent: nothing is dialed).
    /// People waiting are the campaign's `on_hold` contacts; calls in flight are its live
    /// calls less the pool's busy agents and the people waiting (a pool shared by several
    /// campaigns is counted as if each had it alone).
    async fn pool_view(
        &self,
        campaign: &Campaign,
        live_calls: u32,
        now: Millis,
    ) -> Result<Option<PacingInput>, StoreError> {
        if ConnectTarget::parse(&campaign.settings.connect_to)
            .pool()
            .is_none()
        {
            return Ok(None);
        }
        let agents = self
            .store
            .campaign_pool(campaign.id)
            .await?
            .map(|(_, agents)| agents)
            .unwrap_or_default();
        let pool = Pool::new(agents.iter().map(|a| a.pool_agent()).collect());
        let counts = pool.counts(now);
        let logged_in: Vec<_> = agents
            .iter()
            .filter(|a| a.spec.state.is_logged_in())
            .collect();
        let wrap_up_ms = if logged_in.is_empty() {
            0
        } else {
            logged_in
                .iter()
                .map(|a| a.spec.wrap_up_secs.saturating_mul(1000))
                .sum::<Millis>()
                / logged_in.len() as Millis
        };
        let stats = self
            .store
            .pacing_stats(campaign.id, now - RATE_WINDOW_MS)
            .await?;
        let window = self.store.abandon_counts_30d(campaign.id, now).await?;
        let waiting = self
            .store
            .count_in_status(campaign.id, ContactStatus::OnHold)
            .await?
            .clamp(0, i64::from(u32::MAX)) as u32;
        Ok(Some(PacingInput {
            agents: counts,
            in_flight: live_calls
                .saturating_sub(counts.busy)
                .saturating_sub(waiting),
            waiting,
            rates: MeasuredRates {
                attempts: stats.attempts.max(0) as u64,
                people: stats.people.max(0) as u64,
                average_answer_ms: stats.average_answer_ms,
                average_handle_ms: if stats.average_talk_ms > 0.0 {
                    handle_ms(stats.average_talk_ms, wrap_up_ms)
                } else {
                    0.0
                },
            },
            window: AbandonWindow {
                people_answered: window.people_answered.max(0) as u64,
                abandoned: window.abandoned.max(0) as u64,
            },
            cap_pct: campaign.settings.abandon_cap_pct,
        }))
    }

    fn profile_for(&self, campaign: &Campaign) -> Option<Profile> {
        let name = campaign.settings.sip_profile.trim();
        if name.is_empty() {
            self.config.profiles.first().cloned()
        } else {
            self.config.profile(name).ok().cloned()
        }
    }

    async fn compiled_hours(&mut self, id: i64) -> Result<Arc<CompiledHours>, StoreError> {
        let stored = self.store.get_business_hours(id).await?;
        if let Some((spec, compiled)) = self.hours.get(&id) {
            if *spec == stored.spec {
                return Ok(compiled.clone());
            }
        }
        let compiled = Arc::new(
            CompiledHours::compile(&stored.spec)
                .map_err(|e| StoreError::Invalid(format!("business hours {id}: {e}")))?,
        );
        self.hours.insert(id, (stored.spec, compiled.clone()));
        Ok(compiled)
    }

    /// A campaign's WAV by file name, from the media directory (the owner's folder first),
    /// loaded once.
    fn media(&mut self, account: Option<i64>, name: &str) -> Result<Arc<Vec<i16>>, String> {
        let key = (account, name.to_string());
        if let Some(samples) = self.messages.get(&key) {
            return Ok(samples.clone());
        }
        let path = crate::config::media::resolve_media(&self.options.media_dir, account, name)
            .map_err(|e| e.to_string())?;
        let samples = Arc::new(load_wav_8k_mono(&path).map_err(|e| e.to_string())?);
        self.messages.insert(key, samples.clone());
        Ok(samples)
    }

    /// The campaign's owner (whose media folder its file names are looked up in).
    async fn owner(&mut self, campaign_id: i64) -> Result<Option<i64>, StoreError> {
        if let Some(owner) = self.owners.get(&campaign_id) {
            return Ok(*owner);
        }
        let owner = self.store.campaign_owner(campaign_id).await?;
        self.owners.insert(campaign_id, owner);
        Ok(owner)
    }

    /// A tick's group of contacts: the DNC check (one statement), the claim (one
    /// transaction: each contact with its call's row, within the caps counted over every
    /// node), then each claimed contact's attempt on its own task; contacts past a cap wait
    /// for a later tick.
    async fn dial(
        &mut self,
        campaign: &Campaign,
        contacts: &[&Contact],
        profile: Option<Profile>,
        now: Millis,
    ) -> Result<(), StoreError> {
        if contacts.is_empty() {
            return Ok(());
        }
        let settings = &campaign.settings;
        let account = self.owner(campaign.id).await?;
        // The one DNC check: the global list and the campaign's account's own list.
        let phones: Vec<&str> = contacts.iter().map(|c| c.phone.as_str()).collect();
        let listed = self.store.dnc_matching(account, &phones).await?;
        let mut calls = Vec::with_capacity(contacts.len());
        let trunk = profile.as_ref().map(|p| p.name.clone()).unwrap_or_default();
        for contact in contacts {
            if !listed.contains(&contact.phone) {
                calls.push(NewCall {
                    campaign_id: campaign.id,
                    contact_id: contact.id,
                    expected: &[ContactStatus::Pending, ContactStatus::Retry],
                    node: &self.options.node,
                    trunk: &trunk,
                    max_channels: profile.as_ref().and_then(|p| p.max_channels),
                    max_cps: profile.as_ref().and_then(|p| p.max_cps),
                    max_concurrent: settings.max_concurrent,
                    caller_id: &settings.caller_id,
                    now,
                });
                continue;
            }
            let update = after_attempt(settings, contact, AttemptResult::Dnc, now);
            self.store
                .transition_contact(
                    contact.id,
                    &[ContactStatus::Pending, ContactStatus::Retry],
                    &ContactTransition {
                        status: update.status,
                        next_attempt_at: update.next_attempt_at,
                        last_outcome: update.last_outcome,
                    },
                    now,
                )
                .await?;
            let _ = self
                .store
                .append_event(
                    Some(campaign.id),
                    Some(contact.id),
                    "dnc_skipped",
                    &serde_json::json!({"phone": contact.phone}),
                    now,
                )
                .await;
        }
        if calls.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let claims = self.store.claim_calls(&calls).await;
        metrics::histogram!("outdial_store_seconds", "op" => "claim_calls")
            .record(started.elapsed().as_secs_f64());
        drop(calls);
        let mut claimed = Vec::new();
        for claim in claims? {
            match claim {
                Claim::Claimed(contact) => claimed.push(*contact),
                // Another node took it, or an admin moved it.
                Claim::Taken => {}
                capped @ (Claim::TrunkFull | Claim::TrunkCps | Claim::CampaignFull) => {
                    tracing::debug!(campaign = campaign.id, ?capped, "cap reached across nodes");
                }
            }
        }
        if claimed.is_empty() {
            return Ok(());
        }
        // The campaign's AI agent (a record, or `ai_agent_url`), its auth header read from the
        // environment now: once for the group.
        let ai_agent = match self.store.campaign_ai_agent(campaign.id).await {
            Ok(Some(spec)) => match spec.resolve_env() {
                Ok(target) => Some(target),
                Err(e) => {
                    tracing::error!(campaign = campaign.id, "AI agent not usable: {e}");
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                tracing::error!(campaign = campaign.id, "AI agent not read: {e}");
                None
            }
        };
        for contact in claimed {
            self.start_attempt(
                campaign,
                contact,
                account,
                profile.clone(),
                ai_agent.clone(),
            );
        }
        Ok(())
    }

    /// A claimed contact's attempt: its plan, its entry among the live calls, its task.
    fn start_attempt(
        &mut self,
        campaign: &Campaign,
        claimed: Contact,
        account: Option<i64>,
        profile: Option<Profile>,
        ai_agent: Option<crate::campaign::ai::AiAgentTarget>,
    ) {
        let settings = &campaign.settings;
        // The person's plan: the campaign's steps; without steps, the AI agent or connect_to
        // when set, else play_message then hang up.
        let connects = !settings.connect_to.trim().is_empty()
            || settings.ai_agent_id.is_some()
            || settings
                .ai_agent_url
                .as_deref()
                .is_some_and(|u| !u.trim().is_empty());
        let steps = match (&settings.steps, connects) {
            (None, true) => Vec::new(),
            _ => settings.plan(),
        };
        let mut prompts = std::collections::HashMap::new();
        for (field, name) in steps.iter().flat_map(|s| s.files()) {
            match self.media(account, name) {
                Ok(samples) => {
                    prompts.insert(name.to_string(), samples);
                }
                Err(e) => tracing::error!(campaign = campaign.id, "steps {field} {name}: {e}"),
            }
        }
        let reply_to = steps
            .iter()
            .any(|s| matches!(s, crate::flow::steps::Step::Record(_)))
            .then(|| {
                let _ = std::fs::create_dir_all(&self.options.recordings_dir);
                self.options.recordings_dir.join(format!(
                    "c{}-contact{}-a{}-reply.wav",
                    campaign.id, claimed.id, claimed.attempts
                ))
            });
        let record_to = settings.recording.then(|| {
            self.options.recordings_dir.join(format!(
                "c{}-contact{}-a{}.wav",
                campaign.id, claimed.id, claimed.attempts
            ))
        });
        if record_to.is_some() {
            let _ = std::fs::create_dir_all(&self.options.recordings_dir);
        }
        let abandon_message = match settings
            .abandon_message
            .as_deref()
            .filter(|n| !n.is_empty())
        {
            Some(name) => match self.media(account, name) {
                Ok(samples) => Some(samples),
                Err(e) => {
                    tracing::error!(campaign = campaign.id, "abandon_message {name}: {e}");
                    None
                }
            },
            None => None,
        };
        let amd = amd_config(settings.amd_mode);
        let voicemail = match (amd, settings.machine_action) {
            (Some(_), MachineAction::LeaveMessage) => {
                match settings
                    .voicemail_message
                    .as_deref()
                    .filter(|p| !p.is_empty())
                {
                    Some(path) => match self.media(account, path) {
                        Ok(samples) => Some(samples),
                        Err(e) => {
                            tracing::error!(
                                campaign = campaign.id,
                                "voicemail_message {path}: {e}"
                            );
                            None
                        }
                    },
                    None => None,
                }
            }
            _ => None,
        };
        let agents: Arc<dyn crate::bridge::AgentSource> = Arc::new(StoreAgents {
            store: self.store.clone(),
            campaign_id: campaign.id,
            node: self.options.node.clone(),
            config: self.config.clone(),
        });
        // The call's identity toward AI agents, and its entry in the live-call registry
        // (an agent's REST hang-up, a transfer through the API).
        let call_sid = crate::bridge::agent::twilio::random_sid("CA");
        let stream = crate::bridge::agent::StreamInfo {
            ids: crate::bridge::agent::twilio::StreamIds {
                account_sid: crate::bridge::agent::twilio::account_sid(account.unwrap_or(0)),
                call_sid: call_sid.clone(),
                stream_sid: crate::bridge::agent::twilio::random_sid("MZ"),
            },
            from: settings.caller_id.clone(),
            to: claimed.phone.clone(),
        };
        let resolve: crate::flow::control::Resolver = {
            let campaign_id = campaign.id;
            let settings = settings.clone();
            let profile = profile.clone();
            let agents = agents.clone();
            Arc::new(move |t: &str| {
                bridge_target(t, &settings, profile.as_ref(), campaign_id, &agents)
                    .map(|(target, _)| target)
                    .ok_or_else(|| {
                        format!("{t:?} is not a number, a sip: URI or an agent pool's name")
                    })
            })
        };
        let registration = self.options.live.register(
            &call_sid,
            account,
            &settings.caller_id,
            &claimed.phone,
            resolve,
        );
        let plan = AttemptPlan {
            destination: claimed.phone.clone(),
            profile: profile.clone(),
            caller_id: Some(settings.caller_id.clone()),
            ring_timeout: Duration::from_millis(settings.ring_timeout_ms().max(0) as u64),
            max_duration: MAX_CALL,
            steps,
            prompts,
            reply_to,
            record_to,
            amd,
            machine_action: settings.machine_action,
            voicemail,
            connect: connect_plan(
                settings,
                profile.as_ref(),
                campaign.id,
                &claimed,
                &agents,
                ai_agent,
            ),
            abandon_message,
            stream: Some(stream),
            registration: Some(registration),
            on_answer: None,
            incoming: None,
            events: self.options.events.as_ref().map(|bus| {
                bus.sink(crate::observe::events::CallIds {
                    account_id: account,
                    campaign_id: Some(campaign.id),
                    contact_id: Some(claimed.id),
                    attempt: Some(claimed.attempts),
                })
            }),
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let serial = self.next_serial;
        self.next_serial += 1;
        self.live.insert(
            serial,
            Live {
                campaign_id: campaign.id,
                contact_id: claimed.id,
                stop: stop_tx,
            },
        );
        let current = match self.current.get(&campaign.id) {
            Some(current) => current.subscribe(),
            None => watch::channel(Arc::new(campaign.clone())).1,
        };
        let started = current.borrow().clone();
        let job = AttemptJob {
            store: self.store.clone(),
            ua: self.ua.clone(),
            campaign: started,
            current,
            contact: claimed,
            account,
            profile_name: profile.map(|p| p.name).unwrap_or_default(),
            node: self.options.node.clone(),
            recorder: self.recorder.clone(),
            shutdown: self.cancel.clone(),
            done: self.done_tx.clone(),
            serial,
            wake: self.wake.clone(),
            events: plan.events.clone(),
        };
        tokio::spawn(job.run(plan, stop_rx));
    }
}

/// Where a person who answers is connected: the campaign's AI agent (its record, or
/// `ai_agent_url`: a Twilio Media Streams socket) — with, when the agent leaves and is set to
/// connect, its hand-off target or else `connect_to` — or, without an agent, `connect_to`; see
/// [`bridge_target`].
pub(super) fn connect_plan(
    settings: &CampaignSettings,
    profile: Option<&Profile>,
    campaign_id: i64,
    contact: &Contact,
    agents: &Arc<dyn crate::bridge::AgentSource>,
    ai_agent: Option<crate::campaign::ai::AiAgentTarget>,
) -> Option<crate::flow::Connect> {
    let ring_timeout = Duration::from_secs(settings.agent_ring_timeout_secs.max(1) as u64);
    let human = bridge_target(&settings.connect_to, settings, profile, campaign_id, agents);
    let mut custom = std::collections::BTreeMap::new();
    custom.insert("campaign_id".to_string(), campaign_id.to_string());
    custom.insert("contact_id".to_string(), contact.id.to_string());
    custom.insert("name".to_string(), contact.name.clone());
    custom.insert("from_number".to_string(), settings.caller_id.clone());
    custom.insert("to_number".to_string(), contact.phone.clone());
    let agent = ai_agent.map(|ai| {
        use crate::bridge::agent::{AgentKind, AgentTarget, OnAgentClose};
        use crate::campaign::ai::{AiAgentKind, OnAgentClose as OnClose};
        let kind = match ai.kind {
            AiAgentKind::TwilioWs => AgentKind::TwilioWs,
            AiAgentKind::L16Ws => AgentKind::L16Ws,
            AiAgentKind::WebrtcSmallwebrtc => AgentKind::WebrtcSmallWebrtc,
            AiAgentKind::WebrtcWhip => AgentKind::WebrtcWhip,
        };
        let on_close = match ai.on_agent_close {
            OnClose::Hangup => OnAgentClose::Hangup,
            OnClose::Connect => {
                let handoff = match ai
                    .handoff_target
                    .as_deref()
                    .filter(|t| !t.trim().is_empty())
                {
                    Some(t) => bridge_target(t, settings, profile, campaign_id, agents),
                    None => human.clone(),
                };
                match handoff {
                    Some((t, _)) => OnAgentClose::Connect(Box::new(t)),
                    None => OnAgentClose::Hangup,
                }
            }
        };
        AgentTarget {
            kind,
            url: ai.url,
            headers: ai.auth_header.into_iter().collect(),
            custom_parameters: ai.custom_parameters,
            sample_rate: ai.sample_rate,
            on_close,
        }
    });
    let (target, queue_timeout) = match agent {
        Some(agent) => (
            crate::bridge::BridgeTarget::Agent(Box::new(agent)),
            ring_timeout,
        ),
        None => human?,
    };
    Some(crate::flow::Connect {
        target,
        queue_timeout,
        ring_timeout,
        campaign_id: Some(campaign_id),
        contact_id: Some(contact.id),
        custom,
    })
}

/// A person's target as written (`connect_to`, or a transfer's target): a SIP URI, a number
/// through the campaign's trunk (bridged, or transferred with REFER when `transfer` says so),
/// or an agent pool (the longest-idle free agent, leased in the store), with how long the
/// person may wait for it. A single target may ring for its whole ring timeout; a pool's caller
/// waits at most `queue_timeout_secs` and is then abandoned (the abandon message).
fn bridge_target(
    connect_to: &str,
    settings: &CampaignSettings,
    profile: Option<&Profile>,
    campaign_id: i64,
    agents: &Arc<dyn crate::bridge::AgentSource>,
) -> Option<(crate::bridge::BridgeTarget, Duration)> {
    let ring_timeout = Duration::from_secs(settings.agent_ring_timeout_secs.max(1) as u64);
    let queue_timeout = Duration::from_secs(settings.queue_timeout_secs.max(1) as u64);
    Some(match ConnectTarget::parse(connect_to) {
        ConnectTarget::None => return None,
        ConnectTarget::Sip(uri) if settings.transfer == Transfer::Refer => {
            (crate::bridge::BridgeTarget::Refer { uri }, ring_timeout)
        }
        ConnectTarget::Number(number) if settings.transfer == Transfer::Refer => {
            let uri = match profile.map(|p| crate::sip::ua::trunk_uri(p.primary(), Some(&number))) {
                Some(Ok(uri)) => uri.to_string(),
                Some(Err(e)) => {
                    tracing::error!(campaign = campaign_id, "transfer target {number}: {e}");
                    return None;
                }
                None => format!("sip:{number}"),
            };
            (crate::bridge::BridgeTarget::Refer { uri }, ring_timeout)
        }
        ConnectTarget::Sip(destination) | ConnectTarget::Number(destination) => (
            crate::bridge::BridgeTarget::Sip {
                destination,
                profile: profile.cloned().map(Box::new),
            },
            queue_timeout.max(ring_timeout),
        ),
        ConnectTarget::Pool(name) => (
            crate::bridge::BridgeTarget::Pool {
                name,
                agents: agents.clone(),
                agent_ring_timeout: ring_timeout,
            },
            queue_timeout,
        ),
    })
}

/// A campaign's agent pool as the bridge sees it: leases and releases through the store.
pub(super) struct StoreAgents {
    pub(super) store: Store,
    pub(super) campaign_id: i64,
    pub(super) node: String,
    pub(super) config: Arc<Config>,
}

#[async_trait::async_trait]
impl crate::bridge::AgentSource for StoreAgents {
    async fn lease(&self, skip: &[i64]) -> Option<crate::bridge::LeasedAgent> {
        let lease = match self
            .store
            .lease_agent(self.campaign_id, &self.node, skip, now_ms())
            .await
        {
            Ok(lease) => lease?,
            Err(e) => {
                tracing::error!(campaign = self.campaign_id, "leasing an agent: {e}");
                return None;
            }
        };
        let spec = &lease.agent.spec;
        let profile = if spec.profile.is_empty() {
            None
        } else {
            match self.config.profile(&spec.profile) {
                Ok(p) => Some(p.clone()),
                Err(e) => {
                    tracing::error!(agent = %spec.name, "agent profile: {e}");
                    None
                }
            }
        };
        Some(crate::bridge::LeasedAgent {
            id: lease.agent.id,
            name: spec.name.clone(),
            target: spec.target.clone(),
            profile,
            idle_ms: lease.idle_ms,
        })
    }

    async fn release(&self, agent: i64, talk_ms: Option<u64>) {
        let now = now_ms();
        let release = match talk_ms {
            Some(talk_ms) => crate::store::agents::AgentRelease::Talked {
                ended_at: now,
                talk_ms: talk_ms as i64,
            },
            None => crate::store::agents::AgentRelease::NotConnected { at: now },
        };
        if let Err(e) = self.store.release_agent(agent, release).await {
            tracing::error!(agent, "releasing an agent: {e}");
        }
    }
}

/// The attempt record's agent-leg fields from the bridge and the flow.
fn bridge_record(r: &AttemptReport) -> crate::store::attempts::BridgeRecord {
    let mut rec = crate::store::attempts::BridgeRecord {
        queue_wait_ms: r.flow.queue_wait_ms.map(|v| v as i64),
        ..Default::default()
    };
    rec.call_sid = r.call_sid.clone();
    let Some(b) = &r.bridge else {
        rec.abandoned = r.flow.abandoned;
        return rec;
    };
    rec.bridge_kind = Some(b.kind.to_string());
    rec.bridge_target = Some(b.target.clone());
    if let Some(s) = &b.stream {
        rec.agent_first_audio_ms = s.first_audio_ms.map(|v| v as i64);
        rec.agent_marks = Some(s.marks as i64);
        rec.agent_clears = Some(s.clears as i64);
    }
    let at = |ms: Option<u64>| ms.map(|v| b.started_at_ms + v as i64);
    rec.agent_call_id = b.call_id.clone();
    rec.agent_id = b.agent.as_ref().map(|a| a.id);
    rec.agent_name = b.agent.as_ref().map(|a| a.name.clone());
    rec.agent_idle_ms = b.agent.as_ref().map(|a| a.idle_ms);
    rec.agent_ring_at = at(b.ring_ms);
    rec.agent_answer_at = at(b.bridge_ms);
    rec.bridge_start_at = rec.agent_answer_at;
    rec.bridge_end_at = rec.bridge_start_at.map(|s| s + b.talk_ms as i64);
    rec.talk_ms = b.answered.then_some(b.talk_ms as i64);
    // TSR: not connected within 2 s of the greeting counts, even if connected later.
    rec.abandoned = r.flow.abandoned
        || crate::campaign::agents::counts_as_abandoned(
            b.answered,
            r.flow
                .queue_wait_ms
                .unwrap_or(u64::MAX)
                .min(i64::MAX as u64) as i64,
        );
    rec
}

/// One attempt's task: call (its dialog's facts kept in the call's row at answer), record,
/// move the contact on, report.
struct AttemptJob {
    store: Store,
    ua: Arc<UserAgent>,
    /// As it was when the attempt started.
    campaign: Arc<Campaign>,
    /// As the engine last read it.
    current: watch::Receiver<Arc<Campaign>>,
    /// As claimed (status dialing, `attempts` already counts this attempt).
    contact: Contact,
    /// The campaign's account (whose DNC list a callee's "do not call" joins).
    account: Option<i64>,
    profile_name: String,
    /// This node (the call row's owner).
    node: String,
    recorder: Recorder,
    /// Cancelled when the node shuts down: a ringing call cancelled then keeps its retry.
    shutdown: CancellationToken,
    done: mpsc::UnboundedSender<Finished>,
    /// This attempt's key in the engine's live attempts.
    serial: u64,
    wake: Arc<Notify>,
    /// The call's events (the flow emits them; an attempt that never dialed gets its
    /// `completed` here).
    events: Option<crate::observe::events::EventSink>,
}

impl AttemptJob {
    /// The attempt, every line it logs (the call's and the flow's included) inside its span.
    async fn run(self, plan: AttemptPlan, stop: watch::Receiver<bool>) {
        let span = tracing::info_span!(
            "attempt",
            account = self.account,
            campaign = self.campaign.id,
            contact = self.contact.id,
            attempt = self.contact.attempts,
        );
        self.work(plan, stop).instrument(span).await
    }

    async fn work(self, mut plan: AttemptPlan, stop: watch::Receiver<bool>) {
        let started_at = now_ms();
        let destination = plan.destination.clone();
        let (answer_tx, mut answered) = mpsc::unbounded_channel();
        plan.on_answer = Some(answer_tx);
        // What another node needs to end this call if this one dies, kept on a task of its
        // own: a slow or unreachable store never holds the call up.
        let (recorder, contact_id, node) =
            (self.recorder.clone(), self.contact.id, self.node.clone());
        let attempt = self.contact.attempts;
        let call_over = CancellationToken::new();
        let over = call_over.clone();
        let facts_writer = tokio::spawn(async move {
            loop {
                // Facts are sent at the answer, before the call can end: once it is over,
                // what is queued is all there will be (the sender's clones may outlive it).
                let facts = tokio::select! {
                    facts = answered.recv() => facts,
                    _ = over.cancelled() => answered.try_recv().ok(),
                };
                let Some(facts) = facts else { break };
                let dialog = crate::store::to_json(&facts);
                let answer = CallAnswered {
                    contact_id,
                    node: node.clone(),
                    attempt_number: attempt,
                    dialog,
                    at: now_ms(),
                };
                if let Err(e) = recorder.answered(answer).await {
                    tracing::warn!(contact = contact_id, "keeping the dialog's facts: {e}");
                }
            }
        });
        let report = run_attempt(self.ua.clone(), plan, stop).await;
        if let (Err(e), Some(sink)) = (&report, &self.events) {
            sink.emit(
                crate::observe::events::CallEventKind::Completed,
                serde_json::json!({"outcome": "failed", "reason": e.to_string()}),
            );
        }
        // The facts land before the end deletes the row (and the contact can be claimed
        // again): a late write must not mark a later call of this contact answered. Bounded:
        // with the store down the end goes to the journal and the row stays anyway.
        call_over.cancel();
        let _ = tokio::time::timeout(FACTS_WAIT, facts_writer).await;
        let ended_at = now_ms();
        let end = self.end(&destination, report, started_at, ended_at).await;
        self.recorder.record(end).await;
        let _ = self.done.send(Finished {
            serial: self.serial,
        });
        self.wake.notify_one();
    }

    /// The attempt's end as one transaction will write it.
    async fn end(
        &self,
        destination: &str,
        report: Result<AttemptReport, super::attempt::AttemptError>,
        started_at: Millis,
        ended_at: Millis,
    ) -> AttemptEnd {
        let settings = &self.campaign.settings;
        let mut record = AttemptRecord {
            campaign_id: Some(self.campaign.id),
            contact_id: Some(self.contact.id),
            attempt_number: self.contact.attempts,
            sip_profile: self.profile_name.clone(),
            caller_id: settings.caller_id.clone(),
            billable_account: settings.billable_account.clone(),
            destination: destination.to_string(),
            started_at,
            ended_at: Some(ended_at),
            amd_mode: Some(settings.amd_mode.as_str().to_string()),
            ..AttemptRecord::default()
        };
        let result = match &report {
            Ok(r) => {
                let machine = fill_record(&mut record, r);
                AttemptResult::from_call(r.summary.outcome, machine)
            }
            Err(e) => {
                record.outcome = "failed".into();
                record.reason = e.to_string();
                AttemptResult::Failed
            }
        };
        if report.as_ref().is_ok_and(|r| r.flow.dnc_requested) {
            // The callee chose the plan's "do not call" digit: never dialed again by this
            // account (a campaign of no account: by anyone).
            let list = self.account.map_or(
                crate::store::DncList::Global,
                crate::store::DncList::Account,
            );
            match self
                .store
                .add_dnc(list, destination, "callee request (message plan)", ended_at)
                .await
            {
                Ok(_) | Err(StoreError::Conflict(_)) => tracing::info!(
                    campaign = self.campaign.id,
                    contact = self.contact.id,
                    "number added to the DNC list at the callee's request"
                ),
                Err(e) => tracing::error!(
                    campaign = self.campaign.id,
                    contact = self.contact.id,
                    "adding the number to the DNC list at the callee's request: {e}"
                ),
            }
        }
        // The retry rules count attempts themselves: give them the contact as it was
        // before this attempt was claimed.
        let mut before = self.contact.clone();
        before.attempts = before.attempts.saturating_sub(1).max(0);
        before.retries = before.attempts.saturating_sub(1).max(0);
        // A ringing call cancelled because this node is shutting down: the callee did
        // nothing, so the attempt ends `interrupted` and does not count.
        let by_shutdown = self.shutdown.is_cancelled()
            && matches!(result, AttemptResult::NoAnswer | AttemptResult::Failed)
            && record.answer_ms.is_none();
        let (update, counters) = if by_shutdown {
            record.outcome = AttemptResult::Interrupted.as_str().to_string();
            record.reason = format!("cancelled: outdial shutting down ({})", record.reason);
            let update = after_shutdown(&before, ended_at);
            let counters = Some((update.attempts, update.retries));
            (update, counters)
        } else {
            // Settings may have changed while the call ran: the current ones decide (as the
            // engine read them last; it reads them every tick and at once after an edit).
            let current = self.current.borrow().clone();
            (
                after_attempt(&current.settings, &before, result, ended_at),
                None,
            )
        };
        AttemptEnd {
            node: self.node.clone(),
            event: serde_json::json!({
                "attempt": record.attempt_number,
                "outcome": record.outcome,
                "sip_code": record.sip_code,
                "answered_by": record.answered_by,
                "amd_cause": record.amd_cause,
                "amd_decision_ms": record.amd_decision_ms,
            }),
            record,
            contact: ContactTransition {
                status: update.status,
                next_attempt_at: update.next_attempt_at,
                last_outcome: update.last_outcome,
            },
            counters,
            at: ended_at,
        }
    }
}

/// The attempt record's fields from what the call reported; whether AMD found a machine (a
/// fax, or a line where nobody spoke). One reading for outbound attempts and callbacks.
pub(super) fn fill_record(record: &mut AttemptRecord, r: &AttemptReport) -> bool {
    let s = &r.summary;
    record.call_id = s.call_id.clone();
    record.ring_ms = s.ring_ms.map(|v| v as i64);
    record.answer_ms = s.answer_ms.map(|v| v as i64);
    record.duration_ms = s.duration_ms as i64;
    record.sip_code = s.sip_code.map(i64::from);
    record.reason = s.reason.clone();
    record.outcome = s.outcome.as_str().to_string();
    record.ended_by = r.ended_by;
    record.codec = s.codec.map(str::to_string);
    record.rtp_sent = s.rtp.sent as i64;
    record.rtp_received = s.rtp.received as i64;
    record.rtp_lost = s.rtp.lost;
    record.jitter_ms = Some(s.rtp.jitter_ms);
    record.rtt_ms = s.rtp.rtt_ms;
    record.rtp_rejected_source = s.rtp.rejected_source as i64;
    record.rtp_latched_to = s.rtp.latched_to.map(|a| a.to_string());
    record.trunk = s.trunk.clone();
    record.failover = s.failover.clone();
    record.sit = s.sit.map(str::to_string);
    record.dtmf = s.dtmf_received.clone();
    record.digits = r.digits.clone();
    record.recording = r.reply.as_ref().map(|p| p.display().to_string());
    record.bridge = bridge_record(r);
    record.recording_path = r.recording.as_ref().map(|p| p.display().to_string());
    let mut machine = false;
    if let Some(a) = &r.amd {
        record.amd_verdict = Some(a.verdict.name().to_string());
        record.answered_by = Some(a.answered_by.name().to_string());
        record.amd_cause = Some(a.cause.name().to_string());
        record.amd_confidence = Some(a.confidence as f64);
        record.amd_decision_ms = a.decision_ms.map(|v| v as i64);
        record.beep_ms = a.beep_ms.map(|v| v as i64);
        // A machine, a fax, or a line where nobody ever spoke.
        machine = a.verdict == crate::amd::Verdict::Machine
            || a.cause == crate::amd::Cause::Initialsilence;
    }
    machine
}

/// The detection a campaign's AMD mode asks for (`None` when it is off).
pub fn amd_config(mode: AmdMode) -> Option<crate::amd::AmdConfig> {
    let mode = match mode {
        AmdMode::Off => return None,
        AmdMode::Heuristic => crate::amd::AmdMode::Heuristic,
        AmdMode::Text => crate::amd::AmdMode::Text,
        AmdMode::Ml => crate::amd::AmdMode::Ml,
        AmdMode::Auto => crate::amd::AmdMode::Auto,
    };
    Some(crate::amd::AmdConfig::with_mode(mode))
}
