// The demo page's logic: submit an upload, poll the job with backoff, show the result.
// Plain browser JavaScript, no library and no build step, so it works offline.
"use strict";

const form = document.getElementById("job-form");
const fileInput = document.getElementById("file");
const submitButton = document.getElementById("submit");

// Polling backoff: quick at first (most jobs finish in well under a second), then slower.
const POLL_FIRST_MS = 150;
const POLL_FACTOR = 1.5;
const POLL_MAX_MS = 2000;
const POLL_GIVE_UP_MS = 120000;

// Error codes of the API (project/README.md) that are about the uploaded file itself.
const FILE_ERRORS = new Set([
  "upload_too_large", "unsupported_image", "truncated_image", "invalid_image", "too_many_pixels",
]);

let originalUrl = null;
let resultUrl = null;

function selectedOperation() {
  return form.querySelector("input[name=operation]:checked").value;
}

function paramsBlock(op) {
  return form.querySelector(`.params[data-op="${op}"]`);
}

function showOperationParams() {
  const op = selectedOperation();
  for (const block of form.querySelectorAll(".params")) {
    block.hidden = block.dataset.op !== op;
  }
}

// ---------------------------------------------------------------- errors next to fields

function clearErrors() {
  for (const el of document.querySelectorAll(".field-error")) {
    el.hidden = true;
    el.textContent = "";
  }
  for (const el of form.querySelectorAll(".invalid")) el.classList.remove("invalid");
}

function showError(element, message) {
  element.textContent = message;
  element.hidden = false;
}

// Put the API's error next to the field it concerns: the file, one parameter, or the form.
function showApiError(status, body) {
  const error = (body && body.error) || {};
  const code = error.code || "http_error";
  const message = `${status} ${code}: ${error.message || "the server gave no reason"}`;
  if (FILE_ERRORS.has(code)) {
    fileInput.classList.add("invalid");
    showError(document.getElementById("file-error"), message);
    return;
  }
  if (code === "validation_error" && Array.isArray(error.details)) {
    let placed = false;
    for (const detail of error.details) {
      const field = (detail.loc || [])[1];
      const target = field === "file"
        ? document.getElementById("file-error")
        : paramsBlock(selectedOperation()).querySelector(`.field-error[data-for="${field}"]`);
      if (target) {
        const input = field === "file"
          ? fileInput : paramsBlock(selectedOperation()).querySelector(`[name="${field}"]`);
        if (input) input.classList.add("invalid");
        showError(target, `${status} ${code}: ${field}: ${detail.msg}`);
        placed = true;
      }
    }
    if (placed) return;
  }
  if (code === "invalid_parameters" || code === "validation_error") {
    showError(document.getElementById("params-error"), message);
    return;
  }
  showError(document.getElementById("form-error"), message);
}

// ---------------------------------------------------------------- submit and poll

function formData(op, file) {
  const data = new FormData();
  data.append("file", file, file.name);
  const block = paramsBlock(op);
  for (const input of block.querySelectorAll("input, select")) {
    if (input.type === "checkbox") {
      data.append(input.name, input.checked ? "true" : "false");
    } else if (input.value !== "") {
      data.append(input.name, input.value);
    }
  }
  return data;
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null; // e.g. an HTML error page from a proxy
  }
}

function setStatus(status, started) {
  const el = document.getElementById("status");
  if (el.dataset.status === status) return;
  el.dataset.status = status;
  el.textContent = status;
  el.className = `status-${status}`;
  const item = document.createElement("li");
  item.textContent = `${status} (+${Math.round(performance.now() - started)} ms)`;
  document.getElementById("status-log").append(item);
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function pollUntilFinished(taskId, started) {
  let delay = POLL_FIRST_MS;
  while (performance.now() - started < POLL_GIVE_UP_MS) {
    const response = await fetch(`/task-status/${taskId}`, { cache: "no-store" });
    const body = await readJson(response);
    if (!response.ok) throw new Error(`${response.status}: ${body?.error?.message ?? "no answer"}`);
    setStatus(body.status, started);
    if (body.status === "done" || body.status === "failed") return body;
    await sleep(delay);
    delay = Math.min(delay * POLL_FACTOR, POLL_MAX_MS);
  }
  throw new Error(`the job did not finish within ${POLL_GIVE_UP_MS / 1000} s`);
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(2)} MiB`;
}

function imageLoaded(img) {
  return new Promise((resolve, reject) => {
    if (img.complete && img.naturalWidth > 0) resolve();
    img.onload = () => resolve();
    img.onerror = () => reject(new Error("the browser could not display the image"));
  });
}

async function showResult(taskId, status, file) {
  const response = await fetch(`/result/${taskId}`);
  if (!response.ok) {
    const body = await readJson(response);
    throw new Error(`${response.status}: ${body?.error?.message ?? "no result"}`);
  }
  const blob = await response.blob();
  if (resultUrl) URL.revokeObjectURL(resultUrl);
  resultUrl = URL.createObjectURL(blob);
  const img = document.getElementById("result");
  img.src = resultUrl;
  await imageLoaded(img);
  img.dataset.naturalWidth = String(img.naturalWidth);
  img.dataset.naturalHeight = String(img.naturalHeight);
  const output = status.output || {};
  document.getElementById("result-size").textContent =
    `${img.naturalWidth}x${img.naturalHeight}, ${formatBytes(blob.size)}, ${output.format ?? blob.type}`;
  const link = document.getElementById("download");
  const extension = (output.format || "img").toLowerCase().replace("jpeg", "jpg");
  const stem = file.name.replace(/\.[^.]*$/, "") || "image";
  link.href = resultUrl;
  link.download = `${stem}-${status.operation}.${extension}`;
  document.getElementById("compare").hidden = false;
  document.getElementById("compare").dataset.ready = "true";
}

async function showOriginal(file) {
  if (originalUrl) URL.revokeObjectURL(originalUrl);
  originalUrl = URL.createObjectURL(file);
  const img = document.getElementById("original");
  img.src = originalUrl;
  try {
    await imageLoaded(img);
    document.getElementById("original-size").textContent =
      `${img.naturalWidth}x${img.naturalHeight}, ${formatBytes(file.size)}`;
  } catch {
    document.getElementById("original-size").textContent = formatBytes(file.size);
  }
}

function resetJobView() {
  document.getElementById("job").hidden = true;
  document.getElementById("compare").hidden = true;
  delete document.getElementById("compare").dataset.ready;
  document.getElementById("status-log").replaceChildren();
  const status = document.getElementById("status");
  status.dataset.status = "";
  status.textContent = "-";
  const result = document.getElementById("result");
  result.removeAttribute("src");
  delete result.dataset.naturalWidth;
  delete result.dataset.naturalHeight;
}

async function submit(event) {
  event.preventDefault();
  clearErrors();
  const file = fileInput.files[0];
  if (!file) {
    fileInput.classList.add("invalid");
    showError(document.getElementById("file-error"), "choose an image file first");
    return;
  }
  const op = selectedOperation();
  submitButton.disabled = true;
  resetJobView();
  const started = performance.now();
  try {
    const response = await fetch(`/${op}`, { method: "POST", body: formData(op, file) });
    const body = await readJson(response);
    if (!response.ok) {
      showApiError(response.status, body);
      return;
    }
    document.getElementById("job").hidden = false;
    document.getElementById("task-id").textContent = body.task_id;
    const cache = document.getElementById("cache");
    cache.hidden = false;
    cache.dataset.cacheHit = String(body.cache_hit);
    cache.textContent = body.cache_hit ? "cache hit: identical earlier request" : "new job";
    cache.className = body.cache_hit ? "badge hit" : "badge miss";
    setStatus(body.status, started);
    const [status] = await Promise.all([pollUntilFinished(body.task_id, started), showOriginal(file)]);
    if (status.status === "failed") {
      showError(document.getElementById("job-error"), `the job failed: ${status.error}`);
      return;
    }
    await showResult(body.task_id, status, file);
  } catch (error) {
    showError(document.getElementById("form-error"), String(error.message || error));
  } finally {
    submitButton.disabled = false;
  }
}

for (const radio of form.querySelectorAll("input[name=operation]")) {
  radio.addEventListener("change", () => {
    clearErrors();
    showOperationParams();
  });
}
form.addEventListener("submit", submit);
showOperationParams();

// What /readyz says, refreshed every 10 s: a class sees at once when a backing service or the
// data disk fails (`degraded`: the API answers, but e.g. new uploads are refused).
async function showReadiness() {
  const line = document.getElementById("service");
  let text, state;
  try {
    const response = await fetch("/readyz", { cache: "no-store" });
    const body = (await readJson(response)) || {};
    const checks = body.checks || (body.error && body.error.details) || {};
    const failing = Object.entries(checks)
      .filter(([, result]) => result !== "ok")
      .map(([name, result]) => `${name}: ${result}`);
    if (response.ok) {
      state = body.status === "ready" ? "ready" : "degraded";
    } else {
      state = "not-ready";
    }
    text = `service: ${state.replace("-", " ")}` + (failing.length ? ` (${failing.join("; ")})` : "");
  } catch (error) {
    state = "unreachable";
    text = `service: unreachable (${error.message || error})`;
  }
  line.className = `service ${state}`;
  line.textContent = text;
}
showReadiness();
setInterval(showReadiness, 10000);
