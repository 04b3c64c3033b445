"""Summarise a py-spy profile: where the time goes, per function and per source line.

    py-spy record -f raw -r 200 -o prof.txt -- python bench/spin_equivalent.py default
    python bench/profile_summary.py prof.txt [--top 25]

py-spy's raw format is one collapsed stack per line (``frame;frame;... COUNT``). Printed:
each function's inclusive share (samples with it anywhere on the stack) and each source
line's self share (samples with it innermost).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

FRAME = re.compile(r"(.*) \((.*?):(\d+)\)")


def function_of(frame: str) -> str:
    m = FRAME.match(frame)
    return f"{m.group(1)} ({m.group(2).rsplit('/', 1)[-1]})" if m else frame


def line_of(frame: str) -> str:
    m = FRAME.match(frame)
    return f"{m.group(1)} ({m.group(2).rsplit('/', 1)[-1]}:{m.group(3)})" if m else frame


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("profile", help="py-spy record -f raw output")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    try:
        lines = open(args.profile).read().splitlines()
    except OSError as exc:
        print(f"profile_summary: cannot read {args.profile}: {exc.strerror}", file=sys.stderr)
        return 2
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[line_of(frames[-1])] += n
        for name in {function_of(f) for f in frames}:
            inclusive[name] += n
    if not total:
        print(f"profile_summary: no samples in {args.profile}", file=sys.stderr)
        return 2
    print(f"{total} samples\n-- inclusive, per function")
    for name, n in inclusive.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {name}")
    print("-- self, per line")
    for name, n in own.most_common(args.top):
        print(f"{100 * n / total:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
