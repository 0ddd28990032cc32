// Per-syscall counts, errors and log2 latency histograms from the sys_enter
// and sys_exit raw tracepoints (BTF-typed: tp_btf), optionally filtered by
// process (tgid), cgroup or command name.
//
// Cost per event is kept to a handful of instructions and no map helper
// calls: the filter is read-only data set before load (the verifier drops the
// checks of filters that are off), the start time lives in a plain array
// indexed by thread id (its lookup is inlined into a bounds check and an
// address computation), and each syscall's count, total, errors and histogram
// share one per-CPU value, so an exit touches one slot of one map.
//
// Invariants: a latency is recorded only for an exit whose enter was seen for
// the same thread (the start is cleared on exit); the syscall number recorded
// is the one the exit tracepoint reports (regs->orig_ax), as bpftrace's
// args->id; exit and exit_group never return, so their enter is not recorded
// (a later thread reusing the id would otherwise find a stale start).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define MAX_SYSCALLS 512
#define SLOTS 32
#define NR_EXIT 60
#define NR_EXIT_GROUP 231

struct trace_config {
	__u32 tgid;      // 0: any process
	__u32 use_comm;  // 1: match comm
	__u64 cgroup_id; // 0: any cgroup
	char comm[16];
};

// Set by the loader before load; read-only to the programs.
const volatile struct trace_config cfg = {};

struct totals {
	__u64 count;
	__u64 total_ns;
	__u64 errors;
	__u64 hist[SLOTS]; // bucket i: [2**i, 2**(i+1)) ns; bucket 0 also holds 0 and 1
};

// Start time per thread id; max_entries is set to the kernel's pid_max at load.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 32768);
} starts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct totals);
	__uint(max_entries, MAX_SYSCALLS);
} per_syscall SEC(".maps");

static __always_inline int wanted(__u64 pid_tgid)
{
	if (cfg.tgid && (pid_tgid >> 32) != cfg.tgid)
		return 0;
	if (cfg.cgroup_id && bpf_get_current_cgroup_id() != cfg.cgroup_id)
		return 0;
	if (cfg.use_comm) {
		char comm[16];
		bpf_get_current_comm(comm, sizeof(comm));
#pragma unroll
		for (int i = 0; i < 16; i++) {
			if (comm[i] != cfg.comm[i])
				return 0;
			if (comm[i] == 0)
				break;
		}
	}
	return 1;
}

// floor(log2(v)) for v >= 2, 0 for 0 and 1, capped at SLOTS - 1: a binary search
// of six steps instead of a loop of up to 31.
static __always_inline __u32 log2_slot(__u64 v)
{
	__u32 r = 0, s;
	s = (v > 0xFFFFFFFFULL) << 5;
	v >>= s;
	r |= s;
	s = (v > 0xFFFF) << 4;
	v >>= s;
	r |= s;
	s = (v > 0xFF) << 3;
	v >>= s;
	r |= s;
	s = (v > 0xF) << 2;
	v >>= s;
	r |= s;
	s = (v > 0x3) << 1;
	v >>= s;
	r |= s;
	r |= (__u32)(v >> 1);
	return r < SLOTS ? r : SLOTS - 1;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(trace_enter, struct pt_regs *regs, long id)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	if (id == NR_EXIT || id == NR_EXIT_GROUP || !wanted(pid_tgid))
		return 0;
	__u32 tid = (__u32)pid_tgid;
	__u64 *start = bpf_map_lookup_elem(&starts, &tid);
	if (start)
		*start = bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(trace_exit, struct pt_regs *regs, long ret)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	__u64 *start = bpf_map_lookup_elem(&starts, &tid);
	if (!start || !*start)
		return 0;
	__u64 delta = bpf_ktime_get_ns() - *start;
	*start = 0;
	__u32 id = (__u32)regs->orig_ax;
	struct totals *t = bpf_map_lookup_elem(&per_syscall, &id);
	if (!t)
		return 0;
	t->count += 1;
	t->total_ns += delta;
	if (ret < 0)
		t->errors += 1;
	t->hist[log2_slot(delta)] += 1;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
