// SPDX-License-Identifier: Apache-2.0 OR GPL-2.0-only
/*
 * vpe eBPF fast path: two tc (cls_bpf, direct-action) programs.
 *
 *   vpe_port      ingress of a VM port (host side of its veth):
 *                 anti-spoofing, per-VRF LPM, then either MAC rewrite and
 *                 redirect to another local port, or MPLS-in-UDP/IPv4
 *                 encapsulation and redirect to the underlay.
 *   vpe_underlay  ingress of the underlay interface:
 *                 MPLS-in-UDP/IPv4 or /IPv6 from a known vPE, label ->
 *                 VRF lookup (local next hop) or port (ingress check),
 *                 decapsulation, redirect to the VM port.
 *
 * Whatever these programs do not handle themselves is "punted": from a port
 * the frame is copied to the forwarder process (perf event array) and
 * dropped here, the process runs it through the userspace pipeline (ARP/ND,
 * ICMP errors, replication, GRE, IPv6 underlay...); from the underlay the
 * packet simply continues into the stack (TC_ACT_OK), where the forwarder's
 * UDP / GRE sockets receive it. The maps are the FIB, written by the
 * forwarder process (src/vpe/dataplane/ebpf/maps.py has the same layouts).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef BPF_F_ADJ_ROOM_DECAP_L3_IPV4
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV6 (1ULL << 8)
#endif

#define AF_INET4 2
#define AF_INET6_ 10
#define MPLS_UDP_PORT 6635
#define IPPROTO_GRE_ 47
#define FLOW_PORT_MIN 49152

/* ---------------------------------------------------------------- maps */

struct cfg {
	__u32 ul_ifindex;
	__u32 has4;
	__u32 has6;
	__u32 pad;
	__u8 src4[4];
	__u8 src6[16];
};

#define PORT_F_PUNT_ALL 1

struct port_val {
	__u32 vrf;
	__u32 flags;
	__u8 mac[6];
	__u8 gw_mac[6];
	__u32 mtu;
};

struct src4_key { __u32 plen; __u32 ifindex; __u8 addr[4]; };
struct src6_key { __u32 plen; __u32 ifindex; __u8 addr[16]; };
struct src_val { __u8 mac[6]; __u16 pad; };

struct addr_key { __u32 id; __u32 fam; __u8 addr[16]; };

struct rt4_key { __u32 plen; __u32 vrf; __u8 addr[4]; };
struct rt6_key { __u32 plen; __u32 vrf; __u8 addr[16]; };
/* phash: the prefix hash, the per-prefix mode's flow hash (vpe.dataplane.nhg) */
struct rt_val { __u32 nhg; __u32 phash; __u32 rr; __u32 flags; };
/* a remote route covered by an aggregate of ours (R10.3): re-tunnelled once */
#define RT_F_TRANSIT 1

#define ECMP_PER_FLOW 0
#define ECMP_PER_PACKET 1
#define ECMP_PER_PREFIX 2

/* backup: the group of pre-installed backup paths (0: none), R11.2 */
struct nhg_val { __u32 n; __u32 mode; __u32 nlocal; __u32 backup; };
/* members are in rank order (vpe.dataplane.nhg.order); idx is the rank */
struct member_key { __u32 nhg; __u32 idx; };
/* the members' identity seeds, in rank order (groups of 2 and more) */
#define MAX_MEMBERS 512
struct seeds_val { __u32 s[MAX_MEMBERS]; };
#define NO_MEMBER 0xFFFFFFFFu
#define LOCAL_IDX 0x80000000u

#define NH_LOCAL 1
#define NH_UDP4 2
#define NH_UDP6 3
#define NH_GRE4 4
#define NH_GRE6 5

/* nout: label stack entries pushed above label_word (Inter-AS option C),
 * out[] outermost first, without their TTL and bottom-of-stack bits */
#define MAX_OUTER 2
struct nh_val {
	__u32 kind;
	__u32 ifindex;
	__u32 label_word;
	__u32 max_inner;
	__u8 dst[16];
	__u32 nout;
	__u32 out[MAX_OUTER];
};

#define LBL_VRF 1
#define LBL_PORT 2
#define LBL_SWAP 3
#define LBL_POP 4

/* nh: a swap label's next hop (id in nhs; 0: none) */
struct label_val { __u32 kind; __u32 vrf; __u32 ifindex; __u32 nh; };

struct port_ctr { __u64 rx_packets, rx_bytes, tx_packets, tx_bytes, drops; };
/* redirected: re-tunnelled from the underlay (aggregate transit), as the pipeline counts it */
struct vrf_ctr { __u64 routed_local, encapsulated, decapsulated, replicated, drops, redirected; };
struct ul_ctr { __u64 rx_packets, rx_bytes, tx_packets, tx_bytes; };

/* drop reasons (index into `drops`); maps.py has the names */
enum {
	D_SPOOF_IP = 0,
	D_UNKNOWN_PORT,
	D_UNDERLAY_UNKNOWN_SOURCE,
	D_UNKNOWN_LABEL,
	D_INGRESS_CHECK,
	D_REDIRECT,
	D_MAX = 8,
};

/* punt reasons (index into `punts`) */
enum {
	P_NOT_IP = 0,   /* ARP, other ethertypes */
	P_MAC,          /* source MAC is not the port's own (allowed pair MACs) */
	P_HEADER,       /* options, padding, short, malformed: the pipeline decides */
	P_ND,           /* Neighbor Discovery / MLD */
	P_LINK_LOCAL,
	P_SOURCE,       /* source matched an entry with another MAC */
	P_GATEWAY,      /* to a gateway address (echo) */
	P_MULTICAST,    /* broadcast / multicast / directed broadcast: replication */
	P_TTL,          /* expiring: ICMP time exceeded */
	P_NO_ROUTE,     /* ICMP unreachable */
	P_TOO_BIG,      /* ICMP fragmentation needed / packet too big */
	P_NEXT_HOP,     /* GRE, IPv6 underlay, next hop not resolved, port down */
	P_NEIGH,        /* underlay neighbour not resolved yet */
	P_COPY_FAILED,
	P_FRAGMENT,     /* IPv4 without DF too big for the tunnel: the slow path fragments */
	P_NESTED,       /* the kernel refused the encapsulation (a packet decapsulated here before) */
	P_DHCP,         /* DHCPv4 from the VM (UDP 68 -> 67): the slow path answers (R9.1) */
	P_MAX = 24,
};

/* label stack work done in the kernel (index into `fast_ctrs`; maps.py has the names) */
enum {
	F_SWAPPED = 0,  /* transit labeled-unicast swaps (option C at an ASBR) */
	F_RETUNNELLED,  /* aggregate transit (R10.3) */
	F_POPPED,       /* our loopback's label popped above a VPN label */
	F_PUSHED,       /* packets sent with outer labels (option C at the ingress PE) */
	F_MAX = 8,
};

struct punt_meta {
	__u32 ifindex;
	__u32 reason;
	__u32 len;
	__u32 mtu;
};

struct { __uint(type, BPF_MAP_TYPE_ARRAY); __uint(max_entries, 1);
	 __type(key, __u32); __type(value, struct cfg); } cfg SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 4096);
	 __type(key, __u32); __type(value, struct port_val); } ports SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LPM_TRIE); __uint(max_entries, 65536);
	 __uint(map_flags, BPF_F_NO_PREALLOC);
	 __type(key, struct src4_key); __type(value, struct src_val); } src4 SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LPM_TRIE); __uint(max_entries, 65536);
	 __uint(map_flags, BPF_F_NO_PREALLOC);
	 __type(key, struct src6_key); __type(value, struct src_val); } src6 SEC(".maps");
/* gateway addresses per port ifindex */
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 16384);
	 __type(key, struct addr_key); __type(value, __u8); } gws SEC(".maps");
/* directed broadcast addresses per VRF */
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 16384);
	 __type(key, struct addr_key); __type(value, __u8); } bcasts SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LPM_TRIE); __uint(max_entries, 1048576);
	 __uint(map_flags, BPF_F_NO_PREALLOC);
	 __type(key, struct rt4_key); __type(value, struct rt_val); } routes4 SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_LPM_TRIE); __uint(max_entries, 1048576);
	 __uint(map_flags, BPF_F_NO_PREALLOC);
	 __type(key, struct rt6_key); __type(value, struct rt_val); } routes6 SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 65536);
	 __type(key, __u32); __type(value, struct nhg_val); } nhgs SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 262144);
	 __type(key, struct member_key); __type(value, __u32); } members SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 65536);
	 __type(key, __u32); __type(value, struct nh_val); } nhs SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 16384);
	 __uint(map_flags, BPF_F_NO_PREALLOC);
	 __type(key, __u32); __type(value, struct seeds_val); } seeds SEC(".maps");
/* remote vPEs declared down (key id 0): their members are skipped (R11.2) */
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 65536);
	 __type(key, struct addr_key); __type(value, __u8); } ep_down SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 1048576);
	 __uint(map_flags, BPF_F_NO_PREALLOC);
	 __type(key, __u32); __type(value, struct label_val); } labels SEC(".maps");
/* known vPEs (R13.2): id 0 */
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 65536);
	 __type(key, struct addr_key); __type(value, __u8); } peers SEC(".maps");
/* remote endpoints of each next-hop group (ingress check of "port" labels) */
struct { __uint(type, BPF_MAP_TYPE_HASH); __uint(max_entries, 262144);
	 __type(key, struct addr_key); __type(value, __u8); } group_eps SEC(".maps");

struct { __uint(type, BPF_MAP_TYPE_PERCPU_HASH); __uint(max_entries, 4096);
	 __type(key, __u32); __type(value, struct port_ctr); } port_ctrs SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_HASH); __uint(max_entries, 16384);
	 __type(key, __u32); __type(value, struct vrf_ctr); } vrf_ctrs SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, D_MAX);
	 __type(key, __u32); __type(value, __u64); } drops SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, P_MAX);
	 __type(key, __u32); __type(value, __u64); } punts SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, 1);
	 __type(key, __u32); __type(value, struct ul_ctr); } ul_ctrs SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); __uint(max_entries, F_MAX);
	 __type(key, __u32); __type(value, __u64); } fast_ctrs SEC(".maps");
struct { __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	 __uint(key_size, sizeof(__u32)); __uint(value_size, sizeof(__u32)); } punt_events SEC(".maps");

/* ------------------------------------------------------------- helpers */

/* zlib's CRC-32 (reflected 0xEDB88320), so the flow hash, the entropy source
 * port and the per-flow ECMP choice equal the userspace forwarder's */
static const __u32 crc_table[256] = {
#include "crc32_table.h"
};

static __always_inline __u32 crc_byte(__u32 crc, __u8 b)
{
	return crc_table[(crc ^ b) & 0xff] ^ (crc >> 8);
}

static __always_inline int neq(const __u8 *a, const __u8 *b, const int n)
{
	__u8 d = 0;
#pragma unroll
	for (int i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return d != 0;
}

static __always_inline void count_drop(__u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(&drops, &reason);
	if (v)
		*v += 1;
}

static __always_inline void count_fast(__u32 what)
{
	__u64 *v = bpf_map_lookup_elem(&fast_ctrs, &what);
	if (v)
		*v += 1;
}

static __always_inline void count_punt(__u32 reason)
{
	__u64 *v = bpf_map_lookup_elem(&punts, &reason);
	if (v)
		*v += 1;
}

#define PUNT_MAX 16384
#define PUNT_QUOTE 1400

/* copy the frame to the forwarder process, drop it here */
static __always_inline int punt(struct __sk_buff *skb, __u32 reason, __u32 mtu)
{
	struct punt_meta m = { .ifindex = skb->ifindex, .reason = reason, .len = skb->len, .mtu = mtu };
	__u64 n = skb->len;
	__u64 cap = reason == P_TOO_BIG ? PUNT_QUOTE : PUNT_MAX;
	if (n > cap)
		n = cap;
	count_punt(reason);
	if (bpf_perf_event_output(skb, &punt_events, BPF_F_CURRENT_CPU | (n << 32), &m, sizeof(m)))
		count_punt(P_COPY_FAILED);
	return TC_ACT_SHOT;
}

static __always_inline struct port_ctr *port_ctr(__u32 ifindex)
{
	return bpf_map_lookup_elem(&port_ctrs, &ifindex);
}

static __always_inline struct vrf_ctr *vrf_ctr(__u32 vrf)
{
	return bpf_map_lookup_elem(&vrf_ctrs, &vrf);
}

static __always_inline void port_tx(__u32 ifindex, __u64 bytes)
{
	struct port_ctr *c = port_ctr(ifindex);
	if (c) {
		c->tx_packets += 1;
		c->tx_bytes += bytes;
	}
}

static __always_inline int csum_fold_add(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

/* symmetric 5-tuple flow hash of vpe.dataplane.userspace.fib.flow_hash */
static __always_inline __u32 flow_hash4(const __u8 *ip, const void *end, __u32 total)
{
	__u32 s, d, a, b;
	__u8 proto = ip[9];
	__u16 pa = 0, pb = 0;
	__builtin_memcpy(&s, ip + 12, 4);
	__builtin_memcpy(&d, ip + 16, 4);
	if (bpf_ntohl(s) < bpf_ntohl(d)) { a = s; b = d; } else { a = d; b = s; }
	__u16 frag = ((__u16)ip[6] << 8) | ip[7];
	if ((proto == 6 || proto == 17 || proto == 132) && !(frag & 0x3FFF) && total >= 24) {
		if ((void *)(ip + 24) > end)
			return 0;
		pa = ((__u16)ip[20] << 8) | ip[21];
		pb = ((__u16)ip[22] << 8) | ip[23];
		if (pa > pb) { __u16 t = pa; pa = pb; pb = t; }
	}
	__u8 key[13];
	__builtin_memcpy(key, &a, 4);
	__builtin_memcpy(key + 4, &b, 4);
	key[8] = proto;
	key[9] = pa >> 8; key[10] = pa & 0xff;
	key[11] = pb >> 8; key[12] = pb & 0xff;
	__u32 crc = 0xFFFFFFFF;
#pragma unroll
	for (int i = 0; i < 13; i++)
		crc = crc_byte(crc, key[i]);
	return crc ^ 0xFFFFFFFF;
}

static __always_inline __u32 flow_hash6(const __u8 *ip, const void *end, __u32 total)
{
	__u8 proto = ip[6];
	__u16 pa = 0, pb = 0;
	const __u8 *sa = ip + 8, *da = ip + 24;
	int swap = 0;
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (sa[i] != da[i]) {
			swap = sa[i] > da[i];
			break;
		}
	}
	if (swap) { const __u8 *t = sa; sa = da; da = t; }
	if ((proto == 6 || proto == 17 || proto == 132) && total >= 44) {
		if ((void *)(ip + 44) > end)
			return 0;
		pa = ((__u16)ip[40] << 8) | ip[41];
		pb = ((__u16)ip[42] << 8) | ip[43];
		if (pa > pb) { __u16 t = pa; pa = pb; pb = t; }
	}
	__u32 crc = 0xFFFFFFFF;
#pragma unroll
	for (int i = 0; i < 16; i++)
		crc = crc_byte(crc, sa[i]);
#pragma unroll
	for (int i = 0; i < 16; i++)
		crc = crc_byte(crc, da[i]);
	crc = crc_byte(crc, proto);
	crc = crc_byte(crc, pa >> 8);
	crc = crc_byte(crc, pa & 0xff);
	crc = crc_byte(crc, pb >> 8);
	crc = crc_byte(crc, pb & 0xff);
	return crc ^ 0xFFFFFFFF;
}

/* MurmurHash3's finaliser: vpe.dataplane.nhg.fmix32 */
static __always_inline __u32 fmix32(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85EBCA6Bu;
	h ^= h >> 13;
	h *= 0xC2B2AE35u;
	h ^= h >> 16;
	return h;
}

struct hrw_ctx {
	struct seeds_val *sv;
	__u32 n, h, best, second, i1, i2;
};

/* one member's weight for the bucket: keep the two heaviest (vpe.dataplane.nhg.rank2) */
static long hrw_step(__u32 i, void *data)
{
	struct hrw_ctx *c = data;
	if (i >= c->n || i >= MAX_MEMBERS)
		return 1;
	__u32 w = fmix32(c->sv->s[i] ^ c->h);
	if (c->i1 == NO_MEMBER || w > c->best) {
		c->second = c->best;
		c->i2 = c->i1;
		c->best = w;
		c->i1 = i;
	} else if (c->i2 == NO_MEMBER || w > c->second) {
		c->second = w;
		c->i2 = i;
	}
	return 0;
}

/* winner and runner-up ranks of group gid for key; -1 when the seeds are missing */
static __always_inline int rank_members(__u32 gid, struct nhg_val *g, struct rt_val *rt, __u32 key,
					__u32 *i1, __u32 *i2)
{
	__u32 n = g->n;
	if (n <= 1) {
		*i1 = 0;
		*i2 = NO_MEMBER;
		return 0;
	}
	if (g->mode == ECMP_PER_PACKET) {
		__u32 r = __sync_fetch_and_add(&rt->rr, 1) % n;
		*i1 = r;
		*i2 = r + 1 < n ? r + 1 : 0;
		return 0;
	}
	struct hrw_ctx c = { .n = n, .h = fmix32(key & 0xffff), .i1 = NO_MEMBER, .i2 = NO_MEMBER };
	c.sv = bpf_map_lookup_elem(&seeds, &gid);
	if (!c.sv)
		return -1;
	bpf_loop(n, hrw_step, &c, 0);
	if (c.i1 == NO_MEMBER)
		return -1;
	*i1 = c.i1;
	*i2 = c.i2;
	return 0;
}

static __always_inline struct nh_val *member_nh(__u32 gid, __u32 idx)
{
	struct member_key mk = { .nhg = gid, .idx = idx };
	__u32 *nid = bpf_map_lookup_elem(&members, &mk);
	if (!nid)
		return 0;
	return bpf_map_lookup_elem(&nhs, nid);
}

static __always_inline int nh_down(struct nh_val *nh)
{
	if (nh->kind == NH_LOCAL)
		return 0;
	struct addr_key k = { .fam = (nh->kind == NH_UDP6 || nh->kind == NH_GRE6) ? 6 : 4 };
	__builtin_memcpy(k.addr, nh->dst, 16);
	return bpf_map_lookup_elem(&ep_down, &k) != 0;
}

/* the next hop of a route for key (flow hash or prefix hash), skipping dead
 * endpoints: winner, runner-up, else (a group of 2 at most) the backup
 * group's winner; NULL: the slow path decides (vpe.dataplane.userspace.fib.FibEntry.pick) */
static __always_inline struct nh_val *select_nh(struct rt_val *rt, struct nhg_val *g, __u32 key)
{
	__u32 gid = rt->nhg, i1, i2;
	if (rank_members(gid, g, rt, key, &i1, &i2))
		return 0;
	struct nh_val *nh = member_nh(gid, i1);
	if (!nh || (g->n == 1 && !g->backup) || !nh_down(nh))
		return nh;
	if (i2 != NO_MEMBER) {
		struct nh_val *nh2 = member_nh(gid, i2);
		if (!nh2 || !nh_down(nh2))
			return nh2;
	}
	if (g->n > 2)
		return 0; /* another member may be alive: the slow path finds the heaviest */
	if (!g->backup)
		return nh; /* nothing alive, nothing better */
	__u32 bid = g->backup;
	struct nhg_val *b = bpf_map_lookup_elem(&nhgs, &bid);
	if (!b || b->backup)
		return 0;
	struct rt_val brt = { .nhg = bid, .rr = rt->rr };
	if (rank_members(bid, b, &brt, key, &i1, &i2))
		return 0;
	struct nh_val *bn = member_nh(bid, i1);
	if (!bn || nh_down(bn))
		return 0;
	return bn;
}

/* the local member for traffic from the underlay (flow hash modulo the local ones) */
static __always_inline __u32 *pick_local(struct rt_val *rt, struct nhg_val *g, __u32 fh)
{
	struct member_key mk = { .nhg = rt->nhg };
	__u32 n = g->nlocal;
	if (n == 0)
		return 0;
	mk.idx = (n == 1 ? 0 : fh % n) | LOCAL_IDX;
	return bpf_map_lookup_elem(&members, &mk);
}

/* length of one segment on the wire (GSO: headers + gso_size); the headers
 * of a GSO packet are in the linear part, its payload may not be */
static __always_inline __u32 seg_len(struct __sk_buff *skb, const __u8 *ip, const void *end,
				    __u32 total, int v6, __u8 proto)
{
	if (!skb->gso_size)
		return total;
	__u32 l3hl = v6 ? 40 : 20, l4 = 8;
	if (proto == 6) {
		if (v6) {
			if ((void *)(ip + 40 + 13) > end)
				return total;
			l4 = (ip[40 + 12] >> 4) * 4;
		} else {
			if ((void *)(ip + 20 + 13) > end)
				return total;
			l4 = (ip[20 + 12] >> 4) * 4;
		}
	}
	return l3hl + l4 + skb->gso_size;
}

/* ---------------------------------------------------- VM port ingress */

/* TTL / hop limit - 1 of the IP header at ``off`` (IPv4: checksum updated) */
static __always_inline int ttl_dec(struct __sk_buff *skb, __u32 off, int v6, __u8 ttl)
{
	if (v6) {
		__u8 nt = ttl - 1;
		return bpf_skb_store_bytes(skb, off + 7, &nt, 1, 0);
	}
	/* the TTL is the high octet of the 16-bit word at IP offset 8 */
	__u16 old = bpf_htons((__u16)ttl << 8), new = bpf_htons((__u16)(ttl - 1) << 8);
	__u8 nt = ttl - 1;
	if (bpf_l3_csum_replace(skb, off + 10, old, new, 2))
		return -1;
	return bpf_skb_store_bytes(skb, off + 8, &nt, 1, 0);
}

/* A change failed after the packet was modified: it can no longer be punted
 * (the slow path would see it half-done), so it is dropped and counted. */
static __always_inline int broken(void)
{
	count_drop(D_REDIRECT);
	return TC_ACT_SHOT;
}

static __always_inline int to_local_port(struct __sk_buff *skb, struct nh_val *nh, int v6, __u8 ttl,
					 __u32 seglen, struct vrf_ctr *vc)
{
	__u32 oif = nh->ifindex;
	struct port_val *op = bpf_map_lookup_elem(&ports, &oif);
	if (!op)
		return punt(skb, P_NEXT_HOP, 0);
	if (seglen > op->mtu)
		return punt(skb, P_TOO_BIG, op->mtu);
	if (ttl_dec(skb, 14, v6, ttl))
		return broken();
	__u8 eth[12];
	__builtin_memcpy(eth, op->mac, 6);
	__builtin_memcpy(eth + 6, op->gw_mac, 6);
	if (bpf_skb_store_bytes(skb, 0, eth, 12, 0))
		return broken();
	if (vc)
		vc->routed_local += 1;
	port_tx(oif, skb->len);
	return bpf_redirect(oif, 0);
}

/* the outer headers, room for the deepest label stack (MAX_OUTER + 1 entries):
 * only the first 14 + 20 + 8 (or 4) + 4 * (nout + 1) octets are written */
struct outer4 {
	__u8 eth[14];
	__u8 ip[20];
	__be16 sport, dport, ulen, ucsum;
	__u8 lse[4 * (MAX_OUTER + 1)];
} __attribute__((packed));

struct outer4gre {
	__u8 eth[14];
	__u8 ip[20];
	__be16 flags, proto;
	__u8 lse[4 * (MAX_OUTER + 1)];
} __attribute__((packed));

/* the label stack toward nh: its outer entries, then its label (bottom of
 * stack when ``bos``, else more entries follow: a transit swap), all with TTL ``lttl`` */
static __always_inline void put32(__u8 *p, __u32 v)
{
	/* octet by octet: the packed headers leave the entries unaligned on the stack */
	p[0] = v >> 24;
	p[1] = v >> 16;
	p[2] = v >> 8;
	p[3] = v;
}

static __always_inline void fill_stack(__u8 *lse, struct nh_val *nh, __u8 lttl, int bos)
{
	__u32 bottom = (bos ? nh->label_word : nh->label_word & ~0x100u) | lttl;
	__u32 n = nh->nout;
	if (n == 0) {
		put32(lse, bottom);
	} else if (n == 1) {
		put32(lse, nh->out[0] | lttl);
		put32(lse + 4, bottom);
	} else {
		put32(lse, nh->out[0] | lttl);
		put32(lse + 4, nh->out[1] | lttl);
		put32(lse + 8, bottom);
	}
}

/* octets of the label stack toward nh (nout is at most MAX_OUTER: the compiler makes it so) */
static __always_inline __u32 stack_len(struct nh_val *nh)
{
	__u32 n = nh->nout;
	return 4 * ((n > MAX_OUTER ? MAX_OUTER : n) + 1);
}

/* Room for the outer headers after the MAC header. The ENCAP flags describe
 * the tunnel for GSO; the kernel refuses them on an skb that already carries
 * an encapsulation mark (a packet a program decapsulated, routed back out by a
 * VM: the hub of hub-and-spoke). Such a packet, unless it is a GSO one, needs
 * no tunnel description: the room is made without the flags. */
static __always_inline int grow(struct __sk_buff *skb, __s32 len, __u64 flags)
{
	if (!bpf_skb_adjust_room(skb, len, BPF_ADJ_ROOM_MAC, flags))
		return 0;
	if (skb->gso_size)
		return -1;
	return bpf_skb_adjust_room(skb, len, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO) ? -1 : 0;
}

static __always_inline void outer_ip4(__u8 *o, struct cfg *c, struct nh_val *nh, __u16 tot, __u8 proto)
{
	o[0] = 0x45;
	o[2] = tot >> 8;
	o[3] = tot & 0xff;
	__u16 id = bpf_get_prandom_u32();
	o[4] = id >> 8;
	o[5] = id & 0xff;
	o[8] = 64;
	o[9] = proto;
	__builtin_memcpy(o + 12, c->src4, 4);
	__builtin_memcpy(o + 16, nh->dst, 4);
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < 20; i += 2)
		sum += ((__u32)o[i] << 8) | o[i + 1];
	__u16 ck = ~csum_fold_add(sum) & 0xffff;
	o[10] = ck >> 8;
	o[11] = ck & 0xff;
}

/* an encapsulated packet leaves on the underlay: counted (VRF, underlay tx of
 * ``ul_bytes``, the tunnel payload) and handed to the kernel's route and neighbour of
 * the outer destination (resolved or queued as for a locally sent packet: no
 * forwarding sysctl needed) */
static __always_inline int send_encapsulated(struct cfg *c, struct vrf_ctr *vc, __u32 ul_bytes)
{
	__u32 zero = 0;
	if (vc)
		vc->encapsulated += 1;
	struct ul_ctr *u = bpf_map_lookup_elem(&ul_ctrs, &zero);
	if (u) {
		u->tx_packets += 1;
		u->tx_bytes += ul_bytes;
	}
	return bpf_redirect_neigh(c->ul_ifindex, 0, 0, 0);
}

/* the outer headers toward nh (IPv4, MPLS-in-UDP with source port ``sport`` or
 * MPLS-in-GRE), its label stack (TTL ``lttl``; ``bos``: the bottom one), stored at
 * the start of a packet whose room is made, ``after`` octets following the stack */
static __always_inline int put_header(struct __sk_buff *skb, struct cfg *c, struct nh_val *nh, __u8 lttl,
				      int bos, __u32 after, __u16 sport)
{
	__u32 sl = stack_len(nh);
	if (nh->kind == NH_GRE4) {
		struct outer4gre o = {};
		o.eth[12] = 0x08;
		outer_ip4(o.ip, c, nh, 20 + 4 + sl + after, IPPROTO_GRE_);
		o.proto = bpf_htons(0x8847);
		fill_stack(o.lse, nh, lttl, bos);
		return bpf_skb_store_bytes(skb, 0, &o, 14 + 24 + sl, 0);
	}
	struct outer4 o = {};
	/* the neighbour subsystem writes the MACs (bpf_redirect_neigh) */
	o.eth[12] = 0x08;
	outer_ip4(o.ip, c, nh, 20 + 8 + sl + after, IPPROTO_UDP);
	o.sport = bpf_htons(sport);
	o.dport = bpf_htons(MPLS_UDP_PORT);
	o.ulen = bpf_htons(8 + sl + after);
	fill_stack(o.lse, nh, lttl, bos);
	return bpf_skb_store_bytes(skb, 0, &o, 14 + 28 + sl, 0);
}

/* MPLS-in-GRE (RFC 4023) over IPv4: GRE without optional fields, protocol 0x8847 */
static __always_inline int to_gre4(struct __sk_buff *skb, struct nh_val *nh, int v6, __u8 ttl,
				   __u32 total, struct vrf_ctr *vc)
{
	__u32 zero = 0;
	struct cfg *c = bpf_map_lookup_elem(&cfg, &zero);
	if (!c || !c->has4)
		return punt(skb, P_NEXT_HOP, 0);
	__u32 sl = stack_len(nh);
	/* the label stack plays the inner "MAC" header for GSO */
	__u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 |
		      BPF_F_ADJ_ROOM_ENCAP_L4_GRE | BPF_F_ADJ_ROOM_ENCAP_L2(sl);
	/* first the room: when the kernel refuses it (a packet that was itself
	 * decapsulated by a program keeps the skb's encapsulation mark, and
	 * bpf_skb_adjust_room does not nest), nothing has changed yet */
	if (grow(skb, 24 + sl, flags))
		return punt(skb, P_NESTED, 0);
	if (ttl_dec(skb, 14 + 24 + sl, v6, ttl) || put_header(skb, c, nh, ttl - 1, 1, total, 0))
		return broken();
	if (sl > 4)
		count_fast(F_PUSHED);
	return send_encapsulated(c, vc, 4 + sl + total);
}

static __always_inline int to_tunnel4(struct __sk_buff *skb, struct nh_val *nh, int v6, __u8 ttl,
				      __u32 total, __u32 fh, struct vrf_ctr *vc)
{
	__u32 zero = 0;
	struct cfg *c = bpf_map_lookup_elem(&cfg, &zero);
	if (!c || !c->has4)
		return punt(skb, P_NEXT_HOP, 0);
	__u32 sl = stack_len(nh);
	__u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 |
		      BPF_F_ADJ_ROOM_ENCAP_L4_UDP | BPF_F_ADJ_ROOM_ENCAP_L2(sl);
	if (grow(skb, 28 + sl, flags))
		return punt(skb, P_NESTED, 0);
	if (ttl_dec(skb, 14 + 28 + sl, v6, ttl) ||
	    put_header(skb, c, nh, ttl - 1, 1, total, FLOW_PORT_MIN + (fh & 0x3FFF)))
		return broken();
	if (sl > 4)
		count_fast(F_PUSHED);
	return send_encapsulated(c, vc, 8 + sl + total);
}

SEC("tc")
int vpe_port(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	struct port_val *p = bpf_map_lookup_elem(&ports, &ifindex);
	if (!p) {
		count_drop(D_UNKNOWN_PORT);
		return TC_ACT_SHOT;
	}
	if (p->flags & PORT_F_PUNT_ALL)
		return punt(skb, P_HEADER, 0);
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	if (data + 14 > end)
		return punt(skb, P_HEADER, 0);
	__u8 *eth = data;
	if (neq(eth + 6, p->mac, 6))
		return punt(skb, P_MAC, 0);
	__u16 et = ((__u16)eth[12] << 8) | eth[13];
	int v6;
	if (et == ETH_P_IP)
		v6 = 0;
	else if (et == ETH_P_IPV6)
		v6 = 1;
	else
		return punt(skb, P_NOT_IP, 0);

	struct port_ctr *pc = port_ctr(ifindex);
	__u8 *ip = data + 14;
	__u32 total, l3hl, fh = 0;
	__u8 ttl, proto;
	struct rt_val *rt;
	struct src_val *sv;
	struct addr_key gk = { .id = ifindex };
	if (!v6) {
		if ((void *)(ip + 20) > end)
			return punt(skb, P_HEADER, 0);
		if (ip[0] != 0x45)
			return punt(skb, P_HEADER, 0);
		total = ((__u32)ip[2] << 8) | ip[3];
		l3hl = 20;
		if (total < 20 || (!skb->gso_size && skb->len != 14 + total))
			return punt(skb, P_HEADER, 0);
		ttl = ip[8];
		proto = ip[9];
		if (proto == IPPROTO_UDP) {
			/* DHCP comes from 0.0.0.0 before the lease: answered like ARP */
			if ((void *)(ip + 24) > end)
				return punt(skb, P_HEADER, 0);
			if (ip[20] == 0 && ip[21] == 68 && ip[22] == 0 && ip[23] == 67)
				return punt(skb, P_DHCP, 0);
		}
		struct src4_key sk = { .plen = 64, .ifindex = ifindex };
		__builtin_memcpy(sk.addr, ip + 12, 4);
		sv = bpf_map_lookup_elem(&src4, &sk);
		gk.fam = 4;
		__builtin_memcpy(gk.addr, ip + 16, 4);
	} else {
		if ((void *)(ip + 40) > end)
			return punt(skb, P_HEADER, 0);
		if ((ip[0] >> 4) != 6)
			return punt(skb, P_HEADER, 0);
		total = 40 + (((__u32)ip[4] << 8) | ip[5]);
		l3hl = 40;
		if (!skb->gso_size && skb->len != 14 + total)
			return punt(skb, P_HEADER, 0);
		ttl = ip[7];
		proto = ip[6];
		if (proto == 58) {
			/* Neighbor Discovery and MLD are answered by the slow path */
			if ((void *)(ip + 41) > end)
				return punt(skb, P_HEADER, 0);
			__u8 t = ip[40];
			if ((t >= 130 && t <= 137) || t == 143)
				return punt(skb, P_ND, 0);
		}
		if (ip[8] == 0xfe && (ip[9] & 0xc0) == 0x80)
			return punt(skb, P_LINK_LOCAL, 0);
		struct src6_key sk = { .plen = 160, .ifindex = ifindex };
		__builtin_memcpy(sk.addr, ip + 8, 16);
		sv = bpf_map_lookup_elem(&src6, &sk);
		gk.fam = 6;
		__builtin_memcpy(gk.addr, ip + 24, 16);
	}
	if (!sv) {
		count_drop(D_SPOOF_IP);
		if (pc) {
			pc->rx_packets += 1;
			pc->rx_bytes += skb->len;
			pc->drops += 1;
		}
		return TC_ACT_SHOT;
	}
	if (neq(sv->mac, p->mac, 6))
		return punt(skb, P_SOURCE, 0);
	if (bpf_map_lookup_elem(&gws, &gk))
		return punt(skb, P_GATEWAY, 0);
	if (!v6) {
		if ((ip[16] >> 4) == 0xE || (ip[16] == 0xff && ip[17] == 0xff && ip[18] == 0xff && ip[19] == 0xff))
			return punt(skb, P_MULTICAST, 0);
		struct addr_key bk = { .id = p->vrf, .fam = 4 };
		__builtin_memcpy(bk.addr, ip + 16, 4);
		if (bpf_map_lookup_elem(&bcasts, &bk))
			return punt(skb, P_MULTICAST, 0);
	} else if (ip[24] == 0xff) {
		return punt(skb, P_MULTICAST, 0);
	}
	if (ttl <= 1)
		return punt(skb, P_TTL, 0);
	if (!v6) {
		struct rt4_key rk = { .plen = 64, .vrf = p->vrf };
		__builtin_memcpy(rk.addr, ip + 16, 4);
		rt = bpf_map_lookup_elem(&routes4, &rk);
	} else {
		struct rt6_key rk = { .plen = 160, .vrf = p->vrf };
		__builtin_memcpy(rk.addr, ip + 24, 16);
		rt = bpf_map_lookup_elem(&routes6, &rk);
	}
	if (!rt)
		return punt(skb, P_NO_ROUTE, 0);
	struct nhg_val *g = bpf_map_lookup_elem(&nhgs, &rt->nhg);
	if (!g)
		return punt(skb, P_NO_ROUTE, 0);
	int have_fh = (g->n > 1 || g->backup) && g->mode == ECMP_PER_FLOW;
	if (have_fh)
		fh = v6 ? flow_hash6(ip, end, total) : flow_hash4(ip, end, total);
	struct nh_val *nh = select_nh(rt, g, g->mode == ECMP_PER_PREFIX ? rt->phash : fh);
	if (!nh)
		return punt(skb, P_NEXT_HOP, 0);
	__u32 seglen = seg_len(skb, ip, end, total, v6, proto);
	struct vrf_ctr *vc = vrf_ctr(p->vrf);
	__u64 rx_bytes = skb->len;
	int rc;
	if (nh->kind == NH_LOCAL) {
		rc = to_local_port(skb, nh, v6, ttl, seglen, vc);
	} else if (nh->kind == NH_UDP4) {
		if (seglen > nh->max_inner) {
			/* IPv4 without DF: sent fragmented by the slow path (whole copy) */
			if (!v6 && !(ip[6] & 0x40))
				return punt(skb, P_FRAGMENT, 0);
			return punt(skb, P_TOO_BIG, nh->max_inner);
		}
		if (!have_fh)
			fh = v6 ? flow_hash6(ip, end, total) : flow_hash4(ip, end, total);
		rc = to_tunnel4(skb, nh, v6, ttl, total, fh, vc);
	} else if (nh->kind == NH_GRE4) {
		if (seglen > nh->max_inner) {
			if (!v6 && !(ip[6] & 0x40))
				return punt(skb, P_FRAGMENT, 0);
			return punt(skb, P_TOO_BIG, nh->max_inner);
		}
		rc = to_gre4(skb, nh, v6, ttl, total, vc);
	} else {
		return punt(skb, P_NEXT_HOP, 0);
	}
	if (rc == TC_ACT_REDIRECT && pc) {
		pc->rx_packets += 1;
		pc->rx_bytes += rx_bytes;
	}
	return rc;
}

/* ------------------------------------------------------ underlay ingress */

static __always_inline int decap_deliver(struct __sk_buff *skb, __u32 hdr, int outer6, int v6,
					 __u32 oif, __u8 ttl, struct vrf_ctr *vc, __u32 inner_off)
{
	struct port_val *op = bpf_map_lookup_elem(&ports, &oif);
	if (!op)
		return TC_ACT_OK;
	__u32 total_len = skb->len - inner_off;
	if (!skb->gso_size && total_len > op->mtu)
		return TC_ACT_OK;
	__u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO |
		      (v6 ? BPF_F_ADJ_ROOM_DECAP_L3_IPV6 : BPF_F_ADJ_ROOM_DECAP_L3_IPV4);
	/* the headers go first: refused, the packet is still whole for the stack */
	if (bpf_skb_adjust_room(skb, -(__s32)hdr, BPF_ADJ_ROOM_MAC, flags))
		return TC_ACT_OK;
	if (ttl_dec(skb, 14, v6, ttl))
		return broken();
	__u8 eth[14];
	__builtin_memcpy(eth, op->mac, 6);
	__builtin_memcpy(eth + 6, op->gw_mac, 6);
	eth[12] = v6 ? 0x86 : 0x08;
	eth[13] = v6 ? 0xDD : 0x00;
	if (bpf_skb_store_bytes(skb, 0, eth, 14, 0))
		return broken();
	if (vc)
		vc->decapsulated += 1;
	port_tx(oif, skb->len);
	return bpf_redirect(oif, 0);
}

/* the kernel re-tunnels toward IPv4 next hops only (MPLS-in-UDP, MPLS-in-GRE) */
static __always_inline int tunnel4_nh(struct nh_val *nh)
{
	return (nh->kind == NH_UDP4 || nh->kind == NH_GRE4) && nh->nout <= MAX_OUTER;
}

/* A tunnelled packet received from the underlay and sent on again by the kernel
 * (transit swap, aggregate transit): the underlay's receive counters. */
static __always_inline void count_ul_rx(__u32 ul_len)
{
	__u32 zero = 0;
	struct ul_ctr *u = bpf_map_lookup_elem(&ul_ctrs, &zero);
	if (u) {
		u->rx_packets += 1;
		u->rx_bytes += ul_len;
	}
}

/* A transit labeled-unicast hop (Inter-AS option C at an ASBR): the top label
 * (``lse``, more below it) is swapped for the stack toward the swap entry's next
 * hop, label TTL - 1; the rest of the stack and the packet travel on untouched.
 * The outer headers are rewritten in place (the room grows or shrinks by the
 * difference); the UDP source port (entropy) is kept, or from GRE the skb's hash.
 * Whatever is not plain (IPv6 underlay, GSO, TTL expiring, too big) takes the
 * userspace path, which does the same. */
static __always_inline int swap_stack(struct __sk_buff *skb, struct cfg *c, struct label_val *lv,
				      __u32 lse, int outer6, __u32 shim, __u16 sport, __u32 ul_len)
{
	__u8 ttl = lse & 0xff;
	if (outer6 || ttl <= 1 || skb->gso_size)
		return TC_ACT_OK;
	__u32 nid = lv->nh;
	struct nh_val *nh = bpf_map_lookup_elem(&nhs, &nid);
	if (!nh || !tunnel4_nh(nh))
		return TC_ACT_OK;
	__u32 old_hdr = 20 + shim + 4;
	__u32 rest = skb->len - 14 - old_hdr;
	if (rest > nh->max_inner)
		return TC_ACT_OK;
	__u32 new_hdr = 20 + (nh->kind == NH_GRE4 ? 4 : 8) + stack_len(nh);
	if (shim == 4)
		sport = FLOW_PORT_MIN + (bpf_get_hash_recalc(skb) & 0x3FFF);
	if (new_hdr != old_hdr &&
	    bpf_skb_adjust_room(skb, (__s32)new_hdr - (__s32)old_hdr, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO))
		return TC_ACT_OK;
	if (put_header(skb, c, nh, ttl - 1, 0, rest, sport))
		return broken();
	count_ul_rx(ul_len);
	count_fast(F_SWAPPED);
	return send_encapsulated(c, 0, new_hdr - 20 + rest);
}

/* Aggregate transit (R10.3): a packet that arrived on an aggregate's label and whose
 * more specific route (flagged transit by the control plane) leads to another vPE
 * leaves again toward it, once: the tunnel headers (``old_hdr`` octets after the
 * MAC header) are replaced by the ones toward the route's next hop, inner TTL - 1.
 * Not back to the vPE it came from (the userspace path drops that: a loop), and
 * nothing unusual (IPv6 underlay, GSO, too big): those take the userspace path. */
static __always_inline int retunnel(struct __sk_buff *skb, struct cfg *c, struct rt_val *rt, struct nhg_val *g,
				    __u8 *in, void *end, __u32 total, int v6, __u8 ttl, const __u8 *src4,
				    __u32 old_hdr, struct vrf_ctr *vc, __u32 ul_len)
{
	if (skb->gso_size)
		return TC_ACT_OK;
	__u32 fh = 0;
	int have_fh = (g->n > 1 || g->backup) && g->mode == ECMP_PER_FLOW;
	if (have_fh)
		fh = v6 ? flow_hash6(in, end, total) : flow_hash4(in, end, total);
	struct nh_val *nh = select_nh(rt, g, g->mode == ECMP_PER_PREFIX ? rt->phash : fh);
	if (!nh || !tunnel4_nh(nh) || !neq(nh->dst, src4, 4) || total > nh->max_inner)
		return TC_ACT_OK;
	if (!have_fh && nh->kind == NH_UDP4)
		fh = v6 ? flow_hash6(in, end, total) : flow_hash4(in, end, total);
	__u32 new_hdr = 20 + (nh->kind == NH_GRE4 ? 4 : 8) + stack_len(nh);
	if (new_hdr != old_hdr &&
	    bpf_skb_adjust_room(skb, (__s32)new_hdr - (__s32)old_hdr, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO))
		return TC_ACT_OK;
	if (ttl_dec(skb, 14 + new_hdr, v6, ttl) ||
	    put_header(skb, c, nh, ttl - 1, 1, total, FLOW_PORT_MIN + (fh & 0x3FFF)))
		return broken();
	count_ul_rx(ul_len);
	if (vc) {
		vc->decapsulated += 1;
		vc->redirected += 1;
	}
	count_fast(F_RETUNNELLED);
	return send_encapsulated(c, 0, new_hdr - 20 + total);
}

SEC("tc")
int vpe_underlay(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	__u32 zero = 0;
	struct cfg *c = bpf_map_lookup_elem(&cfg, &zero);
	if (!c || data + 14 > end)
		return TC_ACT_OK;
	__u8 *eth = data;
	__u16 et = ((__u16)eth[12] << 8) | eth[13];
	__u8 *ip = data + 14;
	struct addr_key pk = {};
	__u32 l3hl, outer_total;
	int outer6, gre;
	if (et == ETH_P_IP) {
		if ((void *)(ip + 20 + 8 + 4) > end)
			return TC_ACT_OK;
		if (ip[0] != 0x45 || (ip[9] != IPPROTO_UDP && ip[9] != IPPROTO_GRE_) || !c->has4)
			return TC_ACT_OK;
		gre = ip[9] == IPPROTO_GRE_;
		if ((ip[6] & 0x3f) || ip[7])
			return TC_ACT_OK; /* fragment: the stack reassembles */
		if (neq(ip + 16, c->src4, 4))
			return TC_ACT_OK;
		outer_total = ((__u32)ip[2] << 8) | ip[3];
		l3hl = 20;
		pk.fam = 4;
		__builtin_memcpy(pk.addr, ip + 12, 4);
		outer6 = 0;
	} else if (et == ETH_P_IPV6) {
		if ((void *)(ip + 40 + 8 + 4) > end)
			return TC_ACT_OK;
		if ((ip[6] != IPPROTO_UDP && ip[6] != IPPROTO_GRE_) || !c->has6)
			return TC_ACT_OK;
		gre = ip[6] == IPPROTO_GRE_;
		if (neq(ip + 24, c->src6, 16))
			return TC_ACT_OK;
		outer_total = 40 + (((__u32)ip[4] << 8) | ip[5]);
		l3hl = 40;
		pk.fam = 6;
		__builtin_memcpy(pk.addr, ip + 8, 16);
		outer6 = 1;
	} else {
		return TC_ACT_OK;
	}
	/* MPLS-in-UDP: UDP header (8) then the label; MPLS-in-GRE: a GRE header
	 * without optional fields (4, else the slow path parses it), the label */
	__u8 *udp = ip + l3hl;
	if ((void *)(udp + 12) > end)
		return TC_ACT_OK;
	__u32 shim = 8, lse;
	if (gre) {
		if (udp[0] || udp[1] || udp[2] != 0x88 || udp[3] != 0x47)
			return TC_ACT_OK;
		shim = 4;
		lse = ((__u32)udp[4] << 24) | ((__u32)udp[5] << 16) | ((__u32)udp[6] << 8) | udp[7];
	} else {
		if (udp[2] != (MPLS_UDP_PORT >> 8) || udp[3] != (MPLS_UDP_PORT & 0xff))
			return TC_ACT_OK;
		lse = ((__u32)udp[8] << 24) | ((__u32)udp[9] << 16) | ((__u32)udp[10] << 8) | udp[11];
	}
	/* octets the userspace path counts: from the label (UDP) or the GRE header */
	__u32 ul_len = skb->len - 14 - l3hl - (gre ? 0 : 8);
	if (!skb->gso_size && skb->len != 14 + outer_total)
		return TC_ACT_OK;
	struct ul_ctr *u = bpf_map_lookup_elem(&ul_ctrs, &zero);
	if (!bpf_map_lookup_elem(&peers, &pk)) {
		count_drop(D_UNDERLAY_UNKNOWN_SOURCE);
		if (u) {
			u->rx_packets += 1;
			u->rx_bytes += ul_len;
		}
		return TC_ACT_SHOT;
	}
	struct label_val *lv;
	__u32 depth = 1;
	if (!(lse & 0x100)) {
		/* a label stack (Inter-AS option C): our loopback's labeled-unicast label
		 * is popped and the next one (the bottom) decides, a transit labeled-unicast
		 * label is swapped; anything else takes the userspace path */
		__u32 top = lse >> 12;
		lv = bpf_map_lookup_elem(&labels, &top);
		if (!lv)
			return TC_ACT_OK;
		if (lv->kind == LBL_SWAP)
			return swap_stack(skb, c, lv, lse, outer6, shim, ((__u16)udp[0] << 8) | udp[1], ul_len);
		if (lv->kind != LBL_POP)
			return TC_ACT_OK;
		__u8 *nx = udp + shim + 4;
		if ((void *)(nx + 4) > end)
			return TC_ACT_OK;
		lse = ((__u32)nx[0] << 24) | ((__u32)nx[1] << 16) | ((__u32)nx[2] << 8) | nx[3];
		if (!(lse & 0x100))
			return TC_ACT_OK;
		depth = 2;
	}
	__u32 label = lse >> 12;
	lv = bpf_map_lookup_elem(&labels, &label);
	if (!lv) {
		count_drop(D_UNKNOWN_LABEL);
		if (u) {
			u->rx_packets += 1;
			u->rx_bytes += ul_len;
		}
		return TC_ACT_SHOT;
	}
	if (lv->kind != LBL_VRF && lv->kind != LBL_PORT)
		return TC_ACT_OK;
	__u32 inner_off = 14 + l3hl + shim + 4 * depth;
	__u8 *in = udp + shim + 4 * depth;
	__u32 total, ttl;
	int v6;
	struct rt_val *rt;
	__u32 fh = 0;
	if ((void *)(in + 1) > end)
		return TC_ACT_OK;
	if ((in[0] >> 4) == 4) {
		if ((void *)(in + 20) > end || in[0] != 0x45)
			return TC_ACT_OK;
		total = ((__u32)in[2] << 8) | in[3];
		if (!skb->gso_size && total != skb->len - inner_off)
			return TC_ACT_OK;
		if ((in[16] >> 4) == 0xE || (in[16] == 0xff && in[17] == 0xff && in[18] == 0xff && in[19] == 0xff))
			return TC_ACT_OK; /* replication: the slow path */
		ttl = in[8];
		v6 = 0;
	} else if ((in[0] >> 4) == 6) {
		if ((void *)(in + 40) > end)
			return TC_ACT_OK;
		total = 40 + (((__u32)in[4] << 8) | in[5]);
		if (!skb->gso_size && total != skb->len - inner_off)
			return TC_ACT_OK;
		if (in[24] == 0xff)
			return TC_ACT_OK;
		ttl = in[7];
		v6 = 1;
	} else {
		return TC_ACT_OK;
	}
	if (ttl <= 1)
		return TC_ACT_OK;
	__u32 vrf = lv->vrf;
	struct vrf_ctr *vc = vrf_ctr(vrf);
	__u32 oif;
	if (lv->kind == LBL_PORT) {
		/* ingress check: the inner source is routed via the vPE that sent it */
		if (!v6) {
			struct rt4_key rk = { .plen = 64, .vrf = vrf };
			__builtin_memcpy(rk.addr, in + 12, 4);
			rt = bpf_map_lookup_elem(&routes4, &rk);
		} else {
			struct rt6_key rk = { .plen = 160, .vrf = vrf };
			__builtin_memcpy(rk.addr, in + 8, 16);
			rt = bpf_map_lookup_elem(&routes6, &rk);
		}
		struct addr_key ek = pk;
		if (rt)
			ek.id = rt->nhg;
		if (!rt || !bpf_map_lookup_elem(&group_eps, &ek)) {
			count_drop(D_INGRESS_CHECK);
			if (vc)
				vc->drops += 1;
			struct port_ctr *opc = port_ctr(lv->ifindex);
			if (opc)
				opc->drops += 1;
			if (u) {
				u->rx_packets += 1;
				u->rx_bytes += ul_len;
			}
			return TC_ACT_SHOT;
		}
		oif = lv->ifindex;
	} else {
		/* a directed broadcast of the VRF is replicated by the slow path */
		if (!v6) {
			struct addr_key bk = { .id = vrf, .fam = 4 };
			__builtin_memcpy(bk.addr, in + 16, 4);
			if (bpf_map_lookup_elem(&bcasts, &bk))
				return TC_ACT_OK;
			struct rt4_key rk = { .plen = 64, .vrf = vrf };
			__builtin_memcpy(rk.addr, in + 16, 4);
			rt = bpf_map_lookup_elem(&routes4, &rk);
		} else {
			struct rt6_key rk = { .plen = 160, .vrf = vrf };
			__builtin_memcpy(rk.addr, in + 24, 16);
			rt = bpf_map_lookup_elem(&routes6, &rk);
		}
		if (!rt)
			return TC_ACT_OK;
		struct nhg_val *g = bpf_map_lookup_elem(&nhgs, &rt->nhg);
		if (!g)
			return TC_ACT_OK;
		if (g->nlocal == 0) {
			if (!(rt->flags & RT_F_TRANSIT) || outer6)
				return TC_ACT_OK;
			return retunnel(skb, c, rt, g, in, end, total, v6, ttl, pk.addr,
					l3hl + shim + 4 * depth, vc, ul_len);
		}
		if (g->nlocal > 1)
			fh = v6 ? flow_hash6(in, end, total) : flow_hash4(in, end, total);
		__u32 *nid = pick_local(rt, g, fh);
		if (!nid)
			return TC_ACT_OK;
		struct nh_val *nh = bpf_map_lookup_elem(&nhs, nid);
		if (!nh || nh->kind != NH_LOCAL)
			return TC_ACT_OK;
		oif = nh->ifindex;
	}
	int rc = decap_deliver(skb, l3hl + shim + 4 * depth, outer6, v6, oif, ttl, vc, inner_off);
	if (rc == TC_ACT_REDIRECT) {
		if (u) {
			u->rx_packets += 1;
			u->rx_bytes += ul_len;
		}
		if (depth > 1)
			count_fast(F_POPPED);
	}
	return rc;
}

char LICENSE[] SEC("license") = "GPL v2";  /* the GPL-2.0-only option of the SPDX line */
