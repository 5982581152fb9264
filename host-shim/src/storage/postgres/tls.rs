//! TLS to the PostgreSQL server, as libpq's `sslmode` and `sslrootcert` ask
//! (docs/SCALING.md, "TLS to the server").
//!
//! tokio-postgres knows only `disable`, `prefer` and `require` (whether to
//! encrypt) and refuses `sslrootcert` as an unknown option: what to check is
//! the TLS connector's business. So [`split`] takes both out of the URL's
//! query, tells tokio-postgres whether TLS must be used, and builds one
//! rustls connector (the host's `ring` provider) whose verifier checks what
//! the mode asks:
//!
//! | sslmode | encrypts | checks |
//! | --- | --- | --- |
//! | `disable` | no | — |
//! | `prefer` (default) | if the server offers TLS, else plain | nothing; the chain if `sslrootcert` names a file |
//! | `require` | yes | nothing; the chain if `sslrootcert` names a file (libpq's verify-ca) |
//! | `verify-ca` | yes | the chain, to a trusted root |
//! | `verify-full` | yes | the chain and the host name |
//!
//! The roots are the `sslrootcert` file's certificates, or else the public
//! web CAs of webpki-roots (libpq would read ~/.postgresql/root.crt; a host
//! has no such home, so the operator names the file). `sslrootcert=system`
//! asks for the public CAs explicitly and, as in libpq, for `verify-full`.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` (less `allow`, which tries plain first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS if the server offers it, else plain TCP (the default).
    Prefer,
    /// TLS, the certificate unchecked (checked as `VerifyCa` with a root file).
    Require,
    /// TLS, the certificate's chain checked.
    VerifyCa,
    /// TLS, the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    const ALL: [SslMode; 5] =
        [SslMode::Disable, SslMode::Prefer, SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull];

    /// The mode as the URL spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(s: &str) -> Result<SslMode, String> {
        SslMode::ALL.into_iter().find(|m| m.as_str() == s).ok_or_else(|| {
            let all: Vec<&str> = SslMode::ALL.iter().map(|m| m.as_str()).collect();
            format!("sslmode={s:?} is not one of {}", all.join(", "))
        })
    }

    /// What tokio-postgres is told: whether TLS is optional or required.
    fn wire(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        }
    }
}

/// What the server's certificate is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Roots {
    /// The public web CAs (webpki-roots).
    Public,
    /// The `sslrootcert` file's certificates.
    File(PathBuf),
}

/// What is checked of the server's certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    Nothing,
    Chain,
    ChainAndName,
}

/// The TLS settings of a database URL, and the connector that applies them.
#[derive(Clone)]
pub struct Tls {
    /// What the URL asked for (`prefer` when it said nothing).
    pub mode: SslMode,
    /// What a checked certificate must chain to.
    pub roots: Roots,
    check: Check,
    connector: MakeRustlsConnect,
}

impl Tls {
    /// The connector every connection of the host uses (the pool's and the
    /// migration lock's).
    pub fn connector(&self) -> MakeRustlsConnect {
        self.connector.clone()
    }

    /// `sslmode=verify-full with sslrootcert /etc/…`, for messages.
    pub fn describe(&self) -> String {
        let against = match (&self.roots, self.check) {
            (_, Check::Nothing) => return format!("sslmode={}", self.mode.as_str()),
            (Roots::Public, _) => "the public web CAs (webpki-roots)".to_owned(),
            (Roots::File(p), _) => format!("sslrootcert {}", p.display()),
        };
        format!("sslmode={}, checked against {against}", self.mode.as_str())
    }

    /// Sets whether tokio-postgres must encrypt. libpq ignores sslmode on a
    /// Unix socket (the server offers no TLS there), and so do we, or
    /// `require` could never connect through one.
    pub fn apply(&self, config: &mut tokio_postgres::Config) {
        // With `hostaddr` tokio-postgres connects over TCP to the address
        // whatever `host` says: that is no socket, and keeps the mode.
        let all_unix = !config.get_hosts().is_empty()
            && config.get_hostaddrs().is_empty()
            && config.get_hosts().iter().all(|h| !matches!(h, tokio_postgres::config::Host::Tcp(_)));
        config.ssl_mode(if all_unix { tokio_postgres::config::SslMode::Disable } else { self.mode.wire() });
        // TLS needs a name to present and check; with only `hostaddr`,
        // the address is that name (as libpq checks it against the
        // certificate's IP addresses).
        if self.mode != SslMode::Disable && config.get_hosts().is_empty() {
            for a in config.get_hostaddrs().to_vec() {
                config.host(a.to_string());
            }
        }
    }

    /// One line for a connection that failed in TLS, or `None` when the
    /// failure was not TLS's.
    pub fn explain(&self, e: &tokio_postgres::Error, at: &str) -> Option<String> {
        let cause = std::error::Error::source(e)?;
        let rustls = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        let how = self.describe();
        Some(match rustls {
            Some(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => format!(
                "the PostgreSQL server at {at} presented a certificate for another name ({}; {how}): \
                 verify-full checks the host name, so connect by a name the certificate holds (hostaddr= can \
                 keep the address), or, with the CA's own certificate in sslrootcert=, use sslmode=verify-ca",
                rustls.expect("matched")
            ),
            Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => format!(
                "the PostgreSQL server at {at} presented a certificate that no trusted root signed ({how}): name \
                 the certificate of the CA that signed it with sslrootcert=/path/to/root.crt"
            ),
            Some(r) => format!("TLS with the PostgreSQL server at {at} failed ({how}): {r}"),
            None if cause.to_string() == "server does not support TLS" => format!(
                "the PostgreSQL server at {at} does not offer TLS but sslmode={} requires it: turn `ssl` on in its \
                 postgresql.conf, or use sslmode=prefer to accept a plain connection",
                self.mode.as_str()
            ),
            None if e.to_string().starts_with("error performing TLS handshake") => {
                format!("TLS with the PostgreSQL server at {at} failed ({how}): {cause}")
            }
            None => return None,
        })
    }
}

/// Takes `sslmode` and `sslrootcert` out of `url`'s query (the last of each
/// counts, as in tokio-postgres); answers the URL without them, for
/// tokio-postgres, and the TLS settings they ask for, with the connector
/// built (an unreadable `sslrootcert` is refused here, at start).
pub fn split(url: &str) -> Result<(String, Tls), String> {
    // tokio-postgres reads the credentials up to the first `@` (a password
    // may hold a `?`), and the query from the first `?` after them.
    let after_creds = url.find('@').map_or(0, |i| i + 1);
    let (base, query) = match url[after_creds..].find('?') {
        Some(q) => url.split_at(after_creds + q),
        None => (url, ""),
    };
    let mut kept = Vec::new();
    let (mut mode, mut root) = (None, None);
    for pair in query.strip_prefix('?').unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
        match decode(k).as_str() {
            "sslmode" => mode = Some(SslMode::parse(&decode(v))?),
            "sslrootcert" => root = Some(decode(v)),
            // tokio-postgres would call them unknown options; say what is missing.
            k @ ("sslcert" | "sslkey" | "sslpassword" | "sslcrl" | "sslcrldir") => {
                return Err(format!(
                    "{k} is not supported: TLS to PostgreSQL takes sslmode and sslrootcert (no client \
                     certificate, no revocation list)"
                ));
            }
            _ => kept.push(pair),
        }
    }
    let system = root.as_deref() == Some("system");
    let mode = match mode {
        // libpq: the public CAs vouch for names, so `system` means verify-full.
        Some(m) if system && m != SslMode::VerifyFull => {
            return Err(format!(
                "sslrootcert=system checks the server against the public CAs, which needs sslmode=verify-full \
                 (not {})",
                m.as_str()
            ));
        }
        Some(m) => m,
        None if system => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    let roots = match root {
        Some(p) if !system && !p.is_empty() => Roots::File(PathBuf::from(p)),
        _ => Roots::Public,
    };
    // The public CAs vouch for names, not for servers: checking the chain
    // against them without the name would accept any public certificate for
    // any domain (libpq, too, refuses verify-ca without a root file).
    if mode == SslMode::VerifyCa && !matches!(roots, Roots::File(_)) {
        return Err("sslmode=verify-ca needs the certificate of the CA that signed the server's: name it with \
                    sslrootcert=/path/to/root.crt (or use sslmode=verify-full to check the name against the public CAs)"
            .to_owned());
    }
    let check = match mode {
        SslMode::VerifyFull => Check::ChainAndName,
        SslMode::VerifyCa => Check::Chain,
        // libpq checks the chain whenever it has a root certificate file.
        SslMode::Prefer | SslMode::Require if matches!(roots, Roots::File(_)) => Check::Chain,
        _ => Check::Nothing,
    };
    let connector = connector(&roots, check)?;
    let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    Ok((rest, Tls { mode, roots, check, connector }))
}

/// A rustls connector on the host's `ring` provider whose verifier checks
/// what `check` says against `roots`.
fn connector(roots: &Roots, check: Check) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = match check {
        Check::Nothing => None,
        Check::Chain | Check::ChainAndName => {
            let store = root_store(roots)?;
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                .build()
                .map_err(|e| format!("the TLS roots for PostgreSQL: {e}"))?;
            Some(verifier)
        }
    };
    let verifier =
        Verifier { chain, name: check == Check::ChainAndName, algorithms: provider.signature_verification_algorithms };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS for PostgreSQL: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn root_store(roots: &Roots) -> Result<RootCertStore, String> {
    let path = match roots {
        Roots::Public => return Ok(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() }),
        Roots::File(p) => p,
    };
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read sslrootcert {shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("sslrootcert {shown} is not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err(format!("sslrootcert {shown} holds no certificate (-----BEGIN CERTIFICATE-----)"));
    }
    let mut store = RootCertStore::empty();
    for cert in certs {
        store.add(cert).map_err(|e| format!("sslrootcert {shown}: a certificate that cannot be a root: {e}"))?;
    }
    Ok(store)
}

/// Checks the server's certificate as far as the mode asks. Without a
/// chain to check, the handshake still proves the server holds the key of
/// the certificate it presented (the signature checks below), which is
/// what `require` gives in libpq: encryption, not identity.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    /// Whether the host name must be one of the certificate's.
    name: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            // webpki checks the name only once the chain holds, so this
            // error means the chain is good: all verify-ca asks.
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.name => Ok(ServerCertVerified::assertion()),
            checked => checked,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(url: &str) -> Result<(String, SslMode, Roots), String> {
        split(url).map(|(rest, t)| (rest, t.mode, t.roots))
    }

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_the_url() {
        let (rest, mode, roots) = mode_of("postgres://u@h/db").unwrap();
        assert_eq!((rest.as_str(), mode, roots), ("postgres://u@h/db", SslMode::Prefer, Roots::Public));
        let (rest, mode, _) = mode_of("postgres://u@h/db?sslmode=verify-full&application_name=x").unwrap();
        assert_eq!((rest.as_str(), mode), ("postgres://u@h/db?application_name=x", SslMode::VerifyFull));
        let (rest, mode, _) = mode_of("postgres://u@h/db?sslmode=require&sslmode=disable").unwrap();
        assert_eq!((rest.as_str(), mode), ("postgres://u@h/db", SslMode::Disable), "the last one counts");
        // A `?` in the password is not the query.
        let (rest, mode, _) = mode_of("postgres://u:p?w@h/db?ssl%6dode=verify-full").unwrap();
        assert_eq!((rest.as_str(), mode), ("postgres://u:p?w@h/db", SslMode::VerifyFull));
        // `system`: the public CAs, and verify-full.
        let (_, mode, roots) = mode_of("postgres://u@h/db?sslrootcert=system").unwrap();
        assert_eq!((mode, roots), (SslMode::VerifyFull, Roots::Public));
        assert!(mode_of("postgres://u@h/db?sslrootcert=system&sslmode=require").unwrap_err().contains("verify-full"));
    }

    #[test]
    fn unknown_modes_and_unreadable_roots_are_refused() {
        let e = mode_of("postgres://u@h/db?sslmode=verify_full").unwrap_err();
        assert_eq!(e, "sslmode=\"verify_full\" is not one of disable, prefer, require, verify-ca, verify-full");
        let e = mode_of("postgres://u@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/root.crt").unwrap_err();
        assert!(e.starts_with("cannot read sslrootcert /nonexistent/root.crt: "), "{e}");
        let dir = std::env::temp_dir().join(format!("webhooks-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = mode_of(&format!("postgres://u@h/db?sslmode=require&sslrootcert={}", empty.display())).unwrap_err();
        assert!(e.contains("holds no certificate"), "{e}");
        // Not read where nothing is checked against it.
        assert!(mode_of("postgres://u@h/db?sslmode=disable&sslrootcert=/nonexistent/root.crt").is_ok());
        // verify-ca against the public CAs would take anyone's certificate.
        let e = mode_of("postgres://u@h/db?sslmode=verify-ca").unwrap_err();
        assert!(e.starts_with("sslmode=verify-ca needs the certificate of the CA"), "{e}");
        assert!(mode_of("postgres://u@h/db?sslmode=verify-ca&sslrootcert=").is_err());
        let e = mode_of("postgres://u@h/db?sslcert=/etc/client.crt").unwrap_err();
        assert!(e.starts_with("sslcert is not supported"), "{e}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unix_sockets_stay_plain_and_a_bare_hostaddr_is_the_tls_name() {
        let (rest, tls) = split("postgres://u@%2Fvar%2Frun%2Fpostgresql/db?sslmode=require").unwrap();
        let mut c: tokio_postgres::Config = rest.parse().unwrap();
        tls.apply(&mut c);
        assert_eq!(c.get_ssl_mode(), tokio_postgres::config::SslMode::Disable);
        let (rest, tls) = split("postgres://u@/db?hostaddr=10.1.2.3&sslmode=verify-full").unwrap();
        let mut c: tokio_postgres::Config = rest.parse().unwrap();
        tls.apply(&mut c);
        assert_eq!(c.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert!(matches!(c.get_hosts(), [tokio_postgres::config::Host::Tcp(h)] if h == "10.1.2.3"));
        // A socket path with `hostaddr` still goes over TCP: no plain downgrade.
        let url = "postgres://u@%2Fvar%2Frun%2Fpostgresql/db?hostaddr=10.0.0.5&sslmode=verify-full";
        let (rest, tls) = split(url).unwrap();
        let mut c: tokio_postgres::Config = rest.parse().unwrap();
        tls.apply(&mut c);
        assert_eq!(c.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
    }
}
