//! Development TLS material: a local certificate authority and the edge
//! certificate it signs, and the tool that makes them.
//!
//! The demo serves HTTPS out of the box with a certificate for the zone's
//! names (`cdn.meridian.test`, `*.meridian.test`) and every edge address,
//! signed by a development CA whose certificate is `certs/dev/ca.pem`.
//! Clients that trust that file (`curl --cacert certs/dev/ca.pem`) verify
//! the edges like any site. The files are committed so nothing has to be
//! generated to try Meridian; `cargo run -p certs -- --out certs/dev`
//! makes new ones.
//!
//! The CA's private key is committed too, so anyone can mint certificates
//! it signs: never trust `ca.pem` outside a development machine.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use std::path::Path;

/// The committed development CA certificate (PEM).
pub const DEV_CA_PEM: &str = include_str!("../dev/ca.pem");
/// The committed development edge certificate chain: leaf, then the CA.
pub const DEV_EDGE_CHAIN_PEM: &str = include_str!("../dev/edge.pem");
/// The committed development edge private key (PEM).
pub const DEV_EDGE_KEY_PEM: &str = include_str!("../dev/edge-key.pem");

/// What the edge certificate must cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCertSpec {
    /// DNS names (wildcards as `*.example.net`); the first is also the
    /// edge certificate's common name.
    pub names: Vec<String>,
    /// IP addresses, for clients that connect by address.
    pub ip_addresses: Vec<IpAddr>,
    /// How long the edge certificate is valid.
    pub valid_days: u32,
}

/// The generated material, as PEM text.
#[derive(Debug, Clone)]
pub struct DevCerts {
    /// The CA certificate.
    pub ca_cert_pem: String,
    /// The CA private key.
    pub ca_key_pem: String,
    /// The edge certificate followed by the CA certificate.
    pub edge_chain_pem: String,
    /// The edge private key.
    pub edge_key_pem: String,
}

/// Why certificates could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// rcgen refused the parameters.
    #[error("cannot generate the certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// The spec names neither a host name nor an address, so the edge
    /// certificate would verify for nothing.
    #[error("the edge certificate needs at least one name or address")]
    NoSubjects,
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Longest validity browsers accept for a leaf certificate.
pub const DEFAULT_VALID_DAYS: u32 = 825;

/// CA certificates last ten years.
const CA_VALID_DAYS: i64 = 3650;

impl DevCertSpec {
    /// Everything a topology's edges answer for: every steered name, a
    /// wildcard for the zone, the configured host names, and every edge
    /// address.
    pub fn from_config(config: &config::Config) -> Self {
        let mut names: Vec<String> = config
            .zone
            .steered_names
            .iter()
            .map(|n| n.trim_end_matches('.').to_owned())
            .collect();
        names.push(format!("*.{}", config.zone.name.trim_end_matches('.')));
        names.extend(config.edge.hostnames.iter().cloned());
        for certificate in &config.edge.certificates {
            names.extend(certificate.hostnames.iter().cloned());
        }
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        let ip_addresses = config
            .regions
            .iter()
            .flat_map(|r| r.edge_addresses.iter().copied())
            .collect();
        DevCertSpec {
            names,
            ip_addresses,
            valid_days: DEFAULT_VALID_DAYS,
        }
    }
}

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

/// Generates a new CA and an edge certificate it signs: ECDSA P-256 keys,
/// the CA valid for ten years, the edge certificate for `spec.valid_days`
/// (0 makes one that expires as it is made, for tests). Both start a day ago
/// so a client whose clock is a little behind still accepts them.
pub fn generate(spec: &DevCertSpec) -> Result<DevCerts, CertsError> {
    let common_name = match (spec.names.first(), spec.ip_addresses.first()) {
        (Some(name), _) => name.clone(),
        (None, Some(ip)) => ip.to_string(),
        (None, None) => return Err(CertsError::NoSubjects),
    };
    let now = time::OffsetDateTime::now_utc();

    let mut ca = CertificateParams::default();
    let mut ca_name = DistinguishedName::new();
    ca_name.push(DnType::CommonName, "Meridian Development CA");
    ca_name.push(DnType::OrganizationName, "Meridian (development only)");
    ca.distinguished_name = ca_name;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now - days(1);
    ca.not_after = now + days(CA_VALID_DAYS);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;

    let mut edge = CertificateParams::default();
    let mut edge_name = DistinguishedName::new();
    // Clients match the SANs, never the CN; it is there for people.
    edge_name.push(DnType::CommonName, common_name);
    edge.distinguished_name = edge_name;
    let mut subject_alt_names = Vec::new();
    for name in &spec.names {
        subject_alt_names.push(SanType::DnsName(name.clone().try_into()?));
    }
    for ip in &spec.ip_addresses {
        subject_alt_names.push(SanType::IpAddress(*ip));
    }
    edge.subject_alt_names = subject_alt_names;
    edge.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    edge.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    edge.is_ca = IsCa::ExplicitNoCa;
    edge.not_before = now - days(1);
    edge.not_after = now + days(i64::from(spec.valid_days));
    let edge_key = KeyPair::generate()?;
    let issuer = Issuer::from_params(&ca, &ca_key);
    let edge_cert = edge.signed_by(&edge_key, &issuer)?;

    Ok(DevCerts {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem: ca_key.serialize_pem(),
        edge_chain_pem: format!("{}{}", edge_cert.pem(), ca_cert.pem()),
        edge_key_pem: edge_key.serialize_pem(),
    })
}

/// Writes `ca.pem`, `ca-key.pem`, `edge.pem` and `edge-key.pem` into `dir`
/// (created if needed), replacing files of those names. Each file is
/// replaced whole, by renaming a finished temporary file over it, so an
/// edge watching the files never reads half of one. On unix the keys are
/// readable by their owner only (0600) from the moment they exist.
pub fn write(certs: &DevCerts, dir: &Path) -> Result<(), CertsError> {
    std::fs::create_dir_all(dir).map_err(write_error(dir))?;
    for (file, contents, secret) in [
        ("ca.pem", &certs.ca_cert_pem, false),
        ("ca-key.pem", &certs.ca_key_pem, true),
        ("edge.pem", &certs.edge_chain_pem, false),
        ("edge-key.pem", &certs.edge_key_pem, true),
    ] {
        let path = dir.join(file);
        replace_file(dir, file, contents.as_bytes(), secret).map_err(write_error(&path))?;
    }
    Ok(())
}

/// Maps an I/O error on `path` to [`CertsError::Write`].
fn write_error(path: &Path) -> impl FnOnce(std::io::Error) -> CertsError {
    let path = path.display().to_string();
    move |source| CertsError::Write { path, source }
}

/// Replaces `dir/file` with `contents`: written to a temporary file in the
/// same directory, then renamed over it (atomic on one file system).
fn replace_file(dir: &Path, file: &str, contents: &[u8], secret: bool) -> std::io::Result<()> {
    let temporary = dir.join(format!(".{file}.{}.tmp", std::process::id()));
    // One left by a crashed run of a process with the same id.
    match std::fs::remove_file(&temporary) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let result = write_new(&temporary, contents, secret)
        .and_then(|()| std::fs::rename(&temporary, dir.join(file)));
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

/// Creates `path`, which must not exist, with `contents`. A `secret` file is
/// created owner-only on unix: setting the mode after creating it would
/// leave a moment in which another user could open it, and an open file
/// stays readable whatever its mode later becomes.
fn write_new(path: &Path, contents: &[u8], secret: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier as _;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
    use std::sync::Arc;
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer as _, X509Certificate};

    /// Verifies `chain_pem` for `name` as a rustls client trusting only
    /// the certificates in `ca_pem` would.
    fn verify(chain_pem: &str, ca_pem: &str, name: &str) -> Result<(), rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(ca.unwrap()).unwrap();
        }
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        let chain = ders(chain_pem);
        let server_name = ServerName::try_from(name.to_owned()).unwrap();
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], UnixTime::now())
            .map(|_| ())
    }

    /// Every certificate in a PEM text, in order.
    fn ders(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// The DNS names and IP addresses a certificate's SAN extension lists.
    fn sans(cert: &X509Certificate<'_>) -> (Vec<String>, Vec<IpAddr>) {
        let (mut names, mut ips) = (Vec::new(), Vec::new());
        let san = cert.subject_alternative_name().unwrap().expect("no SANs");
        for general_name in &san.value.general_names {
            match general_name {
                GeneralName::DNSName(name) => names.push((*name).to_owned()),
                GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).unwrap()),
                        16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).unwrap()),
                        n => panic!("an IP SAN of {n} bytes"),
                    };
                    ips.push(ip);
                }
                other => panic!("unexpected SAN {other:?}"),
            }
        }
        (names, ips)
    }

    fn common_name<'a>(cert: &'a X509Certificate<'_>) -> &'a str {
        cert.subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap()
    }

    /// Seconds from now until the certificate expires.
    fn seconds_left(cert: &X509Certificate<'_>) -> i64 {
        cert.validity().not_after.timestamp() - time::OffsetDateTime::now_utc().unix_timestamp()
    }

    fn demo_spec() -> DevCertSpec {
        DevCertSpec::from_config(&config::Config::demo())
    }

    /// Every edge address of the demo, in config order.
    fn demo_edge_addresses() -> Vec<IpAddr> {
        let addresses = ["127.0.1.1", "127.0.1.3", "127.0.2.1", "127.0.2.3"];
        addresses
            .into_iter()
            .chain(["127.0.3.1", "127.0.3.3"])
            .map(|ip| ip.parse().unwrap())
            .collect()
    }

    /// What the demo's edge certificate must cover, exactly.
    fn assert_covers_the_demo(chain_pem: &str) {
        let chain = ders(chain_pem);
        let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
        let (names, ips) = sans(&leaf);
        assert_eq!(names, ["cdn.meridian.test", "*.meridian.test"]);
        let expected = demo_edge_addresses();
        assert_eq!(ips, expected);
    }

    /// `key_pem` is the private key of the certificate `cert_der`.
    fn assert_key_matches(key_pem: &str, cert_der: &[u8]) {
        let key = KeyPair::from_pem(key_pem).unwrap();
        let (_, cert) = X509Certificate::from_der(cert_der).unwrap();
        assert_eq!(
            key.public_key_raw(),
            &cert.public_key().subject_public_key.data[..],
            "the key is not {}'s",
            common_name(&cert)
        );
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new(test: &str) -> Self {
            let dir = std::env::temp_dir().join(format!(
                "meridian-certs-{}-{test}-{}",
                std::process::id(),
                time::OffsetDateTime::now_utc().unix_timestamp_nanos()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn the_demo_spec_covers_the_zone_and_every_edge() {
        let spec = demo_spec();
        assert_eq!(spec.names, ["cdn.meridian.test", "*.meridian.test"]);
        let expected = demo_edge_addresses();
        assert_eq!(spec.ip_addresses, expected);
        assert_eq!(spec.valid_days, DEFAULT_VALID_DAYS);
    }

    #[test]
    fn a_spec_takes_every_name_and_address_of_its_topology_once() {
        let edit = |text: &str, from: &str, to: &str| {
            assert!(text.contains(from), "the demo no longer says {from}");
            text.replace(from, to)
        };
        let toml = config::DEMO_TOML;
        let toml = edit(
            toml,
            r#"steered_names = ["cdn.meridian.test."]"#,
            r#"steered_names = ["cdn.meridian.test.", "video.meridian.test."]"#,
        );
        let toml = edit(
            &toml,
            r#"hostnames = ["cdn.meridian.test"]"#,
            r#"hostnames = ["cdn.meridian.test", "static.example.net"]"#,
        );
        let toml = edit(
            &toml,
            r#"edge_addresses = ["127.0.3.1", "127.0.3.3"]"#,
            r#"edge_addresses = ["127.0.3.1", "127.0.3.3", "::1"]"#,
        );
        let config = config::Config::from_toml(&toml, config::ConfigSource::Embedded).unwrap();
        let spec = DevCertSpec::from_config(&config);
        // Steered names first (the first is the CN), without trailing dots,
        // then the zone wildcard, then host names not already listed.
        assert_eq!(
            spec.names,
            [
                "cdn.meridian.test",
                "video.meridian.test",
                "*.meridian.test",
                "static.example.net"
            ]
        );
        let mut expected = demo_edge_addresses();
        expected.push(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
        assert_eq!(spec.ip_addresses, expected);

        let certs = generate(&spec).unwrap();
        let chain = ders(&certs.edge_chain_pem);
        let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
        assert_eq!(sans(&leaf), (spec.names.clone(), spec.ip_addresses.clone()));
        verify(&certs.edge_chain_pem, &certs.ca_cert_pem, "::1").unwrap();
        verify(
            &certs.edge_chain_pem,
            &certs.ca_cert_pem,
            "static.example.net",
        )
        .unwrap();
    }

    #[test]
    fn the_generated_edge_certificate_has_every_demo_san() {
        assert_covers_the_demo(&generate(&demo_spec()).unwrap().edge_chain_pem);
    }

    #[test]
    fn generated_certificates_verify_against_their_ca_only_for_their_names() {
        let certs = generate(&demo_spec()).unwrap();
        for name in [
            "cdn.meridian.test",
            "anything.meridian.test",
            "127.0.1.1",
            "127.0.2.1",
            "127.0.3.1",
        ] {
            verify(&certs.edge_chain_pem, &certs.ca_cert_pem, name)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        for name in [
            "evil.example",
            "meridian.test",          // the apex is not under the wildcard
            "a.b.meridian.test",      // a wildcard covers one label
            "cdn.meridian.test.evil", // suffixes are not names
            "127.0.4.1",              // not an edge address
        ] {
            assert!(
                verify(&certs.edge_chain_pem, &certs.ca_cert_pem, name).is_err(),
                "verified for {name}"
            );
        }
        // Another CA does not vouch for it.
        let other = generate(&demo_spec()).unwrap();
        assert!(
            verify(
                &certs.edge_chain_pem,
                &other.ca_cert_pem,
                "cdn.meridian.test"
            )
            .is_err()
        );
    }

    #[test]
    fn the_ca_can_only_sign_and_lasts_ten_years() {
        let certs = generate(&demo_spec()).unwrap();
        let chain = ders(&certs.edge_chain_pem);
        assert_eq!(chain.len(), 2, "the chain is the leaf, then the CA");
        assert_eq!(chain[1], ders(&certs.ca_cert_pem)[0]);
        let (_, ca) = X509Certificate::from_der(&chain[1]).unwrap();
        assert_eq!(common_name(&ca), "Meridian Development CA");
        assert_eq!(ca.subject(), ca.issuer(), "self-signed");
        assert!(ca.is_ca());
        let usage = ca.key_usage().unwrap().unwrap().value;
        assert!(usage.key_cert_sign() && usage.crl_sign());
        assert!(!usage.digital_signature() && !usage.key_encipherment());
        let years = seconds_left(&ca) as f64 / (365.25 * 86_400.0);
        assert!((9.9..=10.0).contains(&years), "{years} years");
        assert_key_matches(&certs.ca_key_pem, &chain[1]);
    }

    #[test]
    fn the_edge_certificate_is_a_server_certificate_for_its_first_name() {
        let spec = DevCertSpec {
            valid_days: 90,
            ..demo_spec()
        };
        let certs = generate(&spec).unwrap();
        let chain = ders(&certs.edge_chain_pem);
        let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
        assert_eq!(common_name(&leaf), "cdn.meridian.test");
        assert_eq!(common_name(&leaf), spec.names[0]);
        assert!(!leaf.is_ca());
        let (_, ca) = X509Certificate::from_der(&chain[1]).unwrap();
        assert_eq!(leaf.issuer(), ca.subject());
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth && !eku.any);
        let usage = leaf.key_usage().unwrap().unwrap().value;
        assert!(usage.digital_signature() && !usage.key_cert_sign());
        // ECDSA P-256.
        assert_eq!(
            leaf.public_key().algorithm.algorithm,
            x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        );
        let days_left = seconds_left(&leaf) / 86_400;
        assert!((89..=90).contains(&days_left), "{days_left} days");
        assert_key_matches(&certs.edge_key_pem, &chain[0]);
    }

    #[test]
    fn each_run_makes_new_keys() {
        let (a, b) = (
            generate(&demo_spec()).unwrap(),
            generate(&demo_spec()).unwrap(),
        );
        assert_ne!(a.ca_key_pem, b.ca_key_pem);
        assert_ne!(a.edge_key_pem, b.edge_key_pem);
    }

    #[test]
    fn a_spec_with_nothing_to_certify_is_refused() {
        let empty = DevCertSpec {
            names: vec![],
            ip_addresses: vec![],
            valid_days: 30,
        };
        assert!(matches!(generate(&empty), Err(CertsError::NoSubjects)));
        // An address alone is enough, and names the certificate.
        let by_address = DevCertSpec {
            ip_addresses: vec!["127.0.2.1".parse().unwrap()],
            ..empty
        };
        let certs = generate(&by_address).unwrap();
        let chain = ders(&certs.edge_chain_pem);
        let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
        assert_eq!(common_name(&leaf), "127.0.2.1");
        verify(&certs.edge_chain_pem, &certs.ca_cert_pem, "127.0.2.1").unwrap();
    }

    #[test]
    fn a_name_that_cannot_be_a_san_is_an_error() {
        let spec = DevCertSpec {
            names: vec!["caf\u{e9}.meridian.test".into()],
            ..demo_spec()
        };
        assert!(matches!(generate(&spec), Err(CertsError::Generate(_))));
    }

    #[test]
    fn written_files_hold_the_certificates_and_the_keys_are_private() {
        let dir = TempDir::new("write");
        let out = dir.0.join("nested/dev");
        let certs = generate(&demo_spec()).unwrap();
        write(&certs, &out).unwrap();
        for (file, contents) in [
            ("ca.pem", &certs.ca_cert_pem),
            ("ca-key.pem", &certs.ca_key_pem),
            ("edge.pem", &certs.edge_chain_pem),
            ("edge-key.pem", &certs.edge_key_pem),
        ] {
            assert_eq!(
                &std::fs::read_to_string(out.join(file)).unwrap(),
                contents,
                "{file}"
            );
        }
        let mut listed: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        listed.sort();
        assert_eq!(
            listed,
            ["ca-key.pem", "ca.pem", "edge-key.pem", "edge.pem"],
            "no temporary files left behind"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |file: &str| {
                std::fs::metadata(out.join(file))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777
            };
            assert_eq!(mode("ca-key.pem"), 0o600);
            assert_eq!(mode("edge-key.pem"), 0o600);
            // Certificates are public: whatever the umask allows.
            assert_ne!(mode("ca.pem") & 0o400, 0);

            // A rerun over files an earlier, laxer tool left readable
            // replaces them and narrows the keys.
            for file in ["ca-key.pem", "edge-key.pem"] {
                std::fs::set_permissions(out.join(file), std::fs::Permissions::from_mode(0o644))
                    .unwrap();
            }
            let again = generate(&demo_spec()).unwrap();
            write(&again, &out).unwrap();
            assert_eq!(mode("ca-key.pem"), 0o600);
            assert_eq!(mode("edge-key.pem"), 0o600);
            assert_eq!(
                std::fs::read_to_string(out.join("edge-key.pem")).unwrap(),
                again.edge_key_pem
            );
        }
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_an_error_naming_it() {
        let dir = TempDir::new("unwritable");
        let file = dir.0.join("a-file");
        std::fs::write(&file, "").unwrap();
        let out = file.join("dev");
        let error = write(&generate(&demo_spec()).unwrap(), &out).unwrap_err();
        assert!(matches!(error, CertsError::Write { .. }), "{error:?}");
        assert!(
            error.to_string().contains(&out.display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn the_committed_development_certificate_covers_the_demo_for_a_while_yet() {
        assert_covers_the_demo(DEV_EDGE_CHAIN_PEM);
        for name in ["cdn.meridian.test", "127.0.1.1", "127.0.2.3", "127.0.3.1"] {
            verify(DEV_EDGE_CHAIN_PEM, DEV_CA_PEM, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        // The committed key is the committed certificate's.
        assert_key_matches(DEV_EDGE_KEY_PEM, &ders(DEV_EDGE_CHAIN_PEM)[0]);
        // CI notices a month before the committed certificates expire.
        for (file, pem) in [("edge.pem", DEV_EDGE_CHAIN_PEM), ("ca.pem", DEV_CA_PEM)] {
            for der in ders(pem) {
                let (_, cert) = X509Certificate::from_der(&der).unwrap();
                assert!(
                    seconds_left(&cert) > 30 * 86_400,
                    "certs/dev/{file} ({}) expires within 30 days: run `cargo run -p certs -- --out certs/dev`",
                    common_name(&cert)
                );
            }
        }
    }

    #[test]
    fn the_committed_ca_key_is_the_committed_cas() {
        let ca_key =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("dev/ca-key.pem"))
                .unwrap();
        assert_key_matches(&ca_key, &ders(DEV_CA_PEM)[0]);
        assert_eq!(ders(DEV_EDGE_CHAIN_PEM)[1], ders(DEV_CA_PEM)[0]);
    }
}
