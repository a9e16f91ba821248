//! One report row: its fields as received (names matched case-insensitively),
//! its identity (click id + player) and its period.

use clicktrail_domain::conversion::RawPayload;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use sha2::{Digest, Sha256};

use super::settings::day_key;

/// A report row. Field names keep the case the program sent (for the
/// conversion log); every lookup ignores ASCII case, which is what
/// "normalised to lower case" means here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    /// Names are shared between rows (one allocation per report column).
    fields: Vec<(Arc<str>, String)>,
    period: Option<String>,
}

/// How a row names its player; the kinds are kept apart in keys so that a
/// player id never collides with a user name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayerRef<'a> {
    /// `playerid`
    Id(&'a str),
    /// `merchplayername`
    MerchantName(&'a str),
    /// `username`
    UserName(&'a str),
}

impl<'a> PlayerRef<'a> {
    fn tag(self) -> (char, &'a str) {
        match self {
            Self::Id(v) => ('p', v),
            Self::MerchantName(v) => ('m', v),
            Self::UserName(v) => ('u', v),
        }
    }
}

/// Fields that may carry the day of a `reportdisplayby=Date` row. The
/// public client that uses Date reads `period`; the others are guesses.
const DAY_FIELDS: [&str; 4] = ["period", "date", "reportdate", "day"];

impl ReportRow {
    /// A row from `(name, value)` pairs in document order. `period` is the
    /// request's period key, or `None` to read the day from the row.
    pub fn new(fields: Vec<(String, String)>, period: Option<String>) -> Self {
        Self::from_shared(
            fields.into_iter().map(|(k, v)| (Arc::from(k), v)).collect(),
            period,
        )
    }

    /// [`ReportRow::new`] with field names shared with other rows.
    pub fn from_shared(fields: Vec<(Arc<str>, String)>, period: Option<String>) -> Self {
        let mut row = Self { fields, period };
        if row.period.is_none() {
            row.period = DAY_FIELDS
                .iter()
                .find_map(|f| row.get(f))
                .and_then(parse_report_date)
                .map(day_key);
        }
        row
    }

    /// A field's value, by case-insensitive name; the last one wins when a
    /// name is repeated.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A field's trimmed value, `None` when absent or blank.
    pub fn get_nonempty(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// The fields as received, in document order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (&**k, v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The row as a JSON object of strings with the names as received: the
    /// raw payload of the conversion log.
    pub fn raw(&self) -> RawPayload {
        RawPayload::from_fields(self.fields.iter().map(|(k, v)| (&**k, v.as_str())))
    }

    /// `rowid` 2 marks the totals row of a report.
    pub fn is_totals(&self) -> bool {
        self.get_nonempty("rowid") == Some("2")
    }

    /// `affcustomid` (our click id), trimmed; `None` when blank.
    pub fn affcustomid(&self) -> Option<&str> {
        self.get_nonempty("affcustomid")
    }

    /// The player: `playerid`, else `merchplayername`, else `username`.
    pub fn player(&self) -> Option<PlayerRef<'_>> {
        if let Some(v) = self.get_nonempty("playerid") {
            return Some(PlayerRef::Id(v));
        }
        if let Some(v) = self.get_nonempty("merchplayername") {
            return Some(PlayerRef::MerchantName(v));
        }
        self.get_nonempty("username").map(PlayerRef::UserName)
    }

    /// The period this row's totals cover: the month of the request
    /// (`2024-05`) or the row's own day (`2024-05-03`).
    pub fn period(&self) -> Option<&str> {
        self.period.as_deref()
    }

    /// The key its snapshot is stored under (per integration): the click id
    /// and the player, `<affcustomid>/<p|m|u><player>` or `<affcustomid>/-`
    /// for rows without a player. `None` when the row has neither.
    pub fn snapshot_key(&self) -> Option<String> {
        let acid = self.affcustomid();
        let player = self.player();
        if acid.is_none() && player.is_none() {
            return None;
        }
        let mut key = key_part(acid.unwrap_or(""));
        key.push('/');
        match player {
            Some(p) => {
                let (tag, v) = p.tag();
                key.push(tag);
                key.push_str(&key_part(v));
            }
            None => key.push('-'),
        }
        Some(key)
    }
}

/// A key component: kept as is when short and URL-safe (click ids are),
/// else a hash, so keys and transaction ids stay short and printable.
fn key_part(s: &str) -> String {
    let safe = s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if safe {
        s.to_owned()
    } else {
        let digest = Sha256::digest(s.as_bytes());
        format!("~{}", hex::encode(&digest[..12]))
    }
}

/// Parses the dates reports carry: `mm/dd/yyyy` (registrationdate), also
/// `yyyy-mm-dd` and `yyyy/mm/dd`, optionally followed by a time.
pub fn parse_report_date(value: &str) -> Option<NaiveDate> {
    let v = value.trim();
    let date_part = v
        .split(|c: char| c.is_whitespace() || c == 'T')
        .next()
        .unwrap_or("");
    ["%m/%d/%Y", "%Y-%m-%d", "%Y/%m/%d", "%m-%d-%Y"]
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(date_part, f).ok())
}

/// When a registration dated `value` happened, as the latest instant the
/// date allows: the day's end in the earliest time zone (UTC-12), so a
/// same-day registration never looks earlier than its click. Clamped to
/// `observed_at`, because it cannot be later than when we learned of it.
/// When the value carries a time we still cannot know its zone, so the same
/// bound applies to the time plus 12 hours.
pub fn registration_time(value: &str, observed_at: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let v = value.trim();
    let has_time = v.contains(|c: char| c.is_whitespace() || c == 'T');
    let latest_local = has_time
        .then(|| parse_report_datetime(v))
        .flatten()
        .or_else(|| {
            parse_report_date(v).and_then(|d| {
                d.and_time(NaiveTime::MIN)
                    .checked_add_signed(TimeDelta::days(1) - TimeDelta::seconds(1))
            })
        })?;
    let latest_utc = latest_local
        .checked_add_signed(TimeDelta::hours(12))?
        .and_utc();
    Some(latest_utc.min(observed_at))
}

fn parse_report_datetime(v: &str) -> Option<NaiveDateTime> {
    [
        "%m/%d/%Y %I:%M:%S %p",
        "%m/%d/%Y %H:%M:%S",
        "%m/%d/%Y %H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y/%m/%d %H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(v, f).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, &str)]) -> ReportRow {
        ReportRow::new(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            Some("2024-05".into()),
        )
    }

    #[test]
    fn case_insensitive_fields() {
        let r = row(&[
            ("RowID", "1"),
            ("AffCustomId", " abc "),
            ("TotalCommission", "1.5"),
        ]);
        assert_eq!(r.get("rowid"), Some("1"));
        assert_eq!(r.get("TOTALCOMMISSION"), Some("1.5"));
        assert_eq!(r.affcustomid(), Some("abc"));
        assert_eq!(r.raw().value()["AffCustomId"], " abc ");
        assert!(!r.is_totals());
        assert!(row(&[("rowid", "2")]).is_totals());
    }

    #[test]
    fn identity() {
        let r = row(&[
            ("affcustomid", "QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ"),
            ("playerid", "77"),
        ]);
        assert_eq!(
            r.snapshot_key().unwrap(),
            "QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ/p77"
        );
        let r = row(&[("affcustomid", ""), ("merchplayername", "bob")]);
        assert_eq!(r.snapshot_key().unwrap(), "/mbob");
        let r = row(&[("affcustomid", "x"), ("username", "u"), ("playerid", " ")]);
        assert_eq!(r.snapshot_key().unwrap(), "x/uu");
        let r = row(&[("affcustomid", "abc")]);
        assert_eq!(r.snapshot_key().unwrap(), "abc/-");
        assert!(row(&[("clicks", "1")]).snapshot_key().is_none());
        let weird = row(&[("affcustomid", "a b/c:d"), ("playerid", "1")]);
        let k = weird.snapshot_key().unwrap();
        assert!(
            k.starts_with('~') && k.ends_with("/p1") && k.len() < 40,
            "{k}"
        );
        assert_ne!(
            k,
            row(&[("affcustomid", "a b/c:e"), ("playerid", "1")])
                .snapshot_key()
                .unwrap()
        );
    }

    #[test]
    fn day_rows() {
        let r = ReportRow::new(vec![("Period".into(), "05/03/2024".into())], None);
        assert_eq!(r.period(), Some("2024-05-03"));
        let r = ReportRow::new(vec![("date".into(), "2024-05-04 00:00:00".into())], None);
        assert_eq!(r.period(), Some("2024-05-04"));
        let r = ReportRow::new(vec![("period".into(), "May".into())], None);
        assert_eq!(r.period(), None);
    }

    #[test]
    fn registration_times() {
        let now = "2024-06-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let t = registration_time("05/03/2024", now).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-04T11:59:59+00:00");
        let t = registration_time("05/31/2024", now).unwrap();
        assert_eq!(t, now);
        let t = registration_time("05/03/2024 10:00:00 PM", now).unwrap();
        assert_eq!(t.to_rfc3339(), "2024-05-04T10:00:00+00:00");
        assert!(registration_time("13/45/2024", now).is_none());
        assert!(registration_time("", now).is_none());
    }
}
