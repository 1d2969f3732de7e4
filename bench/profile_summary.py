"""Summarise a py-spy profile in collapsed-stack format (`py-spy record --format raw`).

Prints where the server's samples go: the functions with the largest inclusive share
(time spent in them and below) and the largest self share, optionally restricted to
stacks that pass through a given function (e.g. the relay path).

    .venv/bin/python bench/profile_summary.py bench/results/profile-project-steady.txt
    .venv/bin/python bench/profile_summary.py FILE --under receive --top 25
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def short(frame: str) -> str:
    """`receive (signaling/consumers.py:180)` → `receive (signaling/consumers.py)`."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path})"


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            # py-spy puts the thread first ("process 1:\"python\";thread (0x…)") — keep it.
            stacks.append(([short(f) for f in stack.split(";")], int(count)))
    return stacks


def summarise(stacks, under: str | None, top: int) -> str:
    if under:
        stacks = [(s, n) for s, n in stacks if any(under in f for f in s)]
    total = sum(n for _, n in stacks) or 1
    inclusive, own = Counter(), Counter()
    for frames, count in stacks:
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    lines = [f"{total} samples" + (f" through '{under}'" if under else "")]
    for title, counter in (("inclusive", inclusive), ("self", own)):
        lines.append(f"\n  top {top} by {title} share")
        for frame, count in counter.most_common(top):
            lines.append(f"  {100 * count / total:5.1f}%  {frame}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--under", help="only stacks through a frame containing this text")
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    print(summarise(load(args.profile), args.under, args.top))


if __name__ == "__main__":
    main()
