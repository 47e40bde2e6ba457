//! The callback's answers: a short page for the customer's admin saying what happened, one
//! [`Answer`] each, rendered in one place with one status each.
//!
//! The page is self-contained (inline CSS, nothing fetched: the CSP forbids it) and every value
//! in it is HTML-escaped. It never shows the state, a token, or Entra's free-text
//! `error_description` (text anyone can put in a link, shown on the proxy's own origin).

use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use super::state::StateError;
use crate::body::ResponseBody;

/// What the callback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The tenant was added to the tenants file and is served now.
    Connected {
        name: String,
        tenant_id: String,
    },
    /// The tenant was already there with this id (a replayed link): nothing written.
    AlreadyConnected {
        name: String,
        tenant_id: String,
    },
    /// The admin declined, or Entra ID did not say consent was given.
    Declined {
        name: String,
    },
    BadState(StateError),
    /// `tenant` is missing or no GUID.
    BadTenant,
    /// No token for the tenant: Entra's code and its meaning when it sent one.
    TokenFailed {
        tenant_id: String,
        aadsts: Option<u32>,
        meaning: Option<&'static str>,
        /// Worth trying again later (a timeout, throttling).
        transient: bool,
    },
    /// A token came back for another tenant than `tenant` names.
    TidMismatch {
        tenant_id: String,
    },
    /// The name is taken (by another id, or in the config file itself).
    NameTaken {
        name: String,
    },
    /// The tenants file could not be written, or the proxy could not apply it.
    NotSaved {
        name: String,
    },
    RateLimited {
        retry_after: Duration,
    },
    /// Any other path or method.
    NotFound,
}

impl Answer {
    /// For the log line.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Answer::Connected { .. } => "connected",
            Answer::AlreadyConnected { .. } => "already_connected",
            Answer::Declined { .. } => "declined",
            Answer::BadState(_) => "bad_state",
            Answer::BadTenant => "bad_tenant",
            Answer::TokenFailed { .. } => "token_failed",
            Answer::TidMismatch { .. } => "tid_mismatch",
            Answer::NameTaken { .. } => "name_taken",
            Answer::NotSaved { .. } => "not_saved",
            Answer::RateLimited { .. } => "rate_limited",
            Answer::NotFound => "not_found",
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Answer::Connected { .. } | Answer::AlreadyConnected { .. } => StatusCode::OK,
            Answer::Declined { .. } | Answer::BadState(_) | Answer::BadTenant => {
                StatusCode::BAD_REQUEST
            }
            Answer::TokenFailed {
                transient: true, ..
            } => StatusCode::SERVICE_UNAVAILABLE,
            Answer::TokenFailed { .. } | Answer::TidMismatch { .. } => StatusCode::FORBIDDEN,
            Answer::NameTaken { .. } => StatusCode::CONFLICT,
            Answer::NotSaved { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Answer::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Answer::NotFound => StatusCode::NOT_FOUND,
        }
    }

    /// The page's heading and its one paragraph (plain text, escaped when rendered).
    fn text(&self) -> (&'static str, String) {
        match self {
            Answer::Connected { name, tenant_id } => ("Connected", format!(
                "Your tenant {tenant_id} is connected as `{name}`: its Defender data can now be reached through the proxy. You can close this page."
            )),
            Answer::AlreadyConnected { name, tenant_id } => ("Already connected", format!(
                "Your tenant {tenant_id} was already connected as `{name}`. Nothing was changed."
            )),
            Answer::Declined { name } => ("Consent declined", format!(
                "Consent was not given, so `{name}` was not connected. Open the link again to give consent, or tell your provider."
            )),
            Answer::BadState(why) => ("Link not valid", format!(
                "{why}. Nothing was connected."
            )),
            Answer::BadTenant => ("No tenant", "The answer from Microsoft Entra ID did not name a tenant id. Nothing was connected.".to_owned()),
            Answer::TokenFailed { tenant_id, aadsts, meaning, transient } => {
                let why = match (aadsts, meaning) {
                    (Some(code), Some(meaning)) => format!("AADSTS{code}: {meaning}"),
                    (Some(code), None) => format!("AADSTS{code}"),
                    (None, _) if *transient => "the token service did not answer in time".to_owned(),
                    (None, _) => "the token service refused".to_owned(),
                };
                let next = if *transient { "Open the link again in a few minutes." } else { "Nothing was connected." };
                ("Not connected", format!("The proxy could not get a token for tenant {tenant_id}: {why}. {next}"))
            }
            Answer::TidMismatch { tenant_id } => ("Not connected", format!(
                "The token issued was not for tenant {tenant_id}. Nothing was connected."
            )),
            Answer::NameTaken { name } => ("Name taken", format!(
                "`{name}` is already the name of another tenant. Nothing was connected: ask your provider for a new link."
            )),
            Answer::NotSaved { name } => ("Not connected", format!(
                "Consent was given, but the proxy could not save `{name}`. Your provider has the details; opening the link again later is safe."
            )),
            Answer::RateLimited { retry_after } => ("Too many requests", format!(
                "Try again in {} seconds.", retry_after.as_secs().max(1)
            )),
            Answer::NotFound => ("Not found", "Only /consent/callback is served here.".to_owned()),
        }
    }

    /// The page, with its status and headers.
    pub(crate) fn response(&self) -> Response<ResponseBody> {
        let (title, text) = self.text();
        let html = render(title, &text, self.status() == StatusCode::OK);
        let mut response = Response::new(ResponseBody::from(Bytes::from(html)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        for (name, value) in [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        if let Answer::RateLimited { retry_after } = self {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The whole page: `title` and `text` escaped, green for success, red otherwise.
fn render(title: &str, text: &str, ok: bool) -> String {
    let colour = if ok { "#1a7f37" } else { "#cf222e" };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>\
         body{{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f6f8fa;color:#1f2328}}\
         main{{max-width:36em;margin:4em auto;padding:2em;background:#fff;border-radius:8px;\
         border-top:6px solid {colour}}}h1{{margin-top:0;font-size:1.4em}}\
         </style></head><body><main><h1>{title}</h1><p>{text}</p></main></body></html>\n",
        title = escape(title),
        text = escape(text),
    )
}

/// `s` with the five characters that are markup in HTML text or attributes escaped.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_characters() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(escape("acme-01 ✓"), "acme-01 ✓");
    }

    #[test]
    fn every_value_on_the_page_is_escaped() {
        let hostile = "<script>alert(1)</script>";
        let answer = Answer::TokenFailed {
            tenant_id: hostile.into(),
            aadsts: Some(700016),
            meaning: Some("<b>bold</b>"),
            transient: false,
        };
        let (title, text) = answer.text();
        let html = render(title, &text, false);
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains("AADSTS700016"), "{html}");
    }

    #[test]
    fn statuses_and_headers() {
        let cases = [
            (
                Answer::Connected {
                    name: "a".into(),
                    tenant_id: "t".into(),
                },
                200,
            ),
            (
                Answer::AlreadyConnected {
                    name: "a".into(),
                    tenant_id: "t".into(),
                },
                200,
            ),
            (Answer::Declined { name: "a".into() }, 400),
            (Answer::BadState(StateError::Expired), 400),
            (Answer::BadTenant, 400),
            (
                Answer::TidMismatch {
                    tenant_id: "t".into(),
                },
                403,
            ),
            (
                Answer::TokenFailed {
                    tenant_id: "t".into(),
                    aadsts: None,
                    meaning: None,
                    transient: false,
                },
                403,
            ),
            (
                Answer::TokenFailed {
                    tenant_id: "t".into(),
                    aadsts: None,
                    meaning: None,
                    transient: true,
                },
                503,
            ),
            (Answer::NameTaken { name: "a".into() }, 409),
            (Answer::NotSaved { name: "a".into() }, 500),
            (
                Answer::RateLimited {
                    retry_after: Duration::from_millis(5_200),
                },
                429,
            ),
            (Answer::NotFound, 404),
        ];
        for (answer, status) in cases {
            let response = answer.response();
            assert_eq!(response.status().as_u16(), status, "{answer:?}");
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
            assert_eq!(headers[header::CACHE_CONTROL], "no-store");
            assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
            let retry = headers
                .get(header::RETRY_AFTER)
                .map(|v| v.to_str().unwrap());
            assert_eq!(retry, (status == 429).then_some("6"), "{answer:?}");
        }
    }
}
