//! Prometheus metrics (`GET /metrics`): one recorder per process (the `metrics` facade with
//! its Prometheus recorder), fed from the stored call events ([`record_event`]: attempts by
//! outcome and trunk, ring and answer times, AMD verdicts and decision times, RTP loss, jitter
//! and concealment, bridges, queue waits, abandons) and, when scraped, from what is true now
//! ([`Gauges`]: calls in progress by state, trunk health and free channels, dropped events,
//! the transcription backlog, build info); the webhook dispatcher counts its deliveries and
//! their lag.
//!
//! Must not: label a series with anything that grows without bound (no call ids, numbers or
//! campaign names: outcome, trunk, mode, AnsweredBy, state and kind only), or make a call wait
//! (recording is a few atomic operations).

use std::sync::OnceLock;

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde_json::Value;

use crate::store::events::Event;

/// Seconds buckets for call timings (ring, answer, AMD decision, queue wait).
const SECONDS: &[f64] = &[
    0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 60.0,
];
/// Buckets for per-call RTP counts (packets lost, frames concealed).
const COUNTS: &[f64] = &[0.0, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0];
/// Buckets for jitter (ms).
const JITTER_MS: &[f64] = &[0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed on first use; `None` when another recorder was installed
/// first (then nothing is exported).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("outdial_rtp_lost_packets".into()),
                        COUNTS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("outdial_rtp_concealed_frames".into()),
                        COUNTS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("outdial_rtp_dropped_frames".into()),
                        COUNTS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("outdial_store_group_size".into()),
                        COUNTS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("outdial_rtp_jitter_ms".into()),
                        JITTER_MS,
                    )
                });
            let handle = match builder.map(PrometheusBuilder::install_recorder) {
                Ok(Ok(handle)) => handle,
                Ok(Err(e)) | Err(e) => {
                    tracing::warn!(error = %e, "Prometheus metrics are off");
                    return None;
                }
            };
            describe();
            Some(handle)
        })
        .as_ref()
}

/// How often recorded histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds recorded histogram samples into their buckets every few seconds. The recorder keeps
/// each sample until an upkeep: without this task a node that is never scraped would hold every
/// sample of its life. Does nothing when the recorder is off.
pub fn spawn_upkeep() -> Option<tokio::task::JoinHandle<()>> {
    let handle = handle()?;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            handle.run_upkeep();
        }
    }))
}

fn describe() {
    describe_counter!(
        "outdial_calls_initiated_total",
        "Calls placed (INVITEs sent) and callbacks taken: their rate is the calls per second"
    );
    describe_counter!(
        "outdial_attempts_total",
        "Finished calls by outcome and trunk"
    );
    describe_histogram!(
        "outdial_ring_seconds",
        "From the INVITE to the first ringing response"
    );
    describe_histogram!("outdial_answer_seconds", "From the INVITE to the answer");
    describe_histogram!("outdial_call_seconds", "Answered calls' length");
    describe_counter!(
        "outdial_amd_verdicts_total",
        "Answering-machine verdicts by mode and AnsweredBy (at the call's end)"
    );
    describe_histogram!(
        "outdial_amd_decision_seconds",
        "Audio time from the answer to the verdict"
    );
    describe_histogram!(
        "outdial_rtp_lost_packets",
        "Far-end RTP packets lost per answered call"
    );
    describe_histogram!(
        "outdial_rtp_jitter_ms",
        "Far-end interarrival jitter per answered call (ms)"
    );
    describe_histogram!(
        "outdial_rtp_concealed_frames",
        "Frames the jitter buffer made up per answered call"
    );
    describe_histogram!(
        "outdial_rtp_dropped_frames",
        "Frames per answered call its consumer (detection, a recorder, an agent) was too slow to take"
    );
    describe_counter!(
        "outdial_media_wakeups_total",
        "Media engine worker wake-ups (ticks and socket readiness)"
    );
    describe_counter!(
        "outdial_media_packets_received_total",
        "RTP/RTCP datagrams the media engine read"
    );
    describe_counter!(
        "outdial_media_packets_sent_total",
        "RTP datagrams the media engine sent (paced and relayed)"
    );
    describe_counter!(
        "outdial_media_late_sends_total",
        "Paced 20 ms packets sent a frame (20 ms) or more after they were due, or skipped after a stall"
    );
    describe_counter!(
        "outdial_media_io_errors_total",
        "Media engine socket errors"
    );
    describe_counter!(
        "outdial_bridges_total",
        "People connected to a target, by kind"
    );
    describe_histogram!(
        "outdial_queue_wait_seconds",
        "From a person's verdict to a connected target"
    );
    describe_counter!("outdial_abandoned_total", "People no target took in time");
    describe_counter!("outdial_dtmf_total", "Keys the far ends pressed");
    describe_gauge!("outdial_calls_in_progress", "Calls now, by state");
    describe_gauge!(
        "outdial_trunk_up",
        "1 when the trunk answers its OPTIONS pings (or is not pinged), 0 when down"
    );
    describe_gauge!(
        "outdial_trunk_channels_free",
        "Channels this node may still open on the trunk"
    );
    describe_gauge!(
        "outdial_events_dropped",
        "Call events dropped because their queue was full"
    );
    describe_gauge!(
        "outdial_transcriptions_queued",
        "Greetings waiting for the speech recognizer"
    );
    describe_gauge!("outdial_build_info", "Always 1; the version is the label");
    describe_histogram!("outdial_store_seconds", "Store statements on the hot paths by op: claiming a tick's group of calls (claim_calls), an attempt's record, contact transition and event, waiting for its group commit (finish_attempt), a batch of events with their deliveries (append_events), the webhook outbox (due_deliveries)");
    describe_histogram!(
        "outdial_store_write_turn_wait_seconds",
        "SQLite only: how long a hot-path writer (op: claim_calls, calls_answered, finish_attempts, append_events) queued for the store's one write turn"
    );
    describe_histogram!(
        "outdial_store_write_turn_held_seconds",
        "SQLite only: how long a hot-path writer (op as for the wait) held the write turn, its whole transaction"
    );
    describe_histogram!(
        "outdial_store_group_size",
        "Attempt ends written per group commit (one transaction)"
    );
    describe_histogram!(
        "outdial_engine_tick_seconds",
        "One campaign's turn of the engine (its store reads, the pacer, the claims)"
    );
    describe_counter!(
        "outdial_webhook_deliveries_total",
        "Webhook requests by result (delivered, or failed and to be retried or given up)"
    );
    describe_histogram!(
        "outdial_webhook_lag_seconds",
        "From an event to its webhook delivery"
    );
}

/// Counts one stored event.
pub fn record_event(event: &Event) {
    let d = &event.detail;
    let num = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    match event.kind.as_str() {
        "initiated" => counter!("outdial_calls_initiated_total").increment(1),
        "dtmf" => counter!("outdial_dtmf_total").increment(1),
        "abandoned" => counter!("outdial_abandoned_total").increment(1),
        "bridged" => {
            counter!("outdial_bridges_total", "kind" => text(d, "kind")).increment(1);
            if let Some(ms) = num(d, "queue_wait_ms") {
                histogram!("outdial_queue_wait_seconds").record(ms / 1000.0);
            }
        }
        "amd" => {
            if let Some(ms) = num(d, "decision_ms") {
                histogram!("outdial_amd_decision_seconds").record(ms / 1000.0);
            }
        }
        "completed" => {
            let outcome = text(d, "outcome");
            let trunk = text(d, "trunk");
            counter!("outdial_attempts_total", "outcome" => outcome, "trunk" => trunk).increment(1);
            if let Some(ms) = num(d, "ring_ms") {
                histogram!("outdial_ring_seconds").record(ms / 1000.0);
            }
            if let Some(ms) = num(d, "answer_ms") {
                histogram!("outdial_answer_seconds").record(ms / 1000.0);
                if let Some(len) = num(d, "duration_ms") {
                    histogram!("outdial_call_seconds").record(len / 1000.0);
                }
                if let Some(rtp) = d.get("rtp") {
                    if let Some(n) = num(rtp, "lost") {
                        histogram!("outdial_rtp_lost_packets").record(n.max(0.0));
                    }
                    if let Some(j) = num(rtp, "jitter_ms") {
                        histogram!("outdial_rtp_jitter_ms").record(j);
                    }
                    if let Some(n) = num(rtp, "concealed") {
                        histogram!("outdial_rtp_concealed_frames").record(n);
                    }
                    if let Some(n) = num(rtp, "dropped_frames") {
                        histogram!("outdial_rtp_dropped_frames").record(n);
                    }
                }
            }
            let answered_by = text(d, "answered_by");
            if !answered_by.is_empty() {
                let mode = text(d, "amd_mode");
                counter!("outdial_amd_verdicts_total", "mode" => mode, "answered_by" => answered_by)
                    .increment(1);
            }
        }
        _ => {}
    }
}

/// What is true at scrape time.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Calls in progress by state name.
    pub calls_by_state: Vec<(&'static str, usize)>,
    /// (trunk, up, free channels on this node if limited).
    pub trunks: Vec<(String, bool, Option<u32>)>,
    pub events_dropped: u64,
    pub transcriptions_queued: Option<usize>,
    /// The media engine's counters, once a call started it.
    pub media: Option<crate::media::engine::EngineCounters>,
}

/// Sets the gauges, then renders every metric in the Prometheus text format.
pub fn render(gauges: &Gauges) -> Option<String> {
    let handle = handle()?;
    for (state, n) in &gauges.calls_by_state {
        gauge!("outdial_calls_in_progress", "state" => *state).set(*n as f64);
    }
    for (trunk, up, free) in &gauges.trunks {
        gauge!("outdial_trunk_up", "trunk" => trunk.clone()).set(if *up { 1.0 } else { 0.0 });
        if let Some(free) = free {
            gauge!("outdial_trunk_channels_free", "trunk" => trunk.clone()).set(f64::from(*free));
        }
    }
    gauge!("outdial_events_dropped").set(gauges.events_dropped as f64);
    if let Some(n) = gauges.transcriptions_queued {
        gauge!("outdial_transcriptions_queued").set(n as f64);
    }
    if let Some(m) = gauges.media {
        counter!("outdial_media_wakeups_total").absolute(m.wakeups);
        counter!("outdial_media_packets_received_total").absolute(m.received);
        counter!("outdial_media_packets_sent_total").absolute(m.sent);
        counter!("outdial_media_late_sends_total").absolute(m.late_sends);
        counter!("outdial_media_io_errors_total").absolute(m.io_errors);
    }
    gauge!("outdial_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    handle.run_upkeep();
    Some(handle.render())
}
