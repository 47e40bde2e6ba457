//! Consent onboarding (`[onboarding]`): a customer is added by its admin's consent, not by a
//! hand edit. `consent-url --new NAME` prints an admin-consent link whose signed `state` names
//! the tenant to be; Entra ID sends the admin back to `GET /consent/callback` on a listener of
//! its own (optionally TLS, nothing else served there), which proves the consent with a token
//! for the tenant and only then writes it to `[tenants] file`.
//!
//! # Layout
//! - `state.rs`: the signed, expiring state.
//! - `link.rs`: the consent links `consent-url` prints.

pub mod link;
mod state;

pub use link::{consent_links, new_tenant_link, tenant_links, LinkError, Wanted};
