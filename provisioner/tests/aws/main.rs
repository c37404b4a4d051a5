//! The provisioner against moto server: lifecycle of the production network stack (apply,
//! no-change plan, in-place and forcing changes, destroy), drift, crash consistency, throttling,
//! API call ordering, the lock, and no AWS call for a broken stack file.

#[path = "../common/mod.rs"]
mod common;
mod shipped;

mod dynamodb;
mod ec2;
mod ecr;
mod ecs;
mod elbv2;
mod engine;
mod finops;
mod iam;
mod logs;
mod production;
mod s3;
mod sns;
mod ssm;

use common::{assert_no_duplicates, creates_per_address, owned, run, Call, Moto, Proxy};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const PROD: &str = "stacks/prod.toml";

/// The network layer of the production stack (everything before its application layer).
const PROD_NET: &str = "stacks/prod.toml#network";

const LOCAL: &str = "stacks/local.toml";

fn root(path: &str) -> String {
    format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))
}

/// A copy of a stack file under another stack name (so tests can share a server), with edits.
fn variant(src_path: &str, name: &str, edits: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let (file, network_only) = match src_path.strip_suffix("#network") {
        Some(f) => (f, true),
        None => (src_path, false),
    };
    let mut src = std::fs::read_to_string(root(file)).unwrap();
    if network_only {
        src.truncate(src.find("# Application layer").expect("prod.toml marks its application layer"));
        // The network with the logging host's security group: all 14 network resources.
        src = src.replacen("separate_logging_host = \"false\"", "separate_logging_host = \"true\"", 1);
    }
    // Files the stack names are relative to it: point them at the repository's.
    src = src.replace("\"../", &format!("\"{}/", root("")));
    // Images of a small binary: what is pushed does not matter to these tests (moto runs no
    // task), and a build of the services per command would (tests/image.rs images `quake`).
    src = src.replace("package = \"quake\"", "executable = \"/usr/bin/true\"");
    // The FinOps site only where a test asks for it (an edit naming `finops_site`): the other
    // tests are about the rest, and it builds the edge function on every command.
    if !edits.iter().any(|(a, _)| a.contains("finops_site")) {
        src = src.replacen("finops_site = \"true\"", "finops_site = \"false\"", 1);
    }
    let old_name = src.lines().find(|l| l.starts_with("name = ")).unwrap().to_owned();
    src = src.replace(&old_name, &format!("name = \"{name}\""));
    for (a, b) in edits {
        assert!(src.contains(a), "edit target `{a}` not in {src_path}");
        src = src.replacen(a, b, 1);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stack.toml");
    std::fs::write(&path, src).unwrap();
    (dir, path.to_str().unwrap().to_owned())
}

/// What the production stack's tests run against: a recording proxy in front of `moto` that
/// EMULATES AWS's answers where moto has none (global-table replicas, Fargate rollouts; see
/// `common`), plays in STRICT MODE what AWS does and moto does not (`common::strict`), and the
/// local registry moto lacks.
async fn production_peers(moto: &Moto) -> Proxy {
    let proxy = Proxy::start(&moto.url).await;
    common::registry();
    proxy.emulate_global_tables();
    proxy.emulate_ecs_deployments();
    proxy.strict();
    proxy
}

/// A scratch directory and the path of a stack file in it (written by the test).
fn stack_file() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stack.toml").to_str().unwrap().to_owned();
    (dir, path)
}

/// The production stack named `name`, its table's deletion protection off (as an operator turns
/// it off before a destroy).
/// The production stack with a logging host of its own (the layout with most resources and
/// references between hosts; the default co-locates it), deletion protection off.
fn destroyable_prod(name: &str) -> (tempfile::TempDir, String) {
    variant(
        PROD,
        name,
        &[
            ("deletion_protection = true", "deletion_protection = false"),
            ("separate_logging_host = \"false\"", "separate_logging_host = \"true\""),
        ],
    )
}

/// Plans the stack file at `path` (changes expected, each of `lines` in the plan, spacing aside),
/// applies it, and checks the next plan is empty.
fn converge(ep: &str, path: &str, lines: &[&str]) {
    let r = run(ep, &["plan", path]);
    ok(&r, 2, "plan changes");
    let text: String = r.1.split_whitespace().collect::<Vec<_>>().join(" ");
    for line in lines {
        assert!(text.contains(line), "{line} in\n{}", r.1);
    }
    ok(&run(ep, &["apply", path, "--yes"]), 0, "apply changes");
    ok(&run(ep, &["plan", path]), 0, "plan after changes");
}

fn ok(r: &(i32, String, String), code: i32, what: &str) {
    assert_eq!(r.0, code, "{what}: exit {} (wanted {code})\nstdout:\n{}\nstderr:\n{}", r.0, r.1, r.2);
}

static ID: std::sync::LazyLock<regex_lite::Regex> = std::sync::LazyLock::new(|| {
    regex_lite::Regex::new(
        r"\b(?:vpc|subnet|igw|eipalloc|nat|rtb|sg|vpce|i)-[0-9a-f]{8,}\b|arn:aws:elasticloadbalancing:[a-z0-9-]+:[0-9]{12}:(?:loadbalancer|targetgroup|listener)/[A-Za-z0-9/_.-]+",
    )
    .unwrap()
});

fn ids(s: &str) -> BTreeSet<String> {
    ID.find_iter(s).map(|m| m.as_str().to_owned()).collect()
}

/// A call that changes something: not a read (`Describe*`, `List*`, `Get*`, in any protocol's
/// spelling: `DescribeVpcs`, `Logs_20140328.DescribeLogGroups`), not the lock table.
fn mutating(c: &Call) -> bool {
    let op = c.action.rsplit('.').next().unwrap_or(&c.action);
    let read = ["Describe", "List", "Get", "GET ", "HEAD "].iter().any(|p| op.starts_with(p));
    !c.faulted && c.status < 300 && !read && !c.action.contains("DynamoDB")
}

/// Checks the recorded order: every id a call names was created by an earlier call (or existed
/// before), nothing is named after its deletion, and nothing is deleted while a resource made
/// from it (whose create named it) still exists.
fn assert_ordered(calls: &[Call], existing: &BTreeSet<String>) {
    let mut created: BTreeSet<String> = existing.clone();
    // id -> the call that deleted it.
    let mut deleted: BTreeMap<String, String> = BTreeMap::new();
    // child -> the ids its create call named (its dependencies).
    let mut parents: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for c in calls.iter().filter(|c| mutating(c)) {
        // Query protocols carry ids in their parameters, JSON ones in their body.
        let json_body = if c.body.starts_with('{') { ids(&c.body) } else { BTreeSet::new() };
        let named: BTreeSet<String> = c.params.values().flat_map(|v| ids(v)).chain(json_body).collect();
        let is_delete = c.action.starts_with("Delete") && c.action != "DeleteTags" && c.action != "DeleteRoute"
            || c.action == "ReleaseAddress"
            || c.action == "TerminateInstances";
        for id in &named {
            assert!(created.contains(id), "{} names {id} before it was created", c.action);
            // The same delete again is a retry of an idempotent call (its wait was throttled),
            // not a use of what is gone.
            let retried = is_delete && deleted.get(id) == Some(&c.action);
            assert!(!deleted.contains_key(id) || retried, "{} names {id} after it was deleted", c.action);
        }
        let is_create =
            (c.action.starts_with("Create") || c.action.starts_with("Allocate") || c.action == "RunInstances")
                && !matches!(c.action.as_str(), "CreateTags" | "CreateRoute");
        if is_create {
            for new in ids(&c.response).difference(&created).cloned().collect::<Vec<_>>() {
                parents.insert(new.clone(), named.clone());
                created.insert(new);
            }
        }
        if is_delete {
            for id in &named {
                let alive_children: Vec<&String> = parents
                    .iter()
                    .filter(|(child, ps)| ps.contains(id) && !deleted.contains_key(*child) && *child != id)
                    .map(|(child, _)| child)
                    .collect();
                assert!(
                    alive_children.is_empty(),
                    "{} deletes {id} while {alive_children:?} made from it exist",
                    c.action
                );
                deleted.entry(id.clone()).or_insert_with(|| c.action.clone());
            }
        }
    }
}

/// The JSON body of a recorded JSON-protocol call.
fn proxy_body(c: &Call) -> serde_json::Value {
    serde_json::from_str(&c.body).unwrap_or_default()
}

/// The network part every load-balancer test stands on.
const LB_NET: &str = "[stack]\nname = \"lb\"\nregion = \"eu-central-1\"\n\n\
    [vpc.main]\ncidr = \"10.0.0.0/16\"\n\n\
    [subnet.a]\nvpc = \"vpc.main\"\ncidr = \"10.0.1.0/24\"\naz = \"a\"\n\n\
    [subnet.b]\nvpc = \"vpc.main\"\ncidr = \"10.0.2.0/24\"\naz = \"b\"\n\n\
    [security_group.lb]\nvpc = \"vpc.main\"\ndescription = \"load balancer\"\n\n";

fn stack_filter(stack: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder().name("tag:provisioner:stack").values(stack).build()
}
