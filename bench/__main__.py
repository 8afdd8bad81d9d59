"""``python -m bench``: run every benchmark (or some) and print one table with baselines and goals.

    python -m bench                          # all benchmarks, default sizes (a few minutes on 2 cores)
    python -m bench --only relay,lamp        # some of them
    python -m bench --terminals 1000,5000,10000 --only relay
    python -m bench --quick                  # smaller samples: a smoke run

Before running it calls ``scripts/setup-bench`` (Chromium, Tesseract with Japanese data, the ``bench`` extra)
unless ``--no-setup``. Results go to stdout and, as Markdown plus raw JSON, to ``var/bench/`` (``--out``).
Benchmarks: relay, relay-core, lamp, media (answer→first frame, glass-to-glass, kiosk CPU/RSS; aiortc and the
Chromium baseline; the default case again under 3 % UDP loss in a network namespace when root), preview (a video
view's conversion + texture upload at display size vs full size), legibility, network (calls across the namespace
test bed: NAT, TURN/UDP and TLS, a 10 s outage, 3 % loss and a 1 Mbit/s link; needs root).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import ROOT, Row, git_revision, machine_description, markdown_table, render_rows

BENCHMARKS = ("relay", "relay-core", "lamp", "media", "preview", "legibility", "network")


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _runner(name: str, args: argparse.Namespace) -> Callable[[], tuple[list[Row], dict[str, Any]]]:
    if name == "relay":
        mod = importlib.import_module("bench.relay")
        return lambda: mod.run(args.terminals, quick=args.quick, log=_log)
    if name == "relay-core":
        mod = importlib.import_module("bench.relay")
        return lambda: mod.core_rows(args.terminals, log=_log)
    if name == "lamp":
        mod = importlib.import_module("bench.lamp")
        return lambda: mod.run(quick=args.quick, log=_log)
    if name == "media":
        mod = importlib.import_module("bench.media")
        return lambda: mod.run(quick=args.quick, log=_log, chromium=not args.no_chromium, full=args.full)
    if name == "preview":
        mod = importlib.import_module("bench.preview")
        return lambda: mod.run(quick=args.quick, log=_log)
    if name == "legibility":
        mod = importlib.import_module("bench.legibility")
        return lambda: mod.run(quick=args.quick, log=_log, chromium=not args.no_chromium)
    if name == "network":
        mod = importlib.import_module("bench.network")
        return lambda: mod.run(quick=args.quick, log=_log)
    raise ValueError(name)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated benchmarks to run (default all: {', '.join(BENCHMARKS)})",
    )
    p.add_argument(
        "--terminals",
        default="1000",
        help="idle terminal counts for the relay benchmarks, e.g. 1000,5000,10000 (default 1000)",
    )
    p.add_argument("--quick", action="store_true", help="small samples, for a smoke run")
    p.add_argument(
        "--full", action="store_true", help="media: every alternative (codecs, resolutions), longer runs"
    )
    p.add_argument("--no-chromium", action="store_true", help="skip the Chromium baselines")
    p.add_argument("--no-setup", action="store_true", help="do not run scripts/setup-bench first")
    p.add_argument("--out", default=str(ROOT / "var" / "bench"), help="folder for results (Markdown + JSON)")
    args = p.parse_args(argv)
    args.terminals = [int(x) for x in args.terminals.split(",") if x.strip()]
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")

    if not args.no_setup and (ROOT / "scripts" / "setup-bench").exists():
        _log("scripts/setup-bench")
        subprocess.run([str(ROOT / "scripts" / "setup-bench")], check=True)

    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    machine = machine_description()
    rows: list[Row] = []
    details: dict[str, Any] = {}
    failed: dict[str, str] = {}
    timings: dict[str, float] = {}
    for name in names:
        _log(f"benchmark {name}")
        t0 = time.monotonic()
        try:
            r, d = _runner(name, args)()
            rows += r
            details[name] = d
        except Exception as err:  # noqa: BLE001 - one broken benchmark must not hide the others' results
            failed[name] = f"{type(err).__name__}: {err}"
            _log(f"benchmark {name} FAILED: {failed[name]}\n{traceback.format_exc()}")
        timings[name] = time.monotonic() - t0
        _log(f"benchmark {name} took {timings[name]:.0f} s")

    head = [
        f"- command: `{command.strip()}`",
        f"- started: {started}, revision {git_revision()}",
        "- machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
        "- time per benchmark: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()),
    ]
    text = "\n".join(head) + "\n\n" + render_rows(rows) + "\n"
    if failed:
        text += "\n" + markdown_table(["benchmark", "failed"], failed.items()) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"results-{stamp}.md").write_text(text)
    (out / f"results-{stamp}.json").write_text(
        json.dumps(
            {
                "command": command,
                "started": started,
                "machine": machine,
                "timings": timings,
                "failed": failed,
                "details": details,
            },
            indent=1,
            default=str,
        )
    )
    _log(f"results in {out / f'results-{stamp}.md'} (and .json)")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    sys.exit(main())
