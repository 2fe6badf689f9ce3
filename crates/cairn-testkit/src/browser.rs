//! A small headless-Chromium driver for the dashboard's browser tests.
//!
//! It starts Debian's Chromium and speaks the Chrome DevTools Protocol (CDP)
//! to it over one loopback websocket: only the handful of commands the tests
//! need, so no heavy CDP crate has to be built.
//!
//! # Use
//!
//! ```no_run
//! # async fn demo() -> Result<(), cairn_testkit::browser::BrowserError> {
//! use cairn_testkit::browser::{Browser, PageOptions};
//! let browser = Browser::launch().await?;
//! let page = browser.new_page(PageOptions::phone().without_javascript()).await?;
//! page.goto("http://127.0.0.1:8080/").await?;
//! assert_eq!(page.text("h1").await?, "Streams");
//! page.fill("input[name=token]", "secret").await?;
//! page.click_and_wait("button[type=submit]").await?;
//! assert!(page.problems().is_empty(), "{:#?}", page.problems());
//! page.screenshot(std::path::Path::new("/tmp/overview-phone.png")).await?;
//! # Ok(())
//! # }
//! ```
//!
//! - [`Browser::launch`] starts `/usr/bin/chromium` (or `$CHROMIUM`) headless
//!   with a fresh profile and no background networking (this machine's closed
//!   network refuses Chromium's own connections, and tests must not depend on
//!   them). [`Browser::launch_at`] takes the path instead, and
//!   [`Browser::launch_with`] adds flags ([`LaunchOptions`]). Dropping the
//!   [`Browser`] kills Chromium's whole process group and removes the profile.
//! - [`Browser::new_page`] opens a tab in its own browser context (own cookie
//!   jar), with the viewport and JavaScript setting of its [`PageOptions`]:
//!   [`PageOptions::desktop`] is 1280x900, [`PageOptions::phone`] is 390x844
//!   with mobile emulation (touch, mobile layout), both at device scale 1 so a
//!   screenshot's pixels are CSS pixels.
//! - [`Page::goto`] navigates and waits for the main frame's `load`;
//!   [`Page::click_and_wait`] clicks (a real mouse click at the element's
//!   centre, so it submits forms with JavaScript off too) and waits for the
//!   next document's `load`; [`Page::click`] clicks without waiting.
//! - [`Page::eval`] evaluates an expression (awaiting a promise) and returns its
//!   JSON value. On top of it: [`Page::text`] (an element's text, whitespace
//!   collapsed), [`Page::texts`], [`Page::attr`], [`Page::count`],
//!   [`Page::fill`] and [`Page::url`]. With JavaScript off (`javascript:
//!   false`, CDP's `Emulation.setScriptExecutionDisabled`) the page's own
//!   scripts do not run, but [`Page::eval`] still does: the tests check both.
//! - [`Page::problems`] lists, since the page was opened, every console error
//!   or warning, uncaught exception, browser log error or warning (these
//!   include Content-Security-Policy violations), failed request, response
//!   with status >= 400 and `Set-Cookie` the browser refused, each naming its
//!   URL. A clean page has none.
//! - [`Page::screenshot`] writes a full-page PNG: the viewport's width and the
//!   content's height. [`png_dimensions`] reads a PNG's size from its header.
//! - [`Page::cookies`] lists every cookie in the page's cookie jar, with its
//!   attributes; [`Page::set_cookie`] and [`Page::clear_cookies`] change it.
//!
//! Every command and navigation times out after [`PageOptions::timeout`]
//! (30 s by default) with [`BrowserError::Timeout`].
//!
//! # What Chromium does here (Debian's 156, checked by `tests/browser.rs`)
//!
//! - With JavaScript off, the page's `<script>`s do not run, but
//!   `Runtime.evaluate` (so [`Page::eval`] and every helper) still does, and a
//!   mouse click on a submit button still submits its form.
//! - A `Secure; HttpOnly; SameSite=Strict` cookie set by plain
//!   `http://127.0.0.1:PORT` (or `http://localhost:PORT`) is kept and sent
//!   back: loopback origins count as secure.
//! - Chromium asks every page for `/favicon.ico`; a 404 there is a problem
//!   like any other, so a site under test serves one.
//! - A refused cookie shows as `cookie refused: NAME (REASON) (URL)`, a CSP
//!   violation as `log error (security): ...`, a 404 as both `HTTP 404 ...`
//!   and `log error (network): ...`.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::{self, Message, protocol::WebSocketConfig};

/// Where Debian's `chromium` package puts its launcher.
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// How long Chromium may take to print its DevTools address.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a browser-level command (opening a page) may take.
const BROWSER_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Chromium's stderr lines kept for error messages.
const STDERR_TAIL_LINES: usize = 30;

/// Flags for a quiet, reproducible headless Chromium. The network flags matter:
/// Chromium otherwise connects to Google services in the background, which a
/// closed network refuses (slowly), and which tests must not depend on.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-port=0",
];

/// What went wrong driving the browser.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    #[error(
        "no Chromium at {path}: install Debian's chromium (apt-get install chromium); scripts/test installs it"
    )]
    NotInstalled { path: PathBuf },
    #[error("creating Chromium's profile directory: {0}")]
    Profile(#[source] std::io::Error),
    #[error("starting Chromium {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "Chromium {path} printed no DevTools address within {seconds} s; its last output:\n{stderr}"
    )]
    NoDevToolsAddress {
        path: PathBuf,
        seconds: u64,
        stderr: String,
    },
    #[error("connecting to Chromium's DevTools at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: Box<tungstenite::Error>,
    },
    #[error("Chromium's DevTools connection closed during {method}")]
    Closed { method: String },
    #[error("DevTools {method} failed: {message}")]
    Protocol { method: String, message: String },
    #[error("DevTools {method} answered without {field}: {answer}")]
    Unexpected {
        method: String,
        field: &'static str,
        answer: String,
    },
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout { what: String, seconds: u64 },
    #[error("navigating to {url}: {reason}")]
    Navigation { url: String, reason: String },
    #[error("script `{script}` threw: {exception}")]
    Script { script: String, exception: String },
    #[error("no element matches the selector {selector}")]
    NoElement { selector: String },
    #[error("writing the screenshot {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BrowserError {
    /// A short label for the kind of failure.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NotInstalled { .. } => "not_installed",
            Self::Profile(_) => "profile",
            Self::Spawn { .. } => "spawn",
            Self::NoDevToolsAddress { .. } => "no_devtools_address",
            Self::Connect { .. } => "connect",
            Self::Closed { .. } => "closed",
            Self::Protocol { .. } => "protocol",
            Self::Unexpected { .. } => "unexpected",
            Self::Timeout { .. } => "timeout",
            Self::Navigation { .. } => "navigation",
            Self::Script { .. } => "script",
            Self::NoElement { .. } => "no_element",
            Self::Write { .. } => "write",
        }
    }
}

type Result<T, E = BrowserError> = std::result::Result<T, E>;

/// A poisoned lock only means another thread panicked mid-update; the data
/// (lists of strings, pending replies) is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running headless Chromium. Dropping it kills Chromium and removes its
/// profile.
#[derive(Debug)]
pub struct Browser {
    connection: Arc<Connection>,
    // Declared last: dropped after the connection, it kills the process
    // group, then removes the profile.
    process: ChromiumProcess,
}

impl Browser {
    /// Start `$CHROMIUM`, or Debian's `/usr/bin/chromium` when unset.
    pub async fn launch() -> Result<Browser> {
        Self::launch_with(LaunchOptions::from_env()).await
    }

    /// Start the Chromium at `path`.
    pub async fn launch_at(path: &Path) -> Result<Browser> {
        Self::launch_with(LaunchOptions {
            chromium: path.to_owned(),
            extra_args: Vec::new(),
        })
        .await
    }

    /// Start Chromium as `options` say.
    pub async fn launch_with(options: LaunchOptions) -> Result<Browser> {
        let path = options.chromium.as_path();
        if !path.is_file() {
            return Err(BrowserError::NotInstalled {
                path: path.to_owned(),
            });
        }
        let profile = tempfile::Builder::new()
            .prefix("cairn-chromium-")
            .tempdir()
            .map_err(BrowserError::Profile)?;
        let mut command = Command::new(path);
        command
            .args(CHROMIUM_FLAGS)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(&options.extra_args)
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // Its own process group, so dropping the browser can kill the
            // renderers and zygotes with it.
            .process_group(0);
        let mut child = command.spawn().map_err(|source| BrowserError::Spawn {
            path: path.to_owned(),
            source,
        })?;
        let stderr = child.stderr.take();
        let process = ChromiumProcess {
            child,
            _profile: profile,
            stderr_tail: Arc::new(Mutex::new(VecDeque::new())),
        };

        // Chromium prints its DevTools address on stderr; a thread keeps
        // reading after that so Chromium never blocks on a full pipe.
        let (address_sender, address) = oneshot::channel();
        if let Some(stderr) = stderr {
            let tail = Arc::clone(&process.stderr_tail);
            std::thread::spawn(move || {
                let mut address_sender = Some(address_sender);
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(url) = line.strip_prefix("DevTools listening on ")
                        && let Some(sender) = address_sender.take()
                    {
                        let _ = sender.send(url.trim().to_owned());
                    }
                    let mut tail = lock(&tail);
                    if tail.len() == STDERR_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            });
        }
        let url = match tokio::time::timeout(LAUNCH_TIMEOUT, address).await {
            Ok(Ok(url)) => url,
            // Timed out, or stderr closed (Chromium exited) without an address.
            _ => {
                return Err(BrowserError::NoDevToolsAddress {
                    path: path.to_owned(),
                    seconds: LAUNCH_TIMEOUT.as_secs(),
                    stderr: process.stderr_tail(),
                });
            }
        };
        let connection = Connection::open(&url).await?;
        Ok(Browser {
            connection: Arc::new(connection),
            process,
        })
    }

    /// Chromium's last lines on stderr, for diagnosing a failed test.
    pub fn stderr_tail(&self) -> String {
        self.process.stderr_tail()
    }

    /// Open a blank tab in a fresh browser context (its own cookie jar) with
    /// these options, its DevTools domains enabled so [`Page::problems`]
    /// records from the start.
    pub async fn new_page(&self, options: PageOptions) -> Result<Page> {
        let connection = &self.connection;
        let context = connection
            .call(
                None,
                "Target.createBrowserContext",
                json!({ "disposeOnDetach": true }),
                BROWSER_COMMAND_TIMEOUT,
            )
            .await?;
        let context = string_field(&context, "Target.createBrowserContext", "browserContextId")?;
        let target = connection
            .call(
                None,
                "Target.createTarget",
                json!({ "url": "about:blank", "browserContextId": context }),
                BROWSER_COMMAND_TIMEOUT,
            )
            .await?;
        let target = string_field(&target, "Target.createTarget", "targetId")?;
        let attached = connection
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
                BROWSER_COMMAND_TIMEOUT,
            )
            .await?;
        let session = string_field(&attached, "Target.attachToTarget", "sessionId")?;
        // A page target's main frame has the target's id.
        let events = Arc::new(SessionEvents::new(target.clone()));
        lock(&connection.wire.sessions).insert(session.clone(), Arc::clone(&events));
        let page = Page {
            connection: Arc::clone(connection),
            session,
            target,
            context,
            events,
            options,
        };
        for domain in ["Page", "Runtime", "Log", "Network"] {
            page.call(&format!("{domain}.enable"), json!({})).await?;
        }
        page.call("Page.setLifecycleEventsEnabled", json!({ "enabled": true }))
            .await?;
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": options.width,
                "height": options.height,
                "deviceScaleFactor": options.device_scale_factor,
                "mobile": options.mobile,
            }),
        )
        .await?;
        if options.mobile {
            page.call(
                "Emulation.setTouchEmulationEnabled",
                json!({ "enabled": true, "maxTouchPoints": 5 }),
            )
            .await?;
        }
        if !options.javascript {
            page.call(
                "Emulation.setScriptExecutionDisabled",
                json!({ "value": true }),
            )
            .await?;
        }
        Ok(page)
    }
}

/// Which Chromium to start, and with what more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchOptions {
    /// The Chromium launcher.
    pub chromium: PathBuf,
    /// Flags after the driver's own (before the start URL).
    pub extra_args: Vec<String>,
}

impl LaunchOptions {
    /// `$CHROMIUM`, or Debian's `/usr/bin/chromium` when unset; no extra flags.
    pub fn from_env() -> Self {
        Self {
            chromium: std::env::var_os("CHROMIUM")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_CHROMIUM)),
            extra_args: Vec::new(),
        }
    }
}

/// The Chromium child process and its profile directory.
#[derive(Debug)]
struct ChromiumProcess {
    child: Child,
    _profile: tempfile::TempDir,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl ChromiumProcess {
    fn stderr_tail(&self) -> String {
        lock(&self.stderr_tail)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for ChromiumProcess {
    fn drop(&mut self) {
        // The whole group: Chromium's zygote and renderers too. The profile
        // (a field) is removed after this, once nothing writes to it.
        let group = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a page is opened: viewport, device emulation, JavaScript.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageOptions {
    /// Viewport width in CSS pixels.
    pub width: u32,
    /// Viewport height in CSS pixels.
    pub height: u32,
    /// Emulate a phone: mobile layout (honours `<meta name=viewport>`) and touch.
    pub mobile: bool,
    /// Device pixels per CSS pixel; 1 makes screenshot pixels CSS pixels.
    pub device_scale_factor: f64,
    /// Whether the page's own scripts run.
    pub javascript: bool,
    /// Limit for each DevTools command and each navigation.
    pub timeout: Duration,
}

impl PageOptions {
    /// A desktop window: 1280x900, JavaScript on.
    pub fn desktop() -> Self {
        Self {
            width: 1280,
            height: 900,
            mobile: false,
            device_scale_factor: 1.0,
            javascript: true,
            timeout: Duration::from_secs(30),
        }
    }

    /// A phone: 390x844 with mobile emulation, JavaScript on.
    pub fn phone() -> Self {
        Self {
            width: 390,
            height: 844,
            mobile: true,
            ..Self::desktop()
        }
    }

    /// The same options with the page's scripts disabled.
    pub fn without_javascript(self) -> Self {
        Self {
            javascript: false,
            ..self
        }
    }
}

impl Default for PageOptions {
    fn default() -> Self {
        Self::desktop()
    }
}

/// A cookie as Chromium stores it (CDP `Network.Cookie`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cookie {
    pub name: String,
    pub value: String,
    pub domain: String,
    pub path: String,
    /// Seconds since the epoch; -1 for a session cookie.
    #[serde(default)]
    pub expires: f64,
    pub http_only: bool,
    pub secure: bool,
    /// True when the cookie ends with the browser session (no Max-Age/Expires).
    pub session: bool,
    /// `Strict`, `Lax` or `None`; absent when the cookie did not say.
    #[serde(default)]
    pub same_site: Option<String>,
}

/// One open tab. Dropping it closes the tab and its browser context.
#[derive(Debug)]
pub struct Page {
    connection: Arc<Connection>,
    session: String,
    target: String,
    context: String,
    events: Arc<SessionEvents>,
    options: PageOptions,
}

impl Page {
    async fn call(&self, method: &str, params: Value) -> Result<Value> {
        self.connection
            .call(Some(&self.session), method, params, self.options.timeout)
            .await
    }

    /// The options the page was opened with.
    pub fn options(&self) -> PageOptions {
        self.options
    }

    /// Navigate to `url` and wait for its `load` event. A response with an
    /// error status still loads (and is listed in [`Page::problems`]); a
    /// request that gets no response fails with [`BrowserError::Navigation`].
    pub async fn goto(&self, url: &str) -> Result<()> {
        let loads = self.events.loads.subscribe();
        let navigated = self.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(reason) = navigated.get("errorText").and_then(Value::as_str) {
            return Err(BrowserError::Navigation {
                url: url.to_owned(),
                reason: reason.to_owned(),
            });
        }
        // A same-document navigation (only the fragment changes) loads nothing.
        let Some(loader) = navigated.get("loaderId").and_then(Value::as_str) else {
            return Ok(());
        };
        self.wait_for_load(loads, url, |loaded| loaded == loader)
            .await
    }

    /// Click the element `selector` matches (see [`Page::click`]) and wait
    /// for the next document to load: a form submit, a link.
    pub async fn click_and_wait(&self, selector: &str) -> Result<()> {
        let loads = self.events.loads.subscribe();
        let current = loads.borrow().loader.clone();
        self.click(selector).await?;
        let what = format!("the page loaded by clicking {selector}");
        self.wait_for_load(loads, &what, |loaded| Some(loaded) != current.as_deref())
            .await
    }

    async fn wait_for_load(
        &self,
        mut loads: watch::Receiver<Loads>,
        what: &str,
        done: impl Fn(&str) -> bool,
    ) -> Result<()> {
        let timeout = self.options.timeout;
        let waited = tokio::time::timeout(
            timeout,
            loads.wait_for(|state| state.closed || state.loader.as_deref().is_some_and(&done)),
        )
        .await;
        match waited {
            Ok(Ok(state)) if !state.closed => Ok(()),
            Ok(_) => Err(BrowserError::Closed {
                method: format!("loading {what}"),
            }),
            Err(_) => Err(BrowserError::Timeout {
                what: format!("{what} to load"),
                seconds: timeout.as_secs(),
            }),
        }
    }

    /// Evaluate a JavaScript expression in the page (awaiting it when it is
    /// a promise) and return its value as JSON; `undefined` is `null`.
    /// Works with the page's JavaScript disabled too.
    pub async fn eval(&self, expression: &str) -> Result<Value> {
        let evaluated = self
            .call(
                "Runtime.evaluate",
                json!({
                    "expression": expression,
                    "returnByValue": true,
                    "awaitPromise": true,
                    "userGesture": true,
                }),
            )
            .await?;
        if let Some(details) = evaluated.get("exceptionDetails") {
            let exception = details["exception"]["description"]
                .as_str()
                .or_else(|| details["text"].as_str())
                .unwrap_or("an exception")
                .to_owned();
            return Err(BrowserError::Script {
                script: shorten(expression),
                exception,
            });
        }
        Ok(evaluated["result"]
            .get("value")
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// Evaluate a function of the element `selector` matches; `null` from the
    /// script means no element matched.
    async fn on_element(&self, selector: &str, body: &str) -> Result<Value> {
        let quoted = Value::from(selector).to_string();
        let value = self
            .eval(&format!(
                "(() => {{ const element = document.querySelector({quoted}); \
                 if (element === null) return null; {body} }})()"
            ))
            .await?;
        if value.is_null() {
            return Err(BrowserError::NoElement {
                selector: selector.to_owned(),
            });
        }
        Ok(value)
    }

    /// The text of the first element `selector` matches, whitespace runs
    /// collapsed to one space and trimmed.
    pub async fn text(&self, selector: &str) -> Result<String> {
        let text = self
            .on_element(selector, "return element.textContent;")
            .await?;
        Ok(collapse_whitespace(text.as_str().unwrap_or_default()))
    }

    /// The texts of every element `selector` matches, in document order,
    /// whitespace collapsed as in [`Page::text`].
    pub async fn texts(&self, selector: &str) -> Result<Vec<String>> {
        let quoted = Value::from(selector).to_string();
        let texts = self
            .eval(&format!(
                "Array.from(document.querySelectorAll({quoted}), element => element.textContent)"
            ))
            .await?;
        Ok(texts
            .as_array()
            .map(|texts| {
                texts
                    .iter()
                    .map(|text| collapse_whitespace(text.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The attribute `name` of the first element `selector` matches; `None`
    /// when the element has no such attribute.
    pub async fn attr(&self, selector: &str, name: &str) -> Result<Option<String>> {
        let quoted = Value::from(name).to_string();
        let value = self
            .on_element(
                selector,
                &format!("return {{ value: element.getAttribute({quoted}) }};"),
            )
            .await?;
        Ok(value["value"].as_str().map(str::to_owned))
    }

    /// How many elements `selector` matches.
    pub async fn count(&self, selector: &str) -> Result<usize> {
        let quoted = Value::from(selector).to_string();
        let count = self
            .eval(&format!("document.querySelectorAll({quoted}).length"))
            .await?;
        Ok(count
            .as_u64()
            .and_then(|count| usize::try_from(count).ok())
            .unwrap_or(0))
    }

    /// Set the value of the form field `selector` matches, and fire `input`
    /// and `change` as typing would.
    pub async fn fill(&self, selector: &str, value: &str) -> Result<()> {
        let quoted = Value::from(value).to_string();
        self.on_element(
            selector,
            &format!(
                "element.focus(); element.value = {quoted}; \
                 element.dispatchEvent(new Event('input', {{ bubbles: true }})); \
                 element.dispatchEvent(new Event('change', {{ bubbles: true }})); \
                 return true;"
            ),
        )
        .await?;
        Ok(())
    }

    /// Click the centre of the element `selector` matches with the mouse, as a
    /// person would (scrolled into view first). It does not wait for what the
    /// click starts; [`Page::click_and_wait`] does.
    pub async fn click(&self, selector: &str) -> Result<()> {
        let centre = self
            .on_element(
                selector,
                "element.scrollIntoView({ block: 'center', inline: 'center' }); \
                 const box = element.getBoundingClientRect(); \
                 return { x: box.left + box.width / 2, y: box.top + box.height / 2 };",
            )
            .await?;
        let x = centre["x"].as_f64().unwrap_or_default();
        let y = centre["y"].as_f64().unwrap_or_default();
        self.call(
            "Input.dispatchMouseEvent",
            json!({ "type": "mouseMoved", "x": x, "y": y }),
        )
        .await?;
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            )
            .await?;
        }
        Ok(())
    }

    /// The document's URL.
    pub async fn url(&self) -> Result<String> {
        let url = self.eval("document.location.href").await?;
        Ok(url.as_str().unwrap_or_default().to_owned())
    }

    /// Everything that went wrong since the page was opened, in order: console
    /// errors and warnings, uncaught exceptions, browser log errors and
    /// warnings (CSP violations among them), failed requests and responses
    /// with status >= 400. Each names its URL.
    pub fn problems(&self) -> Vec<String> {
        lock(&self.events.problems).clone()
    }

    /// Write a PNG of the whole page: the viewport's width, the content's
    /// height (at least the viewport's).
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let png = self.screenshot_png().await?;
        std::fs::write(path, png).map_err(|source| BrowserError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// The PNG [`Page::screenshot`] writes.
    pub async fn screenshot_png(&self) -> Result<Vec<u8>> {
        let metrics = self.call("Page.getLayoutMetrics", json!({})).await?;
        let content_height = metrics["cssContentSize"]["height"]
            .as_f64()
            .unwrap_or_default();
        let height = content_height.max(f64::from(self.options.height)).ceil();
        let shot = self
            .call(
                "Page.captureScreenshot",
                json!({
                    "format": "png",
                    "captureBeyondViewport": true,
                    "clip": {
                        "x": 0, "y": 0,
                        "width": self.options.width, "height": height,
                        "scale": 1,
                    },
                }),
            )
            .await?;
        let data = string_field(&shot, "Page.captureScreenshot", "data")?;
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|error| BrowserError::Unexpected {
                method: "Page.captureScreenshot".to_owned(),
                field: "base64 data",
                answer: error.to_string(),
            })
    }

    /// Every cookie in the page's cookie jar (its browser context), with its
    /// attributes, whichever site set it.
    pub async fn cookies(&self) -> Result<Vec<Cookie>> {
        let answer = self
            .connection
            .call(
                None,
                "Storage.getCookies",
                json!({ "browserContextId": self.context }),
                self.options.timeout,
            )
            .await?;
        serde_json::from_value(answer["cookies"].clone()).map_err(|error| {
            BrowserError::Unexpected {
                method: "Storage.getCookies".to_owned(),
                field: "cookies",
                answer: error.to_string(),
            }
        })
    }

    /// Store a cookie for `url` in the page's cookie jar (no attributes
    /// beyond what the URL implies).
    pub async fn set_cookie(&self, url: &str, name: &str, value: &str) -> Result<()> {
        self.call(
            "Network.setCookie",
            json!({ "url": url, "name": name, "value": value }),
        )
        .await?;
        Ok(())
    }

    /// Remove every cookie from the page's cookie jar.
    pub async fn clear_cookies(&self) -> Result<()> {
        self.call("Network.clearBrowserCookies", json!({})).await?;
        Ok(())
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        lock(&self.connection.wire.sessions).remove(&self.session);
        // Fire and forget: Drop cannot wait for the answers.
        self.connection
            .send_only("Target.closeTarget", json!({ "targetId": self.target }));
        self.connection.send_only(
            "Target.disposeBrowserContext",
            json!({ "browserContextId": self.context }),
        );
    }
}

/// Width and height from a PNG's IHDR chunk; `None` when `png` is not a PNG.
pub fn png_dimensions(png: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    let rest = png.strip_prefix(SIGNATURE)?;
    // The first chunk: 4-byte length, "IHDR", then width and height.
    if rest.get(4..8)? != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(rest.get(8..12)?.try_into().ok()?);
    let height = u32::from_be_bytes(rest.get(12..16)?.try_into().ok()?);
    Some((width, height))
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn shorten(text: &str) -> String {
    const LIMIT: usize = 200;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn string_field(answer: &Value, method: &str, field: &'static str) -> Result<String> {
    answer
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| BrowserError::Unexpected {
            method: method.to_owned(),
            field,
            answer: shorten(&answer.to_string()),
        })
}

/// The last main-frame document that finished loading.
#[derive(Debug, Clone, Default)]
struct Loads {
    /// DevTools' loader id of that document.
    loader: Option<String>,
    /// The connection closed: nothing more will load.
    closed: bool,
}

/// What one page's events recorded.
#[derive(Debug)]
struct SessionEvents {
    main_frame: String,
    problems: Mutex<Vec<String>>,
    /// Request ids to URLs, to name the URL of a failed request.
    request_urls: Mutex<HashMap<String, String>>,
    loads: watch::Sender<Loads>,
}

impl SessionEvents {
    fn new(main_frame: String) -> Self {
        Self {
            main_frame,
            problems: Mutex::new(Vec::new()),
            request_urls: Mutex::new(HashMap::new()),
            loads: watch::Sender::new(Loads::default()),
        }
    }

    fn problem(&self, problem: String) {
        lock(&self.problems).push(problem);
    }

    fn record(&self, method: &str, params: &Value) {
        let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
        match method {
            "Page.lifecycleEvent"
                if params["name"] == "load" && params["frameId"] == self.main_frame.as_str() =>
            {
                let loader = text(&params["loaderId"]);
                self.loads.send_modify(|loads| loads.loader = Some(loader));
            }
            "Runtime.consoleAPICalled" => {
                let kind = text(&params["type"]);
                if matches!(kind.as_str(), "error" | "warning" | "assert") {
                    let message = params["args"]
                        .as_array()
                        .map(|args| args.iter().map(remote_object_text).collect::<Vec<_>>())
                        .unwrap_or_default()
                        .join(" ");
                    let url = text(&params["stackTrace"]["callFrames"][0]["url"]);
                    self.problem(format!("console.{kind}: {message} ({url})"));
                }
            }
            "Runtime.exceptionThrown" => {
                let details = &params["exceptionDetails"];
                let message = details["exception"]["description"]
                    .as_str()
                    .or_else(|| details["text"].as_str())
                    .unwrap_or("an exception");
                let url = text(&details["url"]);
                self.problem(format!("uncaught exception: {message} ({url})"));
            }
            "Log.entryAdded" => {
                let entry = &params["entry"];
                let level = text(&entry["level"]);
                if matches!(level.as_str(), "error" | "warning") {
                    let source = text(&entry["source"]);
                    let message = text(&entry["text"]);
                    let url = text(&entry["url"]);
                    self.problem(format!("log {level} ({source}): {message} ({url})"));
                }
            }
            "Network.requestWillBeSent" => {
                lock(&self.request_urls)
                    .insert(text(&params["requestId"]), text(&params["request"]["url"]));
            }
            "Network.responseReceived" => {
                let response = &params["response"];
                let status = response["status"].as_u64().unwrap_or_default();
                if status >= 400 {
                    let status_text = text(&response["statusText"]);
                    let url = text(&response["url"]);
                    self.problem(format!("HTTP {status} {status_text} ({url})"));
                }
            }
            "Network.responseReceivedExtraInfo" => {
                // Set-Cookie headers the browser refused, and why: a refused
                // session cookie otherwise only shows as a failed login.
                let Some(blocked) = params["blockedCookies"].as_array() else {
                    return;
                };
                if blocked.is_empty() {
                    return;
                }
                let url = lock(&self.request_urls)
                    .get(params["requestId"].as_str().unwrap_or_default())
                    .cloned()
                    .unwrap_or_default();
                for cookie in blocked {
                    if cookie["blockedReasons"]
                        .as_array()
                        .is_none_or(Vec::is_empty)
                    {
                        continue;
                    }
                    let line = text(&cookie["cookieLine"]);
                    let name = line.split(['=', ';']).next().unwrap_or_default().trim();
                    let reasons = cookie["blockedReasons"]
                        .as_array()
                        .map(|reasons| reasons.iter().map(text).collect::<Vec<_>>())
                        .unwrap_or_default()
                        .join(", ");
                    self.problem(format!("cookie refused: {name} ({reasons}) ({url})"));
                }
            }
            "Network.loadingFailed" => {
                let url = lock(&self.request_urls)
                    .get(params["requestId"].as_str().unwrap_or_default())
                    .cloned()
                    .unwrap_or_default();
                let mut reason = text(&params["errorText"]);
                if let Some(blocked) = params["blockedReason"].as_str() {
                    reason.push_str(&format!(", blocked: {blocked}"));
                }
                if params["canceled"] == true {
                    reason.push_str(", canceled");
                }
                self.problem(format!("request failed: {reason} ({url})"));
            }
            _ => {}
        }
    }
}

/// A console argument as text: its value when it has one, else its description.
fn remote_object_text(object: &Value) -> String {
    match object.get("value") {
        Some(Value::String(text)) => text.clone(),
        Some(value) => value.to_string(),
        None => object["description"]
            .as_str()
            .unwrap_or_else(|| object["type"].as_str().unwrap_or_default())
            .to_owned(),
    }
}

/// Replies waited for, and the pages whose events are recorded.
#[derive(Debug, Default)]
struct Wire {
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>,
    sessions: Mutex<HashMap<String, Arc<SessionEvents>>>,
}

impl Wire {
    fn dispatch(&self, text: &str) {
        let Ok(message) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if let Some(id) = message.get("id").and_then(Value::as_u64) {
            if let Some(reply) = lock(&self.pending).remove(&id) {
                let answer = match message.get("error") {
                    Some(error) => Err(error["message"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| error.to_string())),
                    None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
                };
                let _ = reply.send(answer);
            }
            return;
        }
        let (Some(method), Some(session)) = (
            message.get("method").and_then(Value::as_str),
            message.get("sessionId").and_then(Value::as_str),
        ) else {
            return;
        };
        let events = lock(&self.sessions).get(session).cloned();
        if let Some(events) = events {
            events.record(method, &message["params"]);
        }
    }

    /// The connection ended: fail every waiting call and navigation.
    fn close(&self) {
        lock(&self.pending).clear();
        for events in lock(&self.sessions).values() {
            events.loads.send_modify(|loads| loads.closed = true);
        }
    }
}

/// The DevTools websocket: a task owns it, sending what `outgoing` carries and
/// dispatching what arrives.
#[derive(Debug)]
struct Connection {
    outgoing: mpsc::UnboundedSender<Message>,
    wire: Arc<Wire>,
    task: tokio::task::JoinHandle<()>,
}

impl Connection {
    async fn open(url: &str) -> Result<Self> {
        // Full-page screenshots arrive as one large message.
        let config = WebSocketConfig::default()
            .max_message_size(Some(512 << 20))
            .max_frame_size(Some(512 << 20));
        let (socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false)
            .await
            .map_err(|source| BrowserError::Connect {
                url: url.to_owned(),
                source: Box::new(source),
            })?;
        let wire = Arc::new(Wire::default());
        let (outgoing, mut to_send) = mpsc::unbounded_channel::<Message>();
        let task_wire = Arc::clone(&wire);
        let task = tokio::spawn(async move {
            let (mut sink, mut stream) = socket.split();
            loop {
                tokio::select! {
                    message = to_send.recv() => match message {
                        Some(message) => {
                            if sink.send(message).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                    incoming = stream.next() => match incoming {
                        Some(Ok(Message::Text(text))) => task_wire.dispatch(text.as_str()),
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => break,
                    },
                }
            }
            task_wire.close();
        });
        Ok(Self {
            outgoing,
            wire,
            task,
        })
    }

    fn message(&self, id: u64, session: Option<&str>, method: &str, params: Value) -> Message {
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = Value::from(session);
        }
        Message::text(message.to_string())
    }

    async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value> {
        let id = self.wire.next_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        lock(&self.wire.pending).insert(id, reply);
        let closed = || BrowserError::Closed {
            method: method.to_owned(),
        };
        if self
            .outgoing
            .send(self.message(id, session, method, params))
            .is_err()
        {
            lock(&self.wire.pending).remove(&id);
            return Err(closed());
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err(message))) => Err(BrowserError::Protocol {
                method: method.to_owned(),
                message,
            }),
            Ok(Err(_)) => Err(closed()),
            Err(_) => {
                lock(&self.wire.pending).remove(&id);
                Err(BrowserError::Timeout {
                    what: format!("DevTools {method}"),
                    seconds: timeout.as_secs(),
                })
            }
        }
    }

    /// Send a browser-level command without waiting for its answer.
    fn send_only(&self, method: &str, params: Value) {
        let id = self.wire.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = self.outgoing.send(self.message(id, None, method, params));
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}
