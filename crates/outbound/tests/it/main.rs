//! The outbound crate's integration tests, one test binary (the same
//! layout as every crate's): the guarded client against local servers.
//! `cargo test -p clicktrail-outbound --test it <filter>` runs one area.

mod guard;
