//! `berqenas tenant create|get|list|update|delete`.

use crate::secrets::ExposeSecret;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use super::output;
use super::{ClientArgs, NameArgs};
use crate::backup::policy::PolicyRequest;
use crate::tenant::service::{CreateTenant, UpdateTenant};
use crate::tenant::users::AddUser;

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Onboard a tenant: schema, roles, quotas, API key, audit entry, all or nothing.
    ///
    /// The API key and the database password are printed this once.
    Create(CreateArgs),
    /// Show one tenant (by name or id).
    Get(NameArgs),
    /// List tenants, oldest first.
    List(ListArgs),
    /// Change a tenant's quota, plan, network flags or metadata.
    Update(UpdateArgs),
    /// Delete a tenant, reversibly: logins and API keys stop working, a final backup
    /// is archived, and the data is purged after the retention period (30 days).
    /// `tenant restore` brings it back until then, and from its archive after.
    Delete(DeleteArgs),
    /// Bring a deleted tenant back as it was (a purged one from its archive).
    Restore(NameArgs),
    /// Show or change the tenant's scheduled backups.
    #[command(subcommand)]
    BackupPolicy(PolicyCommand),
    /// Manage the tenant's users: login roles in one of its default roles.
    #[command(subcommand)]
    User(UserCommand),
    /// Show or change the tenant's configuration document (docs/config.md).
    #[command(subcommand)]
    Config(super::config::ConfigCommand),
    /// The tenant's sign-in providers: GitHub, Entra ID, OIDC (docs/auth-providers.md).
    #[command(subcommand)]
    AuthProvider(super::auth_provider::AuthProviderCommand),
    /// Suspend: logins disabled, sessions ended, API keys refused; reason recorded.
    Suspend(super::lifecycle::SuspendArgs),
    /// Resume a suspended tenant: exactly the logins the suspension disabled come back.
    Resume(NameArgs),
    /// End a trial: the tenant becomes active.
    Activate(NameArgs),
    /// Manage the tenant's API keys.
    #[command(subcommand)]
    ApiKey(super::api_key::ApiKeyCommand),
    /// Show the login role's credentials (the read is audited), or give it a new
    /// password with --rotate. A password the tenant sets itself with ALTER ROLE is
    /// replaced by berqenas's at the next worker round: rotate here instead.
    Credentials(CredentialsArgs),
    /// Show who may reach the tenant: access mode, VPN subnet, rules, peers, and
    /// whether this server enforces them.
    Network(NameArgs),
    /// Move the tenant online to another server (logical replication; the same user
    /// and password, at the new server's address). See docs/moves.md.
    Move(super::move_tenant::MoveArgs),
    /// Allow ranges to reach the tenant's database or data API.
    #[command(subcommand)]
    Firewall(super::network::FirewallCommand),
    /// The tenant's VPN (WireGuard peers in its subnet).
    #[command(subcommand)]
    Vpn(super::network::VpnCommand),
}

#[derive(Debug, Args)]
pub struct CredentialsArgs {
    /// Tenant name or id.
    pub name: String,
    /// Set a new password first (shown this once; open sessions stay open).
    #[arg(long)]
    pub rotate: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Add a user; the credentials are printed this once.
    Add(UserAddArgs),
    /// List the tenant's users.
    List(NameArgs),
    /// Remove a user: sessions end, the login is dropped, their objects pass to the tenant.
    Remove(UserRemoveArgs),
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Tenant name or id.
    pub name: String,
    /// Days until the data is purged (0-3650) [default: 30]
    #[arg(long, value_name = "DAYS")]
    pub retention: Option<i64>,
    /// Purge at once, right after the final backup (needs --confirm <name>).
    #[arg(long, requires = "confirm")]
    pub purge_now: bool,
    /// The tenant's name again, to confirm --purge-now.
    #[arg(long, value_name = "NAME")]
    pub confirm: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the tenant's backup policy (schedule null: none).
    Get(NameArgs),
    /// Set the schedule, retention and encryption of the tenant's backups.
    Set(PolicySetArgs),
    /// Stop scheduled backups (existing backups stay until they expire).
    Remove(NameArgs),
}

#[derive(Debug, Args)]
pub struct PolicySetArgs {
    /// Tenant name or id.
    pub name: String,
    /// 5-field cron in UTC, e.g. "0 3 * * *" (03:00 daily) or @daily.
    #[arg(long)]
    pub schedule: String,
    /// Days each backup is kept (1-3650) [default: 30]
    #[arg(long)]
    pub retention_days: Option<i32>,
    /// Encrypt backups (AES-256-GCM) [default: true]
    #[arg(long, action = clap::ArgAction::Set)]
    pub encryption: Option<bool>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct UserAddArgs {
    /// Tenant name or id.
    pub tenant: String,
    #[arg(long)]
    pub email: String,
    /// The default role the user gets.
    #[arg(long, value_parser = ["tenant_admin", "application_manager", "developer", "auditor"])]
    pub role: String,
    /// Teams the user belongs to (repeat, or separate with commas).
    #[arg(long = "team", value_delimiter = ',')]
    pub teams: Vec<String>,
    /// Who invites the user; implies --invite.
    #[arg(long)]
    pub invited_by: Option<String>,
    /// Invite: print a one-time link that hands over the credentials (also sent in
    /// the user.invited event) instead of the credentials.
    #[arg(long)]
    pub invite: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct UserRemoveArgs {
    /// Tenant name or id.
    pub tenant: String,
    #[arg(long)]
    pub email: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `enabled` / `disabled`, as seed 000 spells the VPN flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Toggle {
    Enabled,
    Disabled,
}

impl Toggle {
    fn on(self) -> bool {
        self == Toggle::Enabled
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Tenant name: 3-32 characters, lower-case letters, digits and single hyphens.
    #[arg(long)]
    pub name: String,
    /// Database quota in PostgreSQL units: 5GB, 500MB, 1TB or bytes [default: the plan's]
    #[arg(long)]
    pub db_quota: Option<String>,
    /// VPN access for the tenant.
    #[arg(long, value_enum, default_value_t = Toggle::Disabled)]
    pub vpn: Toggle,
    /// Whether the tenant's public data API is on.
    #[arg(long, default_value = "false", action = clap::ArgAction::Set)]
    pub public_api: bool,
    /// Plan: free, starter, professional, enterprise, custom (`berqenas plan list`
    /// shows their quotas) [default: free]
    #[arg(long)]
    pub plan: Option<String>,
    /// Isolation mode [default: the plan's, else schema]
    #[arg(long, value_parser = super::ISOLATIONS)]
    pub isolation: Option<String>,
    /// Free-form JSON object stored with the tenant.
    #[arg(long, value_parser = parse_json_object)]
    pub metadata: Option<serde_json::Value>,
    /// Start in `trial` for this many days [default: the plan's]
    #[arg(long)]
    pub trial_days: Option<i32>,
    /// Scheduled backups, 5-field cron in UTC, e.g. "0 3 * * *" [default: the plan's policy]
    #[arg(long)]
    pub backup_schedule: Option<String>,
    /// A vector store for the tenant (a Chroma collection or a pgvector table; database
    /// isolation only, for now): `--vector-store`, or `--vector-store false` to turn a
    /// plan's default off [default: the plan's]
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub vector_store: Option<bool>,
    /// The PostgreSQL server to place it on (`berqenas server list`; `--server` is the
    /// berqenas API's URL) [default: the one --placement picks]
    #[arg(long = "pg-server", conflicts_with = "placement")]
    pub pg_server: Option<String>,
    /// least_tenants, least_disk, or labels the server must have: region=eu,tier=gold
    /// [default: least_tenants]
    #[arg(long)]
    pub placement: Option<String>,
    /// Makes a retried command safe: the same key replays the first answer.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only tenants in this state.
    #[arg(long, value_parser = ["provisioning", "trial", "active", "suspended", "deleted", "purged", "failed"])]
    pub status: Option<String>,
    /// Only tenants on this plan (`berqenas plan list`).
    #[arg(long)]
    pub plan: Option<String>,
    /// Page size (1-1000).
    #[arg(long)]
    pub limit: Option<i64>,
    /// Continue after this cursor (from a previous page).
    #[arg(long)]
    pub cursor: Option<String>,
    /// Every page, one after another, as one list (--limit sets the page size).
    #[arg(long, conflicts_with = "cursor")]
    pub all: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Tenant name or id.
    pub name: String,
    #[arg(long)]
    pub db_quota: Option<String>,
    #[arg(long, value_enum)]
    pub vpn: Option<Toggle>,
    #[arg(long, action = clap::ArgAction::Set)]
    pub public_api: Option<bool>,
    /// Move to this plan: free, starter, professional, enterprise, custom (`berqenas plan list`).
    #[arg(long)]
    pub plan: Option<String>,
    #[arg(long, value_parser = parse_json_object)]
    pub metadata: Option<serde_json::Value>,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn parse_json_object(s: &str) -> Result<serde_json::Value, String> {
    match serde_json::from_str(s) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => Err("must be a JSON object, e.g. '{\"team\":\"core\"}'".into()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

pub async fn run(cmd: TenantCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TenantCommand::Network(a) => super::network::network(a).await,
        TenantCommand::Move(a) => super::move_tenant::run(a).await,
        TenantCommand::Firewall(c) => super::network::firewall(c).await,
        TenantCommand::Vpn(c) => super::network::vpn(c).await,
        TenantCommand::Create(a) => {
            let req = CreateTenant {
                name: a.name,
                db_quota: a.db_quota,
                vpn_enabled: a.vpn.on(),
                public_api: a.public_api,
                plan: a.plan,
                isolation: a.isolation,
                trial_days: a.trial_days,
                metadata: a.metadata,
                backup_schedule: a.backup_schedule,
                vector_store: a.vector_store,
                server: a.pg_server,
                placement: match a.placement.as_deref() {
                    None => None,
                    Some(p @ ("least_tenants" | "least_disk")) => Some(serde_json::json!(p)),
                    Some(labels) => Some(serde_json::to_value(
                        crate::fleet::placement::parse_labels(labels)
                            .map_err(|e| anyhow::anyhow!("--placement: {e}"))?,
                    )?),
                },
            };
            let res = a
                .client
                .client()
                .create_tenant(&req, a.idempotency_key.as_deref())
                .await;
            output::finish(res, a.client.output, |created| {
                output::tenant_table(&created.tenant);
                println!("\nShown once; store them now:");
                println!("  api_key:  {}", created.api_key.expose_secret());
                println!(
                    "  password: {}",
                    created.credentials.password.expose_secret()
                );
                println!("  dsn:      {}", created.credentials.dsn.expose_secret());
                if let Some(subnet) = &created.tenant.vpn_subnet {
                    println!("\nVPN subnet {subnet}: add a device with `berqenas tenant vpn peer add {} --name laptop`", created.tenant.name);
                }
            })
        }
        TenantCommand::Credentials(a) => {
            let client = a.client.client();
            let res = if a.rotate {
                client.rotate_credentials(&a.name).await
            } else {
                client.credentials(&a.name).await
            };
            output::finish(res, a.client.output, |c| {
                println!("user:     {}", c.user);
                println!("password: {}", c.password.expose_secret());
                println!("dsn:      {}", c.dsn.expose_secret());
            })
        }
        TenantCommand::Get(a) => {
            let res = a.client.client().get_tenant(&a.name).await;
            output::finish(res, a.client.output, output::tenant_table)
        }
        TenantCommand::List(a) => {
            let res = super::pages::tenants(
                &a.client.client(),
                a.status.as_deref(),
                a.plan.as_deref(),
                a.limit,
                a.cursor.as_deref(),
                a.all,
            )
            .await;
            output::finish(res, a.client.output, |page| {
                output::tenants_table(&page.tenants);
                output::more(page.next_cursor.as_deref());
            })
        }
        TenantCommand::Update(a) => {
            let req = UpdateTenant {
                db_quota: a.db_quota,
                public_api: a.public_api,
                vpn_enabled: a.vpn.map(Toggle::on),
                plan: a.plan,
                metadata: a.metadata,
            };
            let res = a.client.client().update_tenant(&a.name, &req).await;
            output::finish(res, a.client.output, output::tenant_table)
        }
        TenantCommand::User(UserCommand::Add(a)) => {
            let req = AddUser {
                email: a.email,
                role: a.role,
                teams: a.teams,
                invited_by: a.invited_by,
                invite: a.invite.then_some(true),
            };
            let res = a.client.client().add_user(&a.tenant, &req).await;
            output::finish(res, a.client.output, |u| {
                output::users_table(std::slice::from_ref(&u.user));
                if let Some(c) = &u.credentials {
                    println!("\nShown once; store it now:");
                    println!("  dsn: {}", c.dsn.expose_secret());
                }
                if let (Some(url), Some(until)) = (&u.invitation_url, u.invitation_expires_at) {
                    println!("\nInvitation link (works once, until {until}):");
                    println!("  {url}");
                }
            })
        }
        TenantCommand::User(UserCommand::List(a)) => {
            let res = a.client.client().users(&a.name).await;
            output::finish(res, a.client.output, |l| output::users_table(&l.users))
        }
        TenantCommand::User(UserCommand::Remove(a)) => {
            let res = a.client.client().remove_user(&a.tenant, &a.email).await;
            output::finish(res, a.client.output, |u| {
                println!("removed user {} ({})", u.email, u.db_user.as_str())
            })
        }
        TenantCommand::Config(cmd) => super::config::run(cmd).await,
        TenantCommand::AuthProvider(cmd) => super::auth_provider::run(cmd).await,
        TenantCommand::Suspend(a) => super::lifecycle::suspend(a).await,
        TenantCommand::Resume(a) => super::lifecycle::resume(a).await,
        TenantCommand::Activate(a) => super::lifecycle::activate(a).await,
        TenantCommand::ApiKey(cmd) => super::api_key::run(cmd).await,
        TenantCommand::Delete(a) => {
            let res = a
                .client
                .client()
                .delete_tenant(&a.name, a.retention, a.purge_now, a.confirm.as_deref())
                .await;
            output::finish(res, a.client.output, |t| {
                match (t.purged_at, t.purge_after) {
                    (Some(at), _) => println!("purged tenant {} at {at}", t.name),
                    (None, Some(until)) => println!(
                        "deleted tenant {}: restorable with `berqenas tenant restore {}` until {until}",
                        t.name, t.name
                    ),
                    (None, None) => println!("deleted tenant {}", t.name),
                }
                if let (Some(id), Some(until)) = (t.final_backup_id, t.archive_expires_at) {
                    println!("final backup {id} archived until {until}");
                }
            })
        }
        TenantCommand::Restore(a) => {
            let res = a.client.client().restore_tenant(&a.name).await;
            output::finish(res, a.client.output, output::tenant_table)
        }
        TenantCommand::BackupPolicy(PolicyCommand::Get(a)) => {
            let res = a.client.client().backup_policy(&a.name).await;
            output::finish(res, a.client.output, output::policy_table)
        }
        TenantCommand::BackupPolicy(PolicyCommand::Set(a)) => {
            let req = PolicyRequest {
                schedule: a.schedule,
                retention_days: a.retention_days,
                encryption: a.encryption,
            };
            let res = a.client.client().set_backup_policy(&a.name, &req).await;
            output::finish(res, a.client.output, output::policy_table)
        }
        TenantCommand::BackupPolicy(PolicyCommand::Remove(a)) => {
            let res = a.client.client().remove_backup_policy(&a.name).await;
            output::finish(res, a.client.output, |_| {
                println!("no more scheduled backups for {}", a.name)
            })
        }
    }
}
