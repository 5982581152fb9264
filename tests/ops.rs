//! The operator's side: `serve --config FILE` with environment overrides,
//! refusals of bad settings, `--help`, JSON logs, deliveries showing up in
//! `/metrics`, what a first start prints and a private data folder — all on
//! the real binary.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::{Receiver, Store, eventually, spawn};

const FILE_TOKEN: &str = "file-token-abcdefghijklmnop";
const ENV_TOKEN: &str = "env-token-abcdefghijklmnopq";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_webhooks-host"));
    // Nothing from the developer's own environment leaks into these runs.
    for (k, _) in std::env::vars() {
        if k.starts_with("WEBHOOKS_") {
            c.env_remove(k);
        }
    }
    c
}

#[test]
fn a_config_file_with_environment_overrides_runs_and_shows_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir_all(&conf).unwrap();
    let state = conf.join("state");
    // On PostgreSQL the file names the scratch database: `database_url` is
    // read from the file too.
    let store = Store::for_data(&state);
    let database = store.pg.as_ref().map(|db| format!("database_url = \"{}\"", db.url())).unwrap_or_default();
    std::fs::write(
        conf.join("webhooks.toml"),
        format!(
            r#"
{database}
listen = "127.0.0.1:0"
data_dir = "./state"          # relative to this file
mount_path = "/panel/webhooks"
api_token = "{FILE_TOKEN}"
admin_password = "file-password-123"
allowed_hosts = ["127.0.0.1"]
retry_schedule = ["0s", "200ms"]
attempt_timeout = "2s"
retention = "7days"
durability = "full"
log_format = "json"
"#
        ),
    )
    .unwrap();
    // Started from another folder: the file's paths still mean the same.
    let mut cmd = bin();
    cmd.current_dir(dir.path())
        .args(["serve", "--config", "conf/webhooks.toml"])
        .env("WEBHOOKS_API_TOKEN", ENV_TOKEN)
        .env("RUST_LOG", "info");
    let mut h = spawn(cmd, &state);
    assert!(state.join("secret.key").exists(), "data_dir is relative to the file");
    // The tables are where the file says: the SQLite file there, or PostgreSQL.
    assert_eq!(state.join("webhooks.db").exists(), store.pg.is_none());
    h.pg = store.pg;

    let c = reqwest::blocking::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    // The environment's token wins over the file's.
    let get = |token: &str| c.get(format!("{}/api/webhooks", h.base)).bearer_auth(token).send().unwrap().status();
    assert_eq!(get(FILE_TOKEN), 401);
    assert_eq!(get(ENV_TOKEN), 200);
    // The file's mount path.
    let root = c.get(format!("{}/", h.base)).send().unwrap();
    assert_eq!(root.headers()["location"], "/panel/webhooks");
    let admin = c.get(format!("{}/panel/webhooks", h.base)).send().unwrap();
    assert!(admin.headers()["location"].to_str().unwrap().starts_with("/login?next=%2Fpanel%2Fwebhooks"));

    // The file's retry schedule: two attempts, then exhausted.
    let rx = Receiver::start();
    for (name, path) in [("Down", "/status/500"), ("Up", "/ok")] {
        let created = c
            .post(format!("{}/api/webhooks", h.base))
            .bearer_auth(ENV_TOKEN)
            .json(&json!({"name": name, "url": rx.url(path), "events": ["ticket.created"]}))
            .send()
            .unwrap();
        assert_eq!(created.status(), 201);
    }
    let raised = c
        .post(format!("{}/api/events", h.base))
        .bearer_auth(ENV_TOKEN)
        .json(&json!({"type": "ticket.created", "data": {"id": 1, "user_id": 2, "subject": "Hi", "status": "open"}}))
        .send()
        .unwrap();
    assert_eq!(raised.status(), 202);
    rx.wait_for("/status/500", 2, Duration::from_secs(10));
    let metrics = || {
        let r = c.get(format!("{}/metrics", h.base)).bearer_auth(ENV_TOKEN).send().unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
        r.text().unwrap()
    };
    // The other webhook's success may be recorded after the failing one's
    // last attempt: wait for all three outcomes.
    eventually(Duration::from_secs(20), "every attempt is counted", || {
        let m = metrics();
        m.contains("webhooks_delivery_attempts_total{outcome=\"exhausted\"} 1")
            && m.contains("webhooks_delivery_attempts_total{outcome=\"succeeded\"} 1")
            && m.contains("webhooks_attempt_duration_seconds_count{result=\"response\"} 3")
    });
    let m = metrics();
    assert!(m.contains("webhooks_delivery_attempts_total{outcome=\"retrying\"} 1"), "{m}");
    assert!(m.contains("webhooks_delivery_attempts_total{outcome=\"succeeded\"} 1"), "{m}");
    assert!(m.contains("webhooks_events_raised_total{type=\"ticket.created\"} 1"), "{m}");
    assert!(m.contains("webhooks_attempt_duration_seconds_count{result=\"response\"} 3"), "{m}");
    assert!(m.contains("webhooks_queue_depth{state=\"retrying\"} 0"), "{m}");
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(rx.seen_at("/status/500").len(), 2, "the file's schedule has two attempts");
    assert_eq!(h.count("SELECT COUNT(*) FROM deliveries WHERE state = 'exhausted'"), 1);

    // JSON log lines, with the plugin's own lines among them.
    let log = h.log();
    let lines: Vec<serde_json::Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(lines.len() >= 3, "JSON log lines:\n{log}");
    assert!(lines.iter().any(|l| l["target"] == "webhooks::plugin" && l["level"] == "INFO"), "{log}");
    assert!(!log.contains(ENV_TOKEN) && !log.contains(FILE_TOKEN) && !log.contains("file-password-123"));
}

#[test]
fn bad_settings_are_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str)] = &[
        ("listn = \"127.0.0.1:0\"\n", "unknown field `listn`"),
        ("attempt_timeout = \"soon\"\n", "attempt_timeout"),
        ("retry_schedule = [\"1 parsec\"]\n", "retry_schedule"),
        ("mount_path = \"admin\"\n", "mount_path"),
        ("allowed_hosts = [\"10.0.0.0/99\"]\n", "allowed_hosts"),
        ("durability = \"sometimes\"\n", "durability"),
        ("log_format = \"xml\"\n", "log_format"),
        ("listen = 8080\n", "listen"),
        ("admin_user = \"ad\\nmin\"\n", "admin_user: 1 to 128 bytes without control characters"),
    ];
    for (toml, want) in cases {
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, format!("data_dir = \"./d\"\n{toml}")).unwrap();
        let out = bin().args(["serve", "--config"]).arg(&f).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{toml} was accepted");
        assert!(err.contains(want), "{toml}: {err}");
        assert!(!dir.path().join("d").exists(), "{toml}: nothing is created before the settings are valid");
    }
    let out = bin().args(["serve", "--config", "/nonexistent/webhooks.toml"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/webhooks.toml"));
}

/// A `--component` that is not a plugin for this host's contract (here a
/// webhook transformation; a plugin built against `panel:webhooks@0.2.0`
/// fails the same way) is refused at start, in words that name the
/// contract it must speak, with no backtrace, and nothing is served.
#[test]
fn a_component_for_another_contract_is_refused_with_the_contract_named() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("not-a-plugin.wasm");
    std::fs::write(&wasm, support::example_component("transform-slack")).unwrap();
    let out = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("d"))
        .arg("--component")
        .arg(&wasm)
        .env("WEBHOOKS_API_TOKEN", ENV_TOKEN)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started with a component that is not a plugin: {err}");
    assert!(err.contains("panel:webhooks@0.3.0") && err.contains("rebuilt"), "{err}");
    assert!(!err.contains("stack backtrace") && !err.contains("panicked"), "{err}");
}

#[test]
fn help_describes_every_setting() {
    let top = bin().arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&top.stdout).contains("serve"));
    let out = bin().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for env in [
        "WEBHOOKS_CONFIG",
        "WEBHOOKS_LISTEN",
        "WEBHOOKS_DATA_DIR",
        "WEBHOOKS_MOUNT_PATH",
        "WEBHOOKS_API_TOKEN",
        "WEBHOOKS_ALLOWED_HOSTS",
        "WEBHOOKS_RETRY_SCHEDULE",
        "WEBHOOKS_ATTEMPT_TIMEOUT",
        "WEBHOOKS_LEASE",
        "WEBHOOKS_AUTO_DISABLE_AFTER",
        "WEBHOOKS_RETENTION",
        "WEBHOOKS_DURABILITY",
        "WEBHOOKS_CALL_TIMEOUT",
        "WEBHOOKS_LOG_FORMAT",
    ] {
        assert!(help.contains(env), "{env} missing from serve --help");
    }
    // Every key of the example file is a setting `serve` knows.
    let example =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/webhooks.example.toml")).unwrap();
    for line in example.lines().filter(|l| !l.starts_with('#') && l.contains('=')) {
        let key = line.split('=').next().unwrap().trim();
        let flag = format!("--{}", key.replace('_', "-"));
        let flag = if key == "data_dir" { "--data".to_owned() } else { flag };
        assert!(help.contains(&flag), "{key}: {flag} missing from serve --help");
    }
}

/// `serve` as a new user runs it: nothing configured but the data folder (and
/// loopback opened for the test's receiver). Answers the process, its stdout
/// lines as they come, and its stderr (the log) so far.
struct Started {
    child: std::process::Child,
    stdout: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_fresh(data: &std::path::Path) -> Started {
    use std::io::BufRead as _;
    let mut child = bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .env("WEBHOOKS_ALLOWED_HOSTS", "127.0.0.1")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, stdout) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let (err, log) = (child.stderr.take().unwrap(), stderr.clone());
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            log.lock().unwrap().push_str(&(l + "\n"));
        }
    });
    Started { child, stdout, stderr }
}

/// Every folder under `dir` (itself included) 0700, every file 0600.
#[cfg(unix)]
fn modes_not_private(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut wrong = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let mode = m.permissions().mode() & 0o7777;
        let want = if m.is_dir() { 0o700 } else { 0o600 };
        if mode != want || !(m.is_dir() || m.is_file()) {
            wrong.push(format!("{} is {mode:o}", p.display()));
        }
        if m.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    wrong
}

#[cfg(unix)]
#[test]
fn a_first_start_says_what_to_do_next_and_keeps_the_data_folder_private() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let run = start_fresh(&data);
    let mut lines = Vec::new();
    while !lines.last().is_some_and(|l: &String| l.contains("user.created")) {
        lines.push(run.stdout.recv_timeout(Duration::from_secs(120)).expect("the first start's steps"));
    }
    let shown = lines.join("\n");
    let base = lines[0].strip_prefix("webhooks-host listening on ").expect("the address first").to_owned();
    let value = |label: &str| {
        let l = lines.iter().find_map(|l| l.trim().strip_prefix(label)).unwrap_or_else(|| panic!("{label}\n{shown}"));
        l.split_whitespace().next().unwrap().to_owned()
    };
    assert_eq!(value("Sign in:"), format!("{base}{}", support::MOUNT), "{shown}");
    assert_eq!(value("user:"), "admin");
    let password = value("password:");
    let token_file = data.join("api-token");
    assert_eq!(value("API token:"), token_file.display().to_string(), "the file, not the token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert!(!shown.contains(&token), "{shown}");
    assert!(shown.contains(&format!("curl -X POST {base}/api/events")), "{shown}");
    assert!(shown.contains(&format!("Bearer $(cat {})", token_file.display())), "{shown}");

    // The password signs in; the printed event is accepted as printed.
    let admin = support::Admin {
        client: reqwest::blocking::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: base.clone(),
        csrf: String::new(),
    };
    assert_eq!(admin.sign_in("admin", &password).0, 303);
    let rx = Receiver::start();
    let c = reqwest::blocking::Client::new();
    let created = c
        .post(format!("{base}/api/webhooks"))
        .bearer_auth(&token)
        .json(&json!({"name": "CRM", "url": rx.url("/ok"), "events": ["user.created"]}))
        .send()
        .unwrap();
    assert_eq!(created.status(), 201);
    let body = shown.rsplit_once("-d '").unwrap().1.trim_end_matches('\'');
    let raised = c
        .post(format!("{base}/api/events"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(body.to_owned());
    assert_eq!(raised.send().unwrap().status(), 202);
    rx.wait_for("/ok", 1, Duration::from_secs(10));

    // Everything written so far is private: the database with its WAL and
    // shared memory, the key, the token, the password hash, the cache.
    for f in ["webhooks.db", "webhooks.db-wal", "webhooks.db-shm", "secret.key", "api-token"] {
        assert!(data.join(f).is_file(), "{f}");
    }
    // CSRF tokens are keyed from secret.key now (the same on every node).
    assert!(!data.join("host.key").exists());
    assert!(data.join("admin-password.hash").is_file());
    assert!(std::fs::read_dir(data.join("cache")).unwrap().next().is_some(), "a compiled component is cached");
    assert_eq!(modes_not_private(&data), Vec::<String>::new());
    let log = run.stderr.lock().unwrap().clone();
    assert!(!log.contains(&password) && !log.contains(token.trim()), "no secret in the log:\n{log}");
    drop(run);

    // Later starts: one line, the address; nothing secret.
    let run = start_fresh(&data);
    let first = run.stdout.recv_timeout(Duration::from_secs(120)).unwrap();
    assert!(first.starts_with("webhooks-host listening on http://127.0.0.1:"), "{first}");
    assert!(run.stdout.recv_timeout(Duration::from_millis(500)).is_err(), "only one line");
    assert_eq!(modes_not_private(&data), Vec::<String>::new());
}

/// SQLite is a file the node opens itself: it cannot be unreachable, so a
/// SQLite node's `/healthz` stays `ok` even while its database refuses
/// writes (another process holds the file's write lock past the busy
/// timeout). A raise meanwhile is refused as what it is, a busy database
/// (503, not `storage_unavailable`), and goes through once the lock is
/// released (#23: only a database server can be unavailable).
#[test]
fn on_sqlite_healthz_stays_ok_while_the_database_refuses_writes() {
    if support::on_postgres() {
        println!("skipped on PostgreSQL: this locks the SQLite file (tests/postgres.rs stops a server instead)");
        return;
    }
    let h = support::host();
    let healthz = || {
        let r = h.api().get(format!("{}/healthz", h.base)).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let event = |id: &str| json!({"type": "user.created", "id": id, "data": {"id": 1, "email": "ada@example.com"}});
    assert_eq!(h.raise(event("evt-lock-0")).0, 202);
    let lock = h.db();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let (refused, samples) = std::thread::scope(|s| {
        let raising = s.spawn(|| h.raise(event("evt-lock-1")));
        let mut samples = Vec::new();
        while !raising.is_finished() {
            samples.push(healthz());
            std::thread::sleep(Duration::from_millis(200));
        }
        (raising.join().unwrap(), samples)
    });
    assert!(samples.len() >= 5, "the raise waited for the lock: {samples:?}");
    assert!(samples.iter().all(|s| *s == (200, "ok".to_owned())), "/healthz while the file was locked: {samples:?}");
    assert_eq!(refused.0, 503, "{}", refused.1);
    assert_ne!(refused.1["error"]["code"], "storage_unavailable", "{}", refused.1);
    lock.execute_batch("COMMIT").unwrap();
    eventually(Duration::from_secs(20), "the raise goes through once the lock is gone", || {
        h.raise(event("evt-lock-1")).0 == 202
    });
    assert_eq!(healthz(), (200, "ok".to_owned()));
}
