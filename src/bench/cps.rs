//! `outdial bench cps`: call attempts per second through the whole server — `outdial serve`
//! (the binary as deployed: store, campaign engine and scheduler, SIP user agent, attempt
//! records and events) runs one campaign of N contacts against sipp's built-in UAS on
//! loopback, which answers every INVITE at once (`-sn uas`). No AMD and no message: each
//! attempt is INVITE → 180/200 → ACK → BYE → 200 plus everything the server records about it.
//! The campaign's pace is `--pace` attempts per second (an offered load, as `sipp -r`: the
//! latency figures then say what a campaign at that pace sees) or, by default, the highest
//! pace accepted (the server dials as fast as it can: the throughput figure).
//!
//! Reported: attempts per second (N over the time from Start until the last call's record is
//! readable, and over the attempts' own first start to last end), failed calls (any attempt
//! not answered), `serve`'s CPU per attempt, INVITE → 200 at p50 and p99 (the attempts'
//! `answer_ms`), the hot-path store statements per attempt (from `/metrics`), and, in the
//! same run against the same sipp UAS, sipp's own UAC ceiling (`-sn uac` as fast as it goes):
//! the anchor the figures are read against.
//!
//! The store is a fresh SQLite file, or with `--postgres URL` a fresh database made on that
//! server (dropped afterwards).
//!
//! Linux only; needs `sipp` on PATH (`make setup`). Nothing here runs in the server: it is a
//! measuring tool.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::json;

use super::serve::{
    cpu_seconds, create_key, free_port_block, free_tcp_port, free_udp_port, histogram,
    in_fresh_store, log_levels, metrics_page, start_serve, wait_ready, write_config, Api, Process,
    ServeConfig,
};
use crate::observe::process::{resources, Pid};

/// What `outdial bench cps` was asked to do.
#[derive(Debug, Clone)]
pub struct CpsOptions {
    /// Contacts in the campaign (one attempt each).
    pub contacts: usize,
    /// The campaign's `max_concurrent` (and the trunk's `max_channels`).
    pub concurrent: usize,
    /// The campaign's pace, attempts per second (`None`: the highest accepted).
    pub pace: Option<f64>,
    /// A PostgreSQL server to make a fresh database on (`None`: SQLite).
    pub postgres: Option<String>,
    /// The outdial binary to run as `serve` (normally `std::env::current_exe()`).
    pub exe: PathBuf,
    pub sipp_bin: PathBuf,
    /// Keep the work directory (store, logs) instead of removing it.
    pub keep: bool,
}

/// sipp's own UAC against the same far end.
#[derive(Debug, Clone, Serialize)]
pub struct Anchor {
    pub calls: usize,
    pub seconds: f64,
    pub calls_per_second: f64,
    /// Whether sipp reported every call successful (exit status 0).
    pub all_successful: bool,
}

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct CpsReport {
    pub store: String,
    pub contacts: usize,
    pub concurrent: usize,
    /// The campaign's pace, attempts per second (`None`: as fast as the server goes).
    pub pace: Option<f64>,
    pub attempts: usize,
    /// Attempts not answered (busy, failed, timed out…): 0 expected.
    pub failed: usize,
    /// Start → the last attempt readable through the API.
    pub seconds: f64,
    pub attempts_per_second: f64,
    /// The attempts' own first start → last end.
    pub attempts_per_second_on_the_wire: f64,
    pub serve_cpu_seconds: f64,
    pub serve_cpu_ms_per_attempt: f64,
    pub invite_to_200_p50_ms: f64,
    pub invite_to_200_p99_ms: f64,
    /// Hot-path store statements per attempt, by `op` (`outdial_store_seconds_count`).
    pub store_statements_per_attempt: std::collections::BTreeMap<String, f64>,
    /// Their mean time (ms), by `op`: a wait for a group commit counts whole.
    pub store_ms_mean: std::collections::BTreeMap<String, f64>,
    /// SQLite's write turn by writer (`op`): the mean time one waited for it and held it (ms),
    /// and the share of the run it was held (`outdial_store_write_turn_*_seconds`; empty on
    /// PostgreSQL, whose writers do not take turns).
    pub write_turn_wait_ms_mean: std::collections::BTreeMap<String, f64>,
    pub write_turn_held_ms_mean: std::collections::BTreeMap<String, f64>,
    pub write_turn_held_share: f64,
    /// Engine ticks (one pass over the campaigns) during the run, and their mean time.
    pub engine_ticks: f64,
    pub engine_tick_ms_mean: f64,
    /// Attempt ends written per group commit (one transaction), on average.
    pub attempt_ends_per_group_commit: f64,
    pub anchor: Anchor,
    /// Attempts per second over sipp's UAC ceiling.
    pub ratio_to_anchor: f64,
    pub warnings: usize,
    pub errors: usize,
}

impl CpsReport {
    /// The figures as a plain-text table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "outdial bench cps: {} contacts, {} concurrent, pace {}, store {}\n",
            self.contacts,
            self.concurrent,
            self.pace
                .map_or("unlimited".to_string(), |p| format!("{p:.0}/s")),
            self.store
        ));
        s.push_str(&format!(
            "  attempts           {} ({} failed) in {:.2} s\n",
            self.attempts, self.failed, self.seconds
        ));
        s.push_str(&format!(
            "  attempts/s         {:.0} (on the wire {:.0})\n",
            self.attempts_per_second, self.attempts_per_second_on_the_wire
        ));
        s.push_str(&format!(
            "  serve CPU          {:.2} s, {:.3} ms per attempt\n",
            self.serve_cpu_seconds, self.serve_cpu_ms_per_attempt
        ));
        s.push_str(&format!(
            "  INVITE → 200       p50 {:.1} ms, p99 {:.1} ms\n",
            self.invite_to_200_p50_ms, self.invite_to_200_p99_ms
        ));
        for (op, n) in &self.store_statements_per_attempt {
            let ms = self.store_ms_mean.get(op).copied().unwrap_or(0.0);
            s.push_str(&format!(
                "  store {op:<14} {n:.3} per attempt, {ms:.2} ms each\n"
            ));
        }
        for (op, held) in &self.write_turn_held_ms_mean {
            let wait = self.write_turn_wait_ms_mean.get(op).copied().unwrap_or(0.0);
            s.push_str(&format!(
                "  write turn {op:<15} waited {wait:.2} ms, held {held:.2} ms\n"
            ));
        }
        if !self.write_turn_held_ms_mean.is_empty() {
            s.push_str(&format!(
                "  write turn held    {:.0} % of the run\n",
                100.0 * self.write_turn_held_share
            ));
        }
        s.push_str(&format!(
            "  engine ticks       {:.0}, {:.2} ms each; {:.1} attempt ends per group commit\n",
            self.engine_ticks, self.engine_tick_ms_mean, self.attempt_ends_per_group_commit
        ));
        s.push_str(&format!(
            "  sipp UAC ceiling   {:.0} calls/s ({} calls in {:.2} s{})\n",
            self.anchor.calls_per_second,
            self.anchor.calls,
            self.anchor.seconds,
            if self.anchor.all_successful {
                ""
            } else {
                ", some failed"
            }
        ));
        s.push_str(&format!(
            "  ratio              {:.1} % of sipp's ceiling\n",
            self.ratio_to_anchor * 100.0
        ));
        s.push_str(&format!(
            "  serve log          {} WARN, {} ERROR\n",
            self.warnings, self.errors
        ));
        s
    }
}

/// Runs the benchmark: see the module header.
pub fn run(opts: &CpsOptions) -> Result<CpsReport, String> {
    if opts.contacts == 0 || opts.concurrent == 0 {
        return Err("bench cps needs --contacts ≥ 1 and --concurrent ≥ 1".into());
    }
    in_fresh_store(
        "cps",
        opts.postgres.as_deref(),
        opts.keep,
        |runtime, dir, url| run_in(opts, dir, url, runtime),
    )
}

/// sipp's built-in UAS on 127.0.0.1 (answers at once, waits for BYE).
fn far_end(opts: &CpsOptions, dir: &Path, port: u16) -> Result<Process, String> {
    let mut sipp = Process {
        child: Command::new(&opts.sipp_bin)
            .current_dir(dir)
            .args(["-sn", "uas", "-t", "u1", "-i", "127.0.0.1"])
            .args(["-p", &port.to_string()])
            .args(["-buff_size", "8388608", "-max_recv_loops", "100000"])
            .args(["-nostdin"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", opts.sipp_bin.display()))?,
        name: "sipp",
    };
    std::thread::sleep(Duration::from_millis(300));
    if let Some(why) = sipp.exited() {
        return Err(why);
    }
    Ok(sipp)
}

/// sipp's own UAC: `calls` calls against the far end as fast as it goes, `concurrent` at once.
fn anchor(opts: &CpsOptions, dir: &Path, port: u16, calls: usize) -> Result<Anchor, String> {
    let started = Instant::now();
    let status = Command::new(&opts.sipp_bin)
        .current_dir(dir)
        .args(["-sn", "uac", &format!("127.0.0.1:{port}")])
        .args([
            "-t",
            "u1",
            "-i",
            "127.0.0.1",
            "-p",
            &free_udp_port()?.to_string(),
        ])
        .args(["-r", "100000", "-rp", "1000"])
        .args(["-l", &opts.concurrent.to_string()])
        .args(["-m", &calls.to_string()])
        .args([
            "-d",
            "0",
            "-buff_size",
            "8388608",
            "-max_recv_loops",
            "100000",
        ])
        .args(["-nostdin", "-timeout", "120s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run sipp's UAC: {e}"))?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Anchor {
        calls,
        seconds,
        calls_per_second: calls as f64 / seconds.max(1e-9),
        all_successful: status.success(),
    })
}

fn run_in(
    opts: &CpsOptions,
    dir: &Path,
    database_url: &str,
    runtime: &tokio::runtime::Runtime,
) -> Result<CpsReport, String> {
    let sip_port = free_udp_port()?;
    let mut sipp = far_end(opts, dir, sip_port)?;
    let http_port = free_tcp_port()?;
    // Two ports per call (RTP, RTCP), with room for the calls still ending.
    let rtp_len =
        u16::try_from(opts.concurrent * 4 + 40).map_err(|_| "too many calls".to_string())?;
    let rtp = free_port_block(rtp_len)?;
    write_config(
        dir,
        &ServeConfig {
            sip_port,
            http_port,
            rtp,
            database_url: database_url.to_string(),
            max_channels: opts.concurrent + 5,
            log_level: "warn",
        },
    )?;
    let key = create_key(&opts.exe, dir, "cps")?;
    let log = dir.join("serve.log");
    let mut serve = start_serve(&opts.exe, dir, &log)?;
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("http://127.0.0.1:{http_port}"),
        auth: format!("Bearer {key}"),
    };
    let store = if database_url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    let mut report = runtime.block_on(async {
        wait_ready(&api, &mut serve, &log).await?;
        campaign(opts, &api, &mut serve, &log, store).await
    })?;
    drop(serve);
    report.anchor = anchor(opts, dir, sip_port, opts.contacts)?;
    report.ratio_to_anchor = report.attempts_per_second / report.anchor.calls_per_second.max(1e-9);
    if let Some(why) = sipp.exited() {
        return Err(format!("{why} during the run"));
    }
    Ok(report)
}

/// The store, tick and group-commit histograms this bench reads.
struct Histograms {
    store: std::collections::BTreeMap<String, (f64, f64)>,
    turn_wait: std::collections::BTreeMap<String, (f64, f64)>,
    turn_held: std::collections::BTreeMap<String, (f64, f64)>,
    ticks: (f64, f64),
    groups: (f64, f64),
}

fn histograms(metrics: &str) -> Histograms {
    let one = |name| histogram(metrics, name).remove("").unwrap_or((0.0, 0.0));
    Histograms {
        store: histogram(metrics, "outdial_store_seconds"),
        turn_wait: histogram(metrics, "outdial_store_write_turn_wait_seconds"),
        turn_held: histogram(metrics, "outdial_store_write_turn_held_seconds"),
        ticks: one("outdial_engine_tick_seconds"),
        groups: one("outdial_store_group_size"),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn campaign(
    opts: &CpsOptions,
    api: &Api,
    serve: &mut Process,
    log: &Path,
    store: &str,
) -> Result<CpsReport, String> {
    use reqwest::Method;
    let created = api
        .call(
            Method::POST,
            "/v1/campaigns",
            Some(json!({
                "name": "cps", "pace": opts.pace.map_or(crate::campaign::model::MAX_PACE_PER_MINUTE, |p| p * 60.0),
                "max_concurrent": opts.concurrent, "call_interval": 0,
                "ring_timeout_secs": 15, "max_retries": 0, "amd_mode": "off",
                "sip_profile": "far-end", "caller_id": "+12025550100"
            })),
        )
        .await?;
    let id = created["id"]
        .as_i64()
        .ok_or_else(|| format!("POST /v1/campaigns: no id in {created}"))?;
    api.import_contacts(id, opts.contacts, "Cps").await?;

    let metrics_before = histograms(&metrics_page(api).await?);
    let cpu_before = resources(Pid::Other(serve.pid()));
    let started = Instant::now();
    api.call(Method::POST, &format!("/v1/campaigns/{id}/start"), None)
        .await?;
    // Until every contact has its attempt recorded and no call is live. `GET /v1/node` (no
    // store work) is read every 50 ms; the campaign's report (which counts its attempt records,
    // a read of every record so far) only once no call is live, and then at most every 500 ms:
    // reading it every 50 ms made `serve` spend a large part of its store time on the
    // bench's own polling.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut report_read_at: Option<Instant> = None;
    let mut total = 0;
    loop {
        let (_, live) = api.node().await?;
        let report_due = report_read_at.is_none_or(|t| t.elapsed() >= Duration::from_millis(500));
        if live == 0 && report_due && started.elapsed() >= Duration::from_millis(200) {
            let report = api
                .call(Method::GET, &format!("/v1/campaigns/{id}/report"), None)
                .await?;
            report_read_at = Some(Instant::now());
            total = report["calls"]["total"].as_u64().unwrap_or(0) as usize;
            if total >= opts.contacts {
                break;
            }
        }
        if let Some(why) = serve.exited() {
            return Err(format!("{why}; see {}", log.display()));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{total} of {} attempts recorded after 600 s",
                opts.contacts
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after = resources(Pid::Other(serve.pid()));
    let metrics_after = histograms(&metrics_page(api).await?);

    // Every attempt's record, a page at a time.
    let mut answer_ms = Vec::with_capacity(opts.contacts);
    let mut failed = 0;
    let mut attempts = 0;
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let mut offset = 0;
    loop {
        let page = api
            .call(
                Method::GET,
                &format!("/v1/campaigns/{id}/attempts?limit=1000&offset={offset}"),
                None,
            )
            .await?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            break;
        }
        for a in &items {
            attempts += 1;
            if a["outcome"] != "answered" {
                failed += 1;
            }
            if let Some(ms) = a["answer_ms"].as_f64() {
                answer_ms.push(ms);
            }
            if let Some(t) = a["started_at"].as_i64() {
                first = first.min(t);
            }
            if let Some(t) = a["ended_at"].as_i64() {
                last = last.max(t);
            }
        }
        offset += items.len();
    }
    answer_ms.sort_by(|a, b| a.total_cmp(b));
    let wire_seconds = if last > first {
        (last - first) as f64 / 1000.0
    } else {
        seconds
    };
    let cpu = cpu_seconds(&cpu_before, &cpu_after);
    let n = attempts.max(1) as f64;
    let delta = |before: (f64, f64), after: (f64, f64)| (after.0 - before.0, after.1 - before.1);
    let mut store_statements_per_attempt = std::collections::BTreeMap::new();
    let mut store_ms_mean = std::collections::BTreeMap::new();
    for (op, after) in &metrics_after.store {
        let before = metrics_before.store.get(op).copied().unwrap_or_default();
        let (count, sum) = delta(before, *after);
        store_statements_per_attempt.insert(op.clone(), count / n);
        store_ms_mean.insert(op.clone(), 1000.0 * sum / count.max(1.0));
    }
    let mean_ms = |before: &std::collections::BTreeMap<String, (f64, f64)>,
                   after: &std::collections::BTreeMap<String, (f64, f64)>| {
        after
            .iter()
            .map(|(op, a)| {
                let (count, sum) = delta(before.get(op).copied().unwrap_or_default(), *a);
                (op.clone(), (1000.0 * sum / count.max(1.0), sum))
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let turn_wait = mean_ms(&metrics_before.turn_wait, &metrics_after.turn_wait);
    let turn_held = mean_ms(&metrics_before.turn_held, &metrics_after.turn_held);
    let held_seconds: f64 = turn_held.values().map(|(_, sum)| sum).sum();
    let ticks = delta(metrics_before.ticks, metrics_after.ticks);
    let groups = delta(metrics_before.groups, metrics_after.groups);
    let (warnings, errors) = log_levels(log);
    Ok(CpsReport {
        store: store.to_string(),
        contacts: opts.contacts,
        concurrent: opts.concurrent,
        pace: opts.pace,
        attempts,
        failed,
        seconds,
        attempts_per_second: attempts as f64 / seconds.max(1e-9),
        attempts_per_second_on_the_wire: attempts as f64 / wire_seconds.max(1e-9),
        serve_cpu_seconds: cpu,
        serve_cpu_ms_per_attempt: cpu * 1000.0 / n,
        invite_to_200_p50_ms: percentile(&answer_ms, 50.0),
        invite_to_200_p99_ms: percentile(&answer_ms, 99.0),
        store_statements_per_attempt,
        store_ms_mean,
        write_turn_wait_ms_mean: turn_wait
            .into_iter()
            .map(|(op, (ms, _))| (op, ms))
            .collect(),
        write_turn_held_ms_mean: turn_held
            .into_iter()
            .map(|(op, (ms, _))| (op, ms))
            .collect(),
        write_turn_held_share: held_seconds / seconds.max(1e-9),
        engine_ticks: ticks.0,
        engine_tick_ms_mean: 1000.0 * ticks.1 / ticks.0.max(1.0),
        attempt_ends_per_group_commit: groups.1 / groups.0.max(1.0),
        anchor: Anchor {
            calls: 0,
            seconds: 0.0,
            calls_per_second: 0.0,
            all_successful: false,
        },
        ratio_to_anchor: 0.0,
        warnings,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_read_counts_and_sums_by_op() {
        let page = "# TYPE outdial_store_seconds histogram\n\
                    outdial_store_seconds_bucket{op=\"claim_calls\",le=\"0.1\"} 3\n\
                    outdial_store_seconds_sum{op=\"claim_calls\"} 0.5\n\
                    outdial_store_seconds_count{op=\"claim_calls\"} 12\n\
                    outdial_store_seconds_count{op=\"append_events\"} 4.0\n\
                    outdial_other_count{op=\"x\"} 9\n\
                    outdial_engine_tick_seconds_sum 2.5\n\
                    outdial_engine_tick_seconds_count 100\n\
                    outdial_store_group_size_sum{x=\"y\"} 40\n\
                    outdial_store_group_size_count{x=\"y\"} 4\n";
        let h = histograms(page);
        assert_eq!(h.store.len(), 2);
        assert_eq!(h.store["claim_calls"], (12.0, 0.5));
        assert_eq!(h.store["append_events"], (4.0, 0.0));
        assert_eq!(h.ticks, (100.0, 2.5));
        assert_eq!(h.groups, (4.0, 40.0));
    }

    #[test]
    fn percentiles_of_sorted_values() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 51.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }
}
