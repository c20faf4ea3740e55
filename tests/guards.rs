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

/// Every file directly in `dir`: name → bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), fs::read(e.path()).unwrap())
        })
        .collect()
}

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
    let before = files(&fx.dir);
    let volumes = fx.manifest().volumes.len();
    assert!(volumes >= 3);

    let r = pack_into(&fx.key, &fx.dir, &["--volume-size", "1MiB"]);
    assert_eq!(r.code, 2, "{r:?}");
    for want in [format!("{NAME}.manifest.json"), format!("{NAME}.{volumes:04}.tar"), "--force".to_string()] {
        assert!(r.stderr.contains(&want), "the refusal does not name {want}: {r:?}");
    }
    assert_eq!(files(&fx.dir), before, "a refused pack changed the bundle");

    // Another name in the same directory is another bundle: no conflict.
    let r = pack_into(&fx.key, &fx.dir, &["--name", "other"]);
    assert_eq!(r.code, 0, "{r:?}");
    for file in files(&fx.dir).keys().filter(|f| f.starts_with("other.")) {
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
