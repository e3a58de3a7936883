//! `sluice status`: the gateway's `/status` as tables, like `kubectl get isvc`
//! and `kubectl get pods`.

use super::Status;
use crate::actuator::Phase;
use std::fmt::Write;

/// One line per service.
pub fn services_table(status: &Status) -> String {
    let mut rows = vec![[
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
        "AGE",
    ]
    .map(String::from)
    .to_vec()];
    for s in &status.services {
        // Like KServe, a service scaled to zero on purpose is ready.
        let ready = s.ready_pods > 0 || s.desired == 0;
        rows.push(vec![
            s.name.clone(),
            s.url.clone(),
            title(ready),
            s.min_replicas.to_string(),
            s.max_replicas.to_string(),
            s.desired.to_string(),
            s.ready_pods.to_string(),
            s.in_flight.to_string(),
            (s.queued).to_string(),
            title(s.panic),
            age(s.age_seconds),
        ]);
    }
    let mut text = render(&rows);
    // Below the table: who leads autoscaling, and any Kubernetes API trouble.
    if status.leader.election {
        let holder = status.leader.holder.as_deref().unwrap_or("nobody");
        let _ = writeln!(
            text,
            "\nautoscaling leader: {holder} (this gateway: {})",
            status.leader.identity
        );
    }
    for problem in &status.kubernetes_problems {
        let _ = writeln!(text, "kubernetes: {problem}");
    }
    for s in &status.services {
        for problem in &s.problems {
            let _ = writeln!(text, "{}/{}: {problem}", s.namespace, s.name);
        }
    }
    text
}

/// One line per replica of every service.
pub fn pods_table(status: &Status) -> String {
    let mut rows = vec![[
        "NAME",
        "READY",
        "STATUS",
        "IN-FLIGHT",
        "RESTARTS",
        "AGE",
        "ADDRESS",
    ]
    .map(String::from)
    .to_vec()];
    for s in &status.services {
        for r in &s.replicas {
            let (ready, state) = match r.phase {
                Phase::Ready => ("1/1", "Running"),
                Phase::Starting => ("0/1", "Starting"),
                Phase::Draining => ("0/1", "Terminating"),
                Phase::Crashed => ("0/1", "CrashLoopBackOff"),
            };
            rows.push(vec![
                r.name.clone(),
                ready.into(),
                state.into(),
                r.in_flight.to_string(),
                r.restarts.to_string(),
                age(r.age_seconds),
                r.address.clone(),
            ]);
        }
    }
    render(&rows)
}

fn title(b: bool) -> String {
    if b { "True" } else { "False" }.into()
}

/// Ages as kubectl prints them: 42s, 3m12s, 2h5m, 4d3h.
pub fn age(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s}s"),
        (0, _, _) => format!("{h}h{m}m"),
        _ => format!("{d}d{h}h"),
    }
}

fn render(rows: &[Vec<String>]) -> String {
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == columns {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}   ", width = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age(42), "42s");
        assert_eq!(age(192), "3m12s");
        assert_eq!(age(7500), "2h5m");
        assert_eq!(age(97200 + 3600 * 2), "1d5h");
    }

    #[test]
    fn tables_align_their_columns() {
        let status: Status = serde_json::from_value(serde_json::json!({
            "listen": "127.0.0.1:30200", "draining": false,
            "services": [{
                "name": "redwine-week4", "namespace": "kserve-inference",
                "url": "http://redwine-week4.kserve-inference.example.com", "hosts": [],
                "minReplicas": 1, "maxReplicas": 8, "containerConcurrency": 0, "desired": 2,
                "readyPods": 1, "inFlight": 3, "queued": 0, "held": 0, "panic": true,
                "stableConcurrency": 1.5, "panicConcurrency": 3.0, "ageSeconds": 65,
                "pods": [],
                "replicas": [
                    {"name": "redwine-week4-1", "address": "127.0.0.1:40001", "phase": "Ready", "inFlight": 3, "restarts": 0, "ageSeconds": 65},
                    {"name": "redwine-week4-2", "address": "127.0.0.1:40002", "phase": "Starting", "inFlight": 0, "restarts": 1, "ageSeconds": 1}
                ]
            }]
        }))
        .unwrap();
        let services = services_table(&status);
        let lines: Vec<&str> = services.lines().collect();
        assert!(lines[0].starts_with("NAME            URL"), "{services}");
        assert!(
            lines[1]
                .contains("True    1     8     2         1      3           0        True    1m5s"),
            "{services}"
        );
        let pods = pods_table(&status);
        assert!(
            pods.contains("redwine-week4-2   0/1     Starting   0           1          1s"),
            "{pods}"
        );
        assert_eq!(lines.len(), 2, "no leader line without an election");
    }

    #[test]
    fn the_leader_and_kubernetes_trouble_show_below_the_table() {
        let status: Status = serde_json::from_value(serde_json::json!({
            "listen": "0.0.0.0:8080", "draining": false, "services": [],
            "leader": {"election": true, "identity": "sluice-7d9-abc", "holder": "sluice-7d9-xyz", "isLeader": false},
            "kubernetesProblems": ["lease sluice-autoscaler: failing for 3s: connection refused"]
        }))
        .unwrap();
        let text = services_table(&status);
        assert!(
            text.contains("autoscaling leader: sluice-7d9-xyz (this gateway: sluice-7d9-abc)\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "kubernetes: lease sluice-autoscaler: failing for 3s: connection refused\n"
            ),
            "{text}"
        );
    }
}
