//! A small checker for the structural OpenAPI v3 schemas of our CRDs, for offline `lint`: types,
//! required fields, unknown fields, enums, minimum/maximum, lengths, item counts and patterns, and
//! the defaulting the API server does before it runs the CEL rules. It covers exactly the keywords
//! our generated CRDs use; the API server stays the authority.
//!
//! Pure: a function of the schema and the object. It never evaluates CEL (see
//! `api::validation::check_cel`).

use regex::Regex;
use serde_json::{Map, Value};

/// One schema violation: the field path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON path, e.g. `spec.strategy.canary.steps[1].setWeight`.
    pub field: String,
    /// A sentence.
    pub message: String,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks `value` against `schema`; returns every problem found.
pub fn check(schema: &Value, value: &Value) -> Vec<Problem> {
    let mut out = vec![];
    walk(schema, value, "", &mut out);
    out
}

fn walk(schema: &Value, value: &Value, path: &str, out: &mut Vec<Problem>) {
    let field = if path.is_empty() { "(document)".to_string() } else { path.to_string() };
    let mut push = |message: String| out.push(Problem { field: field.clone(), message });
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
            return;
        }
        if schema.get("type").is_some() {
            push("is null; remove the field or give it a value".to_string());
        }
        return;
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    if int_or_string {
        if !matches!(type_name(value), "integer" | "string") {
            push(format!("must be an integer or a string such as \"25%\", not {}", type_name(value)));
        }
        return;
    }
    if let Some(any_of) = schema.get("anyOf").and_then(Value::as_array)
        && !any_of.iter().any(|s| check(s, value).is_empty())
    {
        push("matches none of the allowed forms".to_string());
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str) {
        let actual = type_name(value);
        let ok = t == actual || (t == "number" && actual == "integer");
        if !ok {
            push(format!(
                "must be {} {t}, not {actual}",
                if t == "integer" || t == "array" || t == "object" { "an" } else { "a" }
            ));
            return;
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        push(format!("must be one of {}, not {value}", list.join(", ")));
    }
    match value {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && x < min
            {
                push(format!("must be at least {min}, not {n}"));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && x > max
            {
                push(format!("must be at most {max}, not {n}"));
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                push(format!("must be at least {min} characters long"));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                push(format!("must be at most {max} characters long, not {len}"));
            }
            if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
                match Regex::new(pattern) {
                    Ok(re) if !re.is_match(s) => push(format!("{s:?} does not match the pattern {pattern}")),
                    Ok(_) => {}
                    Err(e) => push(format!("the schema's pattern {pattern} cannot be checked offline: {e}")),
                }
            }
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && len < min
            {
                push(format!("needs at least {min} items"));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && len > max
            {
                push(format!("takes at most {max} items, not {len}"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::Object(map) => check_object(schema, map, path, out),
        _ => {}
    }
}

fn check_object(schema: &Value, map: &Map<String, Value>, path: &str, out: &mut Vec<Problem>) {
    let field = if path.is_empty() { "(document)".to_string() } else { path.to_string() };
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(r) {
                out.push(Problem { field: join(path, r), message: "is required".to_string() });
            }
        }
    }
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    for (key, v) in map {
        // The API server checks an object's type and object metadata itself; CRD schemas leave them out.
        if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        let child = join(path, key);
        if let Some(s) = properties.and_then(|p| p.get(key)) {
            walk(s, v, &child, out);
        } else if let Some(s) = additional.filter(|a| a.is_object()) {
            walk(s, v, &child, out);
        } else if properties.is_some() && !preserve {
            let known: Vec<&str> =
                properties.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
            out.push(Problem {
                field: child,
                message: format!(
                    "is not a field of {field} (the API server would drop it); known fields: {}",
                    known.join(", ")
                ),
            });
        }
    }
}

/// Fills in schema defaults the way the API server does before validation: a missing property
/// with a `default` gets it; nested objects are defaulted only where they exist.
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (key, s) in props {
                    if !map.contains_key(key)
                        && let Some(d) = s.get("default")
                    {
                        map.insert(key.clone(), d.clone());
                    }
                    if let Some(v) = map.get_mut(key) {
                        apply_defaults(s, v);
                    }
                }
            }
            if let Some(s) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for v in map.values_mut() {
                    apply_defaults(s, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for v in items {
                    apply_defaults(s, v);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "required": ["spec"], "properties": {
            "spec": {"type": "object", "required": ["image"], "properties": {
                "image": {"type": "string", "minLength": 1, "maxLength": 8},
                "replicas": {"type": "integer", "minimum": 0, "maximum": 3, "default": 1},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "host": {"type": "string", "pattern": "^[a-z.]+$"},
                "surge": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                "steps": {"type": "array", "maxItems": 1, "items": {"type": "object", "properties": {"w": {"type": "integer"}}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "opt": {"type": "string", "nullable": true}
            }}
        }})
    }

    fn problems(v: Value) -> Vec<String> {
        check(&schema(), &v).into_iter().map(|p| format!("{}: {}", p.field, p.message)).collect()
    }

    #[test]
    fn each_keyword_is_checked_with_the_field_path() {
        assert!(problems(json!({"spec": {"image": "a", "surge": "25%", "labels": {"x": "y"}, "free": {"z": 1}, "opt": null}})).is_empty());
        let cases = [
            (json!({}), "spec: is required"),
            (json!({"spec": {}}), "spec.image: is required"),
            (json!({"spec": {"image": ""}}), "spec.image: must be at least 1 characters"),
            (json!({"spec": {"image": "123456789"}}), "spec.image: must be at most 8"),
            (json!({"spec": {"image": "a", "replicas": 4}}), "spec.replicas: must be at most 3"),
            (json!({"spec": {"image": "a", "replicas": -1}}), "spec.replicas: must be at least 0"),
            (
                json!({"spec": {"image": "a", "replicas": "2"}}),
                "spec.replicas: must be an integer, not string",
            ),
            (json!({"spec": {"image": "a", "mode": "c"}}), "spec.mode: must be one of \"a\", \"b\""),
            (json!({"spec": {"image": "a", "host": "A_B"}}), "spec.host: \"A_B\" does not match"),
            (json!({"spec": {"image": "a", "surge": true}}), "spec.surge: must be an integer or a string"),
            (json!({"spec": {"image": "a", "steps": [{}, {}]}}), "spec.steps: takes at most 1 items"),
            (json!({"spec": {"image": "a", "steps": [{"w": "x"}]}}), "spec.steps[0].w: must be an integer"),
            (json!({"spec": {"image": "a", "labels": {"x": 1}}}), "spec.labels.x: must be a string"),
            (json!({"spec": {"image": "a", "imagee": "b"}}), "spec.imagee: is not a field of spec"),
        ];
        for (value, want) in cases {
            let got = problems(value.clone());
            assert!(got.iter().any(|g| g.starts_with(want)), "{value}: want {want:?}, got {got:?}");
        }
    }

    #[test]
    fn defaults_fill_missing_fields_of_existing_objects_only() {
        let mut v = json!({"spec": {"image": "a"}});
        apply_defaults(&schema(), &mut v);
        assert_eq!(v["spec"]["replicas"], json!(1));
        let mut empty = json!({});
        apply_defaults(&schema(), &mut empty);
        assert_eq!(empty, json!({}));
    }
}
