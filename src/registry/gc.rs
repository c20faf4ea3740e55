//! Garbage collection of a registry root (`airlift gc`): mark what is reachable, sweep
//! the blob files nothing reaches and nobody touched for the grace period.
//!
//! **Mark.** Reachable are: every manifest revision of every repository (a revision kept
//! is a root, tagged or not: `prune` and DELETE remove revisions, gc only removes blobs),
//! walked ([`crate::oci::walk`]) to its config, layers and child manifests; the subject
//! of every revision that has one (a referrer keeps its subject); the manifest every tag
//! names; and every blob an unpack journal records as committed (an unpack running, or
//! cut off, has put it in place and not registered it yet:
//! [`crate::bundle::extract::journaled_blobs`]). In-flight uploads are not blobs yet: they
//! live in the upload area and go only by their own age rule
//! ([`Storage::purge_uploads`], the server's upload expiry).
//!
//! **Sweep.** A blob file is swept when it is not reachable, and it and every repository
//! link to it are older than the grace period (default one hour): a blob a writer has
//! just put in place, or linked by an upload or a mount, is being made reachable and
//! stays. Its links go with it; the bytes freed are the sum of the swept files' sizes.
//!
//! **Why a push racing a sweep never leaves a manifest that names a missing blob.**
//! A manifest is committed (its revision written, by a push or by `unpack --root`'s
//! register) only after it checked, under `gc.lock` held shared, that every blob it names
//! is in the store; the check and the commit happen under the one lock
//! ([`Storage::lock_commits`]). The sweep holds the same lock exclusively: having taken
//! it, it lists the revisions, links and journals again, walks the revisions the first
//! mark did not see, drops every candidate that became reachable or was linked since,
//! and only then unlinks. So a manifest commit falls wholly before the sweep (the re-mark
//! sees its revision and keeps its blobs) or wholly after it (its check finds a swept
//! blob missing and the client gets `MANIFEST_BLOB_UNKNOWN`; it pushes the blob again).
//! A blob whose upload or mount finished just before the sweep has a fresh link and
//! stays for the grace period; with `--grace 0s` it may go, and the manifest that needs
//! it is then refused, never stored. What the grace alone protects: a blob an unpack has
//! written but not yet journaled (a moment), and one found in place that an unpack means
//! to register (its register then fails and names the blob; running it again writes it).
//! The marking itself runs without the lock, so pushes wait only for the sweep.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, SystemTime};

use oci_spec::image::Descriptor;
use serde::Serialize;

use crate::bundle::extract::journaled_blobs;
use crate::digest::Digest;
use crate::error::{usage, Error, Result};
use crate::oci::layout::BlobRef;
use crate::oci::names::{Reference, Repository, Tag};
use crate::oci::walk::{walk, Doc, Node, Role, Visitor};
use crate::store::{self, StoredBlob};

use super::config::Config;
use super::limits::Limits;
use super::storage::{Storage, StorageError};

/// The grace period when none is given.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// What `airlift gc` is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// Only blobs older than this (and all their links) are swept.
    pub grace: Duration,
    /// Report what would go; remove nothing.
    pub dry_run: bool,
}

/// A blob swept (or, in a dry run, that would be).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Swept {
    pub digest: Digest,
    pub size: u64,
}

/// What a collection did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub blobs_swept: usize,
    pub bytes_freed: u64,
    /// Sorted by digest.
    pub swept: Vec<Swept>,
    pub blobs_kept: usize,
    /// Upload sessions past the server's upload expiry, removed.
    pub uploads_purged: usize,
}

/// Collect the garbage of the registry root `root`.
pub fn collect(root: &Path, options: &Options) -> Result<Report> {
    let config = Config::load(root)?;
    let storage = Storage::open(&config.storage_dir(root))?;
    collect_in(&storage, options)
}

/// Collect the garbage of `storage` (see the module doc).
pub fn collect_in(storage: &Storage, options: &Options) -> Result<Report> {
    let cutoff = SystemTime::now().checked_sub(options.grace).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut mark = Mark::default();
    mark.scan(storage)?;
    let blobs = store::list_blobs(storage.blobs().root())?;
    let total = blobs.len();
    let mut candidates: Vec<StoredBlob> = blobs.into_iter().filter(|b| mark.sweepable(b, cutoff)).collect();
    candidates.sort_by(|a, b| a.digest.cmp(&b.digest));
    let (swept, uploads_purged) = if options.dry_run {
        (candidates.into_iter().map(|b| Swept { digest: b.digest, size: b.size }).collect(), 0)
    } else {
        let swept = sweep(storage, &mut mark, candidates, cutoff)?;
        (swept, storage.purge_uploads(Limits::default().upload_expiry)?)
    };
    Ok(Report {
        dry_run: options.dry_run,
        blobs_swept: swept.len(),
        bytes_freed: swept.iter().map(|s| s.size).sum(),
        blobs_kept: total - swept.len(),
        swept,
        uploads_purged,
    })
}

/// Under the commit lock: mark again, then remove the candidates still unreachable and
/// untouched, with their links.
fn sweep(storage: &Storage, mark: &mut Mark, candidates: Vec<StoredBlob>, cutoff: SystemTime) -> Result<Vec<Swept>> {
    let _no_commits = storage.lock_commits()?;
    mark.scan(storage)?;
    let mut swept = Vec::new();
    for mut blob in candidates {
        let path = storage.blob_path(&blob.digest);
        // Written again since the listing (swept by another gc, then pushed anew)?
        match std::fs::metadata(&path).and_then(|m| m.modified()) {
            Ok(modified) => blob.modified = modified,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&path, e)),
        }
        if !mark.sweepable(&blob, cutoff) {
            continue;
        }
        for repo in mark.links.get(&blob.digest).map(|l| &l.holders[..]).unwrap_or_default() {
            match storage.delete_blob(repo, &blob.digest) {
                Ok(()) | Err(StorageError::BlobUnknown(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match std::fs::remove_file(&path) {
            Ok(()) => swept.push(Swept { digest: blob.digest, size: blob.size }),
            // Another gc swept it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    Ok(swept)
}

/// The repositories linking a blob, and when the newest of those links was made.
struct Links {
    holders: Vec<Repository>,
    newest: SystemTime,
}

/// What a mark found.
#[derive(Default)]
struct Mark {
    reachable: HashSet<Digest>,
    /// Manifests and indexes walked (their graphs are in `reachable`).
    walked: HashSet<Digest>,
    links: HashMap<Digest, Links>,
}

impl Mark {
    /// Mark from every revision, subject, tag and journal; list every link. Revisions
    /// walked by an earlier scan are not walked again; links are listed afresh.
    fn scan(&mut self, storage: &Storage) -> Result<()> {
        self.links.clear();
        for name in storage.repositories()? {
            let repo = Repository::parse(&name).ok_or_else(|| usage(format!("bad repository name '{name}'")))?;
            self.scan_repository(storage, &repo)?;
        }
        self.reachable.extend(journaled_blobs(storage.blobs())?);
        Ok(())
    }

    fn scan_repository(&mut self, storage: &Storage, repo: &Repository) -> Result<()> {
        for (digest, made) in storage.link_times(repo)? {
            let links = self.links.entry(digest).or_insert(Links { holders: Vec::new(), newest: made });
            links.holders.push(repo.clone());
            links.newest = links.newest.max(made);
        }
        for digest in storage.revisions(repo)? {
            if !self.walked.contains(&digest) {
                self.mark_manifest(storage, repo, &Reference::Digest(digest))?;
            }
        }
        for tag in storage.tags(repo)? {
            let Some(tag) = Tag::parse(&tag) else { continue };
            self.mark_manifest(storage, repo, &Reference::Tag(tag))?;
        }
        Ok(())
    }

    /// Mark the manifest `reference` names in `repo` and its graph. One deleted since the
    /// listing is skipped.
    fn mark_manifest(&mut self, storage: &Storage, repo: &Repository, reference: &Reference) -> Result<()> {
        let stored = match storage.resolve(repo, reference) {
            Ok(s) => s,
            Err(StorageError::ManifestUnknown(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if self.walked.contains(&stored.digest) {
            return Ok(());
        }
        let top = BlobRef {
            digest: stored.digest.clone(),
            size: stored.revision.size,
            media_type: stored.revision.media_type,
        };
        walk(storage.blobs(), &top, self).map_err(|e| {
            usage(format!(
                "repository {repo}, manifest {}: {e}; gc removes nothing while a manifest cannot be read: check the root with airlift fsck",
                stored.digest
            ))
        })
    }

    /// Whether `blob` may go: unreachable, and it and its links older than `cutoff`.
    fn sweepable(&self, blob: &StoredBlob, cutoff: SystemTime) -> bool {
        !self.reachable.contains(&blob.digest)
            && blob.modified < cutoff
            && self.links.get(&blob.digest).map_or(true, |l| l.newest < cutoff)
    }
}

impl Visitor for Mark {
    fn enter(&mut self, _parent: &Node, child: &BlobRef, _desc: &Descriptor) -> Result<bool> {
        Ok(!self.walked.contains(&child.digest))
    }

    /// Record the node, and the subject of a manifest or index (a referrer keeps it).
    fn visit(&mut self, node: &Node) -> Result<()> {
        self.reachable.insert(node.blob.digest.clone());
        if matches!(node.role, Role::Top | Role::Child) {
            self.walked.insert(node.blob.digest.clone());
        }
        let subject = match node.doc {
            Doc::Manifest(m) => m.subject().as_ref(),
            Doc::Index(i) => i.subject().as_ref(),
            Doc::Schema1 | Doc::Blob | Doc::Absent => None,
        };
        // A subject's digest was checked when the manifest was stored.
        self.reachable.extend(subject.and_then(|s| BlobRef::of(s).ok()).map(|s| s.digest));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
