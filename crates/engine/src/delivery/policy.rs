//! What happens to a delivery after an attempt: the retry schedule
//! (exponential backoff with full jitter, the platform's `Retry-After`
//! honoured up to the cap) and when to give up.

use std::time::Duration;

use clicktrail_destinations::ItemOutcome;
use clicktrail_domain::delivery::DeliveryStatus;
use rand::Rng;

use crate::config::DeliveryConfig;

/// The retry schedule, from `[delivery]` in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: i64,
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    pub fn from_config(cfg: &DeliveryConfig) -> Self {
        let base = Duration::from_secs(cfg.backoff_base_secs.max(1));
        Self {
            max_attempts: i64::from(cfg.max_attempts.max(1)),
            base,
            cap: Duration::from_secs(cfg.backoff_max_secs).max(base),
        }
    }

    /// The ceiling of the delay after `attempts` failed attempts:
    /// `base * 2^(attempts-1)`, at most the cap.
    pub fn ceiling(&self, attempts: i64) -> Duration {
        let exp = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        self.base
            .checked_mul(1u32 << exp)
            .unwrap_or(self.cap)
            .min(self.cap)
    }

    /// The delay before the next attempt: uniformly random up to the
    /// ceiling (full jitter, so retries of many rows spread out), at least
    /// one second, and at least the platform's hint, all within the cap.
    pub fn delay(&self, attempts: i64, hint: Option<Duration>, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempts);
        let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let jittered = Duration::from_millis(rng.random_range(0..=ms));
        let floor = Duration::from_secs(1).min(ceiling);
        jittered
            .max(floor)
            .max(hint.unwrap_or_default())
            .min(self.cap)
    }
}

/// What to store for one delivery after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub status: DeliveryStatus,
    pub reason: Option<String>,
    pub detail: Option<String>,
    /// Attempts counted after this one.
    pub attempts: i64,
    /// For `retrying`: the delay before the next attempt.
    pub retry_in: Option<Duration>,
    /// The destination's credentials failed: keep the row pending (not an
    /// attempt) and flag the destination.
    pub hold: bool,
    /// `attempt` column `outcome`.
    pub outcome: &'static str,
}

/// Decides a delivery's fate from one attempt's outcome. `attempts` is the
/// count before this attempt; `made_request` whether a request carried it;
/// `open_after(d)` whether the platform still accepts the conversion `d`
/// from now.
pub fn decide(
    outcome: &ItemOutcome,
    attempts: i64,
    made_request: bool,
    open_after: &dyn Fn(Duration) -> bool,
    policy: &RetryPolicy,
    rng: &mut impl Rng,
) -> Decision {
    let counted = attempts + i64::from(made_request);
    let d = |status, reason: Option<&str>, detail: Option<&str>, attempts, outcome| Decision {
        status,
        reason: reason.map(str::to_owned),
        detail: detail.map(str::to_owned),
        attempts,
        retry_in: None,
        hold: false,
        outcome,
    };
    match outcome {
        ItemOutcome::Delivered { duplicate } => d(
            DeliveryStatus::Delivered,
            duplicate.then_some("already_received"),
            None,
            counted.max(attempts + 1),
            "delivered",
        ),
        ItemOutcome::Skipped { reason, detail } => d(
            DeliveryStatus::Skipped,
            Some(reason),
            Some(detail),
            counted,
            "skipped",
        ),
        ItemOutcome::Permanent { reason, detail } if reason == "outside_window" => d(
            DeliveryStatus::Dead,
            Some(reason),
            Some(detail),
            counted,
            "dead",
        ),
        ItemOutcome::Permanent { reason, detail } => d(
            DeliveryStatus::Failed,
            Some(reason),
            Some(detail),
            counted,
            "permanent",
        ),
        ItemOutcome::AuthFailed { reason, detail } => Decision {
            hold: true,
            ..d(
                DeliveryStatus::Pending,
                Some(reason),
                Some(detail),
                attempts,
                "auth_failed",
            )
        },
        ItemOutcome::Retry {
            after,
            reason,
            detail,
        } => {
            let attempts = attempts + 1;
            if attempts >= policy.max_attempts {
                let why = format!("gave up after {attempts} attempts; last: {reason}: {detail}");
                return d(
                    DeliveryStatus::Dead,
                    Some("attempts_exhausted"),
                    Some(&why),
                    attempts,
                    "dead",
                );
            }
            let delay = policy.delay(attempts, *after, rng);
            if !open_after(delay) {
                let why = format!(
                    "the platform's window closes before the next attempt; last: {reason}: {detail}"
                );
                return d(
                    DeliveryStatus::Dead,
                    Some("outside_window"),
                    Some(&why),
                    attempts,
                    "dead",
                );
            }
            Decision {
                retry_in: Some(delay),
                ..d(
                    DeliveryStatus::Retrying,
                    Some(reason),
                    Some(detail),
                    attempts,
                    "retry",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(10),
            cap: Duration::from_secs(300),
        }
    }

    fn retry(after: Option<Duration>) -> ItemOutcome {
        ItemOutcome::Retry {
            after,
            reason: "throttled".into(),
            detail: "slow down".into(),
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = policy();
        assert_eq!(p.ceiling(1), Duration::from_secs(10));
        assert_eq!(p.ceiling(2), Duration::from_secs(20));
        assert_eq!(p.ceiling(4), Duration::from_secs(80));
        assert_eq!(p.ceiling(10), Duration::from_secs(300));
        assert_eq!(p.ceiling(1000), Duration::from_secs(300));
        let mut rng = rand::rng();
        for attempts in 1..12 {
            for _ in 0..50 {
                let d = p.delay(attempts, None, &mut rng);
                assert!(
                    d >= Duration::from_secs(1) && d <= p.ceiling(attempts),
                    "{d:?}"
                );
            }
        }
    }

    #[test]
    fn jitter_spreads() {
        let p = policy();
        let mut rng = rand::rng();
        let delays: std::collections::HashSet<u128> = (0..100)
            .map(|_| p.delay(5, None, &mut rng).as_millis())
            .collect();
        assert!(delays.len() > 50);
    }

    #[test]
    fn retry_after_is_honoured_and_clamped() {
        let p = policy();
        let mut rng = rand::rng();
        let d = p.delay(1, Some(Duration::from_secs(120)), &mut rng);
        assert_eq!(d, Duration::from_secs(120));
        let d = p.delay(1, Some(Duration::from_secs(86_400)), &mut rng);
        assert_eq!(d, Duration::from_secs(300));
    }

    #[test]
    fn decisions() {
        let p = policy();
        let mut rng = rand::rng();
        let r = decide(&retry(None), 0, true, &|_| true, &p, &mut rng);
        assert_eq!(r.status, DeliveryStatus::Retrying);
        assert_eq!(r.attempts, 1);
        assert!(r.retry_in.is_some());

        let r = decide(&retry(None), 4, true, &|_| true, &p, &mut rng);
        assert_eq!(r.status, DeliveryStatus::Dead);
        assert_eq!(r.reason.as_deref(), Some("attempts_exhausted"));

        let r = decide(
            &retry(Some(Duration::from_secs(200))),
            0,
            true,
            &|d| d < Duration::from_secs(60),
            &p,
            &mut rng,
        );
        assert_eq!(r.status, DeliveryStatus::Dead);
        assert_eq!(r.reason.as_deref(), Some("outside_window"));

        let auth = ItemOutcome::AuthFailed {
            reason: "invalid_token".into(),
            detail: "expired".into(),
        };
        let r = decide(&auth, 3, true, &|_| true, &p, &mut rng);
        assert_eq!(r.status, DeliveryStatus::Pending);
        assert!(r.hold);
        assert_eq!(r.attempts, 3, "a credentials failure burns no attempt");

        let skip = ItemOutcome::Skipped {
            reason: "no_google_click_id".into(),
            detail: "x".into(),
        };
        let r = decide(&skip, 0, false, &|_| true, &p, &mut rng);
        assert_eq!(r.status, DeliveryStatus::Skipped);
        assert_eq!(r.attempts, 0);

        let late = ItemOutcome::Permanent {
            reason: "outside_window".into(),
            detail: "too old".into(),
        };
        assert_eq!(
            decide(&late, 0, false, &|_| true, &p, &mut rng).status,
            DeliveryStatus::Dead
        );
        let bad = ItemOutcome::Permanent {
            reason: "unparseable_gclid".into(),
            detail: "bad".into(),
        };
        let r = decide(&bad, 0, true, &|_| true, &p, &mut rng);
        assert_eq!(r.status, DeliveryStatus::Failed);
        assert_eq!(r.attempts, 1);

        let ok = decide(
            &ItemOutcome::Delivered { duplicate: true },
            0,
            true,
            &|_| true,
            &p,
            &mut rng,
        );
        assert_eq!(ok.status, DeliveryStatus::Delivered);
        assert_eq!(ok.reason.as_deref(), Some("already_received"));
    }
}
