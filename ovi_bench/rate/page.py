"""The rating app's one HTML page: self-contained (inline CSS and script, no CDN, so it works on a machine without
internet), blind (prior names never reach the browser) and safe with any prompt (every piece of user text is set
with `textContent`, never parsed as HTML).

The page asks the rater's name, then loops: GET /api/trial, show the prompt, the question and both images, measure
the response time from the moment both images are shown, POST /api/judgement. Keys: ArrowLeft or 1 = left,
ArrowRight or 2 = right, ArrowDown, t or 0 = tie, s or space = skip; the buttons do the same.

`<body data-state>` tells tests (and a curious rater's developer tools) where the page is: "name", "loading",
"ready" (a trial is shown and accepts a vote), "busy" (a vote is being stored), "done" or "error"; `data-trial`
holds the id of the trial shown.
"""

from __future__ import annotations

from typing import Final

PAGE_TEMPLATE: Final = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>ovi-bench rating</title>
<style nonce="__NONCE__">
  body { font-family: system-ui, sans-serif; margin: 0; background: #f4f4f5; color: #18181b; }
  main { max-width: 1100px; margin: 0 auto; padding: 1.2rem; }
  h1 { font-size: 1.1rem; font-weight: 600; margin: 0 0 .8rem; }
  #prompt { font-size: 1.35rem; margin: .4rem 0; overflow-wrap: anywhere; }
  #question { font-size: 1rem; color: #3f3f46; margin: .2rem 0 1rem; }
  .pair { display: flex; gap: 1rem; justify-content: center; }
  figure { margin: 0; flex: 1; text-align: center; }
  figure img { width: 100%; max-width: 512px; aspect-ratio: 1; object-fit: contain; background: #fff;
               image-rendering: pixelated; border: 2px solid #d4d4d8; border-radius: 6px; }
  figcaption { color: #52525b; margin-top: .3rem; }
  .buttons { display: flex; gap: .6rem; justify-content: center; margin: 1rem 0; }
  button { font-size: 1rem; padding: .5rem 1.1rem; border-radius: 6px; border: 1px solid #a1a1aa;
           background: #fff; cursor: pointer; }
  button:disabled { opacity: .5; cursor: default; }
  #progress, #status { text-align: center; color: #52525b; }
  [hidden] { display: none !important; }
</style>
</head>
<body data-state="name" data-trial="">
<main>
  <h1>Pairwise rating</h1>
  <form id="name-form">
    <label for="name">Your name (it identifies your answers):</label>
    <input id="name" name="name" maxlength="100" autocomplete="nickname" required>
    <button id="start" type="submit">Start</button>
  </form>
  <section id="trial" hidden>
    <div id="prompt"></div>
    <div id="question"></div>
    <div class="pair">
      <figure><img id="left" alt="left image"><figcaption>left · 1 or &larr;</figcaption></figure>
      <figure><img id="right" alt="right image"><figcaption>right · 2 or &rarr;</figcaption></figure>
    </div>
    <div class="buttons">
      <button type="button" data-choice="left">Left (1, &larr;)</button>
      <button type="button" data-choice="tie">Tie (0, t, &darr;)</button>
      <button type="button" data-choice="right">Right (2, &rarr;)</button>
      <button type="button" data-choice="skip">Skip (s, space)</button>
    </div>
  </section>
  <p id="progress"></p>
  <p id="status"></p>
</main>
<script nonce="__NONCE__">
"use strict";
(() => {
  const token = new URLSearchParams(location.search).get("token");
  const body = document.body;
  const $ = (id) => document.getElementById(id);
  const keys = { ArrowLeft: "left", "1": "left", ArrowRight: "right", "2": "right",
                 ArrowDown: "tie", t: "tie", "0": "tie", s: "skip", " ": "skip" };
  let rater = "";
  let trial = null;
  let shownAt = 0;

  function url(path, params) {
    const query = new URLSearchParams(params || {});
    if (token) query.set("token", token);
    const text = query.toString();
    return text ? path + "?" + text : path;
  }
  function setState(state) { body.dataset.state = state; }
  function setStatus(text) { $("status").textContent = text; }
  function showProgress(progress) {
    if (!progress) return;
    $("progress").textContent = progress.rater + ": " + progress.judged + " answered, " +
      progress.remaining + " pairs left";
  }
  async function call(path, params, options) {
    const response = await fetch(url(path, params), Object.assign({ credentials: "same-origin" }, options));
    const data = await response.json().catch(() => ({ error: response.statusText }));
    if (!response.ok) throw new Error(data.error || response.statusText);
    return data;
  }
  async function nextTrial() {
    setState("loading");
    setStatus("");
    let data;
    try { data = await call("/api/trial", { rater: rater }); }
    catch (error) { setState("error"); setStatus("Could not load a pair: " + error.message); return; }
    showProgress(data.progress);
    if (data.done) {
      trial = null;
      $("trial").hidden = true;
      body.dataset.trial = "";
      setState("done");
      setStatus("Thank you: you have rated every pair.");
      return;
    }
    trial = data;
    body.dataset.trial = "";
    $("prompt").textContent = data.prompt;
    $("question").textContent = data.question_text;
    const images = [$("left"), $("right")];
    await Promise.all(images.map((image, index) => new Promise((resolve) => {
      image.onload = image.onerror = () => resolve();
      image.src = url("/image/" + encodeURIComponent(data.trial_id) + "/" + (index ? "right" : "left"));
    })));
    $("trial").hidden = false;
    requestAnimationFrame(() => {
      shownAt = performance.now();
      body.dataset.trial = data.trial_id;
      setState("ready");
    });
  }
  async function vote(choice) {
    if (!trial || body.dataset.state !== "ready") return;
    setState("busy");
    const responseMs = Math.max(0, Math.round(performance.now() - shownAt));
    try {
      const data = await call("/api/judgement", null, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ trial_id: trial.trial_id, rater: rater, choice: choice, response_ms: responseMs }),
      });
      showProgress(data.progress);
    } catch (error) { setState("ready"); setStatus("Your answer was not stored: " + error.message); return; }
    await nextTrial();
  }
  $("name-form").addEventListener("submit", (event) => {
    event.preventDefault();
    rater = $("name").value.trim();
    if (!rater) return;
    try { localStorage.setItem("ovi-bench-rater", rater); } catch (error) { /* private mode */ }
    $("name-form").hidden = true;
    nextTrial();
  });
  for (const button of document.querySelectorAll("button[data-choice]")) {
    button.addEventListener("click", () => vote(button.dataset.choice));
  }
  document.addEventListener("keydown", (event) => {
    if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) return;
    const choice = keys[event.key];
    if (!choice) return;
    event.preventDefault();
    vote(choice);
  });
  try { $("name").value = localStorage.getItem("ovi-bench-rater") || ""; } catch (error) { /* private mode */ }
  $("name").focus();
})();
</script>
</body>
</html>
"""
"""The page, with `__NONCE__` where each response puts its Content-Security-Policy nonce."""


def render_page(nonce: str) -> str:
    """The page for one response; `nonce` is random per response, so no injected script could carry it."""
    return PAGE_TEMPLATE.replace("__NONCE__", nonce)
