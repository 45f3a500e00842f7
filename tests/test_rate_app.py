"""The rating app through its HTTP API: trials and votes, the access token, image paths that must never leave the
run's images folder, two raters voting at once against a live server, simulated raters, and serving rules."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from command_line import run_main
from rating_runs import (
    HOSTILE_PROMPT,
    free_port,
    kill_server,
    make_rating_run,
    n_items,
    start_server,
)
from starlette.testclient import TestClient

from ovi_bench.errors import DataError
from ovi_bench.rate import app as app_module
from ovi_bench.rate.app import create_app
from ovi_bench.rate.judgements import CANARY_PRIOR, QUESTIONS, RATINGS_FILE, chosen_prior
from ovi_bench.rate.serve import RatingServeError, access_token, app_url, is_loopback, rating_defaults
from ovi_bench.rate.simulate import simulate_ratings
from ovi_bench.rate.storage import connect, read_judgements
from ovi_bench.rate.trials import TRIAL_COLUMNS
from ovi_bench.spec import RatingSimulationSpec


@pytest.fixture
def run_folder(tmp_path: Path) -> Path:
    """A fresh rating run for a test that writes ratings into it."""
    return make_rating_run(tmp_path / "run")


def rate_once(client: TestClient | httpx.Client, rater: str, choice: str = "left") -> dict[str, object]:
    trial = client.get("/api/trial", params={"rater": rater}).json()
    body = {"trial_id": trial["trial_id"], "rater": rater, "choice": choice, "response_ms": 700}
    response = client.post("/api/judgement", json=body)
    assert response.status_code == 200, response.text
    return trial


def test_a_trial_is_blind_shown_again_until_answered_and_stored_once(run_folder: Path) -> None:
    client = TestClient(create_app(run_folder, question="text", attention_every=0))
    trial = client.get("/api/trial", params={"rater": "ann"}).json()
    assert set(trial) == {
        "done",
        "trial_id",
        "prompt",
        "question",
        "question_text",
        "progress",
    }  # no prior, no path
    assert trial["question_text"] == QUESTIONS["text"]
    assert trial["progress"] == {"rater": "ann", "judged": 0, "remaining": n_items(), "total": n_items()}
    restarted = TestClient(create_app(run_folder, question="text", attention_every=0))
    assert restarted.get("/api/trial", params={"rater": "ann"}).json()["trial_id"] == trial["trial_id"]
    body = {"trial_id": trial["trial_id"], "rater": "ann", "choice": "tie", "response_ms": 1234.6}
    first, second = restarted.post("/api/judgement", json=body), restarted.post("/api/judgement", json=body)
    assert first.json()["stored"] is True and second.json()["stored"] is False
    assert first.json()["progress"]["judged"] == 1
    judgements = read_judgements(run_folder)
    assert len(judgements) == 1 and judgements.loc[0, "response_ms"] == 1234
    assert (judgements.loc[0, "question"], judgements.loc[0, "source"]) == ("text", "local")


def test_the_page_sets_user_text_as_text_only(run_folder: Path) -> None:
    client = TestClient(create_app(run_folder, attention_every=0))
    page = client.get("/")
    assert "innerHTML" not in page.text and "textContent" in page.text
    assert "script-src 'nonce-" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"choice": "maybe"}, 400),
        ({"response_ms": -1}, 400),
        ({"rater": ""}, 400),
        ({"rater": "bob"}, 409),
        ({"trial_id": uuid.uuid4().hex}, 404),
    ],
)
def test_a_bad_vote_is_refused(run_folder: Path, body: dict[str, object], status: int) -> None:
    client = TestClient(create_app(run_folder))
    trial = client.get("/api/trial", params={"rater": "ann"}).json()
    vote = {"trial_id": trial["trial_id"], "rater": "ann", "choice": "left", "response_ms": 5} | body
    assert client.post("/api/judgement", json=vote).status_code == status
    assert read_judgements(run_folder).empty


def test_a_rater_who_has_seen_every_pair_is_done(run_folder: Path) -> None:
    client = TestClient(create_app(run_folder, attention_every=0))
    prompts = {rate_once(client, "ann", "skip")["prompt"] for _ in range(n_items())}
    assert HOSTILE_PROMPT in prompts  # sent as JSON data, unchanged
    finished = client.get("/api/trial", params={"rater": "ann"}).json()
    assert finished["done"] is True and finished["progress"]["remaining"] == 0


def pending(run_dir: Path, left_image: str) -> str:
    """A pending trial whose left image path is `left_image` (as a tampered database would hold)."""
    trial_id = uuid.uuid4().hex
    values = {column: "x" for column in TRIAL_COLUMNS} | {
        "trial_id": trial_id,
        "rater": "eve",
        "question": "overall",
        "kind": "pair",
        "seed": 1,
        "left_image": left_image,
        "expected": "",
        "repeat_of": "",
    }
    with connect(run_dir) as connection:
        columns = ", ".join([*TRIAL_COLUMNS, "served_at"])
        marks = ", ".join("?" for _ in range(len(TRIAL_COLUMNS) + 1))
        connection.execute(
            f"INSERT INTO trials ({columns}) VALUES ({marks})", [*(values[c] for c in TRIAL_COLUMNS), "now"]
        )
    return trial_id


def test_images_are_served_only_from_the_run_images_folder(run_folder: Path, tmp_path: Path) -> None:
    client = TestClient(create_app(run_folder))
    trial = client.get("/api/trial", params={"rater": "ann"}).json()["trial_id"]
    assert client.get(f"/image/{trial}/left").status_code == 200
    assert client.get(f"/image/{trial}/up").status_code == 404
    assert client.get(f"/image/{uuid.uuid4().hex}/left").status_code == 404
    assert client.get("/image/..%2F..%2Fresults.json/left").status_code == 404
    assert client.get("/image/../../results.json").status_code == 404
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not for raters")
    link = run_folder / "images" / "zz" / "link.png"
    link.parent.mkdir()
    link.symlink_to(secret)
    for path, status in (
        ("results.json", 403),
        ("images/../scores.csv", 403),
        ("images/../../secret.png", 403),
        (str(secret), 403),
        ("images/zz/link.png", 403),
        ("images", 403),
        ("images/zz/missing.png", 404),
    ):
        response = client.get(f"/image/{pending(run_folder, path)}/left")
        assert response.status_code == status, path
        assert b"not for raters" not in response.content


def test_a_canary_shows_a_broken_copy_made_in_memory(run_folder: Path) -> None:
    client = TestClient(create_app(run_folder, attention_every=1))
    trial_id = client.get("/api/trial", params={"rater": "ann"}).json()["trial_id"]
    with connect(run_folder) as connection:
        (row,) = connection.execute("SELECT * FROM trials WHERE trial_id = ?", (trial_id,)).fetchall()
    assert row["kind"] == "canary"
    broken = "left" if row["left_prior"] == CANARY_PRIOR else "right"
    served = client.get(f"/image/{trial_id}/{broken}")
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    assert served.content != (run_folder / row[f"{broken}_image"]).read_bytes()
    assert client.get(f"/image/{trial_id}/{broken}").content == served.content  # the same copy every time


def test_every_request_needs_the_token_when_there_is_one(run_folder: Path) -> None:
    client = TestClient(create_app(run_folder, token="s3cret-token"))
    for path in ("/", "/api/trial?rater=ann", "/api/progress?rater=ann", f"/image/{uuid.uuid4().hex}/left"):
        assert client.get(path).status_code == 403
        assert client.get(path, params={"token": "wrong"}).status_code == 403
    assert client.post("/api/judgement", json={}).status_code == 403
    page = client.get("/", params={"token": "s3cret-token"})
    assert page.status_code == 200 and "ovi_bench_token=s3cret-token" in page.headers["set-cookie"]
    assert "HttpOnly" in page.headers["set-cookie"]
    trial = client.get("/api/trial", params={"rater": "ann"}).json()  # the cookie now carries the token
    assert client.get(f"/image/{trial['trial_id']}/left").status_code == 200
    assert read_judgements(run_folder).empty


def test_two_raters_voting_at_once_lose_nothing(run_folder: Path) -> None:
    port = free_port()
    server = start_server(run_folder, port, "--attention-every", "4")
    votes_each = 8
    errors: list[str] = []

    def rater(name: str) -> None:
        with (
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client,
            ThreadPoolExecutor(2) as pool,
        ):
            for _ in range(votes_each):
                trial = client.get("/api/trial", params={"rater": name}).json()
                body = {"trial_id": trial["trial_id"], "rater": name, "choice": "left", "response_ms": 300}
                # every vote sent twice at once, as a double click would: stored once
                answers = list(pool.map(lambda vote: client.post("/api/judgement", json=vote), [body, body]))
                if sorted(answer.json()["stored"] for answer in answers) != [False, True]:
                    errors.append(f"{name}: {[answer.text for answer in answers]}")

    try:
        threads = [threading.Thread(target=rater, args=(name,)) for name in ("ann", "bob")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        kill_server(server)
    assert errors == []
    judgements = read_judgements(run_folder)
    assert judgements.groupby("rater").size().to_dict() == {"ann": votes_each, "bob": votes_each}
    assert judgements["judgement_id"].is_unique


def test_simulated_raters_vote_through_the_api(run_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    handled: list[str] = []
    record_vote = app_module.record_vote

    def counted(run_dir: Path, trial_id: str, *args: object) -> bool:
        handled.append(trial_id)
        return record_vote(run_dir, trial_id, *args)

    monkeypatch.setattr(app_module, "record_vote", counted)
    simulation = RatingSimulationSpec(raters=2, judgements_per_rater=9, noise=0.2, seed=4)
    assert simulate_ratings(run_folder, simulation, attention_every=3, seed=1) == 18
    # Idempotent: a second call (a re-run of the smoke run) stores nothing; a larger target tops each rater up.
    assert simulate_ratings(run_folder, simulation, attention_every=3, seed=1) == 0
    judgements = read_judgements(run_folder)
    assert len(judgements) == 18 and sorted(handled) == sorted(judgements["judgement_id"])
    assert set(judgements["source"]) == {"simulated"}
    assert set(judgements["rater"]) == {"simulated-1", "simulated-2"}
    canaries = judgements[judgements["kind"] == "canary"]
    assert len(canaries) == 2 and (canaries["choice"] == canaries["expected"]).all()
    pairs = judgements[(judgements["kind"] != "canary") & (judgements["choice"] != "tie")]
    strong_vs_weak = pairs[
        pairs["left_prior"].isin(["strong", "weak"]) & pairs["right_prior"].isin(["strong", "weak"])
    ]
    winners = [chosen_prior(row.left_prior, row.right_prior, row.choice) for row in pairs.itertuples()]
    assert winners.count("strong") > winners.count("weak")
    assert all(
        chosen_prior(row.left_prior, row.right_prior, row.choice) == "strong"
        for row in strong_vs_weak.itertuples()
    )
    more = simulation.model_copy(update={"judgements_per_rater": 11})
    assert simulate_ratings(run_folder, more, attention_every=3, seed=1) == 4
    assert read_judgements(run_folder)["rater"].value_counts().to_dict() == {
        "simulated-1": 11,
        "simulated-2": 11,
    }


def test_a_utility_that_is_not_a_metric_of_the_run_is_named(run_folder: Path) -> None:
    with pytest.raises(
        DataError, match=r"'clipp' is not a per-image metric.*b-vqa, clip.*Did you mean 'clip'"
    ):
        simulate_ratings(run_folder, RatingSimulationSpec(utility="clipp"))
    assert not (run_folder / RATINGS_FILE).exists()


def test_serving_beyond_loopback_needs_a_token() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4") and not is_loopback("example.org")
    assert access_token("127.0.0.1", None) is None
    assert access_token("127.0.0.1", "given-token-1") == "given-token-1"
    generated = access_token("0.0.0.0", None)
    assert generated is not None and len(generated) >= 32 and generated != access_token("0.0.0.0", None)
    with pytest.raises(RatingServeError, match=r"refusing to serve .* without an access token"):
        access_token("0.0.0.0", None, require_token=False)
    with pytest.raises(RatingServeError, match="at least 12 characters"):
        access_token("0.0.0.0", "short; path=/")
    assert app_url("127.0.0.1", 8765, "abc") == "http://127.0.0.1:8765/?token=abc"


def test_the_rate_command_refuses_what_it_cannot_serve(
    run_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(monkeypatch, capsys, "rate", str(run_folder), "--host", "0.0.0.0", "--no-token")
    assert code == 2 and "without an access token" in err
    code, _, err = run_main(monkeypatch, capsys, "rate", str(tmp_path))
    assert code == 2 and "not a finished run folder" in err
    code, _, err = run_main(monkeypatch, capsys, "rate", str(run_folder), "--question", "realistic")
    assert code == 2 and "Did you mean 'realism'" in err
    (run_folder / "scores.csv").unlink()
    code, _, err = run_main(monkeypatch, capsys, "rate", str(run_folder))
    assert code == 2 and "scores.csv is missing" in err and "Traceback" not in err


def test_the_spec_rating_table_gives_the_defaults(run_folder: Path) -> None:
    import json

    results = json.loads((run_folder / "results.json").read_text())
    results["spec"]["rating"] = {"question": "realism", "attention_every": 5, "simulation": {"raters": 2}}
    (run_folder / "results.json").write_text(json.dumps(results))
    defaults = rating_defaults(run_folder)
    assert (defaults.question, defaults.attention_every, defaults.active) == ("realism", 5, False)
    assert defaults.simulation is not None and defaults.simulation.raters == 2


def test_the_simulate_command_stores_simulated_votes(
    run_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_main(
        monkeypatch, capsys, "ratings", "simulate", str(run_folder), "--raters", "1", "--judgements", "3"
    )
    assert code == 0 and "3 simulated judgement(s) stored" in out
    code, _, err = run_main(monkeypatch, capsys, "ratings", "simulate", str(run_folder), "--utility", "nope")
    assert code == 2 and "is not a per-image metric" in err
    with sqlite3.connect(run_folder / RATINGS_FILE) as connection:
        assert connection.execute("SELECT COUNT(*) FROM judgements").fetchone()[0] == 3
