//! IAM: roles with canonical policies, instance profiles, and every role granting exactly what its service calls.

use super::*;

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
