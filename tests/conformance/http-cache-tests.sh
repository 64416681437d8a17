#!/usr/bin/env bash
# Runs the http-cache-tests suite (npm http-cache-tests 0.4.5, https://cache-tests.fyi) against
# edgegate: an `ANY /{proxy+}` route with a stage cache in front of the suite's own origin.
#   tests/conformance/http-cache-tests.sh [honor|ignore]
# Prints the summary (tests/conformance/summarize.mjs); the raw results stay in $OUT.
# Needs node + npm (the suite is installed from the npm registry on first use). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE=${1:-honor}
BIN=${EDGEGATE:-target/release/edgegate}
[ -x "$BIN" ] || cargo build --release --locked
SUITE_HOME=${SUITE_HOME:-$PWD/target/http-cache-tests}
SUITE=$SUITE_HOME/node_modules/http-cache-tests
if [ ! -d "$SUITE" ]; then
    mkdir -p "$SUITE_HOME"
    (cd "$SUITE_HOME" && npm install --no-audit --no-fund --silent http-cache-tests@0.4.5)
fi
D=$(mktemp -d)
OUT=${OUT:-$D/results.json}
ORIGIN_PORT=${ORIGIN_PORT:-18610}
GW_PORT=${GW_PORT:-18620}
cleanup() { kill "$ORIGIN" "$GW" 2>/dev/null || true; }
trap cleanup EXIT
(cd "$SUITE" && npm_config_port=$ORIGIN_PORT npm_config_protocol=http npm_config_pidfile="$D/origin.pid" exec node --import "$OLDPWD/tests/conformance/loopback.mjs" server/server.mjs) >"$D/origin.log" 2>&1 &
ORIGIN=$!
cat >"$D/gw.toml" <<TOML
[server]
listen = ["127.0.0.1:$GW_PORT"]
admin_listen = "127.0.0.1:$((GW_PORT + 1))"
upgrade_sock = "$D/upgrade.sock"
pid_file = "$D/edgegate.pid"
access_log = "off"
watch = false
[[apis]]
name = "cachetests"
[apis.stages.prod]
cache = { ttl = "3600s", capacity = "256MiB", origin_cache_control = "$MODE" }
[[apis.routes]]
route = "ANY /{proxy+}"
integration = { type = "http", uri = "http://127.0.0.1:$ORIGIN_PORT/{proxy}" }
TOML
"$BIN" -c "$D/gw.toml" 2>"$D/gw.log" &
GW=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$((GW_PORT + 1))/readyz" >/dev/null && curl -s "http://127.0.0.1:$ORIGIN_PORT/" >/dev/null && break
    sleep 0.1
done
if [ -n "${TEST_ID:-}" ]; then
    # one test, with the requests and responses as the client and the origin saw them
    (cd "$SUITE" && npm_config_base="http://127.0.0.1:$GW_PORT/prod" npm_config_id="$TEST_ID" timeout 120 node --no-warnings cli.mjs)
    exit 0
fi
(cd "$SUITE" && npm_config_base="http://127.0.0.1:$GW_PORT/prod" npm_config_id="" npm_package_config_id="" timeout 900 node --no-warnings cli.mjs) >"$OUT"
node tests/conformance/summarize.mjs "$SUITE" "$OUT"
echo "raw results: $OUT"
