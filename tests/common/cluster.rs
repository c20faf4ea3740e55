//! The trip as a cluster sees it, shared by the OpenShift and operator catalog tests:
//! `pack` from a docker-registry, `unpack --root`, the YAML files unpack writes, and pulls
//! by digest through a generated ImageDigestMirrorSet.

use std::path::Path;

use serde_json::Value;
use serde_yaml_ng::Value as Yaml;

use super::distribution::Distribution;
use super::registry::Registry;
use super::{airlift, keygen, sha256_hex};

/// `airlift pack --json` from `dist` with `args` (not run): key `DIR/keys/site.key`
/// (made on first use), auth `DIR/auth`, cache `DIR/cache`.
pub fn pack_command(dist: &Distribution, dir: &Path, out: &Path, name: &str, args: &[String]) -> assert_cmd::Command {
    let key = dir.join("keys/site.key");
    if !key.exists() {
        keygen(&dir.join("keys"), "site");
    }
    let mut cmd = keyless_pack_command(dist, dir, out, name, args);
    cmd.args(["--json", "--key"]).arg(&key);
    cmd
}

/// `airlift pack` from `dist` with `args` and no key (not run): auth `DIR/auth`, cache
/// `DIR/cache`.
pub fn keyless_pack_command(
    dist: &Distribution,
    dir: &Path,
    out: &Path,
    name: &str,
    args: &[String],
) -> assert_cmd::Command {
    let auth = dist.authfile(&dir.join("auth"));
    let mut cmd = airlift();
    cmd.args(["pack", "--no-installer", "--name", name])
        .arg("--out")
        .arg(out)
        .arg("--authfile")
        .arg(&auth)
        .arg("--cert-dir")
        .arg(&dist.cert_dir)
        .arg("--cache")
        .arg(dir.join("cache"))
        .args(args);
    cmd
}

/// `airlift pack` from `dist` with `args`; returns the --json document.
pub fn pack(dist: &Distribution, dir: &Path, out: &Path, name: &str, args: &[String]) -> Value {
    let o = pack_command(dist, dir, out, name, args).output().unwrap();
    assert!(o.status.success(), "pack failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `airlift pack --config CONFIG` from `dist` into `DIR/refused`, which must exit 2 and
/// write no bundle; returns its stderr.
pub fn pack_refused(dist: &Distribution, dir: &Path, config: &Path) -> String {
    let out = dir.join("refused");
    let args = ["--config".to_string(), config.display().to_string()];
    let o = pack_command(dist, dir, &out, "refused", &args).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(!out.join("refused.manifest.json").exists(), "{err}");
    err
}

/// `airlift unpack --json BUNDLE --key DIR/keys/site.pub --root ROOT EXTRA…`; returns the
/// --json document.
pub fn unpack_root(dir: &Path, bundle: &Path, root: &Path, extra: &[&str]) -> Value {
    let o = airlift()
        .args(["unpack", "--json"])
        .arg(bundle)
        .arg("--key")
        .arg(dir.join("keys/site.pub"))
        .arg("--root")
        .arg(root)
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "unpack failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// `airlift unpack --json BUNDLE --key DIR/keys/site.pub --to docker://MIRROR/PREFIX EXTRA…`
/// with MIRROR's credentials (`WORK/auth`), staging in `WORK/staging`, results in
/// `WORK/results`; returns the --json document.
pub fn unpack_to(dir: &Path, bundle: &Path, mirror: &Distribution, prefix: &str, work: &Path, extra: &[&str]) -> Value {
    let o = airlift()
        .args(["unpack", "--json"])
        .arg(bundle)
        .arg("--key")
        .arg(dir.join("keys/site.pub"))
        .args(["--to", &format!("docker://{}/{prefix}", mirror.host()), "--authfile"])
        .arg(mirror.authfile(&work.join("auth")))
        .arg("--cert-dir")
        .arg(&mirror.cert_dir)
        .arg("--cache")
        .arg(work.join("staging"))
        .arg("--results")
        .arg(work.join("results"))
        .args(extra)
        .output()
        .unwrap();
    assert!(o.status.success(), "unpack --to failed: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

pub fn yaml(path: &Path) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display()))
}

/// source → mirrors of an ImageDigestMirrorSet.
pub fn digest_mirrors(idms: &Yaml) -> Vec<(String, Vec<String>)> {
    assert_eq!(idms["apiVersion"].as_str(), Some("config.openshift.io/v1"));
    assert_eq!(idms["kind"].as_str(), Some("ImageDigestMirrorSet"));
    assert!(idms["metadata"]["name"].as_str().is_some_and(|n| !n.is_empty()));
    idms["spec"]["imageDigestMirrors"]
        .as_sequence()
        .expect("spec.imageDigestMirrors")
        .iter()
        .map(|m| {
            let mirrors = m["mirrors"].as_sequence().expect("mirrors");
            (
                m["source"].as_str().unwrap().to_string(),
                mirrors.iter().map(|x| x.as_str().unwrap().to_string()).collect(),
            )
        })
        .collect()
}

/// Pull `image` (`HOST/REPO@DIGEST`, as a cluster would) through `mirrors` from `reg`.
pub fn pull_through(reg: &Registry, mirrors: &[(String, Vec<String>)], image: &str) {
    let (repo, digest) = image.split_once('@').unwrap();
    let (_, to) =
        mirrors.iter().find(|(s, _)| s == repo).unwrap_or_else(|| panic!("no mirror for {repo}: {mirrors:?}"));
    let mut cmd = reg.skopeo("inspect");
    cmd.arg("--raw").args(reg.skopeo_args()).arg(format!("docker://{}@{digest}", to[0]));
    let raw = cmd.output().unwrap();
    assert!(raw.status.success(), "{image} via {}: {}", to[0], String::from_utf8_lossy(&raw.stderr));
    assert_eq!(format!("sha256:{}", sha256_hex(&raw.stdout)), digest, "{image}");
}
