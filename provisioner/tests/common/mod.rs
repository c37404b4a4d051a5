//! Test harness for the provisioner against real peers: a moto server on a free port, a
//! fault-injecting and recording HTTP proxy in front of it, the CLI as a child process, and SDK
//! checks of what exists.
#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

pub mod strict;
mod vpc_origins;

pub const REGION: &str = "eu-central-1";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A moto server on a free port, killed when dropped, behind a proxy that plays what moto lacks
/// and every stack's discovery reads (CloudFront VPC origins, EMULATED: `vpc_origins`); `url`
/// is the proxy's, `direct` moto's own.
pub struct Moto {
    child: Child,
    pub url: String,
    pub direct: String,
    front: Proxy,
}

impl Moto {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// With IAM enforcement: after `free_calls` requests, every request is authorised against
    /// IAM (moto's `INITIAL_NO_AUTH_ACTION_COUNT`; it matches actions, not resources).
    pub async fn start_enforcing(free_calls: u32) -> Self {
        Self::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", &free_calls.to_string())]).await
    }

    pub async fn start_with(env: &[(&str, &str)]) -> Self {
        let bin = std::env::var("QUAKE_MOTO_SERVER").unwrap_or_else(|_| {
            format!("{}/.cache/quake/venv/bin/moto_server", std::env::var("HOME").unwrap_or_default())
        });
        assert!(
            std::path::Path::new(&bin).exists(),
            "moto_server not found at {bin}: run `make deps` (or set QUAKE_MOTO_SERVER)"
        );
        let port = free_port();
        // Waited for in Drop.
        #[allow(clippy::zombie_processes)]
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            // AWS's managed policies (AmazonSSMManagedInstanceCore, ...) exist in every account.
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let direct = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if http.get(format!("{direct}/moto-api/")).send().await.is_ok() {
                let front = Proxy::start(&direct).await;
                return Self { child, url: front.url.clone(), direct, front };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("moto_server did not answer on {direct}");
    }

    /// Forgets everything (all services, and what the front emulates).
    pub async fn reset(&self) {
        reqwest::Client::new().post(format!("{}/moto-api/reset", self.direct)).send().await.expect("reset");
        self.front.forget_emulated();
    }

    /// The SDK configuration of moto in `region`, with its dummy credentials.
    pub fn conf(&self, region: &'static str) -> aws_config::SdkConfig {
        conf_of(&self.url, region, ("test", "test", None))
    }

    /// Any service's client on moto, built as the provisioner builds its own.
    pub fn client<C: provisioner::provider::Service>(&self, region: &'static str) -> C {
        C::build(&self.conf(region))
    }

    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        self.client(REGION)
    }

    pub fn ec2_in(&self, region: &'static str) -> aws_sdk_ec2::Client {
        self.client(region)
    }

    pub fn logs(&self) -> aws_sdk_cloudwatchlogs::Client {
        self.client(REGION)
    }

    pub fn ecr(&self) -> aws_sdk_ecr::Client {
        self.client(REGION)
    }

    pub fn iam(&self) -> aws_sdk_iam::Client {
        self.client(REGION)
    }

    pub fn ecs(&self) -> aws_sdk_ecs::Client {
        self.client(REGION)
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        self.client(REGION)
    }

    pub fn elb(&self) -> aws_sdk_elasticloadbalancingv2::Client {
        self.client(REGION)
    }

    pub fn waf(&self) -> aws_sdk_wafv2::Client {
        self.client(REGION)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One API call as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Call {
    /// `CreateVpc`, `DynamoDB_20120810.PutItem`, ...
    pub action: String,
    pub params: BTreeMap<String, String>,
    /// The request body as sent (JSON protocols carry their parameters here).
    pub body: String,
    pub status: u16,
    pub response: String,
    /// Answered by the proxy with a throttling error instead of being forwarded.
    pub faulted: bool,
    pub at: Instant,
}

#[derive(Default)]
pub struct Faults {
    /// Share of calls answered with a throttling error, 0.0 to 1.0.
    pub rate: f64,
    /// Added to every call.
    pub latency: Duration,
}

pub struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    pub calls: Mutex<Vec<Call>>,
    pub faults: Mutex<Faults>,
    /// EMULATION of DynamoDB global tables, which moto accepts and ignores: replica updates
    /// recorded per (region, table) and played back in `DescribeTable` answers as AWS documents
    /// them (`Replicas`, each `ACTIVE` at once). Off unless a test turns it on.
    pub global_tables: std::sync::atomic::AtomicBool,
    pub replicas: Mutex<BTreeMap<(String, String), std::collections::BTreeSet<String>>>,
    /// The replicas' continuous backups, by (replica region, table), EMULATED with them: a
    /// replica is a table of its region, with recovery of its own.
    pub replica_pitr: Mutex<BTreeMap<(String, String), bool>>,
    /// EMULATION of ECS deployments, which moto never finishes (no task ever runs) and whose
    /// deployment configuration it drops: each service's answers show AWS's documented state
    /// after a finished rollout (one PRIMARY deployment, `COMPLETED`, every task running) of the
    /// task definition last sent, with the deployment configuration, health-check grace period
    /// and capacity provider strategy last sent (moto drops all three when it creates a
    /// service). With `ecs_roll_back`, the
    /// next new task definition is "rolled back by the circuit breaker": the old one stays
    /// PRIMARY. Off unless a test turns it on.
    pub ecs: std::sync::atomic::AtomicBool,
    pub ecs_roll_back: std::sync::atomic::AtomicBool,
    pub ecs_services: Mutex<BTreeMap<String, (serde_json::Value, Option<String>)>>,
    /// Where CloudFront's and Lambda's calls go instead, when set: moto's IAM enforcement
    /// cannot check those two services' signatures at all (boto3's fail alike), so a test with
    /// enforcement on sends them to a second moto without it.
    pub detour: Mutex<Option<String>>,
    /// EMULATION of CloudFront's read-back, always on: moto drops a distribution's origin
    /// access control id and answers its Lambda@Edge associations as none. What the last create
    /// or update sent is kept per distribution and played back in its answers, as AWS keeps it.
    pub distributions: Mutex<BTreeMap<String, Sent>>,
    /// EMULATION of CloudFront VPC origins, always on (see `vpc_origins`).
    pub vpc_origins: Mutex<vpc_origins::VpcOrigins>,
    /// EMULATION of Lambda@Edge replicas, which moto does not have: this many `DeleteFunction`
    /// calls are answered as AWS answers while replicas remain ("replicated function").
    pub edge_replicas: std::sync::atomic::AtomicU32,
    /// AWS's behaviours moto lacks, played when turned on (see `strict`).
    pub strict: strict::Strict,
}

/// What a distribution's last write sent that moto drops: its origin access control id, its
/// Lambda associations and its origin's VPC origin configuration (XML).
pub type Sent = (Option<String>, Option<String>, Option<String>);

/// The REST paths of CloudFront's and Lambda's APIs (see [`ProxyState::detour`]).
const DETOURED: &[&str] = &["/2020-05-31/", "/2015-03-31/", "/2017-03-31/", "/2018-10-31/"];

/// An HTTP proxy in front of moto that records every call, adds latency and answers a share of
/// calls with the throttling errors AWS sends (`RequestLimitExceeded` for EC2, `Throttling...`
/// for JSON services).
pub struct Proxy {
    pub url: String,
    pub state: Arc<ProxyState>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Self {
        let state = Arc::new(ProxyState {
            upstream: upstream.to_owned(),
            http: reqwest::Client::new(),
            calls: Mutex::default(),
            faults: Mutex::default(),
            global_tables: Default::default(),
            replicas: Mutex::default(),
            replica_pitr: Mutex::default(),
            ecs: Default::default(),
            ecs_roll_back: Default::default(),
            ecs_services: Mutex::default(),
            detour: Mutex::default(),
            distributions: Mutex::default(),
            vpc_origins: Mutex::default(),
            edge_replicas: Default::default(),
            strict: Default::default(),
        });
        let app = axum::Router::new().fallback(forward).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, state }
    }

    /// Turns on the global-table EMULATION (see [`ProxyState::global_tables`]).
    pub fn emulate_global_tables(&self) {
        self.state.global_tables.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Forgets what the emulations recorded (after a moto reset).
    pub fn forget_emulated(&self) {
        self.state.replicas.lock().unwrap().clear();
        self.state.replica_pitr.lock().unwrap().clear();
        self.state.ecs_services.lock().unwrap().clear();
        self.state.distributions.lock().unwrap().clear();
        *self.state.vpc_origins.lock().unwrap() = Default::default();
        self.state.strict.forget();
    }

    /// Turns on STRICT MODE (see `strict`).
    pub fn strict(&self) {
        self.state.strict.turn_on();
    }

    /// Turns on the ECS deployment EMULATION (see [`ProxyState::ecs`]).
    pub fn emulate_ecs_deployments(&self) {
        self.state.ecs.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn set_faults(&self, rate: f64, latency: Duration) {
        *self.state.faults.lock().unwrap() = Faults { rate, latency };
    }

    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut *self.state.calls.lock().unwrap())
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state.calls.lock().unwrap().clone()
    }
}

async fn forward(
    State(st): State<Arc<ProxyState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // On a task of its own: a call whose client was killed meanwhile still reaches moto, as it
    // would reach AWS, and is recorded.
    tokio::spawn(relay(st, method, uri, headers, body))
        .await
        .unwrap_or_else(|e| Response::builder().status(500).body(Body::from(e.to_string())).expect("response"))
}

async fn relay(st: Arc<ProxyState>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let params: BTreeMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    // REST calls (S3) are named by their method and path: `GET /bucket`.
    let action =
        target.clone().or_else(|| params.get("Action").cloned()).unwrap_or_else(|| format!("{method} {}", uri.path()));
    let (rate, latency) = {
        let f = st.faults.lock().unwrap();
        (f.rate, f.latency)
    };
    tokio::time::sleep(latency).await;
    let record = |status: u16, response: String, faulted: bool| Call {
        action: action.clone(),
        params: params.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
        status,
        response,
        faulted,
        at: Instant::now(),
    };
    // The SigV4 service of the call (`ec2`, `dynamodb`, ...): it decides the error format.
    let service = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or_default()
        .to_owned();
    if rand::random::<f64>() < rate {
        // The throttling answer of the call's service, in its protocol's error format.
        let (status, code) = match service.as_str() {
            _ if target.is_some() => (400, "ThrottlingException"),
            "s3" => (503, "SlowDown"),
            "lambda" => (429, "TooManyRequestsException"),
            "ec2" => (503, "RequestLimitExceeded"),
            _ => (400, "Throttling"),
        };
        let (status, answer, body) = strict::error_answer(&service, target.is_some(), status, code, "Rate exceeded");
        st.calls.lock().unwrap().push(record(status, body, true));
        return answer;
    }
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let op = match &target {
        Some(t) => t.rsplit('.').next().unwrap_or_default().to_owned(),
        None => action.clone(),
    };
    let (method_name, path) = (method.as_str().to_owned(), uri.path().to_owned());
    let seen =
        strict::Seen { service: &service, op: &op, params: &params, json: &json, path: &path, method: &method_name };
    if let Some((_, code, message)) = st.strict.before(&seen) {
        let (status, answer, body) = strict::error_answer(&service, target.is_some(), 400, code, &message);
        st.calls.lock().unwrap().push(record(status, body, false));
        return answer;
    }
    let emulate = st.global_tables.load(std::sync::atomic::Ordering::SeqCst);
    // The region of the call, from its SigV4 credential scope.
    let region = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(2))
        .unwrap_or_default()
        .to_owned();
    let table = (region.clone(), json["TableName"].as_str().unwrap_or_default().to_owned());
    if emulate {
        match target.as_deref() {
            Some("DynamoDB_20120810.UpdateTable") => {
                let mut r = st.replicas.lock().unwrap();
                for u in json["ReplicaUpdates"].as_array().into_iter().flatten() {
                    if let Some(region) = u["Create"]["RegionName"].as_str() {
                        r.entry(table.clone()).or_default().insert(region.to_owned());
                    }
                    if let Some(region) = u["Delete"]["RegionName"].as_str() {
                        r.entry(table.clone()).or_default().remove(region);
                    }
                }
            }
            Some("DynamoDB_20120810.DeleteTable") => {
                st.replicas.lock().unwrap().remove(&table);
            }
            _ => {}
        }
        // A replica's own continuous backups, answered for the replica table moto never made.
        let is_replica = st.replicas.lock().unwrap().iter().any(|((_, t), rs)| *t == table.1 && rs.contains(&region));
        let backups = match target.as_deref() {
            Some("DynamoDB_20120810.UpdateContinuousBackups") if is_replica => {
                let on =
                    json["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"].as_bool().unwrap_or(false);
                st.replica_pitr.lock().unwrap().insert(table.clone(), on);
                Some(on)
            }
            Some("DynamoDB_20120810.DescribeContinuousBackups") if is_replica => {
                Some(st.replica_pitr.lock().unwrap().get(&table).copied().unwrap_or(false))
            }
            _ => None,
        };
        if let Some(on) = backups {
            let status = if on { "ENABLED" } else { "DISABLED" };
            let answer = serde_json::json!({"ContinuousBackupsDescription": {"ContinuousBackupsStatus": "ENABLED",
                "PointInTimeRecoveryDescription": {"PointInTimeRecoveryStatus": status}}})
            .to_string();
            st.calls.lock().unwrap().push(record(200, answer.clone(), false));
            return Response::builder()
                .status(200)
                .header("content-type", "application/x-amz-json-1.0")
                .body(Body::from(answer))
                .expect("response");
        }
    }
    let ecs = st.ecs.load(std::sync::atomic::Ordering::SeqCst);
    let ecs_op =
        target.as_deref().and_then(|t| t.strip_prefix("AmazonEC2ContainerServiceV20141113.")).unwrap_or_default();
    if ecs && matches!(ecs_op, "CreateService" | "UpdateService") {
        let name = json["serviceName"].as_str().or(json["service"].as_str()).unwrap_or_default();
        let name = name.rsplit('/').next().unwrap_or(name).to_owned();
        let mut services = st.ecs_services.lock().unwrap();
        let entry = services.entry(name).or_insert((serde_json::json!({}), None));
        for field in ["deploymentConfiguration", "healthCheckGracePeriodSeconds", "capacityProviderStrategy"] {
            if !json[field].is_null() {
                entry.0[field] = json[field].clone();
            }
        }
        if let Some(td) = json["taskDefinition"].as_str() {
            if entry.1.is_some() && st.ecs_roll_back.swap(false, std::sync::atomic::Ordering::SeqCst) {
                // Rolled back: the old task definition stays PRIMARY.
            } else {
                entry.1 = Some(td.to_owned());
            }
        }
    }
    if method == Method::DELETE && uri.path().starts_with("/2015-03-31/functions/") {
        let left = st.edge_replicas.load(std::sync::atomic::Ordering::SeqCst);
        if left > 0 {
            st.edge_replicas.store(left - 1, std::sync::atomic::Ordering::SeqCst);
            let name = uri.path().rsplit('/').next().unwrap_or_default();
            let body = format!(
                r#"{{"Type":"User","message":"Lambda was unable to delete arn:aws:lambda:us-east-1:123456789012:function:{name}:1 because it is a replicated function. Please see our documentation for Deleting Lambda@Edge Functions and Replicas."}}"#
            );
            st.calls.lock().unwrap().push(record(400, body.clone(), false));
            return Response::builder()
                .status(400)
                .header("x-amzn-errortype", "InvalidParameterValueException")
                .header("content-type", "application/json")
                .body(Body::from(body))
                .expect("response");
        }
    }
    if let Some((status, xml, etag)) = st.vpc_origins.lock().unwrap().answer(&method, &uri, &headers, &body) {
        st.calls.lock().unwrap().push(record(status, xml.clone(), false));
        let mut r = Response::builder().status(status).header("content-type", "text/xml");
        if let Some(e) = etag {
            r = r.header("etag", e);
        }
        return r.body(Body::from(xml)).expect("response");
    }
    if method == Method::DELETE && uri.path().starts_with("/2020-05-31/distribution/") {
        if let Some(id) = uri.path().split('/').nth(3) {
            st.vpc_origins.lock().unwrap().in_use.remove(id);
        }
    }
    // What a distribution's create or update sends that moto drops (see `distributions`).
    let cloudfront_write = (method == Method::POST && uri.path() == "/2020-05-31/distribution")
        || (method == Method::PUT
            && uri.path().starts_with("/2020-05-31/distribution/")
            && uri.path().ends_with("/config"));
    let sent = cloudfront_write.then(|| {
        let text = String::from_utf8_lossy(&body);
        (
            OAC_ID.captures(&text).map(|c| c[1].to_owned()),
            EDGE_FUNCTIONS.find(&text).map(|m| m.as_str().to_owned()),
            vpc_origins::VPC_ORIGIN_CONFIG.find(&text).map(|m| m.as_str().to_owned()),
        )
    });
    let detour = st.detour.lock().unwrap().clone().filter(|_| DETOURED.iter().any(|p| uri.path().starts_with(p)));
    let mut req = st.http.request(method, format!("{}{}", detour.as_deref().unwrap_or(&st.upstream), uri));
    for (k, v) in &headers {
        // The Host header too: it is signed, and moto checks the signature of real keys.
        if k != "content-length" {
            req = req.header(k, v);
        }
    }
    match req.body(body.clone()).send().await {
        Ok(resp) => {
            let status = resp.status();
            let hdrs = resp.headers().clone();
            let mut bytes = resp.bytes().await.unwrap_or_default();
            // EMULATED (moto answers unlike AWS): removing a role that is no longer in the
            // instance profile (a delete retried after a throttled DeleteInstanceProfile) makes
            // moto fail with a 500 (`list.remove`); IAM answers NoSuchEntity, as documented.
            if action == "RemoveRoleFromInstanceProfile" && status == StatusCode::INTERNAL_SERVER_ERROR {
                let answer = "<ErrorResponse><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>The role is \
                              not in the instance profile.</Message></Error><RequestId>proxy</RequestId></ErrorResponse>";
                st.calls.lock().unwrap().push(record(404, answer.to_owned(), false));
                return Response::builder().status(404).body(Body::from(answer)).expect("response");
            }
            // EMULATED (moto answers unlike AWS): GetBucketVersioning comes back with the root
            // `GetBucketVersioningResponse`; S3's is `VersioningConfiguration` (the same content),
            // the only root its SDK reads.
            if status.is_success() && bytes.windows(28).any(|w| w == b"<GetBucketVersioningResponse") {
                let text =
                    String::from_utf8_lossy(&bytes).replace("GetBucketVersioningResponse", "VersioningConfiguration");
                bytes = Bytes::from(text);
            }
            if status.is_success() && uri.path().starts_with("/2020-05-31/distribution") {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let id = if uri.path() == "/2020-05-31/distribution" {
                    DISTRIBUTION_ID.captures(&text).map(|c| c[1].to_owned())
                } else {
                    uri.path().split('/').nth(3).map(str::to_owned)
                };
                if let Some(id) = id {
                    let mut kept = st.distributions.lock().unwrap();
                    if let Some(sent) = sent {
                        let vpc = sent
                            .2
                            .as_deref()
                            .and_then(|x| vpc_origins::VPC_ORIGIN_CONFIG.captures(x))
                            .map(|c| c[1].to_owned());
                        let mut emulated = st.vpc_origins.lock().unwrap();
                        match vpc {
                            Some(v) => emulated.in_use.insert(id.clone(), v),
                            None => emulated.in_use.remove(&id),
                        };
                        kept.insert(id.clone(), sent);
                    }
                    if let Some((oac, edge, vpc)) = kept.get(&id) {
                        let mut text = text;
                        if let Some(vpc) = vpc {
                            text = FIRST_ORIGIN
                                .replace(&text, |c: &regex_lite::Captures<'_>| format!("{}{vpc}", &c[1]))
                                .into_owned();
                        }
                        if let Some(oac) = oac {
                            text = FIRST_ORIGIN
                                .replace(&text, |c: &regex_lite::Captures<'_>| {
                                    format!("{}<OriginAccessControlId>{oac}</OriginAccessControlId>", &c[1])
                                })
                                .into_owned();
                        }
                        if let Some(edge) = edge {
                            text = if EDGE_FUNCTIONS.is_match(&text) {
                                EDGE_FUNCTIONS.replace(&text, regex_lite::NoExpand(edge)).into_owned()
                            } else {
                                text.replacen("</DefaultCacheBehavior>", &format!("{edge}</DefaultCacheBehavior>"), 1)
                            };
                        }
                        bytes = Bytes::from(text);
                    }
                }
            }
            if emulate && status.is_success() && target.as_deref() == Some("DynamoDB_20120810.DescribeTable") {
                let replicas = st.replicas.lock().unwrap().get(&table).cloned().unwrap_or_default();
                if let Ok(mut answer) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                    if !replicas.is_empty() {
                        answer["Table"]["Replicas"] = replicas
                            .iter()
                            .map(|r| serde_json::json!({"RegionName": r, "ReplicaStatus": "ACTIVE"}))
                            .collect();
                        bytes = Bytes::from(answer.to_string());
                    }
                }
            }
            if ecs && status.is_success() && matches!(ecs_op, "CreateService" | "UpdateService" | "DescribeServices") {
                if let Ok(mut answer) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                    let services = st.ecs_services.lock().unwrap();
                    let fix = |svc: &mut serde_json::Value| {
                        let name = svc["serviceName"].as_str().unwrap_or_default().to_owned();
                        let Some((conf, td)) = services.get(&name) else { return };
                        for (field, value) in conf.as_object().into_iter().flatten() {
                            svc[field] = value.clone();
                        }
                        let td =
                            td.clone().unwrap_or_else(|| svc["taskDefinition"].as_str().unwrap_or_default().to_owned());
                        let n = svc["desiredCount"].clone();
                        svc["taskDefinition"] = serde_json::json!(td);
                        svc["runningCount"] = n.clone();
                        svc["pendingCount"] = serde_json::json!(0);
                        svc["deployments"] = serde_json::json!([{
                            "id": "ecs-svc/emulated", "status": "PRIMARY", "taskDefinition": td,
                            "desiredCount": n, "runningCount": n, "pendingCount": 0, "rolloutState": "COMPLETED",
                        }]);
                    };
                    if answer["service"].is_object() {
                        fix(&mut answer["service"]);
                    }
                    for svc in answer["services"].as_array_mut().into_iter().flatten() {
                        fix(svc);
                    }
                    bytes = Bytes::from(answer.to_string());
                }
            }
            if status.is_success() {
                st.strict.after(&seen, &mut bytes);
            }
            st.calls.lock().unwrap().push(record(status.as_u16(), String::from_utf8_lossy(&bytes).into_owned(), false));
            let mut out = Response::builder().status(status.as_u16());
            for (k, v) in &hdrs {
                if k != "content-length" && k != "transfer-encoding" {
                    out = out.header(k, v);
                }
            }
            out.body(Body::from(bytes)).expect("response")
        }
        Err(e) => Response::builder().status(502).body(Body::from(e.to_string())).expect("response"),
    }
}

static OAC_ID: LazyLock<regex_lite::Regex> =
    LazyLock::new(|| regex_lite::Regex::new(r"<OriginAccessControlId>([^<]*)</OriginAccessControlId>").unwrap());
static EDGE_FUNCTIONS: LazyLock<regex_lite::Regex> = LazyLock::new(|| {
    regex_lite::Regex::new(
        r"(?s)<LambdaFunctionAssociations>.*?</LambdaFunctionAssociations>|<LambdaFunctionAssociations/>",
    )
    .unwrap()
});
static DISTRIBUTION_ID: LazyLock<regex_lite::Regex> =
    LazyLock::new(|| regex_lite::Regex::new(r"<Id>([A-Z0-9]+)</Id>").unwrap());
/// The first origin, up to its domain name (where AWS puts the access control id after).
static FIRST_ORIGIN: LazyLock<regex_lite::Regex> =
    LazyLock::new(|| regex_lite::Regex::new(r"(?s)(<Origin>.*?</DomainName>)").unwrap());

/// The variables a person must choose (prod.toml gives them no default), as an operator gives
/// them; [`cli`] passes them in the environment.
pub fn chosen() -> std::collections::BTreeMap<String, String> {
    [("alert_email", "oncall@example.net"), ("finops_email", "finops@example.net")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The CLI, talking to `endpoint`, from the repository root.
pub fn cli(endpoint: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_provisioner"));
    c.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_PROFILE")
        .env("NO_COLOR", "1")
        // After a forced unlock, AWS's lists are waited for this long: STRICT MODE's lag
        // (`strict::Strict::window`) is 1.5 s.
        .env("PROVISIONER_SETTLE_SECS", "2")
        // The repository's pins were never verified (no machine here reaches Docker Hub): the
        // tests accept them, as an operator would say so with --accept-unverified-pins.
        .env("PROVISIONER_ACCEPT_UNVERIFIED_PINS", "1")
        // The tests' stacks widen access on every first apply (rules, statements): approved as
        // an unattended pipeline would, except where a test removes it to see apply stop.
        .env("PROVISIONER_APPROVE_BROADENING", "1")
        .stdin(Stdio::null());
    for (k, v) in chosen() {
        c.env(format!("PROVISIONER_VAR_{k}"), v);
    }
    if let Some(r) = REGISTRY.get() {
        c.env("PROVISIONER_REGISTRY_ENDPOINT", &r.url);
    }
    c
}

/// Runs the CLI to the end: (exit code, stdout, stderr).
pub fn run(endpoint: &str, args: &[&str]) -> (i32, String, String) {
    let out = cli(endpoint).args(args).output().expect("provisioner runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every resource of every network kind carrying `provisioner:stack = stack`, as
/// `(provisioner:id, aws id)`; deleted NAT gateways and endpoints do not count.
pub async fn owned(ec2: &aws_sdk_ec2::Client, stack: &str) -> Vec<(String, String)> {
    use aws_sdk_ec2::types::{Filter, Tag};
    let f = || Filter::builder().name("tag:provisioner:stack").values(stack).build();
    let idt = |tags: &[Tag]| {
        tags.iter().find(|t| t.key() == Some("provisioner:id")).and_then(|t| t.value()).unwrap_or("?").to_owned()
    };
    let mut out = Vec::new();
    for v in ec2.describe_vpcs().filters(f()).send().await.unwrap().vpcs() {
        out.push((idt(v.tags()), v.vpc_id().unwrap().to_owned()));
    }
    for s in ec2.describe_subnets().filters(f()).send().await.unwrap().subnets() {
        out.push((idt(s.tags()), s.subnet_id().unwrap().to_owned()));
    }
    for g in ec2.describe_internet_gateways().filters(f()).send().await.unwrap().internet_gateways() {
        out.push((idt(g.tags()), g.internet_gateway_id().unwrap().to_owned()));
    }
    for a in ec2.describe_addresses().filters(f()).send().await.unwrap().addresses() {
        out.push((idt(a.tags()), a.allocation_id().unwrap().to_owned()));
    }
    for n in ec2.describe_nat_gateways().filter(f()).send().await.unwrap().nat_gateways() {
        let state = n.state().map(|s| s.as_str().to_ascii_lowercase()).unwrap_or_default();
        if state != "deleted" && state != "deleting" {
            out.push((idt(n.tags()), n.nat_gateway_id().unwrap().to_owned()));
        }
    }
    for t in ec2.describe_route_tables().filters(f()).send().await.unwrap().route_tables() {
        out.push((idt(t.tags()), t.route_table_id().unwrap().to_owned()));
    }
    for g in ec2.describe_security_groups().filters(f()).send().await.unwrap().security_groups() {
        out.push((idt(g.tags()), g.group_id().unwrap().to_owned()));
    }
    for e in ec2.describe_vpc_endpoints().filters(f()).send().await.unwrap().vpc_endpoints() {
        let state = e.state().map(|s| s.as_str().to_ascii_lowercase()).unwrap_or_default();
        if state != "deleted" && state != "deleting" {
            out.push((idt(e.tags()), e.vpc_endpoint_id().unwrap().to_owned()));
        }
    }
    out
}

/// Panics naming any `provisioner:id` held by more than one resource.
pub fn assert_no_duplicates(owned: &[(String, String)], when: &str) {
    let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (addr, id) in owned {
        seen.entry(addr).or_default().push(id);
    }
    let dups: Vec<_> = seen.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(dups.is_empty(), "{when}: duplicates {dups:?}");
}

/// The addresses a stack file declares (`[kind.name]` headers).
pub fn declared(src: &str) -> BTreeSet<String> {
    src.lines()
        .filter_map(|l| l.trim().strip_prefix('[')?.strip_suffix(']').map(str::to_owned))
        .filter(|h| h.contains('.') && !h.starts_with("stack") && !h.starts_with("variables"))
        .collect()
}

/// The `provisioner:id` a create call tags its resource with, in any protocol's spelling: query
/// parameters (`Tags.member.1.Key` / `.Value`, `TagSpecification.1.Tag.1.Key`), JSON lists of
/// `{Key, Value}` or `{key, value}`, or a JSON map (`tags: {"provisioner:id": ...}`).
pub fn tagged_address(c: &Call) -> Option<String> {
    for (k, v) in &c.params {
        if v == "provisioner:id" {
            if let Some(prefix) = k.strip_suffix(".Key") {
                return c.params.get(&format!("{prefix}.Value")).cloned();
            }
        }
    }
    fn find(v: &serde_json::Value) -> Option<String> {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(x) = m.get("provisioner:id").and_then(|x| x.as_str()) {
                    return Some(x.to_owned());
                }
                let key = m.get("Key").or_else(|| m.get("key")).and_then(|x| x.as_str());
                if key == Some("provisioner:id") {
                    return m.get("Value").or_else(|| m.get("value")).and_then(|x| x.as_str()).map(str::to_owned);
                }
                m.values().find_map(find)
            }
            serde_json::Value::Array(a) => a.iter().find_map(find),
            _ => None,
        }
    }
    serde_json::from_str::<serde_json::Value>(&c.body).ok().as_ref().and_then(find)
}

/// How many resources each address was given by the successful create calls among `calls`
/// (calls that make a resource, not tags, rules or revisions). moto makes a second load balancer
/// or replaces an ECS service where AWS refuses a duplicate name, so "never two resources per
/// address" is checked here, on what was asked, as well as on what exists.
pub fn creates_per_address(calls: &[Call]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in calls.iter().filter(|c| !c.faulted && c.status < 300) {
        let op = c.action.rsplit('.').next().unwrap_or(&c.action);
        let makes = (op.starts_with("Create") && !matches!(op, "CreateTags" | "CreateRoute" | "CreateLogStream"))
            || matches!(op, "RunInstances" | "AllocateAddress");
        if let (true, Some(a)) = (makes, tagged_address(c)) {
            *out.entry(a).or_default() += 1;
        }
    }
    out
}

/// The SDK configuration of an endpoint (moto, or the proxy) in `region` with credentials
/// `(key id, secret, session token)`.
pub fn conf_of(endpoint: &str, region: &'static str, creds: (&str, &str, Option<&str>)) -> aws_config::SdkConfig {
    use aws_sdk_ec2::config::{Credentials, SharedCredentialsProvider};
    let c = Credentials::new(creds.0, creds.1, creds.2.map(str::to_owned), None, "test");
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(c))
        .build()
}

/// An event of the services' model, as the producer would publish it.
pub fn envelope(unid: &str, now_us: i64, arrival: i64) -> quake::model::Envelope {
    let event = quake::model::Event {
        unid: unid.into(),
        time_us: now_us,
        lastupdate_us: now_us,
        lat: 1.0,
        lon: 2.0,
        depth_km: 3.0,
        mag: Some(4.0),
        magtype: None,
        region: Some("TEST".into()),
        auth: None,
        evtype: None,
        source_id: None,
        source_catalog: None,
    };
    quake::model::Envelope { action: quake::model::Action::Create, arrival, source: "t".into(), event }
}

/// moto's ECR password for its default account (`GetAuthorizationToken` gives `AWS:<this>`).
pub const ECR_PASSWORD: &str = "123456789012-auth-token";

/// CNCF distribution (Debian's `docker-registry`) on a free port with its own configuration:
/// filesystem storage in a temporary directory, deletes enabled, htpasswd user `AWS` with
/// moto's ECR password. moto has the ECR API but no registry endpoint; the provisioner is
/// pointed here with `PROVISIONER_REGISTRY_ENDPOINT` (see [`cli`]). One per test process,
/// started on first use: any test's repositories fit beside any other's.
pub struct LocalRegistry {
    pub url: String,
    /// `host:port`, as skopeo names it.
    pub host: String,
    /// Its wrapper's stdin: when this process exits, the pipe closes and the wrapper stops the
    /// registry and removes its directory, so no registry outlives its tests.
    _alive: Mutex<std::process::ChildStdin>,
}

static REGISTRY: std::sync::OnceLock<LocalRegistry> = std::sync::OnceLock::new();

/// The test process's registry, started on first use.
pub fn registry() -> &'static LocalRegistry {
    REGISTRY.get_or_init(|| {
        let bin = "/usr/bin/docker-registry";
        assert!(std::path::Path::new(bin).exists(), "{bin} not found: run `make deps` (Debian package docker-registry)");
        let dir = tempfile::tempdir().unwrap().keep();
        let hash = bcrypt::hash(ECR_PASSWORD, 4).unwrap();
        std::fs::write(dir.join("htpasswd"), format!("AWS:{hash}\n")).unwrap();
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n  secret: test-{port}\nauth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n",
            root = dir.join("data").display(),
            htpasswd = dir.join("htpasswd").display(),
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        // Never waited for: the wrapper ends by itself when this process's end closes its stdin.
        #[allow(clippy::zombie_processes)]
        let mut child = Command::new("sh")
            .args(["-c", &format!("{bin} serve \"$0/config.yml\" & read _; kill $!; wait; rm -rf \"$0\"")])
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry starts");
        let alive = child.stdin.take().unwrap();
        let host = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&host).is_err() {
            assert!(Instant::now() < deadline, "docker-registry did not listen on {host}");
            std::thread::sleep(Duration::from_millis(20));
        }
        LocalRegistry { url: format!("http://{host}"), host, _alive: Mutex::new(alive) }
    })
}

impl LocalRegistry {
    /// A registry client signed in as moto's ECR token would sign it in.
    pub fn client(&self) -> provisioner::image::registry::Registry {
        provisioner::image::registry::Registry::new(&self.url, Some(&base64_of(&format!("AWS:{ECR_PASSWORD}"))))
    }

    /// `skopeo` `args` (credentials and TLS flags are the caller's: `AWS:<ECR_PASSWORD>`).
    pub fn skopeo(args: &[&str]) -> String {
        let out = Command::new("skopeo").args(args).output().expect("skopeo runs");
        assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Standard base64 (what HTTP basic authentication and ECR's token use).
pub fn base64_of(s: &str) -> String {
    aws_smithy_types::base64::encode(s.as_bytes())
}

/// The `quake` binary of this build (`make test` builds every binary of the workspace first);
/// built here when a test runs alone.
pub fn quake_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap().to_owned();
    let bin = dir.join("quake");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "-p", "quake", "--bin", "quake"])
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .status()
            .unwrap();
        assert!(st.success(), "cargo build -p quake");
    }
    bin
}
