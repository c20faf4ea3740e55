//! Reading an image layer: a tar, plain or compressed (gzip, zstd), told apart by its first
//! bytes rather than its media type (registries and tools get those wrong). The one layer
//! reader: release payloads and catalog images are read through it.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use crate::error::{IoContext, Result};

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The layer at `path` as a tar archive, decompressed on the fly.
pub fn open_layer(path: &Path) -> Result<tar::Archive<Box<dyn Read>>> {
    let mut file = BufReader::with_capacity(1 << 20, File::open(path).at(path)?);
    let head = file.fill_buf().at(path)?;
    let reader: Box<dyn Read> = if head.starts_with(&GZIP_MAGIC) {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else if head.starts_with(&ZSTD_MAGIC) {
        Box::new(zstd::stream::read::Decoder::with_buffer(file).at(path)?)
    } else {
        Box::new(file)
    };
    Ok(tar::Archive::new(reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_plain_gzip_and_zstd_layers() {
        let mut builder = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(2);
        h.set_mode(0o644);
        builder.append_data(&mut h, "a/b", &b"hi"[..]).unwrap();
        let tar = builder.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in
            [("plain", tar.clone()), ("gzip", gz.finish().unwrap()), ("zstd", zstd::encode_all(&tar[..], 3).unwrap())]
        {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let mut archive = open_layer(&path).unwrap();
            let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
            assert_eq!(entry.path().unwrap().to_str(), Some("a/b"), "{name}");
            let mut text = String::new();
            entry.read_to_string(&mut text).unwrap();
            assert_eq!(text, "hi", "{name}");
        }
    }
}
