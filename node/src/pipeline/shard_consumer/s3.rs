//! The pull loop of an S3 partition: list after the cursor, read each
//! object, hand it on as one batch, in key order; late files as the
//! re-list finds them. The listing itself (partitions, cursors, key times)
//! is `pipeline::s3_listing`; this is the consumer's side of it.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use trail_proto::sls::{Log, LogContent, LogGroup, LogGroupList};

use super::PullLoop;
use crate::aws::s3::{decode_object, ListObjects, ListedObject};
use crate::aws::AwsError;
use crate::pipeline::budget::Credit;
use crate::pipeline::enricher::{Enrich, EnrichReply};
use crate::pipeline::s3_listing::{digest, key_at, key_time, PartitionCursor, S3Listing};
use crate::record::{DeadLetter, Provenance, SourceKind};
use crate::sls::Cursor;

/// Why an object is not handed on.
enum Unread {
    /// Dead-lettered; the partition moves past it.
    Dead(DeadLetter),
    /// Stopping.
    Stopped,
}

impl PullLoop {
    /// Reads partition `partition` of `listing` from `cursor` on: list,
    /// read, hand on, one object per batch, in key order (late files as
    /// the re-list finds them).
    pub(in crate::pipeline) async fn run_partition(
        &self,
        listing: Arc<S3Listing>,
        partition: Arc<str>,
        cursor: Cursor,
    ) -> Result<(), String> {
        let s = &listing.settings;
        let mut state = PartitionCursor::parse(cursor.as_str(), &partition)?;
        // Keys listed and not yet handed on, in order; `listed` is the last.
        let mut queue: VecDeque<ListedObject> = VecDeque::new();
        let mut listed = state.after.clone();
        let mut last_relist: Option<Instant> = None;
        let mut idle = Duration::from_millis(100);
        loop {
            let permit = tokio::select! {
                p = self.credits.clone().acquire_owned() => p.map_err(|e| e.to_string())?,
                _ = self.stop.cancelled() => return Ok(()),
            };
            if !self.leased().await {
                return Ok(());
            }
            if queue.is_empty() && last_relist.is_none_or(|t| t.elapsed() >= s.relist_every) {
                match self.relist(&listing, &partition, &state).await {
                    Ok(late) => {
                        last_relist = Some(Instant::now());
                        if !late.is_empty() {
                            tracing::info!(shard = self.shard, partition = %partition, late = late.len(), "late files found by the re-list");
                        }
                        queue.extend(late);
                    }
                    Err(e) => {
                        self.stats.pull_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(shard = self.shard, error = %e, "re-listing for late files failed");
                        last_relist = Some(Instant::now());
                    }
                }
            }
            if queue.is_empty() {
                let asked = Instant::now();
                let ask = ListObjects {
                    start_after: Some(&listed),
                    ..ListObjects::under(&partition)
                };
                let page = tokio::select! {
                    p = listing.s3.list_objects(&s.bucket, &ask) => p,
                    _ = self.stop.cancelled() => return Ok(()),
                };
                self.stats.pull_latency.observe_duration(asked.elapsed());
                match page {
                    Ok(page) => {
                        self.stats.pulled.store(true, Ordering::Relaxed);
                        if let Some(last) = page.objects.last() {
                            listed = last.key.clone();
                        }
                        queue.extend(page.objects);
                    }
                    Err(e) => {
                        self.stats.pull_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(shard = self.shard, error = %e, "listing the partition failed");
                        drop(permit);
                        self.sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            }
            let Some(object) = queue.pop_front() else {
                drop(permit);
                self.stats.caught_up.store(1, Ordering::Relaxed);
                self.sleep(idle).await;
                idle = (idle * 2).min(s.poll);
                continue;
            };
            idle = Duration::from_millis(100);
            self.stats.caught_up.store(0, Ordering::Relaxed);
            state.read(&object.key, s.relist_window);
            let next = Cursor::new(state.render());
            let cursor_time = key_time(&object.key).map(|t| t as u32);
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            let mut share = tokio::select! {
                s = self.budget.take((object.size as usize).saturating_mul(8).clamp(1024, s.max_envelope_bytes)) => s,
                _ = self.stop.cancelled() => return Ok(()),
            };
            let list = match self.read_object(&listing, &object).await {
                Ok(list) => list,
                Err(Unread::Stopped) => return Ok(()),
                Err(Unread::Dead(letter)) => {
                    self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    let credit = Credit {
                        batch: permit,
                        bytes: Some(share),
                    };
                    if !self
                        .track(vec![letter], seq, &next, cursor_time, 0, credit)
                        .await?
                    {
                        return Ok(());
                    }
                    continue;
                }
            };
            let size: usize = list.log_group_list[0].logs[0].contents[0].value.len();
            tokio::select! {
                _ = self.budget.resize(&mut share, size) => {}
                _ = self.stop.cancelled() => return Ok(()),
            }
            self.stats
                .raw_bytes
                .fetch_add(size as u64, Ordering::Relaxed);
            self.stats.groups.fetch_add(1, Ordering::Relaxed);
            let provenance = Arc::new(Provenance {
                project: s.bucket.as_str().into(),
                logstore: object.key.as_str().into(),
                shard: self.shard,
                epoch: self.provenance.epoch,
                source: SourceKind::S3,
            });
            let mut batch = Enrich::new(list, vec![next.to_string()], provenance.clone());
            let out = loop {
                match self
                    .enricher
                    .send(batch)
                    .await
                    .map_err(|e| format!("enricher: {e}"))?
                {
                    EnrichReply::Done(out) => break out,
                    EnrichReply::Parked(again, wait) => {
                        tokio::select! {
                            _ = wait.wait() => {}
                            _ = self.stop.cancelled() => return Ok(()),
                        }
                        batch = *again;
                    }
                }
            };
            self.stats.add(&out.stats);
            let parts = out.parts;
            let live = parts.iter().filter(|p| !p.is_empty()).count();
            let credit = Credit {
                batch: permit,
                bytes: Some(share),
            };
            if !self
                .track(out.dead_letters, seq, &next, cursor_time, live, credit)
                .await?
            {
                return Ok(());
            }
            self.hand_on(parts, seq, &provenance).await?;
        }
    }

    /// The keys inside the re-list window not read yet (files that landed
    /// after keys sorting later were read).
    async fn relist(
        &self,
        listing: &S3Listing,
        partition: &str,
        state: &PartitionCursor,
    ) -> Result<Vec<ListedObject>, AwsError> {
        let s = &listing.settings;
        if s.relist_window.is_zero() {
            return Ok(Vec::new());
        }
        let Some(from) = state.window_start(s.relist_window) else {
            return Ok(Vec::new());
        };
        let Some(start) = key_at(partition, from) else {
            return Ok(Vec::new());
        };
        let seen: HashSet<&str> = state.seen.iter().map(|(d, _)| d.as_str()).collect();
        let mut late = Vec::new();
        let mut after = start;
        'pages: loop {
            let page = listing
                .s3
                .list_objects(
                    &s.bucket,
                    &ListObjects {
                        start_after: Some(&after),
                        ..ListObjects::under(partition)
                    },
                )
                .await?;
            let Some(last) = page.objects.last() else {
                break;
            };
            after = last.key.clone();
            for o in page.objects {
                if o.key.as_str() > state.after.as_str() {
                    break 'pages; // the forward listing reads these
                }
                let inside = key_time(&o.key).is_some_and(|t| t >= from);
                if inside && !seen.contains(digest(&o.key).as_str()) {
                    late.push(o);
                }
            }
            if page.next_token.is_none() {
                break;
            }
        }
        Ok(late)
    }

    /// GetObject (transient failures retried, lasting ones too: nothing in
    /// a partition is skipped but what a dead letter says), then gunzip.
    async fn read_object(
        &self,
        listing: &S3Listing,
        o: &ListedObject,
    ) -> Result<LogGroupList, Unread> {
        let s = &listing.settings;
        let cursor = format!("s3://{}/{}", s.bucket, o.key);
        let letter = |kind: &'static str, reason: String, raw: Bytes| DeadLetter {
            reason,
            kind,
            project: s.bucket.as_str().into(),
            logstore: o.key.as_str().into(),
            shard: self.shard,
            cursor: cursor.clone(),
            raw,
        };
        let mut pause = Duration::from_millis(200);
        let body = loop {
            let r = tokio::select! {
                r = listing.s3.get_object(&s.bucket, &o.key, s.max_object_bytes) => r,
                _ = self.stop.cancelled() => return Err(Unread::Stopped),
            };
            match r {
                Ok(b) => break b,
                Err(AwsError::TooLarge { cap, .. }) => {
                    return Err(Unread::Dead(letter(
                        "oversize_object",
                        format!("{cursor} is larger than max_object_bytes ({cap}); skipped unread"),
                        Bytes::new(),
                    )))
                }
                Err(e) if e.code() == "NoSuchKey" => {
                    return Err(Unread::Dead(letter(
                        "object_missing",
                        format!("{cursor} was listed, then deleted before it was read: {e}"),
                        Bytes::new(),
                    )))
                }
                Err(e) => {
                    self.stats.pull_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(shard = self.shard, %cursor, error = %e, ?pause, "GetObject failed; the partition waits for it");
                    if !self.leased().await {
                        return Err(Unread::Stopped);
                    }
                    self.sleep(pause).await;
                    if self.stop.is_cancelled() {
                        return Err(Unread::Stopped);
                    }
                    pause = (pause * 2).min(Duration::from_secs(30));
                }
            }
        };
        let cap = s.max_envelope_bytes;
        let raw = body.clone();
        let decoded = tokio::task::spawn_blocking(move || decode_object(&raw, cap))
            .await
            .map_err(|_| Unread::Stopped)?;
        let json = match decoded {
            Ok(j) => j,
            Err((kind, reason)) => {
                return Err(Unread::Dead(letter(
                    kind,
                    format!("{cursor}: {reason}"),
                    body,
                )))
            }
        };
        let now = crate::clock::unix_secs() as u32;
        Ok(LogGroupList {
            log_group_list: vec![LogGroup {
                logs: vec![Log {
                    time: now,
                    contents: vec![LogContent {
                        key: s.event_key.clone(),
                        value: json,
                    }],
                    time_ns: None,
                }],
                topic: None,
                source: None,
                ..Default::default()
            }],
        })
    }
}
