//! The admin API over real HTTP: each test starts the router on 127.0.0.1:0 (a real
//! TcpListener, in-process) over a fresh database and talks to it with reqwest. Every
//! scenario runs twice: on SQLite (a file in a temp dir) and on PostgreSQL (a database
//! created for the test and dropped after it; server from `OUTDIAL_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`, trust auth).
//!
//! The first API key is made with the store directly (as `outdial keys create` would).
//! The OpenAPI document is checked by `openapi-spec-validator` (installed pinned by
//! `make setup` into `.venv`; `OPENAPI_SPEC_VALIDATOR` names another binary).

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use outdial::api::{AppState, Clock};
use outdial::campaign::model::{ContactStatus, EndedBy};
use outdial::store::{AttemptRecord, BridgeRecord, ContactTransition, Store};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, Executor};
use tokio::sync::Notify;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
}

const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";

fn pg_admin_url() -> String {
    std::env::var("OUTDIAL_TEST_PG_URL").unwrap_or_else(|_| PG_DEFAULT.to_string())
}

/// `postgres://…/test` → `postgres://…/{db}`.
fn pg_url_for(db: &str) -> String {
    let admin = pg_admin_url();
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b.to_string(), format!("?{q}")),
        None => (admin.clone(), String::new()),
    };
    let cut = base.rfind('/').expect("a database URL has a path");
    format!("{}/{db}{query}", &base[..cut])
}

struct Server {
    base: String,
    client: reqwest::Client,
    key: String,
    store: Store,
    state: AppState,
    account_id: i64,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pg_db: Option<String>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(db: Db) -> Server {
        // RUST_LOG=outdial=debug shows the server's log lines.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let (url, pg_db) = match db {
            Db::Sqlite => (
                format!("sqlite://{}", dir.path().join("api.db").display()),
                None,
            ),
            Db::Postgres => {
                let name = format!("outdial_api_{}_{}", std::process::id(), rand_suffix());
                let mut admin = sqlx::PgConnection::connect(&pg_admin_url())
                    .await
                    .unwrap_or_else(|e| {
                        panic!(
                            "PostgreSQL at {} is needed for these tests: {e}",
                            pg_admin_url()
                        )
                    });
                // Parallel tests create databases at once; PostgreSQL may refuse one briefly.
                let mut tries = 0;
                while let Err(e) = admin
                    .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                {
                    tries += 1;
                    assert!(tries < 5, "CREATE DATABASE {name}: {e}");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                admin.close().await.ok();
                (pg_url_for(&name), Some(name))
            }
        };
        let store = Store::open(&url).await.unwrap();
        let now = Clock::system().now();
        let account = store.create_account("admin", "Admin", now).await.unwrap();
        let key = store
            .create_api_key(account.id, "tests", now)
            .await
            .unwrap()
            .secret;
        let state = AppState::new(
            store.clone(),
            Arc::new(Notify::new()),
            dir.path().join("exports"),
        )
        .with_media_dir(dir.path().join("media"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(outdial::api::serve(listener, state.clone(), async move {
            rx.await.ok();
        }));
        Server {
            base,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            key,
            store,
            state,
            account_id: account.id,
            shutdown: Some(tx),
            task: Some(task),
            pg_db,
            _dir: dir,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), task)
                .await
                .expect("the server stops")
                .unwrap()
                .unwrap();
        }
        self.store.close().await;
        if let Some(name) = self.pg_db.take() {
            let mut admin = sqlx::PgConnection::connect(&pg_admin_url()).await.unwrap();
            admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await
                .unwrap();
            admin.close().await.ok();
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn req(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(path))
            .bearer_auth(&self.key)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.req(method, path);
        if let Some(body) = body {
            req = req.json(&body);
        }
        read(req.send().await.unwrap()).await
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    async fn import(&self, campaign: i64, body: impl Into<reqwest::Body>) -> (StatusCode, Value) {
        let resp = self
            .req(
                Method::POST,
                &format!("/v1/campaigns/{campaign}/contacts/import"),
            )
            .header("content-type", "text/csv")
            .body(body)
            .send()
            .await
            .unwrap();
        read(resp).await
    }

    async fn campaign(&self, name: &str) -> i64 {
        let (status, body) = self.post("/v1/campaigns", json!({ "name": name })).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_i64().unwrap()
    }

    /// Every contact of a campaign, straight from the store.
    async fn stored(&self, campaign: i64) -> Vec<outdial::campaign::model::Contact> {
        self.store
            .list_contacts(
                campaign,
                &Default::default(),
                outdial::store::Page::new(10_000, 0),
            )
            .await
            .unwrap()
            .items
    }
}

/// A test that panicked never reached `stop`: its PostgreSQL database is dropped here.
impl Drop for Server {
    fn drop(&mut self) {
        let Some(name) = self.pg_db.take() else {
            return;
        };
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&pg_admin_url()).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    admin.execute(sqlx::AssertSqlSafe(sql)).await.ok();
                    admin.close().await.ok();
                }
            });
        })
        .join()
        .ok();
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    nanos * 1000 + N.fetch_add(1, Ordering::Relaxed)
}

async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "{status}: not JSON: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            )
        })
    };
    (status, value)
}

fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

fn assert_field(status: StatusCode, body: &Value, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], field, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains(field),
        "the message names the field: {body}"
    );
}

/// Runs each scenario on both databases.
macro_rules! on_both {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Db::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Db::Postgres).await;
                }
            )+
        }
    };
}

on_both!(
    auth,
    every_documented_route_needs_auth,
    campaigns_crud_and_actions,
    campaign_validation_names_the_field,
    contacts_crud_filters_and_retry,
    import_the_guides_csv_and_headed_files,
    import_repeats_across_batches_and_the_campaigns_own_phones,
    import_bad_csvs,
    exports_in_three_formats,
    reports_and_attempts,
    dnc_list,
    schedules,
    request_errors,
    message_plans_and_media_files,
    media_files_belong_to_their_account,
    attempt_recordings_stream_to_their_account,
    sip_agents_pools_and_states,
    predictive_campaigns_and_the_abandon_report,
    ai_agents_crud_and_campaigns_naming_them,
    goals_analyses_and_attempt_reports,
    phone_numbers_and_the_campaigns_holding_them,
);

// ---------------------------------------------------------------------------------------
// Scenarios.

async fn auth(db: Db) {
    let s = Server::start(db).await;
    // No credentials: 401 JSON, /healthz answers.
    let resp = s.client.get(s.url("/v1/campaigns")).send().await.unwrap();
    assert!(resp.headers().contains_key("www-authenticate"));
    let (status, body) = read(resp).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = read(s.client.get(s.url("/healthz")).send().await.unwrap()).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    // Unknown routes: 401 without a key, 404 with one.
    let (status, body) = read(s.client.get(s.url("/v1/nope")).send().await.unwrap()).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = s.get("/v1/nope").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    // A bearer key works; a wrong one does not.
    assert_eq!(s.get("/v1/campaigns").await.0, StatusCode::OK);
    let wrong = format!("odk_{}", "0".repeat(64));
    for bad in [wrong.as_str(), "garbage", "ods_nope"] {
        let resp = s
            .client
            .get(s.url("/v1/campaigns"))
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let (status, me) = s.get("/v1/me").await;
    assert_eq!(
        (status, me["login"].as_str()),
        (StatusCode::OK, Some("admin"))
    );

    // Login with the guide's Login + API Key.
    let login = |login: &str, key: &str| {
        s.client
            .post(s.url("/v1/login"))
            .json(&json!({ "login": login, "api_key": key }))
            .send()
    };
    let (status, body) = read(login("admin", "odk_wrong").await.unwrap()).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = read(login("someone", &s.key).await.unwrap()).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, body) = read(login("admin", &s.key).await.unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    assert!(
        !body.to_string().contains(&s.key),
        "the key is never echoed"
    );
    assert!(body["expires_at"].as_i64().unwrap() > s.state.now());
    let with_token = |path: &str| s.client.get(s.url(path)).bearer_auth(&token).send();
    assert_eq!(
        with_token("/v1/campaigns").await.unwrap().status(),
        StatusCode::OK
    );

    // Logout ends the session.
    let resp = s
        .client
        .post(s.url("/v1/logout"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        with_token("/v1/campaigns").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // A session expires.
    let (_, body) = read(login("admin", &s.key).await.unwrap()).await;
    let token = body["token"].as_str().unwrap().to_string();
    let ok = s
        .client
        .get(s.url("/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    s.state.clock.advance(s.state.session_ttl_ms + 1000);
    let late = s
        .client
        .get(s.url("/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), StatusCode::UNAUTHORIZED);

    // A revoked key stops working at once.
    let keys = s.store.list_api_keys(s.account_id).await.unwrap();
    s.store
        .revoke_api_key(keys[0].id, s.state.now())
        .await
        .unwrap();
    let (status, body) = s.get("/v1/campaigns").await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (status, _) = read(login("admin", &s.key).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

/// Every path and method of the OpenAPI document answers 401 without credentials (and
/// with a wrong key), except GET /healthz: "401 on every route".
async fn every_documented_route_needs_auth(db: Db) {
    let s = Server::start(db).await;
    let (status, doc) = s.get("/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{} paths", paths.len());
    let mut checked = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{id}", "1")
            .replace("{contact_id}", "1")
            .replace("{phone}", "%2B12025550101")
            .replace("{name}", "welcome.wav");
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let public = path == "/healthz";
            for key in [None, Some("odk_not_a_key")] {
                let mut req = s.client.request(m.clone(), s.url(&concrete));
                if let Some(k) = key {
                    req = req.bearer_auth(k);
                }
                if m != Method::GET && m != Method::DELETE {
                    req = req.json(&json!({}));
                }
                let (status, body) = read(req.send().await.unwrap()).await;
                if public {
                    assert_eq!(status, StatusCode::OK, "{method} {path}");
                } else {
                    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 60, "{checked} requests");
    s.stop().await;
}

async fn campaigns_crud_and_actions(db: Db) {
    let s = Server::start(db).await;
    let engine = s.state.engine.clone();
    let woken = || async {
        tokio::time::timeout(Duration::from_secs(5), engine.notified())
            .await
            .is_ok()
    };
    // Guide 1 v2's dialog, plus v1's DID number as an alias of connect_to.
    let (status, c) = s
        .post(
            "/v1/campaigns",
            json!({
                "name": "Q1 Sales Outreach",
                "status": "new",
                "did_number": "+12025550100",
                "schedule_start": null,
                "pace": 12,
                "description": "Leads from ads",
                "billable_account": "acct-7",
                "caller_id": "+12025550199",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    assert!(woken().await, "create wakes the engine");
    let id = c["id"].as_i64().unwrap();
    assert_eq!(c["status"], "new");
    assert_eq!(c["connect_to"], "+12025550100");
    assert_eq!(c["pace"], 12.0);
    assert_eq!(c["caller_id"], "+12025550199");
    assert_eq!(c["billable_account"], "acct-7");
    assert_eq!(c["description"], "Leads from ads");
    assert_eq!(
        c["calls"],
        json!({"answered": 0, "not_answered": 0, "total": 0})
    );
    assert_eq!(c["contacts"]["by_status"]["pending"], 0);

    // List and read.
    let (status, list) = s.get("/v1/campaigns?status=new&q=outreach").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["id"], id);
    let (_, list) = s.get("/v1/campaigns?status=Active").await;
    assert_eq!(list["total"], 0);
    let (status, got) = s.get(&format!("/v1/campaigns/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["name"], "Q1 Sales Outreach");

    // PATCH merges (guide 2's settings).
    let (status, hours) = s.post("/v1/schedules", office_hours()).await;
    assert_eq!(status, StatusCode::CREATED, "{hours}");
    let (status, p) = s
        .patch(
            &format!("/v1/campaigns/{id}"),
            json!({
                "pace": 30,
                "call_interval": "1min",
                "ring_timeout": "20s",
                "retry_interval": {"value": 2, "unit": "hours"},
                "completion_timeout": {"value": 1, "unit": "days"},
                "amd_mode": "ml_based",
                "max_retries": 4,
                "business_hours_id": hours["id"],
                "ai_agent_url": "wss://agent.example/stream",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert!(woken().await, "settings changes wake the engine");
    assert_eq!(p["pace"], 30.0);
    assert_eq!(p["call_interval_secs"], 60);
    assert_eq!(p["ring_timeout_secs"], 20);
    assert_eq!(p["retry_interval"], json!({"value": 2, "unit": "hours"}));
    assert_eq!(p["completion_timeout"], json!({"value": 1, "unit": "days"}));
    assert_eq!(p["amd_mode"], "ml");
    assert_eq!(p["max_retries"], 4);
    assert_eq!(p["business_hours_id"], hours["id"]);
    assert_eq!(p["name"], "Q1 Sales Outreach", "untouched fields stay");
    assert_eq!(p["connect_to"], "+12025550100");
    let (_, p) = s
        .patch(
            &format!("/v1/campaigns/{id}"),
            json!({"ai_agent_url": null}),
        )
        .await;
    assert_eq!(p["ai_agent_url"], Value::Null, "null clears");
    assert_eq!(p["pace"], 30.0);

    // Contacts to see Restart reset them.
    for phone in ["+12025550101", "+12025550102"] {
        let (status, body) = s
            .post(
                &format!("/v1/campaigns/{id}/contacts"),
                json!({"phone": phone}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    // Every action, and the illegal ones.
    let act = |action: &'static str| s.post_empty(id, action);
    let (status, c) = act("start").await;
    assert_eq!(
        (status, c["status"].as_str()),
        (StatusCode::OK, Some("processing"))
    );
    assert!(woken().await, "actions wake the engine");
    let (status, body) = act("start").await;
    assert_error(status, &body, StatusCode::CONFLICT, "illegal_action");
    assert_eq!(
        body["error"]["message"],
        "cannot start a campaign that is processing"
    );
    let (status, body) = act("restart").await;
    assert_error(status, &body, StatusCode::CONFLICT, "illegal_action");
    let (_, c) = act("pause").await;
    assert_eq!(c["status"], "paused");
    let (status, body) = act("pause").await;
    assert_error(status, &body, StatusCode::CONFLICT, "illegal_action");
    let (_, c) = act("resume").await;
    assert_eq!(c["status"], "processing");
    // The engine finishes the contacts; then Stop and Restart.
    for contact in s.stored(id).await {
        s.store
            .transition_contact(
                contact.id,
                &[],
                &ContactTransition {
                    status: ContactStatus::NotAnswered,
                    next_attempt_at: None,
                    last_outcome: Some("no_answer".into()),
                },
                s.state.now(),
            )
            .await
            .unwrap();
    }
    let (_, c) = act("stop").await;
    assert_eq!(c["status"], "canceled");
    let (status, body) = act("resume").await;
    assert_error(status, &body, StatusCode::CONFLICT, "illegal_action");
    let (status, c) = act("restart").await;
    assert_eq!(
        (status, c["status"].as_str()),
        (StatusCode::OK, Some("processing"))
    );
    assert!(s
        .stored(id)
        .await
        .iter()
        .all(|c| c.status == ContactStatus::Pending && c.attempts == 0));
    assert_eq!(c["contacts"]["by_status"]["pending"], 2);

    // A scheduled campaign (guide 1: the initial status), with a local start time.
    let (status, sc) = s
        .post(
            "/v1/campaigns",
            json!({
                "name": "Webinar invites",
                "status": "scheduled",
                "schedule_start": "2099-03-01T09:30",
                "schedule_timezone": "America/New_York",
                "connect_to": "sip:agents@pbx.example",
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sc}");
    assert_eq!(sc["status"], "scheduled");
    assert_eq!(
        sc["schedule_start"], 4_076_058_600_000i64,
        "09:30 EST = 14:30 UTC"
    );
    let sid = sc["id"].as_i64().unwrap();
    let (_, sc2) = s.post_empty(sid, "start").await;
    assert_eq!(sc2["status"], "scheduled", "the start time is ahead");
    let (_, sc2) = s.post_empty(sid, "pause").await;
    assert_eq!(sc2["status"], "paused");

    // Delete: not while processing.
    let (status, body) = s.delete(&format!("/v1/campaigns/{id}")).await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    act("pause").await;
    let (status, _) = s.delete(&format!("/v1/campaigns/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = s.get(&format!("/v1/campaigns/{id}")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = s.post_empty(id, "start").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    s.stop().await;
}

impl Server {
    async fn post_empty(&self, campaign: i64, action: &str) -> (StatusCode, Value) {
        read(
            self.req(Method::POST, &format!("/v1/campaigns/{campaign}/{action}"))
                .send()
                .await
                .unwrap(),
        )
        .await
    }
}

impl Server {
    /// Polls an export job until it is done.
    async fn wait_export(&self, job: i64) -> Value {
        for _ in 0..600 {
            let (status, j) = self.get(&format!("/v1/exports/{job}")).await;
            assert_eq!(status, StatusCode::OK);
            match j["status"].as_str().unwrap() {
                "done" => return j,
                "failed" => panic!("export failed: {j}"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        panic!("export {job} never finished");
    }

    /// (Content-Disposition, Content-Type, bytes) of a finished export.
    async fn download(&self, job: i64) -> (String, String, Vec<u8>) {
        let resp = self
            .req(Method::GET, &format!("/v1/exports/{job}/download"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let disposition = resp.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_string();
        let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
        (disposition, kind, resp.bytes().await.unwrap().to_vec())
    }
}

fn office_hours() -> Value {
    let day = json!([{"start": "09:00", "end": "17:00"}]);
    json!({
        "name": "Office",
        "timezone": "America/New_York",
        "week": [day, day, day, day, day, [], []],
        "closed_dates": ["2099-12-25"],
    })
}

async fn campaign_validation_names_the_field(db: Db) {
    let s = Server::start(db).await;
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "name"),
        (json!({"name": "  "}), "name"),
        (json!({"name": "x", "pace": "fast"}), "pace"),
        (json!({"name": "x", "pace": -1}), "pace"),
        (
            json!({"name": "x", "ring_timeout": 10}),
            "ring_timeout_secs",
        ),
        (
            json!({"name": "x", "ring_timeout": "forever"}),
            "ring_timeout",
        ),
        (json!({"name": "x", "max_retries": 11}), "max_retries"),
        (
            json!({"name": "x", "schedule_timezone": "Mars/Olympus"}),
            "schedule_timezone",
        ),
        (
            json!({"name": "x", "schedule_start": "next week"}),
            "schedule_start",
        ),
        (
            json!({"name": "x", "schedule_start": 1000}),
            "schedule_start",
        ),
        (json!({"name": "x", "status": "processing"}), "status"),
        (json!({"name": "x", "status": "sleeping"}), "status"),
        (
            json!({"name": "x", "status": "scheduled"}),
            "schedule_start",
        ),
        (json!({"name": "x", "amd_mode": "psychic"}), "amd_mode"),
        (
            json!({"name": "x", "retry_interval": {"value": 2, "unit": "weeks"}}),
            "retry_interval.unit",
        ),
        (
            json!({"name": "x", "retry_interval": {"value": 2}}),
            "retry_interval.unit",
        ),
        (
            json!({"name": "x", "ai_agent_url": "http://agent"}),
            "ai_agent_url",
        ),
        (
            json!({"name": "x", "default_country": "USA"}),
            "default_country",
        ),
        (
            json!({"name": "x", "business_hours_id": 999}),
            "business_hours_id",
        ),
        (json!({"name": "x", "colour": "red"}), "colour"),
        (
            json!({"name": "x", "machine_action": "leave_message"}),
            "voicemail_message",
        ),
    ];
    for (body, field) in cases {
        let (status, answer) = s.post("/v1/campaigns", body.clone()).await;
        assert_field(status, &answer, field);
    }
    let id = s.campaign("ok").await;
    let (status, body) = s
        .patch(
            &format!("/v1/campaigns/{id}"),
            json!({"status": "processing"}),
        )
        .await;
    assert_field(status, &body, "status");
    let (status, body) = s
        .patch(
            &format!("/v1/campaigns/{id}"),
            json!({"contact_window": {"start": "21:00", "end": "09:00"}}),
        )
        .await;
    assert_field(status, &body, "contact_window");
    let (status, body) = s.get("/v1/campaigns/abc").await;
    assert_field(status, &body, "id");
    assert_eq!(s.stored(id).await.len(), 0);
    let (_, list) = s.get("/v1/campaigns").await;
    assert_eq!(list["total"], 1, "no invalid campaign was stored");
    s.stop().await;
}

async fn contacts_crud_filters_and_retry(db: Db) {
    let s = Server::start(db).await;
    let id = s.campaign("Contacts").await;
    let other = s.campaign("Other").await;
    let base = format!("/v1/campaigns/{id}/contacts");
    // Guide 1's dialog: phone, name, comments, status.
    let (status, c) = s
        .post(
            &base,
            json!({"phone": "(202) 555-0101", "name": "John Doe", "comments": "Google Ads",
                   "status": "Upcoming", "tags": ["vip", "ads"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    assert_eq!(c["phone"], "+12025550101");
    assert_eq!(c["status"], "pending");
    assert_eq!(c["tags"], json!(["vip", "ads"]));
    let john = c["id"].as_i64().unwrap();
    let (status, body) = s.post(&base, json!({"phone": "+1 202 555 0101"})).await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = s.post(&base, json!({"phone": "12"})).await;
    assert_field(status, &body, "phone");
    let (status, body) = s.post(&base, json!({"name": "no phone"})).await;
    assert_field(status, &body, "phone");
    let (status, body) = s
        .post(&base, json!({"phone": "+12025550109", "status": "dialing"}))
        .await;
    assert_field(status, &body, "status");
    for (phone, name, tags) in [
        ("2025550102", "Jane Smith", vec!["ads"]),
        ("2025550103", "Peter Jones", vec!["whatsapp"]),
        ("+442079460958", "London Office", vec![]),
    ] {
        let (status, body) = s
            .post(&base, json!({"phone": phone, "name": name, "tags": tags}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, _) = s
        .post(
            &format!("/v1/campaigns/{other}/contacts"),
            json!({"phone": "2025550101"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the same phone in another campaign is fine"
    );

    // Peter was called: not answered, 2 retries; Jane is in a call.
    let all = s.stored(id).await;
    let by_name = |n: &str| all.iter().find(|c| c.name == n).unwrap().id;
    let (jane, peter, london) = (
        by_name("Jane Smith"),
        by_name("Peter Jones"),
        by_name("London Office"),
    );
    for _ in 0..3 {
        s.store
            .claim_contact(
                peter,
                &[ContactStatus::Pending, ContactStatus::Retry],
                s.state.now(),
            )
            .await
            .unwrap();
        s.store
            .transition_contact(
                peter,
                &[],
                &ContactTransition {
                    status: ContactStatus::Retry,
                    next_attempt_at: None,
                    last_outcome: Some("no_answer".into()),
                },
                s.state.now(),
            )
            .await
            .unwrap();
    }
    s.store
        .transition_contact(
            peter,
            &[],
            &ContactTransition {
                status: ContactStatus::NotAnswered,
                next_attempt_at: None,
                last_outcome: None,
            },
            s.state.now(),
        )
        .await
        .unwrap();
    s.store
        .claim_contact(jane, &[ContactStatus::Pending], s.state.now())
        .await
        .unwrap();

    // Filters: status in either guide's words, tags, retries, text; paging.
    let count = |q: String| {
        let s = &s;
        let base = base.clone();
        async move {
            let (status, body) = s.get(&format!("{base}?{q}")).await;
            assert_eq!(status, StatusCode::OK, "{q}: {body}");
            body["total"].as_i64().unwrap()
        }
    };
    assert_eq!(count("".into()).await, 4);
    assert_eq!(count("status=upcoming".into()).await, 2);
    assert_eq!(count("status=Not%20answered".into()).await, 1);
    assert_eq!(count("status=dialing,not_answered".into()).await, 2);
    assert_eq!(count("tags=ads".into()).await, 2);
    assert_eq!(count("tags=vip,whatsapp".into()).await, 2);
    assert_eq!(count("min_retries=1".into()).await, 1);
    assert_eq!(count("max_retries=0".into()).await, 3);
    assert_eq!(count("q=smith".into()).await, 1);
    assert_eq!(count("q=4420".into()).await, 1);
    assert_eq!(count("q=google".into()).await, 1);
    let (_, page) = s.get(&format!("{base}?limit=2&offset=1")).await;
    assert_eq!(
        (
            page["items"].as_array().unwrap().len(),
            page["total"].as_i64()
        ),
        (2, Some(4))
    );
    let (status, body) = s.get(&format!("{base}?status=sleeping")).await;
    assert_field(status, &body, "status");
    let (status, body) = s.get(&format!("{base}?min_retries=x")).await;
    assert_field(status, &body, "min_retries");

    // Read, edit.
    let (status, c) = s.get(&format!("{base}/{john}")).await;
    assert_eq!(
        (status, c["name"].as_str()),
        (StatusCode::OK, Some("John Doe"))
    );
    let (status, c) = s
        .patch(
            &format!("{base}/{john}"),
            json!({"comments": "called back", "timezone": "America/New_York"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(
        (c["comments"].as_str(), c["name"].as_str()),
        (Some("called back"), Some("John Doe"))
    );
    assert_eq!(c["timezone"], "America/New_York");
    let (status, body) = s
        .patch(&format!("{base}/{jane}"), json!({"status": "completed"}))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = s
        .get(&format!("/v1/campaigns/{other}/contacts/{john}"))
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    // Delete: pending only.
    let (status, body) = s.delete(&format!("{base}/{peter}")).await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, _) = s.delete(&format!("{base}/{london}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s.get(&format!("{base}/{london}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Manual retry: Peter (final) goes back to retry; John (pending) and Jane (dialing) stay.
    let (status, r) = s
        .post(
            &format!("{base}/retry"),
            json!({"ids": [peter, john, jane, 999_999]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["retried"].as_u64(), r["skipped"].as_u64()),
        (Some(1), Some(3))
    );
    let (_, p) = s.get(&format!("{base}/{peter}")).await;
    assert_eq!(p["status"], "retry");

    // Bulk remove: only pending ones go.
    let (status, r) = s
        .post(
            &format!("{base}/remove"),
            json!({"ids": [john, peter, jane]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["removed"].as_u64(), r["skipped"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(s.stored(id).await.len(), 2);
    assert_eq!(
        s.stored(other).await.len(),
        1,
        "the other campaign is untouched"
    );
    s.stop().await;
}

const GUIDE_CSV: &str = "12025550101,John Doe,Google Ads\n12025550102,Jane Smith,Website visitor\n12025550103,Peter Jones,Whatsapp query\n";

async fn import_the_guides_csv_and_headed_files(db: Db) {
    let s = Server::start(db).await;
    let id = s.campaign("Import").await;
    let (status, r) = s.import(id, GUIDE_CSV).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (
            r["inserted"].as_u64(),
            r["duplicates"].as_u64(),
            r["error_count"].as_u64()
        ),
        (Some(3), Some(0), Some(0))
    );
    let stored = s.stored(id).await;
    assert_eq!(stored.len(), 3);
    let jane = stored.iter().find(|c| c.phone == "+12025550102").unwrap();
    assert_eq!(
        (jane.name.as_str(), jane.comments.as_str()),
        ("Jane Smith", "Website visitor")
    );
    assert_eq!(jane.status, ContactStatus::Pending);

    // The same file again: all duplicates of the campaign, nothing changes.
    let (_, r) = s.import(id, GUIDE_CSV).await;
    assert_eq!(
        (r["inserted"].as_u64(), r["duplicates"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(s.stored(id).await.len(), 3);

    // A header in odd order, `;`, a BOM, CRLF, quotes, a duplicate inside the file.
    let headed = "\u{feff}Tags;Time Zone;Comments;Name;Phone Number\r\n\
                  vip|ads;America/Chicago;\"says \"\"hi\"\"; twice\";Ann Lee;+1 (202) 555-0104\r\n\
                  ;;;Bob;202-555-0105\r\n\
                  ;;;Bob again;2025550105\r\n";
    let (status, r) = s.import(id, headed).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["inserted"], 2, "{r}");
    assert_eq!(r["has_header"], true);
    assert_eq!(r["delimiter"], ";");
    assert_eq!(r["error_count"], 1);
    assert_eq!(r["errors"][0]["line"], 4);
    assert!(
        r["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("duplicate"),
        "{r}"
    );
    let stored = s.stored(id).await;
    let ann = stored.iter().find(|c| c.phone == "+12025550104").unwrap();
    assert_eq!(ann.name, "Ann Lee");
    assert_eq!(ann.comments, "says \"hi\"; twice");
    assert_eq!(ann.tags, vec!["vip".to_string(), "ads".to_string()]);
    assert_eq!(ann.timezone.as_deref(), Some("America/Chicago"));

    // Multipart upload with a file part, and another default country.
    let form = reqwest::multipart::Form::new()
        .text("note", "ignored")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"phone,name\n020 7946 0958,London\n".to_vec())
                .file_name("contacts.csv")
                .mime_str("text/csv")
                .unwrap(),
        );
    let resp = s
        .req(
            Method::POST,
            &format!("/v1/campaigns/{id}/contacts/import?default_country=GB"),
        )
        .multipart(form)
        .send()
        .await
        .unwrap();
    let (status, r) = read(resp).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["inserted"], 1, "{r}");
    assert!(s
        .stored(id)
        .await
        .iter()
        .any(|c| c.phone == "+442079460958"));

    // Not CSV, unknown country, unknown campaign.
    let resp = s
        .req(Method::POST, &format!("/v1/campaigns/{id}/contacts/import"))
        .json(&json!({"phone": "1"}))
        .send()
        .await
        .unwrap();
    let (status, body) = read(resp).await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let resp = s
        .req(
            Method::POST,
            &format!("/v1/campaigns/{id}/contacts/import?default_country=XX"),
        )
        .header("content-type", "text/csv")
        .body(GUIDE_CSV)
        .send()
        .await
        .unwrap();
    let (status, body) = read(resp).await;
    assert_field(status, &body, "default_country");
    let (status, body) = s.import(999_999, GUIDE_CSV).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    s.stop().await;
}

/// A file of several staging batches (1,000 rows each): a phone repeated within a batch, one
/// repeated two batches later (written apart, the first line wins), one the campaign has
/// already (a duplicate, left as it was); the contacts keep the file's order.
async fn import_repeats_across_batches_and_the_campaigns_own_phones(db: Db) {
    let s = Server::start(db).await;
    let id = s.campaign("Batches").await;
    let (status, r) = s
        .post(
            &format!("/v1/campaigns/{id}/contacts"),
            json!({"phone": "+12025559999", "name": "Already here"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{r}");
    let phone = |i: usize| format!("+12025{:06}", 550_000 + i);
    let mut file = String::from("phone,name\n");
    for i in 0..2600 {
        let p = match i {
            // Line 8 repeats line 6 (same batch); line 2402 repeats line 12 (two batches on).
            6 => phone(4),
            2400 => phone(10),
            // The campaign has this one.
            2000 => "+12025559999".to_string(),
            _ => phone(i),
        };
        file.push_str(&format!("{p},Row {i}\n"));
    }
    let (status, r) = s.import(id, file).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (
            r["inserted"].as_u64(),
            r["duplicates"].as_u64(),
            r["error_count"].as_u64()
        ),
        (Some(2597), Some(1), Some(2)),
        "{r}"
    );
    assert_eq!(r["errors"][0]["line"], 8, "{r}");
    assert_eq!(r["errors"][0]["reason"], "duplicate of line 6", "{r}");
    assert_eq!(r["errors"][1]["line"], 2402, "{r}");
    assert_eq!(r["errors"][1]["reason"], "duplicate of line 12", "{r}");
    let stored = s.stored(id).await;
    assert_eq!(stored.len(), 2598);
    let kept = stored.iter().find(|c| c.phone == phone(10)).unwrap();
    assert_eq!(kept.name, "Row 10");
    let already = stored.iter().find(|c| c.phone == "+12025559999").unwrap();
    assert_eq!(already.name, "Already here");
    // Imported in the file's order: ids rise with the lines.
    let mut imported: Vec<_> = stored
        .iter()
        .filter(|c| c.name.starts_with("Row "))
        .collect();
    imported.sort_by_key(|c| c.id);
    let rows: Vec<usize> = imported
        .iter()
        .map(|c| c.name["Row ".len()..].parse().unwrap())
        .collect();
    assert!(rows.windows(2).all(|w| w[0] < w[1]), "not in file order");
    // The staging rows go once the import has answered.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let staged: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM contact_imports")
            .fetch_one(s.store.pool())
            .await
            .unwrap();
        if staged == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{staged} staged rows left"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn import_bad_csvs(db: Db) {
    let s = Server::start(db).await;
    let id = s.campaign("Bad files").await;

    // Wrong column count and bad numbers: per-row errors, the good rows go in.
    let (status, r) = s
        .import(
            id,
            "phone,name\n+12025550101,Ann\n+12025550102,Bob,extra,cells\nnot a number,Carl\n12,Dee\n+12025550103,Eve\n",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["inserted"], 2, "{r}");
    assert_eq!(r["error_count"], 3, "{r}");
    let lines: Vec<u64> = r["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, vec![3, 4, 5]);
    for e in r["errors"].as_array().unwrap() {
        assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()), "{e}");
        assert!(e["value"].is_string(), "{e}");
    }
    assert!(
        r["errors"][0]["reason"].as_str().unwrap().contains("cells"),
        "{r}"
    );

    // Header-less with too many columns.
    let (_, r) = s
        .import(id, "12025550104,A,b,c,d,e\n12025550105,Fay\n")
        .await;
    assert_eq!(
        (r["inserted"].as_u64(), r["error_count"].as_u64()),
        (Some(1), Some(1)),
        "{r}"
    );

    // A 50 MB line between two good rows: reported, skipped, never held in memory.
    let mut big = b"12025550106,Gus\n12025550107,".to_vec();
    big.extend(std::iter::repeat_n(b'x', 50 * 1024 * 1024));
    big.extend_from_slice(b"\n12025550108,Hal\n");
    let (status, r) = s.import(id, big).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["inserted"].as_u64(), r["error_count"].as_u64()),
        (Some(2), Some(1)),
        "{r}"
    );
    assert_eq!(r["errors"][0]["line"], 2);
    assert!(
        r["errors"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("longer"),
        "{r}"
    );
    assert!(r["errors"][0]["value"].as_str().unwrap().len() <= 400);
    assert_eq!(
        s.get("/healthz").await.0,
        StatusCode::OK,
        "the server still answers"
    );

    // Invalid UTF-8 on one line.
    let (_, r) = s
        .import(
            id,
            b"12025550109,Ivy\n12025550110,\xff\xfeBad\n12025550111,Jo\n".to_vec(),
        )
        .await;
    assert_eq!(
        (r["inserted"].as_u64(), r["error_count"].as_u64()),
        (Some(2), Some(1)),
        "{r}"
    );
    assert!(
        r["errors"][0]["reason"].as_str().unwrap().contains("UTF-8"),
        "{r}"
    );

    // Empty files and files without contacts: a 400 naming the file, nothing stored.
    let before = s.stored(id).await.len();
    for body in ["", "\n\n", "phone,name\n", "name,comments\nAnn,hi\n"] {
        let (status, r) = s.import(id, body).await;
        assert_error(status, &r, StatusCode::BAD_REQUEST, "invalid_csv");
        assert_eq!(r["error"]["field"], "file");
    }
    let (status, r) = s.import(id, b"\xff\xfep\x00h\x00".to_vec()).await;
    assert_error(status, &r, StatusCode::BAD_REQUEST, "invalid_csv");

    // Nothing half-imported or corrupt: exactly the good rows, each whole.
    let stored = s.stored(id).await;
    assert_eq!(stored.len(), before);
    let mut phones: Vec<&str> = stored.iter().map(|c| c.phone.as_str()).collect();
    phones.sort();
    assert_eq!(
        phones,
        vec![
            "+12025550101",
            "+12025550103",
            "+12025550105",
            "+12025550106",
            "+12025550108",
            "+12025550109",
            "+12025550111"
        ]
    );
    for c in &stored {
        assert!(c.phone.starts_with("+1") && c.phone.len() == 12, "{c:?}");
        assert!(!c.name.contains('\u{fffd}') && !c.name.is_empty(), "{c:?}");
        assert_eq!(c.status, ContactStatus::Pending);
    }
    s.stop().await;
}

async fn exports_in_three_formats(db: Db) {
    let s = Server::start(db).await;
    let id = s.campaign("Export me").await;
    let base = format!("/v1/campaigns/{id}/contacts");
    let evil = "=HYPERLINK(\"http://evil.example\",\"click\")";
    for (phone, name, comments) in [
        ("+12025550101", evil, "-2+3"),
        ("+12025550102", "Jane Smith", "@SUM(A1)"),
        ("+12025550103", "Peter Jones", "plain; with, separators"),
    ] {
        let (status, body) = s
            .post(
                &base,
                json!({"phone": phone, "name": name, "comments": comments}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // CSV with commas: parsed back, formula text escaped.
    let (status, job) = s
        .post(
            &format!("/v1/campaigns/{id}/exports"),
            json!({"format": "csv_comma", "scope": "all"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let done = s.wait_export(job["id"].as_i64().unwrap()).await;
    assert_eq!(done["row_count"], 3);
    assert_eq!(done["format_label"], ".csv (,)");
    let (disposition, kind, bytes) = s.download(done["id"].as_i64().unwrap()).await;
    assert!(disposition.contains(".csv\""), "{disposition}");
    assert!(kind.starts_with("text/csv"), "{kind}");
    let text = String::from_utf8(bytes).unwrap();
    let mut reader =
        csv::ReaderBuilder::new().from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let header = reader.headers().unwrap().clone();
    let name_col = header.iter().position(|h| h == "name").unwrap();
    let comments_col = header.iter().position(|h| h == "comments").unwrap();
    let phone_col = header.iter().position(|h| h == "phone").unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 3);
    let evil_row = rows
        .iter()
        .find(|r| &r[phone_col] == "+12025550101")
        .unwrap();
    assert_eq!(&evil_row[name_col], format!("'{evil}"));
    assert_eq!(&evil_row[comments_col], "'-2+3");
    assert!(rows.iter().any(|r| &r[comments_col] == "'@SUM(A1)"));
    assert!(rows
        .iter()
        .any(|r| &r[comments_col] == "plain; with, separators"));

    // CSV with semicolons (filtered scope).
    let (status, job) = s
        .post(
            &format!("/v1/campaigns/{id}/exports"),
            json!({"format": "csv_semicolon", "scope": "filtered", "filter": {"q": "smith"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let done = s.wait_export(job["id"].as_i64().unwrap()).await;
    assert_eq!(done["row_count"], 1);
    let (_, _, bytes) = s.download(done["id"].as_i64().unwrap()).await;
    let text = String::from_utf8(bytes).unwrap();
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(b';')
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].iter().any(|c| c == "Jane Smith"));

    // XLSX (selection): a zip with the data, the formula text as a plain string.
    let evil_id = s
        .stored(id)
        .await
        .iter()
        .find(|c| c.phone == "+12025550101")
        .unwrap()
        .id;
    let (status, job) = s
        .post(
            &format!("/v1/campaigns/{id}/exports"),
            json!({"format": "xlsx", "scope": "selection", "ids": [evil_id]}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let done = s.wait_export(job["id"].as_i64().unwrap()).await;
    assert_eq!(done["row_count"], 1);
    assert_eq!(done["format_label"], ".xlsx");
    let (disposition, kind, bytes) = s.download(done["id"].as_i64().unwrap()).await;
    assert!(disposition.contains(".xlsx\""), "{disposition}");
    assert!(kind.contains("spreadsheetml"), "{kind}");
    assert_eq!(&bytes[..2], b"PK");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut xml = String::new();
    for name in ["xl/worksheets/sheet1.xml", "xl/sharedStrings.xml"] {
        if let Ok(mut part) = zip.by_name(name) {
            part.read_to_string(&mut xml).unwrap();
        }
    }
    assert!(xml.contains("+12025550101"), "the data is in the workbook");
    assert!(xml.contains("HYPERLINK"), "the name is in the workbook");
    assert!(
        !xml.contains("<f>") && !xml.contains("<f "),
        "no cell is a formula"
    );

    // History, bad requests, a download before the job is done.
    let (_, history) = s.get(&format!("/v1/exports?campaign_id={id}")).await;
    assert_eq!(history["total"], 3);
    let formats: Vec<&str> = history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["format"].as_str().unwrap())
        .collect();
    assert_eq!(formats, vec!["xlsx", "csv_semicolon", "csv_comma"]);
    let (status, body) = s
        .post(
            &format!("/v1/campaigns/{id}/exports"),
            json!({"format": "pdf"}),
        )
        .await;
    assert_field(status, &body, "format");
    let (status, body) = s
        .post(
            &format!("/v1/campaigns/{id}/exports"),
            json!({"format": "xlsx", "scope": "selection"}),
        )
        .await;
    assert_field(status, &body, "ids");
    let (status, body) = s
        .post(
            &format!("/v1/campaigns/{id}/exports"),
            json!({"format": "xlsx", "scope": "filtered", "filter": {"status": "nope"}}),
        )
        .await;
    assert_field(status, &body, "filter.status");
    let (status, body) = s.get("/v1/exports/999999/download").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    // A job a stopped server left queued is failed at the next start, and says why.
    let stale = s
        .store
        .create_export(
            &outdial::store::NewExport {
                campaign_id: id,
                format: outdial::store::ExportFormat::CsvComma,
                scope: outdial::store::ExportScope::Campaign,
                params: json!({}),
                node: None,
            },
            s.state.now(),
        )
        .await
        .unwrap();
    let (status, body) = s.get(&format!("/v1/exports/{}/download", stale.id)).await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    assert_eq!(
        outdial::api::exports::fail_interrupted_exports(&s.state)
            .await
            .unwrap(),
        1
    );
    let (_, job) = s.get(&format!("/v1/exports/{}", stale.id)).await;
    assert_eq!(job["status"], "failed");
    assert!(
        job["error"].as_str().unwrap().contains("interrupted"),
        "{job}"
    );
    s.stop().await;
}

/// Monday 2024-01-01 10:00 UTC + `hours`.
fn monday_10_utc(hours: i64) -> i64 {
    1_704_103_200_000 + hours * 3_600_000
}

async fn reports_and_attempts(db: Db) {
    let s = Server::start(db).await;
    let id = s.campaign("Report").await;
    let (_, r) = s.import(id, GUIDE_CSV).await;
    assert_eq!(r["inserted"], 3);
    let contacts = s.stored(id).await;
    let attempt =
        |contact: usize, at: i64, outcome: &str, answered_by: Option<&str>, duration_ms: i64| {
            AttemptRecord {
                campaign_id: Some(id),
                contact_id: Some(contacts[contact].id),
                attempt_number: 1,
                call_id: format!("call-{contact}-{at}"),
                destination: contacts[contact].phone.clone(),
                started_at: at,
                duration_ms,
                outcome: outcome.into(),
                answered_by: answered_by.map(str::to_string),
                ..AttemptRecord::default()
            }
        };
    for record in [
        attempt(0, monday_10_utc(0), "answered", Some("human"), 30_000),
        attempt(1, monday_10_utc(0), "no_answer", None, 0),
        attempt(
            2,
            monday_10_utc(0),
            "answered",
            Some("machine_end_beep"),
            10_000,
        ),
        attempt(1, monday_10_utc(24), "busy", None, 0),
    ] {
        s.store.insert_attempt(&record).await.unwrap();
    }
    s.store
        .transition_contact(
            contacts[0].id,
            &[],
            &ContactTransition {
                status: ContactStatus::Answered,
                next_attempt_at: None,
                last_outcome: Some("answered".into()),
            },
            s.state.now(),
        )
        .await
        .unwrap();
    s.store
        .transition_contact(
            contacts[1].id,
            &[],
            &ContactTransition {
                status: ContactStatus::Retry,
                next_attempt_at: None,
                last_outcome: Some("busy".into()),
            },
            s.state.now(),
        )
        .await
        .unwrap();

    let (status, rep) = s.get(&format!("/v1/campaigns/{id}/report?tz=UTC")).await;
    assert_eq!(status, StatusCode::OK, "{rep}");
    assert_eq!(
        rep["calls"],
        json!({"answered": 2, "not_answered": 2, "total": 4})
    );
    assert_eq!(rep["contacts"]["total"], 3);
    assert_eq!(rep["contacts"]["by_status"]["answered"], 1);
    assert_eq!(rep["contacts"]["by_status"]["retry"], 1);
    assert_eq!(rep["contacts"]["by_status"]["pending"], 1);
    assert_eq!(rep["progress"]["finished"], 1);
    assert_eq!(rep["answer_rate"], 0.5);
    assert_eq!(rep["human_answered"], 1);
    assert_eq!(rep["human_answer_rate"], 0.25);
    assert_eq!(rep["average_duration_secs"], 20.0);
    let cells = rep["heat_map"]["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 7);
    assert!(cells.iter().all(|d| d.as_array().unwrap().len() == 24));
    assert_eq!(rep["heat_map"]["days"][0], "monday");
    assert_eq!(
        cells[0][10],
        json!({"attempts": 3, "answered": 2, "rate": 2.0 / 3.0})
    );
    assert_eq!(cells[1][10]["attempts"], 1, "Tuesday 10:00");
    // The same attempts in New York: Monday 05:00.
    let (_, rep) = s
        .get(&format!("/v1/campaigns/{id}/report?tz=America/New_York"))
        .await;
    assert_eq!(rep["heat_map"]["timezone"], "America/New_York");
    assert_eq!(rep["heat_map"]["cells"][0][5]["attempts"], 3);
    // Default: the campaign's zone.
    let (_, rep) = s.get(&format!("/v1/campaigns/{id}/report")).await;
    assert_eq!(rep["heat_map"]["timezone"], "UTC");
    let (status, body) = s
        .get(&format!("/v1/campaigns/{id}/report?tz=Mars/Base"))
        .await;
    assert_field(status, &body, "tz");

    // The campaign list shows the guide's Calls column.
    let (_, list) = s.get("/v1/campaigns").await;
    assert_eq!(list["items"][0]["calls"]["answered"], 2);

    // Attempts with filters.
    let total = |q: &'static str| {
        let s = &s;
        async move {
            let (status, body) = s.get(&format!("/v1/campaigns/{id}/attempts?{q}")).await;
            assert_eq!(status, StatusCode::OK, "{q}: {body}");
            body["total"].as_i64().unwrap()
        }
    };
    assert_eq!(total("").await, 4);
    assert_eq!(total("outcome=answered").await, 2);
    assert_eq!(total("outcome=busy,no_answer").await, 2);
    assert_eq!(total("status=retry").await, 2);
    assert_eq!(total("q=jane").await, 2);
    assert_eq!(total("q=peter&outcome=answered").await, 1);
    assert_eq!(total("max_retries=0").await, 4);
    assert_eq!(total("min_retries=1").await, 0);
    let (_, page) = s.get(&format!("/v1/campaigns/{id}/attempts?limit=1")).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["outcome"], "busy", "newest first");
    let (status, body) = s
        .get(&format!("/v1/campaigns/{id}/attempts?limit=5000"))
        .await;
    assert_field(status, &body, "limit");
    s.stop().await;
}

async fn dnc_list(db: Db) {
    let s = Server::start(db).await;
    let (status, e) = s
        .post(
            "/v1/dnc",
            json!({"phone": "(202) 555-0199", "reason": "asked"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{e}");
    assert_eq!(e["phone"], "+12025550199");
    let (status, body) = s.post("/v1/dnc", json!({"phone": "+1 202 555 0199"})).await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = s.post("/v1/dnc", json!({"phone": "call me"})).await;
    assert_field(status, &body, "phone");
    let (status, _) = s
        .post(
            "/v1/dnc",
            json!({"phone": "020 7946 0958", "default_country": "GB"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, list) = s.get("/v1/dnc").await;
    assert_eq!(list["total"], 2);
    let (_, list) = s.get("/v1/dnc?q=asked").await;
    assert_eq!(list["total"], 1);
    let (status, got) = s.get("/v1/dnc/%2B12025550199").await;
    assert_eq!(
        (status, got["reason"].as_str()),
        (StatusCode::OK, Some("asked"))
    );
    let (status, _) = s.delete("/v1/dnc/2025550199").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = s.delete("/v1/dnc/2025550199").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let mine = Some(s.account_id);
    assert!(!s.store.dnc_contains(mine, "+12025550199").await.unwrap());
    assert!(s.store.dnc_contains(mine, "+442079460958").await.unwrap());
    // The account's list, not the global one.
    assert!(!s.store.dnc_contains(None, "+442079460958").await.unwrap());
    s.stop().await;
}

async fn schedules(db: Db) {
    let s = Server::start(db).await;
    let (status, h) = s.post("/v1/schedules", office_hours()).await;
    assert_eq!(status, StatusCode::CREATED, "{h}");
    let hid = h["id"].as_i64().unwrap();
    assert_eq!(h["week"][0], json!([{"start": "09:00", "end": "17:00"}]));
    assert_eq!(h["week"][6], json!([]));
    let mut bad = office_hours();
    bad["timezone"] = json!("Mars/Base");
    let (status, body) = s.post("/v1/schedules", bad).await;
    assert_field(status, &body, "timezone");
    let mut bad = office_hours();
    bad["week"].as_array_mut().unwrap().pop();
    let (status, body) = s.post("/v1/schedules", bad).await;
    assert_field(status, &body, "week");
    let mut bad = office_hours();
    bad["week"][0] = json!([{"start": "17:00", "end": "09:00"}]);
    let (status, body) = s.post("/v1/schedules", bad).await;
    assert_field(status, &body, "week");
    let mut bad = office_hours();
    bad["closed_dates"] = json!(["Christmas"]);
    let (status, body) = s.post("/v1/schedules", bad).await;
    assert_field(status, &body, "closed_dates");

    let (_, list) = s.get("/v1/schedules").await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    let mut changed = office_hours();
    changed["name"] = json!("Late office");
    changed["week"][4] = json!([{"start": "12:00", "end": "24:00"}]);
    let (status, h) = s
        .call(Method::PUT, &format!("/v1/schedules/{hid}"), Some(changed))
        .await;
    assert_eq!(status, StatusCode::OK, "{h}");
    assert_eq!(h["name"], "Late office");
    let (_, got) = s.get(&format!("/v1/schedules/{hid}")).await;
    assert_eq!(got["week"][4][0]["end"], "24:00");

    // In use by a campaign: 409; then free.
    let (status, c) = s
        .post(
            "/v1/campaigns",
            json!({"name": "Hours", "business_hours_id": hid}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let (status, body) = s.delete(&format!("/v1/schedules/{hid}")).await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let cid = c["id"].as_i64().unwrap();
    s.patch(
        &format!("/v1/campaigns/{cid}"),
        json!({"business_hours_id": null}),
    )
    .await;
    let (status, _) = s.delete(&format!("/v1/schedules/{hid}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = s.get(&format!("/v1/schedules/{hid}")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    s.stop().await;
}

async fn request_errors(db: Db) {
    let s = Server::start(db).await;
    // 415: not JSON.
    let resp = s
        .req(Method::POST, "/v1/campaigns")
        .header("content-type", "text/plain")
        .body("{\"name\":\"x\"}")
        .send()
        .await
        .unwrap();
    let (status, body) = read(resp).await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    // 413: over 1 MiB of JSON.
    // The server answers as soon as the limit is passed and may close the connection while
    // the client still writes (EPIPE): a little over the limit, and a retry for that race.
    let huge = json!({"name": "x", "description": "d".repeat(1024 * 1024 + 1024)});
    let mut answer = None;
    for _ in 0..5 {
        if let Ok(resp) = s
            .req(Method::POST, "/v1/campaigns")
            .json(&huge)
            .send()
            .await
        {
            answer = Some(read(resp).await);
            break;
        }
    }
    let (status, body) = answer.expect("an answer to the oversized body");
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    // 400: broken JSON, empty body, wrong type.
    let resp = s
        .req(Method::POST, "/v1/campaigns")
        .header("content-type", "application/json")
        .body("{\"name\":")
        .send()
        .await
        .unwrap();
    let (status, body) = read(resp).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid");
    let resp = s
        .req(Method::POST, "/v1/campaigns")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let (status, body) = read(resp).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid");
    let (status, body) = s.post("/v1/campaigns", json!("a campaign")).await;
    assert_error(status, &body, StatusCode::BAD_REQUEST, "invalid");
    // Paging and path parameters.
    let (status, body) = s.get("/v1/campaigns?limit=0").await;
    assert_field(status, &body, "limit");
    let (status, body) = s.get("/v1/campaigns?offset=-3").await;
    assert_field(status, &body, "offset");
    let (status, body) = s.get("/v1/campaigns?limit=ten").await;
    assert_field(status, &body, "limit");
    let (status, body) = s.get("/v1/campaigns/12/contacts/x").await;
    assert_field(status, &body, "contact_id");
    // 405 in the same shape.
    let (status, body) = s.call(Method::PUT, "/v1/campaigns", Some(json!({}))).await;
    assert_error(
        status,
        &body,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    s.stop().await;
}

async fn sip_agents_pools_and_states(db: Db) {
    let s = Server::start(db).await;
    // Create: defaults, normalised state word, validation naming the field.
    let (status, alice) = s
        .post(
            "/v1/agents/sip",
            json!({"name": "alice", "target": "sip:alice@127.0.0.1:5070", "state": "ready", "wrap_up_secs": 5}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{alice}");
    assert_eq!(alice["state"], "available");
    assert_eq!(alice["free"], true);
    assert_eq!(alice["wrap_up_secs"], 5);
    let alice_id = alice["id"].as_i64().unwrap();
    let (status, bob) = s
        .post(
            "/v1/agents/sip",
            json!({"name": "bob", "target": "+12025550150", "profile": "carrier-a"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bob}");
    assert_eq!(bob["state"], "offline");
    let bob_id = bob["id"].as_i64().unwrap();
    for (body, field) in [
        (json!({"target": "sip:x@y"}), "name"),
        (json!({"name": "x"}), "target"),
        (json!({"name": "x", "target": "+12025550151"}), "profile"),
        (json!({"name": "x", "target": "somewhere"}), "target"),
        (
            json!({"name": "x", "target": "sip:x@y", "wrap_up_secs": -3}),
            "wrap_up_secs",
        ),
        (
            json!({"name": "x", "target": "sip:x@y", "state": "asleep"}),
            "state",
        ),
    ] {
        let (status, err) = s.post("/v1/agents/sip", body.clone()).await;
        assert_field(status, &err, field);
    }
    let (status, err) = s
        .post(
            "/v1/agents/sip",
            json!({"name": "alice", "target": "sip:a@b"}),
        )
        .await;
    assert_error(status, &err, StatusCode::CONFLICT, "conflict");

    // State through POST …/state and through PATCH.
    let (status, paused) = s
        .post(
            &format!("/v1/agents/sip/{alice_id}/state"),
            json!({"state": "paused"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(
        (paused["state"].as_str(), paused["free"].as_bool()),
        (Some("paused"), Some(false))
    );
    let (status, err) = s
        .post(
            &format!("/v1/agents/sip/{alice_id}/state"),
            json!({"state": "sleeping"}),
        )
        .await;
    assert_field(status, &err, "state");
    let (status, patched) = s
        .patch(
            &format!("/v1/agents/sip/{bob_id}"),
            json!({"state": "available", "wrap_up_secs": 10}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        (patched["state"].as_str(), patched["wrap_up_secs"].as_i64()),
        (Some("available"), Some(10))
    );
    assert_eq!(patched["target"], "+12025550150");
    let (status, err) = s
        .patch(&format!("/v1/agents/sip/{bob_id}"), json!({"profile": ""}))
        .await;
    assert_field(status, &err, "profile");
    let (_, list) = s.get("/v1/agents/sip?state=available").await;
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0]["name"], "bob");
    let (_, all) = s.get("/v1/agents/sip").await;
    assert_eq!(all["total"], 2);

    // Pools: ordered, counts of what the agents can do.
    let (status, pool) = s
        .post(
            "/v1/agents/pools",
            json!({"name": "sales", "agent_ids": [bob_id, alice_id]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{pool}");
    assert_eq!(pool["agent_ids"], json!([bob_id, alice_id]));
    assert_eq!(
        pool["agents"],
        json!({"free": 1, "wrap_up": 0, "busy": 0, "away": 1})
    );
    let pool_id = pool["id"].as_i64().unwrap();
    let (status, err) = s
        .post(
            "/v1/agents/pools",
            json!({"name": "ghosts", "agent_ids": [424242]}),
        )
        .await;
    assert_field(status, &err, "agent_ids");
    let (status, err) = s.post("/v1/agents/pools", json!({"agent_ids": []})).await;
    assert_field(status, &err, "name");
    let (status, err) = s.post("/v1/agents/pools", json!({"name": "sales"})).await;
    assert_error(status, &err, StatusCode::CONFLICT, "conflict");
    let (status, renamed) = s
        .patch(
            &format!("/v1/agents/pools/{pool_id}"),
            json!({"name": "closers", "agent_ids": [alice_id]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(
        (renamed["name"].as_str(), renamed["agent_ids"].clone()),
        (Some("closers"), json!([alice_id]))
    );
    let (_, pools) = s.get("/v1/agents/pools").await;
    assert_eq!(pools.as_array().unwrap().len(), 1);

    // Another account sees none of it.
    let now = s.state.now();
    let other = s.store.create_account("other", "Other", now).await.unwrap();
    let other_key = s
        .store
        .create_api_key(other.id, "t", now)
        .await
        .unwrap()
        .secret;
    let as_other = |path: &str| s.client.get(s.url(path)).bearer_auth(&other_key).send();
    let (status, _) = read(
        as_other(&format!("/v1/agents/sip/{alice_id}"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, theirs) = read(as_other("/v1/agents/sip").await.unwrap()).await;
    assert_eq!(theirs["total"], 0);
    let (status, _) = read(
        as_other(&format!("/v1/agents/pools/{pool_id}"))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Delete: the agent leaves its pool.
    let (status, _) = s.delete(&format!("/v1/agents/sip/{alice_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, pool) = s.get(&format!("/v1/agents/pools/{pool_id}")).await;
    assert_eq!(pool["agent_ids"], json!([]));
    let (status, _) = s.delete(&format!("/v1/agents/pools/{pool_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = s.get(&format!("/v1/agents/pools/{pool_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}

async fn predictive_campaigns_and_the_abandon_report(db: Db) {
    let s = Server::start(db).await;
    // Defaults.
    let (status, plain) = s.post("/v1/campaigns", json!({"name": "plain"})).await;
    assert_eq!(status, StatusCode::CREATED, "{plain}");
    assert_eq!(plain["pacing"], "progressive");
    assert_eq!(plain["abandon_cap_pct"], 3.0);
    assert_eq!(plain["agent_ring_timeout_secs"], 15);
    assert_eq!(plain["queue_timeout_secs"], 2);
    assert_eq!(plain["abandon_message"], Value::Null);
    assert_eq!(plain["transfer"], "bridge");
    // REFER hands the person to a number or a URI, never to a pool.
    let (status, err) = s
        .post(
            "/v1/campaigns",
            json!({"name": "refer to a pool", "transfer": "refer", "connect_to": "pool:sales"}),
        )
        .await;
    assert_field(status, &err, "transfer");
    let (status, err) = s
        .post(
            "/v1/campaigns",
            json!({"name": "refer", "transfer": "sideways"}),
        )
        .await;
    assert_field(status, &err, "transfer");
    let (status, refer) = s
        .post(
            "/v1/campaigns",
            json!({"name": "refer", "transfer": "refer", "connect_to": "sip:desk@pbx.example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{refer}");
    assert_eq!(refer["transfer"], "refer");
    // Predictive needs a pool of the account and an abandon message; the cap is 0–3 %.
    let predictive = json!({
        "name": "predictive",
        "pacing": "predictive",
        "connect_to": "sales",
        "abandon_message": "sorry.wav",
        "abandon_cap_pct": 2.5,
        "agent_ring_timeout": "20s",
        "queue_timeout_secs": 3,
    });
    let (status, err) = s.post("/v1/campaigns", predictive.clone()).await;
    assert_field(status, &err, "connect_to");
    let (_, agent) = s
        .post(
            "/v1/agents/sip",
            json!({"name": "a1", "target": "sip:a1@127.0.0.1", "state": "available"}),
        )
        .await;
    let (status, _) = s
        .post(
            "/v1/agents/pools",
            json!({"name": "sales", "agent_ids": [agent["id"]]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for (change, field) in [
        (json!({"abandon_message": null}), "abandon_message"),
        (json!({"abandon_message": "sorry.mp3"}), "abandon_message"),
        (
            json!({"abandon_message": "../etc/x.wav"}),
            "abandon_message",
        ),
        (json!({"abandon_cap_pct": 5.0}), "abandon_cap_pct"),
        (json!({"agent_ring_timeout": 0}), "agent_ring_timeout_secs"),
        (json!({"queue_timeout_secs": 0}), "queue_timeout_secs"),
        (json!({"pacing": "psychic"}), "pacing"),
        (json!({"connect_to": "sip:desk@pbx"}), "connect_to"),
    ] {
        let mut body = predictive.clone();
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, err) = s.post("/v1/campaigns", body).await;
        assert_field(status, &err, field);
    }
    let (status, created) = s.post("/v1/campaigns", predictive.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["pacing"], "predictive");
    assert_eq!(created["abandon_cap_pct"], 2.5);
    assert_eq!(created["abandon_message"], "sorry.wav");
    assert_eq!(created["agent_ring_timeout_secs"], 20);
    assert_eq!(created["queue_timeout_secs"], 3);
    let id = created["id"].as_i64().unwrap();
    let (status, patched) = s
        .patch(
            &format!("/v1/campaigns/{id}"),
            json!({"pacing": "progressive", "abandon_cap_pct": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        (
            patched["pacing"].as_str(),
            patched["abandon_cap_pct"].as_f64()
        ),
        (Some("progressive"), Some(1.0))
    );

    // The report: abandon rate (people only), occupancy, average queue wait; attempts
    // carry the agent leg.
    let now = s.state.now();
    let record =
        |answered_by: Option<&str>, abandoned: bool, talk: Option<i64>, wait: i64| AttemptRecord {
            campaign_id: Some(id),
            started_at: now - 60_000,
            outcome: "answered".into(),
            answered_by: answered_by.map(str::to_string),
            ended_by: talk.map(|_| EndedBy::Callee),
            bridge: BridgeRecord {
                agent_id: talk.map(|_| agent["id"].as_i64().unwrap()),
                agent_name: talk.map(|_| "a1".to_string()),
                agent_call_id: talk.map(|_| "agent-leg@outdial".to_string()),
                talk_ms: talk,
                agent_idle_ms: talk.map(|t| t / 3),
                queue_wait_ms: Some(wait),
                abandoned,
                ..BridgeRecord::default()
            },
            ..AttemptRecord::default()
        };
    for r in [
        record(Some("human"), false, Some(60_000), 400),
        record(Some("human"), false, Some(30_000), 800),
        record(Some("human"), true, None, 2_000),
        record(None, false, Some(30_000), 600),
        record(Some("machine_end_beep"), true, None, 2_000),
    ] {
        s.store.insert_attempt(&r).await.unwrap();
    }
    let (status, report) = s.get(&format!("/v1/campaigns/{id}/report")).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let ab = &report["abandons"];
    assert_eq!(
        (ab["people_answered"].as_i64(), ab["abandoned"].as_i64()),
        (Some(4), Some(1))
    );
    assert_eq!(ab["rate_pct"], 25.0);
    assert_eq!(
        (
            ab["people_answered_30d"].as_i64(),
            ab["abandoned_30d"].as_i64()
        ),
        (Some(4), Some(1))
    );
    assert_eq!(ab["cap_pct"], 1.0);
    assert_eq!(report["bridged"], 3);
    assert_eq!(report["agent_talk_secs"], 120.0);
    assert!(
        (report["agent_occupancy"].as_f64().unwrap() - 0.75).abs() < 1e-9,
        "{report}"
    );
    assert!((report["average_queue_wait_ms"].as_f64().unwrap() - 1_160.0).abs() < 1e-9);
    let (_, attempts) = s
        .get(&format!("/v1/campaigns/{id}/attempts?limit=10"))
        .await;
    let items = attempts["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert!(items
        .iter()
        .any(|a| a["agent_call_id"] == "agent-leg@outdial"
            && a["ended_by"] == "callee"
            && a["agent_name"] == "a1"
            && a["talk_ms"] == 60_000));
    assert_eq!(items.iter().filter(|a| a["abandoned"] == true).count(), 2);
    // One word for who ended the call: no leg-level `hangup` beside `ended_by`.
    assert!(
        items.iter().all(|a| a.get("hangup").is_none()),
        "{attempts}"
    );
    s.stop().await;
}

// ---------------------------------------------------------------------------------------
// The OpenAPI document, validated by an independent validator.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_valid() {
    let s = Server::start(Db::Sqlite).await;
    let resp = s.req(Method::GET, "/v1/openapi.json").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/campaigns/{id}/contacts/import",
        "/v1/campaigns/{id}/exports",
        "/v1/exports/{id}/download",
        "/v1/dnc/{phone}",
        "/v1/schedules/{id}",
        "/v1/media",
        "/v1/media/{name}",
        "/v1/attempts/{id}/recording",
        "/v1/agents/sip/{id}/state",
        "/v1/agents/pools/{id}",
        "/v1/numbers",
        "/v1/numbers/{id}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }
    let file = s._dir.path().join("openapi.json");
    std::fs::write(&file, &text).unwrap();
    let validator = std::env::var("OPENAPI_SPEC_VALIDATOR").unwrap_or_else(|_| {
        format!(
            "{}/.venv/bin/openapi-spec-validator",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    let out = std::process::Command::new(&validator)
        .arg(&file)
        .output()
        .unwrap_or_else(|e| {
            panic!("{validator}: {e} (run `make setup` to install openapi-spec-validator)")
        });
    assert!(
        out.status.success(),
        "openapi-spec-validator rejects the document:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    s.stop().await;
}

// ---------------------------------------------------------------------------------------
// Message plans, media files, recordings.

/// A short 8 kHz mono 16-bit WAV (a 400 Hz tone).
fn wav_bytes(ms: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for i in 0..(8 * ms) {
        let x = (i as f64 * 2.0 * std::f64::consts::PI * 400.0 / 8000.0).sin();
        w.write_sample((x * 8000.0) as i16).unwrap();
    }
    w.finalize().unwrap();
    out.into_inner()
}

impl Server {
    fn media_dir(&self) -> std::path::PathBuf {
        self._dir.path().join("media")
    }

    /// POST /v1/media with a `file` part named `file_name` (and a `name` part if given).
    async fn upload(
        &self,
        key: &str,
        file_name: &str,
        name: Option<&str>,
        bytes: Vec<u8>,
    ) -> (StatusCode, Value) {
        let part = reqwest::multipart::Part::bytes(bytes)
            .file_name(file_name.to_string())
            .mime_str("audio/wav")
            .unwrap();
        let mut form = reqwest::multipart::Form::new().part("file", part);
        if let Some(n) = name {
            form = form.text("name", n.to_string());
        }
        let resp = self
            .client
            .post(self.url("/v1/media"))
            .bearer_auth(key)
            .multipart(form)
            .send()
            .await
            .unwrap();
        read(resp).await
    }

    /// A second account with its own key.
    async fn other_account(&self, login: &str) -> (i64, String) {
        let now = Clock::system().now();
        let account = self.store.create_account(login, login, now).await.unwrap();
        let key = self
            .store
            .create_api_key(account.id, "tests", now)
            .await
            .unwrap()
            .secret;
        (account.id, key)
    }
}

fn assert_steps_error(status: StatusCode, body: &Value, expected: &[&str]) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_steps", "{body}");
    let errors: Vec<&str> = body["error"]["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("an errors list: {body}"))
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(errors.len(), expected.len(), "{body}");
    for (got, want) in errors.iter().zip(expected) {
        assert!(got.starts_with(want), "{got:?} should start with {want:?}");
    }
    let first_path = expected[0].split(':').next().unwrap();
    assert_eq!(body["error"]["field"], first_path, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with(expected[0]));
}

async fn message_plans_and_media_files(db: Db) {
    let s = Server::start(db).await;
    // An upload lands in the account's folder; a shared file is put there by hand.
    let (status, body) = s.upload(&s.key, "welcome.wav", None, wav_bytes(300)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], "welcome.wav");
    assert_eq!(body["shared"], false);
    assert!(s
        .media_dir()
        .join(s.account_id.to_string())
        .join("welcome.wav")
        .is_file());
    std::fs::write(s.media_dir().join("menu.wav"), wav_bytes(200)).unwrap();
    let (status, list) = s.get("/v1/media").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<(&str, bool)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["shared"].as_bool().unwrap()))
        .collect();
    assert_eq!(names, [("welcome.wav", false), ("menu.wav", true)]);

    // Uploads that are not WAV, or with a path for a name, are refused; nothing is stored.
    let (status, body) = s
        .upload(&s.key, "notes.wav", None, b"just some text".to_vec())
        .await;
    assert_field(status, &body, "file");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"notes.wav\" is not a usable WAV file"),
        "{body}"
    );
    let (status, body) = s
        .upload(&s.key, "x.wav", Some("../../escape.wav"), wav_bytes(100))
        .await;
    assert_field(status, &body, "file");
    let (status, body) = s.upload(&s.key, "song.mp3", None, wav_bytes(100)).await;
    assert_field(status, &body, "file");
    let resp = s
        .req(Method::POST, "/v1/media")
        .header("content-type", "audio/wav")
        .body(wav_bytes(100))
        .send()
        .await
        .unwrap();
    let (status, body) = read(resp).await;
    assert_error(
        status,
        &body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );
    let (_, list) = s.get("/v1/media").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");

    // A plan naming the uploaded and the shared file is stored and returned as sent.
    let plan = json!([
        {"type": "play", "file": "welcome.wav"},
        {"type": "collect", "prompt": "menu.wav", "max_digits": 1, "timeout_secs": 5.0,
         "on": {"1": "connect", "9": "dnc", "2": "next", "*": "hangup"}, "otherwise": "next"},
        {"type": "record", "max_secs": 30.0, "silence_end_secs": 3.0, "beep": true},
        {"type": "hangup"}
    ]);
    let (status, created) = s
        .post(
            "/v1/campaigns",
            json!({"name": "Survey", "connect_to": "sip:agent@127.0.0.1", "steps": plan,
                   "play_message": "welcome.wav"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["steps"], plan);
    let id = created["id"].as_i64().unwrap();
    let (_, got) = s.get(&format!("/v1/campaigns/{id}")).await;
    assert_eq!(got["steps"], plan);
    let stored = s.store.get_campaign(id).await.unwrap();
    assert_eq!(stored.settings.plan().len(), 4);

    // Every step problem at once, each naming step and field: 422.
    let (status, body) = s
        .post(
            "/v1/campaigns",
            json!({"name": "Bad", "steps": [
                {"type": "play", "file": "/etc/passwd"},
                {"type": "collect", "max_digits": 0, "on": {"1": "connect"}},
                {"type": "record", "max_secs": 100000}
            ]}),
        )
        .await;
    assert_steps_error(
        status,
        &body,
        &[
            "steps[0].file: \"/etc/passwd\" is an absolute path",
            "steps[1].max_digits: must be 1-32, got 0",
            "steps[2].max_secs: must be 1-600 seconds, got 100000",
            "steps[1].on.1: connect needs the campaign's connect_to",
        ],
    );
    // A file that is not in the media directory: 422 naming the step.
    let (status, body) = s
        .post(
            "/v1/campaigns",
            json!({"name": "Missing", "steps": [{"type": "play", "file": "missing.wav"}]}),
        )
        .await;
    assert_steps_error(
        status,
        &body,
        &["steps[0].file: \"missing.wav\" is not in the media directory"],
    );
    // Steps that do not read as steps: 422 too, naming the step and field.
    let (status, body) = s
        .post(
            "/v1/campaigns",
            json!({"name": "Dance", "steps": [
                {"type": "dance"},
                {"type": "collect", "max_digits": "two"},
                {"type": "play", "file": "welcome.wav", "loop": 2}
            ]}),
        )
        .await;
    assert_steps_error(
        status,
        &body,
        &[
            "steps[0].type: \"dance\" is not a step type",
            "steps[1].max_digits: invalid type: string \"two\"",
            "steps[2].loop: unknown field `loop`",
        ],
    );

    // The campaign's other WAV fields take a media name only.
    for (value, reason) in [
        ("/etc/passwd", "is an absolute path"),
        ("../welcome.wav", "leaves the media directory"),
        ("nothere.wav", "is not in the media directory"),
    ] {
        let (status, body) = s
            .post("/v1/campaigns", json!({"name": "x", "play_message": value}))
            .await;
        assert_field(status, &body, "play_message");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(reason),
            "{body}"
        );
    }
    // A link out of the media directory is refused even though the name looks right.
    let secret = s._dir.path().join("secret.wav");
    std::fs::write(&secret, wav_bytes(100)).unwrap();
    std::os::unix::fs::symlink(&secret, s.media_dir().join("link.wav")).unwrap();
    let (status, body) = s
        .post(
            "/v1/campaigns",
            json!({"name": "x", "machine_action": "leave_message",
                   "voicemail_message": "link.wav"}),
        )
        .await;
    assert_field(status, &body, "voicemail_message");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("leads out of the media directory"),
        "{body}"
    );
    // A file with a .wav name that is not a WAV.
    std::fs::write(s.media_dir().join("fake.wav"), "not audio").unwrap();
    let (status, body) = s
        .post(
            "/v1/campaigns",
            json!({"name": "x", "play_message": "fake.wav"}),
        )
        .await;
    assert_field(status, &body, "play_message");

    // PATCH: a bad plan changes nothing; null goes back to the default plan.
    let (status, body) = s
        .patch(
            &format!("/v1/campaigns/{id}"),
            json!({"steps": [{"type": "collect", "finish_on": "##"}]}),
        )
        .await;
    assert_steps_error(
        status,
        &body,
        &["steps[0].finish_on: \"##\" is not one DTMF key"],
    );
    let (_, got) = s.get(&format!("/v1/campaigns/{id}")).await;
    assert_eq!(got["steps"], plan);
    let (status, got) = s
        .patch(&format!("/v1/campaigns/{id}"), json!({"steps": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["steps"], Value::Null);
    let stored = s.store.get_campaign(id).await.unwrap();
    assert_eq!(stored.settings.steps, None);
    assert_eq!(
        stored.settings.plan(),
        outdial::flow::steps::default_steps(Some("welcome.wav"))
    );
    // Taking connect_to away from a plan that connects is refused.
    let (status, _) = s
        .patch(
            &format!("/v1/campaigns/{id}"),
            json!({"steps": [{"type": "connect"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s
        .patch(&format!("/v1/campaigns/{id}"), json!({"connect_to": ""}))
        .await;
    assert_steps_error(
        status,
        &body,
        &["steps[0]: a connect step needs the campaign's connect_to"],
    );
    s.stop().await;
}

async fn media_files_belong_to_their_account(db: Db) {
    let s = Server::start(db).await;
    let (_, bob) = s.other_account("bob").await;
    let (status, _) = s.upload(&s.key, "mine.wav", None, wav_bytes(100)).await;
    assert_eq!(status, StatusCode::CREATED);
    // Bob does not see Alice's upload, and cannot use or delete it.
    let resp = s
        .client
        .get(s.url("/v1/media"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    let (status, list) = read(resp).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"], json!([]));
    let resp = s
        .client
        .post(s.url("/v1/campaigns"))
        .bearer_auth(&bob)
        .json(&json!({"name": "bob's", "play_message": "mine.wav"}))
        .send()
        .await
        .unwrap();
    let (status, body) = read(resp).await;
    assert_field(status, &body, "play_message");
    let resp = s
        .client
        .delete(s.url("/v1/media/mine.wav"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    let (status, body) = read(resp).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    // Bob's own file of the same name is his; Alice's stays hers.
    let (status, _) = s.upload(&bob, "mine.wav", None, wav_bytes(500)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, list) = s.get("/v1/media").await;
    assert_eq!(list["items"][0]["size"], json!(wav_bytes(100).len()));
    // Unauthenticated: 401 before anything else.
    let resp = s.client.get(s.url("/v1/media")).send().await.unwrap();
    let (status, body) = read(resp).await;
    assert_error(status, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    // Alice deletes hers; a second delete is a 404; a bad name a 400.
    let (status, _) = s.delete("/v1/media/mine.wav").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = s.delete("/v1/media/mine.wav").await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = s.delete("/v1/media/notes.txt").await;
    assert_field(status, &body, "name");
    let (_, list) = s.get("/v1/media").await;
    assert_eq!(list["items"], json!([]));
    // Well over the 1 MiB JSON limit but under the upload limit: stored.
    let long = wav_bytes(200_000);
    assert!(long.len() > 3 * 1024 * 1024);
    let (status, body) = s.upload(&s.key, "long.wav", None, long.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["size"], json!(long.len()));
    // Over the size limit: 413.
    let big = vec![0u8; outdial::config::media::MAX_UPLOAD_BYTES + 1];
    let mut answer = None;
    for _ in 0..5 {
        let part = reqwest::multipart::Part::bytes(big.clone()).file_name("big.wav");
        let form = reqwest::multipart::Form::new().part("file", part);
        if let Ok(resp) = s
            .req(Method::POST, "/v1/media")
            .multipart(form)
            .send()
            .await
        {
            answer = Some(read(resp).await);
            break;
        }
    }
    let (status, body) = answer.expect("an answer to the oversized upload");
    assert_error(
        status,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    s.stop().await;
}

async fn attempt_recordings_stream_to_their_account(db: Db) {
    let s = Server::start(db).await;
    let id = s.campaign("Recorded").await;
    let (_, r) = s.import(id, GUIDE_CSV).await;
    assert_eq!(r["inserted"], 3);
    let contacts = s.stored(id).await;
    let reply = s._dir.path().join("reply.wav");
    let audio = wav_bytes(1500);
    std::fs::write(&reply, &audio).unwrap();
    let record = |contact: usize| AttemptRecord {
        campaign_id: Some(id),
        contact_id: Some(contacts[contact].id),
        attempt_number: 1,
        started_at: monday_10_utc(0),
        outcome: "answered".into(),
        ..AttemptRecord::default()
    };
    let with = s.store.insert_attempt(&record(0)).await.unwrap();
    let without = s.store.insert_attempt(&record(1)).await.unwrap();
    s.store
        .set_attempt_plan_result(with, "29", Some(reply.to_str().unwrap()))
        .await
        .unwrap();

    // The WAV streams back byte for byte.
    let resp = s
        .req(Method::GET, &format!("/v1/attempts/{with}/recording"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "audio/wav");
    let got = resp.bytes().await.unwrap();
    assert_eq!(got.as_ref(), audio.as_slice());
    let parsed = hound::WavReader::new(std::io::Cursor::new(got.to_vec())).unwrap();
    assert_eq!(parsed.duration(), 8 * 1500);

    // The attempt list shows the digits and where to fetch the recording, not the path.
    let (_, list) = s.get(&format!("/v1/campaigns/{id}/attempts")).await;
    let items = list["items"].as_array().unwrap();
    let item = |aid: i64| items.iter().find(|a| a["id"] == aid).unwrap();
    assert_eq!(item(with)["digits"], "29");
    assert_eq!(
        item(with)["recording_url"],
        format!("/v1/attempts/{with}/recording")
    );
    assert_eq!(item(without)["recording_url"], Value::Null);
    assert!(!list.to_string().contains("reply.wav"), "{list}");

    // None recorded, no such attempt, a file gone: 404.
    for path in [
        format!("/v1/attempts/{without}/recording"),
        "/v1/attempts/424242/recording".to_string(),
    ] {
        let (status, body) = s.get(&path).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    // Another account's key: as if the attempt did not exist. No key: 401.
    let (_, bob) = s.other_account("bob").await;
    let resp = s
        .client
        .get(s.url(&format!("/v1/attempts/{with}/recording")))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    let (status, body) = read(resp).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let resp = s
        .client
        .get(s.url(&format!("/v1/attempts/{with}/recording")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    std::fs::remove_file(&reply).unwrap();
    let (status, body) = s.get(&format!("/v1/attempts/{with}/recording")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    s.stop().await;
}

// ---------------------------------------------------------------------------------------
// AI agents, goals and analyses.

impl Server {
    /// A request with another account's key.
    async fn call_as(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path)).bearer_auth(key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        read(req.send().await.unwrap()).await
    }
}

fn assert_field_422(status: StatusCode, body: &Value, field: &str) {
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], field, "{body}");
}

async fn ai_agents_crud_and_campaigns_naming_them(db: Db) {
    let s = Server::start(db).await;
    let (status, pool) = s.post("/v1/agents/pools", json!({"name": "closers"})).await;
    assert_eq!(status, StatusCode::CREATED, "{pool}");

    // Create: an L16 agent gets 8000 Hz; the header's value is never asked for or shown,
    // only whether the server has the variable.
    let (status, l16) = s
        .post(
            "/v1/agents/ai",
            json!({
                "name": "Listen bot",
                "kind": "l16_ws",
                "url": "ws://127.0.0.1:9001/listen",
                "custom_parameters": {"tier": "gold", "lang": "en"},
                "auth_header_name": "Authorization",
                "auth_header_env": "OUTDIAL_TEST_UNSET_TOKEN_VARIABLE",
                "on_agent_close": "connect",
                "handoff_target": "closers"
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{l16}");
    assert_eq!(l16["kind"], "l16_ws");
    assert_eq!(l16["sample_rate"], 8000);
    assert_eq!(
        l16["custom_parameters"],
        json!({"tier": "gold", "lang": "en"})
    );
    assert_eq!(l16["auth_header_env"], "OUTDIAL_TEST_UNSET_TOKEN_VARIABLE");
    assert_eq!(l16["auth_header_env_set"], false);
    assert_eq!(l16["on_agent_close"], "connect");
    assert_eq!(l16["handoff_target"], "closers");
    let l16_id = l16["id"].as_i64().unwrap();
    let (status, twilio) = s
        .post(
            "/v1/agents/ai",
            json!({
                "name": "Pipecat",
                "url": "wss://agent.example/media",
                "auth_header_name": "X-Api-Key",
                "auth_header_env": "PATH"
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{twilio}");
    assert_eq!(twilio["kind"], "twilio_ws", "the default kind");
    assert_eq!(twilio["on_agent_close"], "hangup", "the default on close");
    assert_eq!(twilio["sample_rate"], Value::Null);
    assert_eq!(twilio["auth_header_env_set"], true);
    let twilio_id = twilio["id"].as_i64().unwrap();
    let (status, body) = s
        .post(
            "/v1/agents/ai",
            json!({"name": "Pipecat", "url": "ws://127.0.0.1:1/x"}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");

    // Validation names the field.
    for (body, field) in [
        (json!({"url": "ws://127.0.0.1:1/x"}), "name"),
        (json!({"name": "A"}), "url"),
        (json!({"name": "A", "url": "http://127.0.0.1/x"}), "url"),
        (
            json!({"name": "A", "kind": "webrtc_whip", "url": "wss://127.0.0.1/x"}),
            "url",
        ),
        (
            json!({"name": "A", "kind": "smoke", "url": "ws://h/x"}),
            "kind",
        ),
        (
            json!({"name": "A", "kind": "l16_ws", "url": "ws://h/x", "sample_rate": 44100}),
            "sample_rate",
        ),
        (
            json!({"name": "A", "url": "ws://h/x", "sample_rate": 16000}),
            "sample_rate",
        ),
        (
            json!({"name": "A", "url": "ws://h/x", "auth_header_name": "Authorization"}),
            "auth_header_env",
        ),
        (
            json!({"name": "A", "url": "ws://h/x", "auth_header_name": "Authorization",
                   "auth_header_env": "not-a-variable"}),
            "auth_header_env",
        ),
        (
            json!({"name": "A", "url": "ws://h/x", "auth_header_value": "Bearer secret"}),
            "auth_header_value",
        ),
        (
            json!({"name": "A", "url": "ws://h/x", "custom_parameters": {"n": 1}}),
            "custom_parameters.n",
        ),
        (
            json!({"name": "A", "url": "ws://h/x", "on_agent_close": "connect"}),
            "handoff_target",
        ),
        (
            json!({"name": "A", "url": "ws://h/x", "on_agent_close": "connect",
                   "handoff_target": "nobody"}),
            "handoff_target",
        ),
    ] {
        let (status, err) = s.post("/v1/agents/ai", body.clone()).await;
        assert_field(status, &err, field);
    }

    // Read, list, PATCH (another kind drops the L16 rate; null clears).
    let (status, got) = s.get(&format!("/v1/agents/ai/{l16_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, l16);
    let (_, list) = s.get("/v1/agents/ai").await;
    assert_eq!(list["total"], 2);
    assert_eq!(list["items"][0]["name"], "Listen bot", "by name");
    let (status, patched) = s
        .patch(
            &format!("/v1/agents/ai/{l16_id}"),
            json!({"kind": "webrtc_smallwebrtc", "url": "http://127.0.0.1:7860/api/offer",
                   "custom_parameters": null, "on_agent_close": "hangup"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["kind"], "webrtc_smallwebrtc");
    assert_eq!(patched["sample_rate"], Value::Null);
    assert_eq!(patched["custom_parameters"], json!({}));
    assert_eq!(patched["handoff_target"], "closers");
    let (status, err) = s
        .patch(
            &format!("/v1/agents/ai/{l16_id}"),
            json!({"url": "ws://h/x"}),
        )
        .await;
    assert_field(status, &err, "url");
    let (status, err) = s
        .patch(
            &format!("/v1/agents/ai/{l16_id}"),
            json!({"name": "Pipecat"}),
        )
        .await;
    assert_error(status, &err, StatusCode::CONFLICT, "conflict");

    // Campaigns name an agent by id; both ways at once is 422; an unknown id is 400.
    let (status, c) = s
        .post(
            "/v1/campaigns",
            json!({"name": "AI outreach", "ai_agent_id": twilio_id}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    assert_eq!(c["ai_agent_id"], twilio_id);
    assert_eq!(c["ai_agent_url"], Value::Null);
    let campaign = c["id"].as_i64().unwrap();
    let (_, got) = s.get(&format!("/v1/campaigns/{campaign}")).await;
    assert_eq!(got["ai_agent_id"], twilio_id);
    let (status, err) = s
        .post(
            "/v1/campaigns",
            json!({"name": "Both", "ai_agent_id": twilio_id, "ai_agent_url": "wss://x.example/"}),
        )
        .await;
    assert_field_422(status, &err, "ai_agent_id");
    let (status, err) = s
        .patch(
            &format!("/v1/campaigns/{campaign}"),
            json!({"ai_agent_url": "wss://x.example/"}),
        )
        .await;
    assert_field_422(status, &err, "ai_agent_id");
    let (status, err) = s
        .post(
            "/v1/campaigns",
            json!({"name": "Ghost", "ai_agent_id": 987654}),
        )
        .await;
    assert_field(status, &err, "ai_agent_id");
    // The URL shortcut still works; switching from it to an id takes `null` for the URL.
    let (status, by_url) = s
        .post(
            "/v1/campaigns",
            json!({"name": "By URL", "ai_agent_url": "ws://127.0.0.1:9000/media"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{by_url}");
    let url_campaign = by_url["id"].as_i64().unwrap();
    let (status, switched) = s
        .patch(
            &format!("/v1/campaigns/{url_campaign}"),
            json!({"ai_agent_url": null, "ai_agent_id": l16_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{switched}");
    assert_eq!(switched["ai_agent_id"], l16_id);
    let spec = s
        .store
        .campaign_ai_agent(url_campaign)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(spec.url, "http://127.0.0.1:7860/api/offer");

    // An agent in use is not deleted: 409 naming the campaigns.
    let (status, err) = s.delete(&format!("/v1/agents/ai/{twilio_id}")).await;
    assert_error(status, &err, StatusCode::CONFLICT, "conflict");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&campaign.to_string()) && message.contains("AI outreach"),
        "{message}"
    );

    // Another account sees and changes none of it, and cannot name it in its campaigns.
    let (_, bob) = s.other_account("bob").await;
    for (method, path, body) in [
        (Method::GET, format!("/v1/agents/ai/{twilio_id}"), None),
        (
            Method::PATCH,
            format!("/v1/agents/ai/{twilio_id}"),
            Some(json!({"name": "Mine now"})),
        ),
        (Method::DELETE, format!("/v1/agents/ai/{l16_id}"), None),
    ] {
        let (status, body) = s.call_as(&bob, method, &path, body).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    let (_, theirs) = s.call_as(&bob, Method::GET, "/v1/agents/ai", None).await;
    assert_eq!(theirs["total"], 0);
    let (status, err) = s
        .call_as(
            &bob,
            Method::POST,
            "/v1/campaigns",
            Some(json!({"name": "Borrowed", "ai_agent_id": twilio_id})),
        )
        .await;
    assert_field(status, &err, "ai_agent_id");
    let (status, mine) = s
        .call_as(
            &bob,
            Method::POST,
            "/v1/agents/ai",
            Some(json!({"name": "Pipecat", "url": "ws://127.0.0.1:2/x"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the same name in another account: {mine}"
    );
    let (_, ours) = s.get(&format!("/v1/agents/ai/{twilio_id}")).await;
    assert_eq!(ours["name"], "Pipecat");

    // Clearing the campaign frees the agent.
    let (status, cleared) = s
        .patch(
            &format!("/v1/campaigns/{campaign}"),
            json!({"ai_agent_id": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert_eq!(cleared["ai_agent_id"], Value::Null);
    let (status, _) = s.delete(&format!("/v1/agents/ai/{twilio_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = s.get(&format!("/v1/agents/ai/{twilio_id}")).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    s.stop().await;
}

async fn goals_analyses_and_attempt_reports(db: Db) {
    let s = Server::start(db).await;
    let id = s.campaign("Goals").await;
    let goals = format!("/v1/campaigns/{id}/goals");
    let analyses = format!("/v1/campaigns/{id}/analyses");

    // Goals: one live primary, any number of secondary ones.
    let (status, demo) = s
        .post(
            &goals,
            json!({"kind": "primary", "name": "Demo booked", "question": "Did they book a demo?", "type": "yes_no"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{demo}");
    assert_eq!(
        (demo["active"].clone(), demo["archived"].clone()),
        (json!(true), json!(false))
    );
    let demo_id = demo["id"].as_i64().unwrap();
    let (status, err) = s
        .post(
            &goals,
            json!({"kind": "primary", "name": "Second", "type": "yes_no"}),
        )
        .await;
    assert_error(status, &err, StatusCode::CONFLICT, "conflict");
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&demo_id.to_string()),
        "{err}"
    );
    let (status, mood) = s
        .post(
            &goals,
            json!({"kind": "secondary", "name": "Mood", "type": "Rating Scale"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{mood}");
    assert_eq!(mood["type"], "rating");
    let mood_id = mood["id"].as_i64().unwrap();
    for (body, field) in [
        (json!({"name": "x", "type": "yes_no"}), "kind"),
        (
            json!({"kind": "analysis", "name": "x", "type": "yes_no"}),
            "kind",
        ),
        (json!({"kind": "secondary", "type": "yes_no"}), "name"),
        (
            json!({"kind": "secondary", "name": " ", "type": "yes_no"}),
            "name",
        ),
        (json!({"kind": "secondary", "name": "x"}), "type"),
        (
            json!({"kind": "secondary", "name": "x", "type": "colour"}),
            "type",
        ),
        (
            json!({"kind": "secondary", "name": "x", "type": "yes_no", "weight": 2}),
            "weight",
        ),
    ] {
        let (status, err) = s.post(&goals, body).await;
        assert_field(status, &err, field);
    }
    // Archive and restore; a primary goal restored while another is live: 409.
    let (status, archived) = s
        .post(&format!("{goals}/{demo_id}/archive"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{archived}");
    assert_eq!(archived["archived"], true);
    let (status, newer) = s
        .post(
            &goals,
            json!({"kind": "primary", "name": "Newer", "type": "open_text"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{newer}");
    let newer_id = newer["id"].as_i64().unwrap();
    let (status, err) = s
        .post(&format!("{goals}/{demo_id}/restore"), json!({}))
        .await;
    assert_error(status, &err, StatusCode::CONFLICT, "conflict");
    let (status, _) = s
        .patch(
            &format!("{goals}/{newer_id}"),
            json!({"kind": "secondary", "active": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, restored) = s
        .post(&format!("{goals}/{demo_id}/restore"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{restored}");
    assert_eq!(restored["archived"], false);
    let (_, list) = s.get(&goals).await;
    let order: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_i64().unwrap())
        .collect();
    assert_eq!(order, vec![demo_id, mood_id, newer_id], "the primary first");
    let (status, one) = s.get(&format!("{goals}/{mood_id}")).await;
    assert_eq!(
        (status, one["name"].clone()),
        (StatusCode::OK, json!("Mood"))
    );

    // Analyses: the same types, toggled active, archived and restored.
    let (status, notes) = s
        .post(
            &analyses,
            json!({"name": "Notes", "question": "What did they ask for?", "type": "open_text"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{notes}");
    assert_eq!(notes["kind"], "analysis");
    let notes_id = notes["id"].as_i64().unwrap();
    let (status, callback) = s
        .post(&analyses, json!({"name": "Callback", "type": "yes_no"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{callback}");
    let callback_id = callback["id"].as_i64().unwrap();
    let (status, old) = s
        .post(&analyses, json!({"name": "Old", "type": "rating"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{old}");
    let old_id = old["id"].as_i64().unwrap();
    let (status, err) = s
        .post(
            &analyses,
            json!({"kind": "primary", "name": "x", "type": "yes_no"}),
        )
        .await;
    assert_field(status, &err, "kind");
    let (status, off) = s
        .patch(&format!("{analyses}/{old_id}"), json!({"active": false}))
        .await;
    assert_eq!(
        (status, off["active"].clone()),
        (StatusCode::OK, json!(false))
    );
    let (status, _) = s
        .post(&format!("{analyses}/{callback_id}/archive"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, archived_list) = s.get(&format!("{analyses}?archived=true")).await;
    assert_eq!(archived_list.as_array().unwrap().len(), 1);
    let (status, _) = s
        .post(&format!("{analyses}/{callback_id}/restore"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    // A goal is not an analysis (and the other way round).
    let (status, _) = s.get(&format!("{analyses}/{demo_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.get(&format!("{goals}/{notes_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Attempts of three contacts.
    let (_, r) = s.import(id, GUIDE_CSV).await;
    assert_eq!(r["inserted"], 3);
    let contacts = s.stored(id).await;
    let attempt = |contact: usize, minutes: i64| AttemptRecord {
        campaign_id: Some(id),
        contact_id: Some(contacts[contact].id),
        attempt_number: 1,
        started_at: monday_10_utc(0) + minutes * 60_000,
        outcome: "answered".into(),
        answered_by: Some("human".into()),
        duration_ms: 90_000,
        ..AttemptRecord::default()
    };
    let first = s.store.insert_attempt(&attempt(0, 0)).await.unwrap();
    let second = s.store.insert_attempt(&attempt(1, 1)).await.unwrap();
    let third = s.store.insert_attempt(&attempt(2, 2)).await.unwrap();
    let report_path = |a: i64| format!("/v1/attempts/{a}/analysis");

    // The agent posts its report; the answer names the goals.
    let (status, stored) = s
        .post(
            &report_path(first),
            json!({
                "goals": [
                    {"goal_id": demo_id, "outcome": "achieved", "value": true},
                    {"goal_id": mood_id, "outcome": "partially_achieved", "value": 4}
                ],
                "analyses": [{"analysis_id": notes_id, "value": "pricing for 20 seats"}],
                "summary": "Booked a demo."
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["attempt_id"], first);
    assert_eq!(stored["contact_id"], contacts[0].id);
    assert_eq!(stored["goals"][0]["name"], "Demo booked");
    assert_eq!(stored["goals"][0]["outcome"], "achieved");
    assert_eq!(stored["goals"][1]["value"], 4);
    assert_eq!(stored["analyses"][0]["value"], "pricing for 20 seats");
    let (status, read_back) = s.get(&report_path(first)).await;
    assert_eq!(
        (status, read_back.clone()),
        (StatusCode::OK, stored.clone())
    );
    // Values are checked against the type; errors name the index and field.
    for (body, field) in [
        (
            json!({"goals": [{"goal_id": demo_id, "outcome": "achieved", "value": "yes"}]}),
            "goals[0].value",
        ),
        (
            json!({"goals": [{"goal_id": demo_id, "outcome": "achieved"},
                             {"goal_id": mood_id, "outcome": "achieved", "value": 6}]}),
            "goals[1].value",
        ),
        (
            json!({"goals": [{"goal_id": mood_id, "outcome": "achieved", "value": 2.5}]}),
            "goals[0].value",
        ),
        (
            json!({"goals": [{"goal_id": demo_id, "outcome": "maybe"}]}),
            "goals[0].outcome",
        ),
        (
            json!({"goals": [{"goal_id": notes_id, "outcome": "achieved"}]}),
            "goals[0].goal_id",
        ),
        (
            json!({"goals": [{"goal_id": newer_id, "outcome": "achieved"}]}),
            "goals[0].goal_id",
        ),
        (
            json!({"goals": [{"outcome": "achieved"}]}),
            "goals[0].goal_id",
        ),
        (
            json!({"analyses": [{"analysis_id": notes_id, "value": "x".repeat(4001)}]}),
            "analyses[0].value",
        ),
        (
            json!({"analyses": [{"analysis_id": old_id, "value": 3}]}),
            "analyses[0].analysis_id",
        ),
        (
            json!({"analyses": [{"analysis_id": callback_id, "value": "no"}]}),
            "analyses[0].value",
        ),
    ] {
        let (status, err) = s.post(&report_path(second), body).await;
        assert_field(status, &err, field);
    }
    let (status, body) = s.get(&report_path(second)).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    // A second post replaces the first.
    let (status, _) = s
        .post(
            &report_path(second),
            json!({"goals": [{"goal_id": demo_id, "outcome": "partially_achieved"}], "summary": "maybe"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, replaced) = s
        .post(
            &report_path(second),
            json!({"goals": [{"goal_id": demo_id, "outcome": "not_achieved", "value": false}],
                   "analyses": [{"analysis_id": callback_id, "value": true}],
                   "summary": "not now"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["summary"], "not now");
    assert_eq!(replaced["goals"].as_array().unwrap().len(), 1);
    assert_eq!(replaced["goals"][0]["outcome"], "not_achieved");
    let (status, _) = s
        .post(
            &report_path(third),
            json!({"goals": [{"goal_id": mood_id, "outcome": "not_achieved", "value": 2}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s.post(&report_path(987_654), json!({})).await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");

    // Contacts show and filter by their primary-goal status.
    let contacts_path = format!("/v1/campaigns/{id}/contacts");
    let (_, all) = s.get(&contacts_path).await;
    let status_of = |cid: i64| {
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == cid)
            .unwrap()["primary_goal_status"]
            .clone()
    };
    assert_eq!(status_of(contacts[0].id), "achieved");
    assert_eq!(status_of(contacts[1].id), "not_achieved");
    assert_eq!(
        status_of(contacts[2].id),
        "unknown",
        "the report does not mention it"
    );
    let (_, achieved) = s
        .get(&format!("{contacts_path}?primary_goal_status=achieved"))
        .await;
    assert_eq!(achieved["total"], 1);
    assert_eq!(achieved["items"][0]["id"], contacts[0].id);
    let (_, some) = s
        .get(&format!(
            "{contacts_path}?primary_goal_status=not%20achieved,unknown"
        ))
        .await;
    assert_eq!(some["total"], 2);
    let (status, err) = s
        .get(&format!("{contacts_path}?primary_goal_status=great"))
        .await;
    assert_field(status, &err, "primary_goal_status");
    let (_, one) = s.get(&format!("{contacts_path}/{}", contacts[1].id)).await;
    assert_eq!(one["primary_goal_status"], "not_achieved");
    let (status, history) = s
        .get(&format!("{contacts_path}/{}/analyses", contacts[0].id))
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    assert_eq!(history["primary_goal_status"], "achieved");
    assert_eq!(history["analyses"][0]["summary"], "Booked a demo.");
    let (_, attempts) = s
        .get(&format!(
            "/v1/campaigns/{id}/attempts?primary_goal_status=achieved"
        ))
        .await;
    assert_eq!(attempts["total"], 1);
    assert_eq!(attempts["items"][0]["id"], first);

    // The report: 3 analysed contacts, 1 achieved (partially does not count).
    let (status, report) = s.get(&format!("/v1/campaigns/{id}/report")).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let rate = report["primary_goal_achievement_rate"].as_f64().unwrap();
    assert!((rate - 1.0 / 3.0).abs() < 1e-9, "{report}");
    assert_eq!(report["total_conversations"], 3);
    assert_eq!(report["average_conversation_secs"], 90.0);
    assert_eq!(report["primary_goal"]["goal_id"], demo_id);
    assert_eq!(report["primary_goal"]["name"], "Demo booked");
    assert_eq!(report["primary_goal"]["analysed_contacts"], 3);
    let outcomes = &report["primary_goal"]["outcomes"];
    assert_eq!(outcomes[0]["outcome"], "achieved");
    assert_eq!(outcomes[0]["count"], 1);
    assert_eq!(outcomes[2]["outcome"], "not_achieved");
    assert_eq!(outcomes[2]["count"], 1);
    assert_eq!(outcomes[3]["outcome"], "unknown");
    assert_eq!(outcomes[3]["count"], 1);
    let goal = |gid: i64| {
        report["goals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["id"] == gid)
            .unwrap()
            .clone()
    };
    let m = goal(mood_id);
    assert_eq!(m["outcomes"][1]["count"], 1, "partially achieved: {m}");
    assert_eq!(m["outcomes"][2]["count"], 1, "not achieved: {m}");
    assert_eq!(m["outcomes"][3]["count"], 1, "unknown: {m}");
    let pct = m["outcomes"][1]["percent"].as_f64().unwrap();
    assert!((pct - 100.0 / 3.0).abs() < 1e-9, "{m}");
    assert_eq!(m["average_rating"], 3.0);
    let cb = report["analyses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == callback_id)
        .unwrap();
    assert_eq!(
        (cb["answered"].clone(), cb["yes"].clone()),
        (json!(1), json!(1))
    );

    // The contact export carries the status column (and filters by it).
    let (status, job) = s
        .post(
            &format!("/v1/campaigns/{id}/exports"),
            json!({"format": "csv_comma", "scope": "filtered",
                   "filter": {"primary_goal_status": "achieved,not_achieved"}}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let done = s.wait_export(job["id"].as_i64().unwrap()).await;
    assert_eq!(done["row_count"], 2);
    let (_, _, bytes) = s.download(done["id"].as_i64().unwrap()).await;
    let text = String::from_utf8(bytes).unwrap();
    let mut reader =
        csv::ReaderBuilder::new().from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let header = reader.headers().unwrap().clone();
    let col = header
        .iter()
        .position(|h| h == "primary_goal_status")
        .unwrap();
    let mut values: Vec<String> = reader
        .records()
        .map(|r| r.unwrap()[col].to_string())
        .collect();
    values.sort();
    assert_eq!(values, vec!["achieved", "not_achieved"]);
    let (status, err) = s
        .post(
            &format!("/v1/campaigns/{id}/exports"),
            json!({"format": "csv_comma", "scope": "filtered", "filter": {"primary_goal_status": "meh"}}),
        )
        .await;
    assert_field(status, &err, "filter.primary_goal_status");

    // Another account sees and changes none of it.
    let (_, bob) = s.other_account("bob").await;
    for (method, path, body) in [
        (Method::GET, goals.clone(), None),
        (
            Method::POST,
            goals.clone(),
            Some(json!({"kind": "secondary", "name": "x", "type": "yes_no"})),
        ),
        (Method::GET, format!("{goals}/{demo_id}"), None),
        (
            Method::PATCH,
            format!("{goals}/{demo_id}"),
            Some(json!({"name": "mine"})),
        ),
        (
            Method::POST,
            format!("{goals}/{demo_id}/archive"),
            Some(json!({})),
        ),
        (Method::GET, analyses.clone(), None),
        (
            Method::PATCH,
            format!("{analyses}/{notes_id}"),
            Some(json!({"active": false})),
        ),
        (Method::GET, report_path(first), None),
        (
            Method::POST,
            report_path(first),
            Some(json!({"goals": [{"goal_id": demo_id, "outcome": "not_achieved"}]})),
        ),
        (
            Method::GET,
            format!("{contacts_path}/{}/analyses", contacts[0].id),
            None,
        ),
    ] {
        let (status, body) = s.call_as(&bob, method.clone(), &path, body).await;
        assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    }
    let (_, still) = s.get(&report_path(first)).await;
    assert_eq!(still["goals"][0]["outcome"], "achieved");
    let (_, g) = s.get(&format!("{goals}/{demo_id}")).await;
    assert_eq!(
        (g["name"].clone(), g["archived"].clone()),
        (json!("Demo booked"), json!(false))
    );
    s.stop().await;
}

// ---------------------------------------------------------------------------------------
// Phone numbers.

/// `/v1/numbers`: E.164 (422 naming the field), unique, `?available=true`; a campaign
/// created with `number_id` calls from it (a different caller_id → 422), cannot change it
/// (422), and a number is held by one scheduled, processing or paused campaign at a time
/// (409 naming the campaign on start, resume, restart and delete).
async fn phone_numbers_and_the_campaigns_holding_them(db: Db) {
    let s = Server::start(db).await;
    let (status, n1) = s
        .post(
            "/v1/numbers",
            json!({"number": "+12025550100", "label": "Sales", "sip_profile": "acme"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{n1}");
    assert_eq!(n1["number"], "+12025550100");
    assert_eq!(n1["available"], true, "{n1}");
    assert!(n1["campaign_id"].is_null(), "{n1}");
    let n1_id = n1["id"].as_i64().unwrap();
    let (status, n2) = s
        .post("/v1/numbers", json!({"number": "+12025550111"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{n2}");
    let n2_id = n2["id"].as_i64().unwrap();
    for bad in ["2025550100", "+1 (202) 555-0100", "+0123", "call me"] {
        let (status, body) = s.post("/v1/numbers", json!({"number": bad})).await;
        assert_field_422(status, &body, "number");
    }
    let (status, body) = s
        .post(
            "/v1/numbers",
            json!({"number": "+12025550122", "sip_profile": "a b"}),
        )
        .await;
    assert_field_422(status, &body, "sip_profile");
    let (status, body) = s
        .post("/v1/numbers", json!({"number": "+12025550100"}))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, body) = s
        .patch(
            &format!("/v1/numbers/{n1_id}"),
            json!({"number": "+12025550199"}),
        )
        .await;
    assert_field_422(status, &body, "number");
    let (status, patched) = s
        .patch(
            &format!("/v1/numbers/{n1_id}"),
            json!({"label": "Sales US", "sip_profile": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["label"], "Sales US");
    assert!(patched["sip_profile"].is_null(), "{patched}");

    // A campaign calling from n1.
    let (status, body) = s
        .post(
            "/v1/campaigns",
            json!({"name": "wrong caller", "number_id": n1_id, "caller_id": "+15550001111"}),
        )
        .await;
    assert_field_422(status, &body, "caller_id");
    let (status, body) = s
        .post(
            "/v1/campaigns",
            json!({"name": "no such", "number_id": 987654}),
        )
        .await;
    assert_field(status, &body, "number_id");
    let (status, c1) = s
        .post("/v1/campaigns", json!({"name": "Q1", "number_id": n1_id}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c1}");
    assert_eq!(c1["number_id"], n1_id);
    assert_eq!(c1["number"], "+12025550100");
    assert_eq!(c1["caller_id"], "+12025550100");
    let c1_id = c1["id"].as_i64().unwrap();
    // The same caller ID spelled out is fine.
    let (status, c2) = s
        .post(
            "/v1/campaigns",
            json!({"name": "Q2", "number_id": n1_id, "caller_id": "+12025550100"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c2}");
    let c2_id = c2["id"].as_i64().unwrap();
    // Locked after creation.
    for body in [
        json!({"number_id": n2_id}),
        json!({"number_id": null}),
        json!({"caller_id": "+12025550111"}),
    ] {
        let (status, answer) = s
            .patch(&format!("/v1/campaigns/{c1_id}"), body.clone())
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("cannot be changed after creation")),
            "{answer}"
        );
    }
    let (status, renamed) = s
        .patch(
            &format!("/v1/campaigns/{c1_id}"),
            json!({"name": "Q1 renamed"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{renamed}");
    assert_eq!(renamed["number"], "+12025550100");

    // One running campaign per number.
    let (status, started) = s.post_empty(c1_id, "start").await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let (_, avail) = s.get("/v1/numbers?available=true").await;
    assert_eq!(avail["total"], 1, "{avail}");
    assert_eq!(avail["items"][0]["id"], n2_id, "{avail}");
    let (_, all) = s.get("/v1/numbers").await;
    assert_eq!(all["total"], 2, "{all}");
    let (_, held) = s.get(&format!("/v1/numbers/{n1_id}")).await;
    assert_eq!(held["campaign_id"], c1_id, "{held}");
    assert_eq!(held["available"], false, "{held}");
    let names_c1 = |body: &Value| {
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("campaign {c1_id}")))
    };
    let (status, body) = s.post_empty(c2_id, "start").await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    assert!(names_c1(&body), "{body}");
    let (status, body) = s.delete(&format!("/v1/numbers/{n1_id}")).await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    assert!(names_c1(&body), "{body}");
    let (status, body) = s
        .post("/v1/campaigns", json!({"name": "Q3", "number_id": n1_id}))
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    assert!(names_c1(&body), "{body}");
    let start = Clock::system().now() + 3_600_000;
    let (status, body) = s
        .post(
            "/v1/campaigns",
            json!({"name": "later", "number_id": n1_id, "status": "scheduled",
                   "schedule_start": start}),
        )
        .await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    assert!(names_c1(&body), "{body}");
    // Paused still holds it; stopped lets go.
    let (status, _) = s.post_empty(c1_id, "pause").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = s.post_empty(c2_id, "start").await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    let (status, _) = s.post_empty(c1_id, "stop").await;
    assert_eq!(status, StatusCode::OK);
    let (status, started) = s.post_empty(c2_id, "start").await;
    assert_eq!(status, StatusCode::OK, "{started}");
    let (status, body) = s.post_empty(c1_id, "restart").await;
    assert_error(status, &body, StatusCode::CONFLICT, "conflict");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("campaign {c2_id}"))),
        "{body}"
    );
    assert_eq!(
        s.store.campaign_for_number("+12025550100").await.unwrap(),
        Some((s.account_id, c2_id))
    );
    // Another account sees none of it.
    let (_, other) = s.other_account("numbers-other").await;
    let (status, body) = s
        .call_as(&other, Method::GET, &format!("/v1/numbers/{n1_id}"), None)
        .await;
    assert_error(status, &body, StatusCode::NOT_FOUND, "not_found");
    let (status, body) = s.call_as(&other, Method::GET, "/v1/numbers", None).await;
    assert_eq!((status, body["total"].as_i64()), (StatusCode::OK, Some(0)));
    // A number nobody runs can go; the campaigns keep their caller ID.
    let (status, _) = s.post_empty(c2_id, "stop").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.delete(&format!("/v1/numbers/{n1_id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, c1) = s.get(&format!("/v1/campaigns/{c1_id}")).await;
    assert!(c1["number_id"].is_null(), "{c1}");
    assert_eq!(c1["caller_id"], "+12025550100", "{c1}");
    s.stop().await;
}
