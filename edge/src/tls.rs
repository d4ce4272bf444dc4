//! HTTPS at the edge: certificates chosen by SNI, reloaded without a restart.
//!
//! Pingora's rustls listener accepts a certificate resolver; this module is
//! that resolver. It holds every configured certificate (chain and key) by
//! host name, answers each handshake with the certificate for the name the
//! client asked for (`SNI`; wildcards match one label; the first
//! certificate answers clients that send no name), and can swap the whole
//! set atomically: in-flight handshakes finish with the old set, new ones
//! get the new one, and no connection is dropped.
//!
//! Loading checks what a browser would: the files parse, the key matches the
//! certificate, and the certificate is valid now. A bad set is refused with
//! the path and the reason — at start that stops the edge before it binds;
//! on reload the old set stays.

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

/// One certificate and the host names it serves: the config's, so the
/// edge reads what the file said, without a second type for it.
pub use config::{Certificate, CertificateSource};

/// Why a certificate set cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The chain or key is not usable PEM.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error("{key} is not the private key of {chain}")]
    Mismatch {
        /// The chain file.
        chain: String,
        /// The key file.
        key: String,
    },
    /// The certificate is outside its validity period.
    #[error("{path}: the certificate {reason}")]
    Validity {
        /// The chain file.
        path: String,
        /// Expired or not yet valid, with the date.
        reason: String,
    },
    /// No certificates were configured.
    #[error("HTTPS needs at least one certificate")]
    Empty,
}

/// A loaded, checked set of certificates, indexed by host name.
#[derive(Debug)]
pub struct Certificates {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `*.example.net` stored as `example.net`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// For clients that send no SNI (or an unknown name).
    default: Arc<CertifiedKey>,
    /// The earliest expiry among them, for logs.
    earliest_expiry: SystemTime,
}

/// What to call a certificate's chain and key in errors.
fn describe(source: &CertificateSource) -> (String, String) {
    match source {
        CertificateSource::Files { chain, key } => {
            (chain.display().to_string(), key.display().to_string())
        }
        CertificateSource::Development => (
            "the development certificate (chain)".to_owned(),
            "the development certificate (key)".to_owned(),
        ),
    }
}

/// A certificate's PEM chain and key: from its files, or compiled in.
fn read_pem(source: &CertificateSource) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    match source {
        CertificateSource::Files { chain, key } => Ok((read(chain)?, read(key)?)),
        CertificateSource::Development => Ok((
            certs::DEV_EDGE_CHAIN_PEM.as_bytes().to_vec(),
            certs::DEV_EDGE_KEY_PEM.as_bytes().to_vec(),
        )),
    }
}

/// Checks the CA bundle `https://` origins are verified against: PEM with
/// at least one certificate, nothing else, each usable as a trust anchor.
/// Pingora loads the same file when the edge starts and panics on what it
/// cannot use, so the edge checks it first and names the problem.
pub fn check_ca_bundle(path: &Path) -> Result<usize, TlsError> {
    let pem = read(path)?;
    let invalid = |reason: String| TlsError::Invalid {
        path: path.display().to_string(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    for section in <(SectionKind, Vec<u8>) as PemObject>::pem_slice_iter(&pem) {
        let (kind, der) = section.map_err(|e| invalid(format!("not PEM: {e}")))?;
        if kind != SectionKind::Certificate {
            return Err(invalid(format!(
                "holds a {kind:?}; a CA bundle holds only certificates"
            )));
        }
        roots
            .add(CertificateDer::from(der))
            .map_err(|e| invalid(format!("a certificate cannot be a trust anchor: {e}")))?;
    }
    if roots.is_empty() {
        return Err(invalid("contains no certificate".to_owned()));
    }
    Ok(roots.len())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Parses, matches and date-checks one certificate at time `now`.
fn load_one(
    files: &Certificate,
    now: SystemTime,
) -> Result<(Arc<CertifiedKey>, SystemTime), TlsError> {
    let (chain_name, key_name) = describe(&files.source);
    let (chain_pem, key_pem) = read_pem(&files.source)?;
    let invalid = |path: &str, reason: String| TlsError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| invalid(&chain_name, format!("not a PEM certificate chain: {e}")))?;
    let Some(leaf) = chain.first() else {
        return Err(invalid(&chain_name, "contains no certificate".to_owned()));
    };
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| invalid(&key_name, format!("not a PEM private key: {e}")))?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| invalid(&key_name, format!("unsupported private key: {e}")))?;
    let not_after = check_validity(leaf, &chain_name, now)?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|_| TlsError::Mismatch {
        chain: chain_name.clone(),
        key: key_name.clone(),
    })?;
    Ok((Arc::new(certified), not_after))
}

/// The leaf's notAfter, if it is valid at `now`.
fn check_validity(
    leaf: &CertificateDer<'_>,
    path: &str,
    now: SystemTime,
) -> Result<SystemTime, TlsError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|e| TlsError::Invalid {
            path: path.to_owned(),
            reason: format!("the certificate does not parse: {e}"),
        })?;
    let validity = cert.validity();
    let at = |seconds: i64| {
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
    };
    let not_before = at(validity.not_before.timestamp());
    let not_after = at(validity.not_after.timestamp());
    if now < not_before {
        return Err(TlsError::Validity {
            path: path.to_owned(),
            reason: format!(
                "is not valid before {}",
                httpdate::fmt_http_date(not_before)
            ),
        });
    }
    if now > not_after {
        return Err(TlsError::Validity {
            path: path.to_owned(),
            reason: format!("expired on {}", httpdate::fmt_http_date(not_after)),
        });
    }
    Ok(not_after)
}

impl Certificates {
    /// Loads and checks every certificate; the first one is the default.
    pub fn load(files: &[Certificate]) -> Result<Self, TlsError> {
        Self::load_at(files, SystemTime::now())
    }

    fn load_at(files: &[Certificate], now: SystemTime) -> Result<Self, TlsError> {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        let mut default = None;
        let mut earliest_expiry = None;
        for entry in files {
            let (key, not_after) = load_one(entry, now)?;
            earliest_expiry =
                Some(earliest_expiry.map_or(not_after, |e: SystemTime| e.min(not_after)));
            for name in &entry.hostnames {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard
                        .entry(parent.to_owned())
                        .or_insert_with(|| key.clone()),
                    None => exact.entry(name).or_insert_with(|| key.clone()),
                };
            }
            default.get_or_insert(key);
        }
        let (Some(default), Some(earliest_expiry)) = (default, earliest_expiry) else {
            return Err(TlsError::Empty);
        };
        Ok(Certificates {
            exact,
            wildcard,
            default,
            earliest_expiry,
        })
    }

    /// The certificate for a client that asked for `server_name`.
    pub fn for_name(&self, server_name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = server_name.map(|n| n.trim_end_matches('.').to_ascii_lowercase()) else {
            return self.default.clone();
        };
        if let Some(key) = self.exact.get(&name) {
            return key.clone();
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.wildcard.get(parent))
            .unwrap_or(&self.default)
            .clone()
    }

    /// When the first of them expires.
    pub fn earliest_expiry(&self) -> SystemTime {
        self.earliest_expiry
    }
}

/// The resolver Pingora's TLS listener asks on every handshake.
#[derive(Debug)]
pub struct CertResolver {
    files: Vec<Certificate>,
    current: RwLock<Arc<Certificates>>,
}

impl CertResolver {
    /// Loads `files`; fails with the path and the reason if any is unusable.
    pub fn new(files: Vec<Certificate>) -> Result<Self, TlsError> {
        let certificates = Certificates::load(&files)?;
        Ok(CertResolver {
            files,
            current: RwLock::new(Arc::new(certificates)),
        })
    }

    /// Loads the certificates again from their sources; on success new
    /// handshakes use them, on failure the current ones stay.
    pub fn reload(&self) -> Result<SystemTime, TlsError> {
        let fresh = Certificates::load(&self.files)?;
        let expiry = fresh.earliest_expiry();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(fresh);
        Ok(expiry)
    }

    /// The certificates in use.
    pub fn current(&self) -> Arc<Certificates> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Modification times of every certificate file, to notice changes.
    pub fn file_stamps(&self) -> Vec<Option<SystemTime>> {
        self.files
            .iter()
            .flat_map(|f| match &f.source {
                CertificateSource::Files { chain, key } => vec![chain.clone(), key.clone()],
                CertificateSource::Development => Vec::new(),
            })
            .map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
            .collect()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().for_name(client_hello.server_name()))
    }
}

/// Reloads the certificates on SIGHUP and whenever their files change,
/// until `shutdown` flips.
pub async fn watch(resolver: Arc<CertResolver>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => Some(signal),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; certificates reload only when their files change");
            None
        }
    };
    let mut stamps = resolver.file_stamps();
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    loop {
        let reason = tokio::select! {
            _ = shutdown.changed() => return,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            } => "SIGHUP",
            _ = poll.tick() => {
                let now = resolver.file_stamps();
                if now == stamps {
                    continue;
                }
                stamps = now;
                "the certificate files changed"
            }
        };
        match resolver.reload() {
            Ok(expiry) => tracing::info!(
                reason,
                expires = %httpdate::fmt_http_date(expiry),
                "certificates reloaded"
            ),
            Err(error) => {
                tracing::error!(reason, %error, "certificates not reloaded; the current ones stay")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair};

    /// A self-signed certificate for `names`, valid `days` from now (or
    /// already expired when negative), as (chain PEM, key PEM).
    fn self_signed(names: &[&str], days: i64) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let now = time::OffsetDateTime::now_utc();
        if days >= 0 {
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(days);
        } else {
            params.not_before = now + time::Duration::days(days * 2);
            params.not_after = now + time::Duration::days(days);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A certificate for `names` from `chain` and `key`, written to files
    /// of their own (removed when the test process's temp dir is cleaned).
    fn in_memory(names: &[&str], chain: String, key: String) -> Certificate {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("meridian-tls-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (chain_path, key_path) = (dir.join("chain.pem"), dir.join("key.pem"));
        std::fs::write(&chain_path, chain).unwrap();
        std::fs::write(&key_path, key).unwrap();
        Certificate {
            hostnames: names.iter().map(|n| n.to_string()).collect(),
            source: CertificateSource::Files {
                chain: chain_path,
                key: key_path,
            },
        }
    }

    fn leaf_of(key: &CertifiedKey) -> Vec<u8> {
        key.cert[0].as_ref().to_vec()
    }

    #[test]
    fn certificates_are_chosen_by_name_with_wildcards_and_a_default() {
        let (a_chain, a_key) = self_signed(&["cdn.example.net"], 30);
        let (b_chain, b_key) = self_signed(&["*.other.example"], 30);
        let certificates = Certificates::load(&[
            in_memory(&["cdn.example.net"], a_chain, a_key),
            in_memory(&["*.other.example"], b_chain, b_key),
        ])
        .unwrap();
        let a = leaf_of(&certificates.for_name(Some("cdn.example.net")));
        let b = leaf_of(&certificates.for_name(Some("www.other.example")));
        assert_ne!(a, b);
        assert_eq!(leaf_of(&certificates.for_name(Some("CDN.Example.Net."))), a);
        assert_eq!(
            leaf_of(&certificates.for_name(None)),
            a,
            "no SNI: the first one"
        );
        assert_eq!(leaf_of(&certificates.for_name(Some("unknown.test"))), a);
        // A wildcard covers one label only.
        assert_eq!(
            leaf_of(&certificates.for_name(Some("a.b.other.example"))),
            a
        );
    }

    #[test]
    fn an_expired_certificate_is_refused_with_its_name() {
        let (chain, key) = self_signed(&["old.example"], -1);
        let error = Certificates::load(&[in_memory(&["old.example"], chain, key)]).unwrap_err();
        assert!(error.to_string().contains("expired on"), "{error}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (chain, _) = self_signed(&["a.example"], 30);
        let (_, other_key) = self_signed(&["b.example"], 30);
        let error = Certificates::load(&[in_memory(&["a.example"], chain, other_key)]).unwrap_err();
        assert!(matches!(error, TlsError::Mismatch { .. }), "{error}");
    }

    #[test]
    fn missing_and_garbage_files_are_refused_with_the_path() {
        let missing = Certificate {
            hostnames: vec!["x".into()],
            source: CertificateSource::Files {
                chain: "/nonexistent/chain.pem".into(),
                key: "/nonexistent/key.pem".into(),
            },
        };
        let error = Certificates::load(&[missing]).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/chain.pem"),
            "{error}"
        );
        let error = Certificates::load(&[in_memory(&["x"], "garbage".into(), "garbage".into())])
            .unwrap_err();
        assert!(matches!(error, TlsError::Invalid { .. }), "{error}");
        assert!(matches!(Certificates::load(&[]), Err(TlsError::Empty)));
    }

    #[test]
    fn reload_swaps_the_set_and_a_bad_reload_keeps_the_old_one() {
        let dir = std::env::temp_dir().join(format!("meridian-tls-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (chain, key) = self_signed(&["r.example"], 30);
        std::fs::write(dir.join("chain.pem"), &chain).unwrap();
        std::fs::write(dir.join("key.pem"), &key).unwrap();
        let resolver = CertResolver::new(vec![Certificate {
            hostnames: vec!["r.example".into()],
            source: CertificateSource::Files {
                chain: dir.join("chain.pem"),
                key: dir.join("key.pem"),
            },
        }])
        .unwrap();
        let before = leaf_of(&resolver.current().for_name(Some("r.example")));
        let (chain2, key2) = self_signed(&["r.example"], 60);
        std::fs::write(dir.join("chain.pem"), &chain2).unwrap();
        std::fs::write(dir.join("key.pem"), &key2).unwrap();
        resolver.reload().unwrap();
        let after = leaf_of(&resolver.current().for_name(Some("r.example")));
        assert_ne!(before, after);
        std::fs::write(dir.join("key.pem"), "garbage").unwrap();
        assert!(resolver.reload().is_err());
        assert_eq!(
            leaf_of(&resolver.current().for_name(Some("r.example"))),
            after
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
