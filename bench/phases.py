"""Reads `launcher -v check` output (many runs) on stdin; prints the median of each timed phase."""
import re
import statistics
import sys

phases = {}
for line in sys.stdin:
    for name, ms in re.findall(r"([A-Za-z_ ]+?) (?:in|after|took) ([0-9.]+) ms", line):
        phases.setdefault(name.strip(), []).append(float(ms))
if not phases:
    sys.exit("no timed phases in the input: is -v still printing them?")
for name, values in phases.items():
    print("%-22s %6.2f ms" % (name, statistics.median(values)))
