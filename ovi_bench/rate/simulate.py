"""Simulated raters: Bradley–Terry voters who use the rating app's HTTP API, so that `ovi-bench human` has data
offline (the smoke run's rating session) and the whole path from page request to stored row is exercised.

Each rater (simulated-1, simulated-2, ...) asks `GET /api/trial` and answers `POST /api/judgement`, through
Starlette's in-process `TestClient` (no socket). A rater "sees" the two images of its trial (looked up in the store by
the trial id, as a person would look at them) and judges them by their utility: the run's per-image score of the
`utility` metric, standardised over the run's images (negated for a metric where lower is better). It answers left
when u_left - u_right + noise > tie_margin, right when < -tie_margin, tie otherwise; the noise is logistic with scale
`noise`, so P(left beats right, no tie margin) = 1 / (1 + exp(-(u_left - u_right) / noise)): a Bradley–Terry rater.
A canary's broken image has the lowest utility, so canaries are answered correctly.

The votes are stored with `source` = "simulated": the app used here is created with that source; the app that
`ovi-bench rate` serves stamps "local" and the HTTP API cannot change it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ovi_bench.errors import DataError
from ovi_bench.rate.storage import connect, find_trial, read_judgements
from ovi_bench.rate.trials import Trial
from ovi_bench.results.records import load_run
from ovi_bench.spec import Question, RatingSimulationSpec
from ovi_bench.text import did_you_mean

SIMULATED_SOURCE = "simulated"


def rater_name(number: int) -> str:
    return f"simulated-{number}"


def image_utilities(run_dir: str | Path, metric: str) -> dict[str, float]:
    """Image path -> standardised utility (mean 0, standard deviation 1 over the run's images; higher is better).
    DataError with a did-you-mean when `metric` is not a per-image metric of the run."""
    run = load_run(run_dir)
    scores = run.scores
    metrics = sorted({str(name) for name in scores["metric"].unique()}) if len(scores) else []
    if metric not in metrics:
        raise DataError(
            f"the simulated raters' utility {metric!r} is not a per-image metric of {run.path} (it has: "
            f"{', '.join(metrics) or 'none'}).{did_you_mean(metric, metrics)} Set [rating.simulation] utility, or "
            "--utility, to one of them."
        )
    rows = scores[
        (scores["metric"] == metric) & scores["score"].notna() & (scores["image"].astype(str) != "")
    ]
    per_image = rows.groupby("image")["score"].mean()
    if per_image.empty:
        raise DataError(
            f"{run.path} has no score of {metric!r} for any image; choose another utility metric."
        )
    try:
        higher_is_better = run.higher_is_better(metric)
    except DataError:
        higher_is_better = True  # a run without recorded directions: scores are read as they are
    spread = float(per_image.std(ddof=0))
    standardised = (per_image - per_image.mean()) / (spread if spread > 0 else 1.0)
    if not higher_is_better:
        standardised = -standardised
    return {str(image): float(value) for image, value in standardised.items()}


def bradley_terry_vote(
    left: float, right: float, *, noise: float, tie_margin: float, generator: np.random.Generator
) -> str:
    """The choice of a Bradley–Terry rater between utilities `left` and `right` (logistic noise of scale `noise`)."""
    uniform = float(generator.uniform(1e-12, 1 - 1e-12))
    difference = left - right + noise * math.log(uniform / (1 - uniform))
    if difference > tie_margin:
        return "left"
    if difference < -tie_margin:
        return "right"
    return "tie"


def _utility(trial: Trial, side: str, utilities: dict[str, float], lowest: float) -> float:
    if trial.is_broken(side):
        return lowest
    return utilities.get(trial.image(side), 0.0)


def simulate_ratings(
    run_dir: str | Path,
    simulation: RatingSimulationSpec,
    *,
    question: Question = "overall",
    attention_every: int = 10,
    seed: int = 0,
) -> int:
    """Bring each of `simulation.raters` simulated raters up to `simulation.judgements_per_rater` answered trials
    (of `question`) through the HTTP API; returns the number of votes stored. A rater who has seen every pair stops
    early. Running it again stores nothing (a re-run of the smoke run adds no votes); with a larger
    `judgements_per_rater` it continues each rater's session (new trials, never the same pair twice)."""
    from starlette.testclient import TestClient

    from ovi_bench.rate.app import create_app

    utilities = image_utilities(run_dir, simulation.utility)
    lowest = min(utilities.values()) - 10.0  # far below any real image: a canary's broken copy
    app = create_app(
        run_dir,
        question=question,
        attention_every=attention_every,
        active=False,
        seed=seed,
        token=None,
        source=SIMULATED_SOURCE,
    )
    judged = read_judgements(run_dir)
    judged = judged[(judged["source"] == SIMULATED_SOURCE) & (judged["question"] == question)]
    answered = judged["rater"].value_counts()
    stored = 0
    with TestClient(app) as client:
        for number in range(1, simulation.raters + 1):
            rater = rater_name(number)
            already = int(answered.get(rater, 0))
            # Seeded by the votes so far too: a continued session draws fresh noise, not the first votes' again.
            generator = np.random.default_rng([simulation.seed, number, already])
            for _ in range(simulation.judgements_per_rater - already):
                response = client.get("/api/trial", params={"rater": rater})
                _check(response.status_code, response.text)
                trial_id = response.json().get("trial_id")
                if trial_id is None:
                    break
                with connect(run_dir) as connection:
                    trial = find_trial(connection, trial_id)
                if trial is None:
                    raise DataError(f"the rating app served trial {trial_id} but the store does not have it.")
                choice = bradley_terry_vote(
                    _utility(trial, "left", utilities, lowest),
                    _utility(trial, "right", utilities, lowest),
                    noise=simulation.noise,
                    tie_margin=simulation.tie_margin,
                    generator=generator,
                )
                response_ms = int(generator.integers(400, 4000))
                body = {"trial_id": trial_id, "rater": rater, "choice": choice, "response_ms": response_ms}
                response = client.post("/api/judgement", json=body)
                _check(response.status_code, response.text)
                stored += bool(response.json()["stored"])
    return stored


def _check(status: int, text: str) -> None:
    if status != 200:
        raise DataError(f"the rating app refused a simulated rater's request ({status}: {text[:300]}).")
