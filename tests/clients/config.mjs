// What every client script needs: where Plugsky is, the key, the model and what to do.
// Each comes from argv (--base-url=…, --api-key=…, --model=…, --mode=…) or else the environment
// (PLUGSKY_BASE_URL, PLUGSKY_API_KEY, PLUGSKY_MODEL, PLUGSKY_MODE), so a script runs by hand too.
import { parseArgs } from "node:util";

const NAMES = { "base-url": "PLUGSKY_BASE_URL", "api-key": "PLUGSKY_API_KEY", model: "PLUGSKY_MODEL", mode: "PLUGSKY_MODE" };

export function config() {
  const options = Object.fromEntries(Object.keys(NAMES).map((name) => [name, { type: "string" }]));
  const { values } = parseArgs({ options });
  const found = {};
  for (const [name, variable] of Object.entries(NAMES)) {
    found[name] = values[name] ?? process.env[variable];
    if (!found[name]) throw new Error(`--${name} or ${variable} is required`);
  }
  // The server's /v1, as both SDKs expect their baseURL.
  return { baseURL: `${found["base-url"]}/v1`, apiKey: found["api-key"], model: found.model, mode: found.mode };
}

// One JSON document on stdout: the test reads nothing else.
export function report(result) {
  process.stdout.write(JSON.stringify(result) + "\n");
}

// A mode the script does not know is a mistake in the caller; say which modes exist.
export async function run(modes) {
  const settings = config();
  const mode = modes[settings.mode];
  if (!mode) throw new Error(`unknown mode ${settings.mode}; one of ${Object.keys(modes).join(", ")}`);
  report(await mode(settings));
}
