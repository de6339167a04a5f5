#!/usr/bin/python3
"""Renders a chat template with Jinja the way Hugging Face transformers does.

Usage: render_jinja.py TEMPLATE_FILE [REQUEST_JSON_FILE]

The request (read from the file, or from stdin) is a JSON object
  {"messages": [{"role": ..., "content": ...}, ...],
   "add_generation_prompt": bool,
   "bos_token": str, "eos_token": str,   (optional: omit a token the model lacks)
   "date": "26 Jul 2024"}                (what strftime_now sees as today)
and the rendered text goes to stdout as UTF-8, unchanged. If the template raises
an error (raise_exception, a missing message) the script exits with status 1 and
the message on stderr.

The request may also be a JSON list of such objects, rendered in one run (Python
and Jinja take far longer to start than to render). The output is then a JSON
list with, for each request, {"text": ...} or {"error": ...}.

The environment mirrors transformers' apply_chat_template: an immutable sandbox
with trim_blocks and lstrip_blocks, the loopcontrols extension, and the globals
raise_exception and strftime_now. strftime_now is pinned to the requested date so
that the output does not depend on the day the test runs.
"""
import datetime
import json
import sys

import jinja2
import jinja2.ext
import jinja2.sandbox


class TemplateRaised(Exception):
    pass


def raise_exception(message):
    raise TemplateRaised(message)


def render(template, request):
    """The rendered text, or raises TemplateRaised / jinja2.TemplateError."""
    today = datetime.datetime.strptime(request.get("date", "26 Jul 2024"), "%d %b %Y")
    variables = {
        "messages": request["messages"],
        "add_generation_prompt": request.get("add_generation_prompt", False),
        "strftime_now": lambda fmt: today.strftime(fmt),
    }
    for name in ("bos_token", "eos_token"):
        if name in request:
            variables[name] = request[name]
    return template.render(**variables)


def main():
    if len(sys.argv) not in (2, 3):
        sys.stderr.write(__doc__)
        return 2
    with open(sys.argv[1], encoding="utf-8") as f:
        source = f.read()
    if len(sys.argv) == 3:
        with open(sys.argv[2], encoding="utf-8") as f:
            request = json.load(f)
    else:
        request = json.load(sys.stdin)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.globals["raise_exception"] = raise_exception
    template = env.from_string(source)

    if isinstance(request, list):
        results = []
        for one in request:
            try:
                results.append({"text": render(template, one)})
            except (TemplateRaised, jinja2.TemplateError) as error:
                results.append({"error": str(error)})
        sys.stdout.buffer.write(json.dumps(results, ensure_ascii=False).encode("utf-8"))
        return 0

    try:
        text = render(template, request)
    except (TemplateRaised, jinja2.TemplateError) as error:
        sys.stderr.write("template error: %s\n" % error)
        return 1
    sys.stdout.buffer.write(text.encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
