//! `meridian route IP`: where GeoDNS would send a client, and why.
//!
//! Offline, from the config and its geo database (the same table GeoDNS
//! builds, see `geodns::explain`), plus each region's health as the running
//! GeoDNS sees it, when one answers on the config's admin address.

use crate::cli::RouteArgs;
use anyhow::Context;
use geodns::explain::{Explainer, Explanation};
use geodns::steering::Rule;
use serde::Deserialize;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How long to wait for the running GeoDNS's `/health`.
const HEALTH_TIMEOUT: Duration = Duration::from_millis(800);

/// One region's health as GeoDNS's `/health` reports it.
#[derive(Deserialize)]
struct RegionHealth {
    region: String,
    up: bool,
}

/// `meridian route IP [--config F]`
pub fn route(args: &RouteArgs) -> anyhow::Result<()> {
    let ip = geodns::explain::client_address(&args.client).with_context(|| {
        format!(
            "{:?} is neither an IP address nor a subnet such as 81.2.69.0/24",
            args.client
        )
    })?;
    let config = args.config.load()?;
    let explainer = Explainer::new(&config)?;
    let explanation = explainer.explain(ip);
    let admin = config.geodns.admin_listen;
    let health = health_of(admin, config.geodns.admin_token.as_deref());
    print!(
        "{}",
        report(
            &explanation,
            explainer.database(),
            &config,
            admin,
            health.as_deref()
        )
    );
    Ok(())
}

/// The running GeoDNS's view of every region, if it answers; with
/// `geodns.admin_token` when the config has one.
fn health_of(admin: SocketAddr, token: Option<&str>) -> Option<Vec<RegionHealth>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(HEALTH_TIMEOUT)
            .build()
            .ok()?;
        let mut request = client.get(format!("http://{admin}/health"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        serde_json::from_slice(&response.bytes().await.ok()?).ok()
    })
}

fn report(
    e: &Explanation,
    database: &str,
    config: &config::Config,
    admin: SocketAddr,
    health: Option<&[RegionHealth]>,
) -> String {
    let mut out = String::new();
    let location = e.location.as_ref();
    let _ = writeln!(out, "client        {}", e.ip);
    let _ = writeln!(out, "database      {database}");
    if !e.public {
        let _ = writeln!(
            out,
            "location      none: {} is not a public address, so it is never looked up",
            e.ip
        );
    } else {
        let _ = writeln!(out, "network       {}", e.network);
        let country = location.and_then(|l| l.country.as_deref());
        let continent = location.and_then(|l| l.continent.as_deref());
        let _ = writeln!(out, "country       {}", country.unwrap_or("unknown"));
        let _ = writeln!(out, "continent     {}", continent.unwrap_or("unknown"));
        let coordinates = match location.and_then(|l| l.coordinates.map(|c| (c, l))) {
            Some((c, l)) => format!(
                "{:.2} {}, {:.2} {} ({})",
                c.latitude.abs(),
                if c.latitude >= 0.0 { "N" } else { "S" },
                c.longitude.abs(),
                if c.longitude >= 0.0 { "E" } else { "W" },
                if l.coordinates_from_database {
                    "from the database"
                } else {
                    "the country's centroid: the database has no coordinates"
                }
            ),
            None => "unknown".to_owned(),
        };
        let _ = writeln!(out, "coordinates   {coordinates}");
    }
    let rule = match &e.rule {
        Rule::Net(net) => format!("override: geodns.overrides.nets \"{net}\""),
        Rule::Country(code) => format!("override: geodns.overrides.countries {code}"),
        Rule::Continent(code) => format!("override: geodns.overrides.continents {code}"),
        Rule::Distance => "distance: nearest region first (great circle)".to_owned(),
        Rule::Default => "default: geodns.default_order (the client cannot be placed)".to_owned(),
    };
    let _ = writeln!(out, "rule          {rule}");
    let scope = if e.public {
        format!(
            "/{} (every address in {} gets this order)",
            e.scope, e.scope_block
        )
    } else {
        "/0 (an ECS option with this address is ignored)".to_owned()
    };
    let _ = writeln!(out, "ECS scope     {scope}");
    match health {
        Some(_) => {
            let _ = writeln!(out, "regions       (health as GeoDNS on {admin} sees it)");
        }
        None => {
            let _ = writeln!(
                out,
                "regions       (health unknown: no GeoDNS answers on {admin})"
            );
        }
    }
    let up_of = |name: &str| health.and_then(|h| h.iter().find(|r| r.region == name).map(|r| r.up));
    for (rank, region) in e.regions.iter().enumerate() {
        let km = region
            .km
            .map(|km| format!("{} km", thousands(km.round() as u64)))
            .unwrap_or_else(|| "-".to_owned());
        let state = match up_of(&region.name) {
            Some(true) => "up",
            Some(false) => "down",
            None => "unknown",
        };
        let _ = writeln!(
            out,
            "  {}. {:<14} {:<12} {:>10}  {state}",
            rank + 1,
            region.name,
            region.city.as_deref().unwrap_or(""),
            km
        );
    }
    // What a steered name would answer: the first region that is up (or
    // not known to be down), with its edges; with every region down, the
    // first one (failing open) or SERVFAIL.
    let up = e.regions.iter().find(|r| up_of(&r.name) != Some(false));
    let (answering, note) = match up {
        Some(region) => (Some(region), ""),
        None if config.health.fail_open => {
            (e.regions.first(), ", failing open: every region is down")
        }
        None => (None, ""),
    };
    let Some(name) = config.zone.steered_names.first() else {
        return out;
    };
    match answering.and_then(|r| Some((r, config.regions.get(r.index)?))) {
        Some((region, config_region)) => {
            let edges: Vec<String> = config_region
                .edge_addresses
                .iter()
                .map(IpAddr::to_string)
                .collect();
            let _ = writeln!(
                out,
                "answer        {name} → {} ({}{note})",
                edges.join(", "),
                region.name
            );
        }
        None => {
            let _ = writeln!(
                out,
                "answer        {name} → SERVFAIL (every region is down and health.fail_open is false)"
            );
        }
    }
    out
}

/// `12345` → `12,345`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(5880), "5,880");
        assert_eq!(thousands(475), "475");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
