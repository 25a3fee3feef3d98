"""Typed errors. Library code raises these; only the edge (tasks.py / cli.py)
turns one into a one-line message and an exit code."""
from __future__ import annotations


class HackbackError(Exception):
    """Base class: a message that says what is wrong and a hint that says how to fix it."""

    exit_code: int = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        text = f"hackback: error: {self.message}"
        if self.hint:
            text += f" ({self.hint})"
        return " ".join(text.split())


class ConfigError(HackbackError):
    """A config value, layer or file is wrong (an unknown key, a bad value, an unreadable file)."""

    exit_code = 2


class UsageError(HackbackError):
    """Bad task input (a missing file, an empty script, a wrong flag value)."""

    exit_code = 2


class DownloadError(UsageError):
    """A download failed or did not match its sha256 (a rerun resumes it)."""

    exit_code = 12


class DockerUnavailable(HackbackError):
    """No Docker engine answers (start dockerd: scripts/setup-host.sh)."""

    exit_code = 4


class DockerFailure(HackbackError):
    """The engine refused or failed an action (build, import, create)."""

    exit_code = 5


class ContainerFailed(HackbackError):
    """A step's command ran in its container and exited non-zero."""

    exit_code = 6

    def __init__(self, message: str, hint: str = "", exit_status: int = 1, log_tail: str = "") -> None:
        super().__init__(message, hint)
        self.exit_status = exit_status
        self.log_tail = log_tail


class HostCommandFailed(HackbackError):
    """A command hackback runs on the host itself (debootstrap, tar) failed."""

    exit_code = 19


class StepStalled(ContainerFailed):
    """A step's watchdog saw no progress (a hung guest) and stopped it."""

    exit_code = 11


class Gem5SourceError(HackbackError):
    """gem5's source cannot be had: no clone, not a gem5 tree, no release in it."""

    exit_code = 7


class DiskSpaceError(HackbackError):
    """Too little free space for a step, or the disk filled up during one (nothing partial is left)."""

    exit_code = 8


class ArtifactError(HackbackError):
    """A manifest is missing, corrupt, or does not match what it is used with."""

    exit_code = 9


class LockBusy(HackbackError):
    """Another hackback is building this artifact (and the step was told not to wait)."""

    exit_code = 10


class Gem5RunFailed(HackbackError):
    """A gem5 run ended some other way than expected (no checkpoint, no m5 exit)."""

    exit_code = 13

    def __init__(self, message: str, hint: str = "", result: object = None) -> None:
        super().__init__(message, hint)
        self.result = result  # the run script's result (records.Gem5Result), when it wrote one


class ResultsLost(HackbackError):
    """The script left results in the guest's /root/results and they did not come back whole."""

    exit_code = 16


class BenchmarkFailed(HackbackError):
    """A benchmark did not build, or its native run did not verify: nothing is kept as built."""

    exit_code = 17


class VerificationFailed(HackbackError):
    """A benchmark ran in gem5 and its own verdict (or its region of interest) failed: the run is kept."""

    exit_code = 18

    def __init__(self, message: str, hint: str = "", result: object = None) -> None:
        super().__init__(message, hint)
        self.result = result


class MismatchError(HackbackError):
    """A restore's inputs do not match the checkpoint (kernel, image, gem5)."""

    exit_code = 14


class ScriptFailed(HackbackError):
    """The guest script ran and exited non-zero: the restore exits with its status."""

    def __init__(self, message: str, hint: str = "", exit_status: int = 1, result: object = None) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_status if 0 < exit_status < 126 else 1
        self.result = result


class ClusterError(HackbackError):
    """Slurm refused or failed something hackback asked of it (sbatch, squeue)."""

    exit_code = 15


class TaskFailed(ClusterError):
    """A task of a Slurm array failed; its exit status is the one the local restore would have had."""

    def __init__(self, message: str, hint: str, exit_code: int = 1) -> None:
        super().__init__(message, hint)
        self.exit_code = exit_code
