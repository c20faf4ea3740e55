//! Tampering and malicious bundles: `airlift verify` and `airlift unpack` against flipped
//! bytes, truncated, foreign, swapped and missing volumes, bad signatures, and volumes
//! crafted to carry what `tar -x` would turn into an escape (`..` and absolute names,
//! links, devices, smuggled entries, zstd bombs).
//!
//! Crafted bundles are re-sealed the way an attacker holding the signing key (or a buggy
//! packer) would do it: the volume bytes are edited, the volume's sha256 (and size where
//! stated) is recomputed in the manifest and in SHA256SUMS, and both are re-signed with
//! stock minisign using the trusted comments airlift expects. Every signature then checks
//! out, so only airlift's own entry checks stand between the bundle and the disk.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use airlift::bundle::manifest::{Compression, EntryKind, Manifest};
use airlift::digest::Digest;
use serde_json::Value;

use crate::common;

mod fuzz;
mod gate;

/// The bundle name pack uses by default.
pub(crate) const NAME: &str = "airlift";

// ---------------------------------------------------------------------------------------
// Running airlift

pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// Everything the command printed (the report goes to stdout, errors to stderr).
    pub(crate) fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// The one JSON document of a `--json` run.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("stdout is not one JSON document ({e}):\n{}\nstderr: {}", self.stdout, self.stderr)
        })
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

pub(crate) fn run(cmd: &mut assert_cmd::Command) -> Run {
    let out = cmd.output().expect("run airlift");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub(crate) fn verify(dir: &Path, public: &Path, json: bool) -> Run {
    let mut cmd = common::airlift();
    if json {
        cmd.arg("--json");
    }
    run(cmd.arg("verify").arg(dir).arg("--key").arg(public))
}

pub(crate) fn unpack(dir: &Path, public: &Path, layout: &Path, json: bool) -> Run {
    let mut cmd = common::airlift();
    if json {
        cmd.arg("--json");
    }
    run(cmd.arg("unpack").arg(dir).arg("--key").arg(public).arg("--layout").arg(layout))
}

fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let r = run(common::airlift().args(["keygen", "--name", name, "--out"]).arg(dir));
    assert_eq!(r.code, 0, "keygen: {r:?}");
    (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub")))
}

/// Pack the test layout into small volumes: ~3 volumes, split blobs, zstd entries.
pub(crate) fn pack(key: &Path, out: &Path, extra: &[&str]) {
    let r = run(common::airlift()
        .arg("pack")
        .arg("--key")
        .arg(key)
        .arg("--out")
        .arg(out)
        .args(["--no-installer", "--volume-size", "64KiB", "--chunk-size", "16KiB"])
        .args(extra)
        .arg(format!("oci:{}", common::testdata("layout").display())));
    assert_eq!(r.code, 0, "pack: {r:?}");
}

fn key_id(public: &Path) -> String {
    airlift::minisign::PublicKey::from_file(public).expect("public key").key_id_hex()
}

// ---------------------------------------------------------------------------------------
// A freshly packed bundle in its own temp dir

pub(crate) struct Fixture {
    tmp: tempfile::TempDir,
    pub(crate) key: PathBuf,
    pub(crate) public: PathBuf,
    pub(crate) dir: PathBuf,
}

impl Fixture {
    pub(crate) fn new() -> Fixture {
        Fixture::with_args(&[])
    }

    /// A bundle that also includes `notes.txt`: ~95 KiB of hex lines, which pack stores as
    /// one zstd stream split into parts (`files/notes.txt.zst.partNNNN`).
    fn with_notes() -> Fixture {
        let tmp = common::tempdir();
        let notes = tmp.path().join("notes.txt");
        let mut text = String::new();
        let mut d = Digest::of(b"notes");
        for _ in 0..1500 {
            d = Digest::of(d.hex().as_bytes());
            text.push_str(&d.hex());
            text.push('\n');
        }
        std::fs::write(&notes, text).unwrap();
        Fixture::build(tmp, &["--include", notes.to_str().unwrap()])
    }

    pub(crate) fn with_args(extra: &[&str]) -> Fixture {
        Fixture::build(common::tempdir(), extra)
    }

    fn build(tmp: tempfile::TempDir, extra: &[&str]) -> Fixture {
        let (key, public) = keygen(&tmp.path().join("keys"), "k");
        let dir = tmp.path().join("bundle");
        pack(&key, &dir, extra);
        let fx = Fixture { tmp, key, public, dir };
        let m = fx.manifest();
        assert!(m.volumes.len() >= 3, "the fixture should span at least 3 volumes, got {}", m.volumes.len());
        assert!(m.entries.iter().any(|e| e.compression == Compression::Zstd), "the fixture should hold zstd entries");
        fx
    }

    pub(crate) fn root(&self) -> &Path {
        self.tmp.path()
    }

    pub(crate) fn manifest(&self) -> Manifest {
        read_manifest(&self.dir)
    }

    pub(crate) fn volume(&self, n: u32) -> PathBuf {
        self.dir.join(format!("{NAME}.{n:04}.tar"))
    }

    pub(crate) fn verify(&self) -> Run {
        verify(&self.dir, &self.public, false)
    }

    pub(crate) fn verify_json(&self) -> (Run, Value) {
        let r = verify(&self.dir, &self.public, true);
        let doc = r.json();
        (r, doc)
    }

    /// Re-seal the bundle after its volumes were edited (see the module doc).
    pub(crate) fn reseal(&self, update_sizes: bool, edit: impl FnOnce(&mut Manifest)) {
        reseal(&self.dir, &self.key, update_sizes, edit)
    }
}

pub(crate) fn read_manifest(dir: &Path) -> Manifest {
    read_manifest_named(dir, NAME)
}

pub(crate) fn read_manifest_named(dir: &Path, name: &str) -> Manifest {
    let bytes = std::fs::read(dir.join(format!("{name}.manifest.json"))).expect("read manifest");
    serde_json::from_slice(&bytes).expect("parse manifest")
}

/// Index of the first chunk in `volume` (1-based) that is not the label and satisfies `pred`.
pub(crate) fn pick_chunk(m: &Manifest, volume: u32, pred: impl Fn(&Manifest, usize) -> bool) -> usize {
    (0..m.chunks.len())
        .find(|&c| {
            let ch = &m.chunks[c];
            ch.volume == volume && !ch.entry.starts_with("airlift/") && pred(m, c)
        })
        .unwrap_or_else(|| panic!("no suitable chunk in volume {volume}"))
}

pub(crate) fn entry_of(m: &Manifest, c: usize) -> &airlift::bundle::manifest::Entry {
    m.entries.iter().find(|e| e.path == m.chunks[c].entry).expect("chunk's entry")
}

pub(crate) fn parts_of(m: &Manifest, c: usize) -> usize {
    m.chunks.iter().filter(|ch| ch.entry == m.chunks[c].entry).count()
}

/// A whole (single-chunk), uncompressed blob.
pub(crate) fn whole_plain_blob(m: &Manifest, c: usize) -> bool {
    let e = entry_of(m, c);
    e.kind == EntryKind::Blob && e.compression == Compression::None && parts_of(m, c) == 1
}

/// The tar name of a chunk, by the README's recipe: path, `.zst`, `.partNNNN`.
fn stored_name(m: &Manifest, c: usize) -> String {
    let e = entry_of(m, c);
    let mut name = e.path.clone();
    if e.compression == Compression::Zstd {
        name.push_str(".zst");
    }
    if parts_of(m, c) > 1 {
        name.push_str(&format!(".part{:04}", m.chunks[c].part + 1));
    }
    name
}

/// References of the images that need the blob chunk `c` belongs to.
fn images_needing(m: &Manifest, c: usize) -> Vec<String> {
    let e = entry_of(m, c);
    let refs: Vec<String> =
        m.images.iter().filter(|i| i.blobs.contains(&e.digest)).map(|i| i.reference.clone().expect("tagged")).collect();
    assert!(!refs.is_empty(), "chunk {c} should belong to at least one image");
    refs
}

// ---------------------------------------------------------------------------------------
// Editing bytes, crafting headers, re-sealing

pub(crate) fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn write_at(path: &Path, offset: u64, data: &[u8]) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize..offset as usize + data.len()].copy_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Regular,
    Symlink,
    HardLink,
    CharDevice,
}

/// A ustar header built by hand (names are written raw, so `..` and absolute names pass),
/// with a correct checksum.
fn ustar(name: &str, size: u64, kind: Kind, link: &str, mode: u32, mtime: u64) -> [u8; 512] {
    assert!(name.len() < 100 && link.len() < 100, "names must fit the ustar fields");
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(match kind {
        Kind::Regular => tar::EntryType::Regular,
        Kind::Symlink => tar::EntryType::Symlink,
        Kind::HardLink => tar::EntryType::Link,
        Kind::CharDevice => tar::EntryType::Char,
    });
    if kind == Kind::CharDevice {
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    }
    {
        let b = h.as_mut_bytes();
        b[..100].fill(0);
        b[..name.len()].copy_from_slice(name.as_bytes());
        b[157..257].fill(0);
        b[157..157 + link.len()].copy_from_slice(link.as_bytes());
    }
    h.set_cksum();
    let mut out = [0u8; 512];
    out.copy_from_slice(h.as_bytes());
    out
}

/// The `trusted comment:` line of a minisign signature file.
pub(crate) fn trusted_comment(sig: &Path) -> String {
    let text = std::fs::read_to_string(sig).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("trusted comment: "))
        .unwrap_or_else(|| panic!("{} has no trusted comment", sig.display()))
        .to_string()
}

/// Sign `file` with stock minisign (writes `file.minisig`).
pub(crate) fn minisign_sign(key: &Path, file: &Path, comment: &str) {
    let out = Command::new("minisign")
        .arg("-S")
        .arg("-s")
        .arg(key)
        .arg("-m")
        .arg(file)
        .arg("-t")
        .arg(comment)
        .stdin(Stdio::null())
        .output()
        .expect("run minisign");
    assert!(
        out.status.success(),
        "minisign -S {}: {}\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Apply `edit` to the manifest, recompute the sha256 (and, when asked, the size) of every
/// volume present, rewrite the manifest (serde_json pretty, as pack does) and SHA256SUMS,
/// and re-sign both with stock minisign and the trusted comments they had.
pub(crate) fn reseal(dir: &Path, key: &Path, update_sizes: bool, edit: impl FnOnce(&mut Manifest)) {
    let manifest_path = dir.join(format!("{NAME}.manifest.json"));
    let sums_path = dir.join(format!("{NAME}.SHA256SUMS"));
    let manifest_comment = trusted_comment(&dir.join(format!("{NAME}.manifest.json.minisig")));
    let sums_comment = trusted_comment(&dir.join(format!("{NAME}.SHA256SUMS.minisig")));
    let mut m = read_manifest(dir);
    edit(&mut m);
    for v in &mut m.volumes {
        if let Ok(bytes) = std::fs::read(dir.join(&v.file)) {
            v.sha256 = Digest::of(&bytes);
            if update_sizes {
                v.size = bytes.len() as u64;
            }
        }
    }
    let mut bytes = serde_json::to_vec_pretty(&m).unwrap();
    bytes.push(b'\n');
    std::fs::write(&manifest_path, bytes).unwrap();
    let sums: String = m.volumes.iter().map(|v| format!("{}  {}\n", v.sha256.hex(), v.file)).collect();
    std::fs::write(&sums_path, sums).unwrap();
    minisign_sign(key, &manifest_path, &manifest_comment);
    minisign_sign(key, &sums_path, &sums_comment);
}

/// `tar -tvf` of a volume: proves a crafted volume is a real tar holding the crafted entry.
fn tar_listing(volume: &Path) -> String {
    let out = Command::new("tar").arg("-tvf").arg(volume).output().expect("run tar");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------
// Snapshots: what is on disk, byte for byte

/// Every path under `root` (root itself included unless `skip_root`) with its type, size,
/// mode, link count, mtime and sha256 (or link target); paths under `exclude` are left out.
fn snapshot(root: &Path, exclude: &[&Path], skip_root: bool) -> BTreeMap<PathBuf, String> {
    let mut map = BTreeMap::new();
    let walk = walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name();
    for entry in walk.into_iter().filter_entry(|e| !exclude.iter().any(|x| e.path() == *x)) {
        let entry = entry.expect("walk");
        if skip_root && entry.depth() == 0 {
            continue;
        }
        let md = std::fs::symlink_metadata(entry.path()).unwrap();
        let ft = md.file_type();
        let content = if ft.is_file() {
            Digest::of(&std::fs::read(entry.path()).unwrap()).to_string()
        } else if ft.is_symlink() {
            format!("-> {}", std::fs::read_link(entry.path()).unwrap().display())
        } else {
            String::new()
        };
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else {
            "special"
        };
        map.insert(
            entry.path().strip_prefix(root).unwrap().to_path_buf(),
            format!(
                "{kind} len={} mode={:o} nlink={} mtime={}.{:09} {content}",
                md.len(),
                md.mode(),
                md.nlink(),
                md.mtime(),
                md.mtime_nsec()
            ),
        );
    }
    map
}

fn assert_same_snapshot(before: &BTreeMap<PathBuf, String>, after: &BTreeMap<PathBuf, String>, what: &str) {
    if before != after {
        let mut diff = String::new();
        for (p, v) in after {
            match before.get(p) {
                None => diff.push_str(&format!("  new:     {} {v}\n", p.display())),
                Some(b) if b != v => diff.push_str(&format!("  changed: {} {b} => {v}\n", p.display())),
                _ => {}
            }
        }
        for p in before.keys().filter(|p| !after.contains_key(*p)) {
            diff.push_str(&format!("  gone:    {}\n", p.display()));
        }
        panic!("{what}:\n{diff}");
    }
}

fn set_read_only(root: &Path, read_only: bool) {
    // Files first, directories last (deepest first), so a read-only dir never blocks us.
    let entries: Vec<_> = walkdir::WalkDir::new(root).contents_first(true).into_iter().map(|e| e.unwrap()).collect();
    for e in entries {
        let md = std::fs::symlink_metadata(e.path()).unwrap();
        if md.file_type().is_symlink() {
            continue;
        }
        let mode = md.permissions().mode();
        let mode = if read_only { mode & !0o222 } else { mode | 0o200 };
        std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// Shared assertions

fn assert_contains(haystack: &str, needle: &str, what: &str) {
    assert!(haystack.contains(needle), "{what}: expected {needle:?} in:\n{haystack}");
}

/// The JSON volume report of `volume` (1-based).
fn volume_report(doc: &Value, volume: u32) -> &Value {
    let v = &doc["volumes"][volume as usize - 1];
    assert_eq!(v["volume"], volume, "{doc:#}");
    v
}

/// The problem the JSON report lists for chunk `c` of `volume`.
fn chunk_problem(doc: &Value, volume: u32, c: usize) -> &Value {
    let v = volume_report(doc, volume);
    v["problems"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["chunk"] == c))
        .unwrap_or_else(|| panic!("no problem for chunk {c} in volume {volume}:\n{doc:#}"))
}

/// verify (human and JSON) fails with exit 1 on chunk `c`, naming the volume file, the
/// chunk, its entry, `words`, and the images the chunk hurts. The signatures and
/// SHA256SUMS check out (so the refusal comes from the volume checks).
fn assert_verify_names_chunk(fx: &Fixture, c: usize, words: &[&str]) -> Value {
    let m = fx.manifest();
    let chunk = &m.chunks[c];
    let file = &m.volumes[chunk.volume as usize - 1].file;
    let images = images_needing(&m, c);

    let r = fx.verify();
    assert_eq!(r.code, 1, "verify should fail with exit 1: {r:?}");
    let text = r.text();
    assert_contains(&text, &format!("DAMAGED  {file}"), "human report names the volume");
    assert_contains(&text, &format!("[chunk {c}]"), "human report names the chunk");
    assert_contains(&text, &chunk.entry, "human report names the entry");
    for w in words {
        assert_contains(&text, w, "human report says what is wrong");
    }
    for i in &images {
        assert_contains(&text, &format!("image {i}: damaged"), "human report names the images hurt");
    }

    let (r, doc) = fx.verify_json();
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(doc["status"], "failed", "{doc:#}");
    assert_eq!(doc["exit_code"], 1, "{doc:#}");
    assert_eq!(doc["signature"]["valid"], true, "{doc:#}");
    assert_eq!(doc["sha256sums"]["state"], "ok", "{doc:#}");
    let vol = volume_report(&doc, chunk.volume);
    assert_eq!(vol["file"], file.as_str(), "{doc:#}");
    assert_eq!(vol["status"], "damaged", "{doc:#}");
    let p = chunk_problem(&doc, chunk.volume, c);
    assert_eq!(p["entry"], chunk.entry.as_str(), "{doc:#}");
    let problem = p["problem"].as_str().unwrap();
    for w in words {
        assert_contains(problem, w, "JSON problem says what is wrong");
    }
    let hurts: Vec<&str> = p["hurts"].as_array().unwrap().iter().map(|h| h.as_str().unwrap()).collect();
    for i in &images {
        assert!(hurts.iter().any(|h| h.starts_with(&format!("{i} ("))), "hurts should name {i}: {doc:#}");
        let state = doc["images"].as_array().unwrap().iter().find(|s| s["reference"] == i.as_str()).unwrap();
        assert_eq!(state["status"], "damaged", "{doc:#}");
    }
    // Images that need none of the damaged entries are not blamed.
    let bad_entries: Vec<String> = doc["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| v["problems"].as_array().unwrap().iter())
        .filter_map(|p| p["entry"].as_str().map(str::to_string))
        .collect();
    for image in &m.images {
        let hurt = image.blobs.iter().any(|b| bad_entries.contains(&format!("blobs/sha256/{}", b.hex())));
        if !hurt {
            let r = image.reference.as_deref().unwrap();
            let state = doc["images"].as_array().unwrap().iter().find(|s| s["reference"] == r).unwrap();
            assert_eq!(state["status"], "ok", "{r} needs no damaged chunk: {doc:#}");
        }
    }
    doc
}

/// unpack refuses with exit 1 (human and JSON), saying `words`; it writes nothing outside
/// its layout directory, none of `forbidden` exists, and the layout holds only regular
/// files (no links, devices) and directories.
fn assert_unpack_refuses(dir: &Path, public: &Path, root: &Path, words: &[&str], forbidden: &[&str]) {
    for json in [false, true] {
        let out = root.join(if json { "layout-json" } else { "layout" });
        let before = snapshot(root, &[&out], true);
        let names_before: Vec<_> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name()).collect();
        let r = unpack(dir, public, &out, json);
        assert_eq!(r.code, 1, "unpack should refuse with exit 1: {r:?}");
        let said = if json { r.stdout.clone() } else { r.text() };
        if json {
            let doc = r.json();
            assert_eq!(doc["exit_code"], 1, "{doc:#}");
        }
        for w in words {
            assert_contains(&said, w, "unpack says what is wrong");
        }
        // Nothing new or changed outside OUT: the parent holds only what it held, plus OUT.
        let after = snapshot(root, &[&out], true);
        assert_same_snapshot(&before, &after, "unpack wrote outside its layout directory");
        let mut names_after: Vec<_> = std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name()).collect();
        names_after.retain(|n| *n != *out.file_name().unwrap());
        let mut names_before = names_before.clone();
        names_before.sort();
        names_after.sort();
        assert_eq!(names_before, names_after, "new files next to the layout");
        for name in forbidden {
            for e in walkdir::WalkDir::new(root).follow_links(false) {
                let e = e.unwrap();
                if e.path().starts_with(&out) {
                    continue;
                }
                assert_ne!(e.file_name().to_string_lossy(), *name, "unpack created {}", e.path().display());
            }
        }
        if out.exists() {
            for e in walkdir::WalkDir::new(&out).follow_links(false) {
                let e = e.unwrap();
                let md = std::fs::symlink_metadata(e.path()).unwrap();
                assert!(
                    md.is_dir() || (md.file_type().is_file() && md.nlink() == 1),
                    "unpack left {} which is not a plain file ({:?}, {} links)",
                    e.path().display(),
                    md.file_type(),
                    md.nlink()
                );
                assert!(
                    !e.file_name().to_string_lossy().starts_with("pwned"),
                    "a crafted name reached the layout: {}",
                    e.path().display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The control: re-sealing with stock minisign keeps a bundle valid

#[test]
fn an_untouched_bundle_verifies_and_stays_valid_when_resealed_with_stock_minisign() {
    let fx = Fixture::new();
    let (r, doc) = fx.verify_json();
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(doc["status"], "ok");
    if !common::have("minisign") {
        return;
    }
    // The re-sealing machinery the crafted tests use changes nothing airlift objects to.
    fx.reseal(true, |_| {});
    let (r, doc) = fx.verify_json();
    assert_eq!(r.code, 0, "a bundle re-signed by stock minisign with the same trusted comments must verify: {r:?}");
    assert_eq!(doc["sha256sums"]["state"], "ok", "{doc:#}");
    let r = fx.verify();
    assert_eq!(r.code, 0, "{r:?}");
    assert_contains(&r.stdout, "OK: every volume and chunk matches the signed manifest", "verdict");
}

// ---------------------------------------------------------------------------------------
// 1. Flipped bytes

#[test]
fn verify_names_volume_chunk_entry_and_images_of_a_flipped_data_byte() {
    let fx = Fixture::new();
    let m = fx.manifest();
    let c = pick_chunk(&m, 2, whole_plain_blob);
    let chunk = &m.chunks[c];
    flip(&fx.volume(2), chunk.offset + chunk.length / 2);
    let doc = assert_verify_names_chunk(&fx, c, &["is damaged", "signed manifest says"]);
    // Only volume 2 is blamed.
    assert_eq!(volume_report(&doc, 1)["status"], "ok", "{doc:#}");
    assert_eq!(volume_report(&doc, 3)["status"], "ok", "{doc:#}");
    assert_eq!(volume_report(&doc, 2)["problems"].as_array().unwrap().len(), 1, "{doc:#}");
}

#[test]
fn verify_rejects_a_flipped_byte_in_a_chunk_header() {
    let fx = Fixture::new();
    let m = fx.manifest();
    let c = pick_chunk(&m, 2, whole_plain_blob);
    // The mtime field (bytes 136..148) of the chunk's ustar header.
    flip(&fx.volume(2), m.chunks[c].offset - 512 + 140);
    assert_verify_names_chunk(&fx, c, &["unexpected tar entry", "header that differs from the manifest"]);
}

#[test]
fn verify_rejects_a_flipped_byte_in_padding() {
    let fx = Fixture::new();
    let m = fx.manifest();
    let c = pick_chunk(&m, 2, |m, c| whole_plain_blob(m, c) && m.chunks[c].length % 512 != 0);
    let chunk = &m.chunks[c];
    // The last padding byte before the next header.
    let pad_end = chunk.offset + chunk.length.div_ceil(512) * 512;
    flip(&fx.volume(2), pad_end - 1);
    assert_verify_names_chunk(&fx, c, &["padding after", "is not zero"]);
}

#[test]
fn verify_reports_every_bad_chunk_not_just_the_first() {
    let fx = Fixture::new();
    let m = fx.manifest();
    let first = pick_chunk(&m, 2, whole_plain_blob);
    let second = pick_chunk(&m, 2, |m, c| c > first && whole_plain_blob(m, c));
    for c in [first, second] {
        flip(&fx.volume(2), m.chunks[c].offset + 7);
    }
    let r = fx.verify();
    assert_eq!(r.code, 1, "{r:?}");
    for c in [first, second] {
        assert_contains(&r.stdout, &format!("[chunk {c}]"), "both chunks are reported");
    }
    let (r, doc) = fx.verify_json();
    assert_eq!(r.code, 1, "{r:?}");
    let problems = volume_report(&doc, 2)["problems"].as_array().unwrap();
    let chunks: Vec<u64> = problems.iter().filter_map(|p| p["chunk"].as_u64()).collect();
    assert_eq!(chunks, [first as u64, second as u64], "two problems, in volume order: {doc:#}");
    for c in [first, second] {
        let p = chunk_problem(&doc, 2, c);
        assert_eq!(p["entry"], m.chunks[c].entry.as_str());
        for i in images_needing(&m, c) {
            let hurts = p["hurts"].to_string();
            assert_contains(&hurts, &i, "each problem names its images");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 2. Truncation

#[test]
fn verify_reports_a_truncated_volume() {
    let fx = Fixture::new();
    let m = fx.manifest();
    let path = fx.volume(2);
    let full = std::fs::metadata(&path).unwrap().len();
    let cut = full / 2 + 100; // in the middle of a chunk's data, not on a block boundary
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..cut as usize]).unwrap();

    let r = fx.verify();
    assert_eq!(r.code, 1, "{r:?}");
    assert_contains(&r.stdout, &format!("DAMAGED  {NAME}.0002.tar"), "names the volume");
    assert_contains(&r.stdout, &format!("volume is truncated: {cut} bytes of {full}"), "says truncated");

    let (r, doc) = fx.verify_json();
    assert_eq!(r.code, 1, "{r:?}");
    let vol = volume_report(&doc, 2);
    assert_eq!(vol["file"], format!("{NAME}.0002.tar"));
    assert_eq!(vol["status"], "damaged");
    let problems = vol["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["problem"].as_str().unwrap().contains("truncated")),
        "a problem says truncated: {doc:#}"
    );
    // Every chunk that does not fit in what is left is reported, with its images.
    let lost: Vec<usize> = (0..m.chunks.len())
        .filter(|&c| m.chunks[c].volume == 2 && m.chunks[c].offset + m.chunks[c].length.div_ceil(512) * 512 > cut)
        .collect();
    assert!(!lost.is_empty());
    for &c in &lost {
        let p = chunk_problem(&doc, 2, c);
        assert_contains(p["problem"].as_str().unwrap(), "cut off", "cut-off chunk");
    }
    assert_eq!(volume_report(&doc, 1)["status"], "ok");
    assert_eq!(volume_report(&doc, 3)["status"], "ok");
}

// ---------------------------------------------------------------------------------------
// 3. Foreign and swapped volumes

fn check_foreign(other_args: &[&str], other_name: &str) {
    let fx = Fixture::new();
    let other = fx.root().join("other");
    pack(&fx.key, &other, other_args);
    let other_m = read_manifest_named(&other, other_name);
    assert_ne!(other_m.id, fx.manifest().id);
    std::fs::copy(other.join(format!("{other_name}.0002.tar")), fx.volume(2)).unwrap();

    let r = fx.verify();
    assert_eq!(r.code, 1, "{r:?}");
    assert_contains(&r.stdout, &format!("FOREIGN  {NAME}.0002.tar"), "names the volume");
    assert_contains(&r.stdout, &other_m.id, "names the other bundle's id");
    assert_contains(&r.stdout, &format!("'{}'", other_m.name), "names the other bundle");

    let (r, doc) = fx.verify_json();
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(doc["status"], "failed");
    let vol = volume_report(&doc, 2);
    assert_eq!(vol["status"], "foreign", "{doc:#}");
    let msg = vol["problems"][0]["problem"].as_str().unwrap();
    assert_contains(msg, "belongs to another bundle", "foreign message");
    assert_contains(msg, &other_m.id, "foreign message names the other bundle");
    assert_contains(msg, &format!("sequence {}", other_m.sequence), "foreign message names its sequence");
    assert_eq!(volume_report(&doc, 1)["status"], "ok");
    assert_eq!(volume_report(&doc, 3)["status"], "ok");
    // Images with blobs in volume 2 are hurt.
    let m = fx.manifest();
    for c in (0..m.chunks.len()).filter(|&c| m.chunks[c].volume == 2 && !m.chunks[c].entry.starts_with("airlift/")) {
        for i in images_needing(&m, c) {
            let state = doc["images"].as_array().unwrap().iter().find(|s| s["reference"] == i.as_str()).unwrap();
            assert_eq!(state["status"], "damaged", "{i}: {doc:#}");
        }
    }
}

#[test]
fn verify_rejects_a_volume_of_the_next_sequence_renamed_into_place_as_foreign() {
    check_foreign(&["--sequence", "2"], NAME);
}

#[test]
fn verify_rejects_a_volume_of_another_named_bundle_renamed_into_place_as_foreign() {
    check_foreign(&["--name", "other"], "other");
}

#[test]
fn verify_rejects_swapped_volumes() {
    let fx = Fixture::new();
    let (a, b, t) = (fx.volume(1), fx.volume(2), fx.dir.join("swap.tmp"));
    std::fs::rename(&a, &t).unwrap();
    std::fs::rename(&b, &a).unwrap();
    std::fs::rename(&t, &b).unwrap();

    let r = fx.verify();
    assert_eq!(r.code, 1, "{r:?}");
    assert_contains(&r.stdout, &format!("FOREIGN  {NAME}.0001.tar"), "volume 1");
    assert_contains(&r.stdout, &format!("FOREIGN  {NAME}.0002.tar"), "volume 2");
    assert_contains(&r.stdout, "swapped or renamed", "says why");

    let (r, doc) = fx.verify_json();
    assert_eq!(r.code, 1, "{r:?}");
    for (v, holds) in [(1u32, "volume 0002"), (2, "volume 0001")] {
        let vol = volume_report(&doc, v);
        assert_eq!(vol["status"], "foreign", "{doc:#}");
        assert_contains(vol["problems"][0]["problem"].as_str().unwrap(), holds, "says which volume it really is");
    }
    assert_eq!(volume_report(&doc, 3)["status"], "ok");

    // unpack refuses too.
    let out = fx.root().join("layout");
    let r = unpack(&fx.dir, &fx.public, &out, false);
    assert_eq!(r.code, 1, "{r:?}");
    assert_contains(&r.text(), "swapped or renamed", "unpack says why");
}

// ---------------------------------------------------------------------------------------
// 4. Signatures

fn assert_refused_before_reading(fx: &Fixture, public: &Path, words: &[&str]) {
    let r = verify(&fx.dir, public, false);
    assert_eq!(r.code, 1, "{r:?}");
    for w in words {
        assert_contains(&r.stderr, w, "stderr says why");
    }
    assert!(!r.stdout.contains(".0001.tar"), "no volume may be reported before the signature checks out: {r:?}");
    let r = verify(&fx.dir, public, true);
    assert_eq!(r.code, 1, "{r:?}");
    let doc = r.json();
    assert_eq!(doc["exit_code"], 1, "{doc:#}");
    assert!(doc.get("volumes").is_none(), "no volume may be reported: {doc:#}");
    for w in words {
        assert_contains(doc["error"].as_str().unwrap(), w, "JSON error says why");
    }
    // unpack refuses as well, and creates nothing.
    let out = fx.root().join("layout");
    let r = unpack(&fx.dir, public, &out, false);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(!out.exists(), "unpack created {} for a bundle it refused", out.display());
}

#[test]
fn a_tampered_manifest_is_refused_by_its_signature_before_anything_else() {
    let fx = Fixture::new();
    let path = fx.dir.join(format!("{NAME}.manifest.json"));
    let mut text = std::fs::read_to_string(&path).unwrap();
    // Change one character: the last digit of the first image's size.
    let images = text.find("\"images\"").unwrap();
    let size = images + text[images..].find("\"size\": ").unwrap() + "\"size\": ".len();
    let end = size + text[size..].find(|ch: char| !ch.is_ascii_digit()).unwrap();
    let digit = text.as_bytes()[end - 1];
    let other = if digit == b'9' { '0' } else { (digit + 1) as char };
    text.replace_range(end - 1..end, &other.to_string());
    std::fs::write(&path, text).unwrap();
    // A missing volume would be exit 3; the signature failure comes first and wins.
    std::fs::remove_file(fx.volume(3)).unwrap();
    assert_refused_before_reading(
        &fx,
        &fx.public,
        &["signature verification failed", &format!("{NAME}.manifest.json.minisig")],
    );
}

#[test]
fn a_wrong_key_is_refused() {
    let fx = Fixture::new();
    let (_, other_pub) = keygen(&fx.root().join("other-keys"), "other");
    assert_refused_before_reading(
        &fx,
        &other_pub,
        &[&key_id(&fx.public), &key_id(&other_pub), "not by the trusted key"],
    );
}

#[test]
fn an_unsigned_bundle_is_refused() {
    let fx = Fixture::new();
    std::fs::remove_file(fx.dir.join(format!("{NAME}.manifest.json.minisig"))).unwrap();
    assert_refused_before_reading(&fx, &fx.public, &["is not signed", &format!("{NAME}.manifest.json.minisig")]);
}

#[test]
fn a_signature_from_the_right_key_for_another_bundle_is_refused() {
    let fx = Fixture::new();
    let other = fx.root().join("other");
    pack(&fx.key, &other, &["--sequence", "2"]);
    let sig = format!("{NAME}.manifest.json.minisig");
    let original = std::fs::read(fx.dir.join(&sig)).unwrap();
    std::fs::copy(other.join(&sig), fx.dir.join(&sig)).unwrap();
    assert_refused_before_reading(&fx, &fx.public, &["signature verification failed"]);

    if !common::have("minisign") {
        return;
    }
    // This manifest's exact bytes, signed by the right key, but with the other bundle's
    // trusted comment: the signature verifies, the comment does not describe this bundle.
    let other_comment = trusted_comment(&other.join(&sig));
    minisign_sign(&fx.key, &fx.dir.join(format!("{NAME}.manifest.json")), &other_comment);
    assert_ne!(std::fs::read(fx.dir.join(&sig)).unwrap(), original);
    assert_refused_before_reading(&fx, &fx.public, &["made for another bundle", &read_manifest(&other).id]);

    // The SHA256SUMS signature of another bundle: the manifest is fine, the sums are not.
    std::fs::write(fx.dir.join(&sig), &original).unwrap();
    let sums_sig = format!("{NAME}.SHA256SUMS.minisig");
    std::fs::copy(other.join(&sums_sig), fx.dir.join(&sums_sig)).unwrap();
    let (r, doc) = fx.verify_json();
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(doc["sha256sums"]["state"], "bad", "{doc:#}");
    assert_contains(&doc["problems"].to_string(), &format!("{NAME}.SHA256SUMS"), "names the file");
}

// ---------------------------------------------------------------------------------------
// 5. Missing volumes

#[test]
fn missing_volumes_only_are_incomplete() {
    let fx = Fixture::new();
    std::fs::remove_file(fx.volume(3)).unwrap();
    let missing = format!("{NAME}.0003.tar");

    let r = fx.verify();
    assert_eq!(r.code, 3, "{r:?}");
    assert_contains(&r.stdout, &format!("missing  {missing}"), "names the missing volume");
    assert_contains(&r.stdout, &format!("INCOMPLETE: everything present is good; still missing: {missing}"), "verdict");

    let (r, doc) = fx.verify_json();
    assert_eq!(r.code, 3, "{r:?}");
    assert_eq!(doc["status"], "incomplete", "{doc:#}");
    assert_eq!(doc["exit_code"], 3);
    assert_eq!(doc["missing"], serde_json::json!([missing]));
    assert_eq!(volume_report(&doc, 3)["status"], "missing");
    assert_eq!(volume_report(&doc, 1)["status"], "ok");
    assert_eq!(volume_report(&doc, 2)["status"], "ok");
    // The images needing volume 3 say so; no image is damaged.
    let m = fx.manifest();
    let needing: Vec<String> = (0..m.chunks.len())
        .filter(|&c| m.chunks[c].volume == 3 && !m.chunks[c].entry.starts_with("airlift/"))
        .flat_map(|c| images_needing(&m, c))
        .collect();
    assert!(!needing.is_empty());
    for state in doc["images"].as_array().unwrap() {
        let r = state["reference"].as_str().unwrap();
        if needing.iter().any(|n| n == r) {
            assert_eq!(state["status"], "incomplete", "{doc:#}");
            assert_eq!(state["missing_volumes"], serde_json::json!([missing]), "{doc:#}");
        } else {
            assert_eq!(state["status"], "ok", "{doc:#}");
        }
    }

    // Missing and damaged: damage wins, exit 1 (never "merely incomplete").
    let c = pick_chunk(&m, 2, whole_plain_blob);
    flip(&fx.volume(2), m.chunks[c].offset + 5);
    let (r, doc) = fx.verify_json();
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(doc["status"], "failed", "{doc:#}");
    assert_eq!(doc["missing"], serde_json::json!([missing]), "{doc:#}");
    assert_eq!(chunk_problem(&doc, 2, c)["entry"], m.chunks[c].entry.as_str());
}

#[test]
fn an_extra_volume_file_of_this_bundle_name_is_reported_as_foreign() {
    let fx = Fixture::new();
    let other = fx.root().join("other");
    pack(&fx.key, &other, &["--sequence", "2"]);
    let extra = format!("{NAME}.0009.tar");
    std::fs::copy(other.join(format!("{NAME}.0003.tar")), fx.dir.join(&extra)).unwrap();
    let r = fx.verify();
    assert_eq!(r.code, 1, "{r:?}");
    assert_contains(
        &r.stdout,
        &format!("{extra} looks like a volume of this bundle but is not in its manifest"),
        "names it",
    );
    let (r, doc) = fx.verify_json();
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(doc["foreign"], serde_json::json!([extra]), "{doc:#}");
}

// ---------------------------------------------------------------------------------------
// 6. verify is read-only

#[test]
fn verify_never_writes_to_the_bundle_directory() {
    let fx = Fixture::new();
    // A damaged copy next to the good one.
    let damaged = fx.root().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    for e in std::fs::read_dir(&fx.dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), damaged.join(e.file_name())).unwrap();
    }
    let m = fx.manifest();
    let c = pick_chunk(&m, 2, whole_plain_blob);
    flip(&damaged.join(format!("{NAME}.0002.tar")), m.chunks[c].offset + 1);

    for (dir, code) in [(&fx.dir, 0), (&damaged, 1)] {
        set_read_only(dir, true);
        let before = snapshot(dir, &[], false);
        let mut parent_before: Vec<_> = std::fs::read_dir(fx.root()).unwrap().map(|e| e.unwrap().file_name()).collect();
        parent_before.sort();
        for json in [false, true] {
            let r = verify(dir, &fx.public, json);
            assert_eq!(r.code, code, "{}: {r:?}", dir.display());
            if code == 1 {
                assert_contains(&r.stdout, &m.chunks[c].entry, "names the damaged entry");
            }
        }
        let after = snapshot(dir, &[], false);
        let mut parent_after: Vec<_> = std::fs::read_dir(fx.root()).unwrap().map(|e| e.unwrap().file_name()).collect();
        parent_after.sort();
        set_read_only(dir, false);
        assert_same_snapshot(&before, &after, &format!("verify changed {}", dir.display()));
        assert_eq!(parent_before, parent_after, "verify created files next to the bundle");
    }
}

// ---------------------------------------------------------------------------------------
// Crafted volumes: what `tar -x` would turn into an escape

/// Rewrite the header of a whole plain blob chunk in volume 2; returns the chunk index.
fn craft_header(fx: &Fixture, header: impl FnOnce(&Manifest, usize) -> [u8; 512]) -> usize {
    let m = fx.manifest();
    let c = pick_chunk(&m, 2, whole_plain_blob);
    let h = header(&m, c);
    write_at(&fx.volume(2), m.chunks[c].offset - 512, &h);
    fx.reseal(true, |_| {});
    c
}

/// Checks shared by the crafted-header cases: a real tar, refused by verify and unpack.
fn check_crafted_header(fx: &Fixture, c: usize, listing_shows: &str, words: &[&str], forbidden: &[&str]) {
    if common::have("tar") {
        assert_contains(
            &tar_listing(&fx.volume(2)),
            listing_shows,
            "the crafted volume is a tar holding the crafted entry",
        );
    }
    assert_verify_names_chunk(fx, c, words);
    assert_unpack_refuses(&fx.dir, &fx.public, fx.root(), words, forbidden);
}

#[test]
fn crafted_dotdot_name_is_refused() {
    if !common::have("minisign") {
        return;
    }
    let fx = Fixture::new();
    let c = craft_header(&fx, |m, c| {
        let e = entry_of(m, c);
        ustar("../pwned-dotdot", m.chunks[c].length, Kind::Regular, "", e.mode, m.created)
    });
    check_crafted_header(&fx, c, "../pwned-dotdot", &["path escaping the tree", "../pwned-dotdot"], &["pwned-dotdot"]);
}

#[test]
fn crafted_absolute_name_is_refused() {
    if !common::have("minisign") {
        return;
    }
    let fx = Fixture::new();
    let target = fx.root().join("pwned-absolute");
    let name = target.to_str().unwrap().to_string();
    let c = craft_header(&fx, |m, c| {
        let e = entry_of(m, c);
        ustar(&name, m.chunks[c].length, Kind::Regular, "", e.mode, m.created)
    });
    check_crafted_header(&fx, c, "pwned-absolute", &["an absolute path", &name], &["pwned-absolute"]);
    assert!(!target.exists());
}

#[test]
fn crafted_symlink_is_refused() {
    if !common::have("minisign") {
        return;
    }
    let fx = Fixture::new();
    let victim = fx.root().join("victim");
    std::fs::write(&victim, "victim\n").unwrap();
    let link = victim.to_str().unwrap().to_string();
    let c = craft_header(&fx, |m, c| {
        let e = entry_of(m, c);
        ustar(&stored_name(m, c), m.chunks[c].length, Kind::Symlink, &link, e.mode, m.created)
    });
    check_crafted_header(&fx, c, &format!("-> {link}"), &["symbolic link", &link], &[]);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim\n");
}

#[test]
fn crafted_hard_link_is_refused() {
    if !common::have("minisign") {
        return;
    }
    let fx = Fixture::new();
    let victim = fx.root().join("victim");
    std::fs::write(&victim, "victim\n").unwrap();
    let link = victim.to_str().unwrap().to_string();
    let c = craft_header(&fx, |m, c| {
        let e = entry_of(m, c);
        ustar(&stored_name(m, c), m.chunks[c].length, Kind::HardLink, &link, e.mode, m.created)
    });
    // GNU tar lists the target without its leading '/'.
    check_crafted_header(&fx, c, &format!("link to {}", link.trim_start_matches('/')), &["hard link", &link], &[]);
    let md = std::fs::metadata(&victim).unwrap();
    assert_eq!(md.nlink(), 1, "the victim gained a hard link");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "victim\n");
}

#[test]
fn crafted_char_device_is_refused() {
    if !common::have("minisign") {
        return;
    }
    let fx = Fixture::new();
    let c = craft_header(&fx, |m, c| {
        let e = entry_of(m, c);
        ustar(&stored_name(m, c), m.chunks[c].length, Kind::CharDevice, "", e.mode, m.created)
    });
    let name = stored_name(&fx.manifest(), c);
    // `tar -tv` shows a device as `crw-r--r-- ... 1,3 name`.
    check_crafted_header(&fx, c, "crw", &["a device or fifo", &name], &[]);
}

#[test]
fn crafted_entry_longer_than_the_manifest_says_is_refused() {
    if !common::have("minisign") {
        return;
    }
    let fx = Fixture::new();
    let c = craft_header(&fx, |m, c| {
        let e = entry_of(m, c);
        // Its size field claims the next entry's header and more as its own data.
        ustar(&stored_name(m, c), m.chunks[c].length + 1024, Kind::Regular, "", e.mode, m.created)
    });
    let m = fx.manifest();
    let claimed = m.chunks[c].length + 1024;
    check_crafted_header(
        &fx,
        c,
        &format!(" {claimed} "),
        &["header that differs from the manifest", &format!("size {claimed}")],
        &[],
    );
}

/// An extra entry (header + data) put before the end-of-archive blocks of the last volume.
fn append_extra_entry(fx: &Fixture) -> (u32, u64) {
    let m = fx.manifest();
    let v = m.volumes.len() as u32;
    let path = fx.volume(v);
    let mut bytes = std::fs::read(&path).unwrap();
    let eoa = bytes.len() - 1024;
    assert!(bytes[eoa..].iter().all(|&b| b == 0));
    let data = b"#!/bin/sh\necho pwned\n";
    let mut extra = ustar("files/pwned-extra", data.len() as u64, Kind::Regular, "", 0o755, m.created).to_vec();
    extra.extend_from_slice(data);
    extra.resize(512 + 512, 0);
    bytes.splice(eoa..eoa, extra);
    std::fs::write(&path, bytes).unwrap();
    (v, eoa as u64)
}

#[test]
fn crafted_extra_entry_before_the_end_of_archive_is_refused() {
    if !common::have("minisign") {
        return;
    }
    // The volume's sha256 is re-signed but its size stays what the chunks add up to (a
    // manifest cannot describe bytes outside its chunks): the entry checks must catch it.
    let fx = Fixture::new();
    let (v, at) = append_extra_entry(&fx);
    fx.reseal(false, |_| {});
    if common::have("tar") {
        assert_contains(&tar_listing(&fx.volume(v)), "files/pwned-extra", "a real tar entry");
    }
    let file = format!("{NAME}.{v:04}.tar");
    let r = fx.verify();
    assert_eq!(r.code, 1, "{r:?}");
    assert_contains(&r.stdout, &format!("DAMAGED  {file}"), "names the volume");
    assert_contains(&r.stdout, "'files/pwned-extra' that is not in the manifest", "names the entry");
    let (r, doc) = fx.verify_json();
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(doc["signature"]["valid"], true);
    assert_eq!(doc["sha256sums"]["state"], "ok", "{doc:#}");
    let vol = volume_report(&doc, v);
    assert_eq!(vol["status"], "damaged");
    let p = vol["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["problem"].as_str().unwrap().contains("not in the manifest"))
        .unwrap_or_else(|| panic!("no problem names the extra entry: {doc:#}"));
    assert_eq!(p["offset"], at, "{doc:#}");
    assert_contains(p["problem"].as_str().unwrap(), "files/pwned-extra", "names the entry");
    assert_unpack_refuses(
        &fx.dir,
        &fx.public,
        fx.root(),
        &["not in the manifest", "files/pwned-extra"],
        &["pwned-extra"],
    );

    // With the size re-signed too, the manifest itself no longer adds up.
    let fx = Fixture::new();
    append_extra_entry(&fx);
    fx.reseal(true, |_| {});
    let r = fx.verify();
    assert_eq!(r.code, 1, "{r:?}");
    assert_contains(&r.stderr, &format!("volume '{NAME}.{v:04}.tar' should be"), "says the size is wrong");
    assert_unpack_refuses(&fx.dir, &fx.public, fx.root(), &["manifest is inconsistent"], &["pwned-extra"]);
}

/// A zstd blob whose declared (signed) expanded size is lowered below what it expands to.
pub(crate) fn zstd_bomb(fx: &Fixture) -> (usize, String, u64) {
    let m = fx.manifest();
    let c = (0..m.chunks.len())
        .find(|&c| {
            let e = entry_of(&m, c);
            e.kind == EntryKind::Blob && e.compression == Compression::Zstd && parts_of(&m, c) == 1 && e.size > 100
        })
        .expect("a zstd blob");
    let path = m.chunks[c].entry.clone();
    let declared = entry_of(&m, c).size / 2;
    fx.reseal(true, |m| {
        m.entries.iter_mut().find(|e| e.path == path).unwrap().size = declared;
    });
    (c, path, declared)
}

#[test]
fn crafted_zstd_stream_expanding_past_its_declared_size_is_refused_by_unpack() {
    if !common::have("minisign") {
        return;
    }
    let fx = Fixture::new();
    let (_, path, declared) = zstd_bomb(&fx);
    assert_unpack_refuses(
        &fx.dir,
        &fx.public,
        fx.root(),
        &["expands past its declared size", &path, &format!("{declared} bytes")],
        &[],
    );
    // Nothing half-written in the store.
    for out in ["layout", "layout-json"] {
        let blob = fx.root().join(out).join(&path);
        assert!(!blob.exists(), "{} was committed", blob.display());
        let tmp = fx.root().join(out).join(".airlift/tmp");
        if tmp.exists() {
            assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "temp files left in {}", tmp.display());
        }
    }
}

#[test]
fn crafted_split_zstd_stream_expanding_past_its_declared_size_is_refused_by_unpack() {
    if !common::have("minisign") {
        return;
    }
    // A stream stored in parts is expanded once all parts are in: that path is bounded too.
    let fx = Fixture::with_notes();
    let m = fx.manifest();
    let notes = m.entries.iter().find(|e| e.path == "files/notes.txt").expect("files/notes.txt");
    assert_eq!(notes.compression, Compression::Zstd);
    assert!(m.chunks.iter().filter(|c| c.entry == notes.path).count() > 1, "notes.txt should be split");
    let declared = notes.size / 2;
    fx.reseal(true, |m| {
        m.entries.iter_mut().find(|e| e.path == "files/notes.txt").unwrap().size = declared;
    });
    let words = ["expands past its declared size", "files/notes.txt", &format!("{declared} bytes")];
    assert_unpack_refuses(&fx.dir, &fx.public, fx.root(), &words, &[]);
    // A second run (which resumes from the journal) refuses again and commits nothing.
    let out = fx.root().join("layout");
    let r = unpack(&fx.dir, &fx.public, &out, false);
    assert_eq!(r.code, 1, "{r:?}");
    assert_contains(&r.text(), "files/notes.txt", "names the entry");
    for out in ["layout", "layout-json"] {
        let file = fx.root().join(out).join("files/notes.txt");
        assert!(!file.exists(), "{} was committed", file.display());
    }
}

#[test]
fn crafted_zstd_stream_expanding_past_its_declared_size_is_refused_by_verify() {
    if !common::have("minisign") {
        return;
    }
    // The gate must not pass what unpack will refuse: verify has to bound the expansion too.
    let fx = Fixture::new();
    let (c, path, _) = zstd_bomb(&fx);
    let r = fx.verify();
    assert_eq!(r.code, 1, "verify passed a zstd entry that expands past its signed size (unpack refuses it): {r:?}");
    assert_contains(&r.text(), &path, "names the entry");
    assert_contains(&r.text(), "expands past its declared size", "says why");
    let (r, doc) = fx.verify_json();
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(chunk_problem(&doc, fx.manifest().chunks[c].volume, c)["entry"], path.as_str());
}

#[test]
fn a_manifest_listing_a_traversal_or_absolute_entry_path_is_refused() {
    if !common::have("minisign") {
        return;
    }
    for (evil, kind) in
        [("../evil", EntryKind::Blob), ("/etc/x", EntryKind::Layout), ("files/../../evil", EntryKind::File)]
    {
        let fx = Fixture::new();
        let m = fx.manifest();
        let c = pick_chunk(&m, 2, whole_plain_blob);
        let old = m.chunks[c].entry.clone();
        fx.reseal(true, |m| {
            let e = m.entries.iter_mut().find(|e| e.path == old).unwrap();
            e.path = evil.to_string();
            e.kind = kind;
            for ch in m.chunks.iter_mut().filter(|ch| ch.entry == old) {
                ch.entry = evil.to_string();
            }
            for image in &mut m.images {
                image.blobs.retain(|b| format!("blobs/sha256/{}", b.hex()) != old);
            }
        });
        let words = [&format!("manifest entry '{evil}'") as &str, "has a name airlift never generates"];
        assert_refused_before_reading(&fx, &fx.public, &words);
        let out = fx.root().join("layout");
        let r = unpack(&fx.dir, &fx.public, &out, true);
        assert_eq!(r.code, 1, "{evil}: {r:?}");
        assert_contains(r.json()["error"].as_str().unwrap(), "never generates", evil);
        assert!(!out.exists(), "{evil}: unpack created its layout for a manifest it refused");
        assert!(!fx.root().join("evil").exists() && !fx.tmp.path().parent().unwrap().join("evil").exists());
    }
}

/// A signer (a stolen key, or a buggy packer) lists the parts of a split plain blob with
/// their own sha256s right, but they do not add up to the blob's digest. Returns the blob's
/// entry path.
fn split_blob_with_wrong_parts(fx: &Fixture) -> String {
    let m = fx.manifest();
    let c = (0..m.chunks.len())
        .find(|&c| {
            let e = entry_of(&m, c);
            e.kind == EntryKind::Blob && e.compression == Compression::None && parts_of(&m, c) > 1
        })
        .expect("a split plain blob");
    let chunk = m.chunks[c].clone();
    let vol = fx.volume(chunk.volume);
    flip(&vol, chunk.offset + 3);
    let bytes = std::fs::read(&vol).unwrap();
    let new_sha = Digest::of(&bytes[chunk.offset as usize..(chunk.offset + chunk.length) as usize]);
    fx.reseal(true, |m| m.chunks[c].sha256 = new_sha.clone());
    entry_of(&m, c).path.clone()
}

#[test]
fn a_split_blob_whose_parts_do_not_hash_to_its_digest_is_never_committed_by_unpack() {
    if !common::have("minisign") {
        return;
    }
    // The blob store is content-addressed: `blobs/sha256/X` must never hold bytes that do
    // not hash to X (single-chunk blobs are held to this by the manifest check, zstd
    // entries by the expansion check; split plain blobs must be too).
    let fx = Fixture::new();
    let blob = split_blob_with_wrong_parts(&fx);
    let out = fx.root().join("layout");
    let r = unpack(&fx.dir, &fx.public, &out, false);
    let committed = out.join(&blob);
    if committed.exists() {
        let digest = Digest::of(&std::fs::read(&committed).unwrap());
        assert_eq!(
            format!("blobs/sha256/{}", digest.hex()),
            blob,
            "unpack committed {} whose content hashes to {digest}; {r:?}",
            committed.display(),
        );
    }
    assert_eq!(r.code, 1, "{r:?}");
    assert_contains(&r.text(), &blob, "names the blob");
}

#[test]
fn a_split_blob_whose_parts_do_not_hash_to_its_digest_is_refused_by_verify_deep() {
    if !common::have("minisign") {
        return;
    }
    // Every part matches its signed chunk hash, so plain verify (which checks what is on
    // the media against the signature) passes; `--deep` checks whole files as unpack does
    // and must refuse what unpack refuses.
    let fx = Fixture::new();
    let blob = split_blob_with_wrong_parts(&fx);
    assert_eq!(fx.verify().code, 0);
    let out = common::airlift().arg("verify").arg(&fx.dir).arg("--key").arg(&fx.public).arg("--deep").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "verify --deep passed a split blob whose parts do not hash to its digest");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_contains(&text, &blob, "names the blob");
    assert_contains(&text, "assembled from its parts", "says why");
}

#[test]
fn verify_deep_passes_a_good_bundle() {
    let fx = Fixture::new();
    let out = common::airlift().arg("verify").arg(&fx.dir).arg("--key").arg(&fx.public).arg("--deep").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}
