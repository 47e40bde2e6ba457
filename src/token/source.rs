//! What issues tokens: the [`TokenSource`] trait (Entra ID in production, a script in tests),
//! what it returns, and one attempt at it bounded by the source's own timeout.
//!
//! Its own file so that the slot, the Entra client and the broker share this contract without
//! the broker's file carrying it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use secrecy::SecretString;

use super::error::TokenError;

/// What a [`TokenSource`] got from the token endpoint, before any check.
pub(crate) struct FetchedToken {
    pub(crate) access_token: SecretString,
    pub(crate) expires_in: Option<Duration>,
    /// Entra's hint when to refresh (long-lived tokens).
    pub(crate) refresh_in: Option<Duration>,
}

/// A boxed future, so sources can sit behind `dyn` (token requests are rare; the box is free).
pub(crate) type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<FetchedToken, TokenError>> + Send + 'a>>;

/// Something that issues tokens: Entra ID in production, a script in tests.
pub(crate) trait TokenSource: Send + Sync + fmt::Debug + 'static {
    /// One token request, no retries. Unbounded in time: callers go through [`fetch_attempt`],
    /// which applies [`TokenSource::attempt_timeout`].
    fn fetch<'a>(&'a self, tenant_id: &'a str, scope: &'a str) -> FetchFuture<'a>;

    /// The longest one request may take. Also the longest a caller waits for a token: when the
    /// endpoint is silent, the slot's retries go on in the background without the caller.
    fn attempt_timeout(&self) -> Duration;
}

/// One token request to `source`, given up after its [`TokenSource::attempt_timeout`].
pub(crate) async fn fetch_attempt(
    source: &dyn TokenSource,
    tenant_id: &str,
    scope: &str,
) -> Result<FetchedToken, TokenError> {
    let limit = source.attempt_timeout();
    match tokio::time::timeout(limit, source.fetch(tenant_id, scope)).await {
        Ok(result) => result,
        Err(_) => Err(TokenError::Timeout {
            tenant_id: tenant_id.to_owned(),
            after: limit,
        }),
    }
}

/// The source cell shared by a broker and all its slots: a reload stores a new source, and every
/// token request from then on asks it.
pub(crate) type SharedSource = Arc<ArcSwap<Arc<dyn TokenSource>>>;
