"use strict";
// The web view's script. It draws the pages from the payloads of
// povstorm/ui/views.py and keeps them live from the server's event streams
// (EventSource, which also reconnects by itself): nothing is polled. Every
// action is a POST of JSON to the server, which calls the Cluster method.
const povstorm = (() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";

  function build(node, attrs, children) {
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    node.append(...children);
    return node;
  }
  const el = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);
  const svg = (tag, attrs, ...children) => build(document.createElementNS(SVG, tag), attrs, children);

  const seconds = (s) => (s === null || s === undefined ? "-" : `${Number(s).toFixed(2)} s`);
  const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
  const frameName = (u) => (u.frame === null || u.frame === undefined ? `unit ${u.unit}` : `frame ${u.frame}`);

  function showLive(text, on) {
    const tag = $("live");
    tag.textContent = text;
    tag.classList.toggle("on", on);
  }

  function follow(url, handlers) {
    let source = null;
    const open = () => {
      source = new EventSource(url);
      source.onopen = () => showLive("live", true);
      source.onerror = () =>
        showLive(source.readyState === EventSource.CLOSED ? "stopped" : "reconnecting", false);
      for (const [event, handle] of Object.entries(handlers)) {
        source.addEventListener(event, (e) => handle(JSON.parse(e.data)));
      }
    };
    open();
    // Leaving the page ends its stream, and the server's listeners with it
    // (a page kept in the back-forward cache would keep it open); coming
    // back to it opens another, whose first events bring the page up to date.
    window.addEventListener("pagehide", () => source.close());
    window.addEventListener("pageshow", (e) => {
      if (e.persisted) open();
    });
  }

  function setBar(bar, done, failed, total) {
    const share = (n) => `${total ? (100 * n) / total : 0}%`;
    bar.querySelector(".done").style.width = share(done);
    bar.querySelector(".failed").style.width = share(failed);
  }

  function newBar(done, failed, total) {
    const bar = el("div", { class: "bar" }, el("div", { class: "done" }), el("div", { class: "failed" }));
    setBar(bar, done, failed, total);
    return bar;
  }

  // --- the jobs page ----------------------------------------------------------------

  function jobRow(r) {
    return el(
      "tr",
      { class: r.state },
      el("td", {}, el("a", { href: r.url, text: r.job_id })),
      el("td", { text: r.name }),
      el("td", {}, el("span", { class: `state ${r.state}`, text: r.state })),
      el("td", {}, newBar(r.done, r.failed, r.total)),
      el("td", { text: `${r.done}/${r.total}` }),
      el("td", { text: String(r.failed) }),
      el("td", { text: when(r.created_at) }),
    );
  }

  function drawJobs(rows) {
    const empty = el("tr", {}, el("td", { colspan: 7, text: "no jobs yet" }));
    $("jobs").replaceChildren(...(rows.length ? rows.map(jobRow) : [empty]));
  }

  function jobsPage(events, rows) {
    drawJobs(rows);
    follow(events, { jobs: drawJobs });
  }

  // --- a job's page -------------------------------------------------------------------

  function jobPage(data) {
    const units = new Map(data.units.map((u) => [u.unit, u]));
    const page = data.page;
    const drawAll = (job) => drawJob(job, page);
    drawAll(data.job);
    units.forEach(drawCell);
    drawChart(units);
    follow(data.events, {
      job: drawAll,
      units: (changed) => {
        for (const u of changed) {
          units.set(u.unit, u);
          drawCell(u);
        }
        drawChart(units);
        const open = $("detail").dataset.unit;
        if (!$("detail").hidden && changed.some((u) => String(u.unit) === open)) {
          openDetail(data.api, Number(open));
        }
      },
      problem: (p) => showLive(p.error, false),
    });
    const opener = (e) => {
      const target = e.target.closest("[data-unit]");
      if (target) openDetail(data.api, Number(target.dataset.unit));
    };
    $("grid").addEventListener("click", opener);
    $("chart").addEventListener("click", opener);
    $("errors").addEventListener("click", opener);
    $("detail-close").addEventListener("click", () => {
      $("detail").hidden = true;
    });
    for (const button of document.querySelectorAll("[data-action]")) {
      button.addEventListener("click", () => act(data.api, button.dataset.action));
    }
  }

  function drawJob(job, page) {
    document.body.dataset.state = job.state;
    $("state").textContent = job.state;
    $("state").className = `state ${job.state}`;
    $("counts").textContent = `${job.done}/${job.total} done, ${job.failed} failed`;
    const rate = job.rate ? `${job.rate.toFixed(2)} frames/s` : "";
    $("eta").textContent = [rate, job.eta ? `ETA ${job.eta}` : ""].filter(Boolean).join(", ");
    setBar($("bar"), job.done, job.failed, job.total);
    $("cancel").disabled = !job.actions.cancel;
    $("retry").disabled = !job.actions.retry;
    $("restitch").disabled = !job.actions.restitch;
    $("cancel-reason").hidden = !job.cancel_reason;
    $("cancel-reason").textContent = job.cancel_reason ? `cancelled by the farm: ${job.cancel_reason}` : "";
    drawResult(job);
    drawErrors(job.errors);
    const projected = job.finished ? "" : ` Projected once every frame is done: ${job.projected}.`;
    $("cost").textContent = job.cost_line ? `${job.cost_line}.${projected}` : "";
    drawStats(job.stats);
    drawShards(job, page);
  }

  function drawResult(job) {
    const media = $("media");
    const shown = `${job.video}|${job.poster}`;
    if (media.dataset.shown !== shown) {
      // Redrawn only when they change: a playing video is left alone.
      media.dataset.shown = shown;
      const parts = [];
      if (job.video && job.video_name.endsWith(".gif")) {
        parts.push(el("img", { src: job.video, alt: "the video", class: "video" }));
      } else if (job.video) {
        const attrs = { src: job.video, poster: job.poster, controls: true, loop: true, class: "video" };
        parts.push(el("video", { ...attrs, muted: true, preload: "metadata" }));
      } else if (job.poster) {
        parts.push(el("img", { src: job.poster, alt: "the poster", class: "video" }));
      }
      if (job.video) {
        parts.push(el("p", {}, el("a", { href: job.video, download: job.video_name, text: job.video_name })));
      }
      media.replaceChildren(...parts);
    }
    $("videos").replaceChildren(
      ...job.videos.map((v) =>
        el(
          "li",
          {},
          v.url ? el("a", { href: v.url, text: v.key }) : v.key,
          ` (${v.settings}): ${v.state}${v.error ? `: ${v.error}` : ""}`,
        ),
      ),
    );
    $("result").hidden = !(job.video || job.poster || job.videos.length);
  }

  function drawErrors(errors) {
    $("problems").hidden = !errors.length;
    $("errors").replaceChildren(
      ...errors.map((e) =>
        e.stitch
          ? el("li", { text: `stitch: ${e.stitch}` })
          : el("li", { "data-unit": e.unit, class: "link", text: `${frameName(e)} (attempt ${e.attempt}): ${e.error}` }),
      ),
    );
  }

  function drawStats(stats) {
    const rows = [];
    if (stats && stats.units !== undefined) {
      const render = stats.render_seconds || {};
      const slowest = (stats.slowest || []).map((s) => `${frameName(s)} (${seconds(s.render_seconds)})`);
      rows.push(
        ["wall time", seconds(stats.wall_seconds)],
        ["frames", `${stats.units}${stats.frames_cached ? ` (${stats.frames_cached} from the frame cache)` : ""}`],
        ["render time, total", seconds(render.total)],
        ["per frame", `min ${seconds(render.min)}, median ${seconds(render.p50)}, max ${seconds(render.max)}`],
        ["CPU time", seconds(stats.cpu_seconds)],
        ["speed-up", `${Number(stats.speedup || 0).toFixed(2)}x`],
        ["workers", String(stats.workers ?? "-")],
        ["slowest", slowest.join(", ")],
      );
    }
    const table = $("stats");
    table.replaceChildren(...rows.map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { text: v }))));
    if (!rows.length) table.append(el("tr", {}, el("td", { text: "when the video is made" })));
  }

  function drawShards(job, page) {
    // Each shard is a block of consecutive units: the whole job at a glance,
    // however many pages its grid has. A click opens the page of its first unit.
    $("shards").replaceChildren(
      ...job.shards.map((s) => {
        const target = Math.floor(s.first / page.size) + 1;
        const done = (100 * s.done) / s.expected;
        const failed = (100 * s.failed) / s.expected;
        const block = el("a", {
          href: `?page=${target}`,
          class: target === page.number ? "here" : "",
          title: `units ${s.first}-${s.first + s.expected - 1}: ${s.done} done, ${s.failed} failed`,
        });
        block.style.flexGrow = s.expected;
        block.style.background = `linear-gradient(to right, var(--done) ${done}%, var(--failed) ${done}% ${done + failed}%, var(--pending) ${done + failed}%)`;
        return block;
      }),
    );
  }

  function drawCell(u) {
    const cell = document.querySelector(`.cell[data-unit="${u.unit}"]`);
    if (!cell) return;
    cell.className = `cell ${u.state}`;
    cell.title = `${frameName(u)}: ${u.state}${u.seconds !== null && u.seconds !== undefined ? `, ${seconds(u.seconds)}` : ""}${u.cached ? " (frame cache)" : ""}${u.error ? `\n${u.error}` : ""}`;
    const img = cell.querySelector("img");
    if (u.thumb && img.getAttribute("src") !== u.thumb) img.src = u.thumb;
    if (!u.thumb && img.hasAttribute("src")) img.removeAttribute("src");
  }

  function median(sorted) {
    const mid = Math.floor(sorted.length / 2);
    return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
  }

  function drawChart(units) {
    // One bar per frame of the page, its height the frame's render time;
    // a frame over twice the median is red, over 1.5 times orange.
    const list = [...units.values()].sort((a, b) => a.unit - b.unit);
    const rendered = list.filter((u) => typeof u.seconds === "number" && !u.cached);
    const chart = $("chart");
    if (!rendered.length) {
      chart.replaceChildren(el("p", { class: "muted", text: "no frame of this page rendered yet" }));
      return;
    }
    const sorted = rendered.map((u) => u.seconds).sort((a, b) => a - b);
    const max = sorted[sorted.length - 1] || 1;
    const mid = median(sorted);
    const width = 10;
    const height = 100;
    const plot = svg("svg", {
      viewBox: `0 0 ${list.length * width} ${height}`,
      preserveAspectRatio: "none",
      class: "bars",
      role: "img",
      "aria-label": "render time per frame",
    });
    list.forEach((u, i) => {
      if (u.state === "failed") {
        const bar = svg("rect", { x: i * width, y: 0, width: width - 1, height, class: "failed", "data-unit": u.unit });
        bar.append(svg("title", { text: `${frameName(u)}: failed` }));
        plot.append(bar);
      }
      if (typeof u.seconds !== "number" || u.cached) return;
      const h = Math.max(1, (u.seconds / max) * height);
      const heat = u.seconds > 2 * mid ? "hot" : u.seconds > 1.5 * mid ? "warm" : "";
      const bar = svg("rect", { x: i * width, y: height - h, width: width - 1, height: h, class: `time ${heat}`, "data-unit": u.unit });
      bar.append(svg("title", { text: `${frameName(u)}: ${seconds(u.seconds)}` }));
      plot.append(bar);
    });
    const y = height - (mid / max) * height;
    plot.append(svg("line", { x1: 0, x2: list.length * width, y1: y, y2: y, class: "median" }));
    const legend = `median ${seconds(mid)}, max ${seconds(max)} over ${rendered.length} rendered frame(s); red: over twice the median`;
    chart.replaceChildren(plot, el("p", { class: "muted", text: legend }));
  }

  async function openDetail(api, unit) {
    const panel = $("detail");
    panel.hidden = false;
    panel.dataset.unit = unit;
    const body = $("detail-body");
    const reply = await fetch(`${api}/units/${unit}`);
    const d = await reply.json();
    if (panel.dataset.unit !== String(unit)) return; // another was opened meanwhile
    if (!reply.ok) {
      body.replaceChildren(el("p", { class: "problem", text: d.error }));
      return;
    }
    const facts = [
      ["state", d.state],
      ["attempts", String(d.attempts)],
      ["render time", seconds(d.seconds)],
      ["worker", d.worker || "-"],
    ];
    const parts = [
      el("h2", { text: `${frameName(d)} (unit ${d.unit})` }),
      el("table", {}, ...facts.map(([k, v]) => el("tr", {}, el("th", { text: k }), el("td", { text: v })))),
    ];
    if (d.image) parts.push(el("a", { href: d.image, target: "_blank" }, el("img", { src: d.image, class: "frame", alt: frameName(d) })));
    if (d.errors.length) {
      parts.push(el("h3", { text: "errors" }), el("ul", { class: "errors" }, ...d.errors.map((e) => el("li", { text: `attempt ${e.attempt}: ${e.error}` }))));
    }
    parts.push(el("h3", { text: "POV-Ray's output" }));
    if (!d.logs.length) parts.push(el("p", { class: "muted", text: "none stored for this frame yet" }));
    for (const log of d.logs) parts.push(el("h4", { text: log.object }), el("pre", { class: "log", text: log.text }));
    body.replaceChildren(...parts);
  }

  async function act(api, action) {
    const out = $("action-result");
    const body = {};
    if (action === "restitch") {
      for (const input of $("restitch-options").querySelectorAll("input")) body[input.name] = input.value;
    }
    out.className = "";
    out.textContent = `${action}...`;
    try {
      const reply = await fetch(`${api}/${action}`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const answer = await reply.json();
      out.className = reply.ok ? "ok" : "problem";
      out.textContent = reply.ok ? answer.message : answer.error;
    } catch (err) {
      out.className = "problem";
      out.textContent = String(err);
    }
  }

  return { jobsPage, jobPage };
})();
