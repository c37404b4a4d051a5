//! Stack validation: the real stacks pass; a corpus of broken stacks (each problem kind of the
//! issue) and thousands of random mutations give located diagnostics and never a panic; the
//! CLI's exit codes, rendering, variables, schema, docs and completions.

use provisioner::load;
use std::collections::BTreeMap;
use std::process::Command;

fn prod() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../stacks/prod.toml")).unwrap()
}

/// The variables a person must choose (prod.toml gives them no default), as a caller gives them.
fn chosen() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("alert_email".to_owned(), "oncall@example.net".to_owned()),
        ("finops_email".to_owned(), "finops@example.net".to_owned()),
    ])
}

#[test]
fn the_real_stacks_are_valid() {
    for f in ["prod.toml", "local.toml"] {
        let path = format!("{}/../stacks/{f}", env!("CARGO_MANIFEST_DIR"));
        let src = std::fs::read_to_string(&path).unwrap();
        let s = load(f, &src, &chosen()).unwrap_or_else(|d| panic!("{f}: {:?}", d.items));
        assert!(s.resources.len() >= 10, "{f}");
    }
}

/// (what is broken, text to find in prod.toml, its replacement, the diagnostic code expected)
const CORPUS: &[(&str, &str, &str, &str)] = &[
    ("syntax: unclosed string", "cidr = \"10.0.0.0/16\"", "cidr = \"10.0.0.0/16", "syntax"),
    (
        "syntax: missing value",
        "az = \"a\"\npublic_ip_on_launch = true\n\n[subnet.web_b]",
        "az = \n\n[subnet.web_b]",
        "syntax",
    ),
    ("syntax: duplicate table", "[subnet.web_b]", "[subnet.web_a]", "syntax"),
    ("syntax: duplicate key", "cidr = \"10.0.0.0/16\"", "cidr = \"10.0.0.0/16\"\ncidr = \"10.1.0.0/16\"", "syntax"),
    ("unknown kind", "[vpc_endpoint.s3]", "[vpc_endpont.s3]", "unknown-kind"),
    ("unknown kind: typo vpc", "[vpc.main]", "[vcp.main]", "unknown-kind"),
    ("unknown kind: plural", "[internet_gateway.main]", "[internet_gateways.main]", "unknown-kind"),
    ("unknown kind: made up", "[internet_gateway.main]", "[gateway.main]", "unknown-kind"),
    ("unknown field in vpc", "cidr = \"10.0.0.0/16\"", "cidr = \"10.0.0.0/16\"\ncidr_block = \"x\"", "unknown-field"),
    ("unknown field in subnet", "az = \"b\"", "az = \"b\"\nzone = \"b\"", "unknown-field"),
    ("unknown field in rule", "description = \"CloudFront's VPC origin\"", "descr = \"x\"", "unknown-field"),
    ("unknown field in route", "destination = \"0.0.0.0/0\"", "dest = \"0.0.0.0/0\"", "unknown-field"),
    (
        "unknown field in stack",
        "region = \"eu-central-1\"",
        "region = \"eu-central-1\"\nowner = \"me\"",
        "unknown-field",
    ),
    (
        "wrong type: bool as string",
        "public_ip_on_launch = true\n\n[subnet.web_b]",
        "public_ip_on_launch = \"yes\"\n\n[subnet.web_b]",
        "wrong-type",
    ),
    ("wrong type: cidr as number", "cidr = \"10.0.0.0/16\"", "cidr = 10", "wrong-type"),
    ("wrong type: port as string", "from_port = 80,", "from_port = \"80\",", "wrong-type"),
    (
        "wrong type: reference as array",
        "vpc = \"vpc.main\"\ncidr = \"10.0.0.0/24\"",
        "vpc = [\"vpc.main\"]\ncidr = \"10.0.0.0/24\"",
        "wrong-type",
    ),
    (
        "wrong type: subnets as string",
        "subnets = [\"subnet.web_a\", \"subnet.web_b\", \"subnet.hosts\"]",
        "subnets = \"subnet.web_a\"",
        "wrong-type",
    ),
    (
        "wrong type: tags as string",
        "tags = { project = \"quake\", cost-center = \"analytics\" }",
        "tags = \"quake\"",
        "wrong-type",
    ),
    ("wrong type: tag value number", "project = \"quake\"", "project = 7", "wrong-type"),
    (
        "wrong type: ingress as table",
        "egress = [{ protocol = \"all\", cidr = \"0.0.0.0/0\", description = \"EMSC, AWS APIs, Loki\" }]",
        "egress = 5",
        "wrong-type",
    ),
    ("wrong type: variable not a string", "kafka_partitions = \"3\"", "kafka_partitions = 3", "wrong-type"),
    ("wrong type: kind not a table", "[stack]", "eip = 5\n[stack]", "wrong-type"),
    ("usage: unknown key", "web_gb_out = 0.05", "web_gb_outt = 0.05", "unknown-usage"),
    ("usage: not a number", "log_gb = 0.2", "log_gb = \"lots\"", "wrong-type"),
    ("usage: negative", "log_gb = 0.2", "log_gb = -1", "wrong-type"),
    ("prices: no such file", "prices = \"../assets/prices/aws.toml\"", "prices = \"../assets/prices/none.toml\"", "bad-file"),
    ("spot without the cluster's provider", "capacity_providers = [\"FARGATE\", \"FARGATE_SPOT\"]\n", "", "spot-without-provider"),
    ("missing field: vpc cidr", "[vpc.main]\ncidr = \"10.0.0.0/16\"", "[vpc.main]", "missing-field"),
    ("missing field: subnet az", "cidr = \"10.0.1.0/24\"\naz = \"b\"", "cidr = \"10.0.1.0/24\"", "missing-field"),
    (
        "missing field: sg description",
        "description = \"Internal load balancer: HTTP from CloudFront's VPC origin in its subnets\"",
        "",
        "missing-field",
    ),
    ("missing field: rule protocol", "{ protocol = \"tcp\", from_port = 80,", "{ from_port = 80,", "missing-field"),
    ("missing field: stack name", "name = \"quake-prod\"", "", "missing-field"),
    ("missing field: stack region", "region = \"eu-central-1\"", "", "missing-field"),
    ("missing field: endpoint service", "service = \"s3\"", "", "missing-field"),
    (
        "missing reference: vpc",
        "[subnet.hosts]\nvpc = \"vpc.main\"",
        "[subnet.hosts]\nvpc = \"vpc.mian\"",
        "missing-reference",
    ),
    (
        "missing reference: igw",
        "internet_gateway = \"internet_gateway.main\"",
        "internet_gateway = \"internet_gateway.other\"",
        "missing-reference",
    ),
    ("missing reference: subnet in list", "\"subnet.hosts\"]", "\"subnet.hostz\"]", "missing-reference"),
    (
        "missing reference: rule group",
        "group = \"security_group.web\"",
        "group = \"security_group.webb\"",
        "missing-reference",
    ),
    (
        "missing reference: endpoint table",
        "route_tables = [\"route_table.main\"]\n\n[vpc_endpoint.s3]",
        "route_tables = [\"route_table.nope\"]\n\n[vpc_endpoint.s3]",
        "missing-reference",
    ),
    (
        "wrong reference kind",
        "[subnet.web_a]\nvpc = \"vpc.main\"",
        "[subnet.web_a]\nvpc = \"subnet.lb_a\"",
        "wrong-reference",
    ),
    (
        "wrong reference kind in route",
        "internet_gateway = \"internet_gateway.main\"",
        "internet_gateway = \"vpc.main\"",
        "wrong-reference",
    ),
    ("bad cidr: garbage", "cidr = \"10.0.20.0/24\"", "cidr = \"10.0.20/24\"", "bad-cidr"),
    ("bad cidr: host bits", "cidr = \"10.0.0.0/16\"", "cidr = \"10.0.0.5/16\"", "bad-cidr"),
    ("bad cidr: prefix too long", "cidr = \"10.0.11.0/24\"", "cidr = \"10.0.11.0/33\"", "bad-cidr"),
    ("bad cidr: ipv6", "cidr = \"10.0.10.0/24\"", "cidr = \"fd00::/64\"", "bad-cidr"),
    (
        "bad cidr: rule",
        "cidr = \"0.0.0.0/0\", description = \"AWS APIs, image pulls\"",
        "cidr = \"0.0.0.0\", description = \"AWS APIs, image pulls\"",
        "bad-cidr",
    ),
    ("overlapping subnets", "cidr = \"10.0.11.0/24\"", "cidr = \"10.0.10.0/23\"", "overlapping-subnets"),
    ("identical subnets", "cidr = \"10.0.20.0/24\"", "cidr = \"10.0.0.0/24\"", "overlapping-subnets"),
    ("subnet outside its vpc", "cidr = \"10.0.20.0/24\"", "cidr = \"10.1.20.0/24\"", "subnet-outside-vpc"),
    (
        "unknown az letter",
        "az = \"b\"\npublic_ip_on_launch = true\n\n[subnet.hosts]",
        "az = \"d\"\npublic_ip_on_launch = true\n\n[subnet.hosts]",
        "unknown-az",
    ),
    (
        "az as full name",
        "cidr = \"10.0.20.0/24\"\naz = \"a\"",
        "cidr = \"10.0.20.0/24\"\naz = \"eu-central-1a\"",
        "unknown-az",
    ),
    ("undefined variable", "[\"${var.alert_email}\"]", "[\"${var.alert_emial}\"]", "undefined-variable"),
    ("not a variable expression", "[\"${var.alert_email}\"]", "[\"${env.ALERTS}\"]", "bad-variable"),
    ("unclosed variable", "[\"${var.alert_email}\"]", "[\"${var.alert_email\"]", "bad-variable"),
    ("bad enum: protocol", "protocol = \"tcp\", from_port = 9092", "protocol = \"tpc\", from_port = 9092", "bad-value"),
    ("bad enum: service", "service = \"s3\"", "service = \"sqs\"", "bad-value"),
    ("port out of range", "from_port = 443,", "from_port = 70443,", "out-of-range"),
    ("rule without peer", ", cidr = \"10.0.0.0/23\", description", ", description", "bad-rule"),
    (
        "rule with two peers",
        "group = \"security_group.alb\", description",
        "group = \"security_group.alb\", cidr = \"10.0.0.0/8\", description",
        "bad-rule",
    ),
    (
        "tcp rule without port",
        "{ protocol = \"tcp\", from_port = 8080, group = \"security_group.alb\"",
        "{ protocol = \"tcp\", group = \"security_group.alb\"",
        "bad-rule",
    ),
    ("reversed port range", "from_port = 443,", "from_port = 443, to_port = 80,", "bad-rule"),
    ("route without target", ", internet_gateway = \"internet_gateway.main\" }]", " }]", "bad-route"),
    (
        "route with two targets",
        "internet_gateway = \"internet_gateway.main\" }]",
        "internet_gateway = \"internet_gateway.main\", nat_gateway = \"nat_gateway.x\" }]",
        "bad-route",
    ),
    ("bad resource name", "[subnet.hosts]", "[subnet.\"ho sts\"]", "bad-name"),
    (
        "wrong type: az as number",
        "az = \"a\"\npublic_ip_on_launch = true\n\n[subnet.web_b]",
        "az = 1\npublic_ip_on_launch = true\n\n[subnet.web_b]",
        "wrong-type",
    ),
    // The application layer's kinds.
    (
        "HTTPS without a certificate",
        "port = 80\ntarget_group",
        "port = 443\nprotocol = \"HTTPS\"\ntarget_group",
        "https-without-certificate",
    ),
    (
        "a certificate ARN with a short account",
        "port = 80\ntarget_group",
        "port = 443\nprotocol = \"HTTPS\"\ncertificate_arn = \"arn:aws:acm:eu-central-1:1234:certificate/x\"\ntarget_group",
        "bad-arn",
    ),
    ("forward without a target group", "port = 80\ntarget_group = \"target_group.web\"\n", "port = 80\n", "forward-without-target"),
    ("load balancer in one subnet", "subnets = [\"subnet.lb_a\", \"subnet.lb_b\"]", "subnets = [\"subnet.lb_a\"]", "alb-subnets"),
    (
        "load balancer name too long for ELBv2",
        "[load_balancer.web]",
        "[load_balancer.a_very_long_name_for_a_balancer]\nsubnets = [\"subnet.lb_a\", \"subnet.lb_b\"]\n\n[load_balancer.web]",
        "bad-elb-name",
    ),
    ("Fargate memory AWS refuses for the CPU (moto accepts it)", "memory = 512", "memory = 4096", "fargate-size"),
    ("Fargate CPU size that does not exist", "cpu = 256", "cpu = 300", "fargate-size"),
    ("WAF window WAF does not offer", "rate_window = 300", "rate_window = 200", "bad-rate-window"),
    ("WAF limit below AWS's minimum (from its variable)", "waf_rate_limit = \"500\"", "waf_rate_limit = \"5\"", "out-of-range"),
    ("WAF limit that is no number", "waf_rate_limit = \"500\"", "waf_rate_limit = \"lots\"", "wrong-type"),
    ("WAF limit as a literal out of range", "rate_limit = \"${var.waf_rate_limit}\"", "rate_limit = 3000000000", "out-of-range"),
    ("not an AWS managed rule group", "\"AWSManagedRulesCommonRuleSet\"", "\"CommonRuleSet\"", "bad-rule-group"),
    (
        "CloudFront-scope ACL outside us-east-1",
        "region = \"us-east-1\"\ntraffic = \"web\"",
        "traffic = \"web\"",
        "cloudfront-scope-region",
    ),
    (
        "a VPC origin of no load balancer",
        "load_balancer = \"load_balancer.web\"\n\n[cloudfront_distribution.web]",
        "load_balancer = \"target_group.web\"\n\n[cloudfront_distribution.web]",
        "wrong-reference",
    ),
    ("unknown replica region", "replica_region = \"eu-west-1\"", "replica_region = \"eu-west-9\"", "bad-value"),
    ("unknown region of a resource", "[log_group.web]", "[log_group.web]\nregion = \"eu-centrall-1\"", "bad-value"),
    (
        "an output the kind does not have",
        "${dynamodb_table.quakes.name}",
        "${dynamodb_table.quakes.nmae}",
        "unknown-output",
    ),
    ("an output of a missing resource", "${ecr_repository.quake.url}", "${ecr_repository.qauke.url}", "missing-reference"),
    ("desired count beside autoscaling", "health_check_grace = 30", "health_check_grace = 30\ndesired_count = 2", "desired-count-scaled"),
    ("autoscaling min above max", "min = 1\nmax = 2", "min = 3\nmax = 2", "min-above-max"),
    ("memory target above 100 %", "target = 90", "target = 900", "bad-target"),
    ("a service joining a target group without a port", "port = 8080\nlog_group", "log_group", "target-without-port"),
    (
        "a host's user data file missing",
        "streaming/user-data.yaml",
        "streaming/nope.yaml",
        "bad-file",
    ),
    ("unknown field of a service", "health_check_grace = 30", "grace = 30", "unknown-field"),
    ("an image's digest written by hand", "package = \"quake\"", "package = \"quake\"\ndigest = \"sha256:00\"", "derived-field"),
    (
        "an image from a package and a binary built elsewhere",
        "package = \"quake\"",
        "package = \"quake\"\nexecutable = \"target/release/quake\"",
        "image-source",
    ),
    ("an image from nothing", "package = \"quake\"\n", "", "image-source"),
    ("an image for an unknown CPU", "package = \"quake\"", "package = \"quake\"\narchitecture = \"riscv\"", "bad-value"),
    ("a relative path in an image", "\"/assets/hosts\" =", "\"assets/hosts\" =", "image-path"),
    ("an image in a missing repository", "repository = \"ecr_repository.quake\"", "repository = \"ecr_repository.quack\"", "missing-reference"),
    // What AWS's resource schemas constrain and a stack author writes, caught at load.
    ("a stack tag AWS reserves", "tags = { project = \"quake\",", "tags = { \"aws:team\" = \"x\", project = \"quake\",", "bad-tag"),
    ("a tag value over 256 characters", "[log_group.web]\n", "[log_group.web]\ntags = { note = \"0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\" }\n", "bad-tag"),
    ("a tag key with a character AWS refuses", "[log_group.web]\n", "[log_group.web]\ntags = { \"team#1\" = \"x\" }\n", "bad-tag"),
    ("a role name over IAM's 64", "[iam_role.web_task]\n", "[iam_role.a_web_task_role_whose_name_is_far_too_long_for_iam_to_take]\ntrusted_services = [\"ecs-tasks.amazonaws.com\"]\n\n[iam_role.web_task]\n", "bad-iam-name"),
    ("a fixed response with a redirect's status", "port = 80\ntarget_group = \"target_group.web\"", "port = 80\naction = \"fixed_response\"\nfixed_status = 302", "bad-fixed-status"),
    ("a handler that is not file.export", "[lambda_function.finops_auth]\n", "[lambda_function.finops_auth]\nhandler = \"index handler\"\n", "bad-handler"),
    ("a health check without CMD", "command = [\"web\"]", "command = [\"web\"]\nhealth_check = [\"/quake\", \"health\"]", "bad-health-check"),
];

#[test]
fn every_broken_stack_is_reported_with_its_place() {
    let base = prod();
    assert!(CORPUS.len() >= 50, "{} cases", CORPUS.len());
    for (what, find, replace, code) in CORPUS {
        assert!(base.contains(find), "{what}: `{find}` not in prod.toml");
        let src = base.replacen(find, replace, 1);
        let Err(d) = load("prod.toml", &src, &chosen()) else { panic!("{what}: accepted") };
        assert!(d.items.iter().any(|x| x.code == *code), "{what}: expected {code}, got {:?}", d.items);
        for x in &d.items {
            assert!(
                x.span.start <= x.span.end && x.span.end <= src.len(),
                "{what}: span {:?} outside the file",
                x.span
            );
            assert!(!x.message.is_empty());
        }
        let text = provisioner::diag::render("stacks/prod.toml", &src, &d.items, false);
        assert!(text.contains("stacks/prod.toml:"), "{what}: {text}");
    }
}

#[test]
fn all_problems_are_reported_together() {
    let src = prod()
        .replacen("[vpc.main]", "[vcp.main]", 1)
        .replacen("az = \"b\"", "az = \"q\"", 1)
        .replacen("from_port = 443,", "from_port = 99999,", 1)
        .replacen("${var.alert_email}", "${var.nobody}", 1);
    let d = load("prod.toml", &src, &chosen()).unwrap_err();
    let codes: Vec<&str> = d.items.iter().map(|x| x.code).collect();
    for c in ["unknown-kind", "out-of-range", "undefined-variable"] {
        assert!(codes.contains(&c), "{c} in {codes:?}");
    }
    // Sorted by place in the file.
    assert!(d.items.windows(2).all(|w| w[0].span.start <= w[1].span.start));
}

#[test]
fn reference_cycles_are_reported_with_their_path() {
    let src = "[stack]\nname = \"c\"\nregion = \"eu-central-1\"\n\n[vpc.v]\ncidr = \"10.0.0.0/16\"\n\n\
               [subnet.s]\nvpc = \"vpc.v\"\ncidr = \"10.0.0.0/24\"\naz = \"a\"\n\n\
               [nat_gateway.n]\nsubnet = \"subnet.s\"\neip = \"eip.e\"\n\n[eip.e]\n\n\
               [route_table.r]\nvpc = \"vpc.v\"\nroutes = [{ destination = \"0.0.0.0/0\", nat_gateway = \"nat_gateway.n\" }]\n\
               subnets = [\"subnet.s\"]\n";
    load("c.toml", src, &chosen()).expect("no cycle: a route table may serve the subnet its NAT gateway sits in");
    // Security groups may name each other (rules apply once both exist).
    let sg = "[stack]\nname = \"c\"\nregion = \"eu-central-1\"\n[vpc.v]\ncidr = \"10.0.0.0/16\"\n\
              [security_group.a]\nvpc = \"vpc.v\"\ndescription = \"a\"\ningress = [{ protocol = \"tcp\", from_port = 1, group = \"security_group.b\" }]\n\
              [security_group.b]\nvpc = \"vpc.v\"\ndescription = \"b\"\ningress = [{ protocol = \"tcp\", from_port = 1, group = \"security_group.a\" }, { protocol = \"all\", self = true }]\n";
    load("sg.toml", sg, &chosen()).expect("groups referring to each other are fine");
}

#[test]
fn variables_come_from_the_file_then_the_caller() {
    let src = prod().replace("separate_logging_host = \"false\"", "separate_logging_host = \"true\"");
    let s = load("prod.toml", &src, &chosen()).unwrap();
    let rule = |s: &provisioner::stack::Stack| {
        format!("{:?}", s.get("sns_topic.alerts").unwrap().fields["email_subscriptions"])
    };
    assert!(rule(&s).contains("oncall@example.net"));
    let mut vars = chosen();
    vars.insert("alert_email".to_owned(), "pager@example.net".to_owned());
    let s = load("prod.toml", &src, &vars).unwrap();
    assert!(rule(&s).contains("pager@example.net"));
    let mut bad = chosen();
    bad.insert("alert_email".to_owned(), "not an address".to_owned());
    let d = load("prod.toml", &src, &bad).unwrap_err();
    assert_eq!(d.items[0].code, "bad-email");
}

#[test]
fn thousands_of_random_mutations_never_panic() {
    let base = prod();
    let lines: Vec<&str> = base.lines().collect();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut rejected = 0;
    for _ in 0..3000 {
        let mut l: Vec<String> = lines.iter().map(|s| (*s).to_owned()).collect();
        for _ in 0..(1 + next() % 3) {
            let i = (next() as usize) % l.len();
            match next() % 6 {
                0 => {
                    l.remove(i);
                }
                1 => {
                    let dup = l[i].clone();
                    l.insert(i, dup);
                }
                2 => {
                    let cut = (next() as usize) % (l[i].len() + 1);
                    l[i].truncate(cut);
                }
                3 => l[i] = l[i].replace('"', ""),
                4 => {
                    let j = (next() as usize) % l.len();
                    l.swap(i, j);
                }
                _ => {
                    let junk = ["=", "[", "]", "{", "\"", "${var.", "0.0.0.0/99", "é", "\u{0}", "[[x]]"]
                        [(next() % 10) as usize];
                    let at = (next() as usize) % (l[i].len() + 1);
                    if l[i].is_char_boundary(at) {
                        l[i].insert_str(at, junk);
                    }
                }
            }
            if l.is_empty() {
                l.push(String::new());
            }
        }
        let src = l.join("\n");
        if let Err(d) = load("m.toml", &src, &chosen()) {
            rejected += 1;
            assert!(!d.items.is_empty());
            for x in &d.items {
                assert!(x.span.end <= src.len().max(1), "span {:?} past {} in:\n{src}", x.span, src.len());
            }
            let _ = provisioner::diag::render("m.toml", &src, &d.items, false);
        }
    }
    assert!(rejected > 1000, "most mutations break something: {rejected}");
}

fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("PROVISIONER_VAR_alert_email", "oncall@example.net")
        .env("PROVISIONER_VAR_finops_email", "finops@example.net")
        .output()
        .unwrap()
}

#[test]
fn cli_validate_exit_codes_and_rendering() {
    let ok = cli(&["validate"]);
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("stacks/prod.toml: stack `quake-prod`"));
    let dir = tempfile_dir();
    let bad = dir.join("bad.toml");
    // The copy's files are the repository's: only the misspelt kind (and what refers to it).
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/../");
    let src = prod().replace("\"../", &format!("\"{repo}"));
    std::fs::write(&bad, src.replacen("[vpc.main]", "[vcp.main]", 1)).unwrap();
    let line = src.lines().position(|l| l == "[vpc.main]").unwrap() + 1;
    let out = cli(&["--color", "never", "validate", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("bad.toml:{line}:2: unknown resource kind `vcp`")), "{err}");
    assert!(!err.contains("bad-file"), "the files it names are found: {err}");
    assert!(err.contains("did you mean `vpc`?"), "{err}");
    assert!(err.contains("[vcp.main]"), "the source line: {err}");
    let var = cli(&["validate", "--var", "alert_email=nonsense"]);
    assert_eq!(var.status.code(), Some(1));
    assert!(cli(&["validate", "--var", "alert_email=oncall@example.net"]).status.success());
    let missing = cli(&["validate", "stacks/none.toml"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read stacks/none.toml"));
}

/// The variables a person must choose have no default: `validate` (and every command that may
/// reach AWS) names each missing one with the two ways to give it, before any AWS call; `cost`,
/// which neither calls AWS nor depends on an address, prices with their examples.
#[test]
fn variables_a_person_must_choose_are_named_when_missing() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_provisioner"))
            .args(args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .env_remove("PROVISIONER_VAR_alert_email")
            .env_remove("PROVISIONER_VAR_finops_email")
            .env("NO_COLOR", "1")
            // Nowhere to go: a command that got past the variables would fail on the endpoint.
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .output()
            .unwrap()
    };
    for cmd in [&["validate"][..], &["plan"], &["apply", "--yes", "--accept-unverified-pins"], &["destroy", "--yes"]] {
        let out = run(cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}: {err}");
        for v in ["alert_email", "finops_email"] {
            assert!(err.contains(&format!("variable `{v}` has no default")), "{cmd:?} names {v}: {err}");
            assert!(err.contains(&format!("--var {v}=")) && err.contains(&format!("PROVISIONER_VAR_{v}")), "{err}");
        }
        assert!(!err.contains("127.0.0.1:9") && !err.contains("dispatch"), "{cmd:?}: no AWS call: {err}");
    }
    let given = run(&["validate", "--var", "alert_email=a@example.net", "--var", "finops_email=b@example.net"]);
    assert!(given.status.success(), "{}", String::from_utf8_lossy(&given.stderr));
    let cost = run(&["cost"]);
    assert!(cost.status.success(), "{}", String::from_utf8_lossy(&cost.stderr));

    // In the library: one located diagnostic per missing variable; an example is no default.
    let d = load("prod.toml", &prod(), &BTreeMap::new()).unwrap_err();
    let src = prod();
    let missing: Vec<(&str, &str)> = d
        .items
        .iter()
        .filter(|x| x.code == "missing-variable")
        .map(|x| (x.message.as_str(), &src[x.span.clone()]))
        .collect();
    assert_eq!(missing.len(), 2, "{:?}", d.items);
    assert!(missing[0].0.contains("`alert_email`") && missing[0].1.contains("oncall@example.org"), "{missing:?}");
    assert!(missing[1].0.contains("`finops_email`") && missing[1].1.contains("you@example.org"), "{missing:?}");
    assert_eq!(d.items.len(), 2, "nothing else: the examples stand in for the rest of the checks: {:?}", d.items);
    let s = provisioner::load_with("prod.toml", &prod(), &BTreeMap::new(), provisioner::stack::Unset::Example).unwrap();
    assert_eq!(s.variables["alert_email"], "oncall@example.org");
    let bad = prod().replace("alert_email = { example = \"oncall@example.org\" }", "alert_email = { exmaple = \"x\" }");
    let d = load("prod.toml", &bad, &chosen()).unwrap_err();
    assert_eq!(d.items[0].code, "wrong-type", "{:?}", d.items);
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("provisioner-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn cli_schema_docs_and_completions_come_from_the_declarations() {
    let schema: serde_json::Value = serde_json::from_slice(&cli(&["schema"]).stdout).unwrap();
    for kind in provisioner::kinds::all() {
        assert!(schema["properties"][kind.name].is_object(), "{} in the schema", kind.name);
        let docs = String::from_utf8(cli(&["docs"]).stdout).unwrap();
        assert!(docs.contains(&format!("## `{}`", kind.name)));
        for f in kind.fields {
            assert!(docs.contains(&format!("`{}`", f.name)), "{}.{} documented", kind.name, f.name);
            assert!(schema["properties"][kind.name]["additionalProperties"]["properties"][f.name].is_object());
        }
    }
    assert_eq!(
        schema["properties"]["subnet"]["additionalProperties"]["required"],
        serde_json::json!(["vpc", "cidr", "az"])
    );
    let docs = String::from_utf8(cli(&["docs"]).stdout).unwrap();
    assert!(docs.contains("| `cidr` | IPv4 CIDR such as \"10.0.0.0/16\" | yes |  | forces replacement |"), "{docs}");
    assert!(docs.contains("`ingress[].protocol`"));
    // The reference the README links to is this output, kept current.
    let checked_in = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/kinds.md")).unwrap();
    assert!(
        checked_in == docs,
        "docs/kinds.md is not what `provisioner docs` prints: run `cargo run -p provisioner -- docs > docs/kinds.md`"
    );
    // A reader that stops early (`provisioner docs | head`) ends it quietly: no panic.
    let mut early = Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .arg("docs")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(early.stdout.take());
    let gone = early.wait_with_output().unwrap();
    assert!(gone.status.success(), "{gone:?}");
    assert!(String::from_utf8_lossy(&gone.stderr).is_empty(), "{}", String::from_utf8_lossy(&gone.stderr));
    // The real stacks pass the schema, as an editor checks them (python-jsonschema, Debian's,
    // beside cloud-init; TOML read by Python's tomllib).
    let dir = tempfile_dir().join("schema");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("schema.json"), schema.to_string()).unwrap();
    for f in ["prod.toml", "local.toml"] {
        let path = format!("{}/../stacks/{f}", env!("CARGO_MANIFEST_DIR"));
        let check = "import json, sys, tomllib, jsonschema\n\
                     schema = json.load(open(sys.argv[1]))\n\
                     stack = tomllib.load(open(sys.argv[2], 'rb'))\n\
                     jsonschema.Draft202012Validator(schema).validate(stack)\n";
        let out = Command::new("python3").args(["-c", check]).arg(dir.join("schema.json")).arg(&path).output().unwrap();
        assert!(out.status.success(), "{f} against the schema: {}", String::from_utf8_lossy(&out.stderr));
    }
    let broken = std::fs::read_to_string(format!("{}/../stacks/prod.toml", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .replacen("enabled = \"${var.separate_logging_host}\"", "enabled = \"sometimes\"", 1);
    std::fs::write(dir.join("broken.toml"), broken).unwrap();
    let check = "import json, sys, tomllib, jsonschema\n\
                 jsonschema.Draft202012Validator(json.load(open(sys.argv[1]))).validate(tomllib.load(open(sys.argv[2], 'rb')))\n";
    let out = Command::new("python3")
        .args(["-c", check])
        .arg(dir.join("schema.json"))
        .arg(dir.join("broken.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success(), "a switch that is neither a boolean nor a variable fails the schema");
    let bash = cli(&["completions", "bash"]);
    assert!(bash.status.success() && String::from_utf8_lossy(&bash.stdout).contains("provisioner"));
}

/// Actions that have no resource to scope them to (IAM's "resource types: none" in the Service
/// Authorization Reference): the only ones a production policy may grant on `*`.
const UNSCOPED: &[&str] = &[
    // Session Manager's agent (AWS documents them without resource-level permissions).
    "ssm:UpdateInstanceInformation",
    "ssmmessages:CreateControlChannel",
    "ssmmessages:CreateDataChannel",
    "ssmmessages:OpenControlChannel",
    "ssmmessages:OpenDataChannel",
    "ecr:GetAuthorizationToken",
    "cloudwatch:GetMetricData",
    "cloudwatch:ListMetrics",
    "logs:DescribeLogGroups",
    "logs:GetQueryResults",
    "logs:StopQuery",
];

/// Resource scoping of the production roles (moto, which enforces actions only, cannot check
/// it): no `*` resource except for actions that have none, no wildcard actions, and every
/// other statement names resources of the stack.
#[test]
fn production_policies_name_their_resources() {
    let src = prod();
    let s = load("prod.toml", &src, &chosen()).unwrap();
    let mut statements = 0;
    for r in s.resources.iter().filter(|r| r.kind.name == "iam_role") {
        let v = provisioner::stack::desired(r, &s);
        for st in v["statements"].as_array().into_iter().flatten() {
            statements += 1;
            let actions: Vec<&str> = st["actions"].as_array().unwrap().iter().filter_map(|a| a.as_str()).collect();
            let resources: Vec<&str> = st["resources"].as_array().unwrap().iter().filter_map(|a| a.as_str()).collect();
            assert!(actions.iter().all(|a| !a.contains('*')), "{}: wildcard action in {actions:?}", r.address());
            if resources.contains(&"*") {
                assert!(actions.iter().all(|a| UNSCOPED.contains(a)), "{}: {actions:?} on *", r.address());
            } else {
                // The stack's resources by their outputs, or a function's own log groups (Lambda
                // names them, in regions the stack does not know: by the function's name).
                let functions: Vec<&str> =
                    s.resources.iter().filter(|f| f.kind.name == "lambda_function").map(|f| f.name.as_str()).collect();
                let own_logs = |x: &str| {
                    x.strip_prefix("arn:aws:logs:*:*:log-group:/aws/lambda/*-")
                        .is_some_and(|f| functions.contains(&f.trim_end_matches(":*")))
                };
                assert!(
                    resources.iter().all(|x| x.starts_with("${") || own_logs(x)),
                    "{}: {resources:?} are not the stack's",
                    r.address()
                );
            }
        }
    }
    assert!(statements >= 6, "{statements} statements");
}

/// A host's user data file is a template: variables and other resources' outputs are filled in
/// (the output making an ordering edge like any reference), `$X` stays for the shell, and a
/// `${X}` that is neither is an error at its line of the file with the spelling to use.
#[test]
fn user_data_files_are_templates() {
    let dir = tempfile_dir().join("templates");
    std::fs::create_dir_all(&dir).unwrap();
    let stack = dir.join("stack.toml");
    let src = "[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n\n[variables]\ntopic = \"quakes\"\n\n\
               [vpc.main]\ncidr = \"10.0.0.0/16\"\n\n[subnet.a]\nvpc = \"vpc.main\"\ncidr = \"10.0.0.0/24\"\naz = \"a\"\n\n\
               [instance.logging]\ninstance_type = \"t3.small\"\nsubnet = \"subnet.a\"\n\n\
               [instance.streaming]\ninstance_type = \"t3.small\"\nsubnet = \"subnet.a\"\nuser_data = \"host.yaml\"\n";
    std::fs::write(&stack, src).unwrap();
    let file = stack.to_str().unwrap();
    let good = "#cloud-config\nruncmd:\n  - echo ${var.topic} $HOME ${instance.logging.private_ip}\n";
    std::fs::write(dir.join("host.yaml"), good).unwrap();
    let s = load(file, src, &chosen()).unwrap_or_else(|d| panic!("{:?}", d.items));
    let host = s.get("instance.streaming").unwrap();
    let text = host.fields["user_data"].0.as_str().unwrap();
    assert_eq!(text, "#cloud-config\nruncmd:\n  - echo quakes $HOME ${instance.logging.private_ip}\n");
    assert!(
        s.references().iter().any(|(from, to, _)| from == "instance.streaming" && to == "instance.logging"),
        "the output orders the hosts"
    );
    std::fs::write(dir.join("host.yaml"), "#cloud-config\nruncmd:\n  - echo ${HOME}\n  - echo ${var.nope}\n").unwrap();
    let Err(d) = load(file, src, &chosen()) else { panic!("a shell ${{HOME}} was accepted") };
    let shell = d.items.iter().find(|x| x.code == "bad-variable").expect("bad-variable");
    assert!(shell.message.contains("host.yaml:3:"), "{}", shell.message);
    assert!(shell.help.as_deref().unwrap_or("").contains("`$HOME`"), "{:?}", shell.help);
    let var = d.items.iter().find(|x| x.code == "undefined-variable").expect("undefined-variable");
    assert!(var.message.contains("host.yaml:4:"), "{}", var.message);
}

/// A switch: `enabled = "${var.X}"` leaves a resource out; its outputs inside other strings are
/// empty text, a reference to it is an error at the reference. Variables come from the files
/// `variables_from` names, under the stack's own `[variables]` and the caller's.
#[test]
fn switches_and_variables_files() {
    let dir = tempfile_dir().join("switches");
    std::fs::create_dir_all(&dir).unwrap();
    let stack = dir.join("stack.toml");
    let file = stack.to_str().unwrap();
    std::fs::write(
        dir.join("pins.toml"),
        "# pinned\nkafka_image = \"apache/kafka:4.1.1\"\nother = \"from the file\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("host.yaml"),
        "#cloud-config\n# logging=${instance.logging.private_ip} kafka=${var.kafka_image} ${var.other}\n",
    )
    .unwrap();
    let src = |extra: &str| {
        format!(
            "[stack]\nname = \"t\"\nregion = \"eu-central-1\"\nvariables_from = [\"pins.toml\"]\n\n\
             [variables]\nseparate_logging = \"false\"\nother = \"from the stack\"\n\n\
             [vpc.main]\ncidr = \"10.0.0.0/16\"\n\n[subnet.a]\nvpc = \"vpc.main\"\ncidr = \"10.0.0.0/24\"\naz = \"a\"\n\n\
             [iam_role.logging]\nenabled = \"${{var.separate_logging}}\"\ntrusted_services = [\"ec2.amazonaws.com\"]\n\n\
             [instance.logging]\nenabled = \"${{var.separate_logging}}\"\ninstance_type = \"t3.small\"\nsubnet = \"subnet.a\"\n\n\
             [instance.streaming]\ninstance_type = \"t3.small\"\nsubnet = \"subnet.a\"\nuser_data = \"host.yaml\"\n{extra}"
        )
    };
    let text = |s: &provisioner::stack::Stack| {
        s.get("instance.streaming").unwrap().fields["user_data"].0.as_str().unwrap().to_owned()
    };
    let off = load(file, &src(""), &chosen()).unwrap_or_else(|d| panic!("{:?}", d.items));
    assert!(off.get("instance.logging").is_none() && off.get("iam_role.logging").is_none());
    assert_eq!(off.disabled, ["iam_role.logging", "instance.logging"]);
    assert_eq!(text(&off), "#cloud-config\n# logging= kafka=apache/kafka:4.1.1 from the stack\n");
    assert!(off.references().iter().all(|(_, to, _)| to != "instance.logging"), "no edge to what is left out");

    let on_vars = BTreeMap::from([("separate_logging".to_owned(), "true".to_owned())]);
    let on = load(file, &src(""), &on_vars).unwrap_or_else(|d| panic!("{:?}", d.items));
    assert!(on.get("instance.logging").is_some() && on.disabled.is_empty());
    assert!(text(&on).contains("logging=${instance.logging.private_ip} "), "{}", text(&on));

    let profile = "\n[iam_instance_profile.logging]\nrole = \"iam_role.logging\"\n";
    let Err(d) = load(file, &src(profile), &chosen()) else { panic!("a reference to a disabled role was accepted") };
    assert!(d.items.iter().any(|x| x.code == "disabled-reference"), "{:?}", d.items);
    assert!(load(file, &src(profile), &on_vars).is_ok());

    let bad = BTreeMap::from([("separate_logging".to_owned(), "maybe".to_owned())]);
    let Err(d) = load(file, &src(""), &bad) else { panic!("a switch of `maybe` was accepted") };
    assert!(d.items.iter().any(|x| x.code == "wrong-type"), "{:?}", d.items);

    std::fs::write(dir.join("pins.toml"), "kafka_image = \"apache/kafka:4.1.1\"\nreplicas = 2\n").unwrap();
    let Err(d) = load(file, &src(""), &chosen()) else { panic!("a number in a variables file was accepted") };
    let x = d.items.iter().find(|x| x.code == "wrong-type").expect("wrong-type");
    assert!(x.message.contains("pins.toml:2:"), "{}", x.message);
}

/// The map page in the image: taken whole it holds what it loads; the hand-written list the
/// stack had before (four modules and the icon short: a blank map on Fargate) and an `exclude` that drops a
/// module are refused, naming the file and who loads it, at the `files` table.
#[test]
fn an_image_missing_what_its_page_loads_is_refused() {
    let whole = r#""/assets/web" = "../assets/web""#;
    let by_hand = r#""/assets/web/index.html" = "../assets/web/index.html", "/assets/web/app.js" = "../assets/web/app.js", "/assets/web/style.css" = "../assets/web/style.css", "/assets/web/vendor" = "../assets/web/vendor""#;
    let refused = |src: &str| {
        let d = load("prod.toml", src, &chosen()).expect_err("the stack is refused");
        d.items
            .iter()
            .filter(|x| x.code == "page-file-missing")
            .map(|x| {
                assert!(
                    src[x.span.clone()].starts_with("{ \"/assets/web"),
                    "at the files table: {}",
                    &src[x.span.clone()]
                );
                x.message.clone()
            })
            .collect::<Vec<_>>()
    };
    let msgs = refused(&prod().replacen(whole, by_hand, 1));
    for m in ["alerts", "land", "lapse", "list"] {
        let want = format!("`/assets/web/app.js` loads `/assets/web/{m}.js`, which the image would not hold");
        assert!(msgs.iter().any(|x| x.contains(&want)), "{want} in {msgs:?}");
    }
    // The icon the page links, which the list never had either.
    assert!(msgs.iter().any(|x| x.contains("`/assets/web/index.html` loads `/assets/web/favicon.svg`")), "{msgs:?}");
    assert_eq!(msgs.len(), 5, "{msgs:?}");
    let msgs =
        refused(&prod().replacen("exclude = [\"node_modules\",", "exclude = [\"lapse.js\", \"node_modules\",", 1));
    assert_eq!(
        msgs,
        ["image.quake: `/assets/web/app.js` loads `/assets/web/lapse.js`, which the image would not hold"]
    );
}

/// Where each field of a kind lives in AWS's own resource schema (CloudFormation's, in
/// `../shared/fixtures/cfn-schemas/`): `(kind, field, schema file, top-level property)`.
const IN_SCHEMA: &[(&str, &str, &str, &str)] = &[
    ("vpc", "cidr", "aws-ec2-vpc", "CidrBlock"),
    ("vpc", "dns_support", "aws-ec2-vpc", "EnableDnsSupport"),
    ("vpc", "dns_hostnames", "aws-ec2-vpc", "EnableDnsHostnames"),
    ("subnet", "vpc", "aws-ec2-subnet", "VpcId"),
    ("subnet", "cidr", "aws-ec2-subnet", "CidrBlock"),
    ("subnet", "az", "aws-ec2-subnet", "AvailabilityZone"),
    ("subnet", "public_ip_on_launch", "aws-ec2-subnet", "MapPublicIpOnLaunch"),
    ("internet_gateway", "vpc", "aws-ec2-vpcgatewayattachment", "VpcId"),
    ("nat_gateway", "subnet", "aws-ec2-natgateway", "SubnetId"),
    ("nat_gateway", "eip", "aws-ec2-natgateway", "AllocationId"),
    ("route_table", "vpc", "aws-ec2-routetable", "VpcId"),
    ("route_table", "routes", "aws-ec2-route", "RouteTableId"),
    ("route_table", "subnets", "aws-ec2-subnetroutetableassociation", "RouteTableId"),
    ("security_group", "vpc", "aws-ec2-securitygroup", "VpcId"),
    ("security_group", "description", "aws-ec2-securitygroup", "GroupDescription"),
    ("security_group", "ingress", "aws-ec2-securitygroup", "SecurityGroupIngress"),
    ("security_group", "egress", "aws-ec2-securitygroup", "SecurityGroupEgress"),
    ("vpc_endpoint", "vpc", "aws-ec2-vpcendpoint", "VpcId"),
    ("vpc_endpoint", "service", "aws-ec2-vpcendpoint", "ServiceName"),
    ("vpc_endpoint", "route_tables", "aws-ec2-vpcendpoint", "RouteTableIds"),
    ("instance", "ami_parameter", "aws-ec2-instance", "ImageId"),
    ("instance", "instance_type", "aws-ec2-instance", "InstanceType"),
    ("instance", "subnet", "aws-ec2-instance", "SubnetId"),
    ("instance", "security_groups", "aws-ec2-instance", "SecurityGroupIds"),
    ("instance", "instance_profile", "aws-ec2-instance", "IamInstanceProfile"),
    ("instance", "user_data", "aws-ec2-instance", "UserData"),
    ("instance", "root_volume_gb", "aws-ec2-instance", "BlockDeviceMappings"),
    ("autoscaling", "service", "aws-applicationautoscaling-scalabletarget", "ResourceId"),
    ("autoscaling", "min", "aws-applicationautoscaling-scalabletarget", "MinCapacity"),
    ("autoscaling", "max", "aws-applicationautoscaling-scalabletarget", "MaxCapacity"),
    ("autoscaling", "metric", "aws-applicationautoscaling-scalingpolicy", "TargetTrackingScalingPolicyConfiguration"),
    ("autoscaling", "target", "aws-applicationautoscaling-scalingpolicy", "TargetTrackingScalingPolicyConfiguration"),
    (
        "autoscaling",
        "resource_label",
        "aws-applicationautoscaling-scalingpolicy",
        "TargetTrackingScalingPolicyConfiguration",
    ),
    (
        "autoscaling",
        "scale_in_cooldown",
        "aws-applicationautoscaling-scalingpolicy",
        "TargetTrackingScalingPolicyConfiguration",
    ),
    (
        "autoscaling",
        "scale_out_cooldown",
        "aws-applicationautoscaling-scalingpolicy",
        "TargetTrackingScalingPolicyConfiguration",
    ),
    (
        "cloudfront_origin_access_control",
        "origin_type",
        "aws-cloudfront-originaccesscontrol",
        "OriginAccessControlConfig",
    ),
    ("cloudfront_origin_access_control", "signing", "aws-cloudfront-originaccesscontrol", "OriginAccessControlConfig"),
    ("cognito_user_pool", "password_length", "aws-cognito-userpool", "Policies"),
    ("cognito_user_pool", "password_symbols", "aws-cognito-userpool", "Policies"),
    ("cognito_user_pool", "temporary_password_days", "aws-cognito-userpool", "AdminCreateUserConfig"),
    ("cognito_user_pool", "mfa", "aws-cognito-userpool", "MfaConfiguration"),
    ("cognito_user_pool", "deletion_protection", "aws-cognito-userpool", "DeletionProtection"),
    ("cognito_user_pool", "tags", "aws-cognito-userpool", "UserPoolTags"),
    ("cognito_user_pool_domain", "pool", "aws-cognito-userpooldomain", "UserPoolId"),
    ("cognito_user_pool_client", "pool", "aws-cognito-userpoolclient", "UserPoolId"),
    ("cognito_user_pool_client", "sites", "aws-cognito-userpoolclient", "CallbackURLs"),
    ("cognito_user_pool_client", "callback_urls", "aws-cognito-userpoolclient", "CallbackURLs"),
    ("cognito_user_pool_client", "logout_urls", "aws-cognito-userpoolclient", "LogoutURLs"),
    ("cognito_user_pool_client", "scopes", "aws-cognito-userpoolclient", "AllowedOAuthScopes"),
    ("cognito_user_pool_client", "id_token_minutes", "aws-cognito-userpoolclient", "IdTokenValidity"),
    ("cognito_user_pool_client", "refresh_token_days", "aws-cognito-userpoolclient", "RefreshTokenValidity"),
    ("cognito_user", "pool", "aws-cognito-userpooluser", "UserPoolId"),
    ("cognito_user", "email", "aws-cognito-userpooluser", "UserAttributes"),
    ("dynamodb_table", "layout", "aws-dynamodb-table", "KeySchema"),
    ("dynamodb_table", "ttl_attribute", "aws-dynamodb-table", "TimeToLiveSpecification"),
    ("dynamodb_table", "point_in_time_recovery", "aws-dynamodb-table", "PointInTimeRecoverySpecification"),
    ("dynamodb_table", "deletion_protection", "aws-dynamodb-table", "DeletionProtectionEnabled"),
    ("dynamodb_table", "stream", "aws-dynamodb-table", "StreamSpecification"),
    ("dynamodb_table", "replicas", "aws-dynamodb-globaltable", "Replicas"),
    ("ecr_repository", "image_tag_mutability", "aws-ecr-repository", "ImageTagMutability"),
    ("ecr_repository", "scan_on_push", "aws-ecr-repository", "ImageScanningConfiguration"),
    ("ecr_repository", "keep_images", "aws-ecr-repository", "LifecyclePolicy"),
    ("ecs_cluster", "container_insights", "aws-ecs-cluster", "ClusterSettings"),
    ("ecs_cluster", "capacity_providers", "aws-ecs-cluster", "CapacityProviders"),
    ("ecs_service", "cluster", "aws-ecs-service", "Cluster"),
    ("ecs_service", "desired_count", "aws-ecs-service", "DesiredCount"),
    ("ecs_service", "subnets", "aws-ecs-service", "NetworkConfiguration"),
    ("ecs_service", "security_groups", "aws-ecs-service", "NetworkConfiguration"),
    ("ecs_service", "public_ip", "aws-ecs-service", "NetworkConfiguration"),
    ("ecs_service", "spot_after", "aws-ecs-service", "CapacityProviderStrategy"),
    ("ecs_service", "target_group", "aws-ecs-service", "LoadBalancers"),
    ("ecs_service", "port", "aws-ecs-service", "LoadBalancers"),
    ("ecs_service", "health_check_grace", "aws-ecs-service", "HealthCheckGracePeriodSeconds"),
    ("ecs_service", "circuit_breaker", "aws-ecs-service", "DeploymentConfiguration"),
    ("load_balancer", "subnets", "aws-elasticloadbalancingv2-loadbalancer", "Subnets"),
    ("load_balancer", "security_groups", "aws-elasticloadbalancingv2-loadbalancer", "SecurityGroups"),
    ("load_balancer", "internal", "aws-elasticloadbalancingv2-loadbalancer", "Scheme"),
    ("load_balancer", "idle_timeout", "aws-elasticloadbalancingv2-loadbalancer", "LoadBalancerAttributes"),
    ("load_balancer", "deletion_protection", "aws-elasticloadbalancingv2-loadbalancer", "LoadBalancerAttributes"),
    ("target_group", "vpc", "aws-elasticloadbalancingv2-targetgroup", "VpcId"),
    ("target_group", "port", "aws-elasticloadbalancingv2-targetgroup", "Port"),
    ("target_group", "protocol", "aws-elasticloadbalancingv2-targetgroup", "Protocol"),
    ("target_group", "target_type", "aws-elasticloadbalancingv2-targetgroup", "TargetType"),
    ("target_group", "health_check_path", "aws-elasticloadbalancingv2-targetgroup", "HealthCheckPath"),
    ("target_group", "health_check_interval", "aws-elasticloadbalancingv2-targetgroup", "HealthCheckIntervalSeconds"),
    ("target_group", "health_check_timeout", "aws-elasticloadbalancingv2-targetgroup", "HealthCheckTimeoutSeconds"),
    ("target_group", "healthy_threshold", "aws-elasticloadbalancingv2-targetgroup", "HealthyThresholdCount"),
    ("target_group", "unhealthy_threshold", "aws-elasticloadbalancingv2-targetgroup", "UnhealthyThresholdCount"),
    ("target_group", "matcher", "aws-elasticloadbalancingv2-targetgroup", "Matcher"),
    ("target_group", "deregistration_delay", "aws-elasticloadbalancingv2-targetgroup", "TargetGroupAttributes"),
    ("listener", "load_balancer", "aws-elasticloadbalancingv2-listener", "LoadBalancerArn"),
    ("listener", "port", "aws-elasticloadbalancingv2-listener", "Port"),
    ("listener", "protocol", "aws-elasticloadbalancingv2-listener", "Protocol"),
    ("listener", "certificate_arn", "aws-elasticloadbalancingv2-listener", "Certificates"),
    ("listener", "ssl_policy", "aws-elasticloadbalancingv2-listener", "SslPolicy"),
    ("listener", "action", "aws-elasticloadbalancingv2-listener", "DefaultActions"),
    ("listener", "target_group", "aws-elasticloadbalancingv2-listener", "DefaultActions"),
    ("listener", "redirect_protocol", "aws-elasticloadbalancingv2-listener", "DefaultActions"),
    ("listener", "redirect_port", "aws-elasticloadbalancingv2-listener", "DefaultActions"),
    ("listener", "redirect_status", "aws-elasticloadbalancingv2-listener", "DefaultActions"),
    ("listener", "fixed_status", "aws-elasticloadbalancingv2-listener", "DefaultActions"),
    ("listener", "fixed_body", "aws-elasticloadbalancingv2-listener", "DefaultActions"),
    ("iam_role", "trusted_services", "aws-iam-role", "AssumeRolePolicyDocument"),
    ("iam_role", "statements", "aws-iam-role", "Policies"),
    ("iam_role", "managed_policies", "aws-iam-role", "ManagedPolicyArns"),
    ("iam_instance_profile", "role", "aws-iam-instanceprofile", "Roles"),
    ("lambda_function", "role", "aws-lambda-function", "Role"),
    ("lambda_function", "runtime", "aws-lambda-function", "Runtime"),
    ("lambda_function", "handler", "aws-lambda-function", "Handler"),
    ("lambda_function", "memory", "aws-lambda-function", "MemorySize"),
    ("lambda_function", "timeout", "aws-lambda-function", "Timeout"),
    ("lambda_function", "code_sha256", "aws-lambda-function", "Code"),
    ("lambda_function", "config", "aws-lambda-function", "Code"),
    ("lambda_function", "fetch", "aws-lambda-function", "Code"),
    ("lambda_function", "secrets", "aws-lambda-function", "Code"),
    ("log_group", "retention_days", "aws-logs-loggroup", "RetentionInDays"),
    ("s3_bucket", "versioning", "aws-s3-bucket", "VersioningConfiguration"),
    ("s3_bucket_policy", "bucket", "aws-s3-bucketpolicy", "Bucket"),
    ("s3_bucket_policy", "read_by", "aws-s3-bucketpolicy", "PolicyDocument"),
    ("s3_bucket_policy", "https_only", "aws-s3-bucketpolicy", "PolicyDocument"),
    ("secret", "description", "aws-ssm-parameter", "Description"),
    ("waf_web_acl", "scope", "aws-wafv2-webacl", "Scope"),
    ("waf_web_acl", "default_action", "aws-wafv2-webacl", "DefaultAction"),
    ("waf_web_acl", "rate_limit", "aws-wafv2-webacl", "Rules"),
    ("waf_web_acl", "rate_window", "aws-wafv2-webacl", "Rules"),
    ("waf_web_acl", "rate_action", "aws-wafv2-webacl", "Rules"),
    ("waf_web_acl", "managed_rule_groups", "aws-wafv2-webacl", "Rules"),
    ("waf_web_acl", "metrics", "aws-wafv2-webacl", "VisibilityConfig"),
    ("waf_association", "web_acl", "aws-wafv2-webaclassociation", "WebACLArn"),
    ("waf_association", "resource", "aws-wafv2-webaclassociation", "ResourceArn"),
];

/// Where a kind's flag differs from the schema on purpose, or a field has no counterpart: why.
const ALLOWED: &[(&str, &str, &str)] = &[
    (
        "instance",
        "instance_type",
        "a type changes only on a stopped host; hosts are replaced, new first, from their user data",
    ),
    ("instance", "user_data", "user data runs at first boot: only a new host takes a change"),
    ("internet_gateway", "vpc", "the kind holds its attachment: moving it detaches and attaches the same gateway"),
    (
        "cognito_user",
        "email",
        "AdminUpdateUserAttributes changes it in place; CloudFormation's user resource has no update",
    ),
    (
        "route_table",
        "routes",
        "routes are the table's own (CreateRoute/ReplaceRoute/DeleteRoute); their RouteTableId is the table",
    ),
    ("route_table", "subnets", "associations are the table's own; their RouteTableId is the table"),
    (
        "lambda_function",
        "edge",
        "no counterpart: an edge function is a us-east-1 function with published versions, made anew",
    ),
    ("ecs_service", "image", "no counterpart: the task definition's, of which each change registers a new revision"),
    ("ecs_service", "command", "the task definition's (a new revision)"),
    ("ecs_service", "cpu", "the task definition's (a new revision)"),
    ("ecs_service", "memory", "the task definition's (a new revision)"),
    ("ecs_service", "architecture", "the task definition's (a new revision)"),
    ("ecs_service", "environment", "the task definition's (a new revision)"),
    ("ecs_service", "health_check", "the task definition's (a new revision)"),
    ("ecs_service", "log_group", "the task definition's (a new revision)"),
    ("ecs_service", "task_role", "the task definition's (a new revision)"),
    ("ecs_service", "execution_role", "the task definition's (a new revision)"),
    ("s3_bucket", "force_destroy", "no counterpart: how the tool deletes the bucket"),
];

/// Kinds with no CloudFormation resource schema among the fixtures, and why.
const NO_SCHEMA: &[(&str, &str)] = &[
    ("eip", "only tags, which every kind changes in place"),
    ("cloudfront_distribution", "AWS::CloudFront::Distribution has no create-only property: every field is in place"),
    ("cloudfront_vpc_origin", "no schema among the fixtures; UpdateVpcOrigin changes every field"),
    ("sns_topic", "no schema among the fixtures; the topic's name is derived"),
    ("image", "the tool's own: an image pushed to a repository"),
    ("cost_site", "the tool's own: a page published to a bucket"),
];

/// A unit test holding every kind's replace/in-place flags to AWS's resource schemas: a field
/// forces replacement exactly when its property is create-only, unless `ALLOWED` says why not;
/// every field of every kind is placed (a new field must say where it lives).
#[test]
fn replacement_flags_follow_aws_resource_schemas() {
    let base = std::env::var("QUAKE_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    let dir = base.join("fixtures/cfn-schemas");
    assert!(dir.exists(), "{} is missing: this test needs ../shared/fixtures beside the project", dir.display());
    let schema = |file: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{file}.json"))).unwrap()).unwrap()
    };
    let mut wrong = Vec::new();
    for kind in provisioner::kinds::all() {
        if NO_SCHEMA.iter().any(|(k, _)| *k == kind.name) {
            continue;
        }
        for f in kind.fields.iter().filter(|f| f.update != provisioner::schema::Update::Setting && f.name != "tags") {
            let allowed = ALLOWED.iter().find(|(k, n, _)| *k == kind.name && *n == f.name);
            let Some((_, _, file, prop)) = IN_SCHEMA.iter().find(|(k, n, _, _)| *k == kind.name && *n == f.name) else {
                if allowed.is_none() {
                    wrong
                        .push(format!("{}.{}: not placed in any AWS schema (IN_SCHEMA or ALLOWED)", kind.name, f.name));
                }
                continue;
            };
            let s = schema(file);
            assert!(s["properties"].get(*prop).is_some(), "{file} has no property {prop}");
            let create_only = s["createOnlyProperties"]
                .as_array()
                .is_some_and(|a| a.iter().any(|p| p.as_str() == Some(&format!("/properties/{prop}"))));
            let replaces = f.update == provisioner::schema::Update::Replace;
            if create_only != replaces && allowed.is_none() {
                wrong.push(format!(
                    "{}.{}: {} here, {} in {file} ({prop})",
                    kind.name,
                    f.name,
                    if replaces { "replaces" } else { "in place" },
                    if create_only { "create-only" } else { "updatable" }
                ));
            }
        }
    }
    for (k, n, _) in ALLOWED {
        let known =
            provisioner::kinds::all().iter().any(|kind| kind.name == *k && kind.fields.iter().any(|f| f.name == *n));
        assert!(known, "ALLOWED names {k}.{n}, which no kind has");
    }
    assert!(wrong.is_empty(), "kinds against AWS's resource schemas:\n{}", wrong.join("\n"));
}

/// Every secret is readable only by the roles that need it: no role of the production stack
/// attaches a managed policy that reads parameters (AmazonSSMManagedInstanceCore grants
/// `ssm:GetParameter*` on `*`), and each `ssm:GetParameter*` names one secret of the stack -
/// never the FinOps user's first password (`/<stack>/cognito/...`), which no role reads. moto's
/// IAM enforcement matches actions only, so this is checked on the rendered policies.
#[test]
fn secrets_are_readable_only_by_the_roles_that_need_them() {
    let src = prod();
    let s = load("prod.toml", &src, &chosen()).unwrap();
    for r in s.resources.iter().filter(|r| r.kind.name == "iam_role") {
        let v = provisioner::stack::desired(r, &s);
        let managed: Vec<&str> =
            v["managed_policies"].as_array().into_iter().flatten().filter_map(|m| m.as_str()).collect();
        assert!(
            managed.iter().all(|m| !m.contains("AmazonSSM")
                && !m.contains("ReadOnlyAccess")
                && !m.ends_with("/AdministratorAccess")),
            "{}: {managed:?}",
            r.address()
        );
        for st in v["statements"].as_array().into_iter().flatten() {
            let actions: Vec<&str> = st["actions"].as_array().unwrap().iter().filter_map(|a| a.as_str()).collect();
            if !actions.iter().any(|a| a.starts_with("ssm:GetParameter")) {
                continue;
            }
            let resources: Vec<&str> = st["resources"].as_array().unwrap().iter().filter_map(|a| a.as_str()).collect();
            assert!(
                resources.iter().all(|x| x.starts_with("${secret.") && x.ends_with(".arn}")),
                "{}: parameters read beyond its secret: {resources:?}",
                r.address()
            );
        }
    }
}

/// `apply` refuses pins no `pin --write` verified (the repository's are such: nothing here
/// reaches Docker Hub), naming them and the way on, before any AWS call.
#[test]
fn apply_refuses_pins_never_verified() {
    let out = Command::new(env!("CARGO_BIN_EXE_provisioner"))
        .args(["apply", "stacks/prod.toml", "--yes"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env_remove("PROVISIONER_ACCEPT_UNVERIFIED_PINS")
        .env("PROVISIONER_VAR_alert_email", "oncall@example.net")
        .env("PROVISIONER_VAR_finops_email", "finops@example.net")
        // Nowhere to go: a check that let it through would fail on the endpoint, not pass.
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("never verified") && err.contains("kafka_image"), "{err}");
    assert!(err.contains("provisioner pin --write") && err.contains("--accept-unverified-pins"), "{err}");
}
