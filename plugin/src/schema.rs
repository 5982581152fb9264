//! The plugin's schema and its migrations.
//!
//! SQL here stays within what SQLite and PostgreSQL share (standard types,
//! `RETURNING`, numbered `?N` parameters, partial indexes) wherever it can.
//! Times are integer milliseconds since the Unix epoch; flags are integers
//! 0/1 on both engines, so every value reads back the same.
//!
//! SQLite databases grew one migration at a time ([`MIGRATIONS`]). A
//! PostgreSQL database starts at [`POSTGRES_BASELINE_VERSION`] in one step
//! ([`POSTGRES_BASELINE`]: the same tables, indexes and counter as SQLite has
//! after that many migrations, in PostgreSQL's types) and records that
//! version, so every later migration applies to both engines.

use crate::host::{Dialect, Host, Value, transaction};

/// Each entry upgrades the schema by one version; never edit a shipped one.
/// Entries past [`POSTGRES_BASELINE_VERSION`] run on both engines: keep
/// them to the shared subset (or branch on `host.dialect()` in [`migrate`]),
/// and write `BIGINT` for a 64-bit integer column — SQLite reads it as its
/// `INTEGER`, PostgreSQL's `INTEGER` is 32 bits (times in ms overflow it).
/// `{bytes}` stands for the binary type (`BLOB`, `BYTEA`; see [`for_dialect`]).
/// `tests/postgres.rs` compares the two schemas column by column.
const MIGRATIONS: &[&str] = &[
    // 1: webhooks, events, the outbox and its attempts.
    "
    CREATE TABLE webhooks (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        url TEXT NOT NULL,
        secret TEXT,
        enabled INTEGER NOT NULL DEFAULT 1,
        disabled_reason TEXT,
        disabled_at INTEGER,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        last_event_type TEXT,
        last_event_at INTEGER,
        last_status INTEGER,
        last_ok INTEGER
    );
    CREATE TABLE webhook_events (
        webhook_id INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
        event_type TEXT NOT NULL,
        PRIMARY KEY (webhook_id, event_type)
    );
    CREATE INDEX webhook_events_by_type ON webhook_events (event_type, webhook_id);
    CREATE TABLE events (
        id TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        occurred_at INTEGER NOT NULL,
        data TEXT NOT NULL,
        raised_at INTEGER NOT NULL
    );
    CREATE TABLE deliveries (
        id INTEGER PRIMARY KEY,
        webhook_id INTEGER NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
        event_id TEXT NOT NULL REFERENCES events(id),
        msg_id TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER,
        lease_until INTEGER,
        last_status INTEGER,
        last_error TEXT,
        created_at INTEGER NOT NULL,
        UNIQUE (event_id, webhook_id)
    );
    CREATE INDEX deliveries_due ON deliveries (next_attempt_at)
        WHERE state IN ('pending', 'retrying');
    CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, id);
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        delivery_id INTEGER NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
        webhook_id INTEGER NOT NULL,
        attempt_no INTEGER NOT NULL,
        attempted_at INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        request_headers TEXT NOT NULL,
        response_status INTEGER,
        response_headers TEXT,
        response_body TEXT,
        response_body_size INTEGER,
        error TEXT,
        success INTEGER NOT NULL
    );
    CREATE INDEX attempts_history ON attempts (webhook_id, attempted_at DESC, id DESC);
    CREATE INDEX attempts_by_delivery ON attempts (delivery_id, id);
    ",
    // 2: auto-disable needs the start of the current failure streak.
    "ALTER TABLE webhooks ADD COLUMN failing_since INTEGER;",
    // 3: leased rows are few; counting them per webhook must not scan the rest.
    "CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE lease_until IS NOT NULL;",
    // 4: secrets sealed by the host (AEAD), and rotation. Plaintext `secret`
    // values are sealed by `seal_plaintext_secrets` and cleared.
    "ALTER TABLE webhooks ADD COLUMN secret_sealed BLOB;
     ALTER TABLE webhooks ADD COLUMN secret_set_at INTEGER;
     ALTER TABLE webhooks ADD COLUMN prev_secret_sealed BLOB;
     ALTER TABLE webhooks ADD COLUMN prev_secret_until INTEGER;",
    // 5: sealed secrets hold the signing key's bytes, which the host signs
    // with; rows sealed before hold the secret text and are resealed by
    // `reseal_key_bytes`. No table changes.
    "SELECT 1;",
    // 6: due rows indexed per webhook, so that claiming walks only the front
    // of each webhook that has room under its in-flight bound, never the
    // backlog of one that has none (see `pipeline::claim`).
    "DROP INDEX IF EXISTS deliveries_due;
     CREATE INDEX deliveries_due ON deliveries (webhook_id, next_attempt_at)
        WHERE state IN ('pending', 'retrying');",
    // 7: the dashboard counts each webhook's retrying deliveries and shows the
    // next retry; retrying rows are few, a webhook's deliveries many (the
    // count scanned all of them on every page view).
    "CREATE INDEX IF NOT EXISTS deliveries_retrying ON deliveries (webhook_id, next_attempt_at) WHERE state = 'retrying';",
    // 8: webhook ids are never reused. A row id alone comes back after the
    // newest webhook is deleted, and a bookmark or a panel's stored id would
    // then open another webhook. (A counter table rather than AUTOINCREMENT:
    // no table rebuild on upgrade.)
    "CREATE TABLE IF NOT EXISTS id_counters (name TEXT PRIMARY KEY, last INTEGER NOT NULL);
     INSERT INTO id_counters (name, last) SELECT 'webhooks', COALESCE(MAX(id), 0) FROM webhooks
        WHERE true ON CONFLICT (name) DO NOTHING;",
    // 9: the create form carries a one-time id; the webhook it created keeps
    // it, so Back + resubmit finds that webhook instead of making a second.
    "ALTER TABLE webhooks ADD COLUMN form_id TEXT;
     CREATE UNIQUE INDEX IF NOT EXISTS webhooks_form_id ON webhooks (form_id) WHERE form_id IS NOT NULL;",
    // 10: the health view's hourly rollup (see `health`): per webhook, UTC
    // hour (its start, ms) and latency bucket (`health::BOUNDS_MS`; -1: no
    // response), the attempts and successes, kept by `record_attempts` and pruned
    // with the history. Backfilled from the attempts there are, test sends
    // excepted; the CASE is `health::bucket` (held to it by a test). Built
    // afresh when run again, so its counts never double.
    "CREATE TABLE IF NOT EXISTS attempt_rollups (
        webhook_id INTEGER NOT NULL,
        hour INTEGER NOT NULL,
        bucket INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        successes INTEGER NOT NULL,
        PRIMARY KEY (webhook_id, hour, bucket)
     );
     CREATE INDEX IF NOT EXISTS attempt_rollups_by_hour ON attempt_rollups (hour);
     DELETE FROM attempt_rollups;
     INSERT INTO attempt_rollups (webhook_id, hour, bucket, attempts, successes)
        SELECT a.webhook_id, a.attempted_at / 3600000 * 3600000,
            CASE WHEN a.response_status IS NULL THEN -1
                 WHEN a.duration_ms <= 1 THEN 0 WHEN a.duration_ms <= 2 THEN 1 WHEN a.duration_ms <= 5 THEN 2
                 WHEN a.duration_ms <= 10 THEN 3 WHEN a.duration_ms <= 20 THEN 4 WHEN a.duration_ms <= 50 THEN 5
                 WHEN a.duration_ms <= 100 THEN 6 WHEN a.duration_ms <= 200 THEN 7 WHEN a.duration_ms <= 500 THEN 8
                 WHEN a.duration_ms <= 1000 THEN 9 WHEN a.duration_ms <= 2000 THEN 10
                 WHEN a.duration_ms <= 5000 THEN 11 WHEN a.duration_ms <= 10000 THEN 12
                 WHEN a.duration_ms <= 20000 THEN 13 WHEN a.duration_ms <= 50000 THEN 14 ELSE 15 END,
            COUNT(*), SUM(a.success)
        FROM attempts a
        WHERE NOT EXISTS (SELECT 1 FROM deliveries d JOIN events e ON e.id = d.event_id
                          WHERE d.id = a.delivery_id AND e.type = 'test.webhook')
        GROUP BY 1, 2, 3;",
    // 11: one value sealed with the host's key, so that a node started with
    // another key is refused at start (see `check_key`). Kept when run again.
    "CREATE TABLE IF NOT EXISTS key_check (
        id BIGINT PRIMARY KEY CHECK (id = 1),
        sealed {bytes} NOT NULL
     );",
    // 12: `serve`'s admin sessions, shared by every node on the database
    // (see `sessions`). `key` is the host's keyed hash of the cookie.
    "CREATE TABLE IF NOT EXISTS admin_sessions (
        key TEXT PRIMARY KEY,
        user_name TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        seen_at BIGINT NOT NULL
     );
     CREATE INDEX IF NOT EXISTS admin_sessions_user ON admin_sessions (user_name, seen_at);",
    // 13: nodes that share a PostgreSQL database claim side by side (#23):
    // each lease names the node that took it, so a node counts only its own
    // leases against its share of a webhook's bound, and each delivering
    // node keeps a heartbeat row, so the others know how many share it.
    // (SQLite has one node; it fills neither.)
    "ALTER TABLE deliveries ADD COLUMN lease_owner TEXT;
     CREATE TABLE IF NOT EXISTS nodes (
        id TEXT PRIMARY KEY,
        seen_at BIGINT NOT NULL
     );",
    // 14: per-webhook controls (#24). `custom_headers`: a JSON array of
    // {name, value} or {name, sealed} (secret-looking values sealed with the
    // host's key); `payload_filter`: a JSONPath condition on the event's
    // data; `failing_noticed`: the failure streak (its `failing_since`) a
    // `webhook.failing` notice was raised for, so each streak raises one.
    // `filtered_events`: which events a webhook's filter kept from it, and
    // under which filter; pruned with the history.
    "ALTER TABLE webhooks ADD COLUMN custom_headers TEXT;
     ALTER TABLE webhooks ADD COLUMN payload_filter TEXT;
     ALTER TABLE webhooks ADD COLUMN failing_noticed BIGINT;
     CREATE TABLE IF NOT EXISTS filtered_events (
        webhook_id BIGINT NOT NULL,
        event_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        filtered_at BIGINT NOT NULL,
        filter TEXT NOT NULL,
        PRIMARY KEY (webhook_id, event_id)
     );
     CREATE INDEX IF NOT EXISTS filtered_events_recent ON filtered_events (webhook_id, filtered_at);
     CREATE INDEX IF NOT EXISTS filtered_events_by_time ON filtered_events (filtered_at);",
    // 15 (#24, part 2): a rate limit per
    // webhook (deliveries per second, NULL for none) and its token bucket,
    // in a narrow table of its own so that the claim's writes to it never
    // contend with the webhook row's bookkeeping. `tokens` counts
    // thousandths of a delivery (integers: the same arithmetic on both
    // engines, exact), as of `at_ms`; `held_at` is the last time the limit
    // held a due delivery back (the dashboard's badge). A row exists only
    // for a limited webhook (see `outbox::bucket`).
    // The checks bound what the claim's arithmetic reads (no overflow, no
    // division by zero), whatever wrote the row.
    "ALTER TABLE webhooks ADD COLUMN rate_limit BIGINT CHECK (rate_limit BETWEEN 1 AND 10000);
     CREATE TABLE IF NOT EXISTS webhook_buckets (
        webhook_id BIGINT PRIMARY KEY,
        tokens BIGINT NOT NULL CHECK (tokens BETWEEN 0 AND 2000000),
        at_ms BIGINT NOT NULL CHECK (at_ms BETWEEN 0 AND 253402300800000),
        held_at BIGINT
     );",
    // 16 (#24, part 4): a webhook's transformation, a WebAssembly component
    // (at most 1 MiB) the host runs on each delivery before signing. Its
    // bytes live here, so that every node of a database, and a restarted
    // host, can load it; `digest` (SHA-256, hex) is what the host caches
    // it under, and what a delivery's build reads (never the bytes, unless
    // the host asks for them). A webhook has at most one. On each attempt,
    // `transform`: what the transformation made of it (JSON: sent, with the
    // body it sent, up to 64 KiB; skipped; or failed, with the reason).
    "CREATE TABLE IF NOT EXISTS webhook_transforms (
        webhook_id BIGINT PRIMARY KEY,
        digest TEXT NOT NULL,
        size BIGINT NOT NULL CHECK (size BETWEEN 1 AND 1048576),
        wasm {bytes} NOT NULL,
        uploaded_at BIGINT NOT NULL
     );
     ALTER TABLE attempts ADD COLUMN transform TEXT;",
];

/// What a migration does on PostgreSQL alone, after its shared SQL: (the
/// version, the SQL). Keep it to what SQLite has by other means (the same
/// table, column and index names: `tests/postgres.rs` compares them).
const POSTGRES_ONLY: &[(usize, &str)] = &[
    // 13: the claim takes each webhook's due rows in (due time, id) order.
    // SQLite's index carries the row id after its columns, so its index on
    // (webhook, due time) gives that order; PostgreSQL's does not, and its
    // claim read and sorted every due row of a webhook to pick the first
    // few (5,000 per webhook at a backlog of 15,000). With `id` in the index
    // it reads only what it takes.
    (
        13,
        "DROP INDEX deliveries_due;
         CREATE INDEX deliveries_due ON deliveries (webhook_id, next_attempt_at, id)
            WHERE state IN ('pending', 'retrying');",
    ),
];

/// A migration's SQL in `dialect`'s types.
fn for_dialect(sql: &str, dialect: Dialect) -> String {
    sql.replace(
        "{bytes}",
        match dialect {
            Dialect::Sqlite => "BLOB",
            Dialect::Postgres => "BYTEA",
        },
    )
}

/// What `key_check` holds sealed: opening it back proves this host's key is
/// the one the database's secrets were sealed with.
const KEY_CHECK: &[u8] = b"webhooks key check v1";

/// Why a node with another key is refused; no key material in it.
pub const WRONG_KEY: &str = "this node's secret key is not the one this database's webhook secrets were sealed \
    with: start every node with the same WEBHOOKS_SECRET_KEY (or copy data/secret.key from a node that works); \
    nothing was changed";

/// What migration 14 added that cannot be added twice, for tests that run
/// the migrations again.
#[cfg(test)]
pub(crate) const DROP_14: &str = "ALTER TABLE webhooks DROP COLUMN custom_headers; \
    ALTER TABLE webhooks DROP COLUMN payload_filter; ALTER TABLE webhooks DROP COLUMN failing_noticed;";

/// What migration 16 added that cannot be added twice (#24, part 4), for
/// tests that run the migrations again.
#[cfg(test)]
pub(crate) const DROP_16: &str = "DROP TABLE webhook_transforms; ALTER TABLE attempts DROP COLUMN transform;";

/// The version that adds and backfills `attempt_rollups` (tests run it again).
#[cfg(test)]
pub(crate) const ROLLUPS_SINCE: usize = 10;

/// The first version whose sealed secrets hold key bytes.
const KEY_BYTES_SINCE: usize = 5;

/// The schema version a new PostgreSQL database starts at.
pub const POSTGRES_BASELINE_VERSION: usize = 10;

/// The schema of [`MIGRATIONS`] 1 to [`POSTGRES_BASELINE_VERSION`] in one
/// step, in PostgreSQL's types: `BIGINT` for SQLite's 64-bit `INTEGER`,
/// `BYTEA` for `BLOB`, identity columns for SQLite's automatic row ids.
/// Identifier-like text sorts by byte (`COLLATE "C"`), as SQLite's does.
const POSTGRES_BASELINE: &str = r#"
    CREATE TABLE webhooks (
        id BIGINT PRIMARY KEY,
        name TEXT NOT NULL,
        url TEXT NOT NULL,
        secret TEXT,
        enabled BIGINT NOT NULL DEFAULT 1,
        disabled_reason TEXT,
        disabled_at BIGINT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        last_event_type TEXT COLLATE "C",
        last_event_at BIGINT,
        last_status BIGINT,
        last_ok BIGINT,
        failing_since BIGINT,
        secret_sealed BYTEA,
        secret_set_at BIGINT,
        prev_secret_sealed BYTEA,
        prev_secret_until BIGINT,
        form_id TEXT COLLATE "C"
    );
    CREATE UNIQUE INDEX webhooks_form_id ON webhooks (form_id) WHERE form_id IS NOT NULL;
    CREATE TABLE webhook_events (
        webhook_id BIGINT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
        event_type TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (webhook_id, event_type)
    );
    CREATE INDEX webhook_events_by_type ON webhook_events (event_type, webhook_id);
    CREATE TABLE events (
        id TEXT COLLATE "C" PRIMARY KEY,
        type TEXT COLLATE "C" NOT NULL,
        occurred_at BIGINT NOT NULL,
        data TEXT NOT NULL,
        raised_at BIGINT NOT NULL
    );
    CREATE TABLE deliveries (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        webhook_id BIGINT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
        event_id TEXT COLLATE "C" NOT NULL REFERENCES events(id),
        msg_id TEXT COLLATE "C" NOT NULL,
        state TEXT COLLATE "C" NOT NULL,
        attempts BIGINT NOT NULL DEFAULT 0,
        next_attempt_at BIGINT,
        lease_until BIGINT,
        last_status BIGINT,
        last_error TEXT,
        created_at BIGINT NOT NULL,
        UNIQUE (event_id, webhook_id)
    );
    CREATE INDEX deliveries_due ON deliveries (webhook_id, next_attempt_at)
        WHERE state IN ('pending', 'retrying');
    CREATE INDEX deliveries_by_webhook ON deliveries (webhook_id, id);
    CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE lease_until IS NOT NULL;
    CREATE INDEX deliveries_retrying ON deliveries (webhook_id, next_attempt_at) WHERE state = 'retrying';
    CREATE TABLE attempts (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        delivery_id BIGINT NOT NULL REFERENCES deliveries(id) ON DELETE CASCADE,
        webhook_id BIGINT NOT NULL,
        attempt_no BIGINT NOT NULL,
        attempted_at BIGINT NOT NULL,
        duration_ms BIGINT NOT NULL,
        request_headers TEXT NOT NULL,
        response_status BIGINT,
        response_headers TEXT,
        response_body TEXT,
        response_body_size BIGINT,
        error TEXT,
        success BIGINT NOT NULL
    );
    CREATE INDEX attempts_history ON attempts (webhook_id, attempted_at DESC, id DESC);
    CREATE INDEX attempts_by_delivery ON attempts (delivery_id, id);
    CREATE TABLE id_counters (name TEXT PRIMARY KEY, last BIGINT NOT NULL);
    INSERT INTO id_counters (name, last) VALUES ('webhooks', 0);
    CREATE TABLE attempt_rollups (
        webhook_id BIGINT NOT NULL,
        hour BIGINT NOT NULL,
        bucket BIGINT NOT NULL,
        attempts BIGINT NOT NULL,
        successes BIGINT NOT NULL,
        PRIMARY KEY (webhook_id, hour, bucket)
    );
    CREATE INDEX attempt_rollups_by_hour ON attempt_rollups (hour);
"#;

/// Brings the schema to the newest version; answers that version. One
/// transaction: a failure leaves the database as it was (PostgreSQL's DDL is
/// transactional too). The host runs it under a lock on PostgreSQL, so hosts
/// starting together migrate once.
pub fn migrate(host: &dyn Host) -> Result<u32, String> {
    transaction(host, || -> Result<u32, MigrationError> {
        host.execute_batch("CREATE TABLE IF NOT EXISTS plugin_schema (version INTEGER NOT NULL)")
            .map_err(|e| e.to_string())?;
        let rows = host.query("SELECT MAX(version) FROM plugin_schema", &[]).map_err(|e| e.to_string())?;
        let current = rows.first().and_then(|r| r.opt_i64(0)).unwrap_or(0);
        let current = usize::try_from(current).map_err(|_| "negative schema version".to_string())?;
        if current > MIGRATIONS.len() {
            return Err(format!(
                "the database has schema version {current}, newer than this plugin's {}; upgrade the plugin",
                MIGRATIONS.len()
            )
            .into());
        }
        let mut from = current;
        if current == 0 && host.dialect() == Dialect::Postgres {
            host.execute_batch(POSTGRES_BASELINE).map_err(|e| format!("creating the schema: {e}"))?;
            host.execute(
                "INSERT INTO plugin_schema (version) VALUES (?1)",
                &[Value::from(POSTGRES_BASELINE_VERSION as i64)],
            )
            .map_err(|e| e.to_string())?;
            from = POSTGRES_BASELINE_VERSION;
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(from) {
            host.execute_batch(&for_dialect(sql, host.dialect())).map_err(|e| format!("migration {}: {e}", i + 1))?;
            if host.dialect() == Dialect::Postgres {
                for (_, sql) in POSTGRES_ONLY.iter().filter(|(v, _)| *v == i + 1) {
                    host.execute_batch(sql).map_err(|e| format!("migration {}: {e}", i + 1))?;
                }
            }
            host.execute("INSERT INTO plugin_schema (version) VALUES (?1)", &[Value::from(i as i64 + 1)])
                .map_err(|e| e.to_string())?;
        }
        check_key(host)?;
        if current > 0 && current < KEY_BYTES_SINCE {
            reseal_key_bytes(host)?;
        }
        seal_plaintext_secrets(host)?;
        Ok(MIGRATIONS.len() as u32)
    })
    .map_err(|MigrationError(m)| m)
}

/// Refuses a host whose key is not the database's: a secret sealed with
/// another key would fail to sign, and the database would end up holding
/// secrets under two keys. The first start with `key_check` adopts the key
/// when the secrets already stored open with it: any one of them, since a
/// key changed before this check left values that never open again (see
/// [`reseal_key_bytes`]) next to the ones sealed since.
fn check_key(host: &dyn Host) -> Result<(), MigrationError> {
    if let Some(r) = host.query("SELECT sealed FROM key_check WHERE id = 1", &[])?.first() {
        return match host.open_legacy(&r.opt_blob(0).unwrap_or_default()) {
            Ok(plain) if plain == KEY_CHECK => Ok(()),
            _ => Err(WRONG_KEY.to_string().into()),
        };
    }
    let rows = host.query(
        "SELECT secret_sealed, prev_secret_sealed FROM webhooks \
         WHERE secret_sealed IS NOT NULL OR prev_secret_sealed IS NOT NULL",
        &[],
    )?;
    let mut stored = rows.iter().flat_map(|r| [r.opt_blob(0), r.opt_blob(1)]).flatten().peekable();
    if stored.peek().is_some() && !stored.any(|s| host.open_legacy(&s).is_ok()) {
        return Err(WRONG_KEY.to_string().into());
    }
    let sealed = host.seal(KEY_CHECK).map_err(|e| format!("sealing the key check: {e}"))?;
    host.execute("INSERT INTO key_check (id, sealed) VALUES (1, ?1)", &[sealed.into()])?;
    Ok(())
}

/// Secrets stored before sealing existed are sealed now and their clear
/// copies removed.
fn seal_plaintext_secrets(host: &dyn Host) -> Result<(), crate::host::DbError> {
    let rows = host.query("SELECT id, secret, updated_at FROM webhooks WHERE secret IS NOT NULL", &[])?;
    for r in rows.iter() {
        let sealed = crate::store::seal_secret(host, &r.str(1))?;
        host.execute(
            "UPDATE webhooks SET secret_sealed = ?2, secret_set_at = ?3, secret = NULL WHERE id = ?1",
            &[r.i64(0).into(), sealed.into(), r.i64(2).into()],
        )?;
    }
    Ok(())
}

/// Rows sealed before version 5 hold the secret's text: open each once
/// (with `open-legacy`, which otherwise only the key check uses) and seal
/// its key bytes instead. A value
/// that no longer opens (the host key changed) is left alone: it fails to
/// sign, as it failed to open before, and the admin sets a new secret.
fn reseal_key_bytes(host: &dyn Host) -> Result<(), crate::host::DbError> {
    let rows = host.query(
        "SELECT id, secret_sealed, prev_secret_sealed FROM webhooks \
         WHERE secret_sealed IS NOT NULL OR prev_secret_sealed IS NOT NULL",
        &[],
    )?;
    let reseal = |sealed: Option<Vec<u8>>| -> Result<Value, crate::host::DbError> {
        Ok(match sealed.as_deref().map(|s| (s, host.open_legacy(s))) {
            Some((_, Ok(text))) => Value::from(crate::store::seal_secret(host, &String::from_utf8_lossy(&text))?),
            Some((s, Err(_))) => Value::from(s.to_vec()),
            None => Value::Null,
        })
    };
    for r in rows.iter() {
        host.execute(
            "UPDATE webhooks SET secret_sealed = ?2, prev_secret_sealed = ?3 WHERE id = ?1",
            &[r.i64(0).into(), reseal(r.opt_blob(1))?, reseal(r.opt_blob(2))?],
        )?;
    }
    Ok(())
}

/// A migration failure as a message (what `plugin.migrate` returns).
struct MigrationError(String);

impl From<String> for MigrationError {
    fn from(m: String) -> Self {
        MigrationError(m)
    }
}

impl From<crate::host::DbError> for MigrationError {
    fn from(e: crate::host::DbError) -> Self {
        MigrationError(e.to_string())
    }
}
