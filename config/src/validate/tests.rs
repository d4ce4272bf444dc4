//! Tests of the cross-field rules and of lowering zone records, overrides and rate limits.

use super::*;

fn lowered(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml(text, ConfigSource::File("test.toml".into()))
}

/// The demo with `extra` appended to its `[zone]` section.
fn with_records(extra: &str) -> Result<Config, ConfigError> {
    let text = crate::DEMO_TOML.replacen("[geodns]", &format!("{extra}\n[geodns]"), 1);
    lowered(&text)
}

use kit::zone_records as records;

fn error_key(result: Result<Config, ConfigError>) -> (String, String) {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(e) => (e.key, e.reason),
    }
}

#[test]
fn static_records_are_lowered() {
    let config = with_records(&records(
        "www CNAME cdn.meridian.test. | @ MX 10 Mail.Meridian.Test | mail a 127.0.9.1 \
         | mail AAAA 2001:db8::9 | @ TXT v=spf1 -all | cdn TXT steered names may carry text",
    ))
    .unwrap();
    let records = &config.zone.records;
    assert_eq!(records.len(), 6);
    assert_eq!(
        records[0].data,
        RecordData::Cname(DnsName::try_from("cdn.meridian.test.").unwrap())
    );
    assert_eq!(records[0].ttl_seconds, 3600, "zone.ttl_seconds by default");
    assert_eq!(
        records[1].data,
        RecordData::Mx {
            preference: 10,
            exchange: DnsName::try_from("mail.meridian.test.").unwrap()
        }
    );
    assert_eq!(records[2].data, RecordData::A("127.0.9.1".parse().unwrap()));
    assert_eq!(records[2].data.type_name(), "A");
    let ttl = with_records("[[zone.records]]\nname = \"x.meridian.test\"\ntype = \"TXT\"\nvalue = \"t\"\nttl_seconds = 5\n").unwrap();
    assert_eq!(ttl.zone.records[0].ttl_seconds, 5);
    assert_eq!(ttl.zone.records[0].name, "x.meridian.test.");
}

#[test]
fn static_record_errors_name_the_key() {
    // One case a line: the records, the key the error names, a word of its reason.
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str)] = &[
        ("www.example.com. A 192.0.2.1", "zone.records[0].name", "not inside the zone"),
        ("www SRV x", "zone.records[0].type", "A, AAAA, CNAME, MX, TXT"),
        ("www A 2001:db8::1", "zone.records[0].value", "IPv4"),
        ("www AAAA 192.0.2.1", "zone.records[0].value", "IPv6"),
        ("www MX mail.meridian.test.", "zone.records[0].value", "PREFERENCE"),
        ("www MX 99999 mail.meridian.test.", "zone.records[0].value", "0 to 65535"),
        ("www CNAME a..b", "zone.records[0].value", "empty label"),
        ("@ CNAME cdn.meridian.test.", "zone.records[0].type", "apex"),
        ("cdn CNAME www.example.com.", "zone.records[0].type", "steered"),
        ("ns1 CNAME www.example.com.", "zone.records[0].type", "nameserver"),
        ("cdn A 192.0.2.1", "zone.records[0].name", "edge addresses"),
        ("ns1 A 192.0.2.1", "zone.records[0].name", "zone.nameservers[0].addresses"),
        ("www CNAME cdn.meridian.test. | www TXT x", "zone.records[1].type", "only record"),
        ("www TXT x | www CNAME cdn.meridian.test.", "zone.records[1].type", "only record"),
        ("www A 192.0.2.1 | www A 192.0.2.1", "zone.records[1].value", "repeats zone.records[0]"),
        ("a CNAME b.meridian.test. | b CNAME a.meridian.test.", "zone.records[0].value", "loop"),
        ("@ MX 10 mx.meridian.test. | mx CNAME cdn.meridian.test.", "zone.records[0].value", "alias"),
    ];
    for (spec, key, reason) in cases {
        let (k, r) = error_key(with_records(&records(spec)));
        assert_eq!(&k, key, "{spec}: {r}");
        assert!(r.contains(reason), "{spec}: {r}");
    }
    let (k, r) = error_key(with_records(
        "[[zone.records]]\nname = \"w.meridian.test\"\ntype = \"A\"\nvalue = \"192.0.2.1\"\n\
         [[zone.records]]\nname = \"w.meridian.test\"\ntype = \"A\"\nvalue = \"192.0.2.2\"\nttl_seconds = 5\n",
    ));
    assert_eq!(k, "zone.records[1].ttl_seconds");
    assert!(r.contains("one TTL"), "{r}");
    let (k, _) = error_key(with_records(&records(&format!(
        "t TXT {}",
        "x".repeat(5000)
    ))));
    assert_eq!(k, "zone.records[0].value");
}

/// The demo with a `[section]` of `body` before its `[health]`.
fn with_section(section: &str, body: &str) -> Result<Config, ConfigError> {
    let table = format!("[{section}]\n{body}\n\n[health]");
    lowered(&crate::DEMO_TOML.replacen("[health]", &table, 1))
}

fn with_overrides(body: &str) -> Result<Config, ConfigError> {
    with_section("geodns.overrides", body)
}

#[test]
fn overrides_are_lowered() {
    let config = with_overrides(
        "nets = { \"10.0.0.0/8\" = [\"eu-west\"], \"2001:db8::/32\" = [\"ap-southeast\", \"us-east\"] }\n\
         countries = { br = [\"eu-west\", \"us-east\"] }\n\
         continents = { OC = [\"ap-southeast\"] }",
    )
    .unwrap();
    let overrides = &config.geodns.overrides;
    assert_eq!(overrides.nets.len(), 2);
    assert_eq!(overrides.nets[0].net, "10.0.0.0/8".parse().unwrap());
    assert_eq!(overrides.nets[0].regions, [1]);
    assert_eq!(overrides.nets[1].regions, [2, 0]);
    assert_eq!(overrides.countries["BR"], [1, 0]);
    assert_eq!(overrides.continents["OC"], [2]);
    assert_eq!(Config::demo().geodns.overrides, Overrides::default());
}

#[test]
fn override_errors_name_the_key() {
    let cases = [
        (
            "countries = { BR = [\"mars\"] }",
            "geodns.overrides.countries.BR",
            "known regions: us-east, eu-west, ap-southeast",
        ),
        (
            "countries = { BR = [] }",
            "geodns.overrides.countries.BR",
            "at least one",
        ),
        (
            "countries = { BR = [\"eu-west\", \"eu-west\"] }",
            "geodns.overrides.countries.BR",
            "more than once",
        ),
        (
            "countries = { ZZ = [\"eu-west\"] }",
            "geodns.overrides.countries.ZZ",
            "ISO 3166-1",
        ),
        (
            "countries = { BRA = [\"eu-west\"] }",
            "geodns.overrides.countries.BRA",
            "ISO 3166-1",
        ),
        (
            "countries = { br = [\"eu-west\"], BR = [\"us-east\"] }",
            "geodns.overrides.countries.br",
            "twice",
        ),
        (
            "continents = { XX = [\"eu-west\"] }",
            "geodns.overrides.continents.XX",
            "AF, AN, AS, EU, NA, OC, SA",
        ),
        (
            "nets = { \"10.0.0.0\" = [\"eu-west\"] }",
            "geodns.overrides.nets.\"10.0.0.0\"",
            "CIDR",
        ),
        (
            "nets = { \"10.0.0.1/8\" = [\"eu-west\"] }",
            "geodns.overrides.nets.\"10.0.0.1/8\"",
            "did you mean 10.0.0.0/8",
        ),
        (
            "nets = { \"::ffff:10.0.0.0/104\" = [\"eu-west\"] }",
            "geodns.overrides.nets.\"::ffff:10.0.0.0/104\"",
            "IPv4",
        ),
        (
            "nets = { \"10.0.0.0/8\" = [\"venus\"] }",
            "geodns.overrides.nets.\"10.0.0.0/8\"",
            "venus",
        ),
        ("regions = { }", "geodns.overrides.regions", "unknown field"),
    ];
    for (body, key, reason) in cases {
        let (k, r) = error_key(with_overrides(body));
        assert_eq!(k, key, "{body}: {r}");
        assert!(r.contains(reason), "{body}: {r}");
    }
}

fn with_rate_limit(body: &str) -> Result<Config, ConfigError> {
    with_section("geodns.rate_limit", body)
}

#[test]
fn rate_limiting_is_off_unless_configured() {
    assert_eq!(Config::demo().geodns.rate_limit, None);
    let defaults = with_rate_limit("responses_per_second = 20").unwrap();
    assert_eq!(
        defaults.geodns.rate_limit,
        Some(RateLimit {
            responses_per_second: 20,
            burst: 20,
            slip: 2,
            ipv4_prefix_length: 24,
            ipv6_prefix_length: 56,
        })
    );
    let set = with_rate_limit(
        "responses_per_second = 1000000\nburst = 1\nslip = 0\n\
         ipv4_prefix_length = 32\nipv6_prefix_length = 128",
    )
    .unwrap();
    assert_eq!(
        set.geodns.rate_limit,
        Some(RateLimit {
            responses_per_second: 1_000_000,
            burst: 1,
            slip: 0,
            ipv4_prefix_length: 32,
            ipv6_prefix_length: 128,
        })
    );
}

#[test]
fn rate_limit_errors_name_the_key() {
    let cases = [
        (
            "burst = 10",
            "geodns.rate_limit.responses_per_second",
            "missing",
        ),
        (
            "responses_per_second = 0",
            "geodns.rate_limit.responses_per_second",
            "between 1 and 1000000, got 0",
        ),
        (
            "responses_per_second = 1000001",
            "geodns.rate_limit.responses_per_second",
            "between 1 and 1000000",
        ),
        (
            "responses_per_second = -5",
            "geodns.rate_limit.responses_per_second",
            "-5",
        ),
        (
            "responses_per_second = 2.5",
            "geodns.rate_limit.responses_per_second",
            "float",
        ),
        (
            "responses_per_second = 10\nburst = 0",
            "geodns.rate_limit.burst",
            "between 1 and 1000000, got 0",
        ),
        (
            "responses_per_second = 10\nslip = 11",
            "geodns.rate_limit.slip",
            "between 0 and 10, got 11",
        ),
        (
            "responses_per_second = 10\nipv4_prefix_length = 33",
            "geodns.rate_limit.ipv4_prefix_length",
            "between 8 and 32, got 33",
        ),
        (
            "responses_per_second = 10\nipv4_prefix_length = 0",
            "geodns.rate_limit.ipv4_prefix_length",
            "between 8 and 32, got 0",
        ),
        (
            "responses_per_second = 10\nipv6_prefix_length = 129",
            "geodns.rate_limit.ipv6_prefix_length",
            "between 16 and 128, got 129",
        ),
        (
            "responses_per_second = 10\nwindow_seconds = 15",
            "geodns.rate_limit.window_seconds",
            "unknown field",
        ),
    ];
    for (body, key, reason) in cases {
        let (k, r) = error_key(with_rate_limit(body));
        assert_eq!(k, key, "{body}: {r}");
        assert!(r.contains(reason), "{body}: {r}");
    }
}

fn with_edge(old: &str, new: &str) -> Result<Config, ConfigError> {
    assert!(crate::DEMO_TOML.contains(old), "the demo has no {old:?}");
    lowered(&crate::DEMO_TOML.replacen(old, new, 1))
}

#[test]
fn edge_forwarding_and_variants_are_lowered_and_checked() {
    let config = with_edge(
        "forward_request_headers = []",
        "forward_request_headers = [\"X-Api-Key\"]\nhonor_client_no_cache = false",
    );
    // `honor_client_no_cache` is set twice in that text: refused by TOML.
    assert!(config.is_err());
    let config = with_edge(
        "forward_request_headers = []",
        "forward_request_headers = [\"X-Api-Key\"]",
    )
    .unwrap();
    assert_eq!(config.edge.forward_request_headers, ["x-api-key"]);
    assert!(config.edge.honor_client_no_cache);
    assert_eq!(config.edge.cache_max_variants, 16);
    let cases = [
        (
            "forward_request_headers = [\"bad name\"]",
            "edge.forward_request_headers[0]",
            "not a header field name",
        ),
        (
            "forward_request_headers = [\"x-ok\", \"Connection\"]",
            "edge.forward_request_headers[1]",
            "set by the edge itself",
        ),
        (
            "forward_request_headers = [\"x-forwarded-for\"]",
            "edge.forward_request_headers[0]",
            "set by the edge itself",
        ),
    ];
    for (line, key, reason) in cases {
        let (k, r) = error_key(with_edge("forward_request_headers = []", line));
        assert_eq!(k, key, "{line}: {r}");
        assert!(r.contains(reason), "{line}: {r}");
    }
    let (k, r) = error_key(with_edge(
        "cache_max_variants = 16",
        "cache_max_variants = 0",
    ));
    assert_eq!(k, "edge.cache_max_variants");
    assert!(r.starts_with("must be between 1 and 4096, got 0"), "{r}");
}

#[test]
fn the_demos_commented_examples_are_valid() {
    let examples = [
        "# [[zone.records]]",
        "# name = \"www.",
        "# type = ",
        "# value = ",
        "# ttl_seconds = 300",
        "# admin_token = ",
        "# max_answers = ",
        "# [geodns.overrides]",
        "# nets = ",
        "# countries = ",
        "# continents = ",
        "# [geodns.rate_limit]",
        "# responses_per_second = ",
        "# burst = ",
        "# slip = ",
        "# ipv4_prefix_length = ",
        "# ipv6_prefix_length = ",
        "# probe_from = ",
        "# silent_after_ms = ",
    ];
    let text: String = crate::DEMO_TOML
        .lines()
        .map(|line| match examples.iter().any(|e| line.starts_with(e)) {
            true => &line[2..],
            false => line,
        })
        .flat_map(|line| [line, "\n"])
        .collect();
    let config = lowered(&text).unwrap();
    assert_eq!(config.zone.records.len(), 1);
    assert_eq!(config.zone.records[0].ttl_seconds, 300);
    let overrides = &config.geodns.overrides;
    assert_eq!(overrides.nets.len(), 1);
    assert_eq!(overrides.countries.len(), 1);
    assert_eq!(overrides.continents.len(), 1);
    assert!(config.geodns.admin_token.is_some());
    assert_eq!(config.geodns.max_answers, 8);
    let rate_limit = config.geodns.rate_limit.unwrap();
    assert_eq!(
        (rate_limit.responses_per_second, rate_limit.burst),
        (50, 100)
    );
    assert!(config.geodns.servers[0].probe_from.is_some());
}
