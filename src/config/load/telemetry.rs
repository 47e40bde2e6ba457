//! `[telemetry]`: traces, off unless `otlp_endpoint` is written.

use http::Uri;

use super::Validator;
use crate::config::raw::RawTelemetry;
use crate::config::{defaults, TelemetryConfig, TraceProtocol};

/// The OTLP/HTTP path of traces, added to an endpoint written without a path.
const TRACES_PATH: &str = "/v1/traces";

impl Validator<'_> {
    pub(super) fn telemetry(&mut self, raw: Option<RawTelemetry>) -> Option<TelemetryConfig> {
        let raw = raw?;
        let protocol = match raw.protocol.as_deref() {
            None | Some("http/protobuf") => TraceProtocol::Protobuf,
            Some("http/json") => TraceProtocol::Json,
            Some(other) => {
                self.problem(
                    "telemetry.protocol",
                    format!("`{other}` is not one of \"http/protobuf\", \"http/json\""),
                );
                TraceProtocol::Protobuf
            }
        };
        let service_name = raw
            .service_name
            .unwrap_or_else(|| defaults::SERVICE_NAME.to_owned());
        if service_name.trim().is_empty() {
            self.problem("telemetry.service_name", "must not be empty");
        }
        let sample_ratio = raw.sample_ratio.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&sample_ratio) {
            self.problem(
                "telemetry.sample_ratio",
                format!("{sample_ratio} is not between 0 and 1"),
            );
        }
        let endpoint = raw.otlp_endpoint?;
        let endpoint = match traces_url(&endpoint) {
            Ok(endpoint) => endpoint,
            Err(message) => {
                self.problem("telemetry.otlp_endpoint", message);
                return None;
            }
        };
        Some(TelemetryConfig {
            endpoint,
            protocol,
            service_name,
            sample_ratio,
        })
    }
}

/// An http(s) URL without user information or query; `/v1/traces` is added when it names no
/// path (as `OTEL_EXPORTER_OTLP_ENDPOINT` is read), a path is kept as the traces URL.
fn traces_url(value: &str) -> Result<Uri, String> {
    let uri: Uri = value
        .parse()
        .map_err(|e| format!("`{value}` is not a URL: {e}"))?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(format!(
            "`{value}` is not an absolute URL like http://collector:4318"
        ));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!("`{value}` must be an http:// or https:// URL"));
    }
    if authority.as_str().contains('@') {
        return Err(format!("`{value}` must not contain user information"));
    }
    if uri.query().is_some() {
        return Err(format!("`{value}` must not have a query"));
    }
    let path = match uri.path() {
        "" | "/" => TRACES_PATH,
        path => path,
    };
    format!("{scheme}://{authority}{path}")
        .parse()
        .map_err(|e| format!("`{value}` is not a URL: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use crate::config::{parse_str, Config, ConfigErrors, TraceProtocol};

    const BASE: &str = r#"
[app]
client_id = "11111111-2222-3333-4444-555555555555"
client_secret = { env = "SECRET" }

[[tenant]]
name = "contoso"
id = "22222222-2222-3333-4444-555555555555"
"#;

    fn parse(extra: &str) -> Result<Config, ConfigErrors> {
        parse_str(
            &format!("{BASE}\n{extra}"),
            Path::new("proxy.toml"),
            &|_| Some("s3cret".into()),
        )
    }

    #[test]
    fn off_unless_an_endpoint_is_written() {
        assert_eq!(parse("").unwrap().telemetry, None);
        assert_eq!(
            parse("[telemetry]\nservice_name = \"x\"")
                .unwrap()
                .telemetry,
            None
        );
    }

    #[test]
    fn defaults_and_the_traces_path() {
        let t = parse("[telemetry]\notlp_endpoint = \"http://collector:4318\"")
            .unwrap()
            .telemetry
            .unwrap();
        assert_eq!(t.endpoint.to_string(), "http://collector:4318/v1/traces");
        assert_eq!(t.protocol, TraceProtocol::Protobuf);
        assert_eq!(t.service_name, "defender-proxy");
        assert_eq!(t.sample_ratio, 1.0);
        let t = parse(
            "[telemetry]\notlp_endpoint = \"https://otel.example/custom/traces\"\n\
             protocol = \"http/json\"\nservice_name = \"edge\"\nsample_ratio = 0",
        )
        .unwrap()
        .telemetry
        .unwrap();
        assert_eq!(t.endpoint.to_string(), "https://otel.example/custom/traces");
        assert_eq!(t.protocol, TraceProtocol::Json);
        assert_eq!(t.service_name, "edge");
        assert_eq!(t.sample_ratio, 0.0);
    }

    #[test]
    fn problems_name_key_and_line() {
        let errors = parse(
            "[telemetry]\notlp_endpoint = \"grpc://c:4317\"\nprotocol = \"grpc\"\n\
             service_name = \" \"\nsample_ratio = 1.5",
        )
        .unwrap_err();
        for key in [
            "telemetry.otlp_endpoint",
            "telemetry.protocol",
            "telemetry.service_name",
            "telemetry.sample_ratio",
        ] {
            assert!(
                errors
                    .problems
                    .iter()
                    .any(|p| p.key == key && p.line.is_some()),
                "{key}: {errors}"
            );
        }
        for bad in ["http://u:p@c:4318", "http://c:4318/?k=v", "c:4318", "-0.1"] {
            let text = if bad == "-0.1" {
                "[telemetry]\notlp_endpoint = \"http://c\"\nsample_ratio = -0.1".to_owned()
            } else {
                format!("[telemetry]\notlp_endpoint = \"{bad}\"")
            };
            assert!(parse(&text).is_err(), "{bad}");
        }
    }
}
