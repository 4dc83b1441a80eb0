"""The unit parsers: what each accepts, and the exact message for what it refuses."""

import pytest

from jobs.errors import UnitError
from jobs.units import (
    ArrayRange,
    format_cpu_list,
    format_duration,
    format_size,
    parse_array,
    parse_cpu_list,
    parse_cpus,
    parse_duration,
    parse_size,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("512M", 512 * 2**20), ("4G", 4 * 2**30), ("1.5G", 3 * 2**29), ("1024", 1024), ("4GiB", 4 * 2**30),
     ("64k", 65536), ("2gb", 2 * 2**30), (1024, 1024), ("1T", 2**40)],
)
def test_sizes_are_powers_of_1024(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["4Gx", "", "G", "-1M", "1.2.3G", "iB", "4 G B"])
def test_bad_size_names_the_input_and_an_example(text):
    with pytest.raises(UnitError, match=r"is not a size \(use e\.g\. 512M or 4G\)"):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("1-02:03:04", 93784),
     ("01:02:03", 3723), ("05:30", 330), ("30", 1800), (30, 1800), ("2-12", 216000), ("1.5h", 5400)],
)
def test_durations_in_units_and_slurm_forms(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["10x", "1:99", "abc", "0s", "", "1-25:00:00"])
def test_bad_duration_is_refused_with_examples(text):
    with pytest.raises(UnitError, match="duration"):
        parse_duration(text)


def test_format_duration_is_slurm_elapsed():
    assert [format_duration(s) for s in (5, 3723, 93784)] == ["0:05", "1:02:03", "1-02:03:04"]


def test_format_size_is_short():
    assert [format_size(s) for s in (100, 512 * 2**20, 3 * 2**29)] == ["100B", "512M", "1.5G"]


@pytest.mark.parametrize(("text", "expected"), [("0.5", 0.5), (2, 2.0), ("1.25", 1.25), (0.001, 0.001)])
def test_cpus_may_be_fractional(text, expected):
    assert parse_cpus(text) == expected


@pytest.mark.parametrize("text", ["0", "-1", "two", "0.0001", True])
def test_bad_cpus_is_refused(text):
    with pytest.raises(UnitError, match="CPU"):
        parse_cpus(text)


def test_cpu_lists_round_trip():
    assert parse_cpu_list("0-3,8") == (0, 1, 2, 3, 8)
    assert format_cpu_list((8, 0, 1, 2, 3)) == "0-3,8"
    with pytest.raises(UnitError, match="runs backwards"):
        parse_cpu_list("3-1")
    with pytest.raises(UnitError, match="'x' is not a CPU or a range"):
        parse_cpu_list("0,x")


def test_array_ranges_with_steps_and_throttle():
    assert parse_array("0-9") == ArrayRange(tuple(range(10)))
    assert parse_array("1,3,5") == ArrayRange((1, 3, 5))
    assert parse_array("0-99%10") == ArrayRange(tuple(range(100)), 10)
    assert parse_array("0-6:2") == ArrayRange((0, 2, 4, 6))
    with pytest.raises(UnitError, match="how many may run at once"):
        parse_array("0-9%0")


@pytest.mark.parametrize(("text", "expected"), [("2 hours", 7200), ("30 min", 1800), ("1 day 2 hrs", 93600),
                                                ("90 seconds", 90), ("1hour", 3600)])
def test_durations_with_unit_words(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["10ms", "2 hourss", "1 week"])
def test_unit_words_do_not_swallow_mistakes(text):
    with pytest.raises(UnitError, match="duration"):
        parse_duration(text)
