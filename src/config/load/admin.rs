//! The listeners' sections: the addresses of `[listen]` and `[admin]` (which must differ),
//! `[admin]`'s key, `[onboarding]` (the consent callback's listener), and their order with the
//! tenants file ([`Validator::front`]).
//!
//! The admin API changes who the proxy serves, so off loopback it is never open: without
//! `key_sha256` the proxy refuses to start there, unless `allow_unauthenticated` says that only
//! the probes and `/metrics` are meant to be reached (then `/tenants` answers 401 to everyone).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::inbound::parse_sha256;
use super::listen::InboundAuth;
use super::{defaults, is_loopback_ip, Validator};
use crate::config::raw::{RawAdmin, RawConfig, RawOnboarding};
use crate::config::{AdminConfig, ListenConfig, OnboardingConfig};

/// Shortest `state_key`: an HMAC key shorter than this is guessable.
const MIN_STATE_KEY_BYTES: usize = 32;

/// What [`Validator::front`] made of the listeners' sections.
pub(super) struct Front {
    pub(super) listen: Option<ListenConfig>,
    pub(super) admin: Option<AdminConfig>,
    pub(super) onboarding: Option<Option<OnboardingConfig>>,
    pub(super) tenants_file: Option<PathBuf>,
    /// `[listen.tls] client_ca` is written (clients may be named by certificate).
    pub(super) client_ca: bool,
}

impl Validator<'_> {
    /// The sections of the listeners (`[listen]`, `[admin]`, `[onboarding]`) and the tenants
    /// file (read first: its tenants join the config's before anything judges tenants).
    pub(super) fn front(&mut self, raw: &mut RawConfig) -> Front {
        let tenants_file = self.tenants_file(raw.tenants_section.take(), &mut raw.tenants);
        let (listen_addr, admin_addr) =
            self.addresses(raw.listen.addr.take(), raw.admin.addr.take());
        let admin = self.admin(&raw.admin, admin_addr);
        let onboarding = self.onboarding(
            raw.onboarding.take(),
            [listen_addr, admin_addr],
            tenants_file.is_some(),
        );
        let client_ca = raw
            .listen
            .tls
            .as_ref()
            .is_some_and(|tls| tls.client_ca.is_some());
        let auth = InboundAuth {
            clients: !raw.clients.is_empty(),
        };
        let listen = self.listen(std::mem::take(&mut raw.listen), listen_addr, auth);
        Front {
            listen,
            admin,
            onboarding,
            tenants_file,
            client_ca,
        }
    }

    /// `listen.addr` and `admin.addr`, which must differ.
    fn addresses(
        &mut self,
        listen: Option<String>,
        admin: Option<String>,
    ) -> (Option<SocketAddr>, Option<SocketAddr>) {
        let listen_addr = self.socket_addr("listen.addr", listen, defaults::LISTEN_ADDR);
        let admin_addr = self.socket_addr("admin.addr", admin, defaults::ADMIN_ADDR);
        // Port 0 twice is two different ephemeral ports (tests), not a clash.
        if let Some(listen) = listen_addr {
            if admin_addr == Some(listen) && listen.port() != 0 {
                self.problem(
                    "admin.addr",
                    "must differ from listen.addr: admin endpoints are never served on the data port",
                );
            }
        }
        (listen_addr, admin_addr)
    }

    /// `[admin]` except `addr`, which the caller parsed.
    pub(super) fn admin(
        &mut self,
        raw: &RawAdmin,
        addr: Option<SocketAddr>,
    ) -> Option<AdminConfig> {
        let key_sha256 = match &raw.key_sha256 {
            None => None,
            Some(hex) => match parse_sha256(hex) {
                Some(hash) => Some(hash),
                None => {
                    // Not echoed: an operator may have pasted the key itself here.
                    self.problem(
                        "admin.key_sha256",
                        "must be 64 hex digits, the SHA-256 of the admin key (the value is not \
                         shown in case it is the key itself); `defender-proxy hash-key` makes a \
                         key and its hash",
                    );
                    return None;
                }
            },
        };
        let allow_unauthenticated = raw.allow_unauthenticated.unwrap_or(false);
        let addr = addr?;
        if !is_loopback_ip(addr.ip()) && key_sha256.is_none() && !allow_unauthenticated {
            self.problem(
                "admin.key_sha256",
                format!(
                    "admin.addr {addr} is not a loopback address, so the admin API (/tenants) \
                     needs a key: set key_sha256 (`defender-proxy hash-key` makes one), or set \
                     allow_unauthenticated = true in [admin] to serve only /healthz, /readyz and \
                     /metrics there"
                ),
            );
            return None;
        }
        Some(AdminConfig {
            addr,
            key_sha256,
            allow_unauthenticated,
        })
    }

    /// `[onboarding]`: an address, the redirect URI apps send the browser back to, a state key.
    pub(super) fn onboarding(
        &mut self,
        raw: Option<RawOnboarding>,
        others: [Option<SocketAddr>; 2],
        tenants_file: bool,
    ) -> Option<Option<OnboardingConfig>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        if !tenants_file {
            self.problem(
                "onboarding",
                "needs [tenants] file: onboarded tenants are written there",
            );
        }
        let addr = match raw.addr {
            None => {
                self.problem(
                    "onboarding.addr",
                    "is required: the address the customer's browser comes back to",
                );
                None
            }
            Some(addr) => self.socket_addr("onboarding.addr", Some(addr), ""),
        };
        if let Some(addr) = addr {
            if addr.port() != 0 && others.contains(&Some(addr)) {
                self.problem(
                    "onboarding.addr",
                    "must differ from listen.addr and admin.addr: nothing else is served there",
                );
            }
        }
        let redirect_uri = self.redirect_uri(raw.redirect_uri);
        let state_key = match raw.state_key {
            None => {
                self.problem(
                    "onboarding.state_key",
                    "is required: the key that signs consent states, as { env = \"...\" } or \
                     { file = \"...\" }",
                );
                None
            }
            Some(raw) => self.secret("onboarding.state_key", raw),
        };
        let state_key = state_key.filter(|key| {
            use secrecy::ExposeSecret as _;
            let long_enough = key.expose_secret().len() >= MIN_STATE_KEY_BYTES;
            if !long_enough {
                self.problem(
                    "onboarding.state_key",
                    format!(
                        "is shorter than {MIN_STATE_KEY_BYTES} bytes: use a random key, e.g. \
                         `head -c 32 /dev/urandom | base64`"
                    ),
                );
            }
            long_enough
        });
        let tls = match raw.tls {
            None => Some(None),
            Some(tls) if tls.client_ca.is_some() => {
                self.problem(
                    "onboarding.tls.client_ca",
                    "is not used here: a customer's browser has no client certificate",
                );
                None
            }
            Some(tls) => self.server_tls("onboarding.tls", tls).map(Some),
        };
        Some(Some(OnboardingConfig {
            addr: addr?,
            redirect_uri: redirect_uri?,
            state_key: state_key?,
            tls: tls?,
        }))
    }

    /// `onboarding.redirect_uri`: an absolute `https` URL (`http` only on loopback, for trying it
    /// out), as Entra ID requires of a Web redirect URI.
    fn redirect_uri(&mut self, value: Option<String>) -> Option<String> {
        const KEY: &str = "onboarding.redirect_uri";
        let Some(value) = value else {
            self.problem(
                KEY,
                "is required: the URL of /consent/callback as the customer's browser reaches it",
            );
            return None;
        };
        let uri: Option<http::Uri> = value.parse().ok();
        let host = uri.as_ref().and_then(|u| u.host()).unwrap_or_default();
        let loopback = host == "localhost"
            || host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(is_loopback_ip);
        let scheme_ok = match uri.as_ref().and_then(|u| u.scheme_str()) {
            Some("https") => true,
            Some("http") => loopback,
            _ => false,
        };
        if uri.is_none() || host.is_empty() || !scheme_ok || value.contains('#') {
            self.problem(
                KEY,
                format!(
                    "`{value}` is not an https URL without a fragment (http only on loopback), \
                     like https://onboard.soc.example/consent/callback"
                ),
            );
            return None;
        }
        Some(value)
    }
}
