//! The admin API's `/tenants`: the tenant STATUS of every tenant or one, and `PUT` / `DELETE`
//! of the tenants of `[tenants] file` (see [`crate::tenants`] for how a change is made).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;

use super::auth::{authorize, Caller};
use super::Admin;
use crate::body::{Chunks, ResponseBody};
use crate::error::json_error_response;
use crate::status::{tenant_status, TenantStatus};
use crate::tenant::Tenant;
use crate::tenants::{self, Change, ChangeError, Outcome, TenantEntry};

/// Largest `PUT /tenants/{name}` body.
const MAX_BODY: usize = 64 * 1024;
/// About this much of `GET /tenants` is rendered at a time.
const CHUNK: usize = 32 * 1024;

pub(super) async fn handle(admin: &Admin, request: Request<Incoming>) -> Response<ResponseBody> {
    let path = request.uri().path();
    let name = match path.strip_prefix("/tenants") {
        Some("") | Some("/") => None,
        Some(rest) => Some(rest.trim_start_matches('/').to_owned()),
        None => None,
    };
    let write = matches!(*request.method(), Method::PUT | Method::DELETE);
    let caller = match authorize(&admin.proxy.config.load().admin, request.headers(), write) {
        Ok(caller) => caller,
        Err(refused) => return *refused,
    };
    match (request.method().clone(), name) {
        (Method::GET | Method::HEAD, None) => list(admin),
        (Method::GET | Method::HEAD, Some(name)) => match find(admin, &name) {
            Some(tenant) => json(StatusCode::OK, &status(&tenant)),
            None => unknown(&name),
        },
        (Method::PUT, Some(name)) if !name.contains('/') => put(admin, name, request, caller).await,
        (Method::DELETE, Some(name)) if !name.contains('/') => delete(admin, name, caller).await,
        (Method::PUT | Method::DELETE, _) => json_error_response(
            StatusCode::NOT_FOUND,
            "NotFound",
            "PUT and DELETE take one tenant: /tenants/{name}",
        ),
        _ => json_error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadRequest",
            "/tenants answers GET; /tenants/{name} answers GET, PUT and DELETE",
        ),
    }
}

fn find(admin: &Admin, name: &str) -> Option<Arc<Tenant>> {
    admin.proxy.snapshot.load().routes.lookup(name).cloned()
}

/// `{"tenants": [STATUS, ...]}` by name, rendered a chunk at a time.
fn list(admin: &Admin) -> Response<ResponseBody> {
    let mut all: Vec<Arc<Tenant>> = admin
        .proxy
        .snapshot
        .load()
        .routes
        .tenants()
        .cloned()
        .collect();
    all.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let mut rest = all.into_iter().peekable();
    let mut started = false;
    let mut ended = false;
    let chunks = std::iter::from_fn(move || {
        if ended {
            return None;
        }
        let mut out = BytesMut::with_capacity(CHUNK + 1024);
        if !started {
            started = true;
            out.extend_from_slice(b"{\"tenants\": [");
        }
        while out.len() < CHUNK {
            let Some(tenant) = rest.next() else {
                out.extend_from_slice(b"]}\n");
                ended = true;
                break;
            };
            let value = serde_json::to_vec(&status(&tenant)).unwrap_or_default();
            out.extend_from_slice(&value);
            if rest.peek().is_some() {
                out.extend_from_slice(b", ");
            }
        }
        Some(out.freeze())
    });
    let mut response = Response::new(ResponseBody::chunks(Chunks::new(chunks)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn put(
    admin: &Admin,
    name: String,
    request: Request<Incoming>,
    caller: Caller,
) -> Response<ResponseBody> {
    let body = match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return bad_request(&format!("the body is larger than {} KiB", MAX_BODY / 1024));
        }
        Err(_) => return bad_request("the body could not be read"),
    };
    let entry: TenantEntry = match serde_json::from_slice(&body) {
        Ok(entry) => entry,
        Err(e) => return bad_request(&format!("the body is not a tenant: {e}")),
    };
    let change = Change::Put {
        name: name.clone(),
        entry,
    };
    match tenants::change(admin.reloader.as_deref(), change, &caller.0).await {
        Ok(outcome) => {
            let code = if outcome == Outcome::Created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            match find(admin, &name) {
                Some(tenant) => json(code, &status(&tenant)),
                None => json(code, &serde_json::json!({ "name": name })),
            }
        }
        Err(err) => refused(&name, err),
    }
}

async fn delete(admin: &Admin, name: String, caller: Caller) -> Response<ResponseBody> {
    let change = Change::Delete { name: name.clone() };
    match tenants::change(admin.reloader.as_deref(), change, &caller.0).await {
        Ok(_) => {
            let mut response = Response::new(ResponseBody::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        Err(ChangeError::NotFound(_)) if find(admin, &name).is_none() => unknown(&name),
        Err(err) => refused(&name, err),
    }
}

/// A change that did not happen, in the contract's error shape.
fn refused(name: &str, err: ChangeError) -> Response<ResponseBody> {
    match &err {
        ChangeError::NoFile | ChangeError::NoConfigFile | ChangeError::Conflict(_) => {
            json_error_response(StatusCode::CONFLICT, "Conflict", &err.to_string())
        }
        ChangeError::NotFound(_) => unknown(name),
        ChangeError::Invalid(errors) => {
            let problems: Vec<String> = errors.problems.iter().map(ToString::to_string).collect();
            bad_request(&problems.join("; "))
        }
        ChangeError::Io { .. } | ChangeError::Build(_) | ChangeError::Panicked => {
            json_error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                &format!("nothing changed: {err}"),
            )
        }
    }
}

fn unknown(name: &str) -> Response<ResponseBody> {
    json_error_response(
        StatusCode::NOT_FOUND,
        "UnknownTenant",
        &format!("no tenant named '{name}' is configured"),
    )
}

fn bad_request(message: &str) -> Response<ResponseBody> {
    json_error_response(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<ResponseBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(ResponseBody::from(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The tenant STATUS, from its live token slots, limiters and counters.
fn status(tenant: &Tenant) -> TenantStatus {
    tenant_status(tenant)
}
