//! The operator's ops and webhook ports from the outside: scraping `/metrics` (parsed by an independent
//! Prometheus text parser) and sending signed webhook deliveries the way GitHub, GitLab and a generic
//! sender do.
use std::time::Duration;

use cdkube::webhook::{GENERIC_SIGNATURE_HEADER, sign};

/// The webhook secret every test Secret holds, under each provider's key.
pub const WEBHOOK_SECRET: &str = "it-is-a-secret";

/// An HTTP client with a deadline.
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// A scrape of `/metrics`.
pub struct Scrape(prometheus_parse::Scrape);

/// Scrapes `{base}/metrics`; panics unless it answers 200 with text a Prometheus parser reads.
pub async fn scrape(base: &str) -> Scrape {
    let response = http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let text = response.text().await.expect("metrics text");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF:\n{text}");
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    Scrape(prometheus_parse::Scrape::parse(lines).expect("Prometheus text"))
}

impl Scrape {
    /// The value of sample `name` whose labels include `labels`; 0 when there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    }

    /// Whether a sample named `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.0.samples.iter().any(|s| s.metric == name)
    }
}

/// GET `{base}{path}`: status and body.
pub async fn get(base: &str, path: &str) -> (u16, String) {
    let response = http().get(format!("{base}{path}")).send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// A webhook delivery: provider path, headers and body.
pub struct Delivery {
    /// `github`, `gitlab` or `generic`.
    pub provider: &'static str,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Delivery {
    /// A GitHub `push` of `sha` to `branch` of the repository at `clone_url`, signed.
    pub fn github_push(clone_url: &str, branch: &str, sha: &str) -> Delivery {
        let body = serde_json::json!({
            "ref": format!("refs/heads/{branch}"), "before": "0".repeat(40), "after": sha,
            "repository": {"clone_url": clone_url, "ssh_url": "git@example.invalid:x/y.git"},
        });
        Delivery::github("push", body.to_string().into_bytes())
    }

    /// A GitHub delivery of `event`, signed with [`WEBHOOK_SECRET`].
    pub fn github(event: &str, body: Vec<u8>) -> Delivery {
        let signature = sign(WEBHOOK_SECRET.as_bytes(), &body);
        Delivery {
            provider: "github",
            headers: vec![
                ("X-GitHub-Event".into(), event.into()),
                ("X-Hub-Signature-256".into(), signature),
            ],
            body,
        }
    }

    /// A GitLab `Push Hook` of `sha` to `branch`, with the token.
    pub fn gitlab_push(http_url: &str, branch: &str, sha: &str) -> Delivery {
        let body = serde_json::json!({
            "object_kind": "push", "ref": format!("refs/heads/{branch}"), "after": sha,
            "project": {"git_http_url": http_url},
        });
        Delivery {
            provider: "gitlab",
            headers: vec![
                ("X-Gitlab-Event".into(), "Push Hook".into()),
                ("X-Gitlab-Token".into(), WEBHOOK_SECRET.into()),
            ],
            body: body.to_string().into_bytes(),
        }
    }

    /// A generic push (`{repo, branch}`), signed.
    pub fn generic_push(repo: &str, branch: &str) -> Delivery {
        let body = serde_json::json!({"repo": repo, "branch": branch})
            .to_string()
            .into_bytes();
        let signature = sign(WEBHOOK_SECRET.as_bytes(), &body);
        Delivery {
            provider: "generic",
            headers: vec![(GENERIC_SIGNATURE_HEADER.into(), signature)],
            body,
        }
    }

    /// Sends it to the receiver at `base`: status and body.
    pub async fn send(&self, base: &str) -> (u16, String) {
        let mut request = http()
            .post(format!("{base}/hooks/{}", self.provider))
            .header("Content-Type", "application/json")
            .body(self.body.clone());
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("POST webhook");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }
}
