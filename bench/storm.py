"""A launch storm: N launchers started at once against one OpenBao and one PostgreSQL.

Each execs `sh -c 'date +%s%N'`, so its time-to-exec is the app's first timestamp minus the
moment it was spawned. Prints one JSON object: successes, failures (first error lines), p50/p99.
"""
import json
import subprocess
import sys
import time

n, launcher = int(sys.argv[1]), sys.argv[2]
cmd = [launcher, "--quiet", "--wait", "60s", "--credentials", "vault:secret/app/db",
       "--ca", "vault:secret/app/db#ca_pem", "--", "sh", "-c", "date +%s%N"]
procs = []
for _ in range(n):
    started = time.time_ns()
    procs.append((started, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
durations, failures = [], {}
for started, p in procs:
    out, err = p.communicate(timeout=120)
    if p.returncode == 0 and out.strip().isdigit():
        durations.append((int(out.strip()) - started) / 1e6)
    else:
        line = (err.strip().splitlines() or ["exit %d" % p.returncode])[-1][:160]
        failures[line] = failures.get(line, 0) + 1
durations.sort()
pick = lambda q: round(durations[min(len(durations) - 1, int(q * len(durations)))], 1) if durations else None
print(json.dumps({"launched": n, "succeeded": len(durations), "failures": failures,
                  "p50_ms": pick(0.50), "p99_ms": pick(0.99), "max_ms": pick(1.0)}))
