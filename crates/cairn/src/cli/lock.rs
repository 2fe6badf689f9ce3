//! `cairn lock`: the operator's view of a `cairn serve` FleetLock service:
//! who holds the slots, halted groups, and the two ways out of a halt.

use anyhow::{Context, bail};
use cairn_oci::http::{Http, Overflow, RetryPolicy, error_chain, read_body};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The server asked when `--server` is not given: `cairn serve`'s default.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";
/// The largest answer read.
const MAX_ANSWER_BYTES: usize = 4 << 20;

#[derive(Debug, clap::Subcommand)]
pub enum LockCommand {
    /// Per group: the slots, the holders with the time taken and the lease
    /// left, and whether the group is halted and why.
    Status {
        #[command(flatten)]
        server: ServerArgs,
        /// Print the server's JSON answer.
        #[arg(long)]
        json: bool,
    },
    /// Free one node's slot (the node vanished, or its failure is understood).
    Release {
        /// The group.
        group: String,
        /// The node's FleetLock id.
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Resume a halted group: its nodes may take slots again.
    Ack {
        /// The group.
        group: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The `cairn serve` base URL.
    #[arg(long, default_value = DEFAULT_SERVER)]
    server: url::Url,
    /// A file holding a token with the `lock-admin` scope.
    #[arg(long)]
    token_file: Option<PathBuf>,
}

pub fn run(command: LockCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        match command {
            LockCommand::Status { server, json } => {
                let answer = call(&server, "GET", "", None).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&answer)?);
                } else {
                    print!("{}", render_status(&answer));
                }
            }
            LockCommand::Release { group, id, server } => {
                let answer = call(
                    &server,
                    "POST",
                    &format!("/{group}/release"),
                    Some(json!({"id": id})),
                )
                .await?;
                if answer["released"] == true {
                    println!("{id}'s slot in group {group} is released");
                } else {
                    println!("{id} held no slot in group {group}; nothing changed");
                }
            }
            LockCommand::Ack { group, server } => {
                let answer = call(&server, "POST", &format!("/{group}/ack"), None).await?;
                if answer["was_halted"] == true {
                    println!("group {group} is resumed: its nodes may take slots again");
                } else {
                    println!("group {group} was not halted; nothing changed");
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn call(
    server: &ServerArgs,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let token = match &server.token_file {
        Some(file) => Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("reading the token file {}", file.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let mut base = server.server.clone();
    if !base.path().ends_with('/') {
        let with_slash = format!("{}/", base.path());
        base.set_path(&with_slash);
    }
    let url = base
        .join(&format!("v1/x-cairn/locks{path}"))
        .with_context(|| format!("{} is not a usable base URL", server.server))?;
    let http = Http::new(Duration::from_secs(30), RetryPolicy::NONE)
        .context("setting up the HTTP client")?;
    let body = body.map(|b| b.to_string());
    let response = http
        .send(|client| {
            let mut request = if method == "GET" {
                client.get(url.clone())
            } else {
                client.post(url.clone())
            };
            if let Some(token) = &token {
                request = request.bearer_auth(token);
            }
            if let Some(body) = &body {
                request = request
                    .header("content-type", "application/json")
                    .body(body.clone());
            }
            request
        })
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {}", error_chain(&e)))?;
    let status = response.status();
    let bytes = read_body(response, MAX_ANSWER_BYTES, Overflow::Truncate)
        .await
        .map_err(|e| anyhow::anyhow!("{url}: reading the answer: {e}"))?;
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(answer);
    }
    let kind = answer["kind"].as_str().unwrap_or("");
    let value = answer["value"].as_str().map_or_else(
        || String::from_utf8_lossy(&bytes).into_owned(),
        str::to_string,
    );
    let hint = match (status.as_u16(), kind) {
        (401, "missing_token") => " (pass --token-file with a token of scope lock-admin)",
        (404, _) => " (is FleetLock configured on this server, in a [fleet_lock] section?)",
        _ => "",
    };
    bail!("{url}: HTTP {}: {kind}: {value}{hint}", status.as_u16())
}

/// The status as text: one block per group.
fn render_status(answer: &Value) -> String {
    let mut out = String::new();
    let groups = answer["groups"].as_array().cloned().unwrap_or_default();
    for group in &groups {
        let name = group["group"].as_str().unwrap_or("?");
        let holders = group["holders"].as_array().cloned().unwrap_or_default();
        out.push_str(&format!(
            "group {name}: {} of {} slots held; lease {}; on expiry {}{}\n",
            holders.len(),
            group["slots"],
            seconds(group["lease_seconds"].as_i64().unwrap_or(0)),
            group["on_expiry"].as_str().unwrap_or("?"),
            if group["listed"] == true {
                ""
            } else {
                " (unlisted: the default group's rules)"
            },
        ));
        if let Some(halt) = group["halt"].as_object() {
            let why = match halt.get("reason").and_then(Value::as_str) {
                Some("lease_expired") => {
                    "its lease expired before it released the slot".to_string()
                }
                Some("boot_failed") => {
                    let detail = halt.get("detail").and_then(Value::as_str).unwrap_or("");
                    if detail.is_empty() {
                        "it reported a failed boot".to_string()
                    } else {
                        format!("it reported a failed boot: {detail}")
                    }
                }
                other => other.unwrap_or("?").to_string(),
            };
            out.push_str(&format!(
                "  HALTED since {}: node {}: {why}\n  `cairn lock ack {name}` resumes it\n",
                halt.get("at").and_then(Value::as_str).unwrap_or("?"),
                halt.get("node").and_then(Value::as_str).unwrap_or("?"),
            ));
        }
        for holder in &holders {
            out.push_str(&format!(
                "  {}: taken {}, lease left {}\n",
                holder["id"].as_str().unwrap_or("?"),
                holder["taken"].as_str().unwrap_or("?"),
                seconds(holder["lease_left_seconds"].as_i64().unwrap_or(0)),
            ));
        }
    }
    out
}

/// Seconds as `1h 2m 3s`, leaving out zero parts.
fn seconds(total: i64) -> String {
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    let parts: Vec<String> = [(h, "h"), (m, "m"), (s, "s")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        "0s".into()
    } else {
        parts.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_names_holders_and_halts() {
        let answer = json!({"groups": [
            {"group": "default", "listed": true, "slots": 2, "lease_seconds": 3600, "on_expiry": "halt",
             "holders": [{"id": "node-a", "taken": "2026-01-01T00:00:00Z", "lease_left_seconds": 3000}],
             "halt": {"node": "node-b", "at": "2026-01-01T00:05:00Z", "reason": "boot_failed", "detail": "health check"}},
            {"group": "x", "listed": false, "slots": 1, "lease_seconds": 5400, "on_expiry": "release",
             "holders": [], "halt": null},
        ]});
        assert_eq!(
            render_status(&answer),
            "group default: 1 of 2 slots held; lease 1h; on expiry halt\n\
             \x20 HALTED since 2026-01-01T00:05:00Z: node node-b: it reported a failed boot: health check\n\
             \x20 `cairn lock ack default` resumes it\n\
             \x20 node-a: taken 2026-01-01T00:00:00Z, lease left 50m\n\
             group x: 0 of 1 slots held; lease 1h 30m; on expiry release (unlisted: the default group's rules)\n"
        );
    }
}
