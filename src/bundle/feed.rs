//! Feeding a bundle's volumes to a reader (verify's checker, unpack's extractor), so one
//! optical drive can do a whole bundle. Without a watched directory every volume is read
//! from wherever it is ([`Bundle::locate`]). With one (`--wait-for-media DIR`, a drive's
//! mount point), every volume present is read first; then, while some volume still needed
//! is not there, the feed asks for the disc holding the next one (by label and files when
//! the manifest plans discs, else by file name) and polls the directory a few times a
//! second until it changes: a disc inserted (or files moved in) is looked at then.
//!
//! A volume file shorter than its signed size is still being written: it is waited for,
//! not read. Another bundle's disc (a manifest of other bytes, or a volume whose label
//! names another bundle or volume) is named and the prompt repeats; a volume already done
//! is said once and ignored. With a timeout, a wait that sees no disc it needs within it
//! ends the feed: the volumes still needed are then reported as they stand (missing).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::bundle::ids::VolumeId;
use crate::bundle::names;
use crate::bundle::reader::{Bundle, VolumeReport, VolumeStatus};
use crate::bundle::sources;
use crate::digest::{Digest, Hasher};
use crate::error::{incomplete, usage, Result};
use crate::text::untrusted;

/// How often the watched directory is looked at.
const POLL: Duration = Duration::from_millis(200);
/// Most entries of the watched directory looked at to notice a change.
const MAX_WATCHED: usize = 100_000;
/// Most file names a prompt lists.
const SHOWN_FILES: usize = 8;

/// A directory whose discs change: what `--wait-for-media` watches.
pub struct Watch<'a> {
    pub dir: &'a Path,
    /// Give up when no disc needed arrives within this long of asking.
    pub timeout: Option<Duration>,
    /// Hears every prompt and every wrong disc named (the user must see them: shown even
    /// when quiet).
    pub tell: &'a dyn Fn(&str),
}

/// A wrong disc named while waiting: evidence of what was offered, and when.
#[derive(Debug, Clone, Serialize)]
pub struct WrongDisc {
    pub at: String,
    pub what: String,
}

/// What the feed read.
pub struct Fed {
    /// One report per data volume, in order.
    pub reports: Vec<VolumeReport>,
    pub wrong_discs: Vec<WrongDisc>,
}

/// Reads one volume: a report of it (missing, skipped, read).
pub type ReadVolume<'r> = dyn FnMut(VolumeId) -> Result<VolumeReport> + 'r;

/// Feed every volume of `bundle` to `read`; with `watch`, disc by disc as described above.
/// `needed` says which volumes are worth waiting for (unpack skips those holding nothing
/// still to write); the others are read at once (and report themselves skipped).
pub fn feed(
    bundle: &Bundle,
    watch: Option<&Watch>,
    needed: &dyn Fn(VolumeId) -> bool,
    read: &mut ReadVolume,
) -> Result<Fed> {
    let Some(watch) = watch else {
        let reports = bundle.manifest.volume_ids().map(&mut *read).collect::<Result<_>>()?;
        return Ok(Fed { reports, wrong_discs: Vec::new() });
    };
    let mut feeder = Feeder {
        bundle,
        watch,
        reports: bundle.manifest.volume_ids().map(|_| None).collect(),
        told: HashSet::new(),
        wrong_discs: Vec::new(),
        last: snapshot(watch.dir),
    };
    for v in bundle.manifest.volume_ids().filter(|&v| !needed(v)) {
        feeder.reports[v.index()] = Some(read(v)?);
    }
    feeder.visit(read)?;
    while let Some(prompt) = feeder.prompt() {
        (watch.tell)(&prompt);
        if !feeder.wait(read)? {
            (watch.tell)(&format!("no disc needed arrived in {}: giving up", watch.dir.display()));
            break;
        }
    }
    let mut reports = Vec::new();
    for (v, report) in bundle.manifest.volume_ids().zip(std::mem::take(&mut feeder.reports)) {
        reports.push(match report {
            Some(r) => r,
            None => read(v)?,
        });
    }
    Ok(Fed { reports, wrong_discs: feeder.wrong_discs })
}

/// Before the bundle can be opened: while none of `dirs` holds a manifest (the drive is
/// empty), ask for any disc of the bundle and wait for one, and for the directory to stand
/// still for one poll (a copy in progress is not read). No disc within the timeout is an
/// error of its own (exit 3: nothing is there yet).
pub fn wait_for_manifest(dirs: &[PathBuf], watch: &Watch) -> Result<()> {
    if !watch.dir.is_dir() {
        return Err(usage(format!("{}: --wait-for-media needs a directory (a mount point)", watch.dir.display())));
    }
    if dirs.iter().any(|d| sources::has_manifest(d)) {
        return Ok(());
    }
    (watch.tell)(&format!("insert a disc of the bundle into {}", watch.dir.display()));
    let deadline = watch.timeout.map(|t| Instant::now() + t);
    let mut previous = snapshot(watch.dir);
    loop {
        std::thread::sleep(POLL);
        let now = snapshot(watch.dir);
        if now == previous && sources::has_manifest(watch.dir) {
            return Ok(());
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(incomplete(format!("no disc of the bundle arrived in {}", watch.dir.display())));
        }
        previous = now;
    }
}

/// The state of a feed with a watched directory.
struct Feeder<'b, 'w> {
    bundle: &'b Bundle,
    watch: &'w Watch<'w>,
    /// Each data volume's report, once it is done.
    reports: Vec<Option<VolumeReport>>,
    /// What was said once and is not said again.
    told: HashSet<String>,
    wrong_discs: Vec<WrongDisc>,
    /// The watched directory as last looked at.
    last: Digest,
}

/// How one volume stands, looked at.
enum Look {
    /// Not in any directory.
    Absent,
    /// Done already; `here` when its file is in the watched directory.
    Done { here: bool },
    /// In the watched directory, still being written.
    Partial,
    /// In the watched directory, another bundle's or volume's (named).
    Wrong,
    /// Read now.
    Read,
}

/// What looking at the watched directory found.
#[derive(PartialEq, Eq)]
enum Found {
    /// A volume needed was read.
    Read,
    /// Nothing to read, and something was said (a wrong disc, a disc already done): ask again.
    Said,
    /// Nothing new (no disc, a file still growing): keep waiting.
    Nothing,
}

impl Feeder<'_, '_> {
    /// Poll the watched directory until it changes in a way worth asking again for;
    /// `false` when the timeout passed first. A change is looked at once the directory
    /// stood still for one poll (files are not looked at while they are being copied in).
    fn wait(&mut self, read: &mut ReadVolume) -> Result<bool> {
        let deadline = self.watch.timeout.map(|t| Instant::now() + t);
        let mut previous = self.last.clone();
        loop {
            std::thread::sleep(POLL);
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            let now = snapshot(self.watch.dir);
            if now != previous {
                previous = now;
                continue;
            }
            if now == self.last {
                continue;
            }
            self.last = now;
            if self.visit(read)? != Found::Nothing {
                return Ok(true);
            }
        }
    }

    /// Look at what the directories hold now: read every volume needed that is whole,
    /// name a wrong disc, say once which volumes there are done already.
    fn visit(&mut self, read: &mut ReadVolume) -> Result<Found> {
        if let Some(why) = self.other_bundle() {
            self.wrong(why);
            return Ok(Found::Said);
        }
        let (mut found, mut done_here, mut partial) = (Found::Nothing, Vec::new(), false);
        for v in self.bundle.manifest.volume_ids() {
            match self.look(v, read)? {
                Look::Absent => {}
                Look::Done { here } => done_here.extend(here.then(|| self.bundle.manifest.volume(v).file.as_str())),
                Look::Partial => partial = true,
                Look::Wrong => found = Found::Said,
                Look::Read => found = Found::Read,
            }
        }
        // A disc holding nothing still needed: said once.
        if found == Found::Nothing
            && !partial
            && !done_here.is_empty()
            && self.tell_once(format!("{}: done already; insert another disc", done_here.join(", ")))
        {
            found = Found::Said;
        }
        Ok(found)
    }

    /// Look at volume `v`: read it when it is needed and whole. In the watched directory a
    /// file shorter than the volume is waited for (unless its label already says it is
    /// another's) and a foreign one is a wrong disc; elsewhere (a directory that does not
    /// change) either is read and reported as it is.
    fn look(&mut self, v: VolumeId, read: &mut ReadVolume) -> Result<Look> {
        let bundle = self.bundle;
        let (file, size) = (&bundle.manifest.volume(v).file, bundle.manifest.volume(v).size);
        let path = bundle.locate(file);
        let Ok(meta) = std::fs::metadata(&path) else { return Ok(Look::Absent) };
        let watched = path.parent() == Some(self.watch.dir);
        if let Some(report) = &self.reports[v.index()] {
            return Ok(Look::Done { here: watched && report.status != VolumeStatus::Skipped });
        }
        if watched && meta.is_file() && meta.len() < size {
            if let Some(why) = bundle.foreign_label(v, &path) {
                self.wrong(why);
                return Ok(Look::Wrong);
            }
            self.tell_once(format!("{} is {} of {size} bytes: waiting for the rest", file, meta.len()));
            return Ok(Look::Partial);
        }
        let report = read(v)?;
        if watched && report.status == VolumeStatus::Foreign {
            self.wrong(report.problems.first().map(|p| p.problem.clone()).unwrap_or_default());
            return Ok(Look::Wrong);
        }
        self.reports[v.index()] = Some(report);
        Ok(Look::Read)
    }

    /// The watched directory holds another bundle: a manifest of this name with other
    /// bytes, or only other bundles' manifests.
    fn other_bundle(&self) -> Option<String> {
        let (bundle, dir) = (self.bundle, self.watch.dir);
        let ours = names::manifest_file(&bundle.manifest.name);
        if dir.join(&ours).symlink_metadata().is_ok() {
            return sources::other_bundle(dir, &bundle.manifest_sha256, &bundle.manifest);
        }
        let mut others = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().strip_suffix(".manifest.json").map(untrusted))
            .take(SHOWN_FILES)
            .peekable();
        others.peek()?;
        Some(format!(
            "{} holds bundle(s) {}, not bundle '{}'",
            dir.display(),
            others.map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", "),
            bundle.manifest.name
        ))
    }

    fn wrong(&mut self, what: String) {
        (self.watch.tell)(&format!("wrong disc: {what}"));
        self.wrong_discs.push(WrongDisc { at: crate::time::rfc3339(crate::time::now()), what });
    }

    /// Say `what` unless it was said before; whether it was said now.
    fn tell_once(&mut self, what: String) -> bool {
        if self.told.contains(&what) {
            return false;
        }
        (self.watch.tell)(&what);
        self.told.insert(what);
        true
    }

    /// What to ask for next: the disc holding the first volume still needed (its label
    /// and the files still needed on it), else that volume's file; `None` when all are done.
    fn prompt(&self) -> Option<String> {
        let m = &self.bundle.manifest;
        let pending: Vec<&str> =
            m.volume_ids().filter(|v| self.reports[v.index()].is_none()).map(|v| m.volume(v).file.as_str()).collect();
        let first = *pending.first()?;
        let into = self.watch.dir.display();
        let count = format!("{} volume(s) still needed", pending.len());
        Some(match m.disc_of(first) {
            Some(disc) => {
                let files: Vec<&str> = disc.files.iter().map(String::as_str).filter(|f| pending.contains(f)).collect();
                format!("insert disc {} ({}) into {into}; {count}", disc.label, shown(&files))
            }
            None => format!("insert the disc holding {first} into {into}; {count}: {}", shown(&pending)),
        })
    }
}

/// At most [`SHOWN_FILES`] names, then how many more.
fn shown(files: &[&str]) -> String {
    let mut text = files.iter().take(SHOWN_FILES).copied().collect::<Vec<_>>().join(", ");
    if files.len() > SHOWN_FILES {
        text.push_str(&format!(", and {} more", files.len() - SHOWN_FILES));
    }
    text
}

/// A digest of what `dir` holds now (the directory itself, and each entry's name, size,
/// inode and modification time), to notice a disc changed, a file arrived or grew.
fn snapshot(dir: &Path) -> Digest {
    let mut h = Hasher::new();
    let stamp = |h: &mut Hasher, m: &std::fs::Metadata| {
        use std::os::unix::fs::MetadataExt;
        for n in [m.dev(), m.ino(), m.size(), m.mtime() as u64, m.mtime_nsec() as u64] {
            h.update(&n.to_le_bytes());
        }
    };
    if let Ok(m) = dir.metadata() {
        stamp(&mut h, &m);
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten().take(MAX_WATCHED) {
            h.update(e.file_name().as_encoded_bytes());
            if let Ok(m) = e.metadata() {
                stamp(&mut h, &m);
            }
        }
    }
    h.finish()
}
