//! Parity: Reed–Solomon recovery volumes over a bundle's data volumes, laid out in stripes
//! as drawn on [`Parity`](crate::bundle::manifest::Parity): stripe `j` is bytes
//! `[j * S, (j + 1) * S)` of every volume, data volumes reading as zeros past their end,
//! and recovery volume `p` holds recovery shard `p` of every stripe at the stripe's offset.
//! One codec ([`run`]) both writes the recovery volumes (pack) and rebuilds lost volumes,
//! data or recovery (repair, unpack), from any `K` intact ones of the `K + N`.
//!
//! It streams ([`stream`]): one piece of every input at a time, read, coded on one thread
//! per core and written in order, through a few buffer sets of `(K + N)` pieces of at most
//! 128 KiB that go round, so memory is bounded whatever the bundle and whatever its
//! manifest's shard size. Outputs are temp files beside their destination, hashed while
//! written, committed (fsync, rename) only when the whole run succeeded and, when
//! rebuilding, each matches its signed sha256 and size. What is intact is decided by the
//! callers ([`census`]); what the codec reads is not trusted: anything wrong in it makes a
//! rebuilt volume's hash differ, and nothing is committed.

use std::path::{Path, PathBuf};

use reed_solomon_simd::ReedSolomonEncoder;

use crate::bundle::manifest::{Parity, Volume, PARITY_CODE};
use crate::bundle::names;
use crate::bundle::reader::Bundle;
use crate::digest::Digest;
use crate::error::{integrity, usage, Result};
use crate::progress::Progress;
use crate::store::{commit_file, Commit};

mod census;
mod stream;

use stream::{piece_size, Coder, Geometry, Output, Written};

pub use census::{census, check_volumes, intact, volume_at, Census};

/// Bytes one buffer set (a piece of every volume) may take; pack's shard size keeps a
/// shard of every volume within it too while it can shrink.
pub const SET_BUDGET: u64 = 16 << 20;
/// Threads coding at once, at most (one per core).
const MAX_CODERS: usize = 8;

/// The shard sizes [`shard_size`] chooses from: multiples of 64 (the code's native block)
/// from 64 KiB (reads stay large) to 1 MiB.
pub const MIN_CHOSEN_SHARD: u64 = 64 << 10;
pub const MAX_CHOSEN_SHARD: u64 = 1 << 20;

/// The shard size for `data` data volumes and `recovery` recovery volumes: a multiple of
/// 64 (so the codec may code in pieces of its choosing across stripes), a shard of every
/// volume within [`SET_BUDGET`] while it can.
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
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, MAX_CODERS);
    let coders = (0..threads).map(|_| Coder::new(geometry, &inputs, &targets, slots)).collect::<Result<_>>()?;
    progress.start("parity", geometry.length * inputs.len() as u64);
    let written = stream::pipeline(geometry, &files, coders, outputs, progress);
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

#[cfg(test)]
mod tests;
