//! gdnsd 3 (`plugin_geoip`), the GeoDNS the `dns` scenario compares
//! Meridian with: its configuration and zone exported from Meridian's own
//! topology and steering, so that both must give every client the same
//! answer, and its start on the server core.

use crate::BenchError;
use crate::pinning::Cores;
use geodns::{GeoDatabase, Steering};
use kit::Process;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

/// The gdnsd configuration equivalent to `topology`'s steering for the
/// countries in `db`: one map entry per country, under its continent,
/// listing the regions in the order Meridian gives that country's clients.
/// gdnsd answers DNS on `listen`.
pub fn gdnsd_config(
    topology: &config::Config,
    db: &GeoDatabase,
    db_path: &Path,
    workdir: &Path,
    listen: SocketAddr,
) -> Result<String, BenchError> {
    let known = db
        .countries()
        .map_err(|e| BenchError::invalid("the geo database", e))?;
    let steering = Steering::from_config(topology);
    let names = |order: &[usize]| {
        order
            .iter()
            .filter_map(|&i| topology.regions.get(i))
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut by_continent: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (code, sample) in &known {
        let Some(continent) = &sample.location.continent else {
            continue;
        };
        let order = steering.order(Some(&sample.location));
        by_continent
            .entry(continent.clone())
            .or_default()
            .push(format!("{code} => [{}]", names(&order.regions)));
    }
    let default_order = names(&steering.order(None).regions);
    let mut map = String::new();
    for (continent, countries) in &by_continent {
        map.push_str(&format!(
            "          {continent} => {{\n            {}\n          }}\n",
            countries.join("\n            ")
        ));
    }
    let datacenters = names(&(0..topology.regions.len()).collect::<Vec<_>>());
    let dcmap = topology
        .regions
        .iter()
        .filter_map(|r| Some(format!("{} => {}", r.name, r.edge_addresses.first()?)))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(format!(
        "# Written by Meridian's bench: the demo steering, exported per country.\n\
         options => {{\n\
         \x20 listen => [ {listen} ]\n\
         \x20 udp_threads => 1\n\
         \x20 tcp_threads => 1\n\
         \x20 run_dir => {run}\n\
         \x20 state_dir => {state}\n\
         }}\n\
         plugins => {{\n\
         \x20 geoip => {{\n\
         \x20   maps => {{\n\
         \x20     meridian => {{\n\
         \x20       geoip2_db => {db}\n\
         \x20       datacenters => [{datacenters}]\n\
         \x20       map => {{\n\
         \x20         default => [{default_order}]\n\
         {map}\
         \x20       }}\n\
         \x20     }}\n\
         \x20   }}\n\
         \x20   resources => {{\n\
         \x20     cdn => {{\n\
         \x20       map => meridian\n\
         \x20       service_types => up\n\
         \x20       dcmap => {{ {dcmap} }}\n\
         \x20     }}\n\
         \x20   }}\n\
         \x20 }}\n\
         }}\n",
        run = workdir.join("run").display(),
        state = workdir.join("state").display(),
        db = db_path.display(),
    ))
}

/// The zone file gdnsd serves: the demo zone's apex (its nameserver at
/// `ns`, gdnsd's own address) and the steered name.
fn gdnsd_zone(topology: &config::Config, ns: IpAddr) -> String {
    let zone = &topology.zone;
    format!(
        "@ {ttl} SOA ns1 hostmaster {serial} 3600 600 86400 {negative}\n\
         @ {ttl} NS ns1\n\
         ns1 {ttl} A {ns}\n\
         cdn {steered} DYNA geoip!cdn\n",
        ttl = zone.ttl_seconds,
        serial = zone.serial,
        negative = zone.negative_ttl_seconds,
        steered = zone.steered_ttl_seconds,
    )
}

/// Starts `gdnsd` answering on `listen` (UDP and TCP) with the same zone,
/// database (`db`, given as a file) and steering as Meridian on `topology`
/// ([`gdnsd_config`]), pinned to the server core of `cores`. Returns the
/// process and the scratch directory holding its files, which must live
/// as long as it does.
pub(crate) fn start(
    gdnsd: &Path,
    topology: &config::Config,
    db: &GeoDatabase,
    listen: SocketAddr,
    cores: &Cores,
) -> Result<(Process, tempfile::TempDir), BenchError> {
    let workdir = crate::peers::workdir()?;
    let db_path = workdir.path().join("GeoIP2-Country-iptoasn.mmdb");
    let zones = workdir.path().join("zones");
    let zone = gdnsd_zone(topology, listen.ip());
    let written = std::fs::write(&db_path, geodns::geo::EMBEDDED_DATABASE)
        .and_then(|()| std::fs::create_dir_all(&zones))
        .and_then(|()| std::fs::write(zones.join("meridian.test"), zone));
    written.map_err(BenchError::io("write gdnsd's files"))?;
    let conf = gdnsd_config(topology, db, &db_path, workdir.path(), listen)?;
    std::fs::write(workdir.path().join("config"), conf)
        .map_err(BenchError::io("write gdnsd's config"))?;
    let args = [
        "-c".to_owned(),
        workdir.path().display().to_string(),
        "start".to_owned(),
    ];
    let (program, args) = cores.server_command(gdnsd, &args);
    let process = crate::process::spawn(Path::new(&program), &args)?;
    Ok((process, workdir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdnsd_gets_meridians_order_for_every_country() {
        let (_, topology) = crate::dns::topology(241).unwrap();
        let conf = gdnsd_config(
            &topology,
            &GeoDatabase::embedded().unwrap(),
            Path::new("/tmp/db.mmdb"),
            Path::new("/tmp/w"),
            crate::dns::gdnsd_listen(241),
        )
        .unwrap();
        assert!(
            conf.contains("GB => [eu-west, us-east, ap-southeast]"),
            "{conf}"
        );
        assert!(conf.contains("US => [us-east, eu-west, ap-southeast]"));
        assert!(conf.contains("SG => [ap-southeast,"));
        assert!(conf.contains("default => [us-east, eu-west, ap-southeast]"));
        assert!(conf.contains("dcmap => { us-east => 127.241.1.1, eu-west => 127.241.2.1"));
        assert!(conf.contains("udp_threads => 1"));
        assert!(conf.contains("listen => [ 127.241.0.2:5353 ]"), "{conf}");
        assert!(conf.contains("geoip2_db => /tmp/db.mmdb"));
        assert_eq!(conf.matches('{').count(), conf.matches('}').count());
        let zone = gdnsd_zone(&topology, crate::dns::gdnsd_listen(241).ip());
        assert!(zone.contains("cdn 30 DYNA geoip!cdn"), "{zone}");
        assert!(zone.contains("ns1 3600 A 127.241.0.2"), "{zone}");
    }
}
