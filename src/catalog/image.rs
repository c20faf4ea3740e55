//! A catalog image (an operator index) whose manifests, configs and layers are in a blob
//! store: opened and checked ([`CatalogImage::open`]: platforms kept, the config label,
//! every blob present), its config directory read from its layers with whiteouts applied
//! ([`CatalogImage::extract_configs`], in `extract`), and the filtered catalog image
//! built from it ([`CatalogImage::rebuild`]: two layers appended to every platform
//! manifest, written byte-reproducibly by `layers`).

pub(crate) mod extract;
pub(crate) mod layers;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageManifest};
use serde_json::Value;

use crate::digest::Digest;
use crate::error::{integrity, usage, Result};
use crate::oci::layout::{config_platform, read_limited, BlobRef, ResolvedImage};
use crate::oci::walk::{walk, Node, Visitor};
use crate::oci::{doc_type, is_index, is_manifest, platform_name, DocType, DOCKER_MANIFEST, MAX_MANIFEST};
use crate::source::registry::Platform;
use crate::store::BlobStore;
use crate::text::untrusted;

pub use extract::{MAX_CONFIG_BYTES, MAX_CONFIG_ENTRIES};

/// The config label naming the directory of a file-based catalog.
pub const CONFIGS_LABEL: &str = "operators.operatorframework.io.index.configs.v1";
/// The label naming the directory of a pre-built serve cache (opm's `--cache-dir`).
pub const CACHE_LABEL: &str = "operators.operatorframework.io.index.cache.v1";
/// Where the rebuilt catalog keeps its config.
pub const CONFIGS_DIR: &str = "/configs";
/// The annotation buildx gives the attestation manifests it lists in an index: they
/// describe the original platform manifests, not the rebuilt ones, and are left out.
const REFERENCE_TYPE: &str = "vnd.docker.reference.type";

/// A catalog image whose manifests, configs and layers are all in a store (the pack cache).
#[derive(Debug)]
pub struct CatalogImage {
    digest: Digest,
    /// The top-level document's media type (named, or implied by its fields).
    media_type: String,
    /// The top-level index as read; `None` for a single manifest.
    index: Option<Value>,
    platforms: Vec<PlatformImage>,
    configs_dir: String,
}

/// One platform manifest of a catalog image.
#[derive(Debug)]
struct PlatformImage {
    /// How the index lists it (platform, annotations); `None` for a single manifest.
    descriptor: Option<Value>,
    media_type: String,
    manifest: Value,
    config: Value,
    /// `os/arch[/variant]`, as the index or the config says.
    platform: Option<String>,
    /// Digest and path in the store of each layer, bottom first.
    layers: Vec<(Digest, PathBuf)>,
    /// Directories of a pre-built serve cache (label or `--cache-dir`), removed by a rebuild.
    caches: Vec<String>,
}

impl CatalogImage {
    /// Open the image `digest` (an index, OCI or Docker manifest list, or a single manifest)
    /// from `store`; with `platforms` non-empty, only the index's platform manifests those
    /// match (as `--platform` matches) are kept. Attestation manifests of an index are left
    /// out. Every kept manifest, config and layer must be in the store, every config carry
    /// the label [`CONFIGS_LABEL`], the same on every platform.
    pub fn open(store: &BlobStore, digest: &Digest, platforms: &[Platform]) -> Result<CatalogImage> {
        let name = format!("catalog image {digest}");
        let bytes = read_json(store, &name, "manifest", digest, None)?;
        let doc: Value = serde_json::from_slice(&bytes)
            .map_err(|e| usage(format!("{name}: not JSON: {}", untrusted(&e.to_string()))))?;
        let media_type = match doc_type(&doc) {
            DocType::Named(m) => m.to_string(),
            DocType::Implied(m) => m.to_string(),
            DocType::Unknown => return Err(usage(format!("{name}: neither an image index nor a manifest"))),
        };
        let (index, kept) = if is_index(&media_type) {
            let mut kept = Vec::new();
            for (descriptor, blob) in kept_children(&name, &doc, platforms)? {
                let bytes = read_json(store, &name, "platform manifest", &blob.digest, Some(blob.size))?;
                kept.push(PlatformImage::open(store, &name, Some(descriptor), blob.media_type, &bytes)?);
            }
            (Some(doc), kept)
        } else if is_manifest(&media_type) {
            (None, vec![PlatformImage::open(store, &name, None, media_type.clone(), &bytes)?])
        } else {
            return Err(usage(format!("{name}: {} is neither an image index nor a manifest", untrusted(&media_type))));
        };
        let configs_dir = agreed_label(&name, &kept)?;
        Ok(CatalogImage { digest: digest.clone(), media_type, index, platforms: kept, configs_dir })
    }

    /// The config directory the label names, e.g. `/configs` (checked: absolute, no `.`
    /// or `..` component, no trailing `/`).
    pub fn configs_dir(&self) -> &str {
        &self.configs_dir
    }

    /// The platforms kept, `os/arch[/variant]`, in the index's order.
    pub fn platforms(&self) -> Vec<String> {
        let mut names = Vec::new();
        for name in self.platforms.iter().filter_map(|p| p.platform.clone()) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// Write the config directory of the first kept platform into `into` (which exists and
    /// is empty): the layers applied in order, whiteouts honoured, only directories and
    /// regular files written, within [`MAX_CONFIG_BYTES`] and [`MAX_CONFIG_ENTRIES`]. The
    /// rules for hostile layers: an absolute or `..` path anywhere is an error; under the
    /// config directory a symlink, hard link, device or FIFO is an error (never followed
    /// or recreated); entries elsewhere are skipped unread.
    pub fn extract_configs(&self, into: &Path) -> Result<()> {
        let name = format!("catalog image {}", self.digest);
        extract::extract(&name, &self.platforms[0].layers, &self.configs_dir, into, extract::Limits::DEFAULT)
    }

    /// Build the filtered catalog image: every kept platform manifest gets two layers, one
    /// holding only whiteouts (the old config directory, [`CONFIGS_DIR`], any pre-built
    /// cache), one holding the tree at `configs` as [`CONFIGS_DIR`]; its config gets their
    /// diff_ids, history entries, the label and `Cmd` (see `rebuilt_config`). New
    /// configs and manifests keep the original media types; a new index keeps the original
    /// one's media type, annotations and the kept platforms. Every new blob is committed to
    /// `store`; the same input gives the same bytes, so the same digest.
    pub fn rebuild(&self, store: &BlobStore, configs: &Path) -> Result<ResolvedImage> {
        let tree = layers::tree_layer(store, configs, CONFIGS_DIR)?;
        let mut children = Vec::new();
        for p in &self.platforms {
            let mut gone = vec![self.configs_dir.clone(), CONFIGS_DIR.to_string()];
            gone.extend(p.caches.iter().cloned());
            gone.sort();
            gone.dedup();
            let whiteouts = layers::whiteout_layer(store, &gone)?;
            let config = rebuilt_config(&p.config, &[&whiteouts, &tree], &gone);
            let config = put_json(store, &config)?;
            let manifest = rebuilt_manifest(&p.manifest, &config, &[&whiteouts, &tree], &p.media_type);
            children.push((put_json(store, &manifest)?, p));
        }
        let top = match &self.index {
            None => children[0].0.clone(),
            Some(index) => {
                let mut index = index.clone();
                let manifests = children.iter().map(|(blob, p)| {
                    let mut d = p.descriptor.clone().unwrap_or_default();
                    if let Some(d) = d.as_object_mut() {
                        d.remove("data"); // the old manifest's bytes, embedded
                    }
                    d["digest"] = blob.digest.to_string().into();
                    d["size"] = blob.size.into();
                    d
                });
                index["manifests"] = Value::Array(manifests.collect());
                put_json(store, &index)?
            }
        };
        let top = BlobRef { media_type: self.media_type.clone(), ..top };
        let mut blobs = Vec::new();
        walk(store, &top, &mut Blobs(&mut blobs))?;
        let platforms = self.platforms();
        Ok(ResolvedImage {
            reference: None,
            digest: top.digest,
            media_type: top.media_type,
            size: top.size,
            platforms,
            blobs,
        })
    }
}

impl PlatformImage {
    /// A platform manifest (`bytes`) and its config, read and checked.
    fn open(
        store: &BlobStore,
        name: &str,
        descriptor: Option<Value>,
        media_type: String,
        bytes: &[u8],
    ) -> Result<PlatformImage> {
        let platform = descriptor.as_ref().and_then(descriptor_platform);
        let named = shown_platform(name, platform.as_deref());
        let typed: ImageManifest = serde_json::from_slice(bytes)
            .map_err(|e| usage(format!("{named}: not a valid image manifest: {}", untrusted(&e.to_string()))))?;
        let config_blob =
            BlobRef::of(typed.config()).map_err(|e| usage(format!("{named}: config: {}", untrusted(&e))))?;
        let config_bytes = read_json(store, &named, "config", &config_blob.digest, Some(config_blob.size))?;
        let config: Value = serde_json::from_slice(&config_bytes).map_err(|e| {
            usage(format!("{named}: config {} is not JSON: {}", config_blob.digest, untrusted(&e.to_string())))
        })?;
        let mut layers = Vec::new();
        for desc in typed.layers() {
            let layer = BlobRef::of(desc).map_err(|e| usage(format!("{named}: layer: {}", untrusted(&e))))?;
            if !store.contains(&layer.digest, layer.size) {
                return Err(usage(format!("{named}: layer {} is not in the store", layer.digest)));
            }
            layers.push((layer.digest.clone(), store.path(&layer.digest)));
        }
        let diff_ids = config.pointer("/rootfs/diff_ids").and_then(Value::as_array).map_or(0, Vec::len);
        if diff_ids != layers.len() {
            return Err(usage(format!(
                "{named}: config {} lists {diff_ids} diff_ids for {} layers",
                config_blob.digest,
                layers.len()
            )));
        }
        let manifest = serde_json::from_slice(bytes)
            .map_err(|e| usage(format!("{named}: not JSON: {}", untrusted(&e.to_string()))))?;
        let caches = cache_dirs(&named, &config)?;
        let platform = platform.or_else(|| config_platform(&config_bytes));
        Ok(PlatformImage { descriptor, media_type, manifest, config, platform, layers, caches })
    }

    /// The config directory this platform's label names (checked).
    fn label(&self, name: &str) -> Result<String> {
        let named = shown_platform(name, self.platform.as_deref());
        let label = self.config.pointer("/config/Labels").and_then(|l| l.get(CONFIGS_LABEL)).and_then(Value::as_str);
        let Some(label) = label else {
            return Err(usage(format!("not a file-based catalog: {named} has no label {CONFIGS_LABEL}")));
        };
        image_dir(label, "/").ok_or_else(|| {
            usage(format!("{named}: label {CONFIGS_LABEL} is '{}', not a directory path", untrusted(label)))
        })
    }
}

/// The children of index `doc` to keep: image manifests that `platforms` match (all when
/// empty), attestation manifests left out; with each, its descriptor as the index lists it.
fn kept_children(name: &str, doc: &Value, platforms: &[Platform]) -> Result<Vec<(Value, BlobRef)>> {
    let listed = doc.get("manifests").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut kept = Vec::new();
    for d in listed {
        let desc: Descriptor = serde_json::from_value(d.clone()).map_err(|e| {
            usage(format!("{name}: a descriptor of the index is not valid: {}", untrusted(&e.to_string())))
        })?;
        let blob = BlobRef::of(&desc)
            .map_err(|e| usage(format!("{name}: a descriptor of the index has {}", untrusted(&e))))?;
        if desc.annotations().as_ref().is_some_and(|a| a.contains_key(REFERENCE_TYPE)) {
            continue;
        }
        if !is_manifest(&blob.media_type) {
            return Err(usage(format!(
                "{name}: {} is a {}: a catalog's index lists image manifests only",
                blob.digest,
                untrusted(&blob.media_type)
            )));
        }
        let wanted = platforms.is_empty()
            || desc.platform().as_ref().is_some_and(|p| {
                let (os, arch) = (p.os().to_string(), p.architecture().to_string());
                platforms.iter().any(|w| w.matches(&os, &arch, p.variant().as_deref()))
            });
        if wanted {
            kept.push((d.clone(), blob));
        }
    }
    if kept.is_empty() {
        return Err(usage(format!("{name}: the index has no image manifest for the platforms asked for")));
    }
    Ok(kept)
}

/// The config directory every kept platform names: they must agree.
fn agreed_label(name: &str, platforms: &[PlatformImage]) -> Result<String> {
    let first = platforms[0].label(name)?;
    for p in &platforms[1..] {
        let other = p.label(name)?;
        if other != first {
            let on = |p: &PlatformImage| untrusted(p.platform.as_deref().unwrap_or("a platform without a name"));
            return Err(usage(format!(
                "{name}: platforms disagree on the config directory: {first} on {}, {other} on {}",
                on(&platforms[0]),
                on(p)
            )));
        }
    }
    Ok(first)
}

/// The directories of a pre-built serve cache a config names: the label [`CACHE_LABEL`],
/// `--cache-dir=DIR` or `--cache-dir DIR` in `Entrypoint` or `Cmd` (relative to `WorkingDir`).
fn cache_dirs(name: &str, config: &Value) -> Result<Vec<String>> {
    let strings = |key: &str| -> Vec<String> {
        let v = config.pointer(&format!("/config/{key}")).and_then(Value::as_array);
        v.map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect()).unwrap_or_default()
    };
    let args: Vec<String> = strings("Entrypoint").into_iter().chain(strings("Cmd")).collect();
    let mut named: Vec<&str> = Vec::new();
    if let Some(label) = config.pointer("/config/Labels").and_then(|l| l.get(CACHE_LABEL)).and_then(Value::as_str) {
        named.push(label);
    }
    for (i, arg) in args.iter().enumerate() {
        if let Some(dir) = arg.strip_prefix("--cache-dir=") {
            named.push(dir);
        } else if arg == "--cache-dir" {
            named.extend(args.get(i + 1).map(String::as_str));
        }
    }
    let workdir = config.pointer("/config/WorkingDir").and_then(Value::as_str).filter(|w| !w.is_empty());
    let mut dirs = Vec::new();
    for dir in named {
        let dir = image_dir(dir, workdir.unwrap_or("/")).ok_or_else(|| {
            usage(format!("{name}: the cache directory '{}' is not a directory path", untrusted(dir)))
        })?;
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    Ok(dirs)
}

/// `path` (relative to `base` unless absolute) as `/A/B`: `None` when a component is `.`
/// or `..`, or when it names the root.
fn image_dir(path: &str, base: &str) -> Option<String> {
    let joined = if path.starts_with('/') { path.to_string() } else { format!("{base}/{path}") };
    let parts: Vec<&str> = joined.split('/').filter(|c| !c.is_empty()).collect();
    if parts.is_empty() || parts.iter().any(|c| *c == "." || *c == "..") {
        return None;
    }
    Some(format!("/{}", parts.join("/")))
}

/// `NAME (os/arch)` for messages, the platform (from the image: untrusted) escaped.
fn shown_platform(name: &str, platform: Option<&str>) -> String {
    match platform {
        Some(p) => format!("{name} ({})", untrusted(p)),
        None => name.to_string(),
    }
}

/// `os/arch[/variant]` of an index descriptor's platform.
fn descriptor_platform(descriptor: &Value) -> Option<String> {
    let desc: Descriptor = serde_json::from_value(descriptor.clone()).ok()?;
    desc.platform().as_ref().map(platform_name)
}

/// A small JSON blob (manifest, index, config) from the store, checked against its digest
/// and, when given, its size.
fn read_json(store: &BlobStore, name: &str, what: &str, digest: &Digest, size: Option<u64>) -> Result<Vec<u8>> {
    if size.is_some_and(|s| s > MAX_MANIFEST) {
        return Err(usage(format!("{name}: {what} {digest} is larger than {MAX_MANIFEST} bytes")));
    }
    let path = store.path(digest);
    if !path.is_file() {
        return Err(usage(format!("{name}: {what} {digest} is not in the store")));
    }
    let bytes = read_limited(&path, MAX_MANIFEST).map_err(|e| usage(format!("{name}: {what} {digest}: {e}")))?;
    if Digest::of(&bytes) != *digest || size.is_some_and(|s| s != bytes.len() as u64) {
        return Err(integrity(format!("{name}: {what} {digest}: the stored bytes do not match")));
    }
    Ok(bytes)
}

/// Commit a JSON document (serialized compactly, keys sorted) to the store; its media type
/// is left for the caller to fill.
fn put_json(store: &BlobStore, doc: &Value) -> Result<BlobRef> {
    let bytes = serde_json::to_vec(doc).map_err(|e| usage(format!("serializing a rebuilt document: {e}")))?;
    let digest = Digest::of(&bytes);
    store.put_bytes(&digest, &bytes)?;
    Ok(BlobRef { digest, size: bytes.len() as u64, media_type: String::new() })
}

/// `manifest` pointing at the rebuilt `config`, with `added` appended to its layers (gzip
/// layers of the kind `media_type` calls for: Docker's or OCI's).
fn rebuilt_manifest(manifest: &Value, config: &BlobRef, added: &[&layers::Built], media_type: &str) -> Value {
    let layer_type = if media_type == DOCKER_MANIFEST {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    } else {
        "application/vnd.oci.image.layer.v1.tar+gzip"
    };
    let mut manifest = manifest.clone();
    manifest["config"]["digest"] = config.digest.to_string().into();
    manifest["config"]["size"] = config.size.into();
    if let Some(list) = manifest.get_mut("layers").and_then(Value::as_array_mut) {
        for layer in added {
            let d =
                serde_json::json!({ "mediaType": layer_type, "digest": layer.digest.to_string(), "size": layer.size });
            list.push(d);
        }
    }
    manifest
}

/// What a rebuild does to a platform's config: the diff_ids of the `added` layers and a
/// history entry for each (dated the epoch: the same input gives the same bytes), the
/// label set to [`CONFIGS_DIR`] and the cache label dropped (its directory is among
/// `gone`), `Cmd` set to `serve /configs` (the entrypoint, opm, kept; without one, the
/// old `Cmd`'s program is kept in front). A config without history gets none.
fn rebuilt_config(config: &Value, added: &[&layers::Built], gone: &[String]) -> Value {
    const EPOCH: &str = "1970-01-01T00:00:00Z";
    let mut config = config.clone();
    if let Some(ids) = config.pointer_mut("/rootfs/diff_ids").and_then(Value::as_array_mut) {
        ids.extend(added.iter().map(|l| Value::from(l.diff_id.to_string())));
    }
    if let Some(history) = config.get_mut("history").and_then(Value::as_array_mut) {
        let removed = gone.join(", ");
        history.push(serde_json::json!({ "created": EPOCH, "created_by": format!("airlift: remove {removed}") }));
        history.push(serde_json::json!({ "created": EPOCH, "created_by": format!("airlift: add the filtered catalog at {CONFIGS_DIR}") }));
    }
    if !config.get("config").is_some_and(Value::is_object) {
        config["config"] = serde_json::json!({});
    }
    let run = &mut config["config"];
    let has_entrypoint = run.get("Entrypoint").and_then(Value::as_array).is_some_and(|e| !e.is_empty());
    let program = run.pointer("/Cmd/0").and_then(Value::as_str).filter(|p| *p != "serve").map(str::to_string);
    let mut cmd: Vec<Value> = match program {
        Some(program) if !has_entrypoint => vec![program.into()],
        _ => Vec::new(),
    };
    cmd.extend(["serve", CONFIGS_DIR].map(Value::from));
    run["Cmd"] = Value::Array(cmd);
    if !run.get("Labels").is_some_and(Value::is_object) {
        run["Labels"] = serde_json::json!({});
    }
    let labels = &mut run["Labels"];
    labels[CONFIGS_LABEL] = CONFIGS_DIR.into();
    if let Some(labels) = labels.as_object_mut() {
        labels.remove(CACHE_LABEL);
    }
    config
}

/// Records every blob of the rebuilt image once, as a registry source lists an image's.
struct Blobs<'a>(&'a mut Vec<BlobRef>);

impl Visitor for Blobs<'_> {
    fn visit(&mut self, node: &Node) -> Result<()> {
        self.0.push(node.blob.clone());
        Ok(())
    }
}
