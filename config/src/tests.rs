//! The config crate's tests: loading, lowering and the error each bad value gets.

use super::*;

fn check(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, ConfigSource::File("test.toml".into()))
}

/// The demo with one line replaced, for error tests.
fn demo_with(from: &str, to: &str) -> String {
    assert!(DEMO_TOML.contains(from), "demo does not contain {from:?}");
    DEMO_TOML.replacen(from, to, 1)
}

fn error_of(text: &str) -> ConfigError {
    match check(text) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

#[test]
fn demo_is_the_product_topology() {
    let config = Config::demo();
    assert_eq!(config.zone.name, "meridian.test.");
    assert_eq!(config.zone.steered_names, ["cdn.meridian.test."]);
    let servers: Vec<(&str, SocketAddr, SocketAddr)> = config
        .geodns
        .servers
        .iter()
        .map(|s| (s.name.as_str(), s.listen, s.admin_listen))
        .collect();
    assert_eq!(
        servers,
        [
            (
                "ns1",
                "127.0.0.1:5353".parse().unwrap(),
                "127.0.0.1:9153".parse().unwrap()
            ),
            (
                "ns2",
                "127.0.0.2:5353".parse().unwrap(),
                "127.0.0.2:9153".parse().unwrap()
            )
        ]
    );
    let ns: Vec<&str> = config.zone.nameservers.iter().map(|n| &*n.name).collect();
    assert_eq!(ns, ["ns1.meridian.test.", "ns2.meridian.test."]);
    assert_eq!(
        config.region_names(),
        ["us-east", "eu-west", "ap-southeast"]
    );
    let eu = config.region("eu-west").unwrap();
    assert_eq!(
        eu.edge_addresses,
        ["127.0.2.1", "127.0.2.3"].map(|a| a.parse::<IpAddr>().unwrap())
    );
    assert_eq!(
        eu.edge_http_addrs(&config.edge),
        ["127.0.2.1:8080", "127.0.2.3:8080"].map(|a| a.parse().unwrap())
    );
    assert_eq!(config.geodns.max_answers, 8);
    assert_eq!(eu.origin_url.to_string(), "http://127.0.2.2:8000");
    assert_eq!(eu.origin_listen, "127.0.2.2:8000".parse().unwrap());
    assert_eq!(config.geodns.default_order, [0, 1, 2]);
    assert_eq!(config.geodns.geo_database, GeoDatabase::Embedded);
    assert_eq!(config.health.quorum, Quorum::Majority);
    assert_eq!(config.control.listen, "127.0.0.1:9000".parse().unwrap());
}

#[test]
fn edges_order_origins_own_region_first_then_nearest() {
    let config = Config::demo();
    // us-east: itself, then Dublin (~5,500 km) before Singapore.
    assert_eq!(config.regions_nearest_to(0), [0, 1, 2]);
    // eu-west: itself, then Ashburn (~5,500 km) before Singapore (~11,200).
    assert_eq!(config.regions_nearest_to(1), [1, 0, 2]);
    // ap-southeast: itself, then Dublin (~11,200) before Ashburn (~15,500).
    assert_eq!(config.regions_nearest_to(2), [2, 1, 0]);
    assert!(config.regions_nearest_to(9).is_empty());
}

#[test]
fn distances() {
    let d = great_circle_km((53.35, -6.26), (39.04, -77.49));
    assert!((5400.0..5600.0).contains(&d), "{d}");
    let antipodes = great_circle_km((0.0, 0.0), (0.0, 180.0));
    assert!((antipodes - std::f64::consts::PI * EARTH_RADIUS_KM).abs() < 1.0);
}

#[test]
fn admin_addresses_stay_on_loopback_by_default() {
    let config = Config::demo();
    let eu = config.region("eu-west").unwrap();
    assert_eq!(
        eu.edge_admin_addrs(&config.edge),
        ["127.0.2.1:9080", "127.0.2.3:9080"].map(|a| a.parse().unwrap()),
        "each loopback edge has its own"
    );
    let public = check(&demo_with(
        "edge_addresses = [\"127.0.2.1\", \"127.0.2.3\"]",
        "edge_addresses = [\"203.0.113.9\"]",
    ))
    .unwrap();
    let eu = public.region("eu-west").unwrap();
    assert_eq!(
        eu.edge_admin_addrs(&public.edge),
        ["127.0.0.1:9080".parse().unwrap()]
    );
    let mut set = public.edge.clone();
    set.admin_address = Some("10.0.0.7".parse().unwrap());
    assert_eq!(
        set.admin_addr("203.0.113.9".parse().unwrap()),
        "10.0.0.7:9080".parse().unwrap()
    );
    let own = check(&demo_with(
        "admin_port = 9080",
        "admin_port = 9080\nadmin_on_edge_address = true",
    ))
    .unwrap();
    assert_eq!(
        own.edge.admin_addr("198.18.2.3".parse().unwrap()),
        "198.18.2.3:9080".parse().unwrap()
    );
    let both = error_of(&demo_with(
        "admin_port = 9080",
        "admin_port = 9080\nadmin_on_edge_address = true\nadmin_address = \"10.0.0.7\"",
    ));
    assert_eq!(both.key, "edge.admin_on_edge_address");
}

#[test]
fn an_edge_is_named_by_its_region_and_address() {
    let config = Config::demo();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let (region, address) = config.edge_of("eu-west", Some(ip("127.0.2.3"))).unwrap();
    assert_eq!(
        (region.name.as_str(), address),
        ("eu-west", ip("127.0.2.3"))
    );
    // Another region's address, or none for a region of two: refused,
    // naming the region's edges.
    let e = config
        .edge_of("eu-west", Some(ip("127.0.1.1")))
        .unwrap_err();
    assert_eq!(e.key, "region[1].edge_addresses");
    assert!(e.reason.contains("127.0.2.1, 127.0.2.3"), "{e}");
    let e = config.edge_of("eu-west", None).unwrap_err();
    assert!(e.reason.contains("--address"), "{e}");
    assert!(e.reason.contains("127.0.2.1, 127.0.2.3"), "{e}");
    assert!(config.edge_of("mars", None).is_err());
    // A region of one edge needs no address.
    let single = check(&demo_with(
        "edge_addresses = [\"127.0.2.1\", \"127.0.2.3\"]",
        "edge_addresses = [\"127.0.2.1\"]",
    ))
    .unwrap();
    assert_eq!(single.edge_of("eu-west", None).unwrap().1, ip("127.0.2.1"));
}

#[test]
fn max_answers_has_a_default_and_bounds() {
    let with = |value: &str| demo_with("# max_answers = 8", &format!("max_answers = {value}"));
    assert_eq!(check(&with("2")).unwrap().geodns.max_answers, 2);
    for bad in ["0", "65", "-1"] {
        let e = error_of(&with(bad));
        assert_eq!(e.key, "geodns.max_answers", "{bad}: {e}");
    }
}

#[test]
fn origin_policy_rules() {
    let config = Config::demo();
    assert_eq!(config.edge.origins.max_tries, 3);
    let e = error_of(&demo_with("origin_max_tries = 3", "origin_max_tries = 0"));
    assert_eq!(e.key, "edge.origin_max_tries");
    let e = error_of(&demo_with(
        "origin_connect_timeout_ms = 1000",
        "origin_connect_timeout_ms = 0",
    ));
    assert_eq!(e.key, "edge.origin_connect_timeout_ms");
    let e = error_of(&demo_with("admin_port = 9080", "admin_port = 8080"));
    assert_eq!(e.key, "edge.admin_port");
}

#[test]
fn default_ttl_rules() {
    let text = demo_with(
        "origin_suspect_ms = 5000",
        "origin_suspect_ms = 5000\n[[edge.default_ttl]]\npath_prefix = \"/static/\"\nttl_seconds = 60",
    );
    let config = check(&text).unwrap();
    assert_eq!(
        config.edge.default_ttls,
        [DefaultTtl {
            path_prefix: "/static/".into(),
            ttl: Duration::from_secs(60)
        }]
    );
    let e = error_of(&text.replace("\"/static/\"", "\"static\""));
    assert_eq!(e.key, "edge.default_ttl[0].path_prefix");
}

#[test]
fn admin_tokens_must_be_long_enough() {
    let e = error_of(&demo_with(
        "admin_token = \"meridian-demo-purge-token\"",
        "admin_token = \"short\"",
    ));
    assert_eq!(e.key, "edge.admin_token");
}

/// The demo with its two GeoDNS servers replaced by the single form:
/// `[geodns] listen` and `admin_listen`, one nameserver.
fn single_server_demo() -> String {
    let servers = DEMO_TOML.find("[[geodns.servers]]").unwrap();
    let health = DEMO_TOML.find("[health]").unwrap();
    let ns2 = DEMO_TOML
        .find("[[zone.nameservers]]\nname = \"ns2")
        .unwrap();
    let after_ns2 = ns2 + DEMO_TOML[ns2..].find("\n\n").unwrap();
    format!(
        "{}{}{}{}",
        &DEMO_TOML[..ns2],
        &DEMO_TOML[after_ns2..servers],
        "\n",
        &DEMO_TOML[health..]
    )
    .replacen(
        "[geodns]\n",
        "[geodns]\nlisten = \"127.0.0.1:5353\"\nadmin_listen = \"127.0.0.1:9153\"\n",
        1,
    )
}

#[test]
fn one_geodns_server_needs_no_server_table() {
    let config = check(&single_server_demo()).unwrap();
    assert_eq!(
        config.geodns.servers,
        [GeoDnsServer {
            name: SINGLE_SERVER_NAME.into(),
            listen: "127.0.0.1:5353".parse().unwrap(),
            admin_listen: "127.0.0.1:9153".parse().unwrap(),
            probe_from: None,
        }]
    );
    assert_eq!(config.zone.nameservers.len(), 1);
    // Its admin listener has a default.
    let default_admin = single_server_demo().replace("admin_listen = \"127.0.0.1:9153\"\n", "");
    let config = check(&default_admin).unwrap();
    assert_eq!(
        config.geodns.servers[0].admin_listen,
        "127.0.0.1:9153".parse().unwrap()
    );
    // The one server is the one chosen without asking.
    assert_eq!(
        config.geodns.choose(&ServerChoice::Only).unwrap().name,
        "geodns"
    );
}

#[test]
fn a_process_chooses_its_server_by_name_or_address() {
    let demo = Config::demo();
    let geodns = &demo.geodns;
    let only = geodns.choose(&ServerChoice::Only).unwrap_err();
    assert!(only.contains("2 GeoDNS servers"), "{only}");
    assert!(
        only.contains("ns1 on 127.0.0.1:5353, ns2 on 127.0.0.2:5353"),
        "{only}"
    );
    assert!(only.contains("--server NAME"), "{only}");
    let named = geodns.choose(&ServerChoice::Named("ns2".into())).unwrap();
    assert_eq!(named.listen, "127.0.0.2:5353".parse().unwrap());
    let listening = ServerChoice::Listening("127.0.0.1:5353".parse().unwrap());
    assert_eq!(geodns.choose(&listening).unwrap().name, "ns1");
    let unknown = geodns
        .choose(&ServerChoice::Named("ns9".into()))
        .unwrap_err();
    assert!(
        unknown.contains("no GeoDNS server named \"ns9\""),
        "{unknown}"
    );
    let nowhere = ServerChoice::Listening("127.0.0.9:53".parse().unwrap());
    assert!(
        geodns
            .choose(&nowhere)
            .unwrap_err()
            .contains("127.0.0.9:53")
    );
    // Two servers on one address (anycast, or a wildcard on two hosts)
    // are told apart by name only.
    let shared = check(&demo_with(
        "listen = \"127.0.0.2:5353\"",
        "listen = \"127.0.0.1:5353\"",
    ))
    .unwrap();
    let ambiguous = ServerChoice::Listening("127.0.0.1:5353".parse().unwrap());
    let e = shared.geodns.choose(&ambiguous).unwrap_err();
    assert!(e.contains("several") && e.contains("--server"), "{e}");
}

#[test]
fn geodns_server_errors_name_the_key() {
    let cases = [
        (
            demo_with(
                "[[geodns.servers]]\nname = \"ns1\"",
                "listen = \"127.0.0.1:53\"\n[[geodns.servers]]\nname = \"ns1\"",
            ),
            "geodns.servers",
            "not both",
        ),
        (
            demo_with("name = \"ns2\"", "name = \"ns1\""),
            "geodns.servers[1].name",
            "more than once (also geodns.servers[0])",
        ),
        (
            demo_with("name = \"ns2\"", "name = \"NS 2\""),
            "geodns.servers[1].name",
            "lowercase",
        ),
        (
            demo_with(
                "admin_listen = \"127.0.0.2:9153\"",
                "admin_listen = \"127.0.0.1:9153\"",
            ),
            "geodns.servers[1].admin_listen",
            "also geodns.servers[0].admin_listen",
        ),
        (
            demo_with(
                "admin_listen = \"127.0.0.2:9153\"",
                "admin_listen = \"127.0.0.1:5353\"",
            ),
            "geodns.servers[1].admin_listen",
            "must differ from geodns.servers[0].listen",
        ),
        (
            demo_with(
                "admin_listen = \"127.0.0.2:9153\"",
                "admin_listen = \"127.0.0.2:5353\"",
            ),
            "geodns.servers[1].admin_listen",
            "must differ from geodns.servers[1].listen",
        ),
        (
            demo_with(
                "admin_listen = \"127.0.0.2:9153\"",
                "admin_listen = \"127.0.0.2:9153\"\nprobe_from = \"0.0.0.0\"",
            ),
            "geodns.servers[1].probe_from",
            "leave probe_from out",
        ),
        (
            demo_with(
                "admin_listen = \"127.0.0.2:9153\"",
                "admin_listen = \"127.0.0.2:9153\"\nprobe_from = \"not an address\"",
            ),
            "geodns.servers[1].probe_from",
            "invalid",
        ),
        (
            demo_with(
                "admin_listen = \"127.0.0.2:9153\"",
                "admin_listen = \"127.0.0.2:9153\"\nport = 53",
            ),
            "geodns.servers[1].port",
            "unknown field",
        ),
        (
            demo_with(
                "[[zone.nameservers]]\nname = \"ns2.meridian.test.\"\naddresses = [\"127.0.0.2\"]\n",
                "",
            ),
            "zone.nameservers",
            "names 1 nameserver(s) for 2 GeoDNS servers",
        ),
    ];
    for (text, key, reason) in cases {
        let e = error_of(&text);
        assert_eq!(e.key, key, "{e}");
        assert!(e.reason.contains(reason), "{e}");
    }
    let cut = DEMO_TOML.find("[[geodns.servers]]").unwrap();
    let end = DEMO_TOML.find("[health]").unwrap();
    let neither = format!("{}{}", &DEMO_TOML[..cut], &DEMO_TOML[end..]);
    let e = error_of(&neither);
    assert_eq!(e.key, "geodns.listen", "{e}");
    assert!(e.reason.contains("[[geodns.servers]]"), "{e}");
    let from = check(&demo_with(
        "admin_listen = \"127.0.0.2:9153\"",
        "admin_listen = \"127.0.0.2:9153\"\nprobe_from = \"127.0.0.2\"",
    ))
    .unwrap();
    assert_eq!(
        from.geodns.servers[1].probe_from,
        Some("127.0.0.2".parse().unwrap())
    );
}

#[test]
fn several_servers_poll_each_other_on_specific_admin_addresses() {
    let token = "\nadmin_token = \"geodns-admin-token-1234\"";
    let text = demo_with(
        "admin_listen = \"127.0.0.2:9153\"",
        "admin_listen = \"0.0.0.0:9153\"",
    )
    .replacen("[geodns]", &format!("[geodns]{token}"), 1);
    let e = error_of(&text);
    assert_eq!(e.key, "geodns.servers[1].admin_listen", "{e}");
    assert!(e.reason.contains("wildcard"), "{e}");
    // Alone, a server may listen on every address (with a token).
    let single = single_server_demo()
        .replace(
            "admin_listen = \"127.0.0.1:9153\"",
            "admin_listen = \"0.0.0.0:9153\"",
        )
        .replacen("[geodns]", &format!("[geodns]{token}"), 1);
    assert!(check(&single).is_ok());
}

#[test]
fn geodns_admin_off_loopback_needs_a_token() {
    let single = single_server_demo();
    let demo_with = |from: &str, to: &str| {
        assert!(single.contains(from), "{from:?}");
        single.replacen(from, to, 1)
    };
    let listen = "admin_listen = \"127.0.0.1:9153\"";
    for off_loopback in ["0.0.0.0:9153", "[::]:9153", "192.0.2.53:9153"] {
        let text = demo_with(listen, &format!("admin_listen = \"{off_loopback}\""));
        let e = error_of(&text);
        assert_eq!(e.key, "geodns.admin_listen", "{e}");
        assert!(e.reason.contains("geodns.admin_token"), "{e}");
        let with_token = text.replace(
            &format!("admin_listen = \"{off_loopback}\""),
            &format!(
                "admin_listen = \"{off_loopback}\"\nadmin_token = \"geodns-admin-token-1234\""
            ),
        );
        let config = check(&with_token).unwrap();
        assert_eq!(
            config.geodns.admin_token.as_deref(),
            Some("geodns-admin-token-1234")
        );
    }
    // On loopback a token is optional, and checked like the edge's.
    assert_eq!(Config::demo().geodns.admin_token, None);
    let short = demo_with(listen, &format!("{listen}\nadmin_token = \"short\""));
    assert_eq!(error_of(&short).key, "geodns.admin_token");
    let spaced = demo_with(
        listen,
        &format!("{listen}\nadmin_token = \"a token with spaces in it\""),
    );
    assert_eq!(error_of(&spaced).key, "geodns.admin_token");
}

#[test]
fn https_needs_certificates_and_a_distinct_port() {
    let config = Config::demo();
    assert_eq!(config.edge.https_port, Some(8443));
    assert_eq!(
        config.edge.certificates[0].source,
        CertificateSource::Development
    );
    let eu = config.region("eu-west").unwrap();
    assert_eq!(
        eu.edge_https_addrs(&config.edge),
        ["127.0.2.1:8443", "127.0.2.3:8443"].map(|a| a.parse().unwrap())
    );
    let e = error_of(&demo_with("https_port = 8443", "https_port = 8080"));
    assert_eq!(e.key, "edge.https_port");
    let cut = DEMO_TOML.find("[[edge.certificates]]").unwrap();
    let end = DEMO_TOML[cut..].find("\n\n").unwrap() + cut;
    let without = format!("{}{}", &DEMO_TOML[..cut], &DEMO_TOML[end..]);
    let e = error_of(&without);
    assert_eq!(e.key, "edge.certificates");
    let e = error_of(&demo_with(
        "\ndevelopment = true",
        "\nchain_file = \"a.pem\"",
    ));
    assert_eq!(e.key, "edge.certificates[0]");
    let files = check(&demo_with(
        "\ndevelopment = true",
        "\nchain_file = \"tls/chain.pem\"\nkey_file = \"tls/key.pem\"",
    ))
    .unwrap();
    assert_eq!(
        files.edge.certificates[0].source,
        CertificateSource::Files {
            chain: PathBuf::from("tls/chain.pem"),
            key: PathBuf::from("tls/key.pem")
        }
    );
}

#[test]
fn defaults_match_the_demo() {
    let demo = Config::demo();
    assert_eq!(OriginPolicy::default(), demo.edge.origins);
    assert_eq!(Health::default().down_after, demo.health.down_after);
}

#[test]
fn unknown_key_is_named() {
    let e = error_of(&demo_with(
        "http_port = 8080",
        "http_port = 8080\nhttp_prot = 1",
    ));
    assert_eq!(e.file, "test.toml");
    assert_eq!(e.key, "edge.http_prot");
    assert!(e.reason.contains("unknown"), "{e}");
}

#[test]
fn wrong_type_is_named_with_its_path() {
    let e = error_of(&demo_with("latitude = 53.35", "latitude = \"north\""));
    assert_eq!(e.key, "region[1].latitude");
    assert!(e.reason.contains("line"), "{e}");
}

#[test]
fn syntax_error_has_a_line() {
    let e = error_of("[zone\nname = 1");
    assert!(e.reason.contains("line 1"), "{e}");
}

#[test]
fn missing_key_is_named() {
    let e = error_of(&demo_with("http_port = 8080\n", ""));
    assert_eq!(e.key, "edge.http_port");
    assert!(e.reason.contains("missing"), "{e}");
}

#[test]
fn latitude_out_of_range() {
    let e = error_of(&demo_with("latitude = 53.35", "latitude = 153.35"));
    assert_eq!(e.key, "region[1].latitude");
    assert!(e.reason.contains("between -90 and 90"), "{e}");
}

#[test]
fn longitude_out_of_range() {
    let e = error_of(&demo_with("longitude = 103.82", "longitude = 203.82"));
    assert_eq!(e.key, "region[2].longitude");
}

#[test]
fn duplicate_region_name() {
    let e = error_of(&demo_with("name = \"eu-west\"", "name = \"us-east\""));
    assert_eq!(e.key, "region[1].name");
    assert!(e.reason.contains("more than once"), "{e}");
}

#[test]
fn bad_region_name() {
    let e = error_of(&demo_with("name = \"eu-west\"", "name = \"EU West\""));
    assert_eq!(e.key, "region[1].name");
}

#[test]
fn shared_edge_address() {
    let e = error_of(&demo_with(
        "edge_addresses = [\"127.0.2.1\", \"127.0.2.3\"]",
        "edge_addresses = [\"127.0.1.1\"]",
    ));
    assert_eq!(e.key, "region[1].edge_addresses");
    assert!(e.reason.contains("us-east"), "{e}");
}

#[test]
fn no_edge_addresses() {
    let e = error_of(&demo_with(
        "edge_addresses = [\"127.0.2.1\", \"127.0.2.3\"]",
        "edge_addresses = []",
    ));
    assert_eq!(e.key, "region[1].edge_addresses");
}

#[test]
fn https_origins_take_port_443_and_a_ca_file_beside_the_config() {
    let text = demo_with(
        "origin_url = \"http://127.0.2.2:8000\"",
        "origin_url = \"https://origin.example\"\norigin_listen = \"0.0.0.0:8000\"",
    )
    .replace(
        "origin_suspect_ms = 5000",
        "origin_suspect_ms = 5000\norigin_ca_file = \"tls/origin-ca.pem\"",
    );
    let source = ConfigSource::File("/etc/meridian/meridian.toml".into());
    let config = Config::from_toml(&text, source).unwrap();
    let eu = config.region("eu-west").unwrap();
    assert!(eu.origin_url.tls);
    assert_eq!(eu.origin_url.port, 443);
    assert_eq!(eu.origin_url.to_string(), "https://origin.example:443");
    assert!(!config.region("us-east").unwrap().origin_url.tls);
    assert_eq!(
        config.edge.origins.ca_file.as_deref(),
        Some(Path::new("/etc/meridian/tls/origin-ca.pem"))
    );
}

#[test]
fn origin_url_must_be_http_or_https() {
    let e = error_of(&demo_with("http://127.0.2.2:8000", "ftp://127.0.2.2:8000"));
    assert_eq!(e.key, "region[1].origin_url");
    let e = error_of(&demo_with(
        "http://127.0.2.2:8000",
        "http://127.0.2.2:8000/path",
    ));
    assert_eq!(e.key, "region[1].origin_url");
    let e = error_of(&demo_with("http://127.0.2.2:8000", "not a url"));
    assert_eq!(e.key, "region[1].origin_url");
}

#[test]
fn origin_by_name_needs_a_listen_address() {
    let e = error_of(&demo_with(
        "http://127.0.2.2:8000",
        "http://origin.example:8000",
    ));
    assert_eq!(e.key, "region[1].origin_listen");
    let text = demo_with(
        "origin_url = \"http://127.0.2.2:8000\"",
        "origin_url = \"http://origin.example\"\norigin_listen = \"0.0.0.0:8000\"",
    );
    let config = check(&text).unwrap();
    let eu = config.region("eu-west").unwrap();
    assert_eq!(eu.origin_url.port, 80);
    assert_eq!(eu.origin_url.host, "origin.example");
}

#[test]
fn ipv6_origin_url() {
    let text = demo_with("http://127.0.2.2:8000", "http://[::1]:8000");
    let config = check(&text).unwrap();
    let eu = config.region("eu-west").unwrap();
    assert_eq!(eu.origin_listen, "[::1]:8000".parse().unwrap());
    assert_eq!(eu.origin_url.authority(), "[::1]:8000");
}

#[test]
fn default_order_names_known_regions_once() {
    let e = error_of(&demo_with(
        "default_order = [\"us-east\", \"eu-west\", \"ap-southeast\"]",
        "default_order = [\"us-east\", \"mars\"]",
    ));
    assert_eq!(e.key, "geodns.default_order");
    assert!(e.reason.contains("mars"), "{e}");
    assert!(e.reason.contains("eu-west"), "lists the known regions: {e}");
    let e = error_of(&demo_with(
        "default_order = [\"us-east\", \"eu-west\", \"ap-southeast\"]",
        "default_order = [\"us-east\", \"us-east\"]",
    ));
    assert_eq!(e.key, "geodns.default_order");
}

#[test]
fn default_order_appends_unlisted_regions() {
    let config = check(&demo_with(
        "default_order = [\"us-east\", \"eu-west\", \"ap-southeast\"]",
        "default_order = [\"ap-southeast\"]",
    ))
    .unwrap();
    assert_eq!(config.geodns.default_order, [2, 0, 1]);
}

#[test]
fn steered_name_outside_the_zone() {
    let e = error_of(&demo_with(
        "[\"cdn.meridian.test.\"]",
        "[\"cdn.example.com.\"]",
    ));
    assert_eq!(e.key, "zone.steered_names[0]");
    assert!(e.reason.contains("meridian.test."), "{e}");
}

#[test]
fn names_are_normalized() {
    let config = check(&demo_with(
        "[\"cdn.meridian.test.\"]",
        "[\"CDN.Meridian.Test\"]",
    ))
    .unwrap();
    assert_eq!(config.zone.steered_names, ["cdn.meridian.test."]);
}

#[test]
fn bad_dns_names() {
    let e = error_of(&demo_with(
        "name = \"meridian.test.\"",
        "name = \"meridian..test.\"",
    ));
    assert_eq!(e.key, "zone.name");
    let long = "a".repeat(64);
    let e = error_of(&demo_with(
        "name = \"meridian.test.\"",
        &format!("name = \"{long}.test.\""),
    ));
    assert_eq!(e.key, "zone.name");
    let e = error_of(&demo_with(
        "hostmaster.meridian.test.",
        "host master.meridian.test.",
    ));
    assert_eq!(e.key, "zone.hostmaster");
}

#[test]
fn cache_budget_rules() {
    let e = error_of(&demo_with(
        "cache_max_bytes = 268435456",
        "cache_max_bytes = 0",
    ));
    assert_eq!(e.key, "edge.cache_max_bytes");
    let e = error_of(&demo_with(
        "cache_max_object_bytes = 16777216",
        "cache_max_object_bytes = 536870912",
    ));
    assert_eq!(e.key, "edge.cache_max_object_bytes");
    assert!(e.reason.contains("cache_max_bytes"), "{e}");
}

#[test]
fn disk_tier_rules() {
    let with_disk = |table: &str| {
        demo_with(
            "cache_max_object_bytes = 16777216   # 16 MiB\n",
            &format!("cache_max_object_bytes = 16777216\n{table}\n"),
        )
    };
    let e = error_of(&with_disk("disk = { path = \"\", max_bytes = 1073741824 }"));
    assert_eq!(e.key, "edge.disk.path");
    let e = error_of(&with_disk("disk = { path = \"cache\", max_bytes = 10 }"));
    assert_eq!(e.key, "edge.disk.max_bytes");
    assert!(e.reason.contains("at least"), "{e}");
    // An object larger than memory may still go to disk, but not larger
    // than the disk.
    let fits_disk = with_disk("disk = { path = \"cache\", max_bytes = 1073741824 }").replace(
        "cache_max_object_bytes = 16777216",
        "cache_max_object_bytes = 536870912",
    );
    let config = check(&fits_disk).unwrap();
    let disk = config.edge.disk.unwrap();
    assert_eq!(
        (disk.path.to_str(), disk.max_bytes),
        (Some("cache"), 1 << 30)
    );
    let e = error_of(
        &with_disk("disk = { path = \"cache\", max_bytes = 1048576 }")
            .replace(
                "cache_max_object_bytes = 16777216",
                "cache_max_object_bytes = 4194304",
            )
            .replace("cache_max_bytes = 268435456", "cache_max_bytes = 2097152"),
    );
    assert_eq!(e.key, "edge.cache_max_object_bytes");
}

#[test]
fn ports_and_paths() {
    let e = error_of(&demo_with("http_port = 8080", "http_port = 0"));
    assert_eq!(e.key, "edge.http_port");
    let e = error_of(&demo_with("http_port = 8080", "http_port = 70000"));
    assert_eq!(e.key, "edge.http_port");
    let e = error_of(&demo_with("\"/_meridian/health\"", "\"health\""));
    assert_eq!(e.key, "edge.health_path");
}

#[test]
fn health_defaults_and_rules() {
    let cut = DEMO_TOML.find("[health]").unwrap();
    let end = DEMO_TOML[cut..].find("\n\n").unwrap() + cut;
    let without = format!("{}{}", &DEMO_TOML[..cut], &DEMO_TOML[end..]);
    let health = check(&without).unwrap().health;
    assert_eq!(health.interval, Duration::from_secs(1));
    assert_eq!(health.timeout, Duration::from_millis(500));
    assert_eq!(
        (health.down_after, health.up_after, health.fail_open),
        (2, 2, true)
    );

    let e = error_of(&demo_with("down_after = 2", "down_after = 0"));
    assert_eq!(e.key, "health.down_after");
    let e = error_of(&demo_with("interval_ms = 500", "interval_ms = 5"));
    assert_eq!(e.key, "health.interval_ms");
    let e = error_of(&demo_with("timeout_ms = 400", "timeout_ms = 900"));
    assert_eq!(e.key, "health.timeout_ms");
    assert!(e.reason.contains("interval_ms"), "{e}");
}

#[test]
fn the_control_api_stays_on_loopback() {
    let text = demo_with("listen = \"127.0.0.1:9000\"", "listen = \"0.0.0.0:9000\"");
    let e = error_of(&text);
    assert_eq!(e.key, "control.listen");
    assert!(e.reason.contains("loopback"), "{e}");
}

#[test]
fn listen_address_must_parse() {
    let e = error_of(&demo_with(
        "listen = \"127.0.0.1:5353\"",
        "listen = \"localhost\"",
    ));
    assert_eq!(e.key, "geodns.servers[0].listen");
    let e = error_of(&single_server_demo().replace("127.0.0.1:5353", "localhost"));
    assert_eq!(e.key, "geodns.listen");
}

#[test]
fn a_quorum_is_a_majority_or_a_number() {
    let majority = Quorum::Majority;
    // Alone, a GeoDNS decides on its own probes.
    assert!(majority.is_down(1, 1));
    assert!(!majority.is_down(0, 1));
    // A tie keeps the edge: one nameserver cut off from a region does
    // not steer its clients away.
    assert!(!majority.is_down(1, 2));
    assert!(majority.is_down(2, 2));
    assert!(majority.is_down(2, 3));
    assert!(!majority.is_down(2, 4));
    assert!(majority.is_down(3, 4));
    assert!(!majority.is_down(0, 0), "no one reporting is no evidence");
    let two = Quorum::AtLeast(2);
    assert!(two.is_down(2, 5));
    assert!(!two.is_down(1, 5));
    // Fewer report than the number: all of those that do.
    assert!(two.is_down(1, 1));
    let one = Quorum::AtLeast(1);
    assert!(one.is_down(1, 3), "any vantage point seeing it down");

    let with = |value: &str| {
        check(&demo_with(
            "quorum = \"majority\"",
            &format!("quorum = {value}"),
        ))
    };
    assert_eq!(with("3").unwrap().health.quorum, Quorum::AtLeast(3));
    for bad in ["0", "101", "-1", "\"most\"", "1.5", "true"] {
        let e = with(bad).unwrap_err();
        assert_eq!(e.key, "health.quorum", "{bad}: {e}");
        assert!(e.reason.contains("\"majority\" or a number"), "{bad}: {e}");
    }
}

#[test]
fn vantage_points_fall_silent_after_a_few_intervals() {
    assert_eq!(Config::demo().health.silent_after, Duration::from_secs(2));
    let slower = check(&demo_with("interval_ms = 500", "interval_ms = 3000")).unwrap();
    assert_eq!(
        slower.health.silent_after,
        Duration::from_secs(12),
        "four intervals unless set"
    );
    let set = check(&demo_with(
        "# silent_after_ms = 2000",
        "silent_after_ms = 1500",
    ))
    .unwrap();
    assert_eq!(set.health.silent_after, Duration::from_millis(1500));
    let e = error_of(&demo_with(
        "# silent_after_ms = 2000",
        "silent_after_ms = 500",
    ));
    assert_eq!(e.key, "health.silent_after_ms");
    assert!(e.reason.contains("longer than interval_ms (500)"), "{e}");
}

#[test]
fn hostnames_rules() {
    let e = error_of(&demo_with(
        "hostnames = [\"cdn.meridian.test\"]",
        "hostnames = []",
    ));
    assert_eq!(e.key, "edge.hostnames");
    let e = error_of(&demo_with(
        "hostnames = [\"cdn.meridian.test\"]",
        "hostnames = [\"cdn.meridian.test:8080\"]",
    ));
    assert_eq!(e.key, "edge.hostnames[0]");
}

#[test]
fn relative_paths_resolve_against_the_file() {
    let text = demo_with(
        "geo_database = \"embedded\"",
        "geo_database = \"geo/city.mmdb\"",
    )
    .replace("# root = \"/srv/www\"", "root = \"site\"");
    let config =
        Config::from_toml(&text, ConfigSource::File("/etc/meridian/m.toml".into())).unwrap();
    assert_eq!(
        config.geodns.geo_database,
        GeoDatabase::File("/etc/meridian/geo/city.mmdb".into())
    );
    assert_eq!(
        config.origin.root,
        Some(PathBuf::from("/etc/meridian/site"))
    );
}

#[test]
fn no_regions() {
    let cut = DEMO_TOML.find("[[region]]").unwrap();
    let e = error_of(&DEMO_TOML[..cut]);
    assert_eq!(e.key, "region");
}

#[test]
fn unknown_region_lists_known_ones() {
    let e = Config::demo().region("mars").unwrap_err();
    assert!(
        e.to_string().contains("us-east, eu-west, ap-southeast"),
        "{e}"
    );
}

#[test]
fn error_display_names_file_key_and_reason() {
    let e = error_of(&demo_with("latitude = 53.35", "latitude = 153.35"));
    let shown = e.to_string();
    assert!(
        shown.starts_with("test.toml: region[1].latitude: "),
        "{shown}"
    );
}
