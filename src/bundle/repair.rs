//! `airlift repair`: rebuild a bundle's lost or damaged volumes, data or recovery, from
//! its recovery volumes, byte-identical (each checked against its signed sha256 before it
//! is committed). Every volume is checked whole first; when what is intact is not enough,
//! nothing is written. The rebuilt volumes go into the bundle's directory, or into another
//! (`--out`), which then also receives the small signed files, so that it and the intact
//! volumes make the bundle; the source is then only read.
//!
//! The directory written is locked (`flock` on the directory itself, so no lock file is
//! left in a bundle) while a repair runs: a second repair into it waits, then finds the
//! volumes whole. A repair killed midway leaves only temp files, removed by the next.

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::bundle::names;
use crate::bundle::parity::{self, Census};
use crate::bundle::reader::{self, Bundle, SumsState, VolumeReport};
use crate::bundle::sign;
use crate::error::{integrity, usage, Error, IoContext, Result};
use crate::progress::Progress;
use crate::store::{lock_exclusive, purge_temps_in, temp_in, write_atomic};

/// What a repair found and did.
pub struct Repaired {
    /// Every volume checked whole, data then recovery.
    pub reports: Vec<VolumeReport>,
    /// What was intact and lost; when not recoverable, nothing was written.
    pub census: Census,
    /// The volume files rebuilt, in `into`.
    pub rebuilt: Vec<PathBuf>,
    /// The signed files copied into `into` (with `--out`).
    pub copied: Vec<String>,
    /// Where the rebuilt volumes went.
    pub into: PathBuf,
}

/// Repair `bundle` into `out` (else its own directory), checking volumes `jobs` at a time;
/// `waiting` is told when another repair holds the directory.
pub fn repair(
    bundle: &Bundle,
    out: Option<&Path>,
    jobs: usize,
    progress: &dyn Progress,
    waiting: &dyn Fn(),
) -> Result<Repaired> {
    let m = &bundle.manifest;
    if m.parity.is_none() {
        return Err(usage(format!(
            "bundle '{}' has no recovery volumes (it was packed without --parity): nothing can be rebuilt; \
             run `airlift verify` to name the damaged volumes and copy them again from the original media",
            m.name
        )));
    }
    let into = out.unwrap_or(&bundle.dir).to_path_buf();
    let elsewhere = out.is_some_and(|o| !same_dir(o, &bundle.dir));
    let _lock = lock_dir(&into, out.is_some(), waiting)?;
    let all: Vec<usize> = (0..m.all_volumes().count()).collect();
    let reports = parity::check_volumes(bundle, &all, jobs, progress);
    let census = parity::census(m, &reports).ok_or_else(|| usage("internal: no recovery volume was checked"))?;
    let mut done = Repaired { reports, census, rebuilt: vec![], copied: vec![], into };
    if done.census.lost.is_empty() || !done.census.recoverable {
        return Ok(done);
    }
    let intact = parity::intact(m, &done.reports);
    let lost: Vec<usize> = (0..intact.len()).filter(|&i| !intact[i]).collect();
    done.rebuilt = parity::rebuild(bundle, &intact, &lost, &done.into, progress)?;
    if elsewhere {
        done.copied = copy_signed_files(bundle, &done.into)?;
    }
    Ok(done)
}

/// Whether `a` and `b` are one directory.
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Make sure `dir` can be written (creating it for `--out`), lock it against other
/// repairs (waiting for them), and remove the temp files a killed repair left there.
fn lock_dir(dir: &Path, is_out: bool, waiting: &dyn Fn()) -> Result<File> {
    if is_out {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    if let Err(e) = temp_in(dir) {
        return Err(match e {
            Error::Io { source, .. } if is_read_only(&source) && !is_out => usage(format!(
                "{}: cannot write the rebuilt volumes there ({source}): give --out DIR2 to write them (and a \
                 copy of the signed files) elsewhere; the bundle directory is then only read",
                dir.display()
            )),
            other => other,
        });
    }
    let handle = File::open(dir).at(dir)?;
    if !lock_exclusive(&handle, dir, false)? {
        waiting();
        lock_exclusive(&handle, dir, true)?;
    }
    purge_temps_in(dir)?;
    Ok(handle)
}

/// A read-only mount, or a directory this user may not write to.
fn is_read_only(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(e.kind(), ErrorKind::ReadOnlyFilesystem | ErrorKind::PermissionDenied)
}

/// Copy the manifest, `SHA256SUMS` (when present and good) and their signatures into
/// `into`, each read again bounded and checked to be what was verified; the names copied.
fn copy_signed_files(bundle: &Bundle, into: &Path) -> Result<Vec<String>> {
    let m = &bundle.manifest;
    let manifest = names::manifest_file(&m.name);
    let (path, bytes) = reader::read_manifest_bytes(&bundle.dir, &m.name)?;
    if crate::digest::Digest::of(&bytes) != bundle.manifest_sha256 {
        return Err(integrity(format!("{} changed since its signature was checked", path.display())));
    }
    let mut files = vec![(manifest.clone(), bytes)];
    if bundle.sums == SumsState::Ok {
        let sums = names::sums_file(&m.name);
        files.push((sums, sign::sums_text(m).into_bytes()));
    }
    let mut copied = Vec::new();
    for (file, bytes) in files {
        let signature = names::signature_file(&file);
        let sig_path = bundle.dir.join(&signature);
        let sig = reader::read_signature(&sig_path)?
            .ok_or_else(|| integrity(format!("{} went away since it was checked", sig_path.display())))?;
        write_atomic(&into.join(&file), &bytes)?;
        write_atomic(&into.join(&signature), &sig)?;
        copied.extend([file, signature]);
    }
    Ok(copied)
}
