//! Attribution: the rule that turns a pending conversion, and the facts the
//! store found for its click id, into one [`Decision`] for the conversion
//! log: exactly one [`Outcome`] (validated, ignored, an adjustment of an
//! earlier conversion, or an error with its stable [`ErrorCode`]), the
//! conversion's event, value and time, the click it is attributed to, and
//! its last-click and first-click touches.
//!
//! [`decide`] is a plain function: no I/O, no clock, no randomness. The
//! caller looks the facts up, passes the time and the ids to use, and maps
//! the decision to rows (the store's `Draft::from_decision`).

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::conversion::{ErrorCode, LogStatus, SourceEvent, SourceKind, SourceStatus};
use crate::ids::{ClickId, EntityId, PropertyId};
use crate::mapping::{EventMapping, Mapped, ValueSource, normalise_name};
use crate::money::{Amount, Currency};

/// Tolerance for a conversion dated slightly before its click (clock skew):
/// such conversions are dated at the click instead of refused.
pub const SKEW_TOLERANCE_MS: i64 = 10 * 60 * 1000;

/// Reports of API connectors carry dates, not times: a registration on the
/// click's day may be dated at midnight before it.
pub const DATE_ONLY_TOLERANCE_MS: i64 = 36 * 3600 * 1000;

/// The installed integration a conversion came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntegrationRef<'a> {
    pub id: &'a str,
    /// Shown as the offer when the click's link names none.
    pub name: &'a str,
    /// The tracking group its links belong to, the conversion's link group
    /// unless the click names its own.
    pub tracking_group: &'a str,
}

/// A source event waiting to be decided, with what of its property and
/// integration the rule needs, and the ids its log entry takes.
#[derive(Debug, Clone, Copy)]
pub struct PendingConversion<'a> {
    /// The conversion-log id, minted by the caller (ids are random, and
    /// this function is not).
    pub conversion_id: &'a EntityId,
    /// The platforms' de-duplication id when the conversion came through
    /// the tag (its event id, which the browser pixels used too); the
    /// conversion id otherwise.
    pub event_id: Option<&'a str>,
    pub property_id: &'a PropertyId,
    /// The property's attribution window; `None` is unlimited.
    pub attribution_window_ms: Option<i64>,
    /// The property's reporting currency, given to a value reported
    /// without one.
    pub reporting_currency: Option<Currency>,
    /// `None` for collector custom events.
    pub integration: Option<IntegrationRef<'a>>,
    pub mapping: &'a EventMapping,
    pub received_at_ms: i64,
    pub event: &'a SourceEvent,
    /// Set when the source could not be read into an event at all (a report
    /// row the connector refused): logged with this code and detail.
    pub forced_error: Option<(ErrorCode, &'a str)>,
    /// For a conversion tracked on the site itself (a collector custom
    /// event): the session it happened in, whose stand-in click (origin
    /// [`ClickOrigin::Session`]) the caller looks up instead of a click.
    pub session_id: Option<i64>,
}

/// How the click a conversion is attributed to is known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ClickOrigin {
    /// A stored click: the tag's OutboundClick, a `/go/` redirect.
    Recorded,
    /// Derived from the PageView of a tag-minted click id whose
    /// OutboundClick beacon was lost (the id names its pageview). It is
    /// recorded as a click with a conversion that uses it.
    Pageview {
        pageview_id: String,
        page_url: Option<String>,
    },
    /// An on-site conversion's own session, standing in for a click: there
    /// is no affiliate click and no click id to name.
    Session,
}

/// The click a click id names, or a stand-in for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Click {
    /// A click of another property is never used.
    pub property_id: PropertyId,
    /// `None` for the on-site stand-in.
    pub click_id: Option<ClickId>,
    pub origin: ClickOrigin,
    pub ts_ms: i64,
    pub session_id: i64,
    pub visitor_id: String,
    pub link_url: Option<String>,
    pub link_group: Option<String>,
}

impl Click {
    /// The offer: the host of the link clicked.
    fn offer(&self) -> Option<String> {
        self.link_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| u.host_str().map(str::to_owned))
    }
}

/// Attribution facts of one session, as a conversion keeps them for a
/// touch (last click or first click).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Touch {
    pub session_id: Option<i64>,
    pub channel: Option<String>,
    pub source: Option<String>,
    pub medium: Option<String>,
    pub campaign: Option<String>,
    pub ad: Option<String>,
    pub landing_page: Option<String>,
}

/// The session a click happened in: its visitor, traffic source and bot
/// flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClickSession {
    pub visitor_id: String,
    /// Its traffic source, with its id.
    pub touch: Touch,
    pub is_bot: bool,
}

/// What the store knows that one decision needs.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    /// The click the click id names (a stored click, or a stand-in from
    /// the pageview of a lost OutboundClick or from the on-site session).
    pub click: Option<Click>,
    /// The click's session.
    pub session: Option<ClickSession>,
    /// The visitor's sessions since the window's start, oldest first, with
    /// the time each started.
    pub visitor_sessions: &'a [(i64, Touch)],
    /// For an adjustment or rejection: whether the transaction it names has
    /// a validated conversion.
    pub target_validated: bool,
}

/// Why an event is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    /// The network rejected a conversion clicktrail never validated.
    Rejected,
    /// The event mapping says to ignore this event.
    Mapping,
}

impl IgnoreReason {
    /// The log's detail.
    pub fn detail(self) -> &'static str {
        match self {
            Self::Rejected => "the network reports this conversion as rejected",
            Self::Mapping => "the event mapping ignores this event",
        }
    }
}

/// A change of an earlier validated conversion of the same integration,
/// found by its transaction id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adjustment {
    pub integration_id: String,
    pub transaction_id: String,
    /// What to add to its value (a fall of a running total is negative).
    pub delta: Option<Amount>,
    /// A reversal or rejection: it no longer counts as a conversion, and
    /// its whole remaining value goes.
    pub full_reversal: bool,
}

/// The one outcome of a source event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Attributed to a click; counts in reports.
    Validated {
        /// Whether the event mapping forwards it to the ad destinations.
        send_to_destinations: bool,
    },
    Ignored(IgnoreReason),
    Adjustment(Adjustment),
    Error {
        code: ErrorCode,
        detail: Option<String>,
    },
}

impl Outcome {
    /// The status column of the conversion log.
    pub fn status(&self) -> LogStatus {
        match self {
            Self::Validated { .. } => LogStatus::Validated,
            Self::Ignored(_) => LogStatus::Ignored,
            Self::Adjustment(_) => LogStatus::Adjustment,
            Self::Error { .. } => LogStatus::Error,
        }
    }

    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Error { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The log's explanation, if any.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::Ignored(reason) => Some(reason.detail()),
            Self::Error { detail, .. } => detail.as_deref(),
            Self::Validated { .. } | Self::Adjustment(_) => None,
        }
    }

    pub fn send_to_destinations(&self) -> bool {
        matches!(
            self,
            Self::Validated {
                send_to_destinations: true
            }
        )
    }
}

/// The decision about one source event: what its conversion-log entry
/// says. Errors keep what is known (the mapped event, the click and its
/// session), so the log shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub conversion_id: EntityId,
    pub event_id: String,
    pub property_id: PropertyId,
    pub integration_id: Option<String>,
    /// The idempotency key ([`dedup_key`]).
    pub dedup_key: String,
    pub outcome: Outcome,
    /// The conversion event the mapping made of it.
    pub event_name: Option<String>,
    /// Value and currency are apart: a network may report a currency
    /// without a value, and the log keeps it.
    pub value: Option<Amount>,
    pub currency: Option<Currency>,
    /// When it happened: as reported (or when received), moved up to the
    /// click's time when within the clock-skew tolerance before it.
    pub occurred_at_ms: i64,
    pub received_at_ms: i64,
    /// The click id as received (trimmed), or the click's.
    pub click_id: Option<String>,
    /// The click it is attributed to.
    pub click: Option<Click>,
    /// The click's link group, else the integration's tracking group.
    pub link_group: Option<String>,
    /// The host of the link clicked, else the integration's name.
    pub offer: Option<String>,
    pub visitor_id: Option<String>,
    pub is_bot: bool,
    /// The click's session.
    pub last_click: Option<Touch>,
    /// The visitor's earliest session within the window, up to the click
    /// (the click's own when none is older); only for a conversion that is
    /// attributed.
    pub first_click: Option<Touch>,
}

impl Decision {
    /// The click to record with this conversion: one derived from a
    /// pageview, when the conversion is attributed to it.
    pub fn click_to_materialise(&self) -> Option<&Click> {
        let attributed = matches!(
            self.outcome,
            Outcome::Validated { .. } | Outcome::Adjustment(_)
        );
        self.click
            .as_ref()
            .filter(|c| attributed && matches!(c.origin, ClickOrigin::Pageview { .. }))
    }
}

/// Whether an event changes an earlier conversion (a reversal, or a fall of
/// a running total) instead of adding one.
pub fn is_adjustment(ev: &SourceEvent) -> bool {
    ev.adjusts.is_some() || ev.status == SourceStatus::Reversed
}

/// Whether an event names an earlier conversion: an adjustment, or a
/// rejection (which undoes the conversion if it was validated).
pub fn names_earlier(ev: &SourceEvent) -> bool {
    is_adjustment(ev) || ev.status == SourceStatus::Rejected
}

/// The transaction an adjustment or rejection applies to.
pub fn adjustment_target(ev: &SourceEvent) -> Option<&str> {
    ev.adjusts
        .as_deref()
        .or(ev.transaction_id.as_deref())
        .filter(|t| !t.trim().is_empty())
}

/// The idempotency key: integration + transaction + source event. Without a
/// transaction id, the click id stands in (one conversion per click and
/// event), and without either, the payload itself (exact repeats only).
/// Collector events, which have no integration, are scoped by property.
pub fn dedup_key(
    property_id: &PropertyId,
    integration_id: Option<&str>,
    ev: &SourceEvent,
) -> String {
    let scope = match integration_id {
        Some(i) => i.to_owned(),
        None => format!("collector:{property_id}"),
    };
    let tx = match (&ev.transaction_id, &ev.click_id) {
        (Some(t), _) if !t.trim().is_empty() => format!("tx:{t}"),
        (_, Some(c)) if !c.trim().is_empty() => format!("click:{}", c.trim()),
        _ => format!(
            "raw:{}",
            hex::encode(&Sha256::digest(ev.raw.as_str().as_bytes())[..16])
        ),
    };
    let adjustment = if names_earlier(ev) { "|adjustment" } else { "" };
    format!(
        "{scope}|{tx}|{}{adjustment}",
        normalise_name(&ev.source_event)
    )
}

/// A decision without its outcome yet: filled in step by step, so that an
/// early outcome keeps what was known by then.
struct Partial {
    event_name: Option<String>,
    value: Option<Amount>,
    currency: Option<Currency>,
    occurred_at_ms: i64,
    click_id: Option<String>,
    click: Option<Click>,
    link_group: Option<String>,
    offer: Option<String>,
    visitor_id: Option<String>,
    is_bot: bool,
    last_click: Option<Touch>,
    first_click: Option<Touch>,
}

impl Partial {
    fn finish(self, p: &PendingConversion<'_>, outcome: Outcome) -> Decision {
        Decision {
            conversion_id: p.conversion_id.clone(),
            event_id: p.event_id.unwrap_or(p.conversion_id.as_str()).to_owned(),
            property_id: p.property_id.clone(),
            integration_id: p.integration.map(|i| i.id.to_owned()),
            dedup_key: dedup_key(p.property_id, p.integration.map(|i| i.id), p.event),
            outcome,
            event_name: self.event_name,
            value: self.value,
            currency: self.currency,
            occurred_at_ms: self.occurred_at_ms,
            received_at_ms: p.received_at_ms,
            click_id: self.click_id,
            click: self.click,
            link_group: self.link_group,
            offer: self.offer,
            visitor_id: self.visitor_id,
            is_bot: self.is_bot,
            last_click: self.last_click,
            first_click: self.first_click,
        }
    }
}

/// Decides one source event's outcome from what is known.
pub fn decide(p: &PendingConversion<'_>, facts: Facts<'_>) -> Decision {
    let ev = p.event;
    let mut d = Partial {
        event_name: None,
        value: ev.value,
        currency: ev.currency,
        occurred_at_ms: ev
            .occurred_at
            .map(|t| t.timestamp_millis())
            .unwrap_or(p.received_at_ms),
        click_id: ev
            .click_id
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        click: None,
        link_group: p.integration.map(|i| i.tracking_group.to_owned()),
        offer: None,
        visitor_id: None,
        is_bot: false,
        last_click: None,
        first_click: None,
    };
    if let Some((code, detail)) = p.forced_error {
        let detail = Some(detail.to_owned());
        return d.finish(p, Outcome::Error { code, detail });
    }

    // 1. Adjustments (reversals, rejections of earlier conversions, falls of
    //    running totals) change an earlier conversion, never add one.
    let rejected = ev.status == SourceStatus::Rejected;
    let mut adjustment = None;
    if names_earlier(ev) {
        match (adjustment_target(ev), p.integration) {
            (Some(_), Some(_)) if rejected && !facts.target_validated => {
                return d.finish(p, Outcome::Ignored(IgnoreReason::Rejected));
            }
            (Some(target), Some(int)) => {
                adjustment = Some(Adjustment {
                    integration_id: int.id.to_owned(),
                    transaction_id: target.to_owned(),
                    delta: ev.value,
                    full_reversal: ev.adjusts.is_none(),
                });
            }
            _ if rejected => return d.finish(p, Outcome::Ignored(IgnoreReason::Rejected)),
            _ => {
                let detail =
                    "a reversal must name the transaction id of the conversion it reverses";
                return d.finish(
                    p,
                    Outcome::Error {
                        code: ErrorCode::InvalidPayload,
                        detail: Some(detail.into()),
                    },
                );
            }
        }
    }

    // 2. Mapping. An event it refuses still gets its click looked at below,
    //    so the log shows what is known.
    let mut send = false;
    let mut refused = None;
    if adjustment.is_none() {
        match p.mapping.map(&ev.source_event) {
            Mapped::Unmapped => {
                refused = Some(Outcome::Error {
                    code: ErrorCode::UnmappedEvent,
                    detail: Some(format!("no mapping for {:?}", ev.source_event)),
                });
            }
            Mapped::Ignored => refused = Some(Outcome::Ignored(IgnoreReason::Mapping)),
            Mapped::Event { name, rule } => {
                d.event_name = Some(name.to_owned());
                send = rule.send_to_destinations;
                match &rule.value {
                    ValueSource::Reported => {}
                    ValueSource::Fixed(money) => {
                        d.value = Some(money.amount);
                        d.currency = Some(money.currency);
                    }
                    ValueSource::None => {
                        d.value = None;
                        d.currency = None;
                    }
                }
            }
        }
    }
    if d.value.is_some() && d.currency.is_none() {
        d.currency = p.reporting_currency;
    }
    // A negative amount that is not an adjustment of an earlier conversion
    // would reach the ad platforms as a negative Purchase: refuse it.
    if adjustment.is_none() && refused.is_none() && d.value.is_some_and(Amount::is_negative) {
        refused = Some(Outcome::Error {
            code: ErrorCode::InvalidPayload,
            detail: Some(
                "a negative amount is a reversal: it must name the transaction id of the conversion it reverses"
                    .into(),
            ),
        });
    }

    // 3. The click, its session and traffic source. A click of another
    //    property is not this conversion's, whatever names it.
    let click = facts.click.filter(|c| c.property_id == *p.property_id);
    if let Some(c) = &click {
        if let Some(id) = &c.click_id {
            d.click_id = Some(id.as_str().to_owned());
        }
        if let Some(g) = &c.link_group {
            d.link_group = Some(g.clone());
        }
        d.offer = c
            .offer()
            .or_else(|| p.integration.map(|i| i.name.to_owned()));
        if let Some(s) = facts.session {
            d.visitor_id = Some(s.visitor_id);
            d.is_bot = s.is_bot;
            d.last_click = Some(s.touch);
        }
    }
    let click_ts = click.as_ref().map(|c| c.ts_ms);
    d.click = click;
    if let Some(outcome) = refused {
        return d.finish(p, outcome);
    }
    let Some(click_ts) = click_ts else {
        let code = if d.click_id.is_none() {
            ErrorCode::MissingClickId
        } else {
            ErrorCode::UnknownClickId
        };
        return d.finish(p, Outcome::Error { code, detail: None });
    };

    // 4. Time rules. Saturating: no input, however absurd, may panic.
    let tolerance = if ev.kind == SourceKind::Api {
        DATE_ONLY_TOLERANCE_MS
    } else {
        SKEW_TOLERANCE_MS
    };
    if d.occurred_at_ms < click_ts.saturating_sub(tolerance) {
        let code = ErrorCode::BeforeClick;
        return d.finish(p, Outcome::Error { code, detail: None });
    }
    d.occurred_at_ms = d.occurred_at_ms.max(click_ts);
    let window = p.attribution_window_ms;
    if let Some(w) = window
        && d.occurred_at_ms.saturating_sub(click_ts) > w
    {
        let code = ErrorCode::OutsideWindow;
        return d.finish(p, Outcome::Error { code, detail: None });
    }

    // 5. First touch: the visitor's earliest session within the window, up
    //    to the click.
    let since = window.map_or(i64::MIN, |w| d.occurred_at_ms.saturating_sub(w));
    let first = facts
        .visitor_sessions
        .iter()
        .find(|(started, _)| *started >= since && *started <= click_ts)
        .map(|(_, t)| t.clone());
    d.first_click = Some(first.unwrap_or_else(|| d.last_click.clone().unwrap_or_default()));

    let outcome = match adjustment {
        Some(a) => Outcome::Adjustment(a),
        None => Outcome::Validated {
            send_to_destinations: send,
        },
    };
    d.finish(p, outcome)
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use proptest::prelude::*;

    use super::*;
    use crate::conversion::RawPayload;
    use crate::mapping::MappingRule;
    use crate::money::Money;

    const PROPERTY: &str = "abcdefghij012345";

    fn amt(s: &str) -> Amount {
        Amount::parse(s).expect("a valid amount")
    }
    const OTHER_PROPERTY: &str = "zyxwvutsrq987654";
    const DAY: i64 = 86_400_000;

    /// The owned inputs of one decision.
    #[derive(Debug, Clone)]
    struct Case {
        conversion_id: EntityId,
        event_id: Option<String>,
        property_id: PropertyId,
        window_ms: Option<i64>,
        currency: Option<Currency>,
        /// (id, name, tracking group)
        integration: Option<(String, String, String)>,
        mapping: EventMapping,
        received_at_ms: i64,
        event: SourceEvent,
        forced_error: Option<(ErrorCode, String)>,
        session_id: Option<i64>,
        click: Option<Click>,
        session: Option<ClickSession>,
        visitor_sessions: Vec<(i64, Touch)>,
        target_validated: bool,
    }

    impl Case {
        fn decide(&self) -> Decision {
            let p = PendingConversion {
                conversion_id: &self.conversion_id,
                event_id: self.event_id.as_deref(),
                property_id: &self.property_id,
                attribution_window_ms: self.window_ms,
                reporting_currency: self.currency,
                integration: self
                    .integration
                    .as_ref()
                    .map(|(id, name, group)| IntegrationRef {
                        id,
                        name,
                        tracking_group: group,
                    }),
                mapping: &self.mapping,
                received_at_ms: self.received_at_ms,
                event: &self.event,
                forced_error: self.forced_error.as_ref().map(|(c, d)| (*c, d.as_str())),
                session_id: self.session_id,
            };
            decide(
                &p,
                Facts {
                    click: self.click.clone(),
                    session: self.session.clone(),
                    visitor_sessions: &self.visitor_sessions,
                    target_validated: self.target_validated,
                },
            )
        }

        fn with_click(mut self, click: Click) -> Self {
            self.click = Some(click);
            self
        }

        fn with_integration(mut self) -> Self {
            self.integration = Some((
                "int_gala".into(),
                "Gala Partners".into(),
                "incomeaccess".into(),
            ));
            self
        }

        fn occurred(mut self, ms: i64) -> Self {
            self.event.occurred_at = DateTime::from_timestamp_millis(ms);
            self
        }
    }

    fn rule(event: Option<&str>, value: ValueSource, send: bool) -> MappingRule {
        MappingRule {
            event: event.map(str::to_owned),
            value,
            send_to_destinations: send,
        }
    }

    fn mapping() -> EventMapping {
        let mut m = EventMapping::default();
        m.0.insert(
            "sale".into(),
            rule(Some("Purchase"), ValueSource::Reported, true),
        );
        m.0.insert("lead".into(), rule(Some("Lead"), ValueSource::None, false));
        m.0.insert(
            "cpa".into(),
            rule(
                Some("Purchase"),
                ValueSource::Fixed(Money::new(amt("40"), Currency::EUR)),
                true,
            ),
        );
        m.0.insert("test".into(), rule(None, ValueSource::Reported, true));
        m
    }

    fn property(id: &str) -> PropertyId {
        PropertyId::parse(id).expect("a valid property id")
    }

    fn sale() -> SourceEvent {
        SourceEvent {
            kind: SourceKind::Postback,
            source_event: "Sale".into(),
            click_id: Some("c".repeat(20)),
            transaction_id: Some("T1".into()),
            value: Some(amt("12.50")),
            currency: None,
            status: SourceStatus::Approved,
            occurred_at: None,
            adjusts: None,
            raw: RawPayload::default(),
        }
    }

    /// A sale received at 10,000,000 ms, no click found yet.
    fn case(ev: SourceEvent) -> Case {
        Case {
            conversion_id: EntityId::parse("cv_0000000000test").expect("a valid id"),
            event_id: None,
            property_id: property(PROPERTY),
            window_ms: Some(30 * DAY),
            currency: Some(Currency::USD),
            integration: None,
            mapping: mapping(),
            received_at_ms: 10_000_000,
            event: ev,
            forced_error: None,
            session_id: None,
            click: None,
            session: None,
            visitor_sessions: Vec::new(),
            target_validated: false,
        }
    }

    fn click(ts_ms: i64) -> Click {
        Click {
            property_id: property(PROPERTY),
            click_id: ClickId::parse(&"c".repeat(20)).ok(),
            origin: ClickOrigin::Recorded,
            ts_ms,
            session_id: 7,
            visitor_id: "v12345678".into(),
            link_url: Some("https://wlx.adsrv.eacdn.com/C.ashx?c=1".into()),
            link_group: Some("incomeaccess".into()),
        }
    }

    /// A click whose OutboundClick beacon was lost, resolved from its pageview.
    fn pageview_click(ts_ms: i64) -> Click {
        Click {
            origin: ClickOrigin::Pageview {
                pageview_id: "0190f1a2-7d3c-7abc-8def-0123456789ab".into(),
                page_url: Some("https://a.com/review".into()),
            },
            link_url: None,
            link_group: None,
            ..click(ts_ms)
        }
    }

    fn session_facts() -> ClickSession {
        ClickSession {
            visitor_id: "v12345678".into(),
            touch: Touch {
                session_id: Some(7),
                channel: Some("paid_social".into()),
                source: Some("facebook".into()),
                medium: Some("cpc".into()),
                campaign: Some("spring".into()),
                ad: None,
                landing_page: Some("a.com/".into()),
            },
            is_bot: false,
        }
    }

    fn code(d: &Decision) -> Option<&'static str> {
        d.outcome.error_code().map(ErrorCode::as_str)
    }

    #[test]
    fn dedup_keys() {
        let p = property(PROPERTY);
        let mut ev = sale();
        let k1 = dedup_key(&p, None, &ev);
        ev.source_event = "sale".into();
        assert_eq!(
            dedup_key(&p, None, &ev),
            k1,
            "event names match case-insensitively"
        );
        ev.status = SourceStatus::Reversed;
        assert_ne!(
            dedup_key(&p, None, &ev),
            k1,
            "a reversal is not a repeat of the sale"
        );
        ev.status = SourceStatus::Approved;
        ev.transaction_id = None;
        assert!(dedup_key(&p, None, &ev).contains("click:"));
    }

    #[test]
    fn outcomes() {
        let found = case(sale()).with_click(click(9_000_000));
        let d = found.decide();
        assert_eq!(
            d.outcome,
            Outcome::Validated {
                send_to_destinations: true
            }
        );
        assert_eq!(d.event_name.as_deref(), Some("Purchase"));
        assert_eq!(
            d.currency,
            Some(Currency::USD),
            "property currency fills in"
        );
        assert_eq!(d.offer.as_deref(), Some("wlx.adsrv.eacdn.com"));
        assert!(d.outcome.send_to_destinations());

        let mut ev = sale();
        ev.click_id = None;
        assert_eq!(code(&case(ev).decide()), Some("missing_click_id"));
        assert_eq!(code(&case(sale()).decide()), Some("unknown_click_id"));

        let mut unmapped = found.clone();
        unmapped.event.source_event = "signup".into();
        assert_eq!(code(&unmapped.decide()), Some("unmapped_event"));

        let late = case(sale()).with_click(click(10_000_000 + SKEW_TOLERANCE_MS + 1));
        assert_eq!(code(&late.decide()), Some("before_click"));

        let old = case(sale()).with_click(click(10_000_000 - 31 * DAY));
        assert_eq!(code(&old.decide()), Some("outside_window"));

        // A negative amount is never a conversion of its own (it would
        // reach the ad platforms as a negative Purchase).
        let mut negative = found.clone();
        negative.event.value = Some(amt("-5000"));
        assert_eq!(code(&negative.decide()), Some("invalid_payload"));
        assert!(!negative.decide().outcome.send_to_destinations());

        let mut reversal = found;
        reversal.event.status = SourceStatus::Reversed;
        reversal.event.transaction_id = None;
        assert_eq!(code(&reversal.decide()), Some("invalid_payload"));
    }

    #[test]
    fn first_touch_within_window() {
        let early = Touch {
            session_id: Some(1),
            channel: Some("organic_search".into()),
            ..Touch::default()
        };
        let mut c = case(sale()).with_click(click(9_000_000));
        c.visitor_sessions = vec![(8_000_000, early)];
        let d = c.decide();
        let first = d.first_click.expect("a first touch");
        assert_eq!(first.channel.as_deref(), Some("organic_search"));
        assert_eq!(first.session_id, Some(1));
    }

    #[test]
    fn first_touch_is_the_click_session_without_an_older_one() {
        let mut c = case(sale()).with_click(click(9_000_000));
        c.session = Some(session_facts());
        c.visitor_sessions = vec![
            // Before the window, and after the click: neither counts.
            (9_000_000 - 31 * DAY - 1, Touch::default()),
            (
                9_000_001,
                Touch {
                    session_id: Some(9),
                    ..Touch::default()
                },
            ),
        ];
        let d = c.decide();
        assert_eq!(d.last_click, Some(session_facts().touch));
        assert_eq!(d.first_click, Some(session_facts().touch));
        assert_eq!(d.visitor_id.as_deref(), Some("v12345678"));
    }

    #[test]
    fn before_click_at_its_boundary() {
        for (kind, tolerance) in [
            (SourceKind::Postback, SKEW_TOLERANCE_MS),
            (SourceKind::Api, DATE_ONLY_TOLERANCE_MS),
        ] {
            let ts = 50 * DAY;
            let mut c = case(sale()).with_click(click(ts));
            c.event.kind = kind;
            let d = c.clone().occurred(ts - tolerance).decide();
            assert!(matches!(d.outcome, Outcome::Validated { .. }), "{kind:?}");
            assert_eq!(d.occurred_at_ms, ts, "dated at the click");
            let d = c.occurred(ts - tolerance - 1).decide();
            assert_eq!(code(&d), Some("before_click"), "{kind:?}");
        }
    }

    #[test]
    fn outside_window_at_its_boundary() {
        let ts = 50 * DAY;
        let c = case(sale()).with_click(click(ts));
        let d = c.clone().occurred(ts + 30 * DAY).decide();
        assert!(matches!(d.outcome, Outcome::Validated { .. }));
        let d = c.clone().occurred(ts + 30 * DAY + 1).decide();
        assert_eq!(code(&d), Some("outside_window"));
        let mut unlimited = c.occurred(ts + 3000 * DAY);
        unlimited.window_ms = None;
        assert!(matches!(
            unlimited.decide().outcome,
            Outcome::Validated { .. }
        ));
    }

    #[test]
    fn lost_outbound_click_resolved_through_its_pageview() {
        let mut c = case(sale()).with_integration();
        c.click = Some(pageview_click(9_000_000));
        let d = c.decide();
        assert!(matches!(d.outcome, Outcome::Validated { .. }));
        assert_eq!(d.click_to_materialise(), Some(&pageview_click(9_000_000)));
        assert_eq!(
            d.offer.as_deref(),
            Some("Gala Partners"),
            "no link: the integration names the offer"
        );
        assert_eq!(d.link_group.as_deref(), Some("incomeaccess"));

        // A conversion that is not attributed records no click.
        let d = c.occurred(9_000_000 - SKEW_TOLERANCE_MS - 1).decide();
        assert_eq!(code(&d), Some("before_click"));
        assert!(d.click.is_some(), "the log still shows the click");
        assert_eq!(d.click_to_materialise(), None);
    }

    #[test]
    fn a_click_of_another_property_is_not_found() {
        let mut foreign = click(9_000_000);
        foreign.property_id = property(OTHER_PROPERTY);
        let mut c = case(sale()).with_click(foreign);
        c.session = Some(session_facts());
        let d = c.decide();
        assert_eq!(code(&d), Some("unknown_click_id"));
        assert_eq!(d.click, None);
        assert_eq!(d.last_click, None);
        assert_eq!(d.visitor_id, None);
    }

    #[test]
    fn on_site_conversions_name_no_click_id() {
        let mut ev = sale();
        ev.kind = SourceKind::Collector;
        ev.click_id = None;
        let mut c = case(ev).with_click(Click {
            click_id: None,
            origin: ClickOrigin::Session,
            link_url: None,
            link_group: None,
            ..click(10_000_000)
        });
        c.session_id = Some(7);
        c.session = Some(session_facts());
        c.event_id = Some("0190f1a2-7d3c-7abc-8def-0123456789ab".into());
        let d = c.decide();
        assert!(matches!(d.outcome, Outcome::Validated { .. }));
        assert_eq!(d.click_id, None);
        assert_eq!(d.offer, None);
        assert_eq!(d.event_id, "0190f1a2-7d3c-7abc-8def-0123456789ab");
        assert_eq!(d.last_click, Some(session_facts().touch));
    }

    #[test]
    fn value_sources() {
        let mut c = case(sale()).with_click(click(9_000_000));
        c.event.source_event = "cpa".into();
        c.event.currency = Some(Currency::GBP);
        let d = c.clone().decide();
        assert_eq!(
            (d.value, d.currency),
            (Some(amt("40")), Some(Currency::EUR))
        );
        c.event.source_event = "lead".into();
        let d = c.clone().decide();
        assert_eq!((d.value, d.currency), (None, None));
        assert!(!d.outcome.send_to_destinations());
        c.event.source_event = "sale".into();
        let d = c.decide();
        assert_eq!(
            d.currency,
            Some(Currency::GBP),
            "a reported currency stands"
        );
    }

    #[test]
    fn ignored_events() {
        let mut c = case(sale()).with_click(click(9_000_000));
        c.event.source_event = "test".into();
        let d = c.decide();
        assert_eq!(d.outcome, Outcome::Ignored(IgnoreReason::Mapping));
        assert_eq!(
            d.outcome.detail(),
            Some("the event mapping ignores this event")
        );
        assert!(d.click.is_some(), "the log shows the click");
        assert_eq!(d.first_click, None);
    }

    #[test]
    fn rejections_and_reversals() {
        let base = case(sale()).with_integration().with_click(click(9_000_000));
        let mut rejected = base.clone();
        rejected.event.status = SourceStatus::Rejected;
        let d = rejected.decide();
        assert_eq!(d.outcome, Outcome::Ignored(IgnoreReason::Rejected));
        assert_eq!(d.click, None, "decided before the click is looked at");

        rejected.target_validated = true;
        let d = rejected.clone().decide();
        assert_eq!(
            d.outcome,
            Outcome::Adjustment(Adjustment {
                integration_id: "int_gala".into(),
                transaction_id: "T1".into(),
                delta: Some(amt("12.50")),
                full_reversal: true,
            })
        );
        assert_eq!(d.event_name, None, "adjustments are not mapped");

        rejected.integration = None;
        assert_eq!(
            rejected.decide().outcome,
            Outcome::Ignored(IgnoreReason::Rejected)
        );

        let mut fall = base.clone();
        fall.event.transaction_id = Some("T1:2".into());
        fall.event.adjusts = Some("T1".into());
        fall.event.value = Some(amt("-0.99"));
        let d = fall.clone().decide();
        assert_eq!(
            d.outcome,
            Outcome::Adjustment(Adjustment {
                integration_id: "int_gala".into(),
                transaction_id: "T1".into(),
                delta: Some(amt("-0.99")),
                full_reversal: false,
            })
        );
        fall.click = None;
        assert_eq!(code(&fall.decide()), Some("unknown_click_id"));

        let mut forced = base;
        forced.forced_error = Some((ErrorCode::InvalidPayload, "bad date".into()));
        let d = forced.decide();
        assert_eq!(d.outcome.detail(), Some("bad date"));
        assert_eq!(code(&d), Some("invalid_payload"));
        assert_eq!(d.currency, None, "decided before the currency is filled in");
    }

    // Property tests.

    const BASE: i64 = 1_700_000_000_000;

    fn near() -> impl Strategy<Value = i64> {
        (-20 * DAY..20 * DAY).prop_map(|o| BASE + o)
    }

    fn kind() -> impl Strategy<Value = SourceKind> {
        prop::sample::select(vec![
            SourceKind::Postback,
            SourceKind::Api,
            SourceKind::Collector,
            SourceKind::Test,
        ])
    }

    fn status() -> impl Strategy<Value = SourceStatus> {
        prop_oneof![
            6 => Just(SourceStatus::Approved),
            2 => Just(SourceStatus::Pending),
            1 => Just(SourceStatus::Rejected),
            1 => Just(SourceStatus::Reversed),
        ]
    }

    fn currency() -> impl Strategy<Value = Currency> {
        prop::sample::select(vec![Currency::USD, Currency::EUR, Currency::GBP])
    }

    fn event() -> impl Strategy<Value = SourceEvent> {
        (
            kind(),
            prop::sample::select(vec!["sale", "Sale", "lead", "cpa", "test", "signup"]),
            prop::option::of(prop::sample::select(vec![
                "c".repeat(20),
                " ".into(),
                format!(" {} ", "c".repeat(20)),
                "d".repeat(20),
            ])),
            prop::option::of(prop::sample::select(vec!["T1", "T2", " "])),
            prop::option::of((-100_000i64..100_000).prop_map(|m| Amount::from_micros(m * 10_000))),
            prop::option::of(currency()),
            status(),
            prop::option::of(near()),
            prop::option::weighted(0.1, Just("T1")),
        )
            .prop_map(
                |(kind, name, click_id, tx, value, currency, status, occurred, adjusts)| {
                    SourceEvent {
                        kind,
                        source_event: name.into(),
                        click_id,
                        transaction_id: tx.map(str::to_owned),
                        value,
                        currency,
                        status,
                        occurred_at: occurred.and_then(DateTime::from_timestamp_millis),
                        adjusts: adjusts.map(str::to_owned),
                        raw: RawPayload::from_fields([("name", name)]),
                    }
                },
            )
    }

    fn origin() -> impl Strategy<Value = ClickOrigin> {
        prop_oneof![
            Just(ClickOrigin::Recorded),
            Just(ClickOrigin::Session),
            Just(ClickOrigin::Pageview {
                pageview_id: "0190f1a2-7d3c-7abc-8def-0123456789ab".into(),
                page_url: None,
            }),
        ]
    }

    fn any_click() -> impl Strategy<Value = Click> {
        (
            prop_oneof![3 => Just(PROPERTY), 1 => Just(OTHER_PROPERTY)],
            origin(),
            // Mostly plausible times, sometimes absurd ones.
            prop_oneof![9 => near(), 1 => any::<i64>()],
            prop::option::of(Just("https://offer.example/x".to_owned())),
            prop::option::of(Just("incomeaccess".to_owned())),
        )
            .prop_map(|(p, origin, ts_ms, link_url, link_group)| Click {
                property_id: property(p),
                click_id: match origin {
                    ClickOrigin::Session => None,
                    _ => ClickId::parse(&"c".repeat(20)).ok(),
                },
                origin,
                ts_ms,
                session_id: 7,
                visitor_id: "v12345678".into(),
                link_url,
                link_group,
            })
    }

    fn any_case() -> impl Strategy<Value = Case> {
        (
            event(),
            any::<bool>(),
            prop::option::of(prop::sample::select(vec![1, 7, 30, 60, 90])),
            prop::option::of(currency()),
            prop::option::weighted(0.1, Just(ErrorCode::InvalidPayload)),
            prop::option::weighted(0.8, any_click()),
            any::<bool>(),
            prop::collection::vec((near(), 1i64..20), 0..4),
            any::<bool>(),
            near(),
        )
            .prop_map(
                |(
                    ev,
                    integrated,
                    days,
                    cur,
                    forced,
                    click,
                    with_session,
                    sessions,
                    validated,
                    received,
                )| {
                    let mut c = case(ev);
                    if integrated {
                        c = c.with_integration();
                    }
                    c.window_ms = days.map(|d: i64| d * DAY);
                    c.currency = cur;
                    c.forced_error = forced.map(|code| (code, "refused".to_owned()));
                    c.click = click;
                    c.session = with_session.then(session_facts);
                    let mut sessions: Vec<(i64, Touch)> = sessions
                        .into_iter()
                        .map(|(started, id)| {
                            (
                                started,
                                Touch {
                                    session_id: Some(id),
                                    ..Touch::default()
                                },
                            )
                        })
                        .collect();
                    sessions.sort_by_key(|(started, _)| *started);
                    c.visitor_sessions = sessions;
                    c.target_validated = validated;
                    c.received_at_ms = received;
                    c
                },
            )
    }

    /// A sale that is attributed unless its time says otherwise.
    fn timed_case() -> impl Strategy<Value = (Case, i64)> {
        (kind(), near(), any::<bool>()).prop_map(|(kind, ts, integrated)| {
            let mut c = case(sale()).with_click(click(ts));
            c.event.kind = kind;
            if integrated {
                c = c.with_integration();
            }
            (c, ts)
        })
    }

    fn tolerance(kind: SourceKind) -> i64 {
        if kind == SourceKind::Api {
            DATE_ONLY_TOLERANCE_MS
        } else {
            SKEW_TOLERANCE_MS
        }
    }

    proptest! {
        // Cheap cases: enough of them that every outcome is met many times.
        #![proptest_config(ProptestConfig::with_cases(1000))]

        /// Whatever the input, the decision is made (no panic), is the same
        /// when made again, and its one outcome agrees with the rest of it.
        #[test]
        fn every_input_ends_in_exactly_one_consistent_outcome(c in any_case()) {
            let d = c.decide();
            prop_assert_eq!(&d, &c.decide(), "deterministic");
            prop_assert_eq!(d.outcome.error_code().is_some(), d.outcome.status() == LogStatus::Error);
            prop_assert_eq!(
                &d.dedup_key,
                &dedup_key(&c.property_id, c.integration.as_ref().map(|i| i.0.as_str()), &c.event)
            );
            prop_assert!(d.outcome.error_code() != Some(ErrorCode::Duplicate), "the store decides repeats");
            if let Some(click) = &d.click {
                prop_assert_eq!(&click.property_id, &c.property_id);
            }
            match &d.outcome {
                Outcome::Validated { .. } | Outcome::Adjustment(_) => {
                    let click = d.click.as_ref().expect("an attributed conversion has a click");
                    prop_assert!(c.forced_error.is_none());
                    prop_assert!(d.occurred_at_ms >= click.ts_ms);
                    if let Some(w) = c.window_ms {
                        prop_assert!(d.occurred_at_ms - click.ts_ms <= w);
                    }
                    prop_assert!(d.first_click.is_some());
                    if let Outcome::Adjustment(a) = &d.outcome {
                        prop_assert!(names_earlier(&c.event));
                        prop_assert_eq!(Some(&a.integration_id), c.integration.as_ref().map(|i| &i.0));
                    } else {
                        prop_assert!(!names_earlier(&c.event));
                        prop_assert!(d.event_name.is_some());
                    }
                }
                Outcome::Ignored(_) | Outcome::Error { .. } => {
                    prop_assert!(!d.outcome.send_to_destinations());
                    prop_assert_eq!(d.first_click.as_ref(), None);
                    prop_assert_eq!(d.click_to_materialise(), None);
                }
            }
            if d.value.is_some() && c.forced_error.is_none() && !names_earlier(&c.event) {
                prop_assert!(d.currency.is_some() || c.currency.is_none());
            }
        }

        /// A click of another property decides exactly as no click at all.
        #[test]
        fn a_click_of_another_property_is_never_used(mut c in any_case(), mut foreign in any_click()) {
            foreign.property_id = property(OTHER_PROPERTY);
            c.click = Some(foreign);
            let d = c.decide();
            prop_assert_eq!(d.click.as_ref(), None);
            let attributed = matches!(d.outcome, Outcome::Validated { .. } | Outcome::Adjustment(_));
            prop_assert!(!attributed);
            c.click = None;
            prop_assert_eq!(d, c.decide());
        }

        /// Dated `tolerance` before the click is accepted (and dated at the
        /// click); a millisecond earlier is `before_click`; any time is
        /// refused exactly when earlier than that.
        #[test]
        fn before_click_at_its_exact_boundary((c, ts) in timed_case(), offset in -3 * DAY..DAY) {
            let tol = tolerance(c.event.kind);
            let d = c.clone().occurred(ts - tol).decide();
            prop_assert!(matches!(d.outcome, Outcome::Validated { .. }), "{:?}", d.outcome);
            prop_assert_eq!(d.occurred_at_ms, ts);
            let d = c.clone().occurred(ts - tol - 1).decide();
            prop_assert_eq!(d.outcome.error_code(), Some(ErrorCode::BeforeClick));
            let d = c.occurred(ts + offset).decide();
            prop_assert_eq!(d.outcome.error_code() == Some(ErrorCode::BeforeClick), offset < -tol);
        }

        /// `window` after the click is accepted; a millisecond later is
        /// `outside_window`; an unlimited window takes any later time.
        #[test]
        fn outside_window_at_its_exact_boundary(
            (mut c, ts) in timed_case(),
            days in prop::sample::select(vec![1i64, 7, 30, 60, 90]),
            late in 0..1000 * DAY,
        ) {
            let w = days * DAY;
            c.window_ms = Some(w);
            let d = c.clone().occurred(ts + w).decide();
            prop_assert!(matches!(d.outcome, Outcome::Validated { .. }), "{:?}", d.outcome);
            let d = c.clone().occurred(ts + w + 1).decide();
            prop_assert_eq!(d.outcome.error_code(), Some(ErrorCode::OutsideWindow));
            c.window_ms = None;
            let d = c.occurred(ts + late).decide();
            prop_assert!(matches!(d.outcome, Outcome::Validated { .. }), "{:?}", d.outcome);
        }

        /// Two identical pending events, whenever received and whatever id
        /// they are given, share their idempotency key (the store records
        /// the second as `duplicate`); a different transaction, event or an
        /// adjustment is not a repeat.
        #[test]
        fn a_duplicate_transaction_has_the_same_key(
            c in any_case(),
            received in near(),
            tx in "[A-Za-z0-9]{1,12}",
            other_tx in "[A-Za-z0-9]{1,12}",
            name in "[a-z]{1,10}",
            other_name in "[a-z]{1,10}",
        ) {
            let mut again = c.clone();
            again.received_at_ms = received;
            again.conversion_id = EntityId::parse("cv_0000000000again").expect("a valid id");
            prop_assert_eq!(c.decide().dedup_key, again.decide().dedup_key);

            let mut ev = c.event.clone();
            ev.status = SourceStatus::Approved;
            ev.adjusts = None;
            ev.transaction_id = Some(tx.clone());
            ev.source_event = name.clone();
            let p = &c.property_id;
            let int = c.integration.as_ref().map(|i| i.0.as_str());
            let key = dedup_key(p, int, &ev);
            let mut other = ev.clone();
            other.transaction_id = Some(other_tx.clone());
            prop_assert_eq!(key == dedup_key(p, int, &other), tx == other_tx);
            let mut other = ev.clone();
            other.source_event = other_name.clone();
            prop_assert_eq!(key == dedup_key(p, int, &other), name == other_name);
            let mut other = ev.clone();
            other.source_event = name.to_uppercase();
            prop_assert_eq!(&key, &dedup_key(p, int, &other), "names match case-insensitively");
            for status in [SourceStatus::Reversed, SourceStatus::Rejected] {
                let mut other = ev.clone();
                other.status = status;
                prop_assert_ne!(&key, &dedup_key(p, int, &other));
            }
            let mut other = ev;
            other.adjusts = Some(tx);
            prop_assert_ne!(&key, &dedup_key(p, int, &other));
        }

        /// A click id whose OutboundClick beacon was lost, resolved through
        /// its pageview, attributes as the recorded click would, and the
        /// click is recorded with the conversion.
        #[test]
        fn a_lost_outbound_click_resolves_through_its_pageview(
            (mut c, ts) in timed_case(),
            after in 0..30 * DAY,
            with_session in any::<bool>(),
        ) {
            c.session = with_session.then(session_facts);
            let mut recorded = c.occurred(ts + after);
            recorded.click = Some(Click { link_url: None, link_group: None, ..click(ts) });
            let mut resolved = recorded.clone();
            resolved.click = Some(pageview_click(ts));
            let d = resolved.decide();
            prop_assert!(matches!(d.outcome, Outcome::Validated { .. }), "{:?}", d.outcome);
            prop_assert_eq!(d.click_to_materialise(), Some(&pageview_click(ts)));
            let r = recorded.decide();
            prop_assert_eq!(r.click_to_materialise(), None);
            prop_assert_eq!(Decision { click: r.click.clone(), ..d }, r);
        }
    }
}
