//! Discs: which volume files go on which disc (signed, in the manifest's `discs`), what
//! every disc carries besides (the four signed files, the airlift executable, a README),
//! and whether it all fits. Every count is the ISO 9660 image's own
//! ([`crate::iso9660::Layout`]): descriptors, directories and whole sectors included.
//!
//! Before anything is fetched, [`fit`] chooses the volume size and volumes per disc from a
//! bound of what every disc carries; when the bundle is signed, [`place`] checks the exact
//! images and puts fewer volumes on each disc if the bound was short.

use serde::Serialize;

use crate::bundle::manifest::{Disc, Discs, Entry, EntryKind, Manifest, Volume};
use crate::bundle::names;
use crate::bundle::sign::Signed;
use crate::error::{usage, Result};
use crate::iso9660::{Layout, Meta, SECTOR};
use crate::minisign::SecretKey;
use crate::size::{human, MAX_MEDIA_FILE};

/// How the writer lays volume files out on discs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscSpec {
    /// Bytes one disc holds.
    pub capacity: u64,
    /// Volume files on each disc (fewer on the last).
    pub per_disc: usize,
}

/// Most volume files one disc is given, however small the volumes.
pub const MAX_PER_DISC: usize = 4096;

/// The disc plan of `m`: its volume files in order (data, then recovery), `per_disc` a
/// disc, labelled by [`names::disc_label`].
pub fn assign(m: &Manifest, capacity: u64, per_disc: usize) -> Discs {
    plan(&m.name, &m.volume_files().collect::<Vec<_>>(), capacity, per_disc)
}

/// `files` of a bundle called `name`, in order, `per_disc` a disc.
fn plan(name: &str, files: &[&str], capacity: u64, per_disc: usize) -> Discs {
    let chunks: Vec<&[&str]> = files.chunks(per_disc.max(1)).collect();
    let count = chunks.len().max(1);
    let discs = (0..count)
        .map(|n| Disc {
            label: names::disc_label(name, n + 1, count),
            files: chunks.get(n).map(|c| c.iter().map(|f| f.to_string()).collect()).unwrap_or_default(),
        })
        .collect();
    Discs { capacity, discs }
}

/// A disc as `pack --dry-run` plans it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedDisc {
    pub label: String,
    pub volumes: Vec<String>,
    /// Bytes its image takes at most (the manifest and README at their bounds).
    pub image_bytes: u64,
}

/// The discs of a bundle called `name` whose volume files are `volumes` (name, bytes),
/// laid out by `spec`, each also carrying `shared` (a [`shared_bound`]).
pub fn planned(name: &str, volumes: &[(String, u64)], spec: DiscSpec, shared: &[Meta]) -> Result<Vec<PlannedDisc>> {
    let files: Vec<&str> = volumes.iter().map(|(f, _)| f.as_str()).collect();
    let mut out = Vec::new();
    for disc in plan(name, &files, spec.capacity, spec.per_disc).discs {
        let mut metas = shared.to_vec();
        let sizes = volumes.iter().filter(|(f, _)| disc.files.contains(f));
        metas.extend(sizes.map(|(f, size)| Meta { name: f.clone(), size: *size, mode: 0o644 }));
        let image_bytes = Layout::new(&disc.label, 0, &metas)?.size();
        out.push(PlannedDisc { label: disc.label, volumes: disc.files, image_bytes });
    }
    Ok(out)
}

/// Bytes of a disc image of a bundle called `name` holding `shared` and `k` volumes of
/// `volume_size` bytes.
pub fn image_bound(name: &str, shared: &[Meta], k: usize, volume_size: u64) -> Result<u64> {
    let mut metas = shared.to_vec();
    // Volume names as long as any (recovery volumes' names are the longest).
    metas.extend((1..=k).map(|i| Meta { name: names::parity_file(name, i), size: volume_size, mode: 0o644 }));
    Ok(Layout::new("SIZE", 0, &metas)?.size())
}

/// Put `m`'s volumes on discs as `spec` says, sign it, and check every disc's image
/// fits; when one does not (the bound [`fit`] used was short), one volume fewer a disc,
/// until one a disc. Returns the manifest with its disc plan, signed.
pub fn place(mut m: Manifest, spec: DiscSpec, key: &SecretKey) -> Result<(Manifest, Signed)> {
    let mut per_disc = spec.per_disc.clamp(1, MAX_PER_DISC);
    loop {
        m.discs = Some(assign(&m, spec.capacity, per_disc));
        m.validate()?;
        let signed = Signed::new(&m, key);
        let (label, size) = largest_image(&m, &signed)?;
        if size <= spec.capacity {
            return Ok((m, signed));
        }
        if per_disc == 1 {
            return Err(usage(format!(
                "disc {label} would take {size} bytes, more than the {} a disc holds: use a smaller \
                 --volume-size or a larger disc",
                spec.capacity
            )));
        }
        per_disc -= 1;
    }
}

/// The largest disc image of `m` (which has a disc plan): its label and bytes.
fn largest_image(m: &Manifest, signed: &Signed) -> Result<(String, u64)> {
    let mut largest = (String::new(), 0);
    for n in 0..m.discs.as_ref().map_or(0, |d| d.discs.len()) {
        let readme = readme(m, n);
        let size = layout(&files(m, signed, readme.as_bytes(), n))?.size();
        if size > largest.1 {
            largest = (m.discs.as_ref().map(|d| d.discs[n].label.clone()).unwrap_or_default(), size);
        }
    }
    Ok(largest)
}

/// A file on a disc and where its bytes come from.
pub struct DiscFile<'a> {
    pub meta: Meta,
    pub origin: Origin<'a>,
}

pub enum Origin<'a> {
    Bytes(&'a [u8]),
    /// A volume file of the bundle directory, as signed.
    Volume(&'a Volume),
    /// The airlift executable, as the bundle carries it (`files/airlift`).
    Installer(&'a Entry),
}

/// What disc `n` (0-based) of `m` holds, in image order: the four signed files, the
/// README (`readme`), the airlift executable when the bundle carries it, its volumes.
pub fn files<'a>(m: &'a Manifest, signed: &'a Signed, readme: &'a [u8], n: usize) -> Vec<DiscFile<'a>> {
    let bytes = |name: String, b: &'a [u8]| DiscFile {
        meta: Meta { name, size: b.len() as u64, mode: 0o644 },
        origin: Origin::Bytes(b),
    };
    let mut out: Vec<DiscFile> = signed.files(&m.name).into_iter().map(|(name, b)| bytes(name, b)).collect();
    out.push(bytes(names::DISC_README.into(), readme));
    if let Some(e) = m.entries.iter().find(|e| e.kind == EntryKind::Installer) {
        let meta = Meta { name: names::DISC_EXECUTABLE.into(), size: e.size, mode: 0o755 };
        out.push(DiscFile { meta, origin: Origin::Installer(e) });
    }
    let on_disc = m.discs.as_ref().and_then(|d| d.discs.get(n)).map(|d| d.files.as_slice()).unwrap_or_default();
    for v in m.all_volumes().filter(|v| on_disc.contains(&v.file)) {
        out.push(DiscFile {
            meta: Meta { name: v.file.clone(), size: v.size, mode: 0o644 },
            origin: Origin::Volume(v),
        });
    }
    out
}

/// The image layout of a disc holding `files`, labelled and timed as `m` says.
pub fn layout_of(m: &Manifest, n: usize, files: &[DiscFile]) -> Result<Layout> {
    let label = m.discs.as_ref().and_then(|d| d.discs.get(n)).map(|d| d.label.as_str()).unwrap_or_default();
    Layout::new(label, m.created, &files.iter().map(|f| f.meta.clone()).collect::<Vec<_>>())
}

/// A layout of `files` only to count its bytes (label and time do not change them).
fn layout(files: &[DiscFile]) -> Result<Layout> {
    Layout::new("SIZE", 0, &files.iter().map(|f| f.meta.clone()).collect::<Vec<_>>())
}

/// What every disc of a bundle called `name` carries besides its volumes, at most: the
/// signed files (the manifest at most `manifest` bytes, `SHA256SUMS` for `volumes`
/// volumes), the README, and an executable of `installer` bytes when carried.
pub fn shared_bound(name: &str, installer: Option<u64>, manifest: u64, volumes: u64) -> Vec<Meta> {
    let meta = |name: String, size: u64| Meta { name, size, mode: 0o644 };
    let (manifest_name, sums_name) = (names::manifest_file(name), names::sums_file(name));
    // A SHA256SUMS line: 64 hex digits, two spaces, the longest volume name, a newline.
    let sums = volumes * (64 + 2 + names::parity_file(name, 9999).len() as u64 + 1);
    let mut out = vec![
        meta(names::signature_file(&manifest_name), SIGNATURE_BOUND),
        meta(manifest_name, manifest),
        meta(names::signature_file(&sums_name), SIGNATURE_BOUND),
        meta(sums_name, sums),
        meta(names::DISC_README.into(), readme_bound(name, volumes)),
    ];
    out.extend(installer.map(|size| meta(names::DISC_EXECUTABLE.into(), size)));
    out
}

/// A signature airlift writes: two comment lines (the trusted one names the bundle, its
/// id, sequence, expiry and file) and two base64 lines, well under this.
const SIGNATURE_BOUND: u64 = 1024;

/// The README of a bundle called `name` with `volumes` volume files, at most.
fn readme_bound(name: &str, volumes: u64) -> u64 {
    README_FIXED + 2 * volumes * (names::parity_file(name, 9999).len() as u64 + 40) + 20 * name.len() as u64
}

/// The README's text besides what grows with the volumes and the name.
const README_FIXED: u64 = 4096;

/// The volume size and volumes per disc for discs of `capacity` bytes of a bundle called
/// `name` that also carry
/// `shared`: with `fixed` (`--volume-size` given) the volume size stays and as many
/// volumes as fit go on a disc, none fitting a usage error; otherwise `per_disc` volumes
/// a disc, and `volume_size` lowered until they fit.
pub fn fit(
    name: &str,
    capacity: u64,
    volume_size: u64,
    per_disc: usize,
    fixed: bool,
    shared: &[Meta],
) -> Result<(u64, DiscSpec)> {
    let bare = |k: usize| image_bound(name, shared, k, 0);
    let whole = |vs: u64| vs.div_ceil(SECTOR) * SECTOR;
    let carried: u64 = shared.iter().map(|m| m.size).sum();
    let too_small = |what: String| {
        usage(format!(
            "{what} on a disc of {capacity} bytes ({}) beside what every disc carries: {} ({carried} bytes; the \
             airlift executable, the manifest at most, its signatures, SHA256SUMS, the README)",
            human(capacity),
            human(carried)
        ))
    };
    if fixed {
        if bare(1)? + whole(volume_size) > capacity {
            let room = capacity.saturating_sub(bare(1)?) / SECTOR * SECTOR;
            let executable = shared.iter().any(|m| m.name == names::DISC_EXECUTABLE);
            let hint = if executable { "; --no-installer leaves the executable out" } else { "" };
            return Err(too_small(format!(
                "--volume-size {volume_size} does not fit (at most {room} bytes would{hint})"
            )));
        }
        let (mut lo, mut hi) = (1usize, ((capacity / whole(volume_size).max(1)) as usize).clamp(1, MAX_PER_DISC));
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            match bare(mid)? + mid as u64 * whole(volume_size) <= capacity {
                true => lo = mid,
                false => hi = mid - 1,
            }
        }
        return Ok((volume_size, DiscSpec { capacity, per_disc: lo }));
    }
    let k = per_disc.clamp(1, MAX_PER_DISC);
    let room = capacity.checked_sub(bare(k)?).ok_or_else(|| too_small("no room is left for volumes".into()))?;
    let most = (room / k as u64 / SECTOR * SECTOR).min(MAX_MEDIA_FILE / 512 * 512);
    if most < crate::bundle::writer::MIN_VOLUME {
        return Err(too_small(format!(
            "{k} volume(s) of at least {} bytes do not fit",
            crate::bundle::writer::MIN_VOLUME
        )));
    }
    Ok((volume_size.min(most), DiscSpec { capacity, per_disc: k }))
}

/// The README on disc `n` (0-based) of `m`: what the bundle is, its discs, and the
/// commands that check a disc and install from disc 1. Plain text, unsigned (it says so).
pub fn readme(m: &Manifest, n: usize) -> String {
    let Some(discs) = &m.discs else { return String::new() };
    let count = discs.discs.len();
    let (manifest, sums) = (names::manifest_file(&m.name), names::sums_file(&m.name));
    let installer = m.entries.iter().any(|e| e.kind == EntryKind::Installer);
    let airlift = if installer { "./airlift" } else { "airlift" };
    let mut t = format!("airlift bundle {}\n\n", m.name);
    t += &format!("id {}, sequence {}, created {}", m.id, m.sequence, crate::time::rfc3339(m.created));
    t += &m.expires.map(|e| format!(", expires {}", crate::time::rfc3339(e))).unwrap_or_default();
    t += &format!(
        "\n{} image(s), {} volume file(s) on {count} disc(s) of {} bytes.\n\nThis is disc {} of {count}, {}. The discs:\n",
        m.images.len(),
        m.volume_files().count(),
        discs.capacity,
        n + 1,
        discs.discs.get(n).map_or("", |d| d.label.as_str()),
    );
    for d in &discs.discs {
        t += &format!("  {:<32} {}\n", d.label, d.files.join(" "));
    }
    t += &format!(
        "\nEvery disc carries the signed manifest ({manifest} and .minisig), {sums} and\n\
         its .minisig, {}and this README, so each disc can be checked alone. This README\n\
         is not signed: trust what `airlift verify` or minisign says, with the public key\n\
         you trust (PUB below), never a key found on a disc.\n\n",
        if installer { "the airlift executable (run it from the disc: it is static), " } else { "" }
    );
    t += &format!(
        "At the gate, read-only, on the mounted disc (volumes on other discs show as\n\
         missing, exit 3; those here must be ok):\n  cd /media/DISC\n  {airlift} verify . --key PUB\n\
         Without airlift:\n  minisign -Vm {manifest} -p PUB\n  minisign -Vm {sums} -p PUB && sha256sum -c --ignore-missing {sums}\n\n"
    );
    t += &format!(
        "Installing on the far side starts with disc 1: mount it and run\n  cd /media/DISC\n  \
         {airlift} unpack . --key PUB --root /srv/registry   (installs a registry on first use)\n\
         or --layout DIR for an OCI layout, or --to docker://HOST/PREFIX to push to a registry.\n\
         Then mount each other disc in turn and run the same command: unpack resumes, and\n\
         until every volume was read it exits 3 naming the volumes it still needs.\n"
    );
    if !installer {
        t += &format!(
            "\nThis bundle carries no airlift executable: use airlift {} or later.\n",
            env!("CARGO_PKG_VERSION")
        );
    }
    t
}

#[cfg(test)]
mod tests;
