//! Shared by the provider integration tests: runs `@copilotkit/aimock`
//! (a third-party mock of every provider's wire format, pinned in
//! `tests/package.json`) on a free port over a fixture file, and stops it
//! when dropped.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running aimock server.
pub struct Aimock {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    child: Child,
}

/// The repository's `tests/` folder (aimock's node_modules and the fixtures).
pub fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests")
}

/// A fixture file under `tests/fixtures/aimock/`.
pub fn fixture(name: &str) -> PathBuf {
    tests_dir().join("fixtures/aimock").join(name)
}

impl Aimock {
    /// Starts aimock over `fixtures` with extra CLI flags (chaos rates,
    /// `--strict`). Panics, naming the fix, when aimock is not installed:
    /// `npm ci --prefix tests` (scripts/test.sh runs it).
    pub fn start(fixtures: &Path, extra_args: &[&str]) -> Self {
        let cli = tests_dir().join("node_modules/@copilotkit/aimock/dist/cli.js");
        assert!(
            cli.exists(),
            "aimock is not installed at {}: run `npm ci --prefix tests`",
            cli.display()
        );
        let mut child = Command::new("node")
            .arg(&cli)
            .args(["--port", "0", "--log-level", "info", "--fixtures"])
            .arg(fixtures)
            .args(extra_args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn node (is Node.js installed?)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining after the banner so aimock never blocks on a full pipe.
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(url) = line.split("listening on ").nth(1) {
                        let _ = tx.send(url.trim().trim_end_matches('/').to_owned());
                        sent = true;
                    }
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => Self { url, child },
            Err(_) => {
                let _ = child.kill();
                panic!("aimock did not start within 30 s");
            }
        }
    }
}

impl Drop for Aimock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
