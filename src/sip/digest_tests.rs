//! Digest responses (RFC 2617, RFC 7616) as rsipstack computes them for our
//! 401/407 answers: checked against the RFCs' own worked examples.

use rsipstack::dialog::authenticate::compute_digest;
use rsipstack::sip::headers::auth::{Algorithm, AuthQop};
use rsipstack::sip::Method;

#[test]
fn rfc2617_md5_qop_auth_example() {
    // RFC 2617 §3.5: Mufasa / "Circle Of Life", GET /dir/index.html.
    let qop = AuthQop::Auth {
        cnonce: "0a4f113b".into(),
        nc: 1,
    };
    let response = compute_digest(
        "Mufasa",
        "Circle Of Life",
        "testrealm@host.com",
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        &Method::Register,
        "/dir/index.html",
        Algorithm::Md5,
        Some(&qop),
    );
    // The RFC's example is for GET; the method enters only HA2, so compute
    // the GET value by hand to compare like with like.
    let ha1 = md5_hex("Mufasa:testrealm@host.com:Circle Of Life");
    let ha2 = md5_hex("GET:/dir/index.html");
    let want = md5_hex(&format!(
        "{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{ha2}"
    ));
    assert_eq!(want, "6629fae49393a05397450978507c4ef1");
    // And the REGISTER response follows the same construction.
    let ha2_reg = md5_hex("REGISTER:/dir/index.html");
    let want_reg = md5_hex(&format!(
        "{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{ha2_reg}"
    ));
    assert_eq!(response, want_reg);
}

#[test]
fn rfc7616_sha256_qop_auth_example() {
    // RFC 7616 §3.9.1: SHA-256, qop=auth, GET /dir/index.html. Our SIP
    // methods cannot be GET, so check HA1 and the final combination through
    // a SIP method against an independent SHA-256 of the same strings.
    let ha1 = sha256_hex("Mufasa:http-auth@example.org:Circle of Life");
    let ha2 = sha256_hex("GET:/dir/index.html");
    let want = sha256_hex(&format!(
        "{ha1}:7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v:00000001:f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ:auth:{ha2}"
    ));
    assert_eq!(
        want,
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    );
    let qop = AuthQop::Auth {
        cnonce: "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ".into(),
        nc: 1,
    };
    let got = compute_digest(
        "Mufasa",
        "Circle of Life",
        "http-auth@example.org",
        "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        &Method::Invite,
        "/dir/index.html",
        Algorithm::Sha256,
        Some(&qop),
    );
    let ha2_inv = sha256_hex("INVITE:/dir/index.html");
    let want_inv = sha256_hex(&format!(
        "{ha1}:7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v:00000001:f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ:auth:{ha2_inv}"
    ));
    assert_eq!(got, want_inv);
}

#[test]
fn rfc2617_md5_without_qop() {
    // RFC 2069 style (no qop): response = MD5(HA1:nonce:HA2).
    let got = compute_digest(
        "alice",
        "secret",
        "sip.example.com",
        "abc123",
        &Method::Invite,
        "sip:12025550101@sip.example.com",
        Algorithm::Md5,
        None,
    );
    let ha1 = md5_hex("alice:sip.example.com:secret");
    let ha2 = md5_hex("INVITE:sip:12025550101@sip.example.com");
    assert_eq!(got, md5_hex(&format!("{ha1}:abc123:{ha2}")));
}

fn md5_hex(s: &str) -> String {
    use md5::{Digest, Md5};
    hex(&Md5::digest(s.as_bytes()))
}

fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(s.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
