//! Offline `lint`: checks App, Redis, AtlasConnection, EdgeCache and AnalysisTemplate manifests
//! the way the API server would — the CRD's structural schema (after its defaults), the CEL rules,
//! and that the document deserializes into our Rust types — and points each problem at file,
//! document and field. Pure apart from reading the files in [`run`]; it never contacts a cluster.

use std::path::Path;

use serde::Deserialize as _;
use serde_json::Value;

use super::exit;
use super::schema;
use crate::api::{self, GROUP, validation};

/// One problem in one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 1-based index of the YAML document in its file.
    pub document: usize,
    /// `App api`, or `document` when it has no kind or name.
    pub object: String,
    /// Field path, e.g. `spec.autoscaling`.
    pub field: String,
    /// What is wrong, as the API server would say it.
    pub message: String,
}

fn schema_of(kind: &str) -> Option<Value> {
    let crd = api::crds().into_iter().find(|c| c.spec.names.kind == kind)?;
    let schema = crd.spec.versions.first()?.schema.as_ref()?.open_api_v3_schema.as_ref()?;
    serde_json::to_value(schema).ok()
}

fn typed(kind: &str, value: Value) -> Result<(), String> {
    let r = match kind {
        "App" => serde_json::from_value::<api::App>(value).map(|_| ()),
        "Redis" => serde_json::from_value::<api::Redis>(value).map(|_| ()),
        "AtlasConnection" => serde_json::from_value::<api::AtlasConnection>(value).map(|_| ()),
        "EdgeCache" => serde_json::from_value::<api::EdgeCache>(value).map(|_| ()),
        "AnalysisTemplate" => serde_json::from_value::<api::AnalysisTemplate>(value).map(|_| ()),
        _ => Ok(()),
    };
    r.map_err(|e| e.to_string())
}

/// Lints one document (already parsed). Documents of other API groups are skipped.
pub fn lint_value(document: usize, value: &Value) -> Vec<Finding> {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    let name = value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let object = match (kind.is_empty(), name.is_empty()) {
        (false, false) => format!("{kind} {name}"),
        (false, true) => kind.clone(),
        _ => "document".to_string(),
    };
    let finding = |field: &str, message: String| Finding {
        document,
        object: object.clone(),
        field: field.to_string(),
        message,
    };
    let api_version = value.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    if !api_version.starts_with(&format!("{GROUP}/")) {
        return vec![];
    }
    let expected = format!("{GROUP}/{}", api::VERSION);
    if api_version != expected {
        return vec![finding("apiVersion", format!("must be {expected}, not {api_version}"))];
    }
    let Some(schema) = schema_of(&kind) else {
        return vec![finding(
            "kind",
            format!(
                "{kind:?} is not a kind of {GROUP}: use App, Redis, AtlasConnection, EdgeCache or AnalysisTemplate"
            ),
        )];
    };
    let mut out = vec![];
    if name.is_empty() {
        out.push(finding("metadata.name", "is required".to_string()));
    } else if !is_dns_subdomain(&name) {
        out.push(finding(
            "metadata.name",
            format!("{name:?} must be lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"),
        ));
    }
    let mut defaulted = value.clone();
    schema::apply_defaults(&schema, &mut defaulted);
    let structural = schema::check(&schema, &defaulted);
    for p in &structural {
        out.push(finding(&p.field, p.message.clone()));
    }
    // CEL and the typed view assume a structurally valid object, as on the API server.
    if structural.is_empty() {
        for v in validation::check_cel(&defaulted).unwrap_or_default() {
            let field = if v.field.is_empty() { "(document)".to_string() } else { v.field.clone() };
            out.push(finding(&field, v.message));
        }
        if let Err(e) = typed(&kind, defaulted) {
            out.push(finding("(document)", format!("does not fit the {kind} type: {e}")));
        }
    }
    out
}

fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// Lints a file's text: every YAML document in it.
pub fn lint_text(text: &str) -> Vec<Finding> {
    let mut out = vec![];
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let value = match serde_yaml_ng::Value::deserialize(doc) {
            Ok(v) => v,
            Err(e) => {
                out.push(Finding {
                    document,
                    object: "document".into(),
                    field: "(document)".into(),
                    message: format!("is not valid YAML: {e}"),
                });
                // The YAML stream cannot be read past a syntax error.
                break;
            }
        };
        if value.is_null() {
            continue;
        }
        match serde_json::to_value(value) {
            Ok(v) => out.extend(lint_value(document, &v)),
            Err(e) => out.push(Finding {
                document,
                object: "document".into(),
                field: "(document)".into(),
                message: format!("cannot be read as JSON-compatible data: {e}"),
            }),
        }
    }
    out
}

/// One line per finding: `FILE: document N (App api): FIELD MESSAGE`.
pub fn format_finding(file: &str, f: &Finding) -> String {
    format!("{file}: document {} ({}): {}: {}", f.document, f.object, f.field, f.message)
}

/// Lints files, prints findings; returns 0 when all are valid, 1 when one is not, 3 when a file
/// cannot be read.
pub fn run(files: &[impl AsRef<Path>]) -> u8 {
    let mut code = exit::OK;
    let mut count = 0;
    for file in files {
        let path = file.as_ref();
        let label = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{label}: cannot read the file: {e}");
                code = exit::USAGE;
                continue;
            }
        };
        for f in lint_text(&text) {
            println!("{}", format_finding(&label, &f));
            count += 1;
            if code == exit::OK {
                code = exit::FAILED;
            }
        }
    }
    if count == 0 && code == exit::OK {
        eprintln!("{} file(s) checked: no problems.", files.len());
    } else if count > 0 {
        eprintln!("{count} problem(s) found; fix them before applying.");
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(spec: &str) -> String {
        format!(
            "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {{name: api}}\nspec: {spec}\n"
        )
    }

    fn messages(text: &str) -> Vec<String> {
        lint_text(text).iter().map(|f| format!("{}: {}", f.field, f.message)).collect()
    }

    /// One violating manifest per CEL rule of every CRD (`cel_cases.yaml`), as `(rule, YAML)`.
    fn cel_cases() -> Vec<(String, String)> {
        let cases: Vec<Value> =
            serde_yaml_ng::from_str(include_str!("cel_cases.yaml")).expect("cel_cases.yaml");
        cases
            .into_iter()
            .map(|c| {
                let rule = c["rule"].as_str().expect("rule").to_string();
                (rule, serde_yaml_ng::to_string(&c["manifest"]).expect("manifest"))
            })
            .collect()
    }

    /// Every rule and its message from the generated CRDs, as `(rule, message)`.
    fn crd_rules() -> Vec<(String, String)> {
        fn collect(v: &Value, out: &mut Vec<(String, String)>) {
            match v {
                Value::Object(m) => {
                    if let Some(Value::Array(rules)) = m.get("x-kubernetes-validations") {
                        for r in rules {
                            out.push((
                                r["rule"].as_str().unwrap_or_default().to_string(),
                                r["message"].as_str().unwrap_or_default().to_string(),
                            ));
                        }
                    }
                    m.values().for_each(|c| collect(c, out));
                }
                Value::Array(a) => a.iter().for_each(|c| collect(c, out)),
                _ => {}
            }
        }
        let mut out = vec![];
        for crd in api::crds() {
            collect(&serde_json::to_value(&crd).expect("crd json"), &mut out);
        }
        out
    }

    #[test]
    fn lint_catches_each_cel_rule_with_its_message() {
        let rules = crd_rules();
        let cases = cel_cases();
        for (rule, message) in &rules {
            assert!(
                cases.iter().any(|(r, text)| r == rule && messages(text).iter().any(|m| m.contains(message.as_str()))),
                "no case in cel_cases.yaml makes lint report the CRD rule {rule} ({message})"
            );
        }
        for (rule, text) in cases {
            let wanted: Vec<&String> = rules.iter().filter(|(r, _)| *r == rule).map(|(_, m)| m).collect();
            assert!(!wanted.is_empty(), "case for a rule the CRDs no longer have: {rule}");
            let got = messages(&text);
            assert!(
                wanted.iter().any(|m| got.iter().any(|g| g.contains(m.as_str()))),
                "rule {rule}: expected one of {wanted:?}, got {got:?} for\n{text}"
            );
        }
    }

    #[test]
    fn valid_manifests_pass_and_other_groups_are_skipped() {
        let text = format!(
            "{}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: x}}\n---\n",
            app("{image: a:1, strategy: {canary: {steps: [{setWeight: 10}, {pause: {duration: 1h30m}}]}}}")
        );
        assert_eq!(messages(&text), Vec::<String>::new());
        let envs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("environments");
        for entry in std::fs::read_dir(envs.join("local")).expect("environments/local") {
            let path = entry.expect("entry").path();
            let text = std::fs::read_to_string(&path).expect("readable");
            assert_eq!(messages(&text), Vec::<String>::new(), "{}", path.display());
        }
    }

    #[test]
    fn schema_problems_point_at_document_and_field() {
        let text = format!(
            "{}---\n{}",
            app("{image: a:1}"),
            app(
                "{image: a:1, replicas: 2000, strategy: {canary: {steps: [{setWeight: 150}]}}, imagePullPolicy: Always}"
            )
        );
        let findings = lint_text(&text);
        let lines: Vec<String> = findings.iter().map(|f| format_finding("api.yaml", f)).collect();
        for want in [
            "api.yaml: document 2 (App api): spec.replicas: must be at most 1000",
            "api.yaml: document 2 (App api): spec.strategy.canary.steps[0].setWeight: must be at most 100",
            "api.yaml: document 2 (App api): spec.imagePullPolicy: is not a field of spec",
        ] {
            assert!(lines.iter().any(|l| l.starts_with(want)), "missing {want:?} in {lines:#?}");
        }
        assert!(findings.iter().all(|f| f.document == 2), "{lines:#?}");
        let missing = messages(&app("{port: 80}"));
        assert!(missing.iter().any(|m| m == "spec.image: is required"), "{missing:?}");
        let kind =
            messages("apiVersion: platform.authentify.it/v1alpha1\nkind: Rollout\nmetadata: {name: x}\n");
        assert!(kind[0].contains("not a kind of platform.authentify.it"), "{kind:?}");
        let bad = messages("a: [1,\n");
        assert!(bad[0].contains("not valid YAML"), "{bad:?}");
    }
}
