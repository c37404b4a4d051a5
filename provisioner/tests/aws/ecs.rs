//! ECS: a cluster, a Fargate service rolling out and scaling.

use super::*;

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
