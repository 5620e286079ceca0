//! Errors a user can cause on the command line: each must end the run with a non-zero exit
//! and one clear line on stderr naming what is wrong — before anything is dialed.
//! Also `check-config` on a good and a bad profiles directory.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(20);

/// Runs `cmd`, expecting a non-zero exit with exactly one non-empty stderr line and nothing
/// on stdout; returns that line.
fn expect_one_line_error(cmd: &mut Command, what: &str) -> String {
    let out = run_with_timeout(cmd, LIMIT);
    let status = out.status.unwrap_or_else(|| {
        panic!(
            "{what}: outdial did not exit within {LIMIT:?}\nstderr: {}",
            out.stderr
        )
    });
    assert!(
        !status.success(),
        "{what}: expected a non-zero exit, got {status}\nstdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    let lines = stderr_lines(&out.stderr);
    assert_eq!(
        lines.len(),
        1,
        "{what}: expected exactly one line on stderr, got:\n{}",
        out.stderr
    );
    assert!(
        out.stdout.trim().is_empty(),
        "{what}: nothing belongs on stdout, got:\n{}",
        out.stdout
    );
    lines[0].to_string()
}

/// A destination where nothing listens (a reserved, unbound port): an error that is caught
/// before dialing never gets that far, one that is not shows up as a hang or a call result.
fn nowhere() -> String {
    format!("sip:nobody@127.0.0.1:{}", free_udp_port())
}

fn profile(proxy: &str, extra: &str) -> String {
    format!(
        "proxy = \"{proxy}\"\n\
         transport = \"udp\"\n\
         realm = \"carrier.test\"\n\
         username = \"alice\"\n\
         from_user = \"alice\"\n\
         from_domain = \"carrier.test\"\n\
         codecs = [\"PCMU\", \"PCMA\"]\n\
         {extra}\n"
    )
}

#[test]
fn unknown_profile_is_named() {
    let dir = test_dir("cli-unknown-profile");
    let profiles = write_profile(
        &dir.path().join("profiles"),
        "carrier",
        &profile("127.0.0.1:5", "password = \"x\"\nregister = false"),
    );
    let mut cmd = outdial_cmd(dir.path());
    cmd.arg("--profiles").arg(&profiles).args([
        "call",
        "15551234567",
        "--profile",
        "no-such-carrier",
        "--json",
    ]);
    let line = expect_one_line_error(&mut cmd, "unknown profile");
    assert!(
        line.contains("no-such-carrier"),
        "the error must name the profile: {line}"
    );
}

#[test]
fn missing_password_env_names_the_variable() {
    let dir = test_dir("cli-missing-pw");
    let var = format!("OUTDIAL_TEST_UNSET_PW_{}", random_u64() % 1_000_000);
    let profiles = write_profile(
        &dir.path().join("profiles"),
        "carrier",
        &profile(
            &format!("127.0.0.1:{}", free_udp_port()),
            &format!("password_env = \"{var}\"\nregister = true"),
        ),
    );
    let mut cmd = outdial_cmd(dir.path());
    cmd.env_remove(&var).arg("--profiles").arg(&profiles).args([
        "call",
        "15551234567",
        "--profile",
        "carrier",
        "--json",
    ]);
    let line = expect_one_line_error(&mut cmd, "password_env not set");
    assert!(line.contains(&var), "the error must name {var}: {line}");
}

#[test]
fn agent_format_that_does_not_fit_the_url_is_named() {
    let dir = test_dir("cli-agent-format");
    for (url, format) in [
        ("ws://127.0.0.1:9/media", "whip"),
        ("http://127.0.0.1:9/api/offer", "l16"),
    ] {
        let mut cmd = outdial_cmd(dir.path());
        cmd.args([
            "call",
            &nowhere(),
            "--connect-to",
            url,
            "--agent-format",
            format,
            "--json",
        ]);
        let line = expect_one_line_error(&mut cmd, "--agent-format against the URL's scheme");
        assert!(
            line.contains(&format!("--agent-format {format}")) && line.contains(url),
            "the error names the format and the URL: {line}"
        );
    }
}

#[test]
fn unreadable_play_file_is_named() {
    let dir = test_dir("cli-bad-wav");
    let missing = dir.path().join("no-such-prompt.wav");
    let mut cmd = outdial_cmd(dir.path());
    cmd.args(["call", &nowhere(), "--play"])
        .arg(&missing)
        .arg("--json");
    let line = expect_one_line_error(&mut cmd, "missing --play file");
    assert!(
        line.contains("no-such-prompt.wav"),
        "the error must name the file: {line}"
    );

    // a file that exists but is not a WAV
    let junk = dir.path().join("not-audio.wav");
    std::fs::write(&junk, "this is not a RIFF file").unwrap();
    let mut cmd = outdial_cmd(dir.path());
    cmd.args(["call", &nowhere(), "--play"])
        .arg(&junk)
        .arg("--json");
    let line = expect_one_line_error(&mut cmd, "--play file that is not a WAV");
    assert!(
        line.contains("not-audio.wav"),
        "the error must name the file: {line}"
    );
}

#[test]
fn exhausted_rtp_port_range_is_reported() {
    let dir = test_dir("cli-no-rtp-ports");
    let (lo, hi) = free_rtp_range(2);
    // hold both ports of the range for the whole run
    let _held: Vec<UdpSocket> = (lo..=hi)
        .map(|p| UdpSocket::bind(("0.0.0.0", p)).expect("hold RTP port"))
        .collect();
    let mut cmd = outdial_cmd_with_rtp(dir.path(), &format!("{lo}-{hi}"));
    cmd.args(["call", &nowhere(), "--json"]);
    let line = expect_one_line_error(&mut cmd, "RTP port range exhausted");
    let lower = line.to_lowercase();
    assert!(
        lower.contains("rtp") && lower.contains("port"),
        "the error must mention the RTP port range: {line}"
    );
}

fn check_config(dir: &Path, profiles: &Path) -> RunOutput {
    let mut cmd = outdial_cmd(dir);
    cmd.arg("--profiles").arg(profiles).arg("check-config");
    run_with_timeout(&mut cmd, LIMIT)
}

#[test]
fn check_config_accepts_good_profiles() {
    let dir = test_dir("cli-check-good");
    let profiles = dir.path().join("profiles");
    write_profile(
        &profiles,
        "carrier-a",
        &profile(
            "127.0.0.1:5060",
            "name = \"carrier-a\"\npassword = \"x\"\nregister = true\nregister_expires = 600\ncaller_id = \"15550001111\"",
        ),
    );
    write_profile(
        &profiles,
        "carrier-b",
        "name = \"carrier-b\"\nproxy = \"127.0.0.1:5070\"\ntransport = \"tcp\"\nregister = false\n",
    );
    let out = check_config(dir.path(), &profiles);
    let status = out.status.expect("check-config hung");
    assert!(
        status.success(),
        "good profiles rejected ({status}):\nstdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn check_config_reports_each_problem_on_one_line() {
    let dir = test_dir("cli-check-bad");
    let profiles = dir.path().join("profiles");
    write_profile(
        &profiles,
        "fine",
        &profile("127.0.0.1:5060", "password = \"x\"\nregister = false"),
    );
    // 1: not TOML at all
    write_profile(
        &profiles,
        "broken",
        "proxy = \"127.0.0.1:5060\nthis is [not toml\n",
    );
    // 2: a transport that does not exist
    write_profile(
        &profiles,
        "pigeon",
        &profile("127.0.0.1:5060", "password = \"x\"\nregister = false")
            .replace("transport = \"udp\"", "transport = \"carrier-pigeon\""),
    );
    let out = check_config(dir.path(), &profiles);
    let status = out.status.expect("check-config hung");
    assert!(
        !status.success(),
        "bad profiles accepted:\nstdout: {}\nstderr: {}",
        out.stdout,
        out.stderr
    );
    let lines = stderr_lines(&out.stderr);
    assert!(
        lines.iter().any(|l| l.contains("broken.toml")),
        "no line names broken.toml:\n{}",
        out.stderr
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("pigeon.toml") && l.contains("transport")),
        "no line names pigeon.toml and its transport:\n{}",
        out.stderr
    );
    assert!(
        !lines.iter().any(|l| l.contains("fine.toml")),
        "the good profile was reported:\n{}",
        out.stderr
    );
    assert!(
        (2..=3).contains(&lines.len()),
        "expected one line per problem (2, plus at most a summary), got:\n{}",
        out.stderr
    );
    assert!(
        lines.iter().all(|l| !l.starts_with(char::is_whitespace)),
        "no continuation lines or backtraces:\n{}",
        out.stderr
    );
}
