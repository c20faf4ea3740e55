//! What a disconnected cluster needs to install operators from the catalogs of a bundle,
//! once they are in the mirror. `unpack` writes, next to the mirror sets:
//!
//! - `catalogsource-NAME.yaml`: a `CatalogSource` (`operators.coreos.com/v1alpha1`, OLM v0)
//!   in `openshift-marketplace`, `sourceType: grpc`, its image the mirrored catalog by
//!   digest (no `updateStrategy`: an image pinned by digest has nothing to poll for). With
//!   the catalog's `targetCatalogSourceTemplate`, the template is completed instead: its
//!   fields are kept, and `metadata.name`, `spec.sourceType` and `spec.image` set.
//! - `clustercatalog-NAME.yaml`: a `ClusterCatalog` (`olm.operatorframework.io/v1`, OLM v1),
//!   `spec.source.image.ref` the same image.
//! - `operatorhub.yaml` (once): the `OperatorHub` `cluster` with
//!   `spec.disableAllDefaultSources: true`, so the cluster stops trying the online catalogs.
//!
//! NAME comes from the catalog's target repository's last component and tag
//! (`redhat-operator-index:v4.16` → `redhat-operator-index-v4-16`): a DNS label, as OLM
//! names a Service after the CatalogSource.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{usage, Result};
use crate::oci::names::split;
use crate::openshift::object_name;

pub const OPERATOR_HUB_FILE: &str = "operatorhub.yaml";
/// Where OpenShift's catalogs live.
const MARKETPLACE: &str = "openshift-marketplace";
/// Longest DNS label: a CatalogSource's name becomes a Service's.
const MAX_NAME: usize = 63;

/// A catalog complete in the mirror.
pub struct MirroredCatalog<'a> {
    /// `HOST/REPO:TAG` it is mirrored as (the bundle manifest's `target`), for its name.
    pub target: &'a str,
    /// `MIRROR_HOST/REPO@DIGEST`: the catalog image where the cluster pulls it.
    pub image: String,
    /// The `targetCatalogSourceTemplate` to complete, if any.
    pub template: Option<&'a Value>,
}

/// Write the catalog resources into `dir` (which exists); returns (kind, path) of each
/// file written, in order. Nothing when there are no catalogs.
pub fn write_catalogs(dir: &Path, catalogs: &[MirroredCatalog]) -> Result<Vec<(String, PathBuf)>> {
    let mut written = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for catalog in catalogs {
        let mut name = catalog_name(catalog.target);
        let base = name.clone();
        for n in 2.. {
            if !names.contains(&name) {
                break;
            }
            name = format!("{}-{n}", &base[..base.len().min(MAX_NAME - 4)]);
        }
        names.push(name.clone());
        let source = catalog_source(&name, catalog)?;
        written.push(write(dir, "catalogsource", &format!("catalogsource-{name}.yaml"), &source)?);
        written.push(write(
            dir,
            "clustercatalog",
            &format!("clustercatalog-{name}.yaml"),
            &cluster_catalog(&name, &catalog.image),
        )?);
    }
    if !catalogs.is_empty() {
        written.push(write(dir, "operatorhub", OPERATOR_HUB_FILE, &operator_hub())?);
    }
    Ok(written)
}

/// A catalog's object name: its target repository's last component and its tag.
pub fn catalog_name(target: &str) -> String {
    let parts = split(target);
    let last = parts.path.rsplit('/').next().unwrap_or(parts.path);
    let written = match parts.tag {
        Some(tag) => format!("{last}-{tag}"),
        None => last.to_string(),
    };
    let name = object_name(&written.replace('.', "-"));
    let cut: String = name.chars().take(MAX_NAME).collect();
    cut.trim_end_matches('-').to_string()
}

/// Why `template` cannot be completed into a CatalogSource, if it cannot: it must be a
/// mapping whose `apiVersion` and `kind`, when given, are a CatalogSource's and whose
/// `metadata` and `spec`, when given, are mappings. Pack checks it before fetching.
pub fn check_template(template: &Value) -> std::result::Result<(), String> {
    let fields = template.as_object().ok_or("not a CatalogSource (a YAML mapping)")?;
    for (key, want) in [("apiVersion", "operators.coreos.com/v1alpha1"), ("kind", "CatalogSource")] {
        match fields.get(key) {
            None => {}
            Some(Value::String(s)) if s == want => {}
            Some(other) => {
                return Err(format!("{key} is {}, not {want}", crate::text::untrusted(&other.to_string())));
            }
        }
    }
    for key in ["metadata", "spec"] {
        if fields.get(key).is_some_and(|v| !v.is_object()) {
            return Err(format!("{key} is not a mapping"));
        }
    }
    Ok(())
}

/// The CatalogSource: the template completed, or a new one.
fn catalog_source(name: &str, catalog: &MirroredCatalog) -> Result<Value> {
    let mut source = match catalog.template {
        Some(template) => template.clone(),
        None => json!({
            "apiVersion": "operators.coreos.com/v1alpha1",
            "kind": "CatalogSource",
            "spec": { "displayName": catalog.target, "publisher": "airlift" },
        }),
    };
    let fields = source
        .as_object_mut()
        .ok_or_else(|| usage(format!("catalog {}: targetCatalogSourceTemplate is not a mapping", catalog.target)))?;
    fields.entry("apiVersion").or_insert_with(|| json!("operators.coreos.com/v1alpha1"));
    fields.entry("kind").or_insert_with(|| json!("CatalogSource"));
    let metadata = object(fields, "metadata", catalog.target)?;
    metadata.insert("name".into(), json!(name));
    metadata.entry("namespace").or_insert_with(|| json!(MARKETPLACE));
    let spec = object(fields, "spec", catalog.target)?;
    spec.insert("sourceType".into(), json!("grpc"));
    spec.insert("image".into(), json!(catalog.image));
    spec.entry("displayName").or_insert_with(|| json!(catalog.target));
    spec.entry("publisher").or_insert_with(|| json!("airlift"));
    Ok(source)
}

/// The mapping under `key` (created when absent).
fn object<'v>(
    fields: &'v mut serde_json::Map<String, Value>,
    key: &str,
    catalog: &str,
) -> Result<&'v mut serde_json::Map<String, Value>> {
    fields
        .entry(key)
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| usage(format!("catalog {catalog}: targetCatalogSourceTemplate: {key} is not a mapping")))
}

fn cluster_catalog(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "olm.operatorframework.io/v1",
        "kind": "ClusterCatalog",
        "metadata": { "name": name },
        "spec": { "source": { "type": "Image", "image": { "ref": image } } },
    })
}

fn operator_hub() -> Value {
    json!({
        "apiVersion": "config.openshift.io/v1",
        "kind": "OperatorHub",
        "metadata": { "name": "cluster" },
        "spec": { "disableAllDefaultSources": true },
    })
}

/// Write one resource as YAML (serialised, never pasted together).
pub(crate) fn write(dir: &Path, kind: &str, file: &str, resource: &Value) -> Result<(String, PathBuf)> {
    let text = serde_yaml_ng::to_string(resource).map_err(|e| usage(format!("{file}: cannot write YAML: {e}")))?;
    let path = dir.join(file);
    crate::store::write_atomic(&path, text.as_bytes())?;
    Ok((kind.to_string(), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> Value {
        serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn names_are_dns_labels_from_repository_and_tag() {
        assert_eq!(
            catalog_name("registry.redhat.io/redhat/redhat-operator-index:v4.16"),
            "redhat-operator-index-v4-16"
        );
        assert_eq!(catalog_name("quay.io/ns/Index_X:1.0"), "index-x-1-0");
        let long = format!("quay.io/ns/{}:v1", "a".repeat(80));
        assert_eq!(catalog_name(&long).len(), MAX_NAME);
    }

    #[test]
    fn catalog_sources_cluster_catalogs_and_the_operator_hub() {
        let dir = tempfile::tempdir().unwrap();
        let image = format!("mirror:8443/redhat/redhat-operator-index@{}", crate::digest::Digest::of(b"c"));
        let template = json!({
            "apiVersion": "operators.coreos.com/v1alpha1", "kind": "CatalogSource",
            "metadata": { "name": "ignored", "namespace": "mine", "labels": { "a": "b" } },
            "spec": { "image": "ignored", "sourceType": "configmap", "priority": -100, "displayName": "Mine" },
        });
        let catalogs = [
            MirroredCatalog {
                target: "registry.redhat.io/redhat/redhat-operator-index:v4.16",
                image: image.clone(),
                template: None,
            },
            MirroredCatalog {
                target: "quay.io/other/redhat-operator-index:v4.16",
                image: image.clone(),
                template: Some(&template),
            },
        ];
        let written = write_catalogs(dir.path(), &catalogs).unwrap();
        let kinds: Vec<&str> = written.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds, ["catalogsource", "clustercatalog", "catalogsource", "clustercatalog", "operatorhub"]);
        let cs = read(&dir.path().join("catalogsource-redhat-operator-index-v4-16.yaml"));
        assert_eq!(
            cs,
            json!({
                "apiVersion": "operators.coreos.com/v1alpha1", "kind": "CatalogSource",
                "metadata": { "name": "redhat-operator-index-v4-16", "namespace": "openshift-marketplace" },
                "spec": { "sourceType": "grpc", "image": image, "displayName": "registry.redhat.io/redhat/redhat-operator-index:v4.16", "publisher": "airlift" },
            })
        );
        // The second has the same name: it gets a suffix; its template's fields are kept.
        let cs = read(&dir.path().join("catalogsource-redhat-operator-index-v4-16-2.yaml"));
        assert_eq!(
            cs["metadata"],
            json!({ "name": "redhat-operator-index-v4-16-2", "namespace": "mine", "labels": { "a": "b" } })
        );
        assert_eq!(
            cs["spec"],
            json!({ "image": image, "sourceType": "grpc", "priority": -100, "displayName": "Mine", "publisher": "airlift" })
        );
        let cc = read(&dir.path().join("clustercatalog-redhat-operator-index-v4-16.yaml"));
        assert_eq!(cc["kind"], "ClusterCatalog");
        assert_eq!(cc["apiVersion"], "olm.operatorframework.io/v1");
        assert_eq!(cc["spec"]["source"], json!({ "type": "Image", "image": { "ref": image } }));
        let hub = read(&dir.path().join(OPERATOR_HUB_FILE));
        assert_eq!(hub["metadata"]["name"], "cluster");
        assert_eq!(hub["spec"]["disableAllDefaultSources"], true);
        assert!(write_catalogs(dir.path(), &[]).unwrap().is_empty());
        let bad = json!({ "spec": [] });
        let catalogs = [MirroredCatalog { target: "q.io/a:1", image, template: Some(&bad) }];
        assert_eq!(
            write_catalogs(dir.path(), &catalogs).unwrap_err().to_string(),
            "catalog q.io/a:1: targetCatalogSourceTemplate: spec is not a mapping"
        );
    }
}
