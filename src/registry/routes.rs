//! The HTTP surface: one catch-all `/v2/{*rest}` route. A request is authenticated, its
//! path parsed into a [`Route`] (see `names.rs`), writes are refused in read-only mode,
//! and a thin handler answers it; every error becomes the OCI envelope in one place
//! (`errors.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;

use super::auth::{self, Htpasswd};
use super::errors::ApiError;
use super::handlers::{blobs, listing, manifests, uploads};
use super::names::{parse_route, Route, UploadId};
use super::storage::Storage;

/// What every handler shares.
pub struct App {
    pub storage: Storage,
    pub auth: Arc<Htpasswd>,
    pub read_only: bool,
    /// Running hashes of upload sessions, so closing one does not re-read its bytes.
    pub uploads: Mutex<HashMap<UploadId, uploads::Slot>>,
}

impl App {
    pub fn new(storage: Storage, auth: Htpasswd, read_only: bool) -> Arc<App> {
        Arc::new(App { storage, auth: Arc::new(auth), read_only, uploads: Mutex::new(HashMap::new()) })
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
    let mut response = match handle(app, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    response.headers_mut().insert("Docker-Distribution-API-Version", HeaderValue::from_static("registry/2.0"));
    response
}

async fn handle(app: Arc<App>, req: Request) -> Result<Response, ApiError> {
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    if !auth::authorized(&app.auth, authorization).await {
        return Err(ApiError::unauthorized());
    }
    let route = parse_route(req.uri().path())?;
    let params: Params = Query::try_from_uri(req.uri()).map(|Query(q)| q).unwrap_or_default();
    let method = req.method().clone();
    if app.read_only && method != Method::GET && method != Method::HEAD {
        return Err(ApiError::read_only());
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
