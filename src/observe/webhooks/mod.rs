//! Webhook delivery: the dispatcher that takes due deliveries from the store's outbox (see
//! [`crate::store::webhooks`]) and POSTs each event to its webhook's URL, in the webhook's
//! [`Format`] (one file per format: [`json`], [`twilio`]), signed with the account's secret.
//!
//! Each request carries `X-Outdial-Timestamp` (Unix seconds) and `X-Outdial-Signature:
//! v1=<hex>`, the HMAC-SHA256 of `"<timestamp>.<body>"` under the account's webhook secret
//! ([`signature`]); a receiver recomputes it over the raw body and compares in constant time,
//! and refuses timestamps more than a few minutes old. A 2xx answer delivers; anything else
//! (another status, a refused connection, no answer in [`TIMEOUT`]) is tried again after 1 s,
//! 2 s, 4 s … (at most an hour apart) until [`GIVE_UP_AFTER`], then given up. A call's events
//! go out in order: the next waits until the one before is delivered or given up.
//!
//! Must not: send one account's events to another's URL, send a delivery twice at once (a
//! node claims one before sending it), or let a slow receiver hold up another's.

pub mod json;
pub mod twilio;

use std::collections::HashMap;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::events::EventBus;
use crate::campaign::model::Millis;
use crate::store::events::Event;
use crate::store::webhooks::{Delivery, Webhook};
use crate::store::Store;

/// How long a receiver may take to answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// A delivery not made within this long of its event is given up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// The longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Deliveries sent at once, each to its own stream.
const PARALLEL: usize = 16;
/// How often the outbox is looked at when no event wakes the dispatcher.
const POLL: Duration = Duration::from_secs(1);
/// How long a secret read from the store is used before reading it again (a rotation
/// reaches every node within this).
const SECRET_TTL_MS: Millis = 30_000;

/// How a webhook's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The event as `GET /v1/events` shows it (`application/json`).
    Json,
    /// Twilio's status-callback form fields (`application/x-www-form-urlencoded`).
    Twilio,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Some(Format::Json),
            "twilio" => Some(Format::Twilio),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Twilio => "twilio",
        }
    }

    /// The body and its content type.
    pub fn body(self, event: &Event) -> (String, &'static str) {
        match self {
            Format::Json => (json::body(event), "application/json"),
            Format::Twilio => (twilio::body(event), "application/x-www-form-urlencoded"),
        }
    }
}

/// `v1=<hex HMAC-SHA256 of "<timestamp>.<body>">` under `secret`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    // HMAC takes a key of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    let tag = mac.finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

/// When a delivery tried `attempts` times is tried next.
pub fn next_try(now: Millis, attempts: i64) -> Millis {
    let exp = attempts.clamp(0, 20) as u32;
    let wait = Duration::from_secs(1)
        .saturating_mul(2u32.saturating_pow(exp))
        .min(MAX_BACKOFF);
    now + wait.as_millis() as Millis
}

/// Runs the dispatcher until `stop`: sends due deliveries, woken by stored events (once for
/// the events stored together) and every [`POLL`].
pub fn spawn(
    store: Store,
    bus: EventBus,
    node: String,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = match reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("outdial/", env!("CARGO_PKG_VERSION")))
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "webhooks are off: no HTTP client");
                return;
            }
        };
        let mut wake = bus.subscribe();
        drop(bus);
        let mut secrets: HashMap<i64, (String, Millis)> = HashMap::new();
        while !stop.is_cancelled() {
            let now = now_ms();
            let started = std::time::Instant::now();
            let due = store.due_deliveries(now, PARALLEL as i64).await;
            metrics::histogram!("outdial_store_seconds", "op" => "due_deliveries")
                .record(started.elapsed().as_secs_f64());
            let due = match due {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook outbox not readable: retrying");
                    Vec::new()
                }
            };
            let mut sends = Vec::new();
            for (delivery, event, webhook) in due {
                let until = now + TIMEOUT.as_millis() as Millis * 3;
                match store.claim_delivery(delivery.id, &node, now, until).await {
                    Ok(true) => {}
                    _ => continue,
                }
                let secret = match secrets.get(&delivery.account_id) {
                    Some((s, at)) if now - at < SECRET_TTL_MS => s.clone(),
                    _ => match store.webhook_secret(delivery.account_id).await {
                        Ok(s) => {
                            secrets.insert(delivery.account_id, (s.clone(), now));
                            s
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "webhook secret not readable");
                            continue;
                        }
                    },
                };
                sends.push(send(&http, &store, delivery, event, webhook, secret));
            }
            let busy = !sends.is_empty();
            futures_util::future::join_all(sends).await;
            if busy {
                continue;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = wake.recv() => {
                    // One look at the outbox for a whole batch of events, not one per event.
                    while wake.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    })
}

async fn send(
    http: &reqwest::Client,
    store: &Store,
    delivery: Delivery,
    event: Event,
    webhook: Webhook,
    secret: String,
) {
    let format = Format::parse(&webhook.format).unwrap_or(Format::Json);
    let (body, content_type) = format.body(&event);
    let timestamp = now_ms() / 1000;
    let result = http
        .post(&webhook.url)
        .header("Content-Type", content_type)
        .header("X-Outdial-Timestamp", timestamp.to_string())
        .header("X-Outdial-Signature", signature(&secret, timestamp, &body))
        .header("X-Outdial-Event", event.kind.as_str())
        .header("X-Outdial-Delivery", delivery.id.to_string())
        .body(body)
        .send()
        .await;
    let now = now_ms();
    let (status, error) = match result {
        Ok(resp) if resp.status().is_success() => (Some(i64::from(resp.status().as_u16())), None),
        Ok(resp) => (
            Some(i64::from(resp.status().as_u16())),
            Some(format!("answered {}", resp.status())),
        ),
        Err(e) => (None, Some(describe(&e))),
    };
    let delivered = error.is_none();
    let result = if delivered { "delivered" } else { "failed" };
    metrics::counter!("outdial_webhook_deliveries_total", "result" => result).increment(1);
    if delivered {
        // From the event to its delivery: what a receiver waits.
        metrics::histogram!("outdial_webhook_lag_seconds")
            .record((now - event.at).max(0) as f64 / 1000.0);
    }
    let expired = now - delivery.created_at >= GIVE_UP_AFTER.as_millis() as Millis;
    let next = (!delivered).then(|| next_try(now, delivery.attempts));
    if let Some(why) = &error {
        if expired {
            tracing::warn!(delivery = delivery.id, webhook = webhook.id, reason = %why, "webhook delivery given up after 24 h");
        } else {
            tracing::debug!(delivery = delivery.id, reason = %why, "webhook delivery failed: retrying");
        }
    }
    if let Err(e) = store
        .delivery_tried(
            delivery.id,
            status,
            error.as_deref(),
            next,
            expired && !delivered,
            now,
        )
        .await
    {
        tracing::warn!(error = %e, delivery = delivery.id, "webhook delivery not recorded: it will be sent again");
    }
}

/// A failed request in a few words (never the URL's query, which may hold a token).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("no answer within {} s", TIMEOUT.as_secs())
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    }
}

fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2's key and data, as "<timestamp>.<body>" = "what do ya want for
        // nothing?" split at its first '.'-free point is not possible, so check by recomputing.
        let sig = signature("Jefe", 1_700_000_000, "{\"a\":1}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"1700000000.{\"a\":1}");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(sig, format!("v1={hex}"));
        assert_ne!(sig, signature("Jefe", 1_700_000_001, "{\"a\":1}"));
        assert_ne!(sig, signature("jefe", 1_700_000_000, "{\"a\":1}"));
        // RFC 4231 test case 2 itself: key "Jefe", data "what do ya want for nothing?".
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn retries_back_off_to_an_hour() {
        assert_eq!(next_try(0, 0), 1000);
        assert_eq!(next_try(0, 1), 2000);
        assert_eq!(next_try(0, 3), 8000);
        assert_eq!(next_try(0, 30), 3_600_000);
        assert_eq!(Format::parse("Twilio"), Some(Format::Twilio));
        assert_eq!(Format::parse("xml"), None);
    }
}
