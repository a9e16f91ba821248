//! Why a poll failed, with a stable code, a message for the user, and what
//! the poller should do about it.

use std::time::Duration;

use super::settings::redact_secrets;

/// A failed poll. `Display` is for logs; [`PollError::message`] is what the
/// integration page shows. Neither ever contains the security key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    /// SOAP fault "no permission 1" / "no permission 2".
    #[error("the program refused the request ({detail})")]
    NoPermission { detail: String },
    /// The program says "inactive report".
    #[error("the program says the report is inactive")]
    InactiveReport,
    /// An HTML page where a report was expected (maintenance, login, IIS
    /// error page).
    #[error("the program answered an HTML page instead of a report (HTTP {status})")]
    HtmlErrorPage { status: u16 },
    /// HTTP 5xx.
    #[error("the program's server failed (HTTP {status})")]
    ServerError { status: u16 },
    /// Another non-success HTTP status.
    #[error("the program answered HTTP {status}")]
    HttpStatus { status: u16 },
    /// A SOAP fault other than the known ones.
    #[error("the program answered a SOAP fault: {detail}")]
    SoapFault { detail: String },
    #[error("no complete answer within {secs} s")]
    Timeout { secs: u64 },
    /// DNS, connection, TLS or a broken body stream.
    #[error("could not talk to the program: {detail}")]
    Transport { detail: String },
    /// Not a report, fault or known message; or over the size limits.
    #[error("the answer is not a report Income Access would send: {detail}")]
    Malformed { detail: String },
}

/// Which of the user's two settings a "no permission" refusal points at.
///
/// The reference lists the faults "no permission 1" / "no permission 2"
/// next to their two causes, "wrong key or IP not whitelisted", in that
/// order; we read the numbers in that order (1: the key, 2: the caller's
/// IP). Which number means which is not documented publicly, so every
/// message about either still names the other remedy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermissionCause {
    /// "no permission 1".
    WrongKey,
    /// "no permission 2".
    IpNotWhitelisted,
    /// Another number, none, or an HTTP 401 / 403: either of the two.
    Unknown,
}

/// What the poller should do after a failure, besides recording it on the
/// integration (the regular schedule keeps polling in every case).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPolicy {
    /// Transient: retry with exponential backoff and jitter.
    Backoff,
    /// Retry once after this pause, then report the error and wait for the
    /// next scheduled poll.
    OnceAfter(Duration),
    /// Needs the user (or the program) to act: wait for the next scheduled
    /// poll.
    Never,
}

impl PollError {
    /// Stable snake_case code, for the integration's `last_error`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoPermission { .. } => "no_permission",
            Self::InactiveReport => "inactive_report",
            Self::HtmlErrorPage { .. } => "html_error_page",
            Self::ServerError { .. } => "server_error",
            Self::HttpStatus { .. } => "http_error",
            Self::SoapFault { .. } => "soap_fault",
            Self::Timeout { .. } => "timeout",
            Self::Transport { .. } => "transport",
            Self::Malformed { .. } => "malformed",
        }
    }

    /// The message shown on the integration, in plain language.
    pub fn message(&self) -> String {
        match self {
            Self::NoPermission { detail } => format!(
                "The program refused the report request ({detail}). In the program's back office, open Reports -> \
                 API Reports: add this server's IP address to the whitelist, and check that the security key saved \
                 here is the current one (generating a new key invalidates the old one)."
            ),
            Self::InactiveReport => "The program says this report is inactive. Check the report name in the \
                                     integration settings (AccountReport by default) and that API reports are \
                                     enabled for your account."
                .to_owned(),
            Self::HtmlErrorPage { .. } => "The program answered a web page instead of a report (maintenance or an \
                                           error on its side). clicktrail will retry."
                .to_owned(),
            Self::ServerError { status } => {
                format!("The program's server failed (HTTP {status}). clicktrail will retry.")
            }
            Self::HttpStatus { status } => format!(
                "The program answered HTTP {status}. Check the API URL in the integration settings (it ends with \
                 affreporting.asp)."
            ),
            Self::SoapFault { detail } => format!("The program answered an error: {detail}."),
            Self::Timeout { secs } => {
                format!("The program did not send the whole report within {secs} seconds. clicktrail will retry.")
            }
            Self::Transport { detail } => format!(
                "clicktrail could not talk to the program ({detail}). Check the API URL; clicktrail will retry."
            ),
            Self::Malformed { detail } => format!(
                "The program's answer could not be read as a report ({detail}). Check the API URL and the report \
                 name."
            ),
        }
    }

    /// HTML pages, timeouts, 5xx, transport failures, 408/429 and unknown
    /// faults are transient.
    ///
    /// "no permission" is retried once after a pause: one public client does
    /// so, which suggests the program answers it transiently now and then;
    /// a second refusal is surfaced, because only the user can fix a wrong
    /// key or a missing IP whitelist entry.
    pub fn retry_policy(&self) -> RetryPolicy {
        match self {
            Self::HtmlErrorPage { .. }
            | Self::ServerError { .. }
            | Self::Timeout { .. }
            | Self::Transport { .. }
            | Self::SoapFault { .. } => RetryPolicy::Backoff,
            Self::HttpStatus {
                status: 408 | 425 | 429,
            } => RetryPolicy::Backoff,
            Self::NoPermission { .. } => RetryPolicy::OnceAfter(Duration::from_secs(30)),
            Self::HttpStatus { .. } | Self::InactiveReport | Self::Malformed { .. } => {
                RetryPolicy::Never
            }
        }
    }

    /// For a refusal ([`PollError::NoPermission`]): which setting it
    /// points at. `None` for every other error.
    pub fn permission_cause(&self) -> Option<PermissionCause> {
        let Self::NoPermission { detail } = self else {
            return None;
        };
        Some(match detail.as_str() {
            "no permission 1" => PermissionCause::WrongKey,
            "no permission 2" => PermissionCause::IpNotWhitelisted,
            _ => PermissionCause::Unknown,
        })
    }

    /// Whether retrying soon may help (see [`PollError::retry_policy`]).
    pub fn retryable(&self) -> bool {
        !matches!(self.retry_policy(), RetryPolicy::Never)
    }

    /// Removes `secret` wherever the program echoed it into a detail.
    pub(crate) fn without_secret(self, secret: &str) -> Self {
        if secret.is_empty() {
            return self;
        }
        let clean = |d: String| {
            let mut d = d.replace(secret, super::settings::REDACTED);
            // A detail cut to length may end with the start of the secret.
            let cut = (4..secret.len())
                .rev()
                .find(|&n| secret.get(..n).is_some_and(|p| d.ends_with(p)));
            if let Some(n) = cut {
                d.truncate(d.len() - n);
                d.push_str(super::settings::REDACTED);
            }
            d
        };
        match self {
            Self::NoPermission { detail } => Self::NoPermission {
                detail: clean(detail),
            },
            Self::SoapFault { detail } => Self::SoapFault {
                detail: clean(detail),
            },
            Self::Transport { detail } => Self::Transport {
                detail: clean(detail),
            },
            Self::Malformed { detail } => Self::Malformed {
                detail: clean(detail),
            },
            other => other,
        }
    }
}

/// Makes a text from the answer or a client library safe to show: no
/// secrets, no control characters, at most 200 characters.
pub(crate) fn sanitize(text: &str) -> String {
    let redacted = redact_secrets(text);
    let mut out: String = redacted
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    if out.is_empty() {
        out.push_str("no details");
    }
    out
}

/// What a short text message from the program means, if it is one we know.
pub(crate) enum KnownMessage {
    NoRecords,
    Error(PollError),
}

pub(crate) fn classify_message(text: &str) -> Option<KnownMessage> {
    let lower = text.to_ascii_lowercase();
    if let Some(at) = lower.find("no permission") {
        // "no permission 1" / "2": keep the number, nothing else the
        // program may have added.
        let rest = lower.get(at + "no permission".len()..).unwrap_or("");
        let number: String = rest
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .take(3)
            .collect();
        let detail = if number.is_empty() {
            "no permission".to_owned()
        } else {
            format!("no permission {number}")
        };
        return Some(KnownMessage::Error(PollError::NoPermission { detail }));
    }
    if lower.contains("inactive report") {
        return Some(KnownMessage::Error(PollError::InactiveReport));
    }
    if lower.contains("no records") {
        return Some(KnownMessage::NoRecords);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_policies() {
        let np = PollError::NoPermission {
            detail: "no permission 1".into(),
        };
        assert_eq!(np.code(), "no_permission");
        assert!(np.message().contains("whitelist"));
        assert!(np.message().contains("API Reports"));
        assert!(np.message().contains("security key"));
        assert_eq!(
            np.retry_policy(),
            RetryPolicy::OnceAfter(Duration::from_secs(30))
        );
        for e in [
            PollError::HtmlErrorPage { status: 200 },
            PollError::ServerError { status: 503 },
            PollError::Timeout { secs: 60 },
            PollError::Transport { detail: "x".into() },
            PollError::HttpStatus { status: 429 },
        ] {
            assert!(e.retryable(), "{e}");
            assert_eq!(e.retry_policy(), RetryPolicy::Backoff);
        }
        for e in [
            PollError::InactiveReport,
            PollError::Malformed { detail: "x".into() },
            PollError::HttpStatus { status: 404 },
        ] {
            assert!(!e.retryable(), "{e}");
        }
    }

    #[test]
    fn permission_causes() {
        let cause = |d: &str| {
            PollError::NoPermission {
                detail: d.to_owned(),
            }
            .permission_cause()
        };
        assert_eq!(cause("no permission 1"), Some(PermissionCause::WrongKey));
        assert_eq!(
            cause("no permission 2"),
            Some(PermissionCause::IpNotWhitelisted)
        );
        assert_eq!(cause("no permission"), Some(PermissionCause::Unknown));
        assert_eq!(cause("HTTP 403"), Some(PermissionCause::Unknown));
        assert_eq!(PollError::InactiveReport.permission_cause(), None);
        // The fault as the parser reads it, whatever its case.
        assert!(matches!(
            classify_message("No Permission 2"),
            Some(KnownMessage::Error(e)) if e.permission_cause() == Some(PermissionCause::IpNotWhitelisted)
        ));
    }

    #[test]
    fn classification() {
        assert!(matches!(
            classify_message("No Permission 2"),
            Some(KnownMessage::Error(PollError::NoPermission { detail })) if detail == "no permission 2"
        ));
        assert!(matches!(
            classify_message(" inactive report "),
            Some(KnownMessage::Error(PollError::InactiveReport))
        ));
        assert!(matches!(
            classify_message("No Records"),
            Some(KnownMessage::NoRecords)
        ));
        assert!(classify_message("whatever").is_none());
    }

    #[test]
    fn secrets_are_removed_even_when_cut() {
        let key = "0123456789abcdef0123456789abcdef";
        let e = PollError::Malformed {
            detail: format!("x {key} y {}", &key[..10]),
        }
        .without_secret(key);
        assert_eq!(
            e,
            PollError::Malformed {
                detail: "x REDACTED y REDACTED".into()
            }
        );
        let e = PollError::SoapFault {
            detail: "abc".into(),
        }
        .without_secret(key);
        assert_eq!(
            e,
            PollError::SoapFault {
                detail: "abc".into()
            }
        );
        assert!(matches!(
            classify_message(&format!("no permission 1 {key}")),
            Some(KnownMessage::Error(PollError::NoPermission { detail })) if detail == "no permission 1"
        ));
        assert!(matches!(
            classify_message("No permission"),
            Some(KnownMessage::Error(PollError::NoPermission { detail })) if detail == "no permission"
        ));
    }

    #[test]
    fn sanitizing() {
        assert_eq!(sanitize("a\n\tb  key=secret&x"), "a b key=REDACTED&x");
        assert_eq!(sanitize(&"x".repeat(500)).len(), 200);
        assert_eq!(sanitize(""), "no details");
    }
}
