//! `pack --iso`: one ISO 9660 image per disc of a written bundle (`NAME.discNN.iso`),
//! each holding that disc's volume files and what every disc carries ([`discs::files`]),
//! every file checked against what was signed as it is copied in. An image is committed
//! (temp file, fsync, rename) before the next is started; unless the volumes are kept,
//! that disc's volume files are removed then, so the directory never holds much more than
//! the bundle and one image. The four small signed files stay, so `list` and `verify` of
//! the directory still name the bundle.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::bundle::discs::{self, Origin};
use crate::bundle::manifest::Manifest;
use crate::bundle::names;
use crate::bundle::sign::Signed;
use crate::error::{usage, IoContext, Result};
use crate::iso9660::{self, Source};
use crate::minisign::PublicKey;
use crate::progress::Progress;
use crate::store::{commit_file, sync_dir, temp_in, Commit};

/// A disc image written.
#[derive(Debug, Clone, Serialize)]
pub struct DiscImage {
    /// Its file name in the bundle directory.
    pub file: String,
    /// The disc's label (the image's volume identifier).
    pub label: String,
    /// Its bytes.
    pub size: u64,
    /// The volume files on it.
    pub volumes: Vec<String>,
}

/// What writing the images needs besides the bundle.
pub struct Images<'a> {
    /// The bundle directory: the volumes are read there, the images written there.
    pub dir: &'a Path,
    /// Checks the signatures copied onto every disc.
    pub key: &'a PublicKey,
    /// The airlift executable the bundle carries (`files/airlift`), if it does.
    pub executable: Option<PathBuf>,
    /// Leave the volume files in place once their disc's image is written.
    pub keep_volumes: bool,
}

/// Write the image of every disc of `m` (which has a disc plan), in order.
pub fn write_images(m: &Manifest, how: &Images, progress: &dyn Progress) -> Result<Vec<DiscImage>> {
    let plan =
        m.discs.as_ref().ok_or_else(|| usage("--iso needs a disc medium (--media dvd|dvd-dl|bd25 or --disc-size)"))?;
    let signed = Signed::load(how.dir, m, how.key)?;
    let data: u64 = (0..plan.discs.len())
        .map(|n| {
            let readme = discs::readme(m, n);
            discs::files(m, &signed, readme.as_bytes(), n).iter().map(|f| f.meta.size).sum::<u64>()
        })
        .sum();
    // Each byte is copied, then read back and hashed.
    progress.start("disc images", 2 * data);
    let written = (plan.discs.iter().enumerate())
        .map(|(n, disc)| {
            let file = names::iso_file(&m.name, n + 1, plan.discs.len());
            let size = write_image(m, &signed, n, &how.dir.join(&file), how, progress)?;
            if size > plan.capacity {
                return Err(usage(format!("internal: {file} is {size} bytes, more than a disc's {}", plan.capacity)));
            }
            if !how.keep_volumes {
                remove_volumes(how.dir, &disc.files)?;
            }
            Ok(DiscImage { file, label: disc.label.clone(), size, volumes: disc.files.clone() })
        })
        .collect::<Result<Vec<_>>>();
    progress.finish();
    let images = written?;
    remove_stale_images(how.dir, &m.name, &images)?;
    Ok(images)
}

/// Remove `files` (a disc's volume files, now in its image) from `dir`, durably.
fn remove_volumes(dir: &Path, files: &[String]) -> Result<()> {
    for f in files {
        let path = dir.join(f);
        std::fs::remove_file(&path).at(&path)?;
    }
    sync_dir(&dir.join("."))
}

/// Write and commit the image of disc `n` at `dest`; its bytes.
fn write_image(
    m: &Manifest,
    signed: &Signed,
    n: usize,
    dest: &Path,
    how: &Images,
    progress: &dyn Progress,
) -> Result<u64> {
    let readme = discs::readme(m, n);
    let files = discs::files(m, signed, readme.as_bytes(), n);
    let layout = discs::layout_of(m, n, &files)?;
    let sources = files
        .iter()
        .map(|f| match &f.origin {
            Origin::Bytes(b) => Ok(Source::Bytes(b)),
            Origin::Volume(v) => Ok(Source::File { path: how.dir.join(&v.file), sha256: v.sha256.clone() }),
            Origin::Installer(e) => match &how.executable {
                Some(path) => Ok(Source::File { path: path.clone(), sha256: e.digest.clone() }),
                None => Err(usage("internal: the bundle carries airlift but its executable was not given")),
            },
        })
        .collect::<Result<Vec<_>>>()?;
    let mut temp = temp_in(how.dir)?;
    let path = temp.path().to_path_buf();
    let size = iso9660::write(&layout, &sources, temp.as_file_mut(), &path, progress)?;
    commit_file(temp, dest, Commit::PUBLIC)?;
    Ok(size)
}

/// Remove images of an earlier bundle of this name (`--force`) that are not `images`.
fn remove_stale_images(dir: &Path, name: &str, images: &[DiscImage]) -> Result<()> {
    let prefix = format!("{name}.disc");
    for entry in std::fs::read_dir(dir).at(dir)? {
        let file = entry.at(dir)?.file_name().to_string_lossy().into_owned();
        let ours = file
            .strip_prefix(&prefix)
            .and_then(|s| s.strip_suffix(".iso"))
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if ours && !images.iter().any(|i| i.file == file) {
            let path = dir.join(&file);
            std::fs::remove_file(&path).at(&path)?;
        }
    }
    Ok(())
}
