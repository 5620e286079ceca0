//! The live monitor as a plain client sees it: `curl -N` reads `GET /v1/live` (Server-Sent
//! Events) while `outdial serve` runs a campaign against a sipp far end that answers "Hello?
//! Yes, speaking.", with AMD (`auto`) and a one-agent pool (a second sipp that answers and
//! hangs up after 2 s). The stream opens with a `snapshot`, then shows the call move from
//! `ringing` to `answered` to the `amd` verdict to `bridged` to `completed`, in that order and
//! under one Call-ID, and sends `counters` with the agent; a client connecting while the call
//! is bridged gets it in its snapshot (bridged to the pool, answered by a human, talk time);
//! another account's stream shows none of it. `GET /v1/live/ws` gives the same stream over a
//! WebSocket.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// The SSE events in `text`: (name, data as JSON).
fn sse_events(text: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut name = String::from("message");
        let mut data = String::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                name = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
        if !data.is_empty() {
            let value = serde_json::from_str(&data)
                .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {data}"));
            out.push((name, value));
        }
    }
    out
}

fn curl_sse(url: &str, key: &str, out: &std::path::Path) -> std::process::Child {
    require_tool("curl");
    Command::new("curl")
        .args(["-sS", "-N", "-H"])
        .arg(format!("Authorization: Bearer {key}"))
        .arg(url)
        .stdout(Stdio::from(std::fs::File::create(out).expect("sse file")))
        .stderr(Stdio::null())
        .spawn()
        .expect("curl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_moves_from_ringing_to_amd_to_bridged_to_ended_on_the_live_stream() {
    let dir = test_dir("live_monitor");
    let dir = dir.path();
    speech_wav_padded(&dir.join("far.wav"), "Hello? Yes, speaking.", 0.1, 3.0);
    // The scenario's machine numbers stream it; this campaign calls none.
    to_ulaw_raw(&dir.join("far.wav"), &dir.join("voicemail.ulaw"));
    let sipp = Sipp::uas(dir, "uas_by_number.xml")
        .stream_wav(&dir.join("far.wav"))
        .args(["-m", "10"])
        .start();
    let desk = Sipp::uas(dir, "uas_remote_bye.xml")
        .stream_wav(&dir.join("far.wav"))
        .args(["-m", "1"])
        .start();
    let http_port = free_tcp_port();
    write_serve_config(dir, sipp.port, http_port, 20);
    let key = create_key(dir, "monitor");
    let other = create_key(dir, "elsewhere");
    let server = ServeProcess::start(dir, http_port);
    let http = reqwest::Client::new();
    let auth = format!("Bearer {key}");
    let api = |path: &str| format!("{}{path}", server.api);

    let (status, agent) = api_request(
        &http,
        &auth,
        reqwest::Method::POST,
        api("/v1/agents/sip"),
        Some(json!({"name": "desk", "target": desk.uri("desk"), "state": "available"})),
    )
    .await;
    assert_eq!(status, 201, "{agent}");
    let (status, pool) = api_request(
        &http,
        &auth,
        reqwest::Method::POST,
        api("/v1/agents/pools"),
        Some(json!({"name": "desk pool", "agent_ids": [agent["id"]]})),
    )
    .await;
    assert_eq!(status, 201, "{pool}");
    let (status, created) = api_request(
        &http,
        &auth,
        reqwest::Method::POST,
        api("/v1/campaigns"),
        Some(json!({
            "name": "watched", "pace": 60, "max_concurrent": 1,
            "connect_to": "desk pool", "amd_mode": "auto",
            "sip_profile": "far-end", "caller_id": "+12025550100"
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().expect("id");
    let (status, contact) = api_request(
        &http,
        &auth,
        reqwest::Method::POST,
        api(&format!("/v1/campaigns/{id}/contacts")),
        Some(json!({"phone": "+12025550101", "name": "Ann"})),
    )
    .await;
    assert!(status.is_success(), "{contact}");

    let ours = dir.join("ours.sse");
    let theirs = dir.join("theirs.sse");
    let mut reader = curl_sse(&api("/v1/live"), &key, &ours);
    let mut stranger = curl_sse(&api("/v1/live"), &other, &theirs);
    // The stream is open (its snapshot came) before the campaign starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&ours)
        .unwrap_or_default()
        .contains("event: snapshot")
    {
        assert!(Instant::now() < deadline, "no snapshot on /v1/live");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, started) = api_request(
        &http,
        &auth,
        reqwest::Method::POST,
        api(&format!("/v1/campaigns/{id}/start")),
        None,
    )
    .await;
    assert!(status.is_success(), "{started}");
    // Once bridged, a new client's snapshot shows the call bridged (the agent talks 2 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&ours)
        .unwrap_or_default()
        .contains("event: bridged")
    {
        assert!(
            Instant::now() < deadline,
            "never bridged:\n{}",
            server.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let snap = Command::new("curl")
        .args(["-sS", "-N", "--max-time", "1", "-H"])
        .arg(format!("Authorization: Bearer {key}"))
        .arg(api("/v1/live"))
        .output()
        .expect("curl");
    let snap = sse_events(&String::from_utf8_lossy(&snap.stdout));
    let calls = snap[0].1["calls"].as_array().cloned().unwrap_or_default();
    assert_eq!(calls.len(), 1, "{snap:?}");
    assert_eq!(calls[0]["state"], "bridged", "{snap:?}");
    assert_eq!(calls[0]["bridged_to"], "pool:desk pool", "{snap:?}");
    assert_eq!(calls[0]["answered_by"], "human", "{snap:?}");
    assert!(
        calls[0]["talk_ms"].as_i64().is_some_and(|t| t > 0),
        "{snap:?}"
    );
    // Until the call's completed event is on the stream, and a counters event after it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = sse_events(&std::fs::read_to_string(&ours).unwrap_or_default());
        let done = events.iter().position(|(n, _)| n == "completed");
        if done.is_some_and(|d| events[d..].iter().any(|(n, _)| n == "counters")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no completed call on /v1/live: {events:?}\n{}",
            server.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = reader.kill();
    let _ = reader.wait();
    let _ = stranger.kill();
    let _ = stranger.wait();

    let events = sse_events(&std::fs::read_to_string(&ours).expect("sse"));
    assert_eq!(events[0].0, "snapshot", "{events:?}");
    assert!(events[0].1["calls"].is_array() && events[0].1["agents"].is_array());
    let call_id = events
        .iter()
        .find(|(n, _)| n == "initiated")
        .and_then(|(_, e)| e["call_id"].as_str())
        .expect("initiated with a Call-ID")
        .to_string();
    let order: Vec<&str> = events
        .iter()
        .filter(|(_, e)| e["call_id"] == call_id.as_str())
        .map(|(n, _)| n.as_str())
        .collect();
    let at = |k: &str| {
        order
            .iter()
            .position(|x| *x == k)
            .unwrap_or_else(|| panic!("no {k} in {order:?}"))
    };
    assert!(at("initiated") < at("ringing"), "{order:?}");
    assert!(at("ringing") < at("answered"), "{order:?}");
    assert!(at("answered") < at("amd"), "{order:?}");
    assert!(at("amd") < at("bridged"), "{order:?}");
    assert!(at("bridged") < at("completed"), "{order:?}");
    let amd = &events.iter().find(|(n, _)| n == "amd").expect("amd").1;
    assert_eq!(amd["detail"]["answered_by"], "human", "{amd}");
    let bridged = &events
        .iter()
        .find(|(n, _)| n == "bridged")
        .expect("bridged")
        .1;
    assert_eq!(bridged["detail"]["kind"], "pool", "{bridged}");
    let counters = &events
        .iter()
        .rev()
        .find(|(n, _)| n == "counters")
        .expect("counters")
        .1;
    assert!(
        counters["agents"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["name"] == "desk")),
        "{counters}"
    );
    // The other account's stream: its snapshot and counters, none of our calls.
    let strange = sse_events(&std::fs::read_to_string(&theirs).expect("sse"));
    assert_eq!(strange.first().map(|(n, _)| n.as_str()), Some("snapshot"));
    assert!(
        strange
            .iter()
            .all(|(n, e)| n == "snapshot" || n == "counters" && e["calls"] == json!([])),
        "{strange:?}"
    );
    assert!(!strange
        .iter()
        .any(|(_, e)| e.to_string().contains(&call_id)));
    // The same stream over a WebSocket: its first frame is the snapshot.
    let url = api("/v1/live/ws").replacen("http://", "ws://", 1);
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            url.as_str(),
        )
        .expect("ws request");
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {key}").parse().expect("header"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("WebSocket to /v1/live/ws");
    use futures_util::StreamExt;
    let first = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a frame within 5 s")
        .expect("a frame")
        .expect("a good frame");
    let first: Value = serde_json::from_str(first.to_text().expect("text")).expect("JSON");
    assert_eq!(first["event"], "snapshot", "{first}");
    assert!(first["data"]["calls"].is_array(), "{first}");
    drop(ws);
    drop(server);
    drop(sipp);
    drop(desk);
}
