// srserve web page: upload → poll → compare. Plain ES2020, no build step, no external requests.
// API paths are relative so the page also works when the service sits under a path prefix.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const el = {
    form: $("upload-form"), drop: $("drop-zone"), files: $("file-input"), fileSummary: $("file-summary"),
    fileList: $("file-list"), burstOptions: $("burst-options"), refFrame: $("reference-frame"),
    scale: $("scale"), model: $("model"), modelInfo: $("model-info"), format: $("format"),
    reference: $("reference"), apiKey: $("api-key"), submit: $("submit"),
    jobSection: $("job"), status: $("status"), progress: $("progress"), progressText: $("progress-text"),
    cancel: $("cancel"), error: $("error"),
    resultSection: $("result"), resultHeading: $("result-heading"), split: $("split"), zoom: $("zoom"),
    download: $("download"), viewport: $("viewport"), stage: $("stage"), canvas: $("bicubic-canvas"),
    img: $("result-img"), divider: $("divider"), bicubicNote: $("bicubic-note"), resultLabel: $("result-label"),
    legendResult: $("legend-result"), metrics: $("metrics"), framesBlock: $("frames-block"), frames: $("frames"),
  };

  const STATUS_TEXT = {
    queued: "Queued", running: "Running", succeeded: "Done", failed: "Failed", canceled: "Canceled",
  };
  const TERMINAL = new Set(["succeeded", "failed", "canceled"]);
  const OUTPUT_EXT = { png: "png", webp: "webp", jpeg: "jpg" };
  // Above this many output pixels the exact JS bicubic would stall the tab; the canvas resampler is used.
  const EXACT_BICUBIC_MAX_PIXELS = 24e6;

  const state = {
    models: [], selected: [], job: null, polling: null, resultUrl: null, generation: 0,
  };

  // ---------- HTTP ----------

  function headers(extra = {}) {
    const h = { Accept: "application/json", ...extra };
    const key = el.apiKey.value.trim();
    if (key) h.Authorization = `Bearer ${key}`;
    return h;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function retryAfterMs(response, attempt) {
    const value = response.headers.get("Retry-After");
    const secs = value === null ? NaN : Number(value);
    if (Number.isFinite(secs)) return Math.min(secs * 1000, 60000);
    const date = value ? Date.parse(value) : NaN;
    if (Number.isFinite(date)) return Math.min(Math.max(0, date - Date.now()), 60000);
    return Math.min(500 * 2 ** attempt, 10000);
  }

  class ApiError extends Error {
    constructor(status, code, message, detail) {
      super(message);
      this.status = status;
      this.code = code;
      this.detail = detail;
    }
  }

  // fetch with the service's "come back later" answers (429/503) retried after Retry-After
  async function api(path, options = {}, maxRetries = 6) {
    for (let attempt = 0; ; attempt++) {
      let response;
      try {
        response = await fetch(path, { ...options, headers: headers(options.headers) });
      } catch (err) {
        throw new ApiError(0, "network_error", `Cannot reach the service (${err.message}).`);
      }
      if ((response.status === 429 || response.status === 503) && attempt < maxRetries) {
        await sleep(retryAfterMs(response, attempt));
        continue;
      }
      if (response.ok) return response;
      let body = null;
      try { body = await response.json(); } catch { /* not JSON */ }
      if (body && body.error && body.error.code) {
        throw new ApiError(response.status, body.error.code, body.error.message, body.detail);
      }
      const msg = body && typeof body.detail === "string" ? body.detail : `${response.status} ${response.statusText}`;
      throw new ApiError(response.status, `http_${response.status}`, msg, body && body.detail);
    }
  }

  // ---------- formatting ----------

  function fmtCount(n) {
    if (n === null || n === undefined) return "?";
    if (n >= 1e9) return `${(n / 1e9).toFixed(1)} G`;
    if (n >= 1e6) return `${(n / 1e6).toFixed(1)} M`;
    if (n >= 1e3) return `${(n / 1e3).toFixed(1)} k`;
    return `${n} `;
  }

  const fmtSeconds = (s) => (s === null || s === undefined ? "–" : s < 1 ? `${(s * 1000).toFixed(0)} ms` : `${s.toFixed(2)} s`);

  function quality(model, scale) {
    const at = (model.quality || []).filter((q) => q.scale === scale);
    return at.find((q) => q.dataset.toLowerCase() === "set5") || at[0] || null;
  }

  // ---------- inputs ----------

  function currentFiles() {
    return Array.from(el.files.files || []);
  }

  function jobKind() {
    return currentFiles().length > 1 ? "burst" : "single";
  }

  function renderFiles() {
    const files = currentFiles();
    for (const img of el.fileList.querySelectorAll("img")) URL.revokeObjectURL(img.src);
    el.fileList.replaceChildren();
    if (files.length === 0) {
      el.fileSummary.textContent = "No file chosen.";
    } else if (files.length === 1) {
      el.fileSummary.textContent = `1 image: ${files[0].name} (${fmtCount(files[0].size)}B).`;
    } else {
      el.fileSummary.textContent = `Burst of ${files.length} frames: they will be fused into one image.`;
    }
    files.forEach((file, i) => {
      const li = document.createElement("li");
      const thumb = document.createElement("img");
      thumb.alt = "";
      thumb.src = URL.createObjectURL(file);
      const name = document.createElement("span");
      name.textContent = files.length > 1 ? `${i}: ${file.name}` : file.name;
      li.append(thumb, name);
      el.fileList.append(li);
    });
    el.burstOptions.hidden = files.length < 2;
    el.refFrame.replaceChildren(...files.map((f, i) => new Option(`${i}: ${f.name}`, String(i))));
    fillScales();
  }

  el.files.addEventListener("change", renderFiles);

  // Drag and drop onto the zone (the zone is also the file input's label, so click/Enter work too).
  for (const type of ["dragenter", "dragover"]) {
    el.drop.addEventListener(type, (ev) => {
      ev.preventDefault();
      ev.dataTransfer.dropEffect = "copy";
      el.drop.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "dragend"]) {
    el.drop.addEventListener(type, () => el.drop.classList.remove("dragging"));
  }
  el.drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    el.drop.classList.remove("dragging");
    const dropped = Array.from(ev.dataTransfer.files || []).filter((f) => !f.type || f.type.startsWith("image/"));
    if (dropped.length === 0) return;
    const dt = new DataTransfer();
    dropped.forEach((f) => dt.items.add(f));
    el.files.files = dt.files;
    renderFiles();
  });
  // Dropping a file elsewhere must not navigate away from the page.
  window.addEventListener("dragover", (ev) => ev.preventDefault());
  window.addEventListener("drop", (ev) => ev.preventDefault());

  // ---------- models ----------

  function modelsFor(kind, scale) {
    const frames = currentFiles().length;
    return state.models.filter((m) => m.kind === kind && (scale === null || m.scales.includes(scale))
      && (kind === "single" || (frames >= m.min_frames && frames <= m.max_frames)));
  }

  function fillScales() {
    const kind = jobKind();
    const previous = Number(el.scale.value) || 4;
    const scales = [...new Set(modelsFor(kind, null).flatMap((m) => m.scales))].sort((a, b) => a - b);
    if (scales.length === 0) scales.push(previous);
    el.scale.replaceChildren(...scales.map((s) => new Option(`×${s}`, String(s))));
    el.scale.value = String(scales.includes(previous) ? previous : scales.includes(4) ? 4 : scales[scales.length - 1]);
    fillModels();
  }

  function modelLabel(m, scale) {
    const parts = [m.name];
    const q = quality(m, scale);
    if (q) parts.push(`${q.dataset} ×${q.scale} ${q.psnr_y.toFixed(2)} dB`);
    if (m.flops_per_output_pixel) parts.push(`${fmtCount(m.flops_per_output_pixel)}FLOP/px`);
    return parts.join(" · ");
  }

  function fillModels() {
    const scale = Number(el.scale.value);
    const previous = el.model.value;
    const models = modelsFor(jobKind(), scale);
    state.selected = models;
    const def = models.find((m) => (m.default_for_scales || []).includes(scale));
    const options = [new Option(def ? `Default for ×${scale} (${def.name})` : `Default for ×${scale}`, "")];
    for (const m of models) options.push(new Option(modelLabel(m, scale), m.name));
    el.model.replaceChildren(...options);
    el.model.value = models.some((m) => m.name === previous) ? previous : "";
    describeModel();
  }

  function describeModel() {
    if (state.models.length === 0) return;
    const scale = Number(el.scale.value);
    const m = state.models.find((x) => x.name === el.model.value)
      || state.selected.find((x) => (x.default_for_scales || []).includes(scale));
    if (!m) {
      el.modelInfo.textContent = jobKind() === "burst"
        ? "No burst model accepts this many frames at this scale; the server will say what it can do."
        : "The server picks its best model for this scale.";
      return;
    }
    const q = quality(m, scale);
    const bits = [`${m.name}: ${m.architecture}`, `${fmtCount(m.params)}parameters`,
      `${fmtCount(m.flops_per_output_pixel)}FLOP per output pixel`];
    if (q) {
      bits.push(`measured ${q.dataset} ×${q.scale}: ${q.psnr_y.toFixed(2)} dB PSNR / ${q.ssim_y.toFixed(4)} SSIM`
        + (q.paper_psnr_y ? ` (paper: ${q.paper_psnr_y.toFixed(2)} dB)` : ""));
    }
    if (m.kind === "burst") bits.push(`${m.min_frames}–${m.max_frames} frames`);
    el.modelInfo.textContent = bits.join(" · ") + ".";
  }

  el.scale.addEventListener("change", fillModels);
  el.model.addEventListener("change", describeModel);

  async function loadModels() {
    try {
      const body = await (await api("v1/models")).json();
      state.models = body.models || [];
      fillScales();
    } catch (err) {
      el.modelInfo.textContent = `Could not load the model list (${err.message}); the server default will be used.`;
    }
  }

  // ---------- job ----------

  function setStatus(job) {
    const label = STATUS_TEXT[job.status] || job.status;
    let text = label;
    if (job.status === "queued" && job.queue_position !== null && job.queue_position !== undefined) {
      text += ` (position ${job.queue_position + 1} in the queue)`;
    }
    if (job.status === "running") text += ` with ${job.model} ×${job.scale}`;
    if (job.status === "succeeded") text = `Done: ${job.model} ×${job.scale}`;
    // aria-live announces only real changes: rewrite the text only when it differs
    if (el.status.textContent !== text) el.status.textContent = text;
    el.status.className = `status ${job.status}`;
    const pct = Math.round((job.status === "succeeded" ? 1 : job.progress || 0) * 100);
    el.progress.value = pct;
    el.progress.textContent = `${pct}%`;
    el.progressText.textContent = `${pct}%`;
    el.cancel.hidden = TERMINAL.has(job.status);
  }

  function showError(err) {
    const box = el.error;
    box.replaceChildren();
    const code = document.createElement("code");
    code.textContent = err.code || "error";
    box.append(code, document.createTextNode(`: ${err.message}`));
    const detail = err.detail;
    if (Array.isArray(detail) && detail.length && detail.every((d) => typeof d === "string")) {
      box.append(document.createTextNode(` (valid: ${detail.join(", ")})`));
    } else if (detail && typeof detail === "object" && !Array.isArray(detail)) {
      // e.g. {"valid_models": [...]} or {"supported_scales": [...]}: show what would have worked
      for (const [key, value] of Object.entries(detail)) {
        if (Array.isArray(value) && value.every((v) => typeof v !== "object")) {
          box.append(document.createTextNode(` (${key.replace(/_/g, " ")}: ${value.join(", ")})`));
        }
      }
    }
    box.hidden = false;
  }

  el.form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const files = currentFiles();
    el.error.hidden = true;
    if (files.length === 0) {
      el.jobSection.hidden = false;
      el.status.textContent = "";
      showError({ code: "no_input", message: "Choose or drop an image first." });
      el.files.focus();
      return;
    }
    const generation = ++state.generation; // a newer submission makes older polls stop
    const form = new FormData();
    if (files.length === 1) form.append("image", files[0], files[0].name);
    else {
      files.forEach((f) => form.append("frames", f, f.name));
      form.append("reference_frame", el.refFrame.value || "0");
    }
    form.append("scale", el.scale.value);
    if (el.model.value) form.append("model", el.model.value);
    form.append("format", el.format.value);
    if (el.reference.files && el.reference.files[0]) form.append("reference", el.reference.files[0]);

    el.submit.disabled = true;
    el.resultSection.hidden = true;
    el.jobSection.hidden = false;
    el.cancel.hidden = true;
    el.status.className = "status";
    el.status.textContent = "Uploading…";
    el.progress.value = 0;
    el.progressText.textContent = "0%";
    try {
      const job = await (await api("v1/upscale", { method: "POST", body: form })).json();
      state.job = job;
      setStatus(job);
      await poll(job.id, generation);
    } catch (err) {
      el.status.textContent = "Not accepted";
      el.status.className = "status failed";
      showError(err);
    } finally {
      if (generation === state.generation) el.submit.disabled = false;
    }
  });

  let longPoll = true; // off when the server has long polls off (SRSERVE_MAX_WAIT_S=0)

  async function poll(id, generation) {
    // long polls of 1 s: the answer comes the moment the job ends, and the progress bar moves every
    // second meanwhile; without them, exponential backoff with jitter
    for (let attempt = 0; generation === state.generation; attempt++) {
      let job;
      try {
        const query = longPoll ? "?wait=1" : "";
        job = await (await api(`v1/jobs/${encodeURIComponent(id)}${query}`)).json();
      } catch (err) {
        if (longPoll && err.code === "wait_too_long") { longPoll = false; continue; }
        throw err;
      }
      if (generation !== state.generation) return;
      state.job = job;
      setStatus(job);
      if (job.status === "succeeded") return showResult(job, generation);
      if (TERMINAL.has(job.status)) {
        if (job.error) showError(job.error);
        return;
      }
      if (longPoll) continue; // the server already held the request
      const base = Math.min(2000, 250 * 1.5 ** attempt);
      await sleep(base / 2 + Math.random() * base / 2);
    }
  }

  el.cancel.addEventListener("click", async () => {
    if (!state.job) return;
    try {
      await api(`v1/jobs/${encodeURIComponent(state.job.id)}`, { method: "DELETE" });
      el.status.textContent = "Canceling…";
    } catch (err) {
      showError(err);
    }
  });

  // ---------- result ----------

  function resultPath(job) {
    const url = (job.result && job.result.url) || (job.links && job.links.result) || `/v1/jobs/${job.id}/result`;
    // the service reports root-relative paths; keep them relative to this page's base
    return /^https?:/.test(url) ? url : url.replace(/^\//, "");
  }

  async function showResult(job, generation) {
    const blob = await (await api(resultPath(job), { headers: { Accept: "*/*" } })).blob();
    if (generation !== state.generation) return;
    if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
    state.resultUrl = URL.createObjectURL(blob);
    el.img.src = state.resultUrl;
    await el.img.decode();
    const w = el.img.naturalWidth;
    const h = el.img.naturalHeight;

    const files = currentFiles();
    const input = files.length > 1 ? files[Number(el.refFrame.value) || 0] : files[0];
    await drawBicubic(input, w, h);

    const stem = (files[0].name.replace(/\.[^.]+$/, "") || "result") + (files.length > 1 ? "_burst" : "");
    const ext = OUTPUT_EXT[(job.result && job.result.format) || el.format.value] || "png";
    el.download.href = state.resultUrl;
    el.download.download = `${stem}_x${job.scale}.${ext}`;
    el.download.setAttribute("aria-label", `Download result (${w}×${h}, ${ext.toUpperCase()})`);
    el.resultLabel.textContent = `the result of ${job.model}`;
    el.legendResult.textContent = `${job.model} ▶`;
    el.img.alt = `super-resolved result of ${job.model}, ${w}×${h}`;

    renderMetrics(job);
    el.resultSection.hidden = false;
    applyZoom();
    applySplit();
    el.resultHeading.focus({ preventScroll: false });
  }

  // MATLAB-style bicubic (Keys, a = -0.5, symmetric edges), the same kernel the service's `bicubic` model
  // uses, so "browser bicubic" is a faithful baseline, not the browser's own smoothing filter.
  function cubic(x) {
    const a = Math.abs(x);
    if (a <= 1) return 1.5 * a * a * a - 2.5 * a * a + 1;
    if (a < 2) return -0.5 * a * a * a + 2.5 * a * a - 4 * a + 2;
    return 0;
  }

  function contributions(inLen, outLen) {
    const scale = outLen / inLen;
    const taps = 6;
    const idx = new Int32Array(outLen * taps);
    const wts = new Float64Array(outLen * taps);
    for (let x = 0; x < outLen; x++) {
      const u = (x + 1) / scale + 0.5 * (1 - 1 / scale); // 1-based centre in input coordinates
      const left = Math.floor(u - 2);
      let sum = 0;
      for (let t = 0; t < taps; t++) {
        const j = left + t;
        const w = cubic(u - j);
        let k = j - 1; // 0-based, mirrored at the borders like MATLAB
        const period = 2 * inLen;
        k = ((k % period) + period) % period;
        if (k >= inLen) k = period - 1 - k;
        idx[x * taps + t] = k;
        wts[x * taps + t] = w;
        sum += w;
      }
      for (let t = 0; t < taps; t++) wts[x * taps + t] /= sum;
    }
    return { idx, wts, taps };
  }

  function bicubicResize(src, sw, sh, dw, dh) {
    // separable: rows first into a float buffer, then columns; RGBA without premultiplication
    const cx = contributions(sw, dw);
    const cy = contributions(sh, dh);
    const tmp = new Float32Array(dw * sh * 4);
    for (let y = 0; y < sh; y++) {
      const row = y * sw * 4;
      for (let x = 0; x < dw; x++) {
        let r = 0, g = 0, b = 0, a = 0;
        for (let t = 0; t < cx.taps; t++) {
          const w = cx.wts[x * cx.taps + t];
          if (w === 0) continue;
          const p = row + cx.idx[x * cx.taps + t] * 4;
          r += w * src[p]; g += w * src[p + 1]; b += w * src[p + 2]; a += w * src[p + 3];
        }
        const q = (y * dw + x) * 4;
        tmp[q] = r; tmp[q + 1] = g; tmp[q + 2] = b; tmp[q + 3] = a;
      }
    }
    const out = new Uint8ClampedArray(dw * dh * 4); // clamps and rounds half to even, like the service
    for (let y = 0; y < dh; y++) {
      for (let x = 0; x < dw; x++) {
        let r = 0, g = 0, b = 0, a = 0;
        for (let t = 0; t < cy.taps; t++) {
          const w = cy.wts[y * cy.taps + t];
          if (w === 0) continue;
          const p = (cy.idx[y * cy.taps + t] * dw + x) * 4;
          r += w * tmp[p]; g += w * tmp[p + 1]; b += w * tmp[p + 2]; a += w * tmp[p + 3];
        }
        const q = (y * dw + x) * 4;
        out[q] = r; out[q + 1] = g; out[q + 2] = b; out[q + 3] = a;
      }
    }
    return out;
  }

  async function drawBicubic(file, w, h) {
    const canvas = el.canvas;
    canvas.width = w;
    canvas.height = h;
    const ctx = canvas.getContext("2d");
    // raw pixel values: no colour management, no premultiplied alpha, so they match what the server saw
    const bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    if (w * h <= EXACT_BICUBIC_MAX_PIXELS) {
      const src = document.createElement("canvas");
      src.width = bitmap.width;
      src.height = bitmap.height;
      const sctx = src.getContext("2d", { willReadFrequently: true });
      sctx.drawImage(bitmap, 0, 0);
      const pixels = sctx.getImageData(0, 0, bitmap.width, bitmap.height).data;
      const out = bicubicResize(pixels, bitmap.width, bitmap.height, w, h);
      ctx.putImageData(new ImageData(out, w, h), 0, 0);
      el.bicubicNote.textContent = `Browser bicubic: your ${bitmap.width}×${bitmap.height} input enlarged to `
        + `${w}×${h} by this page with the MATLAB bicubic kernel (the baseline the metrics compare against).`;
      canvas.dataset.method = "exact";
    } else {
      ctx.imageSmoothingEnabled = true;
      ctx.imageSmoothingQuality = "high";
      ctx.drawImage(bitmap, 0, 0, w, h);
      el.bicubicNote.textContent = `Browser bicubic: the image is large, so the browser's own high-quality `
        + `resampler enlarged your ${bitmap.width}×${bitmap.height} input (close to, not exactly, bicubic).`;
      canvas.dataset.method = "canvas";
    }
    bitmap.close();
  }

  // ---------- comparison view ----------

  function zoomFactor() {
    const w = el.img.naturalWidth || 1;
    const dpr = window.devicePixelRatio || 1;
    if (el.zoom.value === "fit") {
      const avail = el.viewport.clientWidth - 2;
      return Math.min(1, (avail * dpr) / w); // never enlarge in "fit": that is what the zoom steps are for
    }
    return Number(el.zoom.value);
  }

  function applyZoom() {
    const z = zoomFactor();
    const dpr = window.devicePixelRatio || 1;
    // 100 % = one image pixel per device pixel, so the comparison is pixel-exact on HiDPI screens too
    el.stage.style.width = `${(el.img.naturalWidth * z) / dpr}px`;
    el.stage.style.height = `${(el.img.naturalHeight * z) / dpr}px`;
    el.stage.classList.toggle("pixelated", z >= 1);
    el.stage.dataset.zoom = String(z);
  }

  function applySplit() {
    const v = Number(el.split.value);
    el.img.style.clipPath = `inset(0 0 0 ${v}%)`;
    el.divider.style.left = `${v}%`;
    el.split.setAttribute("aria-valuetext", `${v}% browser bicubic on the left, ${100 - v}% result on the right`);
  }

  el.split.addEventListener("input", applySplit);
  el.zoom.addEventListener("change", applyZoom);
  window.addEventListener("resize", () => { if (!el.resultSection.hidden && el.zoom.value === "fit") applyZoom(); });

  // dragging on the picture moves the split line too
  let dragging = false;
  function splitFromPointer(ev) {
    const rect = el.stage.getBoundingClientRect();
    const v = Math.round(((ev.clientX - rect.left) / rect.width) * 100);
    el.split.value = String(Math.max(0, Math.min(100, v)));
    applySplit();
  }
  el.stage.addEventListener("pointerdown", (ev) => {
    dragging = true;
    el.stage.setPointerCapture(ev.pointerId);
    splitFromPointer(ev);
  });
  el.stage.addEventListener("pointermove", (ev) => { if (dragging) splitFromPointer(ev); });
  el.stage.addEventListener("pointerup", () => { dragging = false; });
  el.stage.addEventListener("pointercancel", () => { dragging = false; });

  // ---------- metrics ----------

  function metric(name, value, explain, key) {
    const box = document.createElement("div");
    box.className = "metric" + (value === null ? " missing" : "");
    if (key) box.dataset.metric = key;
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    const v = document.createElement("span");
    v.className = "value";
    v.textContent = value === null ? "not measured" : value;
    const e = document.createElement("span");
    e.className = "explain";
    e.textContent = explain;
    dd.append(v, e);
    box.append(dt, dd);
    return box;
  }

  function renderMetrics(job) {
    const m = job.metrics || {};
    const t = m.timings || {};
    const has = (x) => x !== null && x !== undefined;
    const noRef = "Upload the real high-resolution image as reference to measure this.";
    const items = [
      metric("PSNR vs reference", has(m.psnr_y) ? `${m.psnr_y.toFixed(2)} dB` : null,
        has(m.psnr_y) ? "How close the result is to the reference on brightness (Y), in dB: higher is better; +1 dB is clearly visible."
          : noRef, "psnr"),
      metric("SSIM vs reference", has(m.ssim_y) ? m.ssim_y.toFixed(4) : null,
        has(m.ssim_y) ? "Structural similarity to the reference (0 to 1): how well edges and textures match; 1 is identical."
          : noRef, "ssim"),
      metric("Gain over bicubic", has(m.psnr_y) && has(m.bicubic_psnr_y) ? `${(m.psnr_y - m.bicubic_psnr_y >= 0 ? "+" : "")}${(m.psnr_y - m.bicubic_psnr_y).toFixed(2)} dB` : null,
        has(m.bicubic_psnr_y) ? `PSNR of the result minus that of plain bicubic (${m.bicubic_psnr_y.toFixed(2)} dB`
          + `${has(m.bicubic_ssim_y) ? `, SSIM ${m.bicubic_ssim_y.toFixed(4)}` : ""}): what the model adds over simple enlargement.`
          : noRef, "gain"),
      metric("LR-consistency", has(m.lr_consistency_psnr) ? `${m.lr_consistency_psnr.toFixed(2)} dB` : null,
        "The result shrunk back to the input size, compared with your input (PSNR): high means the result agrees with what you uploaded.",
        "lr_consistency"),
      metric("Time", has(t.total_s) ? fmtSeconds(t.total_s) : null,
        `Server time in total: queue ${fmtSeconds(t.queue_wait_s)}, decode ${fmtSeconds(t.decode_s)}, `
        + `model ${fmtSeconds(t.inference_s)}, encode ${fmtSeconds(t.encode_s)}, metrics ${fmtSeconds(t.metrics_s)}.`,
        "timings"),
      metric("Ran on", m.device || null,
        `Model ${m.model || job.model}` + (m.weights_sha256 ? `, weights sha256 ${m.weights_sha256.slice(0, 12)}…` : "")
        + (has(m.tiles) ? `, ${m.tiles} tile(s)` : "") + (has(m.batch_size) ? `, batch of ${m.batch_size}` : "")
        + (m.precision ? `, ${m.precision}` : "") + ".",
        "device"),
    ];
    if (job.result) {
      items.push(metric("Output", `${job.result.width}×${job.result.height}`,
        `${job.result.format.toUpperCase()}, ${fmtCount(job.result.bytes)}B` + (job.input ? `, from a ${job.input.width}×${job.input.height} input.` : "."),
        "output"));
    }
    if (m.notes && m.notes.length) {
      items.push(metric("Conversions", `${m.notes.length}`, m.notes.join("; "), "notes"));
    }
    el.metrics.replaceChildren(...items);

    const frames = m.frames || [];
    el.framesBlock.hidden = frames.length === 0;
    el.frames.tBodies[0].replaceChildren(...frames.map((f) => {
      const tr = document.createElement("tr");
      if (f.rejected) tr.className = "rejected";
      const cells = [String(f.index), f.shift_x.toFixed(3), f.shift_y.toFixed(3), f.weight.toFixed(3),
        f.rejected ? `no${f.reason ? ` (${f.reason})` : ""}` : "yes"];
      for (const c of cells) {
        const td = document.createElement("td");
        td.textContent = c;
        tr.append(td);
      }
      return tr;
    }));
  }

  loadModels();
})();
