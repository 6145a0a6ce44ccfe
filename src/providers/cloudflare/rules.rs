//! The operator's cache rules among everyone else's in a zone's entry-point ruleset.
//!
//! It decides, purely, the full rule list to write back: rules the operator owns are recognised by
//! a `ref` starting with [`OWNED_REF_PREFIX`]; they are replaced by the desired ones (in the
//! desired order, where the first of them stood, else at the end) and the ones no longer desired
//! are dropped. It must never change, reorder or drop a rule it does not own.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Prefix of the `ref` of every rule the operator owns.
pub const OWNED_REF_PREFIX: &str = "authentify:";

/// Fields Cloudflare sets itself and refuses in a write (read-only in the schema).
const READ_ONLY_FIELDS: &[&str] = &["version", "last_updated", "categories"];

/// The `ref` of the operator's rule named `name`, e.g. `authentify:static-assets`.
pub fn owned_ref(name: &str) -> String {
    format!("{OWNED_REF_PREFIX}{name}")
}

/// One rule of a ruleset. Fields the operator does not model are kept in `other`, so that other
/// people's rules are written back as they were read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// Rule id, assigned by Cloudflare; kept so that a rewritten rule keeps its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Stable reference; ours start with [`OWNED_REF_PREFIX`].
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Rules-language filter.
    pub expression: String,
    /// e.g. `set_cache_settings`.
    pub action: String,
    /// Parameters of the action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_parameters: Option<Value>,
    /// Whether the rule is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Everything else (description, logging, version, ...).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Rule {
    /// A `set_cache_settings` rule owned by the operator.
    pub fn owned_cache_rule(name: &str, expression: impl Into<String>, action_parameters: Value) -> Self {
        Self {
            id: None,
            reference: Some(owned_ref(name)),
            expression: expression.into(),
            action: "set_cache_settings".to_string(),
            action_parameters: Some(action_parameters),
            enabled: Some(true),
            other: Map::new(),
        }
    }

    /// Whether the operator owns this rule.
    pub fn is_owned(&self) -> bool {
        self.reference.as_deref().is_some_and(|r| r.starts_with(OWNED_REF_PREFIX))
    }

    /// The rule as a write request carries it: without the fields Cloudflare sets itself.
    pub fn to_request(&self) -> Value {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(map) = value.as_object_mut() {
            for field in READ_ONLY_FIELDS {
                map.remove(*field);
            }
        }
        value
    }

    /// Whether two rules do the same (ignoring ids and fields Cloudflare sets).
    fn same_effect(&self, other: &Rule) -> bool {
        self.reference == other.reference
            && self.expression == other.expression
            && self.action == other.action
            && self.action_parameters == other.action_parameters
            && self.enabled.unwrap_or(true) == other.enabled.unwrap_or(true)
    }
}

/// The rule list to write, and whether it differs from what is there.
#[derive(Clone, Debug, PartialEq)]
pub struct MergeOutcome {
    /// Every rule, others' untouched.
    pub rules: Vec<Rule>,
    /// Whether writing is needed.
    pub changed: bool,
}

/// Puts `desired` (the operator's rules, each with an owned `ref`) into `existing`, leaving every
/// rule the operator does not own exactly where and as it was. An owned rule that is still
/// desired keeps its id.
pub fn merge_owned_rules(existing: &[Rule], desired: &[Rule]) -> MergeOutcome {
    merge_rules_owned_by(existing, desired, OWNED_REF_PREFIX)
}

/// [`merge_owned_rules`] for one owner among several sharing a zone (one EdgeCache per
/// environment, say): only rules whose `ref` starts with `owner_prefix` (which starts with
/// [`OWNED_REF_PREFIX`]) are replaced or dropped; other owners' rules are kept like everyone
/// else's.
pub fn merge_rules_owned_by(existing: &[Rule], desired: &[Rule], owner_prefix: &str) -> MergeOutcome {
    let owned =
        |r: &Rule| r.is_owned() && r.reference.as_deref().is_some_and(|x| x.starts_with(owner_prefix));
    let first_owned = existing.iter().position(owned);
    let ours: Vec<Rule> = desired
        .iter()
        .map(|want| {
            let mut rule = want.clone();
            if let Some(old) = existing.iter().find(|r| owned(r) && r.reference == want.reference) {
                rule.id = old.id.clone();
            }
            rule
        })
        .collect();
    let mut rules = Vec::with_capacity(existing.len() + ours.len());
    let mut placed = false;
    for (i, rule) in existing.iter().enumerate() {
        if owned(rule) {
            if Some(i) == first_owned {
                rules.extend(ours.iter().cloned());
                placed = true;
            }
        } else {
            rules.push(rule.clone());
        }
    }
    if !placed {
        rules.extend(ours);
    }
    let changed = rules.len() != existing.len() || rules.iter().zip(existing).any(|(a, b)| !a.same_effect(b));
    MergeOutcome { rules, changed }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn foreign(reference: &str) -> Rule {
        serde_json::from_value(json!({
            "id": format!("{reference:0>32}"), "ref": reference, "expression": "true",
            "action": "set_cache_settings", "action_parameters": {"cache": false},
            "enabled": true, "version": "3", "description": "theirs"
        }))
        .unwrap()
    }

    #[test]
    fn keeps_foreign_rules_and_replaces_ours_in_place() {
        let mut old_ours = Rule::owned_cache_rule("a", "old", json!({"cache": true}));
        old_ours.id = Some("1".repeat(32));
        let stale = Rule::owned_cache_rule("gone", "x", json!({"cache": true}));
        let existing = vec![foreign("f1"), old_ours, foreign("f2"), stale];
        let desired = vec![
            Rule::owned_cache_rule("a", "new", json!({"cache": true})),
            Rule::owned_cache_rule("b", "b", json!({"cache": true})),
        ];
        let out = merge_owned_rules(&existing, &desired);
        assert!(out.changed);
        let refs: Vec<_> = out.rules.iter().map(|r| r.reference.clone().unwrap()).collect();
        assert_eq!(refs, ["f1", "authentify:a", "authentify:b", "f2"]);
        assert_eq!(out.rules[0], existing[0]);
        assert_eq!(out.rules[3], existing[2]);
        assert_eq!(out.rules[1].id, Some("1".repeat(32)));
        assert_eq!(out.rules[1].expression, "new");
    }

    #[test]
    fn unchanged_when_ours_already_there() {
        let existing = vec![foreign("f1"), Rule::owned_cache_rule("a", "e", json!({"cache": true}))];
        let out = merge_owned_rules(&existing, &[Rule::owned_cache_rule("a", "e", json!({"cache": true}))]);
        assert!(!out.changed);
        assert_eq!(out.rules, existing);
    }

    #[test]
    fn an_owner_prefix_keeps_other_owners_rules() {
        let staging = Rule::owned_cache_rule("staging/edge/a", "s", json!({"cache": true}));
        let prod_old = Rule::owned_cache_rule("prod/edge/a", "old", json!({"cache": true}));
        let existing = vec![foreign("f1"), staging.clone(), prod_old];
        let desired = vec![Rule::owned_cache_rule("prod/edge/a", "new", json!({"cache": true}))];
        let out = merge_rules_owned_by(&existing, &desired, "authentify:prod/edge/");
        assert!(out.changed);
        assert_eq!(out.rules, vec![foreign("f1"), staging.clone(), desired[0].clone()]);
        let gone = merge_rules_owned_by(&out.rules, &[], "authentify:prod/edge/");
        assert_eq!(gone.rules, vec![foreign("f1"), staging]);
    }

    #[test]
    fn request_form_drops_read_only_fields_and_keeps_the_rest() {
        let v = foreign("f1").to_request();
        assert_eq!(v.get("version"), None);
        assert_eq!(v["description"], "theirs");
        assert_eq!(v["ref"], "f1");
    }
}
