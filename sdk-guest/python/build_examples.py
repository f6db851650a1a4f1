#!/usr/bin/env python3
"""Builds the Python examples into components with componentize-py.

Usage: ``python3 sdk-guest/python/build_examples.py OUT_DIR [--jobs N] [--stub-wasi]``

Writes ``OUT_DIR/{counter,shopping-cart,tck-value,tck-events,tck-crdt}.wasm`` (the names of
tests/tck/SPEC.md), each built from ``examples/<example>/app.py`` against the repository's
``wit/`` with the SDK in this directory. componentize-py must be version 0.25.1
(``python3 -m pip install componentize-py==0.25.1``); ``$COMPONENTIZE_PY`` names the program if
it is not on ``PATH``.

A build takes ~9 s of wall time and ~15 s of CPU (it is partly multi-threaded) and ~400 MB, so
running two at once on a 2-core machine saves little (measured: 37 s in sequence, 33 s two at a
time) and slows everything else down: by default builds run one at a time on up to 2 CPUs, and
on larger machines half as many at once as there are CPUs (at most 4).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

HERE = Path(__file__).resolve().parent
WIT = HERE.parent.parent / "wit"
WORLD = "folding-entity-world"
VERSION = "0.25.1"
INSTALL_HINT = f"python3 -m pip install componentize-py=={VERSION}"

#: (example directory, component name).
EXAMPLES = [
    ("counter", "counter"),
    ("shopping_cart", "shopping-cart"),
    ("tck_value", "tck-value"),
    ("tck_events", "tck-events"),
    ("tck_crdt", "tck-crdt"),
]


class Built(NamedTuple):
    name: str
    path: Path
    seconds: float
    error: str | None


def find_componentize_py() -> str:
    """The componentize-py program, checked to be the pinned version; exits with a hint if not."""
    program = os.environ.get("COMPONENTIZE_PY") or shutil.which("componentize-py")
    if not program:
        sys.exit(f"error: componentize-py is not installed\nhint: {INSTALL_HINT}")
    try:
        result = subprocess.run(
            [program, "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError:
        sys.exit(f"error: componentize-py is not installed (no {program})\nhint: {INSTALL_HINT}")
    except OSError as e:
        sys.exit(f"error: cannot run {program}: {e}\nhint: {INSTALL_HINT}")
    reported = result.stdout.strip().split()
    found = reported[-1] if reported else "(nothing)"
    if result.returncode != 0 or found != VERSION:
        sys.exit(
            f"error: {program} is version {found}, the examples need componentize-py {VERSION}"
            f"\nhint: {INSTALL_HINT}"
        )
    return program


def build(program: str, example: str, name: str, out_dir: Path, stub_wasi: bool) -> Built:
    """Builds one example; the component replaces ``out_dir/<name>.wasm`` only when complete."""
    target = out_dir / f"{name}.wasm"
    partial = out_dir / f".{name}.partial.wasm"
    command = [program, "-q", "-d", str(WIT), "-w", WORLD, "componentize", "app"]
    command += ["-p", str(HERE / "examples" / example), "-p", str(HERE), "-o", str(partial)]
    if stub_wasi:
        command.append("--stub-wasi")
    started = time.monotonic()
    # The tool's errors are Python tracebacks; its own Rust backtraces only bury them.
    env = {**os.environ, "RUST_BACKTRACE": "0", "RUST_LIB_BACKTRACE": "0"}
    result = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    seconds = time.monotonic() - started
    if result.returncode != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        output = (result.stdout + result.stderr).strip() or f"exit status {result.returncode}"
        return Built(name, target, seconds, output)
    os.replace(partial, target)
    return Built(name, target, seconds, None)


def default_jobs() -> int:
    cpus = os.cpu_count() or 1
    return 1 if cpus <= 2 else min(len(EXAMPLES), cpus // 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path, help="where the .wasm files go")
    parser.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=default_jobs(),
        help="builds to run at once (default: 1 on up to 2 CPUs, else half the CPUs, at most 4)",
    )
    parser.add_argument(
        "--stub-wasi",
        action="store_true",
        help="replace WASI imports with trapping stubs (print() then traps)",
    )
    args = parser.parse_args(argv)
    program = find_componentize_py()
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [
            pool.submit(build, program, example, name, out_dir, args.stub_wasi)
            for example, name in EXAMPLES
        ]
        results = []
        for future in futures:
            built = future.result()
            results.append(built)
            if built.error is None:
                size = built.path.stat().st_size / (1 << 20)
                print(f"built {built.path} ({size:.1f} MiB, {built.seconds:.1f} s)", flush=True)
            else:
                print(f"error: building {built.name} failed:\n{built.error}", file=sys.stderr)
    failed = [built.name for built in results if built.error is not None]
    if failed:
        names = ", ".join(failed)
        print(f"error: {len(failed)} of {len(results)} builds failed: {names}", file=sys.stderr)
        return 1
    print(f"built {len(results)} components in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
