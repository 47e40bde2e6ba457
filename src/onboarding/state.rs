//! The consent `state`: which tenant-to-be a consent link is for (its name, app and cloud) and
//! until when, signed so that the callback can trust it while the `tenant` parameter beside it
//! is never trusted.
//!
//! Format (compact, so the link stays short; URL-safe, so it needs no escaping): base64url
//! without padding of
//! `version (1) | expiry, Unix seconds, big-endian (8) | len (1) name | len (1) app | len (1)
//! cloud | HMAC-SHA256 tag (32)`. The tag covers a domain label and every byte before it, so
//! the key cannot be made to sign anything else that a state could be taken for. The tag is
//! checked (in constant time, `ring::hmac::verify`) before any field is read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::hmac;
use secrecy::{ExposeSecret as _, SecretString};

use crate::config::Config;

/// How long a consent link may be used: a customer's admin may take days to get to it.
pub(crate) const VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

const VERSION: u8 = 1;
const TAG_LEN: usize = 32;
/// Separates these signatures from any other use of the key.
const LABEL: &[u8] = b"defender-proxy consent state\0";
/// Longest state text read at all: three names of at most 255 bytes, in base64.
const MAX_TEXT: usize = 1_100;

/// The HMAC key of `[onboarding] state_key`.
pub(crate) struct StateKey(hmac::Key);

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(..)")
    }
}

impl StateKey {
    pub(crate) fn new(secret: &SecretString) -> Self {
        StateKey(hmac::Key::new(
            hmac::HMAC_SHA256,
            secret.expose_secret().as_bytes(),
        ))
    }
}

/// What a state says: the tenant to add, on which app and cloud (config names, `default` for
/// `[app]` and `[cloud]`), and until when the link is good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invite {
    pub(crate) name: String,
    pub(crate) app: String,
    pub(crate) cloud: String,
    /// Unix seconds.
    pub(crate) expires: u64,
}

impl Invite {
    /// An invite issued at `now`, good for [`VALIDITY`].
    pub(crate) fn new(name: &str, app: &str, cloud: &str, now: SystemTime) -> Self {
        Invite {
            name: name.to_owned(),
            app: app.to_owned(),
            cloud: cloud.to_owned(),
            expires: unix_secs(now).saturating_add(VALIDITY.as_secs()),
        }
    }
}

/// Why a state is refused; each says so on the callback's page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StateError {
    #[error("the link's state is missing or malformed")]
    Malformed,
    #[error("the link's state is not signed by this proxy (altered, or made for another)")]
    BadSignature,
    #[error("the link has expired (links are good for 7 days): ask for a new one")]
    Expired,
    #[error("the link names app `{0}`, which this proxy no longer has")]
    UnknownApp(String),
    #[error("the link names cloud `{0}`, which this proxy no longer has")]
    UnknownCloud(String),
}

/// A name too long for the state's one-byte lengths (never a valid tenant or profile name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is longer than 255 bytes")]
pub(crate) struct TooLong(String);

/// The state text of `invite`, signed with `key`.
pub(crate) fn sign(key: &StateKey, invite: &Invite) -> Result<String, TooLong> {
    let mut bytes = vec![VERSION];
    bytes.extend_from_slice(&invite.expires.to_be_bytes());
    for field in [&invite.name, &invite.app, &invite.cloud] {
        let len = u8::try_from(field.len()).map_err(|_| TooLong(field.clone()))?;
        bytes.push(len);
        bytes.extend_from_slice(field.as_bytes());
    }
    let tag = hmac::sign(&key.0, &labelled(&bytes));
    bytes.extend_from_slice(tag.as_ref());
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The invite of `text` if `key` signed it, it has not expired at `now`, and `config` still has
/// its app and cloud.
pub(crate) fn verify(
    key: &StateKey,
    text: &str,
    now: SystemTime,
    config: &Config,
) -> Result<Invite, StateError> {
    if text.is_empty() || text.len() > MAX_TEXT {
        return Err(StateError::Malformed);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| StateError::Malformed)?;
    let split = bytes
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(StateError::Malformed)?;
    let (payload, tag) = bytes.split_at(split);
    hmac::verify(&key.0, &labelled(payload), tag).map_err(|_| StateError::BadSignature)?;
    let invite = parse(payload).ok_or(StateError::Malformed)?;
    if unix_secs(now) >= invite.expires {
        return Err(StateError::Expired);
    }
    if config.app_named(&invite.app).is_none() {
        return Err(StateError::UnknownApp(invite.app));
    }
    if config.cloud_named(&invite.cloud).is_none() {
        return Err(StateError::UnknownCloud(invite.cloud));
    }
    Ok(invite)
}

fn labelled(payload: &[u8]) -> Vec<u8> {
    [LABEL, payload].concat()
}

/// The fields of a signed payload; `None` unless it is exactly one version-1 invite.
fn parse(payload: &[u8]) -> Option<Invite> {
    let (&version, rest) = payload.split_first()?;
    if version != VERSION {
        return None;
    }
    let (expires, mut rest) = rest.split_first_chunk::<8>()?;
    let mut field = || {
        let (&len, tail) = rest.split_first()?;
        let (value, tail) = tail.split_at_checked(usize::from(len))?;
        rest = tail;
        String::from_utf8(value.to_vec()).ok()
    };
    let (name, app, cloud) = (field()?, field()?, field()?);
    rest.is_empty().then(|| Invite {
        name,
        app,
        cloud,
        expires: u64::from_be_bytes(*expires),
    })
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
