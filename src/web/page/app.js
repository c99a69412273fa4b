// Earshot web page: live levels, class evidence, per-class tuning, events and status.
// Plain browser JavaScript, no dependencies. Every URL is relative, so the page works both at
// "/" on a host and under "/local/earshot/" on a camera.
"use strict";
(function () {
  // ---- Constants --------------------------------------------------------------------------

  const CLASSES = [
    { id: "glass_break", label: "Glass break" },
    { id: "aggression", label: "Aggression" },
    { id: "gunshot", label: "Gunshot / explosion" },
    { id: "speech", label: "Speech" },
  ];
  const WINDOW_S = 60; // seconds of audio shown by the graphs
  const MAX_LEVEL_POINTS = 1500; // hard caps, whatever the server's rate
  const MAX_PATCHES = 400;
  const MAX_EVENTS = 100;
  const MAX_MARKERS = 100;
  const STATUS_EVERY_MS = 2000;
  const GAP_S = 1.0; // a hole in the level data longer than this breaks the line
  const MINUS = "\u2212";
  const COLORS = {
    laf: "#1d5fa7", leq: "#e08a1e", bg: "#7d8a98", thr: "#c0392b",
    grid: "#e9edf1", axis: "#5f6b78", loud: "#b7791f",
  };
  const KIND = {
    detection_start: "detection start",
    detection: "detection",
    detection_stop: "detection end",
    loud_noise_start: "Loud noise start",
    loud_noise_stop: "Loud noise end",
    spl_summary: "Level summary",
    audio_input_lost: "Audio input lost",
    audio_input_restored: "Audio input restored",
  };

  // ---- Small helpers ----------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  const isNum = (v) => typeof v === "number" && isFinite(v);
  const num = (v) => (isNum(v) ? v : null);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => "&#" + c.charCodeAt(0) + ";");
  const labelOf = (cls) => (CLASSES.find((c) => c.id === cls) || { label: cls }).label;

  // A number with a real minus sign, e.g. "−40.1".
  function fmtNum(v, digits) {
    const s = Math.abs(v).toFixed(digits);
    return (v < 0 && Number(s) !== 0 ? MINUS : "") + s;
  }
  // A dBFS value in the display unit: dB SPL when calibrated.
  function fmtLevel(dbfs) {
    if (!isNum(dbfs)) return "–";
    return state.offset != null ? fmtNum(dbfs + state.offset, 1) + " dB SPL" : fmtNum(dbfs, 1) + " dBFS";
  }
  function unit() {
    return state.offset != null ? "dB SPL" : "dBFS";
  }
  // Seconds as "12.3 s", "4:05" or "1:02:03".
  function fmtDur(s) {
    if (!isNum(s)) return "–";
    if (s < 100) return s.toFixed(1) + " s";
    const t = Math.floor(s), h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), sec = t % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(sec).padStart(2, "0");
  }
  // Axis label for audio time; `t1` (the right edge) picks one format for the whole axis.
  function fmtAxisT(t, t1) {
    if (t1 < 100) return Math.round(t) + " s";
    const r = Math.round(t), h = Math.floor(r / 3600), m = Math.floor((r % 3600) / 60), sec = r % 60;
    return (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + String(sec).padStart(2, "0");
  }
  function fmtWall(iso) {
    const d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    return d.toLocaleTimeString([], { hour12: false });
  }

  // ---- State ------------------------------------------------------------------------------

  const state = {
    settings: null,
    offset: null, // calibration offset in dB, null when uncalibrated
    levels: [], // {t, laf, leq, bg} in dBFS, oldest first
    patches: [], // {t, hop, s: {class: score}}, oldest first
    markers: [], // {t, color, test}: event onsets drawn on the level graph
    now: 0, // latest audio time seen, seconds
    lastLaf: null,
    yRange: null, // level graph range in display units, kept stable between frames
  };
  const earshot = (window.earshot = { levelPoints: 0, patches: 0, events: 0 });

  // Token from "#token=XYZ": a bearer header on fetches, a query parameter on the event stream.
  const token = (function () {
    const m = /[#&]token=([^&]*)/.exec(location.hash);
    return m && m[1] ? decodeURIComponent(m[1]) : null;
  })();

  // ---- Elements ---------------------------------------------------------------------------

  const levelCanvas = $("level-graph");
  const levelNow = $("level-now");
  const liveState = $("live-state");
  const saveState = $("save-state");
  const message = $("message");
  const statusBox = $("status");
  const statusAge = $("status-age");
  const evList = $("events");
  const calInput = $("calibration");
  const calErr = $("err-calibration");

  const rows = {}; // per class: its controls
  for (const c of CLASSES) {
    const row = document.querySelector('.det[data-class="' + c.id + '"]');
    rows[c.id] = {
      row,
      color: (getComputedStyle(row).getPropertyValue("--c") || "#1d5fa7").trim(),
      score: $("score-" + c.id),
      now: $("now-" + c.id),
      sens: $("sens-" + c.id),
      sensVal: $("sensval-" + c.id),
      enabled: $("enabled-" + c.id),
      test: $("test-" + c.id),
      name: row.querySelector(".switch span"),
      thr: $("thr-" + c.id),
      err: $("err-" + c.id),
    };
  }

  // ---- Messages ---------------------------------------------------------------------------

  let messageTimer = null;
  // kind: "ok" | "info" | "error"; errors stay until dismissed (click) or replaced.
  function showMessage(text, kind) {
    clearTimeout(messageTimer);
    message.className = "message " + (kind || "info");
    message.textContent = text;
    if (kind !== "error") messageTimer = setTimeout(() => (message.textContent = ""), 6000);
  }
  message.addEventListener("click", () => (message.textContent = ""));

  function setSaveState(text, kind) {
    saveState.textContent = text;
    saveState.className = "save-state " + (kind || "");
  }

  let authRefused = false;
  function authFailed(status) {
    authRefused = true;
    showMessage(
      "Not authorized (HTTP " + status + "). " +
        (token
          ? "The access token in the page address was refused."
          : "Log in to the device again, or open this page with #token=… in the address."),
      "error"
    );
  }

  // ---- API --------------------------------------------------------------------------------

  // One request; resolves to {status, data} (data: parsed JSON or null). Rejects on network errors.
  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), 8000);
    try {
      const res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        signal: ctl.signal,
      });
      let data = null;
      const text = await res.text();
      if (text) {
        try { data = JSON.parse(text); } catch (_) { data = null; }
      }
      if (res.status === 401 || res.status === 403) authFailed(res.status);
      else if (res.ok && authRefused) { authRefused = false; }
      return { status: res.status, data };
    } finally {
      clearTimeout(timer);
    }
  }
  const isAuth = (r) => r.status === 401 || r.status === 403;
  const netError = (e) => (e && e.name === "AbortError" ? "no answer (timeout)" : "cannot reach Earshot");

  // ---- Settings ---------------------------------------------------------------------------

  function classSettings(cls) {
    const s = state.settings;
    return s && Array.isArray(s.classes) ? s.classes.find((c) => c.class === cls) || null : null;
  }

  // Show settings (from GET or a successful PUT) in every control and redraw thresholds.
  function applySettings(s) {
    if (!s || !Array.isArray(s.classes)) return;
    state.settings = s;
    const level = s.level || {};
    state.offset = num(level.calibration_offset_db);
    for (const c of s.classes) {
      const r = rows[c.class];
      if (!r) continue;
      if (isNum(c.sensitivity)) {
        r.sens.value = String(c.sensitivity);
        r.sensVal.textContent = String(c.sensitivity);
      }
      if (c.label && r.name.textContent !== c.label) r.name.textContent = c.label;
      r.sens.disabled = false;
      r.enabled.disabled = false;
      r.enabled.checked = !!c.enabled;
      r.row.classList.toggle("disabled", !c.enabled);
      r.thr.textContent = isNum(c.on_threshold)
        ? "on \u2265 " + c.on_threshold.toFixed(2) + " \u00b7 off < " + num(c.off_threshold).toFixed(2)
        : "";
    }
    // Calibration and loud-noise settings.
    calInput.disabled = false;
    if (document.activeElement !== calInput) calInput.value = state.offset == null ? "" : String(state.offset);
    $("cal-state").textContent =
      state.offset == null
        ? "Uncalibrated: levels are shown in dBFS. Enter the offset to show dB SPL."
        : "Calibrated: dB SPL = dBFS + " + state.offset.toFixed(1) + " dB. Levels are shown in dB SPL.";
    const adaptive = !!level.adaptive_loud_noise;
    const margin = num(level.adaptive_margin_db);
    const abs = num(level.loud_noise_dbfs);
    $("loud-settings").innerHTML =
      "<dt>Loud noise, adaptive</dt><dd>" +
      (adaptive ? "background + " + (margin == null ? "?" : margin.toFixed(1)) + " dB" : "off") +
      "</dd><dt>Loud noise, absolute</dt><dd>" +
      (abs == null ? "off" : esc(fmtNum(abs, 1) + " dBFS" + (state.offset != null ? " (" + fmtLevel(abs) + ")" : ""))) +
      "</dd>";
    $("legend-adaptive").classList.toggle("hide", !adaptive);
    $("legend-absolute").classList.toggle("hide", abs == null);
    $("persist").innerHTML =
      s.file == null
        ? "Changes apply live only and are <b>not persisted</b>: they are lost when Earshot restarts."
        : "Changes are saved to <code>" + esc(s.file) + "</code>.";
    levelNow.textContent = fmtLevel(state.lastLaf);
    state.yRange = null;
    schedule(true, true);
    updateHotScores();
  }

  function clearErrors() {
    for (const c of CLASSES) rows[c.id].err.textContent = "";
    calErr.textContent = "";
  }

  // The element showing errors for a config key such as "detectors.glass_break.sensitivity".
  function errorTarget(key) {
    const m = /^detectors\.([a-z_]+)\b/.exec(key || "");
    if (m && rows[m[1]]) return rows[m[1]].err;
    if (/^level\.calibration/.test(key || "")) return calErr;
    return null;
  }

  // PUT a partial config; `what` describes the change for the confirmation message.
  async function putSettings(body, what) {
    clearErrors();
    setSaveState("saving…", "");
    let r;
    try {
      r = await api("PUT", "api/settings", body);
    } catch (e) {
      setSaveState("failed", "bad");
      showMessage("Not saved: " + netError(e) + ".", "error");
      applySettings(state.settings);
      return;
    }
    if (r.status === 200 && r.data && Array.isArray(r.data.classes)) {
      applySettings(r.data);
      const persisted = r.data.file != null;
      setSaveState(persisted ? "saved" : "saved (not persisted)", "ok");
      showMessage("Saved: " + what + (persisted ? "." : " (live only, not persisted)."), "ok");
      return;
    }
    if (r.status === 400) {
      setSaveState("refused", "bad");
      const errors = (r.data && Array.isArray(r.data.errors) && r.data.errors) || [];
      const lines = errors.map((e) => {
        const text = (e.key || "?") + " = " + (e.value == null ? "?" : e.value) + ": " + (e.expected || "invalid");
        const target = errorTarget(e.key);
        if (target) target.textContent = (target.textContent ? target.textContent + "; " : "") + text;
        return "\u2022 " + text;
      });
      showMessage("Refused, nothing was changed." + (lines.length ? "\n" + lines.join("\n") : ""), "error");
    } else if (isAuth(r)) {
      setSaveState("not authorized", "bad");
    } else {
      setSaveState("failed", "bad");
      showMessage("Not saved: HTTP " + r.status + ".", "error");
    }
    applySettings(state.settings); // put the controls back to the settings in force
  }

  async function loadSettings() {
    try {
      const r = await api("GET", "view/settings");
      if (r.status === 200 && r.data) {
        applySettings(r.data);
        return;
      }
      if (!isAuth(r)) showMessage("Could not load settings: HTTP " + r.status + ".", "error");
    } catch (e) {
      showMessage("Could not load settings: " + netError(e) + ". Retrying…", "error");
    }
    setTimeout(loadSettings, 5000);
  }

  // ---- Controls ---------------------------------------------------------------------------

  // Until the settings are known, the controls would show guesses: keep them disabled.
  calInput.disabled = true;
  for (const c of CLASSES) {
    const r = rows[c.id];
    r.sens.disabled = true;
    r.enabled.disabled = true;
    // Show the value while dragging; send it once released.
    r.sens.addEventListener("input", () => (r.sensVal.textContent = r.sens.value));
    r.sens.addEventListener("change", () => {
      const v = Number(r.sens.value);
      putSettings({ detectors: { [c.id]: { sensitivity: v } } }, c.label + " sensitivity " + v);
    });
    r.enabled.addEventListener("change", () => {
      const on = r.enabled.checked;
      putSettings({ detectors: { [c.id]: { enabled: on } } }, c.label + (on ? " enabled" : " disabled"));
    });
    r.test.addEventListener("click", () => sendTest(c, r.test));
  }

  async function sendTest(c, btn) {
    btn.disabled = true;
    try {
      const r = await api("POST", "api/test/" + c.id);
      if (r.status >= 200 && r.status < 300) {
        showMessage("Test event sent: " + c.label + ".", "ok");
        btn.textContent = "Sent";
        btn.classList.add("sent");
        setTimeout(() => {
          btn.textContent = "Test";
          btn.classList.remove("sent");
        }, 2000);
      } else if (!isAuth(r)) {
        showMessage("Test event not sent: HTTP " + r.status + ".", "error");
      }
    } catch (e) {
      showMessage("Test event not sent: " + netError(e) + ".", "error");
    } finally {
      btn.disabled = false;
    }
  }

  // Empty field + save removes the calibration (null).
  function saveCalibration() {
    const raw = calInput.value.trim();
    if (calInput.validity && calInput.validity.badInput) {
      calErr.textContent = "Enter a number in dB, or leave the field empty to remove the calibration.";
      return;
    }
    const v = raw === "" ? null : Number(raw);
    if (v != null && !isFinite(v)) {
      calErr.textContent = "Enter a number in dB, or leave the field empty to remove the calibration.";
      return;
    }
    putSettings(
      { level: { calibration_offset_db: v } },
      v == null ? "calibration removed (levels in dBFS)" : "calibration offset " + v + " dB"
    );
  }
  $("save-calibration").addEventListener("click", saveCalibration);
  $("clear-calibration").addEventListener("click", () => {
    calInput.value = "";
    saveCalibration();
  });
  calInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter") saveCalibration();
  });

  // ---- Live data --------------------------------------------------------------------------

  // Drop points older than `minT`, and the oldest beyond `cap`.
  function trim(arr, minT, cap) {
    let i = 0;
    while (i < arr.length && arr[i].t < minT) i++;
    if (arr.length - i > cap) i = arr.length - cap;
    if (i > 0) arr.splice(0, i);
  }

  const lastOf = (arr) => arr[arr.length - 1];
  // The audio clock: the latest time held. Levels and patches keep their own order, since the
  // classifier may lag the level meter by more than a patch when it has a backlog.
  function updateNow() {
    const l = lastOf(state.levels), p = lastOf(state.patches);
    state.now = Math.max(l ? l.t : 0, p ? p.t : 0);
  }
  // Level time going back means a new input or a restarted pipeline: start the graphs over.
  function clearStreams() {
    state.levels.length = 0;
    state.patches.length = 0;
    state.markers.length = 0;
    state.yRange = null;
  }

  function onLevel(d) {
    if (!isNum(d.t)) return;
    const last = lastOf(state.levels);
    if (last && d.t < last.t - 0.5) clearStreams();
    else if (last && d.t <= last.t) return; // duplicate or out of order: ignore
    const p = { t: d.t, laf: num(d.laf_dbfs), leq: num(d.laeq_1s_dbfs), bg: num(d.background_dbfs) };
    state.levels.push(p);
    updateNow();
    trim(state.levels, state.now - WINDOW_S, MAX_LEVEL_POINTS);
    earshot.levelPoints = state.levels.length;
    earshot.patches = state.patches.length;
    if (p.laf != null) {
      state.lastLaf = p.laf;
      levelNow.textContent = fmtLevel(p.laf);
    }
    schedule(true, true); // the score strips share the moving time axis
  }

  function onPatch(d) {
    const t = isNum(d.t) ? d.t : num(d.end_s);
    if (t == null) return;
    let prev = lastOf(state.patches);
    if (prev && t < prev.t - 0.5) { state.patches.length = 0; prev = null; } // new stream
    else if (prev && t <= prev.t) return;
    const hop = prev ? Math.min(t - prev.t, 1) : 0.48;
    state.patches.push({ t, hop, s: d.scores || {} });
    updateNow();
    trim(state.patches, state.now - WINDOW_S, MAX_PATCHES);
    earshot.patches = state.patches.length;
    updateHotScores();
    schedule(false, true);
  }

  // The latest score per class, highlighted when at or above the on threshold.
  function updateHotScores() {
    const p = state.patches[state.patches.length - 1];
    for (const c of CLASSES) {
      const r = rows[c.id];
      const v = p ? num(p.s[c.id]) : null;
      const cs = classSettings(c.id);
      r.now.textContent = v == null ? "–" : "score " + v.toFixed(2);
      r.now.classList.toggle("hot", v != null && cs != null && isNum(cs.on_threshold) && v >= cs.on_threshold);
    }
  }

  // ---- Events -----------------------------------------------------------------------------

  let historyLoaded = false;
  const liveKeys = new Set(); // keys of live events received before the history arrived

  const evKey = (e) => (isNum(e.seq) ? (e.device_id || "") + ":" + e.seq : null);

  // A level field in its own unit: the *_db_spl value when the event has one, else dBFS.
  function evLevel(e, base) {
    if (isNum(e[base + "_db_spl"])) return fmtNum(e[base + "_db_spl"], 1) + " dB SPL";
    if (isNum(e[base + "_dbfs"])) return fmtNum(e[base + "_dbfs"], 1) + " dBFS";
    return null;
  }

  function renderEvent(e) {
    const li = document.createElement("li");
    li.dataset.event = e.event;
    if (e.class) li.dataset.class = e.class;
    if (e.test === true) li.dataset.test = "true";
    const kind = e.event;
    let title, sub = "";
    const meta = [];
    if (kind === "detection_start" || kind === "detection" || kind === "detection_stop") {
      li.className = "det-ev";
      if (rows[e.class]) li.style.setProperty("--c", rows[e.class].color);
      title = labelOf(e.class);
      sub = KIND[kind];
      if (kind === "detection_stop") {
        if (isNum(e.peak_score)) meta.push("peak " + e.peak_score.toFixed(2));
        if (isNum(e.start_s) && isNum(e.end_s)) meta.push((e.end_s - e.start_s).toFixed(1) + " s long");
      } else if (isNum(e.score)) meta.push("score " + e.score.toFixed(2));
      const lv = evLevel(e, "lafmax");
      if (lv) meta.push("LAFmax " + lv);
    } else if (kind === "loud_noise_start" || kind === "loud_noise_stop") {
      li.className = "loud";
      title = KIND[kind];
      sub = e.mode ? String(e.mode) : "";
      const lv = evLevel(e, "lafmax");
      if (lv) meta.push("LAFmax " + lv);
      if (kind === "loud_noise_start" && isNum(e.threshold_dbfs)) meta.push("threshold " + fmtNum(e.threshold_dbfs, 1) + " dBFS");
      if (kind === "loud_noise_stop" && isNum(e.start_s) && isNum(e.end_s)) meta.push((e.end_s - e.start_s).toFixed(1) + " s long");
    } else if (kind === "spl_summary") {
      li.className = "summary";
      title = KIND[kind];
      const eq = evLevel(e, "laeq"), mx = evLevel(e, "lafmax");
      if (eq) meta.push("LAeq " + eq);
      if (mx) meta.push("LAFmax " + mx);
    } else if (kind === "audio_input_lost" || kind === "audio_input_restored") {
      li.className = kind === "audio_input_lost" ? "lost" : "restored";
      title = KIND[kind];
      if (e.reason) sub = String(e.reason).replace(/_/g, " ");
      if (isNum(e.lost_for_s)) meta.push("lost for " + fmtDur(e.lost_for_s));
    } else {
      title = String(kind).replace(/_/g, " ");
      if (e.class) sub = labelOf(e.class);
    }
    if (isNum(e.stream_time_s)) meta.push("audio " + fmtDur(e.stream_time_s));
    li.innerHTML =
      '<span class="ev-time" title="' + esc(e.time || "") + '">' + esc(fmtWall(e.time)) + "</span>" +
      '<span class="ev-title">' + esc(title) + (sub ? ' <span class="ev-kind">' + esc(sub) + "</span>" : "") +
      (e.test === true ? '<span class="badge">TEST</span>' : "") + "</span>" +
      '<span class="ev-meta">' + esc(meta.join(" \u00b7 ")) + "</span>";
    return li;
  }

  // Add one event: live ones on top, history ones (oldest-first from the server) below them.
  function addEvent(e, fromHistory) {
    if (!e || typeof e.event !== "string" || e.event === "health") return;
    const key = evKey(e);
    if (fromHistory) {
      if (key && liveKeys.has(key)) return; // already arrived live
      if (evList.children.length >= MAX_EVENTS) return;
    } else if (!historyLoaded && key) {
      if (liveKeys.size > 2 * MAX_EVENTS) liveKeys.clear(); // bounded while history is unavailable
      liveKeys.add(key);
    }
    const li = renderEvent(e);
    if (fromHistory) {
      li.style.animation = "none";
      evList.appendChild(li);
    } else {
      evList.insertBefore(li, evList.firstChild);
    }
    while (evList.children.length > MAX_EVENTS) evList.lastElementChild.remove();
    earshot.events = evList.children.length;
    $("events-empty").hidden = earshot.events > 0;
    $("events-count").textContent = earshot.events ? "last " + earshot.events : "";
    addMarker(e);
  }

  // Onsets of detections and loud noises, drawn on the level graph.
  function addMarker(e) {
    let t = null, color = null;
    if (e.event === "detection_start") {
      t = num(e.start_s) != null ? e.start_s : num(e.stream_time_s);
      color = rows[e.class] ? rows[e.class].color : COLORS.laf;
    } else if (e.event === "loud_noise_start") {
      t = num(e.time_s) != null ? e.time_s : num(e.stream_time_s);
      color = COLORS.loud;
    }
    if (t == null || t < state.now - WINDOW_S) return;
    state.markers.push({ t, color, test: e.test === true });
    if (state.markers.length > MAX_MARKERS) state.markers.shift();
    schedule(true, false);
  }

  // Past events, once; retried until it works.
  async function loadEvents() {
    try {
      const r = await api("GET", "view/events?limit=50");
      if (r.status === 200 && r.data && Array.isArray(r.data.events)) {
        const list = r.data.events;
        for (let i = list.length - 1; i >= 0; i--) addEvent(list[i], true); // newest first, appended
        historyLoaded = true;
        liveKeys.clear();
        return;
      }
      if (!isAuth(r)) showMessage("Could not load past events: HTTP " + r.status + ".", "error");
    } catch (e) {
      showMessage("Could not load past events: " + netError(e) + ".", "error");
    }
    setTimeout(loadEvents, 5000);
  }

  // ---- Live stream (Server-Sent Events) -----------------------------------------------------

  let source = null;
  let retryTimer = null;
  function setLive(on) {
    const text = on ? "live" : "disconnected";
    if (liveState.textContent !== text) liveState.textContent = text;
    liveState.className = "pill " + (on ? "on" : "off");
  }

  function connectLive() {
    clearTimeout(retryTimer);
    if (source) source.close();
    const url = "view/live" + (token ? "?access_token=" + encodeURIComponent(token) : "");
    const es = (source = new EventSource(url));
    es.onopen = () => setLive(true);
    // EventSource retries by itself while CONNECTING; once CLOSED (e.g. an HTTP error) we retry.
    es.onerror = () => {
      setLive(false);
      if (es.readyState === EventSource.CLOSED) retryTimer = setTimeout(connectLive, 5000);
    };
    const on = (name, fn) =>
      es.addEventListener(name, (m) => {
        let d;
        try { d = JSON.parse(m.data); } catch (_) { return; }
        if (d && typeof d === "object") fn(d);
      });
    on("level", onLevel);
    on("patch", onPatch);
    on("event", (e) => addEvent(e, false));
    // The server sends `ping` after 10 s without anything else: silence longer than
    // STALL_MS means a stalled connection, which EventSource would not notice by itself.
    for (const name of ["level", "patch", "event", "ping"]) {
      es.addEventListener(name, () => { lastLiveAt = Date.now(); });
    }
    lastLiveAt = Date.now();
  }

  const STALL_MS = 25000;
  let lastLiveAt = Date.now();
  setInterval(() => {
    if (source && source.readyState === EventSource.OPEN && Date.now() - lastLiveAt > STALL_MS) {
      setLive(false);
      connectLive();
    }
  }, 5000);

  // ---- Status (polled) --------------------------------------------------------------------

  let lastStatus = null;
  function renderStatus(s, problem) {
    statusAge.textContent = problem || "";
    statusAge.style.color = problem ? "var(--bad)" : "";
    if (!s) {
      statusBox.innerHTML = '<p class="muted">' + esc(problem || "No status.") + "</p>";
      return;
    }
    const rows = [];
    const row = (k, v, warn) => rows.push("<dt>" + k + "</dt><dd" + (warn ? ' class="warn"' : "") + ">" + v + "</dd>");
    row("Input", esc(s.input || "–") + '<span class="tag">' + (s.live ? "live input" : "file") + "</span>");
    row("Sample rate", isNum(s.sample_rate_hz) ? esc(s.sample_rate_hz / 1000 + " kHz") : "–");
    row("Audio / uptime", esc(fmtDur(s.audio_s) + " / " + fmtDur(s.uptime_s)));
    row("CPU", isNum(s.pipeline_cpu_share) ? esc((s.pipeline_cpu_share * 100).toFixed(1) + " %") : "–");
    if (isNum(s.patches) && isNum(s.patches_classified)) {
      const share = s.patches > 0 ? " (" + ((s.patches_classified / s.patches) * 100).toFixed(0) + " %)" : "";
      row("Patches classified", esc(s.patches_classified + " of " + s.patches + share));
    }
    row("Overruns / underruns", esc((s.overruns ?? "–") + " / " + (s.underruns ?? "–")), s.overruns > 0 || s.underruns > 0);
    row("Backlog", isNum(s.backlog_s) ? esc(s.backlog_s.toFixed(1) + " s") : "–", s.backlog_s > 1);
    row("Background", esc(fmtLevel(s.background_dbfs)));
    row("Model", esc(s.model || "–"));
    row("Version", esc(s.version || "–"));
    // Sinks: one table row each; drops and failures highlighted.
    const sinks = Array.isArray(s.sinks) ? s.sinks : [];
    let table = "";
    if (sinks.length) {
      const cell = (v) => '<td class="n' + (v > 0 ? " warn" : "") + '">' + esc(v || 0) + "</td>";
      table =
        '<table class="sinks"><tr><th>Sink</th><th class="n">Sent</th><th class="n">Pending</th>' +
        '<th class="n">Dropped</th><th class="n">Failed</th></tr>' +
        sinks.map((k) =>
          '<tr><td><span class="state ' + esc(k.state) + '" title="' + esc(k.state) + '">' + esc(k.name) +
          (k.state === "up" ? "" : " (" + esc(k.state) + ")") + "</span></td>" +
          '<td class="n">' + esc(k.delivered || 0) + '</td><td class="n">' + esc(k.pending || 0) + "</td>" +
          cell((k.dropped_queue_full || 0) + (k.dropped_backlog_full || 0)) + cell(k.failed) + "</tr>"
        ).join("") +
        "</table>";
    } else {
      row("Sinks", '<span class="muted">none</span>');
    }
    statusBox.innerHTML = '<dl class="kv">' + rows.join("") + "</dl>" + table;
    statusBox.style.opacity = problem ? "0.55" : "";
  }

  async function pollStatus() {
    try {
      const r = await api("GET", "view/status");
      if (r.status === 200 && r.data) {
        lastStatus = r.data;
        renderStatus(lastStatus, "");
      } else {
        renderStatus(lastStatus, isAuth(r) ? "not authorized" : "HTTP " + r.status);
      }
    } catch (e) {
      renderStatus(lastStatus, netError(e));
    }
    setTimeout(pollStatus, STATUS_EVERY_MS);
  }

  // ---- Drawing ----------------------------------------------------------------------------

  let dirtyLevel = false, dirtyScores = false, frameQueued = false;
  // Ask for a redraw; at most one per animation frame.
  function schedule(level, scores) {
    if (level) dirtyLevel = true;
    if (scores) dirtyScores = true;
    if (!frameQueued) {
      frameQueued = true;
      requestAnimationFrame(frame);
    }
  }
  function frame() {
    frameQueued = false;
    if (dirtyLevel) { dirtyLevel = false; drawLevel(); }
    if (dirtyScores) { dirtyScores = false; for (const c of CLASSES) drawScore(c.id); }
  }
  window.addEventListener("resize", () => schedule(true, true));

  // Size the backing store for the device pixel ratio; returns a context in CSS pixels.
  function prep(canvas) {
    const w = canvas.clientWidth, h = canvas.clientHeight;
    if (!w || !h) return null;
    const dpr = window.devicePixelRatio || 1;
    const W = Math.round(w * dpr), H = Math.round(h * dpr);
    if (canvas.width !== W || canvas.height !== H) {
      canvas.width = W;
      canvas.height = H;
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    return { ctx, w, h };
  }

  // The visible time range: [0, 60] until 60 s of audio, then the last 60 s.
  function timeRange() {
    const t1 = Math.max(state.now, WINDOW_S);
    return [t1 - WINDOW_S, t1];
  }

  // A polyline of `get(p)` over points, broken at nulls and at holes in time.
  function polyline(ctx, pts, get, X, Y) {
    ctx.beginPath();
    let pen = false, lastT = 0;
    for (const p of pts) {
      const v = get(p);
      if (v == null) { pen = false; continue; }
      if (pen && p.t - lastT <= GAP_S) ctx.lineTo(X(p.t), Y(v));
      else ctx.moveTo(X(p.t), Y(v));
      pen = true;
      lastT = p.t;
    }
    ctx.stroke();
  }

  function drawLevel() {
    levelCanvas.setAttribute("data-points", String(state.levels.length));
    const c = prep(levelCanvas);
    if (!c) return;
    const { ctx, w, h } = c;
    const off = state.offset || 0;
    const lvl = (state.settings && state.settings.level) || {};
    const margin = lvl.adaptive_loud_noise && isNum(lvl.adaptive_margin_db) ? lvl.adaptive_margin_db : null;
    const abs = num(lvl.loud_noise_dbfs);
    const [t0, t1] = timeRange();
    const pad = { l: 46, r: 12, t: 22, b: 22 };
    const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;

    // Y range in display units, from what is visible; changes only when clearly needed.
    let lo = Infinity, hi = -Infinity;
    const see = (v) => { if (v != null) { v += off; if (v < lo) lo = v; if (v > hi) hi = v; } };
    for (const p of state.levels) {
      see(p.laf); see(p.leq); see(p.bg);
      if (margin != null && p.bg != null) see(p.bg + margin);
    }
    if (abs != null) see(abs);
    if (lo === Infinity) { lo = -80 + off; hi = -20 + off; }
    let needLo = Math.floor((lo - 3) / 10) * 10, needHi = Math.ceil((hi + 3) / 10) * 10;
    if (needHi - needLo < 40) needLo = needHi - 40;
    const yr = state.yRange;
    if (!yr || needLo < yr.lo || needHi > yr.hi || needLo - yr.lo >= 20 || yr.hi - needHi >= 20) {
      state.yRange = { lo: needLo, hi: needHi };
    }
    const { lo: yLo, hi: yHi } = state.yRange;
    const X = (t) => pad.l + ((t - t0) / (t1 - t0)) * pw;
    const Y = (v) => pad.t + (1 - (v + off - yLo) / (yHi - yLo)) * ph; // v in dBFS

    // Grid and axis labels.
    ctx.font = "11px -apple-system, 'Segoe UI', Roboto, Arial, sans-serif";
    ctx.lineWidth = 1;
    ctx.fillStyle = COLORS.axis;
    ctx.strokeStyle = COLORS.grid;
    const span = yHi - yLo;
    const step = span <= 60 ? 10 : span <= 120 ? 20 : 30;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let v = Math.ceil(yLo / step) * step; v <= yHi; v += step) {
      const y = Math.round(pad.t + (1 - (v - yLo) / span) * ph) + 0.5;
      ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(w - pad.r, y); ctx.stroke();
      ctx.fillText(fmtNum(v, 0), pad.l - 6, y);
    }
    ctx.textAlign = "left";
    ctx.textBaseline = "alphabetic";
    ctx.fillText(unit(), 4, 9);
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    for (let t = Math.ceil(t0 / 10) * 10; t <= t1 + 1e-6; t += 10) {
      const x = Math.round(X(t)) + 0.5;
      ctx.beginPath(); ctx.moveTo(x, pad.t); ctx.lineTo(x, pad.t + ph); ctx.stroke();
      ctx.fillText(fmtAxisT(t, t1), Math.min(Math.max(x, pad.l + 12), w - 20), pad.t + ph + 5);
    }
    ctx.strokeStyle = "#c9d1d9";
    ctx.strokeRect(pad.l + 0.5, pad.t + 0.5, pw - 1, ph - 1);

    // Data, clipped to the plot area.
    ctx.save();
    ctx.beginPath();
    ctx.rect(pad.l, pad.t, pw, ph);
    ctx.clip();
    ctx.lineJoin = "round";

    // Event onsets: a faint vertical line and a tick at the top.
    state.markers = state.markers.filter((m) => m.t >= t0 - 1);
    for (const m of state.markers) {
      if (m.t > t1) continue;
      const x = Math.round(X(m.t)) + 0.5;
      ctx.strokeStyle = m.color;
      ctx.globalAlpha = 0.35;
      ctx.setLineDash(m.test ? [3, 3] : []);
      ctx.beginPath(); ctx.moveTo(x, pad.t); ctx.lineTo(x, pad.t + ph); ctx.stroke();
      ctx.globalAlpha = 1;
      ctx.fillStyle = m.color;
      ctx.beginPath(); ctx.moveTo(x - 5, pad.t); ctx.lineTo(x + 5, pad.t); ctx.lineTo(x, pad.t + 7); ctx.fill();
    }
    ctx.setLineDash([]);

    const pts = state.levels;
    // Thresholds: adaptive = background + margin (dashed red), absolute (solid red).
    ctx.strokeStyle = COLORS.thr;
    ctx.lineWidth = 1.2;
    if (abs != null) {
      const y = Math.round(Y(abs)) + 0.5;
      ctx.beginPath(); ctx.moveTo(pad.l, y); ctx.lineTo(w - pad.r, y); ctx.stroke();
    }
    if (margin != null) {
      ctx.setLineDash([6, 4]);
      polyline(ctx, pts, (p) => (p.bg == null ? null : p.bg + margin), X, Y);
    }
    // Background estimate (dashed grey), LAeq 1 s, LAF.
    ctx.strokeStyle = COLORS.bg;
    ctx.lineWidth = 1.5;
    ctx.setLineDash([5, 4]);
    polyline(ctx, pts, (p) => p.bg, X, Y);
    ctx.setLineDash([]);
    ctx.strokeStyle = COLORS.leq;
    ctx.lineWidth = 1.6;
    polyline(ctx, pts, (p) => p.leq, X, Y);
    ctx.strokeStyle = COLORS.laf;
    ctx.lineWidth = 1.6;
    polyline(ctx, pts, (p) => p.laf, X, Y);
    ctx.restore();

    if (!pts.length) {
      ctx.fillStyle = COLORS.axis;
      ctx.textAlign = "center";
      ctx.textBaseline = "middle";
      ctx.font = "13px -apple-system, 'Segoe UI', Roboto, Arial, sans-serif";
      ctx.fillText("Waiting for audio…", pad.l + pw / 2, pad.t + ph / 2);
    }
  }

  // One class's evidence strip: a bar per patch, brighter at or above the on threshold.
  function drawScore(cls) {
    const r = rows[cls];
    const c = prep(r.score);
    if (!c) return;
    const { ctx, w, h } = c;
    const [t0, t1] = timeRange();
    const pad = 3, ph = h - 2 * pad;
    const X = (t) => ((t - t0) / (t1 - t0)) * w;
    const Y = (v) => pad + (1 - Math.max(0, Math.min(1, v))) * ph;
    const cs = classSettings(cls);
    const onThr = cs && isNum(cs.on_threshold) ? cs.on_threshold : null;
    const offThr = cs && isNum(cs.off_threshold) ? cs.off_threshold : null;

    ctx.fillStyle = r.color;
    for (const p of state.patches) {
      const v = num(p.s[cls]);
      if (v == null || p.t < t0) continue;
      const x0 = X(p.t - p.hop), x1 = X(p.t);
      ctx.globalAlpha = onThr != null && v >= onThr ? 0.95 : 0.35;
      const y = Y(v);
      ctx.fillRect(x0, y, Math.max(1, x1 - x0 - 0.5), pad + ph - y);
    }
    ctx.globalAlpha = 1;

    ctx.strokeStyle = "#1c2530";
    ctx.lineWidth = 1;
    if (offThr != null) {
      ctx.globalAlpha = 0.35;
      ctx.setLineDash([4, 3]);
      const y = Math.round(Y(offThr)) + 0.5;
      ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(w, y); ctx.stroke();
      ctx.setLineDash([]);
    }
    if (onThr != null) {
      ctx.globalAlpha = 0.75;
      const y = Math.round(Y(onThr)) + 0.5;
      ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(w, y); ctx.stroke();
    }
    ctx.globalAlpha = 1;
  }

  // ---- Start ------------------------------------------------------------------------------

  setLive(false);
  schedule(true, true);
  loadSettings();
  loadEvents();
  connectLive();
  pollStatus();
})();
