//! TLS for the gRPC listener and for calls to peers (`[control.tls]`):
//! rustls through tonic. With `client_auth`, callers must present a
//! certificate signed by the configured CA (mTLS); a node presents its own
//! certificate when it calls its peers.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// `[control.tls]`: PEM files.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The node's certificate chain; also its client identity towards peers.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signs the nodes' certificates (peers are verified against it).
    pub ca: PathBuf,
    /// Callers (peers, trailctl, other systems) must present a certificate signed by `ca`.
    #[serde(default)]
    pub client_auth: bool,
}

/// What a node calls its peers with. Debug never shows the key.
#[derive(Clone)]
pub struct PeerTls(pub ClientTlsConfig);

impl fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerTls(..)")
    }
}

/// The listener's and the peer client's TLS settings.
pub struct Tls {
    pub server: ServerTlsConfig,
    pub peers: PeerTls,
}

fn read(key: &str, path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key}: {}: {e}", path.display()))
}

/// Loads the PEM files; errors name the key.
pub fn load(c: &TlsConfig) -> Result<Tls, String> {
    let cert = read("control.tls.cert", &c.cert)?;
    let key = read("control.tls.key", &c.key)?;
    let ca = Certificate::from_pem(read("control.tls.ca", &c.ca)?);
    let identity = Identity::from_pem(&cert, &key);
    let mut server = ServerTlsConfig::new().identity(identity.clone());
    if c.client_auth {
        server = server.client_ca_root(ca.clone());
    }
    let peers = ClientTlsConfig::new().ca_certificate(ca).identity(identity);
    Ok(Tls {
        server,
        peers: PeerTls(peers),
    })
}
