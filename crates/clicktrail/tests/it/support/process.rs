//! `clicktrail serve` as a child process, for what only a real process
//! shows: `kill -9`, SIGTERM, an open-file limit, its memory, what it
//! prints. It listens on port 0 and is found by the address it prints, so
//! tests running beside each other never race for a port.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::MASTER_KEY;

/// How long a child may take to start.
const START_LIMIT: Duration = Duration::from_secs(60);
/// The last lines of the child's log kept for failure messages.
const LOG_TAIL: usize = 200;
/// What `clicktrail serve` prints first, before its address.
const RUNNING_AT: &str = "clicktrail is running at ";

/// How to run `clicktrail serve`.
pub struct Serve {
    dir: PathBuf,
    env: Vec<(String, OsString)>,
    open_files: Option<u32>,
}

impl Serve {
    /// `clicktrail serve` on `database_url` with its data in `data_dir`
    /// (also its working directory, so no stray `clicktrail.toml` is read):
    /// port 0, the test master key, warnings only. No `CLICKTRAIL_*`
    /// variable of the test process passes through: the server refuses
    /// unknown ones, and the others would change what is tested.
    pub fn new(database_url: &str, data_dir: &Path) -> Serve {
        Serve {
            dir: data_dir.to_owned(),
            env: vec![
                ("CLICKTRAIL_LISTEN".into(), "127.0.0.1:0".into()),
                ("CLICKTRAIL_DATABASE_URL".into(), database_url.into()),
                ("CLICKTRAIL_MASTER_KEY".into(), MASTER_KEY.into()),
                ("CLICKTRAIL_DATA_DIR".into(), data_dir.into()),
                ("CLICKTRAIL_LOG".into(), "warn".into()),
            ],
            open_files: None,
        }
    }

    /// Sets (or replaces) one variable of the child's environment.
    pub fn env(mut self, key: &str, value: impl Into<OsString>) -> Serve {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.into()));
        self
    }

    /// Runs it with an open-file limit of `n`, soft and hard (set by the
    /// shell that then execs it).
    pub fn open_files(mut self, n: u32) -> Serve {
        self.open_files = Some(n);
        self
    }

    /// Starts it; returns once it said where it listens and `/healthz`
    /// answers 200 there.
    pub async fn start(self) -> ChildServer {
        std::fs::create_dir_all(&self.dir).expect("data dir");
        let bin = env!("CARGO_BIN_EXE_clicktrail");
        let mut cmd = match self.open_files {
            None => {
                let mut c = Command::new(bin);
                c.arg("serve");
                c
            }
            Some(n) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!(r#"ulimit -n {n} && exec "$0" serve"#))
                    .arg(bin);
                c
            }
        };
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CLICKTRAIL_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut proc = cmd.spawn().expect("spawn clicktrail serve");
        let pid = proc.id().expect("a running child has an id");
        let printed = Arc::new(Mutex::new(String::new()));
        let log = Arc::new(Mutex::new(VecDeque::new()));

        // Both pipes are read to their end, so the child never blocks on a
        // full one (nor fails writing to a closed one).
        let (running_at, base) = oneshot::channel();
        let stdout = proc.stdout.take().expect("stdout");
        let out = printed.clone();
        let reader = tokio::spawn(async move {
            let mut running_at = Some(running_at);
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.strip_prefix(RUNNING_AT)
                    && let Some(tx) = running_at.take()
                {
                    let _ = tx.send(url.trim().to_owned());
                }
                let mut out = out.lock().expect("stdout buffer");
                out.push_str(&line);
                out.push('\n');
            }
        });
        let stderr = proc.stderr.take().expect("stderr");
        let tail = log.clone();
        let log_reader = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut tail = tail.lock().expect("log buffer");
                if tail.len() == LOG_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        // Owned before waiting, so a failed start still kills it.
        let mut child = ChildServer {
            proc,
            pid,
            base: String::new(),
            printed,
            log,
            readers: vec![reader, log_reader],
        };
        child.base = match tokio::time::timeout(START_LIMIT, base).await {
            Ok(Ok(base)) => base,
            Ok(Err(_)) => panic!(
                "clicktrail serve exited before it was running:\n{}",
                child.log()
            ),
            Err(_) => panic!(
                "clicktrail serve did not start within {START_LIMIT:?}:\n{}",
                child.log()
            ),
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client");
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", child.base)).send().await
                && r.status().is_success()
            {
                return child;
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "clicktrail serve never answered /healthz:\n{}",
                child.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A running `clicktrail serve`; killed when dropped.
pub struct ChildServer {
    proc: tokio::process::Child,
    pid: u32,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    printed: Arc<Mutex<String>>,
    log: Arc<Mutex<VecDeque<String>>>,
    readers: Vec<JoinHandle<()>>,
}

impl ChildServer {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `kill -9`, and waits until it is gone.
    pub async fn kill(&mut self) {
        let _ = self.proc.kill().await;
    }

    /// SIGTERM (a graceful shutdown); waits until it exits. Sent once the
    /// server catches SIGTERM: `serve` installs its handler after it is
    /// already answering, and a SIGTERM before that ends it at once.
    pub async fn terminate(&mut self) -> ExitStatus {
        let status = format!("/proc/{}/status", self.pid);
        let started = Instant::now();
        while !catches_sigterm(&std::fs::read_to_string(&status).unwrap_or_default()) {
            assert!(
                started.elapsed() < START_LIMIT,
                "clicktrail serve never caught SIGTERM:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success(), "kill -TERM {}", self.pid);
        self.proc.wait().await.expect("wait for clicktrail serve")
    }

    /// Everything it printed on stdout, once it has exited.
    pub async fn printed(&mut self) -> String {
        self.proc.wait().await.expect("wait for clicktrail serve");
        for r in self.readers.drain(..) {
            let _ = r.await;
        }
        self.printed.lock().expect("stdout buffer").clone()
    }

    /// The last lines of its log (stderr).
    pub fn log(&self) -> String {
        let tail = self.log.lock().expect("log buffer");
        tail.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// A counter from its `/metrics`, summed over the label sets whose text
    /// contains `labels`. Its own process, so its own recorder: exact
    /// counts can be compared.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client")
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Whether a `/proc/<pid>/status` text says the process catches SIGTERM
/// (signal 15: bit 14 of the `SigCgt` mask).
fn catches_sigterm(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << 14) != 0)
}
