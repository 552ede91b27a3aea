/*
 * Child-side security steps.  See security.h.
 *
 * Runs between clone and exec, possibly in a vfork-like child that shares the
 * parent's memory: raw system calls only, no allocation, no libc wrappers
 * that keep state (libcap, glibc's setxid broadcast), errors as -errno.
 */
#include "security.h"

#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_IS_SET 1
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_LOWER 3
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
#ifndef PR_CAPBSET_DROP
#define PR_CAPBSET_READ 23
#define PR_CAPBSET_DROP 24
#endif
#ifndef SECCOMP_SET_MODE_FILTER
#define SECCOMP_SET_MODE_FILTER 1
#endif
#ifndef __NR_seccomp
#define __NR_seccomp 317 /* x86_64; aarch64 has it in every C library */
#endif

/* Set i of ints (0 bounding, 1 effective, 2 permitted, 3 inheritable,
 * 4 ambient) as a 64-bit mask. */
static uint64_t cap_word(const struct nsp_step *s, int i)
{
    return (uint64_t)(uint32_t)s->ints[2 * i] | ((uint64_t)(uint32_t)s->ints[2 * i + 1] << 32);
}

static int drop_bounding(uint64_t keep)
{
    for (int cap = 0; cap < 64; cap++) {
        if (keep & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, (unsigned long)cap, 0, 0, 0) == 0)
            continue;
        if (errno == EINVAL)
            break; /* past the kernel's last capability */
        /* EPERM without CAP_SETPCAP: fine if the capability is gone already. */
        int err = errno;
        if (prctl(PR_CAPBSET_READ, (unsigned long)cap, 0, 0, 0) != 0)
            return -err;
    }
    return 0;
}

static uint64_t read_bounding(void)
{
    uint64_t set = 0;
    for (int cap = 0; cap < 64; cap++) {
        int r = prctl(PR_CAPBSET_READ, (unsigned long)cap, 0, 0, 0);
        if (r < 0)
            break;
        if (r)
            set |= 1ULL << cap;
    }
    return set;
}

static int set_sets(const struct nsp_step *s)
{
    struct __user_cap_header_struct hdr;
    struct __user_cap_data_struct data[2];
    uint64_t eff = cap_word(s, 1), prm = cap_word(s, 2), inh = cap_word(s, 3), amb = cap_word(s, 4);

    memset(&hdr, 0, sizeof hdr);
    memset(data, 0, sizeof data);
    hdr.version = _LINUX_CAPABILITY_VERSION_3;
    hdr.pid = 0;
    if (s->flags & NSP_CAPS_CLAMP) {
        if (syscall(SYS_capget, &hdr, data) < 0)
            return -errno;
        uint64_t old_prm = (uint64_t)data[0].permitted | ((uint64_t)data[1].permitted << 32);
        uint64_t old_inh = (uint64_t)data[0].inheritable | ((uint64_t)data[1].inheritable << 32);
        prm &= old_prm;
        /* capset: pI' within pI | bounding, and within pI | pP unless
         * CAP_SETPCAP is effective (it rarely is by now). */
        inh &= old_inh | (read_bounding() & old_prm);
        hdr.version = _LINUX_CAPABILITY_VERSION_3;
        hdr.pid = 0;
    }
    eff &= prm;
    amb &= prm & inh;
    data[0].effective = (uint32_t)eff;
    data[1].effective = (uint32_t)(eff >> 32);
    data[0].permitted = (uint32_t)prm;
    data[1].permitted = (uint32_t)(prm >> 32);
    data[0].inheritable = (uint32_t)inh;
    data[1].inheritable = (uint32_t)(inh >> 32);
    if (syscall(SYS_capset, &hdr, data) < 0)
        return -errno;

    /* Ambient: clear, then raise each (each needs to be permitted and
     * inheritable, which capset just made sure of). */
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0) {
        if (errno != EINVAL || amb != 0) /* EINVAL: a kernel before 4.3 */
            return -errno;
    }
    for (int cap = 0; cap < 64; cap++) {
        if (!(amb & (1ULL << cap)))
            continue;
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, (unsigned long)cap, 0, 0) < 0)
            return -errno;
    }
    /* The uid switch is over: later ones must clear capabilities again. */
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
        return -errno;
    return 0;
}

int nsp_child_set_caps(const struct nsp_step *s)
{
    if (s->ints == NULL || s->nints != 10)
        return -EINVAL;
    int flags = s->flags ? s->flags : (NSP_CAPS_BOUNDING | NSP_CAPS_SETS);
    int r;
    if (flags & NSP_CAPS_BOUNDING) {
        r = drop_bounding(cap_word(s, 0));
        if (r < 0)
            return r;
    }
    if (flags & NSP_CAPS_KEEP) {
        if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
            return -errno;
    }
    if (flags & NSP_CAPS_SETS) {
        r = set_sets(s);
        if (r < 0)
            return r;
    }
    return 0;
}

int nsp_child_seccomp(const struct nsp_step *s)
{
    struct sock_fprog prog;
    if (s->str == NULL || s->a <= 0 || s->a > BPF_MAXINSNS)
        return -EINVAL;
    prog.len = (unsigned short)s->a;
    prog.filter = (struct sock_filter *)(uintptr_t)s->str;
    if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, (unsigned)s->flags, &prog) == 0)
        return 0;
    if (errno != ENOSYS || s->flags != 0)
        return -errno;
    /* Kernels before 3.17: the prctl interface (no filter flags). */
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
        return -errno;
    return 0;
}
