"""``vpe lab``: build, inspect and remove namespace topologies.

Exit codes: 0 success, 1 the lab could not be built or removed, 2 bad usage
or an invalid topology; ``exec`` passes the command's own exit code through.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import build, netns
from .topology import TopologyError, check_prefix, load_topology

lab_app = typer.Typer(help="Network-namespace labs from a YAML topology.", no_args_is_help=True)

console = Console()
err = Console(stderr=True)

EXIT_FAILED = 1
EXIT_USAGE = 2

PrefixOpt = typer.Option(None, "--prefix", "-p", help="namespace prefix (env VPE_LAB_PREFIX)")
FileArg = typer.Argument(..., help="topology YAML")
StateOpt = typer.Option(None, "--state-dir", help="lab state dir (default /run/vpe-lab/PREFIX)")


@contextlib.contextmanager
def _working(what: str) -> Iterator[None]:
    """A spinner with the elapsed time while ``what`` runs (seconds: namespaces,
    processes, sessions). On stderr, and gone when done, so stdout stays the
    one-line result; invisible when stderr is not a terminal."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=err, transient=True) as progress:
        progress.add_task(what, total=None)
        yield


def _fail(msg: str, code: int = EXIT_FAILED) -> typer.Exit:
    err.print(f"[red]error:[/red] {msg}", highlight=False, markup=True)
    return typer.Exit(code)


def _checked_prefix(prefix: str) -> str:
    try:
        return check_prefix(prefix)
    except ValueError as e:
        raise _fail(str(e), EXIT_USAGE) from None


def _pick_prefix(prefix: str | None) -> str:
    """--prefix, else $VPE_LAB_PREFIX, else the only lab there is."""
    chosen = prefix or os.environ.get("VPE_LAB_PREFIX")
    if chosen:
        return _checked_prefix(chosen)
    labs = build.known_prefixes()
    if len(labs) == 1:
        return labs[0]
    if not labs:
        raise _fail("no lab found; pass --prefix", EXIT_USAGE)
    raise _fail(f"several labs exist ({', '.join(labs)}); pass --prefix", EXIT_USAGE)


@lab_app.command("up")
def up_cmd(
    file: Path = FileArg,
    prefix: str = PrefixOpt,
    state_dir: Path = StateOpt,
    no_processes: bool = typer.Option(False, "--no-processes", help="wire namespaces only"),
    driver: str | None = typer.Option(
        None, "--driver", help="dataplane driver of every host (userspace, ebpf); default: the file's"
    ),
) -> None:
    """Create (or complete) the lab; running it again changes nothing."""
    try:
        topo = load_topology(file)
        if driver is not None:
            topo = topo.with_driver(driver)
    except TopologyError as e:
        err.print(str(e), highlight=False, markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    except ValueError as e:
        err.print(f"--driver: {e}", highlight=False, markup=False)
        raise typer.Exit(EXIT_USAGE) from None
    chosen = prefix or os.environ.get("VPE_LAB_PREFIX")
    lab = build.make_lab(topo, _checked_prefix(chosen) if chosen else None, state_dir)
    try:
        with _working(f"bringing lab {lab.prefix} up"):
            res = build.up(lab, start_processes=not no_processes)
    except (build.LabError, netns.NetnsError) as e:
        raise _fail(f"{e}\n(the partial lab stays; remove it with `vpe lab down --prefix {lab.prefix}`)") from None
    console.print(
        f"lab [bold]{lab.prefix}[/bold] up: {len(lab.namespaces())} namespaces "
        f"({len(res.created_namespaces)} new, {len(res.removed_namespaces)} removed), "
        f"{len(res.processes)} processes, "
        f"{len(res.attachments)} VMs; state in {lab.state_dir}",
        highlight=False,
        soft_wrap=True,
    )


@lab_app.command("down")
def down_cmd(prefix: str = PrefixOpt, state_dir: Path = StateOpt) -> None:
    """Stop the lab's processes, delete its namespaces and state dir; harmless when already gone."""
    if not (prefix or os.environ.get("VPE_LAB_PREFIX")) and not build.known_prefixes():
        console.print("no lab found: nothing to do")
        return
    p = _pick_prefix(prefix)
    try:
        with _working(f"taking lab {p} down"):
            res = build.down(p, state_dir)
    except (build.LabError, netns.NetnsError) as e:
        raise _fail(str(e)) from None
    console.print(
        f"lab [bold]{p}[/bold] down: {len(res.stopped)} processes stopped, "
        f"{len(res.deleted_namespaces)} namespaces deleted",
        highlight=False,
        soft_wrap=True,
    )
    if res.left_alone:
        err.print(f"left alone (not created by this lab, or replaced since): {', '.join(res.left_alone)}",
                  highlight=False, markup=False)


@lab_app.command("status")
def status_cmd(
    prefix: str = PrefixOpt,
    state_dir: Path = StateOpt,
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Namespaces with their addresses, and the lab's processes."""
    p = _pick_prefix(prefix)
    try:
        st = build.status(p, state_dir)
    except netns.NetnsError as e:
        raise _fail(str(e)) from None
    if as_json:
        print(json.dumps(st, indent=2))
        return
    t = Table("Namespace", "Exists", "Addresses", title=f"lab {p}")
    for ns in st["namespaces"]:
        addrs = "; ".join(f"{k} {' '.join(v)}" for k, v in ns.get("addresses", {}).items() if k != "lo")
        t.add_row(ns["name"], "yes" if ns["exists"] else "[red]no[/red]", addrs or "-")
    console.print(t)
    if st["processes"]:
        pt = Table("Node", "Process", "Pid", "Alive", "Log")
        for pr in st["processes"]:
            pt.add_row(pr["node"], pr["name"], str(pr["pid"]), "yes" if pr["alive"] else "[red]no[/red]", pr["log"])
        console.print(pt)


@lab_app.command(
    "exec",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def exec_cmd(
    ctx: typer.Context,
    node: str = typer.Argument(..., help="VM or host name (or rr, underlay)"),
    prefix: str = PrefixOpt,
) -> None:
    """Run a command in a node's namespace: ``vpe lab exec vm1 -- ping -c1 192.0.2.12``.

    The command's exit code is passed through.
    """
    cmd = list(ctx.args)
    if cmd[:1] == ["--"]:
        cmd = cmd[1:]
    if not cmd:
        raise _fail("no command given: vpe lab exec NODE -- CMD...", EXIT_USAGE)
    p = _pick_prefix(prefix)
    try:
        ns = build.resolve_namespace(p, node)
    except build.LabError as e:
        raise _fail(str(e), EXIT_USAGE) from None
    try:
        rc = subprocess.run(["ip", "netns", "exec", ns, *cmd], check=False).returncode
    except OSError as e:
        raise _fail(f"cannot run ip netns exec: {e.strerror}") from None
    raise typer.Exit(rc)
