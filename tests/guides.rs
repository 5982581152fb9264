//! The guides' snippets, run as a reader would run them: each script is cut
//! out of its Markdown file, raises a real event through a real
//! `webhooks-host`, and the receiver script verifies the real delivery with
//! the Standard Webhooks library of its language. A language that is not on
//! the machine is skipped — except under CI, which installs them all.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;
use support::{TOKEN, host};

/// The generated secret is what an admin copies into the receiver.
const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// The fenced block titled `title` in `docs/guides/<guide>`.
fn snippet(guide: &str, title: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/guides").join(guide);
    let text = std::fs::read_to_string(&path).unwrap();
    let marker = format!(" title=\"{title}\"\n");
    let start = text.find(&marker).unwrap_or_else(|| panic!("{guide} has no block titled {title}")) + marker.len();
    let end = text[start..].find("\n```").unwrap() + start;
    text[start..end].to_owned() + "\n"
}

fn available(program: &str, arg: &str) -> bool {
    let ok = Command::new(program).arg(arg).output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var_os("CI").is_none(), "CI must have {program} (see .ci/run)");
        eprintln!("skipped: {program} is not installed");
    }
    ok
}

fn run(cmd: &mut Command) -> String {
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
struct Script {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Script {
    fn start(mut cmd: Command, from_stderr: bool) -> Script {
        cmd.env("WEBHOOK_SECRET", SECRET).stdin(Stdio::null());
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

    fn wait_line(&self, prefix: &str) -> String {
        loop {
            let l = self.lines.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("no line {prefix:?}"));
            if let Some(rest) = l.find(prefix).map(|i| &l[i + prefix.len()..]) {
                return rest.trim().to_owned();
            }
        }
    }
}

/// Creates a webhook to `url`, raises through `raise` (the guide's script),
/// and checks the receiver verified exactly that delivery; then a forged one
/// is refused.
fn round_trip(h: &support::Host, receiver: &Script, url: &str, raise: &mut Command) {
    let api = h.api();
    let created = api
        .post(format!("{}/api/webhooks", h.base))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "Guide", "url": url, "events": ["user.created"], "secret": SECRET}))
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let out = run(raise.env("WEBHOOKS_URL", &h.base).env("WEBHOOKS_API_TOKEN", TOKEN));
    let raised: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(raised, json!({"id": "user-42-created", "queued": 1}));
    let verified = receiver.wait_line("verified ");
    let msg_id: String =
        h.db().query_row("SELECT msg_id FROM deliveries WHERE event_id = 'user-42-created'", [], |r| r.get(0)).unwrap();
    assert_eq!(verified, format!("user.created {msg_id}"));
    support::eventually(Duration::from_secs(10), "the receiver's answer recorded", || {
        h.count("SELECT COUNT(*) FROM deliveries WHERE state = 'succeeded'") == 1
    });

    // A forged delivery is refused, and not reported as verified.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let forged = reqwest::blocking::Client::new()
        .post(url)
        .header("webhook-id", "msg_forged")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", "v1,Zm9yZ2VkIHNpZ25hdHVyZSBmb3JnZWQgc2lnbmF0dXJlIQ==")
        .body(r#"{"type":"user.deleted","timestamp":"2026-11-28T00:00:00Z","data":{}}"#)
        .send()
        .unwrap();
    assert_eq!(forged.status(), 400);
    while let Ok(l) = receiver.lines.recv_timeout(Duration::from_millis(500)) {
        assert!(!l.contains("verified"), "a forged delivery was accepted: {l}");
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn workdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn python_guide() {
    if !available("python3", "--version") {
        return;
    }
    // A virtualenv with the library, made once per target folder.
    let dir = workdir("guide-python");
    let py = dir.join("venv/bin/python");
    if !py.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(dir.join("venv")));
    }
    run(Command::new(&py).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "standardwebhooks"]));
    std::fs::write(dir.join("raise_event.py"), snippet("python.md", "raise_event.py")).unwrap();
    std::fs::write(dir.join("receiver.py"), snippet("python.md", "receiver.py")).unwrap();

    let h = host();
    let mut cmd = Command::new(&py);
    cmd.arg(dir.join("receiver.py")).env("PORT", "0");
    let receiver = Script::start(cmd, false);
    let port = receiver.wait_line("listening on ");
    round_trip(&h, &receiver, &format!("http://127.0.0.1:{port}/"), Command::new(&py).arg(dir.join("raise_event.py")));
}

#[test]
fn node_guide() {
    if !available("node", "--version") {
        return;
    }
    let dir = workdir("guide-node");
    if !dir.join("node_modules/standardwebhooks").exists() {
        run(Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "standardwebhooks@1"])
            .current_dir(&dir));
    }
    // Next to node_modules, where `import "standardwebhooks"` resolves.
    std::fs::write(dir.join("raise_event.mjs"), snippet("node.md", "raise_event.mjs")).unwrap();
    std::fs::write(dir.join("receiver.mjs"), snippet("node.md", "receiver.mjs")).unwrap();

    let h = host();
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("receiver.mjs")).env("PORT", "0");
    let receiver = Script::start(cmd, false);
    let port = receiver.wait_line("listening on ");
    round_trip(
        &h,
        &receiver,
        &format!("http://127.0.0.1:{port}/"),
        Command::new("node").arg(dir.join("raise_event.mjs")),
    );
}

#[test]
fn php_guide() {
    if !available("php", "--version") {
        return;
    }
    let dir = workdir("guide-php");
    std::fs::write(dir.join("raise_event.php"), snippet("laravel.md", "raise_event.php")).unwrap();
    std::fs::write(dir.join("verify.php"), snippet("laravel.md", "verify.php")).unwrap();

    let h = host();
    let port = free_port();
    let mut cmd = Command::new("php");
    cmd.args(["-S", &format!("127.0.0.1:{port}")]).arg(dir.join("verify.php"));
    let receiver = Script::start(cmd, true);
    receiver.wait_line("Development Server");
    round_trip(
        &h,
        &receiver,
        &format!("http://127.0.0.1:{port}/"),
        Command::new("php").arg(dir.join("raise_event.php")),
    );
}
