"""The one module that talks to the Docker engine.

Every container hackback starts is named, labelled (so a killed run's leftovers
can be found and reaped), streams its output, and is removed when its block
ends, on success, error or Ctrl-C alike. docker.errors.* become our own errors here.
"""
from __future__ import annotations

import collections
import os
import shlex
import socket
import stat
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Literal, Mapping, Optional, Sequence

import docker
import docker.errors
import requests

from . import log
from .ownership import host_user, owner_label, parse_owner, pid_alive
from .errors import ContainerFailed, DockerFailure, DockerUnavailable, StepStalled

LABEL = "io.hackback"  # value "1" on everything we create
LABEL_STEP = "io.hackback.step"
LABEL_OWNER = "io.hackback.owner"  # "<host>:<pid>" of the run that started it
LABEL_WORKDIR = "io.hackback.workdir"  # resolved work dir of the run that started it
KVM_DEVICE = Path("/dev/kvm")
_TAIL_LINES = 40
UNTIL_MET = -1  # run()'s status when its `until` predicate ended it
WATCH_INTERVAL = 2.0


@dataclass(frozen=True)
class Mount:
    """A host path inside a container. Read-only unless the step writes it."""

    host: Path
    container: str
    read_only: bool = True

    def as_flag(self) -> str:
        return f"-v {self.host}:{self.container}:{'ro' if self.read_only else 'rw'}"


@dataclass(frozen=True)
class RunSpec:
    image: str
    command: Sequence[str]
    step: str  # e.g. "env-gem5"; part of the container name and a label
    mounts: Sequence[Mount] = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    workdir: Optional[str] = None
    # Root inside the container only when a step must be (debootstrap); such a
    # step hands its outputs back to the host user itself.
    as_root: bool = False
    cap_add: Sequence[str] = ()
    kvm: bool = True  # pass /dev/kvm through when the host has one
    network: Optional[str] = None  # None: the default bridge
    # Seconds a first Ctrl-C gives the step to stop by itself (SIGTERM) before it
    # is killed, for steps that save state on the way out (scons writes its
    # signature database); 0 kills at once. A second Ctrl-C kills at once.
    stop_grace: int = 0


Verdict = Literal["reap", "live", "unproven"]


@dataclass(frozen=True)
class ContainerInfo:
    """One container carrying our label, as the engine lists it."""

    id: str
    name: str
    owner: str  # LABEL_OWNER's value, "" when it has none
    work_dir: str  # LABEL_WORKDIR's value, "" when it has none
    state: str  # the engine's: created, running, exited, ...
    image_id: str

    def verdict(self, work_dir: Path, host: str) -> Verdict:
        """reap: provably a leftover of work_dir (started on this host by a run that is gone);
        live: its run is alive on this host (never touched); unproven: anything else
        (another host, another work dir, no owner): only `clean --all-owners` removes those."""
        owner = parse_owner(self.owner)
        if owner is None or owner[0] != host:
            return "unproven"
        if pid_alive(owner[1]):
            return "live"
        return "reap" if self.work_dir == str(work_dir.resolve()) else "unproven"


@dataclass
class _Output:
    """Where one run's output lines go: the console (or on_line), the log file, and
    the tail kept for error messages."""

    phase: str
    log_file: Optional[IO[str]]
    on_line: Optional[Callable[[str], None]]
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=_TAIL_LINES))

    def emit(self, raw: bytes) -> str:
        line = raw.decode("utf-8", "replace").rstrip("\r")
        self.tail.append(line)
        if self.log_file:
            self.log_file.write(line + "\n")
        if self.on_line:
            self.on_line(line)
        else:
            log.stream(self.phase, line)
        return line


# The guards started by this process (python -m hackback.base.reaper OWNER): one per
# process, not per task, since a guard watches the process's pid.
_reapers: set[str] = set()


def _spawn_reaper(owner: str) -> None:
    """Start the guard that removes this process's containers if it is killed, once per process."""
    if owner in _reapers or os.environ.get("HACKBACK_NO_REAPER") == "1":
        return
    _reapers.add(owner)
    subprocess.Popen([sys.executable, "-m", "hackback.base.reaper", owner], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, close_fds=True)


class Engine:
    """A connected Docker engine. Create with Engine.connect(work_dir): every
    container it starts is labelled with that work dir (the task's), so that
    `clean` reaps only the leftovers of its own work dir."""

    def __init__(self, client: Any, work_dir: Optional[Path] = None) -> None:
        self._client = client
        self.work_dir_label = str(work_dir.resolve()) if work_dir is not None else None

    @classmethod
    def connect(cls, work_dir: Optional[Path] = None) -> "Engine":
        try:
            client = docker.from_env(version="auto", timeout=600)
            client.ping()
        except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
            where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
            raise DockerUnavailable(
                f"no Docker engine answers at {where} ({_first_line(e)})",
                "start one with `sudo dockerd &` (or `sudo systemctl start docker`), or set DOCKER_HOST",
            ) from None
        return cls(client, work_dir)

    # ------------------------------------------------------------ images

    def image_id(self, ref: str) -> Optional[str]:
        try:
            return str(self._client.images.get(ref).id)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as e:
            raise DockerFailure(f"could not inspect image {ref}: {_first_line(e)}") from None

    def image_labels(self, ref: str) -> dict[str, str]:
        try:
            return dict(self._client.images.get(ref).labels or {})
        except docker.errors.ImageNotFound:
            return {}

    def pull(self, ref: str) -> bool:
        """Try to pull; False (with the reason printed) when the registry cannot be reached."""
        repo, _, tag = ref.partition(":")
        log.action(f"docker pull {ref}")
        try:
            self._client.images.pull(repo, tag=tag or "latest")
            return True
        except docker.errors.APIError as e:
            log.info(f"    pull failed: {_first_line(e)}")
            return False

    def import_rootfs(self, tarball: Path, ref: str, changes: Sequence[str], labels: Mapping[str, str]) -> str:
        repo, _, tag = ref.partition(":")
        all_changes = list(changes) + [f"LABEL {k}={shlex.quote(v)}" for k, v in {LABEL: "1", **labels}.items()]
        log.action(f"docker import {tarball} {ref}")
        self._call(self._client.api.import_image, src=str(tarball), repository=repo, tag=tag or "latest", changes=all_changes)
        image_id = self.image_id(ref)
        if image_id is None:
            raise DockerFailure(f"docker import of {tarball} produced no image {ref}")
        return image_id

    def build(
        self,
        context: Path,
        tag: str,
        phase: str,
        buildargs: Optional[Mapping[str, str]] = None,
        labels: Optional[Mapping[str, str]] = None,
        log_file: Optional[IO[str]] = None,
        nocache: bool = False,
    ) -> str:
        """Build an image, streaming the builder's output (the low-level API;
        images.build() would say nothing until the end)."""
        args = " ".join(f"--build-arg {k}={v}" for k, v in (buildargs or {}).items())
        log.action(f"docker build {args} -t {tag} {context}")
        tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        image_id = None
        try:
            stream = self._client.api.build(
                path=str(context),
                tag=tag,
                buildargs=dict(buildargs or {}),
                labels={LABEL: "1", **(labels or {})},
                decode=True,
                rm=True,
                forcerm=True,
                pull=False,
                nocache=nocache,
            )
            for chunk in stream:
                if "error" in chunk:
                    raise DockerFailure(
                        f"building {tag} failed: {_first_line(chunk['error'])}",
                        "the lines above show the failing step" + (f": {tail[-1]}" if tail else ""),
                    )
                if "aux" in chunk and isinstance(chunk["aux"], dict):
                    image_id = chunk["aux"].get("ID", image_id)
                for line in str(chunk.get("stream", "")).splitlines():
                    if line.strip():
                        tail.append(line)
                        log.stream(phase, line)
                        if log_file:
                            log_file.write(line + "\n")
        except (docker.errors.APIError, docker.errors.BuildError) as e:
            raise DockerFailure(f"building {tag} failed: {_first_line(e)}") from None
        return image_id or self.image_id(tag) or ""

    def tag(self, ref: str, new_ref: str) -> bool:
        repo, _, tag = new_ref.partition(":")
        try:
            return bool(self._client.images.get(ref).tag(repo, tag or "latest"))
        except docker.errors.APIError as e:
            raise DockerFailure(f"could not tag {ref} as {new_ref}: {_first_line(e)}") from None

    def save_image(self, ref: str, dest: Path) -> None:
        """docker save of one image into dest (written whole, then renamed)."""
        log.action(f"docker save {ref} > {dest}")
        part = dest.with_name(f".{dest.name}.part")
        try:
            with open(part, "wb") as f:
                for chunk in self._client.images.get(ref).save(named=ref):  # keeps this tag in the tarball
                    f.write(chunk)
            os.replace(part, dest)
        except docker.errors.APIError as e:
            raise DockerFailure(f"could not save image {ref}: {_first_line(e)}") from None
        finally:
            part.unlink(missing_ok=True)

    def load_image(self, tarball: Path) -> list[str]:
        """docker load; the ids of the images it held."""
        log.action(f"docker load < {tarball}")
        try:
            with open(tarball, "rb") as f:
                return [str(i.id) for i in self._client.images.load(f)]
        except docker.errors.APIError as e:
            raise DockerFailure(f"could not load {tarball}: {_first_line(e)}") from None

    def remove_image(self, ref: str, force: bool = True) -> bool:
        """Remove (or, for one of several tags, untag) an image. force=False lets the
        engine refuse one a container uses, whatever we checked before."""
        try:
            self._client.images.remove(ref, force=force)
            return True
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as e:
            raise DockerFailure(f"could not remove image {ref}: {_first_line(e)}") from None

    def images(self, label: str = LABEL) -> list[tuple[str, list[str], dict[str, str]]]:
        """(id, tags, labels) of our images."""
        out = []
        for img in self._call(self._client.images.list, filters={"label": label}):
            out.append((str(img.id), list(img.tags), dict(img.labels or {})))
        return out

    # ------------------------------------------------------------ containers

    def run(
        self,
        spec: RunSpec,
        phase: Optional[str] = None,
        log_file: Optional[IO[str]] = None,
        on_line: Optional[Callable[[str], None]] = None,
        check: bool = True,
        until: Optional[Callable[[str], bool]] = None,
        watchdog: Optional[Callable[[], Optional[str]]] = None,
    ) -> int:
        """Run a container to completion, streaming its output; always removed afterwards.
        Returns the exit status; with check=True a non-zero one raises ContainerFailed.
        until(line) -> True ends the run early (status UNTIL_MET). watchdog() is
        polled every few seconds; a reason it returns kills the step and raises
        StepStalled with that reason and the output's tail."""
        name = f"hackback-{spec.step}-{uuid.uuid4().hex[:8]}"
        kwargs = self._create_kwargs(spec, name)
        self._print_run(spec, name, kwargs)
        out = _Output(phase or spec.step, log_file, on_line)
        _spawn_reaper(owner_label())  # removes this process's containers if it is killed
        container = self._call(self._client.containers.create, **kwargs)
        status = self._run_container(container, spec, out, until, watchdog)
        if status is None:
            return UNTIL_MET
        if status != 0 and check:
            raise ContainerFailed(
                f"step {spec.step} failed: `{' '.join(spec.command)[:120]}` exited {status}",
                f"last output: {out.tail[-1]}" if out.tail else "it printed nothing",
                exit_status=status,
                log_tail="\n".join(out.tail),
            )
        return status

    def _run_container(
        self,
        container: Any,
        spec: RunSpec,
        out: _Output,
        until: Optional[Callable[[str], bool]],
        watchdog: Optional[Callable[[], Optional[str]]],
    ) -> Optional[int]:
        """Start the created container, stream it and wait for it: its exit status,
        or None when `until` ended it. It is removed however this ends."""
        stalled: list[str] = []
        done = threading.Event()
        try:
            self._call(container.start)
            if watchdog is not None:
                threading.Thread(target=self._watch, args=(container, watchdog, stalled, done), daemon=True).start()
            if self._stream(container, out, until):
                container.kill()
                return None
            status = int(self._call(container.wait).get("StatusCode", 1))
            if stalled:
                raise StepStalled(f"step {spec.step} stopped making progress: {stalled[0]}", log_tail="\n".join(out.tail))
            return status
        except KeyboardInterrupt:
            self._stop_for_resume(container, spec, out)
            raise
        finally:
            done.set()
            # Reached on Ctrl-C and on errors too: nothing we start outlives us.
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass

    @staticmethod
    def _stream(container: Any, out: _Output, until: Optional[Callable[[str], bool]]) -> bool:
        """Emit the container's output line by line until it ends; True as soon as
        until(line) holds (the rest is left unread)."""
        pending = b""
        for chunk in container.logs(stream=True, follow=True):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = out.emit(raw)
                if until is not None and until(line):
                    return True
        if pending:
            out.emit(pending)
        return False

    @staticmethod
    def _stop_for_resume(container: Any, spec: RunSpec, out: _Output) -> None:
        """On a first Ctrl-C, give a step with a stop_grace that long to stop by itself."""
        if not spec.stop_grace:
            return
        log.info(f"\nstopping {spec.step} (up to {spec.stop_grace}s) so it can resume later; Ctrl-C again kills it now")
        try:
            container.stop(timeout=spec.stop_grace)
            for raw in container.logs(tail=5).splitlines():  # what it said on the way out
                out.emit(raw)
        except (docker.errors.APIError, KeyboardInterrupt):
            pass

    @staticmethod
    def _watch(container: Any, watchdog: Callable[[], Optional[str]], stalled: list[str], done: threading.Event) -> None:
        while not done.wait(WATCH_INTERVAL):
            reason = watchdog()
            if reason:
                stalled.append(reason)
                try:
                    container.kill()
                except docker.errors.APIError:
                    pass
                return

    def _create_kwargs(self, spec: RunSpec, name: str) -> dict[str, Any]:
        env = {"HOME": "/tmp", **spec.environment}
        kwargs: dict[str, Any] = dict(
            image=spec.image,
            command=list(spec.command),
            name=name,
            labels=self._labels(spec),
            environment=env,
            # A list, not a dict keyed by host path: one host directory may be mounted twice.
            volumes=[f"{m.host}:{m.container}:{'ro' if m.read_only else 'rw'}" for m in spec.mounts],
            working_dir=spec.workdir,
            init=True,  # signals reach the step's process; zombies are reaped
            detach=True,
        )
        if not spec.as_root:
            kwargs["user"] = host_user()
        if spec.cap_add:
            kwargs["cap_add"] = list(spec.cap_add)
        if spec.network:
            kwargs["network_mode"] = spec.network
        if spec.kvm and kvm_usable_on_host():
            kwargs["devices"] = [f"{KVM_DEVICE}:{KVM_DEVICE}:rwm"]
            if not spec.as_root:
                kwargs["group_add"] = [str(KVM_DEVICE.stat().st_gid)]
        for m in spec.mounts:
            if not m.host.is_absolute():
                raise AssertionError(f"mount source must be absolute: {m.host}")
        return kwargs

    def _labels(self, spec: RunSpec) -> dict[str, str]:
        # Owner and work dir together say whose leftover a container is: `clean`
        # reaps only those of its own work dir whose run is gone.
        labels = {LABEL: "1", LABEL_STEP: spec.step, LABEL_OWNER: owner_label()}
        if self.work_dir_label is not None:
            labels[LABEL_WORKDIR] = self.work_dir_label
        return labels

    def _print_run(self, spec: RunSpec, name: str, kwargs: Mapping[str, Any]) -> None:
        parts = ["docker run --rm", f"--name {name}"]
        if "user" in kwargs:
            parts.append(f"--user {kwargs['user']}")
        parts += [f"--cap-add {c}" for c in spec.cap_add]
        if "devices" in kwargs:
            parts.append(f"--device {KVM_DEVICE}")
        parts += [m.as_flag() for m in spec.mounts]
        if spec.workdir:
            parts.append(f"-w {spec.workdir}")
        parts.append(spec.image)
        parts.append(shlex.join(spec.command))
        log.action(" ".join(parts))

    def labelled_containers(self) -> list[ContainerInfo]:
        """Every container with our label, running or not, whoever started it."""
        out = []
        # The low-level list: one call, and a container removed meanwhile cannot fail it.
        for c in self._call(self._client.api.containers, all=True, filters={"label": LABEL}):
            labels = c.get("Labels") or {}
            out.append(ContainerInfo(str(c["Id"]), _container_name(c), labels.get(LABEL_OWNER, ""),
                                     labels.get(LABEL_WORKDIR, ""), str(c.get("State", "")), str(c.get("ImageID", ""))))
        return out

    def containers(self, all_owners: bool = False) -> list[tuple[str, str, str]]:
        """(id, name, owner) of our containers: all of them with all_owners, else only the
        provable leftovers of this process's work dir (see ContainerInfo.verdict)."""
        host = socket.gethostname()
        work = Path(self.work_dir_label) if self.work_dir_label is not None else None
        return [(c.id, c.name, c.owner) for c in self.labelled_containers()
                if all_owners or (work is not None and c.verdict(work, host) == "reap")]

    def containers_using(self, image_id: str) -> list[str]:
        """Names of every container (anyone's, running or stopped) made from image_id."""
        return [_container_name(c) for c in self._call(self._client.api.containers, all=True) if c.get("ImageID") == image_id]

    def remove_container(self, container_id: str) -> None:
        try:
            self._client.containers.get(container_id).remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            raise DockerFailure(f"could not remove container {container_id[:12]}: {_first_line(e)}") from None

    # ------------------------------------------------------------ helpers

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except docker.errors.ImageNotFound as e:
            raise DockerFailure(f"image not found: {_first_line(e)}", "build it first; `hackback env` builds the images") from None
        except docker.errors.APIError as e:
            raise DockerFailure(_first_line(e)) from None
        except requests.exceptions.ConnectionError as e:
            raise DockerUnavailable(f"lost the Docker engine: {_first_line(e)}", "is dockerd still running?") from None


def kvm_usable_on_host() -> bool:
    """True when /dev/kvm exists and is a character device we can open for
    read-write. Whether it can actually run a guest is another question (the
    image step probes that)."""
    try:
        st = KVM_DEVICE.stat()
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and os.access(KVM_DEVICE, os.R_OK | os.W_OK)


def _container_name(listed: Mapping[str, Any]) -> str:
    """A container's name from the engine's list ("/name"), or its short id."""
    names = [str(n).lstrip("/") for n in listed.get("Names") or []]
    return names[0] if names else str(listed["Id"])[:12]


def _first_line(e: object) -> str:
    text = str(getattr(e, "explanation", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__
