//! A stored conversion and its click's session, turned into what a
//! destination receives.

use chrono::{DateTime, Utc};
use clicktrail_domain::Currency;
use clicktrail_domain::consent::{self, Consent};
use clicktrail_domain::delivery::{AdIdentifiers, OutboundConversion};
use clicktrail_store::deliveries::ConversionFacts;

use crate::enrich::Enricher;

/// The conversion as one destination receives it. `event_name` and
/// `conversion_action` come from the delivery row (mapped when it was
/// queued). The ids are the conversion's own, so every resend carries the
/// same `event_id` / `orderId` and the platform de-duplicates it.
///
/// The client address goes out only when the property keeps it encrypted:
/// a truncated or hashed address would mislead the platform's matching.
/// The consent is the click's, else the session's, as stored; an anonymous
/// visitor id (an event stored without consent) is never sent.
pub fn outbound_conversion(
    facts: &ConversionFacts,
    event_name: &str,
    conversion_action: Option<&str>,
    enricher: &Enricher,
) -> OutboundConversion {
    let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms);
    let occurred_at = at(facts.occurred_at)
        .or_else(|| at(facts.received_at))
        .unwrap_or_else(Utc::now);
    let clean = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    OutboundConversion {
        conversion_id: facts.conversion_id.clone(),
        event_id: facts.event_id.clone(),
        event_name: event_name.to_owned(),
        conversion_action: conversion_action.map(str::to_owned),
        occurred_at,
        click_at: facts.click_ts.and_then(at),
        value: facts.value,
        currency: facts
            .currency
            .as_deref()
            .and_then(|c| Currency::parse(c).ok()),
        page_url: clean(&facts.page_url),
        referrer: clean(&facts.referrer),
        visitor_id: clean(&facts.visitor_id).filter(|v| !consent::is_anonymous(v)),
        client_ip: facts.ip.as_deref().and_then(|ip| enricher.recover_ip(ip)),
        user_agent: clean(&facts.user_agent),
        ids: AdIdentifiers {
            gclid: clean(&facts.gclid),
            gbraid: clean(&facts.gbraid),
            wbraid: clean(&facts.wbraid),
            fbclid: clean(&facts.fbclid),
            fbc: clean(&facts.fbc),
            fbp: clean(&facts.fbp),
            ttclid: clean(&facts.ttclid),
            ttp: clean(&facts.ttp),
            msclkid: clean(&facts.msclkid),
        },
        hashed_email: clean(&facts.em_hash),
        hashed_phone: clean(&facts.ph_hash),
        consent: Consent::from_code(facts.consent.as_deref()),
    }
}
