//! `outdial bench import`: how fast a contact import lands in a fresh SQLite store.
//!
//! Generates N contacts (E.164 phones, names, comments, one tag; 1 in 1,000 phones
//! repeated, as real files have duplicates) and imports them into one campaign of a new
//! SQLite file the way the CSV import does: staged batch by batch
//! ([`Store::begin_import`]), then committed in one transaction. Only staging and commit
//! are timed (generation and opening the store are reported apart). The file is removed
//! afterwards unless a path was given.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use crate::campaign::model::{CampaignSettings, CampaignStatus};
use crate::store::{NewContact, Store, StoreError};

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    pub rows: usize,
    pub inserted: u64,
    pub generate_seconds: f64,
    pub insert_seconds: f64,
    pub rows_per_second: f64,
    pub db_bytes: u64,
}

impl ImportReport {
    pub fn line(&self) -> String {
        format!(
            "import: {} rows ({} inserted) in {:.2} s = {:.0} rows/s (generate {:.2} s, file {:.1} MiB)\n",
            self.rows,
            self.inserted,
            self.insert_seconds,
            self.rows_per_second,
            self.generate_seconds,
            self.db_bytes as f64 / (1024.0 * 1024.0)
        )
    }
}

/// The contacts an import of `rows` lines would carry.
pub fn generate(rows: usize) -> Vec<NewContact> {
    (0..rows)
        .map(|i| {
            // Every 1000th row repeats the previous phone (refused by the staging table).
            let n = if i % 1000 == 999 { i - 1 } else { i };
            NewContact {
                phone: format!("+1{:010}", 2_000_000_000 + n as u64),
                name: format!("Contact {i}"),
                comments: format!("imported row {i}"),
                tags: vec![if i % 2 == 0 { "even" } else { "odd" }.to_string()],
                ..NewContact::default()
            }
        })
        .collect()
}

/// Runs the benchmark into `db` (a new file), or into a temporary file that is removed.
pub async fn run(rows: usize, db: Option<PathBuf>) -> Result<ImportReport, StoreError> {
    let (path, temporary) = match db {
        Some(p) => (p, false),
        None => (
            std::env::temp_dir().join(format!(
                "outdial-bench-import-{}-{:08x}.db",
                std::process::id(),
                rand::random::<u32>()
            )),
            true,
        ),
    };
    if path.exists() {
        return Err(StoreError::Invalid(format!(
            "{} exists: the benchmark needs a new file",
            path.display()
        )));
    }
    let t = Instant::now();
    // (line, contact), as the CSV importer hands them over.
    let lines: Vec<(u64, NewContact)> = (1..).zip(generate(rows)).collect();
    let generate_seconds = t.elapsed().as_secs_f64();

    let store = Store::open(&format!("sqlite://{}", path.display())).await?;
    let settings = CampaignSettings {
        name: "bench import".into(),
        ..CampaignSettings::default()
    };
    let campaign = store
        .create_campaign(None, &settings, CampaignStatus::New, 0)
        .await?;
    let t = Instant::now();
    let mut import = store.begin_import(campaign.id).await?;
    for batch in lines.chunks(crate::contacts::import::DEFAULT_BATCH_SIZE) {
        import.stage(batch, 0).await?;
    }
    let inserted = import.commit(0).await?.inserted;
    let insert_seconds = t.elapsed().as_secs_f64();
    store.close().await;

    let db_bytes = ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", path.display())).ok())
        .map(|m| m.len())
        .sum();
    if temporary {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
    Ok(ImportReport {
        rows,
        inserted,
        generate_seconds,
        insert_seconds,
        rows_per_second: rows as f64 / insert_seconds.max(1e-9),
        db_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_rows_are_valid_with_a_few_duplicates() {
        let rows = generate(2000);
        assert!(rows.iter().all(|c| c.validate().is_ok()));
        let unique: std::collections::HashSet<_> = rows.iter().map(|c| &c.phone).collect();
        assert_eq!(unique.len(), 1998);
    }

    #[tokio::test]
    async fn a_small_import_runs() {
        let dir = tempfile::tempdir().unwrap();
        let report = run(3000, Some(dir.path().join("b.db"))).await.unwrap();
        assert_eq!(report.inserted, 2997);
        assert!(report.rows_per_second > 0.0);
    }
}
