//! The engine without AWS: a kind that records its calls instead of making them (and fails,
//! is throttled or interrupts the run when its resource says so), so the order of an apply and
//! a destroy, retries, skips and an interrupted run are tested in process. The walker's fake
//! executor shows the way one level down.

use super::{apply, plan, Found, Inventory};
use crate::error::{Class, OpError};
use crate::provider::{Cx, Live, Ops};
use crate::schema::{Field, FieldType, Kind, Update};
use crate::stack::{desired, Stack};
use crate::walk::WalkOptions;
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

static FIELDS: &[Field] = &[
    Field::optional("parent", FieldType::Ref(&["fake"]), None, Update::InPlace, "Made after it."),
    Field::optional("value", FieldType::String, None, Update::InPlace, "Changed in place."),
    Field::optional("key", FieldType::String, None, Update::Replace, "Changed by replacing."),
    Field::optional(
        "fail",
        FieldType::Enum(&["create", "update", "delete"]),
        None,
        Update::Setting,
        "The call that fails (fatal).",
    ),
    Field::optional("throttled", FieldType::Int { min: 0, max: 10 }, None, Update::Setting, "Calls throttled first."),
    Field::optional("interrupt", FieldType::Bool, None, Update::Setting, "Its create interrupts the run."),
];

static FAKE: Kind = Kind::new("fake", "A resource that exists only in this test's log.", &Fake)
    .fields(FIELDS)
    .outputs(&[("id", "Its id")]);

/// Per stack (each test has its own): the calls made, the attempts per address, the run's
/// interrupt.
#[derive(Default)]
struct World {
    calls: Vec<String>,
    attempts: BTreeMap<String, i64>,
    cancel: Option<CancellationToken>,
}

static WORLDS: LazyLock<Mutex<BTreeMap<String, World>>> = LazyLock::new(Mutex::default);

fn world<T>(stack: &str, f: impl FnOnce(&mut World) -> T) -> T {
    f(WORLDS.lock().unwrap_or_else(|p| p.into_inner()).entry(stack.to_owned()).or_default())
}

struct Fake;

impl Fake {
    /// Records the call; fails it as `want` says (a setting the engine hands over).
    fn call(cx: &Cx, what: &str, address: &str, want: &Value) -> Result<(), OpError> {
        let text = |k: &str| want.get(k).and_then(Value::as_str).map(str::to_owned);
        let throttled = want.get("throttled").and_then(Value::as_i64).unwrap_or(0);
        world(&cx.stack, |w| {
            let n = w.attempts.entry(format!("{what} {address}")).or_default();
            *n += 1;
            if *n <= throttled {
                w.calls.push(format!("throttled {what} {address}"));
                return Err(OpError::retryable(what, "Throttling"));
            }
            let parent = text("parent").map(|p| format!(" under {p}")).unwrap_or_default();
            w.calls.push(format!("{what} {address}{parent}"));
            if text("fail").as_deref() == Some(what) {
                return Err(OpError::fatal(what, "InvalidParameterValue"));
            }
            if what == "create" && want.get("interrupt") == Some(&Value::Bool(true)) {
                w.cancel.iter().for_each(CancellationToken::cancel);
            }
            Ok(())
        })
    }
}

#[async_trait]
impl Ops for Fake {
    async fn discover(&self, _: &Cx) -> Result<Vec<Live>, OpError> {
        Ok(Vec::new())
    }
    async fn create(&self, cx: &Cx, address: &str, want: &Value, _: &str) -> Result<String, OpError> {
        Fake::call(cx, "create", address, want)?;
        Ok(format!("id-{address}"))
    }
    async fn update(&self, cx: &Cx, id: &str, _: &Value, want: &Value) -> Result<(), OpError> {
        Fake::call(cx, "update", id, want)
    }
    async fn delete(&self, cx: &Cx, id: &str, have: &Value) -> Result<(), OpError> {
        Fake::call(cx, "delete", id, have)
    }
}

fn stack(name: &str, body: &str) -> Stack {
    let src = format!("[stack]\nname = \"{name}\"\nregion = \"eu-central-1\"\n{body}");
    crate::stack::parse(&[&FAKE], "t.toml", &src, &BTreeMap::new()).unwrap_or_else(|d| panic!("{:?}", d.items))
}

/// What exists once `s` was applied: ids `id-<address>`, references as ids.
fn applied(s: &Stack) -> Inventory {
    let mut inv = Inventory { home: s.region.clone(), ..Inventory::default() };
    for r in &s.resources {
        let mut attrs = desired(r, s);
        if let Some(p) = attrs.get("parent").and_then(Value::as_str).map(|p| format!("id-{p}")) {
            attrs["parent"] = Value::String(p);
        }
        let id = format!("id-{}", r.address());
        let live = Live { id, address: r.address(), attrs, outputs: Map::new() };
        inv.live.insert(r.address(), Found { kind: r.kind, region: s.region.clone(), live });
    }
    inv
}

/// Applies `target` over `inv` (a destroy when `target` has no resources): the outcome and the
/// calls made.
async fn run(target: &Stack, inv: &Inventory) -> (super::Outcome, Vec<String>) {
    let cancel = CancellationToken::new();
    world(&target.name, |w| {
        w.calls.clear();
        w.cancel = Some(cancel.clone());
    });
    let cx = Cx::new(aws_config::SdkConfig::builder().build(), &target.name, &target.region);
    let p = plan(target, inv);
    let opts = WalkOptions {
        parallelism: 4,
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..WalkOptions::default()
    };
    let out = apply(&cx, target, inv, &p, &opts, None, cancel).await;
    (out, world(&target.name, |w| w.calls.clone()))
}

fn pos(calls: &[String], call: &str) -> usize {
    calls.iter().position(|c| c == call).unwrap_or_else(|| panic!("{call} not in {calls:?}"))
}

const CHAIN: &str = "[fake.a]\n[fake.b]\nparent = \"fake.a\"\n[fake.c]\nparent = \"fake.b\"\n[fake.d]\n";

#[tokio::test]
async fn apply_makes_what_is_referred_to_first_and_destroy_deletes_it_last() {
    let s = stack("order", CHAIN);
    let (out, calls) = run(&s, &Inventory::default()).await;
    assert!(out.report.ok(), "{:?}", out.report);
    // References reach the kind as the ids just made.
    assert!(pos(&calls, "create fake.a") < pos(&calls, "create fake.b under id-fake.a"), "{calls:?}");
    assert!(pos(&calls, "create fake.b under id-fake.a") < pos(&calls, "create fake.c under id-fake.b"), "{calls:?}");
    assert_eq!(calls.len(), 4, "one call each: {calls:?}");
    assert_eq!(out.created.len(), 4);

    let inv = applied(&s);
    let empty = Stack { resources: vec![], ..s };
    let (out, calls) = run(&empty, &inv).await;
    assert!(out.report.ok(), "{:?}", out.report);
    assert!(pos(&calls, "delete id-fake.c under id-fake.b") < pos(&calls, "delete id-fake.b under id-fake.a"));
    assert!(pos(&calls, "delete id-fake.b under id-fake.a") < pos(&calls, "delete id-fake.a"), "{calls:?}");
    assert!(calls.contains(&"delete id-fake.d".to_owned()));

    // Applied: nothing to do, nothing called.
    let s = stack("order", CHAIN);
    let (out, calls) = run(&s, &applied(&s)).await;
    assert!(out.report.ok() && out.report.done.is_empty() && calls.is_empty(), "{calls:?}");
}

#[tokio::test]
async fn a_throttled_step_is_retried_and_a_failed_one_skips_only_what_waits_for_it() {
    let s = stack(
        "faults",
        "[fake.a]\nthrottled = 2\n[fake.b]\nparent = \"fake.a\"\nfail = \"create\"\n\
         [fake.c]\nparent = \"fake.b\"\n[fake.d]\n",
    );
    let (out, calls) = run(&s, &Inventory::default()).await;
    assert_eq!(calls.iter().filter(|c| *c == "throttled create fake.a").count(), 2, "{calls:?}");
    assert!(calls.contains(&"create fake.a".to_owned()));
    let r = &out.report;
    let done: Vec<String> = r.done.iter().map(|s| s.address.clone()).collect();
    assert!(done.contains(&"fake.a".to_owned()) && done.contains(&"fake.d".to_owned()), "{r:?}");
    // The failure as the kind gave it, typed up to the caller.
    assert_eq!(r.failed.len(), 1, "{r:?}");
    let (step, e) = &r.failed[0];
    assert_eq!((step.address.as_str(), e.class, e.message.as_str()), ("fake.b", Class::Fatal, "InvalidParameterValue"));
    assert_eq!(r.skipped.iter().map(|s| s.address.as_str()).collect::<Vec<_>>(), ["fake.c"]);
    assert!(!calls.iter().any(|c| c.contains("fake.c")), "a skipped step is not attempted: {calls:?}");
}

#[tokio::test]
async fn an_interrupted_apply_starts_nothing_new_and_the_rerun_finishes_without_duplicates() {
    let s = stack(
        "interrupt",
        "[fake.a]\ninterrupt = true\n[fake.b]\nparent = \"fake.a\"\n[fake.c]\nparent = \"fake.b\"\n",
    );
    let (out, calls) = run(&s, &Inventory::default()).await;
    assert_eq!(calls, ["create fake.a"], "nothing starts after the interrupt");
    assert_eq!(out.created, [("fake.a".to_owned(), "id-fake.a".to_owned())]);
    let skipped: Vec<&str> = out.report.skipped.iter().map(|s| s.address.as_str()).collect();
    assert_eq!(skipped, ["fake.b", "fake.c"]);

    // The rerun finds what was made (here: what the interrupted run reports) and makes the rest.
    let mut inv = applied(&s);
    inv.live.retain(|a, _| a == "fake.a");
    let again = stack(
        "interrupt",
        "[fake.a]\ninterrupt = false\n[fake.b]\nparent = \"fake.a\"\n[fake.c]\nparent = \"fake.b\"\n",
    );
    let (out, calls) = run(&again, &inv).await;
    assert!(out.report.ok(), "{:?}", out.report);
    assert_eq!(calls, ["create fake.b under id-fake.a", "create fake.c under id-fake.b"]);
}

#[tokio::test]
async fn a_replacement_deletes_the_old_first_and_what_refers_to_it_follows_the_new_id() {
    let before = stack("replace", "[fake.a]\nkey = \"one\"\n[fake.b]\nparent = \"fake.a\"\nvalue = \"x\"\n");
    let after = stack("replace", "[fake.a]\nkey = \"two\"\n[fake.b]\nparent = \"fake.a\"\nvalue = \"x\"\n");
    let (out, calls) = run(&after, &applied(&before)).await;
    assert!(out.report.ok(), "{:?}", out.report);
    assert!(pos(&calls, "delete id-fake.a") < pos(&calls, "create fake.a"), "{calls:?}");
    // b lets go of the old a before it goes, and takes the new one after it is made.
    assert!(pos(&calls, "create fake.a") < pos(&calls, "update id-fake.b under id-fake.a"), "{calls:?}");
    let p = plan(&after, &applied(&before));
    let actions: Vec<(&str, crate::plan::Action)> =
        p.resources.iter().map(|r| (r.address.as_str(), r.action)).collect();
    assert!(actions.contains(&("fake.a", crate::plan::Action::Replace)), "{actions:?}");
}
