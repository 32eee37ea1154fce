"""Dataplane drivers by name: ``[dataplane] driver = "..."`` and ``--driver NAME``.

An entry names the module and factory that build the driver, as a string
(``"package.module:function"``), imported only when that driver is built:
importing this registry (the agent's config validation does) never imports
the userspace stack, nor a kernel driver's loader. A new driver is one
:func:`register` call (in :data:`BUILTIN` for one shipped with vpe); the
agent, the API and the FIB resolver do not change: they speak the FIB
channel, whatever the driver behind it.

"none" is the entry without a factory: no forwarder at all (a route
reflector or a controller that programs nothing locally).

A factory is called as ``factory(options, selector)`` with the
:class:`DriverOptions` of the forwarder process and the selector its loop
runs; it may register its own file objects there (callbacks are called as
``data(fileobj)``) and returns a :class:`HostedDriver`.
"""

from __future__ import annotations

import importlib
import selectors
from dataclasses import dataclass
from typing import Protocol

from .driver import Driver, IPAddress

#: the driver name meaning "no forwarder"
NONE = "none"


@dataclass(frozen=True, slots=True)
class DriverOptions:
    """What the forwarder process knows when it builds its driver (its command line)."""

    underlay_if: str
    underlay_ips: tuple[IPAddress, ...]
    #: None: the driver reads the underlay interface's MTU
    underlay_mtu: int | None = None


class HostedDriver(Driver, Protocol):
    """A driver running inside the forwarder process: it also releases what it holds."""

    def close(self) -> None: ...


class DriverFactory(Protocol):
    def __call__(
        self, options: DriverOptions, selector: selectors.BaseSelector
    ) -> HostedDriver: ...


class UnknownDriver(ValueError):
    """No driver of that name is registered; the message lists the known ones."""


@dataclass(frozen=True, slots=True)
class DriverEntry:
    """One registered driver: its name, where its factory lives, one line about it."""

    name: str
    #: ``"module:attribute"`` of the factory; None for "none" (no forwarder)
    factory: str | None
    description: str = ""

    @property
    def has_forwarder(self) -> bool:
        """True when this driver runs a forwarder the agent programs over the FIB channel."""
        return self.factory is not None

    def load(self) -> DriverFactory:
        """Import the driver's module and return its factory (the only import it does)."""
        if self.factory is None:
            raise UnknownDriver(f"driver {self.name!r} has no forwarder to build")
        module, _, attr = self.factory.partition(":")
        factory: DriverFactory = getattr(importlib.import_module(module), attr)
        return factory


_entries: dict[str, DriverEntry] = {}


def register(
    name: str, factory: str | None, description: str = "", *, replace: bool = False
) -> DriverEntry:
    """Make driver ``name`` choosable; ``factory`` is ``"module:attribute"`` (imported lazily)."""
    if not name or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"driver name {name!r}: letters, digits, '-' and '_' only")
    if factory is not None and (":" not in factory or factory.startswith(":")):
        raise ValueError(f"driver {name!r}: factory {factory!r} is not 'module:attribute'")
    if name in _entries and not replace:
        raise ValueError(f"driver {name!r} is already registered ({_entries[name].factory})")
    entry = DriverEntry(name, factory, description)
    _entries[name] = entry
    return entry


def unregister(name: str) -> None:
    """Forget driver ``name`` (tests register throw-away drivers)."""
    _entries.pop(name, None)


def names() -> tuple[str, ...]:
    """The registered driver names, sorted."""
    return tuple(sorted(_entries))


def get(name: str) -> DriverEntry:
    """The entry of driver ``name``; :class:`UnknownDriver` names the known ones."""
    entry = _entries.get(name)
    if entry is None:
        raise UnknownDriver(f"unknown dataplane driver {name!r} (known: {', '.join(names())})")
    return entry


#: the drivers shipped with vpe: (name, factory, description)
BUILTIN: tuple[tuple[str, str | None, str], ...] = (
    (NONE, None, "no forwarder: a route reflector or controller"),
    (
        "userspace",
        "vpe.dataplane.userspace.process:create_driver",
        "AF_PACKET ports and the packet pipeline in Python (portable, the reference)",
    ),
    (
        "ebpf",
        "vpe.dataplane.ebpf.driver:create_driver",
        "tc/eBPF programs in the kernel, the userspace pipeline for what they punt",
    ),
)

for _name, _factory, _description in BUILTIN:
    register(_name, _factory, _description)
