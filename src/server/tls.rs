//! TLS termination (rustls, ring provider): a PEM certificate chain and key, re-read when
//! either file changes, and ALPN `h2` / `http/1.1`.
//!
//! The files' modification times and sizes are compared at most once per
//! `reload_interval`, when a connection is accepted; a changed pair is parsed and, if it is a
//! valid certificate with its matching key, used for every handshake from then on. A bad
//! pair (half-written, mismatched) is logged and the previous certificate stays in use.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// Why a certificate or key could not be used (the message names the file, never its text).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not a PEM certificate chain")]
    Certificates {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path}: no certificate in the file")]
    NoCertificate { path: PathBuf },
    #[error("{path}: not a PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    Key {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{path}: unsupported private key")]
    UnsupportedKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("{key} does not match the certificate in {cert}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot build the TLS configuration")]
    Config(#[source] rustls::Error),
}

/// The TLS side of the listener.
pub struct Tls {
    config: TlsConfig,
    acceptor: TlsAcceptor,
    current: Arc<CurrentCert>,
    check: Mutex<Check>,
}

#[derive(Debug)]
struct Check {
    at: Instant,
    stamp: Stamp,
}

/// What identifies a version of the two files.
type Stamp = [Option<(SystemTime, u64)>; 2];

/// The certificate every handshake gets; swapped on reload.
#[derive(Debug)]
struct CurrentCert(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads the files (an error fails the start) and builds the acceptor.
    pub fn new(config: &TlsConfig) -> Result<Tls, TlsError> {
        let stamp = stamp(config);
        let current = Arc::new(CurrentCert(RwLock::new(Arc::new(load(config)?))));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            config: config.clone(),
            acceptor: TlsAcceptor::from(Arc::new(server)),
            current,
            check: Mutex::new(Check { at: Instant::now(), stamp }),
        })
    }

    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Re-reads the files if `reload_interval` has passed since the last look and either
    /// changed. Cheap otherwise (one clock read).
    pub fn reload_if_changed(&self) {
        let mut check = self.check.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if check.at.elapsed() < self.config.reload_interval {
            return;
        }
        check.at = Instant::now();
        let stamp = stamp(&self.config);
        if stamp == check.stamp {
            return;
        }
        check.stamp = stamp;
        match load(&self.config) {
            Ok(key) => {
                *self.current.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(key);
                tracing::info!(cert_file = %self.config.cert_file.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %crate::error::ErrorChain(&e), "TLS certificate files changed but cannot be used; keeping the previous certificate");
            }
        }
    }
}

fn stamp(config: &TlsConfig) -> Stamp {
    let of = |path: &Path| fs::metadata(path).ok().and_then(|m| Some((m.modified().ok()?, m.len())));
    [of(&config.cert_file), of(&config.key_file)]
}

/// Parses the chain and the key and checks that they belong together.
fn load(config: &TlsConfig) -> Result<CertifiedKey, TlsError> {
    let (cert_path, key_path) = (&config.cert_file, &config.key_file);
    let cert_pem =
        fs::read(cert_path).map_err(|source| TlsError::Read { path: cert_path.clone(), source })?;
    let key_pem = fs::read(key_path).map_err(|source| TlsError::Read { path: key_path.clone(), source })?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Certificates { path: cert_path.clone(), source })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate { path: cert_path.clone() });
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|source| TlsError::Key { path: key_path.clone(), source })?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|source| TlsError::UnsupportedKey { path: key_path.clone(), source })?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|source| TlsError::Mismatch {
        cert: cert_path.clone(),
        key: key_path.clone(),
        source,
    })?;
    Ok(certified)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    struct Files(PathBuf);

    impl Files {
        fn new(name: &str) -> Files {
            let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
            let dir = std::env::temp_dir()
                .join(format!("scim-sidecar-tls-unit-{name}-{}-{nanos}", std::process::id()));
            fs::create_dir_all(&dir).unwrap();
            Files(dir)
        }

        fn config(&self) -> TlsConfig {
            TlsConfig {
                cert_file: self.0.join("cert.pem"),
                key_file: self.0.join("key.pem"),
                reload_interval: Duration::from_secs(10),
            }
        }

        fn write(&self, cert: &str, key: &str) {
            fs::write(self.0.join("cert.pem"), cert).unwrap();
            fs::write(self.0.join("key.pem"), key).unwrap();
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn generated() -> (String, String) {
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (pair.cert.pem(), pair.signing_key.serialize_pem())
    }

    #[test]
    fn a_matching_pair_loads() {
        let files = Files::new("ok");
        let (cert, key) = generated();
        files.write(&cert, &key);
        assert!(Tls::new(&files.config()).is_ok());
    }

    #[test]
    fn each_problem_names_its_file_and_never_its_contents() {
        let files = Files::new("bad");
        let (cert, key) = generated();
        let (_, other_key) = generated();
        let cases: [(&str, &str, &str); 4] = [
            ("", &key, "no certificate in the file"),
            (&cert, "not a key", "not a PEM private key"),
            (&cert, &other_key, "does not match the certificate"),
            ("-----BEGIN CERTIFICATE-----\nbroken", &key, "not a PEM certificate chain"),
        ];
        for (cert_text, key_text, expected) in cases {
            files.write(cert_text, key_text);
            let error = Tls::new(&files.config()).unwrap_err();
            let text = crate::error::ErrorChain(&error).to_string();
            assert!(text.contains(expected), "{text}");
            assert!(text.contains(&*files.0.to_string_lossy()), "names the file: {text}");
            assert!(!text.contains("PRIVATE KEY"), "{text}");
        }
        fs::remove_file(files.0.join("cert.pem")).unwrap();
        let text = crate::error::ErrorChain(&Tls::new(&files.config()).unwrap_err()).to_string();
        assert!(text.starts_with("cannot read ") && text.contains("cert.pem"), "{text}");
    }
}
