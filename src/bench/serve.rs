//! `outdial serve` under measurement, for the benchmarks that run the whole server as
//! deployed (`bench soak`, `bench cps`): a work directory with its `outdial.toml` and trunk
//! profile, an API key, the `serve` child with its log, its admin API, sipp as the far end,
//! and readings of a child's CPU from `/proc`.
//!
//! Must not: be used by the server itself (it is a measuring tool), or read the caller's
//! `OUTDIAL_*` settings into the child (only the work directory's files count).

use std::net::{TcpListener, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::observe::process::ProcessResources;

/// Clock ticks per second of `/proc/PID/stat` on Linux.
pub const TICKS_PER_SECOND: f64 = 100.0;

/// What `serve` in a work directory is configured with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The far end's SIP port on 127.0.0.1 (the `far-end` trunk profile's proxy).
    pub sip_port: u16,
    pub http_port: u16,
    /// The RTP port range.
    pub rtp: (u16, u16),
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// The trunk's `max_channels`.
    pub max_channels: usize,
    /// `[log] level`.
    pub log_level: &'static str,
}

/// Writes `outdial.toml` and `sip-profiles/far-end.toml` for `serve` in `dir`.
pub fn write_config(dir: &Path, c: &ServeConfig) -> Result<(), String> {
    let config = format!(
        "[sip]\nlisten_udp = \"127.0.0.1:0\"\nlisten_tcp = false\n\n\
         [rtp]\nbind_addr = \"127.0.0.1\"\nport_min = {}\nport_max = {}\n\n\
         [database]\nurl = \"{}\"\n\n[http]\nlisten = \"127.0.0.1:{}\"\n\n\
         [log]\nlevel = \"{}\"\n",
        c.rtp.0, c.rtp.1, c.database_url, c.http_port, c.log_level
    );
    std::fs::write(dir.join("outdial.toml"), config)
        .map_err(|e| format!("cannot write outdial.toml: {e}"))?;
    let profiles = dir.join("sip-profiles");
    std::fs::create_dir_all(&profiles).map_err(|e| format!("cannot create sip-profiles/: {e}"))?;
    std::fs::write(
        profiles.join("far-end.toml"),
        format!(
            "proxy = \"127.0.0.1:{}\"\nmax_channels = {}\n",
            c.sip_port, c.max_channels
        ),
    )
    .map_err(|e| format!("cannot write the far end's profile: {e}"))
}

/// `outdial keys create --login LOGIN` in `dir`: the new key.
pub fn create_key(exe: &Path, dir: &Path, login: &str) -> Result<String, String> {
    let key = outdial_in(exe, dir)
        .args(["keys", "create", "--login", login])
        .output()
        .map_err(|e| format!("cannot run outdial keys create: {e}"))?;
    if !key.status.success() {
        return Err(format!(
            "outdial keys create: {}",
            String::from_utf8_lossy(&key.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&key.stdout).trim().to_string())
}

/// Starts `outdial serve` in `dir`, its log in `log`.
pub fn start_serve(exe: &Path, dir: &Path, log: &Path) -> Result<Process, String> {
    Ok(Process {
        child: outdial_in(exe, dir)
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(log)
                    .map_err(|e| format!("cannot create {}: {e}", log.display()))?,
            )
            .spawn()
            .map_err(|e| format!("cannot start outdial serve: {e}"))?,
        name: "outdial serve",
    })
}

/// Waits (30 s at most) until `serve` answers `GET /v1/node`.
pub async fn wait_ready(api: &Api, serve: &mut Process, log: &Path) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if api.node().await.is_ok() {
            return Ok(());
        }
        if let Some(why) = serve.exited() {
            return Err(format!("{why}; see {}", log.display()));
        }
        if Instant::now() > deadline {
            return Err("outdial serve did not answer GET /v1/node within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// CPU seconds a process used between two readings.
pub fn cpu_seconds(before: &ProcessResources, after: &ProcessResources) -> f64 {
    match (before.cpu_ticks, after.cpu_ticks) {
        (Some(a), Some(b)) => b.saturating_sub(a) as f64 / TICKS_PER_SECOND,
        _ => 0.0,
    }
}

/// A child process killed (and waited for) when dropped.
pub struct Process {
    pub child: Child,
    pub name: &'static str,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited ({status})", self.name)),
            Ok(None) => None,
            Err(e) => Some(format!("{}: {e}", self.name)),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // SIGTERM first, so that serve hangs its calls up and closes its store.
        // SAFETY: kill(2) with a pid we own; no memory is touched.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_udp_port() -> Result<u16, String> {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free UDP port: {e}"))
}

pub fn free_tcp_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free TCP port: {e}"))
}

/// A free block of `len` UDP ports (each one bound and released to check).
pub fn free_port_block(len: u16) -> Result<(u16, u16), String> {
    for start in (30_000u16..60_000).step_by(usize::from(len)) {
        let end = start + len - 1;
        if (start..=end).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok()) {
            return Ok((start, end));
        }
    }
    Err(format!("no block of {len} free UDP ports in 30000-60000"))
}

pub fn run_tool(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {what}: {e} (make setup installs it)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub fn outdial_in(exe: &Path, dir: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.current_dir(dir).env_remove("RUST_LOG");
    // Only dir's outdial.toml and sip-profiles/ count, not the caller's OUTDIAL_* settings.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OUTDIAL_") {
            cmd.env_remove(&key);
        }
    }
    cmd
}

pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub auth: String,
}

/// The `j`-th of the benches' distinct valid US numbers (`1202` + exchange 200–999 + four
/// digits); its last digit is `j % 10`.
pub fn bench_phone(j: usize) -> String {
    format!("1202{}{:04}", 200 + (j / 10_000) % 800, j % 10_000)
}

impl Api {
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .timeout(Duration::from_secs(30));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{method} {path}: {status}: {text}"));
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| format!("{method} {path}: not JSON ({e})"))
    }

    /// Imports `n` contacts with distinct valid US numbers (NANP: the exchange starts with 2-9)
    /// into campaign `id` through the CSV import, as a user would; the number's last digit is
    /// `i % 10`, so a far end deciding by it sees every digit in turn.
    pub async fn import_contacts(&self, id: i64, n: usize, name: &str) -> Result<(), String> {
        self.import_numbered(id, n, name, |i| i).await
    }

    /// [`Api::import_contacts`] with contact `i` given the `number(i)`-th of those numbers
    /// (`number` must not repeat a value), so a far end deciding by the last digit sees only
    /// the digits `number` picks.
    pub async fn import_numbered(
        &self,
        id: i64,
        n: usize,
        name: &str,
        number: impl Fn(usize) -> usize,
    ) -> Result<(), String> {
        let csv: String = (0..n)
            .map(|i| format!("{},{name} {i}\n", bench_phone(number(i))))
            .collect();
        let answer = self
            .upload_csv(id, csv.into_bytes(), Duration::from_secs(600))
            .await?;
        if answer["inserted"].as_u64() != Some(n as u64) {
            return Err(format!("import: {n} contacts sent, answer: {answer}"));
        }
        Ok(())
    }

    /// Uploads a CSV file to campaign `id`'s import, as a user's upload: the import's answer
    /// (an error unless it is a success).
    pub async fn upload_csv(
        &self,
        id: i64,
        file: Vec<u8>,
        timeout: Duration,
    ) -> Result<Value, String> {
        let answer = self
            .http
            .post(format!("{}/v1/campaigns/{id}/contacts/import", self.base))
            .header("Authorization", &self.auth)
            .header("Content-Type", "text/csv")
            .body(file)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("import: {e}"))?;
        let status = answer.status();
        let text = answer.text().await.map_err(|e| format!("import: {e}"))?;
        match serde_json::from_str::<Value>(&text) {
            Ok(v) if status.is_success() => Ok(v),
            _ => Err(format!("import answered {status}: {text}")),
        }
    }

    pub async fn node(&self) -> Result<(usize, usize), String> {
        let node = self.call(reqwest::Method::GET, "/v1/node", None).await?;
        let get = |k: &str| {
            node[k]
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| format!("GET /v1/node: no {k} in {node}"))
        };
        Ok((get("tasks")?, get("live_calls")?))
    }
}

/// Runs `body` on a new single-threaded runtime in a fresh work directory (`outdial-{bench}-{pid}` in the temporary folder)
/// with the URL of a fresh store: a SQLite file in that directory, or a fresh database
/// `outdial_{bench}_{pid}` on the PostgreSQL server `postgres` names, dropped afterwards. The
/// directory is removed afterwards unless `keep`. `bench` is the caller's: letters only.
pub fn in_fresh_store<T>(
    bench: &str,
    postgres: Option<&str>,
    keep: bool,
    body: impl FnOnce(&tokio::runtime::Runtime, &Path, &str) -> Result<T, String>,
) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let dir = std::env::temp_dir().join(format!("outdial-{bench}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let database = match postgres {
        None => Ok(None),
        Some(url) => runtime
            .block_on(fresh_postgres(url, &format!("outdial_{bench}")))
            .map(Some),
    };
    let result = database.and_then(|db| {
        let url = match &db {
            Some((_, url)) => url.clone(),
            None => format!("sqlite://{}", dir.join("outdial.db").display()),
        };
        let result = body(&runtime, &dir, &url);
        if let (Some(admin), Some((name, _))) = (postgres, &db) {
            if let Err(e) = runtime.block_on(drop_postgres(admin, name)) {
                eprintln!("outdial: bench {bench}: database {name} not dropped: {e}");
            }
        }
        result
    });
    keep_or_remove(bench, &dir, keep);
    result
}

/// A bench's work directory after its run: kept (and said where) or removed.
pub fn keep_or_remove(bench: &str, dir: &Path, keep: bool) {
    if keep {
        eprintln!(
            "outdial: bench {bench}: work directory kept: {}",
            dir.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> Result<String, String> {
    let (head, tail) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a postgres:// URL"))?;
    let (authority, query) = match tail.split_once('/') {
        Some((authority, rest)) => (authority, rest.split_once('?').map(|(_, q)| q)),
        None => (tail, None),
    };
    Ok(match query {
        Some(q) => format!("{head}://{authority}/{name}?{q}"),
        None => format!("{head}://{authority}/{name}"),
    })
}

/// Makes a fresh database `{prefix}_{pid}` on the server `url` names: (its name, its URL).
/// `prefix` is the caller's: letters, digits and `_` only.
pub async fn fresh_postgres(url: &str, prefix: &str) -> Result<(String, String), String> {
    use sqlx::Connection;
    let name = format!("{prefix}_{}", std::process::id());
    let mut admin = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| format!("cannot connect to PostgreSQL at the given URL: {e}"))?;
    // `name` is ours: letters, digits and _ only.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name}"
    )))
    .execute(&mut admin)
    .await
    .map_err(|e| format!("cannot drop {name}: {e}"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .map_err(|e| format!("cannot create {name}: {e}"))?;
    let _ = admin.close().await;
    let fresh = with_database(url, &name)?;
    Ok((name, fresh))
}

/// Drops the database [`fresh_postgres`] made (`name` is that one, never the caller's).
pub async fn drop_postgres(url: &str, name: &str) -> Result<(), String> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .map_err(|e| e.to_string())?;
    let _ = admin.close().await;
    Ok(())
}

/// A histogram's `_count` and `_sum` from a Prometheus text page, by its `op` label (`""`
/// for a histogram without one).
pub fn histogram(metrics: &str, name: &str) -> std::collections::BTreeMap<String, (f64, f64)> {
    let mut out: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (is_count, rest) = if let Some(r) = rest.strip_prefix("_count") {
            (true, r)
        } else if let Some(r) = rest.strip_prefix("_sum") {
            (false, r)
        } else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once("} ") {
                Some(x) => x,
                None => continue,
            },
            None => ("", rest.trim_start()),
        };
        let op = labels
            .split(',')
            .find_map(|l| l.strip_prefix("op=\""))
            .map_or("", |op| op.trim_end_matches('"'));
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let entry = out.entry(op.to_string()).or_default();
        if is_count {
            entry.0 = value;
        } else {
            entry.1 = value;
        }
    }
    out
}

/// A counter's (or gauge's) value from a Prometheus text page (0 when it is not there).
pub fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `GET /metrics` of `serve`.
pub async fn metrics_page(api: &Api) -> Result<String, String> {
    let resp = api
        .http
        .get(format!("{}/metrics", api.base))
        .header("Authorization", &api.auth)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("GET /metrics: {e}"))?;
    resp.text().await.map_err(|e| format!("GET /metrics: {e}"))
}

pub fn mib(bytes: Option<u64>) -> f64 {
    bytes.unwrap_or(0) as f64 / (1024.0 * 1024.0)
}

pub fn cpu_percent(before: &ProcessResources, after: &ProcessResources, seconds: f64) -> f64 {
    match (before.cpu_ticks, after.cpu_ticks) {
        (Some(a), Some(b)) if seconds > 0.0 => {
            b.saturating_sub(a) as f64 / TICKS_PER_SECOND / seconds * 100.0
        }
        _ => 0.0,
    }
}

/// Counts WARN and ERROR lines of `serve`'s log.
pub fn log_levels(log: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let warnings = text.lines().filter(|l| l.contains(" WARN ")).count();
    let errors = text.lines().filter(|l| l.contains(" ERROR ")).count();
    (warnings, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_by_exact_name() {
        let page = "# TYPE outdial_media_late_sends_total counter\n\
                    outdial_media_late_sends_total 7\n\
                    outdial_media_late_sends_total_x 9\n";
        assert_eq!(counter(page, "outdial_media_late_sends_total"), 7.0);
        assert_eq!(counter(page, "outdial_media_wakeups_total"), 0.0);
    }

    #[test]
    fn a_database_name_replaces_the_urls_own() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x").as_deref(),
            Ok("postgres://postgres@127.0.0.1:5432/x")
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x").as_deref(),
            Ok("postgres://u:p@h/x?sslmode=disable")
        );
        assert_eq!(
            with_database("postgres://h:5432", "x").as_deref(),
            Ok("postgres://h:5432/x")
        );
        assert!(with_database("nonsense", "x").is_err());
    }
}
