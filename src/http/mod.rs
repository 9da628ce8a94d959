//! The hyper service: parse the route, authenticate the realm, bound the body, make one
//! `provision::Realm` call, encode the SCIM response. Only this module knows HTTP statuses.
//!
//! Endpoints (under `/scim/v2`, trailing slash optional, query flags such as Entra's
//! `aadOptscim062020` ignored):
//! - `GET|POST /Users`, `GET|PUT|PATCH|DELETE /Users/{id}`, `POST /Users/.search`
//! - `GET|POST /Groups`, `GET|PUT|PATCH|DELETE /Groups/{id}`, `POST /Groups/.search`
//! - `POST /.search`
//! - `GET /ServiceProviderConfig`, `GET /ResourceTypes[/{name}]`, `GET /Schemas[/{urn}]`
//! - `/Bulk`, `/Me`: 501
//!
//! Outside `/scim/v2`, unauthenticated: `GET /livez`, `GET /readyz`, `GET /metrics`.

pub mod auth;
pub mod error;
pub mod routes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::watch;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Value};

use crate::error::Error;
use crate::provision::{ListPage, ListQuery, Realm};
use crate::scim::discovery::{self, Capabilities};
use crate::scim::filter::Filter;
use crate::scim::projection::{Projection, SortSpec};
use crate::scim::schema::{ResourceTypeDef, GROUP, USER};
use crate::scim::{self, ScimType};
use crate::telemetry::{Metrics, RealmState};

use self::auth::TokenTable;
use self::routes::{Resource, Route};

/// `application/scim+json`, the media type of every SCIM response.
pub const SCIM_JSON: &str = "application/scim+json";
/// Default and largest page size.
pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 500;

/// The response body type.
pub type Body = Full<Bytes>;

/// Everything a request needs: the realms and how to pick one.
#[derive(Debug)]
pub struct App {
    realms: Vec<Arc<Realm>>,
    tokens: TokenTable,
    max_body_bytes: usize,
    capabilities: Capabilities,
    draining: AtomicBool,
    metrics: Arc<Metrics>,
    /// Writes in flight (each runs as a task of its own, see [`App::to_completion`]).
    writes: Arc<watch::Sender<usize>>,
}

/// Counts one write in flight until dropped (at the end of its task).
struct WriteInFlight(Arc<watch::Sender<usize>>);

impl Drop for WriteInFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Query parameters of a SCIM request.
#[derive(Debug, Default)]
struct Query {
    filter: Option<String>,
    start_index: Option<String>,
    count: Option<String>,
    attributes: Option<String>,
    excluded_attributes: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
}

impl Query {
    fn parse(query: Option<&str>) -> Query {
        let mut q = Query::default();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let slot = match k.to_ascii_lowercase().as_str() {
                "filter" => &mut q.filter,
                "startindex" => &mut q.start_index,
                "count" => &mut q.count,
                "attributes" => &mut q.attributes,
                "excludedattributes" => &mut q.excluded_attributes,
                "sortby" => &mut q.sort_by,
                "sortorder" => &mut q.sort_order,
                _ => continue,
            };
            *slot = Some(v.into_owned());
        }
        q
    }

    fn projection(&self) -> Result<Projection, Error> {
        Ok(Projection::parse(self.attributes.as_deref(), self.excluded_attributes.as_deref())?)
    }
}

// === impl App ===

impl App {
    pub fn new(realms: Vec<Arc<Realm>>, max_body_bytes: usize, metrics: Arc<Metrics>) -> Self {
        let tokens = TokenTable::new(realms.iter().map(|r| r.config.bearer_token_sha256.as_slice()));
        App {
            realms,
            tokens,
            max_body_bytes,
            capabilities: Capabilities { max_results: MAX_COUNT, ..Capabilities::default() },
            draining: AtomicBool::new(false),
            metrics,
            writes: Arc::new(watch::channel(0).0),
        }
    }

    /// Resolves once no write is in flight (shutdown waits for it within its grace period).
    pub async fn writes_finished(&self) {
        let mut writes = self.writes.subscribe();
        // The sender lives as long as `self`: `wait_for` cannot fail here.
        let _ = writes.wait_for(|n| *n == 0).await;
    }

    /// Runs a write to its end even if the IdP hangs up. hyper drops a request's future when
    /// its connection closes; a write cut between its Zulip calls (`POST /users`, then the
    /// `PATCH` with the role and `externalId`; a group's rename, then its members) would leave
    /// a half-made change that nobody reports. The write runs as a task of its own, which the
    /// request merely awaits, and shutdown waits for it. A panic in it is a 500.
    async fn to_completion<T: Send + 'static>(
        &self,
        write: impl std::future::Future<Output = Result<T, Error>> + Send + 'static,
    ) -> Result<T, Error> {
        self.writes.send_modify(|n| *n += 1);
        let in_flight = WriteInFlight(self.writes.clone());
        let task = tokio::spawn(async move {
            let outcome = write.await;
            drop(in_flight);
            outcome
        });
        match task.await {
            Ok(outcome) => outcome,
            Err(e) => Err(Error::Internal(format!("the write task failed: {e}"))),
        }
    }

    pub fn realms(&self) -> &[Arc<Realm>] {
        &self.realms
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Flips `/readyz` to 503 (shutdown has begun).
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Serves one request. Never fails: every error becomes a SCIM error response.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let method = request.method().clone();
        let route = Route::from_request(&method, request.uri().path());
        let label = route.as_ref().map(Route::label).unwrap_or("unrouted");
        let mut realm_name = "-";
        let result = match route {
            Ok(route) if !route.is_scim() => Ok(self.serve_ops(&route)),
            Ok(route) => match self.authenticate(request.headers()) {
                Some(realm) => {
                    realm_name = realm.name();
                    self.serve_scim(realm, route, request).await
                }
                None => Err(Error::Unauthorized),
            },
            Err(e) => {
                // Unknown SCIM paths still require a token, as Zulip's built-in does.
                match self.authenticate(request.headers()) {
                    Some(realm) => {
                        realm_name = realm.name();
                        Err(e)
                    }
                    None if request.uri().path().starts_with(routes::SCIM_PREFIX) => Err(Error::Unauthorized),
                    None => Err(e),
                }
            }
        };
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                log_error(&error, realm_name, label);
                error_response(&error)
            }
        };
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        self.metrics.observe_scim(realm_name, method.as_str(), label, status, elapsed);
        tracing::info!(realm = realm_name, method = %method, route = label, status, latency_ms = elapsed.as_secs_f64() * 1000.0, "request");
        response
    }

    fn authenticate(&self, headers: &HeaderMap) -> Option<&Arc<Realm>> {
        let index = self.tokens.realm_for(headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes))?;
        let realm = self.realms.get(index)?;
        if !realm.config.hosts.is_empty() {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
            if !realm.config.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
                return None;
            }
        }
        Some(realm)
    }

    fn serve_ops(&self, route: &Route) -> Response<Body> {
        match route {
            Route::Livez => plain(StatusCode::OK, "ok\n"),
            Route::Readyz => {
                let draining = self.draining.load(Ordering::Acquire);
                let not_ready: Vec<&str> =
                    self.realms.iter().filter(|r| !r.is_ready()).map(|r| r.name()).collect();
                if draining {
                    plain(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
                } else if not_ready.is_empty() {
                    plain(StatusCode::OK, "ready\n")
                } else {
                    plain(StatusCode::SERVICE_UNAVAILABLE, &format!("not ready: {}\n", not_ready.join(", ")))
                }
            }
            _ => {
                for realm in &self.realms {
                    let state = RealmState {
                        ready: realm.is_ready(),
                        live: realm.is_live(),
                        users: realm.snapshot_user_count(),
                    };
                    self.metrics.set_realm_state(realm.name(), state);
                }
                let mut response = Response::new(Full::new(Bytes::from(self.metrics.encode())));
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                );
                response
            }
        }
    }

    async fn serve_scim<B>(
        &self,
        realm: &Arc<Realm>,
        route: Route,
        request: Request<B>,
    ) -> Result<Response<Body>, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = request.into_parts();
        let query = Query::parse(parts.uri.query());
        let if_match = header_str(&parts.headers, header::IF_MATCH);
        let if_none_match = header_str(&parts.headers, header::IF_NONE_MATCH);
        let needs_body = matches!(
            route,
            Route::Create(_) | Route::Replace(..) | Route::Patch(..) | Route::Search(_) | Route::SearchAll
        );
        let body = if needs_body { Some(self.read_json(&parts.headers, body).await?) } else { None };
        let body = body.unwrap_or(Value::Null);
        let base = realm.base_url.as_str();
        match route {
            Route::List(resource) => list(realm, resource, &query).await,
            Route::Search(resource) => {
                let search = SearchRequest::parse(&body)?;
                list(realm, resource, &search.query).await
            }
            Route::SearchAll => {
                let search = SearchRequest::parse(&body)?;
                let page = realm.search_all(&search.query.filter, &search_params(&search.query)?).await?;
                Ok(list_response_mixed(page, &search.query.projection()?))
            }
            Route::Get(resource, id) => {
                let mut value = match resource {
                    Resource::User => realm.get_user(&id).await?,
                    Resource::Group => realm.get_group(&id, wants_members(&query)?).await?,
                };
                if resource == Resource::User && query.projection()?.requests("groups", &USER) {
                    realm.attach_groups(std::slice::from_mut(&mut value)).await?;
                }
                if let (Some(inm), Some(version)) = (if_none_match.as_deref(), version_of(&value)) {
                    if scim::version::if_none_match_satisfied(inm, version) {
                        return Err(Error::NotModified { etag: version.to_string() });
                    }
                }
                Ok(resource_response(StatusCode::OK, &value, &query.projection()?, rt_of(resource)))
            }
            Route::Create(resource) => {
                let realm = realm.clone();
                let value = self
                    .to_completion(async move {
                        match resource {
                            Resource::User => realm.create_user(&body).await,
                            Resource::Group => realm.create_group(&body).await,
                        }
                    })
                    .await?;
                Ok(resource_response(StatusCode::CREATED, &value, &query.projection()?, rt_of(resource)))
            }
            Route::Replace(resource, id) => {
                let realm = realm.clone();
                let value = self
                    .to_completion(async move {
                        match resource {
                            Resource::User => realm.replace_user(&id, &body, if_match.as_deref()).await,
                            Resource::Group => realm.replace_group(&id, &body, if_match.as_deref()).await,
                        }
                    })
                    .await?;
                Ok(resource_response(StatusCode::OK, &value, &query.projection()?, rt_of(resource)))
            }
            Route::Patch(resource, id) => {
                let realm = realm.clone();
                let value = self
                    .to_completion(async move {
                        match resource {
                            Resource::User => realm.patch_user(&id, &body, if_match.as_deref()).await,
                            Resource::Group => realm.patch_group(&id, &body, if_match.as_deref()).await,
                        }
                    })
                    .await?;
                Ok(resource_response(StatusCode::OK, &value, &query.projection()?, rt_of(resource)))
            }
            Route::Delete(resource, id) => {
                let realm = realm.clone();
                self.to_completion(async move {
                    match resource {
                        Resource::User => realm.delete_user(&id, if_match.as_deref()).await,
                        Resource::Group => realm.delete_group(&id, if_match.as_deref()).await,
                    }
                })
                .await?;
                Ok(empty(StatusCode::NO_CONTENT))
            }
            Route::ServiceProviderConfig => Ok(json_response(
                StatusCode::OK,
                &discovery::service_provider_config(base, &self.capabilities),
            )),
            Route::ResourceTypes(None) => {
                Ok(json_response(StatusCode::OK, &discovery_list(discovery::resource_types(base))))
            }
            Route::ResourceTypes(Some(name)) => discovery::resource_type(base, &name)
                .map(|v| json_response(StatusCode::OK, &v))
                .ok_or(Error::NotFound { resource: "ResourceType", id: name }),
            Route::Schemas(None) => {
                Ok(json_response(StatusCode::OK, &discovery_list(discovery::schemas(base))))
            }
            Route::Schemas(Some(urn)) => discovery::schema(base, &urn)
                .map(|v| json_response(StatusCode::OK, &v))
                .ok_or(Error::NotFound { resource: "Schema", id: urn }),
            Route::Unsupported(what) => {
                Err(Error::NotImplemented { detail: format!("/{what} is not supported") })
            }
            Route::Livez | Route::Readyz | Route::Metrics => Ok(self.serve_ops(&route)),
        }
    }

    /// Reads a JSON body: media type checked, size bounded (413), syntax checked (400).
    async fn read_json<B>(&self, headers: &HeaderMap, body: B) -> Result<Value, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Some(ct) = headers.get(header::CONTENT_TYPE) {
            let ct = ct.to_str().unwrap_or("");
            let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            if !(essence == SCIM_JSON || essence == "application/json" || essence.is_empty()) {
                return Err(Error::UnsupportedMediaType { content_type: ct.to_string() });
            }
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body_bytes as u64) {
            return Err(Error::PayloadTooLarge { limit: self.max_body_bytes });
        }
        let bytes = match Limited::new(body, self.max_body_bytes).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                return Err(Error::PayloadTooLarge { limit: self.max_body_bytes })
            }
            Err(e) => {
                return Err(Error::invalid(
                    ScimType::InvalidSyntax,
                    format!("could not read the request body: {e}"),
                ))
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::invalid(ScimType::InvalidSyntax, "the request body is empty"));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::invalid(ScimType::InvalidSyntax, format!("the request body is not valid JSON: {e}"))
        })
    }
}

/// `GET /Users|/Groups` and their `.search`: one page, projected.
async fn list(realm: &Realm, resource: Resource, query: &Query) -> Result<Response<Body>, Error> {
    let projection = query.projection()?;
    let list = list_query(query, rt_of(resource))?;
    let mut page = match resource {
        Resource::User => realm.list_users(&list).await?,
        Resource::Group => realm.list_groups(&list, projection.requests("members", &GROUP)).await?,
    };
    if resource == Resource::User && projection.requests("groups", &USER) {
        realm.attach_groups(&mut page.resources).await?;
    }
    Ok(list_response(page, &projection, rt_of(resource)))
}

/// A `SearchRequest` body (RFC 7644 §3.4.3), as query parameters.
struct SearchRequest {
    query: Query,
}

impl SearchRequest {
    fn parse(body: &Value) -> Result<SearchRequest, Error> {
        let obj = body.as_object().ok_or_else(|| {
            Error::invalid(ScimType::InvalidSyntax, "a SearchRequest must be a JSON object")
        })?;
        if let Some(schemas) = obj.get("schemas") {
            let ok = schemas.as_array().is_some_and(|a| {
                a.iter()
                    .any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(scim::SEARCH_REQUEST_SCHEMA)))
            });
            if !ok {
                return Err(Error::invalid(
                    ScimType::InvalidValue,
                    format!("schemas must contain {}", scim::SEARCH_REQUEST_SCHEMA),
                ));
            }
        }
        let mut query = Query::default();
        for (key, value) in obj {
            let text = match value {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Array(items) => {
                    Some(items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
                }
                Value::Null => None,
                _ => {
                    return Err(Error::invalid(
                        ScimType::InvalidValue,
                        format!("{key} has an unexpected type"),
                    ))
                }
            };
            match key.to_ascii_lowercase().as_str() {
                "filter" => query.filter = text,
                "startindex" => query.start_index = text,
                "count" => query.count = text,
                "attributes" => query.attributes = text,
                "excludedattributes" => query.excluded_attributes = text,
                "sortby" => query.sort_by = text,
                "sortorder" => query.sort_order = text,
                _ => {}
            }
        }
        Ok(SearchRequest { query })
    }
}

/// Paging and sorting of a cross-resource search.
pub struct SearchParams {
    pub start_index: usize,
    pub count: usize,
}

fn search_params(q: &Query) -> Result<SearchParams, Error> {
    Ok(SearchParams { start_index: start_index(q)?, count: count(q)? })
}

fn rt_of(resource: Resource) -> &'static ResourceTypeDef {
    match resource {
        Resource::User => &USER,
        Resource::Group => &GROUP,
    }
}

fn start_index(q: &Query) -> Result<usize, Error> {
    match q.start_index.as_deref().map(str::trim) {
        None | Some("") => Ok(1),
        Some(s) => s.parse::<i64>().map(|n| n.max(1) as usize).map_err(|_| {
            Error::invalid(ScimType::InvalidValue, format!("startIndex {s:?} is not an integer"))
        }),
    }
}

fn count(q: &Query) -> Result<usize, Error> {
    match q.count.as_deref().map(str::trim) {
        None | Some("") => Ok(DEFAULT_COUNT),
        Some(s) => s
            .parse::<i64>()
            .map(|n| n.clamp(0, MAX_COUNT as i64) as usize)
            .map_err(|_| Error::invalid(ScimType::InvalidValue, format!("count {s:?} is not an integer"))),
    }
}

fn list_query(q: &Query, rt: &ResourceTypeDef) -> Result<ListQuery, Error> {
    let filter = match q.filter.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(f) => Some(Filter::parse(f)?),
    };
    Ok(ListQuery {
        filter,
        start_index: start_index(q)?,
        count: count(q)?,
        sort: SortSpec::parse(q.sort_by.as_deref(), q.sort_order.as_deref(), rt)?,
    })
}

/// Whether a group response will show `members` (so Zulip need not be asked for them).
fn wants_members(q: &Query) -> Result<bool, Error> {
    Ok(q.projection()?.requests("members", &GROUP))
}

fn version_of(resource: &Value) -> Option<&str> {
    resource.pointer("/meta/version").and_then(Value::as_str)
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    response
}

fn resource_response(
    status: StatusCode,
    resource: &Value,
    projection: &Projection,
    rt: &ResourceTypeDef,
) -> Response<Body> {
    // The resources provision renders carry nothing a default projection would drop
    // (`returned: request` attributes are only attached on request), so the identity
    // projection is skipped: no copy of the resource on the hot path.
    let mut response = if projection.is_identity() {
        json_response(status, resource)
    } else {
        json_response(status, &projection.apply(resource, rt))
    };
    if let Some(location) =
        resource.pointer("/meta/location").and_then(Value::as_str).and_then(|l| HeaderValue::from_str(l).ok())
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if let Some(version) = version_of(resource).and_then(|v| HeaderValue::from_str(v).ok()) {
        response.headers_mut().insert(header::ETAG, version);
    }
    response
}

fn list_response(page: ListPage, projection: &Projection, rt: &ResourceTypeDef) -> Response<Body> {
    let resources: Vec<Value> = if projection.is_identity() {
        page.resources
    } else {
        page.resources.iter().map(|r| projection.apply(r, rt)).collect()
    };
    json_response(StatusCode::OK, &list_body(page.total_results, page.start_index, resources))
}

fn list_response_mixed(page: ListPage, projection: &Projection) -> Response<Body> {
    let resources: Vec<Value> = page
        .resources
        .iter()
        .map(|r| {
            let rt = if r.pointer("/meta/resourceType").and_then(Value::as_str) == Some("Group") {
                &GROUP
            } else {
                &USER
            };
            projection.apply(r, rt)
        })
        .collect();
    json_response(StatusCode::OK, &list_body(page.total_results, page.start_index, resources))
}

fn list_body(total_results: usize, start_index: usize, resources: Vec<Value>) -> Value {
    // Built by hand: `json!` would serialise `resources` into a second copy.
    let mut body = serde_json::Map::new();
    body.insert("schemas".into(), json!([scim::LIST_RESPONSE_SCHEMA]));
    body.insert("totalResults".into(), Value::from(total_results));
    body.insert("itemsPerPage".into(), Value::from(resources.len()));
    body.insert("startIndex".into(), Value::from(start_index));
    body.insert("Resources".into(), Value::Array(resources));
    Value::Object(body)
}

fn discovery_list(resources: Vec<Value>) -> Value {
    let n = resources.len();
    list_body(n, 1, resources)
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// The SCIM error response for `error`.
pub fn error_response(error: &Error) -> Response<Body> {
    let (status, headers, body) = error::error_parts(error);
    let mut response = match body {
        Some(body) => json_response(status, &body),
        None => empty(status),
    };
    for (name, value) in headers {
        response.headers_mut().insert(name, value);
    }
    response
}

fn log_error(error: &Error, realm: &str, route: &str) {
    match error {
        Error::Upstream { .. } | Error::Internal(_) | Error::Unavailable { .. } => {
            let chain = error_chain(error);
            tracing::warn!(realm, route, error = %chain, "request failed");
        }
        _ => tracing::debug!(realm, route, error = %error, "request refused"),
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
