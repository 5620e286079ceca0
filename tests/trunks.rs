//! Trunk groups against sipp: a profile with two `[[trunk]]` tables, each a sipp UAS (or a
//! socket that never answers). A call fails over from a trunk that answers 503 or nothing to
//! the next; a busy callee is never tried twice; the result names the trunk the call ended on
//! and every trunk it left behind, with why.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::time::Duration;

use common::*;

const SIPP_WAIT: Duration = Duration::from_secs(20);

/// A profile `group` whose trunks are `(name, port, priority, extra keys)` on 127.0.0.1.
fn group_profile(dir: &Path, trunks: &[(&str, u16, u32, &str)]) -> std::path::PathBuf {
    let mut toml = String::from("name = \"group\"\n");
    for (name, port, priority, extra) in trunks {
        toml.push_str(&format!(
            "\n[[trunk]]\nname = \"{name}\"\nproxy = \"127.0.0.1:{port}\"\npriority = {priority}\n{extra}\n"
        ));
    }
    write_profile(&dir.join("profiles"), "group", &toml)
}

fn call_through_group(dir: &Path, profiles: &Path) -> CallRun {
    let mut cmd = outdial_cmd(dir);
    cmd.arg("--profiles").arg(profiles);
    run_call_in(
        cmd,
        &[
            "15551230001",
            "--profile",
            "group",
            "--ring-timeout",
            "15",
            "--max-duration",
            "1",
        ],
        Duration::from_secs(40),
    )
}

fn sub(dir: &Path, name: &str) -> std::path::PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).expect("sipp dir");
    d
}

#[test]
fn a_503_fails_over_to_the_next_trunk_which_answers() {
    let dir = test_dir("trunk-503");
    let d = dir.path();
    let east = Sipp::uas(&sub(d, "east"), "uas_503_at_once.xml").start();
    let west = Sipp::uas(&sub(d, "west"), "uas_answer_wait_bye.xml").start();
    let profiles = group_profile(d, &[("east", east.port, 1, ""), ("west", west.port, 2, "")]);

    let run = call_through_group(d, &profiles);
    let east_run = east.wait(SIPP_WAIT);
    let west_run = west.wait(SIPP_WAIT);

    assert_eq!(run.outcome(), "answered", "{}", run.json);
    assert_eq!(run.json["trunk"], "west", "{}", run.json);
    assert_eq!(
        run.json["failover"],
        serde_json::json!([{"trunk": "east", "code": 503, "reason": "Service Unavailable"}]),
        "{}",
        run.json
    );
    east_run.assert_passed("503 at once (needs our ACK)");
    west_run.assert_passed("answered on the second trunk (needs our ACK and BYE)");
    // One INVITE each: the second trunk's INVITE is a new transaction, not a retransmission.
    assert_eq!(east_run.received_requests("INVITE").len(), 1);
    assert_eq!(west_run.received_requests("INVITE").len(), 1);
}

#[test]
fn silence_fails_over_after_the_trunks_invite_timeout() {
    let dir = test_dir("trunk-silent");
    let d = dir.path();
    // A carrier server that takes packets and never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind silent socket");
    let silent_port = silent.local_addr().expect("addr").port();
    let west = Sipp::uas(&sub(d, "west"), "uas_answer_wait_bye.xml").start();
    let profiles = group_profile(
        d,
        &[
            ("east", silent_port, 1, "invite_timeout = 1.5"),
            ("west", west.port, 2, ""),
        ],
    );

    let run = call_through_group(d, &profiles);
    let west_run = west.wait(SIPP_WAIT);

    assert_eq!(run.outcome(), "answered", "{}", run.json);
    assert_eq!(run.json["trunk"], "west", "{}", run.json);
    assert_eq!(
        run.json["failover"],
        serde_json::json!([{"trunk": "east", "code": null, "reason": "no response within 1.5 s"}]),
        "{}",
        run.json
    );
    let answer_ms = run.json["answer_ms"].as_u64().unwrap_or(0);
    assert!(
        (1500..10_000).contains(&answer_ms),
        "the second trunk is tried once the first's 1.5 s are up: answer_ms = {answer_ms}"
    );
    west_run.assert_passed("answered on the second trunk");
    // The silent server did get our INVITE.
    silent
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    let (n, _) = silent
        .recv_from(&mut buf)
        .expect("the INVITE reached the silent trunk");
    assert!(
        buf[..n].starts_with(b"INVITE "),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

#[test]
fn busy_on_the_first_trunk_is_the_callees_answer_not_a_failover() {
    let dir = test_dir("trunk-busy");
    let d = dir.path();
    let east = Sipp::uas(&sub(d, "east"), "uas_busy.xml").start();
    let west = Sipp::uas(&sub(d, "west"), "uas_answer_wait_bye.xml").start();
    let profiles = group_profile(d, &[("east", east.port, 1, ""), ("west", west.port, 2, "")]);

    let run = call_through_group(d, &profiles);
    let east_run = east.wait(SIPP_WAIT);
    let west_run = west.wait(Duration::from_secs(1));

    assert_eq!(run.outcome(), "busy", "{}", run.json);
    assert_eq!(run.sip_code(), Some(486), "{}", run.json);
    assert_eq!(run.json["trunk"], "east", "{}", run.json);
    assert!(run.json.get("failover").is_none(), "{}", run.json);
    east_run.assert_passed("busy (needs our ACK)");
    assert!(
        west_run.received_requests("INVITE").is_empty(),
        "a busy callee must not be called again through the next trunk:\n{}",
        west_run.messages
    );
}

#[test]
fn every_trunk_failing_ends_the_call_as_the_last_one_left_it() {
    let dir = test_dir("trunk-all-fail");
    let d = dir.path();
    let east = Sipp::uas(&sub(d, "east"), "uas_503_at_once.xml").start();
    let west = Sipp::uas(&sub(d, "west"), "uas_503_at_once.xml").start();
    let profiles = group_profile(d, &[("east", east.port, 1, ""), ("west", west.port, 2, "")]);

    let run = call_through_group(d, &profiles);
    east.wait(SIPP_WAIT).assert_passed("503");
    west.wait(SIPP_WAIT).assert_passed("503");

    assert_eq!(run.sip_code(), Some(503), "{}", run.json);
    assert_eq!(run.json["trunk"], "west", "{}", run.json);
    assert_eq!(run.json["failover"][0]["trunk"], "east", "{}", run.json);
    assert_eq!(run.json["failover"].as_array().map(Vec::len), Some(1));
}

/// `outdial serve` pings both trunks every second: the silent one goes down after two
/// unanswered pings, the sipp one is up; `GET /v1/trunks` shows it (admins only) and the log
/// says when a trunk goes down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_mark_a_silent_trunk_down_and_the_api_shows_it() {
    let dir = test_dir("trunk-health");
    let d = dir.path();
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind silent socket");
    let silent_port = silent.local_addr().expect("addr").port();
    let west = Sipp::uas(&sub(d, "west"), "uas_options.xml")
        .args(["-m", "1000"])
        .start();
    let http_port = free_tcp_port();
    std::fs::write(
        d.join("outdial.toml"),
        format!(
            "[sip]\nlisten_udp = \"127.0.0.1:0\"\nlisten_tcp = false\n\n\
             [database]\nurl = \"sqlite://{}\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n",
            d.join("outdial.db").display()
        ),
    )
    .expect("write outdial.toml");
    write_profile(
        &d.join("sip-profiles"),
        "group",
        &format!(
            "ping_interval = 1\nping_down_after = 2\nmax_channels = 30\n\n\
             [[trunk]]\nname = \"east\"\nproxy = \"127.0.0.1:{silent_port}\"\npriority = 1\n\n\
             [[trunk]]\nname = \"west\"\nproxy = \"127.0.0.1:{}\"\npriority = 2\nweight = 5\n",
            west.port
        ),
    );
    let key = create_key(d, "admin");
    let server = ServeProcess::start(d, http_port);
    let http = reqwest::Client::new();
    let auth = format!("Bearer {key}");

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let trunks = loop {
        let (status, body) = api_request(
            &http,
            &auth,
            reqwest::Method::GET,
            format!("{}/v1/trunks", server.api),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let trunks = body[0]["trunks"].clone();
        if trunks[0]["health"] == "down" && trunks[1]["health"] == "up" {
            assert_eq!(body[0]["profile"], "group", "{body}");
            assert_eq!(body[0]["max_channels"], 30, "{body}");
            assert_eq!(body[0]["ping_interval"], 1, "{body}");
            break trunks;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "east should be down and west up: {body}\n{}",
            server.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(trunks[0]["name"], "east");
    assert!(
        trunks[0]["ping_failures"].as_u64().unwrap_or(0) >= 2,
        "{trunks}"
    );
    assert!(trunks[0]["last_ping_code"].is_null(), "{trunks}");
    assert_eq!(trunks[1]["name"], "west");
    assert_eq!(trunks[1]["last_ping_code"], 200, "{trunks}");
    assert_eq!(trunks[1]["weight"], 5, "{trunks}");
    assert_eq!(trunks[1]["proxy"], format!("127.0.0.1:{}", west.port));
    assert!(
        trunks[1]["last_ping_at"].as_i64().unwrap_or(0) > 0,
        "{trunks}"
    );
    let log = std::fs::read_to_string(&server.log).unwrap_or_default();
    assert!(
        log.lines()
            .any(|l| l.contains("trunk down") && l.contains("east")),
        "the log says when a trunk goes down:\n{}",
        server.log_tail(30)
    );
    // The silent server got our pings.
    silent
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut buf = [0u8; 4096];
    let (n, _) = silent
        .recv_from(&mut buf)
        .expect("a ping reached the silent trunk");
    assert!(
        buf[..n].starts_with(b"OPTIONS "),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}
