#!/usr/bin/env python3
"""Where a process's heap was at its peak, by allocation site, per unit.

    heap_peaks.py FILE.zst UNITS [TOP]

FILE.zst is a heaptrack recording; UNITS what to divide by (open streams,
held requests). Each allocation at the peak is charged to the innermost
frame of hyper, tokio, http, bytes, h2 or sluice on its stack (the code that
asked, not the allocator's own frames), and the sites are printed largest
first, in bytes per unit. Needs heaptrack_print.
"""
import collections
import re
import subprocess
import sys
import tempfile

OWNERS = re.compile(r"(sluice::|hyper::|hyper_util::|tokio::|http::|bytes::|h2::)")
ALLOCATOR = re.compile(r"(alloc::|raw_vec|RawVec|BytesMut::reserve_inner)")


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    recording, units = sys.argv[1], float(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    with tempfile.NamedTemporaryFile(suffix=".txt") as stacks:
        subprocess.run(
            ["heaptrack_print", "-f", recording, "--flamegraph-cost-type", "peak", "-F", stacks.name],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        total, sites = 0, collections.Counter()
        for line in open(stacks.name):
            stack, _, cost = line.rstrip().rpartition(" ")
            total += int(cost)
            site = "(no frame of sluice or its HTTP stack)"
            for frame in reversed(stack.split(";")):
                if OWNERS.search(frame) and not ALLOCATOR.search(frame):
                    site = re.sub(r"::h[0-9a-f]{16}", "", frame)[:120]
                    break
            sites[site] += int(cost)
    print(f"heap at its peak: {total / 1024:.0f} KiB, {total / units / 1024:.1f} KiB per unit")
    for site, cost in sites.most_common(top):
        print(f"{cost / units:9.0f} B  {site}")


if __name__ == "__main__":
    main()
