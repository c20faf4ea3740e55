//! The update graph (Cincinnati): a loopback update service serving generated, real-shaped
//! graph documents (a few hundred nodes across three minors, edges and conditional edges,
//! per channel and architecture); every channel rule resolved through the library over
//! HTTP and through `--graph-file`, each checked against a version set worked out here from
//! the generator's design; refusals through the binary; and a channel's latest release
//! packed end to end from docker-registry, recorded in the manifest and shown by `list`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use airlift::client::Options;
use airlift::openshift::imageset;
use airlift::trip::releases::{resolve, GraphOptions, Resolved};
use serde_json::{json, Value};

use crate::common::cluster::pack;
use crate::common::distribution::Distribution;
use crate::common::{self, airlift};

/// Patches per minor: 4.15.0-4.15.99, 4.16.0-4.16.99, 4.17.0-4.17.59 (amd64; arm64 lacks
/// the newest patch of the channel's own minor).
const PATCHES: [(u64, u64); 3] = [(15, 100), (16, 100), (17, 60)];

/// The versions of channel `stable-4.M` for `arch`: every patch of 4.(M-1) and 4.M.
fn channel_versions(minor: u64, arch: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(m, n) in &PATCHES {
        if m + 1 == minor || m == minor {
            let n = if m == minor && arch == "arm64" { n - 1 } else { n };
            out.extend((0..n).map(|p| (m, p)));
        }
    }
    out
}

/// A graph document as api.openshift.com shapes it: nodes in a scrambled order; edges
/// p→p+1 and, from every fifth patch, p→p+5 within a minor; the newest patch of 4.(M-1) to
/// 4.M.0; conditional edges p→p+20 from every twentieth patch (a path must not use them).
fn document(channel: &str, arch: &str) -> Value {
    let Some(minor) = channel.strip_prefix("stable-4.").and_then(|m| m.parse::<u64>().ok()) else {
        return json!({"nodes": [], "edges": [], "conditionalEdges": []});
    };
    let mut versions = channel_versions(minor, arch);
    versions.sort_by_key(|&(m, p)| ((m * 1000 + p) * 7919) % 1009);
    let index = |m: u64, p: u64| versions.iter().position(|v| *v == (m, p));
    let name = |(m, p): (u64, u64)| format!("4.{m}.{p}");
    let nodes: Vec<Value> = versions
        .iter()
        .map(|&v| {
            json!({"version": name(v), "payload": format!("quay.io/openshift-release-dev/ocp-release@sha256:{:064x}", v.0 * 1000 + v.1),
                   "metadata": {"io.openshift.upgrades.graph.release.channels": channel, "url": "https://access.redhat.com/errata/x"}})
        })
        .collect();
    let (mut edges, mut conditional) = (Vec::new(), Vec::new());
    for &(m, p) in &versions {
        for to in [Some(p + 1), (p % 5 == 0).then_some(p + 5)].into_iter().flatten() {
            if let (Some(a), Some(b)) = (index(m, p), index(m, to)) {
                edges.push(json!([a, b]));
            }
        }
        if let (Some(a), Some(b), true) = (index(m, p), index(m + 1, 0), index(m, p + 1).is_none()) {
            edges.push(json!([a, b]));
        }
        if p % 20 == 0 && index(m, p + 20).is_some() {
            conditional.push(json!({"edges": [{"from": name((m, p)), "to": name((m, p + 20))}],
                "risks": [{"url": "https://issues.redhat.com/x", "name": "Risk", "message": "m",
                           "matchingRules": [{"type": "PromQL", "promql": {"promql": "0"}}]}]}));
        }
    }
    json!({"nodes": nodes, "edges": edges, "conditionalEdges": conditional})
}

/// A loopback update service: `GET /graph?channel=NAME&arch=ARCH` with
/// `Accept: application/json` answers [`document`]; counts the requests it served.
struct GraphServer {
    url: String,
    served: Arc<AtomicUsize>,
}

impl GraphServer {
    fn start() -> GraphServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/graph", listener.local_addr().unwrap());
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut lines = Vec::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    lines.push(line.trim_end().to_string());
                }
                let query = lines.first().and_then(|l| l.split(' ').nth(1)).and_then(|t| t.split_once('?'));
                let param = |key: &str| {
                    query?.1.split('&').find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')).map(str::to_string)
                };
                let json_asked = lines.iter().any(|l| l.eq_ignore_ascii_case("accept: application/json"));
                let (status, body) = match (param("channel"), param("arch"), json_asked) {
                    (Some(c), Some(a), true) => ("200 OK", document(&c, &a).to_string()),
                    _ => ("400 Bad Request", "{}".to_string()),
                };
                count.fetch_add(1, Ordering::SeqCst);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        GraphServer { url, served }
    }
}

const HEADER: &str = "kind: ImageSetConfiguration\napiVersion: mirror.openshift.io/v2alpha1\n";

/// Resolve the channels of `platform` (the body of `mirror.platform`).
fn resolved(platform: &str, options: &GraphOptions, cache: &Path) -> airlift::error::Result<Resolved> {
    let set = imageset::parse(&format!("{HEADER}mirror:\n  platform:\n{platform}"), "imageset.yaml").unwrap();
    resolve(&set.channels, options, &Options::default(), cache, &|w| eprintln!("warning: {w}"))
}

fn names(list: impl IntoIterator<Item = (u64, u64)>) -> Vec<String> {
    list.into_iter().collect::<BTreeSet<_>>().into_iter().map(|(m, p)| format!("4.{m}.{p}")).collect()
}

/// The shortest path a→b within one minor, by the generator's design: +1 to the next
/// multiple of five, +5 jumps, +1 to b (a unique shortest path; conditional +20 edges unused).
fn path(m: u64, a: u64, b: u64) -> Vec<(u64, u64)> {
    let (first, last) = (a.div_ceil(5) * 5, b / 5 * 5);
    if first > last {
        return (a..=b).map(|p| (m, p)).collect();
    }
    let mut out: Vec<u64> = (a..=first).collect();
    out.extend((first..=last).step_by(5));
    out.extend(last..=b);
    out.into_iter().map(|p| (m, p)).collect()
}

/// Every rule, with the versions each architecture gets.
fn rules() -> Vec<(&'static str, Vec<String>, Vec<String>)> {
    let range = |m, a, b| (a..=b).map(move |p| (m, p));
    let all16 = |arm: bool| names(range(15, 0, 99).chain(range(16, 0, if arm { 98 } else { 99 })));
    vec![
        ("{name: stable-4.16}", names([(16, 99)]), names([(16, 98)])),
        ("{name: stable-4.16, full: true}", all16(false), all16(true)),
        ("{name: stable-4.16, minVersion: 4.16.90}", names(range(16, 90, 99)), names(range(16, 90, 98))),
        ("{name: stable-4.16, maxVersion: 4.15.3}", names(range(15, 0, 3)), names(range(15, 0, 3))),
        (
            "{name: stable-4.16, minVersion: 4.15.97, maxVersion: 4.16.2}",
            names(range(15, 97, 99).chain(range(16, 0, 2))),
            names(range(15, 97, 99).chain(range(16, 0, 2))),
        ),
        (
            "{name: stable-4.17, minVersion: 4.17.3, maxVersion: 4.17.58, shortestPath: true}",
            names(path(17, 3, 58)),
            names(path(17, 3, 58)),
        ),
        (
            "{name: stable-4.17, minVersion: 4.16.7, maxVersion: 4.17.12, shortestPath: true}",
            names(path(16, 7, 99).into_iter().chain(path(17, 0, 12))),
            names(path(16, 7, 99).into_iter().chain(path(17, 0, 12))),
        ),
    ]
}

fn check_rules(options: &GraphOptions, cache: &Path) {
    for (rule, amd64, arm64) in rules() {
        let r =
            resolved(&format!("    architectures: [amd64, arm64]\n    channels:\n      - {rule}\n"), options, cache)
                .unwrap();
        let c = &r.channels[0];
        let union: BTreeSet<&String> = amd64.iter().chain(&arm64).collect();
        assert_eq!(c.versions.iter().collect::<BTreeSet<_>>(), union, "{rule}");
        assert_eq!(c.architectures, ["amd64", "arm64"], "{rule}");
        assert_eq!(c.graphs.len(), 2, "{rule}");
        let base = "docker://quay.io/openshift-release-dev/ocp-release";
        let mut want: Vec<String> = amd64.iter().map(|v| format!("{base}:{v}-x86_64")).collect();
        want.extend(arm64.iter().map(|v| format!("{base}:{v}-aarch64")));
        want.sort();
        let mut got = r.releases.clone();
        got.sort();
        assert_eq!(got, want, "{rule}");
    }
}

#[test]
fn every_channel_rule_gives_its_versions_from_the_update_service_and_the_cache_serves_a_rerun() {
    let tmp = common::tempdir();
    let server = GraphServer::start();
    let options = GraphOptions { url: Some(server.url.clone()), file: None };
    check_rules(&options, tmp.path());
    assert_eq!(server.served.load(Ordering::SeqCst), 2 * rules().len());

    // Several channels across minors hop: 4.16.3 to stable-4.16's latest, then in
    // stable-4.17 on to 4.17.12.
    let r = resolved(
        "    channels:\n      - {name: stable-4.16, minVersion: 4.16.3, maxVersion: 4.16.3}\n      - {name: stable-4.17, minVersion: 4.17.12, maxVersion: 4.17.12}\n",
        &options,
        tmp.path(),
    )
    .unwrap();
    assert_eq!(r.channels[0].versions, names(path(16, 3, 99)));
    assert_eq!(r.channels[1].versions, names(path(17, 0, 12).into_iter().chain([(16, 99)])));
    let cached = tmp.path().join("graphs/stable-4.17-amd64.json");
    assert_eq!(
        r.channels[1].graphs[0].digest.to_string(),
        format!("sha256:{}", common::sha256_hex(&std::fs::read(&cached).unwrap()))
    );
    assert!(r.channels[1].graphs[0].source.starts_with(&format!("{}?channel=stable-4.17&arch=amd64", server.url)));

    // The update service gone: the cached graphs answer, with a warning.
    let gone = GraphOptions { url: Some("http://127.0.0.1:9/graph".into()), file: None };
    let r = resolved("    channels:\n      - {name: stable-4.17, minVersion: 4.17.50}\n", &gone, tmp.path()).unwrap();
    assert_eq!(r.channels[0].versions, names((50..60).map(|p| (17, p))));
    assert_eq!(r.channels[0].graphs[0].source, cached.display().to_string());
}

#[test]
fn a_saved_graph_file_or_directory_gives_the_same_without_a_server() {
    let tmp = common::tempdir();
    let dir = tmp.path().join("graphs");
    std::fs::create_dir_all(&dir).unwrap();
    for channel in ["stable-4.16", "stable-4.17"] {
        for arch in ["amd64", "arm64"] {
            std::fs::write(dir.join(format!("{channel}-{arch}.json")), document(channel, arch).to_string()).unwrap();
        }
    }
    let options = GraphOptions { url: None, file: Some(dir.clone()) };
    check_rules(&options, &tmp.path().join("cache"));
    assert!(!tmp.path().join("cache").exists(), "a saved graph is not cached again");

    let one = GraphOptions { url: None, file: Some(dir.join("stable-4.16-amd64.json")) };
    let r = resolved("    channels:\n      - {name: stable-4.16, minVersion: 4.16.97}\n", &one, tmp.path()).unwrap();
    assert_eq!(r.channels[0].versions, ["4.16.97", "4.16.98", "4.16.99"]);
    assert_eq!(r.channels[0].graphs[0].source, dir.join("stable-4.16-amd64.json").display().to_string());
}

/// `airlift pack --config` with `--graph-url URL`: exit code and stderr.
fn pack_refusal(dir: &Path, platform: &str, graph: &[&str]) -> (Option<i32>, String) {
    let config = dir.join("imageset.yaml");
    std::fs::write(&config, format!("{HEADER}mirror:\n  platform:\n{platform}")).unwrap();
    let (key, _) = common::keygen(&dir.join("keys"), "site");
    let o = airlift()
        .args(["pack", "--no-installer", "--key"])
        .arg(key)
        .arg("--out")
        .arg(dir.join("out"))
        .arg("--cache")
        .arg(dir.join("cache"))
        .arg("--config")
        .arg(&config)
        .args(graph)
        .output()
        .unwrap();
    std::fs::remove_dir_all(dir.join("keys")).unwrap();
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn an_unknown_channel_a_version_outside_it_and_a_bad_document_exit_2_naming_the_channel() {
    let tmp = common::tempdir();
    let server = GraphServer::start();
    let url = ["--graph-url", server.url.as_str()];
    let (code, err) = pack_refusal(tmp.path(), "    channels:\n      - {name: candidate-9.9}\n", &url);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("channel candidate-9.9 (amd64): the graph has no release"), "{err}");

    // oc-mirror's UPDATE_URL_OVERRIDE names the service when --graph-url does not.
    let config = format!("{HEADER}mirror:\n  platform:\n    channels: [{{name: fast-4.16}}]\n");
    std::fs::write(tmp.path().join("imageset.yaml"), config).unwrap();
    let (key, _) = common::keygen(&tmp.path().join("keys"), "site");
    let o = airlift()
        .args(["pack", "--no-installer", "--out", "out", "--cache", "cache", "--config", "imageset.yaml", "--key"])
        .arg(key)
        .current_dir(tmp.path())
        .env("UPDATE_URL_OVERRIDE", &server.url)
        .output()
        .unwrap();
    std::fs::remove_dir_all(tmp.path().join("keys")).unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("{}?channel=fast-4.16&arch=amd64: channel fast-4.16 (amd64)", server.url)), "{err}");

    let (code, err) =
        pack_refusal(tmp.path(), "    channels:\n      - {name: stable-4.16, minVersion: 4.17.1}\n", &url);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("channel stable-4.16 (amd64): version 4.17.1 is not in the channel"), "{err}");

    let bad = tmp.path().join("bad.json");
    std::fs::write(&bad, r#"{"nodes": [{"version": "4.16.1"}], "edges": [[0, 7]]}"#).unwrap();
    let file = ["--graph-file", bad.to_str().unwrap()];
    let (code, err) = pack_refusal(tmp.path(), "    channels:\n      - {name: stable-4.16}\n", &file);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("{}: channel stable-4.16 (amd64): edge 0 (0→7)", bad.display())), "{err}");
}

#[test]
fn a_channels_latest_release_is_packed_recorded_and_listed() {
    if !common::have("skopeo") {
        return;
    }
    let tmp = common::tempdir();
    let Some(dist) = Distribution::start() else { return };
    let server = GraphServer::start();
    let rel = crate::openshift::publish_release(&dist, tmp.path(), "4.17.59", 1);
    let config = tmp.path().join("imageset.yaml");
    let host = dist.host();
    std::fs::write(
        &config,
        format!("{HEADER}mirror:\n  platform:\n    releaseImageBase: {host}/ocp/release\n    channels:\n      - name: stable-4.17\n"),
    )
    .unwrap();
    let bundle = tmp.path().join("bundle");
    let args = ["--config".to_string(), config.display().to_string(), "--graph-url".into(), server.url.clone()];
    let doc = pack(&dist, tmp.path(), &bundle, "ch", &args);
    assert_eq!(doc["images"].as_array().unwrap().len(), 1 + rel.components.len(), "{doc}");
    let o = airlift()
        .args(["list", "--json"])
        .arg(&bundle)
        .arg("--key")
        .arg(tmp.path().join("keys/site.pub"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listed: Value = serde_json::from_slice(&o.stdout).unwrap();
    let channel = &listed["channels"][0];
    assert_eq!(channel["name"], "stable-4.17");
    assert_eq!(channel["type"], "ocp");
    assert_eq!(channel["architectures"], json!(["amd64"]));
    assert_eq!(channel["versions"], json!(["4.17.59"]));
    let graph = common::sha256_hex(document("stable-4.17", "amd64").to_string().as_bytes());
    assert_eq!(channel["graphs"][0]["digest"], format!("sha256:{graph}"));
    let o = airlift().arg("list").arg(&bundle).arg("--key").arg(tmp.path().join("keys/site.pub")).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("channel stable-4.17 (ocp, amd64): 1 version(s): 4.17.59"), "{text}");
    let manifest: Value = serde_json::from_slice(&std::fs::read(bundle.join("ch.manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["releases"][0]["digest"], rel.digest.as_str());
    assert_eq!(manifest["channels"], listed["channels"]);

    // The cache's graphs directory is a --graph-file for a pack without the service.
    let graphs = tmp.path().join("cache/graphs");
    let args =
        ["--config".to_string(), config.display().to_string(), "--graph-file".into(), graphs.display().to_string()];
    let offline = tmp.path().join("offline");
    pack(&dist, tmp.path(), &offline, "ch", &args);
    let manifest: Value = serde_json::from_slice(&std::fs::read(offline.join("ch.manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["channels"][0]["versions"], json!(["4.17.59"]));
    assert_eq!(manifest["channels"][0]["graphs"][0]["digest"], format!("sha256:{graph}"));
    let file = graphs.join("stable-4.17-amd64.json");
    assert_eq!(manifest["channels"][0]["graphs"][0]["source"], file.display().to_string());
}
