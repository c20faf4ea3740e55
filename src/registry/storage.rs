//! Registry storage: one content-addressed blob store shared by every repository, and
//! per-repository links, manifest revisions, tags and referrers.
//!
//! ```text
//! DIR/                                       Config::storage_dir(root)
//!   oci-layout                               (written by BlobStore)
//!   blobs/sha256/<hex>                       every blob, shared (crate::store::BlobStore)
//!   .airlift/tmp/                            BlobStore's temp files (unpack --root)
//!   repositories/<name>/                     <name> spans directories: ns/app
//!     _links/<hex>                           "<size>\n": the repository holds this blob, of that size
//!     _manifests/revisions/<hex>             {"mediaType":…,"size":…,"subject":…}: a manifest of the repository
//!     _manifests/tags/<tag>                  "sha256:<hex>\n"
//!     _referrers/<subject hex>/<hex>         descriptor of a manifest whose subject is <subject>
//!   uploads/<id>/state                       {"repository":…,"started":…}
//!   uploads/<id>/data                        bytes received so far
//!   uploads/.airlift-tmp-*                   temp files of manifests being stored
//!   gc.lock                                  flock: shared by manifest commits, exclusive by gc's sweep
//! ```
//! [`Storage::path`] builds every path here (blob paths come from `BlobStore`), and only
//! from validated names, tags, upload ids and digests. Names cannot collide with the
//! `_`-prefixed directories: a repository path component starts with `[a-z0-9]`.
//!
//! Every file is committed by temp file + fsync + rename. A revision is written after
//! its blob, its links and its referrer entry, so it is the commit point of a manifest;
//! readers ignore a referrer entry whose revision is absent. `airlift unpack --root`
//! writes blobs into the same store and calls `link_blob`, `link_manifest` and `tag`
//! while a server may be running: every operation is safe against concurrent ones.
//!
//! A link records the blob's size when it is written (the blob was committed, so checked,
//! just before); a blob file whose size differs from it is damaged and never served (see
//! [`Storage::open_blob`]). Links written before sizes were recorded are empty: the file's
//! own size is trusted for them, and `airlift fsck` checks it against every manifest's
//! descriptors.
//! A manifest's check of its blobs and its commit happen under `gc.lock` (shared), so
//! `airlift gc`'s sweep (exclusive, see `registry::gc`) falls wholly before or after them.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{IoContext, Result};
use crate::oci::walk::Kind;
use crate::oci::{doc_type, DocType, MAX_MANIFEST, OCI_MANIFEST};
use crate::store::{self, write_atomic, BlobStore};

use super::names::UploadId;
use crate::oci::names::{valid_repository, valid_tag, Reference, Repository, Tag};

/// What went wrong, in the terms of the distribution API.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid repository name '{0}'")]
    NameInvalid(String),
    #[error("invalid tag '{0}'")]
    TagInvalid(String),
    #[error("repository {0} is not known")]
    NameUnknown(Repository),
    #[error("blob {0} is not known")]
    BlobUnknown(Digest),
    #[error("manifest {0} is not known")]
    ManifestUnknown(String),
    #[error("invalid manifest: {0}")]
    ManifestInvalid(String),
    #[error("manifest references {0}, which is not in the repository")]
    ManifestBlobUnknown(Digest),
    #[error("content is {actual}, not {expected}")]
    DigestInvalid { expected: Digest, actual: Digest },
    #[error("upload {0} is not known")]
    UploadUnknown(String),
    #[error("{0}")]
    TooManyUploads(String),
    #[error(transparent)]
    Io(#[from] crate::error::Error),
}

type SResult<T> = std::result::Result<T, StorageError>;

impl From<StorageError> for crate::error::Error {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Io(e) => e,
            e @ StorageError::DigestInvalid { .. } => crate::error::integrity(e.to_string()),
            e => crate::error::usage(e.to_string()),
        }
    }
}

/// A manifest of a repository, as recorded in its revision file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub media_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
}

/// A stored manifest: its digest and revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub digest: Digest,
    pub revision: Revision,
}

/// An open upload session.
#[derive(Debug)]
pub struct Upload {
    pub id: UploadId,
    /// The file the bytes go to.
    pub data: PathBuf,
    /// Bytes received so far.
    pub size: u64,
}

#[derive(Serialize, Deserialize)]
struct UploadState {
    repository: String,
    started: u64,
}

/// Every place in the storage directory (see the module comment).
enum Loc<'a> {
    Repositories,
    Repo(&'a Repository),
    Links(&'a Repository),
    Link(&'a Repository, &'a Digest),
    Revisions(&'a Repository),
    Revision(&'a Repository, &'a Digest),
    Tags(&'a Repository),
    Tag(&'a Repository, &'a Tag),
    Referrers(&'a Repository, &'a Digest),
    Referrer(&'a Repository, &'a Digest, &'a Digest),
    Uploads,
    Upload(&'a UploadId),
    UploadState(&'a UploadId),
    UploadData(&'a UploadId),
    GcLock,
}

pub struct Storage {
    dir: PathBuf,
    blobs: BlobStore,
}

impl Storage {
    /// Open the storage at `dir` (`Config::storage_dir(root)`), creating its layout.
    pub fn open(dir: &Path) -> Result<Storage> {
        let blobs = BlobStore::create(dir)?;
        let storage = Storage { dir: dir.to_path_buf(), blobs };
        for d in [storage.path(Loc::Repositories), storage.path(Loc::Uploads)] {
            fs::create_dir_all(&d).at(&d)?;
        }
        Ok(storage)
    }

    /// The one function that builds paths (besides `BlobStore`'s blob paths).
    fn path(&self, loc: Loc) -> PathBuf {
        let repos = self.dir.join("repositories");
        let uploads = self.dir.join("uploads");
        match loc {
            Loc::Repositories => repos,
            Loc::Repo(r) => repos.join(r.as_str()),
            Loc::Links(r) => repos.join(r.as_str()).join("_links"),
            Loc::Revisions(r) => repos.join(r.as_str()).join("_manifests").join("revisions"),
            Loc::Link(r, d) => repos.join(r.as_str()).join("_links").join(d.hex()),
            Loc::Revision(r, d) => repos.join(r.as_str()).join("_manifests").join("revisions").join(d.hex()),
            Loc::Tags(r) => repos.join(r.as_str()).join("_manifests").join("tags"),
            Loc::Tag(r, t) => repos.join(r.as_str()).join("_manifests").join("tags").join(t.as_str()),
            Loc::Referrers(r, s) => repos.join(r.as_str()).join("_referrers").join(s.hex()),
            Loc::Referrer(r, s, d) => repos.join(r.as_str()).join("_referrers").join(s.hex()).join(d.hex()),
            Loc::Uploads => uploads,
            Loc::Upload(id) => uploads.join(id.as_str()),
            Loc::UploadState(id) => uploads.join(id.as_str()).join("state"),
            Loc::UploadData(id) => uploads.join(id.as_str()).join("data"),
            Loc::GcLock => self.dir.join("gc.lock"),
        }
    }

    /// The shared content-addressed blob store.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// The blob store as the server writes into it: temp files under `uploads/`, which an
    /// unpack's sweep of the store's temp files (under its run lock, while this server
    /// runs) does not reach.
    fn served_blobs(&self) -> BlobStore {
        self.blobs.clone().temps_in(self.path(Loc::Uploads))
    }

    // ---- the API `unpack --root` uses ------------------------------------------------

    /// Record that `repo` holds the (committed) blob `digest`.
    pub fn link_blob(&self, repo: &str, digest: &Digest) -> Result<()> {
        Ok(self.add_link(&repository(repo)?, digest)?)
    }

    /// Register the committed blob `digest` as a manifest (or index) of `repo`. Every blob
    /// it references must be in the repository already, and so must every child manifest
    /// of an index, unless `sparse`: a bundle packed with `--platform` keeps the original
    /// index, whose other platforms' manifests were left out on purpose (pulls for the
    /// platforms present resolve; the others get MANIFEST_UNKNOWN).
    pub fn link_manifest(&self, repo: &str, digest: &Digest, sparse: bool) -> Result<()> {
        let repo = repository(repo)?;
        let bytes = self.read_manifest_blob(digest)?;
        let parsed = parse_manifest(&bytes, None)?;
        let _commit = self.gc_lock(false)?;
        self.check_blobs(&repo, &parsed)?;
        if !sparse {
            self.check_children(&repo, &parsed)?;
        }
        self.commit_manifest(&repo, digest, bytes.len() as u64, parsed)?;
        Ok(())
    }

    /// Point `tag` of `repo` at the registered manifest `digest`.
    pub fn tag(&self, repo: &str, tag: &str, digest: &Digest) -> Result<()> {
        let repo = repository(repo)?;
        let tag = Tag::parse(tag).ok_or_else(|| StorageError::TagInvalid(tag.to_string()))?;
        Ok(self.set_tag(&repo, &tag, digest)?)
    }

    // ---- blobs -------------------------------------------------------------------------

    /// The size of blob `digest` when `repo` holds it: the size its link records. A blob
    /// file of another size is an error (damaged: never served).
    pub fn blob_size(&self, repo: &Repository, digest: &Digest) -> SResult<Option<u64>> {
        let path = self.blobs.path(digest);
        match fs::metadata(&path) {
            Ok(m) => self.checked_size(repo, digest, m.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(crate::error::Error::io(&path, e).into()),
        }
    }

    /// Blob `digest` of `repo` opened for serving, and its size, when `repo` holds it; an
    /// error when the open file's size is not the one its link records.
    pub fn open_blob(&self, repo: &Repository, digest: &Digest) -> SResult<Option<(u64, fs::File)>> {
        let path = self.blobs.path(digest);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(crate::error::Error::io(&path, e).into()),
        };
        let actual = file.metadata().at(&path)?.len();
        Ok(self.checked_size(repo, digest, actual)?.map(|size| (size, file)))
    }

    /// `actual` (the blob file's size) when `repo` links the blob and the link records that
    /// size or none (an old, empty link); an integrity error when it records another.
    fn checked_size(&self, repo: &Repository, digest: &Digest, actual: u64) -> SResult<Option<u64>> {
        match self.link_size(repo, digest)? {
            None => Ok(None),
            Some(Some(recorded)) if recorded != actual => Err(crate::error::integrity(format!(
                "{}: blob {digest} of {repo} is {actual} bytes, its link records {recorded}: damaged (run airlift fsck)",
                self.blobs.path(digest).display()
            ))
            .into()),
            Some(_) => Ok(Some(actual)),
        }
    }

    /// Whether `repo` links blob `digest` (outer `None`: it does not), and the size the link
    /// records (inner `None`: an old, empty link).
    pub fn link_size(&self, repo: &Repository, digest: &Digest) -> SResult<Option<Option<u64>>> {
        let path = self.path(Loc::Link(repo, digest));
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(crate::error::Error::io(&path, e).into()),
        };
        match text.trim() {
            "" => Ok(Some(None)),
            t => t.parse().map(|n| Some(Some(n))).map_err(|_| {
                crate::error::integrity(format!(
                    "{}: the link of blob {digest} in {repo} is not a size",
                    path.display()
                ))
                .into()
            }),
        }
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs.path(digest)
    }

    /// Link a blob the store holds into `repo`, recording its size (every writer links a
    /// blob just after committing it, so the file's size is the checked one).
    pub fn add_link(&self, repo: &Repository, digest: &Digest) -> SResult<()> {
        let size = match fs::metadata(self.blobs.path(digest)) {
            Ok(m) if m.is_file() => m.len(),
            _ => return Err(StorageError::BlobUnknown(digest.clone())),
        };
        let link = self.path(Loc::Link(repo, digest));
        if !link.is_file() {
            write_atomic(&link, format!("{size}\n").as_bytes())?;
        }
        Ok(())
    }

    /// Mount a blob of `from` into `to`; false when `from` does not hold it.
    pub fn mount(&self, from: &Repository, to: &Repository, digest: &Digest) -> SResult<bool> {
        if self.blob_size(from, digest)?.is_none() {
            return Ok(false);
        }
        self.add_link(to, digest)?;
        Ok(true)
    }

    /// Remove `repo`'s link to a blob (the shared blob stays: another repository or an
    /// unpack may hold it).
    pub fn delete_blob(&self, repo: &Repository, digest: &Digest) -> SResult<()> {
        let link = self.path(Loc::Link(repo, digest));
        remove(&link)?.then_some(()).ok_or_else(|| StorageError::BlobUnknown(digest.clone()))
    }

    // ---- manifests -----------------------------------------------------------------------

    /// Store manifest bytes pushed to `repo` (byte for byte), register them, and tag them
    /// when `tag` is given. `content_type` is the media type the client declared.
    pub fn put_manifest(
        &self,
        repo: &Repository,
        bytes: &[u8],
        content_type: Option<&str>,
        tag: Option<&Tag>,
    ) -> SResult<Stored> {
        let digest = Digest::of(bytes);
        // Validate before anything is written, so a bad manifest leaves nothing behind.
        let parsed = parse_manifest(bytes, content_type)?;
        let _commit = self.gc_lock(false)?;
        self.check_references(repo, &parsed)?;
        self.served_blobs().put_bytes(&digest, bytes)?;
        let stored = self.commit_manifest(repo, &digest, bytes.len() as u64, parsed)?;
        if let Some(tag) = tag {
            self.set_tag(repo, tag, &digest)?;
        }
        Ok(stored)
    }

    /// Take `gc.lock`: shared for a manifest's check and commit, exclusive for gc's sweep.
    /// Released when the file is dropped.
    fn gc_lock(&self, exclusive: bool) -> Result<fs::File> {
        let path = self.path(Loc::GcLock);
        let file = fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).at(&path)?;
        if exclusive {
            store::lock_exclusive(&file, &path, true)?;
        } else {
            store::lock_shared(&file, &path)?;
        }
        Ok(file)
    }

    /// Hold off every manifest commit until the returned file is dropped (gc's sweep).
    pub fn lock_commits(&self) -> Result<fs::File> {
        self.gc_lock(true)
    }

    fn check_references(&self, repo: &Repository, parsed: &Parsed) -> SResult<()> {
        self.check_blobs(repo, parsed)?;
        self.check_children(repo, parsed)
    }

    fn check_blobs(&self, repo: &Repository, parsed: &Parsed) -> SResult<()> {
        for (d, _) in &parsed.blobs {
            if self.blob_size(repo, d)?.is_none() {
                return Err(StorageError::ManifestBlobUnknown(d.clone()));
            }
        }
        Ok(())
    }

    fn check_children(&self, repo: &Repository, parsed: &Parsed) -> SResult<()> {
        for (d, _) in &parsed.children {
            if !self.path(Loc::Revision(repo, d)).is_file() {
                return Err(StorageError::ManifestBlobUnknown(d.clone()));
            }
        }
        Ok(())
    }

    fn commit_manifest(&self, repo: &Repository, digest: &Digest, size: u64, parsed: Parsed) -> SResult<Stored> {
        self.add_link(repo, digest)?;
        let subject = parsed.subject.as_ref().map(|(s, _)| s.clone());
        if let Some((subject, artifact_type)) = &parsed.subject {
            let mut d = serde_json::json!({
                "mediaType": parsed.media_type,
                "digest": digest.to_string(),
                "size": size,
            });
            if let Some(a) = artifact_type {
                d["artifactType"] = a.clone().into();
            }
            if let Some(a) = &parsed.annotations {
                d["annotations"] = a.clone();
            }
            write_atomic(&self.path(Loc::Referrer(repo, subject, digest)), &json_bytes(&d))?;
        }
        let revision = Revision { media_type: parsed.media_type, size, subject };
        let rev_path = self.path(Loc::Revision(repo, digest));
        let bytes = json_bytes(&revision);
        if fs::read(&rev_path).ok().as_deref() != Some(&bytes[..]) {
            write_atomic(&rev_path, &bytes)?;
        }
        Ok(Stored { digest: digest.clone(), revision })
    }

    fn set_tag(&self, repo: &Repository, tag: &Tag, digest: &Digest) -> SResult<()> {
        if !self.path(Loc::Revision(repo, digest)).is_file() {
            return Err(StorageError::ManifestUnknown(digest.to_string()));
        }
        write_atomic(&self.path(Loc::Tag(repo, tag)), format!("{digest}\n").as_bytes())?;
        Ok(())
    }

    /// The manifest a tag or digest names in `repo`.
    pub fn resolve(&self, repo: &Repository, reference: &Reference) -> SResult<Stored> {
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => {
                self.tag_target(repo, t)?.ok_or_else(|| StorageError::ManifestUnknown(t.to_string()))?
            }
        };
        let path = self.path(Loc::Revision(repo, &digest));
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::ManifestUnknown(reference.to_string()))
            }
            Err(e) => return Err(crate::error::Error::io(&path, e).into()),
        };
        let revision: Revision = serde_json::from_slice(&bytes)
            .map_err(|e| crate::error::usage(format!("{}: not a revision record: {e}", path.display())))?;
        Ok(Stored { digest, revision })
    }

    /// The digest `tag` of `repo` points at (whether or not that manifest is held).
    pub fn tag_target(&self, repo: &Repository, tag: &Tag) -> SResult<Option<Digest>> {
        let path = self.path(Loc::Tag(repo, tag));
        match fs::read_to_string(&path) {
            Ok(s) => Ok(Some(s.trim().parse().map_err(|e| crate::error::usage(format!("{}: {e}", path.display())))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(crate::error::Error::io(&path, e).into()),
        }
    }

    /// The bytes of a stored manifest, checked against its digest.
    pub fn read_manifest_blob(&self, digest: &Digest) -> SResult<Vec<u8>> {
        let path = self.blobs.path(digest);
        let file = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::BlobUnknown(digest.clone()))
            }
            Err(e) => return Err(crate::error::Error::io(&path, e).into()),
        };
        let mut bytes = Vec::new();
        file.take(MAX_MANIFEST + 1).read_to_end(&mut bytes).at(&path)?;
        if bytes.len() as u64 > MAX_MANIFEST {
            return Err(StorageError::ManifestInvalid(format!("{digest} is larger than {MAX_MANIFEST} bytes")));
        }
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(StorageError::DigestInvalid { expected: digest.clone(), actual });
        }
        Ok(bytes)
    }

    /// Delete a tag, or (by digest) a manifest with its tags and referrer entry.
    pub fn delete_manifest(&self, repo: &Repository, reference: &Reference) -> SResult<()> {
        match reference {
            Reference::Tag(t) => {
                if remove(&self.path(Loc::Tag(repo, t)))? {
                    Ok(())
                } else {
                    Err(StorageError::ManifestUnknown(t.to_string()))
                }
            }
            Reference::Digest(d) => {
                let stored = self.resolve(repo, reference)?;
                remove(&self.path(Loc::Revision(repo, d)))?;
                for tag in self.tags(repo).unwrap_or_default() {
                    if let Some(tag) = Tag::parse(&tag) {
                        if self.tag_target(repo, &tag)?.as_ref() == Some(d) {
                            remove(&self.path(Loc::Tag(repo, &tag)))?;
                        }
                    }
                }
                if let Some(subject) = &stored.revision.subject {
                    remove(&self.path(Loc::Referrer(repo, subject, d)))?;
                }
                remove(&self.path(Loc::Link(repo, d)))?;
                Ok(())
            }
        }
    }

    // ---- listings ----------------------------------------------------------------------

    /// Whether `repo` exists (has held a manifest or a blob).
    pub fn exists(&self, repo: &Repository) -> bool {
        self.path(Loc::Repo(repo)).is_dir()
    }

    /// Tags of `repo`, sorted.
    pub fn tags(&self, repo: &Repository) -> SResult<Vec<String>> {
        if !self.exists(repo) {
            return Err(StorageError::NameUnknown(repo.clone()));
        }
        let mut tags = list_names(&self.path(Loc::Tags(repo)), valid_tag)?;
        tags.sort();
        Ok(tags)
    }

    /// The blobs `repo` links (manifests included), sorted; temp files are not names.
    pub fn links(&self, repo: &Repository) -> SResult<Vec<Digest>> {
        digests_in(&self.path(Loc::Links(repo)))
    }

    /// The manifests `repo` registered (its revision files), sorted, without reading them.
    pub fn revisions(&self, repo: &Repository) -> SResult<Vec<Digest>> {
        digests_in(&self.path(Loc::Revisions(repo)))
    }

    /// The files behind a link, a revision and a tag (for reports naming what is at fault).
    pub fn link_path(&self, repo: &Repository, digest: &Digest) -> PathBuf {
        self.path(Loc::Link(repo, digest))
    }

    pub fn revision_path(&self, repo: &Repository, digest: &Digest) -> PathBuf {
        self.path(Loc::Revision(repo, digest))
    }

    pub fn tag_path(&self, repo: &Repository, tag: &Tag) -> PathBuf {
        self.path(Loc::Tag(repo, tag))
    }

    /// The blobs `repo` links, each with the time its link was made.
    pub fn link_times(&self, repo: &Repository) -> SResult<Vec<(Digest, SystemTime)>> {
        let dir = self.path(Loc::Links(repo));
        let mut out = Vec::new();
        for digest in digests_in(&dir)? {
            let path = self.path(Loc::Link(repo, &digest));
            match fs::metadata(&path).and_then(|m| m.modified()) {
                Ok(t) => out.push((digest, t)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::error::Error::io(&path, e).into()),
            }
        }
        Ok(out)
    }

    /// The manifests of `repo` (its revisions), sorted by digest.
    pub fn manifests(&self, repo: &Repository) -> SResult<Vec<Stored>> {
        self.revisions(repo)?.into_iter().map(|d| self.resolve(repo, &Reference::Digest(d))).collect()
    }

    /// Every repository that holds manifests, sorted.
    pub fn catalog(&self) -> SResult<Vec<String>> {
        self.repositories_with(&["_manifests"])
    }

    /// Every repository that holds manifests or blobs (a first push links its blobs
    /// before its manifest comes), sorted.
    pub fn repositories(&self) -> SResult<Vec<String>> {
        self.repositories_with(&["_manifests", "_links"])
    }

    /// Every repository holding one of the `markers` directories, sorted.
    fn repositories_with(&self, markers: &[&str]) -> SResult<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![(self.path(Loc::Repositories), String::new())];
        while let Some((dir, prefix)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(crate::error::Error::io(&dir, e).into()),
            };
            for entry in entries {
                let entry = entry.at(&dir)?;
                let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
                if markers.contains(&name.as_str()) {
                    out.push(prefix.clone());
                } else if entry.file_type().at(entry.path())?.is_dir() && valid_repository(&name) {
                    let full = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
                    stack.push((entry.path(), full));
                }
            }
        }
        out.retain(|r| valid_repository(r));
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Descriptors of the manifests in `repo` whose subject is `subject`, sorted by digest.
    pub fn referrers(&self, repo: &Repository, subject: &Digest) -> SResult<Vec<serde_json::Value>> {
        let dir = self.path(Loc::Referrers(repo, subject));
        let mut out = Vec::new();
        for hex in list_names(&dir, |n| Digest::from_hex(n).is_ok())? {
            let Ok(d) = Digest::from_hex(&hex) else { continue };
            if !self.path(Loc::Revision(repo, &d)).is_file() {
                continue; // a push that died before its commit point
            }
            let path = self.path(Loc::Referrer(repo, subject, &d));
            match fs::read(&path) {
                Ok(bytes) => {
                    let v: serde_json::Value = serde_json::from_slice(&bytes)
                        .map_err(|e| crate::error::usage(format!("{}: {e}", path.display())))?;
                    out.push(v);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(crate::error::Error::io(&path, e).into()),
            }
        }
        out.sort_by(|a, b| a["digest"].as_str().cmp(&b["digest"].as_str()));
        Ok(out)
    }

    // ---- uploads -----------------------------------------------------------------------

    /// Start an upload session for `repo`, unless `repo` has `per_repo` open sessions
    /// already or the registry `total`.
    pub fn start_upload_capped(&self, repo: &Repository, total: usize, per_repo: usize) -> SResult<Upload> {
        let (all, mine) = self.count_uploads(repo)?;
        if mine >= per_repo {
            return Err(StorageError::TooManyUploads(format!(
                "{repo} has {mine} open upload sessions, the most allowed: finish or cancel some (abandoned ones expire)"
            )));
        }
        if all >= total {
            return Err(StorageError::TooManyUploads(format!(
                "the registry has {all} open upload sessions, the most allowed: finish or cancel some (abandoned ones expire)"
            )));
        }
        self.start_upload(repo)
    }

    /// Open upload sessions: in total, and of `repo`.
    fn count_uploads(&self, repo: &Repository) -> SResult<(usize, usize)> {
        let dir = self.path(Loc::Uploads);
        let (mut all, mut mine) = (0, 0);
        for name in list_names(&dir, |n| UploadId::parse(n).is_some())? {
            let Some(id) = UploadId::parse(&name) else { continue };
            all += 1;
            let state: Option<UploadState> =
                fs::read(self.path(Loc::UploadState(&id))).ok().and_then(|b| serde_json::from_slice(&b).ok());
            if state.is_some_and(|s| s.repository == repo.as_str()) {
                mine += 1;
            }
        }
        Ok((all, mine))
    }

    /// Start an upload session for `repo`.
    pub fn start_upload(&self, repo: &Repository) -> SResult<Upload> {
        let id = UploadId::generate().at(self.path(Loc::Uploads))?;
        let dir = self.path(Loc::Upload(&id));
        fs::create_dir(&dir).at(&dir)?;
        let data = self.path(Loc::UploadData(&id));
        fs::File::create(&data).at(&data)?;
        let state = UploadState { repository: repo.to_string(), started: unix_now() };
        write_atomic(&self.path(Loc::UploadState(&id)), &json_bytes(&state))?;
        Ok(Upload { id, data, size: 0 })
    }

    /// An open session of `repo`.
    pub fn upload(&self, repo: &Repository, id: &UploadId) -> SResult<Upload> {
        let unknown = || StorageError::UploadUnknown(id.to_string());
        let state: UploadState = fs::read(self.path(Loc::UploadState(id)))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(unknown)?;
        if state.repository != repo.as_str() {
            return Err(unknown());
        }
        let data = self.path(Loc::UploadData(id));
        let size = fs::metadata(&data).map_err(|_| unknown())?.len();
        Ok(Upload { id: id.clone(), data, size })
    }

    /// Whether the session still exists.
    pub fn upload_exists(&self, id: &UploadId) -> bool {
        self.path(Loc::Upload(id)).is_dir()
    }

    /// Drop an upload session and its bytes.
    pub fn cancel_upload(&self, id: &UploadId) -> SResult<()> {
        let dir = self.path(Loc::Upload(id));
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StorageError::UploadUnknown(id.to_string())),
            Err(e) => Err(crate::error::Error::io(&dir, e).into()),
        }
    }

    /// Commit a finished upload as blob `expected` of `repo`. `hashed` is the digest the
    /// caller computed while the bytes arrived; without it, the data is hashed here. On a
    /// mismatch the session is dropped and nothing is stored. Returns the blob's size.
    pub fn commit_upload(
        &self,
        repo: &Repository,
        id: &UploadId,
        expected: &Digest,
        hashed: Option<Digest>,
    ) -> SResult<u64> {
        let upload = self.upload(repo, id)?;
        let mut mismatched = false;
        let adopted = self.served_blobs().adopt(&upload.data, expected, hashed, |found| {
            mismatched = true;
            StorageError::DigestInvalid { expected: expected.clone(), actual: found.digest }
        });
        if mismatched {
            self.cancel_upload(id)?;
        }
        let size = adopted?;
        self.add_link(repo, expected)?;
        self.cancel_upload(id)?;
        Ok(size)
    }

    /// Remove upload sessions untouched for `max_age` (temp files: see
    /// `purge_temp_files`). Returns how many sessions went.
    pub fn purge_uploads(&self, max_age: Duration) -> SResult<usize> {
        let dir = self.path(Loc::Uploads);
        let Some(cutoff) = SystemTime::now().checked_sub(max_age) else { return Ok(0) };
        let mut purged = 0;
        let entries = fs::read_dir(&dir).at(&dir)?;
        for entry in entries {
            let entry = entry.at(&dir)?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let old = entry.metadata().and_then(|m| m.modified()).map(|t| t < cutoff).unwrap_or(false);
            if !old {
                continue;
            }
            if let Some(id) = UploadId::parse(&name) {
                // A session is stale when nothing was written to it for max_age.
                let data = self.path(Loc::UploadData(&id));
                let active = fs::metadata(&data).and_then(|m| m.modified()).map(|t| t >= cutoff).unwrap_or(false);
                if !active {
                    match fs::remove_dir_all(&path) {
                        Ok(()) => purged += 1,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(crate::error::Error::io(&path, e).into()),
                    }
                }
            }
        }
        Ok(purged)
    }
}

impl Storage {
    /// Remove temp files (`.airlift-tmp-*`) older than `grace` under `repositories/`
    /// and `uploads/`: leftovers of writers killed between write and rename (a tag, a
    /// revision, a manifest). Younger ones may belong to a writer at work and stay.
    /// Returns how many went.
    pub fn purge_temp_files(&self, grace: Duration) -> SResult<usize> {
        // Upload sessions hold no temp files and their data is large: not gone through.
        let tags = store::purge_temps_under(&self.path(Loc::Repositories), grace, &|_| true)?;
        let uploads = store::purge_temps_under(&self.path(Loc::Uploads), grace, &|_| false)?;
        Ok(tags + uploads)
    }
}

/// What a stored manifest of media type `media_type` references: blobs (config and layers)
/// and child manifests, each with the size its descriptor gives. An error when the bytes do
/// not parse as that media type.
pub fn references(bytes: &[u8], media_type: &str) -> SResult<References> {
    let parsed = parse_manifest(bytes, Some(media_type))?;
    Ok(References { blobs: parsed.blobs, children: parsed.children })
}

/// See [`references`].
pub struct References {
    pub blobs: Vec<(Digest, u64)>,
    pub children: Vec<(Digest, u64)>,
}

fn repository(name: &str) -> SResult<Repository> {
    Repository::parse(name).ok_or_else(|| StorageError::NameInvalid(name.to_string()))
}

/// What storage needs to know of a manifest.
struct Parsed {
    media_type: String,
    /// Blobs an image manifest references (config, layers), with their descriptors' sizes.
    blobs: Vec<(Digest, u64)>,
    /// Manifests an index references, with their descriptors' sizes.
    children: Vec<(Digest, u64)>,
    /// The subject, and the artifact type the referrers API reports.
    subject: Option<(Digest, Option<String>)>,
    annotations: Option<serde_json::Value>,
}

/// Parse and check a manifest or index (OCI or Docker schema2). The media type is the
/// declared one, else the `mediaType` field, else inferred; declared and field must agree.
fn parse_manifest(bytes: &[u8], declared: Option<&str>) -> SResult<Parsed> {
    let invalid = |m: String| StorageError::ManifestInvalid(m);
    let probe: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| invalid(format!("not JSON: {e}")))?;
    // A charset or other parameter on Content-Type is not part of the media type.
    let declared = declared.map(|d| d.split(';').next().unwrap_or("").trim()).filter(|d| !d.is_empty());
    let media_type = match (declared, doc_type(&probe)) {
        (Some(d), DocType::Named(f)) if d != f => {
            return Err(invalid(format!("Content-Type {d} does not match the mediaType field {f}")))
        }
        (Some(d), _) => d.to_string(),
        (None, DocType::Named(f)) => f.to_string(),
        (None, DocType::Implied(t)) => t.to_string(),
        (None, DocType::Unknown) => OCI_MANIFEST.to_string(),
    };
    if probe.get("schemaVersion").and_then(|v| v.as_u64()) != Some(2) {
        return Err(invalid("schemaVersion must be 2".into()));
    }
    let annotations = probe.get("annotations").filter(|a| a.is_object()).cloned();
    let digest_of = |d: &Descriptor| -> SResult<Digest> {
        d.digest().to_string().parse().map_err(|e: String| invalid(format!("descriptor digest: {e}")))
    };
    let reference = |d: &Descriptor| -> SResult<(Digest, u64)> { Ok((digest_of(d)?, d.size())) };
    let subject_of = |s: Option<&Descriptor>, artifact_type: Option<String>| -> SResult<_> {
        s.map(|s| Ok((digest_of(s)?, artifact_type))).transpose()
    };
    if Kind::of(&media_type) == Kind::Manifest {
        let m: ImageManifest =
            serde_json::from_slice(bytes).map_err(|e| invalid(format!("not an image manifest: {e}")))?;
        let mut blobs = vec![reference(m.config())?];
        for layer in m.layers() {
            // Foreign layers (with urls) live elsewhere and are not pushed.
            if layer.urls().as_ref().map_or(true, |u| u.is_empty()) {
                blobs.push(reference(layer)?);
            }
        }
        let artifact_type =
            m.artifact_type().as_ref().map(|a| a.to_string()).or_else(|| Some(m.config().media_type().to_string()));
        Ok(Parsed {
            subject: subject_of(m.subject().as_ref(), artifact_type)?,
            media_type,
            blobs,
            children: Vec::new(),
            annotations,
        })
    } else if Kind::of(&media_type) == Kind::Index {
        let i: ImageIndex = serde_json::from_slice(bytes).map_err(|e| invalid(format!("not an image index: {e}")))?;
        let children = i.manifests().iter().map(reference).collect::<SResult<Vec<_>>>()?;
        let artifact_type = i.artifact_type().as_ref().map(|a| a.to_string());
        Ok(Parsed {
            subject: subject_of(i.subject().as_ref(), artifact_type)?,
            media_type,
            blobs: Vec::new(),
            children,
            annotations,
        })
    } else {
        Err(invalid(format!("unsupported manifest media type {media_type}")))
    }
}

/// Remove a file; false when it was not there.
fn remove(path: &Path) -> SResult<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(crate::error::Error::io(path, e).into()),
    }
}

/// Names of the entries of `dir` that pass `keep` (temp files never do); none when `dir`
/// is absent.
fn list_names(dir: &Path, keep: impl Fn(&str) -> bool) -> SResult<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(crate::error::Error::io(dir, e).into()),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.at(dir)?;
        if let Some(name) = entry.file_name().to_str() {
            if keep(name) {
                out.push(name.to_string());
            }
        }
    }
    Ok(out)
}

/// The digests named by the entries of `dir`, sorted; none when `dir` is absent.
fn digests_in(dir: &Path) -> SResult<Vec<Digest>> {
    let mut out: Vec<Digest> =
        list_names(dir, |n| Digest::from_hex(n).is_ok())?.iter().filter_map(|n| Digest::from_hex(n).ok()).collect();
    out.sort();
    Ok(out)
}

fn json_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    b
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests;
