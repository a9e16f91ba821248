//! The conversion log service: a property's conversions, newest first,
//! each with its outcome, attribution and deliveries; filters and cursor.

use std::collections::HashMap;
use std::sync::Arc;

use clicktrail_domain::PropertyId;
use clicktrail_domain::conversion::{ErrorCode, LogStatus};
use clicktrail_domain::money::Amount;
use clicktrail_store::Db;
use clicktrail_store::conversions::{self, LogEntry, LogFilter};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::delivery::deliveries_for_conversions;
use crate::error::{FieldProblem, ServiceError, ServiceResult};
use crate::properties::Properties;

/// The conversion log service.
#[derive(Debug)]
pub struct ConversionLog {
    db: Db,
    properties: Arc<Properties>,
}

impl ConversionLog {
    pub fn new(db: Db, properties: Arc<Properties>) -> Self {
        Self { db, properties }
    }

    /// The caller's property's conversion log.
    pub async fn list(
        &self,
        caller: &Caller,
        property_id: &str,
        q: &LogQuery,
    ) -> ServiceResult<Value> {
        let p = self.properties.owned(caller, property_id).await?;
        let f = filter_of(q)?;
        log_page(&self.db, &p.id, &f).await
    }

    /// One of the caller's conversions.
    pub async fn get(&self, caller: &Caller, id: &str) -> ServiceResult<Value> {
        let e = conversions::get(&self.db, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("conversion"))?;
        self.properties
            .owned(caller, &e.property_id)
            .await
            .map_err(|_| ServiceError::not_found("conversion"))?;
        let mut deliveries = delivery_views(&self.db, std::slice::from_ref(&e.id)).await?;
        Ok(entry_json(
            &e,
            deliveries.remove(&e.id).unwrap_or(Value::Array(vec![])),
        ))
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    pub status: Option<String>,
    pub error_code: Option<String>,
    pub integration: Option<String>,
    /// ms since epoch, or RFC 3339.
    pub from: Option<String>,
    pub to: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

fn time_param(field: &str, v: &Option<String>) -> Result<Option<i64>, FieldProblem> {
    let Some(s) = v.as_deref().filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(Some(ms));
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| Some(t.timestamp_millis()))
        .or_else(|_| {
            chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").map(|d| {
                d.and_hms_opt(0, 0, 0)
                    .map(|t| t.and_utc().timestamp_millis())
            })
        })
        .map_err(|_| FieldProblem {
            field: field.into(),
            code: "invalid_time".into(),
            message: "ms since epoch, RFC 3339, or YYYY-MM-DD".into(),
        })
}

/// Parses the log's query into a store filter.
pub fn filter_of(q: &LogQuery) -> ServiceResult<LogFilter> {
    let mut problems = Vec::new();
    let status = match q.status.as_deref().map(|s| (s, LogStatus::parse(s))) {
        None => None,
        Some((_, Some(s))) => Some(s),
        Some((_, None)) => {
            problems.push(FieldProblem {
                field: "status".into(),
                code: "invalid_option".into(),
                message: "validated, error, adjustment or ignored".into(),
            });
            None
        }
    };
    if let Some(c) = &q.error_code
        && ErrorCode::parse(c).is_none()
    {
        problems.push(FieldProblem {
            field: "error_code".into(),
            code: "invalid_option".into(),
            message: "one of the conversion log's error codes".into(),
        });
    }
    let from = time_param("from", &q.from)
        .map_err(|p| problems.push(p))
        .ok()
        .flatten();
    let to = time_param("to", &q.to)
        .map_err(|p| problems.push(p))
        .ok()
        .flatten();
    let before = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => match c
            .split_once('.')
            .and_then(|(ts, id)| Some((ts.parse::<i64>().ok()?, id.to_owned())))
        {
            Some(x) => Some(x),
            None => {
                problems.push(FieldProblem {
                    field: "cursor".into(),
                    code: "invalid_cursor".into(),
                    message: "use next_cursor as given".into(),
                });
                None
            }
        },
    };
    if !problems.is_empty() {
        return Err(ServiceError::validation(problems));
    }
    Ok(LogFilter {
        status,
        error_code: q.error_code.clone(),
        integration_id: q.integration.clone(),
        from,
        to,
        before,
        limit: q.limit.unwrap_or(50).clamp(1, 500),
    })
}

/// An amount as the API answers it: a JSON number (`12.5`), the one place
/// its answers hold a float.
fn amount(a: Option<Amount>) -> Value {
    a.map_or(Value::Null, |a| json!(a.to_f64()))
}

/// A log entry as the API shows it.
pub fn entry_json(e: &LogEntry, deliveries: Value) -> Value {
    let hint = e
        .error_code
        .as_deref()
        .and_then(ErrorCode::parse)
        .map(ErrorCode::hint);
    json!({
        "id": e.id,
        "status": e.status,
        "error_code": e.error_code,
        "error_detail": e.error_detail,
        "hint": hint,
        "source_kind": e.source_kind,
        "source_event": e.source_event,
        "source_status": e.source_status,
        "event_name": e.event_name,
        "event_id": e.event_id,
        "transaction_id": e.transaction_id,
        "duplicate_of": e.duplicate_of,
        "adjusts": e.adjusts_id,
        "value": amount(e.value),
        "adjusted_value": if e.adjusted.is_zero() { Value::Null } else { amount(e.value.map(|v| v.saturating_add(e.adjusted))) },
        "currency": e.currency,
        "click_id": e.click_id,
        "click_ts": e.click_ts,
        "integration_id": e.integration_id,
        "occurred_at": e.occurred_at,
        "received_at": e.received_at,
        "send_to_destinations": e.send_to_destinations,
        "attribution": {
            "session_id": e.session_id,
            "visitor_id": e.visitor_id,
            "channel": e.channel,
            "source": e.source,
            "medium": e.medium,
            "campaign": e.campaign,
            "ad": e.ad,
            "landing_page": e.landing_page,
            "tracking_group": e.link_group,
            "offer": e.offer,
            "is_bot": e.is_bot,
            "first_click": {
                "session_id": e.first_session_id,
                "channel": e.first_channel,
                "source": e.first_source,
                "medium": e.first_medium,
                "campaign": e.first_campaign,
                "ad": e.first_ad,
                "landing_page": e.first_landing_page,
            },
        },
        "raw": serde_json::from_str::<Value>(&e.raw).unwrap_or(Value::String(e.raw.clone())),
        "deliveries": deliveries,
    })
}

/// Each conversion's deliveries with their attempts, as JSON by
/// conversion id.
async fn delivery_views(
    db: &Db,
    conversion_ids: &[String],
) -> ServiceResult<HashMap<String, Value>> {
    let views = deliveries_for_conversions(db, conversion_ids).await?;
    views
        .into_iter()
        .map(|(k, v)| Ok((k, serde_json::to_value(v).map_err(ServiceError::internal)?)))
        .collect()
}

/// The conversion log of a property with each entry's deliveries.
pub async fn log_page(db: &Db, property: &PropertyId, f: &LogFilter) -> ServiceResult<Value> {
    let entries = conversions::list(db, property, f).await?;
    let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
    let mut deliveries = delivery_views(db, &ids).await?;
    let items: Vec<Value> = entries
        .iter()
        .map(|e| entry_json(e, deliveries.remove(&e.id).unwrap_or(Value::Array(vec![]))))
        .collect();
    let next = (entries.len() as i64 == f.limit)
        .then(|| {
            entries
                .last()
                .map(|e| format!("{}.{}", e.received_at, e.id))
        })
        .flatten();
    Ok(json!({ "conversions": items, "next_cursor": next }))
}
