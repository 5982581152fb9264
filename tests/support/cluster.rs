//! A PostgreSQL server of a test's own, which the test may stop and start
//! again: `initdb` in a temporary folder, `pg_ctl` on a free port of
//! 127.0.0.1. The shared server (`.ci/postgres`) cannot be restarted under
//! the other tests' feet; this one is the test's alone, and it is stopped
//! and its folder removed when the value is dropped, a failing test
//! included.
//!
//! PostgreSQL refuses to run as root: as root (CI, the development
//! machines) every `initdb` and `pg_ctl` runs as the `postgres` user
//! (`runuser`), in a folder given to it; as anyone else, as oneself.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The server's binaries: the newest `/usr/lib/postgresql/<version>/bin`
/// (Debian's layout, which `.ci/postgres` installs), or `pg_config --bindir`.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists() && bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let bin = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    bin.join("initdb").exists().then_some(bin)
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// A scratch cluster, running until dropped (or [`ScratchCluster::stop`]ped).
pub struct ScratchCluster {
    bin: PathBuf,
    /// Holds `data/` (the cluster), `log` (the server's log) and the socket.
    dir: tempfile::TempDir,
    pub port: u16,
    as_root: bool,
}

impl ScratchCluster {
    /// Creates and starts a cluster; `None` (saying why) where this machine
    /// has no PostgreSQL binaries, which CI must have (`.ci/postgres`
    /// installs them).
    pub fn start() -> Option<ScratchCluster> {
        let Some(bin) = bin_dir() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the scratch-cluster tests: no initdb/pg_ctl found (see .ci/postgres)"
            );
            eprintln!("skipped: no PostgreSQL binaries (initdb, pg_ctl) on this machine");
            return None;
        };
        let dir = tempfile::Builder::new().prefix("webhooks-pg-").tempdir().unwrap();
        let as_root = running_as_root();
        if as_root {
            let ok = Command::new("chown").arg("postgres:").arg(dir.path()).status().unwrap().success();
            assert!(ok, "chown of {} to postgres", dir.path().display());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let c = ScratchCluster { bin, dir, port, as_root };
        let data = c.data();
        c.run("initdb", &["-D", &data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"]);
        c.start_server();
        Some(c)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    /// The server's own log, for a failing test's report.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// `postgres://postgres@127.0.0.1:<port>`, as [`super::postgres_server`] answers it.
    pub fn server(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// Runs one of the server's programs (as `postgres` when we are root);
    /// panics with its output when it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        // The folder is postgres's; start it from there, not from a working
        // directory that user may not enter.
        cmd.args(args).current_dir(self.dir.path()).stdin(Stdio::null());
        let out = cmd.output().unwrap_or_else(|e| panic!("{}: {e}", exe.display()));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}\n{}\n{}\n--- server log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// `pg_ctl start`, waiting until it accepts connections: TCP on
    /// 127.0.0.1:<port> only, its socket in its own folder.
    fn start_server(&self) {
        let dir = self.dir.path().display().to_string();
        let opts = format!("-c listen_addresses=127.0.0.1 -p {} -k {dir} -c max_connections=100", self.port);
        let log = Path::new(&dir).join("log").display().to_string();
        self.run("pg_ctl", &["start", "-w", "-t", "60", "-D", &self.data(), "-l", &log, "-o", &opts]);
    }

    /// Starts it again after [`ScratchCluster::stop`].
    pub fn start_again(&self) {
        self.start_server();
    }

    /// `pg_ctl stop -m fast`: every session is ended (the clients see their
    /// connection closed) and the server is down when this returns.
    pub fn stop(&self) {
        self.run("pg_ctl", &["stop", "-w", "-t", "60", "-m", "fast", "-D", &self.data()]);
    }

    /// Whether it accepts connections now.
    pub fn answers(&self) -> bool {
        std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_millis(500)).is_ok()
    }
}

impl Drop for ScratchCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
            eprintln!("--- the scratch server's log (last 40 lines):\n{}", tail.join("\n"));
        }
        // Whatever state it is in (the test may have stopped it, or failed
        // half-way): stopped at once, then the folder goes with `dir`.
        let exe = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["stop", "-w", "-t", "30", "-m", "immediate", "-D", &data];
        let mut cmd = if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let _ = cmd.args(args).current_dir(self.dir.path()).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}
