//! The cluster's part of `meridian status`: every role alive on the bus,
//! the config revision it runs and the last one it refused. Bounded in
//! time: with the bus down, status says so and shows the rest.

use cluster::reports::RoleReport;
use std::time::Duration;

/// How long status waits for the bus (connecting, then listing).
const BUS_TIMEOUT: Duration = Duration::from_secs(6);

/// The roles alive on the bus `cluster` names, or why they are unknown.
pub async fn roles(cluster: &config::Cluster) -> Result<Vec<RoleReport>, String> {
    let ask = async {
        let bus = cluster::Bus::connect(cluster, "meridian status", cluster::Connect::Now)
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::timeout(
            cluster::reports::ALIVE_TIMEOUT,
            cluster::reports::alive(&bus),
        )
        .await
        .map_err(|_| "the bus did not list the roles in time".to_owned())?
        .map_err(|e| e.to_string())
    };
    tokio::time::timeout(BUS_TIMEOUT, ask)
        .await
        .unwrap_or_else(|_| Err("the cluster bus did not answer in time".to_owned()))
}

/// `roles` as JSON, for `status --json`.
pub fn json(roles: &Result<Vec<RoleReport>, String>) -> serde_json::Value {
    match roles {
        Ok(roles) => serde_json::json!({ "roles": roles }),
        Err(error) => serde_json::json!({ "error": error }),
    }
}

/// `roles` as a table.
pub fn render(roles: &Result<Vec<RoleReport>, String>) -> String {
    let roles = match roles {
        Ok(roles) => roles,
        Err(error) => return format!("CLUSTER: unknown ({error})\n"),
    };
    let mut out = format!(
        "{:<8} {:<36} {:<10} {}\n",
        "ROLE", "CLUSTER MEMBER", "REVISION", "REFUSED"
    );
    if roles.is_empty() {
        out.push_str("(no role reports on the bus)\n");
    }
    for role in roles {
        let revision = role
            .revision
            .map_or_else(|| "own file".to_owned(), |n| n.to_string());
        let refused = role
            .refused
            .as_ref()
            .map_or_else(|| "-".to_owned(), |(n, why)| format!("revision {n}: {why}"));
        out.push_str(&format!(
            "{:<8} {:<36} {:<10} {}\n",
            role.role, role.name, revision, refused
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_revisions_refusals_and_an_unreachable_bus() {
        let mut edge = RoleReport::new("edge", "edge eu-west 127.0.2.1:8080");
        edge.revision = Some(4);
        edge.refused = Some((5, "cluster config revision 5: bad".into()));
        let geodns = RoleReport::new("geodns", "geodns ns1");
        let table = render(&Ok(vec![edge, geodns]));
        assert!(table.contains("edge eu-west 127.0.2.1:8080"), "{table}");
        assert!(table.contains(" 4 "), "{table}");
        assert!(
            table.contains("revision 5: cluster config revision 5: bad"),
            "{table}"
        );
        assert!(table.contains("own file"), "{table}");
        assert_eq!(
            render(&Err("cannot reach the cluster bus".into())),
            "CLUSTER: unknown (cannot reach the cluster bus)\n"
        );
    }
}
