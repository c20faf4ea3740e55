//! Images from registries (`docker://…`), resolved into the same shape as a layout's
//! ([`ResolvedImage`]) with every blob in a local cache.
//!
//! Tags are resolved to digests once, when the top-level manifest is fetched; everything
//! below it is fetched by digest. Manifests, indexes and blobs all go into the cache (a
//! [`BlobStore`] at `--cache`), each committed only after its digest and size matched, so
//! a pack killed at any point and run again fetches only what is not committed yet.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use oci_spec::image::Descriptor;

use crate::client::{Client, Options, Stats};
use crate::digest::Digest;
use crate::error::{integrity, usage, Error, Result};
use crate::oci::layout::{config_platform, read_limited, BlobRef, ResolvedImage};
use crate::oci::names::{with_transport, ImageRef, Reference};
use crate::oci::walk::{walk, Doc, Invalid, Manifests, Node, Role, Visitor};
use crate::oci::{is_manifest, MAX_MANIFEST};
use crate::progress::Progress;
use crate::store::BlobStore;
use crate::workers;
use crate::workers::lock;

/// `--platform OS/ARCH[/VARIANT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => {
                Ok(Platform { os: os.to_string(), architecture: arch.to_string(), variant: None })
            }
            [os, arch, var] if ok(os) && ok(arch) && ok(var) => {
                Ok(Platform { os: os.to_string(), architecture: arch.to_string(), variant: Some(var.to_string()) })
            }
            _ => Err(usage(format!("--platform {s}: expected OS/ARCH or OS/ARCH/VARIANT, e.g. linux/amd64"))),
        }
    }

    /// Whether a manifest for `os/arch[/variant]` is wanted: OS and architecture must be
    /// equal, and the variant too when this platform names one.
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.architecture == architecture
            && self.variant.as_deref().map_or(true, |v| Some(v) == variant)
    }
}

/// Where the cache lives by default: `$XDG_CACHE_HOME/airlift`, else `~/.cache/airlift`.
pub fn default_cache_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(d).join("airlift"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".cache").join("airlift")),
        None => Err(usage("no HOME or XDG_CACHE_HOME to put the blob cache under: give --cache DIR")),
    }
}

/// How the blobs of a pack were obtained.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct FetchReport {
    /// Distinct blobs the registry images need (manifests included).
    pub blobs: u64,
    /// Of those, already in the cache before this run.
    pub cached: u64,
    /// Fetched (and committed to the cache) by this run.
    pub fetched: u64,
    /// Size of the blobs fetched by this run.
    pub bytes: u64,
    /// Blob bytes received over the network by this run (a blob fetched again after a
    /// digest mismatch counts twice; a resumed one does not).
    pub received: u64,
    /// HTTP requests and retries of this run (token requests and pings included).
    pub requests: u64,
    pub retries: u64,
}

pub struct RegistrySource {
    client: Client,
    cache: BlobStore,
    platforms: Vec<Platform>,
    parallel: usize,
    /// Blobs (manifests included) committed to the cache by this run, and their bytes.
    fetched: Mutex<(HashSet<Digest>, u64)>,
}

impl RegistrySource {
    pub fn new(
        options: Options,
        cache_dir: &Path,
        platforms: Vec<Platform>,
        parallel: usize,
    ) -> Result<RegistrySource> {
        let cache = BlobStore::create(cache_dir)?;
        cache.purge_stale_temps()?;
        Ok(RegistrySource {
            client: Client::new(options)?,
            cache,
            platforms,
            parallel: parallel.max(1),
            fetched: Mutex::new((HashSet::new(), 0)),
        })
    }

    pub fn cache(&self) -> &BlobStore {
        &self.cache
    }

    pub fn stats(&self) -> Stats {
        self.client.stats()
    }

    /// Resolve an image: its manifests (fetched into the cache now, the top-level one by
    /// tag, the rest by digest) and the list of every blob it needs, manifests first.
    pub fn resolve(&self, image: &ImageRef) -> Result<ResolvedImage> {
        let top = self.client.manifest(image, &image.reference())?;
        self.put(&top.digest, &top.bytes)?;
        let top_ref = BlobRef { digest: top.digest.clone(), size: top.bytes.len() as u64, media_type: top.media_type };
        let mut resolved = ResolvedImage {
            reference: image.tag.as_ref().map(|t| t.to_string()),
            digest: top_ref.digest.clone(),
            media_type: top_ref.media_type.clone(),
            size: top_ref.size,
            platforms: Vec::new(),
            blobs: Vec::new(),
        };
        let remote = Remote { source: self, image, top: &top.bytes };
        walk(&remote, &top_ref, &mut Resolver { remote: &remote, resolved: &mut resolved })?;
        Ok(resolved)
    }

    /// Whether `image`'s repository holds a manifest under `reference` (a tag such as a
    /// cosign `sha256-HEX.sig`).
    pub fn has_manifest(&self, image: &ImageRef, reference: &Reference) -> Result<bool> {
        self.client.has_manifest(image, reference)
    }

    /// The digests of the OCI 1.1 referrers of `subject` in `image`'s repository, or
    /// `None` when the registry has no referrers API.
    pub fn referrers(&self, image: &ImageRef, subject: &Digest) -> Result<Option<Vec<Digest>>> {
        let Some(body) = self.client.referrers(image, subject)? else {
            return Ok(None);
        };
        let index: oci_spec::image::ImageIndex = serde_json::from_slice(&body)
            .map_err(|e| usage(format!("{image}: the referrers of {subject} are not a valid image index: {e}")))?;
        let digests = index.manifests().iter().map(|d| d.digest().to_string().parse::<Digest>());
        let digests = digests.collect::<std::result::Result<Vec<_>, _>>();
        digests.map(Some).map_err(|e| usage(format!("{image}: a referrer of {subject} has a bad digest: {e}")))
    }

    /// Whether an index's child is wanted by `--platform` (every one without it; an
    /// index always, and an artifact, as a referrers index lists: it has no platform).
    fn wanted(&self, child: &Descriptor) -> bool {
        if self.platforms.is_empty() || !is_manifest(child.media_type().as_ref()) {
            return true;
        }
        if child.platform().is_none() && child.artifact_type().is_some() {
            return true;
        }
        child.platform().as_ref().is_some_and(|p| {
            self.platforms
                .iter()
                .any(|w| w.matches(&p.os().to_string(), &p.architecture().to_string(), p.variant().as_deref()))
        })
    }

    /// A child manifest by digest: from the cache when committed there, else fetched
    /// (its digest checked by the client, its size here) and committed.
    fn child_manifest(&self, image: &ImageRef, child: &BlobRef) -> Result<Vec<u8>> {
        if child.size > MAX_MANIFEST {
            return Err(usage(format!(
                "{image}: manifest {} is {} bytes, larger than airlift reads for a manifest",
                child.digest, child.size
            )));
        }
        if self.cache.contains(&child.digest, child.size) {
            return read_limited(&self.cache.path(&child.digest), MAX_MANIFEST);
        }
        let m = self.client.manifest(image, &Reference::Digest(child.digest.clone()))?;
        if m.bytes.len() as u64 != child.size {
            return Err(integrity(format!(
                "{image}: manifest {} is {} bytes, its descriptor says {}",
                child.digest,
                m.bytes.len(),
                child.size
            )));
        }
        self.put(&child.digest, &m.bytes)?;
        Ok(m.bytes)
    }

    fn config_platform(&self, config: &BlobRef) -> Option<String> {
        config_platform(&read_limited(&self.cache.path(&config.digest), MAX_MANIFEST).ok()?)
    }

    /// Commit verified bytes into the cache under their digest.
    fn put(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        if self.cache.put_bytes(digest, bytes)? {
            self.fetched_now(&BlobRef { digest: digest.clone(), size: bytes.len() as u64, media_type: String::new() });
        }
        Ok(())
    }

    fn fetched_now(&self, blob: &BlobRef) {
        let mut f = lock(&self.fetched);
        if f.0.insert(blob.digest.clone()) {
            f.1 += blob.size;
        }
    }

    /// Resolve several images at once, `parallel` at a time; results in the given order.
    pub fn resolve_all(&self, images: &[ImageRef]) -> Result<Vec<ResolvedImage>> {
        let slots: Vec<Mutex<Option<ResolvedImage>>> = images.iter().map(|_| Mutex::new(None)).collect();
        workers::run(
            self.parallel,
            images.len(),
            || Ok(()),
            |_, i| {
                let resolved = self.resolve(&images[i])?;
                *lock(&slots[i]) = Some(resolved);
                Ok(())
            },
        )?;
        Ok(slots.into_iter().filter_map(|s| s.into_inner().unwrap_or_else(|p| p.into_inner())).collect())
    }

    /// Fetch every blob not yet in the cache, each once, in the order given, with
    /// `parallel` workers; `arrivals` learns of each blob as it lands in the cache (and
    /// of those already there at once), and can stop the fetch.
    pub fn fetch(
        &self,
        wanted: &[(ImageRef, BlobRef)],
        progress: &dyn Progress,
        arrivals: &Arrivals,
    ) -> Result<FetchReport> {
        let result = self.fetch_into_cache(wanted, progress, arrivals);
        arrivals.end();
        result
    }

    /// [`fetch`](RegistrySource::fetch) without progress or a waiting writer: the few
    /// blobs pack reads before it writes (a release payload's layers, a catalog image,
    /// signatures).
    pub fn fetch_now(&self, wanted: &[(ImageRef, BlobRef)]) -> Result<FetchReport> {
        self.fetch(wanted, &crate::progress::Silent, &Arrivals::new(wanted.iter().map(|(_, b)| b.digest.clone())))
    }

    fn fetch_into_cache(
        &self,
        wanted: &[(ImageRef, BlobRef)],
        progress: &dyn Progress,
        arrivals: &Arrivals,
    ) -> Result<FetchReport> {
        let mut seen = HashSet::new();
        let mut report = FetchReport::default();
        let mut todo = Vec::new();
        for (image, blob) in wanted {
            if !seen.insert(blob.digest.clone()) {
                continue;
            }
            report.blobs += 1;
            if self.cache.contains(&blob.digest, blob.size) {
                arrivals.arrived(&blob.digest, false);
            } else {
                todo.push((image, blob));
            }
        }
        progress.start("fetch", todo.iter().map(|(_, b)| b.size).sum());
        let result = workers::run(
            self.parallel,
            todo.len(),
            || self.client.fork(),
            |client, i| {
                if arrivals.cancelled() {
                    return Err(usage("the fetch was stopped"));
                }
                let (image, blob) = todo[i];
                client.fetch_blob(image, blob, &self.cache, progress)?;
                self.fetched_now(blob);
                arrivals.arrived(&blob.digest, true);
                Ok(())
            },
        );
        progress.finish();
        result?;
        let stats = self.client.stats();
        let (fetched, bytes) = {
            let f = lock(&self.fetched);
            (f.0.len() as u64, f.1)
        };
        report.fetched = fetched;
        report.cached = report.blobs.saturating_sub(fetched);
        report.bytes = bytes;
        report.received = stats.bytes;
        report.requests = stats.requests;
        report.retries = stats.retries;
        Ok(report)
    }
}

/// One image's manifests as a registry serves them: the top one already fetched, the
/// others by digest through the cache.
struct Remote<'a> {
    source: &'a RegistrySource,
    image: &'a ImageRef,
    top: &'a [u8],
}

impl Manifests for Remote<'_> {
    fn manifest(&self, blob: &BlobRef, role: Role) -> Result<Option<Vec<u8>>> {
        match role {
            Role::Top => Ok(Some(self.top.to_vec())),
            _ => self.source.child_manifest(self.image, blob).map(Some),
        }
    }

    fn invalid(&self, blob: &BlobRef, problem: Invalid) -> Error {
        invalid_in(self.image, blob, problem)
    }
}

/// The error for a document of `image` (from a registry) that is not what its descriptor says.
pub fn invalid_in(image: &ImageRef, blob: &BlobRef, problem: Invalid) -> Error {
    match problem {
        Invalid::Index(e) => usage(format!("{image}: index {} is not a valid image index: {e}", blob.digest)),
        Invalid::Manifest(e) => usage(format!("{image}: manifest {} is not a valid image manifest: {e}", blob.digest)),
        Invalid::Descriptor(e) => usage(format!("{image}: a descriptor has {e}")),
    }
}

/// Records every blob of an image, each once, manifests first, following only the
/// children `--platform` wants, and the platforms kept.
struct Resolver<'a> {
    remote: &'a Remote<'a>,
    resolved: &'a mut ResolvedImage,
}

impl Visitor for Resolver<'_> {
    fn enter(&mut self, parent: &Node, _: &BlobRef, desc: &Descriptor) -> Result<bool> {
        if !matches!(parent.doc, Doc::Index(_)) {
            return Ok(true);
        }
        if !self.remote.source.wanted(desc) {
            return Ok(false);
        }
        if let Some(p) = desc.platform() {
            crate::oci::add_platform(&mut self.resolved.platforms, p);
        }
        Ok(true)
    }

    fn visit(&mut self, node: &Node) -> Result<()> {
        self.resolved.blobs.push(node.blob.clone());
        let (source, image) = (self.remote.source, self.remote.image);
        match node.doc {
            Doc::Index(index) if node.role == Role::Top => {
                if source.platforms.is_empty() || index.manifests().iter().any(|c| source.wanted(c)) {
                    return Ok(());
                }
                let offered: Vec<String> = index
                    .manifests()
                    .iter()
                    .filter_map(|c| c.platform().as_ref().map(|p| format!("{}/{}", p.os(), p.architecture())))
                    .collect();
                Err(usage(format!(
                    "{image}: no manifest for the platforms asked for (--platform); the index has {}",
                    if offered.is_empty() { "none with a platform".to_string() } else { offered.join(", ") }
                )))
            }
            Doc::Manifest(m) if node.role == Role::Top => {
                // A single-platform image: its platform is in the config, needed now.
                let config =
                    BlobRef::of(m.config()).map_err(|e| self.remote.invalid(node.blob, Invalid::Descriptor(e)))?;
                if !source.cache.contains(&config.digest, config.size) {
                    source.client.fetch_blob(image, &config, &source.cache, &crate::progress::Silent)?;
                    source.fetched_now(&config);
                }
                if let Some(p) = source.config_platform(&config) {
                    self.resolved.platforms.push(p);
                }
                Ok(())
            }
            Doc::Schema1 => Err(usage(format!(
                "{image}: {} is a Docker schema1 manifest, which airlift does not carry",
                node.blob.digest
            ))),
            Doc::Blob if matches!(node.role, Role::Top | Role::Child) => Err(usage(format!(
                "{image}: {} has media type {}, which is neither a manifest nor an index",
                node.blob.digest, node.blob.media_type
            ))),
            Doc::Index(_) | Doc::Manifest(_) | Doc::Blob | Doc::Absent => Ok(()),
        }
    }
}

/// The blobs a running fetch has put in the cache so far, for a writer that must not
/// read a blob before it is there (and that can tell the fetch to stop).
pub struct Arrivals {
    state: Mutex<ArrivalState>,
    changed: Condvar,
}

/// Where a blob stands, as [`Arrivals::wait`] tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// In the cache from before this run, or not a blob the fetch concerns.
    Present,
    /// Fetched into the cache by this run, its digest checked on the way.
    Fetched,
    /// The fetch ended without it.
    Missing,
}

struct ArrivalState {
    /// Blobs the fetch concerns that are not in the cache yet.
    pending: HashSet<Digest>,
    /// Blobs this run fetched.
    fetched: HashSet<Digest>,
    /// The fetch is over (done or failed).
    ended: bool,
    cancelled: bool,
}

impl Arrivals {
    /// Expect the blobs `pending`.
    pub fn new(pending: impl IntoIterator<Item = Digest>) -> Arrivals {
        let state = ArrivalState {
            pending: pending.into_iter().collect(),
            fetched: HashSet::new(),
            ended: false,
            cancelled: false,
        };
        Arrivals { state: Mutex::new(state), changed: Condvar::new() }
    }

    fn arrived(&self, digest: &Digest, fetched: bool) {
        let mut state = lock(&self.state);
        state.pending.remove(digest);
        if fetched {
            state.fetched.insert(digest.clone());
        }
        drop(state);
        self.changed.notify_all();
    }

    fn end(&self) {
        lock(&self.state).ended = true;
        self.changed.notify_all();
    }

    /// Wait until blob `digest` is in the cache (at once when the fetch does not concern
    /// it), or the fetch ended without it.
    pub fn wait(&self, digest: &Digest) -> Arrival {
        let mut state = lock(&self.state);
        loop {
            if state.fetched.contains(digest) {
                return Arrival::Fetched;
            }
            if !state.pending.contains(digest) {
                return Arrival::Present;
            }
            if state.ended {
                return Arrival::Missing;
            }
            state = self.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Ask the fetch to stop: no new blob is started.
    pub fn cancel(&self) {
        lock(&self.state).cancelled = true;
    }

    fn cancelled(&self) -> bool {
        lock(&self.state).cancelled
    }
}

/// The references of an `--images` file: one a line, `#` starts a comment; a line
/// without a transport is a `docker://` reference.
pub fn read_images_file(path: &Path) -> Result<Vec<String>> {
    let bytes = read_limited(path, 16 << 20)?;
    let text = String::from_utf8(bytes).map_err(|_| usage(format!("--images {}: not UTF-8 text", path.display())))?;
    Ok(parse_images_list(&text))
}

pub fn parse_images_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(with_transport)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm64").unwrap();
        assert!(p.matches("linux", "arm64", None) && p.matches("linux", "arm64", Some("v8")));
        assert!(!p.matches("linux", "amd64", None));
        let v = Platform::parse("linux/arm/v7").unwrap();
        assert!(v.matches("linux", "arm", Some("v7")) && !v.matches("linux", "arm", Some("v6")));
        assert!(!v.matches("linux", "arm", None));
        for bad in ["linux", "linux/", "/amd64", "linux/amd64/v1/x", "linux/amd 64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn images_lists() {
        let text =
            "# mirror list\nquay.io/ns/app:1.0\n\n  docker://nginx   # the web server\noci:/srv/l:x\n#docker://skip\n";
        assert_eq!(parse_images_list(text), ["docker://quay.io/ns/app:1.0", "docker://nginx", "oci:/srv/l:x"]);
    }
}
