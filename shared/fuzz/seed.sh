#!/usr/bin/env bash
# Seed the fuzz corpora: CORPUS/<target>/ gets the fixture files that target parses (copied,
# never committed) plus a few small hand-made inputs written here. Files already there (seeds of
# an earlier run, inputs libFuzzer found) are kept, so running this again is cheap.
#
# usage: seed.sh ISTIO_FIXTURES REPO_FIXTURES CORPUS
#   ISTIO_FIXTURES  istioctl's fixtures (../shared/fixtures/istio beside the repo); may be missing
#   REPO_FIXTURES   shared/tests/fixtures of the repo
#   CORPUS          the corpus root, e.g. .cache/fuzz/corpus
set -euo pipefail

istio=${1:?usage: seed.sh ISTIO_FIXTURES REPO_FIXTURES CORPUS}
repo=${2:?usage: seed.sh ISTIO_FIXTURES REPO_FIXTURES CORPUS}
corpus=${3:?usage: seed.sh ISTIO_FIXTURES REPO_FIXTURES CORPUS}

targets=(config_dump clusters_json syncz_http syncz_xds syncz_proto sync_diff jwks jwt
  logging_text envoy_log_line stats_text)
for t in "${targets[@]}"; do mkdir -p "$corpus/$t"; done

if [ ! -d "$istio" ]; then
  echo "seed: $istio not found; seeding from $repo and hand-made inputs only" >&2
  istio=
fi

# seed TARGET FILE...: copy each file as <its path with / turned into _>.
seed() {
  local t=$1 f name
  shift
  for f in "$@"; do
    [ -f "$f" ] || continue
    name=${f#"$istio"/}
    name=${name#"$repo"/}
    install -m 0644 "$f" "$corpus/$t/fixture_${name//\//_}"
  done
}

# Files under the fixture dirs whose text contains a string.
with() {
  local dirs=("$repo")
  [ -n "$istio" ] && dirs+=("$istio")
  grep -rlF -- "$1" "${dirs[@]}" 2>/dev/null | sort || true
}

mapfile -t dumps < <(with '"configs"')
seed config_dump "${dumps[@]}"
seed sync_diff "${dumps[@]}"
mapfile -t clusters < <(with '"cluster_statuses"')
seed clusters_json "${clusters[@]}"
if [ -n "$istio" ]; then
  seed syncz_http "$istio"/v1.21/ps/derived-inputs/*.syncz.json "$istio"/derived/*syncz*.json
  seed syncz_xds "$istio"/current/ps-xds/*.json "$istio"/current/ps-xds/*.yaml
  seed logging_text "$istio"/current/envoy-logging/logging.txt
fi
mapfile -t stats < <(find "$repo" -name 'stats*.txt' | sort)
seed stats_text "${stats[@]}"

# Hand-made inputs, and inputs derived from the fixtures (the inline JWKS of the dumps' JWT
# providers, a protobuf syncz answer, JWTs).
python3 - "$corpus" "${dumps[@]}" <<'PY'
import base64, json, os, sys

corpus, dumps = sys.argv[1], sys.argv[2:]

def put(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(corpus, target, "made_" + name), "wb") as f:
        f.write(data)

def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

# jwks: the inline JWKS strings of the dumps' jwt_authn providers, and each placeholder shape.
found = set()
def walk(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k in ("inline_string", "inlineString", "jwks") and isinstance(x, str) and "keys" in x:
                found.add(x)
            walk(x)
    elif isinstance(v, list):
        for x in v:
            walk(x)
for d in dumps:
    try:
        with open(d, "rb") as f:
            walk(json.load(f))
    except (OSError, ValueError):
        pass
for i, s in enumerate(sorted(found)):
    put("jwks", "inline_%d.json" % i, s)
uri = "https://auth.example.com/.well-known/jwks.json"
rsa = {"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig", "e": "AQAB", "n": b64(bytes(range(1, 255)))}
put("jwks", "rsa.json", json.dumps({"keys": [rsa]}))
put("jwks", "mixed.json", json.dumps({"keys": [
    rsa,
    {"kty": "EC", "kid": "e1", "alg": "ES256", "crv": "P-256", "x": b64(b"x" * 32), "y": b64(b"y" * 32)},
    {"kty": "OKP", "kid": "o1", "alg": "EdDSA", "crv": "Ed25519", "x": b64(b"o" * 32)},
    {"kty": "oct", "kid": "s1", "k": b64(b"secret"), "alg": "HS256"},
    {"kty": "RSA", "e": "AQAB", "n": b64(b"\x00\x01\x02"), "d": "private", "p": "p", "q": "q"},
]}))
put("jwks", "placeholder_1.8.json", json.dumps({"keys": [{"e": "AQAB", "kid": "abc", "kty": "RSA",
    "n": "Error-IstiodFailedToFetchJwksUri-" + b64(uri.encode())}]}))
put("jwks", "placeholder_1.15.json", json.dumps({"keys": [{"e": "AQAB", "kid": "abc", "kty": "RSA",
    "n": b64(b"Error-IstiodFailedToFetchJwksUri-" + uri.encode())}]}))
put("jwks", "placeholder_fake.json", json.dumps({"keys": [{"e": "AQAB", "kty": "RSA", "n": "vqS7RN4b34i3_5Yy" + "A" * 40}]}))
put("jwks", "placeholder_public_only.json", json.dumps({"keys": [{"e": "AQAB", "kty": "RSA", "n": "0xObjM0UvS_oaazjpEYl" + "A" * 40}]}))
put("jwks", "empty.json", "")
put("jwks", "pem.txt", "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n")

# jwt: header.payload[.signature], with and without Bearer, string or list audiences.
def token(header, claims, sig="c2ln"):
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), sig])
put("jwt", "rs256", token({"alg": "RS256", "kid": "k1", "typ": "JWT"},
    {"iss": "https://auth.example.com", "sub": "user", "aud": "aud", "exp": 1750003600, "nbf": 1749990000, "iat": 1749990000}))
put("jwt", "bearer", "Bearer " + token({"alg": "ES256", "kid": "e1"},
    {"iss": "https://other.example", "aud": ["a", "b"], "exp": 1000, "groups": ["x"], "nested": {"a": 1}}))
put("jwt", "unsigned", token({"alg": "none"}, {"sub": "x"}, sig=""))
put("jwt", "json_form", json.dumps({"alg": "RS256", "kid": "k1"}) + "\n" + json.dumps(
    {"iss": "https://auth.example.com", "aud": ["aud"], "exp": 1750003600, "nbf": 1749990000}))
for name, exp in [("exp_max", 2**63 - 1), ("exp_min", -2**63)]:
    put("jwt", name, json.dumps({"alg": "RS256"}) + "\n" + json.dumps({"iss": "https://auth.example.com", "exp": exp, "nbf": exp}))
put("jwt", "two_parts", ".".join(token({"alg": "HS256"}, {"iss": "i"}).split(".")[:2]))

# logging_text: the `active loggers:` answer (hand-made) and istiod's ControlZ /scopej/ JSON.
put("logging_text", "loggers.txt", "active loggers:\n  admin: warning\n  connection: debug\n  http: info\n  jwt: critical\n  misc: error\n  rbac: trace\n  upstream: off\n")
put("logging_text", "args.txt", "proxy sidecar --proxyLogLevel=debug --proxyComponentLogLevel misc:error,rbac:debug -l info\n")
put("logging_text", "scopes.json", json.dumps([
    {"name": "ads", "description": "ads debugging", "output_level": "info", "stack_trace_level": "none", "log_callers": False},
    {"name": "default", "description": "Unscoped", "output_level": "debug", "stack_trace_level": "error", "log_callers": True},
]))

# envoy_log_line: "logger,logger\n" then log lines in Envoy's and Istio's formats.
put("envoy_log_line", "lines.txt",
    "rbac,jwt,http\n"
    "[2024-05-01 10:00:00.000][15][debug][rbac] [source/extensions/filters/http/rbac/rbac_filter.cc:114] checking request\n"
    "2024-05-01T10:00:00.000Z\tdebug\tenvoy jwt source/extensions/filters/http/jwt_authn/filter.cc:60\tJwt authentication completed\n"
    "2024-05-01T10:00:00.000Z\tinfo\tenvoy http\tnew stream\n"
    "[2024-05-01 10:00:00.000][15][info][upstream] cluster added\x1b[31m\n")
put("envoy_log_line", "istiod.txt",
    "https://auth.example.com/.well-known/jwks.json,https://auth.example.com\n"
    "2024-05-01T10:00:00.000Z\terror\tmodel\tFailed to fetch public key from \"https://auth.example.com/.well-known/jwks.json\": x509: certificate signed by unknown authority\n"
    "2024-05-01T10:00:01.000Z\tinfo\tmodel\tUpdated cached JWT public key from \"https://auth.example.com/.well-known/jwks.json\"\n")

# stats_text
put("stats_text", "stats.txt", "cluster.outbound|80||a.b.svc.cluster.local.upstream_cx_total: 3\nhttp.inbound_0.0.0.0_8080.rq_total: 12\nserver.version: 1.2.3\nlistener.admin.main_thread.downstream_cx_active: 0\nbad line\n")

# syncz_proto: a DiscoveryResponse with one ClientConfig (node with metadata, generic xDS configs
# with a timestamp, a status and an error), encoded by hand.
def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)
def field(n, wire, payload):
    return varint(n << 3 | wire) + payload
def ln(n, b):
    if isinstance(b, str):
        b = b.encode()
    return field(n, 2, varint(len(b)) + b)
def vi(n, v):
    return field(n, 0, varint(v))
def value_str(s):
    return ln(3, s)
def struct(d):
    return b"".join(ln(1, ln(1, k) + ln(2, value_str(v))) for k, v in d.items())
node = ln(1, "reviews-v2-1.shop") + ln(3, struct({"CLUSTER_ID": "Kubernetes", "ISTIO_VERSION": "1.24.2", "NAMESPACE": "shop"}))
cc = ln(1, node)
for url, status, err in [
    ("type.googleapis.com/envoy.config.cluster.v3.Cluster", 1, None),
    ("type.googleapis.com/envoy.config.listener.v3.Listener", 4, "duplicate listener"),
    ("type.googleapis.com/envoy.config.route.v3.RouteConfiguration", 3, None),
    ("type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", 2, None),
]:
    g = ln(1, url) + ln(5, vi(1, 1718877600) + vi(2, 5)) + vi(6, status)
    if err:
        g += ln(8, ln(3, err))
    cc += ln(3, g)
cc += ln(2, vi(1, 1) + ln(2, b"") + ln(3, b""))
client = "type.googleapis.com/envoy.service.status.v3.ClientConfig"
resp = ln(1, "1.1") + ln(2, ln(1, client) + ln(2, cc)) + ln(4, client)
resp += ln(6, ln(1, json.dumps({"Component": "istiod", "ID": "istiod-1", "Info": {"version": "1.24.2"}})))
put("syncz_proto", "response.bin", resp)
PY

for t in "${targets[@]}"; do
  printf '  %-15s %4d seed files\n' "$t" "$(find "$corpus/$t" -type f | wc -l)"
done
