//! TLS trunks against kamailio's TLS module, with certificates a CA made by the test signed
//! (`openssl`): a call through a profile whose `tls_ca_file` is that CA is answered (a sipp
//! UAS behind kamailio) and ended by our BYE over the same connection; the same trunk trusting
//! another CA sends nothing and names the certificate error; a carrier that asks for a
//! client certificate takes the call with `tls_cert_file`/`tls_key_file` and refuses it
//! without them.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const SIPP_WAIT: Duration = Duration::from_secs(20);

/// A profiles folder holding one TLS profile `carrier` at `port` with `extra` keys.
fn tls_profile(dir: &Path, name: &str, port: u16, extra: &str) -> PathBuf {
    let profiles = dir.join(name);
    write_profile(
        &profiles,
        "carrier",
        &format!("proxy = \"127.0.0.1:{port}\"\ntransport = \"tls\"\n{extra}"),
    );
    profiles
}

/// Test certificates, the callee (a sipp UAS answering once) and the TLS carrier in front of
/// it (asking for a client certificate when `client_cert`).
fn carrier(dir: &Path, client_cert: bool) -> (TestPki, Sipp, KamailioTls) {
    let pki = TestPki::make(dir);
    let sipp = Sipp::uas(dir, "uas_answer_wait_bye_rr.xml")
        .args(["-m", "1"])
        .start();
    let carrier = KamailioTls::start(dir, &pki, &sipp.uri("callee"), client_cert);
    (pki, sipp, carrier)
}

fn call(dir: &Path, profiles: &Path) -> CallRun {
    let mut cmd = outdial_cmd(dir);
    cmd.arg("--profiles").arg(profiles);
    run_call_in(
        cmd,
        &[
            "15551230001",
            "--profile",
            "carrier",
            "--ring-timeout",
            "10",
            "--max-duration",
            "1",
        ],
        Duration::from_secs(40),
    )
}

#[test]
fn a_tls_trunk_is_verified_against_its_ca_file() {
    let dir = test_dir("tls-trunk");
    let d = dir.path();
    let (pki, sipp, carrier) = carrier(d, false);

    let trusted = tls_profile(
        d,
        "trusted",
        carrier.tls_port,
        &format!("tls_ca_file = \"{}\"\n", pki.ca.display()),
    );
    let run = call(d, &trusted);
    assert_eq!(
        run.outcome(),
        "answered",
        "{}\n{}\n{}",
        run.json,
        run.stderr,
        carrier.log()
    );
    assert!(
        carrier
            .carrier_lines()
            .iter()
            .any(|l| l.starts_with("INVITE over TLS")),
        "{:?}",
        carrier.carrier_lines()
    );
    sipp.wait(SIPP_WAIT)
        .assert_passed("the callee behind the TLS carrier answered and got our BYE");

    let other = tls_profile(
        d,
        "other",
        carrier.tls_port,
        &format!("tls_ca_file = \"{}\"\n", pki.other_ca.display()),
    );
    // Nothing is dialed through a connection that did not verify: `outdial call` says why
    // (a campaign records it as the attempt's reason, and a trunk group moves on).
    let mut cmd = outdial_cmd(d);
    cmd.arg("--profiles").arg(&other).args([
        "call",
        "15551230001",
        "--profile",
        "carrier",
        "--json",
    ]);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(40));
    assert_eq!(out.status.and_then(|s| s.code()), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("over TLS") && out.stderr.contains("UnknownIssuer"),
        "the error names the connection and the certificate problem: {}",
        out.stderr
    );
    assert!(
        !carrier
            .carrier_lines()
            .iter()
            .skip_while(|l| !l.starts_with("INVITE over TLS"))
            .skip(1)
            .any(|l| l.starts_with("INVITE")),
        "no INVITE reached the carrier through an unverified connection"
    );
}

#[test]
fn a_carrier_that_asks_for_a_client_certificate_gets_ours() {
    let dir = test_dir("tls-client-cert");
    let d = dir.path();
    let (pki, sipp, carrier) = carrier(d, true);

    let without = tls_profile(
        d,
        "without",
        carrier.tls_port,
        &format!("tls_ca_file = \"{}\"\n", pki.ca.display()),
    );
    let run = call(d, &without);
    assert_eq!(run.outcome(), "failed", "{}\n{}", run.json, run.stderr);
    assert!(
        !carrier
            .carrier_lines()
            .iter()
            .any(|l| l.starts_with("INVITE over TLS")),
        "no INVITE without a client certificate: {:?}",
        carrier.carrier_lines()
    );

    let with = tls_profile(
        d,
        "with",
        carrier.tls_port,
        &format!(
            "tls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            pki.ca.display(),
            pki.client_cert.display(),
            pki.client_key.display()
        ),
    );
    let run = call(d, &with);
    assert_eq!(
        run.outcome(),
        "answered",
        "{}\n{}\n{}",
        run.json,
        run.stderr,
        carrier.log()
    );
    sipp.wait(SIPP_WAIT)
        .assert_passed("the callee answered a call that came with our client certificate");
}
