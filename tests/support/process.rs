//! The real `sluice` binary as a child process, stopped by PID when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct GatewayProcess {
    pub child: Child,
    pub data: SocketAddr,
    pub admin: SocketAddr,
    pub config_path: PathBuf,
    pub log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

pub fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

/// sluice, started by a shell that first runs `ulimit {ulimit_args}` (e.g.
/// `-n 64`, or `-S -n 256` for the soft limit alone); arguments follow.
pub fn with_file_limit(ulimit_args: &str) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit {ulimit_args} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_sluice"));
    command
}

impl GatewayProcess {
    /// Starts `sluice gateway` on `yaml` and waits for its startup line.
    pub fn start(yaml: &str) -> GatewayProcess {
        Self::start_with_env(yaml, &[])
    }

    /// As `start`, with extra environment variables.
    pub fn start_with_env(yaml: &str, env: &[(&str, &std::ffi::OsStr)]) -> GatewayProcess {
        let mut command = sluice();
        command.envs(env.iter().copied());
        Self::start_command(yaml, command)
    }

    /// As `start`, with the open file limit (soft and hard) set to `limit`.
    pub fn start_with_file_limit(yaml: &str, limit: u64) -> GatewayProcess {
        Self::start_command(yaml, with_file_limit(&format!("-n {limit}")))
    }

    /// Runs `command` (sluice, or a wrapper of it) with `gateway --config`.
    fn start_command(yaml: &str, mut command: Command) -> GatewayProcess {
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("sluice.yaml");
        std::fs::write(&config_path, yaml).unwrap();
        let mut child = command
            .args(["gateway", "--config"])
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn({
            let log = log.clone();
            move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let (data, admin) = loop {
            let text = log.lock().unwrap().clone();
            if let Some(line) = text.lines().find(|l| l.contains("sluice gateway started")) {
                break (field(line, "listen="), field(line, "admin="));
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("gateway exited with {status}:\n{text}");
            }
            assert!(Instant::now() < deadline, "gateway did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(20));
        };
        GatewayProcess {
            child,
            data,
            admin,
            config_path,
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.data, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Resident set size now and at its peak, in KiB, from /proc.
    pub fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let read = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap()
        };
        (read("VmRSS:"), read("VmHWM:"))
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An address from the startup line: `listen=ADDR` as text, or
/// `"listen":"ADDR"` as JSON (`--log-format json`).
fn field(line: &str, key: &str) -> SocketAddr {
    let json_key = format!("\"{}\":\"", key.trim_end_matches('='));
    let (start, end) = match line.find(key) {
        Some(at) => (at + key.len(), [' ', '\t']),
        None => {
            let at = line
                .find(&json_key)
                .unwrap_or_else(|| panic!("{key} in {line}"));
            (at + json_key.len(), ['"', '"'])
        }
    };
    line[start..].split(end).next().unwrap().parse().unwrap()
}

/// `sluice predictor` as a child process on 127.0.0.1 port 0, stopped when dropped.
pub struct PredictorProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl PredictorProcess {
    /// Starts `sluice predictor --port 0` with `args` added, and waits for
    /// its startup line (which names the port it bound).
    pub fn start(args: &[&str]) -> PredictorProcess {
        let mut child = sluice()
            .args(["predictor", "--port", "0", "--log", "info"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (lines, started) = std::sync::mpsc::channel();
        // Reads stderr to its end, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut log = String::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match started.recv_timeout(left) {
                Ok(line) if line.contains("sluice predictor") && line.contains("started") => {
                    break field(&line, "addr=");
                }
                Ok(line) => {
                    log.push_str(&line);
                    log.push('\n');
                }
                Err(_) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!("the predictor did not start ({status:?}):\n{log}");
                }
            }
        };
        PredictorProcess { child, addr }
    }
}

impl Drop for PredictorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
