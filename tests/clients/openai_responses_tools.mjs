// The openai Node SDK's responses.create in an agent's loop: the model calls a function, and
// the function's output goes back in a second turn, once through previous_response_id (the
// server keeps the conversation) and once restated in full (as agents that send store: false do).
import OpenAI from "openai";
import { run } from "./config.mjs";

const QUESTION = { role: "user", content: "What's the weather in Paris?" };
const WEATHER = {
  type: "function",
  name: "get_weather",
  description: "Get the current weather in a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  strict: true,
};
// The same sampling in both follow-ups, and no second call: the answer is text.
const FOLLOW_UP = { tools: [WEATHER], tool_choice: "none", max_output_tokens: 40, temperature: 0 };

function described({ data, request_id }) {
  return {
    id: data.id,
    requestId: request_id,
    status: data.status,
    outputTypes: data.output.map((item) => item.type),
    text: data.output_text,
    usage: data.usage,
    previousResponseId: data.previous_response_id ?? null,
  };
}

async function followUps({ baseURL, apiKey, model }) {
  const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
  const first = await client.responses
    .create({
      model, input: [QUESTION], tools: [WEATHER], tool_choice: "required",
      parallel_tool_calls: false, max_output_tokens: 60, temperature: 0,
    })
    .withResponse();
  const calls = first.data.output.filter((item) => item.type === "function_call");
  const [call] = calls;
  const city = JSON.parse(call.arguments).city;
  const output = {
    type: "function_call_output",
    call_id: call.call_id,
    output: JSON.stringify({ city, temperature_celsius: 21, sky: "sunny" }),
  };
  const chained = await client.responses
    .create({ model, previous_response_id: first.data.id, input: [output], ...FOLLOW_UP })
    .withResponse();
  // The whole conversation again, the call item as the SDK returned it.
  const restated = await client.responses
    .create({ model, input: [QUESTION, call, output], store: false, ...FOLLOW_UP })
    .withResponse();
  const stored = await client.responses.inputItems.list(chained.data.id);
  return {
    first: { ...described(first), calls: calls.map(({ name, arguments: args, call_id }) => ({ name, arguments: args, call_id })) },
    chained: described(chained),
    chainedInputTypes: stored.data.map((item) => item.type),
    restated: described(restated),
  };
}

await run({ "function-call-output": followUps });
