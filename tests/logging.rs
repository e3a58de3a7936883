//! The real binary's log: `--log-format json` parsed line by line, the
//! access log's fields, `RUST_LOG` and its precedence, an invalid filter;
//! and `sluice status --watch` refreshing until Ctrl-C.

mod support;

use serde_json::Value;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::process::{sluice, GatewayProcess};
use support::*;

/// Every line of `log` as JSON; a line that is not JSON fails the test.
fn json_lines(log: &str) -> Vec<Value> {
    log.lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

fn access_lines(log: &str) -> Vec<Value> {
    json_lines(log)
        .into_iter()
        .filter(|line| line["target"] == "sluice::access")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_log_has_an_access_line_per_request_with_its_fields() {
    let pod = upstream().await;
    let yaml = one_service(&[&pod], "    containerConcurrency: 1\n");
    let env: [(&str, &OsStr); 2] = [
        ("SLUICE_LOG_FORMAT", OsStr::new("json")),
        ("SLUICE_ACCESS_LOG", OsStr::new("true")),
    ];
    let gw = GatewayProcess::start_with_env(&yaml, &env);
    let started = json_lines(&gw.log_text());
    let startup = started
        .iter()
        .find(|line| line["message"] == "sluice gateway started")
        .expect("the startup line");
    assert_eq!(startup["level"], "INFO");
    assert_eq!(startup["target"], "sluice::gateway");
    assert!(startup["timestamp"].is_string(), "{startup}");

    // Two at once at a limit of one: the second waits in the queue.
    let c = client();
    let slow = |id: &'static str| {
        let request = c.get(gw.url("/slow?ms=300")).header("x-request-id", id);
        tokio::spawn(async move { send(request).await.status() })
    };
    let first = slow("first-1");
    poll_until(
        Duration::from_secs(5),
        "the first request at the pod",
        || {
            let busy = pod.seen.in_flight.load(std::sync::atomic::Ordering::SeqCst);
            async move {
                (busy == 1)
                    .then_some(())
                    .ok_or(format!("{busy} at the pod"))
            }
        },
    )
    .await;
    let second = slow("second-2");
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(second.await.unwrap(), 200);
    let unknown = send(
        c.get(gw.url("/nowhere"))
            .header("host", "nobody.example.com"),
    )
    .await;
    assert_eq!(unknown.status(), 404);

    let lines = poll_until(Duration::from_secs(5), "three access lines", || {
        let lines = access_lines(&gw.log_text());
        async move {
            (lines.len() == 3)
                .then_some(lines.clone())
                .ok_or(format!("{lines:?}"))
        }
    })
    .await;
    let by_id = |id: &str| {
        lines
            .iter()
            .find(|line| line["request_id"] == id)
            .unwrap_or_else(|| panic!("{id} in {lines:?}"))
            .clone()
    };
    let first = by_id("first-1");
    assert_eq!(first["level"], "INFO");
    assert_eq!(first["message"], "request");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["host"], HOST);
    assert_eq!(first["path"], "/slow?ms=300");
    assert_eq!(first["status"], 200);
    assert_eq!(first["service"], "redwine-week4");
    assert_eq!(first["pod"], pod.addr.to_string());
    assert_eq!(first["client"], "127.0.0.1");
    assert_eq!(first["held_ms"], 0.0);
    assert_eq!(first["queued_ms"], 0.0);
    assert!(first["duration_ms"].as_f64().unwrap() >= 300.0, "{first}");

    let second = by_id("second-2");
    let queued = second["queued_ms"].as_f64().unwrap();
    assert!(queued > 0.0, "the second waited for the slot: {second}");
    assert!(
        second["duration_ms"].as_f64().unwrap() >= queued,
        "{second}"
    );

    let unrouted = lines
        .iter()
        .find(|line| line["status"] == 404)
        .expect("the unrouted request's line");
    assert_eq!(unrouted["host"], "nobody.example.com");
    assert_eq!(unrouted["path"], "/nowhere");
    assert!(unrouted.get("service").is_none(), "{unrouted}");
    assert!(unrouted.get("pod").is_none(), "{unrouted}");
    assert!(unrouted["request_id"]
        .as_str()
        .is_some_and(|id| id.len() == 36));
}

/// Starts a gateway on one pod with `env`, sends one request, stops it with
/// SIGTERM and gives back everything it logged.
async fn one_request_logged_with(env: &[(&str, &OsStr)]) -> String {
    let pod = upstream().await;
    let mut gw = GatewayProcess::start_with_env(&one_service(&[&pod], ""), env);
    assert_eq!(send(client().get(gw.url("/"))).await.status(), 200);
    gw.signal("TERM");
    let exit = wait_for_exit(&mut gw.child, Duration::from_secs(10), "the gateway exits").await;
    assert!(exit.success(), "{exit}");
    // The reader thread has the last lines once stderr is closed.
    let log = gw.log.clone();
    poll_until(
        Duration::from_secs(5),
        "the log up to the exit",
        move || {
            let text = log.lock().unwrap().clone();
            async move {
                text.contains("all requests finished")
                    .then_some(())
                    .ok_or(text)
            }
        },
    )
    .await;
    gw.log_text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_shows_and_hides_targets_and_the_flag_wins_over_it() {
    // RUST_LOG names the access log: it is on (text format, by default).
    let named = OsStr::new("info,sluice::access=info");
    let log = one_request_logged_with(&[("RUST_LOG", named)]).await;
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("sluice::access"))
        .collect();
    assert_eq!(access.len(), 1, "{log}");
    assert!(
        access[0].contains("status=200") && access[0].contains("method=GET"),
        "{log}"
    );

    // A blanket debug does not switch the access log on, but shows debug lines.
    let log = one_request_logged_with(&[("RUST_LOG", OsStr::new("debug"))]).await;
    assert!(!log.contains("sluice::access"), "{log}");
    assert!(log.contains("DEBUG"), "{log}");

    // SLUICE_LOG wins over RUST_LOG.
    let env = [
        ("RUST_LOG", named),
        ("SLUICE_LOG", OsStr::new("info,sluice::access=off")),
    ];
    let log = one_request_logged_with(&env).await;
    assert!(!log.contains("sluice::access"), "{log}");
}

#[test]
fn rust_log_reaches_the_libraries_targets() {
    // `sluice status` against nothing: hyper_util's client says what it tries.
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let out = sluice()
            .envs(env.iter().copied())
            .env_remove("SLUICE_LOG")
            .args(args)
            .args(["status", "--admin", "127.0.0.1:1"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        String::from_utf8(out.stderr).unwrap()
    };
    let traced = run(&[("RUST_LOG", "hyper_util=trace")], &[]);
    assert!(traced.contains("hyper_util"), "{traced}");
    let quiet = run(&[("RUST_LOG", "hyper_util=trace")], &["--log", "warn"]);
    assert!(!quiet.contains("hyper_util"), "{quiet}");
    assert!(
        quiet.contains("cannot reach the gateway's admin"),
        "{quiet}"
    );
}

#[test]
fn an_invalid_filter_is_a_usage_error_naming_it() {
    for (env, args) in [
        (("RUST_LOG", "sluice=loud"), vec![]),
        (("SLUICE_LOG", "sluice=loud"), vec![]),
        (("RUST_LOG", "info"), vec!["--log", "sluice=loud"]),
    ] {
        let out = sluice()
            .env_remove("SLUICE_LOG")
            .env(env.0, env.1)
            .args(&args)
            .args(["check", "--config", "config/local.yaml"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{env:?} {args:?}: {err}");
        assert!(err.contains("invalid log filter \"sluice=loud\""), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let out = sluice()
        .args([
            "--log-format",
            "xml",
            "check",
            "--config",
            "config/local.yaml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("text, json"));
}

/// `sluice status --watch` as a child, its stdout and stderr collected.
struct Watching {
    child: std::process::Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Watching {
    fn start(admin: &str) -> Watching {
        let mut child = sluice()
            .args(["status", "-w", "--interval", "100ms", "--admin", admin])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let collect = |stream: Box<dyn std::io::Read + Send>| {
            let text = Arc::new(Mutex::new(String::new()));
            let sink = text.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut sink = sink.lock().unwrap();
                    sink.push_str(&line);
                    sink.push('\n');
                }
            });
            text
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        Watching {
            child,
            stdout,
            stderr,
        }
    }

    /// Waits until `text` (stdout or stderr) shows `what` `times` times.
    async fn until_seen(text: &Arc<Mutex<String>>, what: &str, times: usize) -> String {
        let text = text.clone();
        let what = what.to_string();
        poll_until(Duration::from_secs(10), "refreshes", move || {
            let seen = text.lock().unwrap().clone();
            let count = seen.matches(&what).count();
            async move { (count >= times).then_some(seen.clone()).ok_or(seen) }
        })
        .await
    }

    /// Ctrl-C, and the exit code.
    async fn interrupt(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-s", "INT", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
        wait_for_exit(
            &mut self.child,
            Duration::from_secs(5),
            "status --watch exits",
        )
        .await
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_prints_a_table_each_interval_until_ctrl_c() {
    let pod = upstream().await;
    let gw = GatewayProcess::start(&one_service(&[&pod], ""));
    let mut watching = Watching::start(&gw.admin.to_string());
    let seen = Watching::until_seen(&watching.stdout, "NAME", 3).await;
    // Not a terminal: no escape codes, each table after a blank line.
    assert!(!seen.contains('\x1b'), "{seen:?}");
    let tables: Vec<&str> = seen.split("\n\n").collect();
    assert!(tables.len() >= 3, "{seen}");
    for table in &tables[..3] {
        assert!(table.starts_with("NAME"), "{seen}");
        assert!(table.contains("redwine-week4"), "{seen}");
    }
    let exit = watching.interrupt().await;
    assert!(exit.success(), "{exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_keeps_trying_a_gateway_that_is_down() {
    let mut watching = Watching::start("127.0.0.1:1");
    let errors =
        Watching::until_seen(&watching.stderr, "cannot reach the gateway's admin", 2).await;
    assert!(errors.contains("retrying"), "{errors}");
    assert!(
        watching.child.try_wait().unwrap().is_none(),
        "still running"
    );
    assert_eq!(watching.stdout.lock().unwrap().as_str(), "");
    let exit = watching.interrupt().await;
    assert!(exit.success(), "{exit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_logs_json_and_its_access_lines_from_its_flags() {
    let model = upstream().await;
    let mut child = sluice()
        .env_remove("SLUICE_LOG")
        .args(["--log-format", "json", "--access-log", "sidecar"])
        .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--upstream", &model.addr.to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let _stopped = KillOnDrop(child);
    let started: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(started["message"], "sluice sidecar started", "{started}");
    let listen = started["listen"].as_str().unwrap().to_string();
    let r = send(
        client()
            .post(format!("http://{listen}/echo"))
            .header("x-request-id", "side-1")
            .body("hi"),
    )
    .await;
    assert_eq!(r.status(), 200);
    let access = tokio::task::spawn_blocking(move || {
        lines
            .map(|line| serde_json::from_str::<Value>(&line.unwrap()).unwrap())
            .find(|line| line["target"] == "sluice::access")
    });
    let access = tokio::time::timeout(Duration::from_secs(5), access)
        .await
        .expect("an access line")
        .unwrap()
        .expect("an access line before stderr closed");
    assert_eq!(access["request_id"], "side-1");
    assert_eq!(access["method"], "POST");
    assert_eq!(access["path"], "/echo");
    assert_eq!(access["status"], 200);
    assert_eq!(access["pod"], model.addr.to_string());
}

/// A child process stopped when the test ends, passed or failed.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
