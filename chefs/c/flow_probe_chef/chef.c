/* FlowProbeCChef: what chef API 0.2 hands a C chef, echoed as dumplings, so tests/lang-chefs.sh
 * can check the three views of one capture against each other:
 *   packet: {"pkt": {"flow": id, "o": true|false, "len": TCP payload bytes}} for every TCP
 *           packet with a flow (the flow id and direction nd_flow() reads);
 *   stream: {"chunk": {"flow", "o", "offset", "gap", "len", "last"}} for every stream chunk;
 *   flow:   {"start": id} and {"end": {"flow", "packets_o", "packets_r", "reason"}}.
 * Not a sample to copy for real work (one dumpling per packet); a probe of the C layer. */
#include "nd_chef.h"

static bool on_packet(const nd_packet_t *p, const uint8_t *arena, nd_buf_t *out) {
    (void)arena;
    uint64_t id;
    bool o;
    if (!nd_flow(p, &id, &o)) return false;
    nd_buf_printf(out, "{\"pkt\": {\"flow\": %llu, \"o\": %s, \"len\": %u}}", (unsigned long long)id,
                  o ? "true" : "false", (unsigned)p->payload.len);
    return true;
}

static bool on_stream(const nd_stream_chunk_t *c, const uint8_t *arena, nd_buf_t *out) {
    (void)arena;
    nd_buf_printf(out, "{\"chunk\": {\"flow\": %llu, \"o\": %s, \"offset\": %llu, \"gap\": %llu, \"len\": %u, \"last\": %s}}",
                  (unsigned long long)c->flow.id, c->flow.direction == ND_FROM_ORIGINATOR ? "true" : "false",
                  (unsigned long long)c->offset, (unsigned long long)c->gap_before, (unsigned)c->data.len,
                  c->last ? "true" : "false");
    return true;
}

static bool on_flow_event(const nd_flow_event_t *e, nd_buf_t *out) {
    if (e->tag == ND_FLOW_STARTED) {
        nd_buf_printf(out, "{\"start\": %llu}", (unsigned long long)e->val.started.id);
        return true;
    }
    const netdumplings_chef_types_flow_summary_t *s = &e->val.ended;
    nd_buf_printf(out, "{\"end\": {\"flow\": %llu, \"packets_o\": %llu, \"packets_r\": %llu, \"reason\": %u}}",
                  (unsigned long long)s->id, (unsigned long long)s->packets_from_originator,
                  (unsigned long long)s->packets_from_responder, (unsigned)s->end_reason);
    return true;
}

const nd_chef_t ND_CHEF = {
    .name = "FlowProbeCChef",
    .description = "Echoes flow ids, stream chunks and flow events (a probe of the C layer)",
    .on_packet = on_packet,
    .transport = (const uint8_t[]){ND_TCP},
    .transport_len = 1,
    .flow_events = true,
    .on_flow_event = on_flow_event,
    .stream_bytes = 1 << 20,
    .on_stream = on_stream,
};
