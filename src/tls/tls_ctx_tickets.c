/* tls_ctx_tickets.c - the session ticket key ring and its key file (tl_ticket_ring in
 * tlsloop/tls_ctx.h; docs/design.md, decision 6; docs/server.md, "Resumption"). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include "tls/tli_tls.h"
#include "util/tli.h"

#define MAX_KEYS 64
/* A text file's lines are about 200 bytes; comments may add some. */
#define TLI_KEY_FILE_MAX (MAX_KEYS * 512)

typedef struct ticket_key {
    uint8_t name[16];
    uint8_t hmac[32];
    uint8_t aes[32];
} ticket_key;

struct tl_ticket_ring {
    atomic_int refs;
    pthread_rwlock_t lock;
    unsigned capacity;
    unsigned count;
    ticket_key keys[MAX_KEYS];
    EVP_CIPHER *cipher;
    atomic_uint_fast64_t issued, decrypted_current, decrypted_old, unknown_key;
};

/* Put k in front, dropping the oldest key when the ring is full. Caller holds the write lock. */
static void push_front(tl_ticket_ring *r, const ticket_key *k)
{
    if (r->count == r->capacity) {
        r->count--;
        OPENSSL_cleanse(&r->keys[r->count], sizeof r->keys[0]);
    }
    memmove(&r->keys[1], &r->keys[0], r->count * sizeof r->keys[0]);
    r->keys[0] = *k;
    r->count++;
}

/* A ring without keys. */
static tl_ticket_ring *ring_alloc(unsigned capacity)
{
    tl_ticket_ring *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    atomic_init(&r->refs, 1);
    r->capacity = capacity;
    if (pthread_rwlock_init(&r->lock, NULL) != 0) {
        free(r);
        return NULL;
    }
    r->cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    if (!r->cipher) {
        tl_ticket_ring_free(r);
        return NULL;
    }
    return r;
}

tl_ticket_ring *tl_ticket_ring_new(unsigned capacity)
{
    if (capacity < 1 || capacity > MAX_KEYS)
        return NULL;
    tl_ticket_ring *r = ring_alloc(capacity);
    if (r && tl_ticket_ring_rotate(r) != 0) {
        tl_ticket_ring_free(r);
        return NULL;
    }
    return r;
}

/* Check a key file before reading it: a regular file, ours and for our eyes only (mode 600 or
 * stricter), of a sane size. Returns its size, or -1 with err set. */
static long long check_key_file(int fd, const char *path, char *err, size_t errlen)
{
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        tli_fmt(err, errlen, "%s: cannot read the ticket key file: %s", path, strerror(errno));
        return -1;
    }
    long long size = (long long)sb.st_size;
    if (!S_ISREG(sb.st_mode))
        tli_fmt(err, errlen, "%s: the ticket key file is not a regular file", path);
    else if (sb.st_mode & 077)
        tli_fmt(err, errlen, "%s: the ticket key file is open to %s (mode %03o), and its keys "
                "open every session resumed with them; restrict it: chmod 600 %s",
                path, sb.st_mode & 007 ? "other users" : "its group",
                (unsigned)(sb.st_mode & 0777), path);
    else if (sb.st_uid != geteuid())
        tli_fmt(err, errlen, "%s: the ticket key file belongs to uid %u, not to this process's "
                "user (uid %u), who could then be handed keys it did not choose; make it ours: "
                "chown %u %s (and chmod 600)", path, (unsigned)sb.st_uid, (unsigned)geteuid(),
                (unsigned)geteuid(), path);
    else if (size == 0)
        tli_fmt(err, errlen, "%s: the ticket key file is empty; make one with: "
                "tlsloop ticket-keys new %s", path, path);
    else if (size > TLI_KEY_FILE_MAX)
        tli_fmt(err, errlen, "%s: %lld bytes is too large for a ticket key file (at most %d keys)",
                path, size, MAX_KEYS);
    else
        return size;
    return -1;
}

/* Read and parse a key file into keys (MAX_KEYS). Returns the number of keys, 0 with err set. */
static size_t read_key_file(const char *path, tl_ticket_key_entry *keys, char *err, size_t errlen)
{
    if (!path) {
        tli_fmt(err, errlen, "ticket key file: no path given");
        return 0;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        tli_fmt(err, errlen, "%s: cannot open the ticket key file: %s", path, strerror(errno));
        return 0;
    }
    long long size = check_key_file(fd, path, err, errlen);
    char *buf = size > 0 ? malloc((size_t)size) : NULL;
    size_t want = size > 0 ? (size_t)size : 0, got = 0, n = 0;
    if (size > 0 && !buf)
        tli_fmt(err, errlen, "%s: out of memory", path);
    while (buf && got < want) {
        ssize_t k = read(fd, buf + got, want - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            tli_fmt(err, errlen, "%s: cannot read the ticket key file: %s", path,
                    k < 0 ? strerror(errno) : "it shrank while being read");
            break;
        }
        got += (size_t)k;
    }
    close(fd);
    if (buf && got == want) {
        char why[256];
        if (tl_ticket_keys_parse(buf, want, keys, MAX_KEYS, &n, why, sizeof why) != 0)
            tli_fmt(err, errlen, "%s: %s", path, why);
    }
    if (buf) {
        OPENSSL_cleanse(buf, want);
        free(buf);
    }
    return n;
}

/* The ring's order: the current key first (it encrypts), then the next one, then the previous
 * ones, the last in the file first (a lookup by name finds the likeliest first). */
static void fill_ring(tl_ticket_ring *r, const tl_ticket_key_entry *keys, size_t n)
{
    r->count = 0;
    for (int role = TL_TICKET_KEY_PREVIOUS; role <= TL_TICKET_KEY_NEXT; role++)
        for (size_t i = 0; i < n; i++)
            if ((int)keys[i].role == role && role != TL_TICKET_KEY_CURRENT) {
                _Static_assert(sizeof(ticket_key) == TL_TICKET_KEY_LEN, "ticket key layout");
                memmove(&r->keys[1], &r->keys[0], r->count * sizeof r->keys[0]);
                memcpy(&r->keys[0], keys[i].key, TL_TICKET_KEY_LEN);
                r->count++;
            }
    for (size_t i = 0; i < n; i++)
        if (keys[i].role == TL_TICKET_KEY_CURRENT) {
            memmove(&r->keys[1], &r->keys[0], r->count * sizeof r->keys[0]);
            memcpy(&r->keys[0], keys[i].key, TL_TICKET_KEY_LEN);
            r->count++;
        }
    r->capacity = r->count;
}

tl_ticket_ring *tl_ticket_ring_load_file(const char *path, char *err, size_t errlen)
{
    if (!err)
        errlen = 0;
    tl_ticket_key_entry keys[MAX_KEYS];
    size_t n = read_key_file(path, keys, err, errlen);
    tl_ticket_ring *r = NULL;
    if (n > 0 && !(r = ring_alloc((unsigned)n)))
        tli_fmt(err, errlen, "%s: out of memory", path);
    if (r)
        fill_ring(r, keys, n);
    OPENSSL_cleanse(keys, sizeof keys);
    return r;
}

int tl_ticket_ring_reload_file(tl_ticket_ring *r, const char *path, char *err, size_t errlen)
{
    if (!err)
        errlen = 0;
    tl_ticket_key_entry keys[MAX_KEYS];
    size_t n = read_key_file(path, keys, err, errlen);
    if (n > 0) {
        pthread_rwlock_wrlock(&r->lock);
        OPENSSL_cleanse(r->keys, sizeof r->keys);
        fill_ring(r, keys, n);
        pthread_rwlock_unlock(&r->lock);
    }
    OPENSSL_cleanse(keys, sizeof keys);
    return n > 0 ? 0 : -1;
}

/* HKDF-SHA256 of the whole key (IKM), salt-less, info = label: a key of its own for each use. */
static int hkdf(const ticket_key *k, const char *label, uint8_t out[32])
{
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    EVP_KDF_free(kdf);
    if (!kctx)
        return -1;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)k, sizeof *k),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)label, strlen(label)),
        OSSL_PARAM_construct_end(),
    };
    int rc = EVP_KDF_derive(kctx, out, 32, params) == 1 ? 0 : -1;
    EVP_KDF_CTX_free(kctx);
    return rc;
}

int tl_ticket_ring_derive(tl_ticket_ring *r, const uint8_t name[16], const char *label,
                          uint8_t name_out[16], uint8_t key_out[32])
{
    ticket_key k;
    int found = -1;
    pthread_rwlock_rdlock(&r->lock);
    for (unsigned i = 0; i < r->count && found < 0; i++)
        if (!name ? i == 0 : memcmp(r->keys[i].name, name, 16) == 0) {
            k = r->keys[i];
            found = (int)i;
        }
    pthread_rwlock_unlock(&r->lock);
    if (found < 0)
        return -1;
    if (name_out)
        memcpy(name_out, k.name, 16);
    int rc = hkdf(&k, label, key_out);
    OPENSSL_cleanse(&k, sizeof k);
    return rc;
}

tl_ticket_ring *tl_ticket_ring_ref(tl_ticket_ring *r)
{
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
    return r;
}

void tl_ticket_ring_free(tl_ticket_ring *r)
{
    if (!r || atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
        return;
    OPENSSL_cleanse(r->keys, sizeof r->keys);
    EVP_CIPHER_free(r->cipher);
    pthread_rwlock_destroy(&r->lock);
    free(r);
}

int tl_ticket_ring_rotate(tl_ticket_ring *r)
{
    ticket_key k;
    if (RAND_bytes((unsigned char *)&k, sizeof k) != 1)
        return -1;
    pthread_rwlock_wrlock(&r->lock);
    push_front(r, &k);
    pthread_rwlock_unlock(&r->lock);
    OPENSSL_cleanse(&k, sizeof k);
    return 0;
}

int tl_ticket_ring_add(tl_ticket_ring *r, const uint8_t key[TL_TICKET_KEY_LEN])
{
    ticket_key k;
    _Static_assert(sizeof k == TL_TICKET_KEY_LEN, "ticket key layout");
    memcpy(&k, key, sizeof k);
    int rc = 0;
    pthread_rwlock_wrlock(&r->lock);
    for (unsigned i = 0; i < r->count; i++)
        if (memcmp(r->keys[i].name, k.name, sizeof k.name) == 0)
            rc = -1;
    if (rc == 0)
        push_front(r, &k);
    pthread_rwlock_unlock(&r->lock);
    OPENSSL_cleanse(&k, sizeof k);
    return rc;
}

unsigned tl_ticket_ring_count(tl_ticket_ring *r)
{
    pthread_rwlock_rdlock(&r->lock);
    unsigned n = r->count;
    pthread_rwlock_unlock(&r->lock);
    return n;
}

bool tl_ticket_ring_has(tl_ticket_ring *r, const uint8_t name[16])
{
    bool found = false;
    pthread_rwlock_rdlock(&r->lock);
    for (unsigned i = 0; i < r->count && !found; i++)
        found = memcmp(r->keys[i].name, name, 16) == 0;
    pthread_rwlock_unlock(&r->lock);
    return found;
}

void tl_ticket_ring_current_name(tl_ticket_ring *r, uint8_t name[16])
{
    pthread_rwlock_rdlock(&r->lock);
    memcpy(name, r->keys[0].name, 16);
    pthread_rwlock_unlock(&r->lock);
}

void tl_ticket_ring_stats(tl_ticket_ring *r, tl_ticket_stats *out)
{
    out->issued = atomic_load(&r->issued);
    out->decrypted_current = atomic_load(&r->decrypted_current);
    out->decrypted_old = atomic_load(&r->decrypted_old);
    out->unknown_key = atomic_load(&r->unknown_key);
}

static int set_mac_key(EVP_MAC_CTX *hctx, uint8_t *hmac)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, hmac, 32),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(hctx, params);
}

int tli_ticket_ring_crypt(tl_ticket_ring *r, unsigned char name[16], unsigned char *iv,
                          EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc, bool renew)
{
    ticket_key k;
    int found = -1;
    pthread_rwlock_rdlock(&r->lock);
    if (enc) {
        k = r->keys[0];
        found = 0;
    } else {
        for (unsigned i = 0; i < r->count; i++) {
            if (memcmp(r->keys[i].name, name, 16) == 0) {
                k = r->keys[i];
                found = (int)i;
                break;
            }
        }
    }
    pthread_rwlock_unlock(&r->lock);

    int rc;
    if (enc) {
        memcpy(name, k.name, 16);
        rc = RAND_bytes(iv, EVP_CIPHER_get_iv_length(r->cipher)) == 1 &&
                     EVP_EncryptInit_ex2(cctx, r->cipher, k.aes, iv, NULL) && set_mac_key(hctx, k.hmac)
                 ? 1
                 : -1;
        if (rc == 1)
            atomic_fetch_add_explicit(&r->issued, 1, memory_order_relaxed);
    } else if (found < 0) {
        atomic_fetch_add_explicit(&r->unknown_key, 1, memory_order_relaxed);
        rc = 0; /* unknown key: a full handshake, not an error */
    } else {
        /* 2 renews the ticket: an older key opened it, or the caller asked (TLS 1.3 tickets are
         * single-use, RFC 8446 C.4: each resumption gets a fresh one). */
        rc = EVP_DecryptInit_ex2(cctx, r->cipher, k.aes, iv, NULL) && set_mac_key(hctx, k.hmac)
                 ? (found == 0 && !renew ? 1 : 2)
                 : -1;
        if (rc > 0)
            atomic_fetch_add_explicit(found == 0 ? &r->decrypted_current : &r->decrypted_old, 1,
                                      memory_order_relaxed);
    }
    OPENSSL_cleanse(&k, sizeof k);
    return rc;
}
