//! The FleetLock client against a lock server that misbehaves: replies that
//! never end or announce gigabytes, and passing failures, which the agent's
//! loop (not the client) asks again about.

use cairn_agent::fleetlock::{FleetLockClient, LockError};
use cairn_testkit::HostileServer;
use cairn_testkit::hostile::{HUGE_LENGTH, Reply};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

fn client(server: &HostileServer) -> FleetLockClient {
    let base = url::Url::parse(&server.url("/fleet_lock")).expect("url");
    FleetLockClient::new(base, "aaaa", "workers", TIMEOUT).expect("client")
}

#[tokio::test]
async fn oversized_error_replies_are_read_only_to_their_limit() {
    let replies = [
        Reply::Endless { status: 409 },
        Reply::Announced {
            status: 409,
            length: HUGE_LENGTH,
            prefix: vec![b'x'; 2 * cairn_agent::fleetlock::MAX_REPLY_BYTES],
        },
    ];
    for reply in replies {
        let server = HostileServer::start(move |_, _| reply.clone()).await;
        let started = Instant::now();
        let err = client(&server).pre_reboot().await.expect_err("409");
        // Reading the whole reply would have lasted until the timeout.
        assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
        assert_eq!(err.kind(), "held_by_others", "{err}");
        let LockError::Refused { kind, value, .. } = &err else {
            panic!("expected a refusal, got {err}");
        };
        assert_eq!(kind, "generic_http_409");
        assert_eq!(
            value.len(),
            200,
            "the message keeps the first 200 characters"
        );
        assert!(value.bytes().all(|b| b == b'x'), "{value}");
    }
}

#[tokio::test]
async fn a_grant_is_not_held_up_by_its_body() {
    let server = HostileServer::start(|_, _| Reply::Announced {
        status: 200,
        length: HUGE_LENGTH,
        prefix: Vec::new(),
    })
    .await;
    let started = Instant::now();
    client(&server)
        .pre_reboot()
        .await
        .expect("a 2xx is a grant");
    assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn lock_calls_are_left_to_the_agent_loop_to_retry() {
    let server = HostileServer::start(|_, _| {
        Reply::full(503, r#"{"kind":"unavailable","value":"try later"}"#)
    })
    .await;
    let lock = client(&server);
    let err = lock.steady_state().await.expect_err("503");
    assert_eq!(err.kind(), "refused", "{err}");
    assert!(err.to_string().contains("try later"), "{err}");
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "one call, one request: {requests:?}");
    assert_eq!(requests[0].target, "/fleet_lock/v1/steady-state");
    assert_eq!(requests[0].header("fleet-lock-protocol"), Some("true"));
}
