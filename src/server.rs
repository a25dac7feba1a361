//! `berqenas serve`: picks the database (the embedded cluster, or `--database-url`),
//! migrates the control plane, reconciles what a crash left, serves the API, and on
//! SIGINT/SIGTERM drains requests and stops the embedded cluster cleanly.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_postgres::config::Host;
use tokio_postgres::Config;

use crate::api::{self, AppState};
use crate::pg::cluster::{Cluster, ClusterOptions};
use crate::pg::{self, hardening, Capabilities, Ident};
use crate::platform::{Endpoint, Platform};
use crate::secrets::{self, ExposeSecret, SecretKey, SecretString};
use crate::template::Template;
use crate::workflows::Runtime;
use crate::{controlplane, tenant};

/// The database the embedded cluster keeps the control plane (and schema-mode tenants) in.
pub const EMBEDDED_DATABASE: &str = "berqenas";
/// Files in the data directory that let the CLI find a local server with no configuration.
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
pub const SERVER_URL_FILE: &str = "server-url";

/// What `berqenas serve` runs with. Its secrets are [`SecretString`]s: `Debug` (and so
/// any log line that prints the options) shows none of them.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    /// May carry a password.
    pub database_url: Option<SecretString>,
    pub listen: SocketAddr,
    pub pg_port: Option<u16>,
    pub admin_token: Option<SecretString>,
    pub secret_key: Option<SecretString>,
    pub pool_size: usize,
    /// The operator's tenant template; the built-in one when `None`.
    pub template_dir: Option<PathBuf>,
    /// Where backups go [default: <data-dir>/backups].
    pub backup_dir: Option<PathBuf>,
    /// `--backup-jobs`: scheduled backups taken at once.
    pub backup_jobs: usize,
    /// How often the worker measures tenants' disk use and enforces their quotas.
    pub quota_interval: std::time::Duration,
    /// `--warm-pool`: unclaimed tenants kept ready per mode (off: all zero).
    pub warm_pool: crate::workflows::warm_pool::Targets,
    /// How often each tenant's usage is reported (`usage.reported`).
    pub usage_report_interval: std::time::Duration,
    /// The usage history behind the console's charts: how often it is sampled, how
    /// long samples are kept.
    pub usage_history: crate::quota::history::Settings,
    /// A password for the web console besides the admin token (hashed at start).
    pub console_password: Option<SecretString>,
    /// Open data API connections, all tenants together.
    pub data_api_connections: usize,
    /// Bytes of data API results all requests together may hold.
    pub data_api_result_memory: usize,
    /// A token that may read `/metrics` and the monitoring rules and targets, nothing else.
    pub metrics_token: Option<SecretString>,
    /// `--monitoring-target`: what HTTP service discovery announces (empty: the
    /// discovery request's own address).
    pub monitoring_targets: Vec<String>,
    /// PgBouncer in front of the tenants: its auth user and admin console.
    pub pgbouncer: crate::pg::pgbouncer::PgBouncer,
    /// The VPN pool, pg_hba.conf and VPN interface options.
    pub network: NetworkOptions,
    /// Onboarding steps may point at loopback and private addresses.
    pub onboarding_allow_private: bool,
    /// This server's address as onboarding steps reach it (their callbacks).
    pub public_url: Option<String>,
    /// The webhook relay: retry schedule, timeout, private addresses.
    pub webhooks: crate::events::relay::RelayOptions,
    /// Opens the sign-in providers' secrets to the platform's auth service.
    pub integration_token: Option<SecretString>,
    /// Invitation links (their lifetime and address) and provider checks.
    pub sign_in: crate::platform::SignIn,
    /// Chroma's base URL (`--vector-url`).
    pub vector_url: Option<String>,
    /// `chroma` or `pgvector` (`--vector-backend`).
    pub vector_backend: Option<String>,
}

/// `--vpn-pool`, `--pg-hba-file`, `--trusted-proxies`, `--vpn-interface`,
/// `--vpn-endpoint` (see docs/network.md).
#[derive(Debug, Clone, Default)]
pub struct NetworkOptions {
    pub vpn_pool: Option<crate::network::VpnPool>,
    pub pg_hba_file: Option<PathBuf>,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub vpn_interface: Option<String>,
    pub vpn_endpoint: Option<String>,
}

/// Where the control plane lives and how tenants reach it.
pub struct Database {
    pub config: Config,
    pub endpoint: Endpoint,
    pub cluster: Option<Cluster>,
    /// Where backups go; `None`: `backups` in the embedded cluster's directory (else
    /// in `./.berqenas`).
    pub backup_dir: Option<PathBuf>,
}

/// Starts (or adopts) the embedded cluster in `data_dir` and makes sure the control
/// database exists in it.
pub async fn embedded(data_dir: &Path, pg_port: Option<u16>) -> anyhow::Result<Database> {
    embedded_with(data_dir, pg_port, false).await
}

/// Like [`embedded`]; `ephemeral` trades durability for speed (throw-away test clusters).
pub async fn embedded_with(
    data_dir: &Path,
    pg_port: Option<u16>,
    ephemeral: bool,
) -> anyhow::Result<Database> {
    let mut opts = ClusterOptions::new(data_dir);
    opts.port = pg_port;
    opts.ephemeral = ephemeral;
    let cluster = tokio::task::spawn_blocking(move || Cluster::ensure(&opts))
        .await?
        .context("starting the embedded PostgreSQL cluster")?;
    let admin = pg::parse_config(&cluster.superuser_dsn("postgres"))?;
    let client = pg::connect(&admin).await?;
    pg::ensure_database(&client, &Ident::new(EMBEDDED_DATABASE)?).await?;
    Ok(Database {
        config: pg::parse_config(&cluster.superuser_dsn(EMBEDDED_DATABASE))?,
        endpoint: Endpoint {
            host: "127.0.0.1".into(),
            port: cluster.port(),
            database: EMBEDDED_DATABASE.into(),
        },
        cluster: Some(cluster),
        backup_dir: None,
    })
}

/// An existing server named by URL.
pub fn external(url: &str) -> anyhow::Result<Database> {
    let config = pg::parse_config(url)?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        _ => "localhost".to_string(),
    };
    let endpoint = Endpoint {
        host,
        port: config.get_ports().first().copied().unwrap_or(5432),
        database: config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres")
            .to_string(),
    };
    Ok(Database {
        config,
        endpoint,
        cluster: None,
        backup_dir: None,
    })
}

/// Connects, migrates the control plane, registers the template and reconciles
/// operations that a crashed process left behind.
pub async fn platform(db: &Database, key: SecretKey, pool_size: usize) -> anyhow::Result<Platform> {
    platform_with(db, key, pool_size, Template::builtin()).await
}

/// [`platform`] with the operator's tenant template.
pub async fn platform_with(
    db: &Database,
    key: SecretKey,
    pool_size: usize,
    template: Template,
) -> anyhow::Result<Platform> {
    let mut config = db.config.clone();
    pg::control_session_options(&mut config);
    let mut client = pg::connect(&config).await?;
    let caps = Capabilities::probe(&client).await?;
    controlplane::migrate(&mut client).await?;
    drop(client);
    let pool = pg::pool(config.clone(), pool_size)?;
    {
        let mut c = pool.get().await?;
        template.register(&c).await?;
        hardening::secure_defaults(&mut c, &Ident::new(db.endpoint.database.clone())?).await?;
        c.batch_execute(crate::isolation::realtime_triggers::INSTALL_SQL)
            .await?;
        let (_, refused) = hardening::close_databases(&c).await?;
        if !refused.is_empty() {
            tracing::warn!(databases = ?refused, "PUBLIC can connect to these databases and berqenas may not change that: tenant roles can reach them (a DBA must REVOKE CONNECT, TEMPORARY ... FROM PUBLIC)");
        }
        let roles = tenant::all_roles(&c).await?;
        hardening::check(&c, &roles).await.context("at start")?;
    }
    let platform = Platform {
        pool: pool.clone(),
        config: config.clone(),
        key,
        caps,
        template,
        endpoint: db.endpoint.clone(),
        embedded: db.cluster.is_some(),
        network: std::sync::Arc::new(crate::network::Settings::new(
            db.cluster.as_ref().map(|c| c.pgdata().join("pg_hba.conf")),
            db.cluster
                .as_ref()
                .and_then(|c| c.socket_dir().parent().map(|d| d.join("network")))
                .unwrap_or_else(|| PathBuf::from(".berqenas/network")),
            db.endpoint.port,
        )),
        backups: crate::backup::store::local(
            db.backup_dir.as_deref(),
            &db.cluster
                .as_ref()
                .and_then(|c| c.socket_dir().parent().map(Path::to_path_buf))
                .unwrap_or_else(|| PathBuf::from(".berqenas")),
        ),
        pgbouncer: Default::default(),
        onboarding_allow_private: false,
        sign_in: Default::default(),
        public_url: None,
        vectors: None,
        fleet: crate::fleet::Fleet::new(config.clone(), pool.clone(), db.endpoint.clone(), caps),
    };
    tenant::database_mode::ensure_template(&platform).await?;
    tenant::shared_mode::ensure_pool(&platform).await?;
    // The pool's quota guard is made with the pool, not at a tenant's first block:
    // adding its policies locks every pool table exclusively, one by one, and at a
    // block that deadlocked with a disk measurement reading the same tables in
    // another order (the crash matrix caught it).
    {
        let mut c = platform.pool.get().await?;
        let tx = c.transaction().await?;
        crate::isolation::quota_guard::ensure_shared_guard(&tx).await?;
        tx.commit().await?;
    }
    crate::workflows::servers::at_start(&platform).await?;
    crate::isolation::quota_guard::repair_shared_guard(&platform.pool.get().await?).await?;
    Ok(platform)
}

/// The admin token: given, or generated once into the data directory (mode 0600).
pub fn admin_token(given: Option<&SecretString>, data_dir: &Path) -> anyhow::Result<SecretString> {
    match given {
        Some(t) if t.expose_secret().len() >= 16 => Ok(t.clone()),
        Some(_) => anyhow::bail!("BERQENAS_ADMIN_TOKEN must be at least 16 characters"),
        None => Ok(secrets::read_or_create(
            &data_dir.join(ADMIN_TOKEN_FILE),
            secrets::random_token,
        )?
        .into()),
    }
}

/// Held for as long as a `serve` runs on a data directory: a second one refuses to
/// start there (it would adopt the first one's cluster, then stop it when its own
/// start failed). The kernel releases it when the process dies, however it dies.
pub const LOCK_FILE: &str = "serve.lock";

/// Takes the data directory for this process, or names the process that has it.
fn lock_data_dir(dir: &Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    use std::io::{Read, Seek, Write};
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            lock.set_len(0)?;
            lock.rewind()?;
            writeln!(lock, "{}", std::process::id())?;
            Ok(lock)
        }
        Err((mut file, _)) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let url = std::fs::read_to_string(dir.join(SERVER_URL_FILE))
                .map(|u| u.trim().to_string())
                .unwrap_or_else(|_| "not serving yet".into());
            anyhow::bail!(
                "another berqenas serve (pid {}, {url}) is using the data directory {}; stop it first, or give this one another --data-dir",
                pid.trim(),
                dir.display()
            )
        }
    }
}

pub async fn run(opts: ServeOptions) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    std::fs::create_dir_all(&opts.data_dir)
        .with_context(|| format!("creating the data directory {}", opts.data_dir.display()))?;
    let _lock = lock_data_dir(&opts.data_dir)?;
    // Before the cluster: a busy port must not cost a start (and a stop) of it.
    let listener = TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("listening on {}", opts.listen))?;
    let mut db = match &opts.database_url {
        Some(url) => external(url.expose_secret())?,
        None => embedded(&opts.data_dir, opts.pg_port).await?,
    };
    db.backup_dir = Some(
        opts.backup_dir
            .clone()
            .unwrap_or_else(|| opts.data_dir.join("backups")),
    );
    let result = serve(&opts, &db, listener, shutdown).await;
    if let Some(cluster) = &db.cluster {
        tracing::info!("stopping the embedded PostgreSQL cluster");
        let cluster = cluster.clone();
        tokio::task::spawn_blocking(move || cluster.stop())
            .await?
            .context("stopping the embedded PostgreSQL cluster")?;
    }
    result
}

async fn serve(
    opts: &ServeOptions,
    db: &Database,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let key = SecretKey::load(
        opts.secret_key.as_ref().map(|k| k.expose_secret()),
        &opts.data_dir,
    )?;
    let token = admin_token(opts.admin_token.as_ref(), &opts.data_dir)?;
    let template = match &opts.template_dir {
        Some(dir) => Template::from_dir(dir)?,
        None => Template::builtin(),
    };
    let identity = identity(&opts.data_dir);
    crate::instances::refuse_shared_cluster(&db.config, &identity, db.cluster.is_some()).await?;
    let mut platform = platform_with(db, key, opts.pool_size, template).await?;
    platform.network = std::sync::Arc::new(network_settings(
        &platform,
        opts,
        listener.local_addr()?.port(),
    ));
    platform.pgbouncer = opts.pgbouncer.clone();
    platform.onboarding_allow_private = opts.onboarding_allow_private;
    // One address for invitation links and onboarding steps' callbacks.
    platform.public_url = Some(
        opts.public_url
            .as_deref()
            .map(|u| u.trim_end_matches('/').to_string())
            .unwrap_or_else(|| format!("http://{}", listener.local_addr().expect("bound"))),
    );
    platform.sign_in = opts.sign_in.clone();
    platform.vectors = crate::vector::from_options(
        opts.vector_url.as_deref(),
        opts.vector_backend.as_deref(),
        &platform.config,
    )
    .map_err(anyhow::Error::msg)?;
    crate::workflows::pooler::prepare(&platform).await?;
    // The other servers' in the background: one that is down must not hold the start.
    let others = platform.clone();
    tokio::spawn(async move { crate::workflows::pooler::prepare_servers(&others).await });
    let rt = Runtime::start(platform, &identity).await?;
    if db.cluster.is_some() {
        crate::instances::mark_embedded(&rt.platform, rt.engine.instance()).await?;
    }
    // The jobs one instance runs (docs/instances.md): campaigned for from now on.
    let elected = std::sync::Arc::new(crate::pg::election::Elected::default());
    let campaign = tokio::spawn(crate::pg::election::campaign_forever(
        rt.platform.config.clone(),
        crate::instances::JOBS,
        elected.clone(),
    ));
    crate::workflows::network::enforce_at_start(&rt).await?;
    let platform = rt.platform.clone();
    let url = format!("http://{}", listener.local_addr()?);
    // Written whole or not at all: a client polling for the file must never read half
    // a URL (and connect to the wrong port).
    let partial = opts.data_dir.join(format!("{SERVER_URL_FILE}.partial"));
    std::fs::write(&partial, format!("{url}\n"))?;
    std::fs::rename(&partial, opts.data_dir.join(SERVER_URL_FILE))?;
    tracing::info!(
        url = %url,
        postgres = %format!("{}:{}", db.endpoint.host, db.endpoint.port),
        embedded = db.cluster.is_some(),
        "berqenas is serving"
    );
    println!("berqenas {} listening on {url}", crate::VERSION);
    let worker = tokio::spawn(reconcile_forever(rt.clone(), elected.clone()));
    let backup_worker = tokio::spawn(back_up_forever(
        rt.clone(),
        elected.clone(),
        opts.backup_jobs,
    ));
    crate::quota::worker::check_capacity(&platform, opts.pool_size, opts.data_api_connections)
        .await?;
    let state = AppState::new(rt.clone(), token.expose_secret())
        .with_elected(elected.clone())
        .with_metrics_token(opts.metrics_token.as_ref().map(|t| t.expose_secret()))
        .with_integration_token(opts.integration_token.as_ref().map(|t| t.expose_secret()))
        .with_data_api(crate::dataapi::DataApiConfig {
            max_connections: opts.data_api_connections,
            result_memory: opts.data_api_result_memory,
            ..Default::default()
        });
    // The tenant alert rules for a file-based Prometheus, written before serving
    // (a start renders them whole) and kept in step after that.
    let rules_file = crate::monitoring::files::RulesFile::new(opts.data_dir.join("monitoring"));
    rules_file
        .refresh(&platform)
        .await
        .with_context(|| format!("writing {}", rules_file.path().display()))?;
    let rules_writer = tokio::spawn(
        rules_file
            .clone()
            .run_forever(platform.clone(), RULES_REFRESH),
    );
    let state = state.with_monitoring(api::monitoring::Settings {
        targets: opts.monitoring_targets.clone(),
        rules_file: Some(rules_file),
    });
    let relay = crate::events::relay::Relay::new(
        platform.pool.clone(),
        platform.key.clone(),
        opts.webhooks.clone(),
    );
    let state = match &opts.console_password {
        Some(p) => state.with_console_password(
            crate::console::Password::new(p.expose_secret()).map_err(anyhow::Error::msg)?,
        ),
        None => state,
    };
    let state = state.with_webhooks(
        crate::events::webhooks::Settings {
            allow_private: opts.webhooks.allow_private,
        },
        relay.wake.clone(),
    );
    let relay_worker = tokio::spawn(relay.run_forever(platform.config.clone()));
    let quota_worker = tokio::spawn(crate::workflows::quotas::run_forever(
        rt.clone(),
        state.limits.clone(),
        state.data.clone(),
        opts.quota_interval,
        opts.usage_history,
        elected.clone(),
    ));
    // The warm pool's refills (docs/warm_pool.md), only when asked for.
    let warm_pool = (!opts.warm_pool.is_off()).then(|| {
        tokio::spawn(crate::workflows::warm_pool::run_forever(
            rt.clone(),
            opts.warm_pool,
        ))
    });
    let usage_reporter = tokio::spawn(crate::quota::report::run_forever(
        platform.clone(),
        state.limits.clone(),
        opts.usage_report_interval,
    ));
    // On SIGTERM the engine stops taking operations and each running one stops at its
    // next step boundary (answering 503), so the requests waiting on them end too.
    let engine = rt.engine.clone();
    // Open realtime streams never end by themselves: they end here, or the graceful
    // shutdown would wait for them forever.
    let realtime = state.realtime.clone();
    let shutdown = async move {
        shutdown.await;
        engine.begin_stop();
        realtime.shutdown();
    };
    let served = axum::serve(
        listener,
        api::router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    worker.abort();
    backup_worker.abort();
    quota_worker.abort();
    usage_reporter.abort();
    if let Some(w) = warm_pool {
        w.abort();
    }
    relay_worker.abort();
    rules_writer.abort();
    campaign.abort();
    rt.engine.shutdown(SHUTDOWN_DEADLINE).await;
    served?;
    let _ = std::fs::remove_file(opts.data_dir.join(SERVER_URL_FILE));
    Ok(())
}

/// The platform's network settings with the operator's options on top.
fn network_settings(p: &Platform, opts: &ServeOptions, api_port: u16) -> crate::network::Settings {
    let mut s = (*p.network).clone();
    let o = &opts.network;
    if let Some(pool) = o.vpn_pool {
        s.pool = pool;
    }
    if o.pg_hba_file.is_some() {
        s.hba_file = o.pg_hba_file.clone();
    }
    s.files_dir = opts.data_dir.join("network");
    s.trusted_proxies = o.trusted_proxies.clone();
    s.vpn_interface = o.vpn_interface.clone();
    s.vpn_endpoint = o
        .vpn_endpoint
        .clone()
        .unwrap_or_else(|| format!("{}:{}", p.endpoint.host, crate::network::enforce::WG_PORT));
    s.api_port = api_port;
    s
}

/// How often the tenant rule file is rendered again without a wake (changes made by
/// the worker, a purge, or another instance).
pub const RULES_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

/// How long a SIGTERM waits for the running operations' current steps to end; past
/// it they stop where they are, and the next start settles them.
pub const SHUTDOWN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// What makes a restart of this process the same server: its host and data
/// directory (one serve per data directory, see [`LOCK_FILE`]).
fn identity(data_dir: &Path) -> String {
    let host = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".into());
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    format!("{host}:{}", dir.display())
}

/// The worker rounds' period: `BERQENAS_RECONCILE_SECS`, 30 s by default.
fn worker_period() -> std::time::Duration {
    let secs = std::env::var("BERQENAS_RECONCILE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    std::time::Duration::from_secs(secs)
}

/// The backup worker's rounds, on a task of their own: a round takes its due backups
/// `jobs` at a time (at most [`crate::backup::worker::MAX_PER_ROUND`]), and one
/// backup can take minutes (a large tenant, or one whose tables a tenant's session
/// holds locked). In the worker round they held up the role check, the settling of
/// dead operations, the servers' health and the purges for as long.
async fn back_up_forever(
    rt: std::sync::Arc<Runtime>,
    elected: std::sync::Arc<crate::pg::election::Elected>,
    jobs: usize,
) {
    let mut tick = tokio::time::interval(worker_period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if elected.holds(crate::instances::BACKUPS) {
            if let Err(e) = crate::workflows::backups::worker_round(&rt, jobs).await {
                tracing::warn!(error = %e, "backup worker round failed; retrying at the next tick");
            }
        }
    }
}

/// The worker round: the operations of processes that are gone (on any instance) are
/// settled (claimed one by one), this host's network files caught up, then the jobs
/// this instance is elected for (docs/instances.md).
async fn reconcile_forever(
    rt: std::sync::Arc<Runtime>,
    elected: std::sync::Arc<crate::pg::election::Elected>,
) {
    use crate::instances::{IDEMPOTENCY_KEYS, PURGES, ROLE_CHECK, TRIALS};
    let platform = rt.platform.clone();
    // Half a period out of step with the quota round (which starts at once, with the
    // same 30 s by default): the role check and the disk round, each a burst of
    // catalog reads at 10,000 tenants, ran in the same second and took both cores
    // from the API (docs/scale.md).
    let period = worker_period();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period / 2, period);
    loop {
        tick.tick().await;
        if let Err(e) = rt.engine.reconcile(&rt).await {
            tracing::warn!(error = %e, "settling operations failed; retrying at the next tick");
        }
        if let Err(e) = crate::workflows::network::catch_up(&rt).await {
            tracing::warn!(error = %e, "rendering the network files again failed; retrying at the next tick");
        }
        match platform.pool.get().await {
            Ok(c) if elected.holds(IDEMPOTENCY_KEYS) => {
                if let Err(e) = crate::store::operations::expire_idempotency_keys(&c).await {
                    tracing::warn!(error = %e, "expiring idempotency keys failed; retrying at the next tick");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "control database unavailable; retrying at the next tick")
            }
        }
        if elected.holds(ROLE_CHECK) {
            match crate::workflows::role_check::round(&rt).await {
                Ok(report) if !report.violations.is_empty() => {
                    tracing::error!(violations = ?report.violations, suspended = ?report.suspended, "tenant roles had more than berqenas gives them")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "tenant role check failed; retrying at the next tick")
                }
            }
        }
        // Servers that went away are marked down (with why), ones that came back up.
        if let Err(e) = crate::workflows::servers::health_round(&platform).await {
            tracing::warn!(error = %e, "server health round failed; retrying at the next tick");
        }
        if elected.holds(TRIALS) {
            if let Err(e) = crate::workflows::lifecycle::expire_trials(&rt).await {
                tracing::warn!(error = %e, "trial expiry failed; retrying at the next tick");
            }
        }
        if elected.holds(PURGES) {
            if let Err(e) = crate::workflows::offboarding::run_due(&rt).await {
                tracing::warn!(error = %e, "purges and name releases failed; retrying at the next tick");
            }
        }
    }
}

/// Installs the handlers at once (a SIGTERM while starting, or just after the URL
/// file appears, must still stop the server cleanly); resolves on SIGTERM or Ctrl-C.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing a SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing a SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_show_no_secret_in_debug() {
        let key = "ab".repeat(32);
        let opts = ServeOptions {
            data_dir: PathBuf::from(".berqenas"),
            database_url: Some("postgresql://admin:db-pass-1234@db:5432/berqenas".into()),
            listen: "127.0.0.1:0".parse().unwrap(),
            pg_port: None,
            admin_token: Some("admin-token-abcdefgh".into()),
            secret_key: Some(key.as_str().into()),
            pool_size: 4,
            template_dir: None,
            backup_dir: None,
            backup_jobs: 1,
            quota_interval: std::time::Duration::from_secs(30),
            warm_pool: Default::default(),
            usage_report_interval: std::time::Duration::from_secs(3600),
            usage_history: Default::default(),
            console_password: None,
            data_api_connections: 8,
            data_api_result_memory: 1 << 20,
            metrics_token: Some("metrics-token-xyz".into()),
            monitoring_targets: Vec::new(),
            network: NetworkOptions::default(),
            onboarding_allow_private: false,
            public_url: None,
            webhooks: Default::default(),
            integration_token: Some("integration-token-qrs".into()),
            sign_in: Default::default(),
            vector_url: None,
            vector_backend: None,
            pgbouncer: crate::pg::pgbouncer::PgBouncer {
                auth_user: None,
                admin_url: Some("postgresql://admin:bouncer-pass-9876@pgb:6432/pgbouncer".into()),
            },
        };
        let shown = format!("{opts:?}");
        for secret in [
            "db-pass-1234",
            "admin-token-abcdefgh",
            key.as_str(),
            "metrics-token-xyz",
            "bouncer-pass-9876",
            "integration-token-qrs",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("[REDACTED]"), "{shown}");
    }
}
