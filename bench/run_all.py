"""`make bench`: run every benchmark in bench/, print each table, and write them all to bench/results.md.

Each benchmark is a script that prints its table and ends with `ratio A/B name X.XX` lines. This runner adds
what a reader needs to trust the figures: the date, the machine's CPU model and core count, the kernel, and
the versions of the peer tools, and it keeps going when one benchmark fails (its error goes in the file).
By default each benchmark runs with fewer rounds (QUICK_ARGS, QUICK_ENV) so that the whole set takes under
15 minutes on 2 cores; `--full` runs each with its own defaults. The command of each is written with its
table.
"""

from __future__ import annotations

import datetime
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEER_VERSIONS = {
    "crun": ["crun", "--version"],
    "runc": ["runc", "--version"],
    "podman": ["podman", "--version"],
    "skopeo": ["skopeo", "--version"],
    "mpirun": ["mpirun", "--version"],
    "hpcc": ["dpkg-query", "-W", "-f=${Version}", "hpcc"],
}
BENCH_TIMEOUT = 15 * 60
# The quick set `make bench` runs: fewer alternating rounds, the same measurements.
QUICK_ARGS = {
    "felter.py": ["--quick"],
    "images.py": ["--rounds", "3"],
    "mpi.py": ["--runs", "3"],
    "mpi_native.py": ["--runs", "3"],
    "start.py": ["--rounds", "20"],
}
QUICK_ENV = {"registry.py": {"ROUNDS": "3"}}


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (what `lscpu` shows as Model name)."""
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def tool_version(argv: list[str]) -> str | None:
    """The first line a tool prints about its version, or None when it is not installed."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else None


def machine_header() -> str:
    """Markdown lines saying when and where the figures were measured."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"- date: {now}",
        f"- CPU: {cpu_model()} ({os.cpu_count()} cores)",
        f"- kernel: {platform.release()}",
        f"- Python: {platform.python_version()}",
    ]
    for name, argv in PEER_VERSIONS.items():
        version = tool_version(argv)
        lines.append(f"- {name}: {version or 'not installed'}")
    return "\n".join(lines)


def benchmark_command(script: Path, quick: bool) -> tuple[list[str], dict[str, str]]:
    """The arguments and extra environment one benchmark runs with."""
    if not quick:
        return [], {}
    return QUICK_ARGS.get(script.name, []), QUICK_ENV.get(script.name, {})


def run_benchmark(script: Path, args: list[str], env: dict[str, str]) -> tuple[str, float, int]:
    """Run one benchmark script with this interpreter; return its output, seconds taken and exit code."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=BENCH_TIMEOUT,
        check=False,
        close_fds=True,
    )
    output = proc.stdout
    if proc.returncode != 0:
        output += f"\n(exit {proc.returncode})\n{proc.stderr[-2000:]}"
    return output, time.monotonic() - started, proc.returncode


def is_benchmark(script: Path) -> bool:
    """A script that runs as a program; a module the scripts share (bench/runtimes.py) is not one."""
    return not script.name.startswith("_") and 'if __name__ == "__main__":' in script.read_text(encoding="utf-8")


def main() -> int:
    """Run every bench/*.py but this one; write bench/results.md; exit non-zero if any failed."""
    quick = "--full" not in sys.argv[1:]
    scripts = sorted(p for p in HERE.glob("*.py") if p.name != Path(__file__).name and is_benchmark(p))
    sections = [f"# rade benchmark results\n\n{machine_header()}\n"]
    failed, started = 0, time.monotonic()
    for script in scripts:
        args, env = benchmark_command(script, quick)
        command = " ".join([*(f"{k}={v}" for k, v in env.items()), "python", f"bench/{script.name}", *args])
        print(f"== {script.name}: {command}", flush=True)
        output, seconds, code = run_benchmark(script, args, env)
        print(output, flush=True)
        failed += code != 0
        sections.append(f"## {script.name} ({seconds:.0f} s)\n\nCommand: `{command}`\n\n"
                        f"```\n{output.strip()}\n```\n")
    total = time.monotonic() - started
    sections[0] += f"- all benchmarks: {total:.0f} s ({'quick' if quick else 'full'} set)\n"
    results = HERE / "results.md"
    tmp = results.with_suffix(".md.tmp")
    tmp.write_text("\n".join(sections), encoding="utf-8")
    tmp.replace(results)
    print(f"wrote {results} ({total:.0f} s in all)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
