//! The FleetLock protocol (`POST /v1/pre-reboot`, `POST /v1/steady-state`),
//! Cairn's extension `POST /v1/x-cairn/boot-failed`, and the admin calls
//! under `/v1/x-cairn/locks`.
//!
//! Lock calls carry no credentials, as the protocol has none: they are
//! limited to the configured client networks instead. Admin calls need a
//! bearer token with the `lock-admin` scope.

use crate::config::valid_group;
use crate::error::ApiError;
use crate::fleetlock::FleetLock;
use crate::fleetlock::model::{Denial, GroupPolicy, LockOp, Outcome};
use crate::metrics::KindLabels;
use crate::state::AppState;
use crate::tokens::Scope;
use axum::Json;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use std::net::SocketAddr;

/// The largest request body read.
pub const MAX_BODY_BYTES: usize = 4096;
/// The longest node id accepted.
pub const MAX_ID_CHARS: usize = 256;

#[derive(Debug, Deserialize)]
struct LockBody {
    client_params: ClientParams,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ClientParams {
    id: String,
    group: String,
}

fn fleet(state: &AppState) -> Result<&FleetLock, ApiError> {
    state.shared.fleet_lock.as_ref().ok_or(ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "not_found",
        value: "FleetLock is not configured on this server".into(),
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.chars().count() <= MAX_ID_CHARS && !id.chars().any(char::is_control)
}

/// A checked FleetLock call: the node, its group and the group's rules.
struct Call {
    id: String,
    group: String,
    policy: GroupPolicy,
    reason: Option<String>,
}

/// A request body, at most [`MAX_BODY_BYTES`].
async fn read_body(body: axum::body::Body) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "body_too_large",
            value: format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        })
}

/// Check everything about a lock call before the store is asked.
async fn check(lock: &FleetLock, request: Request, releasing: bool) -> Result<Call, ApiError> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    if !peer.is_some_and(|address| lock.config.allows(address)) {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            kind: "forbidden_network",
            value: "FleetLock calls are accepted only from the configured client networks".into(),
        });
    }
    let header = request
        .headers()
        .get("fleet-lock-protocol")
        .and_then(|value| value.to_str().ok());
    if !header.is_some_and(|value| value.trim().eq_ignore_ascii_case("true")) {
        return Err(ApiError::bad_request(
            "missing_protocol_header",
            "FleetLock calls need the header `fleet-lock-protocol: true`",
        ));
    }
    let bytes = read_body(request.into_body()).await?;
    let body: LockBody = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(
            "invalid_body",
            format!("expected {{\"client_params\":{{\"id\":..,\"group\":..}}}}: {e}"),
        )
    })?;
    let ClientParams { id, group } = body.client_params;
    if !valid_group(&group) {
        return Err(ApiError::bad_request(
            "invalid_group",
            "the group must match ^[a-zA-Z0-9.-]+$",
        ));
    }
    if !valid_id(&id) {
        return Err(ApiError::bad_request(
            "invalid_client_identity",
            format!(
                "the id must be 1 to {MAX_ID_CHARS} characters, none of them control characters"
            ),
        ));
    }
    // A slot is always given back, even in a group the configuration now
    // refuses: its holder could never release it otherwise.
    let policy = match lock.config.policy(&group) {
        Some(policy) => policy,
        None if releasing => lock.stored_policy(&group),
        None => {
            return Err(ApiError {
                status: StatusCode::FORBIDDEN,
                kind: "unknown_group",
                value: format!(
                    "group {group} is not configured, and this server refuses unlisted groups"
                ),
            });
        }
    };
    Ok(Call {
        id,
        group,
        policy,
        reason: body.reason,
    })
}

/// Count a refused lock call by its kind.
fn refused(state: &AppState, error: ApiError) -> Response {
    state
        .shared
        .metrics
        .lock_denials
        .get_or_create(&KindLabels { kind: error.kind })
        .inc();
    error.into_response()
}

async fn lock_call(
    state: &AppState,
    request: Request,
    op: impl FnOnce(&Call) -> LockOp,
) -> Result<(Call, Outcome), ApiError> {
    let lock = fleet(state)?;
    let call = check(lock, request, false).await?;
    apply_call(state, lock, call, op).await
}

async fn apply_call(
    state: &AppState,
    lock: &FleetLock,
    call: Call,
    op: impl FnOnce(&Call) -> LockOp,
) -> Result<(Call, Outcome), ApiError> {
    let now = (state.shared.clock)();
    let change = lock
        .apply(
            &state.shared.metrics,
            &call.group,
            call.policy,
            op(&call),
            now,
        )
        .await?;
    Ok((call, change.applied.outcome))
}

/// `POST /v1/pre-reboot`: take a slot.
pub async fn pre_reboot(State(state): State<AppState>, request: Request) -> Response {
    let (call, outcome) = match lock_call(&state, request, |call| LockOp::PreReboot {
        id: call.id.clone(),
    })
    .await
    {
        Ok(answer) => answer,
        Err(error) => return refused(&state, error),
    };
    match outcome {
        Outcome::Granted { already } => {
            Json(json!({"granted": true, "already_held": already})).into_response()
        }
        Outcome::Denied(Denial::Full { slots }) => refused(
            &state,
            ApiError {
                status: StatusCode::CONFLICT,
                kind: "group_full",
                value: format!(
                    "all {slots} slots of group {} are held by other nodes",
                    call.group
                ),
            },
        ),
        Outcome::Denied(Denial::Halted(halt)) => refused(
            &state,
            ApiError {
                status: StatusCode::LOCKED,
                kind: "group_halted",
                value: format!(
                    "group {} is halted since {}: node {}: {}; an operator resumes it with `cairn lock ack {}`",
                    call.group,
                    halt.at,
                    halt.node,
                    halt.reason.describe(),
                    call.group
                ),
            },
        ),
        other => internal(&other),
    }
}

fn internal(outcome: &Outcome) -> Response {
    tracing::error!(?outcome, "unexpected FleetLock outcome");
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        kind: "internal_error",
        value: "unexpected outcome".into(),
    }
    .into_response()
}

/// `POST /v1/steady-state`: give the slot back (success when none is held).
pub async fn steady_state(State(state): State<AppState>, request: Request) -> Response {
    let released = async {
        let lock = fleet(&state)?;
        let call = check(lock, request, true).await?;
        apply_call(&state, lock, call, |call| LockOp::SteadyState {
            id: call.id.clone(),
        })
        .await
    };
    match released.await {
        Ok((_, Outcome::Released { was_held })) => {
            Json(json!({"released": was_held})).into_response()
        }
        Ok((_, other)) => internal(&other),
        Err(error) => refused(&state, error),
    }
}

/// `POST /v1/x-cairn/boot-failed`: the node's boot failed; halt its group now.
pub async fn boot_failed(State(state): State<AppState>, request: Request) -> Response {
    let op = |call: &Call| LockOp::BootFailed {
        id: call.id.clone(),
        reason: call.reason.clone().unwrap_or_default(),
    };
    match lock_call(&state, request, op).await {
        Ok((_, Outcome::Halted)) => Json(json!({"halted": true})).into_response(),
        Ok((call, Outcome::Denied(Denial::NotHolder))) => refused(
            &state,
            ApiError {
                status: StatusCode::CONFLICT,
                kind: "not_holder",
                value: format!(
                    "node {} holds no slot in group {}; only a holder's failed boot halts it",
                    call.id, call.group
                ),
            },
        ),
        Ok((_, other)) => internal(&other),
        Err(error) => refused(&state, error),
    }
}

/// `GET /v1/x-cairn/locks`: every group's slots, holders and halt.
pub async fn status(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let lock = fleet(&state)?;
    state.shared.tokens.authorize(&headers, Scope::LockAdmin)?;
    let now = (state.shared.clock)();
    let groups: Vec<serde_json::Value> = lock
        .overview(&state.shared.metrics, now)
        .await?
        .into_iter()
        .map(|(name, listed, policy, state)| {
            let holders: Vec<serde_json::Value> = state
                .holders
                .iter()
                .map(|(id, holder)| {
                    json!({
                        "id": id,
                        "taken": holder.taken.to_string(),
                        "expires": holder.expires.to_string(),
                        "lease_left_seconds": holder.expires.duration_since(now).as_secs().max(0),
                    })
                })
                .collect();
            json!({
                "group": name,
                "listed": listed,
                "slots": policy.slots,
                "lease_seconds": policy.lease.as_secs(),
                "on_expiry": policy.on_expiry.as_str(),
                "holders": holders,
                "halt": state.halt.as_ref().map(|halt| json!({
                    "node": halt.node,
                    "at": halt.at.to_string(),
                    "reason": halt.reason.kind(),
                    "detail": halt.reason.detail(),
                })),
            })
        })
        .collect();
    Ok(Json(json!({"now": now.to_string(), "groups": groups})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseBody {
    id: String,
}

fn admin_group(lock: &FleetLock, group: &str) -> Result<GroupPolicy, ApiError> {
    if !valid_group(group) {
        return Err(ApiError::bad_request(
            "invalid_group",
            "the group must match ^[a-zA-Z0-9.-]+$",
        ));
    }
    Ok(lock.stored_policy(group))
}

/// `POST /v1/x-cairn/locks/{group}/release` with `{"id": ..}`: free one holder's slot.
pub async fn release(
    State(state): State<AppState>,
    Path(group): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let lock = fleet(&state)?;
    // The token first: nobody else gets a body read.
    state.shared.tokens.authorize(&headers, Scope::LockAdmin)?;
    let policy = admin_group(lock, &group)?;
    let body = read_body(body).await?;
    let body: ReleaseBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("invalid_body", format!("expected {{\"id\":..}}: {e}"))
    })?;
    if !valid_id(&body.id) {
        return Err(ApiError::bad_request(
            "invalid_client_identity",
            "not a node id",
        ));
    }
    let now = (state.shared.clock)();
    let change = lock
        .apply(
            &state.shared.metrics,
            &group,
            policy,
            LockOp::Release {
                id: body.id.clone(),
            },
            now,
        )
        .await?;
    let was_held = matches!(change.applied.outcome, Outcome::Released { was_held: true });
    tracing::warn!(group, node = %body.id, was_held, "FleetLock slot released by an operator");
    Ok(Json(json!({"released": was_held})).into_response())
}

/// `POST /v1/x-cairn/locks/{group}/ack`: resume a halted group.
pub async fn ack(
    State(state): State<AppState>,
    Path(group): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    fleet(&state)?;
    state.shared.tokens.authorize(&headers, Scope::LockAdmin)?;
    let was_halted = ack_group(&state, &group).await?;
    Ok(Json(json!({"was_halted": was_halted})).into_response())
}

/// Resume a halted group, for whoever the caller has authorized (the API
/// route and the dashboard's action): whether it was halted.
pub async fn ack_group(state: &AppState, group: &str) -> Result<bool, ApiError> {
    let lock = fleet(state)?;
    let policy = admin_group(lock, group)?;
    let now = (state.shared.clock)();
    let change = lock
        .apply(&state.shared.metrics, group, policy, LockOp::Ack, now)
        .await?;
    let was_halted = matches!(change.applied.outcome, Outcome::Acked { was_halted: true });
    tracing::warn!(group, was_halted, "FleetLock group acked by an operator");
    Ok(was_halted)
}
