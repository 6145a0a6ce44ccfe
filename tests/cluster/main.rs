//! Integration tests on a real control plane (kube-apiserver, controller-manager, scheduler, etcd)
//! with kwok nodes. One process, one control plane, one namespace per test.

mod support;

mod analysis;
mod atlas;
mod cli;
mod crds;
mod edge;
mod environments;
mod gates;
mod nodes;
mod redis;
mod rollout;
mod routing;

fn main() -> std::process::ExitCode {
    support::run(cluster_tests![
        analysis::builtin_golden_signals_pass_and_the_canary_is_promoted,
        analysis::a_raised_error_rate_aborts_the_canary,
        analysis::inconclusive_pauses_until_promoted,
        analysis::a_dry_run_metric_never_aborts_and_finished_runs_expire,
        analysis::web_provider_reads_a_json_field_with_a_secret_header,
        analysis::job_provider_failure_aborts_the_canary,
        atlas::secret_published_and_wired_into_an_app,
        atlas::rotation_deletes_the_old_user_only_after_the_app_is_healthy_on_the_new_revision,
        atlas::deletion_removes_what_the_operator_created_unless_kept,
        atlas::wrong_or_missing_atlas_credentials_are_clear_conditions,
        atlas::ping_against_ferretdb_succeeds_and_fails_clearly,
        cli::ship_watch_promote_with_status_exit_codes,
        cli::bad_release_exits_1_then_undo_reuses_the_old_replica_set,
        cli::abort_retry_pause_resume_promote_full_restart,
        cli::usage_connection_errors_help_completion_and_lint,
        cli::blue_green_promote_and_instant_undo,
        crds::invalid_apps_are_rejected_with_a_message_naming_the_field,
        crds::invalid_data_plane_resources_are_rejected,
        crds::valid_app_is_accepted_with_defaults_and_printer_columns,
        crds::kubectl_explain_and_category_work,
        crds::scale_subresource_sets_replicas,
        edge::records_rules_settings_follow_the_apps_and_drift_is_corrected,
        edge::wrong_token_is_a_clear_condition_and_rate_limits_are_waited_out,
        edge::purge_exactly_once_per_promotion_across_restarts,
        environments::local_environment_is_ready_against_the_fakes,
        gates::webhook_gates_hold_the_rollout_until_they_answer_2xx,
        nodes::deployment_pods_become_ready_and_crash_labelled_pods_do_not,
        nodes::rbac_refuses_what_it_does_not_grant,
        redis::external_reachable_and_unreachable_without_leaking_the_password,
        redis::app_gets_the_connection_and_rolls_when_the_secret_changes,
        redis::purge_on_promotion_deletes_exactly_the_matching_keys_once,
        redis::in_cluster_objects_follow_the_spec,
        redis::when_deleted_delete_removes_the_volumes_and_pending_pods_are_reported,
        rollout::canary_good_release_steps_pauses_and_promotes,
        rollout::canary_bad_release_rolls_back_by_itself,
        rollout::blue_green_manual_promote_then_instant_rollback,
        rollout::failing_pre_deploy_job_stops_the_rollout,
        rollout::operator_restart_resumes_during_step_and_pause,
        rollout::autoscaled_app_through_a_canary,
        rollout::abort_and_retry_by_annotation,
        routing::nginx_canary_ingress_follows_each_step,
        routing::gateway_http_route_weights_follow_each_step,
    ])
}
