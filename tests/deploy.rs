//! What deploy/ ships agrees with the binary: every `BERQENAS_*` variable the image,
//! Compose and Kubernetes set is one `berqenas serve` reads (or a `_FILE` form the
//! entrypoint turns into one), and the entrypoint reads secrets from files and refuses
//! what would lose them. (The schema and Pod Security checks of the same files are in
//! .ci/validate/run.sh.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::CommandFactory;

const ENTRYPOINT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/docker/entrypoint.sh");

/// The environment variables of `berqenas serve`'s flags.
fn serve_env() -> BTreeSet<String> {
    let cli = berqenas::cli::Cli::command();
    let serve = cli.find_subcommand("serve").expect("a serve command");
    serve
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect()
}

/// The `_FILE` forms the entrypoint handles.
fn file_forms() -> BTreeSet<String> {
    let script = std::fs::read_to_string(ENTRYPOINT).unwrap();
    let line = script
        .lines()
        .find(|l| l.starts_with("for name in") && l.contains("PGBOUNCER_ADMIN_URL"))
        .expect("the entrypoint's list of secrets");
    line.trim_start_matches("for name in")
        .trim_end_matches("; do")
        .split_whitespace()
        .map(|n| format!("BERQENAS_{n}"))
        .collect()
}

fn words_in(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("BERQENAS_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_uppercase() || bytes[end] == b'_') {
            end += 1;
        }
        let word = text[start..end].trim_end_matches('_');
        // "BERQENAS_<NAME>_FILE" in a comment names no variable.
        if word != "BERQENAS" {
            out.insert(word.to_string());
        }
        i = end;
    }
    out
}

#[test]
fn every_variable_deploy_sets_is_one_berqenas_reads() {
    let env = serve_env();
    let files = file_forms();
    for secret in &files {
        assert!(
            env.contains(secret),
            "the entrypoint reads {secret}_FILE, but serve has no {secret}"
        );
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shipped = [
        "Dockerfile",
        "deploy/compose.yaml",
        "deploy/kubernetes/deployment.yaml",
    ];
    let mut seen = 0;
    for file in shipped {
        for var in words_in(&root.join(file)) {
            seen += 1;
            let known = env.contains(&var)
                || var
                    .strip_suffix("_FILE")
                    .is_some_and(|base| files.contains(base))
                || var == "BERQENAS_BIN";
            assert!(
                known,
                "{file} sets {var}, which berqenas serve does not read"
            );
        }
    }
    assert!(seen > 10, "found only {seen} variables");
    // The settings a deployment must give are there.
    let k8s = words_in(&root.join("deploy/kubernetes/deployment.yaml"));
    for var in [
        "BERQENAS_DATABASE_URL_FILE",
        "BERQENAS_ADMIN_TOKEN_FILE",
        "BERQENAS_SECRET_KEY_FILE",
        "BERQENAS_PGBOUNCER_AUTH_USER",
        "BERQENAS_PGBOUNCER_ADMIN_URL_FILE",
    ] {
        assert!(k8s.contains(var), "deployment.yaml lacks {var}");
    }
}

/// Runs the entrypoint with a stand-in for the binary that prints its environment.
fn entrypoint(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let dir = tempdir();
    let fake = dir.path.join("berqenas");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"args: $*\"\nenv | grep '^BERQENAS_' | sort\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg(ENTRYPOINT)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    cmd.env("BERQENAS_BIN", &fake);
    for (k, v) in env {
        cmd.env(k, v.replace("{dir}", dir.path.to_str().unwrap()));
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

struct TempDir {
    path: PathBuf,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn tempdir() -> TempDir {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "berqenas-deploy-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&path).unwrap();
    TempDir { path }
}

#[test]
fn the_entrypoint_reads_secrets_from_files() {
    let dir = tempdir();
    for (name, value) in [
        ("url", "postgresql://a:b@db/berqenas\n"),
        ("token", "admin-token-0123456789\n"),
        ("key", &"ab".repeat(32)),
    ] {
        std::fs::write(dir.path.join(name), value).unwrap();
    }
    let d = dir.path.to_str().unwrap();
    let (ok, out, err) = entrypoint(
        &["serve"],
        &[
            ("BERQENAS_DATABASE_URL_FILE", &format!("{d}/url")),
            ("BERQENAS_ADMIN_TOKEN_FILE", &format!("{d}/token")),
            ("BERQENAS_SECRET_KEY_FILE", &format!("{d}/key")),
            ("BERQENAS_LISTEN", "0.0.0.0:8080"),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("args: serve"), "{out}");
    assert!(
        out.contains("BERQENAS_DATABASE_URL=postgresql://a:b@db/berqenas\n"),
        "{out}"
    );
    assert!(
        out.contains("BERQENAS_ADMIN_TOKEN=admin-token-0123456789\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("BERQENAS_SECRET_KEY={}\n", "ab".repeat(32))),
        "{out}"
    );
    assert!(out.contains("BERQENAS_LISTEN=0.0.0.0:8080"), "{out}");
    assert!(
        !out.contains("_FILE="),
        "the _FILE variables are not passed on: {out}"
    );
}

#[test]
fn the_entrypoint_refuses_two_sources_and_a_serve_without_its_secrets() {
    let (ok, _, err) = entrypoint(
        &["serve"],
        &[
            ("BERQENAS_ADMIN_TOKEN", "admin-token-0123456789"),
            ("BERQENAS_ADMIN_TOKEN_FILE", "/dev/null"),
        ],
    );
    assert!(!ok);
    assert!(
        err.contains("both BERQENAS_ADMIN_TOKEN and BERQENAS_ADMIN_TOKEN_FILE"),
        "{err}"
    );

    let (ok, _, err) = entrypoint(
        &["serve"],
        &[("BERQENAS_DATABASE_URL", "postgresql://db/berqenas")],
    );
    assert!(
        !ok,
        "a serve that would generate its secret key in a throw-away directory"
    );
    assert!(err.contains("BERQENAS_SECRET_KEY"), "{err}");

    let (ok, _, err) = entrypoint(&["serve"], &[("BERQENAS_SECRET_KEY_FILE", "{dir}/missing")]);
    assert!(!ok);
    assert!(err.contains("not readable"), "{err}");

    // Client commands need none of them.
    let (ok, out, err) = entrypoint(&["tenant", "list"], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("args: tenant list"), "{out}");
}
