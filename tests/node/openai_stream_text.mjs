// openai-node: a streamed text answer with its usage chunk (stream_options.include_usage).
import OpenAI from "openai";
import { API_KEY, BASE_URL, HI, print } from "./common.mjs";

const client = new OpenAI({ baseURL: BASE_URL, apiKey: API_KEY, maxRetries: 0 });
const stream = await client.chat.completions.create({
  model: "auto",
  messages: HI,
  stream: true,
  stream_options: { include_usage: true },
});
let text = "";
const finishReasons = [];
const models = new Set();
let usage = null;
let chunks = 0;
for await (const chunk of stream) {
  chunks += 1;
  models.add(chunk.model);
  for (const choice of chunk.choices) {
    text += choice.delta.content ?? "";
    if (choice.finish_reason) finishReasons.push(choice.finish_reason);
  }
  if (chunk.usage) usage = { ...chunk.usage, choices: chunk.choices.length };
}
print({ text, finish_reasons: finishReasons, models: [...models], usage, chunks });
