//! The destinations crate's integration tests, one test binary: sending
//! batches to the testkit's fake platforms, and the Google Ads JSON checked
//! against Google's own descriptors (`proto/`).
//! `cargo test -p clicktrail-destinations --test it <filter>` runs one area.

mod google_descriptor;
mod send;
