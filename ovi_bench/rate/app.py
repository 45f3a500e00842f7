"""The rating web app (`ovi-bench rate`): a Starlette application over the run's ratings store.

HTTP API (every route requires the access token when the app has one: `?token=` in the URL, or the cookie the page
response sets from it; without it a request gets 403):

- `GET /` — the rating page (ovi_bench.rate.page).
- `GET /api/trial?rater=NAME` — the rater's next trial: `{"trial_id", "prompt", "question", "question_text",
  "progress"}`, or `{"done": true, "progress"}` when the rater has seen every pair. A trial shown but not answered
  is shown again (after a reload or a server restart). Prior names, image paths and the trial's kind are never
  sent: the study is blind.
- `POST /api/judgement` with the JSON body `{"trial_id", "rater", "choice": "left"|"right"|"tie"|"skip",
  "response_ms"}` — stores the vote and answers `{"stored": true|false, "progress"}` only after the vote is
  committed to disk; `stored` is false when that trial was answered already (a double click or a resent request is
  stored once). 400 for a malformed body, 404 for a trial never served, 409 for another rater's trial.
- `GET /api/progress?rater=NAME` — `{"rater", "judged", "remaining", "total"}`.
- `GET /image/{trial_id}/{side}` — a trial's image, `side` "left" or "right". The file is looked up by the trial in
  the database, resolved, and served only when it lies inside the run's `images/` folder (symlinks out of it give
  403); a canary's broken image is made in memory. Nothing from the request is ever used as a path.

Every vote gets `source` = the app's `source` ("local"); only the simulated raters' in-process app says "simulated":
the HTTP API cannot choose it.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np
from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ovi_bench.errors import DataError, OviBenchError
from ovi_bench.io import png_bytes
from ovi_bench.rate.judgements import CHOICES, QUESTIONS
from ovi_bench.rate.page import render_page
from ovi_bench.rate.sampling import PairSampler, judgement_keys, load_items
from ovi_bench.rate.storage import (
    UnknownTrialError,
    connect,
    find_trial,
    read_judgements,
    record_vote,
    serve_trial,
)
from ovi_bench.rate.trials import SIDES, Trial
from ovi_bench.spec import Question
from ovi_bench.text import display_text_problem

TOKEN_COOKIE: Final = "ovi_bench_token"
MAX_RATER_LENGTH: Final = 100
MAX_RESPONSE_MS: Final = 24 * 3600 * 1000
"""A response time above a day is a page left open, stored as a day (the analysis may drop long ones)."""
IMAGES_FOLDER: Final = "images"

_API_HEADERS: Final = {"Cache-Control": "no-store"}


class TokenGate:
    """ASGI middleware: every HTTP request carries the access token (query `token` or the cookie), else 403. A
    request that brings it in the query gets the cookie, so the page's images and API calls carry it too."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        offered = request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
        if not secrets.compare_digest(offered.encode(), self.token.encode()):
            response = PlainTextResponse(
                "403 forbidden: open the URL with the access token that `ovi-bench rate` printed.",
                status_code=403,
            )
            await response(scope, receive, send)
            return
        if request.query_params.get("token") is None:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                cookie = f"{TOKEN_COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                message.setdefault("headers", []).append((b"set-cookie", cookie.encode("latin-1")))
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def broken_copy(image_bytes: bytes, seed: str) -> bytes:
    """A canary's broken image: the pixels of a real image shuffled and a band of it blanked to grey, so no
    attentive rater prefers it, whatever the question. Seeded by the trial id: the same trial shows the same copy."""
    with Image.open(io.BytesIO(image_bytes)) as image:
        pixels = np.asarray(image.convert("RGB")).copy()
    height, width, _ = pixels.shape
    generator = np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:16], 16))
    flat = pixels.reshape(-1, 3)
    pixels = flat[generator.permutation(len(flat))].reshape(height, width, 3)
    band = max(1, height // 3)
    top = int(generator.integers(0, height - band + 1))
    pixels[top : top + band] = 128
    return png_bytes(Image.fromarray(pixels))


def _json_error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=_API_HEADERS)


async def _answer_rater(request: Request, answer: Callable[[str], dict[str, Any]]) -> Response:
    """`answer(rater)` (run in the thread pool: it reads the database) for the `rater` query parameter, as JSON."""
    rater = _checked_rater(request.query_params.get("rater", ""))
    if isinstance(rater, JSONResponse):
        return rater
    return JSONResponse(await run_in_threadpool(answer, rater), headers=_API_HEADERS)


def _checked_rater(rater: object) -> str | JSONResponse:
    if not isinstance(rater, str) or not rater.strip():
        return _json_error("give your name (the `rater` parameter).", 400)
    rater = rater.strip()
    problem = display_text_problem(rater)
    if problem is None and len(rater) > MAX_RATER_LENGTH:
        problem = f"is longer than {MAX_RATER_LENGTH} characters"
    if problem is not None:
        return _json_error(f"the name {problem}.", 400)
    return rater


class RatingApp:
    """The routes of one app: the run folder, the question asked, the sampler and the source stamped on votes."""

    def __init__(
        self,
        run_dir: Path,
        *,
        question: Question,
        attention_every: int,
        active: bool,
        seed: int,
        source: str,
    ) -> None:
        self.run_dir = run_dir
        self.images_root = (run_dir / IMAGES_FOLDER).resolve()
        self.question = question
        self.sampler = PairSampler(
            load_items(run_dir), attention_every=attention_every, active=active, seed=seed
        )
        self.source = source

    def progress(self, rater: str) -> dict[str, Any]:
        judgements = read_judgements(self.run_dir)
        own = judgements[(judgements["rater"] == rater) & (judgements["question"] == self.question)]
        seen = set(judgement_keys(own[own["kind"] != "canary"]))
        total = len(self.sampler.items)
        remaining = sum(item.key not in seen for item in self.sampler.items)
        return {"rater": rater, "judged": len(own), "remaining": remaining, "total": total}

    def _next_trial(self, rater: str) -> dict[str, Any]:
        def sample(judgements: Any) -> Trial | None:
            return self.sampler.next_trial(rater, self.question, judgements)

        trial = serve_trial(self.run_dir, rater, self.question, sample)
        progress = self.progress(rater)
        if trial is None:
            return {"done": True, "progress": progress}
        return {
            "done": False,
            "trial_id": trial.trial_id,
            "prompt": trial.prompt,
            "question": self.question,
            "question_text": QUESTIONS[self.question],
            "progress": progress,
        }

    async def page(self, request: Request) -> Response:
        nonce = secrets.token_urlsafe(16)
        policy = (
            f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; img-src 'self'; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        )
        headers = {
            "Content-Security-Policy": policy,
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        }
        return HTMLResponse(render_page(nonce), headers=headers)

    async def trial(self, request: Request) -> Response:
        return await _answer_rater(request, self._next_trial)

    async def judgement(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _json_error("the body is not JSON.", 400)
        if not isinstance(body, dict):
            return _json_error("the body is not a JSON object.", 400)
        rater = _checked_rater(body.get("rater"))
        if isinstance(rater, JSONResponse):
            return rater
        trial_id, choice, response_ms = body.get("trial_id"), body.get("choice"), body.get("response_ms")
        if not isinstance(trial_id, str) or not trial_id:
            return _json_error("give the trial_id of the trial answered.", 400)
        if choice not in CHOICES:
            return _json_error(f"choice must be one of {', '.join(CHOICES)}.", 400)
        if isinstance(response_ms, bool) or not isinstance(response_ms, (int, float)) or response_ms < 0:
            return _json_error("response_ms must be a number of milliseconds ≥ 0.", 400)
        return await run_in_threadpool(
            self._store, trial_id, rater, str(choice), min(int(response_ms), MAX_RESPONSE_MS)
        )

    def _store(self, trial_id: str, rater: str, choice: str, response_ms: int) -> Response:
        with connect(self.run_dir) as connection:
            trial = find_trial(connection, trial_id)
        if trial is None:
            return _json_error(f"trial {trial_id!r} was never served; ask for a trial first.", 404)
        if trial.rater != rater:
            return _json_error("that trial was served to another rater.", 409)
        try:
            stored = record_vote(self.run_dir, trial_id, choice, response_ms, self.source)
        except UnknownTrialError as error:
            return _json_error(str(error), 404)
        return JSONResponse({"stored": stored, "progress": self.progress(rater)}, headers=_API_HEADERS)

    async def progress_route(self, request: Request) -> Response:
        return await _answer_rater(request, self.progress)

    async def image(self, request: Request) -> Response:
        trial_id, side = request.path_params["trial_id"], request.path_params["side"]
        if side not in SIDES:
            return PlainTextResponse("404 not found", status_code=404)
        return await run_in_threadpool(self._image, trial_id, side)

    def _image(self, trial_id: str, side: str) -> Response:
        with connect(self.run_dir) as connection:
            trial = find_trial(connection, trial_id)
        if trial is None:
            return PlainTextResponse("404 not found", status_code=404)
        path = self.image_path(trial.image(side))
        if isinstance(path, Response):
            return path
        data = path.read_bytes()
        headers = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff"}
        if trial.is_broken(side):
            try:
                data = broken_copy(data, trial.trial_id)
            except (UnidentifiedImageError, OSError, ValueError):
                return PlainTextResponse("404 not found", status_code=404)
            return Response(data, media_type="image/png", headers=headers)
        media_type = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
        return Response(data, media_type=media_type.get(path.suffix.lower(), "image/png"), headers=headers)

    def image_path(self, relative: str) -> Path | Response:
        """The file a stored run-relative image path names, resolved (symlinks followed); 403 when it lies outside
        the run's images folder, 404 when it is not a file."""
        try:
            path = (self.run_dir / relative).resolve(strict=True)
        except (OSError, RuntimeError, ValueError):
            return PlainTextResponse("404 not found", status_code=404)
        if not path.is_relative_to(self.images_root) or path == self.images_root:
            return PlainTextResponse("403 forbidden: not an image of this run", status_code=403)
        if not path.is_file():
            return PlainTextResponse("404 not found", status_code=404)
        return path


def create_app(
    run_dir: str | Path,
    *,
    question: Question = "overall",
    attention_every: int = 10,
    active: bool = False,
    seed: int = 0,
    token: str | None = None,
    source: str = "local",
) -> Starlette:
    """The rating app for a finished run folder. DataError (naming the fix) when the folder is not a finished run
    with two priors' images, or its ratings database cannot be read. `token`: when set, every request must carry it.
    `source`: what every stored vote is marked with ("local"; the simulated raters' app passes "simulated")."""
    folder = Path(run_dir).expanduser().resolve()
    if question not in QUESTIONS:
        raise DataError(f"question {question!r} is not one of {', '.join(QUESTIONS)}.")
    rating = RatingApp(
        folder, question=question, attention_every=attention_every, active=active, seed=seed, source=source
    )
    with connect(folder):  # a damaged ratings.sqlite is reported now, not at the first vote
        pass
    routes = [
        Route("/", rating.page),
        Route("/api/trial", rating.trial),
        Route("/api/judgement", rating.judgement, methods=["POST"]),
        Route("/api/progress", rating.progress_route),
        Route("/image/{trial_id}/{side}", rating.image),
    ]

    async def store_error(request: Request, error: Exception) -> Response:
        return _json_error(str(error), 503)

    app = Starlette(routes=routes, exception_handlers={OviBenchError: store_error})
    if token:
        app.add_middleware(TokenGate, token=token)
    return app
