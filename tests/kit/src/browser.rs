//! A headless Chromium, driven over the DevTools protocol (CDP) on its
//! websocket: open a page, evaluate JavaScript in it (the page stays
//! loaded between evaluations, so a test sees what the page's own script
//! did, without a reload), and take screenshots.
//!
//! Hand-written on top of `tokio-tungstenite` because the handful of CDP
//! commands a test needs (create and attach a target, navigate, evaluate,
//! capture a screenshot) are a few JSON messages; the CDP client crates
//! bring a browser downloader and hundreds of generated types.

use base64::Engine;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The names Chromium is installed under.
const PROGRAMS: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

/// How long Chromium may take to start, and one command to answer.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A running headless Chromium with one page.
pub struct Browser {
    child: Child,
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// The page's CDP session.
    session: String,
    _profile: tempfile::TempDir,
}

/// The first of [`PROGRAMS`] on the `PATH`.
fn program() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    PROGRAMS.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

impl Browser {
    /// Starts Chromium headless with a fresh profile and opens one blank
    /// page; `Err` says why no browser could start (none installed, or it
    /// failed), for a test to report as skipped.
    pub async fn start() -> Result<Browser, String> {
        let program = program().ok_or_else(|| format!("none of {PROGRAMS:?} is installed"))?;
        let profile = tempfile::Builder::new()
            .prefix("meridian-browser-")
            .tempdir()
            .map_err(|e| format!("cannot make a profile directory: {e}"))?;
        let mut command = Command::new(&program);
        command
            .args([
                "--headless",
                // Tests run as root in CI, where Chromium's sandbox cannot
                // start; the pages it opens are the test's own.
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own process group: dropping the browser ends its child processes too.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
        let endpoint = match wait_for_endpoint(&mut child, profile.path()).await {
            Ok(endpoint) => endpoint,
            Err(e) => {
                end(&mut child);
                return Err(e);
            }
        };
        let socket = match tokio_tungstenite::connect_async(endpoint.as_str()).await {
            Ok((socket, _)) => socket,
            Err(e) => {
                end(&mut child);
                return Err(format!("cannot connect to {endpoint}: {e}"));
            }
        };
        let mut browser = Browser {
            child,
            socket,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser
            .command("Target.createTarget", json!({"url": "about:blank"}))
            .await?;
        let target_id = target["targetId"].clone();
        let attached = browser
            .command(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await?;
        browser.session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no session in {attached}"))?
            .to_owned();
        Ok(browser)
    }

    /// Sends one command (to the page, once attached) and waits for its
    /// answer; events in between are skipped.
    async fn command(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            message["sessionId"] = json!(self.session);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .map_err(|e| format!("{method}: {e}"))?;
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next()).await;
            let frame = match next {
                Err(_) => return Err(format!("{method}: no answer within {COMMAND_TIMEOUT:?}")),
                Ok(None) => return Err(format!("{method}: the browser closed the connection")),
                Ok(Some(Err(e))) => return Err(format!("{method}: {e}")),
                Ok(Some(Ok(frame))) => frame,
            };
            let Message::Text(text) = frame else { continue };
            let answer: Value =
                serde_json::from_str(&text).map_err(|e| format!("{method}: {e}"))?;
            if answer["id"] != json!(id) {
                continue;
            }
            if let Some(error) = answer.get("error") {
                return Err(format!("{method}: {error}"));
            }
            return Ok(answer["result"].clone());
        }
    }

    /// Sizes the page's viewport to `width` × `height` and opens `url`.
    pub async fn open(&mut self, url: &str, width: u32, height: u32) -> Result<(), String> {
        let metrics =
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false});
        self.command("Emulation.setDeviceMetricsOverride", metrics)
            .await?;
        let navigated = self.command("Page.navigate", json!({"url": url})).await?;
        match navigated.get("errorText") {
            Some(error) => Err(format!("cannot open {url}: {error}")),
            None => Ok(()),
        }
    }

    /// The value of JavaScript `expression` in the page (awaited if it is
    /// a promise, returned as JSON).
    pub async fn evaluate(&mut self, expression: &str) -> Result<Value, String> {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let result = self.command("Runtime.evaluate", params).await?;
        if let Some(exception) = result.get("exceptionDetails") {
            return Err(format!("{expression}: {exception}"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Evaluates `expression` until `done` accepts its value, or `within`
    /// passes (then the last value is in the error).
    pub async fn until(
        &mut self,
        expression: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + within;
        loop {
            let value = self.evaluate(expression).await?;
            if done(&value) {
                return Ok(value);
            }
            if Instant::now() > deadline {
                return Err(format!("after {within:?}, still {value}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the viewport, written to `path` (its directory made).
    pub async fn screenshot(&mut self, path: &Path) -> Result<(), String> {
        let shot = self
            .command("Page.captureScreenshot", json!({"format": "png"}))
            .await?;
        let data = shot["data"].as_str().ok_or("no screenshot data")?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("screenshot: {e}"))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        end(&mut self.child);
    }
}

/// Kills the browser's process group (it and its child processes) and reaps it.
fn end(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = child.wait();
}

/// The browser's websocket URL, from the `DevToolsActivePort` file it
/// writes in its profile once it listens (its port, then its path).
async fn wait_for_endpoint(child: &mut Child, profile: &Path) -> Result<String, String> {
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                return Ok(format!("ws://127.0.0.1:{port}{path}"));
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the browser exited at start with {status}"));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the browser did not listen within {START_TIMEOUT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
