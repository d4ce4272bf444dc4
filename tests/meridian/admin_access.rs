//! The admin listeners (the control API of `up`, each edge's admin
//! listener, GeoDNS's) against a web page in a browser on the same
//! machine: requests sent under a rebound name (a foreign `Host`), from
//! another origin, or as "simple" cross-site POSTs are refused, while the
//! CLI and a page of the listener's own origin keep working. Raw HTTP, so
//! every header is the test's choice. Blocks 127.170 and 127.171.

use crate::harness::{Topology, Up, bin, meridian, tcp_listening, tempdir, up};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Sends `head` (request line and headers, without the blank line) and
/// `body` to `addr`; returns the status code and the body.
fn raw(addr: SocketAddr, head: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let request = format!(
        "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let code = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (code, body)
}

/// The state of `process` (e.g. `origin ap-southeast`) in `up`'s status.
fn state_of(up: &Up, process: &str) -> String {
    let status = up.status_json().unwrap();
    let found = status["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["process"] == process)
        .unwrap_or_else(|| panic!("no {process} in {status}"));
    found["state"].as_str().unwrap().to_owned()
}

#[test]
fn control_api_refuses_rebinding_and_cross_site_requests() {
    let up = up(170);
    let control: SocketAddr = "127.170.0.1:9000".parse().unwrap();
    let origin: SocketAddr = "127.170.3.2:8000".parse().unwrap();
    let outage = "POST /regions/ap-southeast/outage?component=origin HTTP/1.1";

    // The review's attack, as a page on attacker.example rebound to the
    // control API sends it: refused on its Host.
    let (code, body) = raw(
        control,
        &format!(
            "{outage}\r\nHost: attacker.example:9000\r\nOrigin: http://attacker.example\r\nContent-Type: text/plain"
        ),
        "",
    );
    assert_eq!(code, 421, "{body}");
    assert!(
        body.contains("127.170.0.1:9000"),
        "says what it accepts: {body}"
    );
    // After rebinding, the page could read the status: refused too.
    let (code, _) = raw(
        control,
        "GET /status HTTP/1.1\r\nHost: attacker.example:9000",
        "",
    );
    assert_eq!(code, 421);
    // With the right Host, a POST any page can send without asking (a
    // form: no custom header, no JSON) is refused.
    let good_host = "Host: 127.170.0.1:9000";
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        let (code, body) = raw(
            control,
            &format!("{outage}\r\n{good_host}\r\nContent-Type: {content_type}"),
            "component=origin",
        );
        assert_eq!(code, 403, "{content_type}: {body}");
        assert!(body.contains("X-Meridian-Control"), "{body}");
    }
    let (code, _) = raw(control, &format!("{outage}\r\n{good_host}"), "");
    assert_eq!(code, 403);
    // The header, but sent from another origin (it would need a preflight
    // the API never grants; a non-browser client can send it but is then
    // on this machine anyway), or cross-site by Fetch Metadata.
    for from in [
        "Origin: http://attacker.example",
        "Origin: http://127.170.0.1:8080",
        "Origin: null",
        "Sec-Fetch-Site: cross-site",
    ] {
        let (code, body) = raw(
            control,
            &format!("{outage}\r\n{good_host}\r\nX-Meridian-Control: 1\r\n{from}"),
            "",
        );
        assert_eq!(code, 403, "{from}: {body}");
    }
    // Nothing of that reached the origin.
    assert!(tcp_listening(origin), "the origin was killed");
    assert_eq!(state_of(&up, "origin ap-southeast"), "running");

    // A page served by the control API itself, calling it with fetch:
    // same origin, with the header. It passes.
    let (code, body) = raw(
        control,
        &format!(
            "{outage}\r\n{good_host}\r\nOrigin: http://127.170.0.1:9000\r\nSec-Fetch-Site: same-origin\r\nX-Meridian-Control: 1"
        ),
        "",
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("origin ap-southeast"), "{body}");
    assert!(!tcp_listening(origin), "the outage did not happen");
    // So does JSON, and `localhost` as the Host.
    let (code, body) = raw(
        control,
        "POST /regions/ap-southeast/restore HTTP/1.1\r\nHost: localhost:9000\r\nContent-Type: application/json",
        "{}",
    );
    assert_eq!(code, 200, "{body}");
    assert!(tcp_listening(origin), "the restore did not happen");

    // The CLI keeps working: outage, status, restore.
    let outage = up
        .command(&["outage", "ap-southeast", "--component", "origin"])
        .unwrap();
    assert!(
        outage.status.success(),
        "{}",
        String::from_utf8_lossy(&outage.stderr)
    );
    assert_eq!(state_of(&up, "origin ap-southeast"), "killed");
    let restore = up.command(&["restore", "ap-southeast"]).unwrap();
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    assert_eq!(state_of(&up, "origin ap-southeast"), "running");
    let table = up.command(&["status"]).unwrap();
    assert!(table.status.success());
}

#[test]
fn edge_and_geodns_admin_listeners_refuse_rebinding_and_cross_site_requests() {
    const DNS_TOKEN: &str = "geodns-admin-token-for-tests";
    const PURGE_TOKEN: &str = "meridian-demo-purge-token";
    let b = 171;
    let topology = Topology::demo(b).geodns_admin_token(DNS_TOKEN);
    let up = Up::start(bin(), &topology).unwrap();

    // An edge's admin listener.
    let edge_admin: SocketAddr = format!("127.{b}.2.1:9080").parse().unwrap();
    let host = format!("Host: 127.{b}.2.1:9080");
    for path in ["/status", "/metrics", "/healthz"] {
        let (code, _) = raw(
            edge_admin,
            &format!("GET {path} HTTP/1.1\r\nHost: attacker.example:9080"),
            "",
        );
        assert_eq!(code, 421, "{path}");
        let (code, _) = raw(edge_admin, &format!("GET {path} HTTP/1.1\r\n{host}"), "");
        assert_eq!(code, 200, "{path}");
    }
    let purge = "POST /purge HTTP/1.1";
    let bearer = format!("Authorization: Bearer {PURGE_TOKEN}");
    let all = r#"{"all":true}"#;
    // With the token (say a page guessed or learned it) but as a simple
    // request: a form's content type, no header.
    let (code, body) = raw(
        edge_admin,
        &format!("{purge}\r\n{host}\r\n{bearer}\r\nContent-Type: text/plain"),
        all,
    );
    assert_eq!(code, 403, "{body}");
    // From another origin, or under another name.
    let (code, _) = raw(
        edge_admin,
        &format!(
            "{purge}\r\n{host}\r\n{bearer}\r\nContent-Type: application/json\r\nOrigin: http://attacker.example"
        ),
        all,
    );
    assert_eq!(code, 403);
    let (code, _) = raw(
        edge_admin,
        &format!(
            "{purge}\r\nHost: attacker.example:9080\r\n{bearer}\r\nContent-Type: application/json"
        ),
        all,
    );
    assert_eq!(code, 421);
    // The real thing, as `meridian purge` sends it.
    let (code, body) = raw(
        edge_admin,
        &format!("{purge}\r\n{host}\r\n{bearer}\r\nContent-Type: application/json"),
        all,
    );
    assert_eq!(code, 200, "{body}");
    let purged = up.command(&["purge", "--all"]).unwrap();
    assert!(
        purged.status.success(),
        "{}",
        String::from_utf8_lossy(&purged.stderr)
    );

    // Each GeoDNS server's admin listener (ns1's, and ns2's where ns1
    // polls ns2's view), with geodns.admin_token: every route needs the
    // token, and the Host rule holds even with it.
    for server in 1..=2 {
        let dns_admin: SocketAddr = format!("127.{b}.0.{server}:9153").parse().unwrap();
        let host = format!("Host: 127.{b}.0.{server}:9153");
        let bearer = format!("Authorization: Bearer {DNS_TOKEN}");
        for path in ["/health", "/metrics", "/healthz"] {
            let (code, _) = raw(dns_admin, &format!("GET {path} HTTP/1.1\r\n{host}"), "");
            assert_eq!(code, 401, "{dns_admin}{path} without the token");
            let (code, _) = raw(
                dns_admin,
                &format!("GET {path} HTTP/1.1\r\n{host}\r\nAuthorization: Bearer {PURGE_TOKEN}"),
                "",
            );
            assert_eq!(code, 401, "{dns_admin}{path} with another token");
            let (code, body) = raw(
                dns_admin,
                &format!("GET {path} HTTP/1.1\r\n{host}\r\n{bearer}"),
                "",
            );
            assert_eq!(code, 200, "{dns_admin}{path}: {body}");
            let (code, _) = raw(
                dns_admin,
                &format!("GET {path} HTTP/1.1\r\nHost: attacker.example:9153\r\n{bearer}"),
                "",
            );
            assert_eq!(code, 421, "{dns_admin}{path} under another name");
            let (code, _) = raw(
                dns_admin,
                &format!(
                    "GET {path} HTTP/1.1\r\n{host}\r\n{bearer}\r\nOrigin: http://attacker.example"
                ),
                "",
            );
            assert_eq!(code, 403, "{dns_admin}{path} from another origin");
        }
    }
    // The CLI reads GeoDNS's view with the token from the config.
    let status = up.status_json().unwrap();
    assert_eq!(status["dns_view_available"], true, "{status}");
    assert_eq!(status["regions"][1]["dns_view_up"], true, "{status}");
    let route = up.command(&["route", "81.2.69.142"]).unwrap();
    let text = String::from_utf8_lossy(&route.stdout);
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
    let output = meridian()
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .contains("meridian.toml: geodns.admin_listen: 0.0.0.0:9153 is not a loopback address")
            && stderr.contains("geodns.admin_token"),
        "{stderr}"
    );
    let path = off_loopback
        .geodns_admin_token("geodns-admin-token-for-tests")
        .write(dir.path())
        .unwrap();
    let output = meridian()
        .args(["config", "check"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
