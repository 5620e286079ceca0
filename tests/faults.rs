//! Fault tests: real `outdial serve` processes, real signals (`kill -9`, `-TERM`), a sipp far
//! end that holds the calls (tests/scenarios/uas_by_number.xml: numbers ending in 0-3 answer
//! and wait for our BYE, 8 rings until CANCEL). Every test asserts that nothing is lost (every
//! call has its attempt record, no contact is left `dialing`) and nothing is doubled (one record
//! per call, no number called twice at once).
//!
//! The store is read directly (the SQLite file `serve` uses, or PostgreSQL) to see the calls in
//! flight; everything else goes through the API.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;
use outdial::store::inflight::CallState;
use outdial::store::Store;
use serde_json::{json, Value};

/// One `outdial serve` process from `dir` (its own data directory, `outdial.toml` and
/// profiles), logging into `serve-N.log`.
struct Node {
    child: Option<Child>,
    api: String,
    log: PathBuf,
}

impl Node {
    fn start(dir: &Path, http_port: u16, life: u32) -> Node {
        let log = dir.join(format!("serve-{life}.log"));
        let child = outdial_in(dir)
            .arg("serve")
            .env("RUST_LOG", "info,rsipstack=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("serve log"))
            .spawn()
            .expect("spawn outdial serve");
        let node = Node {
            child: Some(child),
            api: format!("http://127.0.0.1:{http_port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !port_bound(http_port, true) {
            assert!(
                Instant::now() < deadline,
                "outdial serve did not listen on {http_port}: {}",
                node.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        node
    }

    fn pid(&self) -> String {
        self.child.as_ref().expect("running").id().to_string()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {sig} failed");
    }

    /// Waits for the process to end (after a signal); `None` when it is still running.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn kill9(&mut self) {
        self.signal("-KILL");
        assert!(self.wait_exit(Duration::from_secs(10)).is_some());
    }

    fn log_tail(&self, n: usize) -> String {
        tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), n)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `outdial.toml` with a fixed SIP port (so the far end's log tells the nodes apart) and the
/// `far-end` trunk profile (`extra` added to it).
fn write_config(
    dir: &Path,
    db_url: &str,
    sip_port: u16,
    http_port: u16,
    far_end: u16,
    extra: &str,
) {
    let (lo, hi) = free_rtp_range(40);
    std::fs::write(
        dir.join("outdial.toml"),
        format!(
            "[sip]\nlisten_udp = \"127.0.0.1:{sip_port}\"\nlisten_tcp = false\n\n\
             [rtp]\nbind_addr = \"127.0.0.1\"\nport_min = {lo}\nport_max = {hi}\n\n\
             [database]\nurl = \"{db_url}\"\n\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n\n\
             [engine]\nshutdown_grace_secs = 40\nnode_lease_secs = 5\n"
        ),
    )
    .expect("write outdial.toml");
    write_profile(
        &dir.join("sip-profiles"),
        "far-end",
        &format!("proxy = \"127.0.0.1:{far_end}\"\n{extra}"),
    );
}

/// A message of `secs` seconds (a quiet tone) in `dir/media/`: the call stays up while it
/// plays, then we hang up.
fn hold_message(dir: &Path, secs: u32) {
    require_tool("sox");
    let media = dir.join("media");
    std::fs::create_dir_all(&media).expect("media dir");
    run_tool(
        Command::new("sox")
            .args(["-n", "-r", "8000", "-c", "1", "-b", "16"])
            .arg(media.join("hold.wav"))
            .args(["synth", &secs.to_string(), "sine", "440", "vol", "0.05"]),
        "sox hold.wav",
    );
}

fn api_key(dir: &Path) -> String {
    format!("Bearer {}", create_key(dir, "faults"))
}

struct Api {
    http: reqwest::Client,
    auth: String,
    base: String,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let (status, body) = api_request(&self.http, &self.auth, method, url.clone(), body).await;
        assert!(status.is_success(), "{url}: {status} {body}");
        body
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// A campaign through the far-end trunk playing `hold.wav`, its contacts imported.
    async fn campaign(&self, settings: Value, phones: &[String]) -> i64 {
        let mut body = json!({
            "name": "faults", "pace": 600, "max_concurrent": 10,
            "ring_timeout_secs": 60, "ring_timeout_override": true,
            "max_retries": 1, "retry_interval": {"value": 1, "unit": "seconds"},
            "play_message": "hold.wav",
            "sip_profile": "far-end", "caller_id": "+12025550100"
        });
        for (k, v) in settings.as_object().expect("object") {
            body[k] = v.clone();
        }
        let created = self.post("/v1/campaigns", body).await;
        let id = created["id"].as_i64().expect("campaign id");
        let csv: String = phones.iter().map(|p| format!("{p},x\n")).collect();
        let resp = self
            .http
            .post(format!("{}/v1/campaigns/{id}/contacts/import", self.base))
            .header("Authorization", &self.auth)
            .header("Content-Type", "text/csv")
            .body(csv)
            .send()
            .await
            .expect("import");
        let imported: Value = resp.json().await.expect("import JSON");
        assert_eq!(imported["inserted"], phones.len(), "{imported}");
        id
    }

    async fn attempts(&self, campaign: i64) -> Vec<Value> {
        self.get(&format!("/v1/campaigns/{campaign}/attempts?limit=1000"))
            .await["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn contacts(&self, campaign: i64) -> Vec<Value> {
        self.get(&format!("/v1/campaigns/{campaign}/contacts?limit=1000"))
            .await["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn wait_finished(&self, campaign: i64, timeout: Duration, node: &Node) {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.get(&format!("/v1/campaigns/{campaign}")).await;
            if c["status"] == "finished" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "campaign did not finish: {c}\n{}",
                node.log_tail(60)
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// Polls the store until `n` calls are in flight in `state` (all of them when `state` is
/// `None`).
async fn wait_calls(store: &Store, answered: usize, ringing: usize, node: &Node) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let calls = store.calls_in_flight().await.expect("calls in flight");
        let a = calls
            .iter()
            .filter(|c| c.state == CallState::Answered)
            .count();
        let r = calls
            .iter()
            .filter(|c| c.state == CallState::Ringing)
            .count();
        if a == answered && r == ringing {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waiting for {answered} answered and {ringing} ringing calls, have {a} and {r}\n{}",
            node.log_tail(60)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// US numbers the far end answers (last digit 1-3; never ending in 120, which presses a key).
fn answered_numbers(n: usize, prefix: &str) -> Vec<String> {
    (0..n)
        .map(|i| format!("+1202555{prefix}{i:02}{}", i % 3 + 1))
        .collect()
}

fn far_end(dir: &Path, calls: u32) -> Sipp {
    speech_wav_padded(&dir.join("far.wav"), "Hello?", 0.1, 0.5);
    to_ulaw_raw(&dir.join("far.wav"), &dir.join("voicemail.ulaw"));
    Sipp::uas(dir, "uas_by_number.xml")
        .stream_wav(&dir.join("far.wav"))
        .args(["-m", &calls.to_string()])
        .start()
}

/// The Via header's port of a SIP message.
fn via_port(m: &SipMessage) -> Option<u16> {
    let via = m.header("Via")?;
    let host = via.split_whitespace().nth(1)?;
    host.split(';').next()?.rsplit(':').next()?.parse().ok()
}

/// Whether the far end answered our BYE for `call_id` with a 200 — the call ended there.
/// (sipp sends its answers to where the call's INVITE came from, not to the BYE's Via: a
/// BYE from another node or a later life of ours is answered toward the node that placed the
/// call, so the reconciling node itself sees no answer and records after its BYE wait.)
fn bye_answered(run: &SippRun, call_id: &str) -> bool {
    run.sip_messages().iter().any(|m| {
        !m.received
            && m.status() == Some(200)
            && m.header("Call-ID") == Some(call_id)
            && m.header("CSeq").is_some_and(|c| c.ends_with("BYE"))
    })
}

/// Per number (Request-URI user), the INVITE dialogs the far end saw, as (start, end)
/// message indexes; `end` is our BYE or CANCEL, or a final error it sent.
fn dialogs_by_number(run: &SippRun) -> HashMap<String, Vec<(usize, Option<usize>)>> {
    let messages = run.sip_messages();
    let mut by_call: HashMap<String, (String, usize, Option<usize>)> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        let Some(call_id) = m.header("Call-ID").map(str::to_string) else {
            continue;
        };
        if m.received && m.method() == Some("INVITE") {
            let user = m
                .first_line
                .split_whitespace()
                .nth(1)
                .and_then(|u| u.strip_prefix("sip:"))
                .and_then(|u| u.split('@').next())
                .unwrap_or("")
                .to_string();
            by_call.entry(call_id).or_insert((user, i, None));
        } else if let Some(entry) = by_call.get_mut(&call_id) {
            let ends = (m.received && matches!(m.method(), Some("BYE") | Some("CANCEL")))
                || (!m.received && m.status().is_some_and(|c| c >= 300));
            if ends && entry.2.is_none() {
                entry.2 = Some(i);
            }
        }
    }
    let mut out: HashMap<String, Vec<(usize, Option<usize>)>> = HashMap::new();
    for (_, (user, start, end)) in by_call {
        out.entry(user).or_default().push((start, end));
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("outdial.db").display())
}

/// `kill -9` with 5 answered calls, 3 of a campaign with a retry left and 2 of one with
/// none (`max_retries` 0); the restarted node (same data directory, so the same node id) BYEs
/// the 5 from the dialogs' facts it finds in the store and records them `interrupted` (one
/// record each): the first 3 are retried, the other 2 end in their final status (`failed`),
/// and both campaigns finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_five_live_calls_then_restart_ends_records_and_retries_them() {
    let dir = test_dir("faults_kill9");
    let dir = dir.path();
    let sipp = far_end(dir, 100);
    hold_message(dir, 15);
    let (http, sip1, sip2) = (free_tcp_port(), free_udp_port(), free_udp_port());
    write_config(dir, &sqlite_url(dir), sip1, http, sipp.port, "");
    let auth = api_key(dir);
    let mut node = Node::start(dir, http, 1);
    let api = Api {
        http: reqwest::Client::new(),
        auth,
        base: node.api.clone(),
    };
    let retried = api
        .campaign(
            json!({"name": "a retry left", "max_concurrent": 3}),
            &answered_numbers(3, "1"),
        )
        .await;
    let last = api
        .campaign(
            json!({"name": "no retry left", "max_concurrent": 2, "max_retries": 0}),
            &answered_numbers(2, "7"),
        )
        .await;
    for id in [retried, last] {
        api.post(&format!("/v1/campaigns/{id}/start"), json!({}))
            .await;
    }
    let store = Store::open(&sqlite_url(dir)).await.expect("store");
    wait_calls(&store, 5, 0, &node).await;

    node.kill9();
    // The next life listens elsewhere: the far end's log tells who sent each BYE.
    write_config(dir, &sqlite_url(dir), sip2, http, sipp.port, "");
    let restarted_at = Instant::now();
    let node = Node::start(dir, http, 2);
    // Within one node lease (5 s here, generous margin for a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut interrupted = 0;
        for id in [retried, last] {
            interrupted += api
                .attempts(id)
                .await
                .into_iter()
                .filter(|a| a["outcome"] == "interrupted")
                .count();
        }
        if interrupted == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "{}", node.log_tail(60));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reconciled_in = restarted_at.elapsed();
    for id in [retried, last] {
        api.wait_finished(id, Duration::from_secs(90), &node).await;
    }

    // A retry left: one interrupted and one retried attempt each, answered at last.
    let attempts = api.attempts(retried).await;
    let mut interrupted: Vec<Value> = attempts
        .iter()
        .filter(|a| a["outcome"] == "interrupted")
        .cloned()
        .collect();
    assert_eq!(interrupted.len(), 3, "{attempts:?}");
    assert_eq!(
        attempts.len(),
        6,
        "one interrupted and one retried attempt each: {attempts:?}"
    );
    for c in api.contacts(retried).await {
        assert_eq!(c["status"], "answered", "{c}");
        assert_eq!(c["attempts"], 2, "{c}");
    }
    // No retry left: the interrupted attempt was the last, the contact is final.
    let attempts = api.attempts(last).await;
    assert_eq!(attempts.len(), 2, "not dialed again: {attempts:?}");
    for a in &attempts {
        assert_eq!(a["outcome"], "interrupted", "{a}");
    }
    interrupted.extend(attempts);
    for c in api.contacts(last).await {
        assert_eq!(
            (&c["status"], &c["attempts"], &c["last_outcome"]),
            (&json!("failed"), &json!(1), &json!("interrupted")),
            "{c}"
        );
    }
    for a in &interrupted {
        assert_eq!(a["attempt_number"], 1, "{a}");
    }
    assert!(store.calls_in_flight().await.unwrap().is_empty());
    drop(node);

    // The far end saw a BYE from the restarted node (its SIP port) for each interrupted call
    // and ended the call.
    let run = sipp.wait(Duration::from_secs(1));
    let byes = run.received_requests("BYE");
    for a in &interrupted {
        let call_id = a["call_id"].as_str().expect("call_id");
        assert!(!call_id.is_empty(), "the dialog's Call-ID was kept: {a}");
        let bye = byes
            .iter()
            .find(|m| m.header("Call-ID") == Some(call_id))
            .unwrap_or_else(|| panic!("no BYE for {call_id}"));
        assert_eq!(via_port(bye), Some(sip2), "{}", bye.text);
        assert!(
            bye_answered(&run, call_id),
            "the far end did not end {call_id}"
        );
    }
    // Nothing dialed twice at once; the numbers without a retry dialed once.
    let dialogs = dialogs_by_number(&run);
    for (number, dialogs) in &dialogs {
        for pair in dialogs.windows(2) {
            let end = pair[0]
                .1
                .unwrap_or_else(|| panic!("{number}: a dialog never ended"));
            assert!(end < pair[1].0, "{number}: dialogs overlap: {dialogs:?}");
        }
    }
    for phone in answered_numbers(2, "7") {
        let n = dialogs.get(&phone).map_or(0, Vec::len);
        assert_eq!(n, 1, "{phone} dialed {n} times");
    }
    eprintln!("reconciled within {reconciled_in:?} of the restart");
    store.close().await;
}

/// Stop then an immediate Restart while three calls are up: the stop hangs them up, the
/// restart resets the contacts only once their calls have ended, so no number gets a second
/// INVITE while its first call lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_then_restart_with_calls_up_never_dials_a_live_number_again() {
    let dir = test_dir("faults_restart");
    let dir = dir.path();
    let sipp = far_end(dir, 100);
    hold_message(dir, 6);
    let (http, sip) = (free_tcp_port(), free_udp_port());
    write_config(dir, &sqlite_url(dir), sip, http, sipp.port, "");
    let auth = api_key(dir);
    let node = Node::start(dir, http, 1);
    let api = Api {
        http: reqwest::Client::new(),
        auth,
        base: node.api.clone(),
    };
    let phones = answered_numbers(3, "2");
    let id = api.campaign(json!({"max_concurrent": 3}), &phones).await;
    api.post(&format!("/v1/campaigns/{id}/start"), json!({}))
        .await;
    let store = Store::open(&sqlite_url(dir)).await.expect("store");
    wait_calls(&store, 3, 0, &node).await;

    api.post(&format!("/v1/campaigns/{id}/stop"), json!({}))
        .await;
    let restarted = api
        .post(&format!("/v1/campaigns/{id}/restart"), json!({}))
        .await;
    assert_eq!(restarted["status"], "processing", "{restarted}");
    api.wait_finished(id, Duration::from_secs(90), &node).await;

    // Every call recorded once; the contacts dialed again only after their call ended.
    let attempts = api.attempts(id).await;
    assert_eq!(attempts.len(), 6, "{attempts:?}");
    let mut by_contact: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
    for a in &attempts {
        by_contact
            .entry(a["contact_id"].as_i64().expect("contact"))
            .or_default()
            .push((
                a["started_at"].as_i64().expect("started_at"),
                a["ended_at"].as_i64().expect("ended_at"),
            ));
    }
    for (contact, mut spans) in by_contact {
        spans.sort();
        assert_eq!(spans.len(), 2, "{contact}: {spans:?}");
        assert!(
            spans[0].1 <= spans[1].0,
            "{contact}: attempts overlap: {spans:?}"
        );
    }
    for c in api.contacts(id).await {
        // Reset by the restart when its first call ended, then dialed once more.
        assert_eq!(c["status"], "answered", "{c}");
        assert_eq!(c["attempts"], 1, "{c}");
    }
    drop(node);
    let run = sipp.wait(Duration::from_secs(1));
    let dialogs = dialogs_by_number(&run);
    assert_eq!(dialogs.len(), 3, "{dialogs:?}");
    for (number, dialogs) in dialogs {
        assert_eq!(dialogs.len(), 2, "{number}: {dialogs:?}");
        let end = dialogs[0]
            .1
            .unwrap_or_else(|| panic!("{number}: first call never ended"));
        assert!(
            end < dialogs[1].0,
            "{number}: second INVITE while the first call lived"
        );
    }
    store.close().await;
}

/// SIGTERM with 5 answered and 2 ringing calls: 5 BYEs and 2 CANCELs at the far end, 7
/// records (the ringing ones `interrupted`, their retry kept), exit 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hangs_up_records_every_call_and_exits_0() {
    let dir = test_dir("faults_sigterm");
    let dir = dir.path();
    let sipp = far_end(dir, 100);
    hold_message(dir, 60);
    let (http, sip) = (free_tcp_port(), free_udp_port());
    write_config(dir, &sqlite_url(dir), sip, http, sipp.port, "");
    let auth = api_key(dir);
    let mut node = Node::start(dir, http, 1);
    let api = Api {
        http: reqwest::Client::new(),
        auth,
        base: node.api.clone(),
    };
    let mut phones = answered_numbers(5, "3");
    phones.push("+12025553908".into());
    phones.push("+12025553918".into());
    let id = api
        .campaign(json!({"max_concurrent": 7, "max_retries": 0}), &phones)
        .await;
    api.post(&format!("/v1/campaigns/{id}/start"), json!({}))
        .await;
    let store = Store::open(&sqlite_url(dir)).await.expect("store");
    wait_calls(&store, 5, 2, &node).await;

    node.signal("-TERM");
    let status = node.wait_exit(Duration::from_secs(45));
    let status = status.unwrap_or_else(|| panic!("serve still running\n{}", node.log_tail(60)));
    assert_eq!(status.code(), Some(0), "{}", node.log_tail(60));

    let run = sipp.wait(Duration::from_secs(1));
    assert_eq!(
        run.received_requests("BYE").len(),
        5,
        "{}",
        tail(&run.messages, 80)
    );
    assert_eq!(
        run.received_requests("CANCEL").len(),
        2,
        "{}",
        tail(&run.messages, 80)
    );

    assert!(store.calls_in_flight().await.unwrap().is_empty());
    let attempts = attempts_in_store(&store, id).await;
    assert_eq!(attempts.len(), 7, "{attempts:?}");
    let outcomes: Vec<&str> = attempts.iter().map(|a| a.record.outcome.as_str()).collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "answered").count(),
        5,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == "interrupted").count(),
        2,
        "{outcomes:?}"
    );
    for phone in ["+12025553908", "+12025553918"] {
        let c = store
            .contact_by_phone(id, phone)
            .await
            .unwrap()
            .expect("contact");
        // max_retries 0, yet queued again: the cancelled attempt did not count.
        assert_eq!(
            (c.status.as_str(), c.attempts),
            ("pending", 0),
            "{phone}: {c:?}"
        );
    }
    store.close().await;
}

// ---------------------------------------------------------------------------------------
// Two nodes on one PostgreSQL.

/// A fresh database on the shared PostgreSQL (`OUTDIAL_TEST_POSTGRES_URL`, default
/// `postgres://postgres@127.0.0.1:5432/test`), dropped when this is dropped.
struct PgDatabase {
    admin: String,
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create() -> PgDatabase {
        use sqlx::Connection;
        let admin = std::env::var("OUTDIAL_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is unreachable at {admin}: {e}"));
        let name = format!("outdial_f_{:016x}", random_u64());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        conn.close().await.ok();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        PgDatabase { admin, name, url }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            use sqlx::Connection;
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                            .execute(&mut conn)
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

/// The most INVITE dialogs the far end had open at once (from its message log, in order).
fn max_concurrent_dialogs(run: &SippRun) -> usize {
    let mut open = std::collections::HashSet::new();
    let mut most = 0;
    for m in run.sip_messages() {
        let Some(call_id) = m.header("Call-ID").map(str::to_string) else {
            continue;
        };
        if m.received && m.method() == Some("INVITE") {
            open.insert(call_id);
            most = most.max(open.len());
        } else if (m.received && matches!(m.method(), Some("BYE") | Some("CANCEL")))
            || (!m.received && m.status().is_some_and(|c| c >= 300))
        {
            open.remove(&call_id);
        }
    }
    most
}

/// Two nodes share one PostgreSQL and one trunk of 5 channels, each driving a campaign of its
/// own: never more than 5 dialogs at the far end — also while node A is stopped
/// (`kill -STOP`) 7 s with answered calls and then continues. B counts A's calls until A's
/// heartbeat is stale, then takes them over while A is still stopped: a BYE from B for each
/// (from the dialog facts A stored), one `interrupted` record each written by B; A, continued,
/// writes none of them again (its rows are gone: the fence). No contact with two overlapping
/// attempts; then A is killed (`kill -9`) and B finishes both campaigns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_a_five_channel_trunk_through_stop_continue_and_kill() {
    let root = test_dir("faults_two_nodes");
    let root = root.path();
    let db = PgDatabase::create().await;
    let sipp = far_end(root, 1000);
    let dirs = [root.join("a"), root.join("b")];
    let mut ports = Vec::new();
    let mut sip_ports = Vec::new();
    for dir in &dirs {
        std::fs::create_dir_all(dir).unwrap();
        hold_message(dir, 3);
        let (http, sip) = (free_tcp_port(), free_udp_port());
        write_config(dir, &db.url, sip, http, sipp.port, "max_channels = 5\n");
        ports.push(http);
        sip_ports.push(sip);
    }
    let auth = api_key(&dirs[0]);
    let mut a = Node::start(&dirs[0], ports[0], 1);
    let b = Node::start(&dirs[1], ports[1], 1);
    let api = Api {
        http: reqwest::Client::new(),
        auth,
        base: b.api.clone(),
    };
    let store = Store::open(&db.url).await.expect("store");
    let mut campaigns = Vec::new();
    for (i, prefix) in ["4", "5"].iter().enumerate() {
        let phones = answered_numbers(30, prefix);
        let id = api
            .campaign(
                json!({"name": format!("node {i}"), "max_concurrent": 10, "max_retries": 3}),
                &phones,
            )
            .await;
        campaigns.push(id);
    }
    // Each started through its own node's API (which wakes that node's engine first), so the
    // campaign leases split one each.
    let api_a = Api {
        http: reqwest::Client::new(),
        auth: api.auth.clone(),
        base: a.api.clone(),
    };
    api_a
        .post(&format!("/v1/campaigns/{}/start", campaigns[0]), json!({}))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.post(&format!("/v1/campaigns/{}/start", campaigns[1]), json!({}))
        .await;
    let node_id = |dir: &Path| {
        std::fs::read_to_string(dir.join("node-id"))
            .expect("node-id")
            .trim()
            .to_string()
    };
    let (a_id, b_id) = (node_id(&dirs[0]), node_id(&dirs[1]));
    // Both nodes dialing: wait until A's calls are all answered (a BYE is owed for each) and
    // B has calls too, then stop A.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let calls = store.calls_in_flight().await.unwrap();
        let of_a: Vec<_> = calls.iter().filter(|c| c.node == a_id).collect();
        if !of_a.is_empty()
            && of_a.iter().all(|c| c.state == CallState::Answered)
            && calls.iter().any(|c| c.node == b_id)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "both nodes never had calls up\n{}",
            b.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.signal("-STOP");
    let stopped = Instant::now();
    let a_calls: Vec<_> = store
        .calls_in_flight()
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.node == a_id)
        .collect();
    assert!(!a_calls.is_empty());
    // A stays stopped 7 s, and longer if B has not reconciled A's calls yet (A's heartbeat is
    // stale after `node_lease_secs` = 5 s; a loaded machine may take longer): B takes them
    // over, sends their BYEs and records them while A is still stopped.
    let deadline = stopped + Duration::from_secs(60);
    loop {
        let left = store
            .calls_in_flight()
            .await
            .unwrap()
            .into_iter()
            .filter(|c| c.node == a_id)
            .count();
        if left == 0 && stopped.elapsed() >= Duration::from_secs(7) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B never reconciled the {left} calls of the stopped node A\n{}",
            b.log_tail(60)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reconciled = api.attempts(campaigns[0]).await;
    let mut reconciled_too = api.attempts(campaigns[1]).await;
    let mut taken_over = reconciled;
    taken_over.append(&mut reconciled_too);
    a.signal("-CONT");
    // Each of A's calls: one `interrupted` record written by B (A was stopped all along), its
    // Call-ID kept from the dialog facts A stored at answer.
    let mut byes_owed = Vec::new();
    for call in &a_calls {
        let records: Vec<&Value> = taken_over
            .iter()
            .filter(|r| r["contact_id"] == call.contact_id && r["started_at"] == call.started_at)
            .collect();
        assert_eq!(records.len(), 1, "{call:?}: {records:?}");
        let r = records[0];
        assert_eq!(r["outcome"], "interrupted", "{r}");
        let reason = r["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(&format!("node {a_id} stopped"))
                && reason.ends_with(&format!("ended by node {b_id}")),
            "{r}"
        );
        let call_id = r["call_id"].as_str().unwrap_or_default().to_string();
        assert!(!call_id.is_empty(), "{r}");
        byes_owed.push(call_id);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    a.kill9();
    for id in &campaigns {
        api.wait_finished(*id, Duration::from_secs(240), &b).await;
    }

    let run = sipp.wait(Duration::from_secs(1));
    // B's BYEs (its SIP port in the Via) for A's calls, sent while A was stopped.
    let byes = run.received_requests("BYE");
    for call_id in &byes_owed {
        let from_b = byes
            .iter()
            .any(|m| m.header("Call-ID") == Some(call_id) && via_port(m) == Some(sip_ports[1]));
        assert!(from_b, "no BYE from node B for A's call {call_id}");
        assert!(
            bye_answered(&run, call_id),
            "the far end did not end {call_id}"
        );
    }
    let most = max_concurrent_dialogs(&run);
    assert!(most <= 5, "{most} dialogs at once at the 5-channel trunk");
    assert!(
        most >= 3,
        "the trunk was never busy ({most}): the test proved nothing"
    );
    for (number, dialogs) in dialogs_by_number(&run) {
        for pair in dialogs.windows(2) {
            let end = pair[0]
                .1
                .unwrap_or_else(|| panic!("{number}: a dialog never ended"));
            assert!(end < pair[1].0, "{number}: dialogs overlap: {dialogs:?}");
        }
    }
    assert!(store.calls_in_flight().await.unwrap().is_empty());
    // One record per call: A, continued after B took its calls over, wrote none of them again.
    let mut call_ids = std::collections::HashSet::new();
    for id in &campaigns {
        for a in api.attempts(*id).await {
            let call_id = a["call_id"].as_str().unwrap_or_default().to_string();
            assert!(
                call_id.is_empty() || call_ids.insert(call_id),
                "a call recorded twice: {a}"
            );
        }
    }
    for id in &campaigns {
        let mut spans: HashMap<i64, Vec<(i64, i64)>> = HashMap::new();
        for a in api.attempts(*id).await {
            spans
                .entry(a["contact_id"].as_i64().unwrap())
                .or_default()
                .push((
                    a["started_at"].as_i64().unwrap(),
                    a["ended_at"].as_i64().unwrap(),
                ));
        }
        for (contact, mut s) in spans {
            s.sort();
            for pair in s.windows(2) {
                assert!(
                    pair[0].1 <= pair[1].0,
                    "contact {contact}: attempts overlap: {s:?}"
                );
            }
        }
        for c in api.contacts(*id).await {
            assert_eq!(c["status"], "answered", "{c}");
        }
    }
    drop(b);
    store.close().await;
}

// ---------------------------------------------------------------------------------------
// PostgreSQL going away mid-campaign.

/// A PostgreSQL cluster of the test's own (initdb, then `pg_ctl start` / `stop`), in a temp dir
/// on a random port, so the test can take it away and bring it back; stopped on drop. Run as
/// the `postgres` user when the test runs as root (initdb refuses root).
struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
}

impl PgCluster {
    /// The server's bin directory: `pg_config --bindir` when it holds the server tools (on
    /// Debian it may name the client's only), else the newest `/usr/lib/postgresql/*/bin`.
    fn bin_dir() -> PathBuf {
        let mut dirs = Vec::new();
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
            if out.status.success() {
                dirs.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
            }
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse().ok()?;
                Some((v, e.path().join("bin")))
            })
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        dirs.extend(versions.into_iter().map(|(_, p)| p));
        dirs.into_iter()
            .find(|d| {
                ["initdb", "pg_ctl", "postgres"]
                    .iter()
                    .all(|t| d.join(t).is_file())
            })
            .unwrap_or_else(|| {
                panic!(
                    "no PostgreSQL server tools (initdb, pg_ctl): install the postgresql package"
                )
            })
    }

    /// A new cluster, initialised and started.
    fn start() -> PgCluster {
        let dir = test_dir("faults_pg_cluster");
        let as_postgres = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(dir.path()).expect("temp dir").uid() == 0
        };
        if as_postgres {
            run_tool(
                Command::new("chown").arg("postgres:").arg(dir.path()),
                "chown the cluster's dir to postgres",
            );
        }
        let cluster = PgCluster {
            bin: PgCluster::bin_dir(),
            port: free_tcp_port(),
            as_postgres,
            dir,
        };
        run_tool(
            cluster
                .tool("initdb")
                .arg("-D")
                .arg(cluster.data())
                .args(["-A", "trust", "-U", "postgres", "-E", "UTF8"])
                .args(["--locale=C", "--no-sync"]),
            "initdb",
        );
        cluster.pg_ctl_start();
        cluster
    }

    fn tool(&self, name: &str) -> Command {
        let exe = self.bin.join(name);
        if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(exe);
            cmd
        } else {
            Command::new(exe)
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        run_tool(
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.path().join("server.log"))
                .args(["-w", "-t", "50", "-o", &options, "start"]),
            "pg_ctl start",
        );
    }

    fn pg_ctl_stop(&self, mode: &str) -> bool {
        run_with_timeout(
            self.tool("pg_ctl")
                .arg("-D")
                .arg(self.data())
                .args(["-m", mode, "-w", "-t", "50", "stop"]),
            Duration::from_secs(55),
        )
        .status
        .is_some_and(|s| s.success())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.pg_ctl_stop("immediate");
    }
}

/// The numbers in the serve log's "N attempts from the journal written to the store" lines,
/// summed.
fn replayed_from_journal(log: &str) -> usize {
    log.lines()
        .filter_map(|l| {
            let before = l
                .split(" attempts from the journal written to the store")
                .next()?;
            if before.len() == l.len() {
                return None;
            }
            before.rsplit(' ').next()?.parse::<usize>().ok()
        })
        .sum()
}

/// PostgreSQL (a cluster of the test's own) stopped for 15 s while 4 calls are up: the calls
/// end meanwhile and their results, which cannot reach the database, wait in the node's
/// on-disk journal while nothing is dialed; once the database is back the journal is replayed
/// (and emptied), the campaign goes on and finishes. One record per INVITE the far end saw,
/// no contact left `dialing`, no number called twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_15_s_mid_campaign_journals_replays_and_loses_nothing() {
    let dir = test_dir("faults_pg_outage");
    let dir = dir.path();
    let pg = PgCluster::start();
    let sipp = far_end(dir, 100);
    hold_message(dir, 5);
    let (http, sip) = (free_tcp_port(), free_udp_port());
    write_config(dir, &pg.url(), sip, http, sipp.port, "");
    let auth = api_key(dir);
    let node = Node::start(dir, http, 1);
    let api = Api {
        http: reqwest::Client::new(),
        auth,
        base: node.api.clone(),
    };
    let phones = answered_numbers(8, "6");
    let id = api
        .campaign(json!({"max_concurrent": 4, "max_retries": 0}), &phones)
        .await;
    api.post(&format!("/v1/campaigns/{id}/start"), json!({}))
        .await;
    let store = Store::open(&pg.url()).await.expect("store");
    wait_calls(&store, 4, 0, &node).await;
    store.close().await;

    assert!(pg.pg_ctl_stop("fast"), "pg_ctl stop failed");
    let stopped = Instant::now();
    // The 4 calls end during the outage (a 5 s message): each result lands in the journal.
    let journal = dir.join("attempt-journal.jsonl");
    let deadline = stopped + Duration::from_secs(60);
    loop {
        let waiting = std::fs::read_to_string(&journal)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if waiting == 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} of the 4 calls' results in the journal\n{}",
            node.log_tail(60)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let journaled_after = stopped.elapsed();
    if let Some(left) = Duration::from_secs(15).checked_sub(stopped.elapsed()) {
        tokio::time::sleep(left).await;
    }
    pg.pg_ctl_start();
    api.wait_finished(id, Duration::from_secs(120), &node).await;

    // The journal was replayed whole and is empty now.
    let log = std::fs::read_to_string(&node.log).unwrap_or_default();
    assert_eq!(replayed_from_journal(&log), 4, "{}", node.log_tail(80));
    let left = std::fs::read_to_string(&journal).unwrap_or_default();
    assert!(left.trim().is_empty(), "journal not empty: {left}");

    let attempts = api.attempts(id).await;
    let store = Store::open(&pg.url()).await.expect("store");
    assert!(store.calls_in_flight().await.unwrap().is_empty());
    for c in api.contacts(id).await {
        assert_eq!(c["status"], "answered", "{c}");
        assert_eq!(c["attempts"], 1, "{c}");
    }
    store.close().await;
    drop(node);

    // One record per call the far end saw; none doubled, none lost.
    let run = sipp.wait(Duration::from_secs(1));
    let invited: std::collections::HashSet<String> = run
        .received_requests("INVITE")
        .iter()
        .filter_map(|m| m.header("Call-ID").map(str::to_string))
        .collect();
    let recorded: std::collections::HashSet<String> = attempts
        .iter()
        .map(|a| a["call_id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(attempts.len(), 8, "{attempts:?}");
    assert_eq!(recorded.len(), 8, "a call recorded twice: {attempts:?}");
    assert_eq!(recorded, invited, "records and the far end's calls differ");
    for (number, dialogs) in dialogs_by_number(&run) {
        assert_eq!(dialogs.len(), 1, "{number} called again: {dialogs:?}");
    }
    eprintln!("the 4 results were in the journal {journaled_after:?} after the stop");
}

/// A node stopped (`kill -STOP`) with a call still ringing: the other node does not take the
/// call over while the far end may still answer it (its campaign's ring timeout plus the
/// CANCEL grace), so its channel stays counted — it cannot CANCEL an INVITE it never sent.
/// The stopped node, continued, still owns the call: it rings out at its 20 s ring timeout
/// (CANCEL from that node) and is recorded once, `no_answer`, by that node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringing_call_of_a_stopped_node_keeps_its_channel_and_its_node() {
    let root = test_dir("faults_ringing_kept");
    let root = root.path();
    let db = PgDatabase::create().await;
    let sipp = far_end(root, 100);
    let dirs = [root.join("a"), root.join("b")];
    let mut ports = Vec::new();
    for dir in &dirs {
        std::fs::create_dir_all(dir).unwrap();
        hold_message(dir, 3);
        let (http, sip) = (free_tcp_port(), free_udp_port());
        write_config(dir, &db.url, sip, http, sipp.port, "");
        ports.push(http);
    }
    let auth = api_key(&dirs[0]);
    let a = Node::start(&dirs[0], ports[0], 1);
    let api = Api {
        http: reqwest::Client::new(),
        auth,
        base: a.api.clone(),
    };
    // Rings until CANCEL (last digit 8); 20 s ring timeout.
    let phone = "+12025558018".to_string();
    let id = api
        .campaign(
            json!({"max_retries": 0, "ring_timeout_secs": 20}),
            std::slice::from_ref(&phone),
        )
        .await;
    api.post(&format!("/v1/campaigns/{id}/start"), json!({}))
        .await;
    let store = Store::open(&db.url).await.expect("store");
    wait_calls(&store, 0, 1, &a).await;
    // The INVITE is on its way (A logs it as it sends): stop A while it rings.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&a.log)
        .unwrap_or_default()
        .contains(&format!("sip:{phone}@"))
    {
        assert!(
            Instant::now() < deadline,
            "A never dialed\n{}",
            a.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.signal("-STOP");
    let stopped = Instant::now();
    let b = Node::start(&dirs[1], ports[1], 1);
    // A is dead to B after node_lease_secs = 5 s; B looks at A's calls every tick from then
    // on. 12 s stopped: B had several looks, and the call's row must still be there.
    tokio::time::sleep(Duration::from_secs(12).saturating_sub(stopped.elapsed())).await;
    let rows = store.calls_in_flight().await.unwrap();
    assert_eq!(
        rows.len(),
        1,
        "B took a call that may still ring: {rows:?}\n{}",
        b.log_tail(40)
    );
    assert!(attempts_in_store(&store, id).await.is_empty());

    a.signal("-CONT");
    // A rings out at 20 s from the INVITE: CANCEL, record, contact final.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attempts = attempts_in_store(&store, id).await;
        if !attempts.is_empty() {
            assert_eq!(attempts.len(), 1, "{attempts:?}");
            assert_eq!(
                attempts[0].record.outcome, "no_answer",
                "{:?}",
                attempts[0].record
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A never ended the ringing call\n{}",
            a.log_tail(40)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        attempts_in_store(&store, id).await.len(),
        1,
        "written twice"
    );
    assert!(store.calls_in_flight().await.unwrap().is_empty());
    drop(a);
    drop(b);
    let run = sipp.wait(Duration::from_secs(1));
    let dialogs = dialogs_by_number(&run);
    assert_eq!(
        dialogs.get(&phone).map(Vec::len),
        Some(1),
        "one INVITE: {dialogs:?}"
    );
    assert_eq!(
        run.received_requests("CANCEL").len(),
        1,
        "{}",
        tail(&run.messages, 40)
    );
    store.close().await;
}

/// A campaign's attempt records, read from the store.
async fn attempts_in_store(store: &Store, campaign: i64) -> Vec<outdial::store::CallAttempt> {
    store
        .list_attempts(
            &outdial::store::AttemptFilter {
                campaign_id: Some(campaign),
                ..Default::default()
            },
            outdial::store::Page::new(100, 0),
        )
        .await
        .expect("attempts")
        .items
}

/// Two nodes on one PostgreSQL: an export made on one node downloads whole from the other (the
/// finished file's bytes are kept in the store), and a node starting does not fail the other
/// node's unfinished export jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_made_on_one_node_downloads_from_the_other() {
    let root = test_dir("faults_exports");
    let root = root.path();
    let db = PgDatabase::create().await;
    let sipp = far_end(root, 10);
    let dirs = [root.join("a"), root.join("b")];
    let mut ports = Vec::new();
    for dir in &dirs {
        std::fs::create_dir_all(dir).unwrap();
        hold_message(dir, 1);
        let (http, sip) = (free_tcp_port(), free_udp_port());
        write_config(dir, &db.url, sip, http, sipp.port, "");
        ports.push(http);
    }
    let auth = api_key(&dirs[0]);
    let a = Node::start(&dirs[0], ports[0], 1);
    let on_a = Api {
        http: reqwest::Client::new(),
        auth: auth.clone(),
        base: a.api.clone(),
    };
    let phones: Vec<String> = (0..3).map(|i| format!("+1202555300{i}")).collect();
    let id = on_a.campaign(json!({}), &phones).await;
    // A job A left unfinished as far as the store knows (queued, named after A).
    let store = Store::open(&db.url).await.expect("store");
    let a_id = std::fs::read_to_string(dirs[0].join("node-id")).expect("node-id");
    let pending = store
        .create_export(
            &outdial::store::NewExport {
                campaign_id: id,
                format: outdial::store::ExportFormat::CsvComma,
                scope: outdial::store::ExportScope::Campaign,
                params: json!({}),
                node: Some(a_id.trim().to_string()),
            },
            1,
        )
        .await
        .expect("a queued job of A");
    let job = on_a
        .post(
            &format!("/v1/campaigns/{id}/exports"),
            json!({"format": "csv_comma", "scope": "all"}),
        )
        .await;
    let job = job["id"].as_i64().expect("export id");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = on_a.get(&format!("/v1/exports/{job}")).await;
        if j["status"] == "done" {
            break;
        }
        assert!(Instant::now() < deadline, "export not done: {j}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let download = |base: String| {
        let (http, auth) = (on_a.http.clone(), auth.clone());
        async move {
            let resp = http
                .get(format!("{base}/v1/exports/{job}/download"))
                .header("Authorization", auth)
                .send()
                .await
                .expect("download");
            assert!(resp.status().is_success(), "{base}: {}", resp.status());
            resp.bytes().await.expect("bytes").to_vec()
        }
    };
    let from_a = download(a.api.clone()).await;
    assert!(
        String::from_utf8_lossy(&from_a).contains("+12025553002"),
        "{}",
        String::from_utf8_lossy(&from_a)
    );
    // The nodes share this machine's disk; on two machines B could not open A's file: take
    // it away, so B has only the store.
    let files = std::fs::read_dir(dirs[0].join("exports")).expect("A's exports directory");
    let mut removed = 0;
    for f in files.flatten() {
        std::fs::remove_file(f.path()).expect("remove A's file");
        removed += 1;
    }
    assert!(removed >= 1);
    let b = Node::start(&dirs[1], ports[1], 1);
    let from_b = download(b.api.clone()).await;
    assert_eq!(from_a, from_b, "B serves A's export byte for byte");
    // B's start left A's job alone (A is alive; it is A's to fail when it restarts).
    let still = store.get_export(pending.id).await.expect("job");
    assert_eq!(still.status.as_str(), "queued", "{still:?}");
    drop(b);
    drop(a);
    store.close().await;
}
