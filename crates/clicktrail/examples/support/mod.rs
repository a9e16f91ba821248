//! What the benchmark examples share: a throwaway database on either
//! backend, the server's configuration for a bench, and API calls.

use clicktrail::config::{Config, Secret};
use serde_json::{Value, json};

pub const MASTER_KEY: &str = "bench-master-key-0123456789abcdef";
const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh database (SQLite in a temporary directory, or a new PostgreSQL
/// database) and the directory the server keeps its data in.
pub struct BenchDb {
    pub url: String,
    pub dir: std::path::PathBuf,
    pg_name: Option<String>,
}

impl BenchDb {
    pub async fn create(backend: &str) -> BenchDb {
        let dir = std::env::temp_dir().join(format!("ct-bench-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let (url, pg_name) = match backend {
            "postgres" => {
                let name = format!("ct_bench_{}", uuid::Uuid::new_v4().simple());
                let admin = sqlx::PgPool::connect(PG_ADMIN).await.expect("PostgreSQL");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create database");
                admin.close().await;
                (
                    format!("postgres://postgres@127.0.0.1:5432/{name}"),
                    Some(name),
                )
            }
            _ => (format!("sqlite://{}/bench.db", dir.display()), None),
        };
        BenchDb { url, dir, pg_name }
    }

    /// The server's configuration: this database, the master key, private
    /// networks allowed (the fakes are local), no polling scheduler (a
    /// bench starts the polls it measures itself).
    pub fn config(&self) -> Config {
        let mut cfg = Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            database_url: self.url.clone(),
            master_key: Some(serde_json::from_value::<Secret>(json!(MASTER_KEY)).expect("secret")),
            allow_private_networks: true,
            data_dir: self.dir.join("data"),
            log: "warn".into(),
            ..Config::default()
        };
        cfg.polling.enabled = false;
        cfg
    }

    pub async fn remove(self) {
        if let Some(name) = self.pg_name
            && let Ok(admin) = sqlx::PgPool::connect(PG_ADMIN).await
        {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&admin)
                .await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `POST /api/v1{path}` with the master key; panics unless it succeeds.
pub async fn api(http: &reqwest::Client, base: &str, path: &str, body: Value) -> Value {
    let resp = http
        .post(format!("{base}/api/v1{path}"))
        .bearer_auth(MASTER_KEY)
        .json(&body)
        .send()
        .await
        .expect("API call");
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {v}");
    v
}
