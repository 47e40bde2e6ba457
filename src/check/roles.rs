//! Which application permissions (`roles`) the API behind a token scope needs, and which of them
//! a token lacks.

/// The permissions an API needs: each entry is satisfied by any one of its roles.
pub(crate) type RoleNeeds = &'static [&'static [&'static str]];

/// Defender XDR (`api.security.microsoft.com` and its gov twins): incidents and advanced hunting.
pub(crate) const XDR_ROLES: RoleNeeds = &[
    &["Incident.Read.All", "Incident.ReadWrite.All"],
    &["AdvancedHunting.Read.All"],
];
/// Defender for Endpoint (`api.securitycenter.microsoft.com`): machines, alerts, advanced queries.
pub(crate) const MDE_ROLES: RoleNeeds = &[
    &["Machine.Read.All", "Machine.ReadWrite.All"],
    &["Alert.Read.All", "Alert.ReadWrite.All"],
    &["AdvancedQuery.Read.All"],
];
/// Microsoft Graph security: incidents and hunting.
pub(crate) const GRAPH_ROLES: RoleNeeds = &[
    &[
        "SecurityIncident.Read.All",
        "SecurityIncident.ReadWrite.All",
    ],
    &["ThreatHunting.Read.All"],
];

/// What the API behind `scope` needs, told by the resource's host (gov clouds included).
pub(crate) fn role_needs(scope: &str) -> RoleNeeds {
    let resource = scope.trim_start_matches("https://").to_ascii_lowercase();
    let host = resource.split('/').next().unwrap_or_default();
    if host.contains(".securitycenter.") {
        MDE_ROLES
    } else if host.contains("graph.microsoft") {
        GRAPH_ROLES
    } else {
        XDR_ROLES
    }
}

/// The needs of `scope` that none of `roles` satisfies, alternatives joined by ` or `.
pub(crate) fn missing_roles(scope: &str, roles: &[String]) -> Vec<String> {
    role_needs(scope)
        .iter()
        .filter(|any_of| !any_of.iter().any(|r| roles.iter().any(|g| g == r)))
        .map(|any_of| any_of.join(" or "))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_needs_follow_the_api_of_the_scope() {
        assert_eq!(
            role_needs("https://api.security.microsoft.com/.default"),
            XDR_ROLES
        );
        assert_eq!(
            role_needs("https://api-gov.security.microsoft.us/.default"),
            XDR_ROLES
        );
        assert_eq!(
            role_needs("https://api-gcc.securitycenter.microsoft.us/.default"),
            MDE_ROLES
        );
        assert_eq!(
            role_needs("https://graph.microsoft.com/.default"),
            GRAPH_ROLES
        );
    }

    #[test]
    fn missing_roles_accept_any_alternative() {
        let roles = vec!["Incident.ReadWrite.All".to_owned()];
        assert_eq!(
            missing_roles("https://api.security.microsoft.com/.default", &roles),
            ["AdvancedHunting.Read.All"]
        );
        assert_eq!(
            missing_roles("https://graph.microsoft.com/.default", &[]),
            [
                "SecurityIncident.Read.All or SecurityIncident.ReadWrite.All",
                "ThreatHunting.Read.All"
            ]
        );
    }
}
