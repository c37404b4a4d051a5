//! The provisioner against moto server: lifecycle of the production network stack (apply,
//! no-change plan, in-place and forcing changes, destroy), drift, crash consistency, throttling,
//! API call ordering, the lock, and no AWS call for a broken stack file.

mod common;
mod shipped;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_of_the_production_network() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    common::registry();
    let ep = proxy.url.clone();
    let (_d, stack) = variant(PROD_NET, "life", &[]);
    let declared = common::declared(&std::fs::read_to_string(&stack).unwrap());

    let r = run(&ep, &["apply", &stack, "--yes"]);
    ok(&r, 0, "apply from empty");
    assert!(r.1.contains("Apply complete") && r.1.contains("14 added"), "{}", r.1);
    assert_ordered(&proxy.take_calls(), &BTreeSet::new());
    let live = owned(&moto.ec2(), "life").await;
    assert_eq!(live.iter().map(|(a, _)| a.clone()).collect::<BTreeSet<_>>(), declared);
    assert_no_duplicates(&live, "after apply");

    let r = run(&ep, &["plan", &stack]);
    ok(&r, 0, "plan after apply");
    assert!(r.1.contains("No changes."), "{}", r.1);

    // One in-place change and one that forces replacement.
    let (_d2, changed) = variant(
        PROD_NET,
        "life",
        &[
            ("cidr = \"10.0.0.0/16\"\n", "cidr = \"10.0.0.0/16\"\ndns_hostnames = false\n"),
            ("10.0.20.0/24", "10.0.21.0/24"),
        ],
    );
    let r = run(&ep, &["plan", &changed]);
    ok(&r, 2, "plan with changes");
    let text = &r.1;
    assert!(text.contains("  ~ vpc.main {") && text.contains("~ dns_hostnames = true -> false"), "{text}");
    assert!(text.contains("-/+ subnet.hosts {"), "{text}");
    assert!(text.contains("~ cidr = \"10.0.20.0/24\" -> \"10.0.21.0/24\" # forces replacement"), "{text}");
    // The route table follows the new subnet id in place.
    assert!(text.contains("  ~ route_table.main {") && text.contains("(refers to a replaced resource)"), "{text}");
    assert!(text.contains("Plan: 1 to add, 2 to change, 1 to destroy."), "{text}");
    let touched = text.lines().filter(|l| l.starts_with("  # ")).count();
    assert_eq!(touched, 3, "only the changed resources are listed:\n{text}");
    let r = run(&ep, &["plan", &changed, "--json"]);
    ok(&r, 2, "plan --json");
    let plan: serde_json::Value = serde_json::from_str(&r.1).unwrap();
    let action = |a: &str| {
        plan["resources"].as_array().unwrap().iter().find(|r| r["address"] == a).map(|r| r["action"].clone()).unwrap()
    };
    assert_eq!(action("vpc.main"), "update");
    assert_eq!(action("subnet.hosts"), "replace");
    assert_eq!(action("subnet.web_a"), "no-op");
    let ids_before = owned(&moto.ec2(), "life").await;

    let r = run(&ep, &["apply", &changed, "--yes"]);
    ok(&r, 0, "apply changes");
    let calls = proxy.take_calls();
    assert_ordered(&calls, &ids_before.iter().map(|(_, id)| id.clone()).collect());
    let r = run(&ep, &["plan", &changed]);
    ok(&r, 0, "plan after changes");
    let after = owned(&moto.ec2(), "life").await;
    assert_no_duplicates(&after, "after changes");
    let id_of = |l: &[(String, String)], a: &str| l.iter().find(|(x, _)| x == a).map(|(_, i)| i.clone());
    assert_ne!(id_of(&ids_before, "subnet.hosts"), id_of(&after, "subnet.hosts"), "subnet replaced");
    assert_eq!(id_of(&ids_before, "vpc.main"), id_of(&after, "vpc.main"), "vpc changed in place");

    let r = run(&ep, &["outputs", &changed, "--json"]);
    ok(&r, 0, "outputs");
    let out: serde_json::Value = serde_json::from_str(&r.1).unwrap();
    assert_eq!(out["subnet.hosts"]["id"].as_str(), id_of(&after, "subnet.hosts").as_deref());
    assert_eq!(out["subnet.hosts"]["availability_zone"], "eu-central-1a");

    let before_destroy: BTreeSet<String> = after.iter().map(|(_, i)| i.clone()).collect();
    let r = run(&ep, &["destroy", &changed, "--yes"]);
    ok(&r, 0, "destroy");
    assert_ordered(&proxy.take_calls(), &before_destroy);
    assert!(owned(&moto.ec2(), "life").await.is_empty(), "nothing tagged is left");
    let r = run(&ep, &["plan", &changed]);
    ok(&r, 2, "plan after destroy");
    assert!(r.1.contains("Plan: 14 to add, 0 to change, 0 to destroy."), "{}", r.1);

    // The local stack: Elastic IP, NAT gateway (with its waiters), two route tables, and the
    // application layer as moto can hold it (no replica, no wait for a Fargate rollout).
    let (_d3, local) = variant(LOCAL, "local", &[]);
    let r = run(&ep, &["apply", &local, "--yes"]);
    ok(&r, 0, "apply local");
    assert!(r.1.contains("31 added"), "{}", r.1);
    let apply_calls = proxy.take_calls();
    assert_ordered(&apply_calls, &BTreeSet::new());
    ok(&run(&ep, &["plan", &local]), 0, "plan local");
    let live: BTreeSet<String> = owned(&moto.ec2(), "local").await.into_iter().map(|(_, i)| i).collect();
    assert_eq!(live.len(), 12, "the network's EC2 resources: {live:?}");
    ok(&run(&ep, &["destroy", &local, "--yes"]), 0, "destroy local");
    assert_ordered(&[apply_calls, proxy.take_calls()].concat(), &BTreeSet::new());
    assert!(owned(&moto.ec2(), "local").await.is_empty());
    assert!(moto.elb().describe_load_balancers().send().await.unwrap().load_balancers().is_empty());
    let clusters = moto.ecs().describe_clusters().clusters("local-main").send().await.unwrap();
    assert!(clusters.clusters().iter().all(|c| c.status() != Some("ACTIVE")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_shown_and_repaired() {
    let moto = Moto::start().await;
    let (_d, stack) = variant(PROD_NET, "drift", &[]);
    ok(&run(&moto.url, &["apply", &stack, "--yes"]), 0, "apply");
    let ec2 = moto.ec2();
    let live: BTreeMap<String, String> = owned(&ec2, "drift").await.into_iter().collect();

    // Out of band: delete a rule, add a tag, delete a subnet.
    let sg = &live["security_group.logging"];
    let rules = ec2
        .describe_security_group_rules()
        .filters(aws_sdk_ec2::types::Filter::builder().name("group-id").values(sg).build())
        .send()
        .await
        .unwrap();
    let loki = rules
        .security_group_rules()
        .iter()
        .find(|r| r.from_port() == Some(3100) && r.is_egress() == Some(false))
        .and_then(|r| r.security_group_rule_id())
        .expect("Loki's rule")
        .to_owned();
    ec2.revoke_security_group_ingress().group_id(sg).security_group_rule_ids(loki).send().await.unwrap();
    ec2.create_tags()
        .resources(&live["vpc.main"])
        .tags(aws_sdk_ec2::types::Tag::builder().key("owner").value("someone").build())
        .send()
        .await
        .unwrap();
    ec2.delete_subnet().subnet_id(&live["subnet.web_b"]).send().await.unwrap();

    let r = run(&moto.url, &["plan", &stack]);
    ok(&r, 2, "plan shows drift");
    let text = &r.1;
    assert!(
        text.contains("+ security_group.logging ingress tcp 3100 security_group.streaming (Loki pushes from Alloy)"),
        "{text}"
    );
    assert!(text.contains("  ~ vpc.main {") && text.contains("- owner = \"someone\""), "{text}");
    assert!(text.contains("  + subnet.web_b {"), "{text}");

    ok(&run(&moto.url, &["apply", &stack, "--yes"]), 0, "apply repairs");
    let r = run(&moto.url, &["plan", &stack]);
    ok(&r, 0, "plan after repair");
    let after = owned(&ec2, "drift").await;
    assert_no_duplicates(&after, "after repair");
    assert_eq!(after.len(), 14);

    // A second resource claiming an address (made by hand, or by a tool without client tokens)
    // is planned for deletion under `address#id`.
    let tag = |k: &str, v: &str| aws_sdk_ec2::types::Tag::builder().key(k).value(v).build();
    let dup = ec2
        .create_security_group()
        .group_name("a-copy")
        .description("copy")
        .vpc_id(&live["vpc.main"])
        .tag_specifications(
            aws_sdk_ec2::types::TagSpecification::builder()
                .resource_type(aws_sdk_ec2::types::ResourceType::SecurityGroup)
                .tags(tag("provisioner:stack", "drift"))
                .tags(tag("provisioner:id", "security_group.web"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let dup = dup.group_id().unwrap();
    let r = run(&moto.url, &["plan", &stack]);
    ok(&r, 2, "plan with a duplicate");
    assert!(r.1.contains(&format!("  - security_group.web#{dup} {{")), "{}", r.1);
    assert!(r.1.contains("Plan: 0 to add, 0 to change, 1 to destroy."), "{}", r.1);
    ok(&run(&moto.url, &["apply", &stack, "--yes"]), 0, "apply removes the duplicate");
    let after = owned(&ec2, "drift").await;
    assert_no_duplicates(&after, "after removing the duplicate");
    assert!(after.iter().all(|(_, id)| id != dup), "{after:?}");

    // Resources that leave the file are deleted, even when no resource of their kind is left.
    let endpoints = "[vpc_endpoint.dynamodb]\nvpc = \"vpc.main\"\nservice = \"dynamodb\"\nroute_tables = [\"route_table.main\"]\n\n\
                     [vpc_endpoint.s3]\nvpc = \"vpc.main\"\nservice = \"s3\"\nroute_tables = [\"route_table.main\"]\n";
    let (_d2, fewer) = variant(PROD_NET, "drift", &[(endpoints, "")]);
    let r = run(&moto.url, &["plan", &fewer]);
    ok(&r, 2, "plan without the endpoints");
    assert!(r.1.contains("  - vpc_endpoint.s3 {") && r.1.contains("  - vpc_endpoint.dynamodb {"), "{}", r.1);
    assert!(r.1.contains("Plan: 0 to add, 0 to change, 2 to destroy."), "{}", r.1);
    ok(&run(&moto.url, &["apply", &fewer, "--yes"]), 0, "apply without the endpoints");
    ok(&run(&moto.url, &["plan", &fewer]), 0, "plan after removal");
    let left = owned(&ec2, "drift").await;
    assert_eq!(left.len(), 12);
    assert!(left.iter().all(|(a, _)| !a.starts_with("vpc_endpoint.")), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_applies_converge_without_duplicates() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    // Latency slows the apply down, so a kill lands right after the change it aims at.
    proxy.set_faults(0.0, Duration::from_millis(25));
    let (_d, stack) = variant(PROD_NET, "crash", &[]);
    // A warm full apply: how many changing calls it makes.
    ok(&run(&proxy.url, &["apply", &stack, "--yes"]), 0, "first apply");
    moto.reset().await;
    proxy.take_calls();
    ok(&run(&proxy.url, &["apply", &stack, "--yes"]), 0, "measuring apply");
    let total = proxy.take_calls().into_iter().filter(mutating).count();
    let mut inside = 0;
    for round in 0..10 {
        moto.reset().await;
        // A random point of progress: after this many changes reached AWS (the machine's load
        // then cannot move the kill before or after the apply).
        let at = rand::random_range(1..total - 2);
        let mut child = common::cli(&proxy.url)
            .args(["apply", &stack, "--yes"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        while proxy.calls().iter().filter(|c| mutating(c)).count() < at {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        let partial = owned(&moto.ec2(), "crash").await;
        assert_no_duplicates(&partial, &format!("round {round}, killed after change {at}"));
        let done = proxy.take_calls().iter().filter(|c| mutating(c)).count();
        eprintln!(
            "round {round}: killed after change {at}: {done} of {total} changes made, {} resources",
            partial.len()
        );
        if (1..total).contains(&done) {
            inside += 1;
        }

        // The killed run still holds the lock: a rerun is refused naming it, until unlocked.
        let r = run(&proxy.url, &["apply", &stack, "--yes"]);
        if r.0 != 0 {
            assert!(r.2.contains("locked by") && r.2.contains("pid"), "round {round}: {}", r.2);
            ok(&run(&proxy.url, &["force-unlock", &stack]), 0, "force-unlock");
            ok(&run(&proxy.url, &["apply", &stack, "--yes"]), 0, &format!("round {round}: rerun"));
        }
        ok(&run(&proxy.url, &["plan", &stack]), 0, &format!("round {round}: converged"));
        proxy.take_calls();
        let live = owned(&moto.ec2(), "crash").await;
        assert_no_duplicates(&live, &format!("round {round} after rerun"));
        assert_eq!(live.len(), 14, "round {round}: {live:?}");
    }
    // The kills fell inside applies, not before or after them.
    assert!(inside >= 8, "only {inside} of 10 kills landed inside an apply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_apply_and_destroy_succeed() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    common::registry();
    proxy.set_faults(0.3, Duration::from_millis(5));
    let (_d, stack) = variant(LOCAL, "throttled", &[]);
    ok(&run(&proxy.url, &["apply", &stack, "--yes", "--resource-timeout", "120"]), 0, "apply under throttling");
    ok(&run(&proxy.url, &["plan", &stack]), 0, "plan under throttling");
    ok(&run(&proxy.url, &["destroy", &stack, "--yes", "--resource-timeout", "120"]), 0, "destroy under throttling");
    let calls = proxy.take_calls();
    let faulted = calls.iter().filter(|c| c.faulted).count();
    assert!(faulted * 5 > calls.len(), "about 30 % throttled: {faulted} of {}", calls.len());
    assert_ordered(&calls, &BTreeSet::new());
    assert!(owned(&moto.ec2(), "throttled").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_applies_take_turns() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    proxy.set_faults(0.0, Duration::from_millis(20));
    let (_d, stack) = variant(PROD_NET, "locked", &[]);
    // The lock table exists before the race, as after any first use.
    ok(&run(&proxy.url, &["force-unlock", &stack]), 0, "no lock yet");
    let spawn = || {
        common::cli(&proxy.url)
            .args(["apply", &stack, "--yes"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [a.status.code(), b.status.code()];
    assert!(codes.contains(&Some(0)) && codes.contains(&Some(1)), "one wins, one is refused: {codes:?}");
    let loser = if a.status.success() { &b } else { &a };
    let err = String::from_utf8_lossy(&loser.stderr);
    assert!(err.contains("locked by") && err.contains("(apply,") && err.contains("force-unlock"), "{err}");
    let live = owned(&moto.ec2(), "locked").await;
    assert_no_duplicates(&live, "after the race");
    assert_eq!(live.len(), 14);

    // A held lock is named to the next run and removed by force-unlock.
    let ddb = moto.dynamodb();
    let held = provisioner::lock::Lock::acquire(&ddb, "locked", "destroy", Duration::from_secs(600)).await.unwrap();
    let r = run(&moto.url, &["destroy", &stack, "--yes"]);
    ok(&r, 1, "destroy while locked");
    assert!(r.2.contains(&provisioner::lock::whoami()) && r.2.contains("(destroy,"), "{}", r.2);
    let r = run(&moto.url, &["force-unlock", &stack]);
    ok(&r, 0, "force-unlock");
    assert!(r.1.contains("held by"), "{}", r.1);
    drop(held);
    ok(&run(&moto.url, &["destroy", &stack, "--yes"]), 0, "destroy after unlock");
    assert!(owned(&moto.ec2(), "locked").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_stacks_make_no_aws_call() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    // The whole production file, its file paths pointed at the repository (written elsewhere).
    let src = std::fs::read_to_string(root(PROD)).unwrap().replace("\"../", &format!("\"{}/", root("")));
    assert!(provisioner::load("prod.toml", &src, &common::chosen()).is_ok(), "the copy is valid");
    let broken = [
        src.replace("memory = 512", "memory = 4096"),
        src.replace("rate_window = 300", "rate_window = 200"),
        src.replace(
            "port = 80\ntarget_group",
            "port = 443\nprotocol = \"HTTPS\"\ncertificate_arn = \"arn:aws:acm:x\"\ntarget_group",
        ),
        src.replace("${dynamodb_table.quakes.name}", "${dynamodb_table.quakes.nmae}"),
        src.replace("replica_region = \"eu-west-1\"", "replica_region = \"mars-1\""),
        src.replace("cidr = \"10.0.0.0/16\"", "cidr = \"10.0.0.0/33\""),
        src.replace("vpc = \"vpc.main\"", "vpc = \"vpc.mian\""),
        src.replace("[vpc.main]", "[vpcc.main]"),
        src.replace("az = \"b\"", "az = \"q\""),
        src.replace("${var.alert_email}", "${var.nobody}"),
        src.replace("from_port = 80,", "from_port = \"eighty\","),
        src.replace("10.0.11.0/24", "10.0.10.128/25"),
        src.replace("[stack]", "[stack\n"),
    ];
    let mut broken = broken.to_vec();
    // And generated ones: random lines deleted, duplicated, cut or given junk, kept when the
    // library rejects them (some mutations leave a valid stack).
    let lines: Vec<&str> = src.lines().collect();
    while broken.len() < 60 {
        let mut m: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
        let i = rand::random_range(0..m.len());
        match rand::random_range(0..4) {
            0 => drop(m.remove(i)),
            1 => m.insert(i, m[i].clone()),
            2 => m[i] = m[i].chars().take(m[i].len() / 2).collect(),
            _ => m[i].push_str(" = ]["),
        }
        let text = m.join("\n");
        if provisioner::load("m.toml", &text, &common::chosen()).is_err() {
            broken.push(text);
        }
    }
    for (i, b) in broken.iter().enumerate() {
        assert_ne!(b, &src, "mutation {i} applies");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.toml");
        std::fs::write(&path, b).unwrap();
        for cmd in ["plan", "apply", "destroy"] {
            let mut args = vec![cmd, path.to_str().unwrap()];
            if cmd != "plan" {
                args.push("--yes");
            }
            let r = run(&proxy.url, &args);
            ok(&r, 1, &format!("{cmd} of broken stack {i}"));
            assert!(r.2.contains("broken.toml:"), "located diagnostic: {}", r.2);
        }
    }
    assert!(proxy.calls().is_empty(), "no AWS call: {:?}", proxy.calls().iter().map(|c| &c.action).collect::<Vec<_>>());
}

/// `apply` of `stack` through `proxy`, sent SIGINT `after` the first call for which `when` holds;
/// its output once it has ended.
async fn interrupted_apply(
    proxy: &Proxy,
    stack: &str,
    when: fn(&Call) -> bool,
    after: Duration,
) -> std::process::Output {
    let child = common::cli(&proxy.url)
        .args(["apply", stack, "--yes"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    while !proxy.calls().iter().any(when) {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(after).await;
    let sent = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    child.wait_with_output().unwrap()
}

/// Ctrl-C while the stack is still being read (the lock taken, nothing changed yet): the run
/// ends properly - nothing changed, exit 1, the lock released so the next run goes ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupt_while_reading_changes_nothing_and_frees_the_lock() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    proxy.set_faults(0.0, Duration::from_millis(40));
    let (_d, stack) = variant(PROD_NET, "early", &[]);
    // The lock is a conditional PutItem; reading the stack takes many calls after it.
    let out =
        interrupted_apply(&proxy, &stack, |c| c.action.ends_with("PutItem") && c.status < 300, Duration::ZERO).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted before any change; nothing was changed"), "{stderr}");
    assert!(proxy.calls().iter().all(|c| !mutating(c)), "nothing was changed");
    assert!(owned(&moto.ec2(), "early").await.is_empty());
    ok(&run(&proxy.url, &["apply", &stack, "--yes"]), 0, "the lock was released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_interrupt_finishes_running_steps_and_stops() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    proxy.set_faults(0.0, Duration::from_millis(40));
    let (_d, stack) = variant(PROD_NET, "interrupt", &[]);
    let out = interrupted_apply(&proxy, &stack, mutating, Duration::from_millis(100)).await;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("Interrupted: finishing the operations in progress"), "{stderr}");
    assert!(stdout.contains("Stopped after") && stdout.contains("  skipped: "), "{stdout}");
    // Every step that started also finished: nothing was cut off.
    for line in stdout.lines().filter(|l| l.ends_with(": Creating...") || l.ends_with(": Modifying...")) {
        let step = line.rsplit_once(": ").unwrap().0;
        assert!(
            stdout.lines().any(|l| l.starts_with(&format!("{step}: ")) && l.contains(" complete after ")),
            "{step} started but did not finish:\n{stdout}"
        );
    }
    // The run ended properly, so its lock is gone and a rerun completes the stack.
    ok(&run(&proxy.url, &["apply", &stack, "--yes"]), 0, "rerun after the interrupt");
    ok(&run(&proxy.url, &["plan", &stack]), 0, "converged");
    let live = owned(&moto.ec2(), "interrupt").await;
    assert_no_duplicates(&live, "after the interrupt");
    assert_eq!(live.len(), 14);
}

/// A resource may live in another region than its stack: created, found, planned, moved and
/// destroyed there, with the other regions untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_live_in_the_regions_they_name() {
    let moto = Moto::start().await;
    let src = |edge: &str| {
        format!(
            r#"[stack]
name = "regions"
region = "eu-central-1"

[vpc.home]
cidr = "10.0.0.0/16"

[vpc.edge]
cidr = "10.1.0.0/16"
region = "{edge}"

[subnet.edge_a]
vpc = "vpc.edge"
cidr = "10.1.1.0/24"
az = "a"
region = "{edge}"
"#
        )
    };
    let (_dir, path) = stack_file();
    let path = path.as_str();
    let vpcs = |region: &'static str| {
        let ec2 = moto.ec2_in(region);
        async move {
            let f = aws_sdk_ec2::types::Filter::builder().name("tag:provisioner:stack").values("regions").build();
            let out = ec2.describe_vpcs().filters(f).send().await.unwrap();
            out.vpcs()
                .iter()
                .filter_map(|v| v.tags().iter().find(|t| t.key() == Some("provisioner:id")).and_then(|t| t.value()))
                .map(str::to_owned)
                .collect::<BTreeSet<String>>()
        }
    };
    let set = |xs: &[&str]| xs.iter().map(|x| (*x).to_owned()).collect::<BTreeSet<String>>();

    // A zone letter is checked against the resource's own region.
    std::fs::write(path, src("us-east-1").replace("az = \"a\"", "az = \"f\"")).unwrap();
    ok(&run(&moto.url, &["validate", path]), 0, "us-east-1 has zone f");
    std::fs::write(path, src("eu-west-1").replace("az = \"a\"", "az = \"f\"")).unwrap();
    let r = run(&moto.url, &["validate", path]);
    ok(&r, 1, "eu-west-1 has no zone f");
    assert!(r.2.contains("eu-west-1 does not have"), "{}", r.2);
    std::fs::write(path, src("mars-north-1")).unwrap();
    let r = run(&moto.url, &["validate", path]);
    ok(&r, 1, "an unknown region");
    assert!(r.2.contains("region"), "{}", r.2);

    std::fs::write(path, src("us-east-1")).unwrap();
    ok(&run(&moto.url, &["apply", path, "--yes"]), 0, "apply in two regions");
    assert_eq!(vpcs("eu-central-1").await, set(&["vpc.home"]));
    assert_eq!(vpcs("us-east-1").await, set(&["vpc.edge"]));
    let r = run(&moto.url, &["plan", path]);
    ok(&r, 0, "plan after apply");
    let r = run(&moto.url, &["outputs", path, "--json"]);
    let out: serde_json::Value = serde_json::from_str(&r.1).unwrap();
    assert_eq!(out["subnet.edge_a"]["availability_zone"], "us-east-1a");

    // Another region is another resource.
    std::fs::write(path, src("eu-west-1")).unwrap();
    let r = run(&moto.url, &["plan", path]);
    ok(&r, 2, "plan a move");
    assert!(r.1.contains("-/+ vpc.edge {") && r.1.contains("-/+ subnet.edge_a {"), "{}", r.1);
    assert!(r.1.contains("~ region = \"us-east-1\" -> \"eu-west-1\" # forces replacement"), "{}", r.1);
    assert!(!r.1.contains("vpc.home"), "{}", r.1);
    ok(&run(&moto.url, &["apply", path, "--yes"]), 0, "apply the move");
    assert!(vpcs("us-east-1").await.is_empty(), "the old one is gone");
    assert_eq!(vpcs("eu-west-1").await, set(&["vpc.edge"]));
    ok(&run(&moto.url, &["plan", path]), 0, "plan after the move");

    ok(&run(&moto.url, &["destroy", path, "--yes"]), 0, "destroy");
    for region in ["eu-central-1", "us-east-1", "eu-west-1"] {
        assert!(vpcs(region).await.is_empty(), "nothing left in {region}");
    }
}

/// A kind of another service (CloudWatch Logs) on the same engine: found by its name prefix,
/// created, changed in place, drift repaired, destroyed; a bad retention is refused before any
/// call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_groups_on_the_same_engine() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    let ep = proxy.url.clone();
    let src = |web: i64, team: &str| {
        format!(
            "[stack]\nname = \"logs\"\nregion = \"eu-central-1\"\ntags = {{ project = \"quake\" }}\n\n\
             [log_group.web]\nretention_days = {web}\n\n\
             [log_group.hosts]\nretention_days = 7\ntags = {{ team = \"{team}\" }}\n"
        )
    };
    let (_dir, path) = stack_file();
    let path = path.as_str();
    let groups = || async {
        let out = moto.logs().describe_log_groups().log_group_name_prefix("/logs/").send().await.unwrap();
        out.log_groups()
            .iter()
            .map(|g| (g.log_group_name().unwrap().to_owned(), g.retention_in_days()))
            .collect::<BTreeMap<String, Option<i32>>>()
    };

    std::fs::write(path, src(31, "ops")).unwrap();
    let r = run(&ep, &["plan", path]);
    ok(&r, 1, "a retention CloudWatch Logs does not offer");
    assert!(r.2.contains("bad-retention") && r.2.contains("did you mean 30"), "{}", r.2);
    assert!(proxy.take_calls().is_empty(), "refused before any call");

    std::fs::write(path, src(30, "ops")).unwrap();
    let r = run(&ep, &["apply", path, "--yes"]);
    ok(&r, 0, "apply");
    assert!(r.1.contains("2 added"), "{}", r.1);
    let want = |web: i32, hosts: i32| {
        BTreeMap::from([("/logs/hosts".to_owned(), Some(hosts)), ("/logs/web".to_owned(), Some(web))])
    };
    assert_eq!(groups().await, want(30, 7));
    let described = moto.logs().describe_log_groups().log_group_name_prefix("/logs/hosts").send().await.unwrap();
    let arn = described.log_groups()[0].log_group_arn().unwrap().to_owned();
    let tags = moto.logs().list_tags_for_resource().resource_arn(arn).send().await.unwrap();
    let tags = tags.tags().unwrap();
    assert_eq!(tags.get("team").map(String::as_str), Some("ops"));
    assert_eq!(tags.get("provisioner:id").map(String::as_str), Some("log_group.hosts"));
    proxy.take_calls();
    let r = run(&ep, &["plan", path]);
    ok(&r, 0, "plan after apply");
    let calls: Vec<String> = proxy.take_calls().into_iter().map(|c| c.action).collect();
    let logs_calls = calls.iter().filter(|a| a.starts_with("Logs_")).count();
    assert_eq!(logs_calls, 3, "one list and one tag read per group: {calls:?}");

    // In place: a retention and a tag.
    std::fs::write(path, src(14, "platform")).unwrap();
    let r = run(&ep, &["plan", path]);
    ok(&r, 2, "plan changes");
    assert!(r.1.contains("  ~ log_group.web {") && r.1.contains("~ retention_days = 30 -> 14"), "{}", r.1);
    assert!(
        r.1.contains("  ~ log_group.hosts {") && r.1.contains("Plan: 0 to add, 2 to change, 0 to destroy."),
        "{}",
        r.1
    );
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "apply changes");
    assert_eq!(groups().await, want(14, 7));
    ok(&run(&ep, &["plan", path]), 0, "plan after changes");

    // Drift made by hand is shown and repaired.
    moto.logs().put_retention_policy().log_group_name("/logs/hosts").retention_in_days(1).send().await.unwrap();
    let r = run(&ep, &["plan", path]);
    ok(&r, 2, "plan with drift");
    assert!(r.1.contains("~ retention_days = 1 -> 7"), "{}", r.1);
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "repair");
    assert_eq!(groups().await, want(14, 7));

    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy");
    assert!(groups().await.is_empty(), "nothing left");
}

/// `${kind.name.output}` inside strings: checked before any call, ordering creation, filled in
/// from a resource made in the same apply, and no perpetual diff afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_used_inside_strings() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    let ep = proxy.url.clone();
    let src = |name: &str, arn: &str| {
        format!(
            "[stack]\nname = \"interp\"\nregion = \"eu-central-1\"\n\n\
             [vpc.main]\ncidr = \"10.0.0.0/16\"\ntags = {{ logs = \"group ${{{name}}}\", arn = \"${{{arn}}}\" }}\n\n\
             [log_group.web]\nretention_days = 7\n"
        )
    };
    let (_dir, path) = stack_file();
    let path = path.as_str();

    for (name, arn, code, hint) in [
        ("log_group.nope.name", "log_group.web.arn", "missing-reference", "log_group.web"),
        ("log_group.web.name", "log_group.web.size", "unknown-output", "outputs of log_group"),
        ("log_group.web", "log_group.web.arn", "bad-variable", "${kind.name.output}"),
    ] {
        std::fs::write(path, src(name, arn)).unwrap();
        let r = run(&ep, &["plan", path]);
        ok(&r, 1, name);
        assert!(r.2.contains(code) && r.2.contains(hint), "{name}: {}", r.2);
    }
    assert!(proxy.take_calls().is_empty(), "refused before any call");

    std::fs::write(path, src("log_group.web.name", "log_group.web.arn")).unwrap();
    let r = run(&ep, &["plan", path]);
    ok(&r, 2, "plan from empty");
    assert!(r.1.contains("\"group ${log_group.web.name}\""), "not known before it exists:\n{}", r.1);
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "apply");
    let calls: Vec<String> = proxy.take_calls().into_iter().filter(mutating).map(|c| c.action).collect();
    let at = |a: &str| calls.iter().position(|c| c.ends_with(a)).unwrap_or_else(|| panic!("{a} in {calls:?}"));
    assert!(at("CreateLogGroup") < at("CreateVpc"), "the group before what uses its outputs: {calls:?}");
    let f = aws_sdk_ec2::types::Filter::builder().name("tag:provisioner:stack").values("interp").build();
    let vpcs = moto.ec2().describe_vpcs().filters(f).send().await.unwrap();
    let tags: BTreeMap<String, String> =
        vpcs.vpcs()[0].tags().iter().map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned())).collect();
    assert_eq!(tags["logs"], "group /interp/web");
    assert!(
        tags["arn"].starts_with("arn:aws:logs:eu-central-1:") && tags["arn"].ends_with(":log-group:/interp/web"),
        "{tags:?}"
    );
    let r = run(&ep, &["plan", path]);
    ok(&r, 0, "plan after apply: the filled-in values are what is live");
    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy");
}

/// The services' table from their own layout file: created with its indexes and settings, no
/// diff afterwards, used by the services' own store, changed in place, protected from deletion
/// until told otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_table_from_their_layout_file() {
    use quake::store::Store;
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    let ep = proxy.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let layout = root("services/src/store/table.json");
    let src = |layout: &str, ttl: &str, stream: &str, protect: bool| {
        let ttl = if ttl.is_empty() { String::new() } else { format!("ttl_attribute = \"{ttl}\"\n") };
        format!(
            "[stack]\nname = \"tbl\"\nregion = \"eu-central-1\"\n\n\
             [dynamodb_table.quakes]\nlayout = \"{layout}\"\n{ttl}point_in_time_recovery = true\n\
             stream = \"{stream}\"\ndeletion_protection = {protect}\ntags = {{ data = \"events\" }}\n"
        )
    };
    let path = dir.path().join("stack.toml");
    let path = path.to_str().unwrap();

    // A layout DynamoDB would refuse, and a missing file: located, no call.
    let bad = dir.path().join("bad.json");
    let mut j: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&layout).unwrap()).unwrap();
    j["AttributeDefinitions"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"AttributeName": "x", "AttributeType": "S"}));
    std::fs::write(&bad, j.to_string()).unwrap();
    for (file, code) in [(bad.to_str().unwrap(), "bad-layout"), ("nowhere.json", "bad-file")] {
        std::fs::write(path, src(file, "expires", "NEW_IMAGE", false)).unwrap();
        let r = run(&ep, &["plan", path]);
        ok(&r, 1, code);
        assert!(r.2.contains(code), "{}", r.2);
    }
    assert!(proxy.take_calls().is_empty());

    std::fs::write(path, src(&layout, "expires", "none", false)).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "apply");
    let ddb = moto.dynamodb();
    let t = ddb.describe_table().table_name("tbl-quakes").send().await.unwrap();
    let t = t.table().unwrap();
    let mut gsis: Vec<&str> = t.global_secondary_indexes().iter().filter_map(|g| g.index_name()).collect();
    gsis.sort();
    assert_eq!(gsis, ["by_feed", "by_time"]);
    assert_eq!(t.billing_mode_summary().and_then(|b| b.billing_mode()).map(|b| b.as_str()), Some("PAY_PER_REQUEST"));
    let ttl = ddb.describe_time_to_live().table_name("tbl-quakes").send().await.unwrap();
    assert_eq!(ttl.time_to_live_description().and_then(|d| d.attribute_name()), Some("expires"));
    let r = run(&ep, &["plan", path]);
    ok(&r, 0, "plan after apply: nothing read back differs");

    // The services' own store works on it: a write, a read by unid, a time window, the feed.
    let store = quake::store::dynamo::DynamoStore::new(ddb.clone(), "tbl-quakes");
    let now = quake::web::now_us();
    let env = common::envelope("20991231_0000001", now, 1);
    store.upsert(&env).await.unwrap();
    assert!(store.get("20991231_0000001").await.unwrap().is_some());
    assert_eq!(store.window(&quake::store::WindowQuery::new(now - 1, now + 1)).await.unwrap().len(), 1);
    assert_eq!(store.changes_since(0, 10).await.unwrap().events.len(), 1);

    // Indexes change in place, one UpdateTable each, and the data stays; a changed key would
    // replace the table, and the plan says so.
    let mut fewer: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&layout).unwrap()).unwrap();
    let dropped = fewer["GlobalSecondaryIndexes"].as_array_mut().unwrap().remove(0);
    let dropped_name = dropped["IndexName"].as_str().unwrap().to_owned();
    let fewer_path = dir.path().join("fewer.json");
    // (`AttributeDefinitions` must name only key attributes: drop those only the index used.)
    let used: BTreeSet<String> = fewer["KeySchema"]
        .as_array()
        .unwrap()
        .iter()
        .chain(
            fewer["GlobalSecondaryIndexes"].as_array().unwrap().iter().flat_map(|g| g["KeySchema"].as_array().unwrap()),
        )
        .map(|k| k["AttributeName"].as_str().unwrap().to_owned())
        .collect();
    fewer["AttributeDefinitions"]
        .as_array_mut()
        .unwrap()
        .retain(|a| used.contains(a["AttributeName"].as_str().unwrap()));
    std::fs::write(&fewer_path, fewer.to_string()).unwrap();
    std::fs::write(path, src(fewer_path.to_str().unwrap(), "expires", "none", false)).unwrap();
    converge(&ep, path, &["~ dynamodb_table.quakes {", "Plan: 0 to add, 1 to change, 0 to destroy."]);
    let t = ddb.describe_table().table_name("tbl-quakes").send().await.unwrap();
    let names: Vec<&str> =
        t.table().unwrap().global_secondary_indexes().iter().filter_map(|g| g.index_name()).collect();
    assert!(!names.contains(&dropped_name.as_str()), "{names:?}");
    assert!(store.get("20991231_0000001").await.unwrap().is_some(), "the table kept its data");
    // Back as an INCLUDE projection: its non-key attributes written and read back as declared.
    let mut include = fewer.clone();
    let mut back = dropped.clone();
    back["Projection"] = serde_json::json!({"ProjectionType": "INCLUDE", "NonKeyAttributes": ["region", "mag"]});
    include["GlobalSecondaryIndexes"].as_array_mut().unwrap().push(back);
    include["AttributeDefinitions"] =
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&layout).unwrap()).unwrap()
            ["AttributeDefinitions"]
            .clone();
    let include_path = dir.path().join("include.json");
    std::fs::write(&include_path, include.to_string()).unwrap();
    std::fs::write(path, src(include_path.to_str().unwrap(), "expires", "none", false)).unwrap();
    converge(&ep, path, &["~ dynamodb_table.quakes {", "Plan: 0 to add, 1 to change, 0 to destroy."]);
    let t = ddb.describe_table().table_name("tbl-quakes").send().await.unwrap();
    let g =
        t.table().unwrap().global_secondary_indexes().iter().find(|g| g.index_name() == Some(&dropped_name)).cloned();
    let p = g.and_then(|g| g.projection().cloned()).unwrap();
    assert_eq!(p.projection_type().map(|t| t.as_str()), Some("INCLUDE"));
    let mut attrs = p.non_key_attributes().to_vec();
    attrs.sort();
    assert_eq!(attrs, ["mag", "region"]);
    std::fs::write(path, src(&layout, "expires", "none", false)).unwrap();
    converge(&ep, path, &["~ dynamodb_table.quakes {", "Plan: 0 to add, 1 to change, 0 to destroy."]);
    assert!(store.get("20991231_0000001").await.unwrap().is_some(), "the table kept its data");
    // The table's key attribute renamed (`unid` is used by no index).
    let rekeyed = std::fs::read_to_string(&layout).unwrap().replace("\"unid\"", "\"pk2\"");
    let rekeyed_path = dir.path().join("rekeyed.json");
    std::fs::write(&rekeyed_path, rekeyed).unwrap();
    std::fs::write(path, src(rekeyed_path.to_str().unwrap(), "expires", "none", false)).unwrap();
    let r = run(&ep, &["plan", path]);
    ok(&r, 2, "plan a new key");
    assert!(r.1.contains("-/+ dynamodb_table.quakes") && r.1.contains("# forces replacement"), "{}", r.1);

    // A renamed TTL attribute is two TTL changes, which DynamoDB refuses within an hour: the
    // plan says so and apply changes nothing; in two applies it goes through.
    std::fs::write(path, src(&layout, "gone_at", "NEW_AND_OLD_IMAGES", true)).unwrap();
    let r = run(&ep, &["plan", path]);
    ok(&r, 1, "plan a TTL rename");
    assert!(r.1.contains("# cannot be applied: renaming the TTL attribute"), "{}", r.1);
    assert!(r.2.contains("remove `ttl_attribute` and apply, then set it to `gone_at`"), "{}", r.2);
    proxy.take_calls();
    ok(&run(&ep, &["apply", path, "--yes"]), 1, "apply a TTL rename");
    assert!(proxy.take_calls().iter().all(|c| !c.action.contains("Update")), "nothing was changed");
    // In place: TTL off, a stream, deletion protection on; then the new TTL attribute.
    // (Changing the view of an enabled stream, off then on, stays unproven: moto never enables
    // a stream twice; so does the hour between TTL changes: moto does not count it.)
    std::fs::write(path, src(&layout, "", "NEW_AND_OLD_IMAGES", true)).unwrap();
    converge(
        &ep,
        path,
        &[
            "~ dynamodb_table.quakes {",
            "~ ttl_attribute = \"expires\" -> (none)",
            "~ deletion_protection = false -> true",
            "~ stream = \"none\" -> \"NEW_AND_OLD_IMAGES\"",
            "Plan: 0 to add, 1 to change, 0 to destroy.",
        ],
    );
    std::fs::write(path, src(&layout, "gone_at", "NEW_AND_OLD_IMAGES", true)).unwrap();
    converge(&ep, path, &["~ ttl_attribute = (none) -> \"gone_at\"", "Plan: 0 to add, 1 to change, 0 to destroy."]);

    // Protected: destroy is refused before anything is deleted (a log group beside the table
    // stays too) and says how to lift it; `--exclude-protected` deletes the rest; turned off,
    // the table goes.
    let with_logs =
        format!("{}\n[log_group.beside]\nretention_days = 7\n", src(&layout, "gone_at", "NEW_AND_OLD_IMAGES", true));
    std::fs::write(path, &with_logs).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "a log group beside");
    proxy.take_calls();
    let r = run(&ep, &["destroy", path, "--yes"]);
    ok(&r, 1, "destroy a protected table");
    assert!(r.2.contains("refused, nothing was changed"), "{}", r.2);
    assert!(r.2.contains("dynamodb_table.quakes: set `deletion_protection = false` on it and apply first"), "{}", r.2);
    assert!(r.2.contains("--exclude-protected"), "{}", r.2);
    // (The lock table's items aside.)
    let deletes: Vec<String> = proxy
        .take_calls()
        .into_iter()
        .filter(|c| c.action.contains("Delete") && !c.body.contains(provisioner::lock::TABLE))
        .map(|c| c.action)
        .collect();
    assert!(deletes.is_empty(), "nothing deleted: {deletes:?}");
    let r = run(&ep, &["destroy", path, "--yes", "--exclude-protected"]);
    ok(&r, 0, "destroy all but the protected table");
    assert!(r.1.contains("keeping dynamodb_table.quakes (protected)"), "{}", r.1);
    assert!(r.1.contains("- log_group.beside"), "{}", r.1);
    assert!(!r.1.contains("- dynamodb_table.quakes"), "{}", r.1);
    assert!(ddb.describe_table().table_name("tbl-quakes").send().await.is_ok());
    std::fs::write(path, src(&layout, "gone_at", "NEW_AND_OLD_IMAGES", false)).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "unprotect");
    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy");
    let tables = ddb.list_tables().send().await.unwrap();
    assert!(!tables.table_names().iter().any(|n| n.starts_with("tbl-")), "{:?}", tables.table_names());
}

/// A global table (version 2019.11.21). moto accepts replica updates and ignores them, so the
/// proxy EMULATES their effect on `DescribeTable` (see `ProxyState::global_tables`): what is
/// proven here is the requests - which replica updates, one per call, in which order - and that
/// a plan over AWS's documented answer is empty. Replication itself stays unproven.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_table_adds_and_removes_replicas() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    proxy.emulate_global_tables();
    let ep = proxy.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let layout = root("services/src/store/table.json");
    let src = |replicas: &str, stream: &str| {
        format!(
            "[stack]\nname = \"glob\"\nregion = \"eu-central-1\"\n\n\
             [dynamodb_table.quakes]\nlayout = \"{layout}\"\nstream = \"{stream}\"\nreplicas = [{replicas}]\n"
        )
    };
    let path = dir.path().join("stack.toml");
    let path = path.to_str().unwrap();
    for (replicas, stream, code) in [
        ("\"eu-west-1\"", "none", "replicas-need-stream"),
        ("\"eu-central-1\"", "NEW_AND_OLD_IMAGES", "bad-replica"),
        ("\"eu-west-1\", \"eu-west-1\"", "NEW_AND_OLD_IMAGES", "bad-replica"),
        ("\"mars-1\"", "NEW_AND_OLD_IMAGES", "bad-enum"),
    ] {
        std::fs::write(path, src(replicas, stream)).unwrap();
        let r = run(&ep, &["validate", path]);
        assert_eq!(r.0, 1, "{replicas}: {}", r.2);
        assert!(r.2.contains(code) || (code == "bad-enum" && r.2.contains("mars-1")), "{replicas}: {}", r.2);
    }
    let replica_updates = |calls: &[Call]| -> Vec<String> {
        calls
            .iter()
            .filter(|c| c.action.ends_with(".UpdateTable") && c.status < 300)
            .filter_map(|c| {
                let call = proxy_body(c);
                let u = call["ReplicaUpdates"].as_array()?.first()?.clone();
                let (op, r) = if u["Create"].is_object() { ("create", &u["Create"]) } else { ("delete", &u["Delete"]) };
                Some(format!("{op} {}", r["RegionName"].as_str()?))
            })
            .collect()
    };

    std::fs::write(path, src("\"eu-west-1\"", "NEW_AND_OLD_IMAGES")).unwrap();
    proxy.take_calls();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "apply with one replica");
    let calls = proxy.take_calls();
    assert_eq!(replica_updates(&calls), ["create eu-west-1"]);
    let created = calls.iter().position(|c| c.action.ends_with(".CreateTable")).unwrap();
    let replicated = calls.iter().position(|c| c.action.ends_with(".UpdateTable")).unwrap();
    assert!(created < replicated, "the table first, then its replica");
    ok(&run(&ep, &["plan", path]), 0, "plan after apply (over the emulated answer)");

    std::fs::write(path, src("\"us-east-1\", \"eu-west-1\"", "NEW_AND_OLD_IMAGES")).unwrap();
    let r = run(&ep, &["plan", path]);
    ok(&r, 2, "plan another replica");
    assert!(r.1.contains("~ replicas"), "{}", r.1);
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "add a replica");
    assert_eq!(replica_updates(&proxy.take_calls()), ["create us-east-1"]);
    std::fs::write(path, src("\"us-east-1\"", "NEW_AND_OLD_IMAGES")).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "remove a replica");
    assert_eq!(replica_updates(&proxy.take_calls()), ["delete eu-west-1"]);
    ok(&run(&ep, &["plan", path]), 0, "in sync");

    // Point-in-time recovery on every copy: the replica is a table of its own region with
    // backups of its own (EMULATED with the replica), and one without them is drift.
    let with_pitr = |replicas: &str| src(replicas, "NEW_AND_OLD_IMAGES") + "point_in_time_recovery = true\n";
    std::fs::write(path, with_pitr("\"us-east-1\"")).unwrap();
    converge(&ep, path, &["~ point_in_time_recovery = false -> true"]);
    let backups = |calls: &[Call]| {
        calls.iter().filter(|c| c.action.ends_with(".UpdateContinuousBackups") && c.status < 300).count()
    };
    assert_eq!(backups(&proxy.take_calls()), 2, "the table and its replica");
    std::fs::write(path, with_pitr("\"us-east-1\", \"eu-west-1\"")).unwrap();
    converge(&ep, path, &["~ replicas"]);
    assert_eq!(backups(&proxy.take_calls()), 3, "a new replica gets recovery too (and so, again, the others)");
    proxy.state.replica_pitr.lock().unwrap().insert(("eu-west-1".into(), "glob-quakes".into()), false);
    converge(&ep, path, &["~ point_in_time_recovery = false -> true"]);
    std::fs::write(path, src("\"us-east-1\"", "NEW_AND_OLD_IMAGES")).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "recovery off, one replica less");
    proxy.take_calls();

    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy");
    let calls = proxy.take_calls();
    assert_eq!(replica_updates(&calls), ["delete us-east-1"], "replicas go first");
    let unreplicated = calls.iter().position(|c| c.action.ends_with(".UpdateTable")).unwrap();
    let deleted = calls.iter().position(|c| c.action.ends_with(".DeleteTable")).unwrap();
    assert!(unreplicated < deleted, "the replica before the table");
}

/// The JSON body of a recorded JSON-protocol call.
fn proxy_body(c: &Call) -> serde_json::Value {
    serde_json::from_str(&c.body).unwrap_or_default()
}

/// An ECR repository: created with its settings and lifecycle rule, no diff afterwards, changed
/// in place, destroyed; an upper-case name is refused before any call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_repository() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    // Discovery reads the images of every repository the stack owns over the registry API,
    // which moto does not serve.
    common::registry();
    let ep = proxy.url.clone();
    let (_dir, path) = stack_file();
    let path = path.as_str();
    let src = |name: &str, mutability: &str, scan: bool, keep: &str| {
        format!(
            "[stack]\nname = \"{name}\"\nregion = \"eu-central-1\"\n\n\
             [ecr_repository.quake]\nimage_tag_mutability = \"{mutability}\"\nscan_on_push = {scan}\n{keep}\n"
        )
    };
    std::fs::write(path, src("Repo", "IMMUTABLE", true, "keep_images = 10")).unwrap();
    let r = run(&ep, &["plan", path]);
    ok(&r, 1, "an upper-case repository name");
    assert!(r.2.contains("lower case"), "{}", r.2);
    assert!(proxy.take_calls().is_empty());

    std::fs::write(path, src("repo", "IMMUTABLE", false, "keep_images = 10")).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "apply");
    let repos = moto.ecr().describe_repositories().repository_names("repo/quake").send().await.unwrap();
    let repo = &repos.repositories()[0];
    assert_eq!(repo.image_tag_mutability().map(|m| m.as_str()), Some("IMMUTABLE"));
    assert!(!repo.image_scanning_configuration().is_some_and(|c| c.scan_on_push()));
    let policy = moto.ecr().get_lifecycle_policy().repository_name("repo/quake").send().await.unwrap();
    assert!(policy.lifecycle_policy_text().unwrap().contains("\"countNumber\":10"));
    ok(&run(&ep, &["plan", path]), 0, "plan after apply");
    let out: serde_json::Value = serde_json::from_str(&run(&ep, &["outputs", path, "--json"]).1).unwrap();
    assert!(out["ecr_repository.quake"]["url"].as_str().unwrap().ends_with("/repo/quake"), "{out}");

    // Scanning is turned on here, not off: the SDK leaves a `false` default out of the request
    // and moto then keeps the old value, so turning it off stays unproven on moto.
    std::fs::write(path, src("repo", "MUTABLE", true, "")).unwrap();
    converge(
        &ep,
        path,
        &[
            "~ image_tag_mutability = \"IMMUTABLE\" -> \"MUTABLE\"",
            "~ scan_on_push = false -> true",
            "~ keep_images = 10 -> (none)",
        ],
    );
    assert!(moto.ecr().get_lifecycle_policy().repository_name("repo/quake").send().await.is_err(), "the rule is gone");

    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy");
    assert!(moto.ecr().describe_repositories().send().await.unwrap().repositories().is_empty());
}

/// An IAM role: trusted services, inline statements naming another resource's ARN, a managed
/// policy; compared canonically (no diff after apply, none for reordered actions), changed in
/// place, and taken apart in order on destroy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_with_canonical_policies() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    let ep = proxy.url.clone();
    let policy = moto
        .iam()
        .create_policy()
        .policy_name("extra")
        .policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#,
        )
        .send()
        .await
        .unwrap();
    let extra = policy.policy().unwrap().arn().unwrap().to_owned();
    let (_dir, path) = stack_file();
    let path = path.as_str();
    let src = |actions: &str, managed: &str, region: &str| {
        format!(
            "[stack]\nname = \"roles\"\nregion = \"eu-central-1\"\n\n[log_group.web]\n\n\
             [iam_role.task]\n{region}trusted_services = [\"ecs-tasks.amazonaws.com\"]\nmanaged_policies = [{managed}]\n\
             statements = [{{ actions = [{actions}], resources = [\"${{log_group.web.arn}}\"] }}]\n"
        )
    };
    std::fs::write(path, src("\"logs:PutLogEvents\"", "", "region = \"us-east-1\"\n")).unwrap();
    let r = run(&ep, &["validate", path]);
    ok(&r, 1, "a region on a global service");
    assert!(r.2.contains("global-service"), "{}", r.2);

    let two = "\"logs:PutLogEvents\", \"logs:CreateLogStream\"";
    std::fs::write(path, src(two, &format!("\"{extra}\""), "")).unwrap();
    proxy.take_calls();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "apply");
    let role = moto.iam().get_role().role_name("roles-task").send().await.unwrap();
    assert_eq!(role.role().unwrap().path(), "/roles/");
    let inline = moto.iam().get_role_policy().role_name("roles-task").policy_name("inline").send().await.unwrap();
    let doc = percent_encoding::percent_decode_str(inline.policy_document()).decode_utf8_lossy().into_owned();
    assert!(doc.contains(":log-group:/roles/web") && doc.contains("logs:CreateLogStream"), "{doc}");
    // ECS tasks of this account only (AWS's confused-deputy conditions on a task role's trust).
    let trust = |r: &aws_sdk_iam::operation::get_role::GetRoleOutput| {
        let doc = r.role().unwrap().assume_role_policy_document().unwrap_or_default();
        percent_encoding::percent_decode_str(doc).decode_utf8_lossy().into_owned()
    };
    let t = trust(&role);
    assert!(t.contains(r#""aws:SourceAccount":"123456789012""#) && t.contains("arn:aws:ecs:*:123456789012:*"), "{t}");
    ok(&run(&ep, &["plan", path]), 0, "plan after apply: IAM's URL-encoded answers read as declared");
    // A trust without them (a role made before, or edited by hand) is a difference, repaired.
    let bare = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    moto.iam().update_assume_role_policy().role_name("roles-task").policy_document(bare).send().await.unwrap();
    converge(&ep, path, &["ecs-tasks.amazonaws.com (without its source conditions)"]);
    assert!(trust(&moto.iam().get_role().role_name("roles-task").send().await.unwrap()).contains("aws:SourceAccount"));
    std::fs::write(path, src("\"logs:CreateLogStream\", \"logs:PutLogEvents\"", &format!("\"{extra}\""), "")).unwrap();
    ok(&run(&ep, &["plan", path]), 0, "reordered actions are the same policy");

    std::fs::write(path, src(&format!("{two}, \"logs:DescribeLogStreams\""), "", "")).unwrap();
    converge(&ep, path, &["~ iam_role.task {", "Plan: 0 to add, 1 to change, 0 to destroy."]);
    let attached = moto.iam().list_attached_role_policies().role_name("roles-task").send().await.unwrap();
    assert!(attached.attached_policies().is_empty());

    std::fs::write(path, src(two, &format!("\"{extra}\""), "")).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "attach again");
    proxy.take_calls();
    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy");
    let calls: Vec<String> = proxy.take_calls().into_iter().filter(mutating).map(|c| c.action).collect();
    let at = |a: &str| calls.iter().position(|c| c == a).unwrap_or_else(|| panic!("{a} in {calls:?}"));
    assert!(at("DetachRolePolicy") < at("DeleteRole") && at("DeleteRolePolicy") < at("DeleteRole"), "{calls:?}");
    assert!(moto.iam().get_role().role_name("roles-task").send().await.is_err(), "the role is gone");
}

/// An instance profile holding a role: made after its role, switched to another role in place,
/// and on destroy the role leaves the profile before the profile goes, the profile before the
/// role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_profile_holds_its_role() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    let ep = proxy.url.clone();
    let (_dir, path) = stack_file();
    let path = path.as_str();
    let src = |role: &str| {
        format!(
            "[stack]\nname = \"prof\"\nregion = \"eu-central-1\"\n\n\
             [iam_role.host]\ntrusted_services = [\"ec2.amazonaws.com\"]\n\n\
             [iam_role.other]\ntrusted_services = [\"ec2.amazonaws.com\"]\n\n\
             [iam_instance_profile.host]\nrole = \"iam_role.{role}\"\n"
        )
    };
    std::fs::write(path, src("host")).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "apply");
    let roles_in = || async {
        let p = moto.iam().get_instance_profile().instance_profile_name("prof-host").send().await.unwrap();
        p.instance_profile().unwrap().roles().iter().map(|r| r.role_name().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(roles_in().await, ["prof-host"]);
    ok(&run(&ep, &["plan", path]), 0, "plan after apply");
    std::fs::write(path, src("other")).unwrap();
    converge(&ep, path, &["~ role = \"iam_role.host\" -> \"iam_role.other\""]);
    assert_eq!(roles_in().await, ["prof-other"]);
    proxy.take_calls();
    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy");
    let calls: Vec<String> = proxy.take_calls().into_iter().filter(mutating).map(|c| c.action).collect();
    let at = |a: &str| calls.iter().position(|c| c == a).unwrap_or_else(|| panic!("{a} in {calls:?}"));
    assert!(at("RemoveRoleFromInstanceProfile") < at("DeleteInstanceProfile"), "{calls:?}");
    let last_role = calls.iter().rposition(|c| c == "DeleteRole").unwrap();
    assert!(at("DeleteInstanceProfile") < last_role, "{calls:?}");
    assert!(moto.iam().get_instance_profile().instance_profile_name("prof-host").send().await.is_err());
}

/// An ECS cluster: found with one list and one batched describe (and one list of its services), Container Insights switched in
/// place, tags, destroyed (a deleted cluster that stays listed as INACTIVE is not found again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecs_cluster() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    let ep = proxy.url.clone();
    let (_dir, path) = stack_file();
    let path = path.as_str();
    let src = |insights: bool, team: &str| {
        format!(
            "[stack]\nname = \"cl\"\nregion = \"eu-central-1\"\n\n\
             [ecs_cluster.main]\ncontainer_insights = {insights}\ntags = {{ team = \"{team}\" }}\n"
        )
    };
    std::fs::write(path, src(false, "ops")).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "apply");
    let d = moto.ecs().describe_clusters().clusters("cl-main").send().await.unwrap();
    assert_eq!(d.clusters()[0].status(), Some("ACTIVE"));
    proxy.take_calls();
    ok(&run(&ep, &["plan", path]), 0, "plan after apply");
    let ecs_calls: Vec<String> =
        proxy.take_calls().into_iter().map(|c| c.action).filter(|a| a.contains("EC2ContainerService")).collect();
    // One list of clusters shared by both ECS kinds, one describe of them, one list of each
    // cluster's services (the service kind looks for what a removed resource left).
    assert_eq!(ecs_calls.len(), 3, "one list, one describe, one list of services: {ecs_calls:?}");
    std::fs::write(path, src(true, "platform")).unwrap();
    converge(&ep, path, &["~ container_insights = false -> true"]);
    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy");
    ok(&run(&ep, &["plan", path]), 2, "gone: planned again from nothing");
    let d = moto.ecs().describe_clusters().clusters("cl-main").send().await.unwrap();
    assert!(d.clusters().iter().all(|c| c.status() != Some("ACTIVE")), "{:?}", d.clusters());
}

/// The network part every load-balancer test stands on.
const LB_NET: &str = "[stack]\nname = \"lb\"\nregion = \"eu-central-1\"\n\n\
    [vpc.main]\ncidr = \"10.0.0.0/16\"\n\n\
    [subnet.a]\nvpc = \"vpc.main\"\ncidr = \"10.0.1.0/24\"\naz = \"a\"\n\n\
    [subnet.b]\nvpc = \"vpc.main\"\ncidr = \"10.0.2.0/24\"\naz = \"b\"\n\n\
    [security_group.lb]\nvpc = \"vpc.main\"\ndescription = \"load balancer\"\n\n";

/// A load balancer, target group and listener behind a rate-limiting web ACL: made in order,
/// read back with the SDK, plan empty, one in-place change per kind and a forcing one (the
/// target group's port: the new group is made, the listener moves to it, the old group goes),
/// destroyed in reverse (association before the ACL, listener before the group).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balancer_behind_a_web_acl() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    let ep = proxy.url.clone();
    let (_dir, path) = stack_file();
    let path = path.as_str();
    let src = |idle: u32, port: u32, health: &str, action: &str, limit: u32| {
        format!(
            "{LB_NET}[load_balancer.web]\nsubnets = [\"subnet.a\", \"subnet.b\"]\nsecurity_groups = [\"security_group.lb\"]\nidle_timeout = {idle}\n\n\
             [target_group.web]\nvpc = \"vpc.main\"\nport = {port}\nhealth_check_path = \"{health}\"\n\n\
             [listener.http]\nload_balancer = \"load_balancer.web\"\nport = 80\n{action}\n\n\
             [waf_web_acl.web]\nrate_limit = {limit}\nrate_window = 300\nmanaged_rule_groups = [\"AWSManagedRulesCommonRuleSet\"]\n\n\
             [waf_association.web]\nweb_acl = \"waf_web_acl.web\"\nresource = \"load_balancer.web\"\n"
        )
    };
    let forward = "target_group = \"target_group.web\"";
    std::fs::write(path, src(120, 8080, "/readyz", forward, 500)).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "apply");

    let lbs = moto.elb().describe_load_balancers().names("lb-web").send().await.unwrap();
    let lb_arn = lbs.load_balancers()[0].load_balancer_arn().unwrap().to_owned();
    let attrs = moto.elb().describe_load_balancer_attributes().load_balancer_arn(&lb_arn).send().await.unwrap();
    assert!(attrs
        .attributes()
        .iter()
        .any(|a| a.key() == Some("idle_timeout.timeout_seconds") && a.value() == Some("120")));
    let tgs = moto.elb().describe_target_groups().send().await.unwrap();
    let tg = &tgs.target_groups()[0];
    assert!(tg.target_group_name().unwrap().starts_with("lb-web-"), "{tg:?}");
    assert_eq!((tg.port(), tg.health_check_path()), (Some(8080), Some("/readyz")));
    let listeners = moto.elb().describe_listeners().load_balancer_arn(&lb_arn).send().await.unwrap();
    assert_eq!(listeners.listeners()[0].default_actions()[0].target_group_arn(), tg.target_group_arn());
    let acl = moto.waf().get_web_acl_for_resource().resource_arn(&lb_arn).send().await.unwrap();
    let acl = acl.web_acl().expect("the ACL protects the load balancer");
    let rate = acl.rules().iter().find_map(|r| r.statement()?.rate_based_statement()).unwrap();
    assert_eq!((rate.limit(), rate.evaluation_window_sec()), (500, 300));
    ok(&run(&ep, &["plan", path]), 0, "plan after apply");
    let out: serde_json::Value = serde_json::from_str(&run(&ep, &["outputs", path, "--json"]).1).unwrap();
    assert!(out["load_balancer.web"]["url"].as_str().unwrap().starts_with("http://"), "{out}");

    // One in-place change per kind.
    let fixed = "action = \"fixed_response\"\nfixed_status = 503\nfixed_body = \"maintenance\"";
    std::fs::write(path, src(300, 8080, "/healthz", fixed, 1000)).unwrap();
    converge(
        &ep,
        path,
        &[
            "~ idle_timeout = 120 -> 300",
            "~ health_check_path = \"/readyz\" -> \"/healthz\"",
            "~ action = \"forward\" -> \"fixed_response\"",
            "~ rate_limit = 500 -> 1000",
            "Plan: 0 to add, 4 to change, 0 to destroy.",
        ],
    );
    let acl = moto.waf().get_web_acl_for_resource().resource_arn(&lb_arn).send().await.unwrap();
    let rate =
        acl.web_acl().unwrap().rules().iter().find_map(|r| r.statement()?.rate_based_statement().cloned()).unwrap();
    assert_eq!(rate.limit(), 1000);

    // A forcing change: the new group first, the listener moved to it, then the old one goes.
    std::fs::write(path, src(300, 8080, "/healthz", forward, 1000)).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "forward again");
    proxy.take_calls();
    std::fs::write(path, src(300, 8081, "/healthz", forward, 1000)).unwrap();
    converge(&ep, path, &["-/+ target_group.web", "~ port = 8080 -> 8081 # forces replacement", "~ listener.http"]);
    let calls: Vec<String> = proxy.take_calls().into_iter().filter(mutating).map(|c| c.action).collect();
    let at = |a: &str| calls.iter().position(|c| c == a).unwrap_or_else(|| panic!("{a} in {calls:?}"));
    assert!(
        at("CreateTargetGroup") < at("ModifyListener") && at("ModifyListener") < at("DeleteTargetGroup"),
        "{calls:?}"
    );

    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy");
    let calls: Vec<String> = proxy.take_calls().into_iter().filter(mutating).map(|c| c.action).collect();
    let at = |a: &str| calls.iter().position(|c| c.ends_with(a)).unwrap_or_else(|| panic!("{a} in {calls:?}"));
    assert!(at("DisassociateWebACL") < at("DeleteWebACL"), "{calls:?}");
    assert!(
        at("DeleteListener") < at("DeleteTargetGroup") && at("DeleteListener") < at("DeleteLoadBalancer"),
        "{calls:?}"
    );
    assert!(at("DeleteLoadBalancer") < at("DeleteSecurityGroup"), "{calls:?}");
    assert!(moto.elb().describe_load_balancers().send().await.unwrap().load_balancers().is_empty());
    assert!(moto.elb().describe_target_groups().send().await.unwrap().target_groups().is_empty());
    let acls = moto.waf().list_web_acls().scope(aws_sdk_wafv2::types::Scope::Regional).send().await.unwrap();
    assert!(acls.web_acls().is_empty());
}

/// A generated secret: `apply` puts a random value into Parameter Store as a SecureString; no
/// plan, apply, outputs or JSON plan ever shows it; a description change keeps the value; a rerun
/// does not make another; destroy deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_generated_and_never_shown() {
    let moto = Moto::start().await;
    let ep = moto.url.clone();
    let (_dir, path) = stack_file();
    let path = path.as_str();
    let src = |desc: &str| {
        format!("[stack]\nname = \"sec\"\nregion = \"eu-central-1\"\n\n[secret.admin]\ndescription = \"{desc}\"\n")
    };
    std::fs::write(path, src("Grafana admin")).unwrap();
    let printed = std::cell::RefCell::new(String::new());
    let cli = |args: &[&str], code: i32| {
        let r = run(&ep, args);
        ok(&r, code, &args.join(" "));
        printed.borrow_mut().push_str(&format!("{}{}", r.1, r.2));
    };
    cli(&["plan", path], 2);
    cli(&["apply", path, "--yes"], 0);
    let ssm = moto.client::<aws_sdk_ssm::Client>(common::REGION);
    let read = || async {
        let p = ssm.get_parameter().name("/sec/admin").with_decryption(true).send().await.unwrap();
        let p = p.parameter().unwrap().clone();
        (p.r#type().cloned(), p.value().unwrap().to_owned())
    };
    let (kind, value) = read().await;
    assert_eq!(kind, Some(aws_sdk_ssm::types::ParameterType::SecureString));
    assert!(value.len() == 32 && value.chars().all(|c| c.is_ascii_alphanumeric()), "{value}");
    cli(&["plan", path], 0);
    cli(&["apply", path, "--yes"], 0);
    cli(&["plan", path, "--json"], 0);
    cli(&["outputs", path, "--json"], 0);
    std::fs::write(path, src("Grafana admin password")).unwrap();
    cli(&["plan", path], 2);
    cli(&["apply", path, "--yes"], 0);
    cli(&["plan", path], 0);
    assert_eq!(read().await.1, value, "a description change keeps the value");
    cli(&["destroy", path, "--yes"], 0);
    assert!(ssm.get_parameter().name("/sec/admin").send().await.is_err(), "deleted");
    let printed = printed.borrow();
    assert!(printed.contains("/sec/admin"), "{printed}");
    assert!(!printed.contains(&value), "the value was printed:\n{printed}");
}

/// An alerts topic: created with its e-mail subscriptions, planned empty after, an address added
/// and one removed in place (subscribe, unsubscribe), the display name changed in place, an
/// address that is no address refused at validation, destroyed with its subscriptions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alerts_topic_keeps_its_subscriptions() {
    let moto = Moto::start().await;
    let ep = moto.url.clone();
    let (_dir, path) = stack_file();
    let path = path.as_str();
    let src = |name: &str, emails: &str| {
        format!(
            "[stack]\nname = \"tp\"\nregion = \"eu-central-1\"\n\n[variables]\nops = \"ops@example.org\"\n\n\
             [sns_topic.alerts]\ndisplay_name = \"{name}\"\nemail_subscriptions = [{emails}]\n"
        )
    };
    let sns = moto.client::<aws_sdk_sns::Client>(common::REGION);
    let emails = || async {
        let topics = sns.list_topics().send().await.unwrap();
        let arn = topics
            .topics()
            .iter()
            .filter_map(|t| t.topic_arn())
            .find(|a| a.ends_with(":tp-alerts"))
            .unwrap()
            .to_owned();
        let subs = sns.list_subscriptions_by_topic().topic_arn(&arn).send().await.unwrap();
        let mut e: Vec<String> = subs.subscriptions().iter().filter_map(|s| s.endpoint()).map(str::to_owned).collect();
        e.sort();
        let name = sns.get_topic_attributes().topic_arn(&arn).send().await.unwrap();
        (e, name.attributes().and_then(|a| a.get("DisplayName")).cloned().unwrap_or_default())
    };
    std::fs::write(path, src("Quake alerts", "\"${var.ops}\", \"dev@example.org\"")).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "create");
    assert_eq!(
        emails().await,
        (vec!["dev@example.org".to_owned(), "ops@example.org".to_owned()], "Quake alerts".to_owned())
    );
    ok(&run(&ep, &["plan", path]), 0, "in sync: subscriptions read back in any order");
    std::fs::write(path, src("Quake", "\"${var.ops}\", \"oncall@example.org\"")).unwrap();
    converge(&ep, path, &["~ sns_topic.alerts"]);
    assert_eq!(
        emails().await,
        (vec!["oncall@example.org".to_owned(), "ops@example.org".to_owned()], "Quake".to_owned())
    );
    std::fs::write(path, src("Quake", "\"ops-at-example.org\"")).unwrap();
    let r = run(&ep, &["validate", path]);
    assert!(r.0 == 1 && r.2.contains("bad-email"), "{r:?}");
    std::fs::write(path, src("Quake", "\"${var.ops}\"")).unwrap();
    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy");
    let topics = sns.list_topics().send().await.unwrap();
    assert!(topics.topics().iter().all(|t| !t.topic_arn().unwrap_or_default().ends_with(":tp-alerts")));
    assert!(
        sns.list_subscriptions().send().await.unwrap().subscriptions().is_empty(),
        "subscriptions go with the topic"
    );
}

/// An EC2 host: AMI from the public SSM parameter, IMDSv2 required, no key pair, encrypted gp3
/// root volume, user data from a file; the volume grows in place; a changed user data file
/// replaces the host with the new one made first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_from_its_user_data() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    let ep = proxy.url.clone();
    let (dir, path) = stack_file();
    let path = path.as_str();
    std::fs::write(dir.path().join("host.yaml"), "#cloud-config\npackages: [docker]\n").unwrap();
    let with = |gb: u32, profile: &str| {
        format!(
            "{}[iam_role.host]\ntrusted_services = [\"ec2.amazonaws.com\"]\n\n\
             [iam_instance_profile.host]\nrole = \"iam_role.host\"\n\n\
             [iam_instance_profile.other]\nrole = \"iam_role.host\"\n\n\
             [instance.host]\ninstance_type = \"t3.small\"\nsubnet = \"subnet.a\"\nsecurity_groups = [\"security_group.lb\"]\n\
             instance_profile = \"iam_instance_profile.{profile}\"\nuser_data = \"host.yaml\"\nroot_volume_gb = {gb}\n",
            LB_NET.replace("name = \"lb\"", "name = \"host\"")
        )
    };
    let src = |gb: u32| with(gb, "host");
    std::fs::write(path, src(20)).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "apply");
    let host = || async {
        let d = moto.ec2().describe_instances().filters(stack_filter("host")).send().await.unwrap();
        let alive: Vec<aws_sdk_ec2::types::Instance> = d
            .reservations()
            .iter()
            .flat_map(|r| r.instances().iter().cloned())
            .filter(|i| i.state().and_then(|s| s.name()).is_some_and(|n| n.as_str() == "running"))
            .collect();
        assert_eq!(alive.len(), 1, "one host: {alive:?}");
        alive[0].clone()
    };
    let first = host().await;
    assert_eq!(first.metadata_options().and_then(|m| m.http_tokens()).map(|t| t.as_str()), Some("required"));
    assert_eq!(first.metadata_options().and_then(|m| m.http_put_response_hop_limit()), Some(1), "host network only");
    assert!(first.key_name().is_none(), "no key pair");
    assert!(first.iam_instance_profile().unwrap().arn().unwrap().ends_with("/host-host"));
    let ami = moto
        .client::<aws_sdk_ssm::Client>(common::REGION)
        .get_parameter()
        .name("/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")
        .send()
        .await
        .unwrap();
    assert_eq!(first.image_id(), ami.parameter().unwrap().value());
    ok(&run(&ep, &["plan", path]), 0, "plan after apply");

    std::fs::write(path, src(30)).unwrap();
    converge(&ep, path, &["~ root_volume_gb = 20 -> 30", "Plan: 0 to add, 1 to change, 0 to destroy."]);
    assert_eq!(host().await.instance_id(), first.instance_id(), "grown in place");

    // Another profile: its association replaced on the running host.
    std::fs::write(path, with(30, "other")).unwrap();
    converge(&ep, path, &["~ instance_profile = \"iam_instance_profile.host\" -> \"iam_instance_profile.other\""]);
    let now = host().await;
    assert_eq!(now.instance_id(), first.instance_id(), "the same host");
    // (Asked of the association: moto's DescribeInstances keeps showing the launch profile.)
    let assoc = moto
        .ec2()
        .describe_iam_instance_profile_associations()
        .filters(aws_sdk_ec2::types::Filter::builder().name("instance-id").values(now.instance_id().unwrap()).build())
        .send()
        .await
        .unwrap();
    let arn = assoc.iam_instance_profile_associations()[0].iam_instance_profile().unwrap().arn().unwrap().to_owned();
    assert!(arn.ends_with("/host-other"), "{arn}");
    std::fs::write(path, src(30)).unwrap();
    converge(&ep, path, &["~ instance_profile = \"iam_instance_profile.other\" -> \"iam_instance_profile.host\""]);

    std::fs::write(dir.path().join("host.yaml"), "#cloud-config\npackages: [docker, jq]\n").unwrap();
    proxy.take_calls();
    converge(&ep, path, &["-/+ instance.host", "# forces replacement"]);
    let calls: Vec<String> = proxy.take_calls().into_iter().filter(mutating).map(|c| c.action).collect();
    let at = |a: &str| calls.iter().position(|c| c == a).unwrap_or_else(|| panic!("{a} in {calls:?}"));
    assert!(at("RunInstances") < at("TerminateInstances"), "the new host first: {calls:?}");
    let second = host().await;
    assert_ne!(second.instance_id(), first.instance_id());

    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy");
    let d = moto.ec2().describe_instances().filters(stack_filter("host")).send().await.unwrap();
    assert!(d
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .all(|i| i.state().and_then(|s| s.name()).is_some_and(|n| n.as_str() == "terminated")));
}

fn stack_filter(stack: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder().name("tag:provisioner:stack").values(stack).build()
}

/// A Fargate service behind the load balancer, scaled on memory: the task definition registered
/// with its environment (outputs filled in), logs and roles; the service in its subnets and
/// target group; the scalable target. The image is the stack's own, by digest: a new binary is
/// a planned change of the image and of the task definition, a new revision, the service
/// updated, the old revision deregistered after; a rollback by the circuit breaker fails the
/// apply. moto never runs a task, so the proxy EMULATES finished rollouts (labelled in
/// `common`); images go to a local registry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fargate_service_rolls_out_and_scales() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    proxy.emulate_ecs_deployments();
    common::registry();
    let ep = proxy.url.clone();
    let dir = tempfile::tempdir().unwrap();
    // Three builds of one program: the same binary with different trailing bytes.
    let binary = dir.path().join("app");
    let build = |n: u8| {
        let mut b = std::fs::read("/usr/bin/true").unwrap();
        b.extend_from_slice(&[0, n]);
        std::fs::write(&binary, b).unwrap();
    };
    let path = dir.path().join("stack.toml");
    let path = path.to_str().unwrap();
    let src_spot = |max: u32, spot: bool| {
        let (providers, spot_after) = if spot {
            ("capacity_providers = [\"FARGATE\", \"FARGATE_SPOT\"]\n", "spot_after = 1\n")
        } else {
            ("", "")
        };
        format!(
            "{}[load_balancer.web]\nsubnets = [\"subnet.a\", \"subnet.b\"]\nsecurity_groups = [\"security_group.lb\"]\n\n\
             [target_group.web]\nvpc = \"vpc.main\"\nport = 8080\n\n\
             [listener.http]\nload_balancer = \"load_balancer.web\"\nport = 80\ntarget_group = \"target_group.web\"\n\n\
             [log_group.web]\nretention_days = 14\n\n\
             [iam_role.execution]\ntrusted_services = [\"ecs-tasks.amazonaws.com\"]\n\
             statements = [{{ actions = [\"logs:CreateLogStream\", \"logs:PutLogEvents\"], resources = [\"${{log_group.web.arn}}:*\"] }}]\n\n\
             [iam_role.task]\ntrusted_services = [\"ecs-tasks.amazonaws.com\"]\n\n\
             [ecr_repository.app]\n\n\
             [image.app]\nrepository = \"ecr_repository.app\"\nexecutable = \"app\"\n\n\
             [ecs_cluster.main]\n{providers}\n\
             [ecs_service.web]\n{spot_after}cluster = \"ecs_cluster.main\"\nimage = \"${{ecr_repository.app.url}}@${{image.app.digest}}\"\ncommand = [\"web\"]\ncpu = 256\nmemory = 512\n\
             environment = {{ QUAKE_LISTEN = \"0.0.0.0:8080\", QUAKE_LOG_GROUP = \"${{log_group.web.name}}\" }}\nport = 8080\n\
             log_group = \"log_group.web\"\ntask_role = \"iam_role.task\"\nexecution_role = \"iam_role.execution\"\n\
             subnets = [\"subnet.a\", \"subnet.b\"]\nsecurity_groups = [\"security_group.lb\"]\npublic_ip = true\n\
             target_group = \"target_group.web\"\nhealth_check_grace = 30\n\n\
             [autoscaling.web]\nservice = \"ecs_service.web\"\nmin = 1\nmax = {max}\nmetric = \"memory\"\ntarget = 90\n",
            LB_NET.replace("name = \"lb\"", "name = \"svc\"")
        )
    };
    let src = |max: u32| src_spot(max, false);
    build(1);
    std::fs::write(path, src(2)).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "apply");
    let digest = |out: &serde_json::Value| out["image.app"]["digest"].as_str().unwrap().to_owned();
    let outputs = || serde_json::from_str::<serde_json::Value>(&run(&ep, &["outputs", path, "--json"]).1).unwrap();
    let first = outputs();
    let repo = first["ecr_repository.app"]["url"].as_str().unwrap().to_owned();
    let d1 = digest(&first);
    let d = moto.ecs().describe_services().cluster("svc-main").services("web").send().await.unwrap();
    let svc = &d.services()[0];
    assert_eq!(svc.load_balancers()[0].container_port(), Some(8080));
    let td =
        moto.ecs().describe_task_definition().task_definition(svc.task_definition().unwrap()).send().await.unwrap();
    let td = td.task_definition().unwrap();
    let c = &td.container_definitions()[0];
    assert_eq!(c.image(), Some(format!("{repo}@{d1}").as_str()), "pinned by digest");
    assert!(c.environment().iter().any(|e| e.value() == Some("/svc/web")), "the log group's name filled in: {c:?}");
    assert!(td.execution_role_arn().unwrap().ends_with(":role/svc/svc-execution"), "{td:?}");
    let aas = moto.client::<aws_sdk_applicationautoscaling::Client>(common::REGION);
    let targets = aas
        .describe_scalable_targets()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
        .send()
        .await
        .unwrap();
    let t = &targets.scalable_targets()[0];
    assert_eq!((t.resource_id(), t.min_capacity(), t.max_capacity()), ("service/svc-main/web", 1, 2));
    ok(&run(&ep, &["plan", path]), 0, "plan after apply");

    proxy.take_calls();
    build(2);
    let d2 = provisioner::image::build(&provisioner::image::Spec {
        binary: binary.clone(),
        name: "app".into(),
        arch: provisioner::image::Arch::X86_64,
        epoch: 0,
        files: vec![],
        exclude: vec![],
    })
    .unwrap()
    .digest()
    .to_owned();
    assert_ne!(d1, d2);
    std::fs::write(path, src(3)).unwrap();
    converge(
        &ep,
        path,
        &[
            &*format!("~ digest = \"{d1}\" -> \"{d2}\""),
            &*format!("~ image = \"{repo}@{d1}\" -> \"{repo}@{d2}\""),
            "~ max = 2 -> 3",
            "Plan: 0 to add, 3 to change, 0 to destroy.",
        ],
    );
    assert_eq!(digest(&outputs()), d2);
    let calls: Vec<String> = proxy.take_calls().into_iter().filter(mutating).map(|c| c.action).collect();
    let at = |a: &str| calls.iter().position(|c| c.ends_with(a)).unwrap_or_else(|| panic!("{a} in {calls:?}"));
    assert!(
        at("RegisterTaskDefinition") < at("UpdateService") && at("UpdateService") < at("DeregisterTaskDefinition"),
        "{calls:?}"
    );

    // Tasks beyond the first onto Fargate Spot, on the running service (made with the FARGATE
    // launch type): the cluster offers both providers first, the service moves to a strategy in
    // a new deployment. The strategy as ECS keeps it is played by the proxy (EMULATED: moto
    // drops it at CreateService; it keeps what UpdateService sends).
    proxy.take_calls();
    std::fs::write(path, src_spot(3, true)).unwrap();
    converge(
        &ep,
        path,
        &[
            "~ capacity_providers = [ + \"FARGATE\", + \"FARGATE_SPOT\", ]",
            "~ spot_after = (none) -> 1",
            "Plan: 0 to add, 2 to change, 0 to destroy.",
            "with autoscaling at its maximum:",
        ],
    );
    let calls = proxy.take_calls();
    let at = |a: &str| calls.iter().position(|c| c.action.ends_with(a)).unwrap_or_else(|| panic!("{a}"));
    assert!(at("PutClusterCapacityProviders") < at("UpdateService"));
    let update = &calls[at("UpdateService")];
    assert!(
        update.body.contains("\"capacityProvider\":\"FARGATE_SPOT\"")
            && update.body.contains("\"forceNewDeployment\":true"),
        "{}",
        update.body
    );
    let c = moto.ecs().describe_clusters().clusters("svc-main").send().await.unwrap();
    assert_eq!(c.clusters()[0].capacity_providers(), ["FARGATE", "FARGATE_SPOT"]);
    // And back: every task on regular Fargate (a strategy of FARGATE alone: a service never
    // returns to a launch type).
    std::fs::write(
        path,
        src(3).replace(
            "[ecs_cluster.main]\n",
            "[ecs_cluster.main]\ncapacity_providers = [\"FARGATE\", \"FARGATE_SPOT\"]\n",
        ),
    )
    .unwrap();
    converge(&ep, path, &["~ spot_after = 1 -> (none)", "Plan: 0 to add, 1 to change, 0 to destroy."]);

    proxy.state.ecs_roll_back.store(true, std::sync::atomic::Ordering::SeqCst);
    build(3);
    let r = run(&ep, &["apply", path, "--yes"]);
    ok(&r, 1, "a rolled-back deployment fails the apply");
    assert!(format!("{}{}", r.1, r.2).contains("rolled back"), "{}\n{}", r.1, r.2);

    proxy.take_calls();
    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy");
    let calls: Vec<String> = proxy.take_calls().into_iter().filter(mutating).map(|c| c.action).collect();
    let at = |a: &str| calls.iter().position(|c| c.ends_with(a)).unwrap_or_else(|| panic!("{a} in {calls:?}"));
    assert!(at("DeregisterScalableTarget") < at("DeleteService"), "{calls:?}");
    assert!(at("DeleteService") < at("DeleteCluster") && at("DeleteService") < at("DeleteTargetGroup"), "{calls:?}");
    assert!(at("DeleteService") < at("DeleteRole"), "{calls:?}");
    let d = moto.ecs().describe_services().cluster("svc-main").services("web").send().await;
    assert!(d.map(|d| d.services().iter().all(|s| s.status() != Some("ACTIVE"))).unwrap_or(true));
}

/// The whole production stack - network, application layer, the map's CloudFront distribution
/// and VPC origin, and the FinOps site, 48 resources
/// in three regions - applied from empty on moto, planned empty, and destroyed with nothing the
/// stack tagged left in any service (checked with each service's SDK). moto ignores global-table replicas and never
/// runs a Fargate task, so the proxy EMULATES AWS's documented answers for both (labelled in
/// `common`); deletion protection of the table is turned off in this copy, as an operator does
/// before a destroy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_production_stack() {
    let moto = Moto::start().await;
    let proxy = production_peers(&moto).await;
    let ep = proxy.url.clone();
    // The services' own binary in the image (this build's, not a release build: the image is
    // made, pushed and run exactly as the stack ships it), so the test below can run it.
    let quake = format!("executable = \"{}\"", common::quake_binary().display());
    let (_d, stack) = variant(
        PROD,
        "full",
        &[
            ("executable = \"/usr/bin/true\"", &quake),
            ("deletion_protection = true", "deletion_protection = false"),
            ("deletion_protection = true", "deletion_protection = false"),
            ("separate_logging_host = \"false\"", "separate_logging_host = \"true\""),
            ("finops_site = \"true\"", "finops_site = \"true\""),
            // moto is reached over plain HTTP and applies `aws:SecureTransport` to it.
            (
                "read_by = [\"${cloudfront_distribution.finops.arn}\"]",
                "read_by = [\"${cloudfront_distribution.finops.arn}\"]\nhttps_only = false",
            ),
        ],
    );
    let r = run(&ep, &["apply", &stack, "--yes"]);
    ok(&r, 0, "apply from empty, in one run, in strict mode");
    assert!(r.1.contains("48 added"), "{}", r.1);
    let calls = proxy.take_calls();
    // What AWS does in a fresh account and moto does not was played, and the apply went through.
    let fired = proxy.state.strict.fired();
    eprintln!("strict rules fired in the apply: {fired:?}");
    for rule in [
        &common::strict::CONTINUOUS_BACKUPS,
        &common::strict::ECS_CLUSTER_SLR,
        &common::strict::ECS_SERVICE_ROLE,
        &common::strict::AAS_SLR,
        &common::strict::LAMBDA_ROLE,
        &common::strict::INSTANCE_PROFILE,
        &common::strict::EC2_BY_ID,
        &common::strict::EC2_LIST_LAG,
        &common::strict::DOMAIN_CREATING,
    ] {
        assert!(fired.get(rule.name).is_some_and(|n| *n > 0), "{} never fired ({}): {fired:?}", rule.name, rule.source);
    }
    let twice: Vec<_> = creates_per_address(&calls).into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(twice.is_empty(), "made twice: {twice:?}");
    // One command ends with where to look: the map and Grafana on the logging host.
    let printed = r.1.split("\nOutputs:\n").nth(1).unwrap_or_else(|| panic!("no outputs printed:\n{}", r.1));
    let url = |name: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} = ")))
            .unwrap_or_else(|| panic!("{name}: {printed}"))
    };
    // The map over HTTPS, at CloudFront's name: no domain needed.
    assert!(url("map").starts_with("https://") && url("map").contains(".cloudfront.net"), "{printed}");
    let ec2 = moto.ec2();
    let out: serde_json::Value = serde_json::from_str(&run(&ep, &["outputs", &stack, "--json"]).1).unwrap();
    let host = |address: &str| {
        let id = out[address]["id"].as_str().unwrap().to_owned();
        let ec2 = ec2.clone();
        async move {
            let d = ec2.describe_instances().instance_ids(&id).send().await.unwrap();
            let i = d.reservations()[0].instances()[0].clone();
            let ud =
                ec2.describe_instance_attribute().instance_id(&id).attribute("userData".into()).send().await.unwrap();
            let ud =
                ud.user_data().and_then(|u| u.value()).map(|b| aws_smithy_types::base64::decode(b).unwrap()).unwrap();
            (i, String::from_utf8(ud).unwrap())
        }
    };
    let (logging, _) = host("instance.logging").await;
    // Grafana through Session Manager's port forwarding to the logging host: no port on the internet.
    let grafana = url("grafana");
    assert!(
        grafana.starts_with(&format!("aws ssm start-session --target {} ", logging.instance_id().unwrap())),
        "{grafana}"
    );
    assert!(grafana.contains("portNumber=3000") && grafana.ends_with("http://localhost:3000/"), "{grafana}");
    // The streaming host's user data as the template made it: the logging host's address, the
    // image by the digest just pushed, the secret's name and not its value.
    let (_, user_data) = host("instance.streaming").await;
    assert!(user_data.contains(&format!("LOGGING_HOST={}\n", logging.private_ip_address().unwrap())), "{user_data}");
    let digest = out["image.quake"]["digest"].as_str().unwrap();
    let repo = out["ecr_repository.quake"]["url"].as_str().unwrap();
    assert!(user_data.contains(&format!("QUAKE_IMAGE={repo}@{digest}\n")), "{user_data}");
    assert!(
        user_data.contains("GRAFANA_ADMIN_PARAMETER=/full/grafana_admin\n") && !user_data.contains("${"),
        "{user_data}"
    );
    assert_eq!(out["outputs"]["grafana"], url("grafana"), "`outputs --json` carries the stack's outputs");
    // What the stack deployed, run: the image by the digest the service and hosts use.
    let repo_name = out["ecr_repository.quake"]["name"].as_str().unwrap();
    let table = out["dynamodb_table.quakes"]["name"].as_str().unwrap();
    shipped::the_shipped_image_serves_the_whole_map(&moto, "full", repo_name, digest, table).await;
    proxy.take_calls();
    let r = run(&ep, &["plan", &stack]);
    ok(&r, 0, "plan after apply");
    assert!(r.1.contains("No changes."), "{}", r.1);
    let plan_calls = proxy.take_calls();
    // What AWS reports back prices exactly as the stack file does: the bill is unchanged, and
    // the same as `cost` computes offline (Fargate Spot's strategy and the cluster's capacity
    // providers read back included).
    let offline: serde_json::Value = serde_json::from_str(&run(&ep, &["cost", &stack, "--json"]).1).unwrap();
    let total = offline["monthly"].as_f64().unwrap();
    assert!(r.1.contains(&format!("Monthly cost: ${total:.2} (unchanged; prices of ")), "{}", r.1);
    let planned: serde_json::Value = serde_json::from_str(&run(&ep, &["plan", &stack, "--json"]).1).unwrap();
    assert_eq!(planned["cost"]["delta"], 0.0, "{}", planned["cost"]);
    assert!(planned["cost"]["resources"].as_array().unwrap().is_empty(), "{}", planned["cost"]);
    assert!((planned["cost"]["before"].as_f64().unwrap() - total).abs() < 1e-9);
    assert!((offline["monthly_max"].as_f64().unwrap() - planned["cost"]["before_max"].as_f64().unwrap()).abs() < 1e-9);
    proxy.take_calls();
    let mut by_action: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &plan_calls {
        *by_action.entry(c.action.rsplit('.').next().unwrap_or(&c.action)).or_default() += 1;
    }
    eprintln!("plan of the in-sync production stack: {} calls for 48 resources: {by_action:?}", plan_calls.len());
    let out: serde_json::Value = serde_json::from_str(&run(&ep, &["outputs", &stack, "--json"]).1).unwrap();
    assert_eq!(out["outputs"]["map"], out["cloudfront_distribution.web"]["url"], "the map's URL: {out}");
    // Nothing reaches the load balancer around CloudFront: internal, in subnets without a route
    // to the internet; CloudFront reaches it through its VPC origin; the WAF is CloudFront's.
    let lb = moto.elb().describe_load_balancers().names("full-web").send().await.unwrap();
    assert_eq!(lb.load_balancers()[0].scheme().map(|s| s.as_str()), Some("internal"));
    let cf = moto.client::<aws_sdk_cloudfront::Client>(common::REGION);
    let map_id = out["cloudfront_distribution.web"]["id"].as_str().unwrap();
    let d = cf.get_distribution_config().id(map_id).send().await.unwrap();
    let c = d.distribution_config().unwrap();
    assert_eq!(c.web_acl_id(), out["waf_web_acl.web"]["arn"].as_str(), "the WAF sees the client's address");
    assert!(c.web_acl_id().is_some_and(|a| a.contains(":global/")), "a CloudFront-scope ACL");
    // The FinOps site behind the same ACL, its sign-in second factor required.
    let finops_id = out["cloudfront_distribution.finops"]["id"].as_str().unwrap();
    let f = cf.get_distribution_config().id(finops_id).send().await.unwrap();
    assert_eq!(f.distribution_config().unwrap().web_acl_id(), c.web_acl_id(), "one ACL for both distributions");
    let idp = moto.client::<aws_sdk_cognitoidentityprovider::Client>(common::REGION);
    let finops_pool = out["cognito_user_pool.finops"]["id"].as_str().unwrap();
    let mfa = idp.get_user_pool_mfa_config().user_pool_id(finops_pool).send().await.unwrap();
    assert_eq!(mfa.mfa_configuration(), Some(&aws_sdk_cognitoidentityprovider::types::UserPoolMfaType::On));
    let stream = &c.cache_behaviors().unwrap().items()[0];
    assert_eq!(stream.path_pattern(), "/api/stream");
    assert_eq!(stream.cache_policy_id(), Some("4135ea2d-6df8-44a3-9df3-4b5a84be39ad"), "the stream is never cached");
    assert_eq!(
        c.default_cache_behavior().unwrap().viewer_protocol_policy().as_str(),
        "redirect-to-https",
        "HTTP redirects to HTTPS"
    );
    // EMULATED (moto has no VPC origins: the proxy plays CloudFront's documented answers).
    let vo = out["cloudfront_vpc_origin.web"]["id"].as_str().unwrap();
    let through_proxy: aws_sdk_cloudfront::Client =
        provisioner::provider::Service::build(&common::conf_of(&ep, common::REGION, ("test", "test", None)));
    let got = through_proxy.get_vpc_origin().id(vo).send().await.unwrap();
    let endpoint = got.vpc_origin().unwrap().vpc_origin_endpoint_config().unwrap();
    assert_eq!(Some(endpoint.arn()), out["load_balancer.web"]["arn"].as_str(), "the VPC origin reaches the balancer");
    let replica = calls.iter().find(|c| c.action.ends_with("UpdateTable") && c.body.contains("eu-west-1"));
    assert!(replica.is_some(), "the replica region from the variable is requested");

    // Lambda makes the edge function's log groups itself, where its copies ran: they go with it.
    let edge_fn = out["lambda_function.finops_auth"]["id"].as_str().unwrap().to_owned();
    let edge_logs = [
        ("us-east-1", format!("/aws/lambda/{edge_fn}")),
        ("eu-west-1", format!("/aws/lambda/us-east-1.{edge_fn}")),
        ("ap-northeast-1", format!("/aws/lambda/us-east-1.{edge_fn}")),
    ];
    for (region, group) in &edge_logs {
        let logs = moto.client::<aws_sdk_cloudwatchlogs::Client>(region);
        logs.create_log_group().log_group_name(group).send().await.unwrap();
    }
    ok(&run(&ep, &["destroy", &stack, "--yes"]), 0, "destroy");
    for (region, group) in &edge_logs {
        let logs = moto.client::<aws_sdk_cloudwatchlogs::Client>(region);
        let left = logs.describe_log_groups().log_group_name_prefix(group).send().await.unwrap();
        assert!(left.log_groups().is_empty(), "{region}: {group} left");
    }
    let fired = proxy.state.strict.fired();
    assert!(fired.get(common::strict::ENIS_DRAINING.name).is_some_and(|n| *n > 0), "{fired:?}");
    assert!(owned(&moto.ec2(), "full").await.is_empty(), "no EC2 resource left");
    let d = moto.ec2().describe_instances().filters(stack_filter("full")).send().await.unwrap();
    assert!(d
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .all(|i| i.state().and_then(|s| s.name()).is_some_and(|n| n.as_str() == "terminated")));
    assert!(moto.elb().describe_load_balancers().send().await.unwrap().load_balancers().is_empty());
    assert!(moto.elb().describe_target_groups().send().await.unwrap().target_groups().is_empty());
    let acls = moto.waf().list_web_acls().scope(aws_sdk_wafv2::types::Scope::Regional).send().await.unwrap();
    assert!(acls.web_acls().is_empty());
    // The map's edge: no CloudFront-scope ACL, no VPC origin (EMULATED, asked through the proxy).
    let waf_global = moto.client::<aws_sdk_wafv2::Client>("us-east-1");
    let acls = waf_global.list_web_acls().scope(aws_sdk_wafv2::types::Scope::Cloudfront).send().await.unwrap();
    assert!(acls.web_acls().is_empty(), "{:?}", acls.web_acls());
    let origins = through_proxy.list_vpc_origins().send().await.unwrap();
    assert!(origins.vpc_origin_list().is_none_or(|l| l.items().is_empty()), "no VPC origin left");
    for region in [common::REGION, "eu-west-1"] {
        let tables = moto.client::<aws_sdk_dynamodb::Client>(region).list_tables().send().await.unwrap();
        assert!(tables.table_names().iter().all(|t| !t.starts_with("full-")), "{region}: {:?}", tables.table_names());
    }
    let roles = moto.iam().list_roles().path_prefix("/full/").send().await.unwrap();
    assert!(roles.roles().is_empty(), "{:?}", roles.roles());
    let profiles = moto.iam().list_instance_profiles().path_prefix("/full/").send().await.unwrap();
    assert!(profiles.instance_profiles().is_empty());
    assert!(moto.ecr().describe_repositories().send().await.unwrap().repositories().is_empty());
    let groups = moto.logs().describe_log_groups().log_group_name_prefix("/full/").send().await.unwrap();
    assert!(groups.log_groups().is_empty());
    let topics = moto.client::<aws_sdk_sns::Client>(common::REGION).list_topics().send().await.unwrap();
    assert!(topics.topics().iter().all(|t| !t.topic_arn().unwrap_or_default().contains(":full-")));
    let params =
        moto.client::<aws_sdk_ssm::Client>(common::REGION).get_parameter().name("/full/grafana_admin").send().await;
    assert!(params.is_err(), "the secret is deleted");
    let clusters = moto.ecs().describe_clusters().clusters("full-main").send().await.unwrap();
    assert!(clusters.clusters().iter().all(|c| c.status() != Some("ACTIVE")));
    let aas = moto.client::<aws_sdk_applicationautoscaling::Client>(common::REGION);
    let targets = aas
        .describe_scalable_targets()
        .service_namespace(aws_sdk_applicationautoscaling::types::ServiceNamespace::Ecs)
        .send()
        .await
        .unwrap();
    assert!(targets.scalable_targets().is_empty());
    // The FinOps site, in the stack's region and in us-east-1.
    let lambda = moto.client::<aws_sdk_lambda::Client>("us-east-1");
    assert!(lambda.list_functions().send().await.unwrap().functions().is_empty(), "no edge function left");
    let idp = moto.client::<aws_sdk_cognitoidentityprovider::Client>(common::REGION);
    assert!(idp.list_user_pools().max_results(60).send().await.unwrap().user_pools().is_empty(), "no user pool left");
    let cf = moto.client::<aws_sdk_cloudfront::Client>(common::REGION);
    assert!(cf.list_distributions().send().await.unwrap().distribution_list().is_none_or(|l| l.items().is_empty()));
    assert!(moto
        .client::<aws_sdk_ssm::Client>(common::REGION)
        .get_parameter()
        .name("/full/cognito/finops")
        .send()
        .await
        .is_err());
}

/// The whole production stack, `apply` killed (SIGKILL) at 10 random points between its first
/// and last change and run again: it converges, never more than one resource per address,
/// checked on the create calls recorded across the killed run and the rerun (moto duplicates
/// load balancers and replaces ECS services where AWS refuses). moto's missing global-table
/// replicas and Fargate rollouts are EMULATED by the proxy (labelled in `common`).
/// The co-location switch on a running stack: turned off, the logging host, its role, profile
/// and security group go and the streaming host is replaced by one whose user data has no
/// logging address (its setup takes the logging role); Grafana's URL follows it; turned back on,
/// they return. Each position converges to an empty plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_moves_onto_the_streaming_host_and_back() {
    let moto = Moto::start().await;
    let proxy = production_peers(&moto).await;
    let ep = proxy.url.clone();
    let (_d, stack) = destroyable_prod("colo");
    ok(&run(&ep, &["apply", &stack, "--yes"]), 0, "apply with a logging host");
    let off = ["--var", "separate_logging_host=false"];
    let plan = |extra: &[&str]| {
        let r = run(&ep, &[&["plan", stack.as_str()][..], extra].concat());
        ok(&r, 2, "plan of the switch");
        r.1
    };
    let text = plan(&off);
    for gone in ["instance.logging", "iam_instance_profile.logging", "iam_role.logging", "security_group.logging"] {
        assert!(text.contains(&format!("# {gone} will be destroyed")), "{gone}:\n{text}");
    }
    assert!(text.contains("# instance.streaming must be replaced"), "{text}");
    assert!(text.contains("Plan: 1 to add, 0 to change, 5 to destroy."), "{text}");
    let r = run(&ep, &[&["apply", stack.as_str(), "--yes"][..], &off].concat());
    ok(&r, 0, "apply co-located");
    ok(&run(&ep, &[&["plan", stack.as_str()][..], &off].concat()), 0, "co-located in sync");
    let out: serde_json::Value =
        serde_json::from_str(&run(&ep, &[&["outputs", stack.as_str(), "--json"][..], &off].concat()).1).unwrap();
    assert!(out.get("instance.logging").is_none(), "{out}");
    let streaming = out["instance.streaming"]["id"].as_str().unwrap();
    assert!(out["outputs"]["grafana"].as_str().unwrap().contains(&format!("--target {streaming} ")), "{out}");

    let text = plan(&[]);
    assert!(
        text.contains("# instance.logging will be created") && text.contains("# instance.streaming must be replaced"),
        "{text}"
    );
    ok(&run(&ep, &["apply", &stack, "--yes"]), 0, "apply with a logging host again");
    ok(&run(&ep, &["plan", &stack]), 0, "separate again, in sync");
    ok(&run(&ep, &["destroy", &stack, "--yes"]), 0, "destroy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_full_applies_converge_without_duplicates() {
    let moto = Moto::start().await;
    let proxy = production_peers(&moto).await;
    proxy.set_faults(0.0, Duration::from_millis(10));
    let (_d, stack) = variant(PROD, "crashfull", &[]);
    ok(&run(&proxy.url, &["apply", &stack, "--yes"]), 0, "measuring apply");
    let calls = proxy.take_calls();
    let total = calls.iter().filter(|c| mutating(c)).count();
    let once = creates_per_address(&calls);
    assert!(once.len() >= 25 && once.values().all(|n| *n == 1), "one create per address: {once:?}");
    let mut inside = 0;
    for round in 0..10 {
        moto.reset().await;
        proxy.forget_emulated();
        let at = rand::random_range(1..total - 2);
        let mut child = common::cli(&proxy.url)
            .args(["apply", &stack, "--yes"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        while proxy.calls().iter().filter(|c| mutating(c)).count() < at {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        let done = proxy.calls().iter().filter(|c| mutating(c)).count();
        if (1..total).contains(&done) {
            inside += 1;
        }
        let r = run(&proxy.url, &["apply", &stack, "--yes"]);
        if r.0 != 0 {
            assert!(r.2.contains("locked by"), "round {round}: {}", r.2);
            ok(&run(&proxy.url, &["force-unlock", &stack]), 0, "force-unlock");
            ok(&run(&proxy.url, &["apply", &stack, "--yes"]), 0, &format!("round {round}: rerun"));
        }
        ok(&run(&proxy.url, &["plan", &stack]), 0, &format!("round {round}: converged"));
        let calls = proxy.take_calls();
        let creates = creates_per_address(&calls);
        let twice: Vec<_> = creates.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "round {round}, killed after change {at} of {total}: created twice {twice:?}");
        assert_eq!(creates.keys().collect::<Vec<_>>(), once.keys().collect::<Vec<_>>(), "round {round}: all made once");
        assert_no_duplicates(&owned(&moto.ec2(), "crashfull").await, &format!("round {round}"));
        eprintln!("round {round}: killed after change {at}: {done} of {total} changes made");
    }
    assert!(inside >= 8, "only {inside} of 10 kills landed inside an apply");
}

/// The whole production stack with 30 % of calls throttled and latency added: apply, plan and
/// destroy succeed, and the recorded destroy takes things apart in order (what moto would let
/// pass out of order: an associated ACL, a target group a listener uses, a cluster with a
/// service, a profile's role, a group an instance or load balancer still uses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_full_stack_in_order() {
    let moto = Moto::start().await;
    let proxy = production_peers(&moto).await;
    proxy.set_faults(0.3, Duration::from_millis(5));
    let (_d, stack) = destroyable_prod("throttledfull");
    ok(&run(&proxy.url, &["apply", &stack, "--yes", "--resource-timeout", "300"]), 0, "apply under throttling");
    ok(&run(&proxy.url, &["plan", &stack]), 0, "plan under throttling");
    let apply_calls = proxy.take_calls();
    ok(&run(&proxy.url, &["destroy", &stack, "--yes", "--resource-timeout", "300"]), 0, "destroy under throttling");
    let calls = proxy.take_calls();
    let faulted = calls.iter().filter(|c| c.faulted).count();
    assert!(faulted * 5 > calls.len(), "about 30 % throttled: {faulted} of {}", calls.len());
    // EC2 ids and ELBv2 ARNs: nothing deleted while something made from it exists.
    assert_ordered(&[apply_calls, calls.clone()].concat(), &BTreeSet::new());
    let done: Vec<&Call> = calls.iter().filter(|c| mutating(c)).collect();
    let op = |c: &Call| c.action.rsplit('.').next().unwrap_or(&c.action).to_owned();
    let at = |a: &str, key: Option<(&str, &str)>| -> Vec<usize> {
        let hit = |c: &&Call| op(c) == a && key.is_none_or(|(k, v)| c.params.get(k).map(String::as_str) == Some(v));
        done.iter().enumerate().filter(|(_, c)| hit(c)).map(|(i, _)| i).collect()
    };
    let before = |a: &str, ka: Option<(&str, &str)>, b: &str, kb: Option<(&str, &str)>| {
        let (xs, ys) = (at(a, ka), at(b, kb));
        // `a` may be absent (a role without inline policies); `b` may not.
        assert!(!ys.is_empty(), "{b} {kb:?} in {:?}", done.iter().map(|c| op(c)).collect::<Vec<_>>());
        assert!(
            xs.iter().max() < ys.iter().min(),
            "{a} {ka:?} before {b} {kb:?}: {:?}",
            done.iter().map(|c| op(c)).collect::<Vec<_>>()
        );
    };
    // One of each in the stack.
    before("DisassociateWebACL", None, "DeleteWebACL", None);
    before("DeleteListener", None, "DeleteTargetGroup", None);
    before("DeregisterScalableTarget", None, "DeleteService", None);
    before("DeleteService", None, "DeleteCluster", None);
    before("DeleteService", None, "DeleteTargetGroup", None);
    // Per host: its role leaves its profile, the profile goes, then the role (after its policies).
    for host in ["streaming", "logging"] {
        let name = format!("throttledfull-{host}");
        let profile = Some(("InstanceProfileName", name.as_str()));
        let role = Some(("RoleName", name.as_str()));
        before("RemoveRoleFromInstanceProfile", profile, "DeleteInstanceProfile", profile);
        before("DeleteInstanceProfile", profile, "DeleteRole", role);
        before("DeleteRolePolicy", role, "DeleteRole", role);
        before("DetachRolePolicy", role, "DeleteRole", role);
    }
    assert!(owned(&moto.ec2(), "throttledfull").await.is_empty());
    assert!(moto.elb().describe_load_balancers().send().await.unwrap().load_balancers().is_empty());
}

/// Least privilege, with moto's IAM enforcement on: the production stack applied by an
/// administrator, then the services' own store run with credentials from assuming the role the
/// stack gives each - the consumer's writes with the streaming host's role, the web server's
/// reads with the web task's role. They work, a call outside a role is refused, and the
/// DynamoDB actions each one made (recorded at the proxy) are exactly those its policy grants.
/// moto matches actions only, so this copy of the stack grants them on `*`; resource scoping is
/// checked by `validate.rs` on the real file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_grants_exactly_what_its_service_calls() {
    use quake::store::Store;
    // Three calls are free: they make the administrator.
    let moto = Moto::start_enforcing(3).await;
    let iam = moto.iam();
    iam.create_user().user_name("admin").send().await.unwrap();
    let all = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;
    iam.put_user_policy().user_name("admin").policy_name("all").policy_document(all).send().await.unwrap();
    let key = iam.create_access_key().user_name("admin").send().await.unwrap();
    let key = key.access_key().unwrap();
    let admin = (key.access_key_id().to_owned(), key.secret_access_key().to_owned());
    assert!(moto.ec2().describe_vpcs().send().await.is_err(), "enforcement is on: unknown keys are refused");

    let proxy = production_peers(&moto).await;
    // The stack has no CloudFront or Lambda resource; their (empty) lists come from a moto that
    // does not check signatures (see `ProxyState::detour`).
    let unchecked = Moto::start().await;
    *proxy.state.detour.lock().unwrap() = Some(unchecked.url.clone());
    let (_d, stack) = variant(PROD, "lp", &[]);
    let everywhere = regex_lite::Regex::new(r"resources = \[[^\]]*\]").unwrap();
    let src = std::fs::read_to_string(&stack).unwrap();
    let src = everywhere.replace_all(&src, r#"resources = ["*"]"#);
    // moto checks the signature of real keys against a form body it encodes again, spelling
    // spaces differently from the SDK: descriptions and display names here go without them.
    let described = regex_lite::Regex::new(r#"(description|display_name) = "([^"]*)""#).unwrap();
    let src = described
        .replace_all(&src, |c: &regex_lite::Captures<'_>| format!("{} = \"{}\"", &c[1], c[2].replace(' ', "_")));
    std::fs::write(&stack, src.as_ref()).unwrap();
    let out = common::cli(&proxy.url)
        .env("AWS_ACCESS_KEY_ID", &admin.0)
        .env("AWS_SECRET_ACCESS_KEY", &admin.1)
        .args(["apply", &stack, "--yes"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "apply as the administrator: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let admin_conf = common::conf_of(&moto.url, common::REGION, (&admin.0, &admin.1, None));
    let sts = aws_sdk_sts::Client::new(&admin_conf);
    let admin_iam = aws_sdk_iam::Client::new(&admin_conf);
    // A store on the proxy with the credentials of the stack's role `role`, and the DynamoDB
    // actions the role's policy grants.
    let as_role = |role: &'static str| {
        let (sts, admin_iam, proxy_url) = (sts.clone(), admin_iam.clone(), proxy.url.clone());
        async move {
            let name = format!("lp-{role}");
            let arn = admin_iam.get_role().role_name(&name).send().await.unwrap().role().unwrap().arn().to_owned();
            // ECS and EC2 assume these roles in AWS; here the test's administrator stands in for
            // them, so it joins the trust policy.
            let trust = serde_json::json!({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "sts:AssumeRole",
                "Principal": {"AWS": "arn:aws:iam::123456789012:user/admin"},
            }]});
            admin_iam
                .update_assume_role_policy()
                .role_name(&name)
                .policy_document(trust.to_string())
                .send()
                .await
                .unwrap();
            let c = sts.assume_role().role_arn(arn).role_session_name(role).send().await.unwrap();
            let c = c.credentials().unwrap();
            let conf = common::conf_of(
                &proxy_url,
                common::REGION,
                (c.access_key_id(), c.secret_access_key(), Some(c.session_token())),
            );
            let store = quake::store::dynamo::DynamoStore::new(aws_sdk_dynamodb::Client::new(&conf), "lp-quakes");
            let doc = admin_iam.get_role_policy().role_name(&name).policy_name("inline").send().await.unwrap();
            let doc = percent_encoding::percent_decode_str(doc.policy_document()).decode_utf8_lossy().into_owned();
            let doc: serde_json::Value = serde_json::from_str(&doc).unwrap();
            let mut granted = BTreeSet::new();
            for st in doc["Statement"].as_array().unwrap() {
                let actions = match &st["Action"] {
                    serde_json::Value::String(a) => vec![a.clone()],
                    a => a.as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_owned()).collect(),
                };
                granted.extend(actions.into_iter().filter(|a| a.starts_with("dynamodb:")));
            }
            (store, granted)
        }
    };
    let used = |calls: Vec<Call>| -> BTreeSet<String> {
        // A refused condition (the repeat's put) is an answer; a refused action is not.
        let denied: Vec<_> = calls.iter().filter(|c| c.response.contains("AccessDenied")).map(|c| &c.action).collect();
        assert!(denied.is_empty(), "every call allowed: {denied:?}");
        calls
            .iter()
            .filter_map(|c| c.action.strip_prefix("DynamoDB_20120810."))
            .map(|a| format!("dynamodb:{a}"))
            .collect()
    };
    let now = quake::web::now_us();

    // The consumer, as the streaming host: readiness, a new event, an identical repeat.
    let (consumer, granted) = as_role("streaming").await;
    proxy.take_calls();
    consumer.ping().await.unwrap();
    consumer.upsert(&common::envelope("20991231_0000002", now, 1)).await.unwrap();
    consumer.upsert(&common::envelope("20991231_0000002", now, 2)).await.unwrap();
    assert_eq!(used(proxy.take_calls()), granted, "the consumer uses exactly what the streaming role grants");
    assert!(
        consumer.window(&quake::store::WindowQuery::new(now - 1, now + 1)).await.is_err(),
        "reads are not the consumer's"
    );

    // The web server, as the web task: readiness, a window, one event, the change feed.
    let (web, granted) = as_role("web_task").await;
    proxy.take_calls();
    web.ping().await.unwrap();
    assert_eq!(web.window(&quake::store::WindowQuery::new(now - 1, now + 1)).await.unwrap().len(), 1);
    assert!(web.get("20991231_0000002").await.unwrap().is_some());
    assert_eq!(web.changes_since(0, 10).await.unwrap().events.len(), 1);
    assert_eq!(used(proxy.take_calls()), granted, "the web server uses exactly what the web task role grants");
    assert!(
        web.upsert(&common::envelope("20991231_0000003", now, 1)).await.is_err(),
        "writes are not the web server's"
    );
}

/// A private bucket in a region of its own (us-east-1 is the one without a location
/// constraint): every public access blocked, encrypted, owned by the account, tagged; planned
/// empty after; versioning switched on in place; a destroy refused while it holds objects and
/// done, objects and versions first, with `force_destroy`; a bucket of another stack with the
/// same prefix left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_bucket() {
    let moto = Moto::start().await;
    // moto's answer to GetBucketVersioning of a new bucket is EMULATED as S3's (see `common`).
    let proxy = Proxy::start(&moto.url).await;
    let ep = proxy.url.clone();
    // Bucket names are global across AWS: asked for with the account's suffix.
    let bucket = |stem: &str| format!("{stem}-{}", provisioner::kinds::account::suffix_of("123456789012"));
    let (site, east) = (bucket("bk-site"), bucket("bk-east"));
    let (_dir, path) = stack_file();
    let path = path.as_str();
    let src = |extra: &str| {
        format!("[stack]\nname = \"bk\"\nregion = \"eu-central-1\"\n\n[s3_bucket.site]\n{extra}\n[s3_bucket.east]\nregion = \"us-east-1\"\n")
    };
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto.conf(common::REGION)).endpoint_url(&ep).force_path_style(true).build(),
    );
    // Another stack's bucket whose name starts like this stack's.
    s3.create_bucket()
        .bucket("bk-other")
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuCentral1)
                .build(),
        )
        .send()
        .await
        .unwrap();
    std::fs::write(path, src("")).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "create");
    let block = s3.get_public_access_block().bucket(&site).send().await.unwrap();
    let b = block.public_access_block_configuration().unwrap();
    assert_eq!(
        (b.block_public_acls(), b.ignore_public_acls(), b.block_public_policy(), b.restrict_public_buckets()),
        (Some(true), Some(true), Some(true), Some(true))
    );
    let enc = s3.get_bucket_encryption().bucket(&site).send().await.unwrap();
    let rule = &enc.server_side_encryption_configuration().unwrap().rules()[0];
    assert_eq!(
        rule.apply_server_side_encryption_by_default().unwrap().sse_algorithm(),
        &aws_sdk_s3::types::ServerSideEncryption::Aes256
    );
    let loc = s3.get_bucket_location().bucket(&east).send().await.unwrap();
    assert!(loc.location_constraint().is_none_or(|c| c.as_str().is_empty()), "{loc:?}");
    let tags = s3.get_bucket_tagging().bucket(&site).send().await.unwrap();
    assert!(tags.tag_set().iter().any(|t| t.key() == "provisioner:id" && t.value() == "s3_bucket.site"));
    let r = run(&ep, &["plan", path]);
    ok(&r, 0, "in sync");
    let out: serde_json::Value = serde_json::from_str(&run(&ep, &["outputs", path, "--json"]).1).unwrap();
    assert_eq!(out["s3_bucket.site"]["regional_domain"], format!("{site}.s3.eu-central-1.amazonaws.com"));

    std::fs::write(path, src("versioning = true")).unwrap();
    converge(&ep, path, &["~ versioning = false -> true"]);
    let v = s3.get_bucket_versioning().bucket(&site).send().await.unwrap();
    assert_eq!(v.status(), Some(&aws_sdk_s3::types::BucketVersioningStatus::Enabled));
    for body in ["one", "two"] {
        s3.put_object().bucket(&site).key("index.html").body(body.as_bytes().to_vec().into()).send().await.unwrap();
    }
    let r = run(&ep, &["destroy", path, "--yes"]);
    ok(&r, 1, "a bucket with objects is not destroyed");
    assert!(r.1.contains("still holds objects") && r.1.contains("force_destroy"), "{}", r.1);
    // A destroy has no stack file: force_destroy is applied to the bucket (a tag) first.
    std::fs::write(path, src("versioning = true\nforce_destroy = true")).unwrap();
    converge(&ep, path, &["~ force_destroy = false -> true"]);
    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy with force_destroy");
    let left: Vec<String> =
        s3.list_buckets().send().await.unwrap().buckets().iter().filter_map(|b| b.name()).map(str::to_owned).collect();
    assert_eq!(left, ["bk-other"]);
}

/// The FinOps site's AWS side on moto: a private bucket read only by the distribution (behind a
/// CloudFront-scope WAF ACL) through an origin access control, a user pool with its domain, a code-flow client whose sign-in
/// returns to the distribution, a user, and the edge function in us-east-1 whose package bakes
/// in the pool's issuer, the client's id, the pool's keys (fetched from where the pool publishes
/// them) and a generated state key, run by the distribution on viewer-request and
/// origin-response. Created, in sync on the next plan; the first password in Parameter Store
/// and in no output; a new bundle publishes a version and moves the distribution to it in one
/// apply; a destroy meeting Lambda@Edge replicas (EMULATED at the proxy, as AWS answers for
/// hours) finishes, reports the function left, and the next destroy deletes it, leaving nothing
/// tagged in either region. moto drops the distribution's origin access control id and Lambda
/// associations: the proxy keeps and plays them (EMULATED, see `common`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_finops_site_on_aws() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    let ep = proxy.url.clone();
    let (dir, path) = stack_file();
    let path = path.as_str();
    let pkg = dir.path().join("pkg");
    std::fs::create_dir(&pkg).unwrap();
    std::fs::write(pkg.join("index.mjs"), "export const handler = async (e) => e;\n").unwrap();
    let src = r#"[stack]
name = "fo"
region = "eu-central-1"

[iam_role.edge]
trusted_services = ["lambda.amazonaws.com", "edgelambda.amazonaws.com"]

[cloudfront_origin_access_control.site]

[s3_bucket.site]
force_destroy = true

[s3_bucket_policy.site]
bucket = "s3_bucket.site"
read_by = ["${cloudfront_distribution.site.arn}"]
# moto is reached over plain HTTP and applies `aws:SecureTransport` to it.
https_only = false

[cloudfront_distribution.site]
origin_domain = "${s3_bucket.site.regional_domain}"
origin_access_control = "cloudfront_origin_access_control.site"
viewer_request = "${lambda_function.auth.version_arn}"
origin_response = "${lambda_function.auth.version_arn}"
web_acl = "waf_web_acl.edge"

[waf_web_acl.edge]
scope = "CLOUDFRONT"
region = "us-east-1"
rate_limit = 1000

[cognito_user_pool.finops]
deletion_protection = false

[cognito_user_pool_domain.finops_login]
pool = "cognito_user_pool.finops"

[cognito_user_pool_client.finops]
pool = "cognito_user_pool.finops"
sites = [{ distribution = "cloudfront_distribution.site" }]
callback_urls = ["https://finops.example.test/callback"]
logout_urls = ["https://finops.example.test/"]

[cognito_user.ops]
pool = "cognito_user_pool.finops"
email = "ops@example.test"

[lambda_function.auth]
region = "us-east-1"
edge = true
role = "${iam_role.edge.arn}"
package = "pkg"
config = { issuer = "${cognito_user_pool.finops.issuer}", clientId = "${cognito_user_pool_client.finops.id}", authDomain = "${cognito_user_pool_domain.finops_login.url}" }
fetch = { jwks = "${cognito_user_pool.finops.jwks_url}" }
secrets = ["stateKey"]

[cost_site.dashboard]
bucket = "s3_bucket.site"
distribution = "cloudfront_distribution.site"
page = "ASSETS/finops/site"
libraries = ["ASSETS/finops/node_modules/chart.js/dist/chart.umd.min.js"]
"#;
    let assets = concat!(env!("CARGO_MANIFEST_DIR"), "/../assets");
    let src = src.replace("ASSETS", assets);
    let src = src.as_str();
    std::fs::write(path, src).unwrap();
    let plan = run(&ep, &["plan", path]);
    ok(&plan, 2, "plan");
    assert!(plan.1.contains("# its name is global across AWS"), "{}", plan.1);
    let applied = run(&ep, &["apply", path, "--yes"]);
    ok(&applied, 0, "apply");
    ok(&run(&ep, &["plan", path]), 0, "plan after apply");
    // The bucket and the domain prefix carry the account's suffix (names global across AWS).
    let suffix = provisioner::kinds::account::suffix_of("123456789012");
    let site_bucket = format!("fo-site-{suffix}");
    let out: serde_json::Value = serde_json::from_str(&run(&ep, &["outputs", path, "--json"]).1).unwrap();
    assert_eq!(out["s3_bucket.site"]["name"], site_bucket.as_str());
    assert!(out["cognito_user_pool_domain.finops_login"]["id"].as_str().is_some_and(|d| d.ends_with(&suffix)), "{out}");

    // The first password: in Parameter Store as a SecureString, and nowhere in the output.
    let ssm = aws_sdk_ssm::Client::from_conf(aws_sdk_ssm::config::Builder::from(&moto.conf(common::REGION)).build());
    let p = ssm.get_parameter().name("/fo/cognito/ops").with_decryption(true).send().await.unwrap();
    let p = p.parameter().unwrap();
    assert_eq!(p.r#type(), Some(&aws_sdk_ssm::types::ParameterType::SecureString));
    let password = p.value().unwrap().to_owned();
    assert_eq!(password.len(), 24);
    for out in [&plan.1, &plan.2, &applied.1, &applied.2] {
        assert!(!out.contains(&password), "the password shows in the output");
    }
    // Its parameter deleted, the user is no longer provably the stack's: apply names it and
    // never sets its password (a person's own by then); the parameter it wrote goes again.
    ssm.delete_parameter().name("/fo/cognito/ops").send().await.unwrap();
    let before = proxy.calls().len();
    let r = run(&ep, &["apply", path, "--yes"]);
    ok(&r, 1, "a user not provably the stack's");
    assert!(r.1.contains("already has a user `ops` that is not provably this stack's"), "{}", r.1);
    let set: Vec<String> =
        proxy.calls()[before..].iter().map(|c| c.action.clone()).filter(|a| a.contains("SetUserPassword")).collect();
    assert!(set.is_empty(), "no password set: {set:?}");
    assert!(ssm.get_parameter().name("/fo/cognito/ops").send().await.is_err(), "no parameter claims it");
    // The way out it names: the user deleted, apply makes it again with a new first password.
    let pool_id = idp_pool(&moto).await;
    let idp0 = aws_sdk_cognitoidentityprovider::Client::from_conf(
        aws_sdk_cognitoidentityprovider::config::Builder::from(&moto.conf(common::REGION)).build(),
    );
    idp0.admin_delete_user().user_pool_id(&pool_id).username("ops").send().await.unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "the user made again");
    ok(&run(&ep, &["plan", path]), 0, "in sync again");

    // The sign-in returns to the distribution, which runs version 1 of the function.
    let cf = aws_sdk_cloudfront::Client::from_conf(
        aws_sdk_cloudfront::config::Builder::from(&moto.conf(common::REGION)).endpoint_url(&ep).build(),
    );
    let list = cf.list_distributions().send().await.unwrap();
    let d = &list.distribution_list().unwrap().items()[0];
    let (dist_id, domain) = (d.id().to_owned(), d.domain_name().to_owned());
    let idp = aws_sdk_cognitoidentityprovider::Client::from_conf(
        aws_sdk_cognitoidentityprovider::config::Builder::from(&moto.conf(common::REGION)).build(),
    );
    let pool = idp.list_user_pools().max_results(60).send().await.unwrap().user_pools()[0].id().unwrap().to_owned();
    let clients = idp.list_user_pool_clients().user_pool_id(&pool).send().await.unwrap();
    let client_id = clients.user_pool_clients()[0].client_id().unwrap().to_owned();
    let c = idp.describe_user_pool_client().user_pool_id(&pool).client_id(&client_id).send().await.unwrap();
    let c = c.user_pool_client().unwrap();
    assert!(c.callback_urls().contains(&format!("https://{domain}/callback")), "{:?}", c.callback_urls());
    assert!(c.logout_urls().contains(&format!("https://{domain}/")), "{:?}", c.logout_urls());
    assert_eq!(c.allowed_o_auth_flows(), &[aws_sdk_cognitoidentityprovider::types::OAuthFlowType::Code]);
    assert_eq!(c.client_secret(), None, "a public client");
    assert_eq!(
        c.explicit_auth_flows(),
        &[aws_sdk_cognitoidentityprovider::types::ExplicitAuthFlowsType::AllowRefreshTokenAuth],
        "no sign-in around the hosted UI"
    );
    let edge_arn = |cfg: &aws_sdk_cloudfront::operation::get_distribution_config::GetDistributionConfigOutput| {
        let b = cfg.distribution_config().unwrap().default_cache_behavior().unwrap();
        b.lambda_function_associations()
            .unwrap()
            .items()
            .iter()
            .map(|a| a.lambda_function_arn().to_owned())
            .collect::<Vec<_>>()
    };
    let cfg = cf.get_distribution_config().id(&dist_id).send().await.unwrap();
    assert!(
        edge_arn(&cfg).iter().all(|a| a.ends_with("function:fo-auth:1")) && edge_arn(&cfg).len() == 2,
        "{:?}",
        edge_arn(&cfg)
    );
    let acl = cfg.distribution_config().unwrap().web_acl_id().unwrap_or_default();
    assert!(acl.contains(":global/webacl/fo-edge/"), "behind the CloudFront-scope ACL: {acl}");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&moto.conf(common::REGION)).force_path_style(true).build(),
    );
    let policy = s3.get_bucket_policy().bucket(&site_bucket).send().await.unwrap();
    assert!(policy.policy().unwrap().contains(&format!("distribution/{dist_id}")), "read by the distribution");

    // The dashboard: hashed assets cached for a year, the index for a minute with the estimate
    // inline, one estimate in the history, and only the index invalidated.
    let get = |key: &'static str| {
        let (s3, bucket) = (s3.clone(), site_bucket.clone());
        async move { s3.get_object().bucket(bucket).key(key).send().await.unwrap() }
    };
    let index = get("index.html").await;
    assert_eq!(index.cache_control(), Some("public, max-age=60"));
    let page = String::from_utf8(index.body.collect().await.unwrap().into_bytes().to_vec()).unwrap();
    assert!(page.contains(r#"<script type="application/json" id="data">{"breakdown":"#), "{page}");
    let listed = s3.list_objects_v2().bucket(&site_bucket).prefix("assets/").send().await.unwrap();
    let keys: Vec<String> = listed.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect();
    assert_eq!(keys.len(), 3, "app, style, chart library, and no other: {keys:?}");
    for k in &keys {
        assert!(page.contains(&format!("/{k}")), "the index names {k}");
        let head = s3.head_object().bucket(&site_bucket).key(k).send().await.unwrap();
        assert_eq!(head.cache_control(), Some("public, max-age=31536000, immutable"));
    }
    let history = |page: &str| -> usize {
        let data = page.split(r#"id="data">"#).nth(1).unwrap().split("</script>").next().unwrap();
        serde_json::from_str::<serde_json::Value>(data).unwrap()["history"].as_array().unwrap().len()
    };
    assert_eq!(history(&page), 1);
    let invalidations = |calls: &[common::Call]| -> Vec<String> {
        calls.iter().filter(|c| c.action.ends_with("/invalidation") && c.status < 300).map(|c| c.body.clone()).collect()
    };
    let sent = invalidations(&proxy.calls());
    assert_eq!(sent.len(), 1, "one invalidation");
    assert!(
        sent[0].contains("<Path>/index.html</Path>")
            && sent[0].contains("<Quantity>2</Quantity>")
            && !sent[0].contains("assets/"),
        "{}",
        sent[0]
    );
    // A new estimate (more requests assumed): the site changes, its history grows, one more
    // invalidation of the index; the assets stay.
    let busier = format!("{src}\n[usage]\ncdn_requests = 20000000\n");
    std::fs::write(path, &busier).unwrap();
    converge(&ep, path, &["~ cost_site.dashboard", "content_sha256"]);
    let page = String::from_utf8(get("index.html").await.body.collect().await.unwrap().into_bytes().to_vec()).unwrap();
    assert_eq!(history(&page), 2);
    assert_eq!(invalidations(&proxy.calls()).len(), 2);
    std::fs::write(path, src).unwrap();
    converge(&ep, path, &["~ cost_site.dashboard"]);

    // The package: the files and config.json.
    let lambda =
        aws_sdk_lambda::Client::from_conf(aws_sdk_lambda::config::Builder::from(&moto.conf("us-east-1")).build());
    let f = lambda.get_function().function_name("fo-auth").send().await.unwrap();
    assert_eq!(f.configuration().unwrap().memory_size(), Some(128));
    let published = |v: &aws_sdk_lambda::operation::list_versions_by_function::ListVersionsByFunctionOutput| {
        v.versions().iter().filter(|v| v.version() != Some("$LATEST")).count()
    };
    assert_eq!(published(&lambda.list_versions_by_function().function_name("fo-auth").send().await.unwrap()), 1);

    // A new bundle: the function changes, and the distribution with it, in one apply.
    std::fs::write(pkg.join("index.mjs"), "export const handler = async (e) => ({ ...e });\n").unwrap();
    converge(&ep, path, &["~ lambda_function.auth", "code_sha256", "~ cloudfront_distribution.site", "viewer_request"]);
    assert_eq!(published(&lambda.list_versions_by_function().function_name("fo-auth").send().await.unwrap()), 2);
    let cfg = cf.get_distribution_config().id(&dist_id).send().await.unwrap();
    assert!(edge_arn(&cfg).iter().all(|a| a.ends_with("function:fo-auth:2")), "{:?}", edge_arn(&cfg));

    // A dropped sign-out URL is an in-place change of the client.
    std::fs::write(path, src.replace("logout_urls = [\"https://finops.example.test/\"]\n", "")).unwrap();
    converge(&ep, path, &["~ cognito_user_pool_client.finops"]);

    // AWS keeps the function's replicas for hours after the distribution let go of it.
    proxy.state.edge_replicas.store(u32::MAX, std::sync::atomic::Ordering::SeqCst);
    let out =
        common::cli(&ep).env("PROVISIONER_EDGE_REPLICA_WAIT", "2").args(["destroy", path, "--yes"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("left:    lambda_function.auth") && text.contains("replicas"), "{text}");
    assert!(text.contains(&format!("provisioner destroy {path}")), "{text}");
    assert!(
        cf.list_distributions().send().await.unwrap().distribution_list().unwrap().items().is_empty(),
        "the rest is gone"
    );
    assert_eq!(lambda.list_functions().send().await.unwrap().functions().len(), 1, "the function is left");
    // The function's package bakes in the pool's issuer and keys (outputs read back as values):
    // the pool goes after it, so it is left with it.
    assert!(text.contains("left:    cognito_user_pool.finops (waits for the above)"), "{text}");
    // Later: the replicas are gone, and the same command finishes.
    proxy.state.edge_replicas.store(0, std::sync::atomic::Ordering::SeqCst);
    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy again");
    assert!(lambda.list_functions().send().await.unwrap().functions().is_empty(), "no function left in us-east-1");
    assert!(idp.list_user_pools().max_results(60).send().await.unwrap().user_pools().is_empty(), "no pool left");
    assert!(ssm.get_parameter().name("/fo/cognito/ops").send().await.is_err(), "no password left");
    assert!(cf
        .list_origin_access_controls()
        .send()
        .await
        .unwrap()
        .origin_access_control_list()
        .unwrap()
        .items()
        .is_empty());
    assert!(s3.list_buckets().send().await.unwrap().buckets().is_empty());
    let iam = moto.iam();
    assert!(
        iam.list_roles().send().await.unwrap().roles().iter().all(|r| !r.role_name().starts_with("fo-")),
        "no role left"
    );
    let waf = moto.client::<aws_sdk_wafv2::Client>("us-east-1");
    let acls = waf.list_web_acls().scope(aws_sdk_wafv2::types::Scope::Cloudfront).send().await.unwrap();
    assert!(acls.web_acls().is_empty(), "no ACL left in us-east-1");
}

/// An emulator that lacks an API (moto itself, without the harness's front, has no CloudFront
/// VPC origins): a stack that uses none plans on, and says what it did not read; a stack that
/// declares one fails with the endpoint's answer, since nothing of it could be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_the_emulator_lacks_is_said_not_read() {
    let moto = Moto::start().await;
    let (_dir, path) = stack_file();
    std::fs::write(
        &path,
        "[stack]\nname = \"bare\"\nregion = \"eu-central-1\"\n\n[log_group.app]\nretention_days = 1\n",
    )
    .unwrap();
    let r = run(&moto.direct, &["plan", &path]);
    ok(&r, 2, "plan on bare moto");
    assert!(r.2.contains("note: not read") && r.2.contains("cloudfront_vpc_origin in eu-central-1"), "{}", r.2);
    std::fs::write(
        &path,
        "[stack]\nname = \"bare\"\nregion = \"eu-central-1\"\n\n[vpc.v]\ncidr = \"10.0.0.0/16\"\n\n\
         [subnet.a]\nvpc = \"vpc.v\"\ncidr = \"10.0.0.0/24\"\naz = \"a\"\n\n[subnet.b]\nvpc = \"vpc.v\"\ncidr = \"10.0.1.0/24\"\naz = \"b\"\n\n\
         [load_balancer.lb]\nsubnets = [\"subnet.a\", \"subnet.b\"]\ninternal = true\n\n\
         [cloudfront_vpc_origin.web]\nload_balancer = \"load_balancer.lb\"\n",
    )
    .unwrap();
    let r = run(&moto.direct, &["plan", &path]);
    assert_eq!(r.0, 1, "{r:?}");
    assert!(r.2.contains("ListVpcOrigins"), "{}", r.2);
}

/// STRICT MODE (`common::strict`) against the rules the stacks are built to avoid rather than
/// retry: each fires on a call made the way AWS refuses (a rule that never fires proves
/// nothing), and the provisioner's ordering and checks keep the stacks clear of them. The local
/// stack (an internet-facing load balancer with a WAF association) applies from empty in one
/// run, plans empty and destroys; a protected user pool is refused before anything is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_mode_rules_fire_and_the_stacks_keep_clear_of_them() {
    use common::strict;
    let moto = Moto::start().await;
    let proxy = production_peers(&moto).await;
    let ep = proxy.url.clone();
    let conf = |region: &'static str| common::conf_of(&ep, region, ("test", "test", None));
    let ec2: aws_sdk_ec2::Client = provisioner::provider::Service::build(&conf(common::REGION));
    let elb: aws_sdk_elasticloadbalancingv2::Client = provisioner::provider::Service::build(&conf(common::REGION));
    let code =
        |e: &dyn aws_smithy_types::error::metadata::ProvideErrorMetadata| e.code().unwrap_or_default().to_owned();

    // A new VPC's id, used at once: not found yet; an internet-facing load balancer in a VPC
    // without an attached gateway: refused.
    let vpc = ec2.create_vpc().cidr_block("10.9.0.0/16").send().await.unwrap();
    let vpc = vpc.vpc().unwrap().vpc_id().unwrap().to_owned();
    let e = ec2
        .modify_vpc_attribute()
        .vpc_id(&vpc)
        .enable_dns_hostnames(aws_sdk_ec2::types::AttributeBooleanValue::builder().value(true).build())
        .send()
        .await
        .unwrap_err();
    assert_eq!(code(&e), "InvalidVpcID.NotFound");
    let mut subnets = Vec::new();
    for (cidr, az) in [("10.9.1.0/24", "a"), ("10.9.2.0/24", "b")] {
        let s = ec2
            .create_subnet()
            .vpc_id(&vpc)
            .cidr_block(cidr)
            .availability_zone(format!("{}{az}", common::REGION))
            .send()
            .await
            .unwrap();
        subnets.push(s.subnet().unwrap().subnet_id().unwrap().to_owned());
    }
    let e = elb.create_load_balancer().name("gatewayless").set_subnets(Some(subnets)).send().await.unwrap_err();
    assert_eq!(code(&e), "InvalidSubnet", "{e:?}");
    // A user pool with deletion protection on is not deleted (moto would).
    let idp: aws_sdk_cognitoidentityprovider::Client = provisioner::provider::Service::build(&conf(common::REGION));
    let pool = idp
        .create_user_pool()
        .pool_name("guarded")
        .deletion_protection(aws_sdk_cognitoidentityprovider::types::DeletionProtectionType::Active)
        .send()
        .await
        .unwrap();
    let pool = pool.user_pool().unwrap().id().unwrap().to_owned();
    let e = idp.delete_user_pool().user_pool_id(&pool).send().await.unwrap_err();
    assert_eq!(code(&e), "InvalidParameterException");
    let fired = proxy.state.strict.fired();
    for rule in [&strict::EC2_BY_ID, &strict::IGW_FOR_PUBLIC_LB, &strict::POOL_PROTECTION] {
        assert_eq!(fired.get(rule.name), Some(&1), "{}: {fired:?}", rule.name);
    }

    // The local stack: its internet-facing load balancer waits for the VPC's gateway (the rule
    // does not fire), its WAF association retries while the balancer is new to WAF.
    let (_d, local) = variant(LOCAL, "strictlocal", &[]);
    ok(&run(&ep, &["apply", &local, "--yes"]), 0, "apply local in strict mode, in one run");
    ok(&run(&ep, &["plan", &local]), 0, "plan local in strict mode");
    let fired = proxy.state.strict.fired();
    assert_eq!(fired.get(strict::IGW_FOR_PUBLIC_LB.name), Some(&1), "only the direct call above: {fired:?}");
    assert!(fired.get(strict::WAF_FRESH_RESOURCE.name).is_some_and(|n| *n > 0), "{fired:?}");
    ok(&run(&ep, &["destroy", &local, "--yes"]), 0, "destroy local in strict mode");
    assert!(owned(&moto.ec2(), "strictlocal").await.is_empty());

    // A protected pool with a domain hanging off it: destroy is refused before the domain goes.
    let (dir, path) = stack_file();
    std::fs::write(
        &path,
        "[stack]\nname = \"guard\"\nregion = \"eu-central-1\"\n\n[cognito_user_pool.p]\ndeletion_protection = true\n\n\
         [cognito_user_pool_domain.p]\npool = \"cognito_user_pool.p\"\n",
    )
    .unwrap();
    ok(&run(&ep, &["apply", &path, "--yes"]), 0, "a protected pool and its domain");
    proxy.take_calls();
    let r = run(&ep, &["destroy", &path, "--yes"]);
    ok(&r, 1, "destroy refused");
    assert!(r.2.contains("cognito_user_pool.p: set `deletion_protection = false`"), "{}", r.2);
    let deleted: Vec<String> = proxy
        .take_calls()
        .into_iter()
        .map(|c| c.action)
        .filter(|a| a.contains("Delete") && !a.ends_with("DeleteItem"))
        .collect();
    assert!(deleted.is_empty(), "nothing deleted: {deleted:?}");
    std::fs::write(&path, std::fs::read_to_string(&path).unwrap().replace("= true", "= false")).unwrap();
    ok(&run(&ep, &["apply", &path, "--yes"]), 0, "protection lifted");
    ok(&run(&ep, &["destroy", &path, "--yes"]), 0, "destroy after lifting");
    drop(dir);
}

/// STRICT MODE's list lag takes a lagging resource's item out whole, however its rules and tags
/// nest, and only by its own id (a group named in another's rule stays).
#[test]
fn strict_lists_hide_items_whole_by_their_own_id() {
    let xml = "<R><securityGroupInfo><item><groupId>sg-1</groupId><ipPermissions><item><groups><item>\
               <groupId>sg-2</groupId></item></groups></item></ipPermissions></item><item><groupId>sg-2</groupId>\
               </item></securityGroupInfo></R>";
    let (out, n) = common::strict::without_items(xml, "securityGroupInfo", "groupId", &|x| x == "sg-2").unwrap();
    assert_eq!(n, 1);
    assert!(out.contains("<groupId>sg-1</groupId>") && out.matches("sg-2").count() == 1, "{out}");
    assert!(out.ends_with("</securityGroupInfo></R>"), "{out}");
}

/// The id of the one user pool on `moto`.
async fn idp_pool(moto: &Moto) -> String {
    let idp = aws_sdk_cognitoidentityprovider::Client::from_conf(
        aws_sdk_cognitoidentityprovider::config::Builder::from(&moto.conf(common::REGION)).build(),
    );
    idp.list_user_pools().max_results(60).send().await.unwrap().user_pools()[0].id().unwrap().to_owned()
}

/// The plan's security section as `apply` meets it: a role given `s3:*` on `*`, an ingress
/// from everywhere and a second reader of a bucket are listed, each marked broadening, and
/// `apply --yes` stops before them with nothing changed; `--approve-broadening` makes them;
/// taking them away again needs no second question.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_yes_stops_before_changes_that_broaden_access() {
    let moto = Moto::start().await;
    let ep = moto.url.clone();
    let (_dir, path) = stack_file();
    let path = path.as_str();
    let src = |statement: &str, ingress: &str, reader: &str| {
        format!(
            "[stack]\nname = \"br\"\nregion = \"eu-central-1\"\n\n[vpc.main]\ncidr = \"10.0.0.0/16\"\n\n\
             [security_group.web]\nvpc = \"vpc.main\"\ndescription = \"web\"\n\
             ingress = [{{ protocol = \"tcp\", from_port = 8080, cidr = \"10.0.0.0/16\" }}{ingress}]\n\n\
             [iam_role.app]\ntrusted_services = [\"ecs-tasks.amazonaws.com\"]\n\
             statements = [{{ actions = [\"dynamodb:GetItem\"], resources = [\"arn:aws:dynamodb:eu-central-1:123456789012:table/t\"] }}{statement}]\n\n\
             [s3_bucket.site]\nforce_destroy = true\n\n[s3_bucket_policy.site]\nbucket = \"s3_bucket.site\"\n\
             read_by = [\"arn:aws:cloudfront::123456789012:distribution/EAAAAAAAAAAAAA\"{reader}]\n"
        )
    };
    let narrow = src("", "", "");
    let wide = src(
        ", { actions = [\"s3:*\"], resources = [\"*\"] }",
        ", { protocol = \"tcp\", from_port = 22, cidr = \"0.0.0.0/0\" }",
        ", \"arn:aws:cloudfront::210987654321:distribution/EBBBBBBBBBBBBB\"",
    );
    std::fs::write(path, &narrow).unwrap();
    ok(&run(&ep, &["apply", path, "--yes"]), 0, "create (approved by the tests' environment)");
    ok(&run(&ep, &["plan", path]), 0, "in sync");

    std::fs::write(path, &wide).unwrap();
    let unapproved = |args: &[&str]| {
        let out = common::cli(&ep).env_remove("PROVISIONER_APPROVE_BROADENING").args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let r = unapproved(&["apply", path, "--yes"]);
    assert_eq!(r.0, 1, "{r:?}");
    for line in [
        "  + iam_role.app statements Allow s3:* on * [broadening]\n",
        "  + security_group.web ingress tcp 22 0.0.0.0/0 [broadening, public]\n",
        "  + s3_bucket_policy.site read_by arn:aws:cloudfront::210987654321:distribution/EBBBBBBBBBBBBB [broadening]\n",
    ] {
        assert!(r.1.contains(line), "{line:?} in\n{}", r.1);
    }
    assert!(
        r.2.contains("nothing was changed: 3 security changes above broaden access")
            && r.2.contains("--approve-broadening"),
        "{}",
        r.2
    );
    let (code, json, _) = run(&ep, &["plan", path, "--json"]);
    assert_eq!(code, 2, "still to do: nothing was applied");
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let listed: Vec<(&str, bool)> = json["security"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["concern"].as_str().unwrap(), s["broadening"].as_bool().unwrap()))
        .collect();
    assert_eq!(listed.len(), 3, "{json}");
    assert!(listed.iter().all(|(_, b)| *b) && listed.iter().any(|(c, _)| *c == "statement"), "{listed:?}");
    let inline = || async {
        let p = moto.iam().get_role_policy().role_name("br-app").policy_name("inline").send().await.unwrap();
        percent_encoding::percent_decode_str(p.policy_document()).decode_utf8_lossy().into_owned()
    };
    assert!(!inline().await.contains("s3:*"), "the role was not widened");

    let r = unapproved(&["apply", path, "--yes", "--approve-broadening"]);
    assert_eq!(r.0, 0, "{r:?}");
    assert!(inline().await.contains("s3:*"));
    ok(&run(&ep, &["plan", path]), 0, "in sync: the section is empty");

    std::fs::write(path, &narrow).unwrap();
    let r = unapproved(&["apply", path, "--yes"]);
    assert_eq!(r.0, 0, "narrowing asks nothing: {r:?}");
    assert!(r.1.contains("  - iam_role.app statements Allow s3:* on *\n") && !r.1.contains("[broadening"), "{}", r.1);
    ok(&run(&ep, &["destroy", path, "--yes"]), 0, "destroy");
}
