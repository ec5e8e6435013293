//! Network facilities every client and listener shares: TLS material
//! (`[control.tls]`, for the gRPC listener and peer calls) and the one way
//! Trail builds an HTTP client. Floor 0: imports nothing of the crate.

pub mod http;
pub mod tls;
