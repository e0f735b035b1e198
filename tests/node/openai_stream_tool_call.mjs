// openai-node: the chat.completions.stream helper with tools, joined by finalChatCompletion().
import OpenAI from "openai";
import { API_KEY, BASE_URL, HI, MODEL, print, WEATHER_TOOL } from "./common.mjs";

const client = new OpenAI({ baseURL: BASE_URL, apiKey: API_KEY, maxRetries: 0 });
const stream = client.chat.completions.stream({ model: MODEL, messages: HI, tools: [WEATHER_TOOL] });
const argumentsDone = [];
stream.on("tool_calls.function.arguments.done", (event) => argumentsDone.push(event.name));
const completion = await stream.finalChatCompletion();
const [choice] = completion.choices;
print({
  tool_calls: (choice.message.tool_calls ?? []).map((call) => ({
    id: call.id,
    type: call.type,
    name: call.function.name,
    arguments: JSON.parse(call.function.arguments),
  })),
  content: choice.message.content,
  finish_reason: choice.finish_reason,
  arguments_done: argumentsDone,
});
