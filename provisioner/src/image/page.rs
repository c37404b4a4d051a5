//! What a web page in an image loads: the local files `index.html` names (scripts, styles) and
//! those its JavaScript modules import, followed transitively, so a stack whose image would
//! leave one out is refused before anything is built or pushed.
//!
//! A scanner, not a parser: it reads `src="…"`/`href="…"` of `<script>` and `<link>` tags and the
//! string after `import … from`, `import '…'` and `import('…')`. A commented-out import is
//! reported too; that errs on the safe side (a file the page might load is required).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// A file a page loads that the image would not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The file of the image that asks for it.
    pub from: String,
    /// What it asks for: a path in the image.
    pub wanted: String,
}

/// Whether a directory entry is left out of an image: hidden names, and names in `exclude`, at
/// any depth below the directory taken whole.
pub fn excluded(rel: &Path, exclude: &[String]) -> bool {
    rel.components().any(|c| match c {
        Component::Normal(n) => {
            let n = n.to_string_lossy();
            n.starts_with('.') || exclude.iter().any(|x| *x == n)
        }
        _ => false,
    })
}

/// The files that the image's pages (every `index.html` in `image`, a [`super::listing`]) load and the
/// image does not hold, followed through the modules that are there.
pub fn missing(image: &BTreeMap<String, PathBuf>) -> Vec<Missing> {
    let mut out = Vec::new();
    for index in image.keys().filter(|p| p.ends_with("/index.html")) {
        let root = index.trim_end_matches("index.html");
        let mut seen = BTreeSet::new();
        let mut todo = vec![index.clone()];
        while let Some(at) = todo.pop() {
            if !seen.insert(at.clone()) {
                continue;
            }
            let Some(Ok(text)) = image.get(&at).map(std::fs::read_to_string) else { continue };
            let refs = if at.ends_with(".html") { html_refs(&text) } else { module_refs(&text) };
            let base = Path::new(&at[root.len()..]).parent().unwrap_or(Path::new("")).to_owned();
            for r in refs {
                let Some(rel) = resolve(&base, &r) else { continue };
                let wanted = format!("{root}{}", slash(&rel));
                if !image.contains_key(&wanted) {
                    out.push(Missing { from: at.clone(), wanted });
                } else if wanted.ends_with(".js") || wanted.ends_with(".mjs") {
                    todo.push(wanted);
                }
            }
        }
    }
    out.sort_by(|a, b| (&a.from, &a.wanted).cmp(&(&b.from, &b.wanted)));
    out.dedup();
    out
}

fn slash(p: &Path) -> String {
    p.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// A reference made relative to the page's directory; `None` for what is not a local file
/// (another origin, a data URL, a fragment) or climbs out of the page's directory.
fn resolve(base: &Path, r: &str) -> Option<PathBuf> {
    let r = r.split(['?', '#']).next()?.trim();
    if r.is_empty() || r.starts_with("//") || r.starts_with('/') || r.contains(':') {
        return None;
    }
    let mut out = PathBuf::new();
    for c in base.join(r).components() {
        match c {
            Component::Normal(n) => out.push(n),
            // Above the page's directory: not a file of it.
            Component::ParentDir if !out.pop() => return None,
            _ => {}
        }
    }
    Some(out)
}

/// `src` and `href` of `<script>` and `<link rel="stylesheet"|"modulepreload"|…>` tags.
fn html_refs(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = lower[at..].find('<') {
        let start = at + i + 1;
        let end = lower[start..].find('>').map_or(lower.len(), |j| start + j);
        let tag = &lower[start..end];
        let original = &html[start..end];
        let name = tag.split(|c: char| c.is_whitespace()).next().unwrap_or("");
        let attr = match name {
            "script" => Some("src"),
            // Links to pages (`<a href>`) are not loaded with the page; `<link>` is (except
            // for hints that fetch nothing by themselves, which are rare and harmless to check).
            "link" => Some("href"),
            _ => None,
        };
        if let Some(a) = attr {
            if let Some(v) = attribute(tag, original, a) {
                out.push(v);
            }
        }
        at = end;
    }
    out
}

/// The value of attribute `name` in a tag (found in its lowercase copy, read from the original).
fn attribute(lower: &str, original: &str, name: &str) -> Option<String> {
    let mut at = 0;
    while let Some(i) = lower[at..].find(name) {
        let p = at + i;
        at = p + name.len();
        let before_ok = p == 0 || lower.as_bytes()[p - 1].is_ascii_whitespace();
        let rest = lower[at..].trim_start();
        if !before_ok || !rest.starts_with('=') {
            continue;
        }
        let value_at = lower.len() - rest.len() + 1;
        let v = original[value_at..].trim_start();
        return Some(match v.chars().next() {
            Some(q @ ('"' | '\'')) => v[1..].split(q).next().unwrap_or("").to_owned(),
            _ => v.split(|c: char| c.is_whitespace()).next().unwrap_or("").to_owned(),
        });
    }
    None
}

/// The specifiers of a module's static and dynamic imports (and re-exports) given as string
/// literals.
fn module_refs(js: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = js.as_bytes();
    let word = |i: usize, w: &str| {
        js[i..].starts_with(w)
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b'.'))
            && js[i + w.len()..].chars().next().is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
    };
    for i in (0..bytes.len()).filter(|&i| js.is_char_boundary(i)) {
        let after = if word(i, "from") {
            i + 4
        } else if word(i, "import") {
            let rest = js[i + 6..].trim_start();
            // `import('x')` or `import 'x'`; `import { a } from 'x'` is found at its `from`.
            let skip = js.len() - rest.len();
            if rest.starts_with('(') {
                skip + 1
            } else {
                skip
            }
        } else {
            continue;
        };
        let rest = js[after..].trim_start();
        if let Some(q @ ('"' | '\'' | '`')) = rest.chars().next() {
            if let Some(s) = rest[1..].split(q).next() {
                if !s.contains("${") && !s.contains('\n') {
                    out.push(s.to_owned());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (p, text) in files {
            let path = d.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        d
    }

    #[test]
    fn html_and_module_references_are_followed() {
        let html = r#"<!doctype html><html><head><LINK rel="stylesheet" href="vendor/a.css">
            <link rel=stylesheet href=style.css?v=2></head><body><a href="elsewhere.html">x</a>
            <script src="https://cdn.example/x.js"></script><script src='vendor/lib.js'></script>
            <script type="module" src="app.js"></script></body></html>"#;
        assert_eq!(
            html_refs(html),
            ["vendor/a.css", "style.css?v=2", "https://cdn.example/x.js", "vendor/lib.js", "app.js"]
        );
        let js = "import { A } from './a.js';\nimport * as B from \"./sub/b.js\";\nimport './side.js';\n\
                  export { C } from './c.js';\nconst m = await import('./lazy.js');\nconst important = 1; reimport('x');\n\
                  const imported = `${x}`; import(`./t${n}.js`);";
        assert_eq!(module_refs(js), ["./a.js", "./sub/b.js", "./side.js", "./c.js", "./lazy.js"]);
        // Any text, any bytes: never a panic.
        let odd = "// – ünïcödé – import ‘x’ from “y”\nimport { a } from './ä.js'; from\nimport\n<script src=\"é\"";
        assert_eq!(module_refs(odd), ["./ä.js"]);
        assert_eq!(html_refs(odd), ["é"]);
        for cut in 0..odd.len() {
            if odd.is_char_boundary(cut) {
                let _ = (module_refs(&odd[..cut]), html_refs(&odd[..cut]));
            }
        }
    }

    #[test]
    fn a_page_missing_a_module_names_it_and_who_imports_it() {
        let d = page(&[
            ("index.html", r#"<link href="style.css" rel="stylesheet"><script type="module" src="app.js"></script>"#),
            ("style.css", ""),
            ("app.js", "import { x } from './lib/x.js';\nimport './gone.js';"),
            ("lib/x.js", "export { y } from '../node_modules/y.js';\nexport const x = 1;"),
            ("node_modules/y.js", ""),
            (".hidden.js", ""),
        ]);
        let whole = super::super::listing(&[("/web".into(), d.path().to_owned())], &["node_modules".into()]).unwrap();
        assert_eq!(
            whole.keys().collect::<Vec<_>>(),
            ["/web/app.js", "/web/index.html", "/web/lib/x.js", "/web/style.css"]
        );
        assert_eq!(
            missing(&whole),
            [
                Missing { from: "/web/app.js".into(), wanted: "/web/gone.js".into() },
                Missing { from: "/web/lib/x.js".into(), wanted: "/web/node_modules/y.js".into() },
            ]
        );
        // Files listed one by one: what the list forgets is named.
        let by_hand = super::super::listing(
            &[("/web/index.html".into(), d.path().join("index.html")), ("/web/app.js".into(), d.path().join("app.js"))],
            &[],
        )
        .unwrap();
        let wanted: Vec<String> = missing(&by_hand).into_iter().map(|m| m.wanted).collect();
        assert_eq!(wanted, ["/web/gone.js", "/web/lib/x.js", "/web/style.css"]);
        assert!(
            missing(&super::super::listing(&[("/x".into(), d.path().join("lib"))], &[]).unwrap()).is_empty(),
            "no index.html: no page"
        );
    }

    #[test]
    fn references_out_of_the_page_or_to_other_origins_are_not_files_of_it() {
        assert_eq!(resolve(Path::new(""), "../x.js"), None);
        assert_eq!(resolve(Path::new("a"), "../x.js"), Some(PathBuf::from("x.js")));
        assert_eq!(resolve(Path::new(""), "data:text/css,"), None);
        assert_eq!(resolve(Path::new(""), "/abs.js"), None);
        assert_eq!(resolve(Path::new(""), "#top"), None);
        assert!(excluded(Path::new("node_modules/a/b.js"), &["node_modules".into()]));
        assert!(excluded(Path::new("a/.git/x"), &[]));
        assert!(!excluded(Path::new("vendor/a.js"), &["node_modules".into()]));
    }
}
