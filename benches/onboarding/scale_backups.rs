//! The scale benchmark's backups: a tenant's backup at full size through the API, and
//! `pg_dump` of one tenant's schema with and without the planner settings berqenas
//! gives it ([`berqenas::backup::dump::PG_DUMP_OPTIONS`]), side by side in one run.
//! pg_dump reads the whole catalog whatever `--schema` names, so a backup of one
//! tenant grows with the number of tenants in its database.

use std::time::{Duration, Instant};

use berqenas::backup::dump;

use super::{percentile, TOKEN};

/// Every tenant's daily backup, one after another (the backup worker's default,
/// `--backup-jobs 1`), must fit in a day.
const DAY_S: f64 = 86_400.0;
/// Backups taken through the API.
const RUNS: usize = 3;

/// `pg_dump` of `schema` on `url` as a backup runs it ([`dump::pg_dump`]), with
/// berqenas's planner setting or (`setting` false) without it; its wall time.
async fn pg_dump(url: &str, schema: &str, setting: bool) -> Duration {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let conn = dump::Conn::control(&config, config.get_dbname().unwrap());
    let mut cmd = dump::pg_dump(&conn, schema, None).unwrap();
    if !setting {
        cmd.env_remove("PGOPTIONS");
    }
    cmd.stdout(std::process::Stdio::null());
    let t = Instant::now();
    let out = cmd.output().await.unwrap();
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed()
}

pub async fn run(http: &reqwest::Client, api: &str, url: &str, n: usize) {
    let mut taken = Vec::with_capacity(RUNS);
    for k in 0..RUNS {
        let name = super::onboarding_scale::name(k * (n - 1) / (RUNS - 1));
        let t = Instant::now();
        let res = http
            .post(format!("{api}/api/v1/tenants/{name}/backups"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
        taken.push(t.elapsed());
    }
    taken.sort();
    let median = percentile(&taken, 0.5).as_secs_f64();
    let day = median * n as f64;
    println!(
        "backup of one tenant at {n} tenants (POST .../backups, median of {RUNS}): {median:.2} s; every tenant's daily backup one after another: {:.1} h; target within a day ({:.0} h): {}",
        day / 3600.0,
        DAY_S / 3600.0,
        super::onboarding_scale::verdict(day <= DAY_S)
    );
    let tenant = super::onboarding_scale::get_json(
        http,
        &format!(
            "{api}/api/v1/tenants/{}",
            super::onboarding_scale::name(n / 2)
        ),
    )
    .await;
    let schema = tenant["schema"]
        .as_str()
        .expect("a schema-mode tenant")
        .to_string();
    let ours = pg_dump(url, &schema, true).await;
    let planner = pg_dump(url, &schema, false).await;
    println!(
        "pg_dump of one tenant's schema: {:.2} s with berqenas's settings ({}), {:.2} s with the planner's own join order ({:.1}x)",
        ours.as_secs_f64(),
        dump::PG_DUMP_OPTIONS,
        planner.as_secs_f64(),
        planner.as_secs_f64() / ours.as_secs_f64()
    );
}
