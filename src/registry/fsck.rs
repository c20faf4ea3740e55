//! `airlift fsck`'s library: check a registry root's storage — every blob against its
//! digest (hashed on several threads, one fixed buffer each), every manifest revision's
//! document and references, every tag and link — and say which images each problem hurts;
//! and restore damaged or missing blobs from a bundle that carries them ([`repair`]).
//!
//! A checker records every problem and goes on. Problems of a blob's bytes (missing, wrong
//! hash, unreadable) are the store's and hurt every repository's images that reach the
//! blob; the others (a descriptor's size, a link, a tag, a revision record) are one
//! repository's. A child an index names that its repository does not hold at all is not
//! damage: a bundle packed with `--platform` leaves other platforms out on purpose.
//!
//! It reads only, and may run while `serve` and `unpack` write: a blob or manifest that is
//! not in its listings is looked for again before it is called missing or dangling.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

use crate::bundle::extract::Extractor;
use crate::bundle::manifest::EntryKind;
use crate::bundle::reader::{Action, Bundle, Sink, VolumeReport};
use crate::digest::{file_digest_with, Digest};
use crate::error::{Error, Result};
use crate::oci::names::{Reference, Repository, Tag};
use crate::progress::Progress;
use crate::registry::config::Config;
use crate::registry::storage::{self, Storage};
use crate::store::State;
use crate::text::untrusted;

/// Bytes each hashing thread reads at a time (its one buffer).
const HASH_BUF: usize = 1 << 20;

/// What is wrong with an object of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A blob a manifest or revision names is not in the store.
    Missing,
    /// A blob's content does not hash to its name.
    WrongHash,
    /// A blob is not the size a manifest's descriptor or its link records.
    WrongSize,
    /// A blob could not be read.
    Unreadable,
    /// A manifest, its revision record or a link file does not parse.
    Unparsable,
    /// A tag names a manifest its repository does not hold.
    DanglingTag,
    /// A link names a blob the store does not hold.
    DanglingLink,
    /// A manifest references a blob its repository does not link (pulls of it fail).
    Unlinked,
}

impl Kind {
    /// Whether putting the blob's bytes back (from a bundle) mends the problem.
    pub fn restorable(self) -> bool {
        matches!(self, Kind::Missing | Kind::WrongHash | Kind::Unreadable | Kind::DanglingLink)
    }

    pub fn word(self) -> &'static str {
        match self {
            Kind::Missing => "MISSING",
            Kind::WrongHash => "WRONG-HASH",
            Kind::WrongSize => "WRONG-SIZE",
            Kind::Unreadable => "UNREADABLE",
            Kind::Unparsable => "UNPARSABLE",
            Kind::DanglingTag => "DANGLING-TAG",
            Kind::DanglingLink => "DANGLING-LINK",
            Kind::Unlinked => "UNLINKED",
        }
    }
}

/// An image of the registry: a manifest of a repository, by tag when it is tagged.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Image {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Digest,
}

impl Image {
    /// `repo:tag`, or `repo@digest` when untagged.
    pub fn reference(&self) -> String {
        match &self.tag {
            Some(t) => format!("{}:{t}", self.repository),
            None => format!("{}@{}", self.repository, self.digest),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    pub kind: Kind,
    /// The blob or manifest at fault (for a dangling tag: the manifest it names).
    pub digest: Option<Digest>,
    /// The repository, for a problem of one repository.
    pub repository: Option<String>,
    pub tag: Option<String>,
    /// The file at fault.
    pub path: PathBuf,
    pub problem: String,
    /// The images it hurts.
    pub hurts: Vec<Image>,
}

/// What a check found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Blob files hashed, and their bytes.
    pub blobs: usize,
    pub bytes: u64,
    pub repositories: usize,
    pub manifests: usize,
    pub tags: usize,
    pub links: usize,
    /// Children of indexes their repository does not hold at all (left out on purpose).
    pub absent_children: usize,
    pub problems: Vec<Problem>,
}

impl Report {
    /// Every image hurt, with the problems (indexes into `problems`) that hurt it.
    pub fn hurt_images(&self) -> BTreeMap<&Image, Vec<usize>> {
        let mut out: BTreeMap<&Image, Vec<usize>> = BTreeMap::new();
        for (i, p) in self.problems.iter().enumerate() {
            for image in &p.hurts {
                out.entry(image).or_default().push(i);
            }
        }
        out
    }
}

/// Check the storage of the registry root `root` with `jobs` hashing threads.
pub fn check(root: &Path, jobs: usize, progress: &dyn Progress) -> Result<Report> {
    let dir = Config::load(root)?.storage_dir(root);
    let storage = Storage::open(&dir)?;
    let blobs: HashMap<Digest, u64> = crate::store::list_blobs(&dir)?.into_iter().map(|b| (b.digest, b.size)).collect();
    let mut c = Checker {
        storage: &storage,
        report: Report::default(),
        bad: HashSet::new(),
        graphs: BTreeMap::new(),
        seen: HashSet::new(),
    };
    c.report.blobs = blobs.len();
    c.report.bytes = blobs.values().sum();
    for p in hash_blobs(&storage, &blobs, jobs, progress)? {
        c.bad.extend(p.digest.clone());
        c.add(p);
    }
    for name in storage.catalog()? {
        let repo = Repository::parse(&name)
            .ok_or_else(|| crate::error::usage(format!("{}: bad repository name '{name}'", dir.display())))?;
        c.repository(&repo, &blobs)?;
    }
    Ok(c.finish())
}

/// Hash every blob against its name on `jobs` threads: the wrong and unreadable ones.
fn hash_blobs(
    storage: &Storage,
    blobs: &HashMap<Digest, u64>,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<Vec<Problem>> {
    let list: Vec<&Digest> = blobs.keys().collect();
    let found = Mutex::new(Vec::new());
    progress.start("blobs", blobs.values().sum());
    crate::workers::run(
        jobs,
        list.len(),
        || Ok(vec![0u8; HASH_BUF]),
        |buf, i| {
            let digest = list[i];
            let path = storage.blob_path(digest);
            let problem = match file_digest_with(&path, buf) {
                Ok((actual, len)) => {
                    progress.advance(len);
                    (&actual != digest).then(|| (Kind::WrongHash, format!("content hashes to {actual} ({len} bytes)")))
                }
                // Swept by gc since it was listed.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => Some((Kind::Unreadable, e.to_string())),
            };
            if let Some((kind, text)) = problem {
                let p = problem_of(kind, digest, None, path, format!("blob {digest}: {text}"));
                crate::workers::lock(&found).push(p);
            }
            Ok(())
        },
    )?;
    progress.finish();
    Ok(found.into_inner().unwrap_or_else(|p| p.into_inner()))
}

fn problem_of(kind: Kind, digest: &Digest, repo: Option<&Repository>, path: PathBuf, problem: String) -> Problem {
    Problem {
        kind,
        digest: Some(digest.clone()),
        repository: repo.map(|r| r.to_string()),
        tag: None,
        path,
        problem,
        hurts: Vec::new(),
    }
}

/// One repository's manifests as edges: what references each digest, and the tags of each.
#[derive(Default)]
struct Graph {
    revisions: HashSet<Digest>,
    /// Blob or child manifest → the manifests that reference it.
    parents: HashMap<Digest, Vec<Digest>>,
    tags: HashMap<Digest, Vec<String>>,
}

impl Graph {
    /// The images that reach `digest` (itself, when it is a manifest here).
    fn hurt_by(&self, repo: &str, digest: &Digest) -> Vec<Image> {
        let mut seen: BTreeSet<Digest> = BTreeSet::new();
        let mut todo = vec![digest.clone()];
        while let Some(d) = todo.pop() {
            for p in self.parents.get(&d).into_iter().flatten() {
                if seen.insert(p.clone()) {
                    todo.push(p.clone());
                }
            }
        }
        if self.revisions.contains(digest) {
            seen.insert(digest.clone());
        }
        let mut out = Vec::new();
        for m in seen {
            let image =
                |tag: Option<&String>| Image { repository: repo.to_string(), tag: tag.cloned(), digest: m.clone() };
            match self.tags.get(&m) {
                Some(tags) => out.extend(tags.iter().map(|t| image(Some(t)))),
                None => out.push(image(None)),
            }
        }
        out
    }
}

struct Checker<'s> {
    storage: &'s Storage,
    report: Report,
    /// Blobs whose bytes are wrong or unreadable (their other checks would only repeat it).
    bad: HashSet<Digest>,
    graphs: BTreeMap<String, Graph>,
    /// The problems recorded, by [`Key`].
    seen: HashSet<Key>,
}

/// What makes a problem one: (kind, digest, repository, tag).
type Key = (Kind, Option<Digest>, Option<String>, Option<String>);

impl Checker<'_> {
    /// The size of blob `d`: as listed at the start, else as it is now (a writer at work
    /// committed it since: not missing).
    fn size_of(&self, d: &Digest, blobs: &HashMap<Digest, u64>) -> Option<u64> {
        blobs.get(d).copied().or_else(|| std::fs::metadata(self.storage.blob_path(d)).ok().map(|m| m.len()))
    }

    /// Record a problem, once per [`Key`].
    fn add(&mut self, p: Problem) {
        if self.seen.insert((p.kind, p.digest.clone(), p.repository.clone(), p.tag.clone())) {
            self.report.problems.push(p);
        }
    }

    fn repository(&mut self, repo: &Repository, blobs: &HashMap<Digest, u64>) -> Result<()> {
        self.report.repositories += 1;
        let mut graph = Graph { revisions: self.storage.revisions(repo)?.into_iter().collect(), ..Graph::default() };
        let mut revisions: Vec<&Digest> = graph.revisions.iter().collect();
        revisions.sort();
        let revisions: Vec<Digest> = revisions.into_iter().cloned().collect();
        for d in &revisions {
            self.report.manifests += 1;
            self.manifest(repo, d, blobs, &mut graph)?;
        }
        self.tags(repo, &mut graph)?;
        self.links(repo, blobs)?;
        self.graphs.insert(repo.to_string(), graph);
        Ok(())
    }

    /// Check manifest `d` of `repo`: its revision record, its bytes, what it references.
    fn manifest(
        &mut self,
        repo: &Repository,
        d: &Digest,
        blobs: &HashMap<Digest, u64>,
        graph: &mut Graph,
    ) -> Result<()> {
        let revision_path = self.storage.revision_path(repo, d);
        let stored = match self.storage.resolve(repo, &Reference::Digest(d.clone())) {
            Ok(s) => s,
            Err(e) => {
                let text = format!(
                    "manifest {d} of {repo}: its revision record does not parse: {}",
                    untrusted(&e.to_string())
                );
                self.add(problem_of(Kind::Unparsable, d, Some(repo), revision_path, text));
                return Ok(());
            }
        };
        if self.size_of(d, blobs).is_none() {
            let text = format!("manifest {d} of {repo} is not in the store");
            self.add(problem_of(Kind::Missing, d, None, self.storage.blob_path(d), text));
            return Ok(());
        }
        if self.bad.contains(d) {
            return Ok(());
        }
        let parsed = self
            .storage
            .read_manifest_blob(d)
            .and_then(|bytes| storage::references(&bytes, &stored.revision.media_type));
        let refs = match parsed {
            Ok(r) => r,
            Err(e) => {
                let media_type = untrusted(&stored.revision.media_type);
                let text =
                    format!("manifest {d} of {repo} does not parse as {media_type}: {}", untrusted(&e.to_string()));
                self.add(problem_of(Kind::Unparsable, d, Some(repo), self.storage.blob_path(d), text));
                return Ok(());
            }
        };
        for (b, size) in &refs.blobs {
            graph.parents.entry(b.clone()).or_default().push(d.clone());
            self.reference(repo, d, b, *size, blobs)?;
        }
        for (c, size) in &refs.children {
            if !graph.revisions.contains(c) {
                self.report.absent_children += 1;
                continue;
            }
            graph.parents.entry(c.clone()).or_default().push(d.clone());
            self.reference(repo, d, c, *size, blobs)?;
        }
        Ok(())
    }

    /// Blob `b` that manifest `m` of `repo` references with a descriptor of `size` bytes:
    /// in the store, of that size, linked into the repository.
    fn reference(
        &mut self,
        repo: &Repository,
        m: &Digest,
        b: &Digest,
        size: u64,
        blobs: &HashMap<Digest, u64>,
    ) -> Result<()> {
        let path = self.storage.blob_path(b);
        match self.size_of(b, blobs) {
            None => {
                let text = format!("blob {b} is not in the store (manifest {m} of {repo} references it)");
                self.add(problem_of(Kind::Missing, b, None, path, text));
                return Ok(());
            }
            Some(_) if self.bad.contains(b) => return Ok(()),
            Some(actual) if actual != size => {
                let text = format!("blob {b} is {actual} bytes; manifest {m} of {repo} says {size}");
                self.add(problem_of(Kind::WrongSize, b, Some(repo), path, text));
            }
            Some(_) => {}
        }
        if self.storage.link_size(repo, b)?.is_none() {
            let text = format!("blob {b} is not linked into {repo} (manifest {m} references it): pulls of it fail");
            self.add(problem_of(Kind::Unlinked, b, Some(repo), self.storage.link_path(repo, b), text));
        }
        Ok(())
    }

    /// Every tag of `repo` names a manifest it holds.
    fn tags(&mut self, repo: &Repository, graph: &mut Graph) -> Result<()> {
        for name in self.storage.tags(repo)? {
            self.report.tags += 1;
            let Some(tag) = Tag::parse(&name) else { continue };
            let path = self.storage.tag_path(repo, &tag);
            let (digest, text) = match self.storage.tag_target(repo, &tag) {
                // A manifest pushed since the revisions were listed is held too.
                Ok(Some(d)) if graph.revisions.contains(&d) || self.storage.revision_path(repo, &d).is_file() => {
                    graph.tags.entry(d).or_default().push(name);
                    continue;
                }
                Ok(Some(d)) => {
                    let text = format!("tag {repo}:{name} names manifest {d}, which {repo} does not hold");
                    (Some(d), text)
                }
                Ok(None) => continue, // deleted since it was listed
                Err(e) => (None, format!("tag {repo}:{name} does not name a manifest: {}", untrusted(&e.to_string()))),
            };
            let hurts = digest
                .iter()
                .map(|d| Image { repository: repo.to_string(), tag: Some(name.clone()), digest: d.clone() })
                .collect();
            let p = Problem {
                kind: Kind::DanglingTag,
                digest,
                repository: Some(repo.to_string()),
                tag: Some(name),
                path,
                problem: text,
                hurts,
            };
            self.add(p);
        }
        Ok(())
    }

    /// Every link of `repo` names a blob of the store, of the size it records.
    fn links(&mut self, repo: &Repository, blobs: &HashMap<Digest, u64>) -> Result<()> {
        for d in self.storage.links(repo)? {
            self.report.links += 1;
            let path = self.storage.link_path(repo, &d);
            let (kind, text) = match (self.size_of(&d, blobs), self.storage.link_size(repo, &d)) {
                (_, Err(e)) => (Kind::Unparsable, e.to_string()),
                // A blob a manifest references is reported missing already.
                (None, _) if self.seen.contains(&(Kind::Missing, Some(d.clone()), None, None)) => continue,
                (None, _) => (Kind::DanglingLink, format!("{repo} links blob {d}, which is not in the store")),
                (Some(actual), Ok(Some(Some(recorded)))) if recorded != actual && !self.bad.contains(&d) => {
                    (Kind::WrongSize, format!("blob {d} is {actual} bytes; its link in {repo} records {recorded}"))
                }
                _ => continue,
            };
            self.add(problem_of(kind, &d, Some(repo), path, text));
        }
        Ok(())
    }

    /// The report, each problem with the images it hurts.
    fn finish(mut self) -> Report {
        for p in &mut self.report.problems {
            let Some(d) = &p.digest else { continue };
            if p.kind == Kind::DanglingTag {
                continue;
            }
            let mut hurts = Vec::new();
            for (repo, graph) in &self.graphs {
                if p.repository.as_ref().map_or(true, |r| r == repo) {
                    hurts.extend(graph.hurt_by(repo, d));
                }
            }
            p.hurts = hurts;
        }
        self.report.problems.sort_by(|a, b| {
            (a.kind, &a.digest, &a.repository, &a.tag).cmp(&(b.kind, &b.digest, &b.repository, &b.tag))
        });
        self.report
    }
}

/// What [`repair`] did.
#[derive(Debug, Default, Serialize)]
pub struct Repaired {
    /// Blobs put back from the bundle (checked against the signed manifest while read,
    /// against their digest when committed).
    pub restored: Vec<Digest>,
    /// Blobs the bundle carries whose chunks could not be read good (see `volumes`).
    pub not_restored: Vec<Digest>,
    /// Damaged blobs the bundle does not carry.
    pub not_carried: Vec<Digest>,
    /// The volumes read.
    pub volumes: Vec<VolumeReport>,
}

/// Put back, from `bundle`, every blob whose bytes `report` found damaged or missing: only
/// those entries are read (verified while read), and written through the store's writer
/// under the store's run lock (an unpack into the root waits, and so does this one for an
/// unpack at work: `waiting` hears the holder's pid).
pub fn repair(
    root: &Path,
    bundle: &Bundle,
    report: &Report,
    jobs: usize,
    progress: &dyn Progress,
    waiting: impl FnOnce(Option<u32>),
) -> Result<Repaired> {
    let storage = Storage::open(&Config::load(root)?.storage_dir(root))?;
    let store = storage.blobs();
    let wanted: BTreeSet<&Digest> =
        report.problems.iter().filter(|p| p.kind.restorable()).filter_map(|p| p.digest.as_ref()).collect();
    let mut entries: BTreeMap<&Digest, usize> = BTreeMap::new();
    for (e, entry) in bundle.manifest.entries.iter().enumerate() {
        if entry.kind == EntryKind::Blob && wanted.contains(&entry.digest) {
            entries.entry(&entry.digest).or_insert(e);
        }
    }
    let mut repaired = Repaired {
        not_carried: wanted.iter().filter(|d| !entries.contains_key(*d)).map(|d| (*d).clone()).collect(),
        ..Repaired::default()
    };
    if entries.is_empty() {
        return Ok(repaired);
    }
    let _lock = store.lock_run(waiting)?;
    let journal_before = store.state(State::Journal(&bundle.manifest.id)).exists();
    // Only blob entries are wanted: no included file is written.
    let ex = Extractor::only(bundle, store, root.join("files"), entries.values().copied().collect())?;
    for v in bundle.manifest.volume_ids() {
        if !bundle.index.chunks_in(v).iter().any(|&c| ex.action(c) == Action::Write) {
            continue;
        }
        progress.start(&format!("volume {v}"), bundle.volume_payload(v));
        repaired.volumes.push(bundle.read_volume(v, &ex, jobs, progress)?);
        ex.flush()?;
        progress.finish();
    }
    for (d, &e) in &entries {
        let into = if ex.committed(e) { &mut repaired.restored } else { &mut repaired.not_restored };
        into.push((*d).clone());
    }
    // A journal an unfinished unpack of this bundle left stays for it to resume; this
    // run's own goes (a journal keeps gc from sweeping what it names).
    if !journal_before {
        ex.cleanup()?;
    }
    Ok(repaired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Digest {
        Digest::of(s.as_bytes())
    }

    #[test]
    fn a_layer_hurts_the_manifests_that_use_it_and_the_indexes_above_them() {
        // index (tagged v1, v1-latest) → child manifest (untagged) → layer; other (tagged) → its own layer.
        let mut g = Graph::default();
        g.revisions.extend([d("index"), d("child"), d("other")]);
        g.parents.insert(d("layer"), vec![d("child")]);
        g.parents.insert(d("child"), vec![d("index")]);
        g.parents.insert(d("own"), vec![d("other")]);
        g.tags.insert(d("index"), vec!["v1".into(), "v1-latest".into()]);
        g.tags.insert(d("other"), vec!["v2".into()]);
        let mut refs: Vec<String> = g.hurt_by("ns/app", &d("layer")).iter().map(Image::reference).collect();
        refs.sort();
        let mut want = vec!["ns/app:v1".to_string(), "ns/app:v1-latest".into(), format!("ns/app@{}", d("child"))];
        want.sort();
        assert_eq!(refs, want);
        // A damaged manifest hurts itself and what is above it.
        let refs: Vec<String> = g.hurt_by("ns/app", &d("other")).iter().map(Image::reference).collect();
        assert_eq!(refs, ["ns/app:v2"]);
        assert!(g.hurt_by("ns/app", &d("unrelated")).is_empty());
    }

    #[test]
    fn only_damage_to_a_blobs_bytes_is_restorable() {
        let restorable: Vec<Kind> = [
            Kind::Missing,
            Kind::WrongHash,
            Kind::WrongSize,
            Kind::Unreadable,
            Kind::Unparsable,
            Kind::DanglingTag,
            Kind::DanglingLink,
            Kind::Unlinked,
        ]
        .into_iter()
        .filter(|k| k.restorable())
        .collect();
        assert_eq!(restorable, [Kind::Missing, Kind::WrongHash, Kind::Unreadable, Kind::DanglingLink]);
    }
}
