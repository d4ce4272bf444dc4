//! Where GeoDNS sends each country's clients, in the live view: steered
//! answers per (client country, region) over the last minute, in a GeoDNS
//! server's own `/snapshot` and in `meridian up`'s. Block 127.248.

use crate::harness::{dns, raw, up};
use hickory_proto::rr::RecordType;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The newest snapshot of the live view on `listener`.
fn snapshot(listener: SocketAddr) -> Value {
    let answer = raw::get(listener, "/snapshot", &listener.to_string()).unwrap();
    assert_eq!(answer.status(), 200);
    serde_json::from_str(&answer.text()).unwrap()
}

/// The answers of the flow (`country`, `region`) in `snapshot` (0 when it
/// is not listed).
fn answers(snapshot: &Value, country: &str, region: &str) -> u64 {
    snapshot["flows"].as_array().map_or(0, |flows| {
        flows
            .iter()
            .filter(|f| f["country"] == country && f["region"] == region)
            .filter_map(|f| f["answers"].as_u64())
            .sum()
    })
}

/// Polls `listener`'s snapshot until every flow of `expected` has at least
/// its answers, within 15 s; the last snapshot read.
fn wait_for_flows(listener: SocketAddr, expected: &[(&str, &str, u64)]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = snapshot(listener);
        let all = expected
            .iter()
            .all(|(country, region, n)| answers(&now, country, region) >= *n);
        if all || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn answers_per_client_country_reach_geodns_and_up_snapshots() {
    let up = up(248);
    let ask = |subnet: Option<&str>| {
        let query = dns::edns(
            dns::question("cdn.meridian.test.", RecordType::A),
            1232,
            subnet,
        );
        dns::udp(up.dns(), &query).unwrap();
    };
    let ns1 = up.topology.geodns_admin_of(0);
    let listeners = [ns1, up.topology.control()];
    // First the test itself, on loopback with no subnet: no country, as
    // many times as it takes both views to show one (answers before a
    // view first looks at a server are not its last minute's); from then
    // on both count every answer.
    let deadline = Instant::now() + Duration::from_secs(20);
    let unknown = loop {
        ask(None);
        let seen = listeners.map(|l| answers(&snapshot(l), "unknown", "us-east"));
        if seen.iter().all(|n| *n > 0) {
            break seen;
        }
        assert!(Instant::now() < deadline, "no view shows the answers");
        std::thread::sleep(Duration::from_millis(300));
    };
    // GB three times (the second and third from the answer cache), FR
    // twice (answered with eu-west too), US once.
    for subnet in ["81.2.69.0/24", "81.2.69.0/24", "81.2.69.0/24"] {
        ask(Some(subnet));
    }
    for subnet in ["90.0.0.0/24", "90.0.0.0/24", "8.8.8.0/24"] {
        ask(Some(subnet));
    }
    for (listener, unknown) in listeners.into_iter().zip(unknown) {
        let expected = [
            ("GB", "eu-west", 3),
            ("FR", "eu-west", 2),
            ("US", "us-east", 1),
            ("unknown", "us-east", unknown),
        ];
        let seen = wait_for_flows(listener, &expected);
        let flows = &seen["flows"];
        for (country, region, n) in expected {
            let got = answers(&seen, country, region);
            // The last of the test's own may have been counted after the
            // views were read above: at least as many.
            let right = if country == "unknown" {
                got >= n
            } else {
                got == n
            };
            assert!(right, "{country} → {region} at {listener}: {flows}");
        }
        assert_eq!(flows.as_array().unwrap().len(), 4, "{flows}");
        let gb = flow_of(flows, "GB");
        // All of GB's answers went to eu-west; GB has a place on the map,
        // clients with no country do not.
        assert_eq!(gb["share"], 1.0, "{gb}");
        assert!(gb["latitude"].as_f64().is_some_and(|l| l > 50.0), "{gb}");
        let unknown = flow_of(flows, "unknown");
        assert_eq!(unknown["latitude"], Value::Null, "{unknown}");
    }
}

/// The flow of `country` among `flows` (a snapshot's list).
fn flow_of<'a>(flows: &'a Value, country: &str) -> &'a Value {
    let list = flows.as_array().unwrap();
    let found = list.iter().find(|f| f["country"] == country);
    found.unwrap_or_else(|| panic!("no flow of {country}: {flows}"))
}
