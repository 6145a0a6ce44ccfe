//! Webhook gates: the App's `strategy.webhooks` endpoints, asked before a rollout starts and before
//! it promotes (Flagger's confirm-rollout and confirm-promotion).
//!
//! A gate is asked with a POST of a JSON body; a 2xx answer opens it. A 4xx answer is a "no" and
//! is not retried; an endpoint that cannot be reached, times out or answers 5xx is retried
//! `retries` times with backoff before the attempt counts as a no. Messages name the endpoint by
//! scheme, host and path only: the query string (where a token may live) never appears.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::http::{RetryPolicy, build_client};
use crate::api::app::Webhook;
use crate::rollout::{GateAnswer, duration};

/// What the operator tells the endpoint.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GateRequest {
    /// The App's name.
    pub name: String,
    /// The App's namespace.
    pub namespace: String,
    /// `<namespace>/<name>`, for endpoints that want one key.
    pub app: String,
    /// `confirm-rollout` or `confirm-promotion`.
    pub phase: String,
    /// Pod-template hash of the revision waiting.
    pub revision: String,
    /// Image of that revision.
    pub image: String,
    /// The webhook's `metadata`.
    pub metadata: BTreeMap<String, String>,
}

/// Longest part of an answer's body repeated in the status message.
const BODY_EXCERPT: usize = 200;

/// Asks one gate. Never fails: every outcome is an answer, open or closed with a reason.
pub async fn ask(hook: &Webhook, request: &GateRequest) -> GateAnswer {
    let timeout = duration::parse(&hook.timeout).unwrap_or(Duration::from_secs(10));
    let policy = RetryPolicy {
        max_attempts: 1 + u32::try_from(hook.retries.clamp(0, 10)).unwrap_or(0),
        base_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(5),
        timeout,
        ..RetryPolicy::default()
    };
    let endpoint = redacted(&hook.url);
    let closed = |message: String| GateAnswer { passed: false, message };
    let client = match build_client(&policy) {
        Ok(c) => c,
        Err(e) => return closed(format!("cannot set up an HTTP client for {endpoint}: {e}")),
    };
    let mut last = String::new();
    for attempt in 1..=policy.max_attempts {
        if attempt > 1 {
            tokio::time::sleep(policy.backoff(attempt - 1)).await;
        }
        match client.post(&hook.url).json(request).send().await {
            Ok(response) => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                let excerpt = excerpt(&body);
                let said = if excerpt.is_empty() {
                    format!("{endpoint} answered {status}")
                } else {
                    format!("{endpoint} answered {status}: {excerpt}")
                };
                if status.is_success() {
                    return GateAnswer { passed: true, message: said };
                }
                if !status.is_server_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
                    return closed(said);
                }
                last = said;
            }
            Err(e) => {
                let what = if e.is_timeout() {
                    let limit = if timeout < Duration::from_secs(1) {
                        format!("{}ms", timeout.as_millis())
                    } else {
                        duration::format(timeout)
                    };
                    format!("did not answer within {limit}")
                } else if e.is_connect() {
                    "cannot be reached (connection failed)".to_string()
                } else {
                    "failed (the request could not be sent)".to_string()
                };
                last = format!("{endpoint} {what}");
            }
        }
    }
    let tries = policy.max_attempts;
    closed(format!("{last} ({tries} attempt{})", if tries == 1 { "" } else { "s" }))
}

/// The URL without its query, fragment or user info: safe to show.
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            u.set_query(None);
            u.set_fragment(None);
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "the webhook URL (unparsable)".to_string(),
    }
}

/// The start of a body on one line, at most [`BODY_EXCERPT`] characters.
fn excerpt(body: &str) -> String {
    let one_line = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= BODY_EXCERPT {
        return one_line;
    }
    let cut: String = one_line.chars().take(BODY_EXCERPT).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::http::StatusCode;
    use axum::routing::post;

    use super::*;
    use crate::api::app::WebhookType;

    fn hook(url: String, retries: i32) -> Webhook {
        Webhook {
            name: "qa".into(),
            kind: WebhookType::ConfirmPromotion,
            url,
            timeout: "300ms".into(),
            retries,
            interval: "30s".into(),
            metadata: BTreeMap::new(),
        }
    }

    fn request() -> GateRequest {
        GateRequest {
            name: "api".into(),
            namespace: "prod".into(),
            app: "prod/api".into(),
            phase: "confirm-promotion".into(),
            revision: "abc".into(),
            image: "api:2".into(),
            metadata: BTreeMap::from([("team".into(), "core".into())]),
        }
    }

    /// Serves `answers` in turn (the last one repeats), counting requests and keeping the bodies.
    async fn server(
        answers: Vec<(StatusCode, &'static str)>,
    ) -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<serde_json::Value>>>) {
        let count = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(std::sync::Mutex::new(vec![]));
        let (c, b) = (count.clone(), bodies.clone());
        let app = Router::new().route(
            "/gate",
            post(move |body: String| {
                let n = c.fetch_add(1, Ordering::SeqCst);
                b.lock().unwrap().push(serde_json::from_str(&body).unwrap_or_default());
                let (status, text) = answers[n.min(answers.len() - 1)];
                async move {
                    if text == "slow" {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    (status, text)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/gate"), count, bodies)
    }

    #[tokio::test]
    async fn a_2xx_answer_opens_the_gate_and_the_body_describes_the_revision() {
        let (url, count, bodies) = server(vec![(StatusCode::OK, "go")]).await;
        let answer = ask(&hook(url, 2), &request()).await;
        assert!(answer.passed, "{answer:?}");
        assert!(answer.message.ends_with("answered 200 OK: go"), "{}", answer.message);
        assert_eq!(count.load(Ordering::SeqCst), 1);
        let body = bodies.lock().unwrap()[0].clone();
        assert_eq!(body["phase"], "confirm-promotion");
        assert_eq!(body["revision"], "abc");
        assert_eq!(body["metadata"]["team"], "core");
    }

    #[tokio::test]
    async fn a_4xx_answer_is_a_no_and_is_not_retried() {
        let (url, count, _) = server(vec![(StatusCode::FORBIDDEN, "QA has not signed off")]).await;
        let answer = ask(&hook(url, 3), &request()).await;
        assert!(!answer.passed);
        assert!(answer.message.contains("403 Forbidden: QA has not signed off"), "{}", answer.message);
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_5xx_answer_is_retried_until_a_2xx() {
        let (url, count, _) = server(vec![
            (StatusCode::BAD_GATEWAY, ""),
            (StatusCode::SERVICE_UNAVAILABLE, ""),
            (StatusCode::OK, ""),
        ])
        .await;
        let answer = ask(&hook(url, 2), &request()).await;
        assert!(answer.passed, "{answer:?}");
        assert_eq!(count.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn retries_run_out_on_a_failing_endpoint() {
        let (url, count, _) = server(vec![(StatusCode::INTERNAL_SERVER_ERROR, "boom")]).await;
        let answer = ask(&hook(url, 1), &request()).await;
        assert!(!answer.passed);
        assert!(
            answer.message.contains("500 Internal Server Error: boom (2 attempts)"),
            "{}",
            answer.message
        );
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_slow_endpoint_times_out() {
        let (url, _, _) = server(vec![(StatusCode::OK, "slow")]).await;
        let answer = ask(&hook(url, 0), &request()).await;
        assert!(!answer.passed);
        assert!(answer.message.contains("did not answer within 300ms (1 attempt)"), "{}", answer.message);
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_a_no_that_hides_the_query_string() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://user:pw@127.0.0.1:{port}/gate?token=s3cr3t");
        let answer = ask(&hook(url, 0), &request()).await;
        assert!(!answer.passed);
        assert!(answer.message.contains("cannot be reached"), "{}", answer.message);
        assert!(!answer.message.contains("s3cr3t"), "{}", answer.message);
        assert!(!answer.message.contains("pw"), "{}", answer.message);
        assert!(answer.message.contains(&format!("http://127.0.0.1:{port}/gate")), "{}", answer.message);
    }

    #[test]
    fn long_bodies_are_cut_to_one_line() {
        let body = format!("line one\nline two {}", "x".repeat(500));
        let e = excerpt(&body);
        assert!(e.starts_with("line one line two x"));
        assert_eq!(e.chars().count(), BODY_EXCERPT + 1);
    }
}
