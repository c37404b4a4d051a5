//! The production stack whole: applied, co-location switched, killed and throttled full applies, and AWS's strict mode.

use super::*;

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
