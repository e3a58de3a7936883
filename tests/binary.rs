//! The real binary: config checking, flat memory while streaming, signals.

mod support;

use bytes::Bytes;
use std::time::Duration;
use support::process::{sluice, GatewayProcess};
use support::*;

#[test]
fn check_accepts_a_good_file_and_names_the_fields_of_a_bad_one() {
    let out = sluice()
        .args(["check", "--config", "config/local.yaml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "services:\n  - name: m\n    scaleTarget: -1\n    backend: {static: [\"127.0.0.1\"]}\n",
    )
    .unwrap();
    let out = sluice()
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("services[0].scaleTarget"), "{err}");
    assert!(err.contains("services[0].backend.static[0]"), "{err}");

    std::fs::write(&bad, "listen: 127.0.0.1:0\nservice: []\n").unwrap();
    let out = sluice()
        .args(["gateway", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(64),
        "the gateway refuses to start on a bad file"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `service`"));
}

#[test]
fn every_shipped_configuration_passes_check() {
    let mut files = vec![std::path::PathBuf::from("config/local.yaml")];
    for entry in std::fs::read_dir("config/examples").unwrap() {
        files.push(entry.unwrap().path());
    }
    assert!(files.len() >= 6, "{files:?}");
    for file in files {
        let out = sluice()
            .args(["check", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn check_names_the_fields_of_a_bad_kubernetes_section() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "kubernetes:\n  leaderElection: {enabled: true, leaseDuration: 5s, renewDeadline: 10s}\n\
         services:\n  - name: m\n    backend:\n      kubernetes: {deployment: Bad_Name, port: 0}\n",
    )
    .unwrap();
    let out = sluice()
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "kubernetes.leaderElection.leaseDuration: 5s must be longer than renewDeadline (10s)"
        ),
        "{err}"
    );
    assert!(
        err.contains("services[0].backend.kubernetes.deployment: \"Bad_Name\""),
        "{err}"
    );
    assert!(
        err.contains("services[0].backend.kubernetes.port: must be between 1 and 65535, got 0"),
        "{err}"
    );
}

const MIB: u64 = 1 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mib_body_streams_both_ways_with_flat_memory() {
    let pod = upstream().await;
    let gw = GatewayProcess::start(&one_service(&[&pod], ""));
    let c = client();
    // Warm up: connections, pools and buffers exist before the baseline.
    let r = send(c.post(gw.url("/sink")).body(vec![0u8; 1 << 20])).await;
    assert_eq!(r.text().await.unwrap(), (1 << 20).to_string());
    let (baseline, _) = gw.rss_kib();

    // Upload 100 MiB in 64 KiB chunks; the pod counts what arrives.
    let chunk = Bytes::from(vec![5u8; 64 << 10]);
    let chunks =
        futures::stream::iter((0..1600).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let r = send(
        c.post(gw.url("/sink"))
            .body(reqwest::Body::wrap_stream(chunks)),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), (100 * MIB).to_string());

    // Download 100 MiB.
    let mut r = send(c.get(gw.url(&format!("/download?bytes={}", 100 * MIB)))).await;
    let mut received = 0u64;
    while let Some(chunk) = r.chunk().await.unwrap() {
        received += chunk.len() as u64;
    }
    assert_eq!(received, 100 * MIB);

    let (_, peak) = gw.rss_kib();
    let growth_mib = peak.saturating_sub(baseline) as f64 / 1024.0;
    eprintln!("gateway RSS: baseline {baseline} KiB, peak {peak} KiB, growth {growth_mib:.1} MiB");
    assert!(
        growth_mib < 30.0,
        "RSS grew by {growth_mib:.1} MiB (baseline {baseline} KiB, peak {peak} KiB)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_file() {
    let (a, b) = (upstream().await, upstream().await);
    let gw = GatewayProcess::start(&one_service(&[&a], ""));
    std::fs::write(&gw.config_path, one_service(&[&b], "")).unwrap();
    gw.signal("HUP");
    let c = client();
    eventually(
        Duration::from_secs(10),
        "requests go to the new pod",
        || async { send(c.get(gw.url("/"))).await.text().await.unwrap() == b.addr.to_string() },
    )
    .await;
    assert!(
        gw.log_text().contains("configuration reloaded"),
        "{}",
        gw.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_accepting_and_lets_requests_in_flight_finish() {
    let pod = upstream().await;
    let mut gw = GatewayProcess::start(&one_service(&[&pod], ""));
    let c = client();
    let slow = tokio::spawn({
        let (c, url) = (c.clone(), gw.url("/slow?ms=1500"));
        async move {
            let r = send(c.get(url)).await;
            (r.status(), r.text().await.unwrap())
        }
    });
    eventually(
        Duration::from_secs(5),
        "the slow request reached the pod",
        || async { pod.hits() == 1 },
    )
    .await;
    gw.signal("TERM");
    eventually(Duration::from_secs(5), "the listener is closed", || async {
        tokio::net::TcpStream::connect(gw.data).await.is_err()
    })
    .await;
    let (status, body) = slow.await.unwrap();
    assert_eq!(status, 200, "the request in flight finished");
    assert_eq!(body, pod.addr.to_string());
    let exit = wait_for_exit(&mut gw.child, Duration::from_secs(10), "the gateway exits").await;
    assert!(exit.success(), "{exit}");
    assert!(
        gw.log_text().contains("all requests finished"),
        "{}",
        gw.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_status_prints_services_and_pods_like_kubectl() {
    let pods = [upstream().await, upstream().await];
    let gw = GatewayProcess::start(&one_service(&[&pods[0], &pods[1]], ""));
    let admin = gw.admin.to_string();
    let run = |extra: &[&str]| {
        let out = sluice()
            .args(["status", "--admin", &admin])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let services = run(&[]);
    let lines: Vec<&str> = services.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "URL",
            "READY",
            "MIN",
            "MAX",
            "DESIRED",
            "PODS",
            "IN-FLIGHT",
            "QUEUED",
            "PANIC",
            "AGE"
        ]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row[..10],
        [
            "redwine-week4",
            &format!("http://{HOST}"),
            "True",
            "1",
            "1",
            "2",
            "2",
            "0",
            "0",
            "False"
        ]
    );

    let replicas = run(&["--pods"]);
    let lines: Vec<&str> = replicas.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{replicas}");
    assert_eq!(lines.len(), 3, "{replicas}");
    for (line, pod) in lines[1..].iter().zip(&pods) {
        assert!(
            line.contains("1/1")
                && line.contains("Running")
                && line.ends_with(&pod.addr.to_string()),
            "{line}"
        );
    }

    // No gateway there: a clear error, not a table.
    let out = sluice()
        .args(["status", "--admin", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the gateway's admin"));
}

/// Issue 15, defects 1-3: values that `sluice check` accepted and that then
/// killed the gateway, panicked its replica or autoscaler tasks, or scaled
/// it to the maximum. Each is refused by `check` with its field, at start,
/// and on reload, where the running configuration keeps serving. Each file
/// version is parsed once even though SIGHUP and the file poller both see it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_check_accepts_runs_and_a_reload_of_anything_else_keeps_serving() {
    let pod = upstream().await;
    let good = one_service(&[&pod], "");
    let gw = GatewayProcess::start(&good);
    let bad = [
        ("panicWindowPercentage", "1e20"),
        ("stableWindow", "500000000000y"),
        ("scaleToZeroGracePeriod", "500000000000y"),
        ("maxScaleDownRate", ".nan"),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (i, (key, value)) in bad.iter().enumerate() {
        let extra = format!("{key}: {value}");
        let field = format!("services[0].{key}");
        let yaml = ConfigBuilder::new()
            .service(tutorial(&[pod.addr]).set(key, value))
            .yaml();
        let file = dir.path().join(format!("bad{i}.yaml"));
        std::fs::write(&file, &yaml).unwrap();
        let out = sluice()
            .args(["check", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "check refuses {extra}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(&field));
        let out = sluice()
            .args(["gateway", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(64), "the gateway refuses {extra}");

        std::fs::write(&gw.config_path, &yaml).unwrap();
        gw.signal("HUP");
        eventually(Duration::from_secs(10), "the reload is refused", || async {
            gw.log_text().matches("configuration not reloaded").count() == i + 1
        })
        .await;
        let r = send(client().get(gw.url("/"))).await;
        assert_eq!(r.status(), 200, "the old configuration still serves");
    }
    let global_nan = good.replacen(
        "services:",
        "autoscaler:\n  maxScaleDownRate: .nan\nservices:",
        1,
    );
    std::fs::write(&gw.config_path, &global_nan).unwrap();
    eventually(
        Duration::from_secs(10),
        "the poller refuses the global NaN",
        || async {
            gw.log_text()
                .contains("autoscaler.maxScaleDownRate: must be greater than 1")
        },
    )
    .await;
    // A valid file again, picked up by the poller alone: by then the poller
    // has read every bad version, and none was parsed twice.
    let other = upstream().await;
    std::fs::write(&gw.config_path, one_service(&[&other], "")).unwrap();
    eventually(
        Duration::from_secs(10),
        "requests go to the new pod",
        || async {
            send(client().get(gw.url("/"))).await.text().await.unwrap() == other.addr.to_string()
        },
    )
    .await;
    let log = gw.log_text();
    assert_eq!(
        log.matches("configuration not reloaded").count(),
        bad.len() + 1,
        "each bad version parsed once:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    // Each refusal is one log line, with the field it names.
    assert!(
        log.lines()
            .any(|line| line.contains("configuration not reloaded")
                && line.contains("autoscaler.maxScaleDownRate")),
        "{log}"
    );
}

/// Exit codes by kind (issue 10): an invalid configuration is 64, a port
/// that cannot be listened on 69, a gateway that cannot be read by `sluice
/// status` 1; each with its reason on stderr.
#[test]
fn each_kind_of_failure_has_its_exit_code() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.yaml");
    let yaml = ConfigBuilder::new().listen(format!("127.0.0.1:{port}"));
    std::fs::write(&config, yaml.yaml()).unwrap();
    let run = |args: &[&str]| {
        let out = sluice().args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let path = config.to_str().unwrap();
    let (code, err) = run(&["gateway", "--config", path]);
    assert_eq!(code, Some(69), "{err}");
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );

    let listen = format!("127.0.0.1:{port}");
    let (code, err) = run(&["predictor", "--port", &port.to_string(), "--log", "warn"]);
    assert_eq!(code, Some(69), "{err}");
    let (code, err) = run(&["sidecar", "--listen", &listen, "--upstream", "127.0.0.1:1"]);
    assert_eq!(code, Some(69), "{err}");

    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let (code, err) = run(&[
        "webhook",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        missing,
        "--tls-key",
        missing,
        "--sidecar-image",
        "sluice:test",
    ]);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("webhook: ") && err.contains("missing.pem"),
        "{err}"
    );

    let (code, err) = run(&["sidecar", "--container-concurrency", "1000000000"]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("containerConcurrency"), "{err}");

    drop(taken);
    let (code, err) = run(&["status", "--admin", &listen]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot reach the gateway's admin"), "{err}");
}
