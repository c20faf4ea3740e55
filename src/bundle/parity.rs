//! Parity: Reed–Solomon recovery volumes over a bundle's data volumes, laid out in stripes
//! as drawn on [`Parity`](crate::bundle::manifest::Parity): stripe `j` is bytes
//! `[j * S, (j + 1) * S)` of every volume, data volumes reading as zeros past their end,
//! and recovery volume `p` holds recovery shard `p` of every stripe at the stripe's offset.
//! One codec ([`run`]) both writes the recovery volumes (pack) and rebuilds lost volumes,
//! data or recovery (repair, unpack), from any `K` intact ones of the `K + N`.
//!
//! It streams: a thread reads the inputs' bytes of one piece of a stripe, the caller's thread
//! codes it, a thread hashes and writes the outputs, over a few buffer sets that go round.
//! The code works on each 64-byte block of a stripe independently (every 32 symbols of
//! GF(2^16) are one codeword position), so a stripe is coded in pieces of a multiple of 64
//! bytes that keep a set of `(K + N)` pieces within [`SET_BUDGET`]: memory is about a few
//! sets plus the code's own work space, whatever the bundle and whatever its manifest's
//! shard size ([`shard_size`] chooses pack's so that, up to 256 volumes, a piece is a whole
//! stripe). Outputs are temp files beside their destination, hashed while written,
//! committed (fsync, rename) only when the whole run succeeded and, when rebuilding, each
//! matches its signed sha256 and size.
//! What is intact is decided by the callers ([`census`]); what the codec reads is not
//! trusted: anything wrong in it makes the rebuilt volume's hash differ, and nothing is
//! committed.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};
use tempfile::NamedTempFile;

use crate::bundle::manifest::{Parity, Volume, PARITY_CODE};
use crate::bundle::names;
use crate::bundle::reader::Bundle;
use crate::digest::{Digest, Hasher};
use crate::error::{integrity, usage, Error, IoContext, Result};
use crate::progress::Progress;
use crate::store::{commit_file, temp_in, Commit, Writeback};

mod census;

pub use census::{census, check_volumes, intact, volume_at, Census};

/// Bytes one buffer set (a shard of every volume) may take: `(K + N) x S` stays within it
/// while `S` can shrink.
pub const SET_BUDGET: u64 = 16 << 20;
/// The shard sizes [`shard_size`] chooses from: multiples of 64 (the code's native block)
/// from 64 KiB (reads stay large) to 1 MiB.
pub const MIN_CHOSEN_SHARD: u64 = 64 << 10;
pub const MAX_CHOSEN_SHARD: u64 = 1 << 20;

/// The shard size for `data` data volumes and `recovery` recovery volumes.
pub fn shard_size(data: usize, recovery: usize) -> u64 {
    let per = SET_BUDGET / (data + recovery).max(1) as u64;
    (per / 64 * 64).clamp(MIN_CHOSEN_SHARD, MAX_CHOSEN_SHARD)
}

/// How many recovery volumes `pack --parity` asks for: a count, or a percentage of the
/// data volumes (rounded up, at least one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Amount {
    Volumes(usize),
    Percent(u32),
}

impl Amount {
    /// Recovery volumes for `data` data volumes, checked against what the code and the
    /// manifest allow.
    pub fn count(self, data: usize) -> Result<usize> {
        let n = match self {
            Amount::Volumes(n) => n,
            Amount::Percent(p) => (data * p as usize).div_ceil(100).max(1),
        };
        let most = crate::bundle::manifest::MAX_PARITY_VOLUMES;
        if n > most || !ReedSolomonEncoder::supports(data.max(1), n) {
            return Err(usage(format!("{n} recovery volumes for {data} data volumes: at most {most} are supported")));
        }
        Ok(n)
    }
}

impl std::str::FromStr for Amount {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Amount, String> {
        let bad = || format!("'{s}': expected a number of recovery volumes (e.g. 2) or a percentage (e.g. 10%)");
        match s.strip_suffix('%') {
            Some(p) => match p.parse::<u32>() {
                Ok(p) if (1..=1000).contains(&p) => Ok(Amount::Percent(p)),
                _ => Err(bad()),
            },
            None => match s.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Amount::Volumes(n)),
                _ => Err(bad()),
            },
        }
    }
}

/// Compute `amount` recovery volumes over the data `volumes` of bundle `name` in `dir`
/// (pack, after the last data volume): the manifest's parity section.
pub fn encode(dir: &Path, name: &str, volumes: &[Volume], amount: Amount, progress: &dyn Progress) -> Result<Parity> {
    let count = amount.count(volumes.len())?;
    let shard = shard_size(volumes.len(), count);
    let length = volumes.iter().map(|v| v.size).max().unwrap_or(0);
    let data = volumes.iter().map(|v| Slot { source: Some(dir.join(&v.file)), size: v.size, target: None });
    let files: Vec<String> = (1..=count).map(|n| names::parity_file(name, n)).collect();
    let recovery = files.iter().map(|f| Slot {
        source: None,
        size: length,
        target: Some(Target { dest: dir.join(f), sha256: None }),
    });
    let slots: Vec<Slot> = data.chain(recovery).collect();
    let digests = run(volumes.len(), shard, &slots, progress)?;
    Ok(Parity {
        code: PARITY_CODE.to_string(),
        shard_size: shard,
        volumes: files.into_iter().zip(digests).map(|(file, sha256)| Volume { file, size: length, sha256 }).collect(),
    })
}

/// Rebuild the volumes `lost` (indexes among every volume, data then recovery) of `bundle`
/// into `into`, from the volumes `intact` (same indexes) says are whole, once `into`'s
/// filesystem is known to have room; the rebuilt files' paths. Each is committed only
/// when it matches its signed sha256 and size.
pub fn rebuild(
    bundle: &Bundle,
    intact: &[bool],
    lost: &[usize],
    into: &Path,
    progress: &dyn Progress,
) -> Result<Vec<PathBuf>> {
    let m = &bundle.manifest;
    let parity = m.parity.as_ref().ok_or_else(|| usage(format!("bundle '{}' has no recovery volumes", m.name)))?;
    let volumes: Vec<_> = (0..intact.len()).filter_map(|i| census::volume_at(m, i)).collect();
    let mut needs = crate::space::Needs::new();
    let bytes = lost.iter().filter_map(|&i| volumes.get(i)).map(|(v, _, _)| v.size).sum();
    needs.add(into, "volumes rebuilt from parity", bytes, lost.len() as u64)?;
    needs.check()?;
    let slots: Vec<Slot> = volumes
        .iter()
        .enumerate()
        .map(|(i, (v, _, _))| Slot {
            source: intact[i].then(|| bundle.locate(&v.file)),
            size: v.size,
            target: lost.contains(&i).then(|| Target { dest: into.join(&v.file), sha256: Some(v.sha256.clone()) }),
        })
        .collect();
    run(m.volumes.len(), parity.shard_size, &slots, progress)?;
    Ok(lost.iter().filter_map(|&i| volumes.get(i)).map(|(v, _, _)| into.join(&v.file)).collect())
}

/// One volume of a parity computation. Slots are in manifest order: the `K` data volumes,
/// then the `N` recovery volumes.
#[derive(Debug, Clone)]
pub struct Slot {
    /// Where an intact copy is read from; `None` when it is lost (or not there yet).
    pub source: Option<PathBuf>,
    /// Its length (a recovery volume is as long as the longest data volume).
    pub size: u64,
    /// Write this volume.
    pub target: Option<Target>,
}

/// Where a volume the codec writes goes, and the sha256 it must have (`None` when the
/// codec computes it: pack's recovery volumes).
#[derive(Debug, Clone)]
pub struct Target {
    pub dest: PathBuf,
    pub sha256: Option<Digest>,
}

/// The shape of a computation: `data` + `recovery` volumes, shards of `shard` bytes over
/// volumes of at most `length` bytes, coded in pieces of at most `piece` bytes.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    data: usize,
    recovery: usize,
    shard: u64,
    piece: u64,
    length: u64,
}

impl Geometry {
    /// (offset, length) of every piece in order: each stripe (the last shorter) cut into
    /// pieces of `piece` bytes from its start (its last piece shorter). Every length is
    /// even, as `length` and `shard` are, and `piece` is a multiple of 64 or the shard.
    fn pieces(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        (0..self.length.div_ceil(self.shard)).flat_map(move |j| {
            let start = j * self.shard;
            let stripe = (self.length - start).min(self.shard);
            (0..stripe.div_ceil(self.piece)).map(move |q| {
                let at = q * self.piece;
                (start + at, (stripe - at).min(self.piece) as usize)
            })
        })
    }
}

/// The bytes of one piece: a whole shard when `volumes` of them fit in [`SET_BUDGET`],
/// else the largest multiple of 64 that does.
fn piece_size(shard: u64, volumes: usize) -> u64 {
    let fits = (SET_BUDGET / volumes.max(1) as u64) / 64 * 64;
    shard.min(fits.max(64))
}

/// Read the intact slots' shards, stripe by stripe, and write every target slot; the
/// sha256 of each target, in slot order. `data` of the slots are data volumes; shards are
/// `shard` bytes. Fails before writing anything when fewer than `data` slots are intact;
/// commits nothing unless every target is whole (and matches its sha256 when given).
pub fn run(data: usize, shard: u64, slots: &[Slot], progress: &dyn Progress) -> Result<Vec<Digest>> {
    run_in_pieces(data, shard, piece_size(shard, slots.len()), slots, progress)
}

/// [`run`], coding pieces of `piece` bytes (a multiple of 64, or `shard`).
fn run_in_pieces(data: usize, shard: u64, piece: u64, slots: &[Slot], progress: &dyn Progress) -> Result<Vec<Digest>> {
    let geometry = geometry(data, shard, piece, slots)?;
    let inputs: Vec<usize> = (0..slots.len()).filter(|&i| slots[i].source.is_some()).take(data).collect();
    let targets: Vec<usize> = (0..slots.len()).filter(|&i| slots[i].target.is_some()).collect();
    let mut files = Vec::new();
    for &i in &inputs {
        let path = slots[i].source.as_deref().unwrap_or(Path::new(""));
        let file = crate::media::open_regular(path, "a volume")?
            .ok_or_else(|| integrity(format!("{}: the volume went away while it was being read", path.display())))?;
        files.push((file, path.to_path_buf(), slots[i].size));
    }
    let mut outputs = Vec::new();
    for &t in &targets {
        let dest = slots[t].target.as_ref().map(|t| t.dest.as_path()).unwrap_or(Path::new(""));
        outputs.push(Output::create(dest)?);
    }
    let coder = Coder::new(geometry, &inputs, &targets, slots)?;
    progress.start("parity", geometry.length * inputs.len() as u64);
    let written = pipeline(geometry, &files, coder, outputs, progress);
    progress.finish();
    commit(written?, &targets, slots)
}

/// Check the slots make a computation the code can do.
fn geometry(data: usize, shard: u64, piece: u64, slots: &[Slot]) -> Result<Geometry> {
    let recovery = slots.len().saturating_sub(data);
    if data == 0 || recovery == 0 || !ReedSolomonEncoder::supports(data, recovery) {
        return Err(usage(format!("parity over {data} data and {recovery} recovery volumes is not supported")));
    }
    if shard == 0 || shard % 2 != 0 {
        return Err(usage(format!("parity shard size {shard} is not even")));
    }
    let length = slots[..data].iter().map(|s| s.size).max().unwrap_or(0);
    if length % 2 != 0 || slots[data..].iter().any(|s| s.size != length) {
        return Err(usage(format!(
            "recovery volumes must be as long as the longest data volume ({length} bytes), an even length"
        )));
    }
    let intact = slots.iter().filter(|s| s.source.is_some()).count();
    if intact < data {
        return Err(integrity(format!(
            "{} of {} volumes are lost: with {recovery} recovery volumes at most {recovery} can be rebuilt",
            slots.len() - intact,
            slots.len()
        )));
    }
    if piece == 0 || (piece != shard && piece % 64 != 0) {
        return Err(usage(format!("internal: pieces of {piece} bytes over shards of {shard}")));
    }
    Ok(Geometry { data, recovery, shard, piece, length })
}

/// A volume being written: a temp file beside its destination, hashed as it grows.
struct Output {
    temp: NamedTempFile,
    hasher: Hasher,
    written: u64,
    writeback: Writeback,
}

impl Output {
    fn create(dest: &Path) -> Result<Output> {
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let temp = temp_in(dir)?;
        Ok(Output { temp, hasher: Hasher::new(), written: 0, writeback: Writeback::default() })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.hasher.update(bytes);
        let path = self.temp.path().to_path_buf();
        self.temp.as_file_mut().write_all(bytes).at(&path)?;
        self.written += bytes.len() as u64;
        self.writeback.wrote(self.temp.as_file(), self.written);
        Ok(())
    }
}

/// A written target: its temp file, sha256 and length.
type Written = (NamedTempFile, Digest, u64);

/// Commit every target that is whole; an integrity error naming those that are not (and
/// then nothing is committed).
fn commit(written: Vec<Written>, targets: &[usize], slots: &[Slot]) -> Result<Vec<Digest>> {
    let mut wrong = Vec::new();
    for ((_, digest, len), &t) in written.iter().zip(targets) {
        let slot = &slots[t];
        let dest = slot.target.as_ref().map(|t| &t.dest);
        let expected = slot.target.as_ref().and_then(|t| t.sha256.as_ref());
        if *len != slot.size || expected.is_some_and(|e| e != digest) {
            let name = dest.map(|d| d.display().to_string()).unwrap_or_default();
            wrong.push(format!("{name} ({len} bytes, sha256 {digest})"));
        }
    }
    if !wrong.is_empty() {
        return Err(integrity(format!(
            "rebuilt volumes do not match the signed manifest: {}; a volume read as intact changed while it \
             was read, or the bundle's recovery volumes were not made from these data volumes; nothing was written",
            wrong.join(", ")
        )));
    }
    let mut digests = Vec::new();
    for ((temp, digest, _), &t) in written.into_iter().zip(targets) {
        if let Some(target) = &slots[t].target {
            commit_file(temp, &target.dest, Commit::PUBLIC)?;
        }
        digests.push(digest);
    }
    Ok(digests)
}

/// Buffer sets going round between the threads.
const SETS: usize = 2;

/// Read, code and write every piece on three threads; the outputs once all went well.
fn pipeline(
    g: Geometry,
    files: &[(File, PathBuf, u64)],
    mut coder: Coder,
    outputs: Vec<Output>,
    progress: &dyn Progress,
) -> Result<Vec<Written>> {
    let (full_tx, full_rx) = sync_channel::<(u64, Vec<Vec<u8>>)>(SETS);
    let (empty_tx, empty_rx) = sync_channel::<Vec<Vec<u8>>>(SETS);
    let (coded_tx, coded_rx) = sync_channel::<Vec<Vec<u8>>>(SETS);
    let (spent_tx, spent_rx) = sync_channel::<Vec<Vec<u8>>>(SETS);
    for _ in 0..SETS {
        let piece = vec![0u8; g.piece as usize];
        let _ = empty_tx.send(vec![piece.clone(); files.len()]);
        let _ = spent_tx.send(vec![Vec::with_capacity(g.piece as usize); outputs.len()]);
    }
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_stripes(g, files, empty_rx, full_tx));
        let writer = scope.spawn(move || write_stripes(outputs, coded_rx, spent_tx));
        let coded = code_stripes(&mut coder, full_rx, empty_tx, spent_rx, coded_tx, progress);
        let read = reader.join().unwrap_or_else(|_| Err(usage("internal: the parity reader panicked")));
        let written = writer.join().unwrap_or_else(|_| Err(usage("internal: the parity writer panicked")));
        // A failure stops the others (their channel closes): its error is the one to tell.
        read?;
        coded?;
        written
    })
}

/// Pieces of each input asked for ahead of the one read.
const READ_AHEAD: u64 = 4;

/// The reader thread: each piece of every input, zeros past a volume's end.
fn read_stripes(
    g: Geometry,
    files: &[(File, PathBuf, u64)],
    empty: Receiver<Vec<Vec<u8>>>,
    full: SyncSender<(u64, Vec<Vec<u8>>)>,
) -> Result<()> {
    for (start, len) in g.pieces() {
        let Ok(mut set) = empty.recv() else { return Ok(()) };
        for ((file, path, size), buf) in files.iter().zip(set.iter_mut()) {
            buf.resize(len, 0);
            let have = size.saturating_sub(start).min(len as u64) as usize;
            file.read_exact_at(&mut buf[..have], start).map_err(|e| read_error(path, start, have, e))?;
            buf[have..].fill(0);
            // The inputs are read a piece of each in turn: ask for the next pieces of this one
            // now, so the disk works on every input at once (a hint: its result does not matter).
            let next = start + len as u64;
            let ahead = (READ_AHEAD * g.piece).min(size.saturating_sub(next));
            if let Some(ahead) = std::num::NonZeroU64::new(ahead) {
                let _ = rustix::fs::fadvise(file, next, Some(ahead), rustix::fs::Advice::WillNeed);
            }
        }
        if full.send((start, set)).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

fn read_error(path: &Path, start: u64, len: usize, e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        return integrity(format!("{}: the volume ended before byte {}", path.display(), start + len as u64));
    }
    Error::io(path, e)
}

/// The writer thread: each output's bytes of every piece, in order.
fn write_stripes(
    mut outputs: Vec<Output>,
    coded: Receiver<Vec<Vec<u8>>>,
    spent: SyncSender<Vec<Vec<u8>>>,
) -> Result<Vec<Written>> {
    for set in coded {
        for (out, bytes) in outputs.iter_mut().zip(&set) {
            out.write(bytes)?;
        }
        // The coder may have stopped: then the set is not needed any more.
        let _ = spent.send(set);
    }
    Ok(outputs.into_iter().map(|o| (o.temp, o.hasher.finish(), o.written)).collect())
}

/// The caller's thread: code each piece read, hand the outputs to the writer.
fn code_stripes(
    coder: &mut Coder,
    full: Receiver<(u64, Vec<Vec<u8>>)>,
    empty: SyncSender<Vec<Vec<u8>>>,
    spent: Receiver<Vec<Vec<u8>>>,
    coded: SyncSender<Vec<Vec<u8>>>,
    progress: &dyn Progress,
) -> Result<()> {
    for (start, set) in full {
        let Ok(mut out) = spent.recv() else { break };
        let len = set.first().map_or(0, Vec::len);
        coder.piece(start, len, &set, &mut out)?;
        progress.advance((len * set.len()) as u64);
        let _ = empty.send(set);
        if coded.send(out).is_err() {
            break;
        }
    }
    Ok(())
}

/// The code over one piece: restore lost data shards from any `K` intact shards, encode
/// the recovery shards when some are written, copy out each target's bytes.
struct Coder {
    geometry: Geometry,
    /// For each data volume, its position among the inputs (`None`: lost).
    data_input: Vec<Option<usize>>,
    /// Slot index of each input, in input order.
    inputs: Vec<usize>,
    /// (slot index, size) of each target, in slot order.
    targets: Vec<(usize, u64)>,
    encoder: Option<ReedSolomonEncoder>,
    decoder: Option<ReedSolomonDecoder>,
    /// The shard length the encoder and decoder are set up for.
    ready_for: usize,
}

impl Coder {
    fn new(g: Geometry, inputs: &[usize], targets: &[usize], slots: &[Slot]) -> Result<Coder> {
        let data_input: Vec<Option<usize>> = (0..g.data).map(|i| inputs.iter().position(|&k| k == i)).collect();
        let piece = g.piece as usize;
        let code_error = |e: reed_solomon_simd::Error| usage(format!("parity code: {e}"));
        let encode = targets.iter().any(|&t| t >= g.data);
        let decode = data_input.iter().any(|p| p.is_none());
        Ok(Coder {
            geometry: g,
            data_input,
            inputs: inputs.to_vec(),
            targets: targets.iter().map(|&t| (t, slots[t].size)).collect(),
            encoder: encode
                .then(|| ReedSolomonEncoder::new(g.data, g.recovery, piece))
                .transpose()
                .map_err(code_error)?,
            decoder: decode
                .then(|| ReedSolomonDecoder::new(g.data, g.recovery, piece))
                .transpose()
                .map_err(code_error)?,
            ready_for: piece,
        })
    }

    /// The piece of `len` bytes at `start`: the inputs' bytes in `set`, each target's
    /// bytes into `out`.
    fn piece(&mut self, start: u64, len: usize, set: &[Vec<u8>], out: &mut [Vec<u8>]) -> Result<()> {
        let g = self.geometry;
        let code_error = |e: reed_solomon_simd::Error| usage(format!("parity code at byte {start}: {e}"));
        if len != self.ready_for {
            if let Some(d) = self.decoder.as_mut() {
                d.reset(g.data, g.recovery, len).map_err(code_error)?;
            }
            if let Some(e) = self.encoder.as_mut() {
                e.reset(g.data, g.recovery, len).map_err(code_error)?;
            }
            self.ready_for = len;
        }
        let restored = match self.decoder.as_mut() {
            Some(decoder) => {
                for (k, &slot) in self.inputs.iter().enumerate() {
                    let added = if slot < g.data {
                        decoder.add_original_shard(slot, &set[k])
                    } else {
                        decoder.add_recovery_shard(slot - g.data, &set[k])
                    };
                    added.map_err(code_error)?;
                }
                Some(decoder.decode().map_err(code_error)?)
            }
            None => None,
        };
        let data_shard = |i: usize| -> Result<&[u8]> {
            match self.data_input[i] {
                Some(k) => Ok(&set[k][..]),
                None => restored
                    .as_ref()
                    .and_then(|r| r.restored_original(i))
                    .ok_or_else(|| usage(format!("internal: data shard {i} at byte {start} was not restored"))),
            }
        };
        for (&(slot, size), buf) in self.targets.iter().zip(out.iter_mut()).filter(|((s, _), _)| *s < g.data) {
            let have = size.saturating_sub(start).min(len as u64) as usize;
            buf.clear();
            buf.extend_from_slice(&data_shard(slot)?[..have]);
        }
        let Some(encoder) = self.encoder.as_mut() else { return Ok(()) };
        for i in 0..g.data {
            encoder.add_original_shard(data_shard(i)?).map_err(code_error)?;
        }
        let recovery = encoder.encode().map_err(code_error)?;
        for (&(slot, _), buf) in self.targets.iter().zip(out.iter_mut()).filter(|((s, _), _)| *s >= g.data) {
            let shard = recovery
                .recovery(slot - g.data)
                .ok_or_else(|| usage(format!("internal: recovery shard {} at byte {start} missing", slot - g.data)))?;
            buf.clear();
            buf.extend_from_slice(shard);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
