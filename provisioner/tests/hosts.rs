//! The hosts' software, checked without the hosts: every user data of the real stacks (rendered
//! as the provisioner renders it, outputs filled in) passes `cloud-init schema` (Debian
//! cloud-init, used only to validate), holds no secret and pins every image by digest; the setup
//! script it runs, played in a directory with the image's layout, installs the units of each
//! role (the co-location switch included), asks the metadata service only with a token (IMDSv2)
//! and is safe to run twice; every unit it installs passes `systemd-analyze verify` and uses
//! only variables the host defines; the alert rules it renders carry the stack's values.
//! Docker, Kafka, Loki, Prometheus, Grafana and Alloy do not run here (see docs/production-stack.md "Hosts").

use provisioner::stack::{Stack, Val};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo(p: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")).join(p)
}

fn stack(file: &str, vars: &[(&str, &str)]) -> Stack {
    let path = repo(file);
    let src = std::fs::read_to_string(&path).unwrap();
    // The variables a person must choose, then the test's own.
    let chosen = [("alert_email", "oncall@example.net"), ("finops_email", "finops@example.net")];
    let vars = chosen.iter().chain(vars).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    provisioner::load(path.to_str().unwrap(), &src, &vars).unwrap_or_else(|d| panic!("{file}: {:?}", d.items))
}

const DIGEST: &str = "sha256:5f1e7a0c2b9d8e6f4a3c1b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f";

/// What AWS would give for each output a user data uses (the engine fills these in at apply).
fn fake_output(address: &str, output: &str) -> String {
    match (address, output) {
        ("ecr_repository.quake", "url") => "123456789012.dkr.ecr.eu-central-1.amazonaws.com/quake-prod/quake".into(),
        ("ecr_repository.quake", "registry") => "123456789012.dkr.ecr.eu-central-1.amazonaws.com".into(),
        ("image.quake", "digest") => DIGEST.into(),
        ("instance.logging", "private_ip") => "10.0.20.7".into(),
        ("dynamodb_table.quakes", "name") => "quake-prod-quakes".into(),
        ("secret.grafana_admin", "name") => "/quake-prod/grafana_admin".into(),
        ("log_group.web", "name") => "/quake-prod/web".into(),
        ("log_group.web", "arn") => "arn:aws:logs:eu-central-1:123456789012:log-group:/quake-prod/web".into(),
        ("load_balancer.web", "arn_suffix") => "app/quake-prod-web/50dc6c495c0c9188".into(),
        ("sns_topic.alerts", "arn") => "arn:aws:sns:eu-central-1:123456789012:quake-prod-alerts".into(),
        other => panic!("the test has no value for {other:?}: add one"),
    }
}

/// Each host's user data, outputs filled in: (address, text).
fn user_data(s: &Stack) -> Vec<(String, String)> {
    s.resources
        .iter()
        .filter(|r| r.kind.name == "instance")
        .filter_map(|r| {
            let (Val::Str(t), _) = r.fields.get("user_data")? else { return None };
            let out = provisioner::schema::substitute(t, &|a, o| Some(fake_output(a, o)));
            Some((r.address(), out))
        })
        .collect()
}

/// The `content: |` block of the file written at `path` (our own files' layout).
fn written(user_data: &str, path: &str) -> String {
    let mut lines = user_data.lines().skip_while(|l| l.trim() != format!("- path: {path}"));
    let _ = lines.next().unwrap_or_else(|| panic!("{path} is not written"));
    let mut out = String::new();
    let mut body = lines.skip_while(|l| !l.trim_start().starts_with("content: |"));
    let _ = body.next();
    for l in body {
        let Some(x) = l.strip_prefix("      ") else { break };
        out.push_str(x);
        out.push('\n');
    }
    out
}

fn env_file(text: &str) -> BTreeMap<String, String> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

fn stacks() -> Vec<(&'static str, Stack)> {
    vec![
        ("prod", stack("stacks/prod.toml", &[("separate_logging_host", "true")])),
        ("prod co-located", stack("stacks/prod.toml", &[("separate_logging_host", "false")])),
        ("local", stack("stacks/local.toml", &[])),
    ]
}

#[test]
fn user_data_passes_cloud_init_holds_no_secret_and_pins_images() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for (name, s) in stacks() {
        for (host, text) in user_data(&s) {
            seen += 1;
            let what = format!("{name}: {host}");
            let f = dir.path().join("user-data.yaml");
            std::fs::write(&f, &text).unwrap();
            let out = Command::new("cloud-init")
                .args(["schema", "--config-file"])
                .arg(&f)
                .output()
                .expect("cloud-init (Debian package: run `make deps`)");
            assert!(
                out.status.success(),
                "{what}: {}{}\n{text}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.len() < 16 * 1024, "{what}: user data over EC2's 16 KB");
            assert!(!text.contains("${"), "{what}: something was not filled in:\n{text}");

            assert!(!(text.contains("chmod") && text.contains("docker.sock")), "{what}: the Docker socket stays 0660");
            // No secret: no key, no password, no token; Grafana's password is a parameter name.
            let lower = text.to_lowercase();
            for bad in ["password=", "password:", "secret_access_key", "akia", "begin rsa", "begin openssh", "token="] {
                assert!(!lower.contains(bad), "{what}: `{bad}` in the user data");
            }
            let env = env_file(&written(&text, "/etc/quake/host.env"));
            assert_eq!(
                env["GRAFANA_ADMIN_PARAMETER"],
                fake_output("secret.grafana_admin", "name"),
                "{what}: a name, not a value"
            );

            // Every image by digest: third-party ones from assets/pins.toml, ours from the build.
            let images: Vec<(&String, &String)> = env.iter().filter(|(k, _)| k.ends_with("_IMAGE")).collect();
            assert!(images.len() >= 4, "{what}: {env:?}");
            for (k, v) in images {
                let (_, digest) = v.split_once("@sha256:").unwrap_or_else(|| panic!("{what}: {k}={v} has no digest"));
                assert!(digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()), "{what}: {k}={v}");
                assert!(!v.contains(":latest"), "{what}: {k}={v}");
            }
            assert!(env["QUAKE_IMAGE"].ends_with(DIGEST), "{what}: the services' image by the built digest");
            // The registry's credentials come from the instance role through the helper.
            let docker = written(&text, "/root/.docker/config.json");
            let docker: serde_json::Value = serde_json::from_str(&docker).unwrap();
            assert_eq!(docker["credHelpers"]["123456789012.dkr.ecr.eu-central-1.amazonaws.com"], "ecr-login");
        }
    }
    assert_eq!(seen, 2 + 1 + 1, "prod: two hosts; co-located and local: one");
}

#[test]
fn co_location_leaves_the_logging_host_out_and_points_grafana_at_the_streaming_host() {
    let separate = stack("stacks/prod.toml", &[("separate_logging_host", "true")]);
    let together = stack("stacks/prod.toml", &[("separate_logging_host", "false")]);
    let addresses = |s: &Stack| s.resources.iter().map(|r| r.address()).collect::<BTreeSet<_>>();
    let gone: Vec<String> = addresses(&separate).difference(&addresses(&together)).cloned().collect();
    assert_eq!(
        gone,
        ["iam_instance_profile.logging", "iam_role.logging", "instance.logging", "security_group.logging"]
    );
    let grafana = |s: &Stack| s.outputs.iter().find(|o| o.name == "grafana").unwrap().template.clone();
    assert!(grafana(&separate).contains("instance.logging.id"));
    assert!(grafana(&together).contains("instance.streaming.id"));
    let env = |s: &Stack| {
        let (_, text) = user_data(s).into_iter().find(|(a, _)| a == "instance.streaming").unwrap();
        env_file(&written(&text, "/etc/quake/host.env"))
    };
    assert_eq!(env(&separate)["LOGGING_HOST"], "10.0.20.7");
    assert_eq!(env(&together)["LOGGING_HOST"], "", "no logging host: the setup takes the role");
}

/// The image's layout as `[image.quake]` declares it (`/assets/X` is `/opt/quake/X` on a host,
/// where the user data copies it), materialised under `root/opt/quake`.
fn image_layout(root: &Path) {
    let s = stack("stacks/prod.toml", &[]);
    let image = s.get("image.quake").unwrap();
    let Some((Val::Table(files), _)) = image.fields.get("files") else { panic!("image.quake has files") };
    let exclude: Vec<String> = match image.fields.get("exclude") {
        Some((Val::List(l), _)) => l.iter().filter_map(|(v, _)| v.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    let declared: Vec<(String, std::path::PathBuf)> = files
        .iter()
        .map(|(at, (v, _))| {
            let Val::Str(host) = v else { panic!() };
            (at.clone(), repo("stacks").join(host))
        })
        .collect();
    // File by file as the image builder takes them (what `exclude` leaves out is not there).
    for (at, from) in provisioner::image::listing(&declared, &exclude).unwrap() {
        let to = root.join("opt/quake").join(at.strip_prefix("/assets/").unwrap());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

/// Shims for what a host has and this machine does not: the metadata service (refusing a
/// request without a session token, as IMDSv2 does), systemctl (recording), install (without
/// changing owners, so the test needs no root).
fn shims(dir: &Path, log: &Path) {
    let write = |name: &str, body: String| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        Command::new("chmod").arg("+x").arg(&p).status().unwrap();
    };
    write(
        "curl",
        format!(
            "#!/bin/sh\necho \"curl $*\" >> {log}\ncase \"$*\" in\n  *'-X PUT'*api/token*) echo TOKEN ;;\n  \
             *'X-aws-ec2-metadata-token: TOKEN'*placement/region*) echo eu-central-1 ;;\n  \
             *) echo 'IMDSv2: no token' >&2; exit 22 ;;\nesac\n",
            log = log.display()
        ),
    );
    write("systemctl", format!("#!/bin/sh\necho \"systemctl $*\" >> {}\n", log.display()));
    write(
        "install",
        "#!/bin/sh\nset -- \"$@\"\nargs=\"\"\nwhile [ $# -gt 0 ]; do\n  case $1 in\n    -o|-g) shift 2 ;;\n    \
         *) args=\"$args '$1'\"; shift ;;\n  esac\ndone\neval \"exec /usr/bin/install $args\"\n"
            .into(),
    );
}

struct Played {
    units: BTreeSet<String>,
    root: PathBuf,
    log: String,
}

/// Runs the image's setup for the host env `env` in a fresh root; panics on failure.
fn play(env: &str, layout: &Path) -> Played {
    let root = tempfile::tempdir().unwrap().keep();
    std::fs::create_dir_all(root.join("etc/quake")).unwrap();
    std::fs::create_dir_all(root.join("etc/systemd/system")).unwrap();
    std::fs::write(root.join("etc/quake/host.env"), env).unwrap();
    std::fs::write(root.join("meminfo"), "MemTotal:        2000000 kB\nMemFree:          100000 kB\n").unwrap();
    let bin = root.join("shims");
    std::fs::create_dir_all(&bin).unwrap();
    let log = root.join("calls.log");
    shims(&bin, &log);
    let run = || {
        let out = Command::new("sh")
            .arg(layout.join("opt/quake/hosts/setup"))
            .env("QUAKE_ROOT", &root)
            .env("QUAKE_MEMINFO", root.join("meminfo"))
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "setup failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run();
    run(); // A second boot of the same host changes nothing and does not fail.
    let units = std::fs::read_dir(root.join("etc/systemd/system"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let log = std::fs::read_to_string(&log).unwrap();
    Played { units, root, log }
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| format!("quake-{n}.service")).collect()
}

#[test]
fn setup_installs_the_units_of_each_role_and_they_verify() {
    let layout = tempfile::tempdir().unwrap();
    image_layout(layout.path());
    let hosts = |s: &Stack| -> BTreeMap<String, String> {
        user_data(s).into_iter().map(|(a, t)| (a, written(&t, "/etc/quake/host.env"))).collect()
    };
    let separate = hosts(&stack("stacks/prod.toml", &[("separate_logging_host", "true")]));
    let together = hosts(&stack("stacks/prod.toml", &[("separate_logging_host", "false")]));

    let streaming = play(&separate["instance.streaming"], layout.path());
    assert_eq!(streaming.units, set(&["kafka", "kafka-topics", "producer", "consumer", "alloy"]));
    let runtime = env_file(&std::fs::read_to_string(streaming.root.join("etc/quake/runtime.env")).unwrap());
    assert_eq!((runtime["AWS_REGION"].as_str(), runtime["LOGGING_HOST"].as_str()), ("eu-central-1", "10.0.20.7"));
    let kafka = env_file(&std::fs::read_to_string(streaming.root.join("etc/quake/kafka.env")).unwrap());
    assert_eq!(kafka["KAFKA_HEAP_OPTS"], "-Xms488m -Xmx488m", "a quarter of 2 GB");
    assert_eq!(kafka["KAFKA_LOG_RETENTION_HOURS"], "168");
    assert_eq!(kafka["KAFKA_PROCESS_ROLES"], "broker,controller", "KRaft, no ZooKeeper");
    assert!(streaming.log.contains("systemctl enable --now quake-producer.service"), "{}", streaming.log);
    assert!(!streaming.log.contains("IMDSv2"), "{}", streaming.log);

    let logging = play(&separate["instance.logging"], layout.path());
    assert_eq!(logging.units, set(&["loki", "prometheus", "grafana", "alloy"]));

    let both = play(&together["instance.streaming"], layout.path());
    assert_eq!(
        both.units,
        set(&["kafka", "kafka-topics", "producer", "consumer", "loki", "prometheus", "grafana", "alloy"]),
        "no logging host: the streaming host takes the role"
    );
    let runtime = env_file(&std::fs::read_to_string(both.root.join("etc/quake/runtime.env")).unwrap());
    assert_eq!(runtime["LOGGING_HOST"], "127.0.0.1");

    // The alert rules with this stack's values, nothing left to fill in.
    let rules = std::fs::read_to_string(logging.root.join("etc/quake/grafana/alerting/quake.json")).unwrap();
    let placeholders = rules
        .split('@')
        .skip(1)
        .step_by(2)
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
    assert_eq!(placeholders.count(), 0, "placeholders left: {rules}");
    let rules: serde_json::Value = serde_json::from_str(&rules).unwrap();
    let sns = &rules["contactPoints"][0]["receivers"][0]["settings"];
    assert_eq!(sns["topic_arn"], "arn:aws:sns:eu-central-1:123456789012:quake-prod-alerts", "{sns}");
    assert_eq!(sns["sigv4"]["region"], "eu-central-1", "the host's region, from the metadata service");
    let text = rules.to_string();
    assert!(text.contains("app/quake-prod-web/50dc6c495c0c9188") && !text.contains("@WEB_"), "{text}");

    // Every unit verifies and reads only what its host defines.
    let sd = systemd_root();
    let mut defined: BTreeSet<String> = env_file(&together["instance.streaming"]).into_keys().collect();
    defined.extend(["AWS_REGION".to_owned(), "LOGGING_HOST".to_owned()]);
    for unit in &both.units {
        std::fs::copy(both.root.join("etc/systemd/system").join(unit), sd.join("etc/systemd/system").join(unit))
            .unwrap();
    }
    for unit in &both.units {
        let text = std::fs::read_to_string(both.root.join("etc/systemd/system").join(unit)).unwrap();
        for v in text.split("${").skip(1).filter_map(|r| r.split_once('}')).map(|(v, _)| v) {
            assert!(defined.contains(v), "{unit} uses ${{{v}}}, which no host file defines");
        }
        let lines = text.lines().filter(|l| !l.starts_with('#'));
        for path in lines.flat_map(str::split_whitespace).filter(|w| w.contains("/opt/quake/")) {
            let p = path.split(':').next().unwrap().trim_start_matches("-v");
            assert!(layout.path().join(p.trim_start_matches('/')).exists(), "{unit}: {p} is not in the image");
        }
        if text.contains("docker run") {
            assert!(text.contains("_IMAGE}\n") || text.contains("_IMAGE} "), "{unit} runs an image by variable");
            assert!(!text.contains("docker.io") && !text.contains("@sha256"), "{unit} names an image itself");
        }
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", sd.display()))
            .arg(format!("/etc/systemd/system/{unit}"))
            .output()
            .unwrap();
        // Warnings too: systemd ignores a line it cannot read and starts the unit without it.
        assert!(out.status.success() && out.stderr.is_empty(), "{unit}: {}", String::from_utf8_lossy(&out.stderr));
    }
    alloy_sees_the_journal_and_its_targets_only(&both, &logging, layout.path());
    for f in std::fs::read_dir(layout.path().join("opt/quake/hosts")).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap_or_default();
        assert!(!(text.contains("chmod") && text.contains("docker.sock")), "the Docker socket stays 0660");
    }
    for s in ["setup", "grafana-password", "kafka-topics"] {
        let ok = Command::new("dash").arg("-n").arg(layout.path().join("opt/quake/hosts").join(s)).status().unwrap();
        assert!(ok.success(), "{s}: not valid sh");
    }
}

/// Alloy is given the journal, read-only, and nothing else of the host that could reach a
/// secret or the Docker API: every container logs to journald (else its logs would never reach
/// Loki), Alloy's mounts are the listed ones, and the scrape list the setup writes names each
/// service at the address its unit gives it (none on a host without them).
fn alloy_sees_the_journal_and_its_targets_only(both: &Played, logging: &Played, layout: &Path) {
    let unit = |p: &Played, u: &str| std::fs::read_to_string(p.root.join("etc/systemd/system").join(u)).unwrap();
    for u in &both.units {
        let text = unit(both, u);
        if text.contains("docker run") {
            assert!(text.contains("--log-driver journald"), "{u}: its logs go where Alloy reads them");
        }
    }
    let alloy = unit(both, "quake-alloy.service");
    let mounts: BTreeSet<&str> =
        alloy.split_whitespace().collect::<Vec<_>>().windows(2).filter(|w| w[0] == "-v").map(|w| w[1]).collect();
    let allowed: BTreeSet<&str> = [
        "/var/log/journal:/var/log/journal:ro",
        "/run/log/journal:/run/log/journal:ro",
        "/etc/machine-id:/etc/machine-id:ro",
        "/opt/quake/observability/config.alloy:/etc/alloy/config.alloy:ro",
        "/etc/quake/alloy-targets.json:/etc/alloy/targets.json:ro",
        "/var/lib/alloy:/var/lib/alloy",
    ]
    .into();
    assert_eq!(mounts, allowed, "Alloy's mounts: no Docker socket, no /, /proc or /sys of the host");
    assert!(!alloy.contains("docker.sock") && !alloy.contains("--privileged") && !alloy.contains("--pid"), "{alloy}");
    let config = std::fs::read_to_string(layout.join("opt/quake/observability/config.alloy")).unwrap();
    assert!(!config.contains("docker.sock") && !config.contains("discovery.docker"), "Alloy asks Docker nothing");
    for path in config.split('"').filter(|w| w.starts_with("/etc/alloy/")) {
        assert!(mounts.iter().any(|m| m.contains(&format!(":{path}:"))), "config.alloy reads {path}: not mounted");
    }

    let targets = |p: &Played| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p.root.join("etc/quake/alloy-targets.json")).unwrap()).unwrap()
    };
    assert_eq!(targets(logging), serde_json::json!([]), "a logging host scrapes no service");
    let listed = targets(both);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    for t in listed.as_array().unwrap() {
        let service = t["labels"]["service"].as_str().unwrap();
        let address = t["targets"][0].as_str().unwrap();
        let text = unit(both, &format!("quake-{service}.service"));
        assert!(text.contains(&format!("QUAKE_LISTEN={address} ")), "{service} listens where Alloy scrapes: {address}");
    }
}

/// A root `systemd-analyze verify` can load units in: the system's own units (targets), a
/// docker.service, and the programs units start.
fn systemd_root() -> PathBuf {
    let root = tempfile::tempdir().unwrap().keep();
    for d in ["usr/lib/systemd", "usr/bin", "bin", "etc/systemd/system"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let ok =
        Command::new("cp").arg("-r").arg("/lib/systemd/system").arg(root.join("usr/lib/systemd/")).status().unwrap();
    assert!(ok.success());
    std::fs::write(root.join("usr/bin/docker"), "#!/bin/sh\n").unwrap();
    Command::new("chmod").arg("+x").arg(root.join("usr/bin/docker")).status().unwrap();
    std::fs::copy("/bin/sh", root.join("bin/sh")).unwrap();
    std::fs::write(
        root.join("etc/systemd/system/docker.service"),
        "[Unit]\nDescription=Docker\n[Service]\nExecStart=/usr/bin/docker\n",
    )
    .unwrap();
    root
}
