"""Policies from plain data (TOML tables, JSON bodies) and back.

The accepted shape (TOML shown; JSON is the same tree)::

    [[policies]]
    name = "to-core"
    default = "accept"                 # or "reject": when no term matches
      [[policies.terms]]
      name = "no-lab"                  # optional
      match = { family = "vpnv4", prefix = "192.0.2.0/24 le 32" }
      action = "reject"                # default "accept"
      [[policies.terms]]
      match = { route_targets = ["target:65000:1"], as_path = "^65001( |$)" }
      set = { local_pref = 250, communities = { add = ["65000:7"] } }
      relabel = false

Every error is a :class:`~vpe.policy.errors.PolicyError` naming the field
path from the ``where`` given by the caller and the value, e.g.
``policies[0].terms[1].match.prefix: '10.0.0.0/33' is not a prefix``.
:func:`policy_to_json` gives the canonical form back (what the API shows
and the store keeps); parsing it yields an equal :class:`Policy`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from ipaddress import ip_address, ip_network
from typing import Any, TypeVar

from ..bgp.wire.attributes.communities import community_str, parse_community
from ..bgp.wire.attributes.extended_communities import (
    ExtendedCommunity,
    RouteTarget,
    parse_ext_community,
)
from ..bgp.wire.attributes.large_community import large_community_str, parse_large_community
from ..bgp.wire.constants import FAMILY_BY_NAME, FAMILY_SHORT_NAMES, family_from_name
from ..bgp.wire.nlri.rd import RouteDistinguisher
from .actions import SELF, UNCHANGED, Actions, CommunityEdit
from .errors import PolicyError
from .match import IPNetwork, Match, PrefixRange
from .policy import Policy, Term

T = TypeVar("T")

#: the name rule of every vpe name (docs/api.md, Names): 1-64 of A-Z a-z 0-9 _ . -, a letter or digit first
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_U32 = 0xFFFFFFFF

_POLICY_KEYS = ("name", "terms", "default")
_TERM_KEYS = ("name", "match", "action", "set", "relabel")
_MATCH_KEYS = (
    "family",
    "prefix",
    "rd",
    "route_targets",
    "communities",
    "ext_communities",
    "large_communities",
    "as_path",
    "as_path_contains",
    "as_path_length",
    "next_hop",
)
_SET_KEYS = (
    "next_hop",
    "local_pref",
    "med",
    "communities",
    "ext_communities",
    "large_communities",
    "route_targets",
    "as_path_prepend",
)
_EDIT_KEYS = ("add", "remove", "replace")


def check_name(value: Any, where: str) -> str:
    """A policy name: 1 to 64 of letters, digits, ``_ . -``."""
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise PolicyError(where, value, "is not a policy name (1-64 of A-Z a-z 0-9 _ . -, a letter or digit first)")
    return value


def parse_policy(data: Any, where: str = "policy", name: str | None = None) -> Policy:
    """A :class:`Policy` from its plain-data form; ``name`` (when given) overrides/supplies ``name``."""
    d = _table(data, where, _POLICY_KEYS)
    if name is None:
        if "name" not in d:
            raise PolicyError(f"{where}.name", None, "is missing: every policy needs a name")
        name = d["name"]
    pname = check_name(name, f"{where}.name")
    default = _verdict(d.get("default", "accept"), f"{where}.default")
    terms_raw = d.get("terms", [])
    if not isinstance(terms_raw, list):
        raise PolicyError(f"{where}.terms", terms_raw, "is not a list of terms")
    terms = tuple(_term(t, f"{where}.terms[{i}]", i) for i, t in enumerate(terms_raw))
    seen: set[str] = set()
    for i, t in enumerate(terms):
        if t.name in seen:
            raise PolicyError(f"{where}.terms[{i}].name", t.name, "names two terms of this policy")
        seen.add(t.name)
    return Policy(pname, terms, default)


def _table(data: Any, where: str, keys: tuple[str, ...]) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise PolicyError(where, data, "is not a table")
    for k in data:
        if k not in keys:
            raise PolicyError(f"{where}.{k}", data[k], f"is not a known key (known: {', '.join(keys)})")
    return data


def _verdict(value: Any, where: str) -> bool:
    if value not in ("accept", "reject"):
        raise PolicyError(where, value, "is not 'accept' or 'reject'")
    return bool(value == "accept")


def _term(data: Any, where: str, index: int) -> Term:
    d = _table(data, where, _TERM_KEYS)
    name = d.get("name", f"term-{index}")
    if not isinstance(name, str) or not name:
        raise PolicyError(f"{where}.name", name, "is not a term name")
    match = _match(d.get("match", {}), f"{where}.match")
    accept = _verdict(d.get("action", "accept"), f"{where}.action")
    relabel = d.get("relabel", False)
    if not isinstance(relabel, bool):
        raise PolicyError(f"{where}.relabel", relabel, "is not true or false")
    actions = _set(d.get("set", {}), f"{where}.set", accept, relabel)
    if not accept and (actions.rewrites or relabel):
        raise PolicyError(f"{where}.action", "reject", "cannot be combined with 'set' or 'relabel'")
    return Term(name, match, actions)


def _list(value: Any, where: str, one: Callable[[Any, str], T]) -> tuple[T, ...]:
    """A value or a list of values; errors name ``where`` or ``where[i]``."""
    if isinstance(value, list):
        return tuple(one(v, f"{where}[{i}]") for i, v in enumerate(value))
    return (one(value, where),)


def _text(value: Any, where: str, parse: Callable[[str], T], what: str) -> T:
    if not isinstance(value, str):
        raise PolicyError(where, value, f"is not {what}")
    try:
        return parse(value)
    except ValueError:
        raise PolicyError(where, value, f"is not {what}") from None


def _u32(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _U32:
        raise PolicyError(where, value, f"is not an integer in 0..{_U32}")
    return value


def _family(v: Any, w: str) -> Any:
    """A family by its full or short name (``vpnv4``, ``ipv4``, ``ipv4-lu``, ``rtc``...)."""
    known = sorted(set(FAMILY_BY_NAME) | set(FAMILY_SHORT_NAMES))
    if not isinstance(v, str):
        raise PolicyError(w, v, f"is not a family (known: {', '.join(known)})")
    try:
        return family_from_name(v)
    except ValueError:
        raise PolicyError(w, v, f"is not a family (known: {', '.join(known)})") from None


def _prefix(v: Any, w: str) -> PrefixRange:
    if not isinstance(v, str):
        raise PolicyError(w, v, "is not a prefix")
    try:
        return PrefixRange.parse(v)
    except ValueError as e:
        raise PolicyError(w, v, str(e)) from None


def _rd(v: Any, w: str) -> RouteDistinguisher:
    return _text(v, w, RouteDistinguisher.from_str, "a route distinguisher")


def _rt(v: Any, w: str) -> RouteTarget:
    return _text(v, w, RouteTarget.from_str, "a route target (target:ASN:N, target:IPv4:N)")


def _community(v: Any, w: str) -> int:
    return _text(v, w, parse_community, "a community (ASN:VALUE or a well-known name)")


def _ext(v: Any, w: str) -> ExtendedCommunity:
    return _text(v, w, parse_ext_community, "an extended community (e.g. target:65000:1, origin:65000:2)")


def _large(v: Any, w: str) -> tuple[int, int, int]:
    return _text(v, w, parse_large_community, "a large community (GLOBAL:LOCAL1:LOCAL2)")


def _asn(v: Any, w: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _U32:
        raise PolicyError(w, v, "is not an AS number")
    return v


def _next_hop_net(v: Any, w: str) -> IPNetwork:
    if not isinstance(v, str):
        raise PolicyError(w, v, "is not an address or prefix")
    try:
        return ip_network(v, strict=True)
    except ValueError:
        raise PolicyError(w, v, "is not an address or prefix") from None


def _regex(v: Any, w: str) -> str:
    if not isinstance(v, str):
        raise PolicyError(w, v, "is not a regular expression")
    try:
        re.compile(v)
    except re.error as e:
        raise PolicyError(w, v, f"is not a regular expression ({e})") from None
    return v


def _match(data: Any, where: str) -> Match:
    d = _table(data, where, _MATCH_KEYS)
    length = None
    if "as_path_length" in d:
        w = f"{where}.as_path_length"
        lt = _table(d["as_path_length"], w, ("ge", "le"))
        ge = _u32(lt.get("ge", 0), f"{w}.ge")
        le = _u32(lt.get("le", 255), f"{w}.le")
        if ge > le:
            raise PolicyError(w, dict(lt), "needs ge <= le")
        length = (ge, le)
    g = d.get
    return Match(
        families=frozenset(_list(g("family"), f"{where}.family", _family)) if "family" in d else frozenset(),
        prefixes=_list(g("prefix"), f"{where}.prefix", _prefix) if "prefix" in d else (),
        rds=_list(g("rd"), f"{where}.rd", _rd) if "rd" in d else (),
        route_targets=_list(g("route_targets"), f"{where}.route_targets", _rt) if "route_targets" in d else (),
        communities=_list(g("communities"), f"{where}.communities", _community) if "communities" in d else (),
        ext_communities=_list(g("ext_communities"), f"{where}.ext_communities", _ext)
        if "ext_communities" in d
        else (),
        large_communities=_list(g("large_communities"), f"{where}.large_communities", _large)
        if "large_communities" in d
        else (),
        as_path=_regex(g("as_path"), f"{where}.as_path") if "as_path" in d else None,
        as_path_contains=_list(g("as_path_contains"), f"{where}.as_path_contains", _asn)
        if "as_path_contains" in d
        else (),
        as_path_length=length,
        next_hops=_list(g("next_hop"), f"{where}.next_hop", _next_hop_net) if "next_hop" in d else (),
    )


def _edit(data: Any, where: str, one: Callable[[Any, str], T]) -> CommunityEdit[T]:
    d = _table(data, where, _EDIT_KEYS)

    def values(k: str) -> tuple[T, ...]:
        v = d[k]
        if not isinstance(v, list):
            raise PolicyError(f"{where}.{k}", v, "is not a list")
        return tuple(one(x, f"{where}.{k}[{i}]") for i, x in enumerate(v))

    return CommunityEdit(
        add=values("add") if "add" in d else (),
        remove=values("remove") if "remove" in d else (),
        replace=values("replace") if "replace" in d else None,
    )


def _set(data: Any, where: str, accept: bool, relabel: bool) -> Actions:
    d = _table(data, where, _SET_KEYS)
    nh: Any = None
    if "next_hop" in d:
        v = d["next_hop"]
        if v in (SELF, UNCHANGED):
            nh = v
        else:
            try:
                nh = ip_address(v) if isinstance(v, str) else None
            except ValueError:
                nh = None
            if nh is None:
                raise PolicyError(f"{where}.next_hop", v, "is not 'self', 'unchanged' or an IP address")
    return Actions(
        accept=accept,
        set_next_hop=nh,
        local_pref=_u32(d["local_pref"], f"{where}.local_pref") if "local_pref" in d else None,
        med=_u32(d["med"], f"{where}.med") if "med" in d else None,
        communities=_edit(d["communities"], f"{where}.communities", _community) if "communities" in d else None,
        ext_communities=_edit(d["ext_communities"], f"{where}.ext_communities", _ext)
        if "ext_communities" in d
        else None,
        large_communities=_edit(d["large_communities"], f"{where}.large_communities", _large)
        if "large_communities" in d
        else None,
        route_targets=_edit(d["route_targets"], f"{where}.route_targets", _rt) if "route_targets" in d else None,
        relabel=relabel,
        as_path_prepend=_prepend(d["as_path_prepend"], f"{where}.as_path_prepend")
        if "as_path_prepend" in d
        else (),
    )


def _prepend(value: Any, where: str) -> tuple[int, ...]:
    """``as_path_prepend``: a list of 1 to 16 ASNs (1..4294967295), put in front in that order."""
    if not isinstance(value, list) or not 1 <= len(value) <= 16:
        raise PolicyError(where, value, "is not a list of 1 to 16 AS numbers")
    out = []
    for i, v in enumerate(value):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= _U32:
            raise PolicyError(f"{where}[{i}]", v, f"is not an AS number in 1..{_U32}")
        out.append(v)
    return tuple(out)


# -- back to plain data ---------------------------------------------------------------


def _edit_json(e: CommunityEdit[Any], fmt: Callable[[Any], str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    if e.replace is not None:
        out["replace"] = [fmt(v) for v in e.replace]
    if e.remove:
        out["remove"] = [fmt(v) for v in e.remove]
    if e.add:
        out["add"] = [fmt(v) for v in e.add]
    return out


def _net_text(n: IPNetwork) -> str:
    return str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n)


def match_to_json(m: Match) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if m.families:
        out["family"] = sorted(f.name for f in m.families)
    if m.prefixes:
        out["prefix"] = [str(p) for p in m.prefixes]
    if m.rds:
        out["rd"] = [str(r) for r in m.rds]
    if m.route_targets:
        out["route_targets"] = [str(r) for r in m.route_targets]
    if m.communities:
        out["communities"] = [community_str(c) for c in m.communities]
    if m.ext_communities:
        out["ext_communities"] = [str(c) for c in m.ext_communities]
    if m.large_communities:
        out["large_communities"] = [large_community_str(c) for c in m.large_communities]
    if m.as_path is not None:
        out["as_path"] = m.as_path
    if m.as_path_contains:
        out["as_path_contains"] = list(m.as_path_contains)
    if m.as_path_length is not None:
        out["as_path_length"] = {"ge": m.as_path_length[0], "le": m.as_path_length[1]}
    if m.next_hops:
        out["next_hop"] = [_net_text(n) for n in m.next_hops]
    return out


def actions_to_json(a: Actions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if a.set_next_hop is not None:
        out["next_hop"] = str(a.set_next_hop)
    if a.local_pref is not None:
        out["local_pref"] = a.local_pref
    if a.med is not None:
        out["med"] = a.med
    if a.communities is not None:
        out["communities"] = _edit_json(a.communities, community_str)
    if a.ext_communities is not None:
        out["ext_communities"] = _edit_json(a.ext_communities, str)
    if a.large_communities is not None:
        out["large_communities"] = _edit_json(a.large_communities, large_community_str)
    if a.route_targets is not None:
        out["route_targets"] = _edit_json(a.route_targets, str)
    if a.as_path_prepend:
        out["as_path_prepend"] = list(a.as_path_prepend)
    return out


def policy_to_json(p: Policy) -> dict[str, Any]:
    """The canonical plain-data form (lists everywhere, text forms of values)."""
    terms: list[dict[str, Any]] = []
    for t in p.terms:
        d: dict[str, Any] = {"name": t.name}
        m = match_to_json(t.match)
        if m:
            d["match"] = m
        d["action"] = "accept" if t.actions.accept else "reject"
        s = actions_to_json(t.actions)
        if s:
            d["set"] = s
        if t.actions.relabel:
            d["relabel"] = True
        terms.append(d)
    return {"name": p.name, "default": "accept" if p.default_accept else "reject", "terms": terms}
