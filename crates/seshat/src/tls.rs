//! TLS on the client port and the HTTP port (rustls with the `ring`
//! provider): the server configuration built from the certificate, key
//! and CA files, and its reload without a restart. Also the start-up
//! check of the files of mutual TLS between nodes ([`load_peer_tls`]).
//!
//! A [`TlsContext`] holds the configuration new connections are accepted
//! with. [`TlsContext::reload`] (SIGHUP, or `CONFIG SET tls-cert-file …`)
//! re-reads the files and swaps it in only if they load: connections
//! already open keep the session they negotiated, new ones get the new
//! certificate, and a bad file leaves the previous configuration serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use seshat_raft::peer_tls::{PeerTls, PEER_SERVER_NAME};
use tokio_rustls::TlsAcceptor;

/// Longest a client may take to complete the TLS handshake after
/// connecting; past it the connection is closed (it holds a client slot
/// meanwhile).
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether clients must present a certificate (Redis's `tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthClients {
    /// A certificate signed by the CA is required.
    Yes,
    /// None is asked for.
    No,
    /// One is asked for; a client may send none, but one it sends must be
    /// signed by the CA.
    Optional,
}

impl AuthClients {
    /// Parses Redis's `yes`, `no` or `optional`.
    pub fn parse(text: &str) -> Option<AuthClients> {
        match text.to_ascii_lowercase().as_str() {
            "yes" => Some(AuthClients::Yes),
            "no" => Some(AuthClients::No),
            "optional" => Some(AuthClients::Optional),
            _ => None,
        }
    }

    /// The name `CONFIG GET` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthClients::Yes => "yes",
            AuthClients::No => "no",
            AuthClients::Optional => "optional",
        }
    }
}

/// The files a TLS configuration is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// The private key of the leaf certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to.
    pub ca_cert_file: Option<PathBuf>,
    /// Whether clients must present a certificate.
    pub auth_clients: AuthClients,
}

/// The client TLS configuration, replaceable while serving; the TLS
/// client port and HTTPS (`--http-tls yes`) accept with the same one.
pub struct TlsContext {
    current: RwLock<(TlsFiles, Arc<ServerConfig>)>,
    /// Held while a reload or replacement reads files and installs them.
    changing: std::sync::Mutex<()>,
}

impl TlsContext {
    /// Loads the files; fails with the file and the reason.
    pub fn load(files: TlsFiles) -> anyhow::Result<TlsContext> {
        let config = server_config(&files)?;
        Ok(TlsContext {
            current: RwLock::new((files, config)),
            changing: std::sync::Mutex::new(()),
        })
    }

    /// An acceptor with the configuration in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        TlsAcceptor::from(guard.1.clone())
    }

    /// The files in force now.
    pub fn files(&self) -> TlsFiles {
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        guard.0.clone()
    }

    /// Re-reads the files in force now (SIGHUP).
    pub fn reload(&self) -> anyhow::Result<()> {
        let _one_at_a_time = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        self.install(self.files())
    }

    /// Loads `files` and, if they load, accepts new connections with them.
    /// On failure the previous configuration stays.
    pub fn replace(&self, files: TlsFiles) -> anyhow::Result<()> {
        // One change at a time: a SIGHUP reload that read the old paths
        // cannot finish after this and put them back.
        let _one_at_a_time = self.changing.lock().unwrap_or_else(|e| e.into_inner());
        self.install(files)
    }

    fn install(&self, files: TlsFiles) -> anyhow::Result<()> {
        let config = server_config(&files)?;
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        *guard = (files, config);
        Ok(())
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls server configuration: TLS 1.2 and 1.3, the ring
/// provider's default cipher suites, client certificates as `files` say.
fn server_config(files: &TlsFiles) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = read_certs("tls-cert-file", &files.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file).with_context(|| {
        format!(
            "tls-key-file {}: no readable private key",
            files.key_file.display()
        )
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match (&files.ca_cert_file, files.auth_clients) {
        (_, AuthClients::No) => builder.with_no_client_auth(),
        (None, auth) => bail!(
            "tls-auth-clients {} needs tls-ca-cert-file (the CA client certificates must chain to)",
            auth.as_str()
        ),
        (Some(ca), auth) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs("tls-ca-cert-file", ca)? {
                roots.add(cert).with_context(|| {
                    format!("tls-ca-cert-file {}: not a usable CA", ca.display())
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if auth == AuthClients::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(verifier.build().with_context(|| {
                format!("tls-ca-cert-file {}: cannot verify with it", ca.display())
            })?)
        }
    };
    // Also checks that the key belongs to the leaf certificate.
    let config = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "tls-cert-file {} with tls-key-file {}",
            files.cert_file.display(),
            files.key_file.display()
        )
    })?;
    Ok(Arc::new(config))
}

/// Loads the files of mutual TLS between nodes and checks, before the node
/// starts, what would otherwise only show as peers refusing each other:
/// the key belongs to the certificate, and the certificate chains to the
/// cluster CA and is valid both as a server for
/// [`seshat_raft::peer_tls::PEER_SERVER_NAME`] and as a client.
pub fn load_peer_tls(files: &crate::config::RaftTlsFiles) -> anyhow::Result<PeerTls> {
    let read = |name: &str, path: &Path| {
        std::fs::read(path).with_context(|| format!("{name} {}: cannot read", path.display()))
    };
    let cert_pem = read("raft-tls-cert-file", &files.cert_file)?;
    let key_pem = read("raft-tls-key-file", &files.key_file)?;
    let ca_pem = read("raft-tls-ca-cert-file", &files.ca_cert_file)?;
    check_peer_identity(files)
        .with_context(|| format!("raft-tls-cert-file {}", files.cert_file.display()))?;
    Ok(PeerTls::from_pem(cert_pem, key_pem, ca_pem))
}

fn check_peer_identity(files: &crate::config::RaftTlsFiles) -> anyhow::Result<()> {
    use rustls::client::danger::ServerCertVerifier;
    let certs = read_certs("raft-tls-cert-file", &files.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file).with_context(|| {
        format!(
            "raft-tls-key-file {}: no readable private key",
            files.key_file.display()
        )
    })?;
    let mut roots = RootCertStore::empty();
    for cert in read_certs("raft-tls-ca-cert-file", &files.ca_cert_file)? {
        roots.add(cert).with_context(|| {
            format!(
                "raft-tls-ca-cert-file {}: not a usable CA",
                files.ca_cert_file.display()
            )
        })?;
    }
    let roots = Arc::new(roots);
    let (leaf, intermediates) = certs.split_first().context("no certificate")?;
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs.clone(), key)
        .with_context(|| {
            format!(
                "does not go with raft-tls-key-file {}",
                files.key_file.display()
            )
        })?;
    let name = ServerName::try_from(PEER_SERVER_NAME).context("peer server name")?;
    let now = UnixTime::now();
    rustls::client::WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .context("cannot verify with raft-tls-ca-cert-file")?
        .verify_server_cert(leaf, intermediates, &name, &[], now)
        .with_context(|| {
            format!(
                "not accepted by peers as node {PEER_SERVER_NAME:?} under raft-tls-ca-cert-file {} \
                 (it must chain to that CA, be valid now, name DNS:{PEER_SERVER_NAME} and allow \
                 serverAuth)",
                files.ca_cert_file.display()
            )
        })?;
    WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .context("cannot verify with raft-tls-ca-cert-file")?
        .verify_client_cert(leaf, intermediates, now)
        .context("not accepted by peers as a client (it must allow clientAuth)")?;
    Ok(())
}

fn read_certs(name: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{name} {}: cannot read certificates", path.display()))?;
    if certs.is_empty() {
        bail!("{name} {}: no PEM certificate in it", path.display());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_clients_parse_as_redis_spells_them() {
        assert_eq!(AuthClients::parse("YES"), Some(AuthClients::Yes));
        assert_eq!(AuthClients::parse("no"), Some(AuthClients::No));
        assert_eq!(AuthClients::parse("optional"), Some(AuthClients::Optional));
        assert_eq!(AuthClients::parse("maybe"), None);
    }

    #[test]
    fn missing_files_are_named_in_the_error() {
        let files = TlsFiles {
            cert_file: "/nonexistent/server.crt".into(),
            key_file: "/nonexistent/server.key".into(),
            ca_cert_file: None,
            auth_clients: AuthClients::No,
        };
        let err = format!("{:#}", TlsContext::load(files).err().unwrap());
        assert!(
            err.contains("tls-cert-file /nonexistent/server.crt"),
            "{err}"
        );
    }
}
