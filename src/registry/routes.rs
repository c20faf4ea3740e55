//! The HTTP surface: one catch-all `/v2/{*rest}` route. A request is authenticated, its
//! path parsed into a [`Route`] (see `names.rs`), writes are refused in read-only mode,
//! and a thin handler answers it; every error becomes the OCI envelope in one place
//! (`errors.rs`). Every answer is logged (`log.rs`); failed logins are logged and limited
//! per client address (`gate.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::HttpBody as _;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;

use super::auth::{self, Credentials, Htpasswd, Verdict};
use super::errors::{ApiError, Code};
use super::gate::{Conn, LoginLimiter};
use super::handlers::{blobs, listing, manifests, uploads};
use super::limits::Limits;
use super::log::{Log, RequestLine};
use super::names::{parse_route, Route, UploadId};
use super::storage::Storage;
use super::users::Role;

/// What every handler shares.
pub struct App {
    pub storage: Storage,
    /// The users, reloaded when their files change.
    pub auth: Arc<Credentials>,
    pub read_only: bool,
    /// Running hashes of upload sessions, so closing one does not re-read its bytes.
    pub uploads: Mutex<HashMap<UploadId, uploads::Slot>>,
    pub limits: Limits,
    pub log: Log,
    pub logins: LoginLimiter,
}

impl App {
    /// An app with the default limits that logs nothing (router tests).
    pub fn new(storage: Storage, auth: Htpasswd, read_only: bool) -> Arc<App> {
        App::with(storage, Credentials::fixed(auth), read_only, Limits::default(), Log::Discard)
    }

    pub fn with(storage: Storage, auth: Credentials, read_only: bool, limits: Limits, log: Log) -> Arc<App> {
        Arc::new(App {
            storage,
            auth: Arc::new(auth),
            read_only,
            uploads: Mutex::new(HashMap::new()),
            logins: LoginLimiter::new(&limits),
            limits,
            log,
        })
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/v2", any(dispatch))
        .route("/v2/", any(dispatch))
        .route("/v2/{*rest}", any(dispatch))
        .fallback(|| async { ApiError::not_found() })
        .with_state(app)
}

/// Query parameters of a request.
pub type Params = HashMap<String, String>;

async fn dispatch(State(app): State<Arc<App>>, req: Request) -> Response {
    let start = Instant::now();
    let conn = req.extensions().get::<Conn>().cloned();
    let (method, path) = (req.method().to_string(), req.uri().path().to_string());
    let mut user = None;
    let mut response = match handle(&app, req, conn.as_ref(), &mut user).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    response.headers_mut().insert("Docker-Distribution-API-Version", HeaderValue::from_static("registry/2.0"));
    let bytes = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .or_else(|| response.body().size_hint().exact());
    app.log.request(&RequestLine {
        client: conn.map(|c| c.peer),
        user: user.as_deref(),
        method: &method,
        path: &path,
        status: response.status().as_u16(),
        bytes,
        duration: start.elapsed(),
    });
    response
}

/// Check the credentials of a request: a client address with too many failed logins is
/// answered 429 without a password check (credentials verified before still pass).
/// The user files are looked at first, so an edit counts from the next request on.
async fn authenticate(
    app: &App,
    authorization: Option<String>,
    conn: Option<&Conn>,
) -> Result<(String, Role), ApiError> {
    let client = conn.map(|c| c.peer);
    auth::reload_if_changed(&app.auth, &app.log).await;
    let users = app.auth.current();
    if let Some(Verdict::User { name, role }) = users.cached(authorization.as_deref()) {
        return Ok((name, role));
    }
    if let (Some(wait), Some(_)) = (client.and_then(|c| app.logins.blocked(c.ip())), &authorization) {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        return Err(ApiError::new(Code::TooManyRequests, "too many failed logins from this address: try again later")
            .with_header(header::RETRY_AFTER, super::handlers::value(secs.to_string())));
    }
    match auth::verdict(&users, authorization).await {
        Verdict::User { name, role } => Ok((name, role)),
        Verdict::Anonymous => Err(ApiError::unauthorized()),
        Verdict::Failed { user, unknown } => {
            app.log.login_failed(client, &user, if unknown { "unknown user" } else { "wrong password" });
            if let Some(c) = client {
                app.logins.failed(c.ip());
            }
            Err(ApiError::unauthorized())
        }
    }
}

async fn handle(
    app: &Arc<App>,
    req: Request,
    conn: Option<&Conn>,
    user: &mut Option<String>,
) -> Result<Response, ApiError> {
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (name, role) = authenticate(app, authorization, conn).await?;
    if let Some(c) = conn {
        c.ticket.authenticated();
    }
    *user = Some(name.clone());
    let app = Arc::clone(app);
    let route = parse_route(req.uri().path())?;
    let params: Params = Query::try_from_uri(req.uri()).map(|Query(q)| q).unwrap_or_default();
    let method = req.method().clone();
    if app.read_only && method != Method::GET && method != Method::HEAD {
        return Err(ApiError::read_only());
    }
    if !auth::allows(role, &method) {
        return Err(ApiError::new(Code::Denied, format!("user {name} is read-only: it may pull, not push or delete")));
    }
    let head = method == Method::HEAD;
    match (route, method) {
        (Route::Base, Method::GET | Method::HEAD) => {
            Ok(super::handlers::json(&serde_json::json!({}), "application/json"))
        }
        (Route::Catalog, Method::GET) => listing::catalog(app, params).await,
        (Route::Tags(repo), Method::GET) => listing::tags(app, repo, params).await,
        (Route::Referrers(repo, subject), Method::GET) => listing::referrers(app, repo, subject, params).await,
        (Route::Manifest(repo, r), Method::GET | Method::HEAD) => manifests::get(app, repo, r, head).await,
        (Route::Manifest(repo, r), Method::PUT) => manifests::put(app, repo, r, req).await,
        (Route::Manifest(repo, r), Method::DELETE) => manifests::delete(app, repo, r).await,
        (Route::Blob(repo, d), Method::GET | Method::HEAD) => blobs::get(app, repo, d, req.headers(), head).await,
        (Route::Blob(repo, d), Method::DELETE) => blobs::delete(app, repo, d).await,
        (Route::UploadStart(repo), Method::POST) => uploads::start(app, repo, params, req).await,
        (Route::Upload(repo, id), Method::GET) => uploads::status(app, repo, id).await,
        (Route::Upload(repo, id), Method::PATCH) => uploads::patch(app, repo, id, req).await,
        (Route::Upload(repo, id), Method::PUT) => uploads::finish(app, repo, id, params, req).await,
        (Route::Upload(repo, id), Method::DELETE) => uploads::cancel(app, repo, id).await,
        _ => Err(ApiError::method_not_allowed()),
    }
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
