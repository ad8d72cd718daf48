#!/usr/bin/env bash
# make demo: start the simulated `seed` mesh, run each plugin against it through kubectl, stop it.
set -uo pipefail
BIN_DIR=${1:-target/debug}
work=$(mktemp -d)
sim_pid=""
cleanup() {
  if [ -n "$sim_pid" ] && kill -0 "$sim_pid" 2>/dev/null; then
    kill -INT "$sim_pid"; wait "$sim_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT

make -s install-bins PREFIX="$work" BIN_DIR="$BIN_DIR" >/dev/null
export PATH="$work/bin:$PATH"

"$BIN_DIR/meshsim" up --scenario seed --ready-file "$work/ready" --kubeconfig-out "$work/kubeconfig" >/dev/null &
sim_pid=$!
for _ in $(seq 1 600); do
  [ -f "$work/ready" ] && break
  kill -0 "$sim_pid" 2>/dev/null || { echo "meshsim exited before it was ready" >&2; exit 2; }
  sleep 0.1
done
[ -f "$work/ready" ] || { echo "meshsim did not get ready in 60s" >&2; exit 2; }
export KUBECONFIG="$work/kubeconfig"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; echo "(exit $?)"; }

step kubectl get pods -n olaf-customer
customer=$(kubectl get pods -n olaf-customer -l app=customer -o jsonpath='{.items[0].metadata.name}')
step kubectl envoy-dump clusters "$customer" -n olaf-customer
step kubectl envoy-dump jwt "$customer" -n olaf-customer
step kubectl envoy-log "$customer" -n olaf-customer rbac=debug
step kubectl envoy-log "$customer" -n olaf-customer --reset
step kubectl mesh-sync -A
step kubectl jwks-trust check -A
# fix 2 of the seed: give istiod the private CA (it restarts and fetches the keys)
uri=$(kubectl get requestauthentications -n olaf-customer customerjwt -o jsonpath='{.spec.jwtRules[0].jwksUri}')
origin=$(printf '%s' "$uri" | sed -E 's#^(https://[^/]+).*#\1#')
step kubectl jwks-trust add-ca --from-url "$origin" --yes
step kubectl jwks-trust check -A
echo
echo "demo done; stopping the simulated mesh"
