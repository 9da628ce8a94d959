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

mod access;
pub mod auth;
pub mod error;
pub mod jwt;
pub mod ratelimit;
pub mod routes;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;
use tracing::Instrument;

use crate::app::App;
use crate::audit;
use crate::error::{upstream_cause, Error, ErrorChain};
use crate::provision::query::list_all;
use crate::provision::{Query, Realm, Rendered};
use crate::telemetry::context::{self, RequestContext};
use crate::telemetry::RealmState;
use scim::discovery;
use scim::ScimType;

use self::routes::Route;

/// `application/scim+json`, the media type of every SCIM response.
pub const SCIM_JSON: &str = "application/scim+json";

/// The response body type.
pub type Body = Full<Bytes>;

/// What a SCIM request carries besides its route: the query, the preconditions and the body.
struct ScimRequest<B> {
    query: Query,
    if_match: Option<String>,
    if_none_match: Option<String>,
    headers: HeaderMap,
    body: B,
}

// === impl App (HTTP) ===

impl App {
    /// Serves one request. Never fails: every error becomes a SCIM error response. The
    /// request id (the IdP's, or a new one) is returned in `X-Request-Id` and carried by
    /// every line logged on the request's behalf.
    pub async fn handle<B>(&self, request: Request<B>) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let method = request.method().clone();
        let authenticated = self.authenticate(&request);
        if let Some(refused) = self.admit(&request, &authenticated, started) {
            return refused;
        }
        let realm = authenticated.as_ref().ok().copied();
        let context = RequestContext {
            request_id: context::request_id(request.headers()).into(),
            client: realm.map_or("-", |r| r.config.scim_client_name.as_str()).into(),
        };
        let span = tracing::info_span!("request", request_id = %context.request_id);
        let served =
            RequestContext::scope(Some(context.clone()), self.route_and_serve(authenticated, request));
        let (mut response, route, error) = served.instrument(span).await;
        let outcome = access::Access {
            realm: realm.map_or("-", |r| r.name()),
            context: &context,
            method: &method,
            route,
            status: response.status(),
            elapsed: started.elapsed(),
            error: error.as_ref(),
        };
        self.record(realm, &outcome);
        if let Ok(id) = HeaderValue::from_str(&context.request_id) {
            response.headers_mut().insert(context::REQUEST_ID_HEADER, id);
        }
        response
    }

    /// An answered request: its metrics, an upstream failure in the realm's health, its log line.
    fn record(&self, realm: Option<&Arc<Realm>>, outcome: &access::Access<'_>) {
        let labels = (outcome.realm, &*outcome.context.client);
        let (method, status) = (outcome.method.as_str(), outcome.status.as_u16());
        self.metrics.observe_scim(labels, method, outcome.route, status, outcome.elapsed);
        if let (Some(realm), Some(Error::Upstream { source, .. })) = (realm, outcome.error) {
            realm.health.failed(format!("{}: {}", outcome.route, upstream_cause(source)));
        }
        outcome.log(self);
    }

    /// Routes and serves: the response, the route label, and the error it answers, if any.
    async fn route_and_serve<B>(
        &self,
        realm: Result<&Arc<Realm>, Error>,
        request: Request<B>,
    ) -> (Response<Body>, &'static str, Option<Error>)
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let route = Route::from_request(request.method(), request.uri().path());
        let label = route.as_ref().map(Route::label).unwrap_or("unrouted");
        let result = match (route, realm) {
            (Ok(route), _) if !route.is_scim() => Ok(self.serve_ops(&route)),
            (Ok(route), Ok(realm)) => {
                let request_id = RequestContext::current().map(|c| c.request_id.to_string());
                let context = audit::RequestContext::new(request_id.as_deref(), label);
                audit::scope(context, self.serve_scim(realm, route, request)).await
            }
            // Unknown SCIM paths still require a token, as Zulip's built-in does.
            (Err(e), Err(_)) if !request.uri().path().starts_with(routes::SCIM_PREFIX) => Err(e),
            (Err(e), Ok(_)) => Err(e),
            (_, Err(refused)) => Err(refused),
        };
        match result {
            Ok(response) => (response, label, None),
            Err(error) => (error_response(&error), label, Some(error)),
        }
    }

    /// The realm a request's credential selects (401 without one), if the request may reach
    /// it from where it comes from (403 outside the realm's `allow_ips`).
    fn authenticate<B>(&self, request: &Request<B>) -> Result<&Arc<Realm>, Error> {
        let headers = request.headers();
        let index = self
            .tokens
            .realm_for(headers.get(header::AUTHORIZATION).map(HeaderValue::as_bytes))
            .ok_or(Error::Unauthorized)?;
        let (realm, access) =
            self.realms.get(index).zip(self.access.get(index)).ok_or(Error::Unauthorized)?;
        if !access.hosts.is_empty() {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
            if !access.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
                return Err(Error::Unauthorized);
            }
        }
        let peer = request.extensions().get::<auth::PeerAddr>().map(|p| p.0.ip());
        let client = auth::client_ip(peer, headers, self.trusted_proxy_hops);
        if !auth::allowed(&access.allow_ips, client) {
            let seen = client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
            return Err(Error::Forbidden {
                detail: format!("client address {seen} may not reach this realm"),
            });
        }
        Ok(realm)
    }

    /// `/livez`, `/readyz`, `/metrics`.
    fn serve_ops(&self, route: &Route) -> Response<Body> {
        match route {
            Route::Livez => plain(StatusCode::OK, "ok\n"),
            Route::Readyz => self.readyz(),
            _ => self.metrics_page(),
        }
    }

    /// `ready`, or `not ready: acme`; then a line per realm: its state, since when, and the
    /// last upstream error (see [`crate::provision::health`]).
    fn readyz(&self) -> Response<Body> {
        let not_ready: Vec<&str> = self.realms.iter().filter(|r| !r.is_ready()).map(|r| r.name()).collect();
        let (status, mut text) = if self.is_draining() {
            (StatusCode::SERVICE_UNAVAILABLE, "draining\n".to_owned())
        } else if not_ready.is_empty() {
            (StatusCode::OK, "ready\n".to_owned())
        } else {
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", not_ready.join(", ")))
        };
        let now = std::time::SystemTime::now();
        for realm in &self.realms {
            text.push_str(&realm.health().line(realm.name(), now));
            text.push('\n');
        }
        plain(status, &text)
    }

    fn metrics_page(&self) -> Response<Body> {
        for realm in &self.realms {
            let upstream = realm.upstream_stats();
            let state = RealmState {
                ready: realm.is_ready(),
                live: realm.is_live(),
                users: realm.snapshot_user_count(),
                writes_queued: upstream.writes_queued,
                rate_limit_wait: upstream.rate_limit_wait,
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

    /// An authenticated SCIM request: one `provision` call, encoded.
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
        let req = ScimRequest {
            query: Query::from_pairs(form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())),
            if_match: header_str(&parts.headers, header::IF_MATCH),
            if_none_match: header_str(&parts.headers, header::IF_NONE_MATCH),
            headers: parts.headers,
            body,
        };
        match route {
            Route::List(resource) => {
                Ok(json_response(StatusCode::OK, &realm.list(resource, &req.query).await?))
            }
            Route::Search(resource) => {
                let query = Query::from_search_request(&self.read_json(&req.headers, req.body).await?)?;
                Ok(json_response(StatusCode::OK, &realm.list(resource, &query).await?))
            }
            Route::SearchAll => {
                let query = Query::from_search_request(&self.read_json(&req.headers, req.body).await?)?;
                Ok(json_response(StatusCode::OK, &realm.search(&query).await?))
            }
            Route::Get(resource, id) => {
                let found = realm.get(resource, &id, &req.query, req.if_none_match.as_deref()).await?;
                Ok(resource_response(StatusCode::OK, found))
            }
            Route::Create(_) | Route::Replace(..) | Route::Patch(..) | Route::Delete(..) => {
                self.serve_write(realm, route, req).await
            }
            _ => self.serve_discovery(realm, route),
        }
    }

    /// The writes: each runs to completion even if the IdP hangs up ([`App::to_completion`]).
    async fn serve_write<B>(
        &self,
        realm: &Arc<Realm>,
        route: Route,
        req: ScimRequest<B>,
    ) -> Result<Response<Body>, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (realm, query, if_match) = (realm.clone(), req.query, req.if_match);
        if let Route::Delete(resource, id) = route {
            self.to_completion(async move { realm.delete(resource, &id, if_match.as_deref()).await }).await?;
            return Ok(empty(StatusCode::NO_CONTENT));
        }
        let body = self.read_json(&req.headers, req.body).await?;
        let (status, written) = match route {
            Route::Create(r) => (
                StatusCode::CREATED,
                self.to_completion(async move { realm.create(r, &body, &query).await }).await?,
            ),
            Route::Replace(r, id) => (
                StatusCode::OK,
                self.to_completion(
                    async move { realm.replace(r, &id, &body, if_match.as_deref(), &query).await },
                )
                .await?,
            ),
            Route::Patch(r, id) => (
                StatusCode::OK,
                self.to_completion(
                    async move { realm.patch(r, &id, &body, if_match.as_deref(), &query).await },
                )
                .await?,
            ),
            _ => return Err(Error::Internal(format!("{} is not a write", route.label()))),
        };
        Ok(resource_response(status, written))
    }

    /// `/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`, and the unsupported `/Bulk`, `/Me`.
    fn serve_discovery(&self, realm: &Realm, route: Route) -> Result<Response<Body>, Error> {
        let base = realm.base_url.as_str();
        let types = &realm.resource_types();
        let document = match route {
            Route::ServiceProviderConfig => discovery::service_provider_config(base, &self.capabilities),
            Route::ResourceTypes(None) => list_all(discovery::resource_types(base, types)),
            Route::ResourceTypes(Some(name)) => discovery::resource_type(base, types, &name)
                .ok_or(Error::NotFound { resource: "ResourceType", id: name })?,
            Route::Schemas(None) => list_all(discovery::schemas(base, types)),
            Route::Schemas(Some(urn)) => {
                discovery::schema(base, types, &urn).ok_or(Error::NotFound { resource: "Schema", id: urn })?
            }
            Route::Unsupported(what) => {
                return Err(Error::NotImplemented { detail: format!("/{what} is not supported") })
            }
            other => return Ok(self.serve_ops(&other)),
        };
        Ok(json_response(StatusCode::OK, &document))
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
        let read =
            tokio::time::timeout(self.body_read_timeout, Limited::new(body, self.max_body_bytes).collect());
        let bytes = match read.await.map_err(|_| Error::RequestTimeout { limit: self.body_read_timeout })? {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                return Err(Error::PayloadTooLarge { limit: self.max_body_bytes })
            }
            Err(e) => {
                return Err(Error::invalid(
                    ScimType::InvalidSyntax,
                    format!("could not read the request body: {}", ErrorChain(&*e)),
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

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    response
}

/// A resource response: the body, `Location` and `ETag`.
fn resource_response(status: StatusCode, resource: Rendered) -> Response<Body> {
    let mut response = json_response(status, &resource.body);
    if let Some(location) = resource.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if let Some(version) = resource.version.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::ETAG, version);
    }
    response
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
