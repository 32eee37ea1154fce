"""Where an agent keeps its state when its configuration does not say (``state_dir`` unset).

Each configuration gets a directory of its own under ``/var/lib/vpe``:
``<router id>-<h>``, ``h`` the first 8 hex digits of the SHA-256 of the
configuration file's real path (``/var/lib/vpe/198.18.0.11-3f2a9c1e``).
Two configuration files never share state by accident (another file is
another directory, even with the same router id), and the store inside
still refuses an agent of another AS or router id (:meth:`Store.claim`).

A changed key is refused rather than silently started afresh: when this
configuration's directory does not exist yet but another one of the same
router id holds a state database (the file was moved or copied, or a
second configuration reuses the router id), the agent does not start and
the message names both directories and what to do. A ``vpe.db`` directly in
``/var/lib/vpe`` (the default of older versions) keeps being used, with a
warning.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
from pathlib import Path

from .config import AgentConfig, ConfigError

log = logging.getLogger("vpe.agent")

#: the parent of the keyed state directories
STATE_ROOT = "/var/lib/vpe"


def state_key(router_id: str, config_path: str) -> str:
    """``<router id>-<8 hex digits of sha256(real path of the configuration)>``."""
    real = os.path.realpath(config_path)
    return f"{router_id}-{hashlib.sha256(real.encode()).hexdigest()[:8]}"


def _owner_config(db: Path) -> str | None:
    """The configuration file recorded in another state database (read-only; None: unknown)."""
    with contextlib.suppress(sqlite3.Error, ValueError, TypeError):
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0)
        try:
            row = con.execute("SELECT value FROM meta WHERE key = 'owner'").fetchone()
        finally:
            con.close()
        if row:
            return str(json.loads(row[0]).get("config"))
    return None


def resolve_state_dir(cfg: AgentConfig, config_path: str, root: str = STATE_ROOT) -> AgentConfig:
    """``cfg`` with its ``state_dir``: as configured, or the keyed directory under ``root``.

    ConfigError: the keyed directory is new but the router id's state is in another one."""
    if "state_dir" in cfg.model_fields_set:
        return cfg
    base = Path(root)
    if (base / "vpe.db").exists():
        log.warning("state in %s (the default of older vpe versions); to give this configuration a "
                    "directory of its own, stop the agent and move it to %s", base,
                    base / state_key(cfg.bgp.router_id, config_path))
        return cfg.model_copy(update={"state_dir": str(base)})
    key = state_key(cfg.bgp.router_id, config_path)
    mine = base / key
    if not mine.exists() and base.is_dir():
        others = sorted(p for p in base.glob(f"{cfg.bgp.router_id}-*")
                        if p.name != key and p.is_dir() and (p / "vpe.db").exists())
        if others:
            other = others[0]
            owner = _owner_config(other / "vpe.db")
            whose = f" (configuration {owner})" if owner else ""
            raise ConfigError(
                f"{config_path}: state_dir: not set, so this configuration's state would start empty in "
                f"{mine}, but the state of router id {cfg.bgp.router_id} is in {other}{whose}; refusing to "
                f"start afresh. If this is that router with its configuration moved, set state_dir = "
                f"\"{other}\"; if it is another router, give it a router id of its own (or remove {other})")
    return cfg.model_copy(update={"state_dir": str(mine)})
