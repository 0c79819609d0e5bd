/* server_config_file.c - settings from a configuration file and from an argument vector, and the
 * replay that applies a configuration's settings again (a copy, or a reload with files read anew).
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "server/server_int.h"

/* ---- files and argument vectors --------------------------------------------------------- */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = 0;
    return s;
}

int tl_server_config_load(tl_server_config *cfg, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        tli_fmt(err, errlen, "%s: cannot open the configuration file: %s", path, strerror(errno));
        return -1;
    }
    char line[4096];
    unsigned lineno = 0;
    int rc = 0;
    bool outer = !cfg->loading;
    cfg->loading = true;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        if (!strchr(line, '\n') && !feof(f)) {
            tli_fmt(err, errlen, "%s:%u: line longer than %zu bytes", path, lineno, sizeof line - 2);
            rc = -1;
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *name = trim(line);
        if (!*name)
            continue;
        char *value = name + strcspn(name, " \t");
        if (*value)
            *value++ = 0;
        value = trim(value);
        if (!strcmp(name, "config")) {
            tli_fmt(err, errlen, "%s:%u: 'config' cannot be used inside a configuration file",
                    path, lineno);
            rc = -1;
            break;
        }
        char msg[400];
        int r = tl_server_config_set(cfg, name, value, msg, sizeof msg);
        if (r == 1)
            tli_fmt(err, errlen, "%s:%u: unknown option '%s' (see tlsloop help serve)", path,
                    lineno, name);
        else if (r != 0)
            tli_fmt(err, errlen, "%s:%u: %s", path, lineno, msg);
        if (r != 0)
            rc = -1;
    }
    if (rc == 0 && ferror(f)) {
        tli_fmt(err, errlen, "%s: read error: %s", path, strerror(errno));
        rc = -1;
    }
    fclose(f);
    if (outer)
        cfg->loading = false;
    if (rc == 0) {
        char *copy = strdup(path);
        if (!copy || (outer && tli_server_config_remember(cfg, "config", path) != 0)) {
            free(copy);
            return tli_fmt(err, errlen, "out of memory"), -1;
        }
        free(cfg->path);
        cfg->path = copy;
    }
    return rc;
}

int tl_server_config_args(tl_server_config *cfg, int argc, char **argv, int *argi, char *err,
                          size_t errlen)
{
    while (*argi < argc) {
        const char *arg = argv[*argi];
        if (strncmp(arg, "--", 2) != 0 || !arg[2])
            return 0;
        char name[64];
        const char *eq = strchr(arg + 2, '=');
        size_t nlen = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        if (nlen >= sizeof name)
            return 0;
        memcpy(name, arg + 2, nlen);
        name[nlen] = 0;
        int takes = tli_option_takes_value(cfg, name);
        if (takes < 0)
            return 0;  /* not ours */
        const char *value = eq ? eq + 1 : NULL;
        /* A flag may be followed by its state: "--tickets off". */
        bool ignored;
        if (!takes && !value && *argi + 1 < argc && tli_parse_bool(argv[*argi + 1], &ignored) == 0 &&
            argv[*argi + 1][0])
            value = argv[++*argi];
        if (takes && !value) {
            if (*argi + 1 >= argc) {
                tli_fmt(err, errlen, "--%s needs a value", name);
                return -1;
            }
            value = argv[++*argi];
        }
        (*argi)++;
        int r = !strcmp(name, "config") ? tl_server_config_load(cfg, value, err, errlen)
                                        : tl_server_config_set(cfg, name, value, err, errlen);
        if (r != 0)
            return -1;
    }
    return 0;
}

/* ---- replay ----------------------------------------------------------------------------- */

tl_server_config *tli_server_config_replay(const tl_server_config *src, char *err, size_t errlen)
{
    tl_server_config *cfg = tl_server_config_new();
    if (!cfg) {
        tli_fmt(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t t = 0; t < src->n_ext; t++)
        tl_server_config_extend(cfg, src->ext[t].opts, src->ext[t].n);
    if (src->alpn_switch_fn &&
        tl_server_config_set_alpn_switch(cfg, src->alpn_switch_proto, src->alpn_switch_fn,
                                         src->alpn_switch_data) != 0) {
        tl_server_config_free(cfg);
        tli_fmt(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < src->n_history; i++) {
        const char *name = src->history[i].name, *value = src->history[i].value;
        int r = !strcmp(name, "config") ? tl_server_config_load(cfg, value, err, errlen)
                                        : tl_server_config_set(cfg, name, value, err, errlen);
        if (r != 0) {
            tl_server_config_free(cfg);
            return NULL;
        }
    }
    return cfg;
}
