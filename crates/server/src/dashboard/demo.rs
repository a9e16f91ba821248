//! `clicktrail demo`.
