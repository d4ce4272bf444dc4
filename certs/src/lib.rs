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
    /// DNS names (wildcards as `*.example.net`).
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

/// Generates a new CA and an edge certificate it signs.
pub fn generate(spec: &DevCertSpec) -> Result<DevCerts, CertsError> {
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
    edge_name.push(
        DnType::CommonName,
        spec.names.first().map_or("meridian edge", String::as_str),
    );
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
/// (created if needed); the keys are readable by their owner only.
pub fn write(certs: &DevCerts, dir: &Path) -> Result<(), CertsError> {
    let failed = |path: &Path| {
        let path = path.display().to_string();
        move |source| CertsError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(failed(dir))?;
    for (file, contents, secret) in [
        ("ca.pem", &certs.ca_cert_pem, false),
        ("ca-key.pem", &certs.ca_key_pem, true),
        ("edge.pem", &certs.edge_chain_pem, false),
        ("edge-key.pem", &certs.edge_key_pem, true),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, contents).map_err(failed(&path))?;
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(failed(&path))?;
        }
        #[cfg(not(unix))]
        let _ = secret;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
    use std::sync::Arc;

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
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let server_name = ServerName::try_from(name.to_owned()).unwrap();
        use rustls::client::danger::ServerCertVerifier;
        verifier
            .verify_server_cert(&chain[0], &chain[1..], &server_name, &[], UnixTime::now())
            .map(|_| ())
    }

    fn demo_spec() -> DevCertSpec {
        DevCertSpec::from_config(&config::Config::demo())
    }

    #[test]
    fn the_demo_spec_covers_the_zone_and_every_edge() {
        let spec = demo_spec();
        assert!(spec.names.contains(&"cdn.meridian.test".to_owned()));
        assert!(spec.names.contains(&"*.meridian.test".to_owned()));
        for ip in ["127.0.1.1", "127.0.2.1", "127.0.3.1"] {
            assert!(spec.ip_addresses.contains(&ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn generated_certificates_verify_against_their_ca_only_for_their_names() {
        let certs = generate(&demo_spec()).unwrap();
        verify(
            &certs.edge_chain_pem,
            &certs.ca_cert_pem,
            "cdn.meridian.test",
        )
        .unwrap();
        verify(
            &certs.edge_chain_pem,
            &certs.ca_cert_pem,
            "anything.meridian.test",
        )
        .unwrap();
        verify(&certs.edge_chain_pem, &certs.ca_cert_pem, "127.0.2.1").unwrap();
        assert!(verify(&certs.edge_chain_pem, &certs.ca_cert_pem, "evil.example").is_err());
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
    fn written_keys_are_private() {
        let dir = std::env::temp_dir().join(format!("meridian-certs-{}", std::process::id()));
        write(&generate(&demo_spec()).unwrap(), &dir).unwrap();
        for file in ["ca.pem", "ca-key.pem", "edge.pem", "edge-key.pem"] {
            assert!(dir.join(file).exists(), "{file}");
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("edge-key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_committed_development_certificate_covers_the_demo_for_a_while_yet() {
        verify(DEV_EDGE_CHAIN_PEM, DEV_CA_PEM, "cdn.meridian.test").unwrap();
        verify(DEV_EDGE_CHAIN_PEM, DEV_CA_PEM, "127.0.3.1").unwrap();
        // CI notices a month before the committed certificate expires.
        let leaf = CertificateDer::pem_slice_iter(DEV_EDGE_CHAIN_PEM.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf.as_ref()).unwrap();
        let not_after = parsed.validity().not_after.timestamp();
        let in_30_days = time::OffsetDateTime::now_utc().unix_timestamp() + 30 * 86400;
        assert!(
            not_after > in_30_days,
            "certs/dev/edge.pem expires within 30 days: run `cargo run -p certs -- --out certs/dev`"
        );
    }
}
