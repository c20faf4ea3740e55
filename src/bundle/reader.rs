//! Reading a bundle: the signature is checked before the manifest is parsed, then each
//! volume present is read chunk by chunk. Every byte of a volume is accounted for: chunk
//! data against its signed sha256, everything else against the exact framing pack writes.
//! Problems are recorded and reading goes on, so one run reports every bad chunk.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::bundle::ids::{ChunkId, EntryId, VolumeId};
use crate::bundle::manifest::{Index, Manifest};
use crate::bundle::names;
use crate::bundle::sign;
use crate::bundle::sources;
use crate::bundle::tar::{describe_unexpected, header, padded, BLOCK, END_OF_ARCHIVE};
use crate::digest::{Digest, Hasher};
use crate::error::{integrity, usage, Error, IoContext, Result};
use crate::media;
use crate::minisign::PublicKey;
use crate::progress::Progress;
use crate::text::untrusted;

const BUF: usize = 1 << 20;

/// A bundle whose manifest signature has been checked and whose manifest is valid.
pub struct Bundle {
    /// The directory the manifest was read from.
    pub dir: PathBuf,
    /// Every directory the bundle's files are looked for in, in order ([`sources`]).
    pub dirs: Vec<PathBuf>,
    /// Directories set aside because they hold another bundle's manifest of this name,
    /// each described.
    pub elsewhere: Vec<String>,
    pub manifest: Manifest,
    pub index: Index,
    /// sha256 of the exact manifest bytes.
    pub manifest_sha256: crate::digest::Digest,
    pub key_id: String,
    pub trusted_comment: String,
    /// State of `NAME.SHA256SUMS` and its signature.
    pub sums: SumsState,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase", tag = "state", content = "detail")]
pub enum SumsState {
    Ok,
    Absent,
    Bad(String),
}

/// Read the manifest bytes (unverified), for `list` without a key.
pub fn read_manifest_bytes(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>)> {
    let path = dir.join(names::manifest_file(name));
    match media::read_bounded(&path, crate::bundle::manifest::MAX_BUNDLE_MANIFEST, "the bundle manifest")? {
        Some(bytes) => Ok((path, bytes)),
        None => Err(usage(format!("{}: no such bundle manifest", path.display()))),
    }
}

/// A signature file (`.minisig`) from the media: minisign's four lines, each within
/// minisign's own limits (comments of 1 KiB and 8 KiB), so a few KiB at most.
pub fn read_signature(path: &Path) -> Result<Option<Vec<u8>>> {
    media::read_bounded(path, MAX_SIGNATURE_FILE, "a signature file")
}

/// The largest signature file minisign itself reads: an untrusted comment line of 1 KiB,
/// a trusted comment line of 8 KiB, two base64 lines of about 100 bytes, line breaks.
const MAX_SIGNATURE_FILE: u64 = 1024 + 8192 + 2 * 128;

/// Check the manifest's signature with `key`, then parse and validate it.
pub fn open(dir: &Path, name: Option<&str>, key: &PublicKey) -> Result<Bundle> {
    open_in(&[dir.to_path_buf()], name, key, None)
}

/// [`open`] over several directories ([`sources`]). `watched` (a drive's mount point whose
/// discs change, `--wait-for-media`) is kept whatever it holds now: it is checked as it
/// changes.
pub fn open_in(dirs: &[PathBuf], name: Option<&str>, key: &PublicKey, watched: Option<&Path>) -> Result<Bundle> {
    let name = sources::bundle_name(dirs, name)?;
    let manifest_file = names::manifest_file(&name);
    let dir = sources::holder(dirs, &manifest_file)
        .ok_or_else(|| usage(format!("no directory holds the bundle manifest {manifest_file}")))?;
    let (path, bytes) = read_manifest_bytes(dir, &name)?;
    let signed = check_manifest(&path, &bytes, std::slice::from_ref(key))?;
    if signed.manifest.name != name {
        return Err(integrity(format!("{} names bundle '{}'", path.display(), signed.manifest.name)));
    }
    let sha256 = Digest::of(&bytes);
    let (mut kept, mut elsewhere) = (Vec::<PathBuf>::new(), Vec::new());
    for d in dirs {
        if kept.contains(d) {
            continue;
        }
        match sources::other_bundle(d, &sha256, &signed.manifest).filter(|_| Some(d.as_path()) != watched) {
            Some(why) => elsewhere.push(why),
            None => kept.push(d.clone()),
        }
    }
    let mut bundle = Bundle {
        dir: dir.to_path_buf(),
        dirs: kept,
        elsewhere,
        manifest_sha256: sha256,
        manifest: signed.manifest,
        index: signed.index,
        key_id: key.key_id_hex(),
        trusted_comment: signed.comment,
        sums: SumsState::Absent,
    };
    bundle.sums = bundle.check_sums(key);
    Ok(bundle)
}

/// A manifest whose signature has been checked, parsed and validated.
pub struct SignedManifest {
    pub manifest: Manifest,
    pub index: Index,
    /// The signature's trusted comment.
    pub comment: String,
}

/// Read the manifest at `path` (a `NAME.manifest.json`, its signature beside it) and
/// check it was signed by one of `keys`, for it to be trusted (an earlier bundle, `pack
/// --since`).
pub fn read_signed_manifest(path: &Path, keys: &[PublicKey]) -> Result<SignedManifest> {
    let what = "a bundle manifest";
    let bytes = media::read_bounded(path, crate::bundle::manifest::MAX_BUNDLE_MANIFEST, what)?
        .ok_or_else(|| usage(format!("{}: no such bundle manifest", path.display())))?;
    check_manifest(path, &bytes, keys)
}

/// Check manifest `bytes` (read from `path`) against its signature beside it, signed by
/// one of `keys`, then parse and validate them.
fn check_manifest(path: &Path, bytes: &[u8], keys: &[PublicKey]) -> Result<SignedManifest> {
    let manifest_file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let sig_path = path.with_file_name(names::signature_file(&manifest_file));
    let Some(sig) = read_signature(&sig_path)? else {
        return Err(integrity(format!("{} is not signed: {} is missing", path.display(), sig_path.display())));
    };
    let mut verified = Err(usage("no key to check the manifest's signature with"));
    for key in keys {
        verified = sign::verify(key, bytes, &sig).map_err(|e| match e {
            Error::Sign(s) if s.is_integrity() => integrity(format!("{}: {s}", sig_path.display())),
            other => other,
        });
        if verified.is_ok() {
            break;
        }
    }
    let comment = verified?;
    let (manifest, index) = Manifest::parse(bytes)?;
    sign::check_comment(&comment, &manifest, &manifest_file)?;
    Ok(SignedManifest { manifest, index, comment })
}

impl Bundle {
    /// SHA256SUMS is for gates that trust only standard tools; when present (in the first
    /// directory that holds it) it must be signed and agree with the manifest. It can only
    /// be the text the manifest gives, so it is read up to that length: anything longer,
    /// or not a regular file, or unreadable, is bad.
    fn check_sums(&self, key: &PublicKey) -> SumsState {
        let m = &self.manifest;
        let file = names::sums_file(&m.name);
        let path = self.locate(&file);
        let expected = sign::sums_text(m);
        let text = match media::read_bounded(&path, expected.len() as u64, "SHA256SUMS") {
            Ok(Some(text)) => text,
            Ok(None) => return SumsState::Absent,
            Err(e) => return SumsState::Bad(e.to_string()),
        };
        let sig_path = path.with_file_name(names::signature_file(&file));
        let sig = match read_signature(&sig_path) {
            Ok(Some(sig)) => sig,
            Ok(None) => return SumsState::Bad(format!("{} is not signed ({} missing)", file, sig_path.display())),
            Err(e) => return SumsState::Bad(e.to_string()),
        };
        match sign::verify(key, &text, &sig).and_then(|c| sign::check_comment(&c, m, &file)) {
            Err(e) => SumsState::Bad(format!("{file}: {e}")),
            Ok(()) if text != expected.as_bytes() => {
                SumsState::Bad(format!("{file} does not list the manifest's volumes"))
            }
            Ok(()) => SumsState::Ok,
        }
    }
}

/// What to do with a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Already done: do not read it.
    Skip,
    /// Read and check it, keep nothing.
    Check,
    /// Read, check, and hand the data to a writer.
    Write,
}

/// Receives verified chunk data: unpack's extractor, or verify's `Checker`.
pub trait Sink: Sync {
    fn action(&self, chunk: ChunkId) -> Action;
    fn open(&self, chunk: ChunkId) -> Result<Box<dyn ChunkWriter + '_>>;
}

/// Data of one chunk, committed only after its sha256 matched.
pub trait ChunkWriter {
    fn write(&mut self, data: &[u8]) -> Result<()>;
    fn commit(self: Box<Self>) -> Result<()>;
}

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Chunk index in the manifest, when the problem is in a chunk.
    pub chunk: Option<ChunkId>,
    pub entry: Option<String>,
    pub offset: u64,
    pub problem: String,
    /// Images (or files) the problem hurts.
    pub hurts: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeStatus {
    Ok,
    /// Not read: everything it holds is already unpacked (or only checked, not needed).
    Skipped,
    Damaged,
    Missing,
    Foreign,
    /// Missing or damaged on the media (its problems say which), rebuilt from the
    /// recovery volumes and read whole from the rebuilt copy.
    Rebuilt,
}

/// A data volume (a tar of chunks) or a recovery volume (parity).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VolumeKind {
    Data,
    Recovery,
}

#[derive(Debug, Clone, Serialize)]
pub struct VolumeReport {
    /// The volume's number among those of its kind, from 1.
    pub volume: u32,
    pub kind: VolumeKind,
    pub file: String,
    pub status: VolumeStatus,
    pub size: u64,
    pub problems: Vec<Problem>,
    /// When and where the volume was found (absent when it was not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen: Option<Seen>,
}

/// Where and when a volume file was found: the evidence of which disc was at the gate when.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seen {
    /// The directory (mount point) it was read from.
    pub dir: PathBuf,
    /// The label of the disc that carries it, when the manifest plans discs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disc: Option<String>,
    /// When it was opened (RFC 3339, UTC).
    pub at: String,
}

impl Bundle {
    /// Where and when the volume file `file` (data or recovery) was found at `path`, if it is
    /// there: the report's evidence.
    pub fn seen(&self, path: &Path, file: &str) -> Option<Seen> {
        path.symlink_metadata().ok()?;
        Some(Seen {
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            disc: self.manifest.disc_of(file).map(|d| d.label.clone()),
            at: crate::time::rfc3339(crate::time::now()),
        })
    }

    /// Bytes of chunk data in volume `v` (what progress counts).
    pub fn volume_payload(&self, v: VolumeId) -> u64 {
        self.index.chunks_in(v).iter().map(|&c| self.manifest.chunk(c).length).sum()
    }

    pub fn volume_path(&self, v: VolumeId) -> PathBuf {
        self.locate(&self.manifest.volume(v).file)
    }

    /// Where a file of this bundle (a volume, data or recovery, or a small file) is read
    /// from: the first of its directories that holds it, else where it would be in the
    /// first.
    pub fn locate(&self, file: &str) -> PathBuf {
        sources::holder(&self.dirs, file).unwrap_or(&self.dir).join(file)
    }

    fn problem(&self, chunk: ChunkId, offset: u64, problem: String) -> Problem {
        let e = self.index.entry_of(chunk);
        Problem {
            chunk: Some(chunk),
            entry: Some(self.manifest.chunk(chunk).entry.clone()),
            offset,
            problem,
            hurts: self.manifest.hurt_by(e),
        }
    }

    /// Read volume `v`, checking every byte, handing good chunks to `sink`.
    /// Integrity problems are in the report, and so is a volume that cannot be read (a
    /// scratched disc answering EIO): its problem is recorded and reading goes on with the
    /// next chunk. An `Err` is an operational failure of the sink (the destination).
    pub fn read_volume(
        &self,
        v: VolumeId,
        sink: &dyn Sink,
        jobs: usize,
        progress: &dyn Progress,
    ) -> Result<VolumeReport> {
        self.read_volume_from(v, &self.volume_path(v), sink, jobs, progress)
    }

    /// [`Bundle::read_volume`] from a copy of volume `v` at `path` (one rebuilt from
    /// parity).
    pub fn read_volume_from(
        &self,
        v: VolumeId,
        path: &Path,
        sink: &dyn Sink,
        jobs: usize,
        progress: &dyn Progress,
    ) -> Result<VolumeReport> {
        let vol = self.manifest.volume(v);
        let path = path.to_path_buf();
        let mut report = VolumeReport {
            volume: v.number(),
            kind: VolumeKind::Data,
            file: vol.file.clone(),
            status: VolumeStatus::Ok,
            size: vol.size,
            problems: Vec::new(),
            seen: None,
        };
        report.seen = self.seen(&path, &vol.file);
        let (file, actual) = match self.open_volume(v, &path) {
            Ok(opened) => opened,
            Err((status, problem)) => {
                report.status = status;
                report.problems.extend(problem.map(whole));
                return Ok(report);
            }
        };
        if actual < vol.size {
            report.problems.push(Problem {
                offset: actual,
                ..whole(format!("volume is truncated: {actual} bytes of {}", vol.size))
            });
        } else if actual > vol.size {
            report.problems.push(Problem {
                offset: vol.size,
                ..whole(format!("volume has {} unexpected bytes after its end", actual - vol.size))
            });
        }
        let mut found = self.read_chunks((&file, &path, actual), self.index.chunks_in(v), sink, jobs, progress)?;
        found.sort_by_key(|p| p.offset);
        report.problems.extend(found);
        if actual >= vol.size {
            report.problems.extend(end_of_archive_problem(&file, vol.size));
        }
        if !report.problems.is_empty() {
            report.status = VolumeStatus::Damaged;
        }
        Ok(report)
    }

    /// Open volume `v` at `path` and check its label: the file and its length, or how the
    /// volume stands without being read (missing; damaged or foreign, with the reason).
    fn open_volume(
        &self,
        v: VolumeId,
        path: &Path,
    ) -> std::result::Result<(File, u64), (VolumeStatus, Option<String>)> {
        let opened = media::open_regular(path, &format!("volume {v}"))
            .and_then(|f| f.map(|f| f.metadata().map(|m| (f, m.len())).at(path)).transpose());
        let (file, actual) = match opened {
            Ok(Some(found)) => found,
            Ok(None) => return Err((VolumeStatus::Missing, None)),
            Err(e) => return Err((VolumeStatus::Damaged, Some(e.to_string()))),
        };
        // The label says which bundle and volume this file really is.
        match self.check_label(&file, path, v) {
            Ok(None) => Ok((file, actual)),
            Ok(Some(foreign)) => Err((VolumeStatus::Foreign, Some(foreign))),
            Err(e) => Err((VolumeStatus::Damaged, Some(format!("{}: cannot read its label: {e}", path.display())))),
        }
    }

    /// Read `chunks` (one volume's, in offset order) on `jobs` threads; the problems found,
    /// in no particular order. Work goes out in runs of consecutive chunks of one entry, so
    /// a split entry's parts are read in order by one thread (unpack hashes the whole entry
    /// on the way). The first error of the sink stops every thread and is returned.
    fn read_chunks(
        &self,
        volume: VolumeFile<'_>,
        chunks: &[ChunkId],
        sink: &dyn Sink,
        jobs: usize,
        progress: &dyn Progress,
    ) -> Result<Vec<Problem>> {
        let mut runs: Vec<&[ChunkId]> = Vec::new();
        let mut start = 0;
        for k in 1..=chunks.len() {
            let same = k < chunks.len() && self.index.entry_of(chunks[k]) == self.index.entry_of(chunks[start]);
            if !same {
                runs.push(&chunks[start..k]);
                start = k;
            }
        }
        let problems = Mutex::new(Vec::new());
        let next = AtomicUsize::new(0);
        let failure: Mutex<Option<Error>> = Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..jobs.max(1) {
                scope.spawn(|| {
                    let run = || -> Result<()> {
                        let mut buf = vec![0u8; BUF];
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            let Some(run) = runs.get(k) else { return Ok(()) };
                            for &c in *run {
                                if failure.lock().map(|f| f.is_some()).unwrap_or(true) {
                                    return Ok(());
                                }
                                if let Some(p) = self.read_chunk(volume, c, sink, &mut buf, progress)? {
                                    if let Ok(mut list) = problems.lock() {
                                        list.push(p);
                                    }
                                }
                            }
                        }
                    };
                    if let Err(e) = run() {
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(e);
                        }
                    }
                });
            }
        });
        if let Some(e) = failure.into_inner().ok().flatten() {
            return Err(e);
        }
        Ok(problems.into_inner().unwrap_or_default())
    }

    /// `Some(reason)` when the file is another bundle's volume, another volume of this
    /// one, or no airlift volume at all. Nothing of what the file holds is shown but what
    /// an airlift label says (escaped): a volume name may point anywhere (a symlink to a
    /// local file), and its content is not the gate's to print.
    fn check_label(&self, file: &File, path: &Path, v: VolumeId) -> std::io::Result<Option<String>> {
        let mut head = vec![0u8; 2048];
        let mut got = 0;
        while got < head.len() {
            let n = file.read_at(&mut head[got..], got as u64)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        if got < 512 {
            return Ok(None); // truncated: reported by the chunk checks
        }
        let expected = names::label_path(v);
        let mut hdr = tar::Header::new_old();
        hdr.as_mut_bytes().copy_from_slice(&head[..512]);
        let name = hdr.path_bytes();
        let Some(label_volume) = name
            .strip_prefix(b"airlift/volume.".as_slice())
            .and_then(|s| s.strip_suffix(b".json".as_slice()))
            .map(|n| String::from_utf8_lossy(n).into_owned())
        else {
            return Ok(Some(format!(
                "{} is not an airlift volume: its first entry is not the label {expected} of bundle '{}'",
                path.display(),
                self.manifest.name
            )));
        };
        let size = hdr.size().unwrap_or(0) as usize;
        let body = &head[512..(512 + size.min(1024)).min(got)];
        let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
        let field = |k: &str| parsed.as_ref().and_then(|j| j.get(k)).and_then(|b| b.as_str()).unwrap_or("");
        let bundle = field("bundle");
        let seq = parsed.as_ref().and_then(|j| j.get("sequence")).and_then(|b| b.as_u64());
        if !bundle.is_empty() && bundle != self.manifest.id {
            let other_name = field("name");
            return Ok(Some(format!(
                "{} belongs to another bundle: '{}' id {} sequence {}, volume {}",
                path.display(),
                untrusted(if other_name.is_empty() { "?" } else { other_name }),
                untrusted(bundle),
                seq.map(|s| s.to_string()).unwrap_or_else(|| "?".into()),
                untrusted(&label_volume)
            )));
        }
        if bundle == self.manifest.id && label_volume != format!("{:04}", v.number()) {
            return Ok(Some(format!(
                "{} is volume {} of this bundle, not volume {}: files were swapped or renamed",
                path.display(),
                untrusted(&label_volume),
                v
            )));
        }
        Ok(None)
    }

    /// Check one chunk. A read error of the volume is this chunk's problem (the next
    /// chunk may well be readable); an error of the sink is returned.
    fn read_chunk(
        &self,
        volume: VolumeFile<'_>,
        c: ChunkId,
        sink: &dyn Sink,
        buf: &mut [u8],
        progress: &dyn Progress,
    ) -> Result<Option<Problem>> {
        let chunk = self.manifest.chunk(c);
        let action = sink.action(c);
        if action == Action::Skip {
            progress.advance(chunk.length);
            return Ok(None);
        }
        let name = match self.check_header(volume, c)? {
            Ok(name) => name,
            Err(problem) => {
                progress.advance(chunk.length);
                return Ok(Some(problem));
            }
        };
        let mut writer = match action {
            Action::Write => Some(sink.open(c)?),
            _ => None,
        };
        // Content that cannot be expanded within its declared bounds is malicious; it is
        // reported after the hash check, so damage is named as damage first.
        let (digest, refused) = match self.read_data(volume, c, &mut writer, buf, progress)? {
            Ok(read) => read,
            Err(problem) => return Ok(Some(problem)),
        };
        let (file, path, _) = volume;
        let data_end = chunk.offset + chunk.length;
        let pad = (padded(chunk.length) - chunk.length) as usize;
        if pad > 0 {
            if let Err(e) = file.read_exact_at(&mut buf[..pad], data_end) {
                return Ok(Some(self.unreadable(c, path, data_end, e)));
            }
            if buf[..pad].iter().any(|&b| b != 0) {
                return Ok(Some(self.problem(c, data_end, format!("padding after '{name}' is not zero"))));
            }
        }
        if digest != chunk.sha256 {
            return Ok(Some(self.problem(
                c,
                chunk.offset,
                format!("chunk '{name}' is damaged: sha256 {digest}, signed manifest says {}", chunk.sha256),
            )));
        }
        if let Some(msg) = refused {
            return Ok(Some(self.problem(c, chunk.offset, msg)));
        }
        if let Some(w) = writer {
            match w.commit() {
                Ok(()) => {}
                Err(Error::Integrity(msg)) => return Ok(Some(self.problem(c, chunk.offset, msg))),
                Err(other) => return Err(other),
            }
        }
        Ok(None)
    }

    /// Check that chunk `c` is present in full and its tar header is exactly the one pack
    /// writes: its stored name, or the problem.
    fn check_header(
        &self,
        (file, path, actual): VolumeFile<'_>,
        c: ChunkId,
    ) -> Result<std::result::Result<String, Problem>> {
        let chunk = self.manifest.chunk(c);
        let start = chunk.offset - BLOCK;
        let end = chunk.offset + padded(chunk.length);
        if end > actual {
            return Ok(Err(self.problem(c, start, format!("chunk is cut off: the volume ends at byte {actual}"))));
        }
        let name = self.manifest.chunk_name(&self.index, c);
        let entry = self.manifest.entry(self.index.entry_of(c));
        let expected = header(&name, chunk.length, entry.mode, self.manifest.created)?;
        let mut found = [0u8; 512];
        if let Err(e) = file.read_exact_at(&mut found, start) {
            return Ok(Err(self.unreadable(c, path, start, e)));
        }
        if found != expected {
            return Ok(Err(self.problem(c, start, describe_unexpected(&found, &name))));
        }
        Ok(Ok(name))
    }

    /// Stream chunk `c`'s data through the hash and into `writer`: its sha256 and, when
    /// the writer refused the content (it would not expand within its bounds), why; the
    /// writer is then dropped. A read error is the chunk's problem.
    fn read_data(
        &self,
        (file, path, _): VolumeFile<'_>,
        c: ChunkId,
        writer: &mut Option<Box<dyn ChunkWriter + '_>>,
        buf: &mut [u8],
        progress: &dyn Progress,
    ) -> Result<std::result::Result<(Digest, Option<String>), Problem>> {
        let chunk = self.manifest.chunk(c);
        let mut hasher = Hasher::new();
        let mut at = chunk.offset;
        let data_end = chunk.offset + chunk.length;
        let mut refused: Option<String> = None;
        while at < data_end {
            let n = (data_end - at).min(buf.len() as u64) as usize;
            if let Err(e) = file.read_exact_at(&mut buf[..n], at) {
                progress.advance(data_end - at);
                return Ok(Err(self.unreadable(c, path, at, e)));
            }
            hasher.update(&buf[..n]);
            if let Some(w) = writer.as_mut() {
                match w.write(&buf[..n]) {
                    Ok(()) => {}
                    Err(Error::Integrity(msg)) => {
                        refused = Some(msg);
                        *writer = None;
                    }
                    Err(other) => return Err(other),
                }
            }
            at += n as u64;
            progress.advance(n as u64);
        }
        Ok(Ok((hasher.finish(), refused)))
    }

    fn unreadable(&self, c: ChunkId, path: &Path, at: u64, e: std::io::Error) -> Problem {
        self.problem(c, at, format!("{}: cannot read byte {at}: {e}", path.display()))
    }

    /// Files in the bundle's directories that look like volumes of this bundle but are not
    /// listed.
    pub fn unlisted_volumes(&self) -> Vec<String> {
        let mut extra = Vec::new();
        let prefix = format!("{}.", self.manifest.name);
        for dir in &self.dirs {
            let Ok(rd) = std::fs::read_dir(dir) else { continue };
            for entry in rd.flatten() {
                let f = entry.file_name().to_string_lossy().into_owned();
                let is_volume = f
                    .strip_prefix(&prefix)
                    .and_then(|s| s.strip_suffix(".tar"))
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
                if is_volume && !self.manifest.volumes.iter().any(|v| v.file == f) && !extra.contains(&f) {
                    extra.push(f);
                }
            }
        }
        extra.sort();
        extra
    }

    /// `Some(why)` when the file at `path`, opened as volume `v`, is labelled as another
    /// bundle's volume or another volume of this one: what [`Bundle::read_volume`] would
    /// report as foreign, found from the label alone (a file still being written is
    /// recognised before it is whole).
    pub fn foreign_label(&self, v: VolumeId, path: &Path) -> Option<String> {
        let file = media::open_regular(path, &format!("volume {v}")).ok().flatten()?;
        self.check_label(&file, path, v).ok().flatten()
    }
}

/// An open volume as the chunk readers use it: the file, its path, its actual length.
type VolumeFile<'a> = (&'a File, &'a Path, u64);

/// A problem of the volume as a whole (no chunk), at its start.
pub(crate) fn whole(problem: String) -> Problem {
    Problem { chunk: None, entry: None, offset: 0, problem, hurts: vec![] }
}

/// The end-of-archive blocks of a volume of `size` bytes: a problem unless they are zeros.
fn end_of_archive_problem(file: &File, size: u64) -> Option<Problem> {
    let end = size - END_OF_ARCHIVE;
    let mut tail = vec![0u8; END_OF_ARCHIVE as usize];
    let problem = match file.read_exact_at(&mut tail, end) {
        Err(e) => Some(format!("cannot read the end-of-archive blocks: {e}")),
        Ok(()) if tail.iter().any(|&b| b != 0) => {
            let mut h = [0u8; 512];
            h.copy_from_slice(&tail[..512]);
            Some(if h.iter().any(|&b| b != 0) {
                describe_unexpected(&h, "end of archive")
            } else {
                "end-of-archive blocks are damaged".into()
            })
        }
        Ok(()) => None,
    }?;
    Some(Problem { offset: end, ..whole(problem) })
}

/// How far an image got: all its chunks good, some damaged, or some not present yet.
#[derive(Debug, Clone, Serialize)]
pub struct ImageState {
    pub reference: Option<String>,
    pub digest: crate::digest::Digest,
    pub status: &'static str,
    /// Volumes still needed (for incomplete images).
    pub missing_volumes: Vec<String>,
}

impl Bundle {
    /// The bytes of the small entry `path` (at most `limit` bytes), read straight from its
    /// volumes and checked against the signed manifest (each chunk, then the whole);
    /// `None` when the bundle has no such entry or a volume holding it is absent.
    pub fn read_entry(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let Some(e) = self.manifest.entry_ids().find(|&e| self.manifest.entry(e).path == path) else {
            return Ok(None);
        };
        let entry = self.manifest.entry(e);
        if entry.size.max(entry.stored_size) > limit {
            return Err(usage(format!("'{path}' is {} bytes, more than the {limit} read here", entry.size)));
        }
        let mut stored = Vec::new();
        for &c in self.index.chunks_of(e) {
            let chunk = self.manifest.chunk(c);
            let v = self.index.volume_of(c);
            let volume = self.volume_path(v);
            let Some(file) = media::open_regular(&volume, &format!("volume {v}"))? else { return Ok(None) };
            let mut buf = vec![0; chunk.length as usize];
            file.read_exact_at(&mut buf, chunk.offset).at(&volume)?;
            if Digest::of(&buf) != chunk.sha256 {
                return Err(integrity(format!(
                    "{}: part {} of '{path}' does not match the signed manifest",
                    volume.display(),
                    chunk.part
                )));
            }
            stored.extend(buf);
        }
        let bytes = match entry.compression {
            crate::bundle::manifest::Compression::None => stored,
            crate::bundle::manifest::Compression::Zstd => {
                crate::bundle::expand::expand(&stored[..], entry, Vec::new())?
            }
        };
        if Digest::of(&bytes) != entry.digest {
            return Err(integrity(format!(
                "'{path}' does not match its digest {} in the signed manifest",
                entry.digest
            )));
        }
        Ok(Some(bytes))
    }

    /// An expired bundle is refused: the signer said it must not be used after that time.
    pub fn check_expiry(&self, now: u64) -> Result<()> {
        match self.manifest.expires {
            Some(t) if t < now => Err(crate::error::refused(
                format!("bundle '{}' expired at {} (signed expiry)", self.manifest.name, crate::time::rfc3339(t)),
                format!("expired on {}: ask for a new bundle", crate::time::rfc3339(t)),
            )),
            _ => Ok(()),
        }
    }

    /// Volumes holding any chunk of entry `e`.
    pub fn entry_volumes(&self, e: EntryId) -> Vec<VolumeId> {
        let mut v: Vec<VolumeId> = self.index.chunks_of(e).iter().map(|&c| self.index.volume_of(c)).collect();
        v.dedup();
        v
    }

    /// Each image's state given the reports of the volumes read.
    pub fn image_states(&self, reports: &[VolumeReport]) -> Vec<ImageState> {
        // A rebuilt volume's problems were the media's: what was read from it is whole.
        let bad_chunks: HashSet<ChunkId> = (reports.iter().filter(|r| r.status != VolumeStatus::Rebuilt))
            .flat_map(|r| r.problems.iter().filter_map(|p| p.chunk))
            .collect();
        let entry_of: HashMap<&crate::digest::Digest, EntryId> = self
            .manifest
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind == crate::bundle::manifest::EntryKind::Blob)
            .map(|(i, e)| (&e.digest, EntryId::new(i)))
            .collect();
        self.manifest
            .images
            .iter()
            .map(|image| {
                let mut damaged = false;
                let mut missing = Vec::new();
                for blob in &image.blobs {
                    let Some(&e) = entry_of.get(blob) else { continue };
                    if self.index.chunks_of(e).iter().any(|c| bad_chunks.contains(c)) {
                        damaged = true;
                    }
                    for v in self.entry_volumes(e) {
                        let r = &reports[v.index()];
                        if r.status == VolumeStatus::Foreign
                            || (r.status == VolumeStatus::Damaged && r.problems.iter().any(|p| p.chunk.is_none()))
                        {
                            damaged = true;
                        }
                        if r.status == VolumeStatus::Missing && !missing.contains(&r.file) {
                            missing.push(r.file.clone());
                        }
                    }
                }
                let status = if damaged {
                    "damaged"
                } else if !missing.is_empty() {
                    "incomplete"
                } else {
                    "ok"
                };
                ImageState {
                    reference: image.reference.clone(),
                    digest: image.digest.clone(),
                    status,
                    missing_volumes: missing,
                }
            })
            .collect()
    }
}
