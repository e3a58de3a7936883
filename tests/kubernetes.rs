//! The `kubernetes` actuator, leader election and KServe InferenceServices,
//! against a fake API server that speaks the real paths, JSON and watch
//! streams; sluice uses the real kube-rs client against it. The "pods" are
//! real upstreams on 127.0.0.1-3, one port, as pod IPs on a cluster.

mod support;

use std::time::{Duration, Instant};
use support::fake_kube::{deployment, endpoint_slice, EndpointSpec, FakeKube};
use support::upstream::{pods_on_one_port, Upstream};
use support::{client, eventually, get_json, get_text, metric, poll_until, send, TestGateway};

const NS: &str = "ml";
const DEPLOYMENT: &str = "model-predictor";
const HOST: &str = "model.ml.example.com";

/// A gateway config for one `kubernetes` service and the fake's `listener`.
fn config(kubeconfig: &std::path::Path, port: u16, service: &str, kubernetes: &str) -> String {
    format!(
        r#"
listen: 127.0.0.1:0
admin: 127.0.0.1:0
autoscaler:
  tickInterval: 1s
  stableWindow: 6s
  scaleToZeroGracePeriod: 1s
kubernetes:
  kubeconfig: {kubeconfig}
{kubernetes}
services:
  - name: model
    namespace: {NS}
    backend:
      kubernetes: {{ deployment: {DEPLOYMENT}, port: {port} }}
{service}"#,
        kubeconfig = kubeconfig.display()
    )
}

fn slice(endpoints: &[EndpointSpec], port: u16) -> serde_json::Value {
    endpoint_slice(NS, DEPLOYMENT, "model-predictor-x7k2p", endpoints, port)
}

fn ip(pod: &Upstream) -> String {
    pod.addr.ip().to_string()
}

/// A fake cluster: the model's Deployment, its pods (real upstreams on
/// these loopback IPs, one port) listed in its slice, and a kubeconfig.
struct Setup {
    pods: Vec<Upstream>,
    port: u16,
    fake: FakeKube,
    kubeconfig: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn setup(ips: &[&str], replicas: i64, states: &[State]) -> Setup {
    let pods = pods_on_one_port(ips).await;
    let fake = FakeKube::start().await;
    fake.apply(deployment(NS, DEPLOYMENT, replicas));
    apply_pods(&fake, &pods, states);
    let dir = tempfile::tempdir().unwrap();
    Setup {
        port: pods[0].addr.port(),
        kubeconfig: fake.write_kubeconfig(0, dir.path()),
        pods,
        fake,
        _dir: dir,
    }
}

type State = fn(&str, &str) -> EndpointSpec;
const READY: State = EndpointSpec::ready;
const STARTING: State = EndpointSpec::not_ready;
const LEAVING: State = EndpointSpec::terminating;

/// The service's slice: the first pods, named model-a, model-b, ..., in
/// these states, on the pods' port.
fn apply_pods(fake: &FakeKube, pods: &[Upstream], states: &[State]) {
    let names = ["model-a", "model-b", "model-c", "model-d"];
    let endpoints: Vec<EndpointSpec> = pods
        .iter()
        .zip(states)
        .zip(names)
        .map(|((pod, state), name)| state(&ip(pod), name))
        .collect();
    fake.apply(slice(&endpoints, pods[0].addr.port()));
}

async fn service_status(gateway: &TestGateway) -> serde_json::Value {
    let status = get_json(gateway.admin_url("/status")).await;
    status["services"][0].clone()
}

/// Waits for the autoscaler's first decision on `pods` listed, ready pods:
/// to keep them.
async fn decided_on(gateway: &TestGateway, pods: u64) {
    eventually(
        Duration::from_secs(10),
        "a decision on the listed pods",
        || async {
            let status = service_status(gateway).await;
            status["readyPods"] == pods && status["desired"] == pods
        },
    )
    .await;
}

async fn ready_pods(gateway: &TestGateway) -> u64 {
    service_status(gateway).await["readyPods"]
        .as_u64()
        .unwrap_or(0)
}

/// `clients` closed loops of `/slow?ms=200` until `stop` is set.
fn load(
    gateway: &TestGateway,
    clients: usize,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<u16>>> {
    (0..clients)
        .map(|_| {
            let url = gateway.url("/slow?ms=200");
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = client();
                let mut codes = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline
                {
                    let response = send(client.get(&url).header("host", HOST)).await;
                    codes.push(response.status().as_u16());
                }
                codes
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_through_the_subresource_and_balances_over_the_endpoint_slices() {
    let Setup {
        pods,
        port,
        fake,
        kubeconfig,
        _dir,
    } = setup(&["127.0.0.1", "127.0.0.2", "127.0.0.3"], 1, &[READY]).await;
    let gateway = TestGateway::start(&config(
        &kubeconfig,
        port,
        "    minReplicas: 1\n    maxReplicas: 3\n",
        "",
    ))
    .await;
    eventually(
        Duration::from_secs(10),
        "the ready pod from the slice",
        || async { ready_pods(&gateway).await == 1 },
    )
    .await;

    // Three clients on a model that takes one request at a time: 3 replicas.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients = load(&gateway, 3, &stop);
    eventually(Duration::from_secs(15), "3 replicas written", || async {
        fake.replicas(NS, DEPLOYMENT) == Some(3)
    })
    .await;
    // The Deployment's new pods come up: the balancer follows the slice.
    apply_pods(&fake, &pods, &[READY, READY, STARTING]);
    eventually(Duration::from_secs(5), "2 ready pods", || async {
        ready_pods(&gateway).await == 2
    })
    .await;
    assert_eq!(pods[2].hits(), 0, "a pod that is not ready gets nothing");
    apply_pods(&fake, &pods, &[READY, READY, READY]);
    eventually(
        Duration::from_secs(5),
        "every pod gets requests",
        || async { pods.iter().all(|p| p.hits() > 0) },
    )
    .await;
    let replicas = service_status(&gateway).await["replicas"].clone();
    let names: Vec<&str> = replicas
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["model-a", "model-b", "model-c"]);

    // A pod being removed gets no new requests.
    apply_pods(&fake, &pods, &[READY, READY, LEAVING]);
    eventually(Duration::from_secs(5), "2 ready pods", || async {
        ready_pods(&gateway).await == 2
    })
    .await;
    let before = pods[2].hits();
    let served = pods[0].hits() + pods[1].hits();
    eventually(
        Duration::from_secs(10),
        "10 more requests served",
        || async { pods[0].hits() + pods[1].hits() >= served + 10 },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        let codes = client.await.unwrap();
        assert!(codes.iter().all(|&c| c == 200), "codes: {codes:?}");
    }
    // At most the requests already on their way when the slice changed.
    assert!(
        pods[2].hits() <= before + 1,
        "a terminating pod got new requests"
    );

    // The load is gone: back to 1 replica, in steps (at most halving).
    eventually(Duration::from_secs(40), "1 replica written", || async {
        fake.replicas(NS, DEPLOYMENT) == Some(1)
    })
    .await;
    let writes: Vec<(i64, i64, usize)> = fake
        .scale_writes()
        .iter()
        .map(|w| (w.from, w.to, w.listener))
        .collect();
    assert_eq!(writes.first(), Some(&(1, 3, 0)), "writes: {writes:?}");
    assert!(
        writes.iter().all(|(from, to, _)| from != to),
        "a count is written only when it changes: {writes:?}"
    );
    assert!(
        writes.windows(2).all(|w| w[0].1 == w[1].0),
        "each write starts from the last: {writes:?}"
    );
    let text = get_text(gateway.admin_url("/metrics")).await;
    assert_eq!(
        metric(&text, "sluice_kubernetes_scale_writes_total"),
        Some(writes.len() as f64)
    );
    gateway.gateway.shutdown(Duration::from_secs(5)).await;
    assert_eq!(
        fake.replicas(NS, DEPLOYMENT),
        Some(1),
        "stopping the gateway leaves the Deployment as it is"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_write_is_read_again_and_retried() {
    let Setup {
        pods: _pods,
        port,
        fake,
        kubeconfig,
        _dir,
    } = setup(&["127.0.0.1"], 1, &[READY]).await;
    // Someone else writes first, twice.
    fake.conflict_next_writes(2);
    let gateway = TestGateway::start(&config(
        &kubeconfig,
        port,
        "    minReplicas: 2\n    maxReplicas: 2\n",
        "",
    ))
    .await;
    eventually(Duration::from_secs(10), "2 replicas written", || async {
        fake.replicas(NS, DEPLOYMENT) == Some(2)
    })
    .await;
    let puts = fake
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::PUT && r.path_and_query.contains("/scale"))
        .count();
    assert_eq!(puts, 3, "two conflicts, then the write");
    drop(gateway);
}

const LEASE_NS: &str = "sluice-system";
const LEASE: &str = "sluice-autoscaler";

fn election(identity: &str) -> String {
    format!(
        "  leaderElection: {{ enabled: true, identity: {identity}, leaseNamespace: {LEASE_NS}, \
         leaseDuration: 3s, renewDeadline: 2s, retryPeriod: 500ms }}\n"
    )
}

async fn is_leader(gateway: &TestGateway) -> bool {
    get_json(gateway.admin_url("/status")).await["leader"]["isLeader"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_elect_one_leader_which_alone_scales_and_another_takes_over() {
    let pods = pods_on_one_port(&["127.0.0.1"]).await;
    let port = pods[0].addr.port();
    let fake = FakeKube::start().await;
    fake.add_listener().await;
    fake.apply(deployment(NS, DEPLOYMENT, 1));
    apply_pods(&fake, &pods, &[READY]);
    let dir = tempfile::tempdir().unwrap();
    let service = |min: u32| format!("    minReplicas: {min}\n    maxReplicas: 4\n");
    // Gateway i talks to listener i, so the fake tells their writes apart.
    let yaml = |i: usize, min: u32| {
        let kubeconfig = fake.write_kubeconfig(i, dir.path());
        config(
            &kubeconfig,
            port,
            &service(min),
            &election(["gw-a", "gw-b"][i]),
        )
    };
    let gateways = [
        TestGateway::start(&yaml(0, 2)).await,
        TestGateway::start(&yaml(1, 2)).await,
    ];

    // One leader, and only it writes.
    eventually(Duration::from_secs(10), "2 replicas written", || async {
        fake.replicas(NS, DEPLOYMENT) == Some(2)
    })
    .await;
    let holder = fake.lease_holder(LEASE_NS, LEASE).expect("a lease holder");
    let leader = ["gw-a", "gw-b"].iter().position(|g| *g == holder).unwrap();
    assert!(fake.scale_writes().iter().all(|w| w.listener == leader));
    eventually(
        Duration::from_secs(5),
        "status shows the one leader",
        || async { is_leader(&gateways[leader]).await && !is_leader(&gateways[1 - leader]).await },
    )
    .await;
    let status = get_json(gateways[1 - leader].admin_url("/status")).await;
    assert_eq!(status["leader"]["holder"], holder.as_str());
    let text = get_text(gateways[leader].admin_url("/metrics")).await;
    assert_eq!(metric(&text, "sluice_leader"), Some(1.0));
    let text = get_text(gateways[1 - leader].admin_url("/metrics")).await;
    assert_eq!(metric(&text, "sluice_leader"), Some(0.0));

    // Someone else takes the lease: the leader stops at once, and nobody
    // scales until that lease has gone unrenewed for a whole lease duration.
    let mut lease = fake
        .get("coordination.k8s.io/v1", "Lease", LEASE_NS, LEASE)
        .unwrap();
    lease["spec"]["holderIdentity"] = "intruder".into();
    let taken_at = Instant::now();
    fake.apply(lease);
    eventually(Duration::from_secs(3), "neither gateway leads", || async {
        !is_leader(&gateways[0]).await && !is_leader(&gateways[1]).await
    })
    .await;
    let writes_before = fake.scale_writes().len();
    for (i, gateway) in gateways.iter().enumerate() {
        std::fs::write(&gateway.config_path, yaml(i, 3)).unwrap();
        gateway.gateway.reload().await.unwrap();
    }
    eventually(
        Duration::from_secs(15),
        "3 replicas written by a new leader",
        || async { fake.replicas(NS, DEPLOYMENT) == Some(3) },
    )
    .await;
    let writes = fake.scale_writes();
    let takeover = &writes[writes_before];
    assert!(
        takeover.at.duration_since(taken_at) >= Duration::from_secs(3),
        "a write {:?} after the lease was taken, before it expired",
        takeover.at.duration_since(taken_at)
    );
    let new_holder = fake.lease_holder(LEASE_NS, LEASE).unwrap();
    let new_leader = ["gw-a", "gw-b"]
        .iter()
        .position(|g| *g == new_holder)
        .unwrap();
    assert!(writes[writes_before..]
        .iter()
        .all(|w| w.listener == new_leader));

    // The leader stops (and hands the lease back): the other one leads.
    let [a, b] = gateways;
    let (stopping, staying) = if new_leader == 0 { (a, b) } else { (b, a) };
    stopping.gateway.shutdown(Duration::from_secs(5)).await;
    eventually(
        Duration::from_secs(10),
        "the other gateway leads",
        || async { is_leader(&staying).await },
    )
    .await;
    assert_eq!(
        fake.lease_holder(LEASE_NS, LEASE).as_deref(),
        Some(["gw-a", "gw-b"][1 - new_leader])
    );
    std::fs::write(&staying.config_path, yaml(1 - new_leader, 1)).unwrap();
    staying.gateway.reload().await.unwrap();
    eventually(Duration::from_secs(10), "1 replica written", || async {
        fake.replicas(NS, DEPLOYMENT) == Some(1)
    })
    .await;
    assert_eq!(fake.scale_writes().last().unwrap().listener, 1 - new_leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_holding_a_request_at_zero_raises_the_deployment_from_zero_only() {
    let pods = pods_on_one_port(&["127.0.0.1"]).await;
    let port = pods[0].addr.port();
    let fake = FakeKube::start().await;
    fake.apply(deployment(NS, DEPLOYMENT, 0));
    fake.apply(slice(&[], port));
    // An intruder leads (and keeps renewing), so this gateway only follows.
    let lease = serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE, "namespace": LEASE_NS},
        "spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 3600},
    });
    fake.apply(lease);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.write_kubeconfig(0, dir.path());
    let gateway = TestGateway::start(&config(
        &kubeconfig,
        port,
        "    minReplicas: 0\n    maxReplicas: 4\n",
        &election("gw-a"),
    ))
    .await;
    let request = {
        let url = gateway.url("/slow?ms=10");
        tokio::spawn(async move { send(client().get(url).header("host", HOST)).await.status() })
    };
    eventually(
        Duration::from_secs(10),
        "raised from zero to one",
        || async { fake.replicas(NS, DEPLOYMENT) == Some(1) },
    )
    .await;
    // The pod comes up; the held request is answered.
    apply_pods(&fake, &pods, &[READY]);
    assert_eq!(request.await.unwrap(), 200);
    assert!(!is_leader(&gateway).await);

    // At any other count, a follower writes nothing, held requests or not.
    fake.apply(deployment(NS, DEPLOYMENT, 2));
    fake.apply(slice(&[], port));
    eventually(Duration::from_secs(5), "no ready pod", || async {
        ready_pods(&gateway).await == 0
    })
    .await;
    let writes = fake.scale_writes().len();
    let url = gateway.url("/slow?ms=10");
    let scale_reads = || {
        let requests = fake.requests();
        requests
            .iter()
            .filter(|r| r.method == http::Method::GET && r.path_and_query.contains("/scale"))
            .count()
    };
    let reads = scale_reads();
    let held =
        tokio::spawn(async move { send(client().get(url).header("host", HOST)).await.status() });
    // It asks again every second while it holds the request: twice, then.
    eventually(Duration::from_secs(10), "two activation reads", || async {
        scale_reads() >= reads + 2
    })
    .await;
    assert_eq!(fake.scale_writes().len(), writes);
    assert_eq!(fake.replicas(NS, DEPLOYMENT), Some(2));
    apply_pods(&fake, &pods, &[READY]);
    assert_eq!(held.await.unwrap(), 200);
}

/// The InferenceService fixture (as kubectl prints it), pointed at `port`.
fn inference_service(port: u16, max_replicas: u32) -> serde_json::Value {
    let text = std::fs::read_to_string("tests/fixtures/kubernetes/inferenceservice.json").unwrap();
    let mut isvc: serde_json::Value = serde_json::from_str(&text).unwrap();
    isvc["metadata"]["annotations"]["sluice.dev/port"] = port.to_string().into();
    isvc["spec"]["predictor"]["maxReplicas"] = max_replicas.into();
    isvc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inference_services_that_opt_in_are_served_updated_and_removed() {
    const KS: &str = "kserve-inference";
    let pods = pods_on_one_port(&["127.0.0.1"]).await;
    let port = pods[0].addr.port();
    let fake = FakeKube::start().await;
    fake.apply(deployment(KS, "redwine-week4-predictor", 1));
    fake.apply(endpoint_slice(
        KS,
        "redwine-week4-predictor",
        "redwine-week4-predictor-7xq2k",
        &[EndpointSpec::ready(
            &ip(&pods[0]),
            "redwine-week4-predictor-0",
        )],
        port,
    ));
    // One that did not opt in.
    let mut other = inference_service(port, 8);
    other["metadata"]["name"] = "iris".into();
    other["metadata"]["annotations"] = serde_json::json!({});
    fake.apply(other);
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.write_kubeconfig(0, dir.path());
    // Started while the API server is down: not ready until it has listed
    // the InferenceServices, so that no request meets a 404 it should not.
    fake.stop().await;
    let gateway = TestGateway::start(&format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nkubernetes:\n  kubeconfig: {}\n  inferenceServices: {{ enabled: true }}\n",
        kubeconfig.display()
    ))
    .await;
    let response = send(client().get(gateway.admin_url("/readyz"))).await;
    assert_eq!(response.status(), 503);
    assert_eq!(
        response.text().await.unwrap(),
        "starting\nInferenceServices not listed yet\n"
    );
    fake.restart().await;
    eventually(Duration::from_secs(10), "ready once listed", || async {
        send(client().get(gateway.admin_url("/readyz")))
            .await
            .status()
            == 200
    })
    .await;

    fake.apply(inference_service(port, 8));
    let served = poll_until(
        Duration::from_secs(10),
        "the InferenceService served",
        || async {
            let status = get_json(gateway.admin_url("/status")).await;
            match status["services"].as_array().map(Vec::as_slice) {
                Some([one]) if one["readyPods"] == 1 => Ok(one.clone()),
                _ => Err(status["services"].to_string()),
            }
        },
    )
    .await;
    assert_eq!(served["name"], "redwine-week4");
    assert_eq!(served["namespace"], KS);
    assert_eq!(
        (
            served["minReplicas"].as_u64(),
            served["maxReplicas"].as_u64()
        ),
        (Some(1), Some(8))
    );
    assert_eq!(served["containerConcurrency"], 2);
    // The tutorial's host, and the one in KServe's own status.url.
    for host in [
        "redwine-week4.kserve-inference.example.com",
        "redwine-week4-kserve-inference.example.com",
    ] {
        let response = send(
            client()
                .get(gateway.url("/v1/models/redwine-week4"))
                .header("host", host),
        )
        .await;
        assert_eq!(response.status(), 200, "{host}");
    }
    assert!(pods[0].hits() >= 2);

    // Changed: the new maxReplicas applies in place.
    fake.apply(inference_service(port, 3));
    eventually(Duration::from_secs(10), "maxReplicas 3", || async {
        service_status(&gateway).await["maxReplicas"] == 3
    })
    .await;

    // Changed into something sluice cannot serve: it keeps its last valid
    // settings rather than going dark.
    let mut invalid = inference_service(port, 3);
    invalid["spec"]["predictor"]["minReplicas"] = 5.into();
    fake.apply(invalid);
    // Events come in order: once a later one is served, the edit was seen.
    let mut marker = inference_service(port, 2);
    marker["metadata"]["name"] = "marker".into();
    fake.apply(marker);
    let status = poll_until(
        Duration::from_secs(10),
        "the later InferenceService",
        || async {
            let status = get_json(gateway.admin_url("/status")).await;
            let services = status["services"].as_array().cloned().unwrap_or_default();
            let found = services
                .iter()
                .find(|s| s["name"] == "redwine-week4")
                .cloned();
            found
                .filter(|_| services.len() == 2)
                .ok_or(status["services"].to_string())
        },
    )
    .await;
    assert_eq!(
        (
            status["minReplicas"].as_u64(),
            status["maxReplicas"].as_u64()
        ),
        (Some(1), Some(3))
    );
    fake.delete(
        "serving.kserve.io/v1beta1",
        "InferenceService",
        KS,
        "marker",
    );
    let response = send(
        client()
            .get(gateway.url("/v1/models/redwine-week4"))
            .header("host", "redwine-week4.kserve-inference.example.com"),
    )
    .await;
    assert_eq!(response.status(), 200);

    // Deleted: no longer served; the Deployment is left alone.
    fake.delete(
        "serving.kserve.io/v1beta1",
        "InferenceService",
        KS,
        "redwine-week4",
    );
    eventually(Duration::from_secs(10), "no service", || async {
        get_json(gateway.admin_url("/status")).await["services"] == serde_json::json!([])
    })
    .await;
    let response = send(
        client()
            .get(gateway.url("/"))
            .header("host", "redwine-week4.kserve-inference.example.com"),
    )
    .await;
    assert_eq!(response.status(), 404);
    assert_eq!(fake.replicas(KS, "redwine-week4-predictor"), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_api_server_down_serving_goes_on_and_nothing_is_scaled_down() {
    let Setup {
        pods,
        port,
        fake,
        kubeconfig,
        _dir,
    } = setup(&["127.0.0.1", "127.0.0.2"], 1, &[READY]).await;
    // Idle with minReplicas 0: it would go to zero after 4 s + 1 s.
    let yaml = config(
        &kubeconfig,
        port,
        "    minReplicas: 0\n    maxReplicas: 2\n    stableWindow: 4s\n",
        "",
    );
    let gateway = TestGateway::start(&yaml).await;
    decided_on(&gateway, 1).await;
    fake.bookmark();

    fake.stop().await;
    let readyz = poll_until(
        Duration::from_secs(10),
        "/readyz names the failure",
        || async {
            let response = send(client().get(gateway.admin_url("/readyz"))).await;
            let code = response.status();
            let body = response.text().await.unwrap();
            (code == 200 && body.contains("kubernetes: endpointslices ml/model-predictor"))
                .then_some(body.clone())
                .ok_or(format!("{code} {body}"))
        },
    )
    .await;
    assert!(readyz.starts_with("ready\n"), "{readyz}");
    let text = get_text(gateway.admin_url("/metrics")).await;
    assert_eq!(metric(&text, "sluice_kubernetes_api_reachable"), Some(0.0));
    assert!(
        metric(
            &text,
            "sluice_kubernetes_api_errors_total{operation=\"watch endpointslices\"}"
        )
        .unwrap_or(0.0)
            >= 1.0
    );

    // Idle for longer than it takes to decide zero: still wanting 1.
    // (Without the rule, it would decide 0 here.)
    let down_until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < down_until {
        assert_eq!(service_status(&gateway).await["desired"], 1);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // And the last known pod still serves.
    for _ in 0..5 {
        let response = send(client().get(gateway.url("/slow?ms=1")).header("host", HOST)).await;
        assert_eq!(response.status(), 200);
    }
    // A service added now cannot be listed: the gateway stays ready (the
    // other models are served) and says what it waits for.
    fake.apply(deployment("other", "other", 1));
    let more = "  - name: other\n    namespace: other\n    backend:\n      kubernetes: { deployment: other, port: 9 }\n";
    std::fs::write(&gateway.config_path, format!("{yaml}{more}")).unwrap();
    gateway.gateway.reload().await.unwrap();
    let response = send(client().get(gateway.admin_url("/readyz"))).await;
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("pods of other/other not listed yet\n"),
        "{body}"
    );

    // Back: the watch resumes quietly (no event); the failure clears.
    fake.restart().await;
    eventually(
        Duration::from_secs(15),
        "/readyz clear after a quiet resume",
        || async { get_text(gateway.admin_url("/readyz")).await == "ready\n" },
    )
    .await;

    // Down again; meanwhile a pod comes up and the watch history is
    // compacted: the watch resumes, gets 410 Gone, lists again, sees both.
    fake.stop().await;
    eventually(
        Duration::from_secs(10),
        "the second outage seen",
        || async {
            get_text(gateway.admin_url("/readyz"))
                .await
                .contains("kubernetes:")
        },
    )
    .await;
    apply_pods(&fake, &pods, &[READY, READY]);
    fake.compact();
    fake.restart().await;
    eventually(
        Duration::from_secs(40),
        "both pods after the API is back",
        || async { ready_pods(&gateway).await == 2 },
    )
    .await;
    eventually(Duration::from_secs(10), "/readyz clear again", || async {
        get_text(gateway.admin_url("/readyz")).await == "ready\n"
    })
    .await;
    let text = get_text(gateway.admin_url("/metrics")).await;
    assert_eq!(metric(&text, "sluice_kubernetes_api_reachable"), Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_finds_its_cluster_through_kubeconfig_and_hands_back_its_lease_on_sigterm() {
    let Setup {
        pods: _pods,
        port,
        fake,
        kubeconfig,
        _dir,
    } = setup(&["127.0.0.1"], 1, &[READY]).await;
    // No `kubernetes.kubeconfig`: found as kubectl finds it, through $KUBECONFIG.
    let yaml = format!(
        "listen: 127.0.0.1:0\nadmin: 127.0.0.1:0\nkubernetes:\n{}services:\n  - name: model\n    namespace: {NS}\n    \
         backend:\n      kubernetes: {{ deployment: {DEPLOYMENT}, port: {port} }}\n",
        election("gw-a")
    );
    let gateway = support::process::GatewayProcess::start_with_env(
        &yaml,
        &[("KUBECONFIG", kubeconfig.as_os_str())],
    );
    eventually(Duration::from_secs(10), "leading and serving", || async {
        let status = get_json(gateway.admin_url("/status")).await;
        status["leader"]["isLeader"] == true && status["services"][0]["readyPods"] == 1
    })
    .await;
    let response = send(client().get(gateway.url("/")).header("host", HOST)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(fake.lease_holder(LEASE_NS, LEASE).as_deref(), Some("gw-a"));

    gateway.signal("TERM");
    let mut gateway = gateway;
    let status = support::wait_for_exit(
        &mut gateway.child,
        Duration::from_secs(20),
        "exit on SIGTERM",
    )
    .await;
    assert!(status.success(), "{}", gateway.log_text());
    assert_eq!(
        fake.lease_holder(LEASE_NS, LEASE),
        None,
        "the lease is handed back for another gateway to take at once"
    );
    assert_eq!(fake.replicas(NS, DEPLOYMENT), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_does_not_undo_a_followers_raise_from_zero() {
    let pods = pods_on_one_port(&["127.0.0.1"]).await;
    let port = pods[0].addr.port();
    let fake = FakeKube::start().await;
    fake.add_listener().await;
    fake.apply(deployment(NS, DEPLOYMENT, 0));
    fake.apply(slice(&[], port));
    let dir = tempfile::tempdir().unwrap();
    let yaml = |i: usize| {
        let kubeconfig = fake.write_kubeconfig(i, dir.path());
        config(
            &kubeconfig,
            port,
            "    minReplicas: 0\n    maxReplicas: 2\n",
            &election(["gw-a", "gw-b"][i]),
        )
    };
    let leader = TestGateway::start(&yaml(0)).await;
    eventually(Duration::from_secs(10), "gw-a leads", || async {
        is_leader(&leader).await
    })
    .await;
    let follower = TestGateway::start(&yaml(1)).await;
    // The leader has decided zero and seen the count at zero (it read the
    // scale for a decision, after its start-up read).
    eventually(
        Duration::from_secs(10),
        "the leader's decision of zero",
        || async {
            let requests = fake.requests();
            let reads = requests.iter().filter(|r| {
                r.listener == 0
                    && r.method == http::Method::GET
                    && r.path_and_query.contains("/scale")
            });
            reads.count() >= 2
        },
    )
    .await;

    // A request held at the follower raises the Deployment from zero.
    let url = follower.url("/slow?ms=10");
    let held =
        tokio::spawn(async move { send(client().get(url).header("host", HOST)).await.status() });
    eventually(Duration::from_secs(10), "raised to 1", || async {
        fake.replicas(NS, DEPLOYMENT) == Some(1)
    })
    .await;
    assert_eq!(fake.scale_writes().last().unwrap().listener, 1);

    // The model takes longer to start than the leader's stable window and
    // grace (7 s here). Meanwhile the idle leader still wants zero and
    // re-reads the scale every 10 s: it must not put its zero back over the
    // follower's activation while a request may be held for it.
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        assert_eq!(fake.replicas(NS, DEPLOYMENT), Some(1));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let writes: Vec<_> = fake
        .scale_writes()
        .iter()
        .map(|w| (w.listener, w.from, w.to))
        .collect();
    assert!(writes.iter().all(|w| w.0 == 1), "{writes:?}");
    apply_pods(&fake, &pods, &[READY]);
    let ready = Instant::now();
    assert_eq!(held.await.unwrap(), 200);

    // Once the pod is ready, the leader leaves it for its stable window and
    // grace (7 s), as the README says, and then puts back its zero: counted
    // from when it sees the pod ready, not from its next 10 s re-read.
    eventually(Duration::from_secs(20), "the leader's zero", || async {
        fake.replicas(NS, DEPLOYMENT) == Some(0)
    })
    .await;
    let zero = fake.scale_writes().last().unwrap().clone();
    assert_eq!((zero.listener, zero.from, zero.to), (0, 1, 0));
    let held_for = zero.at.duration_since(ready);
    assert!(
        held_for >= Duration::from_secs(7) && held_for < Duration::from_secs(11),
        "left for {held_for:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_gateway_does_not_scale_down_a_running_deployment_before_a_stable_window() {
    let fake = FakeKube::start().await;
    fake.apply(deployment(NS, DEPLOYMENT, 4));
    // Four ready pods (no request goes to them in this test).
    let endpoints: Vec<EndpointSpec> = (1..=4)
        .map(|i| EndpointSpec::ready(&format!("127.0.0.{i}"), &format!("model-{i}")))
        .collect();
    fake.apply(slice(&endpoints, 9));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = fake.write_kubeconfig(0, dir.path());
    let started = Instant::now();
    let gateway = TestGateway::start(&config(
        &kubeconfig,
        9,
        "    minReplicas: 1\n    maxReplicas: 4\n",
        "",
    ))
    .await;
    decided_on(&gateway, 4).await;
    // Idle, but observed for less than the stable window (6 s): kept.
    while started.elapsed() < Duration::from_secs(5) {
        assert!(fake.scale_writes().is_empty(), "{:?}", fake.scale_writes());
        assert_eq!(service_status(&gateway).await["desired"], 4);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Then it scales down as usual: at most halving per decision.
    eventually(Duration::from_secs(15), "scaled down", || async {
        fake.replicas(NS, DEPLOYMENT) == Some(2)
    })
    .await;
    let first = &fake.scale_writes()[0];
    assert_eq!((first.from, first.to), (4, 2));
    assert!(first.at.duration_since(started) >= Duration::from_secs(6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_that_keeps_failing_stays_reported_while_lists_keep_the_pods_current() {
    let Setup {
        pods,
        port,
        fake,
        kubeconfig,
        _dir,
    } = setup(&["127.0.0.1", "127.0.0.2"], 1, &[READY]).await;
    let gateway = TestGateway::start(&config(&kubeconfig, port, "", "")).await;
    eventually(Duration::from_secs(10), "the ready pod", || async {
        ready_pods(&gateway).await == 1
    })
    .await;

    // RBAC that allows list but not watch (or a proxy that breaks streams):
    // the watch reconnects and is refused, again and again.
    fake.refuse_watches(true);
    fake.stop().await;
    fake.restart().await;
    let failing = "kubernetes: endpointslices ml/model-predictor: failing for";
    eventually(
        Duration::from_secs(10),
        "the failing watch reported",
        || async {
            get_text(gateway.admin_url("/readyz"))
                .await
                .contains(failing)
        },
    )
    .await;
    // Lists work: a new pod is seen through them.
    apply_pods(&fake, &pods, &[READY, READY]);
    eventually(
        Duration::from_secs(10),
        "the new pod, from a list",
        || async { ready_pods(&gateway).await == 2 },
    )
    .await;
    // But the watch still fails, and says so the whole time (longer than
    // its longest backoff), with one continuous failure.
    let until = Instant::now() + Duration::from_secs(9);
    while Instant::now() < until {
        let readyz = get_text(gateway.admin_url("/readyz")).await;
        assert!(readyz.contains(failing), "{readyz}");
        let text = get_text(gateway.admin_url("/metrics")).await;
        assert_eq!(metric(&text, "sluice_kubernetes_api_reachable"), Some(0.0));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let readyz = get_text(gateway.admin_url("/readyz")).await;
    let seconds: u64 = readyz
        .split(failing)
        .nth(1)
        .and_then(|rest| rest.trim().split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{readyz}"));
    assert!(seconds >= 9, "the failure started over: {readyz}");

    // Watches allowed again: the next try works and the failure clears.
    fake.refuse_watches(false);
    eventually(Duration::from_secs(20), "/readyz clear", || async {
        get_text(gateway.admin_url("/readyz")).await == "ready\n"
    })
    .await;
}
