"""The image commands as users type them: output shapes, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from jobs.units import format_decimal_size
from rade.cli import main
from rade.commands.images import inspect_image


@pytest.fixture
def rade(state_root, capsys):
    def run(*argv: str) -> tuple[int, str, str]:
        code = main(["--root", state_root, *argv])
        out = capsys.readouterr()
        return code, out.out, out.err
    return run


@pytest.fixture
def imported(rade, kit, tmp_path):
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(kit.tar([kit.file("bin/app", b"#!/bin/sh\n", mode=0o755)]))
    code, out, err = rade("import", str(rootfs), "app:1", "-c", 'CMD ["/bin/app"]', "-c", "EXPOSE 8080")
    assert code == 0, err
    return out.strip()


@pytest.mark.root
def test_images_tag_history_inspect_and_rmi(rade, imported, state_root) -> None:
    assert rade("tag", "app:1", "registry.example:5000/team/app:2")[0] == 0
    _, out, _ = rade("images")
    lines = out.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert {tuple(line.split()[:3]) for line in lines[1:]} == {
        ("app", "1", imported[7:19]), ("registry.example:5000/team/app", "2", imported[7:19])}
    listed = json.loads(rade("images", "--json")[1])
    assert listed[0]["Id"] == imported and len(listed[0]["RepoTags"]) == 2
    history = rade("history", "app:1")[1].splitlines()
    assert history[1].startswith(imported[7:19]) and "rade import rootfs.tar" in history[1]
    doc = inspect_image(state_root, "app:1")
    assert json.loads(rade("image", "inspect", "app:1")[1]) == [doc]
    assert doc["Config"]["Cmd"] == ["/bin/app"] and doc["Config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert doc["RootFS"]["Layers"] and doc["Id"] == imported and doc["Size"] == 10
    assert rade("rmi", "app:1") == (0, "Untagged: app:1\n", "")
    _, out, _ = rade("rmi", "registry.example:5000/team/app:2")
    assert out == f"Untagged: registry.example:5000/team/app:2\nDeleted: {imported}\n"
    assert rade("images", "-q")[1] == ""


@pytest.mark.root
def test_save_and_load_through_the_command_line(rade, imported, tmp_path) -> None:
    out = tmp_path / "app.tar"
    assert rade("save", "app:1", "-o", str(out), "--format", "oci-archive")[0] == 0
    assert rade("rmi", "app:1")[0] == 0
    assert rade("load", "-i", str(out)) == (0, "Loaded image: app:1\n", "")


@pytest.mark.root
def test_save_to_stdout_and_load_from_stdin(imported, state_root, tmp_path) -> None:
    archive = tmp_path / "piped.tar"
    with archive.open("wb") as out:
        subprocess.run([sys.executable, "-m", "rade", "--root", state_root, "save", "app:1"], stdout=out,
                       check=True)
    other = str(tmp_path / "other")
    with archive.open("rb") as src:
        done = subprocess.run([sys.executable, "-m", "rade", "--root", other, "load"], stdin=src,
                              capture_output=True, text=True, check=True)
    assert done.stdout == "Loaded image: app:1\n"
    assert inspect_image(other, "app:1")["Id"] == imported


def test_errors_are_one_line_with_exit_codes(rade, tmp_path) -> None:
    code, _, err = rade("rmi", "nothing:here")
    assert code == 125 and err.startswith("rade: error: no such image: nothing:here") and err.count("\n") == 1
    code, _, err = rade("save", "x", "--format", "oci-dir")
    assert code == 2 and "needs -o FILE" in err
    code, _, err = rade("load", "-i", str(tmp_path / "missing.tar"))
    assert code == 125 and "missing.tar" in err and err.count("\n") == 1
    code, _, err = rade("tag", "x", "Bad:Name")
    assert code == 125


def test_sizes_print_like_docker() -> None:
    assert [format_decimal_size(n) for n in (0, 999, 1000, 4_260_000, 1_500_000_000)] == \
        ["0B", "999B", "1kB", "4.26MB", "1.5GB"]


@pytest.mark.root
def test_images_hides_untagged_build_steps_unless_all(rade, store, kit) -> None:
    step = kit.image(store, [kit.tar([kit.file("a", b"a")])])
    final = store.commit(step, None, {"Cmd": ["a"]}, {"created_by": "CMD a"}, tag="built:1")
    assert rade("images", "-q")[1].split() == [final.short_id]
    assert set(rade("images", "-a", "-q")[1].split()) == {final.short_id, step.short_id}
