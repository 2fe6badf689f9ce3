//! Syntax checks for content digests and ostree commit checksums.
//!
//! Cairn only accepts `sha256:` digests: it is what every registry and bootc
//! record today, and a single accepted form keeps digest comparison a plain
//! string comparison.

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
    fn pullspec_and_short_forms() {
        let spec = format!("quay.io/fedora/fedora-coreos@sha256:{HEX}");
        assert_eq!(digest_of_pullspec(&spec), Some(&spec[29..]));
        assert_eq!(short(&format!("sha256:{HEX}")), "44528ecc3fe8");
        assert_eq!(short("abc"), "abc");
    }
}
