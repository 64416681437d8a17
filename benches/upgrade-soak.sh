#!/usr/bin/env bash
# Graceful upgrades under keep-alive load: N upgrades (default 20) while wrk runs with
# keep-alive connections at full speed (well above 2,000 req/s); prints wrk's summary (socket
# errors, non-2xx) and the hand-over times.
#   benches/upgrade-soak.sh [UPGRADES] [CONNECTIONS]
# Needs: wrk, python3, a release build (cargo build --release). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20}
C=${2:-32}
BIN=${EDGEGATE:-target/release/edgegate}
D=$(mktemp -d)
trap 'kill $(cat "$D"/edgegate.pid 2>/dev/null) $ORIGIN 2>/dev/null || true; rm -rf "$D"' EXIT
PORT=${PORT:-18700}
python3 -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()' $((PORT + 1)) &
ORIGIN=$!
cat > "$D/gw.toml" <<TOML
[server]
listen = ["127.0.0.1:$PORT"]
admin_listen = "127.0.0.1:$((PORT + 9))"
grace_period = "10s"
upgrade_sock = "$D/upgrade.sock"
pid_file = "$D/edgegate.pid"
access_log = "off"
watch = false
[defaults.throttle]        # above what wrk can send here: the soak measures upgrades, not limits
rate = 10000000
burst = 10000000
[[apis]]
name = "soak"
[apis.stages.prod]
[[apis.routes]]
route = "GET /mock"
integration = { type = "mock", body = "ok" }
[[apis.routes]]
route = "GET /up"
integration = { type = "http", uri = "http://127.0.0.1:$((PORT + 1))/" }
TOML
"$BIN" -c "$D/gw.toml" 2>"$D/log" &
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$((PORT + 9))/readyz" >/dev/null && break; sleep 0.1; done
DUR=$((N * 1 + 4))
wrk -t2 -c"$C" -d"${DUR}s" "http://127.0.0.1:$PORT/prod/mock" > "$D/wrk.txt" 2>&1 &
WRK=$!
sleep 1
for i in $(seq "$N"); do
    old=$(cat "$D/edgegate.pid")
    t0=$(date +%s%N)
    "$BIN" -u -c "$D/gw.toml" 2>>"$D/log" &
    new=$!
    until [ "$(cat "$D/edgegate.pid")" = "$new" ]; do sleep 0.005; done
    t1=$(date +%s%N)
    echo "upgrade $i: pid $old -> $new, serving after $(( (t1 - t0) / 1000000 )) ms"
    while kill -0 "$old" 2>/dev/null; do sleep 0.05; done
done
wait $WRK
cat "$D/wrk.txt"
grep -c "upgrade aborted" "$D/log" | sed 's/^/aborted upgrades: /' || true
