// The Vercel AI SDK through its OpenAI-compatible provider: streamText or generateText (the
// second argument: stream or generate) with a tool the SDK runs before the model's text answer.
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";
import process from "node:process";
import { API_KEY, BASE_URL, MODEL, print, weather } from "./common.mjs";

const provider = createOpenAICompatible({
  name: "ai-api",
  baseURL: BASE_URL,
  apiKey: API_KEY,
  includeUsage: true,
});
const request = {
  model: provider(MODEL),
  prompt: "What is the weather in Lima?",
  tools: {
    get_weather: tool({
      description: "Weather in a city",
      inputSchema: z.object({ city: z.string(), days: z.number().optional() }),
      execute: async (input) => weather(input),
    }),
  },
  stopWhen: stepCountIs(3),
  maxRetries: 0,
};

function stepsOf(steps) {
  return steps.map((step) => ({
    finish_reason: step.finishReason,
    tool_calls: step.toolCalls.map((c) => ({ name: c.toolName, input: c.input })),
    tool_results: step.toolResults.map((r) => r.output),
    text: step.text,
    usage: step.usage,
  }));
}

async function streamed() {
  const result = streamText({ ...request, onError: () => {} });
  const errors = [];
  for await (const part of result.fullStream) {
    if (part.type === "error") errors.push(String(part.error));
  }
  return {
    text: await result.text,
    finish_reason: await result.finishReason,
    steps: stepsOf(await result.steps),
    usage: await result.totalUsage,
    errors,
  };
}

async function generated() {
  const result = await generateText(request);
  return {
    text: result.text,
    finish_reason: result.finishReason,
    steps: stepsOf(result.steps),
    usage: result.totalUsage,
    errors: [],
  };
}

const mode = process.argv[3] ?? "stream";
print(mode === "generate" ? await generated() : await streamed());
