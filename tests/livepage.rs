//! The admin port's `/history` and the live page at `/`: the JSON's shape
//! and that it follows the load; the page in a real headless Chromium,
//! which shows the service and whose plot changes when load arrives.

mod support;

use serde_json::Value;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::config::Service as ServiceConfig;
use support::process::GatewayProcess;
use support::*;

/// Clients that send requests until told to stop (or for at most 60 s).
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<u16>>>,
}

impl Load {
    fn start(clients: usize, url: String, host: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Instant::now() + Duration::from_secs(60);
        let tasks = (0..clients)
            .map(|_| {
                let (stop, url, c) = (stop.clone(), url.clone(), client());
                tokio::spawn(async move {
                    let mut codes = Vec::new();
                    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                        let r = c.post(&url).header("host", host).body(INPUT).send().await;
                        codes.push(r.map_or(0, |r| r.status().as_u16()));
                    }
                    codes
                })
            })
            .collect();
        Load { stop, tasks }
    }

    /// Stops the clients and returns every status code they got.
    async fn stop(self) -> Vec<u16> {
        self.stop.store(true, Ordering::Relaxed);
        let mut codes = Vec::new();
        for task in self.tasks {
            codes.extend(task.await.unwrap());
        }
        codes
    }
}

/// The gateway, stopped with SIGTERM even when the test fails, so that it
/// stops its replica processes (a SIGKILL would leave them behind).
struct Terminating(GatewayProcess);

impl Drop for Terminating {
    fn drop(&mut self) {
        let gw = &mut self.0;
        gw.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while gw.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

const INPUT: &str =
    r#"{"instances": [[7.4, 0.7, 0, 1.9, 0.076, 11, 34, 0.9978, 3.51, 0.56, 9.4]]}"#;

fn samples(history: &Value) -> &Vec<Value> {
    history["services"][0]["samples"].as_array().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_has_a_sample_a_second_and_follows_the_load() {
    let pod = upstream().await;
    let gw = TestGateway::start(&one_service(&[&pod], "")).await;
    let history = poll_until(Duration::from_secs(10), "two samples", || async {
        let history = get_json(gw.admin_url("/history")).await;
        if samples(&history).len() >= 2 {
            Ok(history)
        } else {
            Err(history.to_string())
        }
    })
    .await;
    let service = &history["services"][0];
    assert_eq!(service["name"], "redwine-week4");
    assert_eq!(service["namespace"], "kserve-inference");
    assert_eq!(history["intervalSeconds"], 1);
    let first = &samples(&history)[0];
    for key in ["t", "ready", "desired", "inFlight", "queued", "held", "rps"] {
        assert!(first[key].is_number(), "{key} in {first}");
    }
    assert_eq!(first["panic"], false);
    assert_eq!(first["ready"], 1);
    assert_eq!(first["inFlight"], 0);
    assert!(first["p50"].is_null(), "no request, no latency: {first}");
    let t0 = first["t"].as_u64().unwrap();
    let t1 = samples(&history)[1]["t"].as_u64().unwrap();
    assert!(t1 > t0);
    assert!(history["now"].as_u64().unwrap() >= t1);

    // Requests that take 300 ms, four at a time: the samples show them.
    let load = Load::start(4, gw.url("/slow?ms=300"), HOST);
    let busy = poll_until(Duration::from_secs(15), "a busy sample", || async {
        let history = get_json(gw.admin_url(&format!("/history?since={t0}"))).await;
        samples(&history)
            .iter()
            .find(|s| s["inFlight"].as_u64() >= Some(2) && s["rps"].as_f64() > Some(1.0))
            .filter(|s| s["p50"].as_f64().is_some_and(|p| (0.25..2.0).contains(&p)))
            .cloned()
            .ok_or_else(|| history.to_string())
    })
    .await;
    assert!(busy["p99"].as_f64().unwrap() >= busy["p50"].as_f64().unwrap());
    assert!(load.stop().await.iter().all(|&c| c == 200));

    // `since` keeps what is newer; `service` filters; a bad query is a 400.
    let now = history["now"].as_u64().unwrap();
    let later = get_json(gw.admin_url(&format!("/history?since={now}"))).await;
    assert!(samples(&later).iter().all(|s| s["t"].as_u64() > Some(now)));
    for (query, services) in [
        ("service=redwine-week4", 1),
        ("service=kserve-inference/redwine-week4", 1),
        ("service=other/redwine-week4", 0),
        ("service=nothing", 0),
    ] {
        let reply = get_json(gw.admin_url(&format!("/history?{query}"))).await;
        assert_eq!(
            reply["services"].as_array().unwrap().len(),
            services,
            "{query}"
        );
    }
    let bad = client()
        .get(gw.admin_url("/history?since=yesterday"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("since"));
}

/// The page as Chromium renders it after running its script for a while
/// (virtual time; the polls to the gateway are real).
fn rendered(url: &str, profile: &std::path::Path) -> String {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--window-size=1280,900",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--dump-dom", url])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish rendering {url} within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut dom = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut dom).unwrap();
    dom
}

/// An attribute of the first element that has it, after `after`.
fn attribute<'a>(dom: &'a str, after: &str, name: &str) -> Option<&'a str> {
    let rest = &dom[dom.find(after)?..];
    let start = rest.find(&format!("{name}=\""))? + name.len() + 2;
    rest[start..].split('"').next()
}

/// The distinct heights the in-flight line reaches, from its path.
fn in_flight_heights(dom: &str) -> Vec<String> {
    let d = attribute(dom, "class=\"series inFlight\"", "d").unwrap_or("");
    let mut heights: Vec<String> = d
        .split(['M', 'L'])
        .filter_map(|point| point.split(',').nth(1))
        .map(String::from)
        .collect();
    heights.sort();
    heights.dedup();
    heights
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_page_shows_the_service_and_its_plot_follows_the_load() {
    if !have_tool("chromium") {
        return;
    }
    let args = ["--service-time", "200ms"];
    let service = ServiceConfig::predictor("redwine-week4", "kserve-inference", &args)
        .set("minReplicas", 1)
        .set("maxReplicas", 4)
        .set("scaleTarget", 1);
    let yaml = ConfigBuilder::new()
        .autoscaler("stableWindow", "6s")
        .autoscaler("tickInterval", "1s")
        .service(service)
        .yaml();
    let guard = Terminating(GatewayProcess::start(&yaml));
    let gw = &guard.0;
    let page = gw.admin_url("/");
    let profile = tempfile::tempdir().unwrap();

    eventually(Duration::from_secs(20), "one replica ready", || async {
        let history = get_json(gw.admin_url("/history")).await;
        samples(&history).iter().any(|s| s["ready"] == 1)
    })
    .await;
    let quiet = {
        let (page, profile) = (page.clone(), profile.path().to_owned());
        tokio::task::spawn_blocking(move || rendered(&page, &profile))
            .await
            .unwrap()
    };
    let section = "data-service=\"kserve-inference/redwine-week4\"";
    assert!(
        quiet.contains(section),
        "the page shows the service:\n{quiet}"
    );
    assert!(quiet.contains("<h2>redwine-week4</h2>"));
    assert_eq!(attribute(&quiet, section, "data-peak-load"), Some("0"));
    assert_eq!(in_flight_heights(&quiet).len(), 1, "a flat line at rest");
    assert!(quiet.contains("redwine-week4-1"), "the pods table");

    // Four clients on a model that takes 200 ms: in flight rises, and
    // the autoscaler asks for more replicas.
    let url = gw.url("/v1/models/redwine-week4:predict");
    let load = Load::start(4, url, "redwine-week4.kserve-inference.example.com");
    let busy = poll_until(Duration::from_secs(30), "the plot shows the load", || {
        let (page, profile) = (page.clone(), profile.path().to_owned());
        async move {
            let dom = tokio::task::spawn_blocking(move || rendered(&page, &profile))
                .await
                .unwrap();
            let peak: u64 = attribute(&dom, section, "data-peak-load")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            let desired: u64 = attribute(&dom, section, "data-desired")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if peak >= 2 && desired >= 2 && in_flight_heights(&dom).len() > 1 {
                Ok(dom)
            } else {
                Err(format!("peak {peak}, desired {desired}"))
            }
        }
    })
    .await;
    assert!(busy.contains("scale 1→"), "the decision is on the timeline");
    let codes = load.stop().await;
    assert!(!codes.is_empty() && codes.iter().all(|&c| c == 200));

    // The decisions in /history carry their reasons.
    let history = get_json(gw.admin_url("/history")).await;
    let events = history["services"][0]["events"].as_array().unwrap();
    let scale = events.iter().find(|e| e["kind"] == "scale").unwrap();
    assert_eq!(scale["from"], 1);
    assert!(scale["to"].as_u64() >= Some(2));
    let reason = scale["reason"].as_str().unwrap();
    assert!(
        reason.contains("over the stable window") || reason.contains("over the panic window"),
        "{reason}"
    );
    drop(guard);
}

#[test]
fn the_page_loads_nothing_from_anywhere_else() {
    let page = include_str!("../src/admin/page.html");
    for outside in ["http://", "https://", "src=", "href=", "@import", "url("] {
        assert!(!page.contains(outside), "the page names {outside}");
    }
    // It asks its own gateway, by relative path, for these two only.
    let fetches: Vec<&str> = page
        .match_indices("fetch(")
        .map(|(i, _)| page[i + 6..].split([',', ')']).next().unwrap())
        .collect();
    assert_eq!(fetches, ["`history?since=${since}`", "\"status\""]);
}
