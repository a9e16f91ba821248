//! The tag as served: the built bundle (`tag/dist/clicktrail.min.js`,
//! embedded at compile time) with a property's configuration substituted,
//! and the install snippet.

/// The install snippet for a tag URL.
pub fn snippet(tag_url: &str) -> String {
    // TEMPORARY until tag/snippet.html lands.
    format!(
        "<script>window.clicktrail=window.clicktrail||function(){{(clicktrail.q=clicktrail.q||[]).push(arguments)}};</script>\n<script async src=\"{tag_url}\"></script>"
    )
}
