//! Leader election among gateways on one cluster: one leader scales, a
//! follower only raises a Deployment from zero, the lease changes hands
//! when taken or handed back. Against the fake API server.
mod support;

use std::time::{Duration, Instant};
use support::cluster::*;
use support::config::ConfigBuilder;
use support::fake_kube::{deployment, FakeKube};
use support::upstream::pods_on_one_port;
use support::{client, eventually, get_json, get_text, holds_until, metric, send, TestGateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_elect_one_leader_which_alone_scales_and_another_takes_over() {
    let pods = pods_on_one_port(&["127.0.0.1"]).await;
    let port = pods[0].addr.port();
    let fake = FakeKube::start().await;
    fake.add_listener().await;
    fake.apply(deployment(NS, DEPLOYMENT, 1));
    apply_pods(&fake, &pods, &[READY]);
    let dir = tempfile::tempdir().unwrap();
    // Gateway i talks to listener i, so the fake tells their writes apart.
    let yaml = |i: usize, min: u32| {
        let kubeconfig = fake.write_kubeconfig(i, dir.path());
        config(&kubeconfig)
            .kubernetes("leaderElection", election(["gw-a", "gw-b"][i]))
            .service(model(port).set("minReplicas", min).set("maxReplicas", 4))
            .yaml()
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
    let yaml = config(&kubeconfig)
        .kubernetes("leaderElection", election("gw-a"))
        .service(model(port).set("minReplicas", 0).set("maxReplicas", 4))
        .yaml();
    let gateway = TestGateway::start(&yaml).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_finds_its_cluster_through_kubeconfig_and_hands_back_its_lease_on_sigterm() {
    let cluster = setup(&["127.0.0.1"], 1, &[READY]).await;
    // No `kubernetes.kubeconfig`: found as kubectl finds it, through $KUBECONFIG.
    let yaml = ConfigBuilder::new()
        .kubernetes("leaderElection", election("gw-a"))
        .service(cluster.model())
        .yaml();
    let gateway = support::process::GatewayProcess::start_with_env(
        &yaml,
        &[("KUBECONFIG", cluster.kubeconfig.as_os_str())],
    );
    eventually(Duration::from_secs(10), "leading and serving", || async {
        let status = get_json(gateway.admin_url("/status")).await;
        status["leader"]["isLeader"] == true && status["services"][0]["readyPods"] == 1
    })
    .await;
    let response = send(client().get(gateway.url("/")).header("host", HOST)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        cluster.fake.lease_holder(LEASE_NS, LEASE).as_deref(),
        Some("gw-a")
    );

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
        cluster.fake.lease_holder(LEASE_NS, LEASE),
        None,
        "the lease is handed back for another gateway to take at once"
    );
    assert_eq!(cluster.replicas(), Some(1));
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
        config(&kubeconfig)
            .kubernetes("leaderElection", election(["gw-a", "gw-b"][i]))
            .service(model(port).set("minReplicas", 0).set("maxReplicas", 2))
            .yaml()
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
    // follower's activation while a request may be held for it. Real time:
    // both gateways' timers and their talk with the fake API server.
    let until = Instant::now() + Duration::from_secs(12);
    holds_until(until, Duration::from_millis(200), || async {
        assert_eq!(fake.replicas(NS, DEPLOYMENT), Some(1));
    })
    .await;
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
