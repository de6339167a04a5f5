/*
 * A parser for server-sent events (the WHATWG "text/event-stream" format), fed
 * bytes as they arrive, in pieces of any size:
 *
 *     event: content_block_delta          a field: name, ':', value (one leading
 *     data: {"type": ...}                 space dropped); lines end with LF, CRLF
 *     : a comment                         or CR; ':' starts a comment; several
 *                                         data lines are joined with '\n';
 *     (blank line)                        a blank line dispatches the event.
 *
 * An event without data lines is not dispatched, and neither is a last event
 * the stream ends before its blank line: as the format says, it is incomplete.
 */
#ifndef PLM_ROUTING_SSE_H
#define PLM_ROUTING_SSE_H

#include <stdbool.h>
#include <stddef.h>

/* Receives one event: its type ("message" when the stream gave none) and its
 * data (NUL-terminated). Returns PLM_OK, or any other value, which stops the
 * parser and is returned by sse_feed from then on. */
typedef int (*sse_event_fn)(void *user, const char *event, const char *data, size_t len);

/* The largest event (its lines together) accepted; beyond, PLM_ERR_LIMIT. */
#define SSE_MAX_EVENT_BYTES (16u << 20)

struct sse_parser {
    char *line; /* the line being assembled, without its end */
    size_t line_len, line_cap;
    char *data; /* the event's data lines so far, each followed by '\n' */
    size_t data_len, data_cap;
    char event[64];  /* the event's type, or "" */
    bool has_data;   /* a data line was seen (possibly empty) */
    bool after_cr;   /* the last byte was a CR: an LF right after it ends nothing */
    bool first_line; /* the next line is the stream's first (which may start with a BOM) */
    int status;      /* the first failure; once set, feeding does nothing */
    sse_event_fn on_event;
    void *user;
};

void sse_init(struct sse_parser *parser, sse_event_fn on_event, void *user);
/* Parses bytes; returns PLM_OK or the first failure (the callback's value, or
 * PLM_ERR_LIMIT/PLM_ERR_NOMEM), which every later call returns too. */
int sse_feed(struct sse_parser *parser, const char *bytes, size_t n);
void sse_free(struct sse_parser *parser);

#endif
