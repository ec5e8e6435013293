//! The fuzzer behind `trail-fuzz` and `tests/fuzz_replay.rs`: realistic
//! seeds for each of `trail_node::fuzz::TARGETS`, and structure-aware
//! mutations of them, run in process on the stable toolchain.
//!
//! It is blind (no coverage feedback), so it leans on structure instead:
//! seeds are what the wire and the trails really carry (generated events,
//! real PullLogs bodies in each compression, SLS/HEC/tag answers, the
//! shipped config); mutations are byte-level (flips, interesting values,
//! inserted/deleted/duplicated runs, splices between seeds, truncation),
//! token-level (JSON, TOML and header tokens, huge and negative numbers,
//! escapes, deep nesting) and, for PullLogs bodies, structural: events are
//! mutated inside a valid protobuf and compressed again, so the mutation
//! reaches the parser behind a valid lz4 frame, with the declared raw size
//! sometimes a lie.

use std::path::{Path, PathBuf};

use prost::Message;
use trail_devstack::gen::Generator;
use trail_node::sls::codec::{self, Compression};
use trail_proto::sls::LogGroupList;

/// xorshift64*: fast, seeded, reproducible.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Where the kept corpora live: `tests/fuzz/corpus/<target>/`.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

/// Every file of a target's kept corpus.
pub fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir().join(target);
    let mut out: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect();
    out.sort();
    out
}

fn events(g: &mut Generator, n: usize) -> Vec<String> {
    (0..n).map(|_| g.next_event()).collect()
}

/// A PullLogs body's raw protobuf: `groups` log groups of ActionTrail events.
pub fn log_group_list(events: &[Vec<u8>], groups: usize) -> Vec<u8> {
    let groups = groups.max(1);
    let per = events.len().div_ceil(groups).max(1);
    LogGroupList {
        log_group_list: events
            .chunks(per)
            .map(|chunk| crate::event_log_group(chunk.iter().cloned()))
            .collect(),
    }
    .encode_to_vec()
}

/// `pull_body`'s input: header byte, declared raw size, body.
pub fn pull_input(
    compression: Compression,
    every_event: bool,
    raw: &[u8],
    lie: Option<usize>,
) -> Vec<u8> {
    let body = codec::compress(compression, raw).expect("compresses");
    let head = match compression {
        Compression::None => 0u8,
        Compression::Lz4 => 1,
        Compression::Zstd => 2,
    } | if every_event { 4 } else { 0 };
    let size = lie.unwrap_or(raw.len()).min(0xff_ffff) as u32;
    let mut out = vec![head];
    out.extend_from_slice(&size.to_le_bytes()[..3]);
    out.extend_from_slice(&body);
    out
}

fn cloudtrail_record(i: usize) -> String {
    serde_json::json!({
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLEID:ci-42",
            "arn": "arn:aws:sts::111122223333:assumed-role/Deploy/ci-42",
            "accountId": "111122223333",
            "sessionContext": {"sessionIssuer": {"type": "Role", "userName": "Deploy"}}
        },
        "eventTime": "2026-11-30T08:00:00Z",
        "eventSource": "ec2.amazonaws.com",
        "eventName": if i.is_multiple_of(2) { "TerminateInstances" } else { "DescribeInstances" },
        "awsRegion": "us-east-1",
        "sourceIPAddress": "203.0.113.7",
        "readOnly": i % 2 == 1,
        "eventID": format!("ct-{i}"),
        "recipientAccountId": "111122223333",
        "resources": [{"ARN": "arn:aws:ec2:us-east-1:111122223333:instance/i-0abc", "accountId": "111122223333", "type": "AWS::EC2::Instance"}]
    })
    .to_string()
}

/// Realistic seeds for a target.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    let mut g = Generator::new(7);
    match target {
        "pull_body" => {
            let evs: Vec<Vec<u8>> = events(&mut g, 12).into_iter().map(String::into_bytes).collect();
            let mut with_records = evs.clone();
            with_records.push(
                format!("{{\"Records\":[{},{}]}}", cloudtrail_record(0), cloudtrail_record(1))
                    .into_bytes(),
            );
            let raw = log_group_list(&evs, 3);
            let raw_records = log_group_list(&with_records, 2);
            vec![
                pull_input(Compression::None, false, &raw, None),
                pull_input(Compression::None, true, &raw_records, None),
                pull_input(Compression::Lz4, false, &raw, None),
                pull_input(Compression::Lz4, true, &raw_records, None),
                pull_input(Compression::Zstd, true, &raw, None),
                pull_input(Compression::Lz4, true, &raw, Some(raw.len() / 2)),
                pull_input(Compression::Lz4, true, &raw, Some(raw.len() * 3)),
            ]
        }
        "event" => {
            let mut out: Vec<Vec<u8>> = events(&mut g, 24).into_iter().map(String::into_bytes).collect();
            let v: serde_json::Value = serde_json::from_slice(&out[0]).expect("generated JSON");
            out.push(serde_json::to_vec_pretty(&v).expect("serializes"));
            out.push(cloudtrail_record(0).into_bytes());
            out.push(
                format!("{{\"Records\":[{},{}]}}", cloudtrail_record(1), cloudtrail_record(2))
                    .into_bytes(),
            );
            out
        }
        "sls_answer" => {
            let raw = log_group_list(
                &events(&mut g, 4).into_iter().map(String::into_bytes).collect::<Vec<_>>(),
                2,
            );
            let lz4 = codec::compress(Compression::Lz4, &raw).expect("compresses");
            let mut pull = format!(
                "200\nx-log-cursor: MTcxNTY1Mzg2Nzk5OQ==\nx-log-count: 2\nx-log-bodyrawsize: {}\n\
                 x-log-compresstype: lz4\nx-log-read-last-cursor: 1715653867\n\
                 x-log-cursor-time: 1715653867\nx-log-requestid: 66A1B2C3\n\n",
                raw.len()
            )
            .into_bytes();
            pull.extend_from_slice(&lz4);
            vec![
                pull,
                b"404\nx-log-requestid: 66A1\n\n{\"errorCode\":\"ShardNotExist\",\"errorMessage\":\"shard 9 does not exist\"}".to_vec(),
                b"500\n\n<html>gateway</html>".to_vec(),
                b"200\n\n[{\"shardID\":0,\"status\":\"readwrite\",\"inclusiveBeginKey\":\"00000000000000000000000000000000\",\"exclusiveEndKey\":\"80000000000000000000000000000000\",\"createTime\":1715653867}]".to_vec(),
                b"200\n\n[{\"shard\":0,\"checkpoint\":\"MTcxNTY1Mzg2Nzk5OQ==\",\"updateTime\":1715653867000000,\"consumer\":\"n1\"}]".to_vec(),
            ]
        }
        "hec_answer" => vec![
            b"\xc8\x00\n{\"text\":\"Success\",\"code\":0,\"ackId\":7}".to_vec(),
            b"\x90\x01\n{\"text\":\"Invalid data format\",\"code\":6,\"invalid-event-number\":3}".to_vec(),
            b"\xf7\x01\n{\"text\":\"Server is busy\",\"code\":9}".to_vec(),
            b"\xad\x01120\n{\"text\":\"Too many requests\",\"code\":9}".to_vec(),
            b"\x93\x01\n{\"text\":\"Invalid token\",\"code\":4}".to_vec(),
            b"\xc8\x00\n{\"acks\":{\"200\":true,\"1\":false}}".to_vec(),
        ],
        "tag_answer" => vec![
            br#"{"RequestId":"A1","NextToken":"t2","TagResources":[{"ResourceARN":"acs:ecs:cn-hangzhou:1234567890123456:instance/i-bp1","Tags":[{"Key":"project","Value":"x"},{"Key":"team","Value":"y"}]}]}"#.to_vec(),
            br#"{"RequestId":"A2","Credentials":{"AccessKeyId":"STS.a","AccessKeySecret":"s","SecurityToken":"t","Expiration":"2026-12-01T10:00:00Z"}}"#.to_vec(),
            br#"{"ResourceTagMappingList":[{"ResourceARN":"arn:aws:ec2:us-east-1:111122223333:instance/i-0abc","Tags":[{"Key":"project","Value":"x"}]}],"PaginationToken":""}"#.to_vec(),
            br#"{"__type":"com.amazonaws.tagging#ThrottledException","Message":"Rate exceeded"}"#.to_vec(),
        ],
        "tags_file" => {
            let json = serde_json::to_vec(&g.tags_file()).expect("serializes");
            let mut j = vec![1u8];
            j.extend_from_slice(&json[..json.len().min(6000)]);
            // Cut at a resource boundary so the seed stays valid JSON.
            let mut small = vec![1u8];
            small.extend_from_slice(br#"{"resources":[{"arn":"acs:ecs:cn-hangzhou:1:instance/i-1","tags":{"project":"x","env":"prod"}}]}"#);
            vec![
                small,
                j,
                b"\x00arn,key,value\nacs:ecs:cn-hangzhou:1:instance/i-1,project,x\n# comment\n\nacs:ecs:cn-hangzhou:1:instance/i-1,env,prod,extra\n".to_vec(),
            ]
        }
        "config" => vec![
            include_bytes!("../../deploy/trail.toml").to_vec(),
            br#"[node]
id = "n1"
[source]
endpoint = "http://127.0.0.1:1"
project = "p"
logstore = "l"
consumer_group = "g"
access_key_id = "ak"
access_key_secret = "sk"
[[sinks]]
type = "file"
path = "/tmp/x.jsonl"
"#
            .to_vec(),
        ],
        _ => Vec::new(),
    }
}

const JSON_TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b"\\",
    b":",
    b",",
    b"null",
    b"true",
    b"false",
    b"0",
    b"-1",
    b"1e999",
    b"18446744073709551616",
    b"-9223372036854775809",
    b"0.0000001",
    b"\\u0000",
    b"\\ud800",
    b"\\u00e9",
    b"\\\"",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\t",
    b"\n",
    b" ",
    b"\"eventRW\":\"Read\",",
    b"\"eventRW\":\"Write\",",
    b"\"eventRW\":",
    b"\"awsRegion\":\"x\",",
    b"\"Records\":[",
    b"\"eventId\":\"x\",",
    b"\"referencedResources\":{\"ACS::ECS::Instance\":[\"i-1\"]},",
    b"\"resourceName\":\"a;b,c\",",
    b"\"resourceType\":\"ACS::ECS::Instance\",",
    b"\"userIdentity\":{",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    b"{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":",
];

const TOML_TOKENS: &[&[u8]] = &[
    b"[[sinks]]\n",
    b"[source]\n",
    b"[tags]\n",
    b"[cluster]\n",
    b"[filter]\n",
    b" = ",
    b"\"",
    b"'",
    b"'''",
    b"\"\"\"",
    b"\n",
    b"#",
    b"0",
    b"-1",
    b"18446744073709551616",
    b"1e400",
    b"inf",
    b"nan",
    b"true",
    b"[]",
    b"{}",
    b"{ env = \"X\" }",
    b"{ file = \"/nonexistent\" }",
    b"type = \"hec\"\n",
    b"type = \"sls\"\n",
    b"concurrency = 0\n",
    b"url = \"ftp://x\"\n",
    b"indexed_fields = [\"x\"]\n",
    b"max_pull_bytes = 1\n",
    b"\xff",
];

const HEADER_TOKENS: &[&[u8]] = &[
    b"\n",
    b"\n\n",
    b": ",
    b"x-log-bodyrawsize: ",
    b"x-log-compresstype: ",
    b"lz4",
    b"zstd",
    b"deflate",
    b"x-log-count: ",
    b"x-log-cursor: ",
    b"4294967296",
    b"-1",
    b"99999999999",
    b"x-log-end-of-cursor: 1",
    b"\r",
    b"\x00",
    b"{\"errorCode\":",
    b"\"acks\":{",
    b"\"invalid-event-number\":",
    b"\"ackId\":",
    b"18446744073709551615",
];

fn tokens(target: &str) -> &'static [&'static [u8]] {
    match target {
        "config" => TOML_TOKENS,
        "sls_answer" | "hec_answer" => HEADER_TOKENS,
        _ => JSON_TOKENS,
    }
}

const INTERESTING: &[u8] = &[0, 1, 0x7f, 0x80, 0xff, b'"', b'\\', b'{', b'}', b'0', b'9'];

/// One to eight byte- and token-level mutations of `input`, splicing from
/// `pool` at times; the result stays within `max_len`.
pub fn mutate(target: &str, input: &mut Vec<u8>, pool: &[Vec<u8>], rng: &mut Rng, max_len: usize) {
    let toks = tokens(target);
    for _ in 0..1 + rng.below(8) {
        let len = input.len();
        match rng.below(11) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.next_u64() as u8;
            }
            3 | 4 => {
                let t = toks[rng.below(toks.len())];
                let at = rng.below(len + 1);
                input.splice(at..at, t.iter().copied());
            }
            5 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                input.drain(at..at + n);
            }
            6 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(256));
                let run: Vec<u8> = input[at..at + n].to_vec();
                let to = rng.below(len + 1);
                input.splice(to..to, run);
            }
            7 if !pool.is_empty() => {
                let other = &pool[rng.below(pool.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let n = 1 + rng.below((other.len() - from).min(512));
                    let at = rng.below(len + 1);
                    let cut = if rng.chance(2) {
                        len
                    } else {
                        at + rng.below(len - at + 1)
                    };
                    input.splice(at..cut, other[from..from + n].iter().copied());
                }
            }
            8 if len > 0 => {
                input.truncate(rng.below(len));
            }
            9 if len > 0 => {
                // A number where one was: grow it past any integer type.
                let at = rng.below(len);
                if input[at].is_ascii_digit() {
                    let n = 1 + rng.below(24);
                    input.splice(at..at, std::iter::repeat_n(b'9', n));
                }
            }
            10 => {
                // Deep nesting: past any recursion limit.
                let at = rng.below(len + 1);
                let depth = 1 + rng.below(300);
                let open = if rng.chance(2) { b'[' } else { b'{' };
                input.splice(at..at, std::iter::repeat_n(open, depth));
            }
            _ => {}
        }
    }
    input.truncate(max_len);
}

/// The longest input a target is given.
pub fn max_len(target: &str) -> usize {
    match target {
        "pull_body" => 64 * 1024,
        "config" => 16 * 1024,
        _ => 32 * 1024,
    }
}

/// A `pull_body` input built structurally: events of `seeds` mutated as
/// JSON, packed into valid protobuf, compressed with lz4 or zstd, and the
/// declared raw size sometimes a lie.
pub fn structured_pull(rng: &mut Rng, events: &[Vec<u8>]) -> Vec<u8> {
    let n = 1 + rng.below(events.len().clamp(1, 8));
    let mut chosen: Vec<Vec<u8>> = (0..n)
        .map(|_| events[rng.below(events.len())].clone())
        .collect();
    for e in chosen.iter_mut() {
        if rng.chance(2) {
            mutate("event", e, events, rng, 16 * 1024);
        }
    }
    let raw = log_group_list(&chosen, 1 + rng.below(3));
    let compression = match rng.below(3) {
        0 => Compression::None,
        1 => Compression::Lz4,
        _ => Compression::Zstd,
    };
    let lie = match rng.below(8) {
        0 => Some(rng.below(raw.len() + 1)),
        1 => Some(raw.len() + 1 + rng.below(1 << 20)),
        _ => None,
    };
    pull_input(compression, rng.chance(2), &raw, lie)
}

/// Generated events, the raw material of [`structured_pull`].
pub fn event_pool() -> Vec<Vec<u8>> {
    seeds("event")
}
