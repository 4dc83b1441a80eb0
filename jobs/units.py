"""Parsers for the units a job spec and the command line speak: sizes, durations, CPU counts, CPU lists
and array ranges.

One module so that `--memory 4G` on `rade run` and `memory: 4G` in a job YAML mean the same thing. Each
parser takes a string (or a number, as YAML gives it) and returns a plain value, or raises `UnitError`
whose message quotes the input and shows a correct example. Sizes are powers of 1024, as Slurm and Docker
read them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from jobs.errors import UnitError

_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([kmgtp]?)(i?b)?\s*$", re.IGNORECASE)


def parse_size(value: str | float) -> int:
    """Bytes in `512M`, `4G`, `1.5G`, `4GiB`, `1024` (plain bytes). K/M/G/T/P are powers of 1024."""
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a size (use e.g. 512M or 4G)")
    if isinstance(value, int | float):
        if value < 0 or (isinstance(value, float) and math.isnan(value)):
            raise UnitError(f"'{value}' is not a size: it must not be negative (use e.g. 512M or 4G)")
        return int(value)
    match = _SIZE_RE.match(str(value))
    if not match or (match.group(3) and match.group(3).lower() == "ib" and not match.group(2)):
        raise UnitError(f"'{value}' is not a size (use e.g. 512M or 4G)")
    number, unit = match.group(1), match.group(2).lower()
    return int(float(number) * _SIZE_UNITS[unit])


def format_size(size: int) -> str:
    """The shortest exact-ish form of a byte count for tables: 512M, 1.5G, 100B."""
    for unit in ("P", "T", "G", "M", "K"):
        factor = _SIZE_UNITS[unit.lower()]
        if size >= factor:
            scaled = size / factor
            text = f"{scaled:.1f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return f"{size}B"


def format_decimal_size(size: int) -> str:
    """Bytes as Docker's CLI words them: decimal units, three significant digits (4.26MB, 2.05kB)."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.3g}{unit}"
        value /= 1000
    return f"{size}B"


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Long forms too (`2 hours`, `30 min`): people write them, and they cannot be misread.
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|[smhd])",
                               re.IGNORECASE)
_SLURM_RE = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
_DURATION_HINT = "use e.g. 90s, 30m, 2h, 1d or Slurm's D-HH:MM:SS"


def parse_duration(value: str | float) -> int:
    """Seconds in `90s`, `30m`, `2h`, `1d`, `1h30m`, `2 hours`, or Slurm's `D-HH:MM:SS`, `D-HH`, `HH:MM:SS`, `MM:SS`.

    A bare number is minutes, as in Slurm's `--time`.
    """
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a duration ({_DURATION_HINT})")
    if isinstance(value, int | float):
        if value <= 0:
            raise UnitError(f"'{value}' is not a duration: it must be positive ({_DURATION_HINT})")
        return round(value * 60)
    text = str(value).strip()
    seconds = _parse_unit_duration(text)
    if seconds is None:
        seconds = _parse_slurm_duration(text)
    if seconds is None:
        raise UnitError(f"'{value}' is not a duration ({_DURATION_HINT})")
    if seconds <= 0:
        raise UnitError(f"'{value}' is not a duration: it must be positive ({_DURATION_HINT})")
    return seconds


def _parse_unit_duration(text: str) -> int | None:
    parts = _DURATION_PART_RE.findall(text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s+", "", text):
        return None
    return round(sum(float(n) * _DURATION_UNITS[u[0].lower()] for n, u in parts))


def _parse_slurm_duration(text: str) -> int | None:
    match = _SLURM_RE.match(text)
    if not match:
        return None
    days, first, second, third = match.groups()
    if days is not None:
        # D-HH, D-HH:MM, D-HH:MM:SS
        hours, minutes, secs = int(first), int(second or 0), int(third or 0)
        total = int(days) * 86400 + hours * 3600 + minutes * 60 + secs
        valid = hours < 24 and minutes < 60 and secs < 60
    elif third is not None:  # HH:MM:SS
        hours, minutes, secs = int(first), int(second), int(third)
        total, valid = hours * 3600 + minutes * 60 + secs, minutes < 60 and secs < 60
    elif second is not None:  # MM:SS
        minutes, secs = int(first), int(second)
        total, valid = minutes * 60 + secs, secs < 60
    else:  # a bare number of minutes
        total, valid = int(first) * 60, True
    return total if valid else None


def format_duration(seconds: float) -> str:
    """Slurm's elapsed form: `M:SS`, `H:MM:SS`, `D-HH:MM:SS`."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


_CPUS_HINT = "use a positive number of CPUs, e.g. 1, 4 or 0.5"


def parse_cpus(value: str | float) -> float:
    """A positive CPU count, possibly fractional (`0.5`), to a thousandth of a CPU."""
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a CPU count ({_CPUS_HINT})")
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        raise UnitError(f"'{value}' is not a CPU count ({_CPUS_HINT})") from None
    if not cpus > 0 or cpus == float("inf"):
        raise UnitError(f"'{value}' is not a CPU count: it must be more than 0 ({_CPUS_HINT})")
    if abs(cpus * 1000 - round(cpus * 1000)) > 1e-6:
        raise UnitError(f"'{value}' is finer than a thousandth of a CPU ({_CPUS_HINT})")
    return round(cpus, 3)


_CPULIST_HINT = "use e.g. 0-3,8"


def parse_cpu_list(value: str | int) -> tuple[int, ...]:
    """The CPUs named by a kernel-style list (`0-3,8`), sorted and without repeats."""
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not a CPU list ({_CPULIST_HINT})")
    text = str(value).strip()
    if not text:
        raise UnitError(f"an empty CPU list names no CPU ({_CPULIST_HINT})")
    cpus: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise UnitError(f"'{text}' is not a CPU list: '{part}' is not a CPU or a range ({_CPULIST_HINT})")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if high < low:
            raise UnitError(f"'{text}' is not a CPU list: the range '{part}' runs backwards ({_CPULIST_HINT})")
        cpus.update(range(low, high + 1))
    return tuple(sorted(cpus))


def format_cpu_list(cpus: tuple[int, ...] | list[int]) -> str:
    """The kernel's compact form of a set of CPUs: (0, 1, 2, 3, 8) -> `0-3,8`."""
    ordered = sorted(set(cpus))
    ranges: list[str] = []
    start = prev = None
    for cpu in ordered:
        if prev is not None and cpu == prev + 1:
            prev = cpu
            continue
        if start is not None:
            ranges.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = cpu
    if start is not None:
        ranges.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(ranges)


@dataclass(frozen=True, slots=True)
class ArrayRange:
    """A job array: the indices of its jobs and how many may run at once (None: no limit)."""

    indices: tuple[int, ...]
    max_running: int | None = None


_ARRAY_HINT = "use e.g. 0-9, 1,3,5, 0-99%10 or 0-20:2"
MAX_ARRAY_SIZE = 100_000


def parse_array(value: str | int) -> ArrayRange:
    """Slurm's `--array` syntax: `0-9`, `1,3,5`, `0-20:2` (a step), and `%N` for at most N running."""
    if isinstance(value, bool):
        raise UnitError(f"{value!r} is not an array range ({_ARRAY_HINT})")
    text = str(value).strip()
    body, percent, limit = text.partition("%")
    max_running = None
    if percent:
        if not limit.strip().isdigit() or int(limit) < 1:
            raise UnitError(f"'{text}' is not an array range: after '%' comes how many may run at once, "
                            f"a number of at least 1 ({_ARRAY_HINT})")
        max_running = int(limit)
    indices: set[int] = set()
    for part in body.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*(?::\s*(\d+)\s*)?)?", part)
        if not match:
            raise UnitError(f"'{text}' is not an array range: '{part}' is not an index or a range ({_ARRAY_HINT})")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        step = int(match.group(3)) if match.group(3) is not None else 1
        if high < low:
            raise UnitError(f"'{text}' is not an array range: '{part}' runs backwards ({_ARRAY_HINT})")
        if step < 1:
            raise UnitError(f"'{text}' is not an array range: the step in '{part}' must be at least 1")
        if (high - low) // step + 1 + len(indices) > MAX_ARRAY_SIZE:
            raise UnitError(f"'{text}' makes more than {MAX_ARRAY_SIZE} array jobs")
        indices.update(range(low, high + 1, step))
    return ArrayRange(tuple(sorted(indices)), max_running)


def format_array(array: ArrayRange) -> str:
    """The compact text of an array range, which `parse_array` reads back: (0..9, limit 2) -> `0-9%2`."""
    parts: list[str] = []
    indices = sorted(set(array.indices))
    start = 0
    while start < len(indices):
        end = start
        while end + 1 < len(indices) and indices[end + 1] == indices[end] + 1:
            end += 1
        low, high = indices[start], indices[end]
        parts.append(str(low) if low == high else f"{low}-{high}")
        start = end + 1
    text = ",".join(parts)
    return f"{text}%{array.max_running}" if array.max_running is not None else text
