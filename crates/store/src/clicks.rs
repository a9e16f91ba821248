//! Clicks and the sessions behind them: what a conversion's click id leads
//! to.

use clicktrail_domain::{ClickId, PropertyId};
use serde::{Deserialize, Serialize};

use crate::{Db, Result, args};

/// A stored click.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow)]
pub struct Click {
    #[serde(skip_serializing)]
    pub id: i64,
    pub property_id: String,
    pub click_id: String,
    /// `tag` (OutboundClick), `redirect` (`/go/`), or `pageview` (a tag-minted
    /// id whose OutboundClick never arrived, resolved from its pageview).
    pub origin: String,
    pub ts: i64,
    pub session_id: i64,
    pub visitor_id: String,
    pub event_id: Option<String>,
    pub pageview_id: Option<String>,
    pub page_url: Option<String>,
    pub link_url: Option<String>,
    pub link_group: Option<String>,
    pub link_text: Option<String>,
}

/// A stored session with its traffic source.
#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct Session {
    pub id: i64,
    pub property_id: String,
    pub visitor_id: String,
    pub started_at: i64,
    pub last_seen_at: i64,
    pub landing_url: String,
    pub landing_page: String,
    pub referrer: Option<String>,
    pub referrer_host: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    pub utm_id: Option<String>,
    pub source: String,
    pub medium: String,
    pub channel: String,
    pub click_ids: Option<String>,
    pub gclid: Option<String>,
    pub gbraid: Option<String>,
    pub wbraid: Option<String>,
    pub fbclid: Option<String>,
    pub fbc: Option<String>,
    pub fbp: Option<String>,
    pub ttclid: Option<String>,
    pub ttp: Option<String>,
    pub msclkid: Option<String>,
    pub browser: Option<String>,
    pub browser_version: Option<String>,
    pub os: Option<String>,
    pub os_version: Option<String>,
    pub device: String,
    pub is_bot: bool,
    #[serde(skip_serializing)]
    pub user_agent: Option<String>,
    #[serde(skip_serializing)]
    pub ip: Option<String>,
    #[serde(skip_serializing)]
    pub em_hash: Option<String>,
    #[serde(skip_serializing)]
    pub ph_hash: Option<String>,
    pub pageviews: i64,
    pub events: i64,
}

const CLICK_COLS: &str = "id, property_id, click_id, origin, ts, session_id, visitor_id, event_id, pageview_id, \
                          page_url, link_url, link_group, link_text";

pub const SESSION_COLS: &str = "id, property_id, visitor_id, started_at, last_seen_at, landing_url, landing_page, \
     referrer, referrer_host, utm_source, utm_medium, utm_campaign, utm_term, utm_content, utm_id, source, medium, \
     channel, click_ids, gclid, gbraid, wbraid, fbclid, fbc, fbp, ttclid, ttp, msclkid, browser, browser_version, \
     os, os_version, device, is_bot, user_agent, ip, em_hash, ph_hash, pageviews, events";

pub async fn get_click(
    db: &Db,
    property: &PropertyId,
    click_id: &ClickId,
) -> Result<Option<Click>> {
    db.fetch_optional(
        &format!("SELECT {CLICK_COLS} FROM clicks WHERE property_id = $1 AND click_id = $2"),
        args![property.as_str(), click_id.as_str()],
    )
    .await
}

pub async fn get_session(db: &Db, id: i64) -> Result<Option<Session>> {
    db.fetch_optional(
        &format!("SELECT {SESSION_COLS} FROM sessions WHERE id = $1"),
        args![id],
    )
    .await
}

/// The pageview a tag-minted click id names (see `domain::clickid`):
/// (session id, visitor id, time, page URL).
#[derive(Debug, Clone, Deserialize, sqlx::FromRow)]
pub struct PageviewRef {
    pub event_id: String,
    pub session_id: i64,
    pub visitor_id: String,
    pub ts: i64,
    pub url: String,
}

pub async fn find_pageview(
    db: &Db,
    property: &PropertyId,
    pageview_event_id: &str,
) -> Result<Option<PageviewRef>> {
    db.fetch_optional(
        "SELECT event_id, session_id, visitor_id, ts, url FROM events \
         WHERE property_id = $1 AND event_id = $2 AND name = 'PageView'",
        args![property.as_str(), pageview_event_id],
    )
    .await
}

/// Looks a click id up: the click record, or for a tag-minted id whose
/// OutboundClick was lost, a click made from its pageview (not stored; the
/// conversion path stores it when a conversion names it).
pub async fn resolve(db: &Db, property: &PropertyId, click_id: &ClickId) -> Result<Option<Click>> {
    if let Some(c) = get_click(db, property, click_id).await? {
        return Ok(Some(c));
    }
    let Some(pv) = clicktrail_domain::clickid::pageview_of(click_id) else {
        return Ok(None);
    };
    let pv_id = pv.hyphenated().to_string();
    let Some(p) = find_pageview(db, property, &pv_id).await? else {
        return Ok(None);
    };
    Ok(Some(Click {
        id: 0,
        property_id: property.as_str().to_owned(),
        click_id: click_id.as_str().to_owned(),
        origin: "pageview".into(),
        ts: p.ts,
        session_id: p.session_id,
        visitor_id: p.visitor_id,
        event_id: None,
        pageview_id: Some(p.event_id),
        page_url: Some(p.url),
        link_url: None,
        link_group: None,
        link_text: None,
    }))
}
