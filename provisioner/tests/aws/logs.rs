//! CloudWatch Logs: log groups on the same engine.

use super::*;

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
