//! The deployment material is real: every node config under `deploy/`
//! (the compose nodes, the Kubernetes template as the StatefulSet renders
//! it for pods 0 and 1) passes `trail-node check`.

use std::path::Path;
use std::process::Command;

use trail_tests::binary;

fn check(path: &Path) {
    let out = Command::new(binary("trail-node"))
        .args(["check", "--offline", "--config"])
        .arg(path)
        .env("TRAIL_SLS_ACCESS_KEY_SECRET", "s")
        .env("TRAIL_HEC_TOKEN", "h")
        .env("TRAIL_CONTROL_TOKEN", "c")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn deploy() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

#[test]
fn compose_node_configs_check() {
    for id in 1..=3 {
        check(&deploy().join(format!("compose/trail-{id}.toml")));
    }
}

#[test]
fn the_kubernetes_template_renders_to_valid_configs() {
    let cm = std::fs::read_to_string(deploy().join("k8s/configmap.yaml")).unwrap();
    // The template is the block under `trail.toml.in: |`, indented 4 spaces.
    let template: String = cm
        .split("trail.toml.in: |\n")
        .nth(1)
        .unwrap()
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n");
    let dir = std::env::temp_dir().join(format!("trail-k8s-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for ordinal in 0..2u64 {
        let bootstrap = if ordinal == 0 {
            "bootstrap = true".to_string()
        } else {
            r#"join = ["trail-0.trail-peers:7400", "trail-1.trail-peers:7400", "trail-2.trail-peers:7400"]"#
                .to_string()
        };
        let pod = format!("trail-{ordinal}");
        let rendered = template
            .replace("@NODE_ID@", &(ordinal + 1).to_string())
            .replace("@POD@", &pod)
            .replace("@BOOTSTRAP@", &bootstrap);
        let path = dir.join(format!("{pod}.toml"));
        std::fs::write(&path, rendered).unwrap();
        check(&path);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
