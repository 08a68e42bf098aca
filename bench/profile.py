"""py-spy sampling of a running process and a summary of its hottest functions.

`record` runs `py-spy record --format raw` (collapsed stacks) for a fixed time; `summarize`
turns the stacks into self and inclusive shares per function, split into the gateway's own
code (``openrouter_anthropic``) and everything else (libraries, the interpreter's stdlib).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from .procs import track

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
OWN_PACKAGE = "openrouter_anthropic"


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")  # the venv's, when not activated
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start(pid: int, seconds: float, out: Path, native: bool = False,
          rate: int = 200) -> subprocess.Popen[bytes]:
    """Sample `pid` (and its worker processes). Native mode pauses the process at each
    sample (slower) but shows time in C code and system calls (write, getpid, ...)."""
    exe = py_spy()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    argv = [exe, "record", "-p", str(pid), "-d", str(max(1, round(seconds))),
            "-r", str(rate // 2 if native else rate), "--format", "raw", "--subprocesses",
            "-o", str(out), "--native" if native else "--nonblocking"]
    return track(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  start_new_session=True))


def _short(file: str) -> str:
    for marker in ("site-packages/", "lib/python3"):
        if marker in file:
            return file.split(marker, 1)[1]
    return file.rsplit("/src/", 1)[-1]


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for raw in stack.split(";"):
        found = _FRAME.match(raw.strip())
        if found is None:
            continue  # the leading "process N:..." / "thread ..." entries
        out.append((found["func"], _short(found["file"])))
    return out


def summarize(path: Path, top: int = 15) -> dict[str, Any]:
    own_self: Counter[str] = Counter()
    lib_self: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = _frames(stack)
        if not frames:
            continue
        total += count
        func, file = frames[-1]
        (own_self if OWN_PACKAGE in file else lib_self)[f"{func} ({file})"] += count
        for name in {f"{fn} ({fl})" for fn, fl in frames
                     if OWN_PACKAGE in fl and not fl.endswith("cli.py")}:
            inclusive[name] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {"samples": total, "own_self": share(own_self), "library_self": share(lib_self),
            "own_inclusive": share(inclusive),
            "own_self_total_pct": round(100 * sum(own_self.values()) / max(total, 1), 1)}


def format_summary(title: str, summary: dict[str, Any]) -> str:
    lines = [f"{title}: {summary['samples']} samples; gateway code (self) "
             f"{summary['own_self_total_pct']}% of samples"]
    for key, label in (("own_inclusive", "gateway functions, inclusive"),
                       ("own_self", "gateway functions, self"),
                       ("library_self", "library/stdlib functions, self")):
        lines.append(f"  {label}:")
        lines += [f"    {pct:5.1f}%  {name}" for name, pct in summary[key]]
    return "\n".join(lines)
