//! RBAC and ServiceAccount tokens in the embedded API server, as kube-rs and the real kubectl see
//! them: TokenRequest and `kubectl create token`, RBAC decisions with kube-apiserver's 403 wording,
//! `kubectl auth can-i`, tokens that stop working (deleted ServiceAccount, expiry, tampering),
//! default ServiceAccounts and the ServiceAccount admission check, and deploy/'s operator identity.
mod support;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use support::cluster::{Cluster, client_for, wait_for};

const WAIT: Duration = Duration::from_secs(20);

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("object")
}

/// The claims of a JWT, unverified.
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// A kube-rs client that sends `token`.
async fn client_with_token(cluster: &Cluster, token: &str, name: &str) -> Client {
    let path = cluster.dir.path().join(format!("{name}.kubeconfig"));
    cluster
        .server
        .write_kubeconfig(&path, cdkube::embedded::Credential::Token(token))
        .expect("kubeconfig");
    client_for(&path).await
}

async fn create_ns(admin: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(admin.clone());
    api.create(&PostParams::default(), &obj(json!({"metadata": {"name": name}})))
        .await
        .expect("create namespace");
}

async fn role(admin: &Client, ns: &str, name: &str, rules: Value) {
    let api: Api<Role> = Api::namespaced(admin.clone(), ns);
    api.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": name}, "rules": rules})),
    )
    .await
    .expect("create Role");
}

async fn cluster_role(admin: &Client, name: &str, rules: Value) {
    let api: Api<ClusterRole> = Api::all(admin.clone());
    api.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": name}, "rules": rules})),
    )
    .await
    .expect("create ClusterRole");
}

/// A RoleBinding in `ns` of `kind/role` to ServiceAccount `default/robot`.
async fn bind_robot(admin: &Client, ns: &str, name: &str, kind: &str, role: &str) {
    let api: Api<RoleBinding> = Api::namespaced(admin.clone(), ns);
    let binding = json!({"metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "default"}]});
    api.create(&PostParams::default(), &obj(binding))
        .await
        .expect("create RoleBinding");
}

fn robot_forbidden(verb: &str, resource: &str, ns: Option<&str>) -> String {
    let scope = match ns {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".into(),
    };
    format!(
        "User \"system:serviceaccount:default:robot\" cannot {verb} resource \"{resource}\" in API group \"\" {scope}"
    )
}

#[tokio::test]
async fn token_request_issues_kubes_claims_and_the_server_accepts_it() {
    let cluster = Cluster::start().await;
    let admin = cluster.client().await;
    let token = cluster.service_account_token("default", "robot").await;
    let sa: ServiceAccount = Api::namespaced(admin.clone(), "default").get("robot").await.unwrap();
    let c = claims(&token);
    assert_eq!(c["iss"], "https://kubernetes.default.svc.cluster.local");
    assert_eq!(c["sub"], "system:serviceaccount:default:robot");
    assert_eq!(c["aud"], json!(["https://kubernetes.default.svc.cluster.local"]));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 3600);
    assert_eq!(c["nbf"], c["iat"]);
    assert_eq!(c["kubernetes.io"]["namespace"], "default");
    assert_eq!(c["kubernetes.io"]["serviceaccount"]["name"], "robot");
    assert_eq!(
        c["kubernetes.io"]["serviceaccount"]["uid"],
        json!(sa.metadata.uid.unwrap())
    );

    // The server accepts it: SelfSubjectReview says who the token is.
    let robot = client_with_token(&cluster, &token, "robot").await;
    let review: Value = robot
        .request(
            http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
                .header("content-type", "application/json")
                .body(br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#.to_vec())
                .unwrap(),
        )
        .await
        .expect("SelfSubjectReview");
    let info = &review["status"]["userInfo"];
    assert_eq!(info["username"], "system:serviceaccount:default:robot");
    assert_eq!(
        info["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );

    // expirationSeconds has kube's bounds; a missing ServiceAccount is 404.
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    let short = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(60),
            ..Default::default()
        }),
        ..Default::default()
    };
    let e = api_error(
        sas.create_subresource::<_, TokenRequest>("token", "robot", &PostParams::default(), &short)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            422,
            "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
        )
    );
    let e = api_error(
        sas.create_subresource::<_, TokenRequest>("token", "ghost", &PostParams::default(), &TokenRequest::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "serviceaccounts \"ghost\" not found")
    );
}

#[tokio::test]
async fn kubectl_create_token_prints_a_token_the_server_accepts() {
    let cluster = Cluster::start().await;
    if !support::kubectl::present("kubectl create token") {
        return;
    }
    let kubectl = cluster.kubectl();
    let token = kubectl.ok(&["create", "token", "default"]).await;
    let token = token.trim();
    assert_eq!(claims(token)["sub"], "system:serviceaccount:default:default");
    let kubeconfig = cluster.dir.path().join("default-sa.kubeconfig");
    cluster
        .server
        .write_kubeconfig(&kubeconfig, cdkube::embedded::Credential::Token(token))
        .unwrap();
    let who = kubectl
        .run_with(
            &kubeconfig,
            &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
        )
        .await;
    assert!(who.success(), "{}", who.stderr);
    assert_eq!(who.stdout, "system:serviceaccount:default:default");
    // kubectl's own flags reach the TokenRequest: a too-short duration is the server's 422.
    let err = kubectl.fails(&["create", "token", "default", "--duration", "5m"]).await;
    assert!(err.contains("may not specify a duration less than 10 minutes"), "{err}");
}

#[tokio::test]
async fn a_service_account_without_bindings_is_forbidden_with_kubes_status() {
    let cluster = Cluster::start().await;
    let kubeconfig = cluster.service_account_kubeconfig("default", "robot").await;
    let robot = client_for(&kubeconfig).await;
    let e = api_error(
        Api::<Pod>::namespaced(robot.clone(), "default")
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        e.message,
        format!(
            "pods is forbidden: {}",
            robot_forbidden("list", "pods", Some("default"))
        )
    );
    let details = e.details.expect("details");
    assert_eq!((details.kind.as_str(), details.group.as_str()), ("pods", ""));
    // A named request names the object; a cluster-scoped one says so.
    let e = api_error(
        Api::<Pod>::namespaced(robot.clone(), "default")
            .get("p")
            .await
            .unwrap_err(),
    );
    assert_eq!(
        e.message,
        format!(
            "pods \"p\" is forbidden: {}",
            robot_forbidden("get", "pods", Some("default"))
        )
    );
    let e = api_error(
        Api::<Namespace>::all(robot.clone())
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        e.message,
        format!(
            "namespaces is forbidden: {}",
            robot_forbidden("list", "namespaces", None)
        )
    );
    if !support::kubectl::present("kubectl under a ServiceAccount") {
        return;
    }
    let out = cluster.kubectl().run_with(&kubeconfig, &["get", "pods"]).await;
    assert!(!out.success());
    assert!(
        out.stderr.contains(&format!(
            "Error from server (Forbidden): pods is forbidden: {}",
            robot_forbidden("list", "pods", Some("default"))
        )),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_role_binding_grants_exactly_its_namespace_and_a_cluster_role_binding_all() {
    let cluster = Cluster::start().await;
    let admin = cluster.client().await;
    for ns in ["team-a", "team-b"] {
        create_ns(&admin, ns).await;
    }
    role(
        &admin,
        "team-a",
        "pod-reader",
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]),
    )
    .await;
    bind_robot(&admin, "team-a", "robot-reads-pods", "Role", "pod-reader").await;
    let robot = client_for(&cluster.service_account_kubeconfig("default", "robot").await).await;
    let pods = |ns: &str| Api::<Pod>::namespaced(robot.clone(), ns);
    pods("team-a")
        .list(&ListParams::default())
        .await
        .expect("granted in team-a");
    for (ns, verb) in [("team-b", "list"), ("team-a", "create")] {
        let result = if verb == "list" {
            pods(ns).list(&ListParams::default()).await.map(|_| ())
        } else {
            let pod =
                obj::<Pod>(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}));
            pods(ns).create(&PostParams::default(), &pod).await.map(|_| ())
        };
        let e = api_error(result.unwrap_err());
        assert_eq!(
            e.message,
            format!("pods is forbidden: {}", robot_forbidden(verb, "pods", Some(ns)))
        );
    }
    let all: Api<Pod> = Api::all(robot.clone());
    assert_eq!(api_error(all.list(&ListParams::default()).await.unwrap_err()).code, 403);

    // A RoleBinding to a ClusterRole grants the ClusterRole's rules in the binding's namespace only.
    cluster_role(
        &admin,
        "configmap-reader",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]),
    )
    .await;
    bind_robot(
        &admin,
        "team-b",
        "robot-reads-configmaps",
        "ClusterRole",
        "configmap-reader",
    )
    .await;
    let cms = |ns: &str| Api::<ConfigMap>::namespaced(robot.clone(), ns);
    cms("team-b")
        .list(&ListParams::default())
        .await
        .expect("granted in team-b");
    assert_eq!(
        api_error(cms("team-a").list(&ListParams::default()).await.unwrap_err()).code,
        403
    );

    // A ClusterRoleBinding (here to the ServiceAccounts' group) grants everywhere, the cluster scope too.
    let crbs: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let crb = json!({"metadata": {"name": "sas-read-configmaps"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "configmap-reader"},
        "subjects": [{"kind": "Group", "name": "system:serviceaccounts:default"}]});
    crbs.create(&PostParams::default(), &obj(crb)).await.unwrap();
    cms("team-a")
        .list(&ListParams::default())
        .await
        .expect("granted by the ClusterRoleBinding");
    Api::<ConfigMap>::all(robot.clone())
        .list(&ListParams::default())
        .await
        .expect("granted at the cluster scope");

    // A binding to a role that does not exist says so after the denial, as RBAC's reason.
    bind_robot(&admin, "team-a", "dangling", "Role", "no-such-role").await;
    let e = api_error(
        Api::<ServiceAccount>::namespaced(robot.clone(), "team-a")
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        e.message,
        format!(
            "serviceaccounts is forbidden: {}: RBAC: role.rbac.authorization.k8s.io \"no-such-role\" not found",
            robot_forbidden("list", "serviceaccounts", Some("team-a"))
        )
    );
}

#[tokio::test]
async fn resource_names_and_subresources_are_respected() {
    let cluster = Cluster::start().await;
    let admin = cluster.client().await;
    let cms: Api<ConfigMap> = Api::namespaced(admin.clone(), "default");
    for name in ["allowed", "other"] {
        cms.create(&PostParams::default(), &obj(json!({"metadata": {"name": name}})))
            .await
            .unwrap();
    }
    role(
        &admin,
        "default",
        "narrow",
        json!([
            {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["allowed"], "verbs": ["get"]},
            {"apiGroups": [""], "resources": ["serviceaccounts/token"], "resourceNames": ["helper"], "verbs": ["create"]},
            {"apiGroups": [""], "resources": ["pods/status"], "verbs": ["get"]},
        ]),
    )
    .await;
    bind_robot(&admin, "default", "narrow", "Role", "narrow").await;
    let robot = client_for(&cluster.service_account_kubeconfig("default", "robot").await).await;
    let mine: Api<ConfigMap> = Api::namespaced(robot.clone(), "default");
    mine.get("allowed").await.expect("the named ConfigMap");
    let e = api_error(mine.get("other").await.unwrap_err());
    assert_eq!(
        e.message,
        format!(
            "configmaps \"other\" is forbidden: {}",
            robot_forbidden("get", "configmaps", Some("default"))
        )
    );
    // resourceNames do not grant a list of everything.
    assert_eq!(
        api_error(mine.list(&ListParams::default()).await.unwrap_err()).code,
        403
    );

    // A subresource rule grants the subresource, not the object.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let pod = obj::<Pod>(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}));
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let robot_pods: Api<Pod> = Api::namespaced(robot.clone(), "default");
    robot_pods.get_status("p").await.expect("pods/status is granted");
    let e = api_error(robot_pods.get("p").await.unwrap_err());
    assert_eq!(
        e.message,
        format!(
            "pods \"p\" is forbidden: {}",
            robot_forbidden("get", "pods", Some("default"))
        )
    );

    // serviceaccounts/token for one ServiceAccount only.
    cluster.service_account_token("default", "helper").await;
    let sas: Api<ServiceAccount> = Api::namespaced(robot.clone(), "default");
    let issued: TokenRequest = sas
        .create_subresource("token", "helper", &PostParams::default(), &TokenRequest::default())
        .await
        .expect("a token for helper");
    assert!(issued.status.and_then(|s| s.token).is_some_and(|t| !t.is_empty()));
    let e = api_error(
        sas.create_subresource::<_, TokenRequest>("token", "default", &PostParams::default(), &TokenRequest::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        e.message,
        format!(
            "serviceaccounts \"default\" is forbidden: {}",
            robot_forbidden("create", "serviceaccounts/token", Some("default"))
        )
    );
}

#[tokio::test]
async fn a_deleted_service_account_takes_its_tokens_with_it() {
    let cluster = Cluster::start().await;
    let admin = cluster.client().await;
    cluster_role(
        &admin,
        "ns-reader",
        json!([{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list"]}]),
    )
    .await;
    let crbs: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let crb = json!({"metadata": {"name": "robot-reads-ns"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ns-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "robot", "namespace": "default"}]});
    crbs.create(&PostParams::default(), &obj(crb)).await.unwrap();
    let token = cluster.service_account_token("default", "robot").await;
    let robot = client_with_token(&cluster, &token, "robot").await;
    let nss: Api<Namespace> = Api::all(robot.clone());
    nss.list(&ListParams::default()).await.expect("the token works");

    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "default");
    sas.delete("robot", &DeleteParams::default()).await.unwrap();
    let e = api_error(nss.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (401, "Unauthorized"));
    // A new ServiceAccount of the same name is another one: the old token stays refused.
    sas.create(&PostParams::default(), &obj(json!({"metadata": {"name": "robot"}})))
        .await
        .unwrap();
    assert_eq!(api_error(nss.list(&ListParams::default()).await.unwrap_err()).code, 401);
}

/// A token signed with the server's key (as a test can, reading the state directory), with `claims`.
fn forge(state_dir: &Path, claims: &Value) -> String {
    use hmac::{Hmac, Mac};
    let key = std::fs::read(state_dir.join("sa-signing.key")).expect("signing key");
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let input = format!("{}.{}", b64(br#"{"alg":"HS256"}"#), b64(claims.to_string().as_bytes()));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

#[tokio::test]
async fn expired_tampered_and_foreign_audience_tokens_are_401() {
    let cluster = Cluster::start().await;
    let token = cluster.service_account_token("default", "default").await;
    let good = claims(&token);
    let nonresource = |client: Client| async move {
        client
            .request_text(http::Request::get("/version").body(Vec::new()).unwrap())
            .await
    };
    // The well-formed token, and the same claims re-signed by the test, both work.
    nonresource(client_with_token(&cluster, &token, "good").await)
        .await
        .expect("a valid token");
    nonresource(client_with_token(&cluster, &forge(&cluster.state_dir(), &good), "forged").await)
        .await
        .expect("the server's key signs valid tokens");

    let now = jiff::Timestamp::now().as_second();
    let mut expired = good.clone();
    expired["iat"] = json!(now - 7200);
    expired["nbf"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let mut foreign = good.clone();
    foreign["aud"] = json!(["vault"]);
    let mut other_sa = good.clone();
    other_sa["kubernetes.io"]["serviceaccount"]["uid"] = json!("00000000-0000-0000-0000-000000000000");
    let (header, _, signature) = {
        let mut parts = token.split('.');
        (parts.next().unwrap(), parts.next(), parts.next().unwrap())
    };
    let mut escalated = good.clone();
    escalated["sub"] = json!("system:serviceaccount:kube-system:admin");
    let tampered = format!(
        "{header}.{}.{signature}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(escalated.to_string())
    );
    for (name, bad) in [
        ("expired", forge(&cluster.state_dir(), &expired)),
        ("foreign audience", forge(&cluster.state_dir(), &foreign)),
        ("uid of no ServiceAccount", forge(&cluster.state_dir(), &other_sa)),
        ("tampered payload", tampered),
        ("not a JWT", "abc.def".to_string()),
    ] {
        let e = nonresource(client_with_token(&cluster, &bad, "bad").await)
            .await
            .unwrap_err();
        assert_eq!(api_error(e).code, 401, "{name}");
    }
}

#[tokio::test]
async fn kubectl_auth_can_i_answers_for_the_token_holder() {
    let cluster = Cluster::start().await;
    if !support::kubectl::present("kubectl auth can-i") {
        return;
    }
    let admin = cluster.client().await;
    role(
        &admin,
        "default",
        "pod-lister",
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
               {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]}]),
    )
    .await;
    bind_robot(&admin, "default", "pod-lister", "Role", "pod-lister").await;
    let kubeconfig = cluster.service_account_kubeconfig("default", "robot").await;
    let kubectl = cluster.kubectl();
    struct Case {
        args: &'static [&'static str],
        answer: &'static str,
    }
    let cases = [
        Case {
            args: &["list", "pods"],
            answer: "yes",
        },
        Case {
            args: &["get", "pods", "--subresource=log"],
            answer: "yes",
        },
        Case {
            args: &["delete", "pods"],
            answer: "no",
        },
        Case {
            args: &["list", "pods", "-n", "kube-system"],
            answer: "no",
        },
        Case {
            args: &["get", "/version"],
            answer: "yes",
        },
        Case {
            args: &["get", "/metrics"],
            answer: "no",
        },
    ];
    for case in cases {
        let mut args = vec!["auth", "can-i"];
        args.extend(case.args);
        let out = kubectl.run_with(&kubeconfig, &args).await;
        assert_eq!(out.stdout.trim(), case.answer, "{args:?}: {}", out.stderr);
        assert_eq!(out.success(), case.answer == "yes", "{args:?} exit code");
    }
    // `--list` (SelfSubjectRulesReview) shows the Role's rules and the bootstrap policy's.
    let listed = kubectl.run_with(&kubeconfig, &["auth", "can-i", "--list"]).await;
    assert!(listed.success(), "{}", listed.stderr);
    let row = |resource: &str| {
        listed
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(resource))
            .map(|l| l.split_whitespace().last().unwrap_or_default().to_string())
    };
    assert_eq!(row("pods").as_deref(), Some("[list]"), "{}", listed.stdout);
    assert_eq!(row("pods/log").as_deref(), Some("[get]"), "{}", listed.stdout);
    assert!(listed.stdout.contains("[/version]"), "{}", listed.stdout);
    // The administrator may do anything.
    assert_eq!(kubectl.ok(&["auth", "can-i", "*", "*"]).await.trim(), "yes");
}

#[tokio::test]
async fn service_accounts_exist_per_namespace_and_pods_must_name_one() {
    let cluster = Cluster::start().await;
    let admin = cluster.client().await;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
        assert!(sas.get_opt("default").await.unwrap().is_some(), "{ns}");
    }
    create_ns(&admin, "fresh").await;
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), "fresh");
    let first = sas
        .get("default")
        .await
        .expect("a new namespace has its default ServiceAccount");
    // Deleted, it comes back (another one), as kube-controller-manager re-creates it.
    sas.delete("default", &DeleteParams::default()).await.unwrap();
    let uid = first.metadata.uid.clone();
    wait_for("the default ServiceAccount to come back", WAIT, || async {
        sas.get_opt("default")
            .await
            .unwrap()
            .filter(|sa| sa.metadata.uid != uid)
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(admin.clone(), "fresh");
    let pod = |name: &str, sa: Option<&str>| {
        let mut spec = json!({"containers": [{"name": "c", "image": "x"}]});
        if let Some(sa) = sa {
            spec["serviceAccountName"] = json!(sa);
        }
        obj::<Pod>(json!({"metadata": {"name": name}, "spec": spec}))
    };
    let e = api_error(
        pods.create(&PostParams::default(), &pod("p", Some("ghost")))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        e.message,
        "pods \"p\" is forbidden: error looking up service account fresh/ghost: serviceaccount \"ghost\" not found"
    );
    let created = pods.create(&PostParams::default(), &pod("q", None)).await.unwrap();
    assert_eq!(created.spec.unwrap().service_account_name.as_deref(), Some("default"));
}

#[tokio::test]
async fn rbac_objects_are_served_and_validated_through_kubectl() {
    let cluster = Cluster::start().await;
    if !support::kubectl::present("kubectl apply of RBAC objects") {
        return;
    }
    let kubectl = cluster.kubectl();
    let manifest = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: reader, namespace: default}\n\
        rules:\n- apiGroups: ['']\n  resources: [pods]\n  verbs: [get]\n---\n\
        apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: reader, namespace: default}\n\
        roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}\n\
        subjects:\n- {kind: ServiceAccount, name: robot}\n";
    let out = kubectl.run_stdin(&["apply", "-f", "-"], manifest).await;
    assert!(out.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("role.rbac.authorization.k8s.io/reader created"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("rolebinding.rbac.authorization.k8s.io/reader created"),
        "{}",
        out.stdout
    );
    let table = kubectl.ok(&["get", "rolebindings", "-o", "wide"]).await;
    assert!(table.contains("Role/reader") && table.contains("robot"), "{table}");
    let roles = kubectl.ok(&["get", "clusterroles", "-o", "name"]).await;
    assert!(
        roles.contains("clusterrole.rbac.authorization.k8s.io/cluster-admin"),
        "{roles}"
    );

    // roleRef cannot change; required fields are required.
    let changed = manifest.replace("kind: Role, name: reader", "kind: ClusterRole, name: reader");
    let out = kubectl.run_stdin(&["apply", "-f", "-"], &changed).await;
    assert!(!out.success());
    assert!(
        out.stderr.contains("roleRef: Invalid value: {\"APIGroup\":\"rbac.authorization.k8s.io\",\"Kind\":\"ClusterRole\",\"Name\":\"reader\"}: field is immutable"),
        "{}",
        out.stderr
    );
    let bad = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: bad}\nrules:\n- resources: [pods]\n";
    let out = kubectl.run_stdin(&["create", "-f", "-"], bad).await;
    assert!(!out.success());
    for cause in [
        "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
        "rules[0].verbs: Required value",
    ] {
        assert!(out.stderr.contains(cause), "{cause}: {}", out.stderr);
    }
}

#[tokio::test]
async fn the_operator_of_deploy_rbac_may_do_what_it_needs_and_no_more() {
    let cluster = Cluster::start().await;
    let admin = cluster.client().await;
    cdkube::embedded::dev::install_crd(&admin).await.expect("CRD");
    let operator = client_for(&cluster.operator_kubeconfig().await).await;
    let review = |attrs: Value| {
        let operator = operator.clone();
        async move {
            let body = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attrs}});
            let answer: Value = operator
                .request(
                    http::Request::post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
                        .header("content-type", "application/json")
                        .body(body.to_string().into_bytes())
                        .unwrap(),
                )
                .await
                .expect("SelfSubjectAccessReview");
            answer["status"]["allowed"] == json!(true)
        }
    };
    let pipelines = "delivery.inge.4pr.es";
    struct Case {
        attrs: Value,
        allowed: bool,
    }
    let cases = [
        Case {
            attrs: json!({"verb": "watch", "group": pipelines, "resource": "pipelines"}),
            allowed: true,
        },
        Case {
            attrs: json!({"verb": "update", "group": pipelines, "resource": "pipelines", "subresource": "status", "namespace": "app"}),
            allowed: true,
        },
        Case {
            attrs: json!({"verb": "update", "group": pipelines, "resource": "pipelines", "subresource": "finalizers", "namespace": "app"}),
            allowed: true,
        },
        Case {
            attrs: json!({"verb": "create", "resource": "pods", "namespace": "app"}),
            allowed: true,
        },
        Case {
            attrs: json!({"verb": "delete", "resource": "pods", "namespace": "app"}),
            allowed: true,
        },
        Case {
            attrs: json!({"verb": "create", "group": "events.k8s.io", "resource": "events", "namespace": "app"}),
            allowed: true,
        },
        Case {
            attrs: json!({"verb": "get", "resource": "secrets", "namespace": "app", "name": "creds"}),
            allowed: true,
        },
        Case {
            attrs: json!({"verb": "update", "group": "coordination.k8s.io", "resource": "leases", "namespace": "cdkube-system"}),
            allowed: true,
        },
        Case {
            attrs: json!({"verb": "delete", "group": pipelines, "resource": "pipelines", "namespace": "app"}),
            allowed: false,
        },
        Case {
            attrs: json!({"verb": "list", "resource": "secrets", "namespace": "app"}),
            allowed: false,
        },
        Case {
            attrs: json!({"verb": "update", "group": "coordination.k8s.io", "resource": "leases", "namespace": "app"}),
            allowed: false,
        },
    ];
    for case in cases {
        assert_eq!(review(case.attrs.clone()).await, case.allowed, "{}", case.attrs);
    }
    // And for real: the operator lists Pipelines everywhere, and may not delete one.
    let api: Api<cdkube::api::Pipeline> = Api::all(operator.clone());
    api.list(&ListParams::default()).await.expect("list Pipelines");
    let e = api_error(
        Api::<cdkube::api::Pipeline>::namespaced(operator.clone(), "default")
            .delete("x", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403, "{}", e.message);
}

#[tokio::test]
async fn roles_and_bindings_cannot_grant_more_than_their_writer_holds() {
    let cluster = Cluster::start().await;
    let admin = cluster.client().await;
    role(
        &admin,
        "default",
        "role-writer",
        json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create"]},
               {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
    )
    .await;
    bind_robot(&admin, "default", "role-writer", "Role", "role-writer").await;
    let robot = client_for(&cluster.service_account_kubeconfig("default", "robot").await).await;
    let roles: Api<Role> = Api::namespaced(robot.clone(), "default");
    let bindings: Api<RoleBinding> = Api::namespaced(robot.clone(), "default");
    let pods_role = |name: &str, verbs: Value| {
        obj::<Role>(
            json!({"metadata": {"name": name}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": verbs}]}),
        )
    };
    let binding = |name: &str, kind: &str, role: &str| {
        obj::<RoleBinding>(json!({"metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "helper"}]}))
    };
    let pp = PostParams::default();
    // What the writer holds, it may grant.
    roles
        .create(&pp, &pods_role("pod-getter", json!(["get"])))
        .await
        .expect("a held right");
    bindings
        .create(&pp, &binding("helper-gets", "Role", "pod-getter"))
        .await
        .expect("a binding to held rights");
    // More is forbidden, listing what is missing.
    let e = api_error(
        roles
            .create(&pp, &pods_role("too-much", json!(["get", "delete"])))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        e.message,
        "roles.rbac.authorization.k8s.io \"too-much\" is forbidden: user \"system:serviceaccount:default:robot\" (groups=[\"system:serviceaccounts\" \"system:serviceaccounts:default\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"
    );
    let e = api_error(
        bindings
            .create(&pp, &binding("helper-admin", "ClusterRole", "cluster-admin"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403, "{}", e.message);
    assert!(e.message.starts_with("rolebindings.rbac.authorization.k8s.io \"helper-admin\" is forbidden: user \"system:serviceaccount:default:robot\""), "{}", e.message);
    // The escalate and bind verbs lift the checks.
    role(
        &admin,
        "default",
        "escalator",
        json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles"], "verbs": ["escalate"]},
               {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "resourceNames": ["cluster-admin"], "verbs": ["bind"]}]),
    )
    .await;
    bind_robot(&admin, "default", "escalator", "Role", "escalator").await;
    roles
        .create(&pp, &pods_role("too-much", json!(["get", "delete"])))
        .await
        .expect("escalate allows it");
    bindings
        .create(&pp, &binding("helper-admin", "ClusterRole", "cluster-admin"))
        .await
        .expect("bind allows it");
}

#[tokio::test]
async fn an_aggregated_cluster_role_gathers_the_rules_of_the_roles_it_selects() {
    let cluster = Cluster::start().await;
    let admin = cluster.client().await;
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    let pp = PostParams::default();
    let aggregator = json!({"metadata": {"name": "monitoring"}, "aggregationRule": {"clusterRoleSelectors": [
        {"matchLabels": {"example.com/aggregate-to-monitoring": "true"}}]}});
    roles.create(&pp, &obj(aggregator)).await.unwrap();
    let part = json!({"metadata": {"name": "monitoring-pods", "labels": {"example.com/aggregate-to-monitoring": "true"}},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]});
    roles.create(&pp, &obj(part)).await.unwrap();
    wait_for("the aggregated rules", WAIT, || async {
        let rules = roles.get("monitoring").await.unwrap().rules.unwrap_or_default();
        (rules.len() == 1 && rules[0].resources.as_deref() == Some(&["pods".to_string()][..])).then_some(())
    })
    .await;
    bind_robot(&admin, "default", "robot-monitors", "ClusterRole", "monitoring").await;
    let robot = client_for(&cluster.service_account_kubeconfig("default", "robot").await).await;
    Api::<Pod>::namespaced(robot, "default")
        .list(&ListParams::default())
        .await
        .expect("granted through the aggregated ClusterRole");
    // An aggregationRule needs a selector.
    let empty = json!({"metadata": {"name": "nothing"}, "aggregationRule": {"clusterRoleSelectors": []}});
    let e = api_error(roles.create(&pp, &obj(empty)).await.unwrap_err());
    assert_eq!(
        e.message,
        "ClusterRole.rbac.authorization.k8s.io \"nothing\" is invalid: aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"
    );
}

const TOKEN_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

async fn wait_finished(pods: &Api<Pod>, name: &str) -> Pod {
    wait_for(&format!("Pod {name} to finish"), Duration::from_secs(60), || async {
        let pod = pods.get(name).await.unwrap();
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        (phase == "Succeeded" || phase == "Failed").then_some(pod)
    })
    .await
}

#[tokio::test]
async fn a_pod_gets_its_service_account_token_mounted_and_can_use_it() {
    let mut cluster = Cluster::start().await;
    cluster.start_runner(None).await;
    let admin = cluster.client().await;
    cluster.service_account_token("default", "builder").await;
    role(
        &admin,
        "default",
        "pod-getter",
        json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]),
    )
    .await;
    let bindings: Api<RoleBinding> = Api::namespaced(admin.clone(), "default");
    let binding = json!({"metadata": {"name": "builder-gets-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-getter"},
        "subjects": [{"kind": "ServiceAccount", "name": "builder"}]});
    bindings.create(&PostParams::default(), &obj(binding)).await.unwrap();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");

    // The admission plugin adds the kube-api-access volume; the runner writes namespace and token.
    let pod = json!({"metadata": {"name": "reader"}, "spec": {"serviceAccountName": "builder", "restartPolicy": "Never",
        "containers": [{"name": "c", "image": "busybox",
            "command": ["cat", format!("{TOKEN_DIR}/namespace"), format!("{TOKEN_DIR}/token")]}]}});
    let created = pods.create(&PostParams::default(), &obj(pod)).await.unwrap();
    let spec = created.spec.unwrap();
    let volume = spec.volumes.unwrap().pop().expect("the token volume");
    assert!(volume.name.starts_with("kube-api-access-"), "{}", volume.name);
    let sources = volume.projected.expect("projected").sources.unwrap();
    assert_eq!(
        sources[0].service_account_token.as_ref().unwrap().expiration_seconds,
        Some(3607)
    );
    let mount = &spec.containers[0].volume_mounts.as_ref().unwrap()[0];
    assert_eq!((mount.mount_path.as_str(), mount.read_only), (TOKEN_DIR, Some(true)));
    let finished = wait_finished(&pods, "reader").await;
    let log = pods.logs("reader", &Default::default()).await.unwrap();
    let status = finished.status.unwrap();
    assert_eq!(
        status.phase.as_deref(),
        Some("Succeeded"),
        "log: {log}; status: {status:?}"
    );
    let token = log
        .strip_prefix("default")
        .unwrap_or_else(|| panic!("namespace first: {log}"));
    let c = claims(token.trim());
    assert_eq!(c["sub"], "system:serviceaccount:default:builder");
    assert_eq!(c["kubernetes.io"]["pod"]["name"], "reader");
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 3607);

    // No volume when the Pod opts out.
    let quiet = json!({"metadata": {"name": "quiet"}, "spec": {"automountServiceAccountToken": false,
        "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}});
    let quiet = pods.create(&PostParams::default(), &obj(quiet)).await.unwrap();
    assert!(quiet.spec.unwrap().volumes.unwrap_or_default().is_empty());

    // In a private mount namespace the token is at its path for every program: kubectl in the Pod
    // finds the API server in-cluster and acts as the ServiceAccount.
    if !cdkube::embedded::runner::namespaces_permitted(&cluster.state_dir())
        || !support::kubectl::present("kubectl inside a Pod")
    {
        eprintln!("*** SKIPPED: in-cluster kubectl needs mount namespaces and kubectl ***");
        return;
    }
    let script = "kubectl get pod in-cluster -o name; kubectl get secrets 2>&1; true";
    let pod = json!({"metadata": {"name": "in-cluster"}, "spec": {"serviceAccountName": "builder", "restartPolicy": "Never",
        "volumes": [{"name": "home", "emptyDir": {}}],
        "containers": [{"name": "c", "image": "bitnami/kubectl", "command": ["sh", "-c", script],
            "env": [{"name": "HOME", "value": "/home-dir"}],
            "volumeMounts": [{"name": "home", "mountPath": "/home-dir"}]}]}});
    pods.create(&PostParams::default(), &obj(pod)).await.unwrap();
    wait_finished(&pods, "in-cluster").await;
    let log = pods.logs("in-cluster", &Default::default()).await.unwrap();
    assert!(log.contains("pod/in-cluster"), "{log}");
    assert!(
        log.contains(
            "secrets is forbidden: User \"system:serviceaccount:default:builder\" cannot list resource \"secrets\""
        ),
        "{log}"
    );
}
