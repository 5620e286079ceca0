//! Accounts isolation over real HTTP: two accounts on one server (in-process, on
//! 127.0.0.1:0, a fresh database: SQLite in a temp dir and PostgreSQL from
//! `OUTDIAL_TEST_PG_URL`, default `postgres://postgres@127.0.0.1:5432/test`).
//!
//! - Every route of the OpenAPI document that names an object (phone numbers included)
//!   answers 404 to the other account for every method, while the owner still reads it
//!   (200); every list the other account reads shows none of the owner's objects. A route added later with a path
//!   parameter this test does not know fails it.
//! - API keys: listed and revoked through the API and the CLI (`outdial keys list|revoke`);
//!   a revoked key and the sessions it opened get 401 at once.
//! - Roles: an operator gets 403 on keys of other logins, logins, the global DNC list and the
//!   node's state (`GET /v1/node`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use outdial::api::{AppState, Clock};
use outdial::store::{AttemptRecord, Role, Store};
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

fn pg_url_for(db: &str) -> String {
    let admin = pg_admin_url();
    let (base, query) = match admin.split_once('?') {
        Some((b, q)) => (b.to_string(), format!("?{q}")),
        None => (admin.clone(), String::new()),
    };
    let cut = base.rfind('/').expect("a database URL has a path");
    format!("{}/{db}{query}", &base[..cut])
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    nanos * 1000 + N.fetch_add(1, Ordering::Relaxed)
}

struct Server {
    base: String,
    url: String,
    client: reqwest::Client,
    store: Store,
    state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    pg_db: Option<String>,
    dir: tempfile::TempDir,
}

impl Server {
    async fn start(db: Db) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let (url, pg_db) = match db {
            Db::Sqlite => (
                format!("sqlite://{}", dir.path().join("accounts.db").display()),
                None,
            ),
            Db::Postgres => {
                let name = format!("outdial_acct_{}_{}", std::process::id(), unique());
                let mut admin = sqlx::PgConnection::connect(&pg_admin_url())
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL at {} is needed: {e}", pg_admin_url()));
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
            url,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            store,
            state,
            shutdown: Some(tx),
            task: Some(task),
            pg_db,
            dir,
        }
    }

    /// A new account with its admin login; its key.
    async fn account(&self, login: &str) -> (i64, String) {
        let now = Clock::system().now();
        let account = self.store.create_account(login, login, now).await.unwrap();
        let key = self
            .store
            .create_api_key(account.id, "tests", now)
            .await
            .unwrap();
        (account.id, key.secret)
    }

    async fn call(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        read(req.send().await.unwrap()).await
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).ok();
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(40), task)
                .await
                .expect("the server stops")
                .unwrap()
                .unwrap();
        }
        self.store.close().await;
    }
}

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

async fn read(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into())
        })
    };
    (status, value)
}

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
    every_route_hides_another_accounts_objects,
    keys_are_listed_and_revoked_through_the_api_and_the_cli,
    operators_do_not_manage_keys_logins_or_the_global_dnc_list,
);

/// Every name the owner's objects carry: no list the stranger reads may show it.
const MARK: &str = "zq-owner-mark";

fn check(status: StatusCode, body: &Value, want: StatusCode, what: &str) {
    assert_eq!(status, want, "{what}: {body}");
}

async fn every_route_hides_another_accounts_objects(db: Db) {
    let s = Server::start(db).await;
    let (_, owner) = s.account("owner").await;
    let (_, stranger) = s.account("stranger").await;
    let o = |m: Method, p: String, b: Option<Value>| {
        let key = owner.clone();
        let s = &s;
        async move { s.call(&key, m, &p, b).await }
    };

    // The owner makes one of everything.
    let day = json!([{"start": "09:00", "end": "17:00"}]);
    let schedule_body = json!({"name": format!("{MARK} hours"), "timezone": "UTC",
        "week": [day, day, day, day, day, [], []], "closed_dates": []});
    let (st, schedule) = o(
        Method::POST,
        "/v1/schedules".into(),
        Some(schedule_body.clone()),
    )
    .await;
    check(st, &schedule, StatusCode::CREATED, "schedule");
    let (st, number) = o(
        Method::POST,
        "/v1/numbers".into(),
        Some(json!({"number": "+12025550190", "label": MARK})),
    )
    .await;
    check(st, &number, StatusCode::CREATED, "number");
    let (st, webhook) = o(
        Method::POST,
        "/v1/webhooks".into(),
        Some(json!({"url": format!("http://127.0.0.1:9/{MARK}")})),
    )
    .await;
    check(st, &webhook, StatusCode::CREATED, "webhook");
    let (st, campaign) = o(
        Method::POST,
        "/v1/campaigns".into(),
        Some(
            json!({"name": format!("{MARK} campaign"), "business_hours_id": schedule["id"],
            "number_id": number["id"]}),
        ),
    )
    .await;
    check(st, &campaign, StatusCode::CREATED, "campaign");
    assert_eq!(campaign["number"], "+12025550190", "{campaign}");
    let cid = campaign["id"].as_i64().unwrap();
    let (st, contact) = o(
        Method::POST,
        format!("/v1/campaigns/{cid}/contacts"),
        Some(json!({"phone": "+12025550101", "name": MARK})),
    )
    .await;
    check(st, &contact, StatusCode::CREATED, "contact");
    let contact_id = contact["id"].as_i64().unwrap();
    let goal_body = json!({"kind": "primary", "name": format!("{MARK} goal"), "type": "yes_no"});
    let (st, goal) = o(
        Method::POST,
        format!("/v1/campaigns/{cid}/goals"),
        Some(goal_body.clone()),
    )
    .await;
    check(st, &goal, StatusCode::CREATED, "goal");
    let analysis_body = json!({"name": format!("{MARK} notes"), "type": "open_text"});
    let (st, analysis) = o(
        Method::POST,
        format!("/v1/campaigns/{cid}/analyses"),
        Some(analysis_body.clone()),
    )
    .await;
    check(st, &analysis, StatusCode::CREATED, "analysis");
    let (st, dnc) = o(
        Method::POST,
        "/v1/dnc".into(),
        Some(json!({"phone": "+12025550177", "reason": MARK})),
    )
    .await;
    check(st, &dnc, StatusCode::CREATED, "dnc");
    let agent_body = json!({"name": format!("{MARK}-agent"), "target": "sip:a@127.0.0.1:5070"});
    let (st, agent) = o(
        Method::POST,
        "/v1/agents/sip".into(),
        Some(agent_body.clone()),
    )
    .await;
    check(st, &agent, StatusCode::CREATED, "agent");
    let pool_body = json!({"name": format!("{MARK}-pool"), "agent_ids": [agent["id"]]});
    let (st, pool) = o(
        Method::POST,
        "/v1/agents/pools".into(),
        Some(pool_body.clone()),
    )
    .await;
    check(st, &pool, StatusCode::CREATED, "pool");
    let ai_body =
        json!({"name": format!("{MARK} bot"), "kind": "twilio_ws", "url": "ws://127.0.0.1:9/x"});
    let (st, ai) = o(Method::POST, "/v1/agents/ai".into(), Some(ai_body.clone())).await;
    check(st, &ai, StatusCode::CREATED, "ai agent");
    let (st, job) = o(
        Method::POST,
        format!("/v1/campaigns/{cid}/exports"),
        Some(json!({"format": "csv_comma", "scope": "all"})),
    )
    .await;
    check(st, &job, StatusCode::ACCEPTED, "export");
    let export_id = job["id"].as_i64().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, j) = o(Method::GET, format!("/v1/exports/{export_id}"), None).await;
        if j["status"] == "done" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "export never finished: {j}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recording = s.dir.path().join("owner.wav");
    std::fs::write(&recording, b"RIFF").unwrap();
    let attempt_id = s
        .store
        .insert_attempt(&AttemptRecord {
            campaign_id: Some(cid),
            contact_id: Some(contact_id),
            attempt_number: 1,
            started_at: Clock::system().now(),
            outcome: "answered".into(),
            recording_path: Some(recording.to_string_lossy().into_owned()),
            ..AttemptRecord::default()
        })
        .await
        .unwrap();
    let (st, report) = o(
        Method::POST,
        format!("/v1/attempts/{attempt_id}/analysis"),
        Some(json!({"summary": MARK})),
    )
    .await;
    check(st, &report, StatusCode::OK, "attempt analysis");
    let (_, keys) = o(Method::GET, "/v1/keys".into(), None).await;
    let key_id = keys[0]["id"].as_i64().unwrap();
    let (st, login) = o(
        Method::POST,
        "/v1/logins".into(),
        Some(json!({"login": format!("{MARK}-ops"), "role": "operator"})),
    )
    .await;
    check(st, &login, StatusCode::CREATED, "login");

    // Each path parameter → the owner's object (a new parameter panics: map it here).
    let param = |path: &str, name: &str| -> String {
        let id = |v: &Value| v["id"].as_i64().unwrap().to_string();
        match name {
            "contact_id" => contact_id.to_string(),
            "goal_id" => id(&goal),
            "analysis_id" => id(&analysis),
            "phone" => "%2B12025550177".into(),
            "name" => "owner.wav".into(),
            "sid" => "CA00000000000000000000000000000000".into(),
            "id" if path.starts_with("/v1/campaigns/") => cid.to_string(),
            "id" if path.starts_with("/v1/exports/") => export_id.to_string(),
            "id" if path.starts_with("/v1/schedules/") => id(&schedule),
            "id" if path.starts_with("/v1/agents/sip/") => id(&agent),
            "id" if path.starts_with("/v1/agents/pools/") => id(&pool),
            "id" if path.starts_with("/v1/agents/ai/") => id(&ai),
            "id" if path.starts_with("/v1/attempts/") => attempt_id.to_string(),
            "id" if path.starts_with("/v1/keys/") => key_id.to_string(),
            "id" if path.starts_with("/v1/logins/") => id(&login),
            "id" if path.starts_with("/v1/numbers/") => id(&number),
            "id" if path.starts_with("/v1/webhooks/") => id(&webhook),
            other => panic!("{path}: path parameter {other:?} is not mapped to an owner's object"),
        }
    };
    // Bodies that pass validation, so the answer can only be about ownership.
    let bodies: BTreeMap<&str, Value> = [
        (
            "/v1/campaigns/{id}/contacts",
            json!({"phone": "+12025550109"}),
        ),
        (
            "/v1/campaigns/{id}/contacts/remove",
            json!({"ids": [contact_id]}),
        ),
        (
            "/v1/campaigns/{id}/contacts/retry",
            json!({"ids": [contact_id]}),
        ),
        (
            "/v1/campaigns/{id}/exports",
            json!({"format": "csv_comma", "scope": "all"}),
        ),
        ("/v1/campaigns/{id}/goals", goal_body.clone()),
        ("/v1/campaigns/{id}/analyses", analysis_body.clone()),
        ("/v1/attempts/{id}/analysis", json!({"summary": "x"})),
        ("/v1/schedules/{id}", schedule_body.clone()),
        ("/v1/agents/sip/{id}/state", json!({"state": "available"})),
        ("/v1/agents/pools/{id}", pool_body.clone()),
        ("/v1/numbers/{id}", json!({"label": "stranger's label"})),
        (
            "/v1/webhooks/{id}",
            json!({"url": "http://127.0.0.1:9/stranger"}),
        ),
        (
            "/v1/calls/{sid}/transfer",
            json!({"target": "+12025550100"}),
        ),
    ]
    .into_iter()
    .collect();

    let (status, doc) = o(Method::GET, "/v1/openapi.json".into(), None).await;
    assert_eq!(status, StatusCode::OK);
    let mut with_ids = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let mut concrete = path.clone();
        while let Some(open) = concrete.find('{') {
            let close = concrete[open..].find('}').unwrap() + open;
            let name = concrete[open + 1..close].to_string();
            concrete.replace_range(open..=close, &param(path, &name));
        }
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_none() {
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            if !path.contains('{') {
                // A list or a create: the stranger's lists show nothing of the owner's.
                if m == Method::GET {
                    let (status, body) = s.call(&stranger, m, &concrete, None).await;
                    if status == StatusCode::OK {
                        assert!(
                            !body.to_string().contains(MARK),
                            "GET {path} shows the owner's objects to another account: {body}"
                        );
                    }
                }
                continue;
            }
            with_ids += 1;
            let body = (m != Method::GET && m != Method::DELETE)
                .then(|| bodies.get(path.as_str()).cloned().unwrap_or(json!({})));
            let (status, answer) = if path.ends_with("/contacts/import") {
                let resp = s
                    .client
                    .post(format!("{}{concrete}", s.base))
                    .bearer_auth(&stranger)
                    .header("content-type", "text/csv")
                    .body("12025550111,X\n")
                    .send()
                    .await
                    .unwrap();
                read(resp).await
            } else {
                s.call(&stranger, m.clone(), &concrete, body).await
            };
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{method} {path} as another account: {answer}"
            );
            assert_eq!(
                answer["error"]["code"], "not_found",
                "{method} {path}: {answer}"
            );
            if m == Method::GET
                && !path.starts_with("/v1/calls/")
                && !path.starts_with("/v1/media/")
            {
                let (status, mine) = s.call(&owner, m, &concrete, None).await;
                assert_eq!(status, StatusCode::OK, "GET {path} as its owner: {mine}");
            }
        }
    }
    assert!(with_ids >= 40, "{with_ids} routes with ids checked");
    // The 404 is the same as for an id that does not exist.
    let (_, theirs) = s
        .call(
            &stranger,
            Method::GET,
            &format!("/v1/campaigns/{cid}"),
            None,
        )
        .await;
    let (_, none) = s
        .call(&stranger, Method::GET, "/v1/campaigns/987654321", None)
        .await;
    assert_eq!(
        theirs["error"]["message"]
            .as_str()
            .map(|m| m.replace(&cid.to_string(), "N")),
        none["error"]["message"]
            .as_str()
            .map(|m| m.replace("987654321", "N"))
    );
    // Nothing the stranger sent reached the owner's objects.
    let (_, c) = o(Method::GET, format!("/v1/campaigns/{cid}"), None).await;
    assert_eq!(c["name"], format!("{MARK} campaign"));
    assert_eq!(c["contacts"]["total"], 1, "{c}");
    let (st, _) = o(Method::GET, "/v1/dnc/%2B12025550177".into(), None).await;
    assert_eq!(st, StatusCode::OK);
    let nid = number["id"].as_i64().unwrap();
    let (st, n) = o(Method::GET, format!("/v1/numbers/{nid}"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(n["label"], MARK, "{n}");
    // The stranger cannot name the owner's number on a campaign of its own either.
    let (st, body) = s
        .call(
            &stranger,
            Method::POST,
            "/v1/campaigns",
            Some(json!({"name": "theirs", "number_id": nid})),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "number_id", "{body}");
    s.stop().await;
}

async fn keys_are_listed_and_revoked_through_the_api_and_the_cli(db: Db) {
    let s = Server::start(db).await;
    let (account, admin) = s.account("acme").await;
    let (_, other) = s.account("other").await;
    // A second key, and a session opened with it.
    let (st, made) = s
        .call(
            &admin,
            Method::POST,
            "/v1/keys",
            Some(json!({"label": "ci"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{made}");
    let second = made["secret"].as_str().unwrap().to_string();
    let second_id = made["key"]["id"].as_i64().unwrap();
    let resp = s
        .client
        .post(format!("{}/v1/login", s.base))
        .json(&json!({"login": "acme", "api_key": second}))
        .send()
        .await
        .unwrap();
    let (st, session) = read(resp).await;
    assert_eq!(st, StatusCode::OK, "{session}");
    let token = session["token"].as_str().unwrap().to_string();
    assert_eq!(session["account"]["role"], "admin");
    let (st, _) = s.call(&token, Method::GET, "/v1/campaigns", None).await;
    assert_eq!(st, StatusCode::OK);

    // The list shows both keys, never a secret; another account's list shows neither.
    let (st, keys) = s.call(&admin, Method::GET, "/v1/keys", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(keys.as_array().unwrap().len(), 2, "{keys}");
    assert!(
        !keys.to_string().contains(&second[4..]),
        "a key is never listed"
    );
    let (_, theirs) = s.call(&other, Method::GET, "/v1/keys", None).await;
    assert_eq!(theirs.as_array().unwrap().len(), 1);
    let (st, _) = s
        .call(
            &other,
            Method::DELETE,
            &format!("/v1/keys/{second_id}"),
            None,
        )
        .await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "another account cannot revoke it"
    );

    // Revoked through the API: the key and its session get 401 at once.
    let (st, _) = s
        .call(
            &admin,
            Method::DELETE,
            &format!("/v1/keys/{second_id}"),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    for credential in [&second, &token] {
        let (st, body) = s.call(credential, Method::GET, "/v1/campaigns", None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{body}");
    }
    let (_, keys) = s.call(&admin, Method::GET, "/v1/keys", None).await;
    assert!(keys[1]["revoked_at"].is_i64(), "{keys}");

    // The CLI lists and revokes against the same database.
    let third = s
        .store
        .create_api_key(account, "cli", Clock::system().now())
        .await
        .unwrap();
    let resp = s
        .client
        .post(format!("{}/v1/login", s.base))
        .json(&json!({"login": "acme", "api_key": third.secret}))
        .send()
        .await
        .unwrap();
    let token = read(resp).await.1["token"].as_str().unwrap().to_string();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_outdial"))
            .current_dir(s.dir.path())
            .env("OUTDIAL_DATABASE_URL", &s.url)
            .env_remove("RUST_LOG")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "outdial {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let listed = cli(&["keys", "list", "--login", "acme", "--json"]);
    let rows: Vec<Value> = listed
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{listed}");
    assert!(rows
        .iter()
        .any(|r| r["id"] == third.key.id && r["revoked_at"].is_null()));
    assert!(
        !listed.contains(&third.secret[4..]),
        "the CLI never shows a key"
    );
    cli(&["keys", "revoke", &third.key.id.to_string()]);
    for credential in [&third.secret, &token] {
        let (st, _) = s.call(credential, Method::GET, "/v1/me", None).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    // The first key still works.
    assert_eq!(
        s.call(&admin, Method::GET, "/v1/me", None).await.0,
        StatusCode::OK
    );
    s.stop().await;
}

async fn operators_do_not_manage_keys_logins_or_the_global_dnc_list(db: Db) {
    let s = Server::start(db).await;
    let (account, admin) = s.account("acme").await;
    let now = s.state.now();
    let op = s
        .store
        .create_login(account, "acme-ops", Role::Operator, now)
        .await
        .unwrap();
    let op_key = s.store.create_login_key(op.id, "ops", now).await.unwrap();
    let operator = op_key.secret.clone();
    let (_, me) = s.call(&operator, Method::GET, "/v1/me", None).await;
    assert_eq!(
        (me["login"].as_str(), me["role"].as_str()),
        (Some("acme-ops"), Some("operator"))
    );
    // Campaign work is allowed; the account's campaigns are shared by its logins.
    let (st, c) = s
        .call(
            &operator,
            Method::POST,
            "/v1/campaigns",
            Some(json!({"name": "ops"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let (_, list) = s.call(&admin, Method::GET, "/v1/campaigns", None).await;
    assert_eq!(list["total"], 1);
    // Keys and logins: 403 (its own keys are listed and revocable).
    let admin_key = s.store.list_api_keys(account).await.unwrap()[0].id;
    for (m, path, body) in [
        (
            Method::POST,
            "/v1/keys".to_string(),
            Some(json!({"label": "x"})),
        ),
        (Method::DELETE, format!("/v1/keys/{admin_key}"), None),
        (Method::GET, "/v1/logins".to_string(), None),
        (
            Method::POST,
            "/v1/logins".to_string(),
            Some(json!({"login": "x"})),
        ),
        (Method::DELETE, format!("/v1/logins/{}", op.id), None),
        (
            Method::POST,
            "/v1/dnc".to_string(),
            Some(json!({"phone": "+12025550123", "list": "global"})),
        ),
        (
            Method::DELETE,
            "/v1/dnc/%2B12025550123?list=global".to_string(),
            None,
        ),
        // The node's state is every account's together; the trunks are the server's.
        (Method::GET, "/v1/node".to_string(), None),
        (Method::GET, "/v1/trunks".to_string(), None),
    ] {
        let (st, body) = s.call(&operator, m.clone(), &path, body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{m} {path}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    let (st, node) = s.call(&admin, Method::GET, "/v1/node", None).await;
    assert_eq!(st, StatusCode::OK, "{node}");
    assert!(node["tasks"].as_u64().unwrap_or(0) > 0, "{node}");
    assert_eq!(node["live_calls"], 0, "{node}");
    let (_, keys) = s.call(&operator, Method::GET, "/v1/keys", None).await;
    assert_eq!(keys.as_array().unwrap().len(), 1, "only its own: {keys}");
    // The admin can do all of it.
    let (st, body) = s
        .call(
            &admin,
            Method::POST,
            "/v1/dnc",
            Some(json!({"phone": "+12025550123", "list": "global"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert_eq!(body["list"], "global");
    assert!(s.store.dnc_contains(None, "+12025550123").await.unwrap());
    // Everyone reads the global list.
    let (st, global) = s
        .call(&operator, Method::GET, "/v1/dnc?list=global", None)
        .await;
    assert_eq!((st, global["total"].as_i64()), (StatusCode::OK, Some(1)));
    let (st, logins) = s.call(&admin, Method::GET, "/v1/logins", None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(logins.as_array().unwrap().len(), 2);
    let (st, made) = s
        .call(
            &admin,
            Method::POST,
            "/v1/keys",
            Some(json!({"login_id": op.id})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{made}");
    assert_eq!(made["key"]["login"], "acme-ops");
    // The operator revokes its own key; then it is out.
    let (st, _) = s
        .call(
            &operator,
            Method::DELETE,
            &format!("/v1/keys/{}", op_key.key.id),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        s.call(&operator, Method::GET, "/v1/me", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (st, _) = s
        .call(
            &admin,
            Method::DELETE,
            &format!("/v1/logins/{}", op.id),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let own_login = s.store.login_by_name("acme").await.unwrap().unwrap();
    let (st, body) = s
        .call(
            &admin,
            Method::DELETE,
            &format!("/v1/logins/{}", own_login.id),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "the last admin stays: {body}");
    s.stop().await;
}
