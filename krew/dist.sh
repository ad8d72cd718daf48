#!/usr/bin/env bash
# Release packaging for the four plugins: the one implementation behind `make dist`,
# `make krew`, `make krew-check`, the release workflow and the e2e krew test.
#
#   krew/dist.sh archives    BIN_DIR/kubectl-<plugin>[.exe] + LICENSE + README.md
#                               -> DIST_DIR/<plugin>_<version>_<os>_<arch>.tar.gz, + SHA256SUMS
#   krew/dist.sh checksums   (re)write DIST_DIR/SHA256SUMS over every archive in DIST_DIR
#   krew/dist.sh krew        render krew/templates/<plugin>.yaml (the krew-release-bot
#                               templates) into KREW_OUT/<plugin>.yaml with the real sha256 of
#                               the archives in DIST_DIR; platforms without an archive there are
#                               left out, so every sha256 in the result is real
#   krew/dist.sh committed   rewrite krew/<plugin>.yaml (the manifests to submit to krew-index
#                               by hand) from the templates at VERSION, sha256 all zero
#   krew/dist.sh check       krew/<plugin>.yaml (the committed manifests) must equal their
#                               template rendered at the manifest's version (sha256 aside), and
#                               pass the krew-index validator if VALIDATOR is executable
#
# Environment (all optional):
#   BIN_DIR        where the built binaries are         (default: target/release)
#   DIST_DIR       where archives go / are read         (default: dist)
#   KREW_OUT       where `krew` writes manifests        (default: $DIST_DIR/krew)
#   VERSION        release tag                          (default: v + the Cargo workspace version)
#   DIST_OS        krew os of the binaries              (default: this machine: linux|darwin|windows)
#   DIST_ARCH      krew arch of the binaries            (default: this machine: amd64|arm64)
#   KREW_URL_BASE  where the archives are downloaded from
#                  (default: https://github.com/meshdebug/meshdebug/releases/download/$VERSION/)
#   PLUGINS        which plugins                        (default: envoy-dump envoy-log mesh-sync jwks-trust)
#   VALIDATOR      krew manifest validator for `check`  (default: ../shared/tools/validate-krew-manifest)
#   SOURCE_DATE_EPOCH  file times inside the archives   (default: the last commit, else now)
#   DIST_GZIP_LEVEL    gzip level of the archives       (default: 9; the e2e test uses 1)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PLUGINS=${PLUGINS:-envoy-dump envoy-log mesh-sync jwks-trust}
DIST_DIR=${DIST_DIR:-$ROOT/dist}
ZERO_SHA=0000000000000000000000000000000000000000000000000000000000000000

die() { echo "dist.sh: $*" >&2; exit 2; }
note() { echo "dist.sh: $*" >&2; }

workspace_version() {
  awk -F'"' '/^\[/ { in_ws = ($0 == "[workspace.package]") } in_ws && /^version *=/ { print $2; exit }' \
    "$ROOT/Cargo.toml"
}

VERSION=${VERSION:-v$(workspace_version)}
[[ $VERSION =~ ^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$ ]] ||
  die "VERSION '$VERSION' is not a v-prefixed semantic version (krew requires e.g. v0.1.0)"
KREW_URL_BASE=${KREW_URL_BASE:-https://github.com/meshdebug/meshdebug/releases/download/$VERSION/}
[[ $KREW_URL_BASE == */ ]] || KREW_URL_BASE="$KREW_URL_BASE/"

host_os() {
  case "$(uname -s)" in
    Linux) echo linux ;;
    Darwin) echo darwin ;;
    MINGW* | MSYS* | CYGWIN* | Windows_NT) echo windows ;;
    *) die "unknown OS $(uname -s): set DIST_OS" ;;
  esac
}

host_arch() {
  case "$(uname -m)" in
    x86_64 | amd64) echo amd64 ;;
    aarch64 | arm64) echo arm64 ;;
    *) die "unknown architecture $(uname -m): set DIST_ARCH" ;;
  esac
}

sha256() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1
  fi
}

archive_name() { # plugin os arch
  echo "${1}_${VERSION}_${2}_${3}.tar.gz"
}

cmd_checksums() {
  (
    cd "$DIST_DIR"
    shopt -s nullglob
    files=(*.tar.gz)
    ((${#files[@]})) || die "no archives in $DIST_DIR"
    for f in "${files[@]}"; do
      echo "$(sha256 "$f")  $f"
    done >SHA256SUMS
  )
  note "wrote $DIST_DIR/SHA256SUMS"
}

cmd_archives() {
  local bin_dir=${BIN_DIR:-$ROOT/target/release}
  local os=${DIST_OS:-$(host_os)} arch=${DIST_ARCH:-$(host_arch)}
  local exe="" epoch
  [[ $os == windows ]] && exe=.exe
  epoch=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || date +%s)}
  mkdir -p "$DIST_DIR"
  local stage
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"; trap - RETURN' RETURN
  for p in $PLUGINS; do
    local bin="kubectl-$p$exe"
    [[ -f $bin_dir/$bin ]] || die "$bin_dir/$bin not found: build the plugins first"
    rm -rf "${stage:?}"/*
    cp "$bin_dir/$bin" "$stage/$bin"
    chmod 0755 "$stage/$bin"
    cp "$ROOT/LICENSE" "$ROOT/README.md" "$stage/"
    chmod 0644 "$stage/LICENSE" "$stage/README.md"
    local out
    out="$DIST_DIR/$(archive_name "$p" "$os" "$arch")"
    # Reproducible where GNU tar allows it (fixed owner and times); gzip -n drops the name/time.
    local tar_opts=()
    if tar --version 2>/dev/null | grep -q 'GNU tar'; then
      tar_opts=(--owner=0 --group=0 --numeric-owner --mtime="@$epoch")
    fi
    tar -C "$stage" ${tar_opts[@]+"${tar_opts[@]}"} -cf - "$bin" LICENSE README.md | gzip "-${DIST_GZIP_LEVEL:-9}" -n >"$out.tmp"
    mv "$out.tmp" "$out"
    note "wrote $out"
  done
  if [[ $os == linux ]] && command -v ldd >/dev/null 2>&1 &&
    ldd "$bin_dir/kubectl-${PLUGINS%% *}" >/dev/null 2>&1; then
    note "these linux binaries are dynamically linked (glibc, e.g. x86_64-unknown-linux-gnu:" \
      "no musl target installed here); the release workflow builds static musl binaries"
  fi
  cmd_checksums
}

# render TEMPLATE OUT MODE: MODE=archives takes sha256 from DIST_DIR and leaves out platforms
# without an archive; MODE=zero writes the all-zero sha256 for every platform.
#
# Implements the part of Go text/template the krew-release-bot templates use:
# {{- /* comment */ -}}, {{ .TagName }}, and a line {{addURIAndSha "URL" .TagName | indent N }},
# which becomes `uri: URL` and, N spaces in, `sha256: HEX` (the bot's output, sha256 quoted).
render() {
  local tpl=$1 out=$2 mode=$3
  local re_call='^( *)\{\{ *addURIAndSha +"([^"]+)" +\.TagName *(\| *indent +([0-9]+) *)?\}\} *$'
  local in_comment=0 in_platforms=0 keep=1 kept=0 item="" line
  local result=""
  flush_item() {
    if [[ -n $item ]]; then
      if ((keep)); then
        result+=$item
        kept=$((kept + 1))
      fi
    fi
    item=""
    keep=1
  }
  while IFS= read -r line || [[ -n $line ]]; do
    if ((in_comment)); then
      [[ $line == *'*/'*'}}'* ]] && in_comment=0
      continue
    fi
    if [[ $line =~ ^\{\{-?\ */\* ]]; then
      [[ $line == *'*/'*'}}'* ]] || in_comment=1
      continue
    fi
    line=${line//'{{ .TagName }}'/$VERSION}
    line=${line//'{{.TagName}}'/$VERSION}
    if [[ $line =~ $re_call ]]; then
      local lead=${BASH_REMATCH[1]} url=${BASH_REMATCH[2]} n=${BASH_REMATCH[4]:-4}
      local file=${url##*/} sha
      if [[ $mode == zero ]]; then
        sha=$ZERO_SHA
      elif [[ -f $DIST_DIR/$file ]]; then
        sha=$(sha256 "$DIST_DIR/$file")
      else
        keep=0
        sha=$ZERO_SHA
      fi
      line="${lead}uri: ${KREW_URL_BASE}${file}"$'\n'"$(printf '%*s' "$n" '')sha256: \"$sha\""
    fi
    [[ $line == *'{{'* ]] && die "$tpl: template syntax this renderer does not know: $line"
    if ((in_platforms)) && [[ $line =~ ^\ \ -\  ]]; then
      flush_item
    fi
    if ((in_platforms)) && [[ $line =~ ^\ \ \ \  || $line =~ ^\ \ -\  ]]; then
      item+="$line"$'\n'
      continue
    fi
    flush_item
    result+="$line"$'\n'
    [[ $line == '  platforms:' ]] && in_platforms=1
  done <"$tpl"
  flush_item
  ((kept)) || die "$tpl: no archive for any platform in $DIST_DIR (run make dist first)"
  printf '%s' "$result" >"$out"
}

cmd_krew() {
  local out_dir=${KREW_OUT:-$DIST_DIR/krew}
  mkdir -p "$out_dir"
  for p in $PLUGINS; do
    render "$ROOT/krew/templates/$p.yaml" "$out_dir/$p.yaml" archives
    note "wrote $out_dir/$p.yaml (version $VERSION, platforms: $(grep -c "sha256:" "$out_dir/$p.yaml"))"
  done
}

cmd_committed() {
  for p in $PLUGINS; do
    local out="$ROOT/krew/$p.yaml"
    render "$ROOT/krew/templates/$p.yaml" "$out.tmp" zero
    {
      cat <<EOF
# krew-index manifest for \`kubectl $p\`: submit it by hand as plugins/$p.yaml
# (krew-release-bot only updates plugins already in the index). Generated from
# krew/templates/$p.yaml by \`krew/dist.sh committed\`; \`make krew-check\` keeps them in step.
# The sha256 values are all zero: the archives of a release only exist once the release workflow
# has built them. Before submitting, take dist/krew/$p.yaml from the release assets (or run
# \`make krew\` on the downloaded archives): same manifest, real sha256 values.
EOF
      cat "$out.tmp"
    } >"$out"
    rm -f "$out.tmp"
    note "wrote $out"
  done
}

cmd_check() {
  local validator=${VALIDATOR:-$ROOT/../shared/tools/validate-krew-manifest}
  local tmp rc=0
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"; trap - RETURN' RETURN
  for p in $PLUGINS; do
    local committed="$ROOT/krew/$p.yaml" v
    [[ -f $committed ]] || die "$committed is missing"
    v=$(awk '/^  version:/ { print $2; exit }' "$committed")
    VERSION=$v KREW_URL_BASE=https://github.com/meshdebug/meshdebug/releases/download/$v/ \
      render "$ROOT/krew/templates/$p.yaml" "$tmp/$p.yaml" zero
    if ! diff -u <(grep -v -e '^#' -e 'sha256:' "$tmp/$p.yaml") \
      <(grep -v -e '^#' -e 'sha256:' "$committed") >"$tmp/$p.diff"; then
      note "krew/$p.yaml differs from krew/templates/$p.yaml rendered at $v:"
      cat "$tmp/$p.diff" >&2
      rc=1
    fi
    [[ $v == "$VERSION" ]] || note "krew/$p.yaml is at $v, VERSION is $VERSION (krew/dist.sh committed updates it)"
  done
  if [[ -x $validator ]]; then
    (cd "$ROOT/krew" && "$validator" $(for p in $PLUGINS; do echo "$p.yaml"; done)) || rc=1
  else
    note "$validator not found: krew-index validation skipped"
  fi
  return $rc
}

case "${1:-}" in
  archives) cmd_archives ;;
  checksums) cmd_checksums ;;
  krew) cmd_krew ;;
  committed) cmd_committed ;;
  check) cmd_check ;;
  *)
    sed -n '2,/^# Environment/p' "$0" >&2
    exit 2
    ;;
esac
