/* bpf(2) wrappers for the cgroup v2 device controller; see ck_bpf.h. */
#include "ck_bpf.h"

#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef BPF_F_ALLOW_MULTI
#define BPF_F_ALLOW_MULTI (1U << 1) /* Linux 4.15 */
#endif

static int ck_bpf(int cmd, union bpf_attr *attr)
{
    return (int)syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

int ck_bpf_load_cgroup_device(const struct bpf_insn *insns, uint32_t insn_count, const char *license)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (uint64_t)(uintptr_t)insns;
    attr.insn_cnt = insn_count;
    attr.license = (uint64_t)(uintptr_t)license;
    /* Shown by `bpftool prog`; the kernel accepts [A-Za-z0-9_.] up to 15 bytes (Linux 4.15). */
    memcpy(attr.prog_name, "berth_devices", sizeof("berth_devices"));
    return ck_bpf(BPF_PROG_LOAD, &attr);
}

int ck_bpf_attach_cgroup_device(int cgroup_fd, int prog_fd)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.target_fd = (uint32_t)cgroup_fd;
    attr.attach_bpf_fd = (uint32_t)prog_fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    attr.attach_flags = BPF_F_ALLOW_MULTI;
    return ck_bpf(BPF_PROG_ATTACH, &attr);
}

int ck_bpf_detach_cgroup_device(int cgroup_fd, int prog_fd)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.target_fd = (uint32_t)cgroup_fd;
    attr.attach_bpf_fd = (uint32_t)prog_fd;
    attr.attach_type = BPF_CGROUP_DEVICE;
    return ck_bpf(BPF_PROG_DETACH, &attr);
}
