//! Where `unpack` writes, as one [`Target`] the bundle reader feeds: an OCI image layout
//! ([`Layout`]), a root of airlift's registry, installed on first use ([`Root`]), or a
//! registry over the network ([`Push`], `--to`). Blobs are verified into the target's
//! store; once an image is whole, [`Target::publish`] makes it visible there.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Value};

use crate::bundle::manifest::{Image, Omitted};
use crate::bundle::reader::Bundle;
use crate::client::Client;
use crate::digest::Digest;
use crate::error::{usage, Result};
use crate::oci::names::{Reference, Repository, Tag};
use crate::oci::{IndexEntry, Moved};
use crate::openshift::cluster::Mirror;
use crate::openshift::ReleaseTag;
use crate::registry::config::{self, Config};
use crate::registry::install::{self, InstallOptions, Installed};
use crate::registry::storage::Storage;
use crate::store::BlobStore;
use crate::trip::mirror;
use crate::trip::publish::{self, Journal, PushOptions, PushReport};
use crate::workers::lock;

/// Where an unpack writes.
pub trait Target {
    /// Where verified blobs are committed.
    fn store(&self) -> &BlobStore;
    /// Where included files go.
    fn files_dir(&self) -> PathBuf;
    /// The target as reports name it: a layout's path, a registry's URL.
    fn describe(&self) -> String;
    /// The tag `image` sets here, as the rollback record names it.
    fn claim(&self, image: &Image) -> Result<Option<String>>;
    /// A release tag as the rollback record names it (a layout has none).
    fn release_claim(&self, tag: &ReleaseTag) -> Option<String>;
    /// A registry the images are mirrored into (cluster results, release tags); none
    /// for a layout.
    fn mirror(&self) -> Option<&dyn Mirror>;
    /// Make the complete images (indexes into the bundle's images) visible.
    fn publish(&self, bundle: &Bundle, complete: &[usize]) -> Result<Published>;
    /// The key and value of this target's section of unpack's JSON document (none for a
    /// layout).
    fn document(&self, bundle: &Bundle, published: &Published) -> Option<(&'static str, Value)>;

    /// The target is on another host, so its rollback record (on this one) is not
    /// where what it serves is.
    fn record_elsewhere(&self) -> bool {
        false
    }

    /// Whether the target holds `blob`, which `image` needs and a differential bundle
    /// does not carry: in its store (a layout, a registry root).
    fn holds(&self, _image: &Image, blob: &Omitted) -> Result<bool> {
        Ok(self.store().contains(&blob.digest, blob.size))
    }
}

/// What [`Target::publish`] did.
#[derive(Default)]
pub struct Published {
    /// Each image made visible in a registry (its index in the bundle) and the
    /// reference it is pulled by.
    pub references: Vec<(usize, String)>,
    /// Refs or tags that now point at another image.
    pub moved: Vec<Moved>,
    /// What a push did (`--to` only).
    pub pushed: Option<PushReport>,
}

impl Published {
    /// The images made visible, as the JSON document lists them.
    fn images(&self, bundle: &Bundle) -> Value {
        let images = self.references.iter().map(|(i, reference)| {
            let image = &bundle.manifest.images[*i];
            json!({ "source": image.source, "digest": image.digest, "reference": reference })
        });
        Value::Array(images.collect())
    }
}

/// An OCI image layout: `index.json` lists the complete images.
pub struct Layout(BlobStore);

impl Layout {
    pub fn create(dir: &Path) -> Result<Layout> {
        Ok(Layout(BlobStore::create(dir)?))
    }
}

impl Target for Layout {
    fn store(&self) -> &BlobStore {
        &self.0
    }
    fn files_dir(&self) -> PathBuf {
        self.0.root().join("files")
    }
    fn describe(&self) -> String {
        self.0.root().display().to_string()
    }
    fn claim(&self, image: &Image) -> Result<Option<String>> {
        Ok(image.reference.clone())
    }
    fn release_claim(&self, _: &ReleaseTag) -> Option<String> {
        None
    }
    fn mirror(&self) -> Option<&dyn Mirror> {
        None
    }
    fn publish(&self, bundle: &Bundle, complete: &[usize]) -> Result<Published> {
        if complete.is_empty() {
            return Ok(Published::default());
        }
        let entries: Vec<IndexEntry> =
            complete.iter().map(|&i| crate::trip::index_entry(&bundle.manifest.images[i])).collect();
        let moved = crate::oci::update_index(&self.0.root().join("index.json"), &entries)?;
        Ok(Published { moved, ..Published::default() })
    }
    fn document(&self, _: &Bundle, _: &Published) -> Option<(&'static str, Value)> {
        None
    }
}

/// A root of airlift's own registry: blobs go straight into its storage.
pub struct Root {
    root: PathBuf,
    config: Config,
    storage: Storage,
    prefix: Option<String>,
    authfile: Option<PathBuf>,
    /// The install report, when this run installed the registry.
    installed: Option<serde_json::Value>,
}

impl Root {
    /// Open the registry root, installing it first (CA, certificate, credentials,
    /// config, unit) when it is not one yet; `report` presents the installation and
    /// returns its JSON report.
    pub fn open(
        root: &Path,
        hostname: Option<String>,
        start: bool,
        prefix: Option<String>,
        authfile: Option<PathBuf>,
        report: impl FnOnce(&Installed) -> serde_json::Value,
    ) -> Result<Root> {
        let installed = if config::installed(root) {
            None
        } else {
            let opts = InstallOptions { hostname, start, ..InstallOptions::default() };
            Some(report(&install::install(root, &opts)?))
        };
        let config = Config::load(root)?;
        let storage = Storage::open(&config.storage_dir(root))?;
        Ok(Root { root: root.to_path_buf(), config, storage, prefix, authfile, installed })
    }

    /// The manifest `repository:tag` points at, if any.
    fn tag_target(&self, repository: &str, tag: &str) -> Option<Digest> {
        let repo = Repository::parse(repository)?;
        let tag = Tag::parse(tag)?;
        self.storage.resolve(&repo, &Reference::Tag(tag)).ok().map(|s| s.digest)
    }
}

impl Target for Root {
    fn store(&self) -> &BlobStore {
        self.storage.blobs()
    }
    fn files_dir(&self) -> PathBuf {
        self.root.join("files")
    }
    fn describe(&self) -> String {
        self.config.url()
    }
    fn claim(&self, image: &Image) -> Result<Option<String>> {
        let t = mirror::target(image, self.prefix.as_deref())?;
        Ok(Some(format!("{}:{}", t.repository, t.tag)))
    }
    fn release_claim(&self, tag: &ReleaseTag) -> Option<String> {
        Some(format!("{}:{}", tag.repository, tag.tag))
    }
    fn mirror(&self) -> Option<&dyn Mirror> {
        Some(self)
    }
    fn publish(&self, bundle: &Bundle, complete: &[usize]) -> Result<Published> {
        let mut published = Published::default();
        for &i in complete {
            let image = &bundle.manifest.images[i];
            let target = mirror::target(image, self.prefix.as_deref())?;
            if let Some(from) = self.tag_target(&target.repository, &target.tag).filter(|d| *d != image.digest) {
                let reference = format!("{}:{}", target.repository, target.tag);
                published.moved.push(Moved { reference, from: from.to_string(), to: image.digest.to_string() });
            }
            mirror::register(&self.storage, image, &target)?;
            published.references.push((i, target.reference(&self.host(), &image.digest)));
        }
        Ok(published)
    }
    fn document(&self, bundle: &Bundle, published: &Published) -> Option<(&'static str, Value)> {
        let images = published.images(bundle);
        Some(("registry", json!({ "url": self.config.url(), "images": images, "installed": self.installed })))
    }
}

impl Mirror for Root {
    fn host(&self) -> String {
        format!("{}:{}", self.config.hostname, self.config.port)
    }
    fn repository(&self, image: &Image) -> Result<String> {
        Ok(mirror::target(image, self.prefix.as_deref())?.repository)
    }
    fn files_dir(&self) -> PathBuf {
        Target::files_dir(self)
    }
    fn results_dir(&self) -> PathBuf {
        self.root.join("results")
    }
    fn tag(&self, image: &Image, repository: &str, tag: &str) -> Result<()> {
        self.storage.tag(repository, tag, &image.digest)
    }
    /// Those of the registry this run installed, else from the credential files.
    fn credentials(&self) -> Result<(String, String)> {
        if let Some(doc) = &self.installed {
            if let (Some(u), Some(p)) = (doc["user"].as_str(), doc["password"].as_str()) {
                return Ok((u.to_string(), p.to_string()));
            }
        }
        stored_credentials(self.authfile.as_deref(), &self.host())
    }
}

/// An existing registry over the network: blobs are verified into a staging store (one
/// copy on this host), then pushed from it.
pub struct Push {
    staging: BlobStore,
    to: publish::Destination,
    client: Client,
    options: PushOptions,
    authfile: Option<PathBuf>,
    /// (repository, blob) → whether the registry holds it, as [`Target::holds`] found.
    held: Mutex<HashMap<(String, Digest), bool>>,
}

impl Push {
    pub fn open(
        staging: &Path,
        to: publish::Destination,
        client: Client,
        options: PushOptions,
        authfile: Option<PathBuf>,
    ) -> Result<Push> {
        let staging = BlobStore::create(staging)?.read_back_soon();
        Ok(Push { staging, to, client, options, authfile, held: Mutex::new(HashMap::new()) })
    }
}

impl Target for Push {
    fn store(&self) -> &BlobStore {
        &self.staging
    }
    fn record_elsewhere(&self) -> bool {
        true
    }
    /// The image's repository has the blob (`HEAD`), or it is mounted there from the
    /// repository the base names.
    fn holds(&self, image: &Image, blob: &Omitted) -> Result<bool> {
        let repository = mirror::target(image, self.to.prefix.as_deref())?.repository;
        let key = (repository, blob.digest.clone());
        if let Some(&known) = lock(&self.held).get(&key) {
            return Ok(known);
        }
        let target = self.to.repository(&key.0)?;
        let held = self.client.blob_exists(&target, &blob.digest)?
            || match blob.repository.as_deref().filter(|from| *from != key.0) {
                Some(from) => self.client.mount_blob(&target, &blob.digest, from)?,
                None => false,
            };
        lock(&self.held).insert(key, held);
        Ok(held)
    }
    fn files_dir(&self) -> PathBuf {
        self.staging.root().join("files")
    }
    fn describe(&self) -> String {
        self.to.to_string()
    }
    fn claim(&self, image: &Image) -> Result<Option<String>> {
        let t = mirror::target(image, self.to.prefix.as_deref())?;
        Ok(Some(format!("{}/{}:{}", self.to.registry, t.repository, t.tag)))
    }
    fn release_claim(&self, tag: &ReleaseTag) -> Option<String> {
        Some(format!("{}/{}:{}", self.to.registry, tag.repository, tag.tag))
    }
    fn mirror(&self) -> Option<&dyn Mirror> {
        Some(self)
    }
    fn publish(&self, bundle: &Bundle, complete: &[usize]) -> Result<Published> {
        let journal = Journal::open(&self.staging, &bundle.manifest.id, &self.to)?;
        let images: Vec<&Image> = complete.iter().map(|&i| &bundle.manifest.images[i]).collect();
        let omitted = bundle.manifest.omitted.iter().map(|o| &o.digest).collect();
        let (references, report) =
            publish::push_images(&self.client, &self.staging, &images, &self.to, self.options, &journal, &omitted)?;
        Ok(Published {
            references: complete.iter().copied().zip(references).collect(),
            moved: Vec::new(),
            pushed: Some(report),
        })
    }
    fn document(&self, bundle: &Bundle, published: &Published) -> Option<(&'static str, Value)> {
        let mut doc =
            json!({ "registry": self.to.registry, "prefix": self.to.prefix, "images": published.images(bundle) });
        if let Some(Value::Object(counts)) = published.pushed.map(|p| json!(p)) {
            counts.into_iter().for_each(|(k, v)| doc[k] = v);
        }
        Some(("push", doc))
    }
}

impl Mirror for Push {
    fn host(&self) -> String {
        self.to.registry.clone()
    }
    fn repository(&self, image: &Image) -> Result<String> {
        Ok(mirror::target(image, self.to.prefix.as_deref())?.repository)
    }
    fn files_dir(&self) -> PathBuf {
        Target::files_dir(self)
    }
    fn results_dir(&self) -> PathBuf {
        "airlift-results".into()
    }
    /// Point `tag` of `repository` at the (already pushed) `image`.
    fn tag(&self, image: &Image, repository: &str, tag: &str) -> Result<()> {
        let target = self.to.repository(repository)?;
        let bytes = crate::oci::layout::read_limited(&self.staging.path(&image.digest), crate::oci::MAX_MANIFEST)?;
        self.client.put_manifest(&target, tag, &bytes, &image.media_type, &image.digest)
    }
    fn credentials(&self) -> Result<(String, String)> {
        stored_credentials(self.authfile.as_deref(), &self.host())
    }
}

/// The mirror's credentials from the credential files (`--authfile` or the usual places).
fn stored_credentials(authfile: Option<&Path>, host: &str) -> Result<(String, String)> {
    let keyring = crate::client::auth::Keyring::load(authfile)?;
    match keyring.lookup(host, "") {
        Some((c, _)) => Ok((c.username.clone(), c.password.clone())),
        None => Err(usage(format!(
            "--merge-pull-secret: no credentials for {host}: log in first (podman login {host}) or give --authfile \
             FILE holding them"
        ))),
    }
}

/// Cluster results name the repositories the mirror mapping gives.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::manifest::{Component, Release};
    use crate::openshift::{mappings, release_tags};

    /// The repositories under `prefix` that [`mirror::target`] maps images to.
    fn under(prefix: Option<&str>) -> impl Fn(&Image) -> Result<String> + '_ {
        move |i| Ok(mirror::target(i, prefix)?.repository)
    }

    fn image(source: &str, n: u8) -> Image {
        Image::example(source, n)
    }

    #[test]
    fn mappings_name_source_and_mirror_repositories() {
        let d = Digest::of(b"x");
        let images = vec![
            image("docker://quay.io/openshift-release-dev/ocp-release:4.16.3-x86_64", 1),
            image(&format!("docker://quay.io/openshift-release-dev/ocp-v4.0-art-dev@{d}"), 2),
            image("docker://nginx", 3),
            image("oci:/srv/layout:app", 4),
        ];
        let m = mappings(&images, "mirror.example:8443", &under(Some("ocp"))).unwrap();
        let got: Vec<_> = m.iter().map(|m| (m.source.as_str(), m.mirror.as_str(), m.by_tag)).collect();
        assert_eq!(
            got,
            [
                (
                    "quay.io/openshift-release-dev/ocp-release",
                    "mirror.example:8443/ocp/openshift-release-dev/ocp-release",
                    true
                ),
                (
                    "quay.io/openshift-release-dev/ocp-v4.0-art-dev",
                    "mirror.example:8443/ocp/openshift-release-dev/ocp-v4.0-art-dev",
                    false
                ),
                ("docker.io/library/nginx", "mirror.example:8443/ocp/nginx", true),
            ]
        );
    }

    #[test]
    fn release_tags_follow_oc_adm_release_mirror() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let images = vec![
            image("docker://q.io/ocp/release:4.16.3-x86_64", 1),
            image(&format!("docker://q.io/ocp/art-dev@{a}"), 2),
            image(&format!("docker://q.io/ocp/art-dev@{b}"), 3),
        ];
        let mut release = Release {
            source: images[0].source.clone(),
            version: "4.16.3".into(),
            digest: images[0].digest.clone(),
            architectures: vec!["x86_64".into()],
            components: vec![
                Component { name: "cli".into(), image: format!("q.io/ocp/art-dev@{a}") },
                Component { name: "installer".into(), image: format!("q.io/ocp/art-dev@{b}") },
            ],
            signatures: vec![],
        };
        let tags = release_tags(&release, &images, &under(None)).unwrap();
        assert_eq!(
            tags,
            [
                ReleaseTag { image: 1, repository: "ocp/art-dev".into(), tag: "4.16.3-x86_64-cli".into() },
                ReleaseTag { image: 2, repository: "ocp/art-dev".into(), tag: "4.16.3-x86_64-installer".into() },
            ]
        );
        release.architectures = vec!["x86_64".into(), "aarch64".into()];
        assert_eq!(release_tags(&release, &images, &under(None)).unwrap()[0].tag, "4.16.3-multi-cli");
        release.components[0].image = "q.io/ocp/art-dev@sha256:".to_string() + &"0".repeat(64);
        assert!(release_tags(&release, &images, &under(None)).unwrap_err().to_string().contains("component cli"));
    }
}
