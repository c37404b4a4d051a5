//! `lambda_function`: a function named `<stack>-<name>` whose package is built when a command
//! starts (a command such as a bundler, then every file of a directory, zipped reproducibly:
//! sorted names, fixed times and modes, so the same files give the same digest) and published
//! as a new version on every change. Its configuration is baked into the package as
//! `config.json`, because Lambda@Edge has no environment variables: plain values, documents
//! fetched when the package is made (a pool's signing keys) and secrets generated then (never
//! shown, new with each version).
//!
//! What the package holds is kept on the function as tags (the code's digest, each plain value,
//! each fetched document's URL, the secrets' names), and trusted only while Lambda's own digest
//! of the package is the one recorded with them: a package changed by hand reads as changed.

use super::{err, lambda};
use crate::diag::Diags;
use crate::error::{OpError, Transient};
use crate::provider::{known, null_as_empty, Address, Cx, Derive, Found, Typed, ID_TAG, STACK_TAG};
use crate::schema::{Field, FieldType, Kind, Update, TAGS};
use crate::stack::{Resource, Stack, Val};
use async_trait::async_trait;
use aws_sdk_lambda::client::Waiters;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{FunctionCode, Runtime};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::Path;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// IAM is eventually consistent: a role made moments ago is not yet assumable by Lambda.
const SOURCE: &str = "terraform-provider-aws internal/service/lambda/function.go: create retry";
const TRANSIENT: &[Transient] = &[
    Transient::new("CreateFunction", "InvalidParameterValueException", 2, SOURCE).saying("cannot be assumed by Lambda"),
    Transient::new("CreateFunction", "InvalidParameterValueException", 2, SOURCE)
        .saying("The provided execution role does not have permissions"),
];

pub static KIND: Kind = Kind::new("lambda_function", "A Lambda function (<stack>-<name>), Lambda@Edge included: package built and zipped reproducibly, configuration baked in, a version published per change.", &Function)
.fields(&[
        Field::required("role", FieldType::String, Update::InPlace, "The execution role's ARN (\"${iam_role.NAME.arn}\")."),
        Field::optional(
            "runtime",
            FieldType::Enum(&["nodejs22.x", "nodejs20.x"]),
            Some("\"nodejs22.x\""),
            Update::InPlace,
            "The runtime.",
        ),
        Field::optional("handler", FieldType::String, Some("\"index.handler\""), Update::InPlace, "file.export called per event."),
        Field::optional("memory", FieldType::Int { min: 128, max: 10240 }, Some("128"), Update::InPlace, "MB of memory (CPU follows)."),
        Field::optional("timeout", FieldType::Int { min: 1, max: 900 }, Some("5"), Update::InPlace, "Seconds one call may take."),
        Field::required(
            "package",
            FieldType::String,
            Update::Setting,
            "Directory whose files make the package, relative to the stack file (built first by `build`).",
        ),
        Field::optional(
            "build",
            FieldType::List(&FieldType::String),
            None,
            Update::Setting,
            "Command that makes `package` when a command starts, run in `build_dir` (a bundler).",
        ),
        Field::optional("build_dir", FieldType::String, None, Update::Setting, "Where `build` runs, relative to the stack file."),
        Field::derived("code_sha256", FieldType::String, Update::InPlace, "SHA-256 of the package's files, without its configuration."),
        Field::optional(
            "config",
            FieldType::StringMap,
            None,
            Update::InPlace,
            "Values written into the package's config.json (\"${...}\" allowed); each at most 256 letters, digits, spaces and _.:/=+-@.",
        ),
        Field::optional(
            "fetch",
            FieldType::StringMap,
            None,
            Update::InPlace,
            "config.json entries fetched when the package is made: key = URL of a JSON document (a user pool's signing keys).",
        ),
        Field::optional(
            "secrets",
            FieldType::List(&FieldType::String),
            None,
            Update::InPlace,
            "config.json entries generated when the package is made (32 random bytes, base64): never shown, new with each version.",
        ),
        Field::optional(
            "edge",
            FieldType::Bool,
            Some("false"),
            Update::Replace,
            "A Lambda@Edge function: in us-east-1, at most 128 MB and 5 s (viewer events); its delete waits for AWS to remove the replicas.",
        ),
        TAGS,
    ])
.outputs(&[
        ("id", "The function's name"),
        ("arn", "The function's ARN (unqualified)"),
        ("version", "The newest published version"),
        ("version_arn", "The newest published version's ARN (what CloudFront runs)"),
    ])
.check(check)
.cost(cost, &[FUNCTION_LOG_GB])
.transient(TRANSIENT)
// Every change publishes a version: what runs it moves to the new one.
.changing_outputs(&["version", "version_arn"]);

const FUNCTION_LOG_GB: crate::cost::UsageKey = crate::cost::UsageKey {
    name: "function_log_gb",
    unit: "GB a month",
    doc: "logs each function writes to the log groups Lambda makes for it (kept until the function goes)",
};

/// What Lambda makes on the function's behalf and AWS charges for: its log groups' ingestion,
/// and their storage (they keep everything: priced at a year's intake, as a log group kept
/// forever). Invocations of these functions stay in Lambda's free tier and are not priced.
fn cost(cx: &crate::cost::CostCx<'_>) -> Vec<crate::cost::Part> {
    use crate::cost::Part;
    let gb = cx.usage(&FUNCTION_LOG_GB);
    vec![Part::new("log ingestion", "logs.ingest", gb), Part::new("log storage (kept)", "logs.storage", gb * 12.0)]
}

/// Tags that record what the package holds.
const CODE_TAG: &str = "provisioner:code-sha256";
const PACKAGE_TAG: &str = "provisioner:package-sha256";
const SECRETS_TAG: &str = "provisioner:secrets";
const EDGE_TAG: &str = "provisioner:edge";
const CONFIG_PREFIX: &str = "config:";
const FETCH_PREFIX: &str = "fetch:";

/// How long a delete of an edge function waits for AWS to remove its replicas: five minutes,
/// or `PROVISIONER_EDGE_REPLICA_WAIT` seconds.
fn replica_wait() -> Duration {
    let secs = std::env::var("PROVISIONER_EDGE_REPLICA_WAIT").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    Duration::from_secs(secs)
}

fn check(r: &Resource, stack: &Stack, d: &mut Diags) {
    let name = format!("{}-{}", stack.name, r.name);
    if name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        d.error(
            "bad-function-name",
            r.span.clone(),
            format!(
                "{}: its function would be named `{name}`: Lambda takes 1-64 letters, digits, `-` and `_`",
                r.address()
            ),
            None,
        );
    }
    // Lambda's Handler: up to 128 characters without white space; Node.js reads `file.export`.
    if let Some((h, span)) = r.str("handler") {
        if h.is_empty() || h.len() > 128 || h.chars().any(char::is_whitespace) || !h.contains('.') {
            d.error(
                "bad-handler",
                span,
                format!("{}: handler `{h}` is not `file.export` (up to 128 characters, no spaces)", r.address()),
                Some("e.g. handler = \"index.handler\"".into()),
            );
        }
    }
    if !matches!(r.fields.get("edge"), Some((Val::Bool(true), _))) {
        return;
    }
    if stack.region_of(r) != "us-east-1" {
        d.error(
            "edge-region",
            r.span.clone(),
            format!("{} is a Lambda@Edge function, which CloudFront takes only from us-east-1", r.address()),
            Some("add region = \"us-east-1\"".into()),
        );
    }
    for (field, max, what) in [("memory", 128, "MB"), ("timeout", 5, "s")] {
        if let Some((Val::Int(v), span)) = r.fields.get(field) {
            if *v > max {
                d.error(
                    "edge-limits",
                    span.clone(),
                    format!("{}: a viewer-request function may have at most {max} {what}", r.address()),
                    Some(format!("{field} = {max}")),
                );
            }
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    role: String,
    runtime: Option<String>,
    handler: Option<String>,
    memory: Option<i64>,
    timeout: Option<i64>,
    package: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    build: Vec<String>,
    build_dir: Option<String>,
    code_sha256: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    config: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    fetch: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    secrets: Vec<String>,
    edge: Option<bool>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

#[derive(Default, Serialize)]
struct Outputs {
    arn: String,
    /// The newest published version, none before the first.
    version: Option<String>,
    version_arn: Option<String>,
}

/// A package's files by name, without its configuration.
type Files = Vec<(String, Vec<u8>)>;

/// The packages built when this command started, by their code digest.
static BUILT: LazyLock<Mutex<BTreeMap<String, std::sync::Arc<Files>>>> = LazyLock::new(Mutex::default);

/// Every file under `dir`, by its path relative to it with `/`, sorted.
fn files_of(dir: &Path) -> Result<Files, String> {
    fn walk(base: &Path, dir: &Path, out: &mut Files) -> Result<(), String> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            if path.is_dir() {
                walk(base, &path, out)?;
            } else {
                let rel = path
                    .strip_prefix(base)
                    .map_err(|e| e.to_string())?
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((rel, std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    if out.iter().any(|(n, _)| n == "config.json") {
        return Err(format!(
            "{} already holds a config.json: the package's configuration is written by the provisioner",
            dir.display()
        ));
    }
    Ok(out)
}

/// The digest of the files: names and contents, in order.
fn digest(files: &[(String, Vec<u8>)]) -> String {
    let mut h = Sha256::new();
    for (name, bytes) in files {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    hex::encode(h.finalize())
}

/// A zip of `files`, the same bytes for the same files: sorted, every time 1980-01-01 00:00,
/// every mode 0644, deflated.
pub fn zip(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut sorted: Vec<&(String, Vec<u8>)> = files.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    for (name, bytes) in sorted {
        w.start_file(name.as_str(), options).map_err(|e| e.to_string())?;
        w.write_all(bytes).map_err(|e| e.to_string())?;
    }
    Ok(w.finish().map_err(|e| e.to_string())?.into_inner())
}

/// A config value AWS keeps as a tag value: at most 256 of these characters.
fn taggable(v: &str) -> bool {
    v.chars().count() <= 256 && v.chars().all(|c| c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c))
}

/// The package: the files built at start and `config.json` with the plain values, the fetched
/// documents and fresh secrets. Returns the zip.
async fn package(address: &str, w: &Attrs) -> Result<Vec<u8>, OpError> {
    let code =
        w.code_sha256.as_deref().ok_or_else(|| OpError::fatal("package", format!("{address}: no code digest")))?;
    let files =
        BUILT.lock().unwrap_or_else(|p| p.into_inner()).get(code).cloned().ok_or_else(|| {
            OpError::fatal("package", format!("{address}: its package was not built by this command"))
        })?;
    let mut config: Map<String, Value> = w.config.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    for (k, v) in &w.config {
        if !taggable(v) || k.len() + CONFIG_PREFIX.len() > 128 {
            return Err(OpError::fatal(
                "package",
                format!("{address}: config.{k} cannot be kept on the function (at most 256 letters, digits, spaces and _.:/=+-@): give it as `fetch` if it is a document"),
            ));
        }
    }
    for (k, url) in &w.fetch {
        let doc = fetch(url)
            .await
            .map_err(|e| OpError::retryable("fetch", format!("{address}: fetch.{k} from {url}: {e}")))?;
        config.insert(k.clone(), doc);
    }
    for k in &w.secrets {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        config.insert(k.clone(), json!(base64::engine::general_purpose::STANDARD.encode(key)));
    }
    let mut all: Files = files.as_ref().clone();
    all.push((
        "config.json".into(),
        serde_json::to_vec_pretty(&Value::Object(config)).map_err(|e| OpError::fatal("package", e.to_string()))?,
    ));
    zip(&all).map_err(|e| OpError::fatal("zip", e))
}

/// A JSON document over HTTPS (or the emulator's HTTP).
async fn fetch(url: &str) -> Result<Value, String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().map_err(|e| e.to_string())?;
    let r = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("answered {}", r.status()));
    }
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))
}

/// Lambda's digest of a package (base64 SHA-256, as its `CodeSha256`).
fn package_digest(package: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(package))
}

/// The tags recording what the package with Lambda digest `package` holds, besides the
/// resource's own.
fn record(w: &Attrs, package: String) -> BTreeMap<String, String> {
    let mut t = w.tags.clone();
    t.insert(CODE_TAG.into(), w.code_sha256.clone().unwrap_or_default());
    t.insert(PACKAGE_TAG.into(), package);
    if !w.secrets.is_empty() {
        t.insert(SECRETS_TAG.into(), w.secrets.join(" "));
    }
    if w.edge.unwrap_or(false) {
        t.insert(EDGE_TAG.into(), "true".into());
    }
    t.extend(w.config.iter().map(|(k, v)| (format!("{CONFIG_PREFIX}{k}"), v.clone())));
    t.extend(w.fetch.iter().map(|(k, v)| (format!("{FETCH_PREFIX}{k}"), v.clone())));
    t
}

/// The newest published version (not `$LATEST`) and its ARN.
async fn newest_version(cx: &Cx, name: &str) -> Result<Option<(u64, String)>, OpError> {
    let mut newest = None;
    let mut pages = lambda(cx).list_versions_by_function().function_name(name).into_paginator().send();
    while let Some(page) = pages.next().await {
        for v in page.map_err(|e| err("ListVersionsByFunction", e))?.versions() {
            if let (Some(n), Some(arn)) = (v.version().and_then(|s| s.parse::<u64>().ok()), v.function_arn()) {
                if newest.as_ref().is_none_or(|(m, _)| n > *m) {
                    newest = Some((n, arn.to_owned()));
                }
            }
        }
    }
    Ok(newest)
}

async fn settled(cx: &Cx, name: &str) -> Result<(), OpError> {
    lambda(cx)
        .wait_until_function_updated_v2()
        .function_name(name)
        .wait(Duration::from_secs(300))
        .await
        .map_err(|e| OpError::retryable("wait FunctionUpdated", format!("{name}: {e}")))?;
    Ok(())
}

struct Function;

#[async_trait]
impl Typed for Function {
    type Attrs = Attrs;
    type Outputs = Outputs;

    fn derive(&self, a: &Attrs, on: &Derive<'_>) -> Result<Map<String, Value>, String> {
        let dir = on.dir;
        if let Some((program, args)) = a.build.split_first() {
            let at = dir.join(a.build_dir.as_deref().unwrap_or("."));
            let status = std::process::Command::new(program)
                .args(args)
                .current_dir(&at)
                .status()
                .map_err(|e| format!("`{}` in {}: {e}", a.build.join(" "), at.display()))?;
            if !status.success() {
                return Err(format!("`{}` in {} failed ({status})", a.build.join(" "), at.display()));
            }
        }
        let dir = dir.join(a.package.as_deref().unwrap_or("."));
        let files = files_of(&dir)?;
        if files.is_empty() {
            return Err(format!("{} holds no files to package", dir.display()));
        }
        let code = digest(&files);
        BUILT.lock().unwrap_or_else(|p| p.into_inner()).insert(code.clone(), std::sync::Arc::new(files));
        Ok(Map::from_iter([("code_sha256".to_owned(), json!(code))]))
    }

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        let prefix = format!("{}-", cx.stack);
        let mut mine = Vec::new();
        let mut pages = lambda(cx).list_functions().into_paginator().send();
        while let Some(page) = pages.next().await {
            mine.extend(
                page.map_err(|e| err("ListFunctions", e))?
                    .functions()
                    .iter()
                    .filter(|f| f.function_name().is_some_and(|n| n.starts_with(&prefix)))
                    .cloned(),
            );
        }
        let mut out = Vec::new();
        for f in mine {
            let (Some(name), Some(arn)) = (f.function_name(), f.function_arn()) else { continue };
            let t = match lambda(cx).list_tags().resource(arn).send().await.map_err(|e| err("ListTags", e)) {
                Err(e) if e.is_not_found() => continue,
                other => other?,
            };
            let mut tags: BTreeMap<String, String> = t.tags().cloned().unwrap_or_default().into_iter().collect();
            if tags.get(STACK_TAG) != Some(&cx.stack) {
                continue;
            }
            let Some(address) = tags.get(ID_TAG).cloned() else { continue };
            let recorded = tags.remove(PACKAGE_TAG);
            let code = tags.remove(CODE_TAG);
            // The record describes the package only while Lambda's digest of it is the same.
            let code = if recorded.as_deref() == f.code_sha256() {
                code
            } else {
                Some("(changed outside the provisioner)".into())
            };
            let secrets: Vec<String> =
                tags.remove(SECRETS_TAG).map(|s| s.split(' ').map(str::to_owned).collect()).unwrap_or_default();
            let edge = tags.remove(EDGE_TAG).is_some_and(|v| v == "true");
            let take = |tags: &mut BTreeMap<String, String>, prefix: &str| -> BTreeMap<String, String> {
                let keys: Vec<String> = tags.keys().filter(|k| k.starts_with(prefix)).cloned().collect();
                keys.into_iter().filter_map(|k| tags.remove(&k).map(|v| (k[prefix.len()..].to_owned(), v))).collect()
            };
            let config = take(&mut tags, CONFIG_PREFIX);
            let fetch = take(&mut tags, FETCH_PREFIX);
            let newest = newest_version(cx, name).await?;
            let outputs = Outputs {
                arn: arn.to_owned(),
                version: newest.as_ref().map(|(n, _)| n.to_string()),
                version_arn: newest.map(|(_, varn)| varn),
            };
            let attrs = Attrs {
                role: f.role().unwrap_or_default().to_owned(),
                runtime: f.runtime().map(|r| r.as_str().to_owned()),
                handler: f.handler().map(str::to_owned),
                memory: f.memory_size().map(i64::from),
                timeout: f.timeout().map(i64::from),
                package: None,
                build: Vec::new(),
                build_dir: None,
                code_sha256: code,
                config,
                fetch,
                secrets,
                edge: Some(edge),
                tags,
            };
            out.push(Found { id: name.to_owned(), address, attrs, outputs });
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, w: &Attrs, _token: &str) -> Result<String, OpError> {
        let name = format!("{}-{}", cx.stack, address.name());
        let zip = package(&address.to_string(), w).await?;
        let tags: HashMap<String, String> = record(w, package_digest(&zip)).into_iter().collect();
        let made = lambda(cx)
            .create_function()
            .function_name(&name)
            .role(&w.role)
            .runtime(Runtime::from(w.runtime.as_deref().unwrap_or("nodejs22.x")))
            .handler(w.handler.as_deref().unwrap_or("index.handler"))
            .memory_size(w.memory.unwrap_or(128) as i32)
            .timeout(w.timeout.unwrap_or(5) as i32)
            .code(FunctionCode::builder().zip_file(Blob::new(zip)).build())
            .publish(true)
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(|e| err("CreateFunction", e));
        match made {
            Ok(_) => {}
            // A rerun after a crash between the create and its record: the function is ours
            // (tagged at birth); the update that follows brings it to `w`.
            Err(e) if e.has_code("ResourceConflictException") => {
                return Err(OpError::retryable("CreateFunction", format!("{name} exists: reading it again")))
            }
            Err(e) => return Err(e),
        }
        cx.born(&name, w);
        // A new function is Pending until AWS has made it ready (FunctionActiveV2, as AWS
        // documents for creates; FunctionUpdatedV2 is for updates).
        lambda(cx)
            .wait_until_function_active_v2()
            .function_name(&name)
            .wait(Duration::from_secs(300))
            .await
            .map_err(|e| OpError::retryable("wait FunctionActive", format!("{name}: {e}")))?;
        Ok(name)
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        let settings = (&h.role, &h.runtime, &h.handler, h.memory, h.timeout)
            != (&w.role, &w.runtime, &w.handler, w.memory, w.timeout);
        let contents =
            (&h.code_sha256, &h.config, &h.fetch, &h.secrets) != (&w.code_sha256, &w.config, &w.fetch, &w.secrets);
        let arn = lambda(cx)
            .get_function_configuration()
            .function_name(id)
            .send()
            .await
            .map_err(|e| err("GetFunctionConfiguration", e))?
            .function_arn()
            .map(str::to_owned)
            .unwrap_or_default();
        if settings {
            lambda(cx)
                .update_function_configuration()
                .function_name(id)
                .role(&w.role)
                .runtime(Runtime::from(w.runtime.as_deref().unwrap_or("nodejs22.x")))
                .handler(w.handler.as_deref().unwrap_or("index.handler"))
                .memory_size(w.memory.unwrap_or(128) as i32)
                .timeout(w.timeout.unwrap_or(5) as i32)
                .send()
                .await
                .map_err(|e| err("UpdateFunctionConfiguration", e))?;
            settled(cx, id).await?;
        }
        let live = lambda(cx).list_tags().resource(&arn).send().await.map_err(|e| err("ListTags", e))?;
        let live: BTreeMap<String, String> = live.tags().cloned().unwrap_or_default().into_iter().collect();
        let record_now = if contents {
            let zip = package(id, w).await?;
            let digest = package_digest(&zip);
            lambda(cx)
                .update_function_code()
                .function_name(id)
                .zip_file(Blob::new(zip))
                .send()
                .await
                .map_err(|e| err("UpdateFunctionCode", e))?;
            settled(cx, id).await?;
            record(w, digest)
        } else {
            // The same package: its recorded digest stays.
            record(w, live.get(PACKAGE_TAG).cloned().unwrap_or_default())
        };
        if settings || contents {
            lambda(cx).publish_version().function_name(id).send().await.map_err(|e| err("PublishVersion", e))?;
        }
        // The record is rewritten whole: values that left the configuration leave the tags.
        let gone: Vec<String> = live.keys().filter(|k| !record_now.contains_key(*k)).cloned().collect();
        if !gone.is_empty() {
            lambda(cx)
                .untag_resource()
                .resource(&arn)
                .set_tag_keys(Some(gone))
                .send()
                .await
                .map_err(|e| err("UntagResource", e))?;
        }
        let set: HashMap<String, String> = record_now.into_iter().filter(|(k, v)| live.get(k) != Some(v)).collect();
        if !set.is_empty() {
            lambda(cx)
                .tag_resource()
                .resource(&arn)
                .set_tags(Some(set))
                .send()
                .await
                .map_err(|e| err("TagResource", e))?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &Cx, id: &str, have: Option<&Attrs>) -> Result<(), OpError> {
        let edge = have.is_some_and(|a| a.edge.unwrap_or(false));
        let (started, wait) = (std::time::Instant::now(), replica_wait());
        // Ten tries within the wait, at most one every 30 s.
        let pause = (wait / 10).clamp(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            match lambda(cx).delete_function().function_name(id).send().await.map_err(|e| err("DeleteFunction", e)) {
                // Its logs go with it: Lambda made them, and nothing else would delete them.
                Ok(_) => return crate::kinds::logs::delete_function_logs(cx, id, edge).await,
                Err(e) if e.is_not_found() => return crate::kinds::logs::delete_function_logs(cx, id, edge).await,
                // CloudFront has let go of it, but AWS removes the copies it ran at the edge
                // hours later; until then the function cannot be deleted.
                Err(e) if edge && e.has_code("InvalidParameterValueException") && e.message.contains("replicated") => {
                    if started.elapsed() >= wait {
                        return Err(OpError::later(
                            "DeleteFunction",
                            format!("{id}: AWS has not yet removed its Lambda@Edge replicas (it takes up to a few hours after the distribution let go of it); its log groups go with it then"),
                        ));
                    }
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_files_zip_to_the_same_bytes_in_any_order() {
        let a = vec![("index.mjs".to_owned(), b"export const x = 1;".to_vec()), ("lib/a.js".to_owned(), vec![7; 1000])];
        let mut b = a.clone();
        b.reverse();
        let (za, zb) = (zip(&a).unwrap(), zip(&b).unwrap());
        assert_eq!(za, zb);
        let mut read = zip::ZipArchive::new(std::io::Cursor::new(za)).unwrap();
        assert_eq!(read.len(), 2);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut read.by_name("index.mjs").unwrap(), &mut s).unwrap();
        assert_eq!(s, "export const x = 1;");
        assert_eq!(read.by_name("lib/a.js").unwrap().unix_mode(), Some(0o100644));
        assert_ne!(digest(&a), digest(&[("index.mjs".to_owned(), b"export const x = 2;".to_vec())]));
    }

    #[test]
    fn edge_functions_live_in_us_east_1_within_viewer_limits() {
        let src = |region: &str, memory: i64| {
            format!("[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n[lambda_function.auth]\n{region}role = \"arn:aws:iam::1:role/r\"\npackage = \"dist\"\nedge = true\nmemory = {memory}\n")
        };
        let codes = |s: String| match crate::stack::parse(crate::kinds::all(), "t.toml", &s, &BTreeMap::new()) {
            Ok(_) => vec![],
            Err(d) => d.items.iter().map(|i| i.code).collect::<Vec<_>>(),
        };
        assert_eq!(codes(src("", 128)), vec!["edge-region"]);
        assert_eq!(codes(src("region = \"us-east-1\"\n", 256)), vec!["edge-limits"]);
        assert!(codes(src("region = \"us-east-1\"\n", 128)).is_empty());
    }

    #[test]
    fn config_values_must_fit_a_tag() {
        assert!(taggable("https://cognito-idp.us-east-1.amazonaws.com/us-east-1_Ab12"));
        assert!(!taggable("{\"keys\": []}"));
        assert!(!taggable(&"x".repeat(257)));
    }
}
