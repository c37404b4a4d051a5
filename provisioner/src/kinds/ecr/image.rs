//! `image`: an OCI image of one Rust binary, built without Docker (`crate::image`) when a
//! command starts, so its digest is known to the plan, and pushed to one of the stack's ECR
//! repositories over the registry API. Task definitions and hosts refer to it by digest
//! (`${image.quake.digest}`): a new binary is a planned change of theirs, an unchanged one is
//! no change and no upload.
//!
//! Each push is tagged `<name>-<UTC time>-<digest hex>` (tags stay immutable, and the newest
//! one is what the stack has); older pushes stay until the repository's lifecycle rule
//! expires them, so a rollback finds its image.

use super::{registry, registry_err, repositories};
use crate::diag::Diags;
use crate::error::OpError;
use crate::image::{self, Arch, Spec};
use crate::provider::{Address, Cx, Derive, Found, Typed};
use crate::schema::{Field, FieldType, Kind, Update};
use crate::stack::{Resource, Stack};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub static KIND: Kind = Kind::new("image", "An OCI image of one Rust binary, built without Docker and pushed to an ECR repository; used by digest.", &ImageKind)
.fields(&[
        Field::required(
            "repository",
            FieldType::Ref(&["ecr_repository"]),
            Update::Replace,
            "The repository it is pushed to.",
        ),
        Field::optional(
            "package",
            FieldType::String,
            None,
            Update::Setting,
            "Cargo package whose binary the image runs (built when a command starts); or `executable`.",
        ),
        Field::optional(
            "binary",
            FieldType::String,
            None,
            Update::Setting,
            "Binary target of `package` (default: the package's name); the image's entrypoint.",
        ),
        Field::optional(
            "workspace",
            FieldType::String,
            Some("\"../Cargo.toml\""),
            Update::Setting,
            "The Cargo.toml `package` is built from, relative to the stack file.",
        ),
        Field::optional(
            "profile",
            FieldType::Enum(&["release", "dev"]),
            Some("\"release\""),
            Update::Setting,
            "Cargo profile of the build.",
        ),
        Field::optional(
            "executable",
            FieldType::String,
            None,
            Update::Setting,
            "A binary built elsewhere (relative to the stack file), instead of `package`.",
        ),
        Field::optional(
            "files",
            FieldType::StringMap,
            None,
            Update::Setting,
            "Other files in the image: path in the image = host file or directory (relative to the stack file). A directory holding an `index.html` is a web page: every file it or its modules load must be in it.",
        ),
        Field::optional(
            "exclude",
            FieldType::List(&FieldType::String),
            None,
            Update::Setting,
            "Names left out of the directories in `files`, at any depth (what only development uses, e.g. \"node_modules\").",
        ),
        Field::optional(
            "architecture",
            FieldType::Enum(&["x86_64", "arm64"]),
            Some("\"x86_64\""),
            Update::Setting,
            "CPU the image is for (only the build host's architecture builds: x86_64 here).",
        ),
        Field::derived(
            "digest",
            FieldType::String,
            Update::InPlace,
            "The image's manifest digest (sha256:...), from building it when a command starts.",
        ),
    ])
.outputs(&[
        ("id", "<repository>:<name>"),
        ("digest", "Manifest digest (known to a plan before anything is pushed)"),
        ("tag", "Tag of the newest push"),
        ("uri", "<repository URL>@<digest>: what a task definition or host pulls"),
    ])
.check(check);

/// The longest name whose tags (`<name>-YYYYMMDDTHHMMSSZ-<64 hex>`) fit OCI's 128 characters.
const MAX_NAME: usize = 128 - 1 - 16 - 1 - 64;

fn check(r: &Resource, stack: &Stack, d: &mut Diags) {
    match (r.str("package"), r.str("executable")) {
        (Some(_), Some((_, span))) => d.error(
            "image-source",
            span,
            format!("{} gives both `package` and `executable`", r.address()),
            Some("build from the package, or use a binary built elsewhere: one of them".into()),
        ),
        (None, None) => d.error(
            "image-source",
            r.span.clone(),
            format!("{} needs `package` (a Cargo package to build) or `executable`", r.address()),
            Some("e.g. package = \"quake\"".into()),
        ),
        _ => {}
    }
    if let (None, Some((_, span))) = (r.str("package"), r.str("binary")) {
        d.error("image-source", span, format!("{}: `binary` names a target of `package`", r.address()), None);
    }
    if let Some((crate::stack::Val::Table(files), _)) = r.fields.get("files") {
        for (at, (_, span)) in files.iter().filter(|(at, _)| !at.starts_with('/')) {
            d.error(
                "image-path",
                span.clone(),
                format!("{}: `{at}` in `files` is not an absolute path in the image", r.address()),
                Some(format!("write \"/{at}\"")),
            );
        }
    }
    pages(r, stack, d);
    if r.name.len() > MAX_NAME {
        d.error(
            "name-too-long",
            r.span.clone(),
            format!("image name `{}` is longer than {MAX_NAME} characters (its tags carry it)", r.name),
            None,
        );
    }
}

/// Every web page in the image (an `index.html` among `files`) holds what it loads, so a
/// module added to the page and left out of the image is refused here, not found by users as
/// a 404 and a blank map.
fn pages(r: &Resource, stack: &Stack, d: &mut Diags) {
    let Some((crate::stack::Val::Table(files), span)) = r.fields.get("files") else { return };
    let exclude: Vec<String> = match r.fields.get("exclude") {
        Some((crate::stack::Val::List(l), _)) => l.iter().filter_map(|(v, _)| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    let dir = std::path::Path::new(&stack.file).parent().unwrap_or(std::path::Path::new("."));
    let hosts: Vec<(String, std::path::PathBuf)> =
        files.iter().filter_map(|(at, (host, _))| Some((at.clone(), dir.join(host.as_str()?)))).collect();
    // A path that cannot be read is the build's to report; there is no page to check there.
    for m in image::page::missing(&image::listing(&hosts, &exclude).unwrap_or_default()) {
        d.error(
            "page-file-missing",
            span.clone(),
            format!("{}: `{}` loads `{}`, which the image would not hold", r.address(), m.from, m.wanted),
            Some(
                "take the page's directory whole (\"/assets/web\" = \"../assets/web\"), build its libraries \
                 (`make web`), or remove the name from `exclude`"
                    .into(),
            ),
        );
    }
}

/// The declared shape (`repository` as an id: the repository's name).
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    repository: Option<String>,
    package: Option<String>,
    binary: Option<String>,
    workspace: Option<String>,
    profile: Option<String>,
    executable: Option<String>,
    #[serde(default, deserialize_with = "crate::provider::null_as_empty")]
    files: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "crate::provider::null_as_empty")]
    exclude: Vec<String>,
    architecture: Option<String>,
    digest: Option<String>,
}

/// `(name, digest, time)` of a tag this kind wrote, `None` for any other tag.
fn parse_tag(tag: &str) -> Option<(&str, String, &str)> {
    let (rest, hex) = tag.rsplit_once('-')?;
    let (name, time) = rest.rsplit_once('-')?;
    let ok = hex.len() == 64
        && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && time.len() == 16
        && time.ends_with('Z');
    ok.then(|| (name, format!("sha256:{hex}"), time))
}

fn tag_for(name: &str, digest: &str) -> String {
    let time = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    format!("{name}-{time}-{}", digest.trim_start_matches("sha256:"))
}

#[derive(Default, Serialize)]
struct Outputs {
    digest: String,
    tag: String,
    uri: String,
}

struct ImageKind;

impl ImageKind {
    /// Pushes the image this process built for `want` to its repository.
    async fn push(&self, cx: &Cx, name: &str, w: &Attrs) -> Result<String, OpError> {
        let repo = w.repository.as_deref().ok_or_else(|| OpError::fatal("push", "no repository"))?;
        let digest = w.digest.as_deref().ok_or_else(|| OpError::fatal("push", "the image was not built"))?;
        let built = image::built(digest).ok_or_else(|| {
            OpError::fatal("push", format!("image {digest} was not built by this run: plan and apply in one command"))
        })?;
        let reg = registry(cx).await?;
        reg.push(repo, &built, &tag_for(name, digest)).await.map_err(registry_err)?;
        Ok(format!("{repo}:{name}"))
    }
}

#[async_trait]
impl Typed for ImageKind {
    type Attrs = Attrs;
    type Outputs = Outputs;

    fn derive(&self, a: &Attrs, on: &Derive<'_>) -> Result<Map<String, Value>, String> {
        let dir = on.dir;
        let arch_name = a.architecture.as_deref().unwrap_or("x86_64");
        let arch = Arch::parse(arch_name).ok_or_else(|| format!("unknown architecture {arch_name}"))?;
        let (binary, name) = match (&a.executable, &a.package) {
            (Some(exe), _) => {
                let path = dir.join(exe);
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                (path, name)
            }
            (None, Some(package)) => {
                let bin = a.binary.clone().unwrap_or_else(|| package.clone());
                let manifest = dir.join(a.workspace.as_deref().unwrap_or("../Cargo.toml"));
                let profile = a.profile.as_deref().unwrap_or("release");
                let built = image::cargo_build(&manifest, package, &bin, profile, arch).map_err(|e| e.to_string())?;
                (built, bin)
            }
            (None, None) => return Err("needs `package` or `executable`".into()),
        };
        let files = a.files.iter().map(|(at, host)| (at.clone(), dir.join(host))).collect();
        let epoch = Spec::epoch_from_env().map_err(|e| e.to_string())?;
        let spec = Spec { binary, name, arch, epoch, files, exclude: a.exclude.clone() };
        let built = image::build(&spec).map_err(|e| e.to_string())?;
        image::keep(&built);
        Ok(Map::from_iter([("digest".to_owned(), json!(built.digest()))]))
    }

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        let repos = repositories(cx).await?;
        if repos.is_empty() {
            return Ok(Vec::new());
        }
        let reg = registry(cx).await?;
        let mut out = Vec::new();
        for repo in repos {
            // The newest push of each image name in this repository.
            let mut newest: BTreeMap<String, (String, String, String)> = BTreeMap::new();
            for tag in reg.tags(&repo.name).await.map_err(registry_err)? {
                let Some((name, digest, time)) = parse_tag(&tag) else { continue };
                if newest.get(name).is_none_or(|(t, _, _)| time > t.as_str()) {
                    newest.insert(name.to_owned(), (time.to_owned(), digest, tag.clone()));
                }
            }
            for (name, (_, digest, tag)) in newest {
                let attrs =
                    Attrs { repository: Some(repo.name.clone()), digest: Some(digest.clone()), ..Attrs::default() };
                let outputs = Outputs { uri: format!("{}@{digest}", repo.uri), digest, tag };
                out.push(Found {
                    id: format!("{}:{name}", repo.name),
                    address: format!("image.{name}"),
                    attrs,
                    outputs,
                });
            }
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, want: &Attrs, _token: &str) -> Result<String, OpError> {
        // The digest is the idempotency key: a rerun pushes only a manifest under a new tag.
        self.push(cx, address.name(), want).await
    }

    async fn update(&self, cx: &Cx, id: &str, _have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let name = id.split_once(':').map_or(id, |(_, n)| n);
        self.push(cx, name, want).await.map(|_| ())
    }

    /// Deletes every push of this image (older ones too); the repository stays.
    async fn delete(&self, cx: &Cx, id: &str, _have: Option<&Attrs>) -> Result<(), OpError> {
        let Some((repo, name)) = id.split_once(':') else { return Ok(()) };
        let reg = registry(cx).await?;
        let mut digests: Vec<String> = reg
            .tags(repo)
            .await
            .map_err(registry_err)?
            .iter()
            .filter_map(|t| parse_tag(t).filter(|(n, _, _)| *n == name).map(|(_, d, _)| d))
            .collect();
        digests.sort();
        digests.dedup();
        for d in digests {
            reg.delete(repo, &d).await.map_err(registry_err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_carry_name_time_and_digest_and_others_are_ignored() {
        let hex = "ab".repeat(32);
        let tag = tag_for("web-api", &format!("sha256:{hex}"));
        assert!(tag.len() <= 128 - (MAX_NAME - "web-api".len()), "{tag}");
        let (name, digest, time) = parse_tag(&tag).unwrap();
        assert_eq!((name, digest.as_str()), ("web-api", format!("sha256:{hex}").as_str()));
        assert_eq!(time.len(), 16);
        assert_eq!(parse_tag("latest"), None);
        assert_eq!(parse_tag(&format!("x-20260101T000000Z-{}", "g".repeat(64))), None);
        assert_eq!(parse_tag("x-2026-abc"), None);
    }
}
