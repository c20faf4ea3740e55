//! The OpenShift update graph (Cincinnati): a channel's graph document and the release
//! versions an image set's `mirror.platform.channels` entry asks for, resolved as oc-mirror
//! resolves them.
//!
//! A graph document is `{"nodes":[{"version","payload","metadata"}],"edges":[[from,to]],
//! "conditionalEdges":[…]}`, edges being indexes into `nodes`. Rules, per channel and
//! architecture ([`channel_versions`]):
//! - no bounds: the channel's latest version (`full: true`: every version of the channel);
//! - `minVersion` only: min..latest; `maxVersion` only: the channel's first..max; both: the
//!   inclusive range; a bound that is not a version of the channel is refused;
//! - `shortestPath: true`: the versions on a shortest upgrade path min→max, breadth first
//!   over the unconditional edges, the newest neighbour first (conditional edges are
//!   ignored, as oc-mirror ignores them).
//!
//! Several OCP channels hop channel by channel ([`hops`]): from the lowest minVersion, along
//! each channel (in order of their minVersion) to that channel's latest, and in the last one
//! to the highest maxVersion; every version on the way is mirrored too.

use std::cmp::Ordering;
use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use serde::Deserialize;

use crate::digest::Digest;
use crate::error::{usage, Result};
use crate::text::untrusted;

/// The update service oc-mirror queries for OCP channels.
pub const DEFAULT_GRAPH_URL: &str = "https://api.openshift.com/api/upgrades_info/v1/graph";
/// The update service for OKD channels (oc-mirror's `OkdUpdateURL`).
pub const OKD_GRAPH_URL: &str = "https://origin-release.ci.openshift.org/graph";
/// The environment variable that replaces [`DEFAULT_GRAPH_URL`], as oc-mirror reads it.
pub const GRAPH_URL_ENV: &str = "UPDATE_URL_OVERRIDE";
/// Where OKD releases are published; their tags are the version itself.
pub const OKD_RELEASE_BASE: &str = "quay.io/openshift/okd";
/// The largest graph document read: the real stable channels are a few megabytes.
pub const MAX_GRAPH_DOCUMENT: u64 = 64 << 20;

/// Which releases a channel holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kind {
    #[default]
    Ocp,
    Okd,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ocp => "ocp",
            Kind::Okd => "okd",
        }
    }
}

/// One `mirror.platform.channels` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Channel {
    pub name: String,
    pub kind: Kind,
    pub min: Option<Version>,
    pub max: Option<Version>,
    pub full: bool,
    pub shortest_path: bool,
}

/// A release version: `MAJOR.MINOR.PATCH[-PRE]`, ordered as semver orders it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    core: [u64; 3],
    pre: Option<String>,
}

impl Version {
    /// `None` when `text` is not `X.Y.Z` with an optional `-SUFFIX` of `[0-9A-Za-z.-]`.
    pub fn parse(text: &str) -> Option<Version> {
        let (core, pre) = text.split_once('-').map_or((text, None), |(c, p)| (c, Some(p)));
        let mut parts = core.split('.');
        let mut numbers = [0u64; 3];
        for n in &mut numbers {
            let part = parts.next().filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))?;
            *n = part.parse().ok()?;
        }
        let pre_ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if parts.next().is_some() || pre.is_some_and(|p| !pre_ok(p)) {
            return None;
        }
        Some(Version { core: numbers, pre: pre.map(str::to_string) })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c] = self.core;
        write!(f, "{a}.{b}.{c}")?;
        match &self.pre {
            Some(p) => write!(f, "-{p}"),
            None => Ok(()),
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core.cmp(&other.core).then_with(|| match (&self.pre, &other.pre) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(a), Some(b)) => pre_cmp(a, b),
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Semver pre-release precedence: dot-separated identifiers, numeric ones compared as
/// numbers and below alphanumeric ones, a shorter list first when equal so far.
fn pre_cmp(a: &str, b: &str) -> Ordering {
    let numeric = |s: &str| s.bytes().all(|b| b.is_ascii_digit()).then(|| s.parse::<u64>().ok()).flatten();
    for (x, y) in a.split('.').zip(b.split('.')) {
        let order = match (numeric(x), numeric(y)) {
            (Some(m), Some(n)) => m.cmp(&n),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    a.split('.').count().cmp(&b.split('.').count())
}

/// One channel's graph for one architecture.
#[derive(Debug, Clone)]
pub struct Graph {
    /// Where it came from (a URL with its query, or a file), for messages and the manifest.
    pub source: String,
    /// The digest of the document's bytes.
    pub digest: Digest,
    pub nodes: Vec<Version>,
    /// Unconditional edges, `from → to` as node indexes.
    pub edges: Vec<(usize, usize)>,
}

#[derive(Deserialize)]
struct Document {
    nodes: Vec<NodeDocument>,
    edges: Vec<[usize; 2]>,
    #[serde(default, rename = "conditionalEdges")]
    _conditional_edges: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct NodeDocument {
    version: String,
}

impl Graph {
    /// Parse a graph document; `what` (`channel stable-4.16 (amd64)`) and `source` name
    /// every refusal. A channel the service does not know comes back empty: refused too.
    pub fn parse(bytes: &[u8], source: &str, what: &str) -> Result<Graph> {
        let fail = |cause: String| usage(format!("{source}: {what}: {cause}"));
        let doc: Document = serde_json::from_slice(bytes)
            .map_err(|e| fail(format!("not a Cincinnati graph document (nodes, edges): {e}")))?;
        if doc.nodes.is_empty() {
            return Err(fail("the graph has no release: the update service does not know this channel".into()));
        }
        let mut nodes = Vec::with_capacity(doc.nodes.len());
        for (i, node) in doc.nodes.iter().enumerate() {
            let version = Version::parse(&node.version)
                .ok_or_else(|| fail(format!("node {i}: '{}' is not a release version", untrusted(&node.version))))?;
            nodes.push(version);
        }
        let mut edges = Vec::with_capacity(doc.edges.len());
        for (i, [from, to]) in doc.edges.into_iter().enumerate() {
            if from >= nodes.len() || to >= nodes.len() {
                return Err(fail(format!("edge {i} ({from}→{to}) names a node beyond the {} nodes", nodes.len())));
            }
            edges.push((from, to));
        }
        Ok(Graph { source: source.to_string(), digest: Digest::of(bytes), nodes, edges })
    }

    fn index(&self, version: &Version, what: &str) -> Result<usize> {
        self.nodes.iter().position(|v| v == version).ok_or_else(|| {
            usage(format!("{}: {what}: version {version} is not in the channel; it holds {}", self.source, self.span()))
        })
    }

    fn latest(&self) -> &Version {
        self.nodes.iter().max().unwrap_or(&self.nodes[0])
    }

    fn first(&self) -> &Version {
        self.nodes.iter().min().unwrap_or(&self.nodes[0])
    }

    /// `N versions, FIRST to LATEST`.
    fn span(&self) -> String {
        format!("{} versions, {} to {}", self.nodes.len(), self.first(), self.latest())
    }

    /// The versions on a shortest path `from` → `to` (both included), breadth first over
    /// the unconditional edges, each node's newest neighbour first.
    pub fn shortest_path(&self, from: &Version, to: &Version, what: &str) -> Result<Vec<Version>> {
        let (start, end) = (self.index(from, what)?, self.index(to, what)?);
        let mut next: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        for &(a, b) in &self.edges {
            next[a].push(b);
        }
        for list in &mut next {
            list.sort_by(|a, b| self.nodes[*b].cmp(&self.nodes[*a]));
        }
        let mut previous: Vec<Option<usize>> = vec![None; self.nodes.len()];
        let mut seen = vec![false; self.nodes.len()];
        let mut queue = VecDeque::from([start]);
        seen[start] = true;
        while let Some(node) = queue.pop_front() {
            if node == end {
                break;
            }
            for &n in &next[node] {
                if !seen[n] {
                    seen[n] = true;
                    previous[n] = Some(node);
                    queue.push_back(n);
                }
            }
        }
        if !seen[end] {
            return Err(usage(format!(
                "{}: {what}: no upgrade path from {from} to {to} over the graph's unconditional edges",
                self.source
            )));
        }
        let mut path = vec![end];
        while let Some(p) = previous[*path.last().unwrap_or(&end)] {
            path.push(p);
        }
        Ok(path.into_iter().rev().map(|i| self.nodes[i].clone()).collect())
    }
}

/// The versions `channel` asks for from its `graph` (one architecture), ascending;
/// `what` names the channel in refusals.
pub fn channel_versions(channel: &Channel, graph: &Graph, what: &str) -> Result<Vec<Version>> {
    let (min, max) = bounds(channel, graph, what)?;
    if channel.shortest_path {
        let mut path = graph.shortest_path(&min, &max, what)?;
        path.sort();
        return Ok(path);
    }
    let set: BTreeSet<&Version> = graph.nodes.iter().filter(|v| **v >= min && **v <= max).collect();
    Ok(set.into_iter().cloned().collect())
}

/// The inclusive bounds of `channel` in `graph`, as oc-mirror completes them: a missing
/// maximum is the latest; a missing minimum is the maximum (the channel's first with
/// `full` or a given maximum).
pub fn bounds(channel: &Channel, graph: &Graph, what: &str) -> Result<(Version, Version)> {
    for given in [&channel.min, &channel.max].into_iter().flatten() {
        graph.index(given, what)?;
    }
    let max = channel.max.clone().unwrap_or_else(|| graph.latest().clone());
    let min = match &channel.min {
        Some(min) => min.clone(),
        None if channel.full || channel.max.is_some() => graph.first().clone(),
        None => max.clone(),
    };
    if min > max {
        return Err(usage(format!("{}: {what}: minVersion {min} is above maxVersion {max}", graph.source)));
    }
    Ok((min, max))
}

/// The versions on the way across several OCP channels (each with its graph and its
/// resolved bounds, one architecture): from the lowest minimum along each channel, in order
/// of their minimums, to its latest, then in the channel with the highest maximum to that
/// maximum. Returns the versions per channel (same order as given); empty for fewer than
/// two channels.
pub fn hops(channels: &[(&Graph, &Version, &Version, &str)]) -> Result<Vec<Vec<Version>>> {
    let mut found = vec![Vec::new(); channels.len()];
    if channels.len() < 2 {
        return Ok(found);
    }
    let mut order: Vec<usize> = (0..channels.len()).collect();
    order.sort_by(|a, b| channels[*a].1.cmp(channels[*b].1));
    let target = channels.iter().map(|c| c.2).max().unwrap_or(channels[0].2);
    let last = *order.iter().rev().find(|i| channels[**i].2 == target).unwrap_or(&order[0]);
    order.retain(|i| *i != last);
    order.push(last);
    let mut current = channels[order[0]].1.clone();
    for (step, &i) in order.iter().enumerate() {
        let (graph, _, _, what) = channels[i];
        let to = if step + 1 == order.len() { target.clone() } else { graph.latest().clone() };
        if current >= to {
            continue;
        }
        found[i] = graph.shortest_path(&current, &to, what)?;
        current = to;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn graph(versions: &[&str], edges: &[(usize, usize)]) -> Graph {
        let nodes: Vec<String> = versions.iter().map(|s| format!(r#"{{"version":"{s}","payload":"x"}}"#)).collect();
        let edges: Vec<String> = edges.iter().map(|(a, b)| format!("[{a},{b}]")).collect();
        let doc = format!(r#"{{"nodes":[{}],"edges":[{}],"conditionalEdges":[]}}"#, nodes.join(","), edges.join(","));
        Graph::parse(doc.as_bytes(), "g.json", "channel c").unwrap()
    }

    fn names(list: Vec<Version>) -> Vec<String> {
        list.iter().map(Version::to_string).collect()
    }

    #[test]
    fn versions_order_as_semver() {
        let mut list =
            vec![v("4.16.10"), v("4.16.2"), v("4.17.0-rc.1"), v("4.17.0"), v("4.17.0-rc.10"), v("4.17.0-ec.2")];
        list.sort();
        assert_eq!(names(list), ["4.16.2", "4.16.10", "4.17.0-ec.2", "4.17.0-rc.1", "4.17.0-rc.10", "4.17.0"]);
        assert!(Version::parse("4.16").is_none() && Version::parse("4.16.1.2").is_none());
        assert!(Version::parse("4.16.1-").is_none() && Version::parse("4.x.1").is_none());
    }

    #[test]
    fn channel_rules_give_their_versions() {
        let g = graph(&["4.16.3", "4.16.1", "4.16.2", "4.16.4"], &[(1, 2), (2, 0), (0, 3), (1, 3)]);
        let rule = |min: Option<&str>, max: Option<&str>, full, shortest_path| {
            let c = Channel {
                name: "c".into(),
                min: min.map(v),
                max: max.map(v),
                full,
                shortest_path,
                ..Channel::default()
            };
            channel_versions(&c, &g, "channel c").map(names)
        };
        assert_eq!(rule(None, None, false, false).unwrap(), ["4.16.4"]);
        assert_eq!(rule(None, None, true, false).unwrap(), ["4.16.1", "4.16.2", "4.16.3", "4.16.4"]);
        assert_eq!(rule(Some("4.16.2"), None, false, false).unwrap(), ["4.16.2", "4.16.3", "4.16.4"]);
        assert_eq!(rule(None, Some("4.16.2"), false, false).unwrap(), ["4.16.1", "4.16.2"]);
        assert_eq!(rule(Some("4.16.2"), Some("4.16.3"), false, false).unwrap(), ["4.16.2", "4.16.3"]);
        assert_eq!(rule(Some("4.16.1"), Some("4.16.4"), false, true).unwrap(), ["4.16.1", "4.16.4"]);
        assert_eq!(rule(Some("4.16.2"), Some("4.16.4"), false, true).unwrap(), ["4.16.2", "4.16.3", "4.16.4"]);
        assert_eq!(
            rule(Some("4.16.9"), None, false, false).unwrap_err().to_string(),
            "g.json: channel c: version 4.16.9 is not in the channel; it holds 4 versions, 4.16.1 to 4.16.4"
        );
        assert_eq!(
            rule(Some("4.16.4"), Some("4.16.1"), false, true).unwrap_err().to_string(),
            "g.json: channel c: minVersion 4.16.4 is above maxVersion 4.16.1"
        );
        assert_eq!(
            rule(Some("4.16.3"), Some("4.16.2"), false, false).unwrap_err().to_string(),
            "g.json: channel c: minVersion 4.16.3 is above maxVersion 4.16.2"
        );
    }

    #[test]
    fn a_path_needs_unconditional_edges() {
        let g = graph(&["4.16.1", "4.16.2"], &[]);
        let c = Channel { min: Some(v("4.16.1")), max: Some(v("4.16.2")), shortest_path: true, ..Channel::default() };
        assert_eq!(
            channel_versions(&c, &g, "channel c").unwrap_err().to_string(),
            "g.json: channel c: no upgrade path from 4.16.1 to 4.16.2 over the graph's unconditional edges"
        );
    }

    #[test]
    fn bad_documents_are_refused_naming_the_channel() {
        let parse = |doc: &str| Graph::parse(doc.as_bytes(), "g.json", "channel c (amd64)").unwrap_err().to_string();
        assert_eq!(
            parse(r#"{"nodes":[],"edges":[]}"#),
            "g.json: channel c (amd64): the graph has no release: the update service does not know this channel"
        );
        assert!(parse("[]").starts_with("g.json: channel c (amd64): not a Cincinnati graph document"));
        assert_eq!(
            parse(r#"{"nodes":[{"version":"4.1\u001b"}],"edges":[]}"#),
            "g.json: channel c (amd64): node 0: '4.1\\u{1b}' is not a release version"
        );
        assert_eq!(
            parse(r#"{"nodes":[{"version":"4.1.0"}],"edges":[[0,1]]}"#),
            "g.json: channel c (amd64): edge 0 (0→1) names a node beyond the 1 nodes"
        );
    }

    #[test]
    fn channels_across_minors_hop_through_each_latest() {
        let a = graph(&["4.16.1", "4.16.2", "4.16.3"], &[(0, 1), (1, 2), (0, 2)]);
        let b = graph(&["4.16.2", "4.16.3", "4.17.0", "4.17.1"], &[(0, 1), (1, 2), (2, 3), (1, 3)]);
        let (a_min, a_max, b_min, b_max) = (v("4.16.1"), v("4.16.1"), v("4.17.1"), v("4.17.1"));
        let found = hops(&[(&b, &b_min, &b_max, "channel b"), (&a, &a_min, &a_max, "channel a")]).unwrap();
        assert_eq!(
            found.into_iter().map(names).collect::<Vec<_>>(),
            [vec!["4.16.3", "4.17.1"], vec!["4.16.1", "4.16.3"]]
        );
        assert!(hops(&[(&a, &a_min, &a_max, "channel a")]).unwrap()[0].is_empty());
    }
}
