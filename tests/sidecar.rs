//! The sidecar with real slow upstreams: concurrency limit, queue overflow,
//! load reports, readiness and drain.

mod support;

use futures::future::join_all;
use sluice::predictor::{Predictor, PredictorOptions};
use sluice::sidecar::{Sidecar, SidecarOptions};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;

fn url(sidecar: &Sidecar, path: &str) -> String {
    format!("http://{}{}", sidecar.data_addr, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_concurrency_2_never_lets_more_than_2_reach_the_model() {
    let model = upstream().await;
    let sidecar = Sidecar::start(sidecar_options(model.addr, 2))
        .await
        .unwrap();
    let c = client();
    let requests = (0..8).map(|_| {
        let (c, url) = (c.clone(), url(&sidecar, "/slow?ms=150"));
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    });
    let codes = join_all(requests).await;
    assert!(codes.iter().all(|&c| c == 200), "{codes:?}");
    assert_eq!(model.hits(), 8);
    assert_eq!(
        model.peak(),
        2,
        "the model saw more than containerConcurrency at once"
    );
    sidecar.drain(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_overflows_with_503_and_the_accepted_all_succeed() {
    let model = upstream().await;
    let sidecar = Sidecar::start(SidecarOptions {
        queue_depth: Some(2),
        ..sidecar_options(model.addr, 1)
    })
    .await
    .unwrap();
    let c = client();
    let requests = (0..6).map(|_| {
        let (c, url) = (c.clone(), url(&sidecar, "/slow?ms=1000"));
        async move {
            let r = c.get(url).send().await.unwrap();
            let error = r
                .headers()
                .get("sluice-error")
                .map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), error)
        }
    });
    let results = join_all(requests).await;
    let ok = results.iter().filter(|(c, _)| *c == 200).count();
    let full = results
        .iter()
        .filter(|(c, e)| *c == 503 && e.as_deref() == Some("queue-full"))
        .count();
    assert_eq!(
        (ok, full),
        (3, 3),
        "1 at the model + 2 queued succeed, 3 overflow: {results:?}"
    );
    assert_eq!(model.peak(), 1);
    sidecar.drain(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_closed_loop_clients_are_reported_as_about_4() {
    let model = upstream().await;
    let sidecar = Arc::new(
        Sidecar::start(sidecar_options(model.addr, 0))
            .await
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            // 200 ms requests: the clients' own time between two is negligible.
            let (stop, url) = (stop.clone(), url(&sidecar, "/slow?ms=200"));
            tokio::spawn(async move {
                let c = client();
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let r = c.get(&url).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    r.bytes().await.unwrap();
                }
            })
        })
        .collect();
    // Until a whole second of the sidecar's has been under the full load,
    // then three readings a second apart. The pause between readings is
    // real time on purpose: the readings are rates over the sidecar's own
    // one-second windows of real requests.
    eventually(
        Duration::from_secs(10),
        "a whole second under load",
        || async { sidecar.report().concurrency >= 3.6 },
    )
    .await;
    let mut readings = Vec::new();
    let stats_url = format!("http://{}/stats", sidecar.admin_addr);
    for _ in 0..3 {
        readings.push(sidecar.report());
        // The admin port says the same, as JSON.
        let json: sluice::sidecar::LoadReport =
            serde_json::from_value(get_json(stats_url.clone()).await).unwrap();
        readings.push(json);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, Ordering::Relaxed);
    join_all(clients).await;
    for r in &readings {
        assert!(
            (3.6..=4.4).contains(&r.concurrency),
            "about 4 within 10%: {readings:?}"
        );
        // 4 clients at ~200 ms each: about 20 requests a second.
        assert!((15.0..=22.0).contains(&r.rps), "{readings:?}");
    }
    Arc::try_unwrap(sidecar)
        .ok()
        .unwrap()
        .drain(Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_models() {
    let model = Predictor::start(PredictorOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        model: "redwine-week4".into(),
        service_time: Duration::ZERO,
        workers: 1,
        startup_delay: Duration::from_millis(600),
        openai: None,
    })
    .await
    .unwrap();
    let sidecar = Sidecar::start(SidecarOptions {
        readiness_path: "/v1/models/redwine-week4".into(),
        ..sidecar_options(model.addr, 0)
    })
    .await
    .unwrap();
    let readyz = format!("http://{}/readyz", sidecar.admin_addr);
    let c = client();
    let status = |c: reqwest::Client, url: String| async move {
        c.get(url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    assert_eq!(
        status(c.clone(), readyz.clone()).await,
        503,
        "the model is loading"
    );
    eventually(Duration::from_secs(5), "ready once the model is", || {
        status(c.clone(), readyz.clone()).map(|s| s == 200)
    })
    .await;
    model.stop().await;
    eventually(
        Duration::from_secs(5),
        "unready once the model is gone",
        || status(c.clone(), readyz.clone()).map(|s| s == 503),
    )
    .await;
    sidecar.drain(Duration::from_secs(5)).await;
}

use futures::FutureExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_steady_load_loses_no_request_and_the_process_exits() {
    let model = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("sidecar.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "sidecar",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--drain-period",
            "1s",
        ])
        .args([
            "--upstream",
            &model.addr.to_string(),
            "--container-concurrency",
            "2",
        ])
        .args(["--readiness-path", "/ready"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let addr = poll_until(Duration::from_secs(10), "the sidecar starts", || async {
        let text = std::fs::read_to_string(&log).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("sluice sidecar started"))
            .ok_or(text.clone())?;
        let start = line.find("listen=").unwrap() + "listen=".len();
        Ok(line[start..].split_whitespace().next().unwrap().to_string())
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, url) = (stop.clone(), format!("http://{addr}/slow?ms=30"));
            tokio::spawn(async move {
                let c = client();
                let mut codes = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(20);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let r = c.get(&url).send().await.unwrap();
                    codes.push(r.status().as_u16());
                    r.bytes().await.unwrap();
                }
                codes
            })
        })
        .collect();
    eventually(
        Duration::from_secs(10),
        "steady load through the sidecar",
        || async { model.hits() >= 20 },
    )
    .await;
    let at_term = model.hits();
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    // The endpoint is being removed: traffic goes on for a while, and is served.
    eventually(
        Duration::from_secs(5),
        "40 requests through the sidecar after SIGTERM",
        || async { model.hits() >= at_term + 40 },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let codes: Vec<u16> = join_all(clients)
        .await
        .into_iter()
        .flat_map(|c| c.unwrap())
        .collect();
    assert!(codes.len() > 20, "{}", codes.len());
    assert!(
        codes.iter().all(|&c| c == 200),
        "a request failed during the drain: {codes:?}"
    );
    let exit = wait_for_exit(
        &mut child,
        Duration::from_secs(10),
        "the sidecar exits after its drain period",
    )
    .await;
    assert!(exit.success(), "{exit}");
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("drained; stopped"));
}

/// A sidecar on its own loopback address (a pod IP), admin on `admin_port`.
async fn pod_sidecar(ip: &str, admin_port: u16, model: &Upstream) -> Sidecar {
    Sidecar::start(SidecarOptions {
        listen: format!("{ip}:0").parse().unwrap(),
        admin: format!("{ip}:{admin_port}").parse().unwrap(),
        ..sidecar_options(model.addr, 0)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_see_all_the_load_through_the_pods_reports() {
    let (m1, m2) = (upstream().await, upstream().await);
    // Two "pods" with their own IPs and the same metrics port, as on a cluster.
    let port = std::net::TcpListener::bind("127.0.0.2:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (s1, s2) = (
        pod_sidecar("127.0.0.2", port, &m1).await,
        pod_sidecar("127.0.0.3", port, &m2).await,
    );
    let service = tutorial(&[s1.data_addr, s2.data_addr])
        .set("minReplicas", 1)
        .set("maxReplicas", 10)
        .set("metrics", "pods")
        .set("podMetricsPort", port);
    let yaml = ConfigBuilder::new()
        .autoscaler("stableWindow", "6s")
        .autoscaler("panicWindowPercentage", 50)
        .autoscaler("tickInterval", "1s")
        .service(service)
        .yaml();
    let (a, b) = (
        TestGateway::start(&yaml).await,
        TestGateway::start(&yaml).await,
    );
    let stop = Arc::new(AtomicBool::new(false));
    // Three clients through each gateway: each gateway alone sees 3.
    let clients: Vec<_> = [&a, &b]
        .iter()
        .flat_map(|gw| (0..3).map(|_| gw.url("/slow?ms=200")).collect::<Vec<_>>())
        .map(|url| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let c = client();
                let deadline = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let r = send(c.get(&url)).await;
                    assert_eq!(r.status(), 200);
                    r.bytes().await.unwrap();
                }
            })
        })
        .collect();
    let status = |gw: &TestGateway| gw.gateway.shared().routes.load().services()[0].scaler_status();
    poll_until(
        Duration::from_secs(20),
        "both gateways want 6 pods for 6 clients",
        || async {
            let (sa, sb) = (status(&a), status(&b));
            if sa.desired == 6 && sb.desired == 6 {
                Ok(())
            } else {
                Err(format!("{sa:?} {sb:?}"))
            }
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    join_all(clients).await;
    a.gateway.shutdown(Duration::from_secs(5)).await;
    b.gateway.shutdown(Duration::from_secs(5)).await;
    s1.drain(Duration::from_secs(5)).await;
    s2.drain(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_sidecar_still_waits_its_drain_period_while_the_endpoint_is_removed() {
    let model = upstream().await;
    let sidecar = Sidecar::start(sidecar_options(model.addr, 0))
        .await
        .unwrap();
    // Idle for longer than the drain period (500 ms) before SIGTERM. Real
    // time on purpose: the sidecar has real sockets, and the drain is
    // measured with the wall clock below.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let started = Instant::now();
    sidecar.drain(Duration::from_secs(5)).await;
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "drained after {:?}, before its drain period",
        started.elapsed()
    );
}

/// The sidecar's admin port serves its one service as the gateway's does,
/// without a gateway behind it (issue 10: no Kubernetes client, no YAML).
#[tokio::test]
async fn the_admin_port_tells_the_pods_state() {
    let model = upstream().await;
    let sidecar = Sidecar::start(sidecar_options(model.addr, 3))
        .await
        .unwrap();
    let admin = |path: &str| format!("http://{}{}", sidecar.admin_addr, path);
    let r = send(client().get(url(&sidecar, "/x"))).await;
    assert_eq!(r.status(), 200);

    let status = get_json(admin("/status")).await;
    assert_eq!(status["services"][0]["name"], "model", "{status}");
    assert_eq!(status["services"][0]["containerConcurrency"], 3);
    assert_eq!(
        status["services"][0]["pods"][0]["address"],
        model.addr.to_string()
    );
    assert_eq!(
        status["leader"]["isLeader"], false,
        "a sidecar leads nothing"
    );
    assert_eq!(get_text(admin("/healthz")).await, "ok\n");
    let metrics = get_text(admin("/metrics")).await;
    let served = "sluice_requests_total{service=\"model\",namespace=\"pod\",code=\"200\"}";
    assert_eq!(metric(&metrics, served), Some(1.0), "{metrics}");
    let r = client().post(admin("/stats")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = client().get(admin("/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    sidecar.drain(Duration::from_secs(1)).await;
}
