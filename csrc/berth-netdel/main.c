/*
 * berth-netdel IFNAME FD: delete network device IFNAME, detached from the
 * caller, and write the errno of the request (0: deleted) to FD as a native
 * int.
 *
 * Why a process: the kernel acknowledges RTM_DELLINK only after
 * netdev_run_todo, which waits for an RCU barrier and the device's last
 * reference (20-40 ms here), while the device leaves the device list 2-7 ms
 * after the request (the RTM_DELLINK notification says when). The engine
 * waits for that notification and leaves the tail to this helper
 * (berth.engine.network.netlink.Netlink.del_link_unlisted). Why C: the
 * caller is a Python process of ~40 MiB whose fork (twice, to detach) costs
 * it ~2 ms with the GIL held; this is posix_spawn'ed.
 *
 * In order: setsid and fork (the parent exits at once, so the caller reaps
 * it and nobody has to reap the helper), close every descriptor but FD,
 * stdio on /dev/null, one netlink request, the errno to FD.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void close_all_but(int keep) {
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    int dfd = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd != keep && fd != dfd && fd > 2)
            close(fd);
    }
    closedir(d);
}

static int delete_link(const char *name) {
    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (s < 0)
        return errno;
    struct {
        struct nlmsghdr h;
        struct ifinfomsg i;
        char attrs[64];
    } req;
    memset(&req, 0, sizeof req);
    size_t len = strlen(name) + 1;
    struct rtattr *a = (struct rtattr *)req.attrs;
    a->rta_type = IFLA_IFNAME;
    a->rta_len = (unsigned short)RTA_LENGTH(len);
    memcpy(RTA_DATA(a), name, len);
    req.h.nlmsg_len = (unsigned)(NLMSG_LENGTH(sizeof req.i) + RTA_ALIGN(a->rta_len));
    req.h.nlmsg_type = RTM_DELLINK;
    req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
    req.h.nlmsg_seq = 1;
    req.i.ifi_family = AF_UNSPEC;
    if (send(s, &req, req.h.nlmsg_len, 0) < 0) {
        int err = errno;
        close(s);
        return err;
    }
    char buf[4096];
    for (;;) {
        ssize_t n = recv(s, buf, sizeof buf, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int err = errno;
            close(s);
            return err;
        }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *me = NLMSG_DATA(h);
                close(s);
                return -me->error;
            }
        }
    }
}

int main(int argc, char **argv) {
    if (argc != 3 || strlen(argv[1]) >= IFNAMSIZ)
        return 2;
    int out = atoi(argv[2]);
    setsid();
    pid_t p = fork();
    if (p != 0)
        _exit(p < 0 ? 1 : 0);
    close_all_but(out);
    int null = open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3; fd++)
        if (fd != out && fd != null)
            dup2(null, fd);
    int err = delete_link(argv[1]);
    (void)!write(out, &err, sizeof err);
    _exit(0);
}
