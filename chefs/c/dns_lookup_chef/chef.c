/* DNSLookupChef in C: the netdumplings sample chef, same payloads and rules as the Rust
 * sample chef (chefs/dns-lookup-chef) and the Python and JS ports:
 *   packet:   {"lookup": {"hostname", "when"}} for every DNS *query* with a question
 *             (responses are skipped, so each lookup counts once)
 *   interval: {"lookups_seen": {hostname: {"count", "latest"}}}, on every poke, even empty,
 *             at most 1000 hostnames (the least recently seen is evicted)
 * Times are capture times (float seconds).
 * Hot reload (chef API 0.2): the table follows the chef to its new version, in first-seen
 * order with its recency, as the Rust, Python and JS ports' tables do (the format is this
 * chef's own: STATE_TAG, the clock, then each entry; a state in any other format is refused
 * and the new version starts fresh). */
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

static seen_t *seen; /* in first-seen order */
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
    nd_buf_puts(out, ", \"when\": ");
    nd_buf_json_double(out, when);
    nd_buf_puts(out, "}}");
    return true;
}

static bool on_interval(double interval_s, uint64_t now_ns, nd_buf_t *out) {
    (void)interval_s;
    (void)now_ns;
    nd_buf_puts(out, "{\"lookups_seen\": {");
    for (size_t i = 0; i < seen_len; i++) {
        if (i) nd_buf_puts(out, ", ");
        nd_buf_json_string(out, seen[i].name, seen[i].len);
        nd_buf_printf(out, ": {\"count\": %llu, \"latest\": ", (unsigned long long)seen[i].count);
        nd_buf_json_double(out, seen[i].latest);
        nd_buf_puts(out, "}");
    }
    nd_buf_puts(out, "}}");
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
