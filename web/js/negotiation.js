// The WebRTC handshake with the Realtime API: offer, POST it with the client secret, apply
// the answer. No DOM here: the caller passes the microphone and gets events and tracks back.

const GATHERING_TIMEOUT_MS = 2000;

/** The Realtime API refused the SDP offer, or answered something that is not SDP. */
export class HandshakeError extends Error {
  /** @param {number} status @param {any} problem */
  constructor(status, problem) {
    super(problem?.error?.message || `the Realtime API answered ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/**
 * @typedef {object} Connection
 * @property {RTCPeerConnection} pc
 * @property {(event: object) => void} send  a client event on the `oai-events` channel
 * @property {(muted: boolean) => void} setMuted
 * @property {() => void} close
 * @property {Record<string, number>} timing  ms spent in each step of the handshake
 */

/**
 * Opens a Realtime session over WebRTC.
 * @param {object} options
 * @param {{value: string, webrtc_url: string}} options.secret  the short-lived ek_ secret
 * @param {MediaStream} options.microphone
 * @param {(event: any) => void} options.onEvent  every server event from the data channel
 * @param {(stream: MediaStream) => void} options.onRemoteStream
 * @param {(state: string) => void} options.onStateChange  RTCPeerConnection.connectionState
 * @returns {Promise<Connection>}
 */
export async function connect({ secret, microphone, onEvent, onRemoteStream, onStateChange }) {
  const timing = {};
  let answered = 0;
  const pc = new RTCPeerConnection();
  const [track] = microphone.getAudioTracks();
  pc.addTrack(track, microphone);
  pc.ontrack = (event) => onRemoteStream(event.streams[0] || new MediaStream([event.track]));
  const started = performance.now();
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "connected") timing.iceDtlsMs = performance.now() - answered;
    onStateChange(pc.connectionState);
  };

  // The channel must exist before the offer, so the offer carries an SCTP section.
  const channel = pc.createDataChannel("oai-events");
  channel.onmessage = (message) => {
    try {
      onEvent(JSON.parse(message.data));
    } catch {
      onEvent({ type: "error", error: { message: "unreadable event from the server" } });
    }
  };
  channel.onclose = () => onStateChange("channel-closed");

  try {
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc); // servers without trickle ICE need every candidate in the offer
    timing.offerMs = performance.now() - started;
    const sent = performance.now();
    const response = await fetch(secret.webrtc_url, {
      method: "POST",
      body: pc.localDescription?.sdp,
      headers: { Authorization: `Bearer ${secret.value}`, "Content-Type": "application/sdp" },
    }).catch(() => {
      throw new HandshakeError(0, null);
    });
    const text = await response.text();
    if (response.status !== 201 || !text.startsWith("v=")) {
      let problem = null;
      try { problem = JSON.parse(text); } catch { /* not JSON either */ }
      throw new HandshakeError(response.status, problem);
    }
    timing.sdpMs = performance.now() - sent;
    answered = performance.now();
    await pc.setRemoteDescription({ type: "answer", sdp: text });
  } catch (error) {
    pc.close();
    throw error;
  }

  return {
    pc,
    timing,
    send: (event) => channel.readyState === "open" && channel.send(JSON.stringify(event)),
    setMuted: (muted) => { track.enabled = !muted; },
    close: () => {
      channel.onclose = null;
      pc.onconnectionstatechange = null;
      channel.close();
      pc.getSenders().forEach((sender) => sender.track?.stop());
      pc.close();
    },
  };
}

/** @param {RTCPeerConnection} pc */
function gatheringComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener("icegatheringstatechange", done);
      resolve(undefined);
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, GATHERING_TIMEOUT_MS); // go with what we have
  });
}
