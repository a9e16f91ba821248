//! Event mapping: how a network's event (`registration`, `commission`, a
//! postback's `event` value) becomes one of our conversion events (`Lead`,
//! `Purchase`, a custom name) or is ignored, where its value comes from, and
//! whether it is forwarded to the ad destinations.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a source event becomes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingRule {
    /// The conversion event name (`Lead`, `Purchase`, `CompleteRegistration`,
    /// a custom name), or `None` to ignore the source event.
    #[serde(default)]
    pub event: Option<String>,
    /// Where the value comes from.
    #[serde(default)]
    pub value: ValueSource,
    /// Forward to the property's ad destinations.
    #[serde(default = "yes")]
    pub send_to_destinations: bool,
}

fn yes() -> bool {
    true
}

/// Where a conversion's value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "from", deny_unknown_fields)]
pub enum ValueSource {
    /// The value the network reported (commission, payout...).
    #[default]
    Reported,
    /// A fixed value in the given currency (e.g. a CPA deal):
    /// `{"from": "fixed", "amount": "25", "currency": "EUR"}`.
    Fixed(crate::money::Money),
    /// No value (e.g. a free registration).
    None,
}

/// An integration's mapping: source event name -> rule. Names are matched
/// case-insensitively with `_`, `-` and spaces ignored; the key `*` applies
/// to any event without its own entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct EventMapping(pub BTreeMap<String, MappingRule>);

/// Normalises a parameter or event name for matching: lower case, with `_`,
/// `-` and whitespace removed (`Conversion_Type` == `conversiontype`).
pub fn normalise_name(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, '_' | '-') && !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The outcome of mapping one source event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped<'a> {
    /// Becomes this conversion event under this rule.
    Event {
        name: &'a str,
        rule: &'a MappingRule,
    },
    /// The rule says to ignore it.
    Ignored,
    /// No rule for it: the conversion log's `unmapped_event`.
    Unmapped,
}

impl EventMapping {
    pub fn map(&self, source_event: &str) -> Mapped<'_> {
        let wanted = normalise_name(source_event);
        let rule = self
            .0
            .iter()
            .find(|(k, _)| normalise_name(k) == wanted)
            .or_else(|| self.0.iter().find(|(k, _)| k.as_str() == "*"))
            .map(|(_, r)| r);
        match rule {
            None => Mapped::Unmapped,
            Some(r) => match r.event.as_deref() {
                None | Some("") => Mapped::Ignored,
                Some(name) => Mapped::Event { name, rule: r },
            },
        }
    }

    /// Checks names: event names 1..=40 chars of letters, digits, `_`, and
    /// at most 100 entries.
    pub fn validate(&self) -> Result<(), String> {
        if self.0.len() > 100 {
            return Err("an event mapping holds at most 100 entries".into());
        }
        for (k, r) in &self.0 {
            if k.is_empty() || k.len() > 100 {
                return Err(format!(
                    "source event name {k:?} must be 1 to 100 characters"
                ));
            }
            if let Some(e) = &r.event {
                let ok = !e.is_empty()
                    && e.len() <= 40
                    && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && e.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
                if !ok {
                    return Err(format!(
                        "event name {e:?} for {k:?} must be 1 to 40 letters, digits or _, starting with a letter"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> EventMapping {
        serde_json::from_value(serde_json::json!({
            "registration": {"event": "Lead", "value": {"from": "none"}},
            "commission": {"event": "Purchase"},
            "test": {"event": null},
        }))
        .unwrap()
    }

    #[test]
    fn maps_case_insensitively() {
        let m = mapping();
        assert!(matches!(
            m.map("Registration"),
            Mapped::Event { name: "Lead", .. }
        ));
        assert!(matches!(
            m.map("COMMISSION"),
            Mapped::Event {
                name: "Purchase",
                ..
            }
        ));
        assert_eq!(m.map("test"), Mapped::Ignored);
        assert_eq!(m.map("sale"), Mapped::Unmapped);
    }

    #[test]
    fn wildcard() {
        let mut m = mapping();
        m.0.insert(
            "*".into(),
            MappingRule {
                event: Some("Custom".into()),
                value: ValueSource::Reported,
                send_to_destinations: false,
            },
        );
        assert!(matches!(
            m.map("sale"),
            Mapped::Event { name: "Custom", .. }
        ));
    }

    #[test]
    fn validation() {
        assert!(mapping().validate().is_ok());
        let bad: EventMapping =
            serde_json::from_value(serde_json::json!({"x": {"event": "has space"}})).unwrap();
        assert!(bad.validate().is_err());
    }

    /// Mappings are stored as JSON (and come in through the API): a fixed
    /// amount written by `rust_decimal` is a string, one typed by hand may
    /// be a number; both still read, and the stored form is unchanged.
    #[test]
    fn fixed_values_keep_their_stored_form() {
        use crate::money::{Amount, Currency, Money};
        let old = r#"{"cpa":{"event":"Purchase","value":{"from":"fixed","amount":"40.00","currency":"EUR"},"send_to_destinations":true}}"#;
        let m: EventMapping = serde_json::from_str(old).unwrap();
        let forty = Money::new(Amount::parse("40").unwrap(), Currency::EUR);
        assert_eq!(m.0["cpa"].value, ValueSource::Fixed(forty));
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({"cpa": {"event": "Purchase", "value": {"from": "fixed", "amount": "40", "currency": "EUR"}, "send_to_destinations": true}})
        );
        let typed: MappingRule = serde_json::from_value(serde_json::json!(
            {"event": "Purchase", "value": {"from": "fixed", "amount": 12.5, "currency": "usd"}}
        ))
        .unwrap();
        assert_eq!(
            typed.value,
            ValueSource::Fixed(Money::new(Amount::parse("12.5").unwrap(), Currency::USD))
        );
        for bad in [
            serde_json::json!({"from": "fixed", "amount": "x", "currency": "EUR"}),
            serde_json::json!({"from": "fixed", "amount": "1"}),
            serde_json::json!({"from": "fixed", "amount": "1", "currency": "EUR", "extra": 1}),
        ] {
            assert!(
                serde_json::from_value::<ValueSource>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn names() {
        assert_eq!(normalise_name("Conversion_Type"), "conversiontype");
        assert_eq!(normalise_name("trans-id"), "transid");
    }
}
