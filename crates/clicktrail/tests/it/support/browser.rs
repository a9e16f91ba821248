//! A small browser for the dashboard tests: keeps cookies, reads CSRF
//! tokens out of forms, never follows redirects by itself (tests look at
//! them).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};

pub const ADMIN_EMAIL: &str = "admin@example.com";
pub const ADMIN_PASSWORD: &str = "correct horse battery";

/// One answer.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> Option<&str> {
        self.headers.get(LOCATION).and_then(|v| v.to_str().ok())
    }

    /// The first `_csrf` value of the page's forms.
    pub fn csrf(&self) -> String {
        attr_after(&self.body, "name=\"_csrf\" value=\"").unwrap_or_default()
    }

    /// Whether the page shows an error for `field` (next to it).
    pub fn has_error_for(&self, field: &str) -> bool {
        self.body.contains(&format!("data-error-for=\"{field}\""))
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    }
}

/// The text after `marker` up to the next `"`.
pub fn attr_after(body: &str, marker: &str) -> Option<String> {
    let at = body.find(marker)? + marker.len();
    let rest = &body[at..];
    Some(rest[..rest.find('"')?].to_owned())
}

pub struct Browser {
    pub base: String,
    http: reqwest::Client,
    cookies: Mutex<BTreeMap<String, String>>,
    /// Sent as X-Forwarded-For (only honoured from trusted proxies).
    pub forwarded_for: Option<String>,
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .no_proxy()
                .build()
                .expect("client"),
            cookies: Mutex::new(BTreeMap::new()),
            forwarded_for: None,
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .lock()
            .expect("cookies")
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().expect("cookies").get(name).cloned()
    }

    pub fn forget_cookies(&self) {
        self.cookies.lock().expect("cookies").clear();
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.cookies
            .lock()
            .expect("cookies")
            .insert(name.to_owned(), value.to_owned());
    }

    async fn finish(&self, resp: reqwest::Response) -> Page {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        for c in headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            let first = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = first.split_once('=') {
                let mut jar = self.cookies.lock().expect("cookies");
                let expired = c.to_ascii_lowercase().contains("max-age=0");
                if v.is_empty() || expired {
                    jar.remove(k.trim());
                } else {
                    jar.insert(k.trim().to_owned(), v.to_owned());
                }
            }
        }
        let body = resp.text().await.unwrap_or_default();
        Page {
            status,
            headers,
            body,
        }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let url = if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{}", self.base, path)
        };
        let mut r = self
            .http
            .request(method, url)
            .header(COOKIE, self.cookie_header());
        if let Some(f) = &self.forwarded_for {
            r = r.header("x-forwarded-for", f);
        }
        r
    }

    pub async fn get(&self, path: &str) -> Page {
        let resp = self
            .req(reqwest::Method::GET, path)
            .send()
            .await
            .expect("GET");
        self.finish(resp).await
    }

    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let resp = self
            .req(reqwest::Method::POST, path)
            .form(fields)
            .send()
            .await
            .expect("POST");
        self.finish(resp).await
    }

    /// POSTs a multipart form: text fields and one file.
    pub async fn post_multipart(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        file: (&str, &str, &str),
    ) -> Page {
        let boundary = "----clicktrailtestboundary7MA4YWxkTrZu0gW";
        let mut body = String::new();
        for (k, v) in fields {
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
            ));
        }
        let (name, filename, content) = file;
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: text/csv\r\n\r\n{content}\r\n--{boundary}--\r\n"
        ));
        let resp = self
            .req(reqwest::Method::POST, path)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .expect("POST multipart");
        self.finish(resp).await
    }

    /// GETs `form_page`, then POSTs `fields` plus its CSRF token to `action`.
    pub async fn submit(&self, form_page: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let page = self.get(form_page).await;
        assert_eq!(page.status, 200, "GET {form_page}: {}", page.body);
        let csrf = page.csrf();
        assert!(!csrf.is_empty(), "no CSRF token on {form_page}");
        let mut all: Vec<(&str, &str)> = vec![("_csrf", &csrf)];
        all.extend_from_slice(fields);
        self.post(action, &all).await
    }

    /// Creates the first admin (on a fresh server) and logs in.
    pub async fn setup_and_login(&self) {
        let p = self
            .submit(
                "/setup",
                "/setup",
                &[
                    ("email", ADMIN_EMAIL),
                    ("password", ADMIN_PASSWORD),
                    ("password_confirm", ADMIN_PASSWORD),
                ],
            )
            .await;
        assert_eq!(p.status, 303, "setup: {}", p.body);
        self.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    }

    pub async fn login(&self, email: &str, password: &str) {
        let p = self
            .submit(
                "/login",
                "/login",
                &[("email", email), ("password", password)],
            )
            .await;
        assert_eq!(p.status, 303, "login: {}", p.body);
    }

    /// Creates a property through the dashboard; returns its id.
    pub async fn create_property(&self, name: &str, domains: &str, currency: &str) -> String {
        let p = self
            .submit(
                "/properties/new",
                "/properties/new",
                &[("name", name), ("domains", domains), ("currency", currency)],
            )
            .await;
        assert_eq!(p.status, 303, "create property: {}", p.body);
        let loc = p.location().expect("location");
        loc.trim_start_matches("/p/")
            .split('?')
            .next()
            .expect("id")
            .to_owned()
    }
}
