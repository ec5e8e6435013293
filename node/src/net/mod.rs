//! Network facilities every client and listener shares: TLS material
//! (`[control.tls]`, for the gRPC listener and peer calls) and the one way
//! Trail builds an HTTP client and reads an answer's body (never past the
//! caller's cap) — and the request-signing arithmetic of the clouds' APIs
//! (`sign`: Alibaba RPC V2 and V3, AWS SigV4). Floor 0: imports nothing of the crate.

pub mod http;
pub mod sign;
pub mod tls;
