//! The AWS side of a resource kind, as the engine sees it: the untyped [`Ops`] (what a kind's
//! [`Typed`] side is adapted to, in `typed.rs`), the context [`Cx`] its operations run in (the stack's identity, one region, SDK clients built
//! lazily per service and region from one configuration), and what discovery finds ([`Live`]).
//! Nothing here names an AWS service: each service's module brings its own clients and codes.

use crate::error::OpError;
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

mod typed;
pub use typed::{decode, encode, known, normalized, Address, Found, Typed};

/// The tag naming the stack that owns a resource.
pub const STACK_TAG: &str = "provisioner:stack";
/// The tag naming a resource's address (`kind.name`) in its stack.
pub const ID_TAG: &str = "provisioner:id";

/// An SDK client the context can build: each service's module implements it for its client.
pub trait Service: Clone + Send + Sync + 'static {
    fn build(conf: &aws_config::SdkConfig) -> Self;
}

/// Where a create reports the id and attributes its making call left (see [`Cx::born`]).
pub type Birth = Arc<Mutex<Option<(String, Value)>>>;

type Shelf = Mutex<HashMap<(TypeId, String), Arc<dyn Any + Send + Sync>>>;

struct Shared {
    conf: aws_config::SdkConfig,
    clients: Shelf,
}

/// What every operation needs: the stack's identity, the region it works in, and clients.
/// Cheap to clone; clones share their clients.
#[derive(Clone)]
pub struct Cx {
    pub stack: String,
    /// The region this context works in: the resource's own, or the stack's.
    pub region: String,
    /// The stack's own region (global services such as IAM are read once, there).
    pub home: String,
    shared: Arc<Shared>,
    /// Answers shared by the kinds of one discovery pass (a service-wide "what is tagged" read,
    /// for example); none outside a pass, so a re-read after a failed step is always fresh.
    pass: Option<Arc<Shelf>>,
    /// Where a create reports what its making call made (see [`Cx::born`]); none outside a
    /// create step.
    birth: Option<Birth>,
}

impl std::fmt::Debug for Cx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cx").field("stack", &self.stack).field("region", &self.region).finish_non_exhaustive()
    }
}

impl Cx {
    /// A context for `stack` in `region` from one SDK configuration (credential chain, profiles,
    /// `AWS_ENDPOINT_URL` already applied).
    pub fn new(conf: aws_config::SdkConfig, stack: &str, region: &str) -> Self {
        Self {
            stack: stack.to_owned(),
            region: region.to_owned(),
            home: region.to_owned(),
            shared: Arc::new(Shared { conf, clients: Mutex::default() }),
            pass: None,
            birth: None,
        }
    }

    /// The endpoint every client is pointed at instead of AWS's (`AWS_ENDPOINT_URL`: an
    /// emulator), when there is one: for URLs a kind hands out that AWS would serve itself.
    pub fn endpoint_url(&self) -> Option<&str> {
        self.shared.conf.endpoint_url()
    }

    /// The same context working in `region`.
    pub fn in_region(&self, region: &str) -> Self {
        Self { region: region.to_owned(), ..self.clone() }
    }

    /// A context whose [`Cx::once`] answers are shared until it (and its clones) are dropped.
    pub fn discovery_pass(&self) -> Self {
        Self { pass: Some(Arc::default()), ..self.clone() }
    }

    /// A context for one create step: what [`Cx::born`] reports lands in `slot`.
    pub fn creating(&self, slot: Birth) -> Self {
        Self { birth: Some(slot), ..self.clone() }
    }

    /// Called by a create right after its making call returned: the new resource's id and its
    /// attributes as that call left them (in the declared shape, ids for references). From here
    /// the engine owns the id: if anything after this fails (settings, rules, waits), the retry
    /// brings this resource to the desired state with an update, and never makes a second one,
    /// even while AWS's lists do not show the new resource yet.
    pub fn born(&self, id: &str, have: &impl serde::Serialize) {
        if let Some(slot) = &self.birth {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some((id.to_owned(), encode(have)));
        }
    }

    /// The client of service `C` for this context's region, built on first use.
    pub fn client<C: Service>(&self) -> C {
        let key = (TypeId::of::<C>(), self.region.clone());
        let mut shelf = self.shared.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = shelf.get(&key).and_then(|c| c.downcast_ref::<C>()) {
            return c.clone();
        }
        let conf = self.shared.conf.to_builder().region(aws_config::Region::new(self.region.clone())).build();
        let c = C::build(&conf);
        shelf.insert(key, Arc::new(c.clone()));
        c
    }

    /// `f`'s answer, computed once per discovery pass, `key` and region (every time outside a
    /// pass). Failures are not kept.
    pub async fn once<T, F, Fut>(&self, key: &'static str, f: F) -> Result<T, OpError>
    where
        T: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, OpError>>,
    {
        let Some(pass) = &self.pass else { return f().await };
        let slot = (TypeId::of::<tokio::sync::OnceCell<T>>(), format!("{key}@{}", self.region));
        let cell = {
            let mut shelf = pass.lock().unwrap_or_else(|p| p.into_inner());
            shelf.entry(slot).or_insert_with(|| Arc::new(tokio::sync::OnceCell::<T>::new())).clone()
        };
        let cell = cell.downcast::<tokio::sync::OnceCell<T>>().map_err(|_| OpError::fatal("once", "slot type"))?;
        cell.get_or_try_init(f).await.cloned()
    }
}

/// A resource found by its ownership tags (or its deterministic name).
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    /// The AWS id (vpc-..., sg-..., an ARN, a name).
    pub id: String,
    /// Its `provisioner:id` tag.
    pub address: String,
    /// Attributes in the declared shape; references hold AWS ids, `tags` every tag.
    pub attrs: Value,
    /// The kind's declared outputs besides `id`.
    pub outputs: Map<String, Value>,
}

/// Reads and writes one kind of resource. `want` values come with references resolved to AWS
/// ids and `tags` complete (the stack's, the resource's and the ownership tags), so a kind
/// only translates between its declared shape and its API. Every call runs in `cx.region`.
#[async_trait]
pub trait Ops: Sync {
    /// Every resource of this kind the stack owns in `cx.region`, in as few calls as the API
    /// allows (a tag filter, a list and batched tag reads, a name prefix).
    async fn discover(&self, cx: &Cx) -> Result<Vec<Live>, OpError>;
    /// Creates the resource tagged at birth (so a crash right after leaves a findable resource),
    /// with `token` as the client token where the API has one; returns its id.
    async fn create(&self, cx: &Cx, address: &str, want: &Value, token: &str) -> Result<String, OpError>;
    /// Changes in-place fields from `have` to `want`.
    async fn update(&self, cx: &Cx, id: &str, have: &Value, want: &Value) -> Result<(), OpError>;
    /// Deletes it (and what only it holds: attachments, associations); gone already is success.
    async fn delete(&self, cx: &Cx, id: &str, have: &Value) -> Result<(), OpError>;
    /// The kind's derived fields ([`crate::schema::Field::derived`]) from the others, when a
    /// command starts. Kinds without any derive nothing.
    fn derive(&self, _want: &Value, _on: &Derive<'_>) -> Result<Map<String, Value>, String> {
        Ok(Map::new())
    }
    /// In-place fields whose change from `have` to `want` AWS can nonetheless make only by
    /// replacing the resource (a table's key schema inside its layout, where its indexes change
    /// in place): each forces a replacement in the plan. Both sides in the declared shape.
    fn forces(&self, _have: &Value, _want: &Value) -> Vec<&'static str> {
        Vec::new()
    }
    /// Why a change AWS makes in place cannot be made in one apply (a second TTL change within
    /// the hour), if it cannot: the plan says so and apply changes nothing.
    fn refuse(&self, _have: &Value, _want: &Value) -> Option<String> {
        None
    }
    /// Whether AWS refuses to delete this resource as it is (`have`, as read), and if so what
    /// lifts that: a destroy or replacement that meets it is refused before anything is deleted.
    fn protected(&self, _have: &Value) -> Option<&'static str> {
        None
    }
    /// `sample` (a value of every declared field, the kind's examples filled in where the
    /// declaration leaves a shape open) decoded into the kind's attribute type and encoded
    /// again, with its outputs' default encoded: what the shape test over all kinds compares
    /// with the declaration. `None` for a kind without typed attributes.
    fn shape(&self, _sample: &mut Value) -> Option<Result<(Value, Value), String>> {
        None
    }
}

/// What a kind derives its fields from besides its own: where the stack file is (paths in it
/// are relative to it), the stack's name, and the bill of the whole stack as declared (what a
/// dashboard of its cost shows), computed when asked.
pub struct Derive<'a> {
    pub dir: &'a std::path::Path,
    pub stack: &'a str,
    pub bill: &'a dyn Fn() -> crate::cost::model::Breakdown,
}

/// [`Ops::protected`] for kinds whose protection is a `deletion_protection` field, from its value.
pub fn deletion_protected(on: Option<bool>) -> Option<&'static str> {
    (on == Some(true)).then_some("set `deletion_protection = false` on it and apply first")
}

/// For optional list and map fields: absent and `null` are both empty.
pub fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de> + Default,
{
    Ok(<Option<T> as serde::Deserialize>::deserialize(d)?.unwrap_or_default())
}

/// Whether two lists hold the same items, in any order (subnets, security groups).
pub fn same_set(a: &[String], b: &[String]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

/// What brings tags from `have` to `want`: the keys to remove and the pairs to set.
pub fn tag_changes(
    have: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> (Vec<String>, BTreeMap<String, String>) {
    let gone = have.keys().filter(|k| !want.contains_key(*k)).cloned().collect();
    let set = want.iter().filter(|(k, v)| have.get(*k) != Some(v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    (gone, set)
}

/// The description that marks a resource as the stack's, naming its address: for what AWS
/// cannot tag, or cannot list by tag, but lists with its description (WAF ACLs, CloudFront
/// origin access controls).
pub fn marker(cx: &Cx, address: &str) -> String {
    format!("provisioner {} {address}", cx.stack)
}

/// The address in a description written by [`marker`], when it is this stack's.
pub fn address_in(cx: &Cx, description: &str) -> Option<String> {
    let rest = description.strip_prefix("provisioner ")?;
    let (stack, address) = rest.split_once(' ')?;
    (stack == cx.stack).then(|| address.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn once_is_once_per_pass_and_region_and_never_keeps_a_failure() {
        let cx = Cx::new(aws_config::SdkConfig::builder().build(), "s", "eu-central-1");
        let calls = AtomicUsize::new(0);
        let count = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, OpError>(7)
        };
        let pass = cx.discovery_pass();
        assert_eq!(pass.once("k", count).await, Ok(7));
        assert_eq!(pass.in_region("eu-central-1").once("k", count).await, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "shared within the pass");
        pass.in_region("us-east-1").once("k", count).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2, "per region");
        cx.once("k", count).await.unwrap();
        cx.discovery_pass().once("k", count).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 4, "outside a pass, and in a new pass, it runs again");
        let fails = || async { Err::<u32, _>(OpError::retryable("Test", "throttled")) };
        assert!(pass.once("f", fails).await.is_err());
        assert_eq!(pass.once("f", || async { Ok(1u32) }).await, Ok(1), "a failure is not kept");
    }

    #[test]
    fn clients_are_built_once_per_service_and_region() {
        #[derive(Clone)]
        struct Fake(u32);
        static BUILT: AtomicUsize = AtomicUsize::new(0);
        impl Service for Fake {
            fn build(_: &aws_config::SdkConfig) -> Self {
                Self(BUILT.fetch_add(1, Ordering::SeqCst) as u32)
            }
        }
        let cx = Cx::new(aws_config::SdkConfig::builder().build(), "s", "eu-central-1");
        let (a, b) = (cx.client::<Fake>(), cx.in_region("eu-central-1").client::<Fake>());
        assert_eq!((a.0, b.0), (0, 0));
        assert_eq!(cx.in_region("us-east-1").client::<Fake>().0, 1);
        assert_eq!(BUILT.load(Ordering::SeqCst), 2);
    }
}
