//! The bytes of ISO 9660 structures (ECMA-119), Joliet, and the SUSP / Rock Ridge
//! (RRIP 1.10, `RRIP_1991A`) entries: volume descriptors, path tables, directory records,
//! names. Nothing here reads a file.

use std::cmp::Ordering;

use super::{Meta, SECTOR};

/// One directory tree: where its root directory is and how long.
pub(super) struct Tree {
    pub directory: u32,
    pub sectors: u32,
    pub joliet: bool,
}

const DIRECTORY_FLAG: u8 = 2;
const SYSTEM_ID: &str = "LINUX";
const RRIP_ID: &str = "RRIP_1991A";
const RRIP_DESCRIPTOR: &str = "THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const RRIP_SOURCE: &str = "PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  SEE PUBLISHER IDENTIFIER IN \
                           PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";
/// Joliet's escape sequence for UCS-2 level 3.
const JOLIET_ESCAPE: &[u8] = b"%/E";
const DIRECTORY_MODE: u32 = 0o040_755;
const FILE_TYPE: u32 = 0o100_000;

/// A 16-bit number both little- and big-endian (ECMA-119 7.2.3).
pub(super) fn both16(v: u16) -> [u8; 4] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], b[0], b[1]]
}

/// A 32-bit number both little- and big-endian (ECMA-119 7.3.3).
pub(super) fn both32(v: u32) -> [u8; 8] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], l[2], l[3], b[0], b[1], b[2], b[3]]
}

/// The 8.3 names of `names`, in their order: `BASE.EXT;1` of uppercase d-characters
/// (anything else becomes `_`), the base cut to 8 and the extension to 3 after the last
/// dot; a name taken already gets a number at the end of its base.
pub(super) fn iso_names<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    let d = |s: &str, max: usize| -> String {
        s.bytes()
            .map(|b| if b.is_ascii_alphanumeric() { b.to_ascii_uppercase() as char } else { '_' })
            .take(max)
            .collect()
    };
    let mut taken = std::collections::HashSet::new();
    let mut out = Vec::new();
    for name in names {
        let (base, ext) = name.rsplit_once('.').unwrap_or((name, ""));
        let (base, ext) = (d(base, 8), d(ext, 3));
        let base = if base.is_empty() { "_".to_string() } else { base };
        let mut candidate = format!("{base}.{ext};1");
        let mut n = 0u32;
        while !taken.insert(candidate.clone()) {
            n += 1;
            let tail = n.to_string();
            let keep = base.len().min(8 - tail.len().min(8));
            candidate = format!("{}{tail}.{ext};1", &base[..keep]);
        }
        out.push(candidate);
    }
    out
}

/// Directory order of two 8.3 names (ECMA-119 9.3): by base, then extension, each as if
/// padded with spaces, which for d-characters is plain byte order.
pub(super) fn iso_order(a: &str, b: &str) -> Ordering {
    let split = |s: &str| {
        let s = s.split(';').next().unwrap_or(s);
        let (base, ext) = s.split_once('.').unwrap_or((s, ""));
        (base.to_string(), ext.to_string())
    };
    split(a).cmp(&split(b))
}

/// `s` in UCS-2 big-endian (Joliet); airlift's names are ASCII.
fn ucs2(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|c| c.to_be_bytes()).collect()
}

/// A 7-byte directory record time (ECMA-119 9.1.5), UTC.
pub(super) fn short_time(secs: u64) -> [u8; 7] {
    let c = crate::time::civil(secs);
    let year = (c.year - 1900).clamp(0, 255) as u8;
    [year, c.month, c.day, c.hour, c.minute, c.second, 0]
}

/// A 17-byte volume descriptor time (ECMA-119 8.4.26.1), UTC.
fn long_time(secs: u64) -> [u8; 17] {
    let c = crate::time::civil(secs);
    let text =
        format!("{:04}{:02}{:02}{:02}{:02}{:02}00", c.year.clamp(0, 9999), c.month, c.day, c.hour, c.minute, c.second);
    let mut out = [0u8; 17];
    out[..16].copy_from_slice(text.as_bytes());
    out
}

/// "Not specified" (ECMA-119 8.4.26.1): sixteen `0` digits and a zero offset.
fn no_time() -> [u8; 17] {
    let mut out = [b'0'; 17];
    out[16] = 0;
    out
}

/// A directory record (ECMA-119 9.1): its length made even, system use appended.
fn directory_record(id: &[u8], extent: u32, len: u32, flags: u8, time: &[u8; 7], system_use: &[u8]) -> Vec<u8> {
    let mut r = vec![0u8; 2];
    r.extend_from_slice(&both32(extent));
    r.extend_from_slice(&both32(len));
    r.extend_from_slice(time);
    r.extend_from_slice(&[flags, 0, 0]);
    r.extend_from_slice(&both16(1));
    r.push(id.len() as u8);
    r.extend_from_slice(id);
    if id.len() % 2 == 0 {
        r.push(0);
    }
    r.extend_from_slice(system_use);
    if r.len() % 2 == 1 {
        r.push(0);
    }
    r[0] = r.len() as u8;
    r
}

/// A tree's `.` and `..`. The primary tree's `.` starts its system use with SUSP's SP
/// and points (CE) to the Rock Ridge ER in sector `continuation`.
pub(super) fn dot_records(tree: &Tree, time: &[u8; 7], continuation: u32) -> Vec<Vec<u8>> {
    let len = tree.sectors * SECTOR as u32;
    let (mut dot, mut dotdot) = (Vec::new(), Vec::new());
    if !tree.joliet {
        dot.extend_from_slice(&sp());
        dot.extend_from_slice(&px(DIRECTORY_MODE, 2));
        dot.extend_from_slice(&tf(time));
        dot.extend_from_slice(&ce(continuation, er().len() as u32));
        dotdot.extend_from_slice(&px(DIRECTORY_MODE, 2));
        dotdot.extend_from_slice(&tf(time));
    }
    vec![
        directory_record(&[0], tree.directory, len, DIRECTORY_FLAG, time, &dot),
        directory_record(&[1], tree.directory, len, DIRECTORY_FLAG, time, &dotdot),
    ]
}

/// A file in the primary tree: its 8.3 name, Rock Ridge PX, TF and NM (the real name).
pub(super) fn primary_record(meta: &Meta, iso_name: &str, sector: u32, time: &[u8; 7]) -> Vec<u8> {
    let mut su = px(FILE_TYPE | (meta.mode & 0o7777), 1).to_vec();
    su.extend_from_slice(&tf(time));
    su.extend_from_slice(&nm(&meta.name));
    directory_record(iso_name.as_bytes(), sector, meta.size as u32, 0, time, &su)
}

/// A file in the Joliet tree: its real name in UCS-2.
pub(super) fn joliet_record(meta: &Meta, sector: u32, time: &[u8; 7]) -> Vec<u8> {
    directory_record(&ucs2(&meta.name), sector, meta.size as u32, 0, time, &[])
}

/// Sectors the records take, none crossing a sector boundary (ECMA-119 6.8.1.1).
pub(super) fn directory_sectors(records: &[Vec<u8>]) -> u32 {
    let mut sectors = 1u32;
    let mut used = 0usize;
    for r in records {
        if used + r.len() > SECTOR as usize {
            sectors += 1;
            used = 0;
        }
        used += r.len();
    }
    sectors
}

/// The records laid into `sectors` sectors as [`directory_sectors`] counts them.
pub(super) fn pack(records: &[Vec<u8>], sectors: u32) -> Vec<u8> {
    let mut out = vec![0u8; sectors as usize * SECTOR as usize];
    let (mut sector, mut used) = (0usize, 0usize);
    for r in records {
        if used + r.len() > SECTOR as usize {
            sector += 1;
            used = 0;
        }
        let at = sector * SECTOR as usize + used;
        out[at..at + r.len()].copy_from_slice(r);
        used += r.len();
    }
    out
}

/// A path table of the one (root) directory (ECMA-119 9.4), L or M.
pub(super) fn path_table(directory: u32, big_endian: bool) -> Vec<u8> {
    let extent = if big_endian { directory.to_be_bytes() } else { directory.to_le_bytes() };
    let parent = if big_endian { 1u16.to_be_bytes() } else { 1u16.to_le_bytes() };
    let mut t = vec![1, 0];
    t.extend_from_slice(&extent);
    t.extend_from_slice(&parent);
    t.extend_from_slice(&[0, 0]);
    t
}

/// Bytes of one path table.
const PATH_TABLE_SIZE: u32 = 10;

/// `text` padded with spaces to `len` bytes: a-/d-characters, or UCS-2 for Joliet.
fn field(text: &str, len: usize, joliet: bool) -> Vec<u8> {
    let mut out = match joliet {
        true => ucs2(text).into_iter().take(len / 2 * 2).collect::<Vec<_>>(),
        false => text.bytes().take(len).collect(),
    };
    while out.len() < len {
        out.extend_from_slice(if joliet { &[0, b' '] } else { b" " });
    }
    out.truncate(len);
    out
}

/// The primary (or, for the Joliet tree, supplementary) volume descriptor (ECMA-119 8.4).
pub(super) fn volume_descriptor(label: &str, time: u64, sectors: u32, tree: &Tree) -> Vec<u8> {
    let j = tree.joliet;
    let mut d = vec![if j { 2 } else { 1 }];
    d.extend_from_slice(b"CD001\x01\x00");
    d.extend(field(SYSTEM_ID, 32, j));
    d.extend(field(label, 32, j));
    d.extend_from_slice(&[0; 8]);
    d.extend_from_slice(&both32(sectors));
    let mut escapes = [0u8; 32];
    if j {
        escapes[..3].copy_from_slice(JOLIET_ESCAPE);
    }
    d.extend_from_slice(&escapes);
    d.extend_from_slice(&both16(1)); // volume set size
    d.extend_from_slice(&both16(1)); // volume sequence number
    d.extend_from_slice(&both16(SECTOR as u16));
    d.extend_from_slice(&both32(PATH_TABLE_SIZE));
    let l_table = super::PATH_TABLES + if j { 2 } else { 0 };
    d.extend_from_slice(&l_table.to_le_bytes());
    d.extend_from_slice(&[0; 4]);
    d.extend_from_slice(&(l_table + 1).to_be_bytes());
    d.extend_from_slice(&[0; 4]);
    let short = short_time(time);
    d.extend(directory_record(&[0], tree.directory, tree.sectors * SECTOR as u32, DIRECTORY_FLAG, &short, &[]));
    d.extend(field(label, 128, j)); // volume set
    d.extend(field("", 128, j)); // publisher
    d.extend(field("", 128, j)); // data preparer
    d.extend(field(&format!("AIRLIFT {}", env!("CARGO_PKG_VERSION")), 128, j));
    for _ in 0..3 {
        d.extend(field("", 37, j)); // copyright, abstract, bibliographic files
    }
    d.extend_from_slice(&long_time(time)); // created
    d.extend_from_slice(&long_time(time)); // modified
    d.extend_from_slice(&no_time()); // expires
    d.extend_from_slice(&no_time()); // effective
    d.extend_from_slice(&[1, 0]); // file structure version
    d.resize(SECTOR as usize, 0);
    d
}

pub(super) fn terminator() -> Vec<u8> {
    let mut d = vec![255];
    d.extend_from_slice(b"CD001\x01");
    d.resize(SECTOR as usize, 0);
    d
}

/// SUSP SP: the system use area is SUSP's, nothing skipped.
fn sp() -> [u8; 7] {
    [b'S', b'P', 7, 1, 0xBE, 0xEF, 0]
}

/// SUSP CE: the rest of the system use area is `len` bytes at the start of `sector`.
fn ce(sector: u32, len: u32) -> Vec<u8> {
    let mut e = vec![b'C', b'E', 28, 1];
    e.extend_from_slice(&both32(sector));
    e.extend_from_slice(&both32(0));
    e.extend_from_slice(&both32(len));
    e
}

/// SUSP ER: the extension in use is Rock Ridge.
pub(super) fn er() -> Vec<u8> {
    let mut e = vec![b'E', b'R', 0, 1, RRIP_ID.len() as u8, RRIP_DESCRIPTOR.len() as u8, RRIP_SOURCE.len() as u8, 1];
    e.extend_from_slice(RRIP_ID.as_bytes());
    e.extend_from_slice(RRIP_DESCRIPTOR.as_bytes());
    e.extend_from_slice(RRIP_SOURCE.as_bytes());
    e[2] = e.len() as u8;
    e
}

/// Rock Ridge PX: mode, links, owner and group root (RRIP 1.10, without a serial number).
fn px(mode: u32, links: u32) -> [u8; 36] {
    let mut e = [0u8; 36];
    e[..4].copy_from_slice(&[b'P', b'X', 36, 1]);
    e[4..12].copy_from_slice(&both32(mode));
    e[12..20].copy_from_slice(&both32(links));
    e[20..28].copy_from_slice(&both32(0));
    e[28..36].copy_from_slice(&both32(0));
    e
}

/// Rock Ridge TF: modification, access and attribute change times.
fn tf(time: &[u8; 7]) -> Vec<u8> {
    let mut e = vec![b'T', b'F', 5 + 3 * 7, 1, 0b1110];
    for _ in 0..3 {
        e.extend_from_slice(time);
    }
    e
}

/// Rock Ridge NM: the file's real name, whole.
fn nm(name: &str) -> Vec<u8> {
    let mut e = vec![b'N', b'M', 5 + name.len() as u8, 1, 0];
    e.extend_from_slice(name.as_bytes());
    e
}
