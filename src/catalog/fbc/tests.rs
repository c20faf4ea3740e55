use super::fixture::{self, bundle, channel, package, write, write_json};
use super::*;
use crate::error::Error;
use serde_json::json;
use std::collections::BTreeSet;

fn usage_message(dir: &Path) -> String {
    match Catalog::read(dir) {
        Err(e @ Error::Usage(_)) => e.to_string(),
        other => panic!("expected a usage error, got {other:?}"),
    }
}

#[test]
fn reads_json_and_yaml_honouring_indexignore() {
    let tmp = tempfile::tempdir().unwrap();
    fixture::sample(tmp.path());
    let catalog = Catalog::read(tmp.path()).unwrap();
    assert_eq!(catalog.packages().collect::<Vec<_>>(), ["alpha", "beta", "gamma"]);
    let alpha = catalog.package("alpha").unwrap();
    assert_eq!(alpha.default_channel.as_deref(), Some("stable"));
    assert_eq!(alpha.channels.keys().collect::<Vec<_>>(), ["fast", "stable"]);
    assert_eq!(alpha.bundles.len(), 7);
    assert_eq!(alpha.deprecations.len(), 1);
    let stable = &alpha.channels["stable"];
    assert_eq!(stable.entries[3].replaces.as_deref(), Some("a.v1.1.0"));
    assert_eq!(stable.entries[3].skips, ["a.v1.1.1"]);
    let a2 = &alpha.bundles["a.v2.0.0"];
    assert_eq!(a2.version, Version::parse("2.0.0"));
    assert_eq!(a2.image, fixture::image("alpha", "a.v2.0.0", "bundle"));
    assert_eq!(a2.related_images.len(), 3);
    assert_eq!(
        a2.requires,
        [Requirement::Package { package: "beta".into(), range: Range::parse(">=1.0.0 <2.0.0").unwrap() }]
    );
    let gamma = catalog.package("gamma").unwrap();
    let gvk = Gvk { group: "example.com".into(), version: "v1".into(), kind: "Gamma".into() };
    assert_eq!(gamma.bundles["g.v0.2.0"].provides, std::slice::from_ref(&gvk));
    assert!(matches!(gamma.bundles["g.v0.2.0"].location.at, At::Document(3)));
    assert_eq!(gamma.others.len(), 1);
    assert_eq!(catalog.package("beta").unwrap().bundles["b.v1.1.0"].requires, [Requirement::Gvk(gvk)]);
    assert_eq!(catalog.global().len(), 1);
    // Locations point at the objects' exact bytes.
    let loc = alpha.bundles["a.v1.0.0"].location;
    let At::Bytes(start, end) = loc.at else { panic!("a JSON object") };
    let text = std::fs::read(catalog.path(loc.file)).unwrap();
    let object: serde_json::Value = serde_json::from_slice(&text[start..end]).unwrap();
    assert_eq!(object["name"], "a.v1.0.0");
}

#[test]
fn reads_a_generated_catalog_of_several_files_per_package() {
    let tmp = tempfile::tempdir().unwrap();
    fixture::generated(tmp.path(), 20, 15);
    let catalog = Catalog::read(tmp.path()).unwrap();
    assert_eq!(catalog.packages().count(), 20);
    for name in catalog.packages() {
        let package = catalog.package(name).unwrap();
        assert_eq!(package.bundles.len(), 15, "{name}");
        assert_eq!(package.channels["stable"].entries.len(), 15, "{name}");
        let files: BTreeSet<usize> = package.bundles.values().map(|b| b.location.file).collect();
        assert_eq!(files.len(), 2, "{name}: bundles come from two files");
    }
    assert_eq!(catalog.package("pkg007").unwrap().bundles["pkg007.v1.14.0"].version, Version::parse("1.14.0"));
}

#[test]
fn indexignore_patterns_apply_below_their_directory() {
    let tmp = tempfile::tempdir().unwrap();
    fixture::sample(tmp.path());
    write(tmp.path(), "beta/.indexignore", "*.json\n!catalog.json\n");
    write(tmp.path(), "beta/extra.json", "{ broken");
    write(tmp.path(), "gamma/.indexignore", "catalog.yaml\n");
    write_json(tmp.path(), "gamma/other.json", &[package("gamma", "main")]);
    let catalog = Catalog::read(tmp.path()).unwrap();
    assert!(catalog.package("beta").is_some());
    assert!(catalog.package("gamma").unwrap().bundles.is_empty(), "gamma's YAML file is ignored");
}

#[test]
fn malformed_files_are_named_with_the_object() {
    let tmp = tempfile::tempdir().unwrap();
    write_json(tmp.path(), "p/a.json", &[package("p", "s")]);
    write(
        tmp.path(),
        "p/b.json",
        "{\"schema\": \"olm.channel\", \"package\": \"p\", \"name\": \"s\", \"entries\": []}\n{\"schema\": ",
    );
    let message = usage_message(tmp.path());
    assert!(
        message.contains("p/b.json") && message.contains("malformed JSON") && message.contains("at byte 70"),
        "{message}"
    );

    let tmp = tempfile::tempdir().unwrap();
    write_json(tmp.path(), "p/a.json", &[package("p", "s")]);
    write(tmp.path(), "p/b.yaml", "---\nschema: example.other\nname: x\n---\nschema: [unclosed\n");
    let message = usage_message(tmp.path());
    assert!(message.contains("p/b.yaml") && message.contains("malformed YAML in document 2"), "{message}");
}

#[test]
fn objects_filtering_cannot_use_are_refused() {
    let cases: Vec<(Vec<serde_json::Value>, &str)> = vec![
        (vec![package("p", "s"), json!({"name": "x"})], "object x (at byte"),
        (
            vec![package("p", "s"), json!({"schema": "olm.bundle", "package": "p", "name": "b1"})],
            "olm.bundle b1 (at byte",
        ),
        (vec![package("p", "s"), package("p", "s")], "defined twice"),
        (vec![package("p", "s"), channel("p", "s", &[]), channel("p", "s", &[])], "channel twice"),
        (vec![package("p", "s"), bundle("p", "b", "1.0.0", &[]), bundle("p", "b", "1.0.0", &[])], "bundle twice"),
        (vec![package("p", "s"), bundle("p", "b", "1.0", &[])], "version 1.0 is not semver"),
        (vec![package("p", "s"), bundle("q", "b", "1.0.0", &[])], "package q, which has no olm.package"),
        (vec![package("../p", "s")], "not a plain file name"),
        (vec![channel("", "s", &[])], "names no package"),
    ];
    for (objects, expected) in cases {
        let tmp = tempfile::tempdir().unwrap();
        write_json(tmp.path(), "c.json", &objects);
        let message = usage_message(tmp.path());
        assert!(message.contains("c.json") && message.contains(expected), "{expected}: {message}");
    }
    let mut no_image = bundle("p", "b1", "1.0.0", &[]);
    no_image.as_object_mut().unwrap().remove("image");
    let tmp = tempfile::tempdir().unwrap();
    write_json(tmp.path(), "c.json", &[package("p", "s"), no_image]);
    assert!(usage_message(tmp.path()).contains("olm.bundle b1 (at byte"), "has no image");
}

#[test]
fn an_entry_without_its_bundle_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    write_json(tmp.path(), "c.json", &[package("p", "s"), channel("p", "s", &[("gone", None, &[])])]);
    let catalog = Catalog::read(tmp.path()).unwrap();
    assert_eq!(catalog.package("p").unwrap().channels["s"].entries[0].name, "gone");
}

#[test]
fn an_empty_directory_or_a_link_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "notes.txt", "nothing");
    let message = usage_message(tmp.path());
    assert!(message.contains(&tmp.path().display().to_string()) && message.contains("no package"), "{message}");
    write_json(tmp.path(), "p/c.json", &[package("p", "s")]);
    std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("p/link.json")).unwrap();
    assert!(usage_message(tmp.path()).contains("p/link.json: a symbolic link"));
    assert!(matches!(Catalog::read(&tmp.path().join("absent")), Err(Error::Io { .. })));
}

#[test]
fn catalog_text_in_errors_is_escaped() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "p/\u{1b}[2J.json", "{\"schema\": \"olm.package\", \"name\": \"p\u{7}\"} {\"schema\": 5}");
    let message = usage_message(tmp.path());
    assert!(
        !message.contains('\u{1b}') && !message.contains('\u{7}') && message.contains("\\u{1b}[2J.json"),
        "{message}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let evil = json!({"schema": "olm.bundle", "package": "p", "name": "b\u{1b}]0;x\u{7}", "image": ""});
    write_json(tmp.path(), "c.json", &[package("p", "s"), evil]);
    let message = usage_message(tmp.path());
    assert!(!message.contains('\u{1b}') && message.contains("has no image"), "{message}");
    let tmp = tempfile::tempdir().unwrap();
    let unversioned = json!({"schema": "olm.bundle", "package": "p", "name": "b", "image": "x",
        "properties": [{"type": "olm.package", "value": {"packageName": "p"}}]});
    write_json(tmp.path(), "c.json", &[package("p", "s"), unversioned]);
    let message = usage_message(tmp.path());
    assert!(
        message.contains("olm.bundle b (at byte") && message.ends_with("): the olm.package property has no version"),
        "{message}"
    );
}
