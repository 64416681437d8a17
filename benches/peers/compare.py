#!/usr/bin/env python3
"""edgegate next to nginx on the same origin: CPU per request, throughput and p99.

    ./dev bench [--quick] [--rounds N] [--duration SECONDS] [--connections N] [--against BINARY]

--against BINARY runs a second edgegate build (another commit, another setting) in the same
rounds, on the same origin and configuration: an A/B comparison the machine's noise affects
alike.

Everything runs on loopback:
  origin    nginx, one worker, a static JSON answer (the upstream of both)
  nginx     a plain reverse proxy, one worker per core, keep-alive upstream pool
  edgegate  target/release/edgegate on one greedy http route, the default account
            throttle lifted (a 429 is not a measurement), access log off

Each round runs wrk (one thread, N connections) against nginx, then edgegate, and reads
the CPU time each target's processes spent from /proc. The summary gives the medians over
the rounds and edgegate's ratio to nginx. A run with socket errors or non-2xx answers is
reported as not measured. The machine should be quiet: nothing else running.
"""

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
ORIGIN, NGINX, GATEWAY, ADMIN = 28080, 28081, 28090, 28091
GATEWAY_B, ADMIN_B = 28092, 28093
PATH = "/prod/bench"
BODY = '{"ok":true,"origin":"bench","note":"static JSON body served by the benchmark origin"}'
TICK = os.sysconf("SC_CLK_TCK")


def arg(name, default):
    args = sys.argv[1:]
    return type(default)(args[args.index(name) + 1]) if name in args else default


def gateway_config(d, name, port, admin):
    path = os.path.join(d, f"{name}.toml")
    with open(path, "w") as f:
        f.write(f"""[server]
listen = ["127.0.0.1:{port}"]
admin_listen = "127.0.0.1:{admin}"
access_log = "off"
watch = false
grace_period = "0s"
upgrade_sock = "{d}/{name}.sock"
pid_file = "{d}/{name}.pid"

[defaults.throttle]
rate = 100000000
burst = 100000000

[[apis]]
name = "bench"
[apis.stages.prod]
[apis.integrations.origin]
type = "http"
uri = "http://127.0.0.1:{ORIGIN}"
[[apis.routes]]
route = "ANY /{{proxy+}}"
integration = "origin"
""")
    return path


def nginx_conf(d, name, workers, server):
    path = os.path.join(d, f"{name}.conf")
    with open(path, "w") as f:
        f.write(f"""worker_processes {workers};
daemon off;
pid {d}/{name}.pid;
error_log {d}/{name}.err;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  {server}
}}
""")
    return path


def start(argv, d, name, env=None):
    log = open(os.path.join(d, f"{name}.log"), "w")
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def wait_ready(url, proc, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            return f"exited with {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return None
        except Exception:
            time.sleep(0.1)
    return "not ready"


def cpu_ticks(pid):
    """utime + stime of `pid` and its children (nginx workers), in ticks."""
    total = 0
    pids = [pid]
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        pids += [int(p) for p in out.split()]
    except FileNotFoundError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def wrk(url, duration, connections):
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url],
                         capture_output=True, text=True, timeout=duration + 30).stdout
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors += sum(int(x) for x in m.groups()) if m else 0
    return reqs, rps, p99_ms, errors


def measure(proc, url, duration, connections):
    before = cpu_ticks(proc.pid)
    reqs, rps, p99, errors = wrk(url, duration, connections)
    cpu = (cpu_ticks(proc.pid) - before) / TICK
    return {"cpu_us": cpu * 1e6 / max(reqs, 1), "rps": rps, "p99": p99, "errors": errors}


def main():
    if "-h" in sys.argv or "--help" in sys.argv:
        sys.exit(__doc__)
    quick = "--quick" in sys.argv
    rounds = arg("--rounds", 1 if quick else 3)
    duration = arg("--duration", 4 if quick else 10)
    connections = arg("--connections", 64)
    binary = os.path.abspath(arg("--binary", os.path.join(ROOT, "target/release/edgegate")))
    against = arg("--against", "")
    against = os.path.abspath(against) if against else ""
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} is missing (./dev bench installs it)")
    cores = os.cpu_count() or 1
    d = tempfile.mkdtemp(prefix="edgegate-bench-")
    procs = []
    try:
        origin = start(["nginx", "-c", nginx_conf(d, "origin", 1, f"""server {{ listen 127.0.0.1:{ORIGIN};
    keepalive_requests 1000000;
    location / {{ default_type application/json; return 200 '{BODY}'; }} }}""")], d, "origin")
        procs.append(origin)
        nginx = start(["nginx", "-c", nginx_conf(d, "nginx", cores, f"""upstream origin {{ server 127.0.0.1:{ORIGIN}; keepalive 64; }}
  server {{ listen 127.0.0.1:{NGINX}; keepalive_requests 1000000;
    location / {{ proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection ""; }} }}""")], d, "nginx")
        procs.append(nginx)
        gateway = start([binary, "-c", gateway_config(d, "edgegate", GATEWAY, ADMIN)], d, "edgegate")
        procs.append(gateway)
        targets = [("nginx", nginx, f"http://127.0.0.1:{NGINX}{PATH}"),
                   ("edgegate", gateway, f"http://127.0.0.1:{GATEWAY}{PATH}")]
        if against:
            b = start([against, "-c", gateway_config(d, "edgegate-b", GATEWAY_B, ADMIN_B)], d, "edgegate-b")
            procs.append(b)
            targets.append(("against", b, f"http://127.0.0.1:{GATEWAY_B}{PATH}"))
        for name, proc, url in [("origin", origin, f"http://127.0.0.1:{ORIGIN}{PATH}")] + targets:
            why = wait_ready(url, proc)
            if why:
                sys.exit(f"bench: {name} {why} (logs in {d})")
        print(f"bench: wrk -t1 -c{connections}, {rounds} round(s) of {duration}s, {cores} core(s)", flush=True)
        results = {name: [] for name, _, _ in targets}
        for name, proc, url in targets:
            wrk(url, 2, connections)  # warm-up: connections and pools
        for r in range(rounds):
            for name, proc, url in targets:
                m = measure(proc, url, duration, connections)
                results[name].append(m)
                print(f"  round {r + 1} {name:9} {m['rps']:9.0f} req/s  {m['cpu_us']:6.1f} CPU-µs/req"
                      f"  p99 {m['p99']:6.2f} ms  errors {m['errors']}", flush=True)
        print("\n== medians ==")
        print(f"{'target':10} {'req/s':>9} {'CPU-µs/req':>11} {'p99 ms':>8}")
        med = {}
        for name, rows in results.items():
            if any(x["errors"] for x in rows):
                print(f"{name:10} not measured: errors in a round")
                continue
            med[name] = {k: statistics.median(x[k] for x in rows) for k in ("rps", "cpu_us", "p99")}
            print(f"{name:10} {med[name]['rps']:9.0f} {med[name]['cpu_us']:11.1f} {med[name]['p99']:8.2f}")
        if "against" in med and "edgegate" in med:
            print(f"edgegate / against: CPU-µs/req {med['edgegate']['cpu_us'] / med['against']['cpu_us']:.2f}")
        if "nginx" in med and "edgegate" in med:
            print(f"\nedgegate / nginx: CPU-µs/req {med['edgegate']['cpu_us'] / med['nginx']['cpu_us']:.2f}, "
                  f"p99 {med['edgegate']['p99'] / med['nginx']['p99']:.2f}, "
                  f"req/s {med['edgegate']['rps'] / med['nginx']['rps']:.2f}")
        else:
            sys.exit(1)
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
