//! Checks the Google Ads JSON we build against Google's own protobuf
//! descriptors (exported from the official `google-ads` package, see
//! `proto/README.md`), with `prost-reflect`'s JSON mapping: unknown fields
//! and unknown enum values are errors. Also checks that every error code
//! our classification names is a real enum value of that API version.

use chrono::{Duration, Utc};
use clicktrail_destinations::google_ads::{self, build_body, build_conversion};
use clicktrail_destinations::kind::GOOGLE_ADS_API_VERSION;
use clicktrail_domain::Currency;
use clicktrail_domain::consent::{Consent, ConsentState};
use clicktrail_domain::delivery::{AdIdentifiers, OutboundConversion};
use clicktrail_domain::money::Amount;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor};
use serde_json::{Value, json};

const DESCRIPTORS: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proto/google_ads_v26_conversion_upload.binpb"
));

fn pool() -> DescriptorPool {
    DescriptorPool::decode(DESCRIPTORS).expect("descriptor set decodes")
}

fn message(name: &str) -> MessageDescriptor {
    let full = format!("google.ads.googleads.{GOOGLE_ADS_API_VERSION}.{name}");
    pool()
        .get_message_by_name(&full)
        .unwrap_or_else(|| panic!("{full} is in the descriptor set"))
}

/// Parses `json` as `desc` with the protobuf JSON mapping, unknown fields
/// denied.
fn parse(desc: MessageDescriptor, json: &Value) -> Result<DynamicMessage, String> {
    let text = json.to_string();
    let mut de = serde_json::Deserializer::from_str(&text);
    let options = DeserializeOptions::new().deny_unknown_fields(true);
    let msg = DynamicMessage::deserialize_with_options(desc, &mut de, &options)
        .map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(msg)
}

fn conversion() -> OutboundConversion {
    let now = Utc::now();
    OutboundConversion {
        conversion_id: "cv_proto".into(),
        event_id: "ev_proto".into(),
        event_name: "Purchase".into(),
        conversion_action: Some("customers/1234567890/conversionActions/222".into()),
        occurred_at: now - Duration::hours(1),
        click_at: Some(now - Duration::days(2)),
        value: Some(Amount::parse("19.99").unwrap()),
        currency: Some(Currency::EUR),
        page_url: Some("https://site.example/".into()),
        referrer: None,
        visitor_id: Some("v".into()),
        client_ip: Some("203.0.113.9".into()),
        user_agent: Some("UA".into()),
        ids: AdIdentifiers {
            gclid: Some("EAIaIQobChMI_gclid".into()),
            ..Default::default()
        },
        hashed_email: Some(
            "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f".into(),
        ),
        hashed_phone: Some("a".repeat(64)),
        consent: Consent::all(true),
    }
}

#[test]
fn descriptor_matches_api_version() {
    let pool = pool();
    let files: Vec<String> = pool.files().map(|f| f.name().to_owned()).collect();
    assert!(
        files
            .iter()
            .any(|f| f.contains(&format!("/{GOOGLE_ADS_API_VERSION}/services/"))),
        "{files:?}"
    );
}

#[test]
fn built_requests_are_valid_upload_click_conversions_requests() {
    let desc = message("services.UploadClickConversionsRequest");
    let now = Utc::now();
    let mut variants = vec![conversion()];
    let mut c = conversion();
    c.ids = AdIdentifiers {
        gbraid: Some("0AAAAAbraid".into()),
        ..Default::default()
    };
    c.consent = Consent::all(false);
    variants.push(c);
    let mut c = conversion();
    c.consent.ad_personalization = ConsentState::Denied;
    variants.push(c);
    let mut c = conversion();
    c.ids = AdIdentifiers {
        wbraid: Some("wbraid123".into()),
        ..Default::default()
    };
    c.value = None;
    c.consent = Consent::UNKNOWN;
    c.hashed_email = None;
    variants.push(c);
    let built: Vec<_> = variants
        .iter()
        .map(|c| build_conversion(c, now).expect("buildable"))
        .collect();
    let refs: Vec<_> = built.iter().collect();
    for validate_only in [false, true] {
        let body = build_body(&refs, validate_only);
        let msg = parse(desc.clone(), &body).unwrap_or_else(|e| panic!("{e}\n{body:#}"));
        // The parsed message holds what we meant.
        let conversions = msg.get_field_by_name("conversions").expect("conversions");
        assert_eq!(conversions.as_list().map(<[_]>::len), Some(4));
        assert_eq!(
            msg.get_field_by_name("partial_failure")
                .and_then(|v| v.as_bool()),
            Some(true)
        );
        assert_eq!(
            msg.get_field_by_name("validate_only")
                .and_then(|v| v.as_bool()),
            Some(validate_only)
        );
    }
}

#[test]
fn validation_rejects_unknown_fields_and_bad_enums() {
    let desc = message("services.UploadClickConversionsRequest");
    let cc = build_conversion(&conversion(), Utc::now()).expect("buildable");
    let good = build_body(&[&cc], false);
    assert!(parse(desc.clone(), &good).is_ok());

    let mut unknown = good.clone();
    unknown["conversions"][0]["clickId"] = json!("x");
    assert!(
        parse(desc.clone(), &unknown).is_err(),
        "unknown field accepted"
    );

    let mut snake = good.clone();
    snake["conversions"][0]["conversion_value_typo"] = json!(1);
    assert!(
        parse(desc.clone(), &snake).is_err(),
        "unknown field accepted"
    );

    let mut bad_enum = good.clone();
    bad_enum["conversions"][0]["consent"]["adUserData"] = json!("MAYBE");
    assert!(parse(desc.clone(), &bad_enum).is_err(), "bad enum accepted");

    let mut bad_type = good.clone();
    bad_type["conversions"][0]["conversionValue"] = json!("twelve");
    assert!(
        parse(desc, &bad_type).is_err(),
        "string for a double accepted"
    );
}

#[test]
fn fake_success_answer_is_a_valid_response() {
    // What the testkit's fake answers on success must be a real response.
    let desc = message("services.UploadClickConversionsResponse");
    let answer = json!({"results": [{"gclid": "g", "conversionAction": "customers/1/conversionActions/2",
                                      "conversionDateTime": "2026-03-01 12:00:00+00:00"}, {}],
                        "jobId": "4242"});
    assert!(parse(desc, &answer).is_ok());
}

fn enum_values(name: &str) -> Vec<String> {
    let full = format!("google.ads.googleads.{GOOGLE_ADS_API_VERSION}.errors.{name}");
    let pool = pool();
    let e = pool
        .get_enum_by_name(&full)
        .unwrap_or_else(|| panic!("{full}"));
    e.values().map(|v| v.name().to_owned()).collect()
}

#[test]
fn classification_codes_exist_in_the_api() {
    let upload = enum_values("ConversionUploadErrorEnum.ConversionUploadError");
    for code in google_ads::DUPLICATE_CODES
        .iter()
        .chain(google_ads::RETRY_LATER_CODES)
        .chain(google_ads::ACCOUNT_CODES)
        .chain(google_ads::PERMANENT_NAMED_CODES)
        .chain(&["TOO_MANY_CONVERSIONS_IN_REQUEST"])
    {
        assert!(
            upload.iter().any(|v| v == code),
            "{code} is not a ConversionUploadError"
        );
    }
    let quota = enum_values("QuotaErrorEnum.QuotaError");
    for code in google_ads::QUOTA_RETRY_CODES {
        assert!(
            quota.iter().any(|v| v == code),
            "{code} is not a QuotaError"
        );
    }
    let auth = enum_values("AuthenticationErrorEnum.AuthenticationError");
    assert!(auth.iter().any(|v| v == "OAUTH_TOKEN_EXPIRED"));
    let authz = enum_values("AuthorizationErrorEnum.AuthorizationError");
    assert!(authz.iter().any(|v| v == "DEVELOPER_TOKEN_NOT_APPROVED"));
}
