/*
 * berth-agent: PID 1 of a berth microVM (the initramfs's /init).
 *
 * Order of work (each step depends on the one before):
 *   1. mount /proc /sys /dev (devtmpfs) /run of the initramfs;
 *   2. load the kernel modules listed in /modules.list (virtio transport first,
 *      then block/console/net/virtiofs drivers) with finit_module(2);
 *   3. open the virtio-serial ports by name (/sys/class/virtio-ports/<p>/name):
 *      org.berth.main (workload stdio and the config) and org.berth.exec.N;
 *   4. read the INIT frame (JSON) from the main port: root disk, mounts,
 *      network, hostname, the process; set everything up under /newroot;
 *   5. send READY, wait for START, fork the workload (chroot /newroot);
 *   6. pump stdio, exec sessions and signals until the workload exits, send
 *      EXIT, wait (bounded) for the host's SHUTDOWN, sync, reboot(2).
 *      With reboot=t on the command line and QEMU's -no-reboot, the reboot
 *      ends the QEMU process.
 *
 * The wire format is documented in src/berth/runtime/vm/agent_protocol.py.
 * The agent trusts the host (it is the host's agent); it never trusts the
 * workload, which runs as any uid inside the guest.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define NEWROOT "/newroot"
#define MAX_PORTS 8
#define MAX_PAYLOAD (64 * 1024)
#define MAIN_STREAM 1u

/* Frame types; keep in sync with agent_protocol.py. */
enum {
	T_INIT = 1, T_START = 2, T_STDIN = 3, T_SIGNAL = 4, T_EXEC = 5, T_RESIZE = 6, T_SHUTDOWN = 7,
	T_READY = 10, T_STARTED = 11, T_STDOUT = 12, T_STDERR = 13, T_EXIT = 14, T_ERROR = 15,
};

static void logk(const char *fmt, ...)
{
	/* Agent diagnostics go to the kernel console (ttyS0 -> host console log), never to the
	 * workload's streams. */
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		dprintf(fd, "<3>berth-agent: %s\n", buf);
		close(fd);
	}
}

static void die_reboot(const char *why)
{
	logk("fatal: %s", why);
	sync();
	reboot(RB_AUTOBOOT);
	_exit(1);
}

/* ---------------------------------------------------------------- JSON */

enum { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };
typedef struct J {
	int t;
	double n;
	char *s, *key;
	struct J *kid, *next;
} J;

static const char *jp, *je;

static void jws(void) { while (jp < je && isspace((unsigned char)*jp)) jp++; }

static void put_utf8(char **o, unsigned cp)
{
	char *p = *o;
	if (cp < 0x80) *p++ = cp;
	else if (cp < 0x800) { *p++ = 0xc0 | (cp >> 6); *p++ = 0x80 | (cp & 0x3f); }
	else if (cp < 0x10000) { *p++ = 0xe0 | (cp >> 12); *p++ = 0x80 | ((cp >> 6) & 0x3f); *p++ = 0x80 | (cp & 0x3f); }
	else { *p++ = 0xf0 | (cp >> 18); *p++ = 0x80 | ((cp >> 12) & 0x3f); *p++ = 0x80 | ((cp >> 6) & 0x3f); *p++ = 0x80 | (cp & 0x3f); }
	*o = p;
}

static char *jstring(void)
{
	if (jp >= je || *jp != '"') return NULL;
	jp++;
	char *out = malloc(je - jp + 1), *o = out;
	while (jp < je && *jp != '"') {
		if (*jp != '\\') { *o++ = *jp++; continue; }
		if (++jp >= je) break;
		char c = *jp++;
		switch (c) {
		case 'n': *o++ = '\n'; break;
		case 't': *o++ = '\t'; break;
		case 'r': *o++ = '\r'; break;
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'u': {
			if (je - jp < 4) { free(out); return NULL; }
			char h[5] = {0};
			memcpy(h, jp, 4); jp += 4;
			unsigned cp = strtoul(h, NULL, 16);
			if (cp >= 0xd800 && cp < 0xdc00 && je - jp >= 6 && jp[0] == '\\' && jp[1] == 'u') {
				memcpy(h, jp + 2, 4); jp += 6;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (strtoul(h, NULL, 16) - 0xdc00);
			}
			put_utf8(&o, cp);
			break;
		}
		default: *o++ = c;
		}
	}
	if (jp >= je) { free(out); return NULL; }
	jp++;
	*o = 0;
	return out;
}

static J *jvalue(int depth)
{
	if (depth > 32) return NULL;
	jws();
	if (jp >= je) return NULL;
	J *v = calloc(1, sizeof *v);
	if (*jp == '{' || *jp == '[') {
		int obj = *jp == '{';
		char close = obj ? '}' : ']';
		v->t = obj ? J_OBJ : J_ARR;
		jp++;
		J **tail = &v->kid;
		jws();
		if (jp < je && *jp == close) { jp++; return v; }
		for (;;) {
			char *key = NULL;
			if (obj) {
				jws();
				if (!(key = jstring())) return NULL;
				jws();
				if (jp >= je || *jp++ != ':') return NULL;
			}
			J *k = jvalue(depth + 1);
			if (!k) return NULL;
			k->key = key;
			*tail = k; tail = &k->next;
			jws();
			if (jp < je && *jp == ',') { jp++; continue; }
			if (jp < je && *jp == close) { jp++; return v; }
			return NULL;
		}
	}
	if (*jp == '"') { v->t = J_STR; return (v->s = jstring()) ? v : NULL; }
	if (je - jp >= 4 && !strncmp(jp, "true", 4)) { v->t = J_BOOL; v->n = 1; jp += 4; return v; }
	if (je - jp >= 5 && !strncmp(jp, "false", 5)) { v->t = J_BOOL; jp += 5; return v; }
	if (je - jp >= 4 && !strncmp(jp, "null", 4)) { v->t = J_NULL; jp += 4; return v; }
	char num[64];
	size_t i = 0;
	while (jp < je && i < sizeof num - 1 && strchr("+-0123456789.eE", *jp)) num[i++] = *jp++;
	if (!i) return NULL;
	num[i] = 0;
	v->t = J_NUM;
	v->n = strtod(num, NULL);
	return v;
}

static J *jparse(const char *s, size_t n) { jp = s; je = s + n; return jvalue(0); }

static J *jget(J *o, const char *key)
{
	if (!o || o->t != J_OBJ) return NULL;
	for (J *k = o->kid; k; k = k->next)
		if (!strcmp(k->key, key)) return k;
	return NULL;
}

static const char *jstr(J *o, const char *key, const char *def)
{
	J *v = jget(o, key);
	return v && v->t == J_STR ? v->s : def;
}

static long jint(J *o, const char *key, long def)
{
	J *v = jget(o, key);
	return v && (v->t == J_NUM || v->t == J_BOOL) ? (long)v->n : def;
}

/* NULL-terminated string vector from a JSON array of strings. */
static char **jstrv(J *arr)
{
	size_t n = 0;
	for (J *k = arr && arr->t == J_ARR ? arr->kid : NULL; k; k = k->next) n++;
	char **v = calloc(n + 1, sizeof *v);
	n = 0;
	for (J *k = arr && arr->t == J_ARR ? arr->kid : NULL; k; k = k->next)
		if (k->t == J_STR) v[n++] = k->s;
	return v;
}

static void jfree(J *v)
{
	while (v) {
		J *next = v->next;
		jfree(v->kid);
		free(v->s); free(v->key); free(v);
		v = next;
	}
}

/* JSON-escape src into dst (bounded). */
static void jesc(char *dst, size_t cap, const char *src)
{
	size_t o = 0;
	for (; *src && o + 7 < cap; src++) {
		unsigned char c = *src;
		if (c == '"' || c == '\\') { dst[o++] = '\\'; dst[o++] = c; }
		else if (c < 0x20) o += snprintf(dst + o, cap - o, "\\u%04x", c);
		else dst[o++] = c;
	}
	dst[o] = 0;
}

/* ---------------------------------------------------------------- ports and frames */

struct proc {
	pid_t pid;               /* 0: none */
	uint32_t stream;
	int in, out, err;        /* our ends: child's stdin (write), stdout/stderr (read); -1 closed */
	int tty;
	int exited, status;
	char *pending;           /* stdin bytes not yet written to the child */
	size_t plen;
	int stdin_eof;
};

struct port {
	char name[64];
	int fd;
	int connected;           /* host side open (poll without POLLHUP) */
	char buf[MAX_PAYLOAD + 9];
	size_t blen;
	struct proc p;
};

static struct port ports[MAX_PORTS];
static int nports;
static struct port *mainport;

static int wait_writable(int fd)
{
	for (;;) {
		struct pollfd pf = { .fd = fd, .events = POLLOUT };
		int r = poll(&pf, 1, 1000);
		if (r < 0 && errno == EINTR) continue;
		if (r < 0) return -1;
		if (pf.revents & (POLLHUP | POLLERR | POLLNVAL)) return -1;
		if (pf.revents & POLLOUT) return 0;
	}
}

/* Send one frame; data to a port whose host side is gone is dropped (a blocking write
 * on a disconnected virtio port would sleep forever, so fds are non-blocking and polled). */
static int send_frame(struct port *pt, int type, uint32_t stream, const void *data, size_t len)
{
	if (!pt || pt->fd < 0) return -1;
	char hdr[9];
	hdr[0] = type;
	uint32_t s = htonl(stream), l = htonl(len);
	memcpy(hdr + 1, &s, 4);
	memcpy(hdr + 5, &l, 4);
	char frame[MAX_PAYLOAD + 9];
	if (len > MAX_PAYLOAD) len = MAX_PAYLOAD;
	memcpy(frame, hdr, 9);
	if (len) memcpy(frame + 9, data, len);
	size_t off = 0, tot = len + 9;
	while (off < tot) {
		if (wait_writable(pt->fd)) { pt->connected = 0; return -1; }
		ssize_t w = write(pt->fd, frame + off, tot - off);
		if (w < 0 && (errno == EAGAIN || errno == EINTR)) continue;
		if (w < 0) { pt->connected = 0; return -1; }
		off += w;
	}
	return 0;
}

static void send_json(struct port *pt, int type, uint32_t stream, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof buf) n = sizeof buf - 1;
	send_frame(pt, type, stream, buf, n);
}

static void send_error(struct port *pt, uint32_t stream, int code, const char *msg)
{
	char esc[1024];
	jesc(esc, sizeof esc, msg);
	send_json(pt, T_ERROR, stream, "{\"code\":%d,\"message\":\"%s\"}", code, esc);
}

static int port_hup(struct port *pt)
{
	struct pollfd pf = { .fd = pt->fd, .events = POLLIN };
	poll(&pf, 1, 0);
	return (pf.revents & POLLHUP) && !(pf.revents & POLLIN);
}

static void refresh_connected(void)
{
	for (int i = 0; i < nports; i++) ports[i].connected = !port_hup(&ports[i]);
}

/* Find the ports by name; devtmpfs creates /dev/vportNpM asynchronously, so retry. */
static void open_ports(void)
{
	for (int tries = 0; tries < 2500; tries++) {
		DIR *d = opendir("/sys/class/virtio-ports");
		int found_main = 0;
		nports = 0;
		struct dirent *e;
		while (d && (e = readdir(d)) && nports < MAX_PORTS) {
			if (e->d_name[0] == '.') continue;
			char path[300], name[64] = "";
			snprintf(path, sizeof path, "/sys/class/virtio-ports/%s/name", e->d_name);
			int fd = open(path, O_RDONLY | O_CLOEXEC);
			if (fd < 0) continue;
			ssize_t n = read(fd, name, sizeof name - 1);
			close(fd);
			if (n <= 0) continue;
			name[n] = 0;
			name[strcspn(name, "\n")] = 0;
			if (strncmp(name, "org.berth.", 10)) continue;
			snprintf(path, sizeof path, "/dev/%s", e->d_name);
			fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
			if (fd < 0) continue;
			struct port *pt = &ports[nports++];
			memset(pt, 0, sizeof *pt);
			snprintf(pt->name, sizeof pt->name, "%s", name);
			pt->fd = fd;
			pt->p.in = pt->p.out = pt->p.err = -1;
			/* SIGIO on host connect/disconnect (virtio_console send_sigio_to_port). */
			fcntl(fd, F_SETOWN, getpid());
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_ASYNC);
			if (!strcmp(name, "org.berth.main")) found_main = 1;
		}
		if (d) closedir(d);
		if (found_main) {
			for (int i = 0; i < nports; i++)
				if (!strcmp(ports[i].name, "org.berth.main")) mainport = &ports[i];
			refresh_connected();
			return;
		}
		for (int i = 0; i < nports; i++) close(ports[i].fd);
		usleep(2000);
	}
	die_reboot("no org.berth.main virtio-serial port");
}

/* Read one whole frame synchronously (used during set-up only). */
static int read_frame_blocking(struct port *pt, int *type, uint32_t *stream, char **payload, uint32_t *len, int timeout_ms)
{
	for (;;) {
		if (pt->blen >= 9) {
			uint32_t l;
			memcpy(&l, pt->buf + 5, 4);
			l = ntohl(l);
			if (l > MAX_PAYLOAD) return -1;
			if (pt->blen >= 9 + l) {
				uint32_t s;
				memcpy(&s, pt->buf + 1, 4);
				*type = pt->buf[0];
				*stream = ntohl(s);
				*len = l;
				*payload = malloc(l + 1);
				memcpy(*payload, pt->buf + 9, l);
				(*payload)[l] = 0;
				memmove(pt->buf, pt->buf + 9 + l, pt->blen - 9 - l);
				pt->blen -= 9 + l;
				return 0;
			}
		}
		struct pollfd pf = { .fd = pt->fd, .events = POLLIN };
		int r = poll(&pf, 1, timeout_ms);
		if (r == 0) return -1;
		if (r < 0) { if (errno == EINTR) continue; return -1; }
		if (pf.revents & POLLIN) {
			ssize_t n = read(pt->fd, pt->buf + pt->blen, sizeof pt->buf - pt->blen);
			if (n > 0) { pt->blen += n; continue; }
			if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
		}
		if (pf.revents & POLLHUP) usleep(20000);
	}
}

/* ---------------------------------------------------------------- set-up */

static void mkdirs(const char *path, mode_t mode)
{
	char tmp[512];
	snprintf(tmp, sizeof tmp, "%s", path);
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') { *p = 0; mkdir(tmp, mode); *p = '/'; }
	mkdir(tmp, mode);
}

static int do_mount(const char *src, const char *dst, const char *type, unsigned long flags, const char *data)
{
	mkdirs(dst, 0755);
	if (mount(src, dst, type, flags, data) < 0) {
		logk("mount %s on %s (%s): %s", src, dst, type, strerror(errno));
		return -1;
	}
	return 0;
}

/* /modules.list: "<group> <path>" lines, dependencies first. Group "core" is loaded at
 * boot; "net" and "fs" only when the INIT message needs them (each costs guest time). */
static void load_modules(const char *group)
{
	FILE *f = fopen("/modules.list", "re");
	if (!f) return;
	char line[256];
	size_t glen = strlen(group);
	while (fgets(line, sizeof line, f)) {
		line[strcspn(line, "\n")] = 0;
		if (strncmp(line, group, glen) || line[glen] != ' ') continue;
		const char *path = line + glen + 1;
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) { logk("open module %s: %s", path, strerror(errno)); continue; }
		if (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST)
			logk("load module %s: %s", path, strerror(errno));
		close(fd);
	}
	fclose(f);
}

static int wait_path(const char *path, int ms)
{
	for (int i = 0; i < ms / 2; i++) {
		if (access(path, F_OK) == 0) return 0;
		usleep(2000);
	}
	return access(path, F_OK);
}

/* A minimal /dev for the workload (like a container's): no console, no serial ports,
 * no virtio ports and no disks, so the workload cannot reach the host channels. */
static int setup_dev(void)
{
	if (do_mount("tmpfs", NEWROOT "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k"))
		return -1;
	static const struct { const char *name; int maj, min; } nodes[] = {
		{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
	};
	char p[256];
	for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
		snprintf(p, sizeof p, NEWROOT "/dev/%s", nodes[i].name);
		if (mknod(p, S_IFCHR | 0666, makedev(nodes[i].maj, nodes[i].min)) < 0) return -1;
		chmod(p, 0666);
	}
	do_mount("devpts", NEWROOT "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620,gid=5");
	symlink("pts/ptmx", NEWROOT "/dev/ptmx");
	do_mount("shm", NEWROOT "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k");
	do_mount("mqueue", NEWROOT "/dev/mqueue", "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	symlink("/proc/self/fd", NEWROOT "/dev/fd");
	symlink("/proc/self/fd/0", NEWROOT "/dev/stdin");
	symlink("/proc/self/fd/1", NEWROOT "/dev/stdout");
	symlink("/proc/self/fd/2", NEWROOT "/dev/stderr");
	return 0;
}

static in_addr_t parse_ip(const char *s) { struct in_addr a; return inet_aton(s, &a) ? a.s_addr : 0; }

static int if_up(int sk, const char *ifname)
{
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(sk, SIOCGIFFLAGS, &ifr) < 0) return -1;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	return ioctl(sk, SIOCSIFFLAGS, &ifr);
}

/* eth0 address, netmask and default route with the classic ioctls (no netlink library). */
static int setup_net(J *net, char *err, size_t errlen)
{
	int sk = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (sk < 0) { snprintf(err, errlen, "socket: %s", strerror(errno)); return -1; }
	if_up(sk, "lo");
	if (!net || net->t != J_OBJ) { close(sk); return 0; }
	const char *ifname = jstr(net, "ifname", "eth0");
	const char *addr = jstr(net, "address", NULL);
	long prefix = jint(net, "prefixlen", 24);
	const char *gw = jstr(net, "gateway", NULL);
	for (int i = 0; i < 300 && if_nametoindex(ifname) == 0; i++) usleep(10000);
	struct ifreq ifr = {0};
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	sin->sin_family = AF_INET;
	if (addr) {
		sin->sin_addr.s_addr = parse_ip(addr);
		if (ioctl(sk, SIOCSIFADDR, &ifr) < 0) { snprintf(err, errlen, "set address %s on %s: %s", addr, ifname, strerror(errno)); close(sk); return -1; }
		sin->sin_addr.s_addr = prefix ? htonl(~0u << (32 - prefix)) : 0;
		if (ioctl(sk, SIOCSIFNETMASK, &ifr) < 0) { snprintf(err, errlen, "set netmask on %s: %s", ifname, strerror(errno)); close(sk); return -1; }
	}
	long mtu = jint(net, "mtu", 0);
	if (mtu > 0) { ifr.ifr_mtu = mtu; ioctl(sk, SIOCSIFMTU, &ifr); }
	if (if_up(sk, ifname) < 0) { snprintf(err, errlen, "bring up %s: %s", ifname, strerror(errno)); close(sk); return -1; }
	if (gw) {
		struct rtentry rt = {0};
		((struct sockaddr_in *)&rt.rt_dst)->sin_family = AF_INET;
		((struct sockaddr_in *)&rt.rt_genmask)->sin_family = AF_INET;
		struct sockaddr_in *g = (struct sockaddr_in *)&rt.rt_gateway;
		g->sin_family = AF_INET;
		g->sin_addr.s_addr = parse_ip(gw);
		rt.rt_flags = RTF_UP | RTF_GATEWAY;
		rt.rt_dev = (char *)ifname;
		if (ioctl(sk, SIOCADDRT, &rt) < 0 && errno != EEXIST) { snprintf(err, errlen, "default route via %s: %s", gw, strerror(errno)); close(sk); return -1; }
	}
	close(sk);
	return 0;
}

/* Single files the host bind-mounts into a container (hostname, hosts, resolv.conf,
 * small secrets) arrive by value: staged in the agent's own tmpfs (/run), then
 * bind-mounted onto the target, read-only if asked. A snapshot, not a live share. */
static int setup_files(J *files, char *err, size_t errlen)
{
	int i = 0;
	for (J *f = files && files->t == J_ARR ? files->kid : NULL; f; f = f->next, i++) {
		const char *target = jstr(f, "target", NULL), *hex = jstr(f, "hex", "");
		if (!target || target[0] != '/' || strstr(target, "..")) {
			snprintf(err, errlen, "bad file entry (target %s)", target ? target : "?");
			return -1;
		}
		char stage[64], dst[512];
		snprintf(stage, sizeof stage, "/run/berth-file.%d", i);
		snprintf(dst, sizeof dst, NEWROOT "%s", target);
		int fd = open(stage, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, jint(f, "mode", 0644));
		if (fd < 0) { snprintf(err, errlen, "stage %s: %s", target, strerror(errno)); return -1; }
		for (size_t k = 0; hex[k] && hex[k + 1]; k += 2) {
			unsigned v;
			char b;
			if (sscanf(hex + k, "%2x", &v) != 1) break;
			b = v;
			(void)!write(fd, &b, 1);
		}
		close(fd);
		if (access(dst, F_OK) != 0) {
			char dir[512];
			snprintf(dir, sizeof dir, "%s", dst);
			*strrchr(dir, '/') = 0;
			mkdirs(dir, 0755);
			int t = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
			if (t >= 0) close(t);
		}
		if (mount(stage, dst, NULL, MS_BIND, NULL) < 0 ||
		    (jint(f, "readonly", 0) && mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) < 0)) {
			snprintf(err, errlen, "bind file on %s: %s", target, strerror(errno));
			return -1;
		}
	}
	return 0;
}

static int setup_guest(J *cfg, char *err, size_t errlen)
{
	J *net = jget(cfg, "net"), *mounts = jget(cfg, "mounts");
	if (net && net->t == J_OBJ) load_modules("net");
	for (J *m = mounts && mounts->t == J_ARR ? mounts->kid : NULL; m; m = m->next)
		if (!strcmp(jstr(m, "type", ""), "virtiofs")) { load_modules("fs"); break; }
	J *root = jget(cfg, "root");
	const char *dev = jstr(root, "device", "/dev/vda");
	int ro = jint(root, "readonly", 0);
	if (wait_path(dev, 5000)) { snprintf(err, errlen, "root disk %s did not appear", dev); return -1; }
	mkdirs(NEWROOT, 0755);
	if (mount(dev, NEWROOT, jstr(root, "fstype", "ext4"), ro ? MS_RDONLY : 0, NULL) < 0) {
		snprintf(err, errlen, "mount root %s: %s", dev, strerror(errno));
		return -1;
	}
	if (do_mount("proc", NEWROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) ||
	    do_mount("sysfs", NEWROOT "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL) ||
	    setup_dev()) {
		snprintf(err, errlen, "mount kernel filesystems in the guest root: %s", strerror(errno));
		return -1;
	}
	/* A read-only root still needs somewhere to write; a writable root keeps the image's /tmp. */
	if (ro) {
		do_mount("tmpfs", NEWROOT "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
		do_mount("tmpfs", NEWROOT "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=755");
	}
	for (J *m = mounts && mounts->t == J_ARR ? mounts->kid : NULL; m; m = m->next) {
		const char *tag = jstr(m, "tag", NULL), *target = jstr(m, "target", NULL);
		const char *type = jstr(m, "type", "virtiofs");
		if (!tag || !target || target[0] != '/' || strstr(target, "..")) {
			snprintf(err, errlen, "bad mount entry (tag %s target %s)", tag ? tag : "?", target ? target : "?");
			return -1;
		}
		char dst[512];
		snprintf(dst, sizeof dst, NEWROOT "%s", target);
		unsigned long fl = MS_NOSUID | MS_NODEV | (jint(m, "readonly", 0) ? MS_RDONLY : 0);
		mkdirs(dst, 0755);
		if (mount(tag, dst, type, fl, NULL) < 0) {
			snprintf(err, errlen, "mount %s volume %s on %s: %s", type, tag, target, strerror(errno));
			return -1;
		}
	}
	const char *hostname = jstr(cfg, "hostname", NULL);
	if (hostname) sethostname(hostname, strlen(hostname));
	if (setup_net(net, err, errlen)) return -1;
	return setup_files(jget(cfg, "files"), err, errlen);
}

/* ---------------------------------------------------------------- processes */

static const char *env_get(char **env, const char *key)
{
	size_t k = strlen(key);
	for (; env && *env; env++)
		if (!strncmp(*env, key, k) && (*env)[k] == '=') return *env + k + 1;
	return NULL;
}

/* execve with a PATH search done against the workload's own PATH (musl's execvpe would
 * use the agent's environment). Returns errno of the most telling failure. */
static int exec_path(char **argv, char **env)
{
	if (strchr(argv[0], '/')) { execve(argv[0], argv, env); return errno; }
	const char *path = env_get(env, "PATH");
	if (!path) path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	int saved = ENOENT;
	char buf[4096];
	while (*path) {
		size_t n = strcspn(path, ":");
		snprintf(buf, sizeof buf, "%.*s/%s", (int)n, path, argv[0]);
		execve(buf, argv, env);
		if (errno != ENOENT && errno != ENOTDIR) saved = errno;
		path += n;
		if (*path == ':') path++;
	}
	return saved;
}

/* Capability names, index = number (linux/capability.h; CAP_CHECKPOINT_RESTORE = 40). */
static const char *const CAP_NAMES[] = {
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE",
	"CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT",
	"CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
};
#define NCAPS ((int)(sizeof CAP_NAMES / sizeof *CAP_NAMES))

static uint64_t cap_mask(J *arr)
{
	uint64_t m = 0;
	for (J *k = arr && arr->t == J_ARR ? arr->kid : NULL; k; k = k->next)
		for (int i = 0; k->t == J_STR && i < NCAPS; i++)
			if (!strcmp(k->s, CAP_NAMES[i])) m |= 1ull << i;
	return m;
}

static const struct { const char *name; int res; } RLIMITS[] = {
	{"RLIMIT_CPU", RLIMIT_CPU}, {"RLIMIT_FSIZE", RLIMIT_FSIZE}, {"RLIMIT_DATA", RLIMIT_DATA},
	{"RLIMIT_STACK", RLIMIT_STACK}, {"RLIMIT_CORE", RLIMIT_CORE}, {"RLIMIT_RSS", RLIMIT_RSS},
	{"RLIMIT_NPROC", RLIMIT_NPROC}, {"RLIMIT_NOFILE", RLIMIT_NOFILE}, {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
	{"RLIMIT_AS", RLIMIT_AS}, {"RLIMIT_LOCKS", RLIMIT_LOCKS}, {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
	{"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE}, {"RLIMIT_NICE", RLIMIT_NICE}, {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
	{"RLIMIT_RTTIME", RLIMIT_RTTIME},
};

static int load_seccomp(J *spec);

/* In the child, as root, before the user switch: rlimits, then the bounding set
 * (PR_CAPBSET_DROP needs CAP_SETPCAP), then keep capabilities across setuid. */
static int apply_limits_and_bounding(J *spec, const char **what)
{
	J *rl = jget(spec, "rlimits");
	for (J *k = rl && rl->t == J_ARR ? rl->kid : NULL; k; k = k->next) {
		const char *type = jstr(k, "type", "");
		for (size_t i = 0; i < sizeof RLIMITS / sizeof *RLIMITS; i++) {
			if (strcmp(type, RLIMITS[i].name)) continue;
			J *soft = jget(k, "soft"), *hard = jget(k, "hard");
			struct rlimit r = { soft ? (rlim_t)soft->n : 0, hard ? (rlim_t)hard->n : 0 };
			*what = "setrlimit";
			if (setrlimit(RLIMITS[i].res, &r) < 0) return errno;
		}
	}
	/* Without no_new_privs the filter must go in while we still hold CAP_SYS_ADMIN. */
	if (!jint(spec, "no_new_privs", 0)) {
		*what = "load seccomp filter";
		int e = load_seccomp(spec);
		if (e) return e;
	}
	J *caps = jget(spec, "caps");
	if (!caps || caps->t != J_OBJ) return 0;
	uint64_t bnd = cap_mask(jget(caps, "bounding"));
	*what = "drop capabilities";
	for (int c = 0; c < 64; c++)
		if (!(bnd & (1ull << c)) && prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL) return errno;
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) return errno;
	return 0;
}

struct bpf_insn { uint16_t code; uint8_t jt, jf; uint32_t k; };
struct bpf_prog { unsigned short len; struct bpf_insn *filter; };

/* The seccomp program the host compiled from linux.seccomp (hex of sock_filter[]). */
static int load_seccomp(J *spec)
{
	const char *hex = jstr(spec, "seccomp", NULL);
	if (!hex) return 0;
	size_t n = strlen(hex) / 2;
	if (!n || n % 8 || n / 8 > 0xffff) return EINVAL;
	unsigned char *buf = malloc(n);
	for (size_t i = 0; i < n; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1) { free(buf); return EINVAL; }
		buf[i] = v;
	}
	struct bpf_prog prog = { (unsigned short)(n / 8), (struct bpf_insn *)buf };
	/* PR_SET_SECCOMP, SECCOMP_MODE_FILTER: needs no_new_privs or CAP_SYS_ADMIN. */
	int r = prctl(PR_SET_SECCOMP, 2, &prog, 0, 0) < 0 ? errno : 0;
	free(buf);
	return r;
}

/* After the user switch: the process's capability sets, ambient ones, no_new_privs. */
static int apply_caps(J *spec, const char **what)
{
	J *caps = jget(spec, "caps");
	*what = "set capabilities";
	if (caps && caps->t == J_OBJ) {
		uint64_t eff = cap_mask(jget(caps, "effective")), prm = cap_mask(jget(caps, "permitted"));
		uint64_t inh = cap_mask(jget(caps, "inheritable")), amb = cap_mask(jget(caps, "ambient"));
		struct { uint32_t version; int pid; } hdr = { 0x20080522, 0 }; /* _LINUX_CAPABILITY_VERSION_3 */
		struct { uint32_t eff, prm, inh; } data[2] = {
			{ (uint32_t)eff, (uint32_t)prm, (uint32_t)inh },
			{ (uint32_t)(eff >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32) },
		};
		if (syscall(SYS_capset, &hdr, data) < 0) return errno;
		for (int c = 0; c < NCAPS; c++)
			if ((amb & (1ull << c)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0) return errno;
	}
	*what = "set no_new_privs";
	if (jint(spec, "no_new_privs", 0)) {
		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return errno;
		*what = "load seccomp filter"; /* last, as runc: with NNP nothing else is needed */
		return load_seccomp(spec);
	}
	return 0;
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

/* Fork and exec a process from a JSON process spec; on failure send ERROR and EXIT. */
static int spawn(struct port *pt, uint32_t stream, J *spec)
{
	struct proc *p = &pt->p;
	memset(p, 0, sizeof *p);
	p->stream = stream;
	p->in = p->out = p->err = -1;
	char **argv = jstrv(jget(spec, "args"));
	char **env = jstrv(jget(spec, "env"));
	const char *cwd = jstr(spec, "cwd", "/");
	uid_t uid = jint(spec, "uid", 0);
	gid_t gid = jint(spec, "gid", 0);
	J *gj = jget(spec, "gids");
	gid_t gids[64];
	int ngids = 0;
	for (J *k = gj && gj->t == J_ARR ? gj->kid : NULL; k && ngids < 64; k = k->next) gids[ngids++] = k->n;
	p->tty = jint(spec, "tty", 0);
	if (!argv[0]) {
		send_error(pt, stream, 125, "process has no args");
		send_json(pt, T_EXIT, stream, "{\"status\":125}");
		free(argv); free(env);
		return -1;
	}
	int in[2] = {-1, -1}, out[2] = {-1, -1}, er[2] = {-1, -1}, ptm = -1, pts = -1, status[2];
	if (p->tty) {
		ptm = open(NEWROOT "/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
		int unlock = 0;
		if (ptm < 0 || ioctl(ptm, TIOCSPTLCK, &unlock) < 0 ||
		    (pts = ioctl(ptm, TIOCGPTPEER, O_RDWR | O_NOCTTY)) < 0) {
			char m[256];
			snprintf(m, sizeof m, "allocate a pty: %s", strerror(errno));
			send_error(pt, stream, 125, m);
			send_json(pt, T_EXIT, stream, "{\"status\":125}");
			if (ptm >= 0) close(ptm);
			free(argv); free(env);
			return -1;
		}
		long rows = jint(spec, "rows", 0), cols = jint(spec, "cols", 0);
		if (rows && cols) { struct winsize ws = { .ws_row = rows, .ws_col = cols }; ioctl(ptm, TIOCSWINSZ, &ws); }
	} else if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(er, O_CLOEXEC)) {
		die_reboot("pipe");
	}
	if (pipe2(status, O_CLOEXEC)) die_reboot("pipe");
	pid_t pid = fork();
	if (pid == 0) {
		sigset_t all;
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		for (int s = 1; s < 32; s++) signal(s, SIG_DFL);
		setsid();
		if (p->tty) {
			ioctl(pts, TIOCSCTTY, 0);
			dup2(pts, 0); dup2(pts, 1); dup2(pts, 2);
		} else {
			dup2(in[0], 0); dup2(out[1], 1); dup2(er[1], 2);
		}
		int e = 0;
		const char *what = "chroot";
		if (chroot(NEWROOT) < 0) e = errno;
		else if (what = "chdir", chdir(cwd) < 0) e = errno;
		else if ((e = apply_limits_and_bounding(spec, &what))) {}
		else if (what = "setgroups", setgroups(ngids, gids) < 0) e = errno;
		else if (what = "setgid", setgid(gid) < 0) e = errno;
		else if (what = "setuid", setuid(uid) < 0) e = errno;
		else if ((e = apply_caps(spec, &what))) {}
		else { what = "exec"; e = exec_path(argv, env); }
		char m[600];
		int n = snprintf(m, sizeof m, "%d %s %s: %s", e, what, !strcmp(what, "chdir") ? cwd : argv[0], strerror(e));
		(void)!write(status[1], m, n);
		_exit(e == ENOENT && !strcmp(what, "exec") ? 127 : 126);
	}
	close(status[1]);
	if (p->tty) { close(pts); p->out = ptm; p->in = dup(ptm); fcntl(p->in, F_SETFD, FD_CLOEXEC); }
	else { close(in[0]); close(out[1]); close(er[1]); p->in = in[1]; p->out = out[0]; p->err = er[0]; }
	if (p->in >= 0) set_nonblock(p->in);
	if (p->out >= 0) set_nonblock(p->out);
	if (p->err >= 0) set_nonblock(p->err);
	free(argv); free(env);
	if (pid < 0) { send_error(pt, stream, 125, "fork failed"); return -1; }
	p->pid = pid;
	/* The status pipe closes on successful exec (O_CLOEXEC) or carries the failure. */
	char m[600];
	ssize_t n = read(status[0], m, sizeof m - 1);
	close(status[0]);
	if (n > 0) {
		m[n] = 0;
		int e = atoi(m);
		char *msg = strchr(m, ' ');
		send_error(pt, stream, e == ENOENT && strstr(m, " exec ") ? 127 : 126, msg ? msg + 1 : m);
	} else {
		send_json(pt, T_STARTED, stream, "{\"pid\":%d}", pid);
	}
	return 0;
}

static void close_fd(int *fd) { if (*fd >= 0) close(*fd); *fd = -1; }

/* Forward what is readable on one of the child's output pipes. Returns 1 on EOF. */
static int pump_out(struct port *pt, int *fd, int type)
{
	char buf[MAX_PAYLOAD];
	for (int rounds = 0; rounds < 16; rounds++) {
		ssize_t n = read(*fd, buf, sizeof buf);
		if (n > 0) { send_frame(pt, type, pt->p.stream, buf, n); continue; }
		if (n < 0 && errno == EINTR) continue;
		if (n < 0 && errno == EAGAIN) return 0;
		close_fd(fd); /* EOF, or EIO on a pty whose slave side closed */
		return 1;
	}
	return 0;
}

static void flush_stdin(struct proc *p)
{
	while (p->plen && p->in >= 0) {
		ssize_t w = write(p->in, p->pending, p->plen);
		if (w < 0 && errno == EINTR) continue;
		if (w < 0 && errno == EAGAIN) return;
		if (w < 0) { p->plen = 0; break; }
		memmove(p->pending, p->pending + w, p->plen - w);
		p->plen -= w;
	}
	if (!p->plen && p->stdin_eof && p->in >= 0) {
		if (p->tty) { char eot = 4; (void)!write(p->in, &eot, 1); }
		else close_fd(&p->in);
	}
}

static void finish_proc(struct port *pt)
{
	struct proc *p = &pt->p;
	/* Drain what the process wrote before exiting (descendants may keep the pipe open;
	 * only take what is there now). */
	if (p->out >= 0) pump_out(pt, &p->out, T_STDOUT);
	if (p->err >= 0) pump_out(pt, &p->err, T_STDERR);
	close_fd(&p->out); close_fd(&p->err); close_fd(&p->in);
	int code = WIFEXITED(p->status) ? WEXITSTATUS(p->status) : 128 + WTERMSIG(p->status);
	send_json(pt, T_EXIT, p->stream, "{\"status\":%d}", code);
	free(p->pending);
	p->pending = NULL;
	p->plen = 0;
	p->pid = 0;
}

static struct proc *find_stream(uint32_t stream)
{
	if (stream == MAIN_STREAM) return mainport->p.pid ? &mainport->p : NULL;
	for (int i = 0; i < nports; i++)
		if (ports[i].p.pid && ports[i].p.stream == stream) return &ports[i].p;
	return NULL;
}

static int main_exited;
static void power_off(void);

static void handle_frame(struct port *pt, int type, uint32_t stream, char *data, uint32_t len)
{
	struct proc *p = &pt->p;
	switch (type) {
	case T_STDIN:
		if (!p->pid || p->stream != stream) return;
		if (!len) { p->stdin_eof = 1; flush_stdin(p); return; }
		p->pending = realloc(p->pending, p->plen + len);
		memcpy(p->pending + p->plen, data, len);
		p->plen += len;
		flush_stdin(p);
		return;
	case T_SIGNAL: {
		J *j = jparse(data, len);
		int sig = jint(j, "signal", SIGTERM);
		jfree(j);
		struct proc *t = find_stream(stream);
		if (t && t->pid) kill(t->tty ? -t->pid : t->pid, sig);
		return;
	}
	case T_RESIZE: {
		J *j = jparse(data, len);
		struct proc *t = find_stream(stream);
		struct winsize ws = { .ws_row = jint(j, "rows", 24), .ws_col = jint(j, "cols", 80) };
		if (t && t->tty && t->out >= 0) ioctl(t->out, TIOCSWINSZ, &ws);
		jfree(j);
		return;
	}
	case T_EXEC: {
		if (pt == mainport || p->pid || stream <= MAIN_STREAM) {
			send_error(pt, stream, 125, "exec: port busy or bad stream id");
			send_json(pt, T_EXIT, stream, "{\"status\":125}");
			return;
		}
		if (main_exited) {
			send_error(pt, stream, 125, "exec: the workload has exited");
			send_json(pt, T_EXIT, stream, "{\"status\":125}");
			return;
		}
		J *j = jparse(data, len);
		if (!j) { send_error(pt, stream, 125, "exec: bad JSON"); send_json(pt, T_EXIT, stream, "{\"status\":125}"); return; }
		spawn(pt, stream, j);
		jfree(j);
		return;
	}
	case T_SHUTDOWN:
		if (pt == mainport) power_off();
		return;
	default:
		return;
	}
}

/* Read what is there on a port and dispatch whole frames. Returns -1 when the host side
 * went away. */
static int service_port(struct port *pt)
{
	ssize_t n = read(pt->fd, pt->buf + pt->blen, sizeof pt->buf - pt->blen);
	if (n == 0) return -1;
	if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
	pt->blen += n;
	while (pt->blen >= 9) {
		uint32_t l, s;
		memcpy(&l, pt->buf + 5, 4);
		memcpy(&s, pt->buf + 1, 4);
		l = ntohl(l);
		s = ntohl(s);
		if (l > MAX_PAYLOAD) { pt->blen = 0; return -1; } /* desynchronized: drop the session */
		if (pt->blen < 9 + l) break;
		char *payload = malloc(l + 1);
		memcpy(payload, pt->buf + 9, l);
		payload[l] = 0;
		int type = pt->buf[0];
		memmove(pt->buf, pt->buf + 9 + l, pt->blen - 9 - l);
		pt->blen -= 9 + l;
		handle_frame(pt, type, s, payload, l);
		free(payload);
	}
	return 0;
}

static void host_gone(struct port *pt)
{
	pt->connected = 0;
	pt->blen = 0;
	/* An exec session ends with its client: kill the process so the port can be reused. */
	if (pt != mainport && pt->p.pid) kill(pt->p.tty ? -pt->p.pid : pt->p.pid, SIGKILL);
}

static void reap(void)
{
	for (;;) {
		int st;
		pid_t pid = waitpid(-1, &st, WNOHANG);
		if (pid <= 0) return;
		for (int i = 0; i < nports; i++) {
			if (ports[i].p.pid == pid) {
				ports[i].p.exited = 1;
				ports[i].p.status = st;
			}
		}
	}
}

static void power_off(void)
{
	/* Nothing may survive the workload: kill everything, flush the disk, reboot (=QEMU exit). */
	kill(-1, SIGKILL);
	sync();
	reboot(RB_AUTOBOOT);
	_exit(0);
}

static void event_loop(int sfd)
{
	struct timespec shutdown_deadline = {0};
	for (;;) {
		struct pollfd pf[1 + MAX_PORTS * 4];
		struct { int kind; struct port *pt; } who[1 + MAX_PORTS * 4];
		int n = 0;
		pf[n] = (struct pollfd){ .fd = sfd, .events = POLLIN }; who[n++].kind = 0;
		for (int i = 0; i < nports; i++) {
			struct port *pt = &ports[i];
			struct proc *p = &pt->p;
			/* Only read more from the host when the child took the last stdin chunk
			 * (back-pressure), and not at all while the host side is closed (POLLHUP
			 * would spin; SIGIO tells us when it reconnects). */
			if (pt->connected && !p->plen) { pf[n] = (struct pollfd){ .fd = pt->fd, .events = POLLIN }; who[n].kind = 1; who[n++].pt = pt; }
			if (p->pid && p->out >= 0) { pf[n] = (struct pollfd){ .fd = p->out, .events = POLLIN }; who[n].kind = 2; who[n++].pt = pt; }
			if (p->pid && p->err >= 0) { pf[n] = (struct pollfd){ .fd = p->err, .events = POLLIN }; who[n].kind = 3; who[n++].pt = pt; }
			if (p->pid && p->plen && p->in >= 0) { pf[n] = (struct pollfd){ .fd = p->in, .events = POLLOUT }; who[n].kind = 4; who[n++].pt = pt; }
		}
		int timeout = 1000;
		if (main_exited) timeout = 100;
		int r = poll(pf, n, timeout);
		if (r < 0 && errno != EINTR) die_reboot("poll");
		for (int i = 0; r > 0 && i < n; i++) {
			if (!pf[i].revents) continue;
			struct port *pt = who[i].pt;
			switch (who[i].kind) {
			case 0: {
				struct signalfd_siginfo si;
				while (read(sfd, &si, sizeof si) == sizeof si) {}
				reap();
				refresh_connected();
				break;
			}
			case 1:
				if ((pf[i].revents & POLLIN) ? service_port(pt) < 0 : (pf[i].revents & POLLHUP) != 0) {
					host_gone(pt);
				}
				break;
			case 2: if (pt->p.out >= 0) pump_out(pt, &pt->p.out, T_STDOUT); break;
			case 3: if (pt->p.err >= 0) pump_out(pt, &pt->p.err, T_STDERR); break;
			case 4: flush_stdin(&pt->p); break;
			}
		}
		/* A missed SIGIO must not leave a port deaf forever. */
		if (r == 0) refresh_connected();
		reap();
		for (int i = 0; i < nports; i++) {
			struct port *pt = &ports[i];
			if (!pt->p.pid || !pt->p.exited) continue;
			int was_main = pt == mainport;
			finish_proc(pt);
			if (was_main) {
				main_exited = 1;
				clock_gettime(CLOCK_MONOTONIC, &shutdown_deadline);
				shutdown_deadline.tv_sec += 5;
			}
		}
		if (main_exited) {
			/* Wait (bounded) for the host to acknowledge EXIT with SHUTDOWN so the frame is
			 * out of the virtqueue before the machine goes away; a gone host needs no ack. */
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (!mainport->connected || now.tv_sec > shutdown_deadline.tv_sec) power_off();
		} else if (!mainport->connected) {
			/* The owner (the process that booted us and holds the main port) is gone and
			 * QEMU never reconnects that socket: nobody can collect the workload's output
			 * or status, so the VM ends rather than run on as an orphan. */
			logk("main port closed by the host: powering off");
			power_off();
		}
	}
}

int main(void)
{
	if (getpid() != 1) { fprintf(stderr, "berth-agent: must run as PID 1 of a berth microVM\n"); return 125; }
	mkdir("/proc", 0555); mkdir("/sys", 0555); mkdir("/dev", 0755); mkdir("/run", 0755);
	mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
	/* Only emergencies (panics, oopses) reach the console from here on: the console is the
	 * host's bounded log, not a channel for chatter. */
	if (!getenv("berth_debug")) klogctl(8, NULL, 1);
	load_modules("core");

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGIO);
	sigaddset(&set, SIGPIPE);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);

	open_ports();
	int type;
	uint32_t stream, len;
	char *payload;
	if (read_frame_blocking(mainport, &type, &stream, &payload, &len, 60000) || type != T_INIT)
		die_reboot("no INIT frame from the host");
	J *cfg = jparse(payload, len);
	char err[512] = "";
	if (!cfg) {
		send_error(mainport, MAIN_STREAM, 125, "INIT: bad JSON");
		send_json(mainport, T_EXIT, MAIN_STREAM, "{\"status\":125}");
		power_off();
	}
	if (setup_guest(cfg, err, sizeof err)) {
		send_error(mainport, MAIN_STREAM, 125, err);
		send_json(mainport, T_EXIT, MAIN_STREAM, "{\"status\":125}");
		power_off();
	}
	struct utsname u;
	uname(&u);
	char rel[200];
	jesc(rel, sizeof rel, u.release);
	send_json(mainport, T_READY, 0, "{\"kernel\":\"%s\"}", rel);
	/* Wait for START (OCI "created" -> "running"); frames before it are ignored. */
	for (;;) {
		char *p2;
		if (read_frame_blocking(mainport, &type, &stream, &p2, &len, -1)) die_reboot("main port closed before START");
		free(p2);
		if (type == T_START) break;
		if (type == T_SHUTDOWN) power_off();
	}
	J *proc = jget(cfg, "process");
	spawn(mainport, MAIN_STREAM, proc);
	if (!mainport->p.pid) power_off();
	event_loop(sfd);
	return 0;
}
