//! Inbound INVITEs at `outdial serve`. Taken only from a carrier's address: a profile whose
//! trunk is at 127.0.0.1 and whose `inbound_allow` holds 127.0.0.3: a sipp UAC calling from
//! 127.0.0.1 or 127.0.0.3 is a carrier (a caller no contact matches, without an
//! `inbound_route`, gets 480); from 127.0.0.2 it is nobody's and gets 403.
//!
//! Callbacks: two campaigns dial busy contacts (a sipp far end) that then call back (a sipp
//! UAC as the carrier): one matched by the number called (the campaign owning the DID has the
//! caller), one by the last call from that number (another campaign that used it as caller
//! ID). Each reaches its campaign's agent (a sipp UAS), the contact moves from `retry` to
//! `called`, and an inbound attempt is recorded; a stranger gets 480.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// `serve`'s configuration in `dir`: SIP on 127.0.0.1:`sip_port` (UDP), the admin API on
/// `http_port`, SQLite, RTP on loopback, and one profile `carrier` with `profile`'s keys.
fn configure(dir: &std::path::Path, sip_port: u16, http_port: u16, profile: &str) {
    let (lo, hi) = free_rtp_range(40);
    std::fs::write(
        dir.join("outdial.toml"),
        format!(
            "[sip]\nlisten_udp = \"127.0.0.1:{sip_port}\"\nlisten_tcp = false\n\n\
             [rtp]\nbind_addr = \"127.0.0.1\"\nport_min = {lo}\nport_max = {hi}\n\n\
             [database]\nurl = \"sqlite://{}\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n",
            dir.join("outdial.db").display()
        ),
    )
    .expect("write outdial.toml");
    write_profile(&dir.join("sip-profiles"), "carrier", profile);
}

fn invite_from(dir: &std::path::Path, ip: &str, sip_port: u16, code: u16) -> SippRun {
    let at = At {
        netns: None,
        ip: ip.to_string(),
    };
    Sipp::uac(dir, "uac_final.xml", &format!("127.0.0.1:{sip_port}"))
        .at(at)
        .replace("@CODE@", &code.to_string())
        .args(["-s", "15551230777"])
        .start()
        .wait(WAIT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_carriers_address_may_call_in() {
    let dir = test_dir("inbound-gate");
    let d = dir.path();
    let http_port = free_tcp_port();
    let sip_port = free_udp_port();
    configure(
        d,
        sip_port,
        http_port,
        "proxy = \"127.0.0.1:5999\"\ninbound_allow = [\"127.0.0.3/32\"]\n",
    );
    let server = ServeProcess::start(d, http_port);
    // Serving: the trunks were started (and an address resolves at once).
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + WAIT;
    while http
        .get(format!("{}/healthz", server.api))
        .send()
        .await
        .map(|r| !r.status().is_success())
        .unwrap_or(true)
    {
        assert!(std::time::Instant::now() < deadline, "serve did not answer");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stranger = invite_from(d, "127.0.0.2", sip_port, 403);
    stranger.assert_passed("an INVITE from no carrier's address is refused 403");
    let trunk = invite_from(d, "127.0.0.1", sip_port, 480);
    trunk.assert_passed("the trunk's own address is a carrier");
    let allowed = invite_from(d, "127.0.0.3", sip_port, 480);
    allowed.assert_passed("an inbound_allow network is a carrier");
    drop(server);
}

fn callback(dir: &std::path::Path, sip_port: u16, caller: &str, called: &str) -> SippRun {
    Sipp::uac(dir, "uac_callback.xml", &format!("127.0.0.1:{sip_port}"))
        .replace("@CALLER@", caller)
        .args(["-s", called, "-d", "2000"])
        .start()
        .wait(WAIT)
}

async fn contact_status(http: &reqwest::Client, auth: &str, api: &str, campaign: i64) -> Value {
    let (st, body) = api_request(
        http,
        auth,
        reqwest::Method::GET,
        format!("{api}/v1/campaigns/{campaign}/contacts"),
        None,
    )
    .await;
    assert!(st.is_success(), "{st} {body}");
    body["items"][0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_reach_their_campaigns_agent_and_the_contact_is_called() {
    let dir = test_dir("inbound-callback");
    let d = dir.path();
    // The carrier's far end for outbound calls: numbers ending in 6 or 7 are busy. (It reads
    // its audio files at start, though busy numbers get none.)
    speech_wav_padded(&d.join("far.wav"), "Hello?", 0.1, 0.5);
    to_ulaw_raw(&d.join("far.wav"), &d.join("voicemail.ulaw"));
    let far = Sipp::uas(d, "uas_by_number.xml")
        .stream_wav(&d.join("far.wav"))
        .args(["-m", "100"])
        .start();
    // Each campaign's agent: answers, waits for our BYE.
    let agent1 = Sipp::uas(d, "uas_answer_wait_bye.xml")
        .args(["-m", "1"])
        .start();
    let agent2 = Sipp::uas(d, "uas_answer_wait_bye.xml")
        .args(["-m", "1"])
        .start();
    let http_port = free_tcp_port();
    let sip_port = free_udp_port();
    configure(
        d,
        sip_port,
        http_port,
        &format!("proxy = \"127.0.0.1:{}\"\n", far.port),
    );
    let key = create_key(d, "inbound");
    let auth = format!("Bearer {key}");
    let server = ServeProcess::start(d, http_port);
    let api = server.api.clone();
    let http = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let (http, auth, url) = (http.clone(), auth.clone(), format!("{api}{path}"));
        async move { api_request(&http, &auth, method, url, body).await }
    };

    let (st, number) = call(
        reqwest::Method::POST,
        "/v1/numbers",
        Some(json!({"number": "+12025550100", "label": "callbacks"})),
    )
    .await;
    assert!(st.is_success(), "{st} {number}");
    let mut campaigns = Vec::new();
    for (name, extra, phone, agent) in [
        (
            "owns the number",
            json!({"number_id": number["id"]}),
            "+12025550106",
            &agent1,
        ),
        (
            "same caller id",
            json!({"caller_id": "+12025550100"}),
            "+12025550117",
            &agent2,
        ),
    ] {
        let mut body = json!({
            "name": name, "pace": 600, "max_concurrent": 1,
            "ring_timeout_secs": 3, "ring_timeout_override": true,
            "max_retries": 2, "retry_interval": {"value": 1, "unit": "hours"},
            "sip_profile": "carrier", "connect_to": agent.uri("agent"),
        });
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (st, c) = call(reqwest::Method::POST, "/v1/campaigns", Some(body)).await;
        assert!(st.is_success(), "{st} {c}");
        let id = c["id"].as_i64().expect("id");
        let (st, r) = call(
            reqwest::Method::POST,
            &format!("/v1/campaigns/{id}/contacts"),
            Some(json!({"phone": phone, "name": name})),
        )
        .await;
        assert!(st.is_success(), "{st} {r}");
        let (st, r) = call(
            reqwest::Method::POST,
            &format!("/v1/campaigns/{id}/start"),
            None,
        )
        .await;
        assert!(st.is_success(), "{st} {r}");
        campaigns.push((id, phone));
    }
    // Both contacts were busy: they wait in retry for an hour.
    let deadline = std::time::Instant::now() + WAIT;
    for (id, _) in &campaigns {
        loop {
            let c = contact_status(&http, &auth, &api, *id).await;
            if c["status"] == "retry" {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "contact of campaign {id} not in retry: {c}\n{}",
                server.log_tail(30)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // A stranger calling the number: nobody to put them through to.
    let stranger = Sipp::uac(d, "uac_final.xml", &format!("127.0.0.1:{sip_port}"))
        .replace("@CODE@", "480")
        .args(["-s", "+12025550100"])
        .start()
        .wait(WAIT);
    stranger.assert_passed("a caller no contact matches gets 480");

    for ((id, phone), agent) in campaigns.iter().zip([agent1, agent2]) {
        let caller = callback(d, sip_port, phone, "+12025550100");
        caller.assert_passed("the callback is answered and ends with the caller's BYE");
        let agent = agent.wait(WAIT);
        agent.assert_passed("the campaign's agent is connected, then released");
        let invites = agent.received_requests("INVITE");
        assert_eq!(invites.len(), 1, "one call to the agent");
        let c = contact_status(&http, &auth, &api, *id).await;
        assert_eq!(c["status"], "called", "{c}");
        assert_eq!(c["attempts"], 1, "a callback is no attempt of ours: {c}");
        // The inbound call is on record with the campaign's attempts (written after the call).
        let deadline = std::time::Instant::now() + WAIT;
        let inbound = loop {
            let (st, list) = call(
                reqwest::Method::GET,
                &format!("/v1/campaigns/{id}/attempts"),
                None,
            )
            .await;
            assert!(st.is_success(), "{st} {list}");
            let found = list["items"]
                .as_array()
                .expect("items")
                .iter()
                .find(|a| a["direction"] == "inbound")
                .cloned();
            if let Some(a) = found {
                break a;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no inbound attempt: {list}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(inbound["outcome"], "answered", "{inbound}");
        assert_eq!(inbound["caller_id"], *phone, "{inbound}");
        assert_eq!(inbound["destination"], "+12025550100", "{inbound}");
        assert_eq!(inbound["bridge_kind"], "sip", "{inbound}");
        assert!(inbound["talk_ms"].as_i64().unwrap_or(0) > 1000, "{inbound}");
    }
    drop(server);
    drop(far);
}
