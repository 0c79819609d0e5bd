/* server_handoff.c - zero-downtime upgrade (docs/scale-out.md, "Upgrading"): a new process takes
 * the running server's listening sockets over a UNIX socket (SCM_RIGHTS), starts serving on them,
 * then tells the old one, which drains. The kernel's accept queue belongs to the socket, not to a
 * process, so no connection in it is lost or refused: until the old one stops accepting both
 * accept from the same queues, and after it only the new one does.
 *
 * The running server listens on upgrade-socket PATH when one is configured (a new process started
 * with the same options finds it there), and SIGUSR2 starts the new binary itself (fork and exec
 * of our executable's path with our argv, as nginx's binary upgrade does) with TLSLOOP_TAKEOVER
 * naming the socket (an abstract one made for it when upgrade-socket is not configured). Only a
 * peer with our user id (or root) may connect; on the abstract socket only the child we started.
 *
 * The exchange, one SOCK_SEQPACKET message each: the new process says HELLO; the old one answers
 * HEAD (how many listeners, workers and sockets) and one FD message per socket (its listener, its
 * worker, its address, the descriptor), or REFUSE with the reason; the new one checks them
 * against its own listeners (server_listen.c), starts its workers and says SERVING; the old one
 * tells systemd the new MAINPID and drains. A new process that fails before SERVING leaves the
 * old one serving as before.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "server/server_int.h"

extern char **environ;

#define MAGIC "TLSLOOP1"
#define ENV_NAME "TLSLOOP_TAKEOVER"
/* How long either side waits for the other's next message during the exchange. */
#define EXCHANGE_TIMEOUT_MS 5000
/* How often the child SIGUSR2 started is looked for (until it is reaped), and a successor that
 * took the sockets checked on (until it says it serves, or SERVING_MS passed). */
#define REAP_MS 200
#define SERVING_MS 60000

enum { M_HELLO = 1, M_HEAD, M_FD, M_REFUSE, M_SERVING };

typedef struct hmsg {
    char magic[8];
    uint32_t type;
    uint32_t pid;
    uint32_t nlisten, nworkers, nfds;
    int32_t listener, worker;
    char text[200];                /* M_REFUSE: why */
} hmsg;

static hmsg msg(uint32_t type)
{
    hmsg m;
    memset(&m, 0, sizeof m);
    memcpy(m.magic, MAGIC, sizeof m.magic);
    m.type = type;
    m.pid = (uint32_t)getpid();
    return m;
}

/* "@name" is an abstract socket (no file), else a path. 0, or -1 when the name does not fit. */
static int unix_addr(const char *name, struct sockaddr_un *sa, socklen_t *len)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof sa->sun_path)
        return -1;
    memcpy(sa->sun_path, name, n);
    if (name[0] == '@')
        sa->sun_path[0] = 0;
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (name[0] == '@' ? 0 : 1));
    return 0;
}

static void set_timeouts(int fd)
{
    struct timeval tv = {.tv_sec = EXCHANGE_TIMEOUT_MS / 1000,
                         .tv_usec = (EXCHANGE_TIMEOUT_MS % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* The peer's process: 0 when it runs as our user (or root), else -1 with err set. */
static int peer_ok(int fd, struct ucred *cred, char *err, size_t errlen)
{
    socklen_t len = sizeof *cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, &len) != 0) {
        tli_fmt(err, errlen, "SO_PEERCRED: %s", strerror(errno));
        return -1;
    }
    if (cred->uid != geteuid() && cred->uid != 0) {
        tli_fmt(err, errlen, "pid %d runs as uid %u, we as uid %u: refused", (int)cred->pid,
                (unsigned)cred->uid, (unsigned)geteuid());
        return -1;
    }
    return 0;
}

/* One message, with a descriptor when fd >= 0 (sending) or fd_out != NULL (receiving). */
static int send_msg(int sock, const hmsg *m, int fd)
{
    struct iovec iov = {.iov_base = (void *)m, .iov_len = sizeof *m};
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } cbuf;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&cbuf, 0, sizeof cbuf);
        mh.msg_control = cbuf.buf;
        mh.msg_controllen = sizeof cbuf.buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof fd);
    }
    ssize_t n;
    do
        n = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof *m ? 0 : -1;
}

/* 1: a message (its descriptor in *fd_out, or -1); 0: the peer closed; -1: an error (errno). */
static int recv_msg(int sock, hmsg *m, int *fd_out)
{
    struct iovec iov = {.iov_base = m, .iov_len = sizeof *m};
    union { struct cmsghdr h; char buf[CMSG_SPACE(sizeof(int))]; } cbuf;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf,
                        .msg_controllen = sizeof cbuf.buf};
    if (fd_out)
        *fd_out = -1;
    ssize_t n;
    do
        n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return n == 0 ? 0 : -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            int fd;
            memcpy(&fd, CMSG_DATA(c), sizeof fd);
            if (fd_out && *fd_out < 0)
                *fd_out = fd;
            else
                close(fd);
        }
    if (n != (ssize_t)sizeof *m || memcmp(m->magic, MAGIC, sizeof m->magic) != 0 ||
        (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
        if (fd_out && *fd_out >= 0)
            close(*fd_out);
        errno = EPROTO;
        return -1;
    }
    return 1;
}

/* ---- the successor ---------------------------------------------------------------------- */

int tli_takeover(tl_server *srv, char *err, size_t errlen)
{
    const char *env = getenv(ENV_NAME);
    bool asked = env && *env;   /* started by SIGUSR2: the server to replace must be there */
    const char *name = asked ? env : srv->cfg->upgrade_socket;
    if (!name)
        return 0;
    struct sockaddr_un sa;
    socklen_t salen;
    if (unix_addr(name, &sa, &salen) != 0) {
        tli_fmt(err, errlen, "%s %.200s: not a UNIX socket name (at most %zu bytes)",
                asked ? ENV_NAME : "upgrade-socket", name, sizeof sa.sun_path - 1);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        tli_fmt(err, errlen, "takeover: socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, (struct sockaddr *)&sa, salen) != 0) {
        int e = errno;
        close(fd);
        if (!asked && (e == ENOENT || e == ECONNREFUSED)) {
            LOG(srv, INFO, "upgrade-socket %s: no server to take over from: binding the listeners",
                name);
            return 0;
        }
        tli_fmt(err, errlen, "takeover: cannot reach the running server on %s: %s", name,
                strerror(e));
        return -1;
    }
    if (asked)
        unsetenv(ENV_NAME);   /* our own successor gets its own */
    set_timeouts(fd);
    struct ucred cred;
    char why[256];
    hmsg m = msg(M_HELLO);
    int got = -1;
    if (peer_ok(fd, &cred, why, sizeof why) != 0) {
        tli_fmt(err, errlen, "takeover from %s: %s", name, why);
        goto fail;
    }
    if (send_msg(fd, &m, -1) != 0 || (got = recv_msg(fd, &m, NULL)) <= 0) {
        tli_fmt(err, errlen, "takeover from pid %d on %s: %s", (int)cred.pid, name,
                got == 0 ? "it closed the connection" : strerror(errno));
        goto fail;
    }
    if (m.type == M_REFUSE) {
        m.text[sizeof m.text - 1] = 0;
        tli_fmt(err, errlen, "takeover from pid %d on %s: it refused: %s", (int)cred.pid, name,
                m.text);
        goto fail;
    }
    if (m.type != M_HEAD || m.nfds == 0 || m.nworkers > 65536 ||
        (uint64_t)m.nfds > (uint64_t)m.nlisten * m.nworkers) {
        tli_fmt(err, errlen, "takeover from pid %d: not a tlsloop hand-off of this version "
                "(message %u, %u sockets)", (int)cred.pid, m.type, m.nfds);
        goto fail;
    }
    if (m.nlisten != srv->nlisten) {
        tli_fmt(err, errlen, "takeover from pid %d: it has %u listeners, we have %zu: start the "
                "new server with the same listen options (the running one goes on serving)",
                (int)cred.pid, m.nlisten, srv->nlisten);
        goto fail;
    }
    if (!(srv->inherit = calloc(m.nfds, sizeof *srv->inherit))) {
        tli_fmt(err, errlen, "out of memory");
        goto fail;
    }
    uint32_t nfds = m.nfds;
    for (uint32_t i = 0; i < nfds; i++) {
        int sfd;
        if ((got = recv_msg(fd, &m, &sfd)) <= 0 || m.type != M_FD || sfd < 0) {
            if (got > 0 && sfd >= 0)
                close(sfd);
            tli_fmt(err, errlen, "takeover from pid %d: socket %u of %u: %s", (int)cred.pid,
                    i + 1, nfds, got == 0 ? "it closed the connection"
                                 : got < 0 ? strerror(errno) : "no descriptor came");
            goto fail;
        }
        tli_inherit *in = &srv->inherit[srv->ninherit++];
        in->fd = sfd;
        in->listener = m.listener;
        in->worker = m.worker;
    }
    srv->takeover_fd = fd;
    srv->takeover_from = cred.pid;
    LOG(srv, INFO, "takeover: %u listening sockets from pid %d", nfds, (int)cred.pid);
    return 0;
fail:
    close(fd);
    tli_free_inherited(srv);
    return -1;
}

void tli_takeover_serving(tl_server *srv)
{
    if (srv->takeover_fd < 0)
        return;
    hmsg m = msg(M_SERVING);
    if (send_msg(srv->takeover_fd, &m, -1) != 0)
        LOG(srv, WARN, "takeover: could not tell pid %d to drain (%s): it goes on serving beside "
            "us until stopped", (int)srv->takeover_from, strerror(errno));
    else
        LOG(srv, INFO, "takeover: serving; pid %d drains", (int)srv->takeover_from);
    close(srv->takeover_fd);
    srv->takeover_fd = -1;
}

/* ---- the running server: its control socket --------------------------------------------- */

static void close_upc(tl_server *srv)
{
    if (srv->upc_fd < 0)
        return;
    tl_io_stop(srv->control, &srv->upc_io);
    close(srv->upc_fd);
    srv->upc_fd = -1;
}

static void close_listen(tl_server *srv)
{
    if (srv->up_fd < 0)
        return;
    tl_io_stop(srv->control, &srv->up_io);
    close(srv->up_fd);
    srv->up_fd = -1;
}

/* The successor says it serves: it has the listeners, we drain. */
static void on_upc(tl_loop *loop, tl_io *io, unsigned events)
{
    (void)loop;
    (void)events;
    tl_server *srv = io->data;
    hmsg m;
    int got = recv_msg(srv->upc_fd, &m, NULL);
    if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    int e = errno;
    pid_t pid = srv->upc_pid;
    close_upc(srv);
    if (got <= 0 || m.type != M_SERVING) {
        LOG(srv, WARN, "upgrade: pid %d went away before it served (%s; its own log says why): "
            "still serving", (int)pid, got == 0 ? "it closed the connection"
                                       : got < 0 ? strerror(e) : "an unexpected message");
        tli_notify(srv, "STATUS=upgrade by pid %d failed; still serving", (int)pid);
        return;
    }
    if (atomic_exchange(&srv->stopping, true))
        return;   /* a drain began meanwhile */
    srv->handed_off = true;
    close_listen(srv);   /* the successor has its own */
    LOG(srv, INFO, "upgrade: pid %d serves our listening sockets: draining", (int)pid);
    /* systemd follows the new process from now on (NotifyAccess=all lets it say READY). */
    tli_notify(srv, "MAINPID=%d\nSTATUS=handed over to pid %d, draining", (int)pid, (int)pid);
    tli_begin_drain(srv);
}

static void refuse(int fd, const char *why)
{
    hmsg m = msg(M_REFUSE);
    snprintf(m.text, sizeof m.text, "%s", why);
    send_msg(fd, &m, -1);
    close(fd);
}

static void on_up_accept(tl_loop *loop, tl_io *io, unsigned events)
{
    (void)loop;
    (void)events;
    tl_server *srv = io->data;
    int fd = accept4(srv->up_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    set_timeouts(fd);   /* a peer that connects and says nothing holds us up to this long */
    struct ucred cred;
    char why[256];
    hmsg m;
    if (peer_ok(fd, &cred, why, sizeof why) != 0) {
        LOG(srv, WARN, "upgrade socket %s: %s", srv->up_name, why);
        refuse(fd, "not our user");
        return;
    }
    if (!srv->up_configured && cred.pid != srv->up_child) {
        LOG(srv, WARN, "upgrade socket %s: pid %d is not the process SIGUSR2 started: refused",
            srv->up_name, (int)cred.pid);
        refuse(fd, "only the process SIGUSR2 started takes over here");
        return;
    }
    if (atomic_load(&srv->stopping) || srv->upc_fd >= 0) {
        refuse(fd, srv->upc_fd >= 0 ? "another takeover is under way" : "the server drains");
        return;
    }
    if (recv_msg(fd, &m, NULL) <= 0 || m.type != M_HELLO) {
        LOG(srv, WARN, "upgrade socket %s: pid %d did not say hello", srv->up_name, (int)cred.pid);
        close(fd);
        return;
    }
    uint32_t nfds = 0;
    for (size_t k = 0; k < (size_t)srv->nworkers * srv->nlisten; k++)
        nfds += srv->fds[k] >= 0;
    hmsg h = msg(M_HEAD);
    h.nlisten = (uint32_t)srv->nlisten;
    h.nworkers = srv->nworkers;
    h.nfds = nfds;
    int rc = send_msg(fd, &h, -1);
    for (unsigned wi = 0; wi < srv->nworkers && rc == 0; wi++)
        for (size_t li = 0; li < srv->nlisten && rc == 0; li++) {
            int sfd = srv->fds[(size_t)wi * srv->nlisten + li];
            if (sfd < 0)
                continue;
            hmsg f = msg(M_FD);
            f.listener = (int32_t)li;
            f.worker = (int32_t)wi;
            rc = send_msg(fd, &f, sfd);
        }
    if (rc != 0) {
        LOG(srv, WARN, "upgrade: sending our sockets to pid %d: %s: still serving", (int)cred.pid,
            strerror(errno));
        close(fd);
        return;
    }
    LOG(srv, INFO, "upgrade: %u listening sockets sent to pid %d; serving until it does",
        nfds, (int)cred.pid);
    srv->upc_fd = fd;
    srv->upc_pid = cred.pid;
    srv->upc_deadline_ms = tl_loop_now(srv->control) + SERVING_MS;
    tl_io_init(&srv->upc_io, fd, on_upc, srv);
    tl_io_set(srv->control, &srv->upc_io, TL_READABLE);
    tl_timer_start(srv->control, &srv->up_timer, REAP_MS);
}

/* Bind name: a path through a temporary name renamed over it (a successor replaces the socket of
 * the server it took over from, which then leaves the file alone), mode 0600; or "@abstract". */
static int listen_on(tl_server *srv, const char *name, char *err, size_t errlen)
{
    struct sockaddr_un sa;
    socklen_t salen;
    char tmp[sizeof sa.sun_path + 32];
    bool path = name[0] != '@';
    if (path && snprintf(tmp, sizeof tmp, "%s.%d", name, (int)getpid()) >= (int)sizeof sa.sun_path)
        return tli_fmt(err, errlen, "upgrade-socket %.200s: the path is too long", name), -1;
    if (unix_addr(path ? tmp : name, &sa, &salen) != 0)
        return tli_fmt(err, errlen, "upgrade-socket %.200s: the name is too long", name), -1;
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return tli_fmt(err, errlen, "upgrade socket: %s", strerror(errno)), -1;
    if (path)
        unlink(tmp);
    struct stat st;
    if (bind(fd, (struct sockaddr *)&sa, salen) != 0 || listen(fd, 4) != 0 ||
        (path && (chmod(tmp, 0600) != 0 || rename(tmp, name) != 0 || stat(name, &st) != 0))) {
        int e = errno;
        close(fd);
        if (path)
            unlink(tmp);
        return tli_fmt(err, errlen, "upgrade-socket %.200s: %s", name, strerror(e)), -1;
    }
    if (path) {
        srv->up_dev = st.st_dev;
        srv->up_ino = st.st_ino;
    }
    snprintf(srv->up_name, sizeof srv->up_name, "%s", name);
    srv->up_fd = fd;
    tl_io_init(&srv->up_io, fd, on_up_accept, srv);
    tl_io_set(srv->control, &srv->up_io, TL_READABLE);
    return 0;
}

int tli_upgrade_listen(tl_server *srv, char *err, size_t errlen)
{
    if (!srv->cfg->upgrade_socket || srv->up_fd >= 0)
        return 0;
    if (listen_on(srv, srv->cfg->upgrade_socket, err, errlen) != 0)
        return -1;
    srv->up_configured = true;
    return 0;
}

void tli_upgrade_close(tl_server *srv)
{
    close_upc(srv);
    if (srv->takeover_fd >= 0)
        close(srv->takeover_fd);
    srv->takeover_fd = -1;
    if (srv->up_fd >= 0) {
        close_listen(srv);
        struct stat st;
        if (srv->up_name[0] != '@' && stat(srv->up_name, &st) == 0 && st.st_dev == srv->up_dev &&
            st.st_ino == srv->up_ino)
            unlink(srv->up_name);   /* still ours: no successor replaced it */
    }
    if (srv->control)
        tl_timer_stop(srv->control, &srv->up_timer);
}

/* ---- SIGUSR2: the new binary ------------------------------------------------------------ */

void tli_on_up_timer(tl_loop *loop, tl_timer *t)
{
    tl_server *srv = t->data;
    int st;
    pid_t pid = srv->up_child ? waitpid(srv->up_child, &st, WNOHANG) : 0;
    if (pid == srv->up_child && pid > 0) {
        if (!srv->handed_off)
            LOG(srv, ERROR, "upgrade: the new process (pid %d) %s %d before it served (its log "
                "says why): still serving", (int)pid,
                WIFEXITED(st) ? "exited with" : "died of signal",
                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        srv->up_child = 0;
    } else if (pid < 0) {
        srv->up_child = 0;   /* not ours to wait for (reaped elsewhere) */
    }
    if (srv->upc_fd >= 0 && tl_loop_now(loop) >= srv->upc_deadline_ms) {
        LOG(srv, WARN, "upgrade: pid %d took our listening sockets but did not say it serves "
            "within %d s: we go on serving (beside it, if it does)", (int)srv->upc_pid,
            SERVING_MS / 1000);
        close_upc(srv);
    }
    if (srv->up_child || srv->upc_fd >= 0)
        tl_timer_start(loop, t, REAP_MS);
}

/* Our argv, from /proc/self/cmdline: NULL-terminated, in one allocation freed with free(). */
static char **own_argv(void)
{
    FILE *f = fopen("/proc/self/cmdline", "r");
    if (!f)
        return NULL;
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    if (n == 0 || n == sizeof buf - 1)
        return NULL;
    buf[n] = 0;
    size_t argc = 0;
    for (size_t i = 0; i < n; i++)
        argc += buf[i] == 0;
    char **argv = malloc((argc + 1) * sizeof *argv + n + 1);
    if (!argv)
        return NULL;
    char *s = (char *)(argv + argc + 1);
    memcpy(s, buf, n + 1);
    for (size_t i = 0, a = 0; i < n && a < argc; i += strlen(s + i) + 1)
        argv[a++] = s + i;
    argv[argc] = NULL;
    return argv;
}

/* The environment with TLSLOOP_TAKEOVER=name in place of any it had. */
static char **child_env(const char *name, char *var, size_t varlen)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = malloc((n + 2) * sizeof *env);
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], ENV_NAME "=", sizeof ENV_NAME))
            env[k++] = environ[i];
    snprintf(var, varlen, ENV_NAME "=%s", name);
    env[k++] = var;
    env[k] = NULL;
    return env;
}

void tli_upgrade_signal(tl_server *srv)
{
    char err[512];
    if (atomic_load(&srv->stopping)) {
        LOG(srv, WARN, "SIGUSR2: the server drains: no upgrade");
        return;
    }
    if (srv->up_child || srv->upc_fd >= 0) {
        LOG(srv, WARN, "SIGUSR2: an upgrade is under way (pid %d): wait for it",
            (int)(srv->up_child ? srv->up_child : srv->upc_pid));
        return;
    }
    if (srv->up_fd < 0) {   /* no upgrade-socket: an abstract one for this child */
        char name[64];
        snprintf(name, sizeof name, "@tlsloop-upgrade-%d", (int)getpid());
        if (listen_on(srv, name, err, sizeof err) != 0) {
            LOG(srv, ERROR, "SIGUSR2: %s: no upgrade", err);
            return;
        }
        srv->up_configured = false;
    }
    /* The executable's path, not /proc/self/exe: after an install replaced the file, the path
     * names the new binary while /proc/self/exe is still the old one (" (deleted)"). */
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    char *del = n > 10 ? strstr(exe, " (deleted)") : NULL;
    if (del && !del[10])
        *del = 0;
    if (n <= 0 || access(exe, X_OK) != 0)
        snprintf(exe, sizeof exe, "/proc/self/exe");
    char var[160];
    char **argv = own_argv(), **env = argv ? child_env(srv->up_name, var, sizeof var) : NULL;
    if (!argv || !env) {
        LOG(srv, ERROR, "SIGUSR2: cannot read our command line (/proc/self/cmdline): no upgrade");
        free(argv);
        free(env);
        return;
    }
    /* Everything the child needs is made before fork: after it, in a copy of a threaded process,
     * only async-signal-safe calls. */
    sigset_t none;
    sigemptyset(&none);
    pid_t pid = fork();
    if (pid == 0) {
        pthread_sigmask(SIG_SETMASK, &none, NULL);   /* ours blocks the signals the loop takes */
        execve(exe, argv, env);
        _exit(127);
    }
    free(argv);
    free(env);
    if (pid < 0) {
        LOG(srv, ERROR, "SIGUSR2: fork: %s: no upgrade", strerror(errno));
        return;
    }
    srv->up_child = pid;
    LOG(srv, INFO, "SIGUSR2: started %s as pid %d: it takes our listening sockets over %s, then "
        "we drain", exe, (int)pid, srv->up_name);
    tl_timer_start(srv->control, &srv->up_timer, REAP_MS);
}
