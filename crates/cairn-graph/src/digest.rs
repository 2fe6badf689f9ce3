//! Syntax checks for content digests and ostree commit checksums.
//!
//! Cairn only accepts `sha256:` digests: it is what every registry and bootc
//! record today, and a single accepted form keeps digest comparison a plain
//! string comparison.

use serde::{Deserialize, Serialize};

/// The prefix of every digest Cairn accepts.
pub const SHA256_PREFIX: &str = "sha256:";

/// True for `sha256:` followed by exactly 64 lower-case hex characters.
pub fn is_sha256_digest(value: &str) -> bool {
    value
        .strip_prefix(SHA256_PREFIX)
        .is_some_and(is_lower_hex_64)
}

/// True for an ostree commit checksum: 64 lower-case hex characters, no prefix.
pub fn is_ostree_commit(value: &str) -> bool {
    is_lower_hex_64(value)
}

fn is_lower_hex_64(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// What a host tool is asked to stage: an image manifest digest or an ostree
/// commit checksum, and nothing else.
///
/// Ids come from documents, Cincinnati answers and Fedora's files, which an
/// attacker may shape; they end up as arguments of `rpm-ostree` and `bootc`.
/// A value of this type has been checked once, where it entered the model, so
/// an option such as `--reboot` can never reach a host tool in its place.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TargetId(String);

/// Which of the two forms a [`TargetId`] has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdForm {
    /// `sha256:` and 64 lower-case hex digits: an image.
    Digest,
    /// 64 lower-case hex digits: an ostree commit.
    Checksum,
}

/// A value that is neither a `sha256:` digest nor an ostree checksum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{shown:?} is not a release id (sha256:<64 lower-case hex> or <64 lower-case hex>)")]
pub struct InvalidId {
    /// The rejected value, cut short so a huge one cannot flood a log.
    pub shown: String,
}

impl InvalidId {
    fn of(value: &str) -> InvalidId {
        const SHOWN_CHARS: usize = 80;
        let mut shown: String = value.chars().take(SHOWN_CHARS).collect();
        if value.chars().nth(SHOWN_CHARS).is_some() {
            shown.push('…');
        }
        InvalidId { shown }
    }
}

impl TargetId {
    /// Accept a digest or a checksum.
    pub fn parse(value: &str) -> Result<TargetId, InvalidId> {
        if is_sha256_digest(value) || is_ostree_commit(value) {
            Ok(TargetId(value.to_string()))
        } else {
            Err(InvalidId::of(value))
        }
    }

    /// Accept only an image digest.
    pub fn digest(value: &str) -> Result<TargetId, InvalidId> {
        if is_sha256_digest(value) {
            Ok(TargetId(value.to_string()))
        } else {
            Err(InvalidId::of(value))
        }
    }

    /// Accept only an ostree checksum.
    pub fn checksum(value: &str) -> Result<TargetId, InvalidId> {
        if is_ostree_commit(value) {
            Ok(TargetId(value.to_string()))
        } else {
            Err(InvalidId::of(value))
        }
    }

    /// The image digest of a pull spec: the digest after `@`, or a bare
    /// digest. Never a checksum: an image's id must not become a commit's.
    pub fn of_pullspec(pullspec: &str) -> Result<TargetId, InvalidId> {
        let digest = pullspec
            .rsplit_once('@')
            .map_or(pullspec, |(_, digest)| digest);
        TargetId::digest(digest)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digest or checksum.
    pub fn form(&self) -> IdForm {
        if self.0.starts_with(SHA256_PREFIX) {
            IdForm::Digest
        } else {
            IdForm::Checksum
        }
    }
}

impl std::fmt::Display for TargetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::ops::Deref for TargetId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TargetId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for TargetId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for TargetId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for TargetId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<TargetId> for String {
    fn eq(&self, other: &TargetId) -> bool {
        *self == other.0
    }
}

impl PartialEq<TargetId> for &str {
    fn eq(&self, other: &TargetId) -> bool {
        *self == other.0
    }
}

impl std::str::FromStr for TargetId {
    type Err = InvalidId;
    fn from_str(value: &str) -> Result<TargetId, InvalidId> {
        TargetId::parse(value)
    }
}

impl TryFrom<String> for TargetId {
    type Error = InvalidId;
    fn try_from(value: String) -> Result<TargetId, InvalidId> {
        if is_sha256_digest(&value) || is_ostree_commit(&value) {
            Ok(TargetId(value))
        } else {
            Err(InvalidId::of(&value))
        }
    }
}

impl From<TargetId> for String {
    fn from(id: TargetId) -> String {
        id.0
    }
}

/// The digest part of a `repository@sha256:...` pull spec, if it has one.
pub fn digest_of_pullspec(pullspec: &str) -> Option<&str> {
    pullspec.rsplit_once('@').map(|(_, digest)| digest)
}

/// A short form for people: the first 12 hex digits, as `podman images` shows.
pub fn short(value: &str) -> &str {
    let hex = value.strip_prefix(SHA256_PREFIX).unwrap_or(value);
    hex.get(..12).unwrap_or(hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "44528ecc3fe8ab2c2a4d0990cdc0898aca334aa632d4a77f23118f8900435636";

    #[test]
    fn accepts_only_lowercase_sha256() {
        assert!(is_sha256_digest(&format!("sha256:{HEX}")));
        assert!(!is_sha256_digest(HEX));
        assert!(!is_sha256_digest(&format!("sha256:{}", HEX.to_uppercase())));
        assert!(!is_sha256_digest(&format!("sha512:{HEX}")));
        assert!(!is_sha256_digest(&format!("sha256:{}", &HEX[1..])));
        assert!(!is_sha256_digest(&format!("sha256:{HEX}0")));
        assert!(!is_sha256_digest("sha256:"));
    }

    #[test]
    fn ostree_commit_has_no_prefix() {
        assert!(is_ostree_commit(HEX));
        assert!(!is_ostree_commit(&format!("sha256:{HEX}")));
    }

    #[test]
    fn target_ids_hold_only_digests_and_checksums() {
        let digest = format!("sha256:{HEX}");
        assert_eq!(
            TargetId::parse(&digest).map(|id| id.form()),
            Ok(IdForm::Digest)
        );
        assert_eq!(
            TargetId::parse(HEX).map(|id| id.form()),
            Ok(IdForm::Checksum)
        );
        let spec = format!("quay.io/x/y@{digest}");
        assert_eq!(
            TargetId::of_pullspec(&spec).map(String::from),
            Ok(digest.clone())
        );
        assert!(TargetId::of_pullspec(&format!("quay.io/x/y@{HEX}")).is_err());
        assert!(
            TargetId::of_pullspec(HEX).is_err(),
            "a bare checksum is no image"
        );
        assert_eq!(
            TargetId::of_pullspec(&digest).map(String::from),
            Ok(digest.clone())
        );
        for bad in [
            "--reboot",
            "sha256:../../x",
            &HEX[1..],
            &HEX.to_uppercase(),
            &format!("sha256:{}", &HEX[..63]),
            &format!("{} ", HEX),
            &format!("sha256:{} --reboot", &HEX[..50]),
            "",
        ] {
            assert!(TargetId::parse(bad).is_err(), "{bad:?} was accepted");
            assert!(TargetId::of_pullspec(&format!("quay.io/x/y@{bad}")).is_err());
        }
        assert!(TargetId::digest(HEX).is_err());
        assert!(TargetId::checksum(&digest).is_err());
        let from_json: Result<TargetId, _> = serde_json::from_str("\"--reboot\"");
        assert!(from_json.is_err());
        let long = "x".repeat(10_000);
        let shown = TargetId::parse(&long)
            .map_err(|e| e.to_string())
            .err()
            .unwrap_or_default();
        assert!(shown.len() < 200, "{shown}");
    }

    #[test]
    fn pullspec_and_short_forms() {
        let spec = format!("quay.io/fedora/fedora-coreos@sha256:{HEX}");
        assert_eq!(digest_of_pullspec(&spec), Some(&spec[29..]));
        assert_eq!(short(&format!("sha256:{HEX}")), "44528ecc3fe8");
        assert_eq!(short("abc"), "abc");
    }
}
