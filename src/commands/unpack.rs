//! `airlift unpack`: verify while reading and write an OCI image layout or into a registry
//! root, resumably, or push into an existing registry (`--to`) from a staging store.

use crate::bundle::extract::Extractor;
use crate::bundle::manifest::{EntryKind, Image, Release};
use crate::bundle::names;
use crate::bundle::reader::{self, Action, Bundle, Sink, VolumeReport, VolumeStatus};
use crate::bundle::trust;
use crate::cli::UnpackArgs;
use crate::client::publish::{self, Journal, PushOptions, PushReport};
use crate::client::Client;
use crate::error::{usage, Status};
use crate::oci::{descriptor, REF_NAME};
use crate::openshift::{self, mirrorsets};
use crate::output::Output;
use crate::registry::config::{self, Config};
use crate::registry::install::{self, InstallOptions};
use crate::registry::mirror;
use crate::registry::storage::Storage;
use crate::store::{write_atomic, BlobStore};

/// Where unpack writes.
enum Destination {
    Layout(BlobStore),
    Registry {
        root: std::path::PathBuf,
        config: Box<Config>,
        storage: Storage,
        installed: Option<serde_json::Value>,
    },
    /// An existing registry over the network: blobs are verified into a staging store
    /// (one copy on this host), then pushed from it.
    Push {
        staging: BlobStore,
        to: publish::Destination,
        client: Box<Client>,
    },
}

impl Destination {
    fn open(args: &UnpackArgs, out: &Output) -> crate::error::Result<Destination> {
        if let Some(layout) = &args.layout {
            return Ok(Destination::Layout(BlobStore::create(layout)?));
        }
        if let Some(to) = &args.to {
            let to = publish::Destination::parse(to)?;
            let staging = match &args.cache {
                Some(c) => c.clone(),
                None => crate::source::registry::default_cache_dir()?.join("push"),
            };
            let c = &args.connect;
            let client = Client::new(super::client_options(c))?;
            return Ok(Destination::Push {
                staging: BlobStore::create(&staging)?.read_back_soon(),
                to,
                client: Box::new(client),
            });
        }
        let root = args
            .root
            .clone()
            .ok_or_else(|| usage("give --layout OUT, --root ROOT or --to docker://HOST[:PORT][/PREFIX]"))?;
        // First use: install the registry (CA, certificate, credentials, config, unit).
        let installed = if config::installed(&root) {
            None
        } else {
            let opts = InstallOptions {
                hostname: args.hostname.clone(),
                port: 8443,
                user: "init".into(),
                tls_cert: None,
                tls_key: None,
                start: !args.no_start,
            };
            let done = install::install(&root, &opts)?;
            Some(super::install::present(out, &done))
        };
        let config = Box::new(Config::load(&root)?);
        let storage = Storage::open(&config.storage_dir(&root))?;
        Ok(Destination::Registry { root, config, storage, installed })
    }

    fn store(&self) -> &BlobStore {
        match self {
            Destination::Layout(store) => store,
            Destination::Registry { storage, .. } => storage.blobs(),
            Destination::Push { staging, .. } => staging,
        }
    }

    /// Where included files go.
    fn files_dir(&self) -> std::path::PathBuf {
        match self {
            Destination::Layout(store) => store.root().join("files"),
            Destination::Registry { root, .. } => root.join("files"),
            Destination::Push { staging, .. } => staging.root().join("files"),
        }
    }

    /// The tags this bundle's images would set here, as this destination names them.
    fn claims(&self, bundle: &Bundle, args: &UnpackArgs) -> crate::error::Result<Vec<trust::Claim>> {
        let mut claims = Vec::new();
        for image in &bundle.manifest.images {
            let tag = match self {
                Destination::Layout(_) => image.reference.clone(),
                Destination::Registry { .. } => {
                    let t = mirror::target(image, args.prefix.as_deref())?;
                    t.tag.map(|tag| format!("{}:{tag}", t.repository))
                }
                Destination::Push { to, .. } => {
                    let t = mirror::target(image, to.prefix.as_deref())?;
                    t.tag.map(|tag| format!("{}/{}:{tag}", to.registry, t.repository))
                }
            };
            if let Some(tag) = tag {
                claims.push(trust::Claim { tag, digest: image.digest.clone() });
            }
        }
        // `--release-tags` adds VERSION-ARCH-NAME tags to a registry.
        let (prefix, host) = match self {
            Destination::Layout(_) => return Ok(claims),
            Destination::Registry { .. } => (args.prefix.as_deref(), None),
            Destination::Push { to, .. } => (to.prefix.as_deref(), Some(to.registry.as_str())),
        };
        if args.release_tags {
            for release in &bundle.manifest.releases {
                for t in openshift::release_tags(release, &bundle.manifest.images, prefix)? {
                    let tag = match host {
                        Some(h) => format!("{h}/{}:{}", t.repository, t.tag),
                        None => format!("{}:{}", t.repository, t.tag),
                    };
                    claims.push(trust::Claim { tag, digest: bundle.manifest.images[t.image].digest.clone() });
                }
            }
        }
        Ok(claims)
    }

    fn describe(&self) -> String {
        match self {
            Destination::Layout(store) => store.root().display().to_string(),
            Destination::Registry { config, .. } => config.url(),
            Destination::Push { to, .. } => to.to_string(),
        }
    }
}

pub fn run(args: &UnpackArgs, out: &Output) -> anyhow::Result<Status> {
    let key = super::load_public_key(&args.key)?;
    let bundle = reader::open(&args.bundle.dir, args.bundle.name.as_deref(), &key)?;
    bundle.check_expiry(crate::time::now())?;
    let dest = Destination::open(args, out)?;
    let store = dest.store();
    let lock = store.lock_run(|pid| {
        let holder = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
        out.info(format!("waiting for another unpack of {}{holder}", store.root().display()));
    })?;
    store.purge_temps(&lock)?;
    trust::check_image_list(&bundle)?;
    let claims = dest.claims(&bundle, args)?;
    let mut record = trust::Record::open(dest.store())?;
    if let Destination::Push { .. } = &dest {
        out.warn(format!(
            "rollback protection for --to is recorded on this host only ({}): another host or another \
             --cache does not see it",
            record.path().display()
        ));
    }
    for overridden in record.check(&bundle, &claims, args.allow_rollback)? {
        out.warn(format!("--allow-rollback: accepting a rollback: {overridden}"));
    }
    let extractor = Extractor::new(&bundle, store, dest.files_dir())?;

    let progress = out.progress();
    let mut reports = Vec::new();
    for v in bundle.manifest.volume_ids() {
        let chunks = bundle.index.chunks_in(v);
        if !chunks.iter().any(|&c| extractor.action(c) == Action::Write) {
            reports.push(VolumeReport {
                volume: v.number(),
                file: bundle.manifest.volume(v).file.clone(),
                status: VolumeStatus::Skipped,
                size: bundle.manifest.volume(v).size,
                problems: vec![],
            });
            continue;
        }
        progress.start(&format!("volume {v}"), bundle.volume_payload(v));
        let report = bundle.read_volume(v, &extractor, super::jobs(&args.read), progress.as_ref())?;
        extractor.flush()?;
        progress.finish();
        if report.status == VolumeStatus::Missing {
            out.info(format!("{} is not here yet", report.file));
        }
        reports.push(report);
    }
    let damaged = extractor.damaged();
    for (path, replaced) in &damaged {
        out.warn(format!(
            "the stored copy of {path} did not match its signed digest: {}",
            if *replaced { "replaced from the bundle" } else { "removed; the volume holding it is needed" }
        ));
    }

    let complete: Vec<usize> =
        (0..bundle.manifest.images.len()).filter(|&i| image_complete(&bundle, &extractor, i)).collect();
    for &i in &complete {
        trust::check_image_graph(&bundle, store, &bundle.manifest.images[i])?;
    }
    let published_claims: Vec<trust::Claim> = claims
        .iter()
        .filter(|c| complete.iter().any(|&i| bundle.manifest.images[i].digest == c.digest))
        .cloned()
        .collect();
    let mut published = Vec::new();
    let mut moved = Vec::new();
    let mut pushed = PushReport::default();
    match &dest {
        Destination::Layout(store) if !complete.is_empty() => moved = update_index(store, &bundle, &complete)?,
        Destination::Layout(_) => {}
        Destination::Registry { storage, config, .. } => {
            for &i in &complete {
                let image = &bundle.manifest.images[i];
                let target = mirror::target(image, args.prefix.as_deref())?;
                if let Some(tag) = &target.tag {
                    let from = tag_target(storage, &target.repository, tag).filter(|d| *d != image.digest);
                    if let Some(from) = from {
                        let reference = format!("{}:{tag}", target.repository);
                        moved.push(Moved { reference, from: from.to_string(), to: image.digest.to_string() });
                    }
                }
                mirror::register(storage, image, &target)?;
                let host = format!("{}:{}", config.hostname, config.port);
                let reference = match &target.tag {
                    Some(t) => format!("{host}/{}:{t}", target.repository),
                    None => format!("{host}/{}@{}", target.repository, image.digest),
                };
                out.info(format!("  {reference}"));
                published.push(serde_json::json!({
                    "source": image.source, "digest": image.digest, "reference": reference,
                }));
            }
        }
        Destination::Push { staging, to, client } => {
            let journal = Journal::open(staging, &bundle.manifest.id, to)?;
            let options = PushOptions { chunk: args.upload_chunk.0, parallel: args.parallel.into() };
            let images: Vec<&Image> = complete.iter().map(|&i| &bundle.manifest.images[i]).collect();
            let (references, report) = publish::push_images(client, staging, &images, to, options, &journal)?;
            pushed = report;
            for (image, reference) in images.iter().zip(references) {
                out.info(format!("  {reference}"));
                published.push(serde_json::json!({
                    "source": image.source, "digest": image.digest, "reference": reference,
                }));
            }
            out.info(format!(
                "pushed {} blob(s), manifest(s) and tag(s) ({} uploaded), mounted {} blob(s), {} already there",
                pushed.pushed,
                crate::size::human(pushed.bytes),
                pushed.mounted,
                pushed.skipped
            ));
        }
    }
    for m in &moved {
        out.warn(format!(
            "ref {} in {} moved from {} to {} (bundle '{}')",
            m.reference,
            dest.describe(),
            m.from,
            m.to,
            bundle.manifest.name
        ));
    }
    record.accept(&bundle, &published_claims)?;
    let results = cluster_results(args, out, &bundle, &complete, &dest)?;
    let all_done = (0..bundle.manifest.entries.len()).all(|e| {
        let kind = bundle.manifest.entries[e].kind;
        !matches!(kind, crate::bundle::manifest::EntryKind::Blob | crate::bundle::manifest::EntryKind::File)
            || extractor.committed(e)
    });
    let general = Vec::new();
    let (from_journal, checked_now) = extractor.already_complete();
    if from_journal + checked_now > 0 {
        out.data(format!(
            "already complete: {from_journal} entr(y/ies) committed by an earlier run of this bundle (its journal), \
             {checked_now} found in place and checked against their signed digests now"
        ));
    }
    let mut status = super::verify::summarize(&reports, &general);
    if status == Status::Ok && !all_done {
        status = Status::Incomplete;
    }
    if all_done && status == Status::Ok {
        extractor.cleanup()?;
    }
    let mut doc = super::verify::print_report(out, &bundle, &reports, &general, &[], status, "unpack");
    out.info(format!(
        "{} of {} image(s) complete in {}",
        complete.len(),
        bundle.manifest.images.len(),
        dest.describe()
    ));
    doc["destination"] = serde_json::json!(dest.describe());
    doc["already_complete"] = serde_json::json!({ "from_journal": from_journal, "checked_now": checked_now });
    doc["damaged_in_store"] = serde_json::json!(damaged
        .iter()
        .map(|(path, replaced)| serde_json::json!({ "entry": path, "replaced": replaced }))
        .collect::<Vec<_>>());
    doc["moved"] = serde_json::json!(moved
        .iter()
        .map(|m| serde_json::json!({ "ref": m.reference, "from": m.from, "to": m.to }))
        .collect::<Vec<_>>());
    if let Destination::Registry { installed, config, .. } = &dest {
        doc["registry"] = serde_json::json!({ "url": config.url(), "images": published, "installed": installed });
    }
    if let Destination::Push { to, .. } = &dest {
        doc["push"] = serde_json::json!({
            "registry": to.registry, "prefix": to.prefix, "images": published,
            "pushed": pushed.pushed, "skipped": pushed.skipped, "mounted": pushed.mounted, "bytes": pushed.bytes,
        });
    }
    if let Some(r) = results {
        doc["results"] = r;
    }
    out.document(&doc);
    Ok(status)
}

/// What a cluster needs to pull the bundle's `docker://` images from the mirror: the
/// mirror sets and install-config snippet, the release signatures, with `--release-tags`
/// the release tags, with `--merge-pull-secret` a pull secret. Nothing for a layout, or
/// for bundles of OCI-layout images only.
fn cluster_results(
    args: &UnpackArgs,
    out: &Output,
    bundle: &Bundle,
    complete: &[usize],
    dest: &Destination,
) -> anyhow::Result<Option<serde_json::Value>> {
    let (host, prefix, default_dir) = match dest {
        Destination::Layout(_) => return Ok(None),
        Destination::Registry { root, config, .. } => {
            (format!("{}:{}", config.hostname, config.port), args.prefix.clone(), root.join("results"))
        }
        Destination::Push { to, .. } => (to.registry.clone(), to.prefix.clone(), "airlift-results".into()),
    };
    let images: Vec<Image> = complete.iter().map(|&i| bundle.manifest.images[i].clone()).collect();
    let mappings = openshift::mappings(&images, &host, prefix.as_deref())?;
    if mappings.is_empty() {
        return Ok(None);
    }
    let name = &bundle.manifest.name;
    let dir = args.results.clone().unwrap_or_else(|| default_dir.join(name));
    let releases: Vec<&Release> =
        bundle.manifest.releases.iter().filter(|r| images.iter().any(|i| i.digest == r.digest)).collect();
    let mut signatures = Vec::new();
    for release in &releases {
        for entry in &release.signatures {
            let file = dest.files_dir().join(entry.trim_start_matches(names::FILES_PREFIX));
            let bytes = std::fs::read(&file).map_err(|e| crate::error::Error::io(&file, e))?;
            signatures.push(mirrorsets::Signature { release: release.digest.clone(), bytes });
        }
    }
    let written = mirrorsets::write_results(&dir, &openshift::object_name(name), &mappings, &signatures)?;

    let mut tagged = 0;
    if args.release_tags {
        for release in &releases {
            for t in openshift::release_tags(release, &bundle.manifest.images, prefix.as_deref())? {
                let image = &bundle.manifest.images[t.image];
                match dest {
                    Destination::Registry { storage, .. } => storage.tag(&t.repository, &t.tag, &image.digest)?,
                    Destination::Push { staging, to, client } => {
                        put_tag(client, staging, image, &to.registry, &t.repository, &t.tag)?
                    }
                    Destination::Layout(_) => {}
                }
                tagged += 1;
            }
        }
    }

    let mut pull_secret = None;
    if let Some(file) = &args.merge_pull_secret {
        let existing = crate::oci::layout::read_limited(file, 1 << 20)?;
        let (user, password) = mirror_credentials(args, dest, &host)?;
        let merged = mirrorsets::merge_pull_secret(&existing, &host, &user, &password)?;
        let path = dir.join("pull-secret.json");
        crate::store::write_private(&path, &merged)?;
        pull_secret = Some(path);
    }

    out.info(format!("what the cluster needs to use the mirror is in {}:", dir.display()));
    for (what, path) in &written.files {
        out.info(format!("  {what}: {}", path.display()));
    }
    if let Some(p) = &pull_secret {
        out.info(format!("  pull secret with the mirror's credentials: {}", p.display()));
    }
    if tagged > 0 {
        out.info(format!("  {tagged} release component tag(s) VERSION-ARCH-NAME added"));
    }
    Ok(Some(serde_json::json!({
        "dir": dir,
        "files": written.files.iter().map(|(what, path)| serde_json::json!({"kind": what, "path": path})).collect::<Vec<_>>(),
        "pull_secret": pull_secret,
        "release_tags": tagged,
        "releases": releases.iter().map(|r| serde_json::json!({
            "version": r.version, "digest": r.digest, "components": r.components.len(),
            "signatures": r.signatures.len(),
        })).collect::<Vec<_>>(),
    })))
}

/// Point `tag` of `repository` at the (already pushed) `image`.
fn put_tag(
    client: &Client,
    staging: &BlobStore,
    image: &Image,
    registry: &str,
    repository: &str,
    tag: &str,
) -> crate::error::Result<()> {
    let repo = crate::oci::names::Repository::parse(repository)
        .ok_or_else(|| usage(format!("'{repository}' is not a valid repository name")))?;
    let target = crate::client::ImageRef { registry: registry.to_string(), repository: repo, tag: None, digest: None };
    let bytes = crate::oci::layout::read_limited(&staging.path(&image.digest), crate::oci::MAX_MANIFEST)?;
    client.put_manifest(&target, tag, &bytes, &image.media_type, &image.digest)
}

/// The mirror's credentials for a pull secret: those of the registry this run installed,
/// else from the credential files (`--authfile` or the usual places).
fn mirror_credentials(args: &UnpackArgs, dest: &Destination, host: &str) -> anyhow::Result<(String, String)> {
    if let Destination::Registry { installed: Some(doc), .. } = dest {
        if let (Some(u), Some(p)) = (doc["user"].as_str(), doc["password"].as_str()) {
            return Ok((u.to_string(), p.to_string()));
        }
    }
    let keyring = crate::client::auth::Keyring::load(args.connect.authfile.as_deref())?;
    match keyring.lookup(host, "") {
        Some((c, _)) => Ok((c.username.clone(), c.password.clone())),
        None => Err(usage(format!(
            "--merge-pull-secret: no credentials for {host}: log in first (podman login {host}) or give --authfile \
             FILE holding them"
        ))
        .into()),
    }
}

/// Every blob image `i` needs is committed and checked against its signed digest.
fn image_complete(bundle: &Bundle, extractor: &Extractor, i: usize) -> bool {
    let image = &bundle.manifest.images[i];
    image.blobs.iter().all(|d| {
        bundle
            .manifest
            .entries
            .iter()
            .position(|e| e.kind == EntryKind::Blob && &e.digest == d)
            .is_some_and(|e| extractor.committed(e))
    })
}

/// The manifest `repository:tag` points at in a registry root, if any.
fn tag_target(storage: &Storage, repository: &str, tag: &str) -> Option<crate::digest::Digest> {
    use crate::oci::names::{Reference, Repository, Tag};
    let repo = Repository::parse(repository)?;
    let tag = Tag::parse(tag)?;
    storage.resolve(&repo, &Reference::Tag(tag)).ok().map(|s| s.digest)
}

/// A ref name (layout) or `REPO:TAG` (registry root) repointed to another image.
struct Moved {
    reference: String,
    from: String,
    to: String,
}

/// Add the complete images to the layout's index.json, keeping images from other bundles;
/// a tag that moved points at the new image.
fn update_index(store: &BlobStore, bundle: &Bundle, complete: &[usize]) -> crate::error::Result<Vec<Moved>> {
    let mut moved = Vec::new();
    let path = store.root().join("index.json");
    let mut manifests: Vec<serde_json::Value> = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("manifests").and_then(|m| m.as_array()).cloned())
            .ok_or_else(|| usage(format!("{}: existing index.json is not an OCI index", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(crate::error::Error::io(&path, e)),
    };
    for &i in complete {
        let image = &bundle.manifest.images[i];
        let new = descriptor(&image.digest, &image.media_type, image.size, image.reference.as_deref());
        let ref_of = |d: &serde_json::Value| {
            d.pointer(&format!("/annotations/{}", REF_NAME.replace('/', "~1")))
                .and_then(|r| r.as_str())
                .map(str::to_string)
        };
        if let Some(r) = &image.reference {
            for d in manifests.iter().filter(|d| ref_of(d).as_deref() == Some(r.as_str())) {
                let from = d.get("digest").and_then(|x| x.as_str()).unwrap_or_default();
                if from != image.digest.to_string() {
                    moved.push(Moved { reference: r.clone(), from: from.to_string(), to: image.digest.to_string() });
                }
            }
        }
        manifests.retain(|d| match &image.reference {
            Some(r) => ref_of(d).as_deref() != Some(r),
            None => {
                !(ref_of(d).is_none() && d.get("digest").and_then(|x| x.as_str()) == Some(&image.digest.to_string()))
            }
        });
        manifests.push(new);
    }
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": crate::oci::OCI_INDEX,
        "manifests": manifests,
    });
    let mut bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    bytes.push(b'\n');
    write_atomic(&path, &bytes)?;
    Ok(moved)
}
