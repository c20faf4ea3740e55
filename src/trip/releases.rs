//! Pack's update graph step: an image set's release channels resolved to release images.
//!
//! Each channel's graph, per architecture, is read from `--graph-file` (one document used
//! for every channel, or a directory of `CHANNEL-ARCH.json` documents, ARCH as the graph
//! names it: amd64, arm64, …), or fetched from the update service
//! (`URL?channel=NAME&arch=ARCH`; URL is `--graph-url`, else `UPDATE_URL_OVERRIDE`, else
//! [`DEFAULT_GRAPH_URL`]; OKD channels [`OKD_GRAPH_URL`]) and kept in the pack cache as
//! `CACHE/graphs/CHANNEL-ARCH.json`, so a rerun without the network reads it again (that
//! directory is also a valid `--graph-file`). The versions follow
//! [`crate::openshift::graph`]'s rules; each becomes a release image as
//! [`Channels::release`] names it, and the manifest records each channel.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::bundle::manifest::{Channel as ChannelRecord, GraphDocument};
use crate::client::{Client, Options};
use crate::error::{usage, Result};
use crate::oci::layout::read_limited;
use crate::openshift::graph::{
    bounds, channel_versions, hops, Channel, Graph, Kind, Version, DEFAULT_GRAPH_URL, GRAPH_URL_ENV,
    MAX_GRAPH_DOCUMENT, OKD_GRAPH_URL,
};
use crate::openshift::imageset::{graph_architecture, Channels};
use crate::store::write_atomic;

/// Where channel graphs come from (`pack --graph-url`, `--graph-file`).
#[derive(Debug, Clone, Default)]
pub struct GraphOptions {
    pub url: Option<String>,
    pub file: Option<PathBuf>,
}

/// The release images the channels resolve to (channel order, ascending versions) and
/// what the manifest records of each channel.
#[derive(Debug, Default)]
pub struct Resolved {
    pub releases: Vec<String>,
    pub channels: Vec<ChannelRecord>,
}

/// One channel for one architecture: its graph and the versions taken from it.
struct Taken {
    graph: Graph,
    bounds: (Version, Version),
    versions: BTreeSet<Version>,
}

/// Resolve every channel of `channels`; `client` reaches the update service, `cache` is the
/// pack cache, `warn` gets a warning when a cached graph stands in for an unreachable service.
pub fn resolve(
    channels: &Channels,
    options: &GraphOptions,
    client: &Options,
    cache: &Path,
    warn: &dyn Fn(&str),
) -> Result<Resolved> {
    let mut out = Resolved::default();
    if channels.list.is_empty() {
        return Ok(out);
    }
    let loader = Loader { options, client: Client::new(client.clone())?, cache: cache.join("graphs"), warn };
    let arches: Vec<&str> = channels.architectures.iter().map(|a| graph_architecture(a)).collect();
    let mut taken: Vec<Vec<Taken>> = Vec::new();
    for channel in &channels.list {
        let mut per_arch = Vec::new();
        for arch in &arches {
            let what = format!("channel {} ({arch})", channel.name);
            let graph = loader.graph(channel, arch, &what)?;
            let versions = channel_versions(channel, &graph, &what)?.into_iter().collect();
            per_arch.push(Taken { bounds: bounds(channel, &graph, &what)?, graph, versions });
        }
        taken.push(per_arch);
    }
    add_hops(&channels.list, &mut taken, &arches)?;
    for (channel, per_arch) in channels.list.iter().zip(&taken) {
        let all: BTreeSet<&Version> = per_arch.iter().flat_map(|t| &t.versions).collect();
        for version in &all {
            for (tag_arch, t) in channels.architectures.iter().zip(per_arch) {
                if t.versions.contains(version) {
                    out.releases.push(channels.release(channel, version, tag_arch));
                }
            }
        }
        out.channels.push(ChannelRecord {
            name: channel.name.clone(),
            kind: channel.kind.as_str().to_string(),
            architectures: arches.iter().map(|a| a.to_string()).collect(),
            graphs: arches
                .iter()
                .zip(per_arch)
                .map(|(arch, t)| GraphDocument {
                    architecture: arch.to_string(),
                    source: t.graph.source.clone(),
                    digest: t.graph.digest.clone(),
                })
                .collect(),
            versions: all.iter().map(|v| v.to_string()).collect(),
        });
    }
    Ok(out)
}

/// Several OCP channels: the versions on the way from the lowest minimum to the highest
/// maximum, per architecture, added to the channel whose graph they come from.
fn add_hops(list: &[Channel], taken: &mut [Vec<Taken>], arches: &[&str]) -> Result<()> {
    let ocp: Vec<usize> = (0..list.len()).filter(|&i| list[i].kind == Kind::Ocp).collect();
    for a in 0..arches.len() {
        let names: Vec<String> = ocp.iter().map(|&i| format!("channel {} ({})", list[i].name, arches[a])).collect();
        let found = {
            let args: Vec<_> = ocp
                .iter()
                .zip(&names)
                .map(|(&i, what)| {
                    let t = &taken[i][a];
                    (&t.graph, &t.bounds.0, &t.bounds.1, what.as_str())
                })
                .collect();
            hops(&args)?
        };
        for (&i, versions) in ocp.iter().zip(found) {
            taken[i][a].versions.extend(versions);
        }
    }
    Ok(())
}

/// Reads or fetches channel graphs.
struct Loader<'a> {
    options: &'a GraphOptions,
    client: Client,
    /// `CACHE/graphs`.
    cache: PathBuf,
    warn: &'a dyn Fn(&str),
}

impl Loader<'_> {
    fn graph(&self, channel: &Channel, arch: &str, what: &str) -> Result<Graph> {
        let file_name = format!("{}-{arch}.json", channel.name);
        if let Some(file) = &self.options.file {
            let path = if file.is_dir() { file.join(&file_name) } else { file.clone() };
            let bytes = read_limited(&path, MAX_GRAPH_DOCUMENT)?;
            return Graph::parse(&bytes, &path.display().to_string(), what);
        }
        let url = self.url(channel, arch)?;
        let cached = self.cache.join(&file_name);
        match self.client.get_document(&url, "application/json", MAX_GRAPH_DOCUMENT, &format!("the graph of {what}")) {
            Ok(bytes) => {
                let graph = Graph::parse(&bytes, &url, what)?;
                write_atomic(&cached, &bytes)?;
                Ok(graph)
            }
            Err(e) if cached.is_file() => {
                (self.warn)(&format!("{e}; using the graph cached at {}", cached.display()));
                let bytes = read_limited(&cached, MAX_GRAPH_DOCUMENT)?;
                Graph::parse(&bytes, &cached.display().to_string(), what)
            }
            Err(e) => Err(e),
        }
    }

    /// `BASE?channel=NAME&arch=ARCH`.
    fn url(&self, channel: &Channel, arch: &str) -> Result<String> {
        let from_env = std::env::var(GRAPH_URL_ENV).ok().filter(|u| !u.is_empty());
        let base = match (&self.options.url, channel.kind) {
            (Some(url), _) => url.clone(),
            (None, Kind::Ocp) => from_env.unwrap_or_else(|| DEFAULT_GRAPH_URL.to_string()),
            (None, Kind::Okd) => OKD_GRAPH_URL.to_string(),
        };
        let mut url = reqwest::Url::parse(&base)
            .map_err(|e| usage(format!("update service '{base}' (channel {}): not a URL: {e}", channel.name)))?;
        url.query_pairs_mut().append_pair("channel", &channel.name).append_pair("arch", arch);
        Ok(url.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn okd_channels_ask_okds_service_and_graph_url_overrides_both() {
        let options = GraphOptions::default();
        let loader = Loader {
            options: &options,
            client: Client::new(Options::default()).unwrap(),
            cache: PathBuf::new(),
            warn: &|_| {},
        };
        let okd = Channel { name: "stable-4".into(), kind: Kind::Okd, ..Channel::default() };
        assert_eq!(loader.url(&okd, "amd64").unwrap(), format!("{OKD_GRAPH_URL}?channel=stable-4&arch=amd64"));
        let given = GraphOptions { url: Some("https://graph.example/api?x=1".into()), file: None };
        let loader = Loader { options: &given, ..loader };
        let ocp = Channel { name: "eus-4.16".into(), ..Channel::default() };
        assert_eq!(loader.url(&ocp, "multi").unwrap(), "https://graph.example/api?x=1&channel=eus-4.16&arch=multi");
        assert_eq!(loader.url(&okd, "amd64").unwrap(), "https://graph.example/api?x=1&channel=stable-4&arch=amd64");
        let bad = GraphOptions { url: Some("not a url".into()), file: None };
        let loader = Loader { options: &bad, ..loader };
        assert!(loader
            .url(&ocp, "amd64")
            .unwrap_err()
            .to_string()
            .starts_with("update service 'not a url' (channel eus-4.16): not a URL"));
    }
}
