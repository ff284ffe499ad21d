// The page: every DOM read and write lives here. State is shown, never stored, in the DOM.

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

const elements = {
  who: $("who"), signIn: $("sign-in"), signOut: $("sign-out"), status: $("status"),
  alert: $("alert"), alertText: $("alert-text"), alertAction: /** @type {HTMLButtonElement} */ ($("alert-action")),
  start: /** @type {HTMLButtonElement} */ ($("start")), mute: /** @type {HTMLButtonElement} */ ($("mute")),
  hangUp: /** @type {HTMLButtonElement} */ ($("hang-up")), level: /** @type {HTMLMeterElement} */ ($("level")),
  timeLeft: $("time-left"), quota: $("quota"), minutesLeft: $("minutes-left"), transcript: $("transcript"),
  plan: $("plan"), budgetLeft: $("budget-left"),
  say: /** @type {HTMLFormElement} */ ($("say")), sayText: /** @type {HTMLInputElement} */ ($("say-text")),
  saySend: /** @type {HTMLButtonElement} */ ($("say-send")),
  audio: /** @type {HTMLAudioElement} */ ($("remote-audio")),
};

/**
 * What the page's controls do. The handlers get no DOM: they ask this module for what they need.
 * @param {object} handlers
 * @param {() => void} handlers.signIn
 * @param {() => void} handlers.signOut
 * @param {() => void} handlers.start
 * @param {() => void} handlers.hangUp
 * @param {() => void} handlers.toggleMute
 * @param {(text: string) => void} handlers.say  a typed message, trimmed and not empty
 */
export function bind({ signIn, signOut, start, hangUp, toggleMute, say }) {
  elements.signIn.addEventListener("click", signIn);
  elements.signOut.addEventListener("click", signOut);
  elements.start.addEventListener("click", start);
  elements.hangUp.addEventListener("click", hangUp);
  elements.mute.addEventListener("click", toggleMute);
  elements.say.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = elements.sayText.value.trim();
    if (!text) return;
    elements.sayText.value = "";
    say(text);
  });
}

/**
 * The page's state: idle, signed-out, connecting, connected, error. Tests read it from
 * <html data-state>.
 * @param {"signed-out" | "idle" | "connecting" | "connected"} state
 * @param {string} status the sentence shown (and announced) to the user
 */
export function showState(state, status) {
  document.documentElement.dataset.state = state;
  elements.status.textContent = status;
  const live = state === "connected";
  elements.start.disabled = state !== "idle";
  elements.start.hidden = state === "signed-out";
  elements.hangUp.disabled = !(live || state === "connecting");
  elements.mute.disabled = !live;
  elements.sayText.disabled = !live;
  elements.saySend.disabled = !live;
  if (!live) showMuted(false);
}

/** @param {string} status the sentence shown (and announced), without changing the state */
export function showStatus(status) {
  elements.status.textContent = status;
}

/** @param {string | null} name */
export function showAccount(name) {
  elements.who.textContent = name ? `Signed in as ${name}` : "";
  elements.signIn.hidden = Boolean(name);
  elements.signOut.hidden = !name;
}

/**
 * A failure as a sentence and, when there is one, the button that fixes it.
 * @param {string} message
 * @param {{label: string, run: () => void} | null} [action]
 */
export function showError(message, action = null) {
  elements.alertText.textContent = message;
  elements.alertAction.hidden = !action;
  if (action) {
    elements.alertAction.textContent = action.label;
    elements.alertAction.onclick = action.run;
  }
  elements.alert.hidden = false;
}

export function clearError() {
  elements.alert.hidden = true;
}

/**
 * Starts the (still empty) audio element inside the user's tap: iOS Safari only plays audio
 * that a gesture began, and the remote stream arrives long after the gesture.
 */
export function unlockAudio() {
  elements.audio.play().catch(() => {}); // no source yet: the rejection is expected
}

/** Plays the assistant's audio; `null` stops it and lets go of the stream. @param {MediaStream | null} stream */
export function playRemote(stream) {
  const audio = elements.audio;
  audio.srcObject = stream;
  if (stream) audio.play().catch(() => {}); // stopped again before it started: nothing to do
  else audio.pause();
}

/** @param {boolean} muted */
export function showMuted(muted) {
  elements.mute.setAttribute("aria-pressed", String(muted));
  elements.mute.textContent = muted ? "Unmute" : "Mute";
}

/** @param {number} level 0..1 */
export function showLevel(level) {
  elements.level.value = level;
  elements.level.textContent = `${Math.round(level * 100)}%`;
}

/** @param {number | null} seconds */
export function showTimeLeft(seconds) {
  if (seconds === null) {
    elements.timeLeft.textContent = "–";
    return;
  }
  const m = Math.floor(seconds / 60);
  const s = String(Math.floor(seconds % 60)).padStart(2, "0");
  elements.timeLeft.textContent = `${m}:${s}`;
}

/** Call minutes left today (server-owned calls). @param {number | null} minutes */
export function showMinutesLeft(minutes) {
  if (minutes !== null) elements.minutesLeft.textContent = String(minutes);
}

/**
 * The caller's plan and what is left of it today (the listing's answer).
 * @param {import("./calls.js").Standing} standing
 */
export function showStanding(standing) {
  const plan = standing.plan;
  elements.plan.textContent = plan ? plan.title : "–";
  // What the plan gives, in full, where a pointer or a screen reader asks for it.
  elements.plan.title = plan
    ? `${plan.minutes_per_day} minutes a day` +
      (plan.spend_per_day_usd === null ? "" : `, $${plan.spend_per_day_usd.toFixed(2)} a day`)
    : "";
  const left = standing.spend_left_today_usd;
  elements.budgetLeft.textContent = typeof left === "number" ? `$${left.toFixed(2)}` : "–";
  showMinutesLeft(standing.minutes_left_today);
}

/** @param {import("./api.js").QuotaWindow[]} windows */
export function showQuota(windows) {
  if (!windows.length) return;
  const tightest = windows.reduce((a, b) => (b.remaining < a.remaining ? b : a));
  elements.quota.textContent = `${tightest.remaining} this ${tightest.name}`;
}

/** @type {Record<"user" | "assistant" | "note", string>} */
const ROLE_NAMES = { user: "You", assistant: "Assistant", note: "" };

/** @param {import("./session.js").Line[]} lines */
export function showTranscript(lines) {
  const list = elements.transcript;
  for (const line of lines) {
    let item = /** @type {HTMLLIElement | null} */ (list.querySelector(`[data-id="${CSS.escape(line.id)}"]`));
    if (!item) {
      item = document.createElement("li");
      item.dataset.id = line.id;
      item.className = line.role;
      const who = document.createElement("span");
      who.className = "who";
      who.textContent = ROLE_NAMES[line.role];
      item.append(who, document.createElement("span"));
      list.append(item);
    }
    /** @type {HTMLElement} */ (item.lastElementChild).textContent = line.text;
  }
  list.scrollTop = list.scrollHeight;
}

export function clearTranscript() {
  elements.transcript.replaceChildren();
}

/** Whether the page offers typed messages (GPT-Live takes none from the browser). @param {boolean} allowed */
export function allowTyping(allowed) {
  elements.say.hidden = !allowed;
}
