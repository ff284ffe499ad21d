// What the voice service says over the data channel, turned into a transcript: the Realtime
// API's items, or GPT-Live's transcript deltas (no item ids: a line per turn).

/**
 * @typedef {{id: string, role: "user" | "assistant" | "note", text: string, final: boolean}} Line
 */

export class Transcript {
  /** @param {(lines: Line[]) => void} onChange */
  constructor(onChange) {
    /** @type {Line[]} */
    this.lines = [];
    this.onChange = onChange;
    /** @type {any} */
    this.session = null;
    this.turn = 0; // GPT-Live: a new line each time the speaker changes
    /** @type {"user" | "assistant" | null} */
    this.speaker = null;
  }

  /** @param {Line["role"]} role @param {string} text @param {string} [id] */
  add(role, text, id = crypto.randomUUID()) {
    this.lines.push({ id, role, text, final: true });
    this.onChange(this.lines);
  }

  /**
   * Applies one server event. Returns the event type, for the caller's state machine.
   * @param {any} event
   */
  apply(event) {
    switch (event.type) {
      case "session.created":
      case "session.started":
        this.session = event.session;
        break;
      case "session.input_transcript.delta":
        this._spoken("user", event.delta || "");
        break;
      case "session.output_transcript.delta":
        this._spoken("assistant", event.delta || "");
        break;
      case "conversation.item.input_audio_transcription.completed":
        this._upsert(`in-${event.item_id}`, "user", event.transcript || "", true);
        break;
      case "response.output_text.delta":
      case "response.output_audio_transcript.delta":
        this._append(`out-${event.item_id}`, event.delta || "");
        break;
      case "response.output_text.done":
        this._upsert(`out-${event.item_id}`, "assistant", event.text || "", true);
        break;
      case "response.output_audio_transcript.done":
        this._upsert(`out-${event.item_id}`, "assistant", event.transcript || "", true);
        break;
      default:
        break;
    }
    return event.type;
  }

  /** A Live transcript delta: to the speaker's current line. @param {"user" | "assistant"} role @param {string} delta */
  _spoken(role, delta) {
    if (this.speaker !== role) {
      this.speaker = role;
      this.turn += 1;
    }
    const id = `live-${this.turn}`;
    const line = this.lines.find((l) => l.id === id);
    if (line) line.text += delta;
    else this.lines.push({ id, role, text: delta, final: false });
    this.onChange(this.lines);
  }

  /** @param {string} id @param {string} delta */
  _append(id, delta) {
    const line = this.lines.find((l) => l.id === id);
    if (line) line.text += delta;
    else this.lines.push({ id, role: "assistant", text: delta, final: false });
    this.onChange(this.lines);
  }

  /** @param {string} id @param {Line["role"]} role @param {string} text @param {boolean} final */
  _upsert(id, role, text, final) {
    const line = this.lines.find((l) => l.id === id);
    if (line) Object.assign(line, { text: text || line.text, final });
    else this.lines.push({ id, role, text, final });
    this.onChange(this.lines);
  }
}

/**
 * The two client events that send a typed message and ask for a reply.
 * @param {string} text
 */
export function userMessage(text) {
  return [
    { type: "conversation.item.create",
      item: { type: "message", role: "user", content: [{ type: "input_text", text }] } },
    { type: "response.create" },
  ];
}
