//! Webhooks with a real HTTP receiver (tests/peers/webhook_receiver.py, Python's http.server)
//! while `outdial serve` runs campaigns against a sipp far end:
//! - a campaign's own webhook (JSON) gets every event of its calls and of the campaign, each
//!   signed (`X-Outdial-Signature` = HMAC-SHA256 of `"<timestamp>.<body>"` under the account's
//!   secret, recomputed here), in order per call, although the receiver fails its first 3
//!   requests (they are retried); the deliveries API shows the retries;
//! - a campaign without one goes to the account's default webhook, in Twilio's form fields;
//! - with the receiver down, `kill -9` of `serve` with deliveries pending: after a restart
//!   every one of them arrives, none lost.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

struct Receiver {
    child: Child,
    log: PathBuf,
}

impl Receiver {
    fn start(port: u16, log: &Path, fail: u32) -> Receiver {
        let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
        assert!(python.is_file(), "run `make setup` (.venv)");
        let child = Command::new(python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/webhook_receiver.py"))
            .args([
                port.to_string(),
                log.display().to_string(),
                fail.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("webhook receiver");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the receiver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Receiver {
            child,
            log: log.to_path_buf(),
        }
    }

    /// Every request it got, in order.
    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signature(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(format!("{timestamp}.{body}").as_bytes());
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("v1={hex}")
}

fn form_field(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.replace('+', " "))
    })
}

async fn campaign(
    http: &reqwest::Client,
    auth: &str,
    api: &str,
    name: &str,
    phones: &[&str],
) -> i64 {
    let (status, created) = api_request(
        http,
        auth,
        reqwest::Method::POST,
        format!("{api}/v1/campaigns"),
        Some(json!({
            "name": name, "pace": 600, "max_concurrent": 4, "max_retries": 0,
            "amd_mode": "off", "sip_profile": "far-end", "caller_id": "+12025550100"
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().expect("id");
    for phone in phones {
        let (status, c) = api_request(
            http,
            auth,
            reqwest::Method::POST,
            format!("{api}/v1/campaigns/{id}/contacts"),
            Some(json!({"phone": phone})),
        )
        .await;
        assert!(status.is_success(), "{c}");
    }
    id
}

async fn start_and_finish(http: &reqwest::Client, auth: &str, api: &str, id: i64, log: &Path) {
    let (status, body) = api_request(
        http,
        auth,
        reqwest::Method::POST,
        format!("{api}/v1/campaigns/{id}/start"),
        None,
    )
    .await;
    assert!(status.is_success(), "{body}");
    wait_campaign_finished(http, auth, api, id, log, Duration::from_secs(60)).await;
}

/// The campaign's events (every kind), oldest first.
async fn events_of(http: &reqwest::Client, auth: &str, api: &str, id: i64) -> Vec<Value> {
    let (_, page) = api_request(
        http,
        auth,
        reqwest::Method::GET,
        format!("{api}/v1/events?campaign={id}&limit=1000"),
        None,
    )
    .await;
    page["items"].as_array().cloned().unwrap_or_default()
}

/// Waits until the receiver answered 204 to `n` requests on `path`; returns them.
fn delivered_on(rx: &Receiver, path: &str, n: usize, log: &Path) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok: Vec<Value> = rx
            .requests()
            .into_iter()
            .filter(|r| r["path"] == path && r["status"] == 204)
            .collect();
        if ok.len() >= n {
            return ok;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} delivered on {path}: {:?}\n{}",
            ok.len(),
            rx.requests(),
            tail(&std::fs::read_to_string(log).unwrap_or_default(), 20)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_signed_in_order_through_failures_and_a_kill_9() {
    let dir = test_dir("webhooks");
    let dir = dir.path();
    speech_wav_padded(&dir.join("far.wav"), "Hello? Yes, speaking.", 0.1, 0.5);
    to_ulaw_raw(&dir.join("far.wav"), &dir.join("voicemail.ulaw"));
    let sipp = Sipp::uas(dir, "uas_by_number.xml")
        .stream_wav(&dir.join("far.wav"))
        .args(["-m", "1000"])
        .start();
    let http_port = free_tcp_port();
    write_serve_config(dir, sipp.port, http_port, 20);
    let key = create_key(dir, "hooks");
    let auth = format!("Bearer {key}");
    let rx_port = free_tcp_port();
    let rx = Receiver::start(rx_port, &dir.join("rx.jsonl"), 3);
    let mut server = ServeProcess::start(dir, http_port);
    let api = server.api.clone();
    let http = reqwest::Client::new();

    // Campaign A: its own JSON webhook; B: the account's default, Twilio's fields.
    let a = campaign(
        &http,
        &auth,
        &api,
        "hooked",
        &["+12025550101", "+12025550106", "+12025550109"],
    )
    .await;
    let b = campaign(&http, &auth, &api, "defaulted", &["+12025550102"]).await;
    for body in [
        json!({"url": format!("http://127.0.0.1:{rx_port}/a"), "campaign_id": a}),
        json!({"url": format!("http://127.0.0.1:{rx_port}/default"), "format": "twilio"}),
    ] {
        let (status, hook) = api_request(
            &http,
            &auth,
            reqwest::Method::POST,
            format!("{api}/v1/webhooks"),
            Some(body),
        )
        .await;
        assert_eq!(status, 201, "{hook}");
    }
    let (status, dup) = api_request(
        &http,
        &auth,
        reqwest::Method::POST,
        format!("{api}/v1/webhooks"),
        Some(json!({"url": "http://127.0.0.1:9/x", "campaign_id": a})),
    )
    .await;
    assert_eq!(status, 409, "one webhook per campaign: {dup}");
    let (status, bad) = api_request(
        &http,
        &auth,
        reqwest::Method::POST,
        format!("{api}/v1/webhooks"),
        Some(json!({"url": "ftp://example.com/x", "campaign_id": b})),
    )
    .await;
    assert_eq!(
        (status.as_u16(), bad["error"]["field"].as_str()),
        (400, Some("url")),
        "{bad}"
    );
    // Events from before the webhooks existed (the campaigns' creation) are not sent.
    let before = [a, b].into_iter().map(|c| events_of(&http, &auth, &api, c));
    let mut last = 0;
    for events in before {
        last = events
            .await
            .iter()
            .filter_map(|e| e["id"].as_i64())
            .fold(last, i64::max);
    }
    let before = last;
    let (_, secret) = api_request(
        &http,
        &auth,
        reqwest::Method::GET,
        format!("{api}/v1/webhooks/secret"),
        None,
    )
    .await;
    let secret = secret["secret"].as_str().expect("secret").to_string();

    start_and_finish(&http, &auth, &api, a, &server.log).await;
    start_and_finish(&http, &auth, &api, b, &server.log).await;
    let events_a: Vec<Value> = events_of(&http, &auth, &api, a)
        .await
        .into_iter()
        .filter(|e| e["id"].as_i64() > Some(before))
        .collect();
    assert!(events_a.len() >= 3 * 3, "{events_a:?}");
    let got = delivered_on(&rx, "/a", events_a.len(), &server.log);
    // Every event once, none foreign, each signed.
    let sent_ids: BTreeSet<i64> = events_a.iter().filter_map(|e| e["id"].as_i64()).collect();
    let mut got_ids = BTreeSet::new();
    let mut per_call: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in &got {
        let body = r["body"].as_str().expect("body");
        let ts = r["headers"]["x-outdial-timestamp"]
            .as_str()
            .expect("timestamp");
        assert_eq!(
            r["headers"]["x-outdial-signature"].as_str(),
            Some(signature(&secret, ts, body).as_str()),
            "{r}"
        );
        assert_eq!(r["headers"]["content-type"], "application/json");
        let event: Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(event["campaign_id"], a, "{event}");
        let id = event["id"].as_i64().expect("id");
        assert!(got_ids.insert(id), "event {id} delivered twice: {got:?}");
        if let Some(call) = event["call_id"].as_str() {
            per_call.entry(call.to_string()).or_default().push(id);
        }
    }
    assert_eq!(got_ids, sent_ids);
    assert_eq!(per_call.len(), 3, "{per_call:?}");
    for (call, ids) in &per_call {
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "{call} out of order: {ids:?}"
        );
    }
    // The first three requests failed and were tried again.
    let all = rx.requests();
    assert!(all.iter().take(3).all(|r| r["status"] == 500), "{all:?}");
    let (_, deliveries) = api_request(
        &http,
        &auth,
        reqwest::Method::GET,
        format!("{api}/v1/webhooks/deliveries?limit=500"),
        None,
    )
    .await;
    let items = deliveries["items"].as_array().cloned().unwrap_or_default();
    assert!(
        items.iter().any(|d| d["attempts"].as_i64() >= Some(2)),
        "{deliveries}"
    );
    // B's events went to the default webhook, as Twilio's fields.
    let events_b: Vec<Value> = events_of(&http, &auth, &api, b)
        .await
        .into_iter()
        .filter(|e| e["id"].as_i64() > Some(before))
        .collect();
    let twilio = delivered_on(&rx, "/default", events_b.len(), &server.log);
    let bodies: Vec<&str> = twilio.iter().filter_map(|r| r["body"].as_str()).collect();
    assert!(twilio
        .iter()
        .all(|r| r["headers"]["content-type"] == "application/x-www-form-urlencoded"));
    assert!(
        bodies
            .iter()
            .any(|b| form_field(b, "CallStatus").as_deref() == Some("completed")),
        "{bodies:?}"
    );
    assert!(bodies
        .iter()
        .filter_map(|b| form_field(b, "CallSid"))
        .all(|sid| sid.starts_with("CA") && sid.len() == 34));

    // The receiver down, a third campaign's deliveries wait; kill -9; restart: all arrive.
    drop(rx);
    let c = campaign(&http, &auth, &api, "interrupted", &["+12025550103"]).await;
    start_and_finish(&http, &auth, &api, c, &server.log).await;
    let events_c = events_of(&http, &auth, &api, c).await;
    let (_, pending) = api_request(
        &http,
        &auth,
        reqwest::Method::GET,
        format!("{api}/v1/webhooks/deliveries?status=pending"),
        None,
    )
    .await;
    assert!(
        pending["total"].as_i64() >= Some(events_c.len() as i64),
        "{pending}"
    );
    server.kill9();
    drop(server);
    let rx = Receiver::start(rx_port, &dir.join("rx-after.jsonl"), 0);
    let server = ServeProcess::start(dir, http_port);
    let after = delivered_on(&rx, "/default", events_c.len(), &server.log);
    let after_ids: BTreeSet<String> = after
        .iter()
        .filter_map(|r| {
            r["body"]
                .as_str()
                .and_then(|b| form_field(b, "SequenceNumber"))
        })
        .collect();
    let c_ids: BTreeSet<String> = events_c
        .iter()
        .filter_map(|e| e["id"].as_i64().map(|i| i.to_string()))
        .collect();
    assert!(
        c_ids.is_subset(&after_ids),
        "lost: {:?}",
        c_ids.difference(&after_ids)
    );
    drop(server);
    drop(sipp);
}
