// Wiring: sign-in, the "Start talking" flow, and one place that turns failures into sentences.

import { ApiError, requestClientSecret } from "./api.js";
import { Auth, SignInRequired } from "./auth.js";
import { HandshakeError, connect } from "./negotiation.js";
import { Transcript, userMessage } from "./session.js";
import * as ui from "./ui.js";

const SESSION_LIMIT_S = 60 * 60; // OpenAI ends a Realtime session after 60 minutes

/** @type {Auth} */
let auth;
/** @type {{apiBaseUrl: string, issuer: string, clientId: string, redirectUri: string, scopes: string}} */
let config;
/** The call in progress: everything `hangUp` must release. @type {any} */
let call = null;

// Test hook (and handy in the console): how long connecting took, step by step. No secrets.
const metrics = /** @type {any} */ (window).__rtvMetrics = {};

const signInAction = { label: "Sign in", run: () => auth.signIn() };

async function boot() {
  config = await fetch("config.json", { cache: "no-store" }).then((r) => r.json());
  auth = new Auth(config);
  try {
    await auth.completeSignIn();
  } catch (error) {
    ui.showError(/** @type {Error} */ (error).message, signInAction);
  }
  showAccount();
  ui.elements.signIn.addEventListener("click", () => auth.signIn());
  ui.elements.signOut.addEventListener("click", () => { hangUp(); auth.signOut(); });
  ui.elements.start.addEventListener("click", start);
  ui.elements.hangUp.addEventListener("click", () => hangUp("Conversation ended."));
  ui.elements.mute.addEventListener("click", toggleMute);
  ui.elements.say.addEventListener("submit", say);
}

function showAccount() {
  if (auth.signedIn) {
    ui.showAccount(auth.userName);
    ui.showState("idle", "Ready when you are: press Start talking.");
  } else {
    ui.showAccount(null);
    ui.showState("signed-out", "Sign in to start a conversation.");
  }
}

async function start() {
  ui.clearError();
  ui.clearTranscript();
  ui.showState("connecting", "Connecting…");
  for (const key of Object.keys(metrics)) delete metrics[key];
  const clicked = performance.now();
  // Created and started inside the tap: iOS Safari only allows audio that a gesture began.
  const audioContext = new AudioContext();
  ui.elements.audio.play().catch(() => {});
  call = { audioContext, closed: false };
  const transcript = new Transcript(ui.showTranscript);

  // The microphone prompt and the token request run at the same time, not one after the other.
  const [microphone, minted] = await Promise.allSettled([
    timed("microphoneMs", navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } })),
    timed("tokenMs", auth.accessToken().then((token) => requestClientSecret(config.apiBaseUrl, token))),
  ]);
  if (microphone.status === "fulfilled") call.microphone = microphone.value;
  if (minted.status === "fulfilled") ui.showQuota(minted.value.quota);
  else if (minted.reason?.quota) ui.showQuota(minted.reason.quota);
  if (microphone.status === "rejected" || minted.status === "rejected") {
    return fail(microphone.status === "rejected" ? microphone.reason : /** @type {any} */ (minted).reason);
  }
  if (call.closed) return; // hung up while we waited

  try {
    call.connection = await connect({
      secret: minted.value.secret, // kept in this closure only: never stored, never logged
      microphone: microphone.value,
      onRemoteStream: (stream) => {
        ui.elements.audio.srcObject = stream;
        ui.elements.audio.play().catch(() => {});
      },
      onStateChange: (state) => {
        if (["failed", "closed", "channel-closed"].includes(state) && call && !call.closed) {
          fail(new Error("dropped"));
        }
      },
      onEvent: (event) => {
        const type = transcript.apply(event);
        if (type === "session.created") connected(clicked);
        if (type === "error") transcript.add("note", `The assistant reported a problem: ${event.error?.message || "unknown"}`);
      },
    });
    Object.assign(metrics, call.connection.timing);
  } catch (error) {
    fail(error);
  }
  meter(microphone.value, audioContext);
}

/** @param {number} clicked */
function connected(clicked) {
  metrics.connectMs = performance.now() - clicked;
  Object.assign(metrics, call?.connection?.timing);
  if (metrics.iceDtlsMs !== undefined && metrics.sdpMs !== undefined) {
    // From the applied answer to session.created, less ICE and DTLS: SCTP and the first event.
    metrics.channelMs = metrics.connectMs - (metrics.iceDtlsMs + metrics.sdpMs + metrics.offerMs +
      Math.max(metrics.tokenMs ?? 0, metrics.microphoneMs ?? 0));
  }
  ui.showState("connected", "Connected. Say something, or type a message.");
  const ends = Date.now() + SESSION_LIMIT_S * 1000;
  ui.showTimeLeft(SESSION_LIMIT_S);
  call.timer = setInterval(() => {
    const left = Math.max(0, (ends - Date.now()) / 1000);
    ui.showTimeLeft(left);
    if (left === 0) hangUp("The conversation reached its 60-minute limit.");
  }, 1000);
}

/** @template T @param {string} name @param {Promise<T>} promise @returns {Promise<T>} */
function timed(name, promise) {
  const started = performance.now();
  return promise.then((value) => {
    metrics[name] = performance.now() - started;
    return value;
  });
}

/** The microphone level, for the meter: RMS of the input, eased. */
function meter(/** @type {MediaStream} */ stream, /** @type {AudioContext} */ context) {
  if (!call || call.closed) return;
  const analyser = context.createAnalyser();
  analyser.fftSize = 512;
  context.createMediaStreamSource(stream).connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  let level = 0;
  const tick = () => {
    if (!call || call.closed) return;
    analyser.getFloatTimeDomainData(samples);
    const rms = Math.sqrt(samples.reduce((sum, x) => sum + x * x, 0) / samples.length);
    level = Math.max(rms * 4, level * 0.85);
    ui.showLevel(call.muted ? 0 : Math.min(level, 1));
    call.frame = requestAnimationFrame(tick);
  };
  tick();
}

function toggleMute() {
  if (!call?.connection) return;
  call.muted = !call.muted;
  call.connection.setMuted(call.muted);
  ui.showMuted(call.muted);
  ui.elements.status.textContent = call.muted ? "Microphone muted." : "Connected. Say something, or type a message.";
}

/** @param {SubmitEvent} event */
function say(event) {
  event.preventDefault();
  const text = ui.elements.sayText.value.trim();
  if (!text || !call?.connection) return;
  for (const clientEvent of userMessage(text)) call.connection.send(clientEvent);
  ui.elements.sayText.value = "";
  const lines = ui.elements.transcript.children.length;
  ui.showTranscript([{ id: `typed-${lines}`, role: "user", text }]);
}

/** Releases everything the call holds. @param {string} [status] */
function hangUp(status) {
  if (!call) return;
  call.closed = true;
  cancelAnimationFrame(call.frame);
  clearInterval(call.timer);
  call.connection?.close();
  call.microphone?.getTracks().forEach((/** @type {MediaStreamTrack} */ t) => t.stop());
  call.audioContext?.close().catch(() => {});
  ui.elements.audio.srcObject = null;
  call = null;
  ui.showLevel(0);
  ui.showTimeLeft(null);
  if (status !== undefined) showAccount();
  if (status) ui.elements.status.textContent = status;
}

/** Every failure ends here: a sentence, and the next step. @param {any} error */
function fail(error) {
  hangUp();
  const { message, action } = describe(error);
  showAccount();
  ui.showError(message, action);
}

/** @param {number} n */
function seconds(n) {
  return n === 1 ? "1 second" : `${n} seconds`;
}

/** @param {any} error @returns {{message: string, action: {label: string, run: () => void} | null}} */
function describe(error) {
  const retry = { label: "Try again", run: start };
  if (error instanceof SignInRequired) return { message: error.message, action: signInAction };
  if (error?.name === "NotAllowedError" || error?.name === "SecurityError") {
    return { message: "Microphone access was denied. Allow the microphone for this site in your browser's settings, then press Start talking again.", action: null };
  }
  if (error?.name === "NotFoundError" || error?.name === "OverconstrainedError") {
    return { message: "No microphone was found. Connect one and try again.", action: retry };
  }
  if (error instanceof ApiError) {
    const wait = error.retryAfter ? seconds(error.retryAfter) : "a few seconds";
    switch (error.status) {
      case 401:
        auth.forget();
        return { message: "Your sign-in has expired. Please sign in again.", action: signInAction };
      case 403:
        return { message: "Your account is not allowed to start conversations. Ask your administrator for access.", action: null };
      case 429:
        return { message: `You can start another conversation in ${wait}.`, action: null };
      case 503:
        return { message: `The voice service is busy right now. Please try again in ${wait}.`, action: retry };
      case 504:
        return { message: "The voice service took too long to answer. Please try again.", action: retry };
      case 0:
        return { message: "The service could not be reached. Check your connection and try again.", action: retry };
      default:
        return { message: "The voice service could not start a conversation. Please try again in a moment.", action: retry };
    }
  }
  if (error instanceof HandshakeError) {
    const detail = error.status ? ` (it answered ${error.status})` : "";
    return { message: `Could not connect to the voice service${detail}. Please try again.`, action: retry };
  }
  if (error?.message === "dropped") {
    return { message: "The connection was lost. Press Start talking to reconnect.", action: retry };
  }
  return { message: "Something went wrong while connecting. Please try again.", action: retry };
}

boot().catch(() => {
  ui.showState("signed-out", "The page could not load its configuration.");
  ui.showError("The page could not load its configuration (config.json). Reload to try again.", null);
});
