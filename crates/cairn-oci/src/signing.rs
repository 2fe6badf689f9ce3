//! Keyed ECDSA P-256 signatures in cosign's formats.
//!
//! A document in a registry is signed the way `cosign sign --key` signs an
//! image: a "simple signing" payload naming the manifest digest, signed with
//! SHA-256/ECDSA, stored under the `sha256-<hex>.sig` tag. A document in a
//! file or at a URL is signed like `cosign sign-blob`: a base64 signature of
//! the exact bytes in `<file>.sig`. Both verify offline with the public key,
//! and with cosign itself.

use crate::error::{OciError, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, Signature};
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use serde_json::json;
use std::path::Path;

/// The layer media type of a cosign simple-signing payload.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// A private key that signs documents.
#[derive(Clone)]
pub struct SigningKey(p256::ecdsa::SigningKey);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// A public key that verifies documents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyingKey(p256::ecdsa::VerifyingKey);

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Self {
        SigningKey(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng))
    }

    /// Read a PEM private key: PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`).
    /// Encrypted keys (cosign's own format) must be exported unencrypted first.
    pub fn from_pem(text: &str, source: &str) -> Result<Self> {
        if let Ok(key) = p256::ecdsa::SigningKey::from_pkcs8_pem(text) {
            return Ok(SigningKey(key));
        }
        if let Ok(secret) = p256::SecretKey::from_sec1_pem(text) {
            return Ok(SigningKey(secret.into()));
        }
        let hint = if text.contains("ENCRYPTED") {
            "encrypted keys are not supported; use an unencrypted PKCS#8 P-256 key"
        } else {
            "expected a PEM ECDSA P-256 private key (PKCS#8 or SEC1)"
        };
        Err(OciError::Key {
            what: source.to_string(),
            message: hint.into(),
        })
    }

    /// PKCS#8 PEM.
    pub fn to_pem(&self) -> Result<String> {
        self.0
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| OciError::Key {
                what: "private key".into(),
                message: e.to_string(),
            })
    }

    /// The matching public key.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(*self.0.verifying_key())
    }

    /// A base64 DER signature of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        let signature: Signature = self.0.sign(message);
        let der: DerSignature = signature.to_der();
        STANDARD.encode(der.as_bytes())
    }
}

impl VerifyingKey {
    /// Read a PEM public key (`PUBLIC KEY`, as `cosign.pub`).
    pub fn from_pem(text: &str, source: &str) -> Result<Self> {
        p256::ecdsa::VerifyingKey::from_public_key_pem(text)
            .map(VerifyingKey)
            .map_err(|e| OciError::Key {
                what: source.to_string(),
                message: format!("expected a PEM ECDSA P-256 public key: {e}"),
            })
    }

    /// Read a PEM public key file. Errors name the file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| OciError::io(path, e))?;
        Self::from_pem(&text, &path.display().to_string())
    }

    /// Read every key file in `paths`, in order; the first that fails is
    /// the error, naming its file.
    pub fn from_files<P: AsRef<Path>>(paths: impl IntoIterator<Item = P>) -> Result<Vec<Self>> {
        paths
            .into_iter()
            .map(|path| Self::from_file(path.as_ref()))
            .collect()
    }

    /// SPKI PEM, as `cosign.pub`.
    pub fn to_pem(&self) -> Result<String> {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| OciError::Key {
                what: "public key".into(),
                message: e.to_string(),
            })
    }

    /// The key's id: the SHA-256 of its SPKI DER encoding, in hex. Two
    /// files holding one key give one id, so counting ids counts keys.
    pub fn key_id(&self) -> KeyId {
        use sha2::Digest;
        // Encoding a valid P-256 point as SPKI cannot fail; the SEC1 form
        // stands in should it ever, and is as unique.
        let der = self
            .0
            .to_public_key_der()
            .map(|doc| doc.as_bytes().to_vec())
            .unwrap_or_else(|_| self.0.to_encoded_point(false).as_bytes().to_vec());
        KeyId(hex::encode(sha2::Sha256::digest(der)))
    }

    /// True when `signature` (base64 DER, or base64 of the raw 64 bytes) signs `message`.
    pub fn verifies(&self, message: &[u8], signature: &str) -> bool {
        let Ok(bytes) = STANDARD.decode(signature.trim()) else {
            return false;
        };
        let parsed = Signature::from_der(&bytes).or_else(|_| Signature::from_slice(&bytes));
        parsed.is_ok_and(|sig| self.0.verify(message, &sig).is_ok())
    }
}

/// A key's id: the lowercase hex SHA-256 of its SPKI DER encoding.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// Parse an id as written in a trust root: 64 lowercase hex digits.
    pub fn parse(text: &str) -> Option<KeyId> {
        (text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| KeyId(text.to_string()))
    }

    /// The full hex id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for messages.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Cosign's simple-signing payload for a manifest of `repository`.
pub fn simple_signing_payload(repository: &str, manifest_digest: &str) -> Vec<u8> {
    let payload = json!({
        "critical": {
            "identity": {"docker-reference": repository},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": "cosign container image signature"
        },
        "optional": null
    });
    payload.to_string().into_bytes()
}

/// The manifest digest a simple-signing payload vouches for.
pub fn signed_digest(payload: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    if value["critical"]["type"].as_str() != Some("cosign container image signature") {
        return None;
    }
    value["critical"]["image"]["docker-manifest-digest"]
        .as_str()
        .map(str::to_string)
}

/// The tag cosign stores a manifest's signatures under.
pub fn signature_tag(manifest_digest: &str) -> String {
    format!("{}.sig", manifest_digest.replacen(':', "-", 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip() {
        let key = SigningKey::generate();
        let public = key.verifying_key();
        let signature = key.sign(b"document");
        assert!(public.verifies(b"document", &signature));
        assert!(!public.verifies(b"documenT", &signature));
        assert!(
            !SigningKey::generate()
                .verifying_key()
                .verifies(b"document", &signature)
        );
        assert!(!public.verifies(b"document", "not base64!"));
    }

    #[test]
    fn keys_survive_pem() {
        let key = SigningKey::generate();
        let private = key.to_pem().expect("pem");
        let public = key.verifying_key().to_pem().expect("pem");
        assert!(private.contains("BEGIN PRIVATE KEY") && public.contains("BEGIN PUBLIC KEY"));
        let again = SigningKey::from_pem(&private, "k").expect("reads");
        let public_again = VerifyingKey::from_pem(&public, "p").expect("reads");
        assert!(public_again.verifies(b"x", &again.sign(b"x")));
        let err = SigningKey::from_pem(
            "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----",
            "cosign.key",
        )
        .expect_err("encrypted");
        assert!(err.to_string().contains("cosign.key") && err.to_string().contains("encrypted"));
        assert!(VerifyingKey::from_pem("nonsense", "p").is_err());
    }

    #[test]
    fn key_files_are_read_and_their_errors_name_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("team.pub");
        let key = SigningKey::generate();
        let pem = key.verifying_key().to_pem().expect("pem");
        std::fs::write(&good, pem).expect("write");
        let keys = VerifyingKey::from_files([&good]).expect("reads");
        assert_eq!(keys, vec![key.verifying_key()]);

        let bad = dir.path().join("bad.pub");
        std::fs::write(&bad, "not a key").expect("write");
        let err = VerifyingKey::from_files([&good, &bad]).expect_err("bad key");
        assert_eq!(err.kind(), "key");
        assert!(err.to_string().contains("bad.pub"), "{err}");

        let missing = dir.path().join("missing.pub");
        let err = VerifyingKey::from_file(&missing).expect_err("missing file");
        assert_eq!(err.kind(), "io");
        assert!(err.to_string().contains("missing.pub"), "{err}");
    }

    #[test]
    fn a_key_id_is_the_sha256_of_its_spki_der() {
        let key = SigningKey::generate().verifying_key();
        let pem = key.to_pem().expect("pem");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = STANDARD.decode(body).expect("base64");
        use sha2::Digest;
        let expected = hex::encode(sha2::Sha256::digest(&der));
        assert_eq!(key.key_id().as_str(), expected);
        assert_eq!(KeyId::parse(&expected), Some(key.key_id()));
        assert_eq!(key.key_id().short(), &expected[..12]);
        assert!(KeyId::parse("ABC").is_none());
        assert!(KeyId::parse(&expected.to_uppercase()).is_none());
        assert_ne!(
            key.key_id(),
            SigningKey::generate().verifying_key().key_id()
        );
    }

    #[test]
    fn payload_names_the_digest() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let payload = simple_signing_payload("registry.example/os", &digest);
        assert_eq!(signed_digest(&payload), Some(digest.clone()));
        assert_eq!(
            signature_tag(&digest),
            format!("sha256-{}.sig", "ab".repeat(32))
        );
        assert_eq!(signed_digest(b"{}"), None);
    }
}
