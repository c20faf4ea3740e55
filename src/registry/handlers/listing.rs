//! Content discovery: `/v2/<name>/tags/list`, `/v2/_catalog` (both with `n`/`last`
//! pagination and a `Link` header), `/v2/<name>/referrers/<digest>`.

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::response::Response;

use super::{blocking, json, value, FILTERS_APPLIED};
use crate::digest::Digest;
use crate::oci::names::Repository;
use crate::oci::OCI_INDEX;
use crate::registry::errors::ApiError;
use crate::registry::routes::{App, Params};

/// One page of a sorted list: the entries after `last`, at most `n`, and whether more follow.
pub fn page(all: Vec<String>, params: &Params) -> (Vec<String>, bool) {
    let n = params.get("n").and_then(|n| n.parse::<usize>().ok());
    let mut items: Vec<String> = match params.get("last") {
        Some(last) => all.into_iter().filter(|t| t.as_str() > last.as_str()).collect(),
        None => all,
    };
    match n {
        Some(n) if items.len() > n => {
            items.truncate(n);
            (items, n > 0)
        }
        _ => (items, false),
    }
}

fn with_link(mut r: Response, more: bool, path: &str, items: &[String], params: &Params) -> Response {
    if let (true, Some(last), Some(n)) = (more, items.last(), params.get("n")) {
        r.headers_mut().insert(header::LINK, value(format!("<{path}?n={n}&last={last}>; rel=\"next\"")));
    }
    r
}

pub async fn tags(app: Arc<App>, repo: Repository, params: Params) -> Result<Response, ApiError> {
    let name = repo.to_string();
    let all = blocking(move || Ok(app.storage.tags(&repo)?)).await?;
    let (tags, more) = page(all, &params);
    let r = json(&serde_json::json!({ "name": name, "tags": tags }), "application/json");
    Ok(with_link(r, more, &format!("/v2/{name}/tags/list"), &tags, &params))
}

pub async fn catalog(app: Arc<App>, params: Params) -> Result<Response, ApiError> {
    let all = blocking(move || Ok(app.storage.catalog()?)).await?;
    let (repos, more) = page(all, &params);
    let r = json(&serde_json::json!({ "repositories": repos }), "application/json");
    Ok(with_link(r, more, "/v2/_catalog", &repos, &params))
}

pub async fn referrers(app: Arc<App>, repo: Repository, subject: Digest, params: Params) -> Result<Response, ApiError> {
    let mut manifests = blocking(move || Ok(app.storage.referrers(&repo, &subject)?)).await?;
    let filter = params.get("artifactType").filter(|a| !a.is_empty());
    if let Some(a) = filter {
        manifests.retain(|m| m["artifactType"].as_str() == Some(a.as_str()));
    }
    let doc = serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let mut r = json(&doc, OCI_INDEX);
    if filter.is_some() {
        r.headers_mut().insert(FILTERS_APPLIED, HeaderValue::from_static("artifactType"));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kv: &[(&str, &str)]) -> Params {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn pages() {
        let all: Vec<String> = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
        assert_eq!(page(all.clone(), &params(&[])), (all.clone(), false));
        assert_eq!(page(all.clone(), &params(&[("n", "2")])), (vec!["a".into(), "b".into()], true));
        assert_eq!(page(all.clone(), &params(&[("n", "2"), ("last", "b")])), (vec!["c".into(), "d".into()], false));
        assert_eq!(page(all.clone(), &params(&[("n", "0")])), (vec![], false));
        assert_eq!(page(all.clone(), &params(&[("last", "c")])), (vec!["d".into()], false));
        assert!(!page(all, &params(&[("n", "9")])).1);
    }
}
