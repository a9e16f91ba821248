//! Password hashing and checking (Argon2id) on a small, fixed pool of
//! threads.
//!
//! One Argon2 check with OWASP's parameters (the `argon2` crate's
//! defaults) takes 19 MiB of memory and tens of milliseconds of CPU. Run
//! on the blocking pool, a burst of logins ran hundreds at once and the
//! process kept the memory afterwards. Here [`Passwords`] runs at most
//! `workers` checks at once, each worker reusing one memory buffer for all
//! its checks, and holds at most `queue` more waiting: beyond that a login
//! is refused at once ([`Busy`]) instead of queueing without bound. The
//! memory of password checks is thus `workers` x 19 MiB, whatever the
//! load.
//!
//! A login for an unknown email still checks against a dummy hash, so
//! response times do not tell which emails have accounts.

use std::sync::{Arc, LazyLock, Mutex};

use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot};

/// Password checks running at once.
pub const WORKERS: usize = 2;
/// Password checks waiting for a worker before logins are refused.
pub const QUEUE: usize = 16;
/// Largest Argon2 memory (KiB) a stored hash may ask for: a hash from
/// elsewhere with absurd parameters is refused, not run.
const MAX_M_COST: u32 = 256 * 1024;

/// The pool is full: the password was not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

enum Job {
    Verify {
        password: String,
        hash: Option<String>,
        reply: oneshot::Sender<bool>,
    },
    Hash {
        password: String,
        reply: oneshot::Sender<Result<String, HashError>>,
    },
}

/// The pool. Its threads end when it is dropped.
#[derive(Debug, Clone)]
pub struct Passwords {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Verify { .. } => "Verify",
            Job::Hash { .. } => "Hash",
        })
    }
}

static DUMMY_HASH: LazyLock<Option<String>> = LazyLock::new(|| {
    let salt = SaltString::encode_b64(b"clicktrail-dummy").ok()?;
    let mut memory = Vec::new();
    hash_with(&mut memory, "not a password of anyone", salt.as_salt()).ok()
});

/// Hashes with the default parameters in `memory` (grown as needed).
fn hash_with(memory: &mut Vec<Block>, password: &str, salt: Salt<'_>) -> Result<String, HashError> {
    let err = |e: &dyn std::fmt::Display| HashError(e.to_string());
    let params = Params::default();
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(|e| err(&e))?;
    let need = params.block_count();
    if memory.len() < need {
        memory.resize(need, Block::default());
    }
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt_bytes,
            &mut out,
            &mut memory[..need],
        )
        .map_err(|e| err(&e))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| err(&e))?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|e| err(&e))?),
    };
    Ok(hash.to_string())
}

/// Checks `password` against a PHC string in `memory` (grown as needed).
fn verify_with(memory: &mut Vec<Block>, password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(expected), Some(salt)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
        parsed.hash,
        parsed.salt,
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    if params.m_cost() > MAX_M_COST {
        return false;
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let need = params.block_count();
    if memory.len() < need {
        memory.resize(need, Block::default());
    }
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt_bytes,
            &mut out,
            &mut memory[..need],
        )
        .is_ok()
        && bool::from(out.as_slice().ct_eq(expected.as_bytes()))
}

fn worker(rx: Arc<Mutex<mpsc::Receiver<Job>>>) {
    // Kept for the life of the thread: one allocation, not one per check.
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = {
            let Ok(mut rx) = rx.lock() else { return };
            rx.blocking_recv()
        };
        let started = std::time::Instant::now();
        match job {
            None => return,
            Some(Job::Verify {
                password,
                hash,
                reply,
            }) => {
                let known = hash.is_some();
                let ok = match hash.as_deref().or(DUMMY_HASH.as_deref()) {
                    Some(h) => verify_with(&mut memory, &password, h) && known,
                    None => false,
                };
                let _ = reply.send(ok);
            }
            Some(Job::Hash { password, reply }) => {
                let mut salt = [0u8; 16];
                rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
                let result = SaltString::encode_b64(&salt)
                    .map_err(|e| HashError(e.to_string()))
                    .and_then(|s| hash_with(&mut memory, &password, s.as_salt()));
                let _ = reply.send(result);
            }
        }
        metrics::histogram!("clicktrail_password_check_seconds")
            .record(started.elapsed().as_secs_f64());
    }
}

impl Passwords {
    /// Starts `workers` threads with room for `queue` waiting jobs.
    pub fn new(workers: usize, queue: usize) -> Self {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            // A thread that cannot start leaves the others; with none the
            // jobs wait in the queue and logins are refused as busy.
            if let Err(e) = std::thread::Builder::new()
                .name(format!("password-{i}"))
                .spawn(move || worker(rx))
            {
                tracing::error!(error = %e, "cannot start a password worker");
            }
        }
        Self { tx }
    }

    /// Checks a password (a login's, or the current one before a change),
    /// or refuses at once when the pool is full. `hash` is `None` for an
    /// unknown email (checked against a dummy).
    pub async fn verify_login(&self, password: String, hash: Option<String>) -> Result<bool, Busy> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Job::Verify {
                password,
                hash,
                reply,
            })
            .map_err(|_| Busy)?;
        Ok(rx.await.unwrap_or(false))
    }

    /// Hashes a new password (random salt), waiting for a turn.
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job::Hash { password, reply })
            .await
            .map_err(|_| HashError("the password workers stopped".into()))?;
        rx.await
            .map_err(|_| HashError("the password worker stopped".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_interoperate_with_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let p = Passwords::new(1, 4);
        let h = p.hash("correct horse battery".into()).await.expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert_eq!(
            p.verify_login("correct horse battery".into(), Some(h.clone()))
                .await,
            Ok(true)
        );
        assert_eq!(
            p.verify_login("wrong".into(), Some(h.clone())).await,
            Ok(false)
        );
        // Hashes made by the crate's own API (older accounts) still verify.
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let theirs = Argon2::default()
            .hash_password(b"old password", &salt)
            .unwrap()
            .to_string();
        assert_eq!(
            p.verify_login("old password".into(), Some(theirs.clone()))
                .await,
            Ok(true)
        );
        let ours = PasswordHash::new(&h).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &ours)
                .is_ok()
        );
        assert_eq!(p.verify_login("x".into(), None).await, Ok(false));
        assert_eq!(
            p.verify_login("x".into(), Some("not a hash".into())).await,
            Ok(false)
        );
    }
}
