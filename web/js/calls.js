// Server-owned calls: our API places the call with its own OpenAI key, counts it and ends it at
// its deadline. The browser holds only the user's token; one request carries the SDP offer
// there and brings back the answer with the call's terms. A Realtime call's offer goes as
// SDP to /v1/realtime/calls; a GPT-Live session's in OpenAI's own JSON create to
// /v1/live/sessions (Live has no browser secrets: this is its only way in).

import { ApiError, parseRateLimit, refusal } from "./api.js";

/**
 * @typedef {import("./api.js").QuotaWindow} QuotaWindow
 * @typedef {import("./negotiation.js").Exchange} Exchange
 * @typedef {object} PlacedCall
 * @property {string} id  the call's id, for hangup
 * @property {number} endsAt  Unix seconds: the server ends the call by then (Call-Ends-At)
 * @property {number | null} minutesLeft  call minutes left today (Call-Minutes-Left)
 * @property {QuotaWindow[]} quota
 */

/** @typedef {"realtime" | "live"} Family */

/** @param {string} apiBaseUrl @param {Family} family */
function callsUrl(apiBaseUrl, family) {
  const route = family === "live" ? "/v1/live/sessions" : "/v1/realtime/calls";
  return `${apiBaseUrl.replace(/\/$/, "")}${route}`;
}

/**
 * The create request of each family, and how to read its answer's SDP and the call's id.
 * @param {Family} family @param {string} offer
 */
function createRequest(family, offer) {
  if (family === "live") {
    return {
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ transport: { type: "webrtc", sdp: offer } }),
    };
  }
  return { headers: { "Content-Type": "application/sdp" }, body: offer };
}

/**
 * @param {Family} family @param {Response} response
 * @returns {Promise<{answer: string, id: string}>}
 */
async function createAnswer(family, response) {
  const id = decodeURIComponent((response.headers.get("Location") || "").split("/").pop() || "");
  if (family !== "live") return { answer: await response.text(), id };
  try {
    const created = await response.json();
    const sdp = created?.transport?.sdp;
    return { answer: typeof sdp === "string" ? sdp : "", id: String(created?.session?.id || id) };
  } catch {
    return { answer: "", id };
  }
}

/** @param {string | null} value @returns {number | null} */
function numberOrNull(value) {
  return value !== null && value !== "" && Number.isFinite(Number(value)) ? Number(value) : null;
}

/**
 * The exchange of the server-owned flow: the offer to our API with the user's token
 * (POST /v1/realtime/calls, or /v1/live/sessions for GPT-Live). Never retried (a retry could
 * place a second call), and not cancelled once sent: the server may have placed the call by
 * then, so a call placed for a page that has meanwhile hung up is hung up at once, and
 * `onPlaced` hears of every other.
 * @param {string} apiBaseUrl
 * @param {string} accessToken
 * @param {(call: PlacedCall) => void} onPlaced
 * @param {Family} [family]
 * @returns {Exchange}
 */
export function callsExchange(apiBaseUrl, accessToken, onPlaced, family = "realtime") {
  return async (offer, signal) => {
    signal.throwIfAborted();
    const request = createRequest(family, offer);
    let response;
    try {
      response = await fetch(callsUrl(apiBaseUrl, family), {
        method: "POST",
        headers: { Authorization: `Bearer ${accessToken}`, ...request.headers },
        body: request.body,
      });
    } catch (error) {
      signal.throwIfAborted();
      throw new ApiError(0, null, null, [], { cause: error }); // offline, DNS, CORS: no answer
    }
    const quota = parseRateLimit(response.headers.get("RateLimit"));
    if (response.status !== 201) throw await refusal(response, quota);
    const { answer, id } = await createAnswer(family, response);
    const endsAt = numberOrNull(response.headers.get("Call-Ends-At"));
    if (signal.aborted || !answer.startsWith("v=") || !id || endsAt === null) {
      if (id) hangUpCall(apiBaseUrl, accessToken, id, undefined, family).catch(() => {}); // the deadline ends it otherwise
      signal.throwIfAborted();
      throw new ApiError(502, null, null, quota); // not a call this page can follow
    }
    onPlaced({ id, endsAt, minutesLeft: numberOrNull(response.headers.get("Call-Minutes-Left")), quota });
    return answer;
  };
}

/**
 * The caller's plan and what is left of it today, as the listing answers them (`plan` only
 * when the service has plans; `spend_left_today_usd` only when a budget is set).
 * @typedef {{name: string, title: string, minutes_per_day: number, concurrent_calls: number, spend_per_day_usd: number | null}} Plan
 * @typedef {{minutes_left_today: number, plan?: Plan, spend_left_today_usd?: number | null}} Standing
 */

/**
 * The caller's live calls and what is left today (`GET /v1/realtime/calls`).
 * @param {string} apiBaseUrl
 * @param {string} accessToken
 * @returns {Promise<Standing>}
 */
export async function standing(apiBaseUrl, accessToken) {
  const response = await fetch(callsUrl(apiBaseUrl, "realtime"), {
    headers: { Authorization: `Bearer ${accessToken}` },
  });
  if (!response.ok) throw await refusal(response, []);
  return response.json();
}

/**
 * What the hangup route answers: why the call ended (`hangup`: by its owner, this page
 * included; `deadline`, `spend_limit`, `policy`, `unwatched`, `blocked`, `operator`: the
 * server; `closed`,
 * `session_expired`, `content`: OpenAI) and the minutes left today.
 * @typedef {{end_reason: string, minutes_left_today: number}} EndedCall
 */

/**
 * Ends the call upstream (idempotent: a call that has ended already stays ended) and gives
 * its unused minutes back; the answer says why the call ended. `keepalive` lets it finish
 * while the page unloads.
 * @param {string} apiBaseUrl
 * @param {string} accessToken
 * @param {string} callId
 * @param {AbortSignal} [signal]
 * @param {Family} [family]
 * @returns {Promise<EndedCall>}
 */
export async function hangUpCall(apiBaseUrl, accessToken, callId, signal = undefined, family = "realtime") {
  const response = await fetch(`${callsUrl(apiBaseUrl, family)}/${encodeURIComponent(callId)}/hangup`, {
    method: "POST",
    headers: { Authorization: `Bearer ${accessToken}` },
    keepalive: true,
    signal: signal ?? null,
  });
  if (!response.ok) throw await refusal(response, []);
  return response.json();
}
