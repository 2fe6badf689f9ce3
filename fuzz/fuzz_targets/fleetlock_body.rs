//! FleetLock calls as Zincati and Cairn's agents send them, through the
//! server's router (no socket) with an embedded lock store: any body gets
//! an answer, never a server error.

#![no_main]
#![forbid(unsafe_code)]

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use cairn_fuzz::{Choices, runtime, scratch, write};
use cairn_server::{AppState, Config, router};
use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tower::ServiceExt;

const CONFIG: &str = "[fleet_lock]\ndatabase = \"locks.sqlite\"\n\
    allowed_networks = [\"127.0.0.0/8\"]\n\
    [[fleet_lock.group]]\nname = \"default\"\nslots = 2\n";

fn state() -> &'static AppState {
    static STATE: OnceLock<AppState> = OnceLock::new();
    STATE.get_or_init(|| {
        let dir = scratch().join("fleetlock");
        let file = dir.join("server.toml");
        write(&file, CONFIG.as_bytes());
        let config = Config::from_toml(CONFIG, &file).unwrap_or_else(|e| panic!("config: {e}"));
        let Some(section) = config.fleet_lock else {
            panic!("no [fleet_lock] section");
        };
        let now = jiff::Timestamp::UNIX_EPOCH;
        let lock = runtime()
            .block_on(cairn_server::open_fleet_lock(&section, now))
            .unwrap_or_else(|e| panic!("lock store: {e}"));
        AppState::with_services(
            Vec::<String>::new(),
            Arc::new(move || now),
            30,
            Some(lock),
            config.tokens,
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let mut choices = Choices::new(data);
    let path = [
        "/v1/pre-reboot",
        "/v1/steady-state",
        "/v1/x-cairn/boot-failed",
    ][choices.below(3)];
    let Ok(mut request) = Request::post(path)
        .header("fleet-lock-protocol", "true")
        .header("content-type", "application/json")
        .body(Body::from(data.to_vec()))
    else {
        return;
    };
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4242))));
    let response = runtime()
        .block_on(router(state().clone()).oneshot(request))
        .unwrap_or_else(|e| match e {});
    assert!(
        !response.status().is_server_error(),
        "{path} answered {} to {:?}",
        response.status(),
        String::from_utf8_lossy(data)
    );
});
