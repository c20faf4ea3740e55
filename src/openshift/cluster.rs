//! What a cluster needs to pull a bundle's `docker://` images from the mirror they were
//! unpacked into: the mirror sets and install-config snippet, the operator catalogs'
//! resources ([`operators`](crate::openshift::operators)), the UpdateService of a bundle
//! carrying the graph-data image ([`graphdata`]), the release signatures,
//! the release tags (`--release-tags`) and a merged pull secret (`--merge-pull-secret`),
//! written into one results directory. The mirror itself (a registry root, a registry
//! pushed to) is the caller's, seen through [`Mirror`].

use std::path::{Path, PathBuf};

use crate::bundle::manifest::{Catalog, Image, Release, SignatureState};
use crate::bundle::names;
use crate::error::Result;
use crate::oci::names::ImageRef;
use crate::openshift::operators::{self, MirroredCatalog};
use crate::openshift::{graphdata, mappings, mirrorsets, object_name, ReleaseTag};
use crate::sigstore::cluster_image_policy;

/// The ClusterImagePolicy's file in the results directory (`--image-policy`).
pub const IMAGE_POLICY_FILE: &str = "clusterimagepolicy.yaml";

/// A registry a bundle's images were mirrored into.
pub trait Mirror {
    /// `HOST[:PORT]`, as the cluster reaches it.
    fn host(&self) -> String;
    /// The repository `image` was mirrored to.
    fn repository(&self, image: &Image) -> Result<String>;
    /// Where the bundle's included files (release signatures among them) were written.
    fn files_dir(&self) -> PathBuf;
    /// Where results go when no directory is given (a bundle's go into `DIR/NAME`).
    fn results_dir(&self) -> PathBuf;
    /// Point `repository:tag` at `image`, already in the mirror.
    fn tag(&self, image: &Image, repository: &str, tag: &str) -> Result<()>;
    /// The user and password a pull secret gives for this mirror.
    fn credentials(&self) -> Result<(String, String)>;
}

/// What to write for one unpack.
pub struct Request<'a> {
    /// The bundle's name (the objects are named after it).
    pub name: &'a str,
    /// Every image of the bundle.
    pub images: &'a [Image],
    /// The images now complete in the mirror.
    pub complete: &'a [usize],
    pub releases: &'a [Release],
    pub catalogs: &'a [Catalog],
    /// The release tags to set, per release (empty without `--release-tags`).
    pub release_tags: &'a [Vec<ReleaseTag>],
    /// `--results DIR`.
    pub dir: Option<&'a Path>,
    /// `--merge-pull-secret FILE`.
    pub merge_pull_secret: Option<&'a Path>,
    /// `--image-policy KEY`: the PEM public key signed images must verify with.
    pub image_policy: Option<&'a [u8]>,
}

/// What was written.
pub struct Results {
    pub dir: PathBuf,
    pub written: mirrorsets::Written,
    pub pull_secret: Option<PathBuf>,
    /// Release component tags set.
    pub tagged: usize,
    /// The releases whose image is complete.
    pub releases: Vec<Release>,
}

/// Write the results for the complete images; `None` when none of them came from a
/// registry (OCI-layout images have nothing a cluster would pull from).
pub fn write(mirror: &dyn Mirror, request: &Request) -> Result<Option<Results>> {
    let images: Vec<Image> = request.complete.iter().map(|&i| request.images[i].clone()).collect();
    let mappings = mappings(&images, &mirror.host(), &|i| mirror.repository(i))?;
    if mappings.is_empty() {
        return Ok(None);
    }
    let dir = request.dir.map(Path::to_path_buf).unwrap_or_else(|| mirror.results_dir().join(request.name));
    let complete_release = |r: &Release| images.iter().any(|i| i.digest == r.digest);
    let mut signatures = Vec::new();
    for release in request.releases.iter().filter(|r| complete_release(r)) {
        for entry in &release.signatures {
            let file = mirror.files_dir().join(entry.trim_start_matches(names::FILES_PREFIX));
            let bytes = std::fs::read(&file).map_err(|e| crate::error::Error::io(&file, e))?;
            signatures.push(mirrorsets::Signature { release: release.digest.clone(), bytes });
        }
    }
    let mut written = mirrorsets::write_results(&dir, &object_name(request.name), &mappings, &signatures)?;
    written.files.extend(operators::write_catalogs(&dir, &mirrored_catalogs(mirror, request.catalogs, &images)?)?);
    if let Some(graph) = images.iter().find(|i| i.source == graphdata::GRAPH_IMAGE_SOURCE) {
        let host = mirror.host();
        let release = request.releases.iter().find_map(|r| images.iter().find(|i| i.digest == r.digest));
        let releases = match release {
            Some(image) => mirror.repository(image)?,
            None => graphdata::DEFAULT_RELEASE_REPOSITORY.to_string(),
        };
        let image = format!("{host}/{}@{}", mirror.repository(graph)?, graph.digest);
        let name = object_name(request.name);
        written.files.push(graphdata::write_update_service(&dir, &name, &format!("{host}/{releases}"), &image)?);
    }
    if let Some(key) = request.image_policy {
        written.files.extend(write_image_policy(&dir, request.name, &images, key)?);
    }

    let mut tagged = 0;
    for (release, tags) in request.releases.iter().zip(request.release_tags) {
        if complete_release(release) {
            for t in tags {
                mirror.tag(&request.images[t.image], &t.repository, &t.tag)?;
                tagged += 1;
            }
        }
    }

    let mut pull_secret = None;
    if let Some(file) = request.merge_pull_secret {
        let existing = crate::oci::layout::read_limited(file, 1 << 20)?;
        let (user, password) = mirror.credentials()?;
        let merged = mirrorsets::merge_pull_secret(&existing, &mirror.host(), &user, &password)?;
        let path = dir.join("pull-secret.json");
        crate::store::write_private(&path, &merged)?;
        pull_secret = Some(path);
    }
    let releases = request.releases.iter().filter(|r| complete_release(r)).cloned().collect();
    Ok(Some(Results { dir, written, pull_secret, tagged, releases }))
}

/// The ClusterImagePolicy requiring a cosign signature by `key_pem` for every source
/// repository of a signed image among `images` (a cluster checks the reference it pulls,
/// the source's, redirected to the mirror); nothing when none is signed.
fn write_image_policy(dir: &Path, name: &str, images: &[Image], key_pem: &[u8]) -> Result<Option<(String, PathBuf)>> {
    let mut scopes: Vec<String> = images
        .iter()
        .filter(|i| i.signature == Some(SignatureState::Signed))
        .filter_map(|i| ImageRef::parse(&i.source).ok())
        .map(|r| format!("{}/{}", r.registry, r.repository.as_str()))
        .collect();
    scopes.sort();
    scopes.dedup();
    if scopes.is_empty() {
        return Ok(None);
    }
    let policy = cluster_image_policy(&object_name(name), &scopes, key_pem);
    operators::write(dir, "ClusterImagePolicy", IMAGE_POLICY_FILE, &policy).map(Some)
}

/// The catalogs whose image (rebuilt, or carried unchanged) is among the complete
/// `images`, with where the cluster pulls it: the mirror's repository, by digest.
fn mirrored_catalogs<'c>(
    mirror: &dyn Mirror,
    catalogs: &'c [Catalog],
    images: &[Image],
) -> Result<Vec<MirroredCatalog<'c>>> {
    let mut mirrored = Vec::new();
    for catalog in catalogs {
        let carried = catalog.rebuilt.as_ref().unwrap_or(&catalog.digest);
        if let Some(image) = images.iter().find(|i| i.digest == *carried) {
            mirrored.push(MirroredCatalog {
                target: &catalog.target,
                image: format!("{}/{}@{}", mirror.host(), mirror.repository(image)?, image.digest),
                template: catalog.template.as_ref(),
            });
        }
    }
    Ok(mirrored)
}

impl Results {
    /// The results as the `--json` document reports them.
    pub fn document(&self) -> serde_json::Value {
        serde_json::json!({
            "dir": self.dir,
            "files": self.written.files.iter().map(|(what, path)| serde_json::json!({"kind": what, "path": path})).collect::<Vec<_>>(),
            "pull_secret": self.pull_secret,
            "release_tags": self.tagged,
            "releases": self.releases.iter().map(|r| serde_json::json!({
                "version": r.version, "digest": r.digest, "components": r.components.len(),
                "signatures": r.signatures.len(),
            })).collect::<Vec<_>>(),
        })
    }
}
