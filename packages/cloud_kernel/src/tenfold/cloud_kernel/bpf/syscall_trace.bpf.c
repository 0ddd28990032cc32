// Per-syscall counts and log2 latency histograms from raw_syscalls sys_enter
// and sys_exit, optionally filtered by process (tgid), cgroup or command name.
//
// Invariant: a latency is recorded only for an exit whose enter was seen for
// the same thread; the start entry is deleted on exit so the map stays bounded.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define MAX_SYSCALLS 512
#define SLOTS 32

struct trace_filter_cfg {
	__u32 tgid;      // 0: any process
	__u32 use_comm;  // 1: match comm
	__u64 cgroup_id; // 0: any cgroup
	char comm[16];
};

struct start {
	__u64 ts;
	__u32 id;
	__u32 pad;
};

struct totals {
	__u64 count;
	__u64 total_ns;
	__u64 errors;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct trace_filter_cfg);
	__uint(max_entries, 1);
} trace_filter SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct start);
	__uint(max_entries, 65536);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct totals);
	__uint(max_entries, MAX_SYSCALLS);
} per_syscall SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, MAX_SYSCALLS * SLOTS);
} histogram SEC(".maps");

static __always_inline int wanted(void)
{
	__u32 zero = 0;
	struct trace_filter_cfg *f = bpf_map_lookup_elem(&trace_filter, &zero);
	if (!f)
		return 1;
	if (f->tgid && (bpf_get_current_pid_tgid() >> 32) != f->tgid)
		return 0;
	if (f->cgroup_id && bpf_get_current_cgroup_id() != f->cgroup_id)
		return 0;
	if (f->use_comm) {
		char comm[16];
		bpf_get_current_comm(comm, sizeof(comm));
#pragma unroll
		for (int i = 0; i < 16; i++) {
			if (comm[i] != f->comm[i])
				return 0;
			if (comm[i] == 0)
				break;
		}
	}
	return 1;
}

static __always_inline __u32 log2_slot(__u64 v)
{
	__u32 slot = 0;
#pragma unroll
	for (int i = 0; i < SLOTS - 1; i++) {
		if (v <= 1)
			break;
		v >>= 1;
		slot++;
	}
	return slot;
}

SEC("tracepoint/raw_syscalls/sys_enter")
int trace_enter(struct trace_event_raw_sys_enter *ctx)
{
	if (ctx->id < 0 || ctx->id >= MAX_SYSCALLS || !wanted())
		return 0;
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct start s = {.ts = bpf_ktime_get_ns(), .id = (__u32)ctx->id};
	bpf_map_update_elem(&starts, &tid, &s, BPF_ANY);
	return 0;
}

SEC("tracepoint/raw_syscalls/sys_exit")
int trace_exit(struct trace_event_raw_sys_exit *ctx)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct start *s = bpf_map_lookup_elem(&starts, &tid);
	if (!s)
		return 0;
	__u64 delta = bpf_ktime_get_ns() - s->ts;
	__u32 id = s->id;
	bpf_map_delete_elem(&starts, &tid);
	if (id >= MAX_SYSCALLS)
		return 0;
	struct totals *t = bpf_map_lookup_elem(&per_syscall, &id);
	if (t) {
		t->count += 1;
		t->total_ns += delta;
		if (ctx->ret < 0)
			t->errors += 1;
	}
	__u32 index = id * SLOTS + log2_slot(delta);
	__u64 *bucket = bpf_map_lookup_elem(&histogram, &index);
	if (bucket)
		*bucket += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
