//! The command line: `berqenas serve` runs the server; every other command is a client
//! of its REST API (like kubectl), with table output for people and `-o json` for scripts.

mod api_key;
mod audit;
mod auth_provider;
mod backup;
pub mod client;
mod config;
mod events;
mod lifecycle;
mod migrate;
mod move_tenant;
mod network;
mod operation;
mod output;
mod pages;
mod plan;
mod progress;
mod psql;
mod quota;
mod realtime;
mod servers;
mod template;
mod tenant;
mod webhook;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::secrets::SecretString;
use crate::server::{self, ServeOptions};
use client::Client;

/// berqenas: a tenant control plane for PostgreSQL.
///
/// `berqenas serve` runs the API server (on an embedded PostgreSQL cluster unless
/// --database-url is given); the other commands talk to it.
#[derive(Debug, Parser)]
#[command(name = "berqenas", version, propagate_version = true)]
pub struct Cli {
    /// How log lines are written to stderr: text, or one JSON object a line for log
    /// shippers. Colour only when stderr is a terminal.
    #[arg(long, global = true, value_enum, env = "BERQENAS_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the API server and its background worker.
    Serve(Box<ServeArgs>),
    /// Create, inspect, change and delete tenants.
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// Take, list, restore and verify tenant backups.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Open psql on the server as its superuser, or as a tenant's login role.
    Psql(psql::PsqlArgs),
    /// Show the server, the PostgreSQL it uses and the tenant counts.
    Status(ClientArgs),
    /// Migrate tenants to the latest tenant template version (and `migrate status`).
    Migrate(migrate::MigrateArgs),
    /// Read the audit trail and verify its hash chain.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// The events berqenas emitted (the outbox webhooks deliver).
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// A tenant's quotas and its usage against them.
    #[command(subcommand)]
    Quota(quota::QuotaCommand),
    /// The plans tenants are on (`plan list`).
    #[command(subcommand)]
    Plan(plan::PlanCommand),
    /// Operations and their steps (`operation get ID --watch` follows a running one).
    #[command(subcommand)]
    Operation(operation::OperationCommand),
    /// The tenant template: `template export DIR` writes the built-in one.
    #[command(subcommand)]
    Template(template::TemplateCommand),
    /// Webhook endpoints: add, list, ping, deliveries, replay, rotate-secret.
    #[command(subcommand)]
    Webhook(webhook::WebhookCommand),
    /// A tenant's realtime events: tail a stream, publish, publish a table's changes.
    #[command(subcommand)]
    Realtime(realtime::RealtimeCommand),
    /// The PostgreSQL servers tenants are placed on: add, list, drain, remove.
    #[command(subcommand)]
    Server(servers::ServerCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where berqenas keeps its embedded cluster, admin token and secret key.
    #[arg(long, env = "BERQENAS_DATA_DIR", default_value = ".berqenas")]
    pub data_dir: PathBuf,
    /// Use this PostgreSQL server instead of the embedded one (a superuser, or a role
    /// with CREATEROLE and CREATEDB), e.g. postgresql://admin:pw@db:5432/berqenas
    #[arg(long, env = "BERQENAS_DATABASE_URL", hide_env_values = true, value_parser = secret)]
    pub database_url: Option<SecretString>,
    /// Address the API listens on.
    #[arg(long, env = "BERQENAS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// TCP port of the embedded cluster. Omitted: the port of the previous start while
    /// it is free (tenants' connection strings name it), else a free one.
    #[arg(long, env = "BERQENAS_PG_PORT")]
    pub pg_port: Option<u16>,
    /// Admin bearer token; generated into <data-dir>/admin-token when omitted.
    #[arg(
        long = "admin-token",
        env = "BERQENAS_ADMIN_TOKEN",
        hide_env_values = true,
        value_parser = secret
    )]
    pub admin_token: Option<SecretString>,
    /// 32-byte key (hex or base64) sealing stored credentials; generated into
    /// <data-dir>/secret-key when omitted.
    #[arg(long, env = "BERQENAS_SECRET_KEY", hide_env_values = true, value_parser = secret)]
    pub secret_key: Option<SecretString>,
    /// Control-plane connections.
    #[arg(long, env = "BERQENAS_POOL_SIZE", default_value_t = 16)]
    pub pool_size: usize,
    /// The tenant template: a directory of NNNN_name.sql files, applied in order as
    /// each tenant's owner role [default: the built-in template].
    #[arg(long, env = "BERQENAS_TEMPLATE_DIR")]
    pub template_dir: Option<PathBuf>,
    /// Directory backups are kept in [default: <data-dir>/backups]
    #[arg(long, env = "BERQENAS_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// The warm pool: unclaimed tenants kept ready per isolation mode, so a create is
    /// a rename instead of new DDL (docs/warm_pool.md), e.g.
    /// `schema=50,database=10,shared=50`. The schema and database counts apply to
    /// every server that takes new tenants, each with pools of its own. A database
    /// pool also keeps a session open in the database of each of its next members
    /// (up to 16 connections), for the claims. [default: off]
    #[arg(long, env = "BERQENAS_WARM_POOL", value_parser = parse_warm_pool)]
    pub warm_pool: Option<crate::workflows::warm_pool::Targets>,
    /// Scheduled backups taken at once by the backup worker (each a `pg_dump`
    /// process and two sessions on the tenant's server: pg_dump's and the one that
    /// holds its snapshot). At 10,000 schema-mode tenants in one database a backup
    /// takes seconds, since pg_dump reads the whole catalog (docs/backups.md).
    #[arg(long, env = "BERQENAS_BACKUP_JOBS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub backup_jobs: u16,
    /// How often disk use is measured and disk quotas enforced (e.g. 30s, 5m).
    #[arg(long, env = "BERQENAS_QUOTA_INTERVAL", default_value = "30s", value_parser = parse_interval)]
    pub quota_interval: std::time::Duration,
    /// How often each tenant's usage is reported as a `usage.reported` event, for
    /// billing (e.g. 1h, 15m).
    #[arg(long, env = "BERQENAS_USAGE_REPORT_INTERVAL", default_value = "1h", value_parser = parse_interval)]
    pub usage_report_interval: std::time::Duration,
    /// How often each live tenant's disk, connections and API calls are sampled for
    /// the console's usage charts (e.g. 5m, 1m).
    #[arg(long, env = "BERQENAS_USAGE_SAMPLE_INTERVAL", default_value = "5m", value_parser = parse_interval)]
    pub usage_sample_interval: std::time::Duration,
    /// How long usage samples are kept (older ones are pruned by the quota round).
    #[arg(long, env = "BERQENAS_USAGE_RETENTION", default_value = "30d", value_parser = parse_interval)]
    pub usage_retention: std::time::Duration,
    /// A tenant's usage sample is stored when its disk, connections or API calls moved
    /// since its last stored one, or that one is this old (its figures stand until
    /// then); at most the sample interval, every sample is stored.
    #[arg(long, env = "BERQENAS_USAGE_SAMPLE_HOLD", default_value = "1h", value_parser = parse_interval)]
    pub usage_sample_hold: std::time::Duration,
    /// A password for the web console, besides the admin token (only its hash is
    /// kept, in memory; at least 12 characters).
    #[arg(long, env = "BERQENAS_CONSOLE_PASSWORD", hide_env_values = true, value_parser = secret)]
    pub console_password: Option<SecretString>,
    /// Open data API connections across all tenants (kept well below the server's
    /// max_connections; checked at start).
    #[arg(long, env = "BERQENAS_DATA_API_CONNECTIONS", default_value_t = 64)]
    pub data_api_connections: usize,
    /// Memory for data API results, all requests together (e.g. 256MB): a request
    /// that cannot get its share answers 503.
    #[arg(long, env = "BERQENAS_DATA_API_RESULT_MEMORY", default_value = "256MB", value_parser = parse_memory)]
    pub data_api_result_memory: usize,
    /// A bearer token for Prometheus: it may read /metrics, /api/v1/monitoring/rules and
    /// /api/v1/monitoring/targets, and nothing else (the admin token also may).
    #[arg(long, env = "BERQENAS_METRICS_TOKEN", hide_env_values = true, value_parser = secret)]
    pub metrics_token: Option<SecretString>,
    /// The host:port Prometheus scrapes this instance at, announced by
    /// /api/v1/monitoring/targets (repeat, or comma-separate, for several instances);
    /// by default the address Prometheus sent its discovery request to.
    #[arg(long = "monitoring-target", env = "BERQENAS_MONITORING_TARGETS", value_delimiter = ',', value_parser = monitoring_target)]
    pub monitoring_targets: Vec<String>,
    #[command(flatten)]
    pub network: network::NetworkArgs,
    /// The role PgBouncer's auth_user logs in as: berqenas installs the lookup function
    /// its auth_query calls in every database tenants use (docs/deploy.md#pgbouncer).
    #[arg(long, env = "BERQENAS_PGBOUNCER_AUTH_USER", value_parser = ident)]
    pub pgbouncer_auth_user: Option<crate::pg::Ident>,
    /// PgBouncer's admin console, e.g. postgresql://admin:pw@pgbouncer:6432/pgbouncer:
    /// a suspension also drops the tenant's pooled connections there.
    #[arg(long, env = "BERQENAS_PGBOUNCER_ADMIN_URL", hide_env_values = true, value_parser = secret)]
    pub pgbouncer_admin_url: Option<SecretString>,
    /// Let onboarding steps point at loopback, private and link-local addresses
    /// (refused by default: a registration must not reach into the server's network).
    #[arg(long, env = "BERQENAS_ONBOARDING_ALLOW_PRIVATE")]
    pub onboarding_allow_private: bool,
    /// Let webhooks go to loopback, link-local, private and unspecified addresses
    /// (refused by default, at creation and at every delivery). For tests and development.
    #[arg(long, env = "BERQENAS_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// The waits between a webhook's attempts; after the last one fails the delivery
    /// is dead [default: Svix's 5s,5m,30m,2h,5h,10h,10h]
    #[arg(long, env = "BERQENAS_WEBHOOK_RETRY_SCHEDULE", value_parser = crate::events::relay::parse_schedule)]
    pub webhook_retry_schedule: Option<Schedule>,
    /// One webhook attempt's time limit.
    #[arg(long, env = "BERQENAS_WEBHOOK_TIMEOUT", default_value = "15s", value_parser = parse_webhook_timeout)]
    pub webhook_timeout: std::time::Duration,
    /// A bearer token for the platform's auth service: it alone reads tenants' sign-in
    /// provider secrets (GET /api/v1/integration/tenants/{name}/auth-providers, every
    /// read audited). Unset: those endpoints are closed. The admin token never opens them.
    #[arg(long, env = "BERQENAS_INTEGRATION_TOKEN", hide_env_values = true, value_parser = secret)]
    pub integration_token: Option<SecretString>,
    /// How long an invitation link works (e.g. 7d, 48h, 30m).
    #[arg(long, env = "BERQENAS_INVITATION_TTL", default_value = "7d", value_parser = parse_invitation_ttl)]
    pub invitation_ttl: std::time::Duration,
    /// The address clients and onboarding steps reach this server at, e.g.
    /// https://berqenas.example.com: invitation links and onboarding steps'
    /// `callback_url` (where a step that answered 202 posts its result) start with it
    /// [default: http://<the listen address>]
    #[arg(long, env = "BERQENAS_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Let sign-in provider checks fetch an issuer's discovery document and keys from
    /// loopback and private addresses, over plain http too (refused by default). For
    /// tests and development.
    #[arg(long, env = "BERQENAS_AUTH_ALLOW_PRIVATE")]
    pub auth_allow_private: bool,
    /// A Chroma server's base URL (e.g. http://chroma:8000): tenants created with
    /// `vector_store: true` get a collection there (docs/vector-store.md).
    #[arg(long, env = "BERQENAS_VECTOR_URL")]
    pub vector_url: Option<String>,
    /// Where tenants' vector stores live: `chroma` (needs --vector-url; the default
    /// when it is given) or `pgvector` (a table in each tenant's own database or
    /// schema, on a server that has the extension).
    #[arg(long, env = "BERQENAS_VECTOR_BACKEND", value_parser = ["chroma", "pgvector"])]
    pub vector_backend: Option<String>,
}

/// `--webhook-retry-schedule`'s value (clap needs a named type for a list in one flag).
pub type Schedule = Vec<std::time::Duration>;

fn parse_invitation_ttl(s: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse("--invitation-ttl", s).map_err(|p| p.message)
}

fn parse_webhook_timeout(s: &str) -> Result<std::time::Duration, String> {
    crate::duration::parse("--webhook-timeout", s).map_err(|p| p.message)
}

/// `--pgbouncer-auth-user`: a role name.
fn ident(s: &str) -> Result<crate::pg::Ident, String> {
    crate::pg::Ident::new(s).map_err(|e| e.to_string())
}

/// The isolation modes `--isolation` takes (help lists them; clap refuses others).
pub const ISOLATIONS: [&str; 3] = ["schema", "database", "shared"];

/// A flag that holds a secret: kept in a [`SecretString`], so `Debug` shows none of it.
fn secret(s: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(s.into())
}

/// `--data-api-result-memory`: a size in PostgreSQL's units (`256MB`).
fn parse_memory(s: &str) -> Result<usize, String> {
    let bytes = crate::tenant::size::parse_size(s).map_err(|e| e.to_string())?;
    usize::try_from(bytes).map_err(|_| format!("{s:?} is too large"))
}

fn parse_warm_pool(s: &str) -> Result<crate::workflows::warm_pool::Targets, String> {
    s.parse()
}

/// `--quota-interval` and the other durations of `serve`: the durations requests take
/// (`500ms`, `30s`, `5m`, `1h 30m`, see [`crate::duration`]), and plain seconds, which
/// `--quota-interval` has always accepted. The message names no flag: clap's own
/// names the one given.
fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let plain_seconds = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let s = if plain_seconds {
        format!("{s}s")
    } else {
        s.to_string()
    };
    crate::duration::parse("the value", &s).map_err(|p| p.message)
}

/// A client command about one tenant and nothing else.
#[derive(Debug, Args)]
pub struct TenantArgs {
    /// Tenant name or id.
    pub tenant: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// How a client command finds the server.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// URL of the berqenas API [default: <data-dir>/server-url, else http://127.0.0.1:8080]
    #[arg(long, env = "BERQENAS_URL")]
    pub server: Option<String>,
    /// Admin token [default: <data-dir>/admin-token]
    #[arg(long, env = "BERQENAS_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The server's data directory, where the URL and token are found.
    #[arg(long, env = "BERQENAS_DATA_DIR", default_value = ".berqenas")]
    pub data_dir: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// A command on one tenant: its name, and how to reach the server.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// Tenant name or id.
    pub name: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

impl ClientArgs {
    pub fn client(&self) -> Client {
        let found = self
            .server
            .clone()
            .or_else(|| read_trimmed(&self.data_dir.join(server::SERVER_URL_FILE)));
        let guessed_url = found.is_none();
        let server = found.unwrap_or_else(|| "http://127.0.0.1:8080".into());
        let token_file = self.data_dir.join(server::ADMIN_TOKEN_FILE);
        let token = self.token.clone().or_else(|| read_trimmed(&token_file));
        Client::new(&server, token)
            .with_no_token_hint(Some(self.no_token_hint(&token_file)), guessed_url)
    }

    /// Run outside the server's directory, the CLI finds no data directory: say so and
    /// how to point at one, rather than pass on the server's "wrong admin token".
    fn no_token_hint(&self, token_file: &Path) -> String {
        let found = if self.data_dir.is_dir() {
            format!("{} holds no admin token", token_file.display())
        } else if self.data_dir == Path::new(".berqenas") {
            "no ./.berqenas found in this directory".to_string()
        } else {
            format!("no data directory found at {}", self.data_dir.display())
        };
        format!(
            "{found}, so the CLI has no admin token. Run it in the directory `berqenas serve` runs in, \
             pass --data-dir <that directory's .berqenas>, or set BERQENAS_URL and BERQENAS_ADMIN_TOKEN \
             (or --server and --token)"
        )
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    let s = std::fs::read_to_string(path).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = {
        use clap::{CommandFactory, FromArgMatches};
        let matches = env_values_only_when_set(Cli::command()).get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    };
    let serving = matches!(cli.command, Command::Serve(_));
    init_tracing(serving, cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// clap's help shows `[env: BERQENAS_URL=]` for an unset variable, which reads as one
/// set to the empty string: show the variable's name always, its value only when set.
fn env_values_only_when_set(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| match a.get_env() {
        Some(name) if std::env::var_os(name).is_none() => a.hide_env_values(true),
        _ => a,
    })
    .mut_subcommands(env_values_only_when_set)
}

/// `--monitoring-target`: a `host:port` Prometheus can scrape.
fn monitoring_target(text: &str) -> Result<String, String> {
    if crate::monitoring::targets::valid_address(text) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "{text:?} is not host:port (a host name or IP address, IPv6 in brackets, and a port)"
        ))
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(a) => {
            server::run(ServeOptions {
                data_dir: a.data_dir,
                database_url: a.database_url,
                listen: a.listen,
                pg_port: a.pg_port,
                admin_token: a.admin_token,
                secret_key: a.secret_key,
                pool_size: a.pool_size,
                template_dir: a.template_dir,
                backup_dir: a.backup_dir,
                backup_jobs: a.backup_jobs.into(),
                quota_interval: a.quota_interval,
                warm_pool: a.warm_pool.unwrap_or_default(),
                usage_report_interval: a.usage_report_interval,
                usage_history: crate::quota::history::Settings {
                    every: a.usage_sample_interval,
                    keep: a.usage_retention,
                    hold: a.usage_sample_hold,
                },
                console_password: a.console_password,
                data_api_connections: a.data_api_connections,
                data_api_result_memory: a.data_api_result_memory,
                metrics_token: a.metrics_token,
                monitoring_targets: a.monitoring_targets,
                network: a.network.options()?,
                onboarding_allow_private: a.onboarding_allow_private,
                public_url: a.public_url,
                vector_url: a.vector_url,
                vector_backend: a.vector_backend,
                webhooks: crate::events::relay::RelayOptions {
                    allow_private: a.webhook_allow_private,
                    schedule: a
                        .webhook_retry_schedule
                        .unwrap_or_else(|| crate::events::relay::DEFAULT_SCHEDULE.to_vec()),
                    timeout: a.webhook_timeout,
                    ..Default::default()
                },
                pgbouncer: crate::pg::pgbouncer::PgBouncer {
                    auth_user: a.pgbouncer_auth_user,
                    admin_url: a.pgbouncer_admin_url,
                },
                integration_token: a.integration_token,
                sign_in: crate::platform::SignIn {
                    invitation_ttl: a.invitation_ttl,
                    auth_allow_private: a.auth_allow_private,
                },
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Tenant(cmd) => tenant::run(cmd).await,
        Command::Backup(cmd) => backup::run(cmd).await,
        Command::Psql(a) => psql::run(a).await,
        Command::Status(a) => output::status(&a).await,
        Command::Migrate(a) => migrate::run(a).await,
        Command::Audit(cmd) => audit::run(cmd).await,
        Command::Events(cmd) => events::run(cmd).await,
        Command::Quota(cmd) => quota::run(cmd).await,
        Command::Template(cmd) => template::run(cmd),
        Command::Plan(cmd) => plan::run(cmd).await,
        Command::Operation(cmd) => operation::run(cmd).await,
        Command::Webhook(cmd) => webhook::run(cmd).await,
        Command::Realtime(cmd) => realtime::run(cmd).await,
        Command::Server(cmd) => servers::run(cmd).await,
    }
}

fn init_tracing(serving: bool, format: LogFormat) {
    use std::io::IsTerminal;
    let default = if serving { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERQENAS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        // A file or a pipe gets no escape codes; a log shipper gets JSON.
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => fmt.json().with_ansi(false).init(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(super::parse_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(super::parse_interval("45"), Ok(Duration::from_secs(45)));
        assert_eq!(
            super::parse_interval("500ms"),
            Ok(Duration::from_millis(500))
        );
        assert_eq!(super::parse_interval("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(super::parse_interval(" 1h "), Ok(Duration::from_secs(3600)));
        for bad in ["0s", "0", "", "soon", "-5s"] {
            let e = super::parse_interval(bad).unwrap_err();
            assert!(e.starts_with("the value"), "{bad:?}: {e}");
        }
        // Each flag's error names that flag (it once named --quota-interval for all).
        use clap::Parser;
        for flag in [
            "--quota-interval",
            "--usage-sample-interval",
            "--usage-retention",
            "--usage-sample-hold",
        ] {
            let e = super::Cli::try_parse_from(["berqenas", "serve", flag, "0s"])
                .unwrap_err()
                .to_string();
            assert!(e.contains(flag), "{flag}: {e}");
            assert!(e.contains("must be longer than zero"), "{flag}: {e}");
            if flag != "--quota-interval" {
                assert!(!e.contains("--quota-interval"), "{flag}: {e}");
            }
        }
    }

    #[test]
    fn verify_cli() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
