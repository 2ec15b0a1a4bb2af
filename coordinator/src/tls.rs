//! Transport security of the federation gRPC: the coordinator's TLS identity (rustls, ring
//! provider), loaded from PEM files or generated here with rcgen.
//!
//! Calls are authenticated at the application layer (signed requests with nonces); TLS adds
//! server authentication and hides metadata (federation names, participant ids, sizes) from the
//! network. `gridfed coordinator init-tls` writes a private CA certificate and a server
//! certificate signed by it; participants trust that CA (`ca_cert`). The CA key is discarded
//! after signing, so nobody holds a key that could issue a second coordinator certificate.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::CoordinatorError;

/// Subject names of a generated server certificate when no host is given.
pub const DEFAULT_HOSTS: [&str; 2] = ["127.0.0.1", "localhost"];

/// A slow or silent client cannot hold a handshake slot longer than this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// File names written by [`GeneratedTls::write`].
pub const CA_CERT_FILE: &str = "ca.pem";
pub const SERVER_CERT_FILE: &str = "server.pem";
pub const SERVER_KEY_FILE: &str = "server.key";

/// How the coordinator serves gRPC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    Tls(ServerIdentity),
    /// Plaintext HTTP/2: tests only, chosen explicitly with `insecure_plaintext = true`.
    InsecurePlaintext,
}

/// The coordinator's certificate chain and private key, validated as a usable rustls identity.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerIdentity {
    cert_pem: String,
    key_pem: String,
}

impl fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

fn config_error(message: String) -> CoordinatorError {
    CoordinatorError::Config(message)
}

impl ServerIdentity {
    /// A PEM certificate chain (server certificate first) and its PEM private key; `cert_label`
    /// and `key_label` name them in errors.
    pub fn from_pem(
        cert_pem: String,
        key_pem: String,
        cert_label: &str,
        key_label: &str,
    ) -> Result<Self, CoordinatorError> {
        let certs = certificates(cert_pem.as_bytes(), cert_label)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| config_error(format!("{key_label}: no usable PEM private key ({e})")))?;
        // Building a rustls server config checks that the key matches the certificate.
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| config_error(format!("TLS provider: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            config_error(format!(
                "{cert_label} and {key_label} do not form a usable TLS identity: {e}"
            ))
        })?;
        Ok(Self { cert_pem, key_pem })
    }

    /// Reads `[tls] cert` and `key`; errors name the field and the file.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, CoordinatorError> {
        let cert_label = format!("tls.cert ({})", cert.display());
        let key_label = format!("tls.key ({})", key.display());
        let read = |path: &Path, label: &str| {
            std::fs::read_to_string(path)
                .map_err(|e| config_error(format!("{label}: cannot read: {e}")))
        };
        Self::from_pem(
            read(cert, &cert_label)?,
            read(key, &key_label)?,
            &cert_label,
            &key_label,
        )
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The tonic server configuration: this identity, no client certificates (participants
    /// authenticate by signature), a bounded handshake.
    pub fn server_tls_config(&self) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                &self.cert_pem,
                &self.key_pem,
            ))
            .timeout(HANDSHAKE_TIMEOUT)
    }
}

/// Every certificate of a PEM document; an error naming `label` if there is none.
pub fn certificates(
    pem: &[u8],
    label: &str,
) -> Result<Vec<CertificateDer<'static>>, CoordinatorError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| config_error(format!("{label}: invalid PEM ({e})")))?;
    if certs.is_empty() {
        return Err(config_error(format!(
            "{label}: no CERTIFICATE block in the PEM file"
        )));
    }
    Ok(certs)
}

/// A fresh CA and a server identity it signed.
#[derive(Clone, Debug)]
pub struct GeneratedTls {
    /// What participants trust (`ca_cert`).
    pub ca_cert_pem: String,
    pub server: ServerIdentity,
}

/// Generates a CA and a server certificate for `hosts` (DNS names or IP addresses;
/// [`DEFAULT_HOSTS`] when empty), all in memory. ECDSA P-256 keys.
pub fn generate(hosts: &[String]) -> Result<GeneratedTls, CoordinatorError> {
    let hosts: Vec<String> = if hosts.is_empty() {
        DEFAULT_HOSTS.iter().map(|h| h.to_string()).collect()
    } else {
        hosts.to_vec()
    };
    // What a participant will check the certificate against, so refuse what it cannot match.
    for host in &hosts {
        rustls::pki_types::ServerName::try_from(host.as_str()).map_err(|_| {
            config_error(format!("host `{host}` is not a DNS name or an IP address"))
        })?;
    }
    let rcgen_error = |e: rcgen::Error| config_error(format!("certificate generation: {e}"));
    let year = current_year();

    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(rcgen_error)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    // A distinct name per CA: verifiers look issuers up by name, so a participant trusting
    // another gridfed CA is told "unknown issuer" rather than "bad signature".
    let mut id = [0u8; 6];
    getrandom::fill(&mut id).map_err(|e| config_error(format!("randomness: {e}")))?;
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("gridfed coordinator CA {}", hex::encode(id)),
    );
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // A year back absorbs the rough year arithmetic and clock skew between machines.
    ca_params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    ca_params.not_after = rcgen::date_time_ymd(year + 10, 1, 1);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(rcgen_error)?)
        .map_err(rcgen_error)?;

    let mut params = CertificateParams::new(hosts.clone())
        .map_err(|e| config_error(format!("host names {hosts:?}: {e}")))?;
    params
        .distinguished_name
        .push(DnType::CommonName, hosts[0].as_str());
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(year + 3, 1, 1);
    let key = KeyPair::generate().map_err(rcgen_error)?;
    let cert = params.signed_by(&key, &ca).map_err(rcgen_error)?;
    let server = ServerIdentity::from_pem(
        cert.pem(),
        key.serialize_pem(),
        "generated certificate",
        "generated key",
    )?;
    Ok(GeneratedTls {
        ca_cert_pem: ca.pem(),
        server,
    })
}

fn current_year() -> i32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    1970 + (secs / 31_556_952) as i32
}

/// Where [`GeneratedTls::write`] put the files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsPaths {
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl GeneratedTls {
    /// Writes `ca.pem`, `server.pem` and `server.key` (mode 0600) into `dir`. Existing files
    /// are kept unless `overwrite`: replacing a CA breaks every participant that trusts it.
    pub fn write(&self, dir: &Path, overwrite: bool) -> Result<TlsPaths, CoordinatorError> {
        let io = |path: &Path, e: std::io::Error| config_error(format!("{}: {e}", path.display()));
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let paths = TlsPaths {
            ca_cert: dir.join(CA_CERT_FILE),
            cert: dir.join(SERVER_CERT_FILE),
            key: dir.join(SERVER_KEY_FILE),
        };
        if !overwrite {
            for path in [&paths.ca_cert, &paths.cert, &paths.key] {
                if path.exists() {
                    return Err(config_error(format!(
                        "{} exists; refusing to replace it (pass --force to overwrite)",
                        path.display()
                    )));
                }
            }
        }
        write_file(&paths.ca_cert, &self.ca_cert_pem, false).map_err(|e| io(&paths.ca_cert, e))?;
        write_file(&paths.cert, &self.server.cert_pem, false).map_err(|e| io(&paths.cert, e))?;
        write_file(&paths.key, &self.server.key_pem, true).map_err(|e| io(&paths.key, e))?;
        Ok(paths)
    }
}

fn write_file(path: &Path, text: &str, secret: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        if secret {
            options.mode(0o600);
            // `mode` applies only on creation: tighten a file being overwritten first.
            if path.exists() {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_is_usable_and_hides_its_key() {
        let tls = generate(&[]).unwrap();
        assert!(tls.ca_cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(
            certificates(tls.ca_cert_pem.as_bytes(), "ca")
                .unwrap()
                .len(),
            1
        );
        let debug = format!("{:?}", tls.server);
        assert!(debug.contains("<redacted>") && !debug.contains("PRIVATE KEY"));
    }

    #[test]
    fn mismatched_key_and_bad_pem_are_named() {
        let a = generate(&["a.example".into()]).unwrap();
        let b = generate(&["b.example".into()]).unwrap();
        let err = ServerIdentity::from_pem(
            a.server.cert_pem.clone(),
            b.server.key_pem.clone(),
            "tls.cert (a)",
            "tls.key (b)",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("tls.cert (a) and tls.key (b)"), "{err}");
        let err = ServerIdentity::from_pem("junk".into(), a.server.key_pem, "tls.cert (x)", "k")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tls.cert (x): no CERTIFICATE"), "{err}");
        let err = ServerIdentity::from_pem(a.server.cert_pem, "junk".into(), "c", "tls.key (y)")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tls.key (y): no usable PEM private key"),
            "{err}"
        );
        let err = generate(&["not a host!".into()]).unwrap_err().to_string();
        assert!(err.contains("host `not a host!`"), "{err}");
    }

    #[test]
    fn written_files_load_back_and_the_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let tls = generate(&[]).unwrap();
        let paths = tls.write(dir.path(), false).unwrap();
        let loaded = ServerIdentity::load(&paths.cert, &paths.key).unwrap();
        assert_eq!(loaded, tls.server);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&paths.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let err = tls.write(dir.path(), false).unwrap_err().to_string();
        assert!(err.contains("refusing to replace"), "{err}");
        tls.write(dir.path(), true).unwrap();
        let err = ServerIdentity::load(&dir.path().join("missing.pem"), &paths.key)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tls.cert (") && err.contains("cannot read"),
            "{err}"
        );
    }
}
