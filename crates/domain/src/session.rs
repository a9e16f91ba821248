//! Session splitting. A visitor's events are grouped into sessions: a new
//! one starts after `timeout` of inactivity, or when a landing carries
//! campaign information (utm or an ad click id) different from the current
//! session's. Time here is the server's receive time (client clocks lie),
//! passed in by the caller.

/// What the server remembers of a visitor's current session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    pub started_at_ms: i64,
    pub last_seen_ms: i64,
    /// [`crate::traffic::LandingParams::campaign_key`] of the session's landing.
    pub campaign_key: Option<String>,
}

/// Default inactivity timeout: 30 minutes, as GA4.
pub const DEFAULT_TIMEOUT_MS: i64 = 30 * 60 * 1000;

/// Whether an event at `now_ms` continues `current`, given the campaign key
/// of its landing (`None` for events that carry no campaign, such as clicks,
/// custom events, or a page view without utm / click ids).
pub fn continues(
    current: &SessionState,
    now_ms: i64,
    timeout_ms: i64,
    campaign_key: Option<&str>,
) -> bool {
    // Events may arrive slightly out of order (a beacon queued in another
    // tab); an earlier time never ends a session.
    let idle = now_ms.saturating_sub(current.last_seen_ms);
    if idle > timeout_ms {
        return false;
    }
    match campaign_key {
        None => true,
        Some(k) => current.campaign_key.as_deref() == Some(k),
    }
}

/// Applies one event to the visitor's session state: returns the new state
/// and whether a new session started.
pub fn advance(
    current: Option<&SessionState>,
    now_ms: i64,
    timeout_ms: i64,
    campaign_key: Option<&str>,
) -> (SessionState, bool) {
    match current {
        Some(cur) if continues(cur, now_ms, timeout_ms, campaign_key) => (
            SessionState {
                started_at_ms: cur.started_at_ms,
                last_seen_ms: cur.last_seen_ms.max(now_ms),
                campaign_key: cur.campaign_key.clone(),
            },
            false,
        ),
        _ => (
            SessionState {
                started_at_ms: now_ms,
                last_seen_ms: now_ms,
                campaign_key: campaign_key.map(str::to_owned),
            },
            true,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: i64 = DEFAULT_TIMEOUT_MS;

    #[test]
    fn basic_rules() {
        let (s, new) = advance(None, 0, T, None);
        assert!(new);
        let (s, new) = advance(Some(&s), T, T, None);
        assert!(!new, "exactly the timeout continues");
        let (s2, new) = advance(Some(&s), 2 * T + 1, T, None);
        assert!(new, "more than the timeout splits");
        let (s3, new) = advance(Some(&s2), 2 * T + 5, T, Some("utm=a"));
        assert!(new, "a new campaign splits");
        let (_, new) = advance(Some(&s3), 2 * T + 6, T, Some("utm=a"));
        assert!(!new, "a reload of the same landing does not");
        let (_, new) = advance(Some(&s3), 2 * T + 6, T, None);
        assert!(!new, "an event without campaign does not");
    }

    #[derive(Debug, Clone)]
    struct Ev {
        gap: i64,
        campaign: Option<u8>,
    }

    fn events() -> impl Strategy<Value = Vec<Ev>> {
        prop::collection::vec(
            (0i64..(2 * T), prop::option::weighted(0.2, 0u8..3))
                .prop_map(|(gap, campaign)| Ev { gap, campaign }),
            1..200,
        )
    }

    proptest! {
        #[test]
        fn splitting_invariants(evs in events()) {
            let mut state: Option<SessionState> = None;
            let mut now = 0i64;
            let mut sessions: Vec<Vec<(i64, Option<u8>)>> = Vec::new();
            for e in &evs {
                now += e.gap;
                let key = e.campaign.map(|c| format!("c{c}"));
                let (next, new) = advance(state.as_ref(), now, T, key.as_deref());
                if new {
                    sessions.push(Vec::new());
                }
                sessions.last_mut().unwrap().push((now, e.campaign));
                state = Some(next);
            }
            // Every event lands in exactly one session, in order.
            prop_assert_eq!(sessions.iter().map(Vec::len).sum::<usize>(), evs.len());
            for s in &sessions {
                // Within a session no gap exceeds the timeout.
                for w in s.windows(2) {
                    prop_assert!(w[1].0 - w[0].0 <= T);
                }
                // Within a session every campaign-carrying event after the
                // first names the session's campaign.
                let first_campaign = s[0].1;
                for ev in &s[1..] {
                    if let Some(c) = ev.1 {
                        prop_assert_eq!(Some(c), first_campaign);
                    }
                }
            }
            // Consecutive sessions are split for a reason.
            for w in sessions.windows(2) {
                let last = w[0].last().unwrap();
                let first = w[1][0];
                let timed_out = first.0 - last.0 > T;
                let new_campaign = first.1.is_some() && first.1 != w[0][0].1;
                prop_assert!(timed_out || new_campaign);
            }
        }
    }
}
