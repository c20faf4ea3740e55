use super::super::fbc::fixture;
use super::super::select::select;
use super::super::{CatalogFilter, ChannelFilter, PackageFilter};
use super::*;
use crate::error::Error;
use std::os::unix::fs::MetadataExt;

fn objects(path: &Path) -> Vec<Value> {
    let bytes = fs::read(path).unwrap();
    serde_json::Deserializer::from_slice(&bytes).into_iter::<Value>().map(Result::unwrap).collect()
}

fn names(objects: &[Value]) -> Vec<String> {
    objects.iter().map(|o| format!("{} {}", o["schema"].as_str().unwrap(), o["name"].as_str().unwrap_or("-"))).collect()
}

fn alpha_fast() -> CatalogFilter {
    let wanted = PackageFilter {
        name: "alpha".into(),
        default_channel: Some("fast".into()),
        channels: vec![ChannelFilter { name: "fast".into(), range: Default::default() }],
        ..PackageFilter::default()
    };
    CatalogFilter {
        catalog: "docker://example.com/index:v1".into(),
        full: true,
        packages: vec![wanted],
        ..CatalogFilter::default()
    }
}

#[test]
fn writes_each_kept_package_in_a_fixed_order() {
    let tmp = tempfile::tempdir().unwrap();
    fixture::sample(&tmp.path().join("in"));
    let catalog = Catalog::read(&tmp.path().join("in")).unwrap();
    let selection = select(&catalog, &alpha_fast()).unwrap();
    let out = tmp.path().join("out");
    write(&catalog, &selection, &out).unwrap();

    let mut listed: Vec<String> =
        fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    listed.sort();
    // a.v2.x need beta: b.v1.1.0 is added, and gamma for its GVK.
    assert_eq!(listed, ["alpha", "beta", "catalog.json", "gamma"]);
    let alpha = objects(&out.join("alpha/catalog.json"));
    assert_eq!(
        names(&alpha),
        [
            "olm.package alpha",
            "olm.channel fast",
            "olm.bundle a.v2.0.0",
            "olm.bundle a.v2.1.0-rc.1",
            "olm.bundle a.v2.2.0",
            "olm.deprecations -"
        ]
    );
    assert_eq!(alpha[0]["defaultChannel"], "fast");
    assert_eq!(alpha[0]["icon"]["mediatype"], "image/png", "the package object is kept whole");
    let deprecated: Vec<&str> =
        alpha[5]["entries"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(deprecated, ["fast is deprecated", "alpha is deprecated"]);
    let original = objects(&tmp.path().join("in/alpha/bundles.json"));
    assert_eq!(alpha[3], original[5], "a bundle is rendered exactly as in the catalog");

    let beta = objects(&out.join("beta/catalog.json"));
    assert_eq!(names(&beta), ["olm.package beta", "olm.channel stable", "olm.bundle b.v1.1.0"]);
    assert_eq!(beta[1]["entries"], serde_json::json!([{"name": "b.v1.1.0", "replaces": "b.v1.0.0"}]));
    let gamma = objects(&out.join("gamma/catalog.json"));
    assert_eq!(
        names(&gamma),
        ["olm.package gamma", "olm.channel main", "olm.bundle g.v0.2.0", "example.com.notes notes"]
    );
    assert_eq!(names(&objects(&out.join("catalog.json"))), ["example.com.global everywhere"]);

    assert_eq!(fs::metadata(out.join("alpha")).unwrap().mode() & 0o7777, 0o755);
    assert_eq!(fs::metadata(out.join("alpha/catalog.json")).unwrap().mode() & 0o7777, 0o644);
}

#[test]
fn the_same_selection_gives_the_same_bytes_and_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    fixture::sample(&tmp.path().join("in"));
    let catalog = Catalog::read(&tmp.path().join("in")).unwrap();
    let heads = CatalogFilter { catalog: "docker://example.com/index:v1".into(), ..CatalogFilter::default() };
    let selection = select(&catalog, &heads).unwrap();
    for run in ["one", "two"] {
        write(&catalog, &selection, &tmp.path().join(run)).unwrap();
    }
    for file in ["alpha/catalog.json", "beta/catalog.json", "gamma/catalog.json", "catalog.json"] {
        assert_eq!(
            fs::read(tmp.path().join("one").join(file)).unwrap(),
            fs::read(tmp.path().join("two").join(file)).unwrap(),
            "{file}"
        );
    }
    // The rendered config is a catalog that selects the same bundles again.
    let again = Catalog::read(&tmp.path().join("one")).unwrap();
    let reselected = select(&again, &CatalogFilter { full: true, ..heads }).unwrap();
    assert_eq!(reselected.bundles(), selection.bundles());
}

#[test]
fn a_non_empty_output_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    fixture::sample(&tmp.path().join("in"));
    let catalog = Catalog::read(&tmp.path().join("in")).unwrap();
    let selection = select(&catalog, &alpha_fast()).unwrap();
    fixture::write(tmp.path(), "out/left.txt", "x");
    let err = write(&catalog, &selection, &tmp.path().join("out")).unwrap_err();
    assert!(matches!(&err, Error::Usage(m) if m.contains("out: the output directory is not empty")), "{err}");
}
