//! Test support, shared by every crate's integration tests: throwaway
//! databases on either backend ([`db`]), and small local HTTP servers that
//! stand in for the outside services clicktrail talks to, faithful to
//! `../shared/reference/` (including their error answers). Never linked
//! into the server binary.

pub mod db;
pub mod fake;
pub mod ga4;
pub mod google_ads;
pub mod income_access;
pub mod meta;
pub mod tiktok;
