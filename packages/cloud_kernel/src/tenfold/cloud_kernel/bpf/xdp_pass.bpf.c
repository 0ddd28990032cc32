// An XDP program that passes every frame and does nothing else: what
// BPF_PROG_TEST_RUN costs per run before any program work, the floor the block
// list's figures are read against.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
