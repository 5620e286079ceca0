//! A campaign whose `connect_to` names an agent pool, dialed end to end by `outdial serve`
//! (SQLite store, admin API, engine, SIP user agent) against a sipp far end that answers:
//! the pool paces the campaign. With its only agent paused nothing is dialed; set available
//! through the API, progressive pacing keeps one call at a time (one free agent), although
//! `max_concurrent` and pace would allow four at once. Each person who answers is bridged to
//! the agent (a second sipp that answers and hangs up after 2 s): the attempt records carry
//! the agent leg, who hung up and the talk time.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_pool_paces_the_campaign_one_call_per_free_agent() {
    let dir = test_dir("agent_pacing_e2e");
    let dir = dir.path();
    speech_wav_padded(&dir.join("far.wav"), "Hello? Yes, speaking.", 0.1, 2.0);
    to_ulaw_raw(&dir.join("far.wav"), &dir.join("voicemail.ulaw"));
    let sipp = Sipp::uas(dir, "uas_by_number.xml")
        .stream_wav(&dir.join("far.wav"))
        .args(["-m", "1000"])
        .start();
    let desk = Sipp::uas(dir, "uas_remote_bye.xml")
        .stream_wav(&dir.join("far.wav"))
        .args(["-m", "4"])
        .start();
    let http_port = free_tcp_port();
    write_serve_config(dir, sipp.port, http_port, 20);
    let key = create_key(dir, "pacing");

    let server = ServeProcess::start(dir, http_port);
    let http = reqwest::Client::new();
    let auth = format!("Bearer {key}");
    let api = |path: &str| format!("{}{path}", server.api);

    let (status, agent) = api_request(
        &http,
        &auth,
        reqwest::Method::POST,
        api("/v1/agents/sip"),
        Some(json!({"name": "desk", "target": desk.uri("desk"), "state": "paused"})),
    )
    .await;
    assert_eq!(status, 201, "{agent}");
    let agent_id = agent["id"].as_i64().unwrap();
    let (status, pool) = api_request(
        &http,
        &auth,
        reqwest::Method::POST,
        api("/v1/agents/pools"),
        Some(json!({"name": "front desk", "agent_ids": [agent_id]})),
    )
    .await;
    assert_eq!(status, 201, "{pool}");
    let (status, created) = api_request(
        &http,
        &auth,
        reqwest::Method::POST,
        api("/v1/campaigns"),
        Some(json!({
            "name": "pool paced", "pace": 600, "max_concurrent": 4,
            "connect_to": "front desk", "pacing": "progressive",
            "sip_profile": "far-end", "caller_id": "+12025550100"
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    // Numbers ending 0–3 answer.
    let csv: String = (0..4).map(|i| format!("120255501{i:02},C{i}\n")).collect();
    let imported: Value = http
        .post(api(&format!("/v1/campaigns/{id}/contacts/import")))
        .header("Authorization", &auth)
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("import")
        .json()
        .await
        .expect("import JSON");
    assert_eq!(imported["inserted"], 4, "{imported}");
    let (status, started) = api_request(
        &http,
        &auth,
        reqwest::Method::POST,
        api(&format!("/v1/campaigns/{id}/start")),
        None,
    )
    .await;
    assert!(status.is_success(), "{started}");

    // The only agent is paused: nothing is dialed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_, attempts) = api_request(
        &http,
        &auth,
        reqwest::Method::GET,
        api(&format!("/v1/campaigns/{id}/attempts")),
        None,
    )
    .await;
    let (_, contacts) = api_request(
        &http,
        &auth,
        reqwest::Method::GET,
        api(&format!("/v1/campaigns/{id}/contacts?status=pending")),
        None,
    )
    .await;
    assert_eq!(attempts["total"], 0, "{attempts}");
    assert_eq!(
        contacts["total"], 4,
        "dialed with no agent free: {contacts}"
    );

    // Available: one call at a time until every contact is done.
    let (status, _) = api_request(
        &http,
        &auth,
        reqwest::Method::POST,
        api(&format!("/v1/agents/sip/{agent_id}/state")),
        Some(json!({"state": "available"})),
    )
    .await;
    assert_eq!(status, 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut campaign = Value::Null;
    while Instant::now() < deadline {
        campaign = api_request(
            &http,
            &auth,
            reqwest::Method::GET,
            api(&format!("/v1/campaigns/{id}")),
            None,
        )
        .await
        .1;
        if campaign["status"] == "finished" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        campaign["status"],
        "finished",
        "{campaign}\n{}",
        tail(
            &std::fs::read_to_string(&server.log).unwrap_or_default(),
            30
        )
    );
    let (_, attempts) = api_request(
        &http,
        &auth,
        reqwest::Method::GET,
        api(&format!("/v1/campaigns/{id}/attempts?limit=20")),
        None,
    )
    .await;
    let mut spans: Vec<(i64, i64)> = attempts["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            assert_eq!(a["outcome"], "answered", "{a}");
            // Bridged to the desk, which hung up after about 2 s.
            assert_eq!(a["agent_name"], "desk", "{a}");
            assert_eq!(a["agent_id"], agent_id, "{a}");
            assert_eq!(a["ended_by"], "agent", "{a}");
            assert!(a["agent_call_id"].is_string(), "{a}");
            let talk = a["talk_ms"].as_i64().unwrap_or(0);
            assert!((1000..5000).contains(&talk), "talk {talk} ms: {a}");
            (
                a["started_at"].as_i64().unwrap(),
                a["ended_at"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(spans.len(), 4, "{attempts}");
    spans.sort();
    for pair in spans.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1,
            "two calls were live at once with one free agent: {spans:?}"
        );
    }
    drop(server);
    drop(sipp);
    desk.wait(Duration::from_secs(20))
        .assert_passed("the desk agent answered 4 calls, each ended by its BYE");
}
