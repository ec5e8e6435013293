//! A local Trail cluster of real `trail-node` processes on loopback, with
//! devstack's SLS (a steady ActionTrail stream) and HEC receiver: the harness
//! of `tests/cluster.rs` and of the takeover benchmark (`trail-takeover`).
//!
//! Status comes from `trailctl status -o json`, so every check also drives
//! the operator's CLI. Nodes are stopped with SIGKILL.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use trail_devstack::gen::Generator;
use trail_node::sls::{Credentials, Endpoint, PutTarget, SlsClient};

use crate::{
    actiontrail_group, binary, free_port, Devstack, TrailNode, ACCESS_KEY_ID, ACCESS_KEY_SECRET,
    HEC_TOKEN,
};

pub const PROJECT: &str = "trail-ha";
pub const LOGSTORE: &str = "trail_ha";
pub const TOKEN: &str = "cluster-test-token";

/// The peak resident set (VmHWM) of a process, in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Timing knobs written into every node's `[cluster]` and `[source]`.
#[derive(Debug, Clone)]
pub struct Timing {
    pub heartbeat_ms: u64,
    pub lease_ms: u64,
    pub fence_margin_ms: u64,
    pub election_timeout_ms: u64,
    pub commit_interval_ms: u64,
    pub checkpoint_interval_ms: u64,
    pub snapshot_logs: u64,
    /// `node.shutdown_grace_ms`: what SIGTERM gives the sinks.
    pub shutdown_grace_ms: u64,
}

impl Timing {
    /// What an operator gets without setting anything.
    pub fn defaults() -> Timing {
        Timing {
            heartbeat_ms: 250,
            lease_ms: 2_000,
            fence_margin_ms: 500,
            election_timeout_ms: 600,
            commit_interval_ms: 250,
            checkpoint_interval_ms: 1_000,
            snapshot_logs: 5_000,
            shutdown_grace_ms: 30_000,
        }
    }

    /// Tighter commits, so duplicate bounds in tests are small; frequent
    /// snapshots, so restarts and joins go through snapshot install and
    /// log purging.
    pub fn tests() -> Timing {
        Timing {
            commit_interval_ms: 300,
            checkpoint_interval_ms: 100,
            snapshot_logs: 40,
            ..Timing::defaults()
        }
    }
}

/// A test PKI made with the openssl CLI: a CA, a node certificate for
/// 127.0.0.1 (also each node's client identity towards its peers), a client
/// certificate for trailctl, and a client certificate from another CA.
#[derive(Debug, Clone)]
pub struct TestTls {
    pub ca: PathBuf,
    pub node_cert: PathBuf,
    pub node_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

impl TestTls {
    pub fn generate(dir: &std::path::Path) -> TestTls {
        std::fs::create_dir_all(dir).unwrap();
        let sh = |script: &str| {
            let out = Command::new("sh")
                .arg("-ec")
                .arg(script)
                .current_dir(dir)
                .output()
                .expect("openssl (the CLI) makes the test certificates");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        sh(r#"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2   -subj /CN=trail-test-ca -keyout ca.key -out ca.crt 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2   -subj /CN=rogue-ca -keyout rogue-ca.key -out rogue-ca.crt 2>/dev/null
for who in node client rogue; do
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=$who     -keyout $who.key -out $who.csr 2>/dev/null
done
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth,clientAuth
' > node.ext
printf 'extendedKeyUsage=clientAuth
' > client.ext
openssl x509 -req -in node.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile node.ext -out node.crt 2>/dev/null
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile client.ext -out client.crt 2>/dev/null
openssl x509 -req -in rogue.csr -CA rogue-ca.crt -CAkey rogue-ca.key -CAcreateserial -days 2 -extfile client.ext -out rogue.crt 2>/dev/null
"#);
        TestTls {
            ca: dir.join("ca.crt"),
            node_cert: dir.join("node.crt"),
            node_key: dir.join("node.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            rogue_cert: dir.join("rogue.crt"),
            rogue_key: dir.join("rogue.key"),
        }
    }
}

/// A network namespace joined to the host by a veth pair: a second "host"
/// for a node that the test can cut off (`ip link set … down`). Needs root.
pub struct Netns {
    pub name: String,
    host_if: String,
    /// The host side's address (listeners the namespace must reach bind here).
    pub host_ip: String,
    /// The namespace side's address.
    pub ns_ip: String,
    /// A second link, to the services only (devstack SLS and HEC), left up
    /// when [`Netns::link`] cuts the first: a partition from the peers but
    /// not from the source and the sinks. (No packet filter is available
    /// here, so a partial partition is two links, not a rule.)
    pub services: Option<(String, String)>, // (host side interface, host side address)
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Netns {
    /// A namespace with one link (cut it and the namespace is alone).
    pub fn create() -> Result<Netns, String> {
        Self::make(false)
    }

    /// A namespace with a link to the peers and another to the services.
    pub fn create_split() -> Result<Netns, String> {
        Self::make(true)
    }

    fn make(split: bool) -> Result<Netns, String> {
        let n = std::process::id() % 10_000;
        let subnet = 10 + std::process::id() % 240;
        let mut ns = Netns {
            name: format!("trailcut{n}"),
            host_if: format!("tch{n}"),
            host_ip: format!("10.231.{subnet}.1"),
            ns_ip: format!("10.231.{subnet}.2"),
            services: None,
        };
        let _ = ip(&["netns", "del", &ns.name]);
        ip(&["netns", "add", &ns.name])?;
        ns.veth(&ns.host_if, &format!("tcn{n}"), &ns.host_ip, &ns.ns_ip)?;
        if split {
            let (host_if, host_ip) = (format!("tsh{n}"), format!("10.232.{subnet}.1"));
            ns.veth(
                &host_if,
                &format!("tsn{n}"),
                &host_ip,
                &format!("10.232.{subnet}.2"),
            )?;
            ns.services = Some((host_if, host_ip));
        }
        ns.inside(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn inside(&self, args: &[&str]) -> Result<(), String> {
        let mut all = vec!["netns", "exec", self.name.as_str(), "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A veth pair between the host (`host_if`, `host_ip`) and the namespace.
    fn veth(&self, host_if: &str, ns_if: &str, host_ip: &str, ns_ip: &str) -> Result<(), String> {
        let _ = ip(&["link", "del", host_if]);
        ip(&[
            "link", "add", host_if, "type", "veth", "peer", "name", ns_if,
        ])?;
        ip(&["link", "set", ns_if, "netns", &self.name])?;
        ip(&["addr", "add", &format!("{host_ip}/24"), "dev", host_if])?;
        ip(&["link", "set", host_if, "up"])?;
        self.inside(&["addr", "add", &format!("{ns_ip}/24"), "dev", ns_if])?;
        self.inside(&["link", "set", ns_if, "up"])
    }

    /// Cuts (false) or restores (true) the namespace's link to the peers
    /// (its only link unless split).
    pub fn link(&self, up: bool) {
        ip(&["link", "set", &self.host_if, if up { "up" } else { "down" }]).unwrap();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        if let Some((host_if, _)) = &self.services {
            let _ = ip(&["link", "del", host_if]);
        }
        let _ = ip(&["netns", "del", &self.name]);
    }
}

pub struct LocalCluster {
    pub dir: PathBuf,
    /// Where devstack and the nodes outside `netns` listen.
    pub host_ip: String,
    /// Nodes started inside this namespace, with its address.
    pub netns: Option<(Netns, Vec<u64>)>,
    pub sls: Devstack,
    pub hec: Devstack,
    pub nodes: BTreeMap<u64, TrailNode>,
    pub ports: BTreeMap<u64, u16>,
    pub timing: Timing,
    pub shards: u32,
    stream: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
    /// Events written by the stream so far.
    pub written: Arc<AtomicU64>,
    /// mTLS on every node's listener and peer calls; trailctl uses the client certificate.
    pub tls: Option<TestTls>,
    /// TOML appended to every node's config (e.g. `[tags]`).
    pub extra: String,
    /// `source.start` of every node.
    pub source_start: String,
}

pub fn sls_client(sls: &Devstack) -> SlsClient {
    SlsClient::builder(
        Endpoint::parse("http://sls.test")
            .unwrap()
            .with_address(&sls.addr.to_string())
            .unwrap(),
        Credentials::new(ACCESS_KEY_ID, ACCESS_KEY_SECRET),
    )
    .build()
    .unwrap()
}

impl LocalCluster {
    /// devstack and `nodes` nodes: node 1 bootstraps, the others join through it.
    pub fn start(name: &str, nodes: u64, shards: u32, timing: Timing) -> LocalCluster {
        Self::start_with(name, nodes, shards, timing, None)
    }

    /// As [`LocalCluster::start`], everything over mTLS.
    pub fn start_tls(name: &str, nodes: u64, shards: u32, timing: Timing) -> LocalCluster {
        Self::start_opts(
            name,
            nodes,
            shards,
            timing,
            None,
            true,
            String::new(),
            "begin",
        )
    }

    /// As [`LocalCluster::start`], with `extra` TOML in every node's config.
    pub fn start_extra(
        name: &str,
        nodes: u64,
        shards: u32,
        timing: Timing,
        extra: String,
    ) -> LocalCluster {
        Self::start_opts(name, nodes, shards, timing, None, false, extra, "begin")
    }

    /// As [`LocalCluster::start`], with the nodes in `isolated` inside a
    /// network namespace (everything else listens on its host side).
    pub fn start_with(
        name: &str,
        nodes: u64,
        shards: u32,
        timing: Timing,
        isolated: Option<(Netns, Vec<u64>)>,
    ) -> LocalCluster {
        Self::start_opts(
            name,
            nodes,
            shards,
            timing,
            isolated,
            false,
            String::new(),
            "begin",
        )
    }

    /// As [`LocalCluster::start`], with `source.start = start` (`end`, a time).
    pub fn start_from(
        name: &str,
        nodes: u64,
        shards: u32,
        timing: Timing,
        start: &str,
    ) -> LocalCluster {
        Self::start_opts(
            name,
            nodes,
            shards,
            timing,
            None,
            false,
            String::new(),
            start,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn start_opts(
        name: &str,
        nodes: u64,
        shards: u32,
        timing: Timing,
        isolated: Option<(Netns, Vec<u64>)>,
        tls: bool,
        extra: String,
        source_start: &str,
    ) -> LocalCluster {
        let dir = std::env::temp_dir().join(format!("trail-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let shards_arg = shards.to_string();
        let host_ip = isolated
            .as_ref()
            .map(|(ns, _)| ns.host_ip.clone())
            .unwrap_or_else(|| "127.0.0.1".into());
        // Split namespace: the services answer on every address, so the
        // isolated nodes reach them over the services link.
        let services_ip = match isolated.as_ref().and_then(|(ns, _)| ns.services.as_ref()) {
            Some(_) => "0.0.0.0".to_owned(),
            None => host_ip.clone(),
        };
        let sls = Devstack::spawn_on(
            "sls",
            &services_ip,
            &[
                "--access-key-id",
                ACCESS_KEY_ID,
                "--access-key-secret",
                ACCESS_KEY_SECRET,
                "--project",
                PROJECT,
                "--logstore",
                LOGSTORE,
                "--shards",
                &shards_arg,
            ],
        );
        let hec = Devstack::spawn_on("hec", &services_ip, &["--token", HEC_TOKEN]);
        std::env::set_var("TRAIL_TEST_CONTROL_TOKEN", TOKEN);
        let mut c = LocalCluster {
            dir,
            host_ip,
            netns: isolated,
            sls,
            hec,
            nodes: BTreeMap::new(),
            ports: BTreeMap::new(),
            timing,
            shards,
            stream: None,
            written: Arc::default(),
            tls: None,
            extra,
            source_start: source_start.to_owned(),
        };
        if tls {
            c.tls = Some(TestTls::generate(&c.dir.join("pki")));
        }
        for id in 1..=nodes {
            c.add_node(id);
            c.wait_members(id as usize, Duration::from_secs(60));
        }
        c
    }

    /// The address node `id` listens on.
    pub fn node_ip(&self, id: u64) -> String {
        match &self.netns {
            Some((ns, ids)) if ids.contains(&id) => ns.ns_ip.clone(),
            _ => self.host_ip.clone(),
        }
    }

    /// Where node `id` reaches a devstack service.
    fn service_addr(&self, id: u64, service: &Devstack) -> String {
        let port = service.addr.port();
        match &self.netns {
            Some((ns, ids)) if ids.contains(&id) && ns.services.is_some() => {
                format!("{}:{port}", ns.services.as_ref().unwrap().1)
            }
            _ if service.addr.ip().is_unspecified() => format!("{}:{port}", self.host_ip),
            _ => service.addr.to_string(),
        }
    }

    fn config(&mut self, id: u64, join: bool) -> PathBuf {
        let port = *self.ports.entry(id).or_insert_with(free_port);
        let host = self.node_ip(id);
        let join = if id == 1 {
            "bootstrap = true".to_string()
        } else if !join {
            String::new() // waits to be added (`trailctl members add`)
        } else {
            let seeds: Vec<String> = self
                .ports
                .iter()
                .filter(|(n, _)| **n != id)
                .map(|(n, p)| format!("\"{}:{p}\"", self.node_ip(*n)))
                .collect();
            format!("join = [{}]", seeds.join(", "))
        };
        let t = &self.timing;
        let tls = match &self.tls {
            Some(p) => format!(
                "\n[control.tls]\ncert = {:?}\nkey = {:?}\nca = {:?}\nclient_auth = true\n",
                p.node_cert.display().to_string(),
                p.node_key.display().to_string(),
                p.ca.display().to_string()
            ),
            None => String::new(),
        };
        let path = self.dir.join(format!("n{id}.toml"));
        std::fs::write(
            &path,
            format!(
                r#"[node]
id = "n{id}"
data_dir = {data:?}
shutdown_grace_ms = {grace}

[source]
endpoint = "http://sls.test"
address = "{sls}"
project = "{PROJECT}"
logstore = "{LOGSTORE}"
access_key_id = "{ACCESS_KEY_ID}"
access_key_secret = "{ACCESS_KEY_SECRET}"
start = "{start}"
empty_backoff_max_ms = 100
checkpoint_interval_ms = {ckpt}
shard_rescan_secs = 1

[filter]
event_rw = "all"

[[sinks]]
type = "hec"
url = "http://{hec}"
token = "{HEC_TOKEN}"
flush_interval_ms = 50

[dead_letter]
path = {dead:?}

[control]
listen = "{host}:{port}"
token = {{ env = "TRAIL_TEST_CONTROL_TOKEN" }}
{tls}

[cluster]
node_id = {id}
{join}
heartbeat_ms = {hb}
lease_ms = {lease}
fence_margin_ms = {margin}
election_timeout_ms = {election}
commit_interval_ms = {commit}
snapshot_logs = {snap}
{extra}
"#,
                data = self.dir.join(format!("n{id}")).display().to_string(),
                sls = self.service_addr(id, &self.sls),
                hec = self.service_addr(id, &self.hec),
                dead = self
                    .dir
                    .join(format!("n{id}-dead.jsonl"))
                    .display()
                    .to_string(),
                ckpt = t.checkpoint_interval_ms,
                start = self.source_start,
                hb = t.heartbeat_ms,
                lease = t.lease_ms,
                margin = t.fence_margin_ms,
                election = t.election_timeout_ms,
                commit = t.commit_interval_ms,
                snap = t.snapshot_logs,
                grace = t.shutdown_grace_ms,
                extra = self.extra,
            ),
        )
        .unwrap();
        path
    }

    /// Starts (or restarts, with its data dir) node `id`.
    pub fn add_node(&mut self, id: u64) {
        self.spawn_node(id, true);
    }

    /// Starts node `id` with neither `bootstrap` nor `join`: it waits for an
    /// operator to add it.
    pub fn add_node_unjoined(&mut self, id: u64) {
        self.spawn_node(id, false);
    }

    fn spawn_node(&mut self, id: u64, join: bool) {
        let path = self.config(id, join);
        let ns = match &self.netns {
            Some((ns, ids)) if ids.contains(&id) => Some(ns.name.clone()),
            _ => None,
        };
        self.nodes
            .insert(id, TrailNode::spawn_in(&path, ns.as_deref()));
    }

    /// SIGTERM, waiting for the node to exit.
    pub fn terminate(&mut self, id: u64) -> Option<std::process::ExitStatus> {
        self.nodes.remove(&id).and_then(|mut n| n.terminate())
    }

    /// SIGKILL.
    pub fn kill(&mut self, id: u64) {
        if let Some(mut n) = self.nodes.remove(&id) {
            n.kill();
        }
    }

    pub fn endpoint(&self, id: u64) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.node_ip(id), self.ports[&id])
    }

    /// `trailctl ARGS` against node `id`.
    pub fn trailctl(&self, id: u64, args: &[&str]) -> std::process::Output {
        let mut c = Command::new(binary("trailctl"));
        c.args(["--endpoint", &self.endpoint(id)])
            .args(args)
            .env("TRAIL_TOKEN", TOKEN);
        if let Some(p) = &self.tls {
            c.env("TRAIL_CA", &p.ca)
                .env("TRAIL_CERT", &p.client_cert)
                .env("TRAIL_KEY", &p.client_key);
        }
        c.output().expect("run trailctl")
    }

    /// `trailctl status -o json` from the first running node that answers.
    pub fn status(&self) -> Option<Value> {
        for id in self.nodes.keys() {
            let out = self.trailctl(*id, &["status", "-o", "json"]);
            if out.status.success() {
                if let Ok(v) = serde_json::from_slice::<Value>(&out.stdout) {
                    if !v["leader_id"].as_str().unwrap_or("").is_empty() {
                        return Some(v);
                    }
                }
            }
        }
        None
    }

    /// Polls status until `f` holds; panics with the last status after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            if let Some(s) = self.status() {
                if f(&s) {
                    return s;
                }
                last = Some(s);
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: not within {timeout:?}; last status: {}\nlogs in {}",
                    last.map(|s| serde_json::to_string_pretty(&s).unwrap())
                        .unwrap_or_default(),
                    self.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until none of `shards` is owned by `dead` and each is consumed again.
    pub fn wait_taken_over(&self, dead: &str, shards: &[u64], timeout: Duration) -> Value {
        self.wait_for("takeover", timeout, |s| {
            s["shards"].as_array().unwrap().iter().all(|x| {
                !shards.contains(&x["shard"].as_u64().unwrap())
                    || (x["owner"] != dead
                        && matches!(x["state"].as_str(), Some("consuming" | "caught_up")))
            })
        })
    }

    /// Stops the stream, waits for every event, checks that no shard had two
    /// owners delivering at once; returns eventId → times delivered.
    pub fn finish(&mut self) -> HashMap<String, u32> {
        self.stop_stream();
        let got = self.wait_delivered(Duration::from_secs(60));
        assert_history(&self.hec_events());
        got
    }

    /// `n` members alive in raft, and as many voters as the cluster keeps
    /// (`cluster.voters`, 3 by default): the last join is complete.
    pub fn wait_members(&self, n: usize, timeout: Duration) {
        self.wait_for(&format!("{n} live members"), timeout, |s| {
            let joined = s["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|x| x["state"] == "alive" && x["role"] != "removed")
                .count();
            joined >= n && s["voters"].as_u64() >= Some(n.min(3) as u64)
        });
    }

    /// Every shard running (its owner reported a pull under its epoch) and
    /// caught up with the stream, with a standby on another node.
    pub fn wait_settled(&self, timeout: Duration) -> Value {
        let shards = self.shards as usize;
        self.wait_for(
            "every shard caught up with a standby, balanced",
            timeout,
            |s| {
                let list = s["shards"].as_array().unwrap();
                let owned: Vec<u64> = s["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|n| n["state"] == "alive")
                    .map(|n| n["shards_owned"].as_u64().unwrap_or(0))
                    .collect();
                let balanced =
                    owned.iter().max().unwrap_or(&0) - owned.iter().min().unwrap_or(&0) <= 1;
                balanced
                    && list.len() == shards
                    && list.iter().all(|x| {
                        x["state"] == "caught_up"
                            && x["standbys"]
                                .as_array()
                                .is_some_and(|sb| !sb.is_empty() && sb[0] != x["owner"])
                    })
            },
        )
    }

    /// Writes events into the source at `rate` per second (load-balanced
    /// over shards) on a thread of its own, until [`LocalCluster::stop_stream`].
    pub fn start_stream(&mut self, rate: u64, seed: u64) {
        let stop = Arc::new(AtomicBool::new(false));
        let written = self.written.clone();
        let client = sls_client(&self.sls);
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut g = Generator::new(seed);
                let started = Instant::now();
                let group = 20u64;
                let mut sent = 0u64;
                while !s.load(Ordering::Relaxed) {
                    let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                    let lg = actiontrail_group(&mut g, group as usize);
                    // A refused write is retried: every event written counts.
                    while client
                        .put_logs(PROJECT, LOGSTORE, &lg, PutTarget::LoadBalanced)
                        .await
                        .is_err()
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    sent += group;
                    written.fetch_add(group, Ordering::Relaxed);
                }
            });
        });
        self.stream = Some((stop, handle));
    }

    pub fn stop_stream(&mut self) {
        if let Some((stop, h)) = self.stream.take() {
            stop.store(true, Ordering::Relaxed);
            h.join().unwrap();
        }
    }

    /// Every event indexed by the HEC receiver, in the order its request
    /// arrived whole.
    pub fn hec_events(&self) -> Vec<Value> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let text = reqwest::get(format!("http://{}/_devstack/events", self.hec.addr))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        })
    }

    /// Every eventId written to the source (but hostile ones).
    pub fn source_event_ids(&self) -> Vec<String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = sls_client(&self.sls);
        rt.block_on(crate::pull_all(&client, PROJECT, LOGSTORE))
            .into_iter()
            .filter_map(|(_, log)| {
                // Hostile logs (`hostile_…` ids, or no event at all) are the
                // test's to account for: they may be dead letters.
                let raw = &log.contents.first()?.value;
                let v: Value = serde_json::from_slice(raw).ok()?;
                let id = v["eventId"].as_str()?;
                (!id.starts_with("hostile_")).then(|| id.to_owned())
            })
            .collect()
    }

    /// Waits until the receiver has every event of the source at least once;
    /// returns eventId → times indexed.
    pub fn wait_delivered(&self, timeout: Duration) -> HashMap<String, u32> {
        let (got, missing, want) = self.delivered_within(timeout);
        if missing > 0 {
            panic!(
                "{missing} of {want} events never delivered; logs in {}",
                self.dir.display()
            );
        }
        got
    }

    /// Waits up to `timeout` for every event of the source to reach the
    /// receiver: (eventId → times indexed, source events missing, source events).
    pub fn delivered_within(&self, timeout: Duration) -> (HashMap<String, u32>, usize, usize) {
        let want = self.source_event_ids();
        let deadline = Instant::now() + timeout;
        loop {
            let mut got: HashMap<String, u32> = HashMap::new();
            for e in self.hec_events() {
                *got.entry(e["event"]["eventId"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
            let missing = want.iter().filter(|id| !got.contains_key(*id)).count();
            if missing == 0 || Instant::now() > deadline {
                return (got, missing, want.len());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Sets a devstack service's faults (`PUT /_devstack/faults`).
    pub fn faults(&self, service: &Devstack, faults: Value) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = reqwest::Client::new()
                .put(format!("http://{}/_devstack/faults", service.addr))
                .json(&faults)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "faults: {}", r.status());
        });
    }
}

/// Seconds since midnight UTC of a node log line's RFC 3339 timestamp.
pub fn log_secs(line: &str) -> Option<f64> {
    let t = line.split_whitespace().next()?;
    let time = t.split('T').nth(1)?.trim_end_matches('Z');
    let mut it = time.split(':');
    let h: f64 = it.next()?.parse().ok()?;
    let m: f64 = it.next()?.parse().ok()?;
    let s: f64 = it.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// The value of `key=` in a log line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

impl LocalCluster {
    /// Every graceful move in the nodes' logs: how long the shard went
    /// unread, from the old owner's stop (its drain start) to the new owner
    /// starting the shard under the next epoch, in seconds.
    pub fn graceful_pauses(&self) -> Vec<f64> {
        let logs: Vec<String> = (1..=8)
            .filter_map(|id| std::fs::read_to_string(self.dir.join(format!("n{id}.log"))).ok())
            .collect();
        let mut taken: Vec<(String, u64, f64)> = Vec::new(); // (shard, epoch, at)
        for l in logs.iter().flat_map(|l| l.lines()) {
            if l.contains("taking the shard") {
                if let (Some(t), Some(s), Some(e)) =
                    (log_secs(l), field(l, "shard"), field(l, "epoch"))
                {
                    taken.push((s.to_owned(), e.parse().unwrap_or(0), t));
                }
            }
        }
        let mut pauses = Vec::new();
        for l in logs.iter().flat_map(|l| l.lines()) {
            if !l.contains("shard handed over") {
                continue;
            }
            let (Some(t), Some(s), Some(e), Some(d)) = (
                log_secs(l),
                field(l, "shard"),
                field(l, "epoch"),
                field(l, "drained_ms"),
            ) else {
                continue;
            };
            let shard = s.rsplit('/').next().unwrap_or(s);
            let epoch: u64 = e.parse().unwrap_or(0);
            let stopped = t - d.parse::<f64>().unwrap_or(0.0) / 1000.0;
            if let Some((_, _, at)) = taken
                .iter()
                .find(|(ts, te, _)| ts == shard && *te == epoch + 1)
            {
                pauses.push(at - stopped);
            }
        }
        pauses
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop_stream();
        for (_, mut n) in std::mem::take(&mut self.nodes) {
            n.kill();
        }
        // Kept after a failure (or with TRAIL_TEST_KEEP set) for the logs.
        if !std::thread::panicking() && std::env::var_os("TRAIL_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Duplicates: deliveries beyond the first.
pub fn duplicates(got: &HashMap<String, u32>) -> u64 {
    got.values().map(|n| u64::from(n.saturating_sub(1))).sum()
}

/// Which shard an indexed event was read from: `{source}/{shard}` (HEC's
/// `source` is the logstore, or an S3 trail's name), so the shards of two
/// logstores, numbered alike, stay apart.
pub fn shard_of(e: &Value) -> String {
    format!(
        "{}/{}",
        e["source"].as_str().unwrap_or("?"),
        e["fields"]["shard"].as_str().unwrap_or("?")
    )
}

/// Per shard, the hosts (node names) that delivered it, in delivery order,
/// with consecutive repeats collapsed: `[n1, n3]` = n1 then n3 took over.
pub fn delivery_runs(events: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut runs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events {
        let shard = shard_of(e);
        let host = e["host"].as_str().unwrap_or("?").to_owned();
        let r = runs.entry(shard).or_default();
        if r.last() != Some(&host) {
            r.push(host);
        }
    }
    runs
}

/// The owner of each shard in a status.
pub fn owners(status: &Value) -> BTreeMap<u64, (String, u64)> {
    status["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["shard"].as_u64().unwrap(),
                (
                    s["owner"].as_str().unwrap().to_owned(),
                    s["epoch"].as_u64().unwrap(),
                ),
            )
        })
        .collect()
}

/// The delivery history as the receiver saw it, checked against the
/// cluster's promise: every event names the (shard, epoch) it was read under
/// and `host` the node that sent it; per shard, each epoch was delivered by
/// one node only, and epochs never go down in the receiver's order (an old
/// owner writing after the next one started would make them). Panics with
/// every violation found.
pub fn assert_history(events: &[Value]) {
    let violations = check_history(events);
    assert!(
        violations.is_empty(),
        "delivery history broke the promise:\n{}",
        violations
            .iter()
            .take(20)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The violations [`assert_history`] panics with (empty: the promise held).
pub fn check_history(events: &[Value]) -> Vec<String> {
    let mut writers: BTreeMap<(String, u64), BTreeSet<String>> = BTreeMap::new();
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut violations: Vec<String> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let shard = shard_of(e);
        let Some(epoch) = e["fields"]["epoch"]
            .as_str()
            .and_then(|s| s.parse::<u64>().ok())
        else {
            violations.push(format!("event {i} of shard {shard} carries no epoch"));
            continue;
        };
        let host = e["host"].as_str().unwrap_or("?").to_owned();
        writers
            .entry((shard.clone(), epoch))
            .or_default()
            .insert(host.clone());
        let prev = last.entry(shard.clone()).or_insert(epoch);
        if epoch < *prev {
            violations.push(format!(
                "shard {shard}: epoch {epoch} (from {host}) delivered after epoch {prev} (event {i})"
            ));
        }
        *prev = (*prev).max(epoch);
    }
    for ((shard, epoch), hosts) in &writers {
        if hosts.len() > 1 {
            violations.push(format!(
                "shard {shard} epoch {epoch}: delivered by {hosts:?}"
            ));
        }
    }
    violations
}

/// Per shard, the epochs delivered (ascending) with the node that delivered each.
pub fn epoch_writers(events: &[Value]) -> BTreeMap<String, BTreeMap<u64, String>> {
    let mut out: BTreeMap<String, BTreeMap<u64, String>> = BTreeMap::new();
    for e in events {
        let shard = e["fields"]["shard"].as_str().unwrap_or("?").to_owned();
        if let Some(epoch) = e["fields"]["epoch"].as_str().and_then(|s| s.parse().ok()) {
            out.entry(shard)
                .or_default()
                .insert(epoch, e["host"].as_str().unwrap_or("?").to_owned());
        }
    }
    out
}
