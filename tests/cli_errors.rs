//! Errors a user can cause on the command line: each must end the run with a non-zero exit
//! and one clear line on stderr naming what is wrong — before anything is dialed.
//! Also `check-config` on a good and a bad profiles directory, and `contacts import`: all
//! or nothing, as the API's import.

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

/// Contacts in one campaign of the test's SQLite database, and rows staged by imports.
fn contacts_and_staged(dir: &Path, campaign: i64) -> (i64, i64) {
    let url = format!("sqlite://{}", dir.join("outdial.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let contacts: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM contacts WHERE campaign_id = ?")
                .bind(campaign)
                .fetch_one(&mut c)
                .await
                .unwrap();
        let staged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM contact_imports")
            .fetch_one(&mut c)
            .await
            .unwrap();
        c.close().await.ok();
        (contacts, staged)
    })
}

/// `outdial contacts import` runs the API's import: a number repeated in the file is a
/// refused row naming its first line; a file that cannot be read as contacts imports
/// nothing (one line on stderr); an import killed midway, with rows already staged, leaves
/// the campaign as it was.
#[test]
fn contacts_import_is_all_or_nothing() {
    let dir = test_dir("cli_import");
    let out = run_with_timeout(
        outdial_cmd(dir.path()).args(["campaign", "create", "--name", "imports"]),
        LIMIT,
    );
    assert_eq!(
        out.status.map(|s| s.success()),
        Some(true),
        "{}",
        out.stderr
    );
    let campaign: i64 = out.stdout.trim().parse().expect("the campaign id");
    let campaign_arg = campaign.to_string();

    let csv = dir.path().join("a.csv");
    std::fs::write(
        &csv,
        "12025550101,Ann\n12025550102,Bob\n(202) 555-0101,Ann again\n",
    )
    .unwrap();
    let out = run_with_timeout(
        outdial_cmd(dir.path()).args([
            "contacts",
            "import",
            "a.csv",
            "--campaign",
            &campaign_arg,
            "--json",
        ]),
        LIMIT,
    );
    assert_eq!(
        out.status.map(|s| s.success()),
        Some(true),
        "{}",
        out.stderr
    );
    let result = parse_one_json_object(&out.stdout).unwrap();
    assert_eq!(
        (
            result["inserted"].as_i64(),
            result["duplicates"].as_i64(),
            result["error_count"].as_i64()
        ),
        (Some(2), Some(0), Some(1)),
        "{result}"
    );
    assert_eq!(result["errors"][0]["line"], 3, "{result}");
    assert_eq!(
        result["errors"][0]["reason"], "duplicate of line 1",
        "{result}"
    );
    // The command waited for its staging rows to go before it exited.
    assert_eq!(contacts_and_staged(dir.path(), campaign), (2, 0));
    // The same file again: every number is in the campaign already.
    let out = run_with_timeout(
        outdial_cmd(dir.path()).args(["contacts", "import", "a.csv", "--campaign", &campaign_arg]),
        LIMIT,
    );
    assert_eq!(
        out.status.map(|s| s.success()),
        Some(true),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout
            .contains("0 contacts imported, 2 already in the campaign, 1 rows rejected"),
        "{}",
        out.stdout
    );

    std::fs::write(dir.path().join("b.csv"), "name,comments\nAnn,x\n").unwrap();
    let line = expect_one_line_error(
        outdial_cmd(dir.path()).args(["contacts", "import", "b.csv", "--campaign", &campaign_arg]),
        "a file without a phone column",
    );
    assert!(
        line.contains("no phone column") && line.contains("nothing imported"),
        "{line}"
    );

    // Killed midway: 20 batches' worth of rows go through a FIFO the test holds open, so
    // the import has staged rows and is still reading when it is killed.
    let fifo = dir.path().join("c.csv");
    let path = std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0, "mkfifo");
    let mut child = outdial_cmd(dir.path())
        .args(["contacts", "import", "c.csv", "--campaign", &campaign_arg])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut writer = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    let mut rows = String::new();
    for n in 0..20_000u32 {
        rows.push_str(&format!("+1303{:07},Person {n}\n", 2_000_000 + n));
    }
    use std::io::Write;
    writer.write_all(rows.as_bytes()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while contacts_and_staged(dir.path(), campaign).1 == 0 {
        assert!(std::time::Instant::now() < deadline, "no rows were staged");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    drop(writer);
    let (contacts, staged) = contacts_and_staged(dir.path(), campaign);
    assert_eq!(
        contacts, 2,
        "nothing of the killed import is in the campaign"
    );
    assert!(
        staged > 0,
        "its staged rows wait for the stale-import purge"
    );
}

/// Puts numbers on the DNC lists of the SQLite database `outdial call` opens in `dir`
/// (`(number, None)`: the global list; `Some(login)`: that new account's list).
fn add_to_dnc_lists(dir: &Path, entries: &[(&str, Option<&str>)]) {
    use outdial::store::{DncList, Store};
    let url = format!("sqlite://{}", dir.join("outdial.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(&url).await.unwrap();
        for (phone, login) in entries {
            let list = match login {
                Some(login) => {
                    DncList::Account(store.create_account(login, login, 0).await.unwrap().id)
                }
                None => DncList::Global,
            };
            store.add_dnc(list, phone, "test", 0).await.unwrap();
        }
        store.close().await;
    });
}

/// `outdial call` checks the DNC lists of the configured database before dialing: a number
/// on the global list or an account's list (written with its `+`, in a SIP URI, or without
/// its country code) is refused with one line naming it and exit code 3, and nothing
/// reaches the far end; `--ignore-dnc` dials it. With no database file, the call goes out
/// and no database is created.
#[test]
fn call_refuses_a_number_on_a_dnc_list() {
    let dir = test_dir("cli_dnc");
    let d = dir.path();
    let sipp = Sipp::uas(d, "uas_busy.xml").start();
    let run = run_call(d, &[&sipp.uri("+12025550177"), "--max-duration", "10"]);
    let sipp_run = sipp.wait(LIMIT);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.outcome(), "busy", "{}", run.json);
    assert_eq!(sipp_run.received_requests("INVITE").len(), 1);
    assert!(
        !d.join("outdial.db").exists(),
        "outdial call must not create a database"
    );

    add_to_dnc_lists(
        d,
        &[("+12025550177", Some("dnc-owner")), ("+12025550188", None)],
    );
    let far_end = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = far_end.local_addr().unwrap().port();
    for (destination, number, list) in [
        (
            format!("sip:+12025550177@127.0.0.1:{port}"),
            "+12025550177",
            "the DNC list of account",
        ),
        (
            format!("sip:+12025550188@127.0.0.1:{port}"),
            "+12025550188",
            "the global DNC list",
        ),
        ("(202) 555-0177".to_string(), "+12025550177", "DNC list"),
        ("12025550188".to_string(), "+12025550188", "DNC list"),
    ] {
        let mut cmd = outdial_cmd(d);
        cmd.args(["call", &destination, "--json"]);
        let out = run_with_timeout(&mut cmd, LIMIT);
        assert_eq!(
            out.status.and_then(|s| s.code()),
            Some(3),
            "{destination}: exit code 3 for a listed number\nstderr: {}",
            out.stderr
        );
        let lines = stderr_lines(&out.stderr);
        assert_eq!(lines.len(), 1, "{destination}: one line:\n{}", out.stderr);
        assert!(
            lines[0].contains(number) && lines[0].contains(list),
            "{destination}: the line names the number and its list: {}",
            lines[0]
        );
        assert!(out.stdout.trim().is_empty(), "{}", out.stdout);
    }
    far_end.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        far_end.recv_from(&mut buf).is_err(),
        "a refused call sent something to the far end"
    );
    // A number on no list is dialed with the lists in place.
    let sipp = Sipp::uas(d, "uas_busy.xml").start();
    let run = run_call(d, &[&sipp.uri("+12025550199"), "--max-duration", "10"]);
    let sipp_run = sipp.wait(LIMIT);
    assert_eq!(run.outcome(), "busy", "{}\n{}", run.json, run.stderr);
    assert_eq!(sipp_run.received_requests("INVITE").len(), 1);
    // --ignore-dnc dials a listed number.
    let sipp = Sipp::uas(d, "uas_busy.xml").start();
    let run = run_call(
        d,
        &[
            &sipp.uri("+12025550177"),
            "--ignore-dnc",
            "--max-duration",
            "10",
        ],
    );
    let sipp_run = sipp.wait(LIMIT);
    assert!(run.status.success(), "{}", run.stderr);
    assert_eq!(run.outcome(), "busy", "{}", run.json);
    let invites = sipp_run.received_requests("INVITE");
    assert_eq!(invites.len(), 1);
    assert!(
        invites[0].first_line.contains("2025550177"),
        "{}",
        invites[0].first_line
    );
}
