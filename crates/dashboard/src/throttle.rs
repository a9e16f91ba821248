//! Brute-force throttling of dashboard logins, per account and per client
//! address: after too many failures within a window, further attempts are
//! refused (without checking the password) until the window ends. A
//! successful login clears its account's count, not its address's.
//!
//! State is in memory, keyed by hashes (a SHA-256 of the normalised email,
//! a keyed hash of the address), and never logged. With several server
//! processes each counts on its own, so the effective limit is that many
//! times higher; the window still bounds an attacker to a few guesses per
//! minute per process. Restarting the server clears it.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failures allowed per account within `window`.
    pub per_account: u32,
    /// Failures allowed per client address within `window`.
    pub per_client: u32,
    pub window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_account: 5,
            per_client: 20,
            window: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug)]
struct Counter {
    failures: u32,
    since: Instant,
}

type Counters = moka::sync::Cache<String, Arc<Mutex<Counter>>>;

#[derive(Debug)]
pub struct Throttle {
    limits: Limits,
    accounts: Counters,
    clients: Counters,
    /// Salt of the address keys, random per process.
    salt: [u8; 16],
}

/// Why a login is refused before its password is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// When attempts are accepted again.
    pub retry_after: Duration,
}

fn counters(window: Duration) -> Counters {
    moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(window)
        .build()
}

impl Throttle {
    pub fn new(limits: Limits) -> Self {
        let mut salt = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
        Self {
            limits,
            accounts: counters(limits.window),
            clients: counters(limits.window),
            salt,
        }
    }

    fn account_key(email: &str) -> String {
        hex::encode(Sha256::digest(
            clicktrail_store::users::normalise_email(email).as_bytes(),
        ))
    }

    fn client_key(&self, ip: IpAddr) -> String {
        let mut h = Sha256::new();
        h.update(self.salt);
        h.update(ip.to_string().as_bytes());
        hex::encode(h.finalize())
    }

    fn blocked_by(&self, cache: &Counters, key: &str, limit: u32) -> Option<Blocked> {
        let c = cache.get(key)?;
        let c = c.lock().ok()?;
        if c.failures < limit {
            return None;
        }
        let elapsed = c.since.elapsed();
        (elapsed < self.limits.window).then(|| Blocked {
            retry_after: self.limits.window - elapsed,
        })
    }

    /// Whether an attempt for `email` from `client` must be refused now.
    pub fn check(&self, email: &str, client: Option<IpAddr>) -> Option<Blocked> {
        let by_client = client.and_then(|ip| {
            self.blocked_by(&self.clients, &self.client_key(ip), self.limits.per_client)
        });
        let by_account = self.blocked_by(
            &self.accounts,
            &Self::account_key(email),
            self.limits.per_account,
        );
        match (by_client, by_account) {
            (Some(a), Some(b)) => Some(if a.retry_after > b.retry_after { a } else { b }),
            (a, b) => a.or(b),
        }
    }

    fn bump(cache: &Counters, key: String) {
        let c = cache.get_with(key, || {
            Arc::new(Mutex::new(Counter {
                failures: 0,
                since: Instant::now(),
            }))
        });
        if let Ok(mut c) = c.lock() {
            c.failures = c.failures.saturating_add(1);
        }
    }

    pub fn failed(&self, email: &str, client: Option<IpAddr>) {
        Self::bump(&self.accounts, Self::account_key(email));
        if let Some(ip) = client {
            Self::bump(&self.clients, self.client_key(ip));
        }
    }

    pub fn succeeded(&self, email: &str) {
        self.accounts.invalidate(&Self::account_key(email));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_and_clears_on_success() {
        let t = Throttle::new(Limits {
            per_account: 3,
            per_client: 5,
            window: Duration::from_secs(60),
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(t.check("a@x.io", Some(ip)).is_none());
            t.failed("A@x.io ", Some(ip));
        }
        assert!(t.check("a@x.io", Some(ip)).is_some());
        // Another account from the same address still has two tries left.
        assert!(t.check("b@x.io", Some(ip)).is_none());
        t.failed("b@x.io", Some(ip));
        t.failed("b@x.io", Some(ip));
        assert!(t.check("c@x.io", Some(ip)).is_some(), "address limit");
        assert!(t.check("c@x.io", None).is_none());
        t.succeeded("a@x.io");
        assert!(t.check("a@x.io", None).is_none());
    }
}
