//! A campaign of 20 contacts dialed end to end: `outdial serve` (SQLite store, admin API,
//! engine, SIP user agent) against one sipp far end that answers, is busy, never answers
//! or declines depending on the number's last digit (tests/scenarios/uas_by_number.xml).
//! Everything goes through the real HTTP API: a key made by `outdial keys create`, the
//! campaign created, the CSV imported, the campaign started; then every contact must end
//! in the right status with the right attempt count, and the attempt records (CDRs) must
//! carry what sipp answered.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// Campaigns name media files, not paths: the WAVs go into `serve`'s media directory
/// (`media/` in its working directory). A copy stays in the working directory for an engine
/// that opens the name as given.
fn into_media_dir(dir: &Path, names: &[&str]) {
    let media = dir.join("media");
    std::fs::create_dir_all(&media).expect("media directory");
    for name in names {
        std::fs::copy(dir.join(name), media.join(name)).expect("copy into media/");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_contacts_end_in_the_right_status_with_the_right_attempts() {
    let dir = test_dir("campaign_e2e");
    let dir = dir.path();
    speech_wav_padded(&dir.join("far.wav"), "Hello? Yes, speaking.", 0.1, 2.0);
    speech_wav_padded(
        &dir.join("message.wav"),
        "This is a reminder. Goodbye.",
        0.1,
        0.2,
    );
    into_media_dir(dir, &["message.wav"]);
    // Numbers ending in 4 or 5 reach a voicemail stream; AMD is off here, so it is just audio.
    // (sipp reads its stream files when it starts.)
    to_ulaw_raw(&dir.join("far.wav"), &dir.join("voicemail.ulaw"));
    let sipp = Sipp::uas(dir, "uas_by_number.xml")
        .stream_wav(&dir.join("far.wav"))
        .args(["-m", "1000"])
        .start();
    let http_port = free_tcp_port();
    write_serve_config(dir, sipp.port, http_port, 40);

    let key = create_key(dir, "e2e");
    assert!(!key.is_empty(), "keys create printed no key");

    let server = ServeProcess::start_with_env(
        dir,
        http_port,
        &[("OUTDIAL_METRICS_TOKEN", "scrape-me-please")],
    );
    let http = reqwest::Client::new();
    let auth = format!("Bearer {key}");

    let created: Value = http
        .post(format!("{}/v1/campaigns", server.api))
        .header("Authorization", &auth)
        .json(&json!({
            "name": "e2e", "pace": 600, "max_concurrent": 5,
            "ring_timeout_secs": 3, "ring_timeout_override": true,
            "max_retries": 1, "retry_interval": {"value": 2, "unit": "seconds"},
            "play_message": "message.wav",
            "sip_profile": "far-end", "caller_id": "+12025550100"
        }))
        .send()
        .await
        .expect("POST /v1/campaigns")
        .json()
        .await
        .expect("campaign JSON");
    let id = created["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id in {created}"));

    // Last digit: 0-5 answer, 6-7 busy, 8 never answers, 9 declines; two of each.
    let csv: String = (0..20)
        .map(|i| format!("120255501{i:02},Contact {i},e2e\n"))
        .collect();
    let imported: Value = http
        .post(format!("{}/v1/campaigns/{id}/contacts/import", server.api))
        .header("Authorization", &auth)
        .header("Content-Type", "text/csv")
        .body(csv)
        .send()
        .await
        .expect("import")
        .json()
        .await
        .expect("import JSON");
    assert_eq!(imported["inserted"], 20, "{imported}");

    let started = http
        .post(format!("{}/v1/campaigns/{id}/start", server.api))
        .header("Authorization", &auth)
        .send()
        .await
        .expect("start");
    assert!(started.status().is_success(), "start: {}", started.status());

    wait_campaign_finished(
        &http,
        &auth,
        &server.api,
        id,
        &server.log,
        Duration::from_secs(90),
    )
    .await;

    let contacts: Value = api_json(
        &http,
        &auth,
        reqwest::Method::GET,
        format!("{}/v1/campaigns/{id}/contacts?limit=100", server.api),
        None,
    )
    .await;
    let items = contacts["items"].as_array().expect("items");
    assert_eq!(items.len(), 20, "{contacts}");
    for c in items {
        let phone = c["phone"].as_str().expect("phone");
        let last = phone
            .chars()
            .last()
            .and_then(|d| d.to_digit(10))
            .expect("digit");
        let (status, attempts) = match last {
            0..=5 => ("answered", 1),
            6 | 7 => ("rejected", 2),
            8 => ("not_answered", 2),
            _ => ("rejected", 2),
        };
        assert_eq!(c["status"], status, "{phone}: {c}");
        assert_eq!(c["attempts"], attempts, "{phone}: {c}");
    }

    let attempts: Value = api_json(
        &http,
        &auth,
        reqwest::Method::GET,
        format!("{}/v1/campaigns/{id}/attempts?limit=200", server.api),
        None,
    )
    .await;
    let rows = attempts["items"].as_array().expect("items");
    assert_eq!(rows.len(), 12 + 4 * 2 + 2 * 2 + 2 * 2, "{attempts}");
    let mut codes: HashMap<i64, usize> = HashMap::new();
    for a in rows {
        *codes
            .entry(a["sip_code"].as_i64().unwrap_or(0))
            .or_default() += 1;
        assert!(!a["call_id"].as_str().unwrap_or("").is_empty(), "{a}");
        if a["outcome"] == "answered" {
            assert!(
                a["rtp_received"].as_i64().unwrap_or(0) > 10,
                "no audio heard: {a}"
            );
            assert!(a["duration_ms"].as_i64().unwrap_or(0) > 500, "{a}");
            // sipp waits for our BYE once the message has played.
            assert_eq!(a["ended_by"], "system", "{a}");
        } else {
            assert!(a["ended_by"].is_null(), "{a}");
        }
    }
    assert_eq!(codes.get(&200), Some(&12), "{codes:?}");
    assert_eq!(codes.get(&486), Some(&8), "{codes:?}");
    assert_eq!(codes.get(&487), Some(&4), "{codes:?}");
    assert_eq!(codes.get(&603), Some(&4), "{codes:?}");

    let report: Value = api_json(
        &http,
        &auth,
        reqwest::Method::GET,
        format!("{}/v1/campaigns/{id}/report", server.api),
        None,
    )
    .await;
    assert!(report.to_string().contains("\"answered\":12"), "{report}");
    // Prometheus: the scrape token (or an admin key) reads /metrics; Prometheus' own parser
    // takes it; the attempts by outcome are the campaign's.
    let metrics_url = format!("{}/metrics", server.api);
    let anonymous = http.get(&metrics_url).send().await.expect("GET /metrics");
    assert_eq!(anonymous.status(), 401);
    let wrong = http
        .get(&metrics_url)
        .bearer_auth("scrape-me-not")
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(wrong.status(), 401);
    let scraped = http
        .get(&metrics_url)
        .bearer_auth("scrape-me-please")
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(scraped.status(), 200);
    let text = scraped.text().await.expect("metrics text");
    let samples = prometheus_samples(&text);
    let sum = |name: &str, label: &str, value: &str| -> f64 {
        samples
            .iter()
            .filter(|s| s["name"] == name && s["labels"][label] == value)
            .filter_map(|s| s["value"].as_f64())
            .sum()
    };
    let mut by_outcome: HashMap<String, usize> = HashMap::new();
    for a in rows {
        *by_outcome
            .entry(a["outcome"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    for (outcome, n) in &by_outcome {
        assert_eq!(
            sum("outdial_attempts_total", "outcome", outcome),
            *n as f64,
            "{outcome}: {text}"
        );
    }
    assert_eq!(
        samples
            .iter()
            .filter(|s| s["name"] == "outdial_calls_initiated_total")
            .filter_map(|s| s["value"].as_f64())
            .sum::<f64>(),
        rows.len() as f64,
        "{text}"
    );
    assert!(
        samples
            .iter()
            .any(|s| s["name"] == "outdial_ring_seconds_count"),
        "{text}"
    );
    assert_eq!(sum("outdial_calls_in_progress", "state", "bridged"), 0.0);
    assert!(text.contains("outdial_build_info{version="), "{text}");
    let by_key = http
        .get(&metrics_url)
        .header("Authorization", &auth)
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(by_key.status(), 200, "an admin's key reads the metrics too");
    // Written to a file, the log is plain text: no terminal colour codes.
    let log = std::fs::read_to_string(&server.log).expect("serve.log");
    assert!(log.lines().count() > 5, "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a log file:\n{}",
        server.log_tail(20)
    );
    drop(server);
    drop(sipp);
}

/// `text` through Prometheus' own text-format parser (tests/peers/prom_parse.py): every
/// sample as `{name, labels, value}`; a text it refuses fails the test.
fn prometheus_samples(text: &str) -> Vec<Value> {
    use std::io::Write;
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(python.is_file(), "run `make setup` (.venv)");
    let mut child = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/prom_parse.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("prom_parse.py");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("prom_parse.py");
    assert!(
        out.status.success(),
        "Prometheus' parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("sample JSON"))
        .collect()
}

/// GET or POST through the API, as JSON.
async fn api_json(
    http: &reqwest::Client,
    auth: &str,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> Value {
    let mut req = http.request(method, &url).header("Authorization", auth);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    resp.json()
        .await
        .unwrap_or_else(|e| panic!("{url}: not JSON: {e}"))
}

/// Answering-machine detection in a campaign: two people and two voicemail greetings with a
/// beep (numbers ending in 4 and 5 stream the greeting). People get the message and end
/// `answered` with AnsweredBy `human`; machines get the voicemail message after their beep and
/// end `no_conversation` with `machine_end_beep`, the beep onset and the verdict on the CDR.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amd_tells_people_from_voicemail_and_leaves_a_message_after_the_beep() {
    let dir = test_dir("campaign_amd");
    let dir = dir.path();
    speech_wav_padded(&dir.join("far.wav"), "Hello? Yes, speaking.", 0.1, 3.0);
    voicemail_with_beep(dir, &dir.join("voicemail-stream.wav"));
    to_ulaw_raw(
        &dir.join("voicemail-stream.wav"),
        &dir.join("voicemail.ulaw"),
    );
    speech_wav_padded(&dir.join("message.wav"), "This is a reminder.", 0.1, 0.2);
    speech_wav_padded(&dir.join("vm.wav"), "Please call us back.", 0.1, 0.2);
    into_media_dir(dir, &["message.wav", "vm.wav"]);
    let sipp = Sipp::uas(dir, "uas_by_number.xml")
        .stream_wav(&dir.join("far.wav"))
        .args(["-m", "1000"])
        .start();
    let http_port = free_tcp_port();
    write_serve_config(dir, sipp.port, http_port, 40);
    let key = create_key(dir, "amd");
    // Machine-readable logs: one JSON object per line, an attempt's lines in its span.
    let server = ServeProcess::start_with_env(dir, http_port, &[("OUTDIAL_LOG_FORMAT", "json")]);
    let http = reqwest::Client::new();
    let auth = format!("Bearer {key}");
    let api = |path: &str| format!("{}{path}", server.api);

    let created = api_json(
        &http,
        &auth,
        reqwest::Method::POST,
        api("/v1/campaigns"),
        Some(json!({
            "name": "amd", "pace": 600, "max_concurrent": 4, "max_retries": 0,
            "amd_mode": "auto", "machine_action": "leave_message",
            "voicemail_message": "vm.wav",
            "play_message": "message.wav",
            "sip_profile": "far-end", "caller_id": "+12025550100"
        })),
    )
    .await;
    let id = created["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id in {created}"));
    let imported = http
        .post(api(&format!("/v1/campaigns/{id}/contacts/import")))
        .header("Authorization", &auth)
        .header("Content-Type", "text/csv")
        .body("12025550101,Ann\n12025550102,Bob\n12025550104,Vee\n12025550105,Max\n")
        .send()
        .await
        .expect("import");
    assert!(imported.status().is_success());
    let started = api_json(
        &http,
        &auth,
        reqwest::Method::POST,
        api(&format!("/v1/campaigns/{id}/start")),
        None,
    )
    .await;
    assert!(started.is_object(), "{started}");

    wait_campaign_finished(
        &http,
        &auth,
        &server.api,
        id,
        &server.log,
        Duration::from_secs(90),
    )
    .await;
    let contacts = api_json(
        &http,
        &auth,
        reqwest::Method::GET,
        api(&format!("/v1/campaigns/{id}/contacts?limit=10")),
        None,
    )
    .await;
    let attempts = api_json(
        &http,
        &auth,
        reqwest::Method::GET,
        api(&format!("/v1/campaigns/{id}/attempts?limit=10")),
        None,
    )
    .await;
    let rows = attempts["items"].as_array().expect("attempts");
    assert_eq!(rows.len(), 4, "{attempts}");
    for c in contacts["items"].as_array().expect("contacts") {
        let phone = c["phone"].as_str().expect("phone");
        let machine = phone.ends_with('4') || phone.ends_with('5');
        let a = rows
            .iter()
            .find(|a| a["destination"] == phone)
            .unwrap_or_else(|| panic!("no attempt for {phone}: {attempts}"));
        assert_eq!(a["amd_mode"], "auto", "{a}");
        if machine {
            assert_eq!(c["status"], "no_conversation", "{phone}: {c}");
            assert_eq!(a["answered_by"], "machine_end_beep", "{a}");
            assert_eq!(a["amd_verdict"], "machine", "{a}");
            assert!(a["beep_ms"].as_i64().is_some(), "{a}");
            // The voicemail message was played after the beep, then we hung up.
            let beep = a["beep_ms"].as_i64().unwrap_or(0);
            assert!(a["duration_ms"].as_i64().unwrap_or(0) > beep + 1000, "{a}");
        } else {
            assert_eq!(c["status"], "answered", "{phone}: {c}");
            assert_eq!(a["answered_by"], "human", "{a}");
            assert_eq!(a["amd_verdict"], "human", "{a}");
        }
    }
    // Every call's events, in order, by cursor: initiated … answered, the verdict (and a
    // machine's beep), completed; another account sees none of them.
    let events_after = |after: i64, limit: i64, key: &str| {
        let (http, url, auth) = (
            http.clone(),
            api(&format!(
                "/v1/events?campaign={id}&after={after}&limit={limit}"
            )),
            format!("Bearer {key}"),
        );
        async move { api_json(&http, &auth, reqwest::Method::GET, url, None).await }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let all = loop {
        let page = events_after(0, 1000, &key).await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        let completed = items.iter().filter(|e| e["kind"] == "completed").count();
        if completed >= 4 || Instant::now() > deadline {
            break items;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = events_after(after, 3, &key).await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            break;
        }
        after = page["next_after"].as_i64().expect("next_after");
        paged.extend(items);
    }
    assert_eq!(paged, all, "paging by cursor gives the same events");
    let mut calls: std::collections::BTreeMap<String, Vec<&Value>> = Default::default();
    for e in &all {
        if let Some(call) = e["call_id"].as_str() {
            calls.entry(call.to_string()).or_default().push(e);
        }
    }
    assert_eq!(calls.len(), 4, "{all:?}");
    for (call, events) in &calls {
        let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
        assert_eq!(kinds.first(), Some(&"initiated"), "{call}: {kinds:?}");
        assert_eq!(kinds.last(), Some(&"completed"), "{call}: {kinds:?}");
        let at = |k: &str| kinds.iter().position(|x| *x == k);
        let (answered, amd) = (at("answered"), at("amd"));
        assert!(answered.is_some() && answered < amd, "{call}: {kinds:?}");
        let first = events[0];
        assert!(
            first["contact_id"].as_i64().is_some() && first["attempt"] == 1,
            "{first}"
        );
        let completed = events[events.len() - 1];
        assert_eq!(completed["detail"]["outcome"], "answered", "{completed}");
        assert_eq!(completed["detail"]["sip_code"], 200, "{completed}");
        let verdict = &events[amd.unwrap_or(0)]["detail"];
        if verdict["verdict"] == "machine" {
            assert!(kinds.contains(&"machine_end"), "{call}: {kinds:?}");
            assert_eq!(
                completed["detail"]["answered_by"], "machine_end_beep",
                "{completed}"
            );
        } else {
            assert_eq!(verdict["answered_by"], "human", "{verdict}");
            assert!(verdict["decision_ms"].as_u64().is_some(), "{verdict}");
        }
    }
    let other = create_key(dir, "someone-else");
    let theirs = events_after(0, 1000, &other).await;
    assert_eq!(theirs["items"], serde_json::json!([]), "{theirs}");

    let log = std::fs::read_to_string(&server.log).expect("serve.log");
    let mut in_attempt = 0;
    for line in log.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        let spans = v["spans"].as_array().cloned().unwrap_or_default();
        let attempt = spans.iter().find(|s| s["name"] == "attempt");
        let call = spans.iter().find(|s| s["name"] == "call");
        if let (Some(attempt), Some(call)) = (attempt, call) {
            assert_eq!(attempt["campaign"], id, "{line}");
            assert!(attempt["contact"].as_i64().is_some(), "{line}");
            assert!(attempt["attempt"].as_i64().is_some(), "{line}");
            assert!(
                call["call_id"].as_str().is_some_and(|c| !c.is_empty()),
                "{line}"
            );
            in_attempt += 1;
        }
    }
    assert!(
        in_attempt > 0,
        "no line carries the attempt's and the call's ids:\n{}",
        server.log_tail(20)
    );
    drop(server);
    drop(sipp);
}

/// DNC at every dial: a contact whose number goes on the account's DNC list while its
/// campaign runs (after the campaign started, while its first call is up) is skipped —
/// `failed` with last outcome `dnc`, no attempt — and never INVITEd; the others are called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_listed_while_the_campaign_runs_is_never_dialed() {
    let dir = test_dir("campaign_dnc");
    let dir = dir.path();
    speech_wav_padded(&dir.join("far.wav"), "Hello? Yes, speaking.", 0.1, 6.0);
    // A long message: the first call stays up for seconds, while the list changes.
    speech_wav_padded(
        &dir.join("message.wav"),
        "This is a reminder. Goodbye.",
        0.1,
        4.0,
    );
    into_media_dir(dir, &["message.wav"]);
    to_ulaw_raw(&dir.join("far.wav"), &dir.join("voicemail.ulaw"));
    let sipp = Sipp::uas(dir, "uas_by_number.xml")
        .stream_wav(&dir.join("far.wav"))
        .args(["-m", "1000"])
        .start();
    let http_port = free_tcp_port();
    write_serve_config(dir, sipp.port, http_port, 40);
    let key = create_key(dir, "dnc");
    let server = ServeProcess::start(dir, http_port);
    let http = reqwest::Client::new();
    let auth = format!("Bearer {key}");
    let api = |path: &str| format!("{}{path}", server.api);

    // One call at a time, all three numbers answer (uas_by_number: last digits 1-3).
    let created = api_json(
        &http,
        &auth,
        reqwest::Method::POST,
        api("/v1/campaigns"),
        Some(json!({
            "name": "dnc", "pace": 600, "max_concurrent": 1, "max_retries": 0,
            "play_message": "message.wav",
            "sip_profile": "far-end", "caller_id": "+12025550100"
        })),
    )
    .await;
    let id = created["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id in {created}"));
    let imported = http
        .post(api(&format!("/v1/campaigns/{id}/contacts/import")))
        .header("Authorization", &auth)
        .header("Content-Type", "text/csv")
        .body("12025550101,Ann\n12025550102,Bob\n12025550103,Cy\n")
        .send()
        .await
        .expect("import");
    assert!(imported.status().is_success());
    let started = api_json(
        &http,
        &auth,
        reqwest::Method::POST,
        api(&format!("/v1/campaigns/{id}/start")),
        None,
    )
    .await;
    assert_eq!(started["status"], "processing", "{started}");

    // The first call is up: put a number still waiting on the list.
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let contacts = api_json(
            &http,
            &auth,
            reqwest::Method::GET,
            api(&format!("/v1/campaigns/{id}/contacts?limit=10")),
            None,
        )
        .await;
        let items = contacts["items"].as_array().expect("contacts").clone();
        if items.iter().any(|c| c["status"] != "pending") {
            let waiting: Vec<&Value> = items.iter().filter(|c| c["status"] == "pending").collect();
            assert_eq!(
                waiting.len(),
                2,
                "one call at a time: only the first contact is dialed yet: {contacts}"
            );
            break waiting[1]["phone"].as_str().expect("phone").to_string();
        }
        assert!(Instant::now() < deadline, "no call started: {contacts}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let added = api_json(
        &http,
        &auth,
        reqwest::Method::POST,
        api("/v1/dnc"),
        Some(json!({"phone": listed, "reason": "asked mid-campaign"})),
    )
    .await;
    assert_eq!(added["phone"], listed.as_str(), "{added}");

    wait_campaign_finished(
        &http,
        &auth,
        &server.api,
        id,
        &server.log,
        Duration::from_secs(90),
    )
    .await;
    let contacts = api_json(
        &http,
        &auth,
        reqwest::Method::GET,
        api(&format!("/v1/campaigns/{id}/contacts?limit=10")),
        None,
    )
    .await;
    let attempts = api_json(
        &http,
        &auth,
        reqwest::Method::GET,
        api(&format!("/v1/campaigns/{id}/attempts?limit=10")),
        None,
    )
    .await;
    let rows = attempts["items"].as_array().expect("attempts");
    assert_eq!(rows.len(), 2, "{attempts}");
    assert!(
        rows.iter().all(|a| a["destination"] != listed.as_str()),
        "the listed number was attempted: {attempts}"
    );
    for c in contacts["items"].as_array().expect("contacts") {
        if c["phone"] == listed.as_str() {
            assert_eq!(c["status"], "failed", "{c}");
            assert_eq!(c["last_outcome"], "dnc", "{c}");
            assert_eq!(c["attempts"], 0, "{c}");
        } else {
            assert_eq!(c["status"], "answered", "{c}");
            assert_eq!(c["attempts"], 1, "{c}");
        }
    }
    drop(server);
    // The far end saw two INVITEs, none for the listed number.
    let sipp_run = sipp.wait(Duration::from_secs(1));
    let invites = sipp_run.received_requests("INVITE");
    assert_eq!(invites.len(), 2, "{}", tail(&sipp_run.messages, 60));
    let digits = listed.trim_start_matches('+');
    assert!(
        invites.iter().all(|i| !i.first_line.contains(digits)),
        "the listed number was INVITEd: {:?}",
        invites.iter().map(|i| &i.first_line).collect::<Vec<_>>()
    );
}
