//! A campaign whose people go to an AI agent, end to end through `outdial serve`: the agent is
//! a record (`/v1/agents/ai`: Twilio Media Streams, its auth header's value read from the
//! server's environment, custom parameters), the far end is sipp, the agent is the strict
//! Media Streams peer (tests/peers/agents/twilio_strict.py). While the person talks to the
//! agent, `POST /v1/calls/{sid}/transfer` hands them to a person (a baresip phone that records
//! what it hears): the AI leg gets `stop` once the person answered. Afterwards the agent's
//! Twilio-style call control answers 404 (code 20404) for the ended call, and 401 for a wrong
//! key.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ai_agent_campaign_and_transfer_to_a_person_through_the_api() {
    let dir = test_dir("ai_campaign_e2e");
    let dir = dir.path();
    // The person talks for a while (sipp streams this once, at the answer).
    speech_wav_padded(
        &dir.join("far.wav"),
        "Hello, yes, this is John. I got your message about the appointment. \
         I would like to move it to next week, maybe Tuesday or Wednesday afternoon, \
         if that works for you. Could I speak to someone at the front desk about it? \
         I have a question about the bill too.",
        0.1,
        2.0,
    );
    to_ulaw_raw(&dir.join("far.wav"), &dir.join("voicemail.ulaw"));
    let sipp = Sipp::uas(dir, "uas_by_number.xml")
        .stream_wav(&dir.join("far.wav"))
        .args(["-m", "10"])
        .start();
    let human_wav = dir.join("human.wav");
    speech_wav_padded(&human_wav, "Front desk, Sam speaking.", 0.2, 7.0);
    let human = Baresip::start(dir, &human_wav);

    // The AI agent: checks the auth header the record names.
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(python.is_file(), "run `make setup` (.venv)");
    let report = dir.join("agent.json");
    // It says one line, then marks its end: the call's events show the mark.
    speech_wav_padded(
        &dir.join("agent-says.wav"),
        "Hello, this is the assistant.",
        0.1,
        0.2,
    );
    let mut agent = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/agents/twilio_strict.py"))
        .args(["--port", "0", "--once", "--close-after-ms", "30000"])
        .arg("--say")
        .arg(dir.join("agent-says.wav"))
        .args(["--marks", "end"])
        .args(["--expect-header", "X-Agent-Key=s3cret-agent-key"])
        .arg("--report")
        .arg(&report)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the agent");
    let mut lines = BufReader::new(agent.stdout.take().expect("stdout")).lines();
    let port: u16 = loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("LISTENING ") => {
                break l["LISTENING ".len()..].trim().parse().expect("port")
            }
            Some(Ok(_)) => {}
            _ => panic!("the agent did not start"),
        }
    };

    let http_port = free_tcp_port();
    let (lo, hi) = free_rtp_range(20);
    std::fs::write(
        dir.join("outdial.toml"),
        format!(
            "[sip]\nlisten_udp = \"127.0.0.1:0\"\nlisten_tcp = false\n\n\
             [rtp]\nbind_addr = \"127.0.0.1\"\nport_min = {lo}\nport_max = {hi}\n\n\
             [database]\nurl = \"sqlite://{}\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n",
            dir.join("outdial.db").display()
        ),
    )
    .expect("write outdial.toml");
    write_profile(
        &dir.join("sip-profiles"),
        "far-end",
        &format!("proxy = \"127.0.0.1:{}\"\n", sipp.port),
    );
    let key = create_key(dir, "ai");

    // The server reads the agent's secret from its environment (the record names the variable).
    std::env::set_var("AI_AGENT_TEST_KEY", "s3cret-agent-key");
    let server = ServeProcess::start(dir, http_port);
    let http = reqwest::Client::new();
    let auth = format!("Bearer {key}");
    let api = |path: &str| format!("{}{path}", server.api);

    let (status, ai) = api_request(
        &http,
        &auth,
        reqwest::Method::POST,
        api("/v1/agents/ai"),
        Some(json!({
            "name": "reminder bot", "kind": "twilio_ws",
            "url": format!("ws://127.0.0.1:{port}/media"),
            "custom_parameters": {"script": "reminder-v2"},
            "auth_header_name": "X-Agent-Key", "auth_header_env": "AI_AGENT_TEST_KEY"
        })),
    )
    .await;
    assert_eq!(status, 201, "{ai}");
    assert!(
        !ai.to_string().contains("s3cret"),
        "the secret is never returned: {ai}"
    );
    let (status, created) = api_request(
        &http,
        &auth,
        reqwest::Method::POST,
        api("/v1/campaigns"),
        Some(json!({
            "name": "ai reminders", "pace": 60, "max_concurrent": 1,
            "ai_agent_id": ai["id"], "sip_profile": "far-end", "caller_id": "+12025550100"
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().expect("id");
    let (status, goal) = api_request(
        &http,
        &auth,
        reqwest::Method::POST,
        api(&format!("/v1/campaigns/{id}/goals")),
        Some(json!({"kind": "primary", "name": "Rescheduled", "type": "yes_no"})),
    )
    .await;
    assert_eq!(status, 201, "{goal}");
    let imported: Value = http
        .post(api(&format!("/v1/campaigns/{id}/contacts/import")))
        .header("Authorization", &auth)
        .header("Content-Type", "text/csv")
        .body("12025550101,John Doe\n")
        .send()
        .await
        .expect("import")
        .json()
        .await
        .expect("import JSON");
    assert_eq!(imported["inserted"], 1, "{imported}");
    let (status, _) = api_request(
        &http,
        &auth,
        reqwest::Method::POST,
        api(&format!("/v1/campaigns/{id}/start")),
        None,
    )
    .await;
    assert!(status.is_success());

    // The call is live and with the agent.
    let deadline = Instant::now() + Duration::from_secs(30);
    let sid = loop {
        assert!(Instant::now() < deadline, "no call in progress");
        let (_, calls) =
            api_request(&http, &auth, reqwest::Method::GET, api("/v1/calls"), None).await;
        if let Some(c) = calls
            .as_array()
            .and_then(|a| a.iter().find(|c| c["status"] == "in-progress"))
        {
            break c["sid"].as_str().expect("sid").to_string();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Another account's key does not see it.
    let other = format!("Bearer {}", create_key(dir, "someone-else"));
    let (status, _) = api_request(
        &http,
        &other,
        reqwest::Method::POST,
        api(&format!("/v1/calls/{sid}/transfer")),
        Some(json!({"target": human.uri()})),
    )
    .await;
    assert_eq!(status, 404, "another account's call is not found");
    let (status, moved) = api_request(
        &http,
        &auth,
        reqwest::Method::POST,
        api(&format!("/v1/calls/{sid}/transfer")),
        Some(json!({"target": human.uri()})),
    )
    .await;
    assert_eq!(status, 202, "{moved}");

    // The person talks to Sam until Sam's line ends (baresip hangs up): the campaign finishes.
    let heard = human.received_recording(Duration::from_secs(40));
    let deadline = Instant::now() + Duration::from_secs(30);
    let attempt = loop {
        assert!(Instant::now() < deadline, "no attempt recorded");
        let (_, attempts) = api_request(
            &http,
            &auth,
            reqwest::Method::GET,
            api(&format!("/v1/campaigns/{id}/attempts")),
            None,
        )
        .await;
        if let Some(a) = attempts["items"].as_array().and_then(|a| a.first()) {
            break a.clone();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(attempt["outcome"], "answered", "{attempt}");
    assert_eq!(
        attempt["ended_by"], "agent",
        "the front desk hung up: {attempt}"
    );
    // The CDR: the AI leg (the attempt's bridge), the SID the agent knew.
    assert_eq!(attempt["bridge_kind"], "twilio_ws", "{attempt}");
    assert_eq!(attempt["call_sid"], sid.as_str(), "{attempt}");
    assert!(attempt["agent_marks"].as_i64().is_some(), "{attempt}");

    // The agent reports the conversation by the call SID it got in `start`.
    let (status, stored) = api_request(
        &http,
        &auth,
        reqwest::Method::POST,
        api(&format!("/v1/attempts/{sid}/analysis")),
        Some(json!({
            "goals": [{"goal_id": goal["id"], "outcome": "achieved", "value": true}],
            "summary": "Moved to Tuesday; handed to the front desk for the bill."
        })),
    )
    .await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(stored["attempt_id"], attempt["id"], "{stored}");
    let (_, campaign_report) = api_request(
        &http,
        &auth,
        reqwest::Method::GET,
        api(&format!("/v1/campaigns/{id}/report")),
        None,
    )
    .await;
    assert_eq!(
        campaign_report["primary_goal_achievement_rate"], 1.0,
        "{campaign_report}"
    );

    let (corr, lag) = best_correlation(
        &read_wav_8k(&dir.join("far.wav"))[8000 * 4..8000 * 12],
        &read_wav_8k(&heard),
        8000 * 20,
    );
    eprintln!("the person at the front desk vs the callee's speech: {corr:.3} at lag {lag}");
    assert!(
        corr > 0.5,
        "the front desk did not hear the callee: {corr:.3}"
    );

    // The agent's mark is one of the call's events.
    let (_, marks) = api_request(
        &http,
        &auth,
        reqwest::Method::GET,
        api(&format!("/v1/events?campaign={id}&kind=agent_event")),
        None,
    )
    .await;
    assert!(
        marks["items"].as_array().is_some_and(|m| m
            .iter()
            .any(|e| e["detail"]["what"] == "mark" && e["call_id"].is_string())),
        "{marks}"
    );

    // The agent: header checked, start with the record's and the call's parameters, `stop`
    // when the person was handed on.
    let _ = agent.wait();
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    assert!(r["errors"].as_array().is_some_and(|e| e.is_empty()), "{r}");
    let c = &r["connections"][0];
    assert!(c["rejected"].is_null(), "{c}");
    let custom = &c["start"]["customParameters"];
    assert_eq!(custom["script"], "reminder-v2", "{c}");
    assert_eq!(custom["name"], "John Doe", "{c}");
    assert_eq!(custom["campaign_id"], id.to_string(), "{c}");
    assert_eq!(c["call_sid"], sid.as_str(), "{c}");
    let last = c["received"]
        .as_array()
        .and_then(|m| m.last())
        .map(|m| m["msg"]["event"].clone());
    assert_eq!(last, Some(Value::from("stop")), "{c}");

    // Twilio-style call control: the call is over (404, 20404); a wrong key is 401.
    let account = c["account_sid"].as_str().expect("account sid");
    let url = api(&format!("/2010-04-01/Accounts/{account}/Calls/{sid}.json"));
    let resp = http
        .post(&url)
        .basic_auth(account, Some(&key))
        .form(&[("Status", "completed")])
        .send()
        .await
        .expect("hang-up request");
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["code"], 20404, "{body}");
    let resp = http
        .post(&url)
        .basic_auth(account, Some("odk_wrong"))
        .form(&[("Status", "completed")])
        .send()
        .await
        .expect("hang-up request");
    assert_eq!(resp.status(), 401);
    drop(sipp);
}
