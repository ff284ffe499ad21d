// The page: every DOM read and write lives here. State is shown, never stored, in the DOM.

const $ = (/** @type {string} */ id) => /** @type {HTMLElement} */ (document.getElementById(id));

export const elements = {
  who: $("who"), signIn: $("sign-in"), signOut: $("sign-out"), status: $("status"),
  alert: $("alert"), alertText: $("alert-text"), alertAction: /** @type {HTMLButtonElement} */ ($("alert-action")),
  start: /** @type {HTMLButtonElement} */ ($("start")), mute: /** @type {HTMLButtonElement} */ ($("mute")),
  hangUp: /** @type {HTMLButtonElement} */ ($("hang-up")), level: /** @type {HTMLMeterElement} */ ($("level")),
  timeLeft: $("time-left"), quota: $("quota"), transcript: $("transcript"),
  say: /** @type {HTMLFormElement} */ ($("say")), sayText: /** @type {HTMLInputElement} */ ($("say-text")),
  saySend: /** @type {HTMLButtonElement} */ ($("say-send")),
  audio: /** @type {HTMLAudioElement} */ ($("remote-audio")),
};

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

/** @param {{name: string, remaining: number, resetAfter: number}[]} windows */
export function showQuota(windows) {
  if (!windows.length) return;
  const tightest = windows.reduce((a, b) => (b.remaining < a.remaining ? b : a));
  elements.quota.textContent = `${tightest.remaining} this ${tightest.name}`;
}

const ROLE_NAMES = { user: "You", assistant: "Assistant", note: "" };

/** @param {{id: string, role: "user" | "assistant" | "note", text: string}[]} lines */
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
