//! Where a bundle's images land in a registry, and registering them there once their
//! blobs are in the store.
//!
//! The repository is the source's path without its registry host, under an optional
//! prefix: `docker://quay.io/ns/app:1.0` → `PREFIX/ns/app:1.0`. An OCI layout source
//! `oci:DIR:REF` goes to the repository named after DIR (`oci:/srv/ocp:4.16` → `ocp:4.16`),
//! unless REF is itself a full reference (`quay.io/ns/app:1.0`), whose path is used.

use crate::bundle::manifest::Image;
use crate::digest::Digest;
use crate::error::{usage, Result};
use crate::oci::layout::read_limited;
use crate::oci::{is_index, MAX_MANIFEST};
use crate::registry::storage::{valid_repository, valid_tag, Storage};
use crate::store::BlobStore;

/// Repository and tag for an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub repository: String,
    pub tag: Option<String>,
}

pub fn target(image: &Image, prefix: Option<&str>) -> Result<Target> {
    let (path, tag) = source_path(&image.source, image.reference.as_deref());
    let mut repository = path;
    if let Some(p) = prefix.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
        repository = format!("{p}/{repository}");
    }
    if !valid_repository(&repository) {
        return Err(usage(format!(
            "image {} from {} maps to repository '{repository}', which is not a valid repository name",
            image.digest, image.source
        )));
    }
    Ok(Target { repository, tag: tag.filter(|t| valid_tag(t)) })
}

/// (repository path, tag) from a source string and the image's reference name.
fn source_path(source: &str, reference: Option<&str>) -> (String, Option<String>) {
    if let Some(rest) = source.strip_prefix("docker://") {
        let (name, tag) = split_reference(rest);
        return (strip_host(&name), tag.or_else(|| reference.map(str::to_string)));
    }
    if let Some(r) = reference.filter(|r| r.contains('/')) {
        let (name, tag) = split_reference(r);
        return (strip_host(&name), tag);
    }
    let dir = source.strip_prefix("oci:").unwrap_or(source);
    let dir = match reference {
        Some(r) => dir.strip_suffix(&format!(":{r}")).unwrap_or(dir),
        None => dir,
    };
    let base = std::path::Path::new(dir)
        .file_name()
        .map(|b| b.to_string_lossy().into_owned())
        .unwrap_or_else(|| "images".into());
    (sanitize(&base), reference.map(str::to_string))
}

/// `name[:tag][@digest]` → (name, tag)
fn split_reference(r: &str) -> (String, Option<String>) {
    let r = r.split('@').next().unwrap_or(r);
    match r.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name.to_string(), Some(tag.to_string())),
        _ => (r.to_string(), None),
    }
}

/// Drop a leading registry host (`quay.io/`, `localhost:5000/`).
fn strip_host(name: &str) -> String {
    match name.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => rest.to_string(),
        _ => name.to_string(),
    }
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
    if let Some(tag) = &target.tag {
        storage.tag(&target.repository, tag, &image.digest)?;
    }
    Ok(())
}

/// The manifests of an image with their media types, in dependency order: children
/// first, the image last.
pub fn manifests_of(store: &BlobStore, digest: &Digest, media_type: &str) -> Result<Vec<(Digest, String)>> {
    let mut out: Vec<(Digest, String)> = Vec::new();
    if is_index(media_type) {
        let path = store.path(digest);
        let bytes = read_limited(&path, MAX_MANIFEST)?;
        let index: oci_spec::image::ImageIndex =
            serde_json::from_slice(&bytes).map_err(|e| usage(format!("index {digest}: {e}")))?;
        for child in index.manifests() {
            let d: Digest = child.digest().to_string().parse().map_err(usage)?;
            if !store.path(&d).is_file() {
                // Not carried (the bundle was packed for some platforms only).
                out.push((d, child.media_type().to_string()));
                continue;
            }
            for m in manifests_of(store, &d, child.media_type().as_ref())? {
                if !out.iter().any(|(o, _)| *o == m.0) {
                    out.push(m);
                }
            }
        }
    }
    out.push((digest.clone(), media_type.to_string()));
    Ok(out)
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
        }
    }

    #[test]
    fn repositories_follow_the_source_path() {
        let t = target(&image("docker://quay.io/ns/app:1.0", Some("1.0")), None).unwrap();
        assert_eq!(t, Target { repository: "ns/app".into(), tag: Some("1.0".into()) });
        let t = target(&image("docker://quay.io/ns/app:1.0", Some("1.0")), Some("mirror/")).unwrap();
        assert_eq!(t.repository, "mirror/ns/app");
        let t = target(&image("oci:/srv/OCP_Release:4.16", Some("4.16")), None).unwrap();
        assert_eq!(t, Target { repository: "ocp-release".into(), tag: Some("4.16".into()) });
        let t = target(&image("oci:testdata/layout", Some("quay.io/ns/app:2")), None).unwrap();
        assert_eq!(t, Target { repository: "ns/app".into(), tag: Some("2".into()) });
        let t = target(&image("oci:testdata/layout", None), Some("p")).unwrap();
        assert_eq!(t, Target { repository: "p/layout".into(), tag: None });
        assert!(target(&image("oci:x", None), Some("UPPER/..")).is_err());
    }
}
