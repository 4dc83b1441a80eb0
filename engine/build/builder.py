"""The builder: runs a parsed Containerfile step by step, each step one image in the store (a layer, or
a metadata-only entry), each looked up in the step cache first, the output of RUN streamed as it runs.

RUN is a container of this runtime: created from the current step's image with host networking, run
attached, its upper dir committed as the step's layer, then removed. COPY/ADD write their layer tar
straight from the context. A failed step stops the build with its line and exit code; nothing is
tagged then.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.build.cache import BuildCache, step_key
from engine.build.containerfile import (
    BuildError,
    Instruction,
    parse,
    parse_pairs,
    split_words,
    substitute,
)
from engine.build.context import BuildContext, extract_local_archive


@dataclass
class BuildState:
    """Where the build is: the current image and the values substitution sees."""

    image: Any = None  # engine.images.image.Image, None for scratch before any step
    args: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    workdir: str = "/"
    user: str = ""
    shell: tuple[str, ...] = ("/bin/sh", "-c")

    @property
    def image_id(self) -> str:
        return self.image.id if self.image is not None else "scratch"

    def values(self) -> dict[str, str]:
        return {**self.args, **self.env}


class Builder:
    def __init__(self, root: str, context: str, containerfile: str | None = None,
                 build_args: dict[str, str] | None = None, out: Callable[[str], None] = print,
                 use_cache: bool = True) -> None:
        from engine.images.store import ImageStore

        self.root = root
        self.images = ImageStore(root)
        self.context = BuildContext(context)
        path = Path(containerfile) if containerfile else self._default_file()
        try:
            self.text = path.read_text()
        except OSError as err:
            raise BuildError(f"cannot read {path}: {err.strerror}", "give the file with -f") from None
        self.filename = str(path)
        self.build_args = dict(build_args or {})
        self.cache = BuildCache(root)
        self.out = out
        self.use_cache = use_cache

    def _default_file(self) -> Path:
        for name in ("Containerfile", "Dockerfile"):
            if (self.context.root / name).is_file():
                return self.context.root / name
        raise BuildError(f"no Containerfile or Dockerfile in {self.context.root}", "give one with -f")

    def build(self, tag: str | None = None) -> Any:
        """Run every step; the final image (tagged `tag` if given)."""
        steps = parse(self.text, self.filename)
        state = BuildState()
        total = len(steps)
        for number, ins in enumerate(steps, 1):
            self.out(f"STEP {number}/{total}: {ins}")
            self.step(state, ins)
        if state.image is None:
            raise BuildError(f"{self.filename}: the build made no image", "add at least one instruction after FROM")
        if tag:
            self.images.tag(state.image, tag)
            state.image = self.images.get(state.image.id)
            self.out(f"Successfully tagged {tag}")
        self.out(state.image.id)
        return state.image

    # -- one step ---------------------------------------------------------------------------------------

    def step(self, state: BuildState, ins: Instruction) -> None:
        text = substitute(ins.text, state.values()) if ins.keyword in ("FROM", "COPY", "ADD", "ENV", "ARG",
                                                                       "WORKDIR", "USER", "LABEL", "EXPOSE",
                                                                       "VOLUME") else ins.text
        if ins.keyword == "FROM":
            self._from(state, text, ins)
            return
        if ins.keyword == "ARG":
            for key, value in parse_pairs(text, "ARG", ins.line):
                state.args[key] = self.build_args.get(key, value)
            return
        if ins.keyword == "SHELL":
            shell = ins.json_args()
            if not shell:
                raise BuildError(f"{self.filename}:{ins.line}: SHELL takes the JSON form", 'e.g. SHELL ["/bin/sh", "-c"]')
            state.shell = tuple(shell)
            return
        if state.image is None and ins.keyword not in ("COPY", "ADD", "ENV", "WORKDIR", "USER", "CMD",
                                                       "ENTRYPOINT", "LABEL", "EXPOSE", "VOLUME"):
            raise BuildError(f"{self.filename}:{ins.line}: {ins.keyword} needs an image; FROM scratch has no shell")
        content = ""
        plan = None
        if ins.keyword in ("COPY", "ADD"):
            if ins.keyword == "ADD" and any(w.startswith(("http://", "https://")) for w in split_words(text)):
                raise BuildError(f"{self.filename}:{ins.line}: ADD of a URL is not supported (builds have no "
                                 "downloads)", "download the file into the context and COPY it")
            if ins.flag("from"):
                raise BuildError(f"{self.filename}:{ins.line}: COPY --from (multi-stage builds) is not supported",
                                 "build the other stage as its own image and COPY from the context")
            plan = self._copy_plan(state, ins, text)
            content = self.context.digest(plan)
        # RUN sees the build args in its environment, so they are part of what the step is.
        used_args = json.dumps([sorted(state.args.items()), state.shell]) if ins.keyword == "RUN" else ""
        key = step_key(state.image_id, f"{ins.keyword} {text} {dict(ins.flags)} {used_args}", content)
        cached = self.cache.get(key) if self.use_cache else None
        if cached is not None:
            try:
                image = self.images.get(cached)
            except Exception:  # noqa: BLE001 - the cached image was removed: build the step again
                image = None
            if image is not None:
                self.out(f"--> Using cache {image.short_id}")
                self._advance(state, ins, text, image)
                return
        image = self._run_step(state, ins, text, plan)
        self.cache.put(key, image.id)
        self.out(f"--> {image.short_id}")
        self._advance(state, ins, text, image)

    def _from(self, state: BuildState, text: str, ins: Instruction) -> None:
        ref = text.split()[0]
        if ref == "scratch":
            state.image = None
            return
        state.image = self.images.resolve(ref)
        config = state.image.runtime_config
        state.env = dict(e.partition("=")[::2] for e in config.get("Env") or [])
        state.workdir = config.get("WorkingDir") or "/"
        state.user = config.get("User") or ""
        self.out(f"--> {state.image.short_id}")

    def _advance(self, state: BuildState, ins: Instruction, text: str, image: Any) -> None:
        state.image = image
        if ins.keyword == "ENV":
            state.env.update(parse_pairs(text, "ENV", ins.line))
        elif ins.keyword == "WORKDIR":
            state.workdir = os.path.normpath(os.path.join(state.workdir, text.strip()))
        elif ins.keyword == "USER":
            state.user = text.strip()

    def _copy_plan(self, state: BuildState, ins: Instruction, text: str):
        words = ins.json_args() or split_words(text)
        if len(words) < 2:
            raise BuildError(f"{self.filename}:{ins.line}: {ins.keyword} needs a source and a destination")
        layers = [Path(p) for p in state.image.layer_dirs()] if state.image is not None else []

        def is_image_dir(path: str) -> bool:
            from engine.containers.diff import exists_below

            rel = path.strip("/")
            return not rel or (exists_below(layers, rel) and any((layer / rel).is_dir() for layer in layers))

        return self.context.plan(words[:-1], words[-1], state.workdir, is_image_dir)

    def _run_step(self, state: BuildState, ins: Instruction, text: str, plan) -> Any:
        history = {"created_by": f"/bin/sh -c #(nop) {ins}" if ins.keyword != "RUN" else f"RUN {text}",
                   "comment": "rade build"}
        if ins.keyword == "RUN":
            return self._run(state, ins, text, history)
        if ins.keyword in ("COPY", "ADD"):
            return self._copy(state, ins, plan, history)
        return self.images.commit(state.image, None, self._config_change(state, ins, text), history)

    def _config_change(self, state: BuildState, ins: Instruction, text: str) -> dict[str, Any]:
        config = state.image.runtime_config if state.image is not None else {}
        kw = ins.keyword
        if kw == "ENV":
            env = dict(state.env)
            env.update(parse_pairs(text, "ENV", ins.line))
            return {"Env": [f"{k}={v}" for k, v in env.items()]}
        if kw == "WORKDIR":
            return {"WorkingDir": os.path.normpath(os.path.join(state.workdir, text.strip()))}
        if kw == "USER":
            return {"User": text.strip()}
        if kw in ("CMD", "ENTRYPOINT"):
            argv = ins.json_args()
            value = argv if argv is not None else (["/bin/sh", "-c", text] if text.strip() else None)
            changes = {"Cmd" if kw == "CMD" else "Entrypoint": value}
            if kw == "ENTRYPOINT" and "Cmd" in config:
                changes["Cmd"] = None  # as Docker: a new entrypoint drops the inherited CMD
            return changes
        if kw == "LABEL":
            labels = dict(config.get("Labels") or {})
            labels.update(parse_pairs(text, "LABEL", ins.line))
            return {"Labels": labels}
        if kw == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            for word in split_words(text):
                ports[word if "/" in word else f"{word}/tcp"] = {}
            return {"ExposedPorts": ports}
        if kw == "VOLUME":
            volumes = dict(config.get("Volumes") or {})
            for path in ins.json_args() or split_words(text):
                volumes[path] = {}
            return {"Volumes": volumes}
        if kw == "STOPSIGNAL":
            return {"StopSignal": text.strip()}
        return {}

    def _copy(self, state: BuildState, ins: Instruction, plan, history) -> Any:
        chown = None
        if ins.flag("chown"):
            user, _, group = ins.flag("chown").partition(":")
            if not user.isdigit() or (group and not group.isdigit()):
                raise BuildError(f"{self.filename}:{ins.line}: --chown takes numeric UID[:GID] here")
            chown = (int(user), int(group or user))
        fd, path = tempfile.mkstemp(prefix=".build-", suffix=".tar", dir=self.root)
        os.close(fd)
        try:
            if ins.keyword == "ADD" and len(plan) == 1 and extract_local_archive(self.context.root / plan[0].rel):
                # An archive unpacks into the destination directory itself.
                dest = (ins.json_args() or split_words(substitute(ins.text, state.values())))[-1]
                dest = os.path.normpath(os.path.join(state.workdir, dest))
                _retarget_archive(self.context.root / plan[0].rel, Path(path), dest)
            else:
                self.context.write_layer(plan, Path(path), chown)
            return self.images.commit(state.image, path, {}, history)
        finally:
            os.unlink(path)

    def _run(self, state: BuildState, ins: Instruction, text: str, history) -> Any:
        from engine.build.run_step import run_in_container

        argv = ins.json_args() or [*state.shell, text]
        env = tuple(f"{k}={v}" for k, v in state.args.items() if k not in state.env)
        code, layer_image = run_in_container(self.root, state.image, tuple(argv), env, history)
        if code != 0:
            raise BuildError(f"{self.filename}:{ins.line}: RUN {text!r} exited with code {code}",
                             "fix the command; the steps before it are cached")
        return layer_image


def _retarget_archive(archive: Path, out: Path, dest: str) -> None:
    """ADD of a local archive: its entries, under `dest`, as a layer tar (the store checks every path)."""
    import tarfile

    base = dest.strip("/")
    with tarfile.open(archive) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for member in src:
            name = os.path.normpath(member.name).lstrip("/")
            member.name = f"{base}/{name}" if base else name
            if member.islnk():
                member.linkname = f"{base}/{member.linkname.lstrip('/')}" if base else member.linkname
            tar.addfile(member, src.extractfile(member) if member.isreg() else None)
