// The page's own errors. Each is a class with a stable `code`: callers tell failures apart by
// type (instanceof), never by matching message text.

/** Base class: `name` is the class's name, `code` a stable identifier for tests and logs. */
export class AppError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   * @param {ErrorOptions} [options]
   */
  constructor(code, message, options) {
    super(message, options);
    this.name = new.target.name;
    /** @readonly */
    this.code = code;
  }
}

/**
 * The call ended (hung up, or failed elsewhere) while a step of it was still waiting. The
 * step stops quietly: this is never shown to the user.
 */
export class CallEnded extends AppError {
  constructor() {
    super("call-ended", "the call has ended");
  }
}

/** The connection to the voice service dropped after it was set up. */
export class ConnectionLost extends AppError {
  /** @param {string} state the peer connection's or the data channel's state that ended it */
  constructor(state) {
    super("connection-lost", `the connection was lost (${state})`);
    this.state = state;
  }
}

/** The conversation reached its limit: the Realtime API's session cap, or the call's deadline. */
export class SessionLimitReached extends AppError {
  /** @param {number} seconds */
  constructor(seconds) {
    super("session-limit", `the conversation reached its ${seconds}-second limit`);
    this.seconds = seconds;
  }
}

/** The server ended a server-owned call at its deadline: the call is over on its side too. */
export class CallLimitReached extends SessionLimitReached {}

/** The server ended a server-owned call because the day's spend budget is used up. */
export class SpendLimitReached extends AppError {
  constructor() {
    super("spend-limit", "the call ended: the day's spend budget is used up");
  }
}

/** The server ended a server-owned call because its session was changed against the profile. */
export class PolicyHangup extends AppError {
  constructor() {
    super("policy", "the call ended: its session was changed against the service's settings");
  }
}

/** The server ended a server-owned call because it could not be watched (metered and kept
 * to the service's settings): its watcher did not attach in time, or failed. */
export class UnwatchedHangup extends AppError {
  constructor() {
    super("unwatched", "the call ended: the service could not watch it");
  }
}

/** The service's operator ended the call: the user was blocked, or this call was ended. */
export class OperatorHangup extends AppError {
  /** @param {boolean} blocked */
  constructor(blocked) {
    super(blocked ? "blocked" : "operator", "the call ended: the service's operator ended it");
    this.blocked = blocked;
  }
}

/** OpenAI's safety system stopped a GPT-Live session. */
export class ContentStopped extends AppError {
  constructor() {
    super("content", "the call ended: the voice service's safety system stopped it");
  }
}

/**
 * The microphone could not be opened. `reason` comes from the browser's DOMException name.
 * @typedef {"denied" | "not-found" | "unavailable"} MicrophoneFailure
 */
export class MicrophoneError extends AppError {
  /** @param {unknown} cause what getUserMedia rejected with */
  constructor(cause) {
    const name = cause instanceof DOMException ? cause.name : "";
    /** @type {MicrophoneFailure} */
    const reason = ["NotAllowedError", "SecurityError"].includes(name) ? "denied"
      : ["NotFoundError", "OverconstrainedError"].includes(name) ? "not-found"
      : "unavailable";
    super(`microphone-${reason}`, `the microphone could not be opened (${name || "unknown"})`, { cause });
    this.reason = reason;
  }
}

/** A state change the call's state machine does not allow: a bug in the page, never the user's. */
export class InvalidTransition extends AppError {
  /** @param {string} from @param {string} to */
  constructor(from, to) {
    super("invalid-transition", `a call cannot go from ${from} to ${to}`);
  }
}

/** config.json is missing or is not the object the page needs. */
export class ConfigError extends AppError {
  /** @param {string} message @param {ErrorOptions} [options] */
  constructor(message, options) {
    super("config", message, options);
  }
}
