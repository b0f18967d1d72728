/* nd_chef.c: the WIT exports of a C chef (chef API 0.2, world `stateful-chef`), on top of
 * `ND_CHEF` (see nd_chef.h). */
#include "nd_chef.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --- buffers ------------------------------------------------------------------------- */

static bool buf_reserve(nd_buf_t *b, size_t extra) {
    if (b->failed) return false;
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->ptr, cap);
    if (!p) {
        b->failed = true;
        return false;
    }
    b->ptr = p;
    b->cap = cap;
    return true;
}

void nd_buf_put(nd_buf_t *b, const char *s, size_t n) {
    if (!buf_reserve(b, n)) return;
    memcpy(b->ptr + b->len, s, n);
    b->len += n;
    b->ptr[b->len] = 0;
}

void nd_buf_puts(nd_buf_t *b, const char *s) { nd_buf_put(b, s, strlen(s)); }

static void buf_vprintf(nd_buf_t *b, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0 || !buf_reserve(b, (size_t)n)) return;
    vsnprintf(b->ptr + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void nd_buf_printf(nd_buf_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

static bool valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t k;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        if ((c & 0xE0) == 0xC0) { k = 1; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { k = 2; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { k = 3; cp = c & 0x07; }
        else return false;
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

bool nd_buf_json_string(nd_buf_t *b, const char *s, size_t n) {
    if (!valid_utf8((const unsigned char *)s, n)) return false;
    /* The escapes serde_json (the Rust chefs), Python's json and JSON.stringify write:
     * \" \\ \b \f \n \r \t, other controls as \u00XX (lowercase hex); runs of other bytes
     * are copied whole. */
    static const char hex[] = "0123456789abcdef";
    nd_buf_put(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        nd_buf_put(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': nd_buf_put(b, "\\\"", 2); break;
        case '\\': nd_buf_put(b, "\\\\", 2); break;
        case '\b': nd_buf_put(b, "\\b", 2); break;
        case '\f': nd_buf_put(b, "\\f", 2); break;
        case '\n': nd_buf_put(b, "\\n", 2); break;
        case '\r': nd_buf_put(b, "\\r", 2); break;
        case '\t': nd_buf_put(b, "\\t", 2); break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            nd_buf_put(b, u, 6);
        }
        }
    }
    nd_buf_put(b, s + run, n - run);
    nd_buf_put(b, "\"", 1);
    return true;
}

size_t nd_json_string_len(const char *s, size_t n) {
    size_t len = n + 2;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t') len += 1;
        else if (c < 0x20) len += 5;
    }
    return len;
}

void nd_buf_json_double(nd_buf_t *b, double v) {
    if (v != v || v > 1.7976931348623157e308 || v < -1.7976931348623157e308) {
        nd_buf_puts(b, "null"); /* JSON has no NaN/Infinity */
        return;
    }
    nd_buf_printf(b, "%.17g", v);
}

/* --- binary state helpers ---------------------------------------------------------------- */

void nd_buf_u32(nd_buf_t *b, uint32_t v) {
    uint8_t le[4];
    for (int i = 0; i < 4; i++) le[i] = (uint8_t)(v >> (8 * i));
    nd_buf_put(b, (const char *)le, 4);
}

void nd_buf_u64(nd_buf_t *b, uint64_t v) {
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(v >> (8 * i));
    nd_buf_put(b, (const char *)le, 8);
}

void nd_buf_f64(nd_buf_t *b, double v) {
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    nd_buf_u64(b, bits);
}

void nd_buf_bytes(nd_buf_t *b, const void *s, uint32_t n) {
    nd_buf_u32(b, n);
    nd_buf_put(b, (const char *)s, n);
}

/* The next `n` bytes, or NULL (and `failed`) when fewer are left. */
static const uint8_t *take(nd_reader_t *r, size_t n) {
    if (r->failed || r->len < n) {
        r->failed = true;
        return NULL;
    }
    const uint8_t *at = r->ptr;
    r->ptr += n;
    r->len -= n;
    return at;
}

uint32_t nd_read_u32(nd_reader_t *r) {
    const uint8_t *p = take(r, 4);
    uint32_t v = 0;
    if (p)
        for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << (8 * i);
    return v;
}

uint64_t nd_read_u64(nd_reader_t *r) {
    const uint8_t *p = take(r, 8);
    uint64_t v = 0;
    if (p)
        for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

double nd_read_f64(nd_reader_t *r) {
    uint64_t bits = nd_read_u64(r);
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

const uint8_t *nd_read_bytes(nd_reader_t *r, uint32_t max, uint32_t *n) {
    *n = nd_read_u32(r);
    if (*n > max) {
        r->failed = true;
        *n = 0;
        return NULL;
    }
    return take(r, *n);
}

bool nd_read_tag(nd_reader_t *r, const char *tag) {
    size_t n = strlen(tag);
    const uint8_t *p = take(r, n);
    return p && memcmp(p, tag, n) == 0;
}

/* --- logging and small helpers ---------------------------------------------------------- */

void nd_log(int level, const char *fmt, ...) {
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    stateful_chef_string_t msg = {(uint8_t *)text, (size_t)n < sizeof text ? (size_t)n : sizeof text - 1};
    if (level < ND_TRACE || level > ND_ERROR) level = ND_INFO;
    netdumplings_chef_log_log((netdumplings_chef_log_level_t)level, &msg);
}

void nd_mac_str(uint64_t mac, char out[18]) {
    snprintf(out, 18, "%02x:%02x:%02x:%02x:%02x:%02x", (unsigned)(mac >> 40) & 255, (unsigned)(mac >> 32) & 255,
             (unsigned)(mac >> 24) & 255, (unsigned)(mac >> 16) & 255, (unsigned)(mac >> 8) & 255, (unsigned)mac & 255);
}

void nd_ipv4_str(uint32_t ip, char out[16]) {
    snprintf(out, 16, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 255, (ip >> 8) & 255, ip & 255);
}

bool nd_ports(const nd_packet_t *p, uint16_t *sport, uint16_t *dport) {
    if (!p->transport.is_some) return false;
    if (p->transport.val.tag == ND_TRANSPORT_TCP) {
        *sport = p->transport.val.val.tcp.source_port;
        *dport = p->transport.val.val.tcp.destination_port;
        return true;
    }
    if (p->transport.val.tag == ND_TRANSPORT_UDP) {
        *sport = p->transport.val.val.udp.source_port;
        *dport = p->transport.val.val.udp.destination_port;
        return true;
    }
    return false;
}

const uint8_t *nd_dns_message(const nd_packet_t *p, const uint8_t *arena, size_t *len) {
    if (!p->transport.is_some) return NULL;
    uint8_t tag = p->transport.val.tag;
    if (tag != ND_TRANSPORT_TCP && tag != ND_TRANSPORT_UDP) return NULL;
    const uint8_t *msg = nd_bytes(arena, p->payload);
    size_t n = p->payload.len;
    if (tag == ND_TRANSPORT_TCP) {
        if (n < 2) return NULL;
        size_t want = ((size_t)msg[0] << 8) | msg[1];
        if (n < 2 + want) return NULL;
        msg += 2;
        n = want;
    }
    *len = n;
    return msg;
}

void nd_buf_utf8_lossy(nd_buf_t *b, const uint8_t *s, size_t n) {
    static const char REPLACEMENT[] = "\xEF\xBF\xBD";
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            nd_buf_put(b, (const char *)&s[i], 1);
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            nd_buf_put(b, REPLACEMENT, 3);
            i++;
            continue;
        }
        size_t got = 0;
        while (got < need && i + 1 + got < n) {
            uint8_t d = s[i + 1 + got];
            if (got == 0 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF)) break;
            got++;
        }
        if (got == need) nd_buf_put(b, (const char *)&s[i], need + 1);
        else nd_buf_put(b, REPLACEMENT, 3);
        i += 1 + got;
    }
}

bool nd_dns_first_question(const uint8_t *msg, size_t n, nd_dns_question_t *q) {
    if (n < 12) return false;
    uint16_t flags = (uint16_t)((msg[2] << 8) | msg[3]);
    if (((msg[4] << 8) | msg[5]) == 0) return false;
    nd_buf_t name = {0};
    size_t pos = 12, wire = 0, after = 0;
    bool have_after = false;
    int pointers = 0;
    bool ok = false;
    for (;;) {
        if (pos >= n) break;
        uint8_t l = msg[pos];
        if ((l & 0xC0) == 0) {
            if (l == 0) {
                if (!have_after) after = pos + 1;
                ok = true;
                break;
            }
            if (pos + 1 + l > n) break;
            wire += 1 + (size_t)l;
            if (wire > 255) break;
            if (name.len) nd_buf_put(&name, ".", 1);
            nd_buf_utf8_lossy(&name, msg + pos + 1, l);
            pos += 1 + (size_t)l;
        } else if ((l & 0xC0) == 0xC0) {
            if (++pointers > 16 || pos + 1 >= n) break;
            if (!have_after) {
                after = pos + 2;
                have_after = true;
            }
            pos = ((size_t)(l & 0x3F) << 8) | msg[pos + 1];
        } else {
            break;
        }
    }
    if (!ok || after + 4 > n || name.failed || name.len >= sizeof q->name) {
        free(name.ptr);
        return false;
    }
    q->is_response = (flags & 0x8000) != 0;
    q->id = (uint16_t)((msg[0] << 8) | msg[1]);
    q->qtype = (uint16_t)((msg[after] << 8) | msg[after + 1]);
    q->qclass = (uint16_t)(((msg[after + 2] << 8) | msg[after + 3]) & 0x7FFF);
    q->name_len = name.len;
    if (name.len) memcpy(q->name, name.ptr, name.len);
    q->name[name.len] = 0;
    free(name.ptr);
    return true;
}

/* --- the WIT exports ---------------------------------------------------------------------- */

static void str_dup(stateful_chef_string_t *ret, const char *s, const char *fallback) {
    stateful_chef_string_dup(ret, s ? s : fallback);
}

void exports_netdumplings_chef_handler_describe(exports_netdumplings_chef_handler_chef_info_t *ret) {
    const nd_chef_t *c = &ND_CHEF;
#ifdef ND_CHEF_NAME_OVERRIDE /* nd-chef build --name */
    str_dup(&ret->name, ND_CHEF_NAME_OVERRIDE, "UnnamedCChef");
#else
    str_dup(&ret->name, c->name, "UnnamedCChef");
#endif
    str_dup(&ret->description, c->description, c->name ? c->name : "");
    str_dup(&ret->version, c->version, "0.1.0");
    ret->drivers = (c->on_packet ? NETDUMPLINGS_CHEF_TYPES_DRIVERS_PACKET : 0) |
                   (c->on_interval ? NETDUMPLINGS_CHEF_TYPES_DRIVERS_INTERVAL : 0);
#define COPY_LIST(field, src, count, T)                                   \
    do {                                                                  \
        ret->interest.field.len = (count);                                \
        ret->interest.field.ptr = NULL;                                   \
        if (count) {                                                      \
            ret->interest.field.ptr = malloc((count) * sizeof(T));        \
            if (!ret->interest.field.ptr) abort();                        \
            memcpy(ret->interest.field.ptr, (src), (count) * sizeof(T));  \
        }                                                                 \
    } while (0)
    COPY_LIST(link_types, c->link_types, c->link_types_len, uint32_t);
    COPY_LIST(network, c->network, c->network_len, uint8_t);
    COPY_LIST(transport, c->transport, c->transport_len, uint8_t);
    COPY_LIST(ports, c->ports, c->ports_len, uint16_t);
#undef COPY_LIST
    /* Chef API 0.2: asked for only when the chef has the handler that takes them. */
    ret->interest.flow_events = c->flow_events && c->on_flow_event;
    ret->interest.stream_bytes = c->on_stream ? c->stream_bytes : 0;
    ret->batch_form = NETDUMPLINGS_CHEF_TYPES_BATCH_FORM_RECORDS;
}

/* Appends the dumpling in `out` (if the handler made one) for input `index` to `ret`. */
static void push_dumpling(exports_netdumplings_chef_handler_list_packet_dumpling_t *ret, size_t *cap, size_t index,
                          bool made, nd_buf_t *out) {
    if (!made || out->failed || out->len == 0) return;
    if (ret->len == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        void *p = realloc(ret->ptr, ncap * sizeof(*ret->ptr));
        if (!p) abort();
        ret->ptr = p;
        *cap = ncap;
    }
    ret->ptr[ret->len].packet_index = (uint32_t)index;
    stateful_chef_string_dup_n(&ret->ptr[ret->len].payload, out->ptr, out->len);
    ret->len++;
}

static void reset(nd_buf_t *out) {
    out->len = 0;
    out->failed = false;
}

void exports_netdumplings_chef_handler_on_packets(exports_netdumplings_chef_handler_list_packet_t *packets,
                                                  stateful_chef_list_u8_t *arena,
                                                  exports_netdumplings_chef_handler_list_packet_dumpling_t *ret) {
    ret->ptr = NULL;
    ret->len = 0;
    size_t cap = 0;
    nd_buf_t out = {0};
    if (ND_CHEF.on_packet) {
        for (size_t i = 0; i < packets->len; i++) {
            reset(&out);
            push_dumpling(ret, &cap, i, ND_CHEF.on_packet(&packets->ptr[i], arena->ptr, &out), &out);
        }
    }
    free(out.ptr);
    /* The callee owns its arguments (wit-bindgen C convention). */
    exports_netdumplings_chef_handler_list_packet_free(packets);
    stateful_chef_list_u8_free(arena);
}

void exports_netdumplings_chef_handler_on_interval(uint64_t now_ns, uint64_t interval_ns, stateful_chef_list_string_t *ret) {
    ret->ptr = NULL;
    ret->len = 0;
    if (!ND_CHEF.on_interval) return;
    nd_buf_t out = {0};
    if (ND_CHEF.on_interval((double)interval_ns / 1e9, now_ns, &out) && !out.failed && out.len) {
        ret->ptr = malloc(sizeof(stateful_chef_string_t));
        if (!ret->ptr) abort();
        stateful_chef_string_dup_n(&ret->ptr[0], out.ptr, out.len);
        ret->len = 1;
    }
    free(out.ptr);
}

/* A C chef takes the records batch form (read in place), so the kitchen never calls this. */
void exports_netdumplings_chef_handler_on_packed(stateful_chef_list_u8_t *headers, stateful_chef_list_u8_t *arena,
                                                 exports_netdumplings_chef_handler_list_packet_dumpling_t *ret) {
    ret->ptr = NULL;
    ret->len = 0;
    stateful_chef_list_u8_free(headers);
    stateful_chef_list_u8_free(arena);
}

void exports_netdumplings_chef_handler_on_flow_events(exports_netdumplings_chef_handler_list_flow_event_t *events,
                                                      exports_netdumplings_chef_handler_list_packet_dumpling_t *ret) {
    ret->ptr = NULL;
    ret->len = 0;
    size_t cap = 0;
    nd_buf_t out = {0};
    if (ND_CHEF.on_flow_event) {
        for (size_t i = 0; i < events->len; i++) {
            reset(&out);
            push_dumpling(ret, &cap, i, ND_CHEF.on_flow_event(&events->ptr[i], &out), &out);
        }
    }
    free(out.ptr);
    exports_netdumplings_chef_handler_list_flow_event_free(events);
}

void exports_netdumplings_chef_handler_on_stream(exports_netdumplings_chef_handler_list_stream_chunk_t *chunks,
                                                 stateful_chef_list_u8_t *arena,
                                                 exports_netdumplings_chef_handler_list_packet_dumpling_t *ret) {
    ret->ptr = NULL;
    ret->len = 0;
    size_t cap = 0;
    nd_buf_t out = {0};
    if (ND_CHEF.on_stream) {
        for (size_t i = 0; i < chunks->len; i++) {
            reset(&out);
            push_dumpling(ret, &cap, i, ND_CHEF.on_stream(&chunks->ptr[i], arena->ptr, &out), &out);
        }
    }
    free(out.ptr);
    exports_netdumplings_chef_handler_list_stream_chunk_free(chunks);
    stateful_chef_list_u8_free(arena);
}

void exports_netdumplings_chef_state_snapshot(stateful_chef_list_u8_t *ret) {
    ret->ptr = NULL;
    ret->len = 0;
    if (!ND_CHEF.snapshot) return; /* nothing to carry: the new version starts fresh */
    nd_buf_t out = {0};
    ND_CHEF.snapshot(&out);
    if (out.failed || out.len == 0) {
        free(out.ptr);
        return;
    }
    /* Handed over as is: the canonical ABI frees it with free() after the call. */
    ret->ptr = (uint8_t *)out.ptr;
    ret->len = out.len;
}

bool exports_netdumplings_chef_state_restore(stateful_chef_list_u8_t *state, stateful_chef_string_t *err) {
    bool ok = true;
    nd_buf_t why = {0};
    if (!ND_CHEF.restore) {
        nd_buf_puts(&why, "this version of the chef keeps no state");
        ok = false;
    } else if (!ND_CHEF.restore(state->ptr, state->len, &why)) {
        if (why.len == 0) nd_buf_puts(&why, "refused by the chef");
        ok = false;
    }
    if (!ok) stateful_chef_string_dup_n(err, why.failed ? "refused by the chef" : why.ptr,
                                        why.failed ? strlen("refused by the chef") : why.len);
    free(why.ptr);
    stateful_chef_list_u8_free(state);
    return ok;
}

/* gen/stateful_chef.c references the symbol of wit-bindgen's `stateful_chef_component_type.o`,
 * which carries the component type as a custom section. nd-chef embeds the type with
 * `wasm-tools component embed` from wit/ instead (no binary object in the repo), so the
 * symbol only has to exist. */
void __component_type_object_force_link_stateful_chef(void) {}

/* --- stdio without WASI --------------------------------------------------------------------
 * wasi-libc's printf family reaches the stdio FILE machinery (vfprintf refers to stderr), which
 * imports the WASI preview1 functions fd_write/fd_seek/fd_close/fd_fdstat_get. Defining them
 * here keeps them out of the link: the chef then imports no WASI at all, and text written to
 * stdout/stderr (printf, fprintf(stderr), puts...) goes to the kitchen's log, line by line. */
#include <wasi/api.h>

static char stdio_line[2][512];
static size_t stdio_len[2];

static void stdio_flush(int which) {
    if (stdio_len[which] == 0) return;
    stateful_chef_string_t msg = {(uint8_t *)stdio_line[which], stdio_len[which]};
    netdumplings_chef_log_log(which ? ND_WARN : ND_INFO, &msg);
    stdio_len[which] = 0;
}

__wasi_errno_t __wasi_fd_write(__wasi_fd_t fd, const __wasi_ciovec_t *iovs, size_t iovs_len, __wasi_size_t *written) {
    if (fd != 1 && fd != 2) return __WASI_ERRNO_BADF;
    int which = fd == 2;
    size_t total = 0;
    for (size_t i = 0; i < iovs_len; i++) {
        for (size_t j = 0; j < iovs[i].buf_len; j++) {
            char c = (char)iovs[i].buf[j];
            if (c == '\n') {
                stdio_flush(which);
            } else {
                if (stdio_len[which] == sizeof stdio_line[which]) stdio_flush(which);
                stdio_line[which][stdio_len[which]++] = c;
            }
        }
        total += iovs[i].buf_len;
    }
    *written = (__wasi_size_t)total;
    return 0;
}

__wasi_errno_t __wasi_fd_seek(__wasi_fd_t fd, __wasi_filedelta_t offset, __wasi_whence_t whence, __wasi_filesize_t *newoffset) {
    (void)fd, (void)offset, (void)whence, (void)newoffset;
    return __WASI_ERRNO_SPIPE;
}

__wasi_errno_t __wasi_fd_close(__wasi_fd_t fd) {
    if (fd == 1 || fd == 2) stdio_flush(fd == 2);
    return 0;
}

__wasi_errno_t __wasi_fd_fdstat_get(__wasi_fd_t fd, __wasi_fdstat_t *stat) {
    if (fd != 1 && fd != 2) return __WASI_ERRNO_BADF;
    memset(stat, 0, sizeof *stat);
    stat->fs_filetype = __WASI_FILETYPE_CHARACTER_DEVICE; /* a "tty": line-buffered stdout */
    return 0;
}
