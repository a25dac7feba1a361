//! `--all`: a paginated list read page after page into one.

use super::client::{Client, ClientError};
use crate::tenant::service::TenantPage;

/// One page of tenants, or with `all` every page after `cursor` as one page (whose
/// `next_cursor` is then none).
pub async fn tenants(
    client: &Client,
    status: Option<&str>,
    plan: Option<&str>,
    limit: Option<i64>,
    cursor: Option<&str>,
    all: bool,
) -> Result<TenantPage, ClientError> {
    let mut page = client.list_tenants(status, plan, limit, cursor).await?;
    if !all {
        return Ok(page);
    }
    while let Some(next) = page.next_cursor.take() {
        let more = client
            .list_tenants(status, plan, limit, Some(&next))
            .await?;
        page.tenants.extend(more.tenants);
        page.next_cursor = more.next_cursor;
    }
    Ok(page)
}
