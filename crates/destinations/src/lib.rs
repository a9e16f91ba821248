//! Ad-platform destinations: Meta Conversions API, Google Ads click
//! conversions, TikTok Events API and GA4 Measurement Protocol.
//!
//! This crate turns a destination's configuration into a validated
//! [`Destination`] ([`validate`]), decides which of our events it wants and
//! under which name ([`Destination::map_event`]), builds each platform's
//! payload exactly as documented (pure functions in [`meta`],
//! [`google_ads`], [`tiktok`], [`ga4`]), sends a batch and classifies the
//! answers into one [`ItemOutcome`] per conversion ([`send_batch`]). It
//! knows nothing of storage: the server's outbox worker claims delivery
//! rows, calls [`send_batch`] per destination with at most [`max_batch`]
//! conversions, and records the outcome and [`RequestRecord`] per row.
//!
//! Depends on `domain`, and on `outbound` only to recognise the outbound
//! policy's refusal in a send error; it takes its HTTP client (built under
//! that policy) from its caller. It must never depend on storage, the
//! affiliate networks or the engine.

pub mod config;
pub mod ga4;
pub mod google_ads;
pub mod hashing;
mod http;
pub mod kind;
pub mod mapping;
pub mod meta;
pub mod oauth;
pub mod outcome;
pub mod send;
pub mod tiktok;

pub use config::{Destination, FieldError, Platform, mask_secret, parse_kind, validate};
pub use http::parse_retry_after;
pub use kind::{DestinationKind, max_batch, window, window_anchor, window_passed};
pub use mapping::MappedEvent;
pub use oauth::GoogleTokenCache;
pub use outcome::{BatchResult, Classified, EXCERPT_MAX, ItemOutcome, RequestRecord, Verdict};
pub use send::{DEFAULT_TIMEOUT, SendOptions, send_batch};
