// imgcdn: the one script. Every form works without it; this only adds
// drag and drop, paste, several files with progress bars, and copy
// buttons. Served from our own origin (the Content-Security-Policy allows
// no inline script and no other origin).
"use strict";

function csrfToken() {
  const m = document.querySelector('meta[name="csrf-token"]');
  return m ? m.content : "";
}

// Copy buttons: <button data-copy="#input-id"> or data-copy-text="…".
function setupCopy() {
  document.querySelectorAll("[data-copy], [data-copy-text]").forEach((b) => {
    b.hidden = false;
    b.addEventListener("click", async (e) => {
      e.preventDefault();
      const target = b.dataset.copy ? document.querySelector(b.dataset.copy) : null;
      const text = target ? target.value : b.dataset.copyText;
      try {
        await navigator.clipboard.writeText(text);
      } catch (_) {
        if (target) { target.select(); document.execCommand("copy"); }
      }
      const was = b.textContent;
      b.textContent = "Copied";
      setTimeout(() => { b.textContent = was; }, 1500);
    });
  });
}

// Buttons that ask first: <button data-confirm="Delete this image?">.
function setupConfirm() {
  document.querySelectorAll("[data-confirm]").forEach((b) => {
    b.addEventListener("click", (e) => {
      if (!window.confirm(b.dataset.confirm)) e.preventDefault();
    });
  });
}

function describeError(xhr) {
  try {
    const body = JSON.parse(xhr.responseText);
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return xhr.status ? "Upload failed (" + xhr.status + ")." : "Upload failed: the connection was lost.";
}

// One file to POST /v1/images with a progress bar; resolves to the image or null.
function sendFile(form, file, list) {
  return new Promise((resolve) => {
    const li = document.createElement("li");
    const name = document.createElement("div");
    name.textContent = file.name || "pasted image";
    const bar = document.createElement("progress");
    bar.max = 100; bar.value = 0;
    bar.setAttribute("aria-label", "Uploading " + (file.name || "image"));
    const status = document.createElement("div");
    status.setAttribute("role", "status");
    li.append(name, bar, status);
    list.append(li);
    const data = new FormData();
    data.append("file", file, file.name || "pasted.png");
    const caption = form.querySelector('[name="caption"]');
    if (caption && caption.value) data.append("caption", caption.value);
    const visibility = form.querySelector('[name="public"]');
    if (visibility && visibility.type === "checkbox") data.append("public", visibility.checked ? "true" : "false");
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/v1/images");
    const token = csrfToken();
    if (token) xhr.setRequestHeader("X-CSRF-Token", token);
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) bar.value = Math.round((e.loaded / e.total) * 100);
    });
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        bar.value = 100;
        const image = JSON.parse(xhr.responseText);
        showResult(status, image);
        resolve(image);
      } else {
        status.className = "error";
        status.textContent = describeError(xhr);
        resolve(null);
      }
    });
    xhr.addEventListener("error", () => {
      status.className = "error";
      status.textContent = describeError(xhr);
      resolve(null);
    });
    xhr.send(data);
  });
}

function showResult(status, image) {
  status.textContent = "";
  const row = document.createElement("div");
  row.className = "copy-row";
  const input = document.createElement("input");
  input.type = "text"; input.readOnly = true; input.value = image.url;
  input.setAttribute("aria-label", "Image link");
  const copy = document.createElement("button");
  copy.type = "button"; copy.className = "small"; copy.textContent = "Copy link";
  copy.addEventListener("click", async () => {
    try { await navigator.clipboard.writeText(input.value); } catch (_) { input.select(); document.execCommand("copy"); }
    copy.textContent = "Copied";
  });
  row.append(input, copy);
  const page = document.createElement("a");
  page.href = image.page_url; page.textContent = "View page";
  const when = document.createElement("p");
  when.className = "hint";
  when.textContent = image.expires_at
    ? "Deleted automatically on " + new Date(image.expires_at).toUTCString() + "."
    : "Kept until you delete it.";
  status.append(row, page, when);
}

// <form data-upload> around <input type=file>: drop, paste, progress.
function setupUpload() {
  document.querySelectorAll("form[data-upload]").forEach((form) => {
    const input = form.querySelector('input[type="file"]');
    // Several files at once only with the script: the form alone sends one.
    input.multiple = true;
    const drop = form.querySelector("label.drop") || form;
    let list = form.parentElement.querySelector("ul.uploads");
    if (!list) {
      list = document.createElement("ul");
      list.className = "uploads";
      form.after(list);
    }
    const run = async (files) => {
      files = Array.from(files).filter((f) => f && f.size >= 0);
      if (!files.length) return;
      const done = [];
      for (const f of files) done.push(await sendFile(form, f, list));
      const ok = done.filter(Boolean).length;
      if (form.dataset.upload === "reload" && ok) {
        window.location.assign(window.location.pathname + "?uploaded=" + ok);
      }
    };
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      run(input.files).then(() => { input.value = ""; });
    });
    ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
    ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove("over"); }));
    drop.addEventListener("drop", (e) => run(e.dataTransfer.files));
    if (form.dataset.paste !== undefined) {
      document.addEventListener("paste", (e) => {
        const files = Array.from(e.clipboardData ? e.clipboardData.files : []);
        if (files.length) { e.preventDefault(); run(files); }
      });
    }
  });
}

// Select-all for the batch delete form.
function setupSelectAll() {
  document.querySelectorAll("[data-select-all]").forEach((box) => {
    box.hidden = false;
    box.addEventListener("change", () => {
      document.querySelectorAll(box.dataset.selectAll).forEach((c) => { c.checked = box.checked; });
    });
  });
}

document.addEventListener("DOMContentLoaded", () => {
  setupCopy();
  setupConfirm();
  setupUpload();
  setupSelectAll();
});
