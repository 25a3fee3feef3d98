"""What every step works with, opened once per task: the config, the engine,
the work dir's layout and its hash cache, and the tools image (asked for only
by the steps that run in it)."""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Optional

from .artifacts import HashCache, Layout, hashes_of
from .config import Config
from .engine import Engine
from .records import ToolsImage
from .tools_image import ensure_tools


@dataclass(frozen=True)
class StepContext:
    cfg: Config
    layout: Layout
    given_engine: Optional[Engine] = None

    @classmethod
    def open(cls, cfg: Config, engine: Optional[Engine] = None) -> "StepContext":
        return cls(cfg, Layout(cfg.work_dir), engine)

    @functools.cached_property
    def hashes(self) -> HashCache:
        """Opened on first use: refusing bad input creates nothing, not even the work dir."""
        return hashes_of(self.layout)

    @functools.cached_property
    def engine(self) -> Engine:
        """Connected on first use, so that bad input is refused before the engine is asked."""
        return self.given_engine or Engine.connect()

    @functools.cached_property
    def tools(self) -> ToolsImage:
        """The tools image for this config's base, built if missing (once per context)."""
        return ensure_tools(self.cfg, self.engine, self.layout)

    def with_config(self, cfg: Config) -> "StepContext":
        """The same engine for another config (another name, CPU, ...); the same hash
        cache when the work dir is the same."""
        if cfg.work_dir == self.cfg.work_dir:
            return dataclasses.replace(self, cfg=cfg, given_engine=self.engine)
        return StepContext.open(cfg, self.engine)

    def for_thread(self) -> "StepContext":
        """A context for a worker thread: its own engine connection and hash-cache
        connection (neither is shared across threads)."""
        return StepContext(self.cfg, self.layout, Engine.connect())
