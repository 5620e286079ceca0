//! The campaign store: accounts, campaigns, contacts, call attempts (CDRs), the DNC list,
//! business hours, export jobs and an append-only event log, in SQLite or PostgreSQL.
//!
//! One [`Store`] type over sqlx's `Any` driver: every query is one SQL text that both
//! engines accept (`$1` placeholders, BIGINT milliseconds for times, BIGINT 0/1 for flags,
//! TEXT for JSON). The two schemas live in `migrations/sqlite` and `migrations/postgres`,
//! embedded in the binary and applied by [`Store::open`]. Queries are built at run time
//! (no `query!` macros, so no database is needed to build).
//!
//! What it must not do: decide anything about a campaign (that is the scheduler's job),
//! read the clock (callers pass `now`), log secrets (API keys and session tokens are
//! stored and compared as SHA-256 hashes only), or let two nodes take the same contact or
//! start the same campaign: those writes are compare-and-set `UPDATE … WHERE status …`.
//!
//! One file per group of tables: [`accounts`], [`agents`] (SIP agents, pools, agent
//! leases), [`ai_agents`] (AI voice agents), [`campaigns`], [`contacts`], [`attempts`],
//! [`goals`] (goals, analyses and the reports agents post about attempts), [`dnc`],
//! [`hours`], [`exports`], [`events`], [`imports`] (CSV imports staged, then moved whole),
//! [`inflight`] (calls in flight, nodes, the attempt's end in one transaction), [`leases`],
//! [`numbers`] (an account's phone numbers, each held by at most one running campaign).

pub mod accounts;
pub mod agents;
pub mod ai_agents;
pub mod attempts;
pub mod campaigns;
pub mod contacts;
pub mod dnc;
pub mod events;
pub mod exports;
pub mod goals;
pub mod hours;
pub mod imports;
pub mod inflight;
pub mod leases;
pub mod numbers;
pub mod webhooks;

pub use accounts::{Account, ApiKey, Authenticated, Login, NewApiKey, Role, Session};
pub use agents::{Agent, AgentLease, AgentPool, AgentRelease};
pub use ai_agents::AiAgent;
pub use attempts::{
    AbandonCounts, AttemptFilter, AttemptRecord, AttemptStats, BridgeRecord, BridgeStats,
    CallAttempt, CampaignReport, HeatCell, HeatMap, PacingStats, ANSWERED,
};
pub use campaigns::{CallCounts, CampaignFilter, CampaignSummary, ContactCounts};
pub use contacts::{ContactFilter, ContactTransition, NewContact};
pub use dnc::{dialed_number, DialedNumber, DncEntry, DncList};
pub use events::{Event, EventFilter};
pub use exports::{ExportFormat, ExportJob, ExportScope, ExportStatus, ExportUpdate, NewExport};
pub use goals::{Answer, AttemptAnalysis, GoalReport, OutcomeCounts, QuestionStats};
pub use numbers::{NewNumber, NumberUpdate, PhoneNumber};

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyArguments, AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::query::Query;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use sqlx::{Any, AnyPool, ConnectOptions, Connection, Executor, Row};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// How long a SQLite connection waits for another writer before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// The most rows one page may hold.
pub const MAX_PAGE: i64 = 10_000;

/// Why a store call failed; one line each.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist ("campaign 7").
    #[error("{0} not found")]
    NotFound(String),
    /// The request clashes with what is stored: a duplicate, a status that changed
    /// meanwhile, a contact that is no longer pending, a schedule still in use.
    #[error("{0}")]
    Conflict(String),
    /// The input is not acceptable (names the field).
    #[error("{0}")]
    Invalid(String),
    /// The database failed (connection, SQL, migration, a stored value we cannot read).
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Db(sqlx::Error::Migrate(Box::new(e)))
    }
}

impl From<crate::campaign::model::ModelError> for StoreError {
    fn from(e: crate::campaign::model::ModelError) -> Self {
        StoreError::Invalid(e.to_string())
    }
}

/// Which database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Rows `limit` from `offset` (in the list's own order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

impl Default for Page {
    fn default() -> Self {
        Page {
            limit: 50,
            offset: 0,
        }
    }
}

impl Page {
    pub fn new(limit: i64, offset: i64) -> Page {
        Page { limit, offset }
    }

    /// The page with its limit in 1..=[`MAX_PAGE`] and a non-negative offset.
    pub fn clamped(self) -> Page {
        Page {
            limit: self.limit.clamp(1, MAX_PAGE),
            offset: self.offset.max(0),
        }
    }
}

/// One page of a list and how many rows the whole list (same filters) holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paged<T> {
    pub items: Vec<T>,
    pub total: i64,
}

/// The campaign store. Cheap to clone (a pool handle).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite has one writer at a time, and a connection that finds the file locked sleeps
    /// in SQLite's busy handler (1, 2, 5, 10… ms) before it looks again. The writers of a
    /// live campaign (claims, answers, ends, events) queue here instead, so each starts the
    /// moment the one before commits. PostgreSQL: not used (its writers run side by side).
    write_gate: Arc<tokio::sync::Mutex<()>>,
}

impl Store {
    /// Connects to `url` (`sqlite://path.db`, `sqlite::memory:`, `postgres://…`) and applies
    /// the migrations that have not run yet. A SQLite file is created if missing and put in
    /// WAL mode; foreign keys are on and writers wait for each other (busy timeout).
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Invalid(format!(
                "database url {:?}: expected sqlite:… or postgres://…",
                redact_url(url)
            )));
        };
        let pool = match backend {
            Backend::Sqlite => open_sqlite(url).await?,
            Backend::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(10)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?
            }
        };
        let store = Store {
            pool,
            backend,
            write_gate: Arc::new(tokio::sync::Mutex::new(())),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// [`Store::open`] for a store that already exists: `None` for a SQLite file that is
    /// not there (nothing is created) or an in-memory SQLite store (it would be empty).
    /// PostgreSQL is opened as configured (a database that does not exist fails to connect).
    pub async fn open_existing(url: &str) -> Result<Option<Store>> {
        if url.starts_with("sqlite:") {
            if is_memory(url) {
                return Ok(None);
            }
            let options = SqliteConnectOptions::from_str(url)?;
            if !options.get_filename().exists() {
                return Ok(None);
            }
        }
        Store::open(url).await.map(Some)
    }

    async fn migrate(&self) -> Result<()> {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The turn of a hot-path writer on SQLite (see `write_gate`); hold it over the whole
    /// transaction. `None` on PostgreSQL. `op` names the writer in the metrics
    /// `outdial_store_write_turn_wait_seconds` (queued for the turn) and
    /// `outdial_store_write_turn_held_seconds` (from the turn to its release).
    pub(crate) async fn write_turn(&self, op: &'static str) -> Option<WriteTurn<'_>> {
        match self.backend {
            Backend::Sqlite => {
                let asked = std::time::Instant::now();
                let guard = self.write_gate.lock().await;
                let taken = std::time::Instant::now();
                metrics::histogram!("outdial_store_write_turn_wait_seconds", "op" => op)
                    .record(taken.duration_since(asked).as_secs_f64());
                Some(WriteTurn {
                    _guard: guard,
                    op,
                    taken,
                })
            }
            Backend::Postgres => None,
        }
    }

    /// The pool, for what this module does not cover yet.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Waits for the connections to close.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// A hot-path writer's turn on SQLite ([`Store::write_turn`]); released when dropped.
pub(crate) struct WriteTurn<'a> {
    _guard: tokio::sync::MutexGuard<'a, ()>,
    op: &'static str,
    taken: std::time::Instant,
}

impl Drop for WriteTurn<'_> {
    fn drop(&mut self) {
        metrics::histogram!("outdial_store_write_turn_held_seconds", "op" => self.op)
            .record(self.taken.elapsed().as_secs_f64());
    }
}

fn is_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

async fn open_sqlite(url: &str) -> Result<AnyPool> {
    let memory = is_memory(url);
    if !memory {
        // Create the file and switch it to WAL once (the mode is kept in the file);
        // the Any driver only reads a URL, so this is done with the native driver.
        let mut conn = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .connect()
            .await?;
        conn.execute("SELECT 1").await?;
        conn.close().await?;
    }
    let mut options = AnyPoolOptions::new()
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // foreign_keys is already on by sqlx's default; say it anyway.
                conn.execute("PRAGMA foreign_keys = ON").await?;
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                // Safe with WAL: a crash loses at most the last transactions, never the file.
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                conn.execute("PRAGMA temp_store = MEMORY").await?;
                Ok(())
            })
        });
    options = if memory {
        // Every connection to :memory: is a new database: keep exactly one, forever.
        options
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        options.max_connections(4)
    };
    Ok(options.connect(url).await?)
}

/// `url` without its password, for error messages.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Helpers shared by the table files.

/// A value bound to a dynamically built query.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    I64(i64),
    OptI64(Option<i64>),
    F64(f64),
    OptF64(Option<f64>),
    Text(String),
    OptText(Option<String>),
}

/// A query text built piece by piece with its arguments (`$n` numbered in push order).
#[derive(Debug, Default)]
pub(crate) struct Sql {
    pub text: String,
    pub args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            args: Vec::new(),
        }
    }

    /// Adds an argument and returns its placeholder.
    pub fn arg(&mut self, a: Arg) -> String {
        self.args.push(a);
        format!("${}", self.args.len())
    }

    /// The statement for a connection to `backend`. On SQLite its numbered placeholders go
    /// as anonymous `?`, each bound in the order it appears (an argument used twice is bound
    /// twice): sqlx's SQLite driver looks each numbered placeholder up by name, a walk over
    /// all of them, so a many-row statement's cost grew with the square of its placeholders.
    /// PostgreSQL, and a text this cannot rewrite safely (a `?` already there, an unclosed
    /// quote, an argument never used), get the text as written.
    pub fn query(&self, backend: Backend) -> Query<'static, Any, AnyArguments> {
        let rewritten = match backend {
            Backend::Sqlite => anonymous(&self.text, self.args.len()),
            Backend::Postgres => None,
        };
        match rewritten {
            Some((text, order)) => bind_all(
                sqlx::query(sqlx::AssertSqlSafe(text)),
                order.into_iter().map(|i| &self.args[i]),
            ),
            None => bind_all(
                sqlx::query(sqlx::AssertSqlSafe(self.text.clone())),
                &self.args,
            ),
        }
    }
}

impl Backend {
    /// The backend of an open connection.
    pub fn of(conn: &sqlx::AnyConnection) -> Backend {
        if conn.backend_name().eq_ignore_ascii_case("sqlite") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }
}

/// `text` with its placeholders `$1` … `$args` made anonymous (`?`) outside quoted strings
/// and identifiers, and the index of the argument each `?` takes, in order; `None` when a `?`
/// is there already, a quote is left open, a placeholder is out of range or an argument is
/// never used.
fn anonymous(text: &str, args: usize) -> Option<(String, Vec<usize>)> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut order = Vec::with_capacity(args);
    let mut used = vec![false; args];
    let mut quote: Option<u8> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match quote {
            Some(q) => {
                if b == q {
                    quote = None;
                }
                i += 1;
            }
            None if b == b'\'' || b == b'"' => {
                quote = Some(b);
                i += 1;
            }
            None if b == b'?' => return None,
            None if b == b'$' => {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|d| d.is_ascii_digit())
                    .count();
                let n: usize = text[i + 1..i + 1 + digits].parse().ok()?;
                let index = n.checked_sub(1).filter(|&k| k < args)?;
                used[index] = true;
                order.push(index);
                out.push_str(&text[copied..i]);
                out.push('?');
                i += 1 + digits;
                copied = i;
            }
            None => i += 1,
        }
    }
    if quote.is_some() || used.contains(&false) {
        return None;
    }
    out.push_str(&text[copied..]);
    Some((out, order))
}

pub(crate) fn bind_all<'a>(
    mut q: Query<'static, Any, AnyArguments>,
    args: impl IntoIterator<Item = &'a Arg>,
) -> Query<'static, Any, AnyArguments> {
    for a in args {
        q = match a {
            Arg::I64(v) => q.bind(*v),
            Arg::OptI64(v) => q.bind(*v),
            Arg::F64(v) => q.bind(*v),
            Arg::OptF64(Some(v)) => q.bind(*v),
            // sqlx-core 0.9.0 hands a NULL of `f64` to PostgreSQL as a `real` (float4) and one
            // of `f32` as a `double precision`: a statement first prepared with a NULL would
            // then refuse a later 8-byte value ("incorrect binary data format"). A NULL `f32`
            // arrives as `double precision`, which every such column is.
            Arg::OptF64(None) => q.bind(Option::<f32>::None),
            Arg::Text(v) => q.bind(v.clone()),
            Arg::OptText(v) => q.bind(v.clone()),
        };
    }
    q
}

/// `WHERE a AND b …` (or nothing) from conditions.
pub(crate) fn where_clause(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

/// `$a, $b, …` for a list of values (added to `sql`'s arguments).
pub(crate) fn in_list(sql: &mut Sql, values: impl IntoIterator<Item = Arg>) -> String {
    values
        .into_iter()
        .map(|v| sql.arg(v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A LIKE pattern matching `text` anywhere, lowercased, with `%`, `_` and `\` escaped
/// (use with `ESCAPE '\'`).
pub(crate) fn like_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// The ids a multi-row `INSERT … RETURNING id` gave back, in the order of its `VALUES` list:
/// a statement's rows take their ids in that order (SQLite's rowids and PostgreSQL's sequences
/// only grow), so the ids sorted are its rows' in order, whatever order `RETURNING` lists them
/// in. `written`: the rows the statement wrote (an error when the ids are not as many).
pub(crate) fn ids_in_order(rows: &[AnyRow], written: usize, what: &str) -> Result<Vec<i64>> {
    let mut ids = rows
        .iter()
        .map(|row| row.try_get::<i64, _>("id"))
        .collect::<std::result::Result<Vec<i64>, _>>()?;
    if ids.len() != written {
        return Err(StoreError::Invalid(format!(
            "{what}: {written} written, {} ids returned",
            ids.len()
        )));
    }
    ids.sort_unstable();
    Ok(ids)
}

/// A decode error for a stored value we cannot read.
pub(crate) fn corrupt(column: &str, value: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("column {column}: unreadable stored value {value:?}").into())
}

/// Reads a BIGINT 0/1 flag.
pub(crate) fn get_flag(row: &AnyRow, column: &str) -> Result<bool> {
    Ok(row.try_get::<i64, _>(column)? != 0)
}

/// Reads a word column through `parse`.
pub(crate) fn get_word<T>(
    row: &AnyRow,
    column: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T> {
    let text: String = row.try_get(column)?;
    parse(&text).ok_or_else(|| StoreError::Db(corrupt(column, &text)))
}

/// Reads a JSON text column.
pub(crate) fn get_json<T: serde::de::DeserializeOwned>(row: &AnyRow, column: &str) -> Result<T> {
    let text: String = row.try_get(column)?;
    serde_json::from_str(&text).map_err(|_| StoreError::Db(corrupt(column, &text)))
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    // Serialising plain data (strings, numbers, vectors) cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

pub(crate) fn flag(b: bool) -> i64 {
    i64::from(b)
}

/// Maps a unique or foreign-key violation to a conflict with `what` as its message.
pub(crate) fn conflict_on_constraint(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    if let Some(db) = e.as_database_error() {
        // SQLite reports a RESTRICT action as a trigger constraint (1811), not 787.
        if db.is_unique_violation()
            || db.is_foreign_key_violation()
            || db.message().contains("FOREIGN KEY constraint failed")
        {
            return StoreError::Conflict(what());
        }
    }
    StoreError::Db(e)
}

/// True for an E.164 number: `+`, then 1–15 digits, the first not 0.
pub fn is_e164(phone: &str) -> bool {
    let Some(digits) = phone.strip_prefix('+') else {
        return false;
    };
    (1..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// Hex of SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_go_anonymous_in_the_order_they_appear() {
        let q = |text: &str, args| anonymous(text, args);
        let owned = |text: &str, order: &[usize]| Some((text.to_string(), order.to_vec()));
        assert_eq!(
            q("INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)", 4),
            owned("INSERT INTO t (a, b) VALUES (?, ?), (?, ?)", &[0, 1, 2, 3])
        );
        // Quoted text is not a placeholder.
        assert_eq!(
            q("SELECT '$9', \"$x\" FROM t WHERE a = $1 AND b = $2", 2),
            owned("SELECT '$9', \"$x\" FROM t WHERE a = ? AND b = ?", &[0, 1])
        );
        // Reused and out of order: bound once per use, in the order of the text.
        assert_eq!(
            q("a = $2 OR b = $1 OR c = $2", 2),
            owned("a = ? OR b = ? OR c = ?", &[1, 0, 1])
        );
        assert_eq!(q("a = $10 AND b = $1", 10), None, "arguments 2–9 unused");
        // Missing or unknown arguments, a `?` already there, a bare `$`, an open quote.
        assert_eq!(q("a = $1", 2), None);
        assert_eq!(q("a = $1 AND b = $2", 1), None);
        assert_eq!(q("a = $0", 1), None);
        assert_eq!(q("a = ? AND b = $1", 1), None);
        assert_eq!(q("a = $ AND b = $1", 1), None);
        assert_eq!(q("a = 'x AND b = $1", 1), None);
        assert_eq!(q("SELECT 1", 0), owned("SELECT 1", &[]));
    }

    #[tokio::test]
    async fn a_reused_argument_binds_each_time_on_sqlite() {
        let store = Store::open("sqlite::memory:").await.expect("store");
        let mut sql = Sql::default();
        let a = sql.arg(Arg::I64(7));
        let b = sql.arg(Arg::Text("x".into()));
        sql.text = format!("SELECT {b} || {a} AS s, {a} + {a} AS n");
        let row = sql
            .query(store.backend())
            .fetch_one(&store.pool)
            .await
            .expect("row");
        let s: String = row.try_get("s").expect("s");
        let n: i64 = row.try_get("n").expect("n");
        assert_eq!((s.as_str(), n), ("x7", 14));
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_A\\b"), "%50\\%\\_a\\\\b%");
    }

    #[test]
    fn e164_is_plus_and_digits() {
        assert!(is_e164("+12025550101"));
        assert!(!is_e164("12025550101"));
        assert!(!is_e164("+"));
        assert!(!is_e164("+0123"));
        assert!(!is_e164("+1202555010112345"));
        assert!(!is_e164("+1 202"));
    }

    #[test]
    fn pages_are_clamped() {
        assert_eq!(Page::new(0, -5).clamped(), Page::new(1, 0));
        assert_eq!(Page::new(1_000_000, 3).clamped(), Page::new(MAX_PAGE, 3));
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn sha256_hex_matches_the_known_vector() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn memory_store_opens_and_migrates() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        assert_eq!(store.backend(), Backend::Sqlite);
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM campaigns")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(n, 0);
    }
}
