//! Publishing a bundle's images into a registry over the network
//! (`unpack --to docker://HOST[:PORT]/PREFIX`), in the repositories
//! [`mirror::target`](crate::trip::mirror::target) maps them to, in phases over every
//! image at once, each phase `parallel` requests at a time:
//!
//! 1. every distinct blob into the first repository that needs it (skipped when the
//!    registry already has it: `HEAD`);
//! 2. every other repository that needs a blob mounts it from one that holds it;
//! 3. the manifests, an image's children before its index (a tagged image's own
//!    manifest goes in with its tag);
//! 4. the tags, last: a tag only ever names an image that is whole.
//!
//! A journal (one per bundle and registry, in the staging store's state directory)
//! records each blob, manifest and tag the registry accepted, so a run that was killed
//! and started again does not ask for them again; a blob not in the journal is still
//! checked with `HEAD` before it is uploaded. The journal also says which repository
//! already holds a blob: another repository that needs it mounts it at once, without
//! asking first (a mount answered `201` is the whole job).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::bundle::manifest::Image;
use crate::client::push::BlobOutcome;
use crate::client::Client;
use crate::digest::Digest;
use crate::error::{usage, IoContext, Result};
use crate::oci::layout::read_limited;
use crate::oci::names::{valid_host, ImageRef, Repository, TRANSPORT};
use crate::oci::MAX_MANIFEST;
use crate::store::{BlobStore, State};
use crate::trip::mirror::{self, Target};
use crate::workers::{self, lock};

/// `docker://HOST[:PORT]/PREFIX`: where `unpack --to` pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    pub registry: String,
    pub prefix: Option<String>,
}

/// How blobs are uploaded.
#[derive(Debug, Clone, Copy)]
pub struct PushOptions {
    /// Blobs larger than this go in chunks of this size.
    pub chunk: u64,
    /// Requests (blobs, mounts, images' manifests, tags) in flight at once.
    pub parallel: usize,
}

impl Destination {
    pub fn parse(s: &str) -> Result<Destination> {
        let bad = |why: &str| usage(format!("--to '{s}': {why}; expected docker://HOST[:PORT][/PREFIX]"));
        let rest = s.strip_prefix(TRANSPORT).ok_or_else(|| bad("not a docker:// reference"))?;
        let (host, prefix) = match rest.split_once('/') {
            Some((h, p)) => (h, p.trim_matches('/')),
            None => (rest, ""),
        };
        if !valid_host(host) {
            return Err(bad(&format!("'{host}' is not a valid registry host[:port]")));
        }
        if prefix.contains([':', '@']) {
            return Err(bad("the prefix is a repository path: no tag or digest"));
        }
        let prefix = (!prefix.is_empty()).then(|| prefix.to_string());
        Ok(Destination { registry: host.to_string(), prefix })
    }
}

impl Destination {
    /// Repository `repository` of this registry, as the client addresses it.
    pub fn repository(&self, repository: &str) -> Result<ImageRef> {
        let repo = Repository::parse(repository)
            .ok_or_else(|| usage(format!("'{repository}' is not a valid repository name")))?;
        Ok(ImageRef { registry: self.registry.clone(), repository: repo, tag: None, digest: None })
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{TRANSPORT}{}", self.registry)?;
        if let Some(p) = &self.prefix {
            write!(f, "/{p}")?;
        }
        Ok(())
    }
}

/// What a push did, over every image.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct PushReport {
    /// Blobs uploaded, manifests and tags put.
    pub pushed: u64,
    /// Blobs, manifests and tags the registry already had (journal or `HEAD`).
    pub skipped: u64,
    /// Blobs mounted from another repository.
    pub mounted: u64,
    /// Bytes of blobs uploaded.
    pub bytes: u64,
}

/// What the registry accepted, appended a line at a time (`blob REPO DIGEST`,
/// `manifest REPO DIGEST`, `tag REPO TAG DIGEST`); a torn last line is ignored (and ended
/// before the next line is appended). The
/// workers of a push share it: one lock holds the file and what it says, and a line is
/// on disk (fsync) before what it records counts as done.
pub struct Journal {
    path: PathBuf,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    file: Option<File>,
    /// The file ends in a line a kill cut short.
    torn: bool,
    /// Blob → the repositories known to hold it, first first.
    blobs: HashMap<Digest, Vec<String>>,
    manifests: HashSet<(String, Digest)>,
    tags: HashMap<(String, String), Digest>,
}

impl Entries {
    fn note_blob(&mut self, repo: &str, d: Digest) {
        let repos = self.blobs.entry(d).or_default();
        if !repos.iter().any(|r| r == repo) {
            repos.push(repo.to_string());
        }
    }

    /// A tag names a manifest the repository holds.
    fn note_tag(&mut self, repo: &str, tag: &str, d: Digest) {
        self.manifests.insert((repo.to_string(), d.clone()));
        self.tags.insert((repo.to_string(), tag.to_string()), d);
    }
}

impl Journal {
    pub fn open(store: &BlobStore, bundle_id: &str, dest: &Destination) -> Result<Journal> {
        let host: String =
            dest.registry.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' }).collect();
        let path = store.state(State::Push(bundle_id, &host));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).at(dir)?;
        }
        let mut e = Entries::default();
        if let Ok(file) = File::open(&path) {
            let mut reader = BufReader::new(file);
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let Some(line) = line.strip_suffix('\n') else {
                    // Torn by a kill: what comes next starts on a line of its own.
                    e.torn = true;
                    break;
                };
                let f: Vec<&str> = line.split(' ').collect();
                match f.as_slice() {
                    ["blob", repo, d] => {
                        if let Ok(d) = d.parse() {
                            e.note_blob(repo, d);
                        }
                    }
                    ["manifest", repo, d] => {
                        if let Ok(d) = d.parse() {
                            e.manifests.insert((repo.to_string(), d));
                        }
                    }
                    ["tag", repo, tag, d] => {
                        if let Ok(d) = d.parse() {
                            e.note_tag(repo, tag, d);
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(Journal { path, entries: Mutex::new(e) })
    }

    /// Append `line` and sync it, then let `note` record it in memory.
    fn append(&self, line: &str, note: impl FnOnce(&mut Entries)) -> Result<()> {
        let mut e = lock(&self.entries);
        if e.file.is_none() {
            let f = OpenOptions::new().create(true).append(true).open(&self.path).at(&self.path)?;
            e.file = Some(f);
        }
        let start = if std::mem::take(&mut e.torn) { "\n" } else { "" };
        if let Some(f) = &mut e.file {
            f.write_all(format!("{start}{line}\n").as_bytes()).at(&self.path)?;
            f.sync_data().at(&self.path)?;
        }
        note(&mut e);
        Ok(())
    }

    fn has_blob(&self, repo: &str, d: &Digest) -> bool {
        lock(&self.entries).blobs.get(d).is_some_and(|r| r.iter().any(|x| x == repo))
    }

    /// Another repository of this registry known to hold blob `d`.
    fn holder(&self, repo: &str, d: &Digest) -> Option<String> {
        lock(&self.entries).blobs.get(d).and_then(|r| r.iter().find(|x| *x != repo).cloned())
    }

    fn has_manifest(&self, repo: &str, d: &Digest) -> bool {
        lock(&self.entries).manifests.contains(&(repo.to_string(), d.clone()))
    }

    fn has_tag(&self, repo: &str, tag: &str, d: &Digest) -> bool {
        lock(&self.entries).tags.get(&(repo.to_string(), tag.to_string())) == Some(d)
    }

    fn blob(&self, repo: &str, d: &Digest) -> Result<()> {
        self.append(&format!("blob {repo} {d}"), |e| e.note_blob(repo, d.clone()))
    }

    fn manifest(&self, repo: &str, d: &Digest) -> Result<()> {
        self.append(&format!("manifest {repo} {d}"), |e| {
            e.manifests.insert((repo.to_string(), d.clone()));
        })
    }

    fn tag(&self, repo: &str, tag: &str, d: &Digest) -> Result<()> {
        self.append(&format!("tag {repo} {tag} {d}"), |e| e.note_tag(repo, tag, d.clone()))
    }
}

/// One image: where it goes and which of its manifests the bundle carries.
struct Plan<'a> {
    image: &'a Image,
    mirrored: Target,
    target: ImageRef,
    /// Children first, the image last (one packed with --platform leaves some children
    /// out; the registry must then accept the index without them).
    manifests: Vec<(Digest, String)>,
    /// The blobs a differential bundle left out: the repository holds them already
    /// (checked before the push).
    omitted: &'a HashSet<&'a Digest>,
}

impl<'a> Plan<'a> {
    fn new(
        store: &BlobStore,
        image: &'a Image,
        dest: &Destination,
        omitted: &'a HashSet<&'a Digest>,
    ) -> Result<Plan<'a>> {
        let mirrored = mirror::target(image, dest.prefix.as_deref())?;
        let target =
            dest.repository(&mirrored.repository).map_err(|e| usage(format!("image {}: {e}", image.digest)))?;
        let manifests = mirror::manifests_of(store, &image.digest, &image.media_type)?
            .into_iter()
            .filter(|(m, _)| image.blobs.contains(m))
            .collect();
        Ok(Plan { image, mirrored, target, manifests, omitted })
    }

    /// The blobs to push that are not manifests: configs and the layers carried.
    fn blobs(&self) -> impl Iterator<Item = &Digest> {
        self.image.blobs.iter().filter(|b| !self.manifests.iter().any(|(m, _)| m == *b) && !self.omitted.contains(b))
    }

    /// The reference the image can be pulled by.
    fn reference(&self, host: &str) -> String {
        self.mirrored.reference(host, &self.image.digest)
    }
}

/// [`PushReport`]'s counts as the workers add to them.
#[derive(Default)]
struct Tally {
    pushed: AtomicU64,
    skipped: AtomicU64,
    mounted: AtomicU64,
    bytes: AtomicU64,
}

impl Tally {
    fn blob(&self, outcome: BlobOutcome, size: u64) {
        match outcome {
            BlobOutcome::Present => self.skipped.fetch_add(1, Ordering::Relaxed),
            BlobOutcome::Mounted => self.mounted.fetch_add(1, Ordering::Relaxed),
            BlobOutcome::Uploaded => {
                self.bytes.fetch_add(size, Ordering::Relaxed);
                self.pushed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }

    /// A manifest or tag: put, or already there.
    fn put(&self, put: bool) {
        let n = if put { &self.pushed } else { &self.skipped };
        n.fetch_add(1, Ordering::Relaxed);
    }

    fn report(&self) -> PushReport {
        PushReport {
            pushed: self.pushed.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            mounted: self.mounted.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

/// Push every image of `images` (each complete in `store`) into its repository under
/// `dest`; returns the reference each can be pulled by, in the order of `images`, and
/// what was done.
pub fn push_images(
    client: &Client,
    store: &BlobStore,
    images: &[&Image],
    dest: &Destination,
    options: PushOptions,
    journal: &Journal,
    omitted: &HashSet<&Digest>,
) -> Result<(Vec<String>, PushReport)> {
    let plans = images.iter().map(|i| Plan::new(store, i, dest, omitted)).collect::<Result<Vec<_>>>()?;
    let push = Publisher {
        store,
        options,
        journal,
        tally: Tally::default(),
        slots: Mutex::new(HashMap::new()),
        lacked: Mutex::new(HashSet::new()),
    };

    // (plan, blob): every distinct blob once, for the first repository needing it, the
    // largest first (they take longest); then every other repository needing it.
    let mut first: Vec<(usize, &Digest, u64)> = Vec::new();
    let mut others: Vec<(usize, &Digest)> = Vec::new();
    let mut seen_blobs: HashSet<&Digest> = HashSet::new();
    let mut seen_pairs: HashSet<(&str, &Digest)> = HashSet::new();
    for (p, plan) in plans.iter().enumerate() {
        for blob in plan.blobs() {
            if !seen_pairs.insert((&plan.mirrored.repository, blob)) {
                continue;
            }
            if seen_blobs.insert(blob) {
                let path = store.path(blob);
                first.push((p, blob, std::fs::metadata(&path).at(&path)?.len()));
            } else {
                others.push((p, blob));
            }
        }
    }
    first.sort_by_key(|b| std::cmp::Reverse(b.2));
    push.each(client, first.len(), |c, i| push.place_blob(c, &plans[first[i].0], first[i].1))?;
    push.each(client, others.len(), |c, i| push.place_blob(c, &plans[others[i].0], others[i].1))?;

    // The images that get their tag: where two claim one tag, the later one has it (as
    // when they were pushed one after the other).
    let mut tags: Vec<usize> = Vec::new();
    let mut seen_tags: HashSet<(&str, &str)> = HashSet::new();
    for (p, plan) in plans.iter().enumerate().rev() {
        if seen_tags.insert((&plan.mirrored.repository, &plan.mirrored.tag)) {
            tags.push(p);
        }
    }
    tags.reverse();

    // Manifests, an image at a time: children before the index. An image's own manifest
    // goes in with its tag, when it gets one.
    push.each(client, plans.len(), |c, i| {
        let plan = &plans[i];
        for (digest, media_type) in &plan.manifests {
            if *digest != plan.image.digest {
                push.put_manifest(c, plan, digest, media_type, true)?;
            } else if tags.binary_search(&i).is_err() {
                push.put_manifest(c, plan, digest, media_type, !push.lacked_a_blob(plan))?;
            }
        }
        Ok(())
    })?;

    // Tags last: a tag only ever names an image whose blobs and children are there.
    push.each(client, tags.len(), |c, i| push.put_tag(c, &plans[tags[i]]))?;

    let references = plans.iter().map(|p| p.reference(&dest.registry)).collect();
    Ok((references, push.tally.report()))
}

/// Held while one manifest is checked and put.
type Slot = Arc<Mutex<()>>;

/// What the workers of one push share.
struct Publisher<'a> {
    store: &'a BlobStore,
    options: PushOptions,
    journal: &'a Journal,
    tally: Tally,
    /// One lock per (repository, manifest): images that share a manifest put it once.
    slots: Mutex<HashMap<(String, Digest), Slot>>,
    /// (repository, blob) that `HEAD` found missing.
    lacked: Mutex<HashSet<(String, Digest)>>,
}

impl Publisher<'_> {
    /// `job(client, i)` for every `i` in `0..count`, `parallel` at a time, each worker
    /// with its own connections.
    fn each(&self, client: &Client, count: usize, job: impl Fn(&Client, usize) -> Result<()> + Sync) -> Result<()> {
        workers::run(self.options.parallel, count, || client.fork(), |c, i| job(c, i))
    }

    /// Put `blob` into the repository of `plan`, unless the journal says it is there.
    fn place_blob(&self, client: &Client, plan: &Plan, blob: &Digest) -> Result<()> {
        let repo = &plan.mirrored.repository;
        if self.journal.has_blob(repo, blob) {
            self.tally.blob(BlobOutcome::Present, 0);
            return Ok(());
        }
        // Another repository holds it: mount it without asking first. Else ask (`HEAD`):
        // what the registry already has is not sent again.
        let from = self.journal.holder(repo, blob);
        let (outcome, size) = if from.is_none() && client.blob_exists(&plan.target, blob)? {
            (BlobOutcome::Present, 0)
        } else {
            if from.is_none() {
                lock(&self.lacked).insert((repo.clone(), blob.clone()));
            }
            let path = self.store.path(blob);
            let size = std::fs::metadata(&path).at(&path)?.len();
            (client.push_blob(&plan.target, blob, (&path, size), from.as_deref(), self.options.chunk)?, size)
        };
        self.journal.blob(repo, blob)?;
        self.tally.blob(outcome, size);
        Ok(())
    }

    /// Whether the repository of `plan` lacked one of its blobs when this push began: it
    /// cannot have held the image then, so there is no point asking whether it does.
    /// (Were a registry to accept manifests before their blobs, the answer would be a
    /// manifest put once more: its exact bytes, harmless.)
    fn lacked_a_blob(&self, plan: &Plan) -> bool {
        let lacked = lock(&self.lacked);
        plan.blobs().any(|b| lacked.contains(&(plan.mirrored.repository.clone(), b.clone())))
    }

    /// Put manifest `digest` into the repository of `plan` by its digest, unless the
    /// journal or, when `ask`, the registry (`HEAD`) says it is there.
    fn put_manifest(&self, client: &Client, plan: &Plan, digest: &Digest, media_type: &str, ask: bool) -> Result<()> {
        let repo = &plan.mirrored.repository;
        let slot = lock(&self.slots).entry((repo.clone(), digest.clone())).or_default().clone();
        let _held = lock(&slot);
        if self.journal.has_manifest(repo, digest) {
            self.tally.put(false);
            return Ok(());
        }
        let reference = digest.to_string();
        let there = ask && client.manifest_digest(&plan.target, &reference)?.is_some();
        if !there {
            let bytes = read_limited(&self.store.path(digest), MAX_MANIFEST)?;
            client.put_manifest(&plan.target, &reference, &bytes, media_type, digest)?;
        }
        self.journal.manifest(repo, digest)?;
        self.tally.put(!there);
        Ok(())
    }

    /// Point the tag of `plan` at its image, putting the image's manifest with it (asking
    /// first, unless the repository lacked one of the image's blobs).
    fn put_tag(&self, client: &Client, plan: &Plan) -> Result<()> {
        let (repo, image) = (&plan.mirrored.repository, plan.image);
        let tag = &plan.mirrored.tag;
        if self.journal.has_tag(repo, tag, &image.digest) {
            self.tally.put(false);
            return Ok(());
        }
        let there = !self.lacked_a_blob(plan)
            && client.manifest_digest(&plan.target, tag)?.as_deref() == Some(image.digest.to_string().as_str());
        if !there {
            let bytes = read_limited(&self.store.path(&image.digest), MAX_MANIFEST)?;
            client.put_manifest(&plan.target, tag, &bytes, &image.media_type, &image.digest)?;
        }
        self.journal.tag(repo, tag, &image.digest)?;
        self.tally.put(!there);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let d = Destination::parse("docker://localhost:5000/mirror/ns/").unwrap();
        assert_eq!(d, Destination { registry: "localhost:5000".into(), prefix: Some("mirror/ns".into()) });
        assert_eq!(d.to_string(), "docker://localhost:5000/mirror/ns");
        let d = Destination::parse("docker://quay.example").unwrap();
        assert_eq!(d.prefix, None);
        assert!(Destination::parse("localhost:5000/x").is_err());
        assert!(Destination::parse("docker://bad host/x").is_err());
        assert!(Destination::parse("docker://h/x:1").is_err());
    }

    #[test]
    fn a_torn_journal_line_is_ignored_and_the_next_starts_a_line_of_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let store = BlobStore::create(tmp.path()).unwrap();
        let dest = Destination::parse("docker://r.example:5000/m").unwrap();
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let j = Journal::open(&store, "id", &dest).unwrap();
        j.blob("m/app", &a).unwrap();
        let path = j.path.clone();
        drop(j);
        // Killed part way through the next line.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(format!("blob m/app {}", &b.to_string()[..20]).as_bytes()).unwrap();
        let j = Journal::open(&store, "id", &dest).unwrap();
        assert!(j.has_blob("m/app", &a) && !j.has_blob("m/app", &b));
        assert_eq!(j.holder("m/other", &a).as_deref(), Some("m/app"));
        assert_eq!(j.holder("m/app", &a), None);
        j.tag("m/app", "1", &b).unwrap();
        let j = Journal::open(&store, "id", &dest).unwrap();
        assert!(
            j.has_tag("m/app", "1", &b) && j.has_manifest("m/app", &b),
            "{}",
            std::fs::read_to_string(&path).unwrap()
        );
        assert!(!j.has_tag("m/app", "1", &a));
    }
}
