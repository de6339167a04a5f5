#!/usr/bin/env python3
"""A stand-in upstream for tests/cli/upstream.sh.

No real OpenAI, Anthropic or Gemini server is reachable offline, so this one
speaks their documented wire formats (the shapes of their API references):
it checks each request the way the provider would (path, key header, version
header, body fields) and answers whole or as server-sent events.

    stub_server.py --key KEY --log FILE

prints "listening on http://127.0.0.1:PORT" when ready. The first segment of
a request's path chooses the behaviour, the rest must be the provider's path:

    /SCENARIO.TAG/v1/chat/completions                         OpenAI
    /SCENARIO.TAG/v1/messages                                 Anthropic
    /SCENARIO.TAG/v1beta/models/M:generateContent             Gemini
    /SCENARIO.TAG/v1beta/models/M:streamGenerateContent?alt=sse

SCENARIO is ok, 429 (first answer 429 with Retry-After: 1), 503 (first two
answers 503), 400, always503, stall (no answer for 60 s) or cut (the stream
stops after its first piece, connection closed). Requests are counted per
SCENARIO.TAG, so each test uses a fresh TAG. The answer's text is
"system=<system prompt> user=<last user message>", in pieces of 5 characters,
so the test sees what arrived. Every request is logged to FILE as one JSON
line: path, headers (in order), body.
"""
import argparse
import http.server
import json
import sys
import threading
import time

counts = {}
counts_lock = threading.Lock()


def pieces(text):
    return [text[i:i + 5] for i in range(0, len(text), 5)] or [""]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    # ------------------------------------------------------------ replies
    def send_json(self, status, obj, extra_headers=()):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra_headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def start_events(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def event(self, data, name=None, crlf=False):
        end = "\r\n" if crlf else "\n"
        text = (f"event: {name}{end}" if name else "") + f"data: {data}{end}{end}"
        self.wfile.write(text.encode())
        self.wfile.flush()

    def error(self, status, message, extra_headers=()):
        if self.kind == "anthropic":
            obj = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
        elif self.kind == "gemini":
            obj = {"error": {"code": status, "message": message, "status": "INVALID_ARGUMENT"}}
        else:
            obj = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
        self.send_json(status, obj, extra_headers)

    # ----------------------------------------------------------- checking
    def route(self):
        """Sets self.kind, self.stream_by_url; returns the scenario or None."""
        segments = self.path.split("/", 2)
        if len(segments) < 3:
            return None, None
        tag, rest = segments[1], "/" + segments[2]
        self.kind, self.stream_by_url = None, False
        if rest == "/v1/chat/completions":
            self.kind = "openai"
        elif rest == "/v1/messages":
            self.kind = "anthropic"
        elif rest.startswith("/v1beta/models/"):
            self.kind = "gemini"
            if rest.endswith(":streamGenerateContent?alt=sse"):
                self.stream_by_url = True
            elif not rest.endswith(":generateContent"):
                self.kind = None
        return tag, rest

    def check(self, body):
        """The provider's own checks; returns (system, user, stream) or an error message."""
        key = self.server.key
        if self.kind == "openai":
            if self.headers.get("Authorization") != f"Bearer {key}":
                return f"Incorrect API key provided: {self.headers.get('Authorization', '')[7:]}"
            messages = body.get("messages")
            if not isinstance(messages, list) or not body.get("model"):
                return "model and messages are required"
            system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
            user = [m["content"] for m in messages if m["role"] == "user"][-1]
            if body.get("stream") and body.get("stream_options") != {"include_usage": True}:
                return "expected stream_options.include_usage"
            return system, user, bool(body.get("stream"))
        if self.kind == "anthropic":
            if self.headers.get("x-api-key") != key:
                return "invalid x-api-key"
            if self.headers.get("anthropic-version") != "2023-06-01":
                return "anthropic-version header required"
            if not isinstance(body.get("max_tokens"), int):
                return "max_tokens: Field required"
            messages = body.get("messages", [])
            if any(m.get("role") not in ("user", "assistant") for m in messages):
                return "messages: roles must be user or assistant (the system prompt is a top-level field)"
            return body.get("system", ""), messages[-1]["content"], bool(body.get("stream"))
        if self.headers.get("x-goog-api-key") != key:
            return "API key not valid. Please pass a valid API key."
        contents = body.get("contents", [])
        if any(c.get("role") not in ("user", "model") for c in contents):
            return "Please use a valid role: user, model."
        system = "".join(p["text"] for p in body.get("systemInstruction", {}).get("parts", []))
        return system, contents[-1]["parts"][0]["text"], self.stream_by_url

    # ------------------------------------------------------------ answers
    def answer(self, text, stream, cut):
        parts = pieces(text)
        usage_in, usage_out = 7, len(parts)
        if self.kind == "openai":
            def chunk(delta, finish=None, usage=None, choices=True):
                c = [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []
                return json.dumps({"id": "chatcmpl-stub", "object": "chat.completion.chunk", "created": 1,
                                   "model": "stub", "choices": c, "usage": usage})
            if not stream:
                return self.send_json(200, {"id": "chatcmpl-stub", "object": "chat.completion", "created": 1,
                                            "model": "stub", "choices": [{"index": 0, "message": {
                                                "role": "assistant", "content": text}, "finish_reason": "stop"}],
                                            "usage": {"prompt_tokens": usage_in, "completion_tokens": usage_out,
                                                      "total_tokens": usage_in + usage_out}})
            self.start_events()
            self.event(chunk({"role": "assistant", "content": ""}))
            for i, p in enumerate(parts):
                self.event(chunk({"content": p}))
                if cut:
                    return
            self.event(chunk({}, "stop"))
            self.event(chunk(None, usage={"prompt_tokens": usage_in, "completion_tokens": usage_out,
                                          "total_tokens": usage_in + usage_out}, choices=False))
            self.event("[DONE]")
        elif self.kind == "anthropic":
            if not stream:
                return self.send_json(200, {"id": "msg_stub", "type": "message", "role": "assistant",
                                            "model": "stub", "content": [{"type": "text", "text": text}],
                                            "stop_reason": "end_turn", "stop_sequence": None,
                                            "usage": {"input_tokens": usage_in, "output_tokens": usage_out}})
            self.start_events()
            self.event(json.dumps({"type": "message_start", "message": {
                "id": "msg_stub", "type": "message", "role": "assistant", "content": [], "model": "stub",
                "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": usage_in, "output_tokens": 1}}}),
                "message_start")
            self.event(json.dumps({"type": "content_block_start", "index": 0,
                                   "content_block": {"type": "text", "text": ""}}), "content_block_start")
            self.wfile.write(b"event: ping\ndata: {\"type\": \"ping\"}\n\n")
            for p in parts:
                self.event(json.dumps({"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "text_delta", "text": p}}), "content_block_delta")
                if cut:
                    return
            self.event(json.dumps({"type": "content_block_stop", "index": 0}), "content_block_stop")
            self.event(json.dumps({"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                                                      "stop_sequence": None},
                                   "usage": {"output_tokens": usage_out}}), "message_delta")
            self.event(json.dumps({"type": "message_stop"}), "message_stop")
        else:
            def response(t, finish=None, usage=False):
                candidate = {"content": {"parts": [{"text": t}], "role": "model"}, "index": 0}
                if finish:
                    candidate["finishReason"] = finish
                meta = {"promptTokenCount": usage_in, "totalTokenCount": usage_in}
                if usage:
                    meta = {"promptTokenCount": usage_in, "candidatesTokenCount": usage_out,
                            "totalTokenCount": usage_in + usage_out}
                return {"candidates": [candidate], "usageMetadata": meta, "modelVersion": "stub"}
            if not stream:
                return self.send_json(200, response(text, "STOP", True))
            self.start_events()
            for i, p in enumerate(parts):
                last = i == len(parts) - 1 and not cut
                self.event(json.dumps(response(p, "STOP" if last else None, last)), crlf=True)
                if cut:
                    return

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        raw = self.rfile.read(length)
        tag, rest = self.route()
        with open(self.server.log, "a") as log:
            log.write(json.dumps({"path": self.path, "headers": list(self.headers.items()),
                                  "body": raw.decode("utf-8", "replace")}) + "\n")
        if not self.kind:
            self.kind = "openai"
            return self.error(404, f"no route {self.path}")
        with counts_lock:
            counts[tag] = n = counts.get(tag, 0) + 1
        scenario = tag.split(".")[0]
        try:
            body = json.loads(raw)
        except ValueError:
            return self.error(400, "the body is not JSON")
        checked = self.check(body)
        if isinstance(checked, str):
            return self.error(401 if "key" in checked.lower() else 400, checked)
        system, user, stream = checked
        if scenario == "429" and n == 1:
            return self.error(429, "Rate limit reached, retry after 1 s", [("Retry-After", "1")])
        if scenario == "503" and n <= 2 or scenario == "always503":
            return self.error(503, "The server is overloaded")
        if scenario == "400":
            return self.error(400, "max_tokens is too large for this model")
        if scenario == "stall":
            time.sleep(60)
            return
        self.answer(f"system={system} user={user}", stream, scenario == "cut")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--key", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.key, server.log = args.key, args.log
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
