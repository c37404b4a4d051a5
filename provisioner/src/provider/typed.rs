//! The typed side of a kind: [`Typed`] is what a kind implements, with its attributes and
//! outputs as Rust types both ways (decoded for writes, built as structs by discovery), and the
//! blanket adapter turns it into the engine's untyped [`Ops`], so the engine names no kind's
//! type and a kind never builds a JSON value by string key.

use super::{Cx, Derive, Live, Ops};
use crate::error::OpError;
use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A resource's address in its stack, `kind.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Address<'a> {
    kind: &'a str,
    name: &'a str,
}

impl<'a> Address<'a> {
    /// `kind.name`; text without a dot is a name of no kind.
    pub fn parse(text: &'a str) -> Self {
        let (kind, name) = text.split_once('.').unwrap_or(("", text));
        Self { kind, name }
    }

    pub fn kind(&self) -> &'a str {
        self.kind
    }

    /// The resource's name in the stack (what AWS names are built from).
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The address of a resource found in AWS: its `provisioner:id` tag, else `kind.name` from
    /// the stack-prefixed AWS name it was found by (a resource tagged by hand, or not at all).
    pub fn found(tags: &BTreeMap<String, String>, kind: &str, name: &str) -> String {
        tags.get(super::ID_TAG).cloned().unwrap_or_else(|| format!("{kind}.{name}"))
    }
}

impl std::fmt::Display for Address<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.kind, self.name)
    }
}

/// A resource discovery found, typed: its attributes in the declared shape (references as AWS
/// ids, `tags` every tag) and its outputs besides `id`.
#[derive(Debug, Clone)]
pub struct Found<A, O> {
    pub id: String,
    /// Its address in the stack (see [`Address::found`]).
    pub address: String,
    pub attrs: A,
    pub outputs: O,
}

/// A kind's AWS side, typed. `Attrs` is the declared shape (one struct field per declared field,
/// the shape test in `kinds` holds them equal); `Outputs` the declared outputs besides `id`
/// (`()` for none). `want` comes with references resolved to AWS ids and `tags` complete (the
/// stack's, the resource's and the ownership tags); `have` is what was read or last applied,
/// `None` when nothing is known of it (made by a call that failed before it said what it made).
/// The optional methods mean what [`Ops`]' do.
#[async_trait]
pub trait Typed: Sync {
    type Attrs: Serialize + DeserializeOwned + Send + Sync;
    type Outputs: Serialize + Default + Send;

    /// Every resource of this kind the stack owns in `cx.region`, in as few calls as the API
    /// allows.
    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Self::Attrs, Self::Outputs>>, OpError>;
    /// Creates the resource tagged at birth, with `token` as the client token where the API
    /// has one; returns its id.
    async fn create(&self, cx: &Cx, at: Address<'_>, want: &Self::Attrs, token: &str) -> Result<String, OpError>;
    /// Changes in-place fields from `have` to `want`.
    async fn update(&self, cx: &Cx, id: &str, have: Option<&Self::Attrs>, want: &Self::Attrs) -> Result<(), OpError>;
    /// Deletes it (and what only it holds); gone already is success.
    async fn delete(&self, cx: &Cx, id: &str, have: Option<&Self::Attrs>) -> Result<(), OpError>;

    fn derive(&self, _want: &Self::Attrs, _on: &Derive<'_>) -> Result<Map<String, Value>, String> {
        Ok(Map::new())
    }
    fn forces(&self, _have: &Self::Attrs, _want: &Self::Attrs) -> Vec<&'static str> {
        Vec::new()
    }
    fn refuse(&self, _have: &Self::Attrs, _want: &Self::Attrs) -> Option<String> {
        None
    }
    fn protected(&self, _have: &Self::Attrs) -> Option<&'static str> {
        None
    }
    /// A valid value of a field whose shape the declaration leaves open (a JSON file's
    /// document), for the shape test over all kinds.
    fn example(&self, _field: &str) -> Option<Value> {
        None
    }
}

/// `have` known, for a change that cannot be made without it (a failure the walker retries after
/// reading the resource again).
pub fn known<A>(have: Option<&A>) -> Result<&A, OpError> {
    have.ok_or_else(|| OpError::retryable("read", "its attributes are not known yet: read again"))
}

/// A value in the declared shape (a kind's own fields) decoded into the kind's type.
pub fn decode<T: DeserializeOwned>(v: &Value) -> Result<T, OpError> {
    serde_json::from_value(v.clone())
        .map_err(|e| OpError::fatal("decode", format!("{}: {e}", std::any::type_name::<T>())))
}

/// A kind's value in the declared shape.
pub fn encode<T: Serialize>(v: &T) -> Value {
    // Serializing plain structs of strings, numbers, maps and lists cannot fail.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// `v` brought to its kind's canonical form by the kind's `normalize` (which works on the
/// declared shape as JSON): for a discovery whose update compares both sides whole.
pub fn normalized<T: Serialize + DeserializeOwned>(v: T, normalize: fn(&mut Value)) -> Result<T, OpError> {
    let mut json = encode(&v);
    normalize(&mut json);
    decode(&json)
}

fn decoded<T: DeserializeOwned>(v: &Value) -> Result<Option<T>, OpError> {
    if v.is_null() {
        return Ok(None);
    }
    decode(v).map(Some)
}

/// Outputs as the engine keeps them: an object, without the ones not known (`None`).
fn output_map<O: Serialize>(o: &O) -> Map<String, Value> {
    match encode(o) {
        Value::Object(m) => m.into_iter().filter(|(_, v)| !v.is_null()).collect(),
        _ => Map::new(),
    }
}

#[async_trait]
impl<T: Typed> Ops for T {
    async fn discover(&self, cx: &Cx) -> Result<Vec<Live>, OpError> {
        Ok(Typed::discover(self, cx)
            .await?
            .into_iter()
            .map(|f| Live { id: f.id, address: f.address, attrs: encode(&f.attrs), outputs: output_map(&f.outputs) })
            .collect())
    }

    async fn create(&self, cx: &Cx, address: &str, want: &Value, token: &str) -> Result<String, OpError> {
        Typed::create(self, cx, Address::parse(address), &decode(want)?, token).await
    }

    async fn update(&self, cx: &Cx, id: &str, have: &Value, want: &Value) -> Result<(), OpError> {
        Typed::update(self, cx, id, decoded(have)?.as_ref(), &decode(want)?).await
    }

    async fn delete(&self, cx: &Cx, id: &str, have: &Value) -> Result<(), OpError> {
        // What cannot be read in the declared shape (a resource from an older version) is
        // deleted by its id alone.
        Typed::delete(self, cx, id, decoded(have).ok().flatten().as_ref()).await
    }

    fn derive(&self, want: &Value, on: &Derive<'_>) -> Result<Map<String, Value>, String> {
        Typed::derive(self, &decode(want).map_err(|e| e.to_string())?, on)
    }

    fn forces(&self, have: &Value, want: &Value) -> Vec<&'static str> {
        // A side not yet in the declared shape (an output not known before apply inside a
        // number) cannot be compared: the field-by-field diff stands.
        match (decode(have), decode(want)) {
            (Ok(h), Ok(w)) => Typed::forces(self, &h, &w),
            _ => Vec::new(),
        }
    }

    fn refuse(&self, have: &Value, want: &Value) -> Option<String> {
        Typed::refuse(self, &decode(have).ok()?, &decode(want).ok()?)
    }

    fn protected(&self, have: &Value) -> Option<&'static str> {
        Typed::protected(self, &decode(have).ok()?)
    }

    fn shape(&self, sample: &mut Value) -> Option<Result<(Value, Value), String>> {
        if let Value::Object(m) = sample {
            for (field, v) in m.iter_mut() {
                if let Some(example) = Typed::example(self, field) {
                    *v = example;
                }
            }
        }
        Some(
            decode::<T::Attrs>(sample).map(|a| (encode(&a), encode(&T::Outputs::default()))).map_err(|e| e.to_string()),
        )
    }
}
