/*
 * kiln's native thin client. It has no logic beyond forwarding: it sends argv, cwd and the
 * environment to the daemon over a unix socket (protocol in core/src/client/protocol.ts), starts
 * the daemon when none listens, and relays the answer. When the daemon cannot help, it runs the
 * real compiler itself. `kiln --option` commands are handed to the Node CLI.
 *
 * Built at install time by core/scripts/build-native.mjs, which defines KILN_NODE (the node
 * binary), KILN_NODE_CLI and KILN_DAEMON_MAIN (absolute paths into core/dist).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef KILN_NODE
#error "KILN_NODE must be defined"
#endif

extern char **environ;

enum { FLAG_STDOUT_TTY = 1, FLAG_STDERR_TTY = 2, FLAG_STDIN_TTY = 8, FLAG_UMASK = 16 };
enum { ACTION_RESULT = 0, ACTION_EXEC = 1, ACTION_FALLBACK = 2 };
#define START_TIMEOUT_MS 10000
#define MAX_FRAME (256u * 1024 * 1024)

struct buf {
    char *data;
    size_t len, cap;
};

static void buf_put(struct buf *b, const void *data, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) abort();
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
}

static void buf_u32(struct buf *b, uint32_t v) {
    unsigned char le[4] = {v & 0xff, (v >> 8) & 0xff, (v >> 16) & 0xff, (v >> 24) & 0xff};
    buf_put(b, le, 4);
}

static void buf_str(struct buf *b, const char *s) {
    size_t n = strlen(s);
    buf_u32(b, (uint32_t)n);
    buf_put(b, s, n);
}

static uint32_t rd_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Same rule as runtimeDir() in core/src/paths.ts. */
static void runtime_dir(char *out, size_t size) {
    const char *dir = getenv("KILN_RUNTIME_DIR");
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    if (dir && *dir) snprintf(out, size, "%s", dir);
    else if (xdg && *xdg) snprintf(out, size, "%s/kiln", xdg);
    else snprintf(out, size, "/tmp/kiln-%u", (unsigned)getuid());
}

/*
 * Whether `path` may be trusted as this user's: a directory (or, with want_sock, a socket), not a
 * symlink, owned by us, and (a directory) with no group or other permission bits. Another local
 * user who made /tmp/kiln-$UID first would otherwise answer our compiles. A missing path is fine:
 * we create it. Says why not into `why`.
 */
static int unsafe_path(const char *path, int want_sock, char *why, size_t size) {
    struct stat st;
    if (lstat(path, &st) != 0) return 0;
    if (S_ISLNK(st.st_mode)) snprintf(why, size, "%s is a symlink", path);
    else if (want_sock ? !S_ISSOCK(st.st_mode) : !S_ISDIR(st.st_mode))
        snprintf(why, size, "%s is not a %s", path, want_sock ? "socket" : "directory");
    else if (st.st_uid != geteuid())
        snprintf(why, size, "%s is owned by uid %u, not by you (uid %u)", path, (unsigned)st.st_uid, (unsigned)geteuid());
    else if (!want_sock && (st.st_mode & 077))
        snprintf(why, size, "%s has mode %03o (it must be 0700)", path, (unsigned)(st.st_mode & 0777));
    else return 0;
    return 1;
}

static int unsafe_runtime(const char *rundir, const char *sock) {
    char why[PATH_MAX + 64];
    if (!unsafe_path(rundir, 0, why, sizeof why) && !unsafe_path(sock, 1, why, sizeof why)) return 0;
    fprintf(stderr, "kiln: not using the daemon: %s; compiling without the cache\n", why);
    return 1;
}

static int connect_socket(const char *path) {
    struct sockaddr_un addr;
    if (strlen(path) >= sizeof addr.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    strcpy(addr.sun_path, path);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int write_all(int fd, const char *data, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, data, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, char *data, size_t n) {
    while (n > 0) {
        ssize_t r = read(fd, data, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        data += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Sends the request and reads one response body; returns NULL when anything goes wrong. */
static unsigned char *exchange(int fd, const struct buf *req, uint32_t *body_len) {
    if (write_all(fd, req->data, req->len) != 0) return NULL;
    shutdown(fd, SHUT_WR);
    unsigned char head[8];
    if (read_all(fd, (char *)head, 8) != 0 || memcmp(head, "KLN1", 4) != 0) return NULL;
    uint32_t n = rd_u32(head + 4);
    if (n > MAX_FRAME) return NULL;
    unsigned char *body = malloc(n ? n : 1);
    if (!body || read_all(fd, (char *)body, n) != 0) {
        free(body);
        return NULL;
    }
    *body_len = n;
    return body;
}

static void start_daemon(const char *rundir) {
    mkdir(rundir, 0700);
    pid_t pid = fork();
    if (pid < 0) return;
    if (pid == 0) {
        /* Double fork: the daemon is reparented to init and never becomes our zombie. */
        if (fork() != 0) _exit(0);
        setsid();
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        execl(KILN_NODE, KILN_NODE, KILN_DAEMON_MAIN, (char *)NULL);
        _exit(127);
    }
    waitpid(pid, NULL, 0);
}

/* Prints the daemon's start-up error (a config mistake) when it wrote one after `since`. */
static int report_start_error(const char *rundir, time_t since) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/daemon.err", rundir);
    struct stat st;
    if (stat(path, &st) != 0 || st.st_mtime < since - 1) return 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char msg[4096];
    size_t n = fread(msg, 1, sizeof msg - 1, f);
    fclose(f);
    msg[n] = 0;
    fprintf(stderr, "kiln: the daemon could not start: %s", msg);
    if (n == 0 || msg[n - 1] != '\n') fputc('\n', stderr);
    return 1;
}

static unsigned char *ask_daemon(const struct buf *req, uint32_t *body_len) {
    char rundir[PATH_MAX - 32], sock[PATH_MAX];
    runtime_dir(rundir, sizeof rundir);
    snprintf(sock, sizeof sock, "%s/daemon.sock", rundir);
    if (unsafe_runtime(rundir, sock)) return NULL;
    int fd = connect_socket(sock);
    if (fd < 0) {
        if (errno != ENOENT && errno != ECONNREFUSED) return NULL;
        time_t since = time(NULL);
        long start = now_ms();
        start_daemon(rundir);
        /* mkdir may have lost a race to someone else's directory. */
        if (unsafe_runtime(rundir, sock)) return NULL;
        useconds_t wait = 5000;
        while (fd < 0 && now_ms() - start < START_TIMEOUT_MS) {
            usleep(wait);
            if (wait < 100000) wait *= 2;
            fd = connect_socket(sock);
            if (fd < 0 && ((errno != ENOENT && errno != ECONNREFUSED) || report_start_error(rundir, since))) {
                return NULL;
            }
        }
        if (fd < 0) return NULL;
    }
    unsigned char *body = exchange(fd, req, body_len);
    close(fd);
    return body;
}

static char self_path[PATH_MAX];

/* execvp, but never into kiln itself (a masquerade link found earlier in PATH). */
static void exec_compiler(const char *name, char **argv) {
    char real[PATH_MAX], cand[PATH_MAX];
    if (strchr(name, '/')) {
        if (!realpath(name, real) || strcmp(real, self_path) != 0) {
            argv[0] = (char *)name;
            execv(name, argv);
            fprintf(stderr, "kiln: %s: %s\n", name, strerror(errno));
            exit(errno == ENOENT ? 127 : 126);
        }
        name = strrchr(name, '/') + 1;
    }
    const char *path = getenv("PATH");
    if (!path) path = "/usr/local/bin:/usr/bin:/bin";
    const char *p = path;
    while (1) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0) snprintf(cand, sizeof cand, "./%s", name);
        else snprintf(cand, sizeof cand, "%.*s/%s", (int)len, p, name);
        struct stat st;
        if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0 &&
            !(realpath(cand, real) && strcmp(real, self_path) == 0)) {
            /* argv[0] is the compiler's own path: gcc finds its internals relative to it. */
            argv[0] = cand;
            execv(cand, argv);
        }
        if (!end) break;
        p = end + 1;
    }
    fprintf(stderr, "kiln: %s: command not found\n", name);
    exit(127);
}

int main(int argc, char **argv) {
    ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (n > 0) self_path[n] = 0;
    else if (!realpath(argv[0], self_path)) self_path[0] = 0;

    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    int masquerade = strncmp(base, "kiln", 4) != 0;
    if (!masquerade && (argc < 2 || (argv[1][0] == '-' && argv[1][1] != 0))) {
        /* A management command: the Node CLI owns those. */
        char **args = calloc((size_t)argc + 2, sizeof *args);
        args[0] = KILN_NODE;
        args[1] = KILN_NODE_CLI;
        for (int i = 1; i < argc; i++) args[i + 1] = argv[i];
        execv(KILN_NODE, args);
        fprintf(stderr, "kiln: cannot run %s: %s\n", KILN_NODE, strerror(errno));
        return 127;
    }
    /* cargv = [compiler, args...], what the daemon expects. */
    char **cargv = masquerade ? argv : argv + 1;
    int cargc = masquerade ? argc : argc - 1;
    const char *compiler = masquerade ? base : argv[1];
    char *saved0 = cargv[0];
    if (masquerade) cargv[0] = (char *)base;

    const char *disable = getenv("KILN_DISABLE");
    if (!(disable && (strcmp(disable, "1") == 0 || strcmp(disable, "true") == 0))) {
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof cwd)) {
            struct buf req = {0};
            buf_put(&req, "KLN1\0\0\0\0", 8);
            uint32_t flags = (isatty(1) ? FLAG_STDOUT_TTY : 0) | (isatty(2) ? FLAG_STDERR_TTY : 0) |
                             (isatty(0) ? FLAG_STDIN_TTY : 0);
            /* The umask, so that outputs written by the daemon get the caller's modes. */
            mode_t mask = umask(0);
            umask(mask);
            flags |= FLAG_UMASK | ((uint32_t)(mask & 0777) << 16);
            buf_u32(&req, flags);
            buf_str(&req, self_path);
            buf_str(&req, cwd);
            buf_u32(&req, (uint32_t)cargc);
            for (int i = 0; i < cargc; i++) buf_str(&req, cargv[i]);
            uint32_t envc = 0;
            for (char **e = environ; *e; e++) envc++;
            buf_u32(&req, envc);
            for (char **e = environ; *e; e++) buf_str(&req, *e);
            uint32_t body_len = (uint32_t)(req.len - 8);
            unsigned char le[4] = {body_len & 0xff, (body_len >> 8) & 0xff, (body_len >> 16) & 0xff, body_len >> 24};
            memcpy(req.data + 4, le, 4);

            uint32_t len = 0;
            unsigned char *body = ask_daemon(&req, &len);
            if (body && len >= 4) {
                uint32_t action = rd_u32(body);
                if (action == ACTION_RESULT && len >= 16) {
                    int32_t code = (int32_t)rd_u32(body + 4);
                    uint32_t olen = rd_u32(body + 8);
                    if (12 + (uint64_t)olen + 4 <= len) {
                        uint32_t elen = rd_u32(body + 12 + olen);
                        if (16 + (uint64_t)olen + elen == len) {
                            write_all(1, (char *)body + 12, olen);
                            write_all(2, (char *)body + 16 + olen, elen);
                            return code & 0xff;
                        }
                    }
                } else if (action == ACTION_EXEC && len >= 8) {
                    /* program, then argv: decoded in place as NUL-terminated strings. */
                    size_t off = 4;
                    uint32_t plen = rd_u32(body + off);
                    off += 4;
                    if (off + plen + 4 <= len) {
                        char *program = strndup((char *)body + off, plen);
                        off += plen;
                        uint32_t ac = rd_u32(body + off);
                        off += 4;
                        char **av = calloc((size_t)ac + 1, sizeof *av);
                        uint32_t i = 0;
                        for (; i < ac && off + 4 <= len; i++) {
                            uint32_t l = rd_u32(body + off);
                            off += 4;
                            if (off + l > len) break;
                            av[i] = strndup((char *)body + off, l);
                            off += l;
                        }
                        if (i == ac && off == len) {
                            execv(program, av);
                            fprintf(stderr, "kiln: cannot run %s: %s\n", program, strerror(errno));
                            return errno == ENOENT ? 127 : 126;
                        }
                    }
                }
                /* ACTION_FALLBACK or a malformed answer: compile locally below. */
            }
        }
    }
    cargv[0] = saved0;
    if (masquerade) exec_compiler(compiler, argv);
    exec_compiler(compiler, argv + 1);
    return 127;
}
