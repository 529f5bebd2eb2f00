//! The source step of a reconcile: the credentials Secret, the remote head, and the commit's artifact in
//! the store. Failures become a [`FetchProblem`] (a condition and an Event), never a reconcile error: the
//! poller's backoff or the next reconcile retries them.
use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

use super::Context;
use super::history::{FetchProblem, Source};
use crate::api::conditions::reason;
use crate::api::{Pipeline, validation};
use crate::git::{self, Credentials, Head, RemoteSpec};

impl From<git::Error> for FetchProblem {
    fn from(e: git::Error) -> Self {
        FetchProblem {
            reason: e.kind().as_str().to_owned(),
            message: e.message().to_owned(),
        }
    }
}

fn invalid_secret(message: String) -> FetchProblem {
    FetchProblem {
        reason: reason::INVALID_SECRET.to_owned(),
        message,
    }
}

/// The remote to follow: `spec.repo` and `spec.branch` with the credentials of `spec.secretRef`.
pub(crate) async fn remote(ctx: &Context, pipeline: &Pipeline) -> Result<RemoteSpec, FetchProblem> {
    let spec = &pipeline.spec;
    let credentials = match &spec.secret_ref {
        None => Credentials::none(),
        Some(secret_ref) => credentials(ctx, pipeline, &secret_ref.name).await?,
    };
    Ok(RemoteSpec::new(
        &spec.repo,
        spec.branch.as_deref(),
        credentials,
        ctx.options.allow_local_repos,
    )?)
}

/// Reads and checks the credentials Secret. Its values never appear in a message.
async fn credentials(ctx: &Context, pipeline: &Pipeline, name: &str) -> Result<Credentials, FetchProblem> {
    let namespace = pipeline.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret = match api.get_opt(name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => {
            return Err(invalid_secret(format!(
                "Secret {name:?} (spec.secretRef) not found in namespace {namespace:?}"
            )));
        }
        Err(e) => return Err(invalid_secret(format!("cannot read Secret {name:?}: {e}"))),
    };
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let options = validation::Options {
        allow_local_repos: ctx.options.allow_local_repos,
    };
    if let Err(errors) = validation::validate_secret_data(&pipeline.spec, name, &data, options) {
        let text: Vec<String> = errors.iter().map(|e| e.message.clone()).collect();
        return Err(invalid_secret(text.join("; ")));
    }
    Credentials::from_secret_data(&data).map_err(|e| invalid_secret(format!("Secret {name:?}: {}", e.message())))
}

/// Fetches `remote`'s head into the cache and exports commit `wanted` into the artifact store. A push
/// between probe and fetch brings a newer head; `wanted` is still exported when the cache has it (so the
/// status agrees with the poller), else the fetched head is.
pub(crate) async fn prepare(ctx: &Context, remote: &RemoteSpec, wanted: &Head) -> Result<Source, FetchProblem> {
    let fetched = ctx.engine.fetch(remote).await?;
    let (head, info) = match ctx.engine.commit_info(remote, &wanted.sha).await {
        Ok(info) => (wanted.clone(), info),
        Err(_) => {
            let info = ctx.engine.commit_info(remote, &fetched.head.sha).await?;
            (fetched.head, info)
        }
    };
    let (digest, size) = export(ctx, remote, &head).await?;
    Ok(Source {
        subject: Some(info.subject.clone()),
        author: Some(info.author()),
        head,
        digest,
        size,
    })
}

/// Exports commit `head` (already in the cache) into the store; returns its digest and size.
async fn export(ctx: &Context, remote: &RemoteSpec, head: &Head) -> Result<(String, u64), FetchProblem> {
    let temp = ctx.store.temp_path();
    let exported = ctx.engine.export(remote, &head.sha, &temp).await?;
    ctx.store.insert(&temp, &exported.digest).map_err(|e| FetchProblem {
        reason: "ArtifactStoreError".into(),
        message: e.to_string(),
    })?;
    Ok((exported.digest, exported.size))
}

/// Rebuilds an artifact missing from the store (an operator restarted on a fresh volume) from git.
pub(crate) struct Rebuilder {
    pub(crate) ctx: Arc<Context>,
}

impl crate::artifact::Rebuild for Rebuilder {
    fn rebuild(
        &self,
        namespace: String,
        pipeline: String,
        commit: String,
    ) -> BoxFuture<'static, Result<String, String>> {
        let ctx = Arc::clone(&self.ctx);
        Box::pin(async move {
            let reference = ObjectRef::<Pipeline>::new(&pipeline).within(&namespace);
            let found = ctx.pipelines().and_then(|store| store.get(&reference));
            let pipeline = found.ok_or_else(|| format!("Pipeline {namespace}/{pipeline} not found"))?;
            let remote = remote(&ctx, &pipeline).await.map_err(|p| p.message)?;
            ctx.engine.fetch(&remote).await.map_err(|e| e.message().to_owned())?;
            let head = Head {
                branch: String::new(),
                sha: commit,
            };
            let (digest, _) = export(&ctx, &remote, &head).await.map_err(|p| p.message)?;
            Ok(digest)
        })
    }
}
