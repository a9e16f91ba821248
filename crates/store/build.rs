//! Lists the SQLite migrations for `src/sqlite/migrate.rs` to embed, and
//! has the crate rebuilt when a migration is added or changed (which also
//! serves sqlx's `migrate!` for PostgreSQL: it cannot see a new file by
//! itself).

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed=migrations");
    let dir = Path::new(&std::env::var("CARGO_MANIFEST_DIR")?).join("migrations/sqlite");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.extension().is_some_and(|e| e == "sql"));
    files.sort();
    let mut out = String::from("/// The files of `migrations/sqlite`: (name, SQL), by name.\n");
    out.push_str("const FILES: &[(&str, &str)] = &[\n");
    for path in files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{} is not a UTF-8 file name", path.display()))?;
        let full = path
            .to_str()
            .ok_or_else(|| format!("{} is not a UTF-8 path", path.display()))?;
        writeln!(out, "    ({name:?}, include_str!({full:?})),")?;
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR")?).join("sqlite_migrations.rs");
    std::fs::write(target, out)?;
    Ok(())
}
