//! What a destination holds, collected into a [`Receipt`]: an installed registry root
//! (its storage's blobs, repositories' links, manifest revisions and tags), an OCI layout
//! (`blobs/sha256`, `index.json`'s ref names and the manifests its images reach) or a
//! registry over the network (`/v2/_catalog`, `tags/list`, every tag's manifests walked).
//! A receipt is a listing: blob sizes come from the file system or the descriptors, and
//! nothing is hashed but the manifests read to walk the images. In every receipt the
//! blob list leaves out the digests listed as manifests.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use oci_spec::image::{Descriptor, ImageIndex};

use crate::bundle::receipt::{Held, HeldTag, Receipt};
use crate::client::http::{error_detail, header, read_body};
use crate::client::Client;
use crate::digest::Digest;
use crate::error::{integrity, usage, Error, IoContext, Result};
use crate::oci::layout::{read_limited, BlobRef, SourceLayout};
use crate::oci::names::{valid_tag, ImageRef, Reference, Repository, Tag};
use crate::oci::walk::{walk, Doc, Invalid, Manifests, Node, Role, Visitor};
use crate::oci::{MAX_MANIFEST, REF_NAME};
use crate::registry::config::Config;
use crate::registry::storage::Storage;
use crate::store;
use crate::text::untrusted;
use crate::trip::publish::Destination;
use crate::workers::lock;

/// Most names one listing (`_catalog`, a repository's tags) may return, over every page.
const MAX_NAMES: usize = 10_000_000;
/// Most bytes of one page of a listing.
const MAX_PAGE: u64 = 16 << 20;
/// Names asked for per page.
const PAGE: usize = 1000;

/// The receipt of the registry installed at `root`.
pub fn of_root(root: &Path) -> Result<Receipt> {
    let config = Config::load(root)?;
    let dir = config.storage_dir(root);
    let storage = Storage::open(&dir)?;
    let mut manifests = Vec::new();
    let mut tags = Vec::new();
    let mut linked: HashMap<Digest, String> = HashMap::new();
    for repo in storage.catalog()? {
        let name =
            Repository::parse(&repo).ok_or_else(|| usage(format!("{}: bad repository '{repo}'", dir.display())))?;
        for digest in storage.links(&name)? {
            linked.entry(digest).or_insert_with(|| repo.clone());
        }
        for stored in storage.manifests(&name)? {
            manifests.push(Held { digest: stored.digest, size: stored.revision.size, repository: Some(repo.clone()) });
        }
        for tag in storage.tags(&name)? {
            let Some(t) = Tag::parse(&tag) else { continue };
            let stored = storage.resolve(&name, &Reference::Tag(t))?;
            tags.push(HeldTag { tag: format!("{repo}:{tag}"), digest: stored.digest });
        }
    }
    let blobs = stored_blobs(&dir, &manifests, |d| linked.get(d).cloned())?;
    Ok(Receipt::new(absolute(root)?, blobs, manifests, tags))
}

/// The receipt of the OCI layout at `dir`.
pub fn of_layout(dir: &Path) -> Result<Receipt> {
    SourceLayout::open(dir)?;
    let index_path = dir.join("index.json");
    let bytes = read_limited(&index_path, MAX_MANIFEST)?;
    let index: ImageIndex = serde_json::from_slice(&bytes)
        .map_err(|e| usage(format!("{}: not an OCI image index: {e}", index_path.display())))?;
    let docs = LayoutDocs { dir };
    let found = Mutex::new(Found::default());
    let mut tags = Vec::new();
    for desc in index.manifests() {
        let top = BlobRef::of(desc).map_err(|e| usage(format!("{}: {e}", index_path.display())))?;
        if let Some(name) = desc.annotations().as_ref().and_then(|a| a.get(REF_NAME)) {
            tags.push(HeldTag { tag: name.clone(), digest: top.digest.clone() });
        }
        walk(&docs, &top, &mut Collect { repository: None, found: &found })?;
    }
    let found = found.into_inner().unwrap_or_else(|p| p.into_inner());
    let sizes: HashMap<Digest, u64> = list_blob_files(dir)?.into_iter().collect();
    let manifests: Vec<Held> =
        found.manifests.into_iter().filter_map(|h| sizes.get(&h.digest).map(|&size| Held { size, ..h })).collect();
    let blobs = stored_blobs(dir, &manifests, |_| None)?;
    Ok(Receipt::new(absolute(dir)?, blobs, manifests, tags))
}

/// The receipt of the repositories under `to` in a registry, `parallel` requests at a time.
pub fn of_registry(client: &Client, to: &Destination, parallel: usize) -> Result<Receipt> {
    let repos = repositories(client, to)?;
    let named: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    crate::workers::run(
        parallel,
        repos.len(),
        || client.fork(),
        |c, i| {
            let tags = list_tags(c, to, &repos[i])?;
            lock(&named).extend(tags.into_iter().map(|t| (i, t)));
            Ok(())
        },
    )?;
    let named = named.into_inner().unwrap_or_else(|p| p.into_inner());
    let found = Mutex::new(Found::default());
    crate::workers::run(
        parallel,
        named.len(),
        || client.fork(),
        |c, i| {
            let (repo, tag) = &named[i];
            walk_tag(c, to, &repos[*repo], tag, &found)
        },
    )?;
    let found = found.into_inner().unwrap_or_else(|p| p.into_inner());
    let manifests: HashSet<&Digest> = found.manifests.iter().map(|h| &h.digest).collect();
    let blobs = found.blobs.iter().filter(|h| !manifests.contains(&h.digest)).cloned().collect();
    Ok(Receipt::new(to.to_string(), blobs, found.manifests, found.tags))
}

/// What one repository of a receipt holds (`name` is `None` for a layout's content).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RepositoryTotals {
    pub name: Option<String>,
    pub blobs: u64,
    pub manifests: u64,
    pub tags: u64,
    /// Bytes of its blobs and manifests.
    pub bytes: u64,
}

/// The totals of every repository the receipt names, sorted by name (`None` first). A
/// blob counts for the one repository the receipt gives it; a tag `repo:tag` for `repo`
/// when the receipt holds content there, else (a layout's ref name) for `None`.
pub fn by_repository(receipt: &Receipt) -> Vec<RepositoryTotals> {
    fn of<'t>(
        totals: &'t mut BTreeMap<Option<String>, RepositoryTotals>,
        name: Option<&str>,
    ) -> &'t mut RepositoryTotals {
        let name = name.map(str::to_string);
        totals.entry(name.clone()).or_insert_with(|| RepositoryTotals { name, ..Default::default() })
    }
    let mut totals = BTreeMap::new();
    for h in &receipt.blobs {
        let t = of(&mut totals, h.repository.as_deref());
        t.blobs += 1;
        t.bytes += h.size;
    }
    for h in &receipt.manifests {
        let t = of(&mut totals, h.repository.as_deref());
        t.manifests += 1;
        t.bytes += h.size;
    }
    for tag in &receipt.tags {
        let repo =
            tag.tag.rsplit_once(':').map(|(r, _)| r.to_string()).filter(|r| totals.contains_key(&Some(r.clone())));
        of(&mut totals, repo.as_deref()).tags += 1;
    }
    totals.into_values().collect()
}

/// `root` as an absolute path, for the receipt's destination.
fn absolute(root: &Path) -> Result<String> {
    Ok(std::path::absolute(root).at(root)?.display().to_string())
}

/// Every blob file under `DIR/blobs/sha256` that is not one of `manifests`, with the
/// repository `holder` names for it.
fn stored_blobs(dir: &Path, manifests: &[Held], holder: impl Fn(&Digest) -> Option<String>) -> Result<Vec<Held>> {
    let manifests: HashSet<&Digest> = manifests.iter().map(|h| &h.digest).collect();
    Ok(list_blob_files(dir)?
        .into_iter()
        .filter(|(d, _)| !manifests.contains(d))
        .map(|(digest, size)| Held { repository: holder(&digest), digest, size })
        .collect())
}

/// The blob files under `DIR/blobs/sha256`, with their sizes.
fn list_blob_files(dir: &Path) -> Result<Vec<(Digest, u64)>> {
    Ok(store::list_blobs(dir)?.into_iter().map(|b| (b.digest, b.size)).collect())
}

/// What walks found: manifests and blobs (each with the repository it was found in) and
/// tags; `seen` holds the manifests already walked, per repository.
#[derive(Default)]
struct Found {
    manifests: Vec<Held>,
    blobs: Vec<Held>,
    tags: Vec<HeldTag>,
    seen: HashSet<(Option<String>, Digest)>,
}

/// Records the manifests and blobs of one image into [`Found`], skipping the children
/// walked already.
struct Collect<'a> {
    repository: Option<&'a str>,
    found: &'a Mutex<Found>,
}

impl Visitor for Collect<'_> {
    fn enter(&mut self, parent: &Node, child: &BlobRef, _: &Descriptor) -> Result<bool> {
        if !matches!(parent.doc, Doc::Index(_)) {
            return Ok(true);
        }
        Ok(lock(self.found).seen.insert((self.repository.map(str::to_string), child.digest.clone())))
    }

    fn visit(&mut self, node: &Node) -> Result<()> {
        let held = Held {
            digest: node.blob.digest.clone(),
            size: node.blob.size,
            repository: self.repository.map(str::to_string),
        };
        let mut found = lock(self.found);
        match node.doc {
            Doc::Index(_) | Doc::Manifest(_) | Doc::Schema1 => found.manifests.push(held),
            Doc::Blob => found.blobs.push(held),
            Doc::Absent => {}
        }
        Ok(())
    }
}

/// A layout's manifests: absent ones are left out (a platform filter), present ones must
/// match their descriptor.
struct LayoutDocs<'a> {
    dir: &'a Path,
}

impl Manifests for LayoutDocs<'_> {
    fn manifest(&self, blob: &BlobRef, _: Role) -> Result<Option<Vec<u8>>> {
        let path = crate::store::blob_path(self.dir, &blob.digest);
        if !path.is_file() {
            return Ok(None);
        }
        let bytes = read_limited(&path, MAX_MANIFEST)?;
        if bytes.len() as u64 != blob.size || Digest::of(&bytes) != blob.digest {
            return Err(integrity(format!(
                "{}: manifest {} does not match its descriptor (size {}, digest)",
                path.display(),
                blob.digest,
                blob.size
            )));
        }
        Ok(Some(bytes))
    }

    fn invalid(&self, blob: &BlobRef, problem: Invalid) -> Error {
        match problem {
            Invalid::Index(e) => usage(format!("index {} in {}: {e}", blob.digest, self.dir.display())),
            Invalid::Manifest(e) => usage(format!("manifest {} in {}: {e}", blob.digest, self.dir.display())),
            Invalid::Descriptor(e) => usage(format!("{}: {e}", self.dir.display())),
        }
    }
}

/// The repositories under `to`'s prefix, from `/v2/_catalog`.
pub(crate) fn repositories(client: &Client, to: &Destination) -> Result<Vec<Repository>> {
    // The catalog belongs to no repository: the prefix (or any name) keys the credentials.
    let anchor = image(to, to.prefix.as_deref().unwrap_or("catalog"))?;
    let first = format!("/v2/_catalog?n={PAGE}");
    let names = pages(client, &anchor, first, Some("registry:catalog:*"), "repositories", "listing the catalog")?;
    let under = |n: &str| match &to.prefix {
        Some(p) => n == p || n.strip_prefix(p.as_str()).is_some_and(|rest| rest.starts_with('/')),
        None => true,
    };
    let mut out = Vec::new();
    for name in names.iter().filter(|n| under(n)) {
        out.push(Repository::parse(name).ok_or_else(|| {
            usage(format!("{to}: the catalog lists '{}', which is not a repository name", untrusted(name)))
        })?);
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// The tags of `repo`, from its `tags/list`.
pub(crate) fn list_tags(client: &Client, to: &Destination, repo: &Repository) -> Result<Vec<String>> {
    let image = image(to, repo.as_str())?;
    let first = format!("/v2/{}/tags/list?n={PAGE}", repo.as_str());
    let tags = pages(client, &image, first, None, "tags", "listing the tags")?;
    if let Some(bad) = tags.iter().find(|t| !valid_tag(t)) {
        return Err(usage(format!("{image}: the registry lists tag '{}', which is not a tag", untrusted(bad))));
    }
    Ok(tags)
}

/// `docker://HOST/NAME` of `to`'s registry.
fn image(to: &Destination, name: &str) -> Result<ImageRef> {
    let repository = Repository::parse(name)
        .ok_or_else(|| usage(format!("{to}: '{}' is not a repository name", untrusted(name))))?;
    Ok(ImageRef { registry: to.registry.clone(), repository, tag: None, digest: None })
}

/// The strings of `field` over every page of a listing, following `Link: <…>; rel="next"`.
fn pages(
    client: &Client,
    image: &ImageRef,
    first: String,
    scope: Option<&str>,
    field: &str,
    what: &str,
) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut asked = HashSet::new();
    let mut next = Some(first);
    while let Some(path) = next.take() {
        if !asked.insert(path.clone()) {
            return Err(usage(format!("{image}: {what}: the registry's next page is one already read ({path})")));
        }
        let resp = client.send_scoped(image, what, scope, &|http, base| http.get(format!("{base}{path}")))?;
        let status = resp.status();
        if status.as_u16() == 404 && field == "tags" {
            return Ok(out); // a repository deleted since the catalog was read
        }
        if !status.is_success() {
            return Err(usage(format!("{image}: {what}: the registry answered {status}{}", error_detail(resp))));
        }
        next = header(resp.headers(), "link")
            .map(|l| next_page(&l))
            .transpose()
            .map_err(|e| usage(format!("{image}: {what}: {e}")))?
            .flatten();
        let body = read_body(resp, MAX_PAGE).map_err(|e| usage(format!("{image}: {what}: {e}")))?;
        let doc: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| usage(format!("{image}: {what}: not JSON: {e}")))?;
        match &doc[field] {
            serde_json::Value::Null => {}
            serde_json::Value::Array(names) => {
                for n in names {
                    let n = n.as_str().ok_or_else(|| usage(format!("{image}: {what}: a name is not a string")))?;
                    out.push(n.to_string());
                }
            }
            _ => return Err(usage(format!("{image}: {what}: '{field}' is not a list"))),
        }
        if out.len() > MAX_NAMES {
            return Err(usage(format!("{image}: {what}: more than {MAX_NAMES} names")));
        }
    }
    Ok(out)
}

/// The path of a `Link` header's `rel="next"` target (`</v2/…>; rel="next"`, the URL
/// relative or on the same registry); `None` for another relation.
fn next_page(link: &str) -> std::result::Result<Option<String>, String> {
    let Some((target, params)) = link.trim().strip_prefix('<').and_then(|l| l.split_once('>')) else {
        return Err(format!("the Link header '{}' is not <URL>; rel=\"next\"", untrusted(link)));
    };
    if !params.split(';').any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next")) {
        return Ok(None);
    }
    let path = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map(|i| &rest[i..]).unwrap_or(""),
        None => target,
    };
    if !path.starts_with("/v2/") {
        return Err(format!("the next page '{}' is not under /v2/", untrusted(target)));
    }
    Ok(Some(path.to_string()))
}

/// Fetch `repo:tag` and walk it, recording its manifests, blobs and the tag.
fn walk_tag(client: &Client, to: &Destination, repo: &Repository, tag: &str, found: &Mutex<Found>) -> Result<()> {
    let mut image = image(to, repo.as_str())?;
    let t = Tag::parse(tag).ok_or_else(|| usage(format!("{image}: '{}' is not a tag", untrusted(tag))))?;
    image.tag = Some(t.clone());
    let top = client.manifest(&image, &Reference::Tag(t))?;
    let name = repo.as_str().to_string();
    {
        let mut f = lock(found);
        f.tags.push(HeldTag { tag: format!("{name}:{tag}"), digest: top.digest.clone() });
        if !f.seen.insert((Some(name.clone()), top.digest.clone())) {
            return Ok(());
        }
    }
    let blob = BlobRef { digest: top.digest.clone(), size: top.bytes.len() as u64, media_type: top.media_type.clone() };
    let docs = RemoteDocs { client, image: &image, top: &top.bytes };
    walk(&docs, &blob, &mut Collect { repository: Some(&name), found })
}

/// One image's manifests as the registry serves them: the top one already fetched, the
/// children by digest (checked by the client) and size; a child the registry does not
/// have is absent (a platform filter left it out).
struct RemoteDocs<'a> {
    client: &'a Client,
    image: &'a ImageRef,
    top: &'a [u8],
}

impl Manifests for RemoteDocs<'_> {
    fn manifest(&self, blob: &BlobRef, role: Role) -> Result<Option<Vec<u8>>> {
        if role == Role::Top {
            return Ok(Some(self.top.to_vec()));
        }
        let reference = Reference::Digest(blob.digest.clone());
        if blob.size > MAX_MANIFEST {
            return Err(usage(format!("{}: manifest {} is larger than {MAX_MANIFEST} bytes", self.image, blob.digest)));
        }
        let m = match self.client.manifest(self.image, &reference) {
            Ok(m) => m,
            Err(_) if !self.client.has_manifest(self.image, &reference)? => return Ok(None),
            Err(e) => return Err(e),
        };
        if m.bytes.len() as u64 != blob.size {
            return Err(integrity(format!(
                "{}: manifest {} is {} bytes, its descriptor says {}",
                self.image,
                blob.digest,
                m.bytes.len(),
                blob.size
            )));
        }
        Ok(Some(m.bytes))
    }

    fn invalid(&self, blob: &BlobRef, problem: Invalid) -> Error {
        crate::source::registry::invalid_in(self.image, blob, problem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_per_repository_count_tags_where_the_content_is() {
        let held =
            |n: u8, size, repo: Option<&str>| Held { digest: Digest::of(&[n]), size, repository: repo.map(Into::into) };
        let tag = |t: &str| HeldTag { tag: t.into(), digest: Digest::of(&[9]) };
        let r = Receipt::new(
            "d".into(),
            vec![held(1, 10, Some("ns/a")), held(2, 20, Some("ns/b")), held(3, 5, None)],
            vec![held(4, 1, Some("ns/a"))],
            vec![tag("ns/a:1"), tag("ns/a:2"), tag("reg.example/x:1"), tag("v1")],
        );
        let totals = by_repository(&r);
        let row = |name: Option<&str>, blobs, manifests, tags, bytes| RepositoryTotals {
            name: name.map(Into::into),
            blobs,
            manifests,
            tags,
            bytes,
        };
        assert_eq!(
            totals,
            [row(None, 1, 0, 2, 5), row(Some("ns/a"), 1, 1, 2, 11), row(Some("ns/b"), 1, 0, 0, 20)],
            "a layout's ref names count for no repository"
        );
    }

    #[test]
    fn next_page_links_stay_on_the_registry() {
        assert_eq!(
            next_page(r#"</v2/_catalog?last=b&n=2>; rel="next""#).unwrap().as_deref(),
            Some("/v2/_catalog?last=b&n=2")
        );
        assert_eq!(
            next_page(r#"<https://reg.example:5000/v2/a/tags/list?last=x>; rel="next""#).unwrap().as_deref(),
            Some("/v2/a/tags/list?last=x")
        );
        assert_eq!(next_page(r#"</v2/x>; rel="prev""#).unwrap(), None);
        assert!(next_page("garbage").is_err());
        assert!(next_page(r#"</etc/passwd>; rel="next""#).unwrap_err().contains("not under /v2/"));
    }
}
