//! A FleetLock server for tests: a counting semaphore per group with recursive
//! locking and, like airlock, no lease timeout, so a test notices any path
//! that leaves a slot held.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// A running lock server.
#[derive(Debug)]
pub struct LockServer {
    /// Base URL (no trailing slash, on purpose: clients must keep the path).
    pub base_url: String,
    state: Arc<Mutex<Locks>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Locks {
    slots: usize,
    holders: BTreeMap<String, BTreeSet<String>>,
    requests: Vec<(String, String, String)>,
    /// The status Cairn's boot-failed extension answers; `None`: 404, as a
    /// server without the extension (airlock) answers.
    boot_failed_status: Option<u16>,
}

impl LockServer {
    /// Start with `slots` reboot slots per group.
    pub async fn start(slots: usize) -> LockServer {
        let state = Arc::new(Mutex::new(Locks {
            slots,
            ..Locks::default()
        }));
        let app = axum::Router::new()
            .route("/fleet_lock/v1/pre-reboot", axum::routing::post(pre_reboot))
            .route(
                "/fleet_lock/v1/steady-state",
                axum::routing::post(steady_state),
            )
            .route(
                "/fleet_lock/v1/x-cairn/boot-failed",
                axum::routing::post(boot_failed),
            )
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("lock server: {e}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("lock server: {e}"));
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        LockServer {
            base_url: format!("http://{address}/fleet_lock"),
            state,
            task,
        }
    }

    /// Who holds a slot in `group`.
    pub fn holders(&self, group: &str) -> Vec<String> {
        self.state
            .lock()
            .map(|locks| {
                locks
                    .holders
                    .get(group)
                    .map(|h| h.iter().cloned().collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }

    /// Let node `id` hold a slot in `group`, as another node that took it.
    pub fn hold(&self, group: &str, id: &str) {
        if let Ok(mut locks) = self.state.lock() {
            locks
                .holders
                .entry(group.to_string())
                .or_default()
                .insert(id.to_string());
        }
    }

    /// Answer Cairn's boot-failed extension with `status` (`None`: 404, as
    /// airlock does). Each call is recorded as `x-cairn/boot-failed`.
    pub fn answer_boot_failed(&self, status: Option<u16>) {
        if let Ok(mut locks) = self.state.lock() {
            locks.boot_failed_status = status;
        }
    }

    /// Every request seen: (operation, id, group).
    pub fn requests(&self) -> Vec<(String, String, String)> {
        self.state
            .lock()
            .map(|l| l.requests.clone())
            .unwrap_or_default()
    }
}

impl Drop for LockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn error(status: StatusCode, kind: &str, value: &str) -> axum::response::Response {
    (status, Json(json!({"kind": kind, "value": value}))).into_response()
}

/// The node and group of a request, or the (kind, message) of a 400.
fn client_params(
    headers: &HeaderMap,
    body: &str,
) -> Result<(String, String), (&'static str, &'static str)> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("fleet-lock-protocol") != Some("true") {
        return Err(("missing_header", "fleet-lock-protocol: true is required"));
    }
    if header("content-type") != Some("application/json") {
        return Err(("bad_content_type", "application/json is required"));
    }
    let value: Value = serde_json::from_str(body).map_err(|_| ("bad_body", "not JSON"))?;
    let field = |name: &str| {
        value["client_params"][name]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let (id, group) = (field("id"), field("group"));
    if id.is_empty() || group.is_empty() {
        return Err(("bad_body", "client_params.id and .group are required"));
    }
    Ok((id, group))
}

/// What both endpoints do first: check the body, take the state, record the request.
fn begin<'a>(
    state: &'a Mutex<Locks>,
    headers: &HeaderMap,
    body: &str,
    endpoint: &str,
) -> Result<(std::sync::MutexGuard<'a, Locks>, String, String), Box<axum::response::Response>> {
    let (id, group) = client_params(headers, body)
        .map_err(|(kind, value)| Box::new(error(StatusCode::BAD_REQUEST, kind, value)))?;
    let mut locks = state.lock().map_err(|_| {
        Box::new(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "poisoned",
            "lock state poisoned",
        ))
    })?;
    locks
        .requests
        .push((endpoint.into(), id.clone(), group.clone()));
    Ok((locks, id, group))
}

async fn pre_reboot(
    State(state): State<Arc<Mutex<Locks>>>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let (mut locks, id, group) = match begin(&state, &headers, &body, "pre-reboot") {
        Ok(begun) => begun,
        Err(response) => return *response,
    };
    let slots = locks.slots;
    let holders = locks.holders.entry(group).or_default();
    if holders.contains(&id) || holders.len() < slots {
        holders.insert(id);
        StatusCode::OK.into_response()
    } else {
        error(
            StatusCode::CONFLICT,
            "failed_lock",
            "all reboot slots are taken",
        )
    }
}

async fn steady_state(
    State(state): State<Arc<Mutex<Locks>>>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let (mut locks, id, group) = match begin(&state, &headers, &body, "steady-state") {
        Ok(begun) => begun,
        Err(response) => return *response,
    };
    if let Some(holders) = locks.holders.get_mut(&group) {
        holders.remove(&id);
    }
    StatusCode::OK.into_response()
}

async fn boot_failed(
    State(state): State<Arc<Mutex<Locks>>>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let (locks, _, _) = match begin(&state, &headers, &body, "x-cairn/boot-failed") {
        Ok(begun) => begun,
        Err(response) => return *response,
    };
    match locks
        .boot_failed_status
        .and_then(|code| StatusCode::from_u16(code).ok())
    {
        Some(status) if status.is_success() => status.into_response(),
        Some(status) => error(status, "unavailable", "the test says no"),
        None => error(StatusCode::NOT_FOUND, "not_found", "no such resource"),
    }
}
