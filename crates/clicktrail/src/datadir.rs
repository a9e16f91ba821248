//! The data directory: created private (0700, its files 0600), checked at
//! start (a warning for each file or directory other local users can
//! read), and the home of this instance's id.
//!
//! Why: the database and its `-wal`/`-shm` hold postback tokens, emails
//! and password hashes; `secret.key` encrypts credentials.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clicktrail_engine::config::Config;

/// The files of the data directory worth checking: the directory, the
/// key, the instance id and, on SQLite, the database with its `-wal` and
/// `-shm`.
fn sensitive_paths(cfg: &Config) -> Vec<PathBuf> {
    let mut out = vec![
        cfg.data_dir.clone(),
        cfg.data_dir.join("secret.key"),
        cfg.data_dir.join(INSTANCE_FILE),
    ];
    if let Some(rest) = cfg.database_url.strip_prefix("sqlite:") {
        let path = rest.trim_start_matches("//");
        let path = path.split('?').next().unwrap_or(path);
        let db = PathBuf::from(path);
        if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty())
            && dir != cfg.data_dir
        {
            out.push(dir.to_owned());
        }
        for suffix in ["", "-wal", "-shm"] {
            out.push(PathBuf::from(format!("{}{suffix}", db.display())));
        }
    }
    out
}

/// The paths of the data directory that exist and that users other than
/// the owner may read or enter (group or other permission bits set),
/// with their mode.
pub fn too_open(cfg: &Config) -> Vec<(PathBuf, u32)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        sensitive_paths(cfg)
            .into_iter()
            .filter_map(|p| {
                let mode = std::fs::metadata(&p).ok()?.permissions().mode() & 0o777;
                (mode & 0o077 != 0).then_some((p, mode))
            })
            .collect()
    }
    #[cfg(not(unix))]
    {
        let _ = cfg;
        Vec::new()
    }
}

/// Creates the data directory private if missing, and warns about every
/// file in it that other local users can read.
pub fn prepare(cfg: &Config) -> anyhow::Result<()> {
    clicktrail_store::private_dir(&cfg.data_dir)
        .with_context(|| format!("creating the data directory {}", cfg.data_dir.display()))?;
    for (path, mode) in too_open(cfg) {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{mode:04o}"),
            "readable by other local users: it holds tokens, emails or keys; restrict it (chmod 700 for directories, 600 for files)"
        );
    }
    Ok(())
}

const INSTANCE_FILE: &str = "instance.id";

/// This instance's id, which its poll claims name: the configured
/// `instance_id`, else the one stored in the data directory (created on
/// first start). Stable across restarts, so a restarted process knows and
/// releases the claims it held; two processes must not share a data
/// directory without each setting its own `instance_id`.
pub fn instance_id(cfg: &Config) -> anyhow::Result<String> {
    if let Some(id) = cfg
        .instance_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        return Ok(id.to_owned());
    }
    let path = cfg.data_dir.join(INSTANCE_FILE);
    read_or_create(&path).with_context(|| format!("the instance id file {}", path.display()))
}

fn read_or_create(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let tmp = path.with_extension("id.tmp");
    let _ = std::fs::remove_file(&tmp);
    clicktrail_store::private_file(&tmp)?;
    std::fs::write(&tmp, &id)?;
    std::fs::rename(&tmp, path)?;
    Ok(id)
}
