//! From an App's analysis reference to the metrics of an AnalysisRun: look the templates up
//! (AnalysisTemplates in the App's namespace, or the built-ins), fill in their arguments and the
//! App's own variables, and refuse what cannot run with a message that says what to fix. Pure.
//!
//! Placeholders, replaced in every text field of a metric (queries, URLs, bodies, conditions,
//! intervals):
//! - `{{args.NAME}}`: an argument of the template, given in the App's reference or defaulted in
//!   the template;
//! - `{{app.name}}`, `{{app.namespace}}`, `{{app.revision}}`: the App and the revision rolled out;
//! - `{{app.service}}`: the Service of the new revision (`<app>-canary` or `<app>-preview`);
//! - `{{app.stableService}}`: the App's main Service.

use std::collections::BTreeMap;

use super::builtin;
use crate::api::analysis::{AnalysisTemplateSpec, Metric};
use crate::api::app::AnalysisRef;

/// The App's variables, `{{app.*}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppVars {
    /// The App's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// The revision being rolled out.
    pub revision: String,
    /// The Service of the new revision.
    pub service: String,
    /// The App's main Service.
    pub stable_service: String,
}

impl AppVars {
    fn pairs(&self) -> [(&'static str, &str); 5] {
        [
            ("name", &self.name),
            ("namespace", &self.namespace),
            ("revision", &self.revision),
            ("service", &self.service),
            ("stableService", &self.stable_service),
        ]
    }
}

/// The metrics of every template `reference` names, arguments filled in. `lookup` finds an
/// AnalysisTemplate of the App's namespace by name.
pub fn resolve(
    reference: &AnalysisRef,
    lookup: &dyn Fn(&str) -> Option<AnalysisTemplateSpec>,
    vars: &AppVars,
) -> Result<Vec<Metric>, String> {
    let given: BTreeMap<&str, &str> =
        reference.args.iter().map(|a| (a.name.as_str(), a.value.as_str())).collect();
    let mut metrics: Vec<Metric> = vec![];
    for name in &reference.templates {
        let template = if let Some(builtin) = name.strip_prefix(builtin::PREFIX) {
            builtin::template(builtin, &given, vars)?
        } else {
            lookup(name).ok_or_else(|| {
                format!("AnalysisTemplate {name} does not exist in namespace {}", vars.namespace)
            })?
        };
        let mut args: BTreeMap<String, String> = BTreeMap::new();
        for arg in &template.args {
            let value = given.get(arg.name.as_str()).map(|v| (*v).to_string()).or_else(|| arg.value.clone());
            let Some(value) = value else {
                return Err(format!(
                    "argument {} of AnalysisTemplate {name} has no value: pass it in the App's analysis args",
                    arg.name
                ));
            };
            args.insert(arg.name.clone(), value);
        }
        for metric in &template.metrics {
            let filled = fill(metric, &args, vars).map_err(|e| format!("AnalysisTemplate {name}: {e}"))?;
            if metrics.iter().any(|m| m.name == filled.name) {
                return Err(format!(
                    "metric {} appears in more than one of the templates {}: rename one",
                    filled.name,
                    reference.templates.join(", ")
                ));
            }
            metrics.push(filled);
        }
    }
    Ok(metrics)
}

/// Replaces the placeholders in every text field of `metric`.
fn fill(metric: &Metric, args: &BTreeMap<String, String>, vars: &AppVars) -> Result<Metric, String> {
    let mut value = serde_json::to_value(metric).map_err(|e| e.to_string())?;
    fill_value(&mut value, args, vars)?;
    let filled: Metric = serde_json::from_value(value).map_err(|e| format!("metric {}: {e}", metric.name))?;
    if let Some(i) = &filled.initial_delay
        && crate::rollout::duration::parse(i).is_none()
    {
        return Err(format!("metric {}: initialDelay {i:?} is not a duration such as 30s", filled.name));
    }
    if crate::rollout::duration::parse(&filled.interval).is_none() {
        return Err(format!(
            "metric {}: interval {:?} is not a duration such as 30s",
            filled.name, filled.interval
        ));
    }
    Ok(filled)
}

fn fill_value(
    value: &mut serde_json::Value,
    args: &BTreeMap<String, String>,
    vars: &AppVars,
) -> Result<(), String> {
    use serde_json::Value;
    match value {
        Value::String(s) => *s = fill_text(s, args, vars)?,
        Value::Array(a) => a.iter_mut().try_for_each(|v| fill_value(v, args, vars))?,
        Value::Object(o) => o.values_mut().try_for_each(|v| fill_value(v, args, vars))?,
        _ => {}
    }
    Ok(())
}

fn fill_text(text: &str, args: &BTreeMap<String, String>, vars: &AppVars) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let key = after[..end].trim();
        let value = if let Some(name) = key.strip_prefix("args.") {
            args.get(name)
                .cloned()
                .ok_or_else(|| format!("{{{{{key}}}}} names an argument the template does not declare"))?
        } else if let Some(name) = key.strip_prefix("app.") {
            vars.pairs()
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_string())
                .ok_or_else(|| format!("{{{{{key}}}}} is not one of app.name, app.namespace, app.revision, app.service, app.stableService"))?
        } else {
            return Err(format!("{{{{{key}}}}} is neither {{{{args.NAME}}}} nor {{{{app.NAME}}}}"));
        };
        out.push_str(&value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::app::AnalysisArg;

    fn reference(templates: &[&str], args: &[(&str, &str)]) -> AnalysisRef {
        AnalysisRef {
            templates: templates.iter().map(|t| (*t).to_string()).collect(),
            args: args.iter().map(|(n, v)| AnalysisArg { name: (*n).into(), value: (*v).into() }).collect(),
            ttl_seconds_after_finished: None,
        }
    }

    fn vars() -> AppVars {
        AppVars {
            name: "api".into(),
            namespace: "prod".into(),
            revision: "abc".into(),
            service: "api-canary".into(),
            stable_service: "api".into(),
        }
    }

    const TEMPLATE: &str = "args: [{name: threshold, value: '0.05'}, {name: token}]\nmetrics:\n- name: errors\n  interval: 10s\n  successCondition: result < {{args.threshold}}\n  provider: {web: {url: 'http://stats/{{app.namespace}}/{{app.service}}?r={{app.revision}}', headers: [{name: X-Token, value: '{{args.token}}'}]}}\n";

    fn lookup(name: &str) -> Option<AnalysisTemplateSpec> {
        (name == "errors").then(|| serde_yaml_ng::from_str(TEMPLATE).expect("fixture"))
    }

    #[test]
    fn args_and_app_variables_fill_every_text_field() {
        let metrics =
            resolve(&reference(&["errors"], &[("token", "t1")]), &lookup, &vars()).expect("resolves");
        let m = &metrics[0];
        assert_eq!(m.success_condition.as_deref(), Some("result < 0.05"), "the default applies");
        let web = m.provider.web.as_ref().expect("web");
        assert_eq!(web.url, "http://stats/prod/api-canary?r=abc");
        assert_eq!(web.headers[0].value.as_deref(), Some("t1"));
        let given =
            resolve(&reference(&["errors"], &[("token", "t"), ("threshold", "0.2")]), &lookup, &vars())
                .expect("resolves");
        assert_eq!(given[0].success_condition.as_deref(), Some("result < 0.2"), "a given value wins");
    }

    #[test]
    fn what_cannot_run_is_refused_with_what_to_fix() {
        let err = |r: AnalysisRef| resolve(&r, &lookup, &vars()).expect_err("refused");
        assert!(
            err(reference(&["nope"], &[])).contains("AnalysisTemplate nope does not exist in namespace prod")
        );
        assert!(
            err(reference(&["errors"], &[]))
                .contains("argument token of AnalysisTemplate errors has no value")
        );
        assert!(err(reference(&["errors", "errors"], &[("token", "t")])).contains("more than one"));
        assert!(err(reference(&["builtin/nope"], &[])).contains("builtin/nope"));
        let undeclared = |name: &str| -> Option<AnalysisTemplateSpec> {
            (name == "x").then(|| {
                serde_yaml_ng::from_str(&TEMPLATE.replace("{{args.threshold}}", "{{args.missing}}"))
                    .expect("fixture")
            })
        };
        let e = resolve(&reference(&["x"], &[("token", "t")]), &undeclared, &vars()).expect_err("refused");
        assert!(e.contains("{{args.missing}} names an argument the template does not declare"), "{e}");
        let interval = |name: &str| -> Option<AnalysisTemplateSpec> {
            (name == "x").then(|| {
                serde_yaml_ng::from_str(&TEMPLATE.replace("interval: 10s", "interval: '{{args.threshold}}'"))
                    .expect("fixture")
            })
        };
        let e = resolve(&reference(&["x"], &[("token", "t")]), &interval, &vars()).expect_err("refused");
        assert!(e.contains("interval \"0.05\" is not a duration"), "{e}");
    }

    #[test]
    fn text_without_placeholders_is_left_alone() {
        let args = BTreeMap::new();
        assert_eq!(fill_text("sum(rate(x[1m])) {", &args, &vars()), Ok("sum(rate(x[1m])) {".into()));
        assert_eq!(fill_text("a {{ app.name }} b", &args, &vars()), Ok("a api b".into()));
        assert!(fill_text("{{app.secret}}", &args, &vars()).is_err());
    }
}
