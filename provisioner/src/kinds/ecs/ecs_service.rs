//! `ecs_service`: a Fargate service with its task definition inline (one container). A changed
//! task definition registers a new revision, updates the service, waits for the deployment to
//! finish (a rollback by the circuit breaker is a failure, not a success), then deregisters the
//! old revision. With an `autoscaling` resource on it, the task count is the autoscaler's.

use super::{ecs, err, last, service_arns, set_tags, tags};
use crate::diag::Diags;
use crate::error::{gone_ok, OpError, Transient};
use crate::provider::{known, null_as_empty, Address, Cx, Found, Typed, ID_TAG, STACK_TAG};
use crate::schema::{Field, FieldType, Kind, Security, Update, TAGS};
use crate::stack::{Resource, Stack, Val};
use async_trait::async_trait;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, Compatibility, ContainerDefinition,
    CpuArchitecture, DeploymentCircuitBreaker, DeploymentConfiguration, HealthCheck, KeyValuePair, LaunchType,
    LoadBalancer, LogConfiguration, LogDriver, NetworkConfiguration, NetworkMode, OsFamily, PortMapping, PropagateTags,
    RuntimePlatform, Service, ServiceField, TransportProtocol,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The service-linked role and roles made moments ago, and a target group whose listener
/// AWS has not linked yet, are refused for a while after they were made.
const SOURCE: &str = "terraform-provider-aws internal/service/ecs/service.go: retryServiceCreate";
const TRANSIENT: &[Transient] = &[
    Transient::new("CreateService", "InvalidParameterException", 4, SOURCE)
        .saying("Unable to assume the service linked role"),
    Transient::new("CreateService", "InvalidParameterException", 4, SOURCE)
        .saying("verify that the ECS service role being passed has the proper permissions"),
    Transient::new("CreateService", "InvalidParameterException", 4, SOURCE)
        .saying("does not have an associated load balancer"),
    Transient::new("CreateService", "ClusterNotFoundException", 4, SOURCE),
];

pub static KIND: Kind = Kind::new("ecs_service", "A Fargate service named <name> in its cluster, running one container of the task definition <stack>-<name>.", &EcsService)
.fields(&[
        Field::required("cluster", FieldType::Ref(&["ecs_cluster"]), Update::Replace, "The cluster."),
        Field::required("image", FieldType::String, Update::InPlace, "Container image, by digest in production."),
        Field::optional("command", FieldType::List(&FieldType::String), None, Update::InPlace, "Command, e.g. [\"web\"]."),
        Field::optional("cpu", FieldType::Int { min: 256, max: 16384 }, Some("256"), Update::InPlace, "CPU units (1024 = one vCPU)."),
        Field::optional("memory", FieldType::Int { min: 512, max: 122880 }, Some("512"), Update::InPlace, "Memory in MiB, a size Fargate pairs with `cpu`."),
        Field::optional("architecture", FieldType::Enum(&["X86_64", "ARM64"]), Some("\"X86_64\""), Update::InPlace, "CPU architecture."),
        Field::optional("environment", FieldType::StringMap, None, Update::InPlace, "Environment; values may use ${kind.name.output}."),
        Field::optional("port", FieldType::Int { min: 1, max: 65535 }, None, Update::InPlace, "The container's port."),
        Field::optional(
            "health_check",
            FieldType::List(&FieldType::String),
            None,
            Update::InPlace,
            "Container health check command, e.g. [\"CMD\", \"/quake\", \"health\"].",
        ),
        Field::optional("log_group", FieldType::Ref(&["log_group"]), None, Update::InPlace, "Where the container logs go (awslogs)."),
        Field::optional("task_role", FieldType::Ref(&["iam_role"]), None, Update::InPlace, "The role the container's code runs as."),
        Field::optional(
            "execution_role",
            FieldType::Ref(&["iam_role"]),
            None,
            Update::InPlace,
            "The role ECS uses to pull the image and write logs.",
        ),
        Field::optional(
            "desired_count",
            FieldType::Int { min: 0, max: 1000 },
            None,
            Update::InPlace,
            "Tasks to run; leave out when an `autoscaling` resource scales the service.",
        ),
        Field::required("subnets", FieldType::List(&FieldType::Ref(&["subnet"])), Update::InPlace, "Subnets of the tasks."),
        Field::required(
            "security_groups",
            FieldType::List(&FieldType::Ref(&["security_group"])),
            Update::InPlace,
            "Security groups of the tasks.",
        ),
        Field::optional("public_ip", FieldType::Bool, Some("false"), Update::InPlace, "Give tasks a public IPv4 address.")
        .security(Security::Exposure(|v| v == true)),
        Field::optional(
            "spot_after",
            FieldType::Int { min: 0, max: 1000 },
            None,
            Update::InPlace,
            "Tasks beyond this many run on Fargate Spot (about 70 % cheaper; AWS may stop one with two minutes' notice, and ECS starts another); the cluster must list FARGATE and FARGATE_SPOT in capacity_providers. Absent: every task on regular Fargate.",
        ),
        Field::optional(
            "target_group",
            FieldType::Ref(&["target_group"]),
            None,
            Update::InPlace,
            "Target group the tasks join (at `port`); it must be a listener's, which the service then waits for.",
        ),
        Field::optional(
            "health_check_grace",
            FieldType::Int { min: 0, max: 2_147_483_647 },
            None,
            Update::InPlace,
            "Seconds the load balancer's health checks are ignored after a task starts.",
        ),
        Field::optional(
            "circuit_breaker",
            FieldType::Bool,
            Some("true"),
            Update::InPlace,
            "Stop a failing deployment and roll back (the apply then fails).",
        ),
        Field::optional(
            "wait_timeout",
            FieldType::Int { min: 0, max: 7200 },
            Some("900"),
            Update::Setting,
            "Seconds to wait for a deployment to finish; 0: do not wait (an emulator that runs no task).",
        ),
        TAGS,
    ])
.outputs(&[("id", "Service ARN"), ("arn", "Service ARN"), ("name", "<name>"), ("cluster", "The cluster's name"), ("task_definition", "Current task definition ARN")])
.check(check)
.normalize(normalize)
.cost(cost, &[])
// ECS refuses a target group no listener forwards to ("does not have an associated load
// balancer"); the service names the group, not the listener.
.after(&["listener"])
.transient(TRANSIENT);

/// Its tasks, `desired_count` of them or, when an `autoscaling` resource sets the count, its
/// minimum to its maximum.
fn cost(cx: &crate::cost::CostCx<'_>) -> Vec<crate::cost::Part> {
    let Some(a) = cx.attrs::<Attrs>() else { return Vec::new() };
    let (min, max) = match a.desired_count {
        Some(n) => (i64::from(n), i64::from(n)),
        None => cx.referring("autoscaling", "service").first().map_or((1, 1), |a| {
            (a.get("min").and_then(Value::as_i64).unwrap_or(1), a.get("max").and_then(Value::as_i64).unwrap_or(1))
        }),
    };
    let tasks = super::Tasks {
        vcpu: a.cpu.unwrap_or(256) as f64 / 1024.0,
        gb: a.memory.unwrap_or(512) as f64 / 1024.0,
        arch: a.architecture.as_deref().unwrap_or("X86_64").to_ascii_lowercase(),
        regular: a.spot_after.map(i64::from),
        public_ip: a.public_ip,
    };
    super::fargate_parts(cx, &tasks, min, max)
}

/// The declared shape, decoded once from `want` or `have`.
#[derive(Debug, Deserialize, Clone, PartialEq, Serialize)]
#[serde(deny_unknown_fields)]
struct Attrs {
    cluster: String,
    image: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    command: Vec<String>,
    cpu: Option<i64>,
    memory: Option<i64>,
    architecture: Option<String>,
    #[serde(default, deserialize_with = "null_as_empty")]
    environment: BTreeMap<String, String>,
    port: Option<i32>,
    #[serde(default, deserialize_with = "null_as_empty")]
    health_check: Vec<String>,
    log_group: Option<String>,
    task_role: Option<String>,
    execution_role: Option<String>,
    desired_count: Option<i32>,
    subnets: Vec<String>,
    security_groups: Vec<String>,
    #[serde(default)]
    public_ip: bool,
    spot_after: Option<i32>,
    target_group: Option<String>,
    health_check_grace: Option<i32>,
    circuit_breaker: Option<bool>,
    wait_timeout: Option<i64>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

impl Attrs {
    /// The task definition's part: a change here is a new revision.
    fn task(&self) -> Self {
        Self {
            desired_count: None,
            subnets: vec![],
            security_groups: vec![],
            public_ip: false,
            target_group: None,
            health_check_grace: None,
            circuit_breaker: None,
            wait_timeout: None,
            tags: BTreeMap::new(),
            ..self.clone()
        }
    }
}

#[derive(Default, Serialize)]
struct Outputs {
    arn: String,
    name: String,
    cluster: String,
    task_definition: String,
}

/// Sets for subnets and groups.
fn normalize(v: &mut Value) {
    for k in ["subnets", "security_groups"] {
        if let Some(Value::Array(a)) = v.get_mut(k) {
            a.sort_by_key(Value::to_string);
        }
    }
    if v.get("environment").is_some_and(Value::is_null) {
        v["environment"] = json!({});
    }
}

/// Fargate's CPU and memory pairs (MiB): per CPU size, the smallest and largest memory and the
/// step between them.
fn fargate_memory(cpu: i64) -> Option<(i64, i64, i64)> {
    Some(match cpu {
        256 => (512, 2048, 512),
        512 => (1024, 4096, 1024),
        1024 => (2048, 8192, 1024),
        2048 => (4096, 16384, 1024),
        4096 => (8192, 30720, 1024),
        8192 => (16384, 61440, 4096),
        16384 => (32768, 122880, 8192),
        _ => return None,
    })
}

fn check(r: &Resource, stack: &Stack, d: &mut Diags) {
    // ECS's HealthCheck.command: ["CMD", program, args...] or ["CMD-SHELL", "a shell line"].
    if let Some((Val::List(items), span)) = r.fields.get("health_check") {
        let words: Vec<&str> = items.iter().filter_map(|(v, _)| v.as_str()).collect();
        let ok = match words.first() {
            Some(&"CMD") => words.len() >= 2,
            Some(&"CMD-SHELL") => words.len() == 2,
            _ => false,
        };
        if !ok {
            d.error(
                "bad-health-check",
                span.clone(),
                format!(
                    "{}: a health check is [\"CMD\", program, args...] or [\"CMD-SHELL\", \"command line\"]",
                    r.address()
                ),
                Some("e.g. health_check = [\"CMD\", \"/quake\", \"health\"]".into()),
            );
        }
    }
    let int = |f: &str| match r.fields.get(f) {
        Some((Val::Int(i), s)) => Some((*i, s.clone())),
        _ => None,
    };
    let (cpu, cpu_span) = int("cpu").unwrap_or((256, r.span.clone()));
    let memory = int("memory").unwrap_or((512, r.span.clone()));
    match fargate_memory(cpu) {
        None => d.error(
            "fargate-size",
            cpu_span,
            format!("{}: Fargate has no task of {cpu} CPU units", r.address()),
            Some("choose 256, 512, 1024, 2048, 4096, 8192 or 16384".into()),
        ),
        Some((lo, hi, step)) if memory.0 < lo || memory.0 > hi || (memory.0 - lo) % step != 0 => d.error(
            "fargate-size",
            memory.1,
            format!("{}: Fargate does not pair {cpu} CPU units with {} MiB", r.address(), memory.0),
            Some(format!("with cpu = {cpu}, memory is {lo} to {hi} in steps of {step}")),
        ),
        _ => {}
    }
    if let (Some((_, span)), Some((cluster, _))) = (int("spot_after"), r.str("cluster")) {
        let providers: Vec<&str> = match stack.get(cluster).and_then(|c| c.fields.get("capacity_providers")) {
            Some((Val::List(items), _)) => items.iter().filter_map(|(v, _)| v.as_str()).collect(),
            _ => Vec::new(),
        };
        if stack.get(cluster).is_some() && !(providers.contains(&"FARGATE") && providers.contains(&"FARGATE_SPOT")) {
            d.error(
                "spot-without-provider",
                span,
                format!("{}: spot_after needs {cluster} to offer FARGATE and FARGATE_SPOT", r.address()),
                Some(format!("add capacity_providers = [\"FARGATE\", \"FARGATE_SPOT\"] to [{cluster}]")),
            );
        }
    }
    let address = r.address();
    let scaled = stack
        .resources
        .iter()
        .any(|o| o.kind.name == "autoscaling" && o.str("service").is_some_and(|(s, _)| s == address));
    match (scaled, r.fields.get("desired_count")) {
        (true, Some((_, span))) => d.error(
            "desired-count-scaled",
            span.clone(),
            format!("{address} is scaled by an autoscaling resource, which sets its task count"),
            Some("remove desired_count; set min and max on the autoscaling resource".into()),
        ),
        (false, None) => d.error(
            "desired-count-missing",
            r.span.clone(),
            format!("{address} names no desired_count and no autoscaling resource scales it"),
            Some("add desired_count = 1".into()),
        ),
        _ => {}
    }
    if r.fields.contains_key("target_group") && !r.fields.contains_key("port") {
        d.error(
            "target-without-port",
            r.span.clone(),
            format!("{address} joins a target group but names no container port"),
            Some("add port = 8080".into()),
        );
    }
}

struct EcsService;

/// The ECS services an autoscaler scales (`service/<cluster>/<name>`), once per pass.
async fn scaled(cx: &Cx) -> Result<BTreeSet<String>, OpError> {
    crate::kinds::application_autoscaling::targets(cx).await.map(|t| t.into_iter().map(|t| t.resource_id).collect())
}

/// Partition and account of the cluster (the ARNs of roles are built from them: ECS wants
/// ARNs where the stack refers to roles by address).
async fn arn_base(cx: &Cx, cluster: &str) -> Result<(String, String), OpError> {
    let d = ecs(cx).describe_clusters().clusters(cluster).send().await.map_err(|e| err("DescribeClusters", e))?;
    let arn = d.clusters().first().and_then(|c| c.cluster_arn()).ok_or_else(|| {
        OpError::new(crate::error::Class::NotFound, "DescribeClusters", format!("no cluster {cluster}"))
    })?;
    let parts: Vec<&str> = arn.split(':').collect();
    Ok((parts.get(1).unwrap_or(&"aws").to_string(), parts.get(4).unwrap_or(&"").to_string()))
}

fn role_arn(base: &(String, String), stack: &str, name: &str) -> String {
    if name.starts_with("arn:") {
        return name.to_owned();
    }
    format!("arn:{}:iam::{}:role/{stack}/{name}", base.0, base.1)
}

/// Registers the task definition of `w` as a new revision of `<stack>-<name>`.
async fn register(cx: &Cx, name: &str, w: &Attrs) -> Result<String, OpError> {
    let base = arn_base(cx, &w.cluster).await?;
    let mut c = ContainerDefinition::builder()
        .name(name)
        .image(&w.image)
        .essential(true)
        .set_command((!w.command.is_empty()).then(|| w.command.clone()))
        .set_environment(Some(
            w.environment.iter().map(|(k, v)| KeyValuePair::builder().name(k).value(v).build()).collect(),
        ));
    if let Some(p) = w.port {
        c = c.port_mappings(PortMapping::builder().container_port(p).protocol(TransportProtocol::Tcp).build());
    }
    if !w.health_check.is_empty() {
        let hc = HealthCheck::builder()
            .set_command(Some(w.health_check.clone()))
            .interval(30)
            .timeout(5)
            .retries(3)
            .start_period(10)
            .build()
            .map_err(|e| OpError::fatal("build HealthCheck", e.to_string()))?;
        c = c.health_check(hc);
    }
    if let Some(g) = &w.log_group {
        let lc = LogConfiguration::builder()
            .log_driver(LogDriver::Awslogs)
            .options("awslogs-group", g)
            .options("awslogs-region", &cx.region)
            .options("awslogs-stream-prefix", name)
            .build()
            .map_err(|e| OpError::fatal("build LogConfiguration", e.to_string()))?;
        c = c.log_configuration(lc);
    }
    let out = ecs(cx)
        .register_task_definition()
        .family(format!("{}-{name}", cx.stack))
        .container_definitions(c.build())
        .cpu(w.cpu.unwrap_or(256).to_string())
        .memory(w.memory.unwrap_or(512).to_string())
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .runtime_platform(
            RuntimePlatform::builder()
                .cpu_architecture(CpuArchitecture::from(w.architecture.as_deref().unwrap_or("X86_64")))
                .operating_system_family(OsFamily::Linux)
                .build(),
        )
        .set_task_role_arn(w.task_role.as_ref().map(|r| role_arn(&base, &cx.stack, r)))
        .set_execution_role_arn(w.execution_role.as_ref().map(|r| role_arn(&base, &cx.stack, r)))
        .set_tags(Some(tags(&w.tags)))
        .send()
        .await
        .map_err(|e| err("RegisterTaskDefinition", e))?;
    out.task_definition()
        .and_then(|t| t.task_definition_arn())
        .map(str::to_owned)
        .ok_or_else(|| OpError::fatal("RegisterTaskDefinition", "no ARN"))
}

fn network(w: &Attrs) -> Result<NetworkConfiguration, OpError> {
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(w.subnets.clone()))
        .set_security_groups(Some(w.security_groups.clone()))
        .assign_public_ip(if w.public_ip { AssignPublicIp::Enabled } else { AssignPublicIp::Disabled })
        .build()
        .map_err(|e| OpError::fatal("build AwsVpcConfiguration", e.to_string()))?;
    Ok(NetworkConfiguration::builder().awsvpc_configuration(vpc).build())
}

/// `spot_after` as a strategy: the first `n` tasks on Fargate, every further one on Spot; with
/// none, every task on Fargate.
fn strategy(spot_after: Option<i32>) -> Result<Vec<CapacityProviderStrategyItem>, OpError> {
    let item = |name: &str, base: i32, weight: i32| {
        CapacityProviderStrategyItem::builder()
            .capacity_provider(name)
            .base(base)
            .weight(weight)
            .build()
            .map_err(|e| OpError::fatal("build CapacityProviderStrategyItem", e.to_string()))
    };
    match spot_after {
        Some(n) => Ok(vec![item("FARGATE", n, 0)?, item("FARGATE_SPOT", 0, 1)?]),
        None => Ok(vec![item("FARGATE", 0, 1)?]),
    }
}

/// A strategy read back as `spot_after`: the regular base when Spot takes the rest.
fn spot_after(items: &[CapacityProviderStrategyItem]) -> Option<i32> {
    let spot = items.iter().any(|i| i.capacity_provider() == "FARGATE_SPOT" && i.weight() > 0);
    spot.then(|| items.iter().find(|i| i.capacity_provider() == "FARGATE").map_or(0, |i| i.base()))
}

fn load_balancers(name: &str, w: &Attrs) -> Vec<LoadBalancer> {
    w.target_group
        .iter()
        .map(|tg| LoadBalancer::builder().target_group_arn(tg).container_name(name).set_container_port(w.port).build())
        .collect()
}

fn deployment(w: &Attrs) -> DeploymentConfiguration {
    let on = w.circuit_breaker.unwrap_or(true);
    DeploymentConfiguration::builder()
        .deployment_circuit_breaker(DeploymentCircuitBreaker::builder().enable(on).rollback(on).build())
        .maximum_percent(200)
        .minimum_healthy_percent(100)
        .build()
}

/// Where a deployment stands, from one `DescribeServices` answer.
#[derive(Debug, PartialEq)]
pub enum Rollout {
    Done,
    Running(String),
    Failed(String),
}

/// Decides from the service what became of the deployment of `task_definition`: done when it
/// is the only deployment, completed (or, where no rollout state is reported, running every
/// task it wants); failed when its rollout failed or another revision took its place (the
/// circuit breaker rolled back).
pub fn rollout(s: &Service, task_definition: &str) -> Rollout {
    let deployments = s.deployments();
    let Some(primary) = deployments.iter().find(|d| d.status() == Some("PRIMARY")) else {
        return Rollout::Running("no primary deployment yet".into());
    };
    let state = primary.rollout_state().map(|r| r.as_str().to_owned());
    if primary.task_definition() != Some(task_definition) {
        return Rollout::Failed(format!(
            "the deployment was rolled back to {} by the circuit breaker",
            primary.task_definition().map(last).unwrap_or("?")
        ));
    }
    if state.as_deref() == Some("FAILED") {
        return Rollout::Failed(primary.rollout_state_reason().unwrap_or("the rollout failed").to_owned());
    }
    let settled = match state.as_deref() {
        Some("COMPLETED") => true,
        Some(_) => false,
        None => primary.running_count() == primary.desired_count(),
    };
    if settled && deployments.len() == 1 {
        Rollout::Done
    } else {
        Rollout::Running(format!(
            "{} of {} tasks running, {} deployment(s)",
            primary.running_count(),
            primary.desired_count(),
            deployments.len()
        ))
    }
}

async fn wait_steady(
    cx: &Cx,
    cluster: &str,
    service: &str,
    task_definition: &str,
    timeout: i64,
) -> Result<(), OpError> {
    if timeout <= 0 {
        return Ok(());
    }
    let start = Instant::now();
    loop {
        let d = ecs(cx)
            .describe_services()
            .cluster(cluster)
            .services(service)
            .send()
            .await
            .map_err(|e| err("DescribeServices", e))?;
        let s = d.services().first().ok_or_else(|| OpError::fatal("DescribeServices", format!("{service} is gone")))?;
        match rollout(s, task_definition) {
            Rollout::Done => return Ok(()),
            Rollout::Failed(why) => return Err(OpError::fatal("deployment", format!("{service}: {why}"))),
            Rollout::Running(state) if start.elapsed() > Duration::from_secs(timeout as u64) => {
                return Err(OpError::fatal(
                    "deployment",
                    format!("{service}: not steady after {timeout} s ({state}); raise wait_timeout or look at the service's events"),
                ));
            }
            Rollout::Running(_) => {}
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

#[async_trait]
impl Typed for EcsService {
    type Attrs = Attrs;
    type Outputs = Outputs;

    async fn discover(&self, cx: &Cx) -> Result<Vec<Found<Attrs, Outputs>>, OpError> {
        // Services by cluster (`arn:...:service/<cluster>/<name>`).
        let mut by_cluster: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for arn in service_arns(cx).await? {
            let cluster = arn.rsplit('/').nth(1).unwrap_or_default().to_owned();
            by_cluster.entry(cluster).or_default().push(arn);
        }
        let mut out = Vec::new();
        let mut scaled_ids = None;
        for (cluster, arns) in by_cluster {
            // DescribeServices takes 10 services a call, tags included.
            for batch in arns.chunks(10) {
                let d = ecs(cx)
                    .describe_services()
                    .cluster(&cluster)
                    .set_services(Some(batch.to_vec()))
                    .include(ServiceField::Tags)
                    .send()
                    .await
                    .map_err(|e| err("DescribeServices", e))?;
                for s in d.services() {
                    let tags: BTreeMap<String, String> = s
                        .tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
                        .collect();
                    let (Some(arn), Some(name), Some(address)) = (s.service_arn(), s.service_name(), tags.get(ID_TAG))
                    else {
                        continue;
                    };
                    if s.status() != Some("ACTIVE") || tags.get(STACK_TAG) != Some(&cx.stack) {
                        continue;
                    }
                    let td_arn = s.task_definition().unwrap_or_default();
                    let td = ecs(cx)
                        .describe_task_definition()
                        .task_definition(td_arn)
                        .send()
                        .await
                        .map_err(|e| err("DescribeTaskDefinition", e))?;
                    let td = td
                        .task_definition()
                        .cloned()
                        .unwrap_or_else(|| aws_sdk_ecs::types::TaskDefinition::builder().build());
                    let c = td.container_definitions().first();
                    let log = c
                        .and_then(|c| c.log_configuration())
                        .and_then(|l| l.options())
                        .and_then(|o| o.get("awslogs-group"));
                    let environment = c
                        .map(|c| {
                            c.environment()
                                .iter()
                                .filter_map(|e| Some((e.name()?.to_owned(), e.value()?.to_owned())))
                                .collect()
                        })
                        .unwrap_or_default();
                    let vpc = s.network_configuration().and_then(|n| n.awsvpc_configuration());
                    let mut subnets = vpc.map(|v| v.subnets().to_vec()).unwrap_or_default();
                    subnets.sort();
                    let mut security_groups = vpc.map(|v| v.security_groups().to_vec()).unwrap_or_default();
                    security_groups.sort();
                    let breaker = s.deployment_configuration().and_then(|d| d.deployment_circuit_breaker());
                    let scaled_ids = match &scaled_ids {
                        Some(s) => s,
                        None => scaled_ids.insert(scaled(cx).await?),
                    };
                    let is_scaled = scaled_ids.contains(&format!("service/{}/{name}", last(&cluster)));
                    let outputs = Outputs {
                        arn: arn.to_owned(),
                        name: name.to_owned(),
                        cluster: last(&cluster).to_owned(),
                        task_definition: td_arn.to_owned(),
                    };
                    let architecture = td.runtime_platform().and_then(|p| p.cpu_architecture());
                    let attrs = Attrs {
                        cluster: last(&cluster).to_owned(),
                        image: c.and_then(|c| c.image()).unwrap_or_default().to_owned(),
                        command: c.map(|c| c.command().to_vec()).unwrap_or_default(),
                        cpu: td.cpu().and_then(|v| v.parse::<i64>().ok()),
                        memory: td.memory().and_then(|v| v.parse::<i64>().ok()),
                        architecture: Some(architecture.map_or("X86_64", |a| a.as_str()).to_owned()),
                        environment,
                        port: c.and_then(|c| c.port_mappings().first()).and_then(|p| p.container_port()),
                        health_check: c
                            .and_then(|c| c.health_check())
                            .map(|h| h.command().to_vec())
                            .unwrap_or_default(),
                        log_group: log.cloned(),
                        task_role: td.task_role_arn().map(|a| last(a).to_owned()),
                        execution_role: td.execution_role_arn().map(|a| last(a).to_owned()),
                        desired_count: if is_scaled { None } else { Some(s.desired_count()) },
                        subnets,
                        security_groups,
                        public_ip: vpc.and_then(|v| v.assign_public_ip()) == Some(&AssignPublicIp::Enabled),
                        spot_after: spot_after(s.capacity_provider_strategy()),
                        target_group: s.load_balancers().first().and_then(|l| l.target_group_arn()).map(str::to_owned),
                        health_check_grace: s.health_check_grace_period_seconds(),
                        circuit_breaker: Some(breaker.is_some_and(|b| b.enable())),
                        wait_timeout: None,
                        tags: tags.clone(),
                    };
                    out.push(Found { id: arn.to_owned(), address: address.clone(), attrs, outputs });
                }
            }
        }
        Ok(out)
    }

    async fn create(&self, cx: &Cx, address: Address<'_>, w: &Attrs, token: &str) -> Result<String, OpError> {
        let name = address.name();
        if let Some(tg) = &w.target_group {
            // ECS refuses a target group no load balancer uses yet, and the listener that
            // makes one use it may still be on its way in this apply: wait for it.
            let d = crate::kinds::elbv2::elb(cx)
                .describe_target_groups()
                .target_group_arns(tg)
                .send()
                .await
                .map_err(|e| crate::kinds::elbv2::err("DescribeTargetGroups", e))?;
            if d.target_groups().iter().all(|g| g.load_balancer_arns().is_empty()) {
                return Err(OpError::retryable("CreateService", format!("{tg} is not used by a listener yet")));
            }
        }
        let td = register(cx, name, w).await?;
        let out = ecs(cx)
            .create_service()
            .cluster(&w.cluster)
            .service_name(name)
            .task_definition(&td)
            // Until an autoscaler takes over, one task.
            .desired_count(w.desired_count.unwrap_or(1))
            .set_launch_type(w.spot_after.is_none().then_some(LaunchType::Fargate))
            .set_capacity_provider_strategy(if w.spot_after.is_some() { Some(strategy(w.spot_after)?) } else { None })
            .network_configuration(network(w)?)
            .set_load_balancers(Some(load_balancers(name, w)))
            .set_health_check_grace_period_seconds(w.health_check_grace)
            .deployment_configuration(deployment(w))
            .propagate_tags(PropagateTags::Service)
            .enable_ecs_managed_tags(true)
            .set_tags(Some(tags(&w.tags)))
            .client_token(token)
            .send()
            .await
            .map_err(|e| err("CreateService", e))?;
        let arn = out
            .service()
            .and_then(|s| s.service_arn())
            .ok_or_else(|| OpError::fatal("CreateService", "no ARN"))?
            .to_owned();
        cx.born(&arn, w);
        wait_steady(cx, &w.cluster, name, &td, w.wait_timeout.unwrap_or(900)).await?;
        Ok(arn)
    }

    async fn update(&self, cx: &Cx, id: &str, have: Option<&Attrs>, want: &Attrs) -> Result<(), OpError> {
        let (h, w) = (known(have)?, want);
        let name = last(id).to_owned();
        let old_td = ecs(cx)
            .describe_services()
            .cluster(&w.cluster)
            .services(&name)
            .send()
            .await
            .map_err(|e| err("DescribeServices", e))?
            .services()
            .first()
            .and_then(|s| s.task_definition())
            .map(str::to_owned);
        let new_td = if h.task() != w.task() { Some(register(cx, &name, w).await?) } else { None };
        let service_changed = Attrs { tags: h.tags.clone(), wait_timeout: None, ..w.clone() }
            != Attrs { wait_timeout: None, ..h.clone() };
        if service_changed {
            ecs(cx)
                .update_service()
                .cluster(&w.cluster)
                .service(&name)
                .set_task_definition(new_td.clone())
                .set_desired_count(w.desired_count)
                // A service leaves its launch type only for a strategy, and never goes back:
                // without Spot it keeps a strategy of regular Fargate only. The tasks move in a
                // new deployment.
                .set_capacity_provider_strategy(if h.spot_after != w.spot_after {
                    Some(strategy(w.spot_after)?)
                } else {
                    None
                })
                .set_force_new_deployment((h.spot_after != w.spot_after).then_some(true))
                .network_configuration(network(w)?)
                .set_load_balancers(Some(load_balancers(&name, w)))
                .set_health_check_grace_period_seconds(w.health_check_grace)
                .deployment_configuration(deployment(w))
                .send()
                .await
                .map_err(|e| err("UpdateService", e))?;
            let current = new_td.clone().or(old_td.clone()).unwrap_or_default();
            wait_steady(cx, &w.cluster, &name, &current, w.wait_timeout.unwrap_or(900)).await?;
        }
        if let (Some(old), Some(_)) = (&old_td, &new_td) {
            // The old revision only once the new one runs everywhere.
            gone_ok(
                ecs(cx)
                    .deregister_task_definition()
                    .task_definition(old)
                    .send()
                    .await
                    .map_err(|e| err("DeregisterTaskDefinition", e)),
            )?;
        }
        set_tags(cx, id, &h.tags, &w.tags).await
    }

    async fn delete(&self, cx: &Cx, id: &str, have: Option<&Attrs>) -> Result<(), OpError> {
        let cluster = match have.map(|h| h.cluster.as_str()).filter(|c| !c.is_empty()) {
            Some(c) => c.to_owned(),
            // `arn:...:service/<cluster>/<name>`
            None => id.rsplit('/').nth(1).unwrap_or_default().to_owned(),
        };
        let d = ecs(cx).describe_services().cluster(&cluster).services(id).send().await;
        let td = d.ok().and_then(|d| d.services().first().and_then(|s| s.task_definition()).map(str::to_owned));
        // `force` stops the tasks instead of waiting for a scale-in first.
        gone_ok(
            ecs(cx)
                .delete_service()
                .cluster(&cluster)
                .service(id)
                .force(true)
                .send()
                .await
                .map_err(|e| err("DeleteService", e)),
        )?;
        if let Some(td) = td {
            gone_ok(
                ecs(cx)
                    .deregister_task_definition()
                    .task_definition(td)
                    .send()
                    .await
                    .map_err(|e| err("DeregisterTaskDefinition", e)),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecs::types::{Deployment, DeploymentRolloutState};

    #[test]
    fn fargate_sizes() {
        assert_eq!(fargate_memory(256), Some((512, 2048, 512)));
        assert!(fargate_memory(300).is_none());
    }

    fn service(deployments: Vec<Deployment>) -> Service {
        Service::builder().set_deployments(Some(deployments)).build()
    }

    fn dep(status: &str, td: &str, state: Option<DeploymentRolloutState>, running: i32, desired: i32) -> Deployment {
        Deployment::builder()
            .status(status)
            .task_definition(td)
            .set_rollout_state(state)
            .running_count(running)
            .desired_count(desired)
            .build()
    }

    #[test]
    fn a_rollback_is_a_failure_and_only_a_finished_rollout_is_done() {
        let (new, old) = ("arn:td/web:2", "arn:td/web:1");
        let done = service(vec![dep("PRIMARY", new, Some(DeploymentRolloutState::Completed), 2, 2)]);
        assert_eq!(rollout(&done, new), Rollout::Done);
        let going = service(vec![
            dep("PRIMARY", new, Some(DeploymentRolloutState::InProgress), 1, 2),
            dep("ACTIVE", old, Some(DeploymentRolloutState::Completed), 2, 2),
        ]);
        assert!(matches!(rollout(&going, new), Rollout::Running(_)));
        let rolled_back = service(vec![dep("PRIMARY", old, Some(DeploymentRolloutState::InProgress), 1, 2)]);
        assert!(matches!(rollout(&rolled_back, new), Rollout::Failed(w) if w.contains("rolled back")));
        let failed = service(vec![dep("PRIMARY", new, Some(DeploymentRolloutState::Failed), 0, 2)]);
        assert!(matches!(rollout(&failed, new), Rollout::Failed(_)));
        let no_state = service(vec![dep("PRIMARY", new, None, 2, 2)]);
        assert_eq!(rollout(&no_state, new), Rollout::Done, "no rollout state: running = desired");
    }
}

#[cfg(test)]
mod cost_tests {
    use crate::kinds::test_support::{close, of, priced};

    fn service(extra: &str) -> String {
        format!(
            "[stack]\nname = \"t\"\nregion = \"eu-central-1\"\n[vpc.v]\ncidr = \"10.0.0.0/16\"\n[subnet.pub]\nvpc = \"vpc.v\"\ncidr = \"10.0.1.0/24\"\naz = \"a\"\npublic_ip_on_launch = true\n[subnet.priv]\nvpc = \"vpc.v\"\ncidr = \"10.0.2.0/24\"\naz = \"b\"\n[ecs_cluster.c]\ncapacity_providers = [\"FARGATE\", \"FARGATE_SPOT\"]\n\
             [ecs_service.s]\ncluster = \"ecs_cluster.c\"\nimage = \"i\"\ncpu = 512\nmemory = 1024\n\
             subnets = [\"subnet.pub\"]\nsecurity_groups = []\npublic_ip = true\n{extra}"
        )
    }

    /// 0.5 vCPU at $0.04656 and 1 GB at $0.00511 an hour per regular task, at $0.01397 and
    /// $0.00153 on Spot, and a public address per task; with autoscaling, its minimum to its
    /// maximum.
    #[test]
    fn tasks_by_size_spot_beyond_the_regular_ones_and_autoscaling_range() {
        let regular = 730.0 * (0.5 * 0.04656 + 0.00511);
        let spot = 730.0 * (0.5 * 0.01397 + 0.00153);
        let b = priced(&service("desired_count = 2\nspot_after = 1\n"));
        close(of(&b, "ecs_service.s").monthly, regular + spot + 2.0 * 3.65);
        let b = priced(&service("desired_count = 2\n"));
        close(of(&b, "ecs_service.s").monthly, 2.0 * regular + 2.0 * 3.65);
        let b = priced(&service(
            "spot_after = 1\n[autoscaling.a]\nservice = \"ecs_service.s\"\nmin = 1\nmax = 3\ntarget = 90\n",
        ));
        let s = of(&b, "ecs_service.s");
        close(s.monthly, regular + 3.65);
        close(s.monthly_max, regular + 2.0 * spot + 3.0 * 3.65);
        assert!(of(&b, "autoscaling.a").is_free(), "the service prices its own tasks");
    }
}
