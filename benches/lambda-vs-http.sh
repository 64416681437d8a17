#!/usr/bin/env bash
# Gateway CPU per request: a Lambda route (SigV4-signed Invoke API calls, event built, answer
# mapped) against the same request on an http route, both to one local nginx that answers every
# path (the Invoke API's answer is a payload-2.0 result: bare JSON). Rounds alternate; the
# ratio of medians is the figure (the machine is shared: never quote one absolute time).
#   benches/lambda-vs-http.sh [ROUNDS] [SECONDS]      (needs nginx and wrk; loopback only)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"; secs="${2:-5}"
tmp="$(mktemp -d)"
cat > "$tmp/nginx.conf" <<NGX
worker_processes 1;
pid $tmp/nginx.pid;
error_log $tmp/error.log;
events { worker_connections 1024; }
http { access_log off;
  server { listen 127.0.0.1:18080; keepalive_requests 1000000;
    location / { default_type application/json; return 200 '{"ok":true,"padding":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}'; } } }
NGX
nginx -c "$tmp/nginx.conf"
[ -x target/release/edgegate ] || cargo build --release --locked
AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=bench target/release/edgegate -c benches/compare.toml >"$tmp/gw.log" 2>&1 &
gw=$!
trap 'kill $gw 2>/dev/null; kill "$(cat "$tmp/nginx.pid")" 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do curl -fs -o /dev/null http://127.0.0.1:18090/prod/bench && break; sleep 0.1; done
cpu() { awk '{print $14 + $15}' "/proc/$gw/stat"; }
hz=$(getconf CLK_TCK)
run() { # path -> CPU-µs per request
    local before after reqs
    before=$(cpu)
    reqs=$(timeout $((secs + 30)) wrk -t1 -c32 -d"${secs}s" "http://127.0.0.1:18090$1" | awk '/requests in/ {print $1}')
    after=$(cpu)
    echo "$(( (after - before) * 1000000 / hz / reqs ))"
}
run /prod/bench >/dev/null; run /prod/lambda/bench >/dev/null   # warm-up
http=(); lambda=()
for i in $(seq "$rounds"); do
    http+=("$(run /prod/bench)"); lambda+=("$(run /prod/lambda/bench)")
    echo "round $i: http ${http[-1]} µs, lambda ${lambda[-1]} µs" >&2
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
h=$(median "${http[@]}"); l=$(median "${lambda[@]}")
echo "CPU-µs/request (median of $rounds): http $h, lambda $l, lambda/http $(awk -v l="$l" -v h="$h" 'BEGIN {printf "%.2f", l/h}')"
