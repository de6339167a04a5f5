/*
 * The server's request body parser (src/server/request.h) on arbitrary bytes.
 * Input: one byte choosing the route (even: /v1/chat/completions, odd:
 * /v1/completions), then the body. An accepted request must hold what the
 * header promises; a refused one an HTTP 400 error with a message.
 */
#include "fuzz_common.h"

#include "server/request.h"

#include <string.h>

static void check_request(const struct api_request *req)
{
    if (req->kind == API_CHAT) {
        if (req->n_messages < 1 || !req->messages)
            fuzz_fail("a chat request without messages was accepted");
        for (int i = 0; i < req->n_messages; i++) {
            fuzz_touch(req->messages[i].role, strlen(req->messages[i].role));
            fuzz_touch(req->messages[i].content, strlen(req->messages[i].content));
        }
    } else if (req->prompt) {
        fuzz_touch(req->prompt, strlen(req->prompt));
    }
    if (req->n_stop < 0 || req->n_stop > REQUEST_MAX_STOP)
        fuzz_fail("stop string count out of range");
    for (int i = 0; i < req->n_stop; i++)
        fuzz_touch(req->stop[i], strlen(req->stop[i]));
    if (req->top_logprobs < 0 || req->top_logprobs > REQUEST_MAX_TOP_LOGPROBS)
        fuzz_fail("top_logprobs out of range");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum api_kind kind = data[0] % 2 ? API_COMPLETION : API_CHAT;
    struct api_request req;
    struct api_error err;
    memset(&err, 0, sizeof err);
    if (request_parse((const char *)data + 1, size - 1, kind, &req, &err)) {
        check_request(&req);
        request_free(&req);
    } else if (err.status != 400 || !err.message[0] ||
               !memchr(err.message, '\0', sizeof err.message)) {
        fuzz_fail("a refused request has no 400 error with a message");
    }
    return 0;
}
