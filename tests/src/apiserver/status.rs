//! `metav1.Status` error bodies with the real apiserver's wording.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The user every request is authenticated as (shown in Forbidden messages).
pub const USER: &str = "meshsim-user";

/// An error answered as a JSON `Status` object.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after: Option<u64>,
}

/// `pods` or `deployments.apps`: how the apiserver names a resource in messages.
pub(crate) fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

fn details(group: &str, kind: &str, name: Option<&str>) -> Value {
    let mut d = serde_json::Map::new();
    if let Some(n) = name {
        d.insert("name".into(), json!(n));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    d.insert("kind".into(), json!(kind));
    Value::Object(d)
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn with_details(mut self, d: Value) -> Self {
        self.details = Some(d);
        self
    }

    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, plural)),
        )
        .with_details(details(group, plural, Some(name)))
    }

    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(group, plural)),
        )
        .with_details(details(group, plural, Some(name)))
    }

    pub fn conflict(group: &str, plural: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                qualified(group, plural)
            ),
        )
        .with_details(details(group, plural, Some(name)))
    }

    /// 422 Invalid with one cause, e.g. `metadata.name: Required value: name or generateName is required`.
    pub fn invalid(
        group: &str,
        kind: &str,
        name: &str,
        field: &str,
        cause: &str,
        msg: &str,
    ) -> Self {
        let mut d = details(group, kind, Some(name));
        d["causes"] = json!([{ "reason": cause, "message": msg, "field": field }]);
        Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {field}: {msg}"),
        )
        .with_details(d)
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", msg)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 in the RBAC authorizer's words.
    pub fn forbidden(
        group: &str,
        plural: &str,
        subresource: Option<&str>,
        verb: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Self {
        let resource = match subresource {
            Some(s) => format!("{plural}/{s}"),
            None => plural.to_string(),
        };
        let subject = match name {
            Some(n) => format!("{} \"{n}\"", qualified(group, plural)),
            None => qualified(group, plural),
        };
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        Self::new(
            403,
            "Forbidden",
            format!(
                "{subject} is forbidden: User \"{USER}\" cannot {verb} resource \"{resource}\" \
                 in API group \"{group}\" {scope}"
            ),
        )
        .with_details(details(group, plural, name))
    }

    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn unsupported_media_type(accepted: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {accepted}"
            ),
        )
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        let msg = msg.into();
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {msg}"),
        )
        .with_details(json!({ "causes": [{ "message": msg }] }))
    }

    /// An injected failure with the given HTTP code, worded as the apiserver would.
    pub fn injected(code: u16) -> Self {
        match code {
            429 => {
                let mut e = Self::new(
                    429,
                    "TooManyRequests",
                    "Too many requests, please try again later.",
                )
                .with_details(json!({ "retryAfterSeconds": 1 }));
                e.retry_after = Some(1);
                e
            }
            500 => Self::internal("meshsim: injected fault"),
            503 => {
                let mut e = Self::new(
                    503,
                    "ServiceUnavailable",
                    "the server is currently unable to handle the request",
                )
                .with_details(json!({ "retryAfterSeconds": 1 }));
                e.retry_after = Some(1);
                e
            }
            504 => Self::new(
                504,
                "Timeout",
                "the server was unable to return a response in the time allotted, but may still be processing the request",
            ),
            401 => Self::unauthorized(),
            403 => Self::new(403, "Forbidden", "forbidden: meshsim injected fault"),
            404 => Self::path_not_found(),
            409 => Self::new(409, "Conflict", "meshsim: injected conflict"),
            c => Self::new(c, "", format!("meshsim: injected fault ({c})")),
        }
    }

    pub fn to_status(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if self.reason.is_empty()
            && let Some(m) = v.as_object_mut()
        {
            m.remove("reason");
        }
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = json_response(self.code, &self.to_status());
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// A JSON body with `content-type: application/json`.
pub(crate) fn json_response(code: u16, v: &Value) -> Response {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut resp = (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body,
    )
        .into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
