//! Command-line definitions (clap derive only; behaviour lives in `commands/`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::size::{ByteSize, Media};

/// Carry container images across an air gap.
///
/// airlift packs images into a chunked, checksummed, Ed25519-signed bundle split into
/// volumes sized for USB sticks, DVDs or Blu-ray; verifies it at the security gate; and
/// unpacks it, resumably, on the air-gapped host.
#[derive(Debug, Parser)]
#[command(name = "airlift", version, propagate_version = true, max_term_width = 100)]
#[command(after_long_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  integrity failure: bad or missing signature, wrong key, hash mismatch, foreign, swapped
     or truncated volume, malicious entry, expired bundle, rollback
  2  usage or operational error: bad arguments, unreadable files, source problems, disk errors
  3  incomplete: volumes are absent, or a differential bundle's base is not at the destination;
     everything present is good; run again when they arrive";

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Print exactly one JSON document on stdout (on failure too)
    #[arg(long, global = true)]
    pub json: bool,
    /// No progress bars or informational messages on stderr
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a signing key pair (minisign format)
    Keygen(KeygenArgs),
    /// Pack images into a signed, chunked bundle of volumes
    Pack(Box<PackArgs>),
    /// Check a bundle's signature, volumes and chunks without writing anything
    Verify(VerifyArgs),
    /// List the images, volumes and files of a bundle
    List(ListArgs),
    /// Merge per-disc `verify --json` reports of one bundle into one evidence document
    #[command(after_long_help = EVIDENCE_HELP)]
    Evidence(EvidenceArgs),
    /// Verify and unpack a bundle into an OCI layout or a registry root (resumable)
    Unpack(UnpackArgs),
    /// Rebuild a bundle's lost or damaged volumes from its recovery volumes (pack --parity)
    #[command(after_long_help = REPAIR_HELP)]
    Repair(RepairArgs),
    /// Write a receipt of what a destination holds (for pack --have), or show one's summary
    #[command(after_long_help = RECEIPT_HELP)]
    Receipt(ReceiptArgs),
    /// Set up a registry root: CA and server certificate, credentials, config, systemd unit
    Install(InstallArgs),
    /// Serve a registry root: the OCI distribution API over TLS with basic auth
    #[command(after_long_help = SERVE_LOG_HELP)]
    Serve(ServeArgs),
    /// Check a registry root's blobs, manifests, tags and links; repair blobs from a bundle
    #[command(after_long_help = FSCK_HELP)]
    Fsck(FsckArgs),
    /// Work with operator catalogs (file-based catalogs) on disk
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Generate man pages or shell completions
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// Delete images from a registry root by an oc-mirror delete file, or keep only the newest releases
    #[command(after_long_help = PRUNE_HELP)]
    Prune(PruneArgs),
    /// Copy a graph-data tree into the update service's volume (the graph-data image's entrypoint)
    #[command(after_long_help = GRAPH_DATA_COPY_HELP)]
    GraphDataCopy(GraphDataCopyArgs),
    /// Show a registry root: URL, certificate expiry, contents, last unpack, free space
    Status(StatusArgs),
    /// Remove a registry root's service, config, certificates and credentials (--data: its images too)
    Uninstall(UninstallArgs),
    /// Add, list, remove the users of a registry root, or change a password
    #[command(subcommand, after_long_help = USER_HELP)]
    User(UserCommand),
    /// Remove the blobs of a registry root that no manifest, tag or unpack needs any more
    #[command(after_long_help = GC_HELP)]
    Gc(GcArgs),
}

const GC_HELP: &str = "\
Marks every blob reachable from a manifest the root keeps (tagged or not: `prune` and DELETE \
remove manifests, gc removes their blobs), from a tag, from a referrer's subject, or named by \
the journal of an unpack that is running or was cut off; then removes every other blob file \
older than --grace whose repository links are older too, with those links. Safe while `serve` \
runs and while `unpack --root` writes: a manifest pushed during the sweep is either stored with \
every blob present or refused (MANIFEST_BLOB_UNKNOWN) so the client pushes the blob again. \
Upload sessions untouched for an hour (the server's upload expiry) are removed too.

Exit status: 0 done (also when nothing was removed); 2 bad arguments, a root that is not \
installed, an unreadable store or manifest (check the root with `airlift fsck`).";

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Registry root made by `airlift install` or `unpack --root`
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// List what would be removed and the bytes it holds; remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Keep unreferenced blobs younger than this, and those linked more recently (a push or
    /// an unpack may be about to reference them), e.g. 1h, 30m, 0s
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub grace: crate::size::Duration,
}

const GRAPH_DATA_COPY_HELP: &str = "\
The entrypoint of the graph-data image `pack` builds for `graph: true`: \
`/airlift graph-data-copy /var/lib/cincinnati-graph-data /var/lib/cincinnati/graph-data`. \
It copies directories and regular files, replacing files of the same name, and never \
reaches the network.

Exit status: 0 when everything was copied; 2 when SRC is not a directory, holds a symlink \
or special file, or a file cannot be read or written (the message names the path).";

const PRUNE_HELP: &str = "\
Each image is found where unpack put it (give the same --prefix); a release brings its \
components (read from its payload in the root), an image its index's children, referrers \
and cosign tags. A manifest still named by another tag, listed by an index that stays, \
attached to an image that stays, or a component of a release that stays, is kept, and the \
report says why. Blobs stay until `airlift gc --root ROOT` sweeps them; the report gives the \
bytes that frees. With --to, the registry must allow DELETE (distribution: \
storage.delete.enabled) and deletes by digest; its own garbage collection frees the blobs.

Exit status: 0 when the prune is done (or, with --dry-run, planned); 2 when the delete file \
is invalid or the root cannot be read or written (the message names the file and field, or \
the path).";

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["config", "keep_releases"])))]
#[command(group(clap::ArgGroup::new("where").required(true).args(["root", "to"])))]
pub struct PruneArgs {
    /// oc-mirror v2's delete file (kind: DeleteImageSetConfiguration) naming what to delete
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Keep the newest N release images of each architecture; delete the others with their components
    #[arg(long, value_name = "N", conflicts_with = "config")]
    pub keep_releases: Option<usize>,
    /// The registry root (made by `airlift install` or `unpack --root`)
    #[arg(long, value_name = "ROOT", conflicts_with = "to")]
    pub root: Option<PathBuf>,
    /// With --root: the repository prefix the images were unpacked under (unpack's --prefix)
    #[arg(long, value_name = "PREFIX", conflicts_with = "to")]
    pub prefix: Option<String>,
    /// A registry over the network, as `unpack --to` pushed to it: docker://HOST[:PORT][/PREFIX]
    #[arg(long, value_name = "REF")]
    pub to: Option<String>,
    /// List what would be deleted and kept, and the bytes gc would then free; delete nothing
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct GraphDataCopyArgs {
    /// The graph data to copy
    #[arg(value_name = "SRC")]
    pub src: PathBuf,
    /// Where to copy it (created if missing)
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory to write NAME.key (mode 0600) and NAME.pub into
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Base name of the key files
    #[arg(long, default_value = "airlift")]
    pub name: String,
    /// Encrypt the secret key with the password read from FILE (first line)
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Overwrite existing key files
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct PackArgs {
    /// Secret key (minisign format) used to sign the bundle (optional with --dry-run)
    #[arg(long, value_name = "KEY", required_unless_present = "dry_run")]
    pub key: Option<PathBuf>,
    /// Password for an encrypted secret key, read from FILE (prompted on a terminal otherwise)
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Output directory (created if missing)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Bundle name, used for every file name in the bundle
    #[arg(long, default_value = "airlift")]
    pub name: String,
    /// Maximum size of one volume file (bytes, or k/M/G, KiB/MiB/GiB)
    #[arg(long, value_name = "SIZE", conflicts_with = "media")]
    pub volume_size: Option<ByteSize>,
    /// Size volumes for a medium (default fat32, the 4 GiB file limit). A disc (dvd: 4,700,372,992
    /// bytes, dvd-dl: 8,543,666,176, bd25: 24,220,008,448) also puts the volumes on discs in
    /// the signed manifest, each disc labelled (NAME_2OF5) and left room for the manifest,
    /// signatures, README and airlift executable every disc carries
    #[arg(long, value_enum, conflicts_with = "disc_size")]
    pub media: Option<Media>,
    /// Discs of SIZE bytes, for media the presets do not cover (DVD-R: 4707319808): volumes are
    /// sized as for a preset, or with --volume-size as many as fit go on each disc (a size
    /// that cannot fit beside what every disc carries is refused)
    #[arg(long, value_name = "SIZE")]
    pub disc_size: Option<ByteSize>,
    /// Also write one ISO 9660 image per disc, NAME.discNN.iso (needs a disc: --media
    /// dvd|dvd-dl|bd25 or --disc-size): that disc's volumes, the signed manifest,
    /// SHA256SUMS and their signatures, the airlift executable and a README with the
    /// commands, Joliet and Rock Ridge names, never larger than the disc. Each disc's
    /// volume files are removed once its image is written (the images hold them)
    #[arg(long)]
    pub iso: bool,
    /// With --iso: keep the volume files beside the images
    #[arg(long, requires = "iso")]
    pub keep_volumes: bool,
    /// Maximum size of one stored chunk
    #[arg(long, value_name = "SIZE", default_value = "64MiB")]
    pub chunk_size: ByteSize,
    /// Also write N recovery volumes (NAME.parity.0001, …; N% of the data volumes, rounded
    /// up): Reed–Solomon parity over the data volumes, signed like them, so that any N lost
    /// or damaged volumes, data or recovery, can be rebuilt (`airlift repair`; unpack does it
    /// on the fly). Each is as large as the largest data volume
    #[arg(long, value_name = "N|P%")]
    pub parity: Option<crate::bundle::parity::Amount>,
    /// Sequence number of this bundle among the bundles of its name and key; unpack refuses
    /// an older one, and another bundle under a sequence it accepted. Default: the signed
    /// creation time in seconds since the epoch (SOURCE_DATE_EPOCH when set), so it grows by
    /// itself; give it when two bundles of one name are made within the same second
    #[arg(long, value_name = "N")]
    pub sequence: Option<u64>,
    /// Expiry, counted from now (also when SOURCE_DATE_EPOCH fixes the creation time),
    /// e.g. 30d, 12h, 90m
    #[arg(long, value_name = "DURATION")]
    pub expires: Option<crate::size::Duration>,
    /// Replace a bundle of the same name already in --out (its files, extra volumes included)
    #[arg(long)]
    pub force: bool,
    /// Resolve everything as pack does (registries, the image set, releases, catalogs) and
    /// print what the bundle would be: images by kind, blobs, bytes before and after dedupe,
    /// volumes and media, what is still to fetch. Writes no bundle (--out is not created);
    /// only configs and manifests are fetched into the cache (their stored size depends on
    /// compression). The figures equal what the same pack writes; without --key only the
    /// bundle id differs (it hashes the key id)
    #[arg(long)]
    pub dry_run: bool,
    /// Write oc-mirror's mapping.txt to FILE: a line SOURCE=docker://DESTINATION per image,
    /// the destination being the reference unpack publishes it by (see --mapping-dest)
    #[arg(long, value_name = "FILE")]
    pub mapping: Option<PathBuf>,
    /// The registry (and unpack's --prefix) the --mapping destinations name:
    /// docker://HOST[:PORT][/PREFIX]; default docker://mirror.invalid:8443, a placeholder to
    /// replace with the mirror registry's name
    #[arg(long, value_name = "DEST", requires = "mapping")]
    pub mapping_dest: Option<String>,
    /// Do not carry the airlift executable (the far side already has this version)
    #[arg(long)]
    pub no_installer: bool,
    /// Start even when the filesystems of --out and the blob cache lack room for what
    /// packing writes (checked with statvfs before anything is written)
    #[arg(long)]
    pub no_space_check: bool,
    /// Extra file to carry in the bundle (repeatable)
    #[arg(long, value_name = "FILE")]
    pub include: Vec<PathBuf>,
    /// Images to pack: docker://HOST[:PORT]/REPO[:TAG|@DIGEST] (a registry; docker://nginx
    /// is Docker Hub's library/nginx:latest), oci:PATH (every image of the layout) or oci:PATH:REF
    #[arg(required_unless_present_any = ["images", "release", "config"], value_name = "SOURCE")]
    pub sources: Vec<String>,
    /// Read more sources from FILE: one a line, `#` starts a comment, docker:// may be left out
    #[arg(long, value_name = "FILE")]
    pub images: Vec<PathBuf>,
    /// OpenShift release image to pack with every component its payload names
    /// (repeatable): docker://quay.io/openshift-release-dev/ocp-release:4.16.3-x86_64 or
    /// oci:DIR:REF
    #[arg(long, value_name = "REF")]
    pub release: Vec<String>,
    /// oc-mirror image set file (kind ImageSetConfiguration): platform releases and
    /// architectures, operator catalogs (filtered, rebuilt, with their bundle and related
    /// images), additionalImages, blockedImages; other sections are refused
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Release signature file to carry (repeatable); unpack writes the signature
    /// ConfigMap from it. In a directory named sha256=HEX it signs that release, else the
    /// only release packed
    #[arg(long, value_name = "FILE")]
    pub release_signature: Vec<PathBuf>,
    /// Update service queried for the image set's release channels
    /// (URL?channel=NAME&arch=ARCH); default $UPDATE_URL_OVERRIDE, else
    /// https://api.openshift.com/api/upgrades_info/v1/graph (OKD channels:
    /// https://origin-release.ci.openshift.org/graph). What it answers is kept in the cache
    /// (graphs/CHANNEL-ARCH.json) and read again when it cannot be reached
    #[arg(long, value_name = "URL", conflicts_with = "graph_file")]
    pub graph_url: Option<String>,
    /// Saved update graph for the image set's release channels, instead of the update
    /// service: one Cincinnati graph document used for every channel, or a directory of
    /// CHANNEL-ARCH.json documents (ARCH as the graph names it: amd64, arm64, …)
    #[arg(long, value_name = "FILE")]
    pub graph_file: Option<PathBuf>,
    /// The update service's graph-data tarball, for an image set with `graph: true`
    /// (default: fetched from https://api.openshift.com/api/upgrades_info/graph-data, or
    /// BASE/graph-data with UPDATE_URL_OVERRIDE=BASE/v1/graph, and cached); built into the
    /// graph-data image mirrored as openshift/graph-image
    #[arg(long, value_name = "FILE")]
    pub graph_data: Option<PathBuf>,
    /// A receipt of what the destination holds (`airlift receipt` there; repeatable): the
    /// layers it lists are left out of the bundle (a differential bundle; manifests and
    /// configs always travel), each recorded with the receipt's id
    #[arg(long, value_name = "RECEIPT")]
    pub have: Vec<PathBuf>,
    /// Public key (minisign, repeatable) the --have receipts must be signed by; without it,
    /// unsigned receipts are taken. Earlier bundles (--since) may be signed by it too
    #[arg(long, value_name = "PUB")]
    pub have_key: Vec<PathBuf>,
    /// An earlier bundle's manifest (NAME.manifest.json, its .minisig beside it; repeatable),
    /// assumed delivered: the layers it carried (or relied on) are left out. Its signature
    /// must verify with --key's public half or a --have-key
    #[arg(long, value_name = "MANIFEST")]
    pub since: Vec<PathBuf>,
    /// Fetch the signatures of every packed release from this signature store, laid out as
    /// mirror.openshift.com's: URL/sha256=HEX/signature-N, N from 1 until a 404. Fetching is
    /// on when this or --release-key is given (then from
    /// https://mirror.openshift.com/pub/openshift-v4/signatures/openshift/release); a release
    /// given --release-signature files is not fetched
    #[arg(long, value_name = "URL")]
    pub release_signature_url: Option<String>,
    /// OpenPGP public key (armored or binary, repeatable) release signatures must verify
    /// with; pack refuses a release with a bad signature or none. Without it, fetched
    /// signatures travel unverified, with a warning
    #[arg(long, value_name = "FILE")]
    pub release_key: Vec<PathBuf>,
    /// What is attached to registry images (cosign .sig/.att/.sbom tags, OCI referrers) is
    /// packed with them: optional (the default, else the image set's
    /// mirror.signatures.policy) warns about an unsigned release image, require refuses any
    /// image without a cosign signature, skip looks for nothing
    #[arg(long, value_enum, value_name = "POLICY")]
    pub signatures: Option<Signatures>,
    #[command(flatten)]
    pub sigstore: SigstoreArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// The keys carried cosign signatures are checked with.
#[derive(Debug, Args)]
pub struct SigstoreArgs {
    /// A cosign public key (PEM, ECDSA P-256; repeatable): every carried cosign signature
    /// must verify with one of them (a bad one: exit 1, naming the image)
    #[arg(long, value_name = "FILE")]
    pub sigstore_key: Vec<PathBuf>,
    /// The Rekor public key (PEM) that checks the Rekor bundles in the signatures
    #[arg(long, value_name = "FILE", requires = "sigstore_key")]
    pub rekor_key: Option<PathBuf>,
}

/// `pack --signatures`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Signatures {
    Require,
    Optional,
    Skip,
}

/// How `pack` reaches registries.
#[derive(Debug, Args)]
#[command(next_help_heading = "Registry options")]
pub struct RegistryArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Blob cache: what was fetched once is not fetched again (default $XDG_CACHE_HOME/airlift
    /// or ~/.cache/airlift)
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Blobs fetched at the same time
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// Keep only this platform's manifests of a multi-arch index, OS/ARCH[/VARIANT]
    /// (repeatable; the index itself is kept as it is)
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Vec<String>,
}

/// Credentials and TLS for reaching a registry (pack and unpack --to).
#[derive(Debug, Args)]
#[command(next_help_heading = "Registry options")]
pub struct ConnectArgs {
    /// Registry credentials (containers auth.json, docker config.json or an OpenShift pull
    /// secret); default: $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json, ~/.docker/config.json
    #[arg(long, value_name = "FILE")]
    pub authfile: Option<PathBuf>,
    /// Trust the CA certificates in DIR/*.crt (PEM) besides the system's
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    /// Verify registries' TLS certificates; false also allows plain-HTTP registries
    #[arg(long, value_name = "BOOL", default_value_t = true, num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// Seconds to wait for a registry's answer, or for the next bytes of a transfer,
    /// before the request counts as dropped (retried, resumed with Range)
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    /// Bundle directories (manifest, signatures, volumes): one, or several such as the mount
    /// points of its discs; the manifest comes from the first holding it, each volume from
    /// whichever holds it, and a directory holding another bundle's manifest of the same
    /// name is named and not read
    #[arg(value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Bundle name, when DIR holds more than one bundle
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    /// Threads reading and hashing chunks (default: one per core; use 1 for optical drives)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: Option<u16>,
}

/// Reading a bundle disc by disc with one drive.
#[derive(Debug, Args)]
pub struct MediaArgs {
    /// Read the bundle disc by disc from DIR (a drive's mount point, also a bundle directory,
    /// so DIR... may be left out): every volume there is read, then the disc holding the next
    /// volume still needed is asked for (by label and files) and waited for; another
    /// bundle's disc is named and asked again for; a file still being written is not read
    /// before it is whole
    #[arg(long, value_name = "DIR")]
    pub wait_for_media: Option<PathBuf>,
    /// With --wait-for-media: give up when no disc needed arrives within DURATION of
    /// asking (e.g. 90s, 30m, 2h); the report names what is still missing (exit 3)
    #[arg(long, value_name = "DURATION", requires = "wait_for_media")]
    pub wait_timeout: Option<crate::size::Duration>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub bundle: BundleArgs,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub media: MediaArgs,
    /// Also hash every split file whole (when all its volumes are present) and check it
    /// against its digest, as unpack does before committing it
    #[arg(long)]
    pub deep: bool,
    /// Trusted public key (minisign format); never taken from the bundle
    #[arg(long, value_name = "PUB")]
    pub key: PathBuf,
    #[command(flatten)]
    pub sigstore: SigstoreArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub bundle: BundleArgs,
    /// Check the manifest signature with this public key before listing
    #[arg(long, value_name = "PUB")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UnpackArgs {
    #[command(flatten)]
    pub bundle: BundleArgs,
    #[command(flatten)]
    pub read: ReadArgs,
    #[command(flatten)]
    pub media: MediaArgs,
    /// Trusted public key (minisign format); never taken from the bundle
    #[arg(long, value_name = "PUB")]
    pub key: PathBuf,
    /// Write the images as an OCI image layout at OUT (created if missing)
    #[arg(long, value_name = "OUT", required_unless_present_any = ["root", "to"], conflicts_with_all = ["root", "to"])]
    pub layout: Option<PathBuf>,
    /// Load the images into the registry at ROOT (installed on first use)
    #[arg(long, value_name = "ROOT", conflicts_with = "to")]
    pub root: Option<PathBuf>,
    /// Push the images into an existing registry: docker://HOST[:PORT][/PREFIX]
    /// (quay.io/ns/app:1.0 → HOST:PORT/PREFIX/ns/app:1.0, oci:DIR:REF → PREFIX/DIR:REF)
    #[arg(long, value_name = "REF")]
    pub to: Option<String>,
    /// Staging store for --to: blobs are verified into it, then pushed from it, and it
    /// keeps the push journal (default $XDG_CACHE_HOME/airlift/push or ~/.cache/airlift/push)
    #[arg(long, value_name = "DIR", requires = "to")]
    pub cache: Option<PathBuf>,
    /// With --to: blobs larger than SIZE are uploaded in chunks of SIZE (less for registries
    /// behind a proxy that limits request sizes)
    #[arg(long, value_name = "SIZE", default_value = "64MiB", requires = "to")]
    pub upload_chunk: ByteSize,
    /// With --to: blobs, mounts, images' manifests and tags pushed at the same time
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64),
          requires = "to")]
    pub parallel: u16,
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Hostname for a registry installed on first use (default: this host's name)
    #[arg(long, requires = "root")]
    pub hostname: Option<String>,
    /// Repository path prefix in the registry: quay.io/ns/app:1.0 → HOST:PORT/PREFIX/ns/app:1.0
    #[arg(long, value_name = "PATH", requires = "root")]
    pub prefix: Option<String>,
    /// When installing on first use, write the systemd unit but do not enable or start it
    #[arg(long, requires = "root")]
    pub no_start: bool,
    /// Accept a rollback: a tag moving to content signed earlier (same key) than what set it,
    /// an older sequence or a different manifest under an accepted sequence of a (key, name).
    /// The record is kept at the destination (LAYOUT/.airlift/trust.json, the registry
    /// storage's .airlift/trust.json; for --to, beside the staging cache: this host only)
    #[arg(long)]
    pub allow_rollback: bool,
    /// Start even when the target's filesystems (the store, the files, the staging store of
    /// --to) lack room for the blobs and files not there yet (checked before any volume is read)
    #[arg(long)]
    pub no_space_check: bool,
    /// Where to write what a cluster needs to pull from the mirror (ImageDigestMirrorSet,
    /// ImageTagMirrorSet, ImageContentSourcePolicy, install-config snippet, release
    /// signature ConfigMap): default ROOT/results/NAME with --root,
    /// ./airlift-results/NAME with --to
    #[arg(long, value_name = "DIR", conflicts_with = "layout")]
    pub results: Option<PathBuf>,
    /// Also tag every release component VERSION-ARCH-NAME, as `oc adm release mirror` does
    #[arg(long, conflicts_with = "layout")]
    pub release_tags: bool,
    /// Write RESULTS/pull-secret.json: this pull secret with the mirror's credentials added
    /// (from the registry installed by this run, else from --authfile or the usual places)
    #[arg(long, value_name = "FILE", conflicts_with = "layout")]
    pub merge_pull_secret: Option<PathBuf>,
    /// Write RESULTS/clusterimagepolicy.yaml: a ClusterImagePolicy requiring a cosign
    /// signature by this public key (PEM) for every source repository of a signed image
    #[arg(long, value_name = "KEY", conflicts_with = "layout")]
    pub image_policy: Option<PathBuf>,
}

const EVIDENCE_HELP: &str = "\
Each disc (or directory) verified alone at the gate gives a report (`airlift verify DIR --key \
PUB --json > discN.json`); this merges them into one evidence document: for each volume, every \
report that saw it, when, where and on which disc, and its combined state (ok when one report \
found it intact). Reports are read as untrusted input: each at most 64 MiB, strictly parsed, \
all of one bundle (manifest sha256, bundle id and key id agree) or refused.

Exit status: 0 every volume was seen intact; 3 some volume was never seen, everything seen \
is intact; 1 a volume was only seen damaged or foreign, a report names a problem of the \
bundle, or the reports are malformed, oversized or of different bundles; 2 bad arguments or \
an unreadable report.";

#[derive(Debug, Args)]
pub struct EvidenceArgs {
    /// Reports written by `airlift verify --json`, one per disc or directory, of one bundle
    #[arg(value_name = "REPORT", required = true)]
    pub reports: Vec<PathBuf>,
}

const REPAIR_HELP: &str = "\
Every volume, data and recovery, is checked whole against the signed manifest (size, then \
sha256). A bundle packed with --parity N survives any N lost or damaged volumes: they are \
rebuilt byte-identical, each committed only once it matches its signed sha256. With more \
lost than that, repair says so and writes nothing. The bundle may be spread over several \
directories (DIR...: the volumes are found in whichever holds them). Without --out the rebuilt \
volumes go into the directory holding the manifest, replacing damaged ones (a read-only one is \
refused: give --out). With --out DIR2 the source \
is only read; DIR2 receives the rebuilt volumes and a copy of the manifest, SHA256SUMS and \
their signatures, so DIR2's files plus DIR's intact volumes make the bundle: `airlift verify \
DIR DIR2` reads both, or copy them into one directory (or onto the media). A repair killed midway leaves only temp \
files, removed by the next run; a second repair into the same directory waits for the first.

Exit status: 0 repaired (or nothing to repair); 1 bad signature, or more volumes lost than \
there are intact recovery volumes (nothing written); 2 bad arguments, a bundle without \
recovery volumes, a read-only DIR without --out, a disk error.";

#[derive(Debug, Args)]
pub struct RepairArgs {
    #[command(flatten)]
    pub bundle: BundleArgs,
    #[command(flatten)]
    pub read: ReadArgs,
    /// Trusted public key (minisign format); never taken from the bundle
    #[arg(long, value_name = "PUB")]
    pub key: PathBuf,
    /// Write the rebuilt volumes and a copy of the signed files into DIR2 (created if
    /// missing) instead of DIR, which is then only read
    #[arg(long, value_name = "DIR2")]
    pub out: Option<PathBuf>,
}

const RECEIPT_HELP: &str = "\
A receipt (zstd-compressed JSON lines) lists every blob (digest, size, a repository that \
holds it), every manifest and every tag of the destination. Carry it back to the connected \
side and give it to `pack --have` to leave those blobs out of the next bundle. Signed with \
--key, it is checked there with `pack --have-key SITE.pub` or `minisign -Vm FILE -p SITE.pub`.

Exit status: 0 done; 1 a receipt that is damaged, altered, or not signed by --key; 2 bad \
arguments, an unreadable destination or receipt, a malformed line, a registry error.";

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["root", "layout", "to", "summary"])))]
pub struct ReceiptArgs {
    /// The registry root (made by `airlift install` or `unpack --root`) to list
    #[arg(long, value_name = "ROOT", conflicts_with_all = ["layout", "to", "summary"])]
    pub root: Option<PathBuf>,
    /// The OCI image layout (written by `unpack --layout`) to list
    #[arg(long, value_name = "DIR", conflicts_with_all = ["to", "summary"])]
    pub layout: Option<PathBuf>,
    /// The registry to list: docker://HOST[:PORT][/PREFIX] (every repository under PREFIX)
    #[arg(long, value_name = "REF", conflicts_with = "summary")]
    pub to: Option<String>,
    /// Where to write the receipt (its signature goes to FILE.minisig)
    #[arg(long, value_name = "FILE", required_unless_present = "summary", conflicts_with = "summary")]
    pub out: Option<PathBuf>,
    /// Show what the receipt FILE says: destination, id, signature, counts, sizes, repositories
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
    /// With --out: the site's secret key (minisign) to sign the receipt with; with
    /// --summary: the public key its signature must verify with
    #[arg(long, value_name = "KEY")]
    pub key: Option<PathBuf>,
    /// Password for an encrypted secret key, read from FILE (prompted on a terminal otherwise)
    #[arg(long, value_name = "FILE", requires = "out")]
    pub password_file: Option<PathBuf>,
    /// With --to: requests in flight at once
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Registry root directory (created if missing)
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Name clients use to reach the registry (default: this host's name)
    #[arg(long)]
    pub hostname: Option<String>,
    /// TCP port to listen on
    #[arg(long, default_value_t = 8443)]
    pub port: u16,
    /// Name of the initial user (default: init); with --reset-password, the user whose
    /// password is reset (default: the root's initial user)
    #[arg(long)]
    pub user: Option<String>,
    /// Use this certificate (PEM chain) instead of generating a CA and server certificate
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Write the systemd unit but do not enable or start it
    #[arg(long)]
    pub no_start: bool,
    /// Give an installed root's user (--user, default: its initial user) a new password
    /// (generated and printed, or --password-file's) and change nothing else; a running
    /// `airlift serve` takes it within a second
    #[arg(long, conflicts_with_all = ["hostname", "tls_cert", "tls_key"])]
    pub reset_password: bool,
    /// Issue a new server certificate from the root's CA (same names, plus --hostname and
    /// --san); the CA clients trust is unchanged and a running `serve` picks it up
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "reset_password", "renew_ca"])]
    pub renew: bool,
    /// With --renew or --renew-ca: another DNS name or IP address for the certificate (repeatable)
    #[arg(long, value_name = "NAME|IP")]
    pub san: Vec<String>,
    /// Make a new CA beside the current one (tls/ca-next.crt) and a trust bundle of both
    /// (tls/ca-bundle.crt) for clients to trust during the overlap; the current CA still issues
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "reset_password"])]
    pub renew_ca: bool,
    /// With --renew: issue from the next CA (made by --renew-ca) and make it the CA
    #[arg(long, requires = "renew")]
    pub use_next_ca: bool,
    /// The initial user's password (mirror-registry's --initPassword): the one line of FILE
    /// without its final newline, 8 to 72 bytes, no control characters; never printed
    /// (default: a generated one, printed once)
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Registry root made by `airlift install`
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Registry root made by `airlift install`
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Also remove the storage (every image) and the root directory
    #[arg(long)]
    pub data: bool,
}

/// What `airlift user` says about roles, files and exit codes (user --help, man page).
const USER_HELP: &str = "\
Users live in ROOT/htpasswd (bcrypt entries, as `htpasswd -B` writes them) and their roles in
ROOT/roles.json beside it: read-write users pull and push (install's user is one, and a user
roles.json does not name is one); read-only users pull, and every write they try (POST, PUT,
PATCH, DELETE) is answered 403 DENIED. A running `airlift serve` picks up every change within
a second, without a restart. Edits take the root's install lock and replace each file
atomically, so two runs never lose an edit.

Passwords: --password-file FILE (its one line without the final newline), else asked twice on
a terminal, else generated (32 letters and digits) and printed once. A chosen password has 8
to 72 bytes and no control characters. User names: 1-255 letters, digits, '.', '_', '-', '@'.

Exit status: 0 done; 2 bad name or password, unknown or existing user, the last user, the
last read-write user without --force, or a root that is not installed.";

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user (read-write unless --read-only)
    Add(UserAddArgs),
    /// Change a user's password
    Passwd(UserPasswdArgs),
    /// Remove a user (never the last one; the last read-write one only with --force)
    Remove(UserRemoveArgs),
    /// List the users and their roles
    List(UserRootArgs),
}

#[derive(Debug, Args)]
pub struct UserRootArgs {
    /// Registry root made by `airlift install`
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
}

#[derive(Debug, Args)]
pub struct UserAddArgs {
    #[command(flatten)]
    pub root: UserRootArgs,
    /// The user's name
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The user may pull but not push or delete
    #[arg(long)]
    pub read_only: bool,
    /// Read the password from FILE (else asked on a terminal, else generated and printed)
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UserPasswdArgs {
    #[command(flatten)]
    pub root: UserRootArgs,
    /// The user's name
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Read the password from FILE (else asked on a terminal, else generated and printed)
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UserRemoveArgs {
    #[command(flatten)]
    pub root: UserRootArgs,
    /// The user's name
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Remove the last read-write user too (nobody can push until one is added)
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Registry root (made by `airlift install` or `unpack --root`) to check
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Threads hashing blobs (default: one per core, at most 8); with --repair, also
    /// threads reading the bundle's chunks
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: Option<u16>,
    /// Restore missing and damaged blobs from the bundle in DIR
    #[arg(long, value_name = "DIR", requires = "key")]
    pub repair: Option<PathBuf>,
    /// Bundle name, when the --repair directory holds more than one
    #[arg(long, requires = "repair")]
    pub name: Option<String>,
    /// Trusted public key (minisign format) the --repair bundle must be signed with
    #[arg(long, value_name = "PUB", requires = "repair")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Registry root made by `airlift install`
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Listen address (default: the one in ROOT/config.json)
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// Refuse every write (push, delete)
    #[arg(long)]
    pub read_only: bool,
    /// Append the request log (JSON lines, see below) to FILE instead of stderr
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Remove upload sessions nothing was written to for this many seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub upload_expiry: u64,
    #[command(flatten)]
    pub limits: ServeLimitArgs,
}

const FSCK_HELP: &str = "\
Checks: every blob file hashes to its name; every manifest revision's record and document \
parse; every blob and child manifest it references is in the store, of the size its \
descriptor says, and linked into the repository; every tag names a manifest the repository \
holds; every link names a blob of the size it records. A child an index names that its \
repository does not hold at all is not damage (a bundle packed with --platform leaves other \
platforms out); it is counted as absent_children. Each problem names the file, the blob or \
tag, and the images it hurts (repository:tag and digest).

--repair DIR --key PUB restores missing and damaged blobs from the bundle in DIR: only their \
entries are read, verified against the signed manifest while read, and committed after their \
digest matched; the store is then checked again. What the bundle does not carry is reported \
and still fails the check.

Exit status: 0 nothing is damaged (after a repair: nothing is left); 1 something is damaged, \
or the --repair bundle fails its signature; 2 bad arguments, not a registry root, an \
unreadable file.";

/// The request log's format (serve --help, man page).
const SERVE_LOG_HELP: &str = "\
Request log: every answered request and every failed login is one JSON object a line, on
stderr or appended to --log FILE:
  {\"time\":\"2026-12-03T18:00:00Z\",\"event\":\"request\",\"client\":\"10.0.0.5:51234\",
   \"user\":\"admin\",\"method\":\"GET\",\"path\":\"/v2/app/manifests/v1\",\"status\":200,
   \"bytes\":1234,\"duration_ms\":3}
  {\"time\":\"…\",\"event\":\"login_failed\",\"client\":\"10.0.0.5:51234\",\"user\":\"admin\",
   \"reason\":\"wrong password\"}
time: RFC 3339 UTC; client: address:port; user: null without valid credentials; path: without
the query; bytes: the response body's length (null when streamed without one); duration_ms:
until the response started. Passwords and Authorization values are never logged. The
server's own events are JSON lines too (listening, purged, users_reloaded, warning); on stderr the
readiness line `listening on https://…` is the only other line.

Limits: unauthenticated connections are bounded per client address and overall (a share of
connections is kept for authenticated clients; the oldest idle unauthenticated connection is
closed to make room); handshakes and idle connections time out; a request body slower than
1 KiB/s over 30 s is answered 408; after 10 failed logins an address gets one try every 2 s
(429 with Retry-After meanwhile); open upload sessions are capped (100 per repository, 1000 in
all: 429 TOOMANYREQUESTS) and expire after --upload-expiry. A full disk is answered 507.";

/// Limits of `serve` that tests and tuning change (hidden: the defaults are the policy).
#[derive(Debug, Args)]
pub struct ServeLimitArgs {
    #[arg(long, hide = true, value_name = "N")]
    pub max_connections: Option<usize>,
    #[arg(long, hide = true, value_name = "N")]
    pub max_unauthenticated: Option<usize>,
    #[arg(long, hide = true, value_name = "N")]
    pub max_unauthenticated_per_client: Option<usize>,
    #[arg(long, hide = true, value_name = "SECONDS")]
    pub handshake_timeout: Option<u64>,
    #[arg(long, hide = true, value_name = "SECONDS")]
    pub idle_timeout: Option<u64>,
    #[arg(long, hide = true, value_name = "SECONDS")]
    pub unauthenticated_idle_timeout: Option<u64>,
    #[arg(long, hide = true, value_name = "BYTES")]
    pub body_min_rate: Option<u64>,
    #[arg(long, hide = true, value_name = "SECONDS")]
    pub body_window: Option<u64>,
    #[arg(long, hide = true, value_name = "N")]
    pub login_burst: Option<u32>,
    #[arg(long, hide = true, value_name = "SECONDS")]
    pub login_refill: Option<u64>,
    #[arg(long, hide = true, value_name = "N")]
    pub max_uploads: Option<usize>,
    #[arg(long, hide = true, value_name = "N")]
    pub max_uploads_per_repo: Option<usize>,
    #[arg(long, hide = true, value_name = "SECONDS")]
    pub temp_grace: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Filter a catalog's declarative config directory as pack would: print the bundles
    /// kept (package, name, version, image) and what filtering found; with --out, write
    /// the kept config (OUTDIR/PACKAGE/catalog.json)
    Filter(CatalogFilterArgs),
}

#[derive(Debug, Args)]
pub struct CatalogFilterArgs {
    /// A catalog's config directory (the image's /configs): *.json, *.yaml, .indexignore
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// oc-mirror image set file whose mirror.operators entry is applied
    #[arg(long, value_name = "IMAGESET.yaml")]
    pub config: PathBuf,
    /// The entry to apply, by its catalog (needed when the file lists several)
    #[arg(long, value_name = "REF")]
    pub catalog: Option<String>,
    /// Write the kept config into OUTDIR (one PACKAGE/catalog.json per package kept)
    #[arg(long, value_name = "OUTDIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Write man pages (airlift.1, airlift-pack.1, …) into DIR
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Print a completion script for SHELL to stdout
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}
