// The WebRTC handshake with the Realtime API: offer, exchange it for an answer, apply the
// answer. No DOM here: the caller passes the microphone and gets events and tracks back.
// How the offer reaches the service is the caller's choice (an `Exchange`), so a call can be
// placed straight with a client secret or through a server route without changing this file.

import { AppError, MicrophoneError } from "./errors.js";

const GATHERING_TIMEOUT_MS = 2000;

/** The voice service refused the SDP offer, or answered something that is not SDP. */
export class HandshakeError extends AppError {
  /**
   * @param {number} status the HTTP status, 0 when the request got no answer
   * @param {any} problem the error body, when it was JSON
   * @param {ErrorOptions} [options]
   */
  constructor(status, problem, options) {
    super("handshake", problem?.error?.message || `the voice service answered ${status}`, options);
    this.status = status;
    this.problem = problem;
  }
}

/**
 * Sends an SDP offer and resolves to the SDP answer. Must reject promptly once `signal` aborts.
 * @typedef {(offer: string, signal: AbortSignal) => Promise<string>} Exchange
 */

/**
 * Milliseconds spent in each step of connecting (a test hook and a console aid; no secrets).
 * @typedef {object} Timing
 * @property {number} [microphoneMs]
 * @property {number} [tokenMs]
 * @property {number} [offerMs]  the offer with every ICE candidate (it runs beside the token)
 * @property {number} [readyMs]  from the click until the offer is sent: the offer, the
 *   microphone and the token or secret all ready
 * @property {number} [sdpMs]
 * @property {number} [iceDtlsMs]
 * @property {number} [connectMs]
 * @property {number} [channelMs]
 */

/**
 * @typedef {object} Connection
 * @property {(event: object) => void} send  a client event on the `oai-events` channel
 * @property {(muted: boolean) => void} setMuted
 * @property {() => void} close  idempotent; also runs when the connect signal aborts
 */

/**
 * Opens a Realtime session over WebRTC. When `signal` aborts, at any point, the peer
 * connection is closed and the promise rejects with `signal.reason`. The offer is made at
 * once, while the microphone and the exchange are still coming: its audio section is a
 * transceiver whose track is set when the microphone arrives, before the offer is sent.
 * @param {object} options
 * @param {Promise<MediaStream>} options.microphone  owned by the caller: never stopped here
 * @param {Promise<Exchange>} options.exchange
 * @param {number} options.since  when the attempt started (performance.now()), for `readyMs`
 * @param {AbortSignal} options.signal
 * @param {Timing} options.timing  filled in as the steps complete
 * @param {(event: any) => void} options.onEvent  every server event from the data channel
 * @param {(stream: MediaStream) => void} options.onRemoteStream
 * @param {(state: string) => void} options.onStateChange  RTCPeerConnection.connectionState,
 *   or "channel-closed"
 * @returns {Promise<Connection>}
 */
export async function connect({ microphone, exchange, since, signal, timing, onEvent, onRemoteStream, onStateChange }) {
  signal.throwIfAborted();
  const pc = new RTCPeerConnection();
  // The channel must exist before the offer, so the offer carries an SCTP section.
  const channel = pc.createDataChannel("oai-events");
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    signal.removeEventListener("abort", close);
    pc.ontrack = null;
    pc.onconnectionstatechange = null;
    channel.onmessage = null;
    channel.onclose = null;
    channel.close();
    pc.close();
  };
  signal.addEventListener("abort", close, { once: true });

  // The audio section, before the microphone: the track is set on it once it arrives.
  const audio = pc.addTransceiver("audio", { direction: "sendrecv" });
  /** @type {MediaStreamTrack | null} */
  let track = null;
  pc.ontrack = (event) => onRemoteStream(event.streams[0] || new MediaStream([event.track]));
  let answered = 0;
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "connected") timing.iceDtlsMs = performance.now() - answered;
    onStateChange(pc.connectionState);
  };
  channel.onmessage = (message) => {
    let event;
    try {
      event = JSON.parse(message.data);
    } catch {
      event = { type: "error", error: { message: "unreadable event from the server" } };
    }
    onEvent(event);
  };
  channel.onclose = () => onStateChange("channel-closed");

  try {
    const started = performance.now();
    const offer = await pc.createOffer();
    signal.throwIfAborted();
    await pc.setLocalDescription(offer);
    signal.throwIfAborted();
    await gatheringComplete(pc, signal); // servers without trickle ICE need every candidate in the offer
    signal.throwIfAborted();
    timing.offerMs = performance.now() - started;
    const stream = await microphone;
    signal.throwIfAborted();
    [track = null] = stream.getAudioTracks();
    if (!track) throw new MicrophoneError(null); // a stream without audio: nothing to send
    await audio.sender.replaceTrack(track); // no renegotiation: the section is in the offer
    audio.sender.setStreams(stream);
    const send = await exchange;
    signal.throwIfAborted();
    timing.readyMs = performance.now() - since;
    const sent = performance.now();
    const answer = await send(/** @type {RTCSessionDescription} */ (pc.localDescription).sdp, signal);
    signal.throwIfAborted();
    timing.sdpMs = performance.now() - sent;
    answered = performance.now();
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
    signal.throwIfAborted();
  } catch (error) {
    close();
    throw signal.aborted ? signal.reason : error;
  }

  return {
    send: (event) => {
      if (channel.readyState === "open") channel.send(JSON.stringify(event));
    },
    setMuted: (muted) => {
      if (track) track.enabled = !muted;
    },
    close,
  };
}

/**
 * The exchange of OpenAI's WebRTC flow: the browser posts its offer to the Realtime API with
 * the short-lived client secret, which stays in this closure (never stored, never logged).
 * @param {{value: string, webrtc_url: string}} secret
 * @returns {Exchange}
 */
export function clientSecretExchange(secret) {
  return async (offer, signal) => {
    let response;
    try {
      response = await fetch(secret.webrtc_url, {
        method: "POST",
        body: offer,
        headers: { Authorization: `Bearer ${secret.value}`, "Content-Type": "application/sdp" },
        signal,
      });
    } catch (error) {
      signal.throwIfAborted();
      throw new HandshakeError(0, null, { cause: error }); // offline, DNS, CORS: no answer at all
    }
    const text = await response.text();
    if (response.status !== 201 || !text.startsWith("v=")) {
      let problem = null;
      try {
        problem = JSON.parse(text);
      } catch {
        // not JSON either: the status says enough
      }
      throw new HandshakeError(response.status, problem);
    }
    return text;
  };
}

/**
 * Resolves when ICE gathering completes, after GATHERING_TIMEOUT_MS (go with what we have),
 * or when `signal` aborts; leaves no listener or timer behind.
 * @param {RTCPeerConnection} pc
 * @param {AbortSignal} signal
 * @returns {Promise<void>}
 */
function gatheringComplete(pc, signal) {
  if (pc.iceGatheringState === "complete" || signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const finish = () => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", changed);
      signal.removeEventListener("abort", finish);
      resolve();
    };
    const changed = () => {
      if (pc.iceGatheringState === "complete") finish();
    };
    const timer = setTimeout(finish, GATHERING_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", changed);
    signal.addEventListener("abort", finish, { once: true });
  });
}
