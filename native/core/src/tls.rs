//! Mutual TLS for vortex over TCP (issue 21). Dragonfly's client sends pieces over plain TCP
//! even when its gRPC is on mTLS; ours can put the piece connections under TLS 1.3 too, with
//! the cluster's CA on both sides: a parent serves only children whose certificate the CA
//! signed, and a child takes pieces only from a parent whose certificate names the address it
//! dialled. rustls with ring, the provider the QUIC endpoint already links.
//!
//! A parent in `Optional` mode tells the two apart by the first byte a client sends: a TLS
//! ClientHello starts with the handshake record type (22); no vortex request does (its first
//! byte is the request's tag: 0, 2 or 4), so Dragonfly's plaintext children keep working in a
//! mixed swarm while ours use TLS.

use crate::error::{CoreError, ErrorCode, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

/// The first byte of a TLS record carrying a handshake message (a ClientHello).
pub const TLS_HANDSHAKE_RECORD: u8 = 22;

/// PEM inputs of one side: the CA that signs the cluster's certificates, and this side's own.
#[derive(Clone)]
pub struct TlsIdentity {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Whether a TLS-configured piece server also accepts plaintext clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS only: a plaintext client's request fails the handshake and its connection closes.
    Required,
    /// TLS for clients that start a handshake, plaintext for the others (Dragonfly's).
    Optional,
}

fn invalid(what: &str, e: impl std::fmt::Display) -> CoreError {
    CoreError::new(ErrorCode::InvalidArgument, format!("tls: {what}: {e}"))
}

/// rustls 0.23.48 deprecates its ring provider for lacking post-quantum key exchange. The core
/// already links ring (QUIC, digests); aws-lc-rs would add a C/CMake build to every install.
/// The cost: X25519 alone, so a recording of today's piece traffic could be decrypted by a
/// future quantum computer; the pieces are a cache of origin content, and the certificates'
/// signatures (what keeps strangers out) are not affected. Revisit when ring gains ML-KEM.
#[allow(deprecated)]
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &[u8]) -> Result<Arc<RootCertStore>> {
    let mut roots = RootCertStore::empty();
    let mut n = 0;
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.map_err(|e| invalid("CA certificate", e))?).map_err(|e| invalid("CA certificate", e))?;
        n += 1;
    }
    if n == 0 {
        return Err(invalid("CA certificate", "no certificate in the PEM"));
    }
    Ok(Arc::new(roots))
}

fn chain_and_key(id: &TlsIdentity) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_slice_iter(&id.cert_pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| invalid("certificate", e))?;
    if chain.is_empty() {
        return Err(invalid("certificate", "no certificate in the PEM"));
    }
    let key = PrivateKeyDer::from_pem_slice(&id.key_pem).map_err(|e| invalid("private key", e))?;
    Ok((chain, key))
}

/// A piece server's TLS: its certificate, and client certificates required and verified
/// against the CA.
pub fn server_config(id: &TlsIdentity) -> Result<Arc<ServerConfig>> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(&id.ca_pem)?, provider())
        .build()
        .map_err(|e| invalid("client verifier", e))?;
    let (chain, key) = chain_and_key(id)?;
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| invalid("protocol versions", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| invalid("certificate and key", e))?;
    Ok(Arc::new(cfg))
}

/// A child's TLS towards parents, parsed once per distinct identity: every piece request of a
/// daemon carries the same PEMs, and parsing them per request would cost more than the piece.
pub fn client_config(id: &TlsIdentity) -> Result<Arc<ClientConfig>> {
    static CACHE: OnceLock<Mutex<HashMap<u64, Arc<ClientConfig>>>> = OnceLock::new();
    let mut h = DefaultHasher::new();
    (&id.ca_pem, &id.cert_pem, &id.key_pem).hash(&mut h);
    let key = h.finish();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(c) = cache.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(c);
    }
    let (chain, private) = chain_and_key(id)?;
    let cfg = Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| invalid("protocol versions", e))?
            .with_root_certificates(roots(&id.ca_pem)?)
            .with_client_auth_cert(chain, private)
            .map_err(|e| invalid("certificate and key", e))?,
    );
    if let Ok(mut m) = cache.lock() {
        // A daemon has one identity; a handful covers rotation without growing for ever.
        if m.len() >= 8 {
            m.clear();
        }
        m.insert(key, cfg.clone());
    }
    Ok(cfg)
}

/// The name a parent's certificate must carry: the IP (or host name) the child dialled.
pub fn server_name(addr: &str) -> Result<ServerName<'static>> {
    let host = match addr.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => addr,
    };
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(ServerName::IpAddress(ip.into())),
        Err(_) => ServerName::try_from(host.to_string()).map_err(|e| invalid(&format!("server name {host}"), e)),
    }
}

#[cfg(test)]
pub(crate) mod testpki {
    use super::TlsIdentity;

    /// A CA, and identities for `names` (IPs or DNS names) signed by it.
    pub fn cluster(names: &[&str]) -> (TlsIdentity, Vec<TlsIdentity>) {
        let ca_params = {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new());
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p.distinguished_name.push(rcgen::DnType::CommonName, "damselfly test CA");
            p
        };
        let ca = rcgen::Certificate::from_params(ca_params).unwrap();
        let ca_pem = ca.serialize_pem().unwrap().into_bytes();
        let ids = names
            .iter()
            .map(|n| {
                let mut p = rcgen::CertificateParams::new(Vec::<String>::new());
                p.subject_alt_names = vec![match n.parse::<std::net::IpAddr>() {
                    Ok(ip) => rcgen::SanType::IpAddress(ip),
                    Err(_) => rcgen::SanType::DnsName((*n).to_string()),
                }];
                p.distinguished_name.push(rcgen::DnType::CommonName, *n);
                let c = rcgen::Certificate::from_params(p).unwrap();
                TlsIdentity {
                    ca_pem: ca_pem.clone(),
                    cert_pem: c.serialize_pem_with_signer(&ca).unwrap().into_bytes(),
                    key_pem: c.serialize_private_key_pem().into_bytes(),
                }
            })
            .collect();
        let ca_id = TlsIdentity { ca_pem: ca_pem.clone(), cert_pem: Vec::new(), key_pem: Vec::new() };
        (ca_id, ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_build_from_a_cluster_pki_and_bad_pem_names_the_part() {
        let (_, ids) = testpki::cluster(&["127.0.0.1"]);
        assert!(server_config(&ids[0]).is_ok());
        let a = client_config(&ids[0]).unwrap();
        let b = client_config(&ids[0]).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "parsed once per identity");
        let bad = TlsIdentity { key_pem: b"not a key".to_vec(), ..ids[0].clone() };
        let e = server_config(&bad).err().unwrap();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
        assert!(e.message.contains("private key"), "{}", e.message);
        let no_ca = TlsIdentity { ca_pem: Vec::new(), ..ids[0].clone() };
        assert!(server_config(&no_ca).err().unwrap().message.contains("CA certificate"));
    }

    #[test]
    fn server_names_are_the_dialled_address() {
        assert_eq!(
            server_name("127.0.0.1:4005").unwrap(),
            ServerName::IpAddress("127.0.0.1".parse::<IpAddr>().unwrap().into())
        );
        assert_eq!(server_name("[::1]:4005").unwrap(), ServerName::IpAddress("::1".parse::<IpAddr>().unwrap().into()));
        assert!(matches!(server_name("peer-3.example:4005").unwrap(), ServerName::DnsName(_)));
    }
}
