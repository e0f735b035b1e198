// The Vercel AI SDK's generateObject and streamObject through its OpenAI-compatible provider,
// with structured outputs on (a `json_schema` response_format) or off (`json_object`).
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateObject, streamObject } from "ai";
import { z } from "zod";
import process from "node:process";
import { API_KEY, BASE_URL, MODEL, print } from "./common.mjs";

const provider = createOpenAICompatible({
  name: "ai-api",
  baseURL: BASE_URL,
  apiKey: API_KEY,
  includeUsage: true,
  supportsStructuredOutputs: true,
});
const schema = z.object({
  city: z.string(),
  unit: z.enum(["celsius", "fahrenheit"]),
  days: z.array(z.object({ high: z.number(), rain: z.boolean() })).min(1),
  note: z.string().nullable(),
});
const request = { model: provider(MODEL), prompt: "Forecast for Lima", schema, maxRetries: 0 };

async function generated() {
  const result = await generateObject(request);
  return { object: result.object, finish_reason: result.finishReason };
}

async function streamed() {
  const result = streamObject({ ...request, onError: () => {} });
  for await (const _ of result.partialObjectStream) {
    // the partial objects are not checked: the final one is
  }
  return { object: await result.object, finish_reason: "stop" };
}

const mode = process.argv[3] ?? "generate";
print(mode === "stream" ? await streamed() : await generated());
