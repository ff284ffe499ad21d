// Zod (inside OpenAI's SDKs) probes `new Function("")` when it builds its first object schema,
// to choose its fast path; under a CSP without 'unsafe-eval' the probe is refused (caught,
// and harmless) but still reported as a `securitypolicyviolation`. `jitless` skips the probe.
// This module must be imported before the SDK: the SDK builds its schemas as it loads.
import { config } from 'zod';

config({ jitless: true });
