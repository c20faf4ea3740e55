//! `prune`: delete images from a registry root, or a registry over the network, by a
//! delete file ([`crate::openshift::deleteset`]) or by release retention
//! (`--keep-releases N`).
//!
//! Each image asked for is found where `unpack` put it ([`place`], under the same
//! `--prefix`, or `--to`'s). A release brings its components, read from its payload in the
//! registry itself (the bundle is not needed); an image brings the children of its index, its OCI
//! referrers and its cosign tags (`sha256-HEX.sig|.att|.sbom`). Then nothing still used
//! goes: a manifest stays when a tag other than the ones deleted with it names it, when a
//! manifest that stays (a kept index) lists it, when it is attached to (a referrer of) an
//! image that stays, or when a release that stays has it as a component. What stays is
//! reported with the reason; of an image kept so, only the tags the request names go.
//!
//! A deleted manifest loses its revision, its tags, its referrer entry and its link
//! ([`Storage::delete_manifest`]; over the network the registry's `DELETE` by digest); its
//! blobs are left to `airlift gc` (or the registry's own collector). Over the network the
//! manifests seen are those the tags under the prefix reach. The bytes freed are
//! the blobs only deleted manifests reference (no manifest that stays, in any repository):
//! what gc then sweeps, by gc's rule (registry::gc marks a root's storage under its lock;
//! this walk reads the inventory prune already holds, from a root or over the network,
//! and removes nothing).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use oci_spec::image::Descriptor;
use serde::Serialize;

use crate::client::Client;
use crate::digest::Digest;
use crate::error::{usage, Error, Result};
use crate::oci::layout::BlobRef;
use crate::oci::names::{with_transport, ImageRef, Reference, Repository, Tag};
use crate::oci::walk::{walk, Doc, Invalid, Manifests, Node, Role, Visitor};
use crate::openshift::deleteset::{channel_selects, DeleteSet};
use crate::openshift::graph::Version;
use crate::openshift::imageset::{is_release_architecture, DEFAULT_RELEASE_BASE};
use crate::openshift::release::read_payload;
use crate::progress::Silent;
use crate::registry::config::Config;
use crate::registry::storage::Storage;
use crate::store::BlobStore;
use crate::text::untrusted;
use crate::trip::mirror::{digest_tag, place};
use crate::trip::publish::Destination;
use crate::trip::receipt;

/// What to delete.
pub enum Selection {
    /// The images a delete file names.
    Set(DeleteSet),
    /// Every release image but the newest N of each architecture.
    KeepReleases(usize),
}

/// A manifest in a repository.
type Key = (String, Digest);

/// A manifest deleted (or, with `--dry-run`, that would be).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gone {
    pub repository: String,
    pub digest: Digest,
    /// Its tags, which go with it.
    pub tags: Vec<String>,
    /// Why it was asked for: the image, release or component it is.
    pub why: String,
}

/// A manifest asked for that stays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub repository: String,
    pub digest: Digest,
    pub why: String,
    /// What still uses it.
    pub kept_because: String,
    /// The tags the request named, which go all the same.
    pub tags_removed: Vec<String>,
}

/// What a prune did (or would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub deleted: Vec<Gone>,
    pub kept: Vec<Kept>,
    /// Images asked for that the destination does not hold.
    pub absent: Vec<String>,
    /// Blobs (manifests included) only deleted manifests reference, and their bytes.
    pub blobs_freed: usize,
    pub bytes_freed: u64,
    pub warnings: Vec<String>,
}

/// Where prune works.
pub enum Place<'a> {
    /// The registry installed at `root`, its images under `prefix` (unpack's `--prefix`).
    Root { root: &'a Path, prefix: Option<&'a str> },
    /// A registry over the network, `docker://HOST/PREFIX` as `unpack --to` pushed to it.
    Registry { client: &'a Client, to: &'a Destination },
}

/// Plan the prune and, unless `dry_run`, do it.
pub fn prune(place: &Place, selection: &Selection, dry_run: bool) -> Result<Report> {
    match place {
        Place::Root { root, prefix } => {
            let config = Config::load(root)?;
            let storage = Storage::open(&config.storage_dir(root))?;
            let inventory = Inventory::of_storage(&storage)?;
            let layers = |_: &str, l: &[BlobRef]| Ok(l.iter().map(|b| storage.blob_path(&b.digest)).collect());
            let mut report =
                planned(&inventory, selection, *prefix, &layers, &|d: &Digest| storage.blob_path(d).is_file())?;
            report.dry_run = dry_run;
            if !dry_run {
                let delete = |repo: &str, r: &Reference| Ok(storage.delete_manifest(&repository(repo)?, r)?);
                apply(&inventory, &mut report, &delete)?;
            }
            Ok(report)
        }
        Place::Registry { client, to } => {
            let inventory = Inventory::of_registry(client, to)?;
            // Release payloads are read from their layers, fetched into a scratch store.
            let scratch = tempfile::tempdir().map_err(|e| usage(format!("a temporary directory: {e}")))?;
            let store = BlobStore::create(scratch.path())?;
            let layers = |repo: &str, l: &[BlobRef]| -> Result<Vec<PathBuf>> {
                let image = to.repository(repo)?;
                for b in l {
                    client.fetch_blob(&image, b, &store, &Silent)?;
                }
                Ok(l.iter().map(|b| store.path(&b.digest)).collect())
            };
            let mut report = planned(&inventory, selection, to.prefix.as_deref(), &layers, &|_: &Digest| true)?;
            report.dry_run = dry_run;
            if !dry_run {
                let delete = |repo: &str, r: &Reference| client.delete_manifest(&to.repository(repo)?, r);
                apply(&inventory, &mut report, &delete)?;
            }
            Ok(report)
        }
    }
}

/// The layer files of a release image in repository `repo`, in order.
type Layers<'a> = dyn Fn(&str, &[BlobRef]) -> Result<Vec<PathBuf>> + 'a;

/// What `selection` deletes and keeps in `inventory`; `present` says whether the store
/// holds a blob (for the bytes freed).
fn planned(
    inventory: &Inventory,
    selection: &Selection,
    prefix: Option<&str>,
    layers: &Layers,
    present: &dyn Fn(&Digest) -> bool,
) -> Result<Report> {
    let releases = inventory.releases(layers, prefix)?;
    let mut plan = Plan::default();
    match selection {
        Selection::Set(set) => plan.ask_set(inventory, &releases, set, prefix)?,
        Selection::KeepReleases(n) => plan.ask_older_releases(&releases, *n),
    }
    plan.expand(inventory);
    let kept = plan.keep(inventory, &releases);
    let mut report = plan.report(inventory, &kept, present);
    if let Selection::Set(set) = selection {
        report.warnings.extend(set.warnings.iter().cloned());
    }
    Ok(report)
}

/// Delete what the report says, referrers and indexes before what they name, through
/// `delete`. A tag of a kept image that cannot be deleted (a registry that deletes only by
/// digest) becomes a warning.
fn apply(inventory: &Inventory, report: &mut Report, delete: &dyn Fn(&str, &Reference) -> Result<()>) -> Result<()> {
    let mut gone: Vec<&Gone> = report.deleted.iter().collect();
    gone.sort_by_key(|g| {
        let e = inventory.entry(&g.repository, &g.digest);
        (e.is_some_and(|e| e.subject.is_none()), e.is_some_and(|e| e.children.is_empty()))
    });
    for g in gone {
        delete(&g.repository, &Reference::Digest(g.digest.clone()))?;
    }
    let mut warnings = Vec::new();
    for k in &report.kept {
        for t in &k.tags_removed {
            let tag = Tag::parse(t).ok_or_else(|| usage(format!("{}: '{t}' is not a tag", k.repository)))?;
            if let Err(e) = delete(&k.repository, &Reference::Tag(tag)) {
                warnings.push(format!("{}:{t} stays: {e}", k.repository));
            }
        }
    }
    report.warnings.extend(warnings);
    Ok(())
}

fn repository(name: &str) -> Result<Repository> {
    Repository::parse(name).ok_or_else(|| usage(format!("'{}' is not a repository name", untrusted(name))))
}

/// A manifest as prune sees it: what it references, by digest.
#[derive(Debug, Clone, Default)]
struct Entry {
    size: u64,
    /// Config and layers, with their descriptor sizes.
    blobs: Vec<(Digest, u64)>,
    /// Layers only, in order (a release payload is read from them).
    layers: Vec<BlobRef>,
    /// The manifests an index lists.
    children: Vec<Digest>,
    subject: Option<Digest>,
}

#[derive(Debug, Default)]
struct Repo {
    tags: BTreeMap<String, Digest>,
    manifests: BTreeMap<Digest, Entry>,
}

/// Every repository's tags and manifests.
#[derive(Debug, Default)]
struct Inventory {
    repos: BTreeMap<String, Repo>,
}

impl Inventory {
    fn of_storage(storage: &Storage) -> Result<Inventory> {
        let mut inventory = Inventory::default();
        for name in storage.catalog()? {
            let repo = repository(&name)?;
            let mut r = Repo::default();
            for stored in storage.manifests(&repo)? {
                let bytes = storage.read_manifest_blob(&stored.digest)?;
                let entry = entry_of(&name, &stored.digest, &stored.revision.media_type, bytes)?;
                r.manifests.insert(stored.digest, entry);
            }
            for tag in storage.tags(&repo)? {
                let Some(t) = Tag::parse(&tag) else { continue };
                r.tags.insert(tag, storage.resolve(&repo, &Reference::Tag(t))?.digest);
            }
            inventory.repos.insert(name, r);
        }
        Ok(inventory)
    }

    /// The repositories under `to`'s prefix: their tags, the manifests the tags name and
    /// those manifests' children (a manifest no tag reaches is not listed over the API).
    fn of_registry(client: &Client, to: &Destination) -> Result<Inventory> {
        let mut inventory = Inventory::default();
        for repo in receipt::repositories(client, to)? {
            let image = to.repository(repo.as_str())?;
            let name = repo.as_str().to_string();
            let mut r = Repo::default();
            for tag in receipt::list_tags(client, to, &repo)? {
                let t =
                    Tag::parse(&tag).ok_or_else(|| usage(format!("{image}: '{}' is not a tag", untrusted(&tag))))?;
                let mut queue = vec![Reference::Tag(t)];
                while let Some(reference) = queue.pop() {
                    let m = client.manifest(&image, &reference)?;
                    if let Reference::Tag(_) = reference {
                        r.tags.insert(tag.clone(), m.digest.clone());
                    }
                    if r.manifests.contains_key(&m.digest) {
                        continue;
                    }
                    let entry = entry_of(&name, &m.digest, &m.media_type, m.bytes)?;
                    queue.extend(entry.children.iter().map(|c| Reference::Digest(c.clone())));
                    r.manifests.insert(m.digest, entry);
                }
            }
            inventory.repos.insert(name, r);
        }
        Ok(inventory)
    }

    fn entry(&self, repo: &str, digest: &Digest) -> Option<&Entry> {
        self.repos.get(repo)?.manifests.get(digest)
    }

    /// The manifest `tag` or `digest` names in `repo`.
    fn find(&self, repo: &str, tag: &str, digest: Option<&Digest>) -> Option<Key> {
        let r = self.repos.get(repo)?;
        let d = match digest {
            Some(d) => d.clone(),
            None => r.tags.get(tag)?.clone(),
        };
        r.manifests.contains_key(&d).then(|| (repo.to_string(), d))
    }

    /// The release images: tags `VERSION-ARCH` whose image (or, for an index, its first
    /// child) carries a release payload, with their components as found in the root.
    fn releases(&self, layers: &Layers, prefix: Option<&str>) -> Result<Vec<Release>> {
        let mut out = Vec::new();
        for (name, repo) in &self.repos {
            for (tag, digest) in &repo.tags {
                let Some((_, arch)) =
                    tag.rsplit_once('-').filter(|(v, a)| is_release_architecture(a) && Version::parse(v).is_some())
                else {
                    continue;
                };
                let Some(mut entry) = repo.manifests.get(digest) else { continue };
                if let Some(first) = entry.children.first().and_then(|c| repo.manifests.get(c)) {
                    entry = first;
                }
                if entry.layers.is_empty() {
                    continue;
                }
                let files = layers(name, &entry.layers)?;
                if !files.iter().all(|l| l.is_file()) {
                    continue;
                }
                // An image with a release tag's shape but no payload is no release.
                let Ok(payload) = read_payload(&format!("{name}:{tag}"), &files) else { continue };
                let Some(version) = Version::parse(&payload.version) else { continue };
                let mut components = Vec::new();
                for c in &payload.components {
                    let reference = with_transport(&c.image);
                    let Some(d) = ImageRef::parse(&reference).ok().and_then(|i| i.digest) else { continue };
                    let target = place(&reference, None, &d, prefix)?;
                    components.push((c.name.clone(), (target.repository, d)));
                }
                out.push(Release {
                    key: (name.clone(), digest.clone()),
                    tag: tag.clone(),
                    version,
                    arch: arch.to_string(),
                    components,
                });
            }
        }
        Ok(out)
    }
}

/// What the manifest `digest` of `repo` (its `bytes`, checked against the digest by the
/// caller) references.
fn entry_of(repo: &str, digest: &Digest, media_type: &str, bytes: Vec<u8>) -> Result<Entry> {
    let top = BlobRef { digest: digest.clone(), size: bytes.len() as u64, media_type: media_type.to_string() };
    let mut edges = Edges(Entry { size: top.size, ..Entry::default() });
    walk(&One { repo, bytes }, &top, &mut edges)?;
    Ok(edges.0)
}

/// One manifest's bytes, as a walk's source: the walk reads only its top.
struct One<'a> {
    repo: &'a str,
    bytes: Vec<u8>,
}

impl Manifests for One<'_> {
    fn manifest(&self, _: &BlobRef, _: Role) -> Result<Option<Vec<u8>>> {
        Ok(Some(self.bytes.clone()))
    }

    fn invalid(&self, blob: &BlobRef, problem: Invalid) -> Error {
        let what = match problem {
            Invalid::Index(e) => format!("not an image index: {e}"),
            Invalid::Manifest(e) => format!("not an image manifest: {e}"),
            Invalid::Descriptor(e) => e,
        };
        usage(format!("{}@{}: {what}", untrusted(self.repo), blob.digest))
    }
}

/// Records a manifest's direct references; walks no further than its own children.
struct Edges(Entry);

impl Visitor for Edges {
    fn enter(&mut self, parent: &Node, child: &BlobRef, _: &Descriptor) -> Result<bool> {
        match parent.doc {
            Doc::Index(_) => self.0.children.push(child.digest.clone()),
            _ => self.0.blobs.push((child.digest.clone(), child.size)),
        }
        Ok(false)
    }

    fn visit(&mut self, node: &Node) -> Result<()> {
        let subject = match node.doc {
            Doc::Manifest(m) => {
                self.0.layers = m.layers().iter().filter_map(|l| BlobRef::of(l).ok()).collect();
                m.subject().clone()
            }
            Doc::Index(i) => i.subject().clone(),
            _ => None,
        };
        self.0.subject = subject.and_then(|s| s.digest().to_string().parse().ok());
        Ok(())
    }
}

/// A release image in the root.
#[derive(Debug)]
struct Release {
    key: Key,
    tag: String,
    version: Version,
    arch: String,
    /// (ImageStream name, where the component is).
    components: Vec<(String, Key)>,
}

impl Release {
    fn name(&self) -> String {
        format!("release {} ({}, {}:{})", self.version, self.arch, self.key.0, self.tag)
    }
}

/// A manifest asked for: why, the tags that go with it, and what it is attached to.
#[derive(Debug, Default)]
struct Want {
    why: String,
    owned: BTreeSet<String>,
    attached_to: Option<Key>,
}

#[derive(Debug, Default)]
struct Plan {
    wanted: BTreeMap<Key, Want>,
    absent: Vec<String>,
}

impl Plan {
    fn want(&mut self, key: Key, why: String, tag: Option<String>, attached_to: Option<Key>) {
        let w = self.wanted.entry(key.clone()).or_insert_with(|| Want { why, attached_to, ..Want::default() });
        w.owned.insert(digest_tag(&key.1));
        w.owned.extend(tag);
    }

    fn want_release(&mut self, r: &Release) {
        self.want(r.key.clone(), r.name(), Some(r.tag.clone()), None);
        for (name, key) in &r.components {
            // `unpack --release-tags` tagged it VERSION-ARCH-NAME.
            let why = format!("component {name} of {}", r.name());
            self.want(key.clone(), why, Some(format!("{}-{name}", r.tag)), None);
        }
    }

    fn ask_set(&mut self, inv: &Inventory, releases: &[Release], set: &DeleteSet, prefix: Option<&str>) -> Result<()> {
        for reference in &set.releases {
            let (repo, tag, digest) = located(reference, None, prefix)?;
            match inv.find(&repo, &tag, digest.as_ref()) {
                Some(key) => match releases.iter().find(|r| r.key == key) {
                    Some(r) => self.want_release(r),
                    None => self.want(key, format!("release image {reference}"), Some(tag), None),
                },
                None => self.absent.push(reference.clone()),
            }
        }
        let base = set.channels.base.as_deref().unwrap_or(DEFAULT_RELEASE_BASE);
        let (base_repo, _, _) = located(&format!("docker://{base}:0.0.0"), None, prefix)?;
        for r in releases {
            let selected = set.channels.list.iter().any(|c| channel_selects(c, &r.version))
                && set.channels.architectures.contains(&r.arch.as_str())
                && r.key.0 == base_repo;
            if selected {
                self.want_release(r);
            }
        }
        for reference in set.catalogs.iter().chain(&set.additional) {
            let (repo, tag, digest) = located(reference, set.targets.get(reference).map(String::as_str), prefix)?;
            match inv.find(&repo, &tag, digest.as_ref()) {
                Some(key) => self.want(key, format!("image {reference}"), Some(tag), None),
                None => self.absent.push(reference.clone()),
            }
        }
        Ok(())
    }

    /// All but the newest `n` releases of each architecture.
    fn ask_older_releases(&mut self, releases: &[Release], n: usize) {
        let mut by_arch: BTreeMap<&str, Vec<&Release>> = BTreeMap::new();
        for r in releases {
            by_arch.entry(&r.arch).or_default().push(r);
        }
        for list in by_arch.values_mut() {
            list.sort_by(|a, b| b.version.cmp(&a.version));
            for r in list.iter().skip(n) {
                self.want_release(r);
            }
        }
    }

    /// Add what goes with each manifest asked for: an index's children, its referrers and
    /// its cosign tags.
    fn expand(&mut self, inv: &Inventory) {
        let mut queue: Vec<Key> = self.wanted.keys().cloned().collect();
        while let Some(key) = queue.pop() {
            let (name, digest) = &key;
            let Some(repo) = inv.repos.get(name) else { continue };
            // (manifest, why, its tag, whether it is attached to `key` rather than a child)
            let mut more: Vec<(Key, String, Option<String>, bool)> = Vec::new();
            for child in repo.manifests.get(digest).map(|e| &e.children[..]).unwrap_or_default() {
                if repo.manifests.contains_key(child) {
                    more.push(((name.clone(), child.clone()), format!("child of {name}@{digest}"), None, false));
                }
            }
            for (d, e) in &repo.manifests {
                if e.subject.as_ref() == Some(digest) {
                    more.push(((name.clone(), d.clone()), format!("referrer of {name}@{digest}"), None, true));
                }
            }
            for suffix in ["sig", "att", "sbom"] {
                let tag = format!("{}.{suffix}", digest_tag(digest));
                if let Some(d) = repo.tags.get(&tag).filter(|d| repo.manifests.contains_key(*d)) {
                    more.push((
                        (name.clone(), d.clone()),
                        format!("cosign {suffix} of {name}@{digest}"),
                        Some(tag),
                        true,
                    ));
                }
            }
            for (k, why, tag, attached) in more {
                if !self.wanted.contains_key(&k) {
                    queue.push(k.clone());
                }
                self.want(k, why, tag, attached.then(|| key.clone()));
            }
        }
    }

    /// The manifests asked for that stay, each with what keeps it.
    fn keep(&self, inv: &Inventory, releases: &[Release]) -> BTreeMap<Key, String> {
        let mut kept: BTreeMap<Key, String> = BTreeMap::new();
        loop {
            let stays = |k: &Key, kept: &BTreeMap<Key, String>| !self.wanted.contains_key(k) || kept.contains_key(k);
            let mut found = Vec::new();
            for (key, want) in self.wanted.iter().filter(|(k, _)| !kept.contains_key(*k)) {
                if let Some(reason) = self.reason(inv, releases, key, want, &|k| stays(k, &kept)) {
                    found.push((key.clone(), reason));
                }
            }
            if found.is_empty() {
                return kept;
            }
            kept.extend(found);
        }
    }

    /// What keeps `key`, if anything.
    fn reason(
        &self,
        inv: &Inventory,
        releases: &[Release],
        key: &Key,
        want: &Want,
        stays: &dyn Fn(&Key) -> bool,
    ) -> Option<String> {
        let (name, digest) = key;
        let repo = inv.repos.get(name)?;
        if let Some((tag, _)) = repo.tags.iter().find(|(t, d)| *d == digest && !want.owned.contains(*t)) {
            return Some(format!("tag {name}:{tag} names it"));
        }
        for (d, e) in &repo.manifests {
            let parent = (name.clone(), d.clone());
            if e.children.contains(digest) && stays(&parent) {
                return Some(format!("index {name}@{d}, which stays, lists it"));
            }
        }
        if let Some(subject) = want.attached_to.as_ref().filter(|s| stays(s)) {
            return Some(format!("it is attached to {}@{}, which stays", subject.0, subject.1));
        }
        releases
            .iter()
            .filter(|r| stays(&r.key))
            .find_map(|r| r.components.iter().find(|(_, k)| k == key).map(|(n, _)| (r, n)))
            .map(|(r, n)| format!("it is component {n} of {}, which stays", r.name()))
    }

    fn report(&self, inv: &Inventory, kept: &BTreeMap<Key, String>, present: impl Fn(&Digest) -> bool) -> Report {
        let mut report = Report { absent: self.absent.clone(), ..Report::default() };
        let tags_of = |(name, digest): &Key| -> Vec<String> {
            inv.repos
                .get(name)
                .map(|r| r.tags.iter().filter(|(_, d)| *d == digest).map(|(t, _)| t.clone()).collect())
                .unwrap_or_default()
        };
        for (key, want) in &self.wanted {
            match kept.get(key) {
                Some(reason) => report.kept.push(Kept {
                    repository: key.0.clone(),
                    digest: key.1.clone(),
                    why: want.why.clone(),
                    kept_because: reason.clone(),
                    tags_removed: tags_of(key)
                        .into_iter()
                        .filter(|t| want.owned.contains(t) && *t != digest_tag(&key.1))
                        .collect(),
                }),
                None => report.deleted.push(Gone {
                    repository: key.0.clone(),
                    digest: key.1.clone(),
                    tags: tags_of(key),
                    why: want.why.clone(),
                }),
            }
        }
        let gone: HashSet<Key> = report.deleted.iter().map(|g| (g.repository.clone(), g.digest.clone())).collect();
        let (freed, bytes) = freed(inv, &gone, present);
        (report.blobs_freed, report.bytes_freed) = (freed, bytes);
        report
    }
}

/// The blobs (manifests included) that only manifests in `gone` reference and the store
/// holds, and their bytes.
fn freed(inv: &Inventory, gone: &HashSet<Key>, present: impl Fn(&Digest) -> bool) -> (usize, u64) {
    let mut used: HashSet<&Digest> = HashSet::new();
    let mut candidates: BTreeMap<&Digest, u64> = BTreeMap::new();
    for (name, repo) in &inv.repos {
        for (digest, e) in &repo.manifests {
            let refs = std::iter::once((digest, e.size)).chain(e.blobs.iter().map(|(d, s)| (d, *s)));
            if gone.contains(&(name.clone(), digest.clone())) {
                candidates.extend(refs);
            } else {
                used.extend(refs.map(|(d, _)| d));
            }
        }
    }
    candidates.retain(|d, _| !used.contains(d) && present(d));
    (candidates.len(), candidates.values().sum())
}

/// Repository, tag and digest where unpack put `reference` (a `docker://` reference; its
/// reference name `target`, an image set's targetRepo/targetTag, when given).
fn located(reference: &str, target: Option<&str>, prefix: Option<&str>) -> Result<(String, String, Option<Digest>)> {
    let image = ImageRef::parse(reference).map_err(|e| usage(format!("{reference}: {e}")))?;
    // An image named by tag only has no digest yet: its tag places it.
    let anchor = image.digest.clone().unwrap_or_else(|| Digest::of(reference.as_bytes()));
    let t = place(reference, target, &anchor, prefix)?;
    Ok((t.repository, t.tag, image.digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> Digest {
        Digest::of(&[n])
    }

    fn manifest(blobs: &[u8], children: &[u8]) -> Entry {
        Entry {
            size: 10,
            blobs: blobs.iter().map(|&b| (d(b), 100)).collect(),
            children: children.iter().map(|&c| d(c)).collect(),
            ..Entry::default()
        }
    }

    /// Repository `r`: an index 1 (tag `multi`) of manifests 2 and 3; manifest 4 (tag
    /// `solo`) sharing blob 20 with manifest 2; a referrer 5 of manifest 4.
    fn inventory() -> Inventory {
        let mut repo = Repo::default();
        repo.manifests.insert(d(1), manifest(&[], &[2, 3]));
        repo.manifests.insert(d(2), manifest(&[20, 21], &[]));
        repo.manifests.insert(d(3), manifest(&[30], &[]));
        repo.manifests.insert(d(4), manifest(&[20, 40], &[]));
        repo.manifests.insert(d(5), Entry { subject: Some(d(4)), ..manifest(&[50], &[]) });
        repo.tags.insert("multi".into(), d(1));
        repo.tags.insert("solo".into(), d(4));
        Inventory { repos: BTreeMap::from([("r".to_string(), repo)]) }
    }

    fn plan(inv: &Inventory, asked: &[(u8, Option<&str>)]) -> Report {
        let mut p = Plan::default();
        for (n, tag) in asked {
            p.want(("r".into(), d(*n)), format!("asked {n}"), tag.map(str::to_string), None);
        }
        p.expand(inv);
        let kept = p.keep(inv, &[]);
        p.report(inv, &kept, |_| true)
    }

    #[test]
    fn an_image_goes_with_its_referrers_and_exclusive_blobs() {
        let r = plan(&inventory(), &[(4, Some("solo"))]);
        let gone: Vec<_> = r.deleted.iter().map(|g| g.digest.clone()).collect();
        assert_eq!(gone, [d(4), d(5)], "{r:?}");
        assert_eq!(r.deleted[0].tags, ["solo"]);
        // Manifests 4 and 5 (10 bytes each), blobs 40 and 50; blob 20 is manifest 2's too.
        assert_eq!((r.blobs_freed, r.bytes_freed), (4, 220));
        assert!(r.kept.is_empty());
    }

    #[test]
    fn a_kept_index_protects_its_children_and_a_kept_tag_its_image() {
        let inv = inventory();
        let r = plan(&inv, &[(2, None)]);
        assert!(r.deleted.is_empty());
        assert_eq!(r.kept[0].kept_because, format!("index r@{}, which stays, lists it", d(1)));
        let r = plan(&inv, &[(1, Some("multi"))]);
        assert_eq!(r.deleted.len(), 3, "the index and both children: {r:?}");
        assert_eq!(r.bytes_freed, 30 + 100 + 100, "blob 20 stays for manifest 4");
        let mut inv = inventory();
        inv.repos.get_mut("r").unwrap().tags.insert("latest".into(), d(4));
        let r = plan(&inv, &[(4, Some("solo"))]);
        assert!(r.deleted.is_empty(), "{r:?}");
        assert_eq!(r.kept[0].kept_because, "tag r:latest names it");
        assert_eq!(r.kept[0].tags_removed, ["solo"]);
        assert_eq!(r.kept[1].kept_because, format!("it is attached to r@{}, which stays", d(4)));
    }

    #[test]
    fn images_are_found_where_unpack_put_them() {
        let (repo, tag, digest) = located("docker://quay.io/ocp/release:4.16.3-x86_64", None, Some("mirror")).unwrap();
        assert_eq!((repo.as_str(), tag.as_str(), digest), ("mirror/ocp/release", "4.16.3-x86_64", None));
        let by_digest = format!("docker://quay.io/ocp/art-dev@{}", d(1));
        let (repo, tag, digest) = located(&by_digest, None, None).unwrap();
        assert_eq!((repo.as_str(), tag, digest), ("ocp/art-dev", digest_tag(&d(1)), Some(d(1))));
        let (repo, tag, _) = located("docker://quay.io/ns/app:1.0", Some("quay.io/other/app:v1"), None).unwrap();
        assert_eq!((repo.as_str(), tag.as_str()), ("other/app", "v1"));
    }
}
