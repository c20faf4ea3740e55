//! Which of a bundle's volumes, data and recovery, are intact, and whether that is enough
//! to rebuild the others: a volume is checked whole (its size, then its sha256 against the
//! signed manifest), and the census counts what the reports say.

use std::io::Read;
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use crate::bundle::manifest::{Manifest, Volume};
use crate::bundle::reader::{whole, Bundle, VolumeKind, VolumeReport, VolumeStatus};
use crate::error::IoContext;
use crate::progress::Progress;

/// A volume of `m` by its index among every volume (data, then recovery): the volume, its
/// kind and its number among those of its kind.
pub fn volume_at(m: &Manifest, i: usize) -> Option<(&Volume, VolumeKind, u32)> {
    let data = m.volumes.len();
    match m.volumes.get(i) {
        Some(v) => Some((v, VolumeKind::Data, i as u32 + 1)),
        None => {
            let v = m.parity.as_ref()?.volumes.get(i - data)?;
            Some((v, VolumeKind::Recovery, (i - data) as u32 + 1))
        }
    }
}

/// For every volume of `m` (data, then recovery), whether `reports` found it whole.
pub fn intact(m: &Manifest, reports: &[VolumeReport]) -> Vec<bool> {
    m.all_volumes().map(|v| reports.iter().any(|r| r.file == v.file && r.status == VolumeStatus::Ok)).collect()
}

/// Check the volumes `which` (indexes among every volume) whole, `jobs` at a time: one
/// report each, in the order asked.
pub fn check_volumes(bundle: &Bundle, which: &[usize], jobs: usize, progress: &dyn Progress) -> Vec<VolumeReport> {
    let m = &bundle.manifest;
    let total = which.iter().filter_map(|&i| volume_at(m, i)).map(|(v, _, _)| v.size).sum();
    progress.start("volumes", total);
    let found: Mutex<Vec<Option<VolumeReport>>> = Mutex::new(vec![None; which.len()]);
    // A job records its volume's problems in its report: it never fails.
    let _ = crate::workers::run(
        jobs,
        which.len(),
        || Ok(vec![0u8; 1 << 20]),
        |buf, k| {
            if let Some((vol, kind, number)) = volume_at(m, which[k]) {
                let path = bundle.locate(&vol.file);
                let mut report = check_whole(&path, vol, kind, number, buf, progress);
                report.seen = bundle.seen(&path, &vol.file);
                crate::workers::lock(&found)[k] = Some(report);
            }
            Ok(())
        },
    );
    progress.finish();
    found.into_inner().unwrap_or_else(|p| p.into_inner()).into_iter().flatten().collect()
}

/// Check the volume file at `path` against `vol`: missing, or damaged (not a regular file,
/// another length, another sha256, unreadable), or ok.
fn check_whole(
    path: &Path,
    vol: &Volume,
    kind: VolumeKind,
    number: u32,
    buf: &mut [u8],
    progress: &dyn Progress,
) -> VolumeReport {
    let mut report = VolumeReport {
        volume: number,
        kind,
        file: vol.file.clone(),
        status: VolumeStatus::Ok,
        size: vol.size,
        problems: vec![],
        seen: None,
    };
    let what = match kind {
        VolumeKind::Data => format!("volume {number}"),
        VolumeKind::Recovery => format!("recovery volume {number}"),
    };
    let problem = match crate::media::open_regular(path, &what) {
        Ok(None) => {
            report.status = VolumeStatus::Missing;
            progress.advance(vol.size);
            return report;
        }
        Ok(Some(file)) => whole_problem(file, path, vol, buf, progress),
        Err(e) => Some(e.to_string()),
    };
    if let Some(p) = problem {
        report.status = VolumeStatus::Damaged;
        report.problems.push(whole(p));
    }
    report
}

/// What is wrong with the open volume file `file` (at `path`), if anything: read no
/// further than its signed length.
fn whole_problem(
    file: std::fs::File,
    path: &Path,
    vol: &Volume,
    buf: &mut [u8],
    progress: &dyn Progress,
) -> Option<String> {
    let actual = match file.metadata().at(path) {
        Ok(meta) => meta.len(),
        Err(e) => return Some(e.to_string()),
    };
    if actual != vol.size {
        progress.advance(vol.size);
        return Some(if actual < vol.size {
            format!("volume is truncated: {actual} bytes of {}", vol.size)
        } else {
            format!("volume has {} unexpected bytes after its end", actual - vol.size)
        });
    }
    let mut bounded = file.take(vol.size);
    let (digest, len) = match crate::digest::read_digest(&mut bounded, path, buf, &|n| progress.advance(n)) {
        Ok(read) => read,
        Err(e) => return Some(format!("cannot read it: {e}")),
    };
    if len != vol.size {
        return Some(format!("volume is truncated: {len} bytes of {} could be read", vol.size));
    }
    (digest != vol.sha256).then(|| format!("volume is damaged: sha256 {digest}, signed manifest says {}", vol.sha256))
}

/// What the reports say of a bundle with parity: the volumes intact and lost, and whether
/// the intact ones are enough to rebuild every other.
#[derive(Debug, Clone, Serialize)]
pub struct Census {
    pub data_volumes: usize,
    pub recovery_volumes: usize,
    /// Volume files found whole (read, or hashed whole) and matching the signed manifest.
    pub intact: Vec<String>,
    /// Volume files missing, damaged or foreign on the media (rebuilt ones included).
    pub lost: Vec<String>,
    pub missing: usize,
    pub damaged: usize,
    /// Lost volumes this run rebuilt from parity (unpack).
    pub rebuilt: usize,
    /// Recovery volumes among the intact ones.
    pub recovery_intact: usize,
    /// The intact volumes are enough to rebuild every lost one (`airlift repair`).
    pub recoverable: bool,
}

/// The census of `m`'s volumes from `reports`; none for a bundle without parity, or when
/// no recovery volume was checked (nothing was lost: unpack does not look at them).
pub fn census(m: &Manifest, reports: &[VolumeReport]) -> Option<Census> {
    let parity = m.parity.as_ref()?;
    if !reports.iter().any(|r| r.kind == VolumeKind::Recovery) {
        return None;
    }
    let mut c = Census {
        data_volumes: m.volumes.len(),
        recovery_volumes: parity.volumes.len(),
        intact: vec![],
        lost: vec![],
        missing: 0,
        damaged: 0,
        rebuilt: 0,
        recovery_intact: 0,
        recoverable: false,
    };
    for r in reports {
        let count = match r.status {
            VolumeStatus::Ok => {
                c.intact.push(r.file.clone());
                c.recovery_intact += usize::from(r.kind == VolumeKind::Recovery);
                continue;
            }
            VolumeStatus::Skipped => continue,
            VolumeStatus::Missing => &mut c.missing,
            VolumeStatus::Damaged | VolumeStatus::Foreign => &mut c.damaged,
            VolumeStatus::Rebuilt => &mut c.rebuilt,
        };
        *count += 1;
        c.lost.push(r.file.clone());
    }
    c.recoverable = c.intact.len() >= c.data_volumes;
    Some(c)
}

impl Census {
    /// The census in one line, e.g. "parity: 2 of 12 volumes lost (2 damaged), 2 of 2
    /// parity volumes intact: recoverable (airlift repair)".
    pub fn line(&self) -> String {
        let total = self.data_volumes + self.recovery_volumes;
        let parity = format!("{} of {} parity volume(s) intact", self.recovery_intact, self.recovery_volumes);
        if self.lost.is_empty() {
            return format!("parity: all {total} volumes intact, {parity}: nothing to repair");
        }
        let how: Vec<String> =
            [(self.damaged, "damaged"), (self.missing, "missing"), (self.rebuilt, "rebuilt from parity")]
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("{n} {what}"))
                .collect();
        let verdict = if self.recoverable {
            "recoverable (airlift repair)".to_string()
        } else {
            format!("not recoverable ({} intact volume(s), {} needed)", self.intact.len(), self.data_volumes)
        };
        format!("parity: {} of {total} volumes lost ({}), {parity}: {verdict}", self.lost.len(), how.join(", "))
    }
}
