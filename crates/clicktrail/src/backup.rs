//! `clicktrail backup` and `clicktrail restore`: the SQLite database the
//! configuration names, copied by `clicktrail_store::backup`, and the key
//! its encrypted data needs.
//!
//! Stored credentials and postback tokens are encrypted or keyed with the
//! server's key (`<data_dir>/secret.key`, or `CLICKTRAIL_MASTER_KEY`), and
//! the server refuses to start on a database with another key. So a
//! backup copies `secret.key` beside itself as `FILE.key` (0600) unless
//! told not to, and a restore puts it back; both check the key against
//! the database's key check value and say which key a restore needs. A
//! master key is never written: it lives wherever the operator keeps it.
//!
//! PostgreSQL is refused with the `pg_dump` / `pg_restore` commands to use
//! instead (docs/DEPLOY.md, "Backup and restore").
//!
//! Blocking: run these on a blocking thread.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clicktrail_engine::config::Config;
use clicktrail_engine::crypto::{self, CryptoError, Keyring};
use clicktrail_store::backup::{
    self as copies, BackupError, BackupOptions, Progress, RestoreOptions, Schema, Summary,
};

use crate::app::redact_url;

/// The key file's name in the data directory.
const KEY_FILE: &str = "secret.key";

/// Where a backup's key file goes: `FILE.key` beside `FILE`.
pub fn key_file_of(backup: &Path) -> PathBuf {
    let mut s = backup.as_os_str().to_owned();
    s.push(".key");
    PathBuf::from(s)
}

/// `clicktrail backup FILE`: copies the live database to `file` (see the
/// module docs) and prints what was copied.
pub fn backup(cfg: &Config, file: &Path, with_key: bool) -> anyhow::Result<()> {
    let db = database_file(cfg, "backup")?;
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut report = |p: Progress| {
        // Only a long copy says how far it is.
        if last_report.elapsed() >= Duration::from_secs(2) && p.total > 0 {
            last_report = Instant::now();
            eprintln!(
                "copying: {}% ({} of {} pages)",
                p.copied * 100 / p.total,
                p.copied,
                p.total
            );
        }
    };
    let summary = copies::backup(&db, file, &BackupOptions::default(), &mut report)
        .map_err(explain)
        .with_context(|| format!("backing up {} to {}", db.display(), file.display()))?;
    println!(
        "backup written: {} ({}, {:.1} s; integrity check ok)",
        file.display(),
        human_bytes(summary.bytes),
        started.elapsed().as_secs_f64()
    );
    print_summary(&summary);
    backup_key(cfg, file, with_key, &summary).context(
        "the database was backed up, but its key was not: a restore needs it (see docs/DEPLOY.md)",
    )
}

/// The key part of a backup: copied beside it, or said where it is.
fn backup_key(cfg: &Config, file: &Path, with_key: bool, summary: &Summary) -> anyhow::Result<()> {
    let key_file = cfg.data_dir.join(KEY_FILE);
    let fits = |ikm: &[u8]| fits(summary, ikm);
    if let Some(master) = &cfg.master_key {
        if !fits(master.expose().as_bytes()) {
            eprintln!(
                "warning: CLICKTRAIL_MASTER_KEY (master_key) as this command sees it is not the \
                 key this database was set up with: keep the one the server runs with."
            );
        }
        println!(
            "key: the stored credentials are encrypted with CLICKTRAIL_MASTER_KEY, which is not \
             written with the backup. Keep it safe apart from the backup: a restore needs it."
        );
        return Ok(());
    }
    match crypto::read_key_file(&key_file) {
        Ok(key) => {
            if !fits(&key) {
                eprintln!(
                    "warning: {} is not the key this database was set up with (does the server \
                     run with CLICKTRAIL_MASTER_KEY? then keep that one, and set it for backups too).",
                    key_file.display()
                );
            }
            if !with_key {
                println!(
                    "key: not copied (--no-key). A restore needs {}: keep it safe apart from the \
                     backup.",
                    key_file.display()
                );
                return Ok(());
            }
            let dest = key_file_of(file);
            let raw = std::fs::read(&key_file)
                .with_context(|| format!("reading {}", key_file.display()))?;
            copies::write_private(&dest, &raw)
                .with_context(|| format!("writing {}", dest.display()))?;
            println!(
                "key: {} copied to {} (mode 0600). A restore needs it (the server does not \
                 start on the database without it); anyone with both files can read the stored \
                 credentials, so keep them as private as the key itself.",
                key_file.display(),
                dest.display()
            );
            Ok(())
        }
        Err(CryptoError::KeyFile { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            if summary.key_check.is_none() {
                println!("key: none yet (no server has started on this database).");
            } else {
                eprintln!(
                    "warning: no key file at {} and no CLICKTRAIL_MASTER_KEY set: a restore needs \
                     the key this database was set up with. If the server runs with \
                     CLICKTRAIL_MASTER_KEY, set it for backups too, and keep it safe.",
                    key_file.display()
                );
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// `clicktrail restore FILE`: puts a backup in place as the configured
/// database, with its key (see the module docs).
pub fn restore(cfg: &Config, file: &Path, force: bool, with_key: bool) -> anyhow::Result<()> {
    let db = database_file(cfg, "restore")?;
    let checked = copies::check(file)
        .map_err(explain)
        .with_context(|| format!("checking the backup {}", file.display()))?;
    let summary = checked.summary();
    // Decided before anything changes: a database without the key it was
    // set up with is one the server refuses to start on.
    let key = plan_key(cfg, file, summary, force, with_key)?;
    let restored = checked
        .restore(&db, &RestoreOptions { replace: force })
        .map_err(explain)
        .with_context(|| format!("restoring {} to {}", file.display(), db.display()))?;
    println!(
        "restored {} to {} ({}; integrity check ok)",
        file.display(),
        db.display(),
        human_bytes(summary.bytes)
    );
    print_summary(summary);
    if let Some(aside) = &restored.replaced {
        println!(
            "  the database that was there is kept as {}",
            aside.display()
        );
    }
    key.apply()?;
    println!("Start the server as usual (clicktrail serve); it opens the restored database.");
    Ok(())
}

/// What a restore does about the key.
enum KeyPlan {
    /// Nothing to write; says why.
    Note(String),
    /// Write the key file `to` from `from` (moving aside one that was
    /// there, when `replace`).
    Write {
        from: PathBuf,
        to: PathBuf,
        replace: bool,
    },
}

impl KeyPlan {
    fn apply(self) -> anyhow::Result<()> {
        match self {
            KeyPlan::Note(note) => println!("key: {note}"),
            KeyPlan::Write { from, to, replace } => {
                if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
                    clicktrail_store::private_dir(dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                }
                if replace {
                    let aside = PathBuf::from(format!(
                        "{}.pre-restore-{}",
                        to.display(),
                        chrono::Utc::now().timestamp()
                    ));
                    std::fs::rename(&to, &aside)
                        .with_context(|| format!("moving {} aside", to.display()))?;
                    println!(
                        "key: the key file that was there is kept as {}",
                        aside.display()
                    );
                }
                let raw =
                    std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
                copies::write_private(&to, &raw)
                    .with_context(|| format!("writing {}", to.display()))?;
                println!(
                    "key: {} restored to {} (mode 0600)",
                    from.display(),
                    to.display()
                );
            }
        }
        Ok(())
    }
}

/// Which key the restored database will have, refusing when it would be
/// one the server cannot start with.
fn plan_key(
    cfg: &Config,
    file: &Path,
    summary: &Summary,
    force: bool,
    with_key: bool,
) -> anyhow::Result<KeyPlan> {
    let target = cfg.data_dir.join(KEY_FILE);
    let beside = key_file_of(file);
    if !with_key {
        return Ok(KeyPlan::Note(format!(
            "not restored (--no-key). The server starts on this database only with the key the \
             backup was made with: put it in {} or set CLICKTRAIL_MASTER_KEY.",
            target.display()
        )));
    }
    let fits = |ikm: &[u8]| fits(summary, ikm);
    if let Some(master) = &cfg.master_key {
        if !fits(master.expose().as_bytes()) {
            bail!(
                "CLICKTRAIL_MASTER_KEY (master_key) is not the key this backup was made with, so \
                 the server would not start on it: set the one it ran with then, or pass --no-key \
                 to restore the database alone"
            );
        }
        return Ok(KeyPlan::Note(
            "CLICKTRAIL_MASTER_KEY is the key this backup was made with.".into(),
        ));
    }
    let not_found = |e: &CryptoError| matches!(e, CryptoError::KeyFile { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
    match crypto::read_key_file(&beside) {
        Ok(key) => {
            if !fits(&key) {
                bail!(
                    "{} is not the key this backup was made with (the server would not start on \
                     it): find the right one, or pass --no-key to restore the database alone",
                    beside.display()
                );
            }
            match crypto::read_key_file(&target) {
                Ok(existing) if existing == key => Ok(KeyPlan::Note(format!(
                    "{} already holds this backup's key.",
                    target.display()
                ))),
                Err(e) if not_found(&e) => Ok(KeyPlan::Write {
                    from: beside,
                    to: target,
                    replace: false,
                }),
                Ok(_) | Err(CryptoError::BadKeyFile(_)) if force => Ok(KeyPlan::Write {
                    from: beside,
                    to: target,
                    replace: true,
                }),
                Ok(_) | Err(CryptoError::BadKeyFile(_)) => bail!(
                    "{} exists and holds another key: restore into an empty data directory, or \
                     pass --force to replace it (it is kept aside, not deleted)",
                    target.display()
                ),
                Err(e) => Err(e.into()),
            }
        }
        Err(e) if not_found(&e) => match crypto::read_key_file(&target) {
            Ok(existing) if summary.key_check.is_some() && fits(&existing) => Ok(KeyPlan::Note(
                format!("{} is the key this backup was made with.", target.display()),
            )),
            _ if summary.key_check.is_none() => Ok(KeyPlan::Note(
                "none needed yet (no server had started on this database).".into(),
            )),
            _ => bail!(
                "no key for this backup: {} does not exist and CLICKTRAIL_MASTER_KEY is not set. \
                 Put the key file the backup was made with beside it as {}, or set \
                 CLICKTRAIL_MASTER_KEY, or pass --no-key to restore the database alone (the server \
                 starts on it only once its key is in place)",
                beside.display(),
                beside.display()
            ),
        },
        Err(e) => Err(e).with_context(|| format!("reading {}", beside.display())),
    }
}

/// Whether the key material `ikm` is the key the database was set up
/// with (its `key_check`); any key fits a database no server started on.
fn fits(summary: &Summary, ikm: &[u8]) -> bool {
    summary
        .key_check
        .as_deref()
        .is_none_or(|check| Keyring::from_ikm(ikm).check_value() == check)
}

/// The SQLite file the configuration names; PostgreSQL is refused with
/// the commands to use instead.
fn database_file(cfg: &Config, command: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = clicktrail_store::sqlite_path(&cfg.database_url) {
        return Ok(path);
    }
    let url = redact_url(&cfg.database_url);
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let key = if cfg.master_key.is_some() {
            "CLICKTRAIL_MASTER_KEY".to_owned()
        } else {
            cfg.data_dir.join(KEY_FILE).display().to_string()
        };
        bail!(
            "clicktrail {command} works on SQLite databases; this server uses PostgreSQL ({url}).\n\
             Use PostgreSQL's own tools (pg_dump reads one consistent snapshot while the server runs):\n\
             \n  pg_dump --format=custom --file=clicktrail.dump '{url}'\n\
             \nand restore into a new, empty database:\n\
             \n  createdb clicktrail_restored\n  \
             pg_restore --no-owner --exit-on-error --single-transaction --dbname=clicktrail_restored clicktrail.dump\n\
             \nKeep the key with the dump ({key}): the server starts only with the key the \
             database was set up with. See docs/DEPLOY.md, \"Backup and restore\"."
        );
    }
    bail!("unsupported database URL {url:?}: use sqlite://path or postgres://...")
}

/// The store's error, with what to do about it where that is not obvious.
fn explain(e: BackupError) -> anyhow::Error {
    let hint = match &e {
        BackupError::Exists(_) => Some(
            "restore goes into an empty data directory: point database_url (and data_dir) \
             elsewhere, or stop the server and pass --force to replace it (the database there \
             is moved aside, not deleted)",
        ),
        BackupError::InUse(_) => Some("stop the server first"),
        BackupError::NoDatabase(_) => Some("check database_url (and --config)"),
        BackupError::Corrupt { .. } | BackupError::NotADatabase(_) => {
            Some("this file cannot be restored; use another backup")
        }
        _ => None,
    };
    match hint {
        Some(h) => anyhow::Error::new(e).context(h),
        None => e.into(),
    }
}

/// Prints the rows of the main tables and the schema.
fn print_summary(s: &Summary) {
    let rows: Vec<String> = s.tables.iter().map(|(t, n)| format!("{t} {n}")).collect();
    println!("  rows: {}", rows.join(", "));
    let version = s
        .schema_version
        .map_or_else(|| "none".to_owned(), |v| v.to_string());
    match &s.schema {
        Schema::Current => println!("  schema: migration {version} (this version's)"),
        Schema::Behind(todo) => {
            let list: Vec<String> = todo.iter().map(i64::to_string).collect();
            println!(
                "  schema: migration {version}; the next start applies migrations {}",
                list.join(", ")
            );
        }
        Schema::Refused {
            version: v,
            problem,
        } => println!(
            "  schema: migration {version}; this version of clicktrail cannot run on it \
             (migration {v} {problem})"
        ),
    }
}

/// `bytes` for people: `12.3 MiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(human_bytes(10), "10 bytes");
        assert_eq!(human_bytes(2048), "2.0 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024 + 300 * 1024), "5.3 MiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    #[test]
    fn the_key_goes_beside_the_backup() {
        assert_eq!(
            key_file_of(Path::new("/b/ct-2024.db")),
            PathBuf::from("/b/ct-2024.db.key")
        );
    }
}
