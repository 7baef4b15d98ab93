"""A chat-completions server on 127.0.0.1 for the teacher's tests: real HTTP, scripted answers.

It speaks the part of the OpenAI protocol the teacher uses (`POST /v1/chat/completions`, a
ChatCompletion body with `usage`, JSON errors with `retry-after-ms` so the client retries at
once) and logs every hit with the request body and what it answered. Repliers script it: a
well-behaved model (`first_offered`), one whose texts name its action (`naming_the_action`),
random faults (`Flaky`), and outages: every request failing (`always`), an action outside the
valid list (`outside_the_list`), a server that accepts the request and never answers
(`silent`), one that fails its first hits and then heals (`FailFirst`), and one that fails
chosen prompts until told it is well (`Outage`).
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    """What the server does with one request: an HTTP status and, for 200, the message text;
    `silent` keeps the connection open without a word until the server shuts down."""

    status: int
    content: str | None = None
    outcome: str = "ok"
    silent: bool = False


@dataclass(frozen=True)
class Hit:
    body: dict
    outcome: str
    content: str | None


def offered_actions(body: dict) -> list[str]:
    """The enum of actions in the request's Structured Outputs schema."""
    schema = body["response_format"]["json_schema"]["schema"]
    return schema["properties"]["suggested_action"]["enum"]


QUIET_TEXTS = {
    "diagnosis": "The agent must notice what lies ahead.",
    "hint": "Keep the mission in mind.",
    "contrast": "The student's action does not help here.",
}


def answer_json(action: str, **texts: str) -> str:
    """A reply choosing `action`, with texts that name no action unless `texts` replace them."""
    return json.dumps({"suggested_action": action, **QUIET_TEXTS, **texts})


def first_offered(body: dict) -> Reply:
    """A well-behaved model: a valid answer choosing the first action it is offered."""
    return Reply(200, answer_json(offered_actions(body)[0]))


def naming_the_action(body: dict) -> Reply:
    """A model that gives its answer away: the first action offered, named in every text."""
    action = offered_actions(body)[0]
    texts = {
        "diagnosis": f"You should {action} now.",
        "hint": f"{action.capitalize()}.",
        "contrast": f"'{action}' beats the student's action.",
    }
    return Reply(200, answer_json(action, **texts), "names action")


@dataclass
class Flaky:
    """Fails a `rate` of hits, drawn from a seeded stream: 429, 500, malformed JSON, or an
    action outside the list; answers like `first_offered` otherwise."""

    seed: int
    rate: float = 0.3
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def __call__(self, body: dict) -> Reply:
        if self.rng.random() >= self.rate:
            return first_offered(body)
        fault = self.rng.choice(["429", "500", "malformed", "outside"])
        if fault == "429":
            return Reply(429, outcome=fault)
        if fault == "500":
            return Reply(500, outcome=fault)
        if fault == "malformed":
            return Reply(200, answer_json(offered_actions(body)[0])[:40], outcome=fault)
        return Reply(200, answer_json("jump over the wall"), outcome=fault)


def always(status: int) -> Callable[[dict], Reply]:
    """A server that fails every request with `status` (a 500: down for good)."""
    return lambda body: Reply(status, outcome=str(status))


def outside_the_list(body: dict) -> Reply:
    """A model that always answers an action outside the valid list, the repair included."""
    return Reply(200, answer_json("jump over the wall"), outcome="outside")


def silent(body: dict) -> Reply:
    """A server that accepts each request and never answers it."""
    return Reply(0, outcome="silent", silent=True)


@dataclass
class FailFirst:
    """Fails its first `n` hits with `status`, then answers like `first_offered`."""

    n: int
    status: int = 500
    seen: int = 0

    def __call__(self, body: dict) -> Reply:
        self.seen += 1
        if self.seen <= self.n:
            return Reply(self.status, outcome=str(self.status))
        return first_offered(body)


def user_prompt(body: dict) -> str:
    """The question of a request (its first user message)."""
    return body["messages"][1]["content"]


@dataclass
class Outage:
    """Fails (500) every request whose question contains one of `failing`, or every request
    when `failing` is None, until `down` is set False; answers like `first_offered` otherwise."""

    failing: set[str] | None = None
    down: bool = True

    def __call__(self, body: dict) -> Reply:
        question = user_prompt(body)
        hit = self.failing is None or any(text in question for text in self.failing)
        if self.down and hit:
            return Reply(500, outcome="500")
        return first_offered(body)


def _words(text: str | None) -> int:
    return len((text or "").split())


def completion(body: dict, content: str) -> dict:
    """A ChatCompletion body; tokens are counted as words, enough to check the sums."""
    prompt_tokens = sum(_words(message.get("content")) for message in body["messages"])
    completion_tokens = _words(content)
    return {
        "id": "chatcmpl-local",
        "object": "chat.completion",
        "created": 0,
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class ChatServer:
    """A threaded HTTP server bound to a free loopback port; `replier` scripts its answers."""

    def __init__(self, replier: Callable[[dict], Reply] = first_offered) -> None:
        self.replier = replier
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _reply(self, body: dict) -> Reply:
        with self._lock:
            reply = self.replier(body)
            self.hits.append(Hit(body, reply.outcome, reply.content))
        return reply

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length))
                reply = server._reply(body)
                if reply.silent:
                    server._closing.wait(timeout=600)
                    self.close_connection = True
                    return
                if reply.status == 200:
                    self._send(200, completion(body, reply.content))
                else:
                    error = {"message": f"scripted {reply.status}", "type": "server_error"}
                    self._send(reply.status, {"error": error})

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("retry-after-ms", "1")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the tests read the hit log instead."""

        return Handler
