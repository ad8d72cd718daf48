#!/usr/bin/env bash
# `make bench`: release builds of the plugins and the bench tools, jq and GNU time from Debian's
# packages when missing, then the driver (tests/bench/driver.rs), which generates its inputs
# under .cache/bench, measures, prints the table and writes it to .cache/bench/results.md.
# Arguments go to the driver, e.g. `tests/bench/run.sh --sizes 10 --skip-world --runs 3`.
set -euo pipefail
cd "$(dirname "$0")/../.."

CARGO=${CARGO:-cargo}
SUDO=
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

apt_install() {
  echo "bench: installing $* (apt-get)" >&2
  $SUDO apt-get install -y "$@" >/dev/null || { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y "$@" >/dev/null; }
}
command -v jq >/dev/null || apt_install jq
[ -x /usr/bin/time ] || apt_install time

$CARGO build --release --locked \
  -p kubectl-envoy-dump -p kubectl-envoy-log -p kubectl-mesh-sync -p meshsim \
  --bin kubectl-envoy-dump --bin kubectl-envoy-log --bin kubectl-mesh-sync \
  --bin meshsim-floor --bin meshsim-bench --bin meshsim-gen

exec target/release/meshsim-bench --bin-dir target/release --cache .cache/bench "$@"
