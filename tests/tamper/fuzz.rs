//! A seeded property test of the reader: random damage to a good bundle, and `verify`
//! (and, every third case, `unpack`) must answer what the truth is.
//!
//! Each case copies the fixture bundle and applies one to three mutations:
//! - volume bytes: a flipped byte, a truncation, bytes inserted, a range deleted
//!   (truth: damaged, exit 1);
//! - a volume removed (truth: incomplete, exit 3, unless something else is damaged);
//! - a boundary value (0, 1, 511, 512, 513, the old value ±1, u32::MAX, u64::MAX, …) in a
//!   numeric field of the manifest (a chunk's volume, offset, length or part, a volume's
//!   size, an entry's stored size or mode), re-signed with the bundle's key and its
//!   trusted comment (truth: the manifest no longer describes the volumes, exit 1).
//!
//! Every run must exit with the truth's code, within a time bound, with a peak RSS under
//! 100 MiB, without a panic, and without writing anywhere but the unpack target.
//! `AIRLIFT_FUZZ_SEED` picks the seed (printed, so a failure reproduces) and
//! `AIRLIFT_FUZZ_CASES` the number of cases (default 240; `bench/fuzz.sh` runs more).

use std::time::{Duration, Instant};

use super::*;

const CASE_BOUND: Duration = Duration::from_secs(60);
const MEMORY_BOUND_KIB: u64 = 100 * 1024;

/// xorshift64*: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

/// What a case's bundle truly is, as the exit status airlift must give: good (0),
/// damaged (1), incomplete (3); several mutations combine as `Status::worst` does.
type Truth = airlift::error::Status;

fn volume_file(dir: &Path, v: usize) -> PathBuf {
    dir.join(format!("{NAME}.{v:04}.tar"))
}

/// Apply one volume mutation; returns a description. Whether a volume ends damaged or
/// removed is read back from the directory afterwards (a damaged volume removed later
/// makes the bundle incomplete, not damaged).
fn mutate_volume(rng: &mut Rng, dir: &Path, volumes: usize) -> String {
    let v = 1 + rng.below(volumes as u64) as usize;
    let path = volume_file(dir, v);
    let Ok(mut bytes) = std::fs::read(&path) else {
        return format!("volume {v} already gone");
    };
    let len = bytes.len() as u64;
    let what = match rng.below(5) {
        0 => {
            let at = rng.below(len) as usize;
            let x = 1 + rng.below(255) as u8;
            bytes[at] ^= x;
            format!("volume {v}: byte {at} ^= {x:#04x}")
        }
        1 => {
            let keep = rng.below(len) as usize;
            bytes.truncate(keep);
            format!("volume {v}: truncated to {keep} of {len}")
        }
        2 => {
            let at = rng.below(len + 1) as usize;
            let n = 1 + rng.below(1500) as usize;
            let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            bytes.splice(at..at, junk);
            format!("volume {v}: {n} bytes inserted at {at}")
        }
        3 => {
            let at = rng.below(len) as usize;
            let n = 1 + rng.below((len as usize - at).min(3000) as u64) as usize;
            bytes.drain(at..at + n);
            format!("volume {v}: {n} bytes deleted at {at}")
        }
        _ => {
            std::fs::remove_file(&path).unwrap();
            return format!("volume {v}: removed");
        }
    };
    std::fs::write(&path, bytes).unwrap();
    what
}

/// Set one numeric manifest field to a boundary value and re-sign the manifest.
fn mutate_manifest(rng: &mut Rng, dir: &Path, key: &Path) -> (String, Truth) {
    let path = dir.join(format!("{NAME}.manifest.json"));
    let comment = trusted_comment(&dir.join(format!("{NAME}.manifest.json.minisig")));
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let (list, fields): (&str, &[&str]) = match rng.below(3) {
        0 => ("chunks", &["volume", "offset", "length", "part"]),
        1 => ("volumes", &["size"]),
        _ => ("entries", &["stored_size", "mode"]),
    };
    let items = doc[list].as_array_mut().unwrap();
    let i = rng.below(items.len() as u64) as usize;
    let field = fields[rng.below(fields.len() as u64) as usize];
    let old = items[i][field].as_u64().unwrap();
    let candidates = [
        0,
        1,
        511,
        512,
        513,
        1023,
        1024,
        old.wrapping_sub(1),
        old + 1,
        old + 512,
        old.wrapping_sub(512),
        u64::from(u32::MAX),
        u64::from(u32::MAX) + 1,
        i64::MAX as u64,
        u64::MAX,
    ];
    let new = candidates[rng.below(candidates.len() as u64) as usize];
    if new == old {
        return (format!("{list}[{i}].{field} left at {old}"), Truth::Ok);
    }
    items[i][field] = Value::from(new);
    let mut bytes = serde_json::to_vec_pretty(&doc).unwrap();
    bytes.push(b'\n');
    std::fs::write(&path, bytes).unwrap();
    minisign_sign(key, &path, &comment);
    (format!("{list}[{i}].{field}: {old} -> {new}"), Truth::Integrity)
}

/// `airlift ARGS` under `/usr/bin/time` with a bound: exit code, peak RSS (KiB), output.
fn bounded(args: &[&std::ffi::OsStr]) -> (Run, u64, Duration) {
    let stats = common::tempdir();
    let stats_file = stats.path().join("rss");
    let started = Instant::now();
    let r = run(assert_cmd::Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&stats_file)
        .arg(common::airlift_path())
        .args(args)
        .timeout(CASE_BOUND));
    let took = started.elapsed();
    let rss = std::fs::read_to_string(&stats_file)
        .ok()
        .and_then(|s| s.lines().last().and_then(|l| l.trim().parse().ok()))
        .unwrap_or(0);
    (r, rss, took)
}

#[test]
fn random_damage_gets_the_exit_code_the_truth_says() {
    if !common::have("minisign") || !common::have("/usr/bin/time") {
        return;
    }
    let seed: u64 = std::env::var("AIRLIFT_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_a1f1);
    let cases: usize = std::env::var("AIRLIFT_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(240);
    eprintln!("fuzz: seed {seed}, {cases} cases (AIRLIFT_FUZZ_SEED={seed} reproduces)");
    let fx = Fixture::with_notes();
    let volumes = fx.manifest().volumes.len();
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let (mut peak, mut slowest, mut runs) = (0u64, Duration::ZERO, 0usize);
    let mut seen = [0usize; 4];
    for case in 0..cases {
        let work = fx.root().join(format!("case-{case}"));
        let dir = work.join("bundle");
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&fx.dir).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
        }
        let mut truth = Truth::Ok;
        let mut what = Vec::new();
        // One case in twenty stays untouched: the truth is then a good bundle.
        let mutations = if case % 20 == 0 { 0 } else { 1 + rng.below(3) };
        for _ in 0..mutations {
            if rng.below(4) == 0 {
                let (w, t) = mutate_manifest(&mut rng, &dir, &fx.key);
                what.push(w);
                truth = truth.worst(t);
            } else {
                what.push(mutate_volume(&mut rng, &dir, volumes));
            }
        }
        // The volumes' truth, from what is left of them.
        for v in 1..=volumes {
            let now = std::fs::read(volume_file(&dir, v)).ok();
            let was = std::fs::read(volume_file(&fx.dir, v)).unwrap();
            truth = truth.worst(match now {
                None => Truth::Incomplete,
                Some(b) if b != was => Truth::Integrity,
                Some(_) => Truth::Ok,
            });
        }
        let label = format!("case {case} (seed {seed}): {}", what.join("; "));
        let before = snapshot(&work, &[], true);

        let (r, rss, took) =
            bounded(&["--json".as_ref(), "verify".as_ref(), dir.as_os_str(), "--key".as_ref(), fx.public.as_os_str()]);
        runs += 1;
        assert_eq!(r.code, truth.code() as i32, "verify, {label}: {r:?}");
        assert!(!r.stderr.contains("panicked"), "verify panicked, {label}: {r:?}");
        let _ = r.json();
        (peak, slowest) = (peak.max(rss), slowest.max(took));
        assert!(rss < MEMORY_BOUND_KIB, "verify, {label}: peak RSS {rss} KiB");
        assert_same_snapshot(&before, &snapshot(&work, &[], true), &format!("verify wrote, {label}"));

        if case % 3 == 0 {
            let layout = work.join("layout");
            let (r, rss, took) = bounded(&[
                "--json".as_ref(),
                "unpack".as_ref(),
                dir.as_os_str(),
                "--key".as_ref(),
                fx.public.as_os_str(),
                "--layout".as_ref(),
                layout.as_os_str(),
            ]);
            runs += 1;
            assert_eq!(r.code, truth.code() as i32, "unpack, {label}: {r:?}");
            assert!(!r.stderr.contains("panicked"), "unpack panicked, {label}: {r:?}");
            (peak, slowest) = (peak.max(rss), slowest.max(took));
            assert!(rss < MEMORY_BOUND_KIB, "unpack, {label}: peak RSS {rss} KiB");
            // Nothing but the layout changed, and every blob there is what its name says.
            assert_same_snapshot(
                &before,
                &snapshot(&work, &[&layout], true),
                &format!("unpack wrote outside, {label}"),
            );
            if let Ok(blobs) = std::fs::read_dir(layout.join("blobs/sha256")) {
                for b in blobs {
                    let b = b.unwrap();
                    let name = b.file_name().to_string_lossy().into_owned();
                    let got = Digest::of(&std::fs::read(b.path()).unwrap());
                    assert_eq!(got.hex(), name, "a blob committed with the wrong content, {label}");
                }
            }
        }
        seen[truth.code() as usize] += 1;
        std::fs::remove_dir_all(&work).unwrap();
    }
    eprintln!(
        "figure: fuzz {cases} cases, {runs} runs ({} ok, {} damaged, {} incomplete) in {:.1} s; slowest run {:.2} s, \
         peak RSS {peak} KiB",
        seen[0],
        seen[1],
        seen[3],
        started.elapsed().as_secs_f64(),
        slowest.as_secs_f64()
    );
}
