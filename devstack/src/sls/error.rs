//! SLS error answers: a status, a JSON body `{"errorCode","errorMessage"}` (both
//! strings), and, like every answer, an `x-log-requestid`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with the given code.
    pub fn bad(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, code, message)
    }

    pub fn project_not_exist(name: &str) -> Self {
        Self::new(
            404,
            "ProjectNotExist",
            format!("The Project does not exist : {name}"),
        )
    }

    pub fn logstore_not_exist(name: &str) -> Self {
        Self::new(
            404,
            "LogStoreNotExist",
            format!("logstore {name} does not exist"),
        )
    }

    pub fn shard_not_exist(id: u32) -> Self {
        Self::new(400, "ShardNotExist", format!("shard {id} does not exist"))
    }

    pub fn group_not_exist(name: &str) -> Self {
        Self::new(
            404,
            "ConsumerGroupNotExist",
            format!("consumer group {name} does not exist"),
        )
    }

    pub fn body_json(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "errorCode": self.code,
            "errorMessage": self.message,
        }))
        .expect("strings serialize")
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
