use super::stream::piece_size;
use super::*;
use crate::error::Error;
use crate::progress::Silent;

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Data volumes of `sizes` in `dir`, and `recovery` recovery volumes encoded over them
/// with shards of `shard` bytes: every volume's path and bytes, data then recovery.
fn encoded(dir: &Path, sizes: &[usize], recovery: usize, shard: u64) -> Vec<(PathBuf, Vec<u8>)> {
    let mut volumes = Vec::new();
    let mut slots = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let path = dir.join(format!("v.{i}"));
        let data = bytes(i as u64 + 1, size);
        std::fs::write(&path, &data).unwrap();
        slots.push(Slot { source: Some(path.clone()), size: size as u64, target: None });
        volumes.push((path, data));
    }
    let length = *sizes.iter().max().unwrap() as u64;
    for p in 0..recovery {
        let path = dir.join(format!("p.{p}"));
        slots.push(Slot { source: None, size: length, target: Some(Target { dest: path.clone(), sha256: None }) });
        volumes.push((path, Vec::new()));
    }
    let digests = run(sizes.len(), shard, &slots, &Silent).unwrap();
    assert_eq!(digests.len(), recovery);
    let expected = by_stripes(&volumes[..sizes.len()], recovery, shard as usize);
    for (k, digest) in digests.iter().enumerate() {
        let (path, data) = &mut volumes[sizes.len() + k];
        *data = std::fs::read(&*path).unwrap();
        assert_eq!(data.len() as u64, length, "a recovery volume is as long as the longest data volume");
        assert_eq!(&Digest::of(data), digest, "the digest returned is the file's");
        assert!(*data == expected[k], "recovery volume {k} is not the manifest's stripe layout");
    }
    volumes
}

/// The recovery volumes as the manifest draws them, one stripe at a time: stripe `j` is
/// bytes `[j * shard, (j + 1) * shard)` of every data volume (zeros past its end), and
/// recovery volume `p` holds recovery shard `p` of each stripe at the stripe's offset.
fn by_stripes(data: &[(PathBuf, Vec<u8>)], recovery: usize, shard: usize) -> Vec<Vec<u8>> {
    let length = data.iter().map(|(_, b)| b.len()).max().unwrap();
    let mut out = vec![Vec::new(); recovery];
    for start in (0..length).step_by(shard) {
        let len = shard.min(length - start);
        let stripe: Vec<Vec<u8>> = data
            .iter()
            .map(|(_, b)| {
                let mut s = b.get(start..).unwrap_or(&[]).iter().copied().take(len).collect::<Vec<u8>>();
                s.resize(len, 0);
                s
            })
            .collect();
        for (p, shard) in reed_solomon_simd::encode(data.len(), recovery, &stripe).unwrap().into_iter().enumerate() {
            out[p].extend(shard);
        }
    }
    out
}

/// Rebuild the volumes `lost` (indexes among all) into `out`; each must come back
/// byte-identical.
fn rebuild_and_compare(volumes: &[(PathBuf, Vec<u8>)], data: usize, shard: u64, lost: &[usize], out: &Path) {
    let length = volumes[..data].iter().map(|(_, b)| b.len()).max().unwrap() as u64;
    let slots: Vec<Slot> = volumes
        .iter()
        .enumerate()
        .map(|(i, (path, bytes))| {
            let is_lost = lost.contains(&i);
            Slot {
                source: (!is_lost).then(|| path.clone()),
                size: if i < data { bytes.len() as u64 } else { length },
                target: is_lost.then(|| Target { dest: out.join(format!("r.{i}")), sha256: Some(Digest::of(bytes)) }),
            }
        })
        .collect();
    run(data, shard, &slots, &Silent).unwrap_or_else(|e| panic!("losing {lost:?}: {e}"));
    for &i in lost {
        let got = std::fs::read(out.join(format!("r.{i}"))).unwrap();
        assert!(got == volumes[i].1, "volume {i} rebuilt with other bytes (lost {lost:?})");
    }
}

#[test]
fn any_two_of_odd_sized_volumes_are_rebuilt_with_a_short_last_stripe() {
    let dir = tempfile::tempdir().unwrap();
    // Odd lengths, one longer than the others; 1000 / 192 leaves a last stripe of 40 bytes.
    let sizes = [777, 1000, 3, 998];
    let shard = 192;
    let volumes = encoded(dir.path(), &sizes, 2, shard);
    let total = volumes.len();
    for a in 0..total {
        for b in a + 1..total {
            let out = tempfile::tempdir().unwrap();
            rebuild_and_compare(&volumes, sizes.len(), shard, &[a, b], out.path());
        }
    }
}

#[test]
fn one_data_volume_is_rebuilt_from_its_recovery_volume() {
    let dir = tempfile::tempdir().unwrap();
    let volumes = encoded(dir.path(), &[4096 + 64], 1, 1024);
    let out = tempfile::tempdir().unwrap();
    rebuild_and_compare(&volumes, 1, 1024, &[0], out.path());
}

#[test]
fn every_recovery_volume_lost_is_encoded_again() {
    let dir = tempfile::tempdir().unwrap();
    let volumes = encoded(dir.path(), &[5000, 6000, 5998], 3, 256);
    let out = tempfile::tempdir().unwrap();
    rebuild_and_compare(&volumes, 3, 256, &[3, 4, 5], out.path());
    // And a data volume with every recovery volume but one.
    let out = tempfile::tempdir().unwrap();
    rebuild_and_compare(&volumes, 3, 256, &[1, 3, 5], out.path());
}

#[test]
fn more_lost_than_recovery_volumes_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let volumes = encoded(dir.path(), &[512, 512, 512], 1, 128);
    let out = tempfile::tempdir().unwrap();
    let slots: Vec<Slot> = volumes
        .iter()
        .enumerate()
        .map(|(i, (path, b))| Slot {
            source: (i >= 2).then(|| path.clone()),
            size: b.len() as u64,
            target: (i < 2).then(|| Target { dest: out.path().join(format!("r.{i}")), sha256: Some(Digest::of(b)) }),
        })
        .collect();
    let e = run(3, 128, &slots, &Silent).unwrap_err();
    assert!(matches!(e, Error::Integrity(_)), "{e}");
    assert!(e.to_string().contains("2 of 4 volumes are lost"), "{e}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "nothing written");
}

#[test]
fn a_wrong_input_is_caught_by_the_signed_hash_and_nothing_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let volumes = encoded(dir.path(), &[1024, 1024], 2, 256);
    // Volume 1 changes after it was judged intact: the rebuilt volume 0 cannot match.
    let mut changed = volumes[1].1.clone();
    changed[300] ^= 1;
    std::fs::write(&volumes[1].0, &changed).unwrap();
    let out = tempfile::tempdir().unwrap();
    let slots: Vec<Slot> = volumes
        .iter()
        .enumerate()
        .map(|(i, (path, b))| Slot {
            source: (i != 0).then(|| path.clone()),
            size: 1024,
            target: (i == 0).then(|| Target { dest: out.path().join("r.0"), sha256: Some(Digest::of(b)) }),
        })
        .collect();
    let e = run(2, 256, &slots, &Silent).unwrap_err();
    assert!(matches!(e, Error::Integrity(_)), "{e}");
    assert!(e.to_string().contains("do not match the signed manifest"), "{e}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0, "no volume and no temp file left");
}

#[test]
fn a_truncated_input_is_an_integrity_error() {
    let dir = tempfile::tempdir().unwrap();
    let volumes = encoded(dir.path(), &[1024, 1024], 1, 256);
    std::fs::write(&volumes[1].0, &volumes[1].1[..500]).unwrap();
    let out = tempfile::tempdir().unwrap();
    let slots: Vec<Slot> = volumes
        .iter()
        .enumerate()
        .map(|(i, (path, b))| Slot {
            source: (i != 0).then(|| path.clone()),
            size: 1024,
            target: (i == 0).then(|| Target { dest: out.path().join("r.0"), sha256: Some(Digest::of(b)) }),
        })
        .collect();
    let e = run(2, 256, &slots, &Silent).unwrap_err();
    assert!(matches!(e, Error::Integrity(_)), "{e}");
    assert!(e.to_string().contains("ended before byte"), "{e}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn shard_sizes_keep_a_buffer_set_within_its_budget() {
    assert_eq!(shard_size(10, 2), MAX_CHOSEN_SHARD);
    let s = shard_size(100, 10);
    assert!(s % 64 == 0 && s * 110 <= SET_BUDGET && s >= MIN_CHOSEN_SHARD, "{s}");
    assert_eq!(shard_size(5000, 100), MIN_CHOSEN_SHARD);
}

#[test]
fn parity_amounts_are_counts_or_percentages_rounded_up() {
    let parse = |s: &str| s.parse::<Amount>();
    assert_eq!(parse("2").unwrap().count(10).unwrap(), 2);
    assert_eq!(parse("10%").unwrap().count(12).unwrap(), 2);
    assert_eq!(parse("1%").unwrap().count(3).unwrap(), 1);
    assert_eq!(parse("100%").unwrap().count(7).unwrap(), 7);
    for bad in ["0", "-1", "0%", "x", "5%%", "", "1001%"] {
        assert!(parse(bad).is_err(), "{bad}");
    }
    assert!(parse("5000").unwrap().count(3).is_err());
}

#[test]
fn coding_in_pieces_of_64_bytes_gives_the_same_volumes_as_whole_shards() {
    // Shards of 1000 bytes (not a multiple of 64) over volumes of up to 2998 bytes: pieces of
    // 64 bytes end inside every stripe, and the last stripe is shorter still.
    let dir = tempfile::tempdir().unwrap();
    let volumes = encoded(dir.path(), &[2998, 1500, 2000], 2, 1000);
    let pieced = tempfile::tempdir().unwrap();
    let slots: Vec<Slot> = volumes
        .iter()
        .enumerate()
        .map(|(i, (path, b))| Slot {
            source: (i < 3).then(|| path.clone()),
            size: if i < 3 { b.len() as u64 } else { 2998 },
            target: (i >= 3)
                .then(|| Target { dest: pieced.path().join(format!("p.{i}")), sha256: Some(Digest::of(b)) }),
        })
        .collect();
    run_in_pieces(3, 1000, 64, &slots, &Silent).expect("recovery volumes coded in pieces match");
    // And rebuilding two data volumes in pieces of 128 bytes.
    let out = tempfile::tempdir().unwrap();
    let slots: Vec<Slot> = volumes
        .iter()
        .enumerate()
        .map(|(i, (path, b))| Slot {
            source: (i >= 2).then(|| path.clone()),
            size: if i < 3 { b.len() as u64 } else { 2998 },
            target: (i < 2).then(|| Target { dest: out.path().join(format!("r.{i}")), sha256: Some(Digest::of(b)) }),
        })
        .collect();
    run_in_pieces(3, 1000, 128, &slots, &Silent).expect("volumes rebuilt in pieces match");
    assert!(std::fs::read(out.path().join("r.0")).unwrap() == volumes[0].1);
}

#[test]
fn pieces_across_stripes_of_a_multiple_of_64_give_the_same_volumes() {
    // Shards of 1024 bytes; pieces of 192 bytes run across stripe boundaries.
    let dir = tempfile::tempdir().unwrap();
    let volumes = encoded(dir.path(), &[5000, 4098, 4608], 2, 1024);
    let pieced = tempfile::tempdir().unwrap();
    let slots: Vec<Slot> = volumes
        .iter()
        .enumerate()
        .map(|(i, (path, b))| Slot {
            source: (i != 1 && i != 4).then(|| path.clone()),
            size: if i < 3 { b.len() as u64 } else { 5000 },
            target: (i == 1 || i == 4)
                .then(|| Target { dest: pieced.path().join(format!("p.{i}")), sha256: Some(Digest::of(b)) }),
        })
        .collect();
    run_in_pieces(3, 1024, 192, &slots, &Silent).expect("a data and a recovery volume rebuilt across stripes");
}

#[test]
fn pieces_keep_a_set_within_the_budget_whatever_the_shard() {
    assert_eq!(piece_size(1 << 20, 12), 128 << 10);
    assert_eq!(piece_size(64 << 20, 1024), SET_BUDGET / 1024);
    assert_eq!(piece_size(64 << 20, 65535), 256);
    assert_eq!(piece_size(1000, 3), 1000);
    assert_eq!(piece_size(1_000_000, 3), 128 << 10);
}
