#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime};

use http::{header, HeaderMap, HeaderValue, StatusCode};

use super::*;

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn read(status: u16, pairs: &[(&str, &str)]) -> Option<UpstreamWarnings> {
    UpstreamWarnings::read(StatusCode::from_u16(status).unwrap(), &headers(pairs))
}

#[test]
fn a_response_without_warnings_has_none() {
    assert_eq!(read(200, &[]), None);
    // Scope and information alone, or a Warning on a 200, are not looked for.
    let quiet = [
        ("x-ms-throttle-scope", "Tenant/ApplicationId"),
        ("warning", "199 - \"x\""),
        ("content-type", "application/json"),
    ];
    assert_eq!(read(200, &quiet), None);
    // A 206 without a Warning says nothing about being incomplete.
    assert_eq!(read(206, &[]), None);
}

#[test]
fn throttle_headers_as_sent() {
    let w = read(
        200,
        &[
            ("x-ms-throttle-limit-percentage", " 0.9 "),
            (
                "x-ms-throttle-scope",
                "Tenant_Application/ReadWrite/app/tenant",
            ),
            ("x-ms-throttle-information", "x".repeat(1000).as_str()),
        ],
    )
    .unwrap();
    assert!(w.throttled);
    assert_eq!(w.throttle_percent, Some(0.9));
    assert_eq!(
        w.throttle_scope.as_deref(),
        Some("Tenant_Application/ReadWrite/app/tenant")
    );
    assert_eq!(w.throttle_information.unwrap().len(), TEXT_LIMIT, "capped");
    assert!(!w.retry_after_sent && !w.partial);

    let odd = read(200, &[("x-ms-throttle-limit-percentage", "lots")]).unwrap();
    assert!(odd.throttled, "counted though unreadable");
    assert_eq!(odd.throttle_percent, None);
    let negative = read(200, &[("x-ms-throttle-limit-percentage", "-1")]).unwrap();
    assert_eq!(negative.throttle_percent, None);
}

#[test]
fn retry_after_in_seconds_or_as_a_date() {
    let secs = |v: &str| read(200, &[("retry-after", v)]).unwrap().retry_after;
    assert_eq!(secs("120"), Some(120));
    assert_eq!(secs("soon"), None);
    let in_30s = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    assert!(secs(&in_30s).is_some_and(|s| (28..=30).contains(&s)));
    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(30));
    assert_eq!(secs(&past), Some(0));
    assert!(
        read(429, &[("retry-after", "soon")])
            .unwrap()
            .retry_after_sent
    );
}

#[test]
fn a_206_with_a_warning_is_partial_and_its_text_kept() {
    let w = read(206, &[("warning", "199 - \"Microsoft/MCAS/504/10000\"")]).unwrap();
    assert!(w.partial);
    assert_eq!(
        w.warning.as_deref(),
        Some("199 - \"Microsoft/MCAS/504/10000\"")
    );
    // Cut at a char boundary.
    let long = format!("199 - \"{}\"", "é".repeat(300));
    let mut map = HeaderMap::new();
    map.insert(
        header::WARNING,
        HeaderValue::from_bytes(long.as_bytes()).unwrap(),
    );
    let w = UpstreamWarnings::read(StatusCode::PARTIAL_CONTENT, &map).unwrap();
    let text = w.warning.unwrap();
    assert!(
        text.len() <= TEXT_LIMIT && text.len() > TEXT_LIMIT - 2,
        "{}",
        text.len()
    );
}

#[test]
fn counts_keep_the_last_values() {
    let counts = WarningCounts::default();
    assert!(!counts.any());
    assert_eq!(counts.throttle_percent(), None);
    assert_eq!(counts.retry_after_secs(), None);
    counts.record(&read(200, &[("x-ms-throttle-limit-percentage", "0.85")]).unwrap());
    counts.record(&read(200, &[("x-ms-throttle-limit-percentage", "1.2")]).unwrap());
    counts.record(&read(200, &[("x-ms-throttle-limit-percentage", "?")]).unwrap());
    counts.record(&read(429, &[("retry-after", "0")]).unwrap());
    counts.record(&read(206, &[("warning", "199 - \"x\"")]).unwrap());
    assert!(counts.any());
    assert_eq!(counts.throttled.load(Ordering::Relaxed), 3);
    let (percent, at) = counts.throttle_percent().unwrap();
    assert_eq!(percent, 1.2, "the last readable one");
    assert!(at > 1_700_000_000);
    assert_eq!(counts.retry_after.load(Ordering::Relaxed), 1);
    assert_eq!(counts.retry_after_secs(), Some(0), "0 is a value");
    assert_eq!(counts.partial.load(Ordering::Relaxed), 1);
    assert_eq!(std::mem::size_of::<WarningCounts>(), 48);
}
