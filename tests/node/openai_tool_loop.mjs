// openai-node: a tool loop. The model calls the tool, gets its result, then answers in text;
// both turns are streamed through the chat.completions.stream helper.
import process from "node:process";
import OpenAI from "openai";
import { API_KEY, BASE_URL, HI, MODEL, print, weather, WEATHER_TOOL } from "./common.mjs";

const client = new OpenAI({ baseURL: BASE_URL, apiKey: API_KEY, maxRetries: 0 });
const messages = [...HI];
const turns = [];
for (let turn = 0; turn < 4; turn += 1) {
  const stream = client.chat.completions.stream({ model: MODEL, messages, tools: [WEATHER_TOOL] });
  const { choices } = await stream.finalChatCompletion();
  const { message, finish_reason: finishReason } = choices[0];
  const calls = message.tool_calls ?? [];
  turns.push({ finish_reason: finishReason, tool_calls: calls.map((c) => c.function.name) });
  if (finishReason !== "tool_calls") {
    print({ turns, text: message.content, tool_results: messages.filter((m) => m.role === "tool") });
    process.exit(0);
  }
  messages.push(message);
  for (const call of calls) {
    const content = weather(JSON.parse(call.function.arguments));
    messages.push({ role: "tool", tool_call_id: call.id, content });
  }
}
print({ turns, text: null, error: "no text answer after 4 turns" });
