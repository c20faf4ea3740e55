//! Writing a bundle: items are compressed where it pays, cut into chunks, laid out into
//! volumes that never exceed the volume size, hashed while written, and described by a
//! signed manifest. Output is a pure function of the inputs, so packing twice gives the
//! same bytes. [`DryLayout`] lays items out by the same rule without writing anything
//! (`pack --dry-run`).

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use tempfile::NamedTempFile;

use crate::bundle::ids::VolumeId;
use crate::bundle::manifest::{
    Base, Catalog, Channel, Chunk, Compression, Entry, EntryKind, Image, Manifest, Omitted, Release, Volume, FORMAT,
    VERSION,
};
use crate::bundle::names;
use crate::bundle::sign;
use crate::bundle::tar::{header, padded, BLOCK, END_OF_ARCHIVE};
use crate::digest::{Digest, Hasher, ThreadedHasher};
use crate::error::{integrity, usage, IoContext, Result};
use crate::minisign::SecretKey;
use crate::progress::Progress;
use crate::store::{write_atomic, DirectReader, DirectWriter};

/// Smallest volume accepted: room for a label, one small chunk and the end blocks.
pub const MIN_VOLUME: u64 = 16 * 1024;
pub const MIN_CHUNK: u64 = 4 * 1024;
const BUF: usize = 1 << 20;
/// zstd level for entries worth compressing.
const ZSTD_LEVEL: i32 = 3;

/// Whether to try compressing an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compress {
    Never,
    /// Compress, and keep the result only if it saves at least a tenth.
    IfItPays,
}

#[derive(Debug, Clone)]
pub enum Content {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// Something to store in the bundle.
#[derive(Debug, Clone)]
pub struct Item {
    pub path: String,
    pub kind: EntryKind,
    pub mode: u32,
    pub content: Content,
    pub size: u64,
    /// The digest the content must have; checked while it is read.
    pub digest: Digest,
    pub compress: Compress,
}

#[derive(Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub name: String,
    pub sequence: u64,
    pub created: u64,
    pub expires: Option<u64>,
    pub volume_size: u64,
    pub chunk_size: u64,
    /// The discs the volumes go on (`--media` naming a disc, `--disc-size`), recorded in
    /// the manifest; none for other media.
    pub discs: Option<crate::bundle::discs::DiscSpec>,
    /// Recovery volumes to compute over the data volumes (`pack --parity`).
    pub parity: Option<crate::bundle::parity::Amount>,
}

/// Where one part of an entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Placement {
    volume: VolumeId,
    len: u64,
}

/// Position in the volume sequence while laying out.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// Current volume; none before the first.
    volume: Option<VolumeId>,
    /// Bytes used in the current volume.
    pos: u64,
}

/// An item's stored bytes, ready to be copied into volumes.
struct Prepared {
    entry: Entry,
    source: Box<dyn Read>,
    /// Stored as is (not compressed): the stored bytes hash to the entry's digest.
    verify_raw: bool,
    /// The caller checked the content against the digest already: not hashed again
    /// whole, and a raw entry in one chunk takes the digest as its chunk hash.
    checked: bool,
}

pub struct BundleWriter<'a> {
    settings: Settings,
    id: String,
    progress: &'a dyn Progress,
    cursor: Cursor,
    volume: Option<OpenVolume>,
    entries: Vec<Entry>,
    chunks: Vec<Chunk>,
    volumes: Vec<Volume>,
}

/// What the manifest says besides where the bytes are: the images and what they came
/// from, and what a differential bundle relies on.
#[derive(Default)]
pub struct Contents {
    pub images: Vec<Image>,
    pub releases: Vec<Release>,
    pub catalogs: Vec<Catalog>,
    pub channels: Vec<Channel>,
    pub bases: Vec<Base>,
    pub omitted: Vec<Omitted>,
}

/// A volume being written: buffers go to a thread of its own that hashes them and
/// writes them, so that disk writes and the volume hash overlap reading the next data.
struct OpenVolume {
    temp: NamedTempFile,
    tx: Option<SyncSender<Arc<Vec<u8>>>>,
    /// Ends with the volume's sha256, or at the first write error.
    thread: Option<JoinHandle<Result<Digest>>>,
    written: u64,
}

impl<'a> BundleWriter<'a> {
    pub fn new(settings: Settings, id: String, progress: &'a dyn Progress) -> Result<BundleWriter<'a>> {
        check_settings(&settings)?;
        fs::create_dir_all(&settings.dir).at(&settings.dir)?;
        // A pack killed earlier may have left volumes half written.
        crate::store::purge_temps_in(&settings.dir)?;
        Ok(BundleWriter {
            settings,
            id,
            progress,
            cursor: Cursor { volume: None, pos: 0 },
            volume: None,
            entries: Vec::new(),
            chunks: Vec::new(),
            volumes: Vec::new(),
        })
    }

    /// Store an item, checking its content against its digest as it is read.
    pub fn add(&mut self, item: &Item) -> Result<()> {
        let prepared = self.prepare(item)?;
        self.store(prepared)
    }

    /// Store an item whose content this run has just checked against its digest (a blob
    /// fetched into the cache): a whole-content hash is not computed again where the
    /// chunk hashes do not give it for free.
    pub fn add_checked(&mut self, item: &Item) -> Result<()> {
        let mut prepared = self.prepare(item)?;
        prepared.checked = true;
        self.store(prepared)
    }

    fn label_bytes(&self, volume: VolumeId) -> Vec<u8> {
        label_bytes(&self.settings, &self.id, volume)
    }

    /// Compress if it pays; otherwise stream the content as is.
    fn prepare(&self, item: &Item) -> Result<Prepared> {
        let mut entry = Entry {
            path: item.path.clone(),
            kind: item.kind,
            digest: item.digest.clone(),
            size: item.size,
            compression: Compression::None,
            stored_size: item.size,
            mode: item.mode,
        };
        if item.compress == Compress::IfItPays && item.size > 0 {
            let mut temp = tempfile::tempfile_in(&self.settings.dir).at(&self.settings.dir)?;
            let (digest, expanded) = compress(item, &mut temp, &self.settings.dir)?;
            entry.digest = digest;
            entry.size = expanded;
            let stored = temp.stream_position().at(&self.settings.dir)?;
            if pays(stored, expanded) {
                temp.seek(SeekFrom::Start(0)).at(&self.settings.dir)?;
                entry.compression = Compression::Zstd;
                entry.stored_size = stored;
                return Ok(Prepared { entry, source: Box::new(temp), verify_raw: false, checked: false });
            }
            return Ok(Prepared { entry, source: open_content(&item.content)?, verify_raw: true, checked: false });
        }
        Ok(Prepared { entry, source: open_content(&item.content)?, verify_raw: true, checked: false })
    }

    fn store(&mut self, mut prepared: Prepared) -> Result<()> {
        let parts = plan(&self.settings, &self.id, self.cursor, prepared.entry.stored_size)?;
        let verify = prepared.verify_raw && !prepared.checked;
        let mut blob_hasher = (verify && parts.len() > 1).then(ThreadedHasher::new);
        // A checked raw entry in one chunk: that chunk's hash is the entry's digest.
        let known =
            (prepared.verify_raw && prepared.checked && parts.len() == 1).then(|| prepared.entry.digest.clone());
        let mut chunk_digests = Vec::with_capacity(parts.len());
        for (part, placement) in parts.iter().enumerate() {
            if Some(placement.volume) != self.cursor.volume {
                self.next_volume()?;
            }
            let name = names::stored_name(&prepared.entry, part as u32, parts.len());
            let digest = self.copy_chunk(
                &name,
                &prepared.entry,
                placement.len,
                &mut prepared.source,
                blob_hasher.as_mut(),
                known.clone(),
            )?;
            self.chunks.push(Chunk {
                volume: placement.volume.number(),
                offset: self.cursor.pos - padded(placement.len),
                length: placement.len,
                sha256: digest.clone(),
                entry: prepared.entry.path.clone(),
                part: part as u32,
            });
            chunk_digests.push(digest);
        }
        // Nothing may follow the declared length.
        let mut probe = [0u8; 1];
        if prepared.source.read(&mut probe).unwrap_or(0) != 0 {
            return Err(integrity(format!("{} grew while it was being packed", prepared.entry.path)));
        }
        if verify {
            let digest = match blob_hasher {
                Some(h) => h.finish(),
                None => chunk_digests[0].clone(),
            };
            if digest != prepared.entry.digest {
                return Err(integrity(format!(
                    "{} changed or is corrupt: its content hashes to {digest}, expected {}",
                    prepared.entry.path, prepared.entry.digest
                )));
            }
            prepared.entry.digest = digest;
        }
        self.entries.push(prepared.entry);
        Ok(())
    }

    /// Write one tar entry of `len` bytes from `source`; returns the sha256 of the data
    /// (`known` when the caller knows it already).
    fn copy_chunk(
        &mut self,
        name: &str,
        entry: &Entry,
        len: u64,
        source: &mut Box<dyn Read>,
        mut blob_hasher: Option<&mut ThreadedHasher>,
        known: Option<Digest>,
    ) -> Result<Digest> {
        let mtime = self.settings.created;
        let vol = self.volume.as_mut().ok_or_else(|| usage("internal: no open volume"))?;
        let h = header(name, len, entry.mode, mtime)?;
        vol.write(Arc::new(h.to_vec()))?;
        let mut hasher = Hasher::new();
        let mut left = len;
        while left > 0 {
            let want = left.min(BUF as u64) as usize;
            let mut buf = vec![0u8; want];
            read_full(source, &mut buf)
                .map_err(|e| crate::error::Error::Io { path: PathBuf::from(&entry.path), source: e })?;
            if known.is_none() {
                hasher.update(&buf);
            }
            let buf = Arc::new(buf);
            if let Some(bh) = blob_hasher.as_deref_mut() {
                bh.update(buf.clone());
            }
            vol.write(buf)?;
            left -= want as u64;
            self.progress.advance(want as u64);
        }
        let pad = padded(len) - len;
        if pad > 0 {
            vol.write(Arc::new(vec![0u8; pad as usize]))?;
        }
        self.cursor.pos += BLOCK + padded(len);
        debug_assert_eq!(self.cursor.pos, vol.written);
        Ok(known.unwrap_or_else(|| hasher.finish()))
    }

    fn next_volume(&mut self) -> Result<()> {
        self.finish_volume()?;
        self.volume = Some(OpenVolume::create(&self.settings.dir)?);
        let v = VolumeId::after(self.cursor.volume);
        self.cursor = Cursor { volume: Some(v), pos: 0 };
        let bytes = self.label_bytes(v);
        let entry = Entry {
            path: names::label_path(v),
            kind: EntryKind::Label,
            digest: Digest::of(&bytes),
            size: bytes.len() as u64,
            compression: Compression::None,
            stored_size: bytes.len() as u64,
            mode: 0o644,
        };
        let mut source: Box<dyn Read> = Box::new(std::io::Cursor::new(bytes));
        let len = entry.size;
        let name = entry.path.clone();
        let digest = self.copy_chunk(&name, &entry, len, &mut source, None, None)?;
        self.chunks.push(Chunk {
            volume: v.number(),
            offset: BLOCK,
            length: len,
            sha256: digest,
            entry: name,
            part: 0,
        });
        self.entries.push(entry);
        Ok(())
    }

    fn finish_volume(&mut self) -> Result<()> {
        let (Some(mut vol), Some(v)) = (self.volume.take(), self.cursor.volume) else { return Ok(()) };
        vol.write(Arc::new(vec![0u8; END_OF_ARCHIVE as usize]))?;
        let written = vol.written;
        let (temp, sha256) = vol.close()?;
        let file_name = names::volume_file(&self.settings.name, v);
        let dest = self.settings.dir.join(&file_name);
        crate::store::commit_file(temp, &dest, crate::store::Commit::PUBLIC)?;
        debug_assert!(written <= self.settings.volume_size);
        self.volumes.push(Volume { file: file_name, size: written, sha256 });
        Ok(())
    }

    /// Close the last volume, compute the recovery volumes (`parity`), place the volumes on
    /// discs (when asked), write SHA256SUMS
    /// and the manifest with their signatures, and remove volumes of an earlier, larger
    /// bundle of the same name.
    pub fn finish(mut self, contents: Contents, key: &SecretKey) -> Result<Manifest> {
        self.finish_volume()?;
        let s = &self.settings;
        let parity = match s.parity {
            Some(amount) => Some(crate::bundle::parity::encode(&s.dir, &s.name, &self.volumes, amount, self.progress)?),
            None => None,
        };
        let Contents { images, releases, catalogs, channels, bases, omitted } = contents;
        let manifest = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            id: self.id.clone(),
            name: s.name.clone(),
            sequence: s.sequence,
            created: s.created,
            expires: s.expires,
            tool: format!("airlift {}", env!("CARGO_PKG_VERSION")),
            volume_size: s.volume_size,
            chunk_size: s.chunk_size,
            images,
            releases,
            catalogs,
            channels,
            bases,
            omitted,
            parity,
            discs: None,
            entries: self.entries,
            volumes: self.volumes,
            chunks: self.chunks,
        };
        let (manifest, signed) = match s.discs {
            Some(spec) => crate::bundle::discs::place(manifest, spec, key)?,
            None => {
                manifest.validate()?;
                let signed = sign::Signed::new(&manifest, key);
                (manifest, signed)
            }
        };
        for (file, bytes) in signed.files(&s.name) {
            write_atomic(&s.dir.join(file), bytes)?;
        }
        let recovery = manifest.parity.as_ref().map_or(0, |p| p.volumes.len());
        remove_stale_volumes(&s.dir, &s.name, manifest.volumes.len(), recovery)?;
        Ok(manifest)
    }
}

/// Lay a stored stream of `len` bytes out from `cursor`: the one layout rule the writer
/// and [`DryLayout`] share.
fn plan(settings: &Settings, id: &str, cursor: Cursor, len: u64) -> Result<Vec<Placement>> {
    let vs = settings.volume_size;
    let mut cur = cursor;
    let mut parts = Vec::new();
    let mut remaining = len;
    loop {
        let avail = vs.saturating_sub(cur.pos + END_OF_ARCHIVE);
        let room = if avail < 2 * BLOCK { 0 } else { (avail - BLOCK) / BLOCK * BLOCK };
        let fits_empty = remaining == 0 && avail >= BLOCK;
        let volume = match cur.volume {
            Some(v) if room > 0 || fits_empty => v,
            current => {
                let next = VolumeId::after(current);
                cur = Cursor { volume: Some(next), pos: after_label(settings, id, next) };
                if cur.pos + 2 * BLOCK + END_OF_ARCHIVE > vs {
                    return Err(usage(format!("volume size {vs} is too small")));
                }
                continue;
            }
        };
        let take = remaining.min(settings.chunk_size).min(room);
        parts.push(Placement { volume, len: take });
        cur.pos += BLOCK + padded(take);
        remaining -= take;
        if remaining == 0 {
            return Ok(parts);
        }
    }
}

/// Where the first entry after a new volume's label starts.
fn after_label(settings: &Settings, id: &str, volume: VolumeId) -> u64 {
    BLOCK + padded(label_bytes(settings, id, volume).len() as u64)
}

/// The label that opens every volume.
fn label_bytes(settings: &Settings, id: &str, volume: VolumeId) -> Vec<u8> {
    format!(
        "{{\"bundle\":\"{id}\",\"name\":\"{}\",\"sequence\":{},\"volume\":{}}}\n",
        settings.name,
        settings.sequence,
        volume.number()
    )
    .into_bytes()
}

/// The bounds [`BundleWriter`] and [`DryLayout`] accept.
fn check_settings(settings: &Settings) -> Result<()> {
    if settings.volume_size < MIN_VOLUME {
        return Err(usage(format!("volume size {} is below the minimum of {MIN_VOLUME} bytes", settings.volume_size)));
    }
    if settings.chunk_size < MIN_CHUNK || settings.chunk_size > crate::bundle::manifest::MAX_CHUNK {
        return Err(usage(format!(
            "chunk size {} is out of range ({MIN_CHUNK} to {} bytes)",
            settings.chunk_size,
            crate::bundle::manifest::MAX_CHUNK
        )));
    }
    if !names::valid_bundle_name(&settings.name) {
        return Err(usage(format!(
            "bundle name '{}' must be 1-64 letters, digits, '.', '_' or '-', not starting with '.'",
            settings.name
        )));
    }
    Ok(())
}

/// Compressing pays when it saves at least a tenth.
fn pays(stored: u64, expanded: u64) -> bool {
    stored * 10 <= expanded * 9
}

/// zstd-compress an item's content into `into`, checking it against the item's digest
/// and size; returns (digest, expanded size). `dir` names the output in errors.
fn compress(item: &Item, into: &mut dyn Write, dir: &Path) -> Result<(Digest, u64)> {
    let mut hasher = Hasher::new();
    let mut expanded = 0u64;
    let mut enc = zstd::stream::Encoder::new(into, ZSTD_LEVEL).at(dir)?;
    let mut reader = open_content(&item.content)?;
    let mut buf = vec![0u8; BUF];
    loop {
        let n = reader.read(&mut buf).at(content_path(&item.content))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        expanded += n as u64;
        enc.write_all(&buf[..n]).at(dir)?;
    }
    enc.finish().at(dir)?;
    let digest = hasher.finish();
    check_source(item, &digest, expanded)?;
    Ok((digest, expanded))
}

/// Lays items out exactly as [`BundleWriter`] would, writing nothing (`pack --dry-run`).
/// An item worth compressing is compressed into a counter to learn its stored size; any
/// other item is stored at its size, so its content is not read.
pub struct DryLayout {
    settings: Settings,
    id: String,
    cursor: Cursor,
    /// Sizes of the volumes closed so far.
    volumes: Vec<u64>,
}

impl DryLayout {
    pub fn new(settings: Settings, id: String) -> Result<DryLayout> {
        check_settings(&settings)?;
        Ok(DryLayout { settings, id, cursor: Cursor { volume: None, pos: 0 }, volumes: Vec::new() })
    }

    /// Place an item after the ones placed before; returns its stored size.
    pub fn add(&mut self, item: &Item) -> Result<u64> {
        let stored = self.stored_size(item)?;
        for placement in plan(&self.settings, &self.id, self.cursor, stored)? {
            if Some(placement.volume) != self.cursor.volume {
                self.close_volume();
                let pos = after_label(&self.settings, &self.id, placement.volume);
                self.cursor = Cursor { volume: Some(placement.volume), pos };
            }
            self.cursor.pos += BLOCK + padded(placement.len);
        }
        Ok(stored)
    }

    fn stored_size(&self, item: &Item) -> Result<u64> {
        if item.compress == Compress::Never || item.size == 0 {
            return Ok(item.size);
        }
        let mut counter = Counter(0);
        let (_, expanded) = compress(item, &mut counter, &self.settings.dir)?;
        Ok(if pays(counter.0, expanded) { counter.0 } else { expanded })
    }

    fn close_volume(&mut self) {
        if self.cursor.volume.is_some() {
            self.volumes.push(self.cursor.pos + END_OF_ARCHIVE);
        }
    }

    /// The size of every volume the bundle takes, in order.
    pub fn finish(mut self) -> Vec<u64> {
        self.close_volume();
        self.volumes
    }
}

/// A sink that counts what is written to it.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl OpenVolume {
    fn create(dir: &Path) -> Result<OpenVolume> {
        let temp = crate::store::temp_in(dir)?;
        let mut file = DirectWriter::temp(&temp, true)?;
        let (tx, rx) = sync_channel::<Arc<Vec<u8>>>(8);
        let thread = std::thread::spawn(move || {
            let mut hasher = Hasher::new();
            for buf in rx {
                hasher.update(&buf);
                file.write_all(&buf)?;
            }
            file.finish()?;
            Ok(hasher.finish())
        });
        Ok(OpenVolume { temp, tx: Some(tx), thread: Some(thread), written: 0 })
    }

    fn write(&mut self, buf: Arc<Vec<u8>>) -> Result<()> {
        let len = buf.len() as u64;
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(buf).is_ok());
        if !sent {
            // The thread stopped at a write error: that error.
            self.tx = None;
            return self.join().map(|_| ());
        }
        self.written += len;
        Ok(())
    }

    fn join(&mut self) -> Result<Digest> {
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(result)) => result,
            // Hashing and writing do not panic short of memory exhaustion: resume it.
            Some(Err(p)) => std::panic::resume_unwind(p),
            None => Err(usage("internal: the volume was closed already")),
        }
    }

    /// Wait for every write; the temp file and the volume's sha256.
    fn close(mut self) -> Result<(NamedTempFile, Digest)> {
        self.tx = None;
        let digest = self.join()?;
        Ok((self.temp, digest))
    }
}

/// Remove the data volumes after the first `count` and the recovery volumes after the
/// first `recovery` that an earlier bundle of this name left in `dir`.
fn remove_stale_volumes(dir: &Path, name: &str, count: usize, recovery: usize) -> Result<()> {
    let data = (count..).map(|v| names::volume_file(name, VolumeId::new(v)));
    let parity = (recovery + 1..).map(|n| names::parity_file(name, n));
    for files in [Box::new(data) as Box<dyn Iterator<Item = String>>, Box::new(parity)] {
        for path in files.map(|f| dir.join(f)) {
            if !path.exists() {
                break;
            }
            fs::remove_file(&path).at(&path)?;
        }
    }
    Ok(())
}

fn open_content(content: &Content) -> Result<Box<dyn Read>> {
    Ok(match content {
        Content::File(p) => Box::new(DirectReader::open(p)?),
        Content::Bytes(b) => Box::new(std::io::Cursor::new(b.clone())),
    })
}

fn content_path(content: &Content) -> PathBuf {
    match content {
        Content::File(p) => p.clone(),
        Content::Bytes(_) => PathBuf::from("<generated>"),
    }
}

fn check_source(item: &Item, digest: &Digest, size: u64) -> Result<()> {
    if size != item.size {
        return Err(integrity(format!(
            "{} is {size} bytes, expected {}",
            content_path(&item.content).display(),
            item.size
        )));
    }
    if &item.digest != digest {
        return Err(integrity(format!(
            "{} changed or is corrupt: its content hashes to {digest}, expected {}",
            content_path(&item.content).display(),
            item.digest
        )));
    }
    Ok(())
}

/// Fill `buf` completely; a source that ends early is an error, not a short chunk.
pub fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("ended after {filled} of {} bytes", buf.len()),
                ))
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(path: &str, bytes: Vec<u8>, compress: Compress) -> Item {
        Item {
            path: path.into(),
            kind: EntryKind::File,
            mode: 0o644,
            size: bytes.len() as u64,
            digest: Digest::of(&bytes),
            content: Content::Bytes(bytes),
            compress,
        }
    }

    fn settings(dir: &Path) -> Settings {
        Settings {
            dir: dir.to_path_buf(),
            name: "dry".into(),
            sequence: 7,
            created: 1_700_000_000,
            expires: None,
            volume_size: MIN_VOLUME,
            chunk_size: MIN_CHUNK,
            discs: None,
            parity: None,
        }
    }

    #[test]
    fn the_dry_layout_takes_the_volumes_the_writer_writes() {
        let dir = tempfile::tempdir().unwrap();
        let noise: Vec<u8> = (0..30_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let items = [
            item("files/json", b"{\"a\":1}".repeat(4000), Compress::IfItPays),
            item("files/noise", noise.clone(), Compress::IfItPays),
            item("files/raw", noise, Compress::Never),
            item("files/empty", Vec::new(), Compress::IfItPays),
            item("files/small", b"x".repeat(700), Compress::IfItPays),
        ];
        let mut dry = DryLayout::new(settings(dir.path()), "0".repeat(32)).unwrap();
        let stored: Vec<u64> = items.iter().map(|i| dry.add(i).unwrap()).collect();
        let dry = dry.finish();
        assert!(!dry.is_empty(), "nothing is left");
        assert!(dry.len() > 2, "several volumes: {dry:?}");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "a dry layout writes nothing");

        let mut writer = BundleWriter::new(settings(dir.path()), "0".repeat(32), &crate::progress::Silent).unwrap();
        items.iter().for_each(|i| writer.add(i).unwrap());
        let (key, _) = SecretKey::generate().unwrap();
        let manifest = writer.finish(Contents::default(), &key).unwrap();
        assert_eq!(manifest.volumes.iter().map(|v| v.size).collect::<Vec<_>>(), dry);
        let written: Vec<u64> =
            items.iter().map(|i| manifest.entries.iter().find(|e| e.path == i.path).unwrap().stored_size).collect();
        assert_eq!(written, stored);
    }
}
