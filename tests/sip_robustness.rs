//! Malformed and unexpected SIP from the network: `outdial serve` answers what
//! it can (400, 501, 481, 405, 200 to OPTIONS), never crashes, and keeps
//! serving. The peer here is a plain UDP socket sending hand-written
//! datagrams, so each case is exactly the bytes under test.

use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_udp_port() -> u16 {
    // Bind both UDP and TCP on the same port so `serve`'s listeners can take it.
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair");
}

fn start_server() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_udp_port();
    let rtp_base = 40000 + (port % 1000) * 20;
    let child = Command::new(env!("CARGO_BIN_EXE_outdial"))
        .arg("serve")
        .current_dir(dir.path())
        .env("OUTDIAL_SIP_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "OUTDIAL_RTP_PORTS",
            format!("{}-{}", rtp_base, rtp_base + 19),
        )
        // Several servers run at once: each takes its own admin port.
        .env("OUTDIAL_HTTP_LISTEN", "127.0.0.1:0")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn outdial serve");
    let server = Server {
        child,
        port,
        _dir: dir,
    };
    let client = client();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(resp) = exchange(&client, server.port, &options("ready", 1)) {
            if resp.starts_with("SIP/2.0 200") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "outdial serve did not answer OPTIONS"
        );
    }
    server
}

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    s
}

/// Sends one datagram, returns the first answer within the timeout.
fn exchange(client: &UdpSocket, port: u16, msg: &str) -> Option<String> {
    client
        .send_to(msg.as_bytes(), ("127.0.0.1", port))
        .expect("send");
    let mut buf = [0u8; 4096];
    loop {
        match client.recv_from(&mut buf) {
            Ok((n, _)) => {
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                // Skip provisional answers.
                if text.starts_with("SIP/2.0 1") {
                    continue;
                }
                return Some(text);
            }
            Err(_) => return None,
        }
    }
}

fn request(method: &str, cseq_method: &str, branch: &str, extra: &str, client_port: u16) -> String {
    format!(
        "{method} sip:outdial@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:{client_port};branch=z9hG4bK-{branch};rport\r\n\
         From: <sip:probe@127.0.0.1>;tag=t-{branch}\r\n\
         To: <sip:outdial@127.0.0.1>{extra}\r\n\
         Call-ID: {branch}@probe\r\n\
         CSeq: 1 {cseq_method}\r\n\
         Max-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn options(branch: &str, client_port: u16) -> String {
    request("OPTIONS", "OPTIONS", branch, "", client_port)
}

fn status(resp: &str) -> u16 {
    resp.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn malformed_and_unexpected_requests_are_answered_and_survived() {
    let server = start_server();
    let c = client();
    let cp = c.local_addr().expect("addr").port();

    // Out-of-dialog OPTIONS: 200 with Allow.
    let r = exchange(&c, server.port, &options("opt1", cp)).expect("OPTIONS answered");
    assert_eq!(status(&r), 200, "{r}");
    assert!(r.contains("Allow:"), "{r}");
    assert!(
        r.contains("branch=z9hG4bK-opt1"),
        "answer carries our Via: {r}"
    );

    // Missing Call-ID: 400, routed back with our Via.
    let no_call_id =
        request("OPTIONS", "OPTIONS", "nocid", "", cp).replace("Call-ID: nocid@probe\r\n", "");
    let r = exchange(&c, server.port, &no_call_id).expect("400 for missing Call-ID");
    assert_eq!(status(&r), 400, "{r}");
    assert!(r.contains("branch=z9hG4bK-nocid"), "{r}");

    // Broken CSeq: 400.
    let bad_cseq = request("OPTIONS", "OPTIONS", "badcseq", "", cp)
        .replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS");
    let r = exchange(&c, server.port, &bad_cseq).expect("400 for bad CSeq");
    assert_eq!(status(&r), 400, "{r}");

    // Unknown method: 501.
    let r = exchange(
        &c,
        server.port,
        &request("FROBNICATE", "FROBNICATE", "unk", "", cp),
    )
    .expect("501 for unknown method");
    assert_eq!(status(&r), 501, "{r}");

    // BYE for a dialog we do not have: 481.
    let r = exchange(
        &c,
        server.port,
        &request("BYE", "BYE", "bye", ";tag=nosuch", cp),
    )
    .expect("481 for unknown dialog");
    assert_eq!(status(&r), 481, "{r}");

    // A method we do not serve: 405 with Allow.
    let r = exchange(
        &c,
        server.port,
        &request("SUBSCRIBE", "SUBSCRIBE", "sub", "", cp),
    )
    .expect("405 for SUBSCRIBE");
    assert_eq!(status(&r), 405, "{r}");
    assert!(r.contains("Allow:"), "{r}");

    // Garbage with no Via cannot be answered; it must not hurt either.
    for junk in [
        &b"\x00\x01\x02\x03 definitely not SIP"[..],
        b"INVITE\r\n\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
        &[0xffu8; 1400][..],
    ] {
        c.send_to(junk, ("127.0.0.1", server.port))
            .expect("send junk");
    }
    // A response that fits no transaction is dropped quietly.
    let stray = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-x\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: stray\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
    c.send_to(stray.as_bytes(), ("127.0.0.1", server.port))
        .expect("send stray");

    // Still serving.
    let r = exchange(&c, server.port, &options("opt2", cp)).expect("still answers OPTIONS");
    assert_eq!(status(&r), 200, "{r}");
}

#[test]
fn random_mutations_of_a_request_never_stop_the_server() {
    let server = start_server();
    let c = client();
    let cp = c.local_addr().expect("addr").port();
    let base = request("OPTIONS", "OPTIONS", "fuzz", "", cp).into_bytes();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..600 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut p = base.clone();
        let at = (seed as usize) % p.len();
        match i % 3 {
            0 => p.truncate(at),
            1 => p[at] = (seed >> 32) as u8,
            _ => p.insert(at, b'\r'),
        }
        c.send_to(&p, ("127.0.0.1", server.port)).expect("send");
    }
    // Drain whatever came back, then check it still answers.
    std::thread::sleep(Duration::from_millis(300));
    let mut buf = [0u8; 4096];
    while c.recv_from(&mut buf).is_ok() {}
    let r = exchange(&c, server.port, &options("after-fuzz", cp)).expect("answers after fuzzing");
    assert_eq!(status(&r), 200, "{r}");
}
