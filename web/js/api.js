// The token vending API: one call, and what its answers mean.

/**
 * @typedef {{name: string, remaining: number, resetAfter: number}} Window
 * @typedef {{value: string, expires_at: number, session: any, webrtc_url: string}} ClientSecret
 */

/** A refusal or failure, with the problem document (RFC 9457) the API sent. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {any} problem
   * @param {number | null} retryAfter seconds, from the Retry-After header
   */
  constructor(status, problem, retryAfter) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.retryAfter = retryAfter;
  }
}

/**
 * Parses `RateLimit: "minute";r=4;t=42, "day";r=49;t=50000` (draft-ietf-httpapi-ratelimit-headers).
 * @param {string | null} header
 * @returns {Window[]}
 */
export function parseRateLimit(header) {
  if (!header) return [];
  return header.split(",").map((item) => {
    const [name, ...params] = item.trim().split(";");
    const values = Object.fromEntries(params.map((p) => p.trim().split("=")));
    return { name: name.replace(/"/g, ""), remaining: Number(values.r), resetAfter: Number(values.t) };
  }).filter((w) => Number.isFinite(w.remaining));
}

/**
 * Asks the API for a client secret. The secret is returned, never stored.
 * @param {string} apiBaseUrl
 * @param {string} accessToken
 * @param {object} [request] OpenAI's request shape; the server's profile decides what is allowed
 * @returns {Promise<{secret: ClientSecret, quota: Window[]}>}
 */
export async function requestClientSecret(apiBaseUrl, accessToken, request = {}) {
  let response;
  try {
    response = await fetch(`${apiBaseUrl.replace(/\/$/, "")}/v1/realtime/client_secrets`, {
      method: "POST",
      headers: { Authorization: `Bearer ${accessToken}`, "Content-Type": "application/json" },
      body: JSON.stringify(request),
    });
  } catch {
    throw new ApiError(0, null, null); // offline, DNS, CORS: the request never got an answer
  }
  const quota = parseRateLimit(response.headers.get("RateLimit"));
  if (response.ok) return { secret: await response.json(), quota };
  const problem = await response.json().catch(() => null);
  const retryAfter = Number(response.headers.get("Retry-After")) || problem?.retry_after || null;
  const error = new ApiError(response.status, problem, retryAfter);
  error.quota = quota;
  throw error;
}
