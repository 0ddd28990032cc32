// Socket filter: count every packet a socket sees and drop those matching the
// configured IP protocol and destination port (0 matches any).
//
// For a datagram socket skb->data already points past the IP header, so the
// headers are read relative to the network header. The program returns the
// number of bytes to keep, 0 to drop.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct rule {
	__u32 protocol;  // IPPROTO_*; 0: any
	__u32 dst_port;  // host order; 0: any
	__u32 enabled;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct rule);
	__uint(max_entries, 1);
} sock_rule SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 2); // 0: seen, 1: dropped
} sock_stats SEC(".maps");

static __always_inline void bump(__u32 index)
{
	__u64 *v = bpf_map_lookup_elem(&sock_stats, &index);
	if (v)
		*v += 1;
}

SEC("socket")
int sock_filter(struct __sk_buff *skb)
{
	__u32 zero = 0;
	bump(0);
	struct rule *r = bpf_map_lookup_elem(&sock_rule, &zero);
	if (!r || !r->enabled)
		return skb->len;
	__u8 ver_ihl = 0, proto = 0;
	if (bpf_skb_load_bytes_relative(skb, 0, &ver_ihl, 1, BPF_HDR_START_NET) < 0)
		return skb->len;
	if ((ver_ihl >> 4) != 4)
		return skb->len;
	if (bpf_skb_load_bytes_relative(skb, 9, &proto, 1, BPF_HDR_START_NET) < 0)
		return skb->len;
	if (r->protocol && proto != r->protocol)
		return skb->len;
	if (r->dst_port) {
		__u16 port = 0;
		__u32 off = (ver_ihl & 0xF) * 4 + 2;
		if (bpf_skb_load_bytes_relative(skb, off, &port, 2, BPF_HDR_START_NET) < 0)
			return skb->len;
		if (bpf_ntohs(port) != r->dst_port)
			return skb->len;
	}
	bump(1);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
