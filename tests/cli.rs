//! The CLI as a user's script runs it: seed 000's flags, JSON output, exit codes, and
//! finding the server and token in the data directory with no configuration.

mod common;

use std::process::Output;

use common::{connect_as, footprint, stdout_json, superuser, unique, ScratchDir, TestApp, TOKEN};
use serde_json::Value;

async fn berqenas(args: &[&str], env: &[(&str, &str)]) -> Output {
    berqenas_in(std::path::Path::new("."), args, env).await
}

/// The CLI run from `dir`, as a user's shell in another directory runs it.
async fn berqenas_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_berqenas"));
    cmd.current_dir(dir)
        .args(args)
        .env_remove("BERQENAS_URL")
        .env_remove("BERQENAS_ADMIN_TOKEN")
        .env_remove("BERQENAS_DATA_DIR")
        .env_remove("BERQENAS_DATABASE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.unwrap()
}

#[tokio::test]
async fn seed_000_create_command_and_the_rest_of_the_tenant_commands() {
    let app = TestApp::spawn().await;
    let env = [
        ("BERQENAS_URL", app.url.as_str()),
        ("BERQENAS_ADMIN_TOKEN", TOKEN),
    ];
    let name = unique("cli");
    let out = berqenas(
        &[
            "tenant",
            "create",
            "--name",
            &name,
            "--db-quota",
            "5GB",
            "--vpn",
            "enabled",
            "--public-api",
            "true",
            "-o",
            "json",
        ],
        &env,
    )
    .await;
    let created = stdout_json(&out);
    assert_eq!(created["name"], name.as_str());
    assert_eq!(created["db_quota_bytes"], 5i64 << 30);
    assert_eq!(created["vpn_enabled"], true);
    assert_eq!(created["public_api"], true);
    assert_eq!(created["access_mode"], "hybrid");
    assert!(created["api_key"].as_str().unwrap().starts_with("bqk_"));
    // Hybrid: the database only from the tenant's VPN subnet, until a rule opens it.
    let dsn = created["credentials"]["dsn"].as_str().unwrap();
    let refused = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .err();
    assert!(
        format!("{refused:?}").contains("pg_hba.conf rejects"),
        "{refused:?}"
    );
    let rule = "tenant firewall allow NAME 127.0.0.1 --service postgres".replace("NAME", &name);
    let allowed = berqenas(&rule.split(' ').collect::<Vec<_>>(), &env).await;
    assert!(allowed.status.success(), "{:?}", allowed.stderr);
    let tenant = connect_as(&created["credentials"]).await;
    tenant
        .execute(
            "INSERT INTO user_activity (user_id, action) VALUES ('u1', 'login')",
            &[],
        )
        .await
        .unwrap();

    let got = stdout_json(&berqenas(&["tenant", "get", &name, "-o", "json"], &env).await);
    assert_eq!(got["id"], created["id"]);
    let table = berqenas(&["tenant", "get", &name], &env).await;
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("tenant_"),
        "table output shows the schema"
    );

    let list =
        stdout_json(&berqenas(&["tenant", "list", "-o", "json", "--limit", "1000"], &env).await);
    assert!(list["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == name.as_str()));

    let updated = stdout_json(
        &berqenas(
            &[
                "tenant",
                "update",
                &name,
                "--db-quota",
                "2GB",
                "--public-api",
                "false",
                "-o",
                "json",
            ],
            &env,
        )
        .await,
    );
    assert_eq!(updated["db_quota_bytes"], 2i64 << 30);
    assert_eq!(updated["access_mode"], "vpn-only");

    let dsn = berqenas(&["psql", "--tenant", &name, "--print-dsn"], &env).await;
    assert!(dsn.status.success());
    let dsn = String::from_utf8(dsn.stdout).unwrap();
    assert_eq!(dsn.trim(), created["credentials"]["dsn"].as_str().unwrap());

    let status = stdout_json(&berqenas(&["status", "-o", "json"], &env).await);
    assert_eq!(status["postgres"]["mode"], "embedded");
    assert!(status["tenants"]["active"].as_i64().unwrap() >= 1);

    let before = footprint(&superuser().await, &name).await;
    let deleted = berqenas(&["tenant", "delete", &name, "--retention", "7"], &env).await;
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert_eq!(footprint(&superuser().await, &name).await, before);
    let restored = stdout_json(&berqenas(&["tenant", "restore", &name, "-o", "json"], &env).await);
    assert_eq!(restored["status"], "active");
    let refused = berqenas(
        &[
            "tenant",
            "delete",
            &name,
            "--purge-now",
            "--confirm",
            "nope",
        ],
        &env,
    )
    .await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("confirm"));
    let purged = berqenas(
        &["tenant", "delete", &name, "--purge-now", "--confirm", &name],
        &env,
    )
    .await;
    assert!(
        purged.status.success(),
        "{}",
        String::from_utf8_lossy(&purged.stderr)
    );
    assert_eq!(
        footprint(&superuser().await, &name).await,
        vec![format!("tenant:{name}")]
    );
}

#[tokio::test]
async fn errors_are_clear_and_exit_non_zero() {
    let app = TestApp::spawn().await;
    let env = [
        ("BERQENAS_URL", app.url.as_str()),
        ("BERQENAS_ADMIN_TOKEN", TOKEN),
    ];

    let out = berqenas(&["tenant", "create", "--name", "Bad_Name"], &env).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("field: name"), "{err}");

    let out = berqenas(
        &["tenant", "create", "--name", "okname", "--vpn", "maybe"],
        &env,
    )
    .await;
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap refuses it before any request"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("enabled"));

    let out = berqenas(
        &[
            "tenant",
            "create",
            "--name",
            "okname",
            "--db-quota",
            "5XB",
            "-o",
            "json",
        ],
        &env,
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["error"]["field"], "db_quota");
    assert_eq!(err["status"], 400);

    let out = berqenas(
        &["tenant", "list"],
        &[
            ("BERQENAS_URL", app.url.as_str()),
            ("BERQENAS_ADMIN_TOKEN", "nope-nope-nope-nope"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin token"));

    let out = berqenas(
        &["tenant", "list"],
        &[("BERQENAS_URL", "http://127.0.0.1:9")],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("berqenas serve"));

    // A serve flag out of range: refused before anything starts or is written.
    let dir = std::env::temp_dir().join(common::unique("cli-backup-jobs"));
    let out = berqenas(
        &[
            "serve",
            "--backup-jobs",
            "0",
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--backup-jobs") && err.contains("1..=32"),
        "{err}"
    );
    assert!(!dir.exists(), "nothing written to {}", dir.display());
}

#[tokio::test]
async fn finds_server_and_token_in_the_data_directory() {
    let app = TestApp::spawn().await;
    let dir = ScratchDir::new("cli-data");
    std::fs::write(dir.join("server-url"), format!("{}\n", app.url)).unwrap();
    std::fs::write(dir.join("admin-token"), format!("{TOKEN}\n")).unwrap();
    let name = unique("nocfg");
    let data_dir = dir.to_str().unwrap();
    let out = berqenas(
        &["tenant", "create", "--name", &name, "--data-dir", data_dir],
        &[],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bqk_") && text.contains("postgresql://"),
        "shows the key and DSN once: {text}"
    );
    let out = berqenas(
        &["tenant", "get", &name],
        &[("BERQENAS_DATA_DIR", data_dir)],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The CLI with a terminal for its stdin (through util-linux's `script`), typing
/// `input`; None where `script` is missing. Everything it wrote comes back on stdout.
async fn on_a_terminal(args: &str, input: &str, env: &[(&str, &str)]) -> Option<Output> {
    use tokio::io::AsyncWriteExt;
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_berqenas"));
    let mut cmd = tokio::process::Command::new("script");
    cmd.args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .env_remove("BERQENAS_DATA_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().ok()?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .await
        .unwrap();
    Some(child.wait_with_output().await.unwrap())
}

/// `berqenas backup ...` and `tenant backup-policy ...` as a script runs them.
#[tokio::test]
async fn backup_commands_take_list_verify_and_restore() {
    let app = TestApp::spawn().await;
    let env = [
        ("BERQENAS_URL", app.url.as_str()),
        ("BERQENAS_ADMIN_TOKEN", TOKEN),
    ];
    let name = unique("clibk");
    let created = stdout_json(
        &berqenas(
            &[
                "tenant",
                "create",
                "--name",
                &name,
                "--backup-schedule",
                "15 2 * * *",
                "-o",
                "json",
            ],
            &env,
        )
        .await,
    );
    connect_as(&created["credentials"])
        .await
        .batch_execute("INSERT INTO applications (name, team, created_by) VALUES ('a', 'b', 'c')")
        .await
        .unwrap();
    let policy = stdout_json(
        &berqenas(
            &["tenant", "backup-policy", "get", &name, "-o", "json"],
            &env,
        )
        .await,
    );
    assert_eq!(policy["schedule"], "15 2 * * *");
    let bad = berqenas(
        &[
            "tenant",
            "backup-policy",
            "set",
            &name,
            "--schedule",
            "0 3 * *",
        ],
        &env,
    )
    .await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("field: schedule"));
    let table = berqenas(&["backup", "create", &name], &env).await;
    assert!(
        table.status.success(),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );
    let progress = String::from_utf8_lossy(&table.stderr);
    assert!(
        progress.contains(&format!("backing up {name} ...")) && progress.contains("done in"),
        "plain progress lines off a terminal: {progress}"
    );
    assert!(
        !progress.contains('\u{1b}'),
        "no control characters: {progress:?}"
    );
    let b = stdout_json(&berqenas(&["backup", "create", &name, "-o", "json"], &env).await);
    let id = b["id"].as_str().unwrap();
    let listed = stdout_json(&berqenas(&["backup", "list", &name, "-o", "json"], &env).await);
    assert_eq!(listed["backups"][0]["id"], b["id"]);
    let verified = berqenas(&["backup", "verify", id], &env).await;
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(String::from_utf8_lossy(&verified.stdout).contains("verified"));
    // In place replaces the tenant's data: refused unless confirmed, and nothing changes.
    let tenant = connect_as(&created["credentials"]).await;
    tenant
        .batch_execute("INSERT INTO applications (name, team, created_by) VALUES ('new', 'b', 'c')")
        .await
        .unwrap();
    let rows = || async {
        connect_as(&created["credentials"])
            .await
            .query_one("SELECT count(*) FROM applications", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let refused = berqenas(&["backup", "restore", &name, id], &env).await;
    assert_eq!(refused.status.code(), Some(1));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("--yes") && err.contains("Nothing was changed"),
        "{err}"
    );
    assert_eq!(rows().await, 2, "the refused restore changed nothing");
    // On a terminal it asks for the tenant's name: a wrong one changes nothing.
    if let Some(out) = on_a_terminal(&format!("backup restore {name} {id}"), "not-it\n", &env).await
    {
        assert!(!out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("Type {name} to go on")), "{text}");
        assert!(text.contains("did not match"), "{text}");
        assert_eq!(rows().await, 2, "a wrong answer changed nothing");
    }
    let restored = stdout_json(
        &berqenas(
            &["backup", "restore", &name, id, "--yes", "-o", "json"],
            &env,
        )
        .await,
    );
    assert_eq!(restored["status"], "active");
    assert_eq!(rows().await, 1, "the backup's data is back");
    let copy = unique("clibk-copy");
    let out = berqenas(&["backup", "restore", &name, id, "--as", &copy], &env).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("api_key:") && text.contains("dsn:      postgresql://"),
        "the new tenant's DSN, as create shows it: {text}"
    );
    let missing = berqenas(
        &["backup", "verify", "0190e7a0-0000-7000-8000-000000000000"],
        &env,
    )
    .await;
    assert!(!missing.status.success());
    assert_eq!(
        footprint(&superuser().await, &name).await.len(),
        8,
        "six roles, the schema and the registry row, as created"
    );
}

/// Issue 21, item 1: the built-in template as files, to add a migration beside.
#[tokio::test]
async fn template_export_writes_the_builtin_template_and_never_overwrites_an_edit() {
    let dir = ScratchDir::new("cli-template");
    let target = dir.join("tpl");
    let out = berqenas(&["template", "export", target.to_str().unwrap()], &[]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let init = target.join("0001_init.sql");
    assert_eq!(std::fs::read_to_string(&init).unwrap(), common::INIT);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0001_init.sql"));
    let again = stdout_json(
        &berqenas(
            &["template", "export", target.to_str().unwrap(), "-o", "json"],
            &[],
        )
        .await,
    );
    assert_eq!(
        again["written"][0],
        init.to_str().unwrap(),
        "the same content again is fine"
    );

    std::fs::write(&init, "-- mine\n").unwrap();
    let out = berqenas(&["template", "export", target.to_str().unwrap()], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("0001_init.sql already exists"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&init).unwrap(),
        "-- mine\n",
        "nothing changed"
    );
}

/// Issue 21, item 2: run where there is no `./.berqenas`, the CLI says so and how to
/// point at one, not "wrong admin token".
#[tokio::test]
async fn outside_the_data_directory_the_cli_says_where_it_looked() {
    let app = TestApp::spawn().await;
    let elsewhere = ScratchDir::new("cli-elsewhere");
    let out = berqenas_in(
        &elsewhere,
        &["tenant", "list"],
        &[("BERQENAS_URL", app.url.as_str())],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no ./.berqenas found in this directory"),
        "{err}"
    );
    assert!(
        err.contains("--data-dir") && err.contains("BERQENAS_ADMIN_TOKEN"),
        "{err}"
    );
    assert!(!err.contains("wrong admin token"), "{err}");

    let out = berqenas_in(
        &elsewhere,
        &["tenant", "list", "--server", "http://127.0.0.1:9"],
        &[],
    )
    .await;
    assert!(String::from_utf8_lossy(&out.stderr).contains("berqenas serve"));
}

/// Issue 21, item 5: refusals in the CLI's own words.
#[tokio::test]
async fn refusals_speak_the_cli_s_language() {
    let app = TestApp::spawn().await;
    let env = [
        ("BERQENAS_URL", app.url.as_str()),
        ("BERQENAS_ADMIN_TOKEN", TOKEN),
    ];
    let name = unique("words");
    stdout_json(&berqenas(&["tenant", "create", "--name", &name, "-o", "json"], &env).await);
    let out = berqenas(&["tenant", "resume", &name], &env).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{name} is already active")), "{err}");

    for email in ["a@example.com"] {
        let out = berqenas(
            &[
                "tenant",
                "user",
                "add",
                &name,
                "--email",
                email,
                "--role",
                "developer",
            ],
            &env,
        )
        .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = berqenas(&["quota", "set", &name, "max_users=0"], &env).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("use --force") && !err.contains("\"force\""),
        "{err}"
    );

    // A clash with an object berqenas did not make names that object.
    let clash = unique("clash");
    let schema = format!("tenant_{}", clash.replace('-', "_"));
    let pg = superuser().await;
    pg.batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let out = berqenas(&["tenant", "create", "--name", &clash], &env).await;
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("a PostgreSQL schema \"{schema}\" already exists")),
        "{err}"
    );
    pg.batch_execute(&format!("DROP SCHEMA {schema}"))
        .await
        .unwrap();
}

/// Issue 21, item 6: tables in human units and complete; pages that end where they end.
#[tokio::test]
async fn tables_are_complete_and_pages_end_where_they_end() {
    let app = TestApp::spawn().await;
    let env = [
        ("BERQENAS_URL", app.url.as_str()),
        ("BERQENAS_ADMIN_TOKEN", TOKEN),
    ];
    let name = unique("units");
    let args = [
        "tenant",
        "create",
        "--name",
        &name,
        "--db-quota",
        "5GB",
        "--trial-days",
        "7",
        "--plan",
        "custom",
        "-o",
        "json",
    ];
    stdout_json(&berqenas(&args, &env).await);
    let got = berqenas(&["tenant", "get", &name], &env).await;
    let text = String::from_utf8_lossy(&got.stdout);
    assert!(
        text.contains("5 GiB") && text.contains("trial_ends_at"),
        "{text}"
    );
    let json = stdout_json(&berqenas(&["tenant", "get", &name, "-o", "json"], &env).await);
    assert_eq!(json["db_quota_bytes"], 5i64 << 30, "JSON keeps bytes");

    let usage = berqenas(&["quota", "usage", &name], &env).await;
    let text = String::from_utf8_lossy(&usage.stdout);
    assert!(text.contains("LIMIT") && text.contains("USED %"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("storage_bytes") && l.contains("5 GiB")),
        "{text}"
    );

    // Two tenants on a plan no other test here uses: a page of exactly two is the last.
    let second = unique("units");
    stdout_json(
        &berqenas(
            &[
                "tenant", "create", "--name", &second, "--plan", "custom", "-o", "json",
            ],
            &env,
        )
        .await,
    );
    let list = |extra: &'static [&'static str]| async move {
        let mut args = vec!["tenant", "list", "--plan", "custom", "-o", "json"];
        args.extend_from_slice(extra);
        stdout_json(&berqenas(&args, &env).await)
    };
    let full = list(&["--limit", "2"]).await;
    assert_eq!(full["tenants"].as_array().unwrap().len(), 2);
    assert!(
        full["next_cursor"].is_null(),
        "no cursor to an empty page: {full}"
    );
    let first = list(&["--limit", "1"]).await;
    assert!(first["next_cursor"].is_string());
    let all = list(&["--limit", "1", "--all"]).await;
    assert_eq!(all["tenants"].as_array().unwrap().len(), 2, "{all}");
    assert!(all["next_cursor"].is_null());
    let table = berqenas(
        &["tenant", "list", "--plan", "custom", "--limit", "2"],
        &env,
    )
    .await;
    assert!(!String::from_utf8_lossy(&table.stderr).contains("--cursor"));
}

/// Issue 21, item 7: help that lists the choices, and environment variables shown with
/// a value only when they have one.
#[tokio::test]
async fn help_lists_choices_and_only_set_variables_have_values() {
    let help = berqenas(&["tenant", "create", "--help"], &[]).await;
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("[possible values: schema, database, shared]"),
        "{text}"
    );
    assert!(
        text.contains("professional") && text.contains("berqenas plan list"),
        "{text}"
    );
    assert!(
        text.contains("[env: BERQENAS_URL]") && !text.contains("BERQENAS_URL="),
        "{text}"
    );
    let help = berqenas(
        &["tenant", "list", "--help"],
        &[("BERQENAS_URL", "http://127.0.0.1:9")],
    )
    .await;
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("[env: BERQENAS_URL=http://127.0.0.1:9]"),
        "{text}"
    );

    let bad = berqenas(
        &[
            "tenant",
            "create",
            "--name",
            "okname",
            "--isolation",
            "schemas",
        ],
        &[],
    )
    .await;
    assert_eq!(bad.status.code(), Some(2), "refused before any request");
    let help = berqenas(&["tenant", "list", "--help"], &[]).await;
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("active, suspended, deleted"), "{text}");
    let help = berqenas(&["tenant", "user", "add", "--help"], &[]).await;
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("tenant_admin, application_manager, developer, auditor"),
        "{text}"
    );

    let app = TestApp::spawn().await;
    let env = [
        ("BERQENAS_URL", app.url.as_str()),
        ("BERQENAS_ADMIN_TOKEN", TOKEN),
    ];
    let plans = berqenas(&["plan", "list"], &env).await;
    let text = String::from_utf8_lossy(&plans.stdout);
    for plan in ["free", "starter", "professional", "enterprise", "custom"] {
        assert!(text.contains(plan), "{text}");
    }
}

/// Issue 21, item 9: logs off a terminal carry no colour codes; `--log-format json`
/// writes one JSON object a line.
#[tokio::test]
async fn logs_are_plain_off_a_terminal_and_json_on_request() {
    let args = [
        "tenant",
        "list",
        "--server",
        "http://127.0.0.1:9",
        "--token",
        "x",
    ];
    let text = berqenas(&args, &[("BERQENAS_LOG", "debug")]).await;
    let err = String::from_utf8_lossy(&text.stderr);
    assert!(err.contains("DEBUG"), "a debug line was logged: {err}");
    assert!(!err.contains('\u{1b}'), "no ANSI codes: {err:?}");

    let mut json_args = vec!["--log-format", "json"];
    json_args.extend_from_slice(&args);
    let json = berqenas(&json_args, &[("BERQENAS_LOG", "debug")]).await;
    let err = String::from_utf8_lossy(&json.stderr);
    let logs: Vec<&str> = err.lines().filter(|l| !l.starts_with("error:")).collect();
    assert!(!logs.is_empty(), "{err}");
    for line in logs {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
}

/// Issue 21, item 8: off a terminal `migrate` prints plain progress lines (no control
/// characters) whose counts add up to the tenants done.
#[tokio::test]
async fn migrate_reports_progress_in_plain_lines_off_a_terminal() {
    use berqenas::server;
    let db = common::control_database("cli_mig").await;
    let serve = |template| async {
        let platform = server::platform_with(&db, common::secret_key(), 8, template)
            .await
            .unwrap();
        TestApp::serve(platform).await
    };
    let before = serve(common::template_with(&[])).await;
    for _ in 0..2 {
        before.create(&unique("climig")).await;
    }
    let after = serve(common::template_with(&[(
        "0002_flag.sql",
        "ALTER TABLE applications ADD COLUMN flag boolean NOT NULL DEFAULT false;\n",
    )]))
    .await;
    let env = [
        ("BERQENAS_URL", after.url.as_str()),
        ("BERQENAS_ADMIN_TOKEN", TOKEN),
    ];
    let out = berqenas(&["migrate"], &env).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains('\u{1b}'), "no control characters: {err:?}");
    let last = err
        .lines()
        .rev()
        .find(|l| l.starts_with("migrate: "))
        .unwrap_or_else(|| panic!("no progress line: {err}"));
    assert!(
        last.starts_with("migrate: 2/2 tenants done, migrated 2, failed 0 ["),
        "{last}"
    );
}
