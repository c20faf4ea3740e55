//! `pack`'s catalog step: for each `mirror.operators` entry of the image set, pin the
//! catalog image's digest, fetch it into the cache, read its declarative config, filter it
//! ([`crate::catalog::select`]), and either carry the catalog unchanged (`full: true`
//! without packages) or rebuild it from the kept config (its new blobs committed to the
//! cache, nothing to fetch). The catalog image goes into the bundle as `docker://TARGET`
//! (see [`target`]); the bundle and related images its bundles name are resolved like any
//! registry image (with the catalog's own `platforms`, when it gives some).

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::bundle::manifest::{Catalog as Record, CatalogBundle};
use crate::catalog::fbc::Catalog;
use crate::catalog::image::CatalogImage;
use crate::catalog::select::{self, Selection};
use crate::catalog::{render, CatalogFilter};
use crate::digest::Digest;
use crate::error::{integrity, usage, IoContext};
use crate::oci::layout::{read_limited, LayoutSource, ResolvedImage, SourceLayout};
use crate::oci::names::{split, valid_tag, with_transport, ImageRef, TRANSPORT};
use crate::openshift::imageset::{ImageSet, MAX_IMAGESET_FILE};
use crate::source::registry::{Platform, RegistrySource};
use crate::store::{BlobStore, State};
use crate::trip::mirror::layout_repository;
use crate::trip::pack::{Note, RegistryOptions};
use crate::trip::{During, Result};

/// One catalog, ready to pack.
pub struct Packed {
    /// What the bundle manifest records about it.
    pub record: Record,
    /// The registry images to pack for it, each with its source (`docker://…`): the
    /// catalog image first (every blob already in the cache), then what its bundles bring.
    pub images: Vec<(String, ResolvedImage)>,
}

/// Read, filter and (unless carried whole) rebuild every catalog of `set`; `config` is the
/// image set file (a relative `targetCatalogSourceTemplate` is found next to it).
pub fn pack_catalogs(
    set: &ImageSet,
    config: &Path,
    main: &RegistrySource,
    options: &RegistryOptions,
    note: &dyn Fn(Note),
) -> Result<Vec<Packed>> {
    let mut packed = Vec::new();
    for filter in &set.operators {
        let own;
        let registry = if filter.platforms.is_empty() {
            main
        } else {
            let platforms = parse_platforms(&filter.platforms)?;
            own = RegistrySource::new(options.client.clone(), main.cache().root(), platforms, options.parallel)?;
            &own
        };
        let one = pack_catalog(filter, set, config, registry, options, note)
            .during(|| format!("{}: packing operator catalog {}", config.display(), filter.catalog))?;
        if let Some(other) = packed.iter().find(|p: &&Packed| p.record.target == one.record.target) {
            return Err(usage(format!(
                "{}: mirror.operators names {} and {} that would both be mirrored as {}; give one a targetCatalog or \
                 targetTag",
                config.display(),
                other.record.source,
                one.record.source,
                one.record.target
            ))
            .into());
        }
        packed.push(one);
    }
    Ok(packed)
}

/// One catalog: pinned, fetched, read, filtered, carried or rebuilt, and its images resolved.
fn pack_catalog(
    filter: &CatalogFilter,
    set: &ImageSet,
    config: &Path,
    registry: &RegistrySource,
    options: &RegistryOptions,
    note: &dyn Fn(Note),
) -> Result<Packed> {
    let template = filter.catalog_source_template.as_deref().map(|t| read_template(config, t)).transpose()?;
    let original = pin(&filter.catalog, registry, note)?;
    let platforms = match filter.platforms.is_empty() {
        true => parse_platforms(&options.platforms)?,
        false => parse_platforms(&filter.platforms)?,
    };
    let cache = registry.cache();
    let image = CatalogImage::open(cache, &original.digest, &platforms)?;
    let tmp = tempfile::Builder::new().prefix("catalog-").tempdir_in(cache.state(State::Tmp)).at(cache.root())?;
    let configs = tmp.path().join("configs");
    std::fs::create_dir(&configs).at(&configs)?;
    image.extract_configs(&configs)?;
    let catalog = Catalog::read(&configs)?;
    let selection = select::select(&catalog, filter)?;
    selection.notes().iter().for_each(|n| note(Note::Catalog(&filter.catalog, n)));

    let target = target(filter, &original.digest)?;
    let (mut carried, rebuilt) = if filter.full && filter.packages.is_empty() {
        (original.clone(), None)
    } else {
        let kept = tmp.path().join("kept");
        render::write(&catalog, &selection, &kept)?;
        let rebuilt = image.rebuild(cache, &kept)?;
        let digest = rebuilt.digest.clone();
        (rebuilt, Some(digest))
    };
    // A layout's image keeps its source and is named by the whole target (mirror::target).
    let (source, reference) = match filter.catalog.starts_with(TRANSPORT) {
        true => (format!("{TRANSPORT}{target}"), split(&target).tag.map(str::to_string)),
        false => (filter.catalog.clone(), Some(target.clone())),
    };
    carried.reference = reference;

    let brought = brought_images(&selection, set, &filter.catalog, note);
    let refs = brought.iter().map(|s| ImageRef::parse(s)).collect::<crate::error::Result<Vec<_>>>()?;
    let resolved = registry.resolve_all(&refs).during(|| "resolving the images the kept bundles name")?;
    let mut images = vec![(source, carried)];
    images.extend(brought.iter().cloned().zip(resolved));

    let record = Record {
        source: filter.catalog.clone(),
        digest: original.digest,
        filter: serde_json::to_value(filter).map_err(|e| usage(format!("internal: the filter as JSON: {e}")))?,
        rebuilt,
        target,
        bundles: selection
            .bundles()
            .into_iter()
            .map(|b| CatalogBundle { package: b.package, name: b.name, version: b.version, image: b.image })
            .collect(),
        images: brought.iter().map(|s| s.trim_start_matches(TRANSPORT).to_string()).collect(),
        template,
    };
    Ok(Packed { record, images })
}

/// The catalog image, its digest pinned: resolved in its registry and fetched into the
/// cache, or read from its OCI layout (`oci:DIR[:REF]`) and copied into the cache.
fn pin(catalog: &str, registry: &RegistrySource, note: &dyn Fn(Note)) -> Result<ResolvedImage> {
    let original = if catalog.starts_with(TRANSPORT) {
        let source = ImageRef::parse(catalog)?;
        let original = registry.resolve(&source)?;
        registry.fetch_now(&original.blobs.iter().map(|b| (source.clone(), b.clone())).collect::<Vec<_>>())?;
        original
    } else {
        copy_layout(catalog, registry.cache())?
    };
    note(Note::CatalogImage(catalog, &original.digest, original.blobs.iter().map(|b| b.size).sum()));
    Ok(original)
}

/// The one image of a layout (or the one `REF` names), every blob copied into `cache`
/// through its writer, each checked against its digest and size.
fn copy_layout(catalog: &str, cache: &BlobStore) -> crate::error::Result<ResolvedImage> {
    let parsed = LayoutSource::parse(catalog)?;
    let layout = SourceLayout::open(&parsed.path)?;
    let mut images = layout.images(parsed.reference.as_deref())?;
    if images.len() != 1 {
        return Err(usage(format!(
            "{catalog}: the layout holds {} images; name the catalog with oci:DIR:REF",
            images.len()
        )));
    }
    let image = images.remove(0);
    for blob in image.blobs.iter().filter(|b| !cache.contains(&b.digest, b.size)) {
        let path = layout.blob_path(&blob.digest);
        let mut file = std::fs::File::open(&path).at(&path)?.take(blob.size + 1);
        let mut writer = cache.writer(&blob.digest, blob.size)?;
        std::io::copy(&mut file, &mut writer).at(&path)?;
        writer.commit(|w| {
            integrity(format!(
                "{catalog}: blob {} holds {} bytes of digest {}, not {} bytes of that digest",
                path.display(),
                w.size,
                w.digest,
                blob.size
            ))
        })?;
    }
    Ok(image)
}

/// The images the kept bundles bring, as `docker://` sources: those the image set blocks
/// are left out with a warning; one named by tag only is packed by that tag with a
/// warning (as oc-mirror does): its digest is pinned now, but the catalog does not say
/// which digest its publisher meant.
fn brought_images(selection: &Selection, set: &ImageSet, catalog: &str, note: &dyn Fn(Note)) -> Vec<String> {
    let mut brought = Vec::new();
    for image in selection.images() {
        let shown = crate::text::untrusted(&image);
        if set.is_blocked(&image) {
            note(Note::Warning(&format!("{catalog}: {shown} is blocked by mirror.blockedImages; left out")));
            continue;
        }
        if split(&image).digest.is_none() {
            note(Note::Warning(&format!("{catalog}: {shown} is named by tag only; packed by that tag")));
        }
        brought.push(with_transport(&image));
    }
    brought
}

/// `HOST/REPO:TAG` a catalog is mirrored as (oc-mirror's unique name): `targetCatalog`
/// replaces the repository path, `targetTag` the tag; by default the catalog's own. A
/// catalog named by digest alone, without `targetTag`, is tagged with the first 12 hex
/// digits of its original digest (a rebuilt catalog has another digest, so the catalog's
/// own cannot name it).
pub fn target(filter: &CatalogFilter, digest: &Digest) -> crate::error::Result<String> {
    if !filter.catalog.starts_with(TRANSPORT) {
        // A layout (oc-mirror: the directory's name); the tag its REF, if it is one.
        let layout = LayoutSource::parse(&filter.catalog)?;
        let repository = filter.target_catalog.clone().unwrap_or_else(|| layout_repository(&layout.path));
        let tag = match (&filter.target_tag, layout.reference.filter(|r| valid_tag(r))) {
            (Some(t), _) => t.clone(),
            (None, Some(r)) => r,
            (None, None) => digest.hex()[..12].to_string(),
        };
        return Ok(format!("{repository}:{tag}"));
    }
    let image = ImageRef::parse(&filter.catalog)?;
    let repository = filter.target_catalog.as_deref().unwrap_or(image.repository.as_str());
    let tag = match (&filter.target_tag, &image.tag) {
        (Some(t), _) => t.clone(),
        (None, Some(t)) => t.to_string(),
        (None, None) => digest.hex()[..12].to_string(),
    };
    Ok(format!("{}/{repository}:{tag}", image.registry))
}

/// `OS/ARCH[/VARIANT]`s, parsed.
pub fn parse_platforms(platforms: &[String]) -> crate::error::Result<Vec<Platform>> {
    platforms.iter().map(|p| Platform::parse(p)).collect()
}

/// A `targetCatalogSourceTemplate` file (relative to the image set file's directory):
/// a YAML mapping, kept as JSON in the bundle manifest for unpack to complete.
fn read_template(config: &Path, written: &str) -> crate::error::Result<serde_json::Value> {
    let path: PathBuf = config.parent().unwrap_or(Path::new("")).join(written);
    let bytes = read_limited(&path, MAX_IMAGESET_FILE)?;
    let shown = path.display();
    let text = String::from_utf8(bytes).map_err(|_| usage(format!("{shown}: not UTF-8 text")))?;
    let value: serde_json::Value = serde_yaml_ng::from_str(&text)
        .map_err(|e| usage(format!("{shown}: targetCatalogSourceTemplate is not a YAML document: {e}")))?;
    crate::openshift::operators::check_template(&value)
        .map_err(|why| usage(format!("{shown}: targetCatalogSourceTemplate: {why}")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn targets_follow_oc_mirror_unique_names() {
        let d = Digest::of(b"catalog");
        let filter = |catalog: &str, path: Option<&str>, tag: Option<&str>| CatalogFilter {
            catalog: catalog.into(),
            target_catalog: path.map(str::to_string),
            target_tag: tag.map(str::to_string),
            ..CatalogFilter::default()
        };
        let index = "docker://registry.redhat.io/redhat/redhat-operator-index:v4.16";
        assert_eq!(
            target(&filter(index, None, None), &d).unwrap(),
            "registry.redhat.io/redhat/redhat-operator-index:v4.16"
        );
        assert_eq!(
            target(&filter(index, Some("mirror/ops"), None), &d).unwrap(),
            "registry.redhat.io/mirror/ops:v4.16"
        );
        assert_eq!(target(&filter(index, Some("ops"), Some("v1")), &d).unwrap(), "registry.redhat.io/ops:v1");
        let pinned = format!("docker://quay.io/ns/index@{d}");
        assert_eq!(target(&filter(&pinned, None, None), &d).unwrap(), format!("quay.io/ns/index:{}", &d.hex()[..12]));
        assert_eq!(target(&filter(&pinned, None, Some("t")), &d).unwrap(), "quay.io/ns/index:t");
    }

    #[test]
    fn blocked_images_are_left_out_and_tag_only_ones_kept_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let objects = [
            json!({"schema": "olm.package", "name": "foo", "defaultChannel": "stable"}),
            json!({"schema": "olm.channel", "package": "foo", "name": "stable", "entries": [{"name": "foo.v1"}]}),
            json!({"schema": "olm.bundle", "name": "foo.v1", "package": "foo", "image": format!("q.io/x/bundle@{}", d('1')),
                   "properties": [{"type": "olm.package", "value": {"packageName": "foo", "version": "1.0.0"}}],
                   "relatedImages": [{"name": "op", "image": "q.io/x/op:v1"}, {"name": "db", "image": format!("q.io/x/db@{}", d('2'))}]}),
        ];
        let text: String = objects.iter().map(|o| format!("{o}\n")).collect();
        std::fs::create_dir(dir.path().join("foo")).unwrap();
        std::fs::write(dir.path().join("foo/catalog.json"), text).unwrap();
        let catalog = Catalog::read(dir.path()).unwrap();
        let filter = CatalogFilter { catalog: "docker://q.io/x/index:v1".into(), ..CatalogFilter::default() };
        let selection = select::select(&catalog, &filter).unwrap();
        let set = ImageSet {
            blocked: vec![crate::openshift::imageset::Blocked::new("q.io/x/db").unwrap()],
            ..ImageSet::default()
        };
        let warnings = std::cell::RefCell::new(Vec::new());
        let note = |n: Note| {
            if let Note::Warning(w) = n {
                warnings.borrow_mut().push(w.to_string())
            }
        };
        let brought = brought_images(&selection, &set, &filter.catalog, &note);
        assert_eq!(brought, [format!("docker://q.io/x/bundle@{}", d('1')), "docker://q.io/x/op:v1".to_string()]);
        assert_eq!(
            warnings.into_inner(),
            [
                format!("docker://q.io/x/index:v1: q.io/x/db@{} is blocked by mirror.blockedImages; left out", d('2')),
                "docker://q.io/x/index:v1: q.io/x/op:v1 is named by tag only; packed by that tag".to_string(),
            ]
        );
    }

    #[test]
    fn templates_are_yaml_mappings_next_to_the_image_set() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("imageset.yaml");
        std::fs::write(
            dir.path().join("cs.yaml"),
            "apiVersion: operators.coreos.com/v1alpha1\nkind: CatalogSource\nspec:\n  priority: -100\n",
        )
        .unwrap();
        let t = read_template(&config, "cs.yaml").unwrap();
        assert_eq!(t["spec"]["priority"], -100);
        std::fs::write(dir.path().join("list.yaml"), "- a\n").unwrap();
        let e = read_template(&config, "list.yaml").unwrap_err().to_string();
        assert!(e.ends_with("list.yaml: targetCatalogSourceTemplate: not a CatalogSource (a YAML mapping)"), "{e}");
        std::fs::write(dir.path().join("cm.yaml"), "kind: ConfigMap\n").unwrap();
        let e = read_template(&config, "cm.yaml").unwrap_err().to_string();
        assert!(e.ends_with("cm.yaml: targetCatalogSourceTemplate: kind is \"ConfigMap\", not CatalogSource"), "{e}");
        std::fs::write(dir.path().join("spec.yaml"), "kind: CatalogSource\nspec: grpc\n").unwrap();
        let e = read_template(&config, "spec.yaml").unwrap_err().to_string();
        assert!(e.ends_with("spec.yaml: targetCatalogSourceTemplate: spec is not a mapping"), "{e}");
        assert!(read_template(&config, "missing.yaml").unwrap_err().to_string().contains("missing.yaml"));
    }
}
