/* server_systemd.c - the server under systemd (docs/scale-out.md, "systemd"): sd_notify for a
 * Type=notify service (READY=1 once the workers run, RELOADING=1 during a reload, STOPPING=1
 * when the drain begins, STATUS= lines, MAINPID= when a successor takes over), and socket
 * activation (LISTEN_FDS, LISTEN_FDNAMES: the sockets systemd holds become the listeners whose
 * addresses they are bound to). Without NOTIFY_SOCKET or LISTEN_FDS everything here is a no-op.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "server/server_int.h"

void tli_notify(tl_server *srv, const char *fmt, ...)
{
    const char *sock = getenv("NOTIFY_SOCKET");
    if (!sock || !*sock)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* The variable stays: a successor started by SIGUSR2 notifies the same manager. */
    int rc = sd_notify(0, msg);
    if (rc < 0)
        LOG(srv, WARN, "sd_notify to %s: %s (systemd does not hear: %.40s...)", sock,
            strerror(-rc), msg);
}

/* RELOADING=1 needs the time it began, on CLOCK_MONOTONIC (systemd 253's reload-notify). */
void tli_notify_reloading(tl_server *srv)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    tli_notify(srv, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading",
               (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
}

int tli_systemd_sockets(tl_server *srv, char *err, size_t errlen)
{
    char **names = NULL;
    /* Checks LISTEN_PID against our pid, and unsets the variables (1): our children (a
     * successor started by SIGUSR2) get the sockets by hand-off, never by inheritance. */
    int n = sd_listen_fds_with_names(1, &names);
    if (n <= 0) {
        if (n < 0)
            LOG(srv, WARN, "LISTEN_FDS: %s (binding the listeners instead)", strerror(-n));
        return 0;
    }
    int rc = 0;
    if (!(srv->inherit = calloc((size_t)n, sizeof *srv->inherit))) {
        tli_fmt(err, errlen, "out of memory");
        rc = -1;
    }
    for (int i = 0; i < n; i++) {
        int fd = SD_LISTEN_FDS_START + i;
        if (rc == 0) {
            tli_inherit *in = &srv->inherit[srv->ninherit++];
            in->fd = fd;
            in->listener = in->worker = -1;
            snprintf(in->name, sizeof in->name, "%s", names && names[i] ? names[i] : "");
            /* systemd passes blocking sockets that children may inherit; ours are neither. */
            int fl = fcntl(fd, F_GETFL);
            if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) != 0 ||
                fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
                tli_fmt(err, errlen, "socket activation: fd %d (%s): %s", fd, in->name,
                        strerror(errno));
                rc = -1;
            }
        } else {
            close(fd);
        }
        if (names)
            free(names[i]);
    }
    free(names);
    srv->from_systemd = rc == 0;
    if (rc == 0)
        LOG(srv, INFO, "socket activation: %d sockets from systemd", n);
    return rc;
}
