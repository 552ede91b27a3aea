/*
 * NSP_STEP_INIT: a minimal pid 1.  The child forks; the payload goes on with
 * the plan, and the parent stays as init: it reaps every child and forwards
 * signals.  A copy of a (possibly threaded) Python process that never execs:
 * system calls only, no allocation, no locks.
 */
#include "init.h"

int nsp_child_become_init(int report_fd, int sync_fd)
{
    pid_t payload = nsp_raw_fork();
    if (payload < 0)
        return -errno;
    if (payload == 0)
        return 0;

    if (report_fd >= 0)
        close(report_fd);
    if (sync_fd >= 0)
        close(sync_fd);
    prctl(PR_SET_NAME, (unsigned long)"nsprim-init", 0, 0, 0);

    /* Every signal is blocked since clone: take them synchronously. */
    sigset_t all;
    sigfillset(&all);
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&all, &si);
        if (sig < 0) {
            if (errno == EINTR)
                continue;
            _exit(127);
        }
        if (sig != SIGCHLD) {
            kill(payload, sig); /* forward; the payload decides */
            continue;
        }
        for (;;) {
            int status;
            pid_t p = waitpid(-1, &status, WNOHANG);
            if (p <= 0)
                break;
            if (p == payload) {
                /* Leaving pid 1 ends the namespace: the kernel kills the rest. */
                _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
            }
        }
    }
}
