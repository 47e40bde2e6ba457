//! Which API a request is for, told by its path, and which token audiences that API accepts.
//!
//! One simulator plays three Microsoft APIs, each checking the audience of its tokens as the real
//! ones do, so a proxy that sends the wrong API's token is caught (with the right error shape):
//!
//! | family | paths | audiences accepted | error shape |
//! |---|---|---|---|
//! | Defender XDR | `/api/incidents`, `/api/advancedhunting/...` | XDR | Defender |
//! | Defender for Endpoint | `/api/machines`, `/api/alerts`, `/api/advancedqueries/...` | XDR or MDE (Defender serves MDE on both hosts) | Defender |
//! | Graph | `/v1.0/...`, `/beta/...` | Graph | Graph |
//! | any | `/api/_test/...` and unknown paths | any the simulator issues | Defender |
//!
//! A token's audience is told by its host: `*.securitycenter.*` is MDE, `graph.microsoft*` and
//! `dod-graph.microsoft*` are Graph, anything else (the configured `api_audience` included) is
//! XDR. The test helpers accept every audience, so proxy tests can reach them through any API.

use http::StatusCode;

use super::graph;
use super::support::{defender_error, Body};

/// The API family of a request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Xdr,
    Mde,
    Graph,
    /// Test helpers and paths no API has.
    Any,
}

/// What a token's audience is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    Xdr,
    Mde,
    Graph,
}

impl Audience {
    /// The API an `aud` claim names, by its host.
    pub(crate) fn of(aud: &str) -> Audience {
        let lower = aud.to_ascii_lowercase();
        let rest = lower.split_once("://").map_or(lower.as_str(), |(_, r)| r);
        let host = rest.split(['/', ':']).next().unwrap_or_default();
        if host.contains(".securitycenter.") {
            Audience::Mde
        } else if host.starts_with("graph.microsoft.") || host.starts_with("dod-graph.microsoft.") {
            Audience::Graph
        } else {
            Audience::Xdr
        }
    }
}

impl Family {
    pub(crate) fn of_path(path: &str) -> Family {
        let lower = path.to_ascii_lowercase();
        let mut segments = lower.trim_start_matches('/').split('/');
        match (segments.next(), segments.next()) {
            (Some("api"), Some("_test")) => Family::Any,
            (Some("api"), Some("incidents" | "advancedhunting")) => Family::Xdr,
            (Some("api"), Some("machines" | "alerts" | "advancedqueries" | "machineactions")) => {
                Family::Mde
            }
            (Some("v1.0" | "beta"), _) => Family::Graph,
            _ => Family::Any,
        }
    }

    /// Whether a token for `audience` may call this family's paths.
    pub(crate) fn accepts(self, audience: Audience) -> bool {
        match self {
            Family::Xdr => audience == Audience::Xdr,
            Family::Mde => matches!(audience, Audience::Xdr | Audience::Mde),
            Family::Graph => audience == Audience::Graph,
            Family::Any => true,
        }
    }

    /// An error in this family's shape.
    pub(crate) fn error(
        self,
        status: StatusCode,
        code: &str,
        message: &str,
    ) -> http::Response<Body> {
        match self {
            Family::Graph => graph::error(status, code, message),
            Family::Xdr | Family::Mde | Family::Any => defender_error(status, code, message),
        }
    }

    /// A 401 in this family's shape: Graph names its own code for a bad token.
    pub(crate) fn unauthorized(self, message: &str) -> http::Response<Body> {
        match self {
            Family::Graph => graph::error(
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                message,
            ),
            _ => defender_error(StatusCode::UNAUTHORIZED, "Unauthorized", message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audiences_by_host() {
        assert_eq!(
            Audience::of("https://api.security.microsoft.com"),
            Audience::Xdr
        );
        assert_eq!(
            Audience::of("https://api-gov.security.microsoft.us/"),
            Audience::Xdr
        );
        assert_eq!(
            Audience::of("https://api.securitycenter.microsoft.com"),
            Audience::Mde
        );
        assert_eq!(
            Audience::of("https://api-gcc.securitycenter.microsoft.us"),
            Audience::Mde
        );
        assert_eq!(
            Audience::of("https://graph.microsoft.com/"),
            Audience::Graph
        );
        assert_eq!(
            Audience::of("https://dod-graph.microsoft.us"),
            Audience::Graph
        );
        assert_eq!(Audience::of("https://graph.example.com"), Audience::Xdr);
    }

    #[test]
    fn families_by_path() {
        assert_eq!(Family::of_path("/api/incidents"), Family::Xdr);
        assert_eq!(Family::of_path("/API/AdvancedHunting/run"), Family::Xdr);
        assert_eq!(Family::of_path("/api/machines/abc/alerts"), Family::Mde);
        assert_eq!(Family::of_path("/api/advancedqueries/run"), Family::Mde);
        assert_eq!(Family::of_path("/v1.0/security/incidents"), Family::Graph);
        assert_eq!(Family::of_path("/api/_test/bigjson"), Family::Any);
        assert_eq!(Family::of_path("/nothing"), Family::Any);
        assert!(Family::Mde.accepts(Audience::Xdr) && Family::Mde.accepts(Audience::Mde));
        assert!(!Family::Xdr.accepts(Audience::Mde) && !Family::Mde.accepts(Audience::Graph));
        assert!(!Family::Graph.accepts(Audience::Xdr) && Family::Any.accepts(Audience::Graph));
    }
}
