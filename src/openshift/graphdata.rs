//! The graph-data image of `graph: true`, built locally without a base image: oc-mirror
//! builds it `FROM ubi9` with `cp -rp` as its command; airlift builds it `FROM scratch` with
//! two layers, the graph-data tarball's tree under [`DATA_DIR`] and airlift itself (a
//! static executable) as `/airlift`, whose `graph-data-copy` subcommand ([`copy_tree`]) is
//! the entrypoint: it copies the data into [`VOLUME_DIR`], the volume the UpdateService
//! operator's init container shares with the update service (the graph-data image
//! contract). Layers are written byte-reproducibly by the catalog rebuild's layer writer
//! and every blob is committed into the pack cache through the store's writer.
//!
//! On the far side, [`write_update_service`] writes the UpdateService resource that points
//! the OpenShift Update Service at the mirrored release repository and this image.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::catalog::image::extract::{extract, Limits};
use crate::catalog::image::layers::{file_layer, tree_layer, Built};
use crate::client::http::Client;
use crate::digest::{file_digest, Digest};
use crate::error::{usage, IoContext, Result};
use crate::oci::layout::{BlobRef, ResolvedImage};
use crate::oci::OCI_MANIFEST;
use crate::store::{write_atomic, BlobStore, State};

/// The source the graph-data image is packed under: it lands as `openshift/graph-image:latest`
/// in the mirror, where oc-mirror puts it.
pub const GRAPH_IMAGE_SOURCE: &str = "docker://localhost/openshift/graph-image:latest";
/// Where the update service's graph-data tarball is published (oc-mirror's default;
/// download it with `curl -L -o graph-data.tar.gz URL` and pass `--graph-data`).
pub const GRAPH_DATA_URL: &str = "https://api.openshift.com/api/upgrades_info/graph-data";
/// The environment variable oc-mirror reads for the update service's graph URL
/// (`BASE/v1/graph`); the tarball is then fetched from `BASE/graph-data`.
pub const UPDATE_URL_ENV: &str = "UPDATE_URL_OVERRIDE";
/// The largest graph-data tarball fetched: the real one is a few MiB.
pub const MAX_GRAPH_DATA: u64 = 64 << 20;
/// The tarball's name in the pack cache's `graphs/` directory.
const CACHED_NAME: &str = "graph-data.tar.gz";
/// Where the image holds the graph data (as oc-mirror's image does).
pub const DATA_DIR: &str = "/var/lib/cincinnati-graph-data";
/// Where the entrypoint copies it: the volume the update service reads.
pub const VOLUME_DIR: &str = "/var/lib/cincinnati/graph-data";
/// The copier in the image, and its subcommand.
pub const COPIER: &str = "/airlift";
pub const COPY_COMMAND: &str = "graph-data-copy";
/// Bounds on the tarball's tree: the real graph data is a few MiB in a few thousand files.
const LIMITS: Limits = Limits { bytes: 256 << 20, entries: 100_000 };

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Where the tarball is fetched from: [`GRAPH_DATA_URL`], or, with `update_url` (the value
/// of [`UPDATE_URL_ENV`]), beside that update service as api.openshift.com lays them out:
/// `BASE/v1/graph` (or `BASE`) → `BASE/graph-data`.
pub fn graph_data_url(update_url: Option<&str>) -> String {
    match update_url.map(str::trim).filter(|u| !u.is_empty()) {
        None => GRAPH_DATA_URL.to_string(),
        Some(u) => {
            let base = u.trim_end_matches('/');
            format!("{}/graph-data", base.strip_suffix("/v1/graph").unwrap_or(base))
        }
    }
}

/// Fetch the tarball from `url` into `cache/graphs/`, returning its path there; when the
/// service cannot be reached (or answers an error) and an earlier fetch is cached, that copy
/// stands in, with a warning to `warn`.
pub fn fetch(client: &Client, url: &str, cache: &Path, warn: &dyn Fn(&str)) -> Result<PathBuf> {
    let dir = cache.join("graphs");
    let cached = dir.join(CACHED_NAME);
    match client.get_document(
        url,
        "application/gzip, application/octet-stream",
        MAX_GRAPH_DATA,
        "the graph-data tarball",
    ) {
        Ok(bytes) => {
            std::fs::create_dir_all(&dir).at(&dir)?;
            write_atomic(&cached, &bytes)?;
            Ok(cached)
        }
        Err(e) if cached.is_file() => {
            warn(&format!("{e}; using the graph data cached at {}", cached.display()));
            Ok(cached)
        }
        Err(e) => Err(e),
    }
}

/// Build the graph-data image from `tarball` (a gzip or plain tar of the graph data, as
/// [`GRAPH_DATA_URL`] serves it) with `copier` (this airlift executable) as its entrypoint;
/// every blob is committed into `store`. The same tarball and copier give the same digest.
/// The tarball is read as a hostile layer is (by the catalog layers' extractor): only
/// directories and regular files, no absolute or `..` paths, within bounds.
pub fn build(store: &BlobStore, tarball: &Path, copier: &Path) -> Result<ResolvedImage> {
    let name = format!("graph data {}", tarball.display());
    let digest = file_digest(tarball)?;
    let tmp = tempfile::Builder::new().prefix("graph-data-").tempdir_in(store.state(State::Tmp)).at(store.root())?;
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).at(&data)?;
    extract(&name, &[(digest, tarball.to_path_buf())], "/", &data, LIMITS)?;
    let layers =
        [tree_layer(store, &data, DATA_DIR)?, file_layer(store, copier, COPIER.trim_start_matches('/'), 0o755)?];
    let config = put_json(store, &config(&layers), OCI_CONFIG)?;
    let layer_refs: Vec<BlobRef> = layers
        .iter()
        .map(|l| BlobRef { digest: l.digest.clone(), size: l.size, media_type: OCI_LAYER.to_string() })
        .collect();
    let manifest = put_json(store, &manifest(&config, &layer_refs), OCI_MANIFEST)?;
    let mut blobs = vec![manifest.clone(), config];
    blobs.extend(layer_refs);
    Ok(ResolvedImage {
        reference: Some("latest".to_string()),
        digest: manifest.digest,
        media_type: OCI_MANIFEST.to_string(),
        size: manifest.size,
        platforms: vec![format!("linux/{}", architecture())],
        blobs,
    })
}

/// The image config: the copier as entrypoint, the layers' diff_ids, no creation time.
fn config(layers: &[Built]) -> serde_json::Value {
    json!({
        "architecture": architecture(),
        "os": "linux",
        "config": {"Entrypoint": [COPIER, COPY_COMMAND, DATA_DIR, VOLUME_DIR]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()},
        "history": [
            {"created_by": format!("airlift: the graph data as {DATA_DIR}")},
            {"created_by": format!("airlift: itself as {COPIER}, the copier")},
        ],
    })
}

fn manifest(config: &BlobRef, layers: &[BlobRef]) -> serde_json::Value {
    let descriptor = |b: &BlobRef| json!({"mediaType": b.media_type, "digest": b.digest.to_string(), "size": b.size});
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config),
        "layers": layers.iter().map(descriptor).collect::<Vec<_>>(),
    })
}

/// The OCI name of the architecture this executable (the copier) runs on.
fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `doc` committed into `store` as a blob of `media_type`.
fn put_json(store: &BlobStore, doc: &serde_json::Value, media_type: &str) -> Result<BlobRef> {
    let bytes = serde_json::to_vec(doc).map_err(|e| usage(format!("serializing the graph-data image: {e}")))?;
    let digest = Digest::of(&bytes);
    store.put_bytes(&digest, &bytes)?;
    Ok(BlobRef { digest, size: bytes.len() as u64, media_type: media_type.to_string() })
}

/// The entrypoint's work: copy the tree at `src` (directories and regular files) into
/// `dest` (created if missing), replacing files of the same name; a symlink or special
/// file in `src` is refused, naming it. Returns the number of files copied.
pub fn copy_tree(src: &Path, dest: &Path) -> Result<u64> {
    if !src.is_dir() {
        return Err(usage(format!("{}: not a directory to copy the graph data from", src.display())));
    }
    let mut files = 0;
    for entry in walkdir::WalkDir::new(src).follow_links(false).sort_by_file_name() {
        let entry = entry.map_err(|e| usage(format!("{}: {e}", src.display())))?;
        let rel = entry.path().strip_prefix(src).unwrap_or(entry.path());
        let to = dest.join(rel);
        let kind = entry.file_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&to).at(&to)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &to).at(&to)?;
            files += 1;
        } else {
            return Err(usage(format!("{}: neither a directory nor a regular file", entry.path().display())));
        }
    }
    Ok(files)
}

/// The results file holding the UpdateService.
pub const UPDATE_SERVICE_FILE: &str = "updateservice.yaml";
/// The release repository an UpdateService names when the bundle carries no release: where
/// the default release base (`quay.io/openshift-release-dev/ocp-release`) is mirrored.
pub const DEFAULT_RELEASE_REPOSITORY: &str = "openshift-release-dev/ocp-release";

/// Write [`UPDATE_SERVICE_FILE`] into `dir`: an UpdateService `name` serving the releases
/// of the repository `releases` (`HOST/REPO`) with the graph data of `graph_image`
/// (`HOST/REPO@DIGEST`), two replicas as oc-mirror writes. Returns its kind and path.
pub fn write_update_service(dir: &Path, name: &str, releases: &str, graph_image: &str) -> Result<(String, PathBuf)> {
    let resource = json!({
        "apiVersion": "updateservice.operator.openshift.io/v1",
        "kind": "UpdateService",
        "metadata": {"name": name},
        "spec": {"graphDataImage": graph_image, "releases": releases, "replicas": 2},
    });
    crate::openshift::operators::write(dir, "updateservice", UPDATE_SERVICE_FILE, &resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gzip tarball holding `entries` (path, contents; a path ending in `/` is a directory).
    fn tarball(dir: &Path, entries: &[(&str, &str)]) -> std::path::PathBuf {
        let path = dir.join("graph-data.tar.gz");
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        for (name, body) in entries {
            let mut h = tar::Header::new_gnu();
            let dir = name.ends_with('/');
            h.set_entry_type(if dir { tar::EntryType::Directory } else { tar::EntryType::Regular });
            h.set_size(if dir { 0 } else { body.len() as u64 });
            h.set_mode(0o644);
            tar.append_data(&mut h, name, body.as_bytes()).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn the_same_tarball_gives_the_same_image_with_the_data_and_the_copier() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tarball(tmp.path(), &[("channels/", ""), ("channels/stable-4.16.yaml", "name: stable-4.16\n")]);
        let copier = tmp.path().join("copier");
        std::fs::write(&copier, b"#!copier").unwrap();
        let digests: Vec<_> = (0..2)
            .map(|i| {
                let store = BlobStore::create(&tmp.path().join(format!("store{i}"))).unwrap();
                let image = build(&store, &data, &copier).unwrap();
                for blob in &image.blobs {
                    assert!(store.contains(&blob.digest, blob.size), "{}", blob.digest);
                }
                let manifest: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(store.path(&image.digest)).unwrap()).unwrap();
                let config: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(store.path(&manifest["config"]["digest"].as_str().unwrap().parse().unwrap()))
                        .unwrap(),
                )
                .unwrap();
                assert_eq!(
                    config["config"]["Entrypoint"],
                    json!([
                        "/airlift",
                        "graph-data-copy",
                        "/var/lib/cincinnati-graph-data",
                        "/var/lib/cincinnati/graph-data"
                    ])
                );
                let layer = |i: usize| {
                    let digest = manifest["layers"][i]["digest"].as_str().unwrap().parse().unwrap();
                    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(
                        std::fs::File::open(store.path(&digest)).unwrap(),
                    ));
                    tar.entries()
                        .unwrap()
                        .map(|e| {
                            let mut e = e.unwrap();
                            let mut body = String::new();
                            std::io::Read::read_to_string(&mut e, &mut body).unwrap();
                            (String::from_utf8_lossy(&e.path_bytes()).into_owned(), e.header().mode().unwrap(), body)
                        })
                        .collect::<Vec<_>>()
                };
                assert_eq!(
                    layer(0),
                    [
                        ("var/lib/cincinnati-graph-data/".to_string(), 0o755, String::new()),
                        ("var/lib/cincinnati-graph-data/channels/".to_string(), 0o755, String::new()),
                        (
                            "var/lib/cincinnati-graph-data/channels/stable-4.16.yaml".to_string(),
                            0o644,
                            "name: stable-4.16\n".to_string()
                        ),
                    ]
                );
                assert_eq!(layer(1), [("airlift".to_string(), 0o755, "#!copier".to_string())]);
                image.digest
            })
            .collect();
        assert_eq!(digests[0], digests[1]);
    }

    #[test]
    fn a_hostile_tarball_is_refused_naming_it() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("evil.tar");
        let mut tar = tar::Builder::new(std::fs::File::create(&data).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        tar.append_link(&mut h, "channels", "/etc").unwrap();
        tar.finish().unwrap();
        let store = BlobStore::create(&tmp.path().join("store")).unwrap();
        let e = build(&store, &data, &data).unwrap_err().to_string();
        assert!(e.contains("evil.tar") && e.contains("channels"), "{e}");
    }

    #[test]
    fn the_tarball_is_fetched_beside_the_update_service_an_override_names() {
        assert_eq!(graph_data_url(None), GRAPH_DATA_URL);
        assert_eq!(graph_data_url(Some("")), GRAPH_DATA_URL);
        assert_eq!(
            graph_data_url(Some("http://osus.example:8080/api/upgrades_info/v1/graph")),
            "http://osus.example:8080/api/upgrades_info/graph-data"
        );
        assert_eq!(graph_data_url(Some("http://127.0.0.1:9/")), "http://127.0.0.1:9/graph-data");
    }

    #[test]
    fn copy_tree_copies_files_and_refuses_links() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("a/b")).unwrap();
        std::fs::write(src.join("a/b/c.yaml"), "c").unwrap();
        std::fs::write(src.join("version"), "1").unwrap();
        let dest = tmp.path().join("dest");
        assert_eq!(copy_tree(&src, &dest).unwrap(), 2);
        assert_eq!(std::fs::read_to_string(dest.join("a/b/c.yaml")).unwrap(), "c");
        std::os::unix::fs::symlink("/etc", src.join("link")).unwrap();
        let e = copy_tree(&src, &dest).unwrap_err().to_string();
        assert!(e.contains("link"), "{e}");
        let e = copy_tree(&tmp.path().join("missing"), &dest).unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
