//! Checks a Pipeline spec beyond what the CRD schema can express: URL shape, durations, cron syntax,
//! names, and the keys a credentials Secret must hold. Every error names the field path.
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::pipeline::{HISTORY_LIMIT_RANGE, PipelineSpec};
use crate::git::{self, Credentials, RemoteSpec, Scheme, credentials};
use crate::schedule::{MIN_INTERVAL, Schedule};

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, such as `spec.interval` or `spec.env[2].name`.
    pub path: String,
    /// What is wrong, in words a user can act on.
    pub message: String,
}

impl FieldError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// What the operator running the check permits.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Accept `file://` URLs and local paths in `spec.repo` (only `cdkube dev` does).
    pub allow_local_repos: bool,
}

/// Validates `spec` with the defaults of an in-cluster operator (no local repositories).
pub fn validate(spec: &PipelineSpec) -> Result<(), Vec<FieldError>> {
    validate_with(spec, Options::default())
}

/// Validates `spec`, collecting every error rather than stopping at the first.
pub fn validate_with(spec: &PipelineSpec, options: Options) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    if let Err(message) = check_repo(&spec.repo, options) {
        errors.push(FieldError::new("spec.repo", message));
    }
    if let Some(branch) = &spec.branch {
        check(&mut errors, "spec.branch", check_branch(branch));
    }
    check_timing(spec, &mut errors);
    if let Some(limit) = spec.history_limit
        && !HISTORY_LIMIT_RANGE.contains(&limit)
    {
        errors.push(FieldError::new(
            "spec.historyLimit",
            format!("must be between 1 and 100, got {limit}"),
        ));
    }
    check_build(spec, &mut errors);
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

fn check(errors: &mut Vec<FieldError>, path: &str, result: Result<(), String>) {
    if let Err(message) = result {
        errors.push(FieldError::new(path, message));
    }
}

fn check_timing(spec: &PipelineSpec, errors: &mut Vec<FieldError>) {
    if spec.interval.is_some() && spec.schedule.is_some() {
        errors.push(FieldError::new(
            "spec.schedule",
            "interval and schedule are mutually exclusive: set one of them",
        ));
    }
    if let Some(interval) = &spec.interval {
        let result = parse_duration(interval).and_then(|d| {
            if d < MIN_INTERVAL {
                Err(format!("{interval:?} is below the 10s floor"))
            } else {
                Ok(())
            }
        });
        check(errors, "spec.interval", result);
    }
    if let Some(schedule) = &spec.schedule {
        check(errors, "spec.schedule", parse_schedule(schedule).map(|_| ()));
    }
    if let Some(timeout) = &spec.timeout {
        let result = parse_duration(timeout).and_then(|d| {
            if d < Duration::from_secs(1) {
                Err(format!("{timeout:?} is shorter than 1s"))
            } else if i64::try_from(d.as_secs()).is_err() {
                Err(format!(
                    "{timeout:?} is beyond what a Pod's activeDeadlineSeconds can hold"
                ))
            } else {
                Ok(())
            }
        });
        check(errors, "spec.timeout", result);
    }
}

fn check_build(spec: &PipelineSpec, errors: &mut Vec<FieldError>) {
    if !is_image_reference(&spec.build_image) {
        errors.push(FieldError::new(
            "spec.buildImage",
            format!(
                "{:?} is not a container image reference such as busybox, registry.example.com:5000/team/app:1.0 or app@sha256:<64 hex>",
                spec.build_image
            ),
        ));
    }
    check_resources(spec, errors);
    if spec.build_commands.is_empty() {
        errors.push(FieldError::new(
            "spec.buildCommands",
            "must name at least the command to run",
        ));
    }
    for (i, command) in spec.build_commands.iter().enumerate() {
        if command.trim().is_empty() {
            errors.push(FieldError::new(format!("spec.buildCommands[{i}]"), "must not be empty"));
        }
    }
    if spec.target_name.trim().is_empty() {
        errors.push(FieldError::new("spec.targetName", "must not be empty"));
    }
    if spec.target_version.trim().is_empty() {
        errors.push(FieldError::new("spec.targetVersion", "must not be empty"));
    }
    check_env(spec, errors);
    if let Some(secret) = &spec.secret_ref {
        check(errors, "spec.secretRef.name", check_dns_subdomain(&secret.name));
    }
    if let Some(account) = &spec.service_account_name {
        check(errors, "spec.serviceAccountName", check_dns_subdomain(account));
    }
}

/// The reference grammar of container images (distribution's `reference` package): an optional
/// registry with port, lowercase path components, an optional tag and an optional digest.
fn is_image_reference(image: &str) -> bool {
    static REFERENCE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        let component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
        let domain = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?";
        let pattern = format!(
            r"^(?:{domain}/)?{component}(?:/{component})*(?::[\w][\w.-]{{0,127}})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{{32,}})?$"
        );
        regex::Regex::new(&pattern).expect("constant pattern")
    });
    image.len() <= 1024 && REFERENCE.is_match(image)
}

/// Requests and limits are quantities, not negative, and no limit is below its request (as
/// kube-apiserver checks a Pod's containers).
fn check_resources(spec: &PipelineSpec, errors: &mut Vec<FieldError>) {
    let Some(resources) = &spec.resources else { return };
    let mut parsed =
        |kind: &str, list: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
            let mut values = BTreeMap::new();
            for (name, quantity) in list.iter().flatten() {
                let path = format!("spec.resources.{kind}.{name}");
                match parse_quantity(&quantity.0) {
                    Some(v) if v >= 0.0 => {
                        values.insert(name.clone(), v);
                    }
                    Some(_) => errors.push(FieldError::new(path, "must be greater than or equal to 0")),
                    None => errors.push(FieldError::new(
                        path,
                        format!("{:?} is not a quantity such as 500m, 2, 1Gi or 256Mi", quantity.0),
                    )),
                }
            }
            values
        };
    let requests = parsed("requests", &resources.requests);
    let limits = parsed("limits", &resources.limits);
    for (name, request) in &requests {
        if limits.get(name).is_some_and(|limit| limit < request) {
            errors.push(FieldError::new(
                format!("spec.resources.requests.{name}"),
                format!("must be less than or equal to the {name} limit"),
            ));
        }
    }
}

/// The value of a Kubernetes quantity (`500m`, `1.5`, `2Gi`, `1e3`), or `None` if it is not one.
fn parse_quantity(text: &str) -> Option<f64> {
    static QUANTITY: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))((?:[KMGTPE]i)|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
            .expect("constant pattern")
    });
    let caps = QUANTITY.captures(text)?;
    let number: f64 = caps[1].parse().ok()?;
    let scale = match caps.get(2).map_or("", |m| m.as_str()) {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => 10f64.powi(exponent[1..].parse::<i32>().ok()?),
    };
    Some(number * scale)
}

fn check_env(spec: &PipelineSpec, errors: &mut Vec<FieldError>) {
    let mut seen = std::collections::HashSet::new();
    for (i, var) in spec.env.iter().enumerate() {
        let path = format!("spec.env[{i}].name");
        let name = var.name.as_str();
        let valid = name
            .chars()
            .enumerate()
            .all(|(j, c)| c.is_ascii_alphabetic() || matches!(c, '_' | '-' | '.') || (j > 0 && c.is_ascii_digit()));
        if name.is_empty() || !valid {
            errors.push(FieldError::new(
                path,
                format!("{name:?} is not a valid environment variable name"),
            ));
        } else if name.starts_with("CDKUBE_") {
            errors.push(FieldError::new(
                path,
                format!("{name:?}: names starting with CDKUBE_ are set by cdkube"),
            ));
        } else if !seen.insert(name) {
            errors.push(FieldError::new(path, format!("{name:?} is set twice")));
        }
    }
}

/// Shape of `interval` and `timeout`, shared with the CRD schema so both layers agree: whole numbers
/// with the units `ms`, `s`, `m`, `h`, as in `30s`, `5m`, `1h30m`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

/// Parses a duration of [`DURATION_PATTERN`]'s shape.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    static SHAPE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(DURATION_PATTERN).expect("constant pattern"));
    if !SHAPE.is_match(text) {
        return Err(format!("{text:?} is not a duration such as 30s, 5m or 1h30m"));
    }
    humantime::parse_duration(text).map_err(|e| format!("{text:?} is not a valid duration: {e}"))
}

/// Parses a cron expression: 5 crontab fields, 6 with seconds first, or a macro such as `@hourly`.
/// The poller's own parser, so what validates is what runs.
pub fn parse_schedule(expression: &str) -> Result<Schedule, String> {
    Schedule::cron(expression).map_err(|e| e.to_string())
}

fn check_branch(branch: &str) -> Result<(), String> {
    git::normalize_branch(branch)
        .map(|_| ())
        .map_err(|e| e.message().to_string())
}

/// Whether `name` is a DNS-1123 subdomain, the rule for object, Secret and ServiceAccount names.
pub fn is_dns_subdomain(name: &str) -> bool {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    name.len() <= 253 && name.split('.').all(label_ok)
}

fn check_dns_subdomain(name: &str) -> Result<(), String> {
    if is_dns_subdomain(name) {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid name: lowercase letters, digits, '-' and '.', at most 253 characters"
        ))
    }
}

/// Checks `repo` with the git engine's own URL parser and returns how it is reached. A password in the
/// URL is refused: anyone who can read the Pipeline could read it.
pub fn check_repo(repo: &str, options: Options) -> Result<Scheme, String> {
    let remote = RemoteSpec::new(repo, None, Credentials::none(), options.allow_local_repos)
        .map_err(|e| e.message().to_string())?;
    if !remote.credentials.is_empty() {
        return Err("must not embed a password; put credentials in the Secret named by spec.secretRef".into());
    }
    if let Some(host) = remote.url.host()
        && !is_host_name(host)
    {
        return Err("the host may hold only letters, digits, '.', '-', '_' and an [IPv6] address".into());
    }
    Ok(remote.url.scheme())
}

/// A DNS name or an IP address: what a host may be. Rules out shell metacharacters, which some
/// transports (ssh) would hand to a command line.
fn is_host_name(host: &str) -> bool {
    let ipv6 = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    !host.is_empty()
        && (ipv6.parse::<std::net::Ipv6Addr>().is_ok()
            || host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')))
}

/// Checks that a credentials Secret's data holds the keys `spec.repo`'s transport needs.
/// `secret_name` is only used in messages; key values are never printed.
pub fn validate_secret_data(
    spec: &PipelineSpec,
    secret_name: &str,
    data: &BTreeMap<String, Vec<u8>>,
    options: Options,
) -> Result<(), Vec<FieldError>> {
    let problem = |message: &str| {
        vec![FieldError::new(
            "spec.secretRef",
            format!("Secret {secret_name:?}: {message}"),
        )]
    };
    let scheme = check_repo(&spec.repo, options).map_err(|m| vec![FieldError::new("spec.repo", m)])?;
    Credentials::from_secret_data(data).map_err(|e| problem(e.message()))?;
    let has = |key: &str| data.get(key).is_some_and(|v| !v.is_empty());
    let missing = match scheme {
        Scheme::Git => Some("git:// has no authentication; remove secretRef or use https or ssh"),
        Scheme::File => Some("local repositories take no credentials"),
        Scheme::Ssh if !has(credentials::IDENTITY) => Some("an ssh repository needs the private key in key `identity`"),
        Scheme::Ssh if !has(credentials::KNOWN_HOSTS) => {
            Some("an ssh repository needs key `known_hosts` to verify the server's host key")
        }
        Scheme::Http | Scheme::Https
            if ![credentials::PASSWORD, credentials::BEARER_TOKEN, credentials::CA_CERT]
                .iter()
                .any(|k| has(k)) =>
        {
            Some("an http(s) repository needs `username`+`password`, `bearerToken` or `ca.crt`")
        }
        _ => None,
    };
    match missing {
        Some(message) => Err(problem(message)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(repo: &str) -> PipelineSpec {
        PipelineSpec {
            repo: repo.into(),
            build_image: "busybox".into(),
            build_commands: vec!["echo".into()],
            target_name: "app".into(),
            target_version: "1.0".into(),
            ..Default::default()
        }
    }

    fn paths(result: Result<(), Vec<FieldError>>) -> Vec<String> {
        result.err().unwrap_or_default().into_iter().map(|e| e.path).collect()
    }

    #[test]
    fn repo_urls_by_transport() {
        let strict = Options::default();
        for (url, scheme) in [
            ("https://github.com/org/repo.git", Scheme::Https),
            ("http://127.0.0.1:8080/repo", Scheme::Http),
            ("ssh://git@host:2222/srv/repo.git", Scheme::Ssh),
            ("git@github.com:org/repo.git", Scheme::Ssh),
            ("git://127.0.0.1:9418/repo.git", Scheme::Git),
        ] {
            assert_eq!(check_repo(url, strict), Ok(scheme), "{url}");
        }
        for url in [
            "ftp://host/repo",
            "https://host/",
            "git@host:",
            "with space/x",
            "",
            "s3://b/k",
        ] {
            assert!(check_repo(url, strict).is_err(), "{url} should be refused");
        }
        let error = check_repo("https://me:s3cret@host/repo.git", strict).unwrap_err();
        assert!(!error.contains("s3cret"), "a password must never be echoed: {error}");
    }

    #[test]
    fn images_quantities_and_the_timeout_range() {
        for image in [
            "busybox",
            "registry.example.com:5000/team/app:1.0",
            "ghcr.io/o/r@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(is_image_reference(image), "{image}");
        }
        for image in ["Busybox", "app:", "a b", "app:tag:more", "-app", "app@sha256:xyz"] {
            assert!(!is_image_reference(image), "{image}");
        }
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("1Gi"), Some(1024f64.powi(3)));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("1.5.5"), None);
        assert_eq!(parse_quantity("ten"), None);
        let mut s = spec("https://example.com/r.git");
        s.resources = Some(
            serde_json::from_value(serde_json::json!({
                "requests": {"cpu": "2", "memory": "-1Gi"}, "limits": {"cpu": "500m", "memory": "lots"}
            }))
            .unwrap(),
        );
        s.timeout = Some("9999999999999999999s".into());
        let errors: Vec<String> = validate(&s).unwrap_err().iter().map(|e| e.to_string()).collect();
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.resources.requests.memory: must be greater than or equal to 0")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.resources.limits.memory: \"lots\" is not a quantity")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.resources.requests.cpu: must be less than or equal to the cpu limit")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.starts_with("spec.timeout:")), "{errors:?}");
    }

    #[test]
    fn hosts_with_shell_metacharacters_are_refused() {
        struct Case {
            repo: &'static str,
            ok: bool,
        }
        let cases = [
            Case {
                repo: "ssh://ho;st/x.git",
                ok: false,
            },
            Case {
                repo: "https://ho$(id)st/x",
                ok: false,
            },
            Case {
                repo: "git@ho`id`st:x.git",
                ok: false,
            },
            Case {
                repo: "https://[::1]:8443/x.git",
                ok: true,
            },
            Case {
                repo: "ssh://git@git.example.com:2222/team/app.git",
                ok: true,
            },
            Case {
                repo: "git@github.com:org/repo.git",
                ok: true,
            },
        ];
        for case in cases {
            let result = check_repo(case.repo, Options::default());
            assert_eq!(result.is_ok(), case.ok, "{}: {result:?}", case.repo);
        }
    }

    #[test]
    fn local_repos_only_when_allowed() {
        let local = Options {
            allow_local_repos: true,
        };
        for url in ["file:///srv/repo.git", "/srv/repo.git"] {
            assert!(check_repo(url, Options::default()).is_err(), "{url}");
            assert_eq!(check_repo(url, local), Ok(Scheme::File), "{url}");
        }
    }

    #[test]
    fn durations_have_the_schema_shape() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "1.5m", "5 m", "5min", "-5s", "m", "5"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cron_takes_five_or_six_fields() {
        assert!(parse_schedule("*/5 * * * *").is_ok());
        assert!(parse_schedule("30 */5 * * * *").is_ok());
        assert!(parse_schedule("0 0 * * * * 2030").unwrap_err().contains("got 7"));
        let error = parse_schedule("99 * * * *").unwrap_err();
        assert!(error.contains("invalid cron schedule"), "{error}");
        assert_eq!(error.lines().count(), 1, "one line: {error}");
    }

    #[test]
    fn timing_rules() {
        let mut s = spec("https://h/r");
        s.interval = Some("9s".into());
        assert_eq!(paths(validate(&s)), ["spec.interval"]);
        s.interval = Some("10s".into());
        assert!(validate(&s).is_ok());
        s.schedule = Some("* * * * *".into());
        assert_eq!(paths(validate(&s)), ["spec.schedule"]);
        s.interval = None;
        s.timeout = Some("0s".into());
        assert_eq!(paths(validate(&s)), ["spec.timeout"]);
    }

    #[test]
    fn branch_names() {
        for good in ["main", "release/1.2", "feature-x", "refs/heads/main"] {
            assert!(check_branch(good).is_ok(), "{good}");
        }
        for bad in ["", "a..b", "a b", "x.lock", "x/", "a~1"] {
            assert!(check_branch(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_error_is_collected() {
        let mut s = spec("ftp://h/r");
        s.build_commands = vec![];
        s.history_limit = Some(0);
        s.env = vec![k8s_openapi::api::core::v1::EnvVar {
            name: "1BAD".into(),
            ..Default::default()
        }];
        assert_eq!(
            paths(validate(&s)),
            [
                "spec.repo",
                "spec.historyLimit",
                "spec.buildCommands",
                "spec.env[0].name"
            ]
        );
    }

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn secret_keys_follow_the_transport() {
        let o = Options::default();
        let https = spec("https://h/r");
        assert!(validate_secret_data(&https, "s", &data(&[("username", "u"), ("password", "p")]), o).is_ok());
        assert!(validate_secret_data(&https, "s", &data(&[("bearerToken", "t")]), o).is_ok());
        assert!(validate_secret_data(&https, "s", &data(&[("username", "u")]), o).is_err());
        assert!(validate_secret_data(&https, "s", &data(&[("password", "p"), ("bearerToken", "t")]), o).is_err());
        assert!(validate_secret_data(&https, "s", &data(&[("ca.crt", "garbage")]), o).is_err());
        let ssh = spec("git@h:r.git");
        let key = include_str!("../../fixtures/keys/throwaway_ed25519");
        let public = include_str!("../../fixtures/keys/throwaway_ed25519.pub");
        let known_hosts = &format!(
            "git.example.com {}",
            public.split(' ').take(2).collect::<Vec<_>>().join(" ")
        );
        assert!(validate_secret_data(&ssh, "s", &data(&[("identity", key), ("known_hosts", known_hosts)]), o).is_ok());
        assert!(validate_secret_data(&ssh, "s", &data(&[("identity", key)]), o).is_err());
        assert!(
            validate_secret_data(
                &ssh,
                "s",
                &data(&[("identity", "not a key"), ("known_hosts", known_hosts)]),
                o
            )
            .is_err()
        );
        let git = spec("git://h/r");
        assert!(validate_secret_data(&git, "s", &data(&[("username", "u"), ("password", "p")]), o).is_err());
        let error = validate_secret_data(
            &https,
            "s",
            &data(&[("username", "u"), ("password", "hunter2"), ("bearerToken", "t")]),
            o,
        );
        assert!(!format!("{error:?}").contains("hunter2"));
    }
}
