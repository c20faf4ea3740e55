//! The filter rules: which bundles of a [`Catalog`] a [`CatalogFilter`] keeps, the way
//! oc-mirror v2 (operator-framework's mirror filter) selects them, plus the dependency
//! closure oc-mirror leaves out.
//!
//! - No packages: every channel of every package; `full` keeps every entry, else the head.
//! - Named packages: their named channels (all when none is named). Per channel, `full`
//!   keeps every entry, a range (the channel's, else the package's) keeps the in-range part
//!   of the replaces chain (module `graph`), else the head. A channel left empty is dropped,
//!   unless it is the default: then it is an error.
//! - The default channel must survive: the filter's `defaultChannel` (naming a kept
//!   channel) or the catalog's.
//! - Dependencies (`olm.package.required`, `olm.gvk.required`) of kept bundles that no
//!   kept bundle satisfies: the newest providing bundle on the providing package's default
//!   channel is added, transitively; with `skipDependencies` only reported ([`Note`]).
//!   A bundle added below what its channel already keeps brings the chain members between
//!   them, so that the rendered channel keeps one head.

mod graph;
mod note;

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use crate::error::{usage, Result};
use crate::text::untrusted;

use super::fbc::{shown, Bundle, Catalog, Channel, Gvk, Package, Requirement};
use super::version::{Range as Bounds, Version};
use super::{CatalogFilter, PackageFilter, Range};

pub use note::Note;

/// What a filter keeps of a catalog.
#[derive(Debug)]
pub struct Selection {
    packages: BTreeMap<String, KeptPackage>,
    bundles: Vec<KeptBundle>,
    images: Vec<String>,
    notes: Vec<Note>,
}

/// What is kept of one package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptPackage {
    /// The default channel the rendered package names.
    pub default_channel: Option<String>,
    /// Kept channels and, for each, the names of its kept entries.
    pub channels: BTreeMap<String, BTreeSet<String>>,
    pub bundles: BTreeSet<String>,
}

/// A kept bundle, for reports (`--json`) and for carrying its image.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct KeptBundle {
    pub package: String,
    pub name: String,
    /// Its version, empty when the bundle has none.
    pub version: String,
    pub image: String,
}

impl Selection {
    /// Kept bundles, sorted by (package, name).
    pub fn bundles(&self) -> Vec<KeptBundle> {
        self.bundles.clone()
    }

    /// Every image the kept bundles need (bundle images and related images), sorted, once.
    pub fn images(&self) -> Vec<String> {
        self.images.clone()
    }

    /// What the filter did that the user should hear.
    pub fn notes(&self) -> &[Note] {
        &self.notes
    }

    /// Kept packages, sorted by name.
    pub fn packages(&self) -> impl Iterator<Item = (&str, &KeptPackage)> {
        self.packages.iter().map(|(n, k)| (n.as_str(), k))
    }
}

/// Apply `filter` to `catalog`.
pub fn select(catalog: &Catalog, filter: &CatalogFilter) -> Result<Selection> {
    let mut s = Selector { catalog, kept: BTreeMap::new(), notes: Vec::new(), providers: OnceCell::new() };
    if filter.packages.is_empty() {
        for name in catalog.packages() {
            let package =
                catalog.package(name).ok_or_else(|| usage(format!("package {} vanished", untrusted(name))))?;
            s.keep_package(package, &PackageFilter::default(), filter.full)?;
        }
    } else {
        let mut seen = BTreeSet::new();
        for wanted in &filter.packages {
            if !seen.insert(wanted.name.as_str()) {
                return Err(usage(format!("package {} is named twice in the filter", untrusted(&wanted.name))));
            }
            let package = catalog
                .package(&wanted.name)
                .ok_or_else(|| usage(format!("package {} is not in the catalog", untrusted(&wanted.name))))?;
            s.keep_package(package, wanted, filter.full)?;
        }
    }
    s.close_dependencies(filter.skip_dependencies)?;
    Ok(s.finish())
}

struct Selector<'c> {
    catalog: &'c Catalog,
    kept: BTreeMap<String, KeptPackage>,
    notes: Vec<Note>,
    /// For each GVK, the packages with a bundle providing it, by name (made when needed).
    providers: OnceCell<HashMap<&'c Gvk, Vec<&'c Package>>>,
}

impl<'c> Selector<'c> {
    fn keep_package(&mut self, package: &'c Package, wanted: &PackageFilter, full: bool) -> Result<()> {
        let name = untrusted(&package.name);
        let channel_ranges = wanted.channels.iter().any(|c| !c.range.is_empty());
        if !wanted.range.is_empty() && channel_ranges {
            return Err(usage(format!(
                "package {name}: a package-level and a channel-level version range cannot be combined"
            )));
        }
        if full && (!wanted.range.is_empty() || channel_ranges) {
            return Err(usage(format!("package {name}: full: true cannot be combined with a version range")));
        }
        let mut chosen: Vec<(&Channel, &Range)> = Vec::new();
        for c in &wanted.channels {
            let channel = package.channels.get(&c.name).ok_or_else(|| {
                usage(format!("package {name}: channel {} is not in the catalog", untrusted(&c.name)))
            })?;
            let range = if c.range.is_empty() { &wanted.range } else { &c.range };
            chosen.push((channel, range));
        }
        if wanted.channels.is_empty() {
            chosen = package.channels.values().map(|c| (c, &wanted.range)).collect();
        }
        let default_channel = default_channel(package, wanted, &chosen)?;
        let mut kept = KeptPackage { default_channel, channels: BTreeMap::new(), bundles: BTreeSet::new() };
        for (channel, range) in chosen {
            let names = self.keep_channel(package, channel, range, full)?;
            if names.is_empty() {
                if kept.default_channel.as_deref() == Some(channel.name.as_str()) {
                    return Err(usage(format!(
                        "package {name}: the filter leaves default channel {} empty",
                        untrusted(&channel.name)
                    )));
                }
                continue;
            }
            // Names a range keeps that are no entry of the channel (skips of absent entries)
            // are left out: a bundle in no channel is an invalid catalog for opm.
            let entries: BTreeSet<String> =
                channel.entries.iter().map(|e| &e.name).filter(|n| names.contains(*n)).cloned().collect();
            kept.bundles.extend(entries.iter().cloned());
            kept.channels.insert(channel.name.clone(), entries);
        }
        check_entries(package, &kept)?;
        self.kept.insert(package.name.clone(), kept);
        Ok(())
    }

    /// The names one channel keeps: bundles, and (for a range) bundles its entries skip.
    fn keep_channel(
        &mut self,
        package: &Package,
        channel: &Channel,
        range: &Range,
        full: bool,
    ) -> Result<BTreeSet<String>> {
        if full {
            return Ok(channel.entries.iter().map(|e| e.name.clone()).collect());
        }
        let graph = channel_graph(self.catalog, &package.name, channel)?;
        if range.is_empty() {
            return Ok(BTreeSet::from([graph.head().to_string()]));
        }
        let bounds = bounds(package, range)?;
        let version = |name: &str| package.bundles.get(name).and_then(|b| b.version.as_ref());
        let (kept, bridges) = graph.in_range(&bounds, version);
        for bundle in bridges {
            let version = version(bundle).map(Version::to_string);
            let (package, channel, bundle) = (package.name.clone(), channel.name.clone(), bundle.to_string());
            self.notes.push(Note::Bridge { package, channel, bundle, version, range: bounds.to_string() });
        }
        Ok(kept.into_iter().map(str::to_string).collect())
    }

    /// Add what kept bundles require, transitively (or only report it).
    fn close_dependencies(&mut self, report_only: bool) -> Result<()> {
        let mut queue: VecDeque<(String, String)> =
            self.kept.iter().flat_map(|(p, k)| k.bundles.iter().map(move |b| (p.clone(), b.clone()))).collect();
        let mut provided: HashSet<&Gvk> = self.kept_bundles().flat_map(|b| &b.provides).collect();
        while let Some((package, name)) = queue.pop_front() {
            let Some(bundle) = self.catalog.package(&package).and_then(|p| p.bundles.get(&name)) else { continue };
            for requirement in &bundle.requires {
                if self.satisfied(requirement, &provided) {
                    continue;
                }
                let needed_by = (package.clone(), name.clone());
                let requirement = requirement.clone();
                match self.provider(&requirement) {
                    None => self.notes.push(Note::Unsatisfied { needed_by, requirement }),
                    Some(provider) if report_only => {
                        self.notes.push(Note::NotAdded { needed_by, requirement, provider })
                    }
                    Some((p, channel, b)) => {
                        self.notes.push(Note::Added {
                            added: (p.clone(), b.clone()),
                            channel: channel.clone(),
                            needed_by,
                            requirement,
                        });
                        for added in self.add_dependency(&p, &channel, &b)? {
                            provided.extend(&added.provides);
                            queue.push_back((p.clone(), added.name.clone()));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Keep `bundle` of `package` on `channel`, and the chain members that join it to what
    /// the channel already keeps (with a note each). Returns the bundles newly kept.
    fn add_dependency(&mut self, package: &str, channel: &str, bundle: &str) -> Result<Vec<&'c Bundle>> {
        let catalog_package =
            self.catalog.package(package).ok_or_else(|| usage(format!("package {} vanished", untrusted(package))))?;
        let kept = self.kept.entry(package.to_string()).or_insert_with(|| KeptPackage {
            default_channel: Some(channel.to_string()),
            channels: BTreeMap::new(),
            bundles: BTreeSet::new(),
        });
        let entries = kept.channels.entry(channel.to_string()).or_default();
        let mut added = vec![bundle];
        if !entries.is_empty() {
            if let Some(c) = catalog_package.channels.get(channel) {
                let graph = channel_graph(self.catalog, package, c)?;
                entries.insert(bundle.to_string());
                added.extend(graph.gaps(entries));
            }
        }
        let mut newly = Vec::new();
        let mut joined = Vec::new();
        for (i, name) in added.into_iter().enumerate() {
            let Some(b) = catalog_package.bundles.get(name) else { continue };
            entries.insert(name.to_string());
            if kept.bundles.insert(name.to_string()) {
                newly.push(b);
                if i > 0 {
                    joined.push(name);
                }
            }
        }
        for name in joined {
            let (package, channel, name, dependency) = (package.into(), channel.into(), name.into(), bundle.into());
            self.notes.push(Note::Joined { package, channel, bundle: name, dependency });
        }
        Ok(newly)
    }

    fn kept_bundles(&self) -> impl Iterator<Item = &'c Bundle> + '_ {
        self.kept.iter().flat_map(|(p, k)| {
            let package = self.catalog.package(p);
            k.bundles.iter().filter_map(move |b| package.and_then(|p| p.bundles.get(b)))
        })
    }

    /// Whether a kept bundle satisfies `requirement` (`provided`: the GVKs kept bundles provide).
    fn satisfied(&self, requirement: &Requirement, provided: &HashSet<&Gvk>) -> bool {
        match requirement {
            Requirement::Package { package, range } => self.kept.get(package).is_some_and(|k| {
                let bundles = self.catalog.package(package).map(|p| &p.bundles);
                k.bundles.iter().filter_map(|b| bundles?.get(b)?.version.as_ref()).any(|v| range.contains(v))
            }),
            Requirement::Gvk(gvk) => provided.contains(gvk),
            Requirement::Unreadable { .. } => false,
        }
    }

    /// The bundle that satisfies `requirement`: the newest one that does on its package's
    /// default channel (for a GVK, the first package by name that has one). Returns
    /// (package, channel, bundle).
    fn provider(&self, requirement: &Requirement) -> Option<(String, String, String)> {
        let newest_in = |package: &Package, fits: &dyn Fn(&Bundle) -> bool| {
            let channel = match self.kept.get(&package.name) {
                Some(k) => k.default_channel.clone(),
                None => package.default_channel.clone(),
            }?;
            let entries = &package.channels.get(&channel)?.entries;
            let bundles = entries.iter().filter_map(|e| package.bundles.get(&e.name)).filter(|b| fits(b));
            let best = bundles.max_by(|a, b| a.version.cmp(&b.version).then_with(|| b.name.cmp(&a.name)))?;
            Some((package.name.clone(), channel, best.name.clone()))
        };
        match requirement {
            Requirement::Package { package, range } => {
                let fits = |b: &Bundle| b.version.as_ref().is_some_and(|v| range.contains(v));
                newest_in(self.catalog.package(package)?, &fits)
            }
            Requirement::Gvk(gvk) => {
                let fits = |b: &Bundle| b.provides.contains(gvk);
                self.gvk_providers(gvk).iter().find_map(|p| newest_in(p, &fits))
            }
            Requirement::Unreadable { .. } => None,
        }
    }

    fn gvk_providers(&self, gvk: &Gvk) -> &[&'c Package] {
        let providers = self.providers.get_or_init(|| {
            let mut providers: HashMap<&Gvk, Vec<&Package>> = HashMap::new();
            for package in self.catalog.packages().filter_map(|p| self.catalog.package(p)) {
                for g in package.bundles.values().flat_map(|b| &b.provides) {
                    let list = providers.entry(g).or_default();
                    if !list.last().is_some_and(|p| std::ptr::eq(*p, package)) {
                        list.push(package);
                    }
                }
            }
            providers
        });
        providers.get(gvk).map(Vec::as_slice).unwrap_or_default()
    }

    fn finish(self) -> Selection {
        let mut bundles = Vec::new();
        let mut images = BTreeSet::new();
        for (name, kept) in &self.kept {
            let Some(package) = self.catalog.package(name) else { continue };
            for bundle in kept.bundles.iter().filter_map(|b| package.bundles.get(b)) {
                images.insert(bundle.image.clone());
                images.extend(bundle.related_images.iter().cloned());
                bundles.push(KeptBundle {
                    package: name.clone(),
                    name: bundle.name.clone(),
                    version: bundle.version.as_ref().map(Version::to_string).unwrap_or_default(),
                    image: bundle.image.clone(),
                });
            }
        }
        Selection { packages: self.kept, bundles, images: images.into_iter().collect(), notes: self.notes }
    }
}

/// A channel's checked upgrade graph; the error names its file, package and channel.
fn channel_graph<'a>(catalog: &Catalog, package: &str, channel: &'a Channel) -> Result<graph::Graph<'a>> {
    graph::Graph::new(channel).map_err(|e| {
        let file = shown(&catalog.path(channel.location.file));
        usage(format!("{file}: package {} channel {}: {e}", untrusted(package), untrusted(&channel.name)))
    })
}

/// The kept package's default channel: the filter's (which must be kept) or the catalog's
/// (which must then be kept).
fn default_channel(package: &Package, wanted: &PackageFilter, chosen: &[(&Channel, &Range)]) -> Result<Option<String>> {
    let kept = |n: &str| chosen.iter().any(|(c, _)| c.name == n);
    let name = untrusted(&package.name);
    match (&wanted.default_channel, &package.default_channel) {
        (Some(d), _) if kept(d) => Ok(Some(d.clone())),
        (Some(d), _) => Err(usage(format!("package {name}: defaultChannel {} is not among the kept channels", untrusted(d)))),
        (None, Some(d)) if !kept(d) => Err(usage(format!(
            "package {name}: the kept channels leave out the catalog's default channel {}; set defaultChannel to a kept one",
            untrusted(d)
        ))),
        (None, d) => Ok(d.clone()),
    }
}

/// A version range of the filter as bounds: `minVersion` (or `minBundle`'s version) and
/// `maxVersion`.
fn bounds(package: &Package, range: &Range) -> Result<Bounds> {
    let name = untrusted(&package.name);
    let parse = |field: &str, text: &str| {
        Version::parse_loose(text)
            .ok_or_else(|| usage(format!("package {name}: {field} {} is not a version", untrusted(text))))
    };
    let min = match (&range.min_version, &range.min_bundle) {
        (Some(_), Some(_)) => {
            return Err(usage(format!("package {name}: minVersion and minBundle cannot be combined")))
        }
        (Some(v), None) => Some(parse("minVersion", v)?),
        (None, Some(b)) => {
            let bundle = package.bundles.get(b).ok_or_else(|| {
                usage(format!("package {name}: minBundle {} is not a bundle of the package", untrusted(b)))
            })?;
            let version = bundle.version.clone();
            Some(version.ok_or_else(|| usage(format!("package {name}: minBundle {} has no version", untrusted(b))))?)
        }
        (None, None) => None,
    };
    let max = range.max_version.as_deref().map(|v| parse("maxVersion", v)).transpose()?;
    Ok(Bounds::between(min.as_ref(), max.as_ref()))
}

/// Every kept channel entry must name a bundle the package has: its image is carried.
fn check_entries(package: &Package, kept: &KeptPackage) -> Result<()> {
    for (channel, entries) in &kept.channels {
        if let Some(missing) = entries.iter().find(|e| !package.bundles.contains_key(*e)) {
            return Err(usage(format!(
                "package {} channel {}: entry {} names a bundle the package does not have",
                untrusted(&package.name),
                untrusted(channel),
                untrusted(missing)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
