/*
 * Real NBD servers for tests: nbdkit, qemu-nbd or qemu-storage-daemon in the foreground on a
 * unix socket (or a TCP port), a child of the test (killed with it), started and waited for
 * until it accepts connections.
 */
#ifndef XVD_TEST_NBDKIT_H
#define XVD_TEST_NBDKIT_H

#include <stdbool.h>
#include <sys/types.h>

/* nbdkit is on PATH. */
bool nbdkit_available(void);

/* prog is on PATH. */
bool nbd_tool_available(const char *prog);

/*
 * Run argv (argv[0] looked up on PATH; NULL-terminated), a server that listens on SOCK (a unix
 * socket path, or "tcp:PORT" for 127.0.0.1:PORT). Its pid once it accepts connections (within
 * timeout_ms), or -errno: -ECHILD when it exited (bad arguments), -ETIMEDOUT.
 */
pid_t nbd_server_spawn(const char *sock, const char *const *argv, int timeout_ms);

/* SIGTERM (a clean stop: qemu's servers write back their image's metadata), then reap: the
 * wait status, or -1. */
int nbd_server_stop(pid_t pid, const char *sock);

/*
 * nbdkit -f -U SOCK ARGS... (ARGS NULL-terminated: -r, filters, the plugin and its and the
 * filters' parameters); SOCK "tcp:PORT" listens on 127.0.0.1:PORT instead. Its pid once it
 * accepts connections (within timeout_ms), or -errno: -ECHILD when it exited (bad arguments),
 * -ETIMEDOUT.
 */
pid_t nbdkit_spawn(const char *sock, const char *const *args, int timeout_ms);

/* kill -9 (the server vanishes mid-I/O, as in a crash), reap it, remove the socket. */
void nbdkit_kill(pid_t pid, const char *sock);

/* A TCP port on 127.0.0.1 free a moment ago, or 0. */
int nbdkit_free_port(void);

#endif
