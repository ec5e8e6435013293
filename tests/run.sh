#!/usr/bin/env bash
# Runs every test of Trail from a fresh clone:
#   1. a Python venv (.venv) with the pinned official Alibaba SDKs
#      (tests/conformance/requirements.txt), made or refreshed when the pins change;
#   2. every target once: the binaries the cross-process tests start, and the
#      tests themselves (one feature set, so nothing is compiled twice);
#   3. Rust unit, integration and cross-process tests (benches run once as tests);
#   4. devstack's conformance suite, driven by the official Python SDKs
#      (aliyun-log-python-sdk for SLS; aliyun-python-sdk-core, -tag, -sts, -ecs, -slb for cloud;
#      boto3 for S3 and SQS).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
pins=tests/conformance/requirements.txt
if [ ! -x "$venv/bin/pytest" ] || ! cmp -s "$pins" "$venv/.pins"; then
  echo "==> installing the pinned Python SDKs into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$pins"
  cp "$pins" "$venv/.pins"
fi

echo "==> building the binaries and the tests"
cargo build --workspace --all-targets --locked

echo "==> Rust tests"
cargo test --workspace --all-targets --locked

echo "==> devstack conformance with the official Python SDKs (SLS, Tag, STS, ECS, SLB; boto3: S3, SQS)"
TRAIL_DEVSTACK_BIN="$PWD/target/debug/trail-devstack" "$venv/bin/python" -m pytest tests/conformance -q
