//! The SLS (Alibaba Cloud Log Service) wire protocol, as Trail's client speaks it.
//!
//! Floor 1: imports `secret` and `net` only. Sources, sinks and the
//! dead-letter sink build on it; it knows none of them.
//!
//! # Layout
//!
//! | file | job |
//! |---|---|
//! | `endpoint.rs` | `https://{project}.{endpoint}` addressing, and the explicit-address form for private and loopback endpoints |
//! | `credentials.rs` | AccessKey pairs and STS tokens; secrets never printed |
//! | `client.rs` | [`SlsClient`]: ListShards, GetCursor, GetCursorTime, PullLogs, PutLogs, consumer-group checkpoints |
//! | `model.rs` | cursors, shards, pull requests and responses |
//! | `codec.rs` | raw-LZ4-block and zstd bodies, `LogGroupList` decode backed by the response buffer |
//! | `error.rs` | typed SLS error codes and their retry class |
//! | `retry.rs` | exponential backoff with jitter; longer, floored backoff for quota errors |
//!
//! # Why reqwest + prost, not the official `aliyun-log-rust-sdk`
//!
//! Trail signs with Alibaba's own `aliyun-log-sdk-sign` crate, but sends requests
//! itself. The official client (0.3.3) was read and tried, and it does not fit
//! Trail's hot path or its deployments:
//!
//! * **Addressing.** It always connects to `{project}.{endpoint}`. It has no way
//!   to dial an explicit address while keeping the project Host, which Trail
//!   needs for VPC-internal endpoints and for devstack (`proj.127.0.0.1` is
//!   rejected by the `url` crate; `proj.localhost` does not resolve).
//! * **Decoding.** It decodes PullLogs into owned `String`s per key and value;
//!   Trail decodes into `bytes::Bytes` slices of the response buffer (one
//!   allocation per log, none per field), and leaves decompression to the
//!   caller so the pipeline decides which thread spends the CPU.
//! * **Compression.** It decodes only lz4 responses; Trail also takes zstd.
//! * **Errors and retries.** Trail needs quota errors (403 `Shard*QuotaExceed`)
//!   told apart from transient faults and from permanent ones, with counters for
//!   metrics; the official client retries only network errors and 500–503.
//!
//! The official crate still matters: the test suite (`tests/`) drives devstack
//! with it as a second, independent client, so devstack cannot drift into a
//! dialect only Trail speaks.

pub(crate) mod client;
pub mod codec;
mod credentials;
mod endpoint;
mod error;
mod model;
mod retry;

pub use client::{ClientStats, SlsClient, SlsClientBuilder};
pub use codec::{CodecError, Compression};
pub use credentials::Credentials;
pub use endpoint::{Endpoint, EndpointError, Scheme};
pub use error::{ErrorClass, ErrorCode, SlsError};
pub use model::{
    ConsumerGroupCheckpoint, Cursor, CursorPosition, PullRequest, PullResponse, PulledBody,
    PutTarget, Shard, ShardStatus, DEFAULT_MAX_PULL_BYTES,
};
pub use retry::RetryPolicy;
