//! clicktrail's knowledge of affiliate networks: the integration catalog
//! (one TOML file per network, embedded in the binary), the parser that turns
//! a network's postback request into a domain `SourceEvent`, and the API
//! connectors that poll a network's reporting API (Income Access first).
//!
//! Depends on `domain` only, and takes its HTTP client from its caller: it
//! must never depend on storage, the ad platforms (`destinations`) or the
//! engine.

pub mod catalog;
pub mod incomeaccess;
pub mod postback;
