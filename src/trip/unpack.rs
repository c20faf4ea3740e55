//! `unpack`'s steps over a [`Target`]: lock its store, check the bundle against the
//! target's rollback record, feed the volumes through the bundle reader into the
//! extractor, then publish the images that are whole, record what the target now
//! serves, and write what a cluster needs. The command calls the steps in order and
//! presents what each returns.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::bundle::extract::Extractor;
use crate::bundle::feed::{self, Fed, Watch};
use crate::bundle::ids::{EntryId, VolumeId};
use crate::bundle::manifest::{Compression, EntryKind};
use crate::bundle::parity;
use crate::bundle::reader::{whole, Action, Bundle, Sink, VolumeKind, VolumeReport, VolumeStatus};
use crate::bundle::trust::{self, Claim, Record};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::openshift::{self, cluster, ReleaseTag};
use crate::progress::Progress;
use crate::space::Needs;
use crate::store::{RunLock, State};
use crate::trip::target::{Published, Target};

/// One unpack of `bundle` into `target`, holding the target's run lock.
pub struct Unpack<'a> {
    bundle: &'a Bundle,
    target: &'a dyn Target,
    _lock: RunLock,
    /// The tags this bundle's images would set in the target.
    claims: Vec<Claim>,
    /// Per release, its `VERSION-ARCH-NAME` tags (none without `--release-tags`).
    release_tags: Vec<Vec<ReleaseTag>>,
    record: Record,
}

/// What [`Unpack::finish`] did.
pub struct Finished {
    /// The images whole in the target (indexes into the bundle's images).
    pub complete: Vec<usize>,
    pub published: Published,
    /// Every blob and file of the bundle is committed, and the destination holds every
    /// blob it omits.
    pub all_done: bool,
    /// The omitted blobs the destination does not hold (a differential bundle whose base
    /// has not arrived), with the images each keeps back.
    pub lacking: Vec<Lacking>,
}

/// An omitted blob the destination does not hold.
pub struct Lacking {
    /// Its index in the manifest's `omitted`.
    pub omitted: usize,
    /// The images that need it (indexes into the bundle's images).
    pub images: Vec<usize>,
}

impl<'a> Unpack<'a> {
    /// Lock the target's store (`waiting` hears who holds it, if another run does),
    /// sweep killed runs' temp files, and check the bundle against the target's rollback
    /// record: a rollback of any tag the bundle claims is refused, or with
    /// `allow_rollback` accepted with a warning.
    pub fn start(
        bundle: &'a Bundle,
        target: &'a dyn Target,
        release_tags: bool,
        allow_rollback: bool,
        waiting: impl FnOnce(Option<u32>),
        warn: &dyn Fn(String),
    ) -> Result<Unpack<'a>> {
        let store = target.store();
        let lock = store.lock_run(waiting)?;
        store.purge_temps(&lock)?;
        // Volumes a killed run rebuilt from parity: the run that needs them rebuilds them.
        remove_scratch(&store.state(State::Rebuilt))?;
        trust::check_image_list(bundle)?;
        let release_tags = match target.mirror().filter(|_| release_tags) {
            Some(mirror) => bundle
                .manifest
                .releases
                .iter()
                .map(|r| openshift::release_tags(r, &bundle.manifest.images, &|i| mirror.repository(i)))
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
        let claims = claims(bundle, target, &release_tags)?;
        let record = Record::open(target.store())?;
        if target.record_elsewhere() {
            warn(format!(
                "rollback protection for --to is recorded on this host only ({}): another host or another \
                 --cache does not see it",
                record.path().display()
            ));
        }
        for overridden in record.check(bundle, &claims, allow_rollback)? {
            warn(format!("--allow-rollback: accepting a rollback: {overridden}"));
        }
        Ok(Unpack { bundle, target, _lock: lock, claims, release_tags, record })
    }

    /// The sink the volumes are read into.
    pub fn extractor(&self) -> Result<Extractor<'a>> {
        Extractor::new(self.bundle, self.target.store(), self.target.files_dir())
    }

    /// Refuse (exit 2) when the target's filesystems lack room for what reading the
    /// volumes writes: every blob and file not committed yet (a rerun needs only the
    /// rest), a compressed split entry's parts besides it, and the journal's lines.
    pub fn check_space(&self, extractor: &Extractor) -> Result<()> {
        let manifest = &self.bundle.manifest;
        let store = self.target.store();
        let partials = store.state(State::Partials);
        let (mut blobs, mut files, mut parts, mut chunks) = ((0, 0), (0, 0), (0, 0), 0);
        for (e, entry) in manifest.entries.iter().enumerate() {
            let sum = match entry.kind {
                EntryKind::Blob => &mut blobs,
                EntryKind::File => &mut files,
                EntryKind::Label | EntryKind::Layout | EntryKind::Installer => continue,
            };
            if extractor.committed(e) {
                continue;
            }
            *sum = (sum.0 + entry.size, sum.1 + 1);
            let split = self.bundle.index.chunks_of(EntryId::new(e)).len() as u64;
            if split > 1 && entry.compression == Compression::Zstd {
                parts = (parts.0 + entry.stored_size, parts.1 + 1);
            }
            chunks += split;
        }
        let mut needs = Needs::new();
        needs.add(store.root(), "blobs", blobs.0, blobs.1)?;
        needs.add(&self.target.files_dir(), "included files", files.0, files.1)?;
        needs.add(&partials, "compressed entries' parts", parts.0, parts.1)?;
        // A journal line: the chunk's number and sha256 (or `entry N DIGEST`).
        needs.add(&store.state(State::Journals), "the journal", chunks * 80, u64::from(chunks > 0))?;
        // Needed volumes not here that parity can rebuild (damaged ones are known later:
        // `recover` checks again for exactly those it rebuilds).
        let needed = |v: VolumeId| self.bundle.index.chunks_in(v).iter().any(|&c| extractor.action(c) == Action::Write);
        let absent: Vec<u64> = (manifest.volume_ids())
            .filter(|&v| needed(v) && !self.bundle.volume_path(v).exists())
            .map(|v| manifest.volume(v).size)
            .collect();
        if manifest.parity.as_ref().is_some_and(|p| !absent.is_empty() && absent.len() <= p.volumes.len()) {
            let scratch = store.state(State::Rebuilt);
            needs.add(&scratch, "volumes rebuilt from parity", absent.iter().sum(), absent.len() as u64)?;
        }
        needs.check()
    }

    /// Read every volume that holds something still to write (the others are reported
    /// skipped), through the feed: disc by disc with `watch`. `missing` hears of each
    /// volume not present.
    pub fn read_volumes(
        &self,
        extractor: &Extractor,
        jobs: usize,
        progress: &dyn Progress,
        missing: &dyn Fn(&VolumeReport),
        watch: Option<&Watch>,
    ) -> Result<Fed> {
        let bundle = self.bundle;
        let needed = |v: VolumeId| bundle.index.chunks_in(v).iter().any(|&c| extractor.action(c) == Action::Write);
        let mut read = |v: VolumeId| -> Result<VolumeReport> {
            if !needed(v) {
                let volume = bundle.manifest.volume(v);
                return Ok(VolumeReport {
                    volume: v.number(),
                    kind: VolumeKind::Data,
                    file: volume.file.clone(),
                    status: VolumeStatus::Skipped,
                    size: volume.size,
                    problems: vec![],
                    seen: None,
                });
            }
            progress.start(&format!("volume {v}"), bundle.volume_payload(v));
            let report = bundle.read_volume(v, extractor, jobs, progress)?;
            extractor.flush()?;
            progress.finish();
            if report.status == VolumeStatus::Missing {
                missing(&report);
            }
            Ok(report)
        };
        feed::feed(bundle, watch, &needed, &mut read)
    }

    /// When data volumes were missing or damaged and the bundle has parity: check the
    /// recovery volumes (and the volumes not read) whole, and if what is intact is enough,
    /// rebuild the lost volumes into the store's scratch directory and read them from there
    /// (their reports become `Rebuilt`), removing each once read. The recovery volumes'
    /// reports are added to `reports` for the census.
    pub fn recover(
        &self,
        extractor: &Extractor,
        reports: &mut Vec<VolumeReport>,
        jobs: usize,
        progress: &dyn Progress,
    ) -> Result<Recovered> {
        let bundle = self.bundle;
        let m = &bundle.manifest;
        let is_lost = |r: &VolumeReport| {
            matches!(r.status, VolumeStatus::Missing | VolumeStatus::Damaged | VolumeStatus::Foreign)
        };
        let lost: Vec<usize> = (0..reports.len()).filter(|&i| is_lost(&reports[i])).collect();
        if m.parity.is_none() || lost.is_empty() {
            return Ok(Recovered::default());
        }
        let skipped: Vec<usize> = (0..reports.len()).filter(|&i| reports[i].status == VolumeStatus::Skipped).collect();
        let which: Vec<usize> = skipped.iter().copied().chain(m.volumes.len()..m.all_volumes().count()).collect();
        let mut checked = parity::check_volumes(bundle, &which, jobs, progress);
        let recovery = checked.split_off(skipped.len());
        // A volume not read and found whole is ok; one not whole is still not needed.
        for (&i, report) in skipped.iter().zip(checked) {
            if report.status == VolumeStatus::Ok {
                reports[i] = report;
            }
        }
        reports.extend(recovery);
        let intact = parity::intact(m, reports);
        if intact.iter().filter(|&&ok| ok).count() < m.volumes.len() {
            return Ok(Recovered::default());
        }
        let scratch = self.target.store().state(State::Rebuilt);
        std::fs::create_dir_all(&scratch).at(&scratch)?;
        let rebuilt = match parity::rebuild(bundle, &intact, &lost, &scratch, progress) {
            Ok(paths) => paths,
            Err(Error::Integrity(why)) => return Ok(Recovered { rebuilt: vec![], failed: Some(why) }),
            Err(e) => return Err(e),
        };
        let mut done = Recovered::default();
        for (&i, path) in lost.iter().zip(&rebuilt) {
            let v = VolumeId::new(i);
            progress.start(&format!("volume {v} (rebuilt)"), bundle.volume_payload(v));
            let mut report = bundle.read_volume_from(v, path, extractor, jobs, progress)?;
            extractor.flush()?;
            progress.finish();
            std::fs::remove_file(path).at(path)?;
            if report.status == VolumeStatus::Ok {
                report.status = VolumeStatus::Rebuilt;
                report.problems = match reports[i].status {
                    VolumeStatus::Missing => vec![whole("missing on the media".into())],
                    _ => std::mem::take(&mut reports[i].problems),
                };
                done.rebuilt.push(report.file.clone());
            }
            reports[i] = report;
        }
        remove_scratch(&scratch)?;
        Ok(done)
    }

    /// Check and publish every image whose blobs are all committed, then record the tags
    /// they set against rollback.
    pub fn finish(&mut self, extractor: &Extractor) -> Result<Finished> {
        let bundle = self.bundle;
        let (entries, images) = (&bundle.manifest.entries, &bundle.manifest.images);
        // Each entry is looked at once (a stat of its file), however many images share it.
        let committed: Vec<bool> = (0..entries.len()).map(|e| extractor.committed(e)).collect();
        let mut blob_entry: HashMap<&Digest, usize> = HashMap::new();
        for (e, entry) in entries.iter().enumerate().filter(|(_, e)| e.kind == EntryKind::Blob) {
            blob_entry.entry(&entry.digest).or_insert(e);
        }
        let omitted: HashMap<&Digest, usize> =
            bundle.manifest.omitted.iter().enumerate().map(|(k, o)| (&o.digest, k)).collect();
        let carried_committed = |i: usize| {
            images[i].blobs.iter().all(|d| blob_entry.get(d).map_or(omitted.contains_key(d), |&e| committed[e]))
        };
        let mut lacking: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        let mut complete = Vec::new();
        for i in (0..images.len()).filter(|&i| carried_committed(i)) {
            let mut whole = true;
            for &k in images[i].blobs.iter().filter_map(|d| omitted.get(d)) {
                if !self.target.holds(&images[i], &bundle.manifest.omitted[k])? {
                    lacking.entry(k).or_default().push(i);
                    whole = false;
                }
            }
            if whole {
                complete.push(i);
            }
        }
        for &i in &complete {
            trust::check_image_graph(bundle, self.target.store(), &images[i])?;
        }
        let complete_digests: HashSet<&Digest> = complete.iter().map(|&i| &images[i].digest).collect();
        let published_claims: Vec<Claim> =
            self.claims.iter().filter(|c| complete_digests.contains(&c.digest)).cloned().collect();
        let published = self.target.publish(bundle, &complete)?;
        self.record.accept(bundle, &published_claims)?;
        let all_done = lacking.is_empty()
            && entries
                .iter()
                .zip(&committed)
                .all(|(entry, &done)| !matches!(entry.kind, EntryKind::Blob | EntryKind::File) || done);
        let lacking = lacking.into_iter().map(|(omitted, images)| Lacking { omitted, images }).collect();
        Ok(Finished { complete, published, all_done, lacking })
    }

    /// What a cluster needs to pull the complete images from the target: nothing for a
    /// layout, or for bundles of OCI-layout images only.
    pub fn cluster_results(
        &self,
        complete: &[usize],
        dir: Option<&Path>,
        merge_pull_secret: Option<&Path>,
        image_policy: Option<&[u8]>,
    ) -> Result<Option<cluster::Results>> {
        let Some(mirror) = self.target.mirror() else {
            return Ok(None);
        };
        let manifest = &self.bundle.manifest;
        let request = cluster::Request {
            name: &manifest.name,
            images: &manifest.images,
            complete,
            releases: &manifest.releases,
            catalogs: &manifest.catalogs,
            release_tags: &self.release_tags,
            dir,
            merge_pull_secret,
            image_policy,
        };
        cluster::write(mirror, &request)
    }
}

/// What [`Unpack::recover`] did.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The data volumes rebuilt from parity and read.
    pub rebuilt: Vec<String>,
    /// Why rebuilding failed: the rebuilt volumes did not match the signed manifest.
    pub failed: Option<String>,
}

/// Remove the scratch directory of rebuilt volumes, if any.
fn remove_scratch(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(crate::error::Error::io(dir, e)),
        _ => Ok(()),
    }
}

/// The tags this bundle's images (and, with release tags, its releases' components)
/// would set in `target`.
fn claims(bundle: &Bundle, target: &dyn Target, release_tags: &[Vec<ReleaseTag>]) -> Result<Vec<Claim>> {
    let images = &bundle.manifest.images;
    let mut claims = Vec::new();
    for image in images {
        if let Some(tag) = target.claim(image)? {
            claims.push(Claim { tag, digest: image.digest.clone() });
        }
    }
    for t in release_tags.iter().flatten() {
        if let Some(tag) = target.release_claim(t) {
            claims.push(Claim { tag, digest: images[t.image].digest.clone() });
        }
    }
    Ok(claims)
}
