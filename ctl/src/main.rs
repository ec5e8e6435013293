//! `trailctl`: the operator CLI of a Trail cluster, over its gRPC API
//! (`trail.v1.Control` and `trail.v1.Tags`, `proto/trail/v1/`). Any node
//! answers; writes are forwarded to the raft leader.
//!
//! * `status [-o json] [--watch N]` — the cluster header, nodes, shards
//!   (owner, epoch, state, lag in seconds) and sinks;
//! * `rebalance [--dry-run]` — plan sticky moves (and carry them out);
//! * `members list|add ID ADDR|remove ID`, `drain ID [--undo]`;
//! * `tags get ARN…|put ARN k=v…|list [--prefix P]|import FILE`.
//!
//! The endpoint comes from `--endpoint` or `TRAIL_ENDPOINT`, the bearer token
//! from `--token` or `TRAIL_TOKEN`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde_json::{json, Value};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use trail_proto::trail::v1 as pb;
use trail_proto::trail::v1::control_client::ControlClient;
use trail_proto::trail::v1::tags_client::TagsClient;

#[derive(Parser)]
#[command(name = "trailctl", version, about = "Operate a Trail cluster")]
struct Cli {
    /// Any node's gRPC API: a URL, or `host:port` (http; https with --ca).
    #[arg(
        long,
        env = "TRAIL_ENDPOINT",
        default_value = "http://127.0.0.1:7400",
        global = true
    )]
    endpoint: String,
    /// The control token (`[control] token` of the nodes).
    #[arg(long, env = "TRAIL_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// With an https endpoint: the CA that signed the nodes' certificates (PEM).
    #[arg(long, env = "TRAIL_CA", global = true)]
    ca: Option<PathBuf>,
    /// A client certificate (PEM) for nodes that require mTLS (`client_auth`).
    #[arg(long, env = "TRAIL_CERT", global = true, requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's key (PEM).
    #[arg(long, env = "TRAIL_KEY", global = true, requires = "cert")]
    key: Option<PathBuf>,
    /// Table for people, JSON for scripts.
    #[arg(short, long, value_enum, default_value = "table", global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Cluster, node, shard and sink status.
    Status {
        /// Refresh every N seconds until interrupted.
        #[arg(long, value_name = "SECS")]
        watch: Option<u64>,
    },
    /// Plan a sticky rebalance of shards over live nodes and carry it out
    /// as graceful moves (the owner drains and commits before the new one starts).
    Rebalance {
        /// Print the plan, move nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Cluster membership.
    Members {
        #[command(subcommand)]
        command: MembersCommand,
    },
    /// Move every shard off a node, gracefully, and give it none (maintenance).
    Drain {
        /// The node's raft id.
        id: u64,
        /// Make the node eligible for shards again.
        #[arg(long)]
        undo: bool,
    },
    /// The replicated tag tier.
    Tags {
        #[command(subcommand)]
        command: TagsCommand,
    },
}

#[derive(Subcommand)]
enum MembersCommand {
    /// Voters and learners with their addresses.
    List,
    /// Add a running node (learner, catch-up, then voter).
    Add {
        /// The node's raft id (`[cluster] node_id`).
        id: u64,
        /// Its gRPC address, host:port.
        addr: String,
    },
    /// Move a node's shards off it, then remove it from the voters.
    Remove { id: u64 },
}

#[derive(Subcommand)]
enum TagsCommand {
    /// Tags of resources, by ARN.
    Get {
        #[arg(required = true)]
        arns: Vec<String>,
    },
    /// Set a resource's tags (replacing what it had): `put ARN key=value ...`.
    Put { arn: String, tags: Vec<String> },
    /// Resources in ARN order.
    List {
        #[arg(long, default_value = "")]
        prefix: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Load a tags file (the JSON of `trail-devstack gen --tags-out` or
    /// `[tags] file`: {"resources": [{"arn": "...", "tags": {...}}]}).
    Import { file: PathBuf },
}

type Authed = InterceptedService<Channel, Bearer>;

#[derive(Clone)]
struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(b) = &self.0 {
            req.metadata_mut().insert("authorization", b.clone());
        }
        Ok(req)
    }
}

struct Api {
    endpoint: String,
    control: ControlClient<Authed>,
    tags: TagsClient<Authed>,
}

impl Api {
    async fn connect(cli: &Cli) -> Result<Api> {
        let endpoint = &endpoint_url(&cli.endpoint, cli.ca.is_some());
        let token = cli.token.as_deref();
        let mut ep =
            tonic::transport::Endpoint::from_shared(endpoint.to_owned()).with_context(|| {
                format!("endpoint {endpoint:?} is not a URL (e.g. 127.0.0.1:7400 or http://127.0.0.1:7400)")
            })?;
        if endpoint.starts_with("https://") {
            let ca = cli.ca.as_ref().context(
                "an https endpoint needs --ca (or TRAIL_CA): the CA of the nodes' certificates",
            )?;
            let read =
                |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let mut tls = tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
            if let (Some(cert), Some(key)) = (&cli.cert, &cli.key) {
                tls = tls.identity(tonic::transport::Identity::from_pem(
                    read(cert)?,
                    read(key)?,
                ));
            }
            ep = ep.tls_config(tls).context("TLS settings")?;
        }
        let channel = ep
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(90))
            .connect()
            .await
            .map_err(|e| {
                // The transport error alone says little; its causes say why (refused, TLS).
                let mut why = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    why.push_str(": ");
                    why.push_str(&s.to_string());
                    source = s.source();
                }
                anyhow::anyhow!("cannot reach a Trail node at {endpoint}: {why} (is trail-node running with [control] listen, and TLS as the endpoint says?)")
            })?;
        let bearer = Bearer(match token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .context("the token is not a valid header value")?,
            ),
            None => None,
        });
        Ok(Api {
            endpoint: endpoint.to_owned(),
            control: ControlClient::with_interceptor(channel.clone(), bearer.clone()),
            tags: TagsClient::with_interceptor(channel, bearer),
        })
    }

    fn fail(&self, s: tonic::Status) -> anyhow::Error {
        let endpoint = &self.endpoint;
        match s.code() {
            tonic::Code::Unauthenticated => anyhow::anyhow!(
                "unauthorized by {endpoint}: {} (set --token or TRAIL_TOKEN)",
                s.message()
            ),
            tonic::Code::Unavailable if s.message().contains("transport") => {
                anyhow::anyhow!("cannot reach a Trail node at {endpoint}: {}", s.message())
            }
            // TLS 1.3 finishes the client's side of the handshake before the
            // server checks the client certificate: a refusal shows up here.
            tonic::Code::Cancelled | tonic::Code::Unknown if endpoint.starts_with("https://") => {
                anyhow::anyhow!(
                    "{endpoint} dropped the call ({}): the node may require a client certificate \
                     signed by its CA (--cert/--key, or TRAIL_CERT/TRAIL_KEY)",
                    s.message()
                )
            }
            code => anyhow::anyhow!("{endpoint} answered {code:?}: {}", s.message()),
        }
    }
}

fn print_json(v: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn print_moves(moves: &[pb::Move], output: Output, applied: bool) -> Result<()> {
    if let Output::Json = output {
        return print_json(&json!({
            "applied": applied,
            "moves": moves.iter().map(|m| json!({
                "logstore": m.logstore, "shard": m.shard, "from": m.from, "to": m.to, "reason": m.reason,
            })).collect::<Vec<_>>(),
        }));
    }
    if moves.is_empty() {
        println!("no moves: the assignment is balanced");
        return Ok(());
    }
    let mut t = table(&["logstore", "shard", "from", "to", "reason"]);
    for m in moves {
        t.add_row(vec![
            m.logstore.clone(),
            m.shard.to_string(),
            if m.from.is_empty() {
                "-".into()
            } else {
                m.from.clone()
            },
            m.to.clone(),
            m.reason.clone(),
        ]);
    }
    println!("{t}");
    println!(
        "{} move(s) {}",
        moves.len(),
        if applied {
            "started"
        } else {
            "planned (dry run: nothing moved)"
        }
    );
    Ok(())
}

fn print_members(m: &pb::MembersResponse, output: Output) -> Result<()> {
    if let Output::Json = output {
        return print_json(&json!({
            "joint": m.joint,
            "members": m.members.iter().map(|x| json!({
                "id": x.id, "addr": x.addr, "role": x.role, "draining": x.draining, "name": x.name,
            })).collect::<Vec<_>>(),
        }));
    }
    let mut t = table(&["id", "name", "addr", "role", "draining"]);
    for x in &m.members {
        t.add_row(vec![
            x.id.to_string(),
            x.name.clone(),
            x.addr.clone(),
            x.role.clone(),
            x.draining.to_string(),
        ]);
    }
    println!("{t}");
    if m.joint {
        println!("a joint configuration is in force (a membership change is under way)");
    }
    Ok(())
}

fn print_tags(r: &[pb::ResourceTags], output: Output) -> Result<()> {
    if let Output::Json = output {
        return print_json(&json!(r
            .iter()
            .map(|x| json!({
                "arn": x.arn, "tags": x.tags, "origin": x.origin, "updated_ms": x.updated_ms,
            }))
            .collect::<Vec<_>>()));
    }
    let mut t = table(&["arn", "tags", "origin"]);
    for x in r {
        let mut tags: Vec<String> = x.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
        tags.sort();
        t.add_row(vec![x.arn.clone(), tags.join(" "), x.origin.clone()]);
    }
    println!("{t}");
    Ok(())
}

fn parse_tags(pairs: &[String]) -> Result<std::collections::HashMap<String, String>> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .with_context(|| format!("{p:?} is not key=value"))
        })
        .collect()
}

/// Resources of a tags file.
fn read_tags_file(path: &PathBuf) -> Result<Vec<pb::ResourceTags>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let v: Value =
        serde_json::from_slice(&raw).with_context(|| format!("{} is not JSON", path.display()))?;
    let list = v
        .get("resources")
        .and_then(Value::as_array)
        .with_context(|| format!("{}: no \"resources\" array", path.display()))?;
    list.iter()
        .enumerate()
        .map(|(i, r)| {
            let arn = r
                .get("arn")
                .and_then(Value::as_str)
                .with_context(|| format!("resources[{i}].arn is missing"))?;
            let tags = r
                .get("tags")
                .and_then(Value::as_object)
                .map(|o| {
                    o.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                v.as_str()
                                    .map(str::to_owned)
                                    .unwrap_or_else(|| v.to_string()),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            Ok(pb::ResourceTags {
                arn: arn.to_owned(),
                tags,
                origin: String::new(),
                updated_ms: 0,
            })
        })
        .collect()
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("trailctl: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The error and its causes, never a backtrace (whatever
            // RUST_BACKTRACE says): these are the user's errors, not ours.
            eprintln!("trailctl: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// `--endpoint` as a URL: a bare `host:port` (as `trailctl status` prints
/// node addresses) means http, or https when a CA is given.
fn endpoint_url(raw: &str, tls: bool) -> String {
    let raw = raw.trim();
    if raw.contains("://") {
        raw.to_owned()
    } else if tls {
        format!("https://{raw}")
    } else {
        format!("http://{raw}")
    }
}

async fn run(cli: Cli) -> Result<()> {
    let mut api = Api::connect(&cli).await?;
    let output = cli.output;
    match cli.command {
        Command::Status { watch } => loop {
            let s = match api.control.status(pb::StatusRequest {}).await {
                Ok(r) => r.into_inner(),
                Err(e) => return Err(api.fail(e)),
            };
            if watch.is_some() && matches!(output, Output::Table) {
                print!("\x1b[2J\x1b[H");
            }
            match output {
                Output::Table => print_tables(&s),
                Output::Json => print_json(&to_json(&s))?,
            }
            match watch {
                Some(n) => tokio::time::sleep(Duration::from_secs(n.max(1))).await,
                None => return Ok(()),
            }
        },
        Command::Rebalance { dry_run } => {
            let r = api
                .control
                .rebalance(pb::RebalanceRequest { dry_run })
                .await
                .map_err(|e| api.fail(e))?
                .into_inner();
            print_moves(&r.moves, output, r.applied)
        }
        Command::Members { command } => {
            let r = match command {
                MembersCommand::List => api.control.list_members(pb::ListMembersRequest {}).await,
                MembersCommand::Add { id, addr } => {
                    api.control
                        .add_member(pb::AddMemberRequest { id, addr })
                        .await
                }
                MembersCommand::Remove { id } => {
                    api.control
                        .remove_member(pb::RemoveMemberRequest { id })
                        .await
                }
            }
            .map_err(|e| api.fail(e))?;
            print_members(&r.into_inner(), output)
        }
        Command::Drain { id, undo } => {
            let r = api
                .control
                .drain(pb::DrainRequest { id, undo })
                .await
                .map_err(|e| api.fail(e))?
                .into_inner();
            print_moves(&r.moves, output, true)
        }
        Command::Tags { command } => match command {
            TagsCommand::Get { arns } => {
                let r = api
                    .tags
                    .get(pb::GetTagsRequest { arns })
                    .await
                    .map_err(|e| api.fail(e))?
                    .into_inner();
                print_tags(&r.resources, output)
            }
            TagsCommand::List { prefix, limit } => {
                let r = api
                    .tags
                    .list(pb::ListTagsRequest {
                        prefix,
                        after: String::new(),
                        limit,
                    })
                    .await
                    .map_err(|e| api.fail(e))?
                    .into_inner();
                print_tags(&r.resources, output)
            }
            TagsCommand::Put { arn, tags } => {
                let tags = parse_tags(&tags)?;
                let r = api
                    .tags
                    .put(pb::PutTagsRequest {
                        resources: vec![pb::ResourceTags {
                            arn,
                            tags,
                            origin: String::new(),
                            updated_ms: 0,
                        }],
                    })
                    .await
                    .map_err(|e| api.fail(e))?
                    .into_inner();
                println!("{} resource(s) written", r.written);
                Ok(())
            }
            TagsCommand::Import { file } => {
                let resources = read_tags_file(&file)?;
                let n = resources.len();
                let r = api
                    .tags
                    .import(tokio_stream::iter(resources))
                    .await
                    .map_err(|e| api.fail(e))?
                    .into_inner();
                println!("{} of {n} resource(s) imported", r.written);
                Ok(())
            }
        },
    }
}

fn to_json(s: &pb::StatusResponse) -> Value {
    json!({
        "cluster_id": s.cluster_id,
        "leader_id": s.leader_id,
        "term": s.term,
        "commit_index": s.commit_index,
        "applied_index": s.applied_index,
        "answered_by": s.answered_by,
        "voters": s.voters, "learners": s.learners,
        "shards_assigned": s.shards_assigned, "shards_total": s.shards_total, "slots": s.slots,
        "slots_free": s.slots_free, "slot_headroom": s.slot_headroom,
        "nodes": s.nodes.iter().map(|n| json!({
            "id": n.id, "name": n.name, "addr": n.addr, "role": n.role, "state": n.state, "pid": n.pid,
            "heartbeat_age_seconds": n.heartbeat_age_seconds,
            "shards_owned": n.shards_owned, "shards_standby": n.shards_standby,
            "events_per_second": n.events_per_second, "errors": n.errors,
        })).collect::<Vec<_>>(),
        "shards": s.shards.iter().map(|x| json!({
            "logstore": x.logstore, "shard": x.shard, "owner": x.owner, "epoch": x.epoch,
            "state": x.state, "checkpoint_age_seconds": x.checkpoint_age_seconds,
            "lag_seconds": x.lag_seconds, "events_per_second": x.events_per_second,
            "cursor": x.cursor, "standbys": x.standbys, "partition": x.partition,
        })).collect::<Vec<_>>(),
        "sinks": s.sinks.iter().map(|x| json!({
            "name": x.name, "kind": x.kind, "events": x.events, "bytes": x.bytes,
            "errors": x.errors, "retries": x.retries, "requests": x.requests,
            "dead_lettered": x.dead_lettered, "stopped": x.stopped,
            "queued": x.queued, "p99_latency_seconds": x.p99_latency_seconds,
            "delivery": x.delivery,
        })).collect::<Vec<_>>(),
    })
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.to_vec());
    t
}

/// What an operator must see first: shards without an owner, and a cluster
/// that could not absorb the death of a node.
fn warnings(s: &pb::StatusResponse) -> Vec<String> {
    let mut w = Vec::new();
    let unassigned = s.shards_total.saturating_sub(s.shards_assigned);
    if unassigned > 0 {
        w.push(if s.slots_free == 0 && s.slot_headroom.is_some() {
            format!(
                "WARNING: {unassigned} of {} shards have no owner and no node has a free slot: raise cluster.slots (0 = auto) or add nodes",
                s.shards_total
            )
        } else {
            format!(
                "WARNING: {unassigned} of {} shards have no owner",
                s.shards_total
            )
        });
    }
    if let Some(h) = s.slot_headroom.filter(|h| *h < 0) {
        w.push(format!(
            "WARNING: if the node with the most slots died, {} shard(s) would find no owner (headroom {h})",
            -h
        ));
    }
    w
}

fn print_tables(s: &pb::StatusResponse) {
    for w in warnings(s) {
        println!("{w}");
    }
    println!(
        "cluster {}  leader {}  term {}  commit/applied {}/{}  voters {} learners {}  shards {}/{} assigned  slots {} ({} free, headroom {})  (answered by {})",
        s.cluster_id,
        if s.leader_id.is_empty() { "none" } else { &s.leader_id },
        s.term,
        s.commit_index,
        s.applied_index,
        s.voters,
        s.learners,
        s.shards_assigned,
        s.shards_total,
        s.slots,
        s.slots_free,
        s.slot_headroom
            .map_or_else(|| "-".to_owned(), |h| h.to_string()),
        s.answered_by
    );
    let mut t = table(&[
        "node",
        "name",
        "addr",
        "role",
        "state",
        "pid",
        "heartbeat",
        "owned",
        "standby",
        "events/s",
        "errors",
    ]);
    for n in &s.nodes {
        t.add_row(vec![
            n.id.clone(),
            n.name.clone(),
            n.addr.clone(),
            n.role.clone(),
            n.state.clone(),
            n.pid.to_string(),
            if n.heartbeat_age_seconds < 0.0 {
                "-".to_owned()
            } else {
                format!("{:.1}s", n.heartbeat_age_seconds)
            },
            n.shards_owned.to_string(),
            n.shards_standby.to_string(),
            format!("{:.0}", n.events_per_second),
            n.errors.to_string(),
        ]);
    }
    println!("{t}");
    let mut t = table(&[
        "logstore",
        "shard",
        "owner",
        "epoch",
        "state",
        "standby",
        "checkpoint age",
        "lag",
        "events/s",
    ]);
    for x in &s.shards {
        t.add_row(vec![
            x.logstore.clone(),
            // A partition of an S3 trail is named by its prefix.
            match x.partition.as_str() {
                "" => x.shard.to_string(),
                p => p.to_owned(),
            },
            x.owner.clone(),
            x.epoch.to_string(),
            x.state.clone(),
            x.standbys.join(","),
            format!("{:.0}s", x.checkpoint_age_seconds),
            format!("{:.0}s", x.lag_seconds),
            format!("{:.0}", x.events_per_second),
        ]);
    }
    println!("{t}");
    let mut t = table(&[
        "sink",
        "events",
        "bytes",
        "requests",
        "errors",
        "retries",
        "dead-lettered",
        "queue",
        "p99",
        "delivery",
        "state",
    ]);
    for x in &s.sinks {
        t.add_row(vec![
            x.name.clone(),
            x.events.to_string(),
            x.bytes.to_string(),
            x.requests.to_string(),
            x.errors.to_string(),
            x.retries.to_string(),
            x.dead_lettered.to_string(),
            x.queued.to_string(),
            format!("{:.0}ms", x.p99_latency_seconds * 1000.0),
            x.delivery.clone(),
            if x.stopped { "STOPPED" } else { "ok" }.to_owned(),
        ]);
    }
    println!("{t}");
}

#[cfg(test)]
mod tests {
    use super::{endpoint_url, pb, warnings};

    #[test]
    fn unowned_shards_and_a_cluster_that_cannot_absorb_a_death_come_first() {
        let healthy = pb::StatusResponse {
            shards_total: 512,
            shards_assigned: 512,
            slots: 770,
            slots_free: 258,
            slot_headroom: Some(262),
            ..Default::default()
        };
        assert!(warnings(&healthy).is_empty());
        let full = pb::StatusResponse {
            shards_assigned: 80,
            slots: 80,
            slots_free: 0,
            slot_headroom: Some(-440),
            ..healthy.clone()
        };
        let w = warnings(&full);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("432 of 512 shards have no owner and no node has a free slot"));
        assert!(w[1].contains("440 shard(s) would find no owner"));
        // Without the leader's view (no headroom): only what the state says.
        let unknown = pb::StatusResponse {
            slot_headroom: None,
            ..full
        };
        assert_eq!(
            warnings(&unknown),
            vec!["WARNING: 432 of 512 shards have no owner"]
        );
    }

    #[test]
    fn bare_addresses_get_a_scheme() {
        assert_eq!(
            endpoint_url("127.0.0.1:7402", false),
            "http://127.0.0.1:7402"
        );
        assert_eq!(endpoint_url("node-2:7400", true), "https://node-2:7400");
        assert_eq!(
            endpoint_url("https://node-2:7400", false),
            "https://node-2:7400"
        );
        assert_eq!(
            endpoint_url(" http://[::1]:7400 ", true),
            "http://[::1]:7400"
        );
    }
}
