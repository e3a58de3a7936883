//! The admin listener, metrics checked by promtool, and hot reload.

mod support;

use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::*;

#[tokio::test]
async fn admin_endpoints_answer_and_the_data_listener_never_serves_them() {
    let pod = upstream().await;
    let gw = TestGateway::start(&one_service(
        &[&pod],
        "    hosts: [wine.example.org]\n    containerConcurrency: 2\n",
    ))
    .await;
    let c = client();
    assert_eq!(
        c.get(gw.admin_url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(gw.admin_url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let status: serde_json::Value = get_json(gw.admin_url("/status")).await;
    let service = &status["services"][0];
    assert_eq!(service["name"], "redwine-week4");
    assert_eq!(service["url"], format!("http://{HOST}"));
    assert_eq!(service["hosts"][1], "wine.example.org");
    assert_eq!(service["containerConcurrency"], 2);
    assert_eq!(service["pods"][0]["address"], pod.addr.to_string());
    assert_eq!(service["pods"][0]["inFlight"], 0);
    assert_eq!(service["pods"][0]["requests"], 0);

    for path in ["/metrics", "/healthz", "/readyz", "/status"] {
        let r = c.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path} on the data listener");
        let r = send(c.get(gw.url(path))).await;
        assert_eq!(
            r.text().await.unwrap(),
            pod.addr.to_string(),
            "{path} with a service host goes to the model"
        );
    }
}

#[tokio::test]
async fn status_and_metrics_show_live_in_flight_and_queued_counts() {
    let pod = upstream().await;
    let gw = TestGateway::start(&one_service(&[&pod], "    containerConcurrency: 1\n")).await;
    let c = client();
    let slow: Vec<_> = (0..3)
        .map(|_| {
            let (c, url) = (c.clone(), gw.url("/slow?ms=1500"));
            tokio::spawn(async move { send(c.get(url)).await.status() })
        })
        .collect();
    let labels = "{service=\"redwine-week4\",namespace=\"kserve-inference\"}";
    eventually(Duration::from_secs(5), "1 in flight and 2 queued in /metrics", || async {
        let text = get_text(gw.admin_url("/metrics")).await;
        metric(&text, &format!("sluice_in_flight_requests{labels}")) == Some(1.0)
            && metric(&text, &format!("sluice_queued_requests{labels}")) == Some(2.0)
            && metric(
                &text,
                &format!("sluice_pod_in_flight_requests{{service=\"redwine-week4\",namespace=\"kserve-inference\",pod=\"{}\"}}", pod.addr),
            ) == Some(1.0)
    })
    .await;
    let status: serde_json::Value = get_json(gw.admin_url("/status")).await;
    assert_eq!(status["services"][0]["inFlight"], 1);
    assert_eq!(status["services"][0]["queued"], 2);
    assert_eq!(
        status["services"][0]["pods"][0]["requests"], 1,
        "admitted, not queued"
    );
    for s in slow {
        assert_eq!(s.await.unwrap(), 200);
    }
    let text = get_text(gw.admin_url("/metrics")).await;
    assert_eq!(
        metric(&text, "sluice_requests_total{service=\"redwine-week4\",namespace=\"kserve-inference\",code=\"200\"}"),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &text,
            &format!("sluice_request_duration_seconds_count{labels}")
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(&text, &format!("sluice_in_flight_requests{labels}")),
        Some(0.0)
    );
}

#[tokio::test]
async fn metrics_pass_promtool_check_metrics() {
    let pod = upstream().await;
    let gw = TestGateway::start(&one_service(&[&pod], "")).await;
    let c = client();
    // Make every family have samples: a 200, a 404, a proxy error.
    send(c.get(gw.url("/"))).await;
    c.get(gw.url("/"))
        .header("host", "nowhere.example.net")
        .send()
        .await
        .unwrap();
    let text = get_text(gw.admin_url("/metrics")).await;
    for name in [
        "sluice_requests_total",
        "sluice_request_duration_seconds_bucket",
        "sluice_in_flight_requests",
        "sluice_pod_in_flight_requests",
        "sluice_queued_requests",
        "sluice_ready_replicas",
        "sluice_unrouted_requests_total",
    ] {
        assert!(
            text.contains(&format!("\n{name}")),
            "{name} missing from:\n{text}"
        );
    }
    if !have_tool("promtool") {
        return;
    }
    let promtool = "promtool";
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_changed_file_is_reloaded_and_remaining_pods_keep_their_counts() {
    let (a, b) = (upstream().await, upstream().await);
    let gw = TestGateway::start(&one_service(&[&a], "")).await;
    let c = client();
    let service = gw.gateway.shared().routes.load().services()[0].clone();
    // A long request in flight at pod a, across the reload.
    let mut long = send(c.get(gw.url("/download?bytes=1073741824"))).await;
    long.chunk().await.unwrap();
    let pod_a = service.dispatcher().pods()[0].clone();
    assert_eq!(pod_a.in_flight(), 1);
    // A short request leaves a second, idle connection to pod a in the pool.
    send(c.get(gw.url("/"))).await.text().await.unwrap();
    let connections_to_a = a.seen.connections.load(Ordering::SeqCst);
    assert_eq!(connections_to_a, 2);

    std::fs::write(
        &gw.config_path,
        one_service(&[&a, &b], "    hosts: [new.example.org]\n"),
    )
    .unwrap();
    eventually(Duration::from_secs(10), "the new host routes", || async {
        c.get(gw.url("/"))
            .header("host", "new.example.org")
            .send()
            .await
            .unwrap()
            .status()
            == 200
    })
    .await;
    let pods = service.dispatcher().pods();
    assert_eq!(pods.len(), 2);
    assert!(
        std::sync::Arc::ptr_eq(&pods[0], &pod_a),
        "pod a is the same pod, with its count"
    );
    assert_eq!(pods[0].in_flight(), 1);
    // The request in flight is undisturbed.
    let mut more = 0usize;
    for _ in 0..20 {
        more += long.chunk().await.unwrap().unwrap().len();
    }
    assert!(more > 0);
    drop(long);
    eventually(Duration::from_secs(5), "count back to 0", || async {
        pod_a.in_flight() == 0
    })
    .await;
}

#[tokio::test]
async fn a_broken_file_is_rejected_and_the_old_config_keeps_serving() {
    let pod = upstream().await;
    let gw = TestGateway::start(&one_service(&[&pod], "")).await;
    let c = client();
    std::fs::write(&gw.config_path, "services:\n  - name: redwine-week4\n    minReplicas: 5\n    maxReplicas: 2\n    backend: {static: [\"127.0.0.1:1\"]}\n").unwrap();
    let err = gw.gateway.reload().await.unwrap_err().to_string();
    assert!(err.contains("services[0].maxReplicas"), "{err}");
    std::fs::write(&gw.config_path, "services: [ {name: ").unwrap();
    assert!(gw.gateway.reload().await.is_err());
    let r = send(c.get(gw.url("/"))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), pod.addr.to_string());
    let text = get_text(gw.admin_url("/metrics")).await;
    assert!(metric(&text, "sluice_config_reloads_total{result=\"failure\"}").unwrap() >= 2.0);
}
