//! Where a bundle's images land in a registry, and registering them there once their
//! blobs are in the store.
//!
//! The repository is the source's path without its registry host, under an optional
//! prefix: `docker://quay.io/ns/app:1.0` → `PREFIX/ns/app:1.0`. An OCI layout source
//! `oci:DIR:REF` goes to the repository named after DIR (`oci:/srv/ocp:4.16` → `ocp:4.16`),
//! unless REF is itself a full reference (`quay.io/ns/app:1.0`), whose path is used; so is
//! a registry image's reference name when it is one (an image set's targetRepo/targetTag).
//! An image named without a tag (by digest) is tagged `sha256-HEX` after its digest, so
//! a registry that prunes untagged manifests keeps it.

use crate::bundle::manifest::Image;
use crate::digest::Digest;
use crate::error::{usage, Result};
use crate::oci::layout::BlobRef;
use crate::oci::names::{split, valid_repository, valid_tag, TRANSPORT};
use crate::oci::walk::{walk, Node, Role, Visitor};
use crate::registry::storage::Storage;
use crate::store::BlobStore;

/// Repository and tag for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub repository: String,
    /// The source's tag, else [`digest_tag`].
    pub tag: String,
}

pub fn target(image: &Image, prefix: Option<&str>) -> Result<Target> {
    place(&image.source, image.reference.as_deref(), &image.digest, prefix)
}

/// Where the image `digest` from `source` (with the reference name a bundle gives it)
/// lands under `prefix`; [`target`] for a bundle's image, and for `prune`, which finds
/// again where unpack put an image.
pub fn place(source: &str, reference: Option<&str>, digest: &Digest, prefix: Option<&str>) -> Result<Target> {
    let (path, tag) = source_path(source, reference);
    let mut repository = path;
    if let Some(p) = prefix.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
        repository = format!("{p}/{repository}");
    }
    if !valid_repository(&repository) {
        return Err(usage(format!(
            "image {digest} from {source} maps to repository '{repository}', which is not a valid repository name"
        )));
    }
    let tag = tag.filter(|t| valid_tag(t)).unwrap_or_else(|| digest_tag(digest));
    Ok(Target { repository, tag })
}

impl Target {
    /// The reference the image (`digest`) is pulled by at `host`: by its tag, or by
    /// digest when the tag is only the digest's own.
    pub fn reference(&self, host: &str, digest: &Digest) -> String {
        if self.tag == digest_tag(digest) {
            format!("{host}/{}@{digest}", self.repository)
        } else {
            format!("{host}/{}:{}", self.repository, self.tag)
        }
    }
}

/// The tag of an image named by digest alone: `sha256-HEX`.
pub fn digest_tag(digest: &Digest) -> String {
    format!("sha256-{}", digest.hex())
}

/// (repository path, tag) from a source string and the image's reference name.
fn source_path(source: &str, reference: Option<&str>) -> (String, Option<String>) {
    // A reference name that is itself a reference (`quay.io/ns/app:1.0`, `index:v4.16`):
    // a layout's image named so, or an image set's targetRepo/targetTag.
    if let Some(r) = reference.filter(|r| r.contains('/') || r.contains(':')) {
        let parts = split(r);
        return (parts.path.to_string(), parts.tag.map(str::to_string));
    }
    if let Some(rest) = source.strip_prefix(TRANSPORT) {
        let parts = split(rest);
        return (parts.path.to_string(), parts.tag.or(reference).map(str::to_string));
    }
    let dir = source.strip_prefix("oci:").unwrap_or(source);
    let dir = match reference {
        Some(r) => dir.strip_suffix(&format!(":{r}")).unwrap_or(dir),
        None => dir,
    };
    (layout_repository(std::path::Path::new(dir)), reference.map(str::to_string))
}

/// The repository an OCI layout directory's images go to: its name, as a path component.
pub fn layout_repository(dir: &std::path::Path) -> String {
    let base = dir.file_name().map(|b| b.to_string_lossy().into_owned()).unwrap_or_else(|| "images".into());
    sanitize(&base)
}

/// A directory name as a repository path component.
fn sanitize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() {
        "images".into()
    } else {
        out
    }
}

/// Link every blob of a complete image into its repository, manifests after what they
/// reference (children before their index), and the tag last.
pub fn register(storage: &Storage, image: &Image, target: &Target) -> Result<()> {
    let manifests = manifests_of(storage.blobs(), &image.digest, &image.media_type)?;
    for blob in &image.blobs {
        if !manifests.iter().any(|(m, _)| m == blob) {
            storage.link_blob(&target.repository, blob)?;
        }
    }
    // Children left out of the bundle (packed with --platform) make their index sparse.
    let sparse = manifests.iter().any(|(m, _)| !image.blobs.contains(m));
    for (m, _) in manifests.iter().filter(|(m, _)| image.blobs.contains(m)) {
        storage.link_manifest(&target.repository, m, sparse)?;
    }
    storage.tag(&target.repository, &target.tag, &image.digest)
}

/// The manifests of an image with their media types, in dependency order: children
/// first, the image last. Children an index names that the store does not hold (the
/// bundle was packed for some platforms only) are listed, not walked.
pub fn manifests_of(store: &BlobStore, digest: &Digest, media_type: &str) -> Result<Vec<(Digest, String)>> {
    // A store holds verified blobs: it reads them by digest and checks no size.
    let top = BlobRef { digest: digest.clone(), size: 0, media_type: media_type.to_string() };
    let mut manifests = Manifests(Vec::new());
    walk(store, &top, &mut manifests)?;
    Ok(manifests.0)
}

/// Lists every manifest and index after its children.
struct Manifests(Vec<(Digest, String)>);

impl Visitor for Manifests {
    fn visit(&mut self, _: &Node) -> Result<()> {
        Ok(())
    }

    fn leave(&mut self, node: &Node) -> Result<()> {
        if matches!(node.role, Role::Top | Role::Child) {
            self.0.push((node.blob.digest.clone(), node.blob.media_type.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(source: &str, reference: Option<&str>) -> Image {
        Image {
            source: source.into(),
            reference: reference.map(str::to_string),
            digest: Digest::of(b"m"),
            media_type: crate::oci::OCI_MANIFEST.into(),
            size: 1,
            total_size: 1,
            platforms: vec![],
            blobs: vec![],
            attached: vec![],
            signature: None,
        }
    }

    #[test]
    fn repositories_follow_the_source_path() {
        let t = target(&image("docker://quay.io/ns/app:1.0", Some("1.0")), None).unwrap();
        assert_eq!(t, Target { repository: "ns/app".into(), tag: "1.0".into() });
        let t = target(&image("docker://quay.io/ns/app:1.0", Some("1.0")), Some("mirror/")).unwrap();
        assert_eq!(t.repository, "mirror/ns/app");
        let t = target(&image("oci:/srv/OCP_Release:4.16", Some("4.16")), None).unwrap();
        assert_eq!(t, Target { repository: "ocp-release".into(), tag: "4.16".into() });
        let t = target(&image("oci:testdata/layout", Some("quay.io/ns/app:2")), None).unwrap();
        assert_eq!(t, Target { repository: "ns/app".into(), tag: "2".into() });
        let t = target(&image("oci:testdata/layout", None), Some("p")).unwrap();
        let digest_tag = format!("sha256-{}", Digest::of(b"m").hex());
        assert_eq!(t, Target { repository: "p/layout".into(), tag: digest_tag.clone() });
        let t = target(&image(&format!("docker://quay.io/ns/app@{}", Digest::of(b"m")), None), None).unwrap();
        assert_eq!(t, Target { repository: "ns/app".into(), tag: digest_tag });
        assert_eq!(t.reference("h:1", &Digest::of(b"m")), format!("h:1/ns/app@{}", Digest::of(b"m")));
        assert_eq!(
            target(&image("docker://quay.io/ns/app:1.0", None), None).unwrap().reference("h", &Digest::of(b"m")),
            "h/ns/app:1.0"
        );
        assert!(target(&image("oci:x", None), Some("UPPER/..")).is_err());
        // An image set's targetRepo/targetTag: the reference name is the whole target.
        let t = target(&image("docker://quay.io/ns/app:1.0", Some("quay.io/other/app:v1")), Some("m")).unwrap();
        assert_eq!(t, Target { repository: "m/other/app".into(), tag: "v1".into() });
        let t = target(&image(&format!("docker://quay.io/ns/app@{}", Digest::of(b"m")), Some("quay.io/x")), None);
        assert_eq!(t.unwrap(), Target { repository: "x".into(), tag: format!("sha256-{}", Digest::of(b"m").hex()) });
    }
}
