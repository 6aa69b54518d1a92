/*
 * Named points in a request's life where a test can stop the process dead (SIGKILL), to prove
 * that a crash there is recovered (issue 22's kill points). In the daemon the hook is NULL and
 * a point costs one load and a branch; the xensim build of the daemon installs a hook that
 * reads XSIM_KILL_AT=<point>:<n> and kills itself at the n-th pass (tests/xensim/lib_privcmd.c),
 * or XSIM_STOP_AT=<point>:<n> and stops itself there (SIGSTOP) until the test sends SIGCONT.
 *
 * The points, in a request's order:
 *   vq.pop              a chain is available, before it is taken
 *   vq.pop.marked       its in-flight bit is set, last_avail not yet advanced
 *   vq.popped           taken (the device owns it)
 *   blk.submitted       a block request is in the kernel (io_uring), or was done inline
 *                       (RWF_NOWAIT) and is not yet returned
 *   net.tx.sent         a frame was written to the tap, not yet returned
 *   console.tx.written  output was written to the port's backends, not yet returned
 *   vq.push             done, before the used ring is written
 *   vq.push.published   used->idx written (the guest can see it), the record not yet
 *   vdev.irq            the used ring is updated, before the interrupt
 */
#ifndef XVD_TESTPOINT_H
#define XVD_TESTPOINT_H

extern void (*testpoint_hook)(const char *point);

static inline void testpoint(const char *point)
{
	if (__builtin_expect(testpoint_hook != 0, 0))
		testpoint_hook(point);
}

#endif
