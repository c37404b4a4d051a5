//! SSM: a generated secret never shown.

use super::*;

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
