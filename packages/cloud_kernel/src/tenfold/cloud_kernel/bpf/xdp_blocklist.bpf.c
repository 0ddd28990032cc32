// XDP block list: drop frames whose IPv4 or IPv6 source address falls in a
// blocked prefix (longest-prefix-match tries), count per rule and per verdict.
//
// Invariants: every packet access is bounds-checked against data_end before it
// is read (the verifier insists); malformed frames are never dropped by this
// program (it is a block list, not a validator) but are counted; an IPv4 /24
// whose host (prefix) marker is zero holds no host (prefix) rule: markers are
// set before a rule is inserted and never cleared while the program runs, so
// the probe they skip could not have matched.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8

enum stat_index {
	STAT_PASSED = 0,
	STAT_DROPPED = 1,
	STAT_RUNT = 2,
	STAT_BAD_HEADER = 3,
	STAT_NOT_IP = 4,
	STAT_FRAGMENT = 5,
	STAT_MAX = 8,
};

struct lpm_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct lpm_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct rule_value {
	__u64 packets;
	__u64 bytes;
	__u32 rule_id;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_v4_key);
	__type(value, struct rule_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 262144);
} blocked_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_v6_key);
	__type(value, struct rule_value);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 262144);
} blocked_v6 SEC(".maps");

// Exact host entries (/32, /128) sit in hash maps: one O(1) probe instead of a
// walk down the trie; the tries hold only real prefixes.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct rule_value);
	__uint(max_entries, 262144);
} hosts_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct in6_addr);
	__type(value, struct rule_value);
	__uint(max_entries, 262144);
} hosts_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, STAT_MAX);
} stats SEC(".maps");

// Two marker bytes per IPv4 /24 (2^25 bytes as 2^22 words, 32 MB): the first is
// nonzero when a host rule (/32) lies in the /24, the second when a prefix rule
// touches it. Userspace writes single bytes through mmap, so two writers never
// lose each other's marks. The lookup is inlined by the verifier (a bounds
// check and a load): traffic from address space without rules, the common
// case, costs no hash or trie probe, and a /24 with only hosts (or only
// prefixes) costs one probe, not two.
#define MARK_HOSTS 0x00ff
#define MARK_PREFIXES 0xff00

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1 << 22);
} v4_marks SEC(".maps");

static __always_inline __u32 v4_marks_of(__u32 saddr)
{
	__u32 slash24 = bpf_ntohl(saddr) >> 8;
	__u32 word = slash24 >> 2;
	__u64 *marks = bpf_map_lookup_elem(&v4_marks, &word);
	return marks ? (__u32)(*marks >> ((slash24 & 3) * 16)) & 0xffff : 0;
}

static __always_inline void count(__u32 index)
{
	__u64 *value = bpf_map_lookup_elem(&stats, &index);
	if (value)
		*value += 1;
}

static __always_inline int verdict(struct rule_value *rule, __u64 len)
{
	if (rule) {
		__sync_fetch_and_add(&rule->packets, 1);
		__sync_fetch_and_add(&rule->bytes, len);
		count(STAT_DROPPED);
		return XDP_DROP;
	}
	count(STAT_PASSED);
	return XDP_PASS;
}

SEC("xdp")
int xdp_blocklist(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u64 len = data_end - data;
	struct ethhdr *eth = data;
	__u16 proto;
	void *cursor;

	if ((void *)(eth + 1) > data_end) {
		count(STAT_RUNT);
		return XDP_PASS;
	}
	proto = eth->h_proto;
	cursor = eth + 1;

	// Up to two VLAN tags (802.1ad outer, 802.1Q inner).
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vlan = cursor;
		if ((void *)(vlan + 1) > data_end) {
			count(STAT_RUNT);
			return XDP_PASS;
		}
		proto = vlan->h_vlan_encapsulated_proto;
		cursor = vlan + 1;
	}

	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cursor;
		if ((void *)(ip + 1) > data_end) {
			count(STAT_RUNT);
			return XDP_PASS;
		}
		// IHL below 5 words or a header running past the frame: malformed.
		if (ip->ihl < 5 || ip->version != 4 || cursor + ip->ihl * 4 > data_end) {
			count(STAT_BAD_HEADER);
			return XDP_PASS;
		}
		// Fragments carry the source address too: each one is judged on it.
		if (ip->frag_off & bpf_htons(0x3FFF))
			count(STAT_FRAGMENT);
		__u32 saddr = ip->saddr;
		__u32 marks = v4_marks_of(saddr);
		if (!marks)
			return verdict(NULL, len);
		struct rule_value *rule = NULL;
		if (marks & MARK_HOSTS)
			rule = bpf_map_lookup_elem(&hosts_v4, &saddr);
		if (!rule && (marks & MARK_PREFIXES)) {
			struct lpm_v4_key key = {.prefixlen = 32};
			__builtin_memcpy(key.addr, &saddr, 4);
			rule = bpf_map_lookup_elem(&blocked_v4, &key);
		}
		return verdict(rule, len);
	}
	if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cursor;
		if ((void *)(ip6 + 1) > data_end) {
			count(STAT_RUNT);
			return XDP_PASS;
		}
		if (ip6->version != 6) {
			count(STAT_BAD_HEADER);
			return XDP_PASS;
		}
		struct in6_addr saddr6;
		__builtin_memcpy(&saddr6, &ip6->saddr, 16);
		struct rule_value *rule = bpf_map_lookup_elem(&hosts_v6, &saddr6);
		if (!rule) {
			struct lpm_v6_key key = {.prefixlen = 128};
			__builtin_memcpy(key.addr, &saddr6, 16);
			rule = bpf_map_lookup_elem(&blocked_v6, &key);
		}
		return verdict(rule, len);
	}
	count(STAT_NOT_IP);
	count(STAT_PASSED);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
