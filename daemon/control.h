/*
 * The per-instance control socket that xen-virtiodctl(8) talks to: DIR/<guest>.ctl (DIR is
 * /run/xen-virtiod unless --control-dir or $XEN_VIRTIOD_CONTROL_DIR say otherwise), a unix
 * stream socket, mode 0600, and only peers with uid 0 (SO_PEERCRED) are served.
 *
 * Protocol: one request per connection. The client sends one line of at most
 * CONTROL_REQUEST_MAX bytes, the newline included: printable ASCII words separated by single
 * spaces. The daemon answers "OK\n" followed by the body, or "ERR <message>\n", then closes.
 * `console` passes one end of a socket pair along with its "OK" line (SCM_RIGHTS).
 *
 *   info                        guest=NAME domid=N pid=N version=V devices=N notify=PATH
 *   status [json]               devices, registers, queues, counters, notify path
 *   metrics                     Prometheus text exposition (families may repeat)
 *   block DEV resize            re-read the backend's size; tell the guest when it changed
 *   net DEV link up|down        the link the guest sees
 *   console DEV [PORT]          attach to a console port (fd passed)
 *   log-level LEVEL             error, warning, notice, info or debug
 *
 * The socket is served by the instance's event loop and never blocks it: requests and
 * responses are bounded, at most CONTROL_CLIENTS_MAX clients are served at once (others wait
 * in the listen backlog), and a client that has not finished within CONTROL_TIMEOUT_S seconds
 * is dropped.
 */
#ifndef XVD_CONTROL_H
#define XVD_CONTROL_H

#define CONTROL_DIR_DEFAULT  "/run/xen-virtiod"
#define CONTROL_DIR_ENV      "XEN_VIRTIOD_CONTROL_DIR"
#define CONTROL_SUFFIX       ".ctl"
#define CONTROL_REQUEST_MAX  256u
#define CONTROL_WORDS_MAX    4u
#define CONTROL_RESPONSE_MAX (1u << 20)
#define CONTROL_CLIENTS_MAX  16u
#define CONTROL_TIMEOUT_S    5.0

struct ev_loop;
struct guest;
struct control;

/* The directory: dir when given, else $XEN_VIRTIOD_CONTROL_DIR, else the default. */
const char *control_dir(const char *dir);

/*
 * Listen on DIR/<guest name>.ctl for g (created mode 0600; DIR is created when missing). A
 * stale socket of an earlier instance is replaced; a live one (another instance serving a guest
 * of that name) is left alone and -EADDRINUSE returned. 0 or a negative errno (logged).
 */
int control_start(struct ev_loop *loop, const char *dir, struct guest *g, struct control **out);

/* Drop every client, close and remove the socket. NULL is fine. */
void control_stop(struct control *c);

#endif
