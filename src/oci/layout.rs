//! Reading a source OCI image layout: resolve references, walk every image down to its
//! blobs, and check what is read against its descriptor.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex};

use crate::digest::Digest;
use crate::error::{usage, Error, IoContext, Result};
use crate::oci::walk::{walk, Doc, Invalid, Manifests, Node, Role, Visitor};
use crate::oci::{self, MAX_MANIFEST, REF_NAME};
use crate::store;

/// A source given as `oci:PATH` or `oci:PATH:REF`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutSource {
    pub path: PathBuf,
    pub reference: Option<String>,
}

impl LayoutSource {
    pub fn parse(source: &str) -> Result<LayoutSource> {
        let Some(rest) = source.strip_prefix("oci:") else {
            return Err(usage(format!("unsupported source '{source}': use oci:PATH or oci:PATH:REF")));
        };
        if rest.is_empty() {
            return Err(usage(format!("source '{source}' names no layout directory")));
        }
        // The reference may contain ':' (`quay.io/ns/app:1.0`) and so may the path: take
        // the shortest prefix that is a layout directory, else split at the last ':'.
        if Path::new(rest).join("oci-layout").exists() {
            return Ok(LayoutSource { path: rest.into(), reference: None });
        }
        for (i, _) in rest.match_indices(':') {
            let (path, reference) = (&rest[..i], &rest[i + 1..]);
            if !path.is_empty() && !reference.is_empty() && Path::new(path).join("oci-layout").exists() {
                return Ok(LayoutSource { path: path.into(), reference: Some(reference.into()) });
            }
        }
        match rest.rsplit_once(':') {
            Some((path, reference)) if !path.is_empty() && !reference.is_empty() => {
                Ok(LayoutSource { path: path.into(), reference: Some(reference.into()) })
            }
            _ => Ok(LayoutSource { path: rest.into(), reference: None }),
        }
    }
}

/// A descriptor's digest, size and media type.
#[derive(Debug, Clone)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

impl BlobRef {
    /// The blob a descriptor names (an error when its digest is not valid).
    pub fn of(desc: &Descriptor) -> std::result::Result<BlobRef, String> {
        let digest: Digest = desc.digest().to_string().parse()?;
        Ok(BlobRef { digest, size: desc.size(), media_type: desc.media_type().to_string() })
    }
}

/// One top-level image (manifest or index) of a layout, walked down to its blobs.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub reference: Option<String>,
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub platforms: Vec<String>,
    /// Every blob needed, each once, manifests first.
    pub blobs: Vec<BlobRef>,
}

pub struct SourceLayout {
    root: PathBuf,
}

impl SourceLayout {
    pub fn open(root: &Path) -> Result<SourceLayout> {
        let marker = root.join("oci-layout");
        let text = std::fs::read_to_string(&marker)
            .map_err(|e| usage(format!("{} is not an OCI image layout: {}: {e}", root.display(), marker.display())))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| usage(format!("{}: not valid JSON: {e}", marker.display())))?;
        if value.get("imageLayoutVersion").and_then(|v| v.as_str()).is_none() {
            return Err(usage(format!("{}: no imageLayoutVersion", marker.display())));
        }
        Ok(SourceLayout { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        store::blob_path(&self.root, digest)
    }

    /// The images of `index.json`: all of them, or those whose ref name is `reference`.
    pub fn images(&self, reference: Option<&str>) -> Result<Vec<ResolvedImage>> {
        let index_path = self.root.join("index.json");
        let bytes = read_limited(&index_path, MAX_MANIFEST)?;
        let index: ImageIndex = serde_json::from_slice(&bytes)
            .map_err(|e| usage(format!("{}: not an OCI image index: {e}", index_path.display())))?;
        let mut images = Vec::new();
        for desc in index.manifests() {
            let name = desc.annotations().as_ref().and_then(|a| a.get(REF_NAME)).cloned();
            if reference.is_some() && name.as_deref() != reference {
                continue;
            }
            images.push(self.resolve(desc, name)?);
        }
        if images.is_empty() {
            return Err(match reference {
                Some(r) => usage(format!("{}: no image named '{r}' in index.json", self.root.display())),
                None => usage(format!("{}: index.json lists no images", self.root.display())),
            });
        }
        Ok(images)
    }

    fn resolve(&self, desc: &Descriptor, reference: Option<String>) -> Result<ResolvedImage> {
        let top = BlobRef::of(desc).map_err(usage)?;
        let mut image = ResolvedImage {
            reference,
            digest: top.digest.clone(),
            media_type: top.media_type.clone(),
            size: top.size,
            platforms: Vec::new(),
            blobs: Vec::new(),
        };
        walk(self, &top, &mut Resolver { layout: self, image: &mut image })?;
        Ok(image)
    }

    /// A config or layer must be present with the declared size.
    fn check_blob(&self, blob: &BlobRef) -> Result<()> {
        let path = self.blob_path(&blob.digest);
        let meta = std::fs::metadata(&path).map_err(|e| {
            usage(format!(
                "source layout {} is missing blob {} ({}): {e}",
                self.root.display(),
                blob.digest,
                path.display()
            ))
        })?;
        if meta.len() != blob.size {
            return Err(Error::Integrity(format!(
                "source blob {} is {} bytes, its descriptor says {}",
                path.display(),
                meta.len(),
                blob.size
            )));
        }
        Ok(())
    }

    fn config_platform(&self, config: &BlobRef) -> Option<String> {
        config_platform(&self.read_json_blob(config).ok()?)
    }

    /// Read a small JSON blob, checking its size and digest against the descriptor.
    fn read_json_blob(&self, blob: &BlobRef) -> Result<Vec<u8>> {
        if blob.size > MAX_MANIFEST {
            return Err(usage(format!(
                "{} is {} bytes, larger than airlift reads for a manifest",
                blob.digest, blob.size
            )));
        }
        let path = self.blob_path(&blob.digest);
        let bytes = read_limited(&path, MAX_MANIFEST)?;
        if bytes.len() as u64 != blob.size || Digest::of(&bytes) != blob.digest {
            return Err(Error::Integrity(format!(
                "source blob {} does not match its descriptor (size or digest)",
                path.display()
            )));
        }
        Ok(bytes)
    }
}

impl Manifests for SourceLayout {
    fn manifest(&self, blob: &BlobRef, _: Role) -> Result<Option<Vec<u8>>> {
        self.read_json_blob(blob).map(Some)
    }

    fn invalid(&self, blob: &BlobRef, problem: Invalid) -> Error {
        match problem {
            Invalid::Index(e) => usage(format!("index {} in {}: {e}", blob.digest, self.root.display())),
            Invalid::Manifest(e) => usage(format!("manifest {} in {}: {e}", blob.digest, self.root.display())),
            Invalid::Descriptor(e) => usage(e),
        }
    }
}

/// Records every blob of an image, each once, manifests first, and its platforms: an
/// index's children's, or a single manifest's config's.
struct Resolver<'a> {
    layout: &'a SourceLayout,
    image: &'a mut ResolvedImage,
}

impl Visitor for Resolver<'_> {
    fn enter(&mut self, parent: &Node, _: &BlobRef, desc: &Descriptor) -> Result<bool> {
        if let (Doc::Index(_), Some(p)) = (parent.doc, desc.platform()) {
            oci::add_platform(&mut self.image.platforms, p);
        }
        Ok(true)
    }

    fn visit(&mut self, node: &Node) -> Result<()> {
        self.image.blobs.push(node.blob.clone());
        match node.doc {
            Doc::Manifest(m) if node.role == Role::Top => {
                let config = BlobRef::of(m.config()).map_err(usage)?;
                if let Some(p) = self.layout.config_platform(&config) {
                    self.image.platforms.push(p);
                }
                Ok(())
            }
            Doc::Schema1 => {
                Err(usage(format!("{} is a Docker schema1 manifest, which airlift does not carry", node.blob.digest)))
            }
            Doc::Blob => self.layout.check_blob(node.blob),
            Doc::Index(_) | Doc::Manifest(_) | Doc::Absent => Ok(()),
        }
    }
}

/// `os/arch[/variant]` from an image config's bytes.
pub fn config_platform(config: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(config).ok()?;
    let os = v.get("os")?.as_str()?;
    let arch = v.get("architecture")?.as_str()?;
    Some(match v.get("variant").and_then(|x| x.as_str()) {
        Some(var) => format!("{os}/{arch}/{var}"),
        None => format!("{os}/{arch}"),
    })
}

/// Read a whole file that must not exceed `limit` bytes.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let file = File::open(path).at(path)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).at(path)?;
    if bytes.len() as u64 > limit {
        return Err(usage(format!("{} is larger than {limit} bytes", path.display())));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        assert_eq!(
            LayoutSource::parse("oci:/tmp/nowhere:app-1.0").unwrap(),
            LayoutSource { path: "/tmp/nowhere".into(), reference: Some("app-1.0".into()) }
        );
        assert_eq!(LayoutSource::parse("oci:dir").unwrap().reference, None);
        assert!(LayoutSource::parse("docker://x/y").is_err());
        assert!(LayoutSource::parse("oci:").is_err());
    }
}
