/* nd_chef.h: write netdumplings chefs in C.
 *
 * A C chef defines one `const nd_chef_t ND_CHEF` (its name, interest and handlers) and the
 * handlers themselves; `nd_chef.c` implements the WIT exports on top of it: chef API 0.2,
 * world `stateful-chef` of wit/chef.wit (the bindings in gen/ are generated from it by
 * wit-bindgen 0.63.0). Every field added for 0.2 is optional, so a 0.1 C chef's source
 * builds unchanged. Build with
 * `tools/nd-chef/nd-chef build DIR` (clang-19 + wasi-libc, see
 * docs/chefs-in-other-languages.md).
 *
 *   static bool on_packet(const nd_packet_t *p, const uint8_t *arena, nd_buf_t *out) {
 *       if (!p->arp.is_some) return false;              // no dumpling
 *       nd_buf_printf(out, "{\"op\": %u}", p->arp.val.operation);
 *       return true;                                   // `out` holds one JSON value
 *   }
 *   const nd_chef_t ND_CHEF = { .name = "ArpOpChef", .on_packet = on_packet,
 *       .network = (const uint8_t[]){ND_NET_ARP}, .network_len = 1 };
 *
 * Rules: a handler returns true when `out` holds exactly one JSON value (the dumpling
 * payload), false for none; `out` is reset before each call. Packets and the arena are
 * valid only during the call. Use nd_log() rather than printf (stdio is not wired: a chef
 * that calls printf imports WASI preview1 and needs the adapter).
 */
#ifndef ND_CHEF_H
#define ND_CHEF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "stateful_chef.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The packet record of wit/chef.wit, as generated (fields: timestamp_ns, frame, ethernet,
 * arp, ip, transport, payload, padding, stopped, flow; optional layers have `.is_some` and
 * `.val`). `flow` (its id and direction) is filled while some loaded chef uses flows or
 * streams: see nd_flow(). */
typedef netdumplings_chef_types_packet_t nd_packet_t;
typedef netdumplings_chef_types_span_t nd_span_t;
/* Chef API 0.2: a TCP stream chunk (flow, key, timestamp_ns, offset, gap_before, data, last),
 * a flow event (tag ND_FLOW_STARTED: val.started = {id, key, timestamp_ns}; ND_FLOW_ENDED:
 * val.ended = the flow's summary) and a flow's 5-tuple. */
typedef netdumplings_chef_types_stream_chunk_t nd_stream_chunk_t;
typedef netdumplings_chef_types_flow_event_t nd_flow_event_t;
typedef netdumplings_chef_types_flow_key_t nd_flow_key_t;
#define ND_FLOW_STARTED NETDUMPLINGS_CHEF_TYPES_FLOW_EVENT_STARTED
#define ND_FLOW_ENDED NETDUMPLINGS_CHEF_TYPES_FLOW_EVENT_ENDED
/* Directions (`flow.direction` of a packet or chunk). */
#define ND_FROM_ORIGINATOR NETDUMPLINGS_CHEF_TYPES_DIRECTION_FROM_ORIGINATOR
#define ND_FROM_RESPONDER NETDUMPLINGS_CHEF_TYPES_DIRECTION_FROM_RESPONDER

/* Interest values. */
#define ND_NET_ARP NETDUMPLINGS_CHEF_TYPES_NETWORK_PROTOCOL_ARP
#define ND_NET_IPV4 NETDUMPLINGS_CHEF_TYPES_NETWORK_PROTOCOL_IPV4
#define ND_NET_IPV6 NETDUMPLINGS_CHEF_TYPES_NETWORK_PROTOCOL_IPV6
#define ND_NET_OTHER NETDUMPLINGS_CHEF_TYPES_NETWORK_PROTOCOL_OTHER
#define ND_TCP NETDUMPLINGS_CHEF_TYPES_TRANSPORT_PROTOCOL_TCP
#define ND_UDP NETDUMPLINGS_CHEF_TYPES_TRANSPORT_PROTOCOL_UDP
#define ND_ICMPV4 NETDUMPLINGS_CHEF_TYPES_TRANSPORT_PROTOCOL_ICMPV4
#define ND_ICMPV6 NETDUMPLINGS_CHEF_TYPES_TRANSPORT_PROTOCOL_ICMPV6

/* Variant tags. */
#define ND_IP_V4 NETDUMPLINGS_CHEF_TYPES_IP_HEADER_V4
#define ND_IP_V6 NETDUMPLINGS_CHEF_TYPES_IP_HEADER_V6
#define ND_TRANSPORT_TCP NETDUMPLINGS_CHEF_TYPES_TRANSPORT_HEADER_TCP
#define ND_TRANSPORT_UDP NETDUMPLINGS_CHEF_TYPES_TRANSPORT_HEADER_UDP
#define ND_TRANSPORT_ICMPV4 NETDUMPLINGS_CHEF_TYPES_TRANSPORT_HEADER_ICMPV4
#define ND_TRANSPORT_ICMPV6 NETDUMPLINGS_CHEF_TYPES_TRANSPORT_HEADER_ICMPV6

/* Log levels for nd_log. */
enum { ND_TRACE = 0, ND_DEBUG = 1, ND_INFO = 2, ND_WARN = 3, ND_ERROR = 4 };

/* A growable byte buffer: the JSON payload a handler writes. */
typedef struct nd_buf {
    char *ptr;
    size_t len;
    size_t cap;
    bool failed; /* set when an allocation failed; the dumpling is then dropped */
} nd_buf_t;

/* A reader over untrusted bytes (a state snapshot being restored): every read checks the
 * length; after a short read `failed` is set and every later read returns zeros. */
typedef struct nd_reader {
    const uint8_t *ptr;
    size_t len;
    bool failed;
} nd_reader_t;

/* What a chef is. Unset lists mean "any"; an unset handler means "not called". */
typedef struct nd_chef {
    const char *name;        /* class-style, letters/digits/_/-, at most 64 */
    const char *description; /* one line for nd-sniff -l */
    const char *version;     /* default "0.1.0" */
    bool (*on_packet)(const nd_packet_t *p, const uint8_t *arena, nd_buf_t *out);
    bool (*on_interval)(double interval_s, uint64_t now_ns, nd_buf_t *out);
    const uint8_t *network;
    size_t network_len;
    const uint8_t *transport;
    size_t transport_len;
    const uint16_t *ports;
    size_t ports_len;
    const uint32_t *link_types;
    size_t link_types_len;
    /* --- chef API 0.2, all optional ----------------------------------------------------- */
    /* Flow starts and ends (not filtered by the lists above); one call per event. */
    bool flow_events;
    bool (*on_flow_event)(const nd_flow_event_t *e, nd_buf_t *out);
    /* Bytes of each direction of each TCP connection wanted as in-order stream chunks
     * (0 = none); one call per chunk, whose data lies in `arena` (nd_bytes). */
    uint32_t stream_bytes;
    bool (*on_stream)(const nd_stream_chunk_t *c, const uint8_t *arena, nd_buf_t *out);
    /* State across a hot reload: `snapshot` writes the chef's state into `out` (any bytes;
     * none = nothing to carry), `restore` takes an older version's snapshot and returns
     * false to refuse it, with the reason in `why` (the new version then starts fresh and
     * the kitchen logs the reason). Called between batches; the kitchen caps the size. */
    void (*snapshot)(nd_buf_t *out);
    bool (*restore)(const uint8_t *state, size_t len, nd_buf_t *why);
} nd_chef_t;

/* Defined by the chef. */
extern const nd_chef_t ND_CHEF;

/* --- helpers ------------------------------------------------------------------------- */

/* Write to the kitchen's log (printf-style; no WASI needed). */
void nd_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Append to a buffer. */
void nd_buf_put(nd_buf_t *b, const char *s, size_t n);
void nd_buf_puts(nd_buf_t *b, const char *s);
void nd_buf_printf(nd_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append a JSON string literal (quotes and escapes added). Returns false, appending nothing,
 * when `s` is not valid UTF-8. */
bool nd_buf_json_string(nd_buf_t *b, const char *s, size_t n);
/* Length of the JSON string literal nd_buf_json_string writes for valid UTF-8 `s` (the same
 * as serde_json's, the Rust chefs'). */
size_t nd_json_string_len(const char *s, size_t n);
/* Append a float (capture times) as a JSON number. */
void nd_buf_json_double(nd_buf_t *b, double v);

/* Most bytes a chef should put in one payload that lists a table (an interval payload): the
 * Rust chef SDK's PAYLOAD_BUDGET (900 KiB), under the kitchen's limit on one dumpling
 * (ND_KITCHEN_MAX_DUMPLING_BYTES, the hub's 1 MiB frame less 4 KiB of envelope). A payload
 * over the limit is refused whole, at every poke, so a table of capture-controlled strings
 * (6 JSON bytes per escaped control byte) must show only what fits and count the rest. */
#define ND_PAYLOAD_BUDGET (900 * 1024)
#define ND_KITCHEN_MAX_DUMPLING_BYTES (1024 * 1024 - 4096)

/* The bytes of a span. */
static inline const uint8_t *nd_bytes(const uint8_t *arena, nd_span_t s) { return arena + s.offset; }
/* Capture time in float seconds. */
static inline double nd_time(const nd_packet_t *p) { return (double)p->timestamp_ns / 1e9; }

/* "aa:bb:cc:dd:ee:ff" (out: 18 bytes) and dotted quad (out: 16 bytes). */
void nd_mac_str(uint64_t mac, char out[18]);
void nd_ipv4_str(uint32_t ip, char out[16]);

/* A packet's flow id and direction; false when the kitchen tracks no flows. */
static inline bool nd_flow(const nd_packet_t *p, uint64_t *id, bool *from_originator) {
    if (!p->flow.is_some) return false;
    *id = p->flow.val.id;
    *from_originator = p->flow.val.direction == ND_FROM_ORIGINATOR;
    return true;
}

/* Binary state helpers: append a number (little-endian) or a length-prefixed byte string;
 * read them back with bounds checks (nd_read_bytes returns NULL past the end, or when the
 * length is over `max`). */
void nd_buf_u32(nd_buf_t *b, uint32_t v);
void nd_buf_u64(nd_buf_t *b, uint64_t v);
void nd_buf_f64(nd_buf_t *b, double v);
void nd_buf_bytes(nd_buf_t *b, const void *s, uint32_t n);
uint32_t nd_read_u32(nd_reader_t *r);
uint64_t nd_read_u64(nd_reader_t *r);
double nd_read_f64(nd_reader_t *r);
const uint8_t *nd_read_bytes(nd_reader_t *r, uint32_t max, uint32_t *n);
/* Consume `tag` (e.g. "DNSLookupChef-c-state 1\n") at the reader's start; false if absent. */
bool nd_read_tag(nd_reader_t *r, const char *tag);

/* TCP/UDP ports of a packet; false when it has neither. */
bool nd_ports(const nd_packet_t *p, uint16_t *sport, uint16_t *dport);

/* The DNS message in a packet's payload, whatever the ports (over TCP after the two-byte
 * length prefix, which must fit): returns its start and sets *len, or NULL. */
const uint8_t *nd_dns_message(const nd_packet_t *p, const uint8_t *arena, size_t *len);

/* The first question of a DNS message, as the Rust chef SDK reads it: name labels decoded as
 * UTF-8 with invalid sequences replaced by U+FFFD, joined with '.', no trailing dot,
 * NUL-terminated (at most 255 wire bytes, so `name` always fits). */
typedef struct nd_dns_question {
    bool is_response;
    uint16_t id, qtype, qclass;
    size_t name_len;
    char name[1024];
} nd_dns_question_t;
/* false when the message is shorter than a header, has no question, or the first question
 * is malformed. */
bool nd_dns_first_question(const uint8_t *msg, size_t len, nd_dns_question_t *q);

/* Append `n` bytes decoded as UTF-8 with invalid sequences replaced by U+FFFD (the
 * "maximal subpart" rule, as Rust's from_utf8_lossy and Python's errors="replace"). */
void nd_buf_utf8_lossy(nd_buf_t *b, const uint8_t *s, size_t n);

#ifdef __cplusplus
}
#endif
#endif
