//! Bundle format v1 as the README and DESIGN.md promise it, checked from the outside with
//! stock tools: volume sizes and tar framing (GNU tar), split blobs, determinism, minisign
//! and sha256sum at the gate, the README's recovery-by-hand recipe (bash, tar, cat, zstd,
//! sha256sum, then skopeo and umoci), the carried installer, `--include`, `--json`,
//! `--media` presets and usage errors.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::common;

const LAYOUT_REFS: [&str; 4] = ["app-00", "app-00-latest", "app-01", "multi"];

// ---------------------------------------------------------------------------------------
// helpers

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(out: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// A fresh key pair `DIR/NAME.key`, `DIR/NAME.pub`.
fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let out = common::airlift().args(["keygen", "--out"]).arg(dir).args(["--name", name]).output().unwrap();
    assert!(out.status.success(), "keygen: {}", describe(&out));
    (dir.join(format!("{name}.key")), dir.join(format!("{name}.pub")))
}

/// `airlift pack --key KEY --out OUT --name NAME ARGS... oci:testdata/layout`
fn pack_cmd(key: &Path, out: &Path, name: &str, args: &[&str]) -> assert_cmd::Command {
    let mut cmd = common::airlift();
    cmd.arg("pack").arg("--key").arg(key).arg("--out").arg(out).args(["--name", name]).args(args);
    cmd
}

fn layout_source() -> String {
    format!("oci:{}", common::testdata("layout").display())
}

fn pack_ok(key: &Path, out: &Path, name: &str, args: &[&str]) {
    let o = pack_cmd(key, out, name, args).arg(layout_source()).output().unwrap();
    assert!(o.status.success(), "pack {args:?}: {}", describe(&o));
}

fn manifest(dir: &Path, name: &str) -> Value {
    let path = dir.join(format!("{name}.manifest.json"));
    serde_json::from_slice(&fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("manifest is JSON")
}

/// The volume files of a bundle, in order, checked to be numbered 0001, 0002, … without gaps.
fn volume_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.starts_with(&format!("{name}.")) && f.ends_with(".tar"))
        .collect();
    found.sort();
    for (i, f) in found.iter().enumerate() {
        assert_eq!(f, &format!("{name}.{:04}.tar", i + 1), "volume files are numbered without gaps: {found:?}");
    }
    found.into_iter().map(|f| dir.join(f)).collect()
}

/// One line of `tar -tvf`: type character, size, name.
#[derive(Debug, Clone)]
struct TarEntry {
    kind: char,
    mode: String,
    size: u64,
    name: String,
}

/// `tar -tvf VOLUME`, which must succeed without a word on stderr.
fn tar_list(volume: &Path) -> Vec<TarEntry> {
    let out = Command::new("tar").env("LC_ALL", "C").arg("-tvf").arg(volume).output().expect("run tar");
    assert!(out.status.success() && out.stderr.is_empty(), "tar -tvf {}: {}", volume.display(), describe(&out));
    let plain = Command::new("tar").env("LC_ALL", "C").arg("-tf").arg(volume).output().expect("run tar");
    assert!(plain.status.success() && plain.stderr.is_empty(), "tar -tf {}: {}", volume.display(), describe(&plain));
    let entries: Vec<TarEntry> = text(&out.stdout)
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 6, "unexpected tar -tvf line (names never contain spaces): {line:?}");
            TarEntry {
                kind: f[0].chars().next().unwrap(),
                mode: f[0][1..].to_string(),
                size: f[2].parse().unwrap_or_else(|_| panic!("size in {line:?}")),
                name: f[5].to_string(),
            }
        })
        .collect();
    let names: Vec<String> = text(&plain.stdout).lines().map(String::from).collect();
    assert_eq!(names, entries.iter().map(|e| e.name.clone()).collect::<Vec<_>>(), "tar -tf and tar -tvf agree");
    entries
}

/// Entry path → (compression, kind, number of chunks) from the manifest.
fn entries_by_path(m: &Value) -> BTreeMap<String, (String, String, usize)> {
    let mut map = BTreeMap::new();
    for e in m["entries"].as_array().unwrap() {
        let path = e["path"].as_str().unwrap().to_string();
        let n = m["chunks"].as_array().unwrap().iter().filter(|c| c["entry"] == e["path"]).count();
        map.insert(path, (e["compression"].as_str().unwrap().into(), e["kind"].as_str().unwrap().into(), n));
    }
    map
}

/// The tar name the README's recipe expects for a chunk: path, `.zst`, `.partNNNN`.
fn expected_stored_name(entries: &BTreeMap<String, (String, String, usize)>, chunk: &Value) -> String {
    let path = chunk["entry"].as_str().unwrap();
    let (compression, _, parts) = &entries[path];
    let mut name = path.to_string();
    if compression == "zstd" {
        name.push_str(".zst");
    }
    if *parts > 1 {
        name.push_str(&format!(".part{:04}", chunk["part"].as_u64().unwrap() + 1));
    }
    name
}

/// Digests (hex) of every blob the source layout's images reference, walked from index.json.
fn referenced_blobs(layout: &Path) -> BTreeSet<String> {
    fn hex(desc: &Value) -> String {
        desc["digest"].as_str().unwrap().strip_prefix("sha256:").unwrap().to_string()
    }
    fn walk(layout: &Path, desc: &Value, out: &mut BTreeSet<String>) {
        let h = hex(desc);
        if !out.insert(h.clone()) {
            return;
        }
        let media = desc["mediaType"].as_str().unwrap_or("");
        if media.contains("index") || media.contains("manifest") {
            let doc: Value = serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(&h)).unwrap()).unwrap();
            for child in doc["manifests"].as_array().into_iter().flatten() {
                walk(layout, child, out);
            }
            if doc.get("config").is_some() {
                walk(layout, &doc["config"], out);
            }
            for layer in doc["layers"].as_array().into_iter().flatten() {
                walk(layout, layer, out);
            }
        }
    }
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let mut out = BTreeSet::new();
    for desc in index["manifests"].as_array().unwrap() {
        walk(layout, desc, &mut out);
    }
    out
}

/// (ref name → (digest, media type)) of the source layout's index.json.
fn source_refs() -> BTreeMap<String, (String, String)> {
    let index: Value = serde_json::from_slice(&fs::read(common::testdata("layout/index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["annotations"]["org.opencontainers.image.ref.name"].as_str().unwrap().to_string(),
                (d["digest"].as_str().unwrap().to_string(), d["mediaType"].as_str().unwrap().to_string()),
            )
        })
        .collect()
}

/// A deterministic text file of `len` bytes that compresses well but not to nothing
/// (lines of pseudo-random hex digits): stored as `.zst`, and split at small chunk sizes.
fn hex_text(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(format!("{x:016x}").as_bytes());
        if out.len() % 65 == 64 {
            out.push(b'\n');
        }
    }
    out.truncate(len);
    out
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        assert!(e.file_type().unwrap().is_file(), "a bundle directory holds files only: {:?}", e.path());
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Parse a `--json` run's stdout: it must be exactly one JSON document.
fn one_json_document(out: &Output) -> Value {
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not exactly one JSON document ({e}): {}", describe(out)));
    assert!(doc.is_object(), "the JSON document is an object: {doc}");
    assert_eq!(
        doc["exit_code"].as_i64(),
        out.status.code().map(i64::from),
        "exit_code in the JSON document is the process exit code: {}",
        describe(out)
    );
    doc
}

// ---------------------------------------------------------------------------------------
// 1. volume sizes, tar framing, split blobs

#[test]
fn volumes_never_exceed_the_volume_size_and_are_plain_tar_of_regular_files() {
    if !common::have("tar") {
        return;
    }
    let tmp = common::tempdir();
    let (key, _) = keygen(&tmp.path().join("keys"), "site");
    let source_blobs = referenced_blobs(&common::testdata("layout"));
    // (volume size, chunk size): powers of two, the minimum volume, odd sizes that are
    // not multiples of the tar block, and chunks larger than a whole volume.
    let cases: [(&str, u64, &str, u64); 8] = [
        ("65536", 65536, "16KiB", 16384),
        ("16KiB", 16384, "4096", 4096),
        ("16384", 16384, "64MiB", 64 << 20),
        ("70001", 70001, "4096", 4096),
        ("70001", 70001, "16KiB", 16384),
        ("70001", 70001, "7001", 7001),
        ("32KiB", 32768, "1MiB", 1 << 20),
        ("100000", 100_000, "12345", 12345),
    ];
    for (vs_arg, vs, cs_arg, cs) in cases {
        let case = format!("--volume-size {vs_arg} --chunk-size {cs_arg}");
        let out = tmp.path().join(format!("b-{vs}-{cs}"));
        pack_ok(&key, &out, "ocp", &["--no-installer", "--volume-size", vs_arg, "--chunk-size", cs_arg]);
        let m = manifest(&out, "ocp");
        assert_eq!(m["volume_size"].as_u64(), Some(vs), "{case}");
        assert_eq!(m["chunk_size"].as_u64(), Some(cs), "{case}");
        let volumes = volume_files(&out, "ocp");
        assert!(volumes.len() > 1, "{case}: the test data spans several volumes, got {}", volumes.len());
        assert_eq!(volumes.len(), m["volumes"].as_array().unwrap().len(), "{case}: volume files = manifest volumes");
        let entries = entries_by_path(&m);
        let chunks = m["chunks"].as_array().unwrap();

        let mut part_entries = 0;
        for (v, volume) in volumes.iter().enumerate() {
            let size = fs::metadata(volume).unwrap().len();
            assert!(size <= vs, "{case}: {} is {size} bytes, more than the volume size {vs}", volume.display());
            assert_eq!(size % 512, 0, "{case}: {} is whole tar blocks", volume.display());
            assert_eq!(m["volumes"][v]["size"].as_u64(), Some(size), "{case}: manifest size of {}", volume.display());

            let listed = tar_list(volume);
            assert!(!listed.is_empty(), "{case}: {} lists entries", volume.display());
            assert_eq!(
                listed[0].name,
                format!("airlift/volume.{:04}.json", v + 1),
                "{case}: volume starts with its label"
            );
            for e in &listed {
                assert_eq!(e.kind, '-', "{case}: {} in {} is not a regular file", e.name, volume.display());
                assert!(e.mode == "rw-r--r--" || e.mode == "rwxr-xr-x", "{case}: mode {} of {}", e.mode, e.name);
                assert!(e.size <= cs, "{case}: entry {} of {} bytes exceeds the chunk size {cs}", e.name, e.size);
                assert!(!e.name.starts_with('/') && !e.name.split('/').any(|c| c == ".."), "{case}: name {}", e.name);
            }
            part_entries += listed.iter().filter(|e| e.name.contains(".part")).count();

            // What tar lists is exactly the manifest's chunk map for this volume, in order.
            let in_manifest: Vec<(String, u64)> = chunks
                .iter()
                .filter(|c| c["volume"].as_u64() == Some(v as u64 + 1))
                .map(|c| (expected_stored_name(&entries, c), c["length"].as_u64().unwrap()))
                .collect();
            let in_tar: Vec<(String, u64)> = listed.iter().map(|e| (e.name.clone(), e.size)).collect();
            assert_eq!(in_tar, in_manifest, "{case}: tar listing of {} vs manifest chunks", volume.display());
        }
        assert!(part_entries > 0, "{case}: some entries are stored as .partNNNN");

        // Blobs larger than a chunk are split; some blob crosses a volume boundary.
        let mut crossing = Vec::new();
        for e in m["entries"].as_array().unwrap() {
            let path = e["path"].as_str().unwrap();
            let its: Vec<&Value> = chunks.iter().filter(|c| c["entry"] == e["path"]).collect();
            let stored = e["stored_size"].as_u64().unwrap();
            if stored > cs {
                assert!(its.len() > 1, "{case}: {path} ({stored} stored bytes) is larger than a chunk but not split");
            }
            let vols: BTreeSet<u64> = its.iter().map(|c| c["volume"].as_u64().unwrap()).collect();
            if vols.len() > 1 {
                crossing.push(path.to_string());
            }
        }
        assert!(
            crossing.iter().any(|p| p.starts_with("blobs/sha256/")),
            "{case}: some blob is split across volumes (crossing: {crossing:?})"
        );

        // Every referenced source blob is in the bundle.
        let packed: BTreeSet<String> =
            entries.keys().filter_map(|p| p.strip_prefix("blobs/sha256/")).map(String::from).collect();
        assert_eq!(packed, source_blobs, "{case}: the bundle holds exactly the referenced blobs");
    }
}

#[test]
fn a_blob_larger_than_the_chunk_size_is_split_into_parts_that_cat_back_together() {
    if !common::have("tar") {
        return;
    }
    let tmp = common::tempdir();
    let (key, _) = keygen(&tmp.path().join("keys"), "site");
    let out = tmp.path().join("bundle");
    // One big volume: blobs are split because of the chunk size alone.
    pack_ok(&key, &out, "ocp", &["--no-installer", "--volume-size", "1MiB", "--chunk-size", "4KiB"]);
    let volumes = volume_files(&out, "ocp");
    assert_eq!(volumes.len(), 1);
    let listed = tar_list(&volumes[0]);
    // The 30,743-byte base layer is 8 parts of at most 4 KiB.
    let base = "c131685cc4eb5f80c6f816e4aaee6eaf73a97cac0fa16502abfb7738b3760239";
    let parts: Vec<&TarEntry> =
        listed.iter().filter(|e| e.name.starts_with(&format!("blobs/sha256/{base}.part"))).collect();
    assert_eq!(parts.len(), 8, "{listed:?}");
    for (i, p) in parts.iter().enumerate() {
        assert_eq!(p.name, format!("blobs/sha256/{base}.part{:04}", i + 1));
        assert!(p.size <= 4096);
    }
    let x = tmp.path().join("x");
    fs::create_dir_all(&x).unwrap();
    common::run_ok(Command::new("tar").arg("-xf").arg(&volumes[0]).arg("-C").arg(&x));
    let mut joined = Vec::new();
    for p in &parts {
        joined.extend(fs::read(x.join(&p.name)).unwrap());
    }
    assert_eq!(joined, fs::read(common::testdata("layout/blobs/sha256").join(base)).unwrap());
}

// ---------------------------------------------------------------------------------------
// 2. determinism

#[test]
fn packing_twice_gives_byte_identical_bundles_and_the_sequence_changes_the_id() {
    let tmp = common::tempdir();
    let (key, _) = keygen(&tmp.path().join("keys"), "site");
    let notes = tmp.path().join("notes.txt");
    fs::write(&notes, hex_text(40_000)).unwrap();
    let pack = |dir: &str, sequence: &str| -> PathBuf {
        let out = tmp.path().join(dir);
        let o = pack_cmd(&key, &out, "ocp", &["--no-installer", "--volume-size", "64KiB", "--chunk-size", "16KiB"])
            .args(["--sequence", sequence, "--include"])
            .arg(&notes)
            .arg(layout_source())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert!(o.status.success(), "pack into {dir}: {}", describe(&o));
        out
    };
    let a = pack("a", "7");
    let b = pack("b", "7");
    let (ca, cb) = (common::dir_contents(&a), common::dir_contents(&b));
    assert_eq!(ca.keys().collect::<Vec<_>>(), cb.keys().collect::<Vec<_>>(), "same file names");
    for name in [
        "ocp.manifest.json",
        "ocp.manifest.json.minisig",
        "ocp.SHA256SUMS",
        "ocp.SHA256SUMS.minisig",
        "ocp.0001.tar",
        "ocp.0002.tar",
    ] {
        assert!(ca.contains_key(name), "{name} is in the bundle: {:?}", ca.keys());
    }
    for (name, bytes) in &ca {
        assert!(bytes == &cb[name], "{name} differs between two packs of the same inputs");
    }

    // The creation time is SOURCE_DATE_EPOCH, in the manifest and in every tar header.
    let m = manifest(&a, "ocp");
    assert_eq!(m["created"].as_u64(), Some(1_700_000_000));
    // (An expiry counts from now, so it is left out of this reproducible pair.)
    assert!(m["expires"].is_null());
    assert_eq!(m["sequence"].as_u64(), Some(7));
    for c in m["chunks"].as_array().unwrap() {
        let vol = &ca[&format!("ocp.{:04}.tar", c["volume"].as_u64().unwrap())];
        let at = c["offset"].as_u64().unwrap() as usize - 512;
        let header = &vol[at..at + 512];
        assert_eq!(&header[257..262], b"ustar", "ustar header before chunk {c}");
        let mtime = std::str::from_utf8(&header[136..148]).unwrap().trim_matches(|ch: char| ch == '\0' || ch == ' ');
        assert_eq!(u64::from_str_radix(mtime, 8).unwrap(), 1_700_000_000, "mtime of the entry of chunk {c}");
    }

    // Another sequence number is another bundle.
    let c = pack("c", "8");
    let mc = manifest(&c, "ocp");
    assert_eq!(mc["sequence"].as_u64(), Some(8));
    assert_ne!(m["id"], mc["id"], "a different sequence gives a different bundle id");
    assert_ne!(common::dir_contents(&c)["ocp.manifest.json"], ca["ocp.manifest.json"]);
}

#[test]
fn bundles_with_different_content_have_different_ids_and_their_volumes_are_foreign_to_each_other() {
    // The id is "derived from the bundle's inputs" and the volume labels carry it, so a
    // volume of another bundle is recognised as foreign. Included files (and the installer)
    // are inputs too, and so is the signed expiry.
    let tmp = common::tempdir();
    let (key, public) = keygen(&tmp.path().join("keys"), "site");
    let notes = tmp.path().join("notes.txt");
    let pack = |dir: &str, content: &[u8], extra: &[&str]| -> (PathBuf, Value) {
        fs::write(&notes, content).unwrap();
        let out = tmp.path().join(dir);
        let o = pack_cmd(&key, &out, "ocp", &["--no-installer", "--volume-size", "1MiB"])
            .args(extra)
            .arg("--include")
            .arg(&notes)
            .arg(layout_source())
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .output()
            .unwrap();
        assert!(o.status.success(), "pack into {dir}: {}", describe(&o));
        let m = manifest(&out, "ocp");
        (out, m)
    };
    let (a, ma) = pack("a", b"release 1.0\n", &[]);
    let (b, mb) = pack("b", b"release 2.0\n", &[]);
    let (_, mc) = pack("c", b"release 1.0\n", &["--expires", "30d"]);
    assert_ne!(ma["entries"], mb["entries"], "the two bundles carry different files");
    assert_ne!(ma["id"], mb["id"], "bundles with different included files share the id {}", ma["id"]);
    assert_ne!(ma["id"], mc["id"], "bundles with different expiry share the id {}", ma["id"]);

    // b's volume next to a's manifest is another bundle's volume, not a damaged one of a's.
    let mixed = tmp.path().join("mixed");
    fs::create_dir_all(&mixed).unwrap();
    for f in ["ocp.manifest.json", "ocp.manifest.json.minisig", "ocp.SHA256SUMS", "ocp.SHA256SUMS.minisig"] {
        fs::copy(a.join(f), mixed.join(f)).unwrap();
    }
    fs::copy(b.join("ocp.0001.tar"), mixed.join("ocp.0001.tar")).unwrap();
    let o = common::airlift().arg("verify").arg(&mixed).arg("--key").arg(&public).arg("--json").output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", describe(&o));
    let doc = one_json_document(&o);
    assert_eq!(doc["volumes"][0]["status"], "foreign", "a volume of another bundle: {}", doc["volumes"]);
}

// ---------------------------------------------------------------------------------------
// 3. stock minisign and sha256sum at the gate

#[test]
fn stock_minisign_and_sha256sum_verify_the_bundle() {
    if !common::have("minisign") || !common::have("sha256sum") {
        return;
    }
    let tmp = common::tempdir();
    let (key, public) = keygen(&tmp.path().join("keys"), "site");
    let (_, other_public) = keygen(&tmp.path().join("keys"), "other");
    let out = tmp.path().join("bundle");
    pack_ok(&key, &out, "ocp", &["--no-installer", "--volume-size", "64KiB", "--chunk-size", "16KiB"]);
    assert!(volume_files(&out, "ocp").len() > 1);

    let minisign = |dir: &Path, file: &str, public: &Path| -> Output {
        Command::new("minisign")
            .current_dir(dir)
            .args(["-V", "-m", file, "-p"])
            .arg(public)
            .output()
            .expect("run minisign")
    };
    for file in ["ocp.manifest.json", "ocp.SHA256SUMS"] {
        let ok = minisign(&out, file, &public);
        assert!(ok.status.success(), "minisign -Vm {file}: {}", describe(&ok));
        let said = text(&ok.stdout) + &text(&ok.stderr);
        assert!(said.contains("Signature and comment signature verified"), "{said}");
        let m = manifest(&out, "ocp");
        assert!(said.contains(m["id"].as_str().unwrap()), "the trusted comment carries the bundle id: {said}");

        let wrong = minisign(&out, file, &other_public);
        assert!(!wrong.status.success(), "minisign accepts {file} with another key: {}", describe(&wrong));
    }

    // Tampered copies fail.
    let bad = tmp.path().join("tampered");
    copy_dir(&out, &bad);
    let mut bytes = fs::read(bad.join("ocp.manifest.json")).unwrap();
    let pos = bytes.iter().position(|&b| b == b'"').unwrap();
    bytes.insert(pos, b' ');
    fs::write(bad.join("ocp.manifest.json"), &bytes).unwrap();
    let mut sums = fs::read_to_string(bad.join("ocp.SHA256SUMS")).unwrap();
    sums.push_str(&format!("{}  ocp.0009.tar\n", "0".repeat(64)));
    fs::write(bad.join("ocp.SHA256SUMS"), sums).unwrap();
    for file in ["ocp.manifest.json", "ocp.SHA256SUMS"] {
        let o = minisign(&bad, file, &public);
        assert!(!o.status.success(), "minisign accepts a tampered {file}: {}", describe(&o));
    }

    // sha256sum -c in the bundle directory checks every volume.
    let sums = fs::read_to_string(out.join("ocp.SHA256SUMS")).unwrap();
    let listed: Vec<&str> = sums.lines().map(|l| l.split_once("  ").expect("sha256sum format").1).collect();
    let volumes: Vec<String> =
        volume_files(&out, "ocp").iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(listed, volumes, "SHA256SUMS lists every volume");
    let ok = Command::new("sha256sum").current_dir(&out).args(["-c", "ocp.SHA256SUMS"]).output().unwrap();
    assert!(ok.status.success(), "sha256sum -c: {}", describe(&ok));
    assert_eq!(text(&ok.stdout).lines().filter(|l| l.ends_with(": OK")).count(), volumes.len());

    let damaged = tmp.path().join("damaged");
    copy_dir(&out, &damaged);
    let vol = damaged.join("ocp.0002.tar");
    let mut bytes = fs::read(&vol).unwrap();
    bytes[2000] ^= 0x40;
    fs::write(&vol, bytes).unwrap();
    let bad = Command::new("sha256sum").current_dir(&damaged).args(["-c", "ocp.SHA256SUMS"]).output().unwrap();
    assert!(!bad.status.success(), "sha256sum -c accepts a damaged volume: {}", describe(&bad));
    assert!(text(&bad.stdout).contains("ocp.0002.tar: FAILED"), "{}", describe(&bad));
}

// ---------------------------------------------------------------------------------------
// 4. the README's recovery recipe

/// The shell block starting with `# recovery` in README.md's "Recovering by hand" section.
fn readme_recovery_recipe() -> String {
    let readme = fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find("\n## Recovering by hand").expect("README.md has a 'Recovering by hand' section");
    let section = &readme[start + 1..];
    let section = match section[3..].find("\n## ") {
        Some(end) => &section[..end + 3],
        None => section,
    };
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line.trim_start().starts_with("```") {
            let mut block = Vec::new();
            for l in lines.by_ref() {
                if l.trim_start().starts_with("```") {
                    break;
                }
                block.push(l);
            }
            if block.first().map(|l| l.trim()) == Some("# recovery") {
                return block.join("\n") + "\n";
            }
        }
    }
    panic!("no code block starting with '# recovery' in README.md's 'Recovering by hand' section");
}

#[test]
fn the_readme_recovery_recipe_turns_volumes_into_an_oci_layout_skopeo_and_umoci_read() {
    for tool in ["bash", "tar", "zstd", "sha256sum", "skopeo", "umoci"] {
        if !common::have(tool) {
            return;
        }
    }
    let recipe = readme_recovery_recipe();
    assert!(recipe.contains("tar -xf") && recipe.contains("zstd"), "the recipe: {recipe}");
    let tmp = common::tempdir();
    let (key, _) = keygen(&tmp.path().join("keys"), "site");
    // A compressible included file larger than a chunk: stored as NAME.zst.partNNNN, so
    // the recipe must join before it expands.
    let notes = tmp.path().join("notes.txt");
    let notes_bytes = hex_text(100_000);
    fs::write(&notes, &notes_bytes).unwrap();
    let packed = tmp.path().join("packed");
    let o = pack_cmd(&key, &packed, "ocp", &["--no-installer", "--volume-size", "64KiB", "--chunk-size", "16KiB"])
        .arg("--include")
        .arg(&notes)
        .arg(layout_source())
        .output()
        .unwrap();
    assert!(o.status.success(), "pack: {}", describe(&o));
    let volumes = volume_files(&packed, "ocp");
    assert!(volumes.len() > 1, "a multi-volume bundle");
    let all_names: Vec<String> = volumes.iter().flat_map(|v| tar_list(v)).map(|e| e.name).collect();
    assert!(all_names.iter().any(|n| n.contains(".zst.part")), "some entry is compressed and split: {all_names:?}");
    assert!(all_names.iter().any(|n| n.starts_with("blobs/") && n.contains(".part")), "some blob is split");

    let bundle = tmp.path().join("copy");
    copy_dir(&packed, &bundle);
    let script = tmp.path().join("recovery.sh");
    fs::write(&script, &recipe).unwrap();
    let out = Command::new("bash").arg(&script).current_dir(&bundle).output().unwrap();
    assert!(out.status.success(), "the README's recovery recipe failed: {}\nrecipe:\n{recipe}", describe(&out));

    let layout = bundle.join("layout");
    let source = common::testdata("layout");
    // Nothing of the bundle's own framing is left.
    for entry in walk_files(&layout) {
        let rel = entry.strip_prefix(&layout).unwrap().to_string_lossy().into_owned();
        assert!(!rel.contains(".part") && !rel.ends_with(".zst"), "leftover {rel}");
        assert!(!rel.starts_with("airlift/"), "leftover {rel}");
    }
    assert_eq!(fs::read(layout.join("files/notes.txt")).unwrap(), notes_bytes, "the included file");
    let marker: Value = serde_json::from_slice(&fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(marker["imageLayoutVersion"], "1.0.0");

    // Every blob the source's images reference, byte for byte; nothing else.
    let wanted = referenced_blobs(&source);
    let got: BTreeSet<String> = fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(got, wanted, "recovered blobs");
    for hex in &wanted {
        let a = fs::read(source.join("blobs/sha256").join(hex)).unwrap();
        let b = fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
        assert!(a == b, "blob {hex} differs after recovery");
    }

    // skopeo reads every reference, with the source's digests.
    let refs = source_refs();
    assert_eq!(refs.keys().map(String::as_str).collect::<Vec<_>>(), LAYOUT_REFS);
    for (name, (digest, _)) in &refs {
        let image = format!("oci:{}:{name}", layout.display());
        let raw = common::run_ok(Command::new("skopeo").args(["inspect", "--raw", &image]));
        assert_eq!(format!("sha256:{}", sha256_hex(raw.as_bytes())), *digest, "skopeo inspect --raw {image}");
        let info: Value = serde_json::from_str(&common::run_ok(Command::new("skopeo").args(["inspect", &image])))
            .expect("skopeo inspect prints JSON");
        assert_eq!(info["Digest"].as_str(), Some(digest.as_str()), "skopeo inspect {image}");
    }

    // umoci lists the refs and reads every image manifest (umoci 0.4 cannot stat an
    // index: it calls a multi-platform tag ambiguous, on the source layout too).
    let listed = common::run_ok(Command::new("umoci").arg("ls").arg("--layout").arg(&layout));
    let listed: BTreeSet<&str> = listed.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    assert_eq!(listed, LAYOUT_REFS.into_iter().collect::<BTreeSet<_>>(), "umoci ls");
    let mut statted = 0;
    for (name, (digest, media_type)) in &refs {
        if !media_type.contains("manifest") {
            continue;
        }
        let stat = common::run_ok(
            Command::new("umoci").arg("stat").arg("--image").arg(format!("{}:{name}", layout.display())),
        );
        let manifest: Value = serde_json::from_slice(
            &fs::read(source.join("blobs/sha256").join(digest.strip_prefix("sha256:").unwrap())).unwrap(),
        )
        .unwrap();
        for layer in manifest["layers"].as_array().unwrap() {
            let d = layer["digest"].as_str().unwrap();
            assert!(stat.contains(d), "umoci stat {name} lists layer {d}:\n{stat}");
        }
        statted += 1;
    }
    assert_eq!(statted, 3, "app-00, app-00-latest and app-01 are image manifests");
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_files(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// 5. the carried installer and included files

#[test]
fn the_carried_installer_comes_out_with_plain_tar_static_and_runnable() {
    if !common::have("tar") || !common::have("file") {
        return;
    }
    let tmp = common::tempdir();
    let (key, _) = keygen(&tmp.path().join("keys"), "site");
    let out = tmp.path().join("bundle");
    let exe_size = fs::metadata(common::airlift_path()).unwrap().len();
    // Room for the whole executable in the first volume.
    let volume_size = (exe_size + (4 << 20)).max(8 << 20).to_string();
    pack_ok(&key, &out, "ocp", &["--volume-size", &volume_size]);

    let m = manifest(&out, "ocp");
    let installer =
        m["entries"].as_array().unwrap().iter().find(|e| e["path"] == "files/airlift").expect("installer entry");
    assert_eq!(installer["kind"], "installer");
    assert_eq!(installer["compression"], "none", "stored uncompressed");
    assert_eq!(installer["mode"].as_u64(), Some(0o755));
    let first = &volume_files(&out, "ocp")[0];
    let listed = tar_list(first);
    let entry = listed.iter().find(|e| e.name == "files/airlift").expect("files/airlift is in the first volume, whole");
    assert_eq!((entry.kind, entry.mode.as_str(), entry.size), ('-', "rwxr-xr-x", exe_size));

    let x = tmp.path().join("x");
    fs::create_dir_all(&x).unwrap();
    common::run_ok(Command::new("tar").current_dir(&x).arg("-xf").arg(first).arg("files/airlift"));
    let extracted = x.join("files/airlift");
    assert_eq!(fs::read(&extracted).unwrap(), fs::read(common::airlift_path()).unwrap(), "the running executable");
    let mode = fs::metadata(&extracted).unwrap().permissions().mode();
    assert!(mode & 0o111 == 0o111, "extracted installer is executable (mode {mode:o})");

    let file = common::run_ok(Command::new("file").arg("-b").arg(&extracted));
    assert!(file.contains("ELF"), "file: {file}");
    assert!(file.contains("static"), "file says statically linked: {file}");
    assert!(!file.contains("dynamically linked") && !file.contains("interpreter"), "no dynamic loader: {file}");

    let version = common::run_ok(Command::new(&extracted).arg("--version"));
    let expected = common::airlift().arg("--version").output().unwrap();
    assert!(expected.status.success());
    assert!(version.starts_with("airlift "), "{version}");
    assert_eq!(version.trim(), format!("airlift {}", env!("CARGO_PKG_VERSION")));
    assert_eq!(version, text(&expected.stdout));
}

#[test]
fn included_files_are_listed_and_unpacked_byte_for_byte() {
    let tmp = common::tempdir();
    let (key, public) = keygen(&tmp.path().join("keys"), "site");
    let notes = tmp.path().join("release-notes.txt");
    let notes_bytes = hex_text(50_000);
    fs::write(&notes, &notes_bytes).unwrap();
    let small = tmp.path().join("README.site");
    fs::write(&small, b"call the platform team before unpacking\n").unwrap();
    let out = tmp.path().join("bundle");
    let o = pack_cmd(&key, &out, "ocp", &["--no-installer", "--volume-size", "64KiB", "--chunk-size", "16KiB"])
        .arg("--include")
        .arg(&notes)
        .arg("--include")
        .arg(&small)
        .arg(layout_source())
        .output()
        .unwrap();
    assert!(o.status.success(), "pack: {}", describe(&o));

    let list = common::airlift().arg("list").arg(&out).arg("--json").output().unwrap();
    assert!(list.status.success(), "list: {}", describe(&list));
    let doc = one_json_document(&list);
    let files = doc["files"].as_array().expect("files in list --json");
    for (name, bytes) in
        [("release-notes.txt", &notes_bytes[..]), ("README.site", &b"call the platform team before unpacking\n"[..])]
    {
        let f = files
            .iter()
            .find(|f| f["path"] == format!("files/{name}"))
            .unwrap_or_else(|| panic!("files/{name} in list --json: {files:?}"));
        assert_eq!(f["kind"], "file");
        assert_eq!(f["size"].as_u64(), Some(bytes.len() as u64));
        assert_eq!(f["sha256"].as_str(), Some(format!("sha256:{}", sha256_hex(bytes)).as_str()));
    }
    assert!(!files.iter().any(|f| f["path"] == "files/airlift"), "--no-installer carries no installer");

    let site = tmp.path().join("site");
    let un = common::airlift()
        .arg("unpack")
        .arg(&out)
        .arg("--key")
        .arg(&public)
        .arg("--layout")
        .arg(&site)
        .output()
        .unwrap();
    assert!(un.status.success(), "unpack: {}", describe(&un));
    assert_eq!(fs::read(site.join("files/release-notes.txt")).unwrap(), notes_bytes);
    assert_eq!(fs::read(site.join("files/README.site")).unwrap(), b"call the platform team before unpacking\n");
}

// ---------------------------------------------------------------------------------------
// 6. --json

#[test]
fn verify_json_is_one_document_on_success_and_on_failure() {
    let tmp = common::tempdir();
    let (key, public) = keygen(&tmp.path().join("keys"), "site");
    let (_, other_public) = keygen(&tmp.path().join("keys"), "other");
    let out = tmp.path().join("bundle");
    pack_ok(&key, &out, "ocp", &["--no-installer", "--volume-size", "64KiB", "--chunk-size", "16KiB"]);
    let verify = |dir: &Path, key: &Path| {
        common::airlift().arg("verify").arg(dir).arg("--key").arg(key).arg("--json").output().unwrap()
    };

    let good = verify(&out, &public);
    assert_eq!(good.status.code(), Some(0), "{}", describe(&good));
    let doc = one_json_document(&good);
    assert_eq!(doc["status"], "ok");
    assert_eq!(doc["exit_code"].as_i64(), Some(0));
    assert_eq!(doc["bundle"]["id"], manifest(&out, "ocp")["id"]);
    assert_eq!(doc["volumes"].as_array().map(Vec::len), Some(volume_files(&out, "ocp").len()));

    let wrong_key = verify(&out, &other_public);
    assert_eq!(wrong_key.status.code(), Some(1), "{}", describe(&wrong_key));
    let doc = one_json_document(&wrong_key);
    assert_ne!(doc["status"], "ok");

    let nowhere = verify(&tmp.path().join("no-such-bundle"), &public);
    assert_eq!(nowhere.status.code(), Some(2), "{}", describe(&nowhere));
    let doc = one_json_document(&nowhere);
    assert!(doc["error"].as_str().unwrap_or("").contains("no-such-bundle"), "{doc}");

    let damaged = tmp.path().join("damaged");
    copy_dir(&out, &damaged);
    let vol = damaged.join("ocp.0002.tar");
    let mut bytes = fs::read(&vol).unwrap();
    bytes[3000] ^= 0x01;
    fs::write(&vol, bytes).unwrap();
    let bad = verify(&damaged, &public);
    assert_eq!(bad.status.code(), Some(1), "{}", describe(&bad));
    assert_eq!(one_json_document(&bad)["status"], "failed");

    let partial = tmp.path().join("partial");
    copy_dir(&out, &partial);
    let last = volume_files(&partial, "ocp").pop().unwrap();
    fs::remove_file(last).unwrap();
    let incomplete = verify(&partial, &public);
    assert_eq!(incomplete.status.code(), Some(3), "{}", describe(&incomplete));
    assert_eq!(one_json_document(&incomplete)["status"], "incomplete");
}

#[test]
fn json_is_one_document_even_for_argument_errors() {
    // README: "`--json` prints exactly one JSON document on stdout, on failure too".
    let tmp = common::tempdir();
    let (key, public) = keygen(&tmp.path().join("keys"), "site");
    let bad_size = pack_cmd(&key, &tmp.path().join("b"), "ocp", &["--json", "--no-installer", "--volume-size", "12X"])
        .arg(layout_source())
        .output()
        .unwrap();
    assert_eq!(bad_size.status.code(), Some(2), "{}", describe(&bad_size));
    let doc = one_json_document(&bad_size);
    assert_eq!(doc["status"], "error");

    let no_dir = common::airlift().args(["verify", "--json", "--key"]).arg(&public).output().unwrap();
    assert_eq!(no_dir.status.code(), Some(2), "{}", describe(&no_dir));
    one_json_document(&no_dir);
}

#[test]
fn list_json_lists_the_images_with_the_source_digests() {
    let tmp = common::tempdir();
    let (key, public) = keygen(&tmp.path().join("keys"), "site");
    let out = tmp.path().join("bundle");
    pack_ok(&key, &out, "ocp", &["--no-installer", "--volume-size", "64KiB", "--chunk-size", "16KiB"]);
    for with_key in [false, true] {
        let mut cmd = common::airlift();
        cmd.arg("list").arg(&out).arg("--json");
        if with_key {
            cmd.arg("--key").arg(&public);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "list: {}", describe(&o));
        let doc = one_json_document(&o);
        assert_eq!(doc["status"], "ok");
        assert_eq!(doc["signature_checked"].as_bool(), Some(with_key));
        let images: BTreeMap<String, String> = doc["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| (i["reference"].as_str().unwrap().to_string(), i["digest"].as_str().unwrap().to_string()))
            .collect();
        let source: BTreeMap<String, String> = source_refs().into_iter().map(|(r, (d, _))| (r, d)).collect();
        assert_eq!(images, source);
        let multi = doc["images"].as_array().unwrap().iter().find(|i| i["reference"] == "multi").unwrap();
        let platforms: Vec<&str> = multi["platforms"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
        assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
        assert_eq!(doc["volumes"], manifest(&out, "ocp")["volumes"]);
    }
}

// ---------------------------------------------------------------------------------------
// 7. --media presets

#[test]
fn media_presets_give_the_documented_volume_sizes() {
    const MAX_FILE: u64 = 4_294_967_295; // FAT32 and ISO 9660 file limit
    const RESERVE: u64 = 64 << 20; // src/size.rs DISC_RESERVE
    let tmp = common::tempdir();
    let (key, public) = keygen(&tmp.path().join("keys"), "site");
    // (preset, disc capacity from DESIGN.md, volumes per disc from the README)
    let mut dvd_volume_size = None;
    for (media, capacity, per_disc) in [
        ("fat32", None, 1u64),
        ("dvd", Some(4_700_372_992u64), 2u64),
        ("dvd-dl", Some(8_543_666_176), 2),
        ("bd25", Some(24_220_008_448), 6),
    ] {
        let out = tmp.path().join(media);
        pack_ok(&key, &out, "ocp", &["--no-installer", "--media", media]);
        let m = manifest(&out, "ocp");
        let vs = m["volume_size"].as_u64().unwrap();
        if media == "dvd" {
            dvd_volume_size = Some(vs);
        }
        let expected = match capacity {
            None => MAX_FILE / 512 * 512,
            Some(c) => (c - RESERVE) / per_disc / 512 * 512,
        };
        assert_eq!(vs, expected, "--media {media}");
        assert!(vs <= MAX_FILE, "--media {media}: {vs} exceeds the FAT32/ISO 9660 file limit");
        assert_eq!(vs % 512, 0);
        if let Some(c) = capacity {
            assert!(per_disc * vs + RESERVE <= c, "--media {media}: {per_disc} volumes of {vs} do not fit {c}");
        }
        let v = common::airlift().arg("verify").arg(&out).arg("--key").arg(&public).output().unwrap();
        assert!(v.status.success(), "verify --media {media}: {}", describe(&v));
    }
    // The DVD numbers spelled out: two volumes and the reserve fit a DVD+R.
    let dvd = dvd_volume_size.expect("dvd was packed");
    assert_eq!(dvd, 2_316_632_064);
    assert!(2 * dvd + RESERVE <= 4_700_372_992);

    // --media and --volume-size together are a usage error.
    let o = pack_cmd(&key, &tmp.path().join("both"), "ocp", &["--media", "dvd", "--volume-size", "1MiB"])
        .arg(layout_source())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", describe(&o));
}

// ---------------------------------------------------------------------------------------
// 8. usage errors

#[test]
fn usage_errors_exit_2_and_name_the_problem() {
    let tmp = common::tempdir();
    let (key, _) = keygen(&tmp.path().join("keys"), "site");
    let layout = common::testdata("layout");
    let missing_layout = format!("oci:{}", tmp.path().join("no-such-layout").display());
    let no_such_ref = format!("oci:{}:nosuchref", layout.display());
    let missing_key = tmp.path().join("keys/no-such.key");
    let source = layout_source();
    // (what, key, arguments, words the error message must contain)
    let cases: [(&str, &Path, Vec<&str>, &[&str]); 8] = [
        ("unknown source scheme", &key, vec!["s3://bucket/x/y:1"], &["s3://bucket/x/y:1", "oci:", "docker://"]),
        ("missing layout dir", &key, vec![&missing_layout], &["no-such-layout"]),
        ("no such ref", &key, vec![&no_such_ref], &["nosuchref"]),
        ("bad size suffix", &key, vec!["--volume-size", "12X", &source], &["12X", "suffix"]),
        ("bad chunk size suffix", &key, vec!["--chunk-size", "4QB", &source], &["4QB", "suffix"]),
        ("volume size below the minimum", &key, vec!["--volume-size", "1000", &source], &["1000", "minimum"]),
        ("chunk size below the minimum", &key, vec!["--chunk-size", "100", &source], &["100", "chunk size"]),
        ("missing key file", &missing_key, vec![&source], &["no-such.key"]),
    ];
    for (what, key, args, words) in cases {
        let out = tmp.path().join(format!("out-{}", what.replace(' ', "-")));
        let o = common::airlift()
            .arg("pack")
            .arg("--key")
            .arg(key)
            .arg("--out")
            .arg(&out)
            .arg("--no-installer")
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{what}: {}", describe(&o));
        let stderr = text(&o.stderr);
        for w in words {
            assert!(stderr.contains(w), "{what}: the message names '{w}':\n{stderr}");
        }
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        assert!(o.stdout.is_empty(), "{what}: nothing on stdout without --json: {}", describe(&o));
        assert!(!out.join("airlift.manifest.json").exists(), "{what}: no bundle is written");
    }
}
