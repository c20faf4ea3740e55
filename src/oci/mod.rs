//! The image model shared by every layer above: OCI (and Docker schema2) media types,
//! the manifest classifier ([`doc_type`]), the size limit of a manifest document
//! ([`MAX_MANIFEST`]), `index.json` descriptors and platforms.
//!
//! - [`names`]: repositories, tags, references, `docker://` image references
//! - [`walk`]: the one walk over an image graph (index → manifests → config and layers)
//! - [`layer`]: reading a layer's tar, whatever its compression
//! - [`layout`]: reading a source OCI image layout

pub mod layer;
pub mod layout;
pub mod names;
pub mod walk;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The largest image manifest, index or image config airlift reads, fetches, serves or
/// accepts (the distribution-spec asks registries for at least 4 MB).
pub const MAX_MANIFEST: u64 = 16 << 20;

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// What a manifest document's JSON says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocType<'a> {
    /// The media type its `mediaType` field names.
    Named(&'a str),
    /// No `mediaType`, but its fields imply one: `manifests` an OCI index, `config` and
    /// `layers` an OCI image manifest.
    Implied(&'static str),
    /// Neither.
    Unknown,
}

/// The one manifest classifier: what a document's JSON names or implies it is (callers
/// weigh it against the media type they were given: a descriptor's, a Content-Type).
pub fn doc_type(doc: &serde_json::Value) -> DocType<'_> {
    if let Some(named) = doc.get("mediaType").and_then(|v| v.as_str()) {
        DocType::Named(named)
    } else if doc.get("manifests").is_some() {
        DocType::Implied(OCI_INDEX)
    } else if doc.get("config").is_some() && doc.get("layers").is_some() {
        DocType::Implied(OCI_MANIFEST)
    } else {
        DocType::Unknown
    }
}

/// Whether a blob of this media type is already compressed (storing it compressed again
/// would not pay).
/// Whether a descriptor is an image layer (OCI or Docker), not a config or manifest.
pub fn is_layer(media_type: &str) -> bool {
    media_type.contains(".layer.") || media_type.contains(".rootfs.")
}

pub fn is_compressed(media_type: &str) -> bool {
    ["gzip", "zstd", "+zst", "bzip2", "xz", "lz4"].iter().any(|c| media_type.contains(c))
        || media_type == "application/vnd.docker.image.rootfs.diff.tar.gzip"
}

/// Whether a blob of this media type is JSON (manifests, indexes, configs).
pub fn is_json(media_type: &str) -> bool {
    media_type.ends_with("json") || is_index(media_type) || is_manifest(media_type)
}

/// One image as `index.json` lists it: a plain descriptor with its ref name.
#[derive(Debug, Clone, Copy)]
pub struct IndexEntry<'a> {
    pub digest: &'a crate::digest::Digest,
    pub media_type: &'a str,
    pub size: u64,
    pub reference: Option<&'a str>,
}

/// A ref name in `index.json` that now points at another image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Moved {
    #[serde(rename = "ref")]
    pub reference: String,
    pub from: String,
    pub to: String,
}

/// `index.json` of a layout holding these images.
pub fn index_json(images: &[IndexEntry]) -> Vec<u8> {
    index_bytes(images.iter().map(descriptor).collect())
}

/// Add `images` to the `index.json` at `path` (created when absent), keeping the images
/// already listed; an image whose ref name is already there replaces it, and that ref
/// is reported as moved when it pointed at another image.
pub fn update_index(path: &std::path::Path, images: &[IndexEntry]) -> crate::error::Result<Vec<Moved>> {
    let mut moved = Vec::new();
    let mut manifests: Vec<serde_json::Value> = match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("manifests").and_then(|m| m.as_array()).cloned())
            .ok_or_else(|| {
                crate::error::usage(format!("{}: existing index.json is not an OCI index", path.display()))
            })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(crate::error::Error::io(path, e)),
    };
    let ref_of = |d: &serde_json::Value| {
        d.pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1"))).and_then(|r| r.as_str()).map(str::to_string)
    };
    for image in images {
        let digest = image.digest.to_string();
        if let Some(r) = image.reference {
            for d in manifests.iter().filter(|d| ref_of(d).as_deref() == Some(r)) {
                let from = d.get("digest").and_then(|x| x.as_str()).unwrap_or_default();
                if from != digest {
                    moved.push(Moved { reference: r.to_string(), from: from.to_string(), to: digest.clone() });
                }
            }
        }
        manifests.retain(|d| match image.reference {
            Some(r) => ref_of(d).as_deref() != Some(r),
            None => !(ref_of(d).is_none() && d.get("digest").and_then(|x| x.as_str()) == Some(&digest)),
        });
        manifests.push(descriptor(image));
    }
    crate::store::write_atomic(path, &index_bytes(manifests))?;
    Ok(moved)
}

/// The bytes of an OCI index listing `manifests`.
fn index_bytes(manifests: Vec<serde_json::Value>) -> Vec<u8> {
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    let mut bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// A descriptor as it appears in `index.json`.
fn descriptor(image: &IndexEntry) -> serde_json::Value {
    let mut d = serde_json::json!({
        "mediaType": image.media_type,
        "digest": image.digest.to_string(),
        "size": image.size,
    });
    if let Some(r) = image.reference {
        d["annotations"] = serde_json::json!({ REF_NAME: r });
    }
    d
}

/// `os/arch[/variant]` of a platform.
pub fn platform_name(p: &oci_spec::image::Platform) -> String {
    match p.variant() {
        Some(v) => format!("{}/{}/{v}", p.os(), p.architecture()),
        None => format!("{}/{}", p.os(), p.architecture()),
    }
}

/// Record a platform once.
pub fn add_platform(platforms: &mut Vec<String>, p: &oci_spec::image::Platform) {
    let name = platform_name(p);
    if !platforms.contains(&name) {
        platforms.push(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_documents() {
        let doc = |v: serde_json::Value| v;
        assert_eq!(doc_type(&doc(serde_json::json!({ "mediaType": DOCKER_LIST }))), DocType::Named(DOCKER_LIST));
        assert_eq!(doc_type(&doc(serde_json::json!({ "manifests": [] }))), DocType::Implied(OCI_INDEX));
        assert_eq!(doc_type(&doc(serde_json::json!({ "config": {}, "layers": [] }))), DocType::Implied(OCI_MANIFEST));
        assert_eq!(doc_type(&doc(serde_json::json!({ "config": {} }))), DocType::Unknown);
    }
}
