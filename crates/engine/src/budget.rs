//! Budgets of outbound requests for the services that fetch URLs a user or
//! a visitor names (AutoScan, the link checker), so that neither can be
//! used to make this server send many requests: a budget per call and one
//! per property and minute. A caller reserves what a chain of requests may
//! take before it starts and gives back what it did not use, so chains
//! that start are finished and those that do not fit are refused at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// The budget of one call: its own, and its property's for the minute.
#[derive(Debug)]
pub(crate) struct Budget {
    per_call: AtomicI64,
    per_property: Arc<AtomicI64>,
}

fn take_from(pool: &AtomicI64, n: i64) -> bool {
    pool.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
        (left >= n).then_some(left - n)
    })
    .is_ok()
}

impl Budget {
    /// Takes `n` requests from both budgets; false (and nothing taken)
    /// when either has less left.
    pub(crate) fn take(&self, n: i64) -> bool {
        if !take_from(&self.per_call, n) {
            return false;
        }
        if !take_from(&self.per_property, n) {
            self.per_call.fetch_add(n, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Gives back requests reserved and not made.
    pub(crate) fn give(&self, n: i64) {
        if n > 0 {
            self.per_call.fetch_add(n, Ordering::AcqRel);
            self.per_property.fetch_add(n, Ordering::AcqRel);
        }
    }
}

/// Each property's outbound requests left in the current minute (an entry
/// expires a minute after the call that made it).
pub(crate) struct PropertyBudgets {
    left: moka::future::Cache<String, Arc<AtomicI64>>,
    per_minute: i64,
}

impl PropertyBudgets {
    pub(crate) fn new(per_minute: i64) -> Self {
        Self {
            left: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            per_minute,
        }
    }

    /// A call's budget: `per_call` requests, within what `property` has
    /// left this minute.
    pub(crate) async fn budget(&self, property: &str, per_call: i64) -> Budget {
        let per_minute = self.per_minute;
        Budget {
            per_call: AtomicI64::new(per_call),
            per_property: self
                .left
                .get_with_by_ref(property, async { Arc::new(AtomicI64::new(per_minute)) })
                .await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_budgets_bound_a_call() {
        let budgets = PropertyBudgets::new(10);
        let a = budgets.budget("p1", 6).await;
        assert!(a.take(4));
        assert!(!a.take(3), "the call's own budget");
        a.give(2);
        assert!(a.take(4));
        // The property has 10 - 4 - 4 + 2 = 4 left this minute.
        let b = budgets.budget("p1", 6).await;
        assert!(!b.take(5), "the property's minute");
        assert!(b.take(4));
        assert!(!b.take(1));
        // Another property has its own.
        assert!(budgets.budget("p2", 6).await.take(6));
    }
}
