"""The program Ray Serve runs as its HAProxy binary: Ray's configuration made loopback-safe.

With ``serve_ingress = "haproxy"`` Ray Serve routes endpoint traffic through HAProxy, in
front of each replica's own port (``RAY_SERVE_ENABLE_HA_PROXY``): no Python proxy on the
request path. Ray writes HAProxy's configuration from a fixed template that binds a stats
page and a Prometheus exporter on every interface, makes its admin socket world-writable,
answers 502/503/504 with a plain-text 500 and logs every request. Ray lets one setting name
the HAProxy binary (``RAY_SERVE_HAPROXY_BINARY_PATH``); the launcher points it at this
program, which rewrites the configuration Ray passes with ``-f`` (:func:`loopback_safe`)
and then becomes the real HAProxy (``exec``, same pid, same command line as Ray expects):

- the stats page and the Prometheus exporter are removed (Ray reads its statistics through
  the admin socket), so the only listener is Serve's HTTP frontend on the serve host;
- the admin socket is ``mode 600`` (and its directory ``0700``);
- no access log: one line per request is CPU the replicas need;
- each replica (server line) takes at most ``maxconn`` requests at once and keeps at most
  ``maxqueue`` waiting (for the backend: ``maxqueue`` times its replicas, checked as a request
  arrives, with some slack: :func:`_queue_bound`); once that queue was full, for
  ``overload_hold_s`` only ``overload_inflight`` per replica (:func:`_shedding_lines`);
  beyond that HAProxy answers at once, without reaching Python:
  ``503``, ``Retry-After`` and the JSON ``message``/``reason`` of the platform's refusals,
  naming the endpoint; 502/504 are JSON too, 404 names the URL form of endpoints;
- ``timeout server`` is the platform's request timeout, and the replicas neither time
  requests themselves nor watch for callers that leave (:data:`DIRECT_CALL_LINES`);
- on a worker node (option ``bind_host``), the frontends listen on the node's own address:
  Serve has one HTTP host for every node.

It also asks the kernel to stop HAProxy when the Ray actor that started it dies
(``PR_SET_PDEATHSIG``), so that no HAProxy outlives its Ray node.

The launcher copies this file behind a ``#!<python> -IS`` line into the node's temp dir
(:func:`loopml.serving.ingress.install_exec`), so it runs on the standard library alone:
keep it free of other imports. Its options come as JSON in ``LOOPML_HAPROXY``.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import signal
import sys

OPTIONS_ENV = "LOOPML_HAPROXY"
PR_SET_PDEATHSIG = 1
REASON = "overloaded"
_SERVER = re.compile(r"^(\s+server\s+\S+\s+\S+)(.*)$")
_BIND = re.compile(r"^(\s+bind\s+)\S+:(\d+)(.*)$")
_ACL_PATH = re.compile(r"^\s+acl\s+is_(\S+)\s+path\s+(/\S*)\s*$")
_DROPPED_SECTIONS = ("frontend prometheus", "listen stats")
_DROPPED_LINES = ("log ", "log-format", "option httplog", "option log-health-checks")
_NOT_FOUND = {"message": "no endpoint answers at this path: endpoints are at /<project>/<endpoint>",
              "reason": "not_found"}


def loopback_safe(config: str, options: dict, error_dir: str) -> tuple[str, dict[str, bytes]]:
    """Ray's HAProxy ``config`` made safe (see the module docstring), and the error files it
    names (``{path: raw HTTP answer}``), each to be written under ``error_dir``.

    ``options``: ``maxconn`` and ``maxqueue`` per replica, ``timeout_server_s``,
    ``retry_after_s``, and optionally ``overload_inflight`` (per replica), ``overload_hold_s``
    and ``bind_host``."""
    prefixes = dict(match.groups() for line in config.splitlines() if (match := _ACL_PATH.match(line)))
    servers = _servers_per_backend(config)
    files: dict[str, bytes] = {}
    out: list[str] = []
    section = ""
    for line in config.splitlines():
        if line and not line[0].isspace():
            section = line.strip()
            if section.startswith(_DROPPED_SECTIONS):
                continue
            out.append(line)
            if section == "defaults":
                out.append(f"    timeout server {_seconds(options['timeout_server_s'])}")
                out.extend(_error_lines(files, error_dir, "default", None, options))
            elif section.startswith("backend ") and section != "backend default_backend":
                backend = section.split(None, 1)[1]
                prefix = prefixes.get(backend)  # Ray names a backend's ACL is_<backend>
                count = max(1, servers.get(backend, 1))
                out.extend(_error_lines(files, error_dir, backend, (prefix, count), options))
                out.extend(_shedding_lines(options, count))
                out.extend(DIRECT_CALL_LINES)
            continue
        if section.startswith(_DROPPED_SECTIONS):
            continue
        stripped = line.strip()
        if stripped.startswith(_DROPPED_LINES) or stripped.startswith(("errorfile ", "timeout server")):
            continue
        if stripped.startswith("stats socket "):
            line = re.sub(r"\bmode\s+\d+", "mode 600", line)
        elif section.startswith("frontend ") and options.get("bind_host") and (match := _BIND.match(line)):
            host = options["bind_host"]
            line = f"{match.group(1)}{f'[{host}]' if ':' in host else host}:{match.group(2)}{match.group(3)}"
        elif section == "backend default_backend" and stripped.startswith("http-request return status 404"):
            line = f"    http-request return status 404 content-type application/json string {_quoted(_NOT_FOUND)}"
        elif section.startswith("backend ") and (match := _SERVER.match(line)) and " backup" not in line:
            line = f"{match.group(1)} maxconn {options['maxconn']} maxqueue {_queue_bound(options)}{match.group(2)}"
        out.append(line)
    return "\n".join(out) + "\n", files


# Set on every request to an endpoint, over whatever the caller sent: HAProxy bounds each
# request's time (``timeout server``, a JSON 504) and the replica's model call cannot be
# interrupted while it computes, so the replica need not watch for the caller going away or
# time the request itself. Without either, Serve's direct ingress awaits the endpoint's
# handler at once instead of running it as a task beside a disconnect watcher under
# ``asyncio.wait`` (two tasks and a wait per request; bench/serving.py measures the gain).
DIRECT_CALL_LINES = ("    http-request set-header x-request-disconnect-disabled ?1",
                     "    http-request set-header x-request-timeout-seconds 0")


def _queue_bound(options: dict) -> int:
    """Requests waiting for one replica before the backend refuses: ``maxqueue``, plus one per
    request the replica runs. HAProxy frees a replica's slot a moment after the answer left,
    so a caller that sends its next request at once can find its previous one still counted:
    without that slack a closed loop of ``maxconn + maxqueue`` callers was refused (measured:
    the queue peaked at ``maxqueue + 1``)."""
    return int(options["maxqueue"]) + int(options["maxconn"])


def _shedding_lines(options: dict, replicas: int) -> list[str]:
    """A backend's refusals (the 503 error file): at once when its queue is full; and, for
    ``overload_hold_s`` after it last was, as soon as ``overload_inflight`` requests per
    replica are in flight (running or waiting). Callers that only keep the replicas busy (a
    closed loop of up to ``maxconn + maxqueue`` per replica) never fill the queue, so they are
    never refused; a load beyond capacity fills it at once, and from then on admitted requests
    wait behind a few others, not behind a full queue. A server's own queue overflows into the
    backend's, which has no bound of its own and is left only after ``timeout queue``: hence
    the check as a request arrives (``be_conn`` counts the arriving request too)."""
    full = _queue_bound(options) * replicas
    hold = _seconds(options.get("overload_hold_s", 10))
    inflight = int(options.get("overload_inflight", 2)) * replicas
    return [
        f"    stick-table type integer size 1 expire {hold} store gpc0_rate({hold})",
        "    http-request track-sc2 int(0)",
        f"    http-request sc-inc-gpc0(2) if {{ queue() ge {full} }}",
        f"    http-request deny deny_status 503 if {{ queue() ge {full} }}",
        f"    http-request deny deny_status 503 if {{ sc2_gpc0_rate gt 0 }} {{ be_conn() gt {inflight} }}",
    ]


def _servers_per_backend(config: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    backend = None
    for line in config.splitlines():
        if line and not line[0].isspace():
            backend = line.split(None, 1)[1] if line.startswith("backend ") else None
        elif backend and _SERVER.match(line) and " backup" not in line:
            counts[backend] = counts.get(backend, 0) + 1
    return counts


def _error_lines(files: dict[str, bytes], error_dir: str, name: str, endpoint: tuple[str | None, int] | None,
                 options: dict) -> list[str]:
    """``errorfile`` lines for 502/503/504 of section ``name``, their files added to ``files``."""
    retry = int(options["retry_after_s"])
    prefix, count = endpoint if endpoint else (None, 1)
    where = f"endpoint {prefix}" if prefix else "the endpoint"
    limit = (int(options["maxconn"]) + int(options["maxqueue"])) * count
    answers = {
        502: ("Bad Gateway", {"message": f"{where} could not be reached: retry after {retry} s", "reason": "unavailable"}),
        503: ("Service Unavailable", {"message": f"{where} is at its limit of {limit} requests in flight: "
                                                f"retry after {retry} s", "reason": REASON}),
        504: ("Gateway Timeout", {"message": f"{where} did not answer within {_seconds(options['timeout_server_s'])}: "
                                             "retry, or send a smaller request", "reason": "timeout"}),
    }
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    lines = []
    for status, (text, body) in answers.items():
        path = os.path.join(error_dir, f"{safe}.{status}.http")
        files[path] = _raw_answer(status, text, body, retry if status in (502, 503) else None)
        lines.append(f"    errorfile {status} {path}")
    return lines


def _raw_answer(status: int, text: str, body: dict, retry_after_s: int | None) -> bytes:
    payload = json.dumps(body).encode()
    head = [f"HTTP/1.1 {status} {text}", "content-type: application/json", f"content-length: {len(payload)}",
            "cache-control: no-cache"]
    if retry_after_s is not None:
        head.append(f"retry-after: {retry_after_s}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + payload


def _quoted(body: dict) -> str:
    """``body`` as one HAProxy double-quoted string argument."""
    return '"' + json.dumps(body).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _seconds(value: float) -> str:
    return f"{max(1, int(round(float(value) * 1000)))}ms"


def rewrite(path: str, options: dict) -> None:
    """Rewrite the configuration file at ``path`` in place (``0600``), its error files beside it."""
    directory = os.path.dirname(path)
    with open(path, encoding="utf-8") as file:
        config, files = loopback_safe(file.read(), options, directory)
    for name, content in {**files, path: config.encode()}.items():
        temporary = f"{name}.{os.getpid()}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(content)
        os.replace(temporary, name)


def _private_dirs(options: dict) -> None:
    for directory in options.get("private_dirs", []):
        for root, dirs, _ in os.walk(directory):
            os.chmod(root, 0o700)
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o700)


def _die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: `loopml down` stops the Ray node that starts it
        pass


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = json.loads(os.environ[OPTIONS_ENV])
    if "-f" in argv:
        rewrite(argv[argv.index("-f") + 1], options)
    _private_dirs(options)
    _die_with_parent()
    binary = options["binary"]
    os.execv(binary, [binary, *argv])


if __name__ == "__main__":
    main()
