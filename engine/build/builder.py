"""The builder: runs a parsed Containerfile step by step, each step one image in the store (a layer, or
a metadata-only entry), each looked up in the step cache first, the output of RUN streamed as it runs.

Multi-stage: each `FROM image [AS name]` starts a stage with its own state; a later stage builds on an
earlier one (`FROM name`) or copies from it (`COPY --from=name|index|image`); `--target` stops at a
stage, and only the stages the target needs are built (`engine.build.stages`). An image named there that
is not local is pulled from its registry first (`engine.build.base_images`).

RUN is a container of this runtime: created from the current step's image with host networking, run
attached, its upper dir committed as the step's layer, then removed. COPY/ADD write their layer tar
straight from the context, from files taken out of another stage's image (`stage_files`), or from a
download (`ADD http://...`, `remote`), cached by what was downloaded. A failed step stops the build with
its line and exit code; nothing is tagged then.
"""

from __future__ import annotations

import json
import os
import shutil
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
from engine.build.context import BuildContext, IgnoreRules, Source, extract_local_archive
from engine.build.stages import Stage, find_stage, needed, split_stages, target_index


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
                 use_cache: bool = True, registry: Any = None, progress: bool = True, pull: str = "missing") -> None:
        """`registry`: how to reach registries for a base image that is not local (RegistryOptions;
        None: the saved logins, TLS verified); `progress`: the pull's display on stderr if a terminal;
        `pull`: when to pull base images, "missing", "always" or "never" (engine.build.base_images)."""
        from engine.build.base_images import BaseImages
        from engine.images.store import ImageStore

        self.root = root
        self.images = ImageStore(root)
        self.bases = BaseImages(root, self.images, registry, out, progress, pull=pull)
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
        self.global_args: dict[str, str] = {}
        self.stages: list[Stage] = []
        self.stage_images: dict[int, Any] = {}
        self.current_stage = 0

    def _default_file(self) -> Path:
        for name in ("Containerfile", "Dockerfile"):
            if (self.context.root / name).is_file():
                return self.context.root / name
        raise BuildError(f"no Containerfile or Dockerfile in {self.context.root}", "give one with -f")

    def build(self, tag: str | None = None, target: str | None = None) -> Any:
        """Run the steps of the target stage (the last one by default) and of the stages it needs; its
        image (tagged `tag` if given)."""
        meta, self.stages = split_stages(parse(self.text, self.filename), self.filename)
        last = target_index(self.stages, target, self.filename)
        for ins in meta:  # parse() lets only ARGs come before the first FROM
            for key, value in parse_pairs(substitute(ins.text, self.global_args), "ARG", ins.line):
                self.global_args[key] = self.build_args.get(key, value)
        chosen = [s for s in self.stages[:last + 1] if s.index in needed(self.stages, last, self.global_args)]
        total = len(meta) + sum(len(s.instructions) for s in chosen)
        number = 0
        for ins in meta:
            number += 1
            self.out(f"STEP {number}/{total}: {ins}")
        state = BuildState()
        for stage in chosen:
            self.current_stage = stage.index
            # ARGs given before the first FROM stay visible in every stage, as rade has always read them.
            state = BuildState(args=dict(self.global_args))
            for ins in stage.instructions:
                number += 1
                self.out(f"STEP {number}/{total}: {ins}")
                self.step(state, ins)
            self.stage_images[stage.index] = state.image
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
                # `ARG NAME` without a value takes the global default (ARG before FROM), as Docker.
                default = value if f"{key}=" in text else self.global_args.get(key, state.args.get(key, ""))
                state.args[key] = self.build_args.get(key, default)
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
        copy: CopySource | None = None
        if ins.keyword in ("COPY", "ADD"):
            copy, content = self._copy_source(state, ins, text)
        try:
            self._cached_or_run(state, ins, text, content, copy)
        finally:
            if copy is not None and copy.temp_dir is not None:
                shutil.rmtree(copy.temp_dir, ignore_errors=True)

    def _cached_or_run(self, state: BuildState, ins: Instruction, text: str, content: str,
                       copy: CopySource | None) -> None:
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
        image = self._run_step(state, ins, text, copy)
        self.cache.put(key, image.id)
        self.out(f"--> {image.short_id}")
        self._advance(state, ins, text, image)

    def _from(self, state: BuildState, text: str, ins: Instruction) -> None:
        ref = text.split()[0]
        stage = find_stage(self.stages, ref, self.current_stage)
        if stage is not None:
            state.image = self.stage_images[stage.index]
            if state.image is None:
                return  # a stage on scratch that made no layer is scratch again
        elif ref == "scratch":
            state.image = None
            return
        else:
            state.image = self.bases.get(ref, f"{self.filename}:{ins.line}", f"FROM {ref} is not a local image")
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

    def _copy_source(self, state: BuildState, ins: Instruction, text: str) -> tuple[CopySource, str]:
        """Where a COPY/ADD takes its files from, and the content hash that keys its cache entry."""
        from engine.build import remote

        where = f"{self.filename}:{ins.line}"
        words = ins.json_args() or split_words(text)
        if len(words) < 2:
            raise BuildError(f"{where}: {ins.keyword} needs a source and a destination")
        sources, dest = words[:-1], words[-1]
        source = ins.flag("from")
        if source is not None:
            if ins.keyword == "ADD":
                raise BuildError(f"{where}: ADD takes no --from", "use COPY --from=STAGE")
            image = self._source_image(source, where)
            # An image is named by its content: its id stands for the files without taking them out.
            return CopySource(None, [], sources, dest, image=image, from_image=True), \
                f"from {image.id if image is not None else 'scratch'}"
        urls = [w for w in sources if remote.is_url(w)]
        if urls and ins.keyword == "ADD":
            if len(urls) != len(sources):
                raise BuildError(f"{where}: ADD mixes URLs and files of the context", "give them in two ADDs")
            temp = Path(tempfile.mkdtemp(prefix=".add-url-", dir=self.root))
            try:
                names = [remote.fetch(url, temp, ins.flag("checksum"), where, self.out).name for url in urls]
                context = _plain_context(temp)
                plan = context.plan(names, dest, state.workdir, self._is_image_dir(state))
                return CopySource(context, plan, names, dest, temp_dir=temp), context.digest(plan)
            except BaseException:
                shutil.rmtree(temp, ignore_errors=True)
                raise
        plan = self.context.plan(sources, dest, state.workdir, self._is_image_dir(state))
        return CopySource(self.context, plan, sources, dest), self.context.digest(plan)

    def _source_image(self, ref: str, where: str) -> Any:
        stage = find_stage(self.stages, ref, self.current_stage)
        if stage is not None:
            return self.stage_images[stage.index]
        if ref in (s.name for s in self.stages if s.name) or ref.isdigit():
            raise BuildError(f"{where}: --from={ref} names a later stage", "copy only from stages above this one")
        return self.bases.get(ref, where, f"--from={ref} is neither a stage before this one nor a local image")

    def _is_image_dir(self, state: BuildState):
        layers = [Path(p) for p in state.image.layer_dirs()] if state.image is not None else []

        def is_image_dir(path: str) -> bool:
            from engine.containers.diff import exists_below

            rel = path.strip("/")
            return not rel or (exists_below(layers, rel) and any((layer / rel).is_dir() for layer in layers))

        return is_image_dir

    def _run_step(self, state: BuildState, ins: Instruction, text: str, copy: CopySource | None) -> Any:
        history = {"created_by": f"/bin/sh -c #(nop) {ins}" if ins.keyword != "RUN" else f"RUN {text}",
                   "comment": "rade build"}
        if ins.keyword == "RUN":
            return self._run(state, ins, text, history)
        if ins.keyword in ("COPY", "ADD"):
            assert copy is not None
            if copy.from_image:
                from engine.build.stage_files import export

                copy.temp_dir = export(self.root, copy.image, copy.sources, f"{self.filename}:{ins.line}")
                copy.context = _plain_context(copy.temp_dir)
                rels = [s.lstrip("/") or "." for s in copy.sources]
                copy.plan = copy.context.plan(rels, copy.dest, state.workdir, self._is_image_dir(state))
            return self._copy(state, ins, copy, history)
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

    def _copy(self, state: BuildState, ins: Instruction, copy: CopySource, history) -> Any:
        chown = None
        if ins.flag("chown"):
            user, _, group = ins.flag("chown").partition(":")
            if not user.isdigit() or (group and not group.isdigit()):
                raise BuildError(f"{self.filename}:{ins.line}: --chown takes numeric UID[:GID] here")
            chown = (int(user), int(group or user))
        fd, path = tempfile.mkstemp(prefix=".build-", suffix=".tar", dir=self.root)
        os.close(fd)
        try:
            plan = copy.plan
            if (ins.keyword == "ADD" and copy.context is self.context and len(plan) == 1
                    and extract_local_archive(self.context.root / plan[0].rel)):
                # An archive unpacks into the destination directory itself.
                dest = (ins.json_args() or split_words(substitute(ins.text, state.values())))[-1]
                dest = os.path.normpath(os.path.join(state.workdir, dest))
                _retarget_archive(self.context.root / plan[0].rel, Path(path), dest)
            else:
                copy.context.write_layer(plan, Path(path), chown)
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


@dataclass
class CopySource:
    """What a COPY/ADD copies: a context (the build's, a download's, or files taken out of an image) and
    the plan of what goes where; `temp_dir` is removed after the step."""

    context: BuildContext | None
    plan: list[Source]
    sources: list[str]
    dest: str
    image: Any = None
    from_image: bool = False
    temp_dir: Path | None = None


def _plain_context(path: Path) -> BuildContext:
    """A directory rade filled itself, as a context: no .dockerignore applies."""
    context = BuildContext(path)
    context.ignore = IgnoreRules([])
    return context


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
