//! `graph: true` end to end: an image set with a release and `graph: true` packed from
//! docker-registry with `--graph-data` (a small graph-data tarball), unpacked into a fresh
//! airlift root: the graph-data image is served over TLS, its layer holds the data, its
//! entrypoint (airlift's `graph-data-copy`) copies the data in a bare container (podman,
//! vfs storage, no network), and `updateservice.yaml` points at the mirrored release
//! repository and at the image by digest.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::cluster::{pack, pack_command, unpack_root, yaml};
use crate::common::distribution::Distribution;
use crate::common::registry::Registry;
use crate::common::{self, run_ok};
use crate::openshift::{publish_release, VERSION};

/// The graph data: (path, contents), as the cincinnati-graph-data repository lays it out.
const DATA: &[(&str, &str)] = &[
    ("blocked-edges/4.16.4-example.yaml", "to: 4.16.4\nfrom: .*\n"),
    ("channels/stable-4.16.yaml", "name: stable-4.16\nversions:\n- 4.16.3\n- 4.16.4\n"),
    ("raw/metadata.json", "{}\n"),
    ("version", "1.2.0\n"),
];

/// `DIR/graph-data.tar.gz` holding [`DATA`] under `./` (as the update service publishes it).
fn graph_tarball(dir: &Path) -> PathBuf {
    let tree = dir.join("graph-tree");
    for (path, body) in DATA {
        let file = tree.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, body).unwrap();
    }
    let tarball = dir.join("graph-data.tar.gz");
    run_ok(Command::new("tar").arg("-czf").arg(&tarball).arg("-C").arg(&tree).arg("."));
    tarball
}

/// A loopback HTTP server that answers one request with `body`: its base URL, and a
/// thread that ends with the request line it got.
fn serve_once(body: Vec<u8>) -> (String, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let thread = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).unwrap();
            head.push(byte[0]);
        }
        let reply = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        stream.write_all(reply.as_bytes()).unwrap();
        stream.write_all(&body).unwrap();
        String::from_utf8_lossy(&head).lines().next().unwrap().to_string()
    });
    (base, thread)
}

/// A loopback address nothing listens on (bound, then closed).
fn dead_address() -> String {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

/// Every regular file under `dir`, relative path → contents.
fn files(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            (rel, std::fs::read_to_string(e.path()).unwrap())
        })
        .collect();
    out.sort();
    out
}

fn expected() -> Vec<(String, String)> {
    DATA.iter().map(|(p, b)| (p.to_string(), b.to_string())).collect()
}

#[test]
fn graph_true_builds_an_image_whose_entrypoint_copies_the_data_and_an_update_service_for_it() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let Some(dist) = Distribution::start() else { return };
    let rel = publish_release(&dist, tmp.path(), VERSION, 1);
    let host = dist.host();
    let config = tmp.path().join("imageset.yaml");
    std::fs::write(
        &config,
        format!(
            "kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\n\
             mirror:\n  platform:\n    graph: true\n    architectures: [amd64]\n    releaseImageBase: {host}/ocp/release\n\
             \x20   releases:\n      - version: {VERSION}\n"
        ),
    )
    .unwrap();
    let tarball = graph_tarball(tmp.path());

    let bundle = tmp.path().join("bundle");
    let args = ["--config".into(), config.display().to_string(), "--graph-data".into(), tarball.display().to_string()];
    let doc = pack(&dist, tmp.path(), &bundle, "graph", &args);
    let images = doc["images"].as_array().unwrap();
    let graph =
        images.iter().find(|i| i["source"] == "docker://localhost/openshift/graph-image:latest").expect("graph image");
    let digest = graph["digest"].as_str().unwrap().to_string();
    assert_eq!(images.len(), 1 + rel.components.len() + 1, "{doc}");

    // Without --graph-data the tarball comes from the update service UPDATE_URL_OVERRIDE
    // names (BASE/v1/graph → BASE/graph-data), into the cache: the same image, built in
    // another cache. Then, the service gone, the cached tarball stands in with a warning;
    // with nothing cached, exit 2 naming the URL and --graph-data.
    let only = ["--config".into(), config.display().to_string()];
    let again = tmp.path().join("again");
    let (base, served) = serve_once(std::fs::read(&tarball).unwrap());
    let o = pack_command(&dist, &again, &again.join("bundle"), "graph", &only)
        .env("UPDATE_URL_OVERRIDE", format!("{base}/api/upgrades_info/v1/graph"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(served.join().unwrap(), "GET /api/upgrades_info/graph-data HTTP/1.1");
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(doc["images"].as_array().unwrap().iter().any(|i| i["digest"] == digest.as_str()), "{doc}");
    let gone = format!("http://{}", dead_address());
    let o = pack_command(&dist, &again, &again.join("bundle2"), "graph", &only)
        .env("UPDATE_URL_OVERRIDE", &gone)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(&format!("{gone}/graph-data")) && err.contains("using the graph data cached at"), "{err}");
    let o = pack_command(&dist, &tmp.path().join("fresh"), &tmp.path().join("fresh/bundle"), "graph", &only)
        .env("UPDATE_URL_OVERRIDE", &gone)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{gone}/graph-data")) && err.contains("--graph-data"), "{err}");

    let mut reg = Registry::install();
    let doc = unpack_root(tmp.path(), &bundle, &reg.root, &[]);
    let results = PathBuf::from(doc["results"]["dir"].as_str().unwrap());
    let listed: Vec<&Value> =
        doc["results"]["files"].as_array().unwrap().iter().filter(|f| f["kind"] == "updateservice").collect();
    assert_eq!(listed.len(), 1, "{doc}");
    assert_eq!(listed[0]["path"], results.join("updateservice.yaml").display().to_string());
    let us = yaml(&results.join("updateservice.yaml"));
    assert_eq!(us["apiVersion"].as_str(), Some("updateservice.operator.openshift.io/v1"));
    assert_eq!(us["kind"].as_str(), Some("UpdateService"));
    let mirror = format!("localhost:{}", reg.port);
    assert_eq!(us["spec"]["releases"].as_str(), Some(format!("{mirror}/ocp/release").as_str()));
    let image = format!("{mirror}/openshift/graph-image@{digest}");
    assert_eq!(us["spec"]["graphDataImage"].as_str(), Some(image.as_str()));
    assert_eq!(us["spec"]["replicas"].as_u64(), Some(2));

    // Served over TLS by digest: its first layer holds the data.
    reg.serve(&[]);
    let layout = tmp.path().join("pulled");
    let mut cmd = reg.skopeo("copy");
    cmd.args(reg.skopeo_src_args()).arg(format!("docker://{image}")).arg(format!("oci:{}:graph", layout.display()));
    run_ok(&mut cmd);
    let unpacked = tmp.path().join("unpacked");
    run_ok(
        Command::new("umoci")
            .args(["raw", "unpack", "--rootless", "--image"])
            .arg(format!("{}:graph", layout.display()))
            .arg(&unpacked),
    );
    assert_eq!(files(&unpacked.join("var/lib/cincinnati-graph-data")), expected());
    assert!(unpacked.join("airlift").is_file());

    run_in_podman(&reg, &image, tmp.path());
}

/// Pull `image` from `reg` with podman (vfs storage under `dir`) and run it with no network
/// and a temp dir as the graph-data volume: the data appears there.
fn run_in_podman(reg: &Registry, image: &str, dir: &Path) {
    if !common::have("podman") {
        return;
    }
    let storage = |cmd: &mut Command| {
        cmd.args(["--storage-driver", "vfs", "--root"]).arg(dir.join("podman/root"));
        cmd.arg("--runroot").arg(dir.join("podman/run"));
    };
    let mut pull = Command::new("podman");
    storage(&mut pull);
    run_ok(pull.args(["pull", "--quiet", "--cert-dir"]).arg(&reg.cert_dir).args(["--creds", &reg.creds(), image]));

    let volume = dir.join("volume");
    std::fs::create_dir(&volume).unwrap();
    // Two things this kind of sandbox (a VM without CAP_SYS_RESOURCE, cgroup v1 with the
    // v2 hierarchy also mounted) needs, harmless elsewhere: limits no higher than ours
    // (crun cannot raise them), and, since crun refuses "hybrid" cgroups, a private mount
    // namespace without /sys/fs/cgroup/unified on such a host.
    let hybrid = std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(" /sys/fs/cgroup/unified ");
    let mut run = Command::new(if hybrid { "unshare" } else { "podman" });
    if hybrid {
        run.args(["-m", "--propagation", "private", "sh", "-c", "umount /sys/fs/cgroup/unified && exec \"$@\"", "sh"]);
        run.arg("podman");
    }
    storage(&mut run);
    run.args(["run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "-v"])
        .arg(format!("{}:/var/lib/cincinnati/graph-data", volume.display()))
        .arg(image);
    run_ok(&mut run);
    assert_eq!(files(&volume), expected());
}

#[test]
fn graph_data_copy_copies_a_tree_and_exits_2_naming_what_it_cannot_copy() {
    let tmp = common::tempdir();
    let src = tmp.path().join("src");
    for (path, body) in DATA {
        std::fs::create_dir_all(src.join(path).parent().unwrap()).unwrap();
        std::fs::write(src.join(path), body).unwrap();
    }
    let dest = tmp.path().join("dest");
    common::airlift().arg("graph-data-copy").arg(&src).arg(&dest).assert().success();
    assert_eq!(files(&dest), expected());

    let missing = tmp.path().join("missing");
    let o = common::airlift().arg("graph-data-copy").arg(&missing).arg(&dest).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&missing.display().to_string()));
    std::os::unix::fs::symlink("/etc", src.join("channels/link")).unwrap();
    let o = common::airlift().arg("graph-data-copy").arg(&src).arg(&dest).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("channels/link"));
}
