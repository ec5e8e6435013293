//! `trail-node demo`, the README's first command, as a user runs it — here
//! with `--hec-url` pointing at a separately started HEC receiver (standing
//! in for a user's own Splunk), in both URL forms the flag accepts.

use std::process::Command;

use serde_json::Value;
use trail_devstack::gen::Generator;
use trail_tests::{binary, Devstack, HEC_TOKEN};

const EVENTS: u64 = 20_000;

fn demo(hec_url: &str) -> std::process::Output {
    Command::new(binary("trail-node"))
        .args([
            "demo",
            "--exit-when-done",
            "--listen",
            "127.0.0.1:0",
            "--control",
            "127.0.0.1:0",
        ])
        .args(["--events", &EVENTS.to_string(), "--hec-url", hec_url])
        .env("TRAIL_DEMO_HEC_TOKEN", HEC_TOKEN)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run trail-node demo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_delivers_to_an_external_hec_by_base_or_full_url_and_is_deterministic() {
    let hec = Devstack::hec(&[]);
    // The writes of the default seed: what must arrive.
    let mut g = Generator::new(42);
    let writes: Vec<String> = (0..EVENTS)
        .map(|_| serde_json::from_str::<Value>(&g.next_event()).unwrap())
        .filter(trail_devstack::gen::is_write)
        .map(|v| v["eventId"].as_str().unwrap().to_owned())
        .collect();

    let out = demo(&format!("http://{}", hec.addr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains(HEC_TOKEN),
        "the token is never printed: {stdout}"
    );
    let ids = trail_tests::hec_event_ids(&hec).await;
    assert_eq!(ids.len(), writes.len(), "every write, nothing else");
    assert!(writes.iter().all(|id| ids.get(id) == Some(&1)));

    // The full collector URL works too, and a second run sends the same ids.
    let out = demo(&format!("http://{}/services/collector/event", hec.addr));
    assert!(out.status.success());
    let ids = trail_tests::hec_event_ids(&hec).await;
    assert_eq!(ids.len(), writes.len());
    assert!(
        writes.iter().all(|id| ids.get(id) == Some(&2)),
        "same flags, same event ids"
    );
}

/// The CloudTrail flavour: every write record of the seed's files reaches
/// an external HEC once, and the demo says how they came (S3 and SQS).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloudtrail_demo_delivers_every_write_record_once() {
    use trail_devstack::gen::cloudtrail::CloudTrailGenerator;
    let hec = Devstack::hec(&[]);
    let mut g = CloudTrailGenerator::new(42).organization("o-trail0demo");
    let mut writes = Vec::new();
    let mut left = EVENTS;
    while left > 0 {
        let n = left.min(250);
        for r in g.next_file(n as usize).records {
            let v: Value = serde_json::from_str(&r).unwrap();
            if v["readOnly"] == false {
                writes.push(v["eventID"].as_str().unwrap().to_owned());
            }
        }
        left -= n;
    }
    let out = Command::new(binary("trail-node"))
        .args([
            "demo",
            "--trail",
            "cloudtrail",
            "--exit-when-done",
            "--control",
            "127.0.0.1:0",
        ])
        .args([
            "--events",
            &EVENTS.to_string(),
            "--hec-url",
            &format!("http://{}", hec.addr),
        ])
        .env("TRAIL_DEMO_HEC_TOKEN", HEC_TOKEN)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run trail-node demo --trail cloudtrail");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("messages received") && stdout.contains("deleted once delivered"),
        "{stdout}"
    );
    assert!(
        stdout.contains("dead letters  1"),
        "the poison object: {stdout}"
    );
    let ids = trail_tests::hec_event_ids(&hec).await;
    assert_eq!(ids.len(), writes.len(), "every write, nothing else");
    assert!(writes.iter().all(|id| ids.get(id) == Some(&1)));
}
