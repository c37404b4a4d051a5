//! The engine against moto: a network's lifecycle, drift, killed, throttled, concurrent and interrupted applies, broken stacks, regions, outputs in strings, an API the emulator lacks, and the plan's broadening gate.

use super::*;

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
