//! TLS termination for HTTPS (ALB) and TLS (NLB) listeners: the server configuration built
//! from a listener's certificates and security policy ([`server_config`]), the choice of
//! certificate by the client's server name ([`CertificateSet`]), the handshake ([`accept`]),
//! and [`ClientStream`], the client side of a connection whether or not TLS was terminated;
//! and the client side of TLS to targets, for HTTPS and TLS target groups and HTTPS health
//! checks ([`connect_to_target`], [`TargetStream`]).
//!
//! Certificates arrive in the route snapshot as PEM (from ACM, through the server). A
//! configuration is built once per distinct listener setting and shared by its connections;
//! a new snapshot with other certificates applies to connections accepted after it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use model::elb::{ListenerTls, ServerCertificate};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::framing::RelayError;

/// How long a client has to complete its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection that may speak TLS: plain TCP, or `T`, TLS over TCP (boxed: a TLS session
/// holds its buffers inline, and most connections are plain).
#[derive(Debug)]
pub enum MaybeTls<T> {
    Plain(TcpStream),
    Tls(Box<T>),
}

/// The client side of a listener's connection: plain TCP, or TLS terminated here.
pub type ClientStream = MaybeTls<TlsStream<TcpStream>>;

/// A connection to a target: plain TCP, or TLS for HTTPS and TLS target groups.
pub type TargetStream = MaybeTls<tokio_rustls::client::TlsStream<TcpStream>>;

/// The TCP connection under a TLS stream of either side.
pub trait OverTcp {
    fn tcp(&self) -> &TcpStream;
}

impl OverTcp for TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

impl OverTcp for tokio_rustls::client::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

impl<T: OverTcp> MaybeTls<T> {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            MaybeTls::Plain(stream) => stream,
            MaybeTls::Tls(stream) => stream.tcp(),
        }
    }

    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.tcp().set_nodelay(nodelay)
    }
}

impl<T: AsyncWrite + Unpin> MaybeTls<T> {
    /// Writes all of `bytes` and pushes them out: TLS buffers what the socket would not take,
    /// and the peer must see a whole message before it answers or sends its next one.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            MaybeTls::Plain(stream) => stream.write_all(bytes).await,
            MaybeTls::Tls(stream) => {
                stream.write_all(bytes).await?;
                stream.flush().await
            }
        }
    }

    /// [`crate::framing::write_within`] for either kind of stream: a peer that stops reading
    /// holds the writer no longer than `idle`.
    pub async fn write_within(&mut self, bytes: &[u8], idle: Duration) -> Result<(), RelayError> {
        match self {
            MaybeTls::Plain(stream) => crate::framing::write_within(stream, bytes, idle).await,
            MaybeTls::Tls(_) => match tokio::time::timeout(idle, self.send(bytes)).await {
                Ok(result) => result.map_err(RelayError::Write),
                Err(_) => Err(RelayError::Write(io::ErrorKind::TimedOut.into())),
            },
        }
    }
}

impl ClientStream {
    /// `https` when TLS was terminated, else `http`: `X-Forwarded-Proto`, and what
    /// `#{protocol}` stands for in redirects.
    pub fn scheme(&self) -> &'static str {
        match self {
            MaybeTls::Plain(_) => "http",
            MaybeTls::Tls(_) => "https",
        }
    }

    /// The TLS version and cipher suite negotiated, as ALB names them in its
    /// `X-Amzn-Tls-Version` and `X-Amzn-Tls-Cipher-Suite` headers (OpenSSL's names).
    pub fn negotiated(&self) -> Option<(&'static str, &'static str)> {
        let MaybeTls::Tls(stream) = self else {
            return None;
        };
        let connection = stream.get_ref().1;
        let version = match connection.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            _ => "TLSv1.2",
        };
        Some((
            version,
            openssl_name(connection.negotiated_cipher_suite()?.suite()),
        ))
    }

    /// The protocol ALPN settled on, if any.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        match self {
            MaybeTls::Plain(_) => None,
            MaybeTls::Tls(stream) => stream.get_ref().1.alpn_protocol(),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for MaybeTls<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            MaybeTls::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for MaybeTls<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(stream) => Pin::new(stream).poll_write(cx, bytes),
            MaybeTls::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, bytes),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(stream) => Pin::new(stream).poll_flush(cx),
            MaybeTls::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            MaybeTls::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// OpenSSL's name of a cipher suite the ring provider offers.
fn openssl_name(suite: rustls::CipherSuite) -> &'static str {
    use rustls::CipherSuite as S;
    match suite {
        S::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        S::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        S::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        _ => "UNKNOWN",
    }
}

/// Opens TLS to a target over `stream`, offering `alpn` (nothing when `None`): requests of
/// HTTPS target groups and their health checks offer `http/1.1`; a TLS group's flow offers
/// what the client settled on with the listener, so both ends speak the same protocol. As
/// AWS's load balancers, this does not verify the target's certificate (targets commonly
/// serve self-signed ones) and sends no server name. At most [`HANDSHAKE_TIMEOUT`].
pub async fn connect_to_target(
    stream: TcpStream,
    alpn: Option<&[u8]>,
) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let address = stream.peer_addr()?.ip();
    let connector = tokio_rustls::TlsConnector::from(target_config(alpn));
    let handshake = connector.connect(
        rustls::pki_types::ServerName::IpAddress(address.into()),
        stream,
    );
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(connected) => connected,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// The client configuration offering `alpn`, built once per protocol: each keeps its own
/// cache of sessions, so new connections to a target resume rather than handshake in full.
fn target_config(alpn: Option<&[u8]>) -> Arc<rustls::ClientConfig> {
    type Configs = std::collections::HashMap<Option<Vec<u8>>, Arc<rustls::ClientConfig>>;
    static CONFIGS: std::sync::LazyLock<std::sync::Mutex<Configs>> =
        std::sync::LazyLock::new(Default::default);
    let mut configs = CONFIGS.lock().expect("poisoned");
    configs
        .entry(alpn.map(<[u8]>::to_vec))
        .or_insert_with(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("the ring provider speaks TLS 1.2 and 1.3")
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyTargetCertificate(provider)))
                .with_no_client_auth();
            config.alpn_protocols = alpn.map(|p| vec![p.to_vec()]).unwrap_or_default();
            Arc::new(config)
        })
        .clone()
}

/// Accepts whatever certificate a target presents, checking only that the handshake is
/// signed by its key.
#[derive(Debug)]
struct AnyTargetCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyTargetCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Completes the server side of a handshake on `stream` (at most [`HANDSHAKE_TIMEOUT`]).
pub async fn accept(stream: TcpStream, config: Arc<ServerConfig>) -> io::Result<ClientStream> {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(accepted) => Ok(ClientStream::Tls(Box::new(accepted?))),
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// Whether a listener speaks HTTP over its TLS (ALB) or carries bytes (NLB), for ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Terminated {
    /// HTTPS: `h2` offered when the load balancer allows HTTP/2.
    Http { http2: bool },
    /// TLS: the listener's ALPN policy decides.
    Stream,
}

/// The TLS versions a security policy offers, as far as rustls speaks them (TLS 1.2 and
/// 1.3): the `TLS13-1-3` policies only 1.3, the other `TLS13` policies 1.2 and 1.3, the
/// older policies 1.2 (their TLS 1.0 and 1.1 are not offered).
pub fn policy_versions(policy: &str) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    static TLS12_AND_13: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    static TLS12_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
    match model::elb::ssl_policy_protocols(policy) {
        ["TLSv1.3"] => &TLS13_ONLY,
        ["TLSv1.2"] => &TLS12_ONLY,
        _ => &TLS12_AND_13,
    }
}

/// The ALPN protocols offered, in the server's order of preference.
fn alpn_protocols(terminated: Terminated, policy: Option<&str>) -> Vec<Vec<u8>> {
    let (h2, h1) = (b"h2".to_vec(), b"http/1.1".to_vec());
    match terminated {
        Terminated::Http { http2: true } => vec![h2, h1],
        Terminated::Http { http2: false } => vec![h1],
        Terminated::Stream => match policy {
            Some("HTTP1Only") => vec![h1],
            Some("HTTP2Only") => vec![h2],
            Some("HTTP2Optional") => vec![h1, h2],
            Some("HTTP2Preferred") => vec![h2, h1],
            _ => Vec::new(),
        },
    }
}

/// The server configuration of a listener; `Err` says why its certificates cannot be used.
pub fn server_config(
    tls: &ListenerTls,
    terminated: Terminated,
) -> Result<Arc<ServerConfig>, String> {
    let certificates = CertificateSet::of(&tls.certificates)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(policy_versions(&tls.ssl_policy))
        .map_err(|error| format!("security policy {}: {error}", tls.ssl_policy))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(certificates));
    config.alpn_protocols = alpn_protocols(terminated, tls.alpn_policy.as_deref());
    Ok(Arc::new(config))
}

/// A listener's certificates: the one whose names match the client's server name, else the
/// default (the first).
#[derive(Debug)]
pub struct CertificateSet {
    certificates: Vec<(Vec<String>, Arc<CertifiedKey>)>,
}

impl CertificateSet {
    pub fn of(certificates: &[ServerCertificate]) -> Result<CertificateSet, String> {
        if certificates.is_empty() {
            return Err("the listener has no certificate".into());
        }
        let certificates = certificates
            .iter()
            .map(|certificate| {
                let key = certified_key(certificate)
                    .map_err(|error| format!("certificate {}: {error}", certificate.arn))?;
                let names = certificate
                    .names
                    .iter()
                    .map(|name| name.to_ascii_lowercase())
                    .collect();
                Ok((names, Arc::new(key)))
            })
            .collect::<Result<_, String>>()?;
        Ok(CertificateSet { certificates })
    }

    /// The certificate for `server_name`: an exact name first, then a wildcard covering it,
    /// then the default.
    pub fn pick(&self, server_name: Option<&str>) -> &Arc<CertifiedKey> {
        let default = &self.certificates[0].1;
        let Some(name) = server_name.map(str::to_ascii_lowercase) else {
            return default;
        };
        let exact = self
            .certificates
            .iter()
            .find(|(names, _)| names.contains(&name));
        let wildcard = || {
            let (_, parent) = name.split_once('.')?;
            self.certificates
                .iter()
                .find(|(names, _)| names.iter().any(|n| n.strip_prefix("*.") == Some(parent)))
        };
        exact.or_else(wildcard).map_or(default, |(_, key)| key)
    }
}

impl ResolvesServerCert for CertificateSet {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(client_hello.server_name()).clone())
    }
}

fn certified_key(certificate: &ServerCertificate) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(certificate.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("unreadable certificate chain: {error}"))?;
    if chain.is_empty() {
        return Err("no certificate in its chain".into());
    }
    let key = PrivateKeyDer::from_pem_slice(certificate.private_key_pem.as_bytes())
        .map_err(|error| format!("unreadable private key: {error}"))?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|error| format!("unusable private key: {error}"))?;
    Ok(CertifiedKey::new(chain, signing_key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(arn: &str, names: &[&str]) -> ServerCertificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        ServerCertificate {
            arn: arn.into(),
            names: names.iter().map(|n| n.to_string()).collect(),
            chain_pem: cert.pem(),
            private_key_pem: key.serialize_pem(),
        }
    }

    /// DescribeSSLPolicies lists `model::elb::TLS_CIPHERS`: they are what rustls offers here.
    #[test]
    fn the_listed_ciphers_are_the_providers() {
        let offered: Vec<(&str, &str)> = rustls::crypto::ring::default_provider()
            .cipher_suites
            .iter()
            .map(|suite| {
                let version = match suite.version().version {
                    rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
                    _ => "TLSv1.2",
                };
                (version, openssl_name(suite.suite()))
            })
            .collect();
        assert_eq!(offered, model::elb::TLS_CIPHERS);
    }

    #[test]
    fn the_server_name_picks_the_certificate() {
        let set = CertificateSet::of(&[
            certificate("default", &["app.example.com"]),
            certificate("api", &["api.example.com"]),
            certificate("wild", &["*.shop.example.com"]),
        ])
        .unwrap();
        let arn_of = |name: Option<&str>| {
            let picked = set.pick(name);
            set.certificates
                .iter()
                .position(|(_, key)| Arc::ptr_eq(key, picked))
                .unwrap()
        };
        assert_eq!(arn_of(Some("API.example.com")), 1);
        assert_eq!(arn_of(Some("eu.shop.example.com")), 2);
        // A wildcard covers one label only.
        assert_eq!(arn_of(Some("a.eu.shop.example.com")), 0);
        assert_eq!(arn_of(Some("shop.example.com")), 0);
        assert_eq!(arn_of(Some("other.test")), 0);
        assert_eq!(arn_of(None), 0);
    }

    #[test]
    fn unusable_certificates_say_which_and_why() {
        let mut broken = certificate("arn:broken", &["a.test"]);
        broken.private_key_pem =
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".into();
        let error = CertificateSet::of(&[broken]).unwrap_err();
        assert!(error.starts_with("certificate arn:broken: "), "{error}");
        assert!(CertificateSet::of(&[]).is_err());
    }

    #[test]
    fn policies_choose_tls_versions() {
        let versions = |policy| {
            policy_versions(policy)
                .iter()
                .map(|v| v.version)
                .collect::<Vec<_>>()
        };
        use rustls::ProtocolVersion::{TLSv1_2, TLSv1_3};
        assert_eq!(versions("ELBSecurityPolicy-TLS13-1-3-2021-06"), [TLSv1_3]);
        assert_eq!(
            versions("ELBSecurityPolicy-TLS13-1-2-2021-06"),
            [TLSv1_3, TLSv1_2]
        );
        assert_eq!(versions("ELBSecurityPolicy-2016-08"), [TLSv1_2]);
    }

    #[test]
    fn alpn_follows_the_listener() {
        let h2 = b"h2".to_vec();
        let h1 = b"http/1.1".to_vec();
        assert_eq!(
            alpn_protocols(Terminated::Http { http2: true }, None),
            [h2.clone(), h1.clone()]
        );
        assert_eq!(
            alpn_protocols(Terminated::Http { http2: false }, None),
            std::slice::from_ref(&h1)
        );
        assert!(alpn_protocols(Terminated::Stream, None).is_empty());
        assert_eq!(
            alpn_protocols(Terminated::Stream, Some("HTTP2Optional")),
            [h1, h2]
        );
    }
}
