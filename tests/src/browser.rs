//! A real headless browser for dashboard tests: Debian's `chromium`, driven over the Chrome
//! DevTools Protocol (a websocket) with a few commands: open a page, evaluate JavaScript, wait
//! for the DOM to satisfy a condition (a `MutationObserver`, so no polling), take a screenshot.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

use crate::DEADLINE;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The chromium binary: `$BATON_CHROMIUM`, or `chromium` / `chromium-browser` on the `PATH`.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BATON_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// One headless chromium with one page, killed on drop.
pub struct Browser {
    child: tokio::process::Child,
    socket: Socket,
    session: String,
    next_id: u64,
    /// Events read while waiting for a reply, for [`Browser::wait_event`].
    events: Vec<Value>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `chromium` and opens `url` in a 1400x1000 page.
    pub async fn open(chromium: &Path, url: &str) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = tokio::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1400,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromium");
        // Chromium announces its DevTools websocket on stderr.
        let stderr = child.stderr.take().expect("chromium stderr");
        let mut lines = BufReader::new(stderr).lines();
        let find = async {
            while let Some(line) = lines.next_line().await.expect("read chromium stderr") {
                if let Some(at) = line.find("ws://") {
                    return line[at..].trim().to_string();
                }
            }
            panic!("chromium exited without a DevTools address");
        };
        let ws_url = tokio::time::timeout(DEADLINE, find)
            .await
            .expect("chromium started");
        // Keep draining stderr so chromium never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let (socket, _) = tokio_tungstenite::connect_async(&ws_url)
            .await
            .expect("connect to DevTools");
        let mut browser = Browser {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            events: Vec::new(),
            _profile: profile,
        };
        let target = browser
            .command("Target.createTarget", json!({ "url": "about:blank" }))
            .await;
        let target_id = target["targetId"].as_str().expect("target id").to_string();
        let attached = browser
            .command(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await;
        browser.session = attached["sessionId"]
            .as_str()
            .expect("session id")
            .to_string();
        browser.command("Page.enable", json!({})).await;
        browser
            .command("Page.navigate", json!({ "url": url }))
            .await;
        browser.wait_event("Page.loadEventFired").await;
        browser
    }

    /// Waits for the page's next DevTools event `method` (or one already received).
    pub async fn wait_event(&mut self, method: &str) -> Value {
        if let Some(at) = self
            .events
            .iter()
            .position(|e| e["method"] == json!(method))
        {
            return self.events.remove(at);
        }
        let wait = async {
            while let Some(message) = self.socket.next().await {
                let Message::Text(text) = message.expect("DevTools message") else {
                    continue;
                };
                let value: Value = serde_json::from_str(&text).expect("DevTools JSON");
                if value["method"] == json!(method) {
                    return value;
                }
            }
            panic!("DevTools closed");
        };
        tokio::time::timeout(DEADLINE, wait)
            .await
            .unwrap_or_else(|_| panic!("no {method} event"))
    }

    /// Sends one DevTools command (to the page once attached) and returns its result.
    pub async fn command(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send to DevTools");
        let reply = async {
            while let Some(message) = self.socket.next().await {
                let Message::Text(text) = message.expect("DevTools message") else {
                    continue;
                };
                let value: Value = serde_json::from_str(&text).expect("DevTools JSON");
                if value["id"] == json!(id) {
                    if let Some(error) = value.get("error") {
                        panic!("{method} failed: {error}");
                    }
                    return value["result"].clone();
                }
                if value.get("method").is_some() {
                    self.events.push(value);
                }
            }
            panic!("DevTools closed");
        };
        tokio::time::timeout(DEADLINE, reply)
            .await
            .unwrap_or_else(|_| panic!("{method} timed out"))
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its value.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .command(
                "Runtime.evaluate",
                json!({ "expression": expression, "awaitPromise": true, "returnByValue": true }),
            )
            .await;
        if let Some(details) = result.get("exceptionDetails") {
            panic!("page script failed: {details}");
        }
        result["result"]["value"].clone()
    }

    /// Waits until the JavaScript function body `condition` returns a truthy value, checking on
    /// every DOM change; fails with the page's text after the deadline.
    pub async fn wait_for(&mut self, condition: &str) -> Value {
        let expression = format!(
            r#"new Promise((resolve, reject) => {{
  const check = () => {{ try {{ const v = (() => {{ {condition} }})(); if (v) {{ resolve(v); return true; }} }} catch (e) {{}} return false; }};
  if (check()) return;
  const observer = new MutationObserver(() => {{ if (check()) observer.disconnect(); }});
  observer.observe(document, {{ subtree: true, childList: true, characterData: true, attributes: true }});
  setTimeout(() => {{ observer.disconnect(); reject(new Error("not met: " + document.body.innerText)); }}, {ms});
}})"#,
            ms = DEADLINE.as_millis() - 5000
        );
        self.eval(&expression).await
    }

    /// Saves a PNG of the page at `path` (its directory is created).
    pub async fn screenshot(&mut self, path: &Path) {
        let shot = self
            .command("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("screenshot base64");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("artifact dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
