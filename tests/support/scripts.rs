//! Running the snippets a reader copies (docs/guides, the receiver code on
//! the history page) as real programs: the language's tools, a receiver
//! script whose output lines the test reads. A language that is not on the
//! machine is skipped — except under CI, which installs them all.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Whether `program` runs; under CI a missing one fails the test.
pub fn available(program: &str, arg: &str) -> bool {
    let ok = Command::new(program).arg(arg).output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "CI must have {program} (see .ci/run)");
        eprintln!("skipped: {program} is not installed");
    }
    ok
}

/// Runs `cmd` to success; answers its stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A receiver script; its lines (stdout or stderr) arrive on the channel.
pub struct Script {
    child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Script {
    /// Starts `cmd` (its environment already set) reading one of its outputs.
    pub fn start(mut cmd: Command, from_stderr: bool) -> Script {
        cmd.stdin(Stdio::null());
        if from_stderr {
            cmd.stderr(Stdio::piped()).stdout(Stdio::null());
        } else {
            cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        }
        let mut child = cmd.spawn().unwrap();
        let out: Box<dyn std::io::Read + Send> =
            if from_stderr { Box::new(child.stderr.take().unwrap()) } else { Box::new(child.stdout.take().unwrap()) };
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Script { child, lines }
    }

    /// The rest of the first line containing `prefix`, after it.
    pub fn wait_line(&self, prefix: &str) -> String {
        loop {
            let l = self.lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("no line {prefix:?}"));
            if let Some(rest) = l.find(prefix).map(|i| &l[i + prefix.len()..]) {
                return rest.trim().to_owned();
            }
        }
    }

    /// Fails if any line containing `needle` arrives within `quiet`.
    pub fn never_says(&self, needle: &str, quiet: Duration) {
        while let Ok(l) = self.lines.recv_timeout(quiet) {
            assert!(!l.contains(needle), "the receiver said {needle:?}: {l}");
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A folder under the target's temp dir, kept between runs.
pub fn workdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A Python with the `standardwebhooks` library (a virtualenv, made once per
/// target folder); None when python3 is missing outside CI.
pub fn python_with_standardwebhooks() -> Option<PathBuf> {
    if !available("python3", "--version") {
        return None;
    }
    let dir = workdir("guide-python");
    let py = dir.join("venv/bin/python");
    if !py.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(dir.join("venv")));
    }
    run(Command::new(&py).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "standardwebhooks"]));
    Some(py)
}

/// A folder whose `node_modules` has `standardwebhooks`: a script written
/// there imports it. None when node is missing outside CI.
pub fn node_dir_with_standardwebhooks() -> Option<PathBuf> {
    if !available("node", "--version") {
        return None;
    }
    let dir = workdir("guide-node");
    if !dir.join("node_modules/standardwebhooks").exists() {
        run(Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "standardwebhooks@1"])
            .current_dir(&dir));
    }
    Some(dir)
}
