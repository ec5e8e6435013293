//! What to do with an HEC answer: the (HTTP status, HEC code) table of the
//! HEC notes §3 and §5, tested row by row.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Everything taken; with indexer acknowledgement, the id to poll.
    Delivered { ack_id: Option<u64> },
    /// Objects before `at` are indexed, object `at` is refused for good, the
    /// rest must be resent.
    Partial { at: usize, code: i64, text: String },
    /// Transient: send the same request again after a pause.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The token is refused: stop sending, hold the checkpoint, alert.
    Stop { reason: String },
    /// The body is too large: send it in smaller pieces.
    Split,
    /// Refused for good with no object named: dead-letter the request.
    DeadLetterAll { reason: String },
}

#[derive(Deserialize, Default)]
struct Answer {
    #[serde(default)]
    text: String,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default, rename = "ackId")]
    ack_id: Option<u64>,
    #[serde(default, rename = "invalid-event-number")]
    invalid_event_number: Option<usize>,
}

/// Classifies one HTTP answer.
pub fn classify(status: u16, retry_after: Option<&str>, body: &[u8]) -> Action {
    let a: Answer = serde_json::from_slice(body).unwrap_or_default();
    let code = a.code.unwrap_or(-1);
    let what = || format!("HEC {status} code {code}: {}", a.text);
    let after = retry_after
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    match status {
        200..=299 => Action::Delivered { ack_id: a.ack_id },
        401 | 403 => Action::Stop { reason: what() },
        413 => Action::Split,
        408 | 429 => Action::Retry {
            reason: what(),
            after,
        },
        400 => match a.invalid_event_number {
            Some(at) => Action::Partial {
                at,
                code,
                text: a.text,
            },
            None => Action::DeadLetterAll { reason: what() },
        },
        501 => Action::DeadLetterAll { reason: what() },
        500..=599 => Action::Retry {
            reason: what(),
            after,
        },
        _ => Action::DeadLetterAll { reason: what() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        let rows: Vec<(u16, Option<&str>, &str, Action)> = vec![
            (
                200,
                None,
                r#"{"text":"Success","code":0}"#,
                Action::Delivered { ack_id: None },
            ),
            (
                200,
                None,
                r#"{"text":"Success","code":0,"ackId":7}"#,
                Action::Delivered { ack_id: Some(7) },
            ),
            (
                400,
                None,
                r#"{"text":"Invalid data format","code":6,"invalid-event-number":2}"#,
                Action::Partial {
                    at: 2,
                    code: 6,
                    text: "Invalid data format".into(),
                },
            ),
            (
                400,
                None,
                r#"{"text":"Event field is required","code":12,"invalid-event-number":0}"#,
                Action::Partial {
                    at: 0,
                    code: 12,
                    text: "Event field is required".into(),
                },
            ),
            (
                400,
                None,
                r#"{"text":"No data","code":5}"#,
                Action::DeadLetterAll {
                    reason: "HEC 400 code 5: No data".into(),
                },
            ),
            (
                401,
                None,
                r#"{"text":"Token is required","code":2}"#,
                Action::Stop {
                    reason: "HEC 401 code 2: Token is required".into(),
                },
            ),
            (
                403,
                None,
                r#"{"text":"Invalid token","code":4}"#,
                Action::Stop {
                    reason: "HEC 403 code 4: Invalid token".into(),
                },
            ),
            (
                403,
                None,
                r#"{"text":"Token disabled","code":1}"#,
                Action::Stop {
                    reason: "HEC 403 code 1: Token disabled".into(),
                },
            ),
            (413, None, "", Action::Split),
            (
                408,
                None,
                "",
                Action::Retry {
                    reason: "HEC 408 code -1: ".into(),
                    after: None,
                },
            ),
            (
                429,
                Some("3"),
                r#"{"text":"HEC queue is at capacity","code":26}"#,
                Action::Retry {
                    reason: "HEC 429 code 26: HEC queue is at capacity".into(),
                    after: Some(Duration::from_secs(3)),
                },
            ),
            (
                500,
                None,
                r#"{"text":"Internal server error","code":8}"#,
                Action::Retry {
                    reason: "HEC 500 code 8: Internal server error".into(),
                    after: None,
                },
            ),
            (
                503,
                None,
                r#"{"text":"Server is busy","code":9}"#,
                Action::Retry {
                    reason: "HEC 503 code 9: Server is busy".into(),
                    after: None,
                },
            ),
            (
                502,
                None,
                "<html>bad gateway</html>",
                Action::Retry {
                    reason: "HEC 502 code -1: ".into(),
                    after: None,
                },
            ),
            (
                501,
                None,
                "",
                Action::DeadLetterAll {
                    reason: "HEC 501 code -1: ".into(),
                },
            ),
            (
                415,
                None,
                "<html/>",
                Action::DeadLetterAll {
                    reason: "HEC 415 code -1: ".into(),
                },
            ),
        ];
        for (status, ra, body, want) in rows {
            assert_eq!(
                classify(status, ra, body.as_bytes()),
                want,
                "{status} {body}"
            );
        }
    }
}
