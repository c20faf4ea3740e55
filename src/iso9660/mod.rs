//! ISO 9660 images of one flat directory, written by airlift itself: byte-exact and
//! reproducible (every time is the one given, nothing random), file data streamed (a
//! reflink through `copy_file_range` on XFS and btrfs) and read back to check its sha256.
//!
//! What an image holds, sector by sector (2048 bytes each):
//!
//! ```text
//! 0..16   system area (zeros)
//! 16      primary volume descriptor: ISO 9660 names (8.3, uppercase, unique)
//! 17      supplementary volume descriptor: Joliet (UCS-2, level 3), the real names
//! 18      volume descriptor set terminator
//! 19, 20  the primary tree's path tables, L (little-endian) and M (big-endian)
//! 21, 22  the Joliet tree's path tables, L and M
//! 23      the continuation area of the root's Rock Ridge entries (its ER)
//! 24..    the primary root directory (SUSP SP and CE, Rock Ridge PX, TF, NM), then the
//!         Joliet root directory, each as many sectors as its records take
//! then    each file's data, from a 4 KiB boundary, zero-padded to the next sector
//! ```
//!
//! Files are single extents, so each is below 4 GiB (what ISO 9660 level 1 to 3 and
//! FAT32 allow); names are 1 to [`MAX_NAME`] letters, digits, `.`, `_`, `-`. Linux
//! reads the Rock Ridge names (and modes), Windows the Joliet ones, anything the 8.3.

mod records;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use crate::digest::{Digest, Hasher};
use crate::error::{integrity, usage, IoContext, Result};
use crate::progress::Progress;

pub const SECTOR: u64 = 2048;
/// Longest file name: what Joliet readers take (103 UCS-2 characters, as `mkisofs
/// -joliet-long` writes) and what fits one directory record with its Rock Ridge name.
pub const MAX_NAME: usize = 103;
/// Largest file: one extent, its length a 32-bit field.
pub const MAX_FILE: u64 = u32::MAX as u64;

const PRIMARY: u32 = 16;
const JOLIET: u32 = 17;
const TERMINATOR: u32 = 18;
const PATH_TABLES: u32 = 19;
const CONTINUATION: u32 = 23;
const FIRST_DIRECTORY: u32 = 24;
/// Every file's data starts on a 4 KiB boundary (two sectors): a filesystem of 4 KiB
/// blocks can then share a volume's blocks with the image (`copy_file_range` makes a
/// reflink on XFS and btrfs) instead of copying them.
const ALIGN: u64 = 2;

/// A file of the image: its name (Rock Ridge and Joliet), size and mode (Rock Ridge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub name: String,
    pub size: u64,
    pub mode: u32,
}

/// Where a file's bytes come from, and what they must hash to.
pub enum Source<'a> {
    Bytes(&'a [u8]),
    /// A file of exactly the size in its [`Meta`], whose content has this sha256.
    File {
        path: PathBuf,
        sha256: Digest,
    },
}

/// Where everything of an image goes; its size is known before a byte is written.
#[derive(Debug, Clone)]
pub struct Layout {
    label: String,
    time: u64,
    /// In data order, each with its 8.3 name and first sector.
    files: Vec<Placed>,
    /// Indexes into `files` in each tree's directory order.
    primary_order: Vec<usize>,
    joliet_order: Vec<usize>,
    primary_sectors: u32,
    joliet_sectors: u32,
    sectors: u32,
}

#[derive(Debug, Clone)]
struct Placed {
    meta: Meta,
    iso_name: String,
    sector: u32,
}

impl Layout {
    /// Lay out an image labelled `label` (its volume identifier: 1 to 32 of `A`–`Z`,
    /// `0`–`9`, `_`) holding `files` in that order, every time `time` (seconds since
    /// the epoch).
    pub fn new(label: &str, time: u64, files: &[Meta]) -> Result<Layout> {
        check_label(label)?;
        check_names(files)?;
        let iso_names = records::iso_names(files.iter().map(|f| f.name.as_str()));
        let mut primary_order: Vec<usize> = (0..files.len()).collect();
        primary_order.sort_by(|&a, &b| records::iso_order(&iso_names[a], &iso_names[b]));
        let mut joliet_order: Vec<usize> = (0..files.len()).collect();
        joliet_order.sort_by(|&a, &b| files[a].name.cmp(&files[b].name));
        let files = files.iter().zip(iso_names).map(|(m, n)| Placed { meta: m.clone(), iso_name: n, sector: 0 });
        let mut layout = Layout {
            label: label.to_string(),
            time,
            files: files.collect(),
            primary_order,
            joliet_order,
            primary_sectors: 0,
            joliet_sectors: 0,
            sectors: 0,
        };
        // Where things are does not change how long their records are.
        layout.primary_sectors = records::directory_sectors(&layout.records(&layout.tree(false)));
        layout.joliet_sectors = records::directory_sectors(&layout.records(&layout.tree(true)));
        let mut next = u64::from(layout.first_data());
        for f in &mut layout.files {
            next = next.next_multiple_of(ALIGN);
            f.sector = u32::try_from(next).map_err(|_| too_large(label))?;
            next += f.meta.size.div_ceil(SECTOR);
        }
        layout.sectors = u32::try_from(next).map_err(|_| too_large(label))?;
        Ok(layout)
    }

    /// Bytes of the whole image.
    pub fn size(&self) -> u64 {
        u64::from(self.sectors) * SECTOR
    }

    /// The 8.3 name (with `;1`) each file has in the primary tree, in the order given.
    pub fn iso_names(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|f| f.iso_name.as_str())
    }

    fn first_data(&self) -> u32 {
        FIRST_DIRECTORY + self.primary_sectors + self.joliet_sectors
    }

    /// The primary tree (8.3 names with Rock Ridge) or the Joliet tree.
    fn tree(&self, joliet: bool) -> records::Tree {
        match joliet {
            false => records::Tree { directory: FIRST_DIRECTORY, sectors: self.primary_sectors, joliet },
            true => records::Tree {
                directory: FIRST_DIRECTORY + self.primary_sectors,
                sectors: self.joliet_sectors,
                joliet,
            },
        }
    }

    /// Everything before the first file's data: system area, descriptors, path tables,
    /// the continuation area and both directories.
    fn head(&self) -> Vec<u8> {
        let mut head = vec![0u8; self.first_data() as usize * SECTOR as usize];
        let put = |head: &mut Vec<u8>, sector: u32, bytes: &[u8]| {
            let at = sector as usize * SECTOR as usize;
            head[at..at + bytes.len()].copy_from_slice(bytes);
        };
        let (primary, joliet) = (self.tree(false), self.tree(true));
        put(&mut head, PRIMARY, &records::volume_descriptor(&self.label, self.time, self.sectors, &primary));
        put(&mut head, JOLIET, &records::volume_descriptor(&self.label, self.time, self.sectors, &joliet));
        put(&mut head, TERMINATOR, &records::terminator());
        for (i, (tree, big_endian)) in
            [(&primary, false), (&primary, true), (&joliet, false), (&joliet, true)].into_iter().enumerate()
        {
            put(&mut head, PATH_TABLES + i as u32, &records::path_table(tree.directory, big_endian));
        }
        put(&mut head, CONTINUATION, &records::er());
        for tree in [primary, joliet] {
            put(&mut head, tree.directory, &records::pack(&self.records(&tree), tree.sectors));
        }
        head
    }

    /// A tree's root directory records: `.`, `..`, then its files in the tree's order.
    fn records(&self, tree: &records::Tree) -> Vec<Vec<u8>> {
        let time = records::short_time(self.time);
        let mut records = records::dot_records(tree, &time, CONTINUATION);
        let order = if tree.joliet { &self.joliet_order } else { &self.primary_order };
        for &i in order {
            let f = &self.files[i];
            records.push(match tree.joliet {
                true => records::joliet_record(&f.meta, f.sector, &time),
                false => records::primary_record(&f.meta, &f.iso_name, f.sector, &time),
            });
        }
        records
    }
}

/// Write the image of `layout` to `out` (at its start; `path` names it in errors), the
/// data of file `i` from `sources[i]`, each copy read back and checked against its
/// sha256. Returns the bytes written.
pub fn write(layout: &Layout, sources: &[Source], out: &mut File, path: &Path, progress: &dyn Progress) -> Result<u64> {
    if sources.len() != layout.files.len() {
        return Err(usage("internal: an image's sources do not match its layout"));
    }
    out.write_all(&layout.head()).at(path)?;
    let mut pos = u64::from(layout.first_data()) * SECTOR;
    for (file, source) in layout.files.iter().zip(sources) {
        let start = u64::from(file.sector) * SECTOR;
        out.write_all(&vec![0u8; (start - pos) as usize]).at(path)?;
        pos = start;
        let size = file.meta.size;
        let (expected, actual) = match source {
            Source::Bytes(bytes) => {
                if bytes.len() as u64 != size {
                    return Err(usage("internal: an image's bytes do not match their size"));
                }
                out.write_all(bytes).at(path)?;
                progress.advance(size);
                (Digest::of(bytes), hash_back(out, path, pos, [size], progress)?)
            }
            Source::File { path: from, sha256 } => (sha256.clone(), copy_file(from, size, out, (path, pos), progress)?),
        };
        if actual != expected {
            return Err(integrity(format!(
                "{}: the copy of {} hashes to {actual}, expected {expected}: it changed since it was written",
                path.display(),
                file.meta.name
            )));
        }
        pos += size;
    }
    out.write_all(&vec![0u8; (layout.size() - pos) as usize]).at(path)?;
    out.flush().at(path)?;
    Ok(layout.size())
}

/// Bytes copied at a time; each piece is read back and hashed while the next is copied.
const COPY_CHUNK: u64 = 64 << 20;

/// Filesystems on which `copy_file_range` shares the blocks (a reflink) instead of copying
/// them: XFS and btrfs (`statfs`'s `f_type`).
const SHARING_FILESYSTEMS: [rustix::fs::FsWord; 2] = [0x5846_5342, 0x9123_683E];

/// Append the `size` bytes of the file `from` to `out` (at `at` of the image `path`),
/// each piece read back from `out` and hashed on another thread while the next is
/// copied. Returns the sha256 of what `out` now holds there. Where the filesystem shares
/// blocks, pieces are copied with `copy_file_range` (std's `io::copy` of File to File),
/// costing no space; elsewhere through a buffer: on ext4 the kernel's copy (a splice
/// through a 64 KiB pipe) measured half as fast as `cat` (bench/README.md).
fn copy_file(
    from: &Path,
    size: u64,
    out: &mut File,
    (path, at): (&Path, u64),
    progress: &dyn Progress,
) -> Result<Digest> {
    let file = crate::media::open_regular(from, "a file for a disc image")?
        .ok_or_else(|| usage(format!("{}: missing, cannot be put in {}", from.display(), path.display())))?;
    let actual = file.metadata().at(from)?.len();
    if actual != size {
        return Err(integrity(format!("{} is {actual} bytes, expected {size}", from.display())));
    }
    let share = rustix::fs::fstatfs(&*out).is_ok_and(|fs| SHARING_FILESYSTEMS.contains(&fs.f_type));
    let mut buf = if share { Vec::new() } else { vec![0u8; 1 << 20] };
    let reader = out.try_clone().at(path)?;
    let (tx, rx) = sync_channel::<u64>(4);
    std::thread::scope(|scope| {
        let hasher = scope.spawn(move || hash_back(&reader, path, at, rx, progress));
        let mut copied = Ok(());
        let mut done = 0;
        while done < size && copied.is_ok() {
            let n = (size - done).min(COPY_CHUNK);
            copied = match copy_piece(&file, from, n, out, path, &mut buf) {
                Ok(got) if got == n => Ok(()),
                Ok(got) => Err(integrity(format!("{} ended after {} of {size} bytes", from.display(), done + got))),
                Err(e) => Err(e),
            };
            done += n;
            progress.advance(n);
            // A closed channel: the hasher stopped at an error, which is returned below.
            if copied.is_ok() && tx.send(n).is_err() {
                break;
            }
        }
        drop(tx);
        let hashed = hasher.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        copied.and(hashed)
    })
}

/// Copy up to `n` bytes of `file` to `out`: in the kernel when `buf` is empty, else
/// through it. The bytes copied (fewer only at the end of `file`).
fn copy_piece(file: &File, from: &Path, n: u64, out: &mut File, path: &Path, buf: &mut [u8]) -> Result<u64> {
    if buf.is_empty() {
        return std::io::copy(&mut file.take(n), out).at(from);
    }
    let mut done = 0;
    while done < n {
        let want = (n - done).min(buf.len() as u64) as usize;
        let got = match (&*file).read(&mut buf[..want]) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => r.at(from)?,
        };
        if got == 0 {
            break;
        }
        out.write_all(&buf[..got]).at(path)?;
        done += got as u64;
    }
    Ok(done)
}

/// Hash what `out` holds from `at`: each length received is read back (from the page
/// cache, just written) in order. The sha256 of it all.
fn hash_back(
    out: &File,
    path: &Path,
    at: u64,
    pieces: impl IntoIterator<Item = u64>,
    progress: &dyn Progress,
) -> Result<Digest> {
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut pos = at;
    for len in pieces {
        let end = pos + len;
        while pos < end {
            let n = (end - pos).min(buf.len() as u64) as usize;
            out.read_exact_at(&mut buf[..n], pos).at(path)?;
            hasher.update(&buf[..n]);
            pos += n as u64;
        }
        progress.advance(len);
    }
    Ok(hasher.finish())
}

fn check_label(label: &str) -> Result<()> {
    let ok = !label.is_empty()
        && label.len() <= 32
        && label.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    match ok {
        true => Ok(()),
        false => Err(usage(format!("'{label}' is not an ISO 9660 volume label (1-32 of A-Z, 0-9, _)"))),
    }
}

fn check_names(files: &[Meta]) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for f in files {
        let ok = !f.name.is_empty()
            && f.name.len() <= MAX_NAME
            && !f.name.starts_with('.')
            && f.name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(usage(format!(
                "'{}' cannot be a file name in a disc image (1-{MAX_NAME} letters, digits, '.', '_', '-')",
                f.name.escape_debug()
            )));
        }
        if f.size > MAX_FILE {
            return Err(usage(format!("{} is {} bytes, more than one ISO 9660 extent holds", f.name, f.size)));
        }
        if !seen.insert(f.name.as_str()) {
            return Err(usage(format!("'{}' is twice in one disc image", f.name)));
        }
    }
    Ok(())
}

fn too_large(label: &str) -> crate::error::Error {
    usage(format!("disc image {label} would exceed 2^32 sectors"))
}
