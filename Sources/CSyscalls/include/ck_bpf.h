/*
 * bpf(2) wrappers for the cgroup v2 device controller (parent side only).
 *
 * Why C: glibc has no bpf() wrapper, syscall() is variadic and so cannot be called from Swift,
 * and union bpf_attr is a union of anonymous structs that Swift imports awkwardly. The
 * instructions themselves are built in Swift (DeviceRule.swift) as struct bpf_insn, imported from
 * <linux/bpf.h> so that the register bitfields follow the kernel's layout on every architecture.
 *
 * Unlike the init-sequence functions in CChildPath's ck_spawn.h, these run in the host process and behave like
 * libc system call wrappers: they return -1 and set errno on failure, so Swift can route them
 * through its sys() helper.
 */
#ifndef CK_BPF_H
#define CK_BPF_H

#include <linux/bpf.h>
#include <stdint.h>

/*
 * Loads a BPF_PROG_TYPE_CGROUP_DEVICE program (Linux 4.15) under the given license.
 * Returns the program's file descriptor (always close-on-exec).
 */
int ck_bpf_load_cgroup_device(const struct bpf_insn *insns, uint32_t insn_count, const char *license);

/*
 * Attaches a device program to a cgroup v2 directory as BPF_CGROUP_DEVICE with
 * BPF_F_ALLOW_MULTI (Linux 4.15), so programs attached by ancestors keep running as well.
 */
int ck_bpf_attach_cgroup_device(int cgroup_fd, int prog_fd);

/* Detaches one BPF_CGROUP_DEVICE program that ck_bpf_attach_cgroup_device attached. */
int ck_bpf_detach_cgroup_device(int cgroup_fd, int prog_fd);

#endif
