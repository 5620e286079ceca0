//! Trunk registration through the library API, against kamailio as the
//! carrier's registrar: the state a campaign or the admin API would read.
//! A good password ends `Registered`; a wrong one ends `Failed` with the
//! carrier's code after exactly one authenticated try, then backs off.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{test_dir, write_profile, CarrierConfig, Kamailio};
use outdial::config::Config;
use outdial::sip::{RegistrationState, UserAgent};

fn carrier(dir: &std::path::Path, password: &str, register_with_401: bool) -> Kamailio {
    carrier_with(dir, password, register_with_401, false)
}

fn carrier_with(
    dir: &std::path::Path,
    password: &str,
    register_with_401: bool,
    sha256: bool,
) -> Kamailio {
    Kamailio::start(
        dir,
        &CarrierConfig {
            realm: "carrier.test".into(),
            username: "trunk-user".into(),
            password: password.into(),
            ua_uri: "sip:nobody@127.0.0.1:9".into(),
            register_with_401,
            sha256,
        },
    )
}

fn load(dir: &std::path::Path) -> Config {
    let (lo, hi) = common::free_rtp_range(20);
    let env: HashMap<String, String> = [
        ("OUTDIAL_SIP_LISTEN".to_string(), "127.0.0.1:0".to_string()),
        ("OUTDIAL_RTP_PORTS".to_string(), format!("{lo}-{hi}")),
    ]
    .into_iter()
    .collect();
    Config::load_with_env(
        &dir.join("outdial.toml"),
        false,
        &dir.join("profiles"),
        true,
        &|k| env.get(k).cloned(),
    )
    .unwrap_or_else(|e| panic!("config: {e}"))
}

fn profile(proxy: &str, user: &str, password: &str) -> String {
    format!(
        "proxy = \"{proxy}\"\nrealm = \"carrier.test\"\nusername = \"{user}\"\n\
         password = \"{password}\"\nregister = true\nregister_expires = 120\n"
    )
}

async fn registers(register_with_401: bool) {
    let dir = test_dir("registration");
    let password = format!("pw-{}", common::random_u64());
    let kam = carrier(dir.path(), &password, register_with_401);
    write_profile(
        &dir.path().join("profiles"),
        "good",
        &profile(&kam.addr(), "trunk-user", &password),
    );
    let config = load(dir.path());
    let ua = UserAgent::start(&config).await.expect("user agent");
    assert_eq!(ua.registration("good"), RegistrationState::Idle);
    ua.start_trunks(&config.profiles);
    let state = ua.wait_registration("good", Duration::from_secs(10)).await;
    assert!(
        matches!(state, RegistrationState::Registered { expires } if expires > 0 && expires <= 120),
        "{state:?}\n{}",
        common::tail(&kam.log(), 30)
    );
    assert!(
        kam.count("REGISTER challenged") >= 1,
        "the carrier challenged first"
    );
    assert_eq!(
        kam.count("REGISTER accepted"),
        1,
        "{:?}",
        kam.carrier_lines()
    );
    // Shutting down removes the binding (expires=0).
    ua.shutdown().await;
    drop(ua);
    assert!(
        kam.wait_for("REGISTER unregistered", Duration::from_secs(3)),
        "{:?}",
        kam.carrier_lines()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_answering_a_407_challenge() {
    registers(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_answering_a_401_challenge() {
    registers(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_fails_with_the_code_and_does_not_loop() {
    let dir = test_dir("registration-bad");
    let kam = carrier(dir.path(), "the-right-password", false);
    write_profile(
        &dir.path().join("profiles"),
        "bad",
        &profile(&kam.addr(), "trunk-user", "not-the-password"),
    );
    let config = load(dir.path());
    let ua = UserAgent::start(&config).await.expect("user agent");
    ua.start_trunks(&config.profiles);
    let state = ua.wait_registration("bad", Duration::from_secs(10)).await;
    assert_eq!(
        state,
        RegistrationState::Failed {
            code: Some(407),
            reason: "Proxy Authentication Required".into()
        },
        "{}",
        common::tail(&kam.log(), 30)
    );
    // One unauthenticated and one authenticated REGISTER, then a backoff of
    // a second before the next attempt: never a tight loop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        kam.count("REGISTER auth failed"),
        1,
        "{:?}",
        kam.carrier_lines()
    );
    assert_eq!(kam.count("REGISTER accepted"), 0);
    ua.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_with_a_sha256_qop_auth_challenge() {
    let dir = test_dir("registration-sha256");
    let password = format!("pw-{}", common::random_u64());
    let kam = carrier_with(dir.path(), &password, false, true);
    write_profile(
        &dir.path().join("profiles"),
        "sha",
        &profile(&kam.addr(), "trunk-user", &password),
    );
    let config = load(dir.path());
    let ua = UserAgent::start(&config).await.expect("user agent");
    ua.start_trunks(&config.profiles);
    let state = ua.wait_registration("sha", Duration::from_secs(10)).await;
    assert!(
        matches!(state, RegistrationState::Registered { .. }),
        "{state:?}\n{}",
        common::tail(&kam.log(), 30)
    );
    // The carrier verified a SHA-256 digest computed with qop=auth.
    assert!(
        kam.carrier_lines()
            .iter()
            .any(|l| l == "REGISTER digest ok algorithm=SHA-256 qop=auth"),
        "{:?}",
        kam.carrier_lines()
    );
    ua.shutdown().await;
}

/// `outdial serve` registers its trunks at start and removes the binding
/// when stopped with SIGTERM (docker stop, systemd), then exits 0.
#[test]
fn serve_registers_and_unregisters_on_sigterm() {
    let dir = test_dir("serve-register");
    let password = format!("pw-{}", common::random_u64());
    let kam = carrier(dir.path(), &password, false);
    let profiles = write_profile(
        &dir.path().join("profiles"),
        "good",
        &profile(&kam.addr(), "trunk-user", &password),
    );
    let mut cmd = common::outdial_cmd(dir.path());
    cmd.arg("--profiles").arg(&profiles).arg("serve");
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("spawn outdial serve");
    let registered = kam.wait_for("REGISTER accepted", Duration::from_secs(10));
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(registered, "{:?}", kam.carrier_lines());
    assert!(
        exit.is_some_and(|s| s.success()),
        "serve must exit 0 on SIGTERM: {exit:?}"
    );
    assert!(
        kam.wait_for("REGISTER unregistered", Duration::from_secs(2)),
        "{:?}",
        kam.carrier_lines()
    );
}

/// `ping_interval`: `serve` keeps the trunk alive with OPTIONS at that pace (no REGISTER).
#[test]
fn serve_pings_the_trunk_with_options() {
    let dir = test_dir("serve-ping");
    let kam = carrier(dir.path(), "unused-password", false);
    let profiles = write_profile(
        &dir.path().join("profiles"),
        "pinged",
        &format!("proxy = \"{}\"\nping_interval = 1\n", kam.addr()),
    );
    let mut cmd = common::outdial_cmd(dir.path());
    cmd.arg("--profiles").arg(&profiles).arg("serve");
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("spawn outdial serve");
    std::thread::sleep(Duration::from_millis(2600));
    let _ = child.kill();
    let _ = child.wait();
    let pings = kam.count("OPTIONS from");
    assert!(
        (2..=4).contains(&pings),
        "one OPTIONS per second for 2.6 s, got {pings}: {:?}",
        kam.carrier_lines()
    );
    assert_eq!(kam.count("REGISTER"), 0, "register = false");
}
