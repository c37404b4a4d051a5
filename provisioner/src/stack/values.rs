//! Typed values of a stack file: strings with `${var.NAME}` replaced (and `${kind.name.output}`
//! kept for the engine), and each field checked against its declared type.

use super::{Span, Val};
use crate::diag::{closest, Diags};
use crate::schema::{Field, FieldType};
use std::collections::BTreeMap;
use toml_edit::{Item, Value};

/// What reading values needs: the source (for spans), the variables, and the stack file's
/// folder (files it names are relative to it).
pub(super) struct Ctx<'a> {
    pub(super) src: &'a str,
    pub(super) vars: &'a BTreeMap<String, String>,
    pub(super) dir: &'a std::path::Path,
}

impl Ctx<'_> {
    /// Replaces `${var.NAME}`; an undefined name is reported at the value (and gives `None`).
    pub(super) fn subst(&self, s: &str, span: Span, d: &mut Diags) -> Option<String> {
        let before = d.items.len();
        let out = self.subst_inner(s, span, false, None, d);
        (d.items.len() == before).then_some(out)
    }

    /// As [`Ctx::subst`], keeping `${kind.name.output}` for the engine to fill in (checked once
    /// every resource is read).
    pub(super) fn subst_refs(&self, s: &str, span: Span, d: &mut Diags) -> Option<String> {
        let before = d.items.len();
        let out = self.subst_inner(s, span, true, None, d);
        (d.items.len() == before).then_some(out)
    }

    /// A text file (a host's user data) as a template: `${var.NAME}` and `${kind.name.output}`
    /// as in the stack file. Any other `${...}` is an error at its line of the file, so a shell
    /// `${X}` never passes silently: the file writes `$X`.
    fn subst_file(&self, text: &str, file: &std::path::Path, span: Span, d: &mut Diags) -> Option<String> {
        let before = d.items.len();
        let out = self.subst_inner(text, span, true, Some(file), d);
        (d.items.len() == before).then_some(out)
    }

    fn subst_inner(&self, s: &str, span: Span, refs: bool, file: Option<&std::path::Path>, d: &mut Diags) -> String {
        let mut out = String::new();
        let mut rest = s;
        // Where in a template file an error is: `path:line: `.
        let at = |rest: &str| match file {
            Some(f) => format!("{}:{}: ", f.display(), s[..s.len() - rest.len()].matches('\n').count() + 1),
            None => String::new(),
        };
        while let Some(i) = rest.find("${") {
            out.push_str(&rest[..i]);
            let here = at(&rest[i..]);
            let after = &rest[i + 2..];
            let Some(end) = after.find('}') else {
                d.error(
                    "bad-variable",
                    span.clone(),
                    format!("{here}`${{` without a closing `}}`"),
                    Some("write ${var.NAME}".into()),
                );
                return out;
            };
            let expr = &after[..end];
            match expr.strip_prefix("var.") {
                Some(name) => match self.vars.get(name) {
                    Some(v) => out.push_str(v),
                    None => d.error(
                        "undefined-variable",
                        span.clone(),
                        format!("{here}variable `{name}` is not defined"),
                        closest(name, self.vars.keys().map(String::as_str)).or(Some(format!(
                            "define it under [variables], or pass --var {name}=VALUE (or PROVISIONER_VAR_{name})"
                        ))),
                    ),
                },
                None if refs && crate::schema::output_ref(expr).is_some() => {
                    out.push_str("${");
                    out.push_str(expr);
                    out.push('}');
                }
                None if refs && file.is_some() => d.error(
                    "bad-variable",
                    span.clone(),
                    format!("{here}`${{{expr}}}` is neither a variable nor another resource's output"),
                    Some(format!(
                        "the file is a template: write ${{var.NAME}} or ${{kind.name.output}}; a shell variable as `${}`",
                        expr.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').next().unwrap_or("NAME")
                    )),
                ),
                None if refs => d.error(
                    "bad-variable",
                    span.clone(),
                    format!("`${{{expr}}}` is neither a variable nor another resource's output"),
                    Some("write ${var.NAME} or ${kind.name.output}".into()),
                ),
                None => d.error(
                    "bad-variable",
                    span.clone(),
                    format!("`${{{expr}}}` is not a variable"),
                    Some("write ${var.NAME}".into()),
                ),
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        out
    }

    /// The fields of a table declared by `spec`, and by `common` (for a resource: [`COMMON`]).
    pub(super) fn fields(
        &self,
        spec: &'static [Field],
        common: &'static [Field],
        t: &dyn toml_edit::TableLike,
        path: &str,
        whole: Span,
        d: &mut Diags,
    ) -> BTreeMap<String, (Val, Span)> {
        let mut out = BTreeMap::new();
        for (k, v) in t.iter() {
            let span = item_span(v, self.src);
            let kspan = key_span(t.get_key_value(k).map(|(k, _)| k), self.src).unwrap_or(span.clone());
            let Some(f) = spec.iter().chain(common).find(|f| f.name == k) else {
                let names = || spec.iter().chain(common).map(|f| f.name);
                d.error(
                    "unknown-field",
                    kspan,
                    format!("unknown field `{k}` in {path}"),
                    closest(k, names()).or(Some(format!("fields: {}", names().collect::<Vec<_>>().join(", ")))),
                );
                continue;
            };
            if f.derived {
                d.error(
                    "derived-field",
                    kspan,
                    format!("{path}.{k} is computed by the provisioner, not written: {}", f.doc),
                    Some(format!("remove `{k}`; other resources read it as `${{{path}.{k}}}`")),
                );
                continue;
            }
            let val = self.value(&f.ty, v, &format!("{path}.{k}"), d).unwrap_or(Val::Invalid);
            out.insert(k.to_owned(), (val, span));
        }
        for f in spec.iter().filter(|f| f.required) {
            if !out.contains_key(f.name) && t.get(f.name).is_none() {
                d.error(
                    "missing-field",
                    whole.clone(),
                    format!("{path} needs `{}` ({})", f.name, f.ty.describe()),
                    Some(format!("{}: {}", f.name, f.doc)),
                );
            }
        }
        out
    }

    fn value(&self, ty: &FieldType, item: &Item, path: &str, d: &mut Diags) -> Option<Val> {
        let span = item_span(item, self.src);
        let wrong = |d: &mut Diags| {
            d.error("wrong-type", span.clone(), format!("{path} must be {}", ty.describe()), None);
            None
        };
        match ty {
            FieldType::Table(fields) => match item.as_table_like() {
                Some(t) => Some(Val::Table(self.fields(fields, &[], t, path, span.clone(), d))),
                None => wrong(d),
            },
            FieldType::StringMap => match item.as_table_like() {
                Some(t) => {
                    let mut m = BTreeMap::new();
                    for (k, v) in t.iter() {
                        match v.as_value().and_then(Value::as_str) {
                            Some(s) => {
                                let sp = item_span(v, self.src);
                                let v = self.subst_refs(s, sp.clone(), d).map_or(Val::Invalid, Val::Str);
                                m.insert(k.to_owned(), (v, sp));
                            }
                            None => {
                                d.error(
                                    "wrong-type",
                                    item_span(v, self.src),
                                    format!("{path}.{k} must be a string"),
                                    None,
                                );
                            }
                        }
                    }
                    Some(Val::Table(m))
                }
                None => wrong(d),
            },
            FieldType::List(inner) => match item.as_value().and_then(Value::as_array) {
                Some(a) => {
                    let mut items = Vec::new();
                    for (i, v) in a.iter().enumerate() {
                        let it = Item::Value(v.clone());
                        let sp = v.span().unwrap_or(span.clone());
                        if let Some(val) = self.value_at(inner, &it, sp.clone(), &format!("{path}[{i}]"), d) {
                            items.push((val, sp));
                        }
                    }
                    Some(Val::List(items))
                }
                None => match item.as_array_of_tables() {
                    Some(aot) if matches!(inner, FieldType::Table(_)) => {
                        let FieldType::Table(fields) = inner else { return None };
                        let mut items = Vec::new();
                        for (i, t) in aot.iter().enumerate() {
                            let sp = t.span().unwrap_or(span.clone());
                            items.push((
                                Val::Table(self.fields(fields, &[], t, &format!("{path}[{i}]"), sp.clone(), d)),
                                sp,
                            ));
                        }
                        Some(Val::List(items))
                    }
                    _ => wrong(d),
                },
            },
            _ => self.value_at(ty, item, span, path, d),
        }
    }

    /// Scalars (and tables inside arrays, whose span comes from the array element).
    fn value_at(&self, ty: &FieldType, item: &Item, span: Span, path: &str, d: &mut Diags) -> Option<Val> {
        let wrong = |d: &mut Diags, extra: Option<String>| {
            d.error("wrong-type", span.clone(), format!("{path} must be {}", ty.describe()), extra);
            None
        };
        let v = item.as_value();
        // A whole integer, choice or switch from a variable ("${var.limit}"): the variable's text, checked
        // like a literal. A variable that is not defined was reported by `subst`.
        let from_var = match (ty, v.and_then(Value::as_str)) {
            (FieldType::Int { .. } | FieldType::Enum(_) | FieldType::Bool, Some(s)) if s.starts_with("${var.") => {
                Some(self.subst(s, span.clone(), d)?)
            }
            _ => None,
        };
        match ty {
            FieldType::String => match v.and_then(Value::as_str) {
                Some(s) => Some(self.subst_refs(s, span.clone(), d).map_or(Val::Invalid, Val::Str)),
                None => wrong(d, None),
            },
            FieldType::JsonFile | FieldType::TextFile => match v.and_then(Value::as_str) {
                Some(s) => {
                    let rel = self.subst(s, span.clone(), d)?;
                    let file = self.dir.join(&rel);
                    let text = match std::fs::read_to_string(&file) {
                        Ok(t) => t,
                        Err(e) => {
                            d.error(
                                "bad-file",
                                span.clone(),
                                format!("{path} = \"{rel}\": cannot read {}: {e}", file.display()),
                                Some("the path is relative to the stack file".into()),
                            );
                            return None;
                        }
                    };
                    if matches!(ty, FieldType::TextFile) {
                        return self.subst_file(&text, std::path::Path::new(&rel), span, d).map(Val::Str);
                    }
                    match serde_json::from_str(&text) {
                        Ok(j) => Some(Val::Json(j)),
                        Err(e) => {
                            d.error(
                                "bad-file",
                                span.clone(),
                                format!("{path} = \"{rel}\": {} is not JSON: {e}", file.display()),
                                Some(format!("fix {} at line {}, column {}", file.display(), e.line(), e.column())),
                            );
                            None
                        }
                    }
                }
                None => wrong(d, None),
            },
            FieldType::Bool => match v.and_then(Value::as_bool).or_else(|| match from_var.as_deref().map(str::trim) {
                Some("true") => Some(true),
                Some("false") => Some(false),
                _ => None,
            }) {
                Some(b) => Some(Val::Bool(b)),
                None => wrong(d, Some("write true or false, without quotes".into())),
            },
            FieldType::Int { min, max } => match v
                .and_then(Value::as_integer)
                .or_else(|| from_var.as_deref().and_then(|x| x.trim().parse::<i64>().ok()))
            {
                Some(i) if (*min..=*max).contains(&i) => Some(Val::Int(i)),
                Some(i) => {
                    d.error("out-of-range", span.clone(), format!("{path} = {i} is outside {min}..={max}"), None);
                    None
                }
                None => wrong(d, None),
            },
            FieldType::Cidr => match v.and_then(Value::as_str) {
                Some(s) => {
                    let s = self.subst(s, span.clone(), d)?;
                    match s.parse::<ipnet::Ipv4Net>() {
                        Ok(n) if n.trunc() == n => Some(Val::Str(s)),
                        Ok(n) => {
                            d.error(
                                "bad-cidr",
                                span.clone(),
                                format!("{path} = \"{s}\" has host bits set"),
                                Some(format!("did you mean \"{}\"?", n.trunc())),
                            );
                            None
                        }
                        Err(_) => {
                            d.error(
                                "bad-cidr",
                                span.clone(),
                                format!("{path} = \"{s}\" is not an IPv4 CIDR"),
                                Some("write it like \"10.0.1.0/24\"".into()),
                            );
                            None
                        }
                    }
                }
                None => wrong(d, None),
            },
            FieldType::Enum(options) => match from_var.or_else(|| v.and_then(Value::as_str).map(str::to_owned)) {
                Some(s) if options.contains(&s.as_str()) => Some(Val::Str(s)),
                Some(s) => {
                    d.error(
                        "bad-value",
                        span.clone(),
                        format!("{path} = \"{s}\" is not {}", ty.describe()),
                        closest(&s, options.iter().copied()),
                    );
                    None
                }
                None => wrong(d, None),
            },
            FieldType::Ref(_) | FieldType::Peer(_) => match v.and_then(Value::as_str) {
                Some(s) => Some(Val::Str(s.to_owned())),
                None => wrong(d, Some("a reference is a string: vpc = \"vpc.main\"".into())),
            },
            FieldType::Table(fields) => match item
                .as_table_like()
                .or_else(|| v.and_then(Value::as_inline_table).map(|t| t as &dyn toml_edit::TableLike))
            {
                Some(t) => Some(Val::Table(self.fields(fields, &[], t, path, span.clone(), d))),
                None => wrong(d, None),
            },
            FieldType::List(_) | FieldType::StringMap => self.value(ty, item, path, d),
        }
    }
}

/// Where an item is in the source (the file's first character when TOML gives no span).
pub(super) fn item_span(item: &Item, src: &str) -> Span {
    let s = match item {
        Item::Value(v) => v.span(),
        Item::Table(t) => t.span(),
        Item::ArrayOfTables(a) => a.span(),
        Item::None => None,
    };
    s.unwrap_or(0..src.len().min(1))
}

/// Where a key is in the source.
pub(super) fn key_span(key: Option<&toml_edit::Key>, _src: &str) -> Option<Span> {
    key.and_then(toml_edit::Key::span)
}
