//! Server-wide key/value facts (`server_meta`).

use crate::{Db, Result, args};

pub async fn get(db: &Db, key: &str) -> Result<Option<String>> {
    let row: Option<(String,)> = db
        .fetch_optional("SELECT value FROM server_meta WHERE key = $1", args![key])
        .await?;
    Ok(row.map(|r| r.0))
}

/// Sets `key` if it has no value yet; returns the stored value.
pub async fn get_or_init(db: &Db, key: &str, value: &str) -> Result<String> {
    db.execute(
        "INSERT INTO server_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        args![key, value],
    )
    .await?;
    Ok(get(db, key).await?.unwrap_or_else(|| value.to_owned()))
}

pub async fn set(db: &Db, key: &str, value: &str) -> Result<()> {
    db.execute(
        "INSERT INTO server_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        args![key, value],
    )
    .await?;
    Ok(())
}

/// Sets `key` to `new` if it still holds `old`; returns whether it did.
pub async fn compare_and_set(db: &Db, key: &str, old: &str, new: &str) -> Result<bool> {
    let n = db
        .execute(
            "UPDATE server_meta SET value = $3 WHERE key = $1 AND value = $2",
            args![key, old, new],
        )
        .await?;
    Ok(n == 1)
}
