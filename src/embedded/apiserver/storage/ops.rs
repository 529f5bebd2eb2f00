//! Create, update and delete with kube-apiserver semantics: system metadata, optimistic
//! concurrency, generation, status isolation, finalizers and graceful deletion.
use serde_json::{Value, json};

use crate::embedded::apiserver::admission::rules::{self as admission, FieldValidation};
use crate::embedded::apiserver::admission::{events, kinds};
use crate::embedded::apiserver::error::{ApiError, ApiResult, StatusCause};
use crate::embedded::apiserver::ids;
use crate::embedded::apiserver::resources::{ResourceType, StorageKey};
use crate::embedded::apiserver::storage::fields;
use crate::embedded::apiserver::storage::serviceaccounts;
use crate::embedded::apiserver::storage::store::{State, object_key};
use crate::embedded::apiserver::storage::{apiservices, services};

/// Options common to writes.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteOpts {
    /// `dryRun=All`: run everything but do not persist.
    pub dry_run: bool,
    /// `fieldManager`, or the one derived from the User-Agent.
    pub manager: String,
    /// `fieldValidation`.
    pub validation: FieldValidation,
    /// The body's managedFields were computed by server-side apply: keep them.
    pub keep_managed: bool,
}

/// The result of a write.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    /// The object as stored (storage form).
    pub object: Value,
    /// Whether the object was created (201).
    pub created: bool,
    /// Warnings for the `Warning` header.
    pub warnings: Vec<String>,
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or_default()
}

/// Checks (and completes) `apiVersion`/`kind` of a request body against the endpoint.
fn check_type(rt: &ResourceType, body: &mut Value) -> ApiResult<()> {
    kinds::check(rt, body)?;
    check_metadata(body)
}

/// An object whose `metadata` is an object or absent; anything else cannot be decoded (400).
/// Every later step writes into `metadata`, so this comes first.
fn check_metadata(obj: &Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request("the object is not a JSON object"));
    }
    if !obj["metadata"].is_object() && !obj["metadata"].is_null() {
        return Err(ApiError::bad_request("metadata must be an object"));
    }
    Ok(())
}

fn check_namespace(rt: &ResourceType, obj: &mut Value, ns: Option<&str>) -> ApiResult<()> {
    let body_ns = meta_str(obj, "namespace").to_string();
    match (rt.namespaced, ns) {
        (true, Some(ns)) => {
            if !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            obj["metadata"]["namespace"] = json!(ns);
        }
        (true, None) => return Err(ApiError::path_not_found()),
        (false, _) => {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("namespace");
            }
        }
    }
    Ok(())
}

/// Whether the namespace exists and accepts new objects.
fn check_namespace_open(st: &State, rt: &ResourceType, ns: &str, name: &str) -> ApiResult<()> {
    let key = StorageKey {
        group: String::new(),
        resource: "namespaces".into(),
    };
    match st.get(&key, "", ns) {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(n) if !n["metadata"]["deletionTimestamp"].is_null() => Err(ApiError::forbidden(
            &rt.group,
            &rt.plural,
            name,
            &format!("unable to create new content in namespace {ns} because it is being terminated"),
        )
        .with_details(json!({"name": name, "group": rt.group, "kind": rt.plural,
            "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]}))),
        Some(_) => Ok(()),
    }
}

/// A POST or PUT body, checked against the endpoint, in storage form with its namespace set.
fn storage_form(rt: &ResourceType, mut body: Value, ns: Option<&str>) -> ApiResult<Value> {
    check_type(rt, &mut body)?;
    let mut obj = events::to_storage(rt, body);
    if obj["metadata"].is_null() {
        obj["metadata"] = json!({});
    }
    check_namespace(rt, &mut obj, ns)?;
    Ok(obj)
}

/// Creates an object (POST).
pub(crate) fn create(
    st: &mut State,
    rt: &ResourceType,
    ns: Option<&str>,
    body: Value,
    opts: &WriteOpts,
) -> ApiResult<Outcome> {
    let mut obj = storage_form(rt, body, ns)?;
    if !meta_str(&obj, "resourceVersion").is_empty() {
        return Err(ApiError::storage_refused(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    let generate = meta_str(&obj, "generateName").to_string();
    let requested_name = meta_str(&obj, "name").to_string();
    if requested_name.is_empty() && !generate.is_empty() {
        obj["metadata"]["name"] = json!(generated_name(&generate));
    }
    let name = meta_str(&obj, "name").to_string();
    let namespace = meta_str(&obj, "namespace").to_string();
    if rt.namespaced && !name.is_empty() {
        check_namespace_open(st, rt, &namespace, &name)?;
    }
    let meta = obj["metadata"]
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata must be an object"))?;
    for field in ["deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        meta.remove(field);
    }
    if !opts.keep_managed {
        meta.remove("managedFields");
    }
    meta.insert("uid".into(), json!(ids::uuid()));
    meta.insert("creationTimestamp".into(), json!(ids::now()));
    if rt.tracks_generation() {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    let mut warnings = admission::prepare(rt, &mut obj, None, opts.validation)?;
    if name.is_empty() {
        let errs = [StatusCause::required(
            "metadata.name",
            "name or generateName is required",
        )];
        return Err(ApiError::invalid(&rt.group, &rt.kind, "", &errs));
    }
    if is_core(rt, "pods") {
        serviceaccounts::admit_pod(st, &namespace, &requested_name, &mut obj)?;
    }
    admission::validate(rt, &obj, None)?;
    if st.get(rt.key(), &namespace, &name).is_some() {
        return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
    }
    if is_core(rt, "services") {
        services::allocate(st, &mut obj)?;
    }
    if !opts.keep_managed {
        fields::track_update(rt, &mut obj, None, &opts.manager, None);
    }
    let object = if opts.dry_run {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        obj
    } else {
        let stored = st.put(rt.key(), obj);
        after_write(st, rt);
        if is_core(rt, "namespaces") {
            // kube-controller-manager's serviceaccount and root-ca-cert-publisher controllers,
            // without their delay.
            serviceaccounts::ensure_namespace_defaults(st, &name);
        }
        stored
    };
    warnings.dedup();
    Ok(Outcome {
        object,
        created: true,
        warnings,
    })
}

/// A name from a generateName: at most 58 bytes of it (cut on a character boundary) and five
/// random characters, so that it stays within 63 (`names.SimpleNameGenerator`).
fn generated_name(base: &str) -> String {
    let mut cut = base.len().min(58);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{}", &base[..cut], ids::name_suffix())
}

/// Replaces an object (PUT), on the main resource or the `status` subresource.
pub(crate) fn update(
    st: &mut State,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    body: Value,
    sub: Option<&str>,
    opts: &WriteOpts,
) -> ApiResult<Outcome> {
    let mut obj = storage_form(rt, body, ns)?;
    let body_name = meta_str(&obj, "name").to_string();
    if body_name.is_empty() {
        obj["metadata"]["name"] = json!(name);
    } else if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let namespace = ns.unwrap_or_default();
    let Some(current) = st
        .get(rt.key(), if rt.namespaced { namespace } else { "" }, name)
        .cloned()
    else {
        if rt.create_on_update && sub.is_none() {
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
            return create(st, rt, ns, events::to_view(rt, &obj), opts);
        }
        return Err(ApiError::not_found(&rt.group, &rt.plural, name));
    };
    let rv = meta_str(&obj, "resourceVersion").to_string();
    if rv.is_empty() && !rt.unconditional_update {
        let errs = [StatusCause::invalid(
            "metadata.resourceVersion",
            &json!(0),
            "must be specified for an update",
        )];
        return Err(ApiError::invalid(&rt.group, &rt.kind, name, &errs));
    }
    if !rv.is_empty() && rv != meta_str(&current, "resourceVersion") {
        return Err(ApiError::stale(&rt.group, &rt.plural, name));
    }
    let uid = meta_str(&obj, "uid");
    if !uid.is_empty() && uid != meta_str(&current, "uid") {
        let why = format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
            meta_str(&current, "uid")
        );
        return Err(ApiError::conflict(&rt.group, &rt.plural, name, &why));
    }
    replace(st, rt, current, obj, sub, opts)
}

/// The shared tail of PUT and PATCH: `current` is the stored object, `obj` the desired one.
pub(crate) fn replace(
    st: &mut State,
    rt: &ResourceType,
    current: Value,
    mut obj: Value,
    sub: Option<&str>,
    opts: &WriteOpts,
) -> ApiResult<Outcome> {
    check_metadata(&obj)?;
    if obj["metadata"].is_null() {
        obj["metadata"] = json!({});
    }
    let mut obj = scoped(rt, &current, obj, sub)?;
    keep_server_metadata(&current, &mut obj);
    check_new_finalizers(rt, &current, &obj)?;
    let mut warnings = admission::prepare(rt, &mut obj, Some(&current), opts.validation)?;
    // As the strategies' PrepareForUpdate: the generation is the server's, bumped before validation.
    set_generation(rt, &current, &mut obj);
    // Through ephemeralcontainers the rest of the spec is the stored one and its update rules
    // (which forbid touching ephemeral containers) do not apply: validated as an update of itself.
    let old = if sub == Some("ephemeralcontainers") {
        &obj
    } else {
        &current
    };
    admission::validate(rt, &obj, Some(old))?;
    if is_core(rt, "services") && sub.is_none() {
        services::allocate(st, &mut obj)?;
    }
    warnings.dedup();
    if same_ignoring_bookkeeping(&current, &obj) {
        return Ok(Outcome {
            object: current,
            created: false,
            warnings,
        });
    }
    if !opts.keep_managed {
        // (Server-side apply computed ownership already.)
        obj["metadata"]["managedFields"] = current["metadata"]["managedFields"].clone();
        fields::track_update(rt, &mut obj, Some(&current), &opts.manager, sub);
    }
    let object = if opts.dry_run { obj } else { store(st, rt, obj) };
    Ok(Outcome {
        object,
        created: false,
        warnings,
    })
}

/// What a write may change: through `status`, only the status (and the managedFields server-side
/// apply computed); through the main resource of a type with a status subresource, all but it.
fn scoped(rt: &ResourceType, current: &Value, mut obj: Value, sub: Option<&str>) -> ApiResult<Value> {
    let copy_status = |from: &Value, to: &mut Value| match from.get("status") {
        Some(s) => to["status"] = s.clone(),
        None => {
            if let Some(m) = to.as_object_mut() {
                m.remove("status");
            }
        }
    };
    match sub {
        Some("status") => {
            let mut next = current.clone();
            copy_status(&obj, &mut next);
            let managed = obj["metadata"]["managedFields"].take();
            if !managed.is_null() {
                next["metadata"]["managedFields"] = managed;
            }
            Ok(next)
        }
        Some("ephemeralcontainers") => super::ephemeral::scoped(current, &obj),
        Some(other) => Err(ApiError::not_found(
            &rt.group,
            &format!("{}/{other}", rt.plural),
            meta_str(current, "name"),
        )),
        None => {
            if rt.status_subresource {
                copy_status(current, &mut obj);
            }
            Ok(obj)
        }
    }
}

/// System metadata is owned by the server: a write keeps the stored values.
fn keep_server_metadata(current: &Value, obj: &mut Value) {
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "name",
        "generation",
    ] {
        match current["metadata"].get(field) {
            Some(v) => obj["metadata"][field] = v.clone(),
            None => {
                if let Some(m) = obj["metadata"].as_object_mut() {
                    m.remove(field);
                }
            }
        }
    }
    obj["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
}

/// Stores an updated object; one being deleted whose last finalizer (or grace period) just went
/// is removed instead. Returns the object as stored (or its last state).
fn store(st: &mut State, rt: &ResourceType, obj: Value) -> Value {
    let stored = st.put(rt.key(), obj);
    let being_deleted = !stored["metadata"]["deletionTimestamp"].is_null();
    let no_finalizers = stored["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
    let done = no_finalizers && !admission::spec_finalizers(rt, &stored) && !admission::graceful_pending(rt, &stored);
    let object = if being_deleted && done {
        let (ns, name) = object_key(&stored);
        st.remove(rt.key(), &ns, &name).unwrap_or(stored)
    } else {
        stored
    };
    after_write(st, rt);
    object
}

fn check_new_finalizers(rt: &ResourceType, current: &Value, obj: &Value) -> ApiResult<()> {
    if current["metadata"]["deletionTimestamp"].is_null() {
        return Ok(());
    }
    let old: Vec<&Value> = current["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let added: Vec<String> = obj["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| !old.contains(f))
        .map(|f| format!("{:?}", f.as_str().unwrap_or_default()))
        .collect();
    if added.is_empty() {
        return Ok(());
    }
    let detail = format!(
        "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
        added.join(", ")
    );
    let errs = [StatusCause::forbidden("metadata.finalizers", &detail)];
    Err(ApiError::invalid(&rt.group, &rt.kind, meta_str(current, "name"), &errs))
}

/// Bumps `metadata.generation` when anything but metadata (and status, with a status
/// subresource) changed, as the CRD and CRD-registry strategies do.
fn set_generation(rt: &ResourceType, current: &Value, obj: &mut Value) {
    if !rt.tracks_generation() {
        return;
    }
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            if rt.status_subresource {
                m.remove("status");
            }
            m.remove("apiVersion");
            m.remove("kind");
        }
        v
    };
    let generation = current["metadata"]["generation"].as_i64().unwrap_or(1);
    let next = if strip(current) != strip(obj) {
        generation + 1
    } else {
        generation
    };
    obj["metadata"]["generation"] = json!(next);
}

fn same_ignoring_bookkeeping(a: &Value, b: &Value) -> bool {
    let norm = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("managedFields");
            m.remove("resourceVersion");
        }
        if let Some(m) = v.as_object_mut() {
            m.remove("apiVersion");
        }
        v
    };
    norm(a) == norm(b)
}

/// Options of a DELETE.
#[derive(Debug, Clone, Default)]
pub(crate) struct DeleteOpts {
    /// `Orphan`, `Background` or `Foreground`.
    pub propagation: Option<String>,
    /// `gracePeriodSeconds`.
    pub grace: Option<i64>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
}

/// What a DELETE did.
#[derive(Debug, Clone)]
pub(crate) enum Deleted {
    /// Removed from the store; the last state.
    Gone(Value),
    /// Still present: finalizers or graceful termination pending.
    Pending(Value),
}

/// Deletes an object (DELETE).
pub(crate) fn delete(st: &mut State, rt: &ResourceType, ns: &str, name: &str, opts: &DeleteOpts) -> ApiResult<Deleted> {
    let Some(current) = st.get(rt.key(), ns, name).cloned() else {
        return Err(ApiError::not_found(&rt.group, &rt.plural, name));
    };
    check_preconditions(rt, &current, opts)?;
    admission::check_delete(rt, &current)?;
    let wanted = propagation_finalizer(opts.propagation.as_deref())?;
    let already_deleting = !current["metadata"]["deletionTimestamp"].is_null();
    let mut finalizers: Vec<String> = current["metadata"]["finalizers"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if let Some(f) = wanted
        && !already_deleting
    {
        finalizers.retain(|x| x != "orphan" && x != "foregroundDeletion");
        finalizers.push(f.to_string());
    }
    let grace = admission::grace_period(rt, &current, opts.grace);
    if finalizers.is_empty() && grace == 0 && !admission::spec_finalizers(rt, &current) {
        if opts.dry_run {
            return Ok(Deleted::Gone(current));
        }
        let gone = st.remove(rt.key(), ns, name).unwrap_or(current);
        after_write(st, rt);
        return Ok(Deleted::Gone(gone));
    }
    let mut next = current.clone();
    mark_deleting(rt, &mut next, grace);
    next["metadata"]["finalizers"] = json!(finalizers);
    if finalizers.is_empty()
        && let Some(m) = next["metadata"].as_object_mut()
    {
        m.remove("finalizers");
    }
    if next == current || opts.dry_run {
        return Ok(Deleted::Pending(next));
    }
    let stored = st.put(rt.key(), next);
    after_write(st, rt);
    Ok(Deleted::Pending(stored))
}

/// `preconditions.uid` and `preconditions.resourceVersion` of a DELETE: 409 when they differ,
/// naming the kind as `rest.BeforeDelete` does.
fn check_preconditions(rt: &ResourceType, current: &Value, opts: &DeleteOpts) -> ApiResult<()> {
    let name = meta_str(current, "name");
    for (field, wanted, then) in [
        ("UID", &opts.uid, "deleted and then recreated"),
        ("ResourceVersion", &opts.resource_version, "modified"),
    ] {
        let key = if field == "UID" { "uid" } else { "resourceVersion" };
        let actual = meta_str(current, key);
        if let Some(wanted) = wanted
            && wanted != actual
        {
            let why = format!(
                "the {field} in the precondition ({wanted}) does not match the {field} in record ({actual}). The object might have been {then}"
            );
            return Err(ApiError::conflict(&rt.group, &rt.kind, name, &why));
        }
    }
    Ok(())
}

/// The finalizer a propagation policy puts on the object (Background: none); 422 for others.
fn propagation_finalizer(policy: Option<&str>) -> ApiResult<Option<&'static str>> {
    match policy.unwrap_or("Background") {
        "Orphan" => Ok(Some("orphan")),
        "Foreground" => Ok(Some("foregroundDeletion")),
        "Background" => Ok(None),
        other => {
            let errs = [StatusCause::not_supported(
                "propagationPolicy",
                &json!(other),
                &["Foreground".into(), "Background".into(), "Orphan".into(), "nil".into()],
            )];
            Err(ApiError::invalid("meta.k8s.io", "DeleteOptions", "", &errs))
        }
    }
}

/// Sets deletionTimestamp (now + grace) and deletionGracePeriodSeconds, bumping the generation,
/// as rest.BeforeDelete does. On an object already being deleted only a shorter grace period
/// changes anything, and it moves the deadline earlier by the difference.
fn mark_deleting(rt: &ResourceType, obj: &mut Value, grace: i64) {
    let meta = &obj["metadata"];
    let stamp = |t: jiff::Timestamp| json!(ids::time(t));
    let deadline = match (
        meta["deletionTimestamp"].as_str(),
        meta["deletionGracePeriodSeconds"].as_i64(),
    ) {
        (None, _) => {
            if rt.tracks_generation()
                && let Some(generation) = meta["generation"].as_i64().filter(|g| *g > 0)
            {
                obj["metadata"]["generation"] = json!(generation + 1);
            }
            jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace)
        }
        (Some(ts), Some(old)) if grace < old => match ids::parse_time(ts) {
            Some(t) => t - jiff::SignedDuration::from_secs(old - grace),
            None => jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace),
        },
        (Some(_), _) => {
            admission::on_terminating(rt, obj);
            return;
        }
    };
    obj["metadata"]["deletionTimestamp"] = stamp(deadline);
    obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
    admission::on_terminating(rt, obj);
}

fn is_core(rt: &ResourceType, plural: &str) -> bool {
    rt.group.is_empty() && rt.plural == plural
}

/// Runs after a write of `rt` is stored: CRD changes re-derive the served custom types.
pub(crate) fn after_write(st: &mut State, rt: &ResourceType) {
    if rt.plural == "customresourcedefinitions" && rt.group == "apiextensions.k8s.io" {
        st.refresh_custom_types();
        apiservices::sync(st);
    }
}
