//! Install and operate tests on a real control plane of their own: the Helm chart (lint, template,
//! apply), the plain kustomize install, each environment's server dry-run, and the operator run as
//! two `authentify-operator` processes with only the chart's RBAC (a ServiceAccount token), one of
//! which is killed mid-rollout.
//!
//! A separate binary from tests/cluster because that one runs an admin operator in-process, which
//! would reconcile the same Apps and so hide a missing RBAC rule.

#[allow(dead_code)]
#[path = "../cluster/support/mod.rs"]
mod support;

mod install;

fn main() -> std::process::ExitCode {
    support::run_with(
        cluster_tests![
            install::chart_lints_renders_and_applies,
            install::plain_manifests_are_rendered_from_the_chart,
            install::environments_pass_server_dry_run,
            install::chart_rbac_suffices_for_a_canary_and_a_standby_takes_over,
        ],
        "platform-install",
        false,
    )
}
