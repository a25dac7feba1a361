//! `berqenas tenant suspend|resume|activate`.

use std::process::ExitCode;

use clap::Args;
use reqwest::Method;

use super::client::{tenant_path, Client, ClientError};
use super::NameArgs;
use super::{output, ClientArgs};
use crate::tenant::suspension::SuspendTenant;
use crate::tenant::Tenant;

#[derive(Debug, Args)]
pub struct SuspendArgs {
    /// Tenant name or id.
    pub name: String,
    /// Why, for the record (shown by `tenant get` and in the audit trail).
    #[arg(long)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

impl Client {
    pub async fn suspend_tenant(
        &self,
        name: &str,
        req: &SuspendTenant,
    ) -> Result<Tenant, ClientError> {
        self.call(Method::POST, &tenant_path(name, "/suspend"), Some(req), &[])
            .await
    }

    pub async fn resume_tenant(&self, name: &str) -> Result<Tenant, ClientError> {
        self.call::<(), _>(Method::POST, &tenant_path(name, "/resume"), None, &[])
            .await
    }

    pub async fn activate_tenant(&self, name: &str) -> Result<Tenant, ClientError> {
        self.call::<(), _>(Method::POST, &tenant_path(name, "/activate"), None, &[])
            .await
    }
}

pub async fn suspend(a: SuspendArgs) -> anyhow::Result<ExitCode> {
    let req = SuspendTenant { reason: a.reason };
    let res = a.client.client().suspend_tenant(&a.name, &req).await;
    output::finish(res, a.client.output, output::tenant_table)
}

pub async fn resume(a: NameArgs) -> anyhow::Result<ExitCode> {
    let res = a.client.client().resume_tenant(&a.name).await;
    output::finish(res, a.client.output, output::tenant_table)
}

pub async fn activate(a: NameArgs) -> anyhow::Result<ExitCode> {
    let res = a.client.client().activate_tenant(&a.name).await;
    output::finish(res, a.client.output, output::tenant_table)
}
