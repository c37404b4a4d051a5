//! The FinOps site: a stack's cost breakdown as a static dashboard. The page's files (a
//! directory with `index.html`, and libraries such as the chart library) are given
//! content-hashed names under `assets/` and a long cache; the index names them, carries the
//! breakdown and the history of estimates inline, and is cached briefly, so a new estimate needs
//! only the index invalidated.

use super::model::Breakdown;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// How long browsers and CloudFront keep the hashed assets: a year (a new content is a new name).
pub const ASSET_CACHE: &str = "public, max-age=31536000, immutable";
/// How long they keep the index: a minute.
pub const INDEX_CACHE: &str = "public, max-age=60";

/// One file of the site, as it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct File {
    pub key: String,
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

/// The assembled site: the hashed assets, and the index still to receive its data.
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub assets: Vec<File>,
    template: String,
}

/// One estimate, kept per apply in the bucket's `history.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    pub at: String,
    pub monthly: f64,
    pub monthly_max: f64,
    pub hourly: f64,
}

impl Estimate {
    pub fn of(b: &Breakdown, at: &str) -> Self {
        Self { at: at.to_owned(), monthly: b.monthly, monthly_max: b.monthly_max, hourly: b.hourly }
    }
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next().unwrap_or_default() {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// `name.ext` as `assets/name.<first 12 hex of its SHA-256>.ext`.
fn hashed(name: &str, body: &[u8]) -> String {
    let hash = hex::encode(Sha256::digest(body));
    match name.rsplit_once('.') {
        Some((stem, ext)) => format!("assets/{stem}.{}.{ext}", &hash[..12]),
        None => format!("assets/{name}.{}", &hash[..12]),
    }
}

/// Text safe inside HTML (the stack's name in the title).
fn html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Reads the page from `dir` (its `index.html` and every other file there) and `libraries`, and
/// names each file by its content. The index refers to a file as `{{file name}}`; `{{stack}}` is
/// the stack's name and `{{data}}` is left for [`Site::index`]. Any other `{{...}}` is an error.
pub fn assemble(dir: &Path, libraries: &[PathBuf], stack: &str) -> Result<Site, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut template = String::from_utf8(read(&dir.join("index.html"))?).map_err(|e| format!("index.html: {e}"))?;
    let mut sources: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| n != "index.html"))
        .collect();
    sources.sort();
    sources.extend(libraries.iter().cloned());
    let mut assets = Vec::new();
    for path in sources {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let body = read(&path)?;
        let key = hashed(&name, &body);
        template = template.replace(&format!("{{{{{name}}}}}"), &format!("/{key}"));
        assets.push(File { key, body, content_type: content_type(&name) });
    }
    template = template.replace("{{stack}}", &html(stack));
    if let Some(i) = template.replace("{{data}}", "").find("{{") {
        let rest = &template.replace("{{data}}", "")[i..];
        let end = rest.find("}}").map_or(rest.len().min(40), |e| e + 2);
        return Err(format!(
            "index.html names `{}`, which is neither a file of the site nor {{{{stack}}}} or {{{{data}}}}",
            &rest[..end]
        ));
    }
    if !template.contains("{{data}}") {
        return Err("index.html has no {{data}} for the breakdown".into());
    }
    Ok(Site { assets, template })
}

impl Site {
    /// The index with `data` inline: JSON inside `<script type="application/json">`, with `<`,
    /// `>` and `&` escaped so no value can close the element.
    pub fn index(&self, data: &Value) -> Vec<u8> {
        let json = data.to_string().replace('<', "\\u003c").replace('>', "\\u003e").replace('&', "\\u0026");
        self.template.replace("{{data}}", &json).into_bytes()
    }

    /// What decides whether the published site is current: the files, the page and the
    /// breakdown (not the history, which grows with each publish).
    pub fn digest(&self, b: &Breakdown) -> String {
        let mut h = Sha256::new();
        for f in &self.assets {
            h.update(f.key.as_bytes());
        }
        h.update(self.template.as_bytes());
        h.update(serde_json::to_vec(b).unwrap_or_default());
        hex::encode(h.finalize())
    }
}

/// The data the page draws: the stack, when, the breakdown and every estimate so far.
pub fn data(stack: &str, b: &Breakdown, history: &[Estimate], generated: &str) -> Value {
    json!({ "stack": stack, "generated": generated, "breakdown": b, "history": history })
}

/// Writes the site for `b` into `out` (to look at it, or serve it in a test): the assets, and
/// `index.html` with `history`.
pub fn write(site: &Site, out: &Path, data: &Value) -> Result<(), String> {
    for f in &site.assets {
        let path = out.join(&f.key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, &f.body).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    std::fs::write(out.join("index.html"), site.index(data)).map_err(|e| format!("{}: {e}", out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(index: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), index).unwrap();
        std::fs::write(dir.path().join("app.js"), "console.log(1)").unwrap();
        let lib = dir.path().join("lib.js");
        std::fs::write(&lib, "var lib").unwrap();
        let site = dir.path().join("site");
        std::fs::create_dir(&site).unwrap();
        std::fs::rename(dir.path().join("index.html"), site.join("index.html")).unwrap();
        std::fs::rename(dir.path().join("app.js"), site.join("app.js")).unwrap();
        (dir, site)
    }

    #[test]
    fn files_get_content_names_and_the_index_names_them() {
        let (dir, site) = page("<title>{{stack}}</title><script src=\"{{app.js}}\"></script><script src=\"{{lib.js}}\"></script><script type=\"application/json\">{{data}}</script>");
        let s = assemble(&site, &[dir.path().join("lib.js")], "a<b").unwrap();
        let keys: Vec<&str> = s.assets.iter().map(|f| f.key.as_str()).collect();
        let app = hashed("app.js", b"console.log(1)");
        assert!(keys.contains(&app.as_str()) && app.starts_with("assets/app.") && app.ends_with(".js"), "{keys:?}");
        let index = String::from_utf8(s.index(&json!({"x": "</script><script>alert(1)</script>"}))).unwrap();
        assert!(index.contains(&format!("src=\"/{app}\"")), "{index}");
        assert!(index.contains("<title>a&lt;b</title>"));
        assert!(!index.contains("</script><script>alert"), "data cannot close its element: {index}");
        assert_eq!(s.assets.iter().find(|f| f.key == app).unwrap().content_type, "text/javascript; charset=utf-8");
        // Another content, another name; the same content, the same name.
        std::fs::write(site.join("app.js"), "console.log(2)").unwrap();
        let t = assemble(&site, &[dir.path().join("lib.js")], "a<b").unwrap();
        assert_ne!(t.assets, s.assets);
        assert_eq!(t.assets.iter().filter(|f| s.assets.contains(f)).count(), 1, "the library keeps its name");
    }

    #[test]
    fn a_name_that_is_no_file_is_an_error() {
        let (_dir, site) = page("<script src=\"{{chart.js}}\"></script>{{data}}");
        let e = assemble(&site, &[], "s").unwrap_err();
        assert!(e.contains("{{chart.js}}"), "{e}");
    }
}
