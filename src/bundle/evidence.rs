//! One evidence document from several `verify --json` reports of one bundle, each made
//! alone at the gate for one disc (or directory): for every volume, which reports saw it,
//! when, where and on which disc, and its combined state. A volume is ok when one report
//! found it intact, damaged (or foreign) when it was seen only so, missing when no report
//! saw it.
//!
//! Reports are unsigned input: each is read within [`MAX_REPORT`] bytes, parsed into
//! strict types (the fields used must be there, well formed and consistent), and every
//! report must be of the same bundle (bundle id, name, sequence, creation time, manifest
//! sha256, signing key id and volume list), else the merge is refused naming both. Their
//! strings are escaped wherever they are shown.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bundle::ids::VolumeId;
use crate::bundle::names;
use crate::bundle::reader::{Seen, VolumeStatus};
use crate::digest::Digest;
use crate::error::{integrity, usage, Result, Status};
use crate::media;
use crate::text::untrusted;

/// Largest report read (a report lists every problem found, so a badly damaged bundle's
/// can be large; a sane one is far smaller).
pub const MAX_REPORT: u64 = 64 << 20;

/// What a verify report says (the fields the merge uses; the rest is not read).
#[derive(Deserialize)]
struct Report {
    command: String,
    bundle: Identity,
    signature: Signature,
    volumes: Vec<ReportVolume>,
    problems: Vec<String>,
    checked_at: String,
}

/// Which bundle a report is of: every report merged must agree on all of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub id: String,
    pub name: String,
    pub sequence: u64,
    pub created: String,
    pub manifest_sha256: Digest,
    /// The signing key's id (from the report's signature section).
    #[serde(default)]
    pub key_id: String,
}

#[derive(Deserialize)]
struct Signature {
    key_id: String,
    valid: bool,
}

#[derive(Deserialize)]
struct ReportVolume {
    volume: u32,
    file: String,
    status: VolumeStatus,
    size: u64,
    problems: Vec<ReportProblem>,
    #[serde(default)]
    seen: Option<Seen>,
}

#[derive(Deserialize)]
struct ReportProblem {
    problem: String,
}

/// The merged evidence.
#[derive(Debug, Serialize)]
pub struct Evidence {
    pub bundle: Identity,
    pub reports: Vec<ReportSummary>,
    pub volumes: Vec<VolumeEvidence>,
    /// Each disc (by the manifest's label) seen, in the order first seen, and when.
    pub discs: Vec<DiscSeen>,
    /// Problems of the bundle the reports name (a bad SHA256SUMS, an expired bundle, another
    /// bundle's disc), each prefixed with its report.
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ReportSummary {
    pub file: PathBuf,
    pub checked_at: String,
}

#[derive(Debug, Serialize)]
pub struct VolumeEvidence {
    pub volume: u32,
    pub file: String,
    pub size: u64,
    /// Combined: ok if any report found it intact, else damaged or foreign as seen, else missing.
    pub status: VolumeStatus,
    pub sightings: Vec<Sighting>,
}

/// One report's look at one volume.
#[derive(Debug, Serialize)]
pub struct Sighting {
    /// Index into [`Evidence::reports`].
    pub report: usize,
    pub status: VolumeStatus,
    /// When it was read (the report's time when the report does not say).
    pub at: String,
    pub dir: Option<PathBuf>,
    pub disc: Option<String>,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DiscSeen {
    pub label: String,
    /// Each report that read a volume of it, earliest first.
    pub seen: Vec<DiscSighting>,
}

#[derive(Debug, Serialize)]
pub struct DiscSighting {
    /// Index into [`Evidence::reports`].
    pub report: usize,
    /// When a volume of it was read (the first of its volumes that report lists).
    pub at: String,
}

impl Evidence {
    /// 0 every volume seen intact; 3 some never seen, all seen intact; 1 a volume seen only
    /// damaged or foreign, or a problem of the bundle.
    pub fn status(&self) -> Status {
        let mut status = if self.problems.is_empty() { Status::Ok } else { Status::Integrity };
        for v in &self.volumes {
            status = status.worst(match v.status {
                VolumeStatus::Ok | VolumeStatus::Skipped | VolumeStatus::Rebuilt => Status::Ok,
                VolumeStatus::Missing => Status::Incomplete,
                VolumeStatus::Damaged | VolumeStatus::Foreign => Status::Integrity,
            });
        }
        status
    }
}

/// Read and merge the reports at `paths` (at least one).
pub fn merge(paths: &[PathBuf]) -> Result<Evidence> {
    let Some(first_path) = paths.first() else { return Err(usage("give at least one report")) };
    let first = read_report(first_path)?;
    let mut evidence = Evidence {
        bundle: first.identity(),
        reports: Vec::new(),
        volumes: first
            .volumes
            .iter()
            .map(|v| VolumeEvidence {
                volume: v.volume,
                file: v.file.clone(),
                size: v.size,
                status: VolumeStatus::Missing,
                sightings: Vec::new(),
            })
            .collect(),
        discs: Vec::new(),
        problems: Vec::new(),
    };
    for (k, path) in paths.iter().enumerate() {
        let report = if k == 0 { None } else { Some(read_report(path)?) };
        let report = report.as_ref().unwrap_or(&first);
        same_bundle(&evidence, report, path, first_path)?;
        evidence.add(k, path, report);
    }
    for v in &mut evidence.volumes {
        v.status = combined(&v.sightings);
    }
    Ok(evidence)
}

impl Evidence {
    /// Record report number `k` (read from `path`, of this bundle).
    fn add(&mut self, k: usize, path: &Path, report: &Report) {
        self.reports.push(ReportSummary { file: path.to_path_buf(), checked_at: report.checked_at.clone() });
        let shown = untrusted(&path.display().to_string());
        self.problems.extend(report.problems.iter().map(|p| format!("{shown}: {p}")));
        for (v, seen) in self.volumes.iter_mut().zip(&report.volumes) {
            if matches!(seen.status, VolumeStatus::Missing | VolumeStatus::Skipped) {
                continue;
            }
            let at = seen.seen.as_ref().map_or(&report.checked_at, |s| &s.at).clone();
            let disc = seen.seen.as_ref().and_then(|s| s.disc.clone());
            if let Some(label) = &disc {
                let sighting = DiscSighting { report: k, at: at.clone() };
                match self.discs.iter_mut().find(|d| d.label == *label) {
                    Some(d) if d.seen.iter().any(|s| s.report == k) => {}
                    Some(d) => d.seen.push(sighting),
                    None => self.discs.push(DiscSeen { label: label.clone(), seen: vec![sighting] }),
                }
            }
            v.sightings.push(Sighting {
                report: k,
                status: seen.status,
                at,
                dir: seen.seen.as_ref().map(|s| s.dir.clone()),
                disc,
                problems: seen.problems.iter().map(|p| p.problem.clone()).collect(),
            });
        }
        for d in &mut self.discs {
            d.seen.sort_by(|a, b| a.at.cmp(&b.at));
        }
    }
}

/// A volume's combined state from its sightings.
fn combined(sightings: &[Sighting]) -> VolumeStatus {
    if sightings.iter().any(|s| s.status == VolumeStatus::Ok) {
        return VolumeStatus::Ok;
    }
    sightings.iter().map(|s| s.status).find(|&s| s != VolumeStatus::Missing).unwrap_or(VolumeStatus::Missing)
}

/// Refuse a report of another bundle than the evidence's (that of `first`).
fn same_bundle(evidence: &Evidence, report: &Report, path: &Path, first: &Path) -> Result<()> {
    let ours = &evidence.bundle;
    let theirs = report.identity();
    let same_volumes = report.volumes.len() == evidence.volumes.len()
        && report
            .volumes
            .iter()
            .zip(&evidence.volumes)
            .all(|(a, b)| (a.volume, &a.file, a.size) == (b.volume, &b.file, b.size));
    if theirs == *ours && same_volumes {
        return Ok(());
    }
    let describe = |i: &Identity| {
        format!(
            "bundle '{}' id {} sequence {} created {} (manifest {}, key {})",
            untrusted(&i.name),
            untrusted(&i.id),
            i.sequence,
            untrusted(&i.created),
            i.manifest_sha256,
            untrusted(&i.key_id)
        )
    };
    let what = if theirs == *ours { "the same bundle with another volume list".to_string() } else { describe(&theirs) };
    Err(integrity(format!(
        "{} is a report of {what}, not of {} as {} is: reports of different bundles are not merged",
        untrusted(&path.display().to_string()),
        describe(ours),
        untrusted(&first.display().to_string())
    )))
}

impl Report {
    fn identity(&self) -> Identity {
        Identity { key_id: self.signature.key_id.clone(), ..self.bundle.clone() }
    }
}

/// Read one report: bounded, strictly typed, and well formed in what the merge relies on.
fn read_report(path: &Path) -> Result<Report> {
    let shown = || untrusted(&path.display().to_string());
    let bytes = media::read_bounded(path, MAX_REPORT, "a verify report")?
        .ok_or_else(|| usage(format!("{}: no such report", shown())))?;
    let report: Report = serde_json::from_slice(&bytes)
        .map_err(|e| integrity(format!("{} is not a verify report (--json): {e}", shown())))?;
    report.check().map_err(|why| integrity(format!("{} is not a well-formed verify report: {why}", shown())))?;
    Ok(report)
}

impl Report {
    /// What the merge relies on: a verify report of a signature that was valid, a
    /// well-formed identity, volumes numbered from 1 with their bundle's file names.
    fn check(&self) -> std::result::Result<(), String> {
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        if self.command != "verify" {
            return Err(format!("it is a report of '{}', not of verify", untrusted(&self.command)));
        }
        if !self.signature.valid || !hex(&self.signature.key_id, 16) {
            return Err("its signature section is not that of a valid signature".into());
        }
        let b = &self.bundle;
        if !hex(&b.id, 32) || !names::valid_bundle_name(&b.name) || !timestamp(&b.created) {
            return Err("its bundle section is malformed".into());
        }
        if !timestamp(&self.checked_at) || self.volumes.is_empty() {
            return Err("it has no check time or no volumes".into());
        }
        let mut files = HashSet::new();
        for (i, v) in self.volumes.iter().enumerate() {
            let named = VolumeId::from_number(v.volume).is_some_and(|id| v.file == names::volume_file(&b.name, id))
                || v.file == names::parity_file(&b.name, v.volume as usize);
            if !named || !files.insert(v.file.as_str()) || (i > 0 && v.volume == 0) {
                return Err(format!("volume entry {} is malformed or repeated", i + 1));
            }
            if let Some(seen) = &v.seen {
                if !timestamp(&seen.at) || seen.disc.as_deref().is_some_and(|d| !names::valid_disc_label(d)) {
                    return Err(format!("where volume {} was seen is malformed", v.volume));
                }
            }
        }
        Ok(())
    }
}

/// `2026-11-27T10:46:28Z`, as [`crate::time::rfc3339`] writes.
fn timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(id: &str, statuses: &[(&str, Option<&str>)]) -> serde_json::Value {
        let volumes: Vec<_> = statuses
            .iter()
            .enumerate()
            .map(|(i, (status, disc))| {
                let mut v = serde_json::json!({
                    "volume": i + 1, "file": format!("ocp.{:04}.tar", i + 1), "status": status, "size": 10240,
                    "problems": if *status == "damaged" { serde_json::json!([{"problem": "chunk 'x' is damaged"}]) }
                                else { serde_json::json!([]) },
                });
                if *status != "missing" {
                    v["seen"] = serde_json::json!({ "dir": "/mnt/cdrom", "disc": disc, "at": "2026-12-04T12:00:00Z" });
                }
                v
            })
            .collect();
        serde_json::json!({
            "command": "verify", "status": "incomplete", "exit_code": 3,
            "bundle": { "id": id, "name": "ocp", "sequence": 7, "created": "2026-12-01T00:00:00Z",
                        "manifest_sha256": format!("sha256:{}", "ab".repeat(32)) },
            "signature": { "key_id": "0123456789ABCDEF", "valid": true },
            "volumes": volumes, "problems": [], "checked_at": "2026-12-04T12:00:01Z",
        })
    }

    fn write(dir: &Path, name: &str, v: &serde_json::Value) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_vec(v).unwrap()).unwrap();
        p
    }

    const ID: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn per_disc_reports_combine_into_one_status() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.json", &report(ID, &[("ok", Some("OCP_1OF2")), ("missing", None)]));
        let b = write(dir.path(), "b.json", &report(ID, &[("missing", None), ("ok", Some("OCP_2OF2"))]));
        let c = write(dir.path(), "c.json", &report(ID, &[("damaged", Some("OCP_1OF2")), ("missing", None)]));
        let e = merge(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(e.status(), Status::Ok);
        assert_eq!(e.discs.iter().map(|d| d.label.as_str()).collect::<Vec<_>>(), ["OCP_1OF2", "OCP_2OF2"]);
        assert_eq!(merge(std::slice::from_ref(&a)).unwrap().status(), Status::Incomplete);
        assert_eq!(merge(&[c.clone(), b.clone()]).unwrap().status(), Status::Integrity);
        let e = merge(&[c, a, b]).unwrap();
        assert_eq!(e.status(), Status::Ok, "a volume seen intact once is ok");
        assert_eq!(e.volumes[0].sightings.len(), 2);
    }

    #[test]
    fn reports_of_other_bundles_or_malformed_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.json", &report(ID, &[("ok", None), ("missing", None)]));
        let other = write(dir.path(), "o.json", &report(&"f".repeat(32), &[("missing", None), ("ok", None)]));
        let e = merge(&[a.clone(), other]).unwrap_err();
        assert!(matches!(e, crate::error::Error::Integrity(_)) && e.to_string().contains("different bundles"), "{e}");
        let mut bad = report(ID, &[("ok", None)]);
        bad["volumes"][0]["file"] = serde_json::json!("../../etc/passwd");
        let e = merge(&[write(dir.path(), "bad.json", &bad)]).unwrap_err().to_string();
        assert!(e.contains("volume entry 1 is malformed"), "{e}");
        let mut unpack = report(ID, &[("ok", None)]);
        unpack["command"] = serde_json::json!("unpack\u{1b}[2J");
        let e = merge(&[write(dir.path(), "u.json", &unpack)]).unwrap_err().to_string();
        assert!(e.contains("report of 'unpack\\u{1b}[2J'"), "{e}");
        std::fs::write(dir.path().join("t.json"), b"{\"command\":").unwrap();
        assert!(merge(&[dir.path().join("t.json")]).unwrap_err().to_string().contains("is not a verify report"));
        assert!(matches!(merge(&[dir.path().join("none.json")]).unwrap_err(), crate::error::Error::Usage(_)));
    }
}
