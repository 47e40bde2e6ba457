//! defender-proxy: a reverse proxy that lets tools call the Microsoft 365 Defender APIs of many
//! customer tenants without doing OAuth themselves.
//!
//! # Layout
//! - [`config`]: TOML file -> typed, validated [`config::Config`]; every problem reported.
//! - [`app`]: the one start path: builds the shared state from a config and runs the
//!   listeners until shutdown, reloads included; `main`, `serve --dev` and the tests use it.
//! - [`api`]: one API the proxy forwards to (`ApiTarget`), shared by every tenant.
//! - [`snapshot`]: what one config makes (routes, tenants, APIs, inbound policy, upstream,
//!   sharing, audit, limiter), built by `Snapshot::build` at start and on every reload.
//! - [`routing`]: request -> tenant and upstream path; path checks. Pure functions, with their
//!   own `RouteError`; [`tenant`]: the runtime `Tenant`, owning its per-API token slots.
//! - [`token`]: the token broker: per (tenant, scope) cache, refresh-ahead, single flight.
//! - [`proxy`]: the hot path, `handle()` -> `handle_inner()`, and the one access-log line;
//!   `target`: where a request goes (tenant, API, URI, links, route class); `exchange`: its
//!   upstream steps (rate limit, body, token, send, 401 replay, links).
//! - [`headers`]: hop-by-hop stripping, credential injection, request ids.
//! - [`upstream`]: the pooled rustls client to the API, with timeouts; [`idle`]: the idle
//!   timeouts of request and response bodies.
//! - [`error`]: `ProxyError` and its one mapping to a status and JSON body; `error_chain`: an
//!   error and its causes on one log line.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics`; [`metrics`]: the counters behind them;
//!   [`status`]: a tenant's status (tokens, limits, requests, health) from its live state, for
//!   the admin API's `/tenants`.
//! - [`ratelimit`]: per-tenant, per-route-class limits (GCRA), queueing, upstream pauses, Redis.
//! - [`inbound`]: client TLS/mTLS, API keys and allowlists, CORS, the audit log, dev certificates.
//! - [`listener`]: accepting connections: TLS handshakes, connection limit, idle, drain;
//!   [`conn`]: what a request knows of its connection (`ConnInfo`);
//!   [`sniff`]: the request-smuggling (CL+TE) guard below hyper.
//! - [`reload`]: SIGHUP and `[reload] watch`: a new snapshot swapped in atomically, or not at all.
//! - [`body`]: the response body and the access/audit line written when it ends;
//!   [`dev`]: `serve --dev`.
//! - [`tls`]: outbound TLS config; [`sync`]: the one way to take a lock (`LockExt::locked`).
//! - [`onboarding`]: consent onboarding: `consent-url --new`'s signed link and the
//!   `/consent/callback` listener that adds a consented tenant to the tenants file.
//! - [`check`]: `defender-proxy check`: one token per tenant, its `tid` and `roles` judged (and
//!   its Graph token's readiness for advanced hunting).
//! - [`rewrite`]: paging links (`@odata.nextLink`, `Location`) pointed back at the proxy,
//!   streaming, through gzip/deflate/br.
//! - [`share`]: shared answers: identical concurrent `GET`s share one upstream request
//!   (coalescing), and the optional short response cache (`[cache]`), behind one lookup.
//! - [`hunting`]: legacy advanced hunting answered through Microsoft Graph: which requests, the
//!   query made Graph's, Graph's answer translated as it streams, its errors in Defender's shape
//!   (the exchange itself is `exchange`'s `graph.rs`).
//! - [`telemetry`]: traces over OTLP/HTTP (`[telemetry]`): the request's spans, W3C
//!   propagation, the batched export; [`logging`]: the process's subscriber (logs, and the
//!   trace layer when telemetry is on).
//! - [`sim`]: the simulated Entra ID and Defender API (dev mode, tests, dashboard developers).

// The crate docs are for the people working on it (`cargo doc --document-private-items`): they
// link the crate-private modules on purpose.
#![allow(rustdoc::private_intra_doc_links)]

pub(crate) mod admin;
pub(crate) mod api;
pub mod app;
pub(crate) mod body;
pub mod check;
pub mod config;
pub(crate) mod conn;
pub mod dev;
pub(crate) mod error;
mod error_chain;
mod exchange;
pub(crate) mod headers;
pub(crate) mod hunting;
pub(crate) mod idle;
pub mod inbound;
pub(crate) mod listener;
pub mod logging;
pub(crate) mod metrics;
pub mod onboarding;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub(crate) mod rewrite;
pub(crate) mod routing;
pub(crate) mod share;
pub mod sim;
pub(crate) mod snapshot;
pub(crate) mod sniff;
pub(crate) mod status;
pub(crate) mod sync;
mod target;
pub mod telemetry;
pub(crate) mod tenant;
mod tenants;
pub(crate) mod tls;
pub(crate) mod token;
pub(crate) mod upstream;
