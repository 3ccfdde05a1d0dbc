//! `pipe serve` for the benchmarks: the release binary of the bench's
//! package on a free port of 127.0.0.1, over `dir/pipe.toml`, stopped
//! with SIGTERM when dropped. Included with `#[path]` by the benches of
//! the `pipe` package (`env!("CARGO_BIN_EXE_pipe")` names its binary).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The folder of `pipe.toml` and its data, removed with the server
    /// (not every bench reads it).
    #[allow(dead_code)]
    pub dir: tempfile::TempDir,
}

impl Server {
    /// Starts `pipe serve` on `dir/pipe.toml` and waits until it answers.
    pub async fn start(dir: tempfile::TempDir) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_pipe"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--config",
            ])
            .arg(dir.path().join("pipe.toml"))
            .env("PIPE_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        for _ in 0..300 {
            if reqwest::get(format!("{}/healthz", server.url))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }
}

impl Server {
    /// Peak resident set size of the server so far, in MiB.
    #[allow(dead_code)]
    pub fn peak_rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
