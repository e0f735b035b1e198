// openai-node: the Responses API, a tool loop: a streamed call (responses.stream and its
// finalResponse), the function's output sent back, a final answer (responses.create).
import OpenAI from "openai";
import { API_KEY, BASE_URL, MODEL, print, weather } from "./common.mjs";

const client = new OpenAI({ baseURL: BASE_URL, apiKey: API_KEY, maxRetries: 0 });
const tools = [
  {
    type: "function",
    name: "get_weather",
    description: "Weather in a city",
    strict: false,
    parameters: {
      type: "object",
      properties: { city: { type: "string" }, days: { type: "number" } },
      required: ["city"],
    },
  },
];
const input = [{ role: "user", content: "Hola, ¿cómo estás?" }];
const kinds = [];
const stream = client.responses.stream({ model: MODEL, input, tools });
for await (const event of stream) kinds.push(event.type);
const first = await stream.finalResponse();
const calls = first.output.filter((item) => item.type === "function_call");
const history = [...input, ...first.output];
for (const call of calls) {
  history.push({
    type: "function_call_output",
    call_id: call.call_id,
    output: weather(JSON.parse(call.arguments)),
  });
}
const final = await client.responses.create({ model: MODEL, input: history, tools });
print({
  kinds,
  first_status: first.status,
  calls: calls.map((call) => ({ name: call.name, arguments: JSON.parse(call.arguments) })),
  status: final.status,
  text: final.output_text,
});
