//! The client's legacy hunting request made Graph's: `{"Query": "<KQL>", "Timespan": "P7D"}`
//! (keys in any case, as the legacy APIs took them) becomes the body of `runHuntingQuery`.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::routing::RequestError;

/// Graph's body: only the members Graph knows (anything else a tool sent is left out, lest Graph
/// refuse it).
#[derive(Serialize)]
struct GraphQuery<'a> {
    #[serde(rename = "Query")]
    query: &'a str,
    #[serde(rename = "Timespan", skip_serializing_if = "Option::is_none")]
    timespan: Option<&'a str>,
}

/// The body of Graph's `runHuntingQuery` for the legacy request body `client`, or why there is
/// none (answered `400 BadRequest`, Graph never called).
pub(crate) fn graph_body(client: &[u8]) -> Result<Bytes, RequestError> {
    let value: Value = serde_json::from_slice(client)
        .map_err(|_| RequestError::HuntingQuery("the body is not JSON"))?;
    let Value::Object(members) = value else {
        return Err(RequestError::HuntingQuery(
            "the body is not a JSON object like {\"Query\": \"...\"}",
        ));
    };
    let member = |name: &str| {
        members
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    };
    let query = match member("Query") {
        Some(Value::String(query)) if !query.trim().is_empty() => query,
        Some(Value::String(_)) => return Err(RequestError::HuntingQuery("\"Query\" is empty")),
        Some(_) => return Err(RequestError::HuntingQuery("\"Query\" is not a string")),
        None => return Err(RequestError::HuntingQuery("the body has no \"Query\"")),
    };
    let timespan = match member("Timespan") {
        None | Some(Value::Null) => None,
        Some(Value::String(timespan)) => Some(timespan.as_str()),
        Some(_) => return Err(RequestError::HuntingQuery("\"Timespan\" is not a string")),
    };
    let body = GraphQuery { query, timespan };
    // Strings only: serialising cannot fail.
    Ok(Bytes::from(serde_json::to_vec(&body).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(client: &str) -> Result<String, RequestError> {
        graph_body(client.as_bytes()).map(|b| String::from_utf8(b.to_vec()).unwrap_or_default())
    }

    #[test]
    fn query_and_timespan_are_kept_whatever_their_keys_case() {
        assert_eq!(
            graph(r#"{"Query": "DeviceInfo | take 3"}"#).ok().as_deref(),
            Some(r#"{"Query":"DeviceInfo | take 3"}"#)
        );
        assert_eq!(
            graph(r#"{"query": "T | where x == \"é\"", "timespan": "P7D", "other": 1}"#)
                .ok()
                .as_deref(),
            Some(r#"{"Query":"T | where x == \"é\"","Timespan":"P7D"}"#)
        );
    }

    #[test]
    fn what_is_no_query_is_refused() {
        for (body, why) in [
            ("DeviceInfo | take 3", "not JSON"),
            ("[\"DeviceInfo\"]", "not a JSON object"),
            ("{}", "no \"Query\""),
            ("{\"Query\": 3}", "not a string"),
            ("{\"Query\": \"  \"}", "empty"),
            ("{\"Query\": \"T\", \"Timespan\": 7}", "\"Timespan\" is not"),
            ("", "not JSON"),
        ] {
            let err = graph(body).expect_err(body).to_string();
            assert!(err.contains(why), "{body}: {err}");
        }
    }
}
