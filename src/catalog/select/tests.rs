use super::super::fbc::fixture::{self, bundle, channel, package, write_json};
use super::super::{ChannelFilter, PackageFilter, Range};
use super::*;
use crate::error::Error;

fn sample() -> (tempfile::TempDir, Catalog) {
    let tmp = tempfile::tempdir().unwrap();
    fixture::sample(tmp.path());
    let catalog = Catalog::read(tmp.path()).unwrap();
    (tmp, catalog)
}

fn kept(selection: &Selection) -> Vec<String> {
    selection.bundles().into_iter().map(|b| b.name).collect()
}

fn pkg(name: &str) -> PackageFilter {
    PackageFilter { name: name.into(), ..PackageFilter::default() }
}

fn range(min: Option<&str>, max: Option<&str>) -> Range {
    Range { min_version: min.map(Into::into), max_version: max.map(Into::into), min_bundle: None }
}

fn chan(name: &str, range: Range) -> ChannelFilter {
    ChannelFilter { name: name.into(), range }
}

fn filter(packages: Vec<PackageFilter>) -> CatalogFilter {
    CatalogFilter { catalog: "docker://example.com/index:v1".into(), packages, ..CatalogFilter::default() }
}

fn refused(catalog: &Catalog, filter: &CatalogFilter) -> String {
    match select(catalog, filter) {
        Err(e @ Error::Usage(_)) => e.to_string(),
        other => panic!("expected a usage error, got {other:?}"),
    }
}

#[test]
fn no_packages_keeps_every_channel_head_and_closes_dependencies() {
    let (_tmp, catalog) = sample();
    let s = select(&catalog, &filter(vec![])).unwrap();
    // Heads: alpha stable a.v2.0.0, fast a.v2.2.0; beta b.v2.0.0; gamma g.v0.2.0. a.v2.x need
    // beta <2.0.0: b.v1.1.0 is added; it needs the Gamma GVK, which g.v0.2.0 provides.
    assert_eq!(kept(&s), ["a.v2.0.0", "a.v2.2.0", "b.v1.1.0", "b.v2.0.0", "g.v0.2.0"]);
    let added: Vec<String> = s.notes().iter().map(ToString::to_string).collect();
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(
        added[0],
        "added dependency b.v1.1.0 (package beta) from channel stable: needed by a.v2.0.0 (package alpha) \
         (olm.package.required beta >=1.0.0 <2.0.0)"
    );
    assert!(!s.notes()[0].is_warning());
    let (_, beta) = s.packages().find(|(n, _)| *n == "beta").unwrap();
    assert_eq!(beta.channels["stable"], BTreeSet::from(["b.v1.1.0".to_string(), "b.v2.0.0".to_string()]));
}

#[test]
fn full_without_packages_keeps_every_entry() {
    let (_tmp, catalog) = sample();
    let s = select(&catalog, &CatalogFilter { full: true, ..filter(vec![]) }).unwrap();
    assert_eq!(s.bundles().len(), 7 + 3 + 2);
    assert!(s.notes().is_empty());
}

#[test]
fn images_are_bundles_and_related_images_once_sorted() {
    let (_tmp, catalog) = sample();
    let s = select(
        &catalog,
        &filter(vec![PackageFilter { channels: vec![chan("stable", Range::default())], ..pkg("beta") }]),
    )
    .unwrap();
    assert_eq!(kept(&s), ["b.v2.0.0"]);
    let mut expected = vec![
        fixture::image("beta", "b.v2.0.0", "bundle"),
        fixture::image("beta", "b.v2.0.0", "operator"),
        format!("quay.io/test/shared@sha256:{}", "0".repeat(64)),
    ];
    expected.sort();
    assert_eq!(s.images(), expected);
    let b = &s.bundles()[0];
    assert_eq!((b.package.as_str(), b.version.as_str()), ("beta", "2.0.0"));
}

#[test]
fn a_channel_range_keeps_the_chain_part_in_range_with_skipped_bundles() {
    let (_tmp, catalog) = sample();
    let wanted = PackageFilter { channels: vec![chan("stable", range(Some("1.1.0"), Some("1.2.0")))], ..pkg("alpha") };
    let s = select(&catalog, &filter(vec![wanted])).unwrap();
    assert_eq!(kept(&s), ["a.v1.1.0", "a.v1.1.1", "a.v1.2.0"]);
    let (_, alpha) = s.packages().next().unwrap();
    assert_eq!(alpha.channels.keys().collect::<Vec<_>>(), ["stable"]);
    assert!(s.notes().is_empty());
}

#[test]
fn a_prerelease_on_the_chain_is_kept_as_a_bridge() {
    let (_tmp, catalog) = sample();
    // minVersion 2.0.0 on every channel (package range): stable keeps a.v2.0.0; fast keeps
    // a.v2.0.0 and a.v2.2.0, and a.v2.1.0-rc.1 (a prerelease, outside `>=2.0.0` as oc-mirror
    // reads it) between them. Dependencies only reported.
    let wanted = PackageFilter { range: range(Some("2.0.0"), None), ..pkg("alpha") };
    let s = select(&catalog, &CatalogFilter { skip_dependencies: true, ..filter(vec![wanted]) }).unwrap();
    assert_eq!(kept(&s), ["a.v2.0.0", "a.v2.1.0-rc.1", "a.v2.2.0"]);
    let notes: Vec<String> = s.notes().iter().map(ToString::to_string).collect();
    assert_eq!(
        notes[0],
        "kept a.v2.1.0-rc.1 2.1.0-rc.1 of package alpha channel fast: outside >=2.0.0 but needed to bridge the upgrade chain"
    );
    assert!(notes[1..].iter().all(|n| n.starts_with("dependency not added (skipDependencies)")), "{notes:?}");
    assert!(notes[1].contains("which b.v1.1.0 (package beta) would satisfy"), "{notes:?}");
    assert!(s.notes().iter().all(Note::is_warning));
}

#[test]
fn min_bundle_and_max_version() {
    let (_tmp, catalog) = sample();
    let by_bundle = Range { min_bundle: Some("b.v1.1.0".into()), ..Range::default() };
    let s = select(&catalog, &filter(vec![PackageFilter { range: by_bundle, ..pkg("beta") }])).unwrap();
    // b.v1.1.0 needs Gamma: g.v0.2.0, the newest on gamma's default channel, is added.
    assert_eq!(kept(&s), ["b.v1.1.0", "b.v2.0.0", "g.v0.2.0"]);
    let s = select(&catalog, &filter(vec![PackageFilter { range: range(None, Some("1.1")), ..pkg("beta") }])).unwrap();
    assert_eq!(kept(&s), ["b.v1.0.0", "b.v1.1.0", "g.v0.2.0"]);
    assert!(s.notes()[0].to_string().ends_with("(olm.gvk.required example.com/v1/Gamma)"));
}

#[test]
fn full_with_packages_keeps_the_selected_channels() {
    let (_tmp, catalog) = sample();
    let fast_only = PackageFilter { channels: vec![chan("fast", Range::default())], ..pkg("alpha") };
    let message = refused(&catalog, &CatalogFilter { full: true, ..filter(vec![fast_only.clone()]) });
    assert!(message.contains("package alpha") && message.contains("default channel stable"), "{message}");
    let wanted = PackageFilter { default_channel: Some("fast".into()), ..fast_only };
    let s = select(&catalog, &CatalogFilter { full: true, skip_dependencies: true, ..filter(vec![wanted]) }).unwrap();
    assert_eq!(kept(&s), ["a.v2.0.0", "a.v2.1.0-rc.1", "a.v2.2.0"]);
    assert_eq!(s.packages().next().unwrap().1.default_channel.as_deref(), Some("fast"));
}

#[test]
fn empty_channels_are_dropped_unless_default() {
    let (_tmp, catalog) = sample();
    let both = vec![chan("stable", Range::default()), chan("fast", Range::default())];
    let wanted = PackageFilter {
        default_channel: Some("fast".into()),
        range: range(Some("2.2.0"), None),
        channels: both,
        ..pkg("alpha")
    };
    let s = select(&catalog, &CatalogFilter { skip_dependencies: true, ..filter(vec![wanted.clone()]) }).unwrap();
    assert_eq!(kept(&s), ["a.v2.2.0"]);
    assert_eq!(s.packages().next().unwrap().1.channels.keys().collect::<Vec<_>>(), ["fast"]);
    let message = refused(&catalog, &filter(vec![PackageFilter { default_channel: None, ..wanted }]));
    assert!(message.contains("package alpha: the filter leaves default channel stable empty"), "{message}");
}

#[test]
fn filters_oc_mirror_refuses_are_refused() {
    let (_tmp, catalog) = sample();
    let cases = vec![
        (filter(vec![pkg("nothere")]), "package nothere is not in the catalog"),
        (
            filter(vec![PackageFilter { channels: vec![chan("beta", Range::default())], ..pkg("alpha") }]),
            "channel beta is not in",
        ),
        (
            filter(vec![PackageFilter {
                range: range(Some("1.0.0"), None),
                channels: vec![chan("stable", range(None, Some("2.0.0")))],
                ..pkg("alpha")
            }]),
            "a package-level and a channel-level version range",
        ),
        (
            CatalogFilter {
                full: true,
                ..filter(vec![PackageFilter { range: range(Some("1.0.0"), None), ..pkg("alpha") }])
            },
            "full: true",
        ),
        (
            filter(vec![PackageFilter { default_channel: Some("beta".into()), ..pkg("alpha") }]),
            "defaultChannel beta is not among",
        ),
        (
            filter(vec![PackageFilter { range: range(Some("one"), None), ..pkg("alpha") }]),
            "minVersion one is not a version",
        ),
        (
            filter(vec![PackageFilter {
                range: Range { min_bundle: Some("x".into()), ..Range::default() },
                ..pkg("alpha")
            }]),
            "minBundle x",
        ),
        (filter(vec![pkg("beta"), pkg("beta")]), "named twice"),
    ];
    for (f, expected) in cases {
        let message = refused(&catalog, &f);
        assert!(message.contains(expected), "{expected}: {message}");
    }
}

fn one_channel(entries: &[(&str, Option<&str>, &[&str])]) -> (tempfile::TempDir, Catalog) {
    let tmp = tempfile::tempdir().unwrap();
    let mut objects = vec![package("p", "s"), channel("p", "s", entries)];
    objects.extend(["x", "y", "z"].iter().enumerate().map(|(i, n)| bundle("p", n, &format!("1.{i}.0"), &[])));
    write_json(tmp.path(), "c.json", &objects);
    let catalog = Catalog::read(tmp.path()).unwrap();
    (tmp, catalog)
}

#[test]
fn a_channel_needs_exactly_one_head_and_no_cycle() {
    let (_t, two_heads) = one_channel(&[("x", None, &[]), ("y", Some("x"), &[]), ("z", Some("x"), &[])]);
    assert!(refused(&two_heads, &filter(vec![])).contains("c.json: package p channel s: several channel heads: y, z"));
    let (_t, cycle) = one_channel(&[("x", Some("y"), &[]), ("y", Some("x"), &[])]);
    assert!(refused(&cycle, &filter(vec![])).contains("package p channel s: no channel head"));
    let (_t, tail_cycle) = one_channel(&[("x", Some("y"), &[]), ("y", Some("x"), &[]), ("z", Some("y"), &[])]);
    assert!(refused(&tail_cycle, &filter(vec![])).contains("package p channel s: the upgrade graph has a cycle"));
    let (_t, missing) = one_channel(&[("x", None, &[]), ("gone", Some("x"), &[])]);
    assert!(refused(&missing, &filter(vec![])).contains("entry gone names a bundle the package does not have"));
    // A skip in a full channel's graph is no error: full checks nothing.
    let s = select(&two_heads, &CatalogFilter { full: true, ..filter(vec![]) }).unwrap();
    assert_eq!(kept(&s), ["x", "y", "z"]);
}

#[test]
fn a_dependency_nothing_provides_is_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let needs = [
        fixture::requires_package("nowhere", ">=1.0.0"),
        fixture::gvk("olm.gvk.required", "g", "v1", "K"),
        // opm loads a range that is not semver; it is reported, never resolved.
        fixture::requires_package("p", "~1"),
    ];
    write_json(
        tmp.path(),
        "c.json",
        &[package("p", "s"), channel("p", "s", &[("x", None, &[])]), bundle("p", "x", "1.0.0", &needs)],
    );
    let catalog = Catalog::read(tmp.path()).unwrap();
    let s = select(&catalog, &filter(vec![])).unwrap();
    let notes: Vec<String> = s.notes().iter().map(ToString::to_string).collect();
    assert_eq!(
        notes,
        [
            "unsatisfiable dependency: x (package p) needs olm.package.required nowhere >=1.0.0, which no bundle of the catalog provides",
            "unsatisfiable dependency: x (package p) needs olm.gvk.required g/v1/K, which no bundle of the catalog provides",
            "unsatisfiable dependency: x (package p) needs olm.package.required p ~1 (no package name or no semver range), \
             which no bundle of the catalog provides",
        ]
    );
    assert!(s.notes().iter().all(Note::is_warning));
}

#[test]
fn catalog_text_in_notes_is_escaped() {
    let note = Note::Unsatisfied {
        needed_by: ("p".into(), "x\u{1b}[2J".into()),
        requirement: Requirement::Package {
            package: "q\nr".into(),
            range: crate::catalog::version::Range::parse(">=1.0.0").unwrap(),
        },
    };
    let text = note.to_string();
    assert!(!text.contains('\u{1b}') && !text.contains('\n'), "{text}");
}

#[test]
fn a_dependency_below_a_kept_head_is_joined_to_it() {
    let tmp = tempfile::tempdir().unwrap();
    let needs_old_q = [fixture::requires_package("q", ">=1.0.0 <1.1.0")];
    write_json(
        tmp.path(),
        "c.json",
        &[
            package("p", "s"),
            channel("p", "s", &[("p1", None, &[])]),
            bundle("p", "p1", "1.0.0", &needs_old_q),
            package("q", "s"),
            channel(
                "q",
                "s",
                &[("q1", None, &[]), ("q2", Some("q1"), &[]), ("q3", Some("q2"), &[]), ("q4", Some("q3"), &[])],
            ),
            bundle("q", "q1", "1.0.0", &[]),
            bundle("q", "q2", "1.1.0", &[fixture::requires_package("p", ">=1.0.0")]),
            bundle("q", "q3", "1.2.0", &[fixture::requires_package("r", ">=1.0.0")]),
            bundle("q", "q4", "2.0.0", &[]),
        ],
    );
    let catalog = Catalog::read(tmp.path()).unwrap();
    // Heads p1 and q4; p1 needs q1: q2 and q3 join it to q4, or the channel would have two
    // heads. q2's dependency is kept already; q3's is not in the catalog.
    let s = select(&catalog, &filter(vec![])).unwrap();
    assert_eq!(kept(&s), ["p1", "q1", "q2", "q3", "q4"]);
    let notes: Vec<String> = s.notes().iter().map(ToString::to_string).collect();
    assert_eq!(
        notes,
        [
            "added dependency q1 (package q) from channel s: needed by p1 (package p) (olm.package.required q >=1.0.0 <1.1.0)",
            "kept q3 of package q channel s: it joins dependency q1 to the channel's kept head",
            "kept q2 of package q channel s: it joins dependency q1 to the channel's kept head",
            "unsatisfiable dependency: q3 (package q) needs olm.package.required r >=1.0.0, which no bundle of the catalog provides",
        ]
    );
    assert!(!s.notes()[0].is_warning() && s.notes()[1].is_warning());
    let (_, q) = s.packages().find(|(n, _)| *n == "q").unwrap();
    assert_eq!(q.channels["s"].len(), 4);
}

#[test]
fn a_skipped_bundle_that_is_no_entry_is_not_kept() {
    // z (1.2.0) is skipped by y but is no entry of the channel: opm refuses a bundle in no
    // channel, so the range keeps x and y only.
    let (_t, catalog) = one_channel(&[("x", None, &[]), ("y", Some("x"), &["z"])]);
    let wanted = PackageFilter { range: range(Some("1.0.0"), None), ..pkg("p") };
    let s = select(&catalog, &filter(vec![wanted])).unwrap();
    assert_eq!(kept(&s), ["x", "y"]);
    assert!(s.notes().is_empty(), "{:?}", s.notes());
}
