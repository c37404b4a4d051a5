//! IAM: roles and instance profiles, and what they share: the client, IAM's error codes, and policy documents in one
//! canonical form. IAM is global: its kinds are read once, in the stack's region, and cannot be
//! listed by tag, so the stack's roles live under the path `/<stack>/`.

use crate::error::Codes;
use crate::provider::Cx;
use serde_json::Value;

pub mod iam_instance_profile;
pub mod iam_role;

super::kinds!(iam_role, iam_instance_profile);

/// The IAM client.
pub fn iam(cx: &Cx) -> aws_sdk_iam::Client {
    cx.client::<aws_sdk_iam::Client>()
}

struct IamCodes;

impl Codes for IamCodes {
    fn not_found(&self, code: &str) -> bool {
        code == "NoSuchEntity"
    }

    /// Changes to one entity arriving too close together.
    fn retryable(&self, code: &str) -> bool {
        code == "ConcurrentModification"
    }
}

super::service!(aws_sdk_iam::Client, IamCodes);

/// The path every role of the stack lives under.
pub fn path(cx: &Cx) -> String {
    format!("/{}/", cx.stack)
}

/// A policy document as IAM returns it: URL-encoded JSON.
pub fn decode(doc: &str) -> Value {
    let text = percent_encoding::percent_decode_str(doc).decode_utf8_lossy();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// A string or a list of strings (IAM accepts both wherever one value may be many), as a
/// sorted list without repeats.
pub fn strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    out.sort();
    out.dedup();
    out
}

/// A document's statements: one object or a list of them.
pub fn statements(doc: &Value) -> Vec<&Value> {
    match &doc["Statement"] {
        Value::Array(a) => a.iter().collect(),
        s @ Value::Object(_) => vec![s],
        _ => Vec::new(),
    }
}

/// Checks that `<stack>-<name>`, the name IAM is given for `r`, fits IAM's rules for `what`:
/// `limit` characters at most (a role 64, an instance profile 128), letters, digits and
/// `+ = , . @ _ -`.
pub fn check_name(
    r: &crate::stack::Resource,
    stack: &crate::stack::Stack,
    what: &str,
    limit: usize,
    d: &mut crate::diag::Diags,
) {
    let name = format!("{}-{}", stack.name, r.name);
    let chars = name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
    if name.len() > limit || !chars {
        d.error(
            "bad-iam-name",
            r.span.clone(),
            format!(
                "{}: its {what} would be named `{name}` ({} characters); IAM takes {limit} at most, letters, digits and + = , . @ _ -",
                r.address(),
                name.len()
            ),
            Some("shorten the stack's or the resource's name".into()),
        );
    }
}
