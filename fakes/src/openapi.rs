//! Checks HTTP exchanges against an OpenAPI 3.0 document: which operation a request is (path
//! template and method), its path, query and header parameters, its body's media type and
//! schema, the `Accept` it sends, and the status, media type, headers and schema of the answer.
//!
//! It decides whether an exchange is one the vendor's schema defines, reporting each difference as
//! a [`Violation`]; it never changes an exchange and never forgives one, except for the written
//! [`Erratum`]s, each a mistake in the vendor's document that the real service contradicts.
//!
//! The schema dialect is OpenAPI 3.0's: `nullable`; `readOnly` properties must not be sent and
//! are not required in requests, `writeOnly` ones must not be answered and are not required in
//! responses; `discriminator` selects the `oneOf` branch. Stricter than JSON Schema on purpose: an
//! object property that no applicable schema declares (through `properties`, `allOf`, the valid
//! `anyOf`/`oneOf` branches, or `additionalProperties`) is a violation, as if every object schema
//! said `unevaluatedProperties: false`; an `anyOf`/`oneOf` branch is valid only if it declares
//! every property of the object by itself. Only a schema that declares nothing at all (`{}` or
//! `{type: object}`) accepts any property. Path parameters are checked as sent (percent-encoded),
//! since the Atlas patterns spell the encoded form (`%2F`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context as _, bail};
use fancy_regex::Regex;
use serde_json::{Map, Value};

/// Which half of an exchange a violation is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// What the client sent.
    Request,
    /// What the fake answered.
    Response,
}

/// One difference between an exchange and the schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Request or response.
    pub direction: Direction,
    /// HTTP method.
    pub method: String,
    /// Path as sent.
    pub path: String,
    /// The operation, when the request matched one.
    pub operation: Option<String>,
    /// Response status, for response violations.
    pub status: Option<u16>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = match self.direction {
            Direction::Request => "request",
            Direction::Response => "response",
        };
        write!(f, "{side} {} {}", self.method, self.path)?;
        if let Some(op) = &self.operation {
            write!(f, " ({op})")?;
        }
        if let Some(status) = self.status {
            write!(f, " status {status}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A documented correction of the vendor's schema. `apply` returns false when the document no
/// longer has the mistake, which makes loading fail so that the erratum gets removed.
pub struct Erratum {
    /// Why the document is wrong, and what the real service does.
    pub why: &'static str,
    /// The correction.
    pub apply: fn(&mut Value) -> bool,
}

/// One HTTP request, as received.
#[derive(Clone, Debug)]
pub struct RequestParts<'a> {
    /// e.g. `GET`.
    pub method: &'a str,
    /// Path as sent, percent-encoded, base path included.
    pub path: &'a str,
    /// Query string as sent, without `?`.
    pub query: Option<&'a str>,
    /// Headers (names in any case).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: &'a [u8],
}

impl RequestParts<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// An operation of the document.
#[derive(Clone, Debug)]
pub struct Operation {
    /// `operationId`.
    pub id: String,
    /// Upper-case method.
    pub method: String,
    /// Path template, e.g. `/zones/{zone_id}`.
    pub template: String,
    segments: Vec<Segment>,
    pointer: String,
}

#[derive(Clone, Debug)]
enum Segment {
    Literal(String),
    Param(String),
}

/// A request matched to an operation.
#[derive(Clone, Debug)]
pub struct Matched<'s> {
    /// The operation.
    pub operation: &'s Operation,
    /// Path parameters, percent-decoded.
    pub params: BTreeMap<String, String>,
}

/// A loaded document.
pub struct Spec {
    doc: Value,
    base_path: String,
    operations: Vec<Operation>,
    regexes: Mutex<HashMap<String, Result<Arc<Regex>, String>>>,
}

impl fmt::Debug for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spec")
            .field("base_path", &self.base_path)
            .field("operations", &self.operations.len())
            .finish()
    }
}

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

impl Spec {
    /// Parses a document and applies `errata`.
    pub fn from_json(text: &str, errata: &[Erratum]) -> anyhow::Result<Self> {
        let mut doc: Value = serde_json::from_str(text).context("the OpenAPI document is not JSON")?;
        for erratum in errata {
            if !(erratum.apply)(&mut doc) {
                bail!("erratum no longer applies to the document, remove it: {}", erratum.why);
            }
        }
        let base_path = doc
            .pointer("/servers/0/url")
            .and_then(Value::as_str)
            .and_then(|u| u.split_once("://").map(|(_, rest)| rest))
            .and_then(|rest| rest.find('/').map(|i| rest[i..].trim_end_matches('/').to_string()))
            .unwrap_or_default();
        let mut operations = Vec::new();
        let paths = doc.get("paths").and_then(Value::as_object).context("the document has no paths")?;
        for (template, item) in paths {
            let segments = template
                .trim_start_matches('/')
                .split('/')
                .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => Segment::Param(name.to_string()),
                    None => Segment::Literal(s.to_string()),
                })
                .collect::<Vec<_>>();
            for method in METHODS {
                if let Some(op) = item.get(*method) {
                    let id = op.get("operationId").and_then(Value::as_str).unwrap_or(template).to_string();
                    operations.push(Operation {
                        id,
                        method: method.to_ascii_uppercase(),
                        template: template.clone(),
                        segments: segments.clone(),
                        pointer: format!("/paths/{}/{method}", escape_pointer(template)),
                    });
                }
            }
        }
        Ok(Self { doc, base_path, operations, regexes: Mutex::new(HashMap::new()) })
    }

    /// The path every operation sits under, from the first server URL (e.g. `/client/v4`).
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// Every operation.
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// The operation with this id.
    pub fn operation(&self, id: &str) -> Option<&Operation> {
        self.operations.iter().find(|o| o.id == id)
    }

    /// The media type of the operation's first success answer.
    pub fn success_media_type(&self, op: &Operation) -> Option<String> {
        let responses = self.op_value(op).get("responses")?.as_object()?;
        responses
            .iter()
            .filter(|(code, _)| code.starts_with('2'))
            .find_map(|(_, r)| self.resolve(r).get("content")?.as_object()?.keys().next().cloned())
    }

    fn op_value(&self, op: &Operation) -> &Value {
        self.doc.pointer(&op.pointer).unwrap_or(&Value::Null)
    }

    fn path_item(&self, op: &Operation) -> &Value {
        self.doc.pointer(&format!("/paths/{}", escape_pointer(&op.template))).unwrap_or(&Value::Null)
    }

    /// Follows `$ref`s to the object they name.
    fn resolve<'v>(&'v self, mut value: &'v Value) -> &'v Value {
        for _ in 0..32 {
            match value.get("$ref").and_then(Value::as_str).and_then(|r| self.lookup(r)) {
                Some(target) => value = target,
                None => return value,
            }
        }
        value
    }

    fn lookup(&self, reference: &str) -> Option<&Value> {
        self.doc.pointer(reference.strip_prefix('#')?)
    }

    /// Finds the operation of a request; the error says why none matches.
    pub fn match_request(&self, method: &str, path: &str) -> Result<Matched<'_>, String> {
        let Some(rest) = path.strip_prefix(self.base_path.as_str()) else {
            return Err(format!("the path is not under the API's base path {}", self.base_path));
        };
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let mut best: Option<(&str, usize)> = None;
        for op in &self.operations {
            if op.segments.len() != parts.len() {
                continue;
            }
            let fits = op.segments.iter().zip(&parts).all(|(seg, part)| match seg {
                Segment::Literal(l) => l == part,
                Segment::Param(_) => !part.is_empty(),
            });
            if fits {
                let literals = op.segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count();
                if best.is_none_or(|(_, n)| literals > n) {
                    best = Some((op.template.as_str(), literals));
                }
            }
        }
        let Some((template, _)) = best else {
            return Err("no path of the schema matches".to_string());
        };
        let Some(op) =
            self.operations.iter().find(|o| o.template == template && o.method.eq_ignore_ascii_case(method))
        else {
            return Err(format!("the schema defines no {} on {template}", method.to_ascii_uppercase()));
        };
        let params = op
            .segments
            .iter()
            .zip(&parts)
            .filter_map(|(seg, part)| match seg {
                Segment::Param(name) => Some((name.clone(), percent_decode(part))),
                Segment::Literal(_) => None,
            })
            .collect();
        Ok(Matched { operation: op, params })
    }

    /// Checks a request; returns the operation it matched (if any) and every violation.
    pub fn check_request<'s>(&'s self, req: &RequestParts<'_>) -> (Option<Matched<'s>>, Vec<Violation>) {
        let violation = |op: Option<&Operation>, message: String| Violation {
            direction: Direction::Request,
            method: req.method.to_string(),
            path: req.path.to_string(),
            operation: op.map(|o| o.id.clone()),
            status: None,
            message,
        };
        let matched = match self.match_request(req.method, req.path) {
            Ok(m) => m,
            Err(message) => return (None, vec![violation(None, message)]),
        };
        let op = matched.operation;
        let op_value = self.op_value(op);
        let mut messages = Vec::new();

        // Parameters: the path item's, overridden by the operation's.
        let mut params: Vec<&Value> = Vec::new();
        for source in [self.path_item(op).get("parameters"), op_value.get("parameters")] {
            for p in source.and_then(Value::as_array).into_iter().flatten() {
                let p = self.resolve(p);
                params.retain(|q| !(q.get("name") == p.get("name") && q.get("in") == p.get("in")));
                params.push(p);
            }
        }
        let param = |name: &str, location: &str| {
            params.iter().copied().find(|p| {
                p.get("name").and_then(Value::as_str) == Some(name)
                    && p.get("in").and_then(Value::as_str) == Some(location)
            })
        };

        let raw_parts: Vec<&str> =
            req.path[self.base_path.len()..].trim_start_matches('/').split('/').collect();
        for (seg, raw) in op.segments.iter().zip(&raw_parts) {
            if let Segment::Param(name) = seg {
                match param(name, "path") {
                    Some(p) => self.check_param(p, raw, &format!("path parameter {name}"), &mut messages),
                    None => messages.push(format!("path parameter {name} is not declared")),
                }
            }
        }
        let query = query_pairs(req.query);
        for (k, v) in &query {
            match param(k, "query") {
                Some(p) => self.check_param(p, v, &format!("query parameter {k}"), &mut messages),
                None => messages.push(format!("query parameter {k} is not declared by the operation")),
            }
        }
        for p in &params {
            let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
            let required = p.get("required") == Some(&Value::Bool(true));
            match p.get("in").and_then(Value::as_str) {
                Some("query") if required && !query.iter().any(|(k, _)| k == name) => {
                    messages.push(format!("required query parameter {name} is missing"))
                }
                Some("header") => match req.header(name) {
                    Some(v) => self.check_param(p, v, &format!("header {name}"), &mut messages),
                    None if required => messages.push(format!("required header {name} is missing")),
                    None => {}
                },
                _ => {}
            }
        }

        // Body.
        let body_spec = op_value.get("requestBody").map(|b| self.resolve(b));
        match body_spec {
            None if !req.body.is_empty() => messages.push("the operation takes no request body".to_string()),
            None => {}
            Some(spec) => {
                let required = spec.get("required") == Some(&Value::Bool(true));
                let content = spec.get("content").and_then(Value::as_object);
                if req.body.is_empty() {
                    if required {
                        messages.push("the request body is required".to_string());
                    }
                } else {
                    let media = req.header("content-type").map(media_type);
                    let entry = media.as_deref().and_then(|m| content.and_then(|c| c.get(m)));
                    match (media, entry) {
                        (None, _) => messages.push("the request has a body but no Content-Type".to_string()),
                        (Some(m), None) => messages.push(format!(
                            "Content-Type {m} is not one the operation accepts ({})",
                            content
                                .map(|c| c.keys().cloned().collect::<Vec<_>>().join(", "))
                                .unwrap_or_default()
                        )),
                        (Some(m), Some(entry)) => {
                            self.check_body(entry, &m, req.body, Direction::Request, &mut messages)
                        }
                    }
                }
            }
        }

        // Accept: must admit a media type of a success answer; required when those are versioned
        // vendor types (Atlas), which a server picks by it.
        let success_types: Vec<String> = op_value
            .get("responses")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(code, _)| code.starts_with('2'))
            .flat_map(|(_, r)| {
                self.resolve(r)
                    .get("content")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .map(|(k, _)| k.clone())
            })
            .collect();
        if !success_types.is_empty() {
            match req.header("accept") {
                Some(accept) => {
                    let admitted = accept.split(',').map(media_type).any(|a| {
                        a == "*/*"
                            || success_types.iter().any(|t| {
                                *t == a
                                    || a.strip_suffix("/*")
                                        .is_some_and(|major| t.starts_with(&format!("{major}/")))
                            })
                    });
                    if !admitted {
                        messages.push(format!(
                            "Accept {accept:?} admits none of the operation's media types ({})",
                            success_types.join(", ")
                        ));
                    }
                }
                None if success_types.iter().any(|t| t != "application/json") => messages.push(format!(
                    "the request has no Accept header; the operation answers {}",
                    success_types.join(", ")
                )),
                None => {}
            }
        }

        let violations = messages.into_iter().map(|m| violation(Some(op), m)).collect();
        (Some(matched), violations)
    }

    /// Checks an answer to `op`.
    pub fn check_response(
        &self,
        op: &Operation,
        path: &str,
        status: u16,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Vec<Violation> {
        let mut messages = Vec::new();
        let responses = self.op_value(op).get("responses").and_then(Value::as_object);
        let code = status.to_string();
        let class = format!("{}XX", status / 100);
        let response = responses.and_then(|r| {
            r.get(&code)
                .or_else(|| r.iter().find(|(k, _)| k.eq_ignore_ascii_case(&class)).map(|(_, v)| v))
                .or_else(|| r.get("default"))
        });
        match response.map(|r| self.resolve(r)) {
            None => messages.push(format!("the operation defines no response with status {status}")),
            Some(response) => {
                let header = |name: &str| {
                    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
                };
                for (name, h) in response.get("headers").and_then(Value::as_object).into_iter().flatten() {
                    if let Some(v) = header(name) {
                        self.check_param(self.resolve(h), v, &format!("header {name}"), &mut messages);
                    }
                }
                let content = response.get("content").and_then(Value::as_object).filter(|c| !c.is_empty());
                match content {
                    None if !body.is_empty() => {
                        messages.push("the answer has a body but the operation defines none".to_string())
                    }
                    None => {}
                    Some(content) => {
                        let has_schema = content.values().any(|m| m.get("schema").is_some());
                        if body.is_empty() {
                            if has_schema {
                                messages.push("the answer has no body".to_string());
                            }
                        } else {
                            let media = header("content-type").map(media_type);
                            match media.as_deref().and_then(|m| content.get(m).map(|e| (m, e))) {
                                Some((m, entry)) => {
                                    self.check_body(entry, m, body, Direction::Response, &mut messages)
                                }
                                None => messages.push(format!(
                                    "Content-Type {} is not one the response defines ({})",
                                    media.unwrap_or_else(|| "(none)".into()),
                                    content.keys().cloned().collect::<Vec<_>>().join(", ")
                                )),
                            }
                        }
                    }
                }
            }
        }
        messages
            .into_iter()
            .map(|message| Violation {
                direction: Direction::Response,
                method: op.method.clone(),
                path: path.to_string(),
                operation: Some(op.id.clone()),
                status: Some(status),
                message,
            })
            .collect()
    }

    fn check_body(
        &self,
        entry: &Value,
        media: &str,
        body: &[u8],
        direction: Direction,
        messages: &mut Vec<String>,
    ) {
        if !(media == "application/json" || media.ends_with("+json")) {
            return;
        }
        let value: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => {
                messages.push(format!("the body is not JSON: {e}"));
                return;
            }
        };
        if let Some(schema) = entry.get("schema") {
            self.check_value(schema, &value, direction, "body", messages);
        }
    }

    /// Checks a parameter or header value (a string on the wire) against its schema, converted to
    /// the schema's type first.
    fn check_param(&self, param: &Value, raw: &str, what: &str, messages: &mut Vec<String>) {
        let Some(schema) = param.get("schema") else { return };
        let ty = self.resolve(schema).get("type").and_then(Value::as_str);
        let value = match ty {
            Some("integer") => match raw.parse::<i64>() {
                Ok(n) => Value::from(n),
                Err(_) => return messages.push(format!("{what}: {raw:?} is not an integer")),
            },
            Some("number") => match raw.parse::<f64>() {
                Ok(n) => Value::from(n),
                Err(_) => return messages.push(format!("{what}: {raw:?} is not a number")),
            },
            Some("boolean") => match raw {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => return messages.push(format!("{what}: {raw:?} is not true or false")),
            },
            _ => Value::String(raw.to_string()),
        };
        self.check_value(schema, &value, Direction::Request, what, messages);
    }

    /// Checks `value` against `schema`, appending one message per violation.
    pub fn check_value(
        &self,
        schema: &Value,
        value: &Value,
        direction: Direction,
        at: &str,
        out: &mut Vec<String>,
    ) {
        Checker { spec: self, direction }.check(schema, value, at, out);
    }

    fn regex(&self, pattern: &str) -> Result<Arc<Regex>, String> {
        let mut cache = self.regexes.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .entry(pattern.to_string())
            .or_insert_with(|| Regex::new(pattern).map(Arc::new).map_err(|e| e.to_string()))
            .clone()
    }
}

/// Properties a schema accounted for.
enum Evaluated {
    All,
    Some(BTreeSet<String>),
}

impl Evaluated {
    fn none() -> Self {
        Evaluated::Some(BTreeSet::new())
    }

    fn merge(&mut self, other: Evaluated) {
        match (&mut *self, other) {
            (Evaluated::All, _) => {}
            (_, Evaluated::All) => *self = Evaluated::All,
            (Evaluated::Some(a), Evaluated::Some(b)) => a.extend(b),
        }
    }
}

struct Checker<'s> {
    spec: &'s Spec,
    direction: Direction,
}

/// Keywords by which a schema says which properties an object has.
const DECLARING: &[&str] =
    &["properties", "additionalProperties", "required", "allOf", "anyOf", "oneOf", "discriminator", "$ref"];

impl Checker<'_> {
    fn check(&self, schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
        let evaluated = self.eval(schema, schema, value, at, out);
        if let (Some(map), Evaluated::Some(known)) = (value.as_object(), evaluated) {
            for key in map.keys().filter(|k| !known.contains(*k)) {
                out.push(format!("{at}: property `{key}` is not declared by the schema"));
            }
        }
    }

    fn is_marked(&self, schema: &Value, keyword: &str) -> bool {
        let schema = self.spec.resolve(schema);
        schema.get(keyword) == Some(&Value::Bool(true))
            || schema
                .get("allOf")
                .and_then(Value::as_array)
                .is_some_and(|all| all.iter().any(|s| self.is_marked(s, keyword)))
    }

    /// Every declaration of property `name` in a composed schema.
    fn declarations<'v>(&'v self, schema: &'v Value, name: &str, out: &mut Vec<&'v Value>, depth: u32) {
        if depth > 16 {
            return;
        }
        let schema = self.spec.resolve(schema);
        if let Some(p) = schema.get("properties").and_then(|p| p.get(name)) {
            out.push(p);
        }
        for key in ["allOf", "anyOf", "oneOf"] {
            for s in schema.get(key).and_then(Value::as_array).into_iter().flatten() {
                self.declarations(s, name, out, depth + 1);
            }
        }
    }

    /// Evaluates `schema` on `value`; `root` is the outermost schema applied to this same value,
    /// where `required` looks up whether a missing property is read- or write-only.
    fn eval(
        &self,
        root: &Value,
        schema: &Value,
        value: &Value,
        at: &str,
        out: &mut Vec<String>,
    ) -> Evaluated {
        let Some(obj) = schema.as_object() else { return Evaluated::All };
        if let Some(reference) = obj.get("$ref").and_then(Value::as_str) {
            return match self.spec.lookup(reference) {
                Some(target) => self.eval(root, target, value, at, out),
                None => {
                    out.push(format!("{at}: the schema's $ref {reference} names nothing"));
                    Evaluated::All
                }
            };
        }
        if value.is_null() {
            let nullable = obj.get("nullable") == Some(&Value::Bool(true))
                || obj.get("enum").and_then(Value::as_array).is_some_and(|e| e.iter().any(Value::is_null));
            if nullable {
                return Evaluated::All;
            }
            if obj.contains_key("type") {
                out.push(format!("{at}: null is not allowed here (not nullable)"));
                return Evaluated::All;
            }
        }
        if let Some(ty) = obj.get("type").and_then(Value::as_str)
            && !type_matches(ty, value)
        {
            out.push(format!("{at}: expected {ty}, found {}", kind_of(value)));
            return Evaluated::All;
        }
        if let Some(options) = obj.get("enum").and_then(Value::as_array)
            && !options.iter().any(|o| json_eq(o, value))
        {
            out.push(format!(
                "{at}: {} is not one of {}",
                short(value),
                short(&Value::Array(options.clone()))
            ));
        }
        match value {
            Value::String(s) => self.string(obj, s, at, out),
            Value::Number(_) => number(obj, value, at, out),
            Value::Array(items) => self.array(obj, items, at, out),
            _ => {}
        }
        let mut evaluated = Evaluated::none();
        if let Value::Object(map) = value {
            self.object(root, obj, map, at, out, &mut evaluated);
        }
        if let Some(all) = obj.get("allOf").and_then(Value::as_array) {
            for s in all {
                let e = self.eval(root, s, value, at, out);
                evaluated.merge(e);
            }
        }
        if let Some(any) = obj.get("anyOf").and_then(Value::as_array) {
            let (valid, best) = self.branches(root, any, value, at);
            if valid.is_empty() {
                out.push(format!("{at}: matches none of the anyOf schemas{}", best));
                evaluated = Evaluated::All;
            }
            for e in valid {
                evaluated.merge(e);
            }
        }
        if let Some(one) = obj.get("oneOf").and_then(Value::as_array) {
            let discriminated = obj.get("discriminator").and_then(|d| {
                let property = d.get("propertyName")?.as_str()?;
                Some((property, d.get("mapping").and_then(Value::as_object)))
            });
            match (discriminated, value.as_object()) {
                (Some((property, mapping)), Some(map)) => match map.get(property).and_then(Value::as_str) {
                    Some(tag) => match mapping.and_then(|m| m.get(tag)).and_then(Value::as_str) {
                        Some(target) => {
                            let target = Value::Object(Map::from_iter([("$ref".into(), target.into())]));
                            let e = self.eval(root, &target, value, at, out);
                            evaluated.merge(e);
                        }
                        None => {
                            out.push(format!("{at}.{property}: {tag:?} names none of the oneOf schemas"));
                            evaluated = Evaluated::All;
                        }
                    },
                    None => {
                        out.push(format!("{at}: the discriminator property {property} is missing"));
                        evaluated = Evaluated::All;
                    }
                },
                _ => {
                    let (valid, best) = self.branches(root, one, value, at);
                    match valid.len() {
                        1 => evaluated.merge(valid.into_iter().next().unwrap_or(Evaluated::All)),
                        0 => {
                            out.push(format!("{at}: matches none of the oneOf schemas{best}"));
                            evaluated = Evaluated::All;
                        }
                        n => {
                            out.push(format!(
                                "{at}: matches {n} of the oneOf schemas, exactly one is allowed"
                            ));
                            evaluated = Evaluated::All;
                        }
                    }
                }
            }
        }
        if !DECLARING.iter().any(|k| obj.contains_key(*k)) {
            evaluated = Evaluated::All;
        }
        evaluated
    }

    /// Evaluates each alternative; returns the evaluations of the valid ones, and the messages of
    /// the closest invalid one.
    fn branches(&self, root: &Value, schemas: &[Value], value: &Value, at: &str) -> (Vec<Evaluated>, String) {
        let mut valid = Vec::new();
        let mut best: Option<Vec<String>> = None;
        for s in schemas {
            let mut msgs = Vec::new();
            let e = self.eval(root, s, value, at, &mut msgs);
            // A branch counts only if it also accounts for every property: the vendors'
            // alternatives are whole object schemas.
            if let (Some(map), Evaluated::Some(known)) = (value.as_object(), &e)
                && msgs.is_empty()
                && let Some(k) = map.keys().find(|k| !known.contains(*k))
            {
                msgs.push(format!("{at}: property `{k}` is not declared by the schema"));
            }
            if msgs.is_empty() {
                valid.push(e);
            } else if best.as_ref().is_none_or(|b| msgs.len() < b.len()) {
                best = Some(msgs);
            }
        }
        let best = best.map(|b| format!(" (closest: {})", b.join("; "))).unwrap_or_default();
        (valid, best)
    }

    fn string(&self, obj: &Map<String, Value>, s: &str, at: &str, out: &mut Vec<String>) {
        let len = s.chars().count() as u64;
        if let Some(min) = obj.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            out.push(format!("{at}: {} is shorter than {min} characters", short(&Value::from(s))));
        }
        if let Some(max) = obj.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            out.push(format!("{at}: a string of {len} characters is longer than {max}"));
        }
        if let Some(pattern) = obj.get("pattern").and_then(Value::as_str) {
            match self.spec.regex(pattern).and_then(|re| re.is_match(s).map_err(|e| e.to_string())) {
                Ok(true) => {}
                Ok(false) => {
                    out.push(format!("{at}: {} does not match the pattern {pattern}", short(&Value::from(s))))
                }
                Err(e) => out.push(format!("{at}: the schema's pattern {pattern} cannot be used: {e}")),
            }
        }
        if let Some(format) = obj.get("format").and_then(Value::as_str) {
            let ok = match format {
                "date-time" => is_date_time(s),
                "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
                "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
                "hostname" => is_hostname(s),
                _ => true,
            };
            if !ok {
                out.push(format!("{at}: {} is not a valid {format}", short(&Value::from(s))));
            }
        }
    }

    fn array(&self, obj: &Map<String, Value>, items: &[Value], at: &str, out: &mut Vec<String>) {
        if let Some(min) = obj.get("minItems").and_then(Value::as_u64)
            && (items.len() as u64) < min
        {
            out.push(format!("{at}: fewer than {min} items"));
        }
        if let Some(max) = obj.get("maxItems").and_then(Value::as_u64)
            && (items.len() as u64) > max
        {
            out.push(format!("{at}: more than {max} items"));
        }
        if obj.get("uniqueItems") == Some(&Value::Bool(true)) {
            for (i, a) in items.iter().enumerate() {
                if items[..i].iter().any(|b| json_eq(a, b)) {
                    out.push(format!("{at}[{i}]: repeats an earlier item, items must be unique"));
                }
            }
        }
        if let Some(schema) = obj.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.check(schema, item, &format!("{at}[{i}]"), out);
            }
        }
    }

    fn object(
        &self,
        root: &Value,
        obj: &Map<String, Value>,
        map: &Map<String, Value>,
        at: &str,
        out: &mut Vec<String>,
        evaluated: &mut Evaluated,
    ) {
        let properties = obj.get("properties").and_then(Value::as_object);
        let mut known = BTreeSet::new();
        for (name, sub) in properties.into_iter().flatten() {
            let Some(v) = map.get(name) else { continue };
            known.insert(name.clone());
            let here = format!("{at}.{name}");
            match self.direction {
                Direction::Request if self.is_marked(sub, "readOnly") => {
                    out.push(format!("{here}: read-only property must not be sent"))
                }
                Direction::Response if self.is_marked(sub, "writeOnly") => {
                    out.push(format!("{here}: write-only property must not be answered"))
                }
                _ => {}
            }
            self.check(sub, v, &here, out);
        }
        match obj.get("additionalProperties") {
            Some(Value::Bool(true)) => *evaluated = Evaluated::All,
            Some(extra @ Value::Object(_)) => {
                for (name, v) in map.iter().filter(|(k, _)| !known.contains(*k)) {
                    self.check(extra, v, &format!("{at}.{name}"), out);
                }
                *evaluated = Evaluated::All;
            }
            _ => {}
        }
        evaluated.merge(Evaluated::Some(known));
        for name in
            obj.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str)
        {
            if map.contains_key(name) {
                continue;
            }
            let mut decls = Vec::new();
            self.declarations(root, name, &mut decls, 0);
            let exempt = decls.iter().any(|d| match self.direction {
                Direction::Request => self.is_marked(d, "readOnly"),
                Direction::Response => self.is_marked(d, "writeOnly"),
            });
            if !exempt {
                out.push(format!("{at}: required property `{name}` is missing"));
            }
        }
        if let Some(min) = obj.get("minProperties").and_then(Value::as_u64)
            && (map.len() as u64) < min
        {
            out.push(format!("{at}: fewer than {min} properties"));
        }
    }
}

fn number(obj: &Map<String, Value>, value: &Value, at: &str, out: &mut Vec<String>) {
    let Some(n) = value.as_f64() else { return };
    if let Some(min) = obj.get("minimum").and_then(Value::as_f64)
        && n < min
    {
        out.push(format!("{at}: {n} is below the minimum {min}"));
    }
    if let Some(max) = obj.get("maximum").and_then(Value::as_f64)
        && n > max
    {
        out.push(format!("{at}: {n} is above the maximum {max}"));
    }
    if obj.get("format").and_then(Value::as_str) == Some("int32")
        && !(f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&n)
    {
        out.push(format!("{at}: {n} does not fit int32"));
    }
}

fn type_matches(ty: &str, value: &Value) -> bool {
    match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => true,
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Equality with numbers compared by value (`1` equals `1.0`).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

fn short(value: &Value) -> String {
    let s = value.to_string();
    if s.chars().count() > 80 { format!("{}...", s.chars().take(77).collect::<String>()) } else { s }
}

fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && matches!(b[10], b'T' | b't')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && {
            let rest = &s[19..];
            let rest = match rest.strip_prefix('.') {
                Some(frac) => frac.trim_start_matches(|c: char| c.is_ascii_digit()),
                None => rest,
            };
            rest == "Z" || rest == "z" || {
                let r = rest.as_bytes();
                r.len() == 6
                    && matches!(r[0], b'+' | b'-')
                    && r[3] == b':'
                    && rest[1..3].bytes().all(|c| c.is_ascii_digit())
            }
        }
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

/// The media type of a `Content-Type` or `Accept` item, lower-cased, without parameters.
pub fn media_type(value: &str) -> String {
    value.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

/// The decoded `name=value` pairs of a query string (`+` is a space).
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(&k.replace('+', " ")), percent_decode(&v.replace('+', " ")))
        })
        .collect()
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn escape_pointer(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> Spec {
        let doc = json!({
            "openapi": "3.0.1",
            "servers": [{"url": "https://api.example.com/v1"}],
            "paths": {"/things/{id}": {"put": {
                "operationId": "putThing",
                "parameters": [{"in": "path", "name": "id", "required": true, "schema": {"type": "string", "pattern": "^[a-z]+$"}}],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}},
                "responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}
            }}},
            "components": {"schemas": {
                "Base": {"properties": {"id": {"type": "string", "readOnly": true}, "secret": {"type": "string", "writeOnly": true}}},
                "Thing": {"allOf": [{"$ref": "#/components/schemas/Base"}, {"properties": {"n": {"type": "integer", "nullable": true}}, "required": ["id", "n"]}]}
            }}
        });
        Spec::from_json(&doc.to_string(), &[]).unwrap()
    }

    fn request<'a>(path: &'a str, body: &'a [u8]) -> RequestParts<'a> {
        RequestParts {
            method: "PUT",
            path,
            query: None,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
        }
    }

    #[test]
    fn composed_schemas_know_their_properties_and_directions() {
        let s = spec();
        let (m, v) = s.check_request(&request("/v1/things/abc", br#"{"n": null, "secret": "x"}"#));
        assert_eq!(m.unwrap().params["id"], "abc");
        assert!(v.is_empty(), "{v:?}");
        let (_, v) = s.check_request(&request("/v1/things/abc", br#"{"n": 1, "id": "x", "extra": 2}"#));
        let text: Vec<String> = v.iter().map(|v| v.message.clone()).collect();
        assert_eq!(text.len(), 2, "{text:?}");
        assert!(text[0].contains("read-only"), "{text:?}");
        assert!(text[1].contains("`extra` is not declared"), "{text:?}");
        let op = s.operation("putThing").unwrap();
        let headers = vec![("content-type".to_string(), "application/json".to_string())];
        let v = s.check_response(op, "/v1/things/abc", 200, &headers, br#"{"n": 1, "secret": "x"}"#);
        let text: Vec<String> = v.iter().map(|v| v.message.clone()).collect();
        assert!(text.iter().any(|t| t.contains("write-only")), "{text:?}");
        assert!(text.iter().any(|t| t.contains("`id` is missing")), "{text:?}");
    }

    #[test]
    fn paths_methods_and_parameters_are_checked() {
        let s = spec();
        assert!(s.match_request("PUT", "/v1/nothing").is_err());
        assert!(s.match_request("GET", "/v1/things/abc").unwrap_err().contains("no GET"));
        let (_, v) = s.check_request(&request("/v1/things/ABC", br#"{"n": 1}"#));
        assert!(v[0].message.contains("does not match the pattern"), "{v:?}");
    }

    #[test]
    fn dates_and_hosts() {
        assert!(is_date_time("2024-08-05T10:00:00Z"));
        assert!(is_date_time("2024-08-05T10:00:00.123+02:00"));
        assert!(!is_date_time("2024-08-05 10:00"));
        assert!(is_hostname("ns1.example.com"));
        assert!(!is_hostname("-bad.example.com"));
    }
}
