// The token vending API: one call, and what its answers mean.

import { AppError } from "./errors.js";

/**
 * @typedef {{name: string, remaining: number, resetAfter: number}} QuotaWindow
 * @typedef {{value: string, expires_at: number, session: any, webrtc_url: string}} ClientSecret
 */

/** A refusal or failure, with the problem document (RFC 9457) the API sent. */
export class ApiError extends AppError {
  /**
   * @param {number} status 0 when the request got no answer
   * @param {any} problem
   * @param {number | null} retryAfter seconds, from the Retry-After header
   * @param {QuotaWindow[]} [quota] what the RateLimit header said is left
   * @param {ErrorOptions} [options]
   */
  constructor(status, problem, retryAfter, quota = [], options = undefined) {
    super("api", problem?.detail || `the API answered ${status}`, options);
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
    this.quota = quota;
  }
}

/**
 * Parses `RateLimit: "minute";r=4;t=42, "day";r=49;t=50000` (draft-ietf-httpapi-ratelimit-headers).
 * @param {string | null} header
 * @returns {QuotaWindow[]}
 */
export function parseRateLimit(header) {
  if (!header) return [];
  return header.split(",").map((item) => {
    const [name = "", ...params] = item.trim().split(";");
    const values = Object.fromEntries(params.map((p) => p.trim().split("=")));
    return { name: name.replace(/"/g, ""), remaining: Number(values.r), resetAfter: Number(values.t) };
  }).filter((w) => Number.isFinite(w.remaining));
}

/**
 * Asks the API for a client secret. The secret is returned, never stored.
 * @param {string} apiBaseUrl
 * @param {string} accessToken
 * @param {object} [request] OpenAI's request shape; the server's profile decides what is allowed
 * @param {AbortSignal} [signal] aborts the request; the promise then rejects with its reason
 * @returns {Promise<{secret: ClientSecret, quota: QuotaWindow[]}>}
 */
export async function requestClientSecret(apiBaseUrl, accessToken, request = {}, signal = undefined) {
  let response;
  try {
    response = await fetch(`${apiBaseUrl.replace(/\/$/, "")}/v1/realtime/client_secrets`, {
      method: "POST",
      headers: { Authorization: `Bearer ${accessToken}`, "Content-Type": "application/json" },
      body: JSON.stringify(request),
      signal: signal ?? null,
    });
  } catch (error) {
    signal?.throwIfAborted();
    // offline, DNS, CORS: the request never got an answer
    throw new ApiError(0, null, null, [], { cause: error });
  }
  const quota = parseRateLimit(response.headers.get("RateLimit"));
  if (response.ok) return { secret: await response.json(), quota };
  throw await refusal(response, quota);
}

/**
 * The ApiError for a refused request: its problem document, Retry-After and quota.
 * @param {Response} response
 * @param {QuotaWindow[]} quota
 * @returns {Promise<ApiError>}
 */
export async function refusal(response, quota) {
  const problem = await response.json().catch(() => null);
  const retryAfter = Number(response.headers.get("Retry-After")) || problem?.retry_after || null;
  return new ApiError(response.status, problem, retryAfter, quota);
}
