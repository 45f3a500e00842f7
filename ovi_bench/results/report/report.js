// The report's behaviour: filters, leaderboard sorting, plot layout, the image detail panel, and the view state in
// the URL hash (#category=color,shape&prior=ovi&metric=clip&sort=mean:desc&image=i12), so that a view can be shared
// as a link.
// Text from the run is only ever set through textContent and attributes: nothing here parses data as HTML.
(function () {
  "use strict";

  const FILTER_KEYS = ["category", "prior", "metric"];
  const data = JSON.parse(document.getElementById("report-data").textContent);
  const leaderboard = document.getElementById("leaderboard");
  // filters[key] is the Set of values shown, or null when every value is shown (the key is then left out of the hash).
  const state = { filters: { category: null, prior: null, metric: null }, sort: null, image: null };

  function setHidden(element, hidden) {
    // An attribute rather than the .hidden property: SVG elements have no such property.
    element.toggleAttribute("hidden", hidden);
  }

  function checkboxes(key) {
    return Array.from(document.querySelectorAll('fieldset[data-filter="' + key + '"] input[type="checkbox"]'));
  }

  // ----------------------------------------------------------------------------------------------------------------
  // The URL hash.

  function readHash() {
    const filters = { category: null, prior: null, metric: null };
    let sort = null;
    let image = null;
    for (const part of location.hash.replace(/^#/, "").split("&")) {
      if (!part) continue;
      const [key, raw = ""] = part.split("=", 2);
      const values = raw === "" ? [] : raw.split(",").map(decodeValue);
      if (FILTER_KEYS.includes(key)) {
        filters[key] = new Set(values);
      } else if (key === "sort" && values.length) {
        const [column, direction] = values[0].split(":");
        sort = { key: column, descending: direction === "desc" };
      } else if (key === "image" && values.length) {
        image = values[0];
      }
    }
    state.filters = filters;
    state.sort = sort;
    state.image = image;
  }

  function decodeValue(text) {
    try {
      return decodeURIComponent(text.replace(/\+/g, " "));
    } catch (error) {
      return text;
    }
  }

  function writeHash() {
    const parts = [];
    for (const key of FILTER_KEYS) {
      const shown = state.filters[key];
      if (shown !== null) parts.push(key + "=" + Array.from(shown).map(encodeURIComponent).join(","));
    }
    if (state.sort) parts.push("sort=" + encodeURIComponent(state.sort.key) + ":" + (state.sort.descending ? "desc" : "asc"));
    if (state.image) parts.push("image=" + encodeURIComponent(state.image));
    const url = location.pathname + location.search + (parts.length ? "#" + parts.join("&") : "");
    try {
      history.replaceState(null, "", url);
    } catch (error) {
      location.hash = parts.join("&");  // some browsers refuse replaceState on file: pages
    }
  }

  // ----------------------------------------------------------------------------------------------------------------
  // Filters.

  function syncCheckboxes() {
    for (const key of FILTER_KEYS) {
      for (const box of checkboxes(key)) box.checked = state.filters[key] === null || state.filters[key].has(box.value);
    }
  }

  function readCheckboxes() {
    for (const key of FILTER_KEYS) {
      const boxes = checkboxes(key);
      const checked = boxes.filter((box) => box.checked).map((box) => box.value);
      state.filters[key] = checked.length === boxes.length ? null : new Set(checked);
    }
  }

  function isShown(element) {
    for (const key of FILTER_KEYS) {
      const value = element.getAttribute("data-" + key);
      const shown = state.filters[key];
      if (value !== null && shown !== null && !shown.has(value)) return false;
    }
    return true;
  }

  function applyFilters() {
    document.querySelectorAll(".filterable").forEach((element) => setHidden(element, !isShown(element)));
    document.querySelectorAll("svg.interval-plot").forEach(layoutPlot);
    // A category's block of plots disappears when the metric filter leaves none of its plots.
    document.querySelectorAll("#plots-section .category-block").forEach((block) => {
      if (!block.hasAttribute("hidden")) setHidden(block, !block.querySelector("figure.plot:not([hidden])"));
    });
    const visible = leaderboard.querySelectorAll("tbody tr:not([hidden])").length;
    document.getElementById("leaderboard-count").textContent = String(visible);
    setHidden(document.getElementById("leaderboard-empty"), visible > 0);
  }

  // Hidden prior rows leave no gap: the visible rows move up and the axis follows them.
  function layoutPlot(svg) {
    const rowHeight = Number(svg.dataset.rowHeight);
    const top = Number(svg.dataset.top);
    const axisHeight = Number(svg.dataset.axisHeight);
    let count = 0;
    svg.querySelectorAll("g.plot-row").forEach((row) => {
      const shown = isShown(row);
      setHidden(row, !shown);
      if (shown) row.setAttribute("transform", "translate(0," + (top + rowHeight * count++) + ")");
    });
    const bottom = top + rowHeight * count;
    svg.querySelector("g.plot-axis").setAttribute("transform", "translate(0," + bottom + ")");
    svg.querySelectorAll("g.plot-grid line").forEach((line) => line.setAttribute("y2", String(bottom)));
    const height = bottom + axisHeight;
    svg.setAttribute("height", String(height));
    svg.setAttribute("viewBox", "0 0 " + svg.getAttribute("width") + " " + height);
    const figure = svg.closest("figure");
    if (figure && !figure.hasAttribute("hidden")) setHidden(figure, count === 0);
  }

  // ----------------------------------------------------------------------------------------------------------------
  // Sorting.

  function headerCells() {
    return Array.from(leaderboard.tHead.rows[0].cells);
  }

  function originalIndex(row) {
    return Number(row.dataset.index);
  }

  function compareRows(column, numeric, descending) {
    return function (a, b) {
      const x = a.cells[column].dataset.value;
      const y = b.cells[column].dataset.value;
      // Missing values go last in both directions: they are absent, not small.
      if (x === "" || y === "") return (x === "") - (y === "") || originalIndex(a) - originalIndex(b);
      const order = numeric ? Number(x) - Number(y) : x.localeCompare(y, undefined, { numeric: true });
      return (descending ? -order : order) || originalIndex(a) - originalIndex(b);
    };
  }

  function applySort() {
    const headers = headerCells();
    const column = state.sort ? headers.findIndex((th) => th.dataset.key === state.sort.key) : -1;
    const body = leaderboard.tBodies[0];
    const rows = Array.from(body.rows);
    if (column < 0) {
      rows.sort((a, b) => originalIndex(a) - originalIndex(b));
    } else {
      rows.sort(compareRows(column, headers[column].dataset.type === "number", state.sort.descending));
    }
    rows.forEach((row) => body.appendChild(row));
    headers.forEach((th, index) => {
      const sorted = index === column;
      th.setAttribute("aria-sort", sorted ? (state.sort.descending ? "descending" : "ascending") : "none");
    });
  }

  function onHeaderClick(event) {
    const th = event.target.closest("th[data-key]");
    if (!th) return;
    const key = th.dataset.key;
    if (state.sort && state.sort.key === key) {
      state.sort = { key: key, descending: !state.sort.descending };
    } else {
      // Numbers start with the largest first, text in alphabetical order.
      state.sort = { key: key, descending: th.dataset.type === "number" };
    }
    applySort();
    writeHash();
  }

  // ----------------------------------------------------------------------------------------------------------------
  // The image detail panel.

  const panel = document.getElementById("detail");
  let selected = null;

  function setText(id, text) {
    document.getElementById(id).textContent = text;
  }

  function openDetail(thumb) {
    const image = data.images[thumb.dataset.image];
    if (!image) return;
    setText("detail-title", image.prior + " · seed " + image.seed);
    setText("detail-prompt", image.prompt);
    setText("detail-prompt-id", image.prompt_id);
    setText("detail-seed", String(image.seed));
    setText("detail-prior", image.prior);
    setText("detail-category", image.category);
    const body = document.getElementById("detail-scores");
    body.replaceChildren();
    for (const [metric, score, reason] of image.scores) {
      const row = document.createElement("tr");
      for (const [text, className] of [[metric, ""], [score, "num"], [reason, "reason"]]) {
        const cell = document.createElement("td");
        cell.textContent = text;
        if (className) cell.className = className;
        row.appendChild(cell);
      }
      body.appendChild(row);
    }
    showImage(image, thumb);
    if (selected) selected.classList.remove("selected");
    selected = thumb;
    thumb.classList.add("selected");
    setHidden(panel, false);
    document.getElementById("detail-close").focus({ preventScroll: true });
  }

  function showImage(image, thumb) {
    const picture = document.getElementById("detail-image");
    const thumbnail = thumb.querySelector("img");
    // The full image while the run folder is beside the report, else (see onPictureError) the thumbnail.
    picture.dataset.fallback = thumbnail ? thumbnail.src : "";
    picture.alt = image.prior + ", seed " + image.seed;
    const source = image.href || picture.dataset.fallback;
    if (source) picture.src = source;
    else picture.removeAttribute("src");
    setHidden(picture, !source);
    document.getElementById("detail-link").href = image.href || "#";
    const open = document.getElementById("detail-open");
    open.href = image.href || "#";
    setHidden(open.parentElement, !image.href);
  }

  function onPictureLoad(event) {
    // Tiny images (the smoke run's 32 px) enlarged without smoothing, so their pixels stay visible.
    event.target.classList.toggle("pixelated", event.target.naturalWidth < 200);
  }

  function onPictureError(event) {
    const picture = event.target;
    if (picture.dataset.fallback && picture.src !== picture.dataset.fallback) picture.src = picture.dataset.fallback;
  }

  function closeDetail() {
    if (state.image) {
      state.image = null;
      writeHash();
    }
    setHidden(panel, true);
    if (selected) {
      selected.classList.remove("selected");
      selected.focus({ preventScroll: true });
      selected = null;
    }
  }

  function onDocumentClick(event) {
    const thumb = event.target.closest("a.thumb[data-image]");
    // A modified or middle click opens the full image as a link would.
    if (!thumb || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey || event.altKey) return;
    event.preventDefault();
    openDetail(thumb);
    state.image = thumb.dataset.image;
    writeHash();
  }

  function applyImage() {
    const thumb = state.image ? document.querySelector('a.thumb[data-image="' + CSS.escape(state.image) + '"]') : null;
    if (thumb) openDetail(thumb);
    else if (!panel.hasAttribute("hidden")) closeDetail();
  }

  // ----------------------------------------------------------------------------------------------------------------

  function applyAll() {
    syncCheckboxes();
    applyFilters();
    applySort();
    applyImage();
  }

  function onFilterChange() {
    readCheckboxes();
    applyFilters();
    writeHash();
  }

  function onSelectButton(event) {
    const button = event.target.closest("button[data-select]");
    if (!button) return;
    const all = button.dataset.select === "all";
    const fieldset = button.closest("fieldset");
    fieldset.querySelectorAll('input[type="checkbox"]').forEach((box) => { box.checked = all; });
    onFilterChange();
  }

  readHash();
  applyAll();
  document.getElementById("filters").addEventListener("change", onFilterChange);
  document.getElementById("filters").addEventListener("click", onSelectButton);
  leaderboard.tHead.addEventListener("click", onHeaderClick);
  document.addEventListener("click", onDocumentClick);
  document.getElementById("detail-close").addEventListener("click", closeDetail);
  document.getElementById("detail-image").addEventListener("error", onPictureError);
  document.getElementById("detail-image").addEventListener("load", onPictureLoad);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !panel.hasAttribute("hidden")) closeDetail();
  });
  window.addEventListener("hashchange", () => {
    readHash();
    applyAll();
  });
  document.documentElement.dataset.ready = "true";
})();
