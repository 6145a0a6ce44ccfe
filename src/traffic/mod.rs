//! Traffic routers: how a canary's share of requests reaches the new revision. The engine decides
//! the split ([`Traffic`]); a router turns it into objects. Pure builders, no client.
//!
//! - Replica weighting (the default): no objects; the App's Service selects every revision and
//!   traffic follows the ratio of pods.
//! - NGINX Ingress: the App's Ingress serves the stable Service; a generated canary Ingress
//!   (`<app>-canary`) carries ingress-nginx's canary annotations with the weight, and the header
//!   route (`canary-by-header`). It exists only while a canary runs.
//! - Gateway API: an HTTPRoute whose default rule splits `backendRefs` by weight between the
//!   stable and canary Services, plus a header-match rule to the canary while one runs.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use serde_json::json;

use crate::api::App;
use crate::api::app::{HeaderRoute, Route};
use crate::controllers::app::build;
use crate::rollout::Traffic;

/// ingress-nginx annotation prefix.
const NGINX: &str = "nginx.ingress.kubernetes.io";

/// Which router an App uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterKind {
    /// Traffic follows the ratio of pods behind one Service.
    ReplicaWeighting,
    /// ingress-nginx canary Ingress.
    Nginx,
    /// Gateway API HTTPRoute weights.
    GatewayApi,
}

/// The router of an App's canary strategy.
pub fn router_kind(app: &App) -> RouterKind {
    let routing =
        app.spec.strategy.as_ref().and_then(|s| s.canary.as_ref()).and_then(|c| c.traffic_routing.as_ref());
    match routing {
        Some(r) if r.nginx.is_some() => RouterKind::Nginx,
        Some(r) if r.gateway_api.is_some() => RouterKind::GatewayApi,
        _ => RouterKind::ReplicaWeighting,
    }
}

fn header_route(app: &App) -> Option<&HeaderRoute> {
    app.spec
        .strategy
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .and_then(|c| c.traffic_routing.as_ref())
        .and_then(|t| t.header_route.as_ref())
}

/// Name of the generated canary Ingress.
pub fn canary_ingress_name(app: &App) -> String {
    format!("{}-canary", app.name_any())
}

/// The NGINX canary Ingress for a split, or `None` when no canary runs (weight 0 and no header
/// route): then it must not exist.
pub fn nginx_canary_ingress(app: &App, traffic: &Traffic) -> Option<Ingress> {
    if traffic.canary_weight == 0 && !traffic.header_route {
        return None;
    }
    let stable = build::ingresses(app).into_iter().find(|i| i.name_any() == app.name_any())?;
    let mut ingress = stable;
    ingress.metadata.name = Some(canary_ingress_name(app));
    let mut annotations: BTreeMap<String, String> = app
        .spec
        .strategy
        .as_ref()
        .and_then(|s| s.canary.as_ref())
        .and_then(|c| c.traffic_routing.as_ref())
        .and_then(|t| t.nginx.as_ref())
        .map(|n| n.additional_ingress_annotations.clone())
        .unwrap_or_default();
    annotations.insert(format!("{NGINX}/canary"), "true".into());
    annotations.insert(format!("{NGINX}/canary-weight"), traffic.canary_weight.to_string());
    annotations.insert(format!("{NGINX}/canary-weight-total"), "100".into());
    if traffic.header_route
        && let Some(h) = header_route(app)
    {
        annotations.insert(format!("{NGINX}/canary-by-header"), h.name.clone());
        annotations.insert(format!("{NGINX}/canary-by-header-value"), h.value.clone());
    }
    ingress.metadata.annotations = Some(annotations);
    let canary_service = build::preview_service_name(app);
    if let Some(rules) = ingress.spec.as_mut().and_then(|s| s.rules.as_mut()) {
        for rule in rules {
            for path in rule.http.iter_mut().flat_map(|h| h.paths.iter_mut()) {
                if let Some(svc) = path.backend.service.as_mut() {
                    svc.name = canary_service.clone();
                }
            }
        }
    }
    Some(ingress)
}

/// API resource of Gateway API HTTPRoutes.
pub fn http_route_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    )
}

fn parent_refs(app: &App, route: &Route) -> serde_json::Value {
    let Some(gw) = &route.gateway else { return json!([]) };
    let mut parent = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gw.name});
    if let Some(ns) = gw.namespace.clone().or_else(|| app.namespace()) {
        parent["namespace"] = json!(ns);
    }
    if let Some(section) = &gw.section_name {
        parent["sectionName"] = json!(section);
    }
    json!([parent])
}

fn backend(name: &str, weight: Option<i32>) -> serde_json::Value {
    let mut b = json!({"group": "", "kind": "Service", "name": name, "port": 80});
    if let Some(w) = weight {
        b["weight"] = json!(w);
    }
    b
}

fn http_route_object(
    app: &App,
    name: String,
    host: &str,
    route: &Route,
    rules: serde_json::Value,
) -> DynamicObject {
    let mut obj =
        DynamicObject::new(&name, &http_route_resource()).within(&app.namespace().unwrap_or_default());
    obj.metadata.labels = Some(build::common_labels(app));
    obj.metadata.owner_references = kube::Resource::controller_owner_ref(app, &()).map(|o| vec![o]);
    obj.data = json!({
        "spec": {
            "parentRefs": parent_refs(app, route),
            "hostnames": [host],
            "rules": rules,
        }
    });
    obj
}

/// The App's HTTPRoutes when it is routed through a Gateway: the main host (split by `traffic`
/// for a Gateway API canary) and the blue-green preview host.
pub fn http_routes(app: &App, traffic: Option<&Traffic>) -> Vec<DynamicObject> {
    let Some(route) = app.spec.route.as_ref().filter(|r| r.gateway.is_some()) else { return vec![] };
    let path_match = json!({"path": {"type": "PathPrefix", "value": route.path}});
    let stable = app.name_any();
    let canary = build::preview_service_name(app);
    let rules = match (router_kind(app), traffic) {
        (RouterKind::GatewayApi, Some(t)) => {
            let mut rules = vec![];
            if t.header_route
                && let Some(h) = header_route(app)
            {
                rules.push(json!({
                    "matches": [{"path": path_match["path"], "headers": [{"type": "Exact", "name": h.name, "value": h.value}]}],
                    "backendRefs": [backend(&canary, None)],
                }));
            }
            rules.push(json!({
                "matches": [path_match],
                "backendRefs": [backend(&stable, Some(100 - t.canary_weight)), backend(&canary, Some(t.canary_weight))],
            }));
            json!(rules)
        }
        _ => json!([{"matches": [path_match], "backendRefs": [backend(&stable, None)]}]),
    };
    let mut out = vec![http_route_object(app, stable.clone(), &route.host, route, rules)];
    if let Some(preview) =
        app.spec.strategy.as_ref().and_then(|s| s.blue_green.as_ref()).and_then(|b| b.preview_host.as_ref())
    {
        let rules = json!([{"matches": [path_match], "backendRefs": [backend(&canary, None)]}]);
        out.push(http_route_object(app, format!("{stable}-preview"), preview, route, rules));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(yaml: &str) -> App {
        let mut a: App = serde_yaml_ng::from_str(yaml).expect("fixture");
        a.metadata.uid = Some("u".into());
        a
    }

    const NGINX_APP: &str = "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {name: api, namespace: prod}\nspec:\n  image: api:1\n  route: {host: api.authentify.it, ingressClassName: nginx}\n  strategy:\n    canary:\n      trafficRouting: {nginx: {additionalIngressAnnotations: {x/y: z}}, headerRoute: {name: X-Canary, value: always}}\n      steps: [{setWeight: 10}]\n";

    const GATEWAY_APP: &str = "apiVersion: platform.authentify.it/v1alpha1\nkind: App\nmetadata: {name: api, namespace: prod}\nspec:\n  image: api:1\n  route: {host: api.authentify.it, gateway: {name: public, namespace: infra}}\n  strategy:\n    canary:\n      trafficRouting: {gatewayAPI: {}, headerRoute: {name: X-Canary, value: always}}\n      steps: [{setWeight: 10}]\n";

    #[test]
    fn nginx_canary_ingress_carries_weight_and_header() {
        let a = app(NGINX_APP);
        assert_eq!(router_kind(&a), RouterKind::Nginx);
        let ing = nginx_canary_ingress(&a, &Traffic { canary_weight: 10, header_route: true })
            .expect("a canary runs");
        assert_eq!(ing.metadata.name.as_deref(), Some("api-canary"));
        let ann = ing.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get("nginx.ingress.kubernetes.io/canary").map(String::as_str), Some("true"));
        assert_eq!(ann.get("nginx.ingress.kubernetes.io/canary-weight").map(String::as_str), Some("10"));
        assert_eq!(
            ann.get("nginx.ingress.kubernetes.io/canary-by-header").map(String::as_str),
            Some("X-Canary")
        );
        assert_eq!(
            ann.get("nginx.ingress.kubernetes.io/canary-by-header-value").map(String::as_str),
            Some("always")
        );
        assert_eq!(ann.get("x/y").map(String::as_str), Some("z"));
        let backend = ing
            .spec
            .and_then(|s| s.rules)
            .and_then(|r| r[0].http.clone())
            .and_then(|h| h.paths[0].backend.service.clone());
        assert_eq!(backend.map(|b| b.name).as_deref(), Some("api-canary"));
        let no_header =
            nginx_canary_ingress(&a, &Traffic { canary_weight: 10, header_route: false }).expect("weight");
        assert!(
            !no_header
                .metadata
                .annotations
                .unwrap_or_default()
                .contains_key("nginx.ingress.kubernetes.io/canary-by-header")
        );
        assert!(nginx_canary_ingress(&a, &Traffic { canary_weight: 0, header_route: false }).is_none());
    }

    #[test]
    fn http_route_splits_by_weight_with_a_header_rule() {
        let a = app(GATEWAY_APP);
        assert_eq!(router_kind(&a), RouterKind::GatewayApi);
        let routes = http_routes(&a, Some(&Traffic { canary_weight: 30, header_route: true }));
        assert_eq!(routes.len(), 1);
        let spec = &routes[0].data["spec"];
        assert_eq!(spec["parentRefs"][0]["name"], "public");
        assert_eq!(spec["parentRefs"][0]["namespace"], "infra");
        assert_eq!(spec["hostnames"][0], "api.authentify.it");
        let rules = spec["rules"].as_array().expect("rules");
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0]["matches"][0]["headers"][0]["name"], "X-Canary");
        assert_eq!(rules[0]["backendRefs"][0]["name"], "api-canary");
        assert_eq!(rules[1]["backendRefs"][0]["weight"], 70);
        assert_eq!(rules[1]["backendRefs"][1]["weight"], 30);
        let settled = http_routes(&a, Some(&Traffic { canary_weight: 0, header_route: false }));
        let rules = settled[0].data["spec"]["rules"].as_array().expect("rules").clone();
        assert_eq!(rules.len(), 1, "no header rule without a running canary");
        assert_eq!(rules[0]["backendRefs"][0]["weight"], 100);
    }
}
