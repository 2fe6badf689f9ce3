//! Dashboard sessions: the login form, the session cookie, CSRF tokens and
//! the actions a session may take (halt a release, acknowledge a halted lock
//! group).
//!
//! A login presents a configured token once; the session then holds the
//! token's name and scopes, never its secret. Sessions live in memory (a
//! restart logs everyone out) and are kept under the SHA-256 of their id, so
//! nothing this server holds is a live cookie. Every action answers
//! `303 See Other` back to a page with `?notice=<kind>`, one of the fixed
//! [`Notice`] kinds: a form never sees its input reflected.

use super::model::Viewer;
use crate::AppState;
use crate::tokens::{Scope, Token};
use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cairn_graph::halts::TrippedBy;
use jiff::{SignedDuration, Timestamp};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, MutexGuard};
use subtle::ConstantTimeEq;

/// The session cookie. The `__Host-` prefix makes browsers accept it only
/// when set `Secure`, with `Path=/` and no `Domain`: a sibling subdomain can
/// neither plant nor shadow it.
pub const SESSION_COOKIE: &str = "__Host-cairn_session";
/// The login form's double-submit cookie (`__Host-` for the same reason).
pub const LOGIN_CSRF_COOKIE: &str = "__Host-cairn_login_csrf";
/// How long the login form's CSRF cookie lasts, in seconds.
pub const LOGIN_CSRF_SECONDS: u64 = 3600;
/// The most live sessions kept; past it, the oldest is dropped.
pub const MAX_SESSIONS: usize = 1000;
/// The largest form body read.
pub const MAX_FORM_BYTES: usize = 16 * 1024;
/// The longest `Cookie` header looked into.
pub const MAX_COOKIE_BYTES: usize = 8 * 1024;
/// The longest halt reason accepted from the form, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// The longest version accepted from the form, in characters.
pub const MAX_VERSION_CHARS: usize = 128;
/// Failed logins (unknown or unscoped tokens) allowed from one peer address
/// per minute; a known token with a dashboard scope always logs in.
pub const FAILED_LOGINS_PER_MINUTE: u32 = 10;
/// The most peer addresses whose failures are counted at once.
const MAX_COUNTED_PEERS: usize = 10_000;
/// Random bytes in a session id, a CSRF token and a login nonce.
const RANDOM_BYTES: usize = 32;
/// Domain separation of the login tokens' tag.
const LOGIN_TAG_CONTEXT: &[u8] = b"cairn dashboard login csrf v1\0";

/// What an action's `?notice=` says: a fixed set, so pages show fixed text
/// and never reflect what a request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// Logged in (`/`).
    LoggedIn,
    /// Logged out (`/`).
    LoggedOut,
    /// The form's CSRF token was missing or wrong; nothing was done.
    Csrf,
    /// No session (or, at login, an unknown token).
    Unauthorized,
    /// The token or session lacks the scope this needs.
    Forbidden,
    /// A login over plain HTTP from another host.
    PlainHttp,
    /// Too many failed logins from this address; wait a minute.
    TooManyAttempts,
    /// A malformed or oversized form.
    BadRequest,
    /// The stream is not served here.
    UnknownStream,
    /// The version is not a release of the stream's served document.
    UnknownRelease,
    /// The halt's reason is empty, too long or has control characters.
    InvalidReason,
    /// The release was halted.
    Halted,
    /// A halt in effect already names the release.
    AlreadyHalted,
    /// The lock group was acknowledged and resumes.
    Acked,
    /// The lock group was not halted; nothing changed.
    NotHalted,
    /// The lock group's name is not a FleetLock group name.
    InvalidGroup,
    /// The server could not do it (see its log).
    Failed,
}

impl Notice {
    /// Every kind.
    pub const ALL: [Notice; 17] = [
        Notice::LoggedIn,
        Notice::LoggedOut,
        Notice::Csrf,
        Notice::Unauthorized,
        Notice::Forbidden,
        Notice::PlainHttp,
        Notice::TooManyAttempts,
        Notice::BadRequest,
        Notice::UnknownStream,
        Notice::UnknownRelease,
        Notice::InvalidReason,
        Notice::Halted,
        Notice::AlreadyHalted,
        Notice::Acked,
        Notice::NotHalted,
        Notice::InvalidGroup,
        Notice::Failed,
    ];

    /// Its `?notice=` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Notice::LoggedIn => "logged_in",
            Notice::LoggedOut => "logged_out",
            Notice::Csrf => "csrf",
            Notice::Unauthorized => "unauthorized",
            Notice::Forbidden => "forbidden",
            Notice::PlainHttp => "plain_http",
            Notice::TooManyAttempts => "too_many_attempts",
            Notice::BadRequest => "bad_request",
            Notice::UnknownStream => "unknown_stream",
            Notice::UnknownRelease => "unknown_release",
            Notice::InvalidReason => "invalid_reason",
            Notice::Halted => "halted",
            Notice::AlreadyHalted => "already_halted",
            Notice::Acked => "acked",
            Notice::NotHalted => "not_halted",
            Notice::InvalidGroup => "invalid_group",
            Notice::Failed => "failed",
        }
    }

    /// The kind a `?notice=` value names, if any.
    pub fn parse(value: &str) -> Option<Notice> {
        Notice::ALL.into_iter().find(|n| n.as_str() == value)
    }

    /// Whether it reports success (pages may style it so, with this text).
    pub fn is_success(self) -> bool {
        matches!(
            self,
            Notice::LoggedIn | Notice::LoggedOut | Notice::Halted | Notice::Acked
        )
    }

    /// The sentence a page shows for it.
    pub fn message(self) -> &'static str {
        match self {
            Notice::LoggedIn => "Logged in.",
            Notice::LoggedOut => "Logged out.",
            Notice::Csrf => {
                "The form had expired or was not sent from this dashboard; nothing was done. Reload the page and try again."
            }
            Notice::Unauthorized => "Not logged in, or the token is not known.",
            Notice::Forbidden => "This token does not have the scope that action needs.",
            Notice::PlainHttp => {
                "Logging in needs HTTPS: reach the dashboard through its TLS proxy, or from this host."
            }
            Notice::TooManyAttempts => "Too many failed logins from this address; wait a minute.",
            Notice::BadRequest => "The form was malformed; nothing was done.",
            Notice::UnknownStream => "No such stream is served here.",
            Notice::UnknownRelease => "That version is not a release of the stream's document.",
            Notice::InvalidReason => {
                "Give a reason of at most 500 characters, on one line, for the halt."
            }
            Notice::Halted => "The release is halted.",
            Notice::AlreadyHalted => "A halt in effect already names this release.",
            Notice::Acked => "The lock group was acknowledged and resumes.",
            Notice::NotHalted => "The lock group was not halted; nothing changed.",
            Notice::InvalidGroup => "That is not a lock group name.",
            Notice::Failed => "The server could not do it; its log says why.",
        }
    }
}

/// One login.
struct Session {
    /// The token's display name (its file's name).
    token: String,
    scopes: Vec<Scope>,
    csrf: String,
    created: Timestamp,
    expires: Timestamp,
}

/// A peer's failed logins in the current minute.
struct Failures {
    since: Timestamp,
    count: u32,
}

#[derive(Default)]
struct Live {
    /// By the SHA-256 of the session id.
    sessions: HashMap<[u8; 32], Session>,
    failures: HashMap<IpAddr, Failures>,
}

/// Every live session of this server (in memory: a restart logs everyone out).
pub struct Sessions {
    lifetime: SignedDuration,
    /// Signs the login form's tokens; `None` when the OS RNG failed, and
    /// then no login is possible.
    login_key: Option<[u8; 32]>,
    live: Mutex<Live>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Counts only: no id digest, CSRF token, key or token name.
        f.debug_struct("Sessions")
            .field("lifetime", &self.lifetime)
            .field("live", &self.lock().sessions.len())
            .finish_non_exhaustive()
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(crate::config::DashboardConfig::default().session_lifetime)
    }
}

/// What a request's session cookie stands for.
#[derive(Debug, Clone)]
pub struct SessionView {
    /// The token's display name.
    pub token: String,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// The session's CSRF token.
    pub csrf: String,
}

/// `n` random bytes from the OS, hex.
fn random_hex() -> Option<String> {
    random_bytes().map(hex::encode)
}

fn random_bytes() -> Option<[u8; RANDOM_BYTES]> {
    use rand_core::RngCore;
    let mut bytes = [0u8; RANDOM_BYTES];
    match rand_core::OsRng.try_fill_bytes(&mut bytes) {
        Ok(()) => Some(bytes),
        Err(error) => {
            tracing::error!(%error, "the OS random number generator failed; no dashboard login is possible");
            None
        }
    }
}

fn id_key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// Whether `value` is `RANDOM_BYTES` bytes as lowercase hex.
fn is_random_hex(value: &str) -> bool {
    value.len() == 2 * RANDOM_BYTES
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Sessions {
    /// No session yet; each lasts `lifetime`.
    pub fn new(lifetime: SignedDuration) -> Sessions {
        Sessions {
            lifetime,
            login_key: random_bytes(),
            live: Mutex::default(),
        }
    }

    /// How long a session lasts.
    pub fn lifetime(&self) -> SignedDuration {
        self.lifetime
    }

    fn lock(&self) -> MutexGuard<'_, Live> {
        // A panic elsewhere leaves the map whole: keep using it.
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Start a session for `token` at `now`: its id, the cookie's value.
    pub fn open(&self, token: &Token, now: Timestamp) -> Option<String> {
        let id = random_hex()?;
        let csrf = random_hex()?;
        let expires = now.checked_add(self.lifetime).ok()?;
        let mut live = self.lock();
        if live.sessions.len() >= MAX_SESSIONS {
            live.sessions.retain(|_, s| s.expires > now);
        }
        while live.sessions.len() >= MAX_SESSIONS {
            let oldest = live
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(key, _)| *key);
            match oldest {
                Some(key) => live.sessions.remove(&key),
                None => break,
            };
        }
        live.sessions.insert(
            id_key(&id),
            Session {
                token: token.name(),
                scopes: token.scopes.clone(),
                csrf,
                created: now,
                expires,
            },
        );
        Some(id)
    }

    /// The live session `id` names at `now`; an expired one is dropped.
    pub fn find(&self, id: &str, now: Timestamp) -> Option<SessionView> {
        if !is_random_hex(id) {
            return None;
        }
        let key = id_key(id);
        let mut live = self.lock();
        let session = live.sessions.get(&key)?;
        if session.expires <= now {
            live.sessions.remove(&key);
            return None;
        }
        Some(SessionView {
            token: session.token.clone(),
            scopes: session.scopes.clone(),
            csrf: session.csrf.clone(),
        })
    }

    /// End session `id`; whether it was live.
    pub fn close(&self, id: &str) -> bool {
        self.lock().sessions.remove(&id_key(id)).is_some()
    }

    /// How many sessions are held (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.lock().sessions.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn login_tag(&self, nonce: &[u8]) -> Option<[u8; 32]> {
        let key = self.login_key.as_ref()?;
        let mut hash = Sha256::new();
        hash.update(LOGIN_TAG_CONTEXT);
        hash.update(key);
        hash.update(nonce);
        Some(hash.finalize().into())
    }

    /// A new login form token: a random nonce and this server's tag of it,
    /// so a token this server did not make is refused. The tag does not stop
    /// planting (anyone can fetch a valid token from `/login`); the cookie's
    /// `__Host-` prefix does, as a sibling subdomain cannot set it.
    pub fn new_login_token(&self) -> Option<String> {
        let nonce = random_bytes()?;
        let tag = self.login_tag(&nonce)?;
        Some(format!("{}{}", hex::encode(nonce), hex::encode(tag)))
    }

    /// Whether `token` is a login token this server made.
    pub fn valid_login_token(&self, token: &str) -> bool {
        let Some((nonce, tag)) = token.split_at_checked(2 * RANDOM_BYTES) else {
            return false;
        };
        if !is_random_hex(nonce) || !is_random_hex(tag) {
            return false;
        }
        let (Ok(nonce), Ok(tag)) = (hex::decode(nonce), hex::decode(tag)) else {
            return false;
        };
        self.login_tag(&nonce)
            .is_some_and(|expected| bool::from(expected.ct_eq(tag.as_slice())))
    }

    /// Whether `peer` may try to log in at `now`.
    pub fn login_allowed(&self, peer: IpAddr, now: Timestamp) -> bool {
        let live = self.lock();
        match live.failures.get(&peer) {
            Some(f) => {
                now.duration_since(f.since) >= SignedDuration::from_mins(1)
                    || f.count < FAILED_LOGINS_PER_MINUTE
            }
            None => true,
        }
    }

    /// Count a failed login of `peer` at `now`.
    pub fn login_failed(&self, peer: IpAddr, now: Timestamp) {
        let minute = SignedDuration::from_mins(1);
        let mut live = self.lock();
        if live.failures.len() >= MAX_COUNTED_PEERS {
            live.failures
                .retain(|_, f| now.duration_since(f.since) < minute);
        }
        if live.failures.len() >= MAX_COUNTED_PEERS && !live.failures.contains_key(&peer) {
            // Flooded from many addresses: forget the oldest minute's.
            live.failures.clear();
        }
        let entry = live.failures.entry(peer).or_insert(Failures {
            since: now,
            count: 0,
        });
        if now.duration_since(entry.since) >= minute {
            *entry = Failures {
                since: now,
                count: 0,
            };
        }
        entry.count = entry.count.saturating_add(1);
    }
}

/// The one value of cookie `name` the request carries. None when absent,
/// given twice (one could be planted), or in an oversized header.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for value in headers.get_all(header::COOKIE) {
        if value.len() > MAX_COOKIE_BYTES {
            return None;
        }
        let Ok(text) = value.to_str() else {
            continue;
        };
        for pair in text.split(';') {
            let Some((key, value)) = pair.trim().split_once('=') else {
                continue;
            };
            if key == name {
                if found.is_some() {
                    return None;
                }
                found = Some(value);
            }
        }
    }
    found
}

/// The session the request's cookie names, if live.
fn session(state: &AppState, headers: &HeaderMap) -> Option<(String, SessionView)> {
    let id = cookie(headers, SESSION_COOKIE)?;
    let now = (state.shared.clock)();
    let view = state.shared.sessions.find(id, now)?;
    Some((id.to_string(), view))
}

/// Who is looking, from the request's session cookie: read-only without one.
pub fn viewer(state: &AppState, headers: &HeaderMap) -> Viewer {
    match session(state, headers) {
        Some((_, view)) => Viewer {
            can_halt: view.scopes.contains(&Scope::Halt),
            can_admin_locks: view.scopes.contains(&Scope::LockAdmin),
            name: Some(view.token),
            csrf: Some(view.csrf),
        },
        None => Viewer::default(),
    }
}

/// The CSRF token for the login form, and the cookie to set with it (the
/// form is checked against the cookie: there is no session yet).
pub fn login_form_token(state: &AppState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    let sessions = &state.shared.sessions;
    if let Some(token) = cookie(headers, LOGIN_CSRF_COOKIE)
        && sessions.valid_login_token(token)
    {
        return (token.to_string(), None);
    }
    let Some(token) = sessions.new_login_token() else {
        return (String::new(), None);
    };
    let set = HeaderValue::from_str(&format!(
        "{LOGIN_CSRF_COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={LOGIN_CSRF_SECONDS}"
    ))
    .ok();
    (token, set)
}

/// `POST /login`, `POST /logout`, `POST /ui/halt`, `POST /ui/locks/{group}/ack`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .route("/ui/halt", post(halt))
        .route("/ui/locks/{group}/ack", post(ack))
}

/// A form-encoded body's fields.
struct Form(Vec<(String, String)>);

impl Form {
    async fn read(body: Body) -> Option<Form> {
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES).await.ok()?;
        Some(Form(
            url::form_urlencoded::parse(&bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }

    /// A field given exactly once.
    fn field(&self, name: &str) -> Option<&str> {
        let mut values = self.0.iter().filter(|(k, _)| k == name);
        let (_, value) = values.next()?;
        values.next().is_none().then_some(value.as_str())
    }
}

/// 303 to `page` with `notice`, setting `cookies`.
fn see_other(page: &str, notice: Notice, cookies: &[HeaderValue]) -> Response {
    let location = format!("{page}?notice={}", notice.as_str());
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    for cookie in cookies {
        response
            .headers_mut()
            .append(header::SET_COOKIE, cookie.clone());
    }
    response
}

/// Whether `presented` equals `expected`, in time independent of where they
/// differ.
fn same_token(presented: Option<&str>, expected: &str) -> bool {
    match presented {
        Some(presented) if !expected.is_empty() => {
            bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
        }
        _ => false,
    }
}

/// Whether the request reached this server over HTTPS, as far as it can
/// tell: only a loopback peer is trusted, being either a browser on this
/// host (no forwarding headers) or a TLS proxy on it. A proxy that says it
/// received plain HTTP (`X-Forwarded-Proto` or `Forwarded: proto=`) is
/// believed; one that forwards (`X-Forwarded-For`, `Forwarded: for=`,
/// `X-Real-IP`, `X-Forwarded-Host` or `Via`) without naming the scheme is
/// not trusted to have used TLS.
pub fn secure_transport(peer: Option<SocketAddr>, headers: &HeaderMap) -> bool {
    let Some(peer) = peer else {
        return false;
    };
    if !peer.ip().to_canonical().is_loopback() {
        return false;
    }
    // Any sign of a proxy: it must then say it received HTTPS. (A plain
    // `proxy_pass` adds none of these; the docs ask for X-Forwarded-Proto.)
    let mut forwarded_for = ["x-forwarded-for", "x-real-ip", "x-forwarded-host", "via"]
        .iter()
        .any(|name| headers.contains_key(*name));
    let mut proto_named = false;
    for value in headers.get_all("x-forwarded-proto") {
        proto_named = true;
        let Ok(text) = value.to_str() else {
            return false;
        };
        if !text
            .split(',')
            .all(|proto| proto.trim().eq_ignore_ascii_case("https"))
        {
            return false;
        }
    }
    for value in headers.get_all(header::FORWARDED) {
        let Ok(text) = value.to_str() else {
            return false;
        };
        for pair in text.split([',', ';']) {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let key = key.trim();
            if key.eq_ignore_ascii_case("for") {
                forwarded_for = true;
            } else if key.eq_ignore_ascii_case("proto") {
                proto_named = true;
                if !value.trim().trim_matches('"').eq_ignore_ascii_case("https") {
                    return false;
                }
            }
        }
    }
    proto_named || !forwarded_for
}

/// Whom a login's failures count against: the peer, or, for a proxy on
/// this host (a loopback peer), the client it names last in
/// `X-Forwarded-For` or `Forwarded: for=` (the entry it added itself).
fn login_client(peer: Option<SocketAddr>, headers: &HeaderMap) -> IpAddr {
    let peer_ip = peer.map_or(IpAddr::from([0, 0, 0, 0]), |p| p.ip().to_canonical());
    if !peer_ip.is_loopback() {
        return peer_ip;
    }
    let last = |name: &str| -> Option<String> {
        let text = headers.get_all(name).iter().next_back()?.to_str().ok()?;
        Some(text.rsplit(',').next()?.trim().to_string())
    };
    let named = last("x-forwarded-for").or_else(|| {
        let text = last(header::FORWARDED.as_str())?;
        text.split(';').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            key.trim()
                .eq_ignore_ascii_case("for")
                .then(|| value.trim().trim_matches('"').to_string())
        })
    });
    named
        .and_then(|name| {
            // `Forwarded` writes IPv6 as "[::1]:port"; a port may follow IPv4.
            let bare = name.trim_start_matches('[');
            let bare = bare.split(']').next().unwrap_or(bare);
            bare.parse::<IpAddr>()
                .ok()
                .or_else(|| name.parse::<SocketAddr>().ok().map(|a| a.ip()))
        })
        .map_or(peer_ip, |ip| ip.to_canonical())
}

fn session_cookie(value: &str, max_age: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={max_age}"
    ))
    .ok()
}

fn expired_login_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-cairn_login_csrf=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0",
    )
}

/// `POST /login` (`csrf`, `token`).
async fn login(State(state): State<AppState>, request: Request) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer);
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let refuse = |notice: Notice| {
        tracing::warn!(
            peer = ?peer.map(|p| p.ip()),
            kind = notice.as_str(),
            "a dashboard login was refused"
        );
        see_other("/login", notice, &[])
    };
    // Before the CSRF check: over plain HTTP the browser withholds the
    // Secure cookie, and this is the reason to tell.
    if !secure_transport(peer, &headers) {
        return refuse(Notice::PlainHttp);
    }
    let Some(form) = Form::read(body).await else {
        return refuse(Notice::BadRequest);
    };
    let sessions = &state.shared.sessions;
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).filter(|t| sessions.valid_login_token(t));
    if !expected.is_some_and(|expected| same_token(form.field("csrf"), expected)) {
        return refuse(Notice::Csrf);
    }
    let now = (state.shared.clock)();
    // Failures count per client: behind a TLS proxy on this host, the one it
    // names, so a guesser cannot lock out the operators sharing the proxy's
    // address. A limited client is refused before its token is looked at,
    // so the limit slows guessing for real.
    let client = login_client(peer, &headers);
    if !sessions.login_allowed(client, now) {
        return refuse(Notice::TooManyAttempts);
    }
    let found = form
        .field("token")
        .and_then(|t| state.shared.tokens.find(t));
    // A report token belongs on hosts, not in a browser.
    let Some(token) = found.filter(|token| {
        token
            .scopes
            .iter()
            .any(|s| matches!(s, Scope::Halt | Scope::LockAdmin))
    }) else {
        sessions.login_failed(client, now);
        return refuse(if found.is_some() {
            Notice::Forbidden
        } else {
            Notice::Unauthorized
        });
    };
    // A login replaces the session the browser had.
    if let Some(old) = cookie(&headers, SESSION_COOKIE) {
        sessions.close(old);
    }
    let Some(id) = sessions.open(token, now) else {
        return refuse(Notice::Failed);
    };
    let Some(set) = session_cookie(&id, sessions.lifetime().as_secs()) else {
        sessions.close(&id);
        return refuse(Notice::Failed);
    };
    tracing::info!(token = token.name(), "dashboard login");
    see_other("/", Notice::LoggedIn, &[set, expired_login_cookie()])
}

/// `POST /logout` (`csrf`).
async fn logout(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(form) = Form::read(body).await else {
        return see_other("/", Notice::BadRequest, &[]);
    };
    let expire = session_cookie("", 0).into_iter().collect::<Vec<_>>();
    let Some((id, view)) = session(&state, &parts.headers) else {
        // Nothing to end; the browser's stale cookie goes too.
        return see_other("/", Notice::LoggedOut, &expire);
    };
    if !same_token(form.field("csrf"), &view.csrf) {
        return see_other("/", Notice::Csrf, &[]);
    }
    state.shared.sessions.close(&id);
    tracing::info!(token = view.token, "dashboard logout");
    see_other("/", Notice::LoggedOut, &expire)
}

/// The session of an action's request, checked: live, the form's CSRF
/// token its own, and `scope` among its scopes.
fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    form: &Form,
    scope: Scope,
) -> Result<SessionView, Notice> {
    let (_, view) = session(state, headers).ok_or(Notice::Unauthorized)?;
    if !same_token(form.field("csrf"), &view.csrf) {
        return Err(Notice::Csrf);
    }
    if !view.scopes.contains(&scope) {
        return Err(Notice::Forbidden);
    }
    Ok(view)
}

/// A stream page's path, its name percent-encoded as one segment.
fn stream_page(stream: &str) -> String {
    // Form encoding leaves only A-Z a-z 0-9 * - . _ as they are and writes a
    // space `+` (a `+` itself becomes %2B): in a path, a space is %20.
    let encoded: String = url::form_urlencoded::byte_serialize(stream.as_bytes()).collect();
    format!("/streams/{}", encoded.replace('+', "%20"))
}

/// A halt's reason from the form: trimmed, one line, not too long.
fn valid_reason(reason: &str) -> Option<&str> {
    let reason = reason.trim();
    (!reason.is_empty()
        && reason.chars().count() <= MAX_REASON_CHARS
        && !reason.chars().any(char::is_control))
    .then_some(reason)
}

/// `POST /ui/halt` (`csrf`, `stream`, `version`, `reason`): halt a release
/// through the add-only halt list, as the person the session's token names.
async fn halt(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Some(form) = Form::read(body).await else {
        return see_other("/", Notice::BadRequest, &[]);
    };
    let stream = form
        .field("stream")
        .filter(|s| state.shared.streams.contains_key(*s));
    let page = stream.map_or_else(|| "/".to_string(), stream_page);
    let view = match authorize(&state, &parts.headers, &form, Scope::Halt) {
        Ok(view) => view,
        Err(notice) => return see_other(&page, notice, &[]),
    };
    let Some(stream) = stream else {
        return see_other(&page, Notice::UnknownStream, &[]);
    };
    let version = form
        .field("version")
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.chars().count() <= MAX_VERSION_CHARS);
    let digests = version
        .map(|v| crate::halts::guard::release_digests(&state, stream, v, ""))
        .unwrap_or_default();
    let (Some(version), false) = (version, digests.is_empty()) else {
        return see_other(&page, Notice::UnknownRelease, &[]);
    };
    let Some(reason) = form.field("reason").and_then(valid_reason) else {
        return see_other(&page, Notice::InvalidReason, &[]);
    };
    let tripped_by = TrippedBy::Person {
        who: view.token.clone(),
    };
    let notice = match crate::halts::guard::add_halt(
        &state, stream, version, digests, reason, tripped_by,
    )
    .await
    {
        Ok(true) => {
            tracing::warn!(
                token = view.token,
                stream,
                version,
                reason,
                "a release was halted from the dashboard"
            );
            Notice::Halted
        }
        Ok(false) => {
            tracing::info!(
                token = view.token,
                stream,
                version,
                outcome = Notice::AlreadyHalted.as_str(),
                "a halt from the dashboard changed nothing: a halt in effect already names the release"
            );
            Notice::AlreadyHalted
        }
        Err(error) => {
            tracing::error!(
                token = view.token,
                stream,
                version,
                outcome = Notice::Failed.as_str(),
                kind = error.kind,
                error = %error.message,
                "a halt from the dashboard could not be published"
            );
            Notice::Failed
        }
    };
    see_other(&page, notice, &[])
}

/// `POST /ui/locks/{group}/ack` (`csrf`): resume a halted lock group.
async fn ack(
    State(state): State<AppState>,
    Path(group): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let Some(form) = Form::read(body).await else {
        return see_other("/locks", Notice::BadRequest, &[]);
    };
    let view = match authorize(&state, &parts.headers, &form, Scope::LockAdmin) {
        Ok(view) => view,
        Err(notice) => return see_other("/locks", notice, &[]),
    };
    if !crate::config::valid_group(&group) {
        return see_other("/locks", Notice::InvalidGroup, &[]);
    }
    let notice = match crate::routes::fleetlock::ack_group(&state, &group).await {
        Ok(true) => Notice::Acked,
        Ok(false) => Notice::NotHalted,
        Err(error) => {
            tracing::error!(token = view.token, group, kind = error.kind, error = %error.value, "a lock group could not be acknowledged from the dashboard");
            Notice::Failed
        }
    };
    tracing::warn!(
        token = view.token,
        group,
        outcome = notice.as_str(),
        "a lock group was acknowledged from the dashboard"
    );
    see_other("/locks", notice, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                header::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                value.parse().expect("value"),
            );
        }
        map
    }

    #[test]
    fn cookies_are_read_strictly() {
        let one = headers(&[("cookie", "a=1; __Host-cairn_session=abc; b=2")]);
        assert_eq!(cookie(&one, SESSION_COOKIE), Some("abc"));
        let twice = headers(&[
            ("cookie", "__Host-cairn_session=abc"),
            ("cookie", "__Host-cairn_session=x"),
        ]);
        assert_eq!(cookie(&twice, SESSION_COOKIE), None);
        let long = format!(
            "__Host-cairn_session=abc; pad={}",
            "x".repeat(MAX_COOKIE_BYTES)
        );
        assert_eq!(cookie(&headers(&[("cookie", &long)]), SESSION_COOKIE), None);
        // Without the prefix it is another cookie (one any subdomain can set).
        let unprefixed = headers(&[("cookie", "cairn_session=abc")]);
        assert_eq!(cookie(&unprefixed, SESSION_COOKIE), None);
        let prefixed = headers(&[("cookie", "x__Host-cairn_session=abc")]);
        assert_eq!(cookie(&prefixed, SESSION_COOKIE), None);
    }

    #[test]
    fn only_loopback_peers_not_told_of_plain_http_are_secure() {
        let loopback: SocketAddr = "127.0.0.1:5000".parse().expect("address");
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().expect("address");
        let remote: SocketAddr = "10.0.0.5:5000".parse().expect("address");
        let none = HeaderMap::new();
        assert!(secure_transport(Some(loopback), &none));
        assert!(secure_transport(Some(mapped), &none));
        assert!(!secure_transport(Some(remote), &none));
        assert!(!secure_transport(None, &none));
        let https = headers(&[("x-forwarded-proto", "https")]);
        assert!(secure_transport(Some(loopback), &https));
        assert!(!secure_transport(Some(remote), &https));
        for plain in [
            headers(&[("x-forwarded-proto", "http")]),
            headers(&[("x-forwarded-proto", "https, http")]),
            headers(&[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-proto", "http"),
            ]),
            headers(&[("forwarded", "for=10.0.0.5;proto=http")]),
            headers(&[("forwarded", "proto=\"HTTP\"")]),
            // A proxy that forwards without naming the scheme.
            headers(&[("x-forwarded-for", "10.0.0.5")]),
            headers(&[("forwarded", "for=10.0.0.5")]),
            headers(&[("forwarded", "For=\"[2001:db8::1]\";by=127.0.0.1")]),
        ] {
            assert!(!secure_transport(Some(loopback), &plain), "{plain:?}");
        }
        for https in [
            headers(&[("forwarded", "for=10.0.0.5;proto=https")]),
            headers(&[
                ("x-forwarded-for", "10.0.0.5"),
                ("x-forwarded-proto", "https"),
            ]),
            headers(&[
                ("x-forwarded-for", "10.0.0.5"),
                ("forwarded", "proto=https"),
            ]),
        ] {
            assert!(secure_transport(Some(loopback), &https), "{https:?}");
            assert!(!secure_transport(Some(remote), &https), "{https:?}");
        }
    }

    #[test]
    fn login_tokens_are_this_servers_own() {
        let sessions = Sessions::default();
        let other = Sessions::default();
        let token = sessions.new_login_token().expect("token");
        assert_eq!(token.len(), 128);
        assert!(sessions.valid_login_token(&token));
        assert!(!other.valid_login_token(&token), "another key's token");
        let mut forged = token.clone();
        forged.replace_range(127.., if token.ends_with('0') { "1" } else { "0" });
        assert!(!sessions.valid_login_token(&forged));
        assert!(!sessions.valid_login_token(&token[..64]));
        assert!(!sessions.valid_login_token(&token.to_uppercase()));
    }

    #[test]
    fn failures_count_against_the_client_a_same_host_proxy_names() {
        let loopback: SocketAddr = "127.0.0.1:40000".parse().expect("address");
        let remote: SocketAddr = "10.0.0.5:40000".parse().expect("address");
        let ip = |text: &str| text.parse::<IpAddr>().expect("address");
        assert_eq!(login_client(Some(loopback), &headers(&[])), ip("127.0.0.1"));
        // The entry the proxy added is the last; earlier ones came from the client.
        let proxied = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9")]);
        assert_eq!(login_client(Some(loopback), &proxied), ip("203.0.113.9"));
        let proxied = headers(&[("forwarded", "for=\"[2001:db8::1]:4711\";proto=https")]);
        assert_eq!(login_client(Some(loopback), &proxied), ip("2001:db8::1"));
        // Only a same-host proxy is believed.
        let claimed = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(login_client(Some(remote), &claimed), ip("10.0.0.5"));
        assert_eq!(
            login_client(Some(loopback), &headers(&[("x-forwarded-for", "junk")])),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn any_sign_of_a_proxy_without_a_scheme_is_plain_http() {
        let loopback: SocketAddr = "127.0.0.1:40000".parse().expect("address");
        for name in ["x-real-ip", "via", "x-forwarded-host"] {
            let bare = headers(&[(name, "10.0.0.5")]);
            assert!(!secure_transport(Some(loopback), &bare), "{name}");
            let told = headers(&[(name, "10.0.0.5"), ("x-forwarded-proto", "https")]);
            assert!(secure_transport(Some(loopback), &told), "{name} with https");
        }
    }

    #[test]
    fn failed_logins_are_limited_per_peer_and_minute() {
        let sessions = Sessions::default();
        let peer: IpAddr = "127.0.0.1".parse().expect("address");
        let other: IpAddr = "10.0.0.5".parse().expect("address");
        let start = Timestamp::from_second(1_700_000_000).expect("time");
        for n in 0..FAILED_LOGINS_PER_MINUTE {
            assert!(sessions.login_allowed(peer, start), "attempt {n}");
            sessions.login_failed(peer, start);
        }
        assert!(!sessions.login_allowed(peer, start));
        assert!(sessions.login_allowed(other, start));
        let later = start + SignedDuration::from_mins(1);
        assert!(sessions.login_allowed(peer, later));
    }

    #[test]
    fn notices_round_trip_and_are_distinct() {
        for notice in Notice::ALL {
            assert_eq!(Notice::parse(notice.as_str()), Some(notice));
            assert!(!notice.message().is_empty());
        }
        assert_eq!(Notice::parse("<script>"), None);
    }

    #[test]
    fn stream_pages_encode_the_name() {
        assert_eq!(stream_page("stable"), "/streams/stable");
        assert_eq!(stream_page("a b/c?d"), "/streams/a%20b%2Fc%3Fd");
    }

    #[test]
    fn the_login_page_and_the_login_action_share_their_path() {
        // The page (GET, in `pages`) and the action (POST, here) are merged
        // routers on one path: axum merges their methods.
        let pages: Router<AppState> =
            Router::new().route("/login", axum::routing::get(|| async { "page" }));
        let _ = pages.merge(routes());
    }

    #[test]
    fn the_oldest_session_goes_past_the_cap() {
        let sessions = Sessions::default();
        let token = Token::from_text(
            "ops.token".into(),
            "ops-secret-0123456789",
            vec![Scope::Halt],
        )
        .expect("token");
        let t = |s: i64| Timestamp::from_second(1_700_000_000 + s).expect("time");
        let first = sessions.open(&token, t(0)).expect("id");
        for n in 1..=MAX_SESSIONS as i64 {
            sessions.open(&token, t(n)).expect("id");
        }
        assert_eq!(sessions.len(), MAX_SESSIONS);
        assert!(sessions.find(&first, t(2000)).is_none());
    }
}
