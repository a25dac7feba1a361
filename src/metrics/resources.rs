//! `tenant_resource_usage` and `tenant_resource_limit`, written at scrape time straight
//! from the snapshot. As a labelled family they cost, at 10,000 tenants, 40,000 series
//! built again at each scrape (a label set, a gauge and a map entry each) and kept in
//! memory between scrapes; here they cost only their text.

use std::fmt::Write;

pub const USAGE: &str = "tenant_resource_usage";
pub const USAGE_HELP: &str =
    "Per-tenant usage: disk_bytes (last measurement), connections (open sessions)";
pub const LIMIT: &str = "tenant_resource_limit";
pub const LIMIT_HELP: &str =
    "Per-tenant quota for the same resource types as tenant_resource_usage";

/// Appends both gauges in the OpenMetrics text format, as `prometheus_client` writes a
/// gauge family (the unit test holds them equal). `resources`: (tenant,
/// resource_type, usage, limit).
pub fn encode(out: &mut String, resources: &[(String, String, i64, i64)]) {
    for (name, help, limit) in [(USAGE, USAGE_HELP, false), (LIMIT, LIMIT_HELP, true)] {
        let _ = writeln!(out, "# HELP {name} {help}.");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (tenant, resource, usage, max) in resources {
            out.push_str(name);
            out.push_str("{tenant=\"");
            escaped(out, tenant);
            out.push_str("\",resource_type=\"");
            escaped(out, resource);
            let _ = writeln!(out, "\"}} {}", if limit { max } else { usage });
        }
    }
}

/// A label value as OpenMetrics quotes it.
fn escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct TenantResource {
        tenant: String,
        resource_type: String,
    }

    #[test]
    fn written_as_prometheus_client_writes_a_gauge_family() {
        let resources = vec![("acme".to_string(), "disk_bytes".to_string(), 10, 20)];
        let odd = vec![("a\"b\\c\nd".to_string(), "connections".to_string(), -1, 0)];
        for resources in [resources, odd] {
            let mut r = Registry::default();
            let (usage, limit) = (
                Family::<TenantResource, Gauge>::default(),
                Family::<TenantResource, Gauge>::default(),
            );
            r.register(USAGE, USAGE_HELP, usage.clone());
            r.register(LIMIT, LIMIT_HELP, limit.clone());
            for (tenant, resource, u, l) in &resources {
                let labels = TenantResource {
                    tenant: tenant.clone(),
                    resource_type: resource.clone(),
                };
                usage.get_or_create(&labels).set(*u);
                limit.get_or_create(&labels).set(*l);
            }
            let mut theirs = String::new();
            prometheus_client::encoding::text::encode_registry(&mut theirs, &r).unwrap();
            let mut ours = String::new();
            encode(&mut ours, &resources);
            assert_eq!(ours, theirs);
        }
    }
}
