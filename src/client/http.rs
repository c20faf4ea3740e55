//! The blocking registry client: one per worker thread (each has its own connections and
//! I/O thread), sharing credentials, endpoints and tokens through [`Client::fork`].
//!
//! Every request goes through [`Client::send`]: authorisation (basic credentials or a
//! bearer token for the repository's pull scope, fetched again on a `401`), then
//! [`Client::execute`]: retries with backoff on transient failures.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::blocking::{RequestBuilder, Response};
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_RANGE, CONTENT_TYPE, RANGE, RETRY_AFTER};

use crate::client::auth::{Challenge, Credentials, Keyring, TokenResponse};
use crate::client::retry::{parse_retry_after, RetryPolicy};
use crate::digest::Digest;
use crate::error::{integrity, usage, Error, IoContext, Result};
use crate::oci::layout::BlobRef;
use crate::oci::names::{ImageRef, Reference};
use crate::oci::{self, MAX_MANIFEST};
use crate::progress::Progress;
use crate::store::{self, BlobStore, BlobWriter};
use crate::workers::lock;

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct Options {
    /// Credentials file; the default places are searched when absent.
    pub authfile: Option<PathBuf>,
    /// Directory of extra CA certificates (`*.crt`, PEM) trusted besides the system's.
    pub cert_dir: Option<PathBuf>,
    /// Verify TLS certificates; when false, certificates are not checked and a registry
    /// that does not speak TLS is reached over plain HTTP.
    pub tls_verify: bool,
    pub retry: RetryPolicy,
    /// Longest wait for response headers, or for the next bytes of a body.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            authfile: None,
            cert_dir: None,
            tls_verify: true,
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(60),
        }
    }
}

/// What a client did, summed over its forks.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct Stats {
    pub requests: u64,
    pub retries: u64,
    pub blobs: u64,
    pub bytes: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    retries: AtomicU64,
    blobs: AtomicU64,
    bytes: AtomicU64,
}

/// A registry as first contacted: the base URL that worked and how it asks for auth.
#[derive(Debug)]
struct Endpoint {
    base: String,
    challenge: Option<Challenge>,
}

struct Token {
    value: String,
    expires: Instant,
}

/// A token's key: (`realm service`, scope).
type TokenKey = (String, String);

struct Shared {
    options: Options,
    /// DER of every trusted root (system and `--cert-dir`).
    roots: Vec<Vec<u8>>,
    keyring: Keyring,
    endpoints: Mutex<HashMap<String, Arc<Endpoint>>>,
    tokens: Mutex<HashMap<TokenKey, Token>>,
    /// One lock per token key, held while that token is requested, so that workers
    /// refused at the same moment ask the token service once, not once each (and a slow
    /// answer for one scope holds up no other).
    token_requests: Mutex<HashMap<TokenKey, Arc<Mutex<()>>>>,
    counters: Counters,
}

pub struct Client {
    http: reqwest::blocking::Client,
    shared: Arc<Shared>,
}

/// A manifest or index as the registry sent it.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// Which failures `execute` tries again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    Never,
    /// Transient failures.
    Always,
    /// Transient failures except a refused connection: on first contact that means
    /// nothing listens there, and waiting out the backoff would only delay the error.
    NotRefused,
}

const BUF: usize = 256 << 10;
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;
const MAX_ERROR_BODY: u64 = 16 << 10;

impl Client {
    pub fn new(options: Options) -> Result<Client> {
        let mut roots = Vec::new();
        let native = rustls_native_certs::load_native_certs();
        roots.extend(native.certs.into_iter().map(|c| c.as_ref().to_vec()));
        if let Some(dir) = &options.cert_dir {
            roots.extend(cert_dir_roots(dir)?);
        }
        let keyring = Keyring::load(options.authfile.as_deref())?;
        let shared = Arc::new(Shared {
            options,
            roots,
            keyring,
            endpoints: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            token_requests: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        });
        Ok(Client { http: build_http(&shared)?, shared })
    }

    /// Another client sharing credentials, endpoints, tokens and counters, with its own
    /// connections (for a worker thread).
    pub fn fork(&self) -> Result<Client> {
        Ok(Client { http: build_http(&self.shared)?, shared: self.shared.clone() })
    }

    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        Stats {
            requests: c.requests.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            blobs: c.blobs.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn policy(&self) -> RetryPolicy {
        self.shared.options.retry
    }

    /// Send a request, retrying transient failures. Connection errors that are not
    /// transient (name resolution, certificates) fail at once.
    fn execute(
        &self,
        image: &ImageRef,
        what: &str,
        build: &dyn Fn() -> RequestBuilder,
        retry: Retry,
    ) -> Result<Response> {
        self.retrying(build, retry).map_err(|text| unreachable(image, what, &text, self.shared.options.tls_verify))
    }

    /// Send the request built by `build`, trying again as `retry` allows; a request that
    /// got no response ends with the text of its error.
    fn retrying(&self, build: &dyn Fn() -> RequestBuilder, retry: Retry) -> std::result::Result<Response, String> {
        let counters = &self.shared.counters;
        let mut tries = self.policy().tries().counting(&counters.retries);
        loop {
            counters.requests.fetch_add(1, Ordering::Relaxed);
            match build().send() {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    if retry != Retry::Never && RetryPolicy::retryable(status) {
                        let after =
                            resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
                        if tries.again(after) {
                            continue;
                        }
                    }
                    return Ok(resp);
                }
                Err(e) => {
                    let text = error_chain(&e);
                    let refused_first = retry == Retry::NotRefused && text.to_ascii_lowercase().contains("refused");
                    if retry != Retry::Never && !refused_first && transient(&e, &text) && tries.again(None) {
                        continue;
                    }
                    return Err(text);
                }
            }
        }
    }

    /// `GET url` outside any registry (an update service's graph or graph-data, a release
    /// signature store) with `accept`, through the same TLS settings and retries (a refused
    /// connection is not retried: nothing listens there): the body, at most `limit` bytes,
    /// or `None` on `404`. Errors name `what` and the URL.
    pub fn get_url(&self, url: &str, accept: &str, what: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let resp = self
            .retrying(&|| self.http.get(url).header(ACCEPT, accept), Retry::NotRefused)
            .map_err(|text| usage(format!("{url}: cannot fetch {what}: {text}")))?;
        let status = resp.status();
        if status.as_u16() == 404 {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(usage(format!("{url}: {what}: the server answered {status}")));
        }
        read_body(resp, limit).map(Some).map_err(|e| usage(format!("{url}: {what}: {e}")))
    }

    /// [`get_url`](Client::get_url) of a document that must be there: a `404` is an error.
    pub fn get_document(&self, url: &str, accept: &str, limit: u64, what: &str) -> Result<Vec<u8>> {
        self.get_url(url, accept, what, limit)?
            .ok_or_else(|| usage(format!("{url}: {what}: the server answered 404 Not Found")))
    }

    /// The registry's endpoint, contacting it (`GET /v2/`) the first time.
    fn endpoint(&self, image: &ImageRef) -> Result<Arc<Endpoint>> {
        let mut map = lock(&self.shared.endpoints);
        if let Some(e) = map.get(&image.registry) {
            return Ok(e.clone());
        }
        let host = image.endpoint();
        let https = format!("https://{host}");
        let endpoint = if self.shared.options.tls_verify {
            Endpoint { challenge: self.ping(image, &https, Retry::NotRefused)?, base: https }
        } else {
            // Without TLS verification a registry may also be plain HTTP: try TLS once.
            match self.ping(image, &https, Retry::Never) {
                Ok(challenge) => Endpoint { challenge, base: https },
                Err(tls_error) => {
                    let http = format!("http://{host}");
                    match self.ping(image, &http, Retry::NotRefused) {
                        Ok(challenge) => Endpoint { challenge, base: http },
                        Err(_) => return Err(tls_error),
                    }
                }
            }
        };
        let endpoint = Arc::new(endpoint);
        map.insert(image.registry.clone(), endpoint.clone());
        Ok(endpoint)
    }

    fn ping(&self, image: &ImageRef, base: &str, retry: Retry) -> Result<Option<Challenge>> {
        let url = format!("{base}/v2/");
        let resp = self.execute(image, "contacting the registry", &|| self.http.get(&url), retry)?;
        let status = resp.status().as_u16();
        match status {
            200..=299 => Ok(None),
            401 => Ok(Some(challenge_of(resp.headers()).unwrap_or(Challenge::Basic))),
            _ => Err(usage(format!(
                "{image}: {url} answered {status}{}: is {} a registry (distribution API v2)?",
                error_detail(resp),
                image.endpoint()
            ))),
        }
    }

    fn credentials(&self, image: &ImageRef) -> Option<(&Credentials, &Path)> {
        self.shared.keyring.lookup(&image.registry, image.repository.as_str())
    }

    /// The `Authorization` value for a request, if the registry wants one.
    fn authorization(
        &self,
        image: &ImageRef,
        challenge: Option<&Challenge>,
        rejected: Option<&str>,
        wanted: Option<&str>,
    ) -> Result<Option<String>> {
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => match self.credentials(image) {
                Some((c, _)) => Ok(Some(basic(c))),
                None => Err(usage(format!(
                    "{image}: registry {} requires credentials and none were found for it ({})",
                    image.registry,
                    self.where_credentials_come_from()
                ))),
            },
            Some(Challenge::Bearer { realm, service, scope }) => {
                let own = format!("repository:{}:pull", image.repository);
                let scope = match wanted {
                    Some(w) => w.to_string(),
                    None => scope.clone().filter(|s| s.contains(image.repository.as_str())).unwrap_or(own),
                };
                let token = self.token(image, realm, service.as_deref(), &scope, rejected)?;
                Ok(Some(format!("Bearer {token}")))
            }
        }
    }

    fn where_credentials_come_from(&self) -> String {
        match &self.shared.options.authfile {
            Some(p) => format!("--authfile {}", p.display()),
            None => "give them with --authfile FILE (auth.json, docker config.json or a pull secret), or \
                     in $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json or ~/.docker/config.json"
                .into(),
        }
    }

    /// A bearer token for `scope`: the cached one unless it expired or is the one the
    /// registry just `rejected`, else a new one from the token service.
    fn token(
        &self,
        image: &ImageRef,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        rejected: Option<&str>,
    ) -> Result<String> {
        let key = (format!("{realm} {}", service.unwrap_or("")), scope.to_string());
        let cached = || {
            lock(&self.shared.tokens)
                .get(&key)
                .filter(|t| t.expires > Instant::now() && Some(t.value.as_str()) != rejected)
                .map(|t| t.value.clone())
        };
        if let Some(t) = cached() {
            return Ok(t);
        }
        let request = lock(&self.shared.token_requests).entry(key.clone()).or_default().clone();
        let _one_at_a_time = lock(&request);
        // Another worker may have got a new one while this one waited.
        if let Some(t) = cached() {
            return Ok(t);
        }
        let parsed = self.request_token(image, realm, service, scope)?;
        let value = parsed
            .value()
            .ok_or_else(|| usage(format!("{image}: the token service {realm} sent neither token nor access_token")))?
            .to_string();
        let expires = Instant::now() + Duration::from_secs(parsed.lifetime());
        lock(&self.shared.tokens).insert(key, Token { value: value.clone(), expires });
        Ok(value)
    }

    /// Ask the token service at `realm` for a token for `scope`, with the credentials for
    /// `image`'s registry when there are any (over HTTPS only, unless TLS is not verified).
    fn request_token(
        &self,
        image: &ImageRef,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<TokenResponse> {
        let url = token_url(image, realm, service, scope)?;
        let creds = self.credentials(image).map(|(c, _)| c.clone());
        if creds.is_some() && url.scheme() != "https" && self.shared.options.tls_verify {
            return Err(usage(format!(
                "{image}: the token service {realm} is not HTTPS; airlift sends credentials to it only with \
                 --tls-verify=false"
            )));
        }
        let resp = self.execute(
            image,
            "getting a token",
            &|| {
                let rb = self.http.get(url.clone());
                match &creds {
                    Some(c) => rb.basic_auth(&c.username, Some(&c.password)),
                    None => rb,
                }
            },
            Retry::Always,
        )?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(usage(match &creds {
                Some(c) => format!(
                    "{image}: the token service {realm} rejected the credentials of user '{}' ({status})",
                    c.username
                ),
                None => format!(
                    "{image}: the token service {realm} requires credentials ({status}); {}",
                    self.where_credentials_come_from()
                ),
            }));
        }
        if !resp.status().is_success() {
            return Err(usage(format!("{image}: the token service {realm} answered {status}{}", error_detail(resp))));
        }
        let body = read_body(resp, MAX_TOKEN_RESPONSE)
            .map_err(|e| usage(format!("{image}: reading the token from {realm}: {e}")))?;
        serde_json::from_slice(&body)
            .map_err(|e| usage(format!("{image}: the token service {realm} sent no JSON token: {e}")))
    }

    /// An authorised request to the registry of `image`: `build` gets the HTTP client and
    /// the base URL (`https://host:port`). A `401` gets a fresh token (or the challenge
    /// the response carries) and one more try.
    pub fn send(
        &self,
        image: &ImageRef,
        what: &str,
        build: &dyn Fn(&reqwest::blocking::Client, &str) -> RequestBuilder,
    ) -> Result<Response> {
        self.send_scoped(image, what, None, build)
    }

    /// [`Client::send`] with the bearer-token scope to ask for (default: pull access to
    /// the image's repository); pushes ask for `pull,push`, mounts also for the source.
    pub fn send_scoped(
        &self,
        image: &ImageRef,
        what: &str,
        scope: Option<&str>,
        build: &dyn Fn(&reqwest::blocking::Client, &str) -> RequestBuilder,
    ) -> Result<Response> {
        let endpoint = self.endpoint(image)?;
        let mut challenge = endpoint.challenge.clone();
        // After a `401`: the token it refused ("" when it was no token).
        let mut rejected: Option<String> = None;
        loop {
            let auth = self.authorization(image, challenge.as_ref(), rejected.as_deref(), scope)?;
            let resp = self.execute(
                image,
                what,
                &|| {
                    let rb = build(&self.http, &endpoint.base);
                    match &auth {
                        Some(a) => rb.header(AUTHORIZATION, a),
                        None => rb,
                    }
                },
                Retry::Always,
            )?;
            if resp.status().as_u16() != 401 {
                return Ok(resp);
            }
            let offered = challenge_of(resp.headers());
            if rejected.is_none() && (offered.is_some() || matches!(challenge, Some(Challenge::Bearer { .. }))) {
                if offered.is_some() {
                    challenge = offered;
                }
                let token = auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
                rejected = Some(token.to_string());
                continue;
            }
            return Err(usage(match (self.credentials(image), auth.is_some()) {
                (Some((c, p)), true) => format!(
                    "{image}: registry {} rejected the credentials of user '{}' (from {}) while {what}",
                    image.registry,
                    c.username,
                    p.display()
                ),
                _ => format!(
                    "{image}: registry {} requires authentication while {what}; {}",
                    image.registry,
                    self.where_credentials_come_from()
                ),
            }));
        }
    }

    /// Fetch a manifest or index by tag or digest, checking its digest.
    pub fn manifest(&self, image: &ImageRef, reference: &Reference) -> Result<Manifest> {
        let what = format!("fetching manifest {reference}");
        let accept = [
            oci::OCI_MANIFEST,
            oci::OCI_INDEX,
            oci::DOCKER_MANIFEST,
            oci::DOCKER_LIST,
            oci::DOCKER_SCHEMA1_SIGNED,
            oci::DOCKER_SCHEMA1,
        ]
        .join(", ");
        let path = format!("/v2/{}/manifests/{reference}", image.repository);
        let mut tries = self.policy().tries().counting(&self.shared.counters.retries);
        let (bytes, content_type, header_digest) = loop {
            let resp =
                self.send(image, &what, &|http, base| http.get(format!("{base}{path}")).header(ACCEPT, &accept))?;
            let status = resp.status().as_u16();
            if status == 404 {
                return Err(usage(format!(
                    "{image}: manifest unknown: {} has no image {reference} in repository {}{}",
                    image.registry,
                    image.repository,
                    error_detail(resp)
                )));
            }
            if !resp.status().is_success() {
                return Err(usage(format!("{image}: {what}: the registry answered {status}{}", error_detail(resp))));
            }
            let content_type = header(resp.headers(), CONTENT_TYPE.as_str()).map(media_type_of);
            let header_digest = header(resp.headers(), "docker-content-digest");
            match read_body(resp, MAX_MANIFEST) {
                Ok(b) => break (b, content_type, header_digest),
                Err(e) if e.kind() != std::io::ErrorKind::InvalidData && tries.again(None) => {}
                Err(e) => return Err(usage(format!("{image}: {what}: {e}"))),
            }
        };
        let digest = Digest::of(&bytes);
        if let Reference::Digest(want) = reference {
            if &digest != want {
                return Err(integrity(format!(
                    "{image}: the registry sent manifest bytes whose digest is {digest}, not the {want} asked for"
                )));
            }
        }
        if let Some(h) = header_digest {
            if h.starts_with("sha256:") && h != digest.to_string() {
                return Err(integrity(format!(
                    "{image}: manifest {reference}: Docker-Content-Digest says {h}, the bytes are {digest}"
                )));
            }
        }
        let media_type = manifest_media_type(content_type.as_deref(), &bytes)
            .map_err(|e| usage(format!("{image}: manifest {reference}: {e}")))?;
        Ok(Manifest { bytes, media_type, digest })
    }

    /// Whether the registry holds a manifest or index under `reference` (a `HEAD`).
    pub fn has_manifest(&self, image: &ImageRef, reference: &Reference) -> Result<bool> {
        let what = format!("looking for manifest {reference}");
        let accept = [oci::OCI_MANIFEST, oci::OCI_INDEX, oci::DOCKER_MANIFEST, oci::DOCKER_LIST].join(", ");
        let path = format!("/v2/{}/manifests/{reference}", image.repository);
        let resp = self.send(image, &what, &|http, base| http.head(format!("{base}{path}")).header(ACCEPT, &accept))?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            status => Err(usage(format!("{image}: {what}: the registry answered {status}"))),
        }
    }

    /// The OCI 1.1 referrers of manifest `subject` (an image index), or `None` when the
    /// registry has no referrers API (it answers `404`, as distribution 2.8 does).
    pub fn referrers(&self, image: &ImageRef, subject: &Digest) -> Result<Option<Vec<u8>>> {
        let what = format!("listing the referrers of {subject}");
        let path = format!("/v2/{}/referrers/{subject}", image.repository);
        let resp =
            self.send(image, &what, &|http, base| http.get(format!("{base}{path}")).header(ACCEPT, oci::OCI_INDEX))?;
        match resp.status().as_u16() {
            200 => read_body(resp, MAX_MANIFEST).map(Some).map_err(|e| usage(format!("{image}: {what}: {e}"))),
            404 | 405 => Ok(None),
            status => Err(usage(format!("{image}: {what}: the registry answered {status}{}", error_detail(resp)))),
        }
    }

    /// Fetch a blob into `store`, verifying size and digest while streaming; a dropped
    /// transfer resumes with `Range` from the bytes already received.
    pub fn fetch_blob(
        &self,
        image: &ImageRef,
        blob: &BlobRef,
        store: &BlobStore,
        progress: &dyn Progress,
    ) -> Result<()> {
        let what = format!("fetching blob {}", blob.digest);
        let wrong_content = |found: store::Written| {
            integrity(format!(
                "{image}: blob {} from {} has digest {}: the registry sent wrong content",
                blob.digest, image.registry, found.digest
            ))
        };
        // What an earlier, cut-off fetch left is resumed from (and hashed first).
        let mut out = store.resume(&blob.digest, blob.size)?;
        if out.complete() {
            return out.commit(wrong_content);
        }
        let mut tries = self.policy().tries().counting(&self.shared.counters.retries);
        let mut resumed = out.written() > 0;
        let mut restarted_after_mismatch = false;
        if out.written() == blob.size {
            // Whole yet wrong: start over.
            restarted_after_mismatch = true;
            out.restart()?;
        }
        let mut buf = vec![0u8; BUF];
        loop {
            let Some(mut resp) = self.blob_response(image, blob, &what, &mut out)? else { continue };
            resumed |= resp.status().as_u16() == 206;
            // Stream the body; a read error or an early end is a drop, resumed from `have`.
            let before = out.written();
            if let Some(reason) = self.stream_blob(image, blob, &mut resp, &mut out, &mut buf, progress)? {
                if out.written() > before {
                    // Bytes arrived since the last drop: this drop is the first of a new count.
                    tries.restart();
                }
                if !tries.again(None) {
                    // Keep what arrived for the next run to resume from.
                    out.keep()?;
                    return Err(usage(format!("{image}: {what}: {reason} (gave up after {} tries)", tries.failed())));
                }
                continue;
            }
            if !out.complete() && resumed && !restarted_after_mismatch {
                // A registry (or proxy) that got a range wrong: fetch it whole once.
                restarted_after_mismatch = true;
                resumed = false;
                out.restart()?;
                continue;
            }
            out.commit(wrong_content)?;
            self.shared.counters.blobs.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
    }

    /// Ask for the rest of `blob` (from what `out` holds, with `Range`); the response to
    /// stream, or `None` to ask again (`out` was started over: the registry answered
    /// another range).
    fn blob_response(
        &self,
        image: &ImageRef,
        blob: &BlobRef,
        what: &str,
        out: &mut BlobWriter,
    ) -> Result<Option<Response>> {
        let path = format!("/v2/{}/blobs/{}", image.repository, blob.digest);
        let have = out.written();
        let range = (have > 0).then(|| format!("bytes={have}-"));
        let resp = self.send(image, what, &|http, base| {
            let rb = http.get(format!("{base}{path}"));
            match &range {
                Some(r) => rb.header(RANGE, r),
                None => rb,
            }
        })?;
        let status = resp.status().as_u16();
        match status {
            206 if have > 0 => {
                let start = header(resp.headers(), CONTENT_RANGE.as_str()).and_then(|v| content_range_start(&v));
                if start != Some(have) {
                    out.restart()?;
                    return Ok(None);
                }
            }
            200 => {
                if have > 0 {
                    // The registry ignored the range: start over.
                    out.restart()?;
                }
            }
            404 => {
                return Err(usage(format!(
                    "{image}: blob {} is not in repository {} of {}{}",
                    blob.digest,
                    image.repository,
                    image.registry,
                    error_detail(resp)
                )))
            }
            _ => return Err(usage(format!("{image}: {what}: the registry answered {status}{}", error_detail(resp)))),
        }
        Ok(Some(resp))
    }

    /// Stream a blob response into `out`; why it was cut off, if it was (to be resumed).
    fn stream_blob(
        &self,
        image: &ImageRef,
        blob: &BlobRef,
        resp: &mut Response,
        out: &mut BlobWriter,
        buf: &mut [u8],
        progress: &dyn Progress,
    ) -> Result<Option<String>> {
        loop {
            let n = match resp.read(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Ok(Some(e.to_string())),
            };
            let have = out.written();
            if n == 0 {
                return Ok((have < blob.size).then(|| format!("the body ended after {have} of {} bytes", blob.size)));
            }
            if have + n as u64 > blob.size {
                return Err(integrity(format!(
                    "{image}: blob {} is larger than the {} bytes its descriptor says",
                    blob.digest, blob.size
                )));
            }
            out.write_all(&buf[..n])?;
            self.shared.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
            progress.advance(n as u64);
        }
    }
}

fn build_http(shared: &Shared) -> Result<reqwest::blocking::Client> {
    let mut b = reqwest::blocking::Client::builder()
        .user_agent(concat!("airlift/", env!("CARGO_PKG_VERSION")))
        .timeout(shared.options.timeout)
        .connect_timeout(Duration::from_secs(30))
        .tls_built_in_root_certs(false);
    for der in &shared.roots {
        // A system certificate rustls cannot use is skipped, as every TLS client does.
        if let Ok(c) = reqwest::Certificate::from_der(der) {
            b = b.add_root_certificate(c);
        }
    }
    if !shared.options.tls_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build().map_err(|e| usage(format!("setting up the HTTP client: {}", error_chain(&e))))
}

/// The DER certificates of every `*.crt` file in `dir` (PEM, one or more each).
fn cert_dir_roots(dir: &Path) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .at(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    files.sort();
    for f in files {
        let pem = std::fs::read(&f).at(&f)?;
        let mut found = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| usage(format!("--cert-dir: {}: not a PEM certificate: {e}", f.display())))?;
            out.push(cert.as_ref().to_vec());
            found += 1;
        }
        if found == 0 {
            return Err(usage(format!("--cert-dir: {} holds no PEM certificate", f.display())));
        }
    }
    Ok(out)
}

/// The token service's URL for `service` and `scope` (one `scope` pair per scope).
fn token_url(image: &ImageRef, realm: &str, service: Option<&str>, scope: &str) -> Result<reqwest::Url> {
    let mut url = reqwest::Url::parse(realm)
        .map_err(|e| usage(format!("{image}: the registry's token service '{realm}' is not a URL: {e}")))?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(s) = service {
            q.append_pair("service", s);
        }
        for s in scope.split(' ').filter(|s| !s.is_empty()) {
            q.append_pair("scope", s);
        }
    }
    Ok(url)
}

fn basic(c: &Credentials) -> String {
    use base64::Engine as _;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password)))
}

pub(crate) fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// The preferred challenge of a response: bearer over basic.
fn challenge_of(headers: &HeaderMap) -> Option<Challenge> {
    let all: Vec<Challenge> = headers
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(Challenge::parse)
        .collect();
    all.iter().find(|c| matches!(c, Challenge::Bearer { .. })).or(all.first()).cloned()
}

fn media_type_of(content_type: String) -> String {
    content_type.split(';').next().unwrap_or("").trim().to_string()
}

/// The media type of manifest bytes: the `Content-Type` when it names a manifest type,
/// else the body's `mediaType`, else its shape. Schema1 is refused.
fn manifest_media_type(content_type: Option<&str>, bytes: &[u8]) -> std::result::Result<String, String> {
    let schema1 = |mt: &str| mt == oci::DOCKER_SCHEMA1 || mt == oci::DOCKER_SCHEMA1_SIGNED;
    let doc: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the registry sent a manifest that is not JSON: {e}"))?;
    let (body_type, implied) = match oci::doc_type(&doc) {
        oci::DocType::Named(t) => (Some(t), None),
        oci::DocType::Implied(t) => (None, Some(t)),
        oci::DocType::Unknown => (None, None),
    };
    if content_type.is_some_and(schema1)
        || body_type.is_some_and(schema1)
        || doc.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1)
    {
        return Err("this is a Docker schema1 manifest, which airlift does not carry (it is deprecated and \
                    unsigned content-wise); push the image again with a current client to get schema2 or OCI"
            .into());
    }
    let known = |mt: &str| oci::is_index(mt) || oci::is_manifest(mt);
    if let Some(ct) = content_type.filter(|ct| known(ct)) {
        if let Some(bt) = body_type.filter(|bt| *bt != ct) {
            return Err(format!("Content-Type says {ct}, the manifest says {bt}"));
        }
        return Ok(ct.to_string());
    }
    match (body_type, implied) {
        (Some(bt), _) if known(bt) => Ok(bt.to_string()),
        (Some(bt), _) => Err(format!("unsupported manifest media type {bt}")),
        (None, Some(t)) => Ok(t.to_string()),
        (None, None) => Err(format!(
            "unsupported manifest (Content-Type {})",
            content_type.filter(|c| !c.is_empty()).unwrap_or("missing")
        )),
    }
}

/// `bytes START-END/TOTAL` → START
fn content_range_start(v: &str) -> Option<u64> {
    v.trim().strip_prefix("bytes ")?.split('-').next()?.trim().parse().ok()
}

/// Read a whole body of at most `limit` bytes (`InvalidData` when larger).
pub(crate) fn read_body(resp: Response, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    resp.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {limit} bytes")));
    }
    Ok(bytes)
}

/// ` (CODE: message)` from a distribution error envelope, or nothing.
pub(crate) fn error_detail(resp: Response) -> String {
    let Ok(body) = read_body(resp, MAX_ERROR_BODY) else { return String::new() };
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&body) else { return String::new() };
    let errors = doc.get("errors").and_then(|e| e.as_array()).cloned().unwrap_or_default();
    let parts: Vec<String> = errors
        .iter()
        .map(|e| {
            let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
            let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
            format!("{code}: {msg}").trim_matches([' ', ':']).to_string()
        })
        .filter(|s| !s.is_empty())
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join("; "))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        source = c.source();
    }
    s
}

/// Whether a failed request may succeed if tried again: not when the name does not
/// resolve or the certificate is refused.
fn transient(e: &reqwest::Error, text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let permanent = ["dns error", "no record found", "certificate", "invalid peer", "unknownissuer", "builder error"];
    (e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()) && !permanent.iter().any(|p| lower.contains(p))
}

fn unreachable(image: &ImageRef, what: &str, text: &str, tls_verify: bool) -> Error {
    let lower = text.to_ascii_lowercase();
    let hint = if lower.contains("dns error") || lower.contains("no record found") {
        format!(" (unknown host {}?)", image.endpoint())
    } else if tls_verify && (lower.contains("certificate") || lower.contains("unknownissuer")) {
        " (trust the registry's CA with --cert-dir DIR holding its .crt, or use --tls-verify=false)".to_string()
    } else {
        String::new()
    };
    usage(format!("{image}: cannot reach registry {} while {what}: {text}{hint}", image.endpoint()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_from_header_or_body() {
        let m =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        assert_eq!(manifest_media_type(Some(oci::OCI_MANIFEST), m).unwrap(), oci::OCI_MANIFEST);
        assert_eq!(manifest_media_type(Some("application/json"), m).unwrap(), oci::OCI_MANIFEST);
        assert!(manifest_media_type(Some(oci::DOCKER_MANIFEST), m).is_err());
        let bare = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(manifest_media_type(None, bare).unwrap(), oci::OCI_INDEX);
        assert_eq!(manifest_media_type(Some(oci::DOCKER_LIST), bare).unwrap(), oci::DOCKER_LIST);
        let s1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        assert!(manifest_media_type(Some(oci::DOCKER_SCHEMA1_SIGNED), s1).unwrap_err().contains("schema1"));
        assert!(manifest_media_type(Some("application/json"), s1).unwrap_err().contains("schema1"));
        assert!(manifest_media_type(None, b"{}").is_err());
        assert!(manifest_media_type(None, b"<html>").is_err());
    }

    #[test]
    fn content_ranges() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes */200"), None);
        assert_eq!(content_range_start("items 1-2/3"), None);
    }
}
