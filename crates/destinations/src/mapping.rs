//! Per-destination event mapping: which of our conversion events (`Lead`,
//! `Purchase`, custom names) a destination wants, and under which platform
//! name (Meta `event_name`, TikTok `event`, GA4 event name, Google
//! conversion action).
//!
//! `event_mapping` is a JSON object `{"<our event>": "<platform name>" |
//! null}`; `null` (or `false`) means "do not send this event". The key `*`
//! applies to every event without its own entry (`{"*": null}` sends only the
//! listed ones). Keys match case-insensitively, ignoring `_`, `-` and spaces.
//! Events without an entry get the kind's default (see [`default_event`]).
//! For Google Ads the values are conversion actions, like
//! `settings.conversion_actions`, which they override.

use clicktrail_domain::mapping::normalise_name;
use serde_json::{Map, Value};

use crate::config::{Destination, FieldError, Platform, conversion_action};
use crate::kind::DestinationKind;

/// What a destination sends for one of our events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedEvent {
    /// Platform event name, for `OutboundConversion::event_name`. For Google
    /// Ads (which has no event names) our event name.
    pub event_name: String,
    /// Google Ads: `customers/{cid}/conversionActions/{id}`, for
    /// `OutboundConversion::conversion_action`.
    pub conversion_action: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: String,
    normalised: String,
    target: Option<String>,
}

/// A validated `event_mapping`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct EventMap {
    entries: Vec<Entry>,
}

/// Our event names: 1 to 40 letters, digits or `_`, starting with a letter
/// (the domain's rule for mapped events).
pub fn is_our_event_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
}

/// Event names GA4 reserves for itself (Measurement Protocol reference).
pub const GA4_RESERVED_EVENT_NAMES: &[&str] = &[
    "ad_activeview",
    "ad_click",
    "ad_exposure",
    "ad_impression",
    "ad_query",
    "ad_reward",
    "adunit_exposure",
    "app_background",
    "app_clear_data",
    "app_exception",
    "app_install",
    "app_remove",
    "app_store_refund",
    "app_store_subscription_cancel",
    "app_store_subscription_convert",
    "app_store_subscription_renew",
    "app_update",
    "app_upgrade",
    "dynamic_link_app_open",
    "dynamic_link_app_update",
    "dynamic_link_first_open",
    "error",
    "first_open",
    "first_visit",
    "in_app_purchase",
    "notification_dismiss",
    "notification_foreground",
    "notification_open",
    "notification_receive",
    "os_update",
    "session_start",
    "session_start_with_rollout",
    "user_engagement",
];

/// Prefixes GA4 reserves for event and parameter names.
pub const GA4_RESERVED_PREFIXES: &[&str] = &["_", "firebase_", "ga_", "google_", "gtag."];

/// Why a name is not a valid GA4 event or parameter name, if it is not:
/// up to 40 characters, letters, digits and `_`, starting with a letter, no
/// reserved prefix (and, for events, not a reserved name).
pub fn ga4_name_problem(name: &str, is_event: bool) -> Option<&'static str> {
    if name.is_empty() || name.chars().count() > 40 {
        return Some("must be 1 to 40 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Some("may hold only letters, digits and _");
    }
    if !name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic()) {
        return Some("must start with a letter");
    }
    let lower = name.to_ascii_lowercase();
    if GA4_RESERVED_PREFIXES.iter().any(|p| lower.starts_with(p)) {
        return Some("uses a prefix GA4 reserves (firebase_, ga_, google_)");
    }
    if is_event && GA4_RESERVED_EVENT_NAMES.contains(&name) {
        return Some("is an event name GA4 reserves");
    }
    None
}

/// The platform name of one of our events when the user mapped nothing.
/// Google Ads has no default: only events with a conversion action go.
pub fn default_event(kind: DestinationKind, our_event: &str) -> Option<String> {
    let n = normalise_name(our_event);
    let known = |name: &str| Some(name.to_owned());
    match kind {
        DestinationKind::GoogleAds => None,
        // Meta's standard events carry our names; custom names pass as
        // custom events.
        DestinationKind::MetaCapi => Some(our_event.to_owned()),
        DestinationKind::Tiktok => match n.as_str() {
            // An affiliate "lead" is a sign-up at the advertiser.
            "lead" | "completeregistration" => known("CompleteRegistration"),
            "purchase" => known("Purchase"),
            _ => Some(our_event.to_owned()),
        },
        DestinationKind::Ga4 => match n.as_str() {
            "lead" => known("generate_lead"),
            "purchase" => known("purchase"),
            "completeregistration" => known("sign_up"),
            _ => Some(our_event.to_owned()),
        },
    }
}

impl EventMap {
    pub(crate) fn parse(
        kind: DestinationKind,
        value: &Value,
        customer_id: Option<&str>,
        errors: &mut Vec<FieldError>,
    ) -> Self {
        let map: &Map<String, Value> = match value {
            Value::Null => return Self::default(),
            Value::Object(m) => m,
            _ => {
                errors.push(FieldError::new(
                    "event_mapping",
                    "invalid_type",
                    "must be an object: our event name -> platform event name or null",
                ));
                return Self::default();
            }
        };
        if map.len() > 100 {
            errors.push(FieldError::new(
                "event_mapping",
                "too_many_entries",
                "at most 100 entries",
            ));
            return Self::default();
        }
        let mut entries: Vec<Entry> = Vec::new();
        for (key, v) in map {
            let field = format!("event_mapping.{key}");
            if key != "*" && !is_our_event_name(key) {
                errors.push(FieldError::new(
                    field,
                    "invalid_event_name",
                    "event names are 1 to 40 letters, digits or _, starting with a letter (or * for all others)",
                ));
                continue;
            }
            let normalised = if key == "*" {
                "*".to_owned()
            } else {
                normalise_name(key)
            };
            if entries.iter().any(|e| e.normalised == normalised) {
                errors.push(FieldError::new(
                    field,
                    "invalid_event_name",
                    "listed twice (names are matched case-insensitively)",
                ));
                continue;
            }
            let target = match v {
                Value::Null | Value::Bool(false) => None,
                Value::String(s) => match check_target(kind, s.trim(), customer_id) {
                    Ok(t) => Some(t),
                    Err((code, msg)) => {
                        errors.push(FieldError::new(field, code, msg));
                        continue;
                    }
                },
                _ => {
                    errors.push(FieldError::new(
                        field,
                        "invalid_type",
                        "must be a string, or null to not send this event",
                    ));
                    continue;
                }
            };
            entries.push(Entry {
                key: key.clone(),
                normalised,
                target,
            });
        }
        Self { entries }
    }

    pub(crate) fn has_targets(&self) -> bool {
        self.entries.iter().any(|e| e.target.is_some())
    }

    /// `Some(None)`: explicitly not sent; `Some(Some(t))`: mapped; `None`:
    /// no entry of its own.
    fn exact(&self, our_event: &str) -> Option<Option<&str>> {
        let n = normalise_name(our_event);
        self.entries
            .iter()
            .find(|e| e.normalised == n)
            .map(|e| e.target.as_deref())
    }

    fn wildcard(&self) -> Option<Option<&str>> {
        self.entries
            .iter()
            .find(|e| e.normalised == "*")
            .map(|e| e.target.as_deref())
    }

    pub(crate) fn to_json(&self) -> Value {
        Value::Object(
            self.entries
                .iter()
                .map(|e| {
                    (
                        e.key.clone(),
                        e.target.clone().map_or(Value::Null, Value::String),
                    )
                })
                .collect(),
        )
    }
}

fn check_target(
    kind: DestinationKind,
    target: &str,
    customer_id: Option<&str>,
) -> Result<String, (&'static str, String)> {
    match kind {
        DestinationKind::GoogleAds => conversion_action(target, customer_id).ok_or((
            "invalid_conversion_action",
            "expected customers/{customer_id}/conversionActions/{id} or the numeric id".to_owned(),
        )),
        DestinationKind::Ga4 => match ga4_name_problem(target, true) {
            None => Ok(target.to_owned()),
            Some(p) => Err(("invalid_event_name", format!("a GA4 event name {p}"))),
        },
        DestinationKind::MetaCapi | DestinationKind::Tiktok => {
            if target.is_empty()
                || target.chars().count() > 100
                || target.chars().any(char::is_control)
            {
                Err((
                    "invalid_event_name",
                    "an event name is 1 to 100 printable characters".to_owned(),
                ))
            } else {
                Ok(target.to_owned())
            }
        }
    }
}

impl Destination {
    /// What this destination sends for our conversion event `our_event`, or
    /// `None` when it does not want it (then no delivery row is created).
    pub fn map_event(&self, our_event: &str) -> Option<MappedEvent> {
        let google = match &self.platform {
            Platform::GoogleAds(g) => Some(g),
            _ => None,
        };
        let target = match self.mapping.exact(our_event) {
            Some(t) => t.map(str::to_owned),
            None => {
                let listed = google.and_then(|g| {
                    let n = normalise_name(our_event);
                    g.conversion_actions
                        .iter()
                        .find(|(k, _)| normalise_name(k) == n)
                        .map(|(_, v)| v.clone())
                });
                match (listed, self.mapping.wildcard()) {
                    (Some(action), _) => Some(action),
                    (None, Some(t)) => t.map(str::to_owned),
                    (None, None) => default_event(self.kind, our_event),
                }
            }
        }?;
        Some(match google {
            Some(_) => MappedEvent {
                event_name: our_event.to_owned(),
                conversion_action: Some(target),
            },
            None => MappedEvent {
                event_name: target,
                conversion_action: None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::validate;

    fn dest(kind: DestinationKind, mapping: Value) -> Destination {
        let (settings, creds) = match kind {
            DestinationKind::MetaCapi => (
                json!({"pixel_id": "123456"}),
                json!({"access_token": "tok"}),
            ),
            DestinationKind::Tiktok => (
                json!({"pixel_code": "CABC123"}),
                json!({"access_token": "tok"}),
            ),
            DestinationKind::Ga4 => (
                json!({"measurement_id": "G-ABCDEF"}),
                json!({"api_secret": "sec"}),
            ),
            DestinationKind::GoogleAds => (
                json!({"customer_id": "1234567890", "conversion_actions": {"Lead": "111", "Purchase": "222"}}),
                json!({"developer_token": "d", "client_id": "c", "client_secret": "s", "refresh_token": "r"}),
            ),
        };
        validate(kind, &settings, &creds, &mapping).unwrap()
    }

    fn name(d: &Destination, ev: &str) -> Option<String> {
        d.map_event(ev)
            .map(|m| m.conversion_action.unwrap_or(m.event_name))
    }

    #[test]
    fn defaults() {
        let m = dest(DestinationKind::MetaCapi, Value::Null);
        assert_eq!(name(&m, "Lead").as_deref(), Some("Lead"));
        assert_eq!(name(&m, "Purchase").as_deref(), Some("Purchase"));
        assert_eq!(name(&m, "FirstDeposit").as_deref(), Some("FirstDeposit"));
        let t = dest(DestinationKind::Tiktok, Value::Null);
        assert_eq!(name(&t, "Lead").as_deref(), Some("CompleteRegistration"));
        assert_eq!(name(&t, "purchase").as_deref(), Some("Purchase"));
        let g = dest(DestinationKind::Ga4, Value::Null);
        assert_eq!(name(&g, "Lead").as_deref(), Some("generate_lead"));
        assert_eq!(name(&g, "Purchase").as_deref(), Some("purchase"));
        assert_eq!(name(&g, "CompleteRegistration").as_deref(), Some("sign_up"));
        let ga = dest(DestinationKind::GoogleAds, Value::Null);
        assert_eq!(
            name(&ga, "lead").as_deref(),
            Some("customers/1234567890/conversionActions/111")
        );
        assert_eq!(ga.map_event("Lead").unwrap().event_name, "Lead");
        assert_eq!(name(&ga, "FirstDeposit"), None);
    }

    #[test]
    fn user_mapping_and_wildcard() {
        let m = dest(
            DestinationKind::MetaCapi,
            json!({"Lead": "CompleteRegistration", "Purchase": null}),
        );
        assert_eq!(name(&m, "lead").as_deref(), Some("CompleteRegistration"));
        assert_eq!(name(&m, "Purchase"), None);
        assert_eq!(name(&m, "Other").as_deref(), Some("Other"));
        let only = dest(
            DestinationKind::Tiktok,
            json!({"Purchase": "Purchase", "*": null}),
        );
        assert_eq!(name(&only, "Lead"), None);
        assert_eq!(name(&only, "Purchase").as_deref(), Some("Purchase"));
        // Google: event_mapping overrides, conversion_actions beats the wildcard.
        let g = dest(
            DestinationKind::GoogleAds,
            json!({"Purchase": "333", "*": null, "Deposit": false}),
        );
        assert_eq!(
            name(&g, "Purchase").as_deref(),
            Some("customers/1234567890/conversionActions/333")
        );
        assert_eq!(
            name(&g, "Lead").as_deref(),
            Some("customers/1234567890/conversionActions/111")
        );
        assert_eq!(name(&g, "Deposit"), None);
        assert_eq!(name(&g, "Other"), None);
        assert_eq!(
            g.event_mapping_json(),
            json!({"*": null, "Deposit": null, "Purchase": "customers/1234567890/conversionActions/333"})
        );
    }

    #[test]
    fn invalid_mappings() {
        let mut errors = Vec::new();
        EventMap::parse(
            DestinationKind::Ga4,
            &json!({"Lead": "generate lead", "Purchase": "session_start", "Other": "google_x", "bad key": "x", "lead": "y"}),
            None,
            &mut errors,
        );
        let fields: Vec<_> = errors.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert!(
            fields.contains(&("event_mapping.Lead", "invalid_event_name")),
            "{fields:?}"
        );
        assert!(
            fields.contains(&("event_mapping.Purchase", "invalid_event_name")),
            "{fields:?}"
        );
        assert!(
            fields.contains(&("event_mapping.Other", "invalid_event_name")),
            "{fields:?}"
        );
        assert!(
            fields.contains(&("event_mapping.bad key", "invalid_event_name")),
            "{fields:?}"
        );
        assert_eq!(errors.len(), 4, "{fields:?}");
        let mut errors = Vec::new();
        EventMap::parse(
            DestinationKind::GoogleAds,
            &json!({"Lead": "nope"}),
            Some("1234567890"),
            &mut errors,
        );
        assert_eq!(errors[0].code, "invalid_conversion_action");
    }

    #[test]
    fn ga4_names() {
        assert_eq!(ga4_name_problem("generate_lead", true), None);
        assert!(ga4_name_problem("1st", true).is_some());
        assert!(ga4_name_problem(&"a".repeat(41), true).is_some());
        assert!(ga4_name_problem("first_open", true).is_some());
        assert_eq!(ga4_name_problem("error", false), None);
        assert!(ga4_name_problem("ga_param", false).is_some());
    }
}
