//! The admin API's limits against a real `outdial serve` process (SQLite, its own temp
//! dir, `[http]` limits in its outdial.toml), driven by raw TCP clients where a real HTTP
//! client would hide what is tested:
//!
//! - a 2 GB CSV stream (generated on the fly, never on disk) is cut off with 413 naming
//!   the limit, the server's RSS stays bounded, nothing is imported or left staged; a
//!   small body over the limit answers 413 too (by its Content-Length);
//! - a client that sends half a request line and stalls is disconnected within the
//!   header-read timeout, and with `max_connections` idle connections open the next one
//!   is answered 503 and closed;
//! - repeated bad logins from one address get 429 with Retry-After;
//! - export jobs beyond `max_export_jobs` get 429 (held deterministically: the test holds
//!   SQLite's write lock so the job that got the one slot cannot finish meanwhile).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const IMPORT_LIMIT: u64 = 1024 * 1024;
const HEADER_TIMEOUT_S: u64 = 3;
const MAX_CONNECTIONS: usize = 4;

struct Serve {
    child: Child,
    port: u16,
    key: String,
    dir: tempfile::TempDir,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default();
            let tail: String = log
                .chars()
                .rev()
                .take(3000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            eprintln!("--- outdial serve log (tail) ---\n{tail}");
        }
    }
}

fn start() -> Serve {
    let dir = test_dir("api_limits");
    std::fs::write(
        dir.path().join("outdial.toml"),
        format!(
            "[http]\nheader_read_timeout_secs = {HEADER_TIMEOUT_S}\nmax_connections = {MAX_CONNECTIONS}\n\
             import_max_bytes = {IMPORT_LIMIT}\nmax_export_jobs = 1\nlogin_failures_per_minute = 5\n"
        ),
    )
    .unwrap();
    let out = outdial_cmd(dir.path())
        .args(["keys", "create", "--login", "admin"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let port = free_tcp_port();
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let child = outdial_cmd(dir.path())
        .env("OUTDIAL_HTTP_LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "outdial=info")
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let serve = Serve {
        child,
        port,
        key,
        dir,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while raw(
        port,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .0 != 200
    {
        assert!(
            Instant::now() < deadline,
            "outdial serve did not answer /healthz"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    serve
}

/// One request over a fresh connection: (status, body as JSON or text). 0 when there is
/// no answer.
fn raw(port: u16, request: &[u8]) -> (u16, Value) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, Value::Null);
    };
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    if s.write_all(request).is_err() {
        return (0, Value::Null);
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse(&out)
}

fn parse(response: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::String(text.to_string())),
    )
}

fn api(s: &Serve, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    api_as(s.port, &s.key, method, path, body)
}

/// [`api`] with another credential (a session token).
fn api_as(port: u16, bearer: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    raw(port, request.as_bytes())
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A CSV upload written by a thread while this one reads the answer (the server answers
/// before it has read it all): (status, body, bytes the writer got out).
fn upload(
    port: u16,
    key: &str,
    campaign: i64,
    head_extra: &str,
    mut next: impl FnMut(&mut Vec<u8>) -> bool + Send + 'static,
) -> (u16, Value, u64) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let head = format!(
        "POST /v1/campaigns/{campaign}/contacts/import HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {key}\r\nContent-Type: text/csv\r\n{head_extra}\r\n"
    );
    let mut writer = s.try_clone().unwrap();
    let chunked = head_extra.contains("chunked");
    let sender = std::thread::spawn(move || {
        let mut sent = 0u64;
        if writer.write_all(head.as_bytes()).is_err() {
            return sent;
        }
        let mut chunk = Vec::with_capacity(64 * 1024);
        loop {
            chunk.clear();
            let more = next(&mut chunk);
            let ok = if chunked && !chunk.is_empty() {
                writer
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .is_ok()
                    && writer.write_all(&chunk).is_ok()
                    && writer.write_all(b"\r\n").is_ok()
            } else {
                writer.write_all(&chunk).is_ok()
            };
            if !ok {
                return sent;
            }
            sent += chunk.len() as u64;
            if !more {
                if chunked {
                    let _ = writer.write_all(b"0\r\n\r\n");
                }
                return sent;
            }
        }
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the head and the body (Content-Length) are in, or the server closes.
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        let text = String::from_utf8_lossy(&out).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok());
            if len.is_some_and(|n| body.len() >= n) {
                break;
            }
        }
    }
    drop(s);
    let sent = sender.join().unwrap();
    let (status, body) = parse(&out);
    (status, body, sent)
}

fn staged_rows(dir: &Path) -> i64 {
    let url = format!("sqlite://{}", dir.join("outdial.db").display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM contact_imports")
            .fetch_one(&mut c)
            .await
            .unwrap();
        c.close().await.ok();
        n
    })
}

fn contacts_total(s: &Serve, campaign: i64) -> i64 {
    let (status, c) = api(s, "GET", &format!("/v1/campaigns/{campaign}"), None);
    assert_eq!(status, 200, "{c}");
    c["contacts"]["total"].as_i64().unwrap()
}

#[test]
fn a_2_gb_csv_stream_is_cut_off_at_the_limit_with_bounded_memory() {
    let s = start();
    let (status, c) = api(&s, "POST", "/v1/campaigns", Some(json!({"name": "big"})));
    assert_eq!(status, 201, "{c}");
    let id = c["id"].as_i64().unwrap();

    // A small body over the limit, declared by its Content-Length: 413 naming the limit.
    let small = vec![b'1'; IMPORT_LIMIT as usize + 1];
    let mut once = Some(small);
    let (status, body, _) = upload(
        s.port,
        &s.key,
        id,
        &format!("Content-Length: {}\r\n", IMPORT_LIMIT + 1),
        move |out| {
            if let Some(bytes) = once.take() {
                out.extend_from_slice(&bytes);
            }
            false
        },
    );
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&IMPORT_LIMIT.to_string()),
        "the limit is named: {message}"
    );

    // 2 GB of valid rows, chunked (no length to go by), generated as it is sent.
    let before = rss_kb(s.child.id());
    let total: u64 = 2 * 1024 * 1024 * 1024;
    let mut produced = 0u64;
    let mut n = 0u64;
    let (status, body, sent) = upload(
        s.port,
        &s.key,
        id,
        "Transfer-Encoding: chunked\r\n",
        move |out| {
            while out.len() < 60 * 1024 {
                n += 1;
                out.extend_from_slice(
                    format!("+1202{:07},Caller {n}\n", 2_000_000 + n % 8_000_000).as_bytes(),
                );
            }
            produced += out.len() as u64;
            produced < total
        },
    );
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&IMPORT_LIMIT.to_string()),
        "{body}"
    );
    assert!(
        sent < total,
        "the server stopped reading at the limit ({sent} bytes went out)"
    );
    let after = rss_kb(s.child.id());
    assert!(
        after < before + 100 * 1024,
        "serve RSS grew from {before} kB to {after} kB"
    );
    // Nothing imported, nothing left staged.
    assert_eq!(contacts_total(&s, id), 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while staged_rows(s.dir.path()) != 0 {
        assert!(Instant::now() < deadline, "staged rows were not deleted");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Under the limit, with a repeated number: imported whole, the repeat named.
    let mut done = false;
    let (status, body, _) = upload(
        s.port,
        &s.key,
        id,
        "Transfer-Encoding: chunked\r\n",
        move |out| {
            if !done {
                out.extend_from_slice(
                    b"12025550101,Ann\n12025550102,Bob\n(202) 555-0101,Ann again\n",
                );
                done = true;
            }
            false
        },
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["inserted"].as_i64(), body["error_count"].as_i64()),
        (Some(2), Some(1)),
        "{body}"
    );
    assert_eq!(body["errors"][0]["reason"], "duplicate of line 1", "{body}");
    assert_eq!(contacts_total(&s, id), 2);
}

#[test]
fn stalled_clients_are_cut_off_and_connections_are_capped() {
    let s = start();
    // Idle connections that send half a request line and stall.
    let opened = Instant::now();
    let mut stalled: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| {
            let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
            c.write_all(b"GET /heal").unwrap();
            c
        })
        .collect();
    // Give the server the moment it needs to accept them (polled, not assumed).
    let deadline = Instant::now() + Duration::from_secs(HEADER_TIMEOUT_S);
    let refused = loop {
        let (status, body) = raw(
            s.port,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if status == 503 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the connection over the cap was served ({status})"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        refused["error"]["code"], "too_many_connections",
        "{refused}"
    );
    // The stalled ones are closed by the header-read timeout.
    for c in &mut stalled {
        c.set_read_timeout(Some(Duration::from_secs(HEADER_TIMEOUT_S + 20)))
            .unwrap();
        let mut buf = Vec::new();
        let _ = c.read_to_end(&mut buf);
    }
    let took = opened.elapsed();
    assert!(
        took < Duration::from_secs(HEADER_TIMEOUT_S + 15),
        "stalled clients were held {took:?}"
    );
    // Their slots are free again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while raw(
        s.port,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .0 != 200
    {
        assert!(
            Instant::now() < deadline,
            "the server did not take connections again"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_logins_are_rate_limited_and_export_jobs_capped() {
    let s = start();
    let login = |key: &str| {
        let body = json!({"login": "admin", "api_key": key}).to_string();
        let request = format!(
            "POST /v1/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
        c.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).unwrap();
        let text = String::from_utf8_lossy(&out).to_string();
        let retry_after = text.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after:")
                .map(|v| v.trim().to_string())
        });
        let (status, body) = parse(&out);
        (status, retry_after, body)
    };
    // A session first (checking a session token writes nothing to the database; checking
    // an API key records its last use).
    let (status, _, session) = login(&s.key);
    assert_eq!(status, 200, "{session}");
    let token = session["token"].as_str().unwrap().to_string();

    // Export jobs: one at a time here (max_export_jobs = 1). A job takes its slot before
    // it stores anything, so while this test holds SQLite's write lock the request that
    // got the slot waits to store its job, holding the slot, and the others are refused —
    // however fast the machine exports.
    let (_, c) = api(
        &s,
        "POST",
        "/v1/campaigns",
        Some(json!({"name": "exports"})),
    );
    let id = c["id"].as_i64().unwrap();
    let (status, body, _) = upload(s.port, &s.key, id, "Transfer-Encoding: chunked\r\n", {
        let mut done = false;
        move |out| {
            if !done {
                out.extend_from_slice(b"12025550101,Ann\n12025550102,Bob\n");
                done = true;
            }
            false
        }
    });
    assert_eq!(
        (status, body["inserted"].as_i64()),
        (200, Some(2)),
        "{body}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut lock = rt.block_on(async {
        use sqlx::{Connection, Executor};
        let url = format!("sqlite://{}", s.dir.path().join("outdial.db").display());
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        c.execute("BEGIN IMMEDIATE").await.unwrap();
        c
    });
    let (tx, answers) = std::sync::mpsc::channel();
    for _ in 0..3 {
        let (tx, token, port) = (tx.clone(), token.clone(), s.port);
        std::thread::spawn(move || {
            let path = format!("/v1/campaigns/{id}/exports");
            tx.send(api_as(
                port,
                &token,
                "POST",
                &path,
                Some(json!({"format": "xlsx"})),
            ))
            .ok();
        });
    }
    // Two are refused while the third waits for the lock (the server waits up to 10 s).
    for _ in 0..2 {
        let (status, body) = answers
            .recv_timeout(Duration::from_secs(8))
            .expect("a job over the limit is refused at once");
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("max_export_jobs"),
            "{body}"
        );
    }
    rt.block_on(async {
        use sqlx::{Connection, Executor};
        lock.execute("COMMIT").await.unwrap();
        lock.close().await.ok();
    });
    let (status, accepted) = answers.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(status, 202, "{accepted}");
    // When it is done, the next is accepted.
    let job = accepted["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, j) = api(&s, "GET", &format!("/v1/exports/{job}"), None);
        if j["status"] == "done" {
            break;
        }
        assert!(Instant::now() < deadline, "the export did not finish: {j}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = api(
            &s,
            "POST",
            &format!("/v1/campaigns/{id}/exports"),
            Some(json!({"format": "csv_comma"})),
        );
        if status == 202 {
            break;
        }
        assert!(Instant::now() < deadline, "{status}: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Bad logins from this address: 429 with Retry-After after five.
    for _ in 0..5 {
        assert_eq!(login("odk_wrong").0, 401);
    }
    let (status, retry, _) = login("odk_wrong");
    assert_eq!(status, 429);
    assert!(retry
        .and_then(|r| r.parse::<u64>().ok())
        .is_some_and(|r| (1..=60).contains(&r)));
    // Held even with the right key until the window ends.
    assert_eq!(login(&s.key).0, 429);
}
