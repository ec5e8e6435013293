//! Consumer groups: server-side shard assignment and checkpoints.
//!
//! The server assigns; consumers only report what they hold (protocol notes §5):
//! * Every heartbeat carries the shards the consumer holds; the reply is what it
//!   may consume. The first heartbeat registers the consumer.
//! * Balance keeps each consumer within ±1 shard of every other. A shard taken
//!   from an overloaded holder is in *transfer*: it leaves the holder's reply at
//!   once, and reaches the new consumer only after the holder stops reporting it
//!   (or times out). So a shard is never handed out while its old worker runs.
//! * A consumer silent for `timeout` seconds is dropped; its shards are free.
//! * A checkpoint at the end of a readonly shard makes it *over*: it is never
//!   assigned again. A forced checkpoint elsewhere revives it.
//! * With `order = true`, a shard split or merged from others waits until all
//!   its parents are over.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::sls::error::ApiError;

/// What the group needs to know of a logstore's shards at a heartbeat.
#[derive(Debug, Clone)]
pub struct ShardView {
    pub id: u32,
    pub parents: Vec<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub cursor: String,
    pub update_time: u32,
    pub consumer: String,
}

#[derive(Debug)]
struct Consumer {
    last_seen: Instant,
    held: BTreeSet<u32>,
}

#[derive(Debug, Clone)]
struct Owner {
    consumer: String,
    transfer_to: Option<String>,
}

#[derive(Debug)]
pub struct ConsumerGroup {
    pub name: String,
    pub timeout_secs: u32,
    pub order: bool,
    pub checkpoints: BTreeMap<u32, Checkpoint>,
    pub over: BTreeSet<u32>,
    consumers: BTreeMap<String, Consumer>,
    owners: BTreeMap<u32, Owner>,
}

impl ConsumerGroup {
    pub fn new(name: &str, timeout_secs: u32, order: bool) -> Self {
        ConsumerGroup {
            name: name.to_owned(),
            timeout_secs,
            order,
            checkpoints: BTreeMap::new(),
            over: BTreeSet::new(),
            consumers: BTreeMap::new(),
            owners: BTreeMap::new(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"name": self.name, "timeout": self.timeout_secs, "order": self.order})
    }

    /// One heartbeat of `consumer`, which holds `held`. Returns the shards it may consume.
    pub fn heartbeat(
        &mut self,
        consumer: &str,
        held: &[u32],
        shards: &[ShardView],
        now: Instant,
    ) -> Vec<u32> {
        self.expire(now);
        let entry = self
            .consumers
            .entry(consumer.to_owned())
            .or_insert_with(|| Consumer {
                last_seen: now,
                held: BTreeSet::new(),
            });
        entry.last_seen = now;
        entry.held = held.iter().copied().collect();
        self.rebalance(shards);
        self.owners
            .iter()
            .filter(|(_, o)| o.consumer == consumer && o.transfer_to.is_none())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Drops consumers silent for longer than the timeout.
    fn expire(&mut self, now: Instant) {
        let timeout = Duration::from_secs(u64::from(self.timeout_secs));
        let gone: Vec<String> = self
            .consumers
            .iter()
            .filter(|(_, c)| now.duration_since(c.last_seen) > timeout)
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            tracing::info!(group = %self.name, consumer = %name, "consumer timed out");
            self.consumers.remove(&name);
            self.owners.retain(|_, o| {
                if o.transfer_to.as_deref() == Some(&name) {
                    o.transfer_to = None;
                }
                o.consumer != name || o.transfer_to.is_some()
            });
            // A shard in transfer away from a dead holder goes to its new owner now.
            for o in self.owners.values_mut() {
                if o.consumer == name {
                    if let Some(to) = o.transfer_to.take() {
                        o.consumer = to;
                    }
                }
            }
        }
    }

    fn rebalance(&mut self, shards: &[ShardView]) {
        // 1. Finish transfers whose holder has let go.
        let released: Vec<u32> = self
            .owners
            .iter()
            .filter(|(id, o)| {
                o.transfer_to.is_some()
                    && self
                        .consumers
                        .get(&o.consumer)
                        .is_none_or(|c| !c.held.contains(id))
            })
            .map(|(id, _)| *id)
            .collect();
        for id in released {
            let o = self.owners.get_mut(&id).expect("listed above");
            o.consumer = o.transfer_to.take().expect("filtered on transfer_to");
        }

        // 2. Which shards may be consumed at all.
        let eligible: BTreeSet<u32> = shards
            .iter()
            .filter(|s| !self.over.contains(&s.id))
            .filter(|s| !self.order || s.parents.iter().all(|p| self.over.contains(p)))
            .map(|s| s.id)
            .collect();
        self.owners.retain(|id, _| eligible.contains(id));
        if self.consumers.is_empty() {
            return;
        }

        // 3. Free shards go to the least loaded consumer.
        for id in &eligible {
            if !self.owners.contains_key(id) {
                let to = self.least_loaded();
                self.owners.insert(
                    *id,
                    Owner {
                        consumer: to,
                        transfer_to: None,
                    },
                );
            }
        }

        // 4. Move shards from the most to the least loaded until within ±1.
        loop {
            let loads = self.loads();
            let (max_c, max_l) = loads
                .iter()
                .max_by_key(|(name, l)| (**l, std::cmp::Reverse((*name).clone())))
                .map(|(n, l)| (n.clone(), *l))
                .expect("consumers is not empty");
            let (min_c, min_l) = loads
                .iter()
                .min_by_key(|(name, l)| (**l, (*name).clone()))
                .map(|(n, l)| (n.clone(), *l))
                .expect("consumers is not empty");
            if max_l <= min_l + 1 {
                break;
            }
            let movable = self
                .owners
                .iter()
                .rev()
                .find(|(_, o)| o.consumer == max_c && o.transfer_to.is_none())
                .map(|(id, _)| *id);
            let Some(id) = movable else { break };
            let o = self.owners.get_mut(&id).expect("found above");
            let holds_it = self
                .consumers
                .get(&o.consumer)
                .is_some_and(|c| c.held.contains(&id));
            if holds_it {
                o.transfer_to = Some(min_c);
            } else {
                // Never started on it: hand it over directly.
                o.consumer = min_c;
            }
        }
    }

    /// Load = shards owned and staying, plus shards on their way in.
    fn loads(&self) -> BTreeMap<String, usize> {
        let mut loads: BTreeMap<String, usize> =
            self.consumers.keys().map(|c| (c.clone(), 0)).collect();
        for o in self.owners.values() {
            let who = o.transfer_to.as_ref().unwrap_or(&o.consumer);
            if let Some(l) = loads.get_mut(who) {
                *l += 1;
            }
        }
        loads
    }

    fn least_loaded(&self) -> String {
        self.loads()
            .into_iter()
            .min_by_key(|(name, l)| (*l, name.clone()))
            .map(|(n, _)| n)
            .expect("consumers is not empty")
    }

    /// UpdateCheckPoint. `readonly_end` is the shard's end cursor if it is readonly.
    pub fn update_checkpoint(
        &mut self,
        shard: u32,
        cursor: &str,
        consumer: &str,
        force: bool,
        readonly_end: Option<&str>,
        now_unix: u32,
    ) -> Result<(), ApiError> {
        if !force {
            if consumer.is_empty() {
                return Err(ApiError::bad(
                    "ParameterInvalid",
                    "a checkpoint without a consumer needs forceSuccess=true",
                ));
            }
            if !self.consumers.contains_key(consumer) {
                return Err(ApiError::bad(
                    "ConsumerNotExsit",
                    format!("consumer {consumer} does not exist in group {}", self.name),
                ));
            }
            let owns = self
                .owners
                .get(&shard)
                .is_some_and(|o| o.consumer == consumer);
            if !owns {
                return Err(ApiError::bad(
                    "ConsumerNotMatch",
                    format!("consumer {consumer} does not hold shard {shard}"),
                ));
            }
        }
        self.checkpoints.insert(
            shard,
            Checkpoint {
                cursor: cursor.to_owned(),
                update_time: now_unix,
                consumer: consumer.to_owned(),
            },
        );
        match readonly_end {
            Some(end) if end == cursor => {
                self.over.insert(shard);
            }
            _ => {
                self.over.remove(&shard);
            }
        }
        Ok(())
    }

    #[cfg(test)]
    fn owner_of(&self, shard: u32) -> Option<(&str, Option<&str>)> {
        self.owners
            .get(&shard)
            .map(|o| (o.consumer.as_str(), o.transfer_to.as_deref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(n: u32) -> Vec<ShardView> {
        (0..n)
            .map(|id| ShardView {
                id,
                parents: vec![],
            })
            .collect()
    }

    #[test]
    fn one_consumer_gets_everything_then_a_second_splits_them_after_release() {
        let mut g = ConsumerGroup::new("g", 40, false);
        let t0 = Instant::now();
        let s = shards(4);
        assert_eq!(g.heartbeat("a", &[], &s, t0), vec![0, 1, 2, 3]);
        assert_eq!(g.heartbeat("a", &[0, 1, 2, 3], &s, t0), vec![0, 1, 2, 3]);
        // b joins: two shards go into transfer; b gets nothing until a lets go.
        assert_eq!(g.heartbeat("b", &[], &s, t0), Vec::<u32>::new());
        let a_reply = g.heartbeat("a", &[0, 1, 2, 3], &s, t0);
        assert_eq!(
            a_reply.len(),
            2,
            "transferring shards leave a's reply at once"
        );
        assert_eq!(
            g.heartbeat("b", &[], &s, t0),
            Vec::<u32>::new(),
            "a still reports them"
        );
        // a stops reporting the moved shards; now b receives them.
        g.heartbeat("a", &a_reply, &s, t0);
        let b_reply = g.heartbeat("b", &[], &s, t0);
        assert_eq!(b_reply.len(), 2);
        assert!(b_reply.iter().all(|id| !a_reply.contains(id)));
    }

    #[test]
    fn extra_consumers_get_nothing_and_balance_is_within_one() {
        let mut g = ConsumerGroup::new("g", 40, false);
        let t0 = Instant::now();
        let s = shards(2);
        let a = g.heartbeat("a", &[], &s, t0);
        let b = g.heartbeat("b", &[], &s, t0);
        // a never reported holding anything, so the move is direct.
        let a2 = g.heartbeat("a", &a, &s, t0);
        let b2 = g.heartbeat("b", &b, &s, t0);
        assert_eq!(a2.len() + b2.len(), 2);
        assert_eq!(g.heartbeat("c", &[], &s, t0), Vec::<u32>::new());
        let b3 = g.heartbeat("b", &b2, &s, t0);
        assert_eq!(b3.len(), 1);
    }

    #[test]
    fn a_silent_consumer_loses_its_shards() {
        let mut g = ConsumerGroup::new("g", 4, false);
        let t0 = Instant::now();
        let s = shards(2);
        let a = g.heartbeat("a", &[], &s, t0);
        let a = g.heartbeat("a", &a, &s, t0);
        assert_eq!(a.len(), 2);
        g.heartbeat("b", &[], &s, t0);
        let b_later = g.heartbeat("b", &[], &s, t0 + Duration::from_secs(5));
        assert_eq!(b_later, vec![0, 1], "a timed out");
        assert_eq!(g.owner_of(0), Some(("b", None)));
    }

    #[test]
    fn readonly_shard_checkpointed_at_its_end_is_over_and_children_wait_in_order() {
        let mut g = ConsumerGroup::new("g", 40, true);
        let t0 = Instant::now();
        let s = vec![
            ShardView {
                id: 0,
                parents: vec![],
            },
            ShardView {
                id: 1,
                parents: vec![0],
            },
            ShardView {
                id: 2,
                parents: vec![0],
            },
        ];
        assert_eq!(
            g.heartbeat("a", &[], &s, t0),
            vec![0],
            "children wait for their parent"
        );
        g.update_checkpoint(0, "MTA=", "a", false, Some("MTA="), 0)
            .unwrap();
        assert_eq!(g.heartbeat("a", &[0], &s, t0), vec![1, 2]);
        // A forced checkpoint elsewhere revives it.
        g.update_checkpoint(0, "OQ==", "", true, Some("MTA="), 0)
            .unwrap();
        assert!(!g.over.contains(&0));
    }

    #[test]
    fn checkpoint_ownership_rules() {
        let mut g = ConsumerGroup::new("g", 40, false);
        let t0 = Instant::now();
        let s = shards(2);
        let a = g.heartbeat("a", &[], &s, t0);
        assert_eq!(a, vec![0, 1]);
        g.heartbeat("b", &[], &s, t0);
        let err = g
            .update_checkpoint(0, "MQ==", "b", false, None, 0)
            .unwrap_err();
        assert_eq!(err.code, "ConsumerNotMatch");
        let err = g
            .update_checkpoint(0, "MQ==", "zed", false, None, 0)
            .unwrap_err();
        assert_eq!(err.code, "ConsumerNotExsit");
        let err = g
            .update_checkpoint(0, "MQ==", "", false, None, 0)
            .unwrap_err();
        assert_eq!(err.code, "ParameterInvalid");
        g.update_checkpoint(0, "MQ==", "b", true, None, 0).unwrap();
        assert_eq!(g.checkpoints[&0].cursor, "MQ==");
    }
}
