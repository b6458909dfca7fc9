/* SPDX-License-Identifier: Apache-2.0 */
/* Blocking client socket with deadlines (poll) and optional TLS (OpenSSL over memory BIOs,
 * so writes use send(MSG_NOSIGNAL) and never raise SIGPIPE). Shared by both clients. */
#include "net_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct cio_tls {
    SSL *ssl;
    BIO *rbio, *wbio;
} cio_tls_t;

void fl__cio_init(fl__cio_t *io)
{
    io->fd = -1;
    io->ssl = NULL;
    io->ssl_ctx = NULL;
    io->alpn[0] = 0;
}

static int remaining_ms(uint64_t deadline_ns)
{
    uint64_t now = fl_time_mono_ns();
    if (now >= deadline_ns)
        return 0;
    uint64_t ms = (deadline_ns - now + 999999) / 1000000;
    return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

/* Wait for fd to become ready; FL_OK, FL_ERR_TIMEOUT or FL_ERR_IO. */
static int wait_fd(int fd, short ev, uint64_t deadline_ns)
{
    for (;;) {
        int ms = remaining_ms(deadline_ns);
        if (ms == 0)
            return FL_ERR_TIMEOUT;
        struct pollfd p = {.fd = fd, .events = ev};
        int r = poll(&p, 1, ms);
        if (r > 0)
            return FL_OK;
        if (r == 0)
            return FL_ERR_TIMEOUT;
        if (errno != EINTR)
            return FL_ERR_IO;
    }
}

static int raw_write(int fd, const uint8_t *p, size_t n, uint64_t deadline_ns)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rc = wait_fd(fd, POLLOUT, deadline_ns);
            if (rc != FL_OK)
                return rc;
            continue;
        }
        return FL_ERR_IO;
    }
    return FL_OK;
}

static long raw_read(int fd, void *p, size_t n, uint64_t deadline_ns)
{
    for (;;) {
        ssize_t r = recv(fd, p, n, 0);
        if (r >= 0)
            return (long)r;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            int rc = wait_fd(fd, POLLIN, deadline_ns);
            if (rc != FL_OK)
                return rc;
            continue;
        }
        return FL_ERR_IO;
    }
}

static int tls_flush(fl__cio_t *io, uint64_t deadline_ns)
{
    cio_tls_t *t = io->ssl;
    uint8_t tmp[16384];
    while (BIO_ctrl_pending(t->wbio) > 0) {
        int n = BIO_read(t->wbio, tmp, sizeof(tmp));
        if (n <= 0)
            break;
        int rc = raw_write(io->fd, tmp, (size_t)n, deadline_ns);
        if (rc != FL_OK)
            return rc;
    }
    return FL_OK;
}

/* Move one read of raw bytes into the TLS engine: >0, 0 on EOF, or an error. */
static long tls_pump(fl__cio_t *io, uint64_t deadline_ns)
{
    cio_tls_t *t = io->ssl;
    uint8_t tmp[16384];
    long n = raw_read(io->fd, tmp, sizeof(tmp), deadline_ns);
    if (n > 0)
        BIO_write(t->rbio, tmp, (int)n);
    return n;
}

static int tls_setup(fl__cio_t *io, const fl__cio_opts_t *o, uint64_t deadline_ns, char *err,
                     size_t errlen)
{
    char es[256] = "";
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        goto fail;
    io->ssl_ctx = ctx;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    if (o->verify) {
        if (o->ca_file ? SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1
                       : SSL_CTX_set_default_verify_paths(ctx) != 1)
            goto fail;
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    }
    if (o->cert_file && (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1 ||
                         SSL_CTX_use_PrivateKey_file(ctx, o->key_file ? o->key_file : o->cert_file,
                                                     SSL_FILETYPE_PEM) != 1))
        goto fail;
    if (o->alpn &&
        SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)o->alpn, (unsigned)o->alpn_len) != 0)
        goto fail;
    cio_tls_t *t = calloc(1, sizeof(*t));
    if (!t)
        goto fail;
    io->ssl = t;
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        t->rbio = t->wbio = NULL;
        goto fail;
    }
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_connect_state(t->ssl);
    struct in6_addr a6;
    int is_ip = inet_pton(AF_INET, o->host, &a6) == 1 || inet_pton(AF_INET6, o->host, &a6) == 1;
    if (!is_ip)
        SSL_set_tlsext_host_name(t->ssl, o->host);
    if (o->verify) {
        if (is_ip)
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), o->host);
        else
            SSL_set1_host(t->ssl, o->host);
    }
    for (;;) {
        int r = SSL_do_handshake(t->ssl);
        int frc = tls_flush(io, deadline_ns);
        if (frc != FL_OK) {
            snprintf(err, errlen, "TLS handshake: %s", fl_strerror(frc));
            return frc;
        }
        if (r == 1)
            break;
        int e = SSL_get_error(t->ssl, r);
        if (e != SSL_ERROR_WANT_READ) {
            if (e == SSL_ERROR_SSL)
                ERR_error_string_n(ERR_get_error(), es, sizeof(es));
            long vr = SSL_get_verify_result(t->ssl);
            snprintf(err, errlen, "TLS handshake failed: %s%s%s", es[0] ? es : "error",
                     vr != X509_V_OK ? ": " : "",
                     vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "");
            ERR_clear_error();
            return FL_ERR_IO;
        }
        long n = tls_pump(io, deadline_ns);
        if (n <= 0) {
            snprintf(err, errlen, "TLS handshake: %s",
                     n == 0 ? "connection closed" : fl_strerror((int)n));
            return n == 0 ? FL_ERR_IO : (int)n;
        }
    }
    const unsigned char *alpn = NULL;
    unsigned alen = 0;
    SSL_get0_alpn_selected(t->ssl, &alpn, &alen);
    if (alpn && alen < sizeof(io->alpn)) {
        memcpy(io->alpn, alpn, alen);
        io->alpn[alen] = 0;
    }
    return FL_OK;
fail:
    if (!es[0])
        ERR_error_string_n(ERR_get_error(), es, sizeof(es));
    ERR_clear_error();
    snprintf(err, errlen, "TLS setup: %s", es);
    return FL_ERR_INVALID;
}

int fl__cio_connect(fl__cio_t *io, const fl__cio_opts_t *o, uint64_t deadline_ns, char *err,
                    size_t errlen)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", o->port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = AF_UNSPEC;
    int gai = getaddrinfo(o->host, port, &hints, &res);
    if (gai != 0) {
        snprintf(err, errlen, "resolve %s: %s", o->host, gai_strerror(gai));
        return FL_ERR_IO;
    }
    int rc = FL_ERR_IO;
    snprintf(err, errlen, "connect %s:%d failed", o->host, o->port);
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int r = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (r < 0 && errno == EINPROGRESS) {
            rc = wait_fd(fd, POLLOUT, deadline_ns);
            int soerr = 0;
            socklen_t sl = sizeof(soerr);
            if (rc == FL_OK && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && !soerr)
                r = 0;
            else if (rc == FL_OK)
                errno = soerr, rc = FL_ERR_IO;
        }
        if (r == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            io->fd = fd;
            rc = FL_OK;
            break;
        }
        snprintf(err, errlen, "connect %s:%d: %s", o->host, o->port,
                 rc == FL_ERR_TIMEOUT ? "timed out" : strerror(errno));
        close(fd);
    }
    freeaddrinfo(res);
    if (rc != FL_OK)
        return rc;
    if (o->tls) {
        rc = tls_setup(io, o, deadline_ns, err, errlen);
        if (rc != FL_OK)
            fl__cio_close(io);
    }
    return rc;
}

int fl__cio_write(fl__cio_t *io, const void *p, size_t n, uint64_t deadline_ns)
{
    if (io->fd < 0)
        return FL_ERR_IO;
    if (!io->ssl)
        return raw_write(io->fd, p, n, deadline_ns);
    cio_tls_t *t = io->ssl;
    const uint8_t *b = p;
    while (n) {
        /* A memory BIO takes everything; push it out in bounded pieces. */
        int chunk = n > 65536 ? 65536 : (int)n;
        int w = SSL_write(t->ssl, b, chunk);
        if (w <= 0) {
            ERR_clear_error();
            return FL_ERR_IO;
        }
        b += w;
        n -= (size_t)w;
        int rc = tls_flush(io, deadline_ns);
        if (rc != FL_OK)
            return rc;
    }
    return FL_OK;
}

long fl__cio_read(fl__cio_t *io, void *p, size_t n, uint64_t deadline_ns)
{
    if (io->fd < 0)
        return FL_ERR_IO;
    if (!io->ssl)
        return raw_read(io->fd, p, n, deadline_ns);
    cio_tls_t *t = io->ssl;
    for (;;) {
        int r = SSL_read(t->ssl, p, n > 0x7fffffff ? 0x7fffffff : (int)n);
        if (r > 0)
            return r;
        int e = SSL_get_error(t->ssl, r);
        if (e == SSL_ERROR_ZERO_RETURN)
            return 0;
        if (e != SSL_ERROR_WANT_READ) {
            ERR_clear_error();
            return FL_ERR_IO;
        }
        int rc = tls_flush(io, deadline_ns);
        if (rc != FL_OK)
            return rc;
        long got = tls_pump(io, deadline_ns);
        if (got <= 0)
            return got;
    }
}

int fl__cio_stale(fl__cio_t *io)
{
    if (io->fd < 0)
        return 1;
    struct pollfd pf = {.fd = io->fd, .events = POLLIN};
    if (poll(&pf, 1, 0) <= 0)
        return 0;
    if (!io->ssl) {
        char b;
        ssize_t r = recv(io->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        return !(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }
    /* TLS 1.3 sends session tickets after the handshake: consume those, but a close_notify,
     * an EOF or stray application data means the connection is no longer usable. */
    cio_tls_t *t = io->ssl;
    uint8_t tmp[16384];
    for (;;) {
        ssize_t r = recv(io->fd, tmp, sizeof(tmp), MSG_DONTWAIT);
        if (r == 0)
            return 1;
        if (r < 0)
            break;
        BIO_write(t->rbio, tmp, (int)r);
    }
    uint8_t b;
    int r = SSL_read(t->ssl, &b, 1);
    if (r > 0)
        return 1;
    int e = SSL_get_error(t->ssl, r);
    ERR_clear_error();
    return e != SSL_ERROR_WANT_READ;
}

void fl__cio_close(fl__cio_t *io)
{
    cio_tls_t *t = io->ssl;
    if (t) {
        SSL_free(t->ssl);
        free(t);
    }
    SSL_CTX_free(io->ssl_ctx);
    if (io->fd >= 0)
        close(io->fd);
    fl__cio_init(io);
}
