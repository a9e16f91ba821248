//! Brute-force throttling of dashboard logins.
//!
//! Three counters, each over a fixed window from its first attempt:
//!
//! - per client address: [`Limits::per_client`] attempts, then the address
//!   is refused for every account;
//! - per account *and* address: [`Limits::per_pair`] attempts, then that
//!   address is refused for that account. Failures from one address never
//!   lock the account for the others, so nobody can lock the owner out;
//! - per account, from all addresses: beyond [`Limits::per_account`]
//!   attempts the account is "under attack" and every address is held to
//!   one attempt per [`Limits::pace`] for it. An address's first attempt
//!   is never paced, so the owner still gets in, only more slowly after a
//!   typo.
//!
//! An attempt is *reserved* ([`Throttle::reserve`]) before its password is
//! checked, atomically with the limit check: concurrent attempts cannot all
//! pass the check before any failure is counted. A reservation counts as a
//! failure unless the login succeeds ([`Throttle::succeeded`]) or the
//! password was never checked ([`Throttle::refund`]); one whose request was
//! dropped half way counts as a failure too.
//!
//! State is in memory, keyed by hashes (a SHA-256 of the normalised email,
//! a keyed hash of the address) and never logged; for the admins' view it
//! also keeps the address masked to its network (/24, /48). With several
//! server processes each counts on its own, so the effective limits are
//! that many times higher. Restarting the server clears it.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Attempts allowed per account and client address within `window`.
    pub per_pair: u32,
    /// Attempts allowed per client address (all accounts) within `window`.
    pub per_client: u32,
    /// Attempts per account (all addresses) within `window` beyond which
    /// each address is held to one attempt per `pace` for it.
    pub per_account: u32,
    pub pace: Duration,
    pub window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_pair: 5,
            per_client: 20,
            per_account: 10,
            pace: Duration::from_secs(30),
            window: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug)]
struct Counter {
    /// Reserved attempts: failures, and checks still running.
    attempts: u32,
    since: Instant,
    last: Instant,
    /// Account key (pairs and accounts), for the admins' view.
    account: String,
    /// The client's masked network (pairs and clients), for the admins' view.
    network: String,
}

type Counters = moka::sync::Cache<String, Arc<Mutex<Counter>>>;

#[derive(Debug)]
pub struct Throttle {
    limits: Limits,
    accounts: Counters,
    clients: Counters,
    pairs: Counters,
    /// Makes check-and-reserve atomic across the three counters.
    gate: Mutex<()>,
    /// Salt of the address keys, random per process.
    salt: [u8; 16],
}

/// Why an attempt is refused before its password is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Too many attempts from this address.
    Address,
    /// Too many attempts for this account from this address.
    Account,
    /// The account is under attack and this address tried it a moment ago.
    Paced,
}

impl Reason {
    /// The stable outcome name (metrics).
    pub fn outcome(self) -> &'static str {
        match self {
            Reason::Address => "throttled_address",
            Reason::Account => "throttled_account",
            Reason::Paced => "paced",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    pub reason: Reason,
    /// When attempts are accepted again.
    pub retry_after: Duration,
}

/// A reserved attempt: hand it back to [`Throttle::succeeded`] or
/// [`Throttle::refund`]; otherwise it stays counted as a failure.
#[derive(Debug)]
#[must_use = "an attempt is a failure unless given back"]
pub struct Attempt {
    account: String,
    client: String,
    pair: String,
}

/// One lock or slowdown, for the admins' view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// The account (its email, as the caller named it), if the lock is
    /// about one.
    pub account: Option<String>,
    /// The client's masked network, if the lock is about one.
    pub network: Option<String>,
    pub attempts: u32,
    /// Until when (ms since the epoch).
    pub until_ms: i64,
}

/// What the admins' view shows.
#[derive(Debug, Clone, Default)]
pub struct Locks {
    /// Addresses refused for every account.
    pub addresses: Vec<Lock>,
    /// Addresses refused for one of the given accounts.
    pub pairs: Vec<Lock>,
    /// Given accounts under attack (every address paced).
    pub paced: Vec<Lock>,
}

fn counters(window: Duration) -> Counters {
    moka::sync::Cache::builder()
        .max_capacity(100_000)
        .time_to_live(window)
        .build()
}

/// The address's network, for display: IPv4 /24, IPv6 /48.
pub fn mask(ip: Option<IpAddr>) -> String {
    match ip {
        Some(IpAddr::V4(v4)) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => mask(Some(IpAddr::V4(v4))),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
        },
        None => "unknown address".to_owned(),
    }
}

impl Throttle {
    pub fn new(limits: Limits) -> Self {
        let mut salt = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
        Self {
            limits,
            accounts: counters(limits.window),
            clients: counters(limits.window),
            pairs: counters(limits.window),
            gate: Mutex::new(()),
            salt,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn account_key(email: &str) -> String {
        hex::encode(Sha256::digest(
            clicktrail_store::users::normalise_email(email).as_bytes(),
        ))
    }

    fn client_key(&self, ip: Option<IpAddr>) -> String {
        let mut h = Sha256::new();
        h.update(self.salt);
        // Without an address (no peer known) all such attempts share one.
        h.update(ip.map(|ip| ip.to_string()).unwrap_or_default().as_bytes());
        hex::encode(h.finalize())
    }

    /// The time left in a counter's window once it reached `limit`.
    fn over(&self, c: &Counter, limit: u32, now: Instant) -> Option<Duration> {
        let elapsed = now.saturating_duration_since(c.since);
        (c.attempts >= limit && elapsed < self.limits.window).then(|| self.limits.window - elapsed)
    }

    fn get(cache: &Counters, key: &str) -> Option<Arc<Mutex<Counter>>> {
        cache.get(key)
    }

    /// Checks an attempt for `email` from `client` against the limits and,
    /// if it may go on, counts it at once.
    pub fn reserve(&self, email: &str, client: Option<IpAddr>) -> Result<Attempt, Blocked> {
        let account = Self::account_key(email);
        let client_key = self.client_key(client);
        let pair = format!("{account}/{client_key}");
        let now = Instant::now();
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());

        let by_client = Self::get(&self.clients, &client_key);
        if let Some(c) = &by_client
            && let Ok(c) = c.lock()
            && let Some(left) = self.over(&c, self.limits.per_client, now)
        {
            return Err(Blocked {
                reason: Reason::Address,
                retry_after: left,
            });
        }
        let by_pair = Self::get(&self.pairs, &pair);
        let pair_last = match &by_pair {
            Some(p) => match p.lock() {
                Ok(p) => {
                    if let Some(left) = self.over(&p, self.limits.per_pair, now) {
                        return Err(Blocked {
                            reason: Reason::Account,
                            retry_after: left,
                        });
                    }
                    Some(p.last)
                }
                Err(_) => None,
            },
            None => None,
        };
        if let Some(last) = pair_last
            && let Some(a) = Self::get(&self.accounts, &account)
            && let Ok(a) = a.lock()
            && self.over(&a, self.limits.per_account, now).is_some()
        {
            let since_last = now.saturating_duration_since(last);
            if since_last < self.limits.pace {
                return Err(Blocked {
                    reason: Reason::Paced,
                    retry_after: self.limits.pace - since_last,
                });
            }
        }

        let network = mask(client);
        let bump = |cache: &Counters, key: &str, network: &str| {
            let c = cache.get_with(key.to_owned(), || {
                Arc::new(Mutex::new(Counter {
                    attempts: 0,
                    since: now,
                    last: now,
                    account: account.clone(),
                    network: network.to_owned(),
                }))
            });
            if let Ok(mut c) = c.lock() {
                c.attempts = c.attempts.saturating_add(1);
                c.last = now;
            }
        };
        bump(&self.clients, &client_key, &network);
        bump(&self.pairs, &pair, &network);
        bump(&self.accounts, &account, "");
        Ok(Attempt {
            account,
            client: client_key,
            pair,
        })
    }

    fn unbump(cache: &Counters, key: &str) {
        if let Some(c) = cache.get(key)
            && let Ok(mut c) = c.lock()
        {
            c.attempts = c.attempts.saturating_sub(1);
        }
    }

    /// The password was right: the attempt was no failure, and its
    /// address's failures for this account are forgiven.
    pub fn succeeded(&self, attempt: Attempt) {
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        Self::unbump(&self.clients, &attempt.client);
        Self::unbump(&self.accounts, &attempt.account);
        self.pairs.invalidate(&attempt.pair);
    }

    /// The password was never checked (the server was too busy): the
    /// attempt does not count.
    pub fn refund(&self, attempt: Attempt) {
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        Self::unbump(&self.clients, &attempt.client);
        Self::unbump(&self.accounts, &attempt.account);
        Self::unbump(&self.pairs, &attempt.pair);
    }

    /// Forgets the locks and slowdowns of these accounts (an admin's
    /// "unlock").
    pub fn clear_accounts<'a>(&self, emails: impl IntoIterator<Item = &'a str>) {
        let _gate = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        for email in emails {
            let account = Self::account_key(email);
            self.accounts.invalidate(&account);
            let prefix = format!("{account}/");
            let pairs: Vec<String> = self
                .pairs
                .iter()
                .filter(|(k, _)| k.starts_with(&prefix))
                .map(|(k, _)| (*k).clone())
                .collect();
            for k in pairs {
                self.pairs.invalidate(&k);
            }
        }
    }

    /// The current locks: every address lock, and the locks and slowdowns
    /// of the given accounts (the admin's workspace's members).
    pub fn locks<'a>(&self, emails: impl IntoIterator<Item = &'a str>) -> Locks {
        let now = Instant::now();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let until = |left: Duration| i64::try_from((wall + left).as_millis()).unwrap_or(i64::MAX);
        let named: Vec<(String, &str)> = emails
            .into_iter()
            .map(|e| (Self::account_key(e), e))
            .collect();
        let name_of = |key: &str| {
            named
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, e)| (*e).to_owned())
        };
        let mut out = Locks::default();
        for (_, c) in self.clients.iter() {
            let Ok(c) = c.lock() else { continue };
            if let Some(left) = self.over(&c, self.limits.per_client, now) {
                out.addresses.push(Lock {
                    account: None,
                    network: Some(c.network.clone()),
                    attempts: c.attempts,
                    until_ms: until(left),
                });
            }
        }
        for (_, c) in self.pairs.iter() {
            let Ok(c) = c.lock() else { continue };
            if let Some(email) = name_of(&c.account)
                && let Some(left) = self.over(&c, self.limits.per_pair, now)
            {
                out.pairs.push(Lock {
                    account: Some(email),
                    network: Some(c.network.clone()),
                    attempts: c.attempts,
                    until_ms: until(left),
                });
            }
        }
        for (key, c) in self.accounts.iter() {
            let Ok(c) = c.lock() else { continue };
            if let Some(email) = name_of(&key)
                && let Some(left) = self.over(&c, self.limits.per_account, now)
            {
                out.paced.push(Lock {
                    account: Some(email),
                    network: None,
                    attempts: c.attempts,
                    until_ms: until(left),
                });
            }
        }
        for v in [&mut out.addresses, &mut out.pairs, &mut out.paced] {
            v.sort_by_key(|l| std::cmp::Reverse(l.until_ms));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            per_pair: 3,
            per_client: 5,
            per_account: 4,
            pace: Duration::from_secs(60),
            window: Duration::from_secs(60),
        }
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_pair_locks_after_its_limit_and_clears_on_success() {
        let t = Throttle::new(limits());
        for _ in 0..3 {
            let _ = t.reserve("A@x.io ", ip("192.0.2.1")).expect("allowed");
        }
        let b = t.reserve("a@x.io", ip("192.0.2.1")).unwrap_err();
        assert_eq!(b.reason, Reason::Account);
        // The same account from elsewhere is not locked.
        let ok = t.reserve("a@x.io", ip("198.51.100.1")).expect("owner");
        t.succeeded(ok);
        // Another account from the first address has its own count, up to
        // the address's limit (5).
        let _ = t.reserve("b@x.io", ip("192.0.2.1")).expect("b");
        let _ = t.reserve("b@x.io", ip("192.0.2.1")).expect("b");
        let b = t.reserve("c@x.io", ip("192.0.2.1")).unwrap_err();
        assert_eq!(b.reason, Reason::Address);
    }

    #[test]
    fn reservations_count_before_the_check_and_refunds_give_back() {
        let t = Throttle::new(limits());
        let held: Vec<Attempt> = (0..3)
            .map(|_| t.reserve("a@x.io", ip("192.0.2.1")).expect("allowed"))
            .collect();
        assert!(
            t.reserve("a@x.io", ip("192.0.2.1")).is_err(),
            "in flight count"
        );
        for a in held {
            t.refund(a);
        }
        assert!(t.reserve("a@x.io", ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn an_account_under_attack_paces_each_address_but_lets_a_new_one_try() {
        let t = Throttle::new(limits());
        for i in 0..4 {
            let _ = t
                .reserve("a@x.io", ip(&format!("203.0.113.{i}")))
                .expect("spread");
        }
        // Under attack: an address that tried is held to the pace.
        let b = t.reserve("a@x.io", ip("203.0.113.0")).unwrap_err();
        assert_eq!(b.reason, Reason::Paced);
        // The owner, from their own address, is not.
        let owner = t.reserve("a@x.io", ip("198.51.100.9")).expect("owner");
        t.succeeded(owner);
        let locks = t.locks(["a@x.io"]);
        assert_eq!(locks.paced.len(), 1);
        assert_eq!(locks.paced[0].account.as_deref(), Some("a@x.io"));
        t.clear_accounts(["a@x.io"]);
        assert!(t.reserve("a@x.io", ip("203.0.113.0")).is_ok());
    }

    #[test]
    fn addresses_are_masked_for_display() {
        assert_eq!(mask(ip("203.0.113.77")), "203.0.113.0/24");
        assert_eq!(mask(ip("2001:db8:1:2::5")), "2001:db8:1::/48");
        assert_eq!(mask(ip("::ffff:192.0.2.4")), "192.0.2.0/24");
    }
}
