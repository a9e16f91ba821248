//! The embedded catalog: it loads, every file is embedded, every entry
//! serialises, the Gala Partners facts are the seed's, install validation
//! works, broken files are refused, and every postback template is one the
//! postback parser understands.

use std::collections::BTreeSet;

use clicktrail_domain::conversion::SourceStatus;
use clicktrail_domain::links::LinkPattern;
use clicktrail_domain::mapping::{Mapped, ValueSource};
use clicktrail_networks::catalog::{
    CUSTOM_KEY, Catalog, CatalogEntry, CatalogError, DataSource, FieldErrorCode, SettingKind,
    SubidPlacement, TrackingMethod, check_host_glob, embedded_file_names, is_any_host_pattern,
};
use clicktrail_networks::postback::{
    CLICK_ID_ALIASES, CURRENCY_ALIASES, EVENT_ALIASES, PostbackBody, PostbackOptions,
    STATUS_ALIASES, TIMESTAMP_ALIASES, TRANSACTION_ID_ALIASES, VALUE_ALIASES, parse_request,
};
use serde_json::{Map, Value, json};

const CATALOG_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../catalog");

fn catalog() -> Catalog {
    match Catalog::embedded() {
        Ok(c) => c,
        Err(e) => panic!("embedded catalog does not load: {e}"),
    }
}

fn entry<'a>(c: &'a Catalog, key: &str) -> &'a CatalogEntry {
    c.get(key)
        .unwrap_or_else(|| panic!("no catalog entry {key}"))
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

#[test]
fn embedded_catalog_loads_with_required_entries() {
    let c = catalog();
    for key in [
        "galapartners",
        "incomeaccess",
        "custom",
        "clickbank",
        "cj",
        "impact",
        "shareasale",
        "awin",
        "digistore24",
        "everflow",
        "tune",
        "partnerize",
        "rakuten",
    ] {
        assert_eq!(entry(&c, key).key, key);
    }
    // At least ten networks besides Gala Partners, Income Access and custom.
    assert!(c.entries().len() >= 13, "{} entries", c.entries().len());
    let keys: Vec<&str> = c.entries().iter().map(|e| e.key.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "entries() is in key order");
}

#[test]
fn every_catalog_file_is_embedded() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(CATALOG_DIR)
        .unwrap_or_else(|e| panic!("read {CATALOG_DIR}: {e}"))
        .filter_map(Result::ok)
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    let embedded: BTreeSet<String> = embedded_file_names().map(str::to_owned).collect();
    assert_eq!(
        on_disk, embedded,
        "catalog/*.toml and the EMBEDDED list in src/catalog.rs differ"
    );
}

#[test]
fn lookup_is_case_insensitive_and_by_alias() {
    let c = catalog();
    assert_eq!(entry(&c, "GalaPartners").key, "galapartners");
    assert_eq!(entry(&c, "gala-partners").key, "galapartners");
    assert_eq!(entry(&c, "gala").key, "galapartners");
    assert_eq!(entry(&c, "HasOffers").key, "tune");
    assert_eq!(entry(&c, "Income-Access").key, "incomeaccess");
    assert!(c.get("nosuchnetwork").is_none());
    assert!(c.get("").is_none());
    assert!(c.get(&"x".repeat(10_000)).is_none());
}

#[test]
fn every_entry_serialises_to_json_and_back() {
    let c = catalog();
    for e in c.entries() {
        let v = serde_json::to_value(e).unwrap_or_else(|err| panic!("{}: {err}", e.key));
        let m = v
            .as_object()
            .unwrap_or_else(|| panic!("{}: not an object", e.key));
        for k in m.keys() {
            assert!(
                k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}: field {k} is not snake_case",
                e.key
            );
        }
        assert_eq!(m["key"], json!(e.key));
        assert!(m["tracking_method"] == json!("api") || m["tracking_method"] == json!("postback"));
        let back: CatalogEntry =
            serde_json::from_value(v).unwrap_or_else(|err| panic!("{}: {err}", e.key));
        assert_eq!(&back, e);
        // The verification summary serialises too (the API may show it).
        assert!(serde_json::to_value(e.verification()).is_ok());
    }
}

#[test]
fn gala_partners_is_as_the_seed_says() {
    let c = catalog();
    let g = entry(&c, "galapartners");
    assert_eq!(g.name, "Gala Partners");
    assert_eq!(g.tracking_group.key, "incomeaccess");
    assert!(g.tracking_group.aliases.iter().any(|a| a == "galapartners"));
    assert_eq!(g.subid_param, "c");
    assert_eq!(g.subid_placement, SubidPlacement::Query);
    assert_eq!(g.tracking_method, TrackingMethod::Api);
    assert_eq!(g.connector.as_deref(), Some("incomeaccess"));

    let conv: Vec<(&str, DataSource)> = g
        .standard_conversions
        .iter()
        .map(|s| (s.event.as_str(), s.data_source))
        .collect();
    assert_eq!(
        conv,
        [
            ("OutboundClick", DataSource::Tag),
            ("Lead", DataSource::Api),
            ("Purchase", DataSource::Api)
        ]
    );
    assert!(
        g.standard_conversions[1]
            .details
            .contains("free registration")
    );
    assert!(g.standard_conversions[2].details.contains("commission"));

    assert_eq!(g.credentials.len(), 1);
    assert_eq!(g.credentials[0].name, "security_key");
    assert!(g.credentials[0].secret && g.credentials[0].required);

    let api_url = g
        .settings
        .iter()
        .find(|s| s.name == "api_url")
        .expect("api_url setting");
    assert_eq!(api_url.kind, SettingKind::Url);
    assert!(api_url.required);
    let default = |name: &str| {
        g.settings
            .iter()
            .find(|s| s.name == name)
            .and_then(|s| s.default.clone())
    };
    assert_eq!(default("report_name"), Some(json!("AccountReport")));
    assert_eq!(default("value_field"), Some(json!("totalcommission")));
    assert_eq!(default("poll_interval_minutes"), Some(json!(30)));
    assert_eq!(default("window_days"), Some(json!(7)));
    assert_eq!(default("merchant_id"), Some(json!(0)));

    match g.event_mapping.map("registration") {
        Mapped::Event { name, rule } => {
            assert_eq!(name, "Lead");
            assert_eq!(rule.value, ValueSource::None);
        }
        other => panic!("registration maps to {other:?}"),
    }
    assert!(matches!(
        g.event_mapping.map("commission"),
        Mapped::Event {
            name: "Purchase",
            ..
        }
    ));

    let steps = g.setup_steps.join("\n").to_lowercase();
    for needle in ["security key", "whitelist", "paste"] {
        assert!(
            steps.contains(needle),
            "setup steps do not mention {needle:?}"
        );
    }

    let tg = g.tracking_group();
    assert_eq!(tg.key, "incomeaccess");
    assert_eq!(tg.param, "c");
    assert!(
        tg.patterns
            .iter()
            .any(|p| p.hosts.iter().any(|h| h == "*.adsrv.eacdn.com"))
    );
    assert!(g.verification().subid_param);
}

#[test]
fn income_access_group_is_shared_and_merged() {
    let c = catalog();
    let ia = entry(&c, "incomeaccess");
    assert_eq!(ia.subid_param, "c");
    assert_eq!(ia.tracking_method, TrackingMethod::Api);
    // Media-domain redirects are recognised by their shape on any host
    // (every program has its own media domain), never by the path alone.
    let redirect = ia
        .link_patterns
        .iter()
        .find(|p| p.paths.iter().any(|p| p == "/redirect.aspx"))
        .expect("redirect pattern");
    assert!(is_any_host_pattern(redirect));
    assert_eq!(redirect.query, ["pid", "bid"]);

    let groups = c.tracking_groups();
    let keys: Vec<&str> = groups.iter().map(|g| g.key.as_str()).collect();
    assert!(!keys.contains(&CUSTOM_KEY));
    let group = groups
        .iter()
        .find(|g| g.key == "incomeaccess")
        .expect("incomeaccess group");
    assert!(group.aliases.contains(&"galapartners".to_owned()));
    assert!(
        group
            .patterns
            .iter()
            .any(|p| p.paths.iter().any(|p| p == "/redirect.aspx"))
    );
    assert_eq!(keys.iter().filter(|k| **k == "incomeaccess").count(), 1);
}

#[test]
fn every_non_custom_entry_documents_its_facts() {
    let c = catalog();
    for e in c.entries().iter().filter(|e| e.key != CUSTOM_KEY) {
        assert!(
            e.sources.iter().any(|s| s.fact == "subid_param"),
            "{}",
            e.key
        );
        assert!(e.website.is_some(), "{}", e.key);
        if e.tracking_method == TrackingMethod::Postback {
            assert!(e.postback.is_some(), "{}", e.key);
        }
        for p in &e.link_patterns {
            if is_any_host_pattern(p) {
                continue;
            }
            for h in &p.hosts {
                assert!(check_host_glob(h).is_ok(), "{}: {h}", e.key);
            }
        }
    }
}

#[test]
fn readme_lists_every_entry() {
    let readme =
        std::fs::read_to_string(format!("{CATALOG_DIR}/README.md")).expect("catalog/README.md");
    let c = catalog();
    for e in c.entries() {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", e.key)))
            .unwrap_or_else(|| panic!("README has no row for {}", e.key));
        assert!(
            row.contains(&format!("`{}`", e.subid_param)),
            "README row of {} lacks its subid param",
            e.key
        );
        let method = match e.tracking_method {
            TrackingMethod::Api => "api",
            TrackingMethod::Postback => "postback",
        };
        assert!(
            row.contains(method),
            "README row of {} lacks its tracking method",
            e.key
        );
        if e.key == CUSTOM_KEY {
            continue;
        }
        let v = e.verification();
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let opt = |b: Option<bool>| b.map_or("-", yes_no);
        let want = format!(
            "subid: {}, macros: {}, links: {}",
            yes_no(v.subid_param),
            opt(v.postback_macros),
            opt(v.link_patterns)
        );
        assert!(
            row.contains(&want),
            "README row of {} should say {want:?}",
            e.key
        );
    }
}

// ---------------------------------------------------------------------------
// Install validation
// ---------------------------------------------------------------------------

fn gala_install(
    settings: Value,
) -> Result<
    clicktrail_networks::catalog::ValidatedInstall,
    Vec<clicktrail_networks::catalog::FieldError>,
> {
    let c = catalog();
    entry(&c, "galapartners").validate_install(
        &obj(json!({"security_key": "0123456789abcdef0123456789abcdef"})),
        &obj(settings),
    )
}

fn codes(errors: &[clicktrail_networks::catalog::FieldError]) -> Vec<(String, FieldErrorCode)> {
    errors.iter().map(|e| (e.field.clone(), e.code)).collect()
}

#[test]
fn gala_install_fills_defaults() {
    let ok =
        gala_install(json!({"api_url": "https://affiliates.example.com/api/affreporting.asp"}))
            .expect("valid");
    assert_eq!(
        ok.credentials["security_key"],
        json!("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(
        ok.settings["api_url"],
        json!("https://affiliates.example.com/api/affreporting.asp")
    );
    assert_eq!(ok.settings["report_name"], json!("AccountReport"));
    assert_eq!(ok.settings["value_field"], json!("totalcommission"));
    assert_eq!(ok.settings["poll_interval_minutes"], json!(30));
    assert_eq!(ok.settings["window_days"], json!(7));
    assert_eq!(ok.settings["merchant_id"], json!(0));
    assert_eq!(ok.tracking_group.key, "incomeaccess");
    assert_eq!(ok.tracking_group.param, "c");

    // Local test servers are http; ints may come as strings; enums are
    // matched case-insensitively and stored canonically.
    let ok = gala_install(json!({
        "api_url": "http://127.0.0.1:9000/api/affreporting.asp",
        "poll_interval_minutes": "15",
        "report_name": "acidreport",
        "merchant_id": null,
    }))
    .expect("valid");
    assert_eq!(ok.settings["poll_interval_minutes"], json!(15));
    assert_eq!(ok.settings["report_name"], json!("ACIDReport"));
    assert_eq!(ok.settings["merchant_id"], json!(0));
}

#[test]
fn gala_install_errors() {
    let cases: Vec<(Value, &str, FieldErrorCode)> = vec![
        (json!({}), "settings.api_url", FieldErrorCode::Required),
        (
            json!({"api_url": "  "}),
            "settings.api_url",
            FieldErrorCode::Required,
        ),
        (
            json!({"api_url": "ftp://example.com/affreporting.asp"}),
            "settings.api_url",
            FieldErrorCode::InvalidUrl,
        ),
        (
            json!({"api_url": "/api/affreporting.asp"}),
            "settings.api_url",
            FieldErrorCode::InvalidUrl,
        ),
        (
            json!({"api_url": "not a url"}),
            "settings.api_url",
            FieldErrorCode::InvalidUrl,
        ),
        (
            json!({"api_url": "https://x.example/api/affreporting.asp?key=abc"}),
            "settings.api_url",
            FieldErrorCode::InvalidUrl,
        ),
        (
            json!({"api_url": 42}),
            "settings.api_url",
            FieldErrorCode::InvalidType,
        ),
        (
            json!({"api_url": "https://x.example/a", "poll_interval_minutes": 1}),
            "settings.poll_interval_minutes",
            FieldErrorCode::OutOfRange,
        ),
        (
            json!({"api_url": "https://x.example/a", "window_days": 1.5}),
            "settings.window_days",
            FieldErrorCode::InvalidType,
        ),
        (
            json!({"api_url": "https://x.example/a", "report_name": "Nope"}),
            "settings.report_name",
            FieldErrorCode::InvalidOption,
        ),
        (
            json!({"api_url": "https://x.example/a", "colour": "red"}),
            "settings.colour",
            FieldErrorCode::UnknownField,
        ),
        (
            json!({"api_url": "https://x.example/a", "value_field": "x".repeat(2000)}),
            "settings.value_field",
            FieldErrorCode::TooLong,
        ),
    ];
    for (settings, field, code) in cases {
        let errs = gala_install(settings.clone()).expect_err(&format!("{settings} should fail"));
        assert!(
            codes(&errs).contains(&(field.to_owned(), code)),
            "{settings}: {:?}",
            codes(&errs)
        );
        for e in &errs {
            assert!(!e.message.is_empty());
            assert_eq!(
                serde_json::to_value(e.code).ok(),
                Some(json!(e.code.as_str()))
            );
        }
    }
}

#[test]
fn gala_install_credential_errors_all_at_once() {
    let c = catalog();
    let g = entry(&c, "galapartners");
    let errs = g
        .validate_install(
            &obj(json!({"password": "x"})),
            &obj(json!({"api_url": "ftp://x", "bogus": 1})),
        )
        .expect_err("invalid");
    let got = codes(&errs);
    for want in [
        ("credentials.password", FieldErrorCode::UnknownField),
        ("credentials.security_key", FieldErrorCode::Required),
        ("settings.api_url", FieldErrorCode::InvalidUrl),
        ("settings.bogus", FieldErrorCode::UnknownField),
    ] {
        assert!(
            got.contains(&(want.0.to_owned(), want.1)),
            "{got:?} lacks {want:?}"
        );
    }
    let errs = g
        .validate_install(
            &obj(json!({"security_key": "abc def"})),
            &obj(json!({"api_url": "https://x.example/a"})),
        )
        .expect_err("space in key");
    assert_eq!(
        codes(&errs),
        [(
            "credentials.security_key".to_owned(),
            FieldErrorCode::InvalidFormat
        )]
    );
    let errs = g
        .validate_install(
            &obj(json!({"security_key": 12})),
            &obj(json!({"api_url": "https://x.example/a"})),
        )
        .expect_err("number key");
    assert_eq!(
        codes(&errs),
        [(
            "credentials.security_key".to_owned(),
            FieldErrorCode::InvalidType
        )]
    );
    // Keys are trimmed.
    let ok = g
        .validate_install(
            &obj(json!({"security_key": "  abc \n"})),
            &obj(json!({"api_url": "https://x.example/a"})),
        )
        .expect("valid");
    assert_eq!(ok.credentials["security_key"], json!("abc"));
}

#[test]
fn custom_install_builds_its_tracking_group() {
    let c = catalog();
    let custom = entry(&c, "custom");
    let ok = custom
        .validate_install(
            &Map::new(),
            &obj(json!({"tracking_group": "mynetwork", "subid_param": "sub_id", "hosts": ["track.mynetwork.com", "*.MyNetwork.io"]})),
        )
        .expect("valid");
    assert_eq!(ok.tracking_group.key, "mynetwork");
    assert_eq!(ok.tracking_group.param, "sub_id");
    assert_eq!(ok.tracking_group.patterns.len(), 1);
    assert_eq!(
        ok.tracking_group.patterns[0].hosts,
        ["track.mynetwork.com", "*.mynetwork.io"]
    );
    assert_eq!(
        custom.install_tracking_group(&ok.settings),
        ok.tracking_group
    );

    let ok = custom
        .validate_install(
            &Map::new(),
            &obj(json!({"tracking_group": "x", "subid_param": "s1"})),
        )
        .expect("valid");
    assert!(ok.tracking_group.patterns.is_empty());

    let bad = |settings: Value| {
        custom
            .validate_install(&Map::new(), &obj(settings))
            .expect_err("invalid")
    };
    // A bare install takes the entry's own group and subid parameter,
    // which are the settings' defaults.
    let bare = custom
        .validate_install(&Map::new(), &Map::new())
        .expect("a bare install is valid");
    assert_eq!(bare.tracking_group.key, custom.tracking_group.key);
    assert_eq!(bare.tracking_group.param, custom.subid_param);
    assert_eq!(bare.settings["tracking_group"], json!("custom"));
    assert_eq!(bare.settings["subid_param"], json!("subid"));
    assert!(bare.tracking_group.patterns.is_empty());
    assert!(
        codes(&bad(
            json!({"tracking_group": "My Group", "subid_param": "s1"})
        ))
        .contains(&(
            "settings.tracking_group".to_owned(),
            FieldErrorCode::InvalidFormat
        ))
    );
    assert!(
        codes(&bad(
            json!({"tracking_group": "Upper", "subid_param": "s1"})
        ))
        .contains(&(
            "settings.tracking_group".to_owned(),
            FieldErrorCode::InvalidFormat
        ))
    );
    assert!(
        codes(&bad(json!({"tracking_group": "x", "subid_param": "a b"}))).contains(&(
            "settings.subid_param".to_owned(),
            FieldErrorCode::InvalidFormat
        ))
    );
    for hosts in [
        json!(["*.com"]),
        json!(["*"]),
        json!(["evil.*.com"]),
        json!(["a b.com"]),
        json!("track.x.com"),
        json!([1]),
    ] {
        let errs = bad(json!({"tracking_group": "x", "subid_param": "s1", "hosts": hosts}));
        assert!(
            errs.iter().any(|e| e.field == "settings.hosts"),
            "{hosts}: {errs:?}"
        );
    }
}

#[test]
fn postback_url_replaces_only_the_placeholder() {
    let c = catalog();
    let cb = entry(&c, "clickbank");
    let url = cb
        .postback_url("https://ct.example.com/postback/TOKEN")
        .expect("clickbank takes postbacks");
    assert!(url.starts_with("https://ct.example.com/postback/TOKEN?click_id={tid}"));
    assert!(!url.contains("{postback_url}"));
    assert!(
        entry(&c, "galapartners")
            .postback_url("https://x/postback/t")
            .is_none()
    );
}

// ---------------------------------------------------------------------------
// Broken catalog files are refused
// ---------------------------------------------------------------------------

fn gala_text() -> String {
    std::fs::read_to_string(format!("{CATALOG_DIR}/galapartners.toml")).expect("galapartners.toml")
}

fn load_one(name: &str, text: &str) -> Result<Catalog, CatalogError> {
    Catalog::from_files([(name, text)])
}

#[test]
fn broken_files_are_refused() {
    let good = gala_text();
    assert!(load_one("galapartners.toml", &good).is_ok());

    let cases: Vec<(&str, String)> = vec![
        (
            "unknown field",
            good.replacen(
                "subid_param = \"c\"",
                "subid_param = \"c\"\nsubid_parm = \"c\"",
                1,
            ),
        ),
        (
            "empty subid",
            good.replacen("subid_param = \"c\"", "subid_param = \"\"", 1),
        ),
        (
            "generic host",
            good.replacen("\"*.adsrv.eacdn.com\"", "\"*.com\"", 1),
        ),
        (
            "wildcard in a later label",
            good.replacen("\"*.adsrv.eacdn.com\"", "\"adsrv.*.com\"", 1),
        ),
        (
            "relative path",
            good.replacen("paths = [\"/C.ashx\"]", "paths = [\"C.ashx\"]", 1),
        ),
        (
            "bad mapping name",
            good.replacen(
                "commission = { event = \"Purchase\" }",
                "commission = { event = \"Pur chase\" }",
                1,
            ),
        ),
        (
            "unmapped default event",
            good.replacen(
                "default_postback_event = \"commission\"",
                "default_postback_event = \"nothing\"",
                1,
            ),
        ),
        (
            "conversion not mapped",
            good.replacen(
                "source_event = \"commission\"",
                "source_event = \"deposit\"",
                1,
            ),
        ),
        (
            "bad kind",
            good.replacen("kind = \"url\"", "kind = \"uri\"", 1),
        ),
        (
            "bad default",
            good.replacen("default = 30", "default = \"thirty\"", 1),
        ),
        (
            "default out of range",
            good.replacen("default = 30", "default = 3", 1),
        ),
        (
            "bad source fact",
            good.replacen("fact = \"website\"", "fact = \"colour\"", 1),
        ),
        (
            "no sources for subid",
            good.replace("fact = \"subid_param\"", "fact = \"setup_steps\""),
        ),
        (
            "bad website",
            good.replacen(
                "website = \"http://www.galapartners.co.uk/\"",
                "website = \"galapartners\"",
                1,
            ),
        ),
        (
            "upper-case key",
            good.replacen("key = \"galapartners\"", "key = \"GalaPartners\"", 1),
        ),
        (
            "postback template without placeholder",
            format!("{good}\n[postback]\ntemplate = \"https://x.example/pb?click_id={{c}}\"\n"),
        ),
        (
            "postback method without template",
            good.replacen(
                "tracking_method = \"api\"",
                "tracking_method = \"postback\"",
                1,
            ),
        ),
        ("not toml", "key = ".to_owned()),
    ];
    for (what, text) in cases {
        assert!(
            text != good || what == "not toml",
            "{what}: the replacement did not apply"
        );
        match load_one("galapartners.toml", &text) {
            Ok(_) => panic!("{what}: accepted"),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }

    assert!(
        matches!(
            load_one("gala.toml", &good),
            Err(CatalogError::Parse { .. })
        ),
        "file name must match the key"
    );
    let other = good.replacen("key = \"galapartners\"", "key = \"galatwo\"", 1);
    assert!(matches!(
        Catalog::from_files([
            ("galapartners.toml", good.as_str()),
            ("galatwo.toml", other.as_str())
        ]),
        Err(CatalogError::DuplicateKey(_))
    ));
    let clash = other
        .replacen("aliases = [\"gala\"]", "aliases = []", 1)
        .replacen("subid_param = \"c\"", "subid_param = \"d\"", 1);
    assert!(
        matches!(
            Catalog::from_files([
                ("galapartners.toml", good.as_str()),
                ("galatwo.toml", clash.as_str())
            ]),
            Err(CatalogError::Invalid { .. })
        ),
        "entries of one tracking group must share the subid parameter"
    );
}

// ---------------------------------------------------------------------------
// Templates and the postback parser agree
// ---------------------------------------------------------------------------

fn field_of(name: &str) -> Option<&'static str> {
    let n = clicktrail_domain::mapping::normalise_name(name);
    let in_list = |list: &[&str]| {
        list.iter()
            .any(|a| clicktrail_domain::mapping::normalise_name(a) == n)
    };
    [
        ("click_id", CLICK_ID_ALIASES),
        ("value", VALUE_ALIASES),
        ("currency", CURRENCY_ALIASES),
        ("transaction_id", TRANSACTION_ID_ALIASES),
        ("event", EVENT_ALIASES),
        ("status", STATUS_ALIASES),
        ("timestamp", TIMESTAMP_ALIASES),
    ]
    .into_iter()
    .find(|(_, list)| in_list(list))
    .map(|(f, _)| f)
}

#[test]
fn every_postback_template_round_trips_through_the_parser() {
    let c = catalog();
    let mut checked = 0;
    for e in c.entries() {
        let Some(url) = e.postback_url("https://ct.example.com/postback/TOKEN") else {
            continue;
        };
        let parsed = url::Url::parse(&url).unwrap_or_else(|err| panic!("{}: {err}", e.key));
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let opts = PostbackOptions {
            subid_param: Some(&e.subid_param),
            default_event: &e.default_postback_event,
        };

        // Unfilled: every macro counts as absent.
        let raw_query = parsed.query().unwrap_or_default().to_owned();
        let unfilled = parse_request(Some(&raw_query), PostbackBody::Empty, &opts)
            .unwrap_or_else(|err| panic!("{}: unfilled template does not parse: {err}", e.key));
        assert_eq!(
            unfilled.click_id, None,
            "{}: the click id macro is not recognised as a macro",
            e.key
        );
        assert_eq!(unfilled.transaction_id, None, "{}", e.key);
        assert_eq!(unfilled.value, None, "{}", e.key);

        // Filled the way the network would.
        let mut fields = BTreeSet::new();
        let mut filled = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            let field = field_of(k)
                .unwrap_or_else(|| panic!("{}: the parser does not know the parameter {k}", e.key));
            assert!(
                fields.insert(field),
                "{}: two parameters for {field}",
                e.key
            );
            let is_constant = clicktrail_networks::postback::is_present(v);
            let sample = match field {
                _ if is_constant => v.clone(),
                "click_id" => "ct_Abc123def456ghi789".to_owned(),
                "value" => "12.50".to_owned(),
                "currency" => "EUR".to_owned(),
                "transaction_id" => format!("T-{}", e.key),
                "event" => "Sale".to_owned(),
                "status" => "APPROVED".to_owned(),
                "timestamp" => "1700000000".to_owned(),
                _ => unreachable!(),
            };
            filled.append_pair(k, &sample);
        }
        assert!(
            fields.contains("click_id"),
            "{}: the template carries no click id",
            e.key
        );
        let query = filled.finish();
        let ev = parse_request(Some(&query), PostbackBody::Empty, &opts)
            .unwrap_or_else(|err| panic!("{}: {err}", e.key));
        assert_eq!(
            ev.click_id.as_deref(),
            Some("ct_Abc123def456ghi789"),
            "{}",
            e.key
        );
        if fields.contains("value") {
            assert_eq!(
                ev.value.map(|d| d.to_string()).as_deref(),
                Some("12.5"),
                "{}",
                e.key
            );
        }
        if fields.contains("transaction_id") {
            assert_eq!(ev.transaction_id, Some(format!("T-{}", e.key)), "{}", e.key);
        }
        if fields.contains("event") {
            assert_eq!(ev.source_event, "Sale", "{}", e.key);
            assert!(
                !matches!(e.event_mapping.map(&ev.source_event), Mapped::Unmapped),
                "{}: sale is unmapped",
                e.key
            );
        } else {
            assert_eq!(ev.source_event, e.default_postback_event, "{}", e.key);
        }
        assert_eq!(ev.status, SourceStatus::Approved);
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} postback templates");
}

#[test]
fn validated_income_access_settings_are_what_the_connector_reads() {
    use clicktrail_networks::incomeaccess::{IncomeAccessSettings, SecurityKey};
    let c = catalog();
    for key in ["galapartners", "incomeaccess"] {
        let e = entry(&c, key);
        let ok = e
            .validate_install(
                &obj(json!({"security_key": "0123456789abcdef0123456789abcdef"})),
                &obj(json!({
                    "api_url": "https://affiliates.example.com/api/affreporting.asp",
                    "report_format": "CSV",
                    "period": "day",
                    "window_days": "14",
                })),
            )
            .unwrap_or_else(|errs| panic!("{key}: {errs:?}"));
        let settings = IncomeAccessSettings::from_json(&Value::Object(ok.settings.clone()))
            .unwrap_or_else(|err| panic!("{key}: the connector refuses {:?}: {err}", ok.settings));
        assert!(settings.validate().is_ok(), "{key}");
        assert_eq!(settings.window_days, 14);
        assert_eq!(settings.value_field, "totalcommission");
        let security_key = ok.credentials["security_key"].as_str().expect("string");
        assert!(SecurityKey::new(security_key).is_ok());
    }
}

/// The link rules' shared fixture (`tests/fixtures/links.json`) tests the
/// Income Access group the tag and the server really use: the catalog's.
#[test]
fn income_access_links_are_the_shared_fixtures() {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{CATALOG_DIR}/../tests/fixtures/links.json"))
            .expect("tests/fixtures/links.json"),
    )
    .expect("fixture JSON");
    let group = fixture["groups"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["key"] == "incomeaccess"))
        .expect("the fixture's incomeaccess group");
    let want: Vec<LinkPattern> =
        serde_json::from_value(group["patterns"].clone()).expect("patterns");
    let c = catalog();
    for key in ["incomeaccess", "galapartners"] {
        let g = entry(&c, key).tracking_group();
        assert_eq!(g.key, "incomeaccess");
        assert_eq!(g.param, group["param"].as_str().unwrap_or_default());
        assert_eq!(g.patterns, want, "{key}: catalog and fixture disagree");
        // Every program's links, on its own media domain too.
        for link in [
            "https://media.galapartners.co.uk/redirect.aspx?pid=91731&bid=1195",
            "https://media.highaffiliates.com/redirect.aspx?pid=15225&lpid=245&bid=1825",
            "https://ads.betfair.com/redirect.aspx?pid=1260644&bid=8663",
            "https://wlpinnacle.adsrv.eacdn.com/C.ashx?btag=a_31512b_18926c_&affid=25020&c=",
        ] {
            let url = url::Url::parse(link).expect("url");
            assert!(g.matches_url(&url), "{key}: {link}");
        }
    }
}

#[test]
fn any_host_patterns_need_a_distinctive_shape() {
    let base = std::fs::read_to_string(format!("{CATALOG_DIR}/incomeaccess.toml"))
        .expect("incomeaccess.toml");
    let shape = "hosts = [\"*\"]\npaths = [\"/redirect.aspx\"]\nquery = [\"pid\", \"bid\"]";
    assert!(base.contains(shape), "the entry's shape pattern moved");
    assert!(Catalog::from_files([("incomeaccess.toml", base.as_str())]).is_ok());
    for (bad, why) in [
        (
            "hosts = [\"*\"]\npaths = [\"/redirect.aspx\"]\nquery = [\"pid\"]",
            "one parameter",
        ),
        ("hosts = [\"*\"]\nquery = [\"pid\", \"bid\"]", "no path"),
        (
            "hosts = [\"*\"]\npaths = [\"/r*\"]\nquery = [\"pid\", \"bid\"]",
            "path glob",
        ),
        (
            "hosts = [\"*\", \"x.example.com\"]\npaths = [\"/redirect.aspx\"]\nquery = [\"pid\", \"bid\"]",
            "not alone",
        ),
        (
            "hosts = [\"*.com\"]\npaths = [\"/redirect.aspx\"]\nquery = [\"pid\", \"bid\"]",
            "too generic",
        ),
    ] {
        let toml = base.replace(shape, bad);
        assert!(
            Catalog::from_files([("incomeaccess.toml", toml.as_str())]).is_err(),
            "{why} accepted"
        );
    }
}
