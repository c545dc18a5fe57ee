"""``stackctl image build``: run a Dockerfile against the image store.

Each stage is a :class:`State` (image config + layers + cache chain key). Metadata
instructions change the config; COPY, ADD and RUN each make one layer: an overlay of the
layers so far with a fresh upper directory is mounted (COPY/ADD) or handed to the execution
core (RUN, :func:`stackctl.runtime.containers.oneshot.run_oneshot`), and the upper directory
becomes the layer tar (:func:`layers.diff_to_tar`). Steps are cached (see :mod:`cache`).

RUN steps use the host's network on purpose: stackctl has no build network of its own, and a
build needs no more than the host gives it (``--network none`` isolates them).
"""

from __future__ import annotations

import contextlib
import copy
import os
import posixpath
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from stackctl.errors import NotFoundError, StackctlError, UsageError
from stackctl.paths import NodePaths
from stackctl.runtime.images import oci
from stackctl.runtime.images.build import dockerfile as D
from stackctl.runtime.images.build import metadata as M
from stackctl.runtime.images.build.cache import BuildCache, step_key
from stackctl.runtime.images.build.words import expand
from stackctl.runtime.images.store import Image, ImageStore

Log = Callable[[str], None]


class BuildError(StackctlError):
    """A build step failed; the message names the step."""


@dataclass
class BuildOptions:
    context: str
    dockerfile: str | None = None  # path; default CONTEXT/Dockerfile
    dockerfile_text: str | None = None  # the Dockerfile itself (``-f -``)
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    network: str = "host"


@dataclass
class State:
    config: dict[str, Any]  # the whole OCI image config
    layers: list[dict[str, Any]]  # {mediaType, digest, size, diff_id}, bottom -> top
    chain: str  # cache chain key
    args: dict[str, str] = field(default_factory=dict)  # ARGs in scope in this stage
    cmd_set: bool = False  # CMD given in this stage (ENTRYPOINT then keeps it)

    @property
    def cfg(self) -> dict[str, Any]:
        return self.config.setdefault("config", {})


@dataclass
class Stage:
    index: int
    name: str
    from_ins: D.Instruction
    instructions: list[D.Instruction]


def build(paths: NodePaths, store: ImageStore, opts: BuildOptions, *, log: Log = print,
          step_output: str | None = None) -> Image:
    return Builder(paths, store, opts, log, step_output).run()


class Builder:
    def __init__(self, paths: NodePaths, store: ImageStore, opts: BuildOptions, log: Log,
                 step_output: str | None) -> None:
        self.paths, self.store, self.opts, self.log = paths, store, opts, log
        self.step_output = step_output
        self.cache = BuildCache(store)
        self.step_no = 0
        self.used_args: set[str] = set()

    # --- the whole build -----------------------------------------------------------------
    def run(self) -> Image:
        from stackctl.runtime.images.build import dockerignore

        ctx = self.opts.context
        if not os.path.isdir(ctx):
            raise UsageError(f"unable to prepare context: path {ctx!r} not found or not a directory")
        text, fname = self._dockerfile_text()
        df = D.parse(text, fname)
        self.escape = df.escape
        ignore_path = os.path.join(ctx, ".dockerignore")
        patterns = []
        if os.path.exists(ignore_path):
            with open(ignore_path) as f:
                patterns = dockerignore.parse(f.read())
        from stackctl.runtime.images.build.copy import SourceRoot

        self.context = SourceRoot(os.path.abspath(ctx), dockerignore.Matcher(patterns))
        meta_args, stages = self._stages(df, fname)
        self.stages = stages
        target = self._target(stages)
        needed = self._needed(stages, target)
        results: dict[int, State] = {}
        self.results = results
        self.multi = len(stages) > 1
        with self.store.ingesting():
            for st in stages[: target.index + 1]:
                if st.index in needed:
                    results[st.index] = self._build_stage(st, meta_args)
            img = self._commit(results[target.index])
        unused = sorted(set(self.opts.build_args) - self.used_args)
        if unused:
            self.log(f"[Warning] One or more build-args {unused} were not consumed")
        self.log(f"Successfully built {img.id.split(':')[1][:12]}")
        for t in img.repo_tags:
            if t in [self._tagged(x) for x in self.opts.tags]:
                self.log(f"Successfully tagged {t}")
        return img

    @staticmethod
    def _tagged(ref: str) -> str:
        from stackctl.runtime.images.refs import normalize_tagged

        return normalize_tagged(ref)

    def _dockerfile_text(self) -> tuple[str, str]:
        if self.opts.dockerfile_text is not None:
            return self.opts.dockerfile_text, "Dockerfile"
        path = self.opts.dockerfile or os.path.join(self.opts.context, "Dockerfile")
        if not os.path.isfile(path) and self.opts.dockerfile and not os.path.isabs(path):
            alt = os.path.join(self.opts.context, path)
            path = alt if os.path.isfile(alt) else path
        try:
            with open(path) as f:
                return f.read(), os.path.basename(path)
        except FileNotFoundError:
            raise UsageError(f"failed to read dockerfile: open {path}: no such file or directory",
                             hint="give the Dockerfile with -f, or put one in the context directory") from None

    def _stages(self, df: D.Dockerfile, fname: str) -> tuple[dict[str, str], list[Stage]]:
        meta: dict[str, str] = {"TARGETOS": "linux", "TARGETARCH": oci.host_platform()["architecture"],
                                "BUILDOS": "linux", "BUILDARCH": oci.host_platform()["architecture"]}
        meta["TARGETPLATFORM"] = meta["BUILDPLATFORM"] = f"linux/{meta['TARGETARCH']}"
        stages: list[Stage] = []
        for ins in df.instructions:
            if ins.cmd == "FROM":
                _, name = D.from_parts(ins)
                stages.append(Stage(len(stages), name.lower(), ins, []))
            elif not stages:
                if ins.cmd != "ARG":
                    raise D.DockerfileError(f"{fname}:{ins.line}: no build stage in current context",
                                            hint="the first instruction must be FROM (only ARG may come before it)")
                for k, default in D.arg_defs(ins):
                    if k in self.opts.build_args:
                        meta[k] = self.opts.build_args[k]
                        self.used_args.add(k)
                    elif default is not None:
                        meta[k] = expand(default, meta, df.escape)
            else:
                stages[-1].instructions.append(ins)
        if not stages:
            raise D.DockerfileError(f"{fname}: no FROM instruction", hint="start the Dockerfile with FROM")
        return meta, stages

    def _target(self, stages: list[Stage]) -> Stage:
        if not self.opts.target:
            return stages[-1]
        for st in stages:
            if st.name == self.opts.target.lower():
                return st
        raise UsageError(f"target stage {self.opts.target!r} could not be found",
                         hint="stages: " + ", ".join(s.name or str(s.index) for s in stages))

    def _needed(self, stages: list[Stage], target: Stage) -> set[int]:
        needed: set[int] = set()
        todo = [target.index]
        while todo:
            i = todo.pop()
            if i in needed:
                continue
            needed.add(i)
            st = stages[i]
            refs = [D.from_parts(st.from_ins)[0]] + [ins.flag("from") for ins in st.instructions if ins.flag("from")]
            for ref in refs:
                dep = self._find_stage(ref, i)
                if dep is not None:
                    todo.append(dep.index)
        return needed

    # --- one stage -----------------------------------------------------------------------
    def _label(self, stage: Stage, i: int, total: int) -> str:
        name = (stage.name or f"stage-{stage.index}") + " " if self.multi else ""
        return f"[{name}{i}/{total}]"

    def _step(self, stage: Stage, i: int, ins: D.Instruction) -> int:
        self.step_no += 1
        total = len(stage.instructions) + 1
        self.log(f"#{self.step_no} {self._label(stage, i, total)} {ins.original}")
        return self.step_no

    def _build_stage(self, stage: Stage, meta: dict[str, str]) -> State:
        self._step(stage, 1, stage.from_ins)
        state = self._from(stage, meta)
        for i, ins in enumerate(stage.instructions, start=2):
            n = self._step(stage, i, ins)
            t0 = time.monotonic()
            cached = self._instruction(stage, state, ins, meta)
            if cached:
                self.log(f"#{n} CACHED")
            elif ins.cmd in ("RUN", "COPY", "ADD"):
                self.log(f"#{n} DONE {time.monotonic() - t0:.1f}s")
        return state

    def _from(self, stage: Stage, meta: dict[str, str]) -> State:
        raw, _ = D.from_parts(stage.from_ins)
        name = expand(raw, meta, self.escape)
        if name.lower() == "scratch":
            return State(config=oci.new_config(), layers=[], chain="scratch")
        prior = self._find_stage(name, stage.index)
        if prior is not None:
            base = self.results[prior.index]
            return State(config=copy.deepcopy(base.config), layers=list(base.layers), chain=base.chain)
        try:
            img = self.store.resolve(name)
        except NotFoundError:
            raise BuildError(f"FROM {name} (line {stage.from_ins.line}): image not found locally",
                             hint="stackctl does not pull from registries yet; load it (stackctl image load), "
                                  "import it, or build it first") from None
        config = copy.deepcopy(img.config)
        layers = [dict(lay, diff_id=d) for lay, d in zip(img.layers, img.diff_ids)]
        return State(config=config, layers=layers, chain=img.id)

    def _find_stage(self, name: str, before: int) -> Stage | None:
        for st in self.stages[:before]:
            if st.name and st.name == name.lower():
                return st
        if name.isdigit() and int(name) < before:
            return self.stages[int(name)]
        return None

    def _env(self, state: State) -> dict[str, str]:
        """What $VARs expand to: the stage's ARGs, overridden by ENV."""
        return {**state.args, **M.env_map(state.cfg)}

    def _instruction(self, stage: Stage, state: State, ins: D.Instruction, meta: dict[str, str]) -> bool:
        cmd = ins.cmd
        history = {"created": oci.now_rfc3339(), "created_by": _created_by(ins, state), "empty_layer": True}
        if cmd == "ARG":
            for k, default in D.arg_defs(ins):
                if k in self.opts.build_args:
                    state.args[k] = self.opts.build_args[k]
                    self.used_args.add(k)
                elif default is not None:
                    state.args[k] = expand(default, self._env(state), self.escape)
                elif k in meta:
                    state.args[k] = meta[k]
            return False
        if cmd in M.METADATA:
            if cmd == "ENTRYPOINT" and not state.cmd_set:
                state.cfg["Cmd"] = None  # an inherited CMD is reset by ENTRYPOINT, as in Docker
            if cmd == "CMD":
                state.cmd_set = True
            top = M.apply(state.cfg, ins, self._env(state), self.escape)
            state.config.update(top)
            state.config.setdefault("history", []).append(history)
            return False
        if cmd in ("COPY", "ADD"):
            return self._copy(stage, state, ins)
        if cmd == "RUN":
            return self._run(state, ins)
        raise BuildError(f"line {ins.line}: {cmd} is not supported")  # pragma: no cover

    # --- layer steps -----------------------------------------------------------------------
    def _layer_step(self, state: State, key: str, created_by: str, work_fn: Callable[[str, str], None]) -> bool:
        entry = None if self.opts.no_cache else self.cache.get(key)
        cached = entry is not None
        if entry is None:
            entry = self._make_layer(state, work_fn)
            entry["history"] = {"created": oci.now_rfc3339(), "created_by": created_by}
            self.cache.put(key, entry)
        lay = entry["layers"][0]
        state.layers.append(lay)
        state.config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(lay["diff_id"])
        state.config.setdefault("history", []).append(entry["history"])
        state.chain = key
        return cached

    def _make_layer(self, state: State, work_fn: Callable[[str, str], None]) -> dict[str, Any]:
        os.makedirs(self.store.tmp_dir, exist_ok=True)
        work = tempfile.mkdtemp(dir=self.store.tmp_dir, prefix="step-")
        try:
            upper = os.path.join(work, "upper")
            os.mkdir(upper, 0o755)
            work_fn(work, upper)
            from stackctl.runtime.images.layers import diff_to_tar

            tar_path = os.path.join(work, "layer.tar")
            with open(tar_path, "wb") as f:
                info = diff_to_tar(upper, f)
            os.rename(tar_path, self.store.blob_path(info.diff_id))
            self.store.unpack_layer(info.diff_id, oci.MT_LAYER, expected_diff_id=info.diff_id)
            size = os.path.getsize(self.store.blob_path(info.diff_id))
            return {"layers": [{"mediaType": oci.MT_LAYER, "digest": info.diff_id, "size": size, "diff_id": info.diff_id}]}
        finally:
            _rmtree(work)

    def _lower(self, state: State) -> list[str]:
        return [self.store.layer_dir(lay["diff_id"]) for lay in state.layers]

    @contextlib.contextmanager
    def _source(self, state: State, ins: D.Instruction, env: dict[str, str]) -> Iterator[tuple[Any, str]]:
        """The SourceRoot for COPY/ADD and its contribution to the cache key."""
        from stackctl.runtime.images import mounts
        from stackctl.runtime.images.build.copy import SourceRoot

        src = expand(ins.flag("from"), env, self.escape) if ins.flag("from") else ""
        if not src:
            yield self.context, ""
            return
        stage = self._find_stage(src, len(self.stages))
        if stage is not None and stage.index in self.results:
            other = self.results[stage.index]
            lower, chain = [self.store.layer_dir(lay["diff_id"]) for lay in other.layers], other.chain
        else:
            try:
                img = self.store.resolve(src)
            except NotFoundError:
                raise BuildError(f"{ins.cmd} --from={src} (line {ins.line}): no such stage or local image",
                                 hint="name a stage defined above, or an image in the local store") from None
            lower, chain = img.layer_dirs(), img.id
        scratch = tempfile.mkdtemp(dir=self.store.tmp_dir, prefix="from-")
        try:
            with mounts.readonly_root(lower, scratch) as root:
                yield SourceRoot(root, None, is_context=False), chain
        finally:
            _rmtree(scratch)

    def _copy(self, stage: Stage, state: State, ins: D.Instruction) -> bool:
        from stackctl.runtime.images import mounts
        from stackctl.runtime.images.build import copy as C

        env = self._env(state)
        for unsupported in ("parents", "exclude"):
            if unsupported in ins.flags:
                raise BuildError(f"{ins.cmd} --{unsupported} (line {ins.line}) is not supported")
        words = ins.exec_form if ins.exec_form is not None else ins.rest.split()
        words = [expand(w, env, self.escape) for w in words]
        if ins.cmd == "ADD":
            for w in words[:-1]:
                if "://" in w or w.startswith("git@"):
                    raise BuildError(f"ADD {w} (line {ins.line}): remote sources are not supported (builds have no network)",
                                     hint="download the file into the build context and ADD or COPY it from there")
        sources, dest = words[:-1], words[-1]
        workdir = state.cfg.get("WorkingDir") or "/"
        abs_dest = posixpath.join(workdir, dest)
        if dest.endswith("/") or dest in (".", "./") or dest.endswith("/."):
            abs_dest = abs_dest.rstrip(".").rstrip("/") + "/"
        chown = expand(ins.flag("chown"), env, self.escape) if ins.flag("chown") else ""
        chmod = None
        if ins.flag("chmod"):
            try:
                chmod = int(ins.flag("chmod"), 8)
            except ValueError:
                raise BuildError(f"{ins.cmd} --chmod={ins.flag('chmod')} (line {ins.line}): not an octal mode") from None
        label = f"{ins.cmd} {' '.join(words)}"
        with self._source(state, ins, env) as (src, chain):
            rels: list[str] = []
            many = len(sources) > 1
            for s in sources:
                found = src.expand(s, label)
                many = many or len(found) > 1
                rels += found
            material = chain or C.content_hash(src, rels)
            key = step_key(state.chain, state.cfg, ins.cmd, ins.flags, words, abs_dest, material)

            def work(tmp: str, upper: str) -> None:
                with mounts.writable_root(self._lower(state), upper, tmp) as root:
                    owner = C.parse_chown(chown, root) if chown else None
                    if ins.cmd == "ADD" and src.is_context:
                        plain = [r for r in rels if not C.is_archive(src.host_path(r))]
                        for r in rels:
                            if r not in plain:
                                C.extract_archive(src.host_path(r), root, abs_dest)
                        if plain:
                            C.copy_sources(src, plain, root, abs_dest, owner=owner, chmod=chmod, instr=label, many=many)
                    else:
                        C.copy_sources(src, rels, root, abs_dest, owner=owner, chmod=chmod, instr=label, many=many)

            return self._layer_step(state, key, _created_by(ins, state), work)

    def _run(self, state: State, ins: D.Instruction) -> bool:
        if ins.rest.lstrip().startswith("<<"):
            raise BuildError(f"RUN (line {ins.line}): heredocs are not supported", hint="use a shell form RUN with && or a script file")
        if "mount" in ins.flags or "security" in ins.flags:
            raise BuildError(f"RUN --mount/--security (line {ins.line}) is not supported")
        network = ins.flag("network") or self.opts.network
        argv = M.command_of(ins, state.cfg)
        env_list = list(state.cfg.get("Env") or [])
        have = {e.partition("=")[0] for e in env_list}
        env_list += [f"{k}={v}" for k, v in sorted(state.args.items()) if k not in have]
        if not any(e.startswith("PATH=") for e in env_list):
            env_list.append("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        cwd = state.cfg.get("WorkingDir") or "/"
        user = state.cfg.get("User") or ""
        key = step_key(state.chain, state.cfg, "RUN", ins.flags, argv, sorted(state.args.items()), network)

        def work(tmp: str, upper: str) -> None:
            from stackctl.runtime.images import mounts

            try:
                from stackctl.runtime.containers.oneshot import run_oneshot
            except ImportError:
                raise BuildError("RUN needs the container runtime (stackctl.runtime.containers.oneshot), which is missing") from None
            if cwd != "/":
                with mounts.writable_root(self._lower(state), upper, tmp) as root:
                    from stackctl.runtime.images.layers import resolve_in_root

                    resolve_in_root(root, [p for p in cwd.split("/") if p], create=True, what=cwd)
            out = None
            if self.step_output == "devnull":
                out = os.open(os.devnull, os.O_WRONLY)
            try:
                code = run_oneshot(self.paths, lower_dirs=self._lower(state), upper_dir=upper, argv=argv,
                                   env=env_list, cwd=cwd, user=user, network=network, stdout=out, stderr=out)
            finally:
                if out is not None:
                    os.close(out)
            if code != 0:
                shown = " ".join(argv) if ins.exec_form is None else str(argv)
                raise BuildError(f"RUN (line {ins.line}): process \"{shown}\" did not complete successfully: exit code: {code}")

        return self._layer_step(state, key, _created_by(ins, state), work)

    # --- the result ------------------------------------------------------------------------
    def _commit(self, state: State) -> Image:
        config = state.config
        config["rootfs"] = {"type": "layers", "diff_ids": [lay["diff_id"] for lay in state.layers]}
        key = "final-" + step_key(state.chain, {k: v for k, v in config.items() if k not in ("created", "history")},
                                  [h.get("created_by") for h in config.get("history", [])])
        entry = None if self.opts.no_cache else self.cache.get(key)
        if entry is not None:
            config_bytes = entry["config"].encode()
        else:
            config["created"] = oci.now_rfc3339()
            config_bytes = oci.canonical_json(config)
            self.cache.put(key, {"config": config_bytes.decode()})
        layers = [{k: v for k, v in lay.items() if k != "diff_id"} for lay in state.layers]
        return self.store.commit_image(config_bytes, layers, self.opts.tags)


def _created_by(ins: D.Instruction, state: State) -> str:
    if ins.cmd == "RUN":
        argv = M.command_of(ins, state.cfg)
        return "RUN " + " ".join(argv) + " # buildkit"
    if ins.cmd in ("COPY", "ADD"):
        return f"{ins.original} # buildkit"
    return ins.original


def _rmtree(path: str) -> None:
    from stackctl.runtime.images.mounts import remove_unless_mounted

    remove_unless_mounted(path)
