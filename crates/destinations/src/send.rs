//! Sending one batch of conversions to one destination: build the
//! platform's requests, send them with a deadline, classify the answers
//! into one outcome per conversion. Meta and TikTok reject a whole request
//! for one bad event without naming it, so such a request is split in
//! halves until the culprit is alone. Google tokens come from the shared
//! [`GoogleTokenCache`], refreshed once on 401. GA4 requests, one per
//! visitor, go concurrently.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clicktrail_domain::delivery::OutboundConversion;
use futures::future::join_all;
use secrecy::ExposeSecret;
use url::Url;

use crate::config::{Destination, Ga4Config, GoogleAdsConfig, MetaConfig, Platform, TiktokConfig};
use crate::http::{Reply, exchange};
use crate::kind::{
    GA4_BASE_URL, GOOGLE_ADS_API_VERSION, GOOGLE_ADS_BASE_URL, META_BASE_URL, META_GRAPH_VERSION,
    TIKTOK_API_VERSION, TIKTOK_BASE_URL, max_batch,
};
use crate::oauth::GoogleTokenCache;
use crate::outcome::{BatchResult, Classified, ItemOutcome, RequestRecord};
use crate::{ga4, google_ads, meta, tiktok};

/// Default deadline of one request, answer included.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many upload requests per call (splitting included), so one
/// call stays bounded in time.
const MAX_REQUESTS_PER_CALL: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOptions {
    /// A test conversion from the dashboard: Google `validateOnly`, GA4's
    /// validation endpoint, Meta / TikTok only with the destination's
    /// `test_event_code` (without one the items are skipped with
    /// `no_test_event_code`, so a test never lands in real data).
    pub test_mode: bool,
    /// Deadline of each request.
    pub timeout: Duration,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            test_mode: false,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

struct Ctx<'a> {
    outcomes: Vec<Option<ItemOutcome>>,
    records: Vec<RequestRecord>,
    secrets: Vec<&'a str>,
    budget: usize,
    timeout: Duration,
}

impl Ctx<'_> {
    fn set(&mut self, i: usize, o: ItemOutcome) {
        if let Some(slot) = self.outcomes.get_mut(i) {
            *slot = Some(o);
        }
    }
    fn set_all(&mut self, items: &[usize], o: &ItemOutcome) {
        for &i in items {
            self.set(i, o.clone());
        }
    }
}

/// Sends `batch` (ideally at most [`max_batch`] conversions; larger ones
/// are split) to `dest` and reports one outcome per conversion, in order.
/// Never fails as a whole: every problem becomes an item outcome.
pub async fn send_batch(
    client: &reqwest::Client,
    dest: &Destination,
    tokens: &GoogleTokenCache,
    batch: &[OutboundConversion],
    opts: SendOptions,
) -> BatchResult {
    let clock = Instant::now();
    let now = Utc::now();
    let mut ctx = Ctx {
        outcomes: vec![None; batch.len()],
        records: Vec::new(),
        secrets: dest.secret_values(),
        budget: MAX_REQUESTS_PER_CALL,
        timeout: opts.timeout,
    };
    match &dest.platform {
        Platform::Meta(cfg) => send_meta(client, dest, cfg, batch, opts, now, &mut ctx).await,
        Platform::GoogleAds(cfg) => {
            send_google(client, dest, cfg, tokens, batch, opts, now, &mut ctx).await
        }
        Platform::Tiktok(cfg) => send_tiktok(client, dest, cfg, batch, opts, now, &mut ctx).await,
        Platform::Ga4(cfg) => send_ga4(client, dest, cfg, batch, opts, now, &mut ctx).await,
    }
    let items = ctx
        .outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                ItemOutcome::retry(None, "not_attempted", "no request carried this conversion")
            })
        })
        .collect();
    let result = BatchResult::new(items, ctx.records, clock.elapsed());
    tracing::debug!(
        kind = dest.kind.as_str(),
        items = batch.len(),
        requests = result.requests.len(),
        status = result.http_status,
        "destination batch sent"
    );
    result
}

/// `base` with `segments` appended to its path.
fn url_with(base: Url, segments: &[&str]) -> Option<Url> {
    let mut u = base;
    u.path_segments_mut().ok()?.pop_if_empty().extend(segments);
    Some(u)
}

fn endpoint(
    dest: &Destination,
    default: &str,
    segments: &[&str],
    ctx: &mut Ctx<'_>,
    items: &[usize],
) -> Option<Url> {
    let url = dest
        .base_url(default)
        .ok()
        .and_then(|b| url_with(b, segments));
    if url.is_none() {
        ctx.set_all(
            items,
            &ItemOutcome::permanent(
                "invalid_endpoint",
                "the destination's endpoint cannot be used",
            ),
        );
    }
    url
}

/// Sends groups of items, splitting any group the platform rejects whole
/// (`Classified::bisect`) until the bad items stand alone.
async fn send_splitting<M, C>(ctx: &mut Ctx<'_>, groups: Vec<Vec<usize>>, make: M, classify: C)
where
    M: Fn(&[usize]) -> reqwest::RequestBuilder,
    C: Fn(&Reply) -> Classified,
{
    let mut stack: Vec<Vec<usize>> = groups.into_iter().rev().collect();
    while let Some(group) = stack.pop() {
        if group.is_empty() {
            continue;
        }
        if ctx.budget == 0 {
            let o = ItemOutcome::retry(
                None,
                "batch_rejected",
                "the platform rejected the batch; left for a later attempt",
            );
            ctx.set_all(&group, &o);
            continue;
        }
        ctx.budget -= 1;
        let ex = exchange(make(&group), ctx.timeout).await;
        match &ex.result {
            Err(t) => {
                ctx.records
                    .push(ex.record(t.message().to_owned(), &ctx.secrets, group.clone()));
                ctx.set_all(&group, &t.outcome());
            }
            Ok(reply) => {
                let c = classify(reply);
                ctx.records
                    .push(ex.record(c.message.clone(), &ctx.secrets, group.clone()));
                if c.bisect && group.len() > 1 && ctx.budget >= 2 {
                    let (a, b) = group.split_at(group.len() / 2);
                    stack.push(b.to_vec());
                    stack.push(a.to_vec());
                } else if c.bisect && group.len() > 1 {
                    let o = ItemOutcome::retry(
                        None,
                        "batch_rejected",
                        format!("the platform rejected the batch: {}", c.message),
                    );
                    ctx.set_all(&group, &o);
                } else {
                    for (pos, &i) in group.iter().enumerate() {
                        ctx.set(i, c.outcome(pos));
                    }
                }
            }
        }
    }
}

fn chunks(ready: &[usize], size: usize) -> Vec<Vec<usize>> {
    ready.chunks(size.max(1)).map(<[usize]>::to_vec).collect()
}

/// Meta and TikTok: the code to send in test mode, or `Err` when the
/// destination has none (the items are then skipped).
fn test_code(configured: Option<&str>, test_mode: bool) -> Result<Option<&str>, ItemOutcome> {
    match (test_mode, configured) {
        (true, None) => Err(ItemOutcome::skipped(
            "no_test_event_code",
            "set settings.test_event_code to send test events to this destination",
        )),
        (_, code) => Ok(code),
    }
}

async fn send_meta(
    client: &reqwest::Client,
    dest: &Destination,
    cfg: &MetaConfig,
    batch: &[OutboundConversion],
    opts: SendOptions,
    now: DateTime<Utc>,
    ctx: &mut Ctx<'_>,
) {
    let all: Vec<usize> = (0..batch.len()).collect();
    let code = match test_code(cfg.test_event_code.as_deref(), opts.test_mode) {
        Ok(c) => c,
        Err(o) => return ctx.set_all(&all, &o),
    };
    let mut events = Vec::with_capacity(batch.len());
    for (i, c) in batch.iter().enumerate() {
        match meta::build_event(c, now) {
            Ok(mut e) => {
                if cfg.limited_data_use {
                    meta::apply_limited_data_use(&mut e, &c.consent);
                }
                events.push(Some(e))
            }
            Err(o) => {
                ctx.set(i, o);
                events.push(None);
            }
        }
    }
    let ready: Vec<usize> = (0..batch.len()).filter(|&i| events[i].is_some()).collect();
    let Some(url) = endpoint(
        dest,
        META_BASE_URL,
        &[META_GRAPH_VERSION, &cfg.pixel_id, "events"],
        ctx,
        &ready,
    ) else {
        return;
    };
    let token = cfg.access_token.expose_secret();
    let make = |group: &[usize]| {
        let evs: Vec<&meta::MetaEvent> = group.iter().filter_map(|&i| events[i].as_ref()).collect();
        client
            .post(url.clone())
            .query(&[("access_token", token)])
            .json(&meta::build_body(&evs, code))
    };
    let classify = |r: &Reply| meta::classify(r.status, r.retry_after, &r.body);
    send_splitting(ctx, chunks(&ready, max_batch(dest.kind)), make, classify).await;
}

async fn send_tiktok(
    client: &reqwest::Client,
    dest: &Destination,
    cfg: &TiktokConfig,
    batch: &[OutboundConversion],
    opts: SendOptions,
    now: DateTime<Utc>,
    ctx: &mut Ctx<'_>,
) {
    let all: Vec<usize> = (0..batch.len()).collect();
    let code = match test_code(cfg.test_event_code.as_deref(), opts.test_mode) {
        Ok(c) => c,
        Err(o) => return ctx.set_all(&all, &o),
    };
    let events: Vec<tiktok::TiktokEvent> =
        batch.iter().map(|c| tiktok::build_event(c, now)).collect();
    let Some(url) = endpoint(
        dest,
        TIKTOK_BASE_URL,
        &["open_api", TIKTOK_API_VERSION, "event", "track", ""],
        ctx,
        &all,
    ) else {
        return;
    };
    let token = cfg.access_token.expose_secret();
    let make = |group: &[usize]| {
        let evs: Vec<&tiktok::TiktokEvent> = group.iter().filter_map(|&i| events.get(i)).collect();
        client
            .post(url.clone())
            .header("Access-Token", token)
            .json(&tiktok::build_body(&cfg.pixel_code, &evs, code))
    };
    let classify = |r: &Reply| tiktok::classify(r.status, r.retry_after, &r.body);
    send_splitting(ctx, chunks(&all, max_batch(dest.kind)), make, classify).await;
}

async fn send_ga4(
    client: &reqwest::Client,
    dest: &Destination,
    cfg: &Ga4Config,
    batch: &[OutboundConversion],
    opts: SendOptions,
    now: DateTime<Utc>,
    ctx: &mut Ctx<'_>,
) {
    let mut items = Vec::with_capacity(batch.len());
    for (i, c) in batch.iter().enumerate() {
        match ga4::build_item(c, now) {
            Ok(it) => items.push(Some(it)),
            Err(o) => {
                ctx.set(i, o);
                items.push(None);
            }
        }
    }
    // One request per visitor, time and consent (those are request-level
    // fields), at most 25 events each.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, it) in items.iter().enumerate() {
        let Some(it) = it else { continue };
        let same = |g: &Vec<usize>| {
            g.len() < ga4::MAX_EVENTS
                && g.first().and_then(|&j| items[j].as_ref()).is_some_and(|o| {
                    o.client_id == it.client_id
                        && o.timestamp_micros == it.timestamp_micros
                        && o.consent == it.consent
                })
        };
        match groups.iter_mut().find(|g| same(g)) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    let ready: Vec<usize> = groups.iter().flatten().copied().collect();
    let path: &[&str] = if opts.test_mode {
        &["debug", "mp", "collect"]
    } else {
        &["mp", "collect"]
    };
    let Some(url) = endpoint(dest, GA4_BASE_URL, path, ctx, &ready) else {
        return;
    };
    let secret = cfg.api_secret.expose_secret();
    if groups.len() > ctx.budget {
        let late = groups.split_off(ctx.budget);
        let o = ItemOutcome::retry(
            None,
            "not_attempted",
            "too many visitors in one batch; left for a later attempt",
        );
        for g in late {
            ctx.set_all(&g, &o);
        }
    }
    ctx.budget -= groups.len();
    let requests = groups.iter().filter_map(|g| {
        let first = items[*g.first()?].as_ref()?;
        let evs: Vec<&ga4::Ga4Event> = g
            .iter()
            .filter_map(|&i| items[i].as_ref().map(|it| &it.event))
            .collect();
        let body = ga4::build_body(
            &first.client_id,
            first.timestamp_micros,
            first.consent,
            &evs,
        );
        if let Err(why) = ga4::check_limits(&body) {
            return Some((g.clone(), Err(why)));
        }
        let req = client
            .post(url.clone())
            .query(&[
                ("measurement_id", cfg.measurement_id.as_str()),
                ("api_secret", secret),
            ])
            .json(&body);
        Some((g.clone(), Ok(req)))
    });
    let timeout = ctx.timeout;
    let sent = join_all(requests.map(|(g, req)| async move {
        match req {
            Ok(req) => (g, Ok(exchange(req, timeout).await)),
            Err(why) => (g, Err(why)),
        }
    }))
    .await;
    for (g, res) in sent {
        match res {
            Err(why) => ctx.set_all(&g, &ItemOutcome::permanent("ga4_limits", why)),
            Ok(ex) => match &ex.result {
                Err(t) => {
                    ctx.records
                        .push(ex.record(t.message().to_owned(), &ctx.secrets, g.clone()));
                    ctx.set_all(&g, &t.outcome());
                }
                Ok(reply) => {
                    let c =
                        ga4::classify(reply.status, reply.retry_after, &reply.body, opts.test_mode);
                    ctx.records
                        .push(ex.record(c.message.clone(), &ctx.secrets, g.clone()));
                    for (pos, &i) in g.iter().enumerate() {
                        ctx.set(i, c.outcome(pos));
                    }
                }
            },
        }
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one private step of send_batch, called once"
)]
async fn send_google(
    client: &reqwest::Client,
    dest: &Destination,
    cfg: &GoogleAdsConfig,
    tokens: &GoogleTokenCache,
    batch: &[OutboundConversion],
    opts: SendOptions,
    now: DateTime<Utc>,
    ctx: &mut Ctx<'_>,
) {
    let mut conversions = Vec::with_capacity(batch.len());
    for (i, c) in batch.iter().enumerate() {
        match google_ads::build_conversion(c, now) {
            Ok(cc) => conversions.push(Some(cc)),
            Err(o) => {
                ctx.set(i, o);
                conversions.push(None);
            }
        }
    }
    let ready: Vec<usize> = (0..batch.len())
        .filter(|&i| conversions[i].is_some())
        .collect();
    let method = format!("{}:uploadClickConversions", cfg.customer_id);
    let Some(url) = endpoint(
        dest,
        GOOGLE_ADS_BASE_URL,
        &[GOOGLE_ADS_API_VERSION, "customers", &method],
        ctx,
        &ready,
    ) else {
        return;
    };
    for group in chunks(&ready, max_batch(dest.kind)) {
        if ctx.budget == 0 {
            ctx.set_all(
                &group,
                &ItemOutcome::retry(None, "not_attempted", "request budget of this call used up"),
            );
            continue;
        }
        let ccs: Vec<&google_ads::ClickConversion> = group
            .iter()
            .filter_map(|&i| conversions[i].as_ref())
            .collect();
        let body = google_ads::build_body(&ccs, opts.test_mode);
        let make = |token: &str| {
            let mut req = client
                .post(url.clone())
                .bearer_auth(token)
                .header("developer-token", cfg.developer_token.expose_secret())
                .json(&body);
            if let Some(login) = &cfg.login_customer_id {
                req = req.header("login-customer-id", login);
            }
            req
        };
        // At most two uploads: the second only after a 401 and a new token.
        let mut refreshed = false;
        loop {
            let token = match tokens.token(client, cfg, ctx.timeout, &ctx.secrets).await {
                Ok(t) => t,
                Err(fail) => {
                    let mut record = fail.record;
                    record.items.clone_from(&group);
                    ctx.records.push(record);
                    ctx.set_all(&group, &fail.outcome);
                    break;
                }
            };
            ctx.budget = ctx.budget.saturating_sub(1);
            let ex = exchange(make(token.expose_secret()), ctx.timeout).await;
            let reply = match &ex.result {
                Err(t) => {
                    ctx.records.push(ex.record(
                        t.message().to_owned(),
                        &ctx.secrets,
                        group.clone(),
                    ));
                    ctx.set_all(&group, &t.outcome());
                    break;
                }
                Ok(r) => r,
            };
            let c = google_ads::classify(reply.status, reply.retry_after, &reply.body, group.len());
            ctx.records
                .push(ex.record(c.message.clone(), &ctx.secrets, group.clone()));
            if reply.status == 401 && !refreshed {
                refreshed = true;
                tokens.invalidate(cfg, &token).await;
                continue;
            }
            for (pos, &i) in group.iter().enumerate() {
                ctx.set(i, c.outcome(pos));
            }
            break;
        }
    }
}
