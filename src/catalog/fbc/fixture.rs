//! Catalogs written for unit tests: a small sample with every shape filtering meets, and
//! a generated one of a few hundred bundles.

use std::fs;
use std::path::Path;

use serde_json::{json, Value};

pub fn package(name: &str, default_channel: &str) -> Value {
    json!({"schema": "olm.package", "name": name, "defaultChannel": default_channel, "icon": {"base64data": "aWNvbg==", "mediatype": "image/png"}})
}

/// Entries are (name, replaces, skips).
pub fn channel(package: &str, name: &str, entries: &[(&str, Option<&str>, &[&str])]) -> Value {
    let entries: Vec<Value> = entries
        .iter()
        .map(|(n, r, s)| {
            let mut e = json!({"name": n});
            if let Some(r) = r {
                e["replaces"] = json!(r);
            }
            if !s.is_empty() {
                e["skips"] = json!(s);
            }
            e
        })
        .collect();
    json!({"schema": "olm.channel", "package": package, "name": name, "entries": entries})
}

/// A bundle with an image, one related image, a base64 bundle object and `extra` properties.
pub fn bundle(package: &str, name: &str, version: &str, extra: &[Value]) -> Value {
    let mut properties = vec![
        json!({"type": "olm.package", "value": {"packageName": package, "version": version}}),
        json!({"type": "olm.bundle.object", "value": {"data": "eyJraW5kIjoiQ2x1c3RlclNlcnZpY2VWZXJzaW9uIn0="}}),
        json!({"type": "olm.maxOpenShiftVersion", "value": "4.18"}),
    ];
    properties.extend(extra.iter().cloned());
    json!({
        "schema": "olm.bundle", "package": package, "name": name,
        "image": image(package, name, "bundle"),
        "properties": properties,
        "relatedImages": [
            {"name": "operator", "image": image(package, name, "operator")},
            {"name": "bundle", "image": image(package, name, "bundle")},
            {"name": "shared", "image": "quay.io/test/shared@sha256:".to_string() + &"0".repeat(64)}
        ]
    })
}

/// A digest reference unique to (package, bundle, what).
pub fn image(package: &str, bundle: &str, what: &str) -> String {
    let hex = crate::digest::Digest::of(format!("{package}/{bundle}/{what}").as_bytes()).hex();
    format!("quay.io/test/{package}-{what}@sha256:{hex}")
}

pub fn requires_package(package: &str, range: &str) -> Value {
    json!({"type": "olm.package.required", "value": {"packageName": package, "versionRange": range}})
}

pub fn gvk(ty: &str, group: &str, version: &str, kind: &str) -> Value {
    json!({"type": ty, "value": {"group": group, "version": version, "kind": kind}})
}

/// Concatenated JSON objects, as catalogs write them.
pub fn write_json(dir: &Path, rel: &str, objects: &[Value]) {
    let text: String = objects.iter().map(|o| serde_json::to_string_pretty(o).unwrap() + "\n").collect();
    write(dir, rel, &text);
}

pub fn write_yaml(dir: &Path, rel: &str, objects: &[Value]) {
    let text: String = objects.iter().map(|o| format!("---\n{}", serde_yaml_ng::to_string(o).unwrap())).collect();
    write(dir, rel, &text);
}

pub fn write(dir: &Path, rel: &str, text: &str) {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// The sample catalog:
/// - `alpha` (JSON, two files), default `stable`: stable a.v1.0.0 ← a.v1.1.0 ← a.v1.1.1,
///   a.v1.2.0 (replaces 1.1.0, skips 1.1.1) ← a.v2.0.0; fast a.v2.0.0 ← a.v2.1.0-rc.1 ←
///   a.v2.2.0. a.v2.0.0 and a.v2.2.0 need package beta `>=1.0.0 <2.0.0`. A deprecation of
///   a.v1.0.0, of channel fast and of the package.
/// - `beta` (JSON), default `stable`: b.v1.0.0 ← b.v1.1.0 ← b.v2.0.0; b.v1.1.0 needs the
///   GVK example.com/v1/Gamma.
/// - `gamma` (YAML), default `main`: g.v0.1.0 ← g.v0.2.0, both providing that GVK; an
///   object of another schema naming gamma; an object of no package.
/// - an `.indexignore` that hides a broken file.
pub fn sample(dir: &Path) {
    let beta_dep = requires_package("beta", ">=1.0.0 <2.0.0");
    write_json(
        dir,
        "alpha/package.json",
        &[
            package("alpha", "stable"),
            channel(
                "alpha",
                "stable",
                &[
                    ("a.v1.0.0", None, &[]),
                    ("a.v1.1.0", Some("a.v1.0.0"), &[]),
                    ("a.v1.1.1", Some("a.v1.1.0"), &[]),
                    ("a.v1.2.0", Some("a.v1.1.0"), &["a.v1.1.1"]),
                    ("a.v2.0.0", Some("a.v1.2.0"), &[]),
                ],
            ),
            channel(
                "alpha",
                "fast",
                &[
                    ("a.v2.0.0", None, &[]),
                    ("a.v2.1.0-rc.1", Some("a.v2.0.0"), &[]),
                    ("a.v2.2.0", Some("a.v2.1.0-rc.1"), &[]),
                ],
            ),
            json!({"schema": "olm.deprecations", "package": "alpha", "entries": [
                {"reference": {"schema": "olm.bundle", "name": "a.v1.0.0"}, "message": "a.v1.0.0 is deprecated"},
                {"reference": {"schema": "olm.channel", "name": "fast"}, "message": "fast is deprecated"},
                {"reference": {"schema": "olm.package"}, "message": "alpha is deprecated"}
            ]}),
        ],
    );
    let alpha: Vec<Value> = ["1.0.0", "1.1.0", "1.1.1", "1.2.0", "2.0.0", "2.1.0-rc.1", "2.2.0"]
        .iter()
        .map(|v| {
            let extra = if v.starts_with("2.0") || v.starts_with("2.2") { vec![beta_dep.clone()] } else { vec![] };
            bundle("alpha", &format!("a.v{v}"), v, &extra)
        })
        .collect();
    write_json(dir, "alpha/bundles.json", &alpha);
    let needs_gamma = gvk("olm.gvk.required", "example.com", "v1", "Gamma");
    write_json(
        dir,
        "beta/catalog.json",
        &[
            package("beta", "stable"),
            channel(
                "beta",
                "stable",
                &[("b.v1.0.0", None, &[]), ("b.v1.1.0", Some("b.v1.0.0"), &[]), ("b.v2.0.0", Some("b.v1.1.0"), &[])],
            ),
            bundle("beta", "b.v1.0.0", "1.0.0", &[]),
            bundle("beta", "b.v1.1.0", "1.1.0", &[needs_gamma]),
            bundle("beta", "b.v2.0.0", "2.0.0", &[]),
        ],
    );
    let provides = gvk("olm.gvk", "example.com", "v1", "Gamma");
    write_yaml(
        dir,
        "gamma/catalog.yaml",
        &[
            package("gamma", "main"),
            channel("gamma", "main", &[("g.v0.1.0", None, &[]), ("g.v0.2.0", Some("g.v0.1.0"), &[])]),
            bundle("gamma", "g.v0.1.0", "0.1.0", std::slice::from_ref(&provides)),
            bundle("gamma", "g.v0.2.0", "0.2.0", &[provides]),
            json!({"schema": "example.com.notes", "package": "gamma", "name": "notes", "text": "kept as is"}),
        ],
    );
    write_json(dir, "global.json", &[json!({"schema": "example.com.global", "name": "everywhere"})]);
    write(dir, ".indexignore", "# editor leftovers\n*.swp.json\n/scratch/\n");
    write(dir, "alpha/broken.swp.json", "{ not json");
    write(dir, "scratch/broken.yaml", ": : :");
    write(dir, "alpha/README.md", "not config");
}

/// A generated catalog: `packages` packages of `bundles` bundles each, one channel per
/// package split over several files (JSON for even packages, YAML for odd ones).
pub fn generated(dir: &Path, packages: usize, bundles: usize) {
    for p in 0..packages {
        let name = format!("pkg{p:03}");
        let names: Vec<String> = (0..bundles).map(|b| format!("{name}.v1.{b}.0")).collect();
        let entries: Vec<(&str, Option<&str>, &[&str])> = names
            .iter()
            .enumerate()
            .map(|(b, n)| (n.as_str(), b.checked_sub(1).map(|r| names[r].as_str()), &[][..]))
            .collect();
        let head = vec![package(&name, "stable"), channel(&name, "stable", &entries)];
        let all: Vec<Value> = (0..bundles).map(|b| bundle(&name, &names[b], &format!("1.{b}.0"), &[])).collect();
        let (first, second) = all.split_at(bundles / 2);
        if p % 2 == 0 {
            write_json(dir, &format!("{name}/package.json"), &head);
            write_json(dir, &format!("{name}/bundles-1.json"), first);
            write_json(dir, &format!("{name}/more/bundles-2.json"), second);
        } else {
            write_yaml(dir, &format!("{name}/package.yaml"), &head);
            write_yaml(dir, &format!("{name}/bundles-1.yml"), first);
            write_json(dir, &format!("{name}/bundles-2.json"), second);
        }
    }
}
