#!/usr/bin/env python3
"""Before/after benchmarks of two clicktrail builds, alternated in one sitting.

    bench/ab.py --before /path/to/old/target/release --after target/release [--rounds 3]

Each round runs every benchmark once per build, the builds taking turns, so
the machine's drift (other jobs, thermal, the page cache) falls on both
columns alike. Per benchmark it prints each build's runs and the median,
and the after/before ratio of the medians.

Benchmarks (each on a fresh database, the server a child process):
  collect-sqlite, collect-postgres   wrk + bench/wrk/collect.lua against
                                     POST /collect (an outside client, so the
                                     generator is not the limit)
  postback-sqlite                    wrk + bench/wrk/postback.lua against
                                     GET /postback/{token} on recorded clicks
  incomeaccess-sqlite                examples/bench_incomeaccess 100000: the
                                     100k-row Income Access poll, end to end
  delivery-sqlite, delivery-postgres examples/bench_delivery offered 60,000
                                     conversions in 3 s (saturated): conversions
                                     recorded and delivered to the Meta fake per
                                     second

A build directory must hold `clicktrail` and the examples
`bench_incomeaccess` and `bench_delivery` (cargo build --release -p clicktrail
--bins --examples). Needs wrk (Debian package `wrk`) and PostgreSQL at
127.0.0.1:5432 (user postgres, trust).
"""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

MASTER_KEY = "bench-master-key-0123456789"
HERE = os.path.dirname(os.path.abspath(__file__))
PG_ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qAtc"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def api(base, path, body=None, method=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method or ("POST" if data else "GET"))
    req.add_header("authorization", f"Bearer {MASTER_KEY}")
    if data:
        req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


class Server:
    """`clicktrail serve` on a fresh SQLite file or PostgreSQL database."""

    def __init__(self, build, backend):
        self.dir = tempfile.mkdtemp(prefix="ct-ab-")
        self.pg = None
        if backend == "sqlite":
            url = f"sqlite://{self.dir}/bench.db"
        else:
            self.pg = "ct_ab_" + uuid.uuid4().hex
            subprocess.run(PG_ADMIN + [f"CREATE DATABASE {self.pg}"], check=True)
            url = f"postgres://postgres@127.0.0.1:5432/{self.pg}"
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = dict(os.environ,
                   CLICKTRAIL_LISTEN=f"127.0.0.1:{port}",
                   CLICKTRAIL_DATABASE_URL=url,
                   CLICKTRAIL_MASTER_KEY=MASTER_KEY,
                   CLICKTRAIL_DATA_DIR=self.dir,
                   CLICKTRAIL_LOG="warn",
                   CLICKTRAIL_POLLING__ENABLED="false")
        self.proc = subprocess.Popen([os.path.join(build, "clicktrail"), "serve"], env=env,
                                     stdout=subprocess.DEVNULL)
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=2)
                break
            except Exception:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("server did not become healthy")
                time.sleep(0.1)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.pg:
            subprocess.run(PG_ADMIN + [f"DROP DATABASE IF EXISTS {self.pg} WITH (FORCE)"])
        subprocess.run(["rm", "-rf", self.dir])


def wrk(script, base, env, seconds, connections=64):
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", os.path.join(HERE, "wrk", script), base],
                         env=dict(os.environ, **env), capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = int(re.search(r"non-2xx: (\d+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    if errors:
        raise RuntimeError(f"{errors} non-2xx answers:\n{out}")
    return {"value": rps, "p99_ms": float(p99.group(1)) * scale}


def property_on(s):
    return api(s.base, "/api/v1/properties",
               {"name": "Bench", "domains": ["bench.example"]})["id"]


def collect(build, backend, seconds):
    s = Server(build, backend)
    try:
        pid = property_on(s)
        return wrk("collect.lua", s.base, {"CT_PROPERTY": pid}, seconds)
    finally:
        s.stop()


def postback(build, backend, seconds, clicks=2000):
    s = Server(build, backend)
    try:
        pid = property_on(s)
        integ = api(s.base, f"/api/v1/properties/{pid}/integrations",
                    {"catalog": "custom", "settings": {"tracking_group": "mynet", "subid_param": "sub1"}})
        token = integ["postback_url"].rsplit("/", 1)[1]
        # The clicks the postbacks name: a landing and a click each, 50 a request.
        now = int(time.time() * 1000)
        for start in range(0, clicks, 25):
            events = []
            for i in range(start, min(start + 25, clicks)):
                pv = f"seed-pv-{i:010d}"
                events.append({"event_id": pv, "name": "PageView", "ts": now, "visitor_id": f"v_seed_{i:06d}",
                               "url": f"https://bench.example/?utm_source=google&utm_medium=cpc&utm_campaign=c{i % 20}"})
                events.append({"event_id": f"seed-ck-{i:010d}", "name": "OutboundClick", "ts": now,
                               "visitor_id": f"v_seed_{i:06d}", "url": "https://bench.example/",
                               "pageview_id": pv, "click_id": f"wrkseed{i:010d}",
                               "link": {"url": "https://offer.example/", "tracking_group": "mynet"}})
            req = urllib.request.Request(s.base + "/collect", data=json.dumps(
                {"property_id": pid, "events": events}).encode(), method="POST")
            req.add_header("content-type", "text/plain;charset=UTF-8")
            req.add_header("origin", "https://bench.example")
            req.add_header("user-agent", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                                         "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36")
            urllib.request.urlopen(req, timeout=60).read()
        time.sleep(1)  # the last group commit
        return wrk("postback.lua", s.base, {"CT_TOKEN": token, "CT_CLICKS": str(clicks)}, seconds)
    finally:
        s.stop()


def incomeaccess(build, backend, rows=100000):
    out = subprocess.run([os.path.join(build, "examples", "bench_incomeaccess"), str(rows), backend],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"3\. poll:.*? in ([\d.]+) s", out)
    if not m:
        raise RuntimeError(out)
    return {"value": float(m.group(1))}


def delivery(build, backend, rate=20000, seconds=3):
    out = subprocess.run([os.path.join(build, "examples", "bench_delivery"), backend, str(rate), str(seconds)],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"p99 ([\d.]+) ms", out)
    d = re.search(r"= ([\d.]+) conversions/s", out)
    if not m or not d:
        raise RuntimeError(out)
    return {"value": float(d.group(1)), "p99_ms": float(m.group(1))}


BENCHES = {
    "collect-sqlite": (lambda b, a: collect(b, "sqlite", a.seconds), "req/s", True),
    "collect-postgres": (lambda b, a: collect(b, "postgres", a.seconds), "req/s", True),
    "postback-sqlite": (lambda b, a: postback(b, "sqlite", a.seconds), "req/s", True),
    "incomeaccess-sqlite": (lambda b, a: incomeaccess(b, "sqlite"), "s", False),
    "delivery-sqlite": (lambda b, a: delivery(b, "sqlite"), "conv/s", True),
    "delivery-postgres": (lambda b, a: delivery(b, "postgres"), "conv/s", True),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--only", default=",".join(BENCHES))
    a = ap.parse_args()
    names = [n for n in a.only.split(",") if n]
    results = {n: {"before": [], "after": []} for n in names}
    for r in range(a.rounds):
        for n in names:
            order = ["before", "after"] if r % 2 == 0 else ["after", "before"]
            for side in order:
                build = a.before if side == "before" else a.after
                res = BENCHES[n][0](build, a)
                results[n][side].append(res)
                print(f"round {r + 1} {n:<22} {side:<6} {json.dumps(res)}", flush=True)
    print()
    print(f"| benchmark | unit | before (median of {a.rounds}) | after | after / before |")
    print("|---|---|---|---|---|")
    for n in names:
        unit, higher_better = BENCHES[n][1], BENCHES[n][2]
        b = statistics.median(x["value"] for x in results[n]["before"])
        f = statistics.median(x["value"] for x in results[n]["after"])
        runs = lambda side: ", ".join(f"{x['value']:.0f}" if x["value"] > 100 else f"{x['value']:.2f}"
                                      for x in results[n][side])
        print(f"| {n} | {unit}{'' if higher_better else ' (lower is better)'} | {b:.2f} ({runs('before')}) "
              f"| {f:.2f} ({runs('after')}) | {f / b:.3f} |")


if __name__ == "__main__":
    sys.exit(main())
