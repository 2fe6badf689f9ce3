//! The FleetLock client against a lock server that, like airlock, never
//! expires a slot.

use cairn_agent::fleetlock::FleetLockClient;
use cairn_testkit::LockServer;
use std::time::Duration;

fn client(server: &LockServer, id: &str) -> FleetLockClient {
    let base = url::Url::parse(&server.base_url).expect("url");
    FleetLockClient::new(base, id, "workers", Duration::from_secs(5)).expect("client")
}

#[tokio::test]
async fn slots_are_taken_recursively_and_released() {
    let server = LockServer::start(1).await;
    let a = client(&server, "aaaa");
    let b = client(&server, "bbbb");
    a.pre_reboot().await.expect("a takes the slot");
    a.pre_reboot().await.expect("taking it again is fine");
    let err = b.pre_reboot().await.expect_err("no slot left");
    assert_eq!(err.kind(), "held_by_others");
    assert!(err.to_string().contains("failed_lock"), "{err}");
    assert_eq!(server.holders("workers"), vec!["aaaa".to_string()]);
    a.steady_state().await.expect("release");
    b.pre_reboot().await.expect("now b can");
    b.steady_state().await.expect("release");
    b.steady_state().await.expect("releasing twice is fine");
    assert!(server.holders("workers").is_empty());
    // The base URL had no trailing slash; every request still reached /fleet_lock/v1/….
    assert_eq!(server.requests().len(), 7);
}

#[tokio::test]
async fn an_unreachable_server_is_a_transport_error() {
    let base = url::Url::parse("http://127.0.0.1:9/fleet_lock").expect("url");
    let client =
        FleetLockClient::new(base, "aaaa", "workers", Duration::from_secs(2)).expect("client");
    assert_eq!(
        client.pre_reboot().await.expect_err("nothing there").kind(),
        "transport"
    );
}
