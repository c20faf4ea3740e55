//! Receipts: what a destination (registry root, OCI layout, another registry) holds,
//! carried back across the gap so pack can leave those blobs out. A receipt is a file
//! `NAME.receipt` of zstd-compressed JSON lines: a header line
//! `{"format":"airlift.receipt","version":1,"id":…,"created":…,"destination":…,"tool":…}`,
//! then the blob lines (`{"blob":…,"size":…,"repository":…}`), the manifest lines
//! (`{"manifest":…,"size":…,"repository":…}`) and the tag lines (`{"tag":"ns/app:1.0",
//! "digest":…}`), each kind sorted and unique. The id is the first 16 bytes of the sha256
//! of the body lines. An optional minisign signature sits beside it in
//! `NAME.receipt.minisig`, so `minisign -Vm NAME.receipt -p site.pub` checks it.

use std::io::{BufRead, BufReader, Read, Take};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{integrity, usage, Error, Result};
use crate::media;
use crate::minisign::{PublicKey, SecretKey};
use crate::oci::names::{valid_repository, valid_tag};

/// The `format` of a receipt's header line.
pub const FORMAT: &str = "airlift.receipt";
/// The only receipt version this build reads and writes.
pub const VERSION: u32 = 1;
/// The file name suffix of a receipt's signature.
pub const SIGNATURE_SUFFIX: &str = ".minisig";

/// Largest window a receipt's zstd frames may ask for (2^24 = 16 MiB).
const WINDOW_LOG_MAX: u32 = 24;
/// zstd level of written receipts. Digests are random, so effort gains little: on the
/// 12.6 MB of lines of 100,000 blobs (bench/receipt.sh) level 1 gives 4.05 MB in 0.05 s,
/// level 3 4.30 MB, level 9 4.46 MB in 0.32 s, level 19 3.81 MB in 15 s.
const LEVEL: i32 = 1;

/// How large a receipt may be: stored, expanded and per line.
#[derive(Debug, Clone, Copy)]
struct Limits {
    compressed: u64,
    expanded: u64,
    line: usize,
}

const LIMITS: Limits = Limits { compressed: 1 << 30, expanded: 4 << 30, line: 64 << 10 };

/// What a destination holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// 32 hex digits: the first half of the sha256 of the body lines.
    pub id: String,
    /// Seconds since the Unix epoch.
    pub created: u64,
    /// A registry root path, a layout path or `docker://host/prefix`.
    pub destination: String,
    /// `airlift X.Y` that wrote the receipt.
    pub tool: String,
    /// Sorted by digest, unique.
    pub blobs: Vec<Held>,
    /// Sorted by digest, unique.
    pub manifests: Vec<Held>,
    /// Sorted by tag, unique.
    pub tags: Vec<HeldTag>,
}

/// A blob or manifest at the destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Held {
    pub digest: Digest,
    pub size: u64,
    /// One repository at the destination that holds it (none for a layout).
    pub repository: Option<String>,
}

/// A tag at the destination: `repo:tag` for a registry, the ref name for a layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldTag {
    pub tag: String,
    pub digest: Digest,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    id: String,
    created: u64,
    destination: String,
    tool: String,
}

/// One body line as read: exactly one of the three shapes is accepted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    blob: Option<Digest>,
    manifest: Option<Digest>,
    size: Option<u64>,
    repository: Option<String>,
    tag: Option<String>,
    digest: Option<Digest>,
}

#[derive(Serialize)]
struct BlobLine<'a> {
    blob: &'a Digest,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    repository: &'a Option<String>,
}

#[derive(Serialize)]
struct ManifestLine<'a> {
    manifest: &'a Digest,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    repository: &'a Option<String>,
}

/// The kinds of body lines, in the order they appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Blob,
    Manifest,
    Tag,
}

impl Receipt {
    /// A receipt of `destination` made now: the lists are sorted and made unique (of one
    /// digest held in several repositories, the first repository by name is kept).
    pub fn new(destination: String, mut blobs: Vec<Held>, mut manifests: Vec<Held>, mut tags: Vec<HeldTag>) -> Receipt {
        for held in [&mut blobs, &mut manifests] {
            held.sort_by(|a, b| (&a.digest, &a.repository).cmp(&(&b.digest, &b.repository)));
            held.dedup_by(|later, first| later.digest == first.digest);
        }
        tags.sort_by(|a, b| a.tag.cmp(&b.tag));
        tags.dedup_by(|later, first| later.tag == first.tag);
        let mut receipt = Receipt {
            id: String::new(),
            created: crate::time::now(),
            destination,
            tool: format!("airlift {}", env!("CARGO_PKG_VERSION")),
            blobs,
            manifests,
            tags,
        };
        receipt.id = body_id(&receipt.body());
        receipt
    }

    /// Read a receipt. With `keys`, a valid signature by one of them in `PATH.minisig` is
    /// required; without, the signature is not looked at.
    pub fn load(path: &Path, keys: &[PublicKey]) -> Result<Receipt> {
        load_within(path, keys, LIMITS)
    }

    /// The blob or manifest with `digest`, if the destination holds it.
    pub fn held(&self, digest: &Digest) -> Option<&Held> {
        [&self.blobs, &self.manifests]
            .into_iter()
            .find_map(|list| list.binary_search_by(|h| h.digest.cmp(digest)).ok().map(|i| &list[i]))
    }

    /// Write the receipt atomically to `path`, signed into `PATH.minisig` with `key`
    /// (without a key, a signature left there by an earlier receipt is removed).
    pub fn write(&self, path: &Path, key: Option<&SecretKey>) -> Result<()> {
        let bytes = self.encode()?;
        let sig_path = signature_path(path);
        crate::store::write_atomic(path, &bytes)?;
        match key {
            Some(key) => {
                let signature = key.sign(&bytes, "signature from airlift secret key", &self.trusted_comment());
                crate::store::write_atomic(&sig_path, signature.as_bytes())
            }
            None => match std::fs::remove_file(&sig_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&sig_path, e)),
                _ => Ok(()),
            },
        }
    }

    /// The compressed file: header and body, zstd with a checksum (a flipped bit is damage).
    fn encode(&self) -> Result<Vec<u8>> {
        let body = self.body();
        if body_id(&body) != self.id {
            return Err(usage(format!("receipt {}: its id does not match its lists", self.id)));
        }
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            id: self.id.clone(),
            created: self.created,
            destination: self.destination.clone(),
            tool: self.tool.clone(),
        };
        let mut text = json_line(&header);
        text.extend_from_slice(&body);
        let compressing = |e: std::io::Error| usage(format!("receipt {}: compressing: {e}", self.id));
        let mut compressor = zstd::bulk::Compressor::new(LEVEL).map_err(compressing)?;
        compressor.include_checksum(true).map_err(compressing)?;
        compressor.compress(&text).map_err(compressing)
    }

    /// The body lines, each ending in a newline.
    fn body(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for h in &self.blobs {
            out.extend(json_line(&BlobLine { blob: &h.digest, size: h.size, repository: &h.repository }));
        }
        for h in &self.manifests {
            out.extend(json_line(&ManifestLine { manifest: &h.digest, size: h.size, repository: &h.repository }));
        }
        for t in &self.tags {
            out.extend(json_line(t));
        }
        out
    }

    /// What the signature binds: the receipt's id and creation time.
    fn trusted_comment(&self) -> String {
        format!("timestamp:{} receipt:{}", self.created, self.id)
    }

    /// Bytes held: blobs and manifests.
    pub fn total_bytes(&self) -> u64 {
        self.blobs.iter().chain(&self.manifests).map(|h| h.size).sum()
    }
}

/// `NAME.receipt.minisig` beside `NAME.receipt`.
pub fn signature_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(SIGNATURE_SUFFIX);
    PathBuf::from(name)
}

/// The key of `keys` whose valid signature `PATH.minisig` carries over `bytes`; with no
/// keys, nothing is checked (`Ok(None)`).
fn signed_by<'k>(path: &Path, bytes: &[u8], keys: &'k [PublicKey]) -> Result<Option<(&'k PublicKey, String)>> {
    if keys.is_empty() {
        return Ok(None);
    }
    let sig_path = signature_path(path);
    let Some(sig) = crate::bundle::reader::read_signature(&sig_path)? else {
        return Err(integrity(format!(
            "{} is not signed: {} is missing, and a signed receipt is required",
            path.display(),
            sig_path.display()
        )));
    };
    let mut refused = Vec::new();
    for key in keys {
        match crate::minisign::verify(key, bytes, &sig) {
            Ok(comment) => return Ok(Some((key, comment))),
            Err(e) => refused.push(format!("key {}: {e}", key.key_id_hex())),
        }
    }
    Err(integrity(format!(
        "{}: the receipt's signature does not verify with any trusted key ({})",
        sig_path.display(),
        refused.join("; ")
    )))
}

fn load_within(path: &Path, keys: &[PublicKey], limits: Limits) -> Result<Receipt> {
    let bytes = media::read_bounded(path, limits.compressed, "the receipt")?
        .ok_or_else(|| usage(format!("{}: no such receipt", path.display())))?;
    let signed = signed_by(path, &bytes, keys)?;
    let receipt = parse(path, &bytes, limits)?;
    if let Some((key, comment)) = signed {
        if comment != receipt.trusted_comment() {
            return Err(integrity(format!(
                "{}: signed by key {} for another receipt: trusted comment '{}', expected '{}'",
                path.display(),
                key.key_id_hex(),
                crate::text::untrusted(&comment),
                receipt.trusted_comment()
            )));
        }
    }
    Ok(receipt)
}

/// Expand and check a receipt's bytes (read from `path`, named in every error).
fn parse(path: &Path, bytes: &[u8], limits: Limits) -> Result<Receipt> {
    let damaged = |e: std::io::Error| integrity(format!("{}: not a readable zstd receipt: {e}", path.display()));
    let mut decoder = zstd::stream::read::Decoder::with_buffer(bytes).map_err(damaged)?;
    decoder.window_log_max(WINDOW_LOG_MAX).map_err(damaged)?;
    let mut lines = Lines { input: BufReader::new(decoder.take(limits.expanded + 1)), path, number: 0, limits };
    let header = lines.next()?.ok_or_else(|| usage(format!("{}: an empty receipt", path.display())))?;
    let header: Header =
        serde_json::from_slice(&header).map_err(|e| lines.bad(&format!("not a receipt header: {e}")))?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(lines.bad(&format!(
            "format '{}' version {}; this airlift reads '{FORMAT}' version {VERSION}",
            crate::text::untrusted(&header.format),
            header.version
        )));
    }
    let mut receipt = Receipt {
        id: header.id,
        created: header.created,
        destination: header.destination,
        tool: header.tool,
        blobs: Vec::new(),
        manifests: Vec::new(),
        tags: Vec::new(),
    };
    let mut body = crate::digest::Hasher::new();
    while let Some(line) = lines.next()? {
        body.update(&line);
        body.update(b"\n");
        lines.add(&mut receipt, &line)?;
    }
    let id = body.finish().hex()[..32].to_string();
    if id != receipt.id {
        return Err(integrity(format!(
            "{}: the receipt's lines do not match its id {} (they hash to {id}): it was altered",
            path.display(),
            crate::text::untrusted(&receipt.id)
        )));
    }
    Ok(receipt)
}

/// Reads bounded lines from the expanded stream, counting them for errors.
struct Lines<'a> {
    input: BufReader<Take<zstd::stream::read::Decoder<'static, &'a [u8]>>>,
    path: &'a Path,
    number: usize,
    limits: Limits,
}

impl Lines<'_> {
    /// The next line without its newline; `None` at the end. Every line must end in one.
    fn next(&mut self) -> Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        let limit = self.limits.line as u64 + 1;
        let n = (&mut self.input).take(limit).read_until(b'\n', &mut line).map_err(|e| {
            integrity(format!(
                "{}: not a readable zstd receipt: {e} (reading line {})",
                self.path.display(),
                self.number + 1
            ))
        })?;
        if n == 0 {
            return Ok(None);
        }
        self.number += 1;
        if self.input.get_ref().limit() == 0 {
            return Err(integrity(format!(
                "{}: expands to more than {} bytes, more than a receipt can be",
                self.path.display(),
                self.limits.expanded
            )));
        }
        if line.pop() != Some(b'\n') {
            let why = if line.len() >= self.limits.line {
                format!("longer than {} bytes", self.limits.line)
            } else {
                "the last line has no newline: the receipt is cut".to_string()
            };
            return Err(self.bad(&why));
        }
        Ok(Some(line))
    }

    fn bad(&self, why: &str) -> Error {
        usage(format!("{}: line {}: {why}", self.path.display(), self.number))
    }

    /// Check one body line and append it, in order, to `receipt`.
    fn add(&self, receipt: &mut Receipt, line: &[u8]) -> Result<()> {
        let parsed: Line = serde_json::from_slice(line).map_err(|e| self.bad(&format!("not a receipt line: {e}")))?;
        let (kind, item) = self.shape(parsed)?;
        let last = match (receipt.tags.last(), receipt.manifests.last(), receipt.blobs.last()) {
            (Some(t), _, _) => Some((Kind::Tag, Key::Tag(t.tag.clone()))),
            (None, Some(m), _) => Some((Kind::Manifest, Key::Digest(m.digest.clone()))),
            (None, None, Some(b)) => Some((Kind::Blob, Key::Digest(b.digest.clone()))),
            _ => None,
        };
        let key = match &item {
            Item::Held(h) => Key::Digest(h.digest.clone()),
            Item::Tag(t) => Key::Tag(t.tag.clone()),
        };
        if let Some(last) = last {
            if last >= (kind, key) {
                return Err(
                    self.bad("out of order or repeated: each kind comes once, blobs, manifests then tags, each sorted")
                );
            }
        }
        match item {
            Item::Held(h) if kind == Kind::Blob => receipt.blobs.push(h),
            Item::Held(h) => receipt.manifests.push(h),
            Item::Tag(t) => receipt.tags.push(t),
        }
        Ok(())
    }

    /// Which of the three shapes a line has, its strings checked.
    fn shape(&self, l: Line) -> Result<(Kind, Item)> {
        if let Some(r) = &l.repository {
            if !valid_repository(r) {
                return Err(self.bad(&format!("'{}' is not a repository name", crate::text::untrusted(r))));
            }
        }
        match l {
            Line { blob: Some(d), manifest: None, size: Some(size), repository, tag: None, digest: None } => {
                Ok((Kind::Blob, Item::Held(Held { digest: d, size, repository })))
            }
            Line { blob: None, manifest: Some(d), size: Some(size), repository, tag: None, digest: None } => {
                Ok((Kind::Manifest, Item::Held(Held { digest: d, size, repository })))
            }
            Line { blob: None, manifest: None, size: None, repository: None, tag: Some(tag), digest: Some(digest) } => {
                if !valid_tag_name(&tag) {
                    return Err(self.bad(&format!("'{}' is not a tag or ref name", crate::text::untrusted(&tag))));
                }
                Ok((Kind::Tag, Item::Tag(HeldTag { tag, digest })))
            }
            _ => Err(self.bad("expected a blob (blob, size), a manifest (manifest, size) or a tag (tag, digest)")),
        }
    }
}

enum Item {
    Held(Held),
    Tag(HeldTag),
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Digest(Digest),
    Tag(String),
}

/// `repo:tag` with a valid repository and tag, or an OCI layout ref name
/// (`[A-Za-z0-9]` runs joined by `-._:@/+`).
fn valid_tag_name(name: &str) -> bool {
    if let Some((repo, tag)) = name.rsplit_once(':') {
        if valid_repository(repo) && valid_tag(tag) {
            return true;
        }
    }
    let b = name.as_bytes();
    let sep = |c: u8| matches!(c, b'-' | b'.' | b'_' | b':' | b'@' | b'/' | b'+');
    !b.is_empty()
        && b.len() <= 512
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || sep(c))
}

fn json_line<T: Serialize>(value: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    line
}

fn body_id(body: &[u8]) -> String {
    Digest::of(body).hex()[..32].to_string()
}

#[cfg(test)]
mod tests;
