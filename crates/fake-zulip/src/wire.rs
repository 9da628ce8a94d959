//! Zulip's wire conventions, written for the fake alone: form/query parameters with
//! JSON-encoded values, the `{result,msg,code}` envelope, Basic-auth decoding, HTML 404s.

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Response, StatusCode};
use serde_json::{json, Map, Value};

/// The parameters of one request: the query string, then the form body (later wins, like
/// Django's merged view). A JSON body is never read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

/// An error answered in Zulip's envelope.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub code: String,
    pub msg: String,
    /// Extra keys (`var_name`, `objections`, …), placed between `msg` and `code`.
    pub extra: Vec<(String, Value)>,
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// What `Authorization` carried.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AuthHeader {
    Missing,
    /// A scheme other than Basic.
    NotBasic,
    /// Not base64, not UTF-8, or no colon.
    Malformed,
    Basic {
        email: String,
        api_key: String,
    },
}

// === impl Params ===

impl Params {
    pub fn new(query: &[(String, String)], form: &[(String, String)]) -> Self {
        let mut pairs = query.to_vec();
        pairs.extend_from_slice(form);
        Params { pairs }
    }

    /// The raw value (the last one given).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Parameter names not in `known`, deduplicated, in order of appearance.
    pub fn unknown(&self, known: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (k, _) in &self.pairs {
            if !known.contains(&k.as_str()) && !out.contains(k) {
                out.push(k.clone());
            }
        }
        out
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    pub fn required_string(&self, name: &str) -> ApiResult<String> {
        self.string(name).ok_or_else(|| ApiError::missing(name))
    }

    fn json(&self, name: &str) -> ApiResult<Option<Value>> {
        match self.get(name) {
            None => Ok(None),
            Some(raw) => serde_json::from_str::<Value>(raw)
                .map(Some)
                .map_err(|_| ApiError::bad(format!("{name} is not valid JSON"))),
        }
    }

    pub fn json_value(&self, name: &str) -> ApiResult<Option<Value>> {
        self.json(name)
    }

    pub fn json_int(&self, name: &str) -> ApiResult<Option<i64>> {
        match self.json(name)? {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| ApiError::bad(format!("{name} is not an integer"))),
        }
    }

    pub fn json_bool(&self, name: &str) -> ApiResult<Option<bool>> {
        match self.json(name)? {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| ApiError::bad(format!("{name} is not a boolean"))),
        }
    }

    /// A JSON list of integers (ids).
    pub fn json_int_list(&self, name: &str) -> ApiResult<Option<Vec<u64>>> {
        match self.json(name)? {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    // Negative ids cannot exist; keep them as "unknown" via u64::MAX.
                    match (v.as_u64(), v.as_i64()) {
                        (Some(n), _) => Ok(n),
                        (None, Some(_)) => Ok(u64::MAX),
                        _ => Err(ApiError::bad(format!("{name}[{i}] is not an integer"))),
                    }
                })
                .collect::<ApiResult<Vec<u64>>>()
                .map(Some),
            Some(_) => Err(ApiError::bad(format!("{name} is not a list"))),
        }
    }

    pub fn required_int_list(&self, name: &str) -> ApiResult<Vec<u64>> {
        self.json_int_list(name)?.ok_or_else(|| ApiError::missing(name))
    }
}

// === impl ApiError ===

impl ApiError {
    pub fn new(status: u16, code: &str, msg: impl Into<String>) -> Self {
        ApiError { status, code: code.to_string(), msg: msg.into(), extra: Vec::new() }
    }

    /// 400 `BAD_REQUEST`, Zulip's default for logical errors.
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError::new(400, "BAD_REQUEST", msg)
    }

    pub fn missing(name: &str) -> Self {
        ApiError::new(400, "REQUEST_VARIABLE_MISSING", format!("Missing '{name}' argument"))
            .with("var_name", json!(name))
    }

    pub fn principal(msg: &str) -> Self {
        ApiError::new(400, "UNAUTHORIZED_PRINCIPAL", msg)
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.push((key.to_string(), value));
        self
    }

    pub fn body(&self) -> Value {
        let mut m = Map::new();
        m.insert("result".into(), json!("error"));
        m.insert("msg".into(), json!(self.msg));
        for (k, v) in &self.extra {
            m.insert(k.clone(), v.clone());
        }
        m.insert("code".into(), json!(self.code));
        Value::Object(m)
    }
}

pub(crate) type Resp = Response<Full<Bytes>>;

fn response(status: u16, content_type: &str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

pub(crate) fn json_response(status: u16, body: &Value) -> Resp {
    response(status, "application/json", body.to_string())
}

/// The success envelope with `data` after `result`/`msg`, plus
/// `ignored_parameters_unsupported` when some parameters were not understood.
pub(crate) fn success(data: Map<String, Value>, ignored: &[String]) -> Resp {
    let mut m = Map::new();
    m.insert("result".into(), json!("success"));
    m.insert("msg".into(), json!(""));
    for (k, v) in data {
        m.insert(k, v);
    }
    if !ignored.is_empty() {
        m.insert("ignored_parameters_unsupported".into(), json!(ignored));
    }
    json_response(200, &Value::Object(m))
}

pub(crate) fn error_response(e: &ApiError) -> Resp {
    let mut r = json_response(e.status, &e.body());
    if e.status == 401 {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Basic realm=\"zulip\""));
    }
    r
}

/// Django's 404 page: HTML, never JSON.
pub(crate) fn html_404(path: &str) -> Resp {
    let escaped = path.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n  <meta http-equiv=\"content-type\" \
         content=\"text/html; charset=utf-8\">\n  <title>Page not found at {escaped}</title>\n  \
         <meta name=\"robots\" content=\"NONE,NOARCHIVE\">\n</head>\n<body>\n  <h1>Page not \
         found <span>(404)</span></h1>\n</body>\n</html>\n"
    );
    response(404, "text/html; charset=utf-8", body)
}

/// Django's `HttpResponseNotAllowed` with a JSON body but an HTML content type.
pub(crate) fn method_not_allowed(allowed: &[&str]) -> Resp {
    let body = json!({"result": "error", "msg": "Method Not Allowed", "allowed_methods": allowed});
    let mut r = response(405, "text/html; charset=utf-8", body.to_string());
    if let Ok(v) = header::HeaderValue::from_str(&allowed.join(", ")) {
        r.headers_mut().insert(header::ALLOW, v);
    }
    r
}

pub(crate) fn empty_405() -> Resp {
    let mut r = response(405, "text/html; charset=utf-8", "");
    r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
    r
}

pub(crate) fn raw(status: u16, content_type: &str, body: impl Into<Bytes>) -> Resp {
    response(status, content_type, body)
}

/// Formats seconds as Zulip does: always a decimal point (`"28.7068"`, `"50.0"`).
pub(crate) fn float_secs(secs: f64) -> String {
    let s = format!("{secs}");
    if s.contains('.') || s.contains('e') || !secs.is_finite() {
        s
    } else {
        format!("{s}.0")
    }
}

/// 429 `RATE_LIMIT_HIT` with `Retry-After` as a float string and `retry-after` in the body.
pub(crate) fn rate_limited(retry_after: f64, feature_level: u32) -> Resp {
    let msg = if feature_level > 313 {
        "API usage exceeded rate limit; see https://zulip.com/api/http-headers#rate-limiting-response-headers"
    } else {
        "API usage exceeded rate limit"
    };
    let err = ApiError::new(429, "RATE_LIMIT_HIT", msg).with("retry-after", json!(retry_after));
    let mut r = json_response(429, &err.body());
    if let Ok(v) = header::HeaderValue::from_str(&float_secs(retry_after)) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Decodes an `Authorization` header value the way Zulip's REST decorator does.
pub(crate) fn decode_auth(value: Option<&[u8]>) -> AuthHeader {
    let Some(value) = value else {
        return AuthHeader::Missing;
    };
    let value = String::from_utf8_lossy(value);
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return AuthHeader::NotBasic;
    }
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
        return AuthHeader::Malformed;
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return AuthHeader::Malformed;
    };
    match text.split_once(':') {
        Some((email, key)) => AuthHeader::Basic { email: email.to_string(), api_key: key.trim().to_string() },
        None => AuthHeader::Malformed,
    }
}

/// Zulip API keys are exactly 32 ASCII letters or digits.
pub(crate) fn well_formed_key(key: &str) -> bool {
    key.len() == 32 && key.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Parses `application/x-www-form-urlencoded` text into pairs.
pub(crate) fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}
