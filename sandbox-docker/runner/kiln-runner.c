/*
 * kiln-runner: PID 1 of a warm kiln container. It runs one job at a time for the worker, which
 * talks to it over the container's attached stdin and stdout (no process per job on the host, no
 * `docker exec`). As the namespace's init it cannot be signalled by the jobs it starts, and it is
 * not dumpable, so they cannot ptrace it or reach its descriptors either: a job cannot tamper with
 * the next one. After every job it kills whatever the job left (kill(-1)) and reaps it.
 *
 * Requests on stdin: 'J' u32 size, then size bytes: u32 argc, u32 envc, cwd\0, argv[i]\0..., env[i]\0...
 *                    'K': kill the running job's processes.
 * Replies on stdout: 'O'|'E' u32 size, bytes: the job's stdout or stderr;
 *                    'X' u32 8, i32 wait status (or -1 when the job could not start), u32 leftovers.
 * Sizes are little-endian.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_REQUEST (64u << 20)

static int chld_pipe[2];

static void on_chld(int sig) {
  (void)sig;
  int e = errno;
  (void)!write(chld_pipe[1], "c", 1);
  errno = e;
}

static int read_full(int fd, void *buf, size_t n) {
  char *p = buf;
  while (n) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

static void write_full(const void *buf, size_t n) {
  const char *p = buf;
  while (n) {
    ssize_t r = write(1, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) _exit(3); /* the worker is gone: nothing more to do */
    p += r;
    n -= (size_t)r;
  }
}

static void reply(char type, const void *data, uint32_t size) {
  char head[5];
  head[0] = type;
  memcpy(head + 1, &size, 4);
  write_full(head, 5);
  if (size) write_full(data, size);
}

/* Kills every process of the namespace but this one; 1 when there was any. */
static int kill_all(void) { return kill(-1, SIGKILL) == 0; }

static void reap(void) {
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

static void run_job(char *req, uint32_t size) {
  uint32_t argc, envc;
  if (size < 8) _exit(4);
  memcpy(&argc, req, 4);
  memcpy(&envc, req + 4, 4);
  if (argc < 1 || argc > size || envc > size) _exit(4);
  char **strs = calloc((size_t)argc + envc + 3, sizeof(char *));
  if (!strs) _exit(5);
  char *p = req + 8, *end = req + size;
  for (uint32_t i = 0; i < 1 + argc + envc; i++) {
    char *z = memchr(p, 0, (size_t)(end - p));
    if (!z) _exit(4);
    strs[i + (i > argc ? 1 : 0)] = p;
    p = z + 1;
  }
  char *cwd = strs[0];
  char **argv = strs + 1;
  char **envp = strs + 2 + argc;
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) _exit(6);
  pid_t pid = fork();
  if (pid < 0) {
    int32_t status = -1;
    uint32_t left = 0;
    char msg[160];
    int n = snprintf(msg, sizeof msg, "kiln-runner: fork: %s\n", strerror(errno));
    reply('E', msg, (uint32_t)n);
    char x[8];
    memcpy(x, &status, 4);
    memcpy(x + 4, &left, 4);
    reply('X', x, 8);
    close(out[0]), close(out[1]), close(err[0]), close(err[1]);
    free(strs);
    return;
  }
  if (pid == 0) {
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    signal(SIGCHLD, SIG_DFL);
    signal(SIGPIPE, SIG_DFL);
    setsid();
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    if (chdir(cwd)) {
      dprintf(2, "kiln-runner: chdir %s: %s\n", cwd, strerror(errno));
      _exit(127);
    }
    execve(argv[0], argv, envp);
    dprintf(2, "kiln-runner: execve %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  int status = 0, exited = 0, left = 0;
  struct pollfd fds[4] = {
      {.fd = out[0], .events = POLLIN}, {.fd = err[0], .events = POLLIN},
      {.fd = 0, .events = POLLIN},      {.fd = chld_pipe[0], .events = POLLIN},
  };
  static char buf[65536];
  while (fds[0].fd >= 0 || fds[1].fd >= 0 || !exited) {
    int n = poll(fds, 4, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      _exit(7);
    }
    for (int i = 0; i < 2; i++) {
      if (fds[i].fd < 0 || !fds[i].revents) continue;
      ssize_t r = read(fds[i].fd, buf, sizeof buf);
      if (r > 0) {
        reply(i ? 'E' : 'O', buf, (uint32_t)r);
      } else if (r == 0 || errno != EINTR) {
        close(fds[i].fd);
        fds[i].fd = -1;
      }
    }
    if (fds[2].fd >= 0 && fds[2].revents) {
      char cmd;
      if (read(0, &cmd, 1) != 1) _exit(0); /* the worker closed the channel */
      if (cmd == 'K') kill_all();
    }
    if (fds[3].revents) {
      char drain[64];
      (void)!read(chld_pipe[0], drain, sizeof drain);
    }
    if (!exited) {
      pid_t w;
      while ((w = waitpid(-1, &n, WNOHANG)) > 0) {
        if (w == pid) {
          status = n;
          exited = 1;
        }
      }
      /* Whatever the job leaves behind dies with it, and its pipes close. */
      if (exited) left = kill_all();
    }
  }
  reap();
  left |= kill_all();
  reap();
  char x[8];
  int32_t s = status;
  uint32_t l = (uint32_t)left;
  memcpy(x, &s, 4);
  memcpy(x + 4, &l, 4);
  reply('X', x, 8);
  free(strs);
}

int main(void) {
  prctl(PR_SET_DUMPABLE, 0);
  signal(SIGPIPE, SIG_IGN);
  if (pipe2(chld_pipe, O_CLOEXEC | O_NONBLOCK)) return 2;
  struct sigaction sa = {.sa_handler = on_chld, .sa_flags = SA_RESTART | SA_NOCLDSTOP};
  sigemptyset(&sa.sa_mask);
  sigaction(SIGCHLD, &sa, NULL);
  reply('R', NULL, 0); /* ready */
  for (;;) {
    char type;
    if (read_full(0, &type, 1)) return 0;
    if (type == 'K') continue; /* no job running */
    if (type != 'J') return 4;
    uint32_t size;
    if (read_full(0, &size, 4) || size > MAX_REQUEST) return 4;
    char *req = malloc((size_t)size + 1);
    if (!req || read_full(0, req, size)) return 4;
    run_job(req, size);
    free(req);
    reap();
  }
}
