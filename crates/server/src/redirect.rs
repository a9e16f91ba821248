//! Direct linking: `GET /go/{slug}` records a session (utm and ad click ids
//! of the `/go` URL, referrer, user agent) and a click through the same
//! ingest pipeline as the tag, then sends the visitor on to the offer with
//! the subid set to the click id.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{HeaderMap, header};
use clicktrail_domain::clickid;
use clicktrail_domain::collect::{CollectedEvent, EventName, Link};
use clicktrail_domain::ids::random_token;
use clicktrail_domain::links::{find_group, tag_href};
use clicktrail_domain::{EventId, PropertyId, VisitorId};
use clicktrail_store::ingest::{ClickOrigin, IngestEvent};
use clicktrail_store::links::{self, TrackedLink};

use crate::enrich;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Where to send the visitor, and the visitor cookie to set.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub location: String,
    pub set_cookie: Option<String>,
}

const VISITOR_COOKIE: &str = "_ctv";

fn visitor_from_cookie(headers: &HeaderMap) -> Option<VisitorId> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == VISITOR_COOKIE)
        .and_then(|(_, v)| VisitorId::parse(v).ok())
}

async fn link_by_slug(state: &AppState, slug: &str) -> ApiResult<Option<Arc<TrackedLink>>> {
    if slug.is_empty() || slug.len() > 64 {
        return Ok(None);
    }
    if let Some(hit) = state.link_cache.get(slug).await {
        return Ok(hit);
    }
    let l = links::by_slug(&state.db, slug).await?.map(Arc::new);
    state.link_cache.insert(slug.to_owned(), l.clone()).await;
    Ok(l)
}

pub async fn follow(
    state: &AppState,
    slug: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> ApiResult<Option<Redirect>> {
    let Some(link) = link_by_slug(state, slug).await? else {
        return Ok(None);
    };
    let pid = PropertyId::parse(&link.property_id).map_err(ApiError::internal)?;
    let Some(property) = state.property(&pid).await? else {
        return Ok(None);
    };

    // The tracking group: the link's integration's, else the group its
    // destination matches.
    let groups = crate::tagjs::property_groups(state, &pid).await?;
    let wanted = match &link.integration_id {
        Some(id) => state.integration_by_id(id).await?.map(|i| i.tracking_group),
        None => None,
    };
    let group = match wanted {
        Some(key) => groups.iter().find(|g| g.key == key),
        None => find_group(&groups, &link.destination_url),
    };
    let pageview = uuid::Uuid::now_v7();
    let click_id = clickid::mint(pageview);
    let location = tag_href(&link.destination_url, group, click_id.as_str())
        .unwrap_or_else(|| link.destination_url.clone());
    let group = group.map(|g| g.key.clone());

    let (visitor, new_visitor) = match visitor_from_cookie(headers) {
        Some(v) => (v, false),
        None => (
            VisitorId::parse(&random_token(22)).map_err(ApiError::internal)?,
            true,
        ),
    };
    let landing = match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{}/go/{}?{}", state.public_base, link.slug, q),
        None => format!("{}/go/{}", state.public_base, link.slug),
    };
    let landing = url::Url::parse(&landing)
        .map_err(|_| ApiError::bad_request("invalid_url", "the link URL is not valid"))?;
    let referrer = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .filter(|r| r.len() <= 4096)
        .map(str::to_owned);
    let now = chrono::Utc::now().timestamp_millis();
    let facts = state.enricher.request_facts(headers, Some(peer));
    let stored_ip = state
        .enricher
        .stored_ip(property.settings.ip_handling, facts.ip);
    let base = CollectedEvent {
        event_id: EventId::parse(&pageview.hyphenated().to_string()).map_err(ApiError::internal)?,
        name: EventName::PageView,
        client_ts_ms: now,
        visitor_id: visitor.clone(),
        session_hint: None,
        url: landing,
        referrer,
        title: None,
        pageview_id: None,
        click_id: None,
        link: None,
        value: None,
        currency: None,
        props: None,
        cookies: Default::default(),
        user: Default::default(),
        screen: None,
        lang: None,
    };
    let mut click = base.clone();
    click.event_id = EventId::parse(&uuid::Uuid::now_v7().hyphenated().to_string())
        .map_err(ApiError::internal)?;
    click.name = EventName::OutboundClick;
    click.pageview_id = Some(base.event_id.clone());
    click.click_id = Some(click_id.clone());
    click.link = Some(Link {
        url: location.clone(),
        tracking_group: group,
        text: None,
    });
    let seed = Arc::new(enrich::session_seed(&base, &facts, stored_ip));
    let events: Vec<IngestEvent> = [base, click]
        .into_iter()
        .map(|event| IngestEvent {
            property_id: property.id.as_str().to_owned(),
            received_at_ms: now,
            session_timeout_ms: property.settings.session_timeout_ms(),
            event,
            seed: seed.clone(),
            click_origin: ClickOrigin::Redirect,
        })
        .collect();
    // The visitor is sent on even if the click cannot be stored: a dead
    // link loses the visitor for sure, a lost click only maybe the
    // attribution (the conversion log will then show unknown_click_id).
    match state.ingest.submit(events).await {
        Ok(_) => {
            metrics::counter!("clicktrail_redirects_total", "outcome" => "recorded").increment(1)
        }
        Err(e) => {
            tracing::error!(error = %e, "a /go click could not be recorded");
            metrics::counter!("clicktrail_redirects_total", "outcome" => "not_recorded")
                .increment(1);
        }
    }
    let secure = if state.public_base.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let set_cookie = new_visitor.then(|| {
        format!(
            "{VISITOR_COOKIE}={visitor}; Max-Age=31536000; Path=/; HttpOnly; SameSite=Lax{secure}"
        )
    });
    Ok(Some(Redirect {
        location,
        set_cookie,
    }))
}
