//! How the broker reacts to a failed token request: [`ErrorClass`], and the AADSTS codes the
//! proxy knows with their class and a one-line meaning.
//!
//! Apart from `error.rs` (the error types and their client-safe text) because the table is data
//! that grows with every code met in the field, and the classification is the broker's policy,
//! not the errors' shape. It imports nothing of the crate.

/// How the broker treats a failed token request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Network trouble, 5xx, 429 or an AADSTS code Entra documents as temporary: retried with
    /// backoff.
    Transient,
    /// The app is not (fully) consented in the tenant: an admin must open the consent link.
    Consent,
    /// The app's own credential is rejected (bad or expired secret, wrong certificate): the
    /// operator must fix the configuration.
    Credential,
    /// Something about the tenant: not found, no licence for the API, Conditional Access.
    Tenant,
    /// Any other rejection. Not retried at once either: asking again won't change the answer.
    Rejected,
}

/// Transient for throttling and server errors, a rejection otherwise.
pub(crate) fn status_class(status: u16) -> ErrorClass {
    match status {
        408 | 429 | 500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Rejected,
    }
}

/// AADSTS codes and what they mean for the broker (defender-reference.md, "AADSTS" table).
const KNOWN_CODES: &[(u32, ErrorClass, &str)] = &[
    (
        700016,
        ErrorClass::Consent,
        "the app is not consented in this tenant, or the tenant id is wrong",
    ),
    (
        7000229,
        ErrorClass::Consent,
        "the app has no service principal in this tenant",
    ),
    (
        65001,
        ErrorClass::Consent,
        "admin consent for the app is missing",
    ),
    (90094, ErrorClass::Consent, "admin consent is required"),
    (
        650052,
        ErrorClass::Tenant,
        "the tenant has not enabled the API's service (licence?)",
    ),
    (
        500011,
        ErrorClass::Tenant,
        "the API's service principal is not found in this tenant",
    ),
    (
        90002,
        ErrorClass::Tenant,
        "tenant not found (wrong id or wrong cloud?)",
    ),
    (
        53003,
        ErrorClass::Tenant,
        "blocked by the tenant's Conditional Access",
    ),
    (7000215, ErrorClass::Credential, "invalid client secret"),
    (
        7000222,
        ErrorClass::Credential,
        "the client secret has expired",
    ),
    (
        700027,
        ErrorClass::Credential,
        "the client assertion's signature is invalid (wrong certificate?)",
    ),
    (
        70021,
        ErrorClass::Credential,
        "no federated identity credential of the app matches the token file's issuer and subject",
    ),
    (
        700024,
        ErrorClass::Credential,
        "the client assertion is outside its validity window (expired federated token file?)",
    ),
    (
        50000,
        ErrorClass::Transient,
        "Entra ID had a temporary problem",
    ),
    (
        90006,
        ErrorClass::Transient,
        "Entra ID had a temporary problem",
    ),
    (
        90024,
        ErrorClass::Transient,
        "Entra ID had a temporary problem",
    ),
    (
        90055,
        ErrorClass::Transient,
        "Entra ID is throttling requests",
    ),
];

/// A one-line meaning of an AADSTS code the proxy knows (defender-reference.md's table plus the
/// workload identity codes), e.g. for `check`'s report.
pub(crate) fn aadsts_meaning(code: u32) -> Option<&'static str> {
    known(code).map(|(_, meaning)| meaning)
}

pub(super) fn known(code: u32) -> Option<(ErrorClass, &'static str)> {
    KNOWN_CODES
        .iter()
        .find(|(c, ..)| *c == code)
        .map(|(_, class, meaning)| (*class, *meaning))
}

/// Classify an OAuth error answer: known AADSTS codes first (they are the most specific), then
/// the OAuth `error` field, then the HTTP status.
pub(crate) fn classify(status: u16, error: &str, codes: &[u32]) -> ErrorClass {
    if let Some(class) = codes.iter().find_map(|c| known(*c)).map(|(class, _)| class) {
        return class;
    }
    match error {
        "invalid_client" => ErrorClass::Credential,
        "unauthorized_client" => ErrorClass::Consent,
        "temporarily_unavailable" => ErrorClass::Transient,
        _ => status_class(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_win_over_error_field_and_status() {
        assert_eq!(
            classify(400, "unauthorized_client", &[700016]),
            ErrorClass::Consent
        );
        assert_eq!(
            classify(401, "invalid_client", &[7000215]),
            ErrorClass::Credential
        );
        assert_eq!(
            classify(400, "invalid_request", &[90002]),
            ErrorClass::Tenant
        );
        assert_eq!(
            classify(400, "invalid_request", &[90055]),
            ErrorClass::Transient
        );
        assert_eq!(
            classify(500, "server_error", &[50000]),
            ErrorClass::Transient
        );
        assert_eq!(classify(503, "whatever", &[]), ErrorClass::Transient);
        assert_eq!(classify(429, "whatever", &[]), ErrorClass::Transient);
        assert_eq!(classify(400, "invalid_client", &[]), ErrorClass::Credential);
        assert_eq!(
            classify(400, "invalid_scope", &[70011]),
            ErrorClass::Rejected
        );
    }
}
