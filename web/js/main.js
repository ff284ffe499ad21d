// Wiring: sign-in, the "Start talking" flow, and one place that turns failures into sentences.
// The call's life is in call.js, the page's DOM in ui.js; this module connects the two.

import { ApiError, requestClientSecret } from "./api.js";
import { Auth, SignInRequired, SignInUnavailable } from "./auth.js";
import { Call, SESSION_LIMIT_S } from "./call.js";
import { callsExchange, hangUpCall, standing } from "./calls.js";
import {
  CallLimitReached, ConfigError, ConnectionLost, ContentStopped, MicrophoneError, OperatorHangup, PolicyHangup, SessionLimitReached, SpendLimitReached, UnwatchedHangup,
} from "./errors.js";
import { HandshakeError, clientSecretExchange } from "./negotiation.js";
import { Transcript, userMessage } from "./session.js";
import * as ui from "./ui.js";

/**
 * `flow`: "calls" (the default: our API places the call, server-owned), "client_secrets"
 * (the API mints a secret and the browser sends its offer to OpenAI) or "live" (our API places
 * a GPT-Live session: OpenAI's newer voice API, server-owned by design).
 * @typedef {{apiBaseUrl: string, issuer: string, clientId: string, redirectUri: string, scopes: string, flow?: string}} Config
 */
/** @typedef {import("./calls.js").PlacedCall & {token: string}} Placed */
/** @typedef {import("./calls.js").EndedCall} EndedCall */
// How long a page whose connection dropped waits for the server to say why, before it says
// what it saw itself.
const END_REASON_WAIT_MS = 5_000;
/** @typedef {{label: string, run: () => void}} Action */

/** @type {Auth} */
let auth;
/** @type {Config} */
let config;
/** The current call, or the last one (then `ended`). @type {Call | null} */
let call = null;
/** @type {Transcript | null} */
let transcript = null;

// Test hook (and handy in the console): how long connecting took, step by step. No secrets.
/** @type {import("./negotiation.js").Timing} */
const metrics = {};
/** @type {any} */ (window).__rtvMetrics = metrics;

/** @type {Action} */
const signInAction = { label: "Sign in", run: signIn };

async function boot() {
  config = await loadConfig();
  auth = new Auth(config);
  try {
    await auth.completeSignIn();
  } catch (error) {
    ui.showError(describe(error).message, signInAction);
  }
  showAccount();
  if (auth.signedIn) showStanding();
  ui.allowTyping(config.flow !== "live"); // Live's channel takes no typed messages from here
  ui.bind({
    signIn,
    signOut: () => {
      call?.end();
      auth.signOut().catch(fail);
    },
    start,
    hangUp: () => call?.end(),
    toggleMute,
    say,
  });
  // Closing the tab ends a server-owned call now rather than at its deadline.
  window.addEventListener("pagehide", () => call?.end());
}

/** @returns {Promise<Config>} */
async function loadConfig() {
  try {
    const response = await fetch("config.json", { cache: "no-store" });
    if (!response.ok) throw new ConfigError(`config.json answered ${response.status}`);
    return await response.json();
  } catch (error) {
    throw error instanceof ConfigError ? error : new ConfigError("config.json is unreadable", { cause: error });
  }
}

function signIn() {
  auth.signIn().catch(fail);
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

/** The plan and what is left of it today, from the listing; quiet when it cannot be read
 * (the page works without it, and a refused call says why itself). */
function showStanding() {
  if (config.flow === "client_secrets") return; // that flow's page places no call here
  auth.accessToken()
    .then((token) => standing(config.apiBaseUrl, token))
    .then((answer) => {
      // A call placed meanwhile says its own minutes left (its answer's header): newer.
      if (!call || call.state === "ended") ui.showStanding(answer);
    }, () => undefined);
}

function start() {
  if (call && call.state !== "ended") return; // one call at a time
  ui.clearError();
  ui.clearTranscript();
  for (const key of /** @type {(keyof typeof metrics)[]} */ (Object.keys(metrics))) delete metrics[key];
  // Both created inside the tap: iOS Safari only allows audio that a gesture began.
  const audioContext = new AudioContext();
  ui.unlockAudio();
  const lines = new Transcript(ui.showTranscript);
  transcript = lines;
  /** The server-owned call, once placed: hung up through the API when the page ends it. @type {Placed | null} */
  let placed = null;
  /**
   * What placing a server-owned call takes: the user's token. The exchange then posts the
   * offer to our API, which places the call: one request, no secret in the browser.
   * @param {AbortSignal} signal
   */
  const placeThroughApi = async (signal) => {
    const token = await auth.accessToken();
    signal.throwIfAborted();
    return callsExchange(config.apiBaseUrl, token, (call) => {
      placed = { ...call, token };
      ui.showQuota(call.quota);
      ui.showMinutesLeft(call.minutesLeft);
      attempt.setDeadline(call.endsAt * 1000);
    }, family());
  };
  const attempt = new Call({
    audioContext,
    authorize: config.flow === "client_secrets" ? authorize : placeThroughApi,
    hooks: {
      onState: (state) => {
        if (state === "connecting") ui.showState("connecting", "Connecting…");
        else {
          Object.assign(metrics, attempt.timing);
          ui.showState("connected", "Connected. Say something, or type a message.");
        }
      },
      onEvent: (event) => {
        if (lines.apply(event) === "error") {
          lines.add("note", `The assistant reported a problem: ${event.error?.message || "unknown"}`);
        }
      },
      onRemoteStream: ui.playRemote,
      onLevel: ui.showLevel,
      onTimeLeft: (left) => {
        ui.showTimeLeft(left);
        if (left === 0 && placed) ui.showStatus("Time is up: the conversation is ending…");
      },
      onEnded: (cause) => {
        if (!placed) {
          ended(cause);
        } else if (cause === null) {
          ended(null); // the user hung up (or left): over at once; the API hangs up behind
          release(placed);
        } else {
          // The connection dropped: hang up through the API, which says whether the server
          // ended the call and why; until then the page says only that it ended.
          ui.showStatus("The conversation ended; asking the service why…");
          const limitS = attempt.limitSeconds;
          release(placed, AbortSignal.timeout(END_REASON_WAIT_MS)).then((answer) => {
            if (call === attempt) ended(serverCause(cause, answer?.end_reason, limitS));
          });
        }
      },
    },
  });
  call = attempt;
  attempt.start();
}

/** The OpenAI API the page's calls run on: GPT-Live with the "live" flow. @returns {"realtime" | "live"} */
function family() {
  return config.flow === "live" ? "live" : "realtime";
}

/**
 * What placing a call takes today: a client secret from the token vending API, and the
 * browser posting its offer to OpenAI with it.
 * @param {AbortSignal} signal
 */
async function authorize(signal) {
  const token = await auth.accessToken();
  const minted = await requestClientSecret(config.apiBaseUrl, token, {}, signal);
  ui.showQuota(minted.quota);
  return clientSecretExchange(minted.secret);
}

/**
 * A server-owned call is over on the page: hang it up through the API, whoever ended it (a
 * hangup of an ended call changes nothing and says why it ended), and show the minutes that
 * came back. Best effort: the deadline ends it anyway.
 * @param {Placed} placed
 * @param {AbortSignal} [signal]
 * @returns {Promise<EndedCall | null>} null when the API did not answer
 */
async function release(placed, signal = undefined) {
  try {
    // Signing out forgets the token before this runs: the one the call was placed with will do.
    const token = await auth.accessToken().catch(() => placed.token);
    const answer = await hangUpCall(config.apiBaseUrl, token, placed.id, signal, family());
    ui.showMinutesLeft(answer.minutes_left_today);
    showStanding(); // read after the hangup settled: the budget left includes this call
    return answer;
  } catch {
    return null; // the call is over for the user either way: the page says what it saw
  }
}

/**
 * Why a dropped call ended: the server's word when it ended the call, else what the page saw
 * (`hangup` is this page's own hangup after the drop; `closed`, no answer: the line dropped).
 * @param {unknown} seen
 * @param {string | undefined} reason the hangup route's `end_reason`
 * @param {number} limitS the call's limit, for the sentence
 */
function serverCause(seen, reason, limitS) {
  switch (reason) {
    case "deadline":
      return new CallLimitReached(limitS);
    case "spend_limit":
      return new SpendLimitReached();
    case "policy":
      return new PolicyHangup();
    case "session_expired":
      return new SessionLimitReached(SESSION_LIMIT_S);
    case "unwatched":
      return new UnwatchedHangup();
    case "content":
      return new ContentStopped();
    case "blocked":
    case "operator":
      return new OperatorHangup(reason === "blocked");
    default:
      return seen;
  }
}

/** "This conversation reached its 10-minute limit." @param {number} seconds */
function limitReached(seconds) {
  const span = seconds >= 55 ? `${Math.ceil(seconds / 60)}-minute` : `${seconds}-second`;
  return `This conversation reached its ${span} limit.`;
}

/** The call is over and has released everything; the page is ready again. @param {unknown} cause */
function ended(cause) {
  ui.showLevel(0);
  ui.showTimeLeft(null);
  if (cause instanceof SessionLimitReached) {
    showAccount();
    ui.showStatus(limitReached(cause.seconds));
  } else if (cause instanceof SpendLimitReached) {
    showAccount();
    ui.showStatus("This conversation ended because today's budget for calls is used up. It renews at midnight UTC.");
  } else if (cause instanceof PolicyHangup) {
    showAccount();
    ui.showStatus("This conversation was ended because its settings were changed, which this service does not allow.");
  } else if (cause instanceof ContentStopped) {
    showAccount();
    ui.showStatus("This conversation was stopped by the voice service's safety system.");
  } else if (cause instanceof OperatorHangup) {
    showAccount();
    ui.showStatus(cause.blocked
      ? "This conversation was ended by the service's operator, who has blocked this account."
      : "This conversation was ended by the service's operator.");
  } else if (cause instanceof UnwatchedHangup) {
    showAccount();
    ui.showStatus("This conversation was ended because the service could not keep track of it. Press Start talking to try again.");
  } else if (cause) {
    fail(cause);
  } else {
    showAccount();
    ui.showStatus("Conversation ended.");
  }
}

function toggleMute() {
  if (call?.state !== "connected") return;
  call.setMuted(!call.muted);
  ui.showMuted(call.muted);
  ui.showStatus(call.muted ? "Microphone muted." : "Connected. Say something, or type a message.");
}

/** @param {string} text */
function say(text) {
  if (call?.state !== "connected") return;
  for (const clientEvent of userMessage(text)) call.send(clientEvent);
  transcript?.add("user", text);
}

/** Every failure ends here: a sentence, and the next step. @param {unknown} error */
function fail(error) {
  if (error instanceof ApiError) ui.showQuota(error.quota);
  const { message, action } = describe(error);
  showAccount();
  ui.showError(message, action);
}

/** @param {number} n */
function seconds(n) {
  return n === 1 ? "1 second" : `${n} seconds`;
}

/** @param {unknown} error @returns {{message: string, action: Action | null}} */
function describe(error) {
  /** @type {Action} */
  const retry = { label: "Try again", run: start };
  if (error instanceof SignInRequired) return { message: error.message, action: signInAction };
  if (error instanceof SignInUnavailable) {
    return { message: "The sign-in service could not be reached. Please try again in a moment.", action: signInAction };
  }
  if (error instanceof MicrophoneError) {
    switch (error.reason) {
      case "denied":
        return { message: "Microphone access was denied. Allow the microphone for this site in your browser's settings, then press Start talking again.", action: null };
      case "not-found":
        return { message: "No microphone was found. Connect one and try again.", action: retry };
      default:
        return { message: "The microphone could not be opened. Close other apps that use it and try again.", action: retry };
    }
  }
  if (error instanceof ApiError) {
    const wait = error.retryAfter ? seconds(error.retryAfter) : "a few seconds";
    switch (error.status) {
      case 401:
        auth.forget();
        return { message: "Your sign-in has expired. Please sign in again.", action: signInAction };
      case 403:
        if (String(error.problem?.type || "").endsWith(":user-blocked")) {
          return { message: "The service's operator has blocked this account. Contact them if you think this is a mistake.", action: null };
        }
        if (error.problem?.plan && error.problem?.detail) {
          return { message: error.problem.detail, action: null }; // the plan leaves the profile out, in the server's words
        }
        return { message: "Your account is not allowed to start conversations. Ask your administrator for access.", action: null };
      case 429:
        if (error.problem?.detail && !String(error.problem.type || "").endsWith("quota-exceeded")) {
          return { message: error.problem.detail, action: null }; // a call limit, in the server's words
        }
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
  if (error instanceof ConnectionLost) {
    return { message: "The connection was lost. Press Start talking to reconnect.", action: retry };
  }
  return { message: "Something went wrong while connecting. Please try again.", action: retry };
}

boot().catch(() => {
  ui.showState("signed-out", "The page could not load its configuration.");
  ui.showError("The page could not load its configuration (config.json). Reload to try again.", null);
});
