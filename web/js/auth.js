// Sign-in with the authorization-code flow and PKCE (RFC 7636) against any OIDC issuer:
// Cognito, Auth0, Okta, or the local stack's development issuer. Tokens live in session
// storage (gone when the tab closes); nothing here ever sees an OpenAI credential.

import { AppError } from "./errors.js";

const TOKENS = "rtv.tokens";
const PENDING = "rtv.pkce";
const EXPIRY_MARGIN_MS = 30_000; // refresh a little before the issuer would refuse

/** An error the user can fix by signing in (again). */
export class SignInRequired extends AppError {
  /** @param {string} message a sentence for the user */
  constructor(message) {
    super("sign-in-required", message);
  }
}

/** The sign-in service (the OIDC issuer) could not be reached or refused to describe itself. */
export class SignInUnavailable extends AppError {
  /** @param {number} status 0 when the request got no answer @param {ErrorOptions} [options] */
  constructor(status, options) {
    super("sign-in-unavailable", `the sign-in service answered ${status}`, options);
    this.status = status;
  }
}

// What an issuer's `?error=` code means, in fixed sentences (RFC 6749 4.1.2.1, OIDC Core
// 3.1.2.6). The code itself is never shown: the query string is anyone's to write.
/** @type {Readonly<Record<string, string>>} */
const SIGN_IN_ERRORS = {
  access_denied: "Sign-in was cancelled or refused. Sign in again when you are ready.",
  login_required: "Please sign in to continue.",
  interaction_required: "The sign-in service needs you to sign in again.",
  consent_required: "The sign-in service needs your consent. Please sign in again.",
  account_selection_required: "Please choose an account to sign in with.",
  temporarily_unavailable: "The sign-in service is busy right now. Please try again in a moment.",
  server_error: "The sign-in service had a problem. Please try again in a moment.",
  invalid_scope: "This app asked for access the sign-in service does not allow. Ask your administrator.",
  unauthorized_client: "This app is not allowed to sign in here. Ask your administrator.",
  invalid_request: "The sign-in request was refused. Ask your administrator if this persists.",
  unsupported_response_type: "The sign-in request was refused. Ask your administrator if this persists.",
};
const SIGN_IN_FAILED = "Sign-in did not complete. Please try again.";

/** @param {string | null} code @returns {string} */
export function signInErrorSentence(code) {
  return (code !== null && Object.hasOwn(SIGN_IN_ERRORS, code) && SIGN_IN_ERRORS[code]) || SIGN_IN_FAILED;
}

/** @param {Uint8Array} bytes */
function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(length = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(length)));
}

/** @param {string} verifier */
async function s256(verifier) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/** @param {string} jwt */
function claimsOf(jwt) {
  try {
    const part = (jwt.split(".")[1] ?? "").replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
  } catch {
    return {};
  }
}

export class Auth {
  /**
   * @param {{issuer: string, clientId: string, redirectUri: string, scopes: string,
   *   cognitoLogoutUrl?: string, revocationEndpoint?: string}} config
   * @param {Storage} [storage]
   */
  constructor(config, storage = sessionStorage) {
    this.config = config;
    this.storage = storage;
    /** @type {Promise<any> | null} */
    this._discovery = null;
  }

  /** The issuer's OpenID configuration, fetched once. */
  discovery() {
    this._discovery ??= fetch(`${this.config.issuer.replace(/\/$/, "")}/.well-known/openid-configuration`)
      .catch((error) => {
        throw new SignInUnavailable(0, { cause: error });
      })
      .then((r) => {
        if (!r.ok) throw new SignInUnavailable(r.status);
        return r.json();
      });
    // A failure is not remembered: the next attempt asks again.
    this._discovery.catch(() => {
      this._discovery = null;
    });
    return this._discovery;
  }

  /** Sends the browser to the issuer's sign-in page. */
  async signIn() {
    const { authorization_endpoint: endpoint } = await this.discovery();
    const verifier = randomString(48);
    const state = randomString(16);
    this.storage.setItem(PENDING, JSON.stringify({ verifier, state }));
    const url = new URL(endpoint);
    url.search = new URLSearchParams({
      response_type: "code",
      client_id: this.config.clientId,
      redirect_uri: this.config.redirectUri,
      scope: this.config.scopes,
      state,
      code_challenge: await s256(verifier),
      code_challenge_method: "S256",
    }).toString();
    location.assign(url.toString());
  }

  /**
   * Finishes a sign-in when the issuer has sent the browser back with a code.
   * @returns {Promise<boolean>} whether this page load was a sign-in redirect
   */
  async completeSignIn() {
    const params = new URLSearchParams(location.search);
    if (!params.has("code") && !params.has("error")) return false;
    history.replaceState(null, "", location.pathname); // the code is single-use: drop it from the URL
    const pending = JSON.parse(this.storage.getItem(PENDING) || "null");
    this.storage.removeItem(PENDING);
    if (params.has("error")) throw new SignInRequired(signInErrorSentence(params.get("error")));
    if (!pending || pending.state !== params.get("state")) {
      throw new SignInRequired("Sign-in could not be verified. Please sign in again.");
    }
    await this._token({
      grant_type: "authorization_code",
      code: /** @type {string} */ (params.get("code")),
      redirect_uri: this.config.redirectUri,
      code_verifier: pending.verifier,
    });
    return true;
  }

  /** @returns {boolean} */
  get signedIn() {
    return this._tokens() !== null;
  }

  /** A name to show: the issuer's preferred name, else the subject. */
  get userName() {
    const tokens = this._tokens();
    if (!tokens) return "";
    const claims = claimsOf(tokens.id_token || tokens.access_token);
    return claims.preferred_username || claims.email || claims.name || claims.sub || "";
  }

  /**
   * A valid access token, refreshed when needed.
   * @returns {Promise<string>}
   */
  async accessToken() {
    const tokens = this._tokens();
    if (!tokens) throw new SignInRequired("Please sign in to start a conversation.");
    if (Date.now() < tokens.expires_at - EXPIRY_MARGIN_MS) return tokens.access_token;
    if (tokens.refresh_token) {
      try {
        await this._token({ grant_type: "refresh_token", refresh_token: tokens.refresh_token });
        return /** @type {any} */ (this._tokens()).access_token;
      } catch {
        // fall through: the refresh token is spent or revoked
      }
    }
    this.forget();
    throw new SignInRequired("Your sign-in has expired. Please sign in again.");
  }

  /** Drops the tokens (after a 401, or on sign-out). */
  forget() {
    this.storage.removeItem(TOKENS);
  }

  /**
   * Signs out at the issuer, by its own contract, after revoking the refresh token where the
   * issuer publishes a revocation endpoint (RFC 7009): a copy of the tokens left anywhere is
   * then worth at most one access token's remaining minutes.
   */
  async signOut() {
    const tokens = this._tokens();
    this.forget();
    const discovery = await this.discovery().catch(() => ({}));
    const revocation = this.config.revocationEndpoint || discovery.revocation_endpoint;
    if (revocation && tokens?.refresh_token) {
      await fetch(revocation, {
        method: "POST",
        headers: { "Content-Type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({
          token: tokens.refresh_token, token_type_hint: "refresh_token", client_id: this.config.clientId,
        }),
        signal: AbortSignal.timeout(5000),
      }).catch(() => {}); // signing out must not wait on a slow issuer
    }
    location.assign(this._logoutUrl(discovery, tokens?.id_token));
  }

  /** @param {any} discovery @param {string | undefined} idToken */
  _logoutUrl(discovery, idToken) {
    if (this.config.cognitoLogoutUrl) {
      // Amazon Cognito: client_id and logout_uri (one of the client's sign-out URLs).
      const url = new URL(this.config.cognitoLogoutUrl);
      url.search = new URLSearchParams({ client_id: this.config.clientId, logout_uri: this.config.redirectUri }).toString();
      return url.toString();
    }
    if (!discovery.end_session_endpoint) return this.config.redirectUri;
    // OpenID Connect RP-Initiated Logout 1.0.
    const url = new URL(discovery.end_session_endpoint);
    url.search = new URLSearchParams({
      client_id: this.config.clientId,
      post_logout_redirect_uri: this.config.redirectUri,
      ...(idToken ? { id_token_hint: idToken } : {}),
    }).toString();
    return url.toString();
  }

  /** @param {Record<string, string>} form */
  async _token(form) {
    const { token_endpoint: endpoint } = await this.discovery();
    const response = await fetch(endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ client_id: this.config.clientId, ...form }),
    });
    if (!response.ok) throw new SignInRequired("The sign-in service refused. Please sign in again.");
    const body = await response.json();
    const previous = this._tokens();
    this.storage.setItem(TOKENS, JSON.stringify({
      access_token: body.access_token,
      id_token: body.id_token || previous?.id_token,
      refresh_token: body.refresh_token || previous?.refresh_token,
      expires_at: Date.now() + (body.expires_in || 300) * 1000,
    }));
  }

  _tokens() {
    try {
      const tokens = JSON.parse(this.storage.getItem(TOKENS) || "null");
      return tokens && tokens.access_token ? tokens : null;
    } catch {
      return null;
    }
  }
}
