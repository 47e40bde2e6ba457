//! The rule for partial answers: a 206 goes to the requests that joined before its head, with
//! its `Warning` and the API's warnings for their access lines, and to no request after it.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::BodyExt;

use super::{Coalescer, Join};
use crate::metrics::UpstreamWarnings;
use crate::rewrite::{self, ResponseStream};
use crate::share::key::Key;

const BODY: &[u8] = b"{\"value\":[{\"id\":\"da637\"}]}";

fn key() -> Arc<Key> {
    Arc::new(Key::new(
        "tenant".into(),
        0,
        "/v1.0/security/alerts".into(),
        None,
        None,
        Box::new([]),
    ))
}

/// An upstream answer with `status`; a 206 carries Graph's `Warning` and its warnings.
fn answer(status: StatusCode) -> Response<ResponseStream> {
    let mut response = Response::new(rewrite::whole(Bytes::from_static(BODY)));
    *response.status_mut() = status;
    if status == StatusCode::PARTIAL_CONTENT {
        let warning = HeaderValue::from_static("199 - \"Microsoft/MCAS/504/10000\"");
        response.headers_mut().insert(header::WARNING, warning);
        let warned = UpstreamWarnings::read(status, response.headers()).unwrap();
        response.extensions_mut().insert(Arc::new(warned));
    }
    response
}

fn lead(coalescer: &Coalescer) -> super::Leader {
    match coalescer.join(&key()) {
        Join::Lead(leader) => leader,
        Join::Follow(_) => panic!("a new flight"),
    }
}

fn follow(coalescer: &Coalescer) -> super::Member {
    match coalescer.join(&key()) {
        Join::Follow(member) => member,
        Join::Lead(_) => panic!("joins the flight"),
    }
}

#[tokio::test]
async fn a_partial_answer_goes_to_who_asked_before_it_and_to_no_one_after() {
    let coalescer = Coalescer::default();
    let leader = lead(&coalescer);
    let early = follow(&coalescer);
    let own = leader
        .publish(Ok(answer(StatusCode::PARTIAL_CONTENT)), None)
        .unwrap();
    // After its head, the same request leads a flight of its own: it asks the API anew.
    assert!(matches!(coalescer.join(&key()), Join::Lead(_)));
    // The one that asked before gets the same 206, marked as it is.
    let early = early.wait().await.unwrap();
    assert_eq!(early.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        early.headers()[header::WARNING],
        own.headers()[header::WARNING]
    );
    let warned = early.extensions().get::<Arc<UpstreamWarnings>>().unwrap();
    assert!(warned.partial, "for its access line");
    let (own, early) = tokio::join!(own.into_body().collect(), early.into_body().collect());
    assert_eq!(own.unwrap().to_bytes(), BODY);
    assert_eq!(early.unwrap().to_bytes(), BODY);
}

#[tokio::test]
async fn a_whole_answer_in_flight_still_takes_joiners() {
    // The control: the same steps with a 200.
    let coalescer = Coalescer::default();
    let leader = lead(&coalescer);
    let early = follow(&coalescer);
    let own = leader.publish(Ok(answer(StatusCode::OK)), None).unwrap();
    let late = follow(&coalescer);
    let (early, late) = (early.wait().await.unwrap(), late.wait().await.unwrap());
    assert!(early.extensions().get::<Arc<UpstreamWarnings>>().is_none());
    let (own, early, late) = tokio::join!(
        own.into_body().collect(),
        early.into_body().collect(),
        late.into_body().collect()
    );
    for body in [own, early, late] {
        assert_eq!(body.unwrap().to_bytes(), BODY);
    }
}
