//! Reading a source OCI image layout: resolve references, walk every image down to its
//! blobs, and check what is read against its descriptor.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use crate::digest::Digest;
use crate::error::{usage, Error, IoContext, Result};
use crate::oci::{self, is_index, is_manifest, MAX_MANIFEST, REF_NAME};
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

#[derive(Debug, Clone)]
pub struct BlobRef {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
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
        let top = blob_ref(desc)?;
        let mut image = ResolvedImage {
            reference,
            digest: top.digest.clone(),
            media_type: top.media_type.clone(),
            size: top.size,
            platforms: Vec::new(),
            blobs: Vec::new(),
        };
        let mut seen = HashSet::new();
        self.walk(&top, &mut image, &mut seen, true)?;
        Ok(image)
    }

    fn walk(&self, blob: &BlobRef, image: &mut ResolvedImage, seen: &mut HashSet<Digest>, top: bool) -> Result<()> {
        if !seen.insert(blob.digest.clone()) {
            return Ok(());
        }
        image.blobs.push(blob.clone());
        if is_index(&blob.media_type) {
            let bytes = self.read_json_blob(blob)?;
            let index: ImageIndex = serde_json::from_slice(&bytes)
                .map_err(|e| usage(format!("index {} in {}: {e}", blob.digest, self.root.display())))?;
            for child in index.manifests() {
                if let Some(p) = child.platform() {
                    oci::add_platform(&mut image.platforms, p);
                }
                self.walk(&blob_ref(child)?, image, seen, false)?;
            }
        } else if is_manifest(&blob.media_type) {
            let bytes = self.read_json_blob(blob)?;
            let manifest: ImageManifest = serde_json::from_slice(&bytes)
                .map_err(|e| usage(format!("manifest {} in {}: {e}", blob.digest, self.root.display())))?;
            let config = blob_ref(manifest.config())?;
            if top {
                if let Some(p) = self.config_platform(&config) {
                    image.platforms.push(p);
                }
            }
            self.walk(&config, image, seen, false)?;
            for layer in manifest.layers() {
                self.walk(&blob_ref(layer)?, image, seen, false)?;
            }
        } else if blob.media_type == oci::DOCKER_SCHEMA1 || blob.media_type == oci::DOCKER_SCHEMA1_SIGNED {
            return Err(usage(format!("{} is a Docker schema1 manifest, which airlift does not carry", blob.digest)));
        } else {
            // Config or layer: it must be present with the declared size.
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
        }
        Ok(())
    }

    fn config_platform(&self, config: &BlobRef) -> Option<String> {
        let bytes = self.read_json_blob(config).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let os = v.get("os")?.as_str()?;
        let arch = v.get("architecture")?.as_str()?;
        Some(match v.get("variant").and_then(|x| x.as_str()) {
            Some(var) => format!("{os}/{arch}/{var}"),
            None => format!("{os}/{arch}"),
        })
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

fn blob_ref(desc: &Descriptor) -> Result<BlobRef> {
    let digest: Digest = desc.digest().to_string().parse().map_err(usage)?;
    Ok(BlobRef { digest, size: desc.size(), media_type: desc.media_type().to_string() })
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
