#!/bin/sh
# Shell completion for the krew-installed plugins (kubectl >= 1.26).
#
# kubectl completes `kubectl envoy-dump <TAB>` by running `kubectl_complete-envoy_dump` from PATH,
# but krew installs only one executable per plugin (kubernetes-sigs/krew#812). This writes the
# four two-line helpers next to krew's plugin links; each runs the plugin with `__complete`.
#
#   sh completion-shims.sh [BIN_DIR]     BIN_DIR defaults to ${KREW_ROOT:-$HOME/.krew}/bin
#
# Plugins that are not installed there are skipped. Run it again after installing another of
# the four; upgrades need nothing (the helpers call krew's link, which krew updates).
set -eu

bin_dir=${1:-${KREW_ROOT:-$HOME/.krew}/bin}
[ -d "$bin_dir" ] || { echo "completion-shims: $bin_dir does not exist (is krew installed?)" >&2; exit 2; }

written=0
for p in envoy_dump envoy_log mesh_sync jwks_trust; do
  plugin="$bin_dir/kubectl-$p"
  if [ ! -e "$plugin" ]; then
    echo "completion-shims: skipped $p: $plugin not found" >&2
    continue
  fi
  shim="$bin_dir/kubectl_complete-$p"
  printf '#!/bin/sh\nexec "%s" __complete "$@"\n' "$plugin" >"$shim"
  chmod 0755 "$shim"
  echo "wrote $shim"
  written=$((written + 1))
done
[ "$written" -gt 0 ] || { echo "completion-shims: none of the plugins is installed in $bin_dir" >&2; exit 2; }
