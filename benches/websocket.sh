#!/usr/bin/env bash
# WebSocket API figures (benchmarks, not tests; loopback only):
#   1. N idle connections (default 10,000): the gateway's RSS per connection
#   2. C connections (default 1,000) each sending R messages/s (default 10) for S seconds to an
#      http integration: gateway CPU per message
#   3. management POSTs to one connection (admin listener, one keep-alive client): posts/s
#   benches/websocket.sh [N] [C] [R] [S]     needs nginx and target/peers (python websockets)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-10000}"; c="${2:-1000}"; rate="${3:-10}"; secs="${4:-10}"
py=target/peers/bin/python3
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true   # 10,000 connections need more than 1,024 fds
tmp="$(mktemp -d)"
cat > "$tmp/nginx.conf" <<NGX
worker_processes 1;
worker_rlimit_nofile 16384;
pid $tmp/nginx.pid;
error_log $tmp/error.log;
events { worker_connections 8192; }
http { access_log off;
  server { listen 127.0.0.1:18080; keepalive_requests 1000000;
    location /event { return 200 ''; }
    location /msg { return 204; }
    location /whoami { return 200 \$http_x_edgegate_connection_id; } } }
NGX
nginx -c "$tmp/nginx.conf"
[ -x target/release/edgegate ] || cargo build --release --locked
target/release/edgegate -c benches/websocket.toml >"$tmp/gw.log" 2>&1 &
gw=$!
trap 'kill $gw 2>/dev/null; kill "$(cat "$tmp/nginx.pid")" 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do curl -fs -o /dev/null http://127.0.0.1:18091/readyz && break; sleep 0.1; done
url=ws://127.0.0.1:18090/prod/chat
rss() { awk '/^VmRSS/ {print $2}' "/proc/$gw/status"; }
cpu() { awk '{print $14 + $15}' "/proc/$gw/stat"; }
hz=$(getconf CLK_TCK)

# 1. idle connections
before=$(rss)
timeout 600 "$py" benches/ws_load.py idle "$url" "$n" 15 > "$tmp/idle.out" 2>"$tmp/idle.err" &
load=$!
for _ in $(seq 600); do grep -q '^open' "$tmp/idle.out" 2>/dev/null && break; sleep 0.5; done
sleep 2
after=$(rss)
open=$(curl -s http://127.0.0.1:18091/metrics | awk '/^edgegate_websocket_connections/ {s += $2} END {print s}')
echo "idle: $open connections, RSS $before KiB -> $after KiB: $(( (after - before) / (open > 0 ? open : 1) )) KiB per connection"
wait $load || tail -3 "$tmp/idle.err"

# 2. messages to an http integration
c0=$(cpu)
out=$(timeout $((secs + 300)) "$py" benches/ws_load.py messages "$url" "$c" "$rate" "$secs")
c1=$(cpu)
sent=$(echo "$out" | sed 's/.*"sent": \([0-9]*\).*/\1/')
echo "messages: $out; gateway CPU $(( (c1 - c0) * 1000000 / hz / (sent > 0 ? sent : 1) )) µs per message (connect and close included)"

# 3. management POSTs: node-local, then through a second node and Redis (both nodes on one
#    redis-server, [cluster] added to the same config)
echo "management, node-local: $(timeout 60 "$py" benches/ws_load.py manage 127.0.0.1:18091 127.0.0.1:18091 "$url" 5)"
redis-server --port 18379 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --pidfile "$tmp/redis.pid" --dir "$tmp" >/dev/null
kill $gw; wait $gw 2>/dev/null || true
for node in a b; do
    port=$([ $node = a ] && echo 18090 || echo 18092); admin=$((port + 1))
    sed -e "s/127.0.0.1:18090/127.0.0.1:$port/; s/127.0.0.1:18091/127.0.0.1:$admin/" \
        -e "s|/tmp/edgegate-wsbench|$tmp/$node|g" benches/websocket.toml > "$tmp/$node.toml"
    printf '\n[cluster]\nredis = "redis://127.0.0.1:18379/0"\n' >> "$tmp/$node.toml"
done
target/release/edgegate -c "$tmp/a.toml" >"$tmp/a.log" 2>&1 &
gw=$!
target/release/edgegate -c "$tmp/b.toml" >"$tmp/b.log" 2>&1 &
gw_b=$!
trap 'kill $gw $gw_b 2>/dev/null; kill "$(cat "$tmp/nginx.pid")" "$(cat "$tmp/redis.pid")" 2>/dev/null; rm -rf "$tmp"' EXIT
for p in 18091 18093; do for _ in $(seq 50); do curl -fs -o /dev/null http://127.0.0.1:$p/readyz && break; sleep 0.1; done; done
sleep 1
echo "management, cross-node (connection on A, POSTs to B's admin): $(timeout 60 "$py" benches/ws_load.py manage 127.0.0.1:18093 127.0.0.1:18091 "$url" 5)"
