"""What every step works with, opened once per task: the config, the work
dir's layout (which carries the task's --dry-run), the engine (which labels
its containers with the task's work dir), the hash cache, the tools image
(asked for only by the steps that run in it) and the task's memos. Every
per-task fact lives here, none in a module's globals."""
from __future__ import annotations

import dataclasses
import functools
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Optional, TypeVar

from ..store.hashes import HashCache, hashes_of
from ..store.layout import Layout
from ..base.config import Config
from ..base.engine import Engine
from ..store.records import ToolsImage
from ..services.tools_image import ensure_tools

T = TypeVar("T")


class Memo:
    """What one task computes once and its steps share (a gem5 source's identity):
    shared by the task's contexts, its worker threads' too."""

    def __init__(self) -> None:
        self._values: dict[Hashable, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._values:
                return self._values[key]  # type: ignore[no-any-return]
        value = make()  # outside the lock: it may take seconds (and a second maker's result is the same)
        with self._lock:
            return self._values.setdefault(key, value)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class StepContext:
    cfg: Config
    layout: Layout
    given_engine: Optional[Engine] = None
    memo: Memo = field(default_factory=Memo, compare=False)

    @classmethod
    def open(cls, cfg: Config, engine: Optional[Engine] = None, dry_run: bool = False) -> "StepContext":
        return cls(cfg, Layout(cfg.work_dir, dry_run=dry_run), engine)

    @functools.cached_property
    def hashes(self) -> HashCache:
        """Opened on first use: refusing bad input creates nothing, not even the work dir."""
        return hashes_of(self.layout)

    @functools.cached_property
    def engine(self) -> Engine:
        """Connected on first use, so that bad input is refused before the engine is asked."""
        return self.given_engine or Engine.connect(self.cfg.work_dir)

    @functools.cached_property
    def tools(self) -> ToolsImage:
        """The tools image for this config's base, built if missing (once per context)."""
        return ensure_tools(self.cfg, self.engine, self.layout)

    def with_config(self, cfg: Config) -> "StepContext":
        """The same engine for another config (another name, CPU, ...); the same hash
        cache when the work dir is the same."""
        if cfg.work_dir == self.cfg.work_dir:
            return dataclasses.replace(self, cfg=cfg, given_engine=self.engine)
        return StepContext.open(cfg, Engine.connect(cfg.work_dir), self.layout.dry_run)

    def for_thread(self) -> "StepContext":
        """A context for a worker thread: its own engine connection and hash-cache
        connection (neither is shared across threads)."""
        return StepContext(self.cfg, self.layout, Engine.connect(self.cfg.work_dir), self.memo)
