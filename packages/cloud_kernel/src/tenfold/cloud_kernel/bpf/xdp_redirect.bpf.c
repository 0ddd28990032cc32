// The frame source's second half in the end-to-end XDP benchmark: attached
// (native) to a veth whose peer the sender writes to, it redirects every frame
// out of the veth under test. The redirected frame crosses as a page, the way
// a NIC's receive ring hands frames to its driver: the filter on the far side
// sees it before any socket buffer exists. The copy into that page is paid
// here, once, before either filter (XDP or nftables) is reached.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32); // the ifindex to send every frame out of
	__uint(max_entries, 1);
} redirect_to SEC(".maps");

SEC("xdp")
int xdp_redirect(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u32 *ifindex = bpf_map_lookup_elem(&redirect_to, &zero);

	if (!ifindex || !*ifindex)
		return XDP_ABORTED;
	return bpf_redirect(*ifindex, 0);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
