/*
 * A real NBD server for tests: nbdkit in the foreground on a unix socket, a child of the test
 * (--exit-with-parent), started and waited for until it accepts connections.
 */
#ifndef XVD_TEST_NBDKIT_H
#define XVD_TEST_NBDKIT_H

#include <stdbool.h>
#include <sys/types.h>

/* nbdkit is on PATH. */
bool nbdkit_available(void);

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
