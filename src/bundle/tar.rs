//! The volumes' tar framing. Pack writes every header with `header`; the reader rebuilds
//! the same bytes and compares, so a volume is accepted only if every byte outside the
//! chunks is exactly what airlift would have written.

use crate::error::Result;

pub const BLOCK: u64 = 512;
/// Two zero blocks end a tar archive.
pub const END_OF_ARCHIVE: u64 = 2 * BLOCK;

/// Bytes a chunk of `len` bytes occupies, padded to whole blocks.
pub fn padded(len: u64) -> u64 {
    len.div_ceil(BLOCK) * BLOCK
}

/// The ustar header of a regular-file entry.
pub fn header(name: &str, size: u64, mode: u32, mtime: u64) -> Result<[u8; 512]> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).map_err(|e| crate::error::usage(format!("tar entry name '{name}': {e}")))?;
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut out = [0u8; 512];
    out.copy_from_slice(h.as_bytes());
    Ok(out)
}

/// Describe a header that is not the expected one, naming what makes it unacceptable.
pub fn describe_unexpected(found: &[u8; 512], expected_name: &str) -> String {
    if found.iter().all(|&b| b == 0) {
        return format!("found an end-of-archive block where entry '{expected_name}' should start");
    }
    let mut h = tar::Header::new_old();
    h.as_mut_bytes().copy_from_slice(found);
    // Names and link targets in a header nobody signed: escaped before they are shown.
    let name = crate::text::untrusted_bytes(&h.path_bytes());
    let kind = h.entry_type();
    let link = h.link_name_bytes().map(|l| crate::text::untrusted_bytes(&l)).unwrap_or_default();
    let what = if kind.is_symlink() {
        format!("a symbolic link '{name}' -> '{link}'")
    } else if kind.is_hard_link() {
        format!("a hard link '{name}' -> '{link}'")
    } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
        format!("a device or fifo '{name}'")
    } else if kind.is_dir() {
        format!("a directory '{name}'")
    } else if !kind.is_file() {
        format!("an entry '{name}' of type {:?}", kind.as_byte() as char)
    } else if name.starts_with('/') {
        format!("an absolute path '{name}'")
    } else if name.split('/').any(|c| c == "..") {
        format!("a path escaping the tree '{name}'")
    } else if name != expected_name {
        format!("an entry '{name}' that is not in the manifest")
    } else {
        match h.size() {
            Ok(size) => format!("entry '{name}' with a header that differs from the manifest (size {size})"),
            Err(_) => format!("entry '{name}' with a corrupt header"),
        }
    };
    format!("unexpected tar entry: {what} where '{expected_name}' should be")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_deterministic_and_readable() {
        let a = header("blobs/sha256/abc", 1234, 0o644, 1_700_000_000).unwrap();
        let b = header("blobs/sha256/abc", 1234, 0o644, 1_700_000_000).unwrap();
        assert_eq!(a, b);
        let mut h = tar::Header::new_old();
        h.as_mut_bytes().copy_from_slice(&a);
        assert_eq!(h.size().unwrap(), 1234);
        assert_eq!(&*h.path().unwrap(), std::path::Path::new("blobs/sha256/abc"));
        assert_eq!(padded(0), 0);
        assert_eq!(padded(1), 512);
        assert_eq!(padded(512), 512);
    }

    #[test]
    fn unexpected_headers_are_named() {
        let mut sym = tar::Header::new_ustar();
        sym.set_path("evil").unwrap();
        sym.set_link_name("/etc/passwd").unwrap();
        sym.set_entry_type(tar::EntryType::Symlink);
        sym.set_cksum();
        let mut bytes = [0u8; 512];
        bytes.copy_from_slice(sym.as_bytes());
        assert!(describe_unexpected(&bytes, "index.json").contains("symbolic link"));
    }
}
