"""Schema-driven fuzz of every API endpoint: no input yields a 500.

Schemathesis reads the app's own OpenAPI document (offline, through the
ASGI app) and generates requests for every operation: valid and invalid
bodies, query strings and path parameters. The engine is real (dataplane
none) with a real SQLite store; before each example a VPN instance "blue"
and a port "vm1" exist again, and half of the examples with a ``{name}``
path parameter aim at them, so updates and deletes reach the engine rather
than stopping at 404. Bounded: a fixed number of examples per operation.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vpe.agent.config import parse_config
from vpe.agent.engine import Engine
from vpe.agent.store import Store
from vpe.api.app import create_app
from vpe.vpn.attachments import Attachment

schemathesis = pytest.importorskip("schemathesis")

EXAMPLES = 60

CONFIG = """
state_dir = "{state}"
[bgp]
local_as = 65000
router_id = "198.18.0.1"
[[neighbors]]
address = "127.0.0.54"
remote_as = 65000
passive = true
[[vrfs]]
name = "cfg"
route_targets = ["65000:1"]
"""


def _seed(engine: Engine) -> None:
    if "blue" not in engine.vpn.vrfs:
        engine.ops.create_vpn("blue", {"route_targets": ["65000:2"]})
    if "vm1" not in engine.view.attachments:
        engine.ops.attach(Attachment("vm1", "tap-vm1", "blue", "02:00:00:00:00:01", ("192.0.2.10/24",)))


def _aim(name: str) -> Any:
    def set_name(case: Any) -> Any:
        case.path_parameters = {**(case.path_parameters or {}), "name": name}
        return case

    return set_name


def _plausible_port() -> Any:
    """Port bodies the engine accepts often (random names, valid-looking addresses)."""
    host = st.integers(2, 254)
    v4 = st.builds(lambda h, n: f"192.0.2.{h}/{n}", host, st.sampled_from([24, 32, 25]))
    v6 = st.builds(lambda h, n: f"2001:db8:1::{h:x}/{n}", host, st.sampled_from([64, 128]))
    return st.fixed_dictionaries(
        {
            "name": st.text(min_size=1, max_size=64),
            "ifname": st.text(min_size=1, max_size=15),
            "vpn": st.sampled_from(["blue", "cfg", "green", "bad/name", "x" * 65]),
            "mac": st.just("02:00:00:00:00:02"),
            "ips": st.lists(st.one_of(v4, v6), min_size=1, max_size=4),
        },
        optional={
            "gateways": st.lists(st.sampled_from(["192.0.2.1", "2001:db8:1::1"]), max_size=2),
            "allowed_pairs": st.lists(st.sampled_from(["198.51.100.0/24", "2001:db8:9::/48"]),
                                      max_size=2),
            "advertise": st.sampled_from(["host", "subnet"]),
            # bagpipe-bgp's attach_localport fields
            "direction": st.sampled_from(["both", "to-port", "from-port"]),
            "local_pref": st.one_of(st.none(), st.integers(-1, 2**32)),
            "description": st.text(max_size=300),
            "vpn_type": st.sampled_from(["ipvpn", "evpn", "l2"]),
            "import_rts": st.lists(st.sampled_from(["65000:2", "65000:3", "target:65000:2", "x:y"]),
                                   max_size=2),
            "export_rts": st.lists(st.sampled_from(["65000:2", "65000:4", "1.2.3.4:5"]), max_size=2),
            "vpn_description": st.text(max_size=10),
        },
    )


def _with_body(pair: tuple[Any, dict[str, Any]]) -> Any:
    case, body = pair
    case.body = body
    return case


def _runner(engine: Engine, strategy: Any, label: str, failures: list[str]) -> Any:
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        _seed(engine)
        resp = case.call()
        if resp.status_code >= 500:
            failures.append(f"{label}: {resp.status_code} for {case.path_parameters} "
                            f"{case.query} {case.body!r}: {resp.text[:300]}")
        elif resp.status_code == 422:
            assert "detail" in resp.json(), resp.text

    return run


def test_no_server_errors(tmp_path: Path) -> None:
    engine = Engine(parse_config(CONFIG.format(state=tmp_path)), Store.in_dir(tmp_path))
    app = create_app(engine)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    seen: set[str] = set()
    started = time.process_time()  # CPU time: a loaded machine does not fail it
    for result in schema.get_all_operations():
        op = result.ok()
        label = f"{op.method.upper()} {op.path}"
        seen.add(label)
        strategy = op.as_strategy()
        if "{name}" in op.path:
            target = "vm1" if op.path.startswith("/v1/ports") else "blue"
            strategy = st.one_of(strategy, strategy.map(_aim(target)))

        if label == "POST /v1/ports":
            strategy = st.one_of(strategy, st.tuples(strategy, _plausible_port()).map(_with_body))
        _runner(engine, strategy, label, failures)()
    assert not failures, "\n".join(failures[:20])
    expected = {
        "GET /v1/bgp/neighbors", "GET /v1/bgp/neighbors/{address}", "GET /v1/bgp/routes",
        "GET /v1/vpns", "POST /v1/vpns", "GET /v1/vpns/{name}", "PATCH /v1/vpns/{name}",
        "DELETE /v1/vpns/{name}", "GET /v1/ports", "POST /v1/ports", "GET /v1/ports/{name}",
        "DELETE /v1/ports/{name}", "GET /v1/fib", "GET /v1/counters", "GET /v1/restart", "GET /metrics",
    }
    assert expected <= seen, expected - seen
    assert time.process_time() - started < 30
    # the store still matches the engine after all of it
    assert engine.store is not None
    assert set(engine.store.ports()) == set(engine.view.attachments)
    api_vpns = set(engine.vpn.vrfs) - {"cfg"}
    assert set(engine.store.vpns()) == api_vpns
