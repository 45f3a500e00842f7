"""The rating app in a real browser (headless Chromium driven by Playwright) against the real `ovi-bench rate`
server: a rater enters a name and rates ten pairs with the keyboard; the server is killed (SIGKILL) and started
again; all ten votes are in the store, and a hostile prompt was shown as text."""

from __future__ import annotations

from pathlib import Path

import pytest
from rating_runs import HOSTILE_PROMPT, free_port, kill_server, make_rating_run, start_server
from test_report import chromium  # the report's browser test finds Chromium the same way

from ovi_bench.rate.judgements import CHOICES
from ovi_bench.rate.storage import read_judgements

KEYS = ["ArrowLeft", "ArrowRight", "ArrowDown", "1", "2", "0", "t", "s", " ", "ArrowLeft"]
EXPECTED_CHOICES = ["left", "right", "tie", "left", "right", "tie", "tie", "skip", "skip", "left"]


def test_a_rater_rates_ten_pairs_with_the_keyboard_and_a_killed_server_loses_none(tmp_path: Path) -> None:
    executable = chromium()
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright (the test extra) is not installed"
    )
    run_dir = make_rating_run(tmp_path / "run")
    port = free_port()
    server = start_server(run_dir, port, "--attention-every", "0", "--seed", "3")
    seen_prompts: list[str] = []
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = browser.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(f"http://127.0.0.1:{port}/")
            page.fill("#name", "ann")
            page.press("#name", "Enter")
            for key in KEYS:
                page.wait_for_selector("body[data-state=ready]")
                shown = page.get_attribute("body", "data-trial")
                seen_prompts.append(page.text_content("#prompt") or "")
                assert page.locator("#prompt *").count() == 0  # text only, whatever the prompt holds
                page.keyboard.press(key)
                page.wait_for_function(
                    "shown => document.body.dataset.state !== 'busy' && document.body.dataset.trial !== shown",
                    arg=shown,
                )
            page.wait_for_selector("body[data-state=ready]")
            assert page.text_content("#progress") == "ann: 10 answered, 8 pairs left"
            kill_server(server)
            server = start_server(run_dir, port, "--attention-every", "0", "--seed", "3")
            # a reload after the restart shows the same pending trial: nothing answered is asked again
            pending = page.get_attribute("body", "data-trial")
            page.reload()
            page.fill("#name", "ann")
            page.press("#name", "Enter")
            page.wait_for_selector("body[data-state=ready]")
            assert page.get_attribute("body", "data-trial") == pending
            assert _hostile_prompt_shown(page, seen_prompts), "the hostile prompt was never shown"
            assert page.evaluate("document.body.dataset.hacked") is None and dialogs == []
            browser.close()
    finally:
        kill_server(server)
    judgements = read_judgements(run_dir)
    answered = judgements.iloc[:10]
    assert list(answered["rater"]) == ["ann"] * 10
    assert list(answered["choice"]) == EXPECTED_CHOICES and set(EXPECTED_CHOICES) <= set(CHOICES)
    assert list(answered["prompt"]) == seen_prompts[:10]
    assert (answered["response_ms"] >= 0).all() and set(answered["source"]) == {"local"}


def _hostile_prompt_shown(page: object, seen_prompts: list[str]) -> bool:
    """Whether the hostile prompt was shown as exactly its text with no element in it: among the ten trials already
    (each was checked), else by skipping through trials until it is on screen."""
    if HOSTILE_PROMPT in seen_prompts:
        return True
    for _ in range(20):
        if page.text_content("#prompt") == HOSTILE_PROMPT:  # type: ignore[attr-defined]
            return page.locator("#prompt *").count() == 0  # type: ignore[attr-defined]
        shown = page.get_attribute("body", "data-trial")  # type: ignore[attr-defined]
        page.keyboard.press("s")  # type: ignore[attr-defined]
        page.wait_for_function(  # type: ignore[attr-defined]
            "shown => ['ready', 'done'].includes(document.body.dataset.state) && document.body.dataset.trial !== shown",
            arg=shown,
        )
    return False
