//! Advanced hunting through Microsoft Graph (issue 13).
//!
//! Legacy tools call `POST /api/advancedhunting/run` (XDR) or `POST /api/advancedqueries/run`
//! (MDE); the proxy can answer them through Graph's `POST /v1.0/security/runHuntingQuery`.
//!
//! - [`translate`]: the streaming translation of Graph's 200 answer
//!   (`{"@odata.context", "schema": [{"name", "type"}], "results": [...]}`) into the legacy shape
//!   (`{"Schema": [{"Name", "Type"}], "Results": [...], "Stats": {"ExecutionTime": <s>}}`), rows
//!   passed through byte for byte, memory bounded whatever the body size.

pub(crate) mod body;
mod scan;
pub(crate) mod translate;
