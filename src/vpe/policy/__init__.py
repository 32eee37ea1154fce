"""Routing policy: data-driven match/action on routes, pure.

Imports only :mod:`vpe.bgp.wire` and the standard library. See
``docs/policy.md`` for the model, the TOML/API forms and where policies
run (import: :func:`import_updates`; export: Adj-RIB-Out, after the
standard RFC 4271/4456 rewrites).
"""

from .actions import SELF, Actions, CommunityEdit
from .book import Binding, PolicyBook, PolicyChange
from .errors import PolicyError, PolicyInUse, PolicyNotFound
from .inbound import import_updates
from .match import Match, PrefixRange
from .parse import parse_policy, policy_to_json
from .policy import DEFAULT, Policy, Term, Verdict
from .relabel import Relabeler, RelabelKey, SwapChanges, SwapEntry

__all__ = [
    "DEFAULT",
    "SELF",
    "Actions",
    "Binding",
    "CommunityEdit",
    "Match",
    "Policy",
    "PolicyBook",
    "PolicyChange",
    "PolicyError",
    "PolicyInUse",
    "PolicyNotFound",
    "PrefixRange",
    "RelabelKey",
    "Relabeler",
    "SwapChanges",
    "SwapEntry",
    "Term",
    "Verdict",
    "import_updates",
    "parse_policy",
    "policy_to_json",
]
