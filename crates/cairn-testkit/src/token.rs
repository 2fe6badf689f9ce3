//! A token server for the registry's bearer-token flow: it checks basic
//! credentials and issues ES256 JWTs whose `x5c` header carries a self-signed
//! certificate that the registry trusts (`rootcertbundle`).
//!
//! The harness's user ([`USER`]) gets every scope it asks for. A
//! [`ScopedUser`] gets push and pull only on its own repositories and pull
//! (or nothing) elsewhere: the registry enforces whatever the token grants,
//! as it would with a production token service's access rules.

use crate::registry::{PASSWORD, USER};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p256::ecdsa::signature::Signer;
use p256::pkcs8::DecodePrivateKey;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The `service` the registry is configured with.
pub const SERVICE: &str = "cairn-test-registry";
/// The token `iss`.
pub const ISSUER: &str = "cairn-test-issuer";

/// A second user of the token server, with scoped rights.
#[derive(Debug, Clone)]
pub struct ScopedUser {
    /// Its name.
    pub username: String,
    /// Its password.
    pub password: String,
    /// Repositories (paths, e.g. `acme/os-halts`) it may push to and pull from.
    pub push_repositories: Vec<String>,
    /// Whether it may pull from every other repository.
    pub pull_elsewhere: bool,
}

impl ScopedUser {
    /// The actions of a requested `repository` scope this user is granted.
    fn grant(&self, name: &str, requested: &[&str]) -> Vec<String> {
        let pushable = self.push_repositories.iter().any(|r| r == name);
        requested
            .iter()
            .filter(|action| match **action {
                "pull" => pushable || self.pull_elsewhere,
                "push" => pushable,
                _ => false,
            })
            .map(|action| action.to_string())
            .collect()
    }
}

/// A running token server.
#[derive(Debug)]
pub struct TokenServer {
    /// Its token endpoint.
    pub realm: String,
    /// The certificate file the registry must trust.
    pub certificate: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

struct Keys {
    signing: p256::ecdsa::SigningKey,
    certificate_der: String,
    scoped: Vec<ScopedUser>,
}

impl TokenServer {
    /// Make a key and certificate with `openssl`, then serve on a free port;
    /// besides [`USER`], the `scoped` users may log in.
    pub async fn start(directory: &Path, scoped: Vec<ScopedUser>) -> TokenServer {
        crate::registry::require_binary("openssl", "openssl");
        let key = directory.join("token.key");
        let certificate = directory.join("token.crt");
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=cairn-test-token",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&certificate)
            .output()
            .unwrap_or_else(|e| panic!("running openssl: {e}"));
        assert!(
            status.status.success(),
            "openssl failed: {}",
            String::from_utf8_lossy(&status.stderr)
        );
        let key_pem = std::fs::read_to_string(&key).unwrap_or_else(|e| panic!("token key: {e}"));
        let cert_pem =
            std::fs::read_to_string(&certificate).unwrap_or_else(|e| panic!("token cert: {e}"));
        let certificate_der: String = cert_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let signing = p256::ecdsa::SigningKey::from_pkcs8_pem(&key_pem)
            .unwrap_or_else(|e| panic!("token key: {e}"));
        let keys = Arc::new(Keys {
            signing,
            certificate_der,
            scoped,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("token server: {e}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("token server: {e}"));
        let app = axum::Router::new()
            .route("/token", axum::routing::get(issue))
            .with_state(keys);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TokenServer {
            realm: format!("http://{address}/token"),
            certificate,
            task,
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn issue(
    State(keys): State<Arc<Keys>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> impl IntoResponse {
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| STANDARD.decode(v).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .unwrap_or_default();
    // `None`: the harness's user, granted whatever it asks for.
    let (subject, scoped) = if presented == format!("{USER}:{PASSWORD}") {
        (USER.to_string(), None)
    } else if let Some(user) = keys
        .scoped
        .iter()
        .find(|u| presented == format!("{}:{}", u.username, u.password))
    {
        (user.username.clone(), Some(user))
    } else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"details": "bad credentials"})),
        )
            .into_response();
    };
    let access: Vec<_> = query
        .get("scope")
        .into_iter()
        .flat_map(|scope| scope.split(' '))
        .filter_map(|scope| {
            let mut parts = scope.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            let requested: Vec<&str> = actions.split(',').collect();
            let granted: Vec<String> = match scoped {
                None => requested.iter().map(|a| a.to_string()).collect(),
                Some(user) if kind == "repository" => user.grant(name, &requested),
                Some(_) => Vec::new(),
            };
            // A scope with nothing granted is left out, as token services do.
            (!granted.is_empty()).then(|| json!({"type": kind, "name": name, "actions": granted}))
        })
        .collect();
    let now = jiff::Timestamp::now().as_second();
    let header = json!({"alg": "ES256", "typ": "JWT", "x5c": [keys.certificate_der]});
    let claims = json!({
        "iss": ISSUER, "sub": subject, "aud": SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature: p256::ecdsa::Signature = keys.signing.sign(signing_input.as_bytes());
    let token = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    );
    Json(json!({"token": token, "access_token": token, "expires_in": 300})).into_response()
}
