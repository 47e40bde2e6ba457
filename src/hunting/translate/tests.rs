use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::hunting::body::HuntingBody;
use http_body::Body;
use tokio::time::Instant;

const GRAPH: &str = r#"{
  "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.security.huntingQueryResults",
  "schema": [
    {"name": "Timestamp", "type": "DateTime"},
    { "Name" : "FileName" , "Type" : "String" },
    {"name": "InitiatingProcessFileName", "type": "String"},
    {"name": "AdditionalFields", "type": "Dynamic"}
  ],
  "results": [
    {"Timestamp": "2024-03-26T09:39:50.7688641Z", "FileName": "cmd.exe", "InitiatingProcessFileName": "powershell.exe", "AdditionalFields": {"a": [1, 2, {"b": "]}"}], "c": null}},
    {"Timestamp":"2024-03-26T09:39:49.4353788Z","FileName":"caf\u00e9 \"quoted\" \\ naïve.exe","InitiatingProcessFileName":"explorer.exe","AdditionalFields":[]}
  ],
  "unknown": {"x": [true, false, null, -1.5e3, "s"]},
  "count": 2
}"#;

fn expected() -> Value {
    json!({
        "Schema": [
            {"Name": "Timestamp", "Type": "DateTime"},
            {"Name": "FileName", "Type": "String"},
            {"Name": "InitiatingProcessFileName", "Type": "String"},
            {"Name": "AdditionalFields", "Type": "Dynamic"}
        ],
        "Results": [
            {"Timestamp": "2024-03-26T09:39:50.7688641Z", "FileName": "cmd.exe",
             "InitiatingProcessFileName": "powershell.exe",
             "AdditionalFields": {"a": [1, 2, {"b": "]}"}], "c": null}},
            {"Timestamp": "2024-03-26T09:39:49.4353788Z",
             "FileName": "café \"quoted\" \\ naïve.exe",
             "InitiatingProcessFileName": "explorer.exe", "AdditionalFields": []}
        ],
        "Stats": {"ExecutionTime": 1.234}
    })
}

const TIME: Duration = Duration::from_millis(1234);

/// The input fed in the given pieces; the output bytes, or the first error.
fn run(pieces: &[&[u8]]) -> Result<Vec<u8>, TranslateError> {
    let mut t = Translator::new();
    let mut out = Vec::new();
    for piece in pieces {
        t.feed(Bytes::copy_from_slice(piece), &mut out)?;
        assert!(t.held() <= HELD_BOUND);
    }
    out.push(t.finish(TIME)?);
    Ok(out.concat())
}

fn whole(input: &[u8]) -> Result<Vec<u8>, TranslateError> {
    run(&[input])
}

fn parsed(out: &[u8]) -> Value {
    serde_json::from_slice(out).expect("output is JSON")
}

#[test]
fn realistic_answer_becomes_the_legacy_document() {
    let out = whole(GRAPH.as_bytes()).expect("translates");
    assert_eq!(parsed(&out), expected());
    let text = String::from_utf8(out).expect("utf-8");
    // Rows pass byte for byte, whitespace included.
    let rows_start = GRAPH.find("[\n    {\"Timestamp\"").expect("rows");
    let rows_end = GRAPH.find("\n  ],\n  \"unknown\"").expect("rows end") + 4;
    assert!(text.contains(&GRAPH[rows_start..rows_end]));
    assert!(!text.contains("odata") && !text.contains("unknown") && !text.contains("count"));
    // Members in arrival order, Stats last.
    assert!(text.starts_with("{\"Schema\":[{\"Name\": \"Timestamp\", \"Type\": \"DateTime\"},"));
    assert!(text.ends_with(",\"Stats\":{\"ExecutionTime\":1.234}}"));
}

#[test]
fn every_byte_boundary_gives_the_same_output() {
    let input = GRAPH.as_bytes();
    let reference = whole(input).expect("translates");
    for cut in 0..=input.len() {
        let (a, b) = input.split_at(cut);
        assert_eq!(run(&[a, b]).expect("translates"), reference, "cut at {cut}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(run(&bytes).expect("translates"), reference);
    for size in 2..8 {
        let chunks: Vec<&[u8]> = input.chunks(size).collect();
        assert_eq!(
            run(&chunks).expect("translates"),
            reference,
            "chunks of {size}"
        );
    }
}

proptest! {
    #[test]
    fn random_splits_give_the_same_output(mut cuts in proptest::collection::vec(0..GRAPH.len(), 0..40)) {
        let input = GRAPH.as_bytes();
        cuts.sort_unstable();
        let mut pieces = Vec::new();
        let mut last = 0;
        for cut in cuts {
            pieces.push(&input[last..cut]);
            last = cut;
        }
        pieces.push(&input[last..]);
        prop_assert_eq!(run(&pieces).expect("translates"), whole(input).expect("translates"));
    }
}

#[test]
fn schema_after_results_keeps_the_arrival_order() {
    let input =
        br#"{"results":[{"A":1}],"@odata.context":"x","schema":[{"type":"Int","name":"A"}]}"#;
    let out = whole(input).expect("translates");
    assert_eq!(
        String::from_utf8(out.clone()).expect("utf-8"),
        r#"{"Results":[{"A":1}],"Schema":[{"Type":"Int","Name":"A"}],"Stats":{"ExecutionTime":1.234}}"#
    );
    assert_eq!(
        parsed(&out),
        json!({"Schema": [{"Name": "A", "Type": "Int"}], "Results": [{"A": 1}], "Stats": {"ExecutionTime": 1.234}})
    );
}

#[test]
fn escapes_and_unicode_in_keys_and_values() {
    let input = "{\"sch\\u0065ma\":[{\"n\\u0061me\":\"Fil\\\"e\\u00e9é\",\"type\":\"String\",\"extra\":{\"name\":1}}],\
        \"r\u{e9}sultats\":[\"]\"],\"results\":[{\"k\\\"\\\\é\\u00e9\":\"v\\\\\\\"]}\",\"日本\":[[[]]]}]}";
    let out = whole(input.as_bytes()).expect("translates");
    assert_eq!(
        parsed(&out),
        json!({
            "Schema": [{"Name": "Fil\"e\u{e9}é", "Type": "String", "extra": {"name": 1}}],
            "Results": [{"k\"\\é\u{e9}": "v\\\"]}", "日本": [[[]]]}],
            "Stats": {"ExecutionTime": 1.234}
        })
    );
    let text = String::from_utf8(out).expect("utf-8");
    // Values byte for byte: the escapes stay as Graph wrote them; nested keys are not renamed.
    assert!(text.contains(r#"{"Name":"Fil\"e\u00e9é","Type":"String","extra":{"name":1}}"#));
    assert!(text.contains("[{\"k\\\"\\\\é\\u00e9\":\"v\\\\\\\"]}\",\"日本\":[[[]]]}]"));
    for cut in 0..=input.len() {
        let (a, b) = input.as_bytes().split_at(cut);
        assert_eq!(run(&[a, b]).expect("translates"), text.as_bytes());
    }
}

#[test]
fn empty_and_missing_arrays() {
    let out = whole(b" {\"schema\" : [ ] ,\n\"results\":[\n] } \n").expect("translates");
    assert_eq!(
        String::from_utf8(out).expect("utf-8"),
        "{\"Schema\":[],\"Results\":[\n],\"Stats\":{\"ExecutionTime\":1.234}}"
    );
    let out = whole(b"{}").expect("translates");
    assert_eq!(
        parsed(&out),
        json!({"Schema": [], "Results": [], "Stats": {"ExecutionTime": 1.234}})
    );
    let out = whole(b"{\"@odata.context\":\"x\"}").expect("translates");
    assert_eq!(
        parsed(&out),
        json!({"Schema": [], "Results": [], "Stats": {"ExecutionTime": 1.234}})
    );
}

#[test]
fn execution_time_in_seconds_with_milliseconds() {
    let t = Translator::new();
    let mut out = Vec::new();
    let mut t = t;
    t.feed(Bytes::from_static(b"{}"), &mut out).expect("feeds");
    let tail = t.finish(Duration::from_micros(62_000_999)).expect("ends");
    assert!(tail.ends_with(b"\"Stats\":{\"ExecutionTime\":62.000}}"));
}

#[test]
fn invalid_input_errors() {
    for bad in [
        &b""[..],
        b"   ",
        b"[1]",
        b"\"x\"",
        b"null",
        b"{\"results\":{}}",
        b"{\"results\":1}",
        b"{\"results\":\"[]\"}",
        b"{\"schema\":{}}",
        b"{\"schema\":[1]}",
        b"{\"schema\":[{\"name\":x}]}",
        b"{\"schema\":[{}{}]}",
        b"{\"results\":[{\"a\":1]]}",
        b"{\"results\":[]}}",
        b"{\"results\":[]} x",
        b"{\"results\":[] \"schema\":[]}",
        b"{\"results\":[],\"results\":[]}",
        b"{\"x\":tru}",
        b"{\"x\":1,}",
        b"{,}",
        b"{\"x\" 1}",
        b"{\"x\":\"a\\qb\"}",
        b"{\"results\":[\"a\x01\"]}",
        b"{\"a\nb\":1}",
    ] {
        assert!(
            whole(bad).is_err(),
            "{:?} accepted",
            String::from_utf8_lossy(bad)
        );
    }
    // Every truncation of a valid answer is an error, never a panic.
    let input = GRAPH.as_bytes();
    for end in 0..input.len() - 1 {
        assert!(
            whole(&input[..end]).is_err(),
            "prefix of {end} bytes accepted"
        );
    }
    // Deep nesting is refused, not recursed into.
    let deep = format!("{{\"results\":[{}{}]}}", "[".repeat(200), "]".repeat(200));
    assert!(whole(deep.as_bytes()).is_err());
    // An oversized schema entry is refused.
    let big = format!(
        "{{\"schema\":[{{\"name\":\"{}\"}}]}}",
        "a".repeat(MAX_ENTRY)
    );
    assert!(whole(big.as_bytes()).is_err());
    // After an error, only errors.
    let mut t = Translator::new();
    let mut out = Vec::new();
    assert!(t.feed(Bytes::from_static(b"[]"), &mut out).is_err());
    assert!(t.feed(Bytes::from_static(b"{}"), &mut out).is_err());
    assert!(t.finish(TIME).is_err());
}

#[test]
fn holding_stays_bounded_and_rows_pass_zero_copy() {
    let mut t = Translator::new();
    let mut out = Vec::new();
    t.feed(
        Bytes::from_static(b"{\"@odata.context\":\"x\",\"schema\":[{\"name\":\"A\",\"type\":\"String\"}],\"results\":["),
        &mut out,
    )
    .expect("feeds");
    let row = br#"{"A":"a row with \"escapes\" and ]} brackets","B":{"n":[1,2,3]}},"#;
    let chunk = Bytes::from(row.repeat(100));
    let mut total = 0usize;
    // 10,000 frames of ~7 KB: 70 MB of rows, more than Graph's 50 MB cap.
    for _ in 0..10_000 {
        out.clear();
        t.feed(chunk.clone(), &mut out).expect("feeds");
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].as_ptr(),
            chunk.as_ptr(),
            "a row frame is passed, not copied"
        );
        assert!(t.held() <= 2, "held {}", t.held());
        total += chunk.len();
    }
    assert!(total > 50 * 1024 * 1024);
    out.clear();
    t.feed(Bytes::from_static(b"{\"A\":\"\"}]}"), &mut out)
        .expect("feeds");
    assert!(
        t.high_water() <= HELD_BOUND,
        "high water {}",
        t.high_water()
    );
    // Only the schema entry was ever held (plus the brackets).
    assert!(t.high_water() < 64, "high water {}", t.high_water());
    t.finish(TIME).expect("ends");
}

/// A body of the given frames, then optionally an error.
fn frames(
    parts: Vec<&'static [u8]>,
    fail: bool,
) -> impl Body<Data = Bytes, Error = std::io::Error> + Unpin {
    let mut items: Vec<Result<http_body::Frame<Bytes>, std::io::Error>> = parts
        .into_iter()
        .map(|p| Ok(http_body::Frame::data(Bytes::from_static(p))))
        .collect();
    if fail {
        items.push(Err(std::io::Error::other("upstream reset")));
    }
    http_body_util::StreamBody::new(futures_util::stream::iter(items))
}

#[tokio::test]
async fn body_translates_frame_by_frame() {
    let input = GRAPH.as_bytes();
    let parts: Vec<&'static [u8]> = GRAPH.as_bytes().chunks(17).collect();
    let sent_at = Instant::now() - Duration::from_secs(2);
    let body = HuntingBody::new(frames(parts, false), sent_at);
    let out = body.collect().await.expect("translates").to_bytes();
    let mut value = parsed(&out);
    let time = value["Stats"]["ExecutionTime"].as_f64().expect("a number");
    assert!((2.0..60.0).contains(&time), "{time}");
    value["Stats"]["ExecutionTime"] = json!(1.234);
    assert_eq!(value, expected());
    assert!(!input.is_empty());
}

#[tokio::test]
async fn body_errors_on_invalid_or_failing_input() {
    let truncated = HuntingBody::new(frames(vec![b"{\"results\":[1,"], false), Instant::now());
    assert!(truncated.collect().await.is_err());
    let invalid = HuntingBody::new(
        frames(vec![b"{\"results\":", b"{}}"], false),
        Instant::now(),
    );
    assert!(invalid.collect().await.is_err());
    let failing = HuntingBody::new(frames(vec![b"{\"results\":["], true), Instant::now());
    let err = failing.collect().await.expect_err("fails");
    assert!(err.to_string().contains("upstream reset"));
}
