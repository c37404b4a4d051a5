//! OCI images without a Docker daemon: one binary, the shared libraries its ELF header needs
//! (taken from the build host), CA certificates and a non-root user, no shell and no package
//! manager. Reproducible: fixed timestamps (`SOURCE_DATE_EPOCH`, else 1970), sorted entries,
//! numeric owners and a fixed gzip header, so one binary always gives one digest.
//!
//! Layers by how often they change: the runtime (libraries, certificates, `/etc`) with the
//! build host, other files (the map page) with their sources, the binary with every build; a
//! new binary uploads one layer.

mod elf;
pub mod page;
pub mod pin;
pub mod registry;

use flate2::{Compression, GzBuilder};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

pub use elf::{closure, Needed};

/// The user the image runs as (numeric, so no name lookup is needed at run time).
pub const UID: u32 = 10001;
/// Where the binary goes.
pub const BIN_DIR: &str = "/usr/local/bin";
/// The working directory, owned by [`UID`] (the embedded store writes below it).
pub const WORK_DIR: &str = "/var/lib/app";
/// The CA bundle of the build host, and where the image keeps it.
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{0}")]
    Binary(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Build(String),
}

impl ImageError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_owned(), source }
    }
}

/// The CPU an image is for. Only the build host's can be built here (a second Rust target
/// and that architecture's libraries are needed for another); the field exists so arm64 is a
/// switch once they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Arm64,
}

impl Arch {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "x86_64" => Some(Self::X86_64),
            "arm64" => Some(Self::Arm64),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Arm64 => "arm64",
        }
    }

    /// The Rust target triple that builds for it.
    pub fn rust_target(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64-unknown-linux-gnu",
            Self::Arm64 => "aarch64-unknown-linux-gnu",
        }
    }

    /// The name OCI and ECS use (`GOARCH`).
    fn oci(self) -> &'static str {
        match self {
            Self::X86_64 => "amd64",
            Self::Arm64 => "arm64",
        }
    }

    fn elf_machine(self) -> u16 {
        match self {
            Self::X86_64 => goblin::elf::header::EM_X86_64,
            Self::Arm64 => goblin::elf::header::EM_AARCH64,
        }
    }

    /// The directories the dynamic loader searches (Debian's multiarch ones first).
    fn lib_dirs(self) -> &'static [&'static str] {
        match self {
            Self::X86_64 => {
                &["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"]
            }
            Self::Arm64 => {
                &["/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"]
            }
        }
    }
}

/// What to put in an image.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The binary, as built.
    pub binary: PathBuf,
    /// Its name in [`BIN_DIR`] (the entrypoint).
    pub name: String,
    pub arch: Arch,
    /// Seconds since 1970 for every timestamp in the image.
    pub epoch: u64,
    /// Other files, `(path in the image, host file or directory)`: a layer of their own
    /// (directories whole, without hidden entries; every file 0644, owned by root).
    pub files: Vec<(String, PathBuf)>,
    /// Names left out of the directories in `files`, at any depth (what only development
    /// uses, such as `node_modules`).
    pub exclude: Vec<String>,
}

impl Spec {
    /// `SOURCE_DATE_EPOCH` when set (reproducible-builds.org), else 0.
    pub fn epoch_from_env() -> Result<u64, ImageError> {
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(s) => s
                .trim()
                .parse()
                .map_err(|_| ImageError::Build(format!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds"))),
            Err(_) => Ok(0),
        }
    }
}

/// A content-addressed blob.
#[derive(Debug, Clone)]
pub struct Blob {
    pub media_type: &'static str,
    pub digest: String,
    pub data: Arc<Vec<u8>>,
}

impl Blob {
    fn new(media_type: &'static str, data: Vec<u8>) -> Self {
        Self { media_type, digest: sha256(&data), data: Arc::new(data) }
    }

    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }
}

/// A built image: its manifest, config and layers.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl Image {
    /// The manifest's digest, which names the image.
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// Config and layers: what a registry must hold before the manifest.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(&self.layers)
    }

    /// Bytes a registry stores for it (compressed layers, config, manifest).
    pub fn size(&self) -> u64 {
        self.blobs().map(Blob::size).sum::<u64>() + self.manifest.size()
    }
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// A file or directory of a layer.
enum Entry {
    Dir { mode: u32, uid: u32 },
    File { data: Vec<u8>, mode: u32 },
}

/// A layer's entries by path (no leading slash), parents added as root-owned directories.
#[derive(Default)]
struct Tree(BTreeMap<String, Entry>);

impl Tree {
    fn dir(&mut self, path: &str, mode: u32, uid: u32) {
        self.parents(path);
        self.0.insert(path.trim_matches('/').to_owned(), Entry::Dir { mode, uid });
    }

    fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.parents(path);
        self.0.insert(path.trim_matches('/').to_owned(), Entry::File { data, mode });
    }

    fn parents(&mut self, path: &str) {
        let p = path.trim_matches('/');
        let mut at = 0;
        while let Some(i) = p[at..].find('/') {
            let parent = &p[..at + i];
            self.0.entry(parent.to_owned()).or_insert(Entry::Dir { mode: 0o755, uid: 0 });
            at += i + 1;
        }
    }

    /// The layer as a tar (uncompressed) in path order, every timestamp `epoch`.
    fn tar(&self, epoch: u64) -> Result<Vec<u8>, ImageError> {
        let mut b = tar::Builder::new(Vec::new());
        let io = |e| ImageError::Build(format!("writing a layer: {e}"));
        for (path, e) in &self.0 {
            let mut h = tar::Header::new_ustar();
            h.set_mtime(epoch);
            match e {
                Entry::Dir { mode, uid } => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_path(format!("{path}/")).map_err(io)?;
                    h.set_mode(*mode);
                    h.set_uid(u64::from(*uid));
                    h.set_gid(u64::from(*uid));
                    h.set_size(0);
                    h.set_cksum();
                    b.append(&h, std::io::empty()).map_err(io)?;
                }
                Entry::File { data, mode } => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_path(path).map_err(io)?;
                    h.set_mode(*mode);
                    h.set_uid(0);
                    h.set_gid(0);
                    h.set_size(data.len() as u64);
                    h.set_cksum();
                    b.append(&h, data.as_slice()).map_err(io)?;
                }
            }
        }
        b.into_inner().map_err(io)
    }
}

/// The regular files `files` puts in an image (path in the image -> host file): each host file
/// at its path, each directory walked whole without hidden entries and the names in `exclude`.
/// The one walk both the image builder and `validate`'s page check ([`page::missing`]) use.
pub fn listing(files: &[(String, PathBuf)], exclude: &[String]) -> Result<BTreeMap<String, PathBuf>, ImageError> {
    fn walk(at: &str, host: &Path, exclude: &[String], out: &mut BTreeMap<String, PathBuf>) -> Result<(), ImageError> {
        if std::fs::metadata(host).map_err(|e| ImageError::io(host, e))?.is_file() {
            out.insert(at.to_owned(), host.to_owned());
            return Ok(());
        }
        for e in std::fs::read_dir(host).map_err(|e| ImageError::io(host, e))? {
            let n = e.map_err(|e| ImageError::io(host, e))?.file_name();
            if !page::excluded(Path::new(&n), exclude) {
                walk(&format!("{}/{}", at.trim_end_matches('/'), n.to_string_lossy()), &host.join(&n), exclude, out)?;
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    for (at, host) in files {
        walk(at, host, exclude, &mut out)?;
    }
    Ok(out)
}

/// gzip with a fixed header (no name, mtime 0) at the default level.
fn gzip(data: &[u8]) -> Result<Vec<u8>, ImageError> {
    let mut z = GzBuilder::new().mtime(0).write(Vec::with_capacity(data.len() / 3), Compression::default());
    z.write_all(data).and_then(|()| z.finish()).map_err(|e| ImageError::Build(format!("compressing a layer: {e}")))
}

fn read(path: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::read(path).map_err(|e| ImageError::io(path, e))
}

/// The runtime layer: libraries, CA certificates, a non-root user, `/tmp`, the working
/// directory.
fn runtime(spec: &Spec) -> Result<Tree, ImageError> {
    let mut t = Tree::default();
    for n in closure(&spec.binary, spec.arch)? {
        t.file(&n.image_path, read(&n.host)?, 0o755);
    }
    let ca = Path::new(CA_BUNDLE);
    let certs = read(ca).map_err(|e| {
        ImageError::Build(format!("{e} (the image carries the build host's CA certificates: install ca-certificates)"))
    })?;
    t.file(CA_BUNDLE, certs, 0o644);
    let name = &spec.name;
    t.file(
        "/etc/passwd",
        format!("root:x:0:0:root:/root:/sbin/nologin\n{name}:x:{UID}:{UID}:{name}:{WORK_DIR}:/sbin/nologin\n").into(),
        0o644,
    );
    t.file("/etc/group", format!("root:x:0:\n{name}:x:{UID}:\n").into(), 0o644);
    t.file("/etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n".to_vec(), 0o644);
    t.dir("/tmp", 0o1777, 0);
    t.dir(WORK_DIR, 0o755, UID);
    Ok(t)
}

#[derive(Serialize)]
struct Descriptor<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    digest: &'a str,
    size: u64,
}

impl<'a> From<&'a Blob> for Descriptor<'a> {
    fn from(b: &'a Blob) -> Self {
        Self { media_type: b.media_type, digest: &b.digest, size: b.size() }
    }
}

/// RFC 3339, UTC, whole seconds.
fn rfc3339(epoch: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(epoch).unwrap_or(i64::MAX), 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Builds the image of `spec` (reads the binary, its libraries and the CA bundle; writes
/// nothing).
pub fn build(spec: &Spec) -> Result<Image, ImageError> {
    let mut tars =
        vec![(runtime(spec)?.tar(spec.epoch)?, "runtime (shared libraries, CA certificates, user)".to_owned())];
    if !spec.files.is_empty() {
        let mut files = Tree::default();
        // Each directory named in `files` is in the image even when empty; the rest of the
        // tree follows from the files' parents.
        for (at, host) in &spec.files {
            if host.is_dir() {
                files.dir(at, 0o755, 0);
            }
        }
        for (at, host) in listing(&spec.files, &spec.exclude)? {
            files.file(&at, read(&host)?, 0o644);
        }
        let what = spec.files.iter().map(|(at, _)| at.as_str()).collect::<Vec<_>>().join(", ");
        tars.push((files.tar(spec.epoch)?, format!("files: {what}")));
    }
    let mut app = Tree::default();
    app.file(&format!("{BIN_DIR}/{}", spec.name), elf::strip_debug(&spec.binary, read(&spec.binary)?)?, 0o755);
    tars.push((app.tar(spec.epoch)?, spec.name.clone()));
    let created = rfc3339(spec.epoch);
    let entrypoint = format!("{BIN_DIR}/{}", spec.name);
    let config = serde_json::json!({
        "created": created,
        "architecture": spec.arch.oci(),
        "os": "linux",
        "config": {
            "User": format!("{UID}:{UID}"),
            "Entrypoint": [entrypoint],
            "Env": [format!("PATH={BIN_DIR}"), format!("SSL_CERT_FILE={CA_BUNDLE}")],
            "WorkingDir": WORK_DIR,
            "Labels": { "org.opencontainers.image.title": spec.name },
        },
        "rootfs": { "type": "layers", "diff_ids": tars.iter().map(|(t, _)| sha256(t)).collect::<Vec<_>>() },
        "history": tars.iter().map(|(_, what)| serde_json::json!({ "created": created, "created_by": format!("provisioner: {what}") })).collect::<Vec<_>>(),
    });
    let layers = tars.iter().map(|(t, _)| Ok(Blob::new(LAYER, gzip(t)?))).collect::<Result<Vec<_>, ImageError>>()?;
    let config = Blob::new(CONFIG, serde_json::to_vec(&config).map_err(|e| ImageError::Build(e.to_string()))?);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": Descriptor::from(&config),
        "layers": layers.iter().map(Descriptor::from).collect::<Vec<_>>(),
    });
    let manifest = Blob::new(MANIFEST, serde_json::to_vec(&manifest).map_err(|e| ImageError::Build(e.to_string()))?);
    Ok(Image { manifest, config, layers })
}

/// Images built in this process, by digest: planning builds them, applying pushes them.
static BUILT: LazyLock<Mutex<BTreeMap<String, Image>>> = LazyLock::new(Mutex::default);

/// Keeps `image` for a later [`built`] in this process.
pub fn keep(image: &Image) {
    BUILT.lock().unwrap_or_else(|p| p.into_inner()).insert(image.digest().to_owned(), image.clone());
}

/// An image this process built.
pub fn built(digest: &str) -> Option<Image> {
    BUILT.lock().unwrap_or_else(|p| p.into_inner()).get(digest).cloned()
}

/// Builds `binary` of Cargo package `package` in `profile` for `arch` from the workspace of
/// `manifest` (a `Cargo.toml`), and returns the executable's path. Cargo's own output goes to
/// this process's stderr, as a build would show it.
pub fn cargo_build(
    manifest: &Path,
    package: &str,
    binary: &str,
    profile: &str,
    arch: Arch,
) -> Result<PathBuf, ImageError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let host = std::env::consts::ARCH;
    let native = matches!((arch, host), (Arch::X86_64, "x86_64") | (Arch::Arm64, "aarch64"));
    if !native {
        // Another target needs its standard library (and that architecture's C libraries for
        // the image): say so before Cargo compiles anything.
        let sysroot = std::process::Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
            .args(["--print", "sysroot"])
            .output()
            .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .unwrap_or_default();
        if !sysroot.join("lib/rustlib").join(arch.rust_target()).join("lib").is_dir() {
            return Err(ImageError::Build(format!(
                "{} images need the Rust target {t} (`rustup target add {t}`) and {} C libraries; only {host} builds here",
                arch.name(),
                arch.name(),
                t = arch.rust_target()
            )));
        }
    }
    let mut cmd = std::process::Command::new(cargo);
    cmd.arg("build")
        .arg("--manifest-path")
        .arg(manifest)
        .args(["-p", package, "--bin", binary, "--profile", profile, "--message-format=json-render-diagnostics"])
        .stdout(std::process::Stdio::piped());
    if !native {
        // Cross builds need the target's standard library and C libraries; say what is missing
        // rather than fail deep in a linker.
        cmd.args(["--target", arch.rust_target()]);
    }
    let out = cmd.output().map_err(|e| ImageError::Build(format!("running cargo: {e}")))?;
    if !out.status.success() {
        let hint = if native {
            String::new()
        } else {
            format!(
                " ({} images need `rustup target add {}` and that architecture's C libraries; only {host} builds here)",
                arch.name(),
                arch.rust_target()
            )
        };
        return Err(ImageError::Build(format!("cargo build -p {package} --bin {binary} failed{hint}")));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == binary)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| ImageError::Build(format!("cargo built no executable named {binary} in package {package}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(epoch: u64) -> Spec {
        // A small dynamically linked binary of the host (the test binary is tens of MB).
        Spec {
            binary: "/usr/bin/true".into(),
            name: "app".into(),
            arch: Arch::X86_64,
            epoch,
            files: vec![],
            exclude: vec![],
        }
    }

    #[test]
    fn one_binary_gives_one_digest_and_the_epoch_is_in_it() {
        let (a, b) = (build(&spec(0)).unwrap(), build(&spec(0)).unwrap());
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.layers[0].digest, b.layers[0].digest);
        let c = build(&spec(1_700_000_000)).unwrap();
        assert_ne!(a.digest(), c.digest(), "timestamps are part of the image");
        let config: serde_json::Value = serde_json::from_slice(&c.config.data).unwrap();
        assert_eq!(config["created"], "2023-11-14T22:13:20Z");
        assert_eq!(config["config"]["User"], "10001:10001");
        assert_eq!(config["architecture"], "amd64");
    }

    #[test]
    fn layers_are_sorted_with_numeric_owners_and_fixed_times() {
        let image = build(&spec(42)).unwrap();
        let tar = {
            let mut d = flate2::read::GzDecoder::new(image.layers[0].data.as_slice());
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut d, &mut v).unwrap();
            v
        };
        let mut a = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, u64, u64, u32)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                let path = e.path().unwrap().display().to_string().trim_end_matches('/').to_owned();
                (path, h.mtime().unwrap(), h.uid().unwrap(), h.mode().unwrap())
            })
            .collect();
        let paths: Vec<&String> = entries.iter().map(|e| &e.0).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted);
        assert!(entries.iter().all(|e| e.1 == 42));
        assert!(entries.iter().any(|e| e.0 == "var/lib/app" && e.2 == u64::from(UID)), "{paths:?}");
        assert!(entries.iter().any(|e| e.0 == "tmp" && e.3 == 0o1777));
        assert!(paths.iter().any(|p| p.as_str() == "etc/ssl/certs/ca-certificates.crt"));
        assert!(!paths.iter().any(|p| p.ends_with("/sh") || p.contains("apt") || p.contains("dpkg")));
        assert_eq!(&image.layers[0].data[4..8], &[0, 0, 0, 0], "gzip mtime is zero");
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
