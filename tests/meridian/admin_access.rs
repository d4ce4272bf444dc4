//! The admin listeners (the control API of `up`, each edge's admin
//! listener, GeoDNS's) against a web page in a browser on the same
//! machine: requests sent under a rebound name (a foreign `Host`), from
//! another origin, or as "simple" cross-site POSTs are refused, while the
//! CLI and a page of the listener's own origin keep working. Raw HTTP, so
//! every header is the test's choice. Blocks 127.170 and 127.171.

use crate::harness::{RunToEnd, Topology, Up, bin, meridian, raw, tcp_listening, tempdir, up};
use std::net::SocketAddr;
use std::time::Duration;

/// One request and the status it must get: method, path, Host, further
/// fields, body, status.
type Case<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], &'a str, u16);

/// A listener, asked in raw HTTP.
struct Listener {
    addr: SocketAddr,
}

impl Listener {
    /// `method path` sent with `Host: host`, the `fields` and `body`: the
    /// status code and the body.
    fn ask(
        &self,
        method: &str,
        path: &str,
        host: &str,
        fields: &[&str],
        body: &str,
    ) -> (u16, String) {
        let request = raw::request(method, path, host, fields, body);
        let response = raw::exchange(self.addr, request.as_bytes(), Duration::from_secs(60));
        let response = response.unwrap();
        assert_ne!(response.status(), 0, "not an HTTP answer: {response:?}");
        (response.status(), response.text())
    }

    /// Asserts that each `(method, path, host, fields, body, status)` is
    /// answered with its status.
    fn expect(&self, cases: &[Case]) {
        for (method, path, host, fields, body, status) in cases {
            let (code, answer) = self.ask(method, path, host, fields, body);
            let asked = format!("{method} {path}, Host: {host}, {fields:?}");
            assert_eq!(code, *status, "{asked}: {answer}");
        }
    }
}

/// The state of `process` (e.g. `origin ap-southeast`) in `up`'s status.
fn state_of(up: &Up, process: &str) -> String {
    let found = up.process_status(process).unwrap();
    found["state"].as_str().unwrap().to_owned()
}

#[test]
fn control_api_refuses_rebinding_and_cross_site_requests() {
    let up = up(170);
    let control = Listener {
        addr: "127.170.0.1:9000".parse().unwrap(),
    };
    let origin: SocketAddr = "127.170.3.2:8000".parse().unwrap();
    let outage = "/regions/ap-southeast/outage?component=origin";
    let (host, attacker) = ("127.170.0.1:9000", "attacker.example:9000");

    // The review's attack, as a page on attacker.example rebound to the
    // control API sends it: refused on its Host, saying what it accepts.
    let page = [
        "Origin: http://attacker.example",
        "Content-Type: text/plain",
    ];
    let (code, body) = control.ask("POST", outage, attacker, &page, "");
    assert_eq!(code, 421, "{body}");
    assert!(body.contains(host), "says what it accepts: {body}");
    // With the right Host, a POST any page can send without asking (a
    // form: no custom header, no JSON) is refused, and says what it wants.
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let form = format!("Content-Type: {content_type}");
        let (code, body) = control.ask("POST", outage, host, &[&form], "component=origin");
        assert_eq!(code, 403, "{content_type}: {body}");
        assert!(body.contains("X-Meridian-Control"), "{body}");
    }
    let header = "X-Meridian-Control: 1";
    control.expect(&[
        // After rebinding, the page could read the status: refused too.
        ("GET", "/status", attacker, &[], "", 421),
        ("POST", outage, host, &[], "", 403),
        // The header, but sent from another origin (it would need a
        // preflight the API never grants; a non-browser client can send
        // it but is then on this machine anyway), or cross-site by Fetch
        // Metadata.
        (
            "POST",
            outage,
            host,
            &[header, "Origin: http://attacker.example"],
            "",
            403,
        ),
        (
            "POST",
            outage,
            host,
            &[header, "Origin: http://127.170.0.1:8080"],
            "",
            403,
        ),
        ("POST", outage, host, &[header, "Origin: null"], "", 403),
        (
            "POST",
            outage,
            host,
            &[header, "Sec-Fetch-Site: cross-site"],
            "",
            403,
        ),
    ]);
    // Nothing of that reached the origin.
    assert!(tcp_listening(origin), "the origin was killed");
    assert_eq!(state_of(&up, "origin ap-southeast"), "running");

    // A page served by the control API itself, calling it with fetch:
    // same origin, with the header. It passes.
    let same_origin = [
        "Origin: http://127.170.0.1:9000",
        "Sec-Fetch-Site: same-origin",
        header,
    ];
    let (code, body) = control.ask("POST", outage, host, &same_origin, "");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("origin ap-southeast"), "{body}");
    assert!(!tcp_listening(origin), "the outage did not happen");
    // So does JSON, and `localhost` as the Host.
    let restore = "/regions/ap-southeast/restore";
    let json = ["Content-Type: application/json"];
    let (code, body) = control.ask("POST", restore, "localhost:9000", &json, "{}");
    assert_eq!(code, 200, "{body}");
    assert!(tcp_listening(origin), "the restore did not happen");

    // The CLI keeps working: outage, status, restore.
    let cli = |args: &[&str]| up.command(args).unwrap().succeeds();
    cli(&["outage", "ap-southeast", "--component", "origin"]);
    assert_eq!(state_of(&up, "origin ap-southeast"), "killed");
    cli(&["restore", "ap-southeast"]);
    assert_eq!(state_of(&up, "origin ap-southeast"), "running");
    cli(&["status"]);
}

#[test]
fn edge_and_geodns_admin_listeners_refuse_rebinding_and_cross_site_requests() {
    const DNS_TOKEN: &str = "geodns-admin-token-for-tests";
    const PURGE_TOKEN: &str = "meridian-demo-purge-token";
    let b = 171;
    let topology = Topology::demo(b).geodns_admin_token(DNS_TOKEN);
    let up = Up::start(bin(), &topology).unwrap();

    // An edge's admin listener.
    let edge_admin = Listener {
        addr: topology.edge_admin(2),
    };
    let host = &edge_admin.addr.to_string();
    let attacker = "attacker.example:9080";
    for path in ["/status", "/metrics", "/healthz"] {
        edge_admin.expect(&[
            ("GET", path, attacker, &[], "", 421),
            ("GET", path, host, &[], "", 200),
        ]);
    }
    let bearer = &format!("Authorization: Bearer {PURGE_TOKEN}");
    let json = "Content-Type: application/json";
    let all = r#"{"all":true}"#;
    edge_admin.expect(&[
        // With the token (say a page guessed or learned it) but as a
        // simple request: a form's content type, no header.
        (
            "POST",
            "/purge",
            host,
            &[bearer, "Content-Type: text/plain"],
            all,
            403,
        ),
        // From another origin, or under another name.
        (
            "POST",
            "/purge",
            host,
            &[bearer, json, "Origin: http://attacker.example"],
            all,
            403,
        ),
        ("POST", "/purge", attacker, &[bearer, json], all, 421),
        // The real thing, as `meridian purge` sends it.
        ("POST", "/purge", host, &[bearer, json], all, 200),
    ]);
    up.command(&["purge", "--all"]).unwrap().succeeds();

    // Each GeoDNS server's admin listener (ns1's, and ns2's where ns1
    // polls ns2's view), with geodns.admin_token: every route needs the
    // token, and the Host rule holds even with it.
    for server in 0..topology.geodns_servers() {
        let dns_admin = Listener {
            addr: topology.geodns_admin_of(server),
        };
        let host = &dns_admin.addr.to_string();
        let bearer = &format!("Authorization: Bearer {DNS_TOKEN}");
        let other_token = &format!("Authorization: Bearer {PURGE_TOKEN}");
        for path in [
            "/health",
            "/counters",
            "/metrics",
            "/healthz",
            "/",
            "/snapshot",
        ] {
            dns_admin.expect(&[
                // Without the token, with another token.
                ("GET", path, host, &[], "", 401),
                ("GET", path, host, &[other_token], "", 401),
                ("GET", path, host, &[bearer], "", 200),
                // Under another name, from another origin.
                ("GET", path, "attacker.example:9153", &[bearer], "", 421),
                (
                    "GET",
                    path,
                    host,
                    &[bearer, "Origin: http://attacker.example"],
                    "",
                    403,
                ),
            ]);
        }
    }
    // The CLI reads GeoDNS's view with the token from the config.
    let status = up.status_json().unwrap();
    assert_eq!(status["dns_view_available"], true, "{status}");
    assert_eq!(status["regions"][1]["dns_view_up"], true, "{status}");
    let text = up.command(&["route", "81.2.69.142"]).unwrap().stdout;
    assert!(
        text.contains(&format!("health as GeoDNS ns1 on 127.{b}.0.1:9153 sees it")),
        "{text}"
    );
    assert!(text.contains("eu-west") && text.contains(" up"), "{text}");
}

#[test]
fn a_geodns_admin_listener_off_loopback_needs_a_token() {
    let dir = tempdir();
    let off_loopback = Topology::demo(172)
        .single_geodns()
        .geodns_admin_listen("0.0.0.0:9153".parse().unwrap());
    let path = off_loopback
        .write_unchecked(dir.path(), "meridian.toml")
        .unwrap();
    let check = || meridian().args(["config", "check"]).arg(&path).ran();
    let stderr = check().fails();
    assert!(
        stderr
            .contains("meridian.toml: geodns.admin_listen: 0.0.0.0:9153 is not a loopback address")
            && stderr.contains("geodns.admin_token"),
        "{stderr}"
    );
    off_loopback
        .geodns_admin_token("geodns-admin-token-for-tests")
        .write(dir.path())
        .unwrap();
    check().succeeds();
}
