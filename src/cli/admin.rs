//! `outdial keys create|list|revoke`, `outdial campaign …`, `outdial contacts import …`: scripting the
//! campaign store from a shell. They open the store named by the configuration (the same
//! one `outdial serve` uses, SQLite or PostgreSQL) and work on it directly; a running
//! server's engine sees the change at its next tick (within a second).
//!
//! Output: one line per item for people, or `--json` for scripts. Errors are one line.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{bail, Context};
use outdial::api::import::ContactImport;
use outdial::api::ApiError;
use outdial::campaign::{
    apply_action, CampaignAction, CampaignSettings, CampaignStatus, Interval, IntervalUnit,
};
use outdial::store::contacts::ContactFilter;
use outdial::store::{CampaignFilter, Page, Role, Store};

use super::now_ms;

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Make a new API key for LOGIN and print it once. A new LOGIN is a new account (its
    /// admin), or with --account a new login of that existing account.
    Create {
        #[arg(long)]
        login: String,
        /// The account's display name (new accounts only).
        #[arg(long)]
        name: Option<String>,
        /// A label to tell keys apart.
        #[arg(long, default_value = "")]
        label: String,
        /// Add a new LOGIN to the account whose first login is this one.
        #[arg(long, value_name = "LOGIN")]
        account: Option<String>,
        /// The role of a new login added with --account: admin or operator.
        #[arg(long, default_value = "operator")]
        role: String,
    },
    /// List API keys (never the keys themselves): every account's, or one account's.
    List {
        /// Only the account this login belongs to.
        #[arg(long)]
        login: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke an API key by id (see `keys list`); the sessions opened with it end too.
    Revoke { id: i64 },
}

#[derive(clap::Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per run
pub enum CampaignCommand {
    /// Create a campaign (status new, or scheduled with --start-at).
    Create(CreateArgs),
    /// List campaigns with their progress.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One campaign, its settings and contact counts.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Start dialing (or schedule, when the start time is ahead).
    Start { id: i64 },
    /// Stop dialing for now; progress is kept.
    Pause { id: i64 },
    /// Continue a paused campaign.
    Resume { id: i64 },
    /// Cancel the campaign: no more calls, live calls hung up.
    Stop { id: i64 },
    /// Dial a finished or canceled campaign's contacts again from the start.
    Restart { id: i64 },
}

#[derive(clap::Args)]
pub struct CreateArgs {
    #[arg(long)]
    name: String,
    #[arg(long, default_value = "")]
    description: String,
    /// Where answered people are connected (SIP URI or number).
    #[arg(long, default_value = "")]
    connect_to: String,
    /// Calls per minute.
    #[arg(long, default_value_t = 10.0)]
    pace: f64,
    #[arg(long, default_value_t = 10)]
    max_concurrent: i64,
    #[arg(long, default_value = "")]
    caller_id: String,
    /// One of the account's phone numbers (`/v1/numbers`, needs --login): the campaign calls
    /// from it (its caller ID), and it cannot be changed later.
    #[arg(long, value_name = "ID")]
    number_id: Option<i64>,
    /// Trunk profile name.
    #[arg(long, default_value = "")]
    profile: String,
    /// Seconds to ring (below 15 needs --ring-timeout-override).
    #[arg(long, default_value_t = 30)]
    ring_timeout: i64,
    #[arg(long)]
    ring_timeout_override: bool,
    #[arg(long, default_value_t = 2)]
    max_retries: i64,
    /// Retry interval in seconds.
    #[arg(long, default_value_t = 1800)]
    retry_interval: i64,
    /// WAV played to whoever answers, then hang up: a file name in the media directory
    /// (`[media] dir`), not a path.
    #[arg(long)]
    play: Option<String>,
    /// Default country for numbers without +.
    #[arg(long, default_value = "US")]
    country: String,
    /// Every setting as a JSON object (the API's field names); flags above override it.
    #[arg(long, value_name = "FILE.json")]
    settings: Option<PathBuf>,
    /// The account that owns the campaign, by one of its logins (the API shows a campaign
    /// only to its account; without --login it belongs to no account).
    #[arg(long)]
    login: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
pub enum ContactsCommand {
    /// Import a CSV file of contacts into a campaign (header-less phone,name,comments, or
    /// a header row naming the columns). All or nothing, as the API's import: a file that
    /// cannot be read imports no row; a number repeated in the file is a refused row.
    Import {
        file: PathBuf,
        #[arg(long)]
        campaign: i64,
        /// Default country for numbers without + (default: the campaign's).
        #[arg(long)]
        country: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// A campaign's contacts with their status and attempts.
    List {
        #[arg(long)]
        campaign: i64,
        #[arg(long)]
        json: bool,
    },
}

pub async fn keys(store: Store, cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::Create {
            login,
            name,
            label,
            account,
            role,
        } => {
            let now = now_ms();
            let role = Role::parse(&role)
                .with_context(|| format!("--role {role:?}: expected admin or operator"))?;
            let who = match (store.login_by_name(&login).await?, account) {
                (Some(existing), None) => existing,
                (Some(_), Some(_)) => bail!("login {login:?} exists already"),
                (None, None) => {
                    let account = store
                        .create_account(&login, name.as_deref().unwrap_or(&login), now)
                        .await?;
                    store
                        .login_by_name(&account.login)
                        .await?
                        .with_context(|| format!("account {:?} has no login", account.login))?
                }
                (None, Some(owner)) => {
                    let owner = store
                        .login_by_name(&owner)
                        .await?
                        .with_context(|| format!("--account {owner:?}: no such login"))?;
                    store
                        .create_login(owner.account_id, &login, role, now)
                        .await?
                }
            };
            let key = store.create_login_key(who.id, &label, now).await?;
            eprintln!(
                "API key {} for login {:?} ({}) (shown once; keep it safe):",
                key.key.id, who.login, who.role
            );
            println!("{}", key.secret);
        }
        KeysCommand::List { login, json } => {
            let accounts = match login {
                Some(login) => {
                    let who = store
                        .login_by_name(&login)
                        .await?
                        .with_context(|| format!("--login {login:?}: no such login"))?;
                    vec![who.account_id]
                }
                None => store
                    .list_accounts()
                    .await?
                    .into_iter()
                    .map(|a| a.id)
                    .collect(),
            };
            for account in accounts {
                for key in store.list_api_keys(account).await? {
                    if json {
                        println!("{}", serde_json::to_string(&key)?);
                        continue;
                    }
                    let state = match key.revoked_at {
                        Some(_) => "revoked",
                        None => "active",
                    };
                    println!(
                        "{}\taccount {}\t{}\todk_{}…\t{state}\t{}",
                        key.id,
                        key.account_id,
                        key.login.as_deref().unwrap_or("-"),
                        key.prefix,
                        key.label
                    );
                }
            }
        }
        KeysCommand::Revoke { id } => {
            store.revoke_api_key(id, now_ms()).await?;
            println!("API key {id} revoked");
        }
    }
    Ok(())
}

pub async fn campaign(store: Store, cmd: CampaignCommand) -> anyhow::Result<()> {
    let action = |id, a| (id, a);
    let (id, act) = match cmd {
        CampaignCommand::Create(args) => return create(store, args).await,
        CampaignCommand::List { json } => return list(store, json).await,
        CampaignCommand::Show { id, json } => return show(store, id, json).await,
        CampaignCommand::Start { id } => action(id, CampaignAction::Start),
        CampaignCommand::Pause { id } => action(id, CampaignAction::Pause),
        CampaignCommand::Resume { id } => action(id, CampaignAction::Resume),
        CampaignCommand::Stop { id } => action(id, CampaignAction::Stop),
        CampaignCommand::Restart { id } => action(id, CampaignAction::Restart),
    };
    let now = now_ms();
    let campaign = store.get_campaign(id).await?;
    let ahead = campaign.settings.schedule_start.is_some_and(|s| s > now);
    let to = apply_action(campaign.status, act, ahead)?;
    let updated = if act == CampaignAction::Restart {
        store
            .restart_campaign(id, campaign.status, to, now)
            .await?
            .0
    } else {
        store
            .set_campaign_status(id, campaign.status, to, now)
            .await?
    };
    store
        .append_event(
            Some(id),
            None,
            "campaign_status",
            &serde_json::json!({"from": campaign.status, "to": to, "action": act, "by": "cli"}),
            now,
        )
        .await?;
    println!("campaign {id}: {} -> {}", campaign.status, updated.status);
    Ok(())
}

async fn create(store: Store, args: CreateArgs) -> anyhow::Result<()> {
    let mut settings = match &args.settings {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str::<CampaignSettings>(&text)
                .with_context(|| format!("{}", path.display()))?
        }
        None => CampaignSettings::default(),
    };
    settings.name = args.name;
    if !args.description.is_empty() {
        settings.description = args.description;
    }
    if !args.connect_to.is_empty() {
        settings.connect_to = args.connect_to;
    }
    if args.settings.is_none() {
        settings.pace = args.pace;
        settings.max_concurrent = args.max_concurrent;
        settings.ring_timeout_secs = args.ring_timeout;
        settings.ring_timeout_override = args.ring_timeout_override;
        settings.max_retries = args.max_retries;
        settings.retry_interval = Interval::new(args.retry_interval, IntervalUnit::Seconds);
        settings.default_country = args.country;
    }
    if !args.caller_id.is_empty() {
        settings.caller_id = args.caller_id;
    }
    if args.number_id.is_some() {
        settings.number_id = args.number_id;
    }
    if !args.profile.is_empty() {
        settings.sip_profile = args.profile;
    }
    if args.play.is_some() {
        settings.play_message = args.play;
    }
    let status = if settings.schedule_start.is_some_and(|s| s > now_ms()) {
        CampaignStatus::Scheduled
    } else {
        CampaignStatus::New
    };
    let owner = match &args.login {
        Some(login) => Some(
            store
                .login_by_name(login)
                .await?
                .with_context(|| format!("--login {login:?}: no such login"))?
                .account_id,
        ),
        None => None,
    };
    let campaign = store
        .create_campaign(owner, &settings, status, now_ms())
        .await?;
    if args.json {
        println!("{}", serde_json::to_string(&campaign)?);
    } else {
        println!("{}", campaign.id);
    }
    Ok(())
}

async fn list(store: Store, json: bool) -> anyhow::Result<()> {
    let page = store
        .list_campaigns(
            &CampaignFilter::default(),
            Page {
                limit: 1000,
                offset: 0,
            },
        )
        .await?;
    for row in &page.items {
        if json {
            println!("{}", serde_json::to_string(row)?);
        } else {
            println!(
                "{:>5}  {:<11} {:<30}  calls: {} answered, {} not answered, {} total",
                row.campaign.id,
                row.campaign.status.as_str(),
                row.campaign.settings.name,
                row.calls.answered,
                row.calls.not_answered,
                row.calls.total
            );
        }
    }
    Ok(())
}

async fn show(store: Store, id: i64, json: bool) -> anyhow::Result<()> {
    let campaign = store.get_campaign(id).await?;
    let (contacts, calls) = store.campaign_counts(id).await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"campaign": campaign, "contacts": contacts, "calls": calls})
        );
    } else {
        println!(
            "campaign {} {:?}: {} (pace {}/min, max {} live)",
            campaign.id,
            campaign.settings.name,
            campaign.status,
            campaign.settings.pace,
            campaign.settings.max_concurrent
        );
        println!(
            "calls: {} answered, {} not answered, {} total",
            calls.answered, calls.not_answered, calls.total
        );
        println!("contacts: {}", serde_json::to_string(&contacts)?);
    }
    Ok(())
}

pub async fn contacts(store: Store, cmd: ContactsCommand) -> anyhow::Result<()> {
    let (file, campaign, country, json) = match cmd {
        ContactsCommand::Import {
            file,
            campaign,
            country,
            json,
        } => (file, campaign, country, json),
        ContactsCommand::List { campaign, json } => {
            return list_contacts(store, campaign, json).await
        }
    };
    let stored = store.get_campaign(campaign).await?;
    let country = country.unwrap_or(stored.settings.default_country.clone());
    let mut input =
        std::fs::File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
    let total = input.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = if std::io::stderr().is_terminal() && !json {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        Some(bar)
    } else {
        None
    };
    // The API's import flow: staged, then committed whole, or nothing imported.
    let failed =
        |e: ApiError| anyhow::anyhow!("{}; nothing imported from {}", e.message, file.display());
    let mut import = ContactImport::begin(&store, campaign, country, now_ms())
        .await
        .map_err(failed)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match input.read(&mut buf) {
            Ok(n) => n,
            Err(e) => {
                import.abort().await;
                bail!("reading {}: {e}; nothing imported", file.display());
            }
        };
        if n == 0 {
            break;
        }
        if let Err(e) = import.feed(&buf[..n]).await {
            import.abort().await;
            return Err(failed(e));
        }
        if let Some(bar) = &bar {
            bar.inc(n as u64);
            bar.set_message(format!("{} rows read", import.staged()));
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let (result, cleanup) = import.finish(now_ms()).await.map_err(failed)?;
    // The staging rows are deleted before the process ends (not left to the day-old purge).
    cleanup.wait().await;
    if json {
        println!("{}", serde_json::to_string(&result)?);
    } else {
        for e in &result.errors {
            eprintln!("line {}: {:?}: {}", e.line, e.value, e.reason);
        }
        println!(
            "{} contacts imported, {} already in the campaign, {} rows rejected",
            result.inserted, result.duplicates, result.error_count
        );
    }
    Ok(())
}

async fn list_contacts(store: Store, campaign: i64, json: bool) -> anyhow::Result<()> {
    store.get_campaign(campaign).await?;
    // The last attempt's AnsweredBy per contact (AMD), for the table.
    let mut answered_by: std::collections::HashMap<i64, (i64, String)> = Default::default();
    if !json {
        let filter = outdial::store::attempts::AttemptFilter {
            campaign_id: Some(campaign),
            ..Default::default()
        };
        let mut offset = 0;
        loop {
            let page = store
                .list_attempts(&filter, Page { limit: 500, offset })
                .await?;
            for a in &page.items {
                let (Some(contact), Some(by)) = (a.record.contact_id, &a.record.answered_by) else {
                    continue;
                };
                let n = a.record.attempt_number;
                if answered_by.get(&contact).is_none_or(|(m, _)| *m <= n) {
                    answered_by.insert(contact, (n, by.clone()));
                }
            }
            offset += page.items.len() as i64;
            if page.items.is_empty() || offset >= page.total {
                break;
            }
        }
        println!(
            "{:<16} {:<20} {:<16} {:>8}  {:<16} last outcome",
            "phone", "name", "status", "attempts", "answered_by"
        );
    }
    let mut offset = 0;
    loop {
        let page = store
            .list_contacts(
                campaign,
                &ContactFilter::default(),
                Page { limit: 500, offset },
            )
            .await?;
        for c in &page.items {
            if json {
                println!("{}", serde_json::to_string(c)?);
            } else {
                println!(
                    "{:<16} {:<20} {:<16} {:>8}  {:<16} {}",
                    c.phone,
                    c.name,
                    c.status.as_str(),
                    c.attempts,
                    answered_by.get(&c.id).map_or("-", |(_, by)| by.as_str()),
                    c.last_outcome.as_deref().unwrap_or("-")
                );
            }
        }
        offset += page.items.len() as i64;
        if page.items.is_empty() || offset >= page.total {
            break;
        }
    }
    Ok(())
}
