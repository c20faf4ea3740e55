//! Tests that guard what already works, each written so that removing the check it
//! guards makes it fail (a mutation audit found these checks unguarded), and pack's
//! handling of its output directory and of expiry.
//!
//! (a) unpack of a whole, uncompressed blob compares its chunk hash;
//! (b) the registry client checks the digest of a first (not resumed) fetch;
//! (c) verify compares SHA256SUMS's content with the signed manifest;
//! (d) a committed blob is fsynced before its rename, and its directory after;
//! (e) zstd expansion stops at the signed size (bytes on disk, not the message);
//! (f) every field of the trusted comment is checked.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::common;
use crate::tamper::{self, Fixture, NAME};

fn pack_into(key: &Path, out: &Path, extra: &[&str]) -> tamper::Run {
    tamper::run(
        common::airlift()
            .arg("pack")
            .arg("--key")
            .arg(key)
            .arg("--out")
            .arg(out)
            .arg("--no-installer")
            .args(extra)
            .arg(format!("oci:{}", common::testdata("layout").display())),
    )
}

// ---------------------------------------------------------------------------------------
// pack's output directory (defect 11) and expiry (defect 18)

/// Defect 11: `pack --out DIR` over a bundle of the same name refuses (exit 2), naming the
/// files there, and changes nothing; `--force` replaces it, extra volumes included.
#[test]
fn pack_does_not_replace_an_existing_bundle_without_force() {
    let fx = Fixture::new();
    let before = common::dir_contents(&fx.dir);
    let volumes = fx.manifest().volumes.len();
    assert!(volumes >= 3);

    let r = pack_into(&fx.key, &fx.dir, &["--volume-size", "1MiB"]);
    assert_eq!(r.code, 2, "{r:?}");
    for want in [format!("{NAME}.manifest.json"), format!("{NAME}.{volumes:04}.tar"), "--force".to_string()] {
        assert!(r.stderr.contains(&want), "the refusal does not name {want}: {r:?}");
    }
    assert_eq!(common::dir_contents(&fx.dir), before, "a refused pack changed the bundle");

    // Another name in the same directory is another bundle: no conflict.
    let r = pack_into(&fx.key, &fx.dir, &["--name", "other"]);
    assert_eq!(r.code, 0, "{r:?}");
    for file in common::dir_contents(&fx.dir).keys().filter(|f| f.starts_with("other.")) {
        fs::remove_file(fx.dir.join(file)).unwrap();
    }

    let r = pack_into(&fx.key, &fx.dir, &["--volume-size", "1MiB", "--force"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(fx.manifest().volumes.len(), 1);
    assert!(!fx.volume(2).exists(), "--force left the old bundle's extra volumes");
    let r = fx.verify();
    assert_eq!(r.code, 0, "{r:?}");
}

/// Defect 18: with SOURCE_DATE_EPOCH in the past, `--expires 30d` still means 30 days from
/// now: the creation time stays the fixed one (reproducible), the bundle is not born expired.
#[test]
fn pack_expiry_counts_from_now_not_from_source_date_epoch() {
    let tmp = common::tempdir();
    let (key, public) = common::keygen(&tmp.path().join("keys"), "k");
    let out = tmp.path().join("b");
    let start = now();
    let r = tamper::run(pack_cmd(&key, &out).env("SOURCE_DATE_EPOCH", "1700000000").args(["--expires", "30d"]));
    let end = now();
    assert_eq!(r.code, 0, "{r:?}");
    let m = tamper::read_manifest_named(&out, NAME);
    assert_eq!(m.created, 1_700_000_000, "the creation time is SOURCE_DATE_EPOCH");
    let expires = m.expires.expect("an expiry");
    assert!(
        (start + 30 * 86_400..=end + 30 * 86_400).contains(&expires),
        "expires {expires} is not 30 days from the pack ({start}..{end})"
    );
    let r = tamper::verify(&out, &public, false);
    assert_eq!(r.code, 0, "a bundle packed with --expires 30d is valid now: {r:?}");
}

fn pack_cmd(key: &Path, out: &Path) -> assert_cmd::Command {
    let mut cmd = common::airlift();
    cmd.arg("pack").arg("--key").arg(key).arg("--out").arg(out).arg("--no-installer");
    cmd.arg(format!("oci:{}", common::testdata("layout").display()));
    cmd
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

// ---------------------------------------------------------------------------------------
// (a) unpack checks the chunk hash of a whole, uncompressed blob

/// A flipped data byte in a whole, uncompressed layer: `unpack --layout` exits 1 and
/// leaves nothing at blobs/sha256/HEX, and no temp file. (verify's own test does not
/// cover unpack, which reads through the same reader but commits.)
#[test]
fn unpack_refuses_a_flipped_byte_in_a_whole_plain_blob_and_commits_nothing() {
    let fx = Fixture::new();
    let m = fx.manifest();
    let c = (1..=m.volumes.len() as u32)
        .find_map(|v| {
            (0..m.chunks.len()).find(|&c| {
                m.chunks[c].volume == v && !m.chunks[c].entry.starts_with("airlift/") && tamper::whole_plain_blob(&m, c)
            })
        })
        .expect("a whole, uncompressed blob");
    let chunk = &m.chunks[c];
    let entry = tamper::entry_of(&m, c);
    tamper::flip(&fx.volume(chunk.volume), chunk.offset + chunk.length / 2);
    let out = fx.root().join("layout");
    let r = tamper::unpack(&fx.dir, &fx.public, &out, false);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.text().contains(&chunk.entry), "the report names the damaged entry: {r:?}");
    let blob = out.join("blobs/sha256").join(entry.digest.hex());
    assert!(!blob.exists(), "{} was committed from a damaged chunk", blob.display());
    assert_no_temp_files(&out);
}

/// No `.airlift-tmp-*` file anywhere under `dir`.
fn assert_no_temp_files(dir: &Path) {
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy();
        assert!(!name.starts_with(".airlift-tmp-"), "temp file left: {}", entry.path().display());
    }
}

// ---------------------------------------------------------------------------------------
// (b) the client checks the digest of a first fetch

/// A proxy that flips one byte of every whole blob body: `pack docker://…` fails naming the
/// registry and the digest, and nothing is stored under that digest in the cache (neither
/// as a blob nor as a partial fetch to resume).
#[test]
fn pack_refuses_a_blob_whose_bytes_do_not_match_its_digest() {
    let Some(dist) = common::proxy::PlainDistribution::start() else { return };
    let names = crate::faults::push_testdata(&dist);
    let proxy = common::proxy::Proxy::start(dist.port);
    proxy.set_policy(common::proxy::Policy { corrupt_every: 1, ..Default::default() });
    let tmp = common::tempdir();
    let cache = tmp.path().join("cache");
    let out = common::airlift()
        .args(crate::faults::pack_args(&dist, &proxy, tmp.path(), &cache))
        .arg(proxy.docker_ref(&names[1]))
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let s = proxy.stats();
    assert!(s.get(&s.corrupted) >= 1, "the proxy corrupted nothing: {}", s.summary());
    assert_eq!(out.status.code(), Some(1), "pack accepted corrupted blobs: {stderr}\nproxy: {}", s.summary());
    assert!(stderr.contains(&proxy.host()), "the error names the registry: {stderr}");
    assert!(stderr.contains("wrong content"), "{stderr}");
    let digest = stderr
        .split("blob sha256:")
        .nth(1)
        .map(|rest| rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect::<String>())
        .filter(|hex| hex.len() == 64)
        .unwrap_or_else(|| panic!("the error names no blob digest: {stderr}"));
    for path in [cache.join("blobs/sha256").join(&digest), cache.join(".airlift/partial").join(&digest)] {
        assert!(!path.exists(), "{} holds the corrupted blob", path.display());
    }
}

// ---------------------------------------------------------------------------------------
// (c) verify compares SHA256SUMS with the manifest

/// One line of NAME.SHA256SUMS changed and re-signed with the right trusted comment: the
/// signature is good, the content is not the manifest's: exit 1, sha256sums bad.
#[test]
fn verify_refuses_a_resigned_sha256sums_that_differs_from_the_manifest() {
    if !common::have("minisign") {
        return;
    }
    let fx = Fixture::new();
    let sums = fx.dir.join(format!("{NAME}.SHA256SUMS"));
    let comment = tamper::trusted_comment(&fx.dir.join(format!("{NAME}.SHA256SUMS.minisig")));
    let text = fs::read_to_string(&sums).unwrap();
    let first = text.lines().next().unwrap();
    let (hex, file) = first.split_once("  ").unwrap();
    let other = common::sha256_hex(hex.as_bytes());
    fs::write(&sums, text.replacen(first, &format!("{other}  {file}"), 1)).unwrap();
    tamper::minisign_sign(&fx.key, &sums, &comment);
    let (r, doc) = fx.verify_json();
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(doc["sha256sums"]["state"], "bad", "{doc:#}");
}

// ---------------------------------------------------------------------------------------
// (f) every field of the trusted comment is checked

/// The manifest's exact bytes signed by the right key, with a trusted comment that differs
/// from the right one in one field: another bundle id, sequence, expiry, file or name.
/// Each is refused (exit 1) before anything is read.
#[test]
fn every_field_of_the_trusted_comment_is_checked() {
    if !common::have("minisign") {
        return;
    }
    let fx = Fixture::with_args(&["--expires", "30d", "--sequence", "4"]);
    let manifest = fx.dir.join(format!("{NAME}.manifest.json"));
    let sig = fx.dir.join(format!("{NAME}.manifest.json.minisig"));
    let original = fs::read(&sig).unwrap();
    let comment = tamper::trusted_comment(&sig);
    let m = fx.manifest();
    let expires = m.expires.expect("an expiry").to_string();
    let cases = [
        ("bundle", m.id.clone(), "0123456789abcdef0123456789abcdef".to_string()),
        ("sequence", "4".to_string(), "5".to_string()),
        ("expires", expires.clone(), "never".to_string()),
        ("expires", expires.clone(), (m.expires.unwrap() + 86_400).to_string()),
        ("file", format!("{NAME}.manifest.json"), format!("{NAME}.SHA256SUMS")),
        ("name", NAME.to_string(), "other".to_string()),
    ];
    for (field, from, to) in cases {
        let right = format!("{field}:{from}");
        assert!(comment.contains(&right), "the trusted comment has no {right}: {comment}");
        let forged = comment.replacen(&right, &format!("{field}:{to}"), 1);
        tamper::minisign_sign(&fx.key, &manifest, &forged);
        let r = fx.verify();
        assert_eq!(r.code, 1, "{field} {from} → {to} was accepted: {r:?}");
        assert!(r.text().contains("made for another bundle"), "{field}: {r:?}");
        let out = fx.root().join(format!("layout-{field}-{to}"));
        let r = tamper::unpack(&fx.dir, &fx.public, &out, false);
        assert_eq!(r.code, 1, "unpack: {field} {from} → {to} was accepted: {r:?}");
        assert!(!out.join("blobs").exists(), "unpack wrote blobs under a forged signature");
    }
    // The right comment again: accepted (the forgeries were refused for their comment only).
    fs::write(&sig, original).unwrap();
    assert_eq!(fx.verify().code, 0);
}

// ---------------------------------------------------------------------------------------
// Syscall traces (strace): what reaches the disk, in which order

/// One completed system call of a trace: its name, its quoted string arguments (paths),
/// its first argument when it is a number (a descriptor), and its result.
#[derive(Debug)]
struct Call {
    /// The thread that made it.
    pid: String,
    name: String,
    strings: Vec<String>,
    fd: Option<i64>,
    ret: i64,
}

/// The calls of an `strace -f -s 4096 -o FILE` trace, in the order they completed, with
/// `<unfinished ...>` / `<... resumed>` pairs joined.
fn parse_trace(text: &str) -> Vec<Call> {
    let mut pending: BTreeMap<String, String> = BTreeMap::new();
    let mut calls = Vec::new();
    for line in text.lines() {
        let (pid, rest) = line.split_once(' ').unwrap_or(("", line));
        let rest = rest.trim_start();
        let full = if let Some(head) = rest.strip_suffix("<unfinished ...>") {
            pending.insert(pid.to_string(), head.to_string());
            continue;
        } else if let Some(tail) = rest.strip_prefix("<... ") {
            let tail = tail.split_once("resumed>").map(|(_, t)| t).unwrap_or("");
            format!("{}{tail}", pending.remove(pid).unwrap_or_default())
        } else {
            rest.to_string()
        };
        if let Some(call) = parse_call(pid, &full) {
            calls.push(call);
        }
    }
    calls
}

fn parse_call(pid: &str, text: &str) -> Option<Call> {
    let open = text.find('(')?;
    let name = text[..open].to_string();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None; // "+++ exited", "--- SIGCHLD", …
    }
    let ret: i64 = text.rsplit_once(" = ")?.1.split_whitespace().next()?.parse().ok()?;
    let args = &text[open + 1..];
    let fd = args.split([',', ')']).next().and_then(|a| a.trim().parse().ok());
    // Quoted strings, with strace's backslash escapes kept as they are (paths have none).
    let mut strings = Vec::new();
    let mut chars = args.chars();
    while let Some(c) = chars.next() {
        if c == '"' {
            let mut s = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        s.push(c);
                        s.extend(chars.next());
                    }
                    '"' => break,
                    _ => s.push(c),
                }
            }
            strings.push(s);
        }
    }
    Some(Call { pid: pid.to_string(), name, strings, fd, ret })
}

/// `airlift unpack` of the fixture's bundle into the layout `out`, traced for `calls`.
fn traced_unpack(fx: &Fixture, out: &Path, calls: &str) -> (Vec<Call>, i32) {
    let args = [
        "unpack".as_ref(),
        fx.dir.as_os_str(),
        "--key".as_ref(),
        fx.public.as_os_str(),
        "--layout".as_ref(),
        out.as_os_str(),
    ];
    traced(&args, calls, fx.root())
}

/// Run `airlift ARGS` under strace (every thread), tracing `calls`; the calls and the exit code.
fn traced(args: &[&std::ffi::OsStr], calls: &str, dir: &Path) -> (Vec<Call>, i32) {
    let trace = dir.join("strace.out");
    let out = std::process::Command::new("strace")
        .args(["-f", "-s", "4096", "-e", &format!("trace={calls}"), "-o"])
        .arg(&trace)
        .arg(common::airlift_path())
        .args(args)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("run strace");
    let text = fs::read_to_string(&trace).unwrap_or_else(|e| panic!("{}: {e}", trace.display()));
    fs::remove_file(&trace).unwrap();
    assert!(!text.is_empty(), "strace wrote nothing: {}", String::from_utf8_lossy(&out.stderr));
    (parse_trace(&text), out.status.code().unwrap_or(-1))
}

/// The path each descriptor was opened for, updated as the trace goes (descriptors are
/// per process and reused: the latest `openat` wins).
#[derive(Default)]
struct Descriptors(BTreeMap<i64, String>);

impl Descriptors {
    /// Record an `openat`; the path a descriptor-taking call acts on.
    fn follow(&mut self, call: &Call) -> Option<String> {
        if call.name == "openat" && call.ret >= 0 {
            if let Some(path) = call.strings.first() {
                self.0.insert(call.ret, path.clone());
            }
            return None;
        }
        call.fd.and_then(|fd| self.0.get(&fd).cloned())
    }
}

fn is_rename(name: &str) -> bool {
    matches!(name, "rename" | "renameat" | "renameat2")
}

// ---------------------------------------------------------------------------------------
// (d) fsync before rename, and of the directory after

/// One unpack traced: every blob committed under blobs/sha256 went temp file fsync →
/// rename → fsync of blobs/sha256, in that order.
#[test]
fn unpack_fsyncs_each_blob_before_its_rename_and_the_directory_after() {
    if !common::have("strace") {
        return;
    }
    let fx = Fixture::new();
    let out = fx.root().join("layout");
    let (calls, code) = traced_unpack(&fx, &out, "fsync,fdatasync,rename,renameat,renameat2,openat");
    assert_eq!(code, 0);
    let blobs = out.join("blobs/sha256");
    let blobs = blobs.to_str().unwrap();
    let mut fds = Descriptors::default();
    // Files fsynced so far; per thread, the blob it renamed and has not yet made durable
    // by an fsync of blobs/sha256 (it must, before it goes on to another rename).
    let mut synced: Vec<String> = Vec::new();
    let mut waiting: BTreeMap<String, String> = BTreeMap::new();
    let mut committed = 0;
    for call in &calls {
        let path = fds.follow(call);
        if call.name == "openat" {
            continue;
        }
        if matches!(call.name.as_str(), "fsync" | "fdatasync") && call.ret == 0 {
            let path = path.expect("an fsync of a descriptor opened in the trace");
            if path == blobs {
                waiting.remove(&call.pid);
            } else {
                synced.push(path);
            }
        } else if is_rename(&call.name) && call.ret == 0 {
            let (from, to) = (&call.strings[0], &call.strings[1]);
            if let Some(blob) = waiting.get(&call.pid) {
                panic!(
                    "{blob} was renamed into place, then its thread renamed {from} with no fsync of {blobs} between"
                );
            }
            if to.starts_with(&format!("{blobs}/")) {
                assert!(synced.contains(from), "{to} was renamed from {from} before that file was fsynced");
                waiting.insert(call.pid.clone(), to.clone());
                committed += 1;
            }
        }
    }
    assert!(waiting.is_empty(), "no fsync of {blobs} after the rename of {waiting:?}");
    assert!(committed >= 3, "the trace shows {committed} blob commits");
}

// ---------------------------------------------------------------------------------------
// (e) zstd expansion stops at the signed size

/// A zstd blob whose signed size is half what it expands to: unpack refuses it, and the
/// bytes written to its temp file (every write traced) never exceed the signed size.
#[test]
fn zstd_expansion_never_writes_past_the_signed_size() {
    if !common::have("strace") || !common::have("minisign") {
        return;
    }
    let fx = Fixture::new();
    let (_, path, declared) = tamper::zstd_bomb(&fx);
    let out = fx.root().join("layout");
    let (calls, code) = traced_unpack(&fx, &out, "openat,write,pwrite64,writev,pwritev,rename,renameat,renameat2");
    assert_eq!(code, 1, "a zstd entry expanding past its signed size was accepted");
    let mut fds = Descriptors::default();
    let mut written: BTreeMap<String, u64> = BTreeMap::new();
    let mut renamed = Vec::new();
    for call in &calls {
        let target = fds.follow(call);
        if call.name.contains("write") && call.ret > 0 {
            if let Some(t) = target.filter(|t| t.contains("/.airlift-tmp-")) {
                *written.entry(t).or_default() += call.ret as u64;
            }
        } else if is_rename(&call.name) && call.ret == 0 {
            renamed.push(call.strings[0].clone());
        }
    }
    // The temp files never committed: the refused entry's.
    let left: std::collections::BTreeSet<&String> = calls
        .iter()
        .filter(|c| c.name == "openat" && c.ret >= 0)
        .filter_map(|c| c.strings.first())
        .filter(|p| p.contains("/.airlift/tmp/.airlift-tmp-") && !renamed.contains(p))
        .collect();
    assert!(!left.is_empty(), "no temp file was opened for {path} (or it was committed)");
    for temp in left {
        let bytes = written.get(temp).copied().unwrap_or(0);
        assert!(bytes <= declared, "{bytes} bytes were written to {temp} for {path}, signed as {declared} bytes");
    }
    let blob = out.join(&path);
    assert!(!blob.exists(), "{} was committed", blob.display());
    assert_no_temp_files(&out);
}
