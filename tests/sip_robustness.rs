//! Malformed and unexpected SIP from the network: `outdial serve` answers what
//! it can (400, 501, 481, 405, 200 to OPTIONS), never crashes, and keeps
//! serving. The peer here is a plain UDP socket sending hand-written
//! datagrams (or a plain TCP connection writing hand-written messages), so
//! each case is exactly the bytes under test.

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
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

/// Reads SIP responses from a TCP stream until one with a final status comes, or the
/// timeout; `None` when the connection closed or nothing came.
fn read_final(stream: &mut TcpStream, pending: &mut Vec<u8>) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 4096];
    loop {
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end + 4]).to_string();
            let body: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if pending.len() < end + 4 + body {
                break;
            }
            pending.drain(..end + 4 + body);
            if !head.starts_with("SIP/2.0 1") {
                return Some(head);
            }
        }
        if Instant::now() >= deadline {
            return None;
        }
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return None,
        }
    }
}

#[test]
fn malformed_requests_over_tcp_are_answered_on_the_same_connection() {
    let server = start_server();
    let mut tcp = TcpStream::connect(("127.0.0.1", server.port)).expect("connect over TCP");
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let cp = tcp.local_addr().expect("addr").port();
    let mut pending = Vec::new();
    let over_tcp = |m: String| m.replace("SIP/2.0/UDP", "SIP/2.0/TCP");

    // A keep-alive ping is answered with its pong and the connection goes on.
    tcp.write_all(b"\r\n\r\n").expect("ping");
    let r = {
        tcp.write_all(over_tcp(options("tcp-opt1", cp)).as_bytes())
            .expect("write");
        read_final(&mut tcp, &mut pending).expect("OPTIONS over TCP answered")
    };
    // The pong (CRLF) may lead the response.
    assert_eq!(status(r.trim_start()), 200, "{r}");
    assert!(r.contains("branch=z9hG4bK-tcp-opt1"), "{r}");

    // Each broken request is answered 400 (501 for an unknown method) on this connection,
    // written in one go with a good request after it: the good one is answered too.
    let no_call_id = over_tcp(request("OPTIONS", "OPTIONS", "tcp-nocid", "", cp))
        .replace("Call-ID: tcp-nocid@probe\r\n", "");
    let bad_cseq = over_tcp(request("OPTIONS", "OPTIONS", "tcp-badcseq", "", cp))
        .replace("CSeq: 1 OPTIONS", "CSeq: one OPTIONS");
    let unknown = over_tcp(request("FROBNICATE", "FROBNICATE", "tcp-unk", "", cp));
    let unparsable = over_tcp(request("OPTIONS", "OPTIONS", "tcp-junk", "", cp))
        .replace("From: <sip:probe@127.0.0.1>", "From: <<<sip:probe@@>>");
    for (msg, code, branch) in [
        (no_call_id, 400, "tcp-nocid"),
        (bad_cseq, 400, "tcp-badcseq"),
        (unknown, 501, "tcp-unk"),
        (unparsable, 400, "tcp-junk"),
    ] {
        let good = over_tcp(options(&format!("{branch}-after"), cp));
        tcp.write_all(format!("{msg}{good}").as_bytes())
            .expect("write");
        let r = read_final(&mut tcp, &mut pending)
            .unwrap_or_else(|| panic!("{branch}: no answer over TCP"));
        assert_eq!(status(&r), code, "{branch}: {r}");
        assert!(r.contains(&format!("branch=z9hG4bK-{branch}")), "{r}");
        let r = read_final(&mut tcp, &mut pending)
            .unwrap_or_else(|| panic!("{branch}: the request after it was not answered"));
        assert_eq!(status(&r), 200, "{branch}-after: {r}");
    }

    // A Content-Length that is no number cannot be framed: 400, then the connection ends.
    let unframed =
        over_tcp(options("tcp-cl", cp)).replace("Content-Length: 0", "Content-Length: x");
    tcp.write_all(unframed.as_bytes()).expect("write");
    let r = read_final(&mut tcp, &mut pending).expect("400 for an unframeable message");
    assert_eq!(status(&r), 400, "{r}");
    assert!(
        read_final(&mut tcp, &mut pending).is_none(),
        "connection closed"
    );

    // A new connection, and UDP, are still served.
    let mut again = TcpStream::connect(("127.0.0.1", server.port)).expect("reconnect");
    again
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let cp2 = again.local_addr().expect("addr").port();
    again
        .write_all(over_tcp(options("tcp-opt2", cp2)).as_bytes())
        .expect("write");
    let r = read_final(&mut again, &mut Vec::new()).expect("OPTIONS on a new connection");
    assert_eq!(status(&r), 200, "{r}");
    let c = client();
    let r = exchange(
        &c,
        server.port,
        &options("udp-after-tcp", c.local_addr().expect("addr").port()),
    )
    .expect("UDP still answers");
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
