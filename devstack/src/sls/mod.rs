//! An SLS-compatible server, faithful enough that Alibaba's own SDKs cannot tell
//! it from the service (checked by `tests/conformance`).
//!
//! # Layout
//!
//! | file | job |
//! |---|---|
//! | `server.rs` | `Listener` (accept loop, connection cap, graceful shutdown) and per-request handling: Host → project, auth, body, answer |
//! | `auth.rs` | signatures v1 and v4, STS tokens, clock skew |
//! | `body.rs` | 10 MiB limit, lz4 / zstd / deflate bodies, `x-log-bodyrawsize` |
//! | `api.rs` | one function per SLS call |
//! | `store.rs` | projects, logstores, shards (ranges, split, merge, routing), log groups, cursors |
//! | `consumer_group.rs` | server-side shard assignment (±1, transfer, timeout, over) and checkpoints |
//! | `faults.rs` | injected 5xx, 403 quota errors, a read throughput cap; request stats |
//! | `persist.rs` | `--data-dir` |
//! | `writer.rs` | a small signed PutLogs client: `gen --sls-endpoint` |

mod api;
mod auth;
mod body;
mod consumer_group;
mod error;
mod faults;
mod persist;
mod server;
mod store;
pub mod writer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;

use parking_lot::RwLock;

pub use api::{decode_cursor, encode_cursor};
pub use error::ApiError;
pub use faults::FaultConfig;
pub use server::{SlsServer, StartError};

/// How to run the SLS server (the `trail-devstack sls` flags).
#[derive(Debug, Clone, clap::Args)]
pub struct SlsConfig {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:39001")]
    pub listen: SocketAddr,
    /// The AccessKey id clients sign with.
    #[arg(long, env = "DEVSTACK_ACCESS_KEY_ID", default_value = "devstack-ak")]
    pub access_key_id: String,
    /// The AccessKey secret clients sign with.
    #[arg(
        long,
        env = "DEVSTACK_ACCESS_KEY_SECRET",
        default_value = "devstack-secret",
        hide_env_values = true
    )]
    pub access_key_secret: String,
    /// An STS credential to accept as well, `AK:SECRET:TOKEN` (repeatable).
    #[arg(long = "sts-credential", value_name = "AK:SECRET:TOKEN")]
    pub sts_credentials: Vec<String>,
    /// Base domains: the project is the Host minus `.{domain}` (or the first
    /// label when the rest is an IPv4 address).
    #[arg(long = "domain", default_values_t = ["sls.test".to_string(), "localhost".to_string()])]
    pub domains: Vec<String>,
    /// Region reported by GetProject.
    #[arg(long, default_value = "cn-devstack")]
    pub region: String,
    /// A project to create at start (none if empty).
    #[arg(long, default_value = "trail-demo")]
    pub project: String,
    /// A logstore to create in it at start (none if empty).
    #[arg(long, default_value = "actiontrail_demo")]
    pub logstore: String,
    /// Shards of that logstore.
    #[arg(long, default_value_t = 2)]
    pub shards: u32,
    /// More logstores to create in the project at start (repeatable).
    #[arg(long = "extra-logstore")]
    pub extra_logstores: Vec<String>,
    /// Keep data here across restarts (in memory if absent).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Clamp cursors beyond the end of a shard to its end instead of answering
    /// `InvalidCursor`.
    #[arg(long)]
    pub clamp_cursors: bool,
    #[command(flatten)]
    pub faults: FaultConfig,
}

impl SlsConfig {
    /// Defaults, listening on `listen`, for tests and the demo.
    pub fn on(listen: SocketAddr) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            c: SlsConfig,
        }
        let mut c = Wrapper::parse_from(["devstack"]).c;
        c.listen = listen;
        c
    }
}

/// Settings the request path reads.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub domains: Vec<String>,
    pub region: String,
    pub clamp_cursors: bool,
}

/// Everything a request may touch.
pub(crate) struct SlsState {
    pub store: RwLock<store::Store>,
    pub credentials: auth::Credentials,
    pub faults: faults::Faults,
    pub stats: faults::Stats,
    pub config: Settings,
    pub data_dir: Option<persist::DataDir>,
    pub request_seq: AtomicU64,
}

impl SlsState {
    /// Rewrites `meta.json` after a metadata change (no-op in memory).
    pub fn persist_meta(&self) {
        if let Some(d) = &self.data_dir {
            if let Err(e) = d.save_meta(&self.store.read()) {
                tracing::error!(error = %e, "devstack could not save its metadata");
            }
        }
    }

    /// Appends a log group to its shard file before the put is acknowledged.
    pub fn persist_group(
        &self,
        project: &str,
        logstore: &str,
        shard: u32,
        receive_time: u32,
        bytes: &[u8],
    ) -> Result<(), ApiError> {
        match &self.data_dir {
            Some(d) => d
                .append_group(project, logstore, shard, receive_time, bytes)
                .map_err(|e| {
                    ApiError::new(500, "InternalServerError", format!("devstack storage: {e}"))
                }),
            None => Ok(()),
        }
    }
}
