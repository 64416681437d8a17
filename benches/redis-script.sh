#!/usr/bin/env bash
# The cost of the cluster-limit script on one Redis shard (docs/scale-out.md): a local
# redis-server, the script from src/throttle/cluster.rs loaded, then redis-benchmark running
# EVALSHA over 10,000 random keys (a plan bucket, a route bucket, a quota, the day's usage
# count: the worst case),
# unpipelined and pipelined, next to PING and SET for the round-trip floor. Loopback only.
#   benches/redis-script.sh [REQUESTS]
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-200000}"
port=18379
tmp="$(mktemp -d)"
redis-server --port $port --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
    --pidfile "$tmp/redis.pid" --dir "$tmp" >/dev/null
trap 'kill "$(cat "$tmp/redis.pid")" 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do redis-cli -p $port ping >/dev/null 2>&1 && break; sleep 0.1; done
script=$(awk '/^const SCRIPT: &str = r#"/ {on=1; next} on && /^"#;/ {exit} on {print}' src/throttle/cluster.rs)
sha=$(redis-cli -p $port script load "$script")
now=$(date +%s)
bench() { redis-benchmark -p $port -q -n "$n" -c 50 -r 10000 "$@" | tr '\r' '\n' | grep -v '^$' | tail -1; }
echo "PING:                      $(bench -P 1 ping)"
echo "SET:                       $(bench -P 1 set k:__rand_int__ v)"
echo "script, unpipelined:       $(bench -P 1 evalsha "$sha" 4 b:__rand_int__ r:__rand_int__ q:__rand_int__ u:__rand_int__ 10000 200000 20000 400000 1000000 $((now + 86400)) $((now + 91 * 86400)))"
echo "script, 16 in flight/conn: $(bench -P 16 evalsha "$sha" 4 b:__rand_int__ r:__rand_int__ q:__rand_int__ u:__rand_int__ 10000 200000 20000 400000 1000000 $((now + 86400)) $((now + 91 * 86400)))"
echo "redis-server CPU: $(ps -o cputime= -p "$(cat "$tmp/redis.pid")")"
