//! Routes, parsed before anything acts: method + path → [`Route`]. Every SCIM route lives
//! under `/scim/v2` (with or without a trailing slash); Entra's `?aadOptscim062020` flag is
//! a query parameter and never reaches routing.

use http::Method;

use crate::error::Error;

pub use crate::provision::Resource;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /livez`: the process runs.
    Livez,
    /// `GET /readyz`: every realm's upstream answered.
    Readyz,
    /// `GET /metrics`: Prometheus/OpenMetrics text.
    Metrics,
    /// `GET /{Users|Groups}`
    List(Resource),
    /// `POST /{Users|Groups}/.search`
    Search(Resource),
    /// `POST /.search` (Users and Groups together)
    SearchAll,
    /// `GET /{Users|Groups}/{id}`
    Get(Resource, String),
    /// `POST /{Users|Groups}`
    Create(Resource),
    /// `PUT /{Users|Groups}/{id}`
    Replace(Resource, String),
    /// `PATCH /{Users|Groups}/{id}`
    Patch(Resource, String),
    /// `DELETE /{Users|Groups}/{id}`
    Delete(Resource, String),
    /// `GET /ServiceProviderConfig`
    ServiceProviderConfig,
    /// `GET /ResourceTypes[/{name}]`
    ResourceTypes(Option<String>),
    /// `GET /Schemas[/{urn}]`
    Schemas(Option<String>),
    /// `/Bulk`, `/Me`: SCIM features the sidecar does not offer (501).
    Unsupported(&'static str),
}

/// The SCIM base path.
pub const SCIM_PREFIX: &str = "/scim/v2";

impl Route {
    /// Whether the route needs a bearer token (every SCIM route does).
    pub fn is_scim(&self) -> bool {
        !matches!(self, Route::Livez | Route::Readyz | Route::Metrics)
    }

    /// A short label for logs and metrics (never contains ids).
    pub fn label(&self) -> &'static str {
        match self {
            Route::Livez => "livez",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::List(Resource::User) => "list_users",
            Route::List(Resource::Group) => "list_groups",
            Route::Search(Resource::User) => "search_users",
            Route::Search(Resource::Group) => "search_groups",
            Route::SearchAll => "search",
            Route::Get(Resource::User, _) => "get_user",
            Route::Get(Resource::Group, _) => "get_group",
            Route::Create(Resource::User) => "create_user",
            Route::Create(Resource::Group) => "create_group",
            Route::Replace(Resource::User, _) => "replace_user",
            Route::Replace(Resource::Group, _) => "replace_group",
            Route::Patch(Resource::User, _) => "patch_user",
            Route::Patch(Resource::Group, _) => "patch_group",
            Route::Delete(Resource::User, _) => "delete_user",
            Route::Delete(Resource::Group, _) => "delete_group",
            Route::ServiceProviderConfig => "service_provider_config",
            Route::ResourceTypes(_) => "resource_types",
            Route::Schemas(_) => "schemas",
            Route::Unsupported(_) => "unsupported",
        }
    }

    /// Parses method and path. Unknown paths are `NotFound`; known paths with another
    /// method are `MethodNotAllowed` carrying the `Allow` list.
    pub fn from_request(method: &Method, path: &str) -> Result<Route, Error> {
        let not_found = || Error::NotFound { resource: "endpoint", id: path.to_string() };
        match path {
            "/livez" => return only_get(method, Route::Livez),
            "/readyz" => return only_get(method, Route::Readyz),
            "/metrics" => return only_get(method, Route::Metrics),
            _ => {}
        }
        let rest = path.strip_prefix(SCIM_PREFIX).ok_or_else(not_found)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return Err(not_found());
        }
        let segments: Vec<String> = rest
            .trim_end_matches('/')
            .split('/')
            .skip(1)
            .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
            .collect();
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        match segs.as_slice() {
            [".search"] => only(method, Method::POST, "POST", Route::SearchAll),
            ["ServiceProviderConfig"] => only_get(method, Route::ServiceProviderConfig),
            ["ResourceTypes"] => only_get(method, Route::ResourceTypes(None)),
            ["ResourceTypes", name] => only_get(method, Route::ResourceTypes(Some(name.to_string()))),
            ["Schemas"] => only_get(method, Route::Schemas(None)),
            ["Schemas", urn] => only_get(method, Route::Schemas(Some(urn.to_string()))),
            ["Bulk"] => Ok(Route::Unsupported("Bulk")),
            ["Me", ..] => Ok(Route::Unsupported("Me")),
            [name, rest @ ..] => match resource_named(name) {
                Some(r) => resource_route(method, r, name, rest).unwrap_or_else(|| Err(not_found())),
                None => Err(not_found()),
            },
            [] => Err(not_found()),
        }
    }
}

/// The resource type behind an endpoint name.
fn resource_named(name: &str) -> Option<Resource> {
    match name {
        "Users" => Some(Resource::User),
        "Groups" => Some(Resource::Group),
        _ => None,
    }
}

/// `/{Users|Groups}`, `/{Users|Groups}/.search` and `/{Users|Groups}/{id}`; `None`: no such
/// path.
fn resource_route(method: &Method, r: Resource, name: &str, rest: &[&str]) -> Option<Result<Route, Error>> {
    Some(match rest {
        [] => match *method {
            Method::GET => Ok(Route::List(r)),
            Method::POST => Ok(Route::Create(r)),
            _ => Err(Error::MethodNotAllowed { allow: "GET, POST" }),
        },
        [".search"] => only(method, Method::POST, "POST", Route::Search(r)),
        [id] if !id.is_empty() => placeholder(r, name, id).and_then(|()| {
            let id = id.to_string();
            match *method {
                Method::GET => Ok(Route::Get(r, id)),
                Method::PUT => Ok(Route::Replace(r, id)),
                Method::PATCH => Ok(Route::Patch(r, id)),
                Method::DELETE => Ok(Route::Delete(r, id)),
                _ => Err(Error::MethodNotAllowed { allow: "GET, PUT, PATCH, DELETE" }),
            }
        }),
        _ => return None,
    })
}

/// `/Users/<id>` copied from an example as it was printed: a 400 saying so.
fn placeholder(resource: Resource, name: &str, id: &str) -> Result<(), Error> {
    if !id.contains(['<', '>', '{', '}']) {
        return Ok(());
    }
    let what = if resource == Resource::User { "User" } else { "Group" };
    Err(Error::BadRequest {
        detail: format!(
            "{id} in the path is a placeholder: put the id of a {what} in its place (a number, e.g. {SCIM_PREFIX}/{name}/26)"
        ),
    })
}

fn only_get(method: &Method, route: Route) -> Result<Route, Error> {
    // HEAD is GET without a body: hyper drops the body for us.
    if method == Method::HEAD {
        return Ok(route);
    }
    only(method, Method::GET, "GET", route)
}

fn only(method: &Method, allowed: Method, allow: &'static str, route: Route) -> Result<Route, Error> {
    if *method == allowed {
        Ok(route)
    } else {
        Err(Error::MethodNotAllowed { allow })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_to_routes() {
        let ok = [
            ("GET", "/scim/v2/Users", Route::List(Resource::User)),
            ("GET", "/scim/v2/Users/", Route::List(Resource::User)),
            ("POST", "/scim/v2/Users", Route::Create(Resource::User)),
            ("GET", "/scim/v2/Users/10", Route::Get(Resource::User, "10".into())),
            ("PUT", "/scim/v2/Users/10", Route::Replace(Resource::User, "10".into())),
            ("PATCH", "/scim/v2/Users/10", Route::Patch(Resource::User, "10".into())),
            ("DELETE", "/scim/v2/Users/10", Route::Delete(Resource::User, "10".into())),
            ("POST", "/scim/v2/Users/.search", Route::Search(Resource::User)),
            ("POST", "/scim/v2/Groups/.search", Route::Search(Resource::Group)),
            ("GET", "/scim/v2/Groups/31", Route::Get(Resource::Group, "31".into())),
            ("POST", "/scim/v2/.search", Route::SearchAll),
            ("GET", "/scim/v2/ServiceProviderConfig", Route::ServiceProviderConfig),
            ("GET", "/scim/v2/ResourceTypes", Route::ResourceTypes(None)),
            ("GET", "/scim/v2/ResourceTypes/User", Route::ResourceTypes(Some("User".into()))),
            (
                "GET",
                "/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
                Route::Schemas(Some("urn:ietf:params:scim:schemas:core:2.0:User".into())),
            ),
            ("GET", "/scim/v2/Users/a%20b", Route::Get(Resource::User, "a b".into())),
            ("POST", "/scim/v2/Bulk", Route::Unsupported("Bulk")),
            ("GET", "/livez", Route::Livez),
            ("GET", "/readyz", Route::Readyz),
        ];
        for (method, path, want) in ok {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            assert_eq!(Route::from_request(&m, path).unwrap(), want, "{method} {path}");
        }
    }

    #[test]
    fn wrong_methods_and_unknown_paths() {
        let cases = [
            ("DELETE", "/scim/v2/Users", Some("GET, POST")),
            ("POST", "/scim/v2/Users/10", Some("GET, PUT, PATCH, DELETE")),
            ("PUT", "/scim/v2/ServiceProviderConfig", Some("GET")),
            ("POST", "/scim/v2/Schemas", Some("GET")),
            ("DELETE", "/scim/v2/ResourceTypes/User", Some("GET")),
            ("GET", "/scim/v2/.search", Some("POST")),
            ("GET", "/scim/v2/Widgets", None),
            ("GET", "/scim/v2", None),
            ("GET", "/scim/v2x/Users", None),
            ("GET", "/api/v1/users", None),
            ("GET", "/scim/v2/Users/10/extra", None),
        ];
        let placeholder = Route::from_request(&Method::PATCH, "/scim/v2/Users/%3Cid%3E");
        assert!(
            matches!(&placeholder, Err(Error::BadRequest { detail }) if detail.starts_with("<id> in the path is a placeholder")),
            "{placeholder:?}"
        );
        for (method, path, allow) in cases {
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            match (Route::from_request(&m, path), allow) {
                (Err(Error::MethodNotAllowed { allow: got }), Some(want)) => {
                    assert_eq!(got, want, "{path}")
                }
                (Err(Error::NotFound { .. }), None) => {}
                (other, _) => panic!("{method} {path}: {other:?}"),
            }
        }
    }
}
