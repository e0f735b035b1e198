// What the scripts share: the gateway's address, the model, the tool, and how a result is printed.
import process from "node:process";

// The gateway's base URL (no /v1): the first argument, else AI_API_URL.
export const GATEWAY = process.argv[2] ?? process.env.AI_API_URL;
if (!GATEWAY) {
  console.error("usage: node SCRIPT GATEWAY_URL (or set AI_API_URL)");
  process.exit(2);
}
export const BASE_URL = `${GATEWAY}/v1`;
export const API_KEY = "unused";
export const MODEL = "groq/openai/gpt-oss-120b";
export const HI = [{ role: "user", content: "Hola, ¿cómo estás?" }];

// The same tool as WEATHER_TOOL in tests/test_api_openai.py.
export const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Weather in a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string" }, days: { type: "number" } },
      required: ["city"],
    },
  },
};

export function weather({ city, days }) {
  return `sunny in ${city} for ${days} days`;
}

// One JSON document on stdout: what the test reads.
export function print(result) {
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
