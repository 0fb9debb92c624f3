/*
 * berth-monitor: the small process that owns one container while it runs,
 * in the role of podman's conmon. One monitor per container; it outlives the
 * `berth` CLI that launched it, so an idle container costs one small C
 * process rather than a Python interpreter.
 *
 * What it does, in order:
 *   1. daemonizes (fork, setsid, fork) and becomes child subreaper
 *      (PR_SET_CHILD_SUBREAPER) so the container's init, orphaned when the
 *      runtime's `create` exits, is reparented to us and we can reap it;
 *   2. with --attach, says "listening" on --sync-fd and waits (bounded) for
 *      the first attach client, so it sees all output;
 *   3. runs `RUNTIME --root R run --detach --bundle B --pid-file F
 *      [--console-socket S] ID` with the container's stdio on pipes (or
 *      receives the pty master); or, with --adopt-pid, takes over a
 *      container the engine already started in the process that exec'd us
 *      (its init is our child; its output pipes or pty master are the fds
 *      given): no runtime process at all on the first start;
 *   4. reports "pid N" or "error CODE MESSAGE" as one line on --sync-fd and
 *      closes it, so the CLI can go;
 *   5. copies the container's output into a json-file log (docker's format,
 *      size-rotated) and to attach clients (docker's 8-byte stream framing),
 *      and attach clients' input into the container's stdin;
 *   6. reaps the container, writes status.json atomically (exit code or
 *      128+signal, OOM flag, finish time), runs `RUNTIME delete --force ID`
 *      (with --delete-by-client, not when an attach client is still there
 *      at the exit: `run --rm` deletes in-process right after);
 *   7. honours the restart policy (backoff 100 ms doubling, capped at 10 s,
 *      reset after 10 s of running; a `stop-requested` file in the state dir
 *      vetoes restarts), and finally runs --exit-command (e.g. `berth rm`).
 *
 * Files in the state directory (--dir), all written by rename(2):
 *   status.json  {"state":..,"pid":..,"exit_code":..,...}; see write_status()
 *   attach.sock  unix stream socket (bound relative to --dir: sun_path is 108 bytes)
 *   health.json  the last five health-check results when --health-cmd is given
 *
 * Health checks follow docker's rules: a success makes the container healthy
 * at once; --health-retries consecutive failures make it unhealthy; failures
 * of probes begun within --health-start-period of the start, while no probe
 * has succeeded yet, are recorded but not counted (the status stays
 * "starting"). Each start (and restart) begins again at "starting".
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CLIENTS 16
#define LINE_MAX_BYTES 16384 /* docker splits log lines longer than 16 KiB */
#define MAX_ARGS 64

static const char *runtime = "berth-runtime";
static const char *runtime_root = NULL;
static const char *bundle = NULL;
static const char *cid = NULL;
static const char *state_dir = NULL;
static const char *log_path = NULL;
static long long log_max_size = 0; /* 0: unlimited */
static int log_max_file = 1;
static int use_terminal = 0;
static int tty_rows = 0, tty_cols = 0; /* initial window size of the pty */
static int use_stdin = 0;
static int wait_attach = 0;
static int sync_fd = -1;
static const char *restart_policy = "no";
static int restart_max = 0;
static const char *oom_file = NULL;
static char *exit_cmd[MAX_ARGS + 1];
static int exit_cmd_n = 0;
static char *health_cmd = NULL;
static int health_interval = 30, health_timeout = 30, health_retries = 3;
static pid_t adopt_pid = 0; /* --adopt-pid: the container's init, already started */
static int adopt_out = -1, adopt_err = -1, adopt_in = -1, adopt_pty = -1;
static int delete_by_client = 0;
static double health_start_period = 0; /* seconds; 0: every failure counts */

/* ---- small helpers ---------------------------------------------------- */

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "berth-monitor: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(125);
}

static void now_rfc3339(char *buf, size_t n) {
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + k, n - k, ".%09ldZ", ts.tv_nsec);
}

static double mono_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Write `data` to DIR/name via a temporary file and rename(2): readers never
 * see a half-written file, even if we are killed mid-write. */
static void write_atomic(const char *name, const char *data) {
    char tmp[256];
    snprintf(tmp, sizeof tmp, ".%s.tmp", name);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    write_all(fd, data, strlen(data));
    fsync(fd);
    close(fd);
    rename(tmp, name);
}

/* JSON-escape `len` bytes into out (caller gives 6*len+1). Bytes >= 0x80 are
 * passed through: readers decode UTF-8 with replacement, as docker does. */
static size_t json_escape(const char *in, size_t len, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        switch (c) {
        case '"': out[o++] = '\\'; out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; out[o++] = '\\'; break;
        case '\n': out[o++] = '\\'; out[o++] = 'n'; break;
        case '\r': out[o++] = '\\'; out[o++] = 'r'; break;
        case '\t': out[o++] = '\\'; out[o++] = 't'; break;
        default:
            if (c < 0x20 || c == 0x7f)
                o += (size_t)sprintf(out + o, "\\u%04x", c);
            else
                out[o++] = (char)c;
        }
    }
    out[o] = 0;
    return o;
}

/* ---- json-file log with size rotation --------------------------------- */

static int log_fd = -1;
static long long log_size = 0;

static void log_open(void) {
    if (!log_path)
        return;
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    struct stat st;
    log_size = (log_fd >= 0 && fstat(log_fd, &st) == 0) ? st.st_size : 0;
}

/* Rotate like docker's json-file driver: log -> log.1 -> ... -> log.(N-1);
 * the oldest falls off, so the disk used is at most max-size * max-file. */
static void log_rotate(void) {
    char from[4096], to[4096];
    close(log_fd);
    if (log_max_file <= 1) {
        truncate(log_path, 0);
    } else {
        for (int i = log_max_file - 1; i >= 1; i--) {
            if (i == 1)
                snprintf(from, sizeof from, "%s", log_path);
            else
                snprintf(from, sizeof from, "%s.%d", log_path, i - 1);
            snprintf(to, sizeof to, "%s.%d", log_path, i);
            rename(from, to);
        }
    }
    log_open();
}

static void log_line(const char *stream, const char *data, size_t len) {
    if (log_fd < 0)
        return;
    static char esc[LINE_MAX_BYTES * 6 + 1];
    char ts[64];
    json_escape(data, len, esc);
    now_rfc3339(ts, sizeof ts);
    size_t need = strlen(esc) + strlen(stream) + strlen(ts) + 40;
    char *rec = malloc(need);
    if (!rec)
        return;
    int n = snprintf(rec, need, "{\"log\":\"%s\",\"stream\":\"%s\",\"time\":\"%s\"}\n", esc, stream, ts);
    if (log_max_size > 0 && log_size > 0 && log_size + n > log_max_size)
        log_rotate();
    if (log_fd >= 0 && write_all(log_fd, rec, (size_t)n) == 0)
        log_size += n;
    free(rec);
}

/* Per-stream line assembly: a record ends at '\n', at 16 KiB, or at EOF. */
struct stream {
    int fd;
    int id; /* 1 stdout, 2 stderr (docker's stdcopy ids) */
    const char *name;
    char buf[LINE_MAX_BYTES];
    size_t len;
};

static void stream_flush(struct stream *s) {
    if (s->len) {
        log_line(s->name, s->buf, s->len);
        s->len = 0;
    }
}

static void stream_feed(struct stream *s, const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        s->buf[s->len++] = p[i];
        if (p[i] == '\n' || s->len == sizeof s->buf)
            stream_flush(s);
    }
}

/* ---- attach clients --------------------------------------------------- */

static int listen_fd = -1;
static int clients[MAX_CLIENTS];
static int client_eof[MAX_CLIENTS]; /* input ended: poll only for hang-up */
static int nclients = 0;
static int stdin_w = -1; /* write end of the container's stdin (pipe or pty master) */

static void client_drop(int i) {
    close(clients[i]);
    nclients--;
    clients[i] = clients[nclients];
    client_eof[i] = client_eof[nclients];
}

/* Send one docker-framed chunk to every client. A client that cannot take
 * it within SO_SNDTIMEO (2 s) is dropped: a stuck reader must not stall the
 * container's logging. */
static void clients_send(int id, const char *p, size_t n) {
    unsigned char h[8] = {(unsigned char)id, 0, 0, 0,
                          (unsigned char)(n >> 24), (unsigned char)(n >> 16),
                          (unsigned char)(n >> 8), (unsigned char)n};
    for (int i = 0; i < nclients;) {
        if (write_all(clients[i], h, 8) < 0 || write_all(clients[i], p, n) < 0)
            client_drop(i);
        else
            i++;
    }
}

static void clients_accept(void) {
    int c = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (c < 0)
        return;
    if (nclients == MAX_CLIENTS) {
        close(c);
        return;
    }
    struct timeval tv = {2, 0};
    setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    client_eof[nclients] = 0;
    clients[nclients++] = c;
}

static void clients_close_all(void) {
    while (nclients > 0)
        client_drop(0);
}

/* ---- status file ------------------------------------------------------ */

/* Read a small file whole into buf (NUL-terminated); 0 when it is missing,
 * empty or unreadable, so callers treat all three as "nothing there". */
static int read_small(const char *path, char *buf, size_t size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    return 1;
}

static long long monitor_starttime(void) {
    /* field 22 of /proc/self/stat: lets readers detect a recycled pid */
    char buf[1024];
    if (!read_small("/proc/self/stat", buf, sizeof buf))
        return 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    long long v = 0;
    int field = 2;
    for (char *t = strtok(p + 1, " "); t; t = strtok(NULL, " ")) {
        if (++field == 22) {
            v = atoll(t);
            break;
        }
    }
    return v;
}

static long long my_start;
static int restarts = 0;
static char started_at[64] = "";

static void write_status(const char *state, int pid, int exit_code, int oom, const char *finished,
                         const char *error) {
    char buf[8192], err[4096 * 6 + 1] = "";
    if (error)
        json_escape(error, strnlen(error, 4096), err);
    snprintf(buf, sizeof buf,
             "{\"state\":\"%s\",\"pid\":%d,\"exit_code\":%d,\"oom_killed\":%s,"
             "\"started_at\":\"%s\",\"finished_at\":\"%s\",\"restart_count\":%d,"
             "\"monitor_pid\":%d,\"monitor_start\":%lld,\"error\":\"%s\"}\n",
             state, pid, exit_code, oom ? "true" : "false", started_at, finished ? finished : "",
             restarts, (int)getpid(), my_start, err);
    write_atomic("status.json", buf);
}

/* ---- running the runtime ---------------------------------------------- */

/* Every signal back to SIG_DFL. Ignored dispositions survive exec, and glibc's
 * signal()/sigaction() refuse its reserved real-time signals (32, 33), which a
 * posix_spawn'ing parent may leave ignored: use the raw system call. */
static void reset_all_signals(void) {
    struct {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)(void);
        unsigned long mask;
    } ksa = {SIG_DFL, 0, NULL, 0};
    for (int sig = 1; sig <= 64; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            syscall(SYS_rt_sigaction, sig, &ksa, NULL, sizeof ksa.mask);
}


/* Fork and exec the runtime with argv; stdio as given (-1: /dev/null). */
static pid_t spawn(char *const argv[], int in, int out, int err) {
    pid_t p = fork();
    if (p != 0)
        return p;
    int null = open("/dev/null", O_RDWR);
    dup2(in >= 0 ? in : null, 0);
    dup2(out >= 0 ? out : null, 1);
    dup2(err >= 0 ? err : null, 2);
    /* ignored dispositions survive exec: give the runtime (and through it the
     * container, whose shell could not even trap a signal ignored on entry)
     * default ones, and an empty mask */
    reset_all_signals();
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    execvp(argv[0], argv);
    dprintf(2, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
}

/* waitpid for one specific child, keeping the container's status if the
 * container's init is reaped meanwhile (we are its subreaper). */
static pid_t container_pid = -1;
static int container_status = -1;

/* Children reaped while we waited for someone else. With `run --detach` a
 * short-lived container can exit before the runtime does (its zombie is
 * reparented to us when the runtime exits): its status must not be lost
 * before we have read its pid. */
#define EARLY_MAX 64
static pid_t early_pid[EARLY_MAX];
static int early_status[EARLY_MAX];
static int early_n = 0;

static int wait_child(pid_t p) {
    int st;
    for (;;) {
        pid_t r = waitpid(-1, &st, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == p)
            return st;
        if (r == container_pid && container_pid > 0)
            container_status = st;
        else if (early_n < EARLY_MAX) {
            early_pid[early_n] = r;
            early_status[early_n++] = st;
        }
    }
}

/* The status of `pid` if it was reaped early, else -1. */
static int take_early(pid_t pid) {
    for (int i = 0; i < early_n; i++) {
        if (early_pid[i] == pid) {
            int st = early_status[i];
            early_pid[i] = early_pid[--early_n];
            early_status[i] = early_status[early_n];
            return st;
        }
    }
    return -1;
}

static int run_runtime(const char *verb, const char *extra, int out, int err) {
    char *argv[12];
    int n = 0;
    argv[n++] = (char *)runtime;
    if (runtime_root) {
        argv[n++] = "--root";
        argv[n++] = (char *)runtime_root;
    }
    argv[n++] = (char *)verb;
    if (extra)
        argv[n++] = (char *)extra;
    argv[n++] = (char *)cid;
    argv[n] = NULL;
    pid_t p = spawn(argv, -1, out, err);
    if (p < 0)
        return -1;
    return wait_child(p);
}

static void read_all_nonblock(int fd, char *buf, size_t cap) {
    size_t len = strlen(buf);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    while (len + 1 < cap) {
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    buf[len] = 0;
}

/* Last non-empty line of the runtime's error output. */
static void last_line(char *s) {
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' '))
        s[--n] = 0;
    char *nl = strrchr(s, '\n');
    if (nl)
        memmove(s, nl + 1, strlen(nl + 1) + 1);
}

/* Map a failed create to docker's exit codes: 127 the command was not found,
 * 126 it could not be invoked, 125 anything else. */
static int classify(int status, const char *msg) {
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 125;
    if (code == 127 || code == 126)
        return code;
    if (strstr(msg, "no such file or directory") || strstr(msg, "not found") ||
        strstr(msg, "No such file or directory"))
        return 127;
    if (strstr(msg, "permission denied") || strstr(msg, "Permission denied") ||
        strstr(msg, "is a directory") || strstr(msg, "exec format error"))
        return 126;
    return 125;
}

static int recv_fd(int sock) {
    char dummy;
    struct iovec iov = {&dummy, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = u.buf;
    m.msg_controllen = sizeof u.buf;
    if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) < 0)
        return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    if (!c || c->cmsg_type != SCM_RIGHTS)
        return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
}

static void sync_line(const char *line) {
    if (sync_fd >= 0) {
        write_all(sync_fd, line, strlen(line));
        write_all(sync_fd, "\n", 1);
    }
}

static void sync_report(const char *fmt, ...) {
    if (sync_fd < 0)
        return;
    char buf[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    for (char *p = buf; *p; p++)
        if (*p == '\n')
            *p = ' ';
    strcat(buf, "\n");
    write_all(sync_fd, buf, strlen(buf));
    close(sync_fd);
    sync_fd = -1;
}

static int oom_killed(void) {
    if (!oom_file)
        return 0;
    char buf[4096];
    if (!read_small(oom_file, buf, sizeof buf))
        return 0;
    char *p = strstr(buf, "oom_kill ");
    return p && atoi(p + 9) > 0;
}

/* ---- health checks ----------------------------------------------------- */

static double next_health = 0;
static int health_failures = 0;
static const char *health_status = "starting";
static double run_started = 0;   /* monotonic start of the current run */
static double health_began = 0;  /* monotonic start of the probe in flight */
static pid_t health_pid = -1;
static double health_deadline = 0;
static int health_pipe = -1;
static char health_out[4096]; /* docker, too, keeps 4 KiB of a probe's output */
static char health_began_at[64];
#define HEALTH_LOG 5 /* docker keeps the last five results */
static char *health_log[HEALTH_LOG]; /* JSON objects, oldest first */
static int health_log_n = 0;

/* A new run of the container: health starts over, as docker's on each start. */
static void health_reset(void) {
    health_failures = 0;
    health_status = "starting";
    while (health_log_n > 0)
        free(health_log[--health_log_n]);
    unlink("health.json");
    next_health = run_started + health_interval; /* docker: the first probe after one interval */
}

/* A probe still running when its container exited: end it and reap it, so
 * its pid is never signalled after the kernel reuses it. */
static void health_abandon(void) {
    if (health_pid > 0) {
        kill(health_pid, SIGKILL);
        wait_child(health_pid);
        health_pid = -1;
    }
    if (health_pipe >= 0) {
        close(health_pipe);
        health_pipe = -1;
    }
}

static void health_start(void) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return;
    char *argv[] = {(char *)runtime, "--root", (char *)runtime_root, "exec", (char *)cid,
                    "/bin/sh", "-c", health_cmd, NULL};
    health_out[0] = 0;
    health_pid = spawn(argv, -1, p[1], p[1]);
    close(p[1]);
    health_pipe = p[0];
    fcntl(health_pipe, F_SETFL, O_NONBLOCK);
    health_began = mono_now();
    now_rfc3339(health_began_at, sizeof health_began_at);
    health_deadline = health_began + health_timeout;
}

static void health_record(int status) {
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (health_pipe >= 0) {
        read_all_nonblock(health_pipe, health_out, sizeof health_out);
        close(health_pipe);
        health_pipe = -1;
    }
    if (code == 0) {
        health_failures = 0;
        health_status = "healthy";
    } else if (!strcmp(health_status, "starting") && health_began - run_started < health_start_period) {
        /* docker: within the start period, before any success, a failure
         * is logged but does not count towards the retries */
    } else if (++health_failures >= health_retries) {
        health_status = "unhealthy";
    }
    char ts[64], esc[sizeof health_out * 6 + 1];
    now_rfc3339(ts, sizeof ts);
    json_escape(health_out, strlen(health_out), esc);
    char *entry;
    if (asprintf(&entry, "{\"Start\":\"%s\",\"End\":\"%s\",\"ExitCode\":%d,\"Output\":\"%s\"}",
                 health_began_at, ts, code, esc) >= 0) {
        if (health_log_n == HEALTH_LOG) {
            free(health_log[0]);
            memmove(health_log, health_log + 1, (HEALTH_LOG - 1) * sizeof *health_log);
            health_log_n--;
        }
        health_log[health_log_n++] = entry;
    }
    size_t need = 128;
    for (int i = 0; i < health_log_n; i++)
        need += strlen(health_log[i]) + 1;
    char *buf = malloc(need);
    if (buf) {
        size_t k = (size_t)snprintf(buf, need, "{\"Status\":\"%s\",\"FailingStreak\":%d,\"Log\":[",
                                    health_status, health_failures);
        for (int i = 0; i < health_log_n; i++)
            k += (size_t)snprintf(buf + k, need - k, "%s%s", i ? "," : "", health_log[i]);
        snprintf(buf + k, need - k, "]}\n");
        write_atomic("health.json", buf);
        free(buf);
    }
    health_pid = -1;
    next_health = mono_now() + health_interval;
}

/* An attached CLI whose terminal was resized writes "ROWS COLS" to the
 * state dir's `winsize` file and sends SIGWINCH. */
static void apply_winsize(int pty) {
    char buf[64];
    if (!read_small("winsize", buf, sizeof buf))
        return;
    int rows = 0, cols = 0;
    if (sscanf(buf, "%d %d", &rows, &cols) == 2 && rows > 0 && cols > 0) {
        struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
        ioctl(pty, TIOCSWINSZ, &ws);
    }
}

/* ---- one container lifetime ------------------------------------------- */

/* With --attach, the first client connects before we read any output, so it
 * sees all of it: say "listening", then wait (bounded: a CLI that died does
 * not block the container). On our own start this is before the container
 * starts; an adopted container may already run, its output waiting in the
 * pipe meanwhile. */
static void await_first_client(void) {
    if (!wait_attach)
        return;
    sync_line("listening");
    struct pollfd lp = {listen_fd, POLLIN, 0};
    if (poll(&lp, 1, 10000) > 0)
        clients_accept();
}

static int should_restart(int code) {
    if (access("stop-requested", F_OK) == 0)
        return 0;
    if (!strcmp(restart_policy, "always") || !strcmp(restart_policy, "unless-stopped"))
        return 1;
    if (!strcmp(restart_policy, "on-failure"))
        return code != 0 && (restart_max == 0 || restarts < restart_max);
    return 0;
}

/* run_once's result: the exit code (or 128+signal) in the low 16 bits, and */
#define RUN_LONG 0x10000    /* it ran long enough to reset the backoff */
#define RUN_RESTART 0x20000 /* the restart policy restarts it: state "restarting" */
static int last_oom = 0;
static char finished_at[64] = "";

/* Returns the exit code with RUN_* flags; -CODE when create failed. */
static int run_once(int first) {
    int outp[2] = {-1, -1}, errp[2] = {-1, -1}, inp[2] = {-1, -1}, rterr[2] = {-1, -1};
    int cs_listen = -1;
    char cs_path[108] = "";
    int pty = -1;
    int cpid = -1;

    if (first && adopt_pid > 0) {
        await_first_client();
        cpid = adopt_pid;
        outp[0] = adopt_out;
        errp[0] = adopt_err;
        inp[1] = adopt_in;
        pty = adopt_pty;
        goto adopted;
    }
    if (pipe2(rterr, O_CLOEXEC) < 0)
        die("pipe: %s", strerror(errno));
    if (use_terminal) {
        snprintf(cs_path, sizeof cs_path, "/tmp/berth-console-%d-%d.sock", (int)getpid(), restarts);
        unlink(cs_path);
        cs_listen = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        memcpy(a.sun_path, cs_path, strlen(cs_path) + 1);
        if (bind(cs_listen, (struct sockaddr *)&a, sizeof a) < 0 || listen(cs_listen, 1) < 0)
            die("console socket %s: %s", cs_path, strerror(errno));
    } else {
        if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0)
            die("pipe: %s", strerror(errno));
        if (use_stdin && pipe2(inp, O_CLOEXEC) < 0)
            die("pipe: %s", strerror(errno));
    }

    if (first)
        await_first_client();

    /* create and start in one runtime call (`run --detach`): one process
     * fewer than create + start on every container start */
    char pidfile[] = "container.pid";
    unlink(pidfile);
    char *argv[16];
    int n = 0;
    argv[n++] = (char *)runtime;
    if (runtime_root) {
        argv[n++] = "--root";
        argv[n++] = (char *)runtime_root;
    }
    argv[n++] = "run";
    argv[n++] = "--detach";
    argv[n++] = "--bundle";
    argv[n++] = (char *)bundle;
    argv[n++] = "--pid-file";
    argv[n++] = pidfile;
    if (use_terminal) {
        argv[n++] = "--console-socket";
        argv[n++] = cs_path;
    }
    argv[n++] = (char *)cid;
    argv[n] = NULL;
    /* In pipe mode the runtime's stderr is the container's stderr pipe
     * (runc hands its own stdio to the container); its errors are read from
     * there when create fails. With a terminal it gets a separate pipe. */
    pid_t cp = spawn(argv, use_terminal ? -1 : inp[0], use_terminal ? rterr[1] : outp[1],
                     use_terminal ? rterr[1] : errp[1]);
    close(rterr[1]);
    if (inp[0] >= 0)
        close(inp[0]);
    if (outp[1] >= 0)
        close(outp[1]);
    if (errp[1] >= 0)
        close(errp[1]);
    if (use_terminal) {
        /* accept the runtime's connection, polling so a runtime that dies
         * before connecting does not hang us */
        for (;;) {
            struct pollfd pf = {cs_listen, POLLIN, 0};
            int r = poll(&pf, 1, 100);
            if (r > 0) {
                int c = accept4(cs_listen, NULL, NULL, SOCK_CLOEXEC);
                if (c >= 0) {
                    pty = recv_fd(c);
                    close(c);
                }
                if (pty >= 0 && tty_rows > 0 && tty_cols > 0) {
                    /* the attaching terminal's size, before the workload starts */
                    struct winsize ws = {.ws_row = (unsigned short)tty_rows, .ws_col = (unsigned short)tty_cols};
                    ioctl(pty, TIOCSWINSZ, &ws);
                }
                break;
            }
            int st;
            pid_t w = waitpid(cp, &st, WNOHANG);
            if (w == cp) {
                cp = -st - 1; /* remember it finished */
                break;
            }
        }
    }
    int st = cp >= 0 ? wait_child(cp) : -(cp + 1);
    if (cs_listen >= 0) {
        close(cs_listen);
        unlink(cs_path);
    }
    char errbuf[4096] = "";
    int failed = !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!failed) {
        FILE *f = fopen(pidfile, "re");
        if (!f || fscanf(f, "%d", &cpid) != 1)
            failed = 1, snprintf(errbuf, sizeof errbuf, "runtime create wrote no pid file");
        if (f)
            fclose(f);
    }
    if (failed) {
        if (!errbuf[0]) {
            read_all_nonblock(use_terminal ? rterr[0] : errp[0], errbuf, sizeof errbuf);
            if (!use_terminal)
                read_all_nonblock(outp[0], errbuf, sizeof errbuf);
            last_line(errbuf);
            if (!errbuf[0])
                snprintf(errbuf, sizeof errbuf, "%s create exited with status %d", runtime,
                         WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        }
        int code = classify(st, errbuf);
        run_runtime("delete", "--force", -1, -1);
        char ts[64];
        now_rfc3339(ts, sizeof ts);
        write_status("exited", 0, code, 0, ts, errbuf);
        if (first)
            sync_report("error %d %s", code, errbuf);
        close(rterr[0]);
        if (outp[0] >= 0)
            close(outp[0]);
        if (errp[0] >= 0)
            close(errp[0]);
        if (inp[1] >= 0)
            close(inp[1]);
        if (pty >= 0)
            close(pty);
        return -code;
    }
    close(rterr[0]);
adopted:
    container_pid = cpid;
    container_status = take_early(cpid);
    early_n = 0;
    stdin_w = use_terminal ? pty : inp[1];
    now_rfc3339(started_at, sizeof started_at);
    /* status first: whoever reads our "pid" line may look at it at once */
    write_status("running", cpid, 0, 0, NULL, NULL);
    if (first)
        sync_report("pid %d", cpid);

    double started_mono = mono_now();
    run_started = started_mono;
    if (health_cmd)
        health_reset();

    /* event loop: output, attach clients, SIGCHLD */
    struct stream so = {.fd = use_terminal ? pty : outp[0], .id = 1, .name = "stdout"};
    struct stream se = {.fd = use_terminal ? -1 : errp[0], .id = 2, .name = "stderr"};
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGWINCH);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    static char buf[65536];
    int exited = container_status != -1;
    if (!exited) {
        /* an adopted init may have exited before we blocked SIGCHLD: its
         * signal is gone, its zombie is not */
        int wst;
        if (waitpid(container_pid, &wst, WNOHANG) == container_pid) {
            container_status = wst;
            exited = 1;
        }
    }
    double exit_seen = exited ? mono_now() : 0;

    for (;;) {
        struct pollfd pf[4 + MAX_CLIENTS];
        int np = 0, i_so = -1, i_se = -1, i_ls = -1, i_sig;
        pf[np] = (struct pollfd){sfd, POLLIN, 0};
        i_sig = np++;
        if (so.fd >= 0) {
            pf[np] = (struct pollfd){so.fd, POLLIN, 0};
            i_so = np++;
        }
        if (se.fd >= 0) {
            pf[np] = (struct pollfd){se.fd, POLLIN, 0};
            i_se = np++;
        }
        if (listen_fd >= 0) {
            pf[np] = (struct pollfd){listen_fd, POLLIN, 0};
            i_ls = np++;
        }
        int c0 = np;
        for (int i = 0; i < nclients; i++)
            pf[np++] = (struct pollfd){clients[i], client_eof[i] ? 0 : POLLIN, 0};
        if (so.fd < 0 && se.fd < 0 && exited)
            break;
        int timeout = -1;
        if (exited) /* output fds kept open by escaped processes: give up after 2 s */
            timeout = 200;
        if (health_cmd && !exited)
            timeout = 500;
        int r = poll(pf, (nfds_t)np, timeout);
        if (r < 0 && errno != EINTR)
            break;
        if (exited && mono_now() - exit_seen > 2.0)
            break;
        if (pf[i_sig].revents & POLLIN) {
            struct signalfd_siginfo si;
            int winch = 0;
            while (read(sfd, &si, sizeof si) > 0) {
                if (si.ssi_signo == SIGWINCH)
                    winch = 1;
            }
            if (winch && pty >= 0)
                apply_winsize(pty);
            int wst;
            pid_t w;
            while ((w = waitpid(-1, &wst, WNOHANG)) > 0) {
                if (w == container_pid) {
                    container_status = wst;
                    exited = 1;
                    exit_seen = mono_now();
                } else if (w == health_pid) {
                    health_record(wst);
                }
            }
        }
        if (i_so >= 0 && pf[i_so].revents) {
            ssize_t k = read(so.fd, buf, sizeof buf);
            if (k > 0) {
                stream_feed(&so, buf, (size_t)k);
                clients_send(1, buf, (size_t)k);
            } else if (k == 0 || (errno != EINTR && errno != EAGAIN)) {
                stream_flush(&so);
                if (!use_terminal)
                    close(so.fd);
                so.fd = -1;
            }
        }
        if (i_se >= 0 && pf[i_se].revents) {
            ssize_t k = read(se.fd, buf, sizeof buf);
            if (k > 0) {
                stream_feed(&se, buf, (size_t)k);
                clients_send(2, buf, (size_t)k);
            } else if (k == 0 || (errno != EINTR && errno != EAGAIN)) {
                stream_flush(&se);
                close(se.fd);
                se.fd = -1;
            }
        }
        if (i_ls >= 0 && (pf[i_ls].revents & POLLIN))
            clients_accept();
        for (int i = np - 1; i >= c0; i--) {
            if (!pf[i].revents)
                continue;
            int ci = i - c0;
            if (client_eof[ci]) { /* only POLLHUP/POLLERR can be reported */
                client_drop(ci);
                continue;
            }
            ssize_t k = read(clients[ci], buf, sizeof buf);
            if (k > 0) {
                if (stdin_w >= 0 && write_all(stdin_w, buf, (size_t)k) < 0 && !use_terminal) {
                    close(stdin_w);
                    stdin_w = -1;
                }
                continue;
            }
            if (k < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            /* the client's input ended: docker's StdinOnce closes the
             * container's stdin when the attached stdin ends; output keeps
             * flowing to the client until it hangs up */
            if (stdin_w >= 0 && !use_terminal) {
                close(stdin_w);
                stdin_w = -1;
            }
            if (k < 0)
                client_drop(ci);
            else
                client_eof[ci] = 1;
        }
        if (health_cmd && !exited) {
            double t = mono_now();
            if (health_pid < 0 && t >= next_health)
                health_start();
            else if (health_pid > 0 && t > health_deadline) {
                kill(health_pid, SIGKILL);
            }
        }
    }
    if (sfd >= 0)
        close(sfd);
    if (so.fd >= 0)
        stream_flush(&so);
    if (se.fd >= 0) {
        stream_flush(&se);
        close(se.fd);
    }
    if (!use_terminal && outp[0] >= 0 && so.fd >= 0)
        close(outp[0]);
    if (pty >= 0)
        close(pty);
    if (stdin_w >= 0 && stdin_w != pty)
        close(stdin_w);
    stdin_w = -1;
    if (!exited) {
        /* output ended but the container did not exit: wait for it */
        int wst;
        pid_t w;
        while ((w = waitpid(container_pid, &wst, 0)) < 0 && errno == EINTR) {
        }
        container_status = w == container_pid ? wst : 0;
    }
    health_abandon();
    int code = WIFEXITED(container_status) ? WEXITSTATUS(container_status)
                                           : 128 + WTERMSIG(container_status);
    last_oom = oom_killed();
    now_rfc3339(finished_at, sizeof finished_at);
    container_pid = -1;
    /* decide before recording: between a crash and its restart the state is
     * "restarting" (docker's, RestartCount already counting this restart),
     * never a passing "exited" that `wait` or `ps` could take as final */
    int again = should_restart(code);
    if (again)
        restarts++;
    /* record the exit and let attached clients go first: the runtime's
     * delete (a further process) is then off the foreground `run` path */
    write_status(again ? "restarting" : "exited", 0, code, last_oom, finished_at, NULL);
    int client_there = nclients > 0;
    clients_close_all();
    if (again || !(delete_by_client && client_there))
        run_runtime("delete", "--force", -1, -1);
    return code | (again ? RUN_RESTART : 0) | (mono_now() - started_mono > 10.0 ? RUN_LONG : 0);
}

static void usage(void) {
    die("usage: berth-monitor --runtime PATH --root DIR --bundle DIR --id ID --dir DIR "
        "[--log PATH --log-max-size N --log-max-file N] [--terminal [--tty-size RxC]] [--stdin] [--attach] "
        "[--restart POLICY --restart-max N] [--oom-file PATH] [--sync-fd N] "
        "[--health-cmd CMD --health-interval S --health-timeout S --health-retries N "
        "--health-start-period S] "
        "[--exit-command ARG]... [--adopt-pid PID (--adopt-fds OUT,ERR,IN | --adopt-pty FD)] "
        "[--delete-by-client]");
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define ARG(name) (!strcmp(a, name) && i + 1 < argc)
        if (ARG("--runtime")) runtime = argv[++i];
        else if (ARG("--root")) runtime_root = argv[++i];
        else if (ARG("--bundle")) bundle = argv[++i];
        else if (ARG("--id")) cid = argv[++i];
        else if (ARG("--dir")) state_dir = argv[++i];
        else if (ARG("--log")) log_path = argv[++i];
        else if (ARG("--log-max-size")) log_max_size = atoll(argv[++i]);
        else if (ARG("--log-max-file")) log_max_file = atoi(argv[++i]);
        else if (!strcmp(a, "--terminal")) use_terminal = 1;
        else if (ARG("--tty-size")) sscanf(argv[++i], "%dx%d", &tty_rows, &tty_cols);
        else if (!strcmp(a, "--stdin")) use_stdin = 1;
        else if (!strcmp(a, "--attach")) wait_attach = 1;
        else if (ARG("--restart")) restart_policy = argv[++i];
        else if (ARG("--restart-max")) restart_max = atoi(argv[++i]);
        else if (ARG("--oom-file")) oom_file = argv[++i];
        else if (ARG("--sync-fd")) sync_fd = atoi(argv[++i]);
        else if (ARG("--health-cmd")) health_cmd = argv[++i];
        else if (ARG("--health-interval")) health_interval = atoi(argv[++i]);
        else if (ARG("--health-timeout")) health_timeout = atoi(argv[++i]);
        else if (ARG("--health-retries")) health_retries = atoi(argv[++i]);
        else if (ARG("--health-start-period")) health_start_period = atof(argv[++i]);
        else if (ARG("--exit-command") && exit_cmd_n < MAX_ARGS) exit_cmd[exit_cmd_n++] = argv[++i];
        else if (ARG("--adopt-pid")) adopt_pid = atoi(argv[++i]);
        else if (ARG("--adopt-fds")) sscanf(argv[++i], "%d,%d,%d", &adopt_out, &adopt_err, &adopt_in);
        else if (ARG("--adopt-pty")) adopt_pty = atoi(argv[++i]);
        else if (!strcmp(a, "--delete-by-client")) delete_by_client = 1;
        else usage();
#undef ARG
    }
    if (!bundle || !cid || !state_dir)
        usage();
    if (log_max_file < 1)
        log_max_file = 1;
    if (health_interval < 1)
        health_interval = 1;
    if (health_timeout < 1)
        health_timeout = 1;
    if (health_retries < 1)
        health_retries = 1;
    if (chdir(state_dir) < 0)
        die("chdir %s: %s", state_dir, strerror(errno));
    if (sync_fd >= 0)
        fcntl(sync_fd, F_SETFD, FD_CLOEXEC);

    /* daemonize: the CLI waits only for this first child to exit. An
     * adopting monitor was daemonized by the engine before it created the
     * container, whose init must stay our child: no fork then. */
    if (adopt_pid <= 0) {
        pid_t p = fork();
        if (p < 0)
            die("fork: %s", strerror(errno));
        if (p > 0)
            _exit(0);
        setsid();
        p = fork();
        if (p < 0)
            _exit(125);
        if (p > 0)
            _exit(0);
    }
    for (int fd = 0; fd < 3; fd++) /* the adopted fds must not be stdio */
        if (fd == adopt_out || fd == adopt_err || fd == adopt_in || fd == adopt_pty)
            die("--adopt-fds/--adopt-pty: %d is a standard stream", fd);
    int adopted_fds[] = {adopt_out, adopt_err, adopt_in, adopt_pty};
    for (int i = 0; i < 4; i++) /* not for the runtime or health checks we spawn */
        if (adopted_fds[i] >= 0)
            fcntl(adopted_fds[i], F_SETFD, FD_CLOEXEC);
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    /* keep stderr on /dev/null too: nobody reads it once the CLI is gone */
    dup2(null, 2);
    if (null > 2)
        close(null);
    reset_all_signals();
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN); /* signals reach the container via `runtime kill` */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGWINCH); /* "winsize changed": read by the event loop */
    sigprocmask(SIG_BLOCK, &mask, NULL);
    /* adopt the container's init when the runtime's create exits */
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    my_start = monitor_starttime();

    /* attach socket, bound relative to the state dir (sun_path is short) */
    unlink("attach.sock");
    listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, "attach.sock");
    if (bind(listen_fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(listen_fd, 8) < 0) {
        sync_report("error 125 attach socket: %s", strerror(errno));
        _exit(125);
    }
    struct stat sock_st;
    stat("attach.sock", &sock_st);
    log_open();

    int delay_ms = 100;
    for (int first = 1;; first = 0) {
        int r = run_once(first);
        /* r < 0: create failed, restarting would fail the same way */
        if (r < 0 || !(r & RUN_RESTART))
            break;
        if (r & RUN_LONG)
            delay_ms = 100;
        /* sleep in small steps so a stop request ends the backoff early */
        for (int t = 0; t < delay_ms; t += 50) {
            if (access("stop-requested", F_OK) == 0)
                break;
            usleep(50000);
        }
        if (access("stop-requested", F_OK) == 0) {
            /* stopped while waiting: the last run's exit stands (docker) */
            write_status("exited", 0, r & 0xffff, last_oom, finished_at, NULL);
            break;
        }
        delay_ms = delay_ms * 2 > 10000 ? 10000 : delay_ms * 2;
    }
    close(listen_fd);
    /* a new monitor (start right after this exit) may own the names now */
    struct stat now_st;
    if (stat("attach.sock", &now_st) == 0 && now_st.st_ino == sock_st.st_ino)
        unlink("attach.sock");
    if (log_fd >= 0)
        close(log_fd);
    if (exit_cmd_n > 0) {
        exit_cmd[exit_cmd_n] = NULL;
        pid_t e = fork();
        if (e == 0) {
            setsid();
            reset_all_signals();
            sigset_t none;
            sigemptyset(&none);
            sigprocmask(SIG_SETMASK, &none, NULL);
            execvp(exit_cmd[0], exit_cmd);
            _exit(127);
        }
    }
    return 0;
}
