//! Google OAuth access tokens for the Google Ads API: fetched with the
//! destination's refresh token (`grant_type=refresh_token`), cached per
//! credentials, refreshed a margin before they expire and, once, when the
//! API answers 401. One refresh at a time per destination, however many
//! workers ask. Tokens never reach logs or errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::GoogleAdsConfig;
use crate::hashing::sha256_hex;
use crate::http::{Exchange, exchange};
use crate::kind::GOOGLE_TOKEN_ENDPOINT;
use crate::outcome::{ItemOutcome, RequestRecord};

/// Refresh this long before the announced expiry by default.
pub const DEFAULT_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// Assumed lifetime when the token endpoint does not say.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

struct Cached {
    token: SecretString,
    refresh_at: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// Access tokens per Google Ads destination (keyed by a hash of token
/// endpoint, client id and refresh token). Share one per process, e.g. in
/// an `Arc` held by the outbox worker; a new one simply starts empty.
pub struct GoogleTokenCache {
    margin: Duration,
    slots: Mutex<HashMap<String, Slot>>,
}

impl std::fmt::Debug for GoogleTokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GoogleTokenCache")
            .field("margin", &self.margin)
            .finish_non_exhaustive()
    }
}

impl Default for GoogleTokenCache {
    fn default() -> Self {
        Self::new()
    }
}

/// Why no token could be had, as the outcome of the conversions waiting on
/// it, with the token request's log record.
#[derive(Debug, Clone)]
pub(crate) struct TokenFailure {
    pub outcome: ItemOutcome,
    pub record: RequestRecord,
}

#[derive(Debug, Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    expires_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
}

impl GoogleTokenCache {
    pub fn new() -> Self {
        Self::with_margin(DEFAULT_REFRESH_MARGIN)
    }

    /// A cache refreshing `margin` before expiry (at the latest half way
    /// through a token's life, for short-lived tokens).
    pub fn with_margin(margin: Duration) -> Self {
        Self {
            margin,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, cfg: &GoogleAdsConfig) -> Slot {
        let key = sha256_hex(&format!(
            "{}\n{}\n{}",
            token_endpoint(cfg),
            cfg.client_id,
            cfg.refresh_token.expose_secret()
        ));
        // A poisoned lock only means another thread panicked mid-insert;
        // the map itself is still usable.
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.entry(key).or_default().clone()
    }

    /// A valid access token, from the cache or freshly fetched.
    pub(crate) async fn token(
        &self,
        client: &reqwest::Client,
        cfg: &GoogleAdsConfig,
        timeout: Duration,
        secrets: &[&str],
    ) -> Result<SecretString, TokenFailure> {
        let slot = self.slot(cfg);
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(c.token.clone());
        }
        let (token, lifetime) = fetch(client, cfg, timeout, secrets).await?;
        let early = lifetime.saturating_sub(self.margin).max(lifetime / 2);
        *cached = Some(Cached {
            token: token.clone(),
            refresh_at: Instant::now() + early,
        });
        Ok(token)
    }

    /// Forgets `used` after the API refused it, so the next call fetches a
    /// new one; a token another worker already replaced is left alone.
    pub(crate) async fn invalidate(&self, cfg: &GoogleAdsConfig, used: &SecretString) {
        let slot = self.slot(cfg);
        let mut cached = slot.lock().await;
        if cached
            .as_ref()
            .is_some_and(|c| c.token.expose_secret() == used.expose_secret())
        {
            *cached = None;
        }
    }

    /// Forgets every token (credentials changed, tests).
    pub fn clear(&self) {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }
}

fn token_endpoint(cfg: &GoogleAdsConfig) -> &str {
    cfg.token_endpoint
        .as_ref()
        .map_or(GOOGLE_TOKEN_ENDPOINT, |u| u.as_str())
}

async fn fetch(
    client: &reqwest::Client,
    cfg: &GoogleAdsConfig,
    timeout: Duration,
    secrets: &[&str],
) -> Result<(SecretString, Duration), TokenFailure> {
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", cfg.client_id.as_str()),
        ("client_secret", cfg.client_secret.expose_secret()),
        ("refresh_token", cfg.refresh_token.expose_secret()),
    ];
    let ex = exchange(client.post(token_endpoint(cfg)).form(&form), timeout).await;
    let fail = |ex: &Exchange, message: String, outcome: ItemOutcome| TokenFailure {
        record: ex.record(format!("token endpoint: {message}"), secrets, Vec::new()),
        outcome,
    };
    let reply = match &ex.result {
        Ok(r) => r,
        Err(t) => {
            let msg = t.message().to_owned();
            let reason = t.outcome().reason().unwrap_or("transport_error").to_owned();
            let outcome = ItemOutcome::retry(
                None,
                &format!("token_{reason}"),
                format!("token endpoint: {msg}"),
            );
            return Err(fail(&ex, msg, outcome));
        }
    };
    let answer = serde_json::from_slice::<TokenAnswer>(&reply.body).ok();
    if (200..300).contains(&reply.status) {
        if let Some(token) = answer
            .as_ref()
            .and_then(|a| a.access_token.as_deref())
            .filter(|t| !t.is_empty())
        {
            let lifetime = answer
                .as_ref()
                .and_then(|a| a.expires_in)
                .map_or(DEFAULT_LIFETIME, Duration::from_secs);
            return Ok((SecretString::from(token.to_owned()), lifetime));
        }
        let outcome = ItemOutcome::retry(
            None,
            "token_unexpected_response",
            "the token endpoint answered without a token",
        );
        return Err(fail(&ex, "answer without access_token".into(), outcome));
    }
    let error = answer
        .as_ref()
        .and_then(|a| a.error.clone())
        .unwrap_or_default();
    let description = answer
        .as_ref()
        .and_then(|a| a.error_description.clone())
        .unwrap_or_default();
    let message = if error.is_empty() {
        format!("HTTP {}", reply.status)
    } else {
        format!("{error}: {description}")
    };
    let outcome = match reply.status {
        429 => ItemOutcome::retry(reply.retry_after, "token_throttled", message.clone()),
        500..=599 => ItemOutcome::retry(
            reply.retry_after,
            "token_endpoint_unavailable",
            message.clone(),
        ),
        // invalid_grant (refresh token expired or revoked), invalid_client,
        // unauthorized_client...: only the user can fix them.
        _ if !error.is_empty() => ItemOutcome::auth(
            &format!("oauth_{}", error.to_ascii_lowercase()),
            format!("Google refused the OAuth credentials: {message}"),
        ),
        s => ItemOutcome::auth(
            &format!("oauth_http_{s}"),
            format!("Google refused the OAuth credentials: {message}"),
        ),
    };
    Err(fail(&ex, message, outcome))
}
