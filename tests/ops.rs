//! The operator's side: `serve --config FILE` with environment overrides,
//! refusals of bad settings, `--help`, JSON logs, and deliveries showing up
//! in `/metrics` — all on the real binary.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::{Receiver, eventually, spawn};

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
    std::fs::write(
        conf.join("webhooks.toml"),
        format!(
            r#"
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
    let state = conf.join("state");
    let h = spawn(cmd, &state);
    assert!(state.join("webhooks.db").exists(), "data_dir is relative to the file");

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
    eventually(Duration::from_secs(10), "the exhausted attempt is counted", || {
        metrics().contains("webhooks_delivery_attempts_total{outcome=\"exhausted\"} 1")
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
