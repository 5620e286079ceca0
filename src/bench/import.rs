//! `outdial bench import`: a contact import as a user makes it — a CSV file of N generated
//! rows uploaded to `POST /v1/campaigns/{id}/contacts/import` of `outdial serve` (the binary
//! as deployed), into a fresh SQLite file or, with `--postgres URL`, a fresh database made on
//! that server (dropped afterwards).
//!
//! The file has a header and four columns (phone, name, comments, tags); every 1,000th row
//! repeats the previous phone, as real files have duplicates (the import refuses it, naming
//! the first line). Timed: from the upload's first byte to the import's answer, which comes
//! once every row is committed. Reported with it: `serve`'s resident memory before the upload
//! and at its peak (`VmHWM`: the import streams, so the peak must not grow with the file),
//! `serve`'s CPU, and the counts the import answered (checked against the file).
//!
//! Linux only (`/proc`). Nothing here runs in the server: it is a measuring tool.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use super::serve::{
    cpu_seconds, create_key, free_port_block, free_tcp_port, free_udp_port, in_fresh_store, mib,
    start_serve, wait_ready, write_config, Api, ServeConfig,
};
use crate::observe::process::{resources, Pid};

/// What `outdial bench import` was asked to do.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub rows: usize,
    /// A PostgreSQL server to make a fresh database on (`None`: SQLite).
    pub postgres: Option<String>,
    /// The outdial binary to run as `serve` (normally `std::env::current_exe()`).
    pub exe: PathBuf,
    /// Keep the work directory (store, log) instead of removing it.
    pub keep: bool,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// `sqlite` or `postgres`.
    pub store: String,
    pub rows: usize,
    pub file_bytes: usize,
    pub inserted: u64,
    /// Rows refused (the file's repeated phones).
    pub refused: u64,
    /// From the upload's first byte to the answer (everything committed).
    pub seconds: f64,
    pub rows_per_second: f64,
    /// `serve`'s resident memory before the upload.
    pub serve_rss_before_mib: f64,
    /// The most resident memory `serve` held, up to the answer (`VmHWM`).
    pub serve_peak_rss_mib: f64,
    /// `serve`'s CPU (user + system) over the upload.
    pub serve_cpu_seconds: f64,
    /// Contacts the campaign holds afterwards, read back through the API.
    pub contacts_after: u64,
    /// From `serve`'s log line for the import: reading and staging the file, then the commit.
    pub read_ms: Option<u64>,
    pub commit_ms: Option<u64>,
}

impl ImportReport {
    pub fn line(&self) -> String {
        format!(
            "import ({}): {} rows ({:.1} MiB CSV, {} inserted, {} refused) in {:.2} s = {:.0} rows/s; \
             serve RSS {:.0} MiB before, peak {:.0} MiB; serve CPU {:.2} s; read {} ms, commit {} ms\n",
            self.store,
            self.rows,
            self.file_bytes as f64 / (1024.0 * 1024.0),
            self.inserted,
            self.refused,
            self.seconds,
            self.rows_per_second,
            self.serve_rss_before_mib,
            self.serve_peak_rss_mib,
            self.serve_cpu_seconds,
            self.read_ms.map_or("?".into(), |n| n.to_string()),
            self.commit_ms.map_or("?".into(), |n| n.to_string()),
        )
    }
}

/// The number of row `i` (0-based): distinct valid US numbers, except that every 1,000th row
/// repeats the previous one.
fn phone(i: usize) -> String {
    let n = if i % 1000 == 999 { i - 1 } else { i };
    format!("+1202{}{:04}", 200 + (n / 10_000) % 800, n % 10_000)
}

/// The CSV file of `rows` contacts (header included).
pub fn csv(rows: usize) -> Vec<u8> {
    use std::fmt::Write;
    let mut out = String::with_capacity(rows * 56 + 32);
    out.push_str("phone,name,comments,tags\n");
    for i in 0..rows {
        let tag = if i % 2 == 0 { "even" } else { "odd" };
        // Writing into a String cannot fail.
        let _ = writeln!(out, "{},Contact {i},imported row {i},{tag}", phone(i));
    }
    out.into_bytes()
}

/// Rows of a `rows`-line file the import must refuse (the repeated phones).
pub fn repeats(rows: usize) -> u64 {
    (rows / 1000) as u64
}

pub fn run(opts: &ImportOptions) -> Result<ImportReport, String> {
    if opts.rows == 0 || opts.rows > 8_000_000 {
        return Err("bench import needs 1 ≤ --rows ≤ 8,000,000".into());
    }
    in_fresh_store(
        "import",
        opts.postgres.as_deref(),
        opts.keep,
        |runtime, dir, url| runtime.block_on(run_in(opts, dir, url)),
    )
}

async fn run_in(
    opts: &ImportOptions,
    dir: &Path,
    database_url: &str,
) -> Result<ImportReport, String> {
    let http_port = free_tcp_port()?;
    write_config(
        dir,
        &ServeConfig {
            // No call is placed: the trunk's far end is a port nothing answers on.
            sip_port: free_udp_port()?,
            http_port,
            rtp: free_port_block(8)?,
            database_url: database_url.to_string(),
            max_channels: 1,
            // The import's own log line says how long reading and committing took.
            log_level: "info",
        },
    )?;
    let key = create_key(&opts.exe, dir, "import")?;
    let log = dir.join("serve.log");
    let mut serve = start_serve(&opts.exe, dir, &log)?;
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{http_port}"),
        auth: format!("Bearer {key}"),
    };
    wait_ready(&api, &mut serve, &log).await?;
    let created = api
        .call(
            reqwest::Method::POST,
            "/v1/campaigns",
            Some(json!({"name": "import", "sip_profile": "far-end", "caller_id": "+12025550100"})),
        )
        .await?;
    let id = created["id"]
        .as_i64()
        .ok_or_else(|| format!("POST /v1/campaigns: no id in {created}"))?;

    let file = csv(opts.rows);
    let file_bytes = file.len();
    let before = resources(Pid::Other(serve.pid()));
    let started = Instant::now();
    let answer = api.upload_csv(id, file, Duration::from_secs(1800)).await;
    let seconds = started.elapsed().as_secs_f64();
    let after = resources(Pid::Other(serve.pid()));
    if let Some(why) = serve.exited() {
        return Err(format!("{why} during the import; see {}", log.display()));
    }
    let result = answer?;
    let inserted = result["inserted"].as_u64().unwrap_or(0);
    let refused = result["error_count"].as_u64().unwrap_or(0);
    let expected_refused = repeats(opts.rows);
    if inserted != opts.rows as u64 - expected_refused || refused != expected_refused {
        return Err(format!(
            "import of {} rows answered {inserted} inserted, {refused} refused (expected {} and {expected_refused})",
            opts.rows,
            opts.rows as u64 - expected_refused
        ));
    }
    let listed = api
        .call(
            reqwest::Method::GET,
            &format!("/v1/campaigns/{id}/contacts?limit=1"),
            None,
        )
        .await?;
    let contacts_after = listed["total"].as_u64().unwrap_or(0);
    if contacts_after != inserted {
        return Err(format!(
            "the campaign lists {contacts_after} contacts after {inserted} were inserted: {listed}"
        ));
    }
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let line = logged.lines().find(|l| l.contains("contacts imported"));
    Ok(ImportReport {
        store: if database_url.starts_with("postgres") {
            "postgres"
        } else {
            "sqlite"
        }
        .into(),
        rows: opts.rows,
        file_bytes,
        inserted,
        refused,
        seconds,
        rows_per_second: opts.rows as f64 / seconds.max(1e-9),
        serve_rss_before_mib: mib(before.rss_bytes),
        serve_peak_rss_mib: mib(after.peak_rss_bytes),
        serve_cpu_seconds: cpu_seconds(&before, &after),
        contacts_after,
        read_ms: line.and_then(|l| logged_number(l, "read_ms")),
        commit_ms: line.and_then(|l| logged_number(l, "commit_ms")),
    })
}

/// `key=N` in a log line.
fn logged_number(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!("{key}="))? + key.len() + 1;
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_has_a_header_valid_rows_and_one_repeat_per_thousand() {
        let file = String::from_utf8(csv(2500)).unwrap();
        let lines: Vec<&str> = file.lines().collect();
        assert_eq!(lines.len(), 2501);
        assert_eq!(lines[0], "phone,name,comments,tags");
        assert_eq!(lines[1], "+12022000000,Contact 0,imported row 0,even");
        let phones: Vec<&str> = lines[1..]
            .iter()
            .map(|l| l.split(',').next().unwrap())
            .collect();
        let unique: std::collections::HashSet<_> = phones.iter().collect();
        assert_eq!(unique.len() as u64, 2500 - repeats(2500));
        assert_eq!(phones[999], phones[998]);
        assert!(phones
            .iter()
            .all(|p| crate::contacts::phone::normalize_phone(p, "US").as_deref() == Ok(*p)));
        // Rows past 10,000 move to the next exchange, so 8 M rows stay distinct.
        assert_eq!(phone(10_000), "+12022010000");
    }

    #[test]
    fn numbers_are_read_from_a_log_line() {
        let line =
            "2026-12-07T02:00:00Z  INFO contacts imported campaign=1 read_ms=812 commit_ms=95";
        assert_eq!(logged_number(line, "read_ms"), Some(812));
        assert_eq!(logged_number(line, "commit_ms"), Some(95));
        assert_eq!(logged_number(line, "errors"), None);
    }
}
