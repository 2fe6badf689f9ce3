//! The server's one token model: bearer tokens read from files named in the
//! configuration, each with scopes. A token's secret is never logged, shown
//! or compared in variable time.

use crate::error::ApiError;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use subtle::ConstantTimeEq;

/// The shortest token accepted from a file.
pub const MIN_TOKEN_CHARS: usize = 16;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Read FleetLock status, release a holder, ack a halted group.
    LockAdmin,
    /// Send outcome reports (`POST /v2/reports/<stream>`).
    Report,
    /// Halt a rollout (a later feature).
    Halt,
    /// Manage rollouts (a later feature).
    RolloutAdmin,
}

impl Scope {
    /// Its configuration name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::LockAdmin => "lock-admin",
            Scope::Report => "report",
            Scope::Halt => "halt",
            Scope::RolloutAdmin => "rollout-admin",
        }
    }
}

/// One configured token.
pub struct Token {
    /// The file it was read from (how it is named in messages).
    pub file: PathBuf,
    /// What it may do.
    pub scopes: Vec<Scope>,
    digest: [u8; 32],
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("file", &self.file)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl Token {
    /// How the token is named to people (the dashboard, logs): its file's
    /// name, never its secret.
    pub fn name(&self) -> String {
        self.file
            .file_name()
            .unwrap_or(self.file.as_os_str())
            .to_string_lossy()
            .into_owned()
    }

    /// A token from its file's text (surrounding whitespace ignored).
    pub fn from_text(file: PathBuf, text: &str, scopes: Vec<Scope>) -> Result<Token, String> {
        let secret = text.trim();
        if secret.chars().count() < MIN_TOKEN_CHARS {
            return Err(format!(
                "the token in {} is shorter than {MIN_TOKEN_CHARS} characters",
                file.display()
            ));
        }
        if scopes.is_empty() {
            return Err(format!("the token in {} has no scopes", file.display()));
        }
        Ok(Token {
            file,
            scopes,
            digest: Sha256::digest(secret.as_bytes()).into(),
        })
    }
}

/// Every configured token.
#[derive(Debug, Default)]
pub struct Tokens(pub Vec<Token>);

impl Tokens {
    /// The configured token whose secret is `presented` (surrounding
    /// whitespace ignored, as in its file), compared in constant time.
    pub fn find(&self, presented: &str) -> Option<&Token> {
        // Digests have one length, so the comparison time tells nothing; and
        // every token is compared, so neither does the count.
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        let mut matched: Option<&Token> = None;
        for token in &self.0 {
            if bool::from(token.digest.ct_eq(&digest)) {
                matched = Some(token);
            }
        }
        matched
    }

    /// Allow the request if its `Authorization: Bearer` token has `scope`.
    pub fn authorize(&self, headers: &HeaderMap, scope: Scope) -> Result<(), ApiError> {
        let unauthorized = |kind, value: &str| ApiError {
            status: StatusCode::UNAUTHORIZED,
            kind,
            value: value.to_string(),
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            // The scheme is case-insensitive (RFC 9110).
            .and_then(|value| {
                let (scheme, token) = value.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then_some(token)
            })
            .map(str::trim)
            .ok_or_else(|| {
                unauthorized(
                    "missing_token",
                    "this call needs an `Authorization: Bearer <token>` header",
                )
            })?;
        let token = self
            .find(presented)
            .ok_or_else(|| unauthorized("invalid_token", "the token is not known"))?;
        if token.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError {
                status: StatusCode::FORBIDDEN,
                kind: "missing_scope",
                value: format!(
                    "this call needs a token with the scope `{}`",
                    scope.as_str()
                ),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().expect("header"));
        headers
    }

    #[test]
    fn tokens_are_checked_with_their_scopes() {
        let tokens = Tokens(vec![
            Token::from_text(
                "admin".into(),
                "admin-secret-0123456789\n",
                vec![Scope::LockAdmin],
            )
            .expect("token"),
            Token::from_text(
                "report".into(),
                "report-secret-0123456789",
                vec![Scope::Report],
            )
            .expect("token"),
        ]);
        let kind = |h: &HeaderMap| tokens.authorize(h, Scope::LockAdmin).err().map(|e| e.kind);
        assert_eq!(kind(&headers("Bearer admin-secret-0123456789")), None);
        assert_eq!(kind(&headers("bearer admin-secret-0123456789")), None);
        assert_eq!(kind(&HeaderMap::new()), Some("missing_token"));
        assert_eq!(kind(&headers("Basic abc")), Some("missing_token"));
        assert_eq!(
            kind(&headers("Bearer wrong-secret-0123456789")),
            Some("invalid_token")
        );
        assert_eq!(
            kind(&headers("Bearer report-secret-0123456789")),
            Some("missing_scope")
        );
    }

    #[test]
    fn a_token_is_found_by_its_secret_and_named_by_its_file() {
        let tokens = Tokens(vec![
            Token::from_text(
                "/etc/cairn/ops.token".into(),
                "ops-secret-0123456789",
                vec![Scope::Halt],
            )
            .expect("token"),
        ]);
        let found = tokens.find(" ops-secret-0123456789\n").expect("found");
        assert_eq!(found.name(), "ops.token");
        assert!(tokens.find("ops-secret-012345678").is_none());
        assert!(tokens.find("").is_none());
    }

    #[test]
    fn short_or_scopeless_tokens_are_refused_and_secrets_never_shown() {
        assert!(Token::from_text("f".into(), "short", vec![Scope::Halt]).is_err());
        assert!(Token::from_text("f".into(), "long-enough-0123456789", vec![]).is_err());
        let token = Token::from_text("f".into(), "long-enough-0123456789", vec![Scope::Halt])
            .expect("token");
        assert!(!format!("{token:?}").contains("long-enough"));
    }
}
