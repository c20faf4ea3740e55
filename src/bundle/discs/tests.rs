//! Disc plans and images of bundles written by the writer: what [`fit`] chooses holds for
//! the exact images [`place`] checks, the README stays within its bound, and an image is
//! never written from a volume that differs from the signed one.

use std::path::Path;

use super::*;
use crate::bundle::images::{write_images, Images};
use crate::bundle::writer::{BundleWriter, Compress, Content, Contents, Item, Settings, MIN_CHUNK};
use crate::digest::Digest;
use crate::error::Error;
use crate::minisign::PublicKey;
use crate::progress::Silent;

/// A bundle called `name` of `files` items of `size` noise bytes each (after an
/// "executable" when `installer` is given), in volumes of 64 KiB, written into `dir`.
fn bundle(dir: &Path, name: &str, files: usize, size: usize, discs: Option<DiscSpec>) -> (Manifest, PublicKey) {
    bundle_with(dir, name, files, size, discs, None)
}

fn bundle_with(
    dir: &Path,
    name: &str,
    files: usize,
    size: usize,
    discs: Option<DiscSpec>,
    installer: Option<&Path>,
) -> (Manifest, PublicKey) {
    let settings = Settings {
        dir: dir.to_path_buf(),
        name: name.into(),
        sequence: 3,
        created: 1_795_776_388,
        expires: None,
        volume_size: 64 << 10,
        chunk_size: MIN_CHUNK,
        discs,
        parity: None,
    };
    let (key, public) = SecretKey::generate().unwrap();
    let mut writer = BundleWriter::new(settings, "ab".repeat(16), &Silent).unwrap();
    if let Some(exe) = installer {
        let bytes = std::fs::read(exe).unwrap();
        writer.add(&item(names::INSTALLER, EntryKind::Installer, bytes, Some(exe))).unwrap();
    }
    for n in 0..files {
        let bytes: Vec<u8> = (0..size).map(|i| ((i * 7919 + n * 104_729) >> 3) as u8).collect();
        writer.add(&item(&format!("files/f{n}"), EntryKind::File, bytes, None)).unwrap();
    }
    (writer.finish(Contents::default(), &key).unwrap(), public)
}

fn item(path: &str, kind: EntryKind, bytes: Vec<u8>, file: Option<&Path>) -> Item {
    Item {
        path: path.into(),
        kind,
        mode: 0o755,
        size: bytes.len() as u64,
        digest: Digest::of(&bytes),
        content: file.map_or_else(|| Content::Bytes(bytes), |f| Content::File(f.to_path_buf())),
        compress: Compress::Never,
    }
}

/// The exact bytes of each disc image of the bundle in `dir`.
fn image_sizes(dir: &Path, m: &Manifest, key: &PublicKey) -> Vec<u64> {
    let signed = Signed::load(dir, m, key).unwrap();
    (0..m.discs.as_ref().unwrap().discs.len())
        .map(|n| {
            let readme = readme(m, n);
            layout_of(m, n, &files(m, &signed, readme.as_bytes(), n)).unwrap().size()
        })
        .collect()
}

#[test]
fn an_odd_number_of_volumes_leaves_the_last_disc_short_and_labels_count_the_discs() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DiscSpec { capacity: 1 << 30, per_disc: 2 };
    let (m, _) = bundle(dir.path(), "ocp-4.16", 5, 50_000, Some(spec));
    assert_eq!(m.volumes.len(), 5);
    let discs = m.discs.as_ref().unwrap();
    assert_eq!(discs.capacity, 1 << 30);
    let plan: Vec<(&str, usize)> = discs.discs.iter().map(|d| (d.label.as_str(), d.files.len())).collect();
    assert_eq!(plan, [("OCP_4_16_1OF3", 2), ("OCP_4_16_2OF3", 2), ("OCP_4_16_3OF3", 1)]);
    assert_eq!(discs.discs[2].files, ["ocp-4.16.0005.tar"]);
    let (one, _) = bundle(&dir.path().join("one"), "one", 1, 100, Some(spec));
    let labels: Vec<&str> = one.discs.as_ref().unwrap().discs.iter().map(|d| d.label.as_str()).collect();
    assert_eq!(labels, ["ONE_1OF1"], "a bundle that fits one disc");
}

#[test]
fn a_preset_volume_size_is_lowered_only_when_what_every_disc_carries_needs_the_room() {
    let small = shared_bound("ocp", None, 20_000, 4);
    let (vs, spec) = fit("ocp", 4_700_372_992, 2_316_632_064, 2, false, &small).unwrap();
    assert_eq!((vs, spec.per_disc), (2_316_632_064, 2), "a DVD's preset leaves 64 MiB: enough");
    // An executable of 100 MB: the two volumes shrink until the image fits, and not more.
    let big = shared_bound("ocp", Some(100_000_000), 20_000, 4);
    let (vs, spec) = fit("ocp", 4_700_372_992, 2_316_632_064, 2, false, &big).unwrap();
    assert_eq!(spec.per_disc, 2);
    assert!(vs < 2_316_632_064 && vs % 2048 == 0, "{vs}");
    assert!(image_bound("ocp", &big, 2, vs).unwrap() <= 4_700_372_992);
    assert!(image_bound("ocp", &big, 2, vs + 2048).unwrap() > 4_700_372_992, "as large as fits");
    let e = fit("ocp", 50_000_000, 40_000_000, 1, false, &big).unwrap_err();
    assert!(matches!(e, Error::Usage(_)) && e.to_string().contains("no room is left for volumes"), "{e}");
}

#[test]
fn a_given_volume_size_puts_as_many_volumes_as_fit_and_one_too_large_is_refused() {
    let shared = shared_bound("ocp", Some(3_000_000), 30_000, 40);
    let (vs, spec) = fit("ocp", 10_000_000, 1_000_000, 9, true, &shared).unwrap();
    assert_eq!(vs, 1_000_000, "a given size stays");
    let k = spec.per_disc;
    assert!(image_bound("ocp", &shared, k, vs).unwrap() <= 10_000_000);
    assert!(image_bound("ocp", &shared, k + 1, vs).unwrap() > 10_000_000, "{k} is the most that fit");
    let e = fit("ocp", 10_000_000, 8_000_000, 1, true, &shared).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::Usage(_)), "{e}");
    assert!(text.contains("--volume-size 8000000 does not fit") && text.contains("--no-installer"), "{text}");
    let without = shared_bound("ocp", None, 30_000, 40);
    let text = fit("ocp", 1_000_000, 8_000_000, 1, true, &without).unwrap_err().to_string();
    assert!(!text.contains("--no-installer"), "no executable to leave out: {text}");
}

#[test]
fn signing_puts_fewer_volumes_on_a_disc_when_the_exact_images_need_it() {
    let dir = tempfile::tempdir().unwrap();
    // Four 64 KiB volumes would fit the capacity, but not with the disc's other files.
    let capacity = 4 * (64 << 10) + 40 * 2048;
    let (m, key) = bundle(dir.path(), "ocp", 5, 60_000, Some(DiscSpec { capacity, per_disc: 4 }));
    let per_disc: Vec<usize> = m.discs.as_ref().unwrap().discs.iter().map(|d| d.files.len()).collect();
    assert!(per_disc[0] < 4, "{per_disc:?}");
    assert_eq!(per_disc.iter().sum::<usize>(), m.volumes.len());
    let sizes = image_sizes(dir.path(), &m, &key);
    assert!(sizes.iter().all(|&s| s <= capacity), "{sizes:?} over {capacity}");
    // No disc holds even one volume beside its files: refused, naming the disc.
    let e = crate::bundle::writer::BundleWriter::new(
        Settings {
            dir: dir.path().join("tiny"),
            name: "tiny".into(),
            sequence: 1,
            created: 1,
            expires: None,
            volume_size: 64 << 10,
            chunk_size: MIN_CHUNK,
            discs: Some(DiscSpec { capacity: 64 << 10, per_disc: 1 }),
            parity: None,
        },
        "cd".repeat(16),
        &Silent,
    )
    .and_then(|mut w| {
        w.add(&item("files/x", EntryKind::File, vec![7; 50_000], None))?;
        w.finish(Contents::default(), &SecretKey::generate().unwrap().0)
    })
    .unwrap_err();
    assert!(e.to_string().contains("disc TINY_1OF1 would take"), "{e}");
}

#[test]
fn the_readme_stays_within_its_bound_and_names_the_disc_and_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let name = "a-rather-long-bundle-name-for-the-readme-bound-0123456789abcdef";
    let (m, _) = bundle(dir.path(), name, 30, 20_000, Some(DiscSpec { capacity: 1 << 30, per_disc: 1 }));
    let volumes = m.volume_files().count() as u64;
    for n in [0, 7, volumes as usize - 1] {
        let text = readme(&m, n);
        assert!(text.len() as u64 <= readme_bound(name, volumes), "{} > bound", text.len());
        assert!(text.contains(&format!("This is disc {} of {volumes}, ", n + 1)), "{text}");
        assert!(text.contains("airlift verify . --key PUB") && text.contains("airlift unpack . --key PUB"));
        assert!(text.contains("no airlift executable"), "packed without one");
    }
}

#[test]
fn every_disc_carries_the_signed_files_the_readme_and_the_executable() {
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("exe");
    std::fs::write(&exe, b"\x7fELF pretend").unwrap();
    let spec = DiscSpec { capacity: 1 << 30, per_disc: 1 };
    let (m, key) = bundle_with(&dir.path().join("b"), "ocp", 2, 60_000, Some(spec), Some(&exe));
    let signed = Signed::load(&dir.path().join("b"), &m, &key).unwrap();
    let readme = readme(&m, 1);
    assert!(readme.contains("./airlift verify . --key PUB"), "{readme}");
    let on_disc: Vec<(String, u32)> =
        files(&m, &signed, readme.as_bytes(), 1).into_iter().map(|f| (f.meta.name, f.meta.mode)).collect();
    let expected = [
        ("ocp.SHA256SUMS", 0o644),
        ("ocp.SHA256SUMS.minisig", 0o644),
        ("ocp.manifest.json.minisig", 0o644),
        ("ocp.manifest.json", 0o644),
        ("README.txt", 0o644),
        ("airlift", 0o755),
        (m.discs.as_ref().unwrap().discs[1].files[0].as_str(), 0o644),
    ];
    assert_eq!(on_disc, expected.map(|(n, mode)| (n.to_string(), mode)));
}

#[test]
fn images_replace_the_volumes_and_a_changed_volume_never_lands_in_one() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DiscSpec { capacity: 1 << 20, per_disc: 2 };
    let (m, key) = bundle(dir.path(), "ocp", 3, 60_000, Some(spec));
    let expected = image_sizes(dir.path(), &m, &key);
    let how = Images { dir: dir.path(), key: &key, executable: None, keep_volumes: false };
    let images = write_images(&m, &how, &Silent).unwrap();
    let files: Vec<&str> = images.iter().map(|i| i.file.as_str()).collect();
    assert_eq!(files, ["ocp.disc01.iso", "ocp.disc02.iso"]);
    assert_eq!(images.iter().map(|i| i.size).collect::<Vec<_>>(), expected);
    for i in &images {
        assert_eq!(std::fs::metadata(dir.path().join(&i.file)).unwrap().len(), i.size);
    }
    assert!(m.volumes.iter().all(|v| !dir.path().join(&v.file).exists()), "the images hold the volumes now");
    assert!(dir.path().join("ocp.manifest.json").exists(), "the signed files stay");

    let other = tempfile::tempdir().unwrap();
    let (m, key) = bundle(other.path(), "ocp", 3, 60_000, Some(spec));
    let v2 = other.path().join(&m.volumes[2].file);
    let mut bytes = std::fs::read(&v2).unwrap();
    bytes[9000] ^= 1;
    std::fs::write(&v2, bytes).unwrap();
    let how = Images { dir: other.path(), key: &key, executable: None, keep_volumes: true };
    let e = write_images(&m, &how, &Silent).unwrap_err();
    assert!(matches!(e, Error::Integrity(_)) && e.to_string().contains("the copy of ocp.0003.tar"), "{e}");
    assert!(other.path().join("ocp.disc01.iso").exists(), "disc 1 was good");
    let left: Vec<String> = std::fs::read_dir(other.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".iso") || f.starts_with(crate::store::TEMP_PREFIX))
        .collect();
    assert_eq!(left, ["ocp.disc01.iso"], "no image of disc 2, no temp file");
    assert!(m.volumes.iter().all(|v| other.path().join(&v.file).exists()), "--keep-volumes");

    // A volume swapped for a FIFO is never opened for reading (it would block).
    std::fs::remove_file(&v2).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(&v2).status().unwrap().success());
    let e = write_images(&m, &how, &Silent).unwrap_err();
    assert!(matches!(e, Error::Integrity(_)) && e.to_string().contains("is a FIFO"), "{e}");
}
