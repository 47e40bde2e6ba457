//! Deterministic demo data per tenant: incidents (with their alerts), MDE alerts, machines and
//! advanced-hunting results, shaped like the real API's, so paging, tenant separation and
//! dashboards can be checked against stable values. Every name contains the tenant's name, so a
//! test sees at once whose data came back.

use serde_json::{json, Value};

use super::support::{iso8601, sha256_hex};

/// Incidents per tenant: more than one page at `$top=10`, one page at the default `$top`.
pub(crate) const INCIDENTS: u64 = 25;
/// Alerts per incident.
const ALERTS_PER_INCIDENT: u64 = 2;
/// Machines per tenant.
pub(crate) const MACHINES: u64 = 10;
/// 2026-01-05T08:00:00Z: the data's "now", fixed so the data never changes.
pub(crate) const EPOCH: u64 = 1_767_600_000;

const SEVERITIES: [&str; 4] = ["Informational", "Low", "Medium", "High"];
const STATUSES: [&str; 4] = ["Active", "Active", "InProgress", "Resolved"];
const TITLES: [&str; 5] = [
    "Multi-stage incident involving Initial access & Execution",
    "Suspicious PowerShell command line",
    "Phishing email delivered to a mailbox",
    "Ransomware behavior detected in the file system",
    "Credential theft attempt from LSASS",
];
const PLATFORMS: [&str; 4] = ["Windows11", "Windows10", "WindowsServer2022", "Linux"];

/// The tenant whose data is served: the one whose id the token's `tid` names.
#[derive(Debug, Clone)]
pub(crate) struct TenantData {
    pub(crate) name: String,
    pub(crate) id: String,
    /// 1-based position in the config (0 for a `tid` no configured tenant has), spreading ids apart.
    pub(crate) ordinal: u64,
}

fn pick<T: Copy>(items: &[T], i: u64) -> T {
    items[(i % items.len() as u64) as usize]
}

impl TenantData {
    /// The machine id (40 hex digits, like MDE's) of machine `i`.
    pub(crate) fn machine_id(&self, i: u64) -> String {
        sha256_hex(format!("{}/machine/{i}", self.id).as_bytes())[..40].to_owned()
    }

    pub(crate) fn machine_dns(&self, i: u64) -> String {
        format!("ws{:02}.{}.local", i + 1, self.name)
    }

    fn incident_id(&self, i: u64) -> u64 {
        self.ordinal * 10_000 + i + 1
    }

    fn alert_id(&self, incident: u64, k: u64) -> String {
        format!(
            "da6380{}{:04}{k}_-{}",
            self.ordinal,
            incident,
            1_000_000 + incident * 10 + k
        )
    }

    fn created(&self, incident: u64) -> u64 {
        EPOCH - (INCIDENTS - incident) * 6 * 3600
    }

    /// All incidents, as `GET /api/incidents` lists them.
    pub(crate) fn incidents(&self) -> Vec<Value> {
        (0..INCIDENTS).map(|i| self.incident(i)).collect()
    }

    /// Incident `i` (of [`INCIDENTS`]), as `GET /api/incidents` lists it.
    pub(crate) fn incident(&self, i: u64) -> Value {
        let created = self.created(i);
        let machine = i % MACHINES;
        let alerts: Vec<Value> = (0..ALERTS_PER_INCIDENT)
            .map(|k| {
                json!({
                    "alertId": self.alert_id(i, k),
                    "incidentId": self.incident_id(i),
                    "serviceSource": "MicrosoftDefenderForEndpoint",
                    "creationTime": iso8601(created + k * 60),
                    "lastUpdatedTime": iso8601(created + 1800),
                    "title": pick(&TITLES, i + k),
                    "category": "Execution",
                    "status": "New",
                    "severity": pick(&SEVERITIES, i),
                    "detectionSource": "EDR",
                    "devices": [{
                        "mdatpDeviceId": self.machine_id(machine),
                        "deviceDnsName": self.machine_dns(machine),
                        "osPlatform": pick(&PLATFORMS, machine),
                        "healthStatus": "Active",
                    }],
                    "entities": [],
                })
            })
            .collect();
        json!({
            "incidentId": self.incident_id(i),
            "incidentUri": format!("https://security.microsoft.com/incidents/{}?tid={}", self.incident_id(i), self.id),
            "redirectIncidentId": null,
            "incidentName": format!("{} on {} ({})", pick(&TITLES, i), self.machine_dns(machine), self.name),
            "createdTime": iso8601(created),
            "lastUpdateTime": iso8601(created + 1800),
            "assignedTo": null,
            "classification": "Unknown",
            "determination": "NotAvailable",
            "status": pick(&STATUSES, i),
            "severity": pick(&SEVERITIES, i),
            "tags": [],
            "comments": [],
            "alerts": alerts,
        })
    }

    /// All alerts in the MDE shape of `GET /api/alerts`.
    pub(crate) fn alerts(&self) -> Vec<Value> {
        let mut out = Vec::new();
        for i in 0..INCIDENTS {
            for k in 0..ALERTS_PER_INCIDENT {
                let machine = i % MACHINES;
                let created = self.created(i) + k * 60;
                out.push(json!({
                    "id": self.alert_id(i, k),
                    "incidentId": self.incident_id(i),
                    "investigationId": null,
                    "assignedTo": null,
                    "severity": pick(&SEVERITIES, i),
                    "status": "New",
                    "investigationState": "Queued",
                    "detectionSource": "WindowsDefenderAtp",
                    "category": "Execution",
                    "title": pick(&TITLES, i + k),
                    "description": format!("Simulated alert in tenant {}", self.name),
                    "alertCreationTime": iso8601(created),
                    "firstEventTime": iso8601(created - 120),
                    "lastEventTime": iso8601(created - 60),
                    "lastUpdateTime": iso8601(created + 1800),
                    "resolvedTime": null,
                    "machineId": self.machine_id(machine),
                    "computerDnsName": self.machine_dns(machine),
                    "aadTenantId": self.id,
                }));
            }
        }
        out
    }

    /// All machines, as `GET /api/machines` lists them.
    pub(crate) fn machines(&self) -> Vec<Value> {
        (0..MACHINES).map(|i| self.machine(i)).collect()
    }

    /// Machine `i` (of [`MACHINES`]), as `GET /api/machines` lists it.
    pub(crate) fn machine(&self, i: u64) -> Value {
        json!({
            "id": self.machine_id(i),
            "computerDnsName": self.machine_dns(i),
            "firstSeen": iso8601(EPOCH - 90 * 86_400),
            "lastSeen": iso8601(EPOCH - i * 600),
            "osPlatform": pick(&PLATFORMS, i),
            "onboardingStatus": "Onboarded",
            "healthStatus": "Active",
            "riskScore": pick(&["None", "Low", "Medium", "High"], i),
            "exposureLevel": pick(&["Low", "Medium", "High"], i),
            "lastIpAddress": format!("10.0.{}.{}", self.ordinal, i + 10),
            "machineTags": [self.name.clone()],
        })
    }
}
