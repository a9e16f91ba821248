//! The networks crate's integration tests, one test binary: the catalog,
//! postback parsing (tables and fuzzing), and the Income Access connector
//! (against the testkit's fake server, and fuzzed).
//! `cargo test -p clicktrail-networks --test it <filter>` runs one area.

mod catalog;
mod incomeaccess_fake;
mod incomeaccess_fuzz;
mod postback;
mod postback_fuzz;
