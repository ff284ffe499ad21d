// The Agents SDK loaded as app.mjs loads it but without zod's `jitless` setting: zod's probe
// for `new Function` is refused by the CSP, caught, and logged nowhere. The browser tests'
// CSP check must still see it (tests/e2e/test_sdk.py).
import { RealtimeAgent } from '@openai/agents-realtime';

window.sdkLoaded = typeof RealtimeAgent === 'function';
