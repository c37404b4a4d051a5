//! The provisioner's module structure: the drawing of which file uses which (every `use` and
//! every `crate::`, `super::`, `self::` path and path into a child module, resolved to the file
//! that defines the module) has no circle across modules but the declaration-instance pair
//! `schema.rs` <-> `stack/` (a kind's declaration checks a resource of the stack; a resource
//! names its kind). Inside a module of several files, its `mod.rs` and its files may use each
//! other (it re-exports them, they use its types), but its files among themselves
//! (`stack/load.rs`, `stack/values.rs`) may not. Anyone can draw it: `cargo test -p provisioner
//! --test structure -- --nocapture` prints the circles it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The modules allowed to use each other, and why (see the file's doc).
const ALLOWED: &[&[&str]] = &[&["schema.rs", "stack/"]];

#[test]
fn no_import_circle_but_the_declaration_instance_pair() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = read(&src, &src);
    let edges: BTreeMap<&str, BTreeSet<&str>> =
        files.iter().map(|(f, text)| (f.as_str(), uses(f, text, &files).into_iter().collect())).collect();
    assert!(
        edges["engine/exec.rs"].contains("walk.rs")
            && edges["stack/load.rs"].contains("stack/values.rs")
            && edges["provider/mod.rs"].contains("provider/typed.rs"),
        "{edges:?}"
    );
    let found = circles(&edges, &files);
    for c in &found {
        eprintln!("circle: {}", c.join(" -> "));
    }
    let allowed: Vec<Vec<String>> = ALLOWED.iter().map(|c| c.iter().map(|s| (*s).to_owned()).collect()).collect();
    let unwanted: Vec<&Vec<String>> = found.iter().filter(|c| !allowed.contains(c)).collect();
    assert!(unwanted.is_empty(), "import circles: {unwanted:?}");
}

/// The module a file belongs to: its directory (`stack/`) when that holds a `mod.rs`, else the
/// file itself.
fn unit(file: &str, files: &BTreeMap<String, String>) -> String {
    match file.rsplit_once('/') {
        Some((dir, _)) if files.contains_key(&format!("{dir}/mod.rs")) => format!("{dir}/"),
        _ => file.to_owned(),
    }
}

/// The circles that matter: each circle of files that spans modules, as its modules, and each
/// circle among one module's own files (its `mod.rs` aside).
fn circles(edges: &BTreeMap<&str, BTreeSet<&str>>, files: &BTreeMap<String, String>) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for c in strongly_connected(edges) {
        let modules: BTreeSet<String> = c.iter().map(|f| unit(f, files)).collect();
        if modules.len() > 1 {
            out.push(modules.into_iter().collect());
        }
    }
    let siblings: BTreeMap<&str, BTreeSet<&str>> = edges
        .iter()
        .filter(|(f, _)| !f.ends_with("mod.rs"))
        .map(|(f, tos)| {
            let same = tos.iter().filter(|t| !t.ends_with("mod.rs") && unit(t, files) == unit(f, files));
            (*f, same.copied().collect())
        })
        .collect();
    out.extend(strongly_connected(&siblings).into_iter().map(|c| c.into_iter().map(str::to_owned).collect()));
    out
}

/// The analysis itself, on a small crate: a circle through `super::`, one through `crate::`,
/// an inline test module's `super::` (its own file), and a comment, none of which may be missed
/// or invented.
#[test]
fn the_drawing_sees_what_it_should() {
    let files: BTreeMap<String, String> = [
        ("lib.rs", "mod a; mod b; mod c;"),
        ("a/mod.rs", "mod x;\nuse crate::b::Thing;\n// crate::c::Nothing\n"),
        ("a/x.rs", "use super::Y; fn f() { crate::c::go() }\n"),
        ("b.rs", "pub struct Thing; use crate::a::x::Z;\n#[cfg(test)]\nmod tests { use super::*; }\n"),
        ("c.rs", "pub fn go() {}\nmod inner { use super::go; }\n"),
    ]
    .into_iter()
    .map(|(f, t)| (f.to_owned(), t.to_owned()))
    .collect();
    let edges: BTreeMap<&str, BTreeSet<&str>> =
        files.iter().map(|(f, text)| (f.as_str(), uses(f, text, &files).into_iter().collect())).collect();
    assert_eq!(edges["a/mod.rs"], ["b.rs"].into());
    assert_eq!(edges["a/x.rs"], ["a/mod.rs", "c.rs"].into());
    assert_eq!(edges["b.rs"], ["a/x.rs"].into(), "a test module's super is its own file");
    assert!(edges["c.rs"].is_empty());
    assert_eq!(strongly_connected(&edges), vec![vec!["a/mod.rs", "a/x.rs", "b.rs"]]);
    assert_eq!(circles(&edges, &files), vec![vec!["a/".to_owned(), "b.rs".to_owned()]], "as modules");
}

/// A `mod.rs` and its files using each other is no circle; its files using each other in one
/// is, and so is a circle across modules that passes through a path into a child module
/// (`pub use x::Y` in a `mod.rs`).
#[test]
fn a_module_and_its_files_may_use_each_other_but_not_its_files_in_a_circle() {
    let files: BTreeMap<String, String> = [
        ("lib.rs", "mod p; mod q; mod r;"),
        ("p/mod.rs", "mod x; mod y; pub use x::X;\npub struct T;"),
        ("p/x.rs", "use super::T; use super::y::Y;"),
        ("p/y.rs", "use crate::p::x::X;"),
        ("q/mod.rs", "mod z; pub use z::Z;"),
        ("q/z.rs", "use crate::r::R;"),
        ("r.rs", "use crate::q::Q;"),
    ]
    .into_iter()
    .map(|(f, t)| (f.to_owned(), t.to_owned()))
    .collect();
    let edges: BTreeMap<&str, BTreeSet<&str>> =
        files.iter().map(|(f, text)| (f.as_str(), uses(f, text, &files).into_iter().collect())).collect();
    assert_eq!(edges["p/mod.rs"], ["p/x.rs"].into(), "a path into a child module is seen");
    let mut found = circles(&edges, &files);
    found.sort();
    assert_eq!(found, vec![vec!["p/x.rs".to_owned(), "p/y.rs".to_owned()], vec!["q/".to_owned(), "r.rs".to_owned()]]);
}

/// Every `.rs` file under `dir`, by path relative to `root` (`/`-separated).
fn read(dir: &Path, root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(read(&p, root));
        } else if p.extension().is_some_and(|x| x == "rs") {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
            out.insert(rel, std::fs::read_to_string(&p).unwrap());
        }
    }
    out
}

/// The module path of a file (`stack/mod.rs` -> `["stack"]`, `lib.rs` -> `[]`).
fn module_of(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file.trim_end_matches(".rs").split('/').map(str::to_owned).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// The file that defines the longest prefix of `path` that is a module.
fn file_of<'a>(path: &[String], files: &'a BTreeMap<String, String>) -> Option<&'a str> {
    let mut best = files.get_key_value("lib.rs").map(|(k, _)| k.as_str());
    for i in 1..=path.len() {
        let base = path[..i].join("/");
        match [format!("{base}.rs"), format!("{base}/mod.rs")].iter().find_map(|c| files.get_key_value(c.as_str())) {
            Some((k, _)) => best = Some(k.as_str()),
            None => break,
        }
    }
    best
}

/// Comments and string literals blanked (keeping offsets), so a path in either is not a use.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(' ');
                i += 1;
            }
        } else if b[i] == b'"' {
            out.push('"');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(if b[i] == b'\n' { '\n' } else { ' ' });
                    i += 1;
                }
            }
            out.push('"');
            i += 1;
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(if ch.is_ascii() { ch } else { ' ' });
            i += ch.len_utf8();
        }
    }
    out
}

/// How many inline `mod name { ... }` blocks enclose each byte offset.
fn inline_depths(code: &str) -> Vec<usize> {
    let b = code.as_bytes();
    let mut depth = vec![0; b.len() + 1];
    let mut open: Vec<bool> = Vec::new(); // each open brace: whether it opened an inline module
    let (mut pending_mod, mut inline) = (false, 0);
    for i in 0..b.len() {
        if code[i..].starts_with("mod ") && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')) {
            // `mod name {` opens an inline module; `mod name;` declares a file.
            let rest = &code[i + 4..];
            let name_end = rest.find(|c: char| !c.is_alphanumeric() && c != '_').unwrap_or(rest.len());
            pending_mod = rest[name_end..].trim_start().starts_with('{');
        }
        match b[i] {
            b'{' => {
                open.push(pending_mod);
                inline += usize::from(pending_mod);
                pending_mod = false;
            }
            b'}' => inline -= usize::from(open.pop().unwrap_or(false)),
            _ => {}
        }
        depth[i] = inline;
    }
    depth
}

/// The files `file` uses.
fn uses<'a>(file: &str, text: &str, files: &'a BTreeMap<String, String>) -> BTreeSet<&'a str> {
    let code = code_only(text);
    let depth = inline_depths(&code);
    let me = module_of(file);
    let mut paths: Vec<(usize, Vec<String>)> = Vec::new();
    // `use` trees, braces expanded.
    let mut from = 0;
    while let Some(at) = code[from..].find("use ") {
        let at = from + at;
        from = at + 4;
        if at > 0 && (code.as_bytes()[at - 1].is_ascii_alphanumeric() || code.as_bytes()[at - 1] == b'_') {
            continue;
        }
        let Some(end) = code[at..].find(';') else { break };
        let tree: String = code[at + 4..at + end].split_whitespace().collect::<Vec<_>>().join(" ");
        for p in expand(&tree) {
            paths.push((at, p));
        }
    }
    // Paths in code: `crate::a::b`, `super::x`, `self::y`.
    for start in ["crate::", "super::", "self::"] {
        for (at, _) in code.match_indices(start) {
            if at > 0 && (code.as_bytes()[at - 1].is_ascii_alphanumeric() || code.as_bytes()[at - 1] == b'_') {
                continue;
            }
            let end = code[at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| at + e);
            let segs: Vec<String> = code[at..end].split("::").filter(|s| !s.is_empty()).map(str::to_owned).collect();
            paths.push((at, segs));
        }
    }
    let mut out = BTreeSet::new();
    for (at, p) in paths {
        let Some(first) = p.first() else { continue };
        let (mut base, mut rest) = match first.as_str() {
            "crate" => (Vec::new(), &p[1..]),
            "super" | "self" => (me.clone(), &p[..]),
            // A path into a child module (`pub use typed::Typed;` in a `mod.rs`).
            child if depth[at] == 0 && file_of(&[&me[..], &[child.to_owned()]].concat(), files).is_some() => {
                (me.clone(), &p[..])
            }
            _ => continue,
        };
        // Inside an inline module, its own `super` is this file.
        let mut inline = depth[at];
        while let Some(s) = rest.first() {
            match s.as_str() {
                "self" => rest = &rest[1..],
                "super" if inline > 0 => {
                    inline -= 1;
                    rest = &rest[1..];
                }
                "super" => {
                    base.pop();
                    rest = &rest[1..];
                }
                _ => break,
            }
        }
        base.extend(rest.iter().cloned());
        if let Some(f) = file_of(&base, files) {
            if f != file {
                out.insert(f);
            }
        }
    }
    out
}

/// A `use` tree (`a::{b, c::{d, e}}`, `x as y`, `z::*`) as its paths.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let path = tree.split(" as ").next().unwrap_or(tree);
        return vec![path
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty() && *s != "*")
            .map(str::to_owned)
            .collect()];
    };
    let head: Vec<String> =
        tree[..open].split("::").map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut level, mut cur) = (0, String::new());
    for c in inner.chars() {
        match c {
            '{' => level += 1,
            '}' => level -= 1,
            _ => {}
        }
        if c == ',' && level == 0 {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
        .iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| expand(p))
        .map(|mut p| {
            if p.first().is_some_and(|s| s == "self") {
                p.remove(0);
            }
            head.iter().cloned().chain(p).collect()
        })
        .collect()
}

/// The circles of the drawing: its strongly connected parts of more than one file (Tarjan),
/// each sorted, in a stable order.
fn strongly_connected<'a>(edges: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Vec<Vec<&'a str>> {
    struct T<'a, 'e> {
        edges: &'e BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(t: &mut T<'a, '_>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        for &w in t.edges.get(v).into_iter().flatten() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut part = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                part.push(w);
                if w == v {
                    break;
                }
            }
            if part.len() > 1 {
                part.sort();
                t.out.push(part);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for &v in edges.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out.sort();
    t.out
}
