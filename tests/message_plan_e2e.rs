//! Message plans end to end through `outdial serve` (SQLite store, admin API, engine, SIP user
//! agent) against sipp far ends:
//! * a callee who presses 9 during the menu prompt is put on the DNC list (the attempt records
//!   the digit) and is never dialed again: a later campaign with the same number places no call;
//! * a callee who talks has the reply recorded after the beep, and the recording is served by
//!   `GET /v1/attempts/{id}/recording` with the callee's speech in it (correlation).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

async fn campaign(http: &reqwest::Client, auth: &str, api: &str, body: Value, csv: &str) -> i64 {
    let (status, created) = api_request(
        http,
        auth,
        reqwest::Method::POST,
        format!("{api}/v1/campaigns"),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().expect("campaign id");
    let resp = http
        .post(format!("{api}/v1/campaigns/{id}/contacts/import"))
        .header("Authorization", auth)
        .header("Content-Type", "text/csv")
        .body(csv.to_string())
        .send()
        .await
        .expect("import");
    assert!(resp.status().is_success(), "import: {}", resp.status());
    let (status, started) = api_request(
        http,
        auth,
        reqwest::Method::POST,
        format!("{api}/v1/campaigns/{id}/start"),
        None,
    )
    .await;
    assert!(status.is_success(), "{started}");
    id
}

async fn attempts(http: &reqwest::Client, auth: &str, api: &str, id: i64) -> Vec<Value> {
    let (_, a) = api_request(
        http,
        auth,
        reqwest::Method::GET,
        format!("{api}/v1/campaigns/{id}/attempts?limit=20"),
        None,
    )
    .await;
    a["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pressing_9_puts_the_number_on_dnc_and_a_reply_is_recorded() {
    let dir = test_dir("message_plan_e2e");
    let dir = dir.path();
    let media = dir.join("media");
    std::fs::create_dir_all(&media).expect("media dir");
    speech_wav_padded(
        &media.join("menu.wav"),
        "Press one to talk to us, or nine to stop these calls.",
        0.1,
        0.2,
    );
    speech_wav_padded(
        &media.join("hello.wav"),
        "Please leave your answer after the tone.",
        0.1,
        0.1,
    );
    let talk = dir.join("talk.wav");
    speech_wav_padded(
        &talk,
        "Yes, I would like to renew my subscription for another year, thank you very much.",
        2.5,
        3.0,
    );
    let presser = Sipp::uas(dir, "uas_press.xml")
        .replace("@DIGITS@", "9")
        .args(["-m", "5"])
        .start();
    let talker = Sipp::uas(dir, "uas_answer_audio.xml")
        .stream_wav(&talk)
        .start();
    let http_port = free_tcp_port();
    let (lo, hi) = free_rtp_range(20);
    std::fs::write(
        dir.join("outdial.toml"),
        format!(
            "[sip]\nlisten_udp = \"127.0.0.1:0\"\nlisten_tcp = false\n\n\
             [rtp]\nbind_addr = \"127.0.0.1\"\nport_min = {lo}\nport_max = {hi}\n\n\
             [database]\nurl = \"sqlite://{}\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n\
             [media]\ndir = \"media\"\n",
            dir.join("outdial.db").display()
        ),
    )
    .expect("write outdial.toml");
    for (name, sipp) in [("presser", &presser), ("talker", &talker)] {
        write_profile(
            &dir.join("sip-profiles"),
            name,
            &format!("proxy = \"127.0.0.1:{}\"\n", sipp.port),
        );
    }
    let key = create_key(dir, "plans");
    let server = ServeProcess::start(dir, http_port);
    let http = reqwest::Client::new();
    let auth = format!("Bearer {key}");
    let api = server.api.clone();

    // The menu: 9 → DNC, 1 → the next step; nothing → hang up.
    let menu = json!({
        "name": "menu", "pace": 600, "sip_profile": "presser", "caller_id": "+12025550100",
        "steps": [
            {"type": "collect", "prompt": "menu.wav", "max_digits": 1, "timeout_secs": 8,
             "on": {"9": "dnc", "1": "next"}, "otherwise": "hangup"},
            {"type": "play", "file": "hello.wav"},
            {"type": "hangup"}
        ]
    });
    let id = campaign(&http, &auth, &api, menu.clone(), "12025550191,Nina Nine\n").await;
    wait_campaign_finished(&http, &auth, &api, id, &server.log, Duration::from_secs(60)).await;
    let a = attempts(&http, &auth, &api, id).await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0]["outcome"], "answered", "{}", a[0]);
    assert_eq!(a[0]["digits"], "9", "{}", a[0]);
    let (_, dnc) = api_request(
        &http,
        &auth,
        reqwest::Method::GET,
        format!("{api}/v1/dnc"),
        None,
    )
    .await;
    assert!(
        dnc.to_string().contains("12025550191"),
        "the number is not on the DNC list: {dnc}"
    );
    // Never dialed again: the same number in a new campaign places no call.
    let mut again = menu.clone();
    again["name"] = json!("menu again");
    let id2 = campaign(&http, &auth, &api, again, "12025550191,Nina Nine\n").await;
    wait_campaign_finished(
        &http,
        &auth,
        &api,
        id2,
        &server.log,
        Duration::from_secs(60),
    )
    .await;
    assert!(attempts(&http, &auth, &api, id2).await.is_empty());

    // The survey: a prompt, then the reply recorded after the beep.
    let survey = json!({
        "name": "survey", "pace": 600, "sip_profile": "talker", "caller_id": "+12025550100",
        "steps": [
            {"type": "play", "file": "hello.wav"},
            {"type": "record", "max_secs": 5, "silence_end_secs": 3, "beep": true},
            {"type": "hangup"}
        ]
    });
    let id3 = campaign(&http, &auth, &api, survey, "12025550192,Rita Reply\n").await;
    wait_campaign_finished(
        &http,
        &auth,
        &api,
        id3,
        &server.log,
        Duration::from_secs(60),
    )
    .await;
    let a = attempts(&http, &auth, &api, id3).await;
    assert_eq!(a.len(), 1, "{a:?}");
    let url = a[0]["recording_url"]
        .as_str()
        .unwrap_or_else(|| panic!("no recording: {}", a[0]));
    let resp = http
        .get(format!("{api}{url}"))
        .header("Authorization", &auth)
        .send()
        .await
        .expect("GET recording");
    assert_eq!(resp.status(), 200);
    let bytes = resp.bytes().await.expect("recording body");
    let reply = dir.join("reply.wav");
    std::fs::write(&reply, &bytes).expect("write reply");
    let (corr, lag) = best_correlation(&read_wav_8k(&talk), &read_wav_8k(&reply), 8000 * 8);
    eprintln!("recorded reply vs the callee's speech: {corr:.3} at lag {lag}");
    assert!(
        corr > 0.5,
        "the reply is not the callee's speech: {corr:.3}"
    );
    drop(server);
    talker
        .wait(Duration::from_secs(20))
        .assert_passed("the talker was hung up on after the recording");
    drop(presser);
}
