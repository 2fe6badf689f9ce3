//! The registry of `scripts/soak-server`: a real docker-registry holding
//! three releases of `acme/os`, which flaps on command. Prints shell
//! assignments (`registry=`, `repository=`), then reads commands on standard
//! input, one a line, answering each with `ok <n> <command>` (n counts from 1):
//!   `stop`   kill the registry process (its storage is kept);
//!   `start`  start it again on the same port and storage.
//! The registry is stopped when standard input closes.

use cairn_testkit::{Auth, TestRegistry, write_release};
use std::io::{BufRead, Write};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut registry = TestRegistry::start(Auth::None).await;
    let store = registry.store("acme/os");
    for (version, created, tags) in [
        ("44.1", "2026-01-01T00:00:00Z", &["44.1"][..]),
        ("44.2", "2026-02-01T00:00:00Z", &["44.2"][..]),
        ("44.3", "2026-03-01T00:00:00Z", &["44.3", "stable"][..]),
    ] {
        write_release(&store, version, created, tags).await;
    }
    println!("registry={}", registry.host);
    println!("repository={}/acme/os", registry.host);
    // The caller reads the lines above before it sends a command.
    let _ = std::io::stdout().flush();
    let mut answered = 0u64;
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let command = line.trim();
        match command {
            "stop" => registry.stop(),
            "start" => registry.resume(),
            "" => continue,
            other => {
                eprintln!("serve-soak: unknown command {other:?}");
                continue;
            }
        }
        answered += 1;
        println!("ok {answered} {command}");
        let _ = std::io::stdout().flush();
    }
    registry.stop();
}
