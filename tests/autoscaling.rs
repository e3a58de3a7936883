//! Autoscaling on one machine, with real child processes: sluice's own
//! stand-in predictor started by the process actuator.

mod support;

use futures::future::join_all;
use sluice::actuator::Phase;
use sluice::service::Service;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::config::{quoted, Service as ServiceConfig};
use support::process::GatewayProcess;
use support::*;

/// The tutorial's service, its replicas `sluice predictor` processes
/// started by sluice, with `args` added to the predictor's command.
fn predictor(args: &[&str]) -> ServiceConfig {
    ServiceConfig::predictor("redwine-week4", "kserve-inference", args)
}

/// A config with `service` and an autoscaler that decides every second on
/// a 6 s window.
fn process_config(service: ServiceConfig) -> String {
    ConfigBuilder::new()
        .autoscaler("stableWindow", "6s")
        .autoscaler("panicWindowPercentage", 50)
        .autoscaler("tickInterval", "1s")
        .autoscaler("scaleToZeroGracePeriod", "1s")
        .service(service)
        .yaml()
}

/// One service whose replicas are started through `sh -c script`; `{bin}`
/// in the script is this build's sluice.
fn shell_replica_config(script: &str) -> String {
    let script = script.replace("{bin}", env!("CARGO_BIN_EXE_sluice"));
    let service =
        ServiceConfig::process("redwine-week4", "kserve-inference", &["sh", "-c", &script])
            .backend("readinessPath", "/v1/models/redwine-week4")
            .backend("stopGracePeriod", "2s");
    ConfigBuilder::new().service(service).yaml()
}

const INPUT: &str =
    r#"{"instances": [[7.4, 0.7, 0, 1.9, 0.076, 11, 34, 0.9978, 3.51, 0.56, 9.4]]}"#;
const PREDICT: &str = "/v1/models/redwine-week4:predict";

fn service(gw: &TestGateway) -> Arc<Service> {
    gw.gateway.shared().routes.load().services()[0].clone()
}

fn ready(s: &Service) -> usize {
    s.dispatcher().pods().len()
}

/// `clients` closed-loop clients until `stop`; returns the status codes.
fn load(
    gw: &TestGateway,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<u16>> {
    let url = gw.url(PREDICT);
    tokio::spawn(async move {
        let c = client();
        let loops = (0..clients).map(|_| {
            let (c, url, stop) = (c.clone(), url.clone(), stop.clone());
            async move {
                let mut codes = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let r = send(c.post(&url).body(INPUT)).await;
                    codes.push(r.status().as_u16());
                    r.bytes().await.unwrap();
                }
                codes
            }
        });
        join_all(loops).await.concat()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_replicas_start_exactly_that_many() {
    let gw = TestGateway::start(&process_config(
        predictor(&[]).set("minReplicas", 3).set("maxReplicas", 3),
    ))
    .await;
    let s = service(&gw);
    eventually(Duration::from_secs(20), "3 replicas ready", || async {
        ready(&s) == 3
    })
    .await;
    let c = client();
    for _ in 0..30 {
        let r = send(c.post(gw.url(PREDICT)).body(INPUT)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), r#"{"predictions":[5.034]}"#);
    }
    let replicas = s.actuator().replicas();
    assert_eq!(replicas.len(), 3);
    assert!(replicas.iter().all(|r| r.phase == Phase::Ready));
    assert!(
        s.dispatcher().pods().iter().all(|p| p.admitted() >= 5),
        "all three serve"
    );
    assert_eq!(s.scaler_status().desired, 3);
    assert!(gw.gateway.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_five_clients_scales_to_five_and_back_to_one() {
    let yaml = process_config(
        predictor(&["--service-time", "100ms"])
            .set("minReplicas", 1)
            .set("maxReplicas", 8)
            .set("scaleTarget", 1),
    );
    let gw = TestGateway::start(&yaml).await;
    let s = service(&gw);
    eventually(Duration::from_secs(20), "1 replica ready", || async {
        ready(&s) == 1
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = load(&gw, 5, stop.clone());
    let peak = Arc::new(AtomicUsize::new(0));
    eventually(
        Duration::from_secs(15),
        "5 replicas ready under 5 clients",
        || async {
            peak.fetch_max(s.scaler_status().desired as usize, Ordering::Relaxed);
            ready(&s) == 5
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let codes = traffic.await.unwrap();
    assert!(
        codes.len() >= 5 && codes.iter().all(|&c| c == 200),
        "{codes:?}"
    );
    assert_eq!(
        peak.load(Ordering::Relaxed),
        5,
        "5 clients never want more than 5"
    );

    eventually(Duration::from_secs(40), "back to minReplicas", || async {
        s.scaler_status().desired == 1 && ready(&s) == 1 && s.actuator().replicas().len() == 1
    })
    .await;
    assert!(gw.gateway.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_zero_a_held_request_is_answered_and_200_at_once_all_are() {
    let yaml = process_config(
        predictor(&["--service-time", "10ms", "--startup-delay", "300ms"])
            .set("minReplicas", 0)
            .set("maxReplicas", 4)
            .set("initialScale", 0),
    );
    let gw = TestGateway::start(&yaml).await;
    let s = service(&gw);
    assert_eq!(
        s.actuator().replicas().len(),
        0,
        "minReplicas 0 with initialScale 0 starts none"
    );
    let c = client();
    let r = send(c.post(gw.url(PREDICT)).body(INPUT)).await;
    assert_eq!(r.status(), 200);
    let held: f64 = r.headers()["sluice-held-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(held >= 300.0, "held while the model loaded: {held} ms");
    r.bytes().await.unwrap();

    // Idle for the stable window (6 s) and the grace period (1 s): to zero.
    eventually(Duration::from_secs(30), "scaled to zero", || async {
        s.scaler_status().desired == 0 && s.actuator().replicas().is_empty()
    })
    .await;
    let requests = (0..200).map(|_| {
        let (c, url) = (c.clone(), gw.url(PREDICT));
        async move {
            let r = send(c.post(url).body(INPUT)).await;
            r.status().as_u16()
        }
    });
    let codes = join_all(requests).await;
    assert!(codes.iter().all(|&c| c == 200), "{codes:?}");
    assert_eq!(s.dispatcher().held(), 0);
    assert!(gw.gateway.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_is_replaced() {
    let gw = TestGateway::start(&process_config(
        predictor(&[]).set("minReplicas", 2).set("maxReplicas", 2),
    ))
    .await;
    let s = service(&gw);
    eventually(Duration::from_secs(20), "2 replicas ready", || async {
        ready(&s) == 2
    })
    .await;
    let victim = s.actuator().replicas()[0].clone();
    let status = std::process::Command::new("kill")
        .args(["-9", &victim.pid.unwrap().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    eventually(
        Duration::from_secs(20),
        "the replica restarted and is ready",
        || async {
            let replicas = s.actuator().replicas();
            ready(&s) == 2
                && replicas
                    .iter()
                    .any(|r| r.name == victim.name && r.restarts == 1 && r.phase == Phase::Ready)
        },
    )
    .await;
    assert_eq!(s.actuator().counts().read().2, 1, "one restart counted");
    let r = send(client().post(gw.url(PREDICT)).body(INPUT)).await;
    assert_eq!(r.status(), 200);
    assert!(gw.gateway.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_under_steady_load_fails_no_request() {
    let with = |n: u32| {
        process_config(
            predictor(&["--service-time", "50ms"])
                .set("minReplicas", n)
                .set("maxReplicas", n),
        )
    };
    let gw = TestGateway::start(&with(4)).await;
    let s = service(&gw);
    eventually(Duration::from_secs(20), "4 replicas ready", || async {
        ready(&s) == 4
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = load(&gw, 4, stop.clone());
    eventually(Duration::from_secs(10), "all 4 busy", || async {
        s.dispatcher().in_flight() >= 3
    })
    .await;
    // Down to 1 while requests are in flight at every replica.
    std::fs::write(&gw.config_path, with(1)).unwrap();
    gw.gateway.reload().await.unwrap();
    eventually(Duration::from_secs(20), "1 replica left", || async {
        s.actuator().replicas().len() == 1 && ready(&s) == 1
    })
    .await;
    let stops = s.actuator().counts().read().1;
    assert_eq!(stops, 3, "three replicas drained and stopped");
    stop.store(true, Ordering::Relaxed);
    let codes = traffic.await.unwrap();
    assert!(codes.len() > 20, "{}", codes.len());
    assert!(
        codes.iter().all(|&c| c == 200),
        "a request failed during scale-down: {codes:?}"
    );
    assert!(gw.gateway.shutdown(Duration::from_secs(5)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_child_process_outlives_the_gateway() {
    let gw = GatewayProcess::start(&process_config(
        predictor(&[]).set("minReplicas", 3).set("maxReplicas", 3),
    ));
    let c = client();
    let pids: Vec<u64> = poll_until(Duration::from_secs(20), "3 replicas with pids", || async {
        let status = c
            .get(gw.admin_url("/status"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status: serde_json::Value = status.json().await.unwrap();
        let pids: Vec<u64> = status["services"][0]["replicas"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["pid"].as_u64())
            .collect();
        if pids.len() == 3 {
            Ok(pids)
        } else {
            Err(format!("{pids:?}"))
        }
    })
    .await;
    assert!(pids
        .iter()
        .all(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists()));
    gw.signal("TERM");
    eventually(
        Duration::from_secs(20),
        "every replica process is gone",
        || async {
            pids.iter()
                .all(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_from_static_to_process_replaces_the_old_pods() {
    let old = upstream().await;
    let gw = TestGateway::start(&one_service(&[&old], "")).await;
    let c = client();
    let r = send(c.get(gw.url("/"))).await;
    assert_eq!(r.text().await.unwrap(), old.addr.to_string());

    std::fs::write(
        &gw.config_path,
        process_config(predictor(&[]).set("minReplicas", 1).set("maxReplicas", 1)),
    )
    .unwrap();
    gw.gateway.reload().await.unwrap();
    let s = service(&gw);
    eventually(
        Duration::from_secs(20),
        "the process replica serves",
        || async { ready(&s) == 1 && s.dispatcher().pods()[0].addr() != old.addr.to_string() },
    )
    .await;
    let hits_before = old.hits();
    for _ in 0..10 {
        let r = send(c.post(gw.url(PREDICT)).body(INPUT)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), r#"{"predictions":[5.034]}"#);
    }
    assert_eq!(
        old.hits(),
        hits_before,
        "the old static pod gets nothing new"
    );
    assert!(gw.gateway.shutdown(Duration::from_secs(5)).await);
}

/// The children of a process, from /proc.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_started_through_a_shell_is_stopped_with_its_children() {
    let yaml = shell_replica_config("{bin} predictor --port $PORT --log warn & wait");
    let gw = TestGateway::start(&yaml).await;
    let s = service(&gw);
    eventually(Duration::from_secs(20), "the replica is ready", || async {
        ready(&s) == 1
    })
    .await;
    let shell = s.actuator().replicas()[0].pid.unwrap();
    let model = children(shell);
    assert_eq!(model.len(), 1, "the shell runs the predictor");
    assert!(gw.gateway.shutdown(Duration::from_secs(5)).await);
    let gone = |pid: u32| !std::path::Path::new(&format!("/proc/{pid}")).exists();
    eventually(
        Duration::from_secs(10),
        "shell and predictor are gone",
        || async { gone(shell) && gone(model[0]) },
    )
    .await;
}

/// Process replicas, each behind its own sidecar, scaled from the pods' reports.
fn sidecar_config(min: u32, max: u32) -> String {
    let bin = env!("CARGO_BIN_EXE_sluice");
    let command = [bin, "predictor", "--port", "{port}", "--log", "warn"];
    let command = [&command[..], &["--service-time", "100ms"]].concat();
    let service = ServiceConfig::process("redwine-week4", "kserve-inference", &command)
        .set("minReplicas", min)
        .set("maxReplicas", max)
        .set("containerConcurrency", 1)
        .set("metrics", "pods")
        .backend("readinessPath", "/v1/models/redwine-week4")
        .backend("stopGracePeriod", "2s")
        .backend("sidecar", format!("{{ executable: {} }}", quoted(bin)));
    ConfigBuilder::new()
        .autoscaler("stableWindow", "6s")
        .autoscaler("panicWindowPercentage", 50)
        .autoscaler("tickInterval", "1s")
        .service(service)
        .yaml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_with_sidecars_scale_from_the_pods_reports() {
    let yaml = sidecar_config(1, 4);
    let gw = TestGateway::start(&yaml).await;
    let s = service(&gw);
    eventually(Duration::from_secs(20), "1 replica ready", || async {
        ready(&s) == 1
    })
    .await;
    let pod = s.dispatcher().pods()[0].clone();
    assert!(
        pod.stats_addr().is_some(),
        "the sidecar reports the replica's load"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = load(&gw, 3, stop.clone());
    eventually(
        Duration::from_secs(20),
        "3 replicas for 3 clients",
        || async { s.scaler_status().desired == 3 && ready(&s) == 3 },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let codes = traffic.await.unwrap();
    assert!(codes.iter().all(|&c| c == 200), "{codes:?}");
    let replicas = s.actuator().replicas();
    assert_eq!(replicas.len(), 3);
    let pids: Vec<u32> = replicas
        .iter()
        .flat_map(|r| {
            [
                r.pid.expect("a model process"),
                r.sidecar_pid.expect("a sidecar process"),
            ]
        })
        .collect();
    assert!(gw.gateway.shutdown(Duration::from_secs(5)).await);
    let gone = |pid: u32| !std::path::Path::new(&format!("/proc/{pid}")).exists();
    eventually(
        Duration::from_secs(10),
        "model and sidecar processes are gone",
        || async { pids.iter().all(|&p| gone(p)) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_sidecar_dies_its_model_is_stopped_and_both_restart() {
    let gw = TestGateway::start(&sidecar_config(1, 1)).await;
    let s = service(&gw);
    eventually(Duration::from_secs(20), "1 replica ready", || async {
        ready(&s) == 1
    })
    .await;
    let before = s.actuator().replicas()[0].clone();
    let (model, sidecar) = (before.pid.unwrap(), before.sidecar_pid.unwrap());
    let killed = std::process::Command::new("kill")
        .args(["-9", &sidecar.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let gone = |pid: u32| !std::path::Path::new(&format!("/proc/{pid}")).exists();
    eventually(
        Duration::from_secs(20),
        "a new pair serves and the old model is gone",
        || async {
            let now = s.actuator().replicas();
            gone(model)
                && ready(&s) == 1
                && now[0].restarts == 1
                && now[0].phase == Phase::Ready
                && now[0].pid != Some(model)
        },
    )
    .await;
    let r = send(client().post(gw.url(PREDICT)).body(INPUT)).await;
    assert_eq!(r.status(), 200);
    assert!(gw.gateway.shutdown(Duration::from_secs(5)).await);
}

/// Issue 15, defect 4: a replica is told its port before it binds it (a
/// real model server imports for seconds first). A program that takes the
/// port meanwhile answers the readiness probe, but must never get the
/// replica's requests: sluice sees that the listening socket is not the
/// replica's, and starts the replica again on another port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_on_a_replicas_port_never_gets_its_requests() {
    let yaml = shell_replica_config(
        "sleep 2; exec {bin} predictor --bind 127.0.0.1 --port $PORT --log warn",
    );
    let gw = TestGateway::start(&yaml).await;
    let s = service(&gw);
    let port = poll_until(Duration::from_secs(10), "the replica's port", || async {
        let replicas = s.actuator().replicas();
        let address = replicas.first().map(|r| r.address.clone());
        address
            .and_then(|a| a.rsplit_once(':')?.1.parse::<u16>().ok())
            .filter(|&port| port != 0)
            .ok_or_else(|| "no port yet".to_string())
    })
    .await;
    let squatter = support::upstream::upstream_at(&format!("127.0.0.1:{port}")).await;

    let requests = (0..20).map(|_| {
        let url = gw.url(PREDICT);
        async move {
            let r = send(client().post(url).body(INPUT)).await;
            (r.status().as_u16(), r.text().await.unwrap())
        }
    });
    let answers = join_all(requests).await;
    // The stranger answers every path with its address, probes included.
    assert_ne!(squatter.last_path(), PREDICT, "the stranger got a request");
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert!(body.contains("predictions"), "the model answered: {body}");
    }
    let replica = &s.actuator().replicas()[0];
    assert!(
        replica.restarts >= 1 && !replica.address.ends_with(&format!(":{port}")),
        "restarted on another port: {replica:?}"
    );
    squatter.stop();
    assert!(gw.gateway.shutdown(Duration::from_secs(5)).await);
}
