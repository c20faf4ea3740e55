//! A channel's upgrade graph as OLM reads it: the head is the entry no other entry
//! `replaces` or `skips`; exactly one must exist, and following `replaces` and `skips`
//! from it must reach every edge (no cycle). Version ranges are applied to the `replaces`
//! chain from the head, as operator-framework's mirror filter applies them.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::text::untrusted;

use super::super::fbc::Channel;
use super::super::version::{Range, Version};

pub(super) struct Graph<'c> {
    head: &'c str,
    replaces: HashMap<&'c str, &'c str>,
    skips: HashMap<&'c str, &'c [String]>,
}

impl<'c> Graph<'c> {
    /// Check the channel and find its head; the error says what is wrong.
    pub(super) fn new(channel: &'c Channel) -> Result<Graph<'c>, String> {
        let mut replaces = HashMap::new();
        let mut skips = HashMap::new();
        let mut incoming: HashMap<&str, HashSet<&str>> = HashMap::new();
        let mut seen = HashSet::new();
        for e in &channel.entries {
            let name = e.name.as_str();
            if !seen.insert(name) {
                return Err(format!("entry {} appears twice", untrusted(name)));
            }
            if e.replaces.as_deref() == Some(name) || e.skips.iter().any(|s| s == name) {
                return Err(format!("entry {} replaces or skips itself", untrusted(name)));
            }
            if let Some(r) = e.replaces.as_deref() {
                replaces.insert(name, r);
                incoming.entry(r).or_default().insert(name);
            }
            for s in &e.skips {
                incoming.entry(s.as_str()).or_default().insert(name);
            }
            skips.insert(name, e.skips.as_slice());
        }
        let heads: Vec<&str> =
            channel.entries.iter().map(|e| e.name.as_str()).filter(|n| !incoming.contains_key(n)).collect();
        let head = match heads.as_slice() {
            [] if channel.entries.is_empty() => return Err("the channel has no entries".to_string()),
            [] => return Err("no channel head: every entry is replaced or skipped (a cycle)".to_string()),
            [one] => *one,
            several => {
                let mut names: Vec<String> = several.iter().map(|n| untrusted(n)).collect();
                names.sort();
                return Err(format!("several channel heads: {}", names.join(", ")));
            }
        };
        let graph = Graph { head, replaces, skips };
        graph.check_acyclic(incoming)?;
        Ok(graph)
    }

    pub(super) fn head(&self) -> &'c str {
        self.head
    }

    /// The `replaces` chain from the head.
    fn chain(&self) -> Vec<&'c str> {
        let mut chain = vec![self.head];
        while let Some(next) = self.replaces.get(chain[chain.len() - 1]) {
            chain.push(next);
        }
        chain
    }

    /// The chain members that join `kept` into one upgrade path: those between the highest
    /// and the lowest place of a kept entry (an entry only skipped is placed at the first
    /// member that skips it), not kept yet. Without them, a bundle added below the kept
    /// head would be a second channel head.
    pub(super) fn gaps(&self, kept: &BTreeSet<String>) -> Vec<&'c str> {
        let chain = self.chain();
        let placed = |i: &usize| {
            let name = chain[*i];
            kept.contains(name) || self.skips.get(name).is_some_and(|s| s.iter().any(|n| kept.contains(n)))
        };
        let (Some(top), Some(bottom)) = ((0..chain.len()).find(placed), (0..chain.len()).rev().find(placed)) else {
            return Vec::new();
        };
        chain[top..=bottom].iter().copied().filter(|n| !kept.contains(*n)).collect()
    }

    /// Kahn's walk from the head: an edge never consumed lies on a cycle.
    fn check_acyclic(&self, mut incoming: HashMap<&'c str, HashSet<&'c str>>) -> Result<(), String> {
        let mut queue = vec![self.head];
        while let Some(cur) = queue.pop() {
            let next = self.replaces.get(cur).into_iter().copied();
            let skipped = self.skips.get(cur).into_iter().flat_map(|s| s.iter().map(String::as_str));
            for target in next.chain(skipped) {
                let Some(from) = incoming.get_mut(target) else { continue };
                from.remove(cur);
                if from.is_empty() {
                    incoming.remove(target);
                    queue.push(target);
                }
            }
        }
        match incoming.keys().min() {
            None => Ok(()),
            Some(stuck) => Err(format!("the upgrade graph has a cycle (through {})", untrusted(stuck))),
        }
    }

    /// The names a version range keeps, and the out-of-range chain members kept to bridge
    /// it. On the chain from the head, the new head is the lowest entry whose part of the
    /// chain (itself, what it skips, what it replaces, counted once) holds every in-range
    /// bundle; the tail is the first entry below which none is left. Everything between is
    /// kept, with the in-range bundles each skips.
    pub(super) fn in_range<'v>(
        &self,
        range: &Range,
        version: impl Fn(&str) -> Option<&'v Version>,
    ) -> (BTreeSet<&'c str>, Vec<&'c str>) {
        let chain = self.chain();
        let fits = |name: &str| version(name).is_some_and(|v| range.contains(v));
        let skips_of = |name: &str| self.skips.get(name).copied().unwrap_or_default();
        // counts[i]: in-range bundles at or below chain[i], each counted at its lowest place.
        let mut counts = vec![0usize; chain.len()];
        let mut seen = HashSet::new();
        for i in (0..chain.len()).rev() {
            let below = counts.get(i + 1).copied().unwrap_or(0);
            let own = std::iter::once(chain[i]).chain(skips_of(chain[i]).iter().map(String::as_str));
            counts[i] = below + own.filter(|n| fits(n) && seen.insert(*n)).count();
        }
        let top = counts[0];
        let head = counts.iter().rposition(|&c| c == top).unwrap_or(0);
        let tail = counts.iter().position(|&c| c == 0).unwrap_or(chain.len());
        let mut kept = BTreeSet::new();
        let mut bridges = Vec::new();
        for &name in chain.iter().take(tail).skip(head) {
            if !fits(name) {
                bridges.push(name);
            }
            kept.insert(name);
            kept.extend(skips_of(name).iter().map(String::as_str).filter(|s| fits(s)));
        }
        (kept, bridges)
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::fbc::{At, Entry, Location};
    use super::*;

    fn channel(entries: &[(&str, Option<&str>, &[&str])]) -> Channel {
        let entries = entries
            .iter()
            .map(|(n, r, s)| Entry {
                name: n.to_string(),
                replaces: r.map(str::to_string),
                skips: s.iter().map(|s| s.to_string()).collect(),
            })
            .collect();
        Channel { name: "c".into(), entries, location: Location { file: 0, at: At::Document(0) } }
    }

    /// operator-framework's mirror filter cases (TestChannel_FilterByVersionRange): the
    /// entries, the unversioned bundles, the kept names and the bridges.
    #[test]
    fn ranges_keep_what_the_mirror_filter_keeps() {
        type Case<'a> =
            (&'a [(&'a str, Option<&'a str>, &'a [&'a str])], &'a str, &'a [&'a str], &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            (&[("foo.v1.0.0", None, &[])], ">=1.0.0 <2.0.0", &[], &["foo.v1.0.0"], &[]),
            (&[("foo.v2.0.0", None, &[])], ">=1.0.0 <2.0.0", &[], &[], &[]),
            (
                &[
                    ("foo.v1.1.0", Some("foo.v1.0.0"), &[]),
                    ("foo.v1.0.0", Some("foo.v0.1.0"), &[]),
                    ("foo.v0.1.0", None, &[]),
                ],
                ">=1.0.0 <2.0.0",
                &[],
                &["foo.v1.0.0", "foo.v1.1.0"],
                &[],
            ),
            (
                &[
                    ("foo.v2.0.0", Some("foo.v1.1.0"), &[]),
                    ("foo.v1.1.0", Some("foo.v1.0.0"), &[]),
                    ("foo.v1.0.0", None, &[]),
                ],
                ">=1.0.0 <2.0.0",
                &[],
                &["foo.v1.0.0", "foo.v1.1.0"],
                &[],
            ),
            (
                &[("foo.v2.0.0", None, &["foo.v1.0.0"]), ("foo.v1.0.0", None, &[])],
                ">=1.0.0 <2.0.0",
                &[],
                &["foo.v1.0.0", "foo.v2.0.0"],
                &["foo.v2.0.0"],
            ),
            (
                &[
                    ("foo.v2.0.0", Some("foo.v1.1.1"), &["foo.v1.1.0"]),
                    ("foo.v1.1.1", None, &[]),
                    ("foo.v1.1.0", None, &[]),
                ],
                ">=1.0.0 <2.0.0",
                &[],
                &["foo.v1.1.0", "foo.v1.1.1", "foo.v2.0.0"],
                &["foo.v2.0.0"],
            ),
            (
                &[
                    ("foo.v1.1.0", Some("foo.v2.0.0"), &[]),
                    ("foo.v2.0.0", Some("foo.v1.0.0"), &[]),
                    ("foo.v1.0.0", Some("foo.v0.1.0"), &[]),
                    ("foo.v0.1.0", None, &[]),
                ],
                ">=1.0.0 <2.0.0",
                &["foo.v2.0.0"],
                &["foo.v1.0.0", "foo.v1.1.0", "foo.v2.0.0"],
                &["foo.v2.0.0"],
            ),
            (
                &[
                    ("foo.v1.1.3", Some("foo.v1.1.2"), &["foo.v1.1.0"]),
                    ("foo.v1.1.2", Some("foo.v1.1.1"), &["foo.v1.1.0"]),
                    ("foo.v1.1.1", None, &["foo.v1.1.0"]),
                    ("foo.v1.1.0", None, &[]),
                ],
                ">=1.1.0 <=1.1.1",
                &[],
                &["foo.v1.1.0", "foo.v1.1.1"],
                &[],
            ),
        ];
        for (entries, range, unversioned, kept, bridges) in cases {
            let c = channel(entries);
            let graph = Graph::new(&c).unwrap();
            let versions: HashMap<&str, Version> = c
                .entries
                .iter()
                .filter(|e| !unversioned.contains(&e.name.as_str()))
                .map(|e| (e.name.as_str(), Version::parse(e.name.trim_start_matches("foo.")).unwrap()))
                .collect();
            let (got, got_bridges) = graph.in_range(&Range::parse(range).unwrap(), |n| versions.get(n));
            assert_eq!(got.into_iter().collect::<Vec<_>>(), *kept, "{entries:?} {range}");
            assert_eq!(got_bridges, *bridges, "{entries:?} {range}");
        }
    }

    #[test]
    fn gaps_join_kept_entries_on_the_chain() {
        let c = channel(&[
            ("a", None, &[]),
            ("b", Some("a"), &[]),
            ("c", Some("b"), &["x"]),
            ("x", None, &[]),
            ("d", Some("c"), &[]),
        ]);
        let graph = Graph::new(&c).unwrap();
        let kept = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(graph.gaps(&kept(&["d", "a"])), ["c", "b"]);
        assert_eq!(graph.gaps(&kept(&["d", "x"])), ["c"], "a skipped entry joins through what skips it");
        assert!(graph.gaps(&kept(&["d", "c"])).is_empty());
        assert!(graph.gaps(&kept(&[])).is_empty());
    }
}
