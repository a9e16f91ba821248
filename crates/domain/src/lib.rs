//! clicktrail's domain: the pure logic of conversion tracking. Ids, collected
//! events and their wire format, traffic sources and channels, user agents
//! and bots, sessions, tracking-group link rules, event mapping, attribution
//! and the outcome vocabulary. No I/O, no clocks (time is passed in), no
//! knowledge of HTTP or SQL: everything here is testable as plain functions.
//!
//! Every other crate depends on this one; it depends on none of ours, and
//! must never gain I/O, a clock, randomness in its rules, or a dependency
//! on storage or HTTP. (Id generation, `ids::EntityId::generate` and
//! `clickid::mint`, is the one use of randomness, called by the engine
//! outside the rules: attribution takes the ids it writes as input.)

pub mod attribution;
pub mod bot;
pub mod channel;
pub mod clickid;
pub mod collect;
pub mod consent;
pub mod conversion;
pub mod delivery;
pub mod ids;
pub mod links;
pub mod mapping;
pub mod money;
pub mod property;
pub mod public_url;
pub mod session;
pub mod traffic;
pub mod useragent;

pub use ids::{ClickId, EntityId, EventId, PropertyId, VisitorId};
pub use money::{Amount, Currency, Money};
