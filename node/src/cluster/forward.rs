//! Requests only the leader can serve, from any node: writes through raft,
//! membership changes, planning, the liveness table. A node that is not the
//! leader forwards to the one it knows (`Peer.Forward`), and retries while
//! an election runs, within a deadline.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::lease::LiveNode;
use super::scheduler::Move;
use super::types::{Command, NodeId, Reply};
use super::{Cluster, ClusterError};

/// What a forwarded request asks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum LeaderRequest {
    Write(Command),
    AddMember { id: NodeId, addr: String },
    RemoveMember { id: NodeId },
    Drain { id: NodeId, undo: bool },
    Rebalance { dry_run: bool },
    Live,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum LeaderReply {
    Written(Reply),
    Done,
    Moves(Vec<Move>),
    Live(std::collections::BTreeMap<NodeId, LiveNode>),
}

/// Why the leader could not serve.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub(crate) enum LeaderError {
    #[error("not the leader (leader: {0:?})")]
    NotLeader(Option<NodeId>),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Failed(String),
}

impl Cluster {
    /// Serves `req` here if this node leads, else forwards it to the leader.
    pub(crate) async fn to_leader(
        &self,
        req: LeaderRequest,
        within: Duration,
    ) -> Result<LeaderReply, ClusterError> {
        let deadline = Instant::now() + within;
        let mut last;
        loop {
            let leader = self.raft_view().leader;
            let attempt = match leader {
                Some(l) if l == self.id() => self.serve_as_leader(req.clone()).await,
                Some(l) => match self.member_addr(l) {
                    Some(addr) => self
                        .inner
                        .peers
                        .call::<_, Result<LeaderReply, LeaderError>>(
                            &addr,
                            super::network::Rpc::Forward,
                            "leader",
                            &req,
                            deadline
                                .saturating_duration_since(Instant::now())
                                .max(Duration::from_millis(200)),
                        )
                        .await
                        .unwrap_or_else(|e| {
                            Err(LeaderError::Failed(format!(
                                "forwarding to the leader: {e}"
                            )))
                        }),
                    None => Err(LeaderError::NotLeader(None)),
                },
                None => Err(LeaderError::NotLeader(None)),
            };
            match attempt {
                Ok(r) => return Ok(r),
                Err(LeaderError::Refused(m)) => return Err(ClusterError::Refused(m)),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(ClusterError::NoLeader(last));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Writes a command through raft (via the leader).
    pub async fn write(&self, cmd: Command) -> Result<Reply, ClusterError> {
        match self
            .to_leader(LeaderRequest::Write(cmd), Duration::from_secs(5))
            .await?
        {
            LeaderReply::Written(r) => Ok(r),
            other => Err(ClusterError::Refused(format!("unexpected reply {other:?}"))),
        }
    }
}
