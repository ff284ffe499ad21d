// One attempt at a conversation, from "Start talking" to its end. The call has an explicit
// state (idle → connecting → connected → ended), and everything it acquires (microphone,
// peer connection, audio context, meter, timer, in-flight requests) is registered as it
// arrives and released exactly once, however and whenever the call ends. After every await
// the call checks it has not ended meanwhile: a step that finishes late releases what it got
// and stops. (The pattern of openai-agents-js's WebRTC transport, with one object per
// attempt as the attempt's token.) No DOM here: the page passes hooks.

import { CallEnded, CallLimitReached, ConnectionLost, InvalidTransition, MicrophoneError, SessionLimitReached } from "./errors.js";
import { connect } from "./negotiation.js";

/** OpenAI ends a Realtime session after 60 minutes. */
export const SESSION_LIMIT_S = 60 * 60;
// A server-owned call still up this long after its deadline is ended from here. (Why a call
// dropped before then, the page learns from the server: see main.js.)
const SERVER_HANGUP_GRACE_MS = 30_000;

/** @typedef {"idle" | "connecting" | "connected" | "ended"} CallState */
/** @typedef {import("./negotiation.js").Exchange} Exchange */
/** @typedef {import("./negotiation.js").Timing} Timing */
/** @typedef {import("./negotiation.js").Connection} Connection */

/**
 * How the call reports to the page. None is called after `onEnded`.
 * @typedef {object} CallHooks
 * @property {(state: "connecting" | "connected") => void} onState
 * @property {(event: any) => void} onEvent  every server event
 * @property {(stream: MediaStream | null) => void} onRemoteStream  null: stop playing
 * @property {(level: number) => void} onLevel  the microphone's level, 0..1
 * @property {(seconds: number) => void} onTimeLeft
 * @property {(cause: unknown) => void} onEnded  once; `null` when the user hung up
 */

/** @type {Record<CallState, CallState[]>} */
const NEXT = {
  idle: ["connecting", "ended"],
  connecting: ["connected", "ended"],
  connected: ["ended"],
  ended: [],
};

/** The connection states after which the call cannot go on. */
const DEAD = ["failed", "closed", "channel-closed"];

/** @returns {Promise<MediaStream>} */
async function openMicrophone() {
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } });
  } catch (error) {
    throw new MicrophoneError(error);
  }
}

/** @param {MediaStream} stream */
function stopTracks(stream) {
  for (const track of stream.getTracks()) track.stop();
}

export class Call {
  /** @type {CallState} */
  #state = "idle";
  #abort = new AbortController();
  /** @type {(() => void)[]} what to undo, in the order acquired */
  #releases = [];
  /** @type {Connection | null} */
  #connection = null;
  #muted = false;
  #started = 0;
  /** The server's deadline (epoch ms) of a server-owned call, once placed. @type {number | null} */
  #deadline = null;
  #limitS = SESSION_LIMIT_S;
  #expired = false;
  /** @type {Timing} */
  timing = {};

  /**
   * @param {object} options
   * @param {(signal: AbortSignal) => Promise<Exchange>} options.authorize  gets what it takes
   *   to place the call (a token, a client secret); runs while the microphone opens
   * @param {AudioContext} options.audioContext  created inside the user's tap (iOS Safari
   *   only allows audio that a gesture began); the call closes it
   * @param {CallHooks} options.hooks
   * @param {() => Promise<MediaStream>} [options.microphone]
   */
  constructor({ authorize, audioContext, hooks, microphone = openMicrophone }) {
    this.authorize = authorize;
    this.audioContext = audioContext;
    this.hooks = hooks;
    this.microphone = microphone;
    this.#own(() => audioContext.close().catch(() => {})); // rejects only if already closed
    this.#own(() => hooks.onRemoteStream(null));
  }

  /** @returns {CallState} */
  get state() {
    return this.#state;
  }

  get muted() {
    return this.#muted;
  }

  /** The call's limit in seconds: the server's deadline read back, or the session cap. */
  get limitSeconds() {
    return this.#limitS;
  }

  /**
   * Connects. Never rejects: however the attempt ends, `hooks.onEnded` says so.
   * @returns {Promise<void>}
   */
  async start() {
    this.#enter("connecting");
    this.#started = performance.now();
    const { signal } = this.#abort;
    try {
      // The microphone prompt, the token (or secret) request and the offer all start now:
      // across a real network the request costs a round trip or more, and the offer (ICE
      // gathering) about 120 ms, so done in a row they would add up (docs/performance.md,
      // section 10). `connect` waits for each only where it needs it.
      const microphone = this.#timed("microphoneMs", this.microphone().then((stream) => this.#acquired(stream, stopTracks)));
      const exchange = this.#timed("tokenMs", this.authorize(signal));
      // Whichever fails first ends the call at once (the offer is not waited for); what
      // fails after that is only an echo of the end.
      Promise.all([microphone, exchange]).catch((error) => this.end(error));
      const connection = await connect({
        microphone,
        exchange,
        since: this.#started,
        signal, // aborting it closes the peer connection, whenever that happens
        timing: this.timing,
        onEvent: (event) => this.#onEvent(event),
        onRemoteStream: (stream) => {
          if (this.#state !== "ended") this.hooks.onRemoteStream(stream);
        },
        onStateChange: (state) => {
          if (DEAD.includes(state)) this.end(this.#dropCause(state));
        },
      });
      this.#checkpoint();
      this.#connection = connection;
      this.#own(connection.close);
      this.#meter(await microphone);
    } catch (error) {
      this.end(error); // a no-op when the call had already ended: then the error is its echo
    }
  }

  /**
   * Ends the call and releases everything it holds. Safe to call at any time, any number
   * of times: only the first call does anything.
   * @param {unknown} [cause] why, when it is not the user hanging up
   */
  end(cause = null) {
    if (this.#state === "ended") return;
    this.#enter("ended");
    this.#abort.abort(new CallEnded()); // cancels requests and closes the peer connection
    for (const release of this.#releases.splice(0).reverse()) {
      try {
        release();
      } catch (error) {
        reportError(error); // a bug, made visible; the other releases still run
      }
    }
    this.#connection = null;
    this.hooks.onEnded(cause instanceof CallEnded ? null : cause);
  }

  /**
   * The server-owned call's deadline, from the server that placed it: the countdown runs to
   * it, and the connection dropping after it is the call's end.
   * @param {number} endsAtMs epoch milliseconds
   */
  setDeadline(endsAtMs) {
    if (this.#state === "ended") return;
    this.#deadline = endsAtMs;
    // The deadline is rounded down to the Scheduler's precision: read the limit back rounded up.
    this.#limitS = Math.max(1, Math.ceil((endsAtMs - Date.now()) / 1000));
  }

  /** @param {object} event a client event; dropped unless connected */
  send(event) {
    if (this.#state === "connected") this.#connection?.send(event);
  }

  /** @param {boolean} muted */
  setMuted(muted) {
    if (this.#state !== "connected") return;
    this.#muted = muted;
    this.#connection?.setMuted(muted);
  }

  /** @param {CallState} next */
  #enter(next) {
    if (!NEXT[this.#state].includes(next)) throw new InvalidTransition(this.#state, next);
    this.#state = next;
    if (next === "connecting" || next === "connected") this.hooks.onState(next);
  }

  /** Throws `CallEnded` if the call ended while the last step was waiting. */
  #checkpoint() {
    if (this.#state === "ended") throw new CallEnded();
  }

  /** Registers a release; runs it at once if the call has already ended. @param {() => void} release */
  #own(release) {
    if (this.#state === "ended") release();
    else this.#releases.push(release);
  }

  /**
   * A resource that arrived: owned from now on, even if the call ended while it was coming.
   * @template T
   * @param {T} resource
   * @param {(resource: T) => void} release
   * @returns {T}
   */
  #acquired(resource, release) {
    this.#own(() => release(resource));
    return resource;
  }

  /**
   * @template T
   * @param {"microphoneMs" | "tokenMs"} name
   * @param {Promise<T>} promise
   * @returns {Promise<T>}
   */
  async #timed(name, promise) {
    const started = performance.now();
    const value = await promise;
    this.timing[name] = performance.now() - started;
    return value;
  }

  /**
   * Why the connection dropped, as far as the page can tell: after the deadline, the limit.
   * Before it, the server may have ended the call (its hangup fires up to a minute early, and
   * the budget or the policy may end it any time): the page asks it (main.js).
   * @param {string} state
   */
  #dropCause(state) {
    if (this.#deadline !== null && Date.now() >= this.#deadline) {
      return new CallLimitReached(this.#limitS);
    }
    if (this.#expired) return new SessionLimitReached(SESSION_LIMIT_S);
    return new ConnectionLost(state);
  }

  /** @param {any} event */
  #onEvent(event) {
    if (this.#state === "ended") return;
    if (event?.type === "error" && event.error?.code === "session_expired") this.#expired = true;
    // The first event of a session: Realtime's session.created, GPT-Live's session.started.
    const first = event?.type === "session.created" || event?.type === "session.started";
    if (first && this.#state === "connecting") this.#connected();
    this.hooks.onEvent(event);
  }

  #connected() {
    const t = this.timing;
    t.connectMs = performance.now() - this.#started;
    if (t.iceDtlsMs !== undefined && t.sdpMs !== undefined && t.readyMs !== undefined) {
      // From the applied answer to session.created, less ICE and DTLS: SCTP and the first event.
      t.channelMs = t.connectMs - (t.readyMs + t.sdpMs + t.iceDtlsMs);
    }
    this.#enter("connected");
    const deadline = this.#deadline;
    const ends = deadline ?? Date.now() + SESSION_LIMIT_S * 1000;
    const tick = () => {
      const left = Math.max(0, (ends - Date.now()) / 1000);
      this.hooks.onTimeLeft(left);
      // At its deadline the server ends a server-owned call; the page waits for it a while.
      const late = deadline === null ? left === 0 : Date.now() - deadline > SERVER_HANGUP_GRACE_MS;
      if (late) this.end(new SessionLimitReached(this.#limitS));
    };
    const timer = setInterval(tick, 1000);
    this.#own(() => clearInterval(timer));
    tick();
  }

  /** The microphone level, for the meter: RMS of the input, eased. @param {MediaStream} stream */
  #meter(stream) {
    const analyser = this.audioContext.createAnalyser();
    analyser.fftSize = 512;
    const source = this.audioContext.createMediaStreamSource(stream);
    source.connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    let level = 0;
    let frame = 0;
    const tick = () => {
      analyser.getFloatTimeDomainData(samples);
      const rms = Math.sqrt(samples.reduce((sum, x) => sum + x * x, 0) / samples.length);
      level = Math.max(rms * 4, level * 0.85);
      this.hooks.onLevel(this.#muted ? 0 : Math.min(level, 1));
      frame = requestAnimationFrame(tick);
    };
    this.#own(() => {
      cancelAnimationFrame(frame);
      source.disconnect();
    });
    tick();
  }
}
