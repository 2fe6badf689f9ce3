//! Image references (`registry/repository[:tag][@digest]`) and the places a
//! document can be read from (`oci:` layouts, files, URLs, registries).

use crate::error::{OciError, Result};
use std::fmt;
use std::path::PathBuf;

/// Docker Hub's name in references, and the host its API lives on.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A repository in a registry: `registry/path`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Repository {
    /// Host and optional port, as written (`quay.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// The path inside the registry (`fedora/fedora-coreos`).
    pub path: String,
}

impl Repository {
    /// Parse `registry/path` (a reference without tag or digest).
    pub fn parse(text: &str) -> Result<Repository> {
        let reference = ImageRef::parse(text)?;
        if reference.tag.is_some() || reference.digest.is_some() {
            return Err(OciError::Reference {
                reference: text.into(),
                message: "expected a repository without tag or digest".into(),
            });
        }
        Ok(reference.repository)
    }

    /// The host the registry API is reached at.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// This repository with a tag.
    pub fn tagged(&self, tag: &str) -> ImageRef {
        ImageRef {
            repository: self.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        }
    }

    /// This repository with a digest.
    pub fn at_digest(&self, digest: &str) -> ImageRef {
        ImageRef {
            repository: self.clone(),
            tag: None,
            digest: Some(digest.to_string()),
        }
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.path)
    }
}

/// An image reference: a repository plus a tag, a digest, or both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// The repository.
    pub repository: Repository,
    /// The tag, if any.
    pub tag: Option<String>,
    /// The digest, if any.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parse a reference the way podman and skopeo read them. A first
    /// component without `.` or `:` (and not `localhost`) means Docker Hub.
    pub fn parse(text: &str) -> Result<ImageRef> {
        let bad = |message: &str| OciError::Reference {
            reference: text.into(),
            message: message.into(),
        };
        let text_trimmed = text.strip_prefix("docker://").unwrap_or(text);
        let (rest, digest) = match text_trimmed.split_once('@') {
            Some((rest, digest)) => {
                if !cairn_graph::digest::is_sha256_digest(digest) {
                    return Err(bad(
                        "the digest must be sha256: and 64 lower-case hex digits",
                    ));
                }
                (rest, Some(digest.to_string()))
            }
            None => (text_trimmed, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                if !is_valid_tag(tag) {
                    return Err(bad("invalid tag"));
                }
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ if name.contains('/') => (DOCKER_HUB.to_string(), name.to_string()),
            _ => (DOCKER_HUB.to_string(), format!("library/{name}")),
        };
        let path_ok = !path.is_empty()
            && path.split('/').all(|part| {
                !part.is_empty()
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
            });
        if registry.is_empty() || !path_ok {
            return Err(bad(
                "expected registry/repository with lower-case path components",
            ));
        }
        Ok(ImageRef {
            repository: Repository { registry, path },
            tag,
            digest,
        })
    }

    /// The digest if there is one, else the tag, else `latest`.
    pub fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// A tag as the distribution spec allows: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric() || b == b'_')
        && tag.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// Where a document (or any artifact) lives.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    /// A registry reference.
    Registry(ImageRef),
    /// An OCI image layout directory, with an optional tag (`oci:DIR[:TAG]`).
    Layout {
        /// The directory.
        path: PathBuf,
        /// The tag (`org.opencontainers.image.ref.name`), if given.
        tag: Option<String>,
    },
    /// A plain JSON file.
    File(PathBuf),
    /// An http(s) URL of a plain JSON document.
    Url(String),
}

impl Location {
    /// Parse `oci:DIR[:TAG]`, `https://…`, `http://…`, `docker://REF`, a
    /// registry reference, or a file path. A path that exists is a file; text
    /// with a registry-looking first component is a reference.
    pub fn parse(text: &str) -> Result<Location> {
        if let Some(rest) = text.strip_prefix("oci:") {
            let (path, tag) = match rest.rsplit_once(':') {
                Some((path, tag)) if is_valid_tag(tag) && !tag.contains('/') => {
                    (path, Some(tag.to_string()))
                }
                _ => (rest, None),
            };
            return Ok(Location::Layout {
                path: PathBuf::from(path),
                tag,
            });
        }
        if text.starts_with("https://") || text.starts_with("http://") {
            return Ok(Location::Url(text.to_string()));
        }
        if text.starts_with("docker://") {
            return ImageRef::parse(text).map(Location::Registry);
        }
        let path = PathBuf::from(text);
        if path.exists()
            || text.starts_with('/')
            || text.starts_with('.')
            || text.ends_with(".json")
        {
            return Ok(Location::File(path));
        }
        ImageRef::parse(text).map(Location::Registry)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Registry(reference) => write!(f, "{reference}"),
            Location::Layout { path, tag } => {
                write!(f, "oci:{}", path.display())?;
                if let Some(tag) = tag {
                    write!(f, ":{tag}")?;
                }
                Ok(())
            }
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Url(url) => write!(f, "{url}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registry_references() {
        let r = ImageRef::parse("quay.io/fedora/fedora-coreos:stable").expect("parses");
        assert_eq!(r.repository.registry, "quay.io");
        assert_eq!(r.repository.path, "fedora/fedora-coreos");
        assert_eq!(r.tag.as_deref(), Some("stable"));
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/os@{digest}")).expect("parses");
        assert_eq!(r.repository.registry, "127.0.0.1:5000");
        assert_eq!(r.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(r.reference(), digest);
        let r = ImageRef::parse("fedora").expect("parses");
        assert_eq!(r.repository.to_string(), "docker.io/library/fedora");
        assert_eq!(r.repository.api_host(), "registry-1.docker.io");
        let r = ImageRef::parse("localhost/os:1.0").expect("parses");
        assert_eq!(r.repository.registry, "localhost");
        assert_eq!(r.to_string(), "localhost/os:1.0");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "quay.io/",
            "quay.io/Fedora/os",
            "quay.io/os@sha256:abc",
            "quay.io/os:-bad",
            "quay.io//os",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
        assert!(Repository::parse("quay.io/os:tag").is_err());
    }

    #[test]
    fn parses_locations() {
        assert_eq!(
            Location::parse("oci:/tmp/layout:graph-stable").expect("parses"),
            Location::Layout {
                path: "/tmp/layout".into(),
                tag: Some("graph-stable".into())
            }
        );
        assert_eq!(
            Location::parse("oci:/tmp/layout").expect("parses"),
            Location::Layout {
                path: "/tmp/layout".into(),
                tag: None
            }
        );
        assert!(matches!(
            Location::parse("https://example.org/g.json"),
            Ok(Location::Url(_))
        ));
        assert!(matches!(
            Location::parse("./doc.json"),
            Ok(Location::File(_))
        ));
        assert!(matches!(
            Location::parse("quay.io/acme/os:cairn-graph-stable"),
            Ok(Location::Registry(_))
        ));
    }
}
