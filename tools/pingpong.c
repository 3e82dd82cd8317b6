/* The floor of a small-message round trip on this machine, for
 * tools/bench.py: two processes exchange a 64-byte message over a loopback
 * TCP connection, N times, waiting for each reply either by busy polling
 * (non-blocking recv in a loop) or by a blocking recv; block1 blocks too,
 * with both processes held on the first CPU this one may use, so that no
 * wakeup has to reach another core (the difference with block is what
 * waking a thread on another, idle core costs here). Prints the median
 * round trip in microseconds.
 *
 *     pingpong busy|block|block1 ITERATIONS
 */
#define _GNU_SOURCE
#include <netinet/in.h>
#include <sched.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { kBytes = 64 };

static int busy;

static void die(const char* what) {
  perror(what);
  exit(1);
}

static void exchange(int fd, char* buf, int send_first) {
  if (send_first && send(fd, buf, kBytes, 0) != kBytes) die("send");
  for (int got = 0; got < kBytes;) {
    ssize_t n = recv(fd, buf + got, kBytes - got, busy ? MSG_DONTWAIT : 0);
    if (n > 0) {
      got += (int)n;
    } else if (n == 0) {
      exit(0); /* the other side is done */
    }
  }
  if (!send_first && send(fd, buf, kBytes, 0) != kBytes) die("send");
}

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int compare(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

int main(int argc, char** argv) {
  if (argc != 3 || (strcmp(argv[1], "busy") && strcmp(argv[1], "block") && strcmp(argv[1], "block1"))) {
    fprintf(stderr, "usage: %s busy|block|block1 ITERATIONS\n", argv[0]);
    return 2;
  }
  busy = strcmp(argv[1], "busy") == 0;
  if (strcmp(argv[1], "block1") == 0) { /* inherited by the echo process */
    cpu_set_t allowed, first;
    if (sched_getaffinity(0, sizeof allowed, &allowed)) die("sched_getaffinity");
    CPU_ZERO(&first);
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
      if (CPU_ISSET(cpu, &allowed)) {
        CPU_SET(cpu, &first);
        break;
      }
    }
    if (sched_setaffinity(0, sizeof first, &first)) die("sched_setaffinity");
  }
  int iters = atoi(argv[2]);
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  if (bind(listener, (struct sockaddr*)&addr, sizeof addr) || listen(listener, 1) ||
      getsockname(listener, (struct sockaddr*)&addr, &len))
    die("listen");
  int one = 1;
  char buf[kBytes] = {0};
  pid_t echo = fork();
  if (echo == 0) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr*)&addr, sizeof addr)) die("connect");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    for (;;) exchange(fd, buf, 0);
  }
  int fd = accept(listener, NULL, NULL);
  if (fd < 0) die("accept");
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  double* samples = malloc(sizeof(double) * iters);
  for (int i = 0; i < iters / 10; i++) exchange(fd, buf, 1); /* warm-up */
  for (int i = 0; i < iters; i++) {
    double start = now_us();
    exchange(fd, buf, 1);
    samples[i] = now_us() - start;
  }
  close(fd);
  waitpid(echo, NULL, 0);
  qsort(samples, iters, sizeof(double), compare);
  printf("%.2f\n", samples[iters / 2]);
  return 0;
}
