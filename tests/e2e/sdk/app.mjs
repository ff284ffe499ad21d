// A browser app on its own origin that talks through the token vending API with OpenAI's own
// SDKs, as docs/clients.md shows it: the `openai` package mints a client secret from our API,
// the Agents SDK (@openai/agents-realtime) opens the call, in either of the API's two flows;
// the `openai` package places a GPT-Live session.
// Bundled by esbuild with the SDKs from node_modules; the test drives it through `window.sdkApp`.
import './zod-jitless.mjs'; // first: see the module
import OpenAI from 'openai';
import { OpenAIRealtimeWebRTC, RealtimeAgent, RealtimeSession } from '@openai/agents-realtime';

/** What the page saw, in order, for the test to read. */
const seen = [];
let current = null; // {session, callId, api, token, owned, endedByUs}

function note(kind, detail = {}) {
  seen.push({ kind, ...detail });
  document.getElementById('status').textContent = kind;
}

function agent() {
  return new RealtimeAgent({
    name: 'Assistant',
    instructions: 'You are a friendly, concise voice assistant.',
  });
}

/** An error the SDK reports, as text: a server's `error` event, or the data channel's. */
function describe(error) {
  const inner = error?.error ?? error;
  if (inner?.error?.message) return `${inner.error.param}: ${inner.error.message}`;
  if (inner instanceof Event) return `${inner.type}: ${inner.error?.errorDetail ?? ''}`;
  return String(inner?.message ?? inner);
}

function watch(session) {
  session.on('error', (error) => note('error', { text: describe(error) }));
  session.transport.on('*', (event) => {
    if (event.type === 'session.updated') note('session.updated', { model: event.session.model });
  });
}

/** The `openai` package pointed at our API, the user's access token as its API key. */
function openaiClient(api, token) {
  return new OpenAI({
    apiKey: token, // our API reads it; OpenAI never sees it
    baseURL: `${api}/v1`,
    dangerouslyAllowBrowser: true, // no OpenAI key is in this page
    maxRetries: 0, // a retried create could place a second call
  });
}

/**
 * Flow 1, client secrets: the `openai` package mints the secret from our API (its baseURL, and
 * the user's access token as its API key), the Agents SDK opens the call with OpenAI itself.
 * The SDK names its own default model in its first `session.update`, which a secret minted for
 * another model refuses whole: give it the secret's model (and voice).
 * @param {{api: string, token: string, model?: string, sdkModel?: string | null}} options
 *   sdkModel: the model the SDK is told (by default the secret's; null: the SDK's own default)
 */
async function clientSecrets({ api, token, model, sdkModel }) {
  const secret = await openaiClient(api, token).realtime.clientSecrets.create({
    session: { type: 'realtime', ...(model ? { model } : {}) },
  });
  note('minted', { model: secret.session.model });
  const session = new RealtimeSession(agent(), {
    transport: new OpenAIRealtimeWebRTC({ baseUrl: secret.webrtc_url }),
    ...(sdkModel === null ? {} : { model: sdkModel ?? secret.session.model }),
    config: { audio: { output: { voice: secret.session.audio.output.voice } } },
  });
  watch(session);
  await session.connect({ apiKey: secret.value });
  current = { session, callId: session.transport.callId, api, token, owned: false };
  note('connected', { callId: current.callId });
  return current.callId;
}

/**
 * Flow 2, server-owned calls: the SDK's WebRTC transport posts its offer to our API with the
 * user's access token (`useInsecureApiKey`: in a browser the SDK otherwise insists on an `ek_`
 * secret; no OpenAI key is involved), and the server places, watches and ends the call.
 * @param {{api: string, token: string, model?: string}} options
 *   model: the profile's (the shipped default profile's first model by default)
 */
async function serverOwnedCall({ api, token, model = 'gpt-realtime-2.1' }) {
  const transport = new OpenAIRealtimeWebRTC({
    baseUrl: `${api}/v1/realtime/calls`,
    useInsecureApiKey: true,
  });
  const session = new RealtimeSession(agent(), { transport, model });
  const call = { session, callId: undefined, api, token, owned: true, endedByUs: false };
  current = call;
  watch(session);
  // Watched from the start: the server may end the call before `connect()` resolves. The
  // call id is kept from the first event: the transport forgets it when the connection closes.
  transport.on('*', () => { call.callId ??= transport.callId; });
  transport.on('connection_change', (status) => {
    if (status === 'disconnected' && call.callId && !call.endedByUs) void askWhyItEnded(call);
  });
  await session.connect({ apiKey: token });
  call.callId ??= transport.callId;
  note('connected', { callId: call.callId });
  return call.callId;
}

/**
 * GPT-Live, which the Agents SDK has no helpers for: the `openai` package's `live.create`
 * posts OpenAI's own create body to our API (`POST /v1/live/sessions`), the offer inside with
 * its ICE candidates gathered, and the server places the session as it places a call.
 * @param {{api: string, token: string}} options
 */
async function liveSession({ api, token }) {
  const peer = new RTCPeerConnection();
  const microphone = await navigator.mediaDevices.getUserMedia({ audio: true });
  peer.addTrack(microphone.getAudioTracks()[0], microphone);
  const events = peer.createDataChannel('oai-events');
  const started = new Promise((resolve) => {
    events.addEventListener('message', (message) => {
      if (JSON.parse(message.data).type === 'session.started') resolve();
    });
  });
  await peer.setLocalDescription(await peer.createOffer());
  await new Promise((resolve) => {
    if (peer.iceGatheringState === 'complete') resolve();
    peer.addEventListener('icegatheringstatechange', () => {
      if (peer.iceGatheringState === 'complete') resolve();
    });
  });
  const created = await openaiClient(api, token).live.create({
    transport: { type: 'webrtc', sdp: peer.localDescription.sdp },
  });
  await peer.setRemoteDescription({ type: 'answer', sdp: created.transport.sdp });
  await started;
  const id = created.session.id;
  current = {
    callId: id, api, token, owned: true, endedByUs: false,
    hangupUrl: `${api}/v1/live/sessions/${id}/hangup`,
    session: { close: () => { peer.close(); microphone.getTracks().forEach((t) => t.stop()); } },
  };
  note('connected', { callId: id });
  return id;
}

/**
 * Our API's hangup for a server-owned call: it ends the call if it is still up, gives back
 * its unused minutes, and says why the call ended (`end_reason`), whoever ended it.
 */
async function hangUpThroughApi(call) {
  const url = call.hangupUrl ?? `${call.api}/v1/realtime/calls/${call.callId}/hangup`;
  const answer = await fetch(url, {
    method: 'POST',
    headers: { Authorization: `Bearer ${call.token}` },
  });
  const body = await answer.json();
  return { status: answer.status, endReason: body.end_reason ?? null };
}

/**
 * The connection dropped and the app did not end it: all the SDK says is a data channel
 * error (`sctp-failure`). The API's hangup says whether the server ended the call and why, as
 * the product page asks it (web/js/main.js).
 */
async function askWhyItEnded(call) {
  note('ended', await hangUpThroughApi(call));
}

/**
 * The app's own hangup. A server-owned call is hung up through the API first: the server ends
 * it as the user's hangup (`end_reason` `hangup`) and gives back its unused minutes at once.
 * Closing the SDK's connection first would end it too, but as a dropped line (`closed`), its
 * minutes back only once the server noticed.
 */
async function hangUp() {
  const call = current;
  call.endedByUs = true;
  const answer = call.owned ? await hangUpThroughApi(call) : {};
  call.session.close();
  note('hung up', answer);
}

window.sdkApp = { clientSecrets, serverOwnedCall, liveSession, hangUp, seen };
note('ready');
