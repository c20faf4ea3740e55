//! The writer's images parsed back field by field (a reader written from ECMA-119, SUSP
//! and RRIP here, independent of the writer's helpers); `tests/iso.rs` reads them with
//! xorriso, isoinfo, 7z and the kernel.

use super::*;
use crate::progress::Silent;

const S: usize = SECTOR as usize;
const TIME: u64 = 1_795_776_388; // 2026-11-27T10:46:28Z

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().unwrap())
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

/// A both-endian 32-bit field, checked to agree.
fn both(b: &[u8]) -> u32 {
    assert_eq!(le32(b), be32(&b[4..]), "both-endian halves differ");
    le32(b)
}

#[derive(Debug)]
struct Record {
    id: Vec<u8>,
    extent: u32,
    size: u32,
    flags: u8,
    time: [u8; 7],
    system_use: Vec<u8>,
}

/// Every record of the directory at `sector`, `len` bytes long; none crosses a sector.
fn records(image: &[u8], sector: u32, len: u32) -> Vec<Record> {
    let mut out = Vec::new();
    for s in 0..(len as usize / S) {
        let base = sector as usize * S + s * S;
        let mut at = 0;
        while at < S && image[base + at] != 0 {
            let r = &image[base + at..];
            let n = r[0] as usize;
            assert!(at + n <= S, "a record crosses a sector boundary");
            assert_eq!(n % 2, 0, "record lengths are even");
            let id_len = r[32] as usize;
            let su_start = 33 + id_len + usize::from(id_len % 2 == 0);
            out.push(Record {
                id: r[33..33 + id_len].to_vec(),
                extent: both(&r[2..10]),
                size: both(&r[10..18]),
                flags: r[25],
                time: r[18..25].try_into().unwrap(),
                system_use: r[su_start..n].to_vec(),
            });
            at += n;
        }
    }
    out
}

/// SUSP entries of a system use area: (signature, data after the 4-byte header).
fn susp(area: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= area.len() && area[at + 2] >= 4 {
        let len = area[at + 2] as usize;
        assert_eq!(area[at + 3], 1, "SUSP entry version");
        out.push((String::from_utf8_lossy(&area[at..at + 2]).into_owned(), area[at + 4..at + len].to_vec()));
        at += len;
    }
    out
}

fn entry<'a>(entries: &'a [(String, Vec<u8>)], sig: &str) -> &'a [u8] {
    &entries.iter().find(|(s, _)| s == sig).unwrap_or_else(|| panic!("no {sig} in {entries:?}")).1
}

fn ucs2(bytes: &[u8]) -> String {
    String::from_utf16(&bytes.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect::<Vec<_>>()).unwrap()
}

fn meta(name: &str, size: usize, mode: u32) -> Meta {
    Meta { name: name.into(), size: size as u64, mode }
}

fn contents(n: usize, size: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 31 + n * 7) as u8).collect()
}

/// The image of `files` (each name with its content) written to a temp file.
fn image(label: &str, files: &[(&str, Vec<u8>, u32)]) -> (Layout, Vec<u8>) {
    let metas: Vec<Meta> = files.iter().map(|(n, c, m)| meta(n, c.len(), *m)).collect();
    let layout = Layout::new(label, TIME, &metas).unwrap();
    let sources: Vec<Source> = files.iter().map(|(_, c, _)| Source::Bytes(c)).collect();
    let mut out = tempfile::tempfile().unwrap();
    let written = write(&layout, &sources, &mut out, Path::new("test.iso"), &Silent).unwrap();
    let mut bytes = Vec::new();
    std::io::Seek::rewind(&mut out).unwrap();
    out.read_to_end(&mut bytes).unwrap();
    assert_eq!(written, bytes.len() as u64);
    assert_eq!(layout.size(), bytes.len() as u64, "the layout knew the size");
    (layout, bytes)
}

fn three_files() -> Vec<(&'static str, Vec<u8>, u32)> {
    vec![
        ("ocp.manifest.json", contents(1, 3000), 0o644),
        ("airlift", contents(2, 5000), 0o755),
        ("ocp.0001.tar", contents(3, 4096), 0o644),
    ]
}

#[test]
fn the_volume_descriptors_say_what_the_image_is() {
    let (_, img) = image("OCP_1OF2", &three_files());
    assert!(img[..16 * S].iter().all(|&b| b == 0), "system area");
    let pvd = &img[16 * S..17 * S];
    assert_eq!(&pvd[..7], b"\x01CD001\x01");
    assert_eq!(&pvd[8..40], format!("{:32}", "LINUX").as_bytes());
    assert_eq!(&pvd[40..72], format!("{:32}", "OCP_1OF2").as_bytes());
    assert_eq!(both(&pvd[80..88]) as usize * S, img.len(), "volume space size");
    assert_eq!(&pvd[120..132], &[1, 0, 0, 1, 1, 0, 0, 1, 0, 8, 8, 0], "set size, sequence, block size");
    assert_eq!(both(&pvd[132..140]), 10, "path table size");
    assert_eq!((le32(&pvd[140..]), be32(&pvd[148..])), (19, 20), "L and M path tables");
    assert_eq!(&pvd[813..830], b"2026112710462800\0", "creation time");
    assert_eq!(&pvd[847..864], b"0000000000000000\0", "no expiry");
    assert_eq!(pvd[881], 1, "file structure version");
    assert!(String::from_utf8_lossy(&pvd[574..702]).starts_with("AIRLIFT "));
    let root = &pvd[156..190];
    assert_eq!((root[0], root[25], root[32], root[33]), (34, 2, 1, 0), "root record");
    assert_eq!(both(&root[2..10]), 24);

    let svd = &img[17 * S..18 * S];
    assert_eq!(&svd[..7], b"\x02CD001\x01");
    assert_eq!(&svd[88..91], b"%/E", "Joliet UCS-2 level 3");
    assert_eq!(ucs2(&svd[40..72]).trim_end(), "OCP_1OF2");
    assert_eq!((le32(&svd[140..]), be32(&svd[148..])), (21, 22));
    assert_eq!(&img[18 * S..18 * S + 7], b"\xffCD001\x01", "terminator");
}

#[test]
fn path_tables_name_the_root_of_each_tree() {
    let (_, img) = image("OCP_1OF1", &three_files());
    let primary_root = both(&img[16 * S + 158..]);
    let joliet_root = both(&img[17 * S + 158..]);
    assert_eq!(primary_root, 24);
    assert!(joliet_root > primary_root);
    for (sector, root, big) in [(19, primary_root, false), (20, primary_root, true), (21, joliet_root, false)] {
        let t = &img[sector * S..sector * S + 10];
        assert_eq!((t[0], t[1], t[8], t[9]), (1, 0, 0, 0), "one root entry, id 0x00");
        let (extent, parent) = match big {
            false => (le32(&t[2..]), u16::from_le_bytes([t[6], t[7]])),
            true => (be32(&t[2..]), u16::from_be_bytes([t[6], t[7]])),
        };
        assert_eq!((extent, parent), (root, 1), "path table in sector {sector}");
    }
}

#[test]
fn rock_ridge_gives_names_modes_and_times_and_is_announced() {
    let files = three_files();
    let (layout, img) = image("OCP_1OF1", &files);
    let recs = records(&img, 24, both(&img[16 * S + 166..]));
    let dot = susp(&recs[0].system_use);
    assert_eq!(dot[0], ("SP".to_string(), vec![0xBE, 0xEF, 0]), "SP first in the root's '.'");
    let ce = entry(&dot, "CE");
    let (block, offset, len) = (both(ce), both(&ce[8..]), both(&ce[16..]));
    assert_eq!((block, offset), (23, 0));
    let er = susp(&img[block as usize * S..block as usize * S + len as usize]);
    let er = entry(&er, "ER");
    assert_eq!(&er[4..4 + er[0] as usize], b"RRIP_1991A");
    assert_eq!(recs[1].id, [1], "'..'");
    assert_eq!(recs.len(), 2 + files.len());
    assert_eq!(recs[0].time, [126, 11, 27, 10, 46, 28, 0]);
    let ids: Vec<String> = recs[2..].iter().map(|r| String::from_utf8(r.id.clone()).unwrap()).collect();
    assert_eq!(ids, ["AIRLIFT.;1", "OCP_0001.TAR;1", "OCP_MANI.JSO;1"], "8.3 names in directory order");
    assert_eq!(layout.iso_names().collect::<Vec<_>>(), ["OCP_MANI.JSO;1", "AIRLIFT.;1", "OCP_0001.TAR;1"]);
    for r in &recs[2..] {
        let su = susp(&r.system_use);
        let name = String::from_utf8(entry(&su, "NM")[1..].to_vec()).unwrap();
        let (_, content, mode) = files.iter().find(|(n, _, _)| *n == name).unwrap();
        let px = entry(&su, "PX");
        assert_eq!((both(px), both(&px[8..])), (0o100_000 | mode, 1), "{name}: mode and links");
        assert_eq!(entry(&su, "TF")[0], 0b1110, "{name}: TF flags");
        assert_eq!(r.flags, 0);
        assert_eq!(r.extent % 2, 0, "{name}: data on a 4 KiB boundary (a reflink can share it)");
        let at = r.extent as usize * S;
        assert_eq!(&img[at..at + r.size as usize], &content[..], "{name}: data at its extent");
    }
}

#[test]
fn joliet_names_are_the_real_names_at_the_same_data() {
    let files = three_files();
    let (_, img) = image("OCP_1OF1", &files);
    let primary = records(&img, 24, both(&img[16 * S + 166..]));
    let joliet = records(&img, both(&img[17 * S + 158..]), both(&img[17 * S + 166..]));
    let names: Vec<String> = joliet[2..].iter().map(|r| ucs2(&r.id)).collect();
    assert_eq!(names, ["airlift", "ocp.0001.tar", "ocp.manifest.json"], "sorted by UCS-2");
    for r in &joliet[2..] {
        assert!(r.system_use.iter().all(|&b| b == 0), "no Rock Ridge in the Joliet tree");
        assert!(primary.iter().any(|p| (p.extent, p.size) == (r.extent, r.size)), "same extent as in the primary tree");
    }
}

#[test]
fn dozens_of_files_take_several_directory_sectors_and_stay_unique() {
    let files: Vec<(String, Vec<u8>, u32)> =
        (0..60).map(|i| (format!("a-long-bundle-name.{i:04}.tar"), contents(i, 100 + i), 0o644)).collect();
    let borrowed: Vec<(&str, Vec<u8>, u32)> = files.iter().map(|(n, c, m)| (n.as_str(), c.clone(), *m)).collect();
    let (layout, img) = image("LONG_1OF1", &borrowed);
    let names: Vec<&str> = layout.iso_names().collect();
    let unique: std::collections::HashSet<&&str> = names.iter().collect();
    assert_eq!(unique.len(), 60, "8.3 names are unique: {names:?}");
    assert!(names.iter().all(|n| n.len() <= 14), "8.3 with ;1");
    let dir_len = both(&img[16 * S + 166..]);
    assert!(dir_len as usize > S, "the primary directory spans sectors");
    let recs = records(&img, 24, dir_len);
    assert_eq!(recs.len(), 62);
    let joliet = records(&img, both(&img[17 * S + 158..]), both(&img[17 * S + 166..]));
    assert_eq!(joliet.len(), 62);
    for (name, content, _) in &files {
        let r = joliet[2..].iter().find(|r| ucs2(&r.id) == *name).unwrap();
        let at = r.extent as usize * S;
        assert_eq!(&img[at..at + content.len()], &content[..]);
    }
}

#[test]
fn the_same_inputs_give_the_same_bytes_and_the_size_is_known_first() {
    let (a, img_a) = image("OCP_2OF3", &three_files());
    let (_, img_b) = image("OCP_2OF3", &three_files());
    assert_eq!(img_a, img_b);
    // 24 fixed sectors, one sector per directory, then 2 + 3 (+ 1 to a 4 KiB boundary) + 2
    // data sectors.
    assert_eq!(a.size(), (24 + 2 + 8) * SECTOR);
}

#[test]
fn a_file_that_is_not_what_was_signed_never_lands_in_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.tar");
    std::fs::write(&path, contents(1, 5000)).unwrap();
    let layout = Layout::new("X_1OF1", TIME, &[meta("v.tar", 5000, 0o644)]).unwrap();
    let run = |sha256: Digest| {
        let src = [Source::File { path: path.clone(), sha256 }];
        write(&layout, &src, &mut tempfile::tempfile().unwrap(), Path::new("x.iso"), &Silent)
    };
    assert!(run(Digest::of(&contents(1, 5000))).is_ok());
    let e = run(Digest::of(b"other")).unwrap_err();
    assert!(matches!(e, crate::error::Error::Integrity(_)) && e.to_string().contains("the copy of v.tar"), "{e}");
    std::fs::write(&path, contents(1, 4999)).unwrap();
    let e = run(Digest::of(&contents(1, 5000))).unwrap_err();
    assert!(e.to_string().contains("is 4999 bytes, expected 5000"), "{e}");
}

#[test]
fn labels_and_names_an_image_cannot_hold_are_refused() {
    for label in ["", "ocp_1of1", &"A".repeat(33), "OCP-1"] {
        assert!(Layout::new(label, TIME, &[]).is_err(), "label {label:?}");
    }
    for name in ["", ".hidden", "a/b", "a;1", &"n".repeat(MAX_NAME + 1)] {
        assert!(Layout::new("OK", TIME, &[meta(name, 1, 0o644)]).is_err(), "name {name:?}");
    }
    assert!(Layout::new("OK", TIME, &[meta("big", (MAX_FILE + 1) as usize, 0o644)]).is_err());
    assert!(Layout::new("OK", TIME, &[meta("a", 1, 0o644), meta("a", 1, 0o644)]).is_err(), "twice");
    assert!(Layout::new("OK", TIME, &[meta(&"n".repeat(MAX_NAME), MAX_FILE as usize, 0o644)]).is_ok());
}
