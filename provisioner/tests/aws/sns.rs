//! SNS: an alerts topic and its subscriptions.

use super::*;

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
