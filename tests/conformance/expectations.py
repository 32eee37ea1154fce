"""Per capture: which ``.out`` files describe it, the session options, and the right outcome.

Every outcome written here is a judgement from the RFCs, not a recording of
what the codec happens to do; ``why`` names the section. A capture's
``rules`` are tried in order against tcpdump's view of each message (the
first match wins), then ``default`` applies.

Outcome kinds:

* ``ok`` - decodes; for an UPDATE ``action`` is NONE; fields equal tcpdump's.
* ``action`` - an UPDATE comes back with ``action`` set (RFC 7606).
* ``notification`` - decoding raises ``BGPError`` with this code/subcode
  (``reason_has``, when given, must occur in the error's reason).
* ``truncated`` - the capture cut the message (snaplen, end of frame); it is
  not decoded, only its header is checked where present.
* ``robust`` - fuzzed input: any of ok / action / notification is accepted,
  any other exception fails. Used only for the fuzzed captures (see FUZZED).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from vpe.bgp.wire.constants import ErrorCode, OpenSubcode, UpdateSubcode
from vpe.bgp.wire.errors import UpdateAction

from .tcpdump_out import ExpectedMessage


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: str  # ok | action | notification | truncated | robust
    why: str
    action: UpdateAction | None = None
    code: int | None = None
    subcode: int | None = None
    reason_has: str | None = None


OK = Outcome("ok", "well-formed message")
TRUNCATED = Outcome("truncated", "the frame ends inside this message; the rest was never captured")
ROBUST = Outcome(
    "robust",
    "fuzzed capture: the decoder must end in BGPError or an Update (RFC 7606 section 2: "
    "never a crash); the exact action depends on which corruption is seen first",
)

Rule = tuple[Callable[[ExpectedMessage], bool], Outcome]


@dataclass(frozen=True, slots=True)
class CaptureExpect:
    capture: str
    outs: tuple[str, ...]
    default: Outcome = OK
    rules: tuple[Rule, ...] = ()
    #: None: from the OPENs in the capture (both sides advertise capability 65)
    asn4: bool | None = None
    #: families (afi, safi) decoded with ADD-PATH when the capture has no OPEN
    addpath: frozenset[tuple[int, int]] = frozenset()
    #: (frame, index) -> routes tcpdump could not print (it knows one label only)
    route_overrides: dict[tuple[int, int], list[str]] = field(default_factory=dict)
    note: str = ""

    def outcome(self, msg: ExpectedMessage) -> Outcome:
        if msg.partial:
            return TRUNCATED
        for pred, out in self.rules:
            if pred(msg):
                return out
        return self.default


# -- reusable outcomes ----------------------------------------------------------

UNSUPPORTED_FAMILY = Outcome(
    "notification",
    "MP_REACH_NLRI of a family vpe neither implements nor negotiates (L2VPN EVPN): the peer "
    "sent an AFI/SAFI it was not offered (RFC 4760 section 6); the codec cannot find where the "
    "NLRI end, so RFC 7606 section 7.11 wants session reset (or AFI/SAFI disable)",
    code=ErrorCode.UPDATE_MESSAGE,
    subcode=UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR,
    reason_has="does not support",
)
MISSING_AS_PATH = Outcome(
    "action",
    "BGPsec_Path (RFC 8205) replaces AS_PATH only between BGPsec speakers; vpe does not "
    "negotiate BGPsec, drops the unknown optional non-transitive attribute 33 and then misses "
    "the well-known AS_PATH: treat-as-withdraw (RFC 7606 section 3 d)",
    action=UpdateAction.TREAT_AS_WITHDRAW,
)
BAD_MP_FLAGS = Outcome(
    "notification",
    "MP_REACH_NLRI carries flags 0x40 (transitive, not optional): Attribute Flags Error "
    "(RFC 4271 section 6.3); RFC 7606 section 3 c defers to the attribute, and an MP "
    "attribute that cannot be trusted means session reset (RFC 7606 sections 3 j, 5.3). "
    "The same UPDATE also repeats MP_REACH/MP_UNREACH (section 3 g, session reset too); "
    "the flags are met first",
    code=ErrorCode.UPDATE_MESSAGE,
    subcode=UpdateSubcode.ATTRIBUTE_FLAGS_ERROR,
)
BAD_VERSION = Outcome(
    "notification",
    "OPEN version 255: Unsupported Version Number (RFC 4271 section 6.2)",
    code=ErrorCode.OPEN_MESSAGE,
    subcode=OpenSubcode.UNSUPPORTED_VERSION,
)


def _has_attr(code: int) -> Callable[[ExpectedMessage], bool]:
    return lambda m: m.msg_type == 2 and code in m.attrs


FUZZED = frozenset({"bgp-as-path-oobr.pcap", "bgp-ub.pcap"})

CAPTURES: dict[str, CaptureExpect] = {
    e.capture: e
    for e in (
        CaptureExpect(
            "bgp-4byte-asn.pcap",
            ("bgp-4byte-asn.out", "bgp-4byte-asdot.out"),
            note="sessions with and without 4-octet AS; AS4_PATH merged per RFC 6793 section 4.2.3",
        ),
        CaptureExpect(
            "bgp-addpath.pcap",
            ("bgp-addpath.out",),
            default=BAD_MP_FLAGS,
            asn4=False,
            addpath=frozenset({(1, 1), (2, 1)}),
            note="no OPEN; tcpdump shows Path Id for IPv4 and IPv6 unicast; AS_PATH octets are 2-octet ASNs",
        ),
        CaptureExpect(
            "bgp-aigp-2.pcap",
            ("bgp-aigp-2.out",),
            asn4=False,
            note="AIGP (26) is unknown to vpe: optional non-transitive, dropped (RFC 4271 section 9)",
        ),
        CaptureExpect("bgp-aigp.pcap", ("bgp-aigp.out",), asn4=True),
        CaptureExpect(
            "bgp-as-path-oobr.pcap",
            ("bgp-as-path-oobr-nossl.out", "bgp-as-path-oobr-ssl.out"),
            default=ROBUST,
            asn4=True,
            note="fuzzed VPNv4 UPDATEs (tcpdump out-of-bounds read)",
        ),
        CaptureExpect("bgp-bfd-cease.pcap", ("bgp-bfd-cease.out",)),
        CaptureExpect(
            "bgp-bgp_capabilities_print-oobr-1.pcap",
            ("bgp-bgp_capabilities_print-oobr-1.out",),
            default=BAD_VERSION,
        ),
        CaptureExpect(
            "bgp-bgp_capabilities_print-oobr-2.pcap",
            ("bgp-bgp_capabilities_print-oobr-2.out",),
            default=BAD_VERSION,
        ),
        CaptureExpect(
            "bgp-bgpsec.pcap", ("bgp-bgpsec.out",), rules=((_has_attr(33), MISSING_AS_PATH),)
        ),
        CaptureExpect("bgp-cease-hard-reset.pcap", ("bgp-cease-hard-reset.out",)),
        CaptureExpect("bgp-encap.pcap", ("bgp-encap.out",), default=UNSUPPORTED_FAMILY, asn4=True),
        CaptureExpect(
            "bgp-enhanced-route-refresh-subtype.pcapng",
            ("bgp-enhanced-route-refresh-subtype.out",),
            asn4=True,
        ),
        CaptureExpect("bgp-enhanced-route-refresh.pcapng", ("bgp-enhanced-route-refresh.out",)),
        CaptureExpect("bgp-evpn.pcap", ("bgp-evpn.out",)),
        CaptureExpect("bgp-extended-msg.pcapng", ("bgp-extended-msg.out",)),
        CaptureExpect(
            "bgp-extended-optional-parameters-length.pcapng",
            ("bgp-extended-optional-parameters-length.out",),
            note="RFC 9072 extended optional parameters length",
        ),
        CaptureExpect(
            "bgp-extended-shutdown-msg.pcapng",
            ("bgp-extended-shutdown-msg.out",),
            note="RFC 9003: shutdown communication up to 255 octets",
        ),
        CaptureExpect("bgp-large-community.pcap", ("bgp-large-community.out",), asn4=True),
        CaptureExpect(
            "bgp-link-bw-extcommunity.pcapng", ("bgp-link-bw-extcommunity.out",), asn4=True
        ),
        CaptureExpect(
            "bgp-lu-multiple-labels.pcap",
            ("bgp-lu-multiple-labels.out",),
            route_overrides={
                (18, 0): ["30.1.1.1/32 label 100,101,102,103"],
                (35, 1): ["30.1.1.1/32 label 100,101,102,103"],
            },
            note="RFC 8277 label stacks; tcpdump calls the 4-label NLRI an illegal prefix length",
        ),
        CaptureExpect(
            "bgp-orf.pcapng",
            ("bgp-orf.out",),
            note="ROUTE-REFRESH subtype 0 followed by ORF entries (RFC 5291); the length check of "
            "RFC 7313 section 5 applies to subtypes 1 and 2 only",
        ),
        CaptureExpect("bgp-ovs.pcapng", ("bgp-ovs.out",), asn4=True),
        CaptureExpect(
            "bgp-role.pcapng",
            ("bgp-role.out",),
            note="OTC (35, RFC 9234) unknown to vpe: optional transitive, kept opaque",
        ),
        CaptureExpect(
            "bgp-rt-prefix.pcap",
            ("bgp-rt-prefix.out",),
            asn4=False,
            note="RT constraint (RFC 4684); NEXT_HOP without IPv4 NLRI is ignored (RFC 4760 section 3)",
        ),
        CaptureExpect("bgp-shutdown-communication.pcapng", ("bgp-shutdown-communication.out",)),
        CaptureExpect(
            "bgp-shutdown-msg-variations.pcap",
            ("bgp-shutdown-msg-variations.out",),
            note="a NOTIFICATION is never answered with one: a bad shutdown communication length "
            "is only logged (RFC 9003 section 2), the message still decodes",
        ),
        CaptureExpect(
            "bgp-ub.pcap",
            ("bgp-ub.out",),
            default=ROBUST,
            asn4=True,
            note="fuzzed UPDATEs (tcpdump undefined behaviour)",
        ),
        CaptureExpect("bgp_notification_rr_msg_error.pcap", ("bgp_notification_rr_msg_error.out",)),
        CaptureExpect(
            "bgp_vpn_attrset.pcap",
            ("bgp_vpn_attrset.out",),
            asn4=True,
            note="ATTR_SET (128, RFC 6368) unknown to vpe: optional transitive, kept opaque",
        ),
        CaptureExpect(
            "bgpsec_invalid_signature_block_length.pcap",
            ("bgpsec_invalid_signature_block_length.out",),
            default=MISSING_AS_PATH,
            asn4=True,
        ),
        CaptureExpect("mpbgp-linklocal-nexthop.pcap", ("mpbgp-linklocal-nexthop.out",), asn4=False),
        # MPLS captures: no BGP in them; they prove the reader copes with the link types
        CaptureExpect("mpls-label-heapoverflow.pcap", ("mpls-label-heapoverflow.out",)),
        CaptureExpect("mpls-ldp-hello.pcap", ("mpls-ldp-hello.out",)),
        CaptureExpect("mpls-over-udp.pcap", ("mpls-over-udp.out", "mpls-over-udp-v.out")),
        CaptureExpect("mpls-traceroute.pcap", ("mpls-traceroute.out", "mpls-traceroute-v.out")),
    )
}
