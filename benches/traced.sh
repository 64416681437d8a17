#!/bin/sh
# edgegate with a [tracing] section added to the config it is started with, to measure what
# tracing costs: give it to a harness in place of the binary.
#
#   python3 benches/otlp_sink.py &                      # an OTLP/HTTP receiver on 127.0.0.1:4318
#   TRACE_RATIO=0.01 ./dev bench --against benches/traced.sh       # same-run A/B against tracing off
#   TRACE_RATIO=1.0 python3 SCENARIOS benches/traced.sh --only plain
#
# TRACE_RATIO (default 0.01) is sample_ratio; OTLP_ENDPOINT (default http://127.0.0.1:4318)
# the collector; EDGEGATE_BIN (default target/release/edgegate next to this script) the binary.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${EDGEGATE_BIN:-$here/target/release/edgegate}
config=""
prev=""
for a in "$@"; do
    if [ "$prev" = "-c" ]; then config=$a; fi
    prev=$a
done
[ -n "$config" ] || { echo "traced.sh: no -c CONFIG" >&2; exit 2; }
traced="$config.traced.toml"
{
    cat "$config"
    printf '\n[tracing]\notlp_endpoint = "%s"\nsample_ratio = %s\n' \
        "${OTLP_ENDPOINT:-http://127.0.0.1:4318}" "${TRACE_RATIO:-0.01}"
} > "$traced"
# the same arguments, with the traced config in place of the given one
n=$#
i=0
prev=""
for a in "$@"; do
    i=$((i + 1))
    if [ "$prev" = "-c" ]; then set -- "$@" "$traced"; else set -- "$@" "$a"; fi
    prev=$a
done
shift "$n"
exec "$bin" "$@"
