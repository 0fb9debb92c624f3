/*
 * berth-init: a tiny PID 1 for `berth run --init` (like tini / docker-init).
 * Bind-mounted read-only at /dev/init; runs `/dev/init -- CMD ARGS...`.
 * It forwards catchable signals to the child and reaps every zombie (orphans
 * are reparented to PID 1 in a PID namespace, which a shell or an
 * application may never wait for); it exits with the child's status.
 * Static (musl) so it runs in any image, with or without a libc.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t child;

static void forward(int sig) {
    if (child > 0)
        kill(child, sig);
}

int main(int argc, char **argv) {
    int i = 1;
    if (i < argc && !strcmp(argv[i], "--"))
        i++;
    if (i >= argc) {
        fprintf(stderr, "berth-init: usage: berth-init -- CMD [ARG...]\n");
        return 125;
    }
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    child = fork();
    if (child < 0) {
        perror("berth-init: fork");
        return 125;
    }
    if (child == 0) {
        sigprocmask(SIG_SETMASK, &old, NULL);
        setpgid(0, 0);
        execvp(argv[i], argv + i);
        fprintf(stderr, "berth-init: exec %s: %s\n", argv[i], strerror(errno));
        _exit(errno == ENOENT ? 127 : 126);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    for (int s = 1; s < NSIG; s++)
        if (s != SIGCHLD && s != SIGKILL && s != SIGSTOP)
            sigaction(s, &sa, NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    for (;;) {
        int st;
        pid_t p = wait(&st);
        if (p < 0) {
            if (errno == EINTR)
                continue;
            return 125;
        }
        if (p == child) {
            /* reap what is left, then leave with the child's status */
            while (waitpid(-1, NULL, WNOHANG) > 0) {
            }
            if (WIFEXITED(st))
                return WEXITSTATUS(st);
            return 128 + WTERMSIG(st);
        }
    }
}
