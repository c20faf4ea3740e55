//! Image references of the `docker://` transport: `docker://HOST[:PORT]/REPO[:TAG|@DIGEST]`.
//!
//! Docker Hub's shorthands apply as everywhere else: no host means Docker Hub
//! (`docker://nginx` is `docker.io/library/nginx:latest`), a first component is a host
//! only when it has a `.` or a `:` or is `localhost`, and a single-component Docker Hub
//! repository lives under `library/`.

use std::fmt;

use crate::digest::Digest;
use crate::error::{usage, Result};
use crate::registry::names::{Reference, Repository, Tag};

pub const TRANSPORT: &str = "docker://";
/// The name Docker Hub goes by in references and credential files.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's distribution API answers.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A validated `docker://` image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// `HOST[:PORT]` as credentials are keyed (`docker.io` for Docker Hub).
    pub registry: String,
    pub repository: Repository,
    pub tag: Option<Tag>,
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// Parse `docker://…`; the transport prefix is required.
    pub fn parse(source: &str) -> Result<ImageRef> {
        let Some(rest) = source.strip_prefix(TRANSPORT) else {
            return Err(usage(format!("'{source}' is not a docker:// reference")));
        };
        Self::parse_name(rest).map_err(|e| usage(format!("bad image reference '{source}': {e}")))
    }

    /// Parse a reference without the transport prefix (`quay.io/ns/app:1.0`).
    pub fn parse_name(name: &str) -> std::result::Result<ImageRef, String> {
        if name.is_empty() {
            return Err("empty reference".into());
        }
        let (rest, digest) = match name.rsplit_once('@') {
            Some((rest, d)) => (rest, Some(d.parse::<Digest>()?)),
            None => (name, None),
        };
        // A tag follows the last ':' after the last '/' (a ':' before it is a port).
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (path, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                let tag = Tag::parse(tag).ok_or_else(|| format!("'{tag}' is not a valid tag"))?;
                (&rest[..last_slash + i], Some(tag))
            }
            None => (rest, None),
        };
        let (registry, repo) = match path.split_once('/') {
            Some((first, repo)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (first.to_string(), repo.to_string())
            }
            _ => (DOCKER_HUB.to_string(), path.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | DOCKER_HUB_API => DOCKER_HUB.to_string(),
            _ => registry,
        };
        if !valid_host(&registry) {
            return Err(format!("'{registry}' is not a valid registry host[:port]"));
        }
        let repo = if registry == DOCKER_HUB && !repo.contains('/') { format!("library/{repo}") } else { repo };
        let repository = Repository::parse(&repo).ok_or_else(|| {
            format!("'{repo}' is not a valid repository name (lowercase letters, digits, '.', '_', '-', '/')")
        })?;
        let tag = match (&tag, &digest) {
            (None, None) => Some(Tag::parse("latest").ok_or("internal: 'latest' is not a tag")?),
            _ => tag,
        };
        Ok(ImageRef { registry, repository, tag, digest })
    }

    /// The `HOST[:PORT]` requests go to.
    pub fn endpoint(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn reference(&self) -> Reference {
        match (&self.digest, &self.tag) {
            (Some(d), _) => Reference::Digest(d.clone()),
            (None, Some(t)) => Reference::Tag(t.clone()),
            // parse() always sets one of them.
            (None, None) => Reference::Tag(Tag::parse("latest").unwrap_or_else(|| unreachable!())),
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{TRANSPORT}{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `host[:port]`: DNS labels or an IPv4 address, or a bracketed IPv6 address, then an
/// optional decimal port.
pub(crate) fn valid_host(s: &str) -> bool {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        match rest.split_once(']') {
            Some((addr, tail)) => {
                if addr.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                match tail.strip_prefix(':') {
                    Some(p) => ("v6", Some(p)),
                    None if tail.is_empty() => ("v6", None),
                    None => return false,
                }
            }
            None => return false,
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port_ok = port.map_or(true, |p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok_and(|n| n > 0));
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    port_ok && !host.is_empty() && host.len() <= 253 && host.split('.').all(label_ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ImageRef {
        ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn docker_hub_shorthands() {
        let r = parse("docker://nginx");
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("docker.io", "library/nginx"));
        assert_eq!(r.tag.as_ref().map(|t| t.as_str()), Some("latest"));
        assert_eq!(r.endpoint(), "registry-1.docker.io");
        assert_eq!(r.to_string(), "docker://docker.io/library/nginx:latest");
        assert_eq!(parse("docker://bitnami/redis:7").repository.as_str(), "bitnami/redis");
        assert_eq!(parse("docker://docker.io/nginx:1").repository.as_str(), "library/nginx");
        assert_eq!(parse("docker://index.docker.io/library/nginx").registry, "docker.io");
    }

    #[test]
    fn hosts_ports_tags_digests() {
        let r = parse("docker://localhost:5000/ns/app:1.0");
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("localhost:5000", "ns/app"));
        assert_eq!(r.endpoint(), "localhost:5000");
        assert_eq!(r.reference().to_string(), "1.0");
        let d = Digest::of(b"x");
        let r = parse(&format!("docker://quay.io/ns/app@{d}"));
        assert_eq!((r.tag.clone(), r.digest.clone()), (None, Some(d.clone())));
        assert_eq!(r.reference().to_string(), d.to_string());
        let r = parse(&format!("docker://quay.io/ns/app:1.0@{d}"));
        assert_eq!(r.tag.as_ref().map(|t| t.as_str()), Some("1.0"));
        assert_eq!(r.reference().to_string(), d.to_string());
        let r = parse("docker://localhost/app");
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("localhost", "app"));
        let r = parse("docker://127.0.0.1:5000/a/b/c:v1");
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("127.0.0.1:5000", "a/b/c"));
        let r = parse("docker://[::1]:5000/app:v");
        assert_eq!(r.registry, "[::1]:5000");
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "nginx",
            "oci:/x",
            "docker://",
            "docker://quay.io/",
            "docker://quay.io/NS/app",
            "docker://quay.io/ns/app:",
            "docker://quay.io/ns/app:bad/tag",
            "docker://quay.io/ns/app@sha256:1234",
            "docker://quay.io/ns/app@md5:00",
            "docker://quay.io:0/app",
            "docker://quay.io:99999/app",
            "docker://-bad.io/app",
            "docker://quay.io/../etc",
            "docker://quay.io/ns//app",
            "docker://[zz]:5000/app",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }
}
