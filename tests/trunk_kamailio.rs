//! `outdial call NUMBER --profile carrier` through a real SIP trunk: kamailio as the carrier
//! (digest auth on REGISTER and INVITE, Record-Route, relay) in front of baresip as the
//! callee (auto-answer, plays a WAV, records what it hears).
//!
//! kamailio logs one `CARRIER …` line per decision (tests/peers/kamailio.cfg), which is how
//! these tests see what outdial sent to the carrier.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const REALM: &str = "carrier.test";
const USER: &str = "alice";
const PASSWORD: &str = "s3cret-Pw";
const NUMBER: &str = "15551234567";
const PASSWORD_VAR: &str = "OUTDIAL_TEST_TRUNK_PASSWORD";

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// A profile for the test carrier. `secret` is either `password = "…"` or
/// `password_env = "…"`.
fn carrier_profile(carrier: &Kamailio, register: bool, secret: &str) -> String {
    format!(
        "name = \"carrier\"\n\
         proxy = \"{proxy}\"\n\
         transport = \"udp\"\n\
         realm = \"{REALM}\"\n\
         username = \"{USER}\"\n\
         {secret}\n\
         register = {register}\n\
         register_expires = 300\n\
         from_user = \"{USER}\"\n\
         from_domain = \"{REALM}\"\n\
         caller_id = \"15550009999\"\n\
         codecs = [\"PCMU\", \"PCMA\", \"telephone-event\"]\n",
        proxy = carrier.addr(),
    )
}

fn carrier_config(ua_uri: String) -> CarrierConfig {
    CarrierConfig {
        realm: REALM.into(),
        username: USER.into(),
        password: PASSWORD.into(),
        ua_uri,
        register_with_401: false,
        sha256: false,
    }
}

/// A carrier (kamailio) in front of a phone (baresip) that says `phone_says`,
/// in a fresh test dir.
struct Line {
    dir: tempfile::TempDir,
    phone: Baresip,
    carrier: Kamailio,
}

impl Line {
    fn new(name: &str, phone_says: &str, cfg: impl FnOnce(CarrierConfig) -> CarrierConfig) -> Line {
        let dir = test_dir(name);
        let phone_wav = dir.path().join("phone.wav");
        speech_wav(&phone_wav, phone_says);
        let phone = Baresip::start(dir.path(), &phone_wav);
        let carrier = Kamailio::start(dir.path(), &cfg(carrier_config(phone.uri())));
        Line {
            dir,
            phone,
            carrier,
        }
    }

    /// `outdial --profiles DIR` with `profile` written as the "carrier" trunk.
    fn outdial(&self, profile: &str) -> std::process::Command {
        let d = self.dir.path();
        let profiles = write_profile(&d.join("profiles"), "carrier", profile);
        let mut cmd = outdial_cmd(d);
        cmd.arg("--profiles").arg(&profiles);
        cmd
    }
}

#[test]
fn registered_trunk_call_reaches_baresip_with_audio_both_ways() {
    let dir = test_dir("trunk-ok");
    let d = dir.path();
    let phone_wav = d.join("phone.wav");
    speech_wav(
        &phone_wav,
        "Good afternoon, you have reached the test phone. How can I help you today?",
    );
    let ours = d.join("ours.wav");
    speech_wav_padded(
        &ours,
        "Hello, this is outdial calling through the carrier. One two three four five.",
        0.2,
        1.5,
    );
    let rec = d.join("received.wav");

    let phone = Baresip::start(d, &phone_wav);
    let carrier = Kamailio::start(d, &carrier_config(phone.uri()));
    let profiles = write_profile(
        &d.join("profiles"),
        "carrier",
        &carrier_profile(
            &carrier,
            true,
            &format!("password_env = \"{PASSWORD_VAR}\""),
        ),
    );
    let mut cmd = outdial_cmd(d);
    cmd.arg("--profiles")
        .arg(&profiles)
        .env(PASSWORD_VAR, PASSWORD);
    let run = run_call_in(
        cmd,
        &[
            NUMBER,
            "--profile",
            "carrier",
            "--play",
            path_str(&ours),
            "--record",
            path_str(&rec),
            "--max-duration",
            "30",
        ],
        Duration::from_secs(60),
    );
    let lines = carrier.carrier_lines().join("\n");

    assert!(
        run.status.success(),
        "exit {:?}: {}",
        run.status,
        run.stderr
    );
    assert_eq!(run.outcome(), "answered", "{}\ncarrier:\n{lines}", run.json);
    assert_eq!(run.sip_code(), Some(200), "{}", run.json);
    assert_eq!(run.json["ended_by"], "system", "{}", run.json);
    assert_eq!(run.json["codec"], "PCMU", "{}", run.json);
    let (sent, received) = run.rtp();
    assert!(sent > 100 && received > 100, "{}", run.json);

    // INVITE: challenged once, then accepted with the dialed number in the R-URI
    assert_eq!(carrier.count("INVITE challenged"), 1, "carrier:\n{lines}");
    assert_eq!(
        carrier.count(&format!("INVITE accepted user={USER} to={NUMBER}")),
        1,
        "carrier:\n{lines}"
    );
    assert!(carrier.count("in-dialog ACK") >= 1, "carrier:\n{lines}");
    assert!(
        carrier.count("in-dialog BYE") >= 1,
        "our BYE must follow the Record-Route through the carrier:\n{lines}"
    );
    assert_eq!(phone.calls_established(), 1);

    // what baresip heard is what we played
    let heard = phone.received_recording(Duration::from_secs(10));
    let (corr, lag) = best_correlation(&read_wav_8k(&ours), &read_wav_8k(&heard), 16000);
    eprintln!("baresip's recording vs our --play file: {corr:.3} at lag {lag}");
    assert!(
        corr > 0.5,
        "baresip's recording does not match our --play file: {corr:.3} at lag {lag}"
    );
    // what we recorded is what baresip played
    let (corr, lag) = best_correlation(&read_wav_8k(&phone.source), &read_wav_8k(&rec), 16000);
    eprintln!("our --record vs baresip's source: {corr:.3} at lag {lag}");
    assert!(
        corr > 0.5,
        "our --record does not match baresip's source: {corr:.3} at lag {lag}"
    );

    // REGISTER: challenged, then accepted, before the INVITE
    assert!(
        carrier.count("REGISTER challenged") >= 1,
        "carrier:\n{lines}"
    );
    let accepted = carrier.count(&format!("REGISTER accepted user={USER}"));
    assert!(accepted >= 1, "REGISTER never accepted; carrier:\n{lines}");
    let all = carrier.carrier_lines();
    let first_register_ok = all
        .iter()
        .position(|l| l.starts_with("REGISTER accepted"))
        .unwrap();
    let first_invite = all
        .iter()
        .position(|l| l.starts_with("INVITE from"))
        .unwrap();
    assert!(
        first_register_ok < first_invite,
        "register = true: REGISTER must succeed before the INVITE; carrier:\n{lines}"
    );
}

#[test]
fn wrong_password_fails_fast_without_looping() {
    let line = Line::new("trunk-bad-pw", "You should never hear this.", |c| c);
    let (phone, carrier) = (&line.phone, &line.carrier);
    let cmd = line.outdial(&carrier_profile(
        carrier,
        false,
        "password = \"not-the-password\"",
    ));
    let run = run_call_in(
        cmd,
        &[NUMBER, "--profile", "carrier", "--max-duration", "30"],
        Duration::from_secs(40),
    );
    let lines = carrier.carrier_lines().join("\n");
    assert!(
        run.status.success(),
        "exit {:?}: {}",
        run.status,
        run.stderr
    );
    assert_eq!(run.outcome(), "failed", "{}\ncarrier:\n{lines}", run.json);
    assert!(
        matches!(run.sip_code(), Some(407) | Some(403)),
        "sip_code {:?}: {}",
        run.sip_code(),
        run.json
    );
    assert!(
        run.elapsed < Duration::from_secs(8),
        "a rejected password took {:?}",
        run.elapsed
    );
    let invites = carrier.count("INVITE from");
    assert!(
        (1..=2).contains(&invites),
        "expected the INVITE and at most one retry with credentials, carrier saw {invites}:\n{lines}"
    );
    assert_eq!(carrier.count("INVITE accepted"), 0, "carrier:\n{lines}");
    assert_eq!(carrier.count("REGISTER"), 0, "register = false:\n{lines}");
    assert_eq!(phone.calls_established(), 0);
}

#[test]
fn wrong_password_on_register_does_not_loop() {
    let line = Line::new("trunk-bad-reg", "You should never hear this.", |c| c);
    let (phone, carrier) = (&line.phone, &line.carrier);
    let mut cmd = line.outdial(&carrier_profile(
        carrier,
        true,
        "password = \"not-the-password\"",
    ));
    let out = run_with_timeout(
        cmd.args([
            "call",
            NUMBER,
            "--profile",
            "carrier",
            "--max-duration",
            "30",
            "--json",
        ]),
        Duration::from_secs(40),
    );
    let lines = carrier.carrier_lines().join("\n");
    let status = out.status.unwrap_or_else(|| {
        panic!(
            "outdial hung after a rejected REGISTER\nstderr: {}\ncarrier:\n{lines}",
            out.stderr
        )
    });
    assert!(
        out.elapsed < Duration::from_secs(15),
        "a rejected REGISTER took {:?}",
        out.elapsed
    );
    let registers = carrier.count("REGISTER from");
    assert!(
        (1..=2).contains(&registers),
        "expected the REGISTER and at most one retry with credentials, carrier saw {registers}:\n{lines}"
    );
    assert_eq!(carrier.count("REGISTER accepted"), 0);
    assert_eq!(carrier.count("INVITE accepted"), 0, "carrier:\n{lines}");
    assert_eq!(phone.calls_established(), 0);
    // Either a call result that is not "answered", or a one-line error.
    if status.success() {
        let json = parse_one_json_object(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(json["outcome"], "answered", "{json}");
    } else {
        assert_eq!(
            stderr_lines(&out.stderr).len(),
            1,
            "expected one line on stderr:\n{}",
            out.stderr
        );
    }
}

#[test]
fn sha256_qop_auth_challenge_on_invite_is_answered() {
    let line = Line::new("trunk-sha256", "Hello from the phone.", |c| CarrierConfig {
        sha256: true,
        ..c
    });
    let carrier = &line.carrier;
    let cmd = line.outdial(&carrier_profile(
        carrier,
        false,
        &format!("password = \"{PASSWORD}\""),
    ));
    let run = run_call_in(
        cmd,
        &[NUMBER, "--profile", "carrier", "--max-duration", "2"],
        Duration::from_secs(40),
    );
    let lines = carrier.carrier_lines().join("\n");
    assert_eq!(run.outcome(), "answered", "{}\ncarrier:\n{lines}", run.json);
    assert!(
        carrier
            .carrier_lines()
            .iter()
            .any(|l| l == "INVITE digest ok algorithm=SHA-256 qop=auth"),
        "carrier:\n{lines}"
    );
}

#[test]
fn trunk_over_tcp_authenticates_and_connects() {
    let line = Line::new("trunk-tcp", "Hello over TCP.", |c| c);
    let carrier = &line.carrier;
    let cmd = line.outdial(
        &carrier_profile(carrier, true, &format!("password = \"{PASSWORD}\""))
            .replace("transport = \"udp\"", "transport = \"tcp\""),
    );
    let run = run_call_in(
        cmd,
        &[NUMBER, "--profile", "carrier", "--max-duration", "2"],
        Duration::from_secs(40),
    );
    let lines = carrier.carrier_lines().join("\n");
    assert_eq!(run.outcome(), "answered", "{}\ncarrier:\n{lines}", run.json);
    let (_sent, received) = run.rtp();
    assert!(received > 0, "{}", run.json);
    for method in ["REGISTER", "INVITE", "BYE"] {
        assert!(
            carrier
                .carrier_lines()
                .iter()
                .any(|l| l.starts_with(&format!("{method} from")) && l.contains("proto=tcp")),
            "{method} must arrive over TCP:\n{lines}"
        );
    }
    assert_eq!(carrier.count("REGISTER accepted"), 1, "{lines}");
}
