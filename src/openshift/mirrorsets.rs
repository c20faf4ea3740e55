//! What a disconnected OpenShift cluster needs once the images are in a mirror registry.
//!
//! `unpack` calls [`write_results`] to write a results directory:
//!
//! - `imagedigestmirrorset.yaml`: an `ImageDigestMirrorSet` (`config.openshift.io/v1`), applied
//!   with `oc apply` to a running cluster, OpenShift 4.13 and later.
//! - `imagetagmirrorset.yaml`: an `ImageTagMirrorSet`, same API and versions, for images pulled
//!   by tag; written only when some image was referenced by tag.
//! - `imagecontentsourcepolicy.yaml`: the legacy `ImageContentSourcePolicy`
//!   (`operator.openshift.io/v1alpha1`, digest mirrors only) for clusters before 4.13.
//! - `install-config-snippet.yaml`: the mirror lists for a new cluster's `install-config.yaml`,
//!   `imageDigestSources` (4.14 and later) and `imageContentSources` (before 4.14); the user
//!   keeps one, and adds the mirror's CA as `additionalTrustBundle`.
//! - `release-signatures.yaml`: one `ConfigMap` per release image in `openshift-config-managed`,
//!   from which the cluster-version operator verifies a release offline (any version); written
//!   only when release signatures travelled in the bundle.
//!
//! The mirror sets tell CRI-O (through the machine-config operator's `registries.conf`) to pull
//! `source/…@sha256:…` (and, for tag mirrors, `source/…:tag`) from the mirrors instead. The
//! release signature ConfigMaps have the layout `oc adm release mirror
//! --release-image-signature-to-dir` writes: name `sha256-HEX`, label
//! `release.openshift.io/verification-signatures`, one `binaryData` entry `sha256-HEX-N` per
//! signature.
//!
//! [`merge_pull_secret`] adds the mirror's credentials to a cluster pull secret.
//!
//! Output is deterministic (sources sorted, duplicates dropped), written atomically, and
//! always serialised by serde: repository names come from users and registries, so no value
//! is ever pasted into YAML text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;

use crate::digest::Digest;
use crate::error::{usage, IoContext, Result};

/// One source repository and where it is mirrored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// Repository without tag or digest, e.g. `quay.io/openshift-release-dev/ocp-v4.0-art-dev`.
    pub source: String,
    /// Where it is mirrored, e.g. `mirror.example.com:8443/ocp/openshift-release-dev/ocp-v4.0-art-dev`.
    pub mirror: String,
    /// Some image of it was referenced by tag, so it goes into the ImageTagMirrorSet too.
    pub by_tag: bool,
}

/// A release image signature that travelled in the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The release image's manifest digest.
    pub release: Digest,
    /// The signature file as given (binary, GPG).
    pub bytes: Vec<u8>,
}

/// Everything written, for printing and `--json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Written {
    /// What each file holds (e.g. `ImageDigestMirrorSet`) and its path, in the order written.
    pub files: Vec<(String, PathBuf)>,
}

// File names in the results directory.
pub const DIGEST_MIRROR_SET_FILE: &str = "imagedigestmirrorset.yaml";
pub const TAG_MIRROR_SET_FILE: &str = "imagetagmirrorset.yaml";
pub const CONTENT_SOURCE_POLICY_FILE: &str = "imagecontentsourcepolicy.yaml";
pub const INSTALL_CONFIG_SNIPPET_FILE: &str = "install-config-snippet.yaml";
pub const RELEASE_SIGNATURES_FILE: &str = "release-signatures.yaml";

/// Namespace and label under which the cluster-version operator looks for release signatures.
const SIGNATURE_NAMESPACE: &str = "openshift-config-managed";
const SIGNATURE_LABEL: &str = "release.openshift.io/verification-signatures";

const INSTALL_CONFIG_COMMENT: &str = "\
# Mirror settings for install-config.yaml, for installing a new cluster from the mirror.
# Copy exactly ONE of the two lists below into install-config.yaml (the installer refuses both):
#   imageDigestSources    OpenShift 4.14 and later
#   imageContentSources   OpenShift 4.13 and earlier (deprecated from 4.14)
# Also set additionalTrustBundle to the mirror registry's CA certificate (PEM), and add the
# mirror's credentials to pullSecret.
";

/// Write the cluster resources for `mappings` and `signatures` into `dir` (created if
/// needed), each file atomically. `name` is the `metadata.name` of the mirror sets and must
/// be a Kubernetes object name.
///
/// Mappings are sorted by source and deduplicated; the mirrors of one source are merged into
/// one entry, in the order first given (a cluster tries mirrors in list order). The
/// ImageTagMirrorSet lists only the mirrors of `by_tag` mappings and is not written when there
/// are none; likewise the signature file when there are no signatures. A stale copy of either,
/// from an earlier run into the same directory, is removed so the directory describes this run.
pub fn write_results(dir: &Path, name: &str, mappings: &[Mapping], signatures: &[Signature]) -> Result<Written> {
    check_object_name(name)?;
    for m in mappings {
        check_repository("source", &m.source)?;
        check_repository("mirror", &m.mirror)?;
    }
    std::fs::create_dir_all(dir).at(dir)?;

    let digest_mirrors = group(mappings, false);
    let tag_mirrors = group(mappings, true);
    let metadata = Metadata { name };
    let mut written = Written::default();
    let mut write = |what: &str, file: &str, text: String| -> Result<()> {
        let path = dir.join(file);
        crate::store::write_atomic(&path, text.as_bytes())?;
        written.files.push((what.to_string(), path));
        Ok(())
    };

    let idms = Resource {
        api_version: "config.openshift.io/v1",
        kind: "ImageDigestMirrorSet",
        metadata,
        spec: DigestMirrorSetSpec { image_digest_mirrors: &digest_mirrors },
    };
    write("ImageDigestMirrorSet", DIGEST_MIRROR_SET_FILE, to_yaml("ImageDigestMirrorSet", &idms)?)?;

    if tag_mirrors.is_empty() {
        remove_stale(&dir.join(TAG_MIRROR_SET_FILE))?;
    } else {
        let itms = Resource {
            api_version: "config.openshift.io/v1",
            kind: "ImageTagMirrorSet",
            metadata,
            spec: TagMirrorSetSpec { image_tag_mirrors: &tag_mirrors },
        };
        write("ImageTagMirrorSet", TAG_MIRROR_SET_FILE, to_yaml("ImageTagMirrorSet", &itms)?)?;
    }

    let icsp = Resource {
        api_version: "operator.openshift.io/v1alpha1",
        kind: "ImageContentSourcePolicy",
        metadata,
        spec: ContentSourcePolicySpec { repository_digest_mirrors: &digest_mirrors },
    };
    write("ImageContentSourcePolicy", CONTENT_SOURCE_POLICY_FILE, to_yaml("ImageContentSourcePolicy", &icsp)?)?;

    let snippet =
        InstallConfigSnippet { image_content_sources: &digest_mirrors, image_digest_sources: &digest_mirrors };
    let text = format!("{INSTALL_CONFIG_COMMENT}{}", to_yaml("install-config snippet", &snippet)?);
    write("install-config snippet", INSTALL_CONFIG_SNIPPET_FILE, text)?;

    if signatures.is_empty() {
        remove_stale(&dir.join(RELEASE_SIGNATURES_FILE))?;
    } else {
        write("release signatures", RELEASE_SIGNATURES_FILE, signature_config_maps(signatures)?)?;
    }
    Ok(written)
}

/// Add or replace `auths[registry]` in a pull secret (`{"auths": {…}}`) with basic
/// credentials. Every other entry and top-level key is kept as the same JSON value. The
/// result is compact JSON and a newline, as pull secrets are usually one line.
pub fn merge_pull_secret(existing: &[u8], registry: &str, username: &str, password: &str) -> Result<Vec<u8>> {
    if registry.is_empty() || registry.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(usage(format!("'{registry}' is not a registry name for a pull secret")));
    }
    if username.contains(':') {
        return Err(usage(format!("registry user name '{username}' contains ':', which basic auth cannot carry")));
    }
    let mut secret: serde_json::Value =
        serde_json::from_slice(existing).map_err(|e| usage(format!("the pull secret is not JSON: {e}")))?;
    let top = secret
        .as_object_mut()
        .ok_or_else(|| usage("the pull secret is not a JSON object (expected {\"auths\": {...}})"))?;
    let auths = top
        .entry("auths")
        .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()))
        .as_object_mut()
        .ok_or_else(|| usage("the pull secret's \"auths\" is not a JSON object"))?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    auths.insert(registry.to_string(), serde_json::json!({ "auth": auth }));
    let mut out = serde_json::to_vec(&secret).map_err(|e| usage(format!("cannot serialise the pull secret: {e}")))?;
    out.push(b'\n');
    Ok(out)
}

/// A Kubernetes resource with only a name in its metadata.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Resource<'a, S> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata<'a>,
    spec: S,
}

#[derive(Clone, Copy, Serialize)]
struct Metadata<'a> {
    name: &'a str,
}

/// `{source, mirrors}`: the entry shape shared by all four mirror lists.
#[derive(Serialize)]
struct Mirrors<'a> {
    source: &'a str,
    mirrors: Vec<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DigestMirrorSetSpec<'a> {
    image_digest_mirrors: &'a [Mirrors<'a>],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TagMirrorSetSpec<'a> {
    image_tag_mirrors: &'a [Mirrors<'a>],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContentSourcePolicySpec<'a> {
    repository_digest_mirrors: &'a [Mirrors<'a>],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InstallConfigSnippet<'a> {
    image_content_sources: &'a [Mirrors<'a>],
    image_digest_sources: &'a [Mirrors<'a>],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigMap {
    api_version: &'static str,
    kind: &'static str,
    metadata: ConfigMapMetadata,
    binary_data: InOrder,
}

#[derive(Serialize)]
struct ConfigMapMetadata {
    name: String,
    namespace: &'static str,
    labels: BTreeMap<&'static str, &'static str>,
}

/// A map serialised in the order built (`sha256-HEX-10` must follow `-9`, not `-1`).
struct InOrder(Vec<(String, String)>);

impl Serialize for InOrder {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// Sources in order with their mirrors, first-given order, without duplicates; with
/// `tag_only`, only the mappings referenced by tag.
fn group(mappings: &[Mapping], tag_only: bool) -> Vec<Mirrors<'_>> {
    let mut by_source: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for m in mappings.iter().filter(|m| m.by_tag || !tag_only) {
        let mirrors = by_source.entry(m.source.as_str()).or_default();
        if !mirrors.contains(&m.mirror.as_str()) {
            mirrors.push(&m.mirror);
        }
    }
    by_source.into_iter().map(|(source, mirrors)| Mirrors { source, mirrors }).collect()
}

/// One ConfigMap document per release, ordered by digest; a release's signatures are
/// numbered from 1 in the order given, identical copies dropped.
fn signature_config_maps(signatures: &[Signature]) -> Result<String> {
    let mut by_release: BTreeMap<&Digest, Vec<&[u8]>> = BTreeMap::new();
    for s in signatures {
        let list = by_release.entry(&s.release).or_default();
        if !list.contains(&s.bytes.as_slice()) {
            list.push(&s.bytes);
        }
    }
    let mut docs = Vec::with_capacity(by_release.len());
    for (release, list) in by_release {
        let name = format!("sha256-{}", release.hex());
        let data = list
            .iter()
            .enumerate()
            .map(|(i, bytes)| (format!("{name}-{}", i + 1), base64::engine::general_purpose::STANDARD.encode(bytes)))
            .collect();
        let map = ConfigMap {
            api_version: "v1",
            kind: "ConfigMap",
            metadata: ConfigMapMetadata {
                name,
                namespace: SIGNATURE_NAMESPACE,
                labels: BTreeMap::from([(SIGNATURE_LABEL, "")]),
            },
            binary_data: InOrder(data),
        };
        docs.push(to_yaml("release signature ConfigMap", &map)?);
    }
    Ok(docs.join("---\n"))
}

fn to_yaml(what: &str, value: &impl Serialize) -> Result<String> {
    serde_yaml_ng::to_string(value).map_err(|e| usage(format!("cannot serialise the {what}: {e}")))
}

/// Remove a result file an earlier run wrote and this one does not.
fn remove_stale(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => crate::store::sync_dir(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).at(path),
    }
}

/// A Kubernetes object name: a lowercase RFC 1123 subdomain of at most 253 characters
/// (dot-separated labels of `a-z0-9-` that start and end alphanumeric).
fn check_object_name(name: &str) -> Result<()> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.len() <= 253 && name.split('.').all(label_ok) {
        return Ok(());
    }
    Err(usage(format!(
        "'{name}' is not a valid Kubernetes object name: use at most 253 lowercase letters, digits, \
         '-' and '.', starting and ending with a letter or digit"
    )))
}

/// A repository as a mirror set wants it: no tag, no digest, no spaces.
fn check_repository(what: &str, repo: &str) -> Result<()> {
    let path_tail = repo.split_once('/').map_or("", |(_, rest)| rest);
    let problem = if repo.is_empty() {
        "is empty"
    } else if repo.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "contains white space"
    } else if repo.contains('@') {
        "carries a digest"
    } else if path_tail.contains(':') {
        "carries a tag"
    } else {
        return Ok(());
    };
    Err(usage(format!("mirror {what} '{repo}' {problem}: expected a repository without tag or digest")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_yaml_ng::Value;

    const SOURCE_A: &str = "quay.io/openshift-release-dev/ocp-release";
    const SOURCE_B: &str = "quay.io/openshift-release-dev/ocp-v4.0-art-dev";
    const MIRROR_A: &str = "mirror.example.com:8443/ocp/openshift-release-dev/ocp-release";
    const MIRROR_B: &str = "mirror.example.com:8443/ocp/openshift-release-dev/ocp-v4.0-art-dev";

    fn mapping(source: &str, mirror: &str, by_tag: bool) -> Mapping {
        Mapping { source: source.into(), mirror: mirror.into(), by_tag }
    }

    /// Two sources on one mirror registry, given out of order; A is referenced by tag, and B
    /// appears twice.
    fn mappings() -> Vec<Mapping> {
        vec![mapping(SOURCE_B, MIRROR_B, false), mapping(SOURCE_A, MIRROR_A, true), mapping(SOURCE_B, MIRROR_B, false)]
    }

    fn release(n: u8) -> Digest {
        Digest::from_bytes([n; 32])
    }

    fn signatures() -> Vec<Signature> {
        vec![
            Signature { release: release(2), bytes: vec![0x89, 0x02, 0x00, 0xff, 0x10] },
            Signature { release: release(1), bytes: b"\x00only signature of release 1".to_vec() },
            Signature { release: release(2), bytes: vec![0xa3, 0x01, 0x7f] },
        ]
    }

    fn yaml(path: &Path) -> Value {
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// `[{source, mirrors: [..]}]` as a YAML value.
    fn list(entries: &[(&str, &[&str])]) -> Value {
        let entries: Vec<Value> = entries
            .iter()
            .map(|(source, mirrors)| {
                let mut m = serde_yaml_ng::Mapping::new();
                m.insert("source".into(), (*source).into());
                m.insert("mirrors".into(), mirrors.iter().map(|s| Value::from(*s)).collect());
                Value::Mapping(m)
            })
            .collect();
        Value::Sequence(entries)
    }

    fn names(written: &Written) -> Vec<(&str, String)> {
        written
            .files
            .iter()
            .map(|(what, path)| (what.as_str(), path.file_name().unwrap().to_string_lossy().into_owned()))
            .collect()
    }

    #[test]
    fn writes_every_resource_with_exact_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("results");
        let written = write_results(&out, "airlift-ocp", &mappings(), &signatures()).unwrap();
        assert_eq!(
            names(&written),
            [
                ("ImageDigestMirrorSet", DIGEST_MIRROR_SET_FILE.to_string()),
                ("ImageTagMirrorSet", TAG_MIRROR_SET_FILE.to_string()),
                ("ImageContentSourcePolicy", CONTENT_SOURCE_POLICY_FILE.to_string()),
                ("install-config snippet", INSTALL_CONFIG_SNIPPET_FILE.to_string()),
                ("release signatures", RELEASE_SIGNATURES_FILE.to_string()),
            ]
        );
        assert!(written.files.iter().all(|(_, p)| p.parent() == Some(out.as_path())));
        let both = list(&[(SOURCE_A, &[MIRROR_A]), (SOURCE_B, &[MIRROR_B])]);

        let idms = yaml(&out.join(DIGEST_MIRROR_SET_FILE));
        assert_eq!(idms["apiVersion"], "config.openshift.io/v1");
        assert_eq!(idms["kind"], "ImageDigestMirrorSet");
        assert_eq!(idms["metadata"], serde_yaml_ng::from_str::<Value>("name: airlift-ocp").unwrap());
        assert_eq!(idms["spec"]["imageDigestMirrors"], both);
        assert_eq!(idms.as_mapping().unwrap().len(), 4);

        let itms = yaml(&out.join(TAG_MIRROR_SET_FILE));
        assert_eq!(itms["apiVersion"], "config.openshift.io/v1");
        assert_eq!(itms["kind"], "ImageTagMirrorSet");
        assert_eq!(itms["metadata"]["name"], "airlift-ocp");
        assert_eq!(itms["spec"]["imageTagMirrors"], list(&[(SOURCE_A, &[MIRROR_A])]));

        let icsp = yaml(&out.join(CONTENT_SOURCE_POLICY_FILE));
        assert_eq!(icsp["apiVersion"], "operator.openshift.io/v1alpha1");
        assert_eq!(icsp["kind"], "ImageContentSourcePolicy");
        assert_eq!(icsp["metadata"]["name"], "airlift-ocp");
        assert_eq!(icsp["spec"]["repositoryDigestMirrors"], both);
        assert_eq!(icsp["spec"].as_mapping().unwrap().len(), 1);

        let snippet_text = std::fs::read_to_string(out.join(INSTALL_CONFIG_SNIPPET_FILE)).unwrap();
        assert!(snippet_text.starts_with(INSTALL_CONFIG_COMMENT));
        for needle in ["4.14", "4.13", "additionalTrustBundle", "ONE"] {
            assert!(INSTALL_CONFIG_COMMENT.contains(needle), "{needle}");
        }
        let snippet = yaml(&out.join(INSTALL_CONFIG_SNIPPET_FILE));
        assert_eq!(snippet.as_mapping().unwrap().len(), 2);
        assert_eq!(snippet["imageContentSources"], both);
        assert_eq!(snippet["imageDigestSources"], both);
    }

    #[test]
    fn release_signatures_are_config_maps_cvo_reads() {
        let dir = tempfile::tempdir().unwrap();
        write_results(dir.path(), "mirror", &mappings(), &signatures()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(RELEASE_SIGNATURES_FILE)).unwrap();
        let docs: Vec<Value> =
            serde_yaml_ng::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect();
        assert_eq!(docs.len(), 2);

        let sigs = signatures();
        // Ordered by digest: release 1 (one signature) then release 2 (two, in input order).
        let expected: [(Digest, Vec<&[u8]>); 2] =
            [(release(1), vec![&sigs[1].bytes]), (release(2), vec![&sigs[0].bytes, &sigs[2].bytes])];
        for (doc, (digest, bytes)) in docs.iter().zip(expected) {
            let name = format!("sha256-{}", digest.hex());
            assert_eq!(doc.as_mapping().unwrap().len(), 4);
            assert_eq!(doc["apiVersion"], "v1");
            assert_eq!(doc["kind"], "ConfigMap");
            assert_eq!(doc["metadata"]["name"], name.as_str());
            assert_eq!(doc["metadata"]["namespace"], "openshift-config-managed");
            let labels = doc["metadata"]["labels"].as_mapping().unwrap();
            assert_eq!(labels.len(), 1);
            assert_eq!(labels["release.openshift.io/verification-signatures"], "");
            let data = doc["binaryData"].as_mapping().unwrap();
            let keys: Vec<&str> = data.keys().map(|k| k.as_str().unwrap()).collect();
            let want: Vec<String> = (1..=bytes.len()).map(|i| format!("{name}-{i}")).collect();
            assert_eq!(keys, want);
            for (key, original) in want.iter().zip(bytes) {
                let decoded =
                    base64::engine::general_purpose::STANDARD.decode(data[key.as_str()].as_str().unwrap()).unwrap();
                assert_eq!(decoded, original);
            }
        }
    }

    #[test]
    fn identical_signatures_are_stored_once() {
        let (plain, doubled) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_results(plain.path(), "m", &mappings(), &signatures()).unwrap();
        let mut input = signatures();
        input.insert(2, input[0].clone());
        input.push(input[1].clone());
        write_results(doubled.path(), "m", &mappings(), &input).unwrap();
        let read = |dir: &Path| std::fs::read(dir.join(RELEASE_SIGNATURES_FILE)).unwrap();
        assert_eq!(read(doubled.path()), read(plain.path()));
    }

    #[test]
    fn merges_mirrors_of_one_source_and_orders_by_source() {
        let dir = tempfile::tempdir().unwrap();
        let second = "backup.example.com/ocp/openshift-release-dev/ocp-v4.0-art-dev";
        let input = [
            mapping(SOURCE_B, MIRROR_B, false),
            mapping(SOURCE_B, second, true),
            mapping(SOURCE_A, MIRROR_A, false),
            mapping(SOURCE_B, MIRROR_B, true),
        ];
        write_results(dir.path(), "m", &input, &[]).unwrap();
        let idms = yaml(&dir.path().join(DIGEST_MIRROR_SET_FILE));
        assert_eq!(
            idms["spec"]["imageDigestMirrors"],
            list(&[(SOURCE_A, &[MIRROR_A]), (SOURCE_B, &[MIRROR_B, second])])
        );
        // Tag mirrors list only the mirrors the by-tag mappings named, in their order.
        let itms = yaml(&dir.path().join(TAG_MIRROR_SET_FILE));
        assert_eq!(itms["spec"]["imageTagMirrors"], list(&[(SOURCE_B, &[second, MIRROR_B])]));
    }

    #[test]
    fn no_tag_mirror_set_or_signatures_when_there_are_none() {
        let dir = tempfile::tempdir().unwrap();
        // A first run leaves both files; a run without tags or signatures removes them.
        write_results(dir.path(), "m", &mappings(), &signatures()).unwrap();
        assert!(dir.path().join(TAG_MIRROR_SET_FILE).exists());
        assert!(dir.path().join(RELEASE_SIGNATURES_FILE).exists());

        let digest_only: Vec<Mapping> = mappings().into_iter().map(|m| Mapping { by_tag: false, ..m }).collect();
        let written = write_results(dir.path(), "m", &digest_only, &[]).unwrap();
        assert_eq!(
            names(&written).iter().map(|(what, _)| *what).collect::<Vec<_>>(),
            ["ImageDigestMirrorSet", "ImageContentSourcePolicy", "install-config snippet"]
        );
        assert!(!dir.path().join(TAG_MIRROR_SET_FILE).exists());
        assert!(!dir.path().join(RELEASE_SIGNATURES_FILE).exists());
        let mut left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, [CONTENT_SOURCE_POLICY_FILE, DIGEST_MIRROR_SET_FILE, INSTALL_CONFIG_SNIPPET_FILE]);
    }

    #[test]
    fn output_is_deterministic() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_results(a.path(), "m", &mappings(), &signatures()).unwrap();
        let mut reversed = mappings();
        reversed.reverse();
        let written = write_results(b.path(), "m", &reversed, &signatures()).unwrap();
        assert_eq!(written.files.len(), 5);
        for (_, path) in &written.files {
            let file = path.file_name().unwrap();
            assert_eq!(std::fs::read(a.path().join(file)).unwrap(), std::fs::read(path).unwrap(), "{file:?}");
        }
        // Rewriting over the same directory gives the same bytes again.
        let first = std::fs::read(a.path().join(DIGEST_MIRROR_SET_FILE)).unwrap();
        write_results(a.path(), "m", &mappings(), &signatures()).unwrap();
        assert_eq!(std::fs::read(a.path().join(DIGEST_MIRROR_SET_FILE)).unwrap(), first);
    }

    #[test]
    fn values_that_look_like_yaml_stay_strings() {
        let dir = tempfile::tempdir().unwrap();
        let odd = ["yes", "1.5", "null", "~", "0x10", "#x", "&a", "*a", "!t", "-y", "'q'", "\"d\"", "{a}"];
        let input: Vec<Mapping> =
            odd.iter().enumerate().map(|(i, m)| mapping(&format!("r.io/r{i:02}"), m, false)).collect();
        write_results(dir.path(), "m", &input, &[]).unwrap();
        let idms = yaml(&dir.path().join(DIGEST_MIRROR_SET_FILE));
        let entries = idms["spec"]["imageDigestMirrors"].as_sequence().unwrap();
        let got: Vec<(&str, &str)> =
            entries.iter().map(|e| (e["source"].as_str().unwrap(), e["mirrors"][0].as_str().unwrap())).collect();
        let sources: Vec<String> = (0..odd.len()).map(|i| format!("r.io/r{i:02}")).collect();
        let want: Vec<(&str, &str)> = sources.iter().map(String::as_str).zip(odd).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn bad_names_and_repositories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let too_long = "a".repeat(254);
        for name in ["", "Airlift", "airlift_ocp", "-airlift", "airlift-", "a..b", ".a", "a.", "a b", too_long.as_str()]
        {
            let err = write_results(dir.path(), name, &mappings(), &[]).unwrap_err();
            assert!(matches!(err, crate::error::Error::Usage(_)), "{name:?}: {err}");
            assert!(err.to_string().contains("not a valid Kubernetes object name"), "{err}");
        }
        for name in ["a", "airlift-ocp", "mirror.example.com", "0-9", "a".repeat(253).as_str()] {
            write_results(dir.path(), name, &mappings(), &[]).unwrap();
        }
        for (source, mirror, problem) in [
            ("quay.io/a/b:4.15", MIRROR_A, "carries a tag"),
            ("quay.io/a/b@sha256:00", MIRROR_A, "carries a digest"),
            ("", MIRROR_A, "is empty"),
            (SOURCE_A, "mirror.example.com/a b", "contains white space"),
        ] {
            let err = write_results(dir.path(), "m", &[mapping(source, mirror, false)], &[]).unwrap_err();
            assert!(matches!(err, crate::error::Error::Usage(_)));
            assert!(err.to_string().contains(problem), "{err}");
        }
        // A port in the host is not a tag.
        write_results(dir.path(), "m", &[mapping("registry:5000", "mirror:8443", false)], &[]).unwrap();
    }

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn pull_secret_gains_an_entry_and_keeps_the_rest() {
        let existing = br#"{"auths":{"quay.io":{"auth":"cXVheTpwdw==","email":"ops@example.com"},"registry.redhat.io":{"auth":"cmg6cHc="}},"other":[1,{"x":null}]}"#;
        let out = merge_pull_secret(existing, "mirror.example.com:8443", "airlift", "s3cr:t").unwrap();
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let mut want = json(existing);
        want["auths"]["mirror.example.com:8443"] = serde_json::json!({ "auth": "YWlybGlmdDpzM2NyOnQ=" });
        assert_eq!(json(&out), want);
        let decoded = base64::engine::general_purpose::STANDARD.decode("YWlybGlmdDpzM2NyOnQ=").unwrap();
        assert_eq!(decoded, b"airlift:s3cr:t");
    }

    #[test]
    fn pull_secret_entry_for_the_same_registry_is_replaced() {
        let existing = br#"{"auths":{"mirror.example.com:8443":{"auth":"b2xkOm9sZA==","email":"a@b.c"},"quay.io":{"auth":"cXVheTpwdw=="}}}"#;
        let out = merge_pull_secret(existing, "mirror.example.com:8443", "u", "p").unwrap();
        let got = json(&out);
        assert_eq!(got["auths"]["mirror.example.com:8443"], serde_json::json!({ "auth": "dTpw" }));
        assert_eq!(got["auths"]["quay.io"], json(existing)["auths"]["quay.io"]);
        assert_eq!(got["auths"].as_object().unwrap().len(), 2);
        assert_eq!(got.as_object().unwrap().len(), 1);
        // Without "auths", one is created.
        let out = merge_pull_secret(br#"{"k":"v"}"#, "r.io", "u", "p").unwrap();
        assert_eq!(json(&out), serde_json::json!({ "k": "v", "auths": { "r.io": { "auth": "dTpw" } } }));
    }

    #[test]
    fn pull_secret_that_is_not_one_is_refused() {
        for (input, problem) in [
            (&b"not json"[..], "not JSON"),
            (b"", "not JSON"),
            (b"[1,2]", "not a JSON object"),
            (b"\"auths\"", "not a JSON object"),
            (br#"{"auths":[]}"#, "\"auths\" is not a JSON object"),
            (br#"{"auths":"x"}"#, "\"auths\" is not a JSON object"),
        ] {
            let err = merge_pull_secret(input, "r.io", "u", "p").unwrap_err();
            assert!(matches!(err, crate::error::Error::Usage(_)));
            assert!(err.to_string().contains(problem), "{input:?}: {err}");
        }
        let ok = br#"{"auths":{}}"#;
        assert!(merge_pull_secret(ok, "", "u", "p").is_err());
        assert!(merge_pull_secret(ok, "r.io", "u:x", "p").unwrap_err().to_string().contains("contains ':'"));
    }
}
