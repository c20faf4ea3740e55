//! The codec's streaming: a thread reads one piece of every input (a contiguous range of
//! bytes at the same offset in each), coder threads code pieces as they come, a thread
//! hashes and writes each output's bytes in order. Buffer sets go round between them, so
//! memory is a few sets of `(K + N)` pieces plus each coder's work space.
//!
//! The code works on each 64-byte block (32 symbols of GF(2^16)) of a stripe on its own: a
//! block at the same offset in every volume is one set of codewords. So a stripe can be
//! coded in pieces of any multiple of 64 bytes from its start, and when the shard size is
//! itself a multiple of 64 (as pack chooses it), stripes are whole blocks and pieces may
//! run across them: every grid of whole blocks codes the same bytes (tested).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Mutex;

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};
use tempfile::NamedTempFile;

use super::{Slot, SET_BUDGET};
use crate::digest::{Digest, Hasher};
use crate::error::{integrity, usage, Error, IoContext, Result};
use crate::progress::Progress;
use crate::store::{temp_in, Writeback};
use crate::workers::lock;

/// The largest piece: the pieces of a set stay in the processor's caches. Measured here
/// for 11 + 2 volumes, Leopard encodes at 8.9 GB/s in 64 KiB shards, 7.0 at 128 KiB, 5.3
/// at 256 KiB and 2.5 at 1 MiB, and decodes at 1.15, 1.31, 1.33 and 0.87 GB/s.
const MAX_PIECE: u64 = 128 << 10;

/// The shape of a computation: `data` + `recovery` volumes, shards of `shard` bytes over
/// volumes of at most `length` bytes, coded in pieces of at most `piece` bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geometry {
    pub(super) data: usize,
    pub(super) recovery: usize,
    pub(super) shard: u64,
    pub(super) piece: u64,
    pub(super) length: u64,
}

impl Geometry {
    /// (offset, length) of every piece in order. A piece stays within a stripe unless the
    /// shard is a multiple of 64 (then the volumes are one run of whole blocks); the last
    /// piece of a run is shorter. Every length is even, as `length` and `shard` are.
    fn pieces(&self) -> impl Iterator<Item = (u64, usize)> + '_ {
        let run = if self.shard % 64 == 0 { self.length.max(1) } else { self.shard };
        (0..self.length.div_ceil(run)).flat_map(move |j| {
            let start = j * run;
            let stripe = (self.length - start).min(run);
            (0..stripe.div_ceil(self.piece)).map(move |q| {
                let at = q * self.piece;
                (start + at, (stripe - at).min(self.piece) as usize)
            })
        })
    }
}

/// The bytes of one piece: a multiple of 64 up to [`MAX_PIECE`] such that `volumes` of
/// them fit in [`SET_BUDGET`]; within a shard that is not a multiple of 64, at most it.
pub(super) fn piece_size(shard: u64, volumes: usize) -> u64 {
    let fits = (SET_BUDGET / volumes.max(1) as u64) / 64 * 64;
    let piece = fits.clamp(64, MAX_PIECE);
    if shard % 64 == 0 {
        piece
    } else {
        piece.min(shard)
    }
}

/// A volume being written: a temp file beside its destination, hashed as it grows.
pub(super) struct Output {
    temp: NamedTempFile,
    hasher: Hasher,
    written: u64,
    writeback: Writeback,
}

impl Output {
    pub(super) fn create(dest: &Path) -> Result<Output> {
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
pub(super) type Written = (NamedTempFile, Digest, u64);

/// An input: the open file, its path and its length.
pub(super) type Input = (File, PathBuf, u64);

/// A piece read: its number, its offset and every input's bytes.
type Piece = (usize, u64, Vec<Vec<u8>>);

/// Read, code (on as many threads as `coders`) and write every piece; the outputs once all
/// went well.
pub(super) fn pipeline(
    g: Geometry,
    files: &[Input],
    coders: Vec<Coder>,
    outputs: Vec<Output>,
    progress: &dyn Progress,
) -> Result<Vec<Written>> {
    let sets = coders.len() + 1;
    let (full_tx, full_rx) = sync_channel::<Piece>(sets);
    let (empty_tx, empty_rx) = sync_channel::<Vec<Vec<u8>>>(sets);
    let (coded_tx, coded_rx) = sync_channel::<(usize, Vec<Vec<u8>>)>(sets);
    let (spent_tx, spent_rx) = sync_channel::<Vec<Vec<u8>>>(sets);
    for _ in 0..sets {
        let _ = empty_tx.send(vec![vec![0u8; g.piece as usize]; files.len()]);
        let _ = spent_tx.send(vec![Vec::with_capacity(g.piece as usize); outputs.len()]);
    }
    let (full_rx, spent_rx) = (Mutex::new(full_rx), Mutex::new(spent_rx));
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_pieces(g, files, empty_rx, full_tx));
        let writer = scope.spawn(move || write_pieces(outputs, coded_rx, spent_tx));
        let coding: Vec<_> = coders
            .into_iter()
            .map(|mut coder| {
                let (empty, coded, full, spent) = (empty_tx.clone(), coded_tx.clone(), &full_rx, &spent_rx);
                scope.spawn(move || code_pieces(&mut coder, full, empty, spent, coded, progress))
            })
            .collect();
        // The coders hold the only senders left: the channels close when they are done.
        drop((empty_tx, coded_tx));
        let coded: Vec<Result<()>> =
            coding.into_iter().map(|c| c.join().unwrap_or_else(|_| Err(panicked("coder")))).collect();
        let read = reader.join().unwrap_or_else(|_| Err(panicked("reader")));
        let written = writer.join().unwrap_or_else(|_| Err(panicked("writer")));
        // A failure stops the others (their channels close): its error is the one to tell.
        read?;
        coded.into_iter().collect::<Result<Vec<()>>>()?;
        written
    })
}

fn panicked(what: &str) -> Error {
    usage(format!("internal: the parity {what} panicked"))
}

/// Pieces of each input asked for ahead of the one read.
const READ_AHEAD: u64 = 8;

/// The reader thread: each piece of every input, zeros past a volume's end.
fn read_pieces(g: Geometry, files: &[Input], empty: Receiver<Vec<Vec<u8>>>, full: SyncSender<Piece>) -> Result<()> {
    for (n, (start, len)) in g.pieces().enumerate() {
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
        if full.send((n, start, set)).is_err() {
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

/// The writer thread: each output's bytes of every piece, in the pieces' order (coders
/// may finish them out of it).
fn write_pieces(
    mut outputs: Vec<Output>,
    coded: Receiver<(usize, Vec<Vec<u8>>)>,
    spent: SyncSender<Vec<Vec<u8>>>,
) -> Result<Vec<Written>> {
    let mut waiting = BTreeMap::new();
    let mut next = 0;
    for (n, set) in coded {
        waiting.insert(n, set);
        while let Some(set) = waiting.remove(&next) {
            for (out, bytes) in outputs.iter_mut().zip(&set) {
                out.write(bytes)?;
            }
            next += 1;
            // The coders may have stopped: then the set is not needed any more.
            let _ = spent.send(set);
        }
    }
    if !waiting.is_empty() {
        return Err(usage("internal: the parity coders stopped with pieces missing"));
    }
    Ok(outputs.into_iter().map(|o| (o.temp, o.hasher.finish(), o.written)).collect())
}

/// A coder thread: take an output set, then the next piece (in that order, so the coder of
/// the piece the writer waits for always has somewhere to put it), code it, pass it on.
fn code_pieces(
    coder: &mut Coder,
    full: &Mutex<Receiver<Piece>>,
    empty: SyncSender<Vec<Vec<u8>>>,
    spent: &Mutex<Receiver<Vec<Vec<u8>>>>,
    coded: SyncSender<(usize, Vec<Vec<u8>>)>,
    progress: &dyn Progress,
) -> Result<()> {
    loop {
        let Ok(mut out) = lock(spent).recv() else { return Ok(()) };
        let Ok((n, start, set)) = lock(full).recv() else { return Ok(()) };
        let len = set.first().map_or(0, Vec::len);
        coder.piece(start, len, &set, &mut out)?;
        progress.advance((len * set.len()) as u64);
        let _ = empty.send(set);
        if coded.send((n, out)).is_err() {
            return Ok(());
        }
    }
}

/// The code over one piece: restore lost data shards from any `K` intact shards, encode
/// the recovery shards when some are written, copy out each target's bytes.
pub(super) struct Coder {
    geometry: Geometry,
    /// For each data volume, its position among the inputs (`None`: lost).
    data_input: Vec<Option<usize>>,
    /// Slot index of each input, in input order.
    inputs: Vec<usize>,
    /// (slot index, size) of each target, in slot order.
    targets: Vec<(usize, u64)>,
    encoder: Option<ReedSolomonEncoder>,
    decoder: Option<ReedSolomonDecoder>,
    /// The piece length the encoder and decoder are set up for.
    ready_for: usize,
}

impl Coder {
    pub(super) fn new(g: Geometry, inputs: &[usize], targets: &[usize], slots: &[Slot]) -> Result<Coder> {
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
