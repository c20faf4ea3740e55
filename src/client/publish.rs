//! Publishing a bundle's images into a registry over the network
//! (`unpack --to docker://HOST[:PORT]/PREFIX`), in the repositories
//! [`mirror::target`](crate::registry::mirror::target) maps them to: every blob first,
//! then the manifests children before their index, then the tag.
//!
//! A journal (one per bundle and registry, in the staging store's state directory)
//! records each blob, manifest and tag the registry accepted, so a run that was killed
//! and started again does not ask for them again; a blob not in the journal is still
//! checked with `HEAD` before it is uploaded. The journal also says which repository
//! already holds a blob: the next repository that needs it gets it by a mount.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use crate::bundle::manifest::Image;
use crate::client::push::BlobOutcome;
use crate::client::reference::{valid_host, TRANSPORT};
use crate::client::{Client, ImageRef};
use crate::digest::Digest;
use crate::error::{usage, IoContext, Result};
use crate::oci::layout::read_limited;
use crate::oci::MAX_MANIFEST;
use crate::registry::mirror::{self, Target};
use crate::registry::names::Repository;
use crate::store::BlobStore;

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
/// `manifest REPO DIGEST`, `tag REPO TAG DIGEST`); a torn last line is ignored.
pub struct Journal {
    path: PathBuf,
    file: Option<File>,
    blobs: HashMap<Digest, Vec<String>>,
    manifests: HashSet<(String, Digest)>,
    tags: HashMap<(String, String), Digest>,
}

impl Journal {
    pub fn open(store: &BlobStore, bundle_id: &str, dest: &Destination) -> Result<Journal> {
        let dir = store.state_dir().join("push");
        std::fs::create_dir_all(&dir).at(&dir)?;
        let host: String =
            dest.registry.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '_' }).collect();
        let path = dir.join(format!("{bundle_id}@{host}"));
        let mut j =
            Journal { path, file: None, blobs: HashMap::new(), manifests: HashSet::new(), tags: HashMap::new() };
        if let Ok(file) = File::open(&j.path) {
            for line in BufReader::new(file).lines() {
                let Ok(line) = line else { break };
                let f: Vec<&str> = line.split(' ').collect();
                match f.as_slice() {
                    ["blob", repo, d] => {
                        if let Ok(d) = d.parse() {
                            j.note_blob(repo, d);
                        }
                    }
                    ["manifest", repo, d] => {
                        if let Ok(d) = d.parse() {
                            j.manifests.insert((repo.to_string(), d));
                        }
                    }
                    ["tag", repo, tag, d] => {
                        if let Ok(d) = d.parse() {
                            j.tags.insert((repo.to_string(), tag.to_string()), d);
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(j)
    }

    fn note_blob(&mut self, repo: &str, d: Digest) {
        let repos = self.blobs.entry(d).or_default();
        if !repos.iter().any(|r| r == repo) {
            repos.push(repo.to_string());
        }
    }

    fn append(&mut self, line: &str) -> Result<()> {
        if self.file.is_none() {
            let f = OpenOptions::new().create(true).append(true).open(&self.path).at(&self.path)?;
            self.file = Some(f);
        }
        if let Some(f) = &mut self.file {
            f.write_all(format!("{line}\n").as_bytes()).at(&self.path)?;
            f.sync_data().at(&self.path)?;
        }
        Ok(())
    }

    fn has_blob(&self, repo: &str, d: &Digest) -> bool {
        self.blobs.get(d).is_some_and(|r| r.iter().any(|x| x == repo))
    }

    /// Another repository of this registry known to hold blob `d`.
    fn holder(&self, repo: &str, d: &Digest) -> Option<String> {
        self.blobs.get(d).and_then(|r| r.iter().find(|x| *x != repo).cloned())
    }

    fn blob(&mut self, repo: &str, d: &Digest) -> Result<()> {
        self.note_blob(repo, d.clone());
        self.append(&format!("blob {repo} {d}"))
    }

    fn manifest(&mut self, repo: &str, d: &Digest) -> Result<()> {
        self.manifests.insert((repo.to_string(), d.clone()));
        self.append(&format!("manifest {repo} {d}"))
    }

    fn tag(&mut self, repo: &str, tag: &str, d: &Digest) -> Result<()> {
        self.tags.insert((repo.to_string(), tag.to_string()), d.clone());
        self.append(&format!("tag {repo} {tag} {d}"))
    }
}

/// Push one complete image from `store` into its repository under `dest`; returns the
/// reference it can be pulled by.
pub fn push_image(
    client: &Client,
    store: &BlobStore,
    image: &Image,
    dest: &Destination,
    options: PushOptions,
    journal: &mut Journal,
    report: &mut PushReport,
) -> Result<String> {
    let Target { repository, tag } = mirror::target(image, dest.prefix.as_deref())?;
    let repo = Repository::parse(&repository)
        .ok_or_else(|| usage(format!("image {}: '{repository}' is not a valid repository name", image.digest)))?;
    let target = ImageRef { registry: dest.registry.clone(), repository: repo, tag: None, digest: None };
    // Manifests the bundle carries (one packed with --platform leaves some children out;
    // the registry must then accept the index without them).
    let manifests: Vec<_> = mirror::manifests_of(store, &image.digest, &image.media_type)?
        .into_iter()
        .filter(|(m, _)| image.blobs.contains(m))
        .collect();

    for blob in image.blobs.iter().filter(|b| !manifests.iter().any(|(m, _)| m == *b)) {
        if journal.has_blob(&repository, blob) || client.blob_exists(&target, blob)? {
            report.skipped += 1;
            if !journal.has_blob(&repository, blob) {
                journal.blob(&repository, blob)?;
            }
            continue;
        }
        let path = store.path(blob);
        let size = std::fs::metadata(&path).at(&path)?.len();
        let from = journal.holder(&repository, blob);
        match client.push_blob(&target, blob, (&path, size), from.as_deref(), options.chunk)? {
            BlobOutcome::Mounted => report.mounted += 1,
            BlobOutcome::Uploaded => {
                report.pushed += 1;
                report.bytes += size;
            }
            BlobOutcome::Present => report.skipped += 1,
        }
        journal.blob(&repository, blob)?;
    }

    for (digest, media_type) in &manifests {
        if journal.manifests.contains(&(repository.clone(), digest.clone())) {
            report.skipped += 1;
            continue;
        }
        if client.manifest_digest(&target, &digest.to_string())?.is_some() {
            report.skipped += 1;
        } else {
            let bytes = read_limited(&store.path(digest), MAX_MANIFEST)?;
            client.put_manifest(&target, &digest.to_string(), &bytes, media_type, digest)?;
            report.pushed += 1;
        }
        journal.manifest(&repository, digest)?;
    }

    let host = &dest.registry;
    let Some(tag) = tag else {
        return Ok(format!("{host}/{repository}@{}", image.digest));
    };
    if journal.tags.get(&(repository.clone(), tag.clone())) == Some(&image.digest) {
        report.skipped += 1;
    } else {
        if client.manifest_digest(&target, &tag)?.as_deref() == Some(image.digest.to_string().as_str()) {
            report.skipped += 1;
        } else {
            let bytes = read_limited(&store.path(&image.digest), MAX_MANIFEST)?;
            client.put_manifest(&target, &tag, &bytes, &image.media_type, &image.digest)?;
            report.pushed += 1;
        }
        journal.tag(&repository, &tag, &image.digest)?;
    }
    Ok(format!("{host}/{repository}:{tag}"))
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
}
