//! The store against both engines: every test body runs once on a fresh SQLite file and
//! once on a fresh PostgreSQL database.
//!
//! PostgreSQL: `OUTDIAL_TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`,
//! trust auth) is the admin connection; each test creates `outdial_t_<random>` and drops it
//! at the end. When PostgreSQL cannot be reached the PostgreSQL tests fail, saying so.

use std::collections::HashMap;
use std::sync::Arc;

use outdial::campaign::agents::AgentSpec;
use outdial::campaign::ai::{AiAgentKind, AiAgentSpec, OnAgentClose};
use outdial::campaign::goals::{
    ConversationResult, GoalOutcome, QuestionKind, QuestionSpec, QuestionType,
};
use outdial::campaign::model::{
    AgentState, AmdMode, BusinessHoursSpec, CampaignSettings, CampaignStatus, ContactStatus,
    ContactWindow, EndedBy, Interval, IntervalUnit, MachineAction, OpenHours, Pacing, RetryOn,
};
use outdial::store::{
    AgentRelease, AttemptFilter, AttemptRecord, BridgeRecord, CampaignFilter, ContactFilter,
    ContactTransition, DncList, EventFilter, ExportFormat, ExportScope, ExportStatus, ExportUpdate,
    NewContact, NewExport, NewNumber, NumberUpdate, OutcomeCounts, Page, Role, Store, StoreError,
};
use sqlx::Connection;

const NOW: i64 = 1_717_243_200_000; // 2024-06-01 12:00:00 UTC

struct TestDb {
    store: Store,
    url: String,
    drop: Option<(String, String)>, // (admin url, database name) for PostgreSQL
    _dir: Option<tempfile::TempDir>,
}

fn admin_url() -> String {
    std::env::var("OUTDIAL_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &base[..host_end])
}

async fn drop_database(admin: &str, name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await;
        let _ = conn.close().await;
    }
}

/// A new SQLite file's URL (nothing in it yet) and the folder holding it.
fn empty_sqlite() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    (url, dir)
}

/// A new, empty PostgreSQL database: its URL, the admin URL and its name (to drop it).
async fn empty_postgres() -> (String, String, String) {
    let admin = admin_url();
    let mut conn = match sqlx::PgConnection::connect(&admin).await {
        Ok(c) => c,
        Err(e) => panic!(
            "PostgreSQL is unreachable at {admin} ({e}); these tests need it \
             (start it, or point OUTDIAL_TEST_POSTGRES_URL at one)"
        ),
    };
    let name = format!("outdial_t_{:016x}", rand::random::<u64>());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create the test database");
    conn.close().await.ok();
    (with_database(&admin, &name), admin, name)
}

impl TestDb {
    async fn sqlite() -> TestDb {
        let (url, dir) = empty_sqlite();
        let store = Store::open(&url).await.expect("open sqlite store");
        TestDb {
            store,
            url,
            drop: None,
            _dir: Some(dir),
        }
    }

    async fn postgres() -> TestDb {
        let (url, admin, name) = empty_postgres().await;
        let store = Store::open(&url).await.expect("open postgres store");
        TestDb {
            store,
            url,
            drop: Some((admin, name)),
            _dir: None,
        }
    }

    async fn finish(mut self) {
        self.store.close().await;
        if let Some((admin, name)) = self.drop.take() {
            drop_database(&admin, &name).await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // A test that panicked: drop its database from a thread of its own.
        if let Some((admin, name)) = self.drop.take() {
            let _ = std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    rt.block_on(drop_database(&admin, &name));
                }
            })
            .join();
        }
    }
}

macro_rules! both {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = super::TestDb::sqlite().await;
                super::$name(&db).await;
                db.finish().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let db = super::TestDb::postgres().await;
                super::$name(&db).await;
                db.finish().await;
            }
        }
    )+};
}

both!(
    claim_groups_take_what_fits_under_the_caps_in_order,
    a_group_commit_writes_what_one_by_one_ends_write,
    groups_larger_than_one_statement_are_claimed_and_ended_whole,
    migrations_apply_twice,
    optional_reals_are_stored_after_nulls_on_every_connection,
    campaign_round_trip,
    campaign_status_is_compare_and_set,
    campaign_list_counts_and_paging,
    contacts_unique_delete_filters_paging,
    claim_is_exclusive_under_concurrency,
    due_contacts_order_and_time,
    contact_lifecycle_helpers,
    attempt_cdr_round_trip_and_filters,
    heat_map_in_new_york,
    dnc_list,
    business_hours_crud,
    export_jobs,
    interrupted_exports_are_failed_per_node,
    api_keys_and_sessions,
    bulk_insert_dedupes,
    events_append_and_page,
    agents_and_pools_are_per_account,
    agent_lease_is_exclusive_and_release_starts_wrap_up,
    abandons_count_people_over_the_rolling_30_days,
    ai_agents_are_per_account_and_campaigns_name_them,
    goals_analyses_and_attempt_reports,
    claims_count_caps_over_every_node,
    an_attempt_ends_in_one_transaction_and_only_once,
    restart_leaves_live_calls_alone_until_they_end,
    dead_nodes_are_those_that_stopped_beating,
    numbers_are_per_account_and_held_by_one_running_campaign,
    a_single_call_checks_every_dnc_list,
);

/// Attempts stored before `ended_by` covered every answered call (schema 5: the callee
/// leg's `hangup` word beside the bridge's `ended_by`) read in today's words once the
/// store migrates.
mod old_hangup_words_read_as_ended_by {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        let (url, dir) = super::empty_sqlite();
        super::old_hangup_words_read_as_ended_by(&format!("{url}?mode=rwc"), &url, "sqlite").await;
        drop(dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        let (url, admin, name) = super::empty_postgres().await;
        super::old_hangup_words_read_as_ended_by(&url, &url, "postgres").await;
        super::drop_database(&admin, &name).await;
    }
}

async fn old_hangup_words_read_as_ended_by(create_url: &str, url: &str, engine: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(create_url).await.unwrap();
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(engine);
    let mut schema_5 = sqlx::migrate::Migrator::new(folder).await.unwrap();
    schema_5.migrations = schema_5
        .migrations
        .iter()
        .filter(|m| m.version <= 5)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    schema_5.run(&pool).await.unwrap();
    // (hangup, ended_by) as schema 5 stored them → ended_by today.
    let rows = [
        (Some("remote"), None, Some(EndedBy::Callee)),
        (Some("local"), None, Some(EndedBy::System)),
        (Some("max_duration"), None, Some(EndedBy::MaxDuration)),
        (Some("transferred"), None, Some(EndedBy::Transferred)),
        // A bridged call the agent ended: the bridge's word stays.
        (Some("local"), Some("agent"), Some(EndedBy::Agent)),
        (Some("remote"), Some("callee"), Some(EndedBy::Callee)),
        // Never answered.
        (None, None, None),
    ];
    let mut ids = Vec::new();
    for (hangup, ended_by, _) in rows {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO call_attempts (started_at, outcome, hangup, ended_by) \
             VALUES ($1, 'answered', $2, $3) RETURNING id",
        )
        .bind(NOW)
        .bind(hangup.map(str::to_string))
        .bind(ended_by.map(str::to_string))
        .fetch_one(&pool)
        .await
        .unwrap();
        ids.push(id);
    }
    pool.close().await;

    let store = Store::open(url).await.expect("migrate to today's schema");
    for (id, (hangup, ended_by, want)) in ids.into_iter().zip(rows) {
        let got = store.get_attempt(id).await.unwrap().record.ended_by;
        assert_eq!(got, want, "hangup {hangup:?}, ended_by {ended_by:?}");
    }
    store.close().await;
}

fn settings(name: &str) -> CampaignSettings {
    CampaignSettings {
        name: name.into(),
        ..CampaignSettings::default()
    }
}

async fn campaign(store: &Store, name: &str) -> i64 {
    store
        .create_campaign(None, &settings(name), CampaignStatus::New, NOW)
        .await
        .unwrap()
        .id
}

fn contact(phone: &str, name: &str) -> NewContact {
    NewContact {
        name: name.into(),
        ..NewContact::new(phone)
    }
}

fn week_9_to_5() -> BusinessHoursSpec {
    let day = vec![OpenHours {
        start: "09:00".into(),
        end: "17:00".into(),
    }];
    BusinessHoursSpec {
        name: "Office".into(),
        timezone: "America/New_York".into(),
        week: [
            day.clone(),
            day.clone(),
            day.clone(),
            day.clone(),
            day,
            vec![],
            vec![],
        ],
        closed_dates: vec!["2024-12-25".into()],
    }
}

async fn migrations_apply_twice(db: &TestDb) {
    let again = Store::open(&db.url).await.expect("second open");
    let id = campaign(&again, "x").await;
    assert_eq!(db.store.get_campaign(id).await.unwrap().settings.name, "x");
    again.close().await;
}

async fn campaign_round_trip(db: &TestDb) {
    let s = &db.store;
    let account = s.create_account("alice", "Alice", NOW).await.unwrap();
    let hours = s
        .create_business_hours(Some(account.id), &week_9_to_5(), NOW)
        .await
        .unwrap();
    let full = CampaignSettings {
        name: "Q1 Sales Outreach".into(),
        description: "Leads from Google Ads".into(),
        connect_to: "sip:sales@pbx.example".into(),
        ai_agent_url: Some("wss://agent.example/stream".into()),
        ai_agent_id: None,
        schedule_start: Some(NOW + 3_600_000),
        schedule_timezone: "Europe/Berlin".into(),
        pace: 12.5,
        max_concurrent: 7,
        call_interval_secs: 30,
        ring_timeout_secs: 10,
        ring_timeout_override: true,
        business_hours_id: Some(hours.id),
        contact_window: Some(ContactWindow {
            start: "09:00".into(),
            end: "21:00".into(),
        }),
        amd_mode: AmdMode::Ml,
        machine_action: MachineAction::LeaveMessage,
        voicemail_message: Some("vm.wav".into()),
        play_message: Some("hello.wav".into()),
        steps: Some(
            serde_json::from_str(
                r##"[{"type":"play","file":"welcome.wav"},
                    {"type":"collect","prompt":"menu.wav","max_digits":2,"timeout_secs":7.5,
                     "finish_on":"#","on":{"1":"connect","99":"dnc"},"otherwise":"hangup"},
                    {"type":"record","max_secs":20,"silence_end_secs":2.5,"beep":false},
                    {"type":"connect"}]"##,
            )
            .expect("plan parses"),
        ),
        max_retries: 5,
        retry_interval: Interval::new(2, IntervalUnit::Hours),
        retry_on: RetryOn {
            busy: false,
            no_answer: true,
            failed: false,
            machine: true,
        },
        completion_timeout: Interval::new(3, IntervalUnit::Days),
        caller_id: "+12025550100".into(),
        number_id: None,
        billable_account: "acct-42".into(),
        sip_profile: "carrier-a".into(),
        recording: true,
        default_country: "DE".into(),
        pacing: Pacing::Predictive,
        transfer: outdial::campaign::model::Transfer::Refer,
        abandon_cap_pct: 2.5,
        abandon_message: Some("sorry.wav".into()),
        agent_ring_timeout_secs: 20,
        queue_timeout_secs: 3,
    };
    let created = s
        .create_campaign(Some(account.id), &full, CampaignStatus::New, NOW)
        .await
        .unwrap();
    assert_eq!(created.settings, full);
    assert_eq!(created.status, CampaignStatus::New);
    assert_eq!((created.created_at, created.updated_at), (NOW, NOW));
    assert_eq!((created.started_at, created.finished_at), (None, None));
    let got = s.get_campaign(created.id).await.unwrap();
    assert_eq!(got, created);
    assert_eq!(
        s.campaign_owner(created.id).await.unwrap(),
        Some(account.id)
    );

    // Every field to another value (and the options back to None).
    let other = CampaignSettings {
        name: "Renamed".into(),
        ai_agent_url: None,
        schedule_start: None,
        business_hours_id: None,
        contact_window: None,
        amd_mode: AmdMode::Auto,
        machine_action: MachineAction::Hangup,
        voicemail_message: None,
        play_message: None,
        steps: None,
        retry_on: RetryOn::default(),
        recording: false,
        ring_timeout_override: false,
        ring_timeout_secs: 45,
        ..full.clone()
    };
    let updated = s
        .update_campaign(created.id, &other, NOW + 5)
        .await
        .unwrap();
    assert_eq!(updated.settings, other);
    assert_eq!(updated.updated_at, NOW + 5);
    assert_eq!(s.get_campaign(created.id).await.unwrap(), updated);

    // Invalid settings name the field; unknown references conflict.
    let err = s
        .update_campaign(created.id, &settings(""), NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.starts_with("name")),
        "{err}"
    );
    let empty_plan = CampaignSettings {
        steps: Some(Vec::new()),
        ..settings("x")
    };
    let err = s
        .create_campaign(None, &empty_plan, CampaignStatus::New, NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.starts_with("steps: must hold at least one step")),
        "{err}"
    );
    let dangling = CampaignSettings {
        business_hours_id: Some(9999),
        ..settings("x")
    };
    assert!(matches!(
        s.create_campaign(None, &dangling, CampaignStatus::New, NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.get_campaign(424242).await,
        Err(StoreError::NotFound(_))
    ));

    // Delete cascades to contacts, attempts and exports.
    let c = s
        .create_contact(created.id, &contact("+12025550101", "A"), NOW)
        .await
        .unwrap();
    s.insert_attempt(&AttemptRecord {
        campaign_id: Some(created.id),
        contact_id: Some(c.id),
        outcome: "busy".into(),
        started_at: NOW,
        ..AttemptRecord::default()
    })
    .await
    .unwrap();
    s.create_export(
        &NewExport {
            campaign_id: created.id,
            format: ExportFormat::Xlsx,
            scope: ExportScope::Campaign,
            params: serde_json::Value::Null,
            node: None,
        },
        NOW,
    )
    .await
    .unwrap();
    s.delete_campaign(created.id).await.unwrap();
    assert!(matches!(
        s.get_contact(c.id).await,
        Err(StoreError::NotFound(_))
    ));
    let attempts = s
        .list_attempts(&AttemptFilter::default(), Page::default())
        .await
        .unwrap();
    assert_eq!(attempts.total, 0);
    assert_eq!(
        s.list_exports(None, Page::default()).await.unwrap().total,
        0
    );
    assert!(matches!(
        s.delete_campaign(created.id).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn campaign_status_is_compare_and_set(db: &TestDb) {
    let s = &db.store;
    let id = campaign(s, "cas").await;
    let started = s
        .set_campaign_status(id, CampaignStatus::New, CampaignStatus::Processing, NOW + 1)
        .await
        .unwrap();
    assert_eq!(started.status, CampaignStatus::Processing);
    assert_eq!(started.started_at, Some(NOW + 1));
    let err = s
        .set_campaign_status(id, CampaignStatus::New, CampaignStatus::Processing, NOW + 2)
        .await
        .unwrap_err();
    match err {
        StoreError::Conflict(m) => assert!(m.contains("processing"), "{m}"),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let done = s
        .set_campaign_status(
            id,
            CampaignStatus::Processing,
            CampaignStatus::Finished,
            NOW + 3,
        )
        .await
        .unwrap();
    assert_eq!(done.finished_at, Some(NOW + 3));
    assert_eq!(done.started_at, Some(NOW + 1));
    assert!(matches!(
        s.set_campaign_status(9999, CampaignStatus::New, CampaignStatus::Processing, NOW)
            .await,
        Err(StoreError::NotFound(_))
    ));

    // Two nodes start the same campaign at once: exactly one wins.
    for round in 0..10 {
        let id = campaign(s, &format!("race {round}")).await;
        let (a, b) = tokio::join!(
            s.set_campaign_status(id, CampaignStatus::New, CampaignStatus::Processing, NOW),
            s.set_campaign_status(id, CampaignStatus::New, CampaignStatus::Processing, NOW),
        );
        assert_eq!(a.is_ok() as u8 + b.is_ok() as u8, 1, "round {round}");
    }
    let processing = s
        .campaigns_in_status(&[CampaignStatus::Processing])
        .await
        .unwrap();
    assert_eq!(processing.len(), 10);
}

async fn campaign_list_counts_and_paging(db: &TestDb) {
    let s = &db.store;
    let alice = s.create_account("alice", "", NOW).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let owner = if i % 2 == 0 { Some(alice.id) } else { None };
        let mut st = settings(&format!("Campaign {i}"));
        st.description = if i == 3 {
            "Spring SALE".into()
        } else {
            String::new()
        };
        ids.push(
            s.create_campaign(owner, &st, CampaignStatus::New, NOW + i)
                .await
                .unwrap()
                .id,
        );
    }
    // Campaign 0: 3 contacts, one answered call, two not answered.
    let batch: Vec<_> = (1..=3)
        .map(|i| contact(&format!("+1202555010{i}"), ""))
        .collect();
    s.bulk_insert_contacts(ids[0], &batch, NOW).await.unwrap();
    let first = s
        .list_contacts(ids[0], &ContactFilter::default(), Page::default())
        .await
        .unwrap()
        .items;
    s.claim_contact(first[0].id, &[ContactStatus::Pending], NOW)
        .await
        .unwrap()
        .unwrap();
    for outcome in ["answered", "busy", "no_answer"] {
        s.insert_attempt(&AttemptRecord {
            campaign_id: Some(ids[0]),
            contact_id: Some(first[0].id),
            outcome: outcome.into(),
            started_at: NOW,
            ..AttemptRecord::default()
        })
        .await
        .unwrap();
    }

    let all = s
        .list_campaigns(&CampaignFilter::default(), Page::new(2, 0))
        .await
        .unwrap();
    assert_eq!(all.total, 5);
    assert_eq!(
        all.items.iter().map(|c| c.campaign.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    let last = s
        .list_campaigns(&CampaignFilter::default(), Page::new(2, 4))
        .await
        .unwrap();
    assert_eq!(last.items.len(), 1);
    let c0 = &last.items[0];
    assert_eq!(c0.campaign.id, ids[0]);
    assert_eq!(c0.account_id, Some(alice.id));
    assert_eq!(c0.contacts.total, 3);
    assert_eq!(c0.contacts.get(ContactStatus::Pending), 2);
    assert_eq!(c0.contacts.get(ContactStatus::Dialing), 1);
    assert_eq!(c0.contacts.by_status.len(), ContactStatus::ALL.len());
    assert_eq!(
        (c0.calls.answered, c0.calls.not_answered, c0.calls.total),
        (1, 2, 3)
    );

    let mine = s
        .list_campaigns(
            &CampaignFilter {
                account_id: Some(alice.id),
                ..CampaignFilter::default()
            },
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(mine.total, 3);
    let sale = s
        .list_campaigns(
            &CampaignFilter {
                search: Some("sale".into()),
                ..CampaignFilter::default()
            },
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(sale.total, 1);
    assert_eq!(sale.items[0].campaign.id, ids[3]);
    s.set_campaign_status(ids[1], CampaignStatus::New, CampaignStatus::Paused, NOW)
        .await
        .unwrap();
    let paused = s
        .list_campaigns(
            &CampaignFilter {
                statuses: vec![CampaignStatus::Paused],
                ..CampaignFilter::default()
            },
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(paused.total, 1);
    assert_eq!(paused.items[0].contacts.total, 0);
}

async fn contacts_unique_delete_filters_paging(db: &TestDb) {
    let s = &db.store;
    let a = campaign(s, "a").await;
    let b = campaign(s, "b").await;
    let john = s
        .create_contact(
            a,
            &NewContact {
                phone: "+12025550101".into(),
                name: "John Doe".into(),
                comments: "Google Ads".into(),
                tags: vec!["vip".into(), "east".into()],
                timezone: Some("America/New_York".into()),
                status: ContactStatus::Pending,
                next_attempt_at: None,
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(john.tags, vec!["vip".to_string(), "east".to_string()]);
    assert_eq!(john.timezone.as_deref(), Some("America/New_York"));
    assert_eq!((john.attempts, john.retries), (0, 0));
    assert_eq!(s.get_contact(john.id).await.unwrap(), john);

    // Unique per campaign, not across campaigns.
    let dup = s
        .create_contact(a, &contact("+12025550101", "Again"), NOW)
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    s.create_contact(b, &contact("+12025550101", "Other campaign"), NOW)
        .await
        .unwrap();
    assert!(matches!(
        s.create_contact(a, &contact("2025550101", "no plus"), NOW)
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        s.create_contact(999_999, &contact("+12025550109", ""), NOW)
            .await,
        Err(StoreError::NotFound(_))
    ));

    let jane = s
        .create_contact(
            a,
            &NewContact {
                comments: "Website visitor".into(),
                tags: vec!["west".into()],
                ..contact("+12025550102", "Jane Smith")
            },
            NOW,
        )
        .await
        .unwrap();
    let peter = s
        .create_contact(
            a,
            &NewContact {
                comments: "Whatsapp query".into(),
                tags: vec!["vip".into()],
                status: ContactStatus::NotAnswered,
                ..contact("+12025550103", "Peter Jones")
            },
            NOW,
        )
        .await
        .unwrap();
    for i in 0..20 {
        s.create_contact(
            a,
            &contact(&format!("+1303555{i:04}"), &format!("Filler {i}")),
            NOW,
        )
        .await
        .unwrap();
    }

    // Update; phone clash; no status change during a call.
    let mut edit = NewContact {
        phone: jane.phone.clone(),
        name: "Jane S.".into(),
        comments: jane.comments.clone(),
        tags: vec!["west".into(), "vip".into()],
        timezone: None,
        status: ContactStatus::Pending,
        next_attempt_at: None,
    };
    let jane = s.update_contact(jane.id, &edit, NOW + 1).await.unwrap();
    assert_eq!(jane.name, "Jane S.");
    assert_eq!(jane.updated_at, NOW + 1);
    edit.phone = john.phone.clone();
    assert!(matches!(
        s.update_contact(jane.id, &edit, NOW).await,
        Err(StoreError::Conflict(_))
    ));
    edit.phone = jane.phone.clone();

    // Only pending contacts can be removed.
    assert!(matches!(
        s.delete_contact(peter.id).await,
        Err(StoreError::Conflict(_))
    ));
    s.claim_contact(jane.id, &[ContactStatus::Pending], NOW)
        .await
        .unwrap()
        .unwrap();
    edit.status = ContactStatus::Completed;
    assert!(matches!(
        s.update_contact(jane.id, &edit, NOW).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.delete_contact(jane.id).await,
        Err(StoreError::Conflict(_))
    ));

    // Filters.
    let list = |f: ContactFilter| async move {
        s.list_contacts(a, &f, Page::new(100, 0))
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|c| c.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        list(ContactFilter {
            tags: vec!["vip".into()],
            ..ContactFilter::default()
        })
        .await,
        vec![john.id, jane.id, peter.id]
    );
    assert_eq!(
        list(ContactFilter {
            tags: vec!["east".into(), "west".into()],
            ..ContactFilter::default()
        })
        .await,
        vec![john.id, jane.id]
    );
    assert_eq!(
        list(ContactFilter {
            statuses: vec![ContactStatus::Dialing, ContactStatus::NotAnswered],
            ..ContactFilter::default()
        })
        .await,
        vec![jane.id, peter.id]
    );
    assert_eq!(
        list(ContactFilter {
            search: Some("WHATSAPP".into()),
            ..ContactFilter::default()
        })
        .await,
        vec![peter.id]
    );
    assert_eq!(
        list(ContactFilter {
            search: Some("john".into()),
            ..ContactFilter::default()
        })
        .await,
        vec![john.id]
    );
    assert_eq!(
        list(ContactFilter {
            search: Some("5550103".into()),
            ..ContactFilter::default()
        })
        .await,
        vec![peter.id]
    );
    assert_eq!(
        list(ContactFilter {
            search: Some("100%".into()),
            ..ContactFilter::default()
        })
        .await,
        Vec::<i64>::new()
    );
    // Retries: jane was claimed once (attempts 1, retries 0); claim her again → retries 1.
    s.transition_contact(
        jane.id,
        &[ContactStatus::Dialing],
        &ContactTransition {
            status: ContactStatus::Retry,
            next_attempt_at: Some(NOW),
            last_outcome: Some("busy".into()),
        },
        NOW,
    )
    .await
    .unwrap()
    .unwrap();
    let again = s
        .claim_contact(jane.id, &[ContactStatus::Retry], NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.attempts, again.retries), (2, 1));
    assert_eq!(again.last_outcome.as_deref(), Some("busy"));
    assert_eq!(
        list(ContactFilter {
            min_retries: Some(1),
            ..ContactFilter::default()
        })
        .await,
        vec![jane.id]
    );
    assert_eq!(
        list(ContactFilter {
            max_retries: Some(0),
            tags: vec!["vip".into()],
            ..ContactFilter::default()
        })
        .await,
        vec![john.id, peter.id]
    );

    // Paging: 23 contacts in campaign a, by id.
    let p1 = s
        .list_contacts(a, &ContactFilter::default(), Page::new(10, 0))
        .await
        .unwrap();
    let p3 = s
        .list_contacts(a, &ContactFilter::default(), Page::new(10, 20))
        .await
        .unwrap();
    assert_eq!((p1.total, p1.items.len()), (23, 10));
    assert_eq!((p3.total, p3.items.len()), (23, 3));
    assert!(p1.items.windows(2).all(|w| w[0].id < w[1].id));
    assert!(p1.items.last().unwrap().id < p3.items[0].id);

    s.delete_contact(john.id).await.unwrap();
    assert!(matches!(
        s.delete_contact(john.id).await,
        Err(StoreError::NotFound(_))
    ));
    let fillers: Vec<i64> = p3.items.iter().map(|c| c.id).collect();
    assert_eq!(
        s.delete_pending_contacts(a, &[fillers[0], fillers[1], peter.id])
            .await
            .unwrap(),
        2
    );
}

async fn claim_is_exclusive_under_concurrency(db: &TestDb) {
    let s = &db.store;
    let id = campaign(s, "race").await;
    let batch: Vec<_> = (0..100)
        .map(|i| contact(&format!("+1415555{i:04}"), ""))
        .collect();
    assert_eq!(s.bulk_insert_contacts(id, &batch, NOW).await.unwrap(), 100);
    let ids: Arc<Vec<i64>> = Arc::new(
        s.list_contacts(id, &ContactFilter::default(), Page::new(1000, 0))
            .await
            .unwrap()
            .items
            .iter()
            .map(|c| c.id)
            .collect(),
    );
    let mut tasks = Vec::new();
    for node in 0..2 {
        let store = s.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            // The two nodes walk the list in opposite directions and meet in the middle.
            let order: Vec<i64> = if node == 0 {
                ids.iter().copied().collect()
            } else {
                ids.iter().rev().copied().collect()
            };
            for cid in order {
                if let Some(c) = store
                    .claim_contact(cid, &[ContactStatus::Pending, ContactStatus::Retry], NOW)
                    .await
                    .unwrap()
                {
                    assert_eq!(c.status, ContactStatus::Dialing);
                    won.push(cid);
                }
            }
            won
        }));
    }
    let mut claimed: HashMap<i64, u32> = HashMap::new();
    for t in tasks {
        for cid in t.await.unwrap() {
            *claimed.entry(cid).or_default() += 1;
        }
    }
    assert_eq!(claimed.len(), 100);
    assert!(claimed.values().all(|n| *n == 1), "{claimed:?}");
    let all = s
        .list_contacts(id, &ContactFilter::default(), Page::new(1000, 0))
        .await
        .unwrap();
    assert!(all
        .items
        .iter()
        .all(|c| c.status == ContactStatus::Dialing && c.attempts == 1 && c.retries == 0));
}

async fn due_contacts_order_and_time(db: &TestDb) {
    let s = &db.store;
    let id = campaign(s, "due").await;
    let other = campaign(s, "other").await;
    let add = |phone: &str, status: ContactStatus, next: Option<i64>| NewContact {
        status,
        next_attempt_at: next,
        ..NewContact::new(phone)
    };
    let rows = vec![
        add("+15550000001", ContactStatus::Pending, Some(NOW - 10)),
        add("+15550000002", ContactStatus::Pending, None),
        add("+15550000003", ContactStatus::Retry, Some(NOW - 20)),
        add("+15550000004", ContactStatus::Retry, Some(NOW + 10)),
        add("+15550000005", ContactStatus::Completed, None),
        add("+15550000006", ContactStatus::Pending, None),
        add("+15550000007", ContactStatus::Retry, Some(NOW)),
        add("+15550000008", ContactStatus::NotAnswered, Some(NOW - 100)),
    ];
    s.bulk_insert_contacts(id, &rows, NOW).await.unwrap();
    s.bulk_insert_contacts(
        other,
        &[add("+15550000009", ContactStatus::Pending, None)],
        NOW,
    )
    .await
    .unwrap();
    let phone_of = |cs: Vec<outdial::campaign::model::Contact>| {
        cs.into_iter()
            .map(|c| c.phone[c.phone.len() - 1..].to_string())
            .collect::<Vec<_>>()
            .join("")
    };
    let due = s.due_contacts(id, NOW, 100).await.unwrap();
    assert_eq!(phone_of(due), "26317");
    let due = s.due_contacts(id, NOW, 3).await.unwrap();
    assert_eq!(phone_of(due), "263");
    let later = s.due_contacts(id, NOW + 10, 100).await.unwrap();
    assert_eq!(phone_of(later), "263174");
    let early = s.due_contacts(id, NOW - 15, 100).await.unwrap();
    assert_eq!(phone_of(early), "263");
    // A claimed contact is no longer due.
    let first = s.due_contacts(id, NOW, 1).await.unwrap().remove(0);
    s.claim_contact(first.id, &[ContactStatus::Pending], NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        phone_of(s.due_contacts(id, NOW, 100).await.unwrap()),
        "6317"
    );
    assert!(s.due_contacts(id, NOW, 0).await.unwrap().is_empty());
}

async fn contact_lifecycle_helpers(db: &TestDb) {
    let s = &db.store;
    let id = campaign(s, "life").await;
    let batch: Vec<_> = (0..5)
        .map(|i| contact(&format!("+1612555000{i}"), ""))
        .collect();
    s.bulk_insert_contacts(id, &batch, NOW).await.unwrap();
    let cs = s
        .list_contacts(id, &ContactFilter::default(), Page::default())
        .await
        .unwrap()
        .items;
    assert_eq!(s.count_non_final(id).await.unwrap(), 5);
    for (c, status) in cs.iter().zip([
        ContactStatus::Answered,
        ContactStatus::NotAnswered,
        ContactStatus::Called,
    ]) {
        s.claim_contact(c.id, &[ContactStatus::Pending], NOW)
            .await
            .unwrap()
            .unwrap();
        let moved = s
            .transition_contact(
                c.id,
                &[ContactStatus::Dialing],
                &ContactTransition {
                    status,
                    next_attempt_at: None,
                    last_outcome: Some(status.as_str().into()),
                },
                NOW + 1,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(moved.status, status);
    }
    // The status moved on: a second transition from dialing does nothing.
    assert!(s
        .transition_contact(
            cs[0].id,
            &[ContactStatus::Dialing],
            &ContactTransition {
                status: ContactStatus::Failed,
                next_attempt_at: None,
                last_outcome: None,
            },
            NOW,
        )
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        s.transition_contact(
            987_654,
            &[],
            &ContactTransition {
                status: ContactStatus::Failed,
                next_attempt_at: None,
                last_outcome: None,
            },
            NOW
        )
        .await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.count_non_final(id).await.unwrap(), 3); // called + 2 pending
    assert!(s.has_non_final(id).await.unwrap());
    assert!(
        !s.has_non_final(987_654).await.unwrap(),
        "no contacts, nothing left"
    );

    // The completion timeout turns old `called` contacts into `completed`.
    assert_eq!(
        s.complete_called_contacts(id, NOW, NOW + 2).await.unwrap(),
        0
    );
    assert_eq!(
        s.complete_called_contacts(id, NOW + 1, NOW + 2)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.get_contact(cs[2].id).await.unwrap().status,
        ContactStatus::Completed
    );

    // Manual retry: final ones go to retry now; pending ones are left alone.
    let n = s
        .manual_retry(&[cs[0].id, cs[1].id, cs[3].id], NOW + 5)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let retried = s.get_contact(cs[1].id).await.unwrap();
    assert_eq!(retried.status, ContactStatus::Retry);
    assert_eq!(retried.next_attempt_at, Some(NOW + 5));

    // Restart: everyone pending, counters cleared, with the status change.
    let (restarted, reset, deferred) = s
        .restart_campaign(id, CampaignStatus::New, CampaignStatus::Processing, NOW + 9)
        .await
        .unwrap();
    assert_eq!(
        (restarted.status, reset, deferred),
        (CampaignStatus::Processing, 5, 0)
    );
    let after = s
        .list_contacts(id, &ContactFilter::default(), Page::default())
        .await
        .unwrap()
        .items;
    assert!(after.iter().all(|c| c.status == ContactStatus::Pending
        && c.attempts == 0
        && c.retries == 0
        && c.next_attempt_at.is_none()));
    assert_eq!(s.count_non_final(id).await.unwrap(), 5);
}

fn full_record(campaign_id: i64, contact_id: i64) -> AttemptRecord {
    AttemptRecord {
        campaign_id: Some(campaign_id),
        contact_id: Some(contact_id),
        attempt_number: 2,
        call_id: "a84b4c76e66710@pc33".into(),
        sip_profile: "carrier-a".into(),
        caller_id: "+12025550100".into(),
        billable_account: "acct-42".into(),
        destination: "+12025550101".into(),
        started_at: NOW,
        ended_at: Some(NOW + 25_000),
        ring_ms: Some(1_200),
        answer_ms: Some(6_400),
        duration_ms: 18_600,
        sip_code: Some(200),
        reason: "OK".into(),
        outcome: "answered".into(),
        ended_by: Some(EndedBy::Agent),
        codec: Some("PCMU".into()),
        amd_mode: Some("heuristic".into()),
        amd_verdict: Some("MACHINE".into()),
        answered_by: Some("machine_end_beep".into()),
        amd_cause: Some("LONGGREETING".into()),
        amd_confidence: Some(0.875),
        amd_decision_ms: Some(2_340),
        beep_ms: Some(7_020),
        rtp_sent: 930,
        rtp_received: 925,
        rtp_lost: 5,
        jitter_ms: Some(3.25),
        rtt_ms: Some(41.5),
        recording_path: Some("recordings/a84b4c76e66710.wav".into()),
        dtmf: "12#".into(),
        digits: "1".into(),
        recording: Some("recordings/a84b4c76e66710-reply.wav".into()),
        trunk: Some("west".into()),
        failover: vec![outdial::sip::trunks::TrunkTry {
            trunk: "east".into(),
            code: Some(503),
            reason: "Service Unavailable".into(),
        }],
        sit: Some("VC".into()),
        rtp_rejected_source: 3,
        rtp_latched_to: Some("192.0.2.7:40000".into()),
        direction: outdial::store::attempts::CallDirection::Outbound,
        bridge: BridgeRecord {
            agent_call_id: Some("b2b-leg-7@outdial".into()),
            agent_id: Some(7),
            agent_name: Some("alice".into()),
            agent_ring_at: Some(NOW + 9_000),
            agent_answer_at: Some(NOW + 9_800),
            bridge_start_at: Some(NOW + 9_850),
            bridge_end_at: Some(NOW + 24_850),
            talk_ms: Some(15_000),
            queue_wait_ms: Some(1_450),
            agent_idle_ms: Some(42_000),
            abandoned: false,
            bridge_kind: Some("twilio_ws".into()),
            bridge_target: Some("wss://agents.example.com/media".into()),
            call_sid: Some("CA0123456789abcdef0123456789abcdef".into()),
            agent_first_audio_ms: Some(180),
            agent_marks: Some(12),
            agent_clears: Some(2),
        },
    }
}

/// A statement first run with NULL reals and then with values, on every pooled connection
/// (one after the other, so each connection prepares it with the NULLs first): the values
/// are stored, not refused for their binary format.
async fn optional_reals_are_stored_after_nulls_on_every_connection(db: &TestDb) {
    let s = &db.store;
    let id = campaign(s, "reals").await;
    let c = s
        .create_contact(id, &contact("+12025550101", "Real"), NOW)
        .await
        .unwrap();
    for with_values in [false, true] {
        for i in 0..12 {
            let mut record = full_record(id, c.id);
            record.call_id = format!("reals-{with_values}-{i}");
            if !with_values {
                (record.amd_confidence, record.jitter_ms, record.rtt_ms) = (None, None, None);
            }
            let aid = s.insert_attempt(&record).await.unwrap();
            let stored = s.get_attempt(aid).await.unwrap().record;
            assert_eq!(stored.amd_confidence, record.amd_confidence);
            assert_eq!(stored.jitter_ms, record.jitter_ms);
        }
    }
}

async fn attempt_cdr_round_trip_and_filters(db: &TestDb) {
    let s = &db.store;
    let id = campaign(s, "cdr").await;
    let vip = s
        .create_contact(
            id,
            &NewContact {
                tags: vec!["vip".into()],
                ..contact("+12025550101", "John Doe")
            },
            NOW,
        )
        .await
        .unwrap();
    let plain = s
        .create_contact(id, &contact("+12025550102", "Jane"), NOW)
        .await
        .unwrap();
    let record = full_record(id, vip.id);
    let aid = s.insert_attempt(&record).await.unwrap();
    let got = s.get_attempt(aid).await.unwrap();
    assert_eq!(got.id, aid);
    assert_eq!(got.record, record);
    // A bare record (every option None) round-trips too.
    let bare = AttemptRecord {
        campaign_id: Some(id),
        contact_id: Some(plain.id),
        attempt_number: 1,
        started_at: NOW + 60_000,
        outcome: "busy".into(),
        sip_code: Some(486),
        ..AttemptRecord::default()
    };
    let bid = s.insert_attempt(&bare).await.unwrap();
    assert_eq!(s.get_attempt(bid).await.unwrap().record, bare);
    // What the message plan gathered is set after the call, and can be cleared.
    s.set_attempt_plan_result(bid, "19", Some("recordings/reply.wav"))
        .await
        .unwrap();
    let got = s.get_attempt(bid).await.unwrap().record;
    assert_eq!(
        (got.digits.as_str(), got.recording.as_deref()),
        ("19", Some("recordings/reply.wav"))
    );
    assert_eq!(got.outcome, "busy", "other fields stay as they were");
    s.set_attempt_plan_result(bid, "", None).await.unwrap();
    assert_eq!(s.get_attempt(bid).await.unwrap().record, bare);
    assert!(matches!(
        s.set_attempt_plan_result(424_242, "1", None).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.insert_attempt(&AttemptRecord {
            campaign_id: Some(424_242),
            ..bare.clone()
        })
        .await,
        Err(StoreError::Conflict(_))
    ));

    let list = |f: AttemptFilter| async move {
        let page = s.list_attempts(&f, Page::default()).await.unwrap();
        (
            page.total,
            page.items.into_iter().map(|a| a.id).collect::<Vec<_>>(),
        )
    };
    let for_campaign = AttemptFilter {
        campaign_id: Some(id),
        ..AttemptFilter::default()
    };
    assert_eq!(list(for_campaign.clone()).await, (2, vec![bid, aid]));
    assert_eq!(
        list(AttemptFilter {
            outcomes: vec!["answered".into()],
            ..for_campaign.clone()
        })
        .await,
        (1, vec![aid])
    );
    let mut tagged = for_campaign.clone();
    tagged.contact.tags = vec!["vip".into()];
    assert_eq!(list(tagged).await, (1, vec![aid]));
    let mut text = for_campaign.clone();
    text.contact.search = Some("jane".into());
    assert_eq!(list(text).await, (1, vec![bid]));
    let mut by_status = for_campaign.clone();
    by_status.contact.statuses = vec![ContactStatus::Pending];
    assert_eq!(list(by_status).await.0, 2);
    let mut retried = for_campaign.clone();
    retried.contact.min_retries = Some(1);
    assert_eq!(list(retried).await.0, 0);
    assert_eq!(
        list(AttemptFilter {
            since: Some(NOW + 1),
            ..for_campaign.clone()
        })
        .await,
        (1, vec![bid])
    );
    assert_eq!(
        list(AttemptFilter {
            contact_id: Some(vip.id),
            ..AttemptFilter::default()
        })
        .await,
        (1, vec![aid])
    );

    let report = s.campaign_report(id, "UTC").await.unwrap();
    assert_eq!(
        (
            report.calls.answered,
            report.calls.not_answered,
            report.calls.total
        ),
        (1, 1, 2)
    );
    // A callback is on the contact's record but not in the dialing figures.
    let callback = AttemptRecord {
        direction: outdial::store::attempts::CallDirection::Inbound,
        started_at: NOW + 120_000,
        ..full_record(id, vip.id)
    };
    let cid = s.insert_attempt(&callback).await.unwrap();
    assert_eq!(s.get_attempt(cid).await.unwrap().record, callback);
    assert_eq!(list(for_campaign.clone()).await, (3, vec![cid, bid, aid]));
    let report = s.campaign_report(id, "UTC").await.unwrap();
    assert_eq!(
        (
            report.calls.answered,
            report.calls.not_answered,
            report.calls.total
        ),
        (1, 1, 2)
    );
    assert_eq!(report.contacts.get(ContactStatus::Pending), 2);
    assert!(matches!(
        s.campaign_report(id, "Mars/Olympus").await,
        Err(StoreError::Invalid(_))
    ));
}

async fn heat_map_in_new_york(db: &TestDb) {
    let s = &db.store;
    let id = campaign(s, "heat").await;
    let at = |utc: &str| {
        chrono::DateTime::parse_from_rfc3339(utc)
            .unwrap()
            .timestamp_millis()
    };
    let attempts = [
        // Winter (EST, UTC-5): Monday 2024-01-01 00:30 UTC = Sunday 19:30 in New York.
        ("2024-01-01T00:30:00Z", "answered"),
        ("2024-01-01T00:59:59Z", "no_answer"),
        // Summer (EDT, UTC-4): Monday 2024-07-01 13:00 UTC = Monday 09:00.
        ("2024-07-01T13:00:00Z", "answered"),
        ("2024-07-01T13:45:00Z", "answered"),
        ("2024-07-01T13:59:00Z", "busy"),
        // Monday 2024-07-01 03:59 UTC = Sunday 23:59 in New York.
        ("2024-06-30T03:59:00Z", "failed"),
        // Saturday 2024-07-06 16:15 UTC = Saturday 12:15 EDT.
        ("2024-07-06T16:15:00Z", "answered"),
    ];
    for (when, outcome) in attempts {
        s.insert_attempt(&AttemptRecord {
            campaign_id: Some(id),
            started_at: at(when),
            outcome: outcome.into(),
            ..AttemptRecord::default()
        })
        .await
        .unwrap();
    }
    // Another campaign's attempts stay out of this map.
    let other = campaign(s, "other").await;
    s.insert_attempt(&AttemptRecord {
        campaign_id: Some(other),
        started_at: at("2024-07-01T13:00:00Z"),
        outcome: "answered".into(),
        ..AttemptRecord::default()
    })
    .await
    .unwrap();

    let map = s.heat_map(id, "America/New_York").await.unwrap();
    assert_eq!(map.timezone, "America/New_York");
    assert_eq!((map.cells.len(), map.cells[0].len()), (7, 24));
    let cell = |d: usize, h: usize| (map.cell(d, h).attempts, map.cell(d, h).answered);
    assert_eq!(cell(6, 19), (2, 1)); // Sunday 19:00
    assert_eq!(cell(0, 9), (3, 2)); // Monday 09:00
    assert_eq!(cell(5, 23), (1, 0)); // Saturday 23:59 (2024-06-29)
    assert_eq!(cell(5, 12), (1, 1)); // Saturday 12:00
    let total: i64 = map.cells.iter().flatten().map(|c| c.attempts).sum();
    assert_eq!(total, 7);
    // The same attempts in UTC.
    let utc = s.heat_map(id, "UTC").await.unwrap();
    assert_eq!(utc.cell(0, 0).attempts, 2);
    assert_eq!(utc.cell(0, 13).attempts, 3);
}

async fn dnc_list(db: &TestDb) {
    let s = &db.store;
    let acme = s.create_account("acme", "Acme", NOW).await.unwrap().id;
    let other = s.create_account("other", "Other", NOW).await.unwrap().id;
    let mine = DncList::Account(acme);
    let e = s
        .add_dnc(mine, "+12025550101", "asked not to call", NOW)
        .await
        .unwrap();
    assert_eq!(
        (e.phone.as_str(), e.account_id),
        ("+12025550101", Some(acme))
    );
    assert!(matches!(
        s.add_dnc(mine, "+12025550101", "again", NOW).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.add_dnc(mine, "call me", "", NOW).await,
        Err(StoreError::Invalid(_))
    ));
    // The same number may be on another account's list and on the global one.
    s.add_dnc(DncList::Account(other), "+12025550101", "", NOW)
        .await
        .unwrap();
    s.add_dnc(DncList::Global, "+442071234567", "UK TPS", NOW)
        .await
        .unwrap();
    assert!(matches!(
        s.add_dnc(DncList::Global, "+442071234567", "twice", NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    s.add_dnc(mine, "+442071234567", "UK TPS", NOW)
        .await
        .unwrap();
    // One check, both lists: an account's own numbers and the global ones.
    assert!(s.dnc_contains(Some(acme), "+12025550101").await.unwrap());
    assert!(!s.dnc_contains(None, "+12025550101").await.unwrap());
    assert!(s.dnc_contains(None, "+442071234567").await.unwrap());
    assert!(!s.dnc_contains(Some(acme), "+12025550102").await.unwrap());
    let all = s.list_dnc(mine, None, Page::default()).await.unwrap();
    assert_eq!(all.total, 2);
    assert_eq!(all.items[0].phone, "+12025550101");
    assert_eq!(all.items[0], e);
    let uk = s
        .list_dnc(mine, Some("tps"), Page::default())
        .await
        .unwrap();
    assert_eq!((uk.total, uk.items[0].phone.as_str()), (1, "+442071234567"));
    let global = s
        .list_dnc(DncList::Global, None, Page::default())
        .await
        .unwrap();
    assert_eq!((global.total, global.items[0].account_id), (1, None));
    s.delete_dnc(mine, "+12025550101").await.unwrap();
    assert!(!s.dnc_contains(Some(acme), "+12025550101").await.unwrap());
    assert!(s.dnc_contains(Some(other), "+12025550101").await.unwrap());
    assert!(matches!(
        s.delete_dnc(mine, "+12025550101").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.get_dnc(DncList::Account(other), "+442071234567").await,
        Err(StoreError::NotFound(_))
    ));
}

async fn business_hours_crud(db: &TestDb) {
    let s = &db.store;
    let spec = week_9_to_5();
    let acme = s.create_account("acme", "Acme", NOW).await.unwrap().id;
    let stranger = s.create_account("stranger", "", NOW).await.unwrap().id;
    let h = s
        .create_business_hours(Some(acme), &spec, NOW)
        .await
        .unwrap();
    // Another account neither sees nor changes it.
    assert!(matches!(
        s.account_business_hours(stranger, h.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(s.list_business_hours(stranger).await.unwrap().is_empty());
    assert!(matches!(
        s.update_business_hours(stranger, h.id, &spec, NOW).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.delete_business_hours(stranger, h.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.account_business_hours(acme, h.id).await.unwrap(), h);
    assert_eq!(h.spec, spec);
    assert_eq!(s.get_business_hours(h.id).await.unwrap(), h);
    let mut changed = spec.clone();
    changed.name = "Weekends".into();
    changed.timezone = "Europe/London".into();
    changed.week[5] = vec![OpenHours {
        start: "10:00".into(),
        end: "24:00".into(),
    }];
    changed.closed_dates.clear();
    let h2 = s
        .update_business_hours(acme, h.id, &changed, NOW)
        .await
        .unwrap();
    assert_eq!(h2.spec, changed);
    let mut bad = spec.clone();
    bad.timezone = "Nowhere/Else".into();
    assert!(matches!(
        s.create_business_hours(Some(acme), &bad, NOW).await,
        Err(StoreError::Invalid(_))
    ));
    let other = s
        .create_business_hours(Some(acme), &spec, NOW)
        .await
        .unwrap();
    let names: Vec<_> = s
        .list_business_hours(acme)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.spec.name)
        .collect();
    assert_eq!(names, vec!["Office", "Weekends"]);

    // In use by a campaign: cannot be deleted.
    let st = CampaignSettings {
        business_hours_id: Some(h.id),
        ..settings("hours")
    };
    let c = s
        .create_campaign(None, &st, CampaignStatus::New, NOW)
        .await
        .unwrap();
    let in_use = s.delete_business_hours(acme, h.id).await;
    assert!(matches!(in_use, Err(StoreError::Conflict(_))), "{in_use:?}");
    s.delete_business_hours(acme, other.id).await.unwrap();
    s.delete_campaign(c.id).await.unwrap();
    s.delete_business_hours(acme, h.id).await.unwrap();
    assert!(matches!(
        s.get_business_hours(h.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.update_business_hours(acme, h.id, &spec, NOW).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn export_jobs(db: &TestDb) {
    let s = &db.store;
    let id = campaign(s, "exports").await;
    let params = serde_json::json!({"filter": {"statuses": ["pending"], "tags": ["vip"]}});
    let job = s
        .create_export(
            &NewExport {
                campaign_id: id,
                format: ExportFormat::CsvSemicolon,
                scope: ExportScope::Filtered,
                params: params.clone(),
                node: None,
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(job.status, ExportStatus::Queued);
    assert_eq!(job.params, params);
    assert_eq!(
        (job.row_count, job.has_content, job.finished_at),
        (0, false, None)
    );
    let running = s
        .update_export(
            job.id,
            &ExportUpdate::status(ExportStatus::Running),
            NOW + 1,
        )
        .await
        .unwrap();
    assert_eq!(
        (running.status, running.finished_at),
        (ExportStatus::Running, None)
    );
    let bytes = b"phone;name\n+12025550101;John\n".to_vec();
    let done = s
        .update_export(
            job.id,
            &ExportUpdate {
                status: ExportStatus::Done,
                file_path: Some("exports/7.csv".into()),
                row_count: Some(1),
                error: None,
                content: Some(bytes.clone()),
            },
            NOW + 2,
        )
        .await
        .unwrap();
    assert_eq!(done.status, ExportStatus::Done);
    assert_eq!(done.finished_at, Some(NOW + 2));
    assert_eq!(done.row_count, 1);
    assert!(done.has_content);
    assert_eq!(done.file_path.as_deref(), Some("exports/7.csv"));
    assert_eq!(s.export_content(job.id).await.unwrap(), Some(bytes));
    assert_eq!(s.get_export(job.id).await.unwrap(), done);

    let failed = s
        .create_export(
            &NewExport {
                campaign_id: id,
                format: ExportFormat::Xlsx,
                scope: ExportScope::Selection,
                params: serde_json::json!({"ids": [1, 2, 3]}),
                node: None,
            },
            NOW + 3,
        )
        .await
        .unwrap();
    let failed = s
        .update_export(
            failed.id,
            &ExportUpdate {
                error: Some("disk full".into()),
                ..ExportUpdate::status(ExportStatus::Failed)
            },
            NOW + 4,
        )
        .await
        .unwrap();
    assert_eq!(failed.error.as_deref(), Some("disk full"));
    assert_eq!(s.export_content(failed.id).await.unwrap(), None);
    let list = s.list_exports(Some(id), Page::default()).await.unwrap();
    assert_eq!(list.total, 2);
    assert_eq!(
        list.items.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![failed.id, job.id]
    );
    assert_eq!(
        s.list_exports(Some(id + 1000), Page::default())
            .await
            .unwrap()
            .total,
        0
    );
    assert_eq!(
        s.list_exports(None, Page::new(1, 1)).await.unwrap().items[0].id,
        job.id
    );
    assert!(matches!(
        s.create_export(
            &NewExport {
                campaign_id: 424_242,
                format: ExportFormat::CsvComma,
                scope: ExportScope::Campaign,
                params: serde_json::Value::Null,
                node: None,
            },
            NOW
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.get_export(424_242).await,
        Err(StoreError::NotFound(_))
    ));
}

/// A node fails only its own unfinished export jobs (and, at its start, those that name no
/// node): another live node's job is left running.
async fn interrupted_exports_are_failed_per_node(db: &TestDb) {
    let s = &db.store;
    let id = campaign(s, "exports-per-node").await;
    let mut jobs = Vec::new();
    for node in [Some("node-a"), Some("node-b"), None] {
        let job = s
            .create_export(
                &NewExport {
                    campaign_id: id,
                    format: ExportFormat::CsvComma,
                    scope: ExportScope::Campaign,
                    params: serde_json::Value::Null,
                    node: node.map(str::to_string),
                },
                NOW,
            )
            .await
            .unwrap();
        jobs.push(job.id);
    }
    // node-b is writing its file.
    s.update_export(
        jobs[1],
        &ExportUpdate::status(ExportStatus::Running),
        NOW + 1,
    )
    .await
    .unwrap();
    // node-a starts again: its own job and the unowned one fail, node-b's runs on.
    assert_eq!(
        s.fail_exports_of_node("node-a", true, "interrupted", NOW + 2)
            .await
            .unwrap(),
        2
    );
    let status = |job: outdial::store::ExportJob| (job.status, job.error);
    assert_eq!(
        status(s.get_export(jobs[0]).await.unwrap()),
        (ExportStatus::Failed, Some("interrupted".into()))
    );
    assert_eq!(
        s.get_export(jobs[1]).await.unwrap().status,
        ExportStatus::Running
    );
    assert_eq!(
        s.get_export(jobs[2]).await.unwrap().status,
        ExportStatus::Failed
    );
    // node-b found dead: its job fails; a finished job is never touched.
    assert_eq!(
        s.fail_exports_of_node("node-b", false, "interrupted", NOW + 3)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.get_export(jobs[1]).await.unwrap().status,
        ExportStatus::Failed
    );
    assert_eq!(
        s.fail_exports_of_node("node-b", true, "again", NOW + 4)
            .await
            .unwrap(),
        0
    );
}

async fn api_keys_and_sessions(db: &TestDb) {
    let s = &db.store;
    let alice = s.create_account("alice", "Alice", NOW).await.unwrap();
    let bob = s.create_account("bob", "Bob", NOW).await.unwrap();
    assert!(matches!(
        s.create_account("alice", "again", NOW).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.account_by_login("bob").await.unwrap(), Some(bob.clone()));
    let key = s.create_api_key(alice.id, "ci", NOW).await.unwrap();
    assert!(key.secret.starts_with("odk_"));
    assert!(key.secret.starts_with(&format!("odk_{}", key.key.prefix)));
    // Only the hash is stored.
    let stored: Vec<String> = sqlx::query_scalar("SELECT hash FROM api_keys")
        .fetch_all(s.pool())
        .await
        .unwrap();
    assert!(stored
        .iter()
        .all(|h| h.len() == 64 && !key.secret.contains(h.as_str())));

    let ok = s
        .verify_api_key(Some("alice"), &key.secret, NOW + 10)
        .await
        .unwrap()
        .expect("the right key");
    assert_eq!(ok.account, alice);
    assert_eq!(ok.key_id, Some(key.key.id));
    assert!(s
        .verify_api_key(None, &key.secret, NOW)
        .await
        .unwrap()
        .is_some());
    assert!(s
        .verify_api_key(Some("bob"), &key.secret, NOW)
        .await
        .unwrap()
        .is_none());
    let mut wrong = key.secret.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });
    assert!(s
        .verify_api_key(Some("alice"), &wrong, NOW)
        .await
        .unwrap()
        .is_none());
    assert!(s
        .verify_api_key(None, "odk_nothex", NOW)
        .await
        .unwrap()
        .is_none());
    assert!(s.verify_api_key(None, "", NOW).await.unwrap().is_none());
    let keys = s.list_api_keys(alice.id).await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].last_used_at, Some(NOW));
    s.revoke_api_key(key.key.id, NOW + 20).await.unwrap();
    assert!(s
        .verify_api_key(Some("alice"), &key.secret, NOW)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.list_api_keys(alice.id).await.unwrap()[0].revoked_at,
        Some(NOW + 20)
    );
    assert!(matches!(
        s.revoke_api_key(424_242, NOW).await,
        Err(StoreError::NotFound(_))
    ));
    let second = s.create_api_key(alice.id, "", NOW).await.unwrap();
    assert!(s
        .verify_api_key(Some("alice"), &second.secret, NOW)
        .await
        .unwrap()
        .is_some());

    // Sessions: opened with a key, ended with it.
    let bob_key = s.create_api_key(bob.id, "", NOW).await.unwrap();
    let bob_who = s
        .verify_api_key(Some("bob"), &bob_key.secret, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bob_who.login.role, Role::Admin);
    let (session, token) = s.create_session(&bob_who, 60_000, NOW).await.unwrap();
    assert_eq!(session.expires_at, NOW + 60_000);
    let who = s
        .verify_session(&token, NOW + 59_999)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (who.account.id, who.key_id, who.login.login.as_str()),
        (bob.id, Some(bob_key.key.id), "bob")
    );
    assert!(s
        .verify_session(&token, NOW + 60_000)
        .await
        .unwrap()
        .is_none());
    assert!(s.verify_session("ods_forged", NOW).await.unwrap().is_none());
    assert!(s.verify_session(&key.secret, NOW).await.unwrap().is_none());
    assert_eq!(s.purge_sessions(NOW + 60_000).await.unwrap(), 1);
    let (_, token2) = s.create_session(&bob_who, 60_000, NOW).await.unwrap();
    assert!(s.delete_session(&token2).await.unwrap());
    assert!(s.verify_session(&token2, NOW).await.unwrap().is_none());
    assert!(!s.delete_session(&token2).await.unwrap());
    // Revoking the key ends the sessions it opened.
    let (_, token3) = s.create_session(&bob_who, 60_000, NOW).await.unwrap();
    assert!(s.verify_session(&token3, NOW).await.unwrap().is_some());
    s.revoke_api_key(bob_key.key.id, NOW).await.unwrap();
    assert!(s.verify_session(&token3, NOW).await.unwrap().is_none());

    // Logins: an operator beside the admin; the last admin stays.
    let op = s
        .create_login(alice.id, "alice-ops", Role::Operator, NOW)
        .await
        .unwrap();
    assert!(matches!(
        s.create_login(bob.id, "alice-ops", Role::Admin, NOW).await,
        Err(StoreError::Conflict(_))
    ));
    let op_key = s.create_login_key(op.id, "ops", NOW).await.unwrap();
    let as_op = s
        .verify_api_key(Some("alice-ops"), &op_key.secret, NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (as_op.account.id, as_op.login.role),
        (alice.id, Role::Operator)
    );
    assert_eq!(s.list_logins(alice.id).await.unwrap().len(), 2);
    assert!(matches!(
        s.get_login(bob.id, op.id).await,
        Err(StoreError::NotFound(_))
    ));
    let admin = s.login_by_name("alice").await.unwrap().unwrap();
    assert!(matches!(
        s.delete_login(alice.id, admin.id).await,
        Err(StoreError::Conflict(_))
    ));
    s.delete_login(alice.id, op.id).await.unwrap();
    assert!(s
        .verify_api_key(None, &op_key.secret, NOW)
        .await
        .unwrap()
        .is_none());
    s.delete_account(bob.id).await.unwrap();
    assert!(matches!(
        s.get_account(bob.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.list_accounts().await.unwrap(), vec![alice]);
}

async fn bulk_insert_dedupes(db: &TestDb) {
    let s = &db.store;
    let id = campaign(s, "import").await;
    let other = campaign(s, "other").await;
    s.create_contact(id, &contact("+12025550101", "Existing"), NOW)
        .await
        .unwrap();
    s.create_contact(other, &contact("+12025550102", "Elsewhere"), NOW)
        .await
        .unwrap();
    let mut batch = vec![
        contact("+12025550101", "Existing again"), // already in the campaign
        contact("+12025550102", "Jane"),           // only in another campaign
        contact("+12025550103", "Peter"),
        contact("+12025550103", "Peter twice"), // twice in the file
    ];
    // Enough rows for more than one INSERT chunk.
    for i in 0..4_500 {
        batch.push(NewContact {
            tags: vec!["import".into()],
            comments: format!("row {i}"),
            ..contact(&format!("+1718{i:07}"), &format!("Person {i}"))
        });
    }
    let inserted = s.bulk_insert_contacts(id, &batch, NOW).await.unwrap();
    assert_eq!(inserted, 2 + 4_500);
    let all = s
        .list_contacts(id, &ContactFilter::default(), Page::new(1, 0))
        .await
        .unwrap();
    assert_eq!(all.total, 1 + 2 + 4_500);
    let existing = s
        .contact_by_phone(id, "+12025550101")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(existing.name, "Existing");
    let peter = s
        .contact_by_phone(id, "+12025550103")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(peter.name, "Peter");
    let row = s
        .contact_by_phone(id, "+17180004499")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.tags, vec!["import".to_string()]);
    assert_eq!(row.comments, "row 4499");
    assert_eq!(row.status, ContactStatus::Pending);
    // Importing the same file again inserts nothing.
    assert_eq!(s.bulk_insert_contacts(id, &batch, NOW).await.unwrap(), 0);
    // One bad row rejects the batch, naming it.
    let err = s
        .bulk_insert_contacts(id, &[contact("+19995550000", ""), contact("oops", "")], NOW)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Invalid(m) if m.starts_with("row 2")),
        "{err}"
    );
    assert!(s
        .contact_by_phone(id, "+19995550000")
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        s.bulk_insert_contacts(424_242, &batch[..1], NOW).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn events_append_and_page(db: &TestDb) {
    let s = &db.store;
    let id = campaign(s, "events").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            s.append_event(
                Some(id),
                if i % 2 == 0 { Some(100 + i) } else { None },
                if i < 3 {
                    "contact.status"
                } else {
                    "campaign.status"
                },
                &serde_json::json!({"n": i, "to": "dialing"}),
                NOW + i,
            )
            .await
            .unwrap(),
        );
    }
    s.append_event(None, None, "system.start", &serde_json::json!({}), NOW)
        .await
        .unwrap();
    let all = s
        .list_events(&EventFilter {
            campaign_id: Some(id),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), ids);
    assert_eq!(all[2].detail, serde_json::json!({"n": 2, "to": "dialing"}));
    assert_eq!((all[2].contact_id, all[2].at), (Some(102), NOW + 2));
    let after = s
        .list_events(&EventFilter {
            campaign_id: Some(id),
            after_id: Some(ids[1]),
            limit: 2,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(after.iter().map(|e| e.id).collect::<Vec<_>>(), ids[2..4]);
    let kind = s
        .list_events(&EventFilter {
            kind: Some("campaign.status".into()),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(kind.len(), 2);
    let contact = s
        .list_events(&EventFilter {
            contact_id: Some(104),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(contact.len(), 1);
    assert_eq!(
        s.list_events(&EventFilter::default()).await.unwrap().len(),
        6
    );
}

fn sip_agent(name: &str, state: AgentState, wrap_up_secs: i64) -> AgentSpec {
    AgentSpec {
        name: name.into(),
        target: format!("sip:{name}@127.0.0.1:5070"),
        profile: String::new(),
        state,
        wrap_up_secs,
    }
}

async fn agents_and_pools_are_per_account(db: &TestDb) {
    let s = &db.store;
    let acme = s.create_account("acme", "Acme", NOW).await.unwrap().id;
    let other = s.create_account("other", "Other", NOW).await.unwrap().id;
    let alice = s
        .create_agent(
            Some(acme),
            &sip_agent("alice", AgentState::Available, 10),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(alice.spec.state, AgentState::Available);
    assert_eq!((alice.state_since, alice.idle_since), (NOW, Some(NOW)));
    let bob = s
        .create_agent(
            Some(acme),
            &AgentSpec {
                target: "+12025550150".into(),
                profile: "carrier-a".into(),
                ..sip_agent("bob", AgentState::Offline, 0)
            },
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(bob.idle_since, None);
    // Same name in the same account: conflict; in another account: fine.
    assert!(matches!(
        s.create_agent(Some(acme), &sip_agent("alice", AgentState::Paused, 0), NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let carol = s
        .create_agent(Some(other), &sip_agent("alice", AgentState::Paused, 0), NOW)
        .await
        .unwrap();
    // Invalid: a number without a profile names the field.
    match s
        .create_agent(
            Some(acme),
            &AgentSpec {
                target: "+12025550151".into(),
                ..sip_agent("dave", AgentState::Offline, 0)
            },
            NOW,
        )
        .await
    {
        Err(StoreError::Invalid(m)) => assert!(m.starts_with("profile:"), "{m}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    // Scoping: another account's agent is not found.
    assert!(matches!(
        s.get_agent(Some(other), alice.id).await,
        Err(StoreError::NotFound(_))
    ));
    let page = s
        .list_agents(Some(acme), None, Page::default())
        .await
        .unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(page.items[0].spec.name, "alice");
    let avail = s
        .list_agents(Some(acme), Some(AgentState::Available), Page::default())
        .await
        .unwrap();
    assert_eq!(avail.total, 1);
    // State changes move state_since and the idle clock.
    let paused = s
        .set_agent_state(Some(acme), alice.id, AgentState::Paused, NOW + 1_000)
        .await
        .unwrap();
    assert_eq!((paused.state_since, paused.idle_since), (NOW + 1_000, None));
    let back = s
        .set_agent_state(Some(acme), alice.id, AgentState::Available, NOW + 2_000)
        .await
        .unwrap();
    assert_eq!(back.idle_since, Some(NOW + 2_000));

    // Pools: ordered members of the account only.
    let pool = s
        .create_pool(Some(acme), "sales", &[bob.id, alice.id], NOW)
        .await
        .unwrap();
    assert_eq!(pool.agent_ids, vec![bob.id, alice.id]);
    match s
        .create_pool(Some(acme), "mixed", &[alice.id, carol.id], NOW)
        .await
    {
        Err(StoreError::Invalid(m)) => assert!(m.starts_with("agent_ids:"), "{m}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(matches!(
        s.create_pool(Some(acme), "sales", &[], NOW).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.create_pool(Some(acme), "42", &[], NOW).await,
        Err(StoreError::Invalid(_))
    ));
    let renamed = s
        .update_pool(
            Some(acme),
            pool.id,
            Some("closers"),
            Some(&[alice.id]),
            NOW + 5,
        )
        .await
        .unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.agent_ids.clone()),
        ("closers", vec![alice.id])
    );
    assert_eq!(
        s.pool_by_name(Some(acme), "closers")
            .await
            .unwrap()
            .map(|p| p.id),
        Some(pool.id)
    );
    assert_eq!(s.pool_by_name(Some(other), "closers").await.unwrap(), None);
    assert_eq!(s.list_pools(Some(acme)).await.unwrap().len(), 1);
    // Deleting an agent takes it out of its pools.
    s.delete_agent(Some(acme), alice.id).await.unwrap();
    assert!(s
        .get_pool(Some(acme), pool.id)
        .await
        .unwrap()
        .agent_ids
        .is_empty());
    s.delete_pool(Some(acme), pool.id).await.unwrap();
    assert!(matches!(
        s.get_pool(Some(acme), pool.id).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn pool_campaign(s: &Store, account: i64, pool: &str) -> i64 {
    s.create_campaign(
        Some(account),
        &CampaignSettings {
            connect_to: pool.into(),
            ..settings("queue")
        },
        CampaignStatus::New,
        NOW,
    )
    .await
    .unwrap()
    .id
}

async fn agent_lease_is_exclusive_and_release_starts_wrap_up(db: &TestDb) {
    let s = &db.store;
    let acme = s.create_account("acme", "Acme", NOW).await.unwrap().id;
    let a = s
        .create_agent(
            Some(acme),
            &sip_agent("a", AgentState::Available, 10),
            NOW - 50_000,
        )
        .await
        .unwrap();
    let b = s
        .create_agent(
            Some(acme),
            &sip_agent("b", AgentState::Available, 10),
            NOW - 90_000,
        )
        .await
        .unwrap();
    let paused = s
        .create_agent(Some(acme), &sip_agent("c", AgentState::Paused, 0), NOW)
        .await
        .unwrap();
    s.create_pool(Some(acme), "sales", &[a.id, b.id, paused.id], NOW)
        .await
        .unwrap();
    let campaign = pool_campaign(s, acme, "sales").await;
    let (pool, agents) = s.campaign_pool(campaign).await.unwrap().unwrap();
    assert_eq!(pool.name, "sales");
    assert_eq!(agents.len(), 3);

    // The longest idle (b, free since NOW - 90 s) first, with its idle time.
    let first = s
        .lease_agent(campaign, "node-1", &[], NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.agent.id, first.idle_ms), (b.id, 90_000));
    assert_eq!(first.agent.spec.state, AgentState::Busy);
    assert_eq!(first.agent.lease_node.as_deref(), Some("node-1"));
    // Skipping a for this caller leaves nobody.
    assert_eq!(
        s.lease_agent(campaign, "node-1", &[a.id], NOW)
            .await
            .unwrap(),
        None
    );

    // Eight nodes race for the one agent left: exactly one gets it.
    let mut tasks = Vec::new();
    for n in 0..8 {
        let store = s.clone();
        tasks.push(tokio::spawn(async move {
            store
                .lease_agent(campaign, &format!("node-{n}"), &[], NOW + 1)
                .await
                .unwrap()
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        if let Some(lease) = t.await.unwrap() {
            winners.push(lease.agent.id);
        }
    }
    assert_eq!(winners, vec![a.id]);
    assert_eq!(
        s.lease_agent(campaign, "node-9", &[], NOW + 2)
            .await
            .unwrap(),
        None
    );

    // b talked for 30 s: wrap-up of 10 s, then free again.
    s.release_agent(
        b.id,
        AgentRelease::Talked {
            ended_at: NOW + 31_000,
            talk_ms: 30_000,
        },
    )
    .await
    .unwrap();
    let got = s.get_agent(Some(acme), b.id).await.unwrap();
    assert_eq!(got.spec.state, AgentState::Available);
    assert_eq!((got.calls, got.talk_ms), (1, 30_000));
    assert_eq!(got.last_call_end_at, Some(NOW + 31_000));
    assert_eq!(got.lease_node, None);
    assert_eq!(
        s.lease_agent(campaign, "n", &[], NOW + 40_999)
            .await
            .unwrap(),
        None
    );
    let again = s
        .lease_agent(campaign, "n", &[], NOW + 43_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.agent.id, again.idle_ms), (b.id, 2_000));

    // a was rung but never talked: free at once, nothing counted.
    s.release_agent(a.id, AgentRelease::NotConnected { at: NOW + 5_000 })
        .await
        .unwrap();
    let got = s.get_agent(Some(acme), a.id).await.unwrap();
    assert_eq!((got.spec.state, got.calls), (AgentState::Available, 0));
    // An admin pausing a busy agent wins over the release.
    s.set_agent_state(Some(acme), b.id, AgentState::Paused, NOW + 44_000)
        .await
        .unwrap();
    s.release_agent(
        b.id,
        AgentRelease::Talked {
            ended_at: NOW + 50_000,
            talk_ms: 7_000,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        s.get_agent(Some(acme), b.id).await.unwrap().spec.state,
        AgentState::Paused
    );
    assert!(matches!(
        s.release_agent(424_242, AgentRelease::NotConnected { at: NOW })
            .await,
        Err(StoreError::NotFound(_))
    ));
    // A given agent: taken only when free (the queue core's Ring → lease).
    let c = s
        .create_agent(Some(acme), &sip_agent("d", AgentState::Available, 0), NOW)
        .await
        .unwrap();
    let lease = s
        .try_lease_agent(c.id, "n1", NOW + 60_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((lease.agent.id, lease.idle_ms), (c.id, 60_000));
    assert_eq!(
        s.try_lease_agent(c.id, "n2", NOW + 60_001).await.unwrap(),
        None
    );
    assert_eq!(s.try_lease_agent(paused.id, "n2", NOW).await.unwrap(), None);
    // Leases older than any call are given back; so are a dead node's.
    assert_eq!(
        s.release_stale_agents(NOW + 60_000, NOW + 70_000)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        s.release_stale_agents(NOW + 60_001, NOW + 70_000)
            .await
            .unwrap(),
        1
    );
    s.try_lease_agent(c.id, "n3", NOW + 80_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.release_node_agents("n3", NOW + 90_000).await.unwrap(), 1);
    assert_eq!(
        s.get_agent(Some(acme), c.id).await.unwrap().spec.state,
        AgentState::Available
    );
    // A campaign whose connect_to is a URI has no pool.
    let uri = pool_campaign(s, acme, "sip:desk@pbx").await;
    assert_eq!(s.campaign_pool(uri).await.unwrap(), None);
    assert_eq!(s.lease_agent(uri, "n", &[], NOW).await.unwrap(), None);
}

async fn abandons_count_people_over_the_rolling_30_days(db: &TestDb) {
    let s = &db.store;
    let id = campaign(s, "abandons").await;
    const DAY: i64 = 86_400_000;
    let attempt =
        |started_at: i64, answered_by: Option<&str>, abandoned: bool, talk: Option<i64>| {
            AttemptRecord {
                campaign_id: Some(id),
                started_at,
                outcome: "answered".into(),
                answer_ms: Some(4_000),
                answered_by: answered_by.map(str::to_string),
                bridge: BridgeRecord {
                    abandoned,
                    talk_ms: talk,
                    agent_idle_ms: talk.map(|_| 10_000),
                    queue_wait_ms: Some(if abandoned { 2_000 } else { 500 }),
                    ..BridgeRecord::default()
                },
                ..AttemptRecord::default()
            }
        };
    // 40 days ago: a person, abandoned (outside the 30 days).
    s.insert_attempt(&attempt(NOW - 40 * DAY, Some("human"), true, None))
        .await
        .unwrap();
    // Within 30 days: 3 people (one abandoned, one with AMD off), 1 machine "abandoned"
    // (machines never count), 1 no-answer.
    s.insert_attempt(&attempt(NOW - 2 * DAY, Some("human"), true, None))
        .await
        .unwrap();
    let aid = s
        .insert_attempt(&attempt(NOW - DAY, Some("human"), false, None))
        .await
        .unwrap();
    s.insert_attempt(&attempt(NOW - DAY, None, false, Some(30_000)))
        .await
        .unwrap();
    s.insert_attempt(&attempt(NOW - DAY, Some("machine_end_beep"), true, None))
        .await
        .unwrap();
    s.insert_attempt(&AttemptRecord {
        campaign_id: Some(id),
        started_at: NOW - DAY,
        outcome: "no_answer".into(),
        ..AttemptRecord::default()
    })
    .await
    .unwrap();

    let last30 = s.abandon_counts_30d(id, NOW).await.unwrap();
    assert_eq!((last30.people_answered, last30.abandoned), (3, 1));
    assert!((last30.rate_pct() - 100.0 / 3.0).abs() < 1e-9);
    let total = s.abandon_counts(id, None).await.unwrap();
    assert_eq!((total.people_answered, total.abandoned), (4, 2));

    // The call flow records the bridge of an attempt after the fact.
    let bridge = BridgeRecord {
        agent_call_id: Some("leg2@x".into()),
        agent_id: Some(3),
        agent_name: Some("alice".into()),
        agent_ring_at: Some(NOW - DAY + 5_000),
        agent_answer_at: Some(NOW - DAY + 5_400),
        bridge_start_at: Some(NOW - DAY + 5_400),
        bridge_end_at: Some(NOW - DAY + 65_400),
        talk_ms: Some(60_000),
        queue_wait_ms: Some(400),
        agent_idle_ms: Some(20_000),
        abandoned: false,
        bridge_kind: Some("sip".into()),
        bridge_target: Some("pool:front desk".into()),
        ..Default::default()
    };
    s.update_attempt_bridge(aid, &bridge).await.unwrap();
    assert_eq!(s.get_attempt(aid).await.unwrap().record.bridge, bridge);
    assert!(matches!(
        s.update_attempt_bridge(424_242, &bridge).await,
        Err(StoreError::NotFound(_))
    ));

    // Report figures: talk 30 s + 60 s, idle 10 s + 20 s; waits 2 + 2 + 0.4 + 0.5 + 2 s.
    let stats = s.bridge_stats(id, NOW).await.unwrap();
    assert_eq!(stats.last_30_days, last30);
    assert_eq!(
        (stats.bridged, stats.talk_ms, stats.agent_idle_ms),
        (2, 90_000, 30_000)
    );
    assert!((stats.occupancy() - 0.75).abs() < 1e-9);
    assert_eq!(stats.queued, 5);
    assert!((stats.average_queue_wait_ms() - 1_380.0).abs() < 1e-9);

    // People waiting for an agent are the on_hold contacts.
    let waiting = s
        .create_contact(id, &contact("+12025550199", "W"), NOW)
        .await
        .unwrap();
    s.claim_contact(waiting.id, &[ContactStatus::Pending], NOW)
        .await
        .unwrap();
    assert_eq!(
        s.count_in_status(id, ContactStatus::OnHold).await.unwrap(),
        0
    );
    s.transition_contact(
        waiting.id,
        &[ContactStatus::Dialing],
        &ContactTransition {
            status: ContactStatus::OnHold,
            next_attempt_at: None,
            last_outcome: None,
        },
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(
        s.count_in_status(id, ContactStatus::OnHold).await.unwrap(),
        1
    );

    // The pacer's rates over the last 3 days: 5 attempts, 4 answered, 3 people.
    let rates = s.pacing_stats(id, NOW - 3 * DAY).await.unwrap();
    assert_eq!((rates.attempts, rates.answered, rates.people), (5, 4, 3));
    assert!((rates.average_answer_ms - 4_000.0).abs() < 1e-9);
    assert!((rates.average_talk_ms - 45_000.0).abs() < 1e-9);
}

fn ai_agent(name: &str) -> AiAgentSpec {
    AiAgentSpec {
        name: name.into(),
        url: "wss://agent.example/media".into(),
        ..AiAgentSpec::default()
    }
}

async fn ai_agents_are_per_account_and_campaigns_name_them(db: &TestDb) {
    let s = &db.store;
    let acme = s.create_account("acme", "Acme", NOW).await.unwrap().id;
    let other = s.create_account("other", "Other", NOW).await.unwrap().id;
    let spec = AiAgentSpec {
        kind: AiAgentKind::L16Ws,
        sample_rate: Some(16000),
        custom_parameters: [("tier".to_string(), "gold".to_string())].into(),
        auth_header_name: Some("X-Api-Key".into()),
        auth_header_env: Some("OUTDIAL_TEST_BOT_KEY".into()),
        on_agent_close: OnAgentClose::Connect,
        handoff_target: Some("sip:desk@127.0.0.1:5070".into()),
        ..ai_agent(" sales bot ")
    };
    let bot = s.create_ai_agent(Some(acme), &spec, NOW).await.unwrap();
    assert_eq!(bot.spec.name, "sales bot", "names are trimmed");
    assert_eq!(bot.spec.kind, AiAgentKind::L16Ws);
    assert_eq!(bot.spec.sample_rate, Some(16000));
    assert_eq!(bot.spec.custom_parameters["tier"], "gold");
    assert_eq!(
        bot.spec.auth_header_env.as_deref(),
        Some("OUTDIAL_TEST_BOT_KEY")
    );
    assert_eq!(s.get_ai_agent(Some(acme), bot.id).await.unwrap(), bot);
    // Another account sees nothing; the same name there is fine, twice here is not.
    assert!(matches!(
        s.get_ai_agent(Some(other), bot.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.create_ai_agent(Some(acme), &ai_agent("sales bot"), NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    let theirs = s
        .create_ai_agent(Some(other), &ai_agent("sales bot"), NOW)
        .await
        .unwrap();
    assert_eq!(
        s.list_ai_agents(Some(acme), Page::default())
            .await
            .unwrap()
            .total,
        1
    );
    assert_eq!(
        s.list_ai_agents(Some(other), Page::default())
            .await
            .unwrap()
            .items,
        vec![theirs.clone()]
    );
    // Validation names the field.
    match s
        .create_ai_agent(
            Some(acme),
            &AiAgentSpec {
                url: "https://agent.example/offer".into(),
                ..ai_agent("web")
            },
            NOW,
        )
        .await
    {
        Err(StoreError::Invalid(m)) => assert!(m.starts_with("url: "), "{m}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    // Update: another kind, the rate dropped.
    let updated = s
        .update_ai_agent(
            Some(acme),
            bot.id,
            &AiAgentSpec {
                kind: AiAgentKind::WebrtcWhip,
                url: "http://127.0.0.1:8889/whip".into(),
                sample_rate: None,
                ..bot.spec.clone()
            },
            NOW + 1000,
        )
        .await
        .unwrap();
    assert_eq!(updated.spec.kind, AiAgentKind::WebrtcWhip);
    assert_eq!(updated.updated_at, NOW + 1000);
    assert!(matches!(
        s.update_ai_agent(Some(other), bot.id, &ai_agent("x"), NOW)
            .await,
        Err(StoreError::NotFound(_))
    ));

    // Campaigns name an agent of their own account, not another's, and not with a URL too.
    let with_agent = |agent: i64| CampaignSettings {
        ai_agent_id: Some(agent),
        ..settings("AI outreach")
    };
    let campaign = s
        .create_campaign(Some(acme), &with_agent(bot.id), CampaignStatus::New, NOW)
        .await
        .unwrap();
    assert_eq!(campaign.settings.ai_agent_id, Some(bot.id));
    assert_eq!(
        s.get_campaign(campaign.id)
            .await
            .unwrap()
            .settings
            .ai_agent_id,
        Some(bot.id)
    );
    for bad in [
        with_agent(theirs.id),
        CampaignSettings {
            ai_agent_url: Some("wss://x.example/".into()),
            ..with_agent(bot.id)
        },
    ] {
        match s
            .create_campaign(Some(acme), &bad, CampaignStatus::New, NOW)
            .await
        {
            Err(StoreError::Invalid(m)) => assert!(m.starts_with("ai_agent_id: "), "{m}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
    match s
        .update_campaign(campaign.id, &with_agent(theirs.id), NOW)
        .await
    {
        Err(StoreError::Invalid(m)) => assert!(m.starts_with("ai_agent_id: "), "{m}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    // What the call flow gets: the record, or the URL shortcut as a Twilio agent.
    let resolved = s.campaign_ai_agent(campaign.id).await.unwrap().unwrap();
    assert_eq!(resolved, updated.spec);
    let target = resolved
        .resolve_with(|name| (name == "OUTDIAL_TEST_BOT_KEY").then(|| "k-123".to_string()))
        .unwrap();
    assert_eq!(
        target.auth_header,
        Some(("X-Api-Key".into(), "k-123".into()))
    );
    assert_eq!(
        target.handoff_target.as_deref(),
        Some("sip:desk@127.0.0.1:5070")
    );
    assert!(resolved
        .resolve_with(|_| None)
        .unwrap_err()
        .to_string()
        .contains("OUTDIAL_TEST_BOT_KEY"));
    let by_url = s
        .create_campaign(
            Some(acme),
            &CampaignSettings {
                ai_agent_url: Some("ws://127.0.0.1:9000/media".into()),
                ..settings("URL")
            },
            CampaignStatus::New,
            NOW,
        )
        .await
        .unwrap();
    let shortcut = s.campaign_ai_agent(by_url.id).await.unwrap().unwrap();
    assert_eq!(
        (shortcut.kind, shortcut.url.as_str()),
        (AiAgentKind::TwilioWs, "ws://127.0.0.1:9000/media")
    );
    let plain = campaign_in(s, acme, "Plain").await;
    assert_eq!(s.campaign_ai_agent(plain).await.unwrap(), None);

    // An agent in use is not deleted; the conflict names the campaign.
    match s.delete_ai_agent(Some(acme), bot.id).await {
        Err(StoreError::Conflict(m)) => {
            assert!(
                m.contains(&campaign.id.to_string()) && m.contains("AI outreach"),
                "{m}"
            )
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(
        s.campaigns_using_ai_agent(bot.id).await.unwrap(),
        vec![(campaign.id, "AI outreach".to_string())]
    );
    assert!(matches!(
        s.delete_ai_agent(Some(other), bot.id).await,
        Err(StoreError::NotFound(_))
    ));
    s.update_campaign(campaign.id, &settings("AI outreach"), NOW)
        .await
        .unwrap();
    s.delete_ai_agent(Some(acme), bot.id).await.unwrap();
    assert!(matches!(
        s.get_ai_agent(Some(acme), bot.id).await,
        Err(StoreError::NotFound(_))
    ));
}

async fn campaign_in(store: &Store, account: i64, name: &str) -> i64 {
    store
        .create_campaign(Some(account), &settings(name), CampaignStatus::New, NOW)
        .await
        .unwrap()
        .id
}

fn goal(kind: QuestionKind, name: &str, question_type: QuestionType) -> QuestionSpec {
    QuestionSpec {
        kind,
        name: name.into(),
        question: format!("{name}?"),
        question_type,
        active: true,
    }
}

fn report(value: serde_json::Value) -> ConversationResult {
    serde_json::from_value(value).unwrap()
}

async fn goals_analyses_and_attempt_reports(db: &TestDb) {
    use serde_json::json;
    let s = &db.store;
    let id = campaign(s, "Goals").await;
    let elsewhere = campaign(s, "Elsewhere").await;
    let demo = s
        .create_question(
            id,
            &goal(QuestionKind::Primary, "Demo booked", QuestionType::YesNo),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!((demo.spec.active, demo.archived), (true, false));
    // A second live primary goal: conflict naming the first; an inactive one is fine.
    match s
        .create_question(
            id,
            &goal(QuestionKind::Primary, "Other", QuestionType::YesNo),
            NOW,
        )
        .await
    {
        Err(StoreError::Conflict(m)) => assert!(m.contains(&format!("goal {}", demo.id)), "{m}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let spare = s
        .create_question(
            id,
            &QuestionSpec {
                active: false,
                ..goal(QuestionKind::Primary, "Spare", QuestionType::YesNo)
            },
            NOW,
        )
        .await
        .unwrap();
    assert!(matches!(
        s.update_question(
            id,
            spare.id,
            &QuestionSpec {
                active: true,
                ..spare.spec.clone()
            },
            false,
            NOW
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    let mood = s
        .create_question(
            id,
            &goal(QuestionKind::Secondary, "Mood", QuestionType::Rating),
            NOW,
        )
        .await
        .unwrap();
    let notes = s
        .create_question(
            id,
            &goal(QuestionKind::Analysis, "Notes", QuestionType::OpenText),
            NOW,
        )
        .await
        .unwrap();
    let callback = s
        .create_question(
            id,
            &goal(QuestionKind::Analysis, "Callback", QuestionType::YesNo),
            NOW,
        )
        .await
        .unwrap();
    // A goal cannot become an analysis; an empty name is refused.
    assert!(matches!(
        s.update_question(id, mood.id, &goal(QuestionKind::Analysis, "Mood", QuestionType::Rating), false, NOW).await,
        Err(StoreError::Invalid(m)) if m.starts_with("kind: ")
    ));
    assert!(matches!(
        s.create_question(id, &goal(QuestionKind::Secondary, " ", QuestionType::Rating), NOW).await,
        Err(StoreError::Invalid(m)) if m.starts_with("name: ")
    ));
    // Another campaign's question is not found through this one.
    assert!(matches!(
        s.get_question(elsewhere, demo.id).await,
        Err(StoreError::NotFound(_))
    ));
    let goals = s
        .list_questions(id, &[QuestionKind::Primary, QuestionKind::Secondary], None)
        .await
        .unwrap();
    let ids: Vec<i64> = goals.iter().map(|q| q.id).collect();
    assert_eq!(ids, vec![demo.id, spare.id, mood.id], "primary goals first");

    // Contacts and their attempts.
    let mut contacts = Vec::new();
    for (phone, name) in [
        ("+12025550101", "Ann"),
        ("+12025550102", "Ben"),
        ("+12025550103", "Cy"),
        ("+12025550104", "Dee"),
    ] {
        contacts.push(
            s.create_contact(id, &contact(phone, name), NOW)
                .await
                .unwrap()
                .id,
        );
    }
    let attempt = |contact: i64, minutes: i64, answered_by: Option<&str>| AttemptRecord {
        campaign_id: Some(id),
        contact_id: Some(contact),
        attempt_number: 1,
        started_at: NOW + minutes * 60_000,
        outcome: "answered".into(),
        answered_by: answered_by.map(str::to_string),
        duration_ms: 60_000,
        ..AttemptRecord::default()
    };
    let ann_first = s
        .insert_attempt(&attempt(contacts[0], 1, Some("human")))
        .await
        .unwrap();
    let ann_later = s
        .insert_attempt(&attempt(contacts[0], 30, Some("human")))
        .await
        .unwrap();
    let ben = s
        .insert_attempt(&attempt(contacts[1], 2, Some("human")))
        .await
        .unwrap();
    let cy = s
        .insert_attempt(&attempt(contacts[2], 3, None))
        .await
        .unwrap();
    // Dee: bridged to a SIP agent, never analysed (a conversation all the same); and a
    // machine bridged anyway (not a conversation).
    let dee = s
        .insert_attempt(&AttemptRecord {
            bridge: BridgeRecord {
                bridge_start_at: Some(NOW + 4 * 60_000),
                ..BridgeRecord::default()
            },
            ..attempt(contacts[3], 4, Some("human"))
        })
        .await
        .unwrap();
    s.insert_attempt(&AttemptRecord {
        bridge: BridgeRecord {
            bridge_start_at: Some(NOW + 5 * 60_000),
            ..BridgeRecord::default()
        },
        ..attempt(contacts[3], 5, Some("machine_end_beep"))
    })
    .await
    .unwrap();
    let no_campaign = s
        .insert_attempt(&AttemptRecord {
            campaign_id: None,
            contact_id: None,
            ..attempt(contacts[0], 6, None)
        })
        .await
        .unwrap();
    assert!(s.get_attempt_analysis(ann_first).await.unwrap().is_none());

    // Reports: Ann not achieved, then achieved later; Ben partially, replaced by not
    // achieved; Cy's report does not mention the primary goal.
    s.save_attempt_analysis(
        ann_first,
        &report(
            json!({"goals": [{"goal_id": demo.id, "outcome": "not_achieved", "value": false}]}),
        ),
        NOW,
    )
    .await
    .unwrap();
    let stored = s
        .save_attempt_analysis(
            ann_later,
            &report(json!({
                "goals": [
                    {"goal_id": demo.id, "outcome": "achieved", "value": true},
                    {"goal_id": mood.id, "outcome": "achieved", "value": 5}
                ],
                "analyses": [
                    {"analysis_id": notes.id, "value": "wants the blue plan"},
                    {"analysis_id": callback.id, "value": true}
                ],
                "summary": "Booked a demo for Tuesday."
            })),
            NOW + 100,
        )
        .await
        .unwrap();
    assert_eq!(stored.campaign_id, id);
    assert_eq!(stored.contact_id, Some(contacts[0]));
    assert_eq!(stored.summary, "Booked a demo for Tuesday.");
    let goal_ids: Vec<i64> = stored.goals.iter().map(|a| a.question_id).collect();
    assert_eq!(goal_ids, vec![demo.id, mood.id]);
    assert_eq!(stored.goals[0].outcome, Some(GoalOutcome::Achieved));
    assert_eq!(stored.goals[1].value, Some(json!(5)));
    assert_eq!(stored.analyses.len(), 2);
    assert_eq!(stored.analyses[0].value, Some(json!("wants the blue plan")));
    assert_eq!(stored.analyses[0].outcome, None);
    s.save_attempt_analysis(
        ben,
        &report(json!({
            "goals": [
                {"goal_id": demo.id, "outcome": "partially_achieved"},
                {"goal_id": mood.id, "outcome": "not_achieved", "value": 2}
            ],
            "analyses": [{"analysis_id": callback.id, "value": false}],
            "summary": "first"
        })),
        NOW,
    )
    .await
    .unwrap();
    let replaced = s
        .save_attempt_analysis(
            ben,
            &report(json!({
                "goals": [{"goal_id": demo.id, "outcome": "not_achieved", "value": false}],
                "summary": "second"
            })),
            NOW + 500,
        )
        .await
        .unwrap();
    assert_eq!(replaced.summary, "second");
    assert_eq!(replaced.goals.len(), 1, "the old answers are gone");
    assert!(replaced.analyses.is_empty());
    assert_eq!((replaced.created_at, replaced.updated_at), (NOW, NOW + 500));
    s.save_attempt_analysis(
        cy,
        &report(json!({"goals": [{"goal_id": mood.id, "outcome": "unknown", "value": 3}]})),
        NOW,
    )
    .await
    .unwrap();
    // Bad reports name the index and field, and change nothing.
    for (bad, path) in [
        (
            json!({"goals": [{"goal_id": demo.id, "outcome": "achieved", "value": 1}]}),
            "goals[0].value",
        ),
        (
            json!({"goals": [{"goal_id": demo.id, "outcome": "achieved"}, {"goal_id": mood.id, "outcome": "achieved", "value": 9}]}),
            "goals[1].value",
        ),
        (
            json!({"goals": [{"goal_id": spare.id, "outcome": "achieved"}]}),
            "goals[0].goal_id",
        ),
        (
            json!({"analyses": [{"analysis_id": demo.id, "value": true}]}),
            "analyses[0].analysis_id",
        ),
        (
            json!({"analyses": [{"analysis_id": notes.id, "value": "x".repeat(4001)}]}),
            "analyses[0].value",
        ),
    ] {
        match s.save_attempt_analysis(ben, &report(bad), NOW + 900).await {
            Err(StoreError::Invalid(m)) => assert!(m.starts_with(&format!("{path}: ")), "{m}"),
            other => panic!("expected Invalid for {path}, got {other:?}"),
        }
    }
    assert_eq!(
        s.get_attempt_analysis(ben).await.unwrap().unwrap().summary,
        "second"
    );
    assert!(matches!(
        s.save_attempt_analysis(no_campaign, &report(json!({})), NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.save_attempt_analysis(999_999, &report(json!({})), NOW)
            .await,
        Err(StoreError::NotFound(_))
    ));
    // A contact's reports, latest attempt first.
    let anns = s.contact_analyses(contacts[0]).await.unwrap();
    assert_eq!(
        anns.iter().map(|a| a.attempt_id).collect::<Vec<_>>(),
        vec![ann_later, ann_first]
    );

    // Primary-goal status: the latest analysed attempt's outcome; unknown when it does not
    // say; none without a report.
    let statuses = s.primary_goal_statuses(id, &contacts).await.unwrap();
    assert_eq!(statuses.get(&contacts[0]), Some(&GoalOutcome::Achieved));
    assert_eq!(statuses.get(&contacts[1]), Some(&GoalOutcome::NotAchieved));
    assert_eq!(statuses.get(&contacts[2]), Some(&GoalOutcome::Unknown));
    assert_eq!(statuses.get(&contacts[3]), None);
    let filtered = |statuses: Vec<GoalOutcome>| ContactFilter {
        primary_goal_statuses: statuses,
        ..ContactFilter::default()
    };
    let names = |page: Vec<outdial::campaign::model::Contact>| -> Vec<String> {
        page.into_iter().map(|c| c.name).collect()
    };
    let list = s
        .list_contacts(id, &filtered(vec![GoalOutcome::Achieved]), Page::default())
        .await
        .unwrap();
    assert_eq!(names(list.items), vec!["Ann"]);
    let list = s
        .list_contacts(
            id,
            &filtered(vec![GoalOutcome::NotAchieved, GoalOutcome::Unknown]),
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        (list.total, names(list.items)),
        (2, vec!["Ben".to_string(), "Cy".to_string()])
    );
    assert_eq!(
        s.list_contacts(
            id,
            &filtered(vec![GoalOutcome::PartiallyAchieved]),
            Page::default()
        )
        .await
        .unwrap()
        .total,
        0
    );
    // The attempt list takes the same filter (on the attempt's contact).
    let attempts = s
        .list_attempts(
            &AttemptFilter {
                campaign_id: Some(id),
                contact: filtered(vec![GoalOutcome::Achieved]),
                ..AttemptFilter::default()
            },
            Page::default(),
        )
        .await
        .unwrap();
    assert_eq!(attempts.total, 2, "both of Ann's attempts");

    // The report: 3 analysed contacts, 1 achieved; conversations = 4 analysed attempts +
    // Dee's bridged call (the machine is not one).
    let r = s.goal_report(id).await.unwrap();
    assert_eq!(r.analysed_contacts, 3);
    assert_eq!(r.primary_goal_id, Some(demo.id));
    assert_eq!(
        r.primary,
        OutcomeCounts {
            achieved: 1,
            partially_achieved: 0,
            not_achieved: 1,
            unknown: 1
        }
    );
    assert_eq!(r.conversations, 5);
    assert_eq!(r.conversation_ms, 5 * 60_000);
    let _ = dee;
    let by_id = |qid: i64| r.questions.iter().find(|q| q.question.id == qid).unwrap();
    let m = by_id(mood.id);
    assert_eq!(
        m.outcomes,
        OutcomeCounts {
            achieved: 1,
            partially_achieved: 0,
            not_achieved: 0,
            unknown: 2
        }
    );
    assert_eq!(m.answered, 2);
    assert_eq!(m.average_rating, Some(4.0));
    let c = by_id(callback.id);
    assert_eq!((c.answered, c.yes, c.no), (1, 1, 0));
    assert_eq!(by_id(notes.id).outcomes, OutcomeCounts::default());
    // Archiving the primary goal: no current primary, every analysed contact unknown.
    s.update_question(id, demo.id, &demo.spec, true, NOW)
        .await
        .unwrap();
    let r = s.goal_report(id).await.unwrap();
    assert_eq!(r.primary_goal_id, None);
    assert_eq!(r.primary.unknown, 3);
    let statuses = s.primary_goal_statuses(id, &contacts).await.unwrap();
    assert_eq!(statuses.get(&contacts[0]), Some(&GoalOutcome::Unknown));
    assert_eq!(
        s.list_contacts(id, &filtered(vec![GoalOutcome::Unknown]), Page::default())
            .await
            .unwrap()
            .total,
        3
    );
    // Now the spare primary goal may go live.
    s.update_question(
        id,
        spare.id,
        &QuestionSpec {
            active: true,
            ..spare.spec.clone()
        },
        false,
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(
        s.list_questions(id, &[], Some(true)).await.unwrap().len(),
        1
    );
    // Deleting the campaign takes its questions and reports along.
    s.delete_campaign(id).await.unwrap();
    assert!(s.get_attempt_analysis(ann_later).await.unwrap().is_none());
}

// ---------------------------------------------------------------------------------------
// Calls in flight: caps over every node, the attempt's end, restart, dead nodes.

use outdial::store::inflight::{AttemptEnd, CallState, Claim, Ended, NewCall};

const DIALABLE: &[ContactStatus] = &[ContactStatus::Pending, ContactStatus::Retry];

fn new_call<'a>(campaign_id: i64, contact_id: i64, node: &'a str, now: i64) -> NewCall<'a> {
    NewCall {
        campaign_id,
        contact_id,
        expected: DIALABLE,
        node,
        trunk: "carrier",
        max_channels: None,
        max_cps: None,
        max_concurrent: 1000,
        caller_id: "+12025550100",
        now,
    }
}

async fn contact_ids(s: &Store, campaign_id: i64) -> Vec<i64> {
    s.list_contacts(campaign_id, &ContactFilter::default(), Page::new(1000, 0))
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.id)
        .collect()
}

/// A tick's group: one transaction claims the contacts that fit under the caps, in order;
/// a contact taken meanwhile is `Taken`, the rest past a cap get that cap untouched.
async fn claim_groups_take_what_fits_under_the_caps_in_order(db: &TestDb) {
    let s = &db.store;
    let id = campaign(s, "groups").await;
    let batch: Vec<_> = (0..12)
        .map(|i| contact(&format!("+1415777{i:04}"), ""))
        .collect();
    s.bulk_insert_contacts(id, &batch, NOW).await.unwrap();
    let ids = contact_ids(s, id).await;
    // One call already up: 4 concurrent leave room for 3; contact 1 is taken first.
    let one = |cid| NewCall {
        max_concurrent: 4,
        ..new_call(id, cid, "node-a", NOW)
    };
    assert!(matches!(
        s.claim_call(&one(ids[0])).await.unwrap(),
        Claim::Claimed(_)
    ));
    let taken = NewCall {
        max_concurrent: 1000,
        trunk: "other",
        ..new_call(id, ids[1], "node-b", NOW)
    };
    assert!(matches!(
        s.claim_call(&taken).await.unwrap(),
        Claim::Claimed(_)
    ));
    // Now 2 live: room for 2 more under max_concurrent 4.
    let group: Vec<NewCall> = ids[1..7].iter().map(|cid| one(*cid)).collect();
    let got = s.claim_calls(&group).await.unwrap();
    assert_eq!(got.len(), 6);
    assert_eq!(got[0], Claim::Taken);
    match &got[1] {
        Claim::Claimed(c) => {
            assert_eq!(
                (c.id, c.status, c.attempts),
                (ids[2], ContactStatus::Dialing, 1)
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(
        got[2..].iter().all(|c| *c == Claim::CampaignFull),
        "{got:?}"
    );
    assert_eq!(s.campaign_calls(id).await.unwrap(), 3);
    // Past the cap, nothing was touched.
    let c = s.get_contact(ids[4]).await.unwrap();
    assert_eq!((c.status, c.attempts), (ContactStatus::Pending, 0));
    // Trunk CPS: two a second, counted with the group.
    let cps = |cid| NewCall {
        trunk: "slow",
        max_cps: Some(2.0),
        ..new_call(id, cid, "node-a", NOW)
    };
    let group: Vec<NewCall> = ids[7..12].iter().map(|cid| cps(*cid)).collect();
    let got = s.claim_calls(&group).await.unwrap();
    assert!(matches!(got[0], Claim::Claimed(_)) && matches!(got[1], Claim::Claimed(_)));
    assert!(got[2..].iter().all(|c| *c == Claim::TrunkCps), "{got:?}");
    assert_eq!(
        s.claim_call(&cps(ids[9])).await.unwrap(),
        Claim::TrunkCps,
        "the window's two claims are counted"
    );
    // A group that mixes caps is refused whole.
    let mixed = vec![one(ids[9]), cps(ids[10])];
    assert!(s.claim_calls(&mixed).await.is_err());
    assert_eq!(s.campaign_calls(id).await.unwrap(), 5);
}

async fn claims_count_caps_over_every_node(db: &TestDb) {
    let s = &db.store;
    let id = campaign(s, "caps").await;
    let batch: Vec<_> = (0..40)
        .map(|i| contact(&format!("+1415666{i:04}"), ""))
        .collect();
    s.bulk_insert_contacts(id, &batch, NOW).await.unwrap();
    let ids = Arc::new(contact_ids(s, id).await);
    // Two nodes race over every contact with a trunk of 5 channels: exactly 5 win.
    let mut tasks = Vec::new();
    for node in ["node-a", "node-b"] {
        let store = s.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = 0;
            for cid in ids.iter() {
                let call = NewCall {
                    max_channels: Some(5),
                    ..new_call(id, *cid, node, NOW)
                };
                if let Claim::Claimed(c) = store.claim_call(&call).await.unwrap() {
                    assert_eq!(c.status, ContactStatus::Dialing);
                    won += 1;
                }
            }
            won
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += t.await.unwrap();
    }
    assert_eq!(won, 5);
    assert_eq!(s.trunk_calls("carrier").await.unwrap(), 5);
    assert_eq!(s.campaign_calls(id).await.unwrap(), 5);
    let dialing = s.count_in_status(id, ContactStatus::Dialing).await.unwrap();
    assert_eq!(dialing, 5);

    // The campaign's max_concurrent counts the calls of every node.
    let next = ids[39];
    let full = NewCall {
        max_concurrent: 5,
        trunk: "other",
        ..new_call(id, next, "node-c", NOW)
    };
    assert_eq!(s.claim_call(&full).await.unwrap(), Claim::CampaignFull);
    // A contact already in a call is not claimed again.
    let taken_id = s
        .calls_in_flight()
        .await
        .unwrap()
        .first()
        .unwrap()
        .contact_id;
    let again = NewCall {
        trunk: "other",
        ..new_call(id, taken_id, "node-c", NOW)
    };
    assert_eq!(s.claim_call(&again).await.unwrap(), Claim::Taken);

    // max_cps: two claims a second on trunk "slow", the third waits for the next second.
    let cps = |cid, now| NewCall {
        trunk: "slow",
        max_cps: Some(2.0),
        ..new_call(id, cid, "node-a", now)
    };
    let second = NOW - NOW % 1000;
    assert!(matches!(
        s.claim_call(&cps(ids[20], second)).await.unwrap(),
        Claim::Claimed(_)
    ));
    assert!(matches!(
        s.claim_call(&cps(ids[21], second + 400)).await.unwrap(),
        Claim::Claimed(_)
    ));
    assert_eq!(
        s.claim_call(&cps(ids[22], second + 900)).await.unwrap(),
        Claim::TrunkCps
    );
    assert!(matches!(
        s.claim_call(&cps(ids[22], second + 1000)).await.unwrap(),
        Claim::Claimed(_)
    ));
    // Half a call a second: one claim per two seconds.
    let half = |cid, now| NewCall {
        trunk: "slower",
        max_cps: Some(0.5),
        ..new_call(id, cid, "node-a", now)
    };
    let two = NOW - NOW % 2000;
    assert!(matches!(
        s.claim_call(&half(ids[23], two)).await.unwrap(),
        Claim::Claimed(_)
    ));
    assert_eq!(
        s.claim_call(&half(ids[24], two + 1500)).await.unwrap(),
        Claim::TrunkCps
    );
    assert!(matches!(
        s.claim_call(&half(ids[24], two + 2000)).await.unwrap(),
        Claim::Claimed(_)
    ));
}

fn end_of(node: &str, campaign_id: i64, contact_id: i64, status: ContactStatus) -> AttemptEnd {
    AttemptEnd {
        node: node.into(),
        record: AttemptRecord {
            campaign_id: Some(campaign_id),
            contact_id: Some(contact_id),
            attempt_number: 1,
            call_id: format!("call-{contact_id}"),
            outcome: "busy".into(),
            started_at: NOW,
            ended_at: Some(NOW + 5),
            ..AttemptRecord::default()
        },
        contact: ContactTransition {
            status,
            next_attempt_at: Some(NOW + 60_000),
            last_outcome: Some("busy".into()),
        },
        counters: None,
        event: serde_json::json!({"attempt": 1, "outcome": "busy"}),
        at: NOW + 5,
    }
}

/// Five ends of every kind — plain, with counters written back, fenced (another node's),
/// of a contact moved during its call, of a contact reset by a restart — written one by one
/// in one campaign and as one group in another: the same contacts, records and events.
async fn a_group_commit_writes_what_one_by_one_ends_write(db: &TestDb) {
    let s = &db.store;
    let mut seen = Vec::new();
    for grouped in [false, true] {
        let id = campaign(s, if grouped { "grouped" } else { "single" }).await;
        let batch: Vec<_> = (0..6)
            .map(|i| contact(&format!("+1415888{i:04}"), ""))
            .collect();
        s.bulk_insert_contacts(id, &batch, NOW).await.unwrap();
        let ids = contact_ids(s, id).await;
        // Contact 4's campaign restarts while its call is up: reset when it ends.
        let first = s.claim_call(&new_call(id, ids[4], "node-a", NOW)).await;
        assert!(matches!(first.unwrap(), Claim::Claimed(_)));
        s.set_campaign_status(id, CampaignStatus::New, CampaignStatus::Canceled, NOW)
            .await
            .unwrap();
        s.restart_campaign(
            id,
            CampaignStatus::Canceled,
            CampaignStatus::Processing,
            NOW,
        )
        .await
        .unwrap();
        let group: Vec<NewCall> = ids[..4]
            .iter()
            .map(|cid| new_call(id, *cid, "node-a", NOW))
            .collect();
        let claimed = s.claim_calls(&group).await.unwrap();
        assert!(claimed.iter().all(|c| matches!(c, Claim::Claimed(_))));
        // Contact 3 is moved by someone during its call.
        s.transition_contact(
            ids[3],
            &[ContactStatus::Dialing],
            &ContactTransition {
                status: ContactStatus::Completed,
                next_attempt_at: None,
                last_outcome: None,
            },
            NOW + 1,
        )
        .await
        .unwrap();
        let mut ends = vec![
            end_of("node-a", id, ids[0], ContactStatus::Retry),
            AttemptEnd {
                counters: Some((0, 0)),
                ..end_of("node-a", id, ids[1], ContactStatus::Retry)
            },
            end_of("node-b", id, ids[2], ContactStatus::Retry),
            end_of("node-a", id, ids[3], ContactStatus::Retry),
        ];
        ends.push(end_of("node-a", id, ids[4], ContactStatus::Rejected));
        let ended = if grouped {
            s.finish_attempts(&ends).await.unwrap()
        } else {
            let mut out = Vec::new();
            for end in &ends {
                out.push(s.finish_attempt(end).await.unwrap());
            }
            out
        };
        let statuses: Vec<Option<ContactStatus>> = ended
            .iter()
            .map(|e| match e {
                Ended::Written { status, .. } => Some(*status),
                Ended::Fenced => None,
            })
            .collect();
        let mut contacts = Vec::new();
        for cid in &ids[..5] {
            let c = s.get_contact(*cid).await.unwrap();
            contacts.push((
                c.status,
                c.attempts,
                c.retries,
                c.next_attempt_at,
                c.last_outcome.clone(),
                attempts_of(s, *cid).await,
            ));
        }
        let events: Vec<(Option<i64>, serde_json::Value)> = s
            .list_events(&EventFilter {
                campaign_id: Some(id),
                kind: Some("attempt".into()),
                ..EventFilter::default()
            })
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.contact_id.map(|c| c - ids[0]), e.detail))
            .collect();
        let in_flight = s.campaign_calls(id).await.unwrap();
        seen.push((statuses, contacts, events, in_flight));
    }
    let (single, grouped) = (&seen[0], &seen[1]);
    assert_eq!(single.0, grouped.0, "Ended");
    assert_eq!(single.1, grouped.1, "contacts");
    assert_eq!(single.2, grouped.2, "events");
    assert_eq!(single.3, grouped.3, "calls in flight");
    // And what that is: written, written, fenced, the mover's status kept, reset.
    assert_eq!(
        single.0,
        vec![
            Some(ContactStatus::Retry),
            Some(ContactStatus::Retry),
            None,
            Some(ContactStatus::Completed),
            Some(ContactStatus::Pending)
        ]
    );
    assert_eq!(
        (single.1[1].1, single.1[1].2),
        (0, 0),
        "counters written back"
    );
    assert_eq!((single.1[4].0, single.1[4].1), (ContactStatus::Pending, 0));
    assert_eq!(single.1[2].5, 0, "the fenced end wrote no record");
    assert_eq!(single.3, 1, "the fenced call's row stays");
    assert_eq!(single.2.len(), 4);
}

/// Claims and ends in groups of several hundred (more rows than one multi-row statement
/// takes): every contact claimed and ended once, each end its own record, contact update and
/// event, the call rows gone; one end of another node's call is fenced, in the last statement.
async fn groups_larger_than_one_statement_are_claimed_and_ended_whole(db: &TestDb) {
    const N: usize = 300;
    let s = &db.store;
    let id = campaign(s, "big groups").await;
    let batch: Vec<_> = (0..N)
        .map(|i| contact(&format!("+1415777{i:04}"), ""))
        .collect();
    s.bulk_insert_contacts(id, &batch, NOW).await.unwrap();
    let ids = contact_ids(s, id).await;
    assert_eq!(ids.len(), N);
    let group: Vec<NewCall> = ids
        .iter()
        .map(|cid| new_call(id, *cid, "node-a", NOW))
        .collect();
    let claimed = s.claim_calls(&group).await.unwrap();
    assert_eq!(claimed.len(), N);
    assert!(claimed.iter().all(|c| matches!(c, Claim::Claimed(_))));
    assert_eq!(s.campaign_calls(id).await.unwrap(), N as i64);
    let mut ends: Vec<AttemptEnd> = ids
        .iter()
        .map(|cid| end_of("node-a", id, *cid, ContactStatus::Retry))
        .collect();
    ends[N - 1].node = "node-b".into();
    let ended = s.finish_attempts(&ends).await.unwrap();
    assert_eq!(ended.len(), N);
    let mut attempt_ids = std::collections::HashSet::new();
    for e in &ended[..N - 1] {
        match e {
            Ended::Written { attempt_id, status } => {
                assert_eq!(*status, ContactStatus::Retry);
                assert!(attempt_ids.insert(*attempt_id), "one record per end");
            }
            Ended::Fenced => panic!("an end of this node's call was fenced"),
        }
    }
    assert_eq!(ended[N - 1], Ended::Fenced);
    assert_eq!(
        s.campaign_calls(id).await.unwrap(),
        1,
        "the fenced call's row stays"
    );
    for cid in &ids[..N - 1] {
        let c = s.get_contact(*cid).await.unwrap();
        assert_eq!(c.status, ContactStatus::Retry);
    }
    assert_eq!(
        s.get_contact(ids[N - 1]).await.unwrap().status,
        ContactStatus::Dialing
    );
    let events = s
        .list_events(&EventFilter {
            campaign_id: Some(id),
            kind: Some("attempt".into()),
            limit: 1000,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), N - 1);
}

async fn attempts_of(s: &Store, contact_id: i64) -> usize {
    s.list_attempts(
        &AttemptFilter {
            contact_id: Some(contact_id),
            ..AttemptFilter::default()
        },
        Page::default(),
    )
    .await
    .unwrap()
    .items
    .len()
}

async fn an_attempt_ends_in_one_transaction_and_only_once(db: &TestDb) {
    let s = &db.store;
    let id = campaign(s, "ends").await;
    s.bulk_insert_contacts(
        id,
        &[contact("+14155550001", ""), contact("+14155550002", "")],
        NOW,
    )
    .await
    .unwrap();
    let ids = contact_ids(s, id).await;
    let Claim::Claimed(c) = s
        .claim_call(&new_call(id, ids[0], "node-a", NOW))
        .await
        .unwrap()
    else {
        panic!("not claimed");
    };
    assert_eq!(c.attempts, 1);
    // Answer: the row keeps the dialog's facts.
    assert!(s
        .call_answered(c.id, "node-a", 1, "{\"call_id\":\"x\"}", NOW + 1)
        .await
        .unwrap());
    assert!(!s
        .call_answered(c.id, "node-b", 1, "{}", NOW + 1)
        .await
        .unwrap());
    // A late write of an earlier attempt of this contact does not touch this call's row.
    assert!(!s
        .call_answered(c.id, "node-a", 0, "{\"call_id\":\"old\"}", NOW + 1)
        .await
        .unwrap());
    let row = s.calls_of_node("node-a").await.unwrap().remove(0);
    assert_eq!(row.state, CallState::Answered);
    assert_eq!(row.dialog.as_deref(), Some("{\"call_id\":\"x\"}"));

    // Another node's end (the fence) writes nothing.
    let foreign = end_of("node-b", id, c.id, ContactStatus::Retry);
    assert_eq!(s.finish_attempt(&foreign).await.unwrap(), Ended::Fenced);
    assert_eq!(attempts_of(s, c.id).await, 0);

    let end = end_of("node-a", id, c.id, ContactStatus::Retry);
    let Ended::Written { status, .. } = s.finish_attempt(&end).await.unwrap() else {
        panic!("not written");
    };
    assert_eq!(status, ContactStatus::Retry);
    let after = s.get_contact(c.id).await.unwrap();
    assert_eq!(
        (
            after.status,
            after.attempts,
            after.next_attempt_at,
            after.last_outcome.as_deref()
        ),
        (ContactStatus::Retry, 1, Some(NOW + 60_000), Some("busy"))
    );
    assert_eq!(attempts_of(s, c.id).await, 1);
    let events = s
        .list_events(&EventFilter {
            contact_id: Some(c.id),
            kind: Some("attempt".into()),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].detail["status"], "retry");
    assert!(s.calls_in_flight().await.unwrap().is_empty());
    // The same end again (a journal replayed twice): nothing doubled.
    assert_eq!(s.finish_attempt(&end).await.unwrap(), Ended::Fenced);
    assert_eq!(attempts_of(s, c.id).await, 1);

    // An attempt that does not count (a shutdown cancelled it) writes its counters back.
    let Claim::Claimed(c2) = s
        .claim_call(&new_call(id, ids[1], "node-a", NOW))
        .await
        .unwrap()
    else {
        panic!("not claimed");
    };
    let mut uncounted = end_of("node-a", id, c2.id, ContactStatus::Pending);
    uncounted.counters = Some((0, 0));
    s.finish_attempt(&uncounted).await.unwrap();
    let after = s.get_contact(c2.id).await.unwrap();
    assert_eq!(
        (after.status, after.attempts, after.retries),
        (ContactStatus::Pending, 0, 0)
    );
    assert_eq!(attempts_of(s, c2.id).await, 1);
}

async fn restart_leaves_live_calls_alone_until_they_end(db: &TestDb) {
    let s = &db.store;
    let id = campaign(s, "restart").await;
    s.bulk_insert_contacts(
        id,
        &[contact("+14155550011", ""), contact("+14155550012", "")],
        NOW,
    )
    .await
    .unwrap();
    let ids = contact_ids(s, id).await;
    s.set_campaign_status(id, CampaignStatus::New, CampaignStatus::Processing, NOW)
        .await
        .unwrap();
    // One contact done, one in a live call.
    let Claim::Claimed(done) = s
        .claim_call(&new_call(id, ids[0], "node-a", NOW))
        .await
        .unwrap()
    else {
        panic!("not claimed");
    };
    s.finish_attempt(&end_of("node-a", id, done.id, ContactStatus::Rejected))
        .await
        .unwrap();
    let Claim::Claimed(live) = s
        .claim_call(&new_call(id, ids[1], "node-a", NOW))
        .await
        .unwrap()
    else {
        panic!("not claimed");
    };
    s.set_campaign_status(
        id,
        CampaignStatus::Processing,
        CampaignStatus::Canceled,
        NOW + 1,
    )
    .await
    .unwrap();
    // A restart from a status that moved meanwhile changes nothing.
    assert!(matches!(
        s.restart_campaign(
            id,
            CampaignStatus::Processing,
            CampaignStatus::Processing,
            NOW + 2
        )
        .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.get_contact(done.id).await.unwrap().status,
        ContactStatus::Rejected
    );
    let (c, reset, deferred) = s
        .restart_campaign(
            id,
            CampaignStatus::Canceled,
            CampaignStatus::Processing,
            NOW + 2,
        )
        .await
        .unwrap();
    assert_eq!(
        (c.status, reset, deferred),
        (CampaignStatus::Processing, 1, 1)
    );
    assert_eq!(
        s.get_contact(done.id).await.unwrap().status,
        ContactStatus::Pending
    );
    // The live call's contact is not dialable while its call lives ...
    let still = s.get_contact(live.id).await.unwrap();
    assert_eq!(still.status, ContactStatus::Dialing);
    assert!(s
        .due_contacts(id, NOW + 3, 10)
        .await
        .unwrap()
        .iter()
        .all(|c| c.id != live.id));
    // ... and is reset when it ends, whatever the call's result said.
    s.finish_attempt(&end_of("node-a", id, live.id, ContactStatus::Rejected))
        .await
        .unwrap();
    let after = s.get_contact(live.id).await.unwrap();
    assert_eq!(
        (
            after.status,
            after.attempts,
            after.retries,
            after.next_attempt_at
        ),
        (ContactStatus::Pending, 0, 0, None)
    );
    assert_eq!(attempts_of(s, live.id).await, 1);
}

async fn dead_nodes_are_those_that_stopped_beating(db: &TestDb) {
    let s = &db.store;
    let id = campaign(s, "nodes").await;
    s.bulk_insert_contacts(
        id,
        &[
            contact("+14155550021", ""),
            contact("+14155550022", ""),
            contact("+14155550023", ""),
        ],
        NOW,
    )
    .await
    .unwrap();
    let ids = contact_ids(s, id).await;
    s.node_started("alive", NOW).await.unwrap();
    s.node_started("stale", NOW - 60_000).await.unwrap();
    for (cid, node) in [(ids[0], "alive"), (ids[1], "stale"), (ids[2], "ghost")] {
        assert!(matches!(
            s.claim_call(&new_call(id, cid, node, NOW)).await.unwrap(),
            Claim::Claimed(_)
        ));
    }
    s.heartbeat("alive", NOW + 5_000).await.unwrap();
    // Older than 10 s at NOW + 10 s: "stale"; "ghost" never beat at all.
    assert_eq!(
        s.dead_nodes(NOW).await.unwrap(),
        vec!["ghost".to_string(), "stale".to_string()]
    );
    assert_eq!(
        s.calls_of_node("stale").await.unwrap()[0].contact_id,
        ids[1]
    );
    // A node with calls left is not forgotten; one without is.
    s.node_started("gone", NOW - 60_000).await.unwrap();
    assert_eq!(s.forget_dead_nodes(NOW).await.unwrap(), 1);
    s.node_stopped("alive").await.unwrap();
    assert_eq!(
        s.dead_nodes(NOW).await.unwrap(),
        vec![
            "alive".to_string(),
            "ghost".to_string(),
            "stale".to_string()
        ]
    );
}

fn invalid_field<T: std::fmt::Debug>(result: Result<T, StoreError>, field: &str) {
    match result {
        Err(StoreError::Invalid(m)) => assert!(m.starts_with(&format!("{field}: ")), "{m}"),
        other => panic!("expected Invalid naming {field}, got {other:?}"),
    }
}

fn conflict_naming<T: std::fmt::Debug>(result: Result<T, StoreError>, needles: &[&str]) {
    match result {
        Err(StoreError::Conflict(m)) => {
            for n in needles {
                assert!(m.contains(n), "{m:?} should name {n:?}");
            }
        }
        other => panic!("expected a Conflict naming {needles:?}, got {other:?}"),
    }
}

/// Phone numbers: E.164, unique across the store, per account; a campaign's caller ID comes
/// from its number, which never changes; a number is held by at most one scheduled,
/// processing or paused campaign, whatever moves the campaign there (create, start,
/// restart, two starts at once); the inbound lookup finds the campaign owning a DID.
async fn numbers_are_per_account_and_held_by_one_running_campaign(db: &TestDb) {
    use CampaignStatus::*;
    let s = &db.store;
    let a = s.create_account("num-a", "A", NOW).await.unwrap().id;
    let b = s.create_account("num-b", "B", NOW).await.unwrap().id;
    let new = |n: &str| NewNumber {
        number: n.into(),
        label: Some(" Sales line ".into()),
        sip_profile: Some("acme".into()),
    };
    let n1 = s
        .create_number(a, &new(" +12025550100 "), NOW)
        .await
        .unwrap();
    assert_eq!(n1.number, "+12025550100");
    assert_eq!(n1.label.as_deref(), Some("Sales line"));
    assert_eq!(n1.sip_profile.as_deref(), Some("acme"));
    assert_eq!((n1.account_id, n1.campaign_id), (a, None));
    invalid_field(s.create_number(a, &new("2025550100"), NOW).await, "number");
    invalid_field(s.create_number(a, &new("+1 202 555"), NOW).await, "number");
    let mut bad_profile = new("+12025550199");
    bad_profile.sip_profile = Some("no spaces".into());
    invalid_field(s.create_number(a, &bad_profile, NOW).await, "sip_profile");
    // Unique across the whole store: another account cannot register it too.
    conflict_naming(
        s.create_number(b, &new("+12025550100"), NOW).await,
        &["+12025550100"],
    );
    let n2 = s
        .create_number(
            a,
            &NewNumber {
                number: "+12025550111".into(),
                ..NewNumber::default()
            },
            NOW,
        )
        .await
        .unwrap();
    // Another account sees none of them.
    assert!(matches!(
        s.get_number(b, n1.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.update_number(b, n1.id, &NumberUpdate::default(), NOW)
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.delete_number(b, n1.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        s.list_numbers(b, false, Page::default())
            .await
            .unwrap()
            .total,
        0
    );
    let updated = s
        .update_number(
            a,
            n1.id,
            &NumberUpdate {
                label: Some(None),
                sip_profile: None,
            },
            NOW + 1,
        )
        .await
        .unwrap();
    assert_eq!(updated.label, None);
    assert_eq!(updated.sip_profile.as_deref(), Some("acme"));
    assert_eq!(updated.updated_at, NOW + 1);

    // A campaign calling from n1: caller ID and profile from the number.
    let mut with_n1 = settings("from n1");
    with_n1.number_id = Some(n1.id);
    let c1 = s
        .create_campaign(Some(a), &with_n1, New, NOW)
        .await
        .unwrap();
    assert_eq!(c1.settings.number_id, Some(n1.id));
    assert_eq!(c1.settings.caller_id, "+12025550100");
    assert_eq!(c1.settings.sip_profile, "acme");
    assert_eq!(s.get_campaign(c1.id).await.unwrap(), c1);
    invalid_field(
        s.create_campaign(Some(b), &with_n1, New, NOW).await,
        "number_id",
    );
    let mut other_caller = with_n1.clone();
    other_caller.caller_id = "+15550001111".into();
    invalid_field(
        s.create_campaign(Some(a), &other_caller, New, NOW).await,
        "caller_id",
    );
    // The number never changes after creation; other settings do.
    let mut moved = c1.settings.clone();
    moved.number_id = Some(n2.id);
    invalid_field(s.update_campaign(c1.id, &moved, NOW).await, "number_id");
    moved.number_id = None;
    invalid_field(s.update_campaign(c1.id, &moved, NOW).await, "number_id");
    let mut recalled = c1.settings.clone();
    recalled.caller_id = "+12025550111".into();
    invalid_field(s.update_campaign(c1.id, &recalled, NOW).await, "caller_id");
    let mut renamed = c1.settings.clone();
    renamed.name = "from n1, renamed".into();
    let c1 = s.update_campaign(c1.id, &renamed, NOW).await.unwrap();
    assert_eq!(c1.settings.number_id, Some(n1.id));

    // Held by one running campaign: a second `new` one may name it, not start.
    let c2 = s
        .create_campaign(Some(a), &with_n1, New, NOW)
        .await
        .unwrap();
    s.set_campaign_status(c1.id, New, Processing, NOW + 2)
        .await
        .unwrap();
    let avail = s.list_numbers(a, true, Page::default()).await.unwrap();
    assert_eq!(avail.total, 1);
    assert_eq!(avail.items[0].id, n2.id);
    let all = s.list_numbers(a, false, Page::default()).await.unwrap();
    assert_eq!(all.total, 2);
    assert_eq!(all.items[0].number, "+12025550100");
    assert_eq!(all.items[0].campaign_id, Some(c1.id));
    let c1_id = c1.id.to_string();
    conflict_naming(
        s.set_campaign_status(c2.id, New, Processing, NOW + 3).await,
        &[&c1_id, "from n1, renamed", "+12025550100"],
    );
    assert_eq!(s.get_campaign(c2.id).await.unwrap().status, New);
    // Nor may a new campaign name it (the guide: held numbers are not offered).
    conflict_naming(
        s.create_campaign(Some(a), &with_n1, New, NOW).await,
        &[&c1_id],
    );
    let mut scheduled = with_n1.clone();
    scheduled.schedule_start = Some(NOW + 3_600_000);
    conflict_naming(
        s.create_campaign(Some(a), &scheduled, Scheduled, NOW).await,
        &[&c1_id],
    );
    conflict_naming(s.delete_number(a, n1.id).await, &[&c1_id]);
    // Paused still holds it.
    s.set_campaign_status(c1.id, Processing, Paused, NOW + 4)
        .await
        .unwrap();
    conflict_naming(
        s.set_campaign_status(c2.id, New, Processing, NOW + 5).await,
        &[&c1_id],
    );
    assert_eq!(
        s.campaign_for_number("+12025550100").await.unwrap(),
        Some((a, c1.id))
    );
    // Stopped, it lets go; then the other campaign may take it, and restarting the first
    // is refused while the second holds it.
    s.set_campaign_status(c1.id, Paused, Canceled, NOW + 6)
        .await
        .unwrap();
    s.set_campaign_status(c2.id, New, Processing, NOW + 7)
        .await
        .unwrap();
    assert_eq!(
        s.campaign_for_number("+12025550100").await.unwrap(),
        Some((a, c2.id))
    );
    let c2_id = c2.id.to_string();
    conflict_naming(
        s.restart_campaign(c1.id, Canceled, Processing, NOW + 8)
            .await,
        &[&c2_id],
    );
    assert_eq!(s.get_campaign(c1.id).await.unwrap().status, Canceled);
    // No running campaign: the one updated last owns the DID.
    s.set_campaign_status(c2.id, Processing, Finished, NOW + 9)
        .await
        .unwrap();
    assert_eq!(
        s.campaign_for_number("+12025550100").await.unwrap(),
        Some((a, c2.id))
    );
    s.restart_campaign(c1.id, Canceled, Processing, NOW + 10)
        .await
        .unwrap();
    s.set_campaign_status(c1.id, Processing, Canceled, NOW + 11)
        .await
        .unwrap();
    assert_eq!(
        s.campaign_for_number("+12025550100").await.unwrap(),
        Some((a, c1.id))
    );
    assert_eq!(s.campaign_for_number("+12025550111").await.unwrap(), None);
    assert_eq!(s.campaign_for_number("+19995550000").await.unwrap(), None);

    // Two starts at once: exactly one campaign gets the number.
    let mut with_n2 = settings("race");
    with_n2.number_id = Some(n2.id);
    let c3 = s
        .create_campaign(Some(a), &with_n2, New, NOW)
        .await
        .unwrap();
    let c4 = s
        .create_campaign(Some(a), &with_n2, New, NOW)
        .await
        .unwrap();
    let (r3, r4) = tokio::join!(
        s.set_campaign_status(c3.id, New, Processing, NOW + 12),
        s.set_campaign_status(c4.id, New, Processing, NOW + 12),
    );
    let won = [&r3, &r4].iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{r3:?} / {r4:?}");
    assert!(
        [&r3, &r4]
            .iter()
            .any(|r| matches!(r, Err(StoreError::Conflict(_)))),
        "{r3:?} / {r4:?}"
    );

    // A number no running campaign holds can go; its campaigns keep their caller ID.
    s.delete_number(a, n1.id).await.unwrap();
    let c1 = s.get_campaign(c1.id).await.unwrap();
    assert_eq!(c1.settings.number_id, None);
    assert_eq!(c1.settings.caller_id, "+12025550100");
    assert!(matches!(
        s.get_number(a, n1.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(s.campaign_for_number("+12025550100").await.unwrap(), None);
    // Deleted, the DID may be registered again (by anyone).
    s.create_number(b, &new("+12025550100"), NOW).await.unwrap();
}

/// `outdial call`'s check: every list at once, a number dialed without `+` by its ending.
async fn a_single_call_checks_every_dnc_list(db: &TestDb) {
    use outdial::store::{dialed_number, DialedNumber};
    let s = &db.store;
    let acme = s.create_account("dnc-call", "Acme", NOW).await.unwrap().id;
    s.add_dnc(DncList::Account(acme), "+12025550177", "asked", NOW)
        .await
        .unwrap();
    s.add_dnc(DncList::Global, "+447700900123", "TPS", NOW)
        .await
        .unwrap();
    let found = |d: &str| {
        let dialed = dialed_number(d).unwrap();
        async move {
            s.dnc_entries_for(&dialed)
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.phone, e.account_id))
                .collect::<Vec<_>>()
        }
    };
    let acme_entry = vec![("+12025550177".to_string(), Some(acme))];
    assert_eq!(found("sip:+12025550177@127.0.0.1:5060").await, acme_entry);
    assert_eq!(found("(202) 555-0177").await, acme_entry);
    assert_eq!(found("12025550177").await, acme_entry);
    assert_eq!(
        found("07700 900123").await,
        vec![("+447700900123".to_string(), None)]
    );
    assert!(found("+12025550178").await.is_empty());
    assert!(s
        .dnc_entries_for(&DialedNumber::Digits("5550177".into()))
        .await
        .unwrap()
        .iter()
        .any(|e| e.phone == "+12025550177"));
}
