/* DNSLookupChef in C: the netdumplings sample chef, same payloads and rules as the Rust
 * sample chef (chefs/dns-lookup-chef) and the Python and JS ports:
 *   packet:   {"lookup": {"hostname", "when"}} for every DNS *query* with a question
 *             (responses are skipped, so each lookup counts once)
 *   interval: {"lookups_seen": {hostname: {"count", "latest"}}}, on every poke, even empty,
 *             at most 1000 hostnames (the least recently seen is evicted)
 * Times are capture times (float seconds).
 * Payload bound: the interval payload stays under the kitchen's limit on one dumpling
 * (1,044,480 bytes; a payload over it is refused, at every poke). As in the Rust chef, names
 * of control bytes escape to 6 JSON bytes each (1000 names of 253: ~1.56 MB); when the
 * table's JSON, counted as the Rust chef writes it, is over ND_PAYLOAD_BUDGET (900 KiB), only
 * the most recently looked-up names that fit are listed (still in first-seen order) and
 * "lookups_unreported": n follows the table with how many were left out: the same names and
 * count as the Rust chef (each entry's cost is the length of serde_json's text of it, with
 * the Rust chef's float for its time). This chef's text is serde_json's but for its
 * separators and times (%.17g of another float: at most 26 bytes longer an entry), so it
 * stays under the limit.
 * Hot reload (chef API 0.2): the table follows the chef to its new version, in first-seen
 * order with its recency, as the Rust, Python and JS ports' tables do (the format is this
 * chef's own: STATE_TAG, the clock, then each entry; a state in any other format is refused
 * and the new version starts fresh). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nd_chef.h"

#define MAX_HOSTNAMES 1000
#define MAX_NAME 1023 /* longest decoded name (nd_dns_question_t holds 1024 with the NUL) */
#define STATE_TAG "DNSLookupChef C state 1\n"

typedef struct {
    char *name;
    size_t len;
    uint64_t count;
    double latest;
    uint64_t touched;
} seen_t;

/* What the payload bound needs of seen[i], in extra[i] (apart, so that the lookup's scan of
 * `seen` reads no more memory than before). */
typedef struct {
    uint64_t ns;        /* latest capture time in ns (NO_NS: restored, not known) */
    uint64_t costed_ns; /* the time `time_json` was reckoned for */
    uint32_t name_json; /* length of the name's JSON text (serde_json's too; 0: not yet) */
    uint32_t time_json; /* length of serde_json's text of the Rust chef's float for `ns` */
} extra_t;

#define NO_NS UINT64_MAX

static seen_t *seen; /* in first-seen order */
static extra_t extra[MAX_HOSTNAMES];
static size_t seen_len, seen_cap;
static uint64_t clock_;

static seen_t *lookup(const char *name, size_t len) {
    clock_++;
    for (size_t i = 0; i < seen_len; i++)
        if (seen[i].len == len && memcmp(seen[i].name, name, len) == 0) {
            seen[i].touched = clock_;
            return &seen[i];
        }
    if (seen_len == MAX_HOSTNAMES) { /* evict the least recently touched, keeping the order */
        size_t victim = 0;
        for (size_t i = 1; i < seen_len; i++)
            if (seen[i].touched < seen[victim].touched) victim = i;
        free(seen[victim].name);
        memmove(&seen[victim], &seen[victim + 1], (seen_len - victim - 1) * sizeof *seen);
        memmove(&extra[victim], &extra[victim + 1], (seen_len - victim - 1) * sizeof *extra);
        seen_len--;
    }
    if (seen_len == seen_cap) {
        size_t cap = seen_cap ? seen_cap * 2 : 16;
        seen_t *p = realloc(seen, cap * sizeof *p);
        if (!p) return NULL;
        seen = p;
        seen_cap = cap;
    }
    char *copy = malloc(len + 1);
    if (!copy) return NULL;
    memcpy(copy, name, len);
    copy[len] = 0;
    seen[seen_len] = (seen_t){copy, len, 0, 0.0, clock_};
    extra[seen_len] = (extra_t){NO_NS, NO_NS, 0, 0};
    return &seen[seen_len++];
}

static bool on_packet(const nd_packet_t *p, const uint8_t *arena, nd_buf_t *out) {
    size_t len;
    const uint8_t *msg = nd_dns_message(p, arena, &len); /* the interest picked the DNS ports */
    nd_dns_question_t q;
    if (!msg || !nd_dns_first_question(msg, len, &q) || q.is_response) return false;
    double when = nd_time(p);
    nd_buf_puts(out, "{\"lookup\": {\"hostname\": ");
    nd_buf_json_string(out, q.name, q.name_len); /* always valid UTF-8 (lossy decoding) */
    seen_t *s = lookup(q.name, q.name_len);
    if (!s) return false;
    s->count++;
    s->latest = when;
    extra[s - seen].ns = p->timestamp_ns;
    nd_buf_puts(out, ", \"when\": ");
    nd_buf_json_double(out, when);
    nd_buf_puts(out, "}}");
    return true;
}

/* Length of serde_json's text of a finite x >= 0 (zmij: the shortest digits that read back;
 * plain from 1e-5 to below 1e16 with at least one digit after the point, else d.ddde+N). */
static size_t serde_f64_len(double x) {
    if (x == 0) return 3; /* 0.0 */
    char buf[40];
    for (int prec = 0; prec <= 16; prec++) { /* the shortest digits that read back */
        snprintf(buf, sizeof buf, "%.*e", prec, x);
        if (strtod(buf, NULL) == x) break;
    }
    char *e = strchr(buf, 'e');
    int dexp = atoi(e + 1);
    int n = 0, last = 0; /* digits, and the count up to the last non-zero one */
    for (char *c = buf; c < e; c++)
        if (*c >= '0' && *c <= '9') {
            n++;
            if (*c != '0') last = n;
        }
    n = last;
    size_t size;
    if (dexp >= -5 && dexp <= 15) {
        if (n - 1 <= dexp) size = (size_t)dexp + 3;      /* 1234e7 -> 12340000000.0 */
        else if (dexp >= 0) size = (size_t)n + 1;        /* 12.34 */
        else size = (size_t)(1 - dexp + n);              /* 0.001234 */
    } else {
        int a = dexp < 0 ? -dexp : dexp;
        size = (size_t)n + (n > 1) + 2 + (a >= 100 ? 3 : a >= 10 ? 2 : 1); /* 1.234e+33 */
    }
    return size;
}

static size_t digits_u64(uint64_t v) {
    size_t n = 1;
    while (v >= 10) v /= 10, n++;
    return n;
}

/* An entry's share of the Rust chef's payload: "name":{"count":N,"latest":T} and a comma.
 * The time's length is kept until the time changes. */
static size_t rust_cost(size_t i) {
    seen_t *s = &seen[i];
    extra_t *x = &extra[i];
    if (!x->name_json) x->name_json = (uint32_t)nd_json_string_len(s->name, s->len);
    if (x->costed_ns != x->ns || x->ns == NO_NS) {
        /* Timestamp::as_secs_f64: whole seconds and the fraction converted apart, then added
         * (not always ns / 1e9); a restored entry has only its float. */
        double t = x->ns == NO_NS ? s->latest
                                  : (double)(x->ns / 1000000000u) + (double)(x->ns % 1000000000u) / 1e9;
        x->time_json = (uint32_t)serde_f64_len(t);
        x->costed_ns = x->ns;
    }
    return x->name_json + digits_u64(s->count) + x->time_json + 22;
}

static size_t by_newest[MAX_HOSTNAMES];

static int newer_first(const void *a, const void *b) {
    uint64_t x = seen[*(const size_t *)a].touched, y = seen[*(const size_t *)b].touched;
    return x < y ? 1 : x > y ? -1 : 0;
}

static bool on_interval(double interval_s, uint64_t now_ns, nd_buf_t *out) {
    (void)interval_s;
    (void)now_ns;
    /* Which entries the payload shows: all while the Rust chef's text of the table fits the
     * budget (surely when 6 bytes a name byte and 68 an entry fit it), else
     * the most recently touched that fit (the Rust SDK's BoundedMap::newest_within). */
    static bool keep[MAX_HOSTNAMES];
    size_t left_out = 0, bound = 0;
    for (size_t i = 0; i < seen_len; i++) bound += 6 * seen[i].len + 68; /* a byte: at most 6 */
    bool all = bound <= ND_PAYLOAD_BUDGET;
    if (!all) {
        size_t total = 0;
        for (size_t i = 0; i < seen_len; i++) total += rust_cost(i);
        all = total <= ND_PAYLOAD_BUDGET;
    }
    if (!all) {
        for (size_t i = 0; i < seen_len; i++) {
            by_newest[i] = i;
            keep[i] = false;
        }
        qsort(by_newest, seen_len, sizeof *by_newest, newer_first);
        size_t used = 0, kept = 0;
        for (; kept < seen_len; kept++) {
            used += rust_cost(by_newest[kept]);
            if (used > ND_PAYLOAD_BUDGET) break;
            keep[by_newest[kept]] = true;
        }
        left_out = seen_len - kept;
    }
    nd_buf_puts(out, "{\"lookups_seen\": {");
    bool first = true;
    for (size_t i = 0; i < seen_len; i++) {
        if (!all && !keep[i]) continue;
        if (!first) nd_buf_puts(out, ", ");
        first = false;
        nd_buf_json_string(out, seen[i].name, seen[i].len);
        nd_buf_printf(out, ": {\"count\": %llu, \"latest\": ", (unsigned long long)seen[i].count);
        nd_buf_json_double(out, seen[i].latest);
        nd_buf_puts(out, "}");
    }
    nd_buf_puts(out, "}");
    if (left_out) nd_buf_printf(out, ", \"lookups_unreported\": %zu", left_out);
    nd_buf_puts(out, "}");
    return true;
}

static void snapshot(nd_buf_t *out) {
    nd_buf_puts(out, STATE_TAG);
    nd_buf_u64(out, clock_);
    nd_buf_u32(out, (uint32_t)seen_len);
    for (size_t i = 0; i < seen_len; i++) {
        nd_buf_bytes(out, seen[i].name, (uint32_t)seen[i].len);
        nd_buf_u64(out, seen[i].count);
        nd_buf_f64(out, seen[i].latest);
        nd_buf_u64(out, seen[i].touched);
    }
}

static bool restore(const uint8_t *state, size_t len, nd_buf_t *why) {
    nd_reader_t r = {state, len, false};
    if (!nd_read_tag(&r, STATE_TAG)) {
        nd_buf_puts(why, "not a DNSLookupChef C state version 1");
        return false;
    }
    uint64_t clock = nd_read_u64(&r);
    uint32_t n = nd_read_u32(&r);
    if (r.failed || n > MAX_HOSTNAMES) {
        nd_buf_puts(why, "bad header or too many names");
        return false;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t name_len;
        const uint8_t *name = nd_read_bytes(&r, MAX_NAME, &name_len);
        uint64_t count = nd_read_u64(&r);
        double latest = nd_read_f64(&r);
        uint64_t touched = nd_read_u64(&r);
        if (r.failed || touched > clock) { /* a recency from after the snapshot: not ours */
            r.failed = true;
            break;
        }
        seen_t *s = lookup((const char *)name, name_len);
        if (!s || s->count) { /* out of memory, or a name twice */
            r.failed = true;
            break;
        }
        *s = (seen_t){s->name, s->len, count, latest, touched};
    }
    if (r.failed || r.len != 0) {
        for (size_t i = 0; i < seen_len; i++) free(seen[i].name);
        seen_len = 0;
        clock_ = 0;
        nd_buf_puts(why, r.failed ? "truncated or malformed entry" : "bytes after the last entry");
        return false;
    }
    clock_ = clock;
    return true;
}

const nd_chef_t ND_CHEF = {
    .name = "DNSLookupChef",
    .description = "One dumpling per DNS query; every poke, the host names looked up so far",
    .version = "0.1.0",
    .on_packet = on_packet,
    .on_interval = on_interval,
    /* DNS on UDP/TCP 53 and mDNS on 5353. */
    .transport = (const uint8_t[]){ND_UDP, ND_TCP},
    .transport_len = 2,
    .ports = (const uint16_t[]){53, 5353},
    .ports_len = 2,
    .snapshot = snapshot,
    .restore = restore,
};
