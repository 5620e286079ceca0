//! Behind NAT: the configured external SIP and RTP addresses are what the
//! INVITE advertises (Via sent-by with rport, Contact, SDP c=), while packets
//! still flow on loopback. The peer is a bare UDP socket that reads the
//! INVITE's bytes and answers 486, so nothing is ever sent to the external
//! (documentation-range) addresses.

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn invite_advertises_external_addresses_and_rport() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("outdial.toml"),
        r#"
[sip]
listen_udp = "127.0.0.1:0"
listen_tcp = false
external_addr = "203.0.113.9"

[rtp]
bind_addr = "127.0.0.1"
external_addr = "203.0.113.10"
"#,
    )
    .expect("write config");
    let peer = UdpSocket::bind("127.0.0.1:0").expect("bind peer");
    peer.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let peer_port = peer.local_addr().expect("addr").port();
    let rtp_base = 41000 + (peer_port % 500) * 20;

    let child = Command::new(env!("CARGO_BIN_EXE_outdial"))
        .args(["call", &format!("sip:nat@127.0.0.1:{peer_port}"), "--json"])
        .args(["--ring-timeout", "10"])
        .current_dir(dir.path())
        .env(
            "OUTDIAL_RTP_PORTS",
            format!("{}-{}", rtp_base, rtp_base + 19),
        )
        .env_remove("OUTDIAL_SIP_LISTEN")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn outdial");

    let mut buf = [0u8; 8192];
    let (n, from) = peer.recv_from(&mut buf).expect("INVITE arrives");
    let invite = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(invite.starts_with("INVITE sip:nat@127.0.0.1"), "{invite}");
    let via = header(&invite, "Via").expect("Via");
    assert!(
        via.starts_with("SIP/2.0/UDP 203.0.113.9:"),
        "Via sent-by is the external address: {via}"
    );
    assert!(via.contains(";rport"), "Via asks for rport: {via}");
    let contact = header(&invite, "Contact").expect("Contact");
    assert!(contact.contains("@203.0.113.9:"), "Contact: {contact}");
    assert!(
        invite.contains("\r\nc=IN IP4 203.0.113.10\r\n"),
        "SDP connection address is the RTP external address: {invite}"
    );
    // The advertised port is the real listening port (the request came from it).
    assert!(
        via.contains(&format!(":{}", from.port())),
        "Via port {via} is the socket's port {}",
        from.port()
    );

    // End the call: 486 back to where the INVITE came from.
    let mut resp = String::from("SIP/2.0 486 Busy Here\r\n");
    for name in ["Via", "From", "Call-ID", "CSeq"] {
        resp.push_str(&format!(
            "{name}: {}\r\n",
            header(&invite, name).expect(name)
        ));
    }
    resp.push_str(&format!(
        "To: {};tag=nat486\r\nContent-Length: 0\r\n\r\n",
        header(&invite, "To").expect("To")
    ));
    peer.send_to(resp.as_bytes(), from).expect("send 486");

    let out = child.wait_with_output().expect("outdial ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["outcome"], "busy");
    assert_eq!(v["sip_code"], 486);
}

fn header(msg: &str, name: &str) -> Option<String> {
    let head = msg.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}
