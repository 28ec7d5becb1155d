//! Helpers for the observability tests: plain HTTP GETs against the coordinator's HTTP port
//! and reading Prometheus samples.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{DEADLINE, TestCluster};

/// GETs `path` from `base` (`http://HOST:PORT`) over HTTP/1.1; returns the status and body.
pub async fn http_get(base: &str, path: &str) -> (u16, String) {
    http_request(base, "GET", path, None).await
}

/// POSTs (no body) to `path`, with `Authorization: Bearer TOKEN` when `token` is given.
pub async fn http_post(base: &str, path: &str, token: Option<&str>) -> (u16, String) {
    http_request(base, "POST", path, token).await
}

async fn http_request(base: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let host = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("connect to the HTTP port");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let length = if method == "POST" {
        "Content-Length: 0\r\n"
    } else {
        ""
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}{length}Connection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "fixed-size body expected: {head}"
    );
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, body.to_string())
}

/// Scrapes `/metrics` and parses it as Prometheus text (fails the test if it does not parse).
pub async fn scrape(cluster: &TestCluster) -> prometheus_parse::Scrape {
    let (status, body) = http_get(&cluster.http_addr, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("/metrics parses as Prometheus text")
}

/// The value of sample `name` whose labels include every `(key, value)` of `labels`.
pub fn sample(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .and_then(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// Scrapes until `sample(name, labels)` satisfies `ok`. The metrics follow the event hub as
/// their own subscriber, so a change a test saw on WatchPipeline may reach them a moment later.
pub async fn wait_for_sample(
    cluster: &TestCluster,
    name: &str,
    labels: &[(&str, &str)],
    what: &str,
    ok: impl Fn(f64) -> bool,
) -> f64 {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let scrape = scrape(cluster).await;
        let value = sample(&scrape, name, labels);
        if let Some(v) = value
            && ok(v)
        {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            let (_, body) = http_get(&cluster.http_addr, "/metrics").await;
            let family = name.split('_').take(3).collect::<Vec<_>>().join("_");
            let lines: Vec<&str> = body.lines().filter(|l| l.contains(&family)).collect();
            panic!(
                "{name}{labels:?} never became {what} (last: {value:?}):\n{}",
                lines.join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
