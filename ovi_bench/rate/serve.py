"""Serving the rating app with uvicorn: loopback by default; any other address only behind an access token.

Why the token rule: the app shows a run's images and accepts votes from anyone who can reach it. On 127.0.0.1 that
is the local user; on 0.0.0.0 it is the whole network, so the URL must carry a secret (`secrets.token_urlsafe`,
generated when none is given) and the app answers 403 without it. Asking for a non-loopback address without a token
is refused before anything listens.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovi_bench.errors import OviBenchError
from ovi_bench.results.records import load_run
from ovi_bench.spec import Question, RatingSpec

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MIN_TOKEN_LENGTH = 12


class RatingServeError(OviBenchError):
    """The rating app cannot be served as asked (an address without a token, a folder that is not a run)."""


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def access_token(host: str, token: str | None, *, require_token: bool = True) -> str | None:
    """The token the app requires: the given one; a fresh one for a non-loopback host without one; None on loopback
    without one. RatingServeError for a non-loopback host when `require_token` is off."""
    if token is not None and not re.fullmatch(rf"[A-Za-z0-9_.~-]{{{MIN_TOKEN_LENGTH},}}", token):
        raise RatingServeError(
            f"--token must be at least {MIN_TOKEN_LENGTH} characters of A-Z, a-z, 0-9, '-', '_', '.', '~' (it travels "
            "in URLs and a cookie). Leave it out to have a strong one generated."
        )
    if is_loopback(host):
        return token or None
    if not require_token:
        raise RatingServeError(
            f"refusing to serve the rating app on {host} without an access token: anyone on the network could "
            "vote. Drop --no-token (a token is then generated and printed), or serve on 127.0.0.1."
        )
    return token or secrets.token_urlsafe(24)


def rating_defaults(run_dir: str | Path) -> RatingSpec:
    """The run's [rating] table as its results.json records the spec; RatingSpec's defaults when it has none."""
    run = load_run(run_dir)
    table = run.provenance.get("spec", {}).get("rating")
    return RatingSpec.model_validate(table) if isinstance(table, dict) else RatingSpec()


def app_url(host: str, port: int, token: str | None) -> str:
    """The URL a rater opens: the machine's name when listening on every interface, the token in the query."""
    shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


@dataclass(frozen=True)
class ServeSettings:
    """What `ovi-bench rate` serves: the study (question, sampling) and where (address, port, token)."""

    question: Question
    attention_every: int
    active: bool
    seed: int
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str | None = None
    require_token: bool = True


def serve(run_dir: str | Path, settings: ServeSettings, announce: Callable[[str], Any] = print) -> None:
    """Serve the rating app until interrupted. Every problem with the folder or the address is reported before
    anything listens; `announce` gets the URL to open (with the token when there is one)."""
    import uvicorn

    from ovi_bench.rate.app import create_app

    token = access_token(settings.host, settings.token, require_token=settings.require_token)
    app = create_app(
        run_dir,
        question=settings.question,
        attention_every=settings.attention_every,
        active=settings.active,
        seed=settings.seed,
        token=token,
    )
    announce(f"rating app for {Path(run_dir)}: open {app_url(settings.host, settings.port, token)}")
    announce("votes are stored as they are cast; stop with Ctrl-C and start again to resume.")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
