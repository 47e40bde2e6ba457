//! Tests of the audit line format and of the writer queue (flush, drops when full).

#![allow(clippy::unwrap_used)]

use super::*;
use std::sync::{mpsc as sync_mpsc, Mutex};

fn entry(path: &str) -> AuditEntry {
    AuditEntry {
        request_id: "req-1".into(),
        client: Some(Arc::from("grafana")),
        peer: Some("192.0.2.7:51234".parse().unwrap()),
        tenant: Some(Arc::from("contoso")),
        app: Some(Arc::from("default")),
        cloud: Some(Arc::from("gov")),
        method: http::Method::GET,
        path: path.into(),
        status: 200,
        bytes: 1234,
        duration: Duration::from_micros(12_345),
        complete: true,
    }
}

fn temp_file(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dp-audit-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[tokio::test]
async fn writes_one_json_line_per_request_with_every_field() {
    let path = temp_file("audit.jsonl");
    let log = AuditLog::open(&AuditTarget::File(path.clone())).unwrap();
    log.record(entry("/contoso/api/incidents?$filter=secret-term&key=abc"));
    log.record(AuditEntry {
        client: None,
        peer: None,
        tenant: None,
        app: None,
        cloud: None,
        method: http::Method::POST,
        status: 401,
        complete: false,
        ..entry("/x")
    });
    log.flush().await;

    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let first = &lines[0];
    let keys: Vec<&str> = first
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = [
        "time",
        "request_id",
        "client",
        "peer",
        "tenant",
        "app",
        "cloud",
        "method",
        "path",
        "status",
        "bytes",
        "duration_ms",
        "complete",
    ];
    expected.sort_unstable();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, expected);
    assert_eq!(first["request_id"], "req-1");
    assert_eq!(first["client"], "grafana");
    assert_eq!(first["peer"], "192.0.2.7:51234");
    assert_eq!(first["tenant"], "contoso");
    assert_eq!(
        (&first["app"], &first["cloud"]),
        (&"default".into(), &"gov".into())
    );
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/contoso/api/incidents");
    assert_eq!(first["status"], 200);
    assert_eq!(first["bytes"], 1234);
    assert_eq!(first["duration_ms"], 12.345);
    assert_eq!(first["complete"], true);
    let time = first["time"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(time).is_ok(), "{time}");
    assert!(time.ends_with('Z'), "{time}");
    assert!(!text.contains("secret-term") && !text.contains("key=abc"));

    let second = &lines[1];
    assert!(second["client"].is_null() && second["peer"].is_null() && second["tenant"].is_null());
    assert_eq!(second["status"], 401);
    assert_eq!(second["complete"], false);
    assert_eq!(log.dropped(), 0);

    // Appends: a second handle on the same file keeps what is there.
    drop(log);
    let again = AuditLog::open(&AuditTarget::File(path.clone())).unwrap();
    again.record(entry("/y"));
    again.flush().await;
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o007, 0, "audit file readable by others: {mode:o}");
    }
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// A writer whose first write blocks until the test lets it go, so the queue fills
/// deterministically.
struct GatedWriter {
    entered: Option<sync_mpsc::Sender<()>>,
    release: sync_mpsc::Receiver<()>,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Write for GatedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(entered) = self.entered.take() {
            entered.send(()).unwrap();
            self.release.recv().unwrap();
        }
        self.out.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_full_queue_drops_lines_instead_of_blocking() {
    let (entered_tx, entered_rx) = sync_mpsc::channel();
    let (release_tx, release_rx) = sync_mpsc::channel();
    let out = Arc::new(Mutex::new(Vec::new()));
    let writer = GatedWriter {
        entered: Some(entered_tx),
        release: release_rx,
        out: Arc::clone(&out),
    };
    let log = AuditLog::with_writer(Box::new(writer), 2).unwrap();

    // The writer takes the first line and blocks inside its first write (the flush when the
    // queue ran dry), so the queue is empty with room for exactly two lines.
    log.record(entry("/1"));
    entered_rx.recv().unwrap();
    log.record(entry("/2"));
    log.record(entry("/3"));
    log.record(entry("/4"));
    log.record(entry("/5"));
    assert_eq!(log.dropped(), 2);

    release_tx.send(()).unwrap();
    log.flush().await;
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    let paths: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["path"].to_string())
        .collect();
    assert_eq!(paths, ["\"/1\"", "\"/2\"", "\"/3\""]);
}

#[tokio::test]
async fn lines_queued_before_a_flush_are_all_written() {
    let out = Arc::new(Mutex::new(Vec::new()));
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let log = AuditLog::with_writer(Box::new(Shared(Arc::clone(&out))), 64).unwrap();
    let clone = log.clone();
    for i in 0..50 {
        clone.record(entry(&format!("/{i}")));
    }
    log.flush().await;
    assert_eq!(
        out.lock().unwrap().iter().filter(|b| **b == b'\n').count(),
        50
    );
    assert_eq!(log.dropped(), 0);
}
