//! The delta rules: a report row compared with the snapshot remembered for
//! its key gives the source events to record and the snapshot to remember
//! next. Pure: no clock (the poll time comes in [`DeltaConfig`]), no I/O.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use clicktrail_domain::conversion::{ErrorCode, RawPayload, SourceEvent, SourceKind, SourceStatus};
use clicktrail_domain::money::{Amount, Currency};
use serde::{Deserialize, Serialize};

use super::row::{ReportRow, registration_time};

/// Source event name of a first appearance (mapped to `Lead` by default).
pub const SOURCE_REGISTRATION: &str = "registration";
/// Source event name of a rise of the value field (mapped to `Purchase`),
/// and of its falls (status `reversed`, `adjusts` set).
pub const SOURCE_COMMISSION: &str = "commission";

/// Fields that count registrations on rows without a player (ACIDReport's
/// `downloads`). When a row has none of them, its first appearance counts.
pub const REGISTRATION_COUNT_FIELDS: [&str; 3] = ["downloads", "registrations", "signups"];

/// Default number of periods remembered per key (see [`Snapshot::settled_before`]).
pub const DEFAULT_MAX_PERIODS: usize = 62;

/// Configuration of the delta rules for one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeltaConfig {
    /// The running total whose changes are commissions (case-insensitive);
    /// `None` for registration-only reports.
    pub value_field: Option<String>,
    /// When the poll ran: the upper bound of registration times.
    pub observed_at: DateTime<Utc>,
    /// Periods remembered per key; older ones are forgotten and their rows
    /// ignored from then on.
    pub max_periods: usize,
}

impl DeltaConfig {
    pub fn new(value_field: Option<String>, observed_at: DateTime<Utc>) -> Self {
        Self {
            value_field,
            observed_at,
            max_periods: DEFAULT_MAX_PERIODS,
        }
    }
}

/// What is remembered per row key (see [`ReportRow::snapshot_key`]):
/// whether the registration was recorded, and per period the last value
/// of the value field. Stored as JSON by the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Snapshot {
    /// A `registration` event was emitted for this key.
    #[serde(default)]
    pub registered: bool,
    /// Transaction id of the latest commission event of the key, in any
    /// period: what a fall adjusts when its own period has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commission: Option<String>,
    /// Period key (`2024-05` or `2024-05-03`) -> state.
    #[serde(default)]
    pub periods: BTreeMap<String, PeriodState>,
    /// Periods before this one were forgotten (beyond `max_periods`): their
    /// rows are settled history and produce nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settled_before: Option<String>,
}

/// The running total of one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodState {
    /// The value field this total was read from. When the integration's
    /// value field changes, a period is re-based on the new field instead of
    /// emitting the difference between two different totals.
    pub field: String,
    /// Last value seen (exact, serialized as a decimal string).
    pub value: Amount,
    /// Number of changes so far: the suffix of the next transaction id.
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_commission: Option<String>,
}

/// The outcome of one row.
#[derive(Debug, Clone, PartialEq)]
pub struct RowDiff {
    /// The snapshot key of the row.
    pub key: String,
    /// Events to record, in order (registration first).
    pub events: Vec<SourceEvent>,
    /// The snapshot to store under `key`.
    pub snapshot: Snapshot,
    /// `snapshot` differs from the previous one (else there is nothing to
    /// write).
    pub changed: bool,
}

/// A row the rules cannot use. The server logs it in the conversion log
/// under [`RowError::log_code`], with the row's raw payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("the row has neither an affcustomid nor a player id")]
    NoIdentity,
    #[error("{field} is not a decimal amount: {value:?}")]
    InvalidAmount { field: String, value: String },
    #[error("the row has no {field} field (check the integration's value field)")]
    MissingValueField { field: String },
    #[error("currencysymbol is not a currency: {value:?}")]
    InvalidCurrency { value: String },
    #[error("the currency of this period changed from {from} to {to}")]
    CurrencyChanged { from: Currency, to: Currency },
    #[error("the row does not say which day it covers")]
    MissingPeriod,
}

impl RowError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoIdentity => "no_row_identity",
            Self::InvalidAmount { .. } => "invalid_amount",
            Self::MissingValueField { .. } => "missing_value_field",
            Self::InvalidCurrency { .. } => "invalid_currency",
            Self::CurrencyChanged { .. } => "currency_changed",
            Self::MissingPeriod => "missing_period",
        }
    }

    /// The conversion log's error code for this row: a row without any
    /// identity cannot be attributed (`missing_click_id`); the others are
    /// `invalid_payload`.
    pub fn log_code(&self) -> ErrorCode {
        match self {
            Self::NoIdentity => ErrorCode::MissingClickId,
            _ => ErrorCode::InvalidPayload,
        }
    }
}

fn short(value: &str) -> String {
    value.chars().take(64).collect()
}

/// Compares `row` with the snapshot of its key and returns the events and
/// the next snapshot.
///
/// - first appearance of a key with a player (or, without a player, the
///   first time a registration count field is positive or, when there is
///   none, the first appearance): `registration`, transaction id
///   `ia:<key>:reg`, dated by `registrationdate` when present;
/// - the value field above the period's last value: `commission` worth the
///   rise, id `ia:<key>:<period>:c<seq>`;
/// - below: `commission` with status `reversed`, the (negative) change as
///   value, id `ia:<key>:<period>:a<seq>`, `adjusts` = the latest commission
///   id of the period, else of the key (`None` if there never was one);
/// - equal: nothing.
///
/// The sum of the values emitted for a period always equals its last total.
pub fn diff(
    prev: Option<&Snapshot>,
    row: &ReportRow,
    cfg: &DeltaConfig,
) -> Result<RowDiff, RowError> {
    let key = row.snapshot_key().ok_or(RowError::NoIdentity)?;

    let currency = match row.get_nonempty("currencysymbol") {
        None => None,
        Some(c) => {
            Some(Currency::parse(c).map_err(|_| RowError::InvalidCurrency { value: short(c) })?)
        }
    };
    let value = match &cfg.value_field {
        None => None,
        Some(field) => {
            let raw = row.get(field).ok_or_else(|| RowError::MissingValueField {
                field: short(field),
            })?;
            let amount = if raw.trim().is_empty() {
                Amount::ZERO
            } else {
                Amount::parse(raw).map_err(|_| RowError::InvalidAmount {
                    field: short(field),
                    value: short(raw),
                })?
            };
            Some((field.to_ascii_lowercase(), amount))
        }
    };
    let period = match &value {
        Some(_) => Some(row.period().ok_or(RowError::MissingPeriod)?),
        None => None,
    };

    let mut snap = prev.cloned().unwrap_or_default();
    let mut events = Vec::new();
    let click_id = row.affcustomid().map(str::to_owned);
    let event = |source: &str, tx: String| SourceEvent {
        kind: SourceKind::Api,
        source_event: source.to_owned(),
        click_id: click_id.clone(),
        transaction_id: Some(tx),
        value: None,
        currency: None,
        status: SourceStatus::Approved,
        occurred_at: None,
        adjusts: None,
        // Filled once for all the row's events, below.
        raw: RawPayload::default(),
    };

    if !snap.registered && counts_as_registration(row) {
        snap.registered = true;
        let mut e = event(SOURCE_REGISTRATION, format!("ia:{key}:reg"));
        e.occurred_at = row
            .get_nonempty("registrationdate")
            .and_then(|d| registration_time(d, cfg.observed_at));
        events.push(e);
    }

    if let (Some((field, amount)), Some(period)) = (value, period) {
        let settled = snap.settled_before.as_deref().is_some_and(|s| period < s);
        if !settled {
            let key_last = snap.last_commission.clone();
            let state = snap
                .periods
                .entry(period.to_owned())
                .or_insert_with(|| PeriodState {
                    field: field.clone(),
                    value: Amount::ZERO,
                    seq: 0,
                    currency,
                    last_commission: None,
                });
            match (state.currency, currency) {
                (Some(from), Some(to)) if from != to => {
                    return Err(RowError::CurrencyChanged { from, to });
                }
                _ => {}
            }
            if state.field != field {
                state.field = field;
                state.value = amount;
            } else {
                // Both within the parsed range: the difference cannot
                // overflow.
                let change = amount.saturating_sub(state.value);
                if !change.is_zero() {
                    state.seq = state.seq.saturating_add(1);
                    let mut e;
                    if change.is_positive() {
                        let tx = format!("ia:{key}:{period}:c{}", state.seq);
                        e = event(SOURCE_COMMISSION, tx.clone());
                        state.last_commission = Some(tx.clone());
                        snap.last_commission = Some(tx);
                    } else {
                        e = event(
                            SOURCE_COMMISSION,
                            format!("ia:{key}:{period}:a{}", state.seq),
                        );
                        e.status = SourceStatus::Reversed;
                        e.adjusts = state.last_commission.clone().or(key_last);
                    }
                    e.value = Some(change);
                    e.currency = currency.or(state.currency);
                    events.push(e);
                }
                state.value = amount;
            }
            if state.currency.is_none() {
                state.currency = currency;
            }
            prune(&mut snap, cfg.max_periods.max(1));
        }
    }

    if let Some((last, others)) = events.split_last_mut() {
        let raw = row.raw();
        for e in others {
            e.raw = raw.clone();
        }
        last.raw = raw;
    }

    let changed = prev != Some(&snap);
    Ok(RowDiff {
        key,
        events,
        snapshot: snap,
        changed,
    })
}

fn counts_as_registration(row: &ReportRow) -> bool {
    if row.player().is_some() {
        return true;
    }
    let mut counts = REGISTRATION_COUNT_FIELDS
        .iter()
        .filter_map(|f| row.get(f))
        .peekable();
    if counts.peek().is_none() {
        return true;
    }
    counts.any(|v| Amount::parse(v).is_ok_and(Amount::is_positive))
}

fn prune(snap: &mut Snapshot, max: usize) {
    while snap.periods.len() > max {
        if snap.periods.pop_first().is_none() {
            break;
        }
        snap.settled_before = snap.periods.keys().next().cloned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> DeltaConfig {
        DeltaConfig::new(
            Some("totalcommission".into()),
            "2024-06-01T00:00:00Z".parse().unwrap(),
        )
    }

    fn row(period: &str, pairs: &[(&str, &str)]) -> ReportRow {
        ReportRow::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            Some(period.into()),
        )
    }

    fn player(total: &str) -> ReportRow {
        row(
            "2024-05",
            &[
                ("rowid", "1"),
                ("currencysymbol", "GBP"),
                ("playerid", "77"),
                ("affcustomid", "QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ"),
                ("registrationdate", "05/03/2024"),
                ("totalcommission", total),
            ],
        )
    }

    #[test]
    fn new_player_with_commission() {
        let d = diff(None, &player("1.02"), &cfg()).unwrap();
        assert!(d.changed);
        assert_eq!(d.key, "QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ/p77");
        assert_eq!(d.events.len(), 2);
        let reg = &d.events[0];
        assert_eq!(reg.source_event, "registration");
        assert_eq!(reg.kind, SourceKind::Api);
        assert_eq!(
            reg.transaction_id.as_deref(),
            Some("ia:QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ/p77:reg")
        );
        assert_eq!(reg.value, None);
        assert_eq!(
            reg.click_id.as_deref(),
            Some("QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ")
        );
        assert_eq!(
            reg.occurred_at.unwrap().to_rfc3339(),
            "2024-05-04T11:59:59+00:00"
        );
        let c = &d.events[1];
        assert_eq!(c.source_event, "commission");
        assert_eq!(c.status, SourceStatus::Approved);
        assert_eq!(c.value.unwrap().to_string(), "1.02");
        assert_eq!(c.currency, Some(Currency::GBP));
        assert_eq!(
            c.transaction_id.as_deref(),
            Some("ia:QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ/p77:2024-05:c1")
        );
        assert_eq!(c.occurred_at, None);
        assert_eq!(c.raw.value()["totalcommission"], "1.02");
    }

    #[test]
    fn rise_fall_and_no_change() {
        let c = cfg();
        let d1 = diff(None, &player("0"), &c).unwrap();
        assert_eq!(d1.events.len(), 1, "zero total: registration only");
        let d2 = diff(Some(&d1.snapshot), &player("0.99"), &c).unwrap();
        assert_eq!(d2.events.len(), 1);
        assert_eq!(d2.events[0].value.unwrap().to_string(), "0.99");
        let d3 = diff(Some(&d2.snapshot), &player("1.02"), &c).unwrap();
        assert_eq!(d3.events[0].value.unwrap().to_string(), "0.03");
        let c2 = d3.events[0].transaction_id.clone().unwrap();
        assert!(c2.ends_with(":c2"));
        let same = diff(Some(&d3.snapshot), &player("1.02"), &c).unwrap();
        assert!(same.events.is_empty());
        assert!(!same.changed);
        let fall = diff(Some(&d3.snapshot), &player("0.50"), &c).unwrap();
        assert_eq!(fall.events.len(), 1);
        let a = &fall.events[0];
        assert_eq!(a.status, SourceStatus::Reversed);
        assert_eq!(a.source_event, "commission");
        assert_eq!(a.value.unwrap().to_string(), "-0.52");
        assert_eq!(a.adjusts.as_deref(), Some(c2.as_str()));
        assert!(
            a.transaction_id
                .as_deref()
                .unwrap()
                .ends_with(":2024-05:a3")
        );
        let again = diff(Some(&fall.snapshot), &player("0.5"), &c).unwrap();
        assert!(again.events.is_empty(), "0.50 == 0.5");
        let up = diff(Some(&fall.snapshot), &player("2"), &c).unwrap();
        assert_eq!(up.events[0].value.unwrap().to_string(), "1.5");
        assert!(
            up.events[0]
                .transaction_id
                .as_deref()
                .unwrap()
                .ends_with(":c4")
        );
    }

    #[test]
    fn restart_from_json() {
        let c = cfg();
        let d = diff(None, &player("3.10"), &c).unwrap();
        let json = serde_json::to_string(&d.snapshot).unwrap();
        assert!(
            json.contains("\"3.10\"") || json.contains("\"3.1\""),
            "{json}"
        );
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        assert_eq!(back, d.snapshot);
        let again = diff(Some(&back), &player("3.1"), &c).unwrap();
        assert!(again.events.is_empty());
        assert!(!again.changed);
        // Forward compatible: an empty object is a fresh snapshot.
        assert_eq!(
            serde_json::from_str::<Snapshot>("{}").unwrap(),
            Snapshot::default()
        );
    }

    /// A snapshot stored before amounts were `Amount` (`rust_decimal`
    /// wrote the decimal as a string, with its scale) reads the same, and
    /// the next poll diffs against it.
    #[test]
    fn reads_snapshots_stored_by_earlier_versions() {
        let key = "QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ/p77";
        let stored = format!(
            r#"{{"registered":true,"last_commission":"ia:{key}:2024-05:c1","periods":{{"2024-05":{{"field":"totalcommission","value":"3.10","seq":1,"currency":"GBP","last_commission":"ia:{key}:2024-05:c1"}}}}}}"#
        );
        let snap: Snapshot = serde_json::from_str(&stored).unwrap();
        assert_eq!(snap.periods["2024-05"].value, Amount::parse("3.1").unwrap());
        let same = diff(Some(&snap), &player("3.1"), &cfg()).unwrap();
        assert!(same.events.is_empty() && !same.changed);
        let rise = diff(Some(&snap), &player("3.35"), &cfg()).unwrap();
        assert_eq!(rise.events.len(), 1);
        assert_eq!(rise.events[0].value.unwrap().to_string(), "0.25");
        let json = serde_json::to_value(&rise.snapshot).unwrap();
        assert_eq!(json["periods"]["2024-05"]["value"], "3.35");
    }

    #[test]
    fn periods_are_independent() {
        let c = cfg();
        let may = diff(None, &player("5"), &c).unwrap();
        let mut june = player("1");
        june = ReportRow::new(
            june.fields()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            Some("2024-06".into()),
        );
        let d = diff(Some(&may.snapshot), &june, &c).unwrap();
        assert_eq!(d.events.len(), 1, "no second registration");
        assert_eq!(d.events[0].value.unwrap().to_string(), "1");
        assert!(
            d.events[0]
                .transaction_id
                .as_deref()
                .unwrap()
                .ends_with(":2024-06:c1")
        );
        // May again, unchanged: nothing (an overlapping window).
        let d2 = diff(Some(&d.snapshot), &player("5"), &c).unwrap();
        assert!(d2.events.is_empty());
    }

    #[test]
    fn negative_first_total_is_an_adjustment_of_nothing() {
        let d = diff(None, &player("-0.18"), &cfg()).unwrap();
        assert_eq!(d.events.len(), 2);
        assert_eq!(d.events[1].status, SourceStatus::Reversed);
        assert_eq!(d.events[1].value.unwrap().to_string(), "-0.18");
        assert_eq!(d.events[1].adjusts, None);
    }

    #[test]
    fn currencies() {
        let c = cfg();
        let eur = row(
            "2024-05",
            &[
                ("playerid", "1"),
                ("currencysymbol", "eur"),
                ("totalcommission", "2"),
            ],
        );
        let d = diff(None, &eur, &c).unwrap();
        assert_eq!(d.events[1].currency, Some(Currency::EUR));
        let usd = row(
            "2024-05",
            &[
                ("playerid", "1"),
                ("currencysymbol", "USD"),
                ("totalcommission", "3"),
            ],
        );
        let e = diff(Some(&d.snapshot), &usd, &c).unwrap_err();
        assert_eq!(e.code(), "currency_changed");
        assert_eq!(e.log_code(), ErrorCode::InvalidPayload);
        let none = row("2024-05", &[("playerid", "1"), ("totalcommission", "3")]);
        let d2 = diff(Some(&d.snapshot), &none, &c).unwrap();
        assert_eq!(
            d2.events[0].currency,
            Some(Currency::EUR),
            "remembered currency"
        );
        let pound = row(
            "2024-05",
            &[
                ("playerid", "2"),
                ("currencysymbol", "£"),
                ("totalcommission", "1"),
            ],
        );
        assert_eq!(
            diff(None, &pound, &c).unwrap().events[1].currency,
            Some(Currency::GBP)
        );
        let bad = row(
            "2024-05",
            &[
                ("playerid", "3"),
                ("currencysymbol", "pounds"),
                ("totalcommission", "1"),
            ],
        );
        assert_eq!(diff(None, &bad, &c).unwrap_err().code(), "invalid_currency");
    }

    #[test]
    fn row_errors() {
        let c = cfg();
        let bad = row("2024-05", &[("playerid", "1"), ("totalcommission", "1e5")]);
        let e = diff(None, &bad, &c).unwrap_err();
        assert_eq!(e.code(), "invalid_amount");
        assert_eq!(e.log_code(), ErrorCode::InvalidPayload);
        let missing = row("2024-05", &[("playerid", "1")]);
        assert_eq!(
            diff(None, &missing, &c).unwrap_err().code(),
            "missing_value_field"
        );
        let anon = row("2024-05", &[("totalcommission", "1")]);
        let e = diff(None, &anon, &c).unwrap_err();
        assert_eq!(e.log_code(), ErrorCode::MissingClickId);
        let no_day = ReportRow::new(
            vec![
                ("playerid".into(), "1".into()),
                ("totalcommission".into(), "1".into()),
            ],
            None,
        );
        assert_eq!(
            diff(None, &no_day, &c).unwrap_err().code(),
            "missing_period"
        );
        // Blank value = 0.
        let blank = row("2024-05", &[("playerid", "1"), ("totalcommission", "")]);
        assert_eq!(diff(None, &blank, &c).unwrap().events.len(), 1);
        // Registration-only configuration.
        let reg_only = DeltaConfig::new(None, c.observed_at);
        assert_eq!(diff(None, &missing, &reg_only).unwrap().events.len(), 1);
    }

    #[test]
    fn empty_click_id_still_produces_events() {
        let r = row(
            "2024-05",
            &[
                ("affcustomid", ""),
                ("playerid", "9"),
                ("totalcommission", "4"),
            ],
        );
        let d = diff(None, &r, &cfg()).unwrap();
        assert_eq!(d.events.len(), 2);
        assert!(d.events.iter().all(|e| e.click_id.is_none()));
    }

    #[test]
    fn acid_rows_without_player() {
        let mut c = cfg();
        c.value_field = Some("Commission".into());
        // Gala Partners' example row: no player, no registration count.
        let gala = row(
            "2024-05",
            &[
                ("affcustomid", "QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ"),
                ("Commission", "1.02"),
                ("clicks", "0"),
            ],
        );
        let d = diff(None, &gala, &c).unwrap();
        assert_eq!(d.key, "QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ/-");
        assert_eq!(d.events.len(), 2);
        // ACIDReport: clicks only, no download yet -> no registration.
        let clicks = row(
            "2024-05",
            &[
                ("affcustomid", "abcdefghijklmnop"),
                ("downloads", "0"),
                ("Commission", "0"),
            ],
        );
        let d = diff(None, &clicks, &c).unwrap();
        assert!(d.events.is_empty());
        assert!(!d.snapshot.registered);
        assert!(d.changed, "the period is remembered");
        let signed_up = row(
            "2024-05",
            &[
                ("affcustomid", "abcdefghijklmnop"),
                ("downloads", "1"),
                ("Commission", "0"),
            ],
        );
        let d2 = diff(Some(&d.snapshot), &signed_up, &c).unwrap();
        assert_eq!(d2.events.len(), 1);
        assert_eq!(d2.events[0].source_event, "registration");
        let d3 = diff(Some(&d2.snapshot), &signed_up, &c).unwrap();
        assert!(d3.events.is_empty());
    }

    #[test]
    fn value_field_change_rebases() {
        let c = cfg();
        let d = diff(None, &player("10"), &c).unwrap();
        let mut c2 = cfg();
        c2.value_field = Some("Commission".into());
        let r = row(
            "2024-05",
            &[
                ("playerid", "77"),
                ("affcustomid", "QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ"),
                ("Commission", "4"),
            ],
        );
        let d2 = diff(Some(&d.snapshot), &r, &c2).unwrap();
        assert!(d2.events.is_empty());
        assert_eq!(d2.snapshot.periods["2024-05"].field, "commission");
    }

    #[test]
    fn old_periods_are_forgotten() {
        let mut c = cfg();
        c.max_periods = 2;
        let mut snap: Option<Snapshot> = None;
        for p in ["2024-01", "2024-02", "2024-03"] {
            let r = row(p, &[("playerid", "1"), ("totalcommission", "1")]);
            snap = Some(diff(snap.as_ref(), &r, &c).unwrap().snapshot);
        }
        let s = snap.unwrap();
        assert_eq!(s.periods.len(), 2);
        assert_eq!(s.settled_before.as_deref(), Some("2024-02"));
        let old = row("2024-01", &[("playerid", "1"), ("totalcommission", "9")]);
        let d = diff(Some(&s), &old, &c).unwrap();
        assert!(d.events.is_empty());
        assert!(!d.changed);
    }
}
