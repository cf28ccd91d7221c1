/** The conformance probe: a static C program the kit builds on the host and runs as a job. */
export const PROBE_SOURCE = String.raw`/* kiln sandbox conformance probe: tries what a job must not be able to do, reports on stdout. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

static int report(const char *what, int rc) {
  if (rc < 0) printf("DENIED %s %s\n", what, strerror(errno));
  else printf("ALLOWED %s\n", what);
  return rc >= 0;
}

static int tcp(const char *ip, int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, ip, &a.sin_addr);
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) return -1;
  struct timeval tv = {.tv_sec = 3};
  setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int rc = connect(s, (struct sockaddr *)&a, sizeof a);
  int e = errno;
  close(s);
  errno = e;
  return rc;
}

static int udp(const char *ip, int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, ip, &a.sin_addr);
  int s = socket(AF_INET, SOCK_DGRAM, 0);
  if (s < 0) return -1;
  int rc = (int)sendto(s, "kiln", 4, 0, (struct sockaddr *)&a, sizeof a);
  int e = errno;
  close(s);
  errno = e;
  return rc;
}

/* Prints a file's bytes or a directory's names, so the caller can see what leaked. */
static int dump(const char *p) {
  DIR *d = opendir(p);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) printf("ENTRY %s %s\n", p, e->d_name);
    closedir(d);
    return 0;
  }
  int fd = open(p, O_RDONLY);
  if (fd < 0) return -1;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) fwrite(buf, 1, (size_t)n, stdout);
  close(fd);
  return 0;
}

static int put(const char *p, const char *text) {
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return -1;
  ssize_t n = write(fd, text, strlen(text));
  close(fd);
  return n < 0 ? -1 : 0;
}

/* A fork bomb with a ceiling of its own, so that it cannot hurt a host without limits: every
   process forks until the shared count reaches cap or fork fails, then all of them stay alive for
   hold_ms. */
static int forkbomb(long cap, int hold_ms) {
  long *shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) return 1;
  pid_t top = getpid();
  for (;;) {
    if (__atomic_fetch_add(&shared[0], 1, __ATOMIC_SEQ_CST) >= cap) {
      __atomic_fetch_sub(&shared[0], 1, __ATOMIC_SEQ_CST);
      break;
    }
    if (fork() < 0) {
      __atomic_fetch_sub(&shared[0], 1, __ATOMIC_SEQ_CST);
      __atomic_fetch_add(&shared[1], 1, __ATOMIC_SEQ_CST);
      break;
    }
  }
  usleep(hold_ms * 1000);
  if (getpid() != top) _exit(0);
  printf("FORKED %ld FAILED %ld\n", __atomic_load_n(&shared[0], __ATOMIC_SEQ_CST),
         __atomic_load_n(&shared[1], __ATOMIC_SEQ_CST));
  return 0;
}

/* Allocates and touches up to mib MiB, 16 MiB at a time. */
static int memhog(long mib) {
  long got = 0;
  for (; got < mib; got += 16) {
    char *p = malloc(16L << 20);
    if (!p) {
      printf("DENIED alloc after %ld MiB\n", got);
      return 1;
    }
    memset(p, 1, 16L << 20);
  }
  printf("ALLOCATED %ld MiB\n", got);
  return 0;
}

/* Writes 1 MiB files into dir until mib MiB are written or a write fails; 1 when it failed. */
static int fill(const char *dir, long mib) {
  static char block[1 << 20];
  char p[4200];
  long written = 0;
  int short_write = 0;
  memset(block, 'k', sizeof block);
  for (long i = 0; written < (mib << 20) && !short_write; i++) {
    snprintf(p, sizeof p, "%s/fill-%ld", dir, i);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
      short_write = 1;
      break;
    }
    size_t done = 0;
    while (done < sizeof block) {
      ssize_t n = write(fd, block + done, sizeof block - done);
      if (n <= 0) {
        short_write = 1;
        break;
      }
      done += (size_t)n;
    }
    written += (long)done;
    close(fd);
  }
  printf("FILLED %s %ld\n", dir, written);
  return short_write;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  const char *mode = argc > 1 ? argv[1] : "";
  int allowed = 0;
  char what[4200];
  if (!strcmp(mode, "net") && argc > 2) {
    snprintf(what, sizeof what, "tcp 127.0.0.1:%s", argv[2]);
    allowed += report(what, tcp("127.0.0.1", atoi(argv[2])));
    allowed += report("tcp 1.1.1.1:53", tcp("1.1.1.1", 53));
    allowed += report("udp 1.1.1.1:53", udp("1.1.1.1", 53));
    return allowed ? 3 : 0;
  }
  if (!strcmp(mode, "read")) {
    for (int i = 2; i < argc; i++) {
      snprintf(what, sizeof what, "read %s", argv[i]);
      allowed += report(what, dump(argv[i]));
    }
    return 0;
  }
  if (!strcmp(mode, "sleep")) {
    fork(); /* two processes, so "the whole tree" is tested */
    sleep(60);
    return 0;
  }
  if (!strcmp(mode, "write")) {
    for (int i = 2; i + 1 < argc; i += 2) {
      snprintf(what, sizeof what, "write %s", argv[i]);
      report(what, put(argv[i], argv[i + 1]));
    }
    report("symlink link.out", symlink("/etc/passwd", "link.out"));
    report("fifo fifo.out", mkfifo("fifo.out", 0644));
    return 0;
  }
  if (!strcmp(mode, "isolate") && argc > 2) {
    snprintf(what, sizeof what, "mine-%s", argv[2]);
    put(what, argv[2]);
    snprintf(what, sizeof what, "/tmp/mine-%s", argv[2]);
    put(what, argv[2]);
    put("mine.txt", argv[2]);
    usleep(500 * 1000); /* let the other jobs write theirs */
    dump(".");
    dump("/tmp");
    return 0;
  }
  if (!strcmp(mode, "forkbomb") && argc > 3) return forkbomb(atol(argv[2]), atoi(argv[3]));
  if (!strcmp(mode, "memhog") && argc > 2) return memhog(atol(argv[2]));
  if (!strcmp(mode, "fill") && argc > 3) {
    int failed = 0;
    for (int i = 3; i < argc; i++) failed |= fill(argv[i], atol(argv[2]));
    return failed;
  }
  if (!strcmp(mode, "abort")) abort();
  if (!strcmp(mode, "symlink") && argc > 3) return report("symlink", symlink(argv[2], argv[3])) ? 0 : 1;
  if (!strcmp(mode, "exit") && argc > 2) {
    fprintf(stderr, "exiting with %s\n", argv[2]);
    return atoi(argv[2]);
  }
  fprintf(stderr, "usage: probe net PORT | read PATH... | sleep TOKEN | write (PATH TEXT)... | isolate TOKEN | forkbomb CAP HOLD_MS [TOKEN] | memhog MIB | fill MIB DIR... | abort | symlink TARGET NAME | exit CODE\n");
  return 2;
}
`;
