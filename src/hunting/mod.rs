//! Advanced hunting through Microsoft Graph (issue 13).
//!
//! Legacy tools call `POST /api/advancedhunting/run` (XDR) or `POST /api/advancedqueries/run`
//! (MDE); the proxy can answer them through Graph's `POST /v1.0/security/runHuntingQuery`.
//!
//! - [`translate`]: the streaming translation of Graph's 200 answer
//!   (`{"@odata.context", "schema": [{"name", "type"}], "results": [...]}`) into the legacy shape
//!   (`{"Schema": [{"Name", "Type"}], "Results": [...], "Stats": {"ExecutionTime": <s>}}`), rows
//!   passed through byte for byte, memory bounded whatever the body size.

//! - [`route`]: which requests are legacy hunting and where each goes (`via`, `auto`);
//! - [`query`]: the client's body made Graph's; [`reply`]: Graph's errors in Defender's shape;
//! - `body.rs`: the translation applied to a response body (the proxy's exchange with Graph is
//!   `exchange/graph.rs`).

pub(crate) mod body;
pub(crate) mod query;
pub(crate) mod reply;
pub(crate) mod route;
mod scan;
pub(crate) mod translate;

pub(crate) use route::{Hunting, HuntingRoutes};
