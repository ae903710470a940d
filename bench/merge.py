"""Merges hyperfine --export-json files of the same variants (one per round) into one, with the
statistics recomputed over all runs: bench/merge.py ROUND.json... > ALL.json"""
import json
import statistics
import sys

merged = {}
for path in sys.argv[1:]:
    for result in json.load(open(path))["results"]:
        merged.setdefault(result["command"], []).extend(result["times"])
if not merged:
    sys.exit("merge.py: no hyperfine results given")
results = [
    {
        "command": command,
        "times": times,
        "median": statistics.median(times),
        "mean": statistics.mean(times),
        "stddev": statistics.stdev(times) if len(times) > 1 else 0.0,
        "min": min(times),
        "max": max(times),
    }
    for command, times in merged.items()
]
json.dump({"results": results}, sys.stdout, indent=1)
