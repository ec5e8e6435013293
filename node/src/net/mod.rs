//! Network facilities every client and listener shares: TLS material
//! (`[control.tls]`, for the gRPC listener and peer calls) and the one way
//! Trail builds an HTTP client and reads an answer's body (never past the
//! caller's cap). Floor 0: imports nothing of the crate.

pub mod http;
pub mod tls;
