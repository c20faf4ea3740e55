//! Image names, below both the registry client and the embedded registry: repositories,
//! tags, references (a tag or a digest), and full image references
//! `[HOST[:PORT]/]PATH[:TAG][@DIGEST]` with the `docker://` transport.
//!
//! [`split`] is the one place a written reference is cut into its parts; [`ImageRef`]
//! validates them and applies Docker Hub's shorthands: no host means Docker Hub
//! (`docker://nginx` is `docker.io/library/nginx:latest`), a first component is a host
//! only when it has a `.` or a `:` or is `localhost`, and a single-component Docker Hub
//! repository lives under `library/`. Every value here is validated on construction;
//! storage builds paths only from them.

use std::fmt;

use crate::digest::Digest;
use crate::error::{usage, Result};

pub const TRANSPORT: &str = "docker://";
/// The name Docker Hub goes by in references and credential files.
pub const DOCKER_HUB: &str = "docker.io";
/// Where Docker Hub's distribution API answers.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Longest repository name accepted (the distribution-spec's advice for names).
pub const MAX_REPOSITORY: usize = 255;

/// Whether `name` is a repository name by the distribution-spec grammar:
/// `[a-z0-9]+((\.|_|__|[-]+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|[-]+)[a-z0-9]+)*)*`, at most
/// 255 characters. `..`, empty components, leading `/` and `_` are all outside it.
pub fn valid_repository(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_REPOSITORY && name.split('/').all(valid_component)
}

/// One path component: alphanumeric runs joined by `.`, `_`, `__` or any number of `-`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        // An alphanumeric run.
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == b.len() {
            return true;
        }
        // A separator, then another run must follow.
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
    }
}

/// Whether `tag` matches `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    let first = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty() && b.len() <= 128 && first(b[0]) && b[1..].iter().all(|&x| first(x) || x == b'.' || x == b'-')
}

/// A validated repository name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Repository(String);

impl Repository {
    pub fn parse(name: &str) -> Option<Repository> {
        valid_repository(name).then(|| Repository(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Repository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(tag: &str) -> Option<Tag> {
        valid_tag(tag).then(|| Tag(tag.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest URL names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

/// A written reference cut into its parts, as written (nothing validated, no shorthand
/// applied): `[HOST[:PORT]/]PATH[:TAG][@DIGEST]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts<'a> {
    /// The first component when it is a host: it has a `.` or a `:` or is `localhost`,
    /// and a `/` follows it.
    pub host: Option<&'a str>,
    pub path: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

/// Cut a reference without transport (`quay.io/ns/app:1.0@sha256:…`) into its parts. A
/// tag follows the last `:` after the last `/` (a `:` before it is a port).
pub fn split(name: &str) -> Parts<'_> {
    let (rest, digest) = match name.rsplit_once('@') {
        Some((rest, d)) => (rest, Some(d)),
        None => (name, None),
    };
    let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    let (path, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    let (host, path) = match path.split_once('/') {
        Some((first, repo)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            (Some(first), repo)
        }
        _ => (None, path),
    };
    Parts { host, path, tag, digest }
}

/// `docker://` in front of a reference written without a transport (`docker://` and
/// `oci:` references are kept as they are).
pub fn with_transport(reference: &str) -> String {
    if reference.starts_with(TRANSPORT) || reference.starts_with("oci:") {
        reference.to_string()
    } else {
        format!("{TRANSPORT}{reference}")
    }
}

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

    /// Parse a reference without the transport prefix (`quay.io/ns/app:1.0`); with
    /// neither tag nor digest, the tag is `latest`.
    pub fn parse_name(name: &str) -> std::result::Result<ImageRef, String> {
        let mut image = Self::from_name(name)?;
        if image.tag.is_none() && image.digest.is_none() {
            image.tag = Some(Tag::parse("latest").ok_or("internal: 'latest' is not a tag")?);
        }
        Ok(image)
    }

    /// Parse a reference, `docker://` optional, keeping only the tag actually written
    /// (no `latest` supplied).
    pub fn parse_written(name: &str) -> std::result::Result<ImageRef, String> {
        Self::from_name(name.strip_prefix(TRANSPORT).unwrap_or(name))
    }

    fn from_name(name: &str) -> std::result::Result<ImageRef, String> {
        if name.is_empty() {
            return Err("empty reference".into());
        }
        let parts = split(name);
        let digest = parts.digest.map(|d| d.parse::<Digest>()).transpose()?;
        let tag = parts.tag.map(|t| Tag::parse(t).ok_or_else(|| format!("'{t}' is not a valid tag"))).transpose()?;
        let registry = match parts.host {
            None | Some("index.docker.io") | Some(DOCKER_HUB_API) => DOCKER_HUB,
            Some(host) => host,
        };
        if !valid_host(registry) {
            return Err(format!("'{registry}' is not a valid registry host[:port]"));
        }
        let repo = match parts.path {
            p if registry == DOCKER_HUB && !p.contains('/') => format!("library/{p}"),
            p => p.to_string(),
        };
        let repository = Repository::parse(&repo).ok_or_else(|| {
            format!("'{repo}' is not a valid repository name (lowercase letters, digits, '.', '_', '-', '/')")
        })?;
        Ok(ImageRef { registry: registry.to_string(), repository, tag, digest })
    }

    /// The `HOST[:PORT]` requests go to.
    pub fn endpoint(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask the registry for: the digest when there is one, else the tag (else
    /// `latest`).
    pub fn reference(&self) -> Reference {
        match (&self.digest, &self.tag) {
            (Some(d), _) => Reference::Digest(d.clone()),
            (None, Some(t)) => Reference::Tag(t.clone()),
            (None, None) => Reference::Tag(Tag(String::from("latest"))),
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
pub fn valid_host(s: &str) -> bool {
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

    #[test]
    fn repository_grammar() {
        for good in ["a", "ns/app", "a/b/c/d", "a.b", "a_b", "a__b", "a---b", "0", "quay.io/ns/app", "x-1/y_2.z"] {
            assert!(valid_repository(good), "{good}");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "..",
            "a/../b",
            "a/..",
            "a..b",
            "A",
            "a_",
            "_a",
            "a___b",
            "a.-b",
            "-a",
            "a b",
            "a/.b",
            "a%2fb",
            "a/_manifests",
            "ns/ä",
        ] {
            assert!(!valid_repository(bad), "{bad}");
        }
        assert!(valid_repository(&"a".repeat(255)));
        assert!(!valid_repository(&"a".repeat(256)));
    }

    #[test]
    fn tag_grammar() {
        for good in ["latest", "1.0", "_x", "A-b_c.d", "0"] {
            assert!(valid_tag(good), "{good}");
        }
        for bad in ["", ".x", "-x", "a/b", "a:b", "..", "a b"] {
            assert!(!valid_tag(bad), "{bad}");
        }
        assert!(valid_tag(&"a".repeat(128)));
        assert!(!valid_tag(&"a".repeat(129)));
    }

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

    #[test]
    fn splits_as_written() {
        let p = split("localhost:5000/ns/app:1.0@sha256:x");
        assert_eq!(
            p,
            Parts { host: Some("localhost:5000"), path: "ns/app", tag: Some("1.0"), digest: Some("sha256:x") }
        );
        assert_eq!(split("nginx"), Parts { host: None, path: "nginx", tag: None, digest: None });
        assert_eq!(split("ns/app:v").host, None);
        let r = ImageRef::parse_written("docker://quay.io/ns/app").unwrap();
        assert_eq!((r.tag, r.digest), (None, None));
        assert_eq!(ImageRef::parse_written("quay.io/ns/app:1").unwrap().tag.map(|t| t.to_string()), Some("1".into()));
        assert_eq!(with_transport("quay.io/a/b"), "docker://quay.io/a/b");
        assert_eq!(with_transport("oci:/x:y"), "oci:/x:y");
        assert_eq!(with_transport("docker://n"), "docker://n");
    }
}
