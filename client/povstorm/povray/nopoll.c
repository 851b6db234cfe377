/* POV-Ray without its idle polls: loaded into povray with LD_PRELOAD by
 * povstorm (povray/nopoll.py, which explains why), it shortens the waits
 * POV-Ray 3.7 polls with.
 *
 * - nanosleep (pov_base::Delay: 1-100 ms while it waits for its threads and
 *   message queues): at most POLL_NS.
 * - pthread_cond_timedwait of at most POLLING_WAIT_NS (its message queue's
 *   50 ms, its console's 200 ms, all on conditions it never signals): until
 *   POLL_NS from now. Longer ones are real timeouts (3 s for the back end to
 *   start, or to answer a pause) and are left as they are.
 *
 * Every caller loops and looks again at what it waits for, so POV-Ray does
 * the same work, sooner: the same pixels, the same output. A condition's
 * clock (boost sets CLOCK_MONOTONIC) is told apart by the deadline itself:
 * one of the two clocks puts it within the next POLLING_WAIT_NS. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <time.h>

#define POLL_NS 2000000L            /* 2 ms */
#define POLLING_WAIT_NS 250000000L  /* 250 ms */
#define NS 1000000000L

typedef int (*nanosleep_fn)(const struct timespec *, struct timespec *);
typedef int (*timedwait_fn)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);

int nanosleep(const struct timespec *req, struct timespec *rem) {
    static nanosleep_fn real;
    if (!real) real = (nanosleep_fn)dlsym(RTLD_NEXT, "nanosleep");
    struct timespec t = *req;
    if (t.tv_sec > 0 || t.tv_nsec > POLL_NS) {
        t.tv_sec = 0;
        t.tv_nsec = POLL_NS;
    }
    return real(&t, rem);
}

int pthread_cond_timedwait(pthread_cond_t *cond, pthread_mutex_t *mutex,
                           const struct timespec *abstime) {
    static timedwait_fn real;
    static const clockid_t clocks[2] = {CLOCK_MONOTONIC, CLOCK_REALTIME};
    if (!real) real = (timedwait_fn)dlsym(RTLD_NEXT, "pthread_cond_timedwait");
    for (int i = 0; i < 2; i++) {
        struct timespec now;
        clock_gettime(clocks[i], &now);
        long seconds = (long)(abstime->tv_sec - now.tv_sec);
        if (seconds < 0 || seconds > 1) continue; /* not within the next second on this clock */
        long left = seconds * NS + (abstime->tv_nsec - now.tv_nsec);
        if (left > POLL_NS && left <= POLLING_WAIT_NS) {
            struct timespec soon = {now.tv_sec, now.tv_nsec + POLL_NS};
            if (soon.tv_nsec >= NS) {
                soon.tv_sec += 1;
                soon.tv_nsec -= NS;
            }
            return real(cond, mutex, &soon);
        }
    }
    return real(cond, mutex, abstime);
}
