//! The report URL an Income Access back office generates (Reports -> API
//! Reports): `https://<program>/api/affreporting.asp?key=<key>&reportname=..&reportformat=..`,
//! with the security key inside. Users paste it whole; an install takes it
//! apart: the key goes into the encrypted credentials, the report name,
//! format and merchant into the settings, and the URL is kept without any of
//! the parameters the connector sets itself.

use url::Url;

use super::settings::OUR_PARAMS;

/// What a pasted report URL carries, taken apart.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedUrl {
    /// The URL without `key` and the other parameters each request sets.
    pub api_url: String,
    /// The security key (`key=`), when the URL holds a non-empty one.
    pub key: Option<String>,
    /// `reportname=`, as given.
    pub report_name: Option<String>,
    /// `reportformat=`, as given.
    pub report_format: Option<String>,
    /// `reportmerchantid=`, as given.
    pub merchant_id: Option<String>,
}

impl std::fmt::Debug for GeneratedUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never printed.
        f.debug_struct("GeneratedUrl")
            .field("api_url", &self.api_url)
            .field("key", &self.key.as_ref().map(|_| super::REDACTED))
            .field("report_name", &self.report_name)
            .field("report_format", &self.report_format)
            .field("merchant_id", &self.merchant_id)
            .finish()
    }
}

/// Takes a pasted report URL apart. `None` when the text is not an absolute
/// http(s) URL or holds none of the request parameters (then it is already
/// a plain API URL, left to the ordinary checks).
pub fn split_generated_url(text: &str) -> Option<GeneratedUrl> {
    let mut url = Url::parse(text.trim()).ok()?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    let ours = |k: &str| OUR_PARAMS.iter().any(|p| k.eq_ignore_ascii_case(p));
    if !url.query_pairs().any(|(k, _)| ours(&k)) {
        return None;
    }
    let value = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let key = value("key");
    let report_name = value("reportname");
    let report_format = value("reportformat");
    let merchant_id = value("reportmerchantid");
    // The kept parameters keep their raw text (no re-encoding).
    let kept: Vec<String> = url
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|seg| !seg.is_empty())
        .filter(|seg| {
            let name = seg.split('=').next().unwrap_or_default();
            let name = url::form_urlencoded::parse(name.as_bytes())
                .next()
                .map(|(k, _)| k.into_owned())
                .unwrap_or_default();
            !ours(&name)
        })
        .map(str::to_owned)
        .collect();
    url.set_query((!kept.is_empty()).then(|| kept.join("&")).as_deref());
    url.set_fragment(None);
    Some(GeneratedUrl {
        api_url: url.to_string(),
        key,
        report_name,
        report_format,
        merchant_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_back_office_url_is_taken_apart() {
        let g = split_generated_url(
            " https://www.galapartners.co.uk/api/affreporting.asp?key=0123456789abcdef0123456789ABCDEF&reportname=ACIDReport&reportformat=csv&reportmerchantid=0&reportstartdate=2026/01/01&reportenddate=2026/01/31 ",
        )
        .expect("a generated URL");
        assert_eq!(
            g.api_url,
            "https://www.galapartners.co.uk/api/affreporting.asp"
        );
        assert_eq!(g.key.as_deref(), Some("0123456789abcdef0123456789ABCDEF"));
        assert_eq!(g.report_name.as_deref(), Some("ACIDReport"));
        assert_eq!(g.report_format.as_deref(), Some("csv"));
        assert_eq!(g.merchant_id.as_deref(), Some("0"));
        assert!(
            !format!("{g:?}").contains("0123456789abcdef"),
            "Debug hides the key"
        );
    }

    #[test]
    fn other_parameters_stay_and_names_match_in_any_case() {
        let g = split_generated_url(
            "https://aff.example.com/api/affreporting.asp?brand=x%20y&KEY=k1&ReportName=Member%20Report%20-%20Detailed&key2=z",
        )
        .expect("a generated URL");
        assert_eq!(
            g.api_url,
            "https://aff.example.com/api/affreporting.asp?brand=x%20y&key2=z"
        );
        assert_eq!(g.key.as_deref(), Some("k1"));
        assert_eq!(g.report_name.as_deref(), Some("Member Report - Detailed"));
        assert_eq!(g.report_format, None);
    }

    #[test]
    fn plain_urls_and_non_urls_are_left_alone() {
        assert_eq!(
            split_generated_url("https://aff.example.com/api/affreporting.asp"),
            None
        );
        assert_eq!(split_generated_url("https://aff.example.com/a?x=1"), None);
        assert_eq!(split_generated_url("ftp://aff.example.com/a?key=1"), None);
        assert_eq!(split_generated_url("not a url?key=1"), None);
        let empty =
            split_generated_url("https://aff.example.com/a?key=&reportname=x").expect("parsed");
        assert_eq!(empty.key, None);
        assert_eq!(empty.api_url, "https://aff.example.com/a");
    }
}
