//! Provisioner benchmark against moto behind the recording proxy: AWS calls and wall time of
//! `plan` on the in-sync production network next to a one-read-per-resource baseline, and the
//! makespan of `apply` from empty with 100 ms added to every call, against the critical path of
//! its step graph and against `--parallelism 1`; then the same plan and apply numbers for the
//! whole production stack (moto's missing replicas and Fargate rollouts emulated by the proxy,
//! as in the tests); then the services' image: built from the release binary as the production
//! stack builds it, its compressed size, the time to build it warm and to push it to a local
//! registry (CNCF distribution), and what a second push uploads; and the whole stack applied
//! in STRICT MODE with AWS's typical waits played (makespan against the critical path) and
//! planned there. Prints numbers; asserts nothing.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{owned, run, LocalRegistry, Moto, Proxy};
use provisioner::walk::{Progress, WalkOptions};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The production stack written where the bench runs it, its file paths pointed at the
/// repository: its network layer only, or the whole of it under the name `quake-full`.
fn prod_copy(network_only: bool) -> String {
    let root = format!("{}/..", env!("CARGO_MANIFEST_DIR"));
    let mut src = std::fs::read_to_string(format!("{root}/stacks/prod.toml")).expect("stack file");
    if network_only {
        src.truncate(src.find("# Application layer").expect("prod.toml marks its application layer"));
    } else {
        src = src.replace("name = \"quake-prod\"", "name = \"quake-full\"");
    }
    // The layout with most resources (a logging host of its own), as the numbers in docs/benchmarks.md.
    let src = src.replacen("separate_logging_host = \"false\"", "separate_logging_host = \"true\"", 1);
    let src = src.replace("\"../", &format!("\"{root}/"));
    // The plan and apply numbers are the engine's: image a small binary (the image section
    // below images the services).
    let src = src.replace("package = \"quake\"", "executable = \"/usr/bin/true\"");
    // moto is reached over plain HTTP and applies the FinOps bucket's `aws:SecureTransport`
    // condition to it (as the full-stack test does).
    let src = src.replace(
        "read_by = [\"${cloudfront_distribution.finops.arn}\"]",
        "read_by = [\"${cloudfront_distribution.finops.arn}\"]\nhttps_only = false",
    );
    let which = if network_only { "network" } else { "full" };
    let out = std::env::temp_dir().join(format!("quake-bench-{which}-{}.toml", std::process::id()));
    std::fs::write(&out, src).expect("write the stack");
    out.to_string_lossy().into_owned()
}

static STACK: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| prod_copy(true));
static FULL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| prod_copy(false));

/// The variables a person must choose (prod.toml gives them no default).
fn chosen() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("alert_email".to_owned(), "oncall@example.net".to_owned()),
        ("finops_email".to_owned(), "finops@example.net".to_owned()),
    ])
}

fn load(path: &str) -> provisioner::stack::Stack {
    let src = std::fs::read_to_string(path).expect("stack file");
    let mut stack = provisioner::load(path, &src, &chosen()).expect("valid stack");
    provisioner::engine::derive(&mut stack).expect("images build");
    stack
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One describe per resource by id, ten at a time: what a tool that keeps a state file does to
/// refresh it (plus the VPC's two DNS attribute reads, which no describe returns).
async fn baseline(ec2: &aws_sdk_ec2::Client, live: &[(String, String)]) {
    use aws_sdk_ec2::types::VpcAttributeName;
    let reads = live.iter().map(|(addr, id)| async move {
        let kind = addr.split('.').next().unwrap_or_default();
        match kind {
            "vpc" => {
                ec2.describe_vpcs().vpc_ids(id).send().await.map(|_| ()).ok();
                for a in [VpcAttributeName::EnableDnsSupport, VpcAttributeName::EnableDnsHostnames] {
                    ec2.describe_vpc_attribute().vpc_id(id).attribute(a).send().await.map(|_| ()).ok();
                }
            }
            "subnet" => drop(ec2.describe_subnets().subnet_ids(id).send().await),
            "internet_gateway" => drop(ec2.describe_internet_gateways().internet_gateway_ids(id).send().await),
            "route_table" => drop(ec2.describe_route_tables().route_table_ids(id).send().await),
            "security_group" => drop(ec2.describe_security_groups().group_ids(id).send().await),
            "vpc_endpoint" => drop(ec2.describe_vpc_endpoints().vpc_endpoint_ids(id).send().await),
            other => panic!("no baseline read for {other}"),
        }
    });
    let mut reads: Vec<_> = reads.map(Box::pin).collect();
    while !reads.is_empty() {
        let rest = reads.split_off(reads.len().min(10));
        futures::future::join_all(reads).await;
        reads = rest;
    }
}

/// Applies the stack from empty in process; returns (makespan, critical path, steps).
async fn timed_apply(path: &str, parallelism: usize) -> (Duration, Duration, usize) {
    let stack = load(path);
    let (cx, _) = provisioner::engine::connect(&stack).await;
    let inv = provisioner::engine::discover(&cx, &stack, &Default::default()).await.expect("discover");
    let plan = provisioner::engine::plan(&stack, &inv);
    let (nodes, edges) = provisioner::engine::graph(&stack, &inv, &plan);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = WalkOptions { parallelism, ..WalkOptions::default() };
    let started = Instant::now();
    let out = provisioner::engine::apply(&cx, &stack, &inv, &plan, &opts, Some(tx), CancellationToken::new()).await;
    let makespan = started.elapsed();
    assert!(out.report.ok(), "apply failed: {:?}", out.report);
    let mut took: BTreeMap<provisioner::engine::StepId, Duration> = BTreeMap::new();
    while let Ok(p) = rx.try_recv() {
        if let Progress::Finished(step, _, d) = p {
            took.insert(step, d);
        }
    }
    // Longest chain of measured step times through the graph (it is a DAG; relax |V| times).
    let mut finish: BTreeMap<&provisioner::engine::StepId, Duration> = nodes.iter().map(|n| (n, took[n])).collect();
    for _ in 0..nodes.len() {
        for (a, b) in &edges {
            let cand = finish[b] + took[a];
            if cand > finish[a] {
                finish.insert(a, cand);
            }
        }
    }
    (makespan, finish.values().copied().max().unwrap_or_default(), nodes.len())
}

#[tokio::main]
async fn main() {
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.url).await;
    let registry = common::registry();
    std::env::set_var("PROVISIONER_REGISTRY_ENDPOINT", &registry.url);
    let ep = proxy.url.clone();
    let r = run(&ep, &["apply", &STACK, "--yes"]);
    assert_eq!(r.0, 0, "{}{}", r.1, r.2);
    let live = owned(&moto.ec2(), "quake-prod").await;
    let n = live.len();
    proxy.take_calls();

    println!(
        "provisioner benchmark: the production network ({}), {n} resources, moto server behind a recording proxy",
        *STACK
    );
    // plan, in sync, through the CLI (process start included).
    let mut times = Vec::new();
    let mut calls = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let r = run(&ep, &["plan", &STACK]);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(r.0, 0, "in sync: {}", r.1);
        calls = proxy.take_calls().len();
    }
    let plan_ms = median(times);
    // Baseline through the same proxy with the same SDK.
    let ec2 = {
        let conf = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new(common::REGION))
            .endpoint_url(&ep)
            .credentials_provider(aws_sdk_ec2::config::Credentials::new("t", "t", None, None, "t"))
            .build();
        aws_sdk_ec2::Client::from_conf(conf)
    };
    let mut times = Vec::new();
    let mut base_calls = 0;
    for _ in 0..5 {
        let t = Instant::now();
        baseline(&ec2, &live).await;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        base_calls = proxy.take_calls().len();
    }
    let base_ms = median(times);
    println!(
        "plan (in sync):         {calls} calls = {:.2} per resource (target <= 1.0), {plan_ms:.0} ms median of 5",
        calls as f64 / n as f64
    );
    println!(
        "one read per resource:  {base_calls} calls = {:.2} per resource, {base_ms:.0} ms median of 5 (reads only, no process)",
        base_calls as f64 / n as f64
    );
    println!("ratio calls plan/baseline: {:.2}", calls as f64 / base_calls as f64);

    // apply from empty with 100 ms on every call.
    std::env::set_var("AWS_ENDPOINT_URL", &ep);
    std::env::set_var("AWS_ACCESS_KEY_ID", "test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    proxy.set_faults(0.0, Duration::from_millis(100));
    for parallelism in [10, 1] {
        moto.reset().await;
        let (makespan, critical, steps) = timed_apply(&STACK, parallelism).await;
        println!(
            "apply from empty, +100 ms per call, --parallelism {parallelism:>2}: makespan {:.2} s, critical path {:.2} s, \
             {steps} steps, makespan/critical path = {:.2}{}",
            makespan.as_secs_f64(),
            critical.as_secs_f64(),
            makespan.as_secs_f64() / critical.as_secs_f64(),
            if parallelism == 10 { " (target <= 1.2)" } else { "" }
        );
    }

    // The whole production stack.
    proxy.set_faults(0.0, Duration::ZERO);
    proxy.emulate_global_tables();
    proxy.emulate_ecs_deployments();
    moto.reset().await;
    proxy.forget_emulated();
    let r = run(&ep, &["apply", &FULL, "--yes"]);
    assert_eq!(r.0, 0, "{}{}", r.1, r.2);
    let n = load(&FULL).resources.len();
    proxy.take_calls();
    let mut times = Vec::new();
    let mut calls = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let r = run(&ep, &["plan", &FULL]);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(r.0, 0, "in sync: {}", r.1);
        calls = proxy.take_calls().len();
    }
    println!(
        "whole production stack, {n} resources: plan (in sync) {calls} calls = {:.2} per resource (target <= 1.0; one \
         read per resource: {n}), {:.0} ms median of 5",
        calls as f64 / n as f64,
        median(times)
    );
    proxy.set_faults(0.0, Duration::from_millis(100));
    moto.reset().await;
    proxy.forget_emulated();
    let (makespan, critical, steps) = timed_apply(&FULL, 10).await;
    println!(
        "whole production stack, apply from empty, +100 ms per call: makespan {:.2} s, critical path {:.2} s, {steps} \
         steps, makespan/critical path = {:.2} (target <= 1.2)",
        makespan.as_secs_f64(),
        critical.as_secs_f64(),
        makespan.as_secs_f64() / critical.as_secs_f64()
    );

    // AWS as it behaves in a fresh account (STRICT MODE: eventual consistency, propagation,
    // service-linked roles) with its typical waits played at the proxy, one minute as one second
    // (CloudFront 5, load balancer 3, NAT 1.5, ECS rollout 2; IAM's seconds as first-use
    // refusals): the engine should wait them out side by side, not one after another.
    proxy.set_faults(0.0, Duration::ZERO);
    proxy.strict();
    *proxy.state.strict.waits.lock().unwrap() = Some(common::strict::Waits::scaled(Duration::from_secs(1)));
    moto.reset().await;
    proxy.forget_emulated();
    let (makespan, critical, steps) = timed_apply(&FULL, 10).await;
    println!(
        "whole production stack in strict mode with AWS's waits (1 min = 1 s), apply from empty: makespan {:.2} s, \
         critical path {:.2} s, {steps} steps, makespan/critical path = {:.2} (target <= 1.1); strict rules fired: {:?}",
        makespan.as_secs_f64(),
        critical.as_secs_f64(),
        makespan.as_secs_f64() / critical.as_secs_f64(),
        proxy.state.strict.fired()
    );
    *proxy.state.strict.waits.lock().unwrap() = None;
    // Past the lists' lag, then plan in sync.
    tokio::time::sleep(proxy.state.strict.window * 2).await;
    proxy.take_calls();
    let mut calls = 0;
    for _ in 0..3 {
        let r = run(&ep, &["plan", &FULL]);
        assert_eq!(r.0, 0, "in sync: {}{}", r.1, r.2);
        calls = proxy.take_calls().len();
    }
    println!(
        "whole production stack in strict mode: plan (in sync) {calls} calls = {:.2} per resource",
        calls as f64 / n as f64
    );

    images(registry).await;
}

/// The services' image as `stacks/prod.toml` builds it (release `quake`, the map page).
async fn images(registry: &LocalRegistry) {
    let root = format!("{}/..", env!("CARGO_MANIFEST_DIR"));
    let src = std::fs::read_to_string(format!("{root}/stacks/prod.toml")).expect("stack file");
    let path = std::env::temp_dir().join(format!("quake-bench-image-{}.toml", std::process::id()));
    std::fs::write(&path, src.replace("\"../", &format!("\"{root}/"))).expect("write the stack");
    let path = path.to_string_lossy().into_owned();
    let src = std::fs::read_to_string(&path).expect("stack file");
    let derive = || {
        let mut stack = provisioner::load(&path, &src, &chosen()).expect("valid stack");
        let t = Instant::now();
        provisioner::engine::derive(&mut stack).expect("the image builds");
        let digest = stack.get("image.quake").and_then(|r| r.str("digest")).map(|(d, _)| d.to_owned()).expect("digest");
        (t.elapsed(), digest)
    };
    derive(); // Cargo may have a little to do the first time.
    let mut times = Vec::new();
    let mut digest = String::new();
    for _ in 0..3 {
        let (t, d) = derive();
        times.push(t.as_secs_f64());
        assert!(digest.is_empty() || digest == d, "reproducible");
        digest = d;
    }
    let image = provisioner::image::built(&digest).expect("built in this process");
    let layers: Vec<String> = image.layers.iter().map(|l| format!("{:.1}", l.size() as f64 / 1e6)).collect();
    println!(
        "image of the services (release quake, map page): {:.1} MB compressed (target <= 20 MB; layers {} MB), \
         built warm in {:.2} s median of 3 (cargo up to date, imaging included)",
        image.size() as f64 / 1e6,
        layers.join(" + "),
        median(times)
    );
    let client = registry.client();
    let t = Instant::now();
    let first = client.push("bench/quake", &image, "one").await.expect("push");
    let push = t.elapsed();
    let t = Instant::now();
    let second = client.push("bench/quake", &image, "two").await.expect("push");
    println!(
        "push to a local registry: {:.2} s for {:.1} MB in {} blobs; a second push: {} bytes in {} blobs (target 0), {:.3} s",
        push.as_secs_f64(),
        first.bytes_uploaded as f64 / 1e6,
        first.blobs_uploaded,
        second.bytes_uploaded,
        second.blobs_uploaded,
        t.elapsed().as_secs_f64()
    );
}
