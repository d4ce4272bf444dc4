//! `meridian route IP`: where GeoDNS would send a client, and why.
//!
//! Offline, from the config and its geo database (the same table GeoDNS
//! builds, see `geodns::explain`), plus each region's health as every running
//! GeoDNS server sees it (who sees what), when they answer on their admin
//! addresses.

use crate::cli::RouteArgs;
use crate::dns_views::ServerView;
use anyhow::Context;
use geodns::explain::{Explainer, Explanation};
use geodns::steering::Rule;
use std::fmt::Write as _;
use std::net::IpAddr;

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
    let views = views_of(&config);
    print!(
        "{}",
        report(&explanation, explainer.database(), &config, &views)
    );
    Ok(())
}

/// Every GeoDNS server's view of every region, as far as they answer.
fn views_of(config: &config::Config) -> Vec<ServerView> {
    let unknown = || {
        config
            .geodns
            .servers
            .iter()
            .map(|s| ServerView {
                server: s.name.clone(),
                admin: s.admin_listen,
                regions: None,
            })
            .collect()
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return unknown();
    };
    let Ok(client) = reqwest::Client::builder().no_proxy().build() else {
        return unknown();
    };
    runtime.block_on(crate::dns_views::ask_all(&client, config))
}

fn report(
    e: &Explanation,
    database: &str,
    config: &config::Config,
    views: &[ServerView],
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
    // The order's health as the first server that answers sees it; every
    // server's view, edge by edge, follows the answer.
    let first = views.iter().find(|v| v.regions.is_some());
    match first {
        Some(view) => {
            let _ = writeln!(
                out,
                "regions       (health as GeoDNS {} on {} sees it)",
                view.server, view.admin
            );
        }
        None => {
            let admins: Vec<String> = views.iter().map(|v| v.admin.to_string()).collect();
            let _ = writeln!(
                out,
                "regions       (health unknown: no GeoDNS answers on {})",
                admins.join(", ")
            );
        }
    }
    let up_of = |name: &str| first.and_then(|v| v.region_up(name));
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
    if first.is_some() {
        let _ = writeln!(
            out,
            "who sees what (each GeoDNS server: answered or steered away, its own probes, the other vantage points it counts)"
        );
        for region in &e.regions {
            let _ = writeln!(out, "  {}:", region.name);
            out.push_str(&crate::dns_views::who_sees_what(
                views,
                &region.name,
                "    ",
            ));
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
