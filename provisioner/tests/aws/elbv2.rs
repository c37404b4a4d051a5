//! ELBv2 and WAF: a load balancer behind a web ACL.

use super::*;

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
