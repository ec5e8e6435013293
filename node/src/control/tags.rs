//! `trail.v1.Tags`: the replicated tag tier as an API. Reads come from the
//! answering node's replica; writes go through raft (forwarded to the
//! leader), so every node's enrichers see them at once.

use std::collections::BTreeMap;

use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use trail_proto::trail::v1 as pb;
use trail_proto::trail::v1::tags_server::Tags;

use crate::cluster::{Cluster, Command, TagRecord};

use super::cluster_status;

/// Resources per raft write when importing (an entry of ~50 KB: see
/// `max_payload_entries` in `cluster`).
const IMPORT_BATCH: usize = 250;

pub(crate) struct TagsService {
    pub cluster: Option<Cluster>,
}

fn to_pb(arn: String, r: TagRecord) -> pb::ResourceTags {
    pb::ResourceTags {
        arn,
        tags: r.tags.into_iter().collect(),
        origin: r.origin,
        updated_ms: r.updated_ms as i64,
    }
}

fn record(r: pb::ResourceTags) -> Result<(String, TagRecord), Status> {
    if r.arn.is_empty() {
        return Err(Status::invalid_argument("a resource without an arn"));
    }
    Ok((
        r.arn,
        TagRecord {
            tags: r.tags.into_iter().collect::<BTreeMap<_, _>>(),
            origin: "api".into(),
            updated_ms: crate::clock::unix_ms(),
        },
    ))
}

impl TagsService {
    fn cluster(&self) -> Result<&Cluster, Status> {
        self.cluster.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "the Tags API needs a cluster (no [cluster] in this node's config)",
            )
        })
    }

    async fn put(&self, tags: Vec<(String, TagRecord)>) -> Result<u32, Status> {
        let n = tags.len() as u32;
        if n == 0 {
            return Ok(0);
        }
        self.cluster()?
            .write(Command::PutTags {
                tags,
                expire_before_ms: 0,
            })
            .await
            .map_err(cluster_status)?;
        Ok(n)
    }
}

#[tonic::async_trait]
impl Tags for TagsService {
    async fn get(
        &self,
        request: Request<pb::GetTagsRequest>,
    ) -> Result<Response<pb::TagsResponse>, Status> {
        let arns = request.into_inner().arns;
        let resources = self
            .cluster()?
            .tags_get(&arns)
            .into_iter()
            .map(|(a, r)| to_pb(a, r))
            .collect();
        Ok(Response::new(pb::TagsResponse {
            resources,
            next: String::new(),
        }))
    }

    async fn put(
        &self,
        request: Request<pb::PutTagsRequest>,
    ) -> Result<Response<pb::WriteTagsResponse>, Status> {
        let tags = request
            .into_inner()
            .resources
            .into_iter()
            .map(record)
            .collect::<Result<Vec<_>, _>>()?;
        let mut written = 0;
        for chunk in tags.chunks(IMPORT_BATCH) {
            written += TagsService::put(self, chunk.to_vec()).await?;
        }
        Ok(Response::new(pb::WriteTagsResponse { written }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteTagsRequest>,
    ) -> Result<Response<pb::WriteTagsResponse>, Status> {
        let arns = request.into_inner().arns;
        let n = arns.len() as u32;
        self.cluster()?
            .write(Command::DeleteTags { arns })
            .await
            .map_err(cluster_status)?;
        Ok(Response::new(pb::WriteTagsResponse { written: n }))
    }

    async fn list(
        &self,
        request: Request<pb::ListTagsRequest>,
    ) -> Result<Response<pb::TagsResponse>, Status> {
        let r = request.into_inner();
        let limit = match r.limit {
            0 => 100,
            n => n.min(10_000) as usize,
        };
        let page = self.cluster()?.tags_list(&r.prefix, &r.after, limit);
        let next = if page.len() == limit {
            page.last().map(|(a, _)| a.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::TagsResponse {
            resources: page.into_iter().map(|(a, r)| to_pb(a, r)).collect(),
            next,
        }))
    }

    async fn import(
        &self,
        request: Request<Streaming<pb::ResourceTags>>,
    ) -> Result<Response<pb::WriteTagsResponse>, Status> {
        self.cluster()?;
        let mut stream = request.into_inner();
        let mut batch = Vec::with_capacity(IMPORT_BATCH);
        let mut written = 0;
        while let Some(r) = stream.next().await {
            batch.push(record(r?)?);
            if batch.len() == IMPORT_BATCH {
                written += TagsService::put(self, std::mem::take(&mut batch)).await?;
            }
        }
        written += TagsService::put(self, batch).await?;
        Ok(Response::new(pb::WriteTagsResponse { written }))
    }
}
