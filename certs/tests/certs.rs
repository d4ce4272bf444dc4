//! `meridian-certs` as users run it: the real binary, in a scratch
//! directory, with and without a config.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// A fresh scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("meridian-certs-cli-{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `meridian-certs ARGS` in `cwd`.
fn meridian_certs(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meridian-certs"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The DNS and IP SANs of the first certificate in `edge.pem` under `dir`.
fn leaf_sans(dir: &Path) -> (Vec<String>, Vec<IpAddr>) {
    let pem = std::fs::read(dir.join("edge.pem")).unwrap();
    let (_, block) = x509_parser::pem::parse_x509_pem(&pem).unwrap();
    let (_, leaf) = X509Certificate::from_der(&block.contents).unwrap();
    let san = leaf.subject_alternative_name().unwrap().unwrap();
    let (mut names, mut ips) = (Vec::new(), Vec::new());
    for general_name in &san.value.general_names {
        match general_name {
            GeneralName::DNSName(name) => names.push((*name).to_owned()),
            GeneralName::IPAddress(bytes) if bytes.len() == 4 => {
                ips.push(IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap()));
            }
            GeneralName::IPAddress(bytes) => {
                ips.push(IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap()));
            }
            other => panic!("unexpected SAN {other:?}"),
        }
    }
    (names, ips)
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|ip| ip.parse().unwrap()).collect()
}

#[test]
fn with_no_arguments_it_writes_the_demo_certificates_to_certs_dev() {
    let scratch = Scratch::new("default");
    let output = meridian_certs(&scratch.0, &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let out = scratch.0.join("certs/dev");
    for file in ["ca.pem", "ca-key.pem", "edge.pem", "edge-key.pem"] {
        assert!(out.join(file).is_file(), "{file} missing");
        assert!(
            stdout(&output).contains(&format!("wrote certs/dev/{file}")),
            "{}",
            stdout(&output)
        );
    }
    assert!(
        stdout(&output).contains("DNS names: cdn.meridian.test, *.meridian.test"),
        "{}",
        stdout(&output)
    );
    assert!(
        stdout(&output).contains(
            "IP addresses: 127.0.1.1, 127.0.1.3, 127.0.2.1, 127.0.2.3, 127.0.3.1, 127.0.3.3"
        ),
        "{}",
        stdout(&output)
    );
    assert_eq!(
        leaf_sans(&out),
        (
            vec!["cdn.meridian.test".to_owned(), "*.meridian.test".to_owned()],
            ips(&[
                "127.0.1.1",
                "127.0.1.3",
                "127.0.2.1",
                "127.0.2.3",
                "127.0.3.1",
                "127.0.3.3"
            ])
        )
    );
}

#[test]
fn a_config_file_gives_a_certificate_for_its_topology() {
    let scratch = Scratch::new("config");
    let edit = |text: &str, from: &str, to: &str| {
        assert!(text.contains(from), "the demo no longer says {from}");
        text.replace(from, to)
    };
    let toml = edit(
        config::DEMO_TOML,
        r#"steered_names = ["cdn.meridian.test."]"#,
        r#"steered_names = ["cdn.meridian.test.", "img.meridian.test."]"#,
    );
    let toml = edit(
        &toml,
        r#"edge_addresses = ["127.0.2.1", "127.0.2.3"]"#,
        r#"edge_addresses = ["127.0.2.1", "127.0.2.3", "127.0.2.11"]"#,
    );
    std::fs::write(scratch.0.join("mine.toml"), toml).unwrap();
    let output = meridian_certs(&scratch.0, &["--config", "mine.toml", "--out", "tls"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let (names, addresses) = leaf_sans(&scratch.0.join("tls"));
    assert_eq!(
        names,
        ["cdn.meridian.test", "img.meridian.test", "*.meridian.test"]
    );
    assert_eq!(
        addresses,
        ips(&[
            "127.0.1.1",
            "127.0.1.3",
            "127.0.2.1",
            "127.0.2.3",
            "127.0.2.11",
            "127.0.3.1",
            "127.0.3.3"
        ])
    );
}

#[test]
fn a_bad_config_is_an_error_and_writes_nothing() {
    let scratch = Scratch::new("bad");
    std::fs::write(scratch.0.join("bad.toml"), "[zone]\nnam = \"x.\"\n").unwrap();
    for config in ["missing.toml", "bad.toml"] {
        let output = meridian_certs(&scratch.0, &["--config", config, "--out", "out"]);
        assert!(!output.status.success(), "{config} was accepted");
        assert!(
            stderr(&output).starts_with("error: ") && stderr(&output).contains(config),
            "{config}: {}",
            stderr(&output)
        );
        assert!(!scratch.0.join("out").exists(), "{config}: wrote anyway");
    }
}
