//! Tests of database loading and placing: the embedded database, the
//! bounds every load keeps, and the tree walk against maxminddb's own.

use super::*;
// Databases whose search tree shares subtrees: the test kit's builder,
// which the end-to-end tests feed to the binary too.
use kit::mmdb::shared_subtrees;

fn embedded() -> GeoDatabase {
    GeoDatabase::embedded().expect("the vendored database loads")
}

fn country(db: &GeoDatabase, ip: &str) -> Option<String> {
    db.place(ip.parse().unwrap())
        .location
        .and_then(|l| l.country)
}

#[test]
fn the_embedded_database_places_the_readme_samples() {
    let db = embedded();
    assert_eq!(country(&db, "8.8.8.8").as_deref(), Some("US"));
    assert_eq!(country(&db, "2001:4860:4860::8888").as_deref(), Some("US"));
    assert_eq!(country(&db, "81.2.69.142").as_deref(), Some("GB"));
    assert_eq!(country(&db, "5.9.0.1").as_deref(), Some("DE"));
    assert_eq!(country(&db, "203.116.1.1").as_deref(), Some("SG"));
    assert_eq!(country(&db, "1.0.16.1").as_deref(), Some("JP"));
    assert_eq!(country(&db, "1.128.0.1").as_deref(), Some("AU"));
    assert_eq!(country(&db, "200.160.2.3").as_deref(), Some("BR"));
    assert_eq!(country(&db, "41.0.0.1").as_deref(), Some("ZA"));
    assert_eq!(country(&db, "210.171.224.1"), None);
}

#[test]
fn country_databases_place_clients_at_the_centroid() {
    let db = embedded();
    let placement = db.place("81.2.69.142".parse().unwrap());
    let location = placement.location.unwrap();
    assert_eq!(location.continent.as_deref(), Some("EU"));
    assert!(!location.coordinates_from_database);
    assert_eq!(location.coordinates, country_centroid("GB"));
    assert!((1..=32).contains(&placement.network_prefix));
}

#[test]
fn private_and_loopback_addresses_are_not_placed() {
    let db = embedded();
    for ip in [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.1.1",
        "172.20.0.1",
        "::1",
        "fd00::1",
        "fe80::1",
        "100.64.0.1",
    ] {
        let placement = db.place(ip.parse().unwrap());
        assert_eq!(placement.location, None, "{ip}");
    }
    assert_eq!(db.place("10.1.2.3".parse().unwrap()).network_prefix, 8);
}

#[test]
fn every_country_has_a_sample_network_the_database_places_there() {
    let db = embedded();
    let countries = db.countries().unwrap();
    assert!(countries.len() > 200, "{}", countries.len());
    for code in ["GB", "US", "DE", "JP", "BR", "ZA", "SG", "AU"] {
        let sample = &countries[code];
        assert_eq!(sample.location.country.as_deref(), Some(code));
        let (address, prefix) = sample.network;
        assert!((8..=32).contains(&prefix), "{code}: /{prefix}");
        assert!(is_public(IpAddr::V4(address)), "{code}: {address}");
        assert_eq!(country(&db, &address.to_string()).as_deref(), Some(code));
    }
    assert_eq!(countries["GB"].location.continent.as_deref(), Some("EU"));
}

#[test]
fn mapped_ipv4_is_ipv4() {
    let db = embedded();
    assert_eq!(country(&db, "::ffff:81.2.69.142").as_deref(), Some("GB"));
}

#[test]
fn garbage_is_not_a_database() {
    assert!(GeoDatabase::from_vec(b"not an mmdb".to_vec()).is_err());
    let missing = GeoDatabase::open(Path::new("/nonexistent/geo.mmdb"));
    assert!(matches!(missing, Err(GeoError::Read { .. })));
}

/// Every network of one family, as the walk visits them: (first
/// address, prefix, offset of its record in the data section).
fn walked(db: &GeoDatabase, ipv6: bool) -> Vec<(u128, u8, Option<usize>)> {
    let metadata = db.reader.metadata();
    let base = metadata.node_count as usize + 16;
    let tree = SearchTree::new(
        db.bytes.as_ref(),
        metadata.node_count,
        metadata.record_size,
        metadata.ip_version,
    )
    .unwrap();
    let limit = LoadLimit::default();
    let mut networks = Vec::new();
    tree.walk(ipv6, &mut db.work(&limit), |start, prefix, leaf| {
        let offset = match leaf {
            Leaf::NoData => None,
            Leaf::Data(pointer) => Some(pointer - base),
        };
        networks.push((start, prefix, offset));
        Ok(())
    })
    .unwrap();
    networks
}

/// The same, as maxminddb's `within` iterator yields them (what the
/// table was built from before the walk was GeoDNS's own): networks
/// without data included, IPv4 networks met in the IPv6 tree (`::/96`)
/// left out, aliases skipped.
fn within(db: &GeoDatabase, ipv6: bool) -> Vec<(u128, u8, Option<usize>)> {
    if ipv6 && db.reader.metadata().ip_version == 4 {
        return vec![(0, 0, None)];
    }
    let all = if ipv6 { "::/0" } else { "0.0.0.0/0" };
    let options = maxminddb::WithinOptions::default().include_networks_without_data();
    let mut networks = Vec::new();
    for network in db.reader.within(all.parse().unwrap(), options).unwrap() {
        let network = network.unwrap();
        let cidr = network.network().unwrap();
        let (start, prefix) = match (cidr.ip(), ipv6) {
            (IpAddr::V4(v4), false) => (u128::from(u32::from(v4)), cidr.prefix()),
            (IpAddr::V4(_), true) => continue,
            (IpAddr::V6(v6), true) => (u128::from(v6), cidr.prefix()),
            (IpAddr::V6(_), false) => (0, 0),
        };
        networks.push((start, prefix, network.offset()));
    }
    networks
}

/// A database written by mmdb-writer with `options`, of GB, US and SG
/// networks of both families.
fn written(writer: mmdb_writer::Writer) -> GeoDatabase {
    use mmdb_writer::Value;
    let mut writer = writer;
    for (net, country, continent) in [
        ("81.0.0.0/9", "GB", "EU"),
        ("81.128.0.0/10", "IE", "EU"),
        ("8.8.8.0/24", "US", "NA"),
        ("203.116.0.0/16", "SG", "AS"),
        ("2001:4860::/32", "US", "NA"),
        ("2a00:1450::/29", "GB", "EU"),
    ] {
        let record = Value::map([
            ("country", Value::map([("iso_code", Value::from(country))])),
            ("continent", Value::map([("code", Value::from(continent))])),
        ]);
        let net: ipnet::IpNet = net.parse().unwrap();
        if writer.insert_value(net, record).is_err() {
            // An IPv6 network in an IPv4 database.
            continue;
        }
    }
    GeoDatabase::from_vec(writer.to_bytes().unwrap()).unwrap()
}

/// The walk sees exactly the networks, in exactly the order, that
/// maxminddb's iterator yields: the table built from it is the one
/// built before, on the embedded database and on databases of every
/// record size, with and without IPv4 aliases, and IPv4 only.
#[test]
fn the_walk_visits_what_maxminddb_iterates() {
    use mmdb_writer::{IpVersion, Ipv4Aliasing, RecordSize, Writer};
    let mut databases = vec![("embedded", embedded())];
    for (name, size) in [
        ("24-bit", RecordSize::Bits24),
        ("28-bit", RecordSize::Bits28),
        ("32-bit", RecordSize::Bits32),
    ] {
        databases.push((
            name,
            written(Writer::builder("Test").record_size(size).build()),
        ));
    }
    databases.push((
        "no aliases",
        written(
            Writer::builder("Test")
                .ipv4_aliasing(Ipv4Aliasing::Disabled)
                .build(),
        ),
    ));
    databases.push((
        "IPv4 only",
        written(Writer::builder("Test").ip_version(IpVersion::V4).build()),
    ));
    for (name, db) in &databases {
        for ipv6 in [false, true] {
            let walked = walked(db, ipv6);
            let within = within(db, ipv6);
            assert!(!walked.is_empty(), "{name}");
            assert_eq!(walked.len(), within.len(), "{name}, ipv6 {ipv6}");
            if let Some(i) = (0..walked.len()).find(|&i| walked[i] != within[i]) {
                panic!(
                    "{name}, ipv6 {ipv6}: network {i} walked as {:?}, iterated as {:?}",
                    walked[i], within[i]
                );
            }
        }
    }
    // The embedded database is a real one: hundreds of thousands of
    // networks, each visited once.
    assert!(walked(&databases[0].1, false).len() > 300_000);
}

/// Runs `load` on a thread and gives its result, or fails the test if
/// it has not finished within a minute (it should take microseconds).
fn within_a_minute<T: Send + 'static>(load: impl FnOnce() -> T + Send + 'static) -> T {
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = send.send(load());
    });
    receive
        .recv_timeout(Duration::from_secs(60))
        .expect("the load finished within a minute")
}

#[test]
fn shared_subtrees_are_refused_after_a_few_thousand_steps() {
    for (ip_version, depth) in [(4, 24), (4, 32), (6, 128), (6, 100)] {
        let bytes = shared_subtrees(ip_version, depth);
        assert!(bytes.len() <= 1100, "about a kilobyte, not {}", bytes.len());
        let db = GeoDatabase::from_vec(bytes).expect("every reader takes it");
        // Looking one address up is fine: one path.
        assert_eq!(
            db.place("81.2.69.142".parse().unwrap())
                .location
                .and_then(|l| l.country)
                .as_deref(),
            Some("GB")
        );
        let started = Instant::now();
        let steering = crate::Steering::from_config(&config::Config::demo());
        let built = within_a_minute(move || crate::GeoTable::build(&db, &steering));
        let error = built.unwrap_err();
        assert!(
            matches!(error, GeoError::Tangled { .. }),
            "IPv{ip_version}, depth {depth}: {error}"
        );
        let message = error.to_string();
        assert!(
            message.contains("the given database") && message.contains("share subtrees"),
            "{message}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}

#[test]
fn a_load_out_of_time_or_called_off_stops() {
    let db = embedded();
    let steering = crate::Steering::from_config(&config::Config::demo());
    let error =
        crate::GeoTable::build_within(&db, &steering, &LoadLimit::new(Duration::ZERO)).unwrap_err();
    assert!(matches!(error, GeoError::TimedOut { .. }), "{error}");
    assert!(
        error.to_string().contains("took longer than 0 s"),
        "{error}"
    );
    let limit = LoadLimit::default();
    limit.clone().cancel();
    let error = crate::GeoTable::build_within(&db, &steering, &limit).unwrap_err();
    assert!(matches!(error, GeoError::Cancelled { .. }), "{error}");
    // Called off from another thread while it runs: it stops.
    let limit = LoadLimit::default();
    let switch = limit.clone();
    let started = Instant::now();
    let running = std::thread::spawn(move || {
        crate::GeoTable::build_within(&db, &steering, &limit).map(|_| ())
    });
    switch.cancel();
    let result = running.join().unwrap();
    assert!(
        matches!(result, Err(GeoError::Cancelled { .. })),
        "{result:?} after {:?}",
        started.elapsed()
    );
}

#[test]
fn devices_fifos_and_huge_files_are_refused_before_reading() {
    let error = GeoDatabase::open(Path::new("/dev/zero")).err().unwrap();
    assert!(
        error
            .to_string()
            .contains("/dev/zero is not a regular file (it is a character device)"),
        "{error}"
    );
    let dir = std::env::temp_dir().join(format!("geodns-geo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("fifo.mmdb");
    let _ = std::fs::remove_file(&fifo);
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let error = within_a_minute(move || GeoDatabase::open(&fifo).err().unwrap());
    assert!(error.to_string().contains("(it is a FIFO)"), "{error}");
    let error = GeoDatabase::open(&dir).err().unwrap();
    assert!(error.to_string().contains("(it is a directory)"), "{error}");
    // A sparse file: large, but costs nothing to make.
    let huge = dir.join("huge.mmdb");
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(MAX_DATABASE_BYTES + 1).unwrap();
    let error = GeoDatabase::open(&huge).err().unwrap();
    assert!(matches!(error, GeoError::TooLarge { .. }), "{error}");
    assert!(
        error.to_string().contains("huge.mmdb is 1073741825 bytes"),
        "{error}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every country code in the vendored GeoIP database must have a centroid,
/// or clients from that country could not be steered by distance.
#[test]
fn every_code_in_vendored_database_has_a_centroid() {
    use std::collections::BTreeSet;

    // Codes in the database that are not ISO 3166-1 countries, so they
    // deliberately have no centroid:
    // - "AP": the legacy "Asia/Pacific region" code that RIR data (APNIC)
    //   uses for blocks not tied to one country.
    const ALLOWED_UNKNOWN: &[&str] = &["AP"];

    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/GeoIP2-Country-iptoasn.mmdb"
    );
    let reader = maxminddb::Reader::open_readfile(path).expect("open vendored database");
    let iso_code_path = [
        maxminddb::PathElement::Key("country"),
        maxminddb::PathElement::Key("iso_code"),
    ];

    let mut codes = BTreeSet::new();
    for cidr in ["0.0.0.0/0", "::/0"] {
        let networks = reader
            .within(cidr.parse().expect("valid CIDR"), Default::default())
            .expect("iterate networks");
        for network in networks {
            let network = network.expect("read network");
            if let Some(code) = network
                .decode_path::<String>(&iso_code_path)
                .expect("decode country.iso_code")
            {
                codes.insert(code);
            }
        }
    }
    assert!(codes.len() > 200, "suspiciously few codes: {codes:?}");

    let missing: Vec<&String> = codes
        .iter()
        .filter(|code| {
            config::countries::country_centroid(code).is_none()
                && !ALLOWED_UNKNOWN.contains(&code.as_str())
        })
        .collect();
    assert!(missing.is_empty(), "codes without a centroid: {missing:?}");
}
