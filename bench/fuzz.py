"""Long profile of the protocol fuzz tests (issue 13 point 1): ``tests/test_fuzz.py`` with many more examples.

    python -m bench.fuzz                 # 3,000 core examples, 600 against the running relay
    python -m bench.fuzz --examples 500  # shorter

``scripts/test`` runs the same properties with a bounded profile (100 + 40 examples, a few seconds); this runs
them long enough to find rarer inputs. Prints one line per property with its examples, time and verdict.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

from bench.common import ROOT


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.fuzz", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--examples", type=int, default=3000, help="core examples; the relay gets a fifth of that")
    args = p.parse_args(argv)
    env = {**os.environ, "FUZZ_EXAMPLES": str(args.examples), "KIVY_NO_ARGS": "1"}
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--timeout",
            "3600",
            "--durations=0",
            "tests/test_fuzz.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.monotonic() - t0
    durations = dict(
        (name, float(sec))
        for sec, name in re.findall(r"([\d.]+)s call\s+tests/test_fuzz.py::(\w+)", proc.stdout)
    )
    print("| property | examples | seconds | result |\n| --- | --- | --- | --- |")
    for name, examples in (
        ("test_core_survives_any_sequence_of_frames", args.examples),
        ("test_running_relay_answers_every_bad_frame_and_harms_nobody", max(args.examples // 5, 40)),
    ):
        failed = f"FAILED tests/test_fuzz.py::{name}" in proc.stdout
        print(
            f"| {name} | {examples} | {durations.get(name, float('nan')):.1f} | {'FAILED' if failed else 'ok'} |"
        )
    print(f"\ntotal {seconds:.0f} s; pytest exit code {proc.returncode}")
    if proc.returncode:
        print(proc.stdout[-4000:])
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
